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

}  // namespace kvf::internal

#endif  // KVF_NODE_EVICTION_INTERNAL_POLICIES_H_
