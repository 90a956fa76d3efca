// ClusterMap: the coordinator's view of the cluster, as every process holds it.
//
// This is the in-memory form; proto/cluster_map.proto is the wire form and
// coordinator/ converts between them. Clients and agents compute placement
// from it locally (docs/design.md, "Placement"): no per-key directory.
#ifndef KVF_COMMON_CLUSTER_MAP_H_
#define KVF_COMMON_CLUSTER_MAP_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace kvf {

using NodeId = uint32_t;
inline constexpr NodeId kNoNode = 0;  // ids start at 1

// Legal transitions (enforced by the coordinator):
//   joining -> active (its migration tasks are done) | down | left
//   active -> draining | down | left
//   draining -> active (undrain) | left (its tasks are done) | down
//   down -> active (re-joined with its id) | left
//   left: final
enum class NodeState : uint8_t { kJoining = 0, kActive = 1, kDraining = 2, kDown = 3, kLeft = 4 };
std::string_view NodeStateName(NodeState state);
// Joining, active or draining: a node that holds a lease.
inline bool IsLive(NodeState s) {
  return s == NodeState::kJoining || s == NodeState::kActive || s == NodeState::kDraining;
}
absl::StatusOr<NodeState> ParseNodeState(std::string_view name);

struct NodeInfo {
  NodeId id = kNoNode;
  std::string address;         // control endpoint, host:port
  std::string data_address;    // serialized transport worker address (may be empty)
  std::string failure_domain;  // rack, host, zone...: replicas avoid sharing one
  uint64_t capacity_bytes = 0;
  NodeState state = NodeState::kJoining;
  std::string http_address;  // /metrics and /healthz, host:port (may be empty)
  // The worker for tenants' clients: messages only (docs/security.md).
  // Empty: data_address.
  std::string tenant_data_address;
};

// A node's data_address is its transport worker address (Transport::
// address(), binary) in standard base64, so it travels in protobuf strings
// and prints. The agent encodes it when it joins; clients and peers decode it.
std::string EncodeDataAddress(std::string_view worker_address);
absl::StatusOr<std::string> DecodeDataAddress(std::string_view data_address);

struct RingParams {
  uint32_t replication = 2;  // R owners per key
  // Bounded-load mode: no node's share of the key space above
  // ceil((1 + epsilon) * its fair share). 0 turns the mode off.
  double load_epsilon = 0.0;
};

struct ClusterMap {
  uint64_t epoch = 0;
  RingParams ring;
  std::vector<NodeInfo> nodes;  // sorted by id

  const NodeInfo* Find(NodeId id) const;
};

}  // namespace kvf

#endif  // KVF_COMMON_CLUSTER_MAP_H_
