#include "bench/common/netns_hosts.h"

#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace kvf::bench {

absl::StatusOr<std::unique_ptr<BenchHosts>> BenchHosts::Enter(int agents) {
  if (agents < 1) return absl::InvalidArgumentError("BenchHosts: at least one agent");
  // Namespaces of runs that died (their pid is gone); live ones are left.
  (void)launch::NetnsTopology::CleanupStale();
  KVF_ASSIGN_OR_RETURN(std::unique_ptr<launch::NetnsTopology> topology,
                       launch::NetnsTopology::Create(kFirstAgentHost + agents));
  std::unique_ptr<BenchHosts> hosts(new BenchHosts(std::move(topology), agents));
  // On error the namespaces go with `hosts`.
  KVF_RETURN_IF_ERROR(launch::EnterNetns(hosts->topology_->host_netns(kClientHost)));
  return hosts;
}

void BenchHosts::Place(launch::LocalClusterOptions* options) const {
  std::vector<int> agent_hosts;
  for (int i = 0; i < agents_; ++i) agent_hosts.push_back(kFirstAgentHost + i);
  launch::PlaceOnHosts(*topology_, kCoordinatorHost, agent_hosts, options);
}

std::string BenchHosts::Describe() const {
  const launch::NetnsTopology& t = *topology_;
  return absl::StrCat("network namespaces ", t.name_prefix(), "*, ", t.subnet(),
                      " on a bridge: coordinator ", t.host_address(kCoordinatorHost),
                      ", client (this process) ", t.host_address(kClientHost), ", agents ",
                      agent_address(0), "..", agent_address(agents_ - 1), "; UCX over TCP only");
}

}  // namespace kvf::bench
