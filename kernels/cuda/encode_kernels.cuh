// Codec encoders on the device (formats: kernels/core/blob_format.h,
// docs/codecs.md), templated on a row accessor (CanonSrc, PagedSrc) so that
// encode-on-gather runs the very code of EncodeOnDevice. One launch per call
// (per kMaxLayersPerLaunch layers of a paged source), no scratch, every blob
// byte written exactly once (int4 merges the few nibbles whose byte is shared
// between two threads' runs atomically; see StoreNibbleRun).
//
//   fp8   one thread block per (layer, K|V, head): a *head tile* of T rows of
//         D channels. Format v2 K tiles are centred per channel in the same
//         block (range per channel, centre, then the head's scale).
//   int8  v1: one warp per token row (scale per (layer, K|V, token)).
//         v2: head tiles for K (per-channel centre and bf16 scale) and warps
//         per token row for V, in one launch: blocks [0, k_tiles) are tiles.
//   int4  one thread block per section (super-scale = max over the section),
//         or on sm_90 a cluster of `split` blocks per section that exchange
//         their partial maxima through distributed shared memory. Warp tasks
//         of 8 items per lane; a group's range is reduced with shuffles.
//
// Bit-exactness with the CPU twins (cpu_codec_ref.cc): every value goes
// through the same codec_math.h functions; maxima are order-free; the v2
// channel ranges, whose signed zeros depend on the order (MinIgnoringNan
// keeps the first of -0 and +0), are folded in token order: each thread
// scans a contiguous token slice and the slices are combined first to last.
#ifndef KVF_KERNELS_CUDA_ENCODE_KERNELS_CUH_
#define KVF_KERNELS_CUDA_ENCODE_KERNELS_CUH_

#include <cooperative_groups.h>

#include "kernels/cuda/device_common.cuh"

