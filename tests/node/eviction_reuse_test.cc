// The reuse-learning policy ("reuse") and its history table. The contract
// every policy keeps is checked by tests/node/eviction/eviction_policy_test.cc
// (it runs over EvictionPolicyNames()); these tests check what makes this one
// different.
#include <cstdint>
#include <memory>
#include <optional>
#include <set>
#include <vector>

#include "gtest/gtest.h"
#include "node/eviction/internal/policies.h"
#include "node/eviction/internal/reuse_history.h"
#include "node/eviction_policy.h"

namespace kvf {
namespace {

using internal::ReuseHistory;

BlockKey Key(uint64_t n) { return BlockKey{n + 1, n * 0x9e3779b97f4a7c15ULL + 7}; }

bool Any(EntryId) { return true; }

std::unique_ptr<EvictionPolicy> MakeReuse(size_t capacity) {
  auto policy = CreateEvictionPolicy("reuse", capacity);
  EXPECT_TRUE(policy.ok()) << policy.status();
  return *std::move(policy);
}

// A tiny cache driven with the store's protocol: per request, touch the
// cached prefix, then insert (or touch) the rest, evicting when full.
class Cache {
 public:
  Cache(std::unique_ptr<EvictionPolicy> policy, size_t capacity)
      : policy_(std::move(policy)), capacity_(capacity) {}

  // Returns the number of leading blocks that were cached.
  size_t Request(const std::vector<uint64_t>& chain) {
    size_t i = 0;
    for (; i < chain.size() && Find(chain[i]); ++i) policy_->Touch(*Find(chain[i]));
    const size_t hits = i;
    for (; i < chain.size(); ++i) {
      if (auto id = Find(chain[i])) {
        policy_->Touch(*id);
        continue;
      }
      EntryId id;
      if (slots_.size() < capacity_) {
        id = static_cast<EntryId>(slots_.size());
        slots_.push_back(chain[i]);
      } else {
        std::optional<EntryId> victim = policy_->Evict(Any);
        EXPECT_TRUE(victim.has_value());
        id = *victim;
        slots_[id] = chain[i];
      }
      EvictionHint hint;
      hint.key = Key(chain[i]);
      hint.parent = i == 0 ? BlockKey::Root() : Key(chain[i - 1]);
      hint.depth = static_cast<uint32_t>(i);
      hint.bytes = 1;
      policy_->Insert(id, hint);
    }
    return hits;
  }

  bool Cached(uint64_t block) const { return Find(block).has_value(); }
  EvictionPolicy& policy() { return *policy_; }

 private:
  std::optional<EntryId> Find(uint64_t block) const {
    for (size_t s = 0; s < slots_.size(); ++s) {
      if (slots_[s] == block) return static_cast<EntryId>(s);
    }
    return std::nullopt;
  }

