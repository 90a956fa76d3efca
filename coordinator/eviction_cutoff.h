// Global eviction: one cluster-wide age cutoff from every node's usage.
#ifndef KVF_COORDINATOR_EVICTION_CUTOFF_H_
#define KVF_COORDINATOR_EVICTION_CUTOFF_H_

#include <cstdint>
#include <optional>

#include "absl/time/time.h"
#include "absl/types/span.h"
#include "common/age_histogram.h"

namespace kvf {

struct NodeUsage {
  uint64_t capacity_bytes = 0;
  uint64_t used_bytes = 0;
  AgeHistogram ages;  // of the used bytes, by time since last access
};

struct EvictionWatermarks {
  double high = 0.90;  // act when used/capacity of the cluster passes this
  double low = 0.80;   // and bring it back under this
};

// When the cluster's used/capacity exceeds `high`, the largest age cutoff A
// (the one that evicts least) such that evicting, on every node, the blocks
// not accessed for A or longer brings usage to `low` or below (an
// approximation of one LRU over the whole cluster; bucket resolution makes it
// conservative: it may free a little more). A is always a bucket lower bound
// (AgeHistogram::BucketLowerBound). If the histograms account for fewer bytes
// than must go, A is zero (evict everything reported).
// nullopt when usage is at or below `high`, when the total capacity is zero,
// and when every histogram is empty (no ages to cut by). A `low` above `high`
// is treated as `high`. Pure function; thread-safe.
std::optional<absl::Duration> ComputeEvictionCutoff(absl::Span<const NodeUsage> nodes,
                                                    const EvictionWatermarks& marks = {});

}  // namespace kvf

#endif  // KVF_COORDINATOR_EVICTION_CUTOFF_H_
