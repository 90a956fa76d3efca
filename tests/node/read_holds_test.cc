// ReadHolds (node/agent/read_holds.h) over a real shard store: a block a
// lookup reported survives the puts that would evict it, holds count no hits,
// the byte budget bounds them, and a disk-tier block is read back into memory.
#include "node/agent/read_holds.h"

#include <optional>
#include <vector>

#include "gtest/gtest.h"
#include "node/shard_store.h"
#include "tests/common/fake_clock.h"
#include "tests/node/temp_dir.h"

namespace kvf {
namespace {

constexpr uint64_t kKiB = 1024;
constexpr uint64_t kBlock = 4 * kKiB;  // 2 layers x 2 heads x 64 dims x 4 tokens x K,V x fp16

NamespaceSpec SmallNs() {
  NamespaceSpec s;
  s.model_id = "holds";
  s.layout = {.num_layers = 2, .num_kv_heads = 2, .head_dim = 64, .block_tokens = 4};
  return s;
}

BlockKey Key(uint64_t i) { return BlockKey{0x401d, i}; }

class ReadHoldsTest : public ::testing::Test {
 protected:
  // 64 KiB of memory: 16 blocks; LRU; optionally a disk tier.
  void Open(bool disk) {
    ShardStoreOptions o;
    o.host_bytes = 64 * kKiB;
    o.slab_bytes = 16 * kKiB;
    o.min_page_bytes = kKiB;
    o.eviction_policy = "lru";
    o.default_lease = absl::Seconds(5);
    o.clock = &clock_;
    if (disk) {
      o.disk_path = dir_.path();
      o.disk_bytes = 1024 * kKiB + 4 * kKiB;
      o.disk_segment_bytes = 64 * kKiB;
    }
    auto store = ShardStore::Create(o);
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(store).value();
    auto ns = store_->RegisterNamespace(SmallNs());
    ASSERT_TRUE(ns.ok());
    ns_ = *ns;
  }
  void Put(uint64_t i) {
    ASSERT_TRUE(store_->Put(ns_, Key(i), std::vector<std::byte>(kBlock, std::byte(i))).ok()) << i;
  }
  // What an agent's Lookup handler hands to ReadHolds.
  std::vector<std::optional<BlockInfo>> Look(const std::vector<BlockKey>& keys) {
    return store_->Lookup(ns_, keys);
  }

