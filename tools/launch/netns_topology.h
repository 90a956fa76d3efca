// kvf::launch::NetnsTopology: hosts that really are apart, on one machine,
// for the tests and benchmarks that must not find a shared-memory path between
// processes (the `netns` test suites, kvf-bench --netns, kvf-cluster-bench
// --netns, the partition test). Each host is a Linux network namespace with
// one interface, `eth0`, plugged into a bridge that lives in a namespace of
// its own (the "switch"), so a test can cut one host off the network while
// its processes keep running:
//
//     switch ns "<p>sw":  kvfbr (bridge) -- kvfh0, kvfh1, ...  (veth ends)
//     host ns "<p>h<i>":  lo, eth0 = 10.A.B.<i+1>/24            (peer of kvfh<i>)
//
// where <p> = "<prefix><pid>-<n>-" (n counts topologies in this process).
// Nothing is created in the caller's namespace: each veth pair is made from
// inside the switch namespace with its peer placed straight into the host's.
// The /24 (10.A.B) is derived from the pid and n, so two test processes side
// by side (ctest -j2) use different names and different subnets.
//
// Namespaces are made and removed with iproute2 (`ip`, run as a child
// process), which needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN). Where that is
// missing Create() returns UNAVAILABLE with the reason, for GTEST_SKIP. A
// process that crashes leaves its namespaces behind; CleanupStale() removes
// those of dead processes (the `netns` suites and the benches call it first).
//
// Starting a process inside host i: SpawnOptions::netns (spawn.h) and
// LocalClusterOptions (local_cluster.h, PlaceOnHosts) do it for you. By hand:
// open the namespace before fork (OpenNetnsFd), enter it in the child
// (EnterNetnsFd, async-signal-safe), then exec:
//
//     KVF_ASSIGN_OR_RETURN(auto topo, NetnsTopology::Create(3));
//     KVF_ASSIGN_OR_RETURN(NetnsFd ns, OpenNetnsFd(topo->host_netns(0)));
//     pid_t pid = fork();
//     if (pid == 0) {
//       if (EnterNetnsFd(ns.get()) != 0) _exit(127);
//       execv(bin, argv);  // binds topo->host_address(0)
//       _exit(127);
//     }
//     ...
//     KVF_RETURN_IF_ERROR(topo->CutLink(0));   // host 0 is alone now
//     KVF_RETURN_IF_ERROR(topo->HealLink(0));
//
// Thread-compatible: use one NetnsTopology from one thread at a time.
#ifndef KVF_TOOLS_LAUNCH_NETNS_TOPOLOGY_H_
#define KVF_TOOLS_LAUNCH_NETNS_TOPOLOGY_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace kvf::launch {

class NetnsTopology {
 public:
  // Creates the switch namespace with its bridge and `hosts` host namespaces
  // (1..250), each joined to the bridge, with loopback and eth0 up and an
  // address in the topology's /24. Blocks while `ip` runs (tens of ms).
  //
  // Errors: UNAVAILABLE when this process cannot make namespaces, bridges or
  // veth pairs (not root, no `ip`, a kernel without them; the message says
  // which), INVALID_ARGUMENT for a bad `hosts`, INTERNAL for any later `ip`
  // failure (with its output). On error everything made so far is removed.
  static absl::StatusOr<std::unique_ptr<NetnsTopology>> Create(int hosts,
                                                               const std::string& prefix = "kvf");

  // Removes every namespace of the topology, and with them the bridge and the
  // veth pairs. A process still running inside a host namespace keeps that
  // (now nameless) namespace alive until it exits; stop such processes first.
  ~NetnsTopology();
  NetnsTopology(const NetnsTopology&) = delete;
  NetnsTopology& operator=(const NetnsTopology&) = delete;

  int hosts() const { return static_cast<int>(host_netns_.size()); }
  // Host i's namespace name (for OpenNetnsFd, `ip netns exec`) and address.
  const std::string& host_netns(int i) const { return host_netns_[i]; }
  const std::string& host_address(int i) const { return host_address_[i]; }
  const std::string& switch_netns() const { return switch_netns_; }
  // "10.A.B.0/24".
  const std::string& subnet() const { return subnet_; }
  // Every namespace of this topology starts with this ("kvf4242-0-").
  const std::string& name_prefix() const { return name_prefix_; }

  // CutLink(i) sets the switch's end of host i's cable down: host i sees its
  // carrier go, and no frame passes between it and any other host, while its
  // processes, sockets and addresses stay as they are (traffic within host i
  // still works). HealLink(i) sets it up again and returns once both ends
  // report the link up. INTERNAL with `ip`'s output on failure.
  absl::Status CutLink(int i);
  absl::Status HealLink(int i);

  // Removes namespaces named "<prefix><pid>-..." whose pid is no longer a
  // running process: what crashed runs left behind. Returns how many it
  // removed. Safe to run beside live topologies of the same prefix (their
  // pids are alive). Not safe across pid namespaces sharing /var/run/netns.
  static absl::StatusOr<int> CleanupStale(const std::string& prefix = "kvf");

  // Names of the named network namespaces (/var/run/netns, as `ip netns list`
  // shows them) that start with `prefix`.
  static absl::StatusOr<std::vector<std::string>> ListNetns(const std::string& prefix);

 private:
  NetnsTopology() = default;
  absl::Status Build(int hosts, const std::string& prefix);
  absl::Status AddNetns(const std::string& name, absl::StatusCode code);
  absl::Status WaitLinkUp(const std::string& netns, const std::string& dev);

  std::string name_prefix_;
  std::string subnet_;
  std::string switch_netns_;
  std::vector<std::string> host_netns_;
  std::vector<std::string> host_address_;
  // Namespaces that exist and are ours to delete, in creation order.
  std::vector<std::string> created_;
};

// A move-only owner of an open /var/run/netns/<name> file descriptor
// (O_CLOEXEC, so an exec'd program does not inherit it).
class NetnsFd {
 public:
  NetnsFd() = default;
  explicit NetnsFd(int fd) : fd_(fd) {}
  ~NetnsFd();
  NetnsFd(NetnsFd&& other) noexcept : fd_(other.release()) {}
  NetnsFd& operator=(NetnsFd&& other) noexcept;

  int get() const { return fd_; }
  int release() {
    int fd = fd_;
    fd_ = -1;
    return fd;
  }

 private:
  int fd_ = -1;
};

// Opens the named namespace. Call before fork. NOT_FOUND if there is no such
// namespace, or another error naming the path and errno.
absl::StatusOr<NetnsFd> OpenNetnsFd(const std::string& name);

// setns(fd, CLONE_NEWNET): moves the calling thread into that namespace.
// Returns 0, or the errno. Async-signal-safe (one system call, no
// allocation), so a forked child may call it before exec.
int EnterNetnsFd(int fd);

// Open + enter for code that is not between fork and exec. Note that setns
// affects only the calling thread and the threads it starts afterwards;
// sockets keep the namespace they were created in. A process that is to be
// a "client host" enters once, on its main thread, before it starts threads
// that open sockets (gRPC's, UCX's): threads started earlier stay behind.
absl::Status EnterNetns(const std::string& name);

}  // namespace kvf::launch

#endif  // KVF_TOOLS_LAUNCH_NETNS_TOPOLOGY_H_
