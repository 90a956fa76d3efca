// The shard store's device tier (docs/shard-store.md, "Device tier"), over a
// fake device tier in host memory: no GPU needed.
#include <atomic>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "node/shard_store.h"
#include "tests/common/fake_clock.h"
#include "tests/node/fake_device_tier.h"

namespace kvf {
namespace {

constexpr uint64_t kKiB = 1024;
constexpr uint64_t kBlock = 4 * kKiB;

// 2 layers x 2 heads x 64 dims x 4 tokens x K,V x fp16 = 4 KiB per block.
NamespaceSpec SmallNs() {
  NamespaceSpec s;
  s.model_id = "tiny";
  s.layout = {.num_layers = 2, .num_kv_heads = 2, .head_dim = 64, .block_tokens = 4};
  s.tp_size = 1;
  return s;
}

BlockKey Key(uint64_t i) { return BlockKey{0xdef, i}; }

std::vector<std::byte> Payload(uint64_t i, uint64_t salt = 0) {
  std::vector<std::byte> out(kBlock);
  std::mt19937_64 rng(i * 1000003 + salt * 7919 + 1);
  for (auto& b : out) b = std::byte(rng());
  return out;
}

// Device 16 KiB (4 blocks) in front of host 32 KiB (8 blocks). The store's
// demotion batch is one page at this size, so each put that needs room in
// the device tier moves exactly one block down.
class DeviceTierTest : public ::testing::Test {
 protected:
  void SetUp() override { Open(); }

  void Open(std::string policy = "lru") {
    ShardStoreOptions o;
    o.host_bytes = 32 * kKiB;
    o.device_bytes = 16 * kKiB;
    o.device_tier_factory = [this](uint64_t bytes) -> absl::StatusOr<std::unique_ptr<MemoryTier>> {
      auto tier = std::make_unique<FakeDeviceTier>(bytes);
      device_ = tier.get();
      return tier;
    };
    o.pin_host = false;
    o.slab_bytes = 16 * kKiB;
    o.min_page_bytes = kKiB;
    o.eviction_policy = std::move(policy);
    o.default_lease = absl::Seconds(5);
    o.clock = &clock_;
    auto store = ShardStore::Create(o);
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(store).value();
    ns_ = *store_->RegisterNamespace(SmallNs());
  }

  void Put(uint64_t i, uint64_t salt = 0) {
    clock_.Advance(absl::Milliseconds(1));
    const auto data = Payload(i, salt);
    auto put = store_->Put(ns_, Key(i), data);
    ASSERT_TRUE(put.ok()) << put.status();
  }

  std::optional<TierKind> TierOf(uint64_t i) {
    const BlockKey k = Key(i);
    std::optional<BlockInfo> info = store_->Lookup(ns_, {&k, 1})[0];
    if (!info) return std::nullopt;
    return info->tier;
  }

  bool Holds(uint64_t i, uint64_t salt = 0) {
    std::vector<std::byte> buf(kBlock);
    auto got = store_->Get(ns_, Key(i), absl::MakeSpan(buf));
    return got.ok() && buf == Payload(i, salt);
  }

  const TierStats& Tier(const ShardStoreStats& s, TierKind kind) {
    for (const TierStats& t : s.tiers) {
      if (t.kind == kind) return t;
    }
    ADD_FAILURE() << "no tier " << TierName(kind);
    return s.tiers.front();
  }

