// kvfctl against real processes on loopback: a kvf-coordinator and kvf-agent
// children (tests/cluster/local_cluster.h), kvfctl run as a subprocess, its
// exit status, stdout and stderr checked. Nothing sleeps to synchronise; the
// children die with the test (PR_SET_PDEATHSIG) and are killed by pid in
// destructors.
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cctype>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <variant>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "client/client.h"
#include "common/block_hash.h"
#include "common/status_macros.h"
#include "gtest/gtest.h"
#include "tests/cluster/local_cluster.h"
#include "tests/tools/kvfctl_harness.h"

namespace kvf::testing {
namespace {

// ---- Without a cluster.

TEST(KvfctlCli, UsageErrorsExitTwo) {
  TempDir dir;
  const std::vector<std::vector<std::string>> bad = {
      {},
      {"frobnicate"},
      {"--token=t", "nodes", "extra"},
      {"--token=t", "drain"},
      {"--token=t", "drain", "zero"},
      {"--token=t", "drain", "0"},
      {"--token=t", "--bogus_flag", "status"},
      {"--token=t", "evict"},
      {"--token=t", "evict", "--to=150"},
      {"--token=t", "placement"},
      {"--token=t", "placement", "abc", "--tokens=/nonexistent"},
      {"--token=t", "placement", "0123", "--model=m"},  // neither a key nor 0x...
      {"--token=t", "placement", "--tokens=/nonexistent/file", "--model=m"},
      {"--token=t", "--token_file=/dev/null", "status"},
      {"--token=t", "--timeout", "nonsense", "drain", "1"},
      {"status"},                     // no token at all
  };
  for (const auto& args : bad) {
    CtlResult r = RunCtl(dir.path(), args);
    EXPECT_EQ(r.code, 2) << absl::StrJoin(args, " ") << "\n" << Describe(r);
    EXPECT_TRUE(absl::StrContains(r.err, "kvfctl")) << Describe(r);
  }
  CtlResult help = RunCtl(dir.path(), {"--help"});
  EXPECT_EQ(help.code, 0) << Describe(help);
  EXPECT_TRUE(absl::StrContains(help.out, "drain NODE")) << Describe(help);
}

TEST(KvfctlCli, UnreachableCoordinatorExitsFive) {
  TempDir dir;
  const std::string addr = absl::StrCat("127.0.0.1:", UnusedPort());
  CtlResult r = RunCtl(dir.path(), {absl::StrCat("--coordinator=", addr), "--token=t", "status"});
  EXPECT_EQ(r.code, 5) << Describe(r);
  EXPECT_TRUE(absl::StrContains(r.err, absl::StrCat("is kvf-coordinator running at ", addr)))
      << Describe(r);
  // The same through KVF_COORDINATOR / KVF_TOKEN.
  CtlResult env =
      RunCtl(dir.path(), {"nodes"}, {absl::StrCat("KVF_COORDINATOR=", addr), "KVF_TOKEN=t"});
  EXPECT_EQ(env.code, 5) << Describe(env);
  EXPECT_LT(r.took, absl::Seconds(10));
}

// ---- Against a cluster of real processes.

class KvfctlCluster : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!AgentBuilt()) return;
    LocalClusterOptions o;
    o.agents = 3;
    o.replication = 2;
    auto c = LocalCluster::Start(o);
    ASSERT_TRUE(c.ok()) << c.status();
    cluster_ = c->release();
  }
  static void TearDownTestSuite() {
    delete cluster_;
    cluster_ = nullptr;
  }
  void SetUp() override {
    if (!AgentBuilt()) GTEST_SKIP() << "kvf-agent is not built; skipping cluster tests";
    ASSERT_NE(cluster_, nullptr);
  }
  void TearDown() override {
    if (HasFailure() && cluster_ != nullptr) {
      for (const AgentProcess& a : cluster_->agents()) {
        std::cerr << "---- " << a.log_prefix << ".err (node " << a.node << ")\n"
                  << cluster_->TailLog(a.log_prefix, 3000) << "\n";
      }
    }
  }

  // kvfctl against the cluster with the right token.
  static CtlResult Ctl(std::vector<std::string> args) {
    args.insert(args.begin(), {absl::StrCat("--coordinator=", cluster_->coordinator()),
                               absl::StrCat("--token=", cluster_->token())});
    return RunCtl(cluster_->dir(), args);
  }
  static Json ParseJson(const CtlResult& r) {
    Json j;
    EXPECT_TRUE(JsonReader(r.out).Parse(&j)) << "not one JSON value:\n" << Describe(r);
    return j;
  }

  static LocalCluster* cluster_;
};
LocalCluster* KvfctlCluster::cluster_ = nullptr;

