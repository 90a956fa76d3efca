// EvictionPolicy: which block a full shard store gives up next.
#ifndef KVF_NODE_EVICTION_POLICY_H_
#define KVF_NODE_EVICTION_POLICY_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string_view>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "common/block_key.h"

namespace kvf {

// Dense id the store gives each live entry (an index into its entry table).
// Ids are reused after Erase/Evict.
using EntryId = uint32_t;

// What a policy may know about an entry when it is inserted. Blocks form prefix
// chains: block `depth` of a sequence is useless to a reader unless blocks
// 0..depth-1 are cached too, so chain-aware policies use `parent` and `depth`.
struct EvictionHint {
  BlockKey key;
  BlockKey parent;     // BlockKey::Root() for the first block of a sequence
  uint32_t depth = 0;  // position in its chain (0 = first block)
  uint64_t bytes = 0;
};

// Not thread-safe: the owning ShardStore calls it under its own lock. Every
// method is O(1) amortised unless its comment says otherwise, and none of them
// allocates once the policy has seen `capacity_hint` entries.
class EvictionPolicy {
 public:
  virtual ~EvictionPolicy() = default;

  virtual std::string_view name() const = 0;

  // A new entry. `id` is not currently tracked.
  virtual void Insert(EntryId id, const EvictionHint& hint) = 0;
  // A hit on a tracked entry (a read, or a re-put of the same content).
  virtual void Touch(EntryId id) = 0;
  // The store removed a tracked entry for its own reasons (Remove, overwrite).
  virtual void Erase(EntryId id) = 0;
  // Chooses the next victim among tracked entries for which `evictable(id)` is
  // true (the store says false for pinned entries), stops tracking it and
  // returns it; nullopt when no tracked entry is evictable. Entries refused by
  // `evictable` stay tracked with their standing unchanged as far as the policy
  // allows.
  virtual std::optional<EntryId> Evict(absl::FunctionRef<bool(EntryId)> evictable) = 0;

  virtual size_t size() const = 0;
};

// Names: "lru", "lfu", "fifo", "s3fifo", and the chain-aware ones listed by
// EvictionPolicyNames(). `capacity_hint` is the expected number of entries.
absl::StatusOr<std::unique_ptr<EvictionPolicy>> CreateEvictionPolicy(std::string_view name,
                                                                     size_t capacity_hint);
// Every name CreateEvictionPolicy accepts, the default first.
std::vector<std::string_view> EvictionPolicyNames();

}  // namespace kvf

#endif  // KVF_NODE_EVICTION_POLICY_H_
