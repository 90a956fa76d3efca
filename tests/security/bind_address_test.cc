// Every listener binds only the configured address: a cluster started on
// 127.0.0.1 must not listen on any other interface. An adversarial run found
// UCX's TCP transport listening on the external interface as well, since it
// opens a listening socket on every network device it uses; kvf-agent now
// keeps UCX to the interface owning --data_listen_host (default: the host of
// --listen).
//
// For the coordinator and every agent this reads the process's listening TCP
// sockets from /proc: /proc/<pid>/net/tcp{,6} list every socket of the
// network namespace; those whose inode is one of the process's descriptors
// (/proc/<pid>/fd/* -> "socket:[inode]") in state 0A (LISTEN) are its own.
// UCX runs with tcp in ucx_tls so its listener exists, and a put/get round
// trip shows the data plane still works on loopback alone. A control agent
// with --data_listen_host=0.0.0.0 shows the check sees an external listener
// where there is one.
#include <arpa/inet.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "client/client.h"
#include "common/block_hash.h"
#include "gtest/gtest.h"
#include "tests/cluster/local_cluster.h"
#include "transport/net_devices.h"

namespace kvf::testing {
namespace {

namespace fs = std::filesystem;

struct Listener {
  std::string address;  // "127.0.0.1", "::1", "0.0.0.0", ...
  int port = 0;
  std::string ToString() const {
    return address.find(':') != std::string::npos ? absl::StrCat("[", address, "]:", port)
                                                  : absl::StrCat(address, ":", port);
  }
  bool loopback() const {
    return address == "::1" || absl::StartsWith(address, "127.") ||
           absl::StartsWith(address, "::ffff:127.");
  }
};

// "0100007F" (IPv4, one little-endian word) or 32 hex digits (IPv6, four
// little-endian words) as /proc/net/tcp{,6} write them, to numeric text.
std::string ProcAddressToText(absl::string_view hex) {
  unsigned char bytes[16] = {};
  const size_t words = hex.size() / 8;
  for (size_t w = 0; w < words; ++w) {
    uint32_t v = 0;
    if (!absl::SimpleHexAtoi(hex.substr(w * 8, 8), &v)) return std::string(hex);
    // The kernel printed the word in host (little-endian) order.
    for (int b = 0; b < 4; ++b) bytes[w * 4 + b] = static_cast<unsigned char>(v >> (8 * b));
  }
  char text[INET6_ADDRSTRLEN] = {};
  if (inet_ntop(words == 1 ? AF_INET : AF_INET6, bytes, text, sizeof(text)) == nullptr) {
    return std::string(hex);
  }
  return text;
}

// The TCP sockets process `pid` listens on.
absl::StatusOr<std::vector<Listener>> ListeningSockets(pid_t pid) {
  const fs::path proc = fs::path("/proc") / std::to_string(pid);
  std::set<std::string> inodes;
  std::error_code ec;
  for (const fs::directory_entry& fd : fs::directory_iterator(proc / "fd", ec)) {
    std::error_code link_ec;
    const std::string target = fs::read_symlink(fd.path(), link_ec).string();
    if (link_ec || !absl::StartsWith(target, "socket:[")) continue;
    inodes.insert(target.substr(8, target.size() - 9));
  }
  if (ec)
    return absl::InternalError(
        absl::StrCat("cannot list ", (proc / "fd").string(), ": ", ec.message()));
  std::vector<Listener> out;
  for (const char* table : {"net/tcp", "net/tcp6"}) {
    std::ifstream in(proc / table);
    if (!in) continue;  // no IPv6
    std::string line;
    std::getline(in, line);  // header
    while (std::getline(in, line)) {
      // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode ...
      std::vector<absl::string_view> f = absl::StrSplit(line, ' ', absl::SkipEmpty());
      if (f.size() < 10 || f[3] != "0A" || inodes.count(std::string(f[9])) == 0) continue;
      std::vector<absl::string_view> local = absl::StrSplit(f[1], ':');
      if (local.size() != 2) continue;
      uint32_t port = 0;
      if (!absl::SimpleHexAtoi(local[1], &port)) continue;
      out.push_back(Listener{ProcAddressToText(local[0]), static_cast<int>(port)});
    }
  }
  return out;
}

std::string Describe(const std::vector<Listener>& ls) {
  std::vector<std::string> s;
  for (const Listener& l : ls) s.push_back(l.ToString());
  return s.empty() ? "(none)" : absl::StrJoin(s, " ");
}

class BindAddressTest : public ::testing::Test {
 protected:
  void SetUp() override {
#ifndef KVF_AGENT_BIN
    GTEST_SKIP() << "kvf-agent is not built; skipping cluster tests";
#else
    if (std::string(KVF_AGENT_BIN).empty()) GTEST_SKIP() << "kvf-agent is not built";
#endif
    LocalClusterOptions o;
    o.agents = 2;
    o.replication = 2;
    o.host = "127.0.0.1";
    // TCP among UCX's transports, so its listener exists and carries data.
    o.ucx_tls = "tcp,self";
    absl::StatusOr<std::unique_ptr<LocalCluster>> c = LocalCluster::Start(o);
    ASSERT_TRUE(c.ok()) << c.status();
    cluster_ = std::move(*c);
  }

