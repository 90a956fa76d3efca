// Choosing a codec (docs/codecs.md, "Choosing a codec"): measure every codec
// on a sample of a model's own KV blocks and pick the smallest stored form
// whose error on attention outputs stays within a budget.
//
// Why a sample and not a table: how much a codec hurts depends on the model.
// K caches with large outlier channels lose far more to fp8/int8 than smooth
// ones (docs/codecs.md, "Accuracy"), so the same codec can be free for one
// model and 5% attention error for another.
//
// Thread-safety: pure functions; CPU only (the CPU codecs are bit-identical
// to the CUDA ones, so the numbers hold for the GPU data path too).
#ifndef KVF_CLIENT_CODEC_ADVISOR_H_
#define KVF_CLIENT_CODEC_ADVISOR_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "common/kv_layout.h"
#include "kernels/codec.h"
#include "kernels/codec_quality.h"

namespace kvf {

struct CodecAdvice {
  // Every codec, in CodecId order, as MeasureCodec measured it.
  std::vector<CodecQuality> codecs;
  // The codec with the smallest stored block whose rel_l2 is within the
  // budget (on equal sizes, the more accurate); `none` when no other is.
  CodecId recommended = CodecId::kNone;
  // One line naming the measured numbers, e.g. "int8: 0.47% attention error
  // (budget 1%), 1.98x smaller; int4 exceeds the budget at 8%".
  std::string reason;
};

// Measures every codec on `sample_blocks` (one or more whole unencoded
// blocks of `layout`, concatenated; see MeasureCodec) and recommends one for
// an error budget `max_rel_error` on attention outputs (0.01: 1% relative L2
// error). `none` always qualifies: it is exact.
//
// INVALID_ARGUMENT for a negative or NaN budget, and every error of
// MeasureCodec (bad layout, a sample that is not whole blocks, non-finite
// values, bad queries). CPU cost: four attention passes per codec over the
// sample; a few blocks of a real layout take well under a second.
absl::StatusOr<CodecAdvice> AdviseCodec(const KvLayout& layout,
                                        absl::Span<const std::byte> sample_blocks,
                                        double max_rel_error, const QualityOptions& options = {});

}  // namespace kvf

#endif  // KVF_CLIENT_CODEC_ADVISOR_H_
