// Device-side building blocks shared by codec_kernels.cu and
// paged_kernels.cu: element types, the canonical and paged element accessors,
// and the codec kernels templated on them (so encode-on-gather and
// decode-on-scatter run the very code of the plain codecs, only reading or
// writing pages instead of a contiguous block). Everything is in an anonymous
// namespace: each .cu file gets its own instantiations.
#ifndef KVF_KERNELS_CUDA_DEVICE_COMMON_CUH_
#define KVF_KERNELS_CUDA_DEVICE_COMMON_CUH_

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "kernels/core/blob_format.h"
#include "kernels/core/cuda_ops.h"
#include "kernels/core/paged.h"
#include "kernels/internal/codec_math.h"

namespace kvf::kcore {
namespace {

namespace im = ::kvf::internal;  // codec_math.h

constexpr int kThreads = 256;

// Result of the launches just enqueued (cudaGetLastError also clears a
// non-sticky error left by an earlier call on this thread).
inline Result LaunchResult(const char* what) {
  const cudaError_t err = cudaGetLastError();
  if (err == cudaSuccess) return Result::Ok();
  return Result::Internal(std::string(what) + ": " + cudaGetErrorName(err) + ": " +
                          cudaGetErrorString(err));
}

struct Fp16Dev {
  __device__ static float Load(const void* p, size_t i) {
    return im::HalfToFloat(static_cast<const uint16_t*>(p)[i]);
  }
  __device__ static void Store(void* p, size_t i, float v) {
    static_cast<uint16_t*>(p)[i] = im::FloatToHalf(v);
  }
};
struct Bf16Dev {
  __device__ static float Load(const void* p, size_t i) {
    return im::Bf16ToFloat(static_cast<const uint16_t*>(p)[i]);
  }
  __device__ static void Store(void* p, size_t i, float v) {
    static_cast<uint16_t*>(p)[i] = im::FloatToBf16(v);
  }
};
struct Fp32Dev {
  __device__ static float Load(const void* p, size_t i) { return static_cast<const float*>(p)[i]; }
  __device__ static void Store(void* p, size_t i, float v) { static_cast<float*>(p)[i] = v; }
};

template <typename F>
void ForDType(ElemType dtype, F&& f) {
  switch (dtype) {
    case ElemType::kFp16: f(Fp16Dev{}); break;
    case ElemType::kBf16: f(Bf16Dev{}); break;
    case ElemType::kFp32: f(Fp32Dev{}); break;
  }
}

// Shape of a block, passed by value to kernels.
struct Shape {
  size_t t, h, d;
  __host__ __device__ size_t Hd() const { return h * d; }
  __host__ __device__ size_t Section() const { return t * h * d; }
};

inline Shape ShapeFor(const KvShape& s) { return {s.block_tokens, s.num_kv_heads, s.head_dim}; }

struct Regions {  // byte offsets of the blob's sections
  size_t scales, meta, payload;
  size_t groups;  // int4: total groups (codes, then zero-point nibbles)
};

struct Int4Dims {
  size_t gt, gd, k, v;
};

inline Regions RegionsFor(CodecId codec, const KvShape& shape) {
  const BlobGeometry geo = GeometryFor(codec, shape);
  const Int4Groups g = Int4GroupsFor(shape);
  return {geo.scales_offset(), geo.meta_offset(), geo.payload_offset(),
          codec == CodecId::kInt4 ? g.per_layer() * shape.num_layers : 0};
}

inline Int4Dims Int4DimsFor(const KvShape& shape) {
  const Int4Groups g = Int4GroupsFor(shape);
  return {g.gt, g.gd, g.k, g.v};
}

// ---- Element accessors: canonical element index e -> value.

template <typename E>
struct CanonSrc {
  const void* p;
  __device__ float Load(size_t e) const { return E::Load(p, e); }
};
template <typename E>
struct CanonDst {
  void* p;
  __device__ void Store(size_t e, float v) const { E::Store(p, e, v); }
};

// One launch's view of an engine's pages: layers [layer0, layer0 + layers)
// and every page of the block, by value in the kernel parameters.
struct PagedArgs {
  uint64_t page_stride, kv_stride, token_stride, head_stride;  // elements
  uint32_t page_size, layer0, layers, num_pages;
  char* bases[kMaxLayersPerLaunch];
  int32_t page_ids[kMaxPagesPerBlock];

