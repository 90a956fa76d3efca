#include "tools/launch/local_cluster.h"

#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "common/status_macros.h"
#include "coordinator/etcd_client.h"
#include "grpcpp/client_context.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "proto/cluster_map_convert.h"
#include "proto/coordinator.grpc.pb.h"
#include "tools/launch/spawn.h"
#include "proto/channel.h"

// Where the build put the binaries (one candidate of FindBinary).
#ifndef KVF_COORDINATOR_BIN
#define KVF_COORDINATOR_BIN ""
#endif
#ifndef KVF_AGENT_BIN
#define KVF_AGENT_BIN ""
#endif

namespace kvf::launch {
namespace {

namespace fs = std::filesystem;

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The value of `key=` in a space-separated ready line.
std::string Field(const std::string& line, std::string_view key) {
  for (absl::string_view part : absl::StrSplit(line, ' ')) {
    if (absl::ConsumePrefix(&part, absl::StrCat(std::string(key), "="))) return std::string(part);
  }
  return "";
}

// Reaps `pid` if it exited; returns true and its status text if so.
bool Reaped(pid_t pid, std::string* how) {
  int status = 0;
  if (::waitpid(pid, &status, WNOHANG) != pid) return false;
  *how = WIFEXITED(status) ? absl::StrCat("exited with status ", WEXITSTATUS(status))
                           : absl::StrCat("killed by signal ", WTERMSIG(status));
  return true;
}

std::string Describe(const ClusterMap& map) {
  std::string out;
  for (const NodeInfo& n : map.nodes) {
    absl::StrAppend(&out, " ", n.id, "=", std::string(NodeStateName(n.state)));
  }
  return out;
}

void KillAndReap(pid_t pid) {
  if (pid <= 0) return;
  ::kill(pid, SIGKILL);
  ::waitpid(pid, nullptr, 0);
}

// Sends SIGTERM to each of `pids` (skipping <= 0), then reaps them until
// `deadline`; SIGKILLs the rest. Sets each reaped entry to -1. Returns how many
// had to be killed.
int TerminateAndReap(std::vector<pid_t*> pids, absl::Duration timeout) {
  for (pid_t* p : pids) {
    if (*p > 0) ::kill(*p, SIGTERM);
  }
  const absl::Time deadline = absl::Now() + timeout;
  for (;;) {
    bool running = false;
    for (pid_t* p : pids) {
      std::string how;
      if (*p > 0 && Reaped(*p, &how)) *p = -1;
      running |= *p > 0;
    }
    if (!running) return 0;
    if (absl::Now() > deadline) break;
    absl::SleepFor(absl::Milliseconds(5));
  }
  int killed = 0;
  for (pid_t* p : pids) {
    if (*p > 0) {
      KillAndReap(*p);
      *p = -1;
      ++killed;
    }
  }
  return killed;
}

bool IsExecutable(const fs::path& p) {
  std::error_code ec;
  return fs::is_regular_file(p, ec) && ::access(p.c_str(), X_OK) == 0;
}

}  // namespace

absl::StatusOr<std::string> FindBinary(const std::string& name) {
  std::vector<fs::path> candidates;
  const bool coordinator = name == "kvf-coordinator";
  if (const char* env = ::getenv(coordinator ? "KVF_COORDINATOR_BIN" : "KVF_AGENT_BIN");
      env != nullptr && *env != '\0') {
    // An explicit override: use it or fail, never fall through silently.
    if (IsExecutable(env)) return std::string(env);
    return absl::NotFoundError(absl::StrCat("$",
                                            coordinator ? "KVF_COORDINATOR_BIN" : "KVF_AGENT_BIN",
                                            "=", env, " is not an executable file"));
  }
  std::error_code ec;
  const fs::path self = fs::read_symlink("/proc/self/exe", ec);
  const fs::path self_dir = ec ? fs::path() : self.parent_path();
  if (!self_dir.empty()) candidates.push_back(self_dir / name);
  const std::string built = coordinator ? KVF_COORDINATOR_BIN : KVF_AGENT_BIN;
  if (!built.empty()) candidates.push_back(built);
  if (!self_dir.empty()) {
    // The build tree: tools/launch/kvf-launch, tests/<suite>/<test>, bench/...
    const char* folder = coordinator ? "coordinator" : "node";
    candidates.push_back(self_dir / ".." / folder / name);
    candidates.push_back(self_dir / ".." / ".." / folder / name);
  }
  if (const char* path = ::getenv("PATH"); path != nullptr) {
    for (absl::string_view dir : absl::StrSplit(path, ':', absl::SkipEmpty())) {
      candidates.push_back(fs::path(std::string(dir)) / name);
    }
  }
  std::vector<std::string> tried;
  for (const fs::path& c : candidates) {
    if (IsExecutable(c)) return fs::weakly_canonical(c, ec).string();
    tried.push_back(c.string());
  }
  return absl::NotFoundError(
      absl::StrCat(name, " not found; looked at ", absl::StrJoin(tried, ", "), " (set $",
                   coordinator ? "KVF_COORDINATOR_BIN" : "KVF_AGENT_BIN", " or put it on PATH)"));
}

absl::StatusOr<std::string> FindEtcd() {
  if (const char* env = ::getenv("KVF_ETCD_BIN"); env != nullptr && *env != '\0') {
    if (IsExecutable(env)) return std::string(env);
    return absl::NotFoundError(absl::StrCat("$KVF_ETCD_BIN=", env, " is not an executable file"));
  }
  std::vector<fs::path> candidates;
  if (const char* path = ::getenv("PATH"); path != nullptr) {
    for (absl::string_view dir : absl::StrSplit(path, ':', absl::SkipEmpty())) {
      candidates.push_back(fs::path(std::string(dir)) / "etcd");
    }
  }
  candidates.push_back("/usr/bin/etcd");
  candidates.push_back("/usr/local/bin/etcd");
  for (const fs::path& c : candidates) {
    if (IsExecutable(c)) return c.string();
  }
  return absl::NotFoundError(
      "etcd not found on $PATH, in /usr/bin or /usr/local/bin (Debian: apt-get install "
      "etcd-server; or set $KVF_ETCD_BIN)");
}

absl::StatusOr<int> FreePort(const std::string& host) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  if (::inet_pton(AF_INET, host.c_str(), &addr.sin_addr) != 1) {
    return absl::InvalidArgumentError(absl::StrCat("'", host, "' is not an IPv4 address"));
  }
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return absl::InternalError("socket failed");
  socklen_t len = sizeof(addr);
  const bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
                  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0;
  ::close(fd);
  if (!ok) return absl::InternalError(absl::StrCat("cannot bind a port on ", host));
  return static_cast<int>(ntohs(addr.sin_port));
}

