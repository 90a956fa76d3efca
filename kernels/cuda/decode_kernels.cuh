// Codec decoders on the device, templated on a row accessor (CanonDst,
// PagedDst) so that decode-on-scatter runs the very code of DecodeOnDevice.
//
// One launch, one thread per item (8 elements of a row). The blob's header
// lives in device memory, so every thread block first compares it with the
// headers the decoder accepts (what encoders write now for the codec, shape
// and fingerprint, and the version-1 header of an older encoder): a block
// that finds neither writes nothing; block 0 reports the outcome in
// `*error` (0 accepted, 1 not). The version so found picks the sections'
// geometry, so no access leaves `header + sections` of that version, which
// the host checked fit the input, whatever the other bytes say.
#ifndef KVF_KERNELS_CUDA_DECODE_KERNELS_CUH_
#define KVF_KERNELS_CUDA_DECODE_KERNELS_CUH_

#include "kernels/cuda/device_common.cuh"

namespace kvf::kcore {
namespace {

struct DecodeArgs {
  Shape sh;
  BlobHeader want;     // what encoders write now
  BlobHeader want_v1;  // version 1
  BlobLayout cur, v1;  // their sections
  Int4Meta i4;
  bool accept_cur;  // the input holds the current version's sections
  bool accept_v1;   // another version than the current, and the input holds it
  bool blob4;       // the blob is 4-byte aligned
  uint32_t item0;   // first item of this launch (items count from the block's first)
  uint32_t items;   // items of this launch
};

template <CodecId kCodec, typename Dst>
__global__ void __launch_bounds__(kThreads)
    DecodeKernel(const __grid_constant__ Dst dst, const uint8_t* blob,
                 const __grid_constant__ DecodeArgs a, uint32_t* error) {
  using E = typename Dst::Elem;
  const uint32_t tid = threadIdx.x;
  // E4M3 values (fp8 codes, int4 group scale codes) from a table of the
  // shared conversion, so bit-identical to calling it per element; the
  // header check's barriers publish it.
  __shared__ float e4m3[256];
  if constexpr (kCodec != CodecId::kInt8) {
    for (uint32_t c = tid; c < 256; c += blockDim.x) {
      e4m3[c] = im::E4m3ToFloat(static_cast<uint8_t>(c));
    }
  }
  bool diff = false, diff_v1 = false;
  if (tid < kBlobHeaderSize) {
    const uint8_t b = blob[tid];
    diff = b != reinterpret_cast<const uint8_t*>(&a.want)[tid];
    diff_v1 = b != reinterpret_cast<const uint8_t*>(&a.want_v1)[tid];
  }
  const bool same = __syncthreads_or(diff) == 0;
  const bool same_v1 = __syncthreads_or(diff_v1) == 0;
  const bool is_cur = a.accept_cur && same;
  const bool is_v1 = a.accept_v1 && same_v1;
  if (blockIdx.x == 0 && tid == 0) *error = is_cur || is_v1 ? 0u : 1u;
  if (!is_cur && !is_v1) return;
  const BlobLayout bl = is_cur ? a.cur : a.v1;
  const bool v2 = bl.version == kBlobVersion2;

  const uint32_t local = blockIdx.x * blockDim.x + tid;
  if (local >= a.items) return;
  const Shape& sh = a.sh;
  const uint32_t it = a.item0 + local;
  const uint32_t r = sh.div_kd.Div(it), k = it - r * sh.kd;  // row (s, t, h), item
  const uint32_t st = sh.div_h.Div(r), h = r - st * sh.h;
  const uint32_t s = sh.div_t.Div(st), t = st - s * sh.t;
  const uint32_t l = s >> 1, kv = s & 1;
  const uint32_t d0 = k * kItem, n = sh.ItemLen(k);
  const size_t e0 = size_t{r} * sh.d + d0;  // canonical index of the item's first element
  const size_t j0 = size_t{h} * sh.d + d0;  // its channel in the layer's H*D
  const uint8_t* scales = blob + bl.scales;
  const uint8_t* meta = blob + bl.meta;
  float x[kItem];

  if constexpr (kCodec == CodecId::kFp8E4m3) {
    uint8_t c[kItem];
    LoadCodes(blob + bl.payload + e0, n, bl.codes_vec, c);
    const float scale = LoadF32(scales + (size_t{s} * sh.h + h) * 4, a.blob4);
    if (v2 && kv == 0) {  // K centred per channel: meta [L][H*D] bf16
      const uint8_t* centre = meta + (size_t{l} * sh.Hd() + j0) * 2;
#pragma unroll
      for (uint32_t i = 0; i < kItem; ++i) {
        const float cen = i < n ? im::Bf16ToFloat(LoadU16(centre + 2 * i, a.blob4)) : 0.0f;
        x[i] = im::AddRn(cen, im::MulRn(e4m3[c[i]], scale));
      }
    } else {
#pragma unroll
      for (uint32_t i = 0; i < kItem; ++i) x[i] = im::MulRn(e4m3[c[i]], scale);
    }
  } else if constexpr (kCodec == CodecId::kInt8) {
    uint8_t c[kItem];
    LoadCodes(blob + bl.payload + e0, n, bl.codes_vec, c);
    if (v2 && kv == 0) {  // K: meta [L][centres, scales][H*D] bf16
      const uint8_t* centre = meta + (size_t{l} * 2 * sh.Hd() + j0) * 2;
      const uint8_t* scale = centre + size_t{sh.Hd()} * 2;
#pragma unroll
      for (uint32_t i = 0; i < kItem; ++i) {
        const float cen = i < n ? im::Bf16ToFloat(LoadU16(centre + 2 * i, a.blob4)) : 0.0f;
        const float sc = i < n ? im::Bf16ToFloat(LoadU16(scale + 2 * i, a.blob4)) : 0.0f;
        x[i] = im::AddRn(cen, im::DequantizeInt8(static_cast<int8_t>(c[i]), sc));
      }
    } else {  // v1: scales [L][2][T]; v2 V: scales [L][T]
      const size_t index = v2 ? size_t{l} * sh.t + t : size_t{s} * sh.t + t;
      const float scale = LoadF32(scales + index * 4, a.blob4);
#pragma unroll
      for (uint32_t i = 0; i < kItem; ++i) {
        x[i] = im::DequantizeInt8(static_cast<int8_t>(c[i]), scale);
      }
    }
  } else {  // int4
    const Int4Meta& m = a.i4;
    const uint8_t* codes = meta;
    const uint8_t* zeros = meta + m.groups;
    const uint8_t* payload = blob + bl.payload;
    uint8_t q[kItem];
    if (bl.codes_vec) {
      const uint32_t w = *reinterpret_cast<const uint32_t*>(payload + e0 / 2);
#pragma unroll
      for (uint32_t i = 0; i < kItem; ++i) q[i] = static_cast<uint8_t>((w >> (4 * i)) & 0xfu);
    } else {
#pragma unroll
      for (uint32_t i = 0; i < kItem; ++i) q[i] = i < n ? ReadNibble(payload, e0 + i) : 0;
    }
    const float super = LoadF32(scales + size_t{s} * 4, a.blob4);
    const size_t gbase = size_t{l} * (m.gk + m.gv);
    if (kv == 0) {  // group (channel, token group): (j * gt + tg)
      const uint32_t tg = t / kInt4GroupSize;
#pragma unroll
      for (uint32_t i = 0; i < kItem; ++i) {
        if (i < n) {
          const size_t g = gbase + (j0 + i) * m.gt + tg;
          const float scale = im::MulRn(super, e4m3[codes[g]]);  // == Int4GroupScale
          x[i] = im::DequantizeInt4(q[i], ReadNibble(zeros, g), scale);
        } else {
          x[i] = 0.0f;
        }
      }
    } else {  // group (token row, 32 channels): one for the whole item
      const size_t g = gbase + m.gk + size_t{r - s * sh.t * sh.h} * m.gd + d0 / kInt4GroupSize;
      const float scale = im::MulRn(super, e4m3[codes[g]]);  // == Int4GroupScale
      const uint8_t zero = ReadNibble(zeros, g);
#pragma unroll
      for (uint32_t i = 0; i < kItem; ++i) x[i] = im::DequantizeInt4(q[i], zero, scale);
    }
  }
  StoreItem<E>(dst.Row(s, t, h), d0, n, dst.vec, x);
}

// What a decode accepts from an input of `blob_bytes` bytes at `blob`.
// DATA_LOSS when it is shorter than every accepted version's blob.
inline Result DecodeArgsFor(CodecId codec, const KvShape& shape, uint64_t fingerprint,
                            const void* blob, size_t blob_bytes, const char* what,
                            DecodeArgs* a) {
  *a = DecodeArgs{};
  a->sh = ShapeFor(shape);
  const uint16_t version = BlobVersionFor(codec, shape);
  a->want = MakeHeaderForVersion(codec, shape, fingerprint, version);
  a->want_v1 = MakeHeaderForVersion(codec, shape, fingerprint, kBlobVersion1);
  a->cur = LayoutFor(codec, shape, version, blob);
  a->v1 = LayoutFor(codec, shape, kBlobVersion1, blob);
  a->i4 = Int4MetaFor(shape);
  a->accept_cur = a->cur.total <= blob_bytes;
  a->accept_v1 = version != kBlobVersion1 && a->v1.total <= blob_bytes;
  a->blob4 = reinterpret_cast<uintptr_t>(blob) % 4 == 0;
  if (!a->accept_cur && !a->accept_v1) {
    const size_t need = version != kBlobVersion1 ? std::min(a->cur.total, a->v1.total)
                                                 : a->cur.total;
    return Result::DataLoss(std::string(what) + ": encoded block truncated: " +
                            std::to_string(blob_bytes) + " bytes, needs " +
                            std::to_string(need));
  }
  return Result::Ok();
}

// Enqueues the decoder of `codec` (not kNone) for the items of sections
// [section0, section0 + sections), writing through `dst`.
template <typename Dst>
void LaunchDecode(CodecId codec, const Dst& dst, const uint8_t* blob, DecodeArgs a,
                  uint32_t section0, uint32_t sections, uint32_t* d_error, cudaStream_t st) {
  const uint32_t items_per_section = a.sh.t * a.sh.h * a.sh.kd;
  a.item0 = section0 * items_per_section;
  a.items = sections * items_per_section;
  const unsigned grid = (a.items + kThreads - 1) / kThreads;
  switch (codec) {
    case CodecId::kFp8E4m3:
      DecodeKernel<CodecId::kFp8E4m3, Dst><<<grid, kThreads, 0, st>>>(dst, blob, a, d_error);
      break;
    case CodecId::kInt8:
      DecodeKernel<CodecId::kInt8, Dst><<<grid, kThreads, 0, st>>>(dst, blob, a, d_error);
      break;
    case CodecId::kInt4:
      DecodeKernel<CodecId::kInt4, Dst><<<grid, kThreads, 0, st>>>(dst, blob, a, d_error);
      break;
    case CodecId::kNone:
      break;
  }
}

}  // namespace
}  // namespace kvf::kcore

#endif  // KVF_KERNELS_CUDA_DECODE_KERNELS_CUH_
