// Hosts that really are apart, for the cluster suites (issue 17). The `netns`
// registrations of a suite (tests/cluster/CMakeLists.txt, kvf_cluster_test
// ... NETNS; ctest label `netns`) run the same binary with KVF_TEST_NETNS=1.
// ClusterTest (cluster_fixture.h) then starts its clusters spread over
// network namespaces joined by a bridge (tools/launch/netns_topology.h): the
// coordinator on one host, each agent on one of its own, the test process
// (the client) on another, with UCX over TCP only. No shared-memory path
// exists between them, as between real hosts.
//
// One topology serves the whole test process: a GoogleTest environment makes
// it before the first test (removing first what crashed runs left, see
// NetnsTopology::CleanupStale), moves the main thread into the client's host,
// and removes it after the last test, once every cluster is gone. Not one per
// test, because setns moves only the calling thread and the threads it starts
// afterwards: the threads gRPC and UCX start during a first test would stay
// in that test's namespace, and a second test's connections made from them
// would go nowhere. Hosts are reused from test to test; every port is the
// kernel's pick, so nothing of one test's cluster is in the next one's way.
//
//   host 0            the coordinator
//   host 1            the client: this process
//   hosts 2 .. 2+N-1  agents 0 .. N-1 (N = kAgentHosts, counting agents that
//                     a test starts later, as a join does)
//
// Without KVF_TEST_NETNS nothing of this runs. Where namespaces cannot be
// made (not root, no iproute2) every test skips with "network namespaces
// unavailable: <why>".
//
// Thread-compatible: used from GoogleTest's main thread.
#ifndef KVF_TESTS_CLUSTER_NETNS_HOSTS_H_
#define KVF_TESTS_CLUSTER_NETNS_HOSTS_H_

#include <cstdlib>
#include <iostream>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tools/launch/local_cluster.h"
#include "tools/launch/netns_topology.h"

namespace kvf::testing {

class NetnsHosts {
 public:
  static constexpr int kCoordinatorHost = 0;
  static constexpr int kClientHost = 1;
  static constexpr int kFirstAgentHost = 2;
  static constexpr int kAgentHosts = 6;

  // KVF_TEST_NETNS is set to something other than "" or "0".
  static bool Requested() {
    const char* v = std::getenv("KVF_TEST_NETNS");
    return v != nullptr && *v != '\0' && std::string(v) != "0";
  }

  // The process's topology, once the environment has made it and entered
  // the client's host. UNAVAILABLE (with the reason) where namespaces cannot
  // be made here; FAILED_PRECONDITION without KVF_TEST_NETNS.
  static absl::StatusOr<const launch::NetnsTopology*> Topology() {
    const State& s = state();
    if (!s.status.ok()) return s.status;
    return s.topology.get();
  }

  // Spreads the cluster of `options` over the hosts (launch::PlaceOnHosts):
  // the coordinator on host 0, agent i on host 2 + i, UCX over TCP.
  static absl::Status Place(launch::LocalClusterOptions* options) {
    absl::StatusOr<const launch::NetnsTopology*> topology = Topology();
    if (!topology.ok()) return topology.status();
    if (options->agents > kAgentHosts) {
      return absl::InvalidArgumentError(
          absl::StrCat("netns mode has hosts for ", kAgentHosts, " agents, not ", options->agents));
    }
    std::vector<int> agent_hosts;
    for (int i = 0; i < kAgentHosts; ++i) agent_hosts.push_back(kFirstAgentHost + i);
    launch::PlaceOnHosts(**topology, kCoordinatorHost, agent_hosts, options);
    return absl::OkStatus();
  }

 private:
  friend class NetnsEnvironment;
  struct State {
    absl::Status status = absl::FailedPreconditionError("KVF_TEST_NETNS is not set");
    // Removed by the environment's TearDown, or at exit if that never ran.
    std::unique_ptr<launch::NetnsTopology> topology;
  };
  static State& state() {
    static State s;
    return s;
  }
};

class NetnsEnvironment : public ::testing::Environment {
 public:
  void SetUp() override {
    if (!NetnsHosts::Requested()) return;
    NetnsHosts::State& s = NetnsHosts::state();
    // Namespaces of test processes that crashed (their pid is gone).
    (void)launch::NetnsTopology::CleanupStale();
    absl::StatusOr<std::unique_ptr<launch::NetnsTopology>> topology =
        launch::NetnsTopology::Create(NetnsHosts::kFirstAgentHost + NetnsHosts::kAgentHosts);
    if (!topology.ok()) {
      s.status = topology.status();
      std::cout << "netns mode: " << s.status << "\n";
      return;
    }
    // The main thread, before any test starts a thread: everything this
    // process runs from here on is on the client's host.
    s.status = launch::EnterNetns((*topology)->host_netns(NetnsHosts::kClientHost));
    s.topology = std::move(*topology);
    if (s.status.ok()) {
      const launch::NetnsTopology& t = *s.topology;
      std::cout << "netns mode: " << t.hosts() << " hosts " << t.name_prefix() << "h*, "
                << t.subnet() << "; coordinator " << t.host_address(NetnsHosts::kCoordinatorHost)
                << ", client " << t.host_address(NetnsHosts::kClientHost) << ", agents from "
                << t.host_address(NetnsHosts::kFirstAgentHost) << "; UCX over TCP\n";
    }
  }
  void TearDown() override { NetnsHosts::state().topology.reset(); }
};

// Registered before main runs, in every binary that includes this header;
// inert without KVF_TEST_NETNS.
inline ::testing::Environment* const kNetnsEnvironment =
    ::testing::AddGlobalTestEnvironment(new NetnsEnvironment);

}  // namespace kvf::testing

#endif  // KVF_TESTS_CLUSTER_NETNS_HOSTS_H_
