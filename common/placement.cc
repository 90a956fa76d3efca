// Placement as a consistent-hash ring with many points per node.
//
// Why a ring (docs/placement.md has the numbers): every scheme that keeps
// "a join moves keys only to the new node, a leave only the leaver's keys"
// exactly, for any set of nodes, orders the nodes per position by something
// each node computes alone (a ring's clockwise distance, rendezvous scores).
// Its balance is then set by how many independent units each node has; the
// ring gets them at O(points) build cost, where a rendezvous table pays
// O(slots x nodes). So: 16384 points for a node of the largest weight class,
// a 48-bit position each, packed with the node's index into one sorted
// uint64 array, plus a top-bits index for O(1) lookup.
//
// A key is owned by the first point at or after its hash (clockwise), and its
// R owners are read off the walk from there: first the nodes whose failure
// domain is not yet used, then, if the map has fewer domains than R, the next
// distinct nodes. Inserting a node only inserts points into that walk, which
// is why a join can only add the new node to owner lists (see the tests).
#include "common/placement.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
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

}  // namespace

struct Placement::Impl {
  RingParams params;
  std::vector<NodeId> ids;         // sorted; index = position here
  std::vector<double> weights;     // by index
  std::vector<uint32_t> domain;    // by index: failure-domain ordinal
  uint32_t num_domains = 0;
  size_t replicas = 0;             // min(R, nodes)
  std::unique_ptr<uint64_t[]> ring;  // (pos48 << 16) | node index, sorted
  size_t ring_size = 0;
  std::vector<uint32_t> index;     // index[t] = first point with top bits >= t
  int index_bits = 1;
  std::vector<uint16_t> fixed;     // bounded-load mode: `replicas` per point

  size_t Locate(uint64_t h) const {
    const uint64_t key = h >> kPosShift;
    const size_t t = static_cast<size_t>(h >> (64 - index_bits));
    size_t j = index[t];
    const size_t end = index[t + 1];
    while (j < end && (ring[j] >> kPosShift) < key) ++j;
    return j == ring_size ? 0 : j;
  }

  // Owner indices for the walk starting at ring point j. `full` (bounded-load
  // build only) marks nodes to pass over while others qualify.
  size_t Select(size_t j0, uint16_t* out, size_t t, const std::vector<bool>* full = nullptr) const {
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

  size_t OwnersAt(size_t j, NodeId* out, size_t t) const {
    if (!fixed.empty()) {
      const uint16_t* f = &fixed[j * replicas];
      for (size_t k = 0; k < t; ++k) out[k] = ids[f[k]];
      return t;
    }
    uint16_t idx[kMaxReplication];
    const size_t n = Select(j, idx, t);
    for (size_t k = 0; k < n; ++k) out[k] = ids[idx[k]];
    return n;
  }

  void BuildRing();
  void BuildBoundedLoad();
};

void Placement::Impl::BuildRing() {
  const size_t n = ids.size();
  const double wmax = *std::max_element(weights.begin(), weights.end());
  std::vector<uint32_t> points(n);
  size_t total = 0;
  for (size_t i = 0; i < n; ++i) {
    points[i] = static_cast<uint32_t>(std::min<uint64_t>(PointsFor(weights[i], wmax), 1u << 30));
    total += points[i];
  }
  // ~4 points per index bucket.
  index_bits = std::clamp(static_cast<int>(std::bit_width(total)) - 3, 1, 26);
  const int shift = 64 - index_bits;
  index.assign((size_t{1} << index_bits) + 1, 0);
  // Counting sort by the top bits: hash twice (count, then place) rather
  // than materialize and sort millions of values; an insertion sort
  // finishes each small bucket. The ring is left uninitialized before it is
  // filled: zeroing tens of MB costs more than the sort.
  for (size_t i = 0; i < n; ++i) {
    for (uint32_t k = 0; k < points[i]; ++k) ++index[(PointHash(ids[i], k) >> shift) + 1];
  }
  for (size_t t = 1; t < index.size(); ++t) index[t] += index[t - 1];
  ring.reset(new uint64_t[total]);
  ring_size = total;
  std::vector<uint32_t> cursor(index.begin(), index.end() - 1);
  for (size_t i = 0; i < n; ++i) {
    for (uint32_t k = 0; k < points[i]; ++k) {
      const uint64_t h = PointHash(ids[i], k);
      ring[cursor[h >> shift]++] = (h & ~kIndexMask) | i;
    }
  }
  for (size_t t = 0; t + 1 < index.size(); ++t) {
    // Ties at one position order by node index, i.e. by id: the same in every
    // set of nodes, so ties cannot break consistency.
    for (size_t a = index[t] + 1; a < index[t + 1]; ++a) {
      const uint64_t v = ring[a];
      size_t b = a;
      for (; b > index[t] && ring[b - 1] > v; --b) ring[b] = ring[b - 1];
      ring[b] = v;
    }
  }
}

// Bounded loads: arcs are handed out in ring order, each to the first owners
// of its walk that still have room under ceil((1 + eps) * fair share).
void Placement::Impl::BuildBoundedLoad() {
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
  fixed.assign(m * replicas, 0);
  for (size_t j = 0; j < m; ++j) {
    const uint64_t pos = ring[j] >> kPosShift;
    const uint64_t prev = j == 0 ? (ring[m - 1] >> kPosShift) : (ring[j - 1] >> kPosShift);
    // Arc (prev, pos]; point 0's arc wraps past the top of the space.
    const double len = j == 0 ? static_cast<double>(pos + ((uint64_t{1} << 48) - prev))
                              : static_cast<double>(pos - prev);
    if (len == 0) {
      std::copy_n(&fixed[(j - 1) * replicas], replicas, &fixed[j * replicas]);
      continue;
    }
    for (size_t i = 0; i < n; ++i) full[i] = load[i] + len > cap[i];
    uint16_t* out = &fixed[j * replicas];
    const size_t got = Select(j, out, replicas, &full);
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
    if (params.load_epsilon > 0.0) impl->BuildBoundedLoad();
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

std::vector<PlacementRange> Placement::Ranges() const {
  std::vector<PlacementRange> out;
  const Impl& p = *impl_;
  const size_t m = p.ring_size;
  if (m == 0) {
    out.push_back(PlacementRange{0, std::numeric_limits<uint64_t>::max(), {}});
    return out;
  }
  out.reserve(m + 1);
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
  uint64_t prev_end = 0;  // first 48-bit position not yet covered
  for (size_t j = 0; j < m; ++j) {
    const uint64_t pos = p.ring[j] >> kPosShift;
    if (j > 0 && pos == (p.ring[j - 1] >> kPosShift)) continue;  // empty arc
    emit(prev_end, pos, j);
    prev_end = pos + 1;
  }
  constexpr uint64_t kTop48 = (uint64_t{1} << 48) - 1;
  if (prev_end <= kTop48) emit(prev_end, kTop48, 0);  // wraps to point 0
  return out;
}

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
