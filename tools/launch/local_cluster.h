// kvf::launch::LocalCluster: a kvfabric cluster of real processes on one
// machine, one kvf-coordinator and N kvf-agent children. kvf-launch is built on
// it, and so are the integration tests and kvf-cluster-bench.
//
// With coordinators > 1 (or etcd set) it also starts one etcd server (client
// and peer URLs on `host` at free ports, data in <dir>/etcd) and that many
// coordinators keeping their state in it, one of them elected leader
// (docs/coordinator.md, "Several coordinators"). coordinator() is then the
// comma-separated list of their addresses, which agents and clients take as
// it is.
//
// Every port is picked by the kernel (port 0, read back from the ready lines);
// logs, the token file and scratch files live in one directory (a fresh
// mkdtemp one unless LocalClusterOptions::dir names one). Side-by-side safe.
//
// Lifetime. By default children get PR_SET_PDEATHSIG(SIGKILL), so they die
// with the process that started them even when it crashes, and the destructor
// SIGKILLs whatever still runs and removes the directory. Stop() shuts down
// gracefully instead (agents leave, then the coordinator exits). Release()
// hands the processes over to the caller: the destructor then leaves them and
// the directory alone (kvf-launch --keep; start with die_with_parent = false
// so they outlive this process). Children run in their own process group, so a
// terminal's Ctrl-C reaches only the launcher, which then stops them in order.
//
// Nothing sleeps to synchronise: every wait polls with a deadline.
//
// Thread-compatible: use from one thread.
#ifndef KVF_TOOLS_LAUNCH_LOCAL_CLUSTER_H_
#define KVF_TOOLS_LAUNCH_LOCAL_CLUSTER_H_

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/cluster_map.h"
#include "tools/launch/netns_topology.h"

namespace kvf::launch {

struct LocalClusterOptions {
  int agents = 3;
  uint32_t replication = 2;
  uint64_t lease_ms = 3000;
  uint64_t host_bytes = 64ull << 20;  // per agent
  std::string token = "kvf-test-token";
  // The address every process binds and advertises (ports are always 0).
  std::string host = "127.0.0.1";
  // UCX transports for the agents (--ucx_tls); empty lets UCX choose. Agents
  // keep UCX's TCP listeners on the interface owning their host (kvf-agent
  // --data_listen_host defaults to it), so a cluster on 127.0.0.1 listens on
  // loopback only.
  std::string ucx_tls;
  // TLS for gRPC (PEM files; proto/channel.h). With tls_cert and tls_key the
  // coordinator and every agent serve over TLS with that one certificate, so
  // it must name `host` (and agent_hosts) in its subjectAltName. With tls_ca
  // the coordinator verifies the agents (--agent_tls_ca), the agents verify
  // the coordinator (--tls_ca), and so does this class's own channel. Paths
  // are passed as given: make them absolute.
  std::string tls_cert;
  std::string tls_key;
  std::string tls_ca;
  // Each agent gets its own failure domain ("d<index>") unless this is > 0,
  // in which case agent i is in "d<i % failure_domains>".
  int failure_domains = 0;
  std::vector<std::string> extra_coordinator_flags;
  // How many kvf-coordinator processes; more than one keeps the state in an
  // etcd server this class starts (and `etcd` does so for one too).
  int coordinators = 1;
  bool etcd = false;
  // etcd's binary; empty: FindEtcd().
  std::string etcd_bin;
  // The coordinators' --election_ttl_ms (with etcd).
  uint64_t election_ttl_ms = 2000;
  // The coordinator's --state_dir (its epoch and roster; created if missing),
  // relative to `dir` unless absolute; empty: none, so a restarted
  // coordinator would start a new cluster.
  std::string coordinator_state_dir;
  // Network namespaces (names under /var/run/netns, made by the caller) to
  // start the daemons in; empty: the caller's. agent_netns[i] is agent i's;
  // agents past its end use the caller's. With namespaces, `host` must be an
  // address every namespace reaches (the coordinator's), and each agent
  // listens on agent_hosts[i].
  std::string coordinator_netns;
  std::vector<std::string> agent_netns;
  std::vector<std::string> agent_hosts;
  // Added to every agent's command line; "{agent}" in one is replaced by the
  // agent's index (0, 1, ...), e.g. --disk_path=/tmp/ssd-{agent}.
  std::vector<std::string> extra_agent_flags;
  // Extra environment for every agent (e.g. CUDA_VISIBLE_DEVICES).
  std::vector<std::pair<std::string, std::string>> agent_env;
  // How long one process may take to print its ready line.
  absl::Duration start_timeout = absl::Seconds(30);
  // Wait for every agent to be active before Start returns.
  bool wait_active = true;

