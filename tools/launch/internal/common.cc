#include "tools/launch/internal/common.h"

#include <signal.h>

#include <cstdio>
#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"

namespace kvf::launch::internal {

absl::StatusOr<std::string> ResolveToken(const LaunchFlags& flags) {
  if (!flags.token.empty()) return flags.token;
  if (!flags.token_file.empty()) {
    std::ifstream in(flags.token_file, std::ios::binary);
    if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", flags.token_file));
    std::stringstream ss;
    ss << in.rdbuf();
    std::string token(absl::StripAsciiWhitespace(ss.str()));
    if (token.empty())
      return absl::InvalidArgumentError(absl::StrCat(flags.token_file, " is empty"));
    return token;
  }
  std::ifstream urandom("/dev/urandom", std::ios::binary);
  std::string raw(16, '\0');
  if (!urandom.read(raw.data(), static_cast<std::streamsize>(raw.size()))) {
    return absl::InternalError("cannot read /dev/urandom for a cluster token");
  }
  return absl::BytesToHexString(raw);
}

LocalClusterOptions ClusterOptionsFromFlags(const LaunchFlags& flags) {
  LocalClusterOptions o;
  o.agents = flags.agents;
  o.coordinators = flags.coordinators;
  o.replication = flags.replication;
  o.lease_ms = flags.lease_ms;
  o.host_bytes = flags.host_bytes;
  if (!flags.host.empty()) o.host = flags.host;
  o.ucx_tls = flags.ucx_tls;
  o.coordinator_bin = flags.coordinator_bin;
  o.agent_bin = flags.agent_bin;
  o.extra_coordinator_flags = flags.coordinator_args;
  o.extra_agent_flags = flags.agent_args;
  o.dir = flags.dir;
  o.start_timeout = flags.start_timeout;
  o.log_level = "";  // the daemons' own default (INFO) unless $KVF_LOG_LEVEL says otherwise
  return o;
}

void BlockLaunchSignals() {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGCHLD);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
}

void PrintCluster(const LocalCluster& cluster) {
  std::printf("kvf-launch: cluster up in %s\n", cluster.dir().c_str());
  if (cluster.uses_etcd()) {
    std::printf("  etcd         client=%s pid=%d log=%s/etcd.err\n", cluster.etcd_endpoint().c_str(),
                static_cast<int>(cluster.etcd_pid()), cluster.dir().c_str());
  }
  if (!cluster.coordinators().empty()) {
    const int leader = cluster.coordinators().size() > 1 ? cluster.LeaderIndex() : -1;
    for (size_t i = 0; i < cluster.coordinators().size(); ++i) {
      const CoordinatorProcess& p = cluster.coordinators()[i];
      std::printf("  coordinator  grpc=%s http=%s pid=%d log=%s.err%s\n", p.address.c_str(),
                  p.http.c_str(), static_cast<int>(p.pid), p.log_prefix.c_str(),
                  static_cast<int>(i) == leader ? " (leader)" : "");
    }
  } else {
    std::printf("  coordinator  grpc=%s\n", cluster.coordinator().c_str());
  }
  std::printf("  token file   %s\n", cluster.token_file().c_str());
  std::printf("  binaries     %s %s\n", cluster.coordinator_bin().c_str(),
              cluster.agent_bin().c_str());
  for (const AgentProcess& a : cluster.agents()) {
    if (a.pid <= 0) continue;
    std::printf("  agent        node=%u control=%s http=%s domain=%s pid=%d log=%s.err\n", a.node,
                a.control.c_str(), a.http.c_str(), a.failure_domain.c_str(),
                static_cast<int>(a.pid), a.log_prefix.c_str());
  }
  std::fflush(stdout);
}

}  // namespace kvf::launch::internal
