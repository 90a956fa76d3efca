// Migration planning: from the placement in force and the one wanted, the
// copies that make every key's owners hold it (docs/design.md, "Cluster operations").
#ifndef KVF_COORDINATOR_MIGRATION_PLANNER_H_
#define KVF_COORDINATOR_MIGRATION_PLANNER_H_

#include <cstddef>
#include <cstdint>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "common/cluster_map.h"
#include "common/placement.h"

namespace kvf {

// The placement hashes begin..last, both included.
struct HashRange {
  uint64_t begin = 0;
  uint64_t last = 0;

  friend bool operator==(const HashRange&, const HashRange&) = default;
};

// A task carries at most this many ranges. A ring of 16,384 points per node
// splits one membership change into thousands of arcs; sending each as its own
// task made joins cost tens of thousands of tasks (docs/placement.md,
// "Migration tasks"). The cap keeps one task's message near 64 KiB.
inline constexpr size_t kMaxRangesPerTask = 4096;

// Copy every key whose placement hash is in one of `ranges` from `from` to `to`.
struct MigrationTask {
  std::vector<HashRange> ranges;  // sorted, disjoint, none adjacent to the next
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
// The ranges of one (from, to) pair are gathered into as few tasks as the
// range cap allows, and adjacent ones are merged. Tasks are sorted by
// (to, from, first range).
MigrationPlan PlanMigration(const Placement& before, const Placement& after,
                            const absl::flat_hash_set<NodeId>& unavailable);

}  // namespace kvf

#endif  // KVF_COORDINATOR_MIGRATION_PLANNER_H_
