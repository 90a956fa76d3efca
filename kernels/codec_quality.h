// Codec quality: what a model would feel from storing its KV blocks with a
// codec (docs/codecs.md, "Choosing a codec").
//
// Element-wise error says little about a KV cache: a small error in a large K
// channel moves every attention logit, the same error in V barely shows. So
// quality is measured where the model reads the cache, on attention outputs
// softmax(q K^T / sqrt(D)) V per (block, layer, head, query), computed in
// double from the original block (as stored in its dtype) and from the block
// after CpuCodec(id) encoded and decoded it.
//
// Also here, so the accuracy test, the advisor's tests and kvf-codec-advisor
// share them: float <-> block conversion, and synthetic KV with and without
// the outlier channels real K caches show.
//
// Every function is thread-safe (no shared state) and allocates its buffers.
#ifndef KVF_KERNELS_CODEC_QUALITY_H_
#define KVF_KERNELS_CODEC_QUALITY_H_

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "common/kv_layout.h"
#include "kernels/codec.h"

namespace kvf {

// One codec's measured effect on attention over a sample of blocks.
struct CodecQuality {
  CodecId codec = CodecId::kNone;
  // ||o' - o|| / ||o|| over every attention output o of the sample, o' the
  // output from decoded K and V. 0 when both are all zero.
  double rel_l2 = 0;
  // Cosine similarity of o' and o, all outputs as one vector.
  double cosine = 1;
  // Mean over (block, layer, head, query) of KL(p || p') in nats, p and p'
  // the softmax probabilities over the block's tokens from original and
  // decoded K. Depends on K only; V does not enter the softmax.
  double kl = 0;
  // rel_l2 with only K decoded (original V), and with only V decoded: which
  // half of the cache the error comes from.
  double k_only_rel_l2 = 0;
  double v_only_rel_l2 = 0;
  // layout.BytesPerBlock() / encoded_bytes: how much smaller a stored block is.
  double size_ratio = 1;
  // Stored bytes of one block (Codec::EncodedSize), header included.
  size_t encoded_bytes = 0;
};

struct QualityOptions {
  // Queries per (layer, head); each query attends over one block's tokens.
  int queries_per_head = 8;
  // Seed of the random N(0, 1) queries, used when `queries` is empty.
  uint32_t seed = 99;
  // The caller's queries, [L][H][queries_per_head][D] floats, the same for
  // every block (real queries from a model make the numbers that model's).
  // Not owned; must outlive the call. Empty: random.
  absl::Span<const float> queries;
};

// Measures codec `id` on `blocks`: one or more whole unencoded blocks of
// `layout` in canonical order, concatenated. Each block is encoded and
// decoded with CpuCodec(id); see CodecQuality for what is measured.
//
// INVALID_ARGUMENT: an invalid layout, an empty sample or one whose size is
// not a multiple of layout.BytesPerBlock(), queries_per_head < 1, `queries`
// of the wrong size, or a sample holding a non-finite value (attention over
// it means nothing). An encode or decode error of the codec (e.g. an
// infinite value) is returned with the block's index added.
absl::StatusOr<CodecQuality> MeasureCodec(CodecId id, const KvLayout& layout,
                                          absl::Span<const std::byte> blocks,
                                          const QualityOptions& options = {});

// Floats as elements of `dtype` (fp16/bf16 rounded to nearest even, as the
// codecs round), and back. The output of FloatsToBlock is
// values.size() * DTypeSize(dtype) bytes; BlockToFloats reads
// bytes.size() / DTypeSize(dtype) whole elements.
std::vector<std::byte> FloatsToBlock(absl::Span<const float> values, DType dtype);
std::vector<float> BlockToFloats(absl::Span<const std::byte> bytes, DType dtype);

// Synthetic KV, for tests and for showing the trade-offs without a model.
enum class SyntheticKvKind {
  // What real K caches look like and why KIVI quantises K per channel: K has
  // a per-channel mean 0.5 * N(0, 1) plus N(0, 1), and 4 outlier channels
  // per (layer, head) whose magnitude is 10-50x the rest (consistent sign
  // across tokens, 20% variation). V: per-channel mean plus N(0, 1).
  kOutliers,
  // K and V both per-channel mean 0.5 * N(0, 1) plus N(0, 1): the easy case.
  kGaussian,
};

// "outliers" or "gaussian"; INVALID_ARGUMENT otherwise.
absl::StatusOr<SyntheticKvKind> ParseSyntheticKvKind(std::string_view name);

// `num_blocks` consecutive blocks of one sequence (channel means and outlier
// channels are per (layer, head, channel), shared by every block, as a
// model's are), in layout.dtype, concatenated. Deterministic for a seed.
// INVALID_ARGUMENT for an invalid layout or num_blocks == 0.
absl::StatusOr<std::vector<std::byte>> SyntheticKvBlocks(const KvLayout& layout,
                                                         SyntheticKvKind kind, size_t num_blocks,
                                                         uint32_t seed);

}  // namespace kvf

#endif  // KVF_KERNELS_CODEC_QUALITY_H_
