// Placement as a consistent-hash ring with many points per node.
//
// Why a ring (docs/placement.md has the numbers): every scheme that keeps
// "a join moves keys only to the new node, a leave only the leaver's keys"
// exactly, for any set of nodes, orders the nodes per position by something
// each node computes alone (a ring's clockwise distance, rendezvous scores).
// Its balance is then set by how many independent units each node has; the
// ring gets them at O(points) build cost, where a rendezvous table pays
// O(slots x nodes). So: 16384 points for a node of the largest weight class,
// a 48-bit position each.
//
// A key is owned by the first point at or after its hash (clockwise), and its
// R owners are read off the walk from there: first the nodes whose failure
// domain is not yet used, then, if the map has fewer domains than R, the next
// distinct nodes. Inserting a node only inserts points into that walk, which
// is why a join can only add the new node to owner lists (see the tests).
// Build sorts the points (two-level radix sort) and evaluates that walk for
// every point at once, in one backward sweep; lookups then read a top-bits
// index, a short run of 32-bit position suffixes and the precomputed owner
// list (Placement::Impl below). The walk itself survives only as Select(),
// which seeds the sweep and serves the bounded-load build.
#include "common/placement.h"

#include <sys/mman.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <new>
#include <string>
#include <type_traits>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "xxhash.h"

namespace kvf {
namespace {

// Points given to a node whose weight is in the largest power-of-two class.
// 16384 keeps the ring's own spread at 1/sqrt(16384) = 0.8% per node, so
// max/mean over 2M sampled keys stays under 1.05 even at 256 nodes, R = 1.
constexpr uint64_t kPointsPerNode = 16384;
constexpr uint32_t kMaxNodes = 0xFFFF;  // node index is packed in 16 bits
constexpr int kPosShift = 16;           // positions are the top 48 bits
constexpr uint64_t kIndexMask = 0xFFFF;

// Bijective 64-bit mixer (splitmix64's finalizer): fixed forever, since the
// golden values in tests/common/placement_test.cc depend on it.
inline uint64_t Mix64(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  x ^= x >> 31;
  return x;
}

inline uint64_t PointHash(NodeId id, uint32_t k) {
  return Mix64(((static_cast<uint64_t>(id) << 32) | k) ^ 0x6b766672696e6731ULL);  // "kvfring1"
}

// Points for a node of weight w when the heaviest node weighs wmax: weights are
// normalized by the power of two at or above wmax, so a join or leave changes
// nobody else's point count unless it moves that power of two.
uint64_t PointsFor(double w, double wmax) {
  int e = 0;
  const double m = std::frexp(wmax, &e);  // wmax = m * 2^e, m in [0.5, 1)
  const double ref = (m == 0.5) ? std::ldexp(1.0, e - 1) : std::ldexp(1.0, e);
  const long long p = std::llround(static_cast<double>(kPointsPerNode) * (w / ref));
  return p < 1 ? 1 : static_cast<uint64_t>(p);
}

// Memory for the big lookup arrays. Buffers of 1 MiB and more are 2 MiB
// aligned and marked MADV_HUGEPAGE (best effort: ignored where transparent
// huge pages are off): at 256 nodes the arrays are tens of MB, and with 4 KiB
// pages every lookup also missed the TLB, and Build paid a page fault per
// 4 KiB. Elements are left uninitialized.
template <typename T>
class LargeArray {
 public:
  static_assert(std::is_trivially_copyable_v<T>);
  LargeArray() = default;
  explicit LargeArray(size_t n) : n_(n) {
    constexpr size_t kHuge = size_t{2} << 20;
    const size_t bytes = std::max<size_t>(n * sizeof(T), 1);
    void* p = nullptr;
    if (bytes >= kHuge / 2) {
      const size_t rounded = (bytes + kHuge - 1) & ~(kHuge - 1);
      p = std::aligned_alloc(kHuge, rounded);
#ifdef MADV_HUGEPAGE
      if (p != nullptr) madvise(p, rounded, MADV_HUGEPAGE);
#endif
    } else {
      p = std::malloc(bytes);
    }
    if (p == nullptr) throw std::bad_alloc();
    p_.reset(static_cast<T*>(p));
  }
  T* data() { return p_.get(); }
  const T* data() const { return p_.get(); }
  T& operator[](size_t i) { return p_.get()[i]; }
  const T& operator[](size_t i) const { return p_.get()[i]; }
  size_t size() const { return n_; }
  bool empty() const { return n_ == 0; }

