#include "tools/launch/netns_topology.h"

#include <dirent.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/logging.h"
#include "common/status_macros.h"

namespace kvf::launch {
namespace {

constexpr char kNetnsDir[] = "/var/run/netns";  // where `ip netns add` mounts them
constexpr char kBridge[] = "kvfbr";
constexpr char kHostDev[] = "eth0";
constexpr int kMaxHosts = 250;  // .1 .. .250 in the /24
constexpr absl::Duration kLinkUpTimeout = absl::Seconds(10);

std::string SwitchPort(int i) { return absl::StrCat("kvfh", i); }

// iproute2's `ip`, or nullptr. Looked up before any fork, so the child only
// calls execv.
const char* IpBinary() {
  for (const char* path : {"/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"}) {
    if (access(path, X_OK) == 0) return path;
  }
  return nullptr;
}

// Runs `ip <args>` and returns its output (stdout and stderr together). A
// non-zero exit is an error of `code` that carries the command and output.
absl::StatusOr<std::string> RunIp(const std::vector<std::string>& args,
                                  absl::StatusCode code = absl::StatusCode::kInternal) {
  const char* ip = IpBinary();
  if (ip == nullptr) {
    return absl::UnavailableError("iproute2's `ip` not found in /usr/sbin, /sbin, /usr/bin, /bin");
  }
  const std::string command = absl::StrCat("ip ", absl::StrJoin(args, " "));
  // Everything the child needs is built before fork: it allocates nothing.
  std::vector<char*> argv;
  argv.push_back(const_cast<char*>(ip));
  for (const std::string& arg : args) argv.push_back(const_cast<char*>(arg.c_str()));
  argv.push_back(nullptr);

  int out[2];
  if (pipe2(out, O_CLOEXEC) != 0) {
    return absl::InternalError(absl::StrCat("pipe for `", command, "`: ", strerror(errno)));
  }
  const pid_t pid = fork();
  if (pid < 0) {
    const int err = errno;
    close(out[0]);
    close(out[1]);
    return absl::InternalError(absl::StrCat("fork for `", command, "`: ", strerror(err)));
  }
  if (pid == 0) {
    dup2(out[1], STDOUT_FILENO);  // dup2 clears O_CLOEXEC on the copies
    dup2(out[1], STDERR_FILENO);
    execv(ip, argv.data());
    _exit(127);
  }
  close(out[1]);
  std::string output;
  char buf[4096];
  for (;;) {
    const ssize_t n = read(out[0], buf, sizeof(buf));
    if (n > 0) {
      output.append(buf, static_cast<size_t>(n));
    } else if (n == 0 || errno != EINTR) {
      break;
    }
  }
  close(out[0]);
  int wstatus = 0;
  while (waitpid(pid, &wstatus, 0) < 0 && errno == EINTR) {
  }
  if (WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 0) return output;
  const std::string how = WIFEXITED(wstatus) ? absl::StrCat("exit ", WEXITSTATUS(wstatus))
                                             : absl::StrCat("signal ", WTERMSIG(wstatus));
  return absl::Status(
      code, absl::StrCat("`", command, "`: ", how, ": ", absl::StripAsciiWhitespace(output)));
}

absl::Status Ip(const std::vector<std::string>& args,
                absl::StatusCode code = absl::StatusCode::kInternal) {
  return RunIp(args, code).status();
}

std::atomic<int> next_topology{0};

}  // namespace

absl::StatusOr<std::unique_ptr<NetnsTopology>> NetnsTopology::Create(int hosts,
                                                                     const std::string& prefix) {
  if (hosts < 1 || hosts > kMaxHosts) {
    return absl::InvalidArgumentError(
        absl::StrCat("NetnsTopology: hosts = ", hosts, ", must be 1..", kMaxHosts));
  }
  if (prefix.empty() || absl::StrContains(prefix, '/')) {
    return absl::InvalidArgumentError(absl::StrCat("NetnsTopology: bad prefix '", prefix, "'"));
  }
  if (geteuid() != 0) {
    return absl::UnavailableError(
        absl::StrCat("network namespaces need root (running as euid ", geteuid(), ")"));
  }
  std::unique_ptr<NetnsTopology> topology(new NetnsTopology());
  // On error, the destructor removes whatever Build made.
  KVF_RETURN_IF_ERROR(topology->Build(hosts, prefix));
  return topology;
}

absl::Status NetnsTopology::Build(int hosts, const std::string& prefix) {
  const uint32_t pid = static_cast<uint32_t>(getpid());
  const uint32_t seq = static_cast<uint32_t>(next_topology.fetch_add(1));
  name_prefix_ = absl::StrCat(prefix, pid, "-", seq, "-");
  // Each topology is sealed in its own namespaces, so equal subnets would not
  // clash; distinct ones keep logs and captures unambiguous.
  const uint32_t net = (pid * 16 + seq) & 0xffff;
  const std::string net24 = absl::StrCat("10.", net >> 8, ".", net & 0xff, ".");
  subnet_ = absl::StrCat(net24, "0/24");
  switch_netns_ = name_prefix_ + "sw";

  // The first namespace, the bridge and the first veth pair probe what this
  // kernel and process can do: failing there means "not available here".
  constexpr auto kProbe = absl::StatusCode::kUnavailable;
  KVF_RETURN_IF_ERROR(AddNetns(switch_netns_, kProbe));
  KVF_RETURN_IF_ERROR(
      Ip({"-n", switch_netns_, "link", "add", kBridge, "type", "bridge", "forward_delay", "0"},
         kProbe));
  KVF_RETURN_IF_ERROR(Ip({"-n", switch_netns_, "link", "set", kBridge, "up"}));

  for (int i = 0; i < hosts; ++i) {
    const std::string netns = absl::StrCat(name_prefix_, "h", i);
    const std::string port = SwitchPort(i);
    const std::string address = absl::StrCat(net24, i + 1);
    KVF_RETURN_IF_ERROR(AddNetns(netns, i == 0 ? kProbe : absl::StatusCode::kInternal));
    host_netns_.push_back(netns);
    host_address_.push_back(address);
    // Made inside the switch namespace, the peer placed straight into the
    // host's: neither end ever exists in the caller's namespace.
    KVF_RETURN_IF_ERROR(Ip({"-n", switch_netns_, "link", "add", port, "type", "veth", "peer",
                            "name", kHostDev, "netns", netns},
                           i == 0 ? kProbe : absl::StatusCode::kInternal));
    KVF_RETURN_IF_ERROR(Ip({"-n", switch_netns_, "link", "set", port, "master", kBridge}));
    KVF_RETURN_IF_ERROR(Ip({"-n", switch_netns_, "link", "set", port, "up"}));
    KVF_RETURN_IF_ERROR(Ip({"-n", netns, "addr", "add", address + "/24", "dev", kHostDev}));
    KVF_RETURN_IF_ERROR(Ip({"-n", netns, "link", "set", kHostDev, "up"}));
  }
  // The kernel finishes bringing links up asynchronously; a frame sent
  // before that is dropped, so wait here rather than let a first connect
  // stall on a SYN retransmit.
  for (int i = 0; i < hosts; ++i) {
    KVF_RETURN_IF_ERROR(WaitLinkUp(switch_netns_, SwitchPort(i)));
    KVF_RETURN_IF_ERROR(WaitLinkUp(host_netns_[i], kHostDev));
  }
  return absl::OkStatus();
}

absl::Status NetnsTopology::AddNetns(const std::string& name, absl::StatusCode code) {
  KVF_RETURN_IF_ERROR(Ip({"netns", "add", name}, code));
  created_.push_back(name);
  return Ip({"-n", name, "link", "set", "lo", "up"});
}

NetnsTopology::~NetnsTopology() {
  // Hosts first, the switch last (reverse order of creation). Deleting a
  // namespace deletes the interfaces in it, and a veth pair goes with
  // either of its ends.
  for (auto it = created_.rbegin(); it != created_.rend(); ++it) {
    absl::Status status = Ip({"netns", "delete", *it});
    if (!status.ok()) {
      KVF_LOG(WARNING) << "NetnsTopology: " << status;
    }
  }
}

absl::Status NetnsTopology::CutLink(int i) {
  if (i < 0 || i >= hosts()) return absl::OutOfRangeError(absl::StrCat("no host ", i));
  return Ip({"-n", switch_netns_, "link", "set", SwitchPort(i), "down"});
}

absl::Status NetnsTopology::HealLink(int i) {
  if (i < 0 || i >= hosts()) return absl::OutOfRangeError(absl::StrCat("no host ", i));
  KVF_RETURN_IF_ERROR(Ip({"-n", switch_netns_, "link", "set", SwitchPort(i), "up"}));
  KVF_RETURN_IF_ERROR(WaitLinkUp(switch_netns_, SwitchPort(i)));
  return WaitLinkUp(host_netns_[i], kHostDev);
}

// Polls until `dev` is operationally up and, for a bridge port, forwarding.
absl::Status NetnsTopology::WaitLinkUp(const std::string& netns, const std::string& dev) {
  const absl::Time deadline = absl::Now() + kLinkUpTimeout;
  std::string last;
  for (;;) {
    KVF_ASSIGN_OR_RETURN(last, RunIp({"-n", netns, "-d", "-o", "link", "show", "dev", dev}));
    const bool up = absl::StrContains(last, " state UP ");
    const bool port_ok =
        !absl::StrContains(last, "bridge_slave") || absl::StrContains(last, "state forwarding");
    if (up && port_ok) return absl::OkStatus();
    if (absl::Now() > deadline) break;
    absl::SleepFor(absl::Milliseconds(5));  // poll interval, not synchronisation
  }
  return absl::DeadlineExceededError(absl::StrCat(dev, " in ", netns, " not up after ",
                                                  absl::FormatDuration(kLinkUpTimeout), ": ",
                                                  absl::StripAsciiWhitespace(last)));
}

absl::StatusOr<std::vector<std::string>> NetnsTopology::ListNetns(const std::string& prefix) {
  std::vector<std::string> names;
  DIR* dir = opendir(kNetnsDir);
  if (dir == nullptr) {
    const int err = errno;
    if (err == ENOENT) return names;  // no namespace was ever named here
    return absl::InternalError(absl::StrCat("opendir ", kNetnsDir, ": ", strerror(err)));
  }
  while (const dirent* entry = readdir(dir)) {
    const std::string name = entry->d_name;
    if (name != "." && name != ".." && absl::StartsWith(name, prefix)) names.push_back(name);
  }
  closedir(dir);
  return names;
}

absl::StatusOr<int> NetnsTopology::CleanupStale(const std::string& prefix) {
  KVF_ASSIGN_OR_RETURN(std::vector<std::string> names, ListNetns(prefix));
  int removed = 0;
  absl::Status first_error;
  for (const std::string& name : names) {
    // "<prefix><pid>-...": anything else is not ours.
    const std::string rest = name.substr(prefix.size());
    const size_t dash = rest.find('-');
    uint32_t pid = 0;
    if (dash == std::string::npos || !absl::SimpleAtoi(rest.substr(0, dash), &pid) || pid == 0) {
      continue;
    }
    if (kill(static_cast<pid_t>(pid), 0) == 0 || errno != ESRCH) continue;  // owner alive
    absl::Status status = Ip({"netns", "delete", name});
    if (status.ok()) {
      ++removed;
    } else if (first_error.ok()) {
      first_error = status;
    }
  }
  if (!first_error.ok()) return first_error;
  return removed;
}

NetnsFd::~NetnsFd() {
  if (fd_ >= 0) close(fd_);
}

NetnsFd& NetnsFd::operator=(NetnsFd&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) close(fd_);
    fd_ = other.release();
  }
  return *this;
}

absl::StatusOr<NetnsFd> OpenNetnsFd(const std::string& name) {
  const std::string path = absl::StrCat(kNetnsDir, "/", name);
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int err = errno;
    const std::string message = absl::StrCat("open ", path, ": ", strerror(err));
    return err == ENOENT ? absl::NotFoundError(message) : absl::UnavailableError(message);
  }
  return NetnsFd(fd);
}

int EnterNetnsFd(int fd) { return setns(fd, CLONE_NEWNET) == 0 ? 0 : errno; }

absl::Status EnterNetns(const std::string& name) {
  KVF_ASSIGN_OR_RETURN(NetnsFd fd, OpenNetnsFd(name));
  if (const int err = EnterNetnsFd(fd.get()); err != 0) {
    return absl::UnavailableError(absl::StrCat("setns to ", name, ": ", strerror(err)));
  }
  return absl::OkStatus();
}

}  // namespace kvf::launch
