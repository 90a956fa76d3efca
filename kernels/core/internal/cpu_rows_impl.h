// The implementations behind kernels/core/cpu_rows.h, for cpu_rows.cc's
// run-time choice and for tests and benchmarks that compare them. Not part of
// the kernel core's interface.
#ifndef KVF_KERNELS_CORE_INTERNAL_CPU_ROWS_IMPL_H_
#define KVF_KERNELS_CORE_INTERNAL_CPU_ROWS_IMPL_H_

#include <cstddef>
#include <cstdint>

#include "kernels/core/types.h"

namespace kvf::kcore::rows_internal {

// One implementation of the row kernels; each member has the contract of the
// cpu_rows.h function of the same name. Tables are immutable and live for the
// whole program; their functions are thread-safe (they touch only their
// arguments).
struct RowKernels {
  const char* name;
  float (*abs_max)(ElemType t, const void* in, size_t n);
  void (*min_max)(ElemType t, const void* in, size_t n, float* lo, float* hi);
  void (*encode_fp8)(ElemType t, const void* in, size_t n, const float* centre, float inv,
                     uint8_t* out);
  void (*encode_int8)(ElemType t, const void* in, size_t n, float inv, uint8_t* out);
  void (*encode_int8_channels)(ElemType t, const void* in, size_t n, const float* centre,
                               const float* inv, uint8_t* out);
  void (*decode_fp8)(const uint8_t* in, size_t n, const float* centre, float scale, ElemType t,
                     void* out);
  void (*decode_int8)(const uint8_t* in, size_t n, float scale, ElemType t, void* out);
  void (*decode_int8_channels)(const uint8_t* in, size_t n, const float* centre, const float* scale,
                               ElemType t, void* out);
};

// The portable loops (cpu_rows.cc), named "portable": the definition. Any
// other implementation must produce the same bytes for every input.
const RowKernels& PortableRows();

// The AVX2 + F16C implementation (cpu_rows_avx2.cc), named "avx2", or
// nullptr where it is not compiled in (not x86-64, or not GCC/Clang) or this
// CPU lacks AVX2 or F16C. It falls back to PortableRows() for row tails and
// for the rare inputs whose result the portable loops leave to the compiler
// (the sign of a NaN produced from two NaN operands).
const RowKernels* Avx2Rows();

}  // namespace kvf::kcore::rows_internal

#endif  // KVF_KERNELS_CORE_INTERNAL_CPU_ROWS_IMPL_H_
