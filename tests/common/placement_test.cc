#include "common/placement.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace kvf {
namespace {

using ::testing::ElementsAre;

// A deterministic stream of placement hashes (splitmix64).
class HashStream {
 public:
  explicit HashStream(uint64_t seed) : s_(seed) {}
  uint64_t Next() {
    uint64_t z = (s_ += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }

 private:
  uint64_t s_;
};

std::string Rack(NodeId id) { return absl::StrCat("rack-", id % 8); }

std::vector<PlacementNode> Nodes(uint32_t n, uint32_t first_id = 1) {
  std::vector<PlacementNode> nodes;
  for (uint32_t i = 0; i < n; ++i) nodes.push_back({first_id + i, Rack(first_id + i), 1.0});
  return nodes;
}

Placement MustBuild(std::vector<PlacementNode> nodes, uint32_t r, double eps = 0.0) {
  RingParams p;
  p.replication = r;
  p.load_epsilon = eps;
  auto placement = Placement::Build(std::move(nodes), p);
  EXPECT_TRUE(placement.ok()) << placement.status();
  return *std::move(placement);
}

TEST(Placement, BuildRejectsBadInput) {
  RingParams p;
  EXPECT_FALSE(Placement::Build({{1, "a", 1.0}, {1, "b", 1.0}}, p).ok());  // duplicate
  EXPECT_FALSE(Placement::Build({{0, "a", 1.0}}, p).ok());                 // reserved id
  for (double w : {0.0, -1.0, std::nan(""), std::numeric_limits<double>::infinity()}) {
    EXPECT_FALSE(Placement::Build({{1, "a", w}}, p).ok()) << w;
  }
  RingParams bad_r = p;
  bad_r.replication = 0;
  EXPECT_FALSE(Placement::Build(Nodes(3), bad_r).ok());
  bad_r.replication = kMaxReplication + 1;
  EXPECT_FALSE(Placement::Build(Nodes(3), bad_r).ok());
  for (double eps : {-0.1, std::nan(""), std::numeric_limits<double>::infinity()}) {
    RingParams bad_eps = p;
    bad_eps.load_epsilon = eps;
    EXPECT_FALSE(Placement::Build(Nodes(3), bad_eps).ok()) << eps;
  }
}

TEST(Placement, EmptyNodeListOwnsNothing) {
  Placement p = MustBuild({}, 2);
  EXPECT_EQ(p.num_nodes(), 0u);
  EXPECT_TRUE(p.Owners(12345).empty());
  const auto ranges = p.Ranges();
  ASSERT_EQ(ranges.size(), 1u);
  EXPECT_EQ(ranges[0].begin, 0u);
  EXPECT_EQ(ranges[0].last, std::numeric_limits<uint64_t>::max());
  EXPECT_TRUE(ranges[0].owners.empty());
}

TEST(Placement, OwnersAreDistinctNodesInDistinctDomains) {
  Placement p = MustBuild(Nodes(24), 3);  // 8 racks
  HashStream keys(1);
  for (int i = 0; i < 100000; ++i) {
    const OwnerList owners = p.Owners(keys.Next());
    ASSERT_EQ(owners.size(), 3u);
    absl::flat_hash_set<std::string> racks;
    for (NodeId id : owners) racks.insert(Rack(id));
    ASSERT_EQ(racks.size(), 3u);
  }
}

TEST(Placement, FewerDomainsThanReplicasStillGivesDistinctNodesAndEveryDomain) {
  std::vector<PlacementNode> nodes;
  for (NodeId id = 1; id <= 6; ++id) nodes.push_back({id, id <= 5 ? "big" : "small", 1.0});
  Placement p = MustBuild(nodes, 3);
  HashStream keys(2);
  for (int i = 0; i < 50000; ++i) {
    const OwnerList owners = p.Owners(keys.Next());
    ASSERT_EQ(owners.size(), 3u);
    absl::flat_hash_set<NodeId> distinct(owners.begin(), owners.end());
    ASSERT_EQ(distinct.size(), 3u);
    ASSERT_TRUE(distinct.contains(6)) << "the only node of domain 'small' must hold a replica";
  }
}

TEST(Placement, ReplicationAboveNodeCountGivesEveryNode) {
  Placement p = MustBuild(Nodes(2), 3);
  EXPECT_EQ(p.Owners(99).size(), 2u);
  NodeId out[8];
  EXPECT_EQ(p.Owners(99, absl::MakeSpan(out, 8)), 2u);
}

TEST(Placement, ShortOutputGetsThePrefix) {
  Placement p = MustBuild(Nodes(16), 3);
  HashStream keys(3);
  for (int i = 0; i < 1000; ++i) {
    const uint64_t h = keys.Next();
    const OwnerList all = p.Owners(h);
    NodeId out[2];
    ASSERT_EQ(p.Owners(h, absl::MakeSpan(out, 2)), 2u);
    EXPECT_EQ(out[0], all[0]);
    EXPECT_EQ(out[1], all[1]);
    EXPECT_EQ(p.Owners(h, absl::Span<NodeId>()), 0u);
  }
}

TEST(Placement, InputOrderDoesNotMatter) {
  auto nodes = Nodes(32);
  Placement a = MustBuild(nodes, 3);
  std::mt19937 rng(7);
  std::shuffle(nodes.begin(), nodes.end(), rng);
  Placement b = MustBuild(nodes, 3);
  HashStream keys(4);
  for (int i = 0; i < 10000; ++i) {
    const uint64_t h = keys.Next();
    ASSERT_EQ(a.Owners(h), b.Owners(h));
  }
}

const PlacementRange& RangeOf(const std::vector<PlacementRange>& ranges, uint64_t h) {
  auto it = std::upper_bound(ranges.begin(), ranges.end(), h,
                             [](uint64_t v, const PlacementRange& r) { return v < r.begin; });
  return *(it - 1);
}

TEST(Placement, RangesCoverTheSpaceAndMatchOwners) {
  for (uint32_t r : {1u, 3u}) {
    for (double eps : {0.0, 0.1}) {
      Placement p = MustBuild(Nodes(16), r, eps);
      const auto ranges = p.Ranges();
      ASSERT_FALSE(ranges.empty());
      EXPECT_EQ(ranges.front().begin, 0u);
      EXPECT_EQ(ranges.back().last, std::numeric_limits<uint64_t>::max());
      for (size_t i = 1; i < ranges.size(); ++i) {
        ASSERT_EQ(ranges[i].begin, ranges[i - 1].last + 1);
        ASSERT_NE(ranges[i].owners, ranges[i - 1].owners);
      }
      HashStream keys(5);
      for (int i = 0; i < 200000; ++i) {
        const uint64_t h = keys.Next();
        ASSERT_EQ(p.Owners(h), RangeOf(ranges, h).owners) << h;
      }
      // Both edges of a sample of ranges.
      for (size_t i = 0; i < ranges.size(); i += 97) {
        ASSERT_EQ(p.Owners(ranges[i].begin), ranges[i].owners);
        ASSERT_EQ(p.Owners(ranges[i].last), ranges[i].owners);
      }
    }
  }
}

// Counts every replica of `keys` hashes per node.
absl::flat_hash_map<NodeId, uint64_t> CountReplicas(const Placement& p, int keys, uint64_t seed) {
  absl::flat_hash_map<NodeId, uint64_t> count;
  HashStream stream(seed);
  NodeId out[kMaxReplication];
  for (int i = 0; i < keys; ++i) {
    const size_t n = p.Owners(stream.Next(), absl::MakeSpan(out));
    for (size_t k = 0; k < n; ++k) ++count[out[k]];
  }
  return count;
}

// max/mean keys per node over 2M keys, every replica counted, at most 1.05.
TEST(Placement, BalanceWithinFivePercent) {
  constexpr int kKeys = 2'000'000;
  for (uint32_t n : {4u, 16u, 64u, 256u}) {
    for (uint32_t r : {1u, 3u}) {
      Placement p = MustBuild(Nodes(n), r);
      const auto count = CountReplicas(p, kKeys, 42);
      ASSERT_EQ(count.size(), n);
      uint64_t max = 0;
      for (const auto& [id, c] : count) max = std::max(max, c);
      const double mean = static_cast<double>(kKeys) * r / n;
      EXPECT_LE(max / mean, 1.05) << "N=" << n << " R=" << r;
    }
  }
}

TEST(Placement, WeightsSetShares) {
  std::vector<PlacementNode> nodes = Nodes(8);
  nodes[0].weight = 2.0;  // twice the others
  nodes[1].weight = 0.5;
  Placement p = MustBuild(nodes, 1);
  const auto count = CountReplicas(p, 1'000'000, 9);
  const double unit = 1'000'000 / (2.0 + 0.5 + 6.0);
  EXPECT_NEAR(count.at(1) / unit, 2.0, 0.1);
  EXPECT_NEAR(count.at(2) / unit, 0.5, 0.05);
  EXPECT_NEAR(count.at(3) / unit, 1.0, 0.06);
}

// Moved replicas when one node joins: only to the new node, and at most
// 1.1x its ideal share R/(N+1) of the keys.
TEST(Placement, JoinMovesKeysOnlyToTheNewNode) {
  constexpr int kKeys = 1'000'000;
  for (uint32_t n : {4u, 16u, 64u, 256u}) {
    for (uint32_t r : {1u, 3u}) {
      Placement before = MustBuild(Nodes(n), r);
      Placement after = MustBuild(Nodes(n + 1), r);
      const NodeId joiner = n + 1;
      HashStream keys(11);
      uint64_t moved = 0;
      for (int i = 0; i < kKeys; ++i) {
        const uint64_t h = keys.Next();
        const OwnerList old_owners = before.Owners(h);
        const OwnerList new_owners = after.Owners(h);
        for (NodeId id : new_owners) {
          if (std::find(old_owners.begin(), old_owners.end(), id) != old_owners.end()) continue;
          ASSERT_EQ(id, joiner) << "N=" << n << " R=" << r << " hash " << h;
          ++moved;
        }
      }
      const double ideal = static_cast<double>(kKeys) * r / (n + 1);
      EXPECT_LE(moved / ideal, 1.1) << "N=" << n << " R=" << r;
      EXPECT_GE(moved / ideal, 0.9) << "N=" << n << " R=" << r;
    }
  }
}

TEST(Placement, LeaveMovesOnlyTheLeaversKeys) {
  constexpr int kKeys = 1'000'000;
  for (uint32_t n : {4u, 16u, 64u, 256u}) {
    for (uint32_t r : {1u, 3u}) {
      auto nodes = Nodes(n);
      const NodeId leaver = nodes[n / 2].id;
      Placement before = MustBuild(nodes, r);
      nodes.erase(nodes.begin() + n / 2);
      Placement after = MustBuild(nodes, r);
      HashStream keys(12);
      uint64_t moved = 0;
      for (int i = 0; i < kKeys; ++i) {
        const uint64_t h = keys.Next();
        const OwnerList old_owners = before.Owners(h);
        const OwnerList new_owners = after.Owners(h);
        const bool had_leaver =
            std::find(old_owners.begin(), old_owners.end(), leaver) != old_owners.end();
        if (!had_leaver) {
          ASSERT_EQ(old_owners, new_owners) << "N=" << n << " R=" << r << " hash " << h;
          continue;
        }
        for (NodeId id : new_owners) {
          if (std::find(old_owners.begin(), old_owners.end(), id) == old_owners.end()) ++moved;
        }
      }
      if (r <= n - 1) {
        const double ideal = static_cast<double>(kKeys) * r / n;
        EXPECT_LE(moved / ideal, 1.1) << "N=" << n << " R=" << r;
      }
    }
  }
}

// Bounded-load mode: no node's share of the hash space above
// ceil((1 + eps) * its fair share); owners still distinct.
TEST(Placement, BoundedLoadCapsEveryNode) {
  for (uint32_t r : {1u, 3u}) {
    std::vector<PlacementNode> nodes = Nodes(64);
    nodes[3].weight = 3.0;
    constexpr double kEps = 0.02;
    Placement p = MustBuild(nodes, r, kEps);
    double wsum = 0;
    for (const auto& n : nodes) wsum += n.weight;
    absl::flat_hash_map<NodeId, long double> share;
    for (const PlacementRange& range : p.Ranges()) {
      absl::flat_hash_set<NodeId> distinct(range.owners.begin(), range.owners.end());
      ASSERT_EQ(distinct.size(), r);
      for (NodeId id : range.owners) share[id] += static_cast<long double>(range.last - range.begin) + 1;
    }
    for (const auto& n : nodes) {
      const long double fair = n.weight / wsum * r * 18446744073709551616.0L;
      EXPECT_LE(share[n.id], std::ceil((1 + kEps) * fair) + 65536.0L) << "node " << n.id;
    }
    const auto count = CountReplicas(p, 1'000'000, 13);
    EXPECT_NEAR(count.at(4) / (1e6 * r * 3.0 / wsum), 1.0, 0.05);
  }
}

TEST(Placement, MembersFollowNodeStates) {
  ClusterMap map;
  map.nodes = {{1, "a:1", "", "r1", 100, NodeState::kJoining},
               {2, "a:2", "", "r2", 100, NodeState::kActive},
               {3, "a:3", "", "r3", 100, NodeState::kDraining},
               {4, "a:4", "", "r4", 100, NodeState::kDown},
               {5, "a:5", "", "r5", 0, NodeState::kLeft}};
  auto ids = [](const std::vector<PlacementNode>& nodes) {
    std::vector<NodeId> out;
    for (const auto& n : nodes) out.push_back(n.id);
    return out;
  };
  EXPECT_THAT(ids(Placement::ReadMembers(map)), ElementsAre(2, 3));
  EXPECT_THAT(ids(Placement::TargetMembers(map)), ElementsAre(1, 2));
  EXPECT_EQ(Placement::TargetMembers(map)[0].weight, 100.0);
  EXPECT_EQ(Placement::TargetMembers(map)[0].failure_domain, "r1");
  map.nodes[0].capacity_bytes = 0;  // unreported capacity still gives a valid weight
  EXPECT_GT(Placement::TargetMembers(map)[0].weight, 0.0);
}

TEST(Placement, SegmentHeadIsFirstBlockOfSegment) {
  std::vector<BlockKey> keys;
  for (uint64_t i = 0; i < 40; ++i) keys.push_back(BlockKey{i + 1, i});
  EXPECT_EQ(SegmentHead(keys, 0, 16), keys[0]);
  EXPECT_EQ(SegmentHead(keys, 15, 16), keys[0]);
  EXPECT_EQ(SegmentHead(keys, 16, 16), keys[16]);
  EXPECT_EQ(SegmentHead(keys, 39, 16), keys[32]);
  EXPECT_EQ(SegmentHead(keys, 5, 1), keys[5]);
}

// An independent, deliberately naive implementation of the scheme in
// docs/placement.md (every point in one sorted array, binary search, then the
// clockwise walk), so a faster Build or lookup cannot silently re-place keys.
class ReferenceRing {
 public:
  ReferenceRing(std::vector<PlacementNode> nodes, uint32_t r) {
    std::sort(nodes.begin(), nodes.end(), [](const auto& a, const auto& b) { return a.id < b.id; });
    double wmax = 0;
    for (const auto& n : nodes) wmax = std::max(wmax, n.weight);
    int e = 0;
    const double m = std::frexp(wmax, &e);
    const double ref = (m == 0.5) ? std::ldexp(1.0, e - 1) : std::ldexp(1.0, e);
    absl::flat_hash_map<std::string, uint32_t> doms;
    for (size_t i = 0; i < nodes.size(); ++i) {
      ids_.push_back(nodes[i].id);
      domain_.push_back(doms.try_emplace(nodes[i].failure_domain, doms.size()).first->second);
      const long long pts = std::max(1LL, std::llround(16384.0 * (nodes[i].weight / ref)));
      for (long long k = 0; k < pts; ++k) {
        uint64_t x = ((static_cast<uint64_t>(nodes[i].id) << 32) | static_cast<uint64_t>(k)) ^ 0x6b766672696e6731ULL;
        x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
        x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
        x ^= x >> 31;
        ring_.push_back((x >> 16 << 16) | i);
      }
    }
    std::sort(ring_.begin(), ring_.end());
    num_domains_ = doms.size();
    replicas_ = std::min<size_t>(r, nodes.size());
  }

