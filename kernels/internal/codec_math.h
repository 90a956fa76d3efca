// Per-element arithmetic shared by the CPU codecs and the CUDA kernels.
//
// Every function here is `inline KVF_HD`: compiled for the host by the C++
// compiler and for both host and device by nvcc. The CPU twins and the CUDA
// kernels call exactly these functions, so their outputs agree bit for bit.
// To keep that promise the code uses only operations that round the same way
// on both sides: single IEEE multiplies and adds (never a fused multiply-add,
// see MulRn/AddRn), integer bit manipulation, and round-half-to-even.
//
// Conventions: quantise functions take the reciprocal of the scale (computed
// once per scale group with Reciprocal()), dequantise functions take the scale.
// A scale of 0 (an all-zero group) has reciprocal 0, so everything quantises
// to the zero code and dequantises to exactly 0, never NaN.
#ifndef KVF_KERNELS_INTERNAL_CODEC_MATH_H_
#define KVF_KERNELS_INTERNAL_CODEC_MATH_H_

#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#define KVF_HD __host__ __device__
#else
#define KVF_HD
#endif

namespace kvf::internal {

// ---------------------------------------------------------------------------
// Bit casts and IEEE-exact arithmetic.

KVF_HD inline uint32_t FloatBits(float f) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(f);
#else
  uint32_t u;
  std::memcpy(&u, &f, sizeof(u));
  return u;
#endif
}

KVF_HD inline float BitsFloat(uint32_t u) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  float f;
  std::memcpy(&f, &u, sizeof(f));
  return f;
#endif
}

// a * b and a + b rounded once each. nvcc contracts `a * b + c` into an FMA
// by default, which rounds once instead of twice and would make device
// results differ from the host's; the _rn intrinsics are never contracted.
// (Host code is built as ISO C++, where GCC and Clang do not contract.)
KVF_HD inline float MulRn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}

KVF_HD inline float AddRn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fadd_rn(a, b);
#else
  return a + b;
#endif
}

KVF_HD inline float AbsF(float f) { return BitsFloat(FloatBits(f) & 0x7fffffffu); }

// Max that ignores NaN in `x` (a NaN never becomes the running maximum).
KVF_HD inline float MaxIgnoringNan(float acc, float x) { return x > acc ? x : acc; }

inline constexpr float kFloatMax = 3.40282347e+38f;

// 1/scale, or 0 when scale is 0, negative, NaN or so small that 1/scale
// overflows (so x * Reciprocal(scale) is never inf * 0).
KVF_HD inline float Reciprocal(float scale) {
  const float r = scale > 0.0f ? 1.0f / scale : 0.0f;
  return r <= kFloatMax ? r : 0.0f;
}

// Clamps to [lo, hi]; NaN becomes `hi` (so no NaN ever reaches an int cast).
KVF_HD inline float ClampF(float x, float lo, float hi) {
  x = x < hi ? x : hi;
  return x > lo ? x : lo;
}

// Round half to even for |x| < 2^22, the range every quantiser clamps to
// first. Adding and subtracting 1.5 * 2^23 leaves the float's integer part
// rounded by the FPU's default mode (nearest-even); the device uses rintf,
// which rounds the same way.
KVF_HD inline float RoundHalfEven(float x) {
#if defined(__CUDA_ARCH__)
  return rintf(x);
#else
  constexpr float kMagic = 12582912.0f;  // 1.5 * 2^23
  return (x + kMagic) - kMagic;
#endif
}

// ---------------------------------------------------------------------------
// fp16 (IEEE binary16) and bf16 <-> float. Round-to-nearest-even, overflow to
// infinity, NaN stays NaN, subnormals exact.

KVF_HD inline float HalfToFloat(uint16_t h) {
  const uint32_t sign = (static_cast<uint32_t>(h) & 0x8000u) << 16;
  const uint32_t em = static_cast<uint32_t>(h) & 0x7fffu;
  // Shift exponent and mantissa into float position, then rebias by 2^112:
  // exact for normals and subnormals alike. Branch-free so loops vectorise.
  const float finite = BitsFloat(sign | FloatBits(MulRn(BitsFloat(em << 13), 0x1.0p112f)));
  const float inf_nan = BitsFloat(sign | 0x7f800000u | ((em & 0x3ffu) << 13));
  return em >= 0x7c00u ? inf_nan : finite;
}

KVF_HD inline uint16_t FloatToHalf(float f) {
  // After M. Dukhan's FP16 library: scale so the FPU does the rounding.
  const uint32_t w = FloatBits(f);
  const uint32_t shl1_w = w + w;
  const uint32_t sign = w & 0x80000000u;
  float base = MulRn(MulRn(AbsF(f), 0x1.0p112f), 0x1.0p-110f);
  uint32_t bias = shl1_w & 0xff000000u;
  bias = bias < 0x71000000u ? 0x71000000u : bias;
  base = AddRn(BitsFloat((bias >> 1) + 0x07800000u), base);
  const uint32_t bits = FloatBits(base);
  const uint32_t exp_bits = (bits >> 13) & 0x00007c00u;
  const uint32_t mantissa_bits = bits & 0x00000fffu;
  const uint32_t nonsign = exp_bits + mantissa_bits;
  return static_cast<uint16_t>((sign >> 16) | (shl1_w > 0xff000000u ? 0x7e00u : nonsign));
}

