// Device-side building blocks shared by the codec kernels (encode_kernels.cuh,
// decode_kernels.cuh) and their callers (codec_kernels.cu, paged_kernels.cu):
// element types, launch-time index division, the canonical and paged row
// accessors, blob section access that tolerates any alignment, nibble stores,
// and reductions. Everything is in an anonymous namespace: each .cu file gets
// its own instantiations.
//
// Work is cut into *items*: up to 8 consecutive elements d0 = 8k .. 8k+7 of
// one row (one (layer, K|V, token, head), whose D elements are contiguous in
// the canonical block and in every paged layout). An item is one 16-byte
// access for fp16/bf16 (two for fp32) when the rows are 16-byte aligned and
// D % 8 == 0 ("vec"), else element by element; its codes are one 8-byte
// (fp8, int8) or 4-byte (int4) access when the blob's payload allows.
#ifndef KVF_KERNELS_CUDA_DEVICE_COMMON_CUH_
#define KVF_KERNELS_CUDA_DEVICE_COMMON_CUH_

#include <cuda_runtime.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>

#include "kernels/core/blob_format.h"
#include "kernels/core/cuda_ops.h"
#include "kernels/core/paged.h"
#include "kernels/cuda/fast_div.cuh"
#include "kernels/internal/codec_math.h"

