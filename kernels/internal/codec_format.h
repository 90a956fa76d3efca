// The stored format of an encoded KV block (every codec but `none`), shared
// by the CPU codecs and the CUDA launchers; the layout of the bytes lives in
// kernels/core/blob_format.h (Abseil-free), this header adds KvLayout
// overloads and header validation. docs/codecs.md describes the format.
//
//   [BlobHeader, 56 bytes, little-endian]
//   [scales : fp32, header.scales_bytes]
//   [meta   : per-group bytes, header.meta_bytes (int4 only, else 0)]
//   [payload: codes, header.payload_bytes]
//
// Element order everywhere is the canonical one of common/kv_layout.h,
// [L][2 (K,V)][T][H][D]; a "section" is one (layer, K|V) slice of T*H*D
// elements.
#ifndef KVF_KERNELS_INTERNAL_CODEC_FORMAT_H_
#define KVF_KERNELS_INTERNAL_CODEC_FORMAT_H_

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "common/kv_layout.h"
#include "kernels/codec.h"
#include "kernels/core/blob_format.h"

namespace kvf::internal {

// The format itself is Abseil-free (kernels/core/blob_format.h); these names
// keep the codec code reading as before.
using kcore::BlobGeometry;
using kcore::BlobHeader;
using kcore::CeilDiv;
using kcore::Int4Groups;
using kcore::kBlobHeaderSize;
using kcore::kBlobMagic;
using kcore::BlobVersionFor;
using kcore::GeometryForVersion;
using kcore::kBlobVersion1;
using kcore::kBlobVersion2;
using kcore::kInt4GroupSize;
using kcore::WriteHeader;

// The core shape of a layout (same fields; DType and ElemType share values).
inline kcore::KvShape ShapeOf(const KvLayout& layout) {
  kcore::KvShape s;
  s.num_layers = layout.num_layers;
  s.num_kv_heads = layout.num_kv_heads;
  s.head_dim = layout.head_dim;
  s.block_tokens = layout.block_tokens;
  s.dtype = static_cast<kcore::ElemType>(layout.dtype);
  return s;
}

inline Int4Groups Int4GroupsFor(const KvLayout& layout) {
  return kcore::Int4GroupsFor(ShapeOf(layout));
}

inline BlobGeometry GeometryFor(CodecId codec, const KvLayout& layout) {
  return kcore::GeometryFor(codec, ShapeOf(layout));
}

// The header an encoder writes for `codec` and `layout`.
BlobHeader MakeHeader(CodecId codec, const KvLayout& layout);

inline uint16_t BlobVersionFor(CodecId codec, const KvLayout& layout) {
  return kcore::BlobVersionFor(codec, ShapeOf(layout));
}

// A blob's checked header: its format version and the geometry of its sections.
struct BlobFormat {
  uint16_t version;
  BlobGeometry geometry;
};

// Parses and checks the header at the front of `encoded` against what
// `codec` and `layout` expect, in any format version the codec has:
//   DATA_LOSS        shorter than a header, bad magic or version, section
//                    sizes that disagree with the layout, or a blob shorter
//                    than its sections;
//   INVALID_ARGUMENT a blob of another codec, dtype or layout.
// Checks only the header; scale values are the codec's to check.
absl::StatusOr<BlobFormat> ValidateBlobHeader(CodecId codec, const KvLayout& layout,
                                                absl::Span<const std::byte> encoded);
}  // namespace kvf::internal

#endif  // KVF_KERNELS_INTERNAL_CODEC_FORMAT_H_
