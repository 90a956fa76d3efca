// Placement: which R nodes own a key, computed the same in every process.
#ifndef KVF_COMMON_PLACEMENT_H_
#define KVF_COMMON_PLACEMENT_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/inlined_vector.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "common/block_key.h"
#include "common/cluster_map.h"
#include "common/namespace.h"

namespace kvf {

// A node as placement sees it. `weight` is proportional to capacity.
struct PlacementNode {
  NodeId id = kNoNode;
  std::string failure_domain;
  double weight = 1.0;
};

inline constexpr int kMaxReplication = 8;
using OwnerList = absl::InlinedVector<NodeId, kMaxReplication>;

// One contiguous piece of the 64-bit placement-hash space, [begin, last]
// inclusive, and its owners (primary first).
struct PlacementRange {
  uint64_t begin = 0;
  uint64_t last = 0;
  OwnerList owners;
};

// Immutable once built; thread-safe for concurrent reads. Deterministic: the
// same nodes and params give the same owners in every process and build
// (golden-tested). Owners of a key are min(R, nodes) distinct nodes, in
// distinct failure domains whenever enough domains exist.
class Placement {
 public:
  // INVALID_ARGUMENT for duplicate or zero ids, non-positive or non-finite
  // weights, R outside [1, kMaxReplication], or a negative epsilon. An empty
  // node list is allowed (every lookup then returns no owners).
  static absl::StatusOr<Placement> Build(std::vector<PlacementNode> nodes, const RingParams& params);

  // The members of `map` that own data for reads at its epoch (active and
  // draining nodes), or for the map a migration is moving towards (active and
  // joining nodes).
  static std::vector<PlacementNode> ReadMembers(const ClusterMap& map);
  static std::vector<PlacementNode> TargetMembers(const ClusterMap& map);

  // Owners of one placement hash, primary first. Writes up to out.size() ids
  // and returns how many it wrote (min(R, nodes, out.size())).
  size_t Owners(uint64_t placement_hash, absl::Span<NodeId> out) const;
  OwnerList Owners(uint64_t placement_hash) const;

  // Owners of many placement hashes at once: the replicas() owners of
  // hashes[i] go to out[i * replicas() ...], primary first, the same ids as
  // Owners(hashes[i]). Looks up min(hashes.size(), out.size() / replicas())
  // hashes and returns that count (hashes.size() when there are no nodes). For
  // large placements this is several times faster than a loop of Owners():
  // it prefetches the index and arcs of keys ahead of the one it resolves, so
  // their cache misses overlap.
  size_t OwnersBatch(absl::Span<const uint64_t> hashes, absl::Span<NodeId> out) const;

  // Owners per key: min(R, num_nodes()).
  size_t replicas() const;

  // The whole hash space as sorted, contiguous, non-overlapping ranges with
  // their owners; adjacent ranges have different owner lists.
  std::vector<PlacementRange> Ranges() const;

  size_t num_nodes() const;
  const RingParams& params() const;

  // (Implementation state: the helper that implements this fills it in.)
  Placement(Placement&&) noexcept;
  Placement& operator=(Placement&&) noexcept;
  ~Placement();

 private:
  struct Impl;
  explicit Placement(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// The hash that places a block: its namespace and the key of the first block
// of its segment, so a sequence is sharded along its length in segments of
// `segment_blocks` (docs/design.md, "Segment").
uint64_t PlacementHash(NamespaceId ns, const BlockKey& segment_head);

// The key that places block `index` of `keys` (one sequence, in order).
inline const BlockKey& SegmentHead(absl::Span<const BlockKey> keys, size_t index,
                                   uint32_t segment_blocks) {
  return keys[index - index % segment_blocks];
}

}  // namespace kvf

#endif  // KVF_COMMON_PLACEMENT_H_
