// Pure planning helpers of the client: placement hashes per block, grouping
// keys into per-node batches within the protocol's limits, block sizes, and
// the classification of data-plane errors. No I/O; unit-tested on their own
// (tests/client/plan_test.cc).
//
// Thread-safety: pure functions.
#ifndef KVF_CLIENT_INTERNAL_PLAN_H_
#define KVF_CLIENT_INTERNAL_PLAN_H_

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "common/block_key.h"
#include "common/cluster_map.h"
#include "common/namespace.h"
#include "common/placement.h"
#include "kernels/codec.h"
#include "protocol/frames.h"

namespace kvf::client_internal {

// Checks that [begin, end) lies inside a chain of `chain_size` keys.
absl::Status CheckRange(size_t chain_size, size_t begin, size_t end);

// KeyRefs of blocks [begin, end) of `chain` (the whole chain from block 0):
// each key with PlacementHash(ns, SegmentHead(chain, i, segment_blocks)). The
// hash is computed once per segment.
std::vector<protocol::KeyRef> MakeKeyRefs(NamespaceId ns, absl::Span<const BlockKey> chain,
                                          uint32_t segment_blocks, size_t begin, size_t end);

// Owners (primary first) of every key ref, looked up once per distinct hash.
std::vector<OwnerList> OwnersOf(const Placement& placement,
                                absl::Span<const protocol::KeyRef> keys);

// A batch of items (indices into an operation's key list) for one node.
struct NodeBatch {
  NodeId node = kNoNode;
  std::vector<uint32_t> items;
};

// Groups (node, item) assignments into batches of at most `max_items` items
// per node, nodes in ascending id order, items in the order given. Nodes equal
// to kNoNode are skipped. `max_items` must be > 0.
std::vector<NodeBatch> GroupByNode(absl::Span<const std::pair<NodeId, uint32_t>> assignments,
                                   size_t max_items);

// The stored size of one block of `layout` under `codec`.
size_t EncodedBlockBytes(const KvLayout& layout, CodecId codec);

// ---- Error classification --------------------------------------------------
//
// The data-plane layer returns plain absl::Status values; these payloads mark
// the two cases the operations route around, so the marks survive being
// passed through helpers.

// The node could not be reached (transport error, timeout): try another owner.
absl::Status MarkUnreachable(absl::Status status);
bool IsUnreachable(const absl::Status& status);

// WRONG_OWNER from an agent: the client refreshed its map; re-plan and retry.
absl::Status WrongOwnerError(uint64_t agent_epoch, std::string_view message);
bool IsWrongOwner(const absl::Status& status);

// What an ErrorResponse means to the client.
enum class ErrorAction {
  kFail,              // report it
  kRegisterAndRetry,  // namespace not registered on this agent
  kRefreshAndRetry,   // WRONG_OWNER
  kHelloAndRetry,     // UNAUTHENTICATED: the agent forgot the session (restart, idle)
};
ErrorAction ClassifyError(const protocol::ErrorResponse& error);

// Whether a per-key Get code means "another owner may have it".
bool TryNextOwner(absl::StatusCode code);

}  // namespace kvf::client_internal

#endif  // KVF_CLIENT_INTERNAL_PLAN_H_
