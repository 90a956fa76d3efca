// LRU and FIFO: one intrusive list, newest at the front. They differ only in
// what a hit does: LRU moves the entry to the front, FIFO leaves it in place.
#include <optional>
#include <string_view>
#include <vector>

#include "node/eviction/internal/intrusive_list.h"
#include "node/eviction/internal/policies.h"

namespace kvf::internal {
namespace {

struct ListNode : ListLinks {};

// Not thread-safe (EvictionPolicy's contract: the store locks).
class RecencyListPolicy final : public EvictionPolicy {
 public:
  RecencyListPolicy(size_t capacity_hint, std::string_view name, bool promote_on_touch)
      : name_(name), promote_on_touch_(promote_on_touch) {
    nodes_.resize(capacity_hint);
  }

  std::string_view name() const override { return name_; }

  void Insert(EntryId id, const EvictionHint&) override {
    EnsureSlot(nodes_, id);
    list_.PushFront(nodes_, id);
  }
  void Touch(EntryId id) override {
    if (promote_on_touch_) list_.MoveToFront(nodes_, id);
  }
  void Erase(EntryId id) override { list_.Remove(nodes_, id); }

  std::optional<EntryId> Evict(absl::FunctionRef<bool(EntryId)> evictable) override {
    // Pinned entries keep their place; the scan passes over them.
    for (EntryId id = list_.back(); id != kNilEntry; id = nodes_[id].prev) {
      if (evictable(id)) {
        list_.Remove(nodes_, id);
        return id;
      }
    }
    return std::nullopt;
  }

  size_t size() const override { return list_.size(); }

 private:
  const std::string_view name_;
  const bool promote_on_touch_;
  std::vector<ListNode> nodes_;
  IntrusiveList<ListNode> list_;
};

}  // namespace

std::unique_ptr<EvictionPolicy> NewLruPolicy(size_t capacity_hint) {
  return std::make_unique<RecencyListPolicy>(capacity_hint, "lru", /*promote_on_touch=*/true);
}

std::unique_ptr<EvictionPolicy> NewFifoPolicy(size_t capacity_hint) {
  return std::make_unique<RecencyListPolicy>(capacity_hint, "fifo", /*promote_on_touch=*/false);
}

}  // namespace kvf::internal
