// Loads and stores of one element of an unencoded block, per dtype, for the
// CPU codecs (kernels/core/). `i` counts elements; `p` may be unaligned.
#ifndef KVF_KERNELS_CORE_ELEM_H_
#define KVF_KERNELS_CORE_ELEM_H_

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "kernels/core/types.h"
#include "kernels/internal/codec_math.h"

namespace kvf::kcore {

struct Fp16Elem {
  static float Load(const void* p, size_t i) {
    uint16_t h;
    std::memcpy(&h, static_cast<const std::byte*>(p) + 2 * i, 2);
    return internal::HalfToFloat(h);
  }
  static void Store(void* p, size_t i, float v) {
    const uint16_t h = internal::FloatToHalf(v);
    std::memcpy(static_cast<std::byte*>(p) + 2 * i, &h, 2);
  }
};
struct Bf16Elem {
  static float Load(const void* p, size_t i) {
    uint16_t h;
    std::memcpy(&h, static_cast<const std::byte*>(p) + 2 * i, 2);
    return internal::Bf16ToFloat(h);
  }
  static void Store(void* p, size_t i, float v) {
    const uint16_t h = internal::FloatToBf16(v);
    std::memcpy(static_cast<std::byte*>(p) + 2 * i, &h, 2);
  }
};
struct Fp32Elem {
  static float Load(const void* p, size_t i) {
    float f;
    std::memcpy(&f, static_cast<const std::byte*>(p) + 4 * i, 4);
    return f;
  }
  static void Store(void* p, size_t i, float v) {
    std::memcpy(static_cast<std::byte*>(p) + 4 * i, &v, 4);
  }
};

// Calls f(Fp16Elem{}), f(Bf16Elem{}) or f(Fp32Elem{}) for `t`.
template <typename F>
auto DispatchElem(ElemType t, F&& f) {
  switch (t) {
    case ElemType::kBf16: return f(Bf16Elem{});
    case ElemType::kFp32: return f(Fp32Elem{});
    case ElemType::kFp16: break;
  }
  return f(Fp16Elem{});
}

}  // namespace kvf::kcore

#endif  // KVF_KERNELS_CORE_ELEM_H_
