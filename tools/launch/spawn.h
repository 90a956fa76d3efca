// Child processes: fork/exec with the usual care (die with the parent, a clean
// signal mask, redirected stdio, no leaked descriptors), owned by a move-only
// ChildProcess that kills and reaps the child when it goes away. Used by
// kvf-launch, the multi-process tests and the benchmarks' peers.
#ifndef KVF_TOOLS_LAUNCH_SPAWN_H_
#define KVF_TOOLS_LAUNCH_SPAWN_H_

#include <signal.h>
#include <sys/types.h>

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace kvf::launch {

// Where one of the child's standard streams goes.
struct Stdio {
  enum class Kind { kInherit, kNull, kFile, kFd };
  static Stdio Inherit() { return {}; }
  static Stdio Null() { return {Kind::kNull, "", -1}; }
  // Created or truncated (mode 0644); for stdin, opened for reading.
  static Stdio File(std::string path) { return {Kind::kFile, std::move(path), -1}; }
  // The caller's descriptor, duplicated onto the stream; the caller keeps it.
  static Stdio Fd(int fd) { return {Kind::kFd, "", fd}; }

  Kind kind = Kind::kInherit;
  std::string path;
  int fd = -1;
};

struct SpawnOptions {
  // argv[0] is the program: a path, or with `search_path` a name looked up in
  // $PATH (execvp).
  std::vector<std::string> argv;
  bool search_path = false;
  // The parent's environment, less `unset_env`, with `set_env` (name, value)
  // set over it.
  std::vector<std::string> unset_env;
  std::vector<std::pair<std::string, std::string>> set_env;
  Stdio in, out, err;
  // Descriptors the child inherits, at the same numbers (FD_CLOEXEC is
  // cleared in the child only).
  std::vector<int> keep_fds;
  // Close every other descriptor >= 3 (the parent's sockets, MPI's, ...), not
  // just those without FD_CLOEXEC.
  bool close_other_fds = false;
  // PR_SET_PDEATHSIG(SIGKILL): the child dies with this process, even when it
  // is killed before it can clean up.
  bool die_with_parent = true;
  // setpgid(0, 0): a terminal's Ctrl-C reaches this process only.
  bool own_process_group = false;
  // A network namespace (a name under /var/run/netns) the child enters
  // before exec; empty: this process's.
  std::string netns;
};

// How a child ended.
struct ExitStatus {
  int code = 0;    // its exit code, when `signal` is 0
  int signal = 0;  // the signal that ended it, or 0

  bool success() const { return signal == 0 && code == 0; }
  // The code a shell reports: `code`, or 128 + `signal`.
  int ShellCode() const { return signal == 0 ? code : 128 + signal; }
  // "exited with status N" or "killed by signal N".
  std::string ToString() const;
};

// One child process. The destructor SIGKILLs and reaps it unless it has been
// reaped (Poll, Wait, Stop, Kill) or released. The child always starts with an
// empty signal mask (a parent that sigwaits blocks signals its children must
// not inherit).
//
// Thread-compatible: one thread at a time per object.
class ChildProcess {
 public:
  // Forks and execs. Returns once exec succeeded: a program that cannot be
  // run, a stdio file that cannot be opened, or a failed fork is an error
  // here (the child is reaped), not an exit code later.
  static absl::StatusOr<ChildProcess> Spawn(const SpawnOptions& options);

  ChildProcess() = default;  // no process
  ~ChildProcess() { Kill(); }
  ChildProcess(ChildProcess&& other) noexcept : pid_(std::exchange(other.pid_, -1)) {}
  ChildProcess& operator=(ChildProcess&& other) noexcept;
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  // -1 once reaped or released, or when there is none.
  pid_t pid() const { return pid_; }

  // Sends `signal`; nothing when there is no process.
  void Signal(int signal) const;
  // Reaps the child if it has exited; nullopt while it runs or when there is
  // no process. Never blocks. (Code -1: it was reaped elsewhere.)
  std::optional<ExitStatus> Poll();
  // Waits up to `timeout` for it to exit and reaps it; nullopt on timeout or
  // when there is no process.
  std::optional<ExitStatus> Wait(absl::Duration timeout = absl::InfiniteDuration());
  // `signal`, then up to `grace` for it to exit, then SIGKILL; returns how it
  // ended (code -1 when there was no process).
  ExitStatus Stop(absl::Duration grace, int signal = SIGTERM);
  // SIGKILL and reap; idempotent.
  void Kill();
  // Lets the child outlive this object (kvf-launch --keep); returns its pid.
  pid_t Release() { return std::exchange(pid_, -1); }

 private:
  explicit ChildProcess(pid_t pid) : pid_(pid) {}
  pid_t pid_ = -1;
};

}  // namespace kvf::launch

#endif  // KVF_TOOLS_LAUNCH_SPAWN_H_