namespace kvf::kcore {
namespace {

// How the threads of a head tile split it: `slices` token slices of
// `slice_len` consecutive tokens (the last ones shorter or empty), each
// scanned by `kq` threads, one per item of the row (a thread takes items k,
// k + kq, ... when a row has more items than the block has threads).
struct TileGeom {
  uint32_t kq, slices, slice_len;
};

struct EncodeArgs {
  Shape sh;
  BlobLayout bl;  // of the version written (BlobVersionFor)
  BlobHeader header;
  Int4Meta i4;
  TileGeom tile;
  uint32_t section0;  // first (layer, K|V) section of this launch
  uint32_t k_tiles;   // int8 v2: head-tile blocks before the token-row blocks
  uint32_t rows;      // int8: token rows of the row blocks
  uint32_t k_tasks;   // int4: warp tasks per K section
  uint32_t v_tasks;   // int4: warp tasks per V section
  uint32_t split;     // int4: blocks per section (a cluster when > 1)
  FastDiv div_vrow;   // int4: by the padded items of a V row, 4 * ceil(D / 32)
  bool blob4;         // the blob is 4-byte aligned
};

// Tile items a thread keeps in registers between the two passes (8 uint4).
template <typename E>
constexpr uint32_t kCacheItems = 16 / E::kBytes;

inline constexpr float kInf = __builtin_huge_valf();

__device__ inline void MaybeWriteHeader(uint8_t* out, const EncodeArgs& a) {
  if (a.section0 == 0 && blockIdx.x == 0 && threadIdx.x < kBlobHeaderSize) {
    out[threadIdx.x] = reinterpret_cast<const uint8_t*>(&a.header)[threadIdx.x];
  }
}

// ---------------------------------------------------------------------------
// Head tiles: (section s, head h), T rows x D channels.
//
// fp8 (kInt8 false): scale = Fp8Scale(max |x|) over the tile, or for a
// centred tile max over channels of CentredAbsMax; codes
// FloatToE4m3(MulRn(x [- centre], inv)).
// int8 (kInt8 true, always centred): per channel scale code
// Int8ChannelScale(CentredAbsMax), codes QuantizeInt8(Centred(x, c), inv_c).
//
// `ch_lo` / `ch_hi` (dynamic shared memory, slices * D floats each) hold the
// slices' partial ranges; after the fold, ch_lo[c] is channel c's centre and
// ch_hi[c] its inverse scale (int8).
template <bool kInt8, typename Src>
__device__ void EncodeHeadTile(const Src& src, uint8_t* out, const EncodeArgs& a, uint32_t s,
                               uint32_t h, bool centred, float* ch_lo, float* ch_hi,
                               float* red) {
  using E = typename Src::Elem;
  constexpr uint32_t kCache = kCacheItems<E>;
  const Shape& sh = a.sh;
  const TileGeom& g = a.tile;
  const uint32_t q = threadIdx.x / g.kq, k0 = threadIdx.x - q * g.kq;
  const bool in_tile = q < g.slices;
  const uint32_t t_begin = min(sh.t, q * g.slice_len);
  const uint32_t t_end = min(sh.t, t_begin + g.slice_len);
  // One item column and few tokens: pass 2 reuses pass 1's registers.
  const bool cached = src.vec && g.kq == sh.kd && g.slice_len <= kCache;
  auto payload_row = [&](uint32_t t) {
    return out + a.bl.payload + ((size_t{s} * sh.t + t) * sh.h + h) * sh.d;
  };

  // Pass 1: absolute maximum, or each channel's range over the slice.
  float amax = 0.0f;
  RawItem<E> raw[kCache];
  if (cached) {
    const size_t off = size_t{k0} * kItem * E::kBytes;
#pragma unroll
    for (uint32_t u = 0; u < kCache; ++u) {
      if (t_begin + u < t_end) raw[u] = LoadRaw<E>(src.Row(s, t_begin + u, h) + off);
    }
    float lo[kItem], hi[kItem];
#pragma unroll
    for (uint32_t i = 0; i < kItem; ++i) {
      lo[i] = im::kRangeEmptyLo;
      hi[i] = im::kRangeEmptyHi;
    }
#pragma unroll
    for (uint32_t u = 0; u < kCache; ++u) {
      if (t_begin + u >= t_end) continue;
      float x[kItem];
      Unpack<E>(raw[u], x);
#pragma unroll
      for (uint32_t i = 0; i < kItem; ++i) {
        if (centred) {
          lo[i] = im::MinIgnoringNan(lo[i], x[i]);
          hi[i] = im::MaxIgnoringNanSigned(hi[i], x[i]);
        } else {
          amax = im::MaxIgnoringNan(amax, im::AbsF(x[i]));
        }
      }
    }
    if (centred && in_tile) {
      const uint32_t c0 = q * sh.d + k0 * kItem;
#pragma unroll
      for (uint32_t i = 0; i < kItem; ++i) {
        ch_lo[c0 + i] = lo[i];
        ch_hi[c0 + i] = hi[i];
      }
    }
  } else if (in_tile) {
    for (uint32_t k = k0; k < sh.kd; k += g.kq) {
      const uint32_t d0 = k * kItem, n = sh.ItemLen(k);
      float lo[kItem], hi[kItem];
#pragma unroll
      for (uint32_t i = 0; i < kItem; ++i) {
        lo[i] = im::kRangeEmptyLo;
        hi[i] = im::kRangeEmptyHi;
      }
#pragma unroll 4
      for (uint32_t t = t_begin; t < t_end; ++t) {
        float x[kItem];
        LoadItem<E>(src.Row(s, t, h), d0, n, src.vec, x);
#pragma unroll
        for (uint32_t i = 0; i < kItem; ++i) {
          if (centred) {
            if (i < n) {
              lo[i] = im::MinIgnoringNan(lo[i], x[i]);
              hi[i] = im::MaxIgnoringNanSigned(hi[i], x[i]);
            }
          } else {
            amax = im::MaxIgnoringNan(amax, im::AbsF(x[i]));  // x[n..8) is 0
          }
        }
      }
      if (centred) {
#pragma unroll
        for (uint32_t i = 0; i < kItem; ++i) {
          if (i < n) {
            ch_lo[q * sh.d + d0 + i] = lo[i];
            ch_hi[q * sh.d + d0 + i] = hi[i];
          }
        }
      }
    }
  }

  // Fold the slices' ranges in token order; each channel's centre (and int8
  // scale) to the meta section and to ch_lo / ch_hi. Channel c only touches
  // index c of every slice, so writing ch_lo[c] in place is race-free.
  if (centred) {
    __syncthreads();
    const uint32_t l = s >> 1;
    for (uint32_t c = threadIdx.x; c < sh.d; c += blockDim.x) {
      float lo = ch_lo[c], hi = ch_hi[c];
      for (uint32_t qq = 1; qq < g.slices; ++qq) {
        lo = im::MinIgnoringNan(lo, ch_lo[qq * sh.d + c]);
        hi = im::MaxIgnoringNanSigned(hi, ch_hi[qq * sh.d + c]);
      }
      const uint16_t centre_code = im::ChannelCentre(lo, hi);
      const float centre = im::Bf16ToFloat(centre_code);
      // An infinite input (the CPU rejects the block) gives an infinite scale.
      const bool finite = hi <= im::kFloatMax && lo >= -im::kFloatMax;
      const float cam = finite ? im::CentredAbsMax(lo, hi, centre) : kInf;
      const size_t j = size_t{h} * sh.d + c;
      if constexpr (kInt8) {
        const uint16_t scale_code = im::Int8ChannelScale(cam);
        uint8_t* m = out + a.bl.meta + size_t{l} * 4 * sh.Hd();  // [centres, scales][H*D] bf16
        StoreU16(m + 2 * j, centre_code, a.blob4);
        StoreU16(m + 2 * (sh.Hd() + j), scale_code, a.blob4);
        ch_hi[c] = im::Reciprocal(im::Bf16ToFloat(scale_code));
      } else {
        StoreU16(out + a.bl.meta + (size_t{l} * sh.Hd() + j) * 2, centre_code, a.blob4);
        amax = im::MaxIgnoringNan(amax, cam);
      }
      ch_lo[c] = centre;
    }
  }

  float inv = 0.0f;
  if constexpr (kInt8) {
    __syncthreads();  // centres and inverse scales visible
  } else {
    amax = BlockMax(amax, red);  // (its barrier also publishes the centres)
    const float scale = im::Fp8Scale(amax);
    if (threadIdx.x == 0) {
      StoreF32(out + a.bl.scales + (size_t{s} * sh.h + h) * 4, scale, a.blob4);
    }
    inv = im::Reciprocal(scale);
  }

  // Pass 2: codes.
  auto quantise = [&](const float (&x)[kItem], const float (&cen)[kItem],
                      const float (&cinv)[kItem], uint8_t (&c)[kItem]) {
#pragma unroll
    for (uint32_t i = 0; i < kItem; ++i) {
      if constexpr (kInt8) {
        c[i] = static_cast<uint8_t>(im::QuantizeInt8(im::Centred(x[i], cen[i]), cinv[i]));
      } else {
        c[i] = im::FloatToE4m3(im::MulRn(centred ? im::Centred(x[i], cen[i]) : x[i], inv));
      }
    }
  };
  auto channel_params = [&](uint32_t d0, uint32_t n, float (&cen)[kItem], float (&cinv)[kItem]) {
#pragma unroll
    for (uint32_t i = 0; i < kItem; ++i) {
      cen[i] = centred && i < n ? ch_lo[d0 + i] : 0.0f;
      cinv[i] = kInt8 && i < n ? ch_hi[d0 + i] : 0.0f;
    }
  };
  if (cached) {
    const uint32_t d0 = k0 * kItem;
    float cen[kItem], cinv[kItem];
    channel_params(d0, in_tile ? kItem : 0, cen, cinv);
#pragma unroll
    for (uint32_t u = 0; u < kCache; ++u) {
      if (t_begin + u >= t_end) continue;
      float x[kItem];
      uint8_t c[kItem];
      Unpack<E>(raw[u], x);
      quantise(x, cen, cinv, c);
      StoreCodes(payload_row(t_begin + u) + d0, c, kItem, a.bl.codes_vec);
    }
  } else if (in_tile) {
    for (uint32_t k = k0; k < sh.kd; k += g.kq) {
      const uint32_t d0 = k * kItem, n = sh.ItemLen(k);
      float cen[kItem], cinv[kItem];
      channel_params(d0, n, cen, cinv);
#pragma unroll 4
      for (uint32_t t = t_begin; t < t_end; ++t) {
        float x[kItem];
        uint8_t c[kItem];
        LoadItem<E>(src.Row(s, t, h), d0, n, src.vec, x);
        quantise(x, cen, cinv, c);
        StoreCodes(payload_row(t) + d0, c, n, a.bl.codes_vec);
      }
    }
  }
}

// ---------------------------------------------------------------------------
// int8 token rows: one warp per (section, token), H*D elements in H rows.
// v1: every section, scale index s*T + t; v2: V sections only, scale index
// layer*T + t.
template <typename Src>
__device__ void EncodeTokenRow(const Src& src, uint8_t* out, const EncodeArgs& a, uint32_t row,
                               bool v2) {
  using E = typename Src::Elem;
  constexpr uint32_t kCache = kCacheItems<E>;
  const Shape& sh = a.sh;
  const uint32_t lane = threadIdx.x & 31;
  const uint32_t si = sh.div_t.Div(row), t = row - si * sh.t;
  const uint32_t s = v2 ? a.section0 + 2 * si + 1 : a.section0 + si;
  const uint32_t items = sh.h * sh.kd;
  const bool cached = src.vec && items <= 32 * kCache;
  auto payload_row = [&](uint32_t head) {
    return out + a.bl.payload + ((size_t{s} * sh.t + t) * sh.h + head) * sh.d;
  };

  float amax = 0.0f;
  RawItem<E> raw[kCache];
  if (cached) {
#pragma unroll
    for (uint32_t u = 0; u < kCache; ++u) {
      const uint32_t i = lane + 32 * u;
      if (i < items) {
        const uint32_t head = sh.div_kd.Div(i), k = i - head * sh.kd;
        raw[u] = LoadRaw<E>(src.Row(s, t, head) + size_t{k} * kItem * E::kBytes);
      }
    }
#pragma unroll
    for (uint32_t u = 0; u < kCache; ++u) {
      if (lane + 32 * u >= items) continue;
      float x[kItem];
      Unpack<E>(raw[u], x);
#pragma unroll
      for (uint32_t i = 0; i < kItem; ++i) amax = im::MaxIgnoringNan(amax, im::AbsF(x[i]));
    }
  } else {
#pragma unroll 4
    for (uint32_t i = lane; i < items; i += 32) {
      const uint32_t head = sh.div_kd.Div(i), k = i - head * sh.kd;
      float x[kItem];
      LoadItem<E>(src.Row(s, t, head), k * kItem, sh.ItemLen(k), src.vec, x);
#pragma unroll
      for (uint32_t j = 0; j < kItem; ++j) amax = im::MaxIgnoringNan(amax, im::AbsF(x[j]));
    }
  }
  amax = WarpMax(amax);
  const float scale = im::Int8Scale(amax);
  if (lane == 0) {
    const size_t index = v2 ? size_t{s >> 1} * sh.t + t : size_t{s} * sh.t + t;
    StoreF32(out + a.bl.scales + index * 4, scale, a.blob4);
  }
  const float inv = im::Reciprocal(scale);

  auto quantise = [&](const float (&x)[kItem], uint8_t (&c)[kItem]) {
#pragma unroll
    for (uint32_t i = 0; i < kItem; ++i) c[i] = static_cast<uint8_t>(im::QuantizeInt8(x[i], inv));
  };
  if (cached) {
#pragma unroll
    for (uint32_t u = 0; u < kCache; ++u) {
      const uint32_t i = lane + 32 * u;
      if (i >= items) continue;
      const uint32_t head = sh.div_kd.Div(i), k = i - head * sh.kd;
      float x[kItem];
      uint8_t c[kItem];
      Unpack<E>(raw[u], x);
      quantise(x, c);
      StoreCodes(payload_row(head) + k * kItem, c, kItem, a.bl.codes_vec);
    }
  } else {
#pragma unroll 4
    for (uint32_t i = lane; i < items; i += 32) {
      const uint32_t head = sh.div_kd.Div(i), k = i - head * sh.kd;
      const uint32_t n = sh.ItemLen(k);
      float x[kItem];
      uint8_t c[kItem];
      LoadItem<E>(src.Row(s, t, head), k * kItem, n, src.vec, x);
      quantise(x, c);
      StoreCodes(payload_row(head) + k * kItem, c, n, a.bl.codes_vec);
    }
  }
}

// ---------------------------------------------------------------------------
// int4. The range of a group starts at [0, 0] and never holds NaN, so its
// reductions are order-free. Lanes of inactive items carry [0, 0], which
// changes no range.

__device__ inline void Int4Widen(float x, float& lo, float& hi) {
  lo = x < lo ? x : lo;
  hi = x > hi ? x : hi;
}

// Range over the lanes of an aligned group of 4 (xor 1, 2).
__device__ inline void Int4RangeOver4Lanes(float& lo, float& hi) {
#pragma unroll
  for (int o = 1; o <= 2; o <<= 1) {
    Int4Widen(__shfl_xor_sync(kFullMask, lo, o), lo, hi);
    Int4Widen(__shfl_xor_sync(kFullMask, hi, o), lo, hi);
  }
}

struct Int4Group {  // quantisation parameters of one group
  uint8_t code, zero;
  float inv;
};

__device__ inline Int4Group Int4Params(float lo, float hi, float super, float super_inv) {
  Int4Group p;
  p.code = im::Int4ScaleCode(im::Int4NeededScale(lo, hi), super_inv);
  p.inv = im::Reciprocal(im::Int4GroupScale(super, p.code));
  p.zero = im::Int4ZeroPoint(lo, p.inv);
  return p;
}

// K task w of section s: token group tg = w / cvb, channel items
// 8 * (w % cvb) + lane / 4 of the H*kd items of a K row (cvb = ceil(H*kd / 8)),
// tokens 32 tg + 8 (lane & 3) ... + 7. A group (one channel, 32 tokens) is
// the 4 lanes of one item. Pass 1 (kQuantise false) returns the lane's
// largest needed scale; pass 2 writes codes, zero points and payload.
template <bool kQuantise, typename Src>
__device__ float Int4KTask(const Src& src, uint8_t* out, const EncodeArgs& a, uint32_t s,
                           uint32_t w, float super, float super_inv) {
  using E = typename Src::Elem;
  const Shape& sh = a.sh;
  const Int4Meta& m = a.i4;
  const uint32_t lane = threadIdx.x & 31, q = lane & 3;
  const uint32_t row_items = sh.h * sh.kd;
  const uint32_t cvb = (row_items + 7) / 8;
  const uint32_t tg = w / cvb;
  const uint32_t cv = (w - tg * cvb) * 8 + (lane >> 2);
  const bool active = cv < row_items;
  const uint32_t head = active ? sh.div_kd.Div(cv) : 0;
  const uint32_t k = active ? cv - head * sh.kd : 0;
  const uint32_t d0 = k * kItem, n = active ? sh.ItemLen(k) : 0;
  const uint32_t t0 = tg * kInt4GroupSize + q * 8;
  const uint32_t nt = active && t0 < sh.t ? min(sh.t - t0, 8u) : 0;
  const size_t off = size_t{d0} * E::kBytes;

  RawItem<E> raw[8];
  if (src.vec) {
#pragma unroll
    for (uint32_t u = 0; u < 8; ++u) {
      if (u < nt) raw[u] = LoadRaw<E>(src.Row(s, t0 + u, head) + off);
    }
  }
  auto load = [&](uint32_t u, float (&x)[kItem]) {
    if (src.vec) {
      Unpack<E>(raw[u], x);
    } else {
      LoadItem<E>(src.Row(s, t0 + u, head), d0, n, false, x);
    }
  };
  float lo[kItem], hi[kItem];
#pragma unroll
  for (uint32_t i = 0; i < kItem; ++i) lo[i] = hi[i] = 0.0f;
#pragma unroll
  for (uint32_t u = 0; u < 8; ++u) {
    if (u >= nt) continue;
    float x[kItem];
    load(u, x);
#pragma unroll
    for (uint32_t i = 0; i < kItem; ++i) Int4Widen(x[i], lo[i], hi[i]);  // x[n..8) is 0
  }
#pragma unroll
  for (uint32_t i = 0; i < kItem; ++i) Int4RangeOver4Lanes(lo[i], hi[i]);

  if constexpr (!kQuantise) {
    float mx = 0.0f;
#pragma unroll
    for (uint32_t i = 0; i < kItem; ++i) {
      mx = im::MaxIgnoringNan(mx, im::Int4NeededScale(lo[i], hi[i]));
    }
    return mx;
  } else {
    Int4Group p[kItem];
    uint8_t zero[kItem];
#pragma unroll
    for (uint32_t i = 0; i < kItem; ++i) {
      p[i] = Int4Params(lo[i], hi[i], super, super_inv);
      zero[i] = p[i].zero;
    }
    const size_t gbase = size_t{s >> 1} * (m.gk + m.gv);
    const size_t j0 = size_t{head} * sh.d + d0;
    if (q == 0 && active) {
      uint8_t* codes = out + a.bl.meta;
      uint8_t* zeros = codes + m.groups;
      if (m.gt == 1) {  // the item's groups are consecutive
#pragma unroll
        for (uint32_t i = 0; i < kItem; ++i) {
          if (i < n) codes[gbase + j0 + i] = p[i].code;
        }
        StoreNibbleRun(zeros, gbase + j0, zero, n, m.groups, false);
      } else {
#pragma unroll
        for (uint32_t i = 0; i < kItem; ++i) {
          if (i >= n) continue;
          const size_t gi = gbase + (j0 + i) * m.gt + tg;
          codes[gi] = p[i].code;
          StoreNibble(zeros, gi, zero[i], m.groups);
        }
      }
    }
#pragma unroll
    for (uint32_t u = 0; u < 8; ++u) {
      if (u >= nt) continue;
      float x[kItem];
      uint8_t c[kItem];
      load(u, x);
#pragma unroll
      for (uint32_t i = 0; i < kItem; ++i) c[i] = im::QuantizeInt4(x[i], p[i].inv, p[i].zero);
      const size_t e0 = (size_t{s} * sh.t + t0 + u) * sh.Hd() + j0;
      StoreNibbleRun(out + a.bl.payload, e0, c, n, m.elements, a.bl.codes_vec);
    }
    return 0.0f;
  }
}

// V task w of section s: padded items p = 256 w + 32 u + lane (u < 8) of the
// section, where row r = t * H + h has 4 * gd padded items (items k >= kd are
// padding) and group r * gd + dg is the 4 consecutive padded items p / 4.
template <bool kQuantise, typename Src>
__device__ float Int4VTask(const Src& src, uint8_t* out, const EncodeArgs& a, uint32_t s,
                           uint32_t w, float super, float super_inv) {
  using E = typename Src::Elem;
  const Shape& sh = a.sh;
  const Int4Meta& m = a.i4;
  const uint32_t lane = threadIdx.x & 31;
  const uint32_t rows = sh.t * sh.h;
  const uint32_t row_pad = 4 * m.gd;

  uint32_t r[8], k[8];
  bool on[8];
  RawItem<E> raw[8];
#pragma unroll
  for (uint32_t u = 0; u < 8; ++u) {
    const uint32_t p = w * 256 + u * 32 + lane;
    r[u] = a.div_vrow.Div(p);
    k[u] = p - r[u] * row_pad;
    on[u] = r[u] < rows && k[u] < sh.kd;
    if (src.vec && on[u]) {
      const uint32_t t = sh.div_h.Div(r[u]);
      raw[u] = LoadRaw<E>(src.Row(s, t, r[u] - t * sh.h) + size_t{k[u]} * kItem * E::kBytes);
    }
  }
  auto load = [&](uint32_t u, float (&x)[kItem]) {
    if (src.vec) {
      Unpack<E>(raw[u], x);
    } else {
      const uint32_t t = sh.div_h.Div(r[u]);
      LoadItem<E>(src.Row(s, t, r[u] - t * sh.h), k[u] * kItem, sh.ItemLen(k[u]), false, x);
    }
  };

  float mx = 0.0f;
  const size_t gbase = size_t{s >> 1} * (m.gk + m.gv) + m.gk;
#pragma unroll
  for (uint32_t u = 0; u < 8; ++u) {
    float x[kItem];
    float lo = 0.0f, hi = 0.0f;
    if (on[u]) {
      load(u, x);
#pragma unroll
      for (uint32_t i = 0; i < kItem; ++i) Int4Widen(x[i], lo, hi);  // x[n..8) is 0
    }
    Int4RangeOver4Lanes(lo, hi);
    if constexpr (!kQuantise) {
      mx = im::MaxIgnoringNan(mx, im::Int4NeededScale(lo, hi));
    } else {
      const Int4Group p = Int4Params(lo, hi, super, super_inv);
      const uint32_t gs = (w * 256 + u * 32 + lane) >> 2;  // group within the section
      const bool group = r[u] < rows;
      uint8_t* codes = out + a.bl.meta;
      uint8_t* zeros = codes + m.groups;
      if (group && (lane & 3) == 0) codes[gbase + gs] = p.code;
      // Zero points: a group with an even global index and its successor,
      // 4 lanes up, share a byte.
      const uint32_t next_zero = __shfl_xor_sync(kFullMask, p.zero, 4);
      if ((gbase & 1) == 0) {
        if (group && (lane & 7) == 0) {
          if (gs + 1 < m.gv) {
            zeros[(gbase + gs) / 2] = static_cast<uint8_t>(p.zero | (next_zero << 4));
          } else {
            StoreNibble(zeros, gbase + gs, p.zero, m.groups);
          }
        }
      } else if (group && (lane & 3) == 0) {
        StoreNibble(zeros, gbase + gs, p.zero, m.groups);
      }
      if (on[u]) {
        uint8_t c[kItem];
#pragma unroll
        for (uint32_t i = 0; i < kItem; ++i) c[i] = im::QuantizeInt4(x[i], p.inv, p.zero);
        const size_t e0 = (size_t{s} * rows + r[u]) * sh.d + k[u] * kItem;
        StoreNibbleRun(out + a.bl.payload, e0, c, sh.ItemLen(k[u]), m.elements,
                       a.bl.codes_vec);
      }
    }
  }
  return mx;
}

// Max over the blocks of this block's cluster (sm_90 clusters of `split`
// blocks, one per part of a section), through distributed shared memory.
__device__ inline float ClusterMax(float v) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  __shared__ float part;
  namespace cg = cooperative_groups;
  cg::cluster_group cluster = cg::this_cluster();
  if (threadIdx.x == 0) part = v;
  cluster.sync();
  float m = 0.0f;
  for (unsigned r = 0; r < cluster.num_blocks(); ++r) {
    m = im::MaxIgnoringNan(m, *cluster.map_shared_rank(&part, r));
  }
  cluster.sync();  // no block leaves (or reuses `part`) while another reads it
  return m;
#else
  return v;
#endif
}

// ---------------------------------------------------------------------------
// Kernels.

template <typename Src>
__global__ void __launch_bounds__(512, 1) Fp8Encode(const __grid_constant__ Src src, uint8_t* out,
                                                    const __grid_constant__ EncodeArgs a) {
  extern __shared__ float tile_smem[];
  __shared__ float red[32];
  MaybeWriteHeader(out, a);
  const uint32_t si = blockIdx.x / a.sh.h, h = blockIdx.x - si * a.sh.h;
  const uint32_t s = a.section0 + si;
  const bool centred = a.bl.version == kBlobVersion2 && (s & 1) == 0;
  float* ch_lo = tile_smem;
  float* ch_hi = tile_smem + a.tile.slices * a.sh.d;
  EncodeHeadTile<false>(src, out, a, s, h, centred, ch_lo, ch_hi, red);
}

template <typename Src>
__global__ void __launch_bounds__(512, 1) Int8Encode(const __grid_constant__ Src src, uint8_t* out,
                                                     const __grid_constant__ EncodeArgs a) {
  extern __shared__ float tile_smem[];
  __shared__ float red[32];
  MaybeWriteHeader(out, a);
  if (blockIdx.x < a.k_tiles) {  // v2 K: (layer, head)
    const uint32_t li = blockIdx.x / a.sh.h, h = blockIdx.x - li * a.sh.h;
    float* ch_lo = tile_smem;
    float* ch_hi = tile_smem + a.tile.slices * a.sh.d;
    EncodeHeadTile<true>(src, out, a, a.section0 + 2 * li, h, true, ch_lo, ch_hi, red);
    return;
  }
  const uint32_t row = (blockIdx.x - a.k_tiles) * (blockDim.x >> 5) + (threadIdx.x >> 5);
  if (row < a.rows) EncodeTokenRow(src, out, a, row, a.bl.version == kBlobVersion2);
}

template <typename Src>
__global__ void __launch_bounds__(kThreads)
    Int4Encode(const __grid_constant__ Src src, uint8_t* out,
               const __grid_constant__ EncodeArgs a) {
  __shared__ float red[32];
  MaybeWriteHeader(out, a);
  const uint32_t si = blockIdx.x / a.split, part = blockIdx.x - si * a.split;
  const uint32_t s = a.section0 + si;
  const bool v = (s & 1) != 0;
  const uint32_t tasks = v ? a.v_tasks : a.k_tasks;
  const uint32_t warps = blockDim.x >> 5;
  const uint32_t first = part * warps + (threadIdx.x >> 5), stride = a.split * warps;

  float mx = 0.0f;
  for (uint32_t w = first; w < tasks; w += stride) {
    const float m = v ? Int4VTask<false>(src, out, a, s, w, 0.0f, 0.0f)
                      : Int4KTask<false>(src, out, a, s, w, 0.0f, 0.0f);
    mx = im::MaxIgnoringNan(mx, m);
  }
  mx = BlockMax(mx, red);
  if (a.split > 1) mx = ClusterMax(mx);
  const float super = im::Int4SuperScale(mx);
  if (part == 0 && threadIdx.x == 0) StoreF32(out + a.bl.scales + size_t{s} * 4, super, a.blob4);
  const float super_inv = im::Reciprocal(super);
  for (uint32_t w = first; w < tasks; w += stride) {
    if (v) {
      Int4VTask<true>(src, out, a, s, w, super, super_inv);
    } else {
      Int4KTask<true>(src, out, a, s, w, super, super_inv);
    }
  }
}

// ---------------------------------------------------------------------------
// Host side.

// Threads of a head tile: enough token slices that a slice fits the register
// cache (kCacheItems), 64 to 512 threads.
inline TileGeom TileFor(const Shape& sh, uint32_t cache_items, uint32_t* threads) {
  const uint32_t want = sh.kd * ((sh.t + cache_items - 1) / cache_items);
  const uint32_t b = std::clamp((want + 31) / 32 * 32, 64u, 512u);
  TileGeom g;
  g.kq = std::min(sh.kd, b);
  g.slices = b / g.kq;
  g.slice_len = (sh.t + g.slices - 1) / g.slices;
  *threads = b;
  return g;
}

// Blocks per int4 section: 1, or on sm_90 (clusters) up to 8 while the grid
// is under two blocks per SM and every block keeps a task per warp.
inline uint32_t Int4Split(uint32_t sections, uint32_t k_tasks, uint32_t v_tasks) {
  int dev = 0, sms = 0, major = 0;
  if (cudaGetDevice(&dev) != cudaSuccess ||
      cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess ||
      cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess) {
    cudaGetLastError();
    return 1;
  }
  if (major < 9) return 1;
  const uint32_t warps = kThreads / 32;
  const uint32_t tasks = std::min(k_tasks, v_tasks);
  uint32_t split = 1;
  while (split < 8 && uint64_t{sections} * split < 2 * static_cast<uint64_t>(sms) &&
         tasks >= 2 * split * warps) {
    split *= 2;
  }
  return split;
}

// Whether the code of Int4Encode<Src> that runs on the current device was
// compiled with cluster support (ClusterMax is a no-op below sm_90, e.g. when
// an sm_80-only build runs on an H100 through PTX).
template <typename Src>
bool Int4HasClusters() {
  cudaFuncAttributes attr;
  if (cudaFuncGetAttributes(&attr, reinterpret_cast<const void*>(&Int4Encode<Src>)) !=
      cudaSuccess) {
    cudaGetLastError();
    return false;
  }
  return attr.ptxVersion >= 90 && attr.binaryVersion >= 90;
}

template <typename Src>
void LaunchInt4(const Src& src, uint8_t* out, EncodeArgs a, uint32_t sections, cudaStream_t st) {
  if (a.split > 1 && !Int4HasClusters<Src>()) a.split = 1;
  if (a.split > 1) {
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = dim3(sections * a.split);
    cfg.blockDim = dim3(kThreads);
    cfg.dynamicSmemBytes = 0;
    cfg.stream = st;
    cudaLaunchAttribute attr[1];
    attr[0].id = cudaLaunchAttributeClusterDimension;
    attr[0].val.clusterDim.x = a.split;
    attr[0].val.clusterDim.y = 1;
    attr[0].val.clusterDim.z = 1;
    cfg.attrs = attr;
    cfg.numAttrs = 1;
    if (cudaLaunchKernelEx(&cfg, Int4Encode<Src>, src, out, a) == cudaSuccess) return;
    cudaGetLastError();  // e.g. clusters of this size do not fit: one block per section
    a.split = 1;
  }
  Int4Encode<Src><<<sections, kThreads, 0, st>>>(src, out, a);
}

// Enqueues the encoder of `codec` (not kNone) for sections [section0,
// section0 + sections) (whole layers) reading through `src`; block 0 of the
// launch that covers section 0 writes the header.
template <typename Src>
void LaunchEncode(CodecId codec, const Src& src, const KvShape& shape, uint64_t fingerprint,
                  uint8_t* out, uint32_t section0, uint32_t sections, cudaStream_t st) {
  using E = typename Src::Elem;
  EncodeArgs a{};
  a.sh = ShapeFor(shape);
  const uint16_t version = BlobVersionFor(codec, shape);
  const bool v2 = version == kBlobVersion2;
  a.bl = LayoutFor(codec, shape, version, out);
  a.header = MakeHeader(codec, shape, fingerprint);
  a.i4 = Int4MetaFor(shape);
  a.section0 = section0;
  a.split = 1;
  a.blob4 = reinterpret_cast<uintptr_t>(out) % 4 == 0;
  const Shape& sh = a.sh;
  switch (codec) {
    case CodecId::kFp8E4m3: {
      uint32_t threads = 0;
      a.tile = TileFor(sh, kCacheItems<E>, &threads);
      const size_t smem = v2 ? size_t{2} * a.tile.slices * sh.d * sizeof(float) : 0;
      Fp8Encode<Src><<<sections * sh.h, threads, smem, st>>>(src, out, a);
      break;
    }
    case CodecId::kInt8: {
      uint32_t threads = kThreads;
      size_t smem = 0;
      if (v2) {
        a.tile = TileFor(sh, kCacheItems<E>, &threads);
        smem = size_t{2} * a.tile.slices * sh.d * sizeof(float);
        a.k_tiles = sections / 2 * sh.h;
        a.rows = sections / 2 * sh.t;
      } else {
        a.rows = sections * sh.t;
      }
      const uint32_t rows_per_block = threads / 32;
      const uint32_t grid = a.k_tiles + (a.rows + rows_per_block - 1) / rows_per_block;
      Int8Encode<Src><<<grid, threads, smem, st>>>(src, out, a);
      break;
    }
    case CodecId::kInt4: {
      a.k_tasks = a.i4.gt * ((sh.h * sh.kd + 7) / 8);
      a.v_tasks = static_cast<uint32_t>((uint64_t{sh.t} * sh.h * 4 * a.i4.gd + 255) / 256);
      a.div_vrow = FastDiv(4 * a.i4.gd);
      a.split = Int4Split(sections, a.k_tasks, a.v_tasks);
      LaunchInt4(src, out, a, sections, st);
      break;
    }
    case CodecId::kNone:
      break;
  }
}

}  // namespace
}  // namespace kvf::kcore

#endif  // KVF_KERNELS_CUDA_ENCODE_KERNELS_CUH_
