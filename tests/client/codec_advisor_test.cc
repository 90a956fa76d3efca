// AdviseCodec (client/codec_advisor.h) on synthetic KV with outlier channels:
// the pick is the smallest codec within the budget, and it moves as the budget
// crosses the errors the advisor measured.
#include "client/codec_advisor.h"

#include <cmath>
#include <set>
#include <vector>

#include "gtest/gtest.h"

namespace kvf {
namespace {

KvLayout Layout() {
  KvLayout l;
  l.num_layers = 2;
  l.num_kv_heads = 8;
  l.head_dim = 128;
  l.block_tokens = 32;
  l.dtype = DType::kFp16;
  return l;
}

std::vector<std::byte> Sample(size_t blocks = 2) {
  auto sample = SyntheticKvBlocks(Layout(), SyntheticKvKind::kOutliers, blocks, 11);
  EXPECT_TRUE(sample.ok()) << sample.status();
  return sample.ok() ? *sample : std::vector<std::byte>();
}

const CodecQuality& Of(const CodecAdvice& a, CodecId id) {
  return a.codecs[static_cast<size_t>(id)];
}

// The properties that define the pick, checked against the measured values.
void ExpectBestWithinBudget(const CodecAdvice& a, double budget) {
  const CodecQuality& pick = Of(a, a.recommended);
  if (a.recommended != CodecId::kNone) EXPECT_LE(pick.rel_l2, budget);
  for (const CodecQuality& q : a.codecs) {
    if (q.rel_l2 <= budget) {
      EXPECT_GE(q.encoded_bytes, pick.encoded_bytes)
          << CodecName(q.codec) << " fits the budget " << budget << " and is smaller than "
          << CodecName(a.recommended);
    }
  }
}

TEST(AdviseCodec, MeasuresEveryCodec) {
  absl::StatusOr<CodecAdvice> a = AdviseCodec(Layout(), Sample(), 0.01);
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_EQ(a->codecs.size(), size_t{kNumCodecs});
  for (int i = 0; i < kNumCodecs; ++i) {
    const CodecQuality& q = a->codecs[i];
    EXPECT_EQ(q.codec, static_cast<CodecId>(i));
    EXPECT_EQ(q.encoded_bytes, CpuCodec(q.codec).EncodedSize(Layout()));
    // Lossy codecs on outlier-heavy K: a measurable error, never a wild one.
    if (q.codec != CodecId::kNone) {
      EXPECT_GT(q.rel_l2, 0.0);
      EXPECT_LT(q.rel_l2, 0.5);
    }
  }
}

TEST(AdviseCodec, GenerousBudgetPicksTheSmallestCodec) {
  absl::StatusOr<CodecAdvice> a = AdviseCodec(Layout(), Sample(), 0.5);
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->recommended, CodecId::kInt4) << a->reason;
  ExpectBestWithinBudget(*a, 0.5);
  EXPECT_EQ(a->reason.rfind("int4: ", 0), 0u) << a->reason;
  EXPECT_NE(a->reason.find("budget 50%"), std::string::npos) << a->reason;
  EXPECT_NE(a->reason.find("the smallest codec"), std::string::npos) << a->reason;
}

TEST(AdviseCodec, ZeroBudgetKeepsBlocksUncompressed) {
  absl::StatusOr<CodecAdvice> a = AdviseCodec(Layout(), Sample(), 0.0);
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->recommended, CodecId::kNone) << a->reason;
  EXPECT_EQ(a->reason.rfind("none: every codec exceeds", 0), 0u) << a->reason;
  // The reason names every codec that lost, with its error.
  for (const char* name : {"fp8_e4m3", "int8", "int4"}) {
    EXPECT_NE(a->reason.find(name), std::string::npos) << a->reason;
  }
}

TEST(AdviseCodec, RejectsBadSamplesAndBudgets) {
  const std::vector<std::byte> sample = Sample(1);
  EXPECT_EQ(AdviseCodec(Layout(), absl::MakeConstSpan(sample).first(sample.size() - 1), 0.01)
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(AdviseCodec(Layout(), {}, 0.01).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(AdviseCodec(Layout(), sample, -0.01).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(AdviseCodec(Layout(), sample, std::nan("")).status().code(),
            absl::StatusCode::kInvalidArgument);
}

// Sweeps the budget across the measured errors: at a codec's own error it
// qualifies (so the pick is it or smaller); just below, it no longer does.
TEST(AdviseCodec, RecommendationFollowsTheBudget) {
  const std::vector<std::byte> sample = Sample();
  absl::StatusOr<CodecAdvice> base = AdviseCodec(Layout(), sample, 0.0);
  ASSERT_TRUE(base.ok()) << base.status();
  std::set<CodecId> picks;
  for (const CodecQuality& q : base->codecs) {
    if (q.codec == CodecId::kNone) continue;
    SCOPED_TRACE(CodecName(q.codec));
    absl::StatusOr<CodecAdvice> at = AdviseCodec(Layout(), sample, q.rel_l2);
    ASSERT_TRUE(at.ok()) << at.status();
    // Deterministic: the same sample measures the same.
    EXPECT_EQ(Of(*at, q.codec).rel_l2, q.rel_l2);
    ExpectBestWithinBudget(*at, q.rel_l2);
    EXPECT_LE(Of(*at, at->recommended).encoded_bytes, q.encoded_bytes) << at->reason;
    picks.insert(at->recommended);

    const double below = std::nextafter(q.rel_l2, 0.0);
    absl::StatusOr<CodecAdvice> under = AdviseCodec(Layout(), sample, below);
    ASSERT_TRUE(under.ok()) << under.status();
    EXPECT_NE(under->recommended, q.codec) << under->reason;
    ExpectBestWithinBudget(*under, below);
    picks.insert(under->recommended);
  }
  // none (below the smallest error), int4 (at the largest), and at least one
  // of fp8/int8 in between: the sweep really moves the pick.
  EXPECT_TRUE(picks.count(CodecId::kNone));
  EXPECT_TRUE(picks.count(CodecId::kInt4));
  EXPECT_GE(picks.size(), 3u);
}

}  // namespace
}  // namespace kvf