TEST_F(KvfctlCluster, NodesJsonListsTheAgentsActive) {
  CtlResult r = Ctl({"--json", "nodes"});
  ASSERT_EQ(r.code, 0) << Describe(r);
  Json j = ParseJson(r);
  ASSERT_TRUE(j["nodes"].is_array()) << Describe(r);
  std::map<uint32_t, const Json*> by_id;
  for (const Json& n : j["nodes"].array()) by_id[static_cast<uint32_t>(n["id"].num())] = &n;
  for (const AgentProcess& a : cluster_->agents()) {
    ASSERT_TRUE(by_id.count(a.node)) << "node " << a.node << "\n" << Describe(r);
    const Json& n = *by_id[a.node];
    EXPECT_EQ(n["state"].str(), "active");
    EXPECT_EQ(n["address"].str(), a.control);
    EXPECT_EQ(n["failure_domain"].str(), a.failure_domain);
    EXPECT_EQ(n["capacity_bytes"].num(), 64.0 * 1024 * 1024);
    EXPECT_EQ(n["device_bytes"].num(), 0) << "no GPU tier on these agents";
  }
  EXPECT_GT(j["epoch"].num(), 0);

  CtlResult table = Ctl({"nodes"});
  ASSERT_EQ(table.code, 0) << Describe(table);
  EXPECT_TRUE(absl::StrContains(table.out, "FAILURE DOMAIN")) << Describe(table);
  EXPECT_TRUE(absl::StrContains(table.out, "DEVICE")) << Describe(table);
  EXPECT_TRUE(absl::StrContains(table.out, cluster_->agents()[0].control)) << Describe(table);
}

TEST_F(KvfctlCluster, StatusPrintsTheEpoch) {
  auto map = cluster_->GetClusterMap();
  ASSERT_TRUE(map.ok()) << map.status();
  CtlResult r = Ctl({"status"});
  ASSERT_EQ(r.code, 0) << Describe(r);
  EXPECT_TRUE(absl::StrContains(r.out, absl::StrCat("epoch            ", map->epoch)))
      << Describe(r);
  EXPECT_TRUE(absl::StrContains(r.out, "active 3")) << Describe(r);
  EXPECT_TRUE(absl::StrContains(r.out, "usage            n/a: pass --coordinator_http"))
      << Describe(r);
  // Hit rate from the agents' HTTP addresses in the map.
  EXPECT_TRUE(absl::StrContains(r.out, "hit rate")) << Describe(r);
  EXPECT_FALSE(absl::StrContains(r.out, "pass --agent_http")) << Describe(r);

  // With the HTTP endpoints: usage and hit rate are read, not guessed.
  std::string agents;
  for (const AgentProcess& a : cluster_->agents()) {
    absl::StrAppend(&agents, agents.empty() ? "" : ",", a.http);
  }
  CtlResult full =
      Ctl({"--json", "status", absl::StrCat("--coordinator_http=", cluster_->coordinator_http()),
           absl::StrCat("--agent_http=", agents)});
  ASSERT_EQ(full.code, 0) << Describe(full);
  Json j = ParseJson(full);
  EXPECT_EQ(j["epoch"].num(), static_cast<double>(map->epoch));
  EXPECT_EQ(j["nodes_by_state"]["active"].num(), 3);
  EXPECT_EQ(j["capacity_bytes"].num(), 3 * 64.0 * 1024 * 1024);
  EXPECT_FALSE(j["used_bytes"].is_null()) << Describe(full);
  EXPECT_FALSE(j["hit_rate"].is_null()) << Describe(full);
}

