// Accuracy of each codec measured where it matters, on attention outputs
// (MeasureCodec, kernels/codec_quality.h), for synthetic KV with and without
// outlier channels. Prints tables (docs/codecs.md quotes them) and asserts
// regression bounds; then MeasureCodec's own contract.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/codec.h"
#include "kernels/codec_quality.h"
#include "kernels/internal/codec_format.h"
#include "tests/kernels/codec_test_util.h"

namespace kvf {
namespace {

using ::kvf::testing::MakeLayout;

constexpr uint32_t kDataSeed = 2024;

// Measures every codec on one synthetic block of `l`; prints the table.
std::vector<CodecQuality> MeasureAll(const KvLayout& l, SyntheticKvKind kind, bool print = true) {
  const QualityOptions options;
  auto block = SyntheticKvBlocks(l, kind, 1, kDataSeed);
  EXPECT_TRUE(block.ok()) << block.status();
  if (!block.ok()) return {};
  if (print) {
    std::printf("attention accuracy, %s data, %s, %d random queries per (layer, head):\n",
                kind == SyntheticKvKind::kOutliers ? "outlier" : "gaussian",
                l.DebugString().c_str(), options.queries_per_head);
    std::printf("  %-9s %13s %10s %10s %12s %12s %8s\n", "codec", "rel L2 error", "cosine", "KL",
                "K-only err", "V-only err", "ratio");
  }
  std::vector<CodecQuality> out;
  for (CodecId id : testing::kAllCodecs) {
    absl::StatusOr<CodecQuality> q = MeasureCodec(id, l, *block, options);
    EXPECT_TRUE(q.ok()) << CodecName(id) << ": " << q.status();
    if (!q.ok()) continue;
    if (print) {
      std::printf("  %-9s %12.3f%% %10.6f %10.3g %11.3f%% %11.3f%% %7.2fx\n",
                  std::string(CodecName(id)).c_str(), 100 * q->rel_l2, q->cosine, q->kl,
                  100 * q->k_only_rel_l2, 100 * q->v_only_rel_l2, q->size_ratio);
    }
    out.push_back(*q);
  }
  return out;
}

// Bounds every table must meet, whatever the data: `none` is exact, and KL is
// a finite, non-negative number that grows with the K error.
void ExpectSane(const std::vector<CodecQuality>& all) {
  ASSERT_EQ(all.size(), std::size(testing::kAllCodecs));
  for (const CodecQuality& q : all) {
    SCOPED_TRACE(CodecName(q.codec));
    EXPECT_TRUE(std::isfinite(q.kl));
    EXPECT_GE(q.kl, 0.0);
    if (q.codec == CodecId::kNone) {
      EXPECT_EQ(q.rel_l2, 0.0);
      EXPECT_EQ(q.kl, 0.0);
      EXPECT_EQ(q.k_only_rel_l2, 0.0);
      EXPECT_EQ(q.v_only_rel_l2, 0.0);
      EXPECT_EQ(q.size_ratio, 1.0);
    } else {
      // Lossy K moves the softmax: a KL of exactly 0 would mean K was never
      // decoded into the logits.
      EXPECT_GT(q.kl, 0.0);
      EXPECT_GT(q.size_ratio, 1.9);
    }
  }
}

void RunOutlierAccuracy(const KvLayout& l) {
  const std::vector<CodecQuality> all = MeasureAll(l, SyntheticKvKind::kOutliers);
  ExpectSane(all);
  for (const CodecQuality& q : all) {
    // Format v2 (K centred per channel) where the shape gets it; the issue's
    // target is < 1%. int8 meets it there; fp8 cannot (E4M3's 3 mantissa
    // bits leave ~2% in the centred outlier channels, docs/codecs.md), so its
    // bound is the measured level. Version 1 (16-token blocks) keeps the
    // regression bounds of its measured 6-7%.
    const bool v2 = internal::BlobVersionFor(q.codec, l) == 2;
    switch (q.codec) {
      case CodecId::kNone: break;
      case CodecId::kFp8E4m3: EXPECT_LT(q.rel_l2, v2 ? 0.035 : 0.09); break;
      case CodecId::kInt8: EXPECT_LT(q.rel_l2, v2 ? 0.01 : 0.08); break;
      case CodecId::kInt4: EXPECT_LT(q.rel_l2, 0.20); break;
    }
    if (v2) EXPECT_LT(q.kl, 0.002) << CodecName(q.codec);
    EXPECT_GT(q.cosine, q.codec == CodecId::kInt4 ? 0.98 : 0.995) << CodecName(q.codec);
  }
}

TEST(CodecAccuracy, AttentionOutputsLlama3BlockOf256Tokens) {
  RunOutlierAccuracy(MakeLayout(2, 8, 128, 256, DType::kFp16));
}

TEST(CodecAccuracy, AttentionOutputsLlama3BlockOf16Tokens) {
  RunOutlierAccuracy(MakeLayout(4, 8, 128, 16, DType::kFp16));
}

TEST(CodecAccuracy, AttentionOutputsBf16) {
  RunOutlierAccuracy(MakeLayout(2, 8, 128, 64, DType::kBf16));
}

// Without outlier channels every codec's scale fits the data, so the errors
// are those of the formats' precision alone: far below the outlier case.
TEST(CodecAccuracy, AttentionOutputsWithoutOutliers) {
  const KvLayout l = MakeLayout(2, 8, 128, 256, DType::kFp16);
  const std::vector<CodecQuality> gaussian = MeasureAll(l, SyntheticKvKind::kGaussian);
  ExpectSane(gaussian);
  // The same shape with outliers (printed by AttentionOutputsLlama3BlockOf256Tokens).
  const std::vector<CodecQuality> outliers =
      MeasureAll(l, SyntheticKvKind::kOutliers, /*print=*/false);
  ASSERT_EQ(gaussian.size(), outliers.size());
  for (size_t i = 1; i < gaussian.size(); ++i) {
    SCOPED_TRACE(CodecName(gaussian[i].codec));
    EXPECT_LT(gaussian[i].k_only_rel_l2, outliers[i].k_only_rel_l2);
    EXPECT_LT(gaussian[i].kl, outliers[i].kl);
    EXPECT_GT(gaussian[i].cosine, 0.995);
  }
}

// MeasureCodec's contract.

TEST(MeasureCodec, RejectsSamplesThatAreNotWholeBlocks) {
  const KvLayout l = MakeLayout(1, 2, 32, 16);
  const std::vector<std::byte> sample(l.BytesPerBlock() + 2);
  for (size_t size : {size_t{0}, l.BytesPerBlock() - 2, l.BytesPerBlock() + 2}) {
    absl::StatusOr<CodecQuality> q =
        MeasureCodec(CodecId::kInt8, l, absl::MakeConstSpan(sample).first(size));
    EXPECT_EQ(q.status().code(), absl::StatusCode::kInvalidArgument) << size;
  }
}

TEST(MeasureCodec, RejectsNonFiniteValues) {
  const KvLayout l = MakeLayout(1, 2, 32, 16);
  std::vector<float> v(l.ElementsPerBlock(), 1.0f);
  v[5] = std::numeric_limits<float>::infinity();
  // The quantising codecs refuse to encode it (their error is returned), and
  // `none`, which stores anything, is refused by the measurement.
  for (CodecId id : testing::kAllCodecs) {
    absl::StatusOr<CodecQuality> q = MeasureCodec(id, l, FloatsToBlock(v, l.dtype));
    EXPECT_EQ(q.status().code(), absl::StatusCode::kInvalidArgument) << CodecName(id);
  }
  v[5] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_EQ(MeasureCodec(CodecId::kFp8E4m3, l, FloatsToBlock(v, l.dtype)).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(MeasureCodec, UsesTheCallersQueries) {
  const KvLayout l = MakeLayout(2, 2, 64, 32);
  auto block = SyntheticKvBlocks(l, SyntheticKvKind::kOutliers, 1, kDataSeed);
  ASSERT_TRUE(block.ok()) << block.status();
  // Zero queries make every logit 0: the softmax is uniform whatever K is,
  // so K's error cannot show, and all of the error is V's.
  QualityOptions zero;
  zero.queries_per_head = 3;
  const std::vector<float> queries(size_t{2} * 2 * 3 * 64, 0.0f);
  zero.queries = queries;
  absl::StatusOr<CodecQuality> q = MeasureCodec(CodecId::kInt4, l, *block, zero);
  ASSERT_TRUE(q.ok()) << q.status();
  EXPECT_EQ(q->kl, 0.0);
  EXPECT_EQ(q->k_only_rel_l2, 0.0);
  EXPECT_GT(q->v_only_rel_l2, 0.0);
  EXPECT_EQ(q->rel_l2, q->v_only_rel_l2);

  zero.queries = absl::MakeConstSpan(queries).first(queries.size() - 1);
  EXPECT_EQ(MeasureCodec(CodecId::kInt4, l, *block, zero).status().code(),
            absl::StatusCode::kInvalidArgument);
  QualityOptions none;
  none.queries_per_head = 0;
  EXPECT_EQ(MeasureCodec(CodecId::kInt4, l, *block, none).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(MeasureCodec, AveragesKlOverEveryBlock) {
  const KvLayout l = MakeLayout(2, 2, 64, 32);
  auto blocks = SyntheticKvBlocks(l, SyntheticKvKind::kOutliers, 2, kDataSeed);
  ASSERT_TRUE(blocks.ok()) << blocks.status();
  const absl::Span<const std::byte> both = *blocks;
  const size_t n = l.BytesPerBlock();
  auto all = MeasureCodec(CodecId::kFp8E4m3, l, both);
  auto first = MeasureCodec(CodecId::kFp8E4m3, l, both.first(n));
  auto second = MeasureCodec(CodecId::kFp8E4m3, l, both.subspan(n));
  ASSERT_TRUE(all.ok() && first.ok() && second.ok());
  // Each block has as many (layer, head, query) rows, so the mean of both is
  // the mean of the two means; the second block is a different sample.
  EXPECT_NE(first->kl, second->kl);
  EXPECT_NEAR(all->kl, (first->kl + second->kl) / 2, 1e-12 * all->kl);
  const double lo = std::min(first->rel_l2, second->rel_l2);
  const double hi = std::max(first->rel_l2, second->rel_l2);
  EXPECT_GE(all->rel_l2, lo);
  EXPECT_LE(all->rel_l2, hi);
  EXPECT_EQ(all->encoded_bytes, CpuCodec(CodecId::kFp8E4m3).EncodedSize(l));
}

TEST(SyntheticKv, IsDeterministicAndShapedByItsKind) {
  const KvLayout l = MakeLayout(1, 2, 64, 16, DType::kFp32);
  auto a = SyntheticKvBlocks(l, SyntheticKvKind::kOutliers, 3, 7);
  auto b = SyntheticKvBlocks(l, SyntheticKvKind::kOutliers, 3, 7);
  auto g = SyntheticKvBlocks(l, SyntheticKvKind::kGaussian, 3, 7);
  ASSERT_TRUE(a.ok() && b.ok() && g.ok());
  EXPECT_EQ(a->size(), 3 * l.BytesPerBlock());
  EXPECT_EQ(*a, *b);
  // K's largest magnitude: outlier channels reach 10-50x, gaussian data
  // stays within a few units.
  auto k_absmax = [&](const std::vector<std::byte>& bytes) {
    const std::vector<float> v = BlockToFloats(bytes, l.dtype);
    float m = 0;
    for (size_t i = 0; i < l.ElementsPerBlock() / 2; ++i) m = std::max(m, std::fabs(v[i]));
    return m;
  };
  EXPECT_GT(k_absmax(*a), 8.0f);
  EXPECT_LT(k_absmax(*g), 8.0f);
  EXPECT_EQ(SyntheticKvBlocks(l, SyntheticKvKind::kGaussian, 0, 7).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseSyntheticKvKind("gaussian").value(), SyntheticKvKind::kGaussian);
  EXPECT_FALSE(ParseSyntheticKvKind("uniform").ok());
}

}  // namespace
}  // namespace kvf
