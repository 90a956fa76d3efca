// A coordinator restart is a non-event (issue 12): kill -9 the coordinator,
// keep it away for less and for more than a lease, start it again with the
// same state dir. Reads of what was written go on throughout, byte-exact; the
// map is whole again within one lease of its return (no agent locked out);
// writes and joins work afterwards.
#include <signal.h>

#include "absl/time/clock.h"
#include "tests/faults/fault_workload.h"

namespace kvf::testing {
namespace {

class CoordinatorRestartTest : public FaultTest,
                               public ::testing::WithParamInterface<int /*outage in leases x2*/> {
 protected:
  LocalClusterOptions ClusterOptions() override {
    LocalClusterOptions o = FaultTest::ClusterOptions();
    o.coordinator_state_dir = "coordinator-state";  // inside the cluster's dir
    return o;
  }
  absl::Duration Outage() const { return Lease() * GetParam() / 2; }
};

TEST_P(CoordinatorRestartTest, ReadsGoOnAndEveryAgentIsBackWithinALease) {
  constexpr size_t kBlocks = 64;
  const std::vector<BlockKey> chain = RandomChain(ns_, kBlocks);
  OpCounts writes, reads;
  ASSERT_EQ(WriteRound(*client_, chain, 0, kBlocks, 0, false, &writes), kBlocks);
  absl::StatusOr<ClusterMap> before = cluster_->GetClusterMap();
  ASSERT_TRUE(before.ok()) << before.status();

  size_t next = 0;
  Loop reader([&] { CheckedRead(*client_, chain, next++ % kBlocks, 0, &reads); });
  ASSERT_TRUE(cluster_->KillCoordinator().ok());
  absl::SleepFor(Outage());  // the fault itself: the coordinator stays away this long
  const uint64_t reads_during_outage = reads.tried.load();
  ASSERT_TRUE(cluster_->RestartCoordinator().ok());
  const absl::Time back = absl::Now();

  // Whole again within one lease: every agent active, at a newer epoch.
  absl::Status whole = cluster_->WaitForMap(
      [&](const ClusterMap& m) {
        if (m.epoch <= before->epoch) return false;
        int active = 0;
        for (const NodeInfo& n : m.nodes) active += n.state == NodeState::kActive;
        return active == 3;
      },
      back + Lease());
  const absl::Duration whole_after = absl::Now() - back;
  EXPECT_TRUE(whole.ok()) << whole;
  // And it stays whole: every agent's heartbeats are accepted, none goes
  // down for two leases more.
  absl::SleepFor(Lease() * 2);
  absl::StatusOr<ClusterMap> after = cluster_->GetClusterMap();
  ASSERT_TRUE(after.ok()) << after.status();
  for (const AgentProcess& a : cluster_->agents()) {
    const NodeInfo* n = after->Find(a.node);
    ASSERT_NE(n, nullptr) << "node " << a.node << " is missing from the map";
    EXPECT_EQ(n->state, NodeState::kActive) << "node " << a.node;
  }
  reader.Stop();

  // Writes and joins work again.
  const std::vector<BlockKey> fresh = RandomChain(ns_, 16);
  EXPECT_EQ(WriteRound(*client_, fresh, 0, 16, 1, false, &writes), 16u);
  for (size_t i = 0; i < 16; ++i) CheckedRead(*client_, fresh, i, 1, &reads);
  ASSERT_TRUE(cluster_->StartAgent().ok());
  EXPECT_TRUE(cluster_->WaitForActive(4, absl::Now() + absl::Seconds(60)).ok());

  std::cout << "coordinator outage " << absl::FormatDuration(Outage()) << " (lease "
            << absl::FormatDuration(Lease()) << "), map whole "
            << absl::FormatDuration(whole_after) << " after the restart: " << reads.Summary("reads") << " ("
            << reads_during_outage << " during the outage); " << writes.Summary("writes")
            << "\n";
  EXPECT_GT(reads_during_outage, 0u);
  EXPECT_EQ(reads.failed.load(), 0u);
  EXPECT_EQ(reads.wrong.load(), 0u);
  EXPECT_EQ(reads.stale.load(), 0u);
  EXPECT_EQ(writes.failed.load(), 0u);
}

// Half a lease, and three leases.
INSTANTIATE_TEST_SUITE_P(Outages, CoordinatorRestartTest, ::testing::Values(1, 6),
                         [](const auto& info) {
                           return absl::StrCat(info.param * 50, "PercentOfALease");
                         });

}  // namespace
}  // namespace kvf::testing
