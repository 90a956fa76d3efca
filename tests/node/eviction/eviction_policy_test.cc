// One conformance suite for every policy EvictionPolicyNames() lists, then
// the behaviour that makes each policy what it is.
#include "node/eviction_policy.h"

#include <algorithm>
#include <cstdint>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace kvf {
namespace {

BlockKey Key(uint64_t n) { return BlockKey{n + 1, n * 0x9e3779b97f4a7c15ULL + 7}; }

EvictionHint Hint(uint64_t key, uint32_t depth = 0, std::optional<uint64_t> parent = {}) {
  EvictionHint h;
  h.key = Key(key);
  h.parent = parent ? Key(*parent) : BlockKey::Root();
  h.depth = depth;
  h.bytes = 1024;
  return h;
}

std::unique_ptr<EvictionPolicy> Make(std::string_view name, size_t capacity = 64) {
  auto policy = CreateEvictionPolicy(name, capacity);
  EXPECT_TRUE(policy.ok()) << policy.status();
  return *std::move(policy);
}

bool Any(EntryId) { return true; }

TEST(EvictionPolicyFactory, NamesCreateAndDefaultIsFirst) {
  const auto names = EvictionPolicyNames();
  ASSERT_FALSE(names.empty());
  EXPECT_EQ(names.front(), "lru");
  for (std::string_view name : names) {
    auto policy = CreateEvictionPolicy(name, 16);
    ASSERT_TRUE(policy.ok()) << name << ": " << policy.status();
    EXPECT_EQ((*policy)->name(), name);
    EXPECT_EQ((*policy)->size(), 0u);
  }
}

TEST(EvictionPolicyFactory, UnknownNameIsInvalidArgument) {
  auto policy = CreateEvictionPolicy("clairvoyant", 16);
  EXPECT_EQ(policy.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(policy.status().message().find("lru"), std::string::npos);
}

class EvictionConformance : public ::testing::TestWithParam<std::string_view> {};

TEST_P(EvictionConformance, EmptyEvictsNothing) {
  auto p = Make(GetParam());
  EXPECT_EQ(p->Evict(Any), std::nullopt);
}

TEST_P(EvictionConformance, EvictsEveryInsertedEntryExactlyOnce) {
  auto p = Make(GetParam());
  for (EntryId id = 0; id < 50; ++id) p->Insert(id, Hint(id));
  EXPECT_EQ(p->size(), 50u);
  std::set<EntryId> seen;
  for (int i = 0; i < 50; ++i) {
    auto v = p->Evict(Any);
    ASSERT_TRUE(v.has_value());
    EXPECT_LT(*v, 50u);
    EXPECT_TRUE(seen.insert(*v).second) << "evicted twice: " << *v;
    EXPECT_EQ(p->size(), 49u - i);
  }
  EXPECT_EQ(p->Evict(Any), std::nullopt);
}

TEST_P(EvictionConformance, NeverReturnsErasedEntries) {
  auto p = Make(GetParam());
  for (EntryId id = 0; id < 20; ++id) p->Insert(id, Hint(id));
  for (EntryId id = 0; id < 20; id += 2) p->Erase(id);
  EXPECT_EQ(p->size(), 10u);
  for (int i = 0; i < 10; ++i) {
    auto v = p->Evict(Any);
    ASSERT_TRUE(v.has_value());
    EXPECT_EQ(*v % 2, 1u);
  }
  EXPECT_EQ(p->Evict(Any), std::nullopt);
}

TEST_P(EvictionConformance, SkipsPinnedAndKeepsThemTracked) {
  auto p = Make(GetParam());
  for (EntryId id = 0; id < 10; ++id) p->Insert(id, Hint(id));
  for (EntryId id = 0; id < 10; ++id) p->Touch(id);
  auto unpinned = [](EntryId id) { return id >= 7; };
  std::set<EntryId> evicted;
  for (int i = 0; i < 3; ++i) {
    auto v = p->Evict(unpinned);
    ASSERT_TRUE(v.has_value());
    EXPECT_GE(*v, 7u);
    evicted.insert(*v);
  }
  EXPECT_EQ(evicted.size(), 3u);
  EXPECT_EQ(p->Evict(unpinned), std::nullopt) << "only pinned entries remain";
  EXPECT_EQ(p->size(), 7u);
  // Unpinned again, they are all still there to evict.
  for (int i = 0; i < 7; ++i) {
    auto v = p->Evict(Any);
    ASSERT_TRUE(v.has_value());
    EXPECT_LT(*v, 7u);
  }
}

TEST_P(EvictionConformance, AllPinnedReturnsNullopt) {
  auto p = Make(GetParam());
  for (EntryId id = 0; id < 8; ++id) p->Insert(id, Hint(id));
  p->Touch(3);
  p->Touch(3);
  EXPECT_EQ(p->Evict([](EntryId) { return false; }), std::nullopt);
  EXPECT_EQ(p->size(), 8u);
}

TEST_P(EvictionConformance, ReusesIdsAfterEviction) {
  auto p = Make(GetParam(), 4);
  uint64_t next_key = 0;
  for (EntryId id = 0; id < 4; ++id) p->Insert(id, Hint(next_key++));
  for (int round = 0; round < 100; ++round) {
    auto v = p->Evict(Any);
    ASSERT_TRUE(v.has_value());
    ASSERT_LT(*v, 4u);
    p->Insert(*v, Hint(next_key++));
    p->Touch(*v);
    EXPECT_EQ(p->size(), 4u);
  }
}

TEST_P(EvictionConformance, GrowsPastCapacityHint) {
  auto p = Make(GetParam(), 2);
  for (EntryId id = 0; id < 1000; ++id) p->Insert(id, Hint(id));
  EXPECT_EQ(p->size(), 1000u);
  std::set<EntryId> seen;
  while (auto v = p->Evict(Any)) seen.insert(*v);
  EXPECT_EQ(seen.size(), 1000u);
}

// Random operations checked against a model: the set of tracked ids, and a
// random pin set.
TEST_P(EvictionConformance, RandomOperationsMatchTrackedSetModel) {
  std::mt19937_64 rng(42);
  constexpr EntryId kIds = 200;
  auto p = Make(GetParam(), kIds);
  std::set<EntryId> tracked;
  std::vector<bool> pinned(kIds, false);
  uint64_t next_key = 0;
  EntryId last = 0;
  for (int step = 0; step < 200000; ++step) {
    const int op = static_cast<int>(rng() % 100);
    const EntryId id = static_cast<EntryId>(rng() % kIds);
    if (op < 35) {
      if (tracked.count(id) == 0) {
        // Often extend the chain of the entry handled last, like the store.
        const bool chained = tracked.count(last) > 0 && rng() % 2 == 0;
        p->Insert(id, chained ? Hint(next_key, 1 + rng() % 30, next_key - 1) : Hint(next_key));
        ++next_key;
        tracked.insert(id);
        last = id;
      }
    } else if (op < 65) {
      if (tracked.count(id) > 0) {
        p->Touch(id);
        last = id;
      }
    } else if (op < 72) {
      if (tracked.count(id) > 0) {
        p->Erase(id);
        tracked.erase(id);
      }
    } else if (op < 78) {
      pinned[id] = !pinned[id];
    } else {
      bool any_evictable = false;
      for (EntryId t : tracked) any_evictable |= !pinned[t];
      auto v = p->Evict([&](EntryId e) {
        EXPECT_TRUE(tracked.count(e) > 0) << "asked about untracked " << e;
        return !pinned[e];
      });
      if (v.has_value()) {
        ASSERT_TRUE(tracked.count(*v) > 0) << "evicted untracked " << *v;
        ASSERT_FALSE(pinned[*v]) << "evicted pinned " << *v;
        tracked.erase(*v);
      } else {
        ASSERT_FALSE(any_evictable) << "nullopt with evictable entries at step " << step;
      }
    }
    ASSERT_EQ(p->size(), tracked.size()) << "step " << step;
  }
}

INSTANTIATE_TEST_SUITE_P(AllPolicies, EvictionConformance,
                         ::testing::ValuesIn(EvictionPolicyNames()),
                         [](const auto& info) {
                           std::string name(info.param);
                           std::replace(name.begin(), name.end(), '-', '_');
                           return name;
                         });

std::vector<EntryId> Drain(EvictionPolicy& p) {
  std::vector<EntryId> order;
  while (auto v = p.Evict(Any)) order.push_back(*v);
  return order;
}

TEST(Lru, EvictsLeastRecentlyUsed) {
  auto p = Make("lru");
  for (EntryId id = 0; id < 4; ++id) p->Insert(id, Hint(id));
  p->Touch(0);
  p->Touch(2);
  EXPECT_EQ(Drain(*p), (std::vector<EntryId>{1, 3, 0, 2}));
}

TEST(Fifo, IgnoresTouches) {
  auto p = Make("fifo");
  for (EntryId id = 0; id < 4; ++id) p->Insert(id, Hint(id));
  p->Touch(0);
  p->Touch(0);
  p->Touch(1);
  EXPECT_EQ(Drain(*p), (std::vector<EntryId>{0, 1, 2, 3}));
}

TEST(Lfu, KeepsTheFrequentOne) {
  auto p = Make("lfu");
  for (EntryId id = 0; id < 4; ++id) p->Insert(id, Hint(id));
  for (int i = 0; i < 5; ++i) p->Touch(0);
  p->Touch(2);
  p->Touch(3);  // 2 and 3 tie on count: the less recent (2) goes first
  EXPECT_EQ(Drain(*p), (std::vector<EntryId>{1, 2, 3, 0}));
}

TEST(Lfu, AgeingLetsNewHotEntriesWin) {
  auto p = Make("lfu");
  p->Insert(0, Hint(0));
  for (int i = 0; i < 31; ++i) p->Touch(0);  // saturated long ago
  p->Insert(1, Hint(1));
  // Many touches on 1 halve 0's count repeatedly.
  for (int i = 0; i < 2000; ++i) p->Touch(1);
  EXPECT_EQ(p->Evict(Any), 0u);
}

TEST(S3Fifo, EvictsOneHitWondersFirst) {
  auto p = Make("s3fifo");
  // 0..9 are hit once after insertion; 10..19 are never read again.
  for (EntryId id = 0; id < 20; ++id) {
    p->Insert(id, Hint(id));
    if (id < 10) p->Touch(id);
  }
  for (int i = 0; i < 10; ++i) {
    auto v = p->Evict(Any);
    ASSERT_TRUE(v.has_value());
    EXPECT_GE(*v, 10u) << "evicted an entry that was hit";
  }
}

TEST(S3Fifo, ReadmitsGhostsToMain) {
  auto p = Make("s3fifo");
  for (EntryId id = 0; id < 20; ++id) p->Insert(id, Hint(id));
  // Entry with key 0 is evicted first (one-hit, oldest in small) into the ghost.
  auto first = p->Evict(Any);
  ASSERT_TRUE(first.has_value());
  EXPECT_EQ(*first, 0u);
  // It comes back: as a ghost it goes to main, so it outlives the small queue
  // even though it is the newest entry and never hit.
  p->Insert(0, Hint(0));
  std::vector<EntryId> order = Drain(*p);
  ASSERT_EQ(order.size(), 20u);
  EXPECT_EQ(order.back(), 0u);
}

// A chain 0 <- 1 <- 2 <- 3 stored in order (as the store does on a miss),
// then another, newer chain; the old chain must lose its tail before its head.
TEST(ChainAware, EvictsAChainsTailBeforeItsHead) {
  for (std::string_view name : {"chain", "chain-lru"}) {
    SCOPED_TRACE(name);
    auto p = Make(name);
    for (EntryId d = 0; d < 4; ++d) {
      p->Insert(d, Hint(d, d, d == 0 ? std::nullopt : std::optional<uint64_t>(d - 1)));
    }
    for (EntryId d = 0; d < 4; ++d) {
      p->Insert(10 + d,
                Hint(10 + d, d, d == 0 ? std::nullopt : std::optional<uint64_t>(10 + d - 1)));
    }
    std::vector<EntryId> order = Drain(*p);
    ASSERT_EQ(order.size(), 8u);
    EXPECT_EQ(std::vector<EntryId>(order.begin(), order.begin() + 4),
              (std::vector<EntryId>{3, 2, 1, 0}));
  }
}

TEST(ChainAware, HitPrefixIsKeptOverColdChain) {
  auto p = Make("chain");
  // Cold chain A (ids 0..3), then chain B (ids 10..13).
  for (EntryId d = 0; d < 4; ++d) {
    p->Insert(d, Hint(d, d, d == 0 ? std::nullopt : std::optional<uint64_t>(d - 1)));
  }
  for (EntryId d = 0; d < 4; ++d) {
    p->Insert(10 + d,
              Hint(10 + d, d, d == 0 ? std::nullopt : std::optional<uint64_t>(10 + d - 1)));
  }
  // A's prefix 0..1 is read again (a new turn of that conversation).
  p->Touch(0);
  p->Touch(1);
  std::vector<EntryId> order = Drain(*p);
  ASSERT_EQ(order.size(), 8u);
  // The read prefix outlives everything, head last.
  EXPECT_EQ(order[6], 1u);
  EXPECT_EQ(order[7], 0u);
}

}  // namespace
}  // namespace kvf
