#include "node/agent/memory_pressure.h"

#include <filesystem>
#include <fstream>
#include <memory>

#include "gtest/gtest.h"
#include "tests/node/temp_dir.h"

namespace kvf {
namespace {

constexpr uint64_t kMiB = uint64_t{1} << 20;

// A source the test sets: `used` of 1000 MiB.
class FakeSource final : public MemorySource {
 public:
  explicit FakeSource(double* used) : used_(used) {}
  absl::StatusOr<MemorySample> Read() override {
    if (*used_ < 0) return absl::UnavailableError("no sample");
    return MemorySample{1000 * kMiB, static_cast<uint64_t>(*used_ * 1000 * kMiB), "fake"};
  }

 private:
  double* used_;
};

std::unique_ptr<MemoryPressure> Make(double* used, MemoryPressureOptions o = {}) {
  if (o.high == 0) o.high = 0.9;
  if (o.low == 0) o.low = 0.8;
  o.step = 0.25;
  o.floor = 0.25;
  auto p = MemoryPressure::Create(o, 800 * kMiB, std::make_unique<FakeSource>(used));
  EXPECT_TRUE(p.ok()) << p.status();
  return p.ok() ? std::move(p).value() : nullptr;
}

TEST(MemoryPressure, ShrinksInStepsDownToTheFloorAndGrowsBack) {
  double used = 0.5;
  auto p = Make(&used);
  ASSERT_NE(p, nullptr);
  auto d = p->Tick();
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->level, PressureLevel::kNormal);
  EXPECT_EQ(d->limit_bytes, 800 * kMiB);
  EXPECT_FALSE(d->changed);

  used = 0.95;
  d = p->Tick();
  EXPECT_EQ(d->level, PressureLevel::kHigh);
  EXPECT_EQ(d->limit_bytes, 600 * kMiB);
  EXPECT_TRUE(d->changed);
  EXPECT_EQ(p->Tick()->limit_bytes, 400 * kMiB);
  EXPECT_EQ(p->Tick()->limit_bytes, 200 * kMiB);  // the floor: a quarter of 800 MiB
  d = p->Tick();
  EXPECT_EQ(d->limit_bytes, 200 * kMiB);
  EXPECT_FALSE(d->changed);
  EXPECT_EQ(p->shrinks(), 3u);

  used = 0.85;  // between the thresholds: hold
  d = p->Tick();
  EXPECT_EQ(d->level, PressureLevel::kElevated);
  EXPECT_EQ(d->limit_bytes, 200 * kMiB);
  EXPECT_FALSE(d->changed);

  used = 0.3;  // pressure passed: back up a step per tick, never past the full size
  EXPECT_EQ(p->Tick()->limit_bytes, 400 * kMiB);
  EXPECT_EQ(p->Tick()->limit_bytes, 600 * kMiB);
  EXPECT_EQ(p->Tick()->limit_bytes, 800 * kMiB);
  EXPECT_EQ(p->Tick()->limit_bytes, 800 * kMiB);
  EXPECT_EQ(p->grows(), 3u);
  EXPECT_EQ(p->level(), PressureLevel::kNormal);
  EXPECT_DOUBLE_EQ(p->used_fraction(), 0.3);
}

TEST(MemoryPressure, FailedReadHoldsTheLimit) {
  double used = 0.95;
  auto p = Make(&used);
  ASSERT_NE(p, nullptr);
  ASSERT_EQ(p->Tick()->limit_bytes, 600 * kMiB);
  used = -1;
  EXPECT_FALSE(p->Tick().ok());
  EXPECT_EQ(p->limit_bytes(), 600 * kMiB);
}

TEST(MemoryPressure, ThresholdsAreChecked) {
  double used = 0;
  auto source = [&] { return std::make_unique<FakeSource>(&used); };
  EXPECT_FALSE(MemoryPressure::Create({.high = 0.8, .low = 0.9}, kMiB, source()).ok());
  EXPECT_FALSE(MemoryPressure::Create({.high = 1.5}, kMiB, source()).ok());
  EXPECT_TRUE(MemoryPressure::Create({.high = 0.9}, kMiB, source()).ok());  // low = 0.8
}

TEST(SystemMemorySource, ReadsCgroupLimitOrFallsBackToMeminfo) {
  TempDir root;
  ASSERT_FALSE(root.path().empty());
  const std::string r = root.path();
  std::filesystem::create_directories(r + "/proc/self");
  std::filesystem::create_directories(r + "/sys/fs/cgroup/agent.slice");
  std::ofstream(r + "/proc/self/cgroup") << "0::/agent.slice\n";
  std::ofstream(r + "/proc/meminfo") << "MemTotal:       1000 kB\nMemFree:         100 kB\n"
                                        "MemAvailable:    250 kB\n";
  std::ofstream(r + "/sys/fs/cgroup/agent.slice/memory.max") << "max\n";
  std::ofstream(r + "/sys/fs/cgroup/agent.slice/memory.current") << "4096\n";
  auto source = SystemMemorySource(r);
  auto s = source->Read();
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->source, "meminfo");  // no cgroup limit
  EXPECT_EQ(s->limit_bytes, 1000u * 1024);
  EXPECT_EQ(s->used_bytes, 750u * 1024);
  std::ofstream(r + "/sys/fs/cgroup/agent.slice/memory.max") << "8192\n";
  s = source->Read();
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->source, "cgroup");
  EXPECT_EQ(s->limit_bytes, 8192u);
  EXPECT_EQ(s->used_bytes, 4096u);
  // The real machine answers something sensible.
  auto real = SystemMemorySource()->Read();
  ASSERT_TRUE(real.ok()) << real.status();
  EXPECT_GT(real->limit_bytes, 0u);
  EXPECT_LE(real->used_bytes, real->limit_bytes * 2);
}

}  // namespace
}  // namespace kvf
