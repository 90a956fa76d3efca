// kvf-agent's GPU tier flags (docs/agent.md, "GPU tier"): an agent asked for
// a GPU tier it cannot have refuses to start, before it opens anything.
#include "absl/strings/match.h"
#include "gtest/gtest.h"
#include "kernels/device.h"
#include "node/agent/agent.h"

namespace kvf {
namespace {

AgentOptions Options() {
  AgentOptions o;
  o.coordinator = "127.0.0.1:1";  // never reached: the checks come first
  o.token = "t";
  return o;
}

TEST(AgentDeviceTier, DeviceBytesWithoutADeviceOrdinalIsRefused) {
  AgentOptions o = Options();
  o.device_bytes = 64 << 20;
  auto agent = Agent::Start(o);
  ASSERT_FALSE(agent.ok());
  EXPECT_TRUE(absl::IsInvalidArgument(agent.status())) << agent.status();
  EXPECT_TRUE(absl::StrContains(agent.status().message(), "--device")) << agent.status();
}

TEST(AgentDeviceTier, DeviceBytesWithoutThatDeviceIsAStartUpError) {
  AgentOptions o = Options();
  o.device = Devices().count;  // one past the last device there is
  o.device_bytes = 64 << 20;
  auto agent = Agent::Start(o);
  ASSERT_FALSE(agent.ok());
  EXPECT_TRUE(absl::IsFailedPrecondition(agent.status())) << agent.status();
  EXPECT_TRUE(absl::StrContains(agent.status().message(), "drop --device_bytes"))
      << agent.status();
}

}  // namespace
}  // namespace kvf