KVF_HD inline float Bf16ToFloat(uint16_t b) { return BitsFloat(static_cast<uint32_t>(b) << 16); }

KVF_HD inline uint16_t FloatToBf16(float f) {
  const uint32_t u = FloatBits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40u);  // NaN
  return static_cast<uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

// bf16 rounded to nearest even, saturating: a finite float never becomes
// infinity (values past bf16's largest finite, 0x7f7f, give it).
KVF_HD inline uint16_t FloatToBf16Sat(float f) {
  const uint16_t b = FloatToBf16(f);
  const bool overflowed = (b & 0x7fffu) == 0x7f80u && AbsF(f) <= 3.40282347e+38f;
  return overflowed ? static_cast<uint16_t>((b & 0x8000u) | 0x7f7fu) : b;
}

// The smallest bf16 >= x, for finite x >= 0 (a stored scale rounded up, so a
// channel's range never shrinks).
KVF_HD inline uint16_t Bf16CeilPositive(float x) {
  const uint16_t b = static_cast<uint16_t>(FloatBits(x) >> 16);
  return Bf16ToFloat(b) < x ? static_cast<uint16_t>(b + 1u) : b;
}

// ---------------------------------------------------------------------------
// OCP FP8 E4M3FN: 1 sign, 4 exponent (bias 7), 3 mantissa bits; no infinity;
// S.1111.111 is NaN; largest finite is 448 (0x7e); smallest subnormal 2^-9.

inline constexpr float kE4m3Max = 448.0f;

KVF_HD inline float E4m3ToFloat(uint8_t code) {
  const uint32_t sign = (static_cast<uint32_t>(code) & 0x80u) << 24;
  const uint32_t exp = (code >> 3) & 0xfu;
  const uint32_t mant = code & 0x7u;
  // Branch-free (loops vectorise): subnormal mant * 2^-9 is exact.
  const uint32_t subnormal = FloatBits(MulRn(static_cast<float>(mant), 0x1.0p-9f));
  uint32_t mag = exp == 0 ? subnormal : ((exp + 120u) << 23) | (mant << 20);
  mag = (code & 0x7fu) == 0x7fu ? 0x7fc00000u : mag;
  return BitsFloat(sign | mag);
}

// Round-to-nearest-even, saturating: |f| >= 448 (and +-inf) give +-448; NaN
// gives the NaN code 0x7f with the sign of the input.
KVF_HD inline uint8_t FloatToE4m3(float f) {
  const uint32_t u = FloatBits(f);
  const uint32_t sign = (u >> 24) & 0x80u;
  const uint32_t abs = u & 0x7fffffffu;
  // Both paths are computed and selected (branch-free, so loops vectorise).
  // Below 2^-6: subnormal codes m * 2^-9, m in [0, 8] (8 is the code of 2^-6).
  const float tiny = BitsFloat(abs < 0x3c800000u ? abs : 0x3c800000u);
  const uint32_t sub =
      static_cast<uint32_t>(static_cast<int32_t>(RoundHalfEven(MulRn(tiny, 512.0f))));
  // Otherwise keep 3 mantissa bits, rounding half to even; a carry bumps the
  // exponent. (Wraps for tiny values, which take the other path.)
  const uint32_t rounded = abs + 0x7ffffu + ((abs >> 20) & 1u);
  uint32_t normal = (rounded >> 20) - (120u << 3);
  normal = normal > 0x7eu ? 0x7eu : normal;
  uint32_t code = abs < 0x3c800000u ? sub : normal;
  code = abs >= 0x43e00000u ? 0x7eu : code;  // >= 448 (and inf) saturate
  code = abs > 0x7f800000u ? 0x7fu : code;   // NaN
  return static_cast<uint8_t>(sign | code);
}

// Smallest E4M3 code whose value is >= x, for 0 <= x <= 448 (used so a
// quantised group scale never shrinks the group's range).
KVF_HD inline uint8_t E4m3CeilPositive(float x) {
  uint8_t code = FloatToE4m3(x);
  if (E4m3ToFloat(code) < x && code < 0x7eu) ++code;
  return code;
}

// ---------------------------------------------------------------------------
// Symmetric int8: q = round(x / scale) in [-127, 127]; scale = absmax / 127.

inline constexpr float kInt8Max = 127.0f;

