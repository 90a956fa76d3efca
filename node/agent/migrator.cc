#include "node/agent/migrator.h"

#include <algorithm>
#include <map>
#include <pthread.h>
#include <utility>

#include "absl/strings/match.h"
#include "common/logging.h"

namespace kvf {

Migrator::Migrator(ShardStore* store, DataPlane* data_plane, Replicator* replicator,
                   PeerLinks* peers, Reporter report)
    : store_(store),
      data_plane_(data_plane),
      replicator_(replicator),
      peers_(peers),
      report_(std::move(report)),
      thread_([this] { Run(); }) {}

Migrator::~Migrator() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  thread_.join();
}

size_t Migrator::Assign(std::vector<proto::MigrationTask> tasks) {
  absl::MutexLock lock(&mu_);
  size_t accepted = 0;
  for (proto::MigrationTask& t : tasks) {
    const uint64_t id = t.task_id();
    const bool known =
        std::any_of(queue_.begin(), queue_.end(), [&](const auto& q) { return q.task_id() == id; }) ||
        std::find(running_.begin(), running_.end(), id) != running_.end();
    if (!known) queue_.push_back(std::move(t));
    ++accepted;
  }
  return accepted;
}

size_t Migrator::pending() const {
  absl::MutexLock lock(&mu_);
  return queue_.size() + running_.size();
}

void Migrator::Run() {
  pthread_setname_np(pthread_self(), "kvf-migrate");
  for (;;) {
    std::vector<proto::MigrationTask> tasks;
    {
      absl::MutexLock lock(&mu_);
      auto ready = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return stop_ || !queue_.empty(); };
      mu_.Await(absl::Condition(&ready));
      if (stop_) return;
      tasks.swap(queue_);
      for (const auto& t : tasks) running_.push_back(t.task_id());
    }
    std::vector<proto::TaskProgress> progress = Execute(std::move(tasks));
    if (report_) report_(progress);
    absl::MutexLock lock(&mu_);
    running_.clear();
  }
}

std::vector<proto::TaskProgress> Migrator::Execute(std::vector<proto::MigrationTask> tasks) {
  for (const auto& t : tasks) peers_->SetAddress(t.to_node(), t.to_data_address());
  // Ranges to one destination never overlap; ranges to different ones may
  // (R > 1). So: per destination, task indices sorted by range start, and a
  // binary search per destination for each stored block.
  std::map<NodeId, std::vector<size_t>> by_dest;
  for (size_t i = 0; i < tasks.size(); ++i) by_dest[tasks[i].to_node()].push_back(i);
  for (auto& [to, list] : by_dest) {
    std::sort(list.begin(), list.end(),
              [&](size_t a, size_t b) { return tasks[a].begin() < tasks[b].begin(); });
  }
  auto task_in = [&tasks](const std::vector<size_t>& list, uint64_t hash) -> int {
    auto it = std::upper_bound(list.begin(), list.end(), hash,
                               [&](uint64_t h, size_t t) { return h < tasks[t].begin(); });
    if (it == list.begin()) return -1;
    --it;
    return hash <= tasks[*it].last() ? static_cast<int>(*it) : -1;
  };
  std::vector<StoredBlock> blocks = store_->Scan([&](uint64_t h) {
    for (const auto& [to, list] : by_dest) {
      if (task_in(list, h) >= 0) return true;
    }
    return false;
  });
  // task -> namespace -> blocks
  std::vector<std::map<NamespaceId, std::vector<StoredBlock>>> per_task(tasks.size());
  for (const StoredBlock& b : blocks) {
    for (const auto& [to, list] : by_dest) {
      if (int t = task_in(list, b.placement_hash); t >= 0) per_task[t][b.ns].push_back(b);
    }
  }

  std::vector<proto::TaskProgress> progress;
  for (size_t i = 0; i < tasks.size(); ++i) {
    proto::TaskProgress p;
    p.set_task_id(tasks[i].task_id());
    uint64_t bytes = 0;
    std::string error;
    for (auto& [ns, list] : per_task[i]) {
      std::optional<NamespaceSpec> spec = data_plane_->Spec(ns);
      if (!spec) continue;  // never registered here: nothing stored either
      absl::StatusOr<PushResult> pushed = replicator_->Push(tasks[i].to_node(), *spec, list);
      if (!pushed.ok() && absl::IsFailedPrecondition(pushed.status()) &&
          absl::StrContains(pushed.status().message(), "WRONG_OWNER")) {
        // The map moved on since the task was planned: the destination no
        // longer owns the range. The copies stay here; a newer map brings
        // its own tasks. Report the task finished so nobody waits on it.
        KVF_LOG(INFO) << "migration task " << tasks[i].task_id() << " is obsolete: "
                      << pushed.status().message();
        break;
      }
      if (!pushed.ok()) {
        error = std::string(pushed.status().message());
        break;
      }
      bytes += pushed->bytes;
    }
    bytes_copied_ += bytes;
    p.set_bytes_copied(bytes);
    if (error.empty()) {
      p.set_done(true);
      ++tasks_done_;
    } else {
      KVF_LOG(WARNING) << "migration task " << tasks[i].task_id() << " to node "
                       << tasks[i].to_node() << " failed: " << error;
      p.set_error(error);
    }
    progress.push_back(std::move(p));
  }
  return progress;
}

}  // namespace kvf