TEST_F(KvfctlCluster, WrongTokenExitsFourWithHint) {
  CtlResult r = RunCtl(cluster_->dir(), {absl::StrCat("--coordinator=", cluster_->coordinator()),
                                         "--token=not-the-token", "nodes"});
  EXPECT_EQ(r.code, 4) << Describe(r);
  EXPECT_TRUE(absl::StrContains(r.err, "check --token/--token_file")) << Describe(r);

  // A token file with the right token works (whitespace around it is ignored).
  const std::string file = cluster_->dir() + "/token";
  std::ofstream(file) << cluster_->token() << "\n";
  CtlResult ok = RunCtl(cluster_->dir(), {absl::StrCat("--coordinator=", cluster_->coordinator()),
                                          absl::StrCat("--token_file=", file), "nodes"});
  EXPECT_EQ(ok.code, 0) << Describe(ok);
}

TEST_F(KvfctlCluster, PlacementOfTokensGivesLiveOwnersPerSegment) {
  // 100 tokens, 4 tokens a block, 8 blocks a segment: 25 blocks, 4 segments.
  const std::string file = cluster_->dir() + "/tokens.txt";
  {
    std::ofstream out(file);
    for (int i = 0; i < 100; ++i) out << (i * 7919 % 32000) << (i % 10 == 9 ? "\n" : " ");
  }
  CtlResult r = Ctl({"--json", "placement", absl::StrCat("--tokens=", file), "--model=llama-test",
                     "--block_tokens=4", "--segment_blocks=8"});
  ASSERT_EQ(r.code, 0) << Describe(r);
  Json j = ParseJson(r);
  std::set<uint32_t> live;
  for (const AgentProcess& a : cluster_->agents()) live.insert(a.node);
  EXPECT_EQ(j["replication"].num(), 2);
  EXPECT_EQ(j["blocks"].num(), 25);
  const auto& segs = j["segments"].array();
  ASSERT_EQ(segs.size(), 4u) << Describe(r);
  for (size_t s = 0; s < segs.size(); ++s) {
    EXPECT_EQ(segs[s]["segment"].num(), static_cast<double>(s));
    EXPECT_EQ(segs[s]["first_block"].num(), 8.0 * s);
    EXPECT_TRUE(absl::StartsWith(segs[s]["placement_hash"].str(), "0x"));
    const auto& owners = segs[s]["owners"].array();
    ASSERT_EQ(owners.size(), 2u) << Describe(r);
    std::set<uint32_t> distinct;
    std::set<std::string> domains;
    for (const Json& o : owners) {
      const uint32_t id = static_cast<uint32_t>(o["id"].num());
      EXPECT_TRUE(live.count(id)) << id;
      EXPECT_EQ(o["state"].str(), "active");
      distinct.insert(id);
      domains.insert(o["failure_domain"].str());
    }
    EXPECT_EQ(distinct.size(), 2u);
    EXPECT_EQ(domains.size(), 2u);  // one agent per domain
    EXPECT_TRUE(owners[0]["primary"].boolean());
  }

  // The same head key, asked for alone, has the same owners; so does its hash.
  const std::string head = segs[1]["head_key"].str();
  CtlResult one = Ctl({"--json", "placement", head, "--model=llama-test", "--block_tokens=4",
                       "--segment_blocks=8"});
  ASSERT_EQ(one.code, 0) << Describe(one);
  Json jo = ParseJson(one);
  ASSERT_EQ(jo["segments"].array().size(), 1u);
  EXPECT_EQ(jo["segments"].array()[0]["placement_hash"].str(), segs[1]["placement_hash"].str());
  CtlResult by_hash = Ctl({"placement", segs[1]["placement_hash"].str()});
  ASSERT_EQ(by_hash.code, 0) << Describe(by_hash);
  const uint32_t primary = static_cast<uint32_t>(segs[1]["owners"].array()[0]["id"].num());
  EXPECT_TRUE(absl::StrContains(by_hash.out, absl::StrCat(primary, " (primary, active")))
      << Describe(by_hash);

  // A namespace that does not validate is a usage error.
  CtlResult no_model = Ctl({"placement", head});
  EXPECT_EQ(no_model.code, 2) << Describe(no_model);
}

