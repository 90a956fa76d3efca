// Division of 32-bit unsigned values by a divisor fixed at launch time, for
// the index arithmetic of the device kernels (kernels/cuda/): a multiply-high,
// an add and two shifts instead of the ~20 instructions of a general integer
// division. Plain C++ where no CUDA compiler is involved, so host tests can
// check it against `/` (tests/kernels/codec_gpu_core_test.cc).
#ifndef KVF_KERNELS_CUDA_FAST_DIV_CUH_
#define KVF_KERNELS_CUDA_FAST_DIV_CUH_

#include <cstdint>

#include "kernels/internal/codec_math.h"  // KVF_HD

namespace kvf::kcore {

// Granlund & Montgomery, "Division by invariant integers using
// multiplication" (1994), figure 4.1: with l = ceil(log2(d)) and
// m = floor(2^32 * (2^l - d) / d) + 1 (which fits 32 bits),
//   t = mulhi(m, n), n / d = (t + ((n - t) >> min(l, 1))) >> max(l - 1, 0)
// for every 32-bit n and every divisor d >= 1.
struct FastDiv {
  uint32_t d = 1;
  uint32_t m = 1;
  uint32_t s1 = 0;
  uint32_t s2 = 0;

  FastDiv() = default;
  // `divisor` must be >= 1.
  explicit FastDiv(uint32_t divisor) : d(divisor) {
    uint32_t l = 0;
    while (l < 32 && (uint64_t{1} << l) < divisor) ++l;
    m = static_cast<uint32_t>(((uint64_t{1} << 32) * ((uint64_t{1} << l) - divisor)) / divisor +
                              1);
    s1 = l < 1 ? l : 1;
    s2 = l > 0 ? l - 1 : 0;
  }

  KVF_HD uint32_t Div(uint32_t n) const {
    const uint32_t t = MulHi(m, n);
    return (t + ((n - t) >> s1)) >> s2;
  }
  KVF_HD uint32_t Mod(uint32_t n) const { return n - Div(n) * d; }

  static KVF_HD uint32_t MulHi(uint32_t a, uint32_t b) {
#if defined(__CUDA_ARCH__)
    return __umulhi(a, b);
#else
    return static_cast<uint32_t>((uint64_t{a} * b) >> 32);
#endif
  }
};

}  // namespace kvf::kcore

#endif  // KVF_KERNELS_CUDA_FAST_DIV_CUH_
