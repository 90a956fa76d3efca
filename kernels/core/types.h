// Plain types of the Abseil-free kernel core (kernels/core/): the block shape,
// the codec id, and a small result type. The core builds with only a C++20
// compiler (and CUDA for the device half), so kernels and their GPU tests can
// be built on a machine that has none of the project's other dependencies
// (kernels/standalone/). kernels/codec.h, kernels/cuda_codecs.h and
// kernels/paged.h wrap it in absl::Status for the rest of the project.
#ifndef KVF_KERNELS_CORE_TYPES_H_
#define KVF_KERNELS_CORE_TYPES_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>

namespace kvf {

// How a block is stored (docs/design.md, "Codec"); re-exported by kernels/codec.h.
enum class CodecId : uint8_t {
  kNone = 0,
  kFp8E4m3 = 1,  // OCP E4M3FN (max 448), one fp32 scale per (layer, K|V, head)
  kInt8 = 2,     // symmetric int8, one fp32 scale per (layer, K|V, token)
  kInt4 = 3,     // KIVI-style, groups of 32: K per-channel, V per-token
};
inline constexpr int kNumCodecs = 4;

namespace kcore {

// Element type of an unencoded block; the values equal kvf::DType's.
enum class ElemType : uint8_t { kFp16 = 0, kBf16 = 1, kFp32 = 2 };

inline constexpr size_t ElemSize(ElemType t) { return t == ElemType::kFp32 ? 4 : 2; }

// The shape of one kvfabric block, canonical order [L][2 (K,V)][T][H][D]
// (common/kv_layout.h). Field names match KvLayout so code reads the same.
struct KvShape {
  uint32_t num_layers = 0;
  uint32_t num_kv_heads = 0;
  uint32_t head_dim = 0;
  uint32_t block_tokens = 0;
  ElemType dtype = ElemType::kFp16;

  size_t ElementsPerBlock() const {
    return size_t{2} * num_layers * block_tokens * num_kv_heads * head_dim;
  }
  size_t BytesPerBlock() const { return ElementsPerBlock() * ElemSize(dtype); }
};

// Outcome of a core call. The codes map 1:1 onto absl::StatusCode values of
// the same names (the wrappers convert); kInternal carries CUDA errors, whose
// message names the call and the CUDA error's name and text.
enum class ResultCode : int {
  kOk = 0,
  kInvalidArgument = 3,
  kFailedPrecondition = 9,
  kInternal = 13,
  kDataLoss = 15,
};

struct Result {
  ResultCode code = ResultCode::kOk;
  std::string message;

  bool ok() const { return code == ResultCode::kOk; }
  static Result Ok() { return {}; }
  static Result InvalidArgument(std::string m) { return {ResultCode::kInvalidArgument, std::move(m)}; }
  static Result DataLoss(std::string m) { return {ResultCode::kDataLoss, std::move(m)}; }
  static Result Internal(std::string m) { return {ResultCode::kInternal, std::move(m)}; }
};

}  // namespace kcore
}  // namespace kvf

#endif  // KVF_KERNELS_CORE_TYPES_H_
