// The shard store with a disk tier: demotion on eviction, promotion on a hit,
// restarts, corruption, a full disk, memory limits.
#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "node/shard_store.h"
#include "tests/common/fake_clock.h"
#include "tests/node/temp_dir.h"

namespace kvf {
namespace {

constexpr uint64_t kKiB = 1024;

// 4 KiB blocks (2 layers x 2 heads x 64 dims x 4 tokens x K,V x fp16).
NamespaceSpec SmallNs() {
  NamespaceSpec s;
  s.model_id = "tiny";
  s.layout = {.num_layers = 2, .num_kv_heads = 2, .head_dim = 64, .block_tokens = 4};
  s.tp_size = 1;
  return s;
}

BlockKey Key(uint64_t i) { return BlockKey{0xd15c, i}; }
uint64_t Hash(uint64_t i) { return 0x9e3779b97f4a7c15ull * (i + 1); }

std::vector<std::byte> Payload(uint64_t i, uint64_t salt = 0) {
  std::vector<std::byte> out(4 * kKiB);
  std::mt19937_64 rng(i * 1000003 + salt * 7919 + 1);
  for (auto& b : out) b = std::byte(rng());
  return out;
}

class ShardStoreDiskTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(dir_.path().empty());
    Open();
  }

  // 64 KiB of memory (16 blocks) over a disk of `disk_bytes`.
  void Open(uint64_t disk_bytes = 1024 * kKiB + 4 * kKiB) {
    store_.reset();
    ShardStoreOptions o;
    o.host_bytes = 64 * kKiB;
    o.slab_bytes = 16 * kKiB;
    o.min_page_bytes = kKiB;
    o.default_lease = absl::Seconds(5);
    o.clock = &clock_;
    o.disk_path = dir_.path();
    o.disk_bytes = disk_bytes;
    o.disk_segment_bytes = 64 * kKiB;
    auto store = ShardStore::Create(o);
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(store).value();
  }
  void Register() {
    auto ns = store_->RegisterNamespace(SmallNs());
    ASSERT_TRUE(ns.ok()) << ns.status();
    ASSERT_EQ(*ns, ns_);
  }

  absl::StatusOr<PutResult> PutKey(uint64_t i, uint64_t salt = 0, bool mut = false) {
    PutOptions o;
    o.placement_hash = Hash(i);
    o.mutable_entry = mut;
    o.depth = static_cast<uint32_t>(i);
    return store_->Put(ns_, Key(i), Payload(i, salt), o);
  }
  bool Holds(uint64_t i, uint64_t salt = 0) {
    std::vector<std::byte> buf(4 * kKiB);
    auto got = store_->Get(ns_, Key(i), absl::MakeSpan(buf));
    return got.ok() && buf == Payload(i, salt);
  }
  std::optional<BlockInfo> Info(uint64_t i) { return store_->Lookup(ns_, {Key(i)})[0]; }
  std::string File() const { return dir_.path() + "/kvf-disk.log"; }

