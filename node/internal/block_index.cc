#include "node/internal/block_index.h"

namespace kvf::internal {

void BlockIndex::Reserve(size_t expected_entries) {
  map_.reserve(expected_entries);
  entries_.reserve(expected_entries);
  free_ids_.reserve(expected_entries);
}

std::optional<EntryId> BlockIndex::Find(NamespaceId ns, const BlockKey& key) const {
  auto it = map_.find(Key{ns, key});
  if (it == map_.end()) return std::nullopt;
  return it->second;
}

EntryId BlockIndex::Insert(const Entry& entry) {
  EntryId id;
  if (!free_ids_.empty()) {
    id = free_ids_.back();
    free_ids_.pop_back();
    entries_[id] = entry;
  } else {
    id = static_cast<EntryId>(entries_.size());
    entries_.push_back(entry);
  }
  entries_[id].live = true;
  map_.emplace(Key{entry.ns, entry.key}, id);
  return id;
}

void BlockIndex::Erase(EntryId id) {
  map_.erase(Key{entries_[id].ns, entries_[id].key});
  entries_[id].live = false;
  free_ids_.push_back(id);
}

}  // namespace kvf::internal