  void TearDown() override {
    if (HasFailure() && cluster_ != nullptr) {
      for (const AgentProcess& a : cluster_->agents()) {
        std::cerr << "---- " << a.log_prefix << ".err\n" << cluster_->TailLog(a.log_prefix) << "\n";
      }
    }
    cluster_.reset();  // kills the daemons by pid
  }

  std::unique_ptr<LocalCluster> cluster_;
};

TEST_F(BindAddressTest, EveryListenerOfALoopbackClusterIsOnLoopback) {
  struct Process {
    std::string name;
    pid_t pid;
    size_t min_listeners;  // gRPC + HTTP (+ UCX's TCP listener for agents)
  };
  std::vector<Process> processes = {{"kvf-coordinator", cluster_->coordinator_pid(), 2}};
  for (const AgentProcess& a : cluster_->agents()) {
    processes.push_back({absl::StrCat("kvf-agent node ", a.node), a.pid, 3});
  }
  for (const Process& p : processes) {
    ASSERT_GT(p.pid, 0) << p.name;
    absl::StatusOr<std::vector<Listener>> ls = ListeningSockets(p.pid);
    ASSERT_TRUE(ls.ok()) << p.name << ": " << ls.status();
    std::cout << p.name << " (pid " << p.pid << ") listens on " << Describe(*ls) << "\n";
    EXPECT_GE(ls->size(), p.min_listeners) << p.name << ": " << Describe(*ls);
    for (const Listener& l : *ls) {
      EXPECT_TRUE(l.loopback()) << p.name << " listens on " << l.ToString()
                                << ", not on loopback only";
    }
  }
}

TEST_F(BindAddressTest, DataPlaneWorksOnLoopbackAlone) {
  ClientOptions co;
  co.coordinator = cluster_->coordinator();
  co.token = cluster_->token();
  co.ucx_tls = cluster_->options().ucx_tls;
  absl::StatusOr<std::unique_ptr<Client>> client = Client::Connect(co);
  ASSERT_TRUE(client.ok()) << client.status();
  NamespaceSpec spec;
  spec.model_id = "bind-address-test";
  spec.layout = KvLayout{.num_layers = 2,
                         .num_kv_heads = 2,
                         .head_dim = 64,
                         .block_tokens = 16,
                         .dtype = DType::kFp16};
  spec.segment_blocks = 4;
  absl::StatusOr<Namespace> ns = (*client)->RegisterNamespace(spec);
  ASSERT_TRUE(ns.ok()) << ns.status();
  std::vector<uint32_t> tokens(8 * spec.layout.block_tokens);
  for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = static_cast<uint32_t>(i + 17);
  absl::StatusOr<std::vector<BlockKey>> chain =
      HashSequence(spec.hash, tokens, spec.layout.block_tokens);
  ASSERT_TRUE(chain.ok()) << chain.status();
  const size_t bytes = ns->BlockBytes();
  std::vector<std::vector<uint8_t>> data(8, std::vector<uint8_t>(bytes));
  std::vector<ConstBlockBuffer> src;
  for (size_t b = 0; b < data.size(); ++b) {
    for (size_t i = 0; i < bytes; ++i) data[b][i] = static_cast<uint8_t>(b * 37 + i);
    src.push_back({data[b].data(), bytes});
  }
  absl::StatusOr<BatchResult> put = (*client)->BatchPut(*ns, *chain, 0, src);
  ASSERT_TRUE(put.ok()) << put.status();
  ASSERT_TRUE(put->all_ok()) << put->FirstError();
  std::vector<std::vector<uint8_t>> back(8, std::vector<uint8_t>(bytes));
  std::vector<BlockBuffer> dst;
  for (auto& b : back) dst.push_back({b.data(), b.size()});
  absl::StatusOr<BatchResult> get = (*client)->BatchGet(*ns, *chain, 0, dst);
  ASSERT_TRUE(get.ok()) << get.status();
  ASSERT_TRUE(get->all_ok()) << get->FirstError();
  EXPECT_TRUE(back == data);
  // The client's own UCX worker (in this process) listens on loopback only
  // too, since its coordinator is on loopback.
  absl::StatusOr<std::vector<Listener>> mine = ListeningSockets(getpid());
  ASSERT_TRUE(mine.ok()) << mine.status();
  std::cout << "this test process (a client) listens on " << Describe(*mine) << "\n";
  for (const Listener& l : *mine) {
    EXPECT_TRUE(l.loopback()) << "the client listens on " << l.ToString();
  }
}

// The deployment docs/security.md asks for: the tenants' worker (no one-sided
// access) on the tenants' network, everything else on the cluster's own
// (loopback here).
TEST_F(BindAddressTest, TheTenantsWorkerListensWhereToldAndNothingElseDoes) {
  absl::StatusOr<std::vector<InterfaceAddress>> ifaces = LocalInterfaceAddresses();
  ASSERT_TRUE(ifaces.ok()) << ifaces.status();
  std::string external;
  for (const InterfaceAddress& i : *ifaces) {
    if (!i.loopback && i.address.find(':') == std::string::npos) external = i.address;
  }
  if (external.empty()) GTEST_SKIP() << "this machine has no non-loopback IPv4 interface";
  LocalClusterOptions o = cluster_->options();
  o.agents = 1;
  o.wait_active = false;
  o.coordinator_address = cluster_->coordinator();
  o.extra_agent_flags = {"--tenant_listen_host=" + external};
  o.dir = cluster_->dir() + "/tenants";
  absl::StatusOr<std::unique_ptr<LocalCluster>> split = LocalCluster::Start(o);
  ASSERT_TRUE(split.ok()) << split.status();
  absl::StatusOr<std::vector<Listener>> ls = ListeningSockets((*split)->agents()[0].pid);
  ASSERT_TRUE(ls.ok()) << ls.status();
  std::cout << "agent with its tenants' worker on " << external << " listens on "
            << Describe(*ls) << "\n";
  size_t outside = 0;
  for (const Listener& l : *ls) {
    if (l.loopback()) continue;
    ++outside;
    EXPECT_NE(l.ToString().find(external), std::string::npos)
        << "listens on " << l.ToString() << ", neither loopback nor " << external;
  }
  EXPECT_GE(outside, 1u) << "the tenants' worker is not listening on " << external;
  EXPECT_GE(ls->size() - outside, 3u) << "gRPC, HTTP and the trusted worker stay on loopback";
}

// The control: with every interface allowed, UCX listens on a non-loopback
// address (where the machine has one), and the check above would see it.
TEST_F(BindAddressTest, AgentAllowedEveryInterfaceIsSeenListeningOutside) {
  absl::StatusOr<std::vector<InterfaceAddress>> ifaces = LocalInterfaceAddresses();
  ASSERT_TRUE(ifaces.ok()) << ifaces.status();
  bool external = false;
  for (const InterfaceAddress& i : *ifaces) external |= !i.loopback;
  if (!external) GTEST_SKIP() << "this machine has no non-loopback interface";

  LocalClusterOptions o = cluster_->options();
  o.agents = 1;
  o.wait_active = false;
  o.coordinator_address = cluster_->coordinator();
  o.extra_agent_flags = {"--data_listen_host=0.0.0.0"};
  o.dir = cluster_->dir() + "/control";
  absl::StatusOr<std::unique_ptr<LocalCluster>> control = LocalCluster::Start(o);
  ASSERT_TRUE(control.ok()) << control.status();
  const pid_t pid = (*control)->agents()[0].pid;
  absl::StatusOr<std::vector<Listener>> ls = ListeningSockets(pid);
  ASSERT_TRUE(ls.ok()) << ls.status();
  std::cout << "control agent (every interface) listens on " << Describe(*ls) << "\n";
  bool outside = false;
  for (const Listener& l : *ls) outside |= !l.loopback();
  EXPECT_TRUE(outside) << "the check would not notice an external listener: " << Describe(*ls);
}

}  // namespace
}  // namespace kvf::testing
