#include "tools/launch/spawn.h"

#include <fcntl.h>
#include <sched.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string_view>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

extern char** environ;

namespace kvf::launch {
namespace {

ExitStatus FromWaitStatus(int status) {
  if (WIFSIGNALED(status)) return {0, WTERMSIG(status)};
  return {WIFEXITED(status) ? WEXITSTATUS(status) : 1, 0};
}

// What the child writes to the exec pipe when a step before the program runs
// fails; nothing (end of file at exec) when the program runs.
struct ChildError {
  int step;
  int error;
};
constexpr const char* kStepNames[] = {"dup2", "exec", "setns"};
enum Step { kDup2 = 0, kExec = 1, kSetns = 2 };

// In the child, after fork: async-signal-safe calls only.
[[noreturn]] void ChildFail(int pipe_fd, Step step) {
  const ChildError e{step, errno};
  (void)!::write(pipe_fd, &e, sizeof(e));
  ::_exit(127);
}

// Opens a stdio target in the parent (so a bad path is an error of Spawn);
// returns the descriptor to put on stream `target`, or -1 to inherit.
absl::StatusOr<int> OpenStdio(const Stdio& s, int target, std::vector<int>* opened) {
  std::string path = s.path;
  int flags = target == STDIN_FILENO ? O_RDONLY : O_WRONLY | O_CREAT | O_TRUNC;
  switch (s.kind) {
    case Stdio::Kind::kInherit:
      return -1;
    case Stdio::Kind::kFd:
      return s.fd;
    case Stdio::Kind::kNull:
      path = "/dev/null";
      flags = target == STDIN_FILENO ? O_RDONLY : O_WRONLY;
      break;
    case Stdio::Kind::kFile:
      break;
  }
  const int fd = ::open(path.c_str(), flags | O_CLOEXEC, 0644);
  if (fd < 0) return absl::InternalError(absl::StrCat("open ", path, ": ", std::strerror(errno)));
  opened->push_back(fd);
  return fd;
}

// The child's environment: the parent's, less `unset_env` and the names
// `set_env` replaces, then `set_env`.
std::vector<std::string> ChildEnvironment(const SpawnOptions& o) {
  auto replaced = [&o](std::string_view name) {
    for (const std::string& u : o.unset_env) {
      if (u == name) return true;
    }
    for (const auto& [k, v] : o.set_env) {
      if (k == name) return true;
    }
    return false;
  };
  std::vector<std::string> env;
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string_view kv = *e;
    if (!replaced(kv.substr(0, kv.find('=')))) env.emplace_back(kv);
  }
  for (const auto& [k, v] : o.set_env) env.push_back(absl::StrCat(k, "=", v));
  return env;
}

std::vector<char*> Pointers(std::vector<std::string>& strings) {
  std::vector<char*> p;
  for (std::string& s : strings) p.push_back(s.data());
  p.push_back(nullptr);
  return p;
}

}  // namespace

std::string ExitStatus::ToString() const {
  return signal != 0 ? absl::StrCat("killed by signal ", signal)
                     : absl::StrCat("exited with status ", code);
}

