// The disk tier through a real agent: blocks evicted from the host tier are
// served from disk byte-exact, and an agent SIGKILLed and restarted over the
// same --disk_path serves them again.
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tests/cluster/cluster_fixture.h"
#include "tests/cluster/scrape.h"

namespace kvf::testing {
namespace {

class DiskRestartTest : public ClusterTest {
 protected:
  LocalClusterOptions ClusterOptions() override {
    const char* tmp = std::getenv("TMPDIR");
    disk_dir_ = std::string(tmp && *tmp ? tmp : "/tmp") + "/kvf-disk-restart-XXXXXX";
    if (::mkdtemp(disk_dir_.data()) == nullptr) disk_dir_.clear();
    LocalClusterOptions o;
    o.agents = 1;
    o.replication = 1;
    o.host_bytes = 16ull << 20;  // 256 blocks of 64 KiB
    o.extra_agent_flags = {absl::StrCat("--disk_path=", disk_dir_),
                           absl::StrCat("--disk_bytes=", 128ull << 20)};
    return o;
  }
  void SetUp() override {
    ClusterTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    ASSERT_FALSE(disk_dir_.empty());
    auto ns = client_->RegisterNamespace(Spec("disk", 4, 4, 64, 16));  // 64 KiB blocks
    ASSERT_TRUE(ns.ok()) << ns.status();
    ns_ = *ns;
  }
  void TearDown() override {
    ClusterTest::TearDown();
    std::error_code ec;
    if (!disk_dir_.empty()) std::filesystem::remove_all(disk_dir_, ec);
  }

  // Reads every chain back; the number of blocks missing or different.
  size_t ReadAll(Client& client) {
    size_t bad = 0;
    for (size_t s = 0; s < chains_.size(); ++s) {
      std::vector<std::vector<uint8_t>> got(data_[s].size(),
                                            std::vector<uint8_t>(ns_.BlockBytes()));
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

  std::string disk_dir_;
  Namespace ns_;
  std::vector<std::vector<BlockKey>> chains_;
  std::vector<std::vector<std::vector<uint8_t>>> data_;
};

TEST_F(DiskRestartTest, EvictedBlocksAreServedFromDiskAndSurviveSigkill) {
  // 384 blocks of 64 KiB: half again the host tier, so a third go to disk.
  for (int s = 0; s < 12; ++s) {
    chains_.push_back(RandomChain(ns_, 32));
    data_.push_back(RandomBlocks(32, ns_.BlockBytes()));
    auto put = client_->BatchPut(ns_, chains_.back(), 0, Sources(data_.back()));
    ASSERT_TRUE(put.ok()) << put.status();
    ASSERT_TRUE(put->all_ok()) << put->FirstError();
  }
  const std::string http = cluster_->agents()[0].http;
  EXPECT_GT(Metric(http, "kvf_agent_disk_demotions_total"), 0);
  EXPECT_EQ(Metric(http, "kvf_agent_blocks"), 384);
  EXPECT_EQ(ReadAll(*client_), 0u);
  EXPECT_GT(Metric(http, "kvf_agent_disk_promotions_total"), 0);
  EXPECT_EQ(Metric(http, "kvf_agent_disk_corrupt_records_total"), 0);

  // SIGKILL: nothing flushed, nothing left gracefully. Once the coordinator
  // has marked the node down, a new agent over the same directory joins.
  const NodeId dead = cluster_->agents()[0].node;
  ASSERT_TRUE(cluster_->KillAgent(0).ok());
  ASSERT_TRUE(cluster_
                  ->WaitForMap(
                      [&](const ClusterMap& m) {
                        const NodeInfo* n = m.Find(dead);
                        return n == nullptr || n->state == NodeState::kDown;
                      },
                      absl::Now() + absl::Seconds(60))
                  .ok());
  auto restarted = cluster_->StartAgent();
  ASSERT_TRUE(restarted.ok()) << restarted.status();
  const AgentProcess& agent = cluster_->agents()[*restarted];
  ASSERT_TRUE(cluster_
                  ->WaitForMap(
                      [&](const ClusterMap& m) {
                        const NodeInfo* n = m.Find(agent.node);
                        return n != nullptr && n->state == NodeState::kActive;
                      },
                      absl::Now() + absl::Seconds(60))
                  .ok());
  // What was on disk when it died is back (blocks read back from disk kept
  // their record, so they return too); blocks only ever in memory are lost.
  const double recovered = Metric(agent.http, "kvf_agent_disk_recovered_blocks");
  EXPECT_GE(recovered, 384 - 256);
  // A client on the new map gets them back, byte for byte.
  auto client = Client::Connect(MakeClientOptions());
  ASSERT_TRUE(client.ok()) << client.status();
  const size_t bad = ReadAll(**client);
  std::cout << "recovered " << recovered << " blocks from disk; " << bad
            << " of 384 lost with the host tier\n";
  EXPECT_EQ(bad, 384 - static_cast<size_t>(recovered));
  EXPECT_EQ(Metric(agent.http, "kvf_agent_disk_corrupt_records_total"), 0);
}

}  // namespace
}  // namespace kvf::testing
