// The byte layouts the fuzz targets read, shared by the targets and the seed
// generator (seed_main.cc), so the seeds are exactly what the targets parse.
#ifndef KVF_TESTS_FUZZ_INPUT_FORMATS_H_
#define KVF_TESTS_FUZZ_INPUT_FORMATS_H_

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "common/kv_layout.h"
#include "kernels/codec.h"
#include "kernels/core/blob_format.h"

namespace kvf::fuzz {

// ---- kvf_codec_fuzz (codec_fuzz.cc describes the bytes) ----

inline constexpr size_t kCodecPrefix = 6;
inline constexpr uint8_t kPagePerToken = 0x40;
inline constexpr uint8_t kFixFingerprint = 0x80;

struct CodecInput {
  CodecId codec = CodecId::kNone;
  int entry = 0;  // 0..3, see codec_fuzz.cc
  bool page_per_token = false;
  KvLayout layout;
  std::vector<std::byte> blob;
};

inline bool ParseCodecInput(const uint8_t* data, size_t size, CodecInput* in) {
  if (size < kCodecPrefix) return false;
  in->codec = static_cast<CodecId>(data[0] & 3);
  in->entry = (data[0] >> 2) & 3;
  in->layout.dtype = static_cast<DType>(data[1] % 3);
  in->page_per_token = (data[1] & kPagePerToken) != 0;
  in->layout.num_layers = 1 + data[2] % 4;
  in->layout.num_kv_heads = 1 + data[3] % 4;
  in->layout.head_dim = 1 + data[4] % 80;
  in->layout.block_tokens = 1 + data[5] % 80;
  in->blob.assign(reinterpret_cast<const std::byte*>(data + kCodecPrefix),
                  reinterpret_cast<const std::byte*>(data + size));
  const size_t fp_at = offsetof(kcore::BlobHeader, layout_fingerprint);
  if ((data[1] & kFixFingerprint) != 0 && in->blob.size() >= fp_at + sizeof(uint64_t)) {
    const uint64_t fp = in->layout.Fingerprint();
    std::memcpy(in->blob.data() + fp_at, &fp, sizeof(fp));
  }
  return true;
}

// The prefix selecting `codec`, `entry` and `layout` (whose dims must be in
// the ranges above); append the blob.
inline std::string CodecInputPrefix(CodecId codec, int entry, const KvLayout& layout,
                                    uint8_t flags) {
  std::string p(kCodecPrefix, '\0');
  p[0] = static_cast<char>(static_cast<uint8_t>(codec) | (entry << 2));
  p[1] = static_cast<char>(static_cast<uint8_t>(layout.dtype) | flags);
  p[2] = static_cast<char>(layout.num_layers - 1);
  p[3] = static_cast<char>(layout.num_kv_heads - 1);
  p[4] = static_cast<char>(layout.head_dim - 1);
  p[5] = static_cast<char>(layout.block_tokens - 1);
  return p;
}

// ---- kvf_coordinator_fuzz (coordinator_fuzz.cc describes the calls) ----
//
//   [config byte] then records: [op byte][length, 2 bytes little-endian][payload]
// A length past the end of the input takes what is left.

enum class CoordinatorOp : uint8_t {
  kJoin = 0,             // payload: proto::JoinRequest
  kHeartbeat = 1,        // payload: proto::HeartbeatRequest
  kDrain = 2,            // payload: proto::NodeRequest
  kUndrain = 3,          // payload: proto::NodeRequest
  kLeave = 4,            // payload: proto::NodeRequest
  kReportMigration = 5,  // payload: proto::ReportMigrationRequest
  kAdvanceAndTick = 6,   // payload: little-endian milliseconds (up to 4 bytes)
  kCompleteTasks = 7,    // payload[0]: 0 done, 1 failed, 2 progress only
  kWaitForMaps = 8,      // payload: little-endian after_epoch (up to 8 bytes)
  kDeliver = 9,          // payload: little-endian source node id (up to 4 bytes)
  kHeartbeatAll = 10,    // no payload: every live node renews its lease
  kInspect = 11,         // no payload: Stats, OutstandingTasks, the map
  kRestart = 12,         // payload: XORed into the saved roster, then a new
                         // service starts on the state dir (persisted only)
};
inline constexpr int kNumCoordinatorOps = 13;

// Config byte: replication 1 + (b & 3) % 3; bit 2: the state dir starts with
// a saved epoch and no roster (a restarted coordinator that recovers);
// bit 3: bounded-load epsilon 0.25; bit 4: fake agents receive tasks (else
// none are sent); bit 5: persisted (a state dir, emptied first; else none);
// lease = 1 + (b >> 6) seconds.
inline constexpr uint8_t kRestarted = 0x04;
inline constexpr uint8_t kWithAgents = 0x10;
inline constexpr uint8_t kPersisted = 0x20;

inline void AppendCoordinatorRecord(std::string* out, CoordinatorOp op, std::string_view payload) {
  out->push_back(static_cast<char>(op));
  out->push_back(static_cast<char>(payload.size() & 0xff));
  out->push_back(static_cast<char>((payload.size() >> 8) & 0xff));
  out->append(payload);
}

// Splits `data` into records; false when the input is empty.
struct CoordinatorRecord {
  CoordinatorOp op;
  std::string_view payload;
};
inline bool ParseCoordinatorInput(const uint8_t* data, size_t size, uint8_t* config,
                                  std::vector<CoordinatorRecord>* records) {
  if (size < 1) return false;
  *config = data[0];
  size_t pos = 1;
  while (pos < size) {
    CoordinatorRecord r;
    r.op = static_cast<CoordinatorOp>(data[pos] % kNumCoordinatorOps);
    size_t len = 0;
    if (pos + 1 < size) len = data[pos + 1];
    if (pos + 2 < size) len |= size_t{data[pos + 2]} << 8;
    pos = std::min(size, pos + 3);
    len = std::min(len, size - pos);
    r.payload = std::string_view(reinterpret_cast<const char*>(data + pos), len);
    pos += len;
    records->push_back(r);
  }
  return true;
}

// Little-endian unsigned from up to sizeof(T) bytes of `payload`.
template <typename T>
T LittleEndian(std::string_view payload) {
  T v = 0;
  for (size_t i = 0; i < payload.size() && i < sizeof(T); ++i) {
    v |= static_cast<T>(static_cast<uint8_t>(payload[i])) << (8 * i);
  }
  return v;
}

}  // namespace kvf::fuzz

#endif  // KVF_TESTS_FUZZ_INPUT_FORMATS_H_
