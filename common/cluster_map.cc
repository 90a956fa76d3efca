#include "common/cluster_map.h"

#include <algorithm>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace kvf {

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
