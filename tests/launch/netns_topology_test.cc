// NetnsTopology: hosts in their own network namespaces reach each other over
// the switch until a link is cut, and leave nothing behind. Needs root; skips
// with the reason where namespaces cannot be made.
//
// Everything that runs inside a host namespace is a forked child that enters
// it with EnterNetnsFd, as a launcher would before exec.
#include "tools/launch/netns_topology.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace kvf::launch {
namespace {

constexpr int kCutTimeoutMs = 1000;  // how long a cut-off connect is given
constexpr int kOkTimeoutMs = 5000;   // generous: the machine may be loaded

// A forked child, SIGKILLed and reaped when this goes away.
struct Child {
  pid_t pid = -1;
  ~Child() { Stop(); }
  void Stop() {
    if (pid > 0) {
      kill(pid, SIGKILL);
      waitpid(pid, nullptr, 0);
    }
    pid = -1;
  }
};

sockaddr_in Ipv4(const std::string& address, uint16_t port) {
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(port);
  inet_pton(AF_INET, address.c_str(), &sa.sin_addr);
  return sa;
}

// Starts a TCP listener on `address` (kernel-chosen port) inside `netns`; it
// answers every connection with the byte 'k'. Returns the port, or 0 with a
// test failure.
uint16_t StartListener(const std::string& netns, const std::string& address, Child* child) {
  absl::StatusOr<NetnsFd> ns = OpenNetnsFd(netns);
  EXPECT_TRUE(ns.ok()) << ns.status();
  if (!ns.ok()) return 0;
  const sockaddr_in sa = Ipv4(address, 0);
  int ready[2];
  if (pipe2(ready, O_CLOEXEC) != 0) {
    ADD_FAILURE() << "pipe: " << strerror(errno);
    return 0;
  }
  child->pid = fork();
  if (child->pid == 0) {  // only system calls from here on
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (EnterNetnsFd(ns->get()) != 0) _exit(2);
    const int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in bound{};
    socklen_t len = sizeof(bound);
    if (s < 0 || bind(s, reinterpret_cast<const sockaddr*>(&sa), sizeof(sa)) != 0 ||
        listen(s, 16) != 0 || getsockname(s, reinterpret_cast<sockaddr*>(&bound), &len) != 0) {
      _exit(3);
    }
    if (write(ready[1], &bound.sin_port, sizeof(bound.sin_port)) != sizeof(bound.sin_port))
      _exit(4);
    for (;;) {
      const int c = accept(s, nullptr, nullptr);
      if (c >= 0) {
        (void)!write(c, "k", 1);
        close(c);
      }
    }
  }
  close(ready[1]);
  uint16_t port_be = 0;
  pollfd pfd{ready[0], POLLIN, 0};
  const bool got = poll(&pfd, 1, kOkTimeoutMs) == 1 &&
                   read(ready[0], &port_be, sizeof(port_be)) == sizeof(port_be);
  close(ready[0]);
  EXPECT_TRUE(got) << "listener in " << netns << " on " << address << " did not start";
  return got ? ntohs(port_be) : 0;
}

// Connects from inside `netns` to address:port and reads the listener's
// byte, each step within `timeout_ms`. Returns 0, or the errno that stopped
// it (ETIMEDOUT when the time ran out).
int ConnectFrom(const std::string& netns, const std::string& address, uint16_t port,
                int timeout_ms) {
  absl::StatusOr<NetnsFd> ns = OpenNetnsFd(netns);
  if (!ns.ok()) {
    ADD_FAILURE() << ns.status();
    return -1;
  }
  const sockaddr_in sa = Ipv4(address, port);
  const pid_t pid = fork();
  if (pid == 0) {  // only system calls from here on
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (const int err = EnterNetnsFd(ns->get()); err != 0) _exit(err);
    const int s = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (s < 0) _exit(errno);
    if (connect(s, reinterpret_cast<const sockaddr*>(&sa), sizeof(sa)) != 0) {
      if (errno != EINPROGRESS) _exit(errno);
      pollfd pfd{s, POLLOUT, 0};
      if (poll(&pfd, 1, timeout_ms) != 1) _exit(ETIMEDOUT);
      int err = 0;
      socklen_t len = sizeof(err);
      if (getsockopt(s, SOL_SOCKET, SO_ERROR, &err, &len) != 0) _exit(errno);
      if (err != 0) _exit(err);
    }
    pollfd pfd{s, POLLIN, 0};
    if (poll(&pfd, 1, timeout_ms) != 1) _exit(ETIMEDOUT);
    char byte = 0;
    _exit(read(s, &byte, 1) == 1 && byte == 'k' ? 0 : EPROTO);
  }
  if (pid < 0) {
    ADD_FAILURE() << "fork: " << strerror(errno);
    return -1;
  }
  int wstatus = 0;
  while (waitpid(pid, &wstatus, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(wstatus) ? WEXITSTATUS(wstatus) : -1;
}

std::string Describe(int result) {
  return result == 0 ? "connected" : result < 0 ? "child died" : strerror(result);
}

// Interfaces of the namespace this test runs in whose name starts with "kvf".
std::vector<std::string> OurInterfacesHere() {
  std::vector<std::string> names;
  if (struct if_nameindex* list = if_nameindex()) {
    for (struct if_nameindex* it = list; it->if_index != 0; ++it) {
      if (absl::StartsWith(it->if_name, "kvf")) names.push_back(it->if_name);
    }
    if_freenameindex(list);
  }
  return names;
}

TEST(NetnsTopology, CutLinkIsolatesOneHostUntilHealed) {
  absl::StatusOr<std::unique_ptr<NetnsTopology>> created = NetnsTopology::Create(3);
  if (absl::IsUnavailable(created.status())) {
    GTEST_SKIP() << "network namespaces unavailable: " << created.status();
  }
  ASSERT_TRUE(created.ok()) << created.status();
  std::unique_ptr<NetnsTopology> topo = std::move(created).value();
  const absl::StatusOr<int> stale = NetnsTopology::CleanupStale();
  EXPECT_TRUE(stale.ok()) << stale.status();
  EXPECT_TRUE(OurInterfacesHere().empty()) << "bridge or veth ends in the caller's namespace";

  Child listener;
  const uint16_t port = StartListener(topo->host_netns(0), topo->host_address(0), &listener);
  ASSERT_NE(port, 0);
  const std::string& server = topo->host_address(0);

  int r = ConnectFrom(topo->host_netns(2), server, port, kOkTimeoutMs);
  EXPECT_EQ(r, 0) << "host 2 -> host 0 before the cut: " << Describe(r);
  r = ConnectFrom(topo->host_netns(1), server, port, kOkTimeoutMs);
  EXPECT_EQ(r, 0) << "host 1 -> host 0 before the cut: " << Describe(r);

  const absl::Status cut = topo->CutLink(2);
  ASSERT_TRUE(cut.ok()) << cut;
  r = ConnectFrom(topo->host_netns(2), server, port, kCutTimeoutMs);
  EXPECT_NE(r, 0) << "host 2 reached host 0 across a cut link";
  r = ConnectFrom(topo->host_netns(1), server, port, kOkTimeoutMs);
  EXPECT_EQ(r, 0) << "host 1 -> host 0 while host 2 is cut: " << Describe(r);

  const absl::Status healed = topo->HealLink(2);
  ASSERT_TRUE(healed.ok()) << healed;
  r = ConnectFrom(topo->host_netns(2), server, port, kOkTimeoutMs);
  EXPECT_EQ(r, 0) << "host 2 -> host 0 after healing: " << Describe(r);

  const std::string prefix = topo->name_prefix();
  listener.Stop();  // it would keep host 0's namespace alive
  topo.reset();
  const absl::StatusOr<std::vector<std::string>> left = NetnsTopology::ListNetns(prefix);
  ASSERT_TRUE(left.ok()) << left.status();
  EXPECT_TRUE(left->empty()) << "left behind: " << left->front();
  EXPECT_TRUE(OurInterfacesHere().empty());
}

TEST(NetnsTopology, CleanupStaleRemovesWhatACrashedRunLeft) {
  // A child builds a topology and exits without its destructor, as a crashed
  // test would. The prefix is ours alone, so runs side by side don't meet.
  const std::string prefix = absl::StrCat("kvfstale", getpid(), "x");
  int why[2];  // the child's error, if it has one
  ASSERT_EQ(pipe2(why, O_CLOEXEC), 0) << strerror(errno);
  Child crashed;
  crashed.pid = fork();
  if (crashed.pid == 0) {
    absl::StatusOr<std::unique_ptr<NetnsTopology>> topo = NetnsTopology::Create(1, prefix);
    if (topo.ok()) _exit(0);
    const std::string message = topo.status().ToString();
    (void)!write(why[1], message.data(), message.size());
    _exit(absl::IsUnavailable(topo.status()) ? 77 : 1);
  }
  close(why[1]);
  std::string message(512, '\0');
  const ssize_t n = read(why[0], message.data(), message.size());  // EOF when the child exits
  message.resize(n > 0 ? n : 0);
  close(why[0]);
  int wstatus = 0;
  ASSERT_EQ(waitpid(crashed.pid, &wstatus, 0), crashed.pid);
  crashed.pid = -1;
  ASSERT_TRUE(WIFEXITED(wstatus));
  if (WEXITSTATUS(wstatus) == 77) GTEST_SKIP() << "network namespaces unavailable: " << message;
  ASSERT_EQ(WEXITSTATUS(wstatus), 0) << message;

  absl::StatusOr<std::vector<std::string>> left = NetnsTopology::ListNetns(prefix);
  ASSERT_TRUE(left.ok()) << left.status();
  ASSERT_EQ(left->size(), 2u);  // switch and host 0
  const absl::StatusOr<int> removed = NetnsTopology::CleanupStale(prefix);
  ASSERT_TRUE(removed.ok()) << removed.status();
  EXPECT_EQ(*removed, 2);
  left = NetnsTopology::ListNetns(prefix);
  ASSERT_TRUE(left.ok()) << left.status();
  EXPECT_TRUE(left->empty());
}

TEST(NetnsTopology, RejectsBadArguments) {
  EXPECT_TRUE(absl::IsInvalidArgument(NetnsTopology::Create(0).status()));
  EXPECT_TRUE(absl::IsInvalidArgument(NetnsTopology::Create(251).status()));
  EXPECT_TRUE(absl::IsInvalidArgument(NetnsTopology::Create(1, "a/b").status()));
  EXPECT_TRUE(absl::IsNotFound(OpenNetnsFd("kvf-no-such-namespace").status()));
}

}  // namespace
}  // namespace kvf::launch
