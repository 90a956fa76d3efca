// Paged gather/scatter between an inference engine's KV pages and kvfabric
// blocks: the absl::Status face of kernels/core/paged.h (descriptor, layouts
// and semantics are documented there and in docs/kernels.md).
//
//   PagedKvDesc pages = VllmPagedLayout(L, H, D, /*page_size=*/16, num_pages,
//                                       ElemType::kFp16, layer_data_ptrs);
//   KVF_RETURN_IF_ERROR(GatherPagesOnDevice(pages, layout, page_ids,
//                                           CodecId::kFp8E4m3, d_blob,
//                                           blob_bytes, stream));
//
// The CPU functions work on host memory and are the reference twins of the
// device ones (byte-identical output). The device functions enqueue on
// `stream` (a cudaStream_t; nullptr = the default stream) and return without
// waiting, allocate nothing on the device, and report argument errors
// (INVALID_ARGUMENT / DATA_LOSS) and launch errors (INTERNAL, with the CUDA
// error's text); without CUDA compiled in they return FAILED_PRECONDITION.
// All functions are thread-safe (no shared state).
#ifndef KVF_KERNELS_PAGED_H_
#define KVF_KERNELS_PAGED_H_

#include <cstddef>
#include <cstdint>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "common/kv_layout.h"
#include "kernels/codec.h"
#include "kernels/core/paged.h"

namespace kvf {

using kcore::ElemType;
using kcore::LayerMajorPagedLayout;
using kcore::PagedKvDesc;
using kcore::PagedLayoutKind;
using kcore::VllmPagedLayout;

// The element type of a layout's dtype (same values).
inline ElemType ElemTypeOf(DType dtype) { return static_cast<ElemType>(dtype); }

// Checks a descriptor (kcore::ValidatePagedDesc): INVALID_ARGUMENT naming the
// field.
absl::Status ValidatePagedKvDesc(const PagedKvDesc& desc);

// Gathers pages `page_ids` (block.block_tokens / page_size of them) of `src`
// into the stored form of one block of `block` in `out` (at least
// CpuCodec(codec).EncodedSize(block) bytes). Host memory.
absl::Status GatherPages(const PagedKvDesc& src, const KvLayout& block,
                         absl::Span<const int32_t> page_ids, CodecId codec,
                         absl::Span<std::byte> out);

// Scatters a stored block (validated like Codec::Decode) into pages
// `page_ids` of `dst`; page ids must be distinct. Host memory. On an error
// no page is written.
absl::Status ScatterPages(const PagedKvDesc& dst, const KvLayout& block,
                          absl::Span<const int32_t> page_ids, CodecId codec,
                          absl::Span<const std::byte> in);

// Device twins (kernels/core/cuda_ops.h): `src`/`dst` base pointers, `d_out`,
// `d_in` and `d_error` are device memory; `page_ids` is host memory. For
// codecs other than kNone the scatter checks the blob's header on the device
// and sets *d_error to 0 (match) or 1 (mismatch, nothing written).
absl::Status GatherPagesOnDevice(const PagedKvDesc& src, const KvLayout& block,
                                 absl::Span<const int32_t> page_ids, CodecId codec, void* d_out,
                                 size_t out_bytes, void* stream);
absl::Status ScatterPagesOnDevice(const PagedKvDesc& dst, const KvLayout& block,
                                  absl::Span<const int32_t> page_ids, CodecId codec,
                                  const void* d_in, size_t in_bytes, uint32_t* d_error,
                                  void* stream);

}  // namespace kvf

#endif  // KVF_KERNELS_PAGED_H_