KVF_HD inline int8_t QuantizeInt8(float x, float inv_scale) {
  return static_cast<int8_t>(
      static_cast<int>(RoundHalfEven(ClampF(MulRn(x, inv_scale), -kInt8Max, kInt8Max))));
}

KVF_HD inline float DequantizeInt8(int8_t q, float scale) {
  return MulRn(static_cast<float>(q), scale);
}

// Per-group scales from a group's absolute maximum.
KVF_HD inline float Fp8Scale(float absmax) { return absmax / kE4m3Max; }
KVF_HD inline float Int8Scale(float absmax) { return absmax / kInt8Max; }

// ---------------------------------------------------------------------------
// Format v2: K centred per channel (kernels/core/blob_format.h). A channel's
// range [lo, hi] over the block's tokens (NaN ignored; all-NaN gives [0, 0])
// gives its centre, stored as bf16; values are quantised as x - centre and
// decoded as centre + dequantised. Subtracting a per-channel constant from K
// adds the same amount to every token's logit for a given query, so the
// softmax is unchanged by it; what is left to quantise is the variation.

// Running range of a channel: start from kRangeEmpty{Lo,Hi}.
inline constexpr float kRangeEmptyLo = 3.40282347e+38f;
inline constexpr float kRangeEmptyHi = -3.40282347e+38f;

KVF_HD inline float MinIgnoringNan(float acc, float x) { return x < acc ? x : acc; }
KVF_HD inline float MaxIgnoringNanSigned(float acc, float x) { return x > acc ? x : acc; }

// The stored centre of a channel with range [lo, hi] (an empty range, lo >
// hi, has centre 0). Halves first, so hi - lo never overflows.
KVF_HD inline uint16_t ChannelCentre(float lo, float hi) {
  if (lo > hi) return 0;
  return FloatToBf16Sat(AddRn(MulRn(lo, 0.5f), MulRn(hi, 0.5f)));
}

// x - centre, rounded once.
KVF_HD inline float Centred(float x, float centre) { return AddRn(x, -centre); }

// max |x - centre| over a channel with range [lo, hi]: x - centre is monotonic
// in x, so the extremes are at the ends (0 for an empty range).
KVF_HD inline float CentredAbsMax(float lo, float hi, float centre) {
  if (lo > hi) return 0.0f;
  const float a = AbsF(Centred(lo, centre)), b = AbsF(Centred(hi, centre));
  return a > b ? a : b;
}

// int8 v2 K channel scale, stored as bf16 rounded up.
KVF_HD inline uint16_t Int8ChannelScale(float centred_absmax) {
  return Bf16CeilPositive(centred_absmax / kInt8Max);
}

// ---------------------------------------------------------------------------
// Asymmetric int4 with an integer zero point: x ~ scale * (q - zero),
// q and zero in [0, 15]. A group with range [lo, hi] (lo <= 0 <= hi after
// widening to include 0) uses scale >= (hi - lo) / 15 and zero = round(-lo /
// scale), so 0 is always exact.

inline constexpr int kInt4Levels = 15;

// The smallest scale that covers [lo, hi] with 16 levels.
KVF_HD inline float Int4NeededScale(float lo, float hi) {
  return (hi - lo) / static_cast<float>(kInt4Levels);
}

// Group scales are stored as E4M3 codes relative to one fp32 super-scale per
// (layer, K|V) section: super = max(needed) / 448, and the group's code is
// the smallest whose value covers `needed`, so a group's range never shrinks.
KVF_HD inline float Int4SuperScale(float max_needed) { return max_needed / kE4m3Max; }

KVF_HD inline uint8_t Int4ScaleCode(float needed, float super_inv) {
  return E4m3CeilPositive(ClampF(MulRn(needed, super_inv), 0.0f, kE4m3Max));
}

KVF_HD inline float Int4GroupScale(float super_scale, uint8_t code) {
  return MulRn(super_scale, E4m3ToFloat(code));
}

KVF_HD inline uint8_t Int4ZeroPoint(float lo, float inv_scale) {
  return static_cast<uint8_t>(static_cast<int>(
      RoundHalfEven(ClampF(MulRn(-lo, inv_scale), 0.0f, static_cast<float>(kInt4Levels)))));
}

KVF_HD inline uint8_t QuantizeInt4(float x, float inv_scale, uint8_t zero) {
  const float z = static_cast<float>(zero);
  const float q = RoundHalfEven(ClampF(AddRn(MulRn(x, inv_scale), z), 0.0f,
                                       static_cast<float>(kInt4Levels)));
  return static_cast<uint8_t>(static_cast<int>(q));
}

KVF_HD inline float DequantizeInt4(uint8_t q, uint8_t zero, float scale) {
  return MulRn(static_cast<float>(static_cast<int>(q) - static_cast<int>(zero)), scale);
}

}  // namespace kvf::internal

#endif  // KVF_KERNELS_INTERNAL_CODEC_MATH_H_
