// Cluster changes under traffic, with real processes (issue 5): a node joins
// (keys migrate to it and stay readable), a node drains (no read fails, it
// ends with no blocks), a node is SIGKILLed with R=2 (every block written with
// ack=all stays readable from its replica and is re-replicated to 2 copies),
// and the replicas of a mutable entry converge on the primary's version.
// Registered twice: as kvf_cluster_change_test_netns every process is on a
// host of its own, UCX over TCP (netns_hosts.h); a joining agent takes the
// next spare host.
#include <signal.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "grpcpp/client_context.h"
#include "grpcpp/create_channel.h"
#include "httplib.h"
#include "proto/auth.h"
#include "proto/channel.h"
#include "proto/coordinator.grpc.pb.h"
#include "tests/cluster/cluster_fixture.h"
#include "tests/cluster/scrape.h"

namespace kvf::testing {
namespace {

NamespaceSpec SmallSpec() {
  NamespaceSpec s;
  s.model_id = "change-test";
  s.layout = KvLayout{.num_layers = 2, .num_kv_heads = 2, .head_dim = 64, .block_tokens = 16,
                      .dtype = DType::kFp16};  // 8 KiB blocks
  s.segment_blocks = 4;
  return s;
}


class ClusterChangeTest : public ClusterTest {
 protected:
  LocalClusterOptions ClusterOptions() override {
    LocalClusterOptions o;
    o.agents = 3;
    o.replication = 2;
    // Long enough that a loaded 2-core CI machine does not miss heartbeats.
    o.lease_ms = 4000;
    o.host_bytes = 64ull << 20;
    return o;
  }

  void SetUp() override {
    ClusterTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    auto ns = client_->RegisterNamespace(SmallSpec());
    ASSERT_TRUE(ns.ok()) << ns.status();
    ns_ = *ns;
    stub_ = proto::Coordinator::NewStub(
        OpenChannel(cluster_->coordinator()));
  }

  // Writes `sequences` random sequences of `blocks` blocks.
  void Fill(int sequences, size_t blocks, AckMode ack) {
    PutOptions po;
    po.has_ack = true;
    po.ack = ack;
    for (int s = 0; s < sequences; ++s) {
      chains_.push_back(RandomChain(ns_, blocks));
      data_.push_back(RandomBlocks(blocks, ns_.BlockBytes()));
      auto put = client_->BatchPut(ns_, chains_.back(), 0, Sources(data_.back()), po);
      ASSERT_TRUE(put.ok()) << put.status();
      ASSERT_TRUE(put->all_ok()) << put->FirstError();
    }
  }

  // Reads every sequence back; returns the number of blocks that failed or
  // differed.
  size_t ReadAll(Client& client) {
    size_t bad = 0;
    for (size_t s = 0; s < chains_.size(); ++s) {
      std::vector<std::vector<uint8_t>> got(data_[s].size(), std::vector<uint8_t>(ns_.BlockBytes()));
      auto r = client.BatchGet(ns_, chains_[s], 0, Sinks(got));
      if (!r.ok()) {
        bad += got.size();
        continue;
      }
      for (size_t i = 0; i < got.size(); ++i) {
        if (!r->blocks[i].status.ok() || got[i] != data_[s][i]) ++bad;
      }
    }
    return bad;
  }

  // Reads everything in a loop on its own client until stopped; counts bad
  // blocks and rounds.
  void StartReader() {
    reader_ = std::thread([this] {
      auto client = Client::Connect(MakeClientOptions());
      if (!client.ok()) {
        reader_bad_ = 1;
        return;
      }
      while (!stop_reader_.load()) {
        reader_bad_ += ReadAll(**client);
        ++reader_rounds_;
      }
    });
  }
  void StopReader() {
    stop_reader_ = true;
    if (reader_.joinable()) reader_.join();
  }
  void TearDown() override {
    StopReader();
    ClusterTest::TearDown();
  }

  // Per block of every sequence, how many nodes hold it.
  std::vector<size_t> Holders() {
    std::vector<size_t> out;
    for (const auto& chain : chains_) {
      auto l = client_->Lookup(ns_, chain);
      EXPECT_TRUE(l.ok()) << l.status();
      if (!l.ok()) continue;
      for (const BlockHolding& b : l->blocks) out.push_back(b.nodes.size());
    }
    return out;
  }

  grpc::Status Drain(NodeId node) {
    grpc::ClientContext ctx;
    AddClusterToken(&ctx, cluster_->token());
    proto::NodeRequest req;
    req.set_node_id(node);
    proto::MembershipResponse resp;
    return stub_->Drain(&ctx, req, &resp);
  }

