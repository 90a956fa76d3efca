// Executes the coordinator's migration tasks (docs/data-path.md,
// "Migration"): each task is a list of placement-hash ranges whose blocks this
// agent streams to a new owner. Tasks are queued by the AgentControl
// service and run on a named thread: the ranges are sorted once, the store is
// scanned once per round (a binary search per entry), and the blocks go out
// per destination and namespace through Replicator::Push. Progress is handed
// to `report` (the coordinator link sends ReportMigration). Reads keep being
// served meanwhile; copies are dropped later by the agent's collection of
// blocks it no longer owns, once a map without this node as owner is in force.
// Thread-safe.
#ifndef KVF_NODE_AGENT_MIGRATOR_H_
#define KVF_NODE_AGENT_MIGRATOR_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/synchronization/mutex.h"
#include "node/agent/data_plane.h"
#include "node/agent/peer_links.h"
#include "node/agent/replicator.h"
#include "proto/coordinator.pb.h"

namespace kvf {

class Migrator {
 public:
  using Reporter = std::function<void(std::vector<proto::TaskProgress>)>;

  Migrator(ShardStore* store, DataPlane* data_plane, Replicator* replicator, PeerLinks* peers,
           Reporter report);
  ~Migrator();
  Migrator(const Migrator&) = delete;
  Migrator& operator=(const Migrator&) = delete;

  // Queues tasks (duplicates of queued or running ones are ignored).
  size_t Assign(std::vector<proto::MigrationTask> tasks);
  // Tasks queued or running.
  size_t pending() const;
  uint64_t bytes_copied() const { return bytes_copied_.load(); }
  uint64_t tasks_done() const { return tasks_done_.load(); }

 private:
  void Run();
  std::vector<proto::TaskProgress> Execute(const std::vector<proto::MigrationTask>& tasks);

  ShardStore* const store_;
  DataPlane* const data_plane_;
  Replicator* const replicator_;
  PeerLinks* const peers_;
  const Reporter report_;

  mutable absl::Mutex mu_;
  std::vector<proto::MigrationTask> queue_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_set<uint64_t> known_ ABSL_GUARDED_BY(mu_);  // ids queued or running
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::atomic<uint64_t> bytes_copied_{0};
  std::atomic<uint64_t> tasks_done_{0};
  std::thread thread_;
};

}  // namespace kvf

#endif  // KVF_NODE_AGENT_MIGRATOR_H_
