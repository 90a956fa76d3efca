// FingerprintTable: an open-addressed set of 64-bit key fingerprints, each
// with a serial and a value, for the policies' bounded memories of keys
// (GhostQueue, ReuseHistory).
#ifndef KVF_NODE_EVICTION_INTERNAL_FINGERPRINT_TABLE_H_
#define KVF_NODE_EVICTION_INTERNAL_FINGERPRINT_TABLE_H_

#include <cstddef>
#include <cstdint>
#include <vector>

namespace kvf::internal {

// Not thread-safe. Linear probing with backward-shift deletion: no
// tombstones, so a table that churns forever keeps short probes
// (absl::flat_hash_map's tombstones made lookups 1000x slower in the ghost).
// Fingerprint 0 marks an empty slot: callers pass Canonical(fp).
template <typename Value>
class FingerprintTable {
 public:
  struct Slot {
    uint64_t fp = 0;  // 0: empty
    uint64_t serial = 0;
    Value value{};
  };

  static uint64_t Canonical(uint64_t fp) { return fp == 0 ? 1 : fp; }

  // Empties the table and sizes it for `capacity` keys (at most half full);
  // allocates.
  void Reset(size_t capacity) {
    size_t slots = 16;
    while (slots < 2 * capacity) slots *= 2;
    table_.assign(slots, Slot{});
  }

  // The slot holding `fp`, or the empty slot where it would go.
  size_t Find(uint64_t fp) const {
    size_t i = Home(fp);
    while (table_[i].fp != 0 && table_[i].fp != fp) i = (i + 1) & Mask();
    return i;
  }
  Slot& at(size_t i) { return table_[i]; }
  const Slot& at(size_t i) const { return table_[i]; }

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

 private:
  size_t Mask() const { return table_.size() - 1; }
  size_t Home(uint64_t fp) const { return (fp * 0x9e3779b97f4a7c15ULL) >> 20 & Mask(); }

  std::vector<Slot> table_;
};

}  // namespace kvf::internal

#endif  // KVF_NODE_EVICTION_INTERNAL_FINGERPRINT_TABLE_H_
