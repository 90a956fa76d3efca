#include "common/age_histogram.h"

#include <array>
#include <cmath>
#include <cstdint>

namespace kvf {
namespace {

// Lower bounds in nanoseconds: 0, then 2^((b-1)/4) s rounded to the
// nanosecond. Built from exact constants (2^(q + r/4) = 2^q * 2^(r/4)), not
// from pow(), so every libm gives the same table.
constexpr double kQuarterPowers[4] = {1.0, 1.18920711500272106672, 1.41421356237309504880,
                                      1.68179283050742908606};

std::array<int64_t, AgeHistogram::kBuckets> MakeBounds() {
  std::array<int64_t, AgeHistogram::kBuckets> b{};
  b[0] = 0;
  for (int i = 1; i < AgeHistogram::kBuckets; ++i) {
    const int e = i - 1;
    b[i] = std::llround(std::ldexp(kQuarterPowers[e % 4], e / 4) * 1e9);
  }
  return b;
}

const std::array<int64_t, AgeHistogram::kBuckets>& Bounds() {
  static const auto* bounds = new std::array<int64_t, AgeHistogram::kBuckets>(MakeBounds());
  return *bounds;
}

}  // namespace

int AgeHistogram::BucketOf(absl::Duration age) {
  const auto& b = Bounds();
  if (age < absl::Nanoseconds(b[1])) return 0;  // negative ages too
  if (age >= absl::Nanoseconds(b[kBuckets - 1])) return kBuckets - 1;
  const int64_t ns = absl::ToInt64Nanoseconds(age);
  // Largest bucket whose lower bound is <= ns.
  int lo = 1, hi = kBuckets - 1;  // b[lo] <= ns < b[hi]
  while (hi - lo > 1) {
    const int mid = (lo + hi) / 2;
    if (b[mid] <= ns) {
      lo = mid;
    } else {
      hi = mid;
    }
  }
  return lo;
}

absl::Duration AgeHistogram::BucketLowerBound(int bucket) {
  if (bucket <= 0) return absl::ZeroDuration();
  if (bucket >= kBuckets) bucket = kBuckets - 1;
  return absl::Nanoseconds(Bounds()[bucket]);
}

}  // namespace kvf
