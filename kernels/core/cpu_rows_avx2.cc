// AVX2 + F16C row kernels (kernels/core/internal/cpu_rows_impl.h): the
// functions of the portable loops in cpu_rows.cc, eight elements at a time.
//
// Exactness. Every step is an IEEE single operation that the portable code
// also performs (a multiply or an add, each rounded once: this file is never
// built with FMA, so nothing is contracted), an integer transcription of
// codec_math.h's bit manipulation, or a conversion or rounding that equals
// the codec_math.h function on the values that reach it:
//   - fp16 -> float: VCVTPH2PS is exact, as is HalfToFloat; it quiets a
//     signalling NaN, which HalfToFloat does not, but every loaded value goes
//     on through a multiply, an add or a NaN-ignoring compare, which quiet or
//     drop it anyway.
//   - float -> fp16: VCVTPS2PH with round-to-nearest-even equals FloatToHalf
//     except on NaN, where it keeps payload bits FloatToHalf drops. The NaNs
//     that reach a store carry no payload (below), so the two agree.
//   - RoundHalfEven(v) = (v + 1.5 * 2^23) - 1.5 * 2^23: the integer is read
//     from the bits of v + 1.5 * 2^23, the same rounding.
//   - FloatToE4m3 rounds with one float add where codec_math.h rounds normal
//     values with integer arithmetic; both round half to even at the same
//     bit (FloatToE4m3x8 says why), so they agree in the FPU's default
//     rounding mode, which the codecs assume throughout (MulRn, the GPU's
//     __fmul_rn and VCVTPS2PH's immediate all round to nearest even).
// All of this was checked on every one of the 2^32 floats (encoders and the
// fp16 and bf16 stores); tests/kernels/cpu_rows_test.cc keeps a subset.
// NaN. x86 gives a NaN result the payload and sign of a NaN operand, the
// first if both are NaN; the portable loops, compiled as C++, leave which
// operand that is to the compiler. Rows where the choice could show (a NaN
// scale or inverse scale, a NaN centre, a NaN per-channel scale) run the
// portable loops instead, so every NaN that reaches a store here is E4M3's
// NaN or the default NaN, both without payload.
//
// Nothing here runs unless Avx2Rows() found AVX2 and F16C: the target
// attribute confines those instructions to this file's functions, and no
// inline function of a shared header is instantiated with it.
#include "kernels/core/internal/cpu_rows_impl.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))

#include <cpuid.h>
#include <immintrin.h>

#include <cstddef>
#include <cstdint>
#include <cstring>

#define KVF_AVX2 __attribute__((target("avx2,f16c")))

namespace kvf::kcore::rows_internal {
namespace {

const RowKernels& Portable() { return PortableRows(); }

// ---------------------------------------------------------------------------
// Eight elements of one dtype <-> eight floats. `p` may be unaligned.

struct Fp16 {
  static constexpr ElemType kType = ElemType::kFp16;
  static constexpr size_t kBytes = 2;
  KVF_AVX2 static __m256 Load(const std::byte* p) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  }
  // NaNs in `v` must have no payload (see the file comment).
  KVF_AVX2 static void Store(std::byte* p, __m256 v) {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(p), _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT));
  }
};

struct Bf16 {
  static constexpr ElemType kType = ElemType::kBf16;
  static constexpr size_t kBytes = 2;
  KVF_AVX2 static __m256 Load(const std::byte* p) {
    const __m256i h = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    return _mm256_castsi256_ps(_mm256_slli_epi32(h, 16));
  }
  // FloatToBf16's rounding; for a NaN without payload it gives what
  // FloatToBf16's NaN branch gives.
  KVF_AVX2 static void Store(std::byte* p, __m256 v) {
    const __m256i u = _mm256_castps_si256(v);
    const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
    const __m256i r = _mm256_srli_epi32(
        _mm256_add_epi32(_mm256_add_epi32(u, _mm256_set1_epi32(0x7fff)), lsb), 16);
    const __m128i h = _mm_packus_epi32(_mm256_castsi256_si128(r), _mm256_extracti128_si256(r, 1));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(p), h);
  }
};

