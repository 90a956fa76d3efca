// kvf::Client against a real kvf-coordinator with no agents: connecting,
// authentication, argument validation, and what an empty cluster answers.
#include "client/client.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/block_hash.h"
#include "gtest/gtest.h"
#include "tests/cluster/local_cluster.h"

namespace kvf {
namespace {

// A loopback port nobody listens on (bound, then closed).
int ClosedPort() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a));
  socklen_t len = sizeof(a);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

NamespaceSpec Spec() {
  NamespaceSpec s;
  s.model_id = "m";
  s.layout = KvLayout{2, 2, 64, 16, DType::kFp16};
  return s;
}

TEST(ClientConnect, ClosedPortIsAClearUnavailable) {
  ClientOptions o;
  o.coordinator = absl::StrCat("127.0.0.1:", ClosedPort());
  o.rpc_timeout = absl::Seconds(2);
  const absl::Time t0 = absl::Now();
  auto c = Client::Connect(o);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), absl::StatusCode::kUnavailable) << c.status();
  EXPECT_TRUE(absl::StrContains(c.status().message(), o.coordinator)) << c.status();
  EXPECT_LT(absl::Now() - t0, absl::Seconds(3));
}

TEST(ClientConnect, RejectsBadOptions) {
  ClientOptions o;
  EXPECT_EQ(Client::Connect(o).status().code(), absl::StatusCode::kInvalidArgument);
  o.coordinator = "127.0.0.1:1";
  o.data_timeout = absl::ZeroDuration();
  EXPECT_EQ(Client::Connect(o).status().code(), absl::StatusCode::kInvalidArgument);
}

class EmptyCluster : public ::testing::Test {
 protected:
  void SetUp() override {
    testing::LocalClusterOptions o;
    o.agents = 0;
    auto c = testing::LocalCluster::Start(o);
    ASSERT_TRUE(c.ok()) << c.status();
    cluster_ = std::move(*c);
    ClientOptions co;
    co.coordinator = cluster_->coordinator();
    co.token = cluster_->token();
    auto client = Client::Connect(co);
    ASSERT_TRUE(client.ok()) << client.status();
    client_ = std::move(*client);
    auto ns = client_->RegisterNamespace(Spec());
    ASSERT_TRUE(ns.ok()) << ns.status();
    ns_ = *ns;
    auto keys = HashSequence(HashAlgorithm::kXxh3_128, std::vector<uint32_t>(64, 7), 16);
    chain_ = *keys;
  }
  std::unique_ptr<testing::LocalCluster> cluster_;
  std::unique_ptr<Client> client_;
  Namespace ns_;
  std::vector<BlockKey> chain_;
};

TEST_F(EmptyCluster, WrongTokenIsUnauthenticated) {
  ClientOptions o;
  o.coordinator = cluster_->coordinator();
  o.token = "wrong";
  auto c = Client::Connect(o);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), absl::StatusCode::kUnauthenticated) << c.status();
}

TEST_F(EmptyCluster, SeesTheMap) {
  EXPECT_GE(client_->map_epoch(), 0u);
  EXPECT_TRUE(client_->cluster_map().nodes.empty());
  EXPECT_TRUE(client_->transport_capabilities().one_sided);
}

TEST_F(EmptyCluster, RegisterNamespaceValidates) {
  NamespaceSpec bad = Spec();
  bad.layout.head_dim = 0;
  EXPECT_EQ(client_->RegisterNamespace(bad).status().code(), absl::StatusCode::kInvalidArgument);
  bad = Spec();
  bad.tp_rank = 3;
  bad.tp_size = 2;
  EXPECT_EQ(client_->RegisterNamespace(bad).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ns_.id(), Spec().Id());
  EXPECT_EQ(ns_.BlockBytes(), Spec().layout.BytesPerBlock());
}

TEST_F(EmptyCluster, ArgumentsAreCheckedBeforeAnyRequest) {
  std::vector<uint8_t> block(ns_.BlockBytes());
  // Wrong size.
  auto put = client_->Put(ns_, chain_, 0, block.data(), block.size() - 1);
  EXPECT_EQ(put.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(put.status().message(), "exactly")) << put.status();
  // Range outside the chain.
  EXPECT_EQ(client_->Put(ns_, chain_, 4, block.data(), block.size()).status().code(),
            absl::StatusCode::kInvalidArgument);
  std::vector<BlockBuffer> dst(5, BlockBuffer{block.data(), block.size()});
  EXPECT_EQ(client_->BatchGet(ns_, chain_, 0, dst).status().code(),
            absl::StatusCode::kInvalidArgument);
  // An empty namespace handle.
  EXPECT_EQ(client_->Lookup(Namespace(), chain_).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(EmptyCluster, NoNodesMeansUnavailable) {
  EXPECT_EQ(client_->Lookup(ns_, chain_).status().code(), absl::StatusCode::kUnavailable);
  std::vector<uint8_t> block(ns_.BlockBytes());
  auto put = client_->BatchPut(ns_, chain_, 0, {ConstBlockBuffer{block.data(), block.size()}});
  ASSERT_TRUE(put.ok()) << put.status();
  ASSERT_EQ(put->blocks.size(), 1u);
  EXPECT_EQ(put->blocks[0].status.code(), absl::StatusCode::kUnavailable);
  std::vector<BlockBuffer> dst(2, BlockBuffer{block.data(), block.size()});
  auto got = client_->BatchGet(ns_, chain_, 2, dst);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->ok_count(), 0u);
  EXPECT_EQ(got->FirstError().code(), absl::StatusCode::kUnavailable);
}

}  // namespace
}  // namespace kvf
