#include "coordinator/grpc_service.h"

#include <string_view>

#include "absl/strings/str_cat.h"

#include "proto/auth.h"
#include "proto/cluster_map_convert.h"

namespace kvf {

CoordinatorGrpcService::CoordinatorGrpcService(CoordinatorService* core,
                                               std::vector<std::string> tokens, std::string self)
    : core_(core), self_(std::move(self)), tokens_(std::move(tokens)) {}

CoordinatorGrpcService::CoordinatorGrpcService(CoordinatorGroup* group,
                                               std::vector<std::string> tokens)
    : core_(nullptr), group_(group), self_(group->self()), tokens_(std::move(tokens)) {}

grpc::Status CoordinatorGrpcService::Writer(grpc::ServerContext* ctx,
                                            std::shared_ptr<CoordinatorService>* holder,
                                            CoordinatorService** core) {
  if (group_ == nullptr) {
    *core = core_;
    return grpc::Status::OK;
  }
  std::string leader;
  *holder = group_->Leader(&leader);
  if (*holder != nullptr) {
    *core = holder->get();
    return grpc::Status::OK;
  }
  ++failed_;
  if (leader.empty()) {
    return grpc::Status(grpc::StatusCode::UNAVAILABLE,
                        "not the leader and no leader elected yet; retry shortly");
  }
  ctx->AddTrailingMetadata(kLeaderMetadata, leader);
  return grpc::Status(grpc::StatusCode::UNAVAILABLE,
                      absl::StrCat("not the leader; the leader is ", leader));
}

std::shared_ptr<const proto::ClusterMap> CoordinatorGrpcService::CurrentMap() const {
  return group_ ? group_->feed().Current() : core_->GetClusterMap();
}

std::vector<std::shared_ptr<const proto::ClusterMap>> CoordinatorGrpcService::WaitForMaps(
    uint64_t after, absl::Time deadline) const {
  return group_ ? group_->feed().WaitForMaps(after, deadline) : core_->WaitForMaps(after, deadline);
}

bool CoordinatorGrpcService::shutting_down() const {
  return group_ ? group_->shutting_down() : core_->shutting_down();
}

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
  std::shared_ptr<CoordinatorService> holder;
  CoordinatorService* core = nullptr;
  if (grpc::Status w = Writer(ctx, &holder, &core); !w.ok()) return w;
  auto r = core->Join(*request);
  if (r.ok()) *response = std::move(*r);
  return Finish(r.status());
}

grpc::Status CoordinatorGrpcService::Heartbeat(grpc::ServerContext* ctx,
                                               const proto::HeartbeatRequest* request,
                                               proto::HeartbeatResponse* response) {
  KVF_AUTHORIZE(ctx);
  std::shared_ptr<CoordinatorService> holder;
  CoordinatorService* core = nullptr;
  if (grpc::Status w = Writer(ctx, &holder, &core); !w.ok()) return w;
  auto r = core->Heartbeat(*request);
  if (r.ok()) *response = std::move(*r);
  return Finish(r.status());
}

grpc::Status CoordinatorGrpcService::Drain(grpc::ServerContext* ctx,
                                           const proto::NodeRequest* request,
                                           proto::MembershipResponse* response) {
  KVF_AUTHORIZE(ctx);
  std::shared_ptr<CoordinatorService> holder;
  CoordinatorService* core = nullptr;
  if (grpc::Status w = Writer(ctx, &holder, &core); !w.ok()) return w;
  auto r = core->Drain(request->node_id());
  if (r.ok()) *response = std::move(*r);
  return Finish(r.status());
}

grpc::Status CoordinatorGrpcService::Undrain(grpc::ServerContext* ctx,
                                             const proto::NodeRequest* request,
                                             proto::MembershipResponse* response) {
  KVF_AUTHORIZE(ctx);
  std::shared_ptr<CoordinatorService> holder;
  CoordinatorService* core = nullptr;
  if (grpc::Status w = Writer(ctx, &holder, &core); !w.ok()) return w;
  auto r = core->Undrain(request->node_id());
  if (r.ok()) *response = std::move(*r);
  return Finish(r.status());
}

grpc::Status CoordinatorGrpcService::Leave(grpc::ServerContext* ctx,
                                           const proto::NodeRequest* request,
                                           proto::MembershipResponse* response) {
  KVF_AUTHORIZE(ctx);
  std::shared_ptr<CoordinatorService> holder;
  CoordinatorService* core = nullptr;
  if (grpc::Status w = Writer(ctx, &holder, &core); !w.ok()) return w;
  auto r = core->Leave(request->node_id());
  if (r.ok()) *response = std::move(*r);
  return Finish(r.status());
}

grpc::Status CoordinatorGrpcService::GetClusterMap(grpc::ServerContext* ctx,
                                                   const proto::GetClusterMapRequest*,
                                                   proto::ClusterMap* response) {
  KVF_AUTHORIZE_READER(ctx);
  std::shared_ptr<const proto::ClusterMap> map = CurrentMap();
  if (map == nullptr) {
    return grpc::Status(grpc::StatusCode::UNAVAILABLE,
                        "no cluster map yet (no leader has published one)");
  }
  *response = *map;
  return grpc::Status::OK;
}

grpc::Status CoordinatorGrpcService::WatchClusterMap(
    grpc::ServerContext* ctx, const proto::WatchClusterMapRequest* request,
    grpc::ServerWriter<proto::ClusterMap>* writer) {
  KVF_AUTHORIZE_READER(ctx);
  uint64_t last = request->after_epoch();
  while (!ctx->IsCancelled()) {
    // Wake now and then to notice a cancelled stream.
    auto maps = WaitForMaps(last, absl::Now() + absl::Milliseconds(200));
    if (shutting_down()) {
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
  std::shared_ptr<CoordinatorService> holder;
  CoordinatorService* core = nullptr;
  if (grpc::Status w = Writer(ctx, &holder, &core); !w.ok()) return w;
  auto r = core->ReportMigration(*request);
  if (r.ok()) *response = std::move(*r);
  return Finish(r.status());
}

grpc::Status CoordinatorGrpcService::CoordinatorStatus(
    grpc::ServerContext* ctx, const proto::CoordinatorStatusRequest*,
    proto::CoordinatorStatusResponse* response) {
  KVF_AUTHORIZE(ctx);
  if (group_ != nullptr) {
    *response = group_->Status();
    return grpc::Status::OK;
  }
  response->set_role(proto::CoordinatorStatusResponse::ROLE_STANDALONE);
  response->set_address(self_);
  response->set_leader_address(self_);
  response->set_epoch(core_->epoch());
  return grpc::Status::OK;
}

#undef KVF_AUTHORIZE

}  // namespace kvf