void PlaceOnHosts(const NetnsTopology& topology, int coordinator_host,
                  const std::vector<int>& agent_hosts, LocalClusterOptions* options) {
  options->host = topology.host_address(coordinator_host);
  options->coordinator_netns = topology.host_netns(coordinator_host);
  options->agent_netns.clear();
  options->agent_hosts.clear();
  for (const int host : agent_hosts) {
    options->agent_netns.push_back(topology.host_netns(host));
    options->agent_hosts.push_back(topology.host_address(host));
  }
  options->ucx_tls = "tcp";
}

bool PortOpen(const std::string& host_port) {
  const size_t colon = host_port.rfind(':');
  int port = 0;
  if (colon == std::string::npos ||
      !absl::SimpleAtoi(absl::string_view(host_port).substr(colon + 1), &port)) {
    return false;
  }
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  if (::inet_pton(AF_INET, host_port.substr(0, colon).c_str(), &addr.sin_addr) != 1) return false;
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  const bool open = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  ::close(fd);
  return open;
}

struct LocalCluster::Rpc {
  // One per coordinator (any of them serves the map), in coordinators_ order.
  std::vector<std::unique_ptr<proto::Coordinator::Stub>> stubs;
};

absl::StatusOr<std::unique_ptr<LocalCluster>> LocalCluster::Start(
    const LocalClusterOptions& options) {
  std::unique_ptr<LocalCluster> c(new LocalCluster(options));
  if (options.dir.empty()) {
    std::string tmpl = (fs::temp_directory_path() / "kvf-cluster-XXXXXX").string();
    if (::mkdtemp(tmpl.data()) == nullptr) return absl::InternalError("mkdtemp failed");
    c->dir_ = tmpl;
    c->owns_dir_ = true;
  } else {
    std::error_code ec;
    fs::create_directories(options.dir, ec);
    if (ec)
      return absl::InternalError(absl::StrCat("cannot create ", options.dir, ": ", ec.message()));
    c->dir_ = fs::absolute(options.dir).string();
  }

  // The token goes to the children in a 0600 file, not on their command line.
  c->token_file_ = c->dir_ + "/token";
  {
    const int fd = ::open(c->token_file_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) return absl::InternalError(absl::StrCat("cannot write ", c->token_file_));
    const std::string text = options.token + "\n";
    const bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
    ::close(fd);
    if (!ok) return absl::InternalError(absl::StrCat("cannot write ", c->token_file_));
  }

  KVF_ASSIGN_OR_RETURN(std::shared_ptr<grpc::ChannelCredentials> credentials,
                       ChannelCredentialsFor(options.tls_ca));
  c->rpc_ = std::make_unique<Rpc>();
  if (options.coordinator_address.empty()) {
    if (options.coordinators < 1) {
      return absl::InvalidArgumentError("LocalClusterOptions.coordinators must be at least 1");
    }
    if (options.coordinators > 1 || options.etcd) KVF_RETURN_IF_ERROR(c->StartEtcd());
    for (int i = 0; i < options.coordinators; ++i) {
      KVF_RETURN_IF_ERROR(c->StartCoordinator(i, absl::StrCat(options.host, ":0")));
      c->rpc_->stubs.push_back(
          proto::Coordinator::NewStub(OpenChannel(c->coordinators_[i].address, credentials)));
    }
    if (c->uses_etcd()) {
      KVF_RETURN_IF_ERROR(c->WaitForLeader(absl::Now() + options.start_timeout).status());
    }
  } else {
    c->coordinator_ = options.coordinator_address;
    for (absl::string_view a : absl::StrSplit(c->coordinator_, ',', absl::SkipEmpty())) {
      c->rpc_->stubs.push_back(
          proto::Coordinator::NewStub(OpenChannel(std::string(a), credentials)));
    }
  }

  for (int i = 0; i < options.agents; ++i) KVF_RETURN_IF_ERROR(c->StartAgent().status());
  if (options.wait_active && options.agents > 0) {
    KVF_RETURN_IF_ERROR(c->WaitForActive(options.agents, absl::Now() + options.start_timeout));
  }
  return c;
}

