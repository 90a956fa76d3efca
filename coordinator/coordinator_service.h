// CoordinatorService: the coordinator's state machine, free of gRPC.
//
// It owns the cluster map (nodes, ring parameters, epoch), the lease of every
// node, the migration tasks of membership changes, and the usage reports that
// drive global eviction. grpc_service.h puts it on the network; tests drive it
// directly with an injected clock and a fake AgentClient.
//
// Node states and the only transitions it makes (common/cluster_map.h):
//   joining -> active   when every task that copies data to it is done
//   joining -> down | left
//   active -> draining (Drain) | down (lease) | left (Leave)
//   draining -> active (Undrain) | left (its tasks are done, or Leave) | down
//   down -> active (Join with its id) | left (Leave)
//   left: final
// Every other request is refused with FAILED_PRECONDITION naming the node and
// both states, and changes nothing.
//
// Epochs: every change of the map takes the next epoch, saved (atomically) to
// the state dir before the change is made, so the epoch never goes backwards,
// across restarts included. After every change the roster (the published map
// and the id counters) is saved too. A restarted coordinator starts at the
// saved epoch + 1 with the saved roster, every live node given a fresh lease:
// agents that come back within it carry on as they were (whatever the outage
// length), the others go down and their ranges are re-replicated, and
// migrations of joins and drains in progress are planned again. With an epoch
// but no roster (a state dir of an older version), it starts empty and, for
// one lease, re-registers nodes re-joining with their ids and refuses joins
// without one (UNAVAILABLE). A join names the newest epoch the node has seen;
// a coordinator behind it (its state dir was lost) moves past it.
//
// Thread-safety: all methods are thread-safe. Calls to agents (task delivery)
// are made without the lock held.
#ifndef KVF_COORDINATOR_COORDINATOR_SERVICE_H_
#define KVF_COORDINATOR_COORDINATOR_SERVICE_H_

#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/inlined_vector.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/age_histogram.h"
#include "common/cluster_map.h"
#include "coordinator/agent_client.h"
#include "common/clock.h"
#include "coordinator/epoch_store.h"
#include "coordinator/state_store.h"
#include "coordinator/eviction_cutoff.h"
#include "coordinator/migration_planner.h"
#include "proto/cluster_map.pb.h"
#include "proto/coordinator.pb.h"
#include "proto/coordinator_state.pb.h"

namespace kvf {

struct CoordinatorOptions {
  RingParams ring;                        // replication R, bounded-load epsilon
  uint32_t default_segment_blocks = 16;
  absl::Duration lease = absl::Seconds(10);
  EvictionWatermarks watermarks;
  std::string state_dir;                  // empty: the epoch is not persisted
  // Where the epoch and roster go instead of state_dir (etcd, for several
  // coordinators: coordinator/etcd_state_store.h). Null: state_dir.
  std::shared_ptr<StateStore> store;
  // Called (under the service's lock: keep it short, never call back) with
  // every map the service publishes.
  std::function<void(std::shared_ptr<const proto::ClusterMap>)> on_publish;
  // Added to the saved task id counter on start: a leader elected after one
  // that died may not see the last task ids it handed out.
  uint64_t task_id_gap = 0;
  size_t map_history = 1024;              // maps kept for watchers that fall behind
  size_t max_nodes = 4096;                // live (not left) nodes
  uint64_t max_capacity_bytes = uint64_t{1} << 50;  // 1 PiB per node
  const Clock* clock = nullptr;  // not owned; null: the real clock
  AgentClient* agents = nullptr;            // not owned; null: tasks are never sent
};

// One migration task and where it stands.
struct TaskStatus {
  uint64_t id = 0;
  MigrationTask task;
  uint64_t epoch = 0;         // planned at
  bool delivered = false;     // the source agent accepted it
  std::string last_error;     // of the last delivery or the agent's report
};

// Counters for /metrics.
struct CoordinatorStats {
  uint64_t epoch = 0;
  uint64_t nodes_by_state[5] = {};  // indexed by NodeState
  uint64_t capacity_bytes = 0;      // of live (joining, active, draining) nodes
  uint64_t used_bytes = 0;          // as last reported by live nodes
  uint64_t heartbeats = 0;
  uint64_t tasks_planned = 0;
  uint64_t tasks_done = 0;
  uint64_t tasks_cancelled = 0;
  uint64_t tasks_outstanding = 0;
  uint64_t ranges_lost = 0;         // planned ranges with no surviving source
  uint64_t delivery_failures = 0;
  uint64_t roster_save_failures = 0;  // retried every tick until one succeeds
  std::optional<absl::Duration> eviction_cutoff;
};

class CoordinatorService {
 public:
  // Loads the last epoch from options.store (or state_dir) and starts at the
  // next one.
  // INVALID_ARGUMENT for bad options; the store's error if the state dir is
  // unusable.
  static absl::StatusOr<std::unique_ptr<CoordinatorService>> Create(CoordinatorOptions options);
  ~CoordinatorService();

