#include "common/cluster_map.h"

#include <algorithm>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"

namespace kvf {

std::string EncodeDataAddress(std::string_view worker_address) {
  return absl::Base64Escape(absl::string_view(worker_address.data(), worker_address.size()));
}

absl::StatusOr<std::string> DecodeDataAddress(std::string_view data_address) {
  std::string raw;
  if (data_address.empty() ||
      !absl::Base64Unescape(absl::string_view(data_address.data(), data_address.size()), &raw) ||
      raw.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("data_address '", std::string(data_address.substr(0, 32)),
                     data_address.size() > 32 ? "...'" : "'", " is not a base64 worker address"));
  }
  return raw;
}

std::string_view NodeStateName(NodeState state) {
  switch (state) {
    case NodeState::kJoining: return "joining";
    case NodeState::kActive: return "active";
    case NodeState::kDraining: return "draining";
    case NodeState::kDown: return "down";
    case NodeState::kLeft: return "left";
  }
  return "unknown";
}

absl::StatusOr<NodeState> ParseNodeState(std::string_view name) {
  for (NodeState s : {NodeState::kJoining, NodeState::kActive, NodeState::kDraining,
                      NodeState::kDown, NodeState::kLeft}) {
    if (NodeStateName(s) == name) return s;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown node state '", std::string(name),
                   "' (want joining, active, draining, down or left)"));
}

const NodeInfo* ClusterMap::Find(NodeId id) const {
  auto it = std::lower_bound(nodes.begin(), nodes.end(), id,
                             [](const NodeInfo& n, NodeId v) { return n.id < v; });
  if (it != nodes.end() && it->id == id) return &*it;
  // Tolerate a map that is not sorted (built by hand in a test, say).
  for (const NodeInfo& n : nodes) {
    if (n.id == id) return &n;
  }
  return nullptr;
}

}  // namespace kvf