LocalCluster::LocalCluster(LocalClusterOptions options) : options_(std::move(options)) {}

const std::string& LocalCluster::coordinator_http() const {
  static const std::string* const kNone = new std::string();
  return coordinators_.empty() ? *kNone : coordinators_[0].http;
}

pid_t LocalCluster::coordinator_pid() const {
  return coordinators_.empty() ? -1 : coordinators_[0].pid;
}

void LocalCluster::UpdateCoordinatorList() {
  std::vector<std::string> addresses;
  for (const CoordinatorProcess& p : coordinators_) addresses.push_back(p.address);
  coordinator_ = absl::StrJoin(addresses, ",");
}

absl::Status LocalCluster::StartEtcd() {
  if (etcd_bin_.empty()) {
    etcd_bin_ = options_.etcd_bin;
    if (etcd_bin_.empty()) {
      KVF_ASSIGN_OR_RETURN(etcd_bin_, FindEtcd());
    }
  }
  if (etcd_endpoint_.empty()) {
    KVF_ASSIGN_OR_RETURN(int client_port, FreePort(options_.host));
    KVF_ASSIGN_OR_RETURN(etcd_peer_port_, FreePort(options_.host));
    etcd_endpoint_ = absl::StrCat(options_.host, ":", client_port);
  }
  const std::string client_url = absl::StrCat("http://", etcd_endpoint_);
  const std::string peer_url = absl::StrCat("http://", options_.host, ":", etcd_peer_port_);
  const std::string prefix = dir_ + "/etcd";
  SpawnOptions so;
  so.argv = {etcd_bin_,
             "--name=kvf",
             absl::StrCat("--data-dir=", dir_, "/etcd-data"),
             absl::StrCat("--listen-client-urls=", client_url),
             absl::StrCat("--advertise-client-urls=", client_url),
             absl::StrCat("--listen-peer-urls=", peer_url),
             absl::StrCat("--initial-advertise-peer-urls=", peer_url),
             absl::StrCat("--initial-cluster=kvf=", peer_url),
             "--initial-cluster-state=new"};
  so.in = Stdio::Null();
  so.out = Stdio::File(prefix + ".out");
  so.err = Stdio::File(prefix + ".err");
  so.close_other_fds = true;
  so.die_with_parent = options_.die_with_parent;
  so.own_process_group = true;
  so.netns = options_.coordinator_netns;
  KVF_ASSIGN_OR_RETURN(ChildProcess process, ChildProcess::Spawn(so));
  etcd_pid_ = process.Release();
  const absl::Time deadline = absl::Now() + options_.start_timeout;
  // The port first: a gRPC channel that met "connection refused" backs off.
  while (!PortOpen(etcd_endpoint_) && absl::Now() < deadline) {
    std::string how;
    if (Reaped(etcd_pid_, &how)) {
      etcd_pid_ = -1;
      return absl::InternalError(
          absl::StrCat(etcd_bin_, " ", how, " before it was ready; stderr: ", TailLog(prefix)));
    }
    absl::SleepFor(absl::Milliseconds(10));
  }
  KVF_ASSIGN_OR_RETURN(std::unique_ptr<EtcdClient> etcd,
                       EtcdClient::Create(etcd_endpoint_, absl::Seconds(1)));
  for (;;) {
    absl::StatusOr<etcdserverpb::StatusResponse> st = etcd->Status();
    if (st.ok() && st->leader() != 0) return absl::OkStatus();
    std::string how;
    if (Reaped(etcd_pid_, &how)) {
      etcd_pid_ = -1;
      return absl::InternalError(
          absl::StrCat(etcd_bin_, " ", how, " before it was ready; stderr: ", TailLog(prefix)));
    }
    if (absl::Now() > deadline) {
      KillAndReap(etcd_pid_);
      etcd_pid_ = -1;
      return absl::DeadlineExceededError(
          absl::StrCat("etcd did not answer on ", etcd_endpoint_, " in time (",
                       st.ok() ? "no raft leader" : st.status().ToString(), "); stderr: ",
                       TailLog(prefix)));
    }
    absl::SleepFor(absl::Milliseconds(20));
  }
}

