// The reuse-learning policy: ranks entries by how many hits per unit of cache
// space-time they are still expected to bring, learned online from a sample
// of the request stream (docs/eviction.md, "reuse").
#include <algorithm>
#include <array>
#include <bit>
#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

#include "node/eviction/internal/intrusive_list.h"
#include "node/eviction/internal/policies.h"
#include "node/eviction/internal/reuse_history.h"

namespace kvf::internal {
namespace {

// Ages are counted in accesses (Insert + Touch calls) and bucketed on a log
// scale, four buckets per octave, so no time unit or trace scale is assumed.
constexpr int kAgeBuckets = 4 * 48;

constexpr int AgeBucket(uint64_t age) {
  const uint64_t v = age + 1;
  const int e = std::bit_width(v) - 1;
  if (e < 2) return static_cast<int>(v - 1);
  const int b = 4 * e + static_cast<int>((v >> (e - 2)) & 3) - 5;
  return b < kAgeBuckets ? b : kAgeBuckets - 1;
}

struct AgeBuckets {
  std::array<double, kAgeBuckets> width{};
  constexpr AgeBuckets() {
    for (int b = 0; b < 3; ++b) width[b] = 1;
    for (int e = 2; 4 * e - 5 + 3 < kAgeBuckets; ++e) {
      for (int sub = 0; sub < 4; ++sub) width[4 * e + sub - 5] = static_cast<double>(1ULL << (e - 2));
    }
  }
};
constexpr AgeBuckets kBuckets;

// The class of an entry: how many times its chain has been extended (its
// "level": 0 for a chain's first request, +1 per follow-up request) and how
// many times the key was accessed before, bucketed; plus one class for the
// partial last block of a request.
constexpr int kFeatureClasses = 16;
constexpr uint8_t kTailClass = kFeatureClasses;
constexpr int kClasses = kFeatureClasses + 1;

uint8_t LevelClass(uint32_t level) {
  if (level < 4) return static_cast<uint8_t>(level);
  if (level < 6) return 4;
  if (level < 9) return 5;
  if (level < 14) return 6;
  return 7;
}
uint8_t CountClass(uint32_t count) {
  if (count < 4) return static_cast<uint8_t>(count);
  if (count < 6) return 4;
  if (count < 9) return 5;
  if (count < 14) return 6;
  return 7;
}
uint8_t Quarter(uint32_t v) { return v < 2 ? v : v < 4 ? 2 : 3; }

struct ReuseNode : ListLinks {
  uint64_t fp = 0;
  uint64_t parent_fp = 0;
  uint64_t time = 0;   // clock at the last access
  uint32_t depth = 0;
  uint32_t level = 0;  // the chain level of the request that inserted it
  uint8_t count = 0;   // accesses before the last one (saturating)
  uint8_t cls = 0;
  bool tracked = false;
};

// Not thread-safe (EvictionPolicy's contract: the store locks).
class ReusePolicy final : public EvictionPolicy {
 public:
  ReusePolicy(size_t capacity_hint, const ReusePolicyOptions& options)
      : options_(options),
        history_(std::max<size_t>(2 * capacity_hint, options.min_history)),
        ghost_(options.ghost_factor * capacity_hint) {
    nodes_.resize(capacity_hint);
    for (auto& row : density_) row.fill(0);
    for (auto& row : reuses_) row.fill(0);
    for (auto& row : ends_) row.fill(0);
  }

  std::string_view name() const override { return options_.name; }

  void Insert(EntryId id, const EvictionHint& hint) override {
    EnsureSlot(nodes_, id);
    ReuseNode& n = nodes_[id];
    n.fp = KeyFingerprint(hint.key);
    n.parent_fp = KeyFingerprint(hint.parent);
    n.depth = hint.depth;
    n.tracked = true;
    const EntryId parent = RunParent(n);
    if (parent == kNilEntry) StartRun();
    n.level = run_level_;
    n.count = 0;
    // A block evicted not long ago comes back: it keeps its count and level.
    if (options_.ghost_factor > 0) {
      if (const ReuseHistory::Access* g = ghost_.Find(n.fp)) {
        n.count = g->count < 255 ? g->count + 1 : 255;
        n.level = g->cls;
        run_level_ = std::max<uint32_t>(run_level_, n.level + 1);
      }
    }
    Access(id, ClassOf(run_level_, n.count), parent, /*cached=*/false);
    last_inserted_ = true;
  }

  void Touch(EntryId id) override {
    ReuseNode& n = nodes_[id];
    const EntryId parent = RunParent(n);
    if (parent == kNilEntry) StartRun();
    run_level_ = n.level + 1;
    if (n.count < 255) ++n.count;
    ListOf(id).Remove(nodes_, id);
    Access(id, ClassOf(run_level_, n.count), parent, /*cached=*/true);
    last_inserted_ = false;
  }

  void Erase(EntryId id) override { Drop(id); }

