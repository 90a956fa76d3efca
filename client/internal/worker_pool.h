// A small persistent pool that runs the per-node batches of one client call
// in parallel, without spawning threads per call.
//
// RunAll(tasks) hands the tasks to the pool and runs them on the calling
// thread too (it takes tasks until none are left), then waits for the ones
// the workers took. Because the caller works as well, RunAll never deadlocks
// when every worker is busy with another call, and a call with one task never
// leaves its thread. Tasks must not call RunAll themselves.
//
// Thread-safety: RunAll is safe to call from many threads at once.
#ifndef KVF_CLIENT_INTERNAL_WORKER_POOL_H_
#define KVF_CLIENT_INTERNAL_WORKER_POOL_H_

#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"

namespace kvf::client_internal {

class WorkerPool {
 public:
  // `threads` workers (0 is allowed: every call runs on its caller).
  WorkerPool(int threads, std::string name);
  ~WorkerPool();
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  void RunAll(std::vector<std::function<void()>>& tasks);

 private:
  struct Job;
  void WorkerLoop();
  static void Drain(Job& job);

  absl::Mutex mu_;
  std::deque<std::shared_ptr<Job>> queue_ ABSL_GUARDED_BY(mu_);
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;
};

}  // namespace kvf::client_internal

#endif  // KVF_CLIENT_INTERNAL_WORKER_POOL_H_