  const std::vector<uint64_t>& ring() const { return ring_; }

  OwnerList Owners(uint64_t h) const {
    OwnerList out;
    if (ring_.empty()) return out;
    size_t j0 = std::lower_bound(ring_.begin(), ring_.end(), h >> 16 << 16) - ring_.begin();
    if (j0 == ring_.size()) j0 = 0;
    std::vector<size_t> picked;
    std::vector<uint32_t> used;
    const size_t need1 = std::min(replicas_, num_domains_);
    for (size_t s = 0, j = j0; s < ring_.size() && picked.size() < need1; ++s, j = (j + 1) % ring_.size()) {
      const size_t node = ring_[j] & 0xFFFF;
      if (std::find(used.begin(), used.end(), domain_[node]) != used.end()) continue;
      used.push_back(domain_[node]);
      picked.push_back(node);
    }
    for (size_t s = 0, j = j0; s < ring_.size() && picked.size() < replicas_; ++s, j = (j + 1) % ring_.size()) {
      const size_t node = ring_[j] & 0xFFFF;
      if (std::find(picked.begin(), picked.end(), node) == picked.end()) picked.push_back(node);
    }
    for (size_t node : picked) out.push_back(ids_[node]);
    return out;
  }

 private:
  std::vector<NodeId> ids_;
  std::vector<uint32_t> domain_;
  std::vector<uint64_t> ring_;
  size_t num_domains_ = 0;
  size_t replicas_ = 0;
};

TEST(Placement, MatchesReferenceWalk) {
  struct Case {
    std::vector<PlacementNode> nodes;
    uint32_t r;
  };
  std::vector<Case> cases;
  for (uint32_t r : {1u, 2u, 3u, 5u}) {
    cases.push_back({Nodes(1), r});
    cases.push_back({Nodes(2), r});
    cases.push_back({Nodes(5), r});    // 5 domains
    cases.push_back({Nodes(24), r});   // 8 domains
    cases.push_back({{{1, "a", 1.0}, {2, "a", 1.0}, {3, "b", 0.3}, {4, "a", 2.0}, {5, "c", 0.01}}, r});
    cases.push_back({{{10, "x", 1.0}, {20, "x", 1.0}, {30, "x", 1.0}}, r});  // one domain
    cases.push_back({{{7, "x", 1.0}, {8, "y", 1e-9}}, r});                  // one point for node 8
  }
  cases.push_back({Nodes(200), 3});
  cases.push_back({Nodes(64), 8});
  for (size_t c = 0; c < cases.size(); ++c) {
    const ReferenceRing ref(cases[c].nodes, cases[c].r);
    Placement p = MustBuild(cases[c].nodes, cases[c].r);
    HashStream keys(100 + c);
    std::vector<uint64_t> probes;
    for (int i = 0; i < 5000; ++i) probes.push_back(keys.Next());
    // Every arc's edges: at a point, just before it, and its last hash.
    const auto& ring = ref.ring();
    for (size_t j = 0; j < ring.size(); j += 1 + ring.size() / 2000) {
      const uint64_t pos = ring[j] >> 16 << 16;
      probes.insert(probes.end(), {pos, pos - 1, pos | 0xFFFF, pos + 0x10000});
    }
    probes.insert(probes.end(), {0, 0xFFFF, 0x10000, ~uint64_t{0}, ~uint64_t{0} << 16});
    std::vector<NodeId> batch(probes.size() * std::max<size_t>(p.replicas(), 1));
    ASSERT_EQ(p.OwnersBatch(probes, absl::MakeSpan(batch)), probes.size());
    for (size_t i = 0; i < probes.size(); ++i) {
      const OwnerList want = ref.Owners(probes[i]);
      ASSERT_EQ(p.Owners(probes[i]), want) << "case " << c << " hash " << probes[i];
      ASSERT_EQ(want.size(), p.replicas());
      for (size_t k = 0; k < want.size(); ++k) {
        ASSERT_EQ(batch[i * want.size() + k], want[k]) << "case " << c << " hash " << probes[i];
      }
    }
  }
}

TEST(Placement, OwnersBatchMatchesOwners) {
  for (uint32_t n : {0u, 3u, 16u, 256u}) {
    for (uint32_t r : {1u, 3u}) {
      for (double eps : {0.0, 0.1}) {
        if (eps > 0 && n > 64) continue;
        Placement p = MustBuild(Nodes(n), r, eps);
        const size_t t = p.replicas();
        ASSERT_EQ(t, std::min(r, n));
        HashStream keys(21);
        std::vector<uint64_t> hashes(5000);
        for (auto& h : hashes) h = keys.Next();
        std::vector<NodeId> out(hashes.size() * t);
        ASSERT_EQ(p.OwnersBatch(hashes, absl::MakeSpan(out)), hashes.size());
        for (size_t i = 0; i < hashes.size(); ++i) {
          const OwnerList want = p.Owners(hashes[i]);
          ASSERT_EQ(want.size(), t);
          for (size_t k = 0; k < t; ++k) ASSERT_EQ(out[i * t + k], want[k]) << "N=" << n << " R=" << r;
        }
        if (t > 0) {
          // A short output gets the hashes that fit, untouched beyond them.
          std::vector<NodeId> short_out(7 * t + t - 1, 12345);
          ASSERT_EQ(p.OwnersBatch(hashes, absl::MakeSpan(short_out)), 7u);
          for (size_t k = 7 * t; k < short_out.size(); ++k) EXPECT_EQ(short_out[k], 12345u);
        }
        EXPECT_EQ(p.OwnersBatch({}, absl::MakeSpan(out)), 0u);
      }
    }
  }
}

// Golden values: every client, agent and coordinator must compute the same
// owners from the same map. If these change, mixed-version clusters disagree
// on placement: don't change them without a migration story.
TEST(Placement, GoldenPlacementHash) {
  EXPECT_EQ(PlacementHash(0, BlockKey{0, 0}), 8327309166685288651ULL);
  EXPECT_EQ(PlacementHash(0x1234, BlockKey{0xdeadbeef, 42}), 3516103141064767874ULL);
  EXPECT_NE(PlacementHash(1, BlockKey{0xdeadbeef, 42}), PlacementHash(0x1234, BlockKey{0xdeadbeef, 42}));
}

TEST(Placement, GoldenOwners) {
  std::vector<PlacementNode> nodes = {{1, "r1", 1.0}, {2, "r1", 1.0}, {3, "r2", 2.0},
                                      {7, "r3", 1.0}, {9, "r2", 0.5}, {12, "r4", 1.0}};
  Placement p = MustBuild(nodes, 3);
  std::string got;
  HashStream keys(2024);
  for (int i = 0; i < 12; ++i) {
    for (NodeId id : p.Owners(keys.Next())) absl::StrAppend(&got, id, ",");
    got += ";";
  }
  EXPECT_EQ(got, "7,3,1,;9,12,2,;2,12,3,;12,3,7,;3,1,12,;1,7,12,;1,3,12,;3,1,7,;3,2,7,;9,7,1,;7,3,1,;3,7,2,;");
}

}  // namespace
}  // namespace kvf