absl::Status LocalCluster::KillEtcd() {
  KillAndReap(etcd_pid_);
  etcd_pid_ = -1;
  return absl::OkStatus();
}

absl::Status LocalCluster::RestartEtcd() {
  if (etcd_endpoint_.empty()) return absl::FailedPreconditionError("this cluster has no etcd");
  if (etcd_pid_ > 0) {
    return absl::FailedPreconditionError(absl::StrCat("etcd still runs (pid ", etcd_pid_, ")"));
  }
  return StartEtcd();
}

absl::Status LocalCluster::StartCoordinator(size_t index, const std::string& listen) {
  if (coordinator_bin_.empty()) {
    coordinator_bin_ = options_.coordinator_bin;
    if (coordinator_bin_.empty()) {
      KVF_ASSIGN_OR_RETURN(coordinator_bin_, FindBinary("kvf-coordinator"));
    }
  }
  std::vector<std::string> argv = {coordinator_bin_,
                                   absl::StrCat("--listen=", listen),
                                   absl::StrCat("--http_listen=", options_.host, ":0"),
                                   absl::StrCat("--token_file=", token_file_),
                                   absl::StrCat("--replication=", options_.replication),
                                   absl::StrCat("--lease_ms=", options_.lease_ms)};
  if (uses_etcd()) {
    argv.push_back(absl::StrCat("--etcd_endpoints=", etcd_endpoint_));
    argv.push_back("--etcd_prefix=/kvfabric/local");
    argv.push_back(absl::StrCat("--election_ttl_ms=", options_.election_ttl_ms));
  } else if (!options_.coordinator_state_dir.empty()) {
    const fs::path state = fs::path(dir_) / options_.coordinator_state_dir;  // absolute stays
    argv.push_back(absl::StrCat("--state_dir=", state.string()));
  }
  if (!options_.tls_cert.empty()) argv.push_back(absl::StrCat("--tls_cert=", options_.tls_cert));
  if (!options_.tls_key.empty()) argv.push_back(absl::StrCat("--tls_key=", options_.tls_key));
  if (!options_.tls_ca.empty()) argv.push_back(absl::StrCat("--agent_tls_ca=", options_.tls_ca));
  argv.insert(argv.end(), options_.extra_coordinator_flags.begin(),
              options_.extra_coordinator_flags.end());
  if (index >= coordinators_.size()) {
    coordinators_.resize(index + 1);
    coordinators_[index].log_prefix =
        index == 0 ? dir_ + "/coordinator" : absl::StrCat(dir_, "/coordinator-", index);
  }
  CoordinatorProcess& p = coordinators_[index];
  KVF_ASSIGN_OR_RETURN(std::string line,
                       Spawn(argv, {}, p.log_prefix, "kvf-coordinator listening ", &p.pid,
                             options_.coordinator_netns));
  p.address = Field(line, "grpc");
  p.http = Field(line, "http");
  if (p.address.empty()) {
    return absl::InternalError(absl::StrCat("no grpc= in the coordinator's line: ", line));
  }
  UpdateCoordinatorList();
  return absl::OkStatus();
}