  std::unique_ptr<EvictionPolicy> policy_;
  size_t capacity_;
  std::vector<uint64_t> slots_;  // slot -> block
};

TEST(ReuseEviction, IsListedAndNamed) {
  auto policy = MakeReuse(16);
  EXPECT_EQ(policy->name(), "reuse");
  bool listed = false;
  for (std::string_view n : EvictionPolicyNames()) listed |= n == "reuse";
  EXPECT_TRUE(listed);
}

TEST(ReuseEviction, ChainLosesItsTailFirst) {
  auto p = MakeReuse(16);
  // One request of 4 blocks, then a second request of 2 more blocks of an
  // unrelated chain: the first chain's blocks go deepest first.
  for (uint32_t d = 0; d < 4; ++d) {
    EvictionHint h;
    h.key = Key(d);
    h.parent = d == 0 ? BlockKey::Root() : Key(d - 1);
    h.depth = d;
    p->Insert(d, h);
  }
  // Touch the chain again as a follow-up request would (head to tail), so no
  // block is the partial tail of the last request.
  for (EntryId d = 0; d < 4; ++d) p->Touch(d);
  std::vector<EntryId> order;
  while (auto v = p->Evict(Any)) order.push_back(*v);
  EXPECT_EQ(order, (std::vector<EntryId>{3, 2, 1, 0}));
}

TEST(ReuseEviction, PartialLastBlockOfARequestGoesFirst) {
  auto p = MakeReuse(16);
  auto put = [&](EntryId id, uint64_t key, uint32_t depth, std::optional<uint64_t> parent) {
    EvictionHint h;
    h.key = Key(key);
    h.parent = parent ? Key(*parent) : BlockKey::Root();
    h.depth = depth;
    p->Insert(id, h);
  };
  // Request A: blocks 0,1,2 (2 is its partial tail). Request B: 10,11.
  put(0, 0, 0, {});
  put(1, 1, 1, 0);
  put(2, 2, 2, 1);
  put(3, 10, 0, {});
  put(4, 11, 1, 10);
  // A new request starts: B's last block is a partial tail too.
  put(5, 20, 0, {});
  const std::optional<EntryId> first = p->Evict(Any);
  ASSERT_TRUE(first.has_value());
  EXPECT_TRUE(*first == 2 || *first == 4) << *first;
}

TEST(ReuseEviction, PinnedEntriesAreSkippedInPlace) {
  auto p = MakeReuse(16);
  for (EntryId id = 0; id < 8; ++id) {
    EvictionHint h;
    h.key = Key(id);
    p->Insert(id, h);
  }
  std::set<EntryId> evicted;
  auto not_even = [](EntryId id) { return id % 2 == 1; };
  while (auto v = p->Evict(not_even)) {
    EXPECT_EQ(*v % 2, 1u);
    evicted.insert(*v);
  }
  EXPECT_EQ(evicted, (std::set<EntryId>{1, 3, 5, 7}));
  EXPECT_EQ(p->size(), 4u);
  std::set<EntryId> rest;
  while (auto v = p->Evict(Any)) rest.insert(*v);
  EXPECT_EQ(rest, (std::set<EntryId>{0, 2, 4, 6}));
}

// Prompts that come back keep being served while a stream of one-off requests
// passes through: the policy learns that blocks that were read again are read
// again, and one-off blocks are not. LRU serves none of them here: the one-off
// traffic between two reads of a prompt exceeds the cache.
TEST(ReuseEviction, LearnsToKeepReusedPromptsThroughOneOffTraffic) {
  constexpr size_t kCapacity = 256;
  constexpr int kConversations = 6;
  constexpr int kTurnBlocks = 8;
  auto run = [&](std::unique_ptr<EvictionPolicy> policy) {
    Cache cache(std::move(policy), kCapacity);
    // Each conversation re-reads the same prompt (a shared document).
    std::vector<std::vector<uint64_t>> conv(kConversations);
    for (int c = 0; c < kConversations; ++c) {
      for (int b = 0; b < kTurnBlocks; ++b) conv[c].push_back(1000000 + c * 100000 + b);
    }
    uint64_t fresh = 0;
    size_t late_hits = 0;
    for (int round = 0; round < 200; ++round) {
      for (int c = 0; c < kConversations; ++c) {
        const size_t hits = cache.Request(conv[c]);
        if (round >= 150) late_hits += hits;
        // One-off requests in between: 60 new blocks, never seen again.
        for (int k = 0; k < 15; ++k) {
          cache.Request({fresh, fresh + 1, fresh + 2, fresh + 3});
          fresh += 4;
        }
      }
    }
    return late_hits;
  };
  const size_t reuse_hits = run(MakeReuse(kCapacity));
  auto lru = CreateEvictionPolicy("lru", kCapacity);
  ASSERT_TRUE(lru.ok());
  const size_t lru_hits = run(*std::move(lru));
  EXPECT_EQ(lru_hits, 0u);
  EXPECT_GT(reuse_hits, 0u);
}

TEST(ReuseHistory, RemembersTheLatestAccessAndForgetsTheOldest) {
  ReuseHistory h(16);
  for (uint64_t k = 1; k <= 16; ++k) EXPECT_FALSE(h.Record(k, {k, 1}).has_value());
  ASSERT_NE(h.Find(1), nullptr);
  // Re-recording the oldest key while full is not forgetting it.
  EXPECT_FALSE(h.Record(1, {17, 2}).has_value());
  EXPECT_EQ(h.Find(1)->time, 17u);
  EXPECT_EQ(h.Find(1)->cls, 2);
  // The next record forgets key 2, now the oldest.
  std::optional<ReuseHistory::Access> gone = h.Record(100, {18, 0});
  ASSERT_TRUE(gone.has_value());
  EXPECT_EQ(gone->time, 2u);
  EXPECT_EQ(h.Find(2), nullptr);
  // Key 3, now the oldest, is re-recorded: nothing is forgotten.
  EXPECT_FALSE(h.Record(3, {19, 0}).has_value());
  EXPECT_EQ(h.Find(3)->time, 19u);
  EXPECT_NE(h.Find(1), nullptr);
}

TEST(ReuseHistory, ForgetBeforeReportsEachForgottenKeyOnce) {
  ReuseHistory h(64);
  for (uint64_t k = 1; k <= 10; ++k) h.Record(k, {k * 10, 0});
  h.Record(3, {200, 0});  // key 3 is recent again
  std::vector<uint64_t> times;
  h.ForgetBefore(60, [&](const ReuseHistory::Access& a) { times.push_back(a.time); });
  EXPECT_EQ(times, (std::vector<uint64_t>{10, 20, 40, 50}));
  EXPECT_NE(h.Find(3), nullptr);
  EXPECT_EQ(h.Find(1), nullptr);
  EXPECT_NE(h.Find(6), nullptr);
}

TEST(ReuseHistory, ReclassifyAndGrowKeepWhatIsRemembered) {
  ReuseHistory h(16);
  for (uint64_t k = 1; k <= 12; ++k) h.Record(k, {k, 1});
  h.Reclassify(5, 7);
  h.SetCapacity(1000);
  EXPECT_GE(h.capacity(), 1000u);
  size_t live = 0;
  h.ForEach([&](const ReuseHistory::Access&) { ++live; });
  EXPECT_EQ(live, 12u);
  ASSERT_NE(h.Find(5), nullptr);
  EXPECT_EQ(h.Find(5)->cls, 7);
  EXPECT_EQ(h.Find(12)->time, 12u);
}

}  // namespace
}  // namespace kvf
