#include "node/shard_store.h"

#include <atomic>
#include <cctype>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "kernels/device.h"
#include "node/eviction_policy.h"
#include "tests/common/fake_clock.h"

namespace kvf {
namespace {

constexpr uint64_t kKiB = 1024;

// 2 layers x 2 heads x 64 dims x 4 tokens x K,V x fp16 = 4 KiB per block.
NamespaceSpec SmallNs(std::string model = "tiny", uint32_t tp_rank = 0) {
  NamespaceSpec s;
  s.model_id = std::move(model);
  s.layout = {.num_layers = 2, .num_kv_heads = 2, .head_dim = 64, .block_tokens = 4};
  s.tp_rank = tp_rank;
  s.tp_size = 2;
  return s;
}

BlockKey Key(uint64_t i) { return BlockKey{0xabc, i}; }

// Block contents derived from (salt, key) so any reader can check them.
std::vector<std::byte> Payload(const BlockKey& key, uint64_t salt, size_t size = 4 * kKiB) {
  std::vector<std::byte> out(size);
  std::mt19937_64 rng(key.lo * 1000003 + key.hi + salt * 7919);
  for (auto& b : out) b = std::byte(rng());
  return out;
}

class ShardStoreTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override { Open(64 * kKiB); }

  void Open(uint64_t bytes) {
    ShardStoreOptions o;
    o.host_bytes = bytes;
    o.slab_bytes = 16 * kKiB;
    o.min_page_bytes = kKiB;
    o.eviction_policy = GetParam();
    o.default_lease = absl::Seconds(5);
    o.clock = &clock_;
    auto store = ShardStore::Create(o);
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(store).value();
    ns_ = *store_->RegisterNamespace(SmallNs());
  }

  absl::StatusOr<PutResult> PutKey(uint64_t i, uint64_t salt = 0, PutOptions opts = {}) {
    const auto data = Payload(Key(i), salt);
    return store_->Put(ns_, Key(i), data, opts);
  }

  bool Holds(uint64_t i, uint64_t salt = 0) {
    std::vector<std::byte> buf(4 * kKiB);
    auto got = store_->Get(ns_, Key(i), absl::MakeSpan(buf));
    return got.ok() && buf == Payload(Key(i), salt);
  }

