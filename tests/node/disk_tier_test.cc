#include "node/disk/disk_tier.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tests/node/temp_dir.h"

namespace kvf {
namespace {

constexpr uint64_t kKiB = 1024;
constexpr uint64_t kSegment = 64 * kKiB;

std::vector<std::byte> Bytes(uint64_t seed, size_t size) {
  std::vector<std::byte> out(size);
  std::mt19937_64 rng(seed);
  for (auto& b : out) b = std::byte(rng());
  return out;
}

DiskRecordMeta Meta(uint64_t i, uint64_t size = 10 * kKiB, bool mut = false) {
  DiskRecordMeta m;
  m.ns = 0x1234;
  m.key = BlockKey{0xfeed, i};
  m.version = Version{2, mut ? i + 1 : 0};
  m.codec = CodecId::kNone;
  m.mutable_entry = mut;
  m.size = size;
  m.placement_hash = 0x9e3779b97f4a7c15ull * (i + 1);
  m.parent = BlockKey{0xfeed, i - 1};
  m.depth = static_cast<uint32_t>(i);
  return m;
}

// Flips one byte of the file at `offset`.
void FlipByte(const std::string& file, uint64_t offset) {
  const int fd = ::open(file.c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  unsigned char b = 0;
  ASSERT_EQ(::pread(fd, &b, 1, static_cast<off_t>(offset)), 1);
  b ^= 0x5a;
  ASSERT_EQ(::pwrite(fd, &b, 1, static_cast<off_t>(offset)), 1);
  ASSERT_EQ(::fsync(fd), 0);
  ::close(fd);
}

class DiskTierTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_FALSE(dir_.path().empty()); }

  std::unique_ptr<DiskTier> Open(uint64_t capacity = 16 * kSegment + 4 * kKiB,
                                 uint64_t segment = kSegment) {
    DiskTierOptions o;
    o.path = dir_.path();
    o.capacity_bytes = capacity;
    o.segment_bytes = segment;
    auto disk = DiskTier::Open(o, &recovery_);
    EXPECT_TRUE(disk.ok()) << disk.status();
    return disk.ok() ? std::move(disk).value() : nullptr;
  }

  // Allocates and writes records for `ids`; returns their slots.
  std::vector<DiskSlot> WriteRecords(DiskTier& disk, const std::vector<uint64_t>& ids,
                                     bool mut = false,
                                     std::vector<ReclaimedRecord>* reclaimed = nullptr) {
    std::vector<ReclaimedRecord> ignored;
    DiskWriteBatch batch;
    std::vector<DiskSlot> slots;
    for (uint64_t i : ids) {
      auto slot = disk.Allocate(Meta(i, 10 * kKiB, mut), reclaimed ? reclaimed : &ignored);
      EXPECT_TRUE(slot.ok()) << slot.status();
      const auto data = Bytes(i, 10 * kKiB);
      absl::Span<std::byte> dst = batch.Add(*slot, Meta(i, 10 * kKiB, mut));
      std::memcpy(dst.data(), data.data(), data.size());
      slots.push_back(*slot);
    }
    EXPECT_TRUE(disk.Write(&batch).ok());
    for (size_t k = 0; k < slots.size(); ++k) {
      EXPECT_TRUE(batch.written(k));
      disk.EndIo(slots[k].offset);
    }
    return slots;
  }