 private:
  struct Free {
    void operator()(T* p) const { std::free(p); }
  };
  std::unique_ptr<T, Free> p_;
  size_t n_ = 0;
};

// Asks for transparent huge pages on the 2 MiB-aligned part of [p, p + bytes)
// before it is first touched (best effort). Ranges() fills hundreds of MB
// once; with 4 KiB pages most of its time was page faults.
void AdviseHugePages(void* p, size_t bytes) {
#ifdef MADV_HUGEPAGE
  constexpr uintptr_t kHuge = uintptr_t{2} << 20;
  const uintptr_t begin = (reinterpret_cast<uintptr_t>(p) + kHuge - 1) & ~(kHuge - 1);
  const uintptr_t end = (reinterpret_cast<uintptr_t>(p) + bytes) & ~(kHuge - 1);
  if (end > begin) madvise(reinterpret_cast<void*>(begin), end - begin, MADV_HUGEPAGE);
#else
  (void)p;
  (void)bytes;
#endif
}

}  // namespace

// The ring is kept in lookup form only:
//   index[t]   first point whose position's top `index_bits` bits are >= t
//              (index_bits >= 16, ~4 points a bucket)
//   low[j]     the 32 position bits below the top `index_bits` (48 - 16 <= 32,
//              so with the bucket they give the whole 48-bit position)
//   owners     `replicas` node indices per point, primary first: the owner
//              list of the arc that ends at point j, computed at Build
// A lookup reads index[t], then (in parallel) the bucket's low[] values and
// owner lists: two dependent cache misses, no walk.
struct Placement::Impl {
  RingParams params;
  std::vector<NodeId> ids;         // sorted; index = position here
  std::vector<double> weights;     // by index
  std::vector<uint32_t> domain;    // by index: failure-domain ordinal
  uint32_t num_domains = 0;
  size_t replicas = 0;             // min(R, nodes)
  size_t ring_size = 0;            // points
  int index_bits = 16;
  LargeArray<uint32_t> index;      // 2^index_bits + 1 entries
  LargeArray<uint32_t> low;        // ring_size entries
  LargeArray<uint16_t> owners;     // ring_size * replicas entries

  uint32_t LowKey(uint64_t h) const {
    return static_cast<uint32_t>(((h & ~kIndexMask) << index_bits) >> 32);
  }

  size_t Locate(uint64_t h) const {
    const size_t t = static_cast<size_t>(h >> (64 - index_bits));
    const uint32_t key = LowKey(h);
    size_t j = index[t];
    const size_t end = index[t + 1];
    while (j < end && low[j] < key) ++j;
    return j == ring_size ? 0 : j;
  }

  size_t OwnersAt(size_t j, NodeId* out, size_t t) const {
    const uint16_t* o = &owners[j * replicas];
    for (size_t k = 0; k < t; ++k) out[k] = ids[o[k]];
    return t;
  }

