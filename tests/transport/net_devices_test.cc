#include "transport/net_devices.h"

#include <algorithm>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "gtest/gtest.h"
#include "transport/transport.h"

namespace kvf {
namespace {

const std::vector<InterfaceAddress> kHost = {
    {"lo", "127.0.0.1", true},       {"lo", "::1", true},
    {"eth0", "192.0.2.2", false},    {"eth0", "fd00::2", false},
    {"eth0", "fe80::1", false},      {"eth1", "198.51.100.7", false},
    {"bond0", "203.0.113.9", false}, {"bond1", "203.0.113.9", false},
};

std::string For(const std::string& host, const std::vector<std::string>& rdma = {}) {
  absl::StatusOr<std::string> d = NetDevicesFor(host, kHost, rdma);
  return d.ok() ? *d : d.status().ToString();
}

TEST(NetDevicesFor, WildcardsLeaveTheChoiceToUcx) {
  for (const char* host : {"", "0.0.0.0", "::", "[::]", "*"}) {
    EXPECT_EQ(For(host), "") << host;
  }
}

TEST(NetDevicesFor, LoopbackAddressesMapToTheLoopbackInterface) {
  for (const char* host : {"127.0.0.1", "127.0.0.2", "127.1.2.3", "::1", "[::1]", "localhost",
                           "LocalHost", "::ffff:127.0.0.1"}) {
    EXPECT_EQ(For(host), "lo") << host;
  }
}

TEST(NetDevicesFor, AnAddressMapsToTheInterfaceOwningIt) {
  EXPECT_EQ(For("192.0.2.2"), "eth0");
  EXPECT_EQ(For("198.51.100.7"), "eth1");
  EXPECT_EQ(For("fd00::2"), "eth0");
  EXPECT_EQ(For("[fd00::2]"), "eth0");
  EXPECT_EQ(For("::ffff:192.0.2.2"), "eth0");
  // A link-local address names its interface.
  EXPECT_EQ(For("fe80::1%eth0"), "eth0");
}

TEST(NetDevicesFor, EveryOwnerIsListedOnceSorted) { EXPECT_EQ(For("203.0.113.9"), "bond0,bond1"); }

TEST(NetDevicesFor, RdmaPortsAreKept) {
  EXPECT_EQ(For("127.0.0.1", {"mlx5_0:1", "mlx5_1:1"}), "lo,mlx5_0:1,mlx5_1:1");
  EXPECT_EQ(For("0.0.0.0", {"mlx5_0:1"}), "");  // every device anyway
}

TEST(NetDevicesFor, ForeignAddressIsNotFound) {
  absl::StatusOr<std::string> d = NetDevicesFor("192.0.2.99", kHost, {});
  ASSERT_FALSE(d.ok());
  EXPECT_TRUE(absl::IsNotFound(d.status())) << d.status();
  EXPECT_TRUE(absl::StrContains(d.status().message(), "192.0.2.99")) << d.status();
  // No loopback interface at all.
  d = NetDevicesFor("127.0.0.1", {{"eth0", "192.0.2.2", false}}, {});
  EXPECT_TRUE(absl::IsNotFound(d.status())) << d.status();
}

TEST(NetDevicesFor, NamesAndGarbageAreInvalidHere) {
  for (const char* host : {"example.com", "1.2.3", "300.1.1.1", "::g"}) {
    absl::StatusOr<std::string> d = NetDevicesFor(host, kHost, {});
    EXPECT_TRUE(absl::IsInvalidArgument(d.status())) << host << ": " << d.status();
  }
}

// This machine: loopback maps to its loopback interface(s).
TEST(NetDevicesForHost, LoopbackOnThisMachine) {
  absl::StatusOr<std::vector<InterfaceAddress>> ifaces = LocalInterfaceAddresses();
  ASSERT_TRUE(ifaces.ok()) << ifaces.status();
  std::set<std::string> loopbacks;
  for (const InterfaceAddress& i : *ifaces) {
    if (i.loopback) loopbacks.insert(i.name);
  }
  if (loopbacks.empty()) GTEST_SKIP() << "no loopback interface in this network namespace";
  for (const char* host : {"127.0.0.1", "localhost"}) {
    absl::StatusOr<std::string> d = NetDevicesForHost(host);
    ASSERT_TRUE(d.ok()) << host << ": " << d.status();
    const std::vector<std::string> rdma = LocalRdmaPorts();
    std::vector<std::string> names = absl::StrSplit(*d, ',');
    ASSERT_EQ(names.size(), loopbacks.size() + rdma.size()) << *d;
    for (size_t i = 0; i < loopbacks.size(); ++i) {
      EXPECT_EQ(loopbacks.count(names[i]), 1u) << *d;
    }
  }
  EXPECT_EQ(*NetDevicesForHost("0.0.0.0"), "");
}

TEST(NetDevicesForHost, EveryLocalAddressIsOwned) {
  absl::StatusOr<std::vector<InterfaceAddress>> ifaces = LocalInterfaceAddresses();
  ASSERT_TRUE(ifaces.ok()) << ifaces.status();
  for (const InterfaceAddress& i : *ifaces) {
    if (i.loopback || absl::StartsWith(i.address, "fe80:")) continue;  // link-local: needs %scope
    absl::StatusOr<std::string> d = NetDevicesForHost(i.address);
    ASSERT_TRUE(d.ok()) << i.address << ": " << d.status();
    EXPECT_TRUE(absl::StrContains(*d, i.name)) << i.address << " -> " << *d;
  }
}

// A real UCX context restricted to loopback uses TCP on it only.
TEST(NetDevicesForHost, UcxUsesOnlyTheGivenDevices) {
  absl::StatusOr<std::string> lo = NetDevicesForHost("127.0.0.1");
  ASSERT_TRUE(lo.ok()) << lo.status();
  TransportConfig tc;
  tc.name = "net-devices-test";
  tc.progress = ProgressMode::kCaller;
  tc.ucx_tls = "tcp,self";
  tc.net_devices = *lo;
  absl::StatusOr<std::unique_ptr<Transport>> t = CreateTransport(tc);
  ASSERT_TRUE(t.ok()) << t.status();
  const std::string fabric = (*t)->capabilities().fabric;
  const std::vector<std::string> allowed = absl::StrSplit(*lo, ',');
  int tcp = 0;
  for (absl::string_view r : absl::StrSplit(fabric, ' ')) {
    if (!absl::ConsumePrefix(&r, "tcp/")) continue;
    ++tcp;
    EXPECT_NE(std::find(allowed.begin(), allowed.end(), std::string(r)), allowed.end())
        << "UCX uses tcp/" << r << " outside '" << *lo << "': " << fabric;
  }
  EXPECT_GT(tcp, 0) << fabric;
}

}  // namespace
}  // namespace kvf