  // Membership. Errors: INVALID_ARGUMENT (malformed request), NOT_FOUND
  // (unknown node), ALREADY_EXISTS (duplicate join), FAILED_PRECONDITION
  // (illegal transition), UNAVAILABLE (recovering after a restart),
  // RESOURCE_EXHAUSTED (too many nodes), INTERNAL (epoch not saved). On error
  // nothing changed.
  absl::StatusOr<proto::JoinResponse> Join(const proto::JoinRequest& request);
  absl::StatusOr<proto::HeartbeatResponse> Heartbeat(const proto::HeartbeatRequest& request);
  absl::StatusOr<proto::MembershipResponse> Drain(NodeId id);
  absl::StatusOr<proto::MembershipResponse> Undrain(NodeId id);
  absl::StatusOr<proto::MembershipResponse> Leave(NodeId id);
  absl::StatusOr<proto::ReportMigrationResponse> ReportMigration(
      const proto::ReportMigrationRequest& request);

  std::shared_ptr<const proto::ClusterMap> GetClusterMap() const;
  ClusterMap CurrentMap() const;
  uint64_t epoch() const;

  // For watchers: blocks until a map newer than `after_epoch` exists, the
  // deadline passes, or Shutdown(). Returns the newer maps in epoch order:
  // every one when history reaches back to after_epoch + 1, otherwise (and
  // for after_epoch 0) only the current map. Empty on timeout or shutdown.
  std::vector<std::shared_ptr<const proto::ClusterMap>> WaitForMaps(uint64_t after_epoch,
                                                                    absl::Time deadline) const;

  // Marks nodes whose lease passed as down, then sends undelivered tasks. The
  // daemon calls it a few times per lease; tests after moving the clock.
  void Tick();
  // Sends undelivered tasks to their source agents, all sources at once;
  // `only` limits it to one source. A failed call is retried on the next
  // heartbeat or tick.
  void DeliverPendingTasks(NodeId only = kNoNode);

  // Wakes every WaitForMaps; later ones return at once.
  void Shutdown();
  bool shutting_down() const;

  CoordinatorStats Stats() const;
  std::vector<TaskStatus> OutstandingTasks() const;

 private:
  struct NodeEntry {
    NodeInfo info;
    std::vector<std::string> tiers;
    uint64_t device_bytes = 0;  // of capacity_bytes, in a GPU tier (kvfctl nodes shows it)
    absl::Time lease_deadline;
    bool reported = false;  // has sent usage
    uint64_t used_bytes = 0;
    uint64_t reported_capacity = 0;
    AgeHistogram ages;
    // What global eviction measures against: the last heartbeat's capacity,
    // or the joined one if it sent none.
    uint64_t capacity() const { return reported_capacity ? reported_capacity : info.capacity_bytes; }
  };
  struct TaskEntry {
    TaskStatus status;
    absl::InlinedVector<NodeId, 2> causes;  // nodes whose change planned it
    bool in_flight = false;
    // The source reported a failure while its AssignMigration was still in
    // flight (it runs tasks as they arrive): the call's success must not
    // mark the task delivered, or it would never be sent again.
    bool failed_in_flight = false;
  };
  enum class Plan { kNone, kMigrate };

  explicit CoordinatorService(CoordinatorOptions options, std::shared_ptr<StateStore> store,
                              uint64_t epoch, std::optional<proto::CoordinatorState> roster);

  absl::Time Now() const;
  ClusterMap BuildMapLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  NodeEntry* FindLocked(NodeId id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<NodeEntry*> LookupLocked(NodeId id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Moves node `id` to `to` as one new epoch (saved first), plans migration
  // when asked, then flips finished nodes and publishes. `mutate`, when set,
  // also edits the entry (re-join).
  absl::Status TransitionLocked(NodeId id, NodeState to, Plan plan)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status BumpEpochLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void PlanLocked(const ClusterMap& before, const ClusterMap& after, NodeId cause)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void CancelStaleTasksLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void FlipFinishedLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void PublishLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Takes the nodes and id counters of a saved roster, each live node with a
  // fresh lease.
  void RestoreLocked(const proto::CoordinatorState& roster) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void SaveRosterLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ApplyProgressLocked(NodeId reporter,
                           const google::protobuf::RepeatedPtrField<proto::TaskProgress>& tasks)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status ValidateProgress(NodeId reporter,
                                const google::protobuf::RepeatedPtrField<proto::TaskProgress>&
                                    tasks) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::optional<absl::Duration> ComputeCutoffLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  proto::MembershipResponse MembershipLocked(NodeId id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  size_t LiveNodesLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const CoordinatorOptions options_;
  const Clock& clock_;
  const absl::Time started_;

  mutable absl::Mutex mu_;
  std::shared_ptr<StateStore> store_ ABSL_GUARDED_BY(mu_);
  uint64_t epoch_ ABSL_GUARDED_BY(mu_);
  bool recovering_ ABSL_GUARDED_BY(mu_);
  bool roster_saved_ ABSL_GUARDED_BY(mu_) = true;  // false: retry on the next tick
  bool shutdown_ ABSL_GUARDED_BY(mu_) = false;
  std::map<NodeId, NodeEntry> nodes_ ABSL_GUARDED_BY(mu_);
  NodeId next_id_ ABSL_GUARDED_BY(mu_) = 1;
  std::map<uint64_t, TaskEntry> tasks_ ABSL_GUARDED_BY(mu_);  // outstanding only
  uint64_t next_task_id_ ABSL_GUARDED_BY(mu_) = 1;
  std::deque<std::shared_ptr<const proto::ClusterMap>> history_ ABSL_GUARDED_BY(mu_);
  CoordinatorStats counters_ ABSL_GUARDED_BY(mu_);
};

}  // namespace kvf

#endif  // KVF_COORDINATOR_COORDINATOR_SERVICE_H_
