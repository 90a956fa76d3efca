// The two-sided lane (docs/data-path.md, "Two-sided lane") through real
// agents: over UCX's TCP transport, where one-sided access is emulated, a
// client on the automatic lane has the agents send a get's bytes
// (FetchRequest, op="fetch" in the agents' /metrics) and sends a put's bytes
// into receives the agents post (StoreRequest, op="store"); forced one-sided
// it reads and writes the arena as before. Both are byte-exact, and per-block
// errors (not found, a buffer too small, read-your-writes, ack=all) come back
// as on the one-sided lane.
#include <string>

#include "absl/strings/str_cat.h"
#include <vector>

#include "client/client.h"
#include "gtest/gtest.h"
#include "tests/cluster/cluster_fixture.h"
#include "tests/cluster/scrape.h"

namespace kvf::testing {
namespace {

class DataLaneTest : public ClusterTest {
 protected:
  LocalClusterOptions ClusterOptions() override {
    LocalClusterOptions o;
    o.agents = 3;
    o.replication = 2;
    o.ucx_tls = "tcp";  // one-sided access is emulated: the automatic lane is two-sided
    return o;
  }

  std::unique_ptr<Client> Connect(DataLane lane) {
    ClientOptions o = MakeClientOptions();
    o.data_lane = lane;
    auto c = Client::Connect(o);
    EXPECT_TRUE(c.ok()) << c.status();
    return c.ok() ? std::move(*c) : nullptr;
  }

  // Requests of `op` the agents served, all agents together.
  double Served(const std::string& op) {
    double total = 0;
    for (const AgentProcess& a : cluster_->agents()) {
      const double v =
          Metric(a.http, absl::StrCat("kvf_agent_request_seconds_count{op=\"", op, "\"}"));
      EXPECT_GE(v, 0) << a.http;
      total += v;
    }
    return total;
  }
  double Fetches() { return Served("fetch"); }