struct Fp32 {
  static constexpr ElemType kType = ElemType::kFp32;
  static constexpr size_t kBytes = 4;
  KVF_AVX2 static __m256 Load(const std::byte* p) {
    return _mm256_loadu_ps(reinterpret_cast<const float*>(p));
  }
  KVF_AVX2 static void Store(std::byte* p, __m256 v) {
    _mm256_storeu_ps(reinterpret_cast<float*>(p), v);
  }
};

KVF_AVX2 inline __m256i Bits(__m256 v) { return _mm256_castps_si256(v); }
KVF_AVX2 inline __m256 Float(__m256i v) { return _mm256_castsi256_ps(v); }
KVF_AVX2 inline __m256i I32(int32_t v) { return _mm256_set1_epi32(v); }

// Lanes of `v` that are NaN, or-ed into `acc`.
KVF_AVX2 inline void NoteNan(__m256& acc, __m256 v) {
  acc = _mm256_or_ps(acc, _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
}

KVF_AVX2 inline bool Any(__m256 mask) { return _mm256_movemask_ps(mask) != 0; }

// Eight bytes: the low byte of each int32 lane of `v`, in lane order.
KVF_AVX2 inline void StoreBytes8(uint8_t* out, __m256i v) {
  const __m256i b = _mm256_shuffle_epi8(
      v, _mm256_setr_epi8(0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,  //
                          0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1));
  const __m128i lo = _mm256_castsi256_si128(b), hi = _mm256_extracti128_si256(b, 1);
  _mm_storel_epi64(reinterpret_cast<__m128i*>(out), _mm_unpacklo_epi32(lo, hi));
}

// 32 bytes from four vectors of int32 lanes, each in [0, 255] (kSigned:
// [-128, 127]), in lane order.
template <bool kSigned>
KVF_AVX2 inline void StoreBytes32(uint8_t* out, __m256i a, __m256i b, __m256i c, __m256i d) {
  __m256i bytes;
  if constexpr (kSigned) {
    bytes = _mm256_packs_epi16(_mm256_packs_epi32(a, b), _mm256_packs_epi32(c, d));
  } else {
    bytes = _mm256_packus_epi16(_mm256_packus_epi32(a, b), _mm256_packus_epi32(c, d));
  }
  // The packs interleave 128-bit lanes: dwords are a0-3 b0-3 c0-3 d0-3 a4-7 ...
  bytes = _mm256_permutevar8x32_epi32(bytes, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(out), bytes);
}

// ---------------------------------------------------------------------------
// Per-element functions of codec_math.h, eight lanes at a time.

// FloatToE4m3, as int32 lanes in [0, 255].
KVF_AVX2 inline __m256i FloatToE4m3x8(__m256 f) {
  const __m256i u = Bits(f);
  const __m256i abs = _mm256_and_si256(u, I32(0x7fffffff));
  const __m256i sign = _mm256_and_si256(_mm256_srli_epi32(u, 24), I32(0x80));
  const __m256i is_nan = _mm256_cmpgt_epi32(abs, I32(0x7f800000));
  // |f| >= 448 (inf and NaN too) saturates: clamp to 448 first.
  const __m256i a = _mm256_min_epi32(abs, I32(0x43e00000));
  // Let E = max(exponent of a, -6): E4M3's step at a is 2^(E-3), normal or
  // subnormal. Adding 2^(E+20), whose float ulp is 2^(E-3), rounds a to a
  // multiple of that step, half to even: what FloatToE4m3 does with
  // RoundHalfEven below 2^-6 and with integer arithmetic above. The sum's
  // mantissa field is then t = a / 2^(E-3) <= 16, and the code is
  // (E + 6) * 8 + t (t = 8 + the mantissa for a normal, 16 where rounding
  // carries into the next exponent; below 2^-6, t is the code).
  const __m256i e = _mm256_max_epi32(_mm256_and_si256(a, I32(0x7f800000)), I32(121 << 23));
  const __m256i s = Bits(_mm256_add_ps(Float(_mm256_add_epi32(e, I32(20 << 23))), Float(a)));
  // s = ((E + 147) << 23) + t and e = (E + 127) << 23, so
  // code = s - e - (20 << 23) + (e >> 20) - 968.
  const __m256i code = _mm256_sub_epi32(_mm256_sub_epi32(s, I32((20 << 23) + 968)),
                                        _mm256_sub_epi32(e, _mm256_srli_epi32(e, 20)));
  return _mm256_or_si256(_mm256_sub_epi32(code, is_nan), sign);  // NaN: 0x7e + 1
}

// E4m3ToFloat of eight codes, given sign-extended to int32 lanes.
KVF_AVX2 inline __m256 E4m3ToFloatx8(__m256i code) {
  const __m256i mag7 = _mm256_and_si256(code, I32(0x7f));
  // Exponent field e >= 1: ((e + 120) << 23) | (mantissa << 20).
  const __m256i normal = _mm256_add_epi32(_mm256_slli_epi32(mag7, 20), I32(120 << 23));
  // e = 0: mantissa * 2^-9, from a table indexed by the low three bits.
  const __m256i sub =
      _mm256_permutevar8x32_epi32(_mm256_setr_epi32(0, 0x3b000000, 0x3b800000, 0x3bc00000,
                                                    0x3c000000, 0x3c200000, 0x3c400000, 0x3c600000),
                                  code);
  __m256i mag = _mm256_blendv_epi8(normal, sub, _mm256_cmpgt_epi32(I32(8), mag7));
  mag = _mm256_blendv_epi8(mag, I32(0x7fc00000), _mm256_cmpeq_epi32(mag7, I32(0x7f)));
  return Float(_mm256_or_si256(mag, _mm256_and_si256(code, I32(INT32_MIN))));
}

// QuantizeInt8 of x * inv, as int32 lanes in [-127, 127].
KVF_AVX2 inline __m256i QuantizeInt8x8(__m256 x, __m256 inv) {
  // ClampF: x < hi ? x : hi is MINPS(x, hi) and x > lo ? x : lo is
  // MAXPS(x, lo), NaN included (it becomes hi).
  const __m256 c = _mm256_max_ps(_mm256_min_ps(_mm256_mul_ps(x, inv), _mm256_set1_ps(127.0f)),
                                 _mm256_set1_ps(-127.0f));
  // RoundHalfEven: c + 1.5 * 2^23 lies in [2^23, 2^24), integer steps.
  return _mm256_sub_epi32(Bits(_mm256_add_ps(c, _mm256_set1_ps(12582912.0f))), I32(0x4b400000));
}

// Elements i..i+7 of the row as the quantisers see them: x, or
// Centred(x, centre) = x + (-centre), which is x - centre but for which NaN a
// NaN centre gives; NaN centres are noted in `nan_centre`.
template <typename E, bool kCentred>
KVF_AVX2 inline __m256 Input(const std::byte* in, const float* centre, size_t i,
                             __m256& nan_centre) {
  const __m256 x = E::Load(in + E::kBytes * i);
  if constexpr (!kCentred) return x;
  const __m256 c = _mm256_loadu_ps(centre + i);
  NoteNan(nan_centre, c);
  return _mm256_sub_ps(x, c);
}

// ---------------------------------------------------------------------------
// Row kernels for one dtype. Each handles whole vectors and leaves the last
// n % 8 elements to the portable loop.

template <typename E>
KVF_AVX2 float AbsMaxT(const std::byte* in, size_t n) {
  uint32_t bits;  // of the vector part's maximum, a non-negative float
  size_t i = 0;
  if constexpr (E::kBytes == 2) {
    // On the 16-bit patterns: fp16 and bf16 both widen monotonically.
    const __m256i mask = _mm256_set1_epi16(0x7fff);
    const __m256i inf = _mm256_set1_epi16(E::kType == ElemType::kFp16 ? 0x7c00 : 0x7f80);
    __m256i m0 = _mm256_setzero_si256(), m1 = _mm256_setzero_si256();
    for (; i + 32 <= n; i += 32) {
      const __m256i a0 =
          _mm256_and_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(in + 2 * i)), mask);
      const __m256i a1 = _mm256_and_si256(
          _mm256_loadu_si256(reinterpret_cast<const __m256i*>(in + 2 * i + 32)), mask);
      m0 = _mm256_max_epi16(m0, _mm256_andnot_si256(_mm256_cmpgt_epi16(a0, inf), a0));
      m1 = _mm256_max_epi16(m1, _mm256_andnot_si256(_mm256_cmpgt_epi16(a1, inf), a1));
    }
    for (; i + 16 <= n; i += 16) {
      const __m256i a =
          _mm256_and_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(in + 2 * i)), mask);
      m0 = _mm256_max_epi16(m0, _mm256_andnot_si256(_mm256_cmpgt_epi16(a, inf), a));
    }
    const __m256i m = _mm256_max_epi16(m0, m1);
    __m128i h = _mm_max_epi16(_mm256_castsi256_si128(m), _mm256_extracti128_si256(m, 1));
    h = _mm_max_epi16(h, _mm_shuffle_epi32(h, 0x4e));
    h = _mm_max_epi16(h, _mm_shuffle_epi32(h, 0xb1));
    h = _mm_max_epi16(h, _mm_shufflelo_epi16(h, 0xb1));
    if constexpr (E::kType == ElemType::kFp16) {
      bits = static_cast<uint32_t>(_mm_cvtsi128_si32(_mm_castps_si128(_mm_cvtph_ps(h))));
    } else {
      bits = static_cast<uint32_t>(_mm_extract_epi16(h, 0)) << 16;
    }
  } else {
    const __m256i mask = I32(0x7fffffff), inf = I32(0x7f800000);
    __m256i m0 = _mm256_setzero_si256(), m1 = _mm256_setzero_si256();
    for (; i + 16 <= n; i += 16) {
      const __m256i a0 =
          _mm256_and_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(in + 4 * i)), mask);
      const __m256i a1 = _mm256_and_si256(
          _mm256_loadu_si256(reinterpret_cast<const __m256i*>(in + 4 * i + 32)), mask);
      m0 = _mm256_max_epi32(m0, _mm256_andnot_si256(_mm256_cmpgt_epi32(a0, inf), a0));
      m1 = _mm256_max_epi32(m1, _mm256_andnot_si256(_mm256_cmpgt_epi32(a1, inf), a1));
    }
    const __m256i m = _mm256_max_epi32(m0, m1);
    __m128i h = _mm_max_epi32(_mm256_castsi256_si128(m), _mm256_extracti128_si256(m, 1));
    h = _mm_max_epi32(h, _mm_shuffle_epi32(h, 0x4e));
    h = _mm_max_epi32(h, _mm_shuffle_epi32(h, 0xb1));
    bits = static_cast<uint32_t>(_mm_cvtsi128_si32(h));
  }
  float vec;
  std::memcpy(&vec, &bits, 4);
  const float tail = Portable().abs_max(E::kType, in + E::kBytes * i, n - i);
  return tail > vec ? tail : vec;  // neither is NaN
}

