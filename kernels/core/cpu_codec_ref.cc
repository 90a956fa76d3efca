// CPU reference codecs, Abseil-free: the twins of kernels/cuda/codec_kernels.cu.
// Formats: kernels/core/blob_format.h and docs/codecs.md. Per-element math:
// kernels/internal/codec_math.h (shared with the CUDA kernels). fp8 and int8
// run over contiguous rows through kernels/core/cpu_rows.h (vectorised where
// the CPU allows); int4's loops are written per dtype (templates) so the
// compiler can vectorise them. Scratch is allocated once per call.
#include "kernels/core/cpu_codec_ref.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <string>
#include <vector>

#include "kernels/core/blob_format.h"
#include "kernels/core/cpu_rows.h"
#include "kernels/core/elem.h"
#include "kernels/internal/codec_math.h"

namespace kvf::kcore {
namespace {

using namespace ::kvf::internal;  // codec_math.h

template <typename F>
Result DispatchDType(ElemType dtype, F&& f) {
  return DispatchElem(dtype, static_cast<F&&>(f));
}

float LoadF32(const std::byte* p, size_t i) { return Fp32Elem::Load(p, i); }
void StoreF32(std::byte* p, size_t i, float v) { Fp32Elem::Store(p, i, v); }
uint16_t LoadU16(const std::byte* p, size_t i) {
  uint16_t v;
  std::memcpy(&v, p + 2 * i, 2);
  return v;
}
void StoreU16(std::byte* p, size_t i, uint16_t v) { std::memcpy(p + 2 * i, &v, 2); }

const char* KvName(size_t kv) { return kv == 0 ? "K" : "V"; }

Result NonFinite(size_t layer, size_t kv, const std::string& what) {
  return Result::InvalidArgument("block holds an infinite value (layer " + std::to_string(layer) +
                                 ", " + KvName(kv) + ", " + what + ")");
}

// Writes 4-bit codes q[0, n) as elements [first, first + n) of a nibble array
// (low nibble = even element). Bytes are assigned, not or-ed, except the one
// an odd `first` shares with the previous call, so callers must go in order.
void PackNibbles(const uint8_t* q, size_t n, size_t first, uint8_t* out) {
  size_t i = 0;
  size_t e = first;
  if (n > 0 && (e & 1)) {
    out[e >> 1] = static_cast<uint8_t>((out[e >> 1] & 0x0f) | (q[0] << 4));
    i = 1;
    ++e;
  }
  uint8_t* o = out + (e >> 1);
  for (; i + 1 < n; i += 2) *o++ = static_cast<uint8_t>(q[i] | (q[i + 1] << 4));
  if (i < n) *o = q[i];
}

void UnpackNibbles(const uint8_t* in, size_t first, size_t n, uint8_t* q) {
  for (size_t i = 0; i < n; ++i) {
    const size_t e = first + i;
    q[i] = static_cast<uint8_t>((in[e >> 1] >> ((e & 1) * 4)) & 0x0f);
  }
}

// The 256 E4M3 values, from the shared conversion (so bit-identical to it).
const std::array<float, 256>& E4m3Table() {
  static const std::array<float, 256> table = [] {
    std::array<float, 256> t;
    for (int c = 0; c < 256; ++c) t[c] = E4m3ToFloat(static_cast<uint8_t>(c));
    return t;
  }();
  return table;
}

// Dimensions of a layout as size_t, and the shape of a section.
struct Dims {
  explicit Dims(const KvShape& l)
      : layers(l.num_layers), t(l.block_tokens), h(l.num_kv_heads), d(l.head_dim),
        es(ElemSize(l.dtype)), dtype(l.dtype) {}
  size_t layers, t, h, d;
  size_t es;  // bytes per unencoded element
  ElemType dtype;
  size_t hd() const { return h * d; }
  size_t section() const { return t * h * d; }
  size_t sections() const { return 2 * layers; }
};

// The range [lo, hi] of each of the H*D channels of K section `s` over the
// block's T tokens, then each channel's centre (format v2). `meta_centres`
// receives the centres as bf16; `lo`, `hi`, `centre` hold H*D floats.
// INVALID_ARGUMENT when a channel holds an infinity.
Result CentreChannels(const Dims& dm, const std::byte* in, size_t s, std::vector<float>& lo,
                      std::vector<float>& hi, std::vector<float>& centre,
                      std::byte* meta_centres) {
  std::fill(lo.begin(), lo.end(), kRangeEmptyLo);
  std::fill(hi.begin(), hi.end(), kRangeEmptyHi);
  for (size_t t = 0; t < dm.t; ++t) {
    rows::MinMax(dm.dtype, in + (s * dm.section() + t * dm.hd()) * dm.es, dm.hd(), lo.data(),
                 hi.data());
  }
  for (size_t j = 0; j < dm.hd(); ++j) {
    if (!(hi[j] <= kFloatMax && lo[j] >= -kFloatMax)) {
      return NonFinite(s / 2, s % 2, "channel " + std::to_string(j));
    }
    const uint16_t code = ChannelCentre(lo[j], hi[j]);
    StoreU16(meta_centres, j, code);
    centre[j] = Bf16ToFloat(code);
  }
  return Result::Ok();
}

// ---------------------------------------------------------------------------
// fp8_e4m3: scale per (layer, K|V, head) = absmax / 448. Format v2 centres K
// per channel first (the scale is then of the centred values).

struct Fp8Codec {
  static Result Encode(const KvShape& layout, uint16_t version, const std::byte* in,
                       std::byte* scales, std::byte* meta, uint8_t* payload) {
    const Dims dm(layout);
    const bool v2 = version == kBlobVersion2;
    std::vector<float> amax(dm.h), inv(dm.h);
    std::vector<float> lo(dm.hd()), hi(dm.hd()), centre(dm.hd());
    for (size_t s = 0; s < dm.sections(); ++s) {
      const size_t base = s * dm.section();
      const bool centred = v2 && s % 2 == 0;
      std::fill(amax.begin(), amax.end(), 0.0f);
      if (centred) {
        Result r = CentreChannels(dm, in, s, lo, hi, centre, meta + (s / 2) * dm.hd() * 2);
        if (!r.ok()) return r;
        for (size_t j = 0; j < dm.hd(); ++j) {
          amax[j / dm.d] = MaxIgnoringNan(amax[j / dm.d], CentredAbsMax(lo[j], hi[j], centre[j]));
        }
      } else {
        for (size_t t = 0; t < dm.t; ++t) {
          for (size_t h = 0; h < dm.h; ++h) {
            const size_t row = base + t * dm.hd() + h * dm.d;
            amax[h] = std::max(amax[h], rows::AbsMax(dm.dtype, in + row * dm.es, dm.d));
          }
        }
      }
      for (size_t h = 0; h < dm.h; ++h) {
        if (!(amax[h] <= kFloatMax)) return NonFinite(s / 2, s % 2, "head " + std::to_string(h));
        const float scale = Fp8Scale(amax[h]);
        StoreF32(scales, s * dm.h + h, scale);
        inv[h] = Reciprocal(scale);
      }
      for (size_t t = 0; t < dm.t; ++t) {
        for (size_t h = 0; h < dm.h; ++h) {
          const size_t row = base + t * dm.hd() + h * dm.d;
          rows::EncodeFp8(dm.dtype, in + row * dm.es, dm.d,
                          centred ? centre.data() + h * dm.d : nullptr, inv[h], payload + row);
        }
      }
    }
    return Result::Ok();
  }

