// GPU twins of the CPU codecs (kernels/codec.h): encode a block that lives in
// device memory into the same blob bytes CpuCodec() produces, and back. Both
// use kernels/internal/codec_math.h per element, so GPU and CPU output agree
// bit for bit (tests/kernels/codec_gpu_test.cc checks it on a GPU machine).
//
// Compiled only with KVF_WITH_CUDA; the header is plain C++ (the stream is a
// cudaStream_t passed as void*, nullptr = the default stream).
//
// Contract of every function here:
//   - all pointers are device memory (or managed) on the current device;
//   - the work is enqueued on `stream` and the call returns without waiting:
//     the caller synchronises before reading results or reusing buffers;
//   - nothing is allocated on the device; scratch lives in the output buffer;
//   - int4 merges 4-bit codes with 32-bit atomicOr, so the aligned 32-bit
//     words overlapping `d_out` must be addressable (true for any cudaMalloc
//     allocation; bytes outside the blob are or-ed with 0, i.e. unchanged);
//   - the returned Status covers argument checks and launch errors only.
#ifndef KVF_KERNELS_CUDA_CODECS_H_
#define KVF_KERNELS_CUDA_CODECS_H_

#include <cstddef>
#include <cstdint>

#include "absl/status/status.h"
#include "common/kv_layout.h"
#include "kernels/codec.h"

namespace kvf {

// Encodes `d_block` (layout.BytesPerBlock() bytes) into `d_out`
// (out_bytes >= CpuCodec(codec).EncodedSize(layout)). kNone is a device copy.
// INVALID_ARGUMENT for a bad layout or sizes; INTERNAL for a launch failure.
// Unlike the CPU codec an infinite input value is not reported: the blob then
// carries an infinite scale, which decoders reject as DATA_LOSS.
absl::Status EncodeOnDevice(CodecId codec, const KvLayout& layout, const void* d_block,
                            void* d_out, size_t out_bytes, void* stream);

// Decodes `d_encoded` (encoded_bytes long) into `d_block` (block_bytes >=
// layout.BytesPerBlock()). The header lives in device memory, so it is checked
// on the device: `d_error` (one device uint32_t, required unless codec is
// kNone) is set to 0 when the blob matched `codec` and `layout`, to 1 when it
// did not, in which case `d_block` is left untouched. Read it after
// synchronising the stream. Scale values are not validated on the device: a
// corrupt payload decodes to garbage values (never out-of-bounds accesses).
absl::Status DecodeOnDevice(CodecId codec, const KvLayout& layout, const void* d_encoded,
                            size_t encoded_bytes, void* d_block, size_t block_bytes,
                            uint32_t* d_error, void* stream);

}  // namespace kvf

#endif  // KVF_KERNELS_CUDA_CODECS_H_
