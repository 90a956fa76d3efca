// CoordinatorGrpcService in process over loopback: the token check on every
// RPC, and status codes crossing the wire intact.
#include "coordinator/grpc_service.h"

#include <memory>
#include <string>
#include <vector>

#include "common/credentials.h"
#include "grpcpp/client_context.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server.h"
#include "grpcpp/server_builder.h"
#include "gtest/gtest.h"
#include "tests/coordinator/coordinator_test_util.h"

namespace kvf {
namespace {

constexpr char kToken[] = "s3cret-token";
constexpr char kPreviousToken[] = "old-token";  // still accepted: a rotation in progress

class GrpcServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    CoordinatorOptions o;
    o.clock = &clock_;
    o.agents = &agents_;
    auto s = CoordinatorService::Create(o);
    ASSERT_TRUE(s.ok()) << s.status();
    core_ = std::move(*s);
    service_ = std::make_unique<CoordinatorGrpcService>(
        core_.get(), std::vector<std::string>{kToken, kPreviousToken});
    grpc::ServerBuilder b;
    int port = 0;
    b.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    b.RegisterService(service_.get());
    server_ = b.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    ASSERT_GT(port, 0);
    stub_ = proto::Coordinator::NewStub(grpc::CreateChannel(
        "127.0.0.1:" + std::to_string(port), grpc::InsecureChannelCredentials()));
  }
  void TearDown() override {
    core_->Shutdown();
    server_->Shutdown();
  }

  // mode: 0 none, 1 bearer, 2 x-kvf-token, 3 wrong bearer, 4 "Basic"
  static void Auth(grpc::ClientContext* ctx, int mode) {
    if (mode == 1) ctx->AddMetadata("authorization", std::string("Bearer ") + kToken);
    if (mode == 2) ctx->AddMetadata("x-kvf-token", kToken);
    if (mode == 3) ctx->AddMetadata("authorization", "Bearer s3cret-tokem");
    if (mode == 4) ctx->AddMetadata("authorization", std::string("Basic ") + kToken);
  }

  grpc::Status Join(int mode, proto::JoinResponse* out) {
    grpc::ClientContext ctx;
    Auth(&ctx, mode);
    proto::JoinRequest r;
    r.set_address("127.0.0.1:4000");
    r.set_capacity_bytes(1 << 20);
    return stub_->Join(&ctx, r, out);
  }

  FakeClock clock_;
  FakeAgents agents_;
  std::unique_ptr<CoordinatorService> core_;
  std::unique_ptr<CoordinatorGrpcService> service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<proto::Coordinator::Stub> stub_;
};

TEST_F(GrpcServiceTest, MissingOrWrongTokenIsUnauthenticatedAndChangesNothing) {
  const uint64_t epoch = core_->epoch();
  for (int mode : {0, 3, 4}) {
    proto::JoinResponse out;
    grpc::Status s = Join(mode, &out);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED) << mode;
    EXPECT_EQ(core_->epoch(), epoch);

    grpc::ClientContext c1;
    Auth(&c1, mode);
    proto::NodeRequest nr;
    nr.set_node_id(1);
    proto::MembershipResponse mr;
    EXPECT_EQ(stub_->Leave(&c1, nr, &mr).error_code(), grpc::StatusCode::UNAUTHENTICATED);
    grpc::ClientContext c2;
    Auth(&c2, mode);
    proto::ClusterMap map;
    EXPECT_EQ(stub_->GetClusterMap(&c2, proto::GetClusterMapRequest(), &map).error_code(),
              grpc::StatusCode::UNAUTHENTICATED);
    grpc::ClientContext c3;
    Auth(&c3, mode);
    auto reader = stub_->WatchClusterMap(&c3, proto::WatchClusterMapRequest());
    EXPECT_FALSE(reader->Read(&map));
    EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::UNAUTHENTICATED);
  }
  EXPECT_TRUE(core_->CurrentMap().nodes.empty());
  EXPECT_EQ(service_->unauthenticated_calls(), 12u);
}

TEST_F(GrpcServiceTest, APreviousTokenWorksAndTenantCredentialsOnlyReadTheMap) {
  const std::string tenant = *TenantCredential(kToken, "acme");
  const std::string old_tenant = *TenantCredential(kPreviousToken, "acme");
  for (const std::string& bearer : {std::string(kPreviousToken), tenant, old_tenant}) {
    const bool cluster = bearer == kPreviousToken;
    grpc::ClientContext c1;
    c1.AddMetadata("authorization", "Bearer " + bearer);
    proto::ClusterMap map;
    EXPECT_TRUE(stub_->GetClusterMap(&c1, proto::GetClusterMapRequest(), &map).ok()) << bearer;
    grpc::ClientContext c2;
    c2.AddMetadata("authorization", "Bearer " + bearer);
    proto::JoinRequest r;
    r.set_address("127.0.0.1:4001");
    r.set_capacity_bytes(1 << 20);
    proto::JoinResponse out;
    grpc::Status s = stub_->Join(&c2, r, &out);
    EXPECT_EQ(s.ok(), cluster) << bearer << ": " << s.error_message();
    if (!cluster) {
      EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED);
    }
  }
  // A credential derived from a token the coordinator never had reads nothing.
  grpc::ClientContext c;
  c.AddMetadata("authorization", "Bearer " + *TenantCredential("other", "acme"));
  proto::ClusterMap map;
  EXPECT_EQ(stub_->GetClusterMap(&c, proto::GetClusterMapRequest(), &map).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
}

TEST_F(GrpcServiceTest, BothHeadersWorkAndErrorsKeepTheirCode) {
  proto::JoinResponse out;
  ASSERT_TRUE(Join(1, &out).ok());
  EXPECT_EQ(out.node_id(), 1u);
  EXPECT_EQ(out.map().epoch(), core_->epoch());
  // Same address again: ALREADY_EXISTS crosses the wire as itself.
  EXPECT_EQ(Join(2, &out).error_code(), grpc::StatusCode::ALREADY_EXISTS);

  grpc::ClientContext ctx;
  Auth(&ctx, 2);
  proto::HeartbeatRequest hb;
  hb.set_node_id(99);
  proto::HeartbeatResponse hr;
  grpc::Status s = stub_->Heartbeat(&ctx, hb, &hr);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_NE(s.error_message().find("99"), std::string::npos);
}

TEST_F(GrpcServiceTest, WatchStartsWithTheCurrentMapThenFollows) {
  proto::JoinResponse out;
  ASSERT_TRUE(Join(1, &out).ok());
  grpc::ClientContext ctx;
  Auth(&ctx, 1);
  auto reader = stub_->WatchClusterMap(&ctx, proto::WatchClusterMapRequest());
  proto::ClusterMap map;
  ASSERT_TRUE(reader->Read(&map));
  EXPECT_EQ(map.epoch(), core_->epoch());
  const uint64_t first = map.epoch();
  ASSERT_TRUE(core_->Drain(out.node_id()).ok());  // draining, then left (nothing to move)
  ASSERT_TRUE(reader->Read(&map));
  EXPECT_EQ(map.epoch(), first + 1);
  ASSERT_TRUE(reader->Read(&map));
  EXPECT_EQ(map.epoch(), first + 2);
  EXPECT_EQ(map.nodes(0).state(), proto::NODE_STATE_LEFT);
  ctx.TryCancel();
}

}  // namespace
}  // namespace kvf
