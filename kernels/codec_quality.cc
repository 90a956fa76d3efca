#include "kernels/codec_quality.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "kernels/internal/codec_math.h"

namespace kvf {
namespace {

absl::Status WithContext(const absl::Status& s, const std::string& context) {
  return absl::Status(s.code(), absl::StrCat(context, ": ", s.message()));
}

// The sums behind rel_l2 and cosine, accumulated over every output.
struct ErrorSums {
  double diff2 = 0, ref2 = 0, got2 = 0, dot = 0;

  void Add(double ref, double got) {
    diff2 += (got - ref) * (got - ref);
    ref2 += ref * ref;
    got2 += got * got;
    dot += ref * got;
  }
  // An all-zero reference (V all zero) has no relative error to speak of:
  // 0 when the outputs agree, infinite when they do not.
  double RelL2() const {
    if (ref2 == 0) return diff2 == 0 ? 0 : std::numeric_limits<double>::infinity();
    return std::sqrt(diff2 / ref2);
  }
  double Cosine() const {
    if (ref2 == 0 || got2 == 0) return ref2 == got2 ? 1 : 0;
    return dot / std::sqrt(ref2 * got2);
  }
};

// log softmax(q k_t / sqrt(D)) over the T tokens of head h of one K section
// ([T][H][D] floats), into `out` (T values).
void LogSoftmax(const float* q, const float* k_section, size_t T, size_t H, size_t D, size_t h,
                double* out) {
  const double inv_sqrt_d = 1.0 / std::sqrt(static_cast<double>(D));
  double mx = -std::numeric_limits<double>::infinity();
  for (size_t t = 0; t < T; ++t) {
    const float* k = k_section + t * H * D + h * D;
    double dot = 0;
    for (size_t d = 0; d < D; ++d) dot += double{q[d]} * double{k[d]};
    out[t] = dot * inv_sqrt_d;
    mx = std::max(mx, out[t]);
  }
  double sum = 0;
  for (size_t t = 0; t < T; ++t) sum += std::exp(out[t] - mx);
  const double lse = mx + std::log(sum);
  for (size_t t = 0; t < T; ++t) out[t] -= lse;
}

// What one block contributes; summed over the sample.
struct Sums {
  ErrorSums both, k_only, v_only;
  double kl = 0;
  size_t rows = 0;  // (layer, head, query) rows, the KL mean's denominator
};

// Attention over one block from original and decoded K and V (both canonical
// [L][2][T][H][D] floats). The logits come from K only, so two softmaxes
// serve four outputs: original, both decoded, K-only and V-only.
void AddBlock(const KvLayout& l, const std::vector<float>& orig, const std::vector<float>& dec,
              const float* queries, int num_queries, Sums* sums) {
  const size_t T = l.block_tokens, H = l.num_kv_heads, D = l.head_dim;
  const size_t section = T * H * D;
  std::vector<double> lp(T), lq(T), p(T), pq(T);
  std::vector<double> o_ref(D), o_both(D), o_k(D), o_v(D);
  for (size_t layer = 0; layer < l.num_layers; ++layer) {
    const float* k = orig.data() + (2 * layer) * section;
    const float* v = orig.data() + (2 * layer + 1) * section;
    const float* k2 = dec.data() + (2 * layer) * section;
    const float* v2 = dec.data() + (2 * layer + 1) * section;
    for (size_t h = 0; h < H; ++h) {
      for (int qi = 0; qi < num_queries; ++qi) {
        const float* q = queries + ((layer * H + h) * num_queries + qi) * D;
        LogSoftmax(q, k, T, H, D, h, lp.data());
        LogSoftmax(q, k2, T, H, D, h, lq.data());
        double kl = 0;
        for (size_t t = 0; t < T; ++t) {
          p[t] = std::exp(lp[t]);
          pq[t] = std::exp(lq[t]);
          kl += p[t] * (lp[t] - lq[t]);
        }
        // KL >= 0, but for nearly equal distributions the terms cancel to a
        // few ulps either side of 0; a negative mean would only confuse.
        sums->kl += std::max(kl, 0.0);
        ++sums->rows;
        std::fill(o_ref.begin(), o_ref.end(), 0.0);
        std::fill(o_both.begin(), o_both.end(), 0.0);
        std::fill(o_k.begin(), o_k.end(), 0.0);
        std::fill(o_v.begin(), o_v.end(), 0.0);
        for (size_t t = 0; t < T; ++t) {
          const float* vr = v + t * H * D + h * D;
          const float* vd = v2 + t * H * D + h * D;
          for (size_t d = 0; d < D; ++d) {
            o_ref[d] += p[t] * vr[d];
            o_both[d] += pq[t] * vd[d];
            o_k[d] += pq[t] * vr[d];
            o_v[d] += p[t] * vd[d];
          }
        }
        for (size_t d = 0; d < D; ++d) {
          sums->both.Add(o_ref[d], o_both[d]);
          sums->k_only.Add(o_ref[d], o_k[d]);
          sums->v_only.Add(o_ref[d], o_v[d]);
        }
      }
    }
  }
}

}  // namespace

absl::StatusOr<CodecQuality> MeasureCodec(CodecId id, const KvLayout& layout,
                                          absl::Span<const std::byte> blocks,
                                          const QualityOptions& options) {
  KVF_RETURN_IF_ERROR(layout.Validate());
  const size_t block_bytes = layout.BytesPerBlock();
  if (blocks.empty() || blocks.size() % block_bytes != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("the sample is ", blocks.size(), " bytes: want one or more whole blocks of ",
                     block_bytes, " bytes (", layout.DebugString(), ")"));
  }
  if (options.queries_per_head < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("queries_per_head is ", options.queries_per_head, ": want at least 1"));
  }
  const size_t num_queries = static_cast<size_t>(options.queries_per_head);
  const size_t query_floats =
      size_t{layout.num_layers} * layout.num_kv_heads * num_queries * layout.head_dim;
  std::vector<float> random_queries;
  absl::Span<const float> queries = options.queries;
  if (queries.empty()) {
    // Random directions: no model's queries at hand, so no channel is
    // favoured (real queries may lean on outlier channels more or less).
    std::mt19937 rng(options.seed);
    std::normal_distribution<float> n01(0.0f, 1.0f);
    random_queries.resize(query_floats);
    for (float& x : random_queries) x = n01(rng);
    queries = random_queries;
  } else if (queries.size() != query_floats) {
    return absl::InvalidArgumentError(
        absl::StrCat(queries.size(), " query floats: want [L][H][Q][D] = ", query_floats));
  }

  const Codec& codec = CpuCodec(id);
  const size_t num_blocks = blocks.size() / block_bytes;
  std::vector<std::byte> encoded(codec.EncodedSize(layout));
  std::vector<std::byte> decoded(block_bytes);
  Sums sums;
  for (size_t b = 0; b < num_blocks; ++b) {
    const absl::Span<const std::byte> block = blocks.subspan(b * block_bytes, block_bytes);
    const std::string where = absl::StrCat(std::string(CodecName(id)), ", block ", b);
    if (absl::Status s = codec.Encode(layout, block, absl::MakeSpan(encoded)); !s.ok()) {
      return WithContext(s, absl::StrCat("encoding ", where));
    }
    if (absl::Status s = codec.Decode(layout, encoded, absl::MakeSpan(decoded)); !s.ok()) {
      return WithContext(s, absl::StrCat("decoding ", where));
    }
    const std::vector<float> orig = BlockToFloats(block, layout.dtype);
    // After Encode, so a codec's own error wins; this catches NaN (which the
    // codecs pass through) and infinities under `none`.
    for (size_t i = 0; i < orig.size(); ++i) {
      if (!std::isfinite(orig[i])) {
        return absl::InvalidArgumentError(
            absl::StrCat("block ", b, " element ", i, " is ", orig[i],
                         ": attention over non-finite values cannot be measured"));
      }
    }
    AddBlock(layout, orig, BlockToFloats(decoded, layout.dtype), queries.data(),
             options.queries_per_head, &sums);
  }

  CodecQuality q;
  q.codec = id;
  q.rel_l2 = sums.both.RelL2();
  q.cosine = sums.both.Cosine();
  q.kl = sums.kl / static_cast<double>(sums.rows);
  q.k_only_rel_l2 = sums.k_only.RelL2();
  q.v_only_rel_l2 = sums.v_only.RelL2();
  q.encoded_bytes = encoded.size();
  q.size_ratio = static_cast<double>(block_bytes) / static_cast<double>(encoded.size());
  return q;
}

