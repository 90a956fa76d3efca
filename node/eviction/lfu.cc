// LFU in O(1): one intrusive list per (saturating) frequency; within a
// bucket, most recent at the front, so ties go to the least recent.
#include <array>
#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

#include "node/eviction/internal/intrusive_list.h"
#include "node/eviction/internal/policies.h"

namespace kvf::internal {
namespace {

constexpr uint32_t kMaxCount = 31;
// Counts halve once the policy has seen this many touches per tracked entry.
constexpr uint64_t kAgeingTouchesPerEntry = 8;

struct LfuNode : ListLinks {
  uint8_t count = 0;
};

// Not thread-safe (EvictionPolicy's contract: the store locks).
class LfuPolicy final : public EvictionPolicy {
 public:
  explicit LfuPolicy(size_t capacity_hint) { nodes_.resize(capacity_hint); }

  std::string_view name() const override { return "lfu"; }

  void Insert(EntryId id, const EvictionHint&) override {
    EnsureSlot(nodes_, id);
    nodes_[id].count = 0;
    buckets_[0].PushFront(nodes_, id);
    ++size_;
  }

  void Touch(EntryId id) override {
    LfuNode& n = nodes_[id];
    buckets_[n.count].Remove(nodes_, id);
    if (n.count < kMaxCount) ++n.count;
    buckets_[n.count].PushFront(nodes_, id);
    if (++touches_ >= kAgeingTouchesPerEntry * size_ + 64) Age();
  }

  void Erase(EntryId id) override {
    buckets_[nodes_[id].count].Remove(nodes_, id);
    --size_;
  }

  std::optional<EntryId> Evict(absl::FunctionRef<bool(EntryId)> evictable) override {
    for (auto& bucket : buckets_) {
      for (EntryId id = bucket.back(); id != kNilEntry; id = nodes_[id].prev) {
        if (evictable(id)) {
          bucket.Remove(nodes_, id);
          --size_;
          return id;
        }
      }
    }
    return std::nullopt;
  }

  size_t size() const override { return size_; }

 private:
  // Halves every count: bucket c merges into c/2, the merged entries in front
  // (they were more frequent). O(size) once per O(size) touches.
  void Age() {
    touches_ = 0;
    for (uint32_t c = 1; c <= kMaxCount; ++c) {
      for (EntryId id = buckets_[c].front(); id != kNilEntry; id = nodes_[id].next) {
        nodes_[id].count = static_cast<uint8_t>(c / 2);
      }
      buckets_[c / 2].SpliceFront(nodes_, buckets_[c]);
    }
  }

  std::vector<LfuNode> nodes_;
  std::array<IntrusiveList<LfuNode>, kMaxCount + 1> buckets_;
  size_t size_ = 0;
  uint64_t touches_ = 0;
};

}  // namespace

std::unique_ptr<EvictionPolicy> NewLfuPolicy(size_t capacity_hint) {
  return std::make_unique<LfuPolicy>(capacity_hint);
}

}  // namespace kvf::internal
