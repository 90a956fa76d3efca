#include "coordinator/eviction_cutoff.h"

#include <algorithm>
#include <cmath>

namespace kvf {

std::optional<absl::Duration> ComputeEvictionCutoff(absl::Span<const NodeUsage> nodes,
                                                    const EvictionWatermarks& marks) {
  long double capacity = 0, used = 0;
  AgeHistogram ages;
  for (const NodeUsage& n : nodes) {
    capacity += n.capacity_bytes;
    used += n.used_bytes;
    ages.Merge(n.ages);
  }
  // No capacity means no watermark to measure against; no histogram means no
  // ages to cut by. Either way there is no cutoff to give.
  if (capacity <= 0 || used <= static_cast<long double>(marks.high) * capacity) return std::nullopt;
  const uint64_t reported = ages.Total();
  if (reported == 0) return std::nullopt;
  const long double low = std::min(marks.low, marks.high);
  const long double target = std::max<long double>(0, std::floor(low * capacity));
  const long double need = used - target;  // bytes to free, > 0 here
  // Walk from the oldest bucket down: cutting at bucket b's lower bound frees
  // every byte in buckets >= b. The first b that frees enough gives the
  // largest (least destructive) cutoff.
  long double freed = 0;
  for (int b = AgeHistogram::kBuckets - 1; b >= 0; --b) {
    freed += ages.bytes[b];
    if (freed >= need) return AgeHistogram::BucketLowerBound(b);
  }
  // The histograms account for fewer bytes than must go: evict all of them.
  return absl::ZeroDuration();
}

}  // namespace kvf
