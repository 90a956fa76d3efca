// FIFO: one intrusive list in insertion order; hits change nothing.
#include <optional>
#include <string_view>
#include <vector>

#include "node/eviction/internal/intrusive_list.h"
#include "node/eviction/internal/policies.h"

namespace kvf::internal {
namespace {

struct FifoNode : ListLinks {};

// Not thread-safe (EvictionPolicy's contract: the store locks).
class FifoPolicy final : public EvictionPolicy {
 public:
  explicit FifoPolicy(size_t capacity_hint) { nodes_.resize(capacity_hint); }

  std::string_view name() const override { return "fifo"; }

  void Insert(EntryId id, const EvictionHint&) override {
    EnsureSlot(nodes_, id);
    list_.PushFront(nodes_, id);
  }
  void Touch(EntryId) override {}
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
  std::vector<FifoNode> nodes_;
  IntrusiveList<FifoNode> list_;
};

}  // namespace

std::unique_ptr<EvictionPolicy> NewFifoPolicy(size_t capacity_hint) {
  return std::make_unique<FifoPolicy>(capacity_hint);
}

}  // namespace kvf::internal