  // Build-time only: the owner walk over the sorted packed ring
  // ((pos48 << 16) | node index), starting at point j0. `full` (bounded-load
  // build only) marks nodes to pass over while others qualify.
  size_t Select(const uint64_t* ring, size_t j0, uint16_t* out, size_t t,
                const std::vector<bool>* full = nullptr) const {
    const size_t m = ring_size;
    size_t n = 0;
    uint32_t doms[kMaxReplication];
    const size_t need1 = std::min<size_t>(t, num_domains);
    auto picked = [&](uint32_t node) {
      for (size_t k = 0; k < n; ++k) {
        if (out[k] == node) return true;
      }
      return false;
    };
    // Pass 1: new failure domains; pass 2: any node not yet picked. With a
    // `full` set each pass runs twice, first skipping full nodes.
    for (int strict = full ? 1 : 0; strict >= 0 && n < need1; --strict) {
      size_t j = j0;
      for (size_t steps = 0; n < need1 && steps < m; ++steps) {
        const uint32_t node = static_cast<uint32_t>(ring[j] & kIndexMask);
        const uint32_t d = domain[node];
        bool used = strict && (*full)[node];
        for (size_t k = 0; k < n && !used; ++k) used = doms[k] == d;
        if (!used) {
          doms[n] = d;
          out[n++] = static_cast<uint16_t>(node);
        }
        if (++j == m) j = 0;
      }
    }
    for (int strict = full ? 1 : 0; strict >= 0 && n < t; --strict) {
      size_t j = j0;
      for (size_t steps = 0; n < t && steps < m; ++steps) {
        const uint32_t node = static_cast<uint32_t>(ring[j] & kIndexMask);
        if (!(strict && (*full)[node]) && !picked(node)) out[n++] = static_cast<uint16_t>(node);
        if (++j == m) j = 0;
      }
    }
    return n;
  }

