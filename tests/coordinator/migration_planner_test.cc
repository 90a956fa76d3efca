#include "coordinator/migration_planner.h"

#include <algorithm>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace kvf {
namespace {

uint64_t SplitMix(uint64_t& s) {
  uint64_t z = (s += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

ClusterMap MapOf(uint32_t n, uint32_t r) {
  ClusterMap map;
  map.ring.replication = r;
  for (NodeId id = 1; id <= n; ++id) {
    map.nodes.push_back({id, absl::StrCat("10.0.0.", id, ":7000"), "", absl::StrCat("rack-", id % 4),
                         uint64_t{64} << 30, NodeState::kActive});
  }
  return map;
}

Placement Build(std::vector<PlacementNode> members, uint32_t r) {
  RingParams p;
  p.replication = r;
  auto placement = Placement::Build(std::move(members), p);
  EXPECT_TRUE(placement.ok()) << placement.status();
  return *std::move(placement);
}

bool Has(const OwnerList& l, NodeId id) { return std::find(l.begin(), l.end(), id) != l.end(); }

// Checks `plan` against the per-key truth at `hashes`: every new owner of a
// key that was not an old owner has exactly one task covering the key, from
// the first available old owner; nothing else has a task; keys with no
// available old owner are reported lost.
void CheckAgainstBruteForce(const Placement& before, const Placement& after,
                            const absl::flat_hash_set<NodeId>& unavailable, const MigrationPlan& plan,
                            const std::vector<uint64_t>& hashes) {
  struct Piece {
    HashRange range;
    const MigrationTask* task;
  };
  absl::flat_hash_map<NodeId, std::vector<Piece>> by_to;
  for (const MigrationTask& t : plan.tasks) {
    ASSERT_FALSE(t.ranges.empty());
    ASSERT_LE(t.ranges.size(), kMaxRangesPerTask);
    for (size_t i = 0; i < t.ranges.size(); ++i) {
      ASSERT_LE(t.ranges[i].begin, t.ranges[i].last);
      if (i > 0) {
        ASSERT_LT(t.ranges[i - 1].last, t.ranges[i].begin) << "a task's ranges are sorted";
        ASSERT_NE(t.ranges[i - 1].last + 1, t.ranges[i].begin) << "adjacent ranges not merged";
      }
      by_to[t.to].push_back(Piece{t.ranges[i], &t});
    }
  }
  for (size_t i = 1; i < plan.tasks.size(); ++i) {
    const MigrationTask& a = plan.tasks[i - 1];
    const MigrationTask& b = plan.tasks[i];
    ASSERT_TRUE(a.to < b.to || (a.to == b.to && a.from < b.from) ||
                (a.to == b.to && a.from == b.from && a.ranges.back().last < b.ranges.front().begin))
        << "tasks sorted by (to, from, range)";
    if (a.to == b.to && a.from == b.from) {
      ASSERT_EQ(a.ranges.size(), kMaxRangesPerTask) << "a second task only once the first is full";
    }
  }
  for (auto& [to, pieces] : by_to) {
    std::sort(pieces.begin(), pieces.end(),
              [](const Piece& a, const Piece& b) { return a.range.begin < b.range.begin; });
    for (size_t i = 1; i < pieces.size(); ++i) {
      ASSERT_LT(pieces[i - 1].range.last, pieces[i].range.begin) << "ranges to one target overlap";
    }
  }
  auto covering = [&](NodeId to, uint64_t h) -> const MigrationTask* {
    auto it = by_to.find(to);
    if (it == by_to.end()) return nullptr;
    const auto& v = it->second;
    auto pos = std::upper_bound(v.begin(), v.end(), h,
                                [](uint64_t x, const Piece& p) { return x < p.range.begin; });
    if (pos == v.begin()) return nullptr;
    const Piece& p = *(pos - 1);
    return h <= p.range.last ? p.task : nullptr;
  };
  auto in_lost = [&](uint64_t h) {
    for (const PlacementRange& r : plan.lost) {
      if (r.begin <= h && h <= r.last) return true;
    }
    return false;
  };
  absl::flat_hash_set<NodeId> targets;
  for (const auto& [to, v] : by_to) targets.insert(to);
  for (uint64_t h : hashes) {
    const OwnerList old_owners = before.Owners(h);
    const OwnerList new_owners = after.Owners(h);
    NodeId source = kNoNode;
    for (NodeId id : old_owners) {
      if (!unavailable.contains(id)) {
        source = id;
        break;
      }
    }
    bool needs_data = false;
    for (NodeId to : new_owners) {
      const MigrationTask* t = covering(to, h);
      if (Has(old_owners, to) || old_owners.empty()) {
        ASSERT_EQ(t, nullptr) << "task for an owner that already holds hash " << h;
        continue;
      }
      needs_data = true;
      if (source == kNoNode) {
        ASSERT_EQ(t, nullptr);
      } else {
        ASSERT_NE(t, nullptr) << "no task brings hash " << h << " to node " << to;
        ASSERT_EQ(t->from, source) << "hash " << h;
      }
    }
    // No task covers this key for a node that is not one of its new owners.
    for (NodeId to : targets) {
      if (!Has(new_owners, to)) {
        ASSERT_EQ(covering(to, h), nullptr) << "spurious task, hash " << h;
      }
    }
    ASSERT_EQ(in_lost(h), needs_data && source == kNoNode) << "hash " << h;
  }
}

// Random hashes plus both edges of every range of both placements.
std::vector<uint64_t> SampleHashes(const Placement& a, const Placement& b, int random) {
  std::vector<uint64_t> out;
  uint64_t s = 77;
  for (int i = 0; i < random; ++i) out.push_back(SplitMix(s));
  for (const Placement* p : {&a, &b}) {
    const auto ranges = p->Ranges();
    for (size_t i = 0; i < ranges.size(); i += 7) {
      out.push_back(ranges[i].begin);
      out.push_back(ranges[i].last);
    }
  }
  return out;
}

void CheckPlan(const Placement& before, const Placement& after,
               const absl::flat_hash_set<NodeId>& unavailable, MigrationPlan* out = nullptr) {
  MigrationPlan plan = PlanMigration(before, after, unavailable);
  CheckAgainstBruteForce(before, after, unavailable, plan, SampleHashes(before, after, 100000));
  if (out != nullptr) *out = std::move(plan);
}

TEST(MigrationPlanner, SamePlacementNeedsNothing) {
  ClusterMap map = MapOf(8, 2);
  Placement a = Build(Placement::TargetMembers(map), 2);
  Placement b = Build(Placement::TargetMembers(map), 2);
  MigrationPlan plan = PlanMigration(a, b, {});
  EXPECT_TRUE(plan.tasks.empty());
  EXPECT_TRUE(plan.lost.empty());
}

TEST(MigrationPlanner, FirstNodeHasNothingToReceive) {
  Placement empty = Build({}, 2);
  Placement one = Build({{1, "r", 1.0}}, 2);
  MigrationPlan plan = PlanMigration(empty, one, {});
  EXPECT_TRUE(plan.tasks.empty());
  EXPECT_TRUE(plan.lost.empty());
}

TEST(MigrationPlanner, JoinSendsRangesOnlyToTheJoiner) {
  for (uint32_t r : {1u, 3u}) {
    ClusterMap map = MapOf(16, r);
    Placement before = Build(Placement::ReadMembers(map), r);
    map.nodes.push_back({17, "10.0.0.17:7000", "", "rack-1", uint64_t{64} << 30, NodeState::kJoining});
    Placement after = Build(Placement::TargetMembers(map), r);
    MigrationPlan plan;
    CheckPlan(before, after, {}, &plan);
    ASSERT_FALSE(plan.tasks.empty());
    long double moved = 0;
    size_t ranges = 0;
    for (const MigrationTask& t : plan.tasks) {
      EXPECT_EQ(t.to, 17u);
      EXPECT_NE(t.from, 17u);
      for (const HashRange& h : t.ranges) moved += static_cast<long double>(h.last - h.begin) + 1;
      ranges += t.ranges.size();
    }
    // Thousands of arcs, in a handful of tasks: one per source unless it
    // passes the range cap.
    EXPECT_GT(ranges, 1000u);
    EXPECT_LE(plan.tasks.size(), 16 + ranges / kMaxRangesPerTask);
    EXPECT_TRUE(plan.lost.empty());
    // The joiner's share of replicas, R/(N+1) of the space, within 10%.
    const long double ideal = 18446744073709551616.0L * r / 17;
    EXPECT_NEAR(static_cast<double>(moved / ideal), 1.0, 0.1);
  }
}

TEST(MigrationPlanner, DrainMovesTheDrainersRangesFromIt) {
  ClusterMap map = MapOf(12, 2);
  Placement before = Build(Placement::ReadMembers(map), 2);
  map.nodes[4].state = NodeState::kDraining;  // node 5
  Placement after = Build(Placement::TargetMembers(map), 2);
  MigrationPlan plan;
  CheckPlan(before, after, {}, &plan);
  ASSERT_FALSE(plan.tasks.empty());
  bool from_drainer = false;
  for (const MigrationTask& t : plan.tasks) {
    EXPECT_NE(t.to, 5u);
    from_drainer |= t.from == 5;
  }
  EXPECT_TRUE(from_drainer) << "a draining node still serves: it is the source where it was primary";
  EXPECT_TRUE(plan.lost.empty());
}

TEST(MigrationPlanner, DownNodeIsNeverASource) {
  ClusterMap map = MapOf(12, 3);
  Placement before = Build(Placement::ReadMembers(map), 3);
  map.nodes[2].state = NodeState::kDown;  // node 3
  Placement after = Build(Placement::TargetMembers(map), 3);
  MigrationPlan plan;
  CheckPlan(before, after, {3}, &plan);
  ASSERT_FALSE(plan.tasks.empty());
  for (const MigrationTask& t : plan.tasks) {
    EXPECT_NE(t.from, 3u);
    EXPECT_NE(t.to, 3u);
  }
  EXPECT_TRUE(plan.lost.empty());
}

TEST(MigrationPlanner, AllReplicasDownIsLost) {
  ClusterMap map = MapOf(6, 2);
  Placement before = Build(Placement::ReadMembers(map), 2);
  map.nodes[0].state = NodeState::kDown;
  map.nodes[1].state = NodeState::kDown;
  Placement after = Build(Placement::TargetMembers(map), 2);
  MigrationPlan plan;
  CheckPlan(before, after, {1, 2}, &plan);
  EXPECT_FALSE(plan.lost.empty());
  for (size_t i = 1; i < plan.lost.size(); ++i) {
    EXPECT_LT(plan.lost[i - 1].last, plan.lost[i].begin);
  }
  for (const MigrationTask& t : plan.tasks) {
    EXPECT_NE(t.from, 1u);
    EXPECT_NE(t.from, 2u);
  }
}

TEST(MigrationPlanner, TwoChangesInARow) {
  ClusterMap map1 = MapOf(10, 2);
  Placement p1 = Build(Placement::ReadMembers(map1), 2);
  ClusterMap map2 = map1;
  map2.nodes.push_back({11, "10.0.0.11:7000", "", "rack-3", uint64_t{128} << 30, NodeState::kJoining});
  Placement p2 = Build(Placement::TargetMembers(map2), 2);
  ClusterMap map3 = map2;
  map3.nodes[10].state = NodeState::kActive;
  map3.nodes[6].state = NodeState::kDown;  // node 7
  Placement p3 = Build(Placement::TargetMembers(map3), 2);
  CheckPlan(p1, p2, {});
  CheckPlan(p2, p3, {7});
  // Planning straight from the first map to the last one is correct as well.
  CheckPlan(p1, p3, {7});
}

}  // namespace
}  // namespace kvf