  static Result Decode(const KvShape& layout, uint16_t version, const std::byte* scales,
                       const std::byte* meta, const uint8_t* payload, std::byte* out) {
    const Dims dm(layout);
    const bool v2 = version == kBlobVersion2;
    std::vector<float> centre(dm.hd());
    for (size_t s = 0; s < dm.sections(); ++s) {
      const size_t base = s * dm.section();
      const bool centred = v2 && s % 2 == 0;
      if (centred) {
        for (size_t j = 0; j < dm.hd(); ++j) {
          centre[j] = Bf16ToFloat(LoadU16(meta, (s / 2) * dm.hd() + j));
        }
      }
      for (size_t t = 0; t < dm.t; ++t) {
        for (size_t h = 0; h < dm.h; ++h) {
          const size_t row = base + t * dm.hd() + h * dm.d;
          rows::DecodeFp8(payload + row, dm.d, centred ? centre.data() + h * dm.d : nullptr,
                          LoadF32(scales, s * dm.h + h), dm.dtype, out + row * dm.es);
        }
      }
    }
    return Result::Ok();
  }
};

// ---------------------------------------------------------------------------
// int8: symmetric, scale per (layer, K|V, token) = absmax over H*D / 127.
// Format v2: K per channel, centred, with a bf16 scale per channel; V as v1.

struct Int8Codec {
  static Result Encode(const KvShape& layout, uint16_t version, const std::byte* in,
                       std::byte* scales, std::byte* meta, uint8_t* payload) {
    const Dims dm(layout);
    const size_t n = dm.hd();
    const bool v2 = version == kBlobVersion2;
    std::vector<float> lo(n), hi(n), centre(n), inv(n);
    for (size_t s = 0; s < dm.sections(); ++s) {
      if (v2 && s % 2 == 0) {
        std::byte* m = meta + (s / 2) * 2 * n * 2;  // [layer][centres, scales][H*D] bf16
        Result r = CentreChannels(dm, in, s, lo, hi, centre, m);
        if (!r.ok()) return r;
        for (size_t j = 0; j < n; ++j) {
          const uint16_t code = Int8ChannelScale(CentredAbsMax(lo[j], hi[j], centre[j]));
          StoreU16(m, n + j, code);
          inv[j] = Reciprocal(Bf16ToFloat(code));
        }
        for (size_t t = 0; t < dm.t; ++t) {
          const size_t row = (s * dm.t + t) * n;
          rows::EncodeInt8Channels(dm.dtype, in + row * dm.es, n, centre.data(), inv.data(),
                                   payload + row);
        }
        continue;
      }
      for (size_t t = 0; t < dm.t; ++t) {
        const size_t row = (s * dm.t + t) * n;
        const float m = rows::AbsMax(dm.dtype, in + row * dm.es, n);
        if (!(m <= kFloatMax)) return NonFinite(s / 2, s % 2, "token " + std::to_string(t));
        const float scale = Int8Scale(m);
        StoreF32(scales, v2 ? (s / 2) * dm.t + t : s * dm.t + t, scale);
        rows::EncodeInt8(dm.dtype, in + row * dm.es, n, Reciprocal(scale), payload + row);
      }
    }
    return Result::Ok();
  }

