// The agent's data port under bad and adversarial input, spoken in raw frames
// over a real transport to real kvf-agent processes: garbage frames,
// unregistered namespaces, wrong layouts, oversize blocks, keys the agent does
// not own, and a reader that vanishes holding a lease. The agent must answer
// each with a clear error and keep serving.
#include <signal.h>

#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "httplib.h"
#include "absl/strings/str_cat.h"
#include "common/placement.h"
#include "gtest/gtest.h"
#include "tests/cluster/scrape.h"
#include "protocol/frames.h"
#include "protocol/reply.h"
#include "tests/cluster/local_cluster.h"
#include "tests/cluster/wire_fixture.h"
#include "transport/transport.h"

namespace kvf::testing {
namespace {

class AgentWireTest : public WireFixture {};

TEST_F(AgentWireTest, GarbageFramesGetErrorsAndTheAgentKeepsServing) {
  const NodeId node = map_.nodes[0].id;
  ASSERT_TRUE(Register(node, spec_).ok());
  std::mt19937_64 rng(42);
  protocol::LookupRequest valid;
  valid.header = Header(spec_);
  valid.keys.push_back(KeyOwnedBy(node));
  const std::string good = *valid.Encode();
  static constexpr FrameType kRequests[] = {
      FrameType::kLookupRequest,  FrameType::kGetRequest,    FrameType::kReleaseRequest,
      FrameType::kReserveRequest, FrameType::kCommitRequest, FrameType::kRemoveRequest,
      FrameType::kInvalidateRequest, FrameType::kRegisterNamespaceRequest};
  // A response type sent as a request: the transport says nobody serves it.
  EXPECT_EQ(Raw(node, FrameType::kGetResponse, good).status().code(),
            absl::StatusCode::kUnimplemented);
  for (int i = 0; i < 300; ++i) {
    std::string junk;
    if (i % 3 == 0) {  // random bytes
      junk.resize(rng() % 200);
      for (char& c : junk) c = static_cast<char>(rng());
    } else {  // a valid frame with a few bytes flipped or cut
      junk = good;
      if (i % 3 == 1) {
        for (int f = 0; f < 3; ++f) junk[rng() % junk.size()] ^= static_cast<char>(1 + rng() % 255);
      } else {
        junk.resize(rng() % junk.size());
      }
    }
    const auto type = kRequests[rng() % std::size(kRequests)];
    auto raw = Raw(node, type, junk);
    ASSERT_TRUE(raw.ok()) << "the agent must answer, not drop the connection: " << raw.status();
    auto h = protocol::DecodeHeader(*raw);
    ASSERT_TRUE(h.ok()) << h.status();
    if (h->type == FrameType::kErrorResponse) {
      auto e = protocol::ErrorResponse::Decode(*raw);
      ASSERT_TRUE(e.ok());
      EXPECT_NE(e->code, absl::StatusCode::kOk);
      EXPECT_FALSE(e->message.empty());
    }
  }
  // Still serving, and still correct.
  auto resp = Send<protocol::LookupResponse>(node, valid);
  ASSERT_TRUE(resp.ok()) << resp.status();
  ASSERT_EQ(resp->entries.size(), 1u);
  EXPECT_FALSE(resp->entries[0].held);
}

TEST_F(AgentWireTest, UnknownNamespaceAndWrongLayoutAreErrorsNotBytes) {
  const NodeId node = map_.nodes[0].id;
  const protocol::KeyRef k = KeyOwnedBy(node);
  protocol::LookupRequest req;
  req.header = Header(spec_);
  req.keys.push_back(k);
  auto unregistered = Send<protocol::LookupResponse>(node, req);
  EXPECT_EQ(unregistered.status().code(), absl::StatusCode::kNotFound) << unregistered.status();
  EXPECT_TRUE(absl::StrContains(unregistered.status().message(), "not registered"));

  ASSERT_TRUE(Register(node, spec_).ok());
  ASSERT_TRUE(PutBlock(node, k, Block(1)).ok());
  // Same namespace id, another layout fingerprint: refused before any lookup.
  protocol::GetRequest get;
  get.header = Header(spec_);
  get.header.layout_fingerprint ^= 1;
  get.keys.push_back(k);
  auto wrong = Send<protocol::GetResponse>(node, get);
  EXPECT_EQ(wrong.status().code(), absl::StatusCode::kInvalidArgument) << wrong.status();
  EXPECT_TRUE(absl::StrContains(wrong.status().message(), "layout fingerprint"));
  // A namespace spec whose id does not match the header is refused too.
  protocol::RegisterNamespaceRequest reg;
  reg.header = Header(spec_);
  reg.spec = TinySpec("other-model");
  EXPECT_FALSE(reg.Encode().ok());
}

TEST_F(AgentWireTest, OversizeBlocksAreRefusedPerKey) {
  const NodeId node = map_.nodes[0].id;
  ASSERT_TRUE(Register(node, spec_).ok());
  protocol::ReserveRequest rr;
  rr.header = Header(spec_);
  protocol::ReserveEntry e;
  const protocol::KeyRef k = KeyOwnedBy(node);
  e.key = k.key;
  e.placement_hash = k.placement_hash;
  e.size = static_cast<uint32_t>(spec_.layout.BytesPerBlock() * 4);
  rr.entries.push_back(e);
  auto resp = Send<protocol::ReserveResponse>(node, rr);
  ASSERT_TRUE(resp.ok()) << resp.status();
  EXPECT_EQ(resp->results[0].code, absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(resp->results[0].reservation_id, 0u);
}

TEST_F(AgentWireTest, KeysOfAnotherOwnerGetWrongOwnerWithTheEpoch) {
  ASSERT_EQ(map_.nodes.size(), 2u);
  const NodeId a = map_.nodes[0].id;
  const NodeId b = map_.nodes[1].id;
  ASSERT_TRUE(Register(a, spec_).ok());
  protocol::GetRequest get;
  get.header = Header(spec_);
  get.keys.push_back(KeyOwnedBy(b));
  protocol::ReplyError err;
  auto resp = Send<protocol::GetResponse>(a, get, &err);
  EXPECT_EQ(resp.status().code(), absl::StatusCode::kFailedPrecondition) << resp.status();
  EXPECT_TRUE(err.wrong_owner);
  EXPECT_EQ(err.current_epoch, map_.epoch);
  // An agent with a newer map is trusted (this agent may lag)...
  get.header.sender_epoch = map_.epoch + 1;
  EXPECT_TRUE(Send<protocol::GetResponse>(a, get).ok());
  // ...but a client's epoch is only a claim: it skips no check.
  SpeakAs(protocol::PeerRole::kClient, "");
  get.header.sender_epoch = map_.epoch + 1000000;
  err = {};
  resp = Send<protocol::GetResponse>(a, get, &err);
  EXPECT_EQ(resp.status().code(), absl::StatusCode::kFailedPrecondition) << resp.status();
  EXPECT_TRUE(err.wrong_owner);
  EXPECT_EQ(err.current_epoch, map_.epoch);
}

TEST_F(AgentWireTest, AVanishedReadersLeaseExpiresAndTheBlockIsFreeAgain) {
  const NodeId node = map_.nodes[0].id;
  ASSERT_TRUE(Register(node, spec_).ok());
  const protocol::KeyRef k = KeyOwnedBy(node);
  ASSERT_TRUE(PutBlock(node, k, Block(3)).ok());
  protocol::GetRequest get;
  get.header = Header(spec_);
  get.keys.push_back(k);
  auto resp = Send<protocol::GetResponse>(node, get);
  ASSERT_TRUE(resp.ok()) << resp.status();
  ASSERT_EQ(resp->entries[0].code, absl::StatusCode::kOk);
  EXPECT_NE(resp->lease_id, 0u);
  EXPECT_EQ(resp->lease_ttl_us, 300000u);
  // The reader never releases: the agent holds one lease...
  const std::string http = cluster_->agents()[0].http;
  ASSERT_EQ(cluster_->agents()[0].node, node);
  EXPECT_EQ(Metric(http, "kvf_agent_leases"), 1);
  EXPECT_EQ(Metric(http, "kvf_agent_pinned_blocks"), 1);
  // ...until its maintenance sweep expires it and the block is unpinned.
  const absl::Time deadline = absl::Now() + absl::Seconds(20);
  while ((Metric(http, "kvf_agent_leases") != 0 || Metric(http, "kvf_agent_pinned_blocks") != 0) &&
         absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(50));  // polling with a deadline
  }
  EXPECT_EQ(Metric(http, "kvf_agent_leases"), 0) << "the lease never expired";
  EXPECT_EQ(Metric(http, "kvf_agent_pinned_blocks"), 0);
  // The block is still there for the next reader.
  protocol::LookupRequest look;
  look.header = Header(spec_);
  look.keys.push_back(k);
  auto held = Send<protocol::LookupResponse>(node, look);
  ASSERT_TRUE(held.ok()) << held.status();
  EXPECT_TRUE(held->entries[0].held);
}

TEST_F(AgentWireTest, GetHandsOutTheCommittedBytes) {
  const NodeId node = map_.nodes[1].id;
  ASSERT_TRUE(Register(node, spec_).ok());
  const protocol::KeyRef k = KeyOwnedBy(node, 1);
  const std::vector<char> data = Block(9);
  ASSERT_TRUE(PutBlock(node, k, data).ok());
  protocol::GetRequest get;
  get.header = Header(spec_);
  get.keys.push_back(k);
  auto resp = Send<protocol::GetResponse>(node, get);
  ASSERT_TRUE(resp.ok()) << resp.status();
  const protocol::GetEntry& e = resp->entries[0];
  ASSERT_EQ(e.code, absl::StatusCode::kOk);
  ASSERT_EQ(e.location.size, data.size());
  auto region = Import(node, resp->descriptors[e.location.descriptor_index]);
  ASSERT_TRUE(region.ok()) << region.status();
  std::vector<char> got(data.size());
  TransferBatch b;
  b.kind = TransferKind::kGet;
  b.remote = *region;
  b.ops.push_back({got.data(), got.size(), e.location.offset});
  auto posted = transport_->Post(std::move(b));
  ASSERT_TRUE(posted.ok()) << posted.status();
  ASSERT_TRUE((*posted)->Wait(absl::Now() + absl::Seconds(10)).ok());
  EXPECT_EQ(got, data);
  protocol::ReleaseRequest rel;
  rel.header = Header(spec_);
  rel.lease_id = resp->lease_id;
  EXPECT_TRUE(Send<protocol::AckResponse>(node, rel).ok());
}

// device_ok asks for GPU-tier blocks over CUDA IPC; an agent without a GPU
// tier answers exactly as without it: host-arena locations, one descriptor.
TEST_F(AgentWireTest, DeviceOkWithoutAGpuTierIsAnsweredFromTheHostArena) {
  const NodeId node = map_.nodes[0].id;
  ASSERT_TRUE(Register(node, spec_).ok());
  const protocol::KeyRef k = KeyOwnedBy(node, 2);
  ASSERT_TRUE(PutBlock(node, k, Block(4)).ok());
  protocol::GetRequest get;
  get.header = Header(spec_);
  get.keys.push_back(k);
  get.device_ok = true;
  auto resp = Send<protocol::GetResponse>(node, get);
  ASSERT_TRUE(resp.ok()) << resp.status();
  ASSERT_EQ(resp->entries[0].code, absl::StatusCode::kOk);
  ASSERT_EQ(resp->descriptors.size(), 1u);
  EXPECT_EQ(resp->descriptors[0].memory_type, MemoryType::kHost);
  EXPECT_EQ(resp->entries[0].location.descriptor_index, 0u);
  protocol::ReleaseRequest rel;
  rel.header = Header(spec_);
  rel.lease_id = resp->lease_id;
  EXPECT_TRUE(Send<protocol::AckResponse>(node, rel).ok());
}

TEST_F(AgentWireTest, AStaleCopyIsNeverServed) {
  const NodeId node = map_.nodes[0].id;
  ASSERT_TRUE(Register(node, spec_).ok());
  const protocol::KeyRef k = KeyOwnedBy(node, 2);
  ASSERT_TRUE(PutBlock(node, k, Block(5)).ok());
  protocol::LookupRequest look;
  look.header = Header(spec_);
  look.keys.push_back(k);
  auto before = Send<protocol::LookupResponse>(node, look);
  ASSERT_TRUE(before.ok()) << before.status();
  ASSERT_TRUE(before->entries[0].held);
  // The primary (here: the test) announces a newer version.
  protocol::InvalidateRequest inv;
  inv.header = Header(spec_);
  Version newer = before->entries[0].version;
  newer.counter += 5;
  inv.invalidations.push_back({k.key, newer});
  ASSERT_TRUE(Send<protocol::AckResponse>(node, inv).ok());
  auto after = Send<protocol::LookupResponse>(node, look);
  ASSERT_TRUE(after.ok());
  EXPECT_FALSE(after->entries[0].held) << "a stale copy must not count as held";
  protocol::GetRequest get;
  get.header = Header(spec_);
  get.keys.push_back(k);
  auto got = Send<protocol::GetResponse>(node, get);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_NE(got->entries[0].code, absl::StatusCode::kOk) << "a stale copy was handed out";
  // An older copy arriving late (lazy sync out of order) is refused too.
  protocol::ReserveRequest rr;
  rr.header = Header(spec_);
  protocol::ReserveEntry e;
  e.key = k.key;
  e.placement_hash = k.placement_hash;
  e.size = static_cast<uint32_t>(spec_.layout.BytesPerBlock());
  e.has_version = true;
  e.version = before->entries[0].version;
  e.version.counter += 1;  // newer than stored, older than announced
  rr.entries.push_back(e);
  auto late = Send<protocol::ReserveResponse>(node, rr);
  ASSERT_TRUE(late.ok()) << late.status();
  EXPECT_EQ(late->results[0].code, absl::StatusCode::kAborted);
}

}  // namespace
}  // namespace kvf::testing
