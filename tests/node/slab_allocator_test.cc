#include "node/internal/slab_allocator.h"

#include <algorithm>
#include <map>
#include <random>
#include <vector>

#include "gtest/gtest.h"

namespace kvf::internal {
namespace {

constexpr uint64_t kKiB = 1024;

TEST(SlabAllocator, CreateRejectsBadGeometry) {
  EXPECT_FALSE(SlabAllocator::Create(1 << 20, 0, 1024).ok());
  EXPECT_FALSE(SlabAllocator::Create(1 << 20, 512, 1024).ok());
  EXPECT_FALSE(SlabAllocator::Create(1024, 4096, 1024).ok());
  EXPECT_TRUE(SlabAllocator::Create(1 << 20, 64 * kKiB, 1024).ok());
}

TEST(SlabAllocator, ClassesAreBoundedBySlabAndMinPage) {
  auto a = *SlabAllocator::Create(1 << 20, 64 * kKiB, kKiB);
  EXPECT_FALSE(a.AddClass(512).ok());
  EXPECT_FALSE(a.AddClass(128 * kKiB).ok());
  const int c = *a.AddClass(4 * kKiB);
  EXPECT_EQ(*a.AddClass(4 * kKiB), c);  // idempotent
  EXPECT_EQ(a.FindClass(4 * kKiB), c);
  EXPECT_FALSE(a.FindClass(8 * kKiB).has_value());
}

TEST(SlabAllocator, FillsArenaExactlyThenRefuses) {
  auto a = *SlabAllocator::Create(256 * kKiB, 64 * kKiB, kKiB);
  const int c = *a.AddClass(16 * kKiB);
  std::vector<uint64_t> pages;
  while (auto p = a.Allocate(c)) pages.push_back(*p);
  EXPECT_EQ(pages.size(), 16u);
  std::sort(pages.begin(), pages.end());
  for (size_t i = 0; i < pages.size(); ++i) EXPECT_EQ(pages[i], i * 16 * kKiB);
  EXPECT_EQ(a.GetStats().used_bytes, 256 * kKiB);
  EXPECT_EQ(a.GetStats().free_bytes, 0u);
  a.Free(pages[5]);
  EXPECT_EQ(a.Allocate(c), pages[5]);  // the freed page is reused
}

TEST(SlabAllocator, EmptySlabMovesToAnotherClass) {
  auto a = *SlabAllocator::Create(128 * kKiB, 64 * kKiB, kKiB);
  const int small = *a.AddClass(4 * kKiB);
  const int large = *a.AddClass(64 * kKiB);
  std::vector<uint64_t> smalls;
  while (auto p = a.Allocate(small)) smalls.push_back(*p);
  EXPECT_EQ(smalls.size(), 32u);
  EXPECT_FALSE(a.Allocate(large).has_value());
  // Free all pages of one slab: it becomes free and the large class can use it.
  for (uint64_t p : smalls) {
    if (p < 64 * kKiB) a.Free(p);
  }
  EXPECT_EQ(a.GetStats().free_slab_bytes, 64 * kKiB);
  auto big = a.Allocate(large);
  ASSERT_TRUE(big.has_value());
  EXPECT_EQ(*big, 0u);
}

// Random allocate/free across classes never hands out overlapping pages and
// keeps its byte accounting exact.
TEST(SlabAllocator, RandomWorkloadNeverOverlaps) {
  auto a = *SlabAllocator::Create(4 << 20, 256 * kKiB, kKiB);
  const uint64_t sizes[] = {kKiB, 3 * kKiB, 16 * kKiB, 100 * kKiB, 256 * kKiB};
  std::vector<int> classes;
  for (uint64_t s : sizes) classes.push_back(*a.AddClass(s));
  std::mt19937_64 rng(42);
  std::map<uint64_t, uint64_t> live;  // offset -> size
  uint64_t live_bytes = 0;
  for (int step = 0; step < 20000; ++step) {
    if (live.empty() || rng() % 3 != 0) {
      const int k = static_cast<int>(rng() % classes.size());
      auto p = a.Allocate(classes[k]);
      if (!p) continue;
      auto next = live.lower_bound(*p);
      if (next != live.end()) ASSERT_LE(*p + sizes[k], next->first);
      if (next != live.begin()) {
        auto prev = std::prev(next);
        ASSERT_LE(prev->first + prev->second, *p);
      }
      ASSERT_LE(*p + sizes[k], uint64_t{4} << 20);
      live.emplace(*p, sizes[k]);
      live_bytes += sizes[k];
    } else {
      auto it = live.begin();
      std::advance(it, rng() % live.size());
      a.Free(it->first);
      live_bytes -= it->second;
      live.erase(it);
    }
    ASSERT_EQ(a.GetStats().used_bytes, live_bytes);
  }
  for (auto& [offset, size] : live) a.Free(offset);
  EXPECT_EQ(a.GetStats().used_bytes, 0u);
  EXPECT_EQ(a.GetStats().free_slab_bytes, uint64_t{4} << 20);
}

TEST(SlabAllocatorDeathTest, FreeOfForeignOffsetAborts) {
  auto a = *SlabAllocator::Create(256 * kKiB, 64 * kKiB, kKiB);
  const int c = *a.AddClass(16 * kKiB);
  ASSERT_TRUE(a.Allocate(c).has_value());
  EXPECT_DEATH(a.Free(200 * kKiB), "never handed out");
}

}  // namespace
}  // namespace kvf::internal
