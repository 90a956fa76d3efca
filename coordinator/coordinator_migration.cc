// CoordinatorService's migration tasks (coordinator_service.h): planning
// them on a map change, cancelling those whose ends went away, flipping
// joining and draining nodes once their tasks are done, the agents' progress
// reports, and delivering tasks to their source agents. The rest of the state
// machine (membership, leases, epochs, the roster) is coordinator_service.cc.
#include "coordinator/coordinator_service.h"

#include <algorithm>
#include <map>
#include <thread>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/placement.h"
#include "common/status_macros.h"
#include "proto/cluster_map_convert.h"

namespace kvf {
namespace {

constexpr int kMaxProgressPerCall = 100000;
constexpr size_t kMaxErrorLength = 1024;

}  // namespace

void CoordinatorService::PlanLocked(const ClusterMap& before, const ClusterMap& after,
                                    NodeId cause) {
  auto from = Placement::Build(Placement::ReadMembers(before), before.ring);
  auto to = Placement::Build(Placement::TargetMembers(after), after.ring);
  if (!from.ok() || !to.ok()) {
    KVF_LOG(ERROR) << "coordinator: cannot build placement for migration at epoch " << epoch_
                   << ": " << (from.ok() ? to.status() : from.status());
    return;
  }
  absl::flat_hash_set<NodeId> unavailable;
  for (const NodeInfo& n : after.nodes) {
    if (n.state == NodeState::kDown || n.state == NodeState::kLeft) unavailable.insert(n.id);
  }
  MigrationPlan plan = PlanMigration(*from, *to, unavailable);
  counters_.ranges_lost += plan.lost.size();
  if (!plan.lost.empty()) {
    KVF_LOG(WARNING) << "coordinator: epoch " << epoch_ << ": " << plan.lost.size()
                     << " ranges have no surviving replica";
  }
  // A task planned again (the same copy wanted by another change) gains a cause.
  absl::flat_hash_map<std::pair<NodeId, NodeId>, std::vector<uint64_t>> existing;
  for (const auto& [tid, t] : tasks_) existing[{t.status.task.from, t.status.task.to}].push_back(tid);
  size_t added = 0, ranges = 0;
  for (MigrationTask& task : plan.tasks) {
    TaskEntry* same = nullptr;
    if (auto it = existing.find(std::make_pair(task.from, task.to)); it != existing.end()) {
      for (uint64_t tid : it->second) {
        if (tasks_[tid].status.task == task) same = &tasks_[tid];
      }
    }
    if (same != nullptr) {
      if (std::find(same->causes.begin(), same->causes.end(), cause) == same->causes.end()) {
        same->causes.push_back(cause);
      }
      continue;
    }
    TaskEntry t;
    t.status.id = next_task_id_++;
    ranges += task.ranges.size();
    t.status.task = std::move(task);
    t.status.epoch = epoch_;
    t.causes.push_back(cause);
    tasks_.emplace(t.status.id, std::move(t));
    ++added;
  }
  counters_.tasks_planned += added;
  if (added) SaveRosterLocked();  // the task id counter moved
  if (added) {
    KVF_LOG(INFO) << "coordinator: epoch " << epoch_ << ": planned " << added
                  << " migration tasks (" << ranges << " hash ranges) for node " << cause;
  }
}

void CoordinatorService::CancelStaleTasksLocked() {
  for (auto it = tasks_.begin(); it != tasks_.end();) {
    const MigrationTask& t = it->second.status.task;
    const NodeEntry* from = FindLocked(t.from);
    const NodeEntry* to = FindLocked(t.to);
    if (from == nullptr || to == nullptr || !IsLive(from->info.state) ||
        !IsLive(to->info.state)) {
      ++counters_.tasks_cancelled;
      it = tasks_.erase(it);
    } else {
      ++it;
    }
  }
}

void CoordinatorService::FlipFinishedLocked() {
  for (bool changed = true; changed;) {
    changed = false;
    for (auto& [id, e] : nodes_) {
      NodeState to;
      if (e.info.state == NodeState::kJoining) {
        const NodeId node = id;  // Clang < 16 cannot capture a structured binding
        bool pending = std::any_of(tasks_.begin(), tasks_.end(),
                                   [&](const auto& t) { return t.second.status.task.to == node; });
        if (pending) continue;
        to = NodeState::kActive;
      } else if (e.info.state == NodeState::kDraining) {
        NodeId node = id;
        bool pending = std::any_of(tasks_.begin(), tasks_.end(), [&](const auto& t) {
          return t.second.status.task.from == node ||
                 std::find(t.second.causes.begin(), t.second.causes.end(), node) !=
                     t.second.causes.end();
        });
        if (pending) continue;
        to = NodeState::kLeft;
      } else {
        continue;
      }
      absl::Status s = TransitionLocked(id, to, Plan::kNone);
      if (!s.ok()) {
        KVF_LOG(ERROR) << "coordinator: node " << id << " finished migrating but: " << s;
        return;  // retried on the next tick
      }
      changed = true;
      break;  // TransitionLocked flipped the rest; nodes_ is unchanged in shape
    }
  }
}

absl::Status CoordinatorService::ValidateProgress(
    NodeId reporter, const google::protobuf::RepeatedPtrField<proto::TaskProgress>& tasks) const {
  if (tasks.size() > kMaxProgressPerCall) {
    return absl::InvalidArgumentError(
        absl::StrCat(tasks.size(), " task reports in one call; at most ", kMaxProgressPerCall));
  }
  for (const proto::TaskProgress& p : tasks) {
    if (p.task_id() == 0 || p.task_id() >= next_task_id_) {
      return absl::NotFoundError(absl::StrCat("unknown migration task id ", p.task_id()));
    }
    if (p.error().size() > kMaxErrorLength) {
      return absl::InvalidArgumentError(absl::StrCat("task ", p.task_id(), ": error text over ",
                                                     kMaxErrorLength, " bytes"));
    }
    auto it = tasks_.find(p.task_id());
    if (it != tasks_.end() && it->second.status.task.from != reporter) {
      return absl::PermissionDeniedError(absl::StrCat("task ", p.task_id(), " belongs to node ",
                                                      it->second.status.task.from, ", not ",
                                                      reporter));
    }
  }
  return absl::OkStatus();
}

void CoordinatorService::ApplyProgressLocked(
    NodeId reporter, const google::protobuf::RepeatedPtrField<proto::TaskProgress>& tasks) {
  for (const proto::TaskProgress& p : tasks) {
    auto it = tasks_.find(p.task_id());
    if (it == tasks_.end()) continue;  // finished or cancelled already: reports are idempotent
    if (!p.error().empty()) {
      it->second.status.delivered = false;  // sent again on the next heartbeat
      if (it->second.in_flight) it->second.failed_in_flight = true;
      it->second.status.last_error = p.error();
      KVF_LOG(WARNING) << "coordinator: node " << reporter << " failed task " << p.task_id()
                       << ": " << p.error();
    } else if (p.done()) {
      ++counters_.tasks_done;
      tasks_.erase(it);
    }
  }
}

absl::StatusOr<proto::ReportMigrationResponse> CoordinatorService::ReportMigration(
    const proto::ReportMigrationRequest& request) {
  absl::MutexLock lock(&mu_);
  KVF_ASSIGN_OR_RETURN(NodeEntry * e, LookupLocked(request.node_id()));
  if (!IsLive(e->info.state)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "node ", request.node_id(), " is ", NodeStateText(e->info.state), "; its tasks were cancelled"));
  }
  KVF_RETURN_IF_ERROR(ValidateProgress(request.node_id(), request.tasks()));
  ApplyProgressLocked(request.node_id(), request.tasks());
  FlipFinishedLocked();
  proto::ReportMigrationResponse r;
  r.set_epoch(epoch_);
  uint32_t remaining = 0;
  for (const auto& [tid, t] : tasks_) remaining += t.status.task.from == request.node_id();
  r.set_remaining_tasks(remaining);
  return r;
}

