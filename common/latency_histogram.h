// A fixed-bucket latency histogram for Prometheus exposition and for
// percentiles in benchmarks. Recording is lock-free (relaxed atomics), so hot
// paths and the transport's progress thread can record without contention.
#ifndef KVF_COMMON_LATENCY_HISTOGRAM_H_
#define KVF_COMMON_LATENCY_HISTOGRAM_H_

#include <array>
#include <atomic>
#include <cstdint>
#include <string>
#include <string_view>

#include "absl/time/time.h"

namespace kvf {

class LatencyHistogram {
 public:
  // Upper bounds in microseconds, 1 µs to 10 s (finer where the data path's
  // targets are: 100-300 µs), then +Inf.
  static constexpr std::array<uint64_t, 28> kBoundsUs = {
      1,     2,     5,     10,     20,     30,     50,     75,      100,     150,
      200,   300,   500,   750,    1000,   2000,   5000,   10000,   20000,   50000,
      100000, 200000, 500000, 1000000, 2000000, 5000000, 10000000, 30000000};

  void Record(absl::Duration d);

  uint64_t count() const { return count_.load(std::memory_order_relaxed); }
  // An upper bound of the q-quantile (0 < q <= 1): the bucket bound it falls
  // in; 0 with no samples.
  absl::Duration Quantile(double q) const;

  // Appends `name`_bucket{le=...}, _sum and _count lines (seconds), with
  // `labels` ("op=\"get\"" or empty) inside the braces.
  void AppendPrometheus(std::string* out, std::string_view name, std::string_view labels) const;

 private:
  std::array<std::atomic<uint64_t>, kBoundsUs.size() + 1> buckets_{};
  std::atomic<uint64_t> count_{0};
  std::atomic<uint64_t> sum_ns_{0};
};

}  // namespace kvf

#endif  // KVF_COMMON_LATENCY_HISTOGRAM_H_
