#include "tests/tools/kvfctl_harness.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

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
  args.insert(args.begin(), KVFCTL_BIN);
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  const absl::Time start = absl::Now();
  const pid_t parent = ::getpid();
  const pid_t child = ::fork();
  if (child == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(126);
    int out = ::open((prefix + ".out").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int err = ::open((prefix + ".err").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (out < 0 || err < 0) ::_exit(125);
    ::dup2(out, STDOUT_FILENO);
    ::dup2(err, STDERR_FILENO);
    ::unsetenv("KVF_COORDINATOR");
    ::unsetenv("KVF_TOKEN");
    for (const std::string& e : env) ::putenv(const_cast<char*>(e.c_str()));
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  CtlResult r;
  const absl::Time deadline = start + timeout;
  int status = 0;
  for (;;) {
    if (::waitpid(child, &status, WNOHANG) == child) {
      r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
      break;
    }
    if (absl::Now() > deadline) {
      ::kill(child, SIGKILL);
      ::waitpid(child, nullptr, 0);
      break;
    }
    absl::SleepFor(absl::Milliseconds(5));
  }
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
