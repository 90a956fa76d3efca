// CUDA twins of kernels/internal/cpu_codecs.cc; see kernels/cuda_codecs.h.
// Simple, correct kernels: one thread block per scale group for the
// reductions (fp8: per (layer, K|V, head); int8: per (layer, K|V, token);
// int4: per (layer, K|V) section), element-parallel decode. Nibbles shared
// between threads or blocks are merged with atomicOr into a zeroed region.
#include <cuda_runtime.h>

#include "absl/strings/str_cat.h"
#include "kernels/cuda_codecs.h"
#include "kernels/internal/codec_format.h"
#include "kernels/internal/codec_math.h"

namespace kvf {
namespace {

using internal::BlobGeometry;
using internal::BlobHeader;

constexpr int kThreads = 256;

struct Fp16Dev {
  __device__ static float Load(const void* p, size_t i) {
    return internal::HalfToFloat(static_cast<const uint16_t*>(p)[i]);
  }
  __device__ static void Store(void* p, size_t i, float v) {
    static_cast<uint16_t*>(p)[i] = internal::FloatToHalf(v);
  }
};
struct Bf16Dev {
  __device__ static float Load(const void* p, size_t i) {
    return internal::Bf16ToFloat(static_cast<const uint16_t*>(p)[i]);
  }
  __device__ static void Store(void* p, size_t i, float v) {
    static_cast<uint16_t*>(p)[i] = internal::FloatToBf16(v);
  }
};
struct Fp32Dev {
  __device__ static float Load(const void* p, size_t i) { return static_cast<const float*>(p)[i]; }
  __device__ static void Store(void* p, size_t i, float v) { static_cast<float*>(p)[i] = v; }
};

// Shape of a layout, passed by value to kernels.
struct Shape {
  size_t t, h, d;
  __device__ size_t Hd() const { return h * d; }
  __device__ size_t Section() const { return t * h * d; }
};

struct Regions {  // byte offsets of the blob's sections
  size_t scales, meta, payload;
  size_t groups;  // int4: total groups (codes, then zero-point nibbles)
};

__device__ float BlockMax(float v, float* shared) {
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

__device__ void OrNibble(uint8_t* base, size_t index, uint8_t q) {
  const uintptr_t addr = reinterpret_cast<uintptr_t>(base) + index / 2;
  const unsigned shift = static_cast<unsigned>((addr & 3) * 8 + (index & 1) * 4);
  atomicOr(reinterpret_cast<unsigned int*>(addr & ~uintptr_t{3}), static_cast<unsigned>(q) << shift);
}

__device__ uint8_t ReadNibble(const uint8_t* base, size_t index) {
  return static_cast<uint8_t>((base[index / 2] >> ((index & 1) * 4)) & 0x0f);
}

__device__ void MaybeWriteHeader(uint8_t* out, const BlobHeader& header) {
  if (blockIdx.x == 0 && threadIdx.x < sizeof(BlobHeader)) {
    out[threadIdx.x] = reinterpret_cast<const uint8_t*>(&header)[threadIdx.x];
  }
}

// ---- fp8: grid = sections * H blocks.
template <typename E>
__global__ void Fp8Encode(const void* in, uint8_t* out, Shape sh, Regions rg, BlobHeader header) {
  __shared__ float shared[kThreads];
  MaybeWriteHeader(out, header);
  const size_t s = blockIdx.x / sh.h, h = blockIdx.x % sh.h;
  const size_t base = s * sh.Section() + h * sh.d;
  float m = 0.0f;
  for (size_t i = threadIdx.x; i < sh.t * sh.d; i += blockDim.x) {
    const size_t e = base + (i / sh.d) * sh.Hd() + i % sh.d;
    m = internal::MaxIgnoringNan(m, internal::AbsF(E::Load(in, e)));
  }
  const float scale = internal::Fp8Scale(BlockMax(m, shared));
  if (threadIdx.x == 0) reinterpret_cast<float*>(out + rg.scales)[blockIdx.x] = scale;
  const float inv = internal::Reciprocal(scale);
  for (size_t i = threadIdx.x; i < sh.t * sh.d; i += blockDim.x) {
    const size_t e = base + (i / sh.d) * sh.Hd() + i % sh.d;
    out[rg.payload + e] = internal::FloatToE4m3(internal::MulRn(E::Load(in, e), inv));
  }
}

// ---- int8: grid = sections * T blocks (one per token row).
template <typename E>
__global__ void Int8Encode(const void* in, uint8_t* out, Shape sh, Regions rg, BlobHeader header) {
  __shared__ float shared[kThreads];
  MaybeWriteHeader(out, header);
  const size_t row = blockIdx.x * sh.Hd();
  float m = 0.0f;
  for (size_t i = threadIdx.x; i < sh.Hd(); i += blockDim.x) {
    m = internal::MaxIgnoringNan(m, internal::AbsF(E::Load(in, row + i)));
  }
  const float scale = internal::Int8Scale(BlockMax(m, shared));
  if (threadIdx.x == 0) reinterpret_cast<float*>(out + rg.scales)[blockIdx.x] = scale;
  const float inv = internal::Reciprocal(scale);
  for (size_t i = threadIdx.x; i < sh.Hd(); i += blockDim.x) {
    out[rg.payload + row + i] =
        static_cast<uint8_t>(internal::QuantizeInt8(E::Load(in, row + i), inv));
  }
}

// ---- int4: grid = sections blocks. Groups as in codec_format.h.
struct Int4Dims {
  size_t gt, gd, k, v;
};

__device__ void Int4GroupRange(const Int4Dims& g, const Shape& sh, size_t kv, size_t gi,
                               size_t* first, size_t* stride, size_t* count) {
  if (kv == 0) {  // gi = (h * D + d) * gt + tg: tokens of one channel
    const size_t j = gi / g.gt, tg = gi % g.gt;
    const size_t t0 = tg * internal::kInt4GroupSize;
    *first = t0 * sh.Hd() + j;
    *stride = sh.Hd();
    *count = min(sh.t - t0, size_t{internal::kInt4GroupSize});
  } else {  // gi = (t * H + h) * gd + dg: channels of one token row
    const size_t r = gi / g.gd, dg = gi % g.gd;
    const size_t d0 = dg * internal::kInt4GroupSize;
    *first = r * sh.d + d0;
    *stride = 1;
    *count = min(sh.d - d0, size_t{internal::kInt4GroupSize});
  }
}

__device__ size_t Int4GroupOf(const Int4Dims& g, const Shape& sh, size_t kv, size_t i) {
  const size_t t = i / sh.Hd(), j = i % sh.Hd();
  if (kv == 0) return j * g.gt + t / internal::kInt4GroupSize;
  return (t * sh.h + j / sh.d) * g.gd + (j % sh.d) / internal::kInt4GroupSize;
}

template <typename E>
__device__ void Int4Range(const void* in, size_t base, size_t first, size_t stride, size_t count,
                          float* lo, float* hi) {
  float l = 0.0f, h = 0.0f;
  for (size_t c = 0; c < count; ++c) {
    const float x = E::Load(in, base + first + c * stride);
    l = x < l ? x : l;
    h = x > h ? x : h;
  }
  *lo = l;
  *hi = h;
}

template <typename E>
__global__ void Int4Encode(const void* in, uint8_t* out, Shape sh, Regions rg, Int4Dims g,
                           BlobHeader header) {
  __shared__ float shared[kThreads];
  MaybeWriteHeader(out, header);
  const size_t s = blockIdx.x, layer = s / 2, kv = s % 2;
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
    Int4Range<E>(in, base, first, stride, count, &lo, &hi);
    m = internal::MaxIgnoringNan(m, internal::Int4NeededScale(lo, hi));
  }
  const float super = internal::Int4SuperScale(BlockMax(m, shared));
  if (threadIdx.x == 0) reinterpret_cast<float*>(out + rg.scales)[s] = super;
  const float super_inv = internal::Reciprocal(super);
  for (size_t gi = threadIdx.x; gi < ng; gi += blockDim.x) {
    Int4GroupRange(g, sh, kv, gi, &first, &stride, &count);
    Int4Range<E>(in, base, first, stride, count, &lo, &hi);
    const uint8_t code = internal::Int4ScaleCode(internal::Int4NeededScale(lo, hi), super_inv);
    codes[gbase + gi] = code;
    const float inv = internal::Reciprocal(internal::Int4GroupScale(super, code));
    OrNibble(zeros, gbase + gi, internal::Int4ZeroPoint(lo, inv));
  }
  __threadfence();
  __syncthreads();
  // Codes and zero points written above (zero points by atomics in L2, some
  // by other blocks) are read through L2 (__ldcg), never from a stale L1 line.
  for (size_t i = threadIdx.x; i < sh.Section(); i += blockDim.x) {
    const size_t gi = Int4GroupOf(g, sh, kv, i);
    const float inv =
        internal::Reciprocal(internal::Int4GroupScale(super, __ldcg(codes + gbase + gi)));
    const uint8_t zero = static_cast<uint8_t>(
        (__ldcg(zeros + (gbase + gi) / 2) >> (((gbase + gi) & 1) * 4)) & 0x0f);
    OrNibble(out + rg.payload, base + i,
             internal::QuantizeInt4(E::Load(in, base + i), inv, zero));
  }
}

// ---- decode: header check, then element-parallel kernels.
__global__ void CheckHeader(const uint8_t* blob, BlobHeader want, uint32_t* error) {
  __shared__ int bad;
  if (threadIdx.x == 0) bad = 0;
  __syncthreads();
  if (threadIdx.x < sizeof(BlobHeader) &&
      blob[threadIdx.x] != reinterpret_cast<const uint8_t*>(&want)[threadIdx.x]) {
    bad = 1;
  }
  __syncthreads();
  if (threadIdx.x == 0) *error = bad;
}

template <typename E>
__global__ void Decode(CodecId codec, const uint8_t* blob, void* out, Shape sh, Regions rg,
                       Int4Dims g, size_t n, const uint32_t* error) {
  if (*error != 0) return;
  const float* scales = reinterpret_cast<const float*>(blob + rg.scales);
  for (size_t e = blockIdx.x * size_t{blockDim.x} + threadIdx.x; e < n;
       e += size_t{gridDim.x} * blockDim.x) {
    const size_t s = e / sh.Section(), i = e % sh.Section();
    float x;
    if (codec == CodecId::kFp8E4m3) {
      const size_t h = (i % sh.Hd()) / sh.d;
      x = internal::MulRn(internal::E4m3ToFloat(blob[rg.payload + e]), scales[s * sh.h + h]);
    } else if (codec == CodecId::kInt8) {
      x = internal::DequantizeInt8(static_cast<int8_t>(blob[rg.payload + e]),
                                   scales[e / sh.Hd()]);
    } else {
      const size_t layer = s / 2, kv = s % 2;
      const size_t gi = layer * (g.k + g.v) + (kv == 0 ? 0 : g.k) + Int4GroupOf(g, sh, kv, i);
      const float scale = internal::Int4GroupScale(scales[s], blob[rg.meta + gi]);
      x = internal::DequantizeInt4(ReadNibble(blob + rg.payload, e),
                                   ReadNibble(blob + rg.meta + rg.groups, gi), scale);
    }
    E::Store(out, e, x);
  }
}

absl::Status LaunchStatus(const char* what, const KvLayout& layout) {
  const cudaError_t err = cudaGetLastError();
  if (err == cudaSuccess) return absl::OkStatus();
  return absl::InternalError(absl::StrCat(what, " for ", layout.DebugString(), ": ",
                                          cudaGetErrorName(err), ": ", cudaGetErrorString(err)));
}

template <typename F>
void ForDType(DType dtype, F&& f) {
  switch (dtype) {
    case DType::kFp16: f(Fp16Dev{}); break;
    case DType::kBf16: f(Bf16Dev{}); break;
    case DType::kFp32: f(Fp32Dev{}); break;
  }
}

Regions RegionsFor(CodecId codec, const KvLayout& layout, const BlobGeometry& geo) {
  const internal::Int4Groups g = internal::Int4GroupsFor(layout);
  return {geo.scales_offset(), geo.meta_offset(), geo.payload_offset(),
          codec == CodecId::kInt4 ? g.per_layer() * layout.num_layers : 0};
}

Int4Dims Int4DimsFor(const KvLayout& layout) {
  const internal::Int4Groups g = internal::Int4GroupsFor(layout);
  return {g.gt, g.gd, g.k, g.v};
}

}  // namespace

absl::Status EncodeOnDevice(CodecId codec, const KvLayout& layout, const void* d_block,
                            void* d_out, size_t out_bytes, void* stream) {
  if (absl::Status s = layout.Validate(); !s.ok()) return s;
  const BlobGeometry geo = internal::GeometryFor(codec, layout);
  const size_t need = codec == CodecId::kNone ? layout.BytesPerBlock() : geo.total();
  if (out_bytes < need) {
    return absl::InvalidArgumentError(
        absl::StrCat("EncodeOnDevice: output is ", out_bytes, " bytes, needs ", need));
  }
  cudaStream_t st = static_cast<cudaStream_t>(stream);
  if (codec == CodecId::kNone) {
    cudaMemcpyAsync(d_out, d_block, need, cudaMemcpyDeviceToDevice, st);
    return LaunchStatus("cudaMemcpyAsync", layout);
  }
  const Shape sh{layout.block_tokens, layout.num_kv_heads, layout.head_dim};
  const Regions rg = RegionsFor(codec, layout, geo);
  const BlobHeader header = internal::MakeHeader(codec, layout);
  uint8_t* out = static_cast<uint8_t*>(d_out);
  const unsigned sections = 2 * layout.num_layers;
  ForDType(layout.dtype, [&](auto elem) {
    using E = decltype(elem);
    switch (codec) {
      case CodecId::kFp8E4m3:
        Fp8Encode<E><<<sections * layout.num_kv_heads, kThreads, 0, st>>>(d_block, out, sh, rg,
                                                                           header);
        break;
      case CodecId::kInt8:
        Int8Encode<E><<<sections * layout.block_tokens, kThreads, 0, st>>>(d_block, out, sh, rg,
                                                                            header);
        break;
      case CodecId::kInt4:
        // Zero points and payload are or-ed nibble by nibble: start from zero.
        cudaMemsetAsync(out + rg.meta + rg.groups, 0, geo.total() - rg.meta - rg.groups, st);
        Int4Encode<E><<<sections, kThreads, 0, st>>>(d_block, out, sh, rg,
                                                     Int4DimsFor(layout), header);
        break;
      case CodecId::kNone: break;
    }
  });
  return LaunchStatus("codec encode kernel", layout);
}

absl::Status DecodeOnDevice(CodecId codec, const KvLayout& layout, const void* d_encoded,
                            size_t encoded_bytes, void* d_block, size_t block_bytes,
                            uint32_t* d_error, void* stream) {
  if (absl::Status s = layout.Validate(); !s.ok()) return s;
  if (block_bytes < layout.BytesPerBlock()) {
    return absl::InvalidArgumentError(absl::StrCat("DecodeOnDevice: output is ", block_bytes,
                                                   " bytes, needs ", layout.BytesPerBlock()));
  }
  const BlobGeometry geo = internal::GeometryFor(codec, layout);
  const size_t need = codec == CodecId::kNone ? layout.BytesPerBlock() : geo.total();
  if (encoded_bytes < need) {
    return absl::DataLossError(absl::StrCat("DecodeOnDevice: encoded block truncated: ",
                                            encoded_bytes, " bytes, needs ", need));
  }
  cudaStream_t st = static_cast<cudaStream_t>(stream);
  if (codec == CodecId::kNone) {
    cudaMemcpyAsync(d_block, d_encoded, need, cudaMemcpyDeviceToDevice, st);
    return LaunchStatus("cudaMemcpyAsync", layout);
  }
  if (d_error == nullptr) {
    return absl::InvalidArgumentError("DecodeOnDevice: d_error is required for this codec");
  }
  const uint8_t* blob = static_cast<const uint8_t*>(d_encoded);
  CheckHeader<<<1, 64, 0, st>>>(blob, internal::MakeHeader(codec, layout), d_error);
  const Shape sh{layout.block_tokens, layout.num_kv_heads, layout.head_dim};
  const Regions rg = RegionsFor(codec, layout, geo);
  const size_t n = layout.ElementsPerBlock();
  const unsigned blocks = static_cast<unsigned>(std::min<size_t>((n + kThreads - 1) / kThreads, 65535));
  ForDType(layout.dtype, [&](auto elem) {
    Decode<decltype(elem)><<<blocks, kThreads, 0, st>>>(codec, blob, d_block, sh, rg,
                                                        Int4DimsFor(layout), n, d_error);
  });
  return LaunchStatus("codec decode kernel", layout);
}

}  // namespace kvf
