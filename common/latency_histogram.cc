#include "common/latency_histogram.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace kvf {

void LatencyHistogram::Record(absl::Duration d) {
  const int64_t ns = std::max<int64_t>(0, absl::ToInt64Nanoseconds(d));
  const uint64_t us = static_cast<uint64_t>(ns) / 1000;
  const size_t i = std::lower_bound(kBoundsUs.begin(), kBoundsUs.end(), us) - kBoundsUs.begin();
  buckets_[i].fetch_add(1, std::memory_order_relaxed);
  count_.fetch_add(1, std::memory_order_relaxed);
  sum_ns_.fetch_add(static_cast<uint64_t>(ns), std::memory_order_relaxed);
}

absl::Duration LatencyHistogram::Quantile(double q) const {
  const uint64_t n = count();
  if (n == 0) return absl::ZeroDuration();
  const auto want = static_cast<uint64_t>(std::ceil(q * static_cast<double>(n)));
  uint64_t seen = 0;
  for (size_t i = 0; i < buckets_.size(); ++i) {
    seen += buckets_[i].load(std::memory_order_relaxed);
    if (seen >= want) {
      return i < kBoundsUs.size() ? absl::Microseconds(kBoundsUs[i]) : absl::InfiniteDuration();
    }
  }
  return absl::InfiniteDuration();
}

void LatencyHistogram::AppendPrometheus(std::string* out, std::string_view name,
                                        std::string_view labels) const {
  const std::string n(name);
  const std::string sep = labels.empty() ? "" : ",";
  const std::string l(labels);
  uint64_t cumulative = 0;
  for (size_t i = 0; i < buckets_.size(); ++i) {
    cumulative += buckets_[i].load(std::memory_order_relaxed);
    const std::string le =
        i < kBoundsUs.size() ? absl::StrFormat("%g", static_cast<double>(kBoundsUs[i]) / 1e6)
                             : std::string("+Inf");
    absl::StrAppend(out, n, "_bucket{", l, sep, "le=\"", le, "\"} ", cumulative, "\n");
  }
  const std::string braces = labels.empty() ? "" : absl::StrCat("{", l, "}");
  absl::StrAppend(out, n, "_sum", braces, " ",
                  absl::StrFormat("%.9f", static_cast<double>(sum_ns_.load()) / 1e9), "\n");
  absl::StrAppend(out, n, "_count", braces, " ", cumulative, "\n");
}

}  // namespace kvf
