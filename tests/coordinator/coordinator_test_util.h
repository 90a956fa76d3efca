// Fakes for coordinator tests: a clock that moves when told, and agents that
// record the tasks they are sent.
#ifndef KVF_TESTS_COORDINATOR_COORDINATOR_TEST_UTIL_H_
#define KVF_TESTS_COORDINATOR_COORDINATOR_TEST_UTIL_H_

#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "coordinator/agent_client.h"
#include "tests/common/fake_clock.h"

namespace kvf {

class FakeAgents final : public AgentClient {
 public:
  absl::Status AssignMigration(const std::string& address,
                               const proto::AssignMigrationRequest& request) override {
    absl::MutexLock lock(&mu_);
    ++calls_;
    if (need_together_ > 1) {
      ++inside_;
      const bool met = mu_.AwaitWithTimeout(absl::Condition(this, &FakeAgents::Together),
                                            absl::Seconds(10));
      --inside_;
      if (!met) return absl::DeadlineExceededError("the other calls never came");
    }
    if (unreachable_.count(address)) return absl::UnavailableError("connection refused");
    for (const auto& t : request.tasks()) tasks_[address].push_back(t);
    if (on_assign_) {
      // As a real agent may: run the tasks and report before the call returns.
      auto hook = on_assign_;
      mu_.Unlock();
      hook(request);
      mu_.Lock();
    }
    return absl::OkStatus();
  }
  // Runs `hook` inside every successful AssignMigration, before it returns
  // (null: none).
  void OnAssign(std::function<void(const proto::AssignMigrationRequest&)> hook) {
    absl::MutexLock lock(&mu_);
    on_assign_ = std::move(hook);
  }
  absl::Status ApplyEvictionCutoff(const std::string&, const proto::EvictionCutoffRequest&) override {
    return absl::OkStatus();
  }
  void SetUnreachable(const std::string& address, bool unreachable) {
    absl::MutexLock lock(&mu_);
    if (unreachable) {
      unreachable_.insert(address);
    } else {
      unreachable_.erase(address);
    }
  }
  // From now on a call returns only once `n` calls are inside at the same
  // time (after that, every call passes), or fails after 10 s: shows that
  // the coordinator sends them concurrently.
  void RequireTogether(int n) {
    absl::MutexLock lock(&mu_);
    need_together_ = n;
    met_together_ = false;
  }
  // Tasks received at `address` since the last call.
  std::vector<proto::MigrationTask> Take(const std::string& address) {
    absl::MutexLock lock(&mu_);
    std::vector<proto::MigrationTask> out;
    out.swap(tasks_[address]);
    return out;
  }
  int calls() const {
    absl::MutexLock lock(&mu_);
    return calls_;
  }

 private:
  mutable absl::Mutex mu_;
  std::map<std::string, std::vector<proto::MigrationTask>> tasks_;
  std::set<std::string> unreachable_;
  std::function<void(const proto::AssignMigrationRequest&)> on_assign_;
  int calls_ = 0;
  int need_together_ = 0;
  int inside_ = 0;
  bool met_together_ = false;

  bool Together() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (inside_ >= need_together_) met_together_ = true;
    return met_together_;
  }
};

}  // namespace kvf

#endif  // KVF_TESTS_COORDINATOR_COORDINATOR_TEST_UTIL_H_