  FakeClock clock_;
  TempDir dir_;
  std::unique_ptr<ShardStore> store_;
  NamespaceId ns_ = 0;
};

TEST_F(ReadHoldsTest, AHeldBlockSurvivesThePutsThatWouldEvictIt) {
  Open(/*disk=*/false);
  for (uint64_t i = 0; i < 16; ++i) Put(i);
  ReadHolds holds(store_.get(), ReadHoldOptions{absl::Seconds(2), 64 * kKiB});
  const std::vector<BlockKey> looked{Key(0), Key(1)};
  holds.OnLookup(ns_, looked, Look(looked));
  EXPECT_EQ(holds.stats().held, 2u);
  const uint64_t hits = store_->Stats().hits;
  for (uint64_t i = 16; i < 40; ++i) Put(i);  // LRU would evict 0 and 1 first
  auto after = Look(looked);
  EXPECT_TRUE(after[0].has_value() && after[1].has_value()) << "held blocks were evicted";
  EXPECT_FALSE(Look({Key(2)})[0].has_value()) << "an unheld block of the same age survived";
  EXPECT_EQ(store_->Stats().hits, hits) << "a hold counted as a read";
  // Once the hold is over they are ordinary blocks again.
  clock_.Advance(absl::Seconds(3));
  store_->ExpireLeases();
  for (uint64_t i = 40; i < 60; ++i) Put(i);
  EXPECT_FALSE(Look({Key(0)})[0].has_value());
}

TEST_F(ReadHoldsTest, TheByteBudgetBoundsHolds) {
  Open(/*disk=*/false);
  for (uint64_t i = 0; i < 8; ++i) Put(i);
  ReadHolds holds(store_.get(), ReadHoldOptions{absl::Seconds(2), 3 * kBlock});
  std::vector<BlockKey> looked;
  for (uint64_t i = 0; i < 8; ++i) looked.push_back(Key(i));
  holds.OnLookup(ns_, looked, Look(looked));
  EXPECT_EQ(holds.stats().held, 3u);
  EXPECT_EQ(holds.stats().skipped, 5u);
  EXPECT_EQ(holds.held_bytes(), 3 * kBlock);
  EXPECT_EQ(store_->Stats().pinned_entries, 3u);
}

TEST_F(ReadHoldsTest, TheGetReleasesTheHoldAndItsBudget) {
  Open(/*disk=*/false);
  for (uint64_t i = 0; i < 4; ++i) Put(i);
  ReadHolds holds(store_.get(), ReadHoldOptions{absl::Seconds(2), 2 * kBlock});
  const std::vector<BlockKey> first{Key(0), Key(1)}, second{Key(2), Key(3)};
  holds.OnLookup(ns_, first, Look(first));
  EXPECT_EQ(store_->Stats().pinned_entries, 2u);
  holds.OnLookup(ns_, second, Look(second));  // no budget left
  EXPECT_EQ(holds.stats().skipped, 2u);
  holds.Release(ns_, first);  // their Get came
  EXPECT_EQ(holds.stats().released, 2u);
  EXPECT_EQ(holds.held_bytes(), 0u);
  EXPECT_EQ(store_->Stats().pinned_entries, 0u);
  holds.OnLookup(ns_, second, Look(second));  // the budget is back
  EXPECT_EQ(holds.stats().held, 4u);
  // A block looked up twice is held once.
  holds.OnLookup(ns_, second, Look(second));
  EXPECT_EQ(holds.stats().held, 4u);
  EXPECT_EQ(store_->Stats().pinned_entries, 2u);
}

TEST_F(ReadHoldsTest, BlocksNotReportedAreNotHeld) {
  Open(/*disk=*/false);
  Put(0);
  ReadHolds holds(store_.get(), ReadHoldOptions{absl::Seconds(2), 64 * kKiB});
  const std::vector<BlockKey> looked{Key(0), Key(99)};
  std::vector<std::optional<BlockInfo>> found = Look(looked);
  found[0].reset();  // e.g. refused as stale by the data plane
  holds.OnLookup(ns_, looked, found);
  EXPECT_EQ(holds.stats().held, 0u);
  EXPECT_EQ(store_->Stats().pinned_entries, 0u);
}

TEST_F(ReadHoldsTest, ADiskBlockIsReadBackIntoMemory) {
  Open(/*disk=*/true);
  for (uint64_t i = 0; i < 40; ++i) Put(i);  // 0.. were demoted to disk
  const std::vector<BlockKey> looked{Key(0)};
  auto found = Look(looked);
  ASSERT_TRUE(found[0].has_value());
  ASSERT_EQ(found[0]->tier, TierKind::kDisk);
  ReadHolds holds(store_.get(), ReadHoldOptions{absl::Seconds(2), 64 * kKiB});
  holds.OnLookup(ns_, looked, found);
  holds.Drain();
  EXPECT_EQ(holds.stats().prefetched, 1u);
  auto now = Look(looked);
  ASSERT_TRUE(now[0].has_value());
  EXPECT_NE(now[0]->tier, TierKind::kDisk);
  std::vector<std::byte> buf(kBlock);
  ASSERT_TRUE(store_->Get(ns_, Key(0), absl::MakeSpan(buf)).ok());
  EXPECT_EQ(buf, std::vector<std::byte>(kBlock, std::byte(0)));
}

TEST_F(ReadHoldsTest, OffMeansNothingIsHeld) {
  Open(/*disk=*/false);
  Put(0);
  ReadHolds holds(store_.get(), ReadHoldOptions{absl::ZeroDuration(), 64 * kKiB});
  const std::vector<BlockKey> looked{Key(0)};
  holds.OnLookup(ns_, looked, Look(looked));
  EXPECT_EQ(holds.stats().held, 0u);
  EXPECT_EQ(store_->Stats().pinned_entries, 0u);
}

}  // namespace
}  // namespace kvf