TEST_F(KvfctlCluster, MetricsOfANodeNeedItsHttpAddress) {
  const AgentProcess& a = cluster_->agents()[0];
  // The map carries the agent's HTTP address; --http overrides it.
  CtlResult from_map = Ctl({"metrics", absl::StrCat(a.node)});
  ASSERT_EQ(from_map.code, 0) << Describe(from_map);
  EXPECT_TRUE(absl::StrContains(from_map.out, "kvf_agent_blocks")) << Describe(from_map);
  CtlResult r = Ctl({"metrics", absl::StrCat(a.node), absl::StrCat("--http=", a.http)});
  ASSERT_EQ(r.code, 0) << Describe(r);
  EXPECT_TRUE(absl::StrContains(r.out, "kvf_agent_hits_total")) << Describe(r);
  // Another node's address is caught by its /healthz.
  const AgentProcess& b = cluster_->agents()[1];
  CtlResult wrong = Ctl({"metrics", absl::StrCat(a.node), absl::StrCat("--http=", b.http)});
  EXPECT_EQ(wrong.code, 1) << Describe(wrong);
  CtlResult json =
      Ctl({"--json", "metrics", absl::StrCat(a.node), absl::StrCat("--http=", a.http)});
  ASSERT_EQ(json.code, 0) << Describe(json);
  EXPECT_GE(ParseJson(json)["metrics"]["kvf_agent_blocks"].num(), 0);
}

TEST_F(KvfctlCluster, JoinPrintsTheAgentCommand) {
  const std::string file = cluster_->dir() + "/join-token";
  std::ofstream(file) << cluster_->token();
  CtlResult r = RunCtl(cluster_->dir(),
                       {absl::StrCat("--coordinator=", cluster_->coordinator()),
                        absl::StrCat("--token_file=", file), "join", "--", "--failure_domain=r9"});
  ASSERT_EQ(r.code, 0) << Describe(r);
  EXPECT_EQ(r.out, absl::StrCat("kvf-agent --coordinator=", cluster_->coordinator(),
                                " --token_file=", file, " --failure_domain=r9\n"))
      << Describe(r);

  // With the token in KVF_TOKEN the command refers to the variable rather
  // than echoing the secret.
  CtlResult env = RunCtl(cluster_->dir(), {"--json", "join"},
                         {absl::StrCat("KVF_COORDINATOR=", cluster_->coordinator()),
                          absl::StrCat("KVF_TOKEN=", cluster_->token())});
  ASSERT_EQ(env.code, 0) << Describe(env);
  Json j = ParseJson(env);
  EXPECT_EQ(j["command"].str(), absl::StrCat("kvf-agent --coordinator=", cluster_->coordinator(),
                                             " --token=\"$KVF_TOKEN\""));
  EXPECT_FALSE(absl::StrContains(env.out, cluster_->token())) << Describe(env);

  // A wrong token is caught before the command is printed.
  CtlResult bad = RunCtl(cluster_->dir(), {absl::StrCat("--coordinator=", cluster_->coordinator()),
                                           "--token=wrong", "join"});
  EXPECT_EQ(bad.code, 4) << Describe(bad);
  EXPECT_EQ(bad.out, "");
}

TEST_F(KvfctlCluster, EvictNeedsUsageAndStopsWhenBelowTarget) {
  CtlResult no_http = Ctl({"evict", "--to=50"});
  EXPECT_EQ(no_http.code, 2) << Describe(no_http);
  EXPECT_TRUE(absl::StrContains(no_http.err, "--coordinator_http")) << Describe(no_http);
  CtlResult dead =
      Ctl({"evict", "--to=50", absl::StrCat("--coordinator_http=127.0.0.1:", UnusedPort())});
  EXPECT_NE(dead.code, 0) << Describe(dead);
  EXPECT_TRUE(absl::StrContains(dead.err, "cannot read cluster usage")) << Describe(dead);
  // An idle cluster is below any target: nothing to do.
  CtlResult r = Ctl({"--json", "evict", "--to", "90",
                     absl::StrCat("--coordinator_http=", cluster_->coordinator_http())});
  ASSERT_EQ(r.code, 0) << Describe(r);
  EXPECT_TRUE(ParseJson(r)["reached"].boolean()) << Describe(r);
}

