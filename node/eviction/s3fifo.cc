// S3-FIFO (Juncheng Yang et al., "FIFO queues are all you need for cache
// eviction", SOSP'23).
#include <algorithm>
#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

#include "node/eviction/internal/ghost_queue.h"
#include "node/eviction/internal/intrusive_list.h"
#include "node/eviction/internal/policies.h"

namespace kvf::internal {
namespace {

constexpr uint8_t kMaxFreq = 3;  // 2 bits
enum class Queue : uint8_t { kSmall, kMain };

struct S3Node : ListLinks {
  uint64_t fp = 0;
  uint8_t freq = 0;
  Queue queue = Queue::kSmall;
};

// Not thread-safe (EvictionPolicy's contract: the store locks).
//
// The queues are sized relative to the number of tracked entries at eviction
// time (the store evicts only when full, so that is the cache size): small
// holds ~10%, the ghost remembers as many keys as main holds.
class S3FifoPolicy final : public EvictionPolicy {
 public:
  explicit S3FifoPolicy(size_t capacity_hint) : ghost_(capacity_hint) {
    nodes_.resize(capacity_hint);
  }

  std::string_view name() const override { return "s3fifo"; }

  void Insert(EntryId id, const EvictionHint& hint) override {
    EnsureSlot(nodes_, id);
    S3Node& n = nodes_[id];
    n.fp = KeyFingerprint(hint.key);
    n.freq = 0;
    if (ghost_.Contains(n.fp)) {
      ghost_.Remove(n.fp);
      n.queue = Queue::kMain;
      main_.PushFront(nodes_, id);
    } else {
      n.queue = Queue::kSmall;
      small_.PushFront(nodes_, id);
    }
  }

  void Touch(EntryId id) override {
    S3Node& n = nodes_[id];
    if (n.freq < kMaxFreq) ++n.freq;
  }

  void Erase(EntryId id) override { ListOf(id).Remove(nodes_, id); }

  std::optional<EntryId> Evict(absl::FunctionRef<bool(EntryId)> evictable) override {
    const size_t total = size();
    ghost_.SetCapacity(total);  // allocates only while growing past the hint
    const size_t small_target = std::max<size_t>(1, total / 10);
    if (!small_.empty() && (small_.size() >= small_target || main_.empty())) {
      if (auto v = EvictSmall(evictable)) return v;
      return EvictMain(evictable);
    }
    if (auto v = EvictMain(evictable)) return v;
    return EvictSmall(evictable);
  }

  size_t size() const override { return small_.size() + main_.size(); }

 private:
  IntrusiveList<S3Node>& ListOf(EntryId id) {
    return nodes_[id].queue == Queue::kSmall ? small_ : main_;
  }

  // From the back of small: entries hit while there move to main; the first
  // one that was not is evicted and remembered in the ghost.
  std::optional<EntryId> EvictSmall(absl::FunctionRef<bool(EntryId)> evictable) {
    EntryId cur = small_.back();
    while (cur != kNilEntry) {
      const EntryId prev = nodes_[cur].prev;
      if (evictable(cur)) {
        S3Node& n = nodes_[cur];
        small_.Remove(nodes_, cur);
        if (n.freq >= kMoveToMainThreshold) {
          n.freq = 0;
          n.queue = Queue::kMain;
          main_.PushFront(nodes_, cur);
        } else {
          ghost_.Add(n.fp);
          return cur;
        }
      }
      cur = prev;
    }
    return std::nullopt;
  }

  // CLOCK-like walk of main from the back: an entry with a frequency left is
  // reinserted at the front with one less; the first without is evicted. A
  // single walk suffices: reinserted entries are met again before the walk
  // falls off the front, each with a lower frequency.
  std::optional<EntryId> EvictMain(absl::FunctionRef<bool(EntryId)> evictable) {
    EntryId cur = main_.back();
    while (cur != kNilEntry) {
      const EntryId prev = nodes_[cur].prev;
      if (evictable(cur)) {
        S3Node& n = nodes_[cur];
        if (n.freq == 0) {
          main_.Remove(nodes_, cur);
          return cur;
        }
        --n.freq;
        main_.MoveToFront(nodes_, cur);
        // Already at the front: nothing is left to walk but itself.
        if (prev == kNilEntry) continue;
      }
      cur = prev;
    }
    return std::nullopt;
  }

  static constexpr uint8_t kMoveToMainThreshold = 1;

  std::vector<S3Node> nodes_;
  IntrusiveList<S3Node> small_;
  IntrusiveList<S3Node> main_;
  GhostQueue ghost_;
};

}  // namespace

std::unique_ptr<EvictionPolicy> NewS3FifoPolicy(size_t capacity_hint) {
  return std::make_unique<S3FifoPolicy>(capacity_hint);
}

}  // namespace kvf::internal
