#include "node/disk/internal/record.h"

#include <cstring>

#include "xxhash.h"

namespace kvf::disk_internal {
namespace {

constexpr size_t kRecordSumPrefix = offsetof(RecordHeader, record_checksum);  // 104
constexpr size_t kHeaderSumPrefix = offsetof(RecordHeader, header_checksum);  // 112
static_assert(kRecordSumPrefix == 104 && kHeaderSumPrefix == 112);

uint64_t RecordSum(const RecordHeader& h, const std::byte* payload) {
  XXH3_state_t state;
  XXH3_64bits_reset(&state);
  XXH3_64bits_update(&state, &h, kRecordSumPrefix);
  XXH3_64bits_update(&state, payload, h.payload_bytes);
  return XXH3_64bits_digest(&state);
}

uint64_t HeaderSum(const RecordHeader& h) { return XXH3_64bits(&h, kHeaderSumPrefix); }

RecordHeader HeaderFor(uint32_t magic, uint64_t gen, uint64_t record_bytes,
                       const DiskRecordMeta& meta) {
  RecordHeader h;
  std::memset(&h, 0, sizeof(h));
  h.magic = magic;
  h.format = kFormat;
  h.header_bytes = kHeaderBytes;
  h.segment_gen = gen;
  h.record_bytes = record_bytes;
  h.ns = meta.ns;
  h.key_hi = meta.key.hi;
  h.key_lo = meta.key.lo;
  h.version_epoch = meta.version.epoch;
  h.version_counter = meta.version.counter;
  h.payload_bytes = meta.size;
  h.placement_hash = meta.placement_hash;
  h.parent_hi = meta.parent.hi;
  h.parent_lo = meta.parent.lo;
  h.depth = meta.depth;
  h.codec = static_cast<uint8_t>(meta.codec);
  h.flags = meta.mutable_entry ? 1 : 0;
  return h;
}

}  // namespace

void SealRecord(const DiskRecordMeta& meta, uint64_t segment_gen, absl::Span<std::byte> buf) {
  RecordHeader h = HeaderFor(kRecordMagic, segment_gen, buf.size(), meta);
  const std::byte* payload = buf.data() + kHeaderBytes;
  h.record_checksum = RecordSum(h, payload);
  h.header_checksum = HeaderSum(h);
  std::memcpy(buf.data(), &h, sizeof(h));
  std::memset(buf.data() + kHeaderBytes + meta.size, 0, buf.size() - kHeaderBytes - meta.size);
}

void MakeTombstone(uint64_t segment_gen, uint64_t record_bytes, const DiskRecordMeta& meta,
                   absl::Span<std::byte> block) {
  std::memset(block.data(), 0, block.size());
  DiskRecordMeta empty = meta;
  empty.size = 0;
  RecordHeader h = HeaderFor(kTombstoneMagic, segment_gen, record_bytes, empty);
  h.record_checksum = RecordSum(h, block.data() + kHeaderBytes);
  h.header_checksum = HeaderSum(h);
  std::memcpy(block.data(), &h, sizeof(h));
}

HeaderState CheckHeader(const std::byte* block, uint64_t space_left, RecordHeader* out) {
  std::memcpy(out, block, sizeof(*out));
  if (out->magic != kRecordMagic && out->magic != kTombstoneMagic) return HeaderState::kEnd;
  if (HeaderSum(*out) != out->header_checksum || out->format != kFormat ||
      out->header_bytes != kHeaderBytes || out->record_bytes == 0 ||
      out->record_bytes % kIoAlign != 0 || out->record_bytes > space_left ||
      RecordBytesFor(out->payload_bytes) > out->record_bytes) {
    return HeaderState::kBadHeader;
  }
  return out->magic == kRecordMagic ? HeaderState::kRecord : HeaderState::kTombstone;
}

bool CheckPayload(const RecordHeader& h, const std::byte* record) {
  return RecordSum(h, record + kHeaderBytes) == h.record_checksum;
}

DiskRecordMeta MetaOf(const RecordHeader& h) {
  DiskRecordMeta m;
  m.ns = h.ns;
  m.key = BlockKey{h.key_hi, h.key_lo};
  m.version = Version{h.version_epoch, h.version_counter};
  m.codec = static_cast<CodecId>(h.codec);
  m.mutable_entry = (h.flags & 1) != 0;
  m.size = h.payload_bytes;
  m.placement_hash = h.placement_hash;
  m.parent = BlockKey{h.parent_hi, h.parent_lo};
  m.depth = h.depth;
  return m;
}

void MakeSuperBlock(uint64_t segment_bytes, uint64_t segments, absl::Span<std::byte> block) {
  std::memset(block.data(), 0, block.size());
  SuperBlock sb{};
  sb.magic = kSuperMagic;
  sb.format = kFormat;
  sb.segment_bytes = segment_bytes;
  sb.segments = segments;
  sb.checksum = XXH3_64bits(&sb, offsetof(SuperBlock, checksum));
  std::memcpy(block.data(), &sb, sizeof(sb));
}

bool ReadSuperBlock(const std::byte* block, uint64_t* segment_bytes, uint64_t* segments) {
  SuperBlock sb;
  std::memcpy(&sb, block, sizeof(sb));
  if (sb.magic != kSuperMagic || sb.format != kFormat ||
      XXH3_64bits(&sb, offsetof(SuperBlock, checksum)) != sb.checksum) {
    return false;
  }
  *segment_bytes = sb.segment_bytes;
  *segments = sb.segments;
  return true;
}

}  // namespace kvf::disk_internal