template <typename E>
KVF_AVX2 void MinMaxT(const std::byte* in, size_t n, float* lo, float* hi) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 x = E::Load(in + E::kBytes * i);
    // MinIgnoringNan(acc, x) = x < acc ? x : acc = MINPS(x, acc); likewise max.
    _mm256_storeu_ps(lo + i, _mm256_min_ps(x, _mm256_loadu_ps(lo + i)));
    _mm256_storeu_ps(hi + i, _mm256_max_ps(x, _mm256_loadu_ps(hi + i)));
  }
  if (i < n) Portable().min_max(E::kType, in + E::kBytes * i, n - i, lo + i, hi + i);
}

template <typename E, bool kCentred>
KVF_AVX2 inline __m256i Fp8Codes8(const std::byte* in, const float* centre, size_t i, __m256 inv,
                                  __m256& nan_centre) {
  return FloatToE4m3x8(_mm256_mul_ps(Input<E, kCentred>(in, centre, i, nan_centre), inv));
}

template <typename E, bool kCentred>
KVF_AVX2 void EncodeFp8T(const std::byte* in, size_t n, const float* centre, float inv,
                         uint8_t* out) {
  // A NaN inverse or centre could meet a NaN element: see the file comment.
  if (inv != inv) {
    Portable().encode_fp8(E::kType, in, n, centre, inv, out);
    return;
  }
  const __m256 vinv = _mm256_set1_ps(inv);
  __m256 nan_centre = _mm256_setzero_ps();
  size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    StoreBytes32<false>(out + i, Fp8Codes8<E, kCentred>(in, centre, i, vinv, nan_centre),
                        Fp8Codes8<E, kCentred>(in, centre, i + 8, vinv, nan_centre),
                        Fp8Codes8<E, kCentred>(in, centre, i + 16, vinv, nan_centre),
                        Fp8Codes8<E, kCentred>(in, centre, i + 24, vinv, nan_centre));
  }
  for (; i + 8 <= n; i += 8) {
    StoreBytes8(out + i, Fp8Codes8<E, kCentred>(in, centre, i, vinv, nan_centre));
  }
  if (kCentred && Any(nan_centre)) {
    Portable().encode_fp8(E::kType, in, n, centre, inv, out);  // all over again
  } else if (i < n) {
    Portable().encode_fp8(E::kType, in + E::kBytes * i, n - i, kCentred ? centre + i : nullptr, inv,
                          out + i);
  }
}

