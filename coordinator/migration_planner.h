// Migration planning: from the placement in force and the one wanted, the
// copies that make every key's owners hold it (DESIGN.md, "Cluster operations").
#ifndef KVF_COORDINATOR_MIGRATION_PLANNER_H_
#define KVF_COORDINATOR_MIGRATION_PLANNER_H_

#include <cstdint>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "common/cluster_map.h"
#include "common/placement.h"

namespace kvf {

// Copy every key whose placement hash is in [begin, last] from `from` to `to`.
struct MigrationTask {
  uint64_t begin = 0;
  uint64_t last = 0;
  NodeId from = kNoNode;
  NodeId to = kNoNode;

  friend bool operator==(const MigrationTask&, const MigrationTask&) = default;
};

struct MigrationPlan {
  std::vector<MigrationTask> tasks;  // sorted by (to, begin)
  // Ranges some new owner needs but no available old owner holds: their data
  // is gone (every replica was on unavailable nodes). Reported, not planned.
  std::vector<PlacementRange> lost;
};

// Minimal: a task exists only for (range, new owner) pairs where the new owner
// was not an owner before. Its source is an old owner not in `unavailable`
// (down nodes), preferring the old primary, then the old replicas in order.
// Adjacent ranges with the same (from, to) are merged into one task.
MigrationPlan PlanMigration(const Placement& before, const Placement& after,
                            const absl::flat_hash_set<NodeId>& unavailable);

}  // namespace kvf

#endif  // KVF_COORDINATOR_MIGRATION_PLANNER_H_
