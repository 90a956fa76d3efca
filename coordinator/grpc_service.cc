#include "coordinator/grpc_service.h"

#include <string_view>

#include "proto/auth.h"
#include "proto/cluster_map_convert.h"

namespace kvf {

CoordinatorGrpcService::CoordinatorGrpcService(CoordinatorService* core,
                                               std::vector<std::string> tokens)
    : core_(core), tokens_(std::move(tokens)) {}

grpc::Status CoordinatorGrpcService::Authorize(const grpc::ServerContext& ctx, bool reader) {
  if (reader ? HasCredential(ctx, tokens_) : HasClusterToken(ctx, tokens_)) {
    return grpc::Status::OK;
  }
  ++unauthenticated_;
  return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                      reader ? "missing or wrong cluster token or tenant credential (send "
                               "'authorization: Bearer <credential>')"
                             : "missing or wrong cluster token (send 'authorization: Bearer "
                               "<token>' or 'x-kvf-token')");
}

grpc::Status CoordinatorGrpcService::Finish(const absl::Status& status) {
  if (!status.ok()) ++failed_;
  return ToGrpcStatus(status);
}

#define KVF_AUTHORIZE(ctx)                          \
  do {                                              \
    grpc::Status auth_status_ = Authorize(*(ctx));  \
    if (!auth_status_.ok()) return auth_status_;    \
  } while (0)
// The cluster map is what a tenant's client needs to find agents.
#define KVF_AUTHORIZE_READER(ctx)                                   \
  do {                                                              \
    grpc::Status auth_status_ = Authorize(*(ctx), /*reader=*/true); \
    if (!auth_status_.ok()) return auth_status_;                    \
  } while (0)

grpc::Status CoordinatorGrpcService::Join(grpc::ServerContext* ctx,
                                          const proto::JoinRequest* request,
                                          proto::JoinResponse* response) {
  KVF_AUTHORIZE(ctx);
  auto r = core_->Join(*request);
  if (r.ok()) *response = std::move(*r);
  return Finish(r.status());
}

grpc::Status CoordinatorGrpcService::Heartbeat(grpc::ServerContext* ctx,
                                               const proto::HeartbeatRequest* request,
                                               proto::HeartbeatResponse* response) {
  KVF_AUTHORIZE(ctx);
  auto r = core_->Heartbeat(*request);
  if (r.ok()) *response = std::move(*r);
  return Finish(r.status());
}

grpc::Status CoordinatorGrpcService::Drain(grpc::ServerContext* ctx,
                                           const proto::NodeRequest* request,
                                           proto::MembershipResponse* response) {
  KVF_AUTHORIZE(ctx);
  auto r = core_->Drain(request->node_id());
  if (r.ok()) *response = std::move(*r);
  return Finish(r.status());
}

grpc::Status CoordinatorGrpcService::Undrain(grpc::ServerContext* ctx,
                                             const proto::NodeRequest* request,
                                             proto::MembershipResponse* response) {
  KVF_AUTHORIZE(ctx);
  auto r = core_->Undrain(request->node_id());
  if (r.ok()) *response = std::move(*r);
  return Finish(r.status());
}

grpc::Status CoordinatorGrpcService::Leave(grpc::ServerContext* ctx,
                                           const proto::NodeRequest* request,
                                           proto::MembershipResponse* response) {
  KVF_AUTHORIZE(ctx);
  auto r = core_->Leave(request->node_id());
  if (r.ok()) *response = std::move(*r);
  return Finish(r.status());
}

grpc::Status CoordinatorGrpcService::GetClusterMap(grpc::ServerContext* ctx,
                                                   const proto::GetClusterMapRequest*,
                                                   proto::ClusterMap* response) {
  KVF_AUTHORIZE_READER(ctx);
  *response = *core_->GetClusterMap();
  return grpc::Status::OK;
}

grpc::Status CoordinatorGrpcService::WatchClusterMap(
    grpc::ServerContext* ctx, const proto::WatchClusterMapRequest* request,
    grpc::ServerWriter<proto::ClusterMap>* writer) {
  KVF_AUTHORIZE_READER(ctx);
  uint64_t last = request->after_epoch();
  while (!ctx->IsCancelled()) {
    // Wake now and then to notice a cancelled stream.
    auto maps = core_->WaitForMaps(last, absl::Now() + absl::Milliseconds(200));
    if (core_->shutting_down()) {
      return grpc::Status(grpc::StatusCode::UNAVAILABLE, "coordinator is shutting down");
    }
    for (const auto& map : maps) {
      if (!writer->Write(*map)) return grpc::Status::OK;  // the watcher went away
      last = map->epoch();
    }
  }
  return grpc::Status(grpc::StatusCode::CANCELLED, "watch cancelled");
}

grpc::Status CoordinatorGrpcService::ReportMigration(grpc::ServerContext* ctx,
                                                     const proto::ReportMigrationRequest* request,
                                                     proto::ReportMigrationResponse* response) {
  KVF_AUTHORIZE(ctx);
  auto r = core_->ReportMigration(*request);
  if (r.ok()) *response = std::move(*r);
  return Finish(r.status());
}

#undef KVF_AUTHORIZE

}  // namespace kvf
