// Codec: how a KV block is stored (docs/design.md, "Codec").
//
// A codec turns one unencoded block (canonical layer-major element order, see
// common/kv_layout.h) into its stored form and back. `none` stores the raw
// bytes, so an RMA read lands directly in an engine's buffer. Every other codec
// produces a self-describing blob: a fixed header (magic, format version,
// codec, dtype, layout fingerprint, section sizes), then the scales, then the
// quantized payload. Decode validates the header, so a blob of another codec,
// another layout or a truncated one is an error, never garbage.
//
// The CPU implementations here are the reference twins of the CUDA kernels in
// kernels/cuda/; both compute each element with the same inline functions
// (kernels/internal/codec_math.h) so their outputs agree.
#ifndef KVF_KERNELS_CODEC_H_
#define KVF_KERNELS_CODEC_H_

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "common/kv_layout.h"
#include "kernels/core/types.h"

namespace kvf {

// CodecId and kNumCodecs are defined in kernels/core/types.h (the Abseil-free
// kernel core shares them).

std::string_view CodecName(CodecId id);
// Accepts "none", "fp8_e4m3" (or "fp8"), "int8", "int4".
absl::StatusOr<CodecId> ParseCodec(std::string_view name);
// Validates a codec byte from a wire header or a config.
absl::StatusOr<CodecId> CodecFromWire(uint8_t value);

// Stateless and thread-safe: one instance serves every thread.
class Codec {
 public:
  virtual ~Codec() = default;

  virtual CodecId id() const = 0;

  // Bytes of the stored form of one block of `layout`, header and scales
  // included. `layout` must be valid.
  virtual size_t EncodedSize(const KvLayout& layout) const = 0;

  // Encodes `block` (exactly layout.BytesPerBlock() bytes) into `out`
  // (at least EncodedSize(layout) bytes). INVALID_ARGUMENT on wrong sizes or
  // a layout that fails Validate().
  virtual absl::Status Encode(const KvLayout& layout, absl::Span<const std::byte> block,
                              absl::Span<std::byte> out) const = 0;

  // Decodes a stored form back into `block` (at least layout.BytesPerBlock()
  // bytes; only those are written). `encoded` may be longer than the stored
  // form (a slab page): trailing bytes are ignored. DATA_LOSS for a truncated
  // or corrupt blob (bad magic/version, section sizes, non-finite scales);
  // INVALID_ARGUMENT when the blob is of another codec, dtype or layout, or
  // `block` is too small. Never reads outside `encoded`, whatever its bytes.
  // The formats are described in docs/codecs.md.
  virtual absl::Status Decode(const KvLayout& layout, absl::Span<const std::byte> encoded,
                              absl::Span<std::byte> block) const = 0;
};

// The CPU reference codec for `id`. The pointer lives for the whole program.
const Codec& CpuCodec(CodecId id);

}  // namespace kvf

#endif  // KVF_KERNELS_CODEC_H_
