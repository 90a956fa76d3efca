// Constructors of the concrete eviction policies; CreateEvictionPolicy
// (eviction_policy.cc) is the only caller outside tests.
#ifndef KVF_NODE_EVICTION_INTERNAL_POLICIES_H_
#define KVF_NODE_EVICTION_INTERNAL_POLICIES_H_

#include <cstddef>
#include <memory>
#include <string_view>

#include "node/eviction_policy.h"

namespace kvf::internal {

// Least recently used: Touch moves an entry to the front, Evict takes the back.
std::unique_ptr<EvictionPolicy> NewLruPolicy(size_t capacity_hint);

// First in, first out: Touch does nothing.
std::unique_ptr<EvictionPolicy> NewFifoPolicy(size_t capacity_hint);

// Least frequently used with O(1) frequency buckets (saturating at 31), ties
// broken by recency, and ageing (every count halves after 8 x size() touches)
// so that yesterday's hot entries do not squat forever.
std::unique_ptr<EvictionPolicy> NewLfuPolicy(size_t capacity_hint);

// S3-FIFO (Yang et al., SOSP'23): a small FIFO (10% of entries) that filters
// one-hit wonders, a main FIFO with a 2-bit frequency and lazy promotion, and
// a ghost FIFO of keys evicted from the small queue; a ghost hit is admitted
// straight into main.
std::unique_ptr<EvictionPolicy> NewS3FifoPolicy(size_t capacity_hint);

// Chain-aware segmented LRU (chain.cc; docs/eviction.md explains the why).
// Two LRU segments, probation and protected, whose order keeps each request's
// blocks together with the chain head in front, so the coldest chain loses its
// tail first. The policy follows chains without a key index: the store touches
// a request's hits in order and then puts its misses in order, so each entry's
// parent is (almost always) the entry it touched or inserted just before.
struct ChainPolicyOptions {
  std::string_view name = "chain";
  // Within one request, keep deeper blocks behind their parents (evicted first).
  bool tail_first = true;
  // Share of entries in the probation segment, in percent (100: plain LRU).
  uint32_t probation_percent = 65;
  // A miss that extends a chain whose previous block is protected is inserted
  // protected (the chain is alive: its next turn will read this block too).
  // Off by default: on the Mooncake conversation trace it costs 1-2 points.
  bool inherit = false;
  // Remember keys evicted from probation; a re-inserted one goes protected.
  bool ghost = true;
  // Evicting from protected demotes to probation instead of dropping.
  bool demote = true;
  // When a new request starts, the previous request's last stored block goes
  // to the back of probation: a prompt rarely ends on a block boundary, so its
  // last block is partial and the next turn, which extends the prompt, hashes
  // it differently. It is almost never read again.
  bool drop_run_tail = true;
  // Inherit protection only from parents at least this deep (the root block
  // of a shared system prompt says nothing about a conversation).
  uint32_t inherit_min_depth = 1;
};
std::unique_ptr<EvictionPolicy> NewChainPolicy(size_t capacity_hint,
                                               const ChainPolicyOptions& options);

// Reuse-learning policy (reuse.cc; docs/eviction.md explains the why). Every
// entry has a class: its chain level (how many follow-up requests its chain
// has had) x how often the key was accessed before (both bucketed: 0, 1, 2-3,
// 4+), or "the partial last block of a request". Its age is the number of
// accesses since its last access. A sample of the keys, plus every hit on a
// cached entry, teaches the policy per class and age how many reuses are still
// to come per unit of cache space-time (a Gittins-style index); Evict takes
// the entry where that is lowest among the oldest entry of each class. Like
// `chain` it keeps a request's blocks together, head in front. Nothing here
// is tuned to a capacity: ages are relative, horizons scale with the entries.
struct ReusePolicyOptions {
  std::string_view name = "reuse";
  // What an entry's class is made of besides "partial tail" (kNone: one
  // class, entries ranked by age alone).
  enum class Classes { kNone, kLevel, kCount, kLevelAndCount };
  Classes classes = Classes::kLevelAndCount;
  // The partial last block of a request gets a class of its own.
  bool tail_class = true;
  // Evicted keys (with their level and count) are remembered for
  // ghost_factor x entries evictions, so a block that comes back is known.
  size_t ghost_factor = 4;
  // One key in 2^sample_shift feeds the reuse history ...
  uint32_t sample_shift = 4;
  // ... which remembers at least min_history keys ...
  size_t min_history = 4096;
  // ... and forgets accesses older than horizon_factor x entries accesses.
  uint64_t horizon_factor = 8;
  // The index is recomputed every max(min_period, entries) accesses ...
  uint64_t min_period = 4096;
  // ... and the counts then lose 1/decay_periods of their weight.
  double decay_periods = 16;
  // Pseudo-lifetimes of the pooled (all-class) distribution added to every
  // class, so a rarely seen class is ranked like an average one.
  double prior_lifetimes = 16;
};
std::unique_ptr<EvictionPolicy> NewReusePolicy(size_t capacity_hint,
                                               const ReusePolicyOptions& options);

}  // namespace kvf::internal

#endif  // KVF_NODE_EVICTION_INTERNAL_POLICIES_H_
