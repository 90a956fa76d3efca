// ReuseHistory: the last access (time and class) of a bounded number of key
// fingerprints, for policies that learn reuse-time distributions online.
#ifndef KVF_NODE_EVICTION_INTERNAL_REUSE_HISTORY_H_
#define KVF_NODE_EVICTION_INTERNAL_REUSE_HISTORY_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <utility>
#include <vector>

#include "node/eviction/internal/fingerprint_table.h"

namespace kvf::internal {

// Not thread-safe. Holds up to `capacity` keys; recording one more forgets
// the key whose last access is the oldest (an LRU of fingerprints, kept as a
// ring of record events whose stale slots expire lazily). Memory is reserved
// up front; nothing allocates afterwards. Lookups go through a
// FingerprintTable (no tombstones).
class ReuseHistory {
 public:
  struct Access {
    uint64_t time = 0;
    uint8_t cls = 0;
    uint8_t count = 0;
  };

  explicit ReuseHistory(size_t capacity) { SetCapacity(capacity < 16 ? 16 : capacity); }

  size_t capacity() const { return ring_.size(); }
  size_t size() const { return count_; }

  // Raises the capacity (never lowers it), keeping what is remembered;
  // allocates.
  void SetCapacity(size_t capacity) {
    if (capacity <= ring_.size()) return;
    std::vector<std::pair<uint64_t, Access>> live;
    for (size_t k = 0; k < count_; ++k) {
      const uint64_t fp = ring_[(head_ + k) % ring_.size()].fp;
      const Table::Slot& s = table_.at(table_.Find(fp));
      if (s.fp != 0 && s.serial == next_serial_ + k) live.emplace_back(fp, s.value);
    }
    ring_.assign(capacity, Event{});
    table_.Reset(capacity);
    head_ = count_ = 0;
    next_serial_ = 0;
    for (const auto& [fp, access] : live) Record(fp, access);
  }

  // The last recorded access of `fp`, if it is remembered.
  const Access* Find(uint64_t fp) const {
    const Table::Slot& s = table_.at(table_.Find(Table::Canonical(fp)));
    return s.fp == 0 ? nullptr : &s.value;
  }

  // Changes the class of a remembered key's last access (no-op if absent).
  void Reclassify(uint64_t fp, uint8_t cls) {
    Table::Slot& s = table_.at(table_.Find(Table::Canonical(fp)));
    if (s.fp != 0) s.value.cls = cls;
  }

  // Calls fn(access) for every remembered key's last access. O(size()).
  template <typename Fn>
  void ForEach(Fn&& fn) const {
    for (size_t k = 0; k < count_; ++k) {
      const Event& ev = ring_[(head_ + k) % ring_.size()];
      const Table::Slot& s = table_.at(table_.Find(ev.fp));
      if (s.fp != 0 && s.serial == next_serial_ + k) fn(s.value);
    }
  }

  // Forgets the keys whose last access is older than `time`, passing each
  // one's last access to `forgotten`.
  template <typename Fn>
  void ForgetBefore(uint64_t time, Fn&& forgotten) {
    while (count_ > 0 && ring_[head_].time < time) {
      if (auto a = PopOldest()) forgotten(*a);
    }
  }

  // Records an access of `fp` now; the key becomes the newest. When that
  // makes the history forget a key, returns the forgotten key's last access.
  std::optional<Access> Record(uint64_t fp, Access access) {
    fp = Table::Canonical(fp);
    std::optional<Access> forgotten;
    if (count_ == ring_.size()) {
      // Re-recording the oldest key is not forgetting it.
      const bool same = ring_[head_].fp == fp;
      forgotten = PopOldest();
      if (same) forgotten.reset();
    }
    const uint64_t serial = next_serial_ + count_;
    ring_[(head_ + count_) % ring_.size()] = Event{fp, access.time};
    ++count_;
    table_.at(table_.Find(fp)) = Table::Slot{fp, serial, access};
    return forgotten;
  }

 private:
  using Table = FingerprintTable<Access>;

  // Drops the oldest ring event; it forgets its key only if that event is the
  // key's latest record.
  std::optional<Access> PopOldest() {
    const uint64_t fp = ring_[head_].fp;
    const size_t i = table_.Find(fp);
    std::optional<Access> forgotten;
    if (table_.at(i).fp != 0 && table_.at(i).serial == next_serial_) {
      forgotten = table_.at(i).value;
      table_.Erase(i);
    }
    head_ = (head_ + 1) % ring_.size();
    ++next_serial_;
    --count_;
    return forgotten;
  }

  struct Event {
    uint64_t fp = 0;
    uint64_t time = 0;
  };

  std::vector<Event> ring_;
  size_t head_ = 0;
  size_t count_ = 0;
  uint64_t next_serial_ = 0;
  Table table_;
};

}  // namespace kvf::internal

#endif  // KVF_NODE_EVICTION_INTERNAL_REUSE_HISTORY_H_
