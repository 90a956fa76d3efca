// The absl::Status face of the device half of the kernel core
// (kernels/core/cuda_ops.h): kernels/cuda_codecs.h and the device functions of
// kernels/paged.h. Compiled only with KVF_WITH_CUDA.
#include <cuda_runtime_api.h>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "kernels/core/cuda_ops.h"
#include "kernels/cuda_codecs.h"
#include "kernels/internal/codec_format.h"
#include "kernels/internal/status_convert.h"
#include "kernels/paged.h"

namespace kvf {
namespace {

using internal::ShapeOf;

cudaStream_t Stream(void* stream) { return static_cast<cudaStream_t>(stream); }

// Adds the layout to a core error so the message says which block it was.
absl::Status WithLayout(const kcore::Result& r, const KvLayout& layout) {
  if (r.ok()) return absl::OkStatus();
  return internal::ToStatus(
      kcore::Result{r.code, absl::StrCat(r.message, " (layout ", layout.DebugString(), ")")});
}

}  // namespace

absl::Status EncodeOnDevice(CodecId codec, const KvLayout& layout, const void* d_block,
                            void* d_out, size_t out_bytes, void* stream) {
  KVF_RETURN_IF_ERROR(layout.Validate());
  return WithLayout(kcore::EncodeOnDevice(codec, ShapeOf(layout), layout.Fingerprint(), d_block,
                                          d_out, out_bytes, Stream(stream)),
                    layout);
}

absl::Status DecodeOnDevice(CodecId codec, const KvLayout& layout, const void* d_encoded,
                            size_t encoded_bytes, void* d_block, size_t block_bytes,
                            uint32_t* d_error, void* stream) {
  KVF_RETURN_IF_ERROR(layout.Validate());
  return WithLayout(kcore::DecodeOnDevice(codec, ShapeOf(layout), layout.Fingerprint(),
                                          d_encoded, encoded_bytes, d_block, block_bytes, d_error,
                                          Stream(stream)),
                    layout);
}

absl::Status GatherPagesOnDevice(const PagedKvDesc& src, const KvLayout& block,
                                 absl::Span<const int32_t> page_ids, CodecId codec, void* d_out,
                                 size_t out_bytes, void* stream) {
  KVF_RETURN_IF_ERROR(block.Validate());
  return WithLayout(kcore::GatherOnDevice(src, ShapeOf(block), page_ids.data(), page_ids.size(),
                                          codec, block.Fingerprint(), d_out, out_bytes,
                                          Stream(stream)),
                    block);
}

absl::Status ScatterPagesOnDevice(const PagedKvDesc& dst, const KvLayout& block,
                                  absl::Span<const int32_t> page_ids, CodecId codec,
                                  const void* d_in, size_t in_bytes, uint32_t* d_error,
                                  void* stream) {
  KVF_RETURN_IF_ERROR(block.Validate());
  return WithLayout(kcore::ScatterOnDevice(dst, ShapeOf(block), page_ids.data(), page_ids.size(),
                                           codec, block.Fingerprint(), d_in, in_bytes, d_error,
                                           Stream(stream)),
                    block);
}

}  // namespace kvf