  Namespace ns_;
  std::vector<std::vector<BlockKey>> chains_;
  std::vector<std::vector<std::vector<uint8_t>>> data_;
  std::unique_ptr<proto::Coordinator::Stub> stub_;
  std::thread reader_;
  std::atomic<bool> stop_reader_{false};
  std::atomic<size_t> reader_bad_{0};
  std::atomic<size_t> reader_rounds_{0};
};

TEST_F(ClusterChangeTest, AJoiningNodeReceivesKeysAndEverythingStaysReadable) {
  Fill(8, 32, AckMode::kAll);
  StartReader();
  auto added = cluster_->StartAgent();
  ASSERT_TRUE(added.ok()) << added.status();
  ASSERT_TRUE(cluster_->WaitForActive(4, absl::Now() + absl::Seconds(60)).ok());
  // The client follows the watch; wait until it places with 4 nodes.
  const absl::Time deadline = absl::Now() + absl::Seconds(20);
  while (client_->cluster_map().epoch < cluster_->GetClusterMap()->epoch && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  const size_t rounds_before = reader_rounds_.load();
  while (reader_rounds_.load() < rounds_before + 2 && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  StopReader();
  EXPECT_EQ(reader_bad_.load(), 0u) << "reads failed during the join (" << reader_rounds_.load()
                                     << " rounds)";
  EXPECT_EQ(ReadAll(*client_), 0u);
  const AgentProcess& fresh = cluster_->agents()[*added];
  EXPECT_GT(Metric(fresh.http, "kvf_agent_blocks"), 0) << "no block migrated to the new node";
}

TEST_F(ClusterChangeTest, ADrainingNodeServesUntilItLeavesAndEndsEmpty) {
  Fill(8, 32, AckMode::kAll);
  const AgentProcess victim = cluster_->agents()[0];
  ASSERT_GT(Metric(victim.http, "kvf_agent_blocks"), 0);
  StartReader();
  ASSERT_TRUE(Drain(victim.node).ok());
  ASSERT_TRUE(cluster_
                  ->WaitForMap(
                      [&](const ClusterMap& m) {
                        const NodeInfo* n = m.Find(victim.node);
                        return n != nullptr && n->state == NodeState::kLeft;
                      },
                      absl::Now() + absl::Seconds(60))
                  .ok());
  // Still readable after the node left, and it drops its copies.
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  while (Metric(victim.http, "kvf_agent_blocks") != 0 && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(50));
  }
  StopReader();
  EXPECT_EQ(reader_bad_.load(), 0u) << "reads failed during the drain";
  EXPECT_EQ(ReadAll(*client_), 0u);
  EXPECT_EQ(Metric(victim.http, "kvf_agent_blocks"), 0) << "the drained node kept blocks";
}

TEST_F(ClusterChangeTest, AKilledNodesBlocksStayReadableAndAreReReplicated) {
  Fill(8, 32, AckMode::kAll);
  for (size_t h : Holders()) ASSERT_EQ(h, 2u);
  ASSERT_TRUE(cluster_->KillAgent(1).ok());
  // Readable at once, from the surviving replica.
  EXPECT_EQ(ReadAll(*client_), 0u);
  // The coordinator marks it down after the lease and re-replicates.
  const NodeId dead = cluster_->agents()[1].node;
  ASSERT_TRUE(cluster_
                  ->WaitForMap(
                      [&](const ClusterMap& m) {
                        const NodeInfo* n = m.Find(dead);
                        return n != nullptr && n->state == NodeState::kDown;
                      },
                      absl::Now() + absl::Seconds(60))
                  .ok());
  const absl::Time deadline = absl::Now() + absl::Seconds(90);
  std::vector<size_t> holders = Holders();
  while (absl::Now() < deadline &&
         !std::all_of(holders.begin(), holders.end(), [](size_t h) { return h == 2; })) {
    absl::SleepFor(absl::Milliseconds(100));
    holders = Holders();
  }
  size_t short_blocks = 0;
  for (size_t h : holders) short_blocks += h != 2;
  EXPECT_EQ(short_blocks, 0u) << "blocks not back to 2 copies";
  EXPECT_EQ(ReadAll(*client_), 0u);
}

TEST_F(ClusterChangeTest, ReplicasOfAMutableEntryConvergeAndReadsSeeYourWrites) {
  auto chain = RandomChain(ns_, 1);
  PutOptions po;
  po.is_mutable = true;
  Version last;
  std::vector<uint8_t> expected;
  for (int v = 0; v < 20; ++v) {
    auto block = RandomBlocks(1, ns_.BlockBytes());
    auto put = client_->Put(ns_, chain, 0, block[0].data(), block[0].size(), po);
    ASSERT_TRUE(put.ok()) << put.status();
    EXPECT_GT(*put, last);
    last = *put;
    expected = block[0];
    GetOptions go;
    go.has_min_version = true;
    go.min_version = last;
    std::vector<uint8_t> got(ns_.BlockBytes());
    auto r = client_->Get(ns_, chain, 0, got.data(), got.size(), go);
    ASSERT_TRUE(r.ok()) << r.status();
    ASSERT_TRUE(r->status.ok()) << r->status;
    EXPECT_GE(r->version, last);
    EXPECT_EQ(got, expected);
  }
  // Lazy sync: both owners end up holding the last version.
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  for (;;) {
    auto l = client_->Lookup(ns_, chain);
    ASSERT_TRUE(l.ok()) << l.status();
    if (l->blocks[0].nodes.size() == 2 && l->blocks[0].version == last) break;
    ASSERT_LT(absl::Now(), deadline) << "replicas did not converge on " << last.ToString();
    absl::SleepFor(absl::Milliseconds(10));
  }
}

}  // namespace
}  // namespace kvf::testing
