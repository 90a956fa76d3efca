// Row kernels of the CPU codecs (kernels/core/cpu_codec_ref.cc): the loops
// over a run of contiguous elements of one dtype where the codecs spend their
// time. Each computes, element by element, exactly the functions of
// kernels/internal/codec_math.h that the CUDA kernels call, so outputs are
// bit-identical to the scalar definitions below whatever instruction set runs
// them; cpu_rows.cc picks a vectorised implementation at run time where the
// CPU has one (AVX2 + F16C) and falls back to portable loops.
//
// Pointers are at element 0 of the run and may be unaligned; an output must
// not overlap an input (a vectorised row may fall back to the portable loop
// and redo the whole row). `n` counts elements. `centre`, `inv` and `scale` arrays hold n floats (one per element
// of the run: per-channel parameters of a row of channels).
#ifndef KVF_KERNELS_CORE_CPU_ROWS_H_
#define KVF_KERNELS_CORE_CPU_ROWS_H_

#include <cstddef>
#include <cstdint>

#include "kernels/core/types.h"

namespace kvf::kcore::rows {

// max over i of |x[i]|, NaN ignored (MaxIgnoringNan of AbsF), 0 for n = 0.
// An infinity gives +inf.
float AbsMax(ElemType t, const void* in, size_t n);

// lo[i] = MinIgnoringNan(lo[i], x[i]), hi[i] = MaxIgnoringNanSigned(hi[i], x[i]).
void MinMax(ElemType t, const void* in, size_t n, float* lo, float* hi);

// out[i] = FloatToE4m3(MulRn(x[i], inv)), or with `centre`:
// FloatToE4m3(MulRn(Centred(x[i], centre[i]), inv)).
void EncodeFp8(ElemType t, const void* in, size_t n, const float* centre, float inv,
               uint8_t* out);

// out[i] = QuantizeInt8(x[i], inv).
void EncodeInt8(ElemType t, const void* in, size_t n, float inv, uint8_t* out);

// out[i] = QuantizeInt8(Centred(x[i], centre[i]), inv[i]).
void EncodeInt8Channels(ElemType t, const void* in, size_t n, const float* centre,
                        const float* inv, uint8_t* out);

// x[i] = MulRn(E4m3ToFloat(in[i]), scale), or with `centre`:
// AddRn(centre[i], MulRn(E4m3ToFloat(in[i]), scale)); stored as dtype `t`.
void DecodeFp8(const uint8_t* in, size_t n, const float* centre, float scale, ElemType t,
               void* out);

// x[i] = DequantizeInt8(in[i], scale).
void DecodeInt8(const uint8_t* in, size_t n, float scale, ElemType t, void* out);

// x[i] = AddRn(centre[i], DequantizeInt8(in[i], scale[i])).
void DecodeInt8Channels(const uint8_t* in, size_t n, const float* centre, const float* scale,
                        ElemType t, void* out);

// Which implementation runs: "avx2" or "portable". KVF_CPU_ROWS=portable in
// the environment forces the portable loops (tests compare the two).
const char* Implementation();

}  // namespace kvf::kcore::rows

#endif  // KVF_KERNELS_CORE_CPU_ROWS_H_
