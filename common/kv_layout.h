// KvLayout: the shape of one KV block, and its fingerprint.
#ifndef KVF_COMMON_KV_LAYOUT_H_
#define KVF_COMMON_KV_LAYOUT_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace kvf {

enum class DType : uint8_t { kFp16 = 0, kBf16 = 1, kFp32 = 2 };

size_t DTypeSize(DType dtype);
std::string_view DTypeName(DType dtype);
absl::StatusOr<DType> ParseDType(std::string_view name);

// One block holds K and V for `block_tokens` tokens of every layer. The
// canonical, unencoded element order of a block is layer-major:
//   [num_layers][2 (K, V)][block_tokens][num_kv_heads][head_dim]
// so a block is 2 * L * T * H * D * sizeof(dtype) bytes.
struct KvLayout {
  uint32_t num_layers = 0;
  uint32_t num_kv_heads = 0;
  uint32_t head_dim = 0;
  uint32_t block_tokens = 0;
  DType dtype = DType::kFp16;

  // Limits that keep every size below fit in 64 bits with room to spare, and
  // reject garbage from configs and wire headers.
  static constexpr uint32_t kMaxLayers = 1024;
  static constexpr uint32_t kMaxKvHeads = 1024;
  static constexpr uint32_t kMaxHeadDim = 4096;
  static constexpr uint32_t kMaxBlockTokens = 1 << 16;

  // OK when every field is in range; otherwise INVALID_ARGUMENT naming it.
  absl::Status Validate() const;

  size_t ElementsPerBlock() const {
    return size_t{2} * num_layers * block_tokens * num_kv_heads * head_dim;
  }
  size_t BytesPerToken() const {
    return size_t{2} * num_layers * num_kv_heads * head_dim * DTypeSize(dtype);
  }
  size_t BytesPerBlock() const { return BytesPerToken() * block_tokens; }

  // 64-bit fingerprint of every field, stable across processes and versions
  // (golden-tested). Any field change changes it.
  uint64_t Fingerprint() const;

  std::string DebugString() const;

  friend bool operator==(const KvLayout&, const KvLayout&) = default;
};

}  // namespace kvf

#endif  // KVF_COMMON_KV_LAYOUT_H_