namespace kvf::kcore {
namespace {

namespace im = ::kvf::internal;  // codec_math.h

constexpr int kThreads = 256;
constexpr uint32_t kItem = 8;  // elements per item
constexpr unsigned kFullMask = 0xffffffffu;

// Result of the launches just enqueued (cudaGetLastError also clears a
// non-sticky error left by an earlier call on this thread).
inline Result LaunchResult(const char* what) {
  const cudaError_t err = cudaGetLastError();
  if (err == cudaSuccess) return Result::Ok();
  return Result::Internal(std::string(what) + ": " + cudaGetErrorName(err) + ": " +
                          cudaGetErrorString(err));
}

// The device kernels index items and rows with 32-bit arithmetic.
inline Result CheckDeviceIndexRange(const KvShape& s, const char* what) {
  const uint64_t rows = uint64_t{2} * s.num_layers * s.block_tokens * s.num_kv_heads;
  const uint64_t items = rows * ((s.head_dim + kItem - 1) / kItem);
  if (items >= (uint64_t{1} << 31)) {
    return Result::InvalidArgument(std::string(what) + ": block of " + std::to_string(items) +
                                   " 8-element items is too large for the device kernels "
                                   "(max 2^31)");
  }
  return Result::Ok();
}

// ---- Element types. Bits of 16-bit types are the low half of a uint32_t.

struct Fp16Dev {
  static constexpr uint32_t kBytes = 2;
  __device__ static float FromBits(uint32_t b) { return im::HalfToFloat(static_cast<uint16_t>(b)); }
  __device__ static uint32_t ToBits(float v) { return im::FloatToHalf(v); }
};
struct Bf16Dev {
  static constexpr uint32_t kBytes = 2;
  __device__ static float FromBits(uint32_t b) { return im::Bf16ToFloat(static_cast<uint16_t>(b)); }
  __device__ static uint32_t ToBits(float v) { return im::FloatToBf16(v); }
};
struct Fp32Dev {
  static constexpr uint32_t kBytes = 4;
  __device__ static float FromBits(uint32_t b) { return im::BitsFloat(b); }
  __device__ static uint32_t ToBits(float v) { return im::FloatBits(v); }
};

template <typename F>
void ForDType(ElemType dtype, F&& f) {
  switch (dtype) {
    case ElemType::kFp16: f(Fp16Dev{}); break;
    case ElemType::kBf16: f(Bf16Dev{}); break;
    case ElemType::kFp32: f(Fp32Dev{}); break;
  }
}

template <typename E>
__device__ inline float LoadElem(const char* row, uint32_t i) {
  if constexpr (E::kBytes == 2) {
    return E::FromBits(reinterpret_cast<const uint16_t*>(row)[i]);
  } else {
    return reinterpret_cast<const float*>(row)[i];
  }
}

template <typename E>
__device__ inline void StoreElem(char* row, uint32_t i, float v) {
  if constexpr (E::kBytes == 2) {
    reinterpret_cast<uint16_t*>(row)[i] = static_cast<uint16_t>(E::ToBits(v));
  } else {
    reinterpret_cast<float*>(row)[i] = v;
  }
}

// The raw bytes of one full item: 16 (fp16, bf16) or 32 (fp32) bytes.
template <typename E>
struct RawItem {
  uint4 v[E::kBytes / 2];
};

template <typename E>
__device__ inline RawItem<E> LoadRaw(const char* p) {  // p 16-byte aligned
  RawItem<E> r;
#pragma unroll
  for (uint32_t i = 0; i < E::kBytes / 2; ++i) r.v[i] = reinterpret_cast<const uint4*>(p)[i];
  return r;
}

__device__ inline uint32_t Word(const uint4& v, int i) {
  return i == 0 ? v.x : i == 1 ? v.y : i == 2 ? v.z : v.w;
}

template <typename E>
__device__ inline void Unpack(const RawItem<E>& r, float (&x)[kItem]) {
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    if constexpr (E::kBytes == 2) {
      const uint32_t w = Word(r.v[0], i);
      x[2 * i] = E::FromBits(w & 0xffffu);
      x[2 * i + 1] = E::FromBits(w >> 16);
    } else {
      x[i] = im::BitsFloat(Word(r.v[0], i));
      x[4 + i] = im::BitsFloat(Word(r.v[1], i));
    }
  }
}

// Elements [d0, d0 + n) of `row` into x[0, n); x[n, 8) = 0. `vec`: the item
// is full (n == 8) and 16-byte aligned.
template <typename E>
__device__ inline void LoadItem(const char* row, uint32_t d0, uint32_t n, bool vec,
                                float (&x)[kItem]) {
  if (vec) {
    Unpack<E>(LoadRaw<E>(row + size_t{d0} * E::kBytes), x);
    return;
  }
#pragma unroll
  for (uint32_t i = 0; i < kItem; ++i) x[i] = i < n ? LoadElem<E>(row, d0 + i) : 0.0f;
}

template <typename E>
__device__ inline void StoreItem(char* row, uint32_t d0, uint32_t n, bool vec,
                                 const float (&x)[kItem]) {
  if (vec) {
    uint4 v[E::kBytes / 2];
    if constexpr (E::kBytes == 2) {
      uint32_t w[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) w[i] = E::ToBits(x[2 * i]) | (E::ToBits(x[2 * i + 1]) << 16);
      v[0] = make_uint4(w[0], w[1], w[2], w[3]);
    } else {
      v[0] = make_uint4(im::FloatBits(x[0]), im::FloatBits(x[1]), im::FloatBits(x[2]),
                        im::FloatBits(x[3]));
      v[1] = make_uint4(im::FloatBits(x[4]), im::FloatBits(x[5]), im::FloatBits(x[6]),
                        im::FloatBits(x[7]));
    }
    uint4* p = reinterpret_cast<uint4*>(row + size_t{d0} * E::kBytes);
#pragma unroll
    for (uint32_t i = 0; i < E::kBytes / 2; ++i) p[i] = v[i];
    return;
  }
#pragma unroll
  for (uint32_t i = 0; i < kItem; ++i) {
    if (i < n) StoreElem<E>(row, d0 + i, x[i]);
  }
}

// ---- Shape of a block, by value in the kernel parameters.

struct Shape {
  uint32_t t, h, d;
  uint32_t kd;                   // items per row: ceil(D / 8)
  FastDiv div_t, div_h, div_kd;  // by T, H and kd
  __host__ __device__ uint32_t Hd() const { return h * d; }
  __host__ __device__ size_t Section() const { return size_t{t} * h * d; }
  __host__ __device__ uint32_t ItemLen(uint32_t k) const {
    const uint32_t d0 = k * kItem;
    return d - d0 < kItem ? d - d0 : kItem;
  }
};

inline Shape ShapeFor(const KvShape& s) {
  Shape sh;
  sh.t = s.block_tokens;
  sh.h = s.num_kv_heads;
  sh.d = s.head_dim;
  sh.kd = (s.head_dim + kItem - 1) / kItem;
  sh.div_t = FastDiv(sh.t);
  sh.div_h = FastDiv(sh.h);
  sh.div_kd = FastDiv(sh.kd);
  return sh;
}

// ---- Row accessors: (section, token, head) -> the row's first element.
// `vec`: every row is 16-byte aligned and D % 8 == 0.

template <typename E>
struct CanonSrc {
  using Elem = E;
  const char* p;
  uint32_t t, h;
  size_t row_bytes;
  bool vec;
  __device__ const char* Row(uint32_t s, uint32_t tok, uint32_t head) const {
    return p + ((size_t{s} * t + tok) * h + head) * row_bytes;
  }
};
template <typename E>
struct CanonDst {
  using Elem = E;
  char* p;
  uint32_t t, h;
  size_t row_bytes;
  bool vec;
  __device__ char* Row(uint32_t s, uint32_t tok, uint32_t head) const {
    return p + ((size_t{s} * t + tok) * h + head) * row_bytes;
  }
};

inline bool RowsAligned16(const void* p, const KvShape& s) {
  return s.head_dim % kItem == 0 && reinterpret_cast<uintptr_t>(p) % 16 == 0;
}

template <typename E>
CanonSrc<E> CanonSrcFor(const void* p, const KvShape& s) {
  return {static_cast<const char*>(p), s.block_tokens, s.num_kv_heads,
          size_t{s.head_dim} * E::kBytes, RowsAligned16(p, s)};
}
template <typename E>
CanonDst<E> CanonDstFor(void* p, const KvShape& s) {
  return {static_cast<char*>(p), s.block_tokens, s.num_kv_heads, size_t{s.head_dim} * E::kBytes,
          RowsAligned16(p, s)};
}

// One launch's view of an engine's pages: layers [layer0, layer0 + layers)
// and every page of the block, by value in the kernel parameters.
struct PagedArgs {
  uint64_t page_stride, kv_stride, token_stride, head_stride;  // elements
  uint32_t page_size, layer0, layers, num_pages;
  FastDiv div_page;  // by page_size
  char* bases[kMaxLayersPerLaunch];
  int32_t page_ids[kMaxPagesPerBlock];

