#include "bench/replay/simulate.h"

#include <algorithm>
#include <limits>
#include <queue>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "common/status_macros.h"
#include "node/eviction_policy.h"

namespace kvf::replay {
namespace {

// Trace hash ids renumbered densely, so the simulators index arrays.
std::vector<std::vector<uint32_t>> DenseIds(const Trace& trace) {
  absl::flat_hash_map<uint64_t, uint32_t> dense;
  dense.reserve(trace.unique_blocks);
  std::vector<std::vector<uint32_t>> out;
  out.reserve(trace.requests.size());
  for (const TraceRequest& r : trace.requests) {
    std::vector<uint32_t>& ids = out.emplace_back();
    ids.reserve(r.hash_ids.size());
    for (uint64_t h : r.hash_ids) {
      ids.push_back(dense.try_emplace(h, static_cast<uint32_t>(dense.size())).first->second);
    }
  }
  return out;
}

}  // namespace

absl::StatusOr<ReplayResult> ReplayDirect(const Trace& trace, std::string_view policy_name,
                                          uint64_t capacity_blocks) {
  if (capacity_blocks == 0) return absl::InvalidArgumentError("capacity of 0 blocks");
  KVF_ASSIGN_OR_RETURN(std::unique_ptr<EvictionPolicy> policy,
                       CreateEvictionPolicy(policy_name, capacity_blocks));
  const std::vector<std::vector<uint32_t>> requests = DenseIds(trace);
  constexpr EntryId kAbsent = std::numeric_limits<EntryId>::max();
  std::vector<EntryId> slot_of(trace.unique_blocks, kAbsent);
  std::vector<uint32_t> block_of(capacity_blocks);
  std::vector<EntryId> free_slots;
  for (uint64_t s = capacity_blocks; s > 0; --s) free_slots.push_back(static_cast<EntryId>(s - 1));

  ReplayResult result;
  auto always = [](EntryId) { return true; };
  for (size_t r = 0; r < requests.size(); ++r) {
    const std::vector<uint32_t>& ids = requests[r];
    const std::vector<uint64_t>& hashes = trace.requests[r].hash_ids;
    result.requested_blocks += ids.size();
    size_t i = 0;
    for (; i < ids.size() && slot_of[ids[i]] != kAbsent; ++i) policy->Touch(slot_of[ids[i]]);
    result.hit_blocks += i;
    for (; i < ids.size(); ++i) {
      if (slot_of[ids[i]] != kAbsent) {
        policy->Touch(slot_of[ids[i]]);
        ++result.touched_blocks;
        continue;
      }
      if (free_slots.empty()) {
        std::optional<EntryId> victim = policy->Evict(always);
        if (!victim.has_value()) return absl::InternalError("policy evicted nothing");
        slot_of[block_of[*victim]] = kAbsent;
        free_slots.push_back(*victim);
        ++result.evictions;
      }
      const EntryId slot = free_slots.back();
      free_slots.pop_back();
      slot_of[ids[i]] = slot;
      block_of[slot] = ids[i];
      EvictionHint hint;
      hint.key = TraceKey(hashes[i]);
      hint.parent = i == 0 ? BlockKey::Root() : TraceKey(hashes[i - 1]);
      hint.depth = static_cast<uint32_t>(i);
      hint.bytes = 1;
      policy->Insert(slot, hint);
      ++result.stored_blocks;
    }
  }
  return result;
}

ReplayResult ReplayBelady(const Trace& trace, uint64_t capacity_blocks) {
  const std::vector<std::vector<uint32_t>> requests = DenseIds(trace);
  // next_use[k]: the position of the next reference to the block referenced
  // at position k (positions count block references across the trace).
  constexpr uint64_t kNever = std::numeric_limits<uint64_t>::max();
  std::vector<uint64_t> next_use(trace.total_blocks, kNever);
  {
    std::vector<uint64_t> upcoming(trace.unique_blocks, kNever);
    uint64_t pos = trace.total_blocks;
    for (size_t r = requests.size(); r-- > 0;) {
      for (size_t i = requests[r].size(); i-- > 0;) {
        --pos;
        next_use[pos] = upcoming[requests[r][i]];
        upcoming[requests[r][i]] = pos;
      }
    }
  }
  // Cached blocks keyed by next use; stale heap entries are skipped lazily.
  std::vector<uint64_t> cached_next(trace.unique_blocks, 0);
  std::vector<bool> cached(trace.unique_blocks, false);
  std::priority_queue<std::pair<uint64_t, uint32_t>> heap;
  uint64_t size = 0;
  ReplayResult result;
  uint64_t pos = 0;
  for (const std::vector<uint32_t>& ids : requests) {
    result.requested_blocks += ids.size();
    size_t prefix = 0;
    while (prefix < ids.size() && cached[ids[prefix]]) ++prefix;
    result.hit_blocks += prefix;
    for (size_t i = 0; i < ids.size(); ++i, ++pos) {
      const uint32_t b = ids[i];
      if (!cached[b]) {
        if (size == capacity_blocks) {
          while (true) {
            auto [next, victim] = heap.top();
            heap.pop();
            if (cached[victim] && cached_next[victim] == next) {
              cached[victim] = false;
              --size;
              ++result.evictions;
              break;
            }
          }
        }
        cached[b] = true;
        ++size;
        ++result.stored_blocks;
      } else if (i >= prefix) {
        ++result.touched_blocks;
      }
      cached_next[b] = next_use[pos];
      heap.emplace(next_use[pos], b);
    }
  }
  return result;
}

}  // namespace kvf::replay
