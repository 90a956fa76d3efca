// The chain-aware policy: a segmented LRU that keeps prefix chains in order.
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

enum class Segment : uint8_t { kProbation, kProtected };

struct ChainNode : ListLinks {
  uint64_t fp = 0;         // this entry's key
  uint64_t parent_fp = 0;  // its parent's key (KeyFingerprint(Root()) for heads)
  uint32_t depth = 0;
  Segment segment = Segment::kProbation;
  bool tracked = false;
};

// Not thread-safe (EvictionPolicy's contract: the store locks).
class ChainPolicy final : public EvictionPolicy {
 public:
  ChainPolicy(size_t capacity_hint, const ChainPolicyOptions& options)
      : options_(options), ghost_(options.ghost ? capacity_hint : 0) {
    nodes_.resize(capacity_hint);
  }

  std::string_view name() const override { return options_.name; }

  void Insert(EntryId id, const EvictionHint& hint) override {
    EnsureSlot(nodes_, id);
    ChainNode& n = nodes_[id];
    n.fp = KeyFingerprint(hint.key);
    n.parent_fp = KeyFingerprint(hint.parent);
    n.depth = hint.depth;
    n.tracked = true;
    const EntryId parent = RunParent(n);
    if (parent == kNilEntry) EndRun();
    Segment segment = Segment::kProbation;
    if (options_.inherit && parent != kNilEntry &&
        nodes_[parent].segment == Segment::kProtected &&
        nodes_[parent].depth >= options_.inherit_min_depth) {
      segment = Segment::kProtected;
    }
    if (options_.ghost && ghost_.Contains(n.fp)) {
      ghost_.Remove(n.fp);
      segment = Segment::kProtected;
    }
    Place(id, segment, parent);
    last_inserted_ = true;
  }

  void Touch(EntryId id) override {
    ChainNode& n = nodes_[id];
    const EntryId parent = RunParent(n);
    if (parent == kNilEntry) EndRun();
    ListOf(id).Remove(nodes_, id);
    Place(id, options_.probation_percent >= 100 ? Segment::kProbation : Segment::kProtected,
          parent);
    last_inserted_ = false;
  }

  void Erase(EntryId id) override { Drop(id); }

  std::optional<EntryId> Evict(absl::FunctionRef<bool(EntryId)> evictable) override {
    const size_t total = size();
    if (options_.ghost) ghost_.SetCapacity(total);
    const size_t probation_target =
        std::max<size_t>(1, total * options_.probation_percent / 100);
    // Demote the back of protected while it is over its share.
    if (options_.demote) {
      EntryId cur = protected_.back();
      while (protected_.size() > total - probation_target && cur != kNilEntry) {
        const EntryId prev = nodes_[cur].prev;
        if (evictable(cur)) {
          protected_.Remove(nodes_, cur);
          nodes_[cur].segment = Segment::kProbation;
          probation_.PushFront(nodes_, cur);
        }
        cur = prev;
      }
    }
    const bool from_probation =
        !probation_.empty() && (probation_.size() >= probation_target || protected_.empty() ||
                                options_.demote);
    if (from_probation) {
      if (auto v = EvictFrom(probation_, evictable)) return v;
      return EvictFrom(protected_, evictable);
    }
    if (auto v = EvictFrom(protected_, evictable)) return v;
    return EvictFrom(probation_, evictable);
  }

  size_t size() const override { return probation_.size() + protected_.size(); }

 private:
  IntrusiveList<ChainNode>& ListOf(EntryId id) {
    return nodes_[id].segment == Segment::kProbation ? probation_ : protected_;
  }

  // The entry this one continues, if it is the one the store handled last.
  EntryId RunParent(const ChainNode& n) const {
    if (last_ == kNilEntry || n.depth == 0) return kNilEntry;
    const ChainNode& p = nodes_[last_];
    if (!p.tracked || p.fp != n.parent_fp || p.depth + 1 != n.depth) return kNilEntry;
    return last_;
  }

  // A new run starts: if the previous one ended with a stored (missed) block,
  // that block is the partial tail of a prompt; it goes first.
  void EndRun() {
    if (!options_.drop_run_tail || last_ == kNilEntry || !last_inserted_) return;
    ListOf(last_).Remove(nodes_, last_);
    nodes_[last_].segment = Segment::kProbation;
    probation_.PushBack(nodes_, last_);
    last_ = kNilEntry;
  }

  // Puts `id` at the front of `segment`, or right behind its parent when the
  // parent sits in the same segment, so a chain's head stays in front of its
  // tail.
  void Place(EntryId id, Segment segment, EntryId parent) {
    ChainNode& n = nodes_[id];
    n.segment = segment;
    IntrusiveList<ChainNode>& list = ListOf(id);
    if (options_.tail_first && parent != kNilEntry && nodes_[parent].segment == segment) {
      list.InsertAfter(nodes_, parent, id);
    } else {
      list.PushFront(nodes_, id);
    }
    last_ = id;
  }

  void Drop(EntryId id) {
    ListOf(id).Remove(nodes_, id);
    nodes_[id].tracked = false;
    if (last_ == id) last_ = kNilEntry;
  }

  std::optional<EntryId> EvictFrom(IntrusiveList<ChainNode>& list,
                                   absl::FunctionRef<bool(EntryId)> evictable) {
    for (EntryId id = list.back(); id != kNilEntry; id = nodes_[id].prev) {
      if (!evictable(id)) continue;
      if (options_.ghost && nodes_[id].segment == Segment::kProbation) ghost_.Add(nodes_[id].fp);
      Drop(id);
      return id;
    }
    return std::nullopt;
  }

  const ChainPolicyOptions options_;
  std::vector<ChainNode> nodes_;
  IntrusiveList<ChainNode> probation_;
  IntrusiveList<ChainNode> protected_;
  GhostQueue ghost_;
  EntryId last_ = kNilEntry;  // the entry inserted or touched last
  bool last_inserted_ = false;  // whether last_ was inserted (a miss)
};

}  // namespace

std::unique_ptr<EvictionPolicy> NewChainPolicy(size_t capacity_hint,
                                               const ChainPolicyOptions& options) {
  return std::make_unique<ChainPolicy>(capacity_hint, options);
}

}  // namespace kvf::internal