TEST_F(KvfctlCluster, IllegalTransitionFailsWithExitOne) {
  const uint32_t node = cluster_->agents()[0].node;
  CtlResult r = Ctl({"undrain", absl::StrCat(node)});  // it is active, not draining
  EXPECT_EQ(r.code, 1) << Describe(r);
  EXPECT_TRUE(absl::StrContains(r.err, "Undrain")) << Describe(r);
  CtlResult missing = Ctl({"drain", "999"});
  EXPECT_EQ(missing.code, 1) << Describe(missing);
  EXPECT_TRUE(absl::StrContains(missing.err, "kvfctl nodes")) << Describe(missing);
}

// A client of the test's cluster and a namespace of 16 KiB blocks
// (2 layers x 2 heads x 64 x 16 tokens, fp16), 4 blocks per segment.
struct TestClient {
  std::unique_ptr<Client> client;
  NamespaceSpec spec;
  Namespace ns;
};
absl::StatusOr<TestClient> ConnectWithNamespace(const LocalCluster& cluster, const std::string& model) {
  ClientOptions co;
  co.coordinator = cluster.coordinator();
  co.token = cluster.token();
  TestClient t;
  KVF_ASSIGN_OR_RETURN(t.client, Client::Connect(co));
  t.spec.model_id = model;
  t.spec.layout = KvLayout{.num_layers = 2, .num_kv_heads = 2, .head_dim = 64, .block_tokens = 16,
                           .dtype = DType::kFp16};
  t.spec.segment_blocks = 4;
  KVF_ASSIGN_OR_RETURN(t.ns, t.client->RegisterNamespace(t.spec));
  return t;
}

// Draining changes the cluster: its own cluster.
class KvfctlDrain : public KvfctlCluster {
 protected:
  static void SetUpTestSuite() {}
  static void TearDownTestSuite() {}
  void SetUp() override {
    if (!AgentBuilt()) GTEST_SKIP() << "kvf-agent is not built; skipping cluster tests";
    LocalClusterOptions o;
    o.agents = 3;
    o.replication = 2;
    o.lease_ms = LeaseMs();
    auto c = LocalCluster::Start(o);
    ASSERT_TRUE(c.ok()) << c.status();
    owned_ = std::move(*c);
    cluster_ = owned_.get();
  }
  void TearDown() override {
    KvfctlCluster::TearDown();
    cluster_ = nullptr;
    owned_.reset();
  }
  virtual uint64_t LeaseMs() const { return 3000; }
  std::unique_ptr<LocalCluster> owned_;
};

// A lease long enough that a stopped agent stays `active` (not `down`) for
// the whole test, however loaded the machine.
class KvfctlDrainLongLease : public KvfctlDrain {
 protected:
  uint64_t LeaseMs() const override { return 60000; }
};

NodeState StateOf(const LocalCluster& c, NodeId id) {
  auto map = c.GetClusterMap();
  if (!map.ok()) return NodeState::kJoining;
  const NodeInfo* n = map->Find(id);
  return n == nullptr ? NodeState::kJoining : n->state;
}

TEST_F(KvfctlDrain, DrainWaitsUntilTheNodeHasLeft) {
  const NodeId node = cluster_->agents()[2].node;
  CtlResult r = Ctl({"drain", absl::StrCat(node), "--poll=50ms"});
  ASSERT_EQ(r.code, 0) << Describe(r);
  EXPECT_TRUE(absl::StrContains(r.out, "active -> draining")) << Describe(r);
  EXPECT_TRUE(absl::StrContains(r.out, "left the cluster")) << Describe(r);
  EXPECT_EQ(StateOf(*cluster_, node), NodeState::kLeft);

  // Draining a node that has left is done already.
  CtlResult again = Ctl({"--json", "drain", absl::StrCat(node)});
  ASSERT_EQ(again.code, 0) << Describe(again);
  EXPECT_EQ(ParseJson(again)["state"].str(), "left");
}

TEST_F(KvfctlDrain, NoWaitReturnsAtOnceAndUndrainCancels) {
  const NodeId node = cluster_->agents()[1].node;
  CtlResult r = Ctl({"--json", "drain", absl::StrCat(node), "--no-wait"});
  ASSERT_EQ(r.code, 0) << Describe(r);
  Json j = ParseJson(r);
  EXPECT_FALSE(j["waited"].boolean());
  EXPECT_TRUE(j["state"].str() == "draining" || j["state"].str() == "left") << Describe(r);
  // It did not wait for the migration (the RPC itself may take seconds on a
  // loaded machine: the coordinator hands tasks to agents before answering).
  EXPECT_LT(r.took, absl::Seconds(30));
  // Either still draining or already left (the migration may be quick), and
  // undrain either succeeds or says why not with exit 1.
  CtlResult u = Ctl({"undrain", absl::StrCat(node)});
  if (u.code == 0) {
    EXPECT_TRUE(absl::StrContains(u.out, "is active")) << Describe(u);
  } else {
    EXPECT_EQ(u.code, 1) << Describe(u);
    EXPECT_EQ(StateOf(*cluster_, node), NodeState::kLeft);
  }
}

