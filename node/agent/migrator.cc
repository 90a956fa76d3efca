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
    if (known_.insert(t.task_id()).second) queue_.push_back(std::move(t));
    ++accepted;
  }
  return accepted;
}

size_t Migrator::pending() const {
  absl::MutexLock lock(&mu_);
  return known_.size();
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
    }
    std::vector<proto::TaskProgress> progress = Execute(tasks);
    if (report_) report_(progress);
    absl::MutexLock lock(&mu_);
    for (const proto::MigrationTask& t : tasks) known_.erase(t.task_id());
  }
}

std::vector<proto::TaskProgress> Migrator::Execute(const std::vector<proto::MigrationTask>& tasks) {
  for (const auto& t : tasks) peers_->SetAddress(t.to_node(), t.to_data_address());
  // Per destination, every range of every task sorted by start, with the
  // running maximum of their ends: a hash is covered when some range starting
  // at or before it ends at or after it. Ranges to one destination from one
  // plan never overlap; from two plans they may, and a block then goes with
  // the first task found (the destination is the same).
  struct Piece {
    uint64_t begin;
    uint64_t last;
    uint64_t max_last;  // of this piece and every one before it
    size_t task;
  };
  std::map<NodeId, std::vector<Piece>> by_dest;
  for (size_t i = 0; i < tasks.size(); ++i) {
    std::vector<Piece>& pieces = by_dest[tasks[i].to_node()];
    for (const proto::HashRange& r : tasks[i].ranges()) {
      if (r.begin() <= r.last()) pieces.push_back(Piece{r.begin(), r.last(), 0, i});
    }
  }
  for (auto& [to, pieces] : by_dest) {
    std::sort(pieces.begin(), pieces.end(),
              [](const Piece& a, const Piece& b) { return a.begin < b.begin; });
    uint64_t max_last = 0;
    for (Piece& p : pieces) p.max_last = max_last = std::max(max_last, p.last);
  }
  auto task_in = [](const std::vector<Piece>& pieces, uint64_t hash) -> int {
    auto it = std::upper_bound(pieces.begin(), pieces.end(), hash,
                               [](uint64_t h, const Piece& p) { return h < p.begin; });
    while (it != pieces.begin()) {
      --it;
      if (it->max_last < hash) return -1;
      if (hash <= it->last) return static_cast<int>(it->task);
    }
    return -1;
  };
  std::vector<StoredBlock> blocks = store_->Scan([&](uint64_t h) {
    for (const auto& [to, pieces] : by_dest) {
      if (task_in(pieces, h) >= 0) return true;
    }
    return false;
  });
  // task -> namespace -> blocks
  std::vector<std::map<NamespaceId, std::vector<StoredBlock>>> per_task(tasks.size());
  for (const StoredBlock& b : blocks) {
    for (const auto& [to, pieces] : by_dest) {
      if (int t = task_in(pieces, b.placement_hash); t >= 0) per_task[t][b.ns].push_back(b);
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
      absl::StatusOr<PushResult> pushed =
          replicator_->Push(tasks[i].to_node(), *spec, list, tasks[i].epoch());
      if (!pushed.ok() && absl::IsFailedPrecondition(pushed.status()) &&
          absl::StrContains(pushed.status().message(), "WRONG_OWNER")) {
        // The frames spoke for the task's epoch, so the destination refused
        // under a map at least that new: the map moved on since the task was
        // planned and the destination no longer owns the range. The copies
        // stay here; a newer map brings its own tasks. Report the task
        // finished so nobody waits on it.
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
