// The CPU reference codecs, Abseil-free. kvf::CpuCodec() (kernels/codec.h)
// validates its arguments and calls these; the standalone GPU tests call them
// directly as the reference the CUDA kernels must match bit for bit.
#ifndef KVF_KERNELS_CORE_CPU_CODEC_REF_H_
#define KVF_KERNELS_CORE_CPU_CODEC_REF_H_

#include <cstddef>
#include <cstdint>

#include "kernels/core/types.h"

namespace kvf::kcore {

// Encodes one block of `shape` (BytesPerBlock() bytes at `block`) into `out`
// (StoredSize(codec, shape) bytes; blob_format.h), header included, with
// `fingerprint` as the header's layout fingerprint. `shape` must be valid
// (KvLayout::Validate). INVALID_ARGUMENT when the block holds an infinite
// value (the scale would be infinite); NaN is ignored by the scales.
Result CpuEncode(CodecId codec, const KvShape& shape, uint64_t fingerprint, const void* block,
                 void* out);

// CpuEncode in format `version` (kernels/core/blob_format.h) instead of the
// one encoders pick: tests and tools that must produce an older format.
// INVALID_ARGUMENT for a version the codec does not have.
Result CpuEncodeVersion(CodecId codec, const KvShape& shape, uint64_t fingerprint,
                        uint16_t version, const void* block, void* out);

// Decodes a stored block (any format version) into `block` (BytesPerBlock() bytes). Precondition:
// the header and sizes were checked (CheckBlobHeaderBytes, or the richer
// ValidateBlobHeader of the wrapper). Scale values are not checked here: a
// corrupt scale yields garbage values, never an out-of-bounds access.
Result CpuDecode(CodecId codec, const KvShape& shape, const void* blob, void* block);

// The check the device decoders make: `blob` starts with exactly the header
// an encoder writes for (codec, shape, fingerprint), or the version-1 header
// of an older encoder, and holds its sections.
// kNone: only the size. DATA_LOSS when short, INVALID_ARGUMENT on mismatch.
Result CheckBlobHeaderBytes(CodecId codec, const KvShape& shape, uint64_t fingerprint,
                            const void* blob, size_t blob_bytes);

}  // namespace kvf::kcore

#endif  // KVF_KERNELS_CORE_CPU_CODEC_REF_H_