  std::optional<EntryId> Evict(absl::FunctionRef<bool(EntryId)> evictable) override {
    // Grows only while the store holds more entries than ever before.
    history_.SetCapacity(std::max(options_.min_history, 2 * size()));
    EntryId victim = kNilEntry;
    double victim_density = 0;
    uint64_t victim_age = 0;
    for (int k = 0; k < kClasses; ++k) {
      const int c = (k + kTailClass) % kClasses;
      for (EntryId id = lists_[c].back(); id != kNilEntry; id = nodes_[id].prev) {
        if (!evictable(id)) continue;
        const uint64_t age = clock_ - nodes_[id].time;
        const double d = density_[c][AgeBucket(age)];
        // Ties (a cold start, ages past what was learned): partial tails
        // first (the tail class is scanned first), then the oldest.
        if (victim == kNilEntry || d < victim_density ||
            (d == victim_density && age > victim_age && nodes_[victim].cls != kTailClass)) {
          victim = id;
          victim_density = d;
          victim_age = age;
        }
        break;
      }
    }
    if (victim == kNilEntry) return std::nullopt;
    if (options_.ghost_factor > 0) {
      ghost_.SetCapacity(options_.ghost_factor * size());
      ghost_.Record(nodes_[victim].fp,
                    {clock_, static_cast<uint8_t>(std::min<uint32_t>(nodes_[victim].level, 255)),
                     nodes_[victim].count});
    }
    Drop(victim);
    return victim;
  }

  size_t size() const override {
    size_t n = 0;
    for (const auto& l : lists_) n += l.size();
    return n;
  }

 private:
  IntrusiveList<ReuseNode>& ListOf(EntryId id) { return lists_[nodes_[id].cls]; }

  uint8_t ClassOf(uint32_t level, uint32_t count) const {
    switch (options_.classes) {
      case ReusePolicyOptions::Classes::kNone: return 0;
      case ReusePolicyOptions::Classes::kLevel: return LevelClass(level);
      case ReusePolicyOptions::Classes::kCount: return CountClass(count);
      case ReusePolicyOptions::Classes::kLevelAndCount:
        return static_cast<uint8_t>(4 * Quarter(level) + Quarter(count));
    }
    return 0;
  }

  bool Sampled(uint64_t fp) const {
    if (options_.sample_shift == 0) return true;
    return ((fp * 0xd6e8feb86659fd93ULL) >> (64 - options_.sample_shift)) == 0;
  }

  // The entry this one continues, if it is the one the store handled last.
  EntryId RunParent(const ReuseNode& n) const {
    if (last_ == kNilEntry || n.depth == 0) return kNilEntry;
    const ReuseNode& p = nodes_[last_];
    if (!p.tracked || p.fp != n.parent_fp || p.depth + 1 != n.depth) return kNilEntry;
    return last_;
  }

  // A new request starts. If the previous one ended with a stored (missed)
  // block, that block is the partial tail of its prompt: it gets a class of
  // its own, whose (low) reuse is learned like any other.
  void StartRun() {
    run_level_ = 0;
    if (options_.tail_class && last_ != kNilEntry && last_inserted_) {
      ReuseNode& n = nodes_[last_];
      ListOf(last_).Remove(nodes_, last_);
      n.cls = kTailClass;
      lists_[kTailClass].PushFront(nodes_, last_);
      if (Sampled(n.fp)) history_.Reclassify(n.fp, kTailClass);
    }
    last_ = kNilEntry;
  }

  // Bookkeeping shared by Insert and Touch: learn from a sampled key's reuse,
  // stamp the access and place the entry (`id` is in no list).
  //
  // The counts estimate, per class and age, how many lifetimes (the time from
  // one access of a key to the next) end in a reuse and how many outlive the
  // history. A reuse of a cached entry is seen for every key (weight 1); a
  // reuse after eviction and a lifetime that outlives the history are seen
  // only for sampled keys (weight 2^sample_shift). Hot keys, which stay
  // cached, are thus measured exactly, and the rest without bias.
  void Access(EntryId id, uint8_t cls, EntryId parent, bool cached) {
    ReuseNode& n = nodes_[id];
    const double weight = static_cast<double>(uint64_t{1} << options_.sample_shift);
    if (cached) reuses_[n.cls][AgeBucket(clock_ - n.time)] += 1;
    if (Sampled(n.fp)) {
      if (!cached) {
        if (const ReuseHistory::Access* prev = history_.Find(n.fp)) {
          reuses_[prev->cls][AgeBucket(clock_ - prev->time)] += weight;
        }
      }
      if (auto forgotten = history_.Record(n.fp, {clock_, cls})) {
        ends_[forgotten->cls][AgeBucket(clock_ - forgotten->time)] += weight;
      }
    }
    if (options_.horizon_factor > 0 && clock_ > horizon_) {
      history_.ForgetBefore(clock_ - horizon_, [&](const ReuseHistory::Access& a) {
        ends_[a.cls][AgeBucket(clock_ - a.time)] += weight;
      });
    }
    n.time = clock_;
    n.cls = cls;
    // Tail first: a request's blocks stay together, head in front.
    IntrusiveList<ReuseNode>& list = lists_[cls];
    if (parent != kNilEntry && nodes_[parent].cls == cls) {
      list.InsertAfter(nodes_, parent, id);
    } else {
      list.PushFront(nodes_, id);
    }
    last_ = id;
    if (++clock_ >= next_update_) Update();
  }