template <typename E>
KVF_AVX2 void EncodeInt8T(const std::byte* in, size_t n, float inv, uint8_t* out) {
  const __m256 vinv = _mm256_set1_ps(inv);
  size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    StoreBytes32<true>(out + i, QuantizeInt8x8(E::Load(in + E::kBytes * i), vinv),
                       QuantizeInt8x8(E::Load(in + E::kBytes * (i + 8)), vinv),
                       QuantizeInt8x8(E::Load(in + E::kBytes * (i + 16)), vinv),
                       QuantizeInt8x8(E::Load(in + E::kBytes * (i + 24)), vinv));
  }
  for (; i + 8 <= n; i += 8)
    StoreBytes8(out + i, QuantizeInt8x8(E::Load(in + E::kBytes * i), vinv));
  if (i < n) Portable().encode_int8(E::kType, in + E::kBytes * i, n - i, inv, out + i);
}

template <typename E>
KVF_AVX2 inline __m256i QuantizeChannels8(const std::byte* in, const float* centre,
                                          const float* inv, size_t i) {
  __m256 unused = _mm256_setzero_ps();
  return QuantizeInt8x8(Input<E, true>(in, centre, i, unused), _mm256_loadu_ps(inv + i));
}

// No NaN guard: QuantizeInt8 maps every NaN to 127, whatever its sign.
template <typename E>
KVF_AVX2 void EncodeInt8ChannelsT(const std::byte* in, size_t n, const float* centre,
                                  const float* inv, uint8_t* out) {
  size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    StoreBytes32<true>(out + i, QuantizeChannels8<E>(in, centre, inv, i),
                       QuantizeChannels8<E>(in, centre, inv, i + 8),
                       QuantizeChannels8<E>(in, centre, inv, i + 16),
                       QuantizeChannels8<E>(in, centre, inv, i + 24));
  }
  for (; i + 8 <= n; i += 8) StoreBytes8(out + i, QuantizeChannels8<E>(in, centre, inv, i));
  if (i < n) {
    Portable().encode_int8_channels(E::kType, in + E::kBytes * i, n - i, centre + i, inv + i,
                                    out + i);
  }
}