void CoordinatorService::DeliverPendingTasks(NodeId only) {
  if (options_.agents == nullptr) return;
  // One AssignMigration carries at most this many ranges (about 1.3 MB, well
  // under gRPC's 4 MB message limit); a source with more gets several calls.
  constexpr size_t kMaxRangesPerCall = 16 * kMaxRangesPerTask;
  struct Batch {
    std::string address;
    proto::AssignMigrationRequest request;
    std::vector<uint64_t> ids;
    size_t ranges = 0;
  };
  std::vector<Batch> batches;
  {
    absl::MutexLock lock(&mu_);
    std::map<NodeId, size_t> open;  // source -> its batch still taking tasks
    for (auto& [tid, t] : tasks_) {
      const MigrationTask& task = t.status.task;
      if (t.status.delivered || t.in_flight || (only != kNoNode && task.from != only)) continue;
      const NodeEntry* from = FindLocked(task.from);
      const NodeEntry* to = FindLocked(task.to);
      if (from == nullptr || to == nullptr) continue;
      auto [it, inserted] = open.try_emplace(task.from, batches.size());
      if (inserted || batches[it->second].ranges + task.ranges.size() > kMaxRangesPerCall) {
        it->second = batches.size();
        Batch& fresh = batches.emplace_back();
        fresh.address = from->info.address;
        fresh.request.set_epoch(epoch_);
      }
      Batch& b = batches[it->second];
      proto::MigrationTask* m = b.request.add_tasks();
      m->set_task_id(tid);
      for (const HashRange& r : task.ranges) {
        proto::HashRange* range = m->add_ranges();
        range->set_begin(r.begin);
        range->set_last(r.last);
      }
      m->set_from_node(task.from);
      m->set_to_node(task.to);
      m->set_to_address(to->info.address);
      m->set_to_data_address(to->info.data_address);
      m->set_epoch(t.status.epoch);
      b.ids.push_back(tid);
      b.ranges += task.ranges.size();
      t.in_flight = true;
    }
  }
  // The calls go out together, so a hung agent costs the RPC that triggered
  // the delivery (a Join, a Drain, a tick) one call deadline, not one per
  // source behind it.
  std::vector<absl::Status> results(batches.size());
  {
    std::vector<std::thread> calls;
    for (size_t i = 1; i < batches.size(); ++i) {
      calls.emplace_back([this, &batches, &results, i] {
        results[i] = options_.agents->AssignMigration(batches[i].address, batches[i].request);
      });
    }
    if (!batches.empty()) {
      results[0] = options_.agents->AssignMigration(batches[0].address, batches[0].request);
    }
    for (std::thread& t : calls) t.join();
  }
  for (size_t i = 0; i < batches.size(); ++i) {
    const Batch& b = batches[i];
    const absl::Status& s = results[i];
    absl::MutexLock lock(&mu_);
    if (!s.ok()) ++counters_.delivery_failures;
    for (uint64_t tid : b.ids) {
      auto it = tasks_.find(tid);
      if (it == tasks_.end()) continue;
      it->second.in_flight = false;
      it->second.status.delivered = s.ok() && !std::exchange(it->second.failed_in_flight, false);
      if (!s.ok()) it->second.status.last_error = std::string(s.message());
    }
  }
}

std::vector<TaskStatus> CoordinatorService::OutstandingTasks() const {
  absl::MutexLock lock(&mu_);
  std::vector<TaskStatus> out;
  out.reserve(tasks_.size());
  for (const auto& [tid, t] : tasks_) out.push_back(t.status);
  return out;
}

}  // namespace kvf
