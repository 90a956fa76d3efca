// CoordinatorGrpcService: CoordinatorService on gRPC.
//
// Every RPC first checks the cluster token in the request metadata
// (`authorization: Bearer <token>` or `x-kvf-token: <token>`); a missing or
// wrong one is UNAUTHENTICATED and reaches nothing else. Errors keep their
// absl::StatusCode as the gRPC code.
//
// With a CoordinatorGroup (state in etcd, several coordinators), writes go to
// the group's leader service; on a follower they are refused with
// UNAVAILABLE, "not the leader; the leader is HOST:PORT" and the leader's
// address in trailing metadata kLeaderMetadata (absent while none is known).
// Map reads and watches are served by every member from its MapFeed.
//
// Thread-safe; gRPC calls it from its own threads. WatchClusterMap holds one
// server thread per watcher for the life of the stream, and returns
// UNAVAILABLE once CoordinatorService::Shutdown() is called (call that before
// grpc::Server::Shutdown so streams end).
#ifndef KVF_COORDINATOR_GRPC_SERVICE_H_
#define KVF_COORDINATOR_GRPC_SERVICE_H_

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "coordinator/coordinator_group.h"
#include "coordinator/coordinator_service.h"
#include "grpcpp/server_context.h"
#include "proto/auth.h"
#include "proto/coordinator.grpc.pb.h"

namespace kvf {


// The trailing metadata key that names the leader in a follower's refusal.
inline constexpr char kLeaderMetadata[] = "x-kvf-leader";

class CoordinatorGrpcService final : public proto::Coordinator::Service {
 public:
  // `core` is not owned and must outlive the service.
  // `tokens`: the current cluster token first, then previous ones still
  // accepted (a token file's lines). `self`: this coordinator's advertised
  // address (CoordinatorStatus).
  CoordinatorGrpcService(CoordinatorService* core, std::vector<std::string> tokens,
                         std::string self = "");
  // One member of a group; `group` is not owned and must outlive the service.
  CoordinatorGrpcService(CoordinatorGroup* group, std::vector<std::string> tokens);

  grpc::Status Join(grpc::ServerContext* ctx, const proto::JoinRequest* request,
                    proto::JoinResponse* response) override;
  grpc::Status Heartbeat(grpc::ServerContext* ctx, const proto::HeartbeatRequest* request,
                         proto::HeartbeatResponse* response) override;
  grpc::Status Drain(grpc::ServerContext* ctx, const proto::NodeRequest* request,
                     proto::MembershipResponse* response) override;
  grpc::Status Undrain(grpc::ServerContext* ctx, const proto::NodeRequest* request,
                       proto::MembershipResponse* response) override;
  grpc::Status Leave(grpc::ServerContext* ctx, const proto::NodeRequest* request,
                     proto::MembershipResponse* response) override;
  grpc::Status GetClusterMap(grpc::ServerContext* ctx, const proto::GetClusterMapRequest* request,
                             proto::ClusterMap* response) override;
  grpc::Status WatchClusterMap(grpc::ServerContext* ctx,
                               const proto::WatchClusterMapRequest* request,
                               grpc::ServerWriter<proto::ClusterMap>* writer) override;
  grpc::Status ReportMigration(grpc::ServerContext* ctx,
                               const proto::ReportMigrationRequest* request,
                               proto::ReportMigrationResponse* response) override;
  grpc::Status CoordinatorStatus(grpc::ServerContext* ctx,
                                 const proto::CoordinatorStatusRequest* request,
                                 proto::CoordinatorStatusResponse* response) override;

  uint64_t unauthenticated_calls() const { return unauthenticated_.load(); }
  uint64_t failed_calls() const { return failed_.load(); }

 private:
  // The cluster token; or, for a `reader` (the map RPCs), a tenant
  // credential too.
  grpc::Status Authorize(const grpc::ServerContext& ctx, bool reader = false);
  grpc::Status Finish(const absl::Status& status);
  // The service that takes writes: core_, or the group's leader. On a
  // follower, the redirect (and `*holder` stays null).
  grpc::Status Writer(grpc::ServerContext* ctx, std::shared_ptr<CoordinatorService>* holder,
                      CoordinatorService** core);
  std::shared_ptr<const proto::ClusterMap> CurrentMap() const;
  std::vector<std::shared_ptr<const proto::ClusterMap>> WaitForMaps(uint64_t after,
                                                                    absl::Time deadline) const;
  bool shutting_down() const;

  CoordinatorService* const core_;
  CoordinatorGroup* const group_ = nullptr;
  const std::string self_;
  const std::vector<std::string> tokens_;
  std::atomic<uint64_t> unauthenticated_{0};
  std::atomic<uint64_t> failed_{0};
};

}  // namespace kvf

#endif  // KVF_COORDINATOR_GRPC_SERVICE_H_