KVF_AVX2 inline __m256i LoadCodes8(const uint8_t* in) {
  return _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(in)));
}

template <typename E, bool kCentred>
KVF_AVX2 void DecodeFp8T(const uint8_t* in, size_t n, const float* centre, float scale,
                         std::byte* out) {
  // A NaN scale or centre could meet E4M3's NaN: see the file comment.
  if (scale != scale) {
    Portable().decode_fp8(in, n, centre, scale, E::kType, out);
    return;
  }
  const __m256 vscale = _mm256_set1_ps(scale);
  __m256 nan_centre = _mm256_setzero_ps();
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256 y = _mm256_mul_ps(E4m3ToFloatx8(LoadCodes8(in + i)), vscale);
    if constexpr (kCentred) {
      const __m256 c = _mm256_loadu_ps(centre + i);
      NoteNan(nan_centre, c);
      y = _mm256_add_ps(c, y);
    }
    E::Store(out + E::kBytes * i, y);
  }
  if (kCentred && Any(nan_centre)) {
    Portable().decode_fp8(in, n, centre, scale, E::kType, out);  // all over again
  } else if (i < n) {
    Portable().decode_fp8(in + i, n - i, kCentred ? centre + i : nullptr, scale, E::kType,
                          out + E::kBytes * i);
  }
}