TEST_F(KvfctlDrainLongLease, TimeoutExitsThree) {
  // Stop the node's agent so its drain cannot finish: a stopped agent copies
  // nothing, and with a 60 s lease it is not marked down meanwhile.
  const NodeId node = cluster_->agents()[0].node;
  ASSERT_TRUE(cluster_->SignalAgent(0, SIGSTOP).ok());
  CtlResult r = Ctl({"drain", absl::StrCat(node), "--timeout=300ms", "--poll=50ms"});
  ASSERT_TRUE(cluster_->SignalAgent(0, SIGCONT).ok());
  EXPECT_EQ(r.code, 3) << Describe(r);
  EXPECT_TRUE(absl::StrContains(r.err, "still draining")) << Describe(r);
}

TEST_F(KvfctlDrain, LeaveRemovesTheNode) {
  const NodeId node = cluster_->agents()[0].node;
  CtlResult r = Ctl({"--json", "leave", absl::StrCat(node)});
  ASSERT_EQ(r.code, 0) << Describe(r);
  EXPECT_EQ(ParseJson(r)["node"]["state"].str(), "left");
  EXPECT_EQ(StateOf(*cluster_, node), NodeState::kLeft);
}

// kvfctl evict against a cluster holding data: usage comes down to the target
// and blocks are really gone (a lookup finds fewer), while nothing else breaks.
TEST_F(KvfctlDrain, EvictBringsAFilledClusterDownToTheTarget) {
  auto tc = ConnectWithNamespace(*cluster_, "kvfctl-evict");
  ASSERT_TRUE(tc.ok()) << tc.status();
  auto* client = &tc->client;
  const NamespaceSpec& spec = tc->spec;
  const Namespace* ns = &tc->ns;
  // 3 agents x 64 MiB; 2 copies of 48 MiB fill about half of it.
  std::mt19937_64 rng(5);
  std::vector<uint8_t> block(ns->BlockBytes(), 0x5a);
  std::vector<std::vector<BlockKey>> chains;
  for (int s = 0; s < 96; ++s) {
    std::vector<uint32_t> tokens(32 * 16);
    for (auto& t : tokens) t = static_cast<uint32_t>(rng());
    chains.push_back(*HashSequence(spec.hash, tokens, 16));
    std::vector<ConstBlockBuffer> src(32, ConstBlockBuffer{block.data(), block.size()});
    PutOptions po;
    po.has_ack = true;
    po.ack = AckMode::kAll;
    auto put = (*client)->BatchPut(*ns, chains.back(), 0, src, po);
    ASSERT_TRUE(put.ok() && put->all_ok()) << (put.ok() ? put->FirstError() : put.status());
  }
  auto held = [&] {
    size_t n = 0;
    for (const auto& chain : chains) {
      auto l = (*client)->Lookup(*ns, chain);
      if (l.ok()) {
        for (const BlockHolding& b : l->blocks) n += b.nodes.size();
      }
    }
    return n;
  };
  const size_t before = held();
  EXPECT_EQ(before, 96u * 32 * 2);
  const std::string http = absl::StrCat("--coordinator_http=", cluster_->coordinator_http());
  // The coordinator learns usage from heartbeats: wait (polling, bounded)
  // until it reports the data before asking for an eviction below it.
  double usage = 0;
  for (absl::Time end = absl::Now() + absl::Seconds(30); absl::Now() < end;) {
    CtlResult st = Ctl({"--json", "status", http});
    ASSERT_EQ(st.code, 0) << Describe(st);
    usage = ParseJson(st)["usage"].num();
    if (usage > 0.40) break;
    absl::SleepFor(absl::Milliseconds(100));
  }
  ASSERT_GT(usage, 0.40) << "the coordinator never reported the data written";

  CtlResult r = Ctl({"--json", "evict", "--to", "20", http});
  ASSERT_EQ(r.code, 0) << Describe(r);
  Json j = ParseJson(r);
  EXPECT_TRUE(j["reached"].boolean()) << Describe(r);
  EXPECT_GT(j["usage_percent_before"].num(), 40) << Describe(r);
  EXPECT_LE(j["usage_percent"].num(), 20) << Describe(r);
  EXPECT_GT(j["evicted_bytes"].num(), 0) << Describe(r);
  const size_t after = held();
  EXPECT_LT(after, before / 2) << "kvfctl said it evicted, but the agents still hold the blocks";
  // The cluster still takes and serves data.
  std::vector<uint32_t> tokens(4 * 16, 7);
  auto chain = *HashSequence(spec.hash, tokens, 16);
  ASSERT_TRUE((*client)->Put(*ns, chain, 0, block.data(), block.size()).ok());
  std::vector<uint8_t> got(block.size());
  auto g = (*client)->Get(*ns, chain, 0, got.data(), got.size());
  ASSERT_TRUE(g.ok() && g->status.ok()) << (g.ok() ? g->status : g.status());
  EXPECT_EQ(got, block);
}

}  // namespace
}  // namespace kvf::testing