  // The file offset of the first copy of block i's bytes.
  uint64_t FindInFile(uint64_t i) {
    std::ifstream in(File(), std::ios::binary);
    const std::string file((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const auto p = Payload(i);
    const size_t at = file.find(std::string(reinterpret_cast<const char*>(p.data()), 256));
    EXPECT_NE(at, std::string::npos);
    return at;
  }

  TempDir dir_;
  FakeClock clock_;
  std::unique_ptr<ShardStore> store_;
  const NamespaceId ns_ = SmallNs().Id();
};

TEST_F(ShardStoreDiskTest, EvictedBlocksDemoteAndComeBackByteExact) {
  Register();
  for (uint64_t i = 0; i < 64; ++i) ASSERT_TRUE(PutKey(i).ok()) << i;
  ShardStoreStats s = store_->Stats();
  EXPECT_EQ(s.entries, 64u);
  EXPECT_GE(s.demotions, 48u);
  EXPECT_EQ(s.disk_entries, s.entries - 16);
  ASSERT_EQ(s.tiers.size(), 2u);
  EXPECT_EQ(s.tiers[1].kind, TierKind::kDisk);
  EXPECT_EQ(s.tiers[1].stored_bytes, s.disk_entries * 4 * kKiB);
  ASSERT_TRUE(Info(0).has_value());
  EXPECT_EQ(Info(0)->tier, TierKind::kDisk);
  // Every block reads back, byte-exact: the ones on disk come back to memory.
  for (uint64_t i = 0; i < 64; ++i) EXPECT_TRUE(Holds(i)) << i;
  s = store_->Stats();
  EXPECT_EQ(s.hits, 64u);
  EXPECT_GE(s.disk_hits, 48u);
  EXPECT_GE(s.promotions, 48u);
  EXPECT_EQ(s.disk_corrupt_records, 0u);
  EXPECT_EQ(s.misses, 0u);
  EXPECT_EQ(s.entries, 64u);
}

TEST_F(ShardStoreDiskTest, DiskBlocksAreSeenByLookupMatchPrefixScanAndPin) {
  Register();
  for (uint64_t i = 0; i < 40; ++i) ASSERT_TRUE(PutKey(i).ok());
  std::vector<BlockKey> chain;
  for (uint64_t i = 0; i < 40; ++i) chain.push_back(Key(i));
  EXPECT_EQ(store_->MatchPrefix(ns_, chain), 40u);
  size_t on_disk = 0;
  for (const StoredBlock& b : store_->Scan([](uint64_t) { return true; })) {
    EXPECT_EQ(b.placement_hash, Hash(b.key.lo));
    if (b.info.tier == TierKind::kDisk) ++on_disk;
  }
  EXPECT_EQ(on_disk, 24u);
  // A pin brings the block to memory: an RMA reader gets a host address.
  ASSERT_EQ(Info(0)->tier, TierKind::kDisk);
  auto lease = store_->Pin(ns_, Key(0));
  ASSERT_TRUE(lease.ok()) << lease.status();
  EXPECT_EQ(lease->location.tier, TierKind::kHost);
  EXPECT_EQ(std::memcmp(lease->location.address, Payload(0).data(), 4 * kKiB), 0);
  ASSERT_TRUE(store_->Unpin(lease->id).ok());
}

TEST_F(ShardStoreDiskTest, RestartServesTheBlocksAgainOnceTheNamespaceIsKnown) {
  Register();
  for (uint64_t i = 0; i < 40; ++i) ASSERT_TRUE(PutKey(i).ok());
  ASSERT_EQ(store_->EvictToTarget(0), 16u);  // the rest were demoted by the puts
  EXPECT_EQ(store_->Stats().disk_entries, 40u);
  Open();  // a new store over the same directory: the old one's file
  ShardStoreStats s = store_->Stats();
  EXPECT_EQ(s.disk_recovered, 40u);
  EXPECT_EQ(s.entries, 40u);
  // Found by namespace id before anyone registered the namespace...
  ASSERT_TRUE(Info(7).has_value());
  EXPECT_EQ(Info(7)->tier, TierKind::kDisk);
  EXPECT_EQ(store_->Scan([](uint64_t h) { return h == Hash(3); }).size(), 1u);
  // ...and read once it is.
  Register();
  for (uint64_t i = 0; i < 40; ++i) EXPECT_TRUE(Holds(i)) << i;
}

TEST_F(ShardStoreDiskTest, CorruptRecordIsRefusedCountedAndDropped) {
  Register();
  for (uint64_t i = 0; i < 20; ++i) ASSERT_TRUE(PutKey(i).ok());
  ASSERT_EQ(Info(0)->tier, TierKind::kDisk);
  const uint64_t at = FindInFile(0);
  {
    const int fd = ::open(File().c_str(), O_RDWR);
    ASSERT_GE(fd, 0);
    const char junk[4] = {'b', 'a', 'd', '!'};
    ASSERT_EQ(::pwrite(fd, junk, sizeof(junk), static_cast<off_t>(at + 1000)), 4);
    ::fsync(fd);
    ::close(fd);
  }
  std::vector<std::byte> buf(4 * kKiB);
  EXPECT_EQ(store_->Get(ns_, Key(0), absl::MakeSpan(buf)).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_FALSE(Info(0).has_value());  // dropped, never served
  const ShardStoreStats s = store_->Stats();
  EXPECT_EQ(s.disk_corrupt_records, 1u);
  EXPECT_EQ(s.entries, 19u);
  for (uint64_t i = 1; i < 20; ++i) EXPECT_TRUE(Holds(i)) << i;
}

TEST_F(ShardStoreDiskTest, CorruptRecordFoundAtRestartIsCountedNotServed) {
  Register();
  for (uint64_t i = 0; i < 20; ++i) ASSERT_TRUE(PutKey(i).ok());
  store_->EvictToTarget(0);
  store_.reset();
  const uint64_t at = FindInFile(5);
  {
    const int fd = ::open(File().c_str(), O_RDWR);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::pwrite(fd, "X", 1, static_cast<off_t>(at + 17)), 1);
    ::close(fd);
  }
  Open();
  const ShardStoreStats s = store_->Stats();
  EXPECT_EQ(s.disk_corrupt_records, 1u);
  EXPECT_EQ(s.disk_recovered, 19u);
  EXPECT_FALSE(Info(5).has_value());
  Register();
  for (uint64_t i = 0; i < 20; ++i) {
    if (i != 5) EXPECT_TRUE(Holds(i)) << i;
  }
}

TEST_F(ShardStoreDiskTest, FullDiskEvictsOldBlocksRatherThanFailingPuts) {
  Open(4 * 64 * kKiB + 4 * kKiB);  // 4 segments of 8 records: at most 32 blocks on disk
  Register();
  for (uint64_t i = 0; i < 200; ++i) ASSERT_TRUE(PutKey(i).ok()) << i;
  const ShardStoreStats s = store_->Stats();
  EXPECT_GT(s.disk_evictions, 0u);
  EXPECT_LE(s.disk_entries, 32u);
  EXPECT_LE(s.tiers[1].used_bytes, s.tiers[1].capacity_bytes);
  EXPECT_EQ(s.entries, 16u + s.disk_entries);
  EXPECT_FALSE(Info(0).has_value());  // the oldest went first
  for (uint64_t i = 190; i < 200; ++i) EXPECT_TRUE(Holds(i)) << i;
}

TEST_F(ShardStoreDiskTest, RemoveReachesTheDiskAndSurvivesRestart) {
  Register();
  for (uint64_t i = 0; i < 30; ++i) ASSERT_TRUE(PutKey(i).ok());
  ASSERT_EQ(Info(2)->tier, TierKind::kDisk);
  ASSERT_TRUE(store_->Remove(ns_, Key(2)).ok());
  EXPECT_FALSE(Info(2).has_value());
  EXPECT_EQ(store_->Remove(ns_, Key(2)).code(), absl::StatusCode::kNotFound);
  store_->EvictToTarget(0);
  Open();
  EXPECT_EQ(store_->Stats().disk_recovered, 29u);
  EXPECT_FALSE(Info(2).has_value());
}

TEST_F(ShardStoreDiskTest, MutableBlocksOverwriteOnDiskAndAreNotRecovered) {
  Register();
  ASSERT_TRUE(PutKey(1000, /*salt=*/1, /*mut=*/true).ok());
  for (uint64_t i = 0; i < 20; ++i) ASSERT_TRUE(PutKey(i).ok());
  ASSERT_EQ(Info(1000)->tier, TierKind::kDisk);
  ASSERT_TRUE(PutKey(1000, /*salt=*/2, /*mut=*/true).ok());  // overwrite while on disk
  EXPECT_EQ(Info(1000)->tier, TierKind::kHost);
  EXPECT_EQ(Info(1000)->version, (Version{0, 2}));
  EXPECT_TRUE(Holds(1000, 2));
  store_->EvictToTarget(0);
  EXPECT_EQ(Info(1000)->tier, TierKind::kDisk);
  EXPECT_TRUE(Holds(1000, 2));
  store_->EvictToTarget(0);
  Open();
  // A mutable block may have been rewritten elsewhere while this store was down.
  EXPECT_FALSE(Info(1000).has_value());
  EXPECT_EQ(store_->Stats().disk_recovered, 20u);
}

TEST_F(ShardStoreDiskTest, MemoryLimitDemotesAndHoldsPutsUnderIt) {
  Register();
  for (uint64_t i = 0; i < 16; ++i) ASSERT_TRUE(PutKey(i).ok());
  EXPECT_EQ(store_->SetMemoryLimit(16 * kKiB), 12u);
  ShardStoreStats s = store_->Stats();
  EXPECT_EQ(s.tiers[0].used_bytes, 16 * kKiB);
  EXPECT_EQ(s.memory_limit_bytes, 16 * kKiB);
  for (uint64_t i = 16; i < 40; ++i) ASSERT_TRUE(PutKey(i).ok());
  EXPECT_LE(store_->Stats().tiers[0].used_bytes, 16 * kKiB);
  for (uint64_t i = 0; i < 40; ++i) EXPECT_TRUE(Holds(i)) << i;
  EXPECT_LE(store_->Stats().tiers[0].used_bytes, 16 * kKiB);
  store_->SetMemoryLimit(UINT64_MAX);
  for (uint64_t i = 0; i < 16; ++i) EXPECT_TRUE(Holds(i));
  EXPECT_EQ(store_->Stats().tiers[0].used_bytes, 64 * kKiB);
}

TEST_F(ShardStoreDiskTest, AgeCutoffDemotesInsteadOfDropping) {
  Register();
  for (uint64_t i = 0; i < 8; ++i) ASSERT_TRUE(PutKey(i).ok());
  clock_.Advance(absl::Minutes(5));
  for (uint64_t i = 8; i < 12; ++i) ASSERT_TRUE(PutKey(i).ok());
  EXPECT_EQ(store_->EvictOlderThan(absl::Minutes(1), 0), 8u);
  EXPECT_EQ(Info(0)->tier, TierKind::kDisk);
  EXPECT_EQ(Info(9)->tier, TierKind::kHost);
  EXPECT_EQ(store_->Stats().tiers[0].stored_bytes, 4 * 4 * kKiB);
  for (uint64_t i = 0; i < 12; ++i) EXPECT_TRUE(Holds(i)) << i;
}

TEST_F(ShardStoreDiskTest, PinnedReadersKeepTheirBytesThroughADemotion) {
  Register();
  ASSERT_TRUE(PutKey(0).ok());
  auto lease = store_->Pin(ns_, Key(0));
  ASSERT_TRUE(lease.ok());
  for (uint64_t i = 1; i < 40; ++i) ASSERT_TRUE(PutKey(i).ok());
  EXPECT_EQ(Info(0)->tier, TierKind::kHost);  // pinned: never the victim
  ASSERT_TRUE(store_->Unpin(lease->id).ok());
  store_->EvictToTarget(0);
  EXPECT_EQ(Info(0)->tier, TierKind::kDisk);
  EXPECT_TRUE(Holds(0));
}

TEST_F(ShardStoreDiskTest, ConcurrentReadersAndWritersSeeExactBytes) {
  Register();
  std::atomic<bool> bad{false};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937 rng(t);
      std::vector<std::byte> buf(4 * kKiB);
      for (int n = 0; n < 300; ++n) {
        const uint64_t i = rng() % 60;
        if (rng() % 2) {
          auto put = PutKey(i);
          if (!put.ok() && put.status().code() != absl::StatusCode::kResourceExhausted) bad = true;
        } else {
          auto got = store_->Get(ns_, Key(i), absl::MakeSpan(buf));
          if (got.ok() && buf != Payload(i)) bad = true;
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_FALSE(bad.load());
  const ShardStoreStats s = store_->Stats();
  EXPECT_EQ(s.pinned_entries, 0u);
  EXPECT_EQ(s.disk_corrupt_records, 0u);
  EXPECT_EQ(s.entries, s.disk_entries + s.tiers[0].stored_bytes / (4 * kKiB));
}

}  // namespace
}  // namespace kvf
