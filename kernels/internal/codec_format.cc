#include "kernels/internal/codec_format.h"

#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace kvf::internal {

BlobHeader MakeHeader(CodecId codec, const KvLayout& layout) {
  return kcore::MakeHeader(codec, ShapeOf(layout), layout.Fingerprint());
}

absl::StatusOr<BlobFormat> ValidateBlobHeader(CodecId codec, const KvLayout& layout,
                                                absl::Span<const std::byte> encoded) {
  if (encoded.size() < kBlobHeaderSize) {
    return absl::DataLossError(absl::StrCat("encoded block: ", encoded.size(),
                                            " bytes is shorter than the ", kBlobHeaderSize,
                                            "-byte header"));
  }
  BlobHeader h;
  std::memcpy(&h, encoded.data(), sizeof(h));
  if (h.magic != kBlobMagic) {
    return absl::DataLossError(
        absl::StrCat("encoded block: bad magic 0x", absl::Hex(h.magic), " (want 0x",
                     absl::Hex(kBlobMagic), ")"));
  }
  if (h.version != kBlobVersion1 && h.version != kBlobVersion2) {
    return absl::DataLossError(absl::StrCat("encoded block: unsupported format version ",
                                            h.version, " (this build reads ", kBlobVersion1,
                                            " and ", kBlobVersion2, ")"));
  }
  KVF_ASSIGN_OR_RETURN(const CodecId stored, CodecFromWire(h.codec));
  if (stored != codec) {
    return absl::InvalidArgumentError(absl::StrCat("encoded block is ", std::string(CodecName(stored)),
                                                   ", decoder is ", std::string(CodecName(codec))));
  }
  if (h.dtype != static_cast<uint8_t>(layout.dtype)) {
    return absl::InvalidArgumentError(absl::StrCat("encoded block has dtype code ", h.dtype,
                                                   ", layout wants ", std::string(DTypeName(layout.dtype))));
  }
  if (h.layout_fingerprint != layout.Fingerprint()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "encoded block is of another KV layout (L=", h.num_layers, " H=", h.num_kv_heads,
        " D=", h.head_dim, " T=", h.block_tokens, ", fingerprint 0x",
        absl::Hex(h.layout_fingerprint), "); decoder has ", layout.DebugString(),
        ", fingerprint 0x", absl::Hex(layout.Fingerprint())));
  }
  if (h.num_layers != layout.num_layers || h.num_kv_heads != layout.num_kv_heads ||
      h.head_dim != layout.head_dim || h.block_tokens != layout.block_tokens) {
    return absl::DataLossError(
        "encoded block: layout fields disagree with its fingerprint (corrupt header)");
  }
  if (!kcore::HasBlobVersion(codec, h.version)) {
    return absl::DataLossError(absl::StrCat("encoded block: ", std::string(CodecName(codec)),
                                            " has no format version ", h.version));
  }
  const BlobGeometry g = GeometryForVersion(codec, ShapeOf(layout), h.version);
  if (h.scales_bytes != g.scales_bytes || h.meta_bytes != g.meta_bytes ||
      h.payload_bytes != g.payload_bytes) {
    return absl::DataLossError(absl::StrCat(
        "encoded block: section sizes (scales ", h.scales_bytes, ", meta ", h.meta_bytes,
        ", payload ", h.payload_bytes, ") disagree with the layout (", g.scales_bytes, ", ",
        g.meta_bytes, ", ", g.payload_bytes, ")"));
  }
  if (encoded.size() < g.total()) {
    return absl::DataLossError(absl::StrCat("encoded block truncated: ", encoded.size(),
                                            " bytes, header says ", g.total()));
  }
  return BlobFormat{h.version, g};
}

}  // namespace kvf::internal
