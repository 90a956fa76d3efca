// GhostQueue: a bounded FIFO of key fingerprints (no data), for policies that
// remember what they evicted recently (S3-FIFO, the chain-aware policy).
#ifndef KVF_NODE_EVICTION_INTERNAL_GHOST_QUEUE_H_
#define KVF_NODE_EVICTION_INTERNAL_GHOST_QUEUE_H_

#include <cstddef>
#include <cstdint>
#include <vector>

namespace kvf::internal {

// Not thread-safe. Memory is reserved up front for `capacity` fingerprints;
// Add/Contains/Remove do not allocate unless the capacity is raised. The
// fingerprint set is open-addressed with linear probing and backward-shift
// deletion: no tombstones, so a ghost that churns forever keeps short probes
// (absl::flat_hash_map's tombstones made lookups 1000x slower here).
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
    size_t slots = 16;
    while (slots < 2 * capacity) slots *= 2;
    table_.assign(slots, Slot{});
    head_ = count_ = 0;
    for (uint64_t fp : old) Add(fp);
  }

  // Remembers `fp`, forgetting the oldest one when full.
  void Add(uint64_t fp) {
    fp = Canonical(fp);
    if (count_ == ring_.size()) PopOldest();
    const uint64_t serial = next_serial_ + count_;
    ring_[(head_ + count_) % ring_.size()] = fp;
    ++count_;
    size_t i = Find(fp);
    table_[i] = Slot{fp, serial};  // a newer Add of the same key owns the slot
  }

  bool Contains(uint64_t fp) const { return table_[Find(Canonical(fp))].fp != 0; }

  // Forgets `fp` if present (its ring slot expires lazily).
  void Remove(uint64_t fp) {
    const size_t i = Find(Canonical(fp));
    if (table_[i].fp != 0) Erase(i);
  }

 private:
  struct Slot {
    uint64_t fp = 0;  // 0: empty
    uint64_t serial = 0;
  };

  static uint64_t Canonical(uint64_t fp) { return fp == 0 ? 1 : fp; }
  size_t Mask() const { return table_.size() - 1; }
  size_t Home(uint64_t fp) const { return (fp * 0x9e3779b97f4a7c15ULL) >> 20 & Mask(); }

  // The slot holding `fp`, or the empty slot where it would go.
  size_t Find(uint64_t fp) const {
    size_t i = Home(fp);
    while (table_[i].fp != 0 && table_[i].fp != fp) i = (i + 1) & Mask();
    return i;
  }

  // Backward-shift deletion keeps every probe chain unbroken.
  void Erase(size_t i) {
    size_t j = i;
    while (true) {
      j = (j + 1) & Mask();
      if (table_[j].fp == 0) break;
      const size_t home = Home(table_[j].fp);
      // Move j back to i unless its home lies cyclically in (i, j].
      const bool stays = i <= j ? (i < home && home <= j) : (i < home || home <= j);
      if (!stays) {
        table_[i] = table_[j];
        i = j;
      }
    }
    table_[i] = Slot{};
  }

  void PopOldest() {
    const uint64_t fp = ring_[head_];
    const size_t i = Find(fp);
    // Only the latest Add of a fingerprint owns its slot.
    if (table_[i].fp != 0 && table_[i].serial == next_serial_) Erase(i);
    head_ = (head_ + 1) % ring_.size();
    ++next_serial_;
    --count_;
  }

  std::vector<uint64_t> ring_;
  size_t head_ = 0;
  size_t count_ = 0;
  uint64_t next_serial_ = 0;  // serial of ring_[head_]
  std::vector<Slot> table_;
};

}  // namespace kvf::internal

#endif  // KVF_NODE_EVICTION_INTERNAL_GHOST_QUEUE_H_