  static Result Decode(const KvShape& layout, uint16_t version, const std::byte* scales,
                       const std::byte* meta, const uint8_t* payload, std::byte* out) {
    const Dims dm(layout);
    const size_t n = dm.hd();
    const bool v2 = version == kBlobVersion2;
    std::vector<float> centre(n), scale(n);
    for (size_t s = 0; s < dm.sections(); ++s) {
      if (v2 && s % 2 == 0) {
        const std::byte* m = meta + (s / 2) * 2 * n * 2;
        for (size_t j = 0; j < n; ++j) {
          centre[j] = Bf16ToFloat(LoadU16(m, j));
          scale[j] = Bf16ToFloat(LoadU16(m, n + j));
        }
        for (size_t t = 0; t < dm.t; ++t) {
          const size_t row = (s * dm.t + t) * n;
          rows::DecodeInt8Channels(payload + row, n, centre.data(), scale.data(), dm.dtype,
                                   out + row * dm.es);
        }
        continue;
      }
      for (size_t t = 0; t < dm.t; ++t) {
        const size_t row = (s * dm.t + t) * n;
        const float sc = LoadF32(scales, v2 ? (s / 2) * dm.t + t : s * dm.t + t);
        rows::DecodeInt8(payload + row, n, sc, dm.dtype, out + row * dm.es);
      }
    }
    return Result::Ok();
  }
};

// ---------------------------------------------------------------------------
// int4: KIVI-style groups of 32, K per channel (along tokens), V per token
// (along channels); asymmetric with a 4-bit zero point; group scales are E4M3
// codes relative to an fp32 super-scale per (layer, K|V).

struct Int4Codec {
  template <typename E>
  static Result EncodeBody(const KvShape& layout, const std::byte* in, std::byte* scales,
                                 uint8_t* meta, uint8_t* payload) {
    const Dims dm(layout);
    const Int4Groups gr = Int4GroupsFor(layout);
    const size_t total_groups = gr.per_layer() * dm.layers;
    uint8_t* codes = meta;
    uint8_t* zeros = meta + total_groups;
    const size_t max_groups = std::max(gr.k, gr.v);
    std::vector<float> need(max_groups), glo(max_groups), ginv(max_groups);
    std::vector<uint8_t> gzero(max_groups), q(dm.section());
    std::vector<float> lo(dm.hd()), hi(dm.hd());

    for (size_t s = 0; s < dm.sections(); ++s) {
      const size_t layer = s / 2, kv = s % 2;
      const size_t base = s * dm.section();
      const size_t ng = kv == 0 ? gr.k : gr.v;
      const size_t gbase = layer * gr.per_layer() + (kv == 0 ? 0 : gr.k);

      // 1. Each group's range, widened to include 0 (so the zero point fits).
      if (kv == 0) {
        for (size_t tg = 0; tg < gr.gt; ++tg) {
          std::fill(lo.begin(), lo.end(), 0.0f);
          std::fill(hi.begin(), hi.end(), 0.0f);
          const size_t t_end = std::min(dm.t, (tg + 1) * kInt4GroupSize);
          for (size_t t = tg * kInt4GroupSize; t < t_end; ++t) {
            const size_t row = base + t * dm.hd();
            for (size_t j = 0; j < dm.hd(); ++j) {
              const float x = E::Load(in, row + j);
              lo[j] = x < lo[j] ? x : lo[j];
              hi[j] = x > hi[j] ? x : hi[j];
            }
          }
          for (size_t j = 0; j < dm.hd(); ++j) {
            need[j * gr.gt + tg] = Int4NeededScale(lo[j], hi[j]);
            glo[j * gr.gt + tg] = lo[j];
          }
        }
      } else {
        for (size_t r = 0; r < dm.t * dm.h; ++r) {
          const size_t row = base + r * dm.d;
          for (size_t dg = 0; dg < gr.gd; ++dg) {
            float l = 0.0f, h = 0.0f;
            const size_t d_end = std::min(dm.d, (dg + 1) * kInt4GroupSize);
            for (size_t d = dg * kInt4GroupSize; d < d_end; ++d) {
              const float x = E::Load(in, row + d);
              l = x < l ? x : l;
              h = x > h ? x : h;
            }
            need[r * gr.gd + dg] = Int4NeededScale(l, h);
            glo[r * gr.gd + dg] = l;
          }
        }
      }

      // 2. The section's super-scale, then each group's scale code and zero.
      float max_need = 0.0f;
      for (size_t g = 0; g < ng; ++g) max_need = MaxIgnoringNan(max_need, need[g]);
      if (!(max_need <= kFloatMax)) return NonFinite(layer, kv, "int4 group range");
      const float super = Int4SuperScale(max_need);
      StoreF32(scales, s, super);
      const float super_inv = Reciprocal(super);
      for (size_t g = 0; g < ng; ++g) {
        const uint8_t code = Int4ScaleCode(need[g], super_inv);
        codes[gbase + g] = code;
        ginv[g] = Reciprocal(Int4GroupScale(super, code));
        gzero[g] = Int4ZeroPoint(glo[g], ginv[g]);
      }
      PackNibbles(gzero.data(), ng, gbase, zeros);

      // 3. Codes in canonical element order, then packed two per byte.
      if (kv == 0) {
        for (size_t t = 0; t < dm.t; ++t) {
          const size_t tg = t / kInt4GroupSize;
          const size_t row = t * dm.hd();
          for (size_t j = 0; j < dm.hd(); ++j) {
            const size_t g = j * gr.gt + tg;
            q[row + j] = QuantizeInt4(E::Load(in, base + row + j), ginv[g], gzero[g]);
          }
        }
      } else {
        for (size_t r = 0; r < dm.t * dm.h; ++r) {
          const size_t row = r * dm.d;
          for (size_t d = 0; d < dm.d; ++d) {
            const size_t g = r * gr.gd + d / kInt4GroupSize;
            q[row + d] = QuantizeInt4(E::Load(in, base + row + d), ginv[g], gzero[g]);
          }
        }
      }
      PackNibbles(q.data(), dm.section(), base, payload);
    }
    return Result::Ok();
  }

