// Device launchers of the kernel core: codecs and paged gather/scatter on
// blocks in GPU memory. Abseil-free; compiled only where nvcc exists
// (KVF_WITH_CUDA). kernels/cuda_codecs.h and kernels/paged.h wrap these in
// absl::Status for the rest of the project.
//
// Contract of every function here:
//   - pointers are device memory (or managed) on the current device, except
//     PagedKvDesc::layer_bases (a host array whose values are device pointers)
//     and page_ids (a host array: the launcher validates the ids and passes
//     them to the kernels by value, so there is no device page table to
//     allocate or upload);
//   - the work is enqueued on `stream` and the call returns without waiting:
//     the caller synchronises before reading results or reusing buffers;
//   - nothing is allocated on the device and nothing is zeroed first: every
//     byte of an output blob is written by the encoder;
//   - int4 sets a 4-bit code whose byte it shares with another thread's run
//     of codes (odd head_dim, zero points of groups handled apart) with
//     32-bit atomicAnd/atomicOr on the aligned word holding it, so the
//     aligned 32-bit words overlapping the output blob must be addressable
//     (true for any cudaMalloc allocation; bytes outside the blob keep their
//     values);
//   - any alignment of the blob and block pointers works (elements must be
//     aligned to their size); 16-byte aligned rows and D % 8 == 0 take the
//     vector paths;
//   - the Result covers argument checks (INVALID_ARGUMENT, DATA_LOSS for a
//     short input) and launch errors (INTERNAL, with the CUDA error's name and
//     text); faults during execution surface at the caller's synchronisation.
#ifndef KVF_KERNELS_CORE_CUDA_OPS_H_
#define KVF_KERNELS_CORE_CUDA_OPS_H_

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "kernels/core/paged.h"
#include "kernels/core/types.h"

namespace kvf::kcore {

// Encodes `d_block` (shape.BytesPerBlock() bytes, canonical order) into
// `d_out` (out_bytes >= StoredSize(codec, shape)); the same bytes CpuEncode
// writes, in the format version BlobVersionFor picks. kNone is a device copy.
// An infinite input value is not reported: the blob then carries an infinite
// (or, for a version-2 K channel holding both infinities, NaN) scale or
// centre, which decoders that validate the blob (Codec::Decode) reject.
Result EncodeOnDevice(CodecId codec, const KvShape& shape, uint64_t fingerprint,
                      const void* d_block, void* d_out, size_t out_bytes, cudaStream_t stream);

// Decodes `d_encoded` into `d_block` (block_bytes >= shape.BytesPerBlock()).
// The header lives in device memory, so it is checked on the device:
// `d_error` (one device uint32_t, required unless codec is kNone) is set to 0
// when the blob's header is exactly the one encoders write now for (codec,
// shape, fingerprint) or the version-1 header of an older encoder, and
// `encoded_bytes` holds that version's sections; else to 1 and `d_block` is
// left untouched. DATA_LOSS (on the host) when `encoded_bytes` is shorter
// than every accepted version's blob. Scale values are not validated: a
// corrupt payload decodes to garbage values, never to out-of-bounds accesses.
Result DecodeOnDevice(CodecId codec, const KvShape& shape, uint64_t fingerprint,
                      const void* d_encoded, size_t encoded_bytes, void* d_block,
                      size_t block_bytes, uint32_t* d_error, cudaStream_t stream);

// Gathers the pages `page_ids` of `src` into one stored block at `d_out`
// (out_bytes >= StoredSize(codec, block)): the device twin of GatherCpu, byte
// for byte. kNone copies rows with 16-byte accesses where alignment allows;
// the other codecs read the pages directly in the encoder (fused, no
// intermediate block).
Result GatherOnDevice(const PagedKvDesc& src, const KvShape& block, const int32_t* page_ids,
                      size_t num_page_ids, CodecId codec, uint64_t fingerprint, void* d_out,
                      size_t out_bytes, cudaStream_t stream);

// Scatters a stored block into the pages `page_ids` of `dst`: the device twin
// of ScatterCpu. For codecs other than kNone the blob's header is checked on
// the device as in DecodeOnDevice (either format version; `d_error`
// required; on a mismatch no page is written) and decoding writes straight
// into the pages.
Result ScatterOnDevice(const PagedKvDesc& dst, const KvShape& block, const int32_t* page_ids,
                       size_t num_page_ids, CodecId codec, uint64_t fingerprint,
                       const void* d_in, size_t in_bytes, uint32_t* d_error,
                       cudaStream_t stream);

// The codec kernels index 8-element items with 32-bit arithmetic: blocks of
// 2^31 items or more (of any codec but kNone) are INVALID_ARGUMENT.
//
// Upper bound on layers per kernel launch: layer base pointers travel in the
// kernel's parameters, so a model with more layers takes several launches.
inline constexpr uint32_t kMaxLayersPerLaunch = 64;

}  // namespace kvf::kcore

#endif  // KVF_KERNELS_CORE_CUDA_OPS_H_
