#include "client/internal/worker_pool.h"

#include <pthread.h>

#include <atomic>

namespace kvf::client_internal {

struct WorkerPool::Job {
  std::vector<std::function<void()>>* tasks = nullptr;
  size_t total = 0;  // tasks->size(); `tasks` is only touched for i < total
  std::atomic<size_t> next{0};
  absl::Mutex mu;
  size_t done ABSL_GUARDED_BY(mu) = 0;
};

WorkerPool::WorkerPool(int threads, std::string name) {
  for (int i = 0; i < threads; ++i) {
    threads_.emplace_back([this, name, i] {
      std::string n = (name + "-" + std::to_string(i)).substr(0, 15);
      pthread_setname_np(pthread_self(), n.c_str());
      WorkerLoop();
    });
  }
}

WorkerPool::~WorkerPool() {
  {
    absl::MutexLock l(&mu_);
    stop_ = true;
  }
  for (auto& t : threads_) t.join();
}

void WorkerPool::Drain(Job& job) {
  const size_t n = job.total;
  size_t ran = 0;
  for (;;) {
    const size_t i = job.next.fetch_add(1);
    if (i >= n) break;
    (*job.tasks)[i]();
    ++ran;
  }
  if (ran > 0) {
    absl::MutexLock l(&job.mu);
    job.done += ran;
  }
}

void WorkerPool::WorkerLoop() {
  for (;;) {
    std::shared_ptr<Job> job;
    {
      absl::MutexLock l(&mu_);
      mu_.Await(absl::Condition(
          +[](WorkerPool* p) ABSL_EXCLUSIVE_LOCKS_REQUIRED(p->mu_) {
            return p->stop_ || !p->queue_.empty();
          },
          this));
      if (queue_.empty()) return;  // stopping
      job = queue_.front();
      // Leave the job queued while it has tasks left so more workers join.
      if (job->next.load() + 1 >= job->total) queue_.pop_front();
    }
    Drain(*job);
  }
}

void WorkerPool::RunAll(std::vector<std::function<void()>>& tasks) {
  if (tasks.empty()) return;
  if (tasks.size() == 1 || threads_.empty()) {
    for (auto& t : tasks) t();
    return;
  }
  auto job = std::make_shared<Job>();
  job->tasks = &tasks;
  job->total = tasks.size();
  {
    absl::MutexLock l(&mu_);
    queue_.push_back(job);
  }
  Drain(*job);
  {
    absl::MutexLock l(&mu_);
    // Remove it if no worker got to it (or it is still queued with nothing left).
    for (auto it = queue_.begin(); it != queue_.end(); ++it) {
      if (*it == job) {
        queue_.erase(it);
        break;
      }
    }
  }
  absl::MutexLock l(&job->mu);
  job->mu.Await(absl::Condition(
      +[](Job* j) ABSL_NO_THREAD_SAFETY_ANALYSIS { return j->done == j->total; }, job.get()));
}

}  // namespace kvf::client_internal