  FakeClock clock_;
  FakeDeviceTier* device_ = nullptr;  // owned by the store
  std::unique_ptr<ShardStore> store_;
  NamespaceId ns_ = 0;
};

TEST_F(DeviceTierTest, BlocksFillTheDeviceTierFirst) {
  for (uint64_t i = 0; i < 4; ++i) Put(i);
  const ShardStoreStats s = store_->Stats();
  ASSERT_EQ(s.tiers.size(), 2u);
  EXPECT_EQ(s.tiers[0].kind, TierKind::kDevice);
  EXPECT_EQ(s.tiers[0].blocks, 4u);
  EXPECT_EQ(s.tiers[0].stored_bytes, 4 * kBlock);
  EXPECT_EQ(s.tiers[1].kind, TierKind::kHost);
  EXPECT_EQ(s.tiers[1].blocks, 0u);
  for (uint64_t i = 0; i < 4; ++i) EXPECT_EQ(TierOf(i), TierKind::kDevice) << i;
  EXPECT_EQ(device_->writes(), 4u);
}

TEST_F(DeviceTierTest, PressureDemotesTheOldestDeviceBlocksToHostWithTheirBytes) {
  for (uint64_t i = 0; i < 8; ++i) Put(i);
  // The four oldest went down; the newest four are on the device.
  for (uint64_t i = 0; i < 4; ++i) EXPECT_EQ(TierOf(i), TierKind::kHost) << i;
  for (uint64_t i = 4; i < 8; ++i) EXPECT_EQ(TierOf(i), TierKind::kDevice) << i;
  const ShardStoreStats s = store_->Stats();
  EXPECT_EQ(s.evictions, 0u) << "nothing leaves memory while the host tier has room";
  EXPECT_EQ(s.entries, 8u);
  EXPECT_EQ(Tier(s, TierKind::kDevice).demotions, 4u);
  EXPECT_EQ(Tier(s, TierKind::kDevice).demoted_bytes, 4 * kBlock);
  EXPECT_EQ(Tier(s, TierKind::kHost).demotions, 0u);
  // Demoted blocks keep key, version and bytes, and are read from host.
  for (uint64_t i = 0; i < 8; ++i) EXPECT_TRUE(Holds(i)) << i;
  const BlockKey k = Key(0);
  EXPECT_EQ(store_->Lookup(ns_, {&k, 1})[0]->version, (Version{0, 0}));
  auto lease = store_->Pin(ns_, Key(0));
  ASSERT_TRUE(lease.ok()) << lease.status();
  EXPECT_EQ(lease->location.tier, TierKind::kHost);
  EXPECT_EQ(std::memcmp(lease->location.address, Payload(0).data(), kBlock), 0);
  ASSERT_TRUE(store_->Unpin(lease->id).ok());
}

TEST_F(DeviceTierTest, OnlyTheHostTierDropsAndStatsAddUp) {
  for (uint64_t i = 0; i < 14; ++i) Put(i);
  // 12 fit (4 device + 8 host); the two oldest left memory from the host tier.
  EXPECT_FALSE(TierOf(0).has_value());
  EXPECT_FALSE(TierOf(1).has_value());
  for (uint64_t i = 2; i < 10; ++i) EXPECT_EQ(TierOf(i), TierKind::kHost) << i;
  for (uint64_t i = 10; i < 14; ++i) EXPECT_EQ(TierOf(i), TierKind::kDevice) << i;
  for (uint64_t i = 2; i < 14; ++i) EXPECT_TRUE(Holds(i)) << i;
  const ShardStoreStats s = store_->Stats();
  EXPECT_EQ(s.entries, 12u);
  EXPECT_EQ(s.evictions, 2u);
  EXPECT_EQ(s.evicted_bytes, 2 * kBlock);
  const TierStats& dev = Tier(s, TierKind::kDevice);
  const TierStats& host = Tier(s, TierKind::kHost);
  EXPECT_EQ(dev.capacity_bytes, 16 * kKiB);
  EXPECT_EQ(host.capacity_bytes, 32 * kKiB);
  EXPECT_EQ(dev.blocks, 4u);
  EXPECT_EQ(host.blocks, 8u);
  EXPECT_EQ(dev.used_bytes, 16 * kKiB);
  EXPECT_EQ(host.used_bytes, 32 * kKiB);
  EXPECT_EQ(dev.stored_bytes, 4 * kBlock);
  EXPECT_EQ(host.stored_bytes, 8 * kBlock);
  EXPECT_EQ(dev.demotions, 10u);  // 14 puts into a 4-block device tier
}

TEST_F(DeviceTierTest, ReadsRefreshADeviceBlockAndPinnedOnesStayPut) {
  for (uint64_t i = 0; i < 4; ++i) Put(i);
  ASSERT_TRUE(Holds(0));  // 0 is the device tier's newest now
  auto lease = store_->Pin(ns_, Key(1));
  ASSERT_TRUE(lease.ok());
  EXPECT_EQ(lease->location.tier, TierKind::kDevice);
  Put(4);
  Put(5);
  // Victims were 2 and 3: 0 was read, 1 is pinned.
  EXPECT_EQ(TierOf(0), TierKind::kDevice);
  EXPECT_EQ(TierOf(1), TierKind::kDevice);
  EXPECT_EQ(TierOf(2), TierKind::kHost);
  EXPECT_EQ(TierOf(3), TierKind::kHost);
  ASSERT_TRUE(store_->Unpin(lease->id).ok());
}

TEST_F(DeviceTierTest, AllPinnedDeviceTierSendsNewBlocksToHost) {
  std::vector<uint64_t> leases;
  for (uint64_t i = 0; i < 4; ++i) {
    Put(i);
    leases.push_back(store_->Pin(ns_, Key(i))->id);
  }
  Put(4);
  EXPECT_EQ(TierOf(4), TierKind::kHost);
  for (uint64_t i = 0; i < 4; ++i) EXPECT_EQ(TierOf(i), TierKind::kDevice);
  for (uint64_t l : leases) ASSERT_TRUE(store_->Unpin(l).ok());
}

TEST_F(DeviceTierTest, PinHostStagesADeviceBlockInHostMemory) {
  Put(7);
  const uint64_t host_used = store_->Stats().tiers[1].used_bytes;
  auto lease = store_->PinHost(ns_, Key(7));
  ASSERT_TRUE(lease.ok()) << lease.status();
  EXPECT_EQ(lease->location.tier, TierKind::kHost);
  EXPECT_EQ(lease->info.tier, TierKind::kDevice);  // the block itself stays
  EXPECT_EQ(std::memcmp(lease->location.address, Payload(7).data(), kBlock), 0);
  EXPECT_EQ(TierOf(7), TierKind::kDevice);
  ShardStoreStats s = store_->Stats();
  EXPECT_EQ(s.staged_reads, 1u);
  EXPECT_EQ(s.staged_read_bytes, kBlock);
  EXPECT_EQ(s.tiers[1].used_bytes, host_used + kBlock);  // the staging page
  // Overwriting or removing the block meanwhile leaves the reader's copy alone.
  ASSERT_TRUE(store_->Remove(ns_, Key(7)).ok());
  EXPECT_EQ(std::memcmp(lease->location.address, Payload(7).data(), kBlock), 0);
  ASSERT_TRUE(store_->Unpin(lease->id).ok());
  s = store_->Stats();
  EXPECT_EQ(s.tiers[1].used_bytes, host_used);
  EXPECT_EQ(s.tiers[0].used_bytes, 0u);
}

TEST_F(DeviceTierTest, ExpiredStagingLeaseFreesItsPage) {
  Put(3);
  auto lease = store_->PinHost(ns_, Key(3), absl::Seconds(1));
  ASSERT_TRUE(lease.ok());
  EXPECT_EQ(store_->Stats().tiers[1].used_bytes, kBlock);
  clock_.Advance(absl::Seconds(2));
  EXPECT_EQ(store_->ExpireLeases(), 1u);
  EXPECT_EQ(store_->Stats().tiers[1].used_bytes, 0u);
  EXPECT_TRUE(Holds(3));
}

TEST_F(DeviceTierTest, PinHostOfAHostBlockIsAPlainPin) {
  for (uint64_t i = 0; i < 5; ++i) Put(i);
  ASSERT_EQ(TierOf(0), TierKind::kHost);
  auto lease = store_->PinHost(ns_, Key(0));
  ASSERT_TRUE(lease.ok());
  EXPECT_EQ(lease->location.tier, TierKind::kHost);
  EXPECT_EQ(store_->Stats().staged_reads, 0u);
  EXPECT_EQ(std::memcmp(lease->location.address, Payload(0).data(), kBlock), 0);
  ASSERT_TRUE(store_->Unpin(lease->id).ok());
}

TEST_F(DeviceTierTest, HostWriterReservesAStagingPageAndCommitMovesItUp) {
  PutOptions opts;
  opts.host_writer = true;
  auto res = store_->Reserve(ns_, Key(9), kBlock, opts);
  ASSERT_TRUE(res.ok()) << res.status();
  ASSERT_EQ(res->location.tier, TierKind::kHost);
  std::memcpy(res->location.address, Payload(9).data(), kBlock);
  EXPECT_FALSE(TierOf(9).has_value()) << "invisible until committed";
  auto committed = store_->Commit(res->id);
  ASSERT_TRUE(committed.ok()) << committed.status();
  EXPECT_FALSE(committed->already_present);
  EXPECT_EQ(TierOf(9), TierKind::kDevice);
  EXPECT_TRUE(Holds(9));
  const ShardStoreStats s = store_->Stats();
  EXPECT_EQ(s.staged_writes, 1u);
  EXPECT_EQ(s.tiers[1].used_bytes, 0u) << "the staging page is freed";
  // A second commit of the same immutable block is an idempotent re-put.
  res = store_->Reserve(ns_, Key(9), kBlock, opts);
  ASSERT_TRUE(res.ok());
  EXPECT_TRUE(res->already_present);
}

TEST_F(DeviceTierTest, AVictimThatCannotBeReadIsDroppedAndThePutGoesOn) {
  for (uint64_t i = 0; i < 4; ++i) Put(i);
  device_->set_fail_reads(true);
  const auto data = Payload(4);
  auto put = store_->Put(ns_, Key(4), data);
  device_->set_fail_reads(false);
  ASSERT_TRUE(put.ok()) << put.status();
  EXPECT_FALSE(TierOf(0).has_value());
  for (uint64_t i = 1; i < 5; ++i) EXPECT_TRUE(Holds(i)) << i;
  const ShardStoreStats s = store_->Stats();
  EXPECT_EQ(s.demotion_failures, 1u);
  EXPECT_EQ(s.evictions, 1u);
}

TEST_F(DeviceTierTest, MemoryLimitCapsTheHostTiersOnly) {
  for (uint64_t i = 0; i < 12; ++i) Put(i);
  store_->SetMemoryLimit(16 * kKiB);
  const ShardStoreStats s = store_->Stats();
  EXPECT_EQ(Tier(s, TierKind::kHost).used_bytes, 16 * kKiB);
  EXPECT_EQ(Tier(s, TierKind::kDevice).blocks, 4u);
  for (uint64_t i = 8; i < 12; ++i) EXPECT_EQ(TierOf(i), TierKind::kDevice);
  // Puts still demote into the (capped) host tier, dropping its oldest.
  Put(12);
  EXPECT_EQ(Tier(store_->Stats(), TierKind::kHost).used_bytes, 16 * kKiB);
  EXPECT_EQ(TierOf(12), TierKind::kDevice);
  EXPECT_EQ(TierOf(8), TierKind::kHost);
}

TEST_F(DeviceTierTest, EvictToTargetTakesHostBlocksFirst) {
  for (uint64_t i = 0; i < 8; ++i) Put(i);
  EXPECT_EQ(store_->EvictToTarget(6 * kBlock), 2u);
  EXPECT_FALSE(TierOf(0).has_value());
  EXPECT_FALSE(TierOf(1).has_value());
  for (uint64_t i = 4; i < 8; ++i) EXPECT_EQ(TierOf(i), TierKind::kDevice);
}

// Readers (Get, PinHost), host writers (Reserve + Commit), plain puts and
// removals at once on a store whose tiers are both full: every byte read is
// the block's, and the accounting adds up at the end.
TEST_F(DeviceTierTest, ConcurrentTrafficOverBothTiersReadsOnlyWholeBlocks) {
  constexpr int kThreads = 4;
  constexpr int kOps = 3000;
  constexpr uint64_t kKeys = 40;  // more than the 12 blocks that fit
  std::atomic<int> bad{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937_64 rng(t + 1);
      std::vector<std::byte> buf(kBlock);
      for (int op = 0; op < kOps; ++op) {
        const uint64_t i = rng() % kKeys;
        switch (rng() % 6) {
          case 0: {
            const auto data = Payload(i);
            (void)store_->Put(ns_, Key(i), data);
            break;
          }
          case 1: {
            PutOptions opts;
            opts.host_writer = true;
            auto res = store_->Reserve(ns_, Key(i), kBlock, opts);
            if (!res.ok() || res->already_present) break;
            std::memcpy(res->location.address, Payload(i).data(), kBlock);
            (void)store_->Commit(res->id);
            break;
          }
          case 2:
          case 3: {
            auto got = store_->Get(ns_, Key(i), absl::MakeSpan(buf));
            if (got.ok() && buf != Payload(i)) ++bad;
            break;
          }
          case 4: {
            auto lease = store_->PinHost(ns_, Key(i));
            if (!lease.ok()) break;
            if (std::memcmp(lease->location.address, Payload(i).data(), kBlock) != 0) ++bad;
            (void)store_->Unpin(lease->id);
            break;
          }
          case 5:
            if (rng() % 4 == 0) (void)store_->Remove(ns_, Key(i));
            break;
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(bad.load(), 0);
  const ShardStoreStats s = store_->Stats();
  EXPECT_EQ(s.pinned_entries, 0u);
  EXPECT_EQ(s.active_leases, 0u);
  EXPECT_EQ(s.tiers[0].blocks + s.tiers[1].blocks, s.entries);
  EXPECT_EQ(s.tiers[0].stored_bytes, s.tiers[0].blocks * kBlock);
  EXPECT_EQ(s.tiers[1].stored_bytes, s.tiers[1].blocks * kBlock);
  // No page is lost: every used page holds a block (staging pages are gone).
  EXPECT_EQ(s.tiers[0].used_bytes, s.tiers[0].blocks * kBlock);
  EXPECT_EQ(s.tiers[1].used_bytes, s.tiers[1].blocks * kBlock);
  EXPECT_GT(s.tiers[0].demotions, 0u);
  EXPECT_GT(s.staged_reads, 0u);
  EXPECT_GT(s.staged_writes, 0u);
  for (uint64_t i = 0; i < kKeys; ++i) {
    if (TierOf(i)) EXPECT_TRUE(Holds(i)) << i;
  }
}

}  // namespace
}  // namespace kvf
