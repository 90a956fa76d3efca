// Replays a trace through an eviction policy alone (--direct), through the
// offline optimum (Belady), or through a real ShardStore (store_replay.cc).
#ifndef KVF_BENCH_REPLAY_SIMULATE_H_
#define KVF_BENCH_REPLAY_SIMULATE_H_

#include <cstdint>
#include <string_view>

#include "absl/status/statusor.h"
#include "bench/replay/trace.h"
#include "common/block_key.h"

namespace kvf::replay {

struct ReplayResult {
  uint64_t requested_blocks = 0;
  uint64_t hit_blocks = 0;      // leading blocks of a request found cached
  uint64_t touched_blocks = 0;  // present blocks after the first miss
  uint64_t stored_blocks = 0;
  uint64_t evictions = 0;

  double HitRate() const {
    return requested_blocks == 0 ? 0.0 : static_cast<double>(hit_blocks) / requested_blocks;
  }
};

// The block key a trace hash id maps to (never the root key).
inline BlockKey TraceKey(uint64_t hash_id) {
  return BlockKey{hash_id + 1, (hash_id + 1) * 0x9e3779b97f4a7c15ULL};
}

// The store's protocol without the store: per request, touch the longest
// cached prefix (hits), then touch present blocks and insert missing ones
// (evicting by `policy` when `capacity_blocks` are cached).
absl::StatusOr<ReplayResult> ReplayDirect(const Trace& trace, std::string_view policy,
                                          uint64_t capacity_blocks);

// Classic Belady (MIN) on block references: every block of every request is a
// reference, every miss is admitted, and the victim is the cached block whose
// next reference is farthest away. Hits are still counted as prefix hits.
// Optimal for the number of block hits, not exactly for prefix hits.
ReplayResult ReplayBelady(const Trace& trace, uint64_t capacity_blocks);

// Through a real kvf::ShardStore (MatchPrefix for hits, Put with parent and
// depth for the rest), with `policy` as its eviction policy.
absl::StatusOr<ReplayResult> ReplayStore(const Trace& trace, std::string_view policy,
                                         uint64_t capacity_blocks, uint64_t block_bytes);

}  // namespace kvf::replay

#endif  // KVF_BENCH_REPLAY_SIMULATE_H_