  FakeClock clock_;
  std::unique_ptr<ShardStore> store_;
  NamespaceId ns_ = 0;
};

TEST_P(ShardStoreTest, PutGetRoundTripIsByteExact) {
  for (uint64_t i = 0; i < 10; ++i) ASSERT_TRUE(PutKey(i).ok());
  for (uint64_t i = 0; i < 10; ++i) EXPECT_TRUE(Holds(i)) << i;
  const ShardStoreStats s = store_->Stats();
  EXPECT_EQ(s.entries, 10u);
  EXPECT_EQ(s.hits, 10u);
  ASSERT_EQ(s.tiers.size(), 1u);
  EXPECT_EQ(s.tiers[0].stored_bytes, 40 * kKiB);
  EXPECT_EQ(s.tiers[0].used_bytes, 40 * kKiB);
  EXPECT_DOUBLE_EQ(s.internal_fragmentation, 0.0);
}

TEST_P(ShardStoreTest, ImmutableRePutIsIdempotent) {
  auto first = PutKey(1, /*salt=*/1);
  ASSERT_TRUE(first.ok());
  EXPECT_FALSE(first->already_present);
  auto second = PutKey(1, /*salt=*/2);  // same key, so by contract the same content
  ASSERT_TRUE(second.ok());
  EXPECT_TRUE(second->already_present);
  EXPECT_EQ(second->version, first->version);
  EXPECT_TRUE(Holds(1, /*salt=*/1));
  EXPECT_EQ(store_->Stats().puts, 1u);
}

TEST_P(ShardStoreTest, MutableWritesBumpTheVersion) {
  store_->SetEpoch(3);
  PutOptions m{.mutable_entry = true};
  auto v1 = PutKey(7, 1, m);
  auto v2 = PutKey(7, 2, m);
  ASSERT_TRUE(v1.ok() && v2.ok());
  EXPECT_EQ(v1->version, (Version{3, 1}));
  EXPECT_EQ(v2->version, (Version{3, 2}));
  EXPECT_TRUE(Holds(7, 2));
  // Read-your-writes: a reader that saw v2 is served; one asking for more is refused.
  std::vector<std::byte> buf(4 * kKiB);
  EXPECT_TRUE(store_->Get(ns_, Key(7), absl::MakeSpan(buf), v2->version).ok());
  EXPECT_EQ(store_->Get(ns_, Key(7), absl::MakeSpan(buf), Version{3, 3}).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(store_->Stats().entries, 1u);
}

TEST_P(ShardStoreTest, ExplicitVersionMustBeNewer) {
  PutOptions o{.mutable_entry = true, .version = Version{5, 10}};
  ASSERT_TRUE(PutKey(3, 1, o).ok());
  o.version = Version{5, 10};
  EXPECT_EQ(PutKey(3, 2, o).status().code(), absl::StatusCode::kFailedPrecondition);
  o.version = Version{4, 99};
  EXPECT_EQ(PutKey(3, 2, o).status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(Holds(3, 1));  // unchanged
  o.version = Version{6, 0};
  ASSERT_TRUE(PutKey(3, 3, o).ok());
  EXPECT_TRUE(Holds(3, 3));
  EXPECT_EQ((*store_->Lookup(ns_, {Key(3)})[0]).version, (Version{6, 0}));
}

TEST_P(ShardStoreTest, BadPutsAreRejectedAndStoreNothing) {
  std::vector<std::byte> short_block(4 * kKiB - 1);
  auto s = store_->Put(ns_, Key(1), short_block);
  EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.status().message().find("4096"), std::string::npos) << s.status();
  std::vector<std::byte> block(4 * kKiB);
  EXPECT_EQ(store_->Put(ns_ + 1, Key(1), block).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store_->Put(ns_, Key(1), block, {.codec = static_cast<CodecId>(77)}).status().code(),
            absl::StatusCode::kInvalidArgument);
  // The fp8 form of this layout has another size: raw bytes under codec fp8 are refused.
  EXPECT_EQ(store_->Put(ns_, Key(1), block, {.codec = CodecId::kFp8E4m3}).status().code(),
            absl::StatusCode::kInvalidArgument);
  const ShardStoreStats st = store_->Stats();
  EXPECT_EQ(st.entries, 0u);
  EXPECT_EQ(st.tiers[0].used_bytes, 0u);
}

TEST_P(ShardStoreTest, EncodedBlocksAreStoredWithTheirCodec) {
  const NamespaceSpec spec = SmallNs();
  const Codec& fp8 = CpuCodec(CodecId::kFp8E4m3);
  std::vector<std::byte> raw = Payload(Key(1), 0), encoded(fp8.EncodedSize(spec.layout));
  // Make the raw bytes valid fp16 values (random bits may be NaN/Inf).
  for (size_t i = 1; i < raw.size(); i += 2) raw[i] &= std::byte{0x3b};
  ASSERT_TRUE(fp8.Encode(spec.layout, raw, absl::MakeSpan(encoded)).ok());
  ASSERT_TRUE(store_->Put(ns_, Key(1), encoded, {.codec = CodecId::kFp8E4m3}).ok());
  std::vector<std::byte> out(encoded.size());
  auto info = store_->Get(ns_, Key(1), absl::MakeSpan(out));
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->codec, CodecId::kFp8E4m3);
  EXPECT_EQ(info->size, encoded.size());
  EXPECT_EQ(out, encoded);
  // The same key under another codec is a conflict, not a silent overwrite.
  EXPECT_EQ(store_->Put(ns_, Key(1), raw).status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST_P(ShardStoreTest, NamespacesNeverShareBytes) {
  const NamespaceId other = *store_->RegisterNamespace(SmallNs("tiny", /*tp_rank=*/1));
  ASSERT_NE(other, ns_);
  ASSERT_TRUE(PutKey(1, 1).ok());
  std::vector<std::byte> buf(4 * kKiB);
  EXPECT_EQ(store_->Get(other, Key(1), absl::MakeSpan(buf)).status().code(),
            absl::StatusCode::kNotFound);
  const auto data = Payload(Key(1), 2);
  ASSERT_TRUE(store_->Put(other, Key(1), data).ok());
  EXPECT_TRUE(Holds(1, 1));
  ASSERT_TRUE(store_->Get(other, Key(1), absl::MakeSpan(buf)).ok());
  EXPECT_EQ(buf, data);
}

TEST_P(ShardStoreTest, RegisterRejectsBadOrOversizeNamespaces) {
  NamespaceSpec bad = SmallNs();
  bad.tp_rank = 5;
  EXPECT_EQ(store_->RegisterNamespace(bad).status().code(), absl::StatusCode::kInvalidArgument);
  NamespaceSpec huge = SmallNs();
  huge.layout.block_tokens = 64;  // 64 KiB blocks > 16 KiB slabs
  auto s = store_->RegisterNamespace(huge);
  EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.status().message().find("slab"), std::string::npos) << s.status();
  EXPECT_EQ(*store_->RegisterNamespace(SmallNs()), ns_);  // idempotent
}

TEST_P(ShardStoreTest, FullStoreEvictsToMakeRoom) {
  for (uint64_t i = 0; i < 40; ++i) ASSERT_TRUE(PutKey(i).ok()) << i;
  const ShardStoreStats s = store_->Stats();
  EXPECT_EQ(s.entries, 16u);  // 64 KiB of 4 KiB blocks
  EXPECT_EQ(s.evictions, 24u);
  EXPECT_EQ(s.evicted_bytes, 24 * 4 * kKiB);
  int held = 0;
  for (uint64_t i = 0; i < 40; ++i) held += Holds(i);
  EXPECT_EQ(held, 16);
}

TEST_P(ShardStoreTest, PinnedBlocksAreNeverEvicted) {
  std::vector<uint64_t> leases;
  for (uint64_t i = 0; i < 16; ++i) {
    ASSERT_TRUE(PutKey(i).ok());
    if (i % 2 == 0) leases.push_back(store_->Pin(ns_, Key(i))->id);
  }
  for (uint64_t i = 100; i < 140; ++i) ASSERT_TRUE(PutKey(i).ok());
  for (uint64_t i = 0; i < 16; i += 2) EXPECT_TRUE(Holds(i)) << i;
  for (uint64_t id : leases) EXPECT_TRUE(store_->Unpin(id).ok());
  EXPECT_EQ(store_->Stats().pinned_entries, 0u);
}

TEST_P(ShardStoreTest, AllPinnedMeansResourceExhaustedAndNoChange) {
  for (uint64_t i = 0; i < 16; ++i) {
    ASSERT_TRUE(PutKey(i).ok());
    ASSERT_TRUE(store_->Pin(ns_, Key(i)).ok());
  }
  const ShardStoreStats before = store_->Stats();
  auto s = PutKey(99);
  EXPECT_EQ(s.status().code(), absl::StatusCode::kResourceExhausted) << s.status();
  const ShardStoreStats after = store_->Stats();
  EXPECT_EQ(after.entries, before.entries);
  EXPECT_EQ(after.evictions, 0u);
  EXPECT_EQ(after.tiers[0].used_bytes, before.tiers[0].used_bytes);
  for (uint64_t i = 0; i < 16; ++i) EXPECT_TRUE(Holds(i));
}

TEST_P(ShardStoreTest, ExpiredLeasesUnpinAndFreeRoom) {
  for (uint64_t i = 0; i < 16; ++i) {
    ASSERT_TRUE(PutKey(i).ok());
    ASSERT_TRUE(store_->Pin(ns_, Key(i), absl::Seconds(1)).ok());
  }
  EXPECT_EQ(PutKey(99).status().code(), absl::StatusCode::kResourceExhausted);
  clock_.Advance(absl::Seconds(2));  // a client vanished: its leases lapse
  ASSERT_TRUE(PutKey(99).ok());      // the put reaps them and evicts
  const ShardStoreStats s = store_->Stats();
  EXPECT_EQ(s.expired_leases, 16u);
  EXPECT_EQ(s.active_leases, 0u);
  EXPECT_EQ(s.pinned_entries, 0u);
}

TEST_P(ShardStoreTest, LeaseLifecycle) {
  ASSERT_TRUE(PutKey(1).ok());
  auto lease = store_->Pin(ns_, Key(1), absl::Seconds(3));
  ASSERT_TRUE(lease.ok());
  EXPECT_EQ(lease->location.size, 4 * kKiB);
  EXPECT_EQ(lease->expires, clock_.Now() + absl::Seconds(3));
  // The location is readable memory holding the block (host tier here).
  const auto expected = Payload(Key(1), 0);
  EXPECT_EQ(std::vector<std::byte>(lease->location.address, lease->location.address + 4 * kKiB),
            expected);
  // An overwrite is not blocked by the lease; the leased bytes stay intact.
  EXPECT_TRUE(PutKey(1, 7, {.mutable_entry = true}).ok());
  EXPECT_EQ(std::vector<std::byte>(lease->location.address, lease->location.address + 4 * kKiB),
            expected);
  EXPECT_TRUE(Holds(1, 7));
  EXPECT_TRUE(store_->Unpin(lease->id).ok());
  EXPECT_EQ(store_->Unpin(lease->id).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store_->Unpin(123456).code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(store_->Remove(ns_, Key(1)).ok());
  EXPECT_EQ(store_->Remove(ns_, Key(1)).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store_->Pin(ns_, Key(1)).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store_->Pin(ns_, Key(2), absl::Seconds(-1)).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_P(ShardStoreTest, MatchPrefixStopsAtTheFirstGap) {
  for (uint64_t i : {0, 1, 2, 4, 5}) ASSERT_TRUE(PutKey(i).ok());
  const std::vector<BlockKey> keys = {Key(0), Key(1), Key(2), Key(3), Key(4), Key(5)};
  EXPECT_EQ(store_->MatchPrefix(ns_, keys), 3u);
  EXPECT_EQ(store_->MatchPrefix(ns_, absl::MakeConstSpan(keys).subspan(4)), 2u);
  EXPECT_EQ(store_->MatchPrefix(ns_, {Key(9)}), 0u);
  const auto found = store_->Lookup(ns_, keys);
  ASSERT_EQ(found.size(), keys.size());
  EXPECT_TRUE(found[2].has_value());
  EXPECT_FALSE(found[3].has_value());
  EXPECT_EQ(found[4]->size, 4 * kKiB);
  const ShardStoreStats s = store_->Stats();
  EXPECT_EQ(s.hits, 5u);
  EXPECT_EQ(s.misses, 2u);
}

TEST_P(ShardStoreTest, GetNeedsABigEnoughBuffer) {
  ASSERT_TRUE(PutKey(1).ok());
  std::vector<std::byte> small(100);
  EXPECT_EQ(store_->Get(ns_, Key(1), absl::MakeSpan(small)).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(store_->Get(ns_, Key(2), absl::MakeSpan(small)).status().code(),
            absl::StatusCode::kNotFound);
}

TEST_P(ShardStoreTest, EvictToTargetStopsAtPinned) {
  for (uint64_t i = 0; i < 16; ++i) ASSERT_TRUE(PutKey(i).ok());
  ASSERT_TRUE(store_->Pin(ns_, Key(3)).ok());
  EXPECT_EQ(store_->EvictToTarget(8 * 4 * kKiB), 8u);
  EXPECT_EQ(store_->Stats().entries, 8u);
  EXPECT_EQ(store_->EvictToTarget(0), 7u);
  EXPECT_EQ(store_->Stats().entries, 1u);
  EXPECT_TRUE(Holds(3));
}

// Many threads putting, reading, pinning and removing never see torn or
// foreign bytes, and the accounting adds up at the end.
TEST_P(ShardStoreTest, ConcurrentClientsSeeConsistentBlocks) {
  Open(256 * kKiB);
  constexpr int kThreads = 4;
  constexpr int kOps = 3000;
  std::atomic<int> corrupt{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937_64 rng(t);
      std::vector<std::byte> buf(4 * kKiB);
      for (int op = 0; op < kOps; ++op) {
        const uint64_t k = rng() % 128;
        switch (rng() % 4) {
          case 0:
          case 1: {
            (void)PutKey(k);
            break;
          }
          case 2: {
            auto got = store_->Get(ns_, Key(k), absl::MakeSpan(buf));
            if (got.ok() && buf != Payload(Key(k), 0)) ++corrupt;
            break;
          }
          case 3: {
            auto lease = store_->Pin(ns_, Key(k));
            if (lease.ok()) {
              if (std::vector<std::byte>(lease->location.address,
                                         lease->location.address + 4 * kKiB) != Payload(Key(k), 0)) {
                ++corrupt;
              }
              (void)store_->Unpin(lease->id);
            } else if (rng() % 8 == 0) {
              (void)store_->Remove(ns_, Key(k));
            }
            break;
          }
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(corrupt.load(), 0);
  const ShardStoreStats s = store_->Stats();
  EXPECT_EQ(s.pinned_entries, 0u);
  EXPECT_EQ(s.active_leases, 0u);
  EXPECT_EQ(s.tiers[0].used_bytes, s.entries * 4 * kKiB);
  EXPECT_EQ(s.tiers[0].stored_bytes, s.entries * 4 * kKiB);
}

std::vector<std::string> AllPolicies() {
  std::vector<std::string> names;
  for (auto n : EvictionPolicyNames()) names.emplace_back(n);
  return names;
}

INSTANTIATE_TEST_SUITE_P(Policies, ShardStoreTest, ::testing::ValuesIn(AllPolicies()),
                         [](const auto& info) {
                           std::string name = info.param;
                           for (char& c : name) {
                             if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
                           }
                           return name;
                         });

TEST_P(ShardStoreTest, ScanReportsBlocksByPlacementHash) {
  for (uint64_t i = 0; i < 8; ++i) {
    PutOptions o;
    o.placement_hash = 1000 + i;
    ASSERT_TRUE(PutKey(i, 0, o).ok());
  }
  const std::vector<StoredBlock> odd =
      store_->Scan([](uint64_t h) { return h >= 1000 && h % 2 == 1; });
  ASSERT_EQ(odd.size(), 4u);
  for (const StoredBlock& b : odd) {
    EXPECT_EQ(b.ns, ns_);
    EXPECT_EQ(b.placement_hash % 2, 1u);
    EXPECT_EQ(b.info.size, 4 * kKiB);
    EXPECT_EQ(b.key, Key(b.placement_hash - 1000));
  }
  EXPECT_TRUE(store_->Scan([](uint64_t) { return false; }).empty());
}

TEST(ShardStore, BorrowedHostMemoryHoldsTheBlocks) {
  std::vector<std::byte> arena(256 * kKiB + 64);
  std::byte* base = arena.data() + (64 - reinterpret_cast<uintptr_t>(arena.data()) % 64) % 64;
  ShardStoreOptions o;
  o.host_bytes = 256 * kKiB;
  o.host_memory = base;
  o.slab_bytes = 64 * kKiB;
  auto store = ShardStore::Create(o);
  ASSERT_TRUE(store.ok()) << store.status();
  const NamespaceId ns = *(*store)->RegisterNamespace(SmallNs());
  const auto data = Payload(Key(7), 0);
  ASSERT_TRUE((*store)->Put(ns, Key(7), data).ok());
  auto lease = (*store)->Pin(ns, Key(7));
  ASSERT_TRUE(lease.ok()) << lease.status();
  EXPECT_GE(lease->location.address, base);
  EXPECT_LE(lease->location.address + data.size(), base + o.host_bytes);
  EXPECT_EQ(std::memcmp(lease->location.address, data.data(), data.size()), 0);
  ASSERT_TRUE((*store)->Unpin(lease->id).ok());
}

TEST(ShardStore, CreateRejectsBadOptions) {
  ShardStoreOptions o;
  o.host_bytes = 0;
  EXPECT_EQ(ShardStore::Create(o).status().code(), absl::StatusCode::kInvalidArgument);
  o.host_bytes = 1 << 20;
  o.eviction_policy = "random-guess";
  EXPECT_FALSE(ShardStore::Create(o).ok());
  o.eviction_policy = "lru";
  o.default_lease = absl::ZeroDuration();
  EXPECT_FALSE(ShardStore::Create(o).ok());
}

TEST(ShardStore, DeviceTierFallsBackToHostWithoutADevice) {
  ShardStoreOptions o;
  o.host_bytes = 1 << 20;
  o.device_bytes = 1 << 20;
  auto store = ShardStore::Create(o);
  ASSERT_TRUE(store.ok()) << store.status();
  const ShardStoreStats s = (*store)->Stats();
  if (Devices().count == 0) {
    ASSERT_EQ(s.tiers.size(), 1u);
    EXPECT_NE(s.tiers[0].kind, TierKind::kDevice);
  } else {
    ASSERT_EQ(s.tiers.size(), 2u);
    EXPECT_EQ(s.tiers[0].kind, TierKind::kDevice);
  }
}

}  // namespace
}  // namespace kvf

namespace kvf {
namespace {

// The two-phase put used by remote writers: reserve, fill, commit.
class ShardStoreReserveTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ShardStoreOptions o;
    o.host_bytes = 64 * kKiB;
    o.slab_bytes = 16 * kKiB;
    o.min_page_bytes = kKiB;
    o.default_lease = absl::Seconds(5);
    o.clock = &clock_;
    store_ = *ShardStore::Create(o);
    ns_ = *store_->RegisterNamespace(SmallNs());
  }
  bool Holds(uint64_t i, uint64_t salt = 0) {
    std::vector<std::byte> buf(4 * kKiB);
    return store_->Get(ns_, Key(i), absl::MakeSpan(buf)).ok() && buf == Payload(Key(i), salt);
  }
  void Fill(const PutReservation& r, uint64_t i, uint64_t salt = 0) {
    const auto data = Payload(Key(i), salt);
    ASSERT_EQ(r.location.size, data.size());
    std::memcpy(r.location.address, data.data(), data.size());
  }

  FakeClock clock_;
  std::unique_ptr<ShardStore> store_;
  NamespaceId ns_ = 0;
};

TEST_F(ShardStoreReserveTest, ReservedBlockIsInvisibleUntilCommit) {
  auto r = store_->Reserve(ns_, Key(1), 4 * kKiB);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FALSE(r->already_present);
  Fill(*r, 1);
  EXPECT_FALSE(Holds(1));
  EXPECT_FALSE(store_->Lookup(ns_, {Key(1)})[0].has_value());
  EXPECT_EQ(store_->Stats().pending_reservations, 1u);
  auto committed = store_->Commit(r->id);
  ASSERT_TRUE(committed.ok()) << committed.status();
  EXPECT_TRUE(Holds(1));
  EXPECT_EQ(store_->Commit(r->id).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store_->Stats().pending_reservations, 0u);
}

TEST_F(ShardStoreReserveTest, ReserveValidatesLikePut) {
  EXPECT_EQ(store_->Reserve(ns_, Key(1), 4 * kKiB - 1).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(store_->Reserve(ns_ + 1, Key(1), 4 * kKiB).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(store_->Stats().tiers[0].used_bytes, 0u);
}

TEST_F(ShardStoreReserveTest, AbortAndExpiryFreeThePage) {
  auto a = *store_->Reserve(ns_, Key(1), 4 * kKiB);
  auto b = *store_->Reserve(ns_, Key(2), 4 * kKiB, {}, absl::Seconds(1));
  EXPECT_EQ(store_->Stats().tiers[0].used_bytes, 8 * kKiB);
  EXPECT_TRUE(store_->Abort(a.id).ok());
  EXPECT_EQ(store_->Abort(a.id).code(), absl::StatusCode::kNotFound);
  clock_.Advance(absl::Seconds(2));  // the writer of b vanished
  EXPECT_EQ(store_->ExpireLeases(), 1u);
  EXPECT_EQ(store_->Commit(b.id).status().code(), absl::StatusCode::kNotFound);
  const ShardStoreStats s = store_->Stats();
  EXPECT_EQ(s.tiers[0].used_bytes, 0u);
  EXPECT_EQ(s.entries, 0u);
  EXPECT_EQ(s.pending_reservations, 0u);
}

TEST_F(ShardStoreReserveTest, ImmutableRePutReservesNothing) {
  const auto data = Payload(Key(1), 0);
  ASSERT_TRUE(store_->Put(ns_, Key(1), data).ok());
  auto r = store_->Reserve(ns_, Key(1), 4 * kKiB);
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->already_present);
  EXPECT_EQ(r->location.address, nullptr);
  EXPECT_EQ(store_->Stats().pending_reservations, 0u);
}

TEST_F(ShardStoreReserveTest, RacingWritersOfOneBlockBothSucceedOnce) {
  auto a = *store_->Reserve(ns_, Key(1), 4 * kKiB);
  auto b = *store_->Reserve(ns_, Key(1), 4 * kKiB);
  Fill(a, 1);
  Fill(b, 1);
  auto ca = store_->Commit(a.id);
  auto cb = store_->Commit(b.id);
  ASSERT_TRUE(ca.ok() && cb.ok());
  EXPECT_FALSE(ca->already_present);
  EXPECT_TRUE(cb->already_present);
  EXPECT_EQ(store_->Stats().tiers[0].used_bytes, 4 * kKiB);  // b's page went back
  EXPECT_TRUE(Holds(1));
}

TEST_F(ShardStoreReserveTest, MutableOverwriteOfAPinnedBlockKeepsTheReadersPage) {
  PutOptions m{.mutable_entry = true};
  const auto v1 = Payload(Key(1), 1);
  ASSERT_TRUE(store_->Put(ns_, Key(1), v1, m).ok());
  auto r = *store_->Reserve(ns_, Key(1), 4 * kKiB, m);
  Fill(r, 1, 2);
  auto lease = *store_->Pin(ns_, Key(1));
  // The writer is not blocked by the reader...
  auto committed = store_->Commit(r.id);
  ASSERT_TRUE(committed.ok()) << committed.status();
  EXPECT_GT(committed->version, lease.info.version);
  EXPECT_TRUE(Holds(1, 2));  // new readers see the new version
  // ...and the old reader's bytes stay put until it lets go.
  EXPECT_EQ(std::memcmp(lease.location.address, v1.data(), v1.size()), 0);
  EXPECT_EQ(store_->Stats().tiers[0].used_bytes, 8 * kKiB);
  EXPECT_EQ(store_->Stats().pinned_entries, 0u);
  EXPECT_TRUE(store_->Unpin(lease.id).ok());
  EXPECT_EQ(store_->Stats().tiers[0].used_bytes, 4 * kKiB);  // the old page went back
  EXPECT_TRUE(Holds(1, 2));
}

TEST_F(ShardStoreReserveTest, RemovingAPinnedBlockKeepsTheReadersBytes) {
  const auto v = Payload(Key(1), 3);
  ASSERT_TRUE(store_->Put(ns_, Key(1), v).ok());
  auto lease = *store_->Pin(ns_, Key(1));
  ASSERT_TRUE(store_->Remove(ns_, Key(1)).ok());
  EXPECT_FALSE(Holds(1, 3));  // gone for new readers
  EXPECT_EQ(store_->Pin(ns_, Key(1)).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(std::memcmp(lease.location.address, v.data(), v.size()), 0);
  EXPECT_EQ(store_->Stats().tiers[0].used_bytes, 4 * kKiB);
  EXPECT_TRUE(store_->Unpin(lease.id).ok());
  EXPECT_EQ(store_->Stats().tiers[0].used_bytes, 0u);
  // The page can be reused by another block.
  ASSERT_TRUE(store_->Put(ns_, Key(2), Payload(Key(2), 0)).ok());
  EXPECT_TRUE(Holds(2));
}

TEST_F(ShardStoreReserveTest, ARetiredPageIsFreedWhenItsLeaseExpires) {
  PutOptions m{.mutable_entry = true};
  ASSERT_TRUE(store_->Put(ns_, Key(1), Payload(Key(1), 1), m).ok());
  auto lease = *store_->Pin(ns_, Key(1), absl::Seconds(1));
  ASSERT_TRUE(store_->Put(ns_, Key(1), Payload(Key(1), 2), m).ok());
  EXPECT_EQ(store_->Stats().tiers[0].used_bytes, 8 * kKiB);
  clock_.Advance(absl::Seconds(2));
  EXPECT_EQ(store_->ExpireLeases(), 1u);
  EXPECT_EQ(store_->Stats().tiers[0].used_bytes, 4 * kKiB);
  EXPECT_FALSE(store_->Unpin(lease.id).ok());  // already expired
  EXPECT_TRUE(Holds(1, 2));
}

TEST_F(ShardStoreReserveTest, FullStoreEvictsForAReservation) {
  for (uint64_t i = 0; i < 16; ++i) ASSERT_TRUE(store_->Put(ns_, Key(i), Payload(Key(i), 0)).ok());
  auto r = store_->Reserve(ns_, Key(100), 4 * kKiB);
  ASSERT_TRUE(r.ok()) << r.status();
  Fill(*r, 100);
  auto c = store_->Commit(r->id);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->evicted_blocks, 1u);
  EXPECT_TRUE(Holds(100));
}

}  // namespace
}  // namespace kvf

namespace kvf {
namespace {

// 64 KiB of host memory in 16 KiB slabs, on `clock`.
std::unique_ptr<ShardStore> SmallStoreOn(FakeClock* clock) {
  ShardStoreOptions o;
  o.host_bytes = 64 * kKiB;
  o.slab_bytes = 16 * kKiB;
  o.min_page_bytes = kKiB;
  o.clock = clock;
  return *ShardStore::Create(o);
}

TEST(ShardStoreAges, HistogramAndCutoffFollowLastAccess) {
  FakeClock clock;
  auto store = SmallStoreOn(&clock);
  const NamespaceId ns = *store->RegisterNamespace(SmallNs());
  for (uint64_t i = 0; i < 4; ++i) ASSERT_TRUE(store->Put(ns, Key(i), Payload(Key(i), 0)).ok());
  // Block 1 is read once now, under a lease that outlives the test: old and pinned.
  ASSERT_TRUE(store->Pin(ns, Key(1), absl::Hours(2)).ok());
  clock.Advance(absl::Hours(1));
  for (uint64_t i = 4; i < 6; ++i) ASSERT_TRUE(store->Put(ns, Key(i), Payload(Key(i), 0)).ok());
  clock.Advance(absl::Seconds(10));
  std::vector<std::byte> buf(4 * kKiB);
  ASSERT_TRUE(store->Get(ns, Key(0), absl::MakeSpan(buf)).ok());  // block 0 is young again

  const AgeHistogram ages = store->Ages();
  EXPECT_EQ(ages.Total(), 6 * 4 * kKiB);
  EXPECT_EQ(ages.bytes[AgeHistogram::BucketOf(absl::ZeroDuration())], 4 * kKiB);
  EXPECT_EQ(ages.bytes[AgeHistogram::BucketOf(absl::Seconds(10))], 2 * 4 * kKiB);
  EXPECT_EQ(ages.bytes[AgeHistogram::BucketOf(absl::Hours(1) + absl::Seconds(10))], 3 * 4 * kKiB);

  // A cutoff of 30 minutes takes the old, unpinned blocks 2 and 3 only.
  EXPECT_EQ(store->EvictOlderThan(absl::Minutes(30), /*keep_bytes=*/0), 2u);
  const auto held = store->Lookup(ns, {Key(0), Key(1), Key(2), Key(3), Key(4), Key(5)});
  EXPECT_TRUE(held[0] && held[1] && held[4] && held[5]);
  EXPECT_FALSE(held[2] || held[3]);
  EXPECT_EQ(store->Stats().evictions, 2u);
  EXPECT_EQ(store->Stats().tiers[0].used_bytes, 4 * 4 * kKiB);
}

TEST(ShardStoreAges, CutoffStopsAtTheFloorLeastRecentlyUsedFirst) {
  FakeClock clock;
  auto store = SmallStoreOn(&clock);
  const NamespaceId ns = *store->RegisterNamespace(SmallNs());
  // Blocks 0..5, each a minute younger than the one before.
  for (uint64_t i = 0; i < 6; ++i) {
    ASSERT_TRUE(store->Put(ns, Key(i), Payload(Key(i), 0)).ok());
    clock.Advance(absl::Minutes(1));
  }
  ASSERT_EQ(store->Stats().tiers[0].used_bytes, 6 * 4 * kKiB);

  // Every block is past a zero cutoff, but the floor keeps four of them: the
  // two least recently used go.
  EXPECT_EQ(store->EvictOlderThan(absl::ZeroDuration(), /*keep_bytes=*/4 * 4 * kKiB), 2u);
  auto held = store->Lookup(ns, {Key(0), Key(1), Key(2), Key(3), Key(4), Key(5)});
  EXPECT_FALSE(held[0] || held[1]);
  EXPECT_TRUE(held[2] && held[3] && held[4] && held[5]);

  // Already at the floor: a stale cutoff evicts nothing more.
  EXPECT_EQ(store->EvictOlderThan(absl::ZeroDuration(), /*keep_bytes=*/4 * 4 * kKiB), 0u);
  EXPECT_EQ(store->Stats().evictions, 2u);

  // No floor: every block past the cutoff (older than 150 s: blocks 2 and 3).
  EXPECT_EQ(store->EvictOlderThan(absl::Seconds(150), /*keep_bytes=*/0), 2u);
  held = store->Lookup(ns, {Key(2), Key(3), Key(4), Key(5)});
  EXPECT_FALSE(held[0] || held[1]);
  EXPECT_TRUE(held[2] && held[3]);
}

}  // namespace
}  // namespace kvf