  // Use this running coordinator (host:port) instead of starting one; the
  // cluster then owns only its agents (kvf-launch mpi: one agent per rank).
  std::string coordinator_address;
  // Binaries; empty: FindBinary("kvf-coordinator" / "kvf-agent").
  std::string coordinator_bin;
  std::string agent_bin;
  // Where logs and the token file go; empty: a fresh mkdtemp directory under
  // $TMPDIR. A given directory is created if missing and never removed.
  std::string dir;
  // Children get PR_SET_PDEATHSIG(SIGKILL). Turn off for processes that must
  // outlive the launcher (Release()).
  bool die_with_parent = true;
  // Children's KVF_LOG_LEVEL unless the environment sets one.
  std::string log_level = "WARNING";
};

// Spreads a cluster over the hosts of `topology` (netns_topology.h), so that
// no two of its processes share a network, and no shared-memory path exists
// between them: the coordinator (and etcd) on host `coordinator_host`, agent i
// on host `agent_hosts[i]` (agents that StartAgent adds later take the next
// entries; give spare hosts for them, since an agent past the end would run
// in the caller's namespace on the coordinator's address), each listening on
// its host's address, and UCX over TCP only. The caller stays where it is: a
// process that is to be the client host enters its host (EnterNetns, on its
// main thread) before it makes clients.
void PlaceOnHosts(const NetnsTopology& topology, int coordinator_host,
                  const std::vector<int>& agent_hosts, LocalClusterOptions* options);

struct AgentProcess {
  pid_t pid = -1;  // -1 once stopped and reaped
  NodeId node = kNoNode;
  std::string control;  // host:port
  std::string http;
  std::string failure_domain;
  std::string log_prefix;  // <dir>/agent-<index>; .out and .err
};

// Where a kvfabric binary (`name`: "kvf-coordinator", "kvf-agent") is, first
// match wins: $KVF_COORDINATOR_BIN / $KVF_AGENT_BIN; beside the running
// executable (an installed bin/ folder); the path this library was built with
// (KVF_COORDINATOR_BIN / KVF_AGENT_BIN); the build tree relative to the
// running executable (../coordinator/, ../../node/, ...); $PATH. NOT_FOUND
// lists where it looked.
absl::StatusOr<std::string> FindBinary(const std::string& name);

// etcd's server binary: $KVF_ETCD_BIN, else `etcd` on $PATH, /usr/bin,
// /usr/local/bin. NOT_FOUND says how to install it (Debian: etcd-server).
absl::StatusOr<std::string> FindEtcd();

// A free TCP port on `host` (bound to port 0, read back and closed: another
// process may take it before the caller binds it, rarely).
absl::StatusOr<int> FreePort(const std::string& host);

// True when something accepts TCP connections at `host_port` (IPv4).
bool PortOpen(const std::string& host_port);

struct CoordinatorProcess {
  pid_t pid = -1;        // -1 once stopped and reaped
  std::string address;   // gRPC host:port (kept across restarts)
  std::string http;
  std::string log_prefix;  // <dir>/coordinator (the first), <dir>/coordinator-<i>
};

class LocalCluster {
 public:
  // Starts the coordinator (unless options.coordinator_address names one) and
  // options.agents agents, and waits for each ready line (and, with
  // wait_active, for every agent to be active). On error everything started
  // so far is killed.
  static absl::StatusOr<std::unique_ptr<LocalCluster>> Start(const LocalClusterOptions& options);
  ~LocalCluster();
  LocalCluster(const LocalCluster&) = delete;
  LocalCluster& operator=(const LocalCluster&) = delete;

