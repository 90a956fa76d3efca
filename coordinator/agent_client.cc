#include "coordinator/agent_client.h"

#include <chrono>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "grpcpp/client_context.h"
#include "grpcpp/create_channel.h"
#include "proto/agent_control.grpc.pb.h"
#include "proto/channel.h"
#include "proto/cluster_map_convert.h"

namespace kvf {
namespace {

class GrpcAgentClient final : public AgentClient {
 public:
  GrpcAgentClient(std::string token, std::shared_ptr<grpc::ChannelCredentials> credentials,
                  absl::Duration timeout)
      : token_(std::move(token)),
        credentials_(credentials ? std::move(credentials) : grpc::InsecureChannelCredentials()),
        timeout_(timeout) {}

  absl::Status AssignMigration(const std::string& address,
                               const proto::AssignMigrationRequest& request) override {
    grpc::ClientContext ctx;
    Prepare(&ctx);
    proto::AssignMigrationResponse response;
    grpc::Status s = Stub(address)->AssignMigration(&ctx, request, &response);
    return Annotate("AssignMigration", address, s);
  }

  absl::Status ApplyEvictionCutoff(const std::string& address,
                                   const proto::EvictionCutoffRequest& request) override {
    grpc::ClientContext ctx;
    Prepare(&ctx);
    proto::EvictionCutoffResponse response;
    grpc::Status s = Stub(address)->ApplyEvictionCutoff(&ctx, request, &response);
    return Annotate("ApplyEvictionCutoff", address, s);
  }

 private:
  void Prepare(grpc::ClientContext* ctx) const {
    ctx->AddMetadata("authorization", "Bearer " + token_);
    ctx->set_deadline(std::chrono::system_clock::now() +
                      std::chrono::microseconds(absl::ToInt64Microseconds(timeout_)));
  }

  static absl::Status Annotate(const char* call, const std::string& address,
                               const grpc::Status& s) {
    if (s.ok()) return absl::OkStatus();
    absl::Status st = FromGrpcStatus(s);
    return absl::Status(st.code(), absl::StrCat(call, " to agent ", address, ": ", st.message()));
  }

  proto::AgentControl::Stub* Stub(const std::string& address) {
    absl::MutexLock lock(&mu_);
    auto& stub = stubs_[address];
    if (!stub) stub = proto::AgentControl::NewStub(OpenChannel(address, credentials_));
    return stub.get();
  }

  const std::string token_;
  const std::shared_ptr<grpc::ChannelCredentials> credentials_;
  const absl::Duration timeout_;
  absl::Mutex mu_;
  // Stubs live as long as the client, so a pointer handed out stays valid.
  absl::flat_hash_map<std::string, std::unique_ptr<proto::AgentControl::Stub>> stubs_
      ABSL_GUARDED_BY(mu_);
};

}  // namespace

std::unique_ptr<AgentClient> NewGrpcAgentClient(
    std::string token, std::shared_ptr<grpc::ChannelCredentials> credentials,
    absl::Duration timeout) {
  return std::make_unique<GrpcAgentClient>(std::move(token), std::move(credentials), timeout);
}

}  // namespace kvf
