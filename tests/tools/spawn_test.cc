#include "tools/launch/spawn.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace kvf::launch {
namespace {

SpawnOptions Shell(const std::string& script) {
  SpawnOptions o;
  o.argv = {"/bin/sh", "-c", script};
  return o;
}

ExitStatus RunToEnd(const SpawnOptions& o) {
  absl::StatusOr<ChildProcess> child = ChildProcess::Spawn(o);
  EXPECT_TRUE(child.ok()) << child.status();
  if (!child.ok()) return {-1, 0};
  std::optional<ExitStatus> exit = child->Wait();
  EXPECT_TRUE(exit.has_value());
  EXPECT_EQ(child->pid(), -1) << "reaped";
  return exit.value_or(ExitStatus{-1, 0});
}

std::string ReadAll(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

bool Alive(pid_t pid) { return ::kill(pid, 0) == 0; }

TEST(ChildProcess, ReportsExitCodesAndSignals) {
  const ExitStatus three = RunToEnd(Shell("exit 3"));
  EXPECT_EQ(three.code, 3);
  EXPECT_EQ(three.ShellCode(), 3);
  EXPECT_FALSE(three.success());
  EXPECT_EQ(three.ToString(), "exited with status 3");

  const ExitStatus term = RunToEnd(Shell("kill -TERM $$"));
  EXPECT_EQ(term.signal, SIGTERM);
  EXPECT_EQ(term.ShellCode(), 128 + SIGTERM);
  EXPECT_EQ(term.ToString(), absl::StrCat("killed by signal ", SIGTERM));

  SpawnOptions in_path;
  in_path.argv = {"sh", "-c", "exit 0"};
  in_path.search_path = true;
  EXPECT_TRUE(RunToEnd(in_path).success());
}

TEST(ChildProcess, WhatCannotStartIsAnErrorOfSpawn) {
  SpawnOptions missing;
  missing.argv = {"/nonexistent/kvf-program"};
  absl::StatusOr<ChildProcess> child = ChildProcess::Spawn(missing);
  ASSERT_FALSE(child.ok());
  EXPECT_NE(child.status().message().find("exec: No such file"), absl::string_view::npos)
      << child.status();

  SpawnOptions bad_log = Shell("true");
  bad_log.out = Stdio::File("/nonexistent/dir/out");
  EXPECT_FALSE(ChildProcess::Spawn(bad_log).ok());
  EXPECT_FALSE(ChildProcess::Spawn(SpawnOptions{}).ok());
}

TEST(ChildProcess, EnvironmentAndStdio) {
  const std::string dir = ::testing::TempDir();
  ASSERT_EQ(::setenv("KVF_SPAWN_TEST_GONE", "1", 1), 0);
  SpawnOptions o = Shell("echo \"$KVF_SPAWN_TEST_SET ${KVF_SPAWN_TEST_GONE-unset}\"; echo err >&2");
  o.set_env = {{"KVF_SPAWN_TEST_SET", "value"}};
  o.unset_env = {"KVF_SPAWN_TEST_GONE"};
  o.out = Stdio::File(dir + "/spawn_test.out");
  o.err = Stdio::File(dir + "/spawn_test.err");
  EXPECT_TRUE(RunToEnd(o).success());
  EXPECT_EQ(ReadAll(dir + "/spawn_test.out"), "value unset\n");
  EXPECT_EQ(ReadAll(dir + "/spawn_test.err"), "err\n");
  ::unsetenv("KVF_SPAWN_TEST_GONE");
}

TEST(ChildProcess, KeepsOnlyTheDescriptorsItIsGiven) {
  int kept[2], other[2];
  ASSERT_EQ(::pipe2(kept, O_CLOEXEC), 0);
  ASSERT_EQ(::pipe(other), 0);  // no FD_CLOEXEC: inherited unless closed
  SpawnOptions o = Shell(absl::StrCat("echo kept >&", kept[1], " && ! (echo other >&", other[1],
                                      ") 2>/dev/null"));
  o.keep_fds = {kept[1]};
  o.close_other_fds = true;
  EXPECT_TRUE(RunToEnd(o).success());
  ::close(kept[1]);
  ::close(other[1]);
  char buf[16] = {};
  EXPECT_EQ(::read(kept[0], buf, sizeof(buf)), 5);
  EXPECT_EQ(std::string(buf), "kept\n");
  EXPECT_EQ(::read(other[0], buf, sizeof(buf)), 0);
  ::close(kept[0]);
  ::close(other[0]);
}

TEST(ChildProcess, TheOwnerKillsAndReaps) {
  pid_t pid;
  {
    absl::StatusOr<ChildProcess> child = ChildProcess::Spawn(Shell("exec sleep 60"));
    ASSERT_TRUE(child.ok());
    pid = child->pid();
    ChildProcess moved = *std::move(child);
    EXPECT_EQ(child->pid(), -1);
    EXPECT_EQ(moved.pid(), pid);
    EXPECT_FALSE(moved.Poll().has_value()) << "still running";
    EXPECT_FALSE(moved.Wait(absl::Milliseconds(20)).has_value());
  }
  EXPECT_FALSE(Alive(pid)) << "killed and reaped";
}

TEST(ChildProcess, StopEscalatesToSigkill) {
  absl::StatusOr<ChildProcess> child = ChildProcess::Spawn(Shell("trap '' TERM; exec sleep 60"));
  ASSERT_TRUE(child.ok());
  absl::SleepFor(absl::Milliseconds(100));  // the trap is set before the signal
  EXPECT_EQ(child->Stop(absl::Milliseconds(200)).signal, SIGKILL);
  EXPECT_EQ(child->Stop(absl::Seconds(1)).code, -1) << "no process left";
}

TEST(ChildProcess, StartsWithAnEmptySignalMaskInItsOwnGroup) {
  sigset_t term, old;
  sigemptyset(&term);
  sigaddset(&term, SIGTERM);
  ASSERT_EQ(::pthread_sigmask(SIG_BLOCK, &term, &old), 0);
  SpawnOptions o = Shell("exec sleep 60");
  o.own_process_group = true;
  absl::StatusOr<ChildProcess> child = ChildProcess::Spawn(o);
  ::pthread_sigmask(SIG_SETMASK, &old, nullptr);
  ASSERT_TRUE(child.ok());
  EXPECT_EQ(::getpgid(child->pid()), child->pid());
  EXPECT_EQ(child->Stop(absl::Seconds(10)).signal, SIGTERM) << "SIGTERM was not blocked";
}

TEST(ChildProcess, AReleasedChildOutlivesItsOwner) {
  pid_t pid;
  {
    absl::StatusOr<ChildProcess> child = ChildProcess::Spawn(Shell("exec sleep 60"));
    ASSERT_TRUE(child.ok());
    pid = child->Release();
    EXPECT_EQ(child->pid(), -1);
  }
  EXPECT_TRUE(Alive(pid));
  ::kill(pid, SIGKILL);
  ::waitpid(pid, nullptr, 0);
}

}  // namespace
}  // namespace kvf::launch