absl::Status LocalCluster::KillCoordinator() {
  if (coordinators_.empty()) return absl::OkStatus();
  return KillCoordinatorAt(0);
}

absl::Status LocalCluster::RestartCoordinator() {
  if (coordinators_.empty() || !options_.coordinator_address.empty()) {
    return absl::FailedPreconditionError("this cluster did not start the coordinator");
  }
  return RestartCoordinatorAt(0);
}

absl::Status LocalCluster::KillCoordinatorAt(int index) {
  if (index < 0 || index >= static_cast<int>(coordinators_.size())) {
    return absl::InvalidArgumentError(absl::StrCat("no coordinator ", index));
  }
  KillAndReap(coordinators_[index].pid);
  coordinators_[index].pid = -1;
  return absl::OkStatus();
}

absl::Status LocalCluster::RestartCoordinatorAt(int index) {
  if (index < 0 || index >= static_cast<int>(coordinators_.size())) {
    return absl::InvalidArgumentError(absl::StrCat("no coordinator ", index));
  }
  if (coordinators_[index].pid > 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("coordinator ", index, " still runs (pid ", coordinators_[index].pid, ")"));
  }
  return StartCoordinator(index, coordinators_[index].address);
}

int LocalCluster::LeaderIndex() const {
  for (size_t i = 0; i < coordinators_.size() && i < rpc_->stubs.size(); ++i) {
    if (coordinators_[i].pid <= 0) continue;
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", absl::StrCat("Bearer ", options_.token));
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(1));
    proto::CoordinatorStatusResponse r;
    if (!rpc_->stubs[i]->CoordinatorStatus(&ctx, proto::CoordinatorStatusRequest(), &r).ok()) {
      continue;
    }
    if (r.role() == proto::CoordinatorStatusResponse::ROLE_LEADER ||
        r.role() == proto::CoordinatorStatusResponse::ROLE_STANDALONE) {
      return static_cast<int>(i);
    }
  }
  return -1;
}

