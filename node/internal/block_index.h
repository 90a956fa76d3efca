// BlockIndex: (namespace, key) -> entry, with dense ids for eviction policies.
#ifndef KVF_NODE_INTERNAL_BLOCK_INDEX_H_
#define KVF_NODE_INTERNAL_BLOCK_INDEX_H_

#include <cstdint>
#include <optional>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/time/time.h"
#include "common/block_key.h"
#include "common/namespace.h"
#include "common/version.h"
#include "kernels/codec.h"
#include "node/eviction_policy.h"

namespace kvf::internal {

struct Entry {
  NamespaceId ns = 0;
  BlockKey key;
  Version version;
  CodecId codec = CodecId::kNone;
  bool mutable_entry = false;
  uint8_t tier = 0;       // index into the store's tiers
  uint64_t offset = 0;    // page offset in that tier's arena
  uint64_t size = 0;      // stored bytes
  uint64_t placement_hash = 0;
  uint32_t pins = 0;      // leases and in-flight copies; > 0 never evicted or freed
  absl::Time last_access;
  bool live = false;      // maintained by BlockIndex: false for a free slot
  // A demotion to the disk tier is writing this entry's page: it is out of
  // the eviction policy and pinned until the write is done.
  bool demoting = false;
  // Chain position (EvictionHint), kept to re-insert the entry into the policy
  // when it comes back from the disk tier.
  uint32_t depth = 0;
  BlockKey parent;
  // tier == kDiskTier: the entry's record is in the store's disk tier at file
  // offset `offset`, written in segment generation `disk_gen`.
  uint64_t disk_gen = 0;
};

// Entry::tier of a block held only in the disk tier.
inline constexpr uint8_t kDiskTier = 0xff;

// Entries live in a dense vector so an EntryId is a plain index, reused after
// Erase. Not thread-safe (the store locks).
class BlockIndex {
 public:
  // Sizes the table and the map for `expected_entries` so that inserting up
  // to that many never allocates.
  void Reserve(size_t expected_entries);

  std::optional<EntryId> Find(NamespaceId ns, const BlockKey& key) const;
  // `entry.ns`/`entry.key` must not be present.
  EntryId Insert(const Entry& entry);
  void Erase(EntryId id);

  // Calls fn(id, entry) for every live entry. fn must not insert or erase.
  template <typename Fn>
  void ForEach(Fn&& fn) const {
    for (EntryId id = 0; id < entries_.size(); ++id) {
      if (entries_[id].live) fn(id, entries_[id]);
    }
  }

  Entry& at(EntryId id) { return entries_[id]; }
  const Entry& at(EntryId id) const { return entries_[id]; }
  size_t size() const { return map_.size(); }

 private:
  struct Key {
    NamespaceId ns;
    BlockKey key;
    friend bool operator==(const Key&, const Key&) = default;
    template <typename H>
    friend H AbslHashValue(H h, const Key& k) {
      // Block keys are already uniform hashes; mixing in ns is enough.
      return H::combine(std::move(h), k.key.lo ^ k.ns, k.key.hi);
    }
  };

  absl::flat_hash_map<Key, EntryId> map_;
  std::vector<Entry> entries_;
  std::vector<EntryId> free_ids_;
};

}  // namespace kvf::internal

#endif  // KVF_NODE_INTERNAL_BLOCK_INDEX_H_
