// The CPU codecs behind kvf::CpuCodec(): argument and header validation with
// absl::Status messages, then the Abseil-free reference bodies of
// kernels/core/cpu_codec_ref.cc (the twins of the CUDA kernels). Formats:
// kernels/core/blob_format.h and docs/codecs.md.
#include "kernels/internal/cpu_codecs.h"

#include <cstring>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "kernels/core/cpu_codec_ref.h"
#include "kernels/internal/codec_format.h"
#include "kernels/internal/codec_math.h"
#include "kernels/internal/status_convert.h"

namespace kvf::internal {
namespace {

float LoadF32(const std::byte* p, size_t i) {
  float f;
  std::memcpy(&f, p + 4 * i, 4);
  return f;
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

// Format v2's K channel parameters (bf16): centres finite; int8's channel
// scales finite and >= 0.
absl::Status CheckChannelParams(CodecId id, const KvLayout& layout, const std::byte* meta) {
  const size_t channels = size_t{layout.num_kv_heads} * layout.head_dim;
  const size_t per_layer = id == CodecId::kInt8 ? 2 * channels : channels;
  for (size_t l = 0; l < layout.num_layers; ++l) {
    for (size_t i = 0; i < per_layer; ++i) {
      uint16_t b;
      std::memcpy(&b, meta + 2 * (l * per_layer + i), 2);
      const bool is_scale = i >= channels;
      if ((b & 0x7f80u) == 0x7f80u || (is_scale && (b & 0x8000u) != 0)) {
        return absl::DataLossError(absl::StrCat(
            "encoded block: layer ", l, " K channel ", i % channels, " has invalid ",
            is_scale ? "scale" : "centre", " 0x", absl::Hex(b), " (bf16; want finite",
            is_scale ? " and >= 0)" : ")"));
      }
    }
  }
  return absl::OkStatus();
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
template <CodecId kId>
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
    return ToStatus(
        kcore::CpuEncode(kId, ShapeOf(layout), layout.Fingerprint(), block.data(), out.data()));
  }
  absl::Status Decode(const KvLayout& layout, absl::Span<const std::byte> encoded,
                      absl::Span<std::byte> block) const override {
    KVF_RETURN_IF_ERROR(CheckDecodeOut(layout, block.size()));
    KVF_ASSIGN_OR_RETURN(const BlobFormat format, ValidateBlobHeader(kId, layout, encoded));
    const BlobGeometry& g = format.geometry;
    const std::byte* scales = encoded.data() + g.scales_offset();
    KVF_RETURN_IF_ERROR(CheckScales(scales, g.scales_bytes / sizeof(float)));
    if (format.version == kBlobVersion2) {
      KVF_RETURN_IF_ERROR(CheckChannelParams(kId, layout, encoded.data() + g.meta_offset()));
    }
    if (kId == CodecId::kInt4) {
      // Group scale codes must be non-negative, non-NaN E4M3 codes.
      const size_t groups = Int4GroupsFor(layout).per_layer() * layout.num_layers;
      const uint8_t* codes = reinterpret_cast<const uint8_t*>(encoded.data() + g.meta_offset());
      for (size_t i = 0; i < groups; ++i) {
        if ((codes[i] & 0x80) != 0 || codes[i] == 0x7f) {
          return absl::DataLossError(absl::StrCat("encoded block: int4 group #", i,
                                                  " has invalid scale code 0x",
                                                  absl::Hex(codes[i])));
        }
      }
    }
    return ToStatus(kcore::CpuDecode(kId, ShapeOf(layout), encoded.data(), block.data()));
  }
};

using Fp8Codec = BlobCodec<CodecId::kFp8E4m3>;
using Int8Codec = BlobCodec<CodecId::kInt8>;
using Int4Codec = BlobCodec<CodecId::kInt4>;

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
