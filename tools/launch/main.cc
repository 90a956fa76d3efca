// kvf-launch: start a kvfabric cluster (docs/operating.md).
//
//   kvf-launch local [--agents 3] [--coordinators 1] [--replication 2]
//                    [--host_bytes 1G] [--keep] [--client-check] [-- COMMAND ARGS...]
//   mpirun -np N kvf-launch mpi [--client-check] [flags]
//   kvf-launch stop DIR
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "common/process.h"
#include "tools/launch/internal/common.h"

ABSL_FLAG(int, agents, 3, "local: how many kvf-agent processes to start");
ABSL_FLAG(int, coordinators, 1,
          "local: how many kvf-coordinator processes; more than 1 also starts an etcd server "
          "(Debian: etcd-server) holding their state, and one of them is elected leader");
ABSL_FLAG(uint32_t, replication, 2, "owners per key (R), 1..8");
ABSL_FLAG(std::string, host_bytes, "1G", "host memory per agent for blocks (K, M, G suffixes)");
ABSL_FLAG(uint64_t, lease_ms, 10000, "a node missing heartbeats this long is marked down");
ABSL_FLAG(std::string, token, "", "the cluster token; default: --token_file, else a random one");
ABSL_FLAG(std::string, token_file, "", "read the cluster token from this file");
ABSL_FLAG(std::string, dir, "",
          "directory for logs, the token file and pids (mpi: DIR/rank-N); default: a new "
          "temporary directory, removed when the cluster stops");
ABSL_FLAG(std::string, host, "",
          "address the daemons bind and advertise (ports are picked free); default 127.0.0.1, "
          "mpi across hosts: the host name");
ABSL_FLAG(std::string, ucx_tls, "", "UCX transports for agents and the client check (UCX_TLS)");
ABSL_FLAG(std::string, coordinator_bin, "", "kvf-coordinator to run; default: found (see docs)");
ABSL_FLAG(std::string, agent_bin, "", "kvf-agent to run; default: found (see docs)");
ABSL_FLAG(std::string, coordinator_args, "", "extra kvf-coordinator flags, space separated");
ABSL_FLAG(std::string, agent_args, "", "extra kvf-agent flags, space separated");
ABSL_FLAG(std::string, failure_domain, "",
          "mpi: every agent's failure domain; default rank<N> on one host, else the host name");
ABSL_FLAG(bool, keep, false,
          "local: leave the cluster running when kvf-launch exits; stop it with "
          "`kvf-launch stop DIR`");
ABSL_FLAG(bool, client_check, false,
          "put and get blocks through kvf::Client, compare byte for byte, report, then stop");
ABSL_FLAG(absl::Duration, start_timeout, absl::Seconds(60),
          "how long a daemon may take to come up, and the cluster to become active");
ABSL_FLAG(absl::Duration, stop_timeout, absl::Seconds(15),
          "how long daemons get after SIGTERM before SIGKILL");

namespace kvf::launch::internal {
namespace {

constexpr char kUsage[] =
    "start a kvfabric cluster (docs/operating.md)\n"
    "  kvf-launch local [--agents 3] [--coordinators 1] [--replication 2] [--host_bytes 1G]\n"
    "                   [--keep] [--client-check] [-- COMMAND ARGS...]\n"
    "  mpirun -np N kvf-launch mpi [--client-check] [flags]\n"
    "  kvf-launch stop DIR";

bool ParseBytes(std::string text, uint64_t* out) {
  text = absl::AsciiStrToUpper(absl::StripAsciiWhitespace(text));
  uint64_t scale = 1;
  if (!text.empty()) {
    const char suffix = text.back();
    if (suffix == 'K') scale = uint64_t{1} << 10;
    if (suffix == 'M') scale = uint64_t{1} << 20;
    if (suffix == 'G') scale = uint64_t{1} << 30;
    if (scale != 1) text.pop_back();
  }
  uint64_t n = 0;
  if (!absl::SimpleAtoi(text, &n)) return false;
  *out = n * scale;
  return true;
}

std::vector<std::string> Words(const std::string& text) {
  return absl::StrSplit(text, absl::ByAnyChar(" \t\n"), absl::SkipEmpty());
}

}  // namespace
}  // namespace kvf::launch::internal

int main(int argc, char** argv) {
  using namespace kvf::launch::internal;  // NOLINT: main only
  kvf::ConfigureProcessForServing();
  // Before any thread exists (MPI's, gRPC's, UCX's): the modes sigwait.
  BlockLaunchSignals();
  absl::SetProgramUsageMessage(kUsage);

  // Everything after `--` is the command, not ours to parse.
  int ours = argc;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--") == 0) {
      ours = i;
      break;
    }
  }
  LaunchFlags flags;
  for (int i = ours + 1; i < argc; ++i) flags.command.push_back(argv[i]);
  // absl accepts --client_check; the issue and habit spell it --client-check.
  std::vector<std::string> own(argv, argv + ours);
  for (std::string& a : own) {
    if (a == "--client-check") a = "--client_check";
  }
  std::vector<char*> own_argv;
  for (std::string& a : own) own_argv.push_back(a.data());
  std::vector<char*> positional =
      absl::ParseCommandLine(static_cast<int>(own_argv.size()), own_argv.data());
  if (positional.size() < 2) {
    std::fprintf(stderr, "%s\n", kUsage);
    return 2;
  }
  const std::string mode = positional[1];

  flags.agents = absl::GetFlag(FLAGS_agents);
  flags.coordinators = absl::GetFlag(FLAGS_coordinators);
  flags.replication = absl::GetFlag(FLAGS_replication);
  if (!ParseBytes(absl::GetFlag(FLAGS_host_bytes), &flags.host_bytes)) {
    std::fprintf(stderr, "kvf-launch: --host_bytes: '%s' is not a size\n",
                 absl::GetFlag(FLAGS_host_bytes).c_str());
    return 2;
  }
  flags.lease_ms = absl::GetFlag(FLAGS_lease_ms);
  flags.token = absl::GetFlag(FLAGS_token);
  flags.token_file = absl::GetFlag(FLAGS_token_file);
  flags.dir = absl::GetFlag(FLAGS_dir);
  flags.host = absl::GetFlag(FLAGS_host);
  flags.ucx_tls = absl::GetFlag(FLAGS_ucx_tls);
  flags.coordinator_bin = absl::GetFlag(FLAGS_coordinator_bin);
  flags.agent_bin = absl::GetFlag(FLAGS_agent_bin);
  flags.coordinator_args = Words(absl::GetFlag(FLAGS_coordinator_args));
  flags.agent_args = Words(absl::GetFlag(FLAGS_agent_args));
  flags.failure_domain = absl::GetFlag(FLAGS_failure_domain);
  flags.keep = absl::GetFlag(FLAGS_keep);
  flags.client_check = absl::GetFlag(FLAGS_client_check);
  flags.start_timeout = absl::GetFlag(FLAGS_start_timeout);
  flags.stop_timeout = absl::GetFlag(FLAGS_stop_timeout);

  if (mode == "local" && positional.size() == 2) return RunLocal(flags);
  if (mode == "mpi" && positional.size() == 2) {
    if (flags.keep || !flags.command.empty()) {
      std::fprintf(stderr, "kvf-launch mpi: --keep and a COMMAND are for `local` only\n");
      return 2;
    }
    return RunMpi(flags, &argc, &argv);
  }
  if (mode == "stop" && positional.size() == 3) return RunStop(positional[2], flags.stop_timeout);
  std::fprintf(stderr, "%s\n", kUsage);
  return 2;
}
