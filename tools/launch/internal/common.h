// kvf-launch's modes and what they share. Private to tools/launch.
#ifndef KVF_TOOLS_LAUNCH_INTERNAL_COMMON_H_
#define KVF_TOOLS_LAUNCH_INTERNAL_COMMON_H_

#include <csignal>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "tools/launch/local_cluster.h"

namespace kvf::launch::internal {

// kvf-launch's command line, parsed (main.cc defines the flags).
struct LaunchFlags {
  int agents = 3;
  int coordinators = 1;  // > 1: an etcd server and that many coordinators sharing it
  uint32_t replication = 2;
  uint64_t host_bytes = uint64_t{1} << 30;
  uint64_t lease_ms = 10000;
  std::string token;       // empty: token_file, else a random one
  std::string token_file;  // read the token from here
  std::string dir;         // logs, token and state; empty: a fresh temp dir
  std::string host;        // bind/advertise address; empty: mode's default
  std::string ucx_tls;
  std::string coordinator_bin;
  std::string agent_bin;
  std::vector<std::string> coordinator_args;
  std::vector<std::string> agent_args;
  std::string failure_domain;  // mpi: empty: per rank on one host, else the host name
  bool keep = false;
  bool client_check = false;
  absl::Duration start_timeout = absl::Seconds(60);
  absl::Duration stop_timeout = absl::Seconds(15);
  std::vector<std::string> command;  // after `--`
};

// The cluster token: flags.token, else the contents of flags.token_file, else
// 32 random hex characters from /dev/urandom.
absl::StatusOr<std::string> ResolveToken(const LaunchFlags& flags);

// LocalClusterOptions from the flags (binaries, sizes, extra args).
LocalClusterOptions ClusterOptionsFromFlags(const LaunchFlags& flags);

// Blocks SIGINT, SIGTERM and SIGCHLD in the calling thread; call before any
// thread starts, so every thread inherits the mask and the modes can sigwait.
void BlockLaunchSignals();

// Prints where everything is: coordinator, token file, each agent.
void PrintCluster(const LocalCluster& cluster);

// Modes. Each returns the process exit code.
int RunLocal(const LaunchFlags& flags);
int RunMpi(const LaunchFlags& flags, int* argc, char*** argv);
int RunStop(const std::string& dir, absl::Duration timeout);

// Files kvf-launch writes into a cluster's directory for `--keep`:
// cluster.env (shell `export` lines) and pids ("coordinator PID BIN" /
// "agent PID BIN" lines) that `kvf-launch stop DIR` reads.
inline constexpr char kPidsFile[] = "pids";
inline constexpr char kEnvFile[] = "cluster.env";

}  // namespace kvf::launch::internal

#endif  // KVF_TOOLS_LAUNCH_INTERNAL_COMMON_H_
