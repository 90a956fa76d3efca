// The on-disk form of one block record of the disk tier (docs/shard-store.md,
// "Disk tier"). Private to node/disk.
#ifndef KVF_NODE_DISK_INTERNAL_RECORD_H_
#define KVF_NODE_DISK_INTERNAL_RECORD_H_

#include <cstddef>
#include <cstdint>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "node/disk/disk_tier.h"

namespace kvf::disk_internal {

// Every I/O is in whole 4 KiB blocks at 4 KiB-aligned offsets and addresses,
// which O_DIRECT needs on every common device and file system.
inline constexpr uint64_t kIoAlign = 4096;
inline constexpr uint32_t kRecordMagic = 0x5246564b;     // "KVFR"
inline constexpr uint32_t kTombstoneMagic = 0x5446564b;  // "KVFT": a removed record
inline constexpr uint32_t kSuperMagic = 0x4446564b;      // "KVFD": the file's first block
inline constexpr uint16_t kFormat = 1;

// 128 bytes at the start of each record, little-endian (the struct is written
// as is: x86-64 and aarch64 only). The payload follows at byte 128; the record
// is padded with zeros to a multiple of kIoAlign.
struct RecordHeader {
  uint32_t magic;
  uint16_t format;
  uint16_t header_bytes;
  uint64_t segment_gen;  // the generation of the segment when it was written
  uint64_t record_bytes;
  uint64_t ns;
  uint64_t key_hi, key_lo;
  uint64_t version_epoch, version_counter;
  uint64_t payload_bytes;
  uint64_t placement_hash;
  uint64_t parent_hi, parent_lo;
  uint32_t depth;
  uint8_t codec;
  uint8_t flags;  // bit 0: mutable entry
  uint16_t reserved;
  uint64_t record_checksum;  // XXH3-64: header bytes [0, 104) then the payload
  uint64_t header_checksum;  // XXH3-64: header bytes [0, 112)
  uint64_t reserved2;
};
static_assert(sizeof(RecordHeader) == 128);
inline constexpr uint64_t kHeaderBytes = sizeof(RecordHeader);

// The file's first 4 KiB block: its geometry, so a restart with other
// options does not misread it.
struct SuperBlock {
  uint32_t magic;
  uint16_t format;
  uint16_t reserved;
  uint64_t segment_bytes;
  uint64_t segments;
  uint64_t checksum;  // XXH3-64 of the bytes before it
};

inline uint64_t RoundUpIo(uint64_t v) { return (v + kIoAlign - 1) / kIoAlign * kIoAlign; }
inline uint64_t RecordBytesFor(uint64_t payload) { return RoundUpIo(kHeaderBytes + payload); }

// Writes the header for `meta` into buf[0, 128) and zero padding after
// the payload, which the caller has put at buf[128, 128 + meta.size).
// `buf` is RecordBytesFor(meta.size) bytes.
void SealRecord(const DiskRecordMeta& meta, uint64_t segment_gen, absl::Span<std::byte> buf);
// A tombstone over a record of `record_bytes`: its first 4 KiB block.
void MakeTombstone(uint64_t segment_gen, uint64_t record_bytes, const DiskRecordMeta& meta,
                   absl::Span<std::byte> block);

// What the first block of a record says. kEnd: no record starts here (zeros,
// old bytes, a torn header); kBadHeader: a record's magic with a header that
// does not verify.
enum class HeaderState { kRecord, kTombstone, kEnd, kBadHeader };
HeaderState CheckHeader(const std::byte* block, uint64_t space_left, RecordHeader* out);
// Verifies a whole record (header already checked): the record checksum.
bool CheckPayload(const RecordHeader& h, const std::byte* record);
DiskRecordMeta MetaOf(const RecordHeader& h);

void MakeSuperBlock(uint64_t segment_bytes, uint64_t segments, absl::Span<std::byte> block);
bool ReadSuperBlock(const std::byte* block, uint64_t* segment_bytes, uint64_t* segments);

}  // namespace kvf::disk_internal

#endif  // KVF_NODE_DISK_INTERNAL_RECORD_H_
