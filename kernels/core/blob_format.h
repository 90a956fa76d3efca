// The stored format of an encoded KV block (every codec but `none`), shared
// by the CPU codecs and the CUDA launchers. Abseil-free; docs/codecs.md
// describes it for readers of the bytes, kernels/internal/codec_format.h adds
// header validation with absl::Status messages.
//
//   [BlobHeader, 56 bytes, little-endian]
//   [scales : fp32, header.scales_bytes]
//   [meta   : header.meta_bytes (int4 group codes; v2 K channel parameters)]
//   [payload: codes, header.payload_bytes]
//
// Element order everywhere is the canonical one of common/kv_layout.h,
// [L][2 (K,V)][T][H][D]; a "section" is one (layer, K|V) slice of T*H*D
// elements.
//
// Two format versions. Version 1 is every codec's original format. Version 2
// (fp8_e4m3 and int8 only) centres K per channel: attention keys carry a few
// outlier channels 10-50x larger than the rest, and a shared scale spends the
// codes' precision on them; storing each channel's centre (and, for int8, its
// own scale) brings the attention error from ~4-6% to under 1% for int8.
// Encoders write version 2 wherever its extra bytes keep the block at least
// 1.9x smaller than fp16 (BlobVersionFor); decoders read both.
#ifndef KVF_KERNELS_CORE_BLOB_FORMAT_H_
#define KVF_KERNELS_CORE_BLOB_FORMAT_H_

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "kernels/core/types.h"

namespace kvf::kcore {

static_assert(std::endian::native == std::endian::little,
              "the blob format is little-endian and written with memcpy");

inline constexpr uint32_t kBlobMagic = 0x4346564bu;  // bytes "KVFC"
inline constexpr uint16_t kBlobVersion1 = 1;
inline constexpr uint16_t kBlobVersion2 = 2;

struct BlobHeader {
  uint32_t magic;
  uint16_t version;
  uint8_t codec;  // CodecId
  uint8_t dtype;  // ElemType (== DType) of the unencoded block
  uint64_t layout_fingerprint;  // KvLayout::Fingerprint()
  uint32_t num_layers;  // the layout again, so a mismatch can be named
  uint32_t num_kv_heads;
  uint32_t head_dim;
  uint32_t block_tokens;
  uint64_t scales_bytes;
  uint64_t meta_bytes;
  uint64_t payload_bytes;
};
static_assert(std::is_trivially_copyable_v<BlobHeader>);
static_assert(sizeof(BlobHeader) == 56, "BlobHeader must have no padding");
inline constexpr size_t kBlobHeaderSize = sizeof(BlobHeader);

// int4 groups: 32 consecutive tokens (K, per channel) or channels (V, per
// token); the last group of a row is short when T or D is not a multiple.
inline constexpr uint32_t kInt4GroupSize = 32;

inline constexpr uint32_t CeilDiv(uint32_t a, uint32_t b) { return (a + b - 1) / b; }

// Per-section group counts of int4. K group (h, d, tg) has index
// (h * D + d) * Gt + tg; V group (t, h, dg) has index (t * H + h) * Gd + dg.
// Groups of layer l are numbered l * (k + v) + [K groups, then V groups].
struct Int4Groups {
  uint32_t gt;  // token groups per K channel: ceil(T / 32)
  uint32_t gd;  // channel groups per V row: ceil(D / 32)
  size_t k;     // K groups per layer: H * D * gt
  size_t v;     // V groups per layer: T * H * gd
  size_t per_layer() const { return k + v; }
};

inline Int4Groups Int4GroupsFor(const KvShape& shape) {
  Int4Groups g;
  g.gt = CeilDiv(shape.block_tokens, kInt4GroupSize);
  g.gd = CeilDiv(shape.head_dim, kInt4GroupSize);
  g.k = size_t{shape.num_kv_heads} * shape.head_dim * g.gt;
  g.v = size_t{shape.block_tokens} * shape.num_kv_heads * g.gd;
  return g;
}

// Section sizes of `codec` in format `version` for a valid shape:
//   none:     payload = the raw block, no header (total() still counts one;
//             use StoredSize()).
//   fp8_e4m3: scales [L][2][H] fp32; payload one E4M3 byte per element.
//             v2: meta [L][H*D] bf16 K channel centres; K scales are of the
//             centred values.
//   int8:     v1: scales [L][2][T] fp32; payload one int8 per element.
//             v2: scales [L][T] fp32 (V tokens only); meta [L][2][H*D] bf16,
//             per layer the K channel centres then the K channel scales.
//   int4:     scales [L][2] fp32 super-scales; meta = one E4M3 scale code
//             per group, then the groups' 4-bit zero points two per byte (low
//             nibble = even group); payload two 4-bit codes per byte (low
//             nibble = even element).
struct BlobGeometry {
  size_t scales_bytes = 0;
  size_t meta_bytes = 0;
  size_t payload_bytes = 0;

