// kvf-launch local: a coordinator and N agents on this machine.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "tools/launch/internal/client_check.h"
#include "tools/launch/internal/common.h"
#include "tools/launch/spawn.h"

namespace kvf::launch::internal {
namespace {

// Runs `command` with the cluster's address in its environment; forwards
// SIGINT/SIGTERM sent to kvf-launch itself (not the terminal's, which already
// reached the command's process group); returns its exit code.
int RunCommand(const std::vector<std::string>& command, const LocalCluster& cluster) {
  SpawnOptions options;
  options.argv = command;
  options.search_path = true;
  options.set_env = {{"KVF_COORDINATOR", cluster.coordinator()},
                     {"KVF_TOKEN_FILE", cluster.token_file()},
                     {"KVF_TOKEN", cluster.token()},
                     {"KVF_CLUSTER_DIR", cluster.dir()}};
  options.close_other_fds = true;
  // The command is the user's: it lives on if kvf-launch is killed.
  options.die_with_parent = false;
  std::fflush(stdout);
  std::fflush(stderr);
  absl::StatusOr<ChildProcess> child = ChildProcess::Spawn(options);
  if (!child.ok()) {
    // "cannot run NAME: exec: No such file or directory"
    std::fprintf(stderr, "kvf-launch: cannot run %s\n",
                 std::string(child.status().message()).c_str());
    return 127;
  }
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGCHLD);
  for (;;) {
    if (std::optional<ExitStatus> exit = child->Poll()) return exit->ShellCode();
    siginfo_t info;
    if (::sigwaitinfo(&signals, &info) < 0) continue;
    if ((info.si_signo == SIGINT || info.si_signo == SIGTERM) && info.si_code != SI_KERNEL) {
      child->Signal(info.si_signo);
    }
  }
}

// Waits for SIGINT or SIGTERM. Returns early (false) if the coordinator dies;
// reports an agent that dies and keeps going.
bool WaitForStopSignal(const LocalCluster& cluster) {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGCHLD);
  std::vector<bool> reported(cluster.agents().size(), false);
  for (;;) {
    siginfo_t info;
    if (::sigwaitinfo(&signals, &info) < 0) continue;
    if (info.si_signo != SIGCHLD) return true;
    // Peek (WNOWAIT): the cluster reaps its own children when it stops them.
    // With several coordinators one may go (another leads); not all of them.
    siginfo_t peek{};
    size_t exited = 0;
    for (const CoordinatorProcess& p : cluster.coordinators()) {
      peek = siginfo_t{};
      if (p.pid <= 0 ||
          (::waitid(P_PID, p.pid, &peek, WEXITED | WNOHANG | WNOWAIT) == 0 && peek.si_pid == p.pid)) {
        ++exited;
      }
    }
    if (!cluster.coordinators().empty() && exited == cluster.coordinators().size()) {
      std::fprintf(stderr, "kvf-launch: kvf-coordinator exited; stopping. Its log: %s.err\n",
                   cluster.coordinators()[0].log_prefix.c_str());
      return false;
    }
    for (size_t i = 0; i < cluster.agents().size(); ++i) {
      const AgentProcess& a = cluster.agents()[i];
      peek = siginfo_t{};
      if (a.pid > 0 && !reported[i] &&
          ::waitid(P_PID, a.pid, &peek, WEXITED | WNOHANG | WNOWAIT) == 0 && peek.si_pid == a.pid) {
        reported[i] = true;
        std::fprintf(stderr, "kvf-launch: agent node=%u (pid %d) exited; see %s.err\n", a.node,
                     static_cast<int>(a.pid), a.log_prefix.c_str());
      }
    }
  }
}

absl::Status WriteKeepFiles(const LocalCluster& cluster, bool created_dir) {
  const std::string env_path = absl::StrCat(cluster.dir(), "/", kEnvFile);
  std::ofstream env(env_path);
  env << "# kvfabric cluster started by kvf-launch; `source` this file.\n"
      << "export KVF_COORDINATOR=" << cluster.coordinator() << "\n"
      << "export KVF_TOKEN_FILE=" << cluster.token_file() << "\n"
      << "export KVF_TOKEN=\"$(cat " << cluster.token_file() << ")\"\n"
      << "export KVF_CLUSTER_DIR=" << cluster.dir() << "\n";
  const std::string pids_path = absl::StrCat(cluster.dir(), "/", kPidsFile);
  std::ofstream pids(pids_path);
  for (const CoordinatorProcess& p : cluster.coordinators()) {
    if (p.pid > 0) pids << "coordinator " << p.pid << " " << cluster.coordinator_bin() << "\n";
  }
  if (cluster.etcd_pid() > 0) {
    std::error_code ec;
    const std::string etcd = std::filesystem::read_symlink(
        absl::StrCat("/proc/", cluster.etcd_pid(), "/exe"), ec).string();
    pids << "etcd " << cluster.etcd_pid() << " " << (ec ? std::string("etcd") : etcd) << "\n";
  }
  for (const AgentProcess& a : cluster.agents()) {
    if (a.pid > 0) pids << "agent " << a.pid << " " << cluster.agent_bin() << "\n";
  }
  if (created_dir) pids << "created-dir\n";
  if (!env || !pids) return absl::InternalError(absl::StrCat("cannot write into ", cluster.dir()));
  return absl::OkStatus();
}

}  // namespace

