// Wire formats: descriptors, worker addresses and message frames reject
// truncated, oversized and corrupted input with an error, never a crash.
#include <random>
#include <string>

#include "gtest/gtest.h"
#include "transport/descriptor.h"
#include "transport/internal/wire.h"
#include "transport/transport.h"

namespace kvf::transport_internal {
namespace {

std::string Garbage(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::string s(n, '\0');
  for (char& c : s) c = static_cast<char>(rng());
  return s;
}

TEST(TransportWire, DescriptorRoundTrips) {
  RemoteDescriptor d{0x1234, 0xdead0000, 4096, MemoryType::kCuda, "rkey-bytes"};
  auto back = RemoteDescriptor::Parse(d.Serialize());
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->region_id, d.region_id);
  EXPECT_EQ(back->address, d.address);
  EXPECT_EQ(back->size, d.size);
  EXPECT_EQ(back->memory_type, d.memory_type);
  EXPECT_EQ(back->rkey, d.rkey);
}

TEST(TransportWire, DescriptorRejectsBadInput) {
  const std::string wire = RemoteDescriptor{1, 2, 3, MemoryType::kHost, "k"}.Serialize();
  for (size_t n = 0; n < wire.size(); ++n) EXPECT_FALSE(RemoteDescriptor::Parse(wire.substr(0, n)).ok());
  for (size_t i = 0; i < wire.size() * 8; ++i) {
    std::string bad = wire;
    bad[i / 8] ^= static_cast<char>(1 << (i % 8));
    EXPECT_EQ(RemoteDescriptor::Parse(bad).status().code(), absl::StatusCode::kInvalidArgument) << i;
  }
  for (uint64_t seed = 0; seed < 200; ++seed) {
    EXPECT_FALSE(RemoteDescriptor::Parse(Garbage(seed % 90, seed)).ok());
  }
  // A zero-sized or wrapping range is refused even with a valid checksum.
  EXPECT_FALSE(RemoteDescriptor::Parse(RemoteDescriptor{1, 2, 0, MemoryType::kHost, ""}.Serialize()).ok());
  EXPECT_FALSE(
      RemoteDescriptor::Parse(RemoteDescriptor{1, ~uint64_t{0}, 2, MemoryType::kHost, ""}.Serialize()).ok());
}

TEST(TransportWire, AddressEnvelope) {
  const std::string sealed = SealAddress(1, "ucx-address");
  auto body = OpenAddress(1, sealed);
  ASSERT_TRUE(body.ok());
  EXPECT_EQ(*body, "ucx-address");
  EXPECT_FALSE(OpenAddress(2, sealed).ok());  // another backend's address
  for (size_t n = 0; n < sealed.size(); ++n) EXPECT_FALSE(OpenAddress(1, sealed.substr(0, n)).ok());
  for (size_t i = 0; i < sealed.size(); ++i) {
    std::string bad = sealed;
    bad[i] ^= 0x10;
    EXPECT_FALSE(OpenAddress(1, bad).ok()) << i;
  }
}

TEST(TransportWire, FrameHeaders) {
  FrameHeader h{FrameKind::kResponse, 7, 99, 5, 12};
  const std::string wire = EncodeFrameHeader(h);
  ASSERT_EQ(wire.size(), kFrameHeaderBytes);
  auto back = ParseFrameHeader(wire, 12);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->type, 7);
  EXPECT_EQ(back->call_id, 99u);
  EXPECT_EQ(back->status_code, 5u);
  EXPECT_FALSE(ParseFrameHeader(wire, 11).ok());  // payload length disagrees
  for (size_t n = 0; n < wire.size(); ++n) EXPECT_FALSE(ParseFrameHeader(wire.substr(0, n), 12).ok());
  EXPECT_FALSE(ParseFrameHeader(wire + "x", 12).ok());
  for (size_t i : {0, 4, 5}) {  // magic, version, kind
    std::string bad = wire;
    bad[i] ^= 0x7f;
    EXPECT_FALSE(ParseFrameHeader(bad, 12).ok()) << i;
  }
  h.status_code = 99;  // not an absl::StatusCode
  EXPECT_FALSE(ParseFrameHeader(EncodeFrameHeader(h), 12).ok());
  h.status_code = 0;
  h.payload_length = kMaxMessageBytes + 1;
  EXPECT_FALSE(ParseFrameHeader(EncodeFrameHeader(h), kMaxMessageBytes + 1).ok());
  for (uint64_t seed = 0; seed < 200; ++seed) {
    EXPECT_FALSE(ParseFrameHeader(Garbage(kFrameHeaderBytes, seed), 0).ok());
  }
}

}  // namespace
}  // namespace kvf::transport_internal
