#include "common/namespace.h"

#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/status_macros.h"
#include "xxhash.h"

namespace kvf {
namespace {

void AppendU32(std::string& out, uint32_t v) {
  char b[4];
  std::memcpy(b, &v, 4);
  out.append(b, 4);
}
void AppendU64(std::string& out, uint64_t v) {
  char b[8];
  std::memcpy(b, &v, 8);
  out.append(b, 8);
}
void AppendString(std::string& out, const std::string& s) {
  AppendU32(out, static_cast<uint32_t>(s.size()));
  out.append(s);
}

// Bits per element a codec stores, by CodecId value (kernels/core/types.h);
// 16 stands for "the block's own dtype" (none). 0: not a codec id.
int CodecBits(uint8_t codec) {
  switch (codec) {
    case 0: return 16;  // none
    case 1: return 8;   // fp8_e4m3
    case 2: return 8;   // int8
    case 3: return 4;   // int4
    default: return 0;
  }
}

// Aging must shrink a block: `old` stores fewer bits per element than
// `recent`. That rejects old == recent (re-encoding for nothing), old = none
// (a block cannot regain the precision it lost), int8 <-> fp8 (same size)
// and int4 -> anything. recent = none with old = int4 (the recent window in
// full precision, as KIVI keeps its residual tokens) is allowed.
absl::Status ValidatePrecision(const PrecisionPolicy& p) {
  if (CodecBits(p.recent) == 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "namespace: precision.recent = ", int{p.recent}, " is not a codec id (0 none .. 3 int4)"));
  }
  if (CodecBits(p.old) == 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "namespace: precision.old = ", int{p.old}, " is not a codec id (0 none .. 3 int4)"));
  }
  if (p.recent_blocks > PrecisionPolicy::kMaxRecentBlocks) {
    return absl::InvalidArgumentError(
        absl::StrCat("namespace: precision.recent_blocks = ", p.recent_blocks, " exceeds ",
                     PrecisionPolicy::kMaxRecentBlocks));
  }
  if (p.enabled() && CodecBits(p.old) >= CodecBits(p.recent)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "namespace: precision.old (codec ", int{p.old}, ") must store fewer bits per element than "
        "precision.recent (codec ", int{p.recent}, "): aging re-encodes a block to save memory"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status NamespaceSpec::Validate() const {
  if (model_id.empty()) return absl::InvalidArgumentError("namespace: model_id is empty");
  if (model_id.size() > kMaxStringLength || tenant.size() > kMaxStringLength) {
    return absl::InvalidArgumentError(
        absl::StrCat("namespace: model_id and tenant are limited to ", kMaxStringLength,
                     " bytes"));
  }
  KVF_RETURN_IF_ERROR(layout.Validate());
  if (tp_size == 0 || tp_rank >= tp_size) {
    return absl::InvalidArgumentError(
        absl::StrCat("namespace: tp_rank ", tp_rank, " must be below tp_size ", tp_size));
  }
  if (segment_blocks == 0) return absl::InvalidArgumentError("namespace: segment_blocks is 0");
  if (hash != HashAlgorithm::kXxh3_128 && hash != HashAlgorithm::kSha256) {
    return absl::InvalidArgumentError("namespace: unknown hash algorithm");
  }
  return ValidatePrecision(precision);
}

NamespaceId NamespaceSpec::Id() const {
  std::string buf = "kvns1";
  AppendString(buf, model_id);
  AppendU64(buf, layout.Fingerprint());
  AppendU32(buf, tp_rank);
  AppendU32(buf, tp_size);
  AppendString(buf, tenant);
  buf.push_back(static_cast<char>(hash));
  AppendU32(buf, segment_blocks);
  return XXH3_64bits(buf.data(), buf.size());
}

std::string NamespaceSpec::DebugString() const {
  return absl::StrFormat("%s [%s] tp=%u/%u tenant=%s hash=%s seg=%u", model_id,
                         layout.DebugString(), tp_rank, tp_size, tenant,
                         std::string(HashAlgorithmName(hash)), segment_blocks);
}

}  // namespace kvf
