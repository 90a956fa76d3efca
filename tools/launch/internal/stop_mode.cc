// kvf-launch stop DIR: stops a cluster left running by `kvf-launch local
// --keep`, from the pids file it wrote into DIR.
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "tools/launch/internal/common.h"

namespace kvf::launch::internal {
namespace {

namespace fs = std::filesystem;

struct Daemon {
  std::string role;
  pid_t pid = -1;
  std::string bin;
};

// Alive and not a zombie (a kept cluster's daemons are not our children; their
// new parent may be slow to reap, or, in a container, never reap).
bool Running(pid_t pid) {
  std::ifstream stat(absl::StrCat("/proc/", pid, "/stat"));
  std::string text;
  if (!std::getline(stat, text)) return false;
  const size_t paren = text.rfind(')');
  return paren != std::string::npos && paren + 2 < text.size() && text[paren + 2] != 'Z';
}

// The pid still runs the binary we started (not a recycled pid).
bool Ours(const Daemon& d) {
  std::error_code ec;
  const fs::path exe = fs::read_symlink(absl::StrCat("/proc/", d.pid, "/exe"), ec);
  if (ec) return Running(d.pid);  // not ours to inspect (another user): trust the file
  return exe == fs::path(d.bin) || exe.filename() == fs::path(d.bin).filename();
}

// SIGTERM to each, then waits until they are gone; SIGKILL after `timeout`.
// Returns how many had to be killed.
int TerminateAll(const std::vector<Daemon>& daemons, absl::Duration timeout) {
  for (const Daemon& d : daemons) ::kill(d.pid, SIGTERM);
  const absl::Time deadline = absl::Now() + timeout;
  for (;;) {
    bool any = false;
    for (const Daemon& d : daemons) any |= Running(d.pid);
    if (!any) return 0;
    if (absl::Now() > deadline) break;
    absl::SleepFor(absl::Milliseconds(20));
  }
  int killed = 0;
  for (const Daemon& d : daemons) {
    if (Running(d.pid)) {
      ::kill(d.pid, SIGKILL);
      ++killed;
    }
  }
  return killed;
}

}  // namespace

int RunStop(const std::string& dir, absl::Duration timeout) {
  const std::string pids_path = absl::StrCat(dir, "/", kPidsFile);
  std::ifstream in(pids_path);
  if (!in) {
    std::fprintf(stderr, "kvf-launch stop: no %s (not a kvf-launch --keep directory?)\n",
                 pids_path.c_str());
    return 2;
  }
  std::vector<Daemon> agents, coordinators, etcd;
  bool created_dir = false;
  std::string line;
  while (std::getline(in, line)) {
    std::vector<std::string> f = absl::StrSplit(line, ' ', absl::SkipEmpty());
    if (f.size() == 1 && f[0] == "created-dir") created_dir = true;
    Daemon d;
    if (f.size() != 3 || !absl::SimpleAtoi(f[1], &d.pid) || d.pid <= 1) continue;
    d.role = f[0];
    d.bin = f[2];
    if (!Running(d.pid) || !Ours(d)) {
      std::printf("kvf-launch stop: %s pid %d is not running\n", d.role.c_str(),
                  static_cast<int>(d.pid));
      continue;
    }
    (d.role == "coordinator" ? coordinators : d.role == "etcd" ? etcd : agents).push_back(d);
  }
  // Agents first, so they leave the cluster while the coordinator still runs.
  int killed = TerminateAll(agents, timeout);
  killed += TerminateAll(coordinators, timeout);
  killed += TerminateAll(etcd, timeout);  // last: the coordinators keep their state in it
  std::printf("kvf-launch stop: stopped %zu agent(s) and %zu coordinator(s)%s\n", agents.size(),
              coordinators.size(),
              killed > 0 ? absl::StrCat(" (", killed, " killed after the timeout)").c_str() : "");
  std::error_code ec;
  if (created_dir && ::getenv("KVF_KEEP_CLUSTER_DIR") == nullptr) {
    fs::remove_all(dir, ec);
    std::printf("kvf-launch stop: removed %s\n", dir.c_str());
  } else {
    fs::remove(pids_path, ec);
    std::printf("kvf-launch stop: logs are in %s\n", dir.c_str());
  }
  return killed > 0 ? 1 : 0;
}

}  // namespace kvf::launch::internal