template <typename E>
KVF_AVX2 void DecodeInt8T(const uint8_t* in, size_t n, float scale, std::byte* out) {
  // A NaN scale would give NaNs with its payload, which the stores do not
  // convert the portable way; such rows are all NaN anyway.
  if (scale != scale) {
    Portable().decode_int8(in, n, scale, E::kType, out);
    return;
  }
  const __m256 vscale = _mm256_set1_ps(scale);
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    E::Store(out + E::kBytes * i, _mm256_mul_ps(_mm256_cvtepi32_ps(LoadCodes8(in + i)), vscale));
  }
  if (i < n) Portable().decode_int8(in + i, n - i, scale, E::kType, out + E::kBytes * i);
}

template <typename E>
KVF_AVX2 void DecodeInt8ChannelsT(const uint8_t* in, size_t n, const float* centre,
                                  const float* scale, std::byte* out) {
  // A NaN centre could meet a NaN product, and a NaN scale's payload would
  // reach the stores: see the file comment.
  __m256 nan = _mm256_setzero_ps();
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 c = _mm256_loadu_ps(centre + i), s = _mm256_loadu_ps(scale + i);
    nan = _mm256_or_ps(nan, _mm256_cmp_ps(c, s, _CMP_UNORD_Q));
    const __m256 q = _mm256_mul_ps(_mm256_cvtepi32_ps(LoadCodes8(in + i)), s);
    E::Store(out + E::kBytes * i, _mm256_add_ps(c, q));
  }
  if (Any(nan)) {
    Portable().decode_int8_channels(in, n, centre, scale, E::kType, out);  // all over again
  } else if (i < n) {
    Portable().decode_int8_channels(in + i, n - i, centre + i, scale + i, E::kType,
                                    out + E::kBytes * i);
  }
}

// ---------------------------------------------------------------------------
// The table's entries: the dtype switch.

#define KVF_ROWS_DISPATCH(t, call) \
  switch (t) {                     \
    case ElemType::kBf16:          \
      return call(Bf16);           \
    case ElemType::kFp32:          \
      return call(Fp32);           \
    case ElemType::kFp16:          \
      break;                       \
  }                                \
  return call(Fp16)

KVF_AVX2 float AbsMax(ElemType t, const void* in, size_t n) {
  const auto* p = static_cast<const std::byte*>(in);
#define KVF_CALL(E) AbsMaxT<E>(p, n)
  KVF_ROWS_DISPATCH(t, KVF_CALL);
#undef KVF_CALL
}

