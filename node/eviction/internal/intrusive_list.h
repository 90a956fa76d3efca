// Doubly linked lists threaded through a dense node table indexed by EntryId.
//
// Every policy keeps one `std::vector<Node>` sized for `capacity_hint` entries;
// a list is just a head, a tail and a count, so moving an entry between lists
// or to the front never allocates (unlike std::list, which allocates per node).
#ifndef KVF_NODE_EVICTION_INTERNAL_INTRUSIVE_LIST_H_
#define KVF_NODE_EVICTION_INTERNAL_INTRUSIVE_LIST_H_

#include <cstddef>
#include <cstdint>
#include <vector>

#include "node/eviction_policy.h"

namespace kvf::internal {

inline constexpr EntryId kNilEntry = UINT32_MAX;

// Embed (or inherit) in a policy's node type.
struct ListLinks {
  EntryId prev = kNilEntry;  // towards the front
  EntryId next = kNilEntry;  // towards the back
};

// A list over `std::vector<Node>` where Node derives from ListLinks. The
// front is the most protected end; policies evict from the back. Not
// thread-safe; an entry is in at most one list at a time.
template <typename Node>
class IntrusiveList {
 public:
  EntryId front() const { return front_; }
  EntryId back() const { return back_; }
  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }

  void PushFront(std::vector<Node>& nodes, EntryId id) {
    Node& n = nodes[id];
    n.prev = kNilEntry;
    n.next = front_;
    if (front_ != kNilEntry) nodes[front_].prev = id;
    front_ = id;
    if (back_ == kNilEntry) back_ = id;
    ++size_;
  }

  void PushBack(std::vector<Node>& nodes, EntryId id) {
    Node& n = nodes[id];
    n.next = kNilEntry;
    n.prev = back_;
    if (back_ != kNilEntry) nodes[back_].next = id;
    back_ = id;
    if (front_ == kNilEntry) front_ = id;
    ++size_;
  }

  // Inserts `id` right behind `pos` (towards the back). `pos` is in the list.
  void InsertAfter(std::vector<Node>& nodes, EntryId pos, EntryId id) {
    Node& p = nodes[pos];
    Node& n = nodes[id];
    n.prev = pos;
    n.next = p.next;
    if (p.next != kNilEntry) {
      nodes[p.next].prev = id;
    } else {
      back_ = id;
    }
    p.next = id;
    ++size_;
  }

  void Remove(std::vector<Node>& nodes, EntryId id) {
    Node& n = nodes[id];
    if (n.prev != kNilEntry) {
      nodes[n.prev].next = n.next;
    } else {
      front_ = n.next;
    }
    if (n.next != kNilEntry) {
      nodes[n.next].prev = n.prev;
    } else {
      back_ = n.prev;
    }
    n.prev = n.next = kNilEntry;
    --size_;
  }

  void MoveToFront(std::vector<Node>& nodes, EntryId id) {
    if (front_ == id) return;
    Remove(nodes, id);
    PushFront(nodes, id);
  }

  // Moves every entry of `other` in front of this list's entries, in order.
  void SpliceFront(std::vector<Node>& nodes, IntrusiveList& other) {
    if (other.empty()) return;
    if (empty()) {
      *this = other;
    } else {
      nodes[other.back_].next = front_;
      nodes[front_].prev = other.back_;
      front_ = other.front_;
      size_ += other.size_;
    }
    other = IntrusiveList();
  }

 private:
  EntryId front_ = kNilEntry;
  EntryId back_ = kNilEntry;
  size_t size_ = 0;
};

// Grows `nodes` so that `id` indexes it; amortised O(1), and a no-op once the
// table covers the ids the store hands out (it reserves `capacity_hint`).
template <typename Node>
inline void EnsureSlot(std::vector<Node>& nodes, EntryId id) {
  if (id >= nodes.size()) {
    size_t n = nodes.size() < 16 ? 16 : nodes.size();
    while (n <= id) n *= 2;
    nodes.resize(n);
  }
}

// 64-bit fingerprint of a key, for ghost tables and chain links.
inline uint64_t KeyFingerprint(const BlockKey& key) {
  uint64_t x = key.hi ^ (key.lo * 0x9e3779b97f4a7c15ULL);
  x ^= x >> 31;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 29;
  return x;
}

}  // namespace kvf::internal

#endif  // KVF_NODE_EVICTION_INTERNAL_INTRUSIVE_LIST_H_