  // gRPC host:port; with several coordinators their comma-separated list.
  const std::string& coordinator() const { return coordinator_; }
  // The first coordinator's; "" if external.
  const std::string& coordinator_http() const;
  pid_t coordinator_pid() const;  // the first one's; -1 if external or stopped
  const std::string& token() const { return options_.token; }
  // A 0600 file holding the token; every child reads it (--token_file), so
  // the token never shows in `ps`.
  const std::string& token_file() const { return token_file_; }
  const std::string& dir() const { return dir_; }
  const LocalClusterOptions& options() const { return options_; }
  const std::string& coordinator_bin() const { return coordinator_bin_; }
  const std::string& agent_bin() const { return agent_bin_; }

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
  // SIGKILLs the coordinator and reaps it; OK if it was not running.
  absl::Status KillCoordinator();
  // Starts the coordinator again on the gRPC address it had, with the same
  // flags (and so the same state dir), as an operator's restart would, and
  // waits for its ready line. FAILED_PRECONDITION if it still runs.
  absl::Status RestartCoordinator();
  absl::Status TerminateAgent(int index) { return SignalAgent(index, 15); }

  // Several coordinators (and etcd).
  const std::vector<CoordinatorProcess>& coordinators() const { return coordinators_; }
  // SIGKILLs coordinator `index` and reaps it.
  absl::Status KillCoordinatorAt(int index);
  // Starts coordinator `index` again on its address; FAILED_PRECONDITION if
  // it still runs.
  absl::Status RestartCoordinatorAt(int index);
  // Asks every running coordinator (CoordinatorStatus) until one says it
  // leads; returns its index. DEADLINE_EXCEEDED if none by `deadline`.
  absl::StatusOr<int> WaitForLeader(absl::Time deadline) const;
  // The leader's index as the running coordinators report it, or -1.
  int LeaderIndex() const;
  bool uses_etcd() const { return !etcd_endpoint_.empty(); }
  const std::string& etcd_endpoint() const { return etcd_endpoint_; }  // host:port
  pid_t etcd_pid() const { return etcd_pid_; }
  // SIGKILLs etcd (its data stays) / starts it again on the same ports and
  // data dir and waits until it answers.
  absl::Status KillEtcd();
  absl::Status RestartEtcd();

  // Graceful shutdown: SIGTERM to every agent (they leave the cluster), wait
  // for them, then SIGTERM to the coordinator. Whatever is still running when
  // `timeout` (per stage) passes is SIGKILLed, and the error says so.
  absl::Status Stop(absl::Duration timeout = absl::Seconds(15));
  // Stops the agents only (as Stop does); the coordinator keeps running.
  absl::Status StopAgents(absl::Duration timeout = absl::Seconds(15));
  // Forgets every process and the directory: the destructor then kills and
  // removes nothing.
  void Release();

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
  // In network namespace `netns` when it is not empty.
  absl::StatusOr<std::string> Spawn(const std::vector<std::string>& argv,
                                    const std::vector<std::pair<std::string, std::string>>& env,
                                    const std::string& prefix, const std::string& ready_prefix,
                                    pid_t* pid, const std::string& netns = "");
  // Starts coordinator `index` listening on `listen` (host:port, port 0
  // picks); a new index is appended.
  absl::Status StartCoordinator(size_t index, const std::string& listen);
  // Starts etcd on etcd_endpoint_/etcd_peer_port_ (picked on the first call)
  // and waits until it answers.
  absl::Status StartEtcd();
  void UpdateCoordinatorList();

  LocalClusterOptions options_;
  std::string dir_;
  bool owns_dir_ = false;
  std::string token_file_;
  std::string coordinator_bin_;
  std::string agent_bin_;
  std::vector<CoordinatorProcess> coordinators_;
  std::string coordinator_;  // the addresses, comma-separated
  std::string etcd_bin_;
  std::string etcd_endpoint_;
  int etcd_peer_port_ = 0;
  pid_t etcd_pid_ = -1;
  std::vector<AgentProcess> agents_;
  std::unique_ptr<Rpc> rpc_;
};

}  // namespace kvf::launch

#endif  // KVF_TOOLS_LAUNCH_LOCAL_CLUSTER_H_
