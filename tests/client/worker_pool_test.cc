#include "client/internal/worker_pool.h"

#include <atomic>
#include <thread>

#include "gtest/gtest.h"

namespace kvf::client_internal {
namespace {

TEST(WorkerPool, RunsEveryTaskOnceAndWaits) {
  WorkerPool pool(3, "test");
  for (int round = 0; round < 200; ++round) {
    std::vector<std::atomic<int>> hits(17);
    std::vector<std::function<void()>> tasks;
    for (size_t i = 0; i < hits.size(); ++i) tasks.push_back([&hits, i] { hits[i]++; });
    pool.RunAll(tasks);
    for (auto& h : hits) ASSERT_EQ(h.load(), 1);
  }
}

TEST(WorkerPool, ManyCallersAtOnceDoNotDeadlock) {
  WorkerPool pool(2, "test");
  std::atomic<int> total{0};
  std::vector<std::thread> callers;
  for (int c = 0; c < 6; ++c) {
    callers.emplace_back([&] {
      for (int r = 0; r < 100; ++r) {
        std::vector<std::function<void()>> tasks(5, [&] { total++; });
        pool.RunAll(tasks);
      }
    });
  }
  for (auto& t : callers) t.join();
  EXPECT_EQ(total.load(), 6 * 100 * 5);
}

TEST(WorkerPool, ZeroThreadsRunsOnTheCaller) {
  WorkerPool pool(0, "test");
  int n = 0;
  std::vector<std::function<void()>> tasks(4, [&] { ++n; });
  pool.RunAll(tasks);
  EXPECT_EQ(n, 4);
}

}  // namespace
}  // namespace kvf::client_internal
