#include "node/agent/coordinator_link.h"

#include <chrono>
#include <pthread.h>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "grpcpp/create_channel.h"
#include "proto/auth.h"
#include "proto/channel.h"
#include "proto/cluster_map_convert.h"

namespace kvf {
namespace {

absl::Status Annotate(const char* call, const grpc::Status& s) {
  if (s.ok()) return absl::OkStatus();
  absl::Status st = FromGrpcStatus(s);
  return absl::Status(st.code(), absl::StrCat("coordinator ", call, ": ", st.message()));
}

}  // namespace

CoordinatorLink::CoordinatorLink(const std::string& address, std::string token,
                                 absl::Duration timeout,
                                 std::shared_ptr<grpc::ChannelCredentials> credentials)
    : token_(std::move(token)),
      timeout_(timeout),
      stub_(proto::Coordinator::NewStub(OpenChannel(address, std::move(credentials)))) {}

CoordinatorLink::~CoordinatorLink() { StopWatch(); }

void CoordinatorLink::Prepare(grpc::ClientContext* ctx) const {
  AddClusterToken(ctx, token_);
  ctx->set_deadline(std::chrono::system_clock::now() +
                    std::chrono::microseconds(absl::ToInt64Microseconds(timeout_)));
}

absl::StatusOr<proto::JoinResponse> CoordinatorLink::Join(const proto::JoinRequest& request) {
  grpc::ClientContext ctx;
  Prepare(&ctx);
  proto::JoinResponse response;
  if (absl::Status s = Annotate("Join", stub_->Join(&ctx, request, &response)); !s.ok()) return s;
  return response;
}

absl::StatusOr<proto::HeartbeatResponse> CoordinatorLink::Heartbeat(
    const proto::HeartbeatRequest& request) {
  grpc::ClientContext ctx;
  Prepare(&ctx);
  proto::HeartbeatResponse response;
  if (absl::Status s = Annotate("Heartbeat", stub_->Heartbeat(&ctx, request, &response)); !s.ok()) {
    return s;
  }
  return response;
}

absl::StatusOr<ClusterMap> CoordinatorLink::GetClusterMap() {
  grpc::ClientContext ctx;
  Prepare(&ctx);
  proto::ClusterMap map;
  if (absl::Status s = Annotate("GetClusterMap",
                                stub_->GetClusterMap(&ctx, proto::GetClusterMapRequest(), &map));
      !s.ok()) {
    return s;
  }
  return ClusterMapFromProto(map);
}

absl::Status CoordinatorLink::ReportMigration(uint32_t node,
                                              const std::vector<proto::TaskProgress>& tasks) {
  grpc::ClientContext ctx;
  Prepare(&ctx);
  proto::ReportMigrationRequest request;
  request.set_node_id(node);
  for (const auto& t : tasks) *request.add_tasks() = t;
  proto::ReportMigrationResponse response;
  return Annotate("ReportMigration", stub_->ReportMigration(&ctx, request, &response));
}

absl::Status CoordinatorLink::Leave(uint32_t node) {
  grpc::ClientContext ctx;
  Prepare(&ctx);
  proto::NodeRequest request;
  request.set_node_id(node);
  proto::MembershipResponse response;
  return Annotate("Leave", stub_->Leave(&ctx, request, &response));
}

void CoordinatorLink::StartWatch(uint64_t after_epoch,
                                 std::function<void(const ClusterMap&)> on_map) {
  watch_ = std::thread([this, after_epoch, on_map = std::move(on_map)] {
    pthread_setname_np(pthread_self(), "kvf-watch");
    WatchLoop(after_epoch, on_map);
  });
}

void CoordinatorLink::StopWatch() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
    if (watch_ctx_ != nullptr) watch_ctx_->TryCancel();
  }
  if (watch_.joinable()) watch_.join();
}

void CoordinatorLink::WatchLoop(uint64_t after_epoch,
                                std::function<void(const ClusterMap&)> on_map) {
  for (;;) {
    grpc::ClientContext ctx;
    AddClusterToken(&ctx, token_);
    {
      absl::MutexLock lock(&mu_);
      if (stop_) return;
      watch_ctx_ = &ctx;
    }
    proto::WatchClusterMapRequest request;
    request.set_after_epoch(after_epoch);
    std::unique_ptr<grpc::ClientReader<proto::ClusterMap>> reader =
        stub_->WatchClusterMap(&ctx, request);
    proto::ClusterMap wire;
    while (reader->Read(&wire)) {
      absl::StatusOr<ClusterMap> map = ClusterMapFromProto(wire);
      if (!map.ok()) {
        KVF_LOG(WARNING) << "agent: bad cluster map from the watch: " << map.status();
        continue;
      }
      after_epoch = std::max(after_epoch, map->epoch);
      on_map(*map);
    }
    grpc::Status s = reader->Finish();
    bool stop;
    {
      absl::MutexLock lock(&mu_);
      watch_ctx_ = nullptr;
      stop = stop_;
    }
    if (stop) return;
    KVF_LOG(WARNING) << "agent: cluster-map watch ended (" << s.error_message()
                     << "); re-opening";
    // Back off without sleeping through a stop.
    absl::MutexLock lock(&mu_);
    mu_.AwaitWithTimeout(absl::Condition(&stop_), absl::Milliseconds(500));
    if (stop_) return;
  }
}

}  // namespace kvf
