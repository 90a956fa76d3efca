// Global eviction through real processes: the coordinator's age cutoff
// decides how many bytes each agent frees, the agent's own eviction policy
// decides which blocks (docs/agent.md, "Global eviction").
#include <map>
#include <vector>

#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "tests/cluster/cluster_fixture.h"

namespace kvf::testing {
namespace {

class GlobalEviction : public ClusterTest {
 protected:
  // Two agents of 32 MiB, no replicas; global eviction from half full down
  // to a third; agents evict FIFO (insertion order: reads do not count), and
  // hold nothing after lookups (a hold would pin what the test looks at).
  LocalClusterOptions ClusterOptions() override {
    LocalClusterOptions o;
    o.agents = 2;
    o.replication = 1;
    o.host_bytes = 32ull << 20;
    o.extra_coordinator_flags = {"--high_watermark=0.5", "--low_watermark=0.3"};
    o.extra_agent_flags = {"--eviction_policy=fifo", "--lookup_hold_ms=0"};
    return o;
  }
};

TEST_F(GlobalEviction, TheCutoffSizesItAndEachNodesPolicyChoosesTheBlocks) {
  // 256 KiB blocks, each placed by its own key.
  auto ns = client_->RegisterNamespace(Spec("global", 2, 8, 128, 32, /*segment_blocks=*/1));
  ASSERT_TRUE(ns.ok()) << ns.status();
  ASSERT_EQ(ns->BlockBytes(), 256u << 10);
  const size_t kBlocks = 160;  // 40 MiB of 64: past the high watermark
  std::vector<BlockKey> chain = RandomChain(*ns, kBlocks);
  auto blocks = RandomBlocks(kBlocks, ns->BlockBytes());
  // Two puts, one after the other: every node inserts its blocks of the first
  // half before any of the second (within one batch the commit order is the
  // client's threads').
  const auto all = Sources(blocks);
  for (size_t begin : {size_t{0}, kBlocks / 2}) {
    auto put = client_->BatchPut(*ns, chain, begin,
                                 absl::MakeConstSpan(all).subspan(begin, kBlocks / 2));
    ASSERT_TRUE(put.ok()) << put.status();
    ASSERT_TRUE(put->all_ok()) << put->FirstError();
  }
  auto look = client_->Lookup(*ns, chain);
  ASSERT_TRUE(look.ok() && look->prefix == kBlocks);
  std::vector<NodeId> node_of(kBlocks);
  for (size_t i = 0; i < kBlocks; ++i) node_of[i] = look->blocks[i].nodes.at(0);
  // Read the first 40 now: by age they become the newest, but FIFO ignores
  // reads, so their nodes' policy evicts them with the rest of the first half.
  std::vector<std::vector<uint8_t>> out(40, std::vector<uint8_t>(ns->BlockBytes()));
  auto got = client_->BatchGet(*ns, chain, 0, Sinks(out));
  ASSERT_TRUE(got.ok() && got->all_ok());

  // The coordinator computes a cutoff at a heartbeat and the agents apply it
  // at their next tick: wait for the cluster to go under the high watermark
  // (half of 64 MiB: 128 blocks).
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  std::vector<bool> held;
  size_t count = kBlocks;
  while (absl::Now() < deadline) {
    auto e = client_->Exists(*ns, chain);
    ASSERT_TRUE(e.ok()) << e.status();
    held = *e;
    count = 0;
    for (bool h : held) count += h ? 1 : 0;
    if (count <= 128) break;
    absl::SleepFor(absl::Milliseconds(100));  // polling a condition, with a deadline
  }
  ASSERT_LE(count, 128u) << "global eviction did not bring the cluster under its high watermark";
  EXPECT_GE(count, 40u) << "it freed far more than the low watermark asks";

  // FIFO on every node: a node that evicted any block of the second half
  // evicted every one of its first half, read or not. By age alone the 40
  // blocks just read would have outlived older second-half blocks.
  std::map<NodeId, std::pair<size_t, size_t>> first_half_left, second_half_gone;
  size_t read_survivors = 0;
  for (size_t i = 0; i < kBlocks; ++i) {
    if (i < kBlocks / 2 && held[i]) ++first_half_left[node_of[i]].first;
    if (i >= kBlocks / 2 && !held[i]) ++second_half_gone[node_of[i]].first;
    if (i < 40 && held[i]) ++read_survivors;
  }
  for (const auto& [node, gone] : second_half_gone) {
    EXPECT_EQ(first_half_left[node].first, 0u)
        << "node " << node << " evicted " << gone.first << " second-half blocks but kept "
        << first_half_left[node].first << " of its first half: not its policy's order";
  }
  EXPECT_LT(read_survivors, 40u) << "every block just read survived: the victims were chosen by age";
}

}  // namespace
}  // namespace kvf::testing