  void BuildRing();
  void SortPoints(LargeArray<uint64_t>& ring);
  void ComputeOwners(const uint64_t* ring);
  void BuildBoundedLoad(const uint64_t* ring);
};

// Sorts every point into `ring` ((pos48 << 16) | node index, ascending) and
// fills `index` and `low`. Two-level radix sort on the position's top bits:
// points are hashed twice (count, then scatter into 2^P partitions: few
// enough write streams to stay in cache), then each partition, small enough
// for L2, is counting-sorted on the next bits into a scratch buffer and
// finished by insertion sort. Ties at one position
// order by node index, i.e. by id: the same in every set of nodes.
void Placement::Impl::SortPoints(LargeArray<uint64_t>& ring) {
  const size_t n = ids.size();
  const double wmax = *std::max_element(weights.begin(), weights.end());
  std::vector<uint32_t> points(n);
  size_t total = 0;
  for (size_t i = 0; i < n; ++i) {
    points[i] = static_cast<uint32_t>(std::min<uint64_t>(PointsFor(weights[i], wmax), 1u << 30));
    total += points[i];
  }
  ring_size = total;
  // ~4 points per index bucket; at least 16 bits so `low` holds the rest of
  // the 48-bit position.
  index_bits = std::clamp(static_cast<int>(std::bit_width(total)) - 3, 16, 26);
  const int b = index_bits;
  const int pb = (b + 1) / 2;  // partition bits
  const int lb = b - pb;       // bits sorted within a partition
  const int pshift = 64 - pb;

  std::vector<uint32_t> part((size_t{1} << pb) + 1, 0);
  for (size_t i = 0; i < n; ++i) {
    const NodeId id = ids[i];
    for (uint32_t k = 0; k < points[i]; ++k) ++part[(PointHash(id, k) >> pshift) + 1];
  }
  for (size_t p = 1; p < part.size(); ++p) part[p] += part[p - 1];
  ring = LargeArray<uint64_t>(total);
  {
    std::vector<uint32_t> cursor(part.begin(), part.end() - 1);
    uint64_t* r = ring.data();
    for (size_t i = 0; i < n; ++i) {
      const NodeId id = ids[i];
      for (uint32_t k = 0; k < points[i]; ++k) {
        const uint64_t h = PointHash(id, k);
        r[cursor[h >> pshift]++] = (h & ~kIndexMask) | i;
      }
    }
  }

  index = LargeArray<uint32_t>((size_t{1} << b) + 1);
  low = LargeArray<uint32_t>(total);
  // Within a partition, counting-sort on kExtra more bits than the index
  // needs (sub-buckets of ~1/2 point), so one insertion-sort pass over the
  // nearly sorted partition finishes it with few, well-predicted moves.
  constexpr int kExtra = 3;
  const int sb = lb + kExtra;  // sub-bucket bits sorted within a partition
  const size_t subs = size_t{1} << sb;
  std::vector<uint32_t> cnt(subs + 1);
  size_t max_part = 0;
  for (size_t p = 0; p + 1 < part.size(); ++p) max_part = std::max<size_t>(max_part, part[p + 1] - part[p]);
  std::vector<uint64_t> scratch(max_part);
  for (size_t p = 0; p + 1 < part.size(); ++p) {
    const size_t s = part[p], e = part[p + 1];
    uint64_t* r = ring.data() + s;
    const size_t len = e - s;
    std::fill(cnt.begin(), cnt.end(), 0);
    // Bits [64 - pb - sb, 64 - pb) of the position: the sub-bucket.
    auto local = [&](uint64_t v) -> size_t { return static_cast<size_t>((v << pb) >> (64 - sb)); };
    for (size_t x = 0; x < len; ++x) ++cnt[local(r[x]) + 1];
    for (size_t q = 1; q <= subs; ++q) cnt[q] += cnt[q - 1];
    uint32_t* idx = &index[p << lb];
    for (size_t q = 0; q < (size_t{1} << lb); ++q) idx[q] = static_cast<uint32_t>(s + cnt[q << kExtra]);
    for (size_t x = 0; x < len; ++x) scratch[cnt[local(r[x])]++] = r[x];
    for (size_t a = 1; a < len; ++a) {
      const uint64_t v = scratch[a];
      if (scratch[a - 1] <= v) continue;
      size_t c = a;
      for (; c > 0 && scratch[c - 1] > v; --c) scratch[c] = scratch[c - 1];
      scratch[c] = v;
    }
    uint32_t* lw = &low[s];
    for (size_t x = 0; x < len; ++x) {
      r[x] = scratch[x];
      lw[x] = static_cast<uint32_t>(((scratch[x] & ~kIndexMask) << b) >> 32);
    }
  }
  index[size_t{1} << b] = static_cast<uint32_t>(total);
}

// Owner lists for every point, in one backward sweep. Let L1(j) be the first
// `need1` failure domains met on the (cyclic) walk from point j, each with
// the first node met in it, and L2(j) the first `replicas` distinct nodes met.
// Point j's own node x comes first in both, so
//   L1(j) = x, then L1(j + 1) without x's domain (cut to need1 entries),
//   L2(j) = x, then L2(j + 1) without x (cut to replicas entries),
// and the owner list is L1(j), then the first entries of L2(j) not in L1(j)
// until there are `replicas`: exactly what the walk in Select() returns.
// L1(0) and L2(0) come from Select() itself and seed the sweep at m - 1.
void Placement::Impl::ComputeOwners(const uint64_t* ring) {
  const size_t m = ring_size;
  const size_t t = replicas;
  const size_t need1 = std::min<size_t>(t, num_domains);
  owners = LargeArray<uint16_t>(m * t);
  uint16_t l1[kMaxReplication], l2[kMaxReplication];
  uint32_t d1[kMaxReplication];
  {
    // Seed: the walk from point 0, by domain and by node.
    uint16_t sel[kMaxReplication];
    Select(ring, 0, sel, t);  // its first need1 entries are L1(0)
    for (size_t k = 0; k < need1; ++k) {
      l1[k] = sel[k];
      d1[k] = domain[sel[k]];
    }
    size_t n2 = 0;
    for (size_t j = 0, steps = 0; n2 < t && steps < m; ++steps) {
      const uint16_t node = static_cast<uint16_t>(ring[j] & kIndexMask);
      if (std::find(l2, l2 + n2, node) == l2 + n2) l2[n2++] = node;
      if (++j == m) j = 0;
    }
  }
  const bool fill = need1 < t;  // fewer domains than replicas
  // K1 = need1 as a constant, so the per-point updates and stores are a few
  // register moves (a variable-length copy became a memmove call per point).
  auto sweep = [&]<size_t K1>() {
    for (size_t j = m; j-- > 0;) {
      const uint16_t x = static_cast<uint16_t>(ring[j] & kIndexMask);
      const uint32_t d = domain[x];
      // k: the entry to drop (x's domain, else the last). Branch-free: the
      // domains met are nearly random, so branches here mispredict.
      size_t k = K1 - 1;
      for (size_t q = K1 - 1; q-- > 0;) k = d1[q] == d ? q : k;
      for (size_t q = K1 - 1; q > 0; --q) {
        const bool shift = q <= k;
        l1[q] = shift ? l1[q - 1] : l1[q];
        d1[q] = shift ? d1[q - 1] : d1[q];
      }
      l1[0] = x;
      d1[0] = d;
      uint16_t* o = &owners[j * t];
      for (size_t q = 0; q < K1; ++q) o[q] = l1[q];
      if (fill) {
        k = 0;
        while (k + 1 < t && l2[k] != x) ++k;
        for (; k > 0; --k) l2[k] = l2[k - 1];
        l2[0] = x;
        size_t n = K1;
        for (size_t q = 0; q < t && n < t; ++q) {
          if (std::find(l1, l1 + K1, l2[q]) == l1 + K1) o[n++] = l2[q];
        }
      }
    }
  };
  static_assert(kMaxReplication == 8);
  switch (need1) {
    case 1: sweep.template operator()<1>(); break;
    case 2: sweep.template operator()<2>(); break;
    case 3: sweep.template operator()<3>(); break;
    case 4: sweep.template operator()<4>(); break;
    case 5: sweep.template operator()<5>(); break;
    case 6: sweep.template operator()<6>(); break;
    case 7: sweep.template operator()<7>(); break;
    default: sweep.template operator()<8>(); break;
  }
}

void Placement::Impl::BuildRing() {
  LargeArray<uint64_t> ring;
  SortPoints(ring);
  if (params.load_epsilon > 0.0) {
    BuildBoundedLoad(ring.data());
  } else {
    ComputeOwners(ring.data());
  }
}

// Bounded loads: arcs are handed out in ring order, each to the first owners
// of its walk that still have room under ceil((1 + eps) * fair share).
void Placement::Impl::BuildBoundedLoad(const uint64_t* ring) {
  const size_t m = ring_size;
  const size_t n = ids.size();
  double wsum = 0;
  for (double w : weights) wsum += w;
  constexpr double kSpace = 281474976710656.0;  // 2^48 positions
  std::vector<double> cap(n), load(n, 0.0);
  for (size_t i = 0; i < n; ++i) {
    cap[i] = std::ceil((1.0 + params.load_epsilon) * weights[i] / wsum * replicas * kSpace);
  }
  std::vector<bool> full(n, false);
  owners = LargeArray<uint16_t>(m * replicas);
  for (size_t j = 0; j < m; ++j) {
    const uint64_t pos = ring[j] >> kPosShift;
    const uint64_t prev = j == 0 ? (ring[m - 1] >> kPosShift) : (ring[j - 1] >> kPosShift);
    // Arc (prev, pos]; point 0's arc wraps past the top of the space.
    const double len = j == 0 ? static_cast<double>(pos + ((uint64_t{1} << 48) - prev))
                              : static_cast<double>(pos - prev);
    if (len == 0) {
      std::copy_n(&owners[(j - 1) * replicas], replicas, &owners[j * replicas]);
      continue;
    }
    for (size_t i = 0; i < n; ++i) full[i] = load[i] + len > cap[i];
    uint16_t* out = &owners[j * replicas];
    const size_t got = Select(ring, j, out, replicas, &full);
    for (size_t k = 0; k < got; ++k) load[out[k]] += len;
  }
}

absl::StatusOr<Placement> Placement::Build(std::vector<PlacementNode> nodes,
                                           const RingParams& params) {
  if (params.replication < 1 || params.replication > static_cast<uint32_t>(kMaxReplication)) {
    return absl::InvalidArgumentError(absl::StrCat("replication ", params.replication,
                                                   " outside [1, ", kMaxReplication, "]"));
  }
  if (!(params.load_epsilon >= 0.0) || !std::isfinite(params.load_epsilon)) {
    return absl::InvalidArgumentError(
        absl::StrCat("load_epsilon ", params.load_epsilon, " must be finite and >= 0"));
  }
  if (nodes.size() > kMaxNodes) {
    return absl::InvalidArgumentError(
        absl::StrCat(nodes.size(), " nodes; placement supports at most ", kMaxNodes));
  }
  std::sort(nodes.begin(), nodes.end(),
            [](const PlacementNode& a, const PlacementNode& b) { return a.id < b.id; });
  auto impl = std::make_unique<Impl>();
  impl->params = params;
  absl::flat_hash_map<std::string, uint32_t> domains;
  for (size_t i = 0; i < nodes.size(); ++i) {
    const PlacementNode& node = nodes[i];
    if (node.id == kNoNode) return absl::InvalidArgumentError("node id 0 is reserved");
    if (i > 0 && nodes[i - 1].id == node.id) {
      return absl::InvalidArgumentError(absl::StrCat("duplicate node id ", node.id));
    }
    if (!std::isfinite(node.weight) || !(node.weight > 0.0)) {
      return absl::InvalidArgumentError(
          absl::StrCat("node ", node.id, ": weight ", node.weight, " must be finite and > 0"));
    }
    impl->ids.push_back(node.id);
    impl->weights.push_back(node.weight);
    auto [it, inserted] = domains.try_emplace(node.failure_domain, domains.size());
    impl->domain.push_back(it->second);
  }
  impl->num_domains = static_cast<uint32_t>(domains.size());
  impl->replicas = std::min<size_t>(params.replication, nodes.size());
  if (!nodes.empty()) {
    impl->BuildRing();
  }
  return Placement(std::move(impl));
}

namespace {

std::vector<PlacementNode> MembersIn(const ClusterMap& map, NodeState a, NodeState b) {
  std::vector<PlacementNode> out;
  for (const NodeInfo& n : map.nodes) {
    if (n.state != a && n.state != b) continue;
    // Capacity 0 means "not reported": such a node still takes a minimal share
    // rather than making the whole map invalid.
    out.push_back(PlacementNode{n.id, n.failure_domain,
                                n.capacity_bytes > 0 ? static_cast<double>(n.capacity_bytes) : 1.0});
  }
  return out;
}

}  // namespace

std::vector<PlacementNode> Placement::ReadMembers(const ClusterMap& map) {
  return MembersIn(map, NodeState::kActive, NodeState::kDraining);
}

std::vector<PlacementNode> Placement::TargetMembers(const ClusterMap& map) {
  return MembersIn(map, NodeState::kActive, NodeState::kJoining);
}

size_t Placement::Owners(uint64_t placement_hash, absl::Span<NodeId> out) const {
  const size_t t = std::min(impl_->replicas, out.size());
  if (t == 0) return 0;
  return impl_->OwnersAt(impl_->Locate(placement_hash), out.data(), t);
}

OwnerList Placement::Owners(uint64_t placement_hash) const {
  OwnerList list(impl_->replicas);
  list.resize(Owners(placement_hash, absl::MakeSpan(list.data(), list.size())));
  return list;
}

size_t Placement::OwnersBatch(absl::Span<const uint64_t> hashes, absl::Span<NodeId> out) const {
  const Impl& p = *impl_;
  const size_t t = p.replicas;
  if (t == 0) return hashes.size();
  const size_t n = std::min(hashes.size(), out.size() / t);
  const uint64_t* h = hashes.data();
  const int shift = 64 - p.index_bits;
  const uint32_t* index = p.index.data();
  const uint32_t* low = p.low.data();
  const uint16_t* own = p.owners.data();
  // A software pipeline over the keys: the index entry of key i + 2D is
  // prefetched, key i + D's bucket (low[] and owner lists) is prefetched
  // from its now cached index entry, and key i is resolved from cache.
  constexpr size_t kDist = 8;
  for (size_t i = 0; i < std::min(n, 2 * kDist); ++i) __builtin_prefetch(&index[h[i] >> shift]);
  for (size_t i = 0; i < std::min(n, kDist); ++i) {
    const size_t j = index[h[i] >> shift];
    __builtin_prefetch(&low[j]);
    __builtin_prefetch(&own[j * t]);
  }
  NodeId* o = out.data();
  for (size_t i = 0; i < n; ++i, o += t) {
    if (i + 2 * kDist < n) __builtin_prefetch(&index[h[i + 2 * kDist] >> shift]);
    if (i + kDist < n) {
      const size_t j = index[h[i + kDist] >> shift];
      __builtin_prefetch(&low[j]);
      __builtin_prefetch(&own[j * t]);
    }
    p.OwnersAt(p.Locate(h[i]), o, t);
  }
  return n;
}

std::vector<PlacementRange> Placement::Ranges() const {
  std::vector<PlacementRange> out;
  const Impl& p = *impl_;
  const size_t m = p.ring_size;
  if (m == 0) {
    out.push_back(PlacementRange{0, std::numeric_limits<uint64_t>::max(), {}});
    return out;
  }
  out.reserve(m + 1);
  AdviseHugePages(out.data(), out.capacity() * sizeof(PlacementRange));
  NodeId buf[kMaxReplication];
  auto emit = [&](uint64_t lo48, uint64_t hi48, size_t j) {
    const size_t got = p.OwnersAt(j, buf, p.replicas);
    const uint64_t begin = lo48 << kPosShift;
    const uint64_t last = (hi48 << kPosShift) | kIndexMask;
    if (!out.empty() && out.back().owners.size() == got &&
        std::equal(buf, buf + got, out.back().owners.begin())) {
      out.back().last = last;
      return;
    }
    out.push_back(PlacementRange{begin, last, OwnerList(buf, buf + got)});
  };
  // A point's 48-bit position is its bucket (the top index_bits) and the top
  // 48 - index_bits bits of its low[] entry.
  const int b = p.index_bits;
  const int rest = 48 - b;
  uint64_t prev_end = 0;  // first 48-bit position not yet covered
  bool any = false;
  uint64_t prev_pos = 0;
  const size_t buckets = size_t{1} << b;
  for (size_t t = 0; t < buckets; ++t) {
    const size_t end = p.index[t + 1];
    for (size_t j = p.index[t]; j < end; ++j) {
      const uint64_t pos = (static_cast<uint64_t>(t) << rest) | (p.low[j] >> (32 - rest));
      if (any && pos == prev_pos) continue;  // empty arc
      any = true;
      prev_pos = pos;
      emit(prev_end, pos, j);
      prev_end = pos + 1;
    }
  }
  constexpr uint64_t kTop48 = (uint64_t{1} << 48) - 1;
  if (prev_end <= kTop48) emit(prev_end, kTop48, 0);  // wraps to point 0
  return out;
}

size_t Placement::replicas() const { return impl_->replicas; }
size_t Placement::num_nodes() const { return impl_->ids.size(); }
const RingParams& Placement::params() const { return impl_->params; }

Placement::Placement(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Placement::Placement(Placement&&) noexcept = default;
Placement& Placement::operator=(Placement&&) noexcept = default;
Placement::~Placement() = default;

uint64_t PlacementHash(NamespaceId ns, const BlockKey& segment_head) {
  // Little-endian (ns, hi, lo), seeded so placement is independent of any
  // other XXH3-64 use of the same bytes. Golden-tested: never change.
  unsigned char buf[24];
  for (int i = 0; i < 8; ++i) {
    buf[i] = static_cast<unsigned char>(ns >> (8 * i));
    buf[8 + i] = static_cast<unsigned char>(segment_head.hi >> (8 * i));
    buf[16 + i] = static_cast<unsigned char>(segment_head.lo >> (8 * i));
  }
  return XXH3_64bits_withSeed(buf, sizeof(buf), 0x6b7666706c616365ULL);  // "kvfplace"
}

}  // namespace kvf