std::vector<std::byte> FloatsToBlock(absl::Span<const float> values, DType dtype) {
  std::vector<std::byte> out(values.size() * DTypeSize(dtype));
  for (size_t i = 0; i < values.size(); ++i) {
    if (dtype == DType::kFp32) {
      std::memcpy(out.data() + 4 * i, &values[i], 4);
    } else {
      const uint16_t h = dtype == DType::kFp16 ? internal::FloatToHalf(values[i])
                                               : internal::FloatToBf16(values[i]);
      std::memcpy(out.data() + 2 * i, &h, 2);
    }
  }
  return out;
}

std::vector<float> BlockToFloats(absl::Span<const std::byte> bytes, DType dtype) {
  const size_t n = bytes.size() / DTypeSize(dtype);
  std::vector<float> out(n);
  for (size_t i = 0; i < n; ++i) {
    if (dtype == DType::kFp32) {
      std::memcpy(&out[i], bytes.data() + 4 * i, 4);
    } else {
      uint16_t h;
      std::memcpy(&h, bytes.data() + 2 * i, 2);
      out[i] = dtype == DType::kFp16 ? internal::HalfToFloat(h) : internal::Bf16ToFloat(h);
    }
  }
  return out;
}

absl::StatusOr<SyntheticKvKind> ParseSyntheticKvKind(std::string_view name) {
  if (name == "outliers") return SyntheticKvKind::kOutliers;
  if (name == "gaussian") return SyntheticKvKind::kGaussian;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown synthetic data '", std::string(name), "' (want outliers or gaussian)"));
}