int RunLocal(const LaunchFlags& flags) {
  if (flags.agents < 1) {
    std::fprintf(stderr, "kvf-launch: --agents must be at least 1\n");
    return 2;
  }
  if (flags.coordinators < 1 || flags.coordinators > 9) {
    std::fprintf(stderr, "kvf-launch: --coordinators must be in 1..9\n");
    return 2;
  }
  absl::StatusOr<std::string> token = ResolveToken(flags);
  if (!token.ok()) {
    std::fprintf(stderr, "kvf-launch: %s\n", token.status().ToString().c_str());
    return 2;
  }
  LocalClusterOptions options = ClusterOptionsFromFlags(flags);
  options.token = *token;
  // --keep: the daemons must outlive kvf-launch.
  options.die_with_parent = !flags.keep;
  absl::StatusOr<std::unique_ptr<LocalCluster>> started = LocalCluster::Start(options);
  if (!started.ok()) {
    std::fprintf(stderr, "kvf-launch: starting the cluster: %s\n",
                 started.status().ToString().c_str());
    return 1;
  }
  LocalCluster& cluster = **started;
  PrintCluster(cluster);
  if (absl::Status s = WriteKeepFiles(cluster, flags.dir.empty()); !s.ok()) {
    std::fprintf(stderr, "kvf-launch: %s\n", s.ToString().c_str());
    return 1;
  }

  int rc = 0;
  if (flags.client_check) {
    absl::StatusOr<std::string> check =
        ClientRoundTrip(cluster.coordinator(), cluster.token(), flags.ucx_tls);
    if (check.ok()) {
      std::printf("kvf-launch: %s\n", check->c_str());
    } else {
      std::printf("kvf-launch: client check FAILED: %s\n", check.status().ToString().c_str());
      rc = 1;
    }
    std::fflush(stdout);
  }
  if (!flags.command.empty() && rc == 0) {
    std::printf("kvf-launch: running %s\n", absl::StrJoin(flags.command, " ").c_str());
    rc = RunCommand(flags.command, cluster);
    std::printf("kvf-launch: %s exited with %d\n", flags.command[0].c_str(), rc);
  }

  if (flags.keep) {
    std::vector<std::string> pids;
    for (const AgentProcess& a : cluster.agents()) {
      if (a.pid > 0) pids.push_back(absl::StrCat(a.pid));
    }
    for (const CoordinatorProcess& p : cluster.coordinators()) {
      if (p.pid > 0) pids.push_back(absl::StrCat(p.pid));
    }
    if (cluster.etcd_pid() > 0) pids.push_back(absl::StrCat(cluster.etcd_pid()));
    std::printf(
        "kvf-launch: the cluster keeps running (--keep).\n"
        "  reach it:   source %s/%s   # KVF_COORDINATOR=%s KVF_TOKEN_FILE=%s\n"
        "  stop it:    kvf-launch stop %s\n"
        "         or:  kill -TERM %s   # agents first, then the coordinator (pid %d)\n",
        cluster.dir().c_str(), kEnvFile, cluster.coordinator().c_str(),
        cluster.token_file().c_str(), cluster.dir().c_str(), absl::StrJoin(pids, " ").c_str(),
        static_cast<int>(cluster.coordinator_pid()));
    std::fflush(stdout);
    cluster.Release();
    return rc;
  }

  if (flags.command.empty() && !flags.client_check) {
    std::printf("kvf-launch: serving; Ctrl-C or `kill -TERM %d` stops the cluster\n",
                static_cast<int>(::getpid()));
    std::fflush(stdout);
    if (!WaitForStopSignal(cluster)) rc = 1;
  }
  std::printf("kvf-launch: stopping the cluster\n");
  std::fflush(stdout);
  if (absl::Status s = cluster.Stop(flags.stop_timeout); !s.ok()) {
    std::fprintf(stderr, "kvf-launch: %s\n", s.ToString().c_str());
    if (rc == 0) rc = 1;
  }
  return rc;
}

}  // namespace kvf::launch::internal
