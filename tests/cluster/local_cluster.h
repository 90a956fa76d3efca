// A kvfabric cluster of real processes on loopback, for integration tests:
// one kvf-coordinator and N kvf-agent children, every port picked by the
// kernel (port 0, read back from the ready lines), logs and scratch files in a
// fresh mkdtemp directory. Side-by-side safe (ctest -j).
//
// Children get PR_SET_PDEATHSIG(SIGKILL), so they die with the test process
// even when it crashes; the destructor SIGKILLs whatever is still running.
// Nothing sleeps to synchronise: every wait polls with a deadline.
//
// Thread-compatible: use from one thread (the test's).
#ifndef KVF_TESTS_CLUSTER_LOCAL_CLUSTER_H_
#define KVF_TESTS_CLUSTER_LOCAL_CLUSTER_H_

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/cluster_map.h"

namespace kvf::testing {

struct LocalClusterOptions {
  int agents = 3;
  uint32_t replication = 2;
  uint64_t lease_ms = 3000;
  uint64_t host_bytes = 64ull << 20;  // per agent
  std::string token = "kvf-test-token";
  // UCX transports for the agents (--ucx_tls); empty lets UCX choose.
  std::string ucx_tls;
  // Each agent gets its own failure domain ("d<index>") unless this is > 0,
  // in which case agent i is in "d<i % failure_domains>".
  int failure_domains = 0;
  std::vector<std::string> extra_coordinator_flags;
  std::vector<std::string> extra_agent_flags;
  // How long one process may take to print its ready line.
  absl::Duration start_timeout = absl::Seconds(30);
  // Wait for every agent to be active before Start returns.
  bool wait_active = true;
};

struct AgentProcess {
  pid_t pid = -1;  // -1 once stopped and reaped
  NodeId node = kNoNode;
  std::string control;  // host:port
  std::string http;
  std::string failure_domain;
  std::string log_prefix;  // <dir>/agent-<index>; .out and .err
};

class LocalCluster {
 public:
  static absl::StatusOr<std::unique_ptr<LocalCluster>> Start(const LocalClusterOptions& options);
  ~LocalCluster();
  LocalCluster(const LocalCluster&) = delete;
  LocalCluster& operator=(const LocalCluster&) = delete;

  const std::string& coordinator() const { return coordinator_; }  // gRPC host:port
  const std::string& coordinator_http() const { return coordinator_http_; }
  const std::string& token() const { return options_.token; }
  const std::string& dir() const { return dir_; }
  const LocalClusterOptions& options() const { return options_; }

  // Agents in start order, including stopped ones (pid -1).
  const std::vector<AgentProcess>& agents() const { return agents_; }
  int running_agents() const;

  // Starts one more agent (failure domain by index unless `domain` is given)
  // and waits for its ready line. Returns its index in agents().
  absl::StatusOr<int> StartAgent(std::string domain = "");
  // Sends `signal` to agent `index`. With SIGKILL/SIGTERM it then reaps it
  // (waiting up to `timeout`) and marks it stopped.
  absl::Status SignalAgent(int index, int signal, absl::Duration timeout = absl::Seconds(10));
  absl::Status KillAgent(int index) { return SignalAgent(index, 9); }
  absl::Status TerminateAgent(int index) { return SignalAgent(index, 15); }

  // The coordinator's current map.
  absl::StatusOr<ClusterMap> GetClusterMap() const;
  // Polls the map until exactly `n` nodes are active and none is joining or
  // draining (so no migration is pending), or `deadline` passes.
  absl::Status WaitForActive(int n, absl::Time deadline) const;
  // Polls until `pred(map)` holds or `deadline` passes.
  absl::Status WaitForMap(const std::function<bool(const ClusterMap&)>& pred,
                          absl::Time deadline) const;

  // The last `max_bytes` of a child's stderr (for failure messages).
  std::string TailLog(const std::string& log_prefix, size_t max_bytes = 4000) const;

 private:
  explicit LocalCluster(LocalClusterOptions options);
  struct Rpc;
  // fork/exec `argv` with stdout/stderr to `<prefix>.out/.err`; waits until
  // stdout holds a line starting with `ready_prefix`, and returns it.
  absl::StatusOr<std::string> Spawn(const std::vector<std::string>& argv, const std::string& prefix,
                                    const std::string& ready_prefix, pid_t* pid);

  LocalClusterOptions options_;
  std::string dir_;
  pid_t coordinator_pid_ = -1;
  std::string coordinator_;
  std::string coordinator_http_;
  std::vector<AgentProcess> agents_;
  std::unique_ptr<Rpc> rpc_;
};

}  // namespace kvf::testing

#endif  // KVF_TESTS_CLUSTER_LOCAL_CLUSTER_H_
