#include "node/memory_tier.h"

#include <vector>

#include "gtest/gtest.h"
#include "kernels/device.h"

namespace kvf {
namespace {

TEST(MemoryTier, HostTierReadsWhatWasWritten) {
  auto tier = CreateHostTier(1 << 20, /*pin=*/true);
  ASSERT_TRUE(tier.ok()) << tier.status();
  const auto caps = (*tier)->capabilities();
  EXPECT_TRUE(caps.cpu_addressable);
  EXPECT_FALSE(caps.device_memory);
  EXPECT_EQ((*tier)->capacity(), 1u << 20);
  // Pinned only where a device exists.
  EXPECT_EQ(caps.page_locked, Devices().count > 0);
  EXPECT_EQ((*tier)->kind(), Devices().count > 0 ? TierKind::kPinnedHost : TierKind::kHost);
  std::vector<std::byte> in(4096), out(4096);
  for (size_t i = 0; i < in.size(); ++i) in[i] = std::byte(i * 31);
  ASSERT_TRUE((*tier)->Write(12345, in).ok());
  ASSERT_TRUE((*tier)->Read(12345, absl::MakeSpan(out)).ok());
  EXPECT_EQ(in, out);
}

TEST(MemoryTier, OutOfRangeIsAnError) {
  auto tier = *CreateHostTier(8192, false);
  std::vector<std::byte> buf(100);
  EXPECT_EQ(tier->Write(8192 - 99, buf).code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(tier->Read(UINT64_MAX - 10, absl::MakeSpan(buf)).code(), absl::StatusCode::kOutOfRange);
  EXPECT_TRUE(tier->Write(8192 - 100, buf).ok());
}

TEST(MemoryTier, ZeroBytesIsRejected) {
  EXPECT_EQ(CreateHostTier(0, false).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(MemoryTier, DeviceTierNeedsADevice) {
  if (Devices().count > 0) GTEST_SKIP() << "a CUDA device exists; covered by the gpu tests";
  auto tier = CreateDeviceTier(1 << 20, 0);
  EXPECT_EQ(tier.status().code(), absl::StatusCode::kFailedPrecondition) << tier.status();
}

}  // namespace
}  // namespace kvf