absl::StatusOr<std::vector<std::byte>> SyntheticKvBlocks(const KvLayout& l, SyntheticKvKind kind,
                                                         size_t num_blocks, uint32_t seed) {
  KVF_RETURN_IF_ERROR(l.Validate());
  if (num_blocks == 0) return absl::InvalidArgumentError("want at least one synthetic block");
  std::mt19937 rng(seed);
  std::normal_distribution<float> n01(0.0f, 1.0f);
  std::uniform_real_distribution<float> gain(10.0f, 50.0f);
  const size_t T = l.block_tokens, H = l.num_kv_heads, D = l.head_dim;
  const size_t per_block = l.ElementsPerBlock();
  std::vector<float> v(per_block * num_blocks);
  std::vector<float> mean(H * D), amp(H * D);
  // The draw order (channel statistics of a section, then its tokens block by
  // block) keeps one block's values those of the accuracy table in
  // docs/codecs.md.
  for (size_t layer = 0; layer < l.num_layers; ++layer) {
    for (size_t kv = 0; kv < 2; ++kv) {
      for (size_t j = 0; j < H * D; ++j) {
        mean[j] = 0.5f * n01(rng);
        amp[j] = 1.0f;
      }
      if (kind == SyntheticKvKind::kOutliers && kv == 0) {
        for (size_t h = 0; h < H; ++h) {
          for (int o = 0; o < 4; ++o) {
            const size_t j = h * D + rng() % D;
            const float g = gain(rng);
            mean[j] = (rng() & 1 ? g : -g);
            amp[j] = 0.2f * g;
          }
        }
      }
      for (size_t b = 0; b < num_blocks; ++b) {
        float* section = v.data() + b * per_block + (layer * 2 + kv) * T * H * D;
        for (size_t t = 0; t < T; ++t) {
          for (size_t j = 0; j < H * D; ++j) section[t * H * D + j] = mean[j] + amp[j] * n01(rng);
        }
      }
    }
  }
  return FloatsToBlock(v, l.dtype);
}

}  // namespace kvf
