#include "proto/cluster_map_convert.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "common/placement.h"

namespace kvf {

proto::NodeState NodeStateToProto(NodeState state) {
  switch (state) {
    case NodeState::kJoining:
      return proto::NODE_STATE_JOINING;
    case NodeState::kActive:
      return proto::NODE_STATE_ACTIVE;
    case NodeState::kDraining:
      return proto::NODE_STATE_DRAINING;
    case NodeState::kDown:
      return proto::NODE_STATE_DOWN;
    case NodeState::kLeft:
      return proto::NODE_STATE_LEFT;
  }
  return proto::NODE_STATE_UNSPECIFIED;
}

absl::StatusOr<NodeState> NodeStateFromProto(int state) {
  switch (state) {
    case proto::NODE_STATE_JOINING:
      return NodeState::kJoining;
    case proto::NODE_STATE_ACTIVE:
      return NodeState::kActive;
    case proto::NODE_STATE_DRAINING:
      return NodeState::kDraining;
    case proto::NODE_STATE_DOWN:
      return NodeState::kDown;
    case proto::NODE_STATE_LEFT:
      return NodeState::kLeft;
    default:
      return absl::InvalidArgumentError(absl::StrCat("unknown node state ", state));
  }
}

const char* NodeStateText(NodeState state) {
  switch (state) {
    case NodeState::kJoining:
      return "joining";
    case NodeState::kActive:
      return "active";
    case NodeState::kDraining:
      return "draining";
    case NodeState::kDown:
      return "down";
    case NodeState::kLeft:
      return "left";
  }
  return "unknown";
}

void ClusterMapToProto(const ClusterMap& map, proto::ClusterMap* out) {
  out->Clear();
  out->set_epoch(map.epoch);
  out->mutable_ring()->set_replication(map.ring.replication);
  out->mutable_ring()->set_load_epsilon(map.ring.load_epsilon);
  for (const NodeInfo& n : map.nodes) {
    proto::Node* p = out->add_nodes();
    p->set_id(n.id);
    p->set_address(n.address);
    p->set_data_address(n.data_address);
    p->set_tenant_data_address(n.tenant_data_address);
    p->set_http_address(n.http_address);
    p->set_failure_domain(n.failure_domain);
    p->set_capacity_bytes(n.capacity_bytes);
    p->set_state(NodeStateToProto(n.state));
  }
}

absl::StatusOr<ClusterMap> ClusterMapFromProto(const proto::ClusterMap& map) {
  ClusterMap out;
  out.epoch = map.epoch();
  out.ring.replication = map.ring().replication();
  out.ring.load_epsilon = map.ring().load_epsilon();
  if (out.ring.replication < 1 || out.ring.replication > static_cast<uint32_t>(kMaxReplication)) {
    return absl::InvalidArgumentError(absl::StrCat("cluster map: replication ",
                                                   out.ring.replication, " outside [1, ",
                                                   kMaxReplication, "]"));
  }
  if (!(out.ring.load_epsilon >= 0.0)) {
    return absl::InvalidArgumentError("cluster map: negative or NaN load_epsilon");
  }
  out.nodes.reserve(map.nodes_size());
  NodeId prev = kNoNode;
  for (const proto::Node& p : map.nodes()) {
    if (p.id() == kNoNode) return absl::InvalidArgumentError("cluster map: node id 0");
    if (p.id() <= prev) {
      return absl::InvalidArgumentError(
          absl::StrCat("cluster map: node ids not sorted or repeated at ", p.id()));
    }
    prev = p.id();
    NodeInfo n;
    n.id = p.id();
    n.address = p.address();
    n.data_address = p.data_address();
    n.tenant_data_address = p.tenant_data_address();
    n.http_address = p.http_address();
    n.failure_domain = p.failure_domain();
    n.capacity_bytes = p.capacity_bytes();
    auto state = NodeStateFromProto(p.state());
    if (!state.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("cluster map: node ", p.id(), ": ", state.status().message()));
    }
    n.state = *state;
    out.nodes.push_back(std::move(n));
  }
  return out;
}

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()));
}

absl::Status FromGrpcStatus(const grpc::Status& status) {
  if (status.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()), status.error_message());
}

}  // namespace kvf