  // Element offset, from bases[s / 2 - layer0], of row (s, t, h).
  __device__ size_t RowOffset(uint32_t s, uint32_t t, uint32_t h) const {
    const uint32_t page = div_page.Div(t);
    const uint32_t slot = t - page * page_size;
    return static_cast<uint64_t>(page_ids[page]) * page_stride + (s & 1) * kv_stride +
           slot * token_stride + h * head_stride;
  }
};
static_assert(sizeof(PagedArgs) < 3000, "kernel parameters are limited to 4 KB");

template <typename E>
struct PagedSrc {
  using Elem = E;
  PagedArgs a;
  bool vec;
  __device__ const char* Row(uint32_t s, uint32_t t, uint32_t h) const {
    return a.bases[(s >> 1) - a.layer0] + a.RowOffset(s, t, h) * E::kBytes;
  }
};
template <typename E>
struct PagedDst {
  using Elem = E;
  PagedArgs a;
  bool vec;
  __device__ char* Row(uint32_t s, uint32_t t, uint32_t h) const {
    return a.bases[(s >> 1) - a.layer0] + a.RowOffset(s, t, h) * E::kBytes;
  }
};

// ---- Blob sections of one format version.

struct BlobLayout {
  uint16_t version;
  size_t scales, meta, payload;  // byte offsets
  size_t total;                  // bytes of header + sections
  bool codes_vec;  // an item's codes are one 8-byte (fp8, int8) / 4-byte (int4) access
};

inline BlobLayout LayoutFor(CodecId codec, const KvShape& shape, uint16_t version,
                            const void* blob) {
  const BlobGeometry g = GeometryForVersion(codec, shape, version);
  BlobLayout b;
  b.version = version;
  b.scales = g.scales_offset();
  b.meta = g.meta_offset();
  b.payload = g.payload_offset();
  b.total = g.total();
  const uintptr_t payload = reinterpret_cast<uintptr_t>(blob) + b.payload;
  b.codes_vec = shape.head_dim % kItem == 0 && payload % (codec == CodecId::kInt4 ? 4 : 8) == 0;
  return b;
}

// int4 group counts (blob_format.h, Int4Groups) for the kernels.
struct Int4Meta {
  uint64_t gk, gv;    // K / V groups per layer
  uint64_t groups;    // all layers (the zero points follow the codes)
  uint64_t elements;  // elements of the block (payload nibbles)
  uint32_t gt, gd;    // token groups per K channel, channel groups per V row
};

inline Int4Meta Int4MetaFor(const KvShape& s) {
  const Int4Groups g = Int4GroupsFor(s);
  return {g.k, g.v, g.per_layer() * s.num_layers, s.ElementsPerBlock(), g.gt, g.gd};
}

// Scalar fields of the blob (fp32 scales, bf16 meta). `aligned`: the blob is
// 4-byte aligned (then so is every fp32 field and every bf16 field is
// 2-byte aligned); else byte accesses.
__device__ inline float LoadF32(const uint8_t* p, bool aligned) {
  if (aligned) return *reinterpret_cast<const float*>(p);
  return im::BitsFloat(uint32_t{p[0]} | (uint32_t{p[1]} << 8) | (uint32_t{p[2]} << 16) |
                       (uint32_t{p[3]} << 24));
}
__device__ inline void StoreF32(uint8_t* p, float v, bool aligned) {
  if (aligned) {
    *reinterpret_cast<float*>(p) = v;
    return;
  }
  const uint32_t u = im::FloatBits(v);
#pragma unroll
  for (int i = 0; i < 4; ++i) p[i] = static_cast<uint8_t>(u >> (8 * i));
}
__device__ inline uint16_t LoadU16(const uint8_t* p, bool aligned) {
  if (aligned) return *reinterpret_cast<const uint16_t*>(p);
  return static_cast<uint16_t>(p[0] | (p[1] << 8));
}
__device__ inline void StoreU16(uint8_t* p, uint16_t v, bool aligned) {
  if (aligned) {
    *reinterpret_cast<uint16_t*>(p) = v;
    return;
  }
  p[0] = static_cast<uint8_t>(v);
  p[1] = static_cast<uint8_t>(v >> 8);
}

// One byte code per element (fp8, int8): codes [0, n) of an item.
__device__ inline void LoadCodes(const uint8_t* p, uint32_t n, bool vec, uint8_t (&c)[kItem]) {
  if (vec) {
    const uint2 v = *reinterpret_cast<const uint2*>(p);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      c[i] = static_cast<uint8_t>(v.x >> (8 * i));
      c[4 + i] = static_cast<uint8_t>(v.y >> (8 * i));
    }
    return;
  }
#pragma unroll
  for (uint32_t i = 0; i < kItem; ++i) c[i] = i < n ? p[i] : 0;
}
__device__ inline void StoreCodes(uint8_t* p, const uint8_t (&c)[kItem], uint32_t n, bool vec) {
  if (vec) {
    uint2 v;
    v.x = c[0] | (c[1] << 8) | (c[2] << 16) | (uint32_t{c[3]} << 24);
    v.y = c[4] | (c[5] << 8) | (c[6] << 16) | (uint32_t{c[7]} << 24);
    *reinterpret_cast<uint2*>(p) = v;
    return;
  }
#pragma unroll
  for (uint32_t i = 0; i < kItem; ++i) {
    if (i < n) p[i] = c[i];
  }
}