  // Element offset (from bases[layer - layer0]) of canonical element e.
  __device__ size_t Offset(const Shape& sh, size_t e, uint32_t* local_layer) const {
    const size_t sec = sh.Section();
    const size_t s = e / sec;
    size_t r = e - s * sec;
    const size_t t = r / sh.Hd();
    r -= t * sh.Hd();
    const size_t h = r / sh.d;
    const size_t d = r - h * sh.d;
    *local_layer = static_cast<uint32_t>(s / 2) - layer0;
    const size_t page = static_cast<size_t>(page_ids[t / page_size]);
    const size_t slot = t % page_size;
    return page * page_stride + (s & 1) * kv_stride + slot * token_stride + h * head_stride + d;
  }
};
static_assert(sizeof(PagedArgs) < 3000, "kernel parameters are limited to 4 KB");

template <typename E>
struct PagedSrc {
  PagedArgs a;
  Shape sh;
  __device__ float Load(size_t e) const {
    uint32_t l;
    const size_t off = a.Offset(sh, e, &l);
    return E::Load(a.bases[l], off);
  }
};
template <typename E>
struct PagedDst {
  PagedArgs a;
  Shape sh;
  __device__ void Store(size_t e, float v) const {
    uint32_t l;
    const size_t off = a.Offset(sh, e, &l);
    E::Store(a.bases[l], off, v);
  }
};

// ---- Codec kernels (see docs/codecs.md for the format). `section0` is the
// first (layer, K|V) section the launch covers; the grid covers the rest.

__device__ inline float BlockMax(float v, float* shared) {
  shared[threadIdx.x] = v;
  __syncthreads();
  for (int s = blockDim.x / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s) shared[threadIdx.x] = fmaxf(shared[threadIdx.x], shared[threadIdx.x + s]);
    __syncthreads();
  }
  const float r = shared[0];
  __syncthreads();
  return r;
}

__device__ inline void OrNibble(uint8_t* base, size_t index, uint8_t q) {
  const uintptr_t addr = reinterpret_cast<uintptr_t>(base) + index / 2;
  const unsigned shift = static_cast<unsigned>((addr & 3) * 8 + (index & 1) * 4);
  atomicOr(reinterpret_cast<unsigned int*>(addr & ~uintptr_t{3}), static_cast<unsigned>(q) << shift);
}

__device__ inline uint8_t ReadNibble(const uint8_t* base, size_t index) {
  return static_cast<uint8_t>((base[index / 2] >> ((index & 1) * 4)) & 0x0f);
}

__device__ inline void MaybeWriteHeader(uint8_t* out, const BlobHeader& header, size_t section0) {
  if (section0 == 0 && blockIdx.x == 0 && threadIdx.x < sizeof(BlobHeader)) {
    out[threadIdx.x] = reinterpret_cast<const uint8_t*>(&header)[threadIdx.x];
  }
}

// fp8: one thread block per (section, head).
template <typename Src>
__global__ void Fp8Encode(const __grid_constant__ Src src, uint8_t* out, Shape sh, Regions rg,
                          BlobHeader header, size_t section0) {
  __shared__ float shared[kThreads];
  MaybeWriteHeader(out, header, section0);
  const size_t s = section0 + blockIdx.x / sh.h, h = blockIdx.x % sh.h;
  const size_t base = s * sh.Section() + h * sh.d;
  float m = 0.0f;
  for (size_t i = threadIdx.x; i < sh.t * sh.d; i += blockDim.x) {
    const size_t e = base + (i / sh.d) * sh.Hd() + i % sh.d;
    m = im::MaxIgnoringNan(m, im::AbsF(src.Load(e)));
  }
  const float scale = im::Fp8Scale(BlockMax(m, shared));
  if (threadIdx.x == 0) reinterpret_cast<float*>(out + rg.scales)[s * sh.h + h] = scale;
  const float inv = im::Reciprocal(scale);
  for (size_t i = threadIdx.x; i < sh.t * sh.d; i += blockDim.x) {
    const size_t e = base + (i / sh.d) * sh.Hd() + i % sh.d;
    out[rg.payload + e] = im::FloatToE4m3(im::MulRn(src.Load(e), inv));
  }
}

// int8: one thread block per token row of a section.
template <typename Src>
__global__ void Int8Encode(const __grid_constant__ Src src, uint8_t* out, Shape sh, Regions rg,
                           BlobHeader header, size_t section0) {
  __shared__ float shared[kThreads];
  MaybeWriteHeader(out, header, section0);
  const size_t row_index = section0 * sh.t + blockIdx.x;
  const size_t row = row_index * sh.Hd();
  float m = 0.0f;
  for (size_t i = threadIdx.x; i < sh.Hd(); i += blockDim.x) {
    m = im::MaxIgnoringNan(m, im::AbsF(src.Load(row + i)));
  }
  const float scale = im::Int8Scale(BlockMax(m, shared));
  if (threadIdx.x == 0) reinterpret_cast<float*>(out + rg.scales)[row_index] = scale;
  const float inv = im::Reciprocal(scale);
  for (size_t i = threadIdx.x; i < sh.Hd(); i += blockDim.x) {
    out[rg.payload + row + i] = static_cast<uint8_t>(im::QuantizeInt8(src.Load(row + i), inv));
  }
}

// int4: one thread block per section. Groups as in blob_format.h.
__device__ inline void Int4GroupRange(const Int4Dims& g, const Shape& sh, size_t kv, size_t gi,
                                      size_t* first, size_t* stride, size_t* count) {
  if (kv == 0) {  // gi = (h * D + d) * gt + tg: tokens of one channel
    const size_t j = gi / g.gt, tg = gi % g.gt;
    const size_t t0 = tg * kInt4GroupSize;
    *first = t0 * sh.Hd() + j;
    *stride = sh.Hd();
    *count = min(sh.t - t0, size_t{kInt4GroupSize});
  } else {  // gi = (t * H + h) * gd + dg: channels of one token row
    const size_t r = gi / g.gd, dg = gi % g.gd;
    const size_t d0 = dg * kInt4GroupSize;
    *first = r * sh.d + d0;
    *stride = 1;
    *count = min(sh.d - d0, size_t{kInt4GroupSize});
  }
}

__device__ inline size_t Int4GroupOf(const Int4Dims& g, const Shape& sh, size_t kv, size_t i) {
  const size_t t = i / sh.Hd(), j = i % sh.Hd();
  if (kv == 0) return j * g.gt + t / kInt4GroupSize;
  return (t * sh.h + j / sh.d) * g.gd + (j % sh.d) / kInt4GroupSize;
}

template <typename Src>
__device__ void Int4Range(const Src& src, size_t base, size_t first, size_t stride, size_t count,
                          float* lo, float* hi) {
  float l = 0.0f, h = 0.0f;
  for (size_t c = 0; c < count; ++c) {
    const float x = src.Load(base + first + c * stride);
    l = x < l ? x : l;
    h = x > h ? x : h;
  }
  *lo = l;
  *hi = h;
}

// Zero points and payload nibbles are or-ed into a region the launcher
// zeroed first.
template <typename Src>
__global__ void Int4Encode(const __grid_constant__ Src src, uint8_t* out, Shape sh, Regions rg,
                           Int4Dims g, BlobHeader header, size_t section0) {
  __shared__ float shared[kThreads];
  MaybeWriteHeader(out, header, section0);
  const size_t s = section0 + blockIdx.x, layer = s / 2, kv = s % 2;
  const size_t base = s * sh.Section();
  const size_t ng = kv == 0 ? g.k : g.v;
  const size_t gbase = layer * (g.k + g.v) + (kv == 0 ? 0 : g.k);
  uint8_t* codes = out + rg.meta;
  uint8_t* zeros = codes + rg.groups;
  size_t first, stride, count;
  float lo, hi;

  float m = 0.0f;
  for (size_t gi = threadIdx.x; gi < ng; gi += blockDim.x) {
    Int4GroupRange(g, sh, kv, gi, &first, &stride, &count);
    Int4Range(src, base, first, stride, count, &lo, &hi);
    m = im::MaxIgnoringNan(m, im::Int4NeededScale(lo, hi));
  }
  const float super = im::Int4SuperScale(BlockMax(m, shared));
  if (threadIdx.x == 0) reinterpret_cast<float*>(out + rg.scales)[s] = super;
  const float super_inv = im::Reciprocal(super);
  for (size_t gi = threadIdx.x; gi < ng; gi += blockDim.x) {
    Int4GroupRange(g, sh, kv, gi, &first, &stride, &count);
    Int4Range(src, base, first, stride, count, &lo, &hi);
    const uint8_t code = im::Int4ScaleCode(im::Int4NeededScale(lo, hi), super_inv);
    codes[gbase + gi] = code;
    const float inv = im::Reciprocal(im::Int4GroupScale(super, code));
    OrNibble(zeros, gbase + gi, im::Int4ZeroPoint(lo, inv));
  }
  __threadfence();
  __syncthreads();
  // Codes and zero points written above (zero points by atomics in L2, some
  // by other blocks) are read through L2 (__ldcg), never from a stale L1 line.
  for (size_t i = threadIdx.x; i < sh.Section(); i += blockDim.x) {
    const size_t gi = Int4GroupOf(g, sh, kv, i);
    const float inv = im::Reciprocal(im::Int4GroupScale(super, __ldcg(codes + gbase + gi)));
    const uint8_t zero = static_cast<uint8_t>(
        (__ldcg(zeros + (gbase + gi) / 2) >> (((gbase + gi) & 1) * 4)) & 0x0f);
    OrNibble(out + rg.payload, base + i, im::QuantizeInt4(src.Load(base + i), inv, zero));
  }
}

// Compares the blob's header with the one an encoder writes.
__global__ void CheckHeader(const uint8_t* blob, BlobHeader want, uint32_t* error) {
  __shared__ int bad;
  if (threadIdx.x == 0) bad = 0;
  __syncthreads();
  if (threadIdx.x < sizeof(BlobHeader) &&
      blob[threadIdx.x] != reinterpret_cast<const uint8_t*>(&want)[threadIdx.x]) {
    atomicExch(&bad, 1);
  }
  __syncthreads();
  if (threadIdx.x == 0) *error = bad;
}

// Element-parallel decode of canonical elements [e0, e1); does nothing when
// the header check failed.
template <typename Dst>
__global__ void Decode(const __grid_constant__ Dst dst, CodecId codec, const uint8_t* blob,
                       Shape sh, Regions rg, Int4Dims g, size_t e0, size_t e1,
                       const uint32_t* error) {
  if (*error != 0) return;
  const float* scales = reinterpret_cast<const float*>(blob + rg.scales);
  for (size_t e = e0 + blockIdx.x * size_t{blockDim.x} + threadIdx.x; e < e1;
       e += size_t{gridDim.x} * blockDim.x) {
    const size_t s = e / sh.Section(), i = e % sh.Section();
    float x;
    if (codec == CodecId::kFp8E4m3) {
      const size_t h = (i % sh.Hd()) / sh.d;
      x = im::MulRn(im::E4m3ToFloat(blob[rg.payload + e]), scales[s * sh.h + h]);
    } else if (codec == CodecId::kInt8) {
      x = im::DequantizeInt8(static_cast<int8_t>(blob[rg.payload + e]), scales[e / sh.Hd()]);
    } else {
      const size_t layer = s / 2, kv = s % 2;
      const size_t gi = layer * (g.k + g.v) + (kv == 0 ? 0 : g.k) + Int4GroupOf(g, sh, kv, i);
      const float scale = im::Int4GroupScale(scales[s], blob[rg.meta + gi]);
      x = im::DequantizeInt4(ReadNibble(blob + rg.payload, e),
                             ReadNibble(blob + rg.meta + rg.groups, gi), scale);
    }
    dst.Store(e, x);
  }
}

inline unsigned DecodeGrid(size_t n) {
  return static_cast<unsigned>(
      std::min<size_t>((n + kThreads - 1) / kThreads, size_t{65535} * 4));
}

// Launches the encoder of `codec` over sections [section0, section0 +
// sections) reading through `src`. The int4 zeroed region is the caller's.
template <typename Src>
void LaunchEncode(CodecId codec, const Src& src, const KvShape& shape, uint64_t fingerprint,
                  uint8_t* out, size_t section0, size_t sections, cudaStream_t st) {
  const Shape sh = ShapeFor(shape);
  const Regions rg = RegionsFor(codec, shape);
  const BlobHeader header = MakeHeader(codec, shape, fingerprint);
  switch (codec) {
    case CodecId::kFp8E4m3:
      Fp8Encode<Src><<<static_cast<unsigned>(sections * sh.h), kThreads, 0, st>>>(
          src, out, sh, rg, header, section0);
      break;
    case CodecId::kInt8:
      Int8Encode<Src><<<static_cast<unsigned>(sections * sh.t), kThreads, 0, st>>>(
          src, out, sh, rg, header, section0);
      break;
    case CodecId::kInt4:
      Int4Encode<Src><<<static_cast<unsigned>(sections), kThreads, 0, st>>>(
          src, out, sh, rg, Int4DimsFor(shape), header, section0);
      break;
    case CodecId::kNone: break;
  }
}

// Zeroes the or-merged part of an int4 blob (zero points and payload).
inline void ZeroInt4Nibbles(const KvShape& shape, uint8_t* out, cudaStream_t st) {
  const Regions rg = RegionsFor(CodecId::kInt4, shape);
  const size_t total = GeometryFor(CodecId::kInt4, shape).total();
  cudaMemsetAsync(out + rg.meta + rg.groups, 0, total - rg.meta - rg.groups, st);
}

}  // namespace
}  // namespace kvf::kcore

#endif  // KVF_KERNELS_CUDA_DEVICE_COMMON_CUH_
