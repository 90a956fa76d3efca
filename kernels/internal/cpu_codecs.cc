// CPU reference codecs. Formats: kernels/internal/codec_format.h and
// docs/codecs.md. Per-element math: kernels/internal/codec_math.h (shared with
// the CUDA kernels). Loops are written per dtype (templates) over contiguous
// rows so the compiler can vectorise them; scratch is allocated once per call.
#include "kernels/internal/cpu_codecs.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "kernels/internal/codec_format.h"
#include "kernels/internal/codec_math.h"

namespace kvf::internal {
namespace {

// Element access for one dtype; `i` counts elements, `p` may be unaligned.
struct Fp16Elem {
  static float Load(const std::byte* p, size_t i) {
    uint16_t h;
    std::memcpy(&h, p + 2 * i, 2);
    return HalfToFloat(h);
  }
  static void Store(std::byte* p, size_t i, float v) {
    const uint16_t h = FloatToHalf(v);
    std::memcpy(p + 2 * i, &h, 2);
  }
};
struct Bf16Elem {
  static float Load(const std::byte* p, size_t i) {
    uint16_t h;
    std::memcpy(&h, p + 2 * i, 2);
    return Bf16ToFloat(h);
  }
  static void Store(std::byte* p, size_t i, float v) {
    const uint16_t h = FloatToBf16(v);
    std::memcpy(p + 2 * i, &h, 2);
  }
};
struct Fp32Elem {
  static float Load(const std::byte* p, size_t i) {
    float f;
    std::memcpy(&f, p + 4 * i, 4);
    return f;
  }
  static void Store(std::byte* p, size_t i, float v) { std::memcpy(p + 4 * i, &v, 4); }
};

template <typename F>
absl::Status DispatchDType(DType dtype, F&& f) {
  switch (dtype) {
    case DType::kFp16: return f(Fp16Elem{});
    case DType::kBf16: return f(Bf16Elem{});
    case DType::kFp32: return f(Fp32Elem{});
  }
  return absl::InvalidArgumentError("unknown dtype");
}

float LoadF32(const std::byte* p, size_t i) { return Fp32Elem::Load(p, i); }
void StoreF32(std::byte* p, size_t i, float v) { Fp32Elem::Store(p, i, v); }

const char* KvName(size_t kv) { return kv == 0 ? "K" : "V"; }

absl::Status NonFinite(size_t layer, size_t kv, std::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("block holds an infinite value (layer ", layer,
                                                 ", ", KvName(kv), ", ", std::string(what), ")"));
}

// Scales read back from a blob must be finite and >= 0.
absl::Status CheckScales(const std::byte* scales, size_t count) {
  for (size_t i = 0; i < count; ++i) {
    const float s = LoadF32(scales, i);
    if (!(s >= 0.0f && s <= kFloatMax)) {
      return absl::DataLossError(absl::StrCat("encoded block: scale #", i, " is ", s,
                                              " (want finite and >= 0)"));
    }
  }
  return absl::OkStatus();
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

// Checks shared by every codec. Encode: the input is exactly one block and
// `out` holds `encoded_size`. Decode: `block` holds one block.
absl::Status CheckEncodeArgs(const KvLayout& layout, absl::Span<const std::byte> block,
                             size_t out_size, size_t encoded_size) {
  KVF_RETURN_IF_ERROR(layout.Validate());
  if (block.size() != layout.BytesPerBlock()) {
    return absl::InvalidArgumentError(absl::StrCat("encode: block is ", block.size(),
                                                   " bytes, layout ", layout.DebugString(),
                                                   " needs ", layout.BytesPerBlock()));
  }
  if (out_size < encoded_size) {
    return absl::InvalidArgumentError(absl::StrCat("encode: output buffer is ", out_size,
                                                   " bytes, needs ", encoded_size));
  }
  return absl::OkStatus();
}

absl::Status CheckDecodeOut(const KvLayout& layout, size_t block_size) {
  KVF_RETURN_IF_ERROR(layout.Validate());
  if (block_size < layout.BytesPerBlock()) {
    return absl::InvalidArgumentError(absl::StrCat("decode: output buffer is ", block_size,
                                                   " bytes, layout ", layout.DebugString(),
                                                   " needs ", layout.BytesPerBlock()));
  }
  return absl::OkStatus();
}

// Dimensions of a layout as size_t, and the shape of a section.
struct Dims {
  explicit Dims(const KvLayout& l)
      : layers(l.num_layers), t(l.block_tokens), h(l.num_kv_heads), d(l.head_dim) {}
  size_t layers, t, h, d;
  size_t hd() const { return h * d; }
  size_t section() const { return t * h * d; }
  size_t sections() const { return 2 * layers; }
};

// Row kernels, kept as small functions over (pointer, count) so the compiler
// vectorises them (with runtime alias checks) independently of the caller's
// loop nest.

// max |x| over in[first, first + n), NaN ignored; equal to folding
// MaxIgnoringNan (what the CUDA kernels do). For non-negative floats the bit
// patterns order like the values, so an integer max vectorises where a float
// max that honours NaN does not.
template <typename E>
float AbsMaxRow(const std::byte* in, size_t first, size_t n) {
  int32_t m = 0;
  for (size_t i = 0; i < n; ++i) {
    const int32_t a = static_cast<int32_t>(FloatBits(E::Load(in, first + i)) & 0x7fffffffu);
    const int32_t v = a > 0x7f800000 ? 0 : a;
    m = v > m ? v : m;
  }
  return BitsFloat(static_cast<uint32_t>(m));
}

template <typename E>
void Fp8Row(const std::byte* in, size_t first, size_t n, float inv, uint8_t* out) {
  for (size_t i = 0; i < n; ++i) out[i] = FloatToE4m3(MulRn(E::Load(in, first + i), inv));
}

template <typename E>
void Int8Row(const std::byte* in, size_t first, size_t n, float inv, uint8_t* out) {
  for (size_t i = 0; i < n; ++i) {
    out[i] = static_cast<uint8_t>(QuantizeInt8(E::Load(in, first + i), inv));
  }
}

// ---------------------------------------------------------------------------

class NoneCodec final : public Codec {
 public:
  CodecId id() const override { return CodecId::kNone; }
  size_t EncodedSize(const KvLayout& layout) const override { return layout.BytesPerBlock(); }
  absl::Status Encode(const KvLayout& layout, absl::Span<const std::byte> block,
                      absl::Span<std::byte> out) const override {
    KVF_RETURN_IF_ERROR(CheckEncodeArgs(layout, block, out.size(), layout.BytesPerBlock()));
    std::memcpy(out.data(), block.data(), block.size());
    return absl::OkStatus();
  }
  absl::Status Decode(const KvLayout& layout, absl::Span<const std::byte> encoded,
                      absl::Span<std::byte> block) const override {
    KVF_RETURN_IF_ERROR(CheckDecodeOut(layout, block.size()));
    if (encoded.size() < layout.BytesPerBlock()) {
      return absl::DataLossError(absl::StrCat("encoded block truncated: ", encoded.size(),
                                              " bytes, layout ", layout.DebugString(),
                                              " needs ", layout.BytesPerBlock()));
    }
    std::memcpy(block.data(), encoded.data(), layout.BytesPerBlock());
    return absl::OkStatus();
  }
};

// Base of the quantising codecs: header, argument checks and dtype dispatch.
// Subclasses implement the sections for one dtype in EncodeBody/DecodeBody.
template <typename Derived, CodecId kId>
class BlobCodec : public Codec {
 public:
  CodecId id() const override { return kId; }
  size_t EncodedSize(const KvLayout& layout) const override {
    return GeometryFor(kId, layout).total();
  }
  absl::Status Encode(const KvLayout& layout, absl::Span<const std::byte> block,
                      absl::Span<std::byte> out) const override {
    KVF_RETURN_IF_ERROR(layout.Validate());
    const BlobGeometry g = GeometryFor(kId, layout);
    KVF_RETURN_IF_ERROR(CheckEncodeArgs(layout, block, out.size(), g.total()));
    WriteHeader(MakeHeader(kId, layout), out.data());
    return DispatchDType(layout.dtype, [&](auto elem) {
      return Derived::template EncodeBody<decltype(elem)>(
          layout, block.data(), out.data() + g.scales_offset(),
          reinterpret_cast<uint8_t*>(out.data() + g.meta_offset()),
          reinterpret_cast<uint8_t*>(out.data() + g.payload_offset()));
    });
  }
  absl::Status Decode(const KvLayout& layout, absl::Span<const std::byte> encoded,
                      absl::Span<std::byte> block) const override {
    KVF_RETURN_IF_ERROR(CheckDecodeOut(layout, block.size()));
    KVF_ASSIGN_OR_RETURN(const BlobGeometry g, ValidateBlobHeader(kId, layout, encoded));
    const std::byte* scales = encoded.data() + g.scales_offset();
    KVF_RETURN_IF_ERROR(CheckScales(scales, g.scales_bytes / sizeof(float)));
    return DispatchDType(layout.dtype, [&](auto elem) {
      return Derived::template DecodeBody<decltype(elem)>(
          layout, scales, reinterpret_cast<const uint8_t*>(encoded.data() + g.meta_offset()),
          reinterpret_cast<const uint8_t*>(encoded.data() + g.payload_offset()), block.data());
    });
  }
};

// ---------------------------------------------------------------------------
// fp8_e4m3: scale per (layer, K|V, head) = absmax / 448.

class Fp8Codec final : public BlobCodec<Fp8Codec, CodecId::kFp8E4m3> {
 public:
  template <typename E>
  static absl::Status EncodeBody(const KvLayout& layout, const std::byte* in, std::byte* scales,
                                 uint8_t* /*meta*/, uint8_t* payload) {
    const Dims dm(layout);
    std::vector<float> amax(dm.h), inv(dm.h);
    for (size_t s = 0; s < dm.sections(); ++s) {
      const size_t base = s * dm.section();
      std::fill(amax.begin(), amax.end(), 0.0f);
      for (size_t t = 0; t < dm.t; ++t) {
        for (size_t h = 0; h < dm.h; ++h) {
          const size_t row = base + t * dm.hd() + h * dm.d;
          amax[h] = std::max(amax[h], AbsMaxRow<E>(in, row, dm.d));
        }
      }
      for (size_t h = 0; h < dm.h; ++h) {
        if (!(amax[h] <= kFloatMax)) return NonFinite(s / 2, s % 2, absl::StrCat("head ", h));
        const float scale = Fp8Scale(amax[h]);
        StoreF32(scales, s * dm.h + h, scale);
        inv[h] = Reciprocal(scale);
      }
      for (size_t t = 0; t < dm.t; ++t) {
        for (size_t h = 0; h < dm.h; ++h) {
          const size_t row = base + t * dm.hd() + h * dm.d;
          Fp8Row<E>(in, row, dm.d, inv[h], payload + row);
        }
      }
    }
    return absl::OkStatus();
  }

  template <typename E>
  static absl::Status DecodeBody(const KvLayout& layout, const std::byte* scales,
                                 const uint8_t* /*meta*/, const uint8_t* payload,
                                 std::byte* out) {
    const Dims dm(layout);
    for (size_t s = 0; s < dm.sections(); ++s) {
      const size_t base = s * dm.section();
      for (size_t t = 0; t < dm.t; ++t) {
        for (size_t h = 0; h < dm.h; ++h) {
          const size_t row = base + t * dm.hd() + h * dm.d;
          const float scale = LoadF32(scales, s * dm.h + h);
          for (size_t d = 0; d < dm.d; ++d) {
            E::Store(out, row + d, MulRn(E4m3ToFloat(payload[row + d]), scale));
          }
        }
      }
    }
    return absl::OkStatus();
  }
};

// ---------------------------------------------------------------------------
// int8: symmetric, scale per (layer, K|V, token) = absmax over H*D / 127.

class Int8Codec final : public BlobCodec<Int8Codec, CodecId::kInt8> {
 public:
  template <typename E>
  static absl::Status EncodeBody(const KvLayout& layout, const std::byte* in, std::byte* scales,
                                 uint8_t* /*meta*/, uint8_t* payload) {
    const Dims dm(layout);
    const size_t n = dm.hd();
    for (size_t row_index = 0; row_index < dm.sections() * dm.t; ++row_index) {
      const size_t row = row_index * n;
      const float m = AbsMaxRow<E>(in, row, n);
      if (!(m <= kFloatMax)) {
        const size_t s = row_index / dm.t;
        return NonFinite(s / 2, s % 2, absl::StrCat("token ", row_index % dm.t));
      }
      const float scale = Int8Scale(m);
      StoreF32(scales, row_index, scale);
      Int8Row<E>(in, row, n, Reciprocal(scale), payload + row);
    }
    return absl::OkStatus();
  }

  template <typename E>
  static absl::Status DecodeBody(const KvLayout& layout, const std::byte* scales,
                                 const uint8_t* /*meta*/, const uint8_t* payload,
                                 std::byte* out) {
    const Dims dm(layout);
    const size_t n = dm.hd();
    for (size_t row_index = 0; row_index < dm.sections() * dm.t; ++row_index) {
      const size_t row = row_index * n;
      const float scale = LoadF32(scales, row_index);
      for (size_t i = 0; i < n; ++i) {
        E::Store(out, row + i, DequantizeInt8(static_cast<int8_t>(payload[row + i]), scale));
      }
    }
    return absl::OkStatus();
  }
};

// ---------------------------------------------------------------------------
// int4: KIVI-style groups of 32, K per channel (along tokens), V per token
// (along channels); asymmetric with a 4-bit zero point; group scales are E4M3
// codes relative to an fp32 super-scale per (layer, K|V).

class Int4Codec final : public BlobCodec<Int4Codec, CodecId::kInt4> {
 public:
  template <typename E>
  static absl::Status EncodeBody(const KvLayout& layout, const std::byte* in, std::byte* scales,
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
    return absl::OkStatus();
  }

  template <typename E>
  static absl::Status DecodeBody(const KvLayout& layout, const std::byte* scales,
                                 const uint8_t* meta, const uint8_t* payload, std::byte* out) {
    const Dims dm(layout);
    const Int4Groups gr = Int4GroupsFor(layout);
    const size_t total_groups = gr.per_layer() * dm.layers;
    const uint8_t* codes = meta;
    const uint8_t* zeros = meta + total_groups;
    for (size_t g = 0; g < total_groups; ++g) {
      if ((codes[g] & 0x80) != 0 || codes[g] == 0x7f) {
        return absl::DataLossError(absl::StrCat("encoded block: int4 group #", g,
                                                " has invalid scale code 0x",
                                                absl::Hex(codes[g])));
      }
    }
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
    return absl::OkStatus();
  }
};

}  // namespace

const Codec& CpuNoneCodec() {
  static const NoneCodec* codec = new NoneCodec();
  return *codec;
}
const Codec& CpuFp8Codec() {
  static const Fp8Codec* codec = new Fp8Codec();
  return *codec;
}
const Codec& CpuInt8Codec() {
  static const Int8Codec* codec = new Int8Codec();
  return *codec;
}
const Codec& CpuInt4Codec() {
  static const Int4Codec* codec = new Int4Codec();
  return *codec;
}

}  // namespace kvf::internal