  TempDir dir_;
  DiskRecovery recovery_;
};

TEST_F(DiskTierTest, WrittenRecordReadsBackByteExact) {
  auto disk = Open();
  ASSERT_NE(disk, nullptr);
  EXPECT_TRUE(recovery_.reinitialized);
  const std::vector<DiskSlot> slots = WriteRecords(*disk, {1, 2, 3});
  for (uint64_t i = 1; i <= 3; ++i) {
    auto read = disk->Read(slots[i - 1], Meta(i));
    ASSERT_TRUE(read.ok()) << read.status();
    const auto want = Bytes(i, 10 * kKiB);
    ASSERT_EQ(read->payload().size(), want.size());
    EXPECT_EQ(std::memcmp(read->payload().data(), want.data(), want.size()), 0);
    EXPECT_EQ(read->meta().placement_hash, Meta(i).placement_hash);
  }
  EXPECT_EQ(disk->writes(), 3u);
  EXPECT_EQ(disk->reads(), 3u);
  // Three records of 10 KiB + header, each rounded up to 12 KiB.
  EXPECT_EQ(disk->SpaceStats().used_bytes, 3 * 12 * kKiB);
  EXPECT_EQ(disk->SpaceStats().stored_bytes, 3 * 10 * kKiB);
  EXPECT_GE(disk->write_latency().count(), 1u);  // contiguous: one write
  // Asking for another block at that place is refused.
  EXPECT_EQ(disk->Read(slots[0], Meta(2)).status().code(), absl::StatusCode::kDataLoss);
}

TEST_F(DiskTierTest, ReopenRecoversEveryRecordWithItsMetadata) {
  std::vector<DiskSlot> slots;
  {
    auto disk = Open();
    ASSERT_NE(disk, nullptr);
    slots = WriteRecords(*disk, {1, 2, 3, 4, 5});
  }
  auto disk = Open();
  ASSERT_NE(disk, nullptr);
  EXPECT_FALSE(recovery_.reinitialized);
  EXPECT_EQ(recovery_.corrupt, 0u);
  ASSERT_EQ(recovery_.records.size(), 5u);
  for (const RecoveredRecord& r : recovery_.records) {
    const uint64_t i = r.meta.key.lo;
    const DiskRecordMeta want = Meta(i);
    EXPECT_EQ(r.meta.ns, want.ns);
    EXPECT_EQ(r.meta.version, want.version);
    EXPECT_EQ(r.meta.placement_hash, want.placement_hash);
    EXPECT_EQ(r.meta.parent, want.parent);
    EXPECT_EQ(r.meta.depth, want.depth);
    EXPECT_EQ(r.slot.offset, slots[i - 1].offset);
    auto read = disk->Read(r.slot, want);
    ASSERT_TRUE(read.ok()) << read.status();
    EXPECT_EQ(std::memcmp(read->payload().data(), Bytes(i, 10 * kKiB).data(), 10 * kKiB), 0);
  }
  // New records go to a fresh segment and do not disturb the old ones.
  WriteRecords(*disk, {6});
  EXPECT_EQ(disk->SpaceStats().used_bytes, 6 * 12 * kKiB);
}

TEST_F(DiskTierTest, CorruptRecordIsDroppedAtOpenAndCounted) {
  std::string file;
  std::vector<DiskSlot> slots;
  {
    auto disk = Open();
    ASSERT_NE(disk, nullptr);
    file = disk->file_path();
    slots = WriteRecords(*disk, {1, 2, 3});
  }
  FlipByte(file, slots[1].offset + 128 + 5000);  // inside record 2's payload
  auto disk = Open();
  ASSERT_NE(disk, nullptr);
  EXPECT_EQ(recovery_.corrupt, 1u);
  EXPECT_EQ(disk->corrupt_records(), 1u);
  ASSERT_EQ(recovery_.records.size(), 2u);
  for (const RecoveredRecord& r : recovery_.records) EXPECT_NE(r.meta.key.lo, 2u);
}

TEST_F(DiskTierTest, CorruptRecordIsRefusedOnRead) {
  auto disk = Open();
  ASSERT_NE(disk, nullptr);
  const std::vector<DiskSlot> slots = WriteRecords(*disk, {1, 2});
  FlipByte(disk->file_path(), slots[0].offset + 128 + 10);
  EXPECT_EQ(disk->Read(slots[0], Meta(1)).status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(disk->corrupt_records(), 1u);
  EXPECT_TRUE(disk->Read(slots[1], Meta(2)).ok());
  // A torn header (the header's own checksum) is caught too.
  FlipByte(disk->file_path(), slots[1].offset + 40);
  EXPECT_EQ(disk->Read(slots[1], Meta(2)).status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(disk->corrupt_records(), 2u);
}

TEST_F(DiskTierTest, FullLogReclaimsTheOldestSegment) {
  // 4 segments of 64 KiB hold 5 records of 12 KiB each.
  auto disk = Open(4 * kSegment + 4 * kKiB);
  ASSERT_NE(disk, nullptr);
  std::vector<ReclaimedRecord> reclaimed;
  std::vector<uint64_t> ids;
  for (uint64_t i = 1; i <= 20; ++i) ids.push_back(i);
  WriteRecords(*disk, ids, false, &reclaimed);
  EXPECT_TRUE(reclaimed.empty());
  WriteRecords(*disk, {21}, false, &reclaimed);  // the log is full: segment 1 goes
  ASSERT_EQ(reclaimed.size(), 5u);
  for (size_t k = 0; k < 5; ++k) EXPECT_EQ(reclaimed[k].key.lo, k + 1);
  EXPECT_LE(disk->SpaceStats().used_bytes, disk->SpaceStats().capacity_bytes);
  EXPECT_EQ(disk->SpaceStats().used_bytes, 16 * 12 * kKiB);
  // After a restart the reclaimed records stay gone and the rest are there.
  disk.reset();
  disk = Open(4 * kSegment + 4 * kKiB);
  ASSERT_NE(disk, nullptr);
  EXPECT_EQ(recovery_.records.size(), 16u);
  for (const RecoveredRecord& r : recovery_.records) EXPECT_GT(r.meta.key.lo, 5u);
}

TEST_F(DiskTierTest, BusySegmentIsNotReclaimed) {
  auto disk = Open(4 * kSegment + 4 * kKiB);
  ASSERT_NE(disk, nullptr);
  std::vector<uint64_t> ids;
  for (uint64_t i = 1; i <= 20; ++i) ids.push_back(i);
  const std::vector<DiskSlot> slots = WriteRecords(*disk, ids);
  disk->BeginIo(slots[0].offset);  // a reader in segment 1
  std::vector<ReclaimedRecord> reclaimed;
  WriteRecords(*disk, {21}, false, &reclaimed);
  ASSERT_EQ(reclaimed.size(), 5u);
  EXPECT_EQ(reclaimed[0].key.lo, 6u);  // segment 2 went instead
  disk->EndIo(slots[0].offset);
}

TEST_F(DiskTierTest, TombstonedAndFreedRecordsStayGoneAfterRestart) {
  {
    auto disk = Open();
    ASSERT_NE(disk, nullptr);
    const std::vector<DiskSlot> slots = WriteRecords(*disk, {1, 2, 3});
    disk->Free(slots[1]);
    ASSERT_TRUE(disk->Tombstone(slots[1], Meta(2)).ok());
  }
  auto disk = Open();
  ASSERT_NE(disk, nullptr);
  ASSERT_EQ(recovery_.records.size(), 2u);  // the scan skips the tombstone, finds record 3
  for (const RecoveredRecord& r : recovery_.records) EXPECT_NE(r.meta.key.lo, 2u);
  EXPECT_EQ(recovery_.corrupt, 0u);
}

TEST_F(DiskTierTest, NewestCopyOfAKeyWinsAndMutableRecordsAreNotRecovered) {
  {
    auto disk = Open();
    ASSERT_NE(disk, nullptr);
    WriteRecords(*disk, {1, 2});
    WriteRecords(*disk, {1});                    // a second copy of block 1
    WriteRecords(*disk, {7}, /*mut=*/true);      // mutable: may be stale after a restart
  }
  auto disk = Open();
  ASSERT_NE(disk, nullptr);
  EXPECT_EQ(recovery_.records.size(), 2u);
  EXPECT_EQ(recovery_.superseded, 1u);
  EXPECT_EQ(recovery_.mutable_dropped, 1u);
  for (const RecoveredRecord& r : recovery_.records) {
    if (r.meta.key.lo == 1) EXPECT_EQ(r.slot.offset, 4 * kKiB + 2 * 12 * kKiB);
  }
}

TEST_F(DiskTierTest, SecondOpenOfTheSameDirectoryIsRefused) {
  auto first = Open();
  ASSERT_NE(first, nullptr);
  DiskTierOptions o;
  o.path = dir_.path();
  o.capacity_bytes = 16 * kSegment + 4 * kKiB;
  o.segment_bytes = kSegment;
  DiskRecovery r;
  auto second = DiskTier::Open(o, &r);
  EXPECT_EQ(second.status().code(), absl::StatusCode::kFailedPrecondition) << second.status();
}

TEST_F(DiskTierTest, OtherGeometryStartsEmpty) {
  {
    auto disk = Open();
    ASSERT_NE(disk, nullptr);
    WriteRecords(*disk, {1, 2});
  }
  auto disk = Open(8 * 2 * kSegment + 4 * kKiB, 2 * kSegment);
  ASSERT_NE(disk, nullptr);
  EXPECT_TRUE(recovery_.reinitialized);
  EXPECT_TRUE(recovery_.records.empty());
}

TEST_F(DiskTierTest, TooSmallOrTooLargeIsAClearError) {
  DiskTierOptions o;
  o.path = dir_.path();
  o.capacity_bytes = kSegment;  // not two segments
  o.segment_bytes = kSegment;
  DiskRecovery r;
  auto small = DiskTier::Open(o, &r);
  EXPECT_EQ(small.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(small.status().message().find("two"), std::string::npos) << small.status();
  auto disk = Open();
  ASSERT_NE(disk, nullptr);
  std::vector<ReclaimedRecord> reclaimed;
  auto big = disk->Allocate(Meta(1, kSegment), &reclaimed);
  EXPECT_EQ(big.status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace kvf
