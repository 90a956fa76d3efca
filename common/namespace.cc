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
  return absl::OkStatus();
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