absl::StatusOr<ChildProcess> ChildProcess::Spawn(const SpawnOptions& options) {
  if (options.argv.empty()) return absl::InvalidArgumentError("spawn: empty argv");
  // Everything the child needs is built before fork: after it, only
  // async-signal-safe calls (the parent may have other threads).
  std::vector<std::string> args = options.argv;
  std::vector<std::string> env = ChildEnvironment(options);
  const std::vector<char*> argv = Pointers(args);
  const std::vector<char*> envp = Pointers(env);

  std::vector<int> opened;
  absl::Cleanup close_opened = [&opened] {
    for (int fd : opened) ::close(fd);
  };
  int stdio[3];
  const Stdio* targets[3] = {&options.in, &options.out, &options.err};
  for (int i = 0; i < 3; ++i) {
    absl::StatusOr<int> fd = OpenStdio(*targets[i], i, &opened);
    if (!fd.ok()) return fd.status();
    stdio[i] = *fd;
  }
  int netns = -1;
  if (!options.netns.empty()) {
    const std::string path = absl::StrCat("/var/run/netns/", options.netns);
    netns = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (netns < 0) {
      return absl::FailedPreconditionError(
          absl::StrCat("network namespace ", path, ": ", std::strerror(errno)));
    }
    opened.push_back(netns);
  }
  int exec_pipe[2];
  if (::pipe2(exec_pipe, O_CLOEXEC) != 0) {
    return absl::InternalError(absl::StrCat("pipe2: ", std::strerror(errno)));
  }
  // Descriptors close_other_fds spares, sorted: the kept ones and the pipe.
  std::vector<int> spared = options.keep_fds;
  spared.push_back(exec_pipe[1]);
  std::sort(spared.begin(), spared.end());

  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) {
    const int error = errno;
    ::close(exec_pipe[0]);
    ::close(exec_pipe[1]);
    return absl::InternalError(absl::StrCat("fork: ", std::strerror(error)));
  }
  if (pid == 0) {
    if (options.die_with_parent) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() != parent) ::_exit(126);  // the parent died before prctl
    }
    if (options.own_process_group) ::setpgid(0, 0);
    if (netns >= 0 && ::setns(netns, CLONE_NEWNET) != 0) ChildFail(exec_pipe[1], kSetns);
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    for (int i = 0; i < 3; ++i) {
      if (stdio[i] < 0) continue;
      if (stdio[i] == i) {
        ::fcntl(i, F_SETFD, 0);
      } else if (::dup2(stdio[i], i) < 0) {
        ChildFail(exec_pipe[1], kDup2);
      }
    }
    for (int fd : options.keep_fds) ::fcntl(fd, F_SETFD, 0);
    if (options.close_other_fds) {
      unsigned int from = 3;
      for (int fd : spared) {
        const auto kept = static_cast<unsigned int>(fd);
        if (fd < 3 || kept < from) continue;
        if (kept > from) ::syscall(SYS_close_range, from, kept - 1, 0u);
        from = kept + 1;
      }
      ::syscall(SYS_close_range, from, ~0u, 0u);
    }
    if (options.search_path) {
      ::execvpe(argv[0], argv.data(), envp.data());
    } else {
      ::execve(argv[0], argv.data(), envp.data());
    }
    ChildFail(exec_pipe[1], kExec);
  }

  ::close(exec_pipe[1]);
  ChildError e{};
  ssize_t got;
  do {
    got = ::read(exec_pipe[0], &e, sizeof(e));
  } while (got < 0 && errno == EINTR);
  ::close(exec_pipe[0]);
  ChildProcess child(pid);
  if (got == static_cast<ssize_t>(sizeof(e))) {
    child.Wait();
    return absl::InternalError(absl::StrCat(options.argv[0], ": ", kStepNames[e.step], ": ",
                                            std::strerror(e.error)));
  }
  return child;
}

ChildProcess& ChildProcess::operator=(ChildProcess&& other) noexcept {
  if (this != &other) {
    Kill();
    pid_ = std::exchange(other.pid_, -1);
  }
  return *this;
}

void ChildProcess::Signal(int signal) const {
  if (pid_ > 0) ::kill(pid_, signal);
}

std::optional<ExitStatus> ChildProcess::Poll() {
  if (pid_ <= 0) return std::nullopt;
  int status = 0;
  const pid_t r = ::waitpid(pid_, &status, WNOHANG);
  if (r == pid_) {
    pid_ = -1;
    return FromWaitStatus(status);
  }
  if (r < 0 && errno == ECHILD) {  // reaped elsewhere (SIGCHLD ignored)
    pid_ = -1;
    return ExitStatus{-1, 0};
  }
  return std::nullopt;
}

std::optional<ExitStatus> ChildProcess::Wait(absl::Duration timeout) {
  if (pid_ <= 0) return std::nullopt;
  if (timeout == absl::InfiniteDuration()) {
    int status = 0;
    pid_t r;
    do {
      r = ::waitpid(pid_, &status, 0);
    } while (r < 0 && errno == EINTR);
    pid_ = -1;
    return r < 0 ? ExitStatus{-1, 0} : FromWaitStatus(status);
  }
  const absl::Time deadline = absl::Now() + timeout;
  for (;;) {
    if (std::optional<ExitStatus> s = Poll()) return s;
    if (absl::Now() >= deadline) return std::nullopt;
    absl::SleepFor(absl::Milliseconds(5));
  }
}

ExitStatus ChildProcess::Stop(absl::Duration grace, int signal) {
  if (pid_ <= 0) return ExitStatus{-1, 0};
  Signal(signal);
  if (std::optional<ExitStatus> s = Wait(grace)) return *s;
  Signal(SIGKILL);
  return *Wait();
}

void ChildProcess::Kill() {
  if (pid_ <= 0) return;
  Signal(SIGKILL);
  Wait();
}

}  // namespace kvf::launch