  size_t scales_offset() const { return kBlobHeaderSize; }
  size_t meta_offset() const { return kBlobHeaderSize + scales_bytes; }
  size_t payload_offset() const { return meta_offset() + meta_bytes; }
  size_t total() const { return payload_offset() + payload_bytes; }
};

// Whether `version` exists for `codec` (v2: fp8_e4m3 and int8 only).
inline constexpr bool HasBlobVersion(CodecId codec, uint16_t version) {
  return version == kBlobVersion1 ||
         (version == kBlobVersion2 && (codec == CodecId::kFp8E4m3 || codec == CodecId::kInt8));
}

inline BlobGeometry GeometryForVersion(CodecId codec, const KvShape& shape, uint16_t version) {
  const size_t sections = size_t{2} * shape.num_layers;
  const size_t n = shape.ElementsPerBlock();
  const size_t channels = size_t{shape.num_kv_heads} * shape.head_dim;  // per layer
  const bool v2 = version == kBlobVersion2;
  BlobGeometry g;
  switch (codec) {
    case CodecId::kNone:
      g.payload_bytes = shape.BytesPerBlock();
      break;
    case CodecId::kFp8E4m3:
      g.scales_bytes = sections * shape.num_kv_heads * sizeof(float);
      g.meta_bytes = v2 ? shape.num_layers * channels * sizeof(uint16_t) : 0;
      g.payload_bytes = n;
      break;
    case CodecId::kInt8:
      g.scales_bytes = (v2 ? shape.num_layers : sections) * shape.block_tokens * sizeof(float);
      g.meta_bytes = v2 ? shape.num_layers * 2 * channels * sizeof(uint16_t) : 0;
      g.payload_bytes = n;
      break;
    case CodecId::kInt4: {
      const size_t groups = Int4GroupsFor(shape).per_layer() * shape.num_layers;
      g.scales_bytes = sections * sizeof(float);
      g.meta_bytes = groups + (groups + 1) / 2;
      g.payload_bytes = (n + 1) / 2;
      break;
    }
  }
  return g;
}

// The version encoders write for `codec` and `shape`: 2 where it exists and
// its stored size stays at least 1.9x smaller than the block in fp16 (for
// Llama-3-8B's H=8, D=128: fp8 from 32 tokens per block, int8 from 64), else
// 1. A pure function of the shape, so every encoder (CPU, GPU, any build)
// writes the same bytes.
inline uint16_t BlobVersionFor(CodecId codec, const KvShape& shape) {
  if (!HasBlobVersion(codec, kBlobVersion2)) return kBlobVersion1;
  const size_t fp16_bytes = 2 * shape.ElementsPerBlock();
  const size_t v2_bytes = GeometryForVersion(codec, shape, kBlobVersion2).total();
  return v2_bytes * 19 <= fp16_bytes * 10 ? kBlobVersion2 : kBlobVersion1;
}

// The geometry encoders write.
inline BlobGeometry GeometryFor(CodecId codec, const KvShape& shape) {
  return GeometryForVersion(codec, shape, BlobVersionFor(codec, shape));
}

// Bytes of the stored form of one block as encoders write it: the raw block
// for `none` (no header), header + sections otherwise.
inline size_t StoredSize(CodecId codec, const KvShape& shape) {
  return codec == CodecId::kNone ? shape.BytesPerBlock() : GeometryFor(codec, shape).total();
}

// The header of format `version` for `codec` and `shape`; `fingerprint` is
// the layout's KvLayout::Fingerprint() (the core does not hash: the wrappers
// pass it in, standalone tests pass any value).
inline BlobHeader MakeHeaderForVersion(CodecId codec, const KvShape& shape, uint64_t fingerprint,
                                       uint16_t version) {
  const BlobGeometry g = GeometryForVersion(codec, shape, version);
  BlobHeader h;
  std::memset(&h, 0, sizeof(h));
  h.magic = kBlobMagic;
  h.version = version;
  h.codec = static_cast<uint8_t>(codec);
  h.dtype = static_cast<uint8_t>(shape.dtype);
  h.layout_fingerprint = fingerprint;
  h.num_layers = shape.num_layers;
  h.num_kv_heads = shape.num_kv_heads;
  h.head_dim = shape.head_dim;
  h.block_tokens = shape.block_tokens;
  h.scales_bytes = g.scales_bytes;
  h.meta_bytes = g.meta_bytes;
  h.payload_bytes = g.payload_bytes;
  return h;
}

// The header an encoder writes.
inline BlobHeader MakeHeader(CodecId codec, const KvShape& shape, uint64_t fingerprint) {
  return MakeHeaderForVersion(codec, shape, fingerprint, BlobVersionFor(codec, shape));
}

// The format version of a blob whose first bytes are at `blob` (at least a
// header's worth). Only meaningful once the header has been checked.
inline uint16_t BlobVersionOf(const void* blob) {
  BlobHeader h;
  std::memcpy(&h, blob, sizeof(h));
  return h.version;
}

inline void WriteHeader(const BlobHeader& header, void* out) {
  std::memcpy(out, &header, sizeof(header));
}

}  // namespace kvf::kcore

#endif  // KVF_KERNELS_CORE_BLOB_FORMAT_H_
