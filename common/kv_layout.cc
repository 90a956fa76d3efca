#include "common/kv_layout.h"

#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "xxhash.h"

namespace kvf {

size_t DTypeSize(DType dtype) {
  switch (dtype) {
    case DType::kFp16:
    case DType::kBf16: return 2;
    case DType::kFp32: return 4;
  }
  return 0;
}

std::string_view DTypeName(DType dtype) {
  switch (dtype) {
    case DType::kFp16: return "fp16";
    case DType::kBf16: return "bf16";
    case DType::kFp32: return "fp32";
  }
  return "unknown";
}

absl::StatusOr<DType> ParseDType(std::string_view name) {
  if (name == "fp16" || name == "float16") return DType::kFp16;
  if (name == "bf16" || name == "bfloat16") return DType::kBf16;
  if (name == "fp32" || name == "float32") return DType::kFp32;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown dtype '", std::string(name), "' (want fp16, bf16 or fp32)"));
}

absl::Status KvLayout::Validate() const {
  auto check = [](absl::string_view field, uint32_t v, uint32_t max) -> absl::Status {
    if (v == 0 || v > max) {
      return absl::InvalidArgumentError(
          absl::StrCat("KV layout: ", field, " = ", v, " is out of range [1, ", max, "]"));
    }
    return absl::OkStatus();
  };
  if (auto s = check("num_layers", num_layers, kMaxLayers); !s.ok()) return s;
  if (auto s = check("num_kv_heads", num_kv_heads, kMaxKvHeads); !s.ok()) return s;
  if (auto s = check("head_dim", head_dim, kMaxHeadDim); !s.ok()) return s;
  if (auto s = check("block_tokens", block_tokens, kMaxBlockTokens); !s.ok()) return s;
  if (DTypeSize(dtype) == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("KV layout: unknown dtype code ", static_cast<int>(dtype)));
  }
  return absl::OkStatus();
}

uint64_t KvLayout::Fingerprint() const {
  // A fixed little-endian encoding with a version tag, never the struct bytes
  // (padding and field order are not a format).
  uint8_t buf[5 + 4 * 4 + 1];
  std::memcpy(buf, "kvl1\0", 5);
  const uint32_t fields[4] = {num_layers, num_kv_heads, head_dim, block_tokens};
  std::memcpy(buf + 5, fields, sizeof(fields));
  buf[21] = static_cast<uint8_t>(dtype);
  return XXH3_64bits(buf, sizeof(buf));
}

std::string KvLayout::DebugString() const {
  return absl::StrFormat("L=%u H=%u D=%u T=%u %s", num_layers, num_kv_heads, head_dim,
                         block_tokens, std::string(DTypeName(dtype)));
}

}  // namespace kvf
