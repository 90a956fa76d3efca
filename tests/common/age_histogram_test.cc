#include "common/age_histogram.h"

#include <cmath>

#include "gtest/gtest.h"

namespace kvf {
namespace {

TEST(AgeHistogram, BucketZeroIsUnderOneSecond) {
  EXPECT_EQ(AgeHistogram::BucketOf(absl::ZeroDuration()), 0);
  EXPECT_EQ(AgeHistogram::BucketOf(absl::Seconds(-5)), 0);
  EXPECT_EQ(AgeHistogram::BucketOf(absl::Milliseconds(999)), 0);
  EXPECT_EQ(AgeHistogram::BucketOf(absl::Seconds(1) - absl::Nanoseconds(1)), 0);
  EXPECT_EQ(AgeHistogram::BucketOf(absl::Seconds(1)), 1);
  EXPECT_EQ(AgeHistogram::BucketLowerBound(0), absl::ZeroDuration());
  EXPECT_EQ(AgeHistogram::BucketLowerBound(1), absl::Seconds(1));
}

TEST(AgeHistogram, FourBucketsPerDoubling) {
  EXPECT_EQ(AgeHistogram::BucketLowerBound(5), absl::Seconds(2));
  EXPECT_EQ(AgeHistogram::BucketLowerBound(9), absl::Seconds(4));
  EXPECT_EQ(AgeHistogram::BucketLowerBound(41), absl::Seconds(1024));
  EXPECT_EQ(AgeHistogram::BucketLowerBound(3), absl::Nanoseconds(1414213562));  // sqrt(2) s
  EXPECT_EQ(AgeHistogram::BucketOf(absl::Seconds(2)), 5);
  EXPECT_EQ(AgeHistogram::BucketOf(absl::Seconds(2) - absl::Nanoseconds(1)), 4);
  EXPECT_EQ(AgeHistogram::BucketOf(absl::Minutes(1)), 24);  // 2^(23/4)=53.8s <= 60 < 2^6=64
}

TEST(AgeHistogram, EveryBoundaryBelongsToItsBucket) {
  for (int b = 1; b < AgeHistogram::kBuckets; ++b) {
    const absl::Duration lb = AgeHistogram::BucketLowerBound(b);
    EXPECT_EQ(AgeHistogram::BucketOf(lb), b) << b;
    EXPECT_EQ(AgeHistogram::BucketOf(lb - absl::Nanoseconds(1)), b - 1) << b;
    EXPECT_LT(AgeHistogram::BucketLowerBound(b - 1), lb);
    const double want = std::pow(2.0, (b - 1) / 4.0);
    EXPECT_NEAR(absl::ToDoubleSeconds(lb) / want, 1.0, 1e-9) << b;
  }
}

TEST(AgeHistogram, LastBucketTakesEverythingOlder) {
  constexpr int kLast = AgeHistogram::kBuckets - 1;
  EXPECT_EQ(AgeHistogram::BucketOf(AgeHistogram::BucketLowerBound(kLast)), kLast);
  EXPECT_EQ(AgeHistogram::BucketOf(absl::Hours(24 * 365 * 10)), kLast);
  EXPECT_EQ(AgeHistogram::BucketOf(absl::InfiniteDuration()), kLast);
  EXPECT_EQ(AgeHistogram::BucketLowerBound(kLast), absl::Nanoseconds(std::llround(std::pow(2.0, 15.5) * 1e9)));
}

TEST(AgeHistogram, AddMergeTotal) {
  AgeHistogram a, b;
  a.Add(absl::Milliseconds(10), 100);
  a.Add(absl::Seconds(3), 50);
  b.Add(absl::Seconds(3), 25);
  b.Add(absl::Hours(1000000), 7);
  a.Merge(b);
  EXPECT_EQ(a.Total(), 182u);
  EXPECT_EQ(a.bytes[0], 100u);
  EXPECT_EQ(a.bytes[AgeHistogram::BucketOf(absl::Seconds(3))], 75u);
  EXPECT_EQ(a.bytes[AgeHistogram::kBuckets - 1], 7u);
}

}  // namespace
}  // namespace kvf
