// ReuseHistory: the last access (time and class) of a bounded number of key
// fingerprints, for policies that learn reuse-time distributions online.
#ifndef KVF_NODE_EVICTION_INTERNAL_REUSE_HISTORY_H_
#define KVF_NODE_EVICTION_INTERNAL_REUSE_HISTORY_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <utility>
#include <vector>

namespace kvf::internal {

// Not thread-safe. Holds up to `capacity` keys; recording one more forgets
// the key whose last access is the oldest (an LRU of fingerprints, kept as a
// ring of record events whose stale slots expire lazily). Memory is reserved
// up front; nothing allocates afterwards. Lookups are open-addressed with
// backward-shift deletion (no tombstones, see GhostQueue).
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
      const Slot& s = table_[Lookup(fp)];
      if (s.fp != 0 && s.serial == next_serial_ + k) live.emplace_back(fp, s.access);
    }
    ring_.assign(capacity, Event{});
    size_t slots = 16;
    while (slots < 2 * capacity) slots *= 2;
    table_.assign(slots, Slot{});
    head_ = count_ = 0;
    next_serial_ = 0;
    for (const auto& [fp, access] : live) Record(fp, access);
  }

  // The last recorded access of `fp`, if it is remembered.
  const Access* Find(uint64_t fp) const {
    const Slot& s = table_[Lookup(Canonical(fp))];
    return s.fp == 0 ? nullptr : &s.access;
  }

  // Changes the class of a remembered key's last access (no-op if absent).
  void Reclassify(uint64_t fp, uint8_t cls) {
    Slot& s = table_[Lookup(Canonical(fp))];
    if (s.fp != 0) s.access.cls = cls;
  }

  // Calls fn(access) for every remembered key's last access. O(size()).
  template <typename Fn>
  void ForEach(Fn&& fn) const {
    for (size_t k = 0; k < count_; ++k) {
      const Event& ev = ring_[(head_ + k) % ring_.size()];
      const Slot& s = table_[Lookup(ev.fp)];
      if (s.fp != 0 && s.serial == next_serial_ + k) fn(s.access);
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
    fp = Canonical(fp);
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
    table_[Lookup(fp)] = Slot{fp, serial, access};
    return forgotten;
  }

 private:
  struct Slot {
    uint64_t fp = 0;  // 0: empty
    uint64_t serial = 0;
    Access access;
  };

  static uint64_t Canonical(uint64_t fp) { return fp == 0 ? 1 : fp; }
  size_t Mask() const { return table_.size() - 1; }
  size_t Home(uint64_t fp) const { return (fp * 0x9e3779b97f4a7c15ULL) >> 20 & Mask(); }

  size_t Lookup(uint64_t fp) const {
    size_t i = Home(fp);
    while (table_[i].fp != 0 && table_[i].fp != fp) i = (i + 1) & Mask();
    return i;
  }

  void Erase(size_t i) {
    size_t j = i;
    while (true) {
      j = (j + 1) & Mask();
      if (table_[j].fp == 0) break;
      const size_t home = Home(table_[j].fp);
      const bool stays = i <= j ? (i < home && home <= j) : (i < home || home <= j);
      if (!stays) {
        table_[i] = table_[j];
        i = j;
      }
    }
    table_[i] = Slot{};
  }

  // Drops the oldest ring event; it forgets its key only if that event is the
  // key's latest record.
  std::optional<Access> PopOldest() {
    const uint64_t fp = ring_[head_].fp;
    const size_t i = Lookup(fp);
    std::optional<Access> forgotten;
    if (table_[i].fp != 0 && table_[i].serial == next_serial_) {
      forgotten = table_[i].access;
      Erase(i);
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
  std::vector<Slot> table_;
};

}  // namespace kvf::internal

#endif  // KVF_NODE_EVICTION_INTERNAL_REUSE_HISTORY_H_