KVF_AVX2 void MinMax(ElemType t, const void* in, size_t n, float* lo, float* hi) {
  const auto* p = static_cast<const std::byte*>(in);
#define KVF_CALL(E) MinMaxT<E>(p, n, lo, hi)
  KVF_ROWS_DISPATCH(t, KVF_CALL);
#undef KVF_CALL
}

KVF_AVX2 void EncodeFp8(ElemType t, const void* in, size_t n, const float* centre, float inv,
                        uint8_t* out) {
  const auto* p = static_cast<const std::byte*>(in);
#define KVF_CALL(E)                                                 \
  (centre == nullptr ? EncodeFp8T<E, false>(p, n, centre, inv, out) \
                     : EncodeFp8T<E, true>(p, n, centre, inv, out))
  KVF_ROWS_DISPATCH(t, KVF_CALL);
#undef KVF_CALL
}

KVF_AVX2 void EncodeInt8(ElemType t, const void* in, size_t n, float inv, uint8_t* out) {
  const auto* p = static_cast<const std::byte*>(in);
#define KVF_CALL(E) EncodeInt8T<E>(p, n, inv, out)
  KVF_ROWS_DISPATCH(t, KVF_CALL);
#undef KVF_CALL
}

KVF_AVX2 void EncodeInt8Channels(ElemType t, const void* in, size_t n, const float* centre,
                                 const float* inv, uint8_t* out) {
  const auto* p = static_cast<const std::byte*>(in);
#define KVF_CALL(E) EncodeInt8ChannelsT<E>(p, n, centre, inv, out)
  KVF_ROWS_DISPATCH(t, KVF_CALL);
#undef KVF_CALL
}

KVF_AVX2 void DecodeFp8(const uint8_t* in, size_t n, const float* centre, float scale, ElemType t,
                        void* out) {
  auto* p = static_cast<std::byte*>(out);
#define KVF_CALL(E)                                                  \
  (centre == nullptr ? DecodeFp8T<E, false>(in, n, centre, scale, p) \
                     : DecodeFp8T<E, true>(in, n, centre, scale, p))
  KVF_ROWS_DISPATCH(t, KVF_CALL);
#undef KVF_CALL
}

KVF_AVX2 void DecodeInt8(const uint8_t* in, size_t n, float scale, ElemType t, void* out) {
  auto* p = static_cast<std::byte*>(out);
#define KVF_CALL(E) DecodeInt8T<E>(in, n, scale, p)
  KVF_ROWS_DISPATCH(t, KVF_CALL);
#undef KVF_CALL
}

KVF_AVX2 void DecodeInt8Channels(const uint8_t* in, size_t n, const float* centre,
                                 const float* scale, ElemType t, void* out) {
  auto* p = static_cast<std::byte*>(out);
#define KVF_CALL(E) DecodeInt8ChannelsT<E>(in, n, centre, scale, p)
  KVF_ROWS_DISPATCH(t, KVF_CALL);
#undef KVF_CALL
}

#undef KVF_ROWS_DISPATCH

}  // namespace

const RowKernels* Avx2Rows() {
  static constexpr RowKernels kAvx2 = {"avx2",    AbsMax,     MinMax,
                                       EncodeFp8, EncodeInt8, EncodeInt8Channels,
                                       DecodeFp8, DecodeInt8, DecodeInt8Channels};
  static const bool supported = [] {
    // "avx2" includes the OS's support for the YMM state; Clang's builtin
    // does not know "f16c", so that one comes from CPUID leaf 1.
    __builtin_cpu_init();
    unsigned eax, ebx, ecx, edx;
    return __builtin_cpu_supports("avx2") && __get_cpuid(1, &eax, &ebx, &ecx, &edx) != 0 &&
           (ecx & bit_F16C) != 0;
  }();
  return supported ? &kAvx2 : nullptr;
}

}  // namespace kvf::kcore::rows_internal

#else  // not x86-64 with GCC or Clang: the portable loops only.

namespace kvf::kcore::rows_internal {
const RowKernels* Avx2Rows() { return nullptr; }
}  // namespace kvf::kcore::rows_internal

#endif
