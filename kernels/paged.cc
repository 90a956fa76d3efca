#include "kernels/paged.h"

#include <vector>

#include "common/status_macros.h"
#include "kernels/core/paged.h"
#include "kernels/internal/codec_format.h"
#include "kernels/internal/status_convert.h"

namespace kvf {

using internal::ShapeOf;
using internal::ToStatus;

absl::Status ValidatePagedKvDesc(const PagedKvDesc& desc) {
  return ToStatus(kcore::ValidatePagedDesc(desc));
}

absl::Status GatherPages(const PagedKvDesc& src, const KvLayout& block,
                         absl::Span<const int32_t> page_ids, CodecId codec,
                         absl::Span<std::byte> out) {
  KVF_RETURN_IF_ERROR(block.Validate());
  return ToStatus(kcore::GatherCpu(src, ShapeOf(block), page_ids.data(), page_ids.size(), codec,
                                   block.Fingerprint(), out.data(), out.size()));
}

absl::Status ScatterPages(const PagedKvDesc& dst, const KvLayout& block,
                          absl::Span<const int32_t> page_ids, CodecId codec,
                          absl::Span<const std::byte> in) {
  KVF_RETURN_IF_ERROR(block.Validate());
  const kcore::KvShape shape = ShapeOf(block);
  KVF_RETURN_IF_ERROR(ToStatus(
      kcore::ValidatePagedTransfer(dst, shape, page_ids.data(), page_ids.size(), true)));
  if (codec == CodecId::kNone) {
    return ToStatus(kcore::ScatterCpu(dst, shape, page_ids.data(), page_ids.size(), codec, 0,
                                      in.data(), in.size()));
  }
  // Decode with the full checks of the CPU codec (header, scales), then copy.
  std::vector<std::byte> raw(block.BytesPerBlock());
  KVF_RETURN_IF_ERROR(CpuCodec(codec).Decode(block, in, absl::MakeSpan(raw)));
  return ToStatus(kcore::ScatterCpu(dst, shape, page_ids.data(), page_ids.size(), CodecId::kNone,
                                    0, raw.data(), raw.size()));
}

#if !KVF_WITH_CUDA
absl::Status GatherPagesOnDevice(const PagedKvDesc&, const KvLayout&, absl::Span<const int32_t>,
                                 CodecId, void*, size_t, void*) {
  return absl::FailedPreconditionError("GatherPagesOnDevice: kvfabric was built without CUDA");
}
absl::Status ScatterPagesOnDevice(const PagedKvDesc&, const KvLayout&, absl::Span<const int32_t>,
                                  CodecId, const void*, size_t, uint32_t*, void*) {
  return absl::FailedPreconditionError("ScatterPagesOnDevice: kvfabric was built without CUDA");
}
#endif

}  // namespace kvf
