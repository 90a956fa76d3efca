// Conversions between the wire forms in proto/ and the in-memory forms in
// common/: the cluster map, node states, and absl::Status <-> grpc::Status
// (their codes map 1:1, so an error crosses an RPC intact).
//
// Stateless and thread-safe.
#ifndef KVF_PROTO_CLUSTER_MAP_CONVERT_H_
#define KVF_PROTO_CLUSTER_MAP_CONVERT_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/cluster_map.h"
#include "grpcpp/support/status.h"
#include "proto/cluster_map.pb.h"

namespace kvf {

proto::NodeState NodeStateToProto(NodeState state);
// INVALID_ARGUMENT for NODE_STATE_UNSPECIFIED and unknown values.
absl::StatusOr<NodeState> NodeStateFromProto(int state);
// Lower-case name ("joining", "active", ...); "unknown" for anything else.
const char* NodeStateText(NodeState state);

// Fills `out` (cleared first) with the nodes, ring parameters and epoch of
// `map`. Tiers and namespace settings, which the in-memory map does not hold,
// are left for the caller.
void ClusterMapToProto(const ClusterMap& map, proto::ClusterMap* out);

// Validates what a map from the wire must satisfy: ids non-zero, unique and
// sorted, known states, replication in [1, kMaxReplication]. INVALID_ARGUMENT
// naming the first problem otherwise.
absl::StatusOr<ClusterMap> ClusterMapFromProto(const proto::ClusterMap& map);

grpc::Status ToGrpcStatus(const absl::Status& status);
absl::Status FromGrpcStatus(const grpc::Status& status);

}  // namespace kvf

#endif  // KVF_PROTO_CLUSTER_MAP_CONVERT_H_
