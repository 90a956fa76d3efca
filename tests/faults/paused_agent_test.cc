// A node that was away never serves what changed while it was away (issue
// 12). An agent is SIGSTOPped past its lease; the coordinator marks it down;
// every mutable block is overwritten (ack=all) by the owners that remain; the
// agent is SIGCONTed and re-joins. Readers with no memory of the writes read
// every block again and again from the moment it resumes until well after it
// is active: not one read may return an older round than the last one
// acknowledged. Several rounds, each pausing another agent.
#include <signal.h>

#include "absl/time/clock.h"
#include "tests/faults/fault_workload.h"

namespace kvf::testing {
namespace {

class PausedAgentTest : public FaultTest {};

TEST_F(PausedAgentTest, ANodeBackFromDownNeverServesAnOverwrittenVersion) {
  constexpr size_t kBlocks = 96;
  constexpr int kRounds = 6;
  const std::vector<BlockKey> chain = RandomChain(ns_, kBlocks);
  OpCounts writes, reads;
  uint64_t acked_round = 0;
  ASSERT_EQ(WriteRound(*client_, chain, 0, kBlocks, acked_round, true, &writes), kBlocks);

  // A reader that never wrote: no read-your-writes state to hide behind.
  ClientOptions co = MakeClientOptions();
  auto reader = Client::Connect(co);
  ASSERT_TRUE(reader.ok()) << reader.status();

  for (int round = 1; round <= kRounds; ++round) {
    const int victim = round % 3;
    ASSERT_TRUE(cluster_->SignalAgent(victim, SIGSTOP).ok());
    ASSERT_TRUE(WaitForState(victim, NodeState::kDown, absl::Seconds(60)).ok())
        << "the paused agent was never marked down";
    // Overwrite every block; the remaining owners take the writes.
    ASSERT_EQ(WriteRound(*client_, chain, 0, kBlocks, round, true, &writes), kBlocks)
        << writes.Summary("writes");
    acked_round = static_cast<uint64_t>(round);

    ASSERT_TRUE(cluster_->SignalAgent(victim, SIGCONT).ok());
    // Read every block from the moment it resumes until it is active again,
    // then for a lease more.
    const NodeId node = cluster_->agents()[victim].node;
    auto active = [&] {
      absl::StatusOr<ClusterMap> m = cluster_->GetClusterMap();
      const NodeInfo* n = m.ok() ? m->Find(node) : nullptr;
      return n != nullptr && n->state == NodeState::kActive;
    };
    const absl::Time give_up = absl::Now() + absl::Seconds(60);
    int passes = 0;
    while (!active() && absl::Now() < give_up) {
      for (size_t i = 0; i < kBlocks; ++i) CheckedRead(**reader, chain, i, acked_round, &reads);
      ++passes;
    }
    ASSERT_TRUE(active()) << "agent " << victim << " did not come back";
    const absl::Time settle = absl::Now() + Lease();
    while (absl::Now() < settle) {
      for (size_t i = 0; i < kBlocks; ++i) CheckedRead(**reader, chain, i, acked_round, &reads);
      ++passes;
    }
    std::cout << "round " << round << ": agent " << victim << " paused and back; " << passes
              << " read passes; " << reads.Summary("reads so far") << "\n";
  }
  std::cout << writes.Summary("writes") << "\n" << reads.Summary("reads") << "\n";
  EXPECT_EQ(reads.stale.load(), 0u) << "a node back from down served an overwritten version";
  EXPECT_EQ(reads.wrong.load(), 0u);
  EXPECT_EQ(writes.failed.load(), 0u);
  // Every read finds the block on some owner: the returning node refuses what
  // it cannot prove current, and the client reads the next owner.
  EXPECT_EQ(reads.failed.load(), 0u);
}

}  // namespace
}  // namespace kvf::testing
