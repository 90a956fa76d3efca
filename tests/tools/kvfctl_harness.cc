#include "tests/tools/kvfctl_harness.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fstream>
#include <optional>
#include <sstream>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "tools/launch/spawn.h"

#ifndef KVFCTL_BIN
#error "KVFCTL_BIN must name the kvfctl binary"
#endif

namespace kvf::testing {

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

CtlResult RunCtl(const std::string& dir, std::vector<std::string> args,
                 const std::vector<std::string>& env, absl::Duration timeout) {
  static int serial = 0;
  const std::string prefix = absl::StrCat(dir, "/kvfctl-", ::getpid(), "-", serial++);
  launch::SpawnOptions options;
  options.argv = std::move(args);
  options.argv.insert(options.argv.begin(), KVFCTL_BIN);
  options.unset_env = {"KVF_COORDINATOR", "KVF_TOKEN"};
  for (const std::string& e : env) {
    const size_t eq = e.find('=');
    options.set_env.emplace_back(e.substr(0, eq), eq == std::string::npos ? "" : e.substr(eq + 1));
  }
  options.out = launch::Stdio::File(prefix + ".out");
  options.err = launch::Stdio::File(prefix + ".err");
  CtlResult r;
  const absl::Time start = absl::Now();
  absl::StatusOr<launch::ChildProcess> child = launch::ChildProcess::Spawn(options);
  if (!child.ok()) {
    r.err = child.status().ToString();
    return r;
  }
  if (std::optional<launch::ExitStatus> exit = child->Wait(timeout); exit.has_value()) {
    r.code = exit->signal == 0 ? exit->code : -1;
  }
  child->Kill();  // timed out (code -1), or nothing to do
  r.took = absl::Now() - start;
  r.out = ReadFile(prefix + ".out");
  r.err = ReadFile(prefix + ".err");
  return r;
}

std::string Describe(const CtlResult& r) {
  return absl::StrCat("exit ", r.code, " after ", absl::FormatDuration(r.took), "\n--- stdout\n",
                      r.out, "--- stderr\n", r.err);
}

bool AgentBuilt() {
#ifdef KVF_AGENT_BIN
  return std::string(KVF_AGENT_BIN).size() > 0;
#else
  return false;
#endif
}

int UnusedPort() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  socklen_t len = sizeof(addr);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);
  return ntohs(addr.sin_port);
}

}  // namespace kvf::testing
