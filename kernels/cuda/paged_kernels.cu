// Paged gather/scatter on the device (kernels/core/cuda_ops.h).
//
// kNone: CopyPagedRows moves whole rows of D elements. A launch covers up to
// kMaxLayersPerLaunch layers; grid.z is the page of the block, grid.y the
// (layer, K|V) pair, grid.x tiles the page's page_size * H rows, whose
// canonical destination is one contiguous run. Each thread moves kUnroll
// vectors (16 bytes when every address and stride allows), all loads issued
// before the first store. Other codecs: the encoders/decoders of
// encode_kernels.cuh / decode_kernels.cuh read/write the pages through
// PagedSrc/PagedDst (fused: no intermediate block).
#include <algorithm>
#include <cstring>
#include <string>

#include "kernels/cuda/decode_kernels.cuh"
#include "kernels/cuda/device_common.cuh"
#include "kernels/cuda/encode_kernels.cuh"

namespace kvf::kcore {
namespace {

constexpr int kUnroll = 4;

template <typename V, bool kScatter>
__global__ void __launch_bounds__(kThreads)
    CopyPagedRows(const __grid_constant__ PagedArgs a, char* block, uint32_t heads,
                  uint32_t tokens, uint32_t row_vecs, uint32_t elem_size) {
  const uint32_t l = blockIdx.y >> 1, kv = blockIdx.y & 1;
  const uint32_t p = blockIdx.z;
  const uint32_t seg_vecs = a.page_size * heads * row_vecs;
  const uint64_t page = static_cast<uint64_t>(a.page_ids[p]);
  char* const base = a.bases[l];
  // The page's rows in the block: section (layer, kv), tokens p * page_size...
  V* const seg = reinterpret_cast<V*>(block) +
                 ((static_cast<size_t>(a.layer0 + l) * 2 + kv) * tokens +
                  static_cast<size_t>(p) * a.page_size) *
                     heads * row_vecs;
  const uint32_t first = blockIdx.x * (kThreads * kUnroll) + threadIdx.x;
  V* page_ptr[kUnroll];
  V v[kUnroll];
#pragma unroll
  for (int k = 0; k < kUnroll; ++k) {
    const uint32_t c = first + k * kThreads;
    page_ptr[k] = nullptr;
    if (c < seg_vecs) {
      const uint32_t row = c / row_vecs, w = c - row * row_vecs;
      const uint32_t slot = row / heads, h = row - slot * heads;
      const uint64_t off = page * a.page_stride + kv * a.kv_stride + slot * a.token_stride +
                           h * a.head_stride;
      page_ptr[k] = reinterpret_cast<V*>(base + off * elem_size) + w;
      v[k] = kScatter ? seg[c] : *page_ptr[k];
    }
  }
#pragma unroll
  for (int k = 0; k < kUnroll; ++k) {
    if (page_ptr[k] != nullptr) {
      if (kScatter) {
        *page_ptr[k] = v[k];
      } else {
        seg[first + k * kThreads] = v[k];
      }
    }
  }
}

// Largest access width (16, 8, 4 or 2 bytes) dividing every byte address and
// stride the copy touches.
size_t VectorBytes(const PagedKvDesc& d, const void* block) {
  const size_t es = ElemSize(d.dtype);
  uint64_t bits = reinterpret_cast<uintptr_t>(block) | (uint64_t{d.head_dim} * es) |
                  (d.page_stride * es) | (d.kv_stride * es) | (d.token_stride * es) |
                  (d.head_stride * es);
  for (void* b : d.layer_bases) bits |= reinterpret_cast<uintptr_t>(b);
  for (size_t w : {16, 8, 4}) {
    if ((bits & (w - 1)) == 0) return w;
  }
  return 2;
}

PagedArgs ArgsFor(const PagedKvDesc& d, const int32_t* page_ids, size_t n, uint32_t layer0,
                  uint32_t layers) {
  PagedArgs a{};
  a.page_stride = d.page_stride;
  a.kv_stride = d.kv_stride;
  a.token_stride = d.token_stride;
  a.head_stride = d.head_stride;
  a.page_size = d.page_size;
  a.layer0 = layer0;
  a.layers = layers;
  a.num_pages = static_cast<uint32_t>(n);
  a.div_page = FastDiv(d.page_size);
  for (uint32_t i = 0; i < layers; ++i) a.bases[i] = static_cast<char*>(d.layer_bases[layer0 + i]);
  std::memcpy(a.page_ids, page_ids, n * sizeof(int32_t));
  return a;
}

template <bool kScatter>
void LaunchCopy(const PagedKvDesc& d, const KvShape& b, const PagedArgs& a, char* block,
                size_t vec, cudaStream_t st) {
  const uint32_t es = static_cast<uint32_t>(ElemSize(b.dtype));
  const uint32_t row_vecs = static_cast<uint32_t>(b.head_dim * es / vec);
  const uint64_t seg_vecs = uint64_t{d.page_size} * b.num_kv_heads * row_vecs;
  const dim3 grid(static_cast<unsigned>((seg_vecs + kThreads * kUnroll - 1) / (kThreads * kUnroll)),
                  2 * a.layers, a.num_pages);
  switch (vec) {
    case 16:
      CopyPagedRows<uint4, kScatter><<<grid, kThreads, 0, st>>>(a, block, b.num_kv_heads,
                                                                 b.block_tokens, row_vecs, es);
      break;
    case 8:
      CopyPagedRows<uint2, kScatter><<<grid, kThreads, 0, st>>>(a, block, b.num_kv_heads,
                                                                 b.block_tokens, row_vecs, es);
      break;
    case 4:
      CopyPagedRows<uint32_t, kScatter><<<grid, kThreads, 0, st>>>(a, block, b.num_kv_heads,
                                                                    b.block_tokens, row_vecs, es);
      break;
    default:
      CopyPagedRows<uint16_t, kScatter><<<grid, kThreads, 0, st>>>(a, block, b.num_kv_heads,
                                                                    b.block_tokens, row_vecs, es);
      break;
  }
}

// Whether every row of the pages is 16-byte aligned and D % 8 == 0 (the
// codec kernels' item accesses).
bool PagesAligned16(const PagedKvDesc& d) {
  const size_t es = ElemSize(d.dtype);
  uint64_t bits = (d.page_stride * es) | (d.kv_stride * es) | (d.token_stride * es) |
                  (d.head_stride * es);
  for (void* b : d.layer_bases) bits |= reinterpret_cast<uintptr_t>(b);
  return d.head_dim % kItem == 0 && (bits & 15) == 0;
}

// One page's rows must fit the 32-bit vector index of CopyPagedRows.
Result CheckRowIndex(const PagedKvDesc& d) {
  const uint64_t seg = uint64_t{d.page_size} * d.num_kv_heads * d.head_dim;
  if (seg >= (uint64_t{1} << 31)) {
    return Result::InvalidArgument("paged transfer: a page holds " + std::to_string(seg) +
                                   " elements per layer and K|V (max 2^31)");
  }
  return Result::Ok();
}

}  // namespace

Result GatherOnDevice(const PagedKvDesc& src, const KvShape& block, const int32_t* page_ids,
                      size_t num_page_ids, CodecId codec, uint64_t fingerprint, void* d_out,
                      size_t out_bytes, cudaStream_t stream) {
  if (Result r = ValidatePagedTransfer(src, block, page_ids, num_page_ids, false); !r.ok()) {
    return r;
  }
  if (Result r = CheckRowIndex(src); !r.ok()) return r;
  const size_t need = StoredSize(codec, block);
  if (d_out == nullptr || out_bytes < need) {
    return Result::InvalidArgument("GatherOnDevice: output is " + std::to_string(out_bytes) +
                                   " bytes, needs " + std::to_string(need));
  }
  if (codec != CodecId::kNone) {
    if (Result r = CheckDeviceIndexRange(block, "GatherOnDevice"); !r.ok()) return r;
  }
  uint8_t* out = static_cast<uint8_t*>(d_out);
  const size_t vec = VectorBytes(src, d_out);
  const bool rows16 = PagesAligned16(src);
  for (uint32_t layer0 = 0; layer0 < block.num_layers; layer0 += kMaxLayersPerLaunch) {
    const uint32_t layers = std::min(kMaxLayersPerLaunch, block.num_layers - layer0);
    const PagedArgs a = ArgsFor(src, page_ids, num_page_ids, layer0, layers);
    if (codec == CodecId::kNone) {
      LaunchCopy<false>(src, block, a, reinterpret_cast<char*>(out), vec, stream);
    } else {
      ForDType(block.dtype, [&](auto elem) {
        using E = decltype(elem);
        LaunchEncode(codec, PagedSrc<E>{a, rows16}, block, fingerprint, out, 2 * layer0,
                     2 * layers, stream);
      });
    }
    if (Result r = LaunchResult("GatherOnDevice: gather kernel"); !r.ok()) return r;
  }
  return Result::Ok();
}

Result ScatterOnDevice(const PagedKvDesc& dst, const KvShape& block, const int32_t* page_ids,
                       size_t num_page_ids, CodecId codec, uint64_t fingerprint,
                       const void* d_in, size_t in_bytes, uint32_t* d_error,
                       cudaStream_t stream) {
  if (Result r = ValidatePagedTransfer(dst, block, page_ids, num_page_ids, true); !r.ok()) {
    return r;
  }
  if (Result r = CheckRowIndex(dst); !r.ok()) return r;
  if (d_in == nullptr) return Result::InvalidArgument("ScatterOnDevice: input is null");
  const uint8_t* in = static_cast<const uint8_t*>(d_in);
  DecodeArgs dec;
  if (codec == CodecId::kNone) {
    const size_t need = block.BytesPerBlock();
    if (in_bytes < need) {
      return Result::DataLoss("ScatterOnDevice: stored block truncated: " +
                              std::to_string(in_bytes) + " bytes, needs " + std::to_string(need));
    }
  } else {
    if (Result r = DecodeArgsFor(codec, block, fingerprint, d_in, in_bytes, "ScatterOnDevice",
                                 &dec);
        !r.ok()) {
      return r;
    }
    if (d_error == nullptr) {
      return Result::InvalidArgument("ScatterOnDevice: d_error is required for this codec");
    }
    if (Result r = CheckDeviceIndexRange(block, "ScatterOnDevice"); !r.ok()) return r;
  }
  const size_t vec = VectorBytes(dst, d_in);
  const bool rows16 = PagesAligned16(dst);
  for (uint32_t layer0 = 0; layer0 < block.num_layers; layer0 += kMaxLayersPerLaunch) {
    const uint32_t layers = std::min(kMaxLayersPerLaunch, block.num_layers - layer0);
    const PagedArgs a = ArgsFor(dst, page_ids, num_page_ids, layer0, layers);
    if (codec == CodecId::kNone) {
      LaunchCopy<true>(dst, block, a, const_cast<char*>(reinterpret_cast<const char*>(in)), vec,
                       stream);
    } else {
      ForDType(block.dtype, [&](auto elem) {
        using E = decltype(elem);
        LaunchDecode(codec, PagedDst<E>{a, rows16}, in, dec, 2 * layer0, 2 * layers, d_error,
                     stream);
      });
    }
    if (Result r = LaunchResult("ScatterOnDevice: scatter kernel"); !r.ok()) return r;
  }
  return Result::Ok();
}

}  // namespace kvf::kcore