  // Puts `n` random blocks of a fresh namespace; returns the chain and data.
  std::vector<BlockKey> PutBlocks(const Namespace& ns, size_t n,
                                  std::vector<std::vector<uint8_t>>* data) {
    std::vector<BlockKey> chain = RandomChain(ns, n);
    *data = RandomBlocks(n, ns.BlockBytes());
    auto put = client_->BatchPut(ns, chain, 0, Sources(*data));
    EXPECT_TRUE(put.ok() && put->all_ok()) << (put.ok() ? put->FirstError() : put.status());
    return chain;
  }
};

TEST_F(DataLaneTest, AutomaticLaneFetchesOverTcpByteExact) {
  auto ns = client_->RegisterNamespace(Spec("lane-auto", 2, 2, 64, 64));  // 64 KiB blocks
  ASSERT_TRUE(ns.ok()) << ns.status();
  std::vector<std::vector<uint8_t>> data;
  const double stores = Served("store");
  const std::vector<BlockKey> chain = PutBlocks(*ns, 48, &data);
  EXPECT_GT(Served("store"), stores) << "no put took the two-sided lane";
  const double before = Fetches();
  std::vector<std::vector<uint8_t>> out(chain.size(), std::vector<uint8_t>(ns->BlockBytes()));
  auto got = client_->BatchGet(*ns, chain, 0, Sinks(out));  // the fixture's client: kAuto
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_TRUE(got->all_ok()) << got->FirstError();
  for (size_t i = 0; i < chain.size(); ++i) {
    EXPECT_EQ(out[i], data[i]) << "block " << i;
    EXPECT_EQ(got->blocks[i].size, ns->BlockBytes());
  }
  EXPECT_GT(Fetches(), before) << "no get took the two-sided lane";
}

TEST_F(DataLaneTest, ForcedOneSidedReadsTheArenaAsBefore) {
  auto one = Connect(DataLane::kOneSided);
  ASSERT_NE(one, nullptr);
  auto ns = one->RegisterNamespace(Spec("lane-one", 1, 2, 64, 32));
  ASSERT_TRUE(ns.ok());
  std::vector<BlockKey> chain = RandomChain(*ns, 16);
  auto data = RandomBlocks(16, ns->BlockBytes());
  ASSERT_TRUE(one->BatchPut(*ns, chain, 0, Sources(data))->all_ok());
  const double before = Fetches();
  std::vector<std::vector<uint8_t>> out(16, std::vector<uint8_t>(ns->BlockBytes()));
  auto got = one->BatchGet(*ns, chain, 0, Sinks(out));
  ASSERT_TRUE(got.ok() && got->all_ok());
  EXPECT_EQ(out, data);
  EXPECT_EQ(Fetches(), before);
  // (Stores are not compared: the primaries' pushes to replicas take the
  // two-sided lane over TCP whatever this client chose.)
}

TEST_F(DataLaneTest, PerBlockErrorsAsOnTheOneSidedLane) {
  auto ns = client_->RegisterNamespace(Spec("lane-errors", 1, 2, 64, 16));
  ASSERT_TRUE(ns.ok());
  std::vector<std::vector<uint8_t>> data;
  std::vector<BlockKey> chain = PutBlocks(*ns, 8, &data);
  // Blocks 8..11 were never put: NOT_FOUND for them, bytes for the rest.
  std::vector<BlockKey> longer = chain;
  const std::vector<BlockKey> extra = RandomChain(*ns, 4);
  longer.insert(longer.end(), extra.begin(), extra.end());
  std::vector<std::vector<uint8_t>> out(12, std::vector<uint8_t>(ns->BlockBytes()));
  auto got = client_->BatchGet(*ns, longer, 0, Sinks(out));
  ASSERT_TRUE(got.ok()) << got.status();
  for (size_t i = 0; i < 12; ++i) {
    if (i < 8) {
      EXPECT_TRUE(got->blocks[i].status.ok()) << i << ": " << got->blocks[i].status;
      EXPECT_EQ(out[i], data[i]) << i;
    } else {
      EXPECT_EQ(got->blocks[i].status.code(), absl::StatusCode::kNotFound) << i;
    }
  }
  // A buffer smaller than the stored block: INVALID_ARGUMENT, the others fine.
  std::vector<uint8_t> small(ns->BlockBytes() / 2), full(ns->BlockBytes());
  std::vector<BlockBuffer> sinks = {{small.data(), small.size()}, {full.data(), full.size()}};
  auto mixed = client_->BatchGet(*ns, chain, 0, sinks);
  ASSERT_TRUE(mixed.ok()) << mixed.status();
  EXPECT_EQ(mixed->blocks[0].status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(mixed->blocks[1].status.ok()) << mixed->blocks[1].status;
  EXPECT_EQ(full, data[1]);
  // The lane keeps working after those.
  std::vector<std::vector<uint8_t>> again(8, std::vector<uint8_t>(ns->BlockBytes()));
  auto ok = client_->BatchGet(*ns, chain, 0, Sinks(again));
  ASSERT_TRUE(ok.ok() && ok->all_ok());
  for (size_t i = 0; i < 8; ++i) EXPECT_EQ(again[i], data[i]);
}

TEST_F(DataLaneTest, AckAllPutsReachEveryOwnerOnTheTwoSidedLane) {
  auto ns = client_->RegisterNamespace(Spec("lane-ackall", 1, 2, 64, 16));
  ASSERT_TRUE(ns.ok());
  std::vector<BlockKey> chain = RandomChain(*ns, 6);
  auto data = RandomBlocks(6, ns->BlockBytes());
  PutOptions all;
  all.has_ack = true;
  all.ack = AckMode::kAll;
  auto put = client_->BatchPut(*ns, chain, 0, Sources(data), all);
  ASSERT_TRUE(put.ok()) << put.status();
  ASSERT_TRUE(put->all_ok()) << put->FirstError();
  auto lookup = client_->Lookup(*ns, chain);
  ASSERT_TRUE(lookup.ok());
  for (const BlockHolding& h : lookup->blocks) EXPECT_EQ(h.nodes.size(), 2u);
  std::vector<std::vector<uint8_t>> out(6, std::vector<uint8_t>(ns->BlockBytes()));
  auto got = client_->BatchGet(*ns, chain, 0, Sinks(out));
  ASSERT_TRUE(got.ok() && got->all_ok());
  EXPECT_EQ(out, data);
}

TEST_F(DataLaneTest, ReadYourWritesOnTheTwoSidedLane) {
  auto ns = client_->RegisterNamespace(Spec("lane-ryw", 1, 2, 64, 16));
  ASSERT_TRUE(ns.ok());
  std::vector<BlockKey> chain = RandomChain(*ns, 1);
  PutOptions mut;
  mut.is_mutable = true;
  auto first = RandomBlocks(1, ns->BlockBytes());
  auto v1 = client_->Put(*ns, chain, 0, first[0].data(), first[0].size(), mut);
  ASSERT_TRUE(v1.ok()) << v1.status();
  auto second = RandomBlocks(1, ns->BlockBytes());
  auto v2 = client_->Put(*ns, chain, 0, second[0].data(), second[0].size(), mut);
  ASSERT_TRUE(v2.ok()) << v2.status();
  GetOptions at_v2;
  at_v2.has_min_version = true;
  at_v2.min_version = *v2;
  std::vector<uint8_t> out(ns->BlockBytes());
  auto got = client_->Get(*ns, chain, 0, out.data(), out.size(), at_v2);
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_TRUE(got->status.ok()) << got->status;
  EXPECT_EQ(got->version, *v2);
  EXPECT_EQ(out, second[0]);
}

}  // namespace
}  // namespace kvf::testing
