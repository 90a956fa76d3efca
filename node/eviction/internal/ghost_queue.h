// GhostQueue: a bounded FIFO of key fingerprints (no data), for policies that
// remember what they evicted recently (S3-FIFO, the chain-aware policy).
#ifndef KVF_NODE_EVICTION_INTERNAL_GHOST_QUEUE_H_
#define KVF_NODE_EVICTION_INTERNAL_GHOST_QUEUE_H_

#include <cstddef>
#include <cstdint>
#include <vector>

#include "node/eviction/internal/fingerprint_table.h"

namespace kvf::internal {

// Not thread-safe. Memory is reserved up front for `capacity` fingerprints;
// Add/Contains/Remove do not allocate unless the capacity is raised. The
// fingerprint set is a FingerprintTable (no tombstones: a ghost that churns
// forever keeps short probes).
class GhostQueue {
 public:
  explicit GhostQueue(size_t capacity) { SetCapacity(capacity < 16 ? 16 : capacity); }

  size_t capacity() const { return ring_.size(); }
  size_t size() const { return count_; }

  // Raises the capacity (never lowers it); allocates.
  void SetCapacity(size_t capacity) {
    if (capacity <= ring_.size()) return;
    std::vector<uint64_t> old;
    for (size_t i = 0; i < count_; ++i) old.push_back(ring_[(head_ + i) % ring_.size()]);
    ring_.assign(capacity, 0);
    table_.Reset(capacity);
    head_ = count_ = 0;
    for (uint64_t fp : old) Add(fp);
  }

  // Remembers `fp`, forgetting the oldest one when full.
  void Add(uint64_t fp) {
    fp = Table::Canonical(fp);
    if (count_ == ring_.size()) PopOldest();
    const uint64_t serial = next_serial_ + count_;
    ring_[(head_ + count_) % ring_.size()] = fp;
    ++count_;
    // A newer Add of the same key owns the slot.
    table_.at(table_.Find(fp)) = Table::Slot{fp, serial, {}};
  }

  bool Contains(uint64_t fp) const {
    return table_.at(table_.Find(Table::Canonical(fp))).fp != 0;
  }

  // Forgets `fp` if present (its ring slot expires lazily).
  void Remove(uint64_t fp) {
    const size_t i = table_.Find(Table::Canonical(fp));
    if (table_.at(i).fp != 0) table_.Erase(i);
  }

 private:
  struct Nothing {};
  using Table = FingerprintTable<Nothing>;

  void PopOldest() {
    const uint64_t fp = ring_[head_];
    const size_t i = table_.Find(fp);
    // Only the latest Add of a fingerprint owns its slot.
    if (table_.at(i).fp != 0 && table_.at(i).serial == next_serial_) table_.Erase(i);
    head_ = (head_ + 1) % ring_.size();
    ++next_serial_;
    --count_;
  }

  std::vector<uint64_t> ring_;
  size_t head_ = 0;
  size_t count_ = 0;
  uint64_t next_serial_ = 0;  // serial of ring_[head_]
  Table table_;
};

}  // namespace kvf::internal

#endif  // KVF_NODE_EVICTION_INTERNAL_GHOST_QUEUE_H_
