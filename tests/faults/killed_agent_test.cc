// SIGKILL under load (issue 12): writers store fresh blocks with ack=all and
// readers check every byte of acknowledged ones while an agent is killed.
// No acknowledged write may be lost and no read may return wrong bytes; the
// reads that fail (in the moment the node is marked down) are counted.
#include <signal.h>

#include <mutex>

#include "absl/time/clock.h"
#include "tests/faults/fault_workload.h"

namespace kvf::testing {
namespace {

class KilledAgentTest : public FaultTest {};

TEST_F(KilledAgentTest, NoAcknowledgedWriteIsLostAndNoByteIsWrong) {
  constexpr size_t kBatch = 8;
  constexpr size_t kMaxBlocks = 2048;
  const std::vector<BlockKey> chain = RandomChain(ns_, kMaxBlocks);
  OpCounts writes, reads;
  std::mutex mu;
  std::vector<size_t> acked;  // indexes of acknowledged blocks
  std::atomic<size_t> written{0};
  std::mt19937_64 rng(7);

  Loop writer([&] {
    const size_t begin = written.fetch_add(kBatch);
    if (begin + kBatch > kMaxBlocks) {
      written.store(kMaxBlocks);
      absl::SleepFor(absl::Milliseconds(1));  // all written: idle until stopped
      return;
    }
    std::vector<uint8_t> buf(block_bytes_);
    for (size_t i = begin; i < begin + kBatch; ++i) {
      if (WriteRound(*client_, chain, i, i + 1, 0, false, &writes) == 1) {
        std::lock_guard<std::mutex> l(mu);
        acked.push_back(i);
      }
    }
  });
  Loop reader([&] {
    size_t index;
    {
      std::lock_guard<std::mutex> l(mu);
      if (acked.empty()) return;
      index = acked[rng() % acked.size()];
    }
    CheckedRead(*client_, chain, index, 0, &reads);
  });

  // Some load first, then the kill, then load until it is back to R copies'
  // worth of time (marked down and a lease more).
  while (writes.tried.load() < 200 && written.load() < kMaxBlocks) absl::SleepFor(absl::Milliseconds(5));
  ASSERT_TRUE(cluster_->KillAgent(1).ok());
  ASSERT_TRUE(WaitForState(1, NodeState::kDown, absl::Seconds(60)).ok());
  absl::SleepFor(Lease());
  writer.Stop();
  reader.Stop();

  // Every acknowledged block is still there, byte-exact.
  OpCounts final_reads;
  for (size_t i : acked) {
    if (!CheckedRead(*client_, chain, i, 0, &final_reads)) ++final_reads.lost;
  }
  std::cout << writes.Summary("writes (ack=all)") << "\n"
            << reads.Summary("reads under load") << "\n"
            << final_reads.Summary("acknowledged blocks read back") << "\n";
  EXPECT_GT(acked.size(), 0u);
  EXPECT_EQ(final_reads.lost.load(), 0u);
  EXPECT_EQ(final_reads.wrong.load(), 0u);
  EXPECT_EQ(reads.wrong.load(), 0u);
  EXPECT_EQ(reads.stale.load(), 0u);
}

}  // namespace
}  // namespace kvf::testing
