// The --netns mode of kvf-bench and kvf-cluster-bench (issue 17): hosts that
// really are apart, on one machine. The coordinator, each agent, the bench
// process itself (the client) and the bench's peer server each get a network
// namespace of their own, joined by veth links on a bridge
// (tools/launch/netns_topology.h), and UCX runs over TCP only: no
// shared-memory path exists between them, so a get crosses a network stack
// as it would between hosts, and so do the peers it is compared with.
//
//   host 0      the coordinator
//   host 1      the bench (this process): its clients, ucx_perftest's client
//   host 2      the peer server (kvf-bench: redis-server)
//   host 3 + i  agent i; ucx_perftest's server runs on agent 0's host
//
// Needs root (CAP_SYS_ADMIN, CAP_NET_ADMIN) and iproute2.
//
// Thread-compatible.
#ifndef KVF_BENCH_COMMON_NETNS_HOSTS_H_
#define KVF_BENCH_COMMON_NETNS_HOSTS_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "tools/launch/local_cluster.h"
#include "tools/launch/netns_topology.h"

namespace kvf::bench {

class BenchHosts {
 public:
  static constexpr int kCoordinatorHost = 0;
  static constexpr int kClientHost = 1;
  static constexpr int kPeerHost = 2;
  static constexpr int kFirstAgentHost = 3;

  // Removes what crashed --netns runs left behind (NetnsTopology::
  // CleanupStale), makes hosts for `agents` agents and moves the calling
  // thread into the client's host. Call it on the main thread before
  // anything starts a thread that opens sockets (a kvf::Client, a gRPC
  // channel): threads started earlier stay in the old namespace. Errors:
  // NetnsTopology::Create's (UNAVAILABLE without root or iproute2), or
  // entering the namespace failed.
  static absl::StatusOr<std::unique_ptr<BenchHosts>> Enter(int agents);

  // Removes the namespaces. Stop the cluster and the peers first.
  ~BenchHosts() = default;
  BenchHosts(const BenchHosts&) = delete;
  BenchHosts& operator=(const BenchHosts&) = delete;

  // The cluster on the hosts: launch::PlaceOnHosts (UCX over TCP).
  void Place(launch::LocalClusterOptions* options) const;

  const launch::NetnsTopology& topology() const { return *topology_; }
  const std::string& peer_netns() const { return topology_->host_netns(kPeerHost); }
  const std::string& peer_address() const { return topology_->host_address(kPeerHost); }
  const std::string& agent_netns(int i) const { return topology_->host_netns(kFirstAgentHost + i); }
  const std::string& agent_address(int i) const {
    return topology_->host_address(kFirstAgentHost + i);
  }
  // One line for the bench's header: the subnet and where the coordinator,
  // the client and the agents are (the peer says where it is itself).
  std::string Describe() const;

 private:
  BenchHosts(std::unique_ptr<launch::NetnsTopology> topology, int agents)
      : topology_(std::move(topology)), agents_(agents) {}
  std::unique_ptr<launch::NetnsTopology> topology_;
  int agents_ = 0;
};

}  // namespace kvf::bench

#endif  // KVF_BENCH_COMMON_NETNS_HOSTS_H_