absl::StatusOr<int> LocalCluster::WaitForLeader(absl::Time deadline) const {
  for (;;) {
    if (int i = LeaderIndex(); i >= 0) return i;
    if (absl::Now() > deadline) {
      return absl::DeadlineExceededError("no coordinator became the leader in time");
    }
    absl::SleepFor(absl::Milliseconds(20));
  }
}

LocalCluster::~LocalCluster() {
  for (AgentProcess& a : agents_) KillAndReap(a.pid);
  for (CoordinatorProcess& p : coordinators_) KillAndReap(p.pid);
  KillAndReap(etcd_pid_);
  if (owns_dir_ && ::getenv("KVF_KEEP_CLUSTER_DIR") == nullptr) {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
}

void LocalCluster::Release() {
  for (AgentProcess& a : agents_) a.pid = -1;
  for (CoordinatorProcess& p : coordinators_) p.pid = -1;
  etcd_pid_ = -1;
  owns_dir_ = false;
}

absl::Status LocalCluster::StopAgents(absl::Duration timeout) {
  std::vector<pid_t*> pids;
  for (AgentProcess& a : agents_) pids.push_back(&a.pid);
  if (int killed = TerminateAndReap(pids, timeout); killed > 0) {
    return absl::DeadlineExceededError(absl::StrCat(killed, " agent(s) did not exit within ",
                                                    absl::FormatDuration(timeout),
                                                    " of SIGTERM and were killed"));
  }
  return absl::OkStatus();
}

absl::Status LocalCluster::Stop(absl::Duration timeout) {
  absl::Status agents = StopAgents(timeout);
  std::vector<pid_t*> coordinators;
  for (CoordinatorProcess& p : coordinators_) coordinators.push_back(&p.pid);
  if (TerminateAndReap(coordinators, timeout) > 0 && agents.ok()) {
    agents = absl::DeadlineExceededError(absl::StrCat(
        "kvf-coordinator did not exit within ", absl::FormatDuration(timeout), " and was killed"));
  }
  if (TerminateAndReap({&etcd_pid_}, timeout) > 0 && agents.ok()) {
    agents = absl::DeadlineExceededError(absl::StrCat(
        "etcd did not exit within ", absl::FormatDuration(timeout), " and was killed"));
  }
  return agents;
}

absl::StatusOr<std::string> LocalCluster::Spawn(
    const std::vector<std::string>& args,
    const std::vector<std::pair<std::string, std::string>>& env, const std::string& prefix,
    const std::string& ready_prefix, pid_t* pid, const std::string& netns) {
  const std::string out_path = prefix + ".out";
  const std::string err_path = prefix + ".err";
  // A reused directory holds the last run's logs: gone before the child
  // starts, so the wait below cannot read the old ready line.
  ::unlink(out_path.c_str());
  ::unlink(err_path.c_str());
  SpawnOptions so;
  so.argv = args;
  so.in = Stdio::Null();
  so.out = Stdio::File(out_path);
  so.err = Stdio::File(err_path);
  // Nothing else of the parent's (its sockets, MPI's) leaks into the daemon.
  so.close_other_fds = true;
  so.die_with_parent = options_.die_with_parent;
  // Own process group: a terminal's Ctrl-C goes to the launcher only.
  so.own_process_group = true;
  so.netns = netns;
  if (!options_.log_level.empty() && ::getenv("KVF_LOG_LEVEL") == nullptr) {
    so.set_env.emplace_back("KVF_LOG_LEVEL", options_.log_level);
  }
  so.set_env.insert(so.set_env.end(), env.begin(), env.end());
  KVF_ASSIGN_OR_RETURN(ChildProcess process, ChildProcess::Spawn(so));
  // This class tracks its children by pid (Release(), --keep).
  const pid_t child = process.Release();
  *pid = child;
  const absl::Time deadline = absl::Now() + options_.start_timeout;
  for (;;) {
    std::string out = ReadFile(out_path);
    // Only whole lines count: the ready line is complete once its newline is.
    out.resize(out.rfind('\n') == std::string::npos ? 0 : out.rfind('\n'));
    for (absl::string_view l : absl::StrSplit(out, '\n')) {
      if (absl::StartsWith(l, ready_prefix)) return std::string(l);
    }
    std::string how;
    if (Reaped(child, &how)) {
      *pid = -1;
      return absl::InternalError(
          absl::StrCat(args[0], " ", how, " before it was ready; stderr: ", TailLog(prefix)));
    }
    if (absl::Now() > deadline) {
      KillAndReap(child);
      *pid = -1;
      return absl::DeadlineExceededError(absl::StrCat(args[0], " printed no '", ready_prefix,
                                                      "' line in time; stderr: ", TailLog(prefix)));
    }
    absl::SleepFor(absl::Milliseconds(5));
  }
}

int LocalCluster::running_agents() const {
  int n = 0;
  for (const AgentProcess& a : agents_) n += a.pid > 0 ? 1 : 0;
  return n;
}

absl::StatusOr<int> LocalCluster::StartAgent(std::string domain) {
  if (agent_bin_.empty()) {
    agent_bin_ = options_.agent_bin;
    if (agent_bin_.empty()) {
      absl::StatusOr<std::string> found = FindBinary("kvf-agent");
      if (!found.ok()) return absl::UnimplementedError(std::string(found.status().message()));
      agent_bin_ = *found;
    }
  }
  const int index = static_cast<int>(agents_.size());
  if (domain.empty()) {
    domain = options_.failure_domains > 0 ? absl::StrCat("d", index % options_.failure_domains)
                                          : absl::StrCat("d", index);
  }
  AgentProcess a;
  a.failure_domain = domain;
  a.log_prefix = absl::StrCat(dir_, "/agent-", index);
  auto at = [index](const std::vector<std::string>& v, const std::string& otherwise) {
    return static_cast<size_t>(index) < v.size() ? v[index] : otherwise;
  };
  const std::string host = at(options_.agent_hosts, options_.host);
  std::vector<std::string> argv = {agent_bin_,
                                   absl::StrCat("--coordinator=", coordinator_),
                                   absl::StrCat("--token_file=", token_file_),
                                   absl::StrCat("--listen=", host, ":0"),
                                   absl::StrCat("--http_listen=", host, ":0"),
                                   absl::StrCat("--host_bytes=", options_.host_bytes),
                                   absl::StrCat("--failure_domain=", domain)};
  if (!options_.ucx_tls.empty()) argv.push_back(absl::StrCat("--ucx_tls=", options_.ucx_tls));
  if (!options_.tls_cert.empty()) argv.push_back(absl::StrCat("--tls_cert=", options_.tls_cert));
  if (!options_.tls_key.empty()) argv.push_back(absl::StrCat("--tls_key=", options_.tls_key));
  if (!options_.tls_ca.empty()) argv.push_back(absl::StrCat("--tls_ca=", options_.tls_ca));
  // "{agent}" in an extra flag is this agent's index: per-agent paths
  // (--disk_path=/ssd/kvf-{agent}) from one list of flags.
  for (const std::string& f : options_.extra_agent_flags) {
    argv.push_back(absl::StrReplaceAll(f, {{"{agent}", absl::StrCat(index)}}));
  }
  KVF_ASSIGN_OR_RETURN(std::string line,
                       Spawn(argv, options_.agent_env, a.log_prefix, "kvf-agent ready ", &a.pid,
                             at(options_.agent_netns, "")));
  uint32_t node = 0;
  if (!absl::SimpleAtoi(Field(line, "node"), &node)) {
    KillAndReap(a.pid);
    return absl::InternalError(absl::StrCat("no node= in the agent's ready line: ", line));
  }
  a.node = node;
  a.control = Field(line, "control");
  a.http = Field(line, "http");
  agents_.push_back(std::move(a));
  return index;
}

absl::Status LocalCluster::SignalAgent(int index, int signal, absl::Duration timeout) {
  if (index < 0 || index >= static_cast<int>(agents_.size()) || agents_[index].pid <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("agent ", index, " is not running"));
  }
  AgentProcess& a = agents_[index];
  if (::kill(a.pid, signal) != 0) return absl::InternalError("kill failed");
  if (signal != SIGKILL && signal != SIGTERM) return absl::OkStatus();
  const absl::Time deadline = absl::Now() + timeout;
  std::string how;
  while (!Reaped(a.pid, &how)) {
    if (absl::Now() > deadline) {
      KillAndReap(a.pid);
      a.pid = -1;
      return absl::DeadlineExceededError(absl::StrCat("agent ", index, " did not exit in time"));
    }
    absl::SleepFor(absl::Milliseconds(5));
  }
  a.pid = -1;
  return absl::OkStatus();
}