// ---- 4-bit codes, two per byte (low nibble = even index).

__device__ inline uint8_t ReadNibble(const uint8_t* base, size_t index) {
  return static_cast<uint8_t>((base[index / 2] >> ((index & 1) * 4)) & 0x0f);
}

// Sets nibble `index` and leaves its byte's other nibble (written by another
// thread, before or after) as it is: two 32-bit atomics on the aligned word
// holding the byte, which the rest of the word's bytes (plain stores by
// other threads included) never disturb.
__device__ inline void SetNibbleAtomic(uint8_t* base, size_t index, uint32_t q) {
  const uintptr_t addr = reinterpret_cast<uintptr_t>(base) + index / 2;
  unsigned int* word = reinterpret_cast<unsigned int*>(addr & ~uintptr_t{3});
  const unsigned shift = static_cast<unsigned>((addr & 3) * 8 + (index & 1) * 4);
  atomicAnd(word, ~(0xfu << shift));
  atomicOr(word, (q & 0xfu) << shift);
}

// Nibble `index` of an array of `end` nibbles, when its byte's other nibble
// is not the caller's: merged atomically, except the padding nibble after
// an odd-length array's last one, which is 0 (a plain store of the byte).
__device__ inline void StoreNibble(uint8_t* base, size_t index, uint32_t q, size_t end) {
  if ((index & 1) == 0 && index + 1 == end) {
    base[index / 2] = static_cast<uint8_t>(q & 0xfu);
  } else {
    SetNibbleAtomic(base, index, q);
  }
}

