// A network partition (issue 12): the coordinator, each agent and the client
// in network namespaces of their own joined by a bridge
// (tools/launch/netns_topology.h), so nothing is shared but the network; UCX
// over TCP only. One agent's link is cut while writes go on: it is marked down
// once its lease is gone and the owners that remain take the overwrites. Its
// link comes back: it re-joins, and readers with no memory of the writes never
// see an older round than the last acknowledged one, from it or anyone; every
// block is back to R copies.
// Needs root (CI has it); skips with the reason elsewhere.
#include "absl/time/clock.h"
#include "tests/faults/fault_workload.h"
#include "tools/launch/netns_topology.h"

namespace kvf::testing {
namespace {

using launch::EnterNetns;
using launch::NetnsTopology;

constexpr int kAgents = 3;
constexpr int kCoordinatorHost = 0;
constexpr int kClientHost = kAgents + 1;
int AgentHost(int agent) { return agent + 1; }

class PartitionTest : public FaultTest {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<NetnsTopology>> topo = NetnsTopology::Create(kAgents + 2);
    if (absl::IsUnavailable(topo.status())) {
      GTEST_SKIP() << "network namespaces unavailable: " << topo.status();
    }
    ASSERT_TRUE(topo.ok()) << topo.status();
    topo_ = std::move(*topo);
    // This process is the client host: every thread it starts from here on
    // (gRPC's, UCX's) is in that namespace.
    ASSERT_TRUE(EnterNetns(topo_->host_netns(kClientHost)).ok());
    FaultTest::SetUp();
  }
  void TearDown() override {
    FaultTest::TearDown();  // stops the daemons before their namespaces go
    topo_.reset();
  }
  LocalClusterOptions ClusterOptions() override {
    LocalClusterOptions o = FaultTest::ClusterOptions();
    std::vector<int> agent_hosts;
    for (int i = 0; i < kAgents; ++i) agent_hosts.push_back(AgentHost(i));
    launch::PlaceOnHosts(*topo_, kCoordinatorHost, agent_hosts, &o);  // UCX over TCP
    return o;
  }

  // How many owners hold each block of `chain`.
  std::vector<size_t> Holders(const std::vector<BlockKey>& chain) {
    absl::StatusOr<LookupResult> l = client_->Lookup(ns_, chain);
    std::vector<size_t> out(chain.size(), 0);
    if (!l.ok()) return out;
    for (size_t i = 0; i < l->blocks.size(); ++i) out[i] = l->blocks[i].nodes.size();
    return out;
  }

  std::unique_ptr<NetnsTopology> topo_;
};

TEST_F(PartitionTest, ACutOffNodeIsFencedAndNeverServesStaleAfterHealing) {
  constexpr size_t kBlocks = 64;
  const int victim = 0;
  const std::vector<BlockKey> chain = RandomChain(ns_, kBlocks);
  OpCounts writes, cut_writes, reads;
  ASSERT_EQ(WriteRound(*client_, chain, 0, kBlocks, 0, true, &writes), kBlocks);
  auto reader = Client::Connect(MakeClientOptions());
  ASSERT_TRUE(reader.ok()) << reader.status();

  ASSERT_TRUE(topo_->CutLink(AgentHost(victim)).ok());
  // Writes go on while the node is cut off; those it owns cannot be
  // acknowledged by every owner (ack=all) until it is marked down.
  std::atomic<bool> down{false};
  std::thread writer([&] {
    while (!down.load()) WriteRound(*client_, chain, 0, kBlocks, 1, true, &cut_writes);
  });
  absl::Status marked = WaitForState(victim, NodeState::kDown, absl::Seconds(60));
  down.store(true);
  writer.join();
  ASSERT_TRUE(marked.ok()) << "the cut-off agent was never marked down: " << marked;
  // The owners that remain take every overwrite.
  ASSERT_EQ(WriteRound(*client_, chain, 0, kBlocks, 2, true, &writes), kBlocks)
      << writes.Summary("writes");
  const uint64_t acked_round = 2;

  ASSERT_TRUE(topo_->HealLink(AgentHost(victim)).ok());
  const absl::Time give_up = absl::Now() + absl::Seconds(60);
  auto active = [&] {
    absl::StatusOr<ClusterMap> m = cluster_->GetClusterMap();
    const NodeInfo* n = m.ok() ? m->Find(cluster_->agents()[victim].node) : nullptr;
    return n != nullptr && n->state == NodeState::kActive;
  };
  int passes = 0;
  while (!active() && absl::Now() < give_up) {
    for (size_t i = 0; i < kBlocks; ++i) CheckedRead(**reader, chain, i, acked_round, &reads);
    ++passes;
  }
  ASSERT_TRUE(active()) << "the healed agent did not re-join";
  // Converges: every block back to R copies of the acknowledged round.
  std::vector<size_t> holders = Holders(chain);
  while (absl::Now() < give_up &&
         !std::all_of(holders.begin(), holders.end(), [](size_t h) { return h == 2; })) {
    for (size_t i = 0; i < kBlocks; ++i) CheckedRead(**reader, chain, i, acked_round, &reads);
    ++passes;
    holders = Holders(chain);
  }
  size_t short_blocks = 0;
  for (size_t h : holders) short_blocks += h != 2;
  for (size_t i = 0; i < kBlocks; ++i) CheckedRead(**reader, chain, i, acked_round, &reads);

  std::cout << cut_writes.Summary("writes while cut off (ack=all)") << "\n"
            << writes.Summary("writes") << "\n"
            << reads.Summary("reads after healing") << " in " << passes + 1 << " passes\n";
  EXPECT_EQ(short_blocks, 0u) << "blocks not back to 2 copies";
  EXPECT_EQ(reads.stale.load(), 0u);
  EXPECT_EQ(reads.wrong.load(), 0u);
  EXPECT_EQ(reads.failed.load(), 0u);
}

}  // namespace
}  // namespace kvf::testing
