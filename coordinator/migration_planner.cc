#include "coordinator/migration_planner.h"

#include <algorithm>
#include <cstddef>
#include <utility>

#include "absl/container/flat_hash_map.h"

namespace kvf {
namespace {

bool Contains(const OwnerList& list, NodeId id) {
  return std::find(list.begin(), list.end(), id) != list.end();
}

}  // namespace

MigrationPlan PlanMigration(const Placement& before, const Placement& after,
                            const absl::flat_hash_set<NodeId>& unavailable) {
  const std::vector<PlacementRange> old_ranges = before.Ranges();
  const std::vector<PlacementRange> new_ranges = after.Ranges();
  MigrationPlan plan;
  // The task per (from, to) that takes the next piece.
  absl::flat_hash_map<std::pair<NodeId, NodeId>, size_t> open;

  // Sweep both range lists (each covers the whole space, sorted) piece by
  // piece: within a piece both owner lists are constant.
  size_t i = 0, j = 0;
  uint64_t begin = 0;
  while (i < old_ranges.size() && j < new_ranges.size()) {
    const PlacementRange& o = old_ranges[i];
    const PlacementRange& n = new_ranges[j];
    const uint64_t last = std::min(o.last, n.last);
    NodeId source = kNoNode;
    for (NodeId id : o.owners) {
      if (!unavailable.contains(id)) {
        source = id;
        break;
      }
    }
    OwnerList needy;
    for (NodeId to : n.owners) {
      if (!Contains(o.owners, to)) needy.push_back(to);
    }
    if (!needy.empty() && !o.owners.empty()) {
      if (source == kNoNode) {
        if (!plan.lost.empty() && plan.lost.back().last + 1 == begin &&
            plan.lost.back().owners == needy) {
          plan.lost.back().last = last;
        } else {
          plan.lost.push_back(PlacementRange{begin, last, needy});
        }
      } else {
        for (NodeId to : needy) {
          auto [it, inserted] = open.try_emplace(std::make_pair(source, to), plan.tasks.size());
          if (!inserted) {
            std::vector<HashRange>& ranges = plan.tasks[it->second].ranges;
            if (ranges.back().last + 1 == begin) {
              ranges.back().last = last;
              continue;
            }
            if (ranges.size() < kMaxRangesPerTask) {
              ranges.push_back(HashRange{begin, last});
              continue;
            }
            it->second = plan.tasks.size();
          }
          plan.tasks.push_back(MigrationTask{{HashRange{begin, last}}, source, to});
        }
      }
    }
    // An empty old owner list means nothing was stored there: nothing to copy.
    if (o.last == last) ++i;
    if (n.last == last) ++j;
    if (last == UINT64_MAX) break;
    begin = last + 1;
  }
  std::sort(plan.tasks.begin(), plan.tasks.end(), [](const MigrationTask& a, const MigrationTask& b) {
    if (a.to != b.to) return a.to < b.to;
    if (a.from != b.from) return a.from < b.from;
    return a.ranges.front().begin < b.ranges.front().begin;
  });
  return plan;
}

}  // namespace kvf
