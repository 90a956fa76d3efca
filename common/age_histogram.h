// AgeHistogram: how many bytes a node holds, by time since last access.
//
// Agents report one with every heartbeat; the coordinator merges them to pick
// one cluster-wide age cutoff for global eviction (docs/design.md, "Global
// eviction"). Buckets are fixed so every process agrees: bucket 0 holds ages
// below 1 s, bucket b (1 <= b < kBuckets - 1) ages in [2^((b-1)/4), 2^(b/4))
// seconds (four buckets per doubling, ~19% wide), and the last bucket
// everything older (2^(62/4) s, about 12.9 hours).
#ifndef KVF_COMMON_AGE_HISTOGRAM_H_
#define KVF_COMMON_AGE_HISTOGRAM_H_

#include <array>
#include <cstdint>

#include "absl/time/time.h"

namespace kvf {

struct AgeHistogram {
  static constexpr int kBuckets = 64;

  std::array<uint64_t, kBuckets> bytes{};

  static int BucketOf(absl::Duration age);
  // Smallest age that falls in bucket b (0 for bucket 0).
  static absl::Duration BucketLowerBound(int bucket);

  void Add(absl::Duration age, uint64_t nbytes) { bytes[BucketOf(age)] += nbytes; }
  void Merge(const AgeHistogram& other) {
    for (int b = 0; b < kBuckets; ++b) bytes[b] += other.bytes[b];
  }
  uint64_t Total() const {
    uint64_t t = 0;
    for (uint64_t v : bytes) t += v;
    return t;
  }
};

}  // namespace kvf

#endif  // KVF_COMMON_AGE_HISTOGRAM_H_