namespace kvf::testing {
namespace {

// The operator scenario: a workload reads while an operator drains a
// node with kvfctl; no read fails, and the node ends up `left`.
TEST_F(KvfctlDrain, DrainUnderAWorkloadFailsNoRead) {
  auto tc = ConnectWithNamespace(*cluster_, "kvfctl-drain");
  ASSERT_TRUE(tc.ok()) << tc.status();
  auto* client = &tc->client;
  const NamespaceSpec& spec = tc->spec;
  const Namespace* ns = &tc->ns;
  std::mt19937_64 rng(11);
  std::vector<std::vector<BlockKey>> chains;
  std::vector<std::vector<uint8_t>> data;
  for (int s = 0; s < 6; ++s) {
    std::vector<uint32_t> tokens(32 * 16);
    for (auto& t : tokens) t = static_cast<uint32_t>(rng());
    chains.push_back(*HashSequence(spec.hash, tokens, 16));
    data.emplace_back(32 * ns->BlockBytes());
    for (auto& b : data.back()) b = static_cast<uint8_t>(rng());
    std::vector<ConstBlockBuffer> src;
    for (int i = 0; i < 32; ++i) src.push_back({data.back().data() + i * ns->BlockBytes(), ns->BlockBytes()});
    PutOptions po;
    po.has_ack = true;
    po.ack = AckMode::kAll;
    auto put = (*client)->BatchPut(*ns, chains.back(), 0, src, po);
    ASSERT_TRUE(put.ok() && put->all_ok()) << (put.ok() ? put->FirstError() : put.status());
  }
  std::atomic<bool> stop{false};
  std::atomic<size_t> bad{0}, rounds{0};
  std::thread reader([&] {
    std::vector<uint8_t> got(32 * ns->BlockBytes());
    std::vector<BlockBuffer> dst;
    for (int i = 0; i < 32; ++i) dst.push_back({got.data() + i * ns->BlockBytes(), ns->BlockBytes()});
    while (!stop.load()) {
      for (size_t s = 0; s < chains.size(); ++s) {
        auto r = (*client)->BatchGet(*ns, chains[s], 0, dst);
        if (!r.ok() || !r->all_ok() || got != data[s]) ++bad;
      }
      ++rounds;
    }
  });
  const NodeId node = cluster_->agents()[0].node;
  CtlResult r = Ctl({"drain", absl::StrCat(node), "--poll=50ms"});
  const size_t after_drain = rounds.load();
  while (rounds.load() < after_drain + 1) absl::SleepFor(absl::Milliseconds(10));  // one more full round
  stop = true;
  reader.join();
  ASSERT_EQ(r.code, 0) << Describe(r);
  EXPECT_EQ(StateOf(*cluster_, node), NodeState::kLeft);
  EXPECT_GT(rounds.load(), 0u);
  EXPECT_EQ(bad.load(), 0u) << "reads failed while kvfctl drained node " << node;
}

}  // namespace
}  // namespace kvf::testing