  template <typename E>
  static Result DecodeBody(const KvShape& layout, const std::byte* scales,
                                 const uint8_t* meta, const uint8_t* payload, std::byte* out) {
    const Dims dm(layout);
    const Int4Groups gr = Int4GroupsFor(layout);
    const size_t total_groups = gr.per_layer() * dm.layers;
    const uint8_t* codes = meta;
    const uint8_t* zeros = meta + total_groups;
    const size_t max_groups = std::max(gr.k, gr.v);
    std::vector<float> gscale(max_groups);
    std::vector<uint8_t> gzero(max_groups), q(dm.section());
    const std::array<float, 256>& lut = E4m3Table();

    for (size_t s = 0; s < dm.sections(); ++s) {
      const size_t layer = s / 2, kv = s % 2;
      const size_t base = s * dm.section();
      const size_t ng = kv == 0 ? gr.k : gr.v;
      const size_t gbase = layer * gr.per_layer() + (kv == 0 ? 0 : gr.k);
      const float super = LoadF32(scales, s);
      for (size_t g = 0; g < ng; ++g) gscale[g] = MulRn(super, lut[codes[gbase + g]]);
      UnpackNibbles(zeros, gbase, ng, gzero.data());
      UnpackNibbles(payload, base, dm.section(), q.data());
      if (kv == 0) {
        for (size_t t = 0; t < dm.t; ++t) {
          const size_t tg = t / kInt4GroupSize;
          const size_t row = t * dm.hd();
          for (size_t j = 0; j < dm.hd(); ++j) {
            const size_t g = j * gr.gt + tg;
            E::Store(out, base + row + j, DequantizeInt4(q[row + j], gzero[g], gscale[g]));
          }
        }
      } else {
        for (size_t r = 0; r < dm.t * dm.h; ++r) {
          const size_t row = r * dm.d;
          for (size_t d = 0; d < dm.d; ++d) {
            const size_t g = r * gr.gd + d / kInt4GroupSize;
            E::Store(out, base + row + d, DequantizeInt4(q[row + d], gzero[g], gscale[g]));
          }
        }
      }
    }
    return Result::Ok();
  }
};

// int4 has one format version; its bodies are templated on the dtype.
struct Int4Dispatch {
  static Result Encode(const KvShape& shape, uint16_t /*version*/, const std::byte* in,
                       std::byte* scales, std::byte* meta, uint8_t* payload) {
    return DispatchDType(shape.dtype, [&](auto elem) {
      return Int4Codec::EncodeBody<decltype(elem)>(shape, in, scales,
                                                   reinterpret_cast<uint8_t*>(meta), payload);
    });
  }
  static Result Decode(const KvShape& shape, uint16_t /*version*/, const std::byte* scales,
                       const std::byte* meta, const uint8_t* payload, std::byte* out) {
    return DispatchDType(shape.dtype, [&](auto elem) {
      return Int4Codec::DecodeBody<decltype(elem)>(
          shape, scales, reinterpret_cast<const uint8_t*>(meta), payload, out);
    });
  }
};

template <typename Body>
Result EncodeWith(const KvShape& shape, uint64_t fingerprint, CodecId id, uint16_t version,
                  const void* block, void* out) {
  const BlobGeometry g = GeometryForVersion(id, shape, version);
  std::byte* o = static_cast<std::byte*>(out);
  WriteHeader(MakeHeaderForVersion(id, shape, fingerprint, version), o);
  return Body::Encode(shape, version, static_cast<const std::byte*>(block), o + g.scales_offset(),
                      o + g.meta_offset(), reinterpret_cast<uint8_t*>(o + g.payload_offset()));
}

template <typename Body>
Result DecodeWith(const KvShape& shape, CodecId id, const void* blob, void* block) {
  const uint16_t version = BlobVersionOf(blob);
  const BlobGeometry g = GeometryForVersion(id, shape, version);
  const std::byte* b = static_cast<const std::byte*>(blob);
  return Body::Decode(shape, version, b + g.scales_offset(), b + g.meta_offset(),
                      reinterpret_cast<const uint8_t*>(b + g.payload_offset()),
                      static_cast<std::byte*>(block));
}

}  // namespace

Result CpuEncodeVersion(CodecId codec, const KvShape& shape, uint64_t fingerprint,
                        uint16_t version, const void* block, void* out) {
  if (codec != CodecId::kNone && !HasBlobVersion(codec, version)) {
    return Result::InvalidArgument("codec " + std::to_string(static_cast<int>(codec)) +
                                   " has no format version " + std::to_string(version));
  }
  switch (codec) {
    case CodecId::kNone:
      std::memcpy(out, block, shape.BytesPerBlock());
      return Result::Ok();
    case CodecId::kFp8E4m3:
      return EncodeWith<Fp8Codec>(shape, fingerprint, codec, version, block, out);
    case CodecId::kInt8:
      return EncodeWith<Int8Codec>(shape, fingerprint, codec, version, block, out);
    case CodecId::kInt4:
      return EncodeWith<Int4Dispatch>(shape, fingerprint, codec, version, block, out);
  }
  return Result::InvalidArgument("unknown codec id " + std::to_string(static_cast<int>(codec)));
}

Result CpuEncode(CodecId codec, const KvShape& shape, uint64_t fingerprint, const void* block,
                 void* out) {
  return CpuEncodeVersion(codec, shape, fingerprint, BlobVersionFor(codec, shape), block, out);
}

Result CpuDecode(CodecId codec, const KvShape& shape, const void* blob, void* block) {
  switch (codec) {
    case CodecId::kNone:
      std::memcpy(block, blob, shape.BytesPerBlock());
      return Result::Ok();
    case CodecId::kFp8E4m3: return DecodeWith<Fp8Codec>(shape, codec, blob, block);
    case CodecId::kInt8: return DecodeWith<Int8Codec>(shape, codec, blob, block);
    case CodecId::kInt4: return DecodeWith<Int4Dispatch>(shape, codec, blob, block);
  }
  return Result::InvalidArgument("unknown codec id " + std::to_string(static_cast<int>(codec)));
}

Result CheckBlobHeaderBytes(CodecId codec, const KvShape& shape, uint64_t fingerprint,
                            const void* blob, size_t blob_bytes) {
  if (codec == CodecId::kNone) {
    if (blob_bytes < shape.BytesPerBlock()) {
      return Result::DataLoss("stored block truncated: " + std::to_string(blob_bytes) +
                              " bytes, needs " + std::to_string(shape.BytesPerBlock()));
    }
    return Result::Ok();
  }
  if (blob_bytes < kBlobHeaderSize) {
    return Result::DataLoss("encoded block: " + std::to_string(blob_bytes) +
                            " bytes is shorter than the header");
  }
  // What encoders write now, or version 1 (blobs written before version 2).
  uint16_t version = BlobVersionFor(codec, shape);
  BlobHeader want = MakeHeaderForVersion(codec, shape, fingerprint, version);
  if (std::memcmp(blob, &want, sizeof(want)) != 0) {
    version = kBlobVersion1;
    want = MakeHeaderForVersion(codec, shape, fingerprint, version);
    if (std::memcmp(blob, &want, sizeof(want)) != 0) {
      return Result::InvalidArgument(
          "encoded block header does not match the codec and layout asked for");
    }
  }
  const size_t total = GeometryForVersion(codec, shape, version).total();
  if (blob_bytes < total) {
    return Result::DataLoss("encoded block truncated: " + std::to_string(blob_bytes) +
                            " bytes, header says " + std::to_string(total));
  }
  return Result::Ok();
}

}  // namespace kvf::kcore