// Nibbles q[0, n) at indices [i0, i0 + n) of an array of `end` nibbles:
// whole bytes where both nibbles are in the run (one 4-byte store when
// `vec`: n == 8, i0 % 8 == 0 and `base` 4-byte aligned), StoreNibble for a
// nibble whose byte it shares with a neighbouring run.
__device__ inline void StoreNibbleRun(uint8_t* base, size_t i0, const uint8_t (&q)[kItem],
                                      uint32_t n, size_t end, bool vec) {
  if (vec) {
    uint32_t w = 0;
#pragma unroll
    for (int i = 0; i < 8; ++i) w |= uint32_t{q[i]} << (4 * i);
    *reinterpret_cast<uint32_t*>(base + i0 / 2) = w;
    return;
  }
  const uint32_t odd = static_cast<uint32_t>(i0 & 1);
#pragma unroll
  for (uint32_t i = 0; i < kItem; ++i) {
    if (i >= n) continue;
    const size_t index = i0 + i;
    if (((odd + i) & 1) == 0) {  // low nibble of its byte
      if (i + 1 < n) {
        base[index / 2] = static_cast<uint8_t>(q[i] | (q[i + 1 < kItem ? i + 1 : i] << 4));
      } else {
        StoreNibble(base, index, q[i], end);
      }
    } else if (i == 0) {  // high nibble; the low one belongs to the previous run
      SetNibbleAtomic(base, index, q[i]);
    }
  }
}

// ---- Reductions of non-negative, non-NaN values (absolute maxima, int4
// needed scales): any order gives the same result.

__device__ inline float WarpMax(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = im::MaxIgnoringNan(v, __shfl_xor_sync(kFullMask, v, o));
  return v;
}

// Max over the thread block, returned to every thread; `red` holds 32 floats.
__device__ inline float BlockMax(float v, float* red) {
  v = WarpMax(v);
  const uint32_t warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  if (lane == 0) red[warp] = v;
  __syncthreads();
  float m = lane < ((blockDim.x + 31) >> 5) ? red[lane] : 0.0f;
  m = WarpMax(m);
  __syncthreads();  // `red` may be reused
  return m;
}

}  // namespace
}  // namespace kvf::kcore

#endif  // KVF_KERNELS_CUDA_DEVICE_COMMON_CUH_