  void Drop(EntryId id) {
    ListOf(id).Remove(nodes_, id);
    nodes_[id].tracked = false;
    if (last_ == id) last_ = kNilEntry;
  }

  // Recomputes every class's index table from the counts, then ages the
  // counts. O(classes x buckets^2 + history), every max(min_period, size())
  // accesses: O(1) amortised.
  void Update() {
    next_update_ = clock_ + std::max<uint64_t>(options_.min_period, size());
    horizon_ = std::max<uint64_t>(horizon_, options_.horizon_factor * size());
    // Lifetimes still open (sampled keys not reused yet) count as ended
    // without reuse at their current age (Kaplan-Meier's censoring): without
    // them a young history sees only the reuses and overrates every class.
    std::array<std::array<double, kAgeBuckets>, kClasses> censored{};
    const double weight = static_cast<double>(uint64_t{1} << options_.sample_shift);
    history_.ForEach([&](const ReuseHistory::Access& a) {
      censored[a.cls][AgeBucket(clock_ - a.time)] += weight;
    });
    std::array<double, kAgeBuckets> pooled_r{}, pooled_e{};
    double pooled = 0;
    for (int c = 0; c < kClasses; ++c) {
      for (int b = 0; b < kAgeBuckets; ++b) {
        pooled_r[b] += reuses_[c][b];
        pooled_e[b] += ends_[c][b] + censored[c][b];
        pooled += reuses_[c][b] + ends_[c][b] + censored[c][b];
      }
    }
    // Every class is shrunk towards the pooled distribution with the weight
    // of `prior_lifetimes` lifetimes, so a class seen rarely is ranked like
    // an average entry rather than like one that is never reused.
    const double prior = pooled > 0 ? options_.prior_lifetimes / pooled : 0;
    for (int c = 0; c < kClasses; ++c) {
      std::array<double, kAgeBuckets> r{}, e{};
      int last = -1;
      double total = 0;
      for (int b = 0; b < kAgeBuckets; ++b) {
        r[b] = reuses_[c][b] + prior * pooled_r[b];
        e[b] = ends_[c][b] + censored[c][b] + prior * pooled_e[b];
        total += r[b] + e[b];
        if (r[b] + e[b] > 0) last = b;
      }
      auto& d = density_[c];
      d.fill(0);
      if (total <= 0) continue;
      // alive[b]: lifetimes still open through bucket b (half of those ending
      // in b), times its width = space-time spent in b.
      std::array<double, kAgeBuckets> cost{};
      double open = total;
      for (int b = 0; b <= last; ++b) {
        cost[b] = (open - (r[b] + e[b]) / 2) * kBuckets.width[b];
        open -= r[b] + e[b];
      }
      // Gittins-style index: the best hits / space-time ratio over any
      // horizon from this age on.
      for (int b = 0; b <= last; ++b) {
        double hits = 0, space = 0, best = 0;
        for (int t = b; t <= last; ++t) {
          hits += r[t];
          space += cost[t];
          if (space > 0 && hits / space > best) best = hits / space;
        }
        d[b] = best;
      }
    }
    const double keep = 1.0 - 1.0 / options_.decay_periods;
    for (auto& row : reuses_) {
      for (double& x : row) x *= keep;
    }
    for (auto& row : ends_) {
      for (double& x : row) x *= keep;
    }
  }

  const ReusePolicyOptions options_;
  std::vector<ReuseNode> nodes_;
  std::array<IntrusiveList<ReuseNode>, kClasses> lists_;
  ReuseHistory history_;
  ReuseHistory ghost_;  // evicted keys: cls holds the level, count the count
  std::array<std::array<double, kAgeBuckets>, kClasses> reuses_;
  std::array<std::array<double, kAgeBuckets>, kClasses> ends_;
  std::array<std::array<double, kAgeBuckets>, kClasses> density_;
  uint64_t clock_ = 0;
  uint64_t next_update_ = 0;
  uint64_t horizon_ = 0;  // the history forgets accesses older than this
  uint32_t run_level_ = 0;
  EntryId last_ = kNilEntry;
  bool last_inserted_ = false;
};

}  // namespace

std::unique_ptr<EvictionPolicy> NewReusePolicy(size_t capacity_hint,
                                               const ReusePolicyOptions& options) {
  return std::make_unique<ReusePolicy>(capacity_hint, options);
}

}  // namespace kvf::internal