absl::StatusOr<ClusterMap> LocalCluster::GetClusterMap() const {
  // Any coordinator serves the map: the first that answers. With one,
  // across its restart: wait for the connection, not fail at once.
  const size_t n = rpc_->stubs.size();
  grpc::Status s(grpc::StatusCode::UNAVAILABLE, "no coordinator");
  for (size_t i = 0; i < n; ++i) {
    if (n > 1 && i < coordinators_.size() && coordinators_[i].pid <= 0) continue;
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", absl::StrCat("Bearer ", options_.token));
    ctx.set_deadline(std::chrono::system_clock::now() +
                     (n > 1 ? std::chrono::seconds(2) : std::chrono::seconds(5)));
    ctx.set_wait_for_ready(n == 1);
    proto::ClusterMap pm;
    s = rpc_->stubs[i]->GetClusterMap(&ctx, proto::GetClusterMapRequest(), &pm);
    if (s.ok()) return ClusterMapFromProto(pm);
  }
  return FromGrpcStatus(s);
}

absl::Status LocalCluster::WaitForMap(const std::function<bool(const ClusterMap&)>& pred,
                                      absl::Time deadline) const {
  absl::Status last;
  for (;;) {
    auto map = GetClusterMap();
    if (map.ok() && pred(*map)) return absl::OkStatus();
    if (!map.ok()) last = map.status();
    if (absl::Now() > deadline) {
      return absl::DeadlineExceededError(absl::StrCat(
          "cluster map condition not reached in time",
          map.ok() ? absl::StrCat(" (epoch ", map->epoch, ", nodes:", Describe(*map), ")")
                   : absl::StrCat(": ", last.ToString())));
    }
    absl::SleepFor(absl::Milliseconds(20));
  }
}

absl::Status LocalCluster::WaitForActive(int n, absl::Time deadline) const {
  return WaitForMap(
      [n](const ClusterMap& m) {
        int active = 0;
        for (const NodeInfo& node : m.nodes) {
          if (node.state == NodeState::kActive) ++active;
          if (node.state == NodeState::kJoining || node.state == NodeState::kDraining) return false;
        }
        return active == n;
      },
      deadline);
}

std::string LocalCluster::TailLog(const std::string& log_prefix, size_t max_bytes) const {
  std::string err = ReadFile(log_prefix + ".err");
  if (err.size() > max_bytes) err = err.substr(err.size() - max_bytes);
  return err;
}

}  // namespace kvf::launch
