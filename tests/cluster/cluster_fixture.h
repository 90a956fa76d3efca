// A GoogleTest fixture around LocalCluster for integration tests: a cluster
// of real processes, a connected kvf::Client, and helpers for random chains
// and blocks. Subclass and override ClusterOptions() to change the shape.
// Tests skip (with a message) when kvf-agent was not built.
//
// With KVF_TEST_NETNS=1 (the suites' `netns` registrations) the cluster is
// spread over network namespaces, one host per process, with UCX over TCP
// (netns_hosts.h); ClusterOptions() is placed on the hosts after the subclass
// made it. A test that cannot run there skips with a reason:
//   if (NetnsMode()) GTEST_SKIP() << "why";
#ifndef KVF_TESTS_CLUSTER_CLUSTER_FIXTURE_H_
#define KVF_TESTS_CLUSTER_CLUSTER_FIXTURE_H_

#include <cstdint>
#include <cstring>
#include <iostream>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "client/client.h"
#include "common/block_hash.h"
#include "gtest/gtest.h"
#include "tests/cluster/local_cluster.h"
#include "tests/cluster/netns_hosts.h"

namespace kvf::testing {

class ClusterTest : public ::testing::Test {
 protected:
  virtual LocalClusterOptions ClusterOptions() {
    LocalClusterOptions o;
    o.agents = 4;
    o.replication = 2;
    return o;
  }
  virtual ClientOptions MakeClientOptions() {
    ClientOptions o;
    o.coordinator = cluster_->coordinator();
    o.token = cluster_->token();
    o.ucx_tls = cluster_->options().ucx_tls;
    return o;
  }

  void SetUp() override {
    if (!AgentBuilt()) GTEST_SKIP() << "kvf-agent is not built; skipping cluster tests";
    LocalClusterOptions options = ClusterOptions();
    PlaceInNetns(&options);
    if (IsSkipped() || HasFatalFailure()) return;
    auto c = LocalCluster::Start(options);
    ASSERT_TRUE(c.ok()) << c.status();
    cluster_ = std::move(*c);
    auto client = Client::Connect(MakeClientOptions());
    ASSERT_TRUE(client.ok()) << client.status();
    client_ = std::move(*client);
  }

  // The client before the daemons it talks to; in netns mode the
  // namespaces outlive every test (netns_hosts.h).
  void TearDown() override {
    if (HasFailure() && cluster_ != nullptr) {
      for (const AgentProcess& a : cluster_->agents()) {
        std::cerr << "---- " << a.log_prefix << ".err (node " << a.node << ")\n"
                  << cluster_->TailLog(a.log_prefix, 3000) << "\n";
      }
    }
    client_.reset();
    cluster_.reset();
  }

  // The suite runs with hosts apart (KVF_TEST_NETNS).
  static bool NetnsMode() { return NetnsHosts::Requested(); }

  // In netns mode, places `options` on the hosts; skips the test where
  // namespaces cannot be made, fails it on any other error.
  static void PlaceInNetns(LocalClusterOptions* options) {
    if (!NetnsMode()) return;
    const absl::Status placed = NetnsHosts::Place(options);
    if (absl::IsUnavailable(placed)) GTEST_SKIP() << "network namespaces unavailable: " << placed;
    ASSERT_TRUE(placed.ok()) << placed;
  }

  static bool AgentBuilt() {
#ifdef KVF_AGENT_BIN
    return std::string(KVF_AGENT_BIN).size() > 0;
#else
    return false;
#endif
  }

  static NamespaceSpec Spec(std::string model, uint32_t layers, uint32_t heads, uint32_t dim,
                            uint32_t block_tokens, uint32_t segment_blocks = 16) {
    NamespaceSpec s;
    s.model_id = std::move(model);
    s.layout.num_layers = layers;
    s.layout.num_kv_heads = heads;
    s.layout.head_dim = dim;
    s.layout.block_tokens = block_tokens;
    s.layout.dtype = DType::kFp16;
    s.segment_blocks = segment_blocks;
    return s;
  }

  // The keys of a random token sequence of `blocks` full blocks.
  std::vector<BlockKey> RandomChain(const Namespace& ns, size_t blocks) {
    std::vector<uint32_t> tokens(blocks * ns.spec().layout.block_tokens);
    for (auto& t : tokens) t = static_cast<uint32_t>(rng_());
    auto keys = HashSequence(ns.spec().hash, tokens, ns.spec().layout.block_tokens);
    EXPECT_TRUE(keys.ok());
    return *keys;
  }

  std::vector<std::vector<uint8_t>> RandomBlocks(size_t n, size_t bytes) {
    std::vector<std::vector<uint8_t>> out(n, std::vector<uint8_t>(bytes));
    for (auto& b : out) {
      for (size_t i = 0; i < bytes; i += 8) {
        const uint64_t v = rng_();
        std::memcpy(b.data() + i, &v, std::min<size_t>(8, bytes - i));
      }
    }
    return out;
  }

  static std::vector<ConstBlockBuffer> Sources(const std::vector<std::vector<uint8_t>>& blocks) {
    std::vector<ConstBlockBuffer> out;
    for (const auto& b : blocks) out.push_back({b.data(), b.size()});
    return out;
  }
  static std::vector<BlockBuffer> Sinks(std::vector<std::vector<uint8_t>>& blocks) {
    std::vector<BlockBuffer> out;
    for (auto& b : blocks) out.push_back({b.data(), b.size()});
    return out;
  }

  std::unique_ptr<LocalCluster> cluster_;
  std::unique_ptr<Client> client_;
  std::mt19937_64 rng_{std::random_device{}()};
};

// ClusterTest with one cluster for a whole suite, so a suite of many small
// tests starts its processes once: Shared() is the suite's (a static the
// subclass resets in TearDownTestSuite). Tests then use their own namespaces.
class SharedClusterTest : public ClusterTest {
 protected:
  virtual std::unique_ptr<LocalCluster>& Shared() = 0;

  ClientOptions MakeClientOptions() override {
    ClientOptions o;
    o.coordinator = Shared()->coordinator();
    o.token = Shared()->token();
    o.ucx_tls = Shared()->options().ucx_tls;
    return o;
  }

  void SetUp() override {
    if (!AgentBuilt()) GTEST_SKIP() << "kvf-agent is not built; skipping cluster tests";
    if (Shared() == nullptr) {
      LocalClusterOptions options = ClusterOptions();
      PlaceInNetns(&options);
      if (IsSkipped() || HasFatalFailure()) return;
      auto c = LocalCluster::Start(options);
      ASSERT_TRUE(c.ok()) << c.status();
      Shared() = std::move(*c);
    }
    auto client = Client::Connect(MakeClientOptions());
    ASSERT_TRUE(client.ok()) << client.status();
    client_ = std::move(*client);
  }

  void TearDown() override {
    if (HasFailure() && Shared() != nullptr) {
      for (const AgentProcess& a : Shared()->agents()) {
        std::cerr << "---- " << a.log_prefix << ".err (node " << a.node << ")\n"
                  << Shared()->TailLog(a.log_prefix, 3000) << "\n";
      }
    }
    client_.reset();
  }
};

}  // namespace kvf::testing

#endif  // KVF_TESTS_CLUSTER_CLUSTER_FIXTURE_H_
