// The data plane under attack (docs/security.md): a victim tenant stores
// blocks through the real client library; an attacker speaks raw frames over
// the project's own transport to the same two real kvf-agent processes
// (tests/cluster/wire_fixture.h). Each test makes one attempt from the
// adversarial review of the data plane, asserts that it is refused with the
// documented code, and that the victim still reads every block byte-exact.
//
// Not covered here, because not yet closed: a peer that speaks UCX itself to
// an agent (docs/security.md, "Open").
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "client/client.h"
#include "client/internal/plan.h"
#include "common/block_hash.h"
#include "common/credentials.h"
#include "node/agent/sessions.h"
#include "gtest/gtest.h"
#include "protocol/frames.h"
#include "protocol/reply.h"
#include "tests/cluster/scrape.h"
#include "tests/cluster/wire_fixture.h"

namespace kvf::testing {
namespace {

using protocol::PeerRole;
using kvf::TenantLimits;
using kvf::SessionLimits;

constexpr size_t kVictimBlocks = 32;

class DataPlaneAttack : public WireFixture {
 protected:
  // Leases last as in production: the limit tests hold thousands at once.
  DataPlaneAttack() { extra_agent_flags_ = {}; }

  void SetUp() override {
    WireFixture::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    victim_cred_ = *TenantCredential(cluster_->token(), "victim");
    mallory_cred_ = *TenantCredential(cluster_->token(), "mallory");
    ClientOptions o;
    o.coordinator = cluster_->coordinator();
    o.token = victim_cred_;
    auto client = Client::Connect(o);
    ASSERT_TRUE(client.ok()) << client.status();
    victim_ = std::move(*client);
    victim_spec_ = TinySpec("victim-model");
    victim_spec_.tenant = "victim";
    auto ns = victim_->RegisterNamespace(victim_spec_);
    ASSERT_TRUE(ns.ok()) << ns.status();
    ns_ = *ns;
    std::vector<uint32_t> tokens(kVictimBlocks * victim_spec_.layout.block_tokens);
    std::mt19937_64 rng(7);
    for (auto& t : tokens) t = static_cast<uint32_t>(rng());
    chain_ = *HashSequence(victim_spec_.hash, tokens, victim_spec_.layout.block_tokens);
    refs_ = client_internal::MakeKeyRefs(ns_.id(), chain_, victim_spec_.segment_blocks, 0,
                                         chain_.size());
    for (size_t i = 0; i < kVictimBlocks; ++i) blocks_.push_back(Block(static_cast<uint8_t>(i)));
    std::vector<ConstBlockBuffer> bufs;
    for (const auto& b : blocks_) bufs.push_back({b.data(), b.size()});
    auto put = victim_->BatchPut(ns_, chain_, 0, bufs);
    ASSERT_TRUE(put.ok() && put->all_ok()) << (put.ok() ? put->FirstError() : put.status());
    // Both agents know the namespace (the attacks name it everywhere).
    SpeakAs(PeerRole::kClient, victim_cred_);
    for (const NodeInfo& n : map_.nodes) ASSERT_TRUE(Register(n.id, victim_spec_).ok());
    SpeakAs(PeerRole::kAgent, "");
    ExpectVictimIntact();
  }

  void TearDown() override {
    victim_.reset();
    WireFixture::TearDown();
  }

  // Every victim block reads back byte-exact through the victim's client.
  void ExpectVictimIntact() {
    std::vector<std::vector<char>> out(kVictimBlocks, std::vector<char>(blocks_[0].size()));
    std::vector<BlockBuffer> dst;
    for (auto& b : out) dst.push_back({b.data(), b.size()});
    auto got = victim_->BatchGet(ns_, chain_, 0, dst);
    ASSERT_TRUE(got.ok()) << got.status();
    for (size_t i = 0; i < kVictimBlocks; ++i) {
      ASSERT_TRUE(got->blocks[i].status.ok()) << "block " << i << ": " << got->blocks[i].status;
      EXPECT_EQ(out[i], blocks_[i]) << "block " << i << " changed";
    }
  }

  // Speaks as `tenant` from now on, with a namespace of its own (spec_) on
  // `node` holding one block of `data`; returns the block's key.
  protocol::KeyRef OwnBlock(const std::string& tenant, NodeId node, const std::vector<char>& data) {
    SpeakAs(PeerRole::kClient, *TenantCredential(cluster_->token(), tenant));
    spec_ = TinySpec(tenant + "-model");
    spec_.tenant = tenant;
    EXPECT_TRUE(Register(node, spec_).ok());
    const protocol::KeyRef k = KeyOwnedBy(node);
    EXPECT_TRUE(PutBlock(node, k, data).ok());
    return k;
  }

  protocol::FrameHeader VictimHeader() const {
    protocol::FrameHeader h = Header(victim_spec_);
    return h;
  }

  // The agent that owns victim block `i` (R=1), and one that does not.
  NodeId OwnerOf(size_t i) const { return placement_->Owners(refs_[i].placement_hash)[0]; }
  NodeId OtherThan(NodeId n) const {
    return map_.nodes[0].id == n ? map_.nodes[1].id : map_.nodes[0].id;
  }
  std::string HttpOf(NodeId n) const {
    for (const AgentProcess& a : cluster_->agents()) {
      if (a.node == n) return a.http;
    }
    return "";
  }

  // One frame of every request type, naming the victim's namespace and keys.
  std::vector<std::pair<FrameType, std::string>> EveryRequest() {
    std::vector<std::pair<FrameType, std::string>> out;
    const protocol::FrameHeader h = VictimHeader();
    protocol::RegisterNamespaceRequest reg{h, victim_spec_};
    out.emplace_back(reg.kType, *reg.Encode());
    protocol::LookupRequest look{h, {refs_[0]}};
    out.emplace_back(look.kType, *look.Encode());
    protocol::GetRequest get;
    get.header = h;
    get.keys = {refs_[0]};
    out.emplace_back(get.kType, *get.Encode());
    protocol::ReleaseRequest rel{h, 1};
    out.emplace_back(rel.kType, *rel.Encode());
    protocol::ReserveRequest res;
    res.header = h;
    protocol::ReserveEntry e;
    e.key = refs_[0].key;
    e.placement_hash = refs_[0].placement_hash;
    e.size = static_cast<uint32_t>(blocks_[0].size());
    res.entries = {e};
    out.emplace_back(res.kType, *res.Encode());
    protocol::CommitRequest com;
    com.header = h;
    com.reservation_ids = {1, 2, 3};
    out.emplace_back(com.kType, *com.Encode());
    protocol::RemoveRequest rem{h, {refs_.begin(), refs_.end()}};
    out.emplace_back(rem.kType, *rem.Encode());
    protocol::InvalidateRequest inv;
    inv.header = h;
    for (const auto& r : refs_) inv.invalidations.push_back({r.key, Version{~0ull, ~0ull}});
    out.emplace_back(inv.kType, *inv.Encode());
    return out;
  }

  // The status of a raw request's answer (OK for a non-error frame).
  absl::Status Answer(NodeId node, FrameType type, const std::string& bytes) {
    auto raw = Raw(node, type, bytes);
    if (!raw.ok()) return raw.status();
    auto h = protocol::DecodeHeader(*raw);
    if (!h.ok()) return h.status();
    if (h->type != FrameType::kErrorResponse) return absl::OkStatus();
    return protocol::ErrorResponse::Decode(*raw)->ToStatus();
  }

  std::string victim_cred_, mallory_cred_;
  std::unique_ptr<Client> victim_;
  NamespaceSpec victim_spec_;
  Namespace ns_;
  std::vector<BlockKey> chain_;
  std::vector<protocol::KeyRef> refs_;
  std::vector<std::vector<char>> blocks_;
};

TEST_F(DataPlaneAttack, FramesWithoutASessionAreUnauthenticated) {
  stamp_ = false;
  for (NodeId node : {map_.nodes[0].id, map_.nodes[1].id}) {
    const double before = Metric(HttpOf(node), "kvf_agent_unauthenticated_total");
    size_t sent = 0;
    for (auto& [type, bytes] : EveryRequest()) {
      // No session, and a made-up one.
      for (uint64_t session : {uint64_t{0}, uint64_t{0x1234567890abcdef}}) {
        std::string frame = bytes;
        ASSERT_TRUE(protocol::StampSession(&frame, session).ok());
        absl::Status s = Answer(node, type, frame);
        EXPECT_EQ(s.code(), absl::StatusCode::kUnauthenticated)
            << protocol::FrameTypeName(type) << " with session " << session << ": " << s;
        ++sent;
      }
    }
    EXPECT_EQ(Metric(HttpOf(node), "kvf_agent_unauthenticated_total"), before + sent);
  }
  ExpectVictimIntact();
}

TEST_F(DataPlaneAttack, WrongCredentialsGetNoSession) {
  const NodeId node = map_.nodes[0].id;
  const std::string forged = *TenantCredential("some-other-cluster's-token", "victim");
  for (const std::string& cred :
       {std::string("not-the-token"), cluster_->token() + "x", forged,
        std::string(kTenantCredentialPrefix) + "victim.00"}) {
    auto s = Hello(node, PeerRole::kClient, cred);
    EXPECT_EQ(s.status().code(), absl::StatusCode::kUnauthenticated) << cred << ": " << s.status();
  }
  // A tenant credential cannot speak for an agent.
  auto s = Hello(node, PeerRole::kAgent, victim_cred_);
  EXPECT_EQ(s.status().code(), absl::StatusCode::kUnauthenticated) << s.status();
  ExpectVictimIntact();
}

TEST_F(DataPlaneAttack, AnotherTenantGetsPermissionDeniedAndNotAByte) {
  SpeakAs(PeerRole::kClient, mallory_cred_);
  for (NodeId node : {map_.nodes[0].id, map_.nodes[1].id}) {
    for (auto& [type, bytes] : EveryRequest()) {
      absl::Status s = Answer(node, type, bytes);
      EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied)
          << protocol::FrameTypeName(type) << " to node " << node << ": " << s;
    }
  }
  // Through the client library too: naming the victim's tenant in a spec
  // proves nothing, and the buffer stays as it was.
  ClientOptions o;
  o.coordinator = cluster_->coordinator();
  o.token = mallory_cred_;
  auto mallory = Client::Connect(o);
  ASSERT_TRUE(mallory.ok()) << mallory.status();
  auto ns = (*mallory)->RegisterNamespace(victim_spec_);
  ASSERT_TRUE(ns.ok()) << ns.status();
  std::vector<char> buf(blocks_[0].size(), 0x5a);
  for (size_t i = 0; i < 4; ++i) {
    auto got = (*mallory)->Get(*ns, chain_, i, buf.data(), buf.size());
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_EQ(got->status.code(), absl::StatusCode::kPermissionDenied) << got->status;
    EXPECT_EQ(buf, std::vector<char>(blocks_[0].size(), 0x5a));
  }
  auto removed = (*mallory)->Remove(*ns, chain_);
  if (removed.ok()) {
    EXPECT_EQ(removed->ok_count(), 0u);
  }
  ExpectVictimIntact();
}

TEST_F(DataPlaneAttack, ClientsCannotInvalidate) {
  // Not the victim's own credential, not even the cluster token as a client.
  for (const std::string& cred : {victim_cred_, cluster_->token()}) {
    SpeakAs(PeerRole::kClient, cred);
    for (NodeId node : {map_.nodes[0].id, map_.nodes[1].id}) {
      protocol::InvalidateRequest inv;
      inv.header = VictimHeader();
      for (const auto& r : refs_) inv.invalidations.push_back({r.key, Version{~0ull, ~0ull}});
      absl::Status s = Answer(node, inv.kType, *inv.Encode());
      EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied) << s;
    }
  }
  ExpectVictimIntact();
  // The victim can still write its blocks (the original attack made re-puts
  // fail with ABORTED for good).
  std::vector<ConstBlockBuffer> bufs;
  for (const auto& b : blocks_) bufs.push_back({b.data(), b.size()});
  auto put = victim_->BatchPut(ns_, chain_, 0, bufs);
  ASSERT_TRUE(put.ok()) << put.status();
  EXPECT_TRUE(put->all_ok()) << put->FirstError();
}

TEST_F(DataPlaneAttack, VersionsMoveOnlyThroughTheOwnersCommit) {
  SpeakAs(PeerRole::kClient, victim_cred_);
  const NodeId node = OwnerOf(0);
  protocol::ReserveRequest res;
  res.header = VictimHeader();
  protocol::ReserveEntry e;
  e.key = refs_[0].key;
  e.placement_hash = refs_[0].placement_hash;
  e.size = static_cast<uint32_t>(blocks_[0].size());
  e.has_version = true;
  e.version = Version{~0ull, ~0ull};
  res.entries.push_back(e);  // no tag
  e.version_tag = VersionTag(cluster_->token(), ns_.id(), refs_[1].key, e.version);
  res.entries.push_back(e);  // another key's tag
  e.version_tag = VersionTag("not-the-token", ns_.id(), refs_[0].key, e.version);
  res.entries.push_back(e);  // a tag under another token
  auto resp = Send<protocol::ReserveResponse>(node, res);
  ASSERT_TRUE(resp.ok()) << resp.status();
  for (const auto& r : resp->results) {
    EXPECT_EQ(r.code, absl::StatusCode::kPermissionDenied);
    EXPECT_EQ(r.reservation_id, 0u);
  }
  ExpectVictimIntact();
}

TEST_F(DataPlaneAttack, AClientsEpochSkipsNoOwnerCheck) {
  SpeakAs(PeerRole::kClient, victim_cred_);
  for (size_t i = 0; i < kVictimBlocks; ++i) {
    protocol::RemoveRequest rem;
    rem.header = VictimHeader();
    rem.header.sender_epoch += 1000000;
    rem.keys = {refs_[i]};
    protocol::ReplyError err;
    auto resp = Send<protocol::RemoveResponse>(OtherThan(OwnerOf(i)), rem, &err);
    EXPECT_EQ(resp.status().code(), absl::StatusCode::kFailedPrecondition) << resp.status();
    EXPECT_TRUE(err.wrong_owner);
  }
  ExpectVictimIntact();
}

TEST_F(DataPlaneAttack, ANamespaceFloodStopsAtTheTenantLimit) {
  SpeakAs(PeerRole::kClient, mallory_cred_);
  const NodeId node = map_.nodes[0].id;
  const TenantLimits limits;
  size_t accepted = 0;
  absl::Status last;
  for (size_t i = 0; i < limits.namespaces + 50; ++i) {
    NamespaceSpec spec = TinySpec(absl::StrCat("flood-", i));
    spec.tenant = "mallory";
    last = Register(node, spec);
    if (!last.ok()) break;
    ++accepted;
  }
  EXPECT_EQ(accepted, limits.namespaces);
  EXPECT_EQ(last.code(), absl::StatusCode::kResourceExhausted) << last;
  EXPECT_GE(Metric(HttpOf(node), "kvf_agent_resource_exhausted_total{resource=\"namespaces\"}"), 1);
  // Other tenants are not affected.
  NamespaceSpec fresh = victim_spec_;
  fresh.model_id = "victim-second-model";
  SpeakAs(PeerRole::kClient, victim_cred_);
  EXPECT_TRUE(Register(node, fresh).ok());
  ExpectVictimIntact();
}

TEST_F(DataPlaneAttack, ReadLeasesStopAtTheTenantLimitAndOnlyTheirTenantReleasesThem) {
  // A tenant of its own, so that no other reader's leases count.
  const NodeId node = map_.nodes[0].id;
  const protocol::KeyRef k = OwnBlock("reader", node, Block(9));
  protocol::GetRequest get;
  get.header = Header(spec_);
  get.keys = {k};
  auto first = Send<protocol::GetResponse>(node, get);
  ASSERT_TRUE(first.ok()) << first.status();
  ASSERT_NE(first->lease_id, 0u);
  // Another tenant's release of it is refused or ignored.
  const protocol::ReleaseRequest theirs{Header(spec_), first->lease_id};
  SpeakAs(PeerRole::kClient, mallory_cred_);
  NamespaceSpec own = TinySpec("mallory-model");
  own.tenant = "mallory";
  ASSERT_TRUE(Register(node, own).ok());
  EXPECT_EQ(Send<protocol::AckResponse>(node, theirs).status().code(),
            absl::StatusCode::kPermissionDenied);
  ASSERT_TRUE(Send<protocol::AckResponse>(node, protocol::ReleaseRequest{Header(own), first->lease_id}).ok());
  // The reader holds at most its limit of leases at once, the first included
  // (so mallory's release did not free it).
  SpeakAs(PeerRole::kClient, *TenantCredential(cluster_->token(), "reader"));
  const TenantLimits limits;
  size_t held = 1;
  absl::Status last;
  while (held < limits.read_leases + 10) {
    auto r = Send<protocol::GetResponse>(node, get);
    last = r.status();
    if (!r.ok()) break;
    ++held;
  }
  EXPECT_EQ(held, limits.read_leases);
  EXPECT_EQ(last.code(), absl::StatusCode::kResourceExhausted) << last;
  EXPECT_GE(Metric(HttpOf(node), "kvf_agent_resource_exhausted_total{resource=\"read_leases\"}"), 1);
  // Releasing one makes room for one.
  ASSERT_TRUE(Send<protocol::AckResponse>(node, theirs).ok());
  EXPECT_TRUE(Send<protocol::GetResponse>(node, get).ok());
  ExpectVictimIntact();
}

TEST_F(DataPlaneAttack, SessionsStopAtTheTenantLimit) {
  const NodeId node = map_.nodes[0].id;
  const SessionLimits limits;
  size_t opened = 0;
  absl::Status last;
  while (opened < limits.max_sessions_per_tenant + 10) {
    auto s = Hello(node, PeerRole::kClient, mallory_cred_);
    last = s.status();
    if (!s.ok()) break;
    ++opened;
  }
  EXPECT_EQ(opened, limits.max_sessions_per_tenant);
  EXPECT_EQ(last.code(), absl::StatusCode::kResourceExhausted) << last;
  // The victim still gets in.
  EXPECT_TRUE(Hello(node, PeerRole::kClient, victim_cred_).ok());
  ExpectVictimIntact();
}

TEST_F(DataPlaneAttack, ATenantIsNeverHandedTheArena) {
  // The review read 67 other blocks through a Get's descriptor and wrote
  // 0xAB over a victim's block: a tenant session now gets no descriptor,
  // only its blocks' sizes, and moves bytes through the agent.
  const NodeId node = map_.nodes[0].id;
  const protocol::KeyRef k = OwnBlock("mallory", node, Block(5));
  protocol::GetRequest get;
  get.header = Header(spec_);
  get.keys = {k};
  auto got = Send<protocol::GetResponse>(node, get);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_TRUE(got->descriptors.empty());
  ASSERT_EQ(got->entries[0].code, absl::StatusCode::kOk);
  EXPECT_EQ(got->entries[0].location, (protocol::BlockLocation{0, 0, static_cast<uint32_t>(Block(5).size())}));
  protocol::ReserveRequest res;
  res.header = Header(spec_);
  protocol::ReserveEntry e;
  e.key = KeyOwnedBy(node, 1).key;
  e.placement_hash = KeyOwnedBy(node, 1).placement_hash;
  e.size = static_cast<uint32_t>(Block(6).size());
  res.entries = {e};
  auto reserved = Send<protocol::ReserveResponse>(node, res);
  ASSERT_TRUE(reserved.ok()) << reserved.status();
  EXPECT_TRUE(reserved->descriptors.empty());
  EXPECT_EQ(reserved->results[0].location.offset, 0u);
  ExpectVictimIntact();
}

TEST_F(DataPlaneAttack, ReadsAndWritesStayInsideTheGrant) {
  const NodeId node = map_.nodes[0].id;
  const std::vector<char> mine = Block(5);
  const protocol::KeyRef k = OwnBlock("mallory", node, mine);
  protocol::GetRequest get;
  get.header = Header(spec_);
  get.keys = {k, KeyOwnedBy(node, 2)};  // the second is not held: not granted
  auto got = Send<protocol::GetResponse>(node, get);
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_EQ(got->entries[0].code, absl::StatusCode::kOk);
  const uint32_t size = got->entries[0].location.size;
  auto read = [&](uint64_t lease, uint32_t entry, uint32_t offset, uint32_t length) {
    protocol::ReadRequest r;
    r.header = Header(spec_);
    r.lease_id = lease;
    r.ranges = {{entry, offset, length}};
    return Send<protocol::ReadResponse>(node, r);
  };
  // The granted block reads back whole and exact...
  auto whole = read(got->lease_id, 0, 0, size);
  ASSERT_TRUE(whole.ok()) << whole.status();
  EXPECT_EQ(whole->bytes, std::string(mine.begin(), mine.end()));
  // ...and nothing past it, nothing ungranted, nothing on a made-up lease.
  EXPECT_EQ(read(got->lease_id, 0, size - 4, 8).status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(read(got->lease_id, 0, 0xffffffff, 1).status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(read(got->lease_id, 1, 0, 8).status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(read(got->lease_id, 7, 0, 8).status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(read(got->lease_id + 1, 0, 0, 8).status().code(), absl::StatusCode::kNotFound);
  // The victim's lease, read with mallory's namespace in the header.
  SpeakAs(PeerRole::kClient, victim_cred_);
  protocol::GetRequest vget;
  vget.header = VictimHeader();
  vget.keys = {refs_[0]};
  auto vgot = Send<protocol::GetResponse>(OwnerOf(0), vget);
  ASSERT_TRUE(vgot.ok()) << vgot.status();
  SpeakAs(PeerRole::kClient, mallory_cred_);
  if (OwnerOf(0) == node) {
    EXPECT_EQ(read(vgot->lease_id, 0, 0, 8).status().code(), absl::StatusCode::kNotFound);
  }
  // Writes: only into a reservation of one's own, inside its page.
  auto write = [&](uint64_t reservation, uint32_t offset, uint32_t length) {
    protocol::WriteRequest w;
    w.header = Header(spec_);
    w.ranges = {{reservation, offset, length}};
    w.bytes.assign(length, '\xab');
    return Send<protocol::AckResponse>(node, w).status();
  };
  protocol::ReserveRequest res;
  res.header = Header(spec_);
  protocol::ReserveEntry e;
  e.key = KeyOwnedBy(node, 3).key;
  e.placement_hash = KeyOwnedBy(node, 3).placement_hash;
  e.size = size;
  res.entries = {e};
  auto reserved = Send<protocol::ReserveResponse>(node, res);
  ASSERT_TRUE(reserved.ok()) << reserved.status();
  ASSERT_EQ(reserved->results[0].code, absl::StatusCode::kOk);
  const uint64_t id = reserved->results[0].reservation_id;
  EXPECT_TRUE(write(id, 0, size).ok());
  EXPECT_EQ(write(id, size - 4, 8).code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(write(id, 0xfffffff0, 32).code(), absl::StatusCode::kOutOfRange);
  for (uint64_t guess = 1; guess < 64; ++guess) {  // reservation ids are small numbers
    if (guess == id) continue;
    EXPECT_EQ(write(guess, 0, 8).code(), absl::StatusCode::kNotFound) << guess;
  }
  ExpectVictimIntact();
}

// Two owners per block.
class TenantAckAll : public DataPlaneAttack {
 protected:
  TenantAckAll() { replication_ = 2; }
};

TEST_F(TenantAckAll, ATenantsAckAllPutsCarryThePrimarysTags) {
  // The honest path the tag check must not break: a tenant's ack=all put
  // writes the primary's version, with its tag, to the other owner.
  PutOptions all;
  all.has_ack = true;
  all.ack = AckMode::kAll;
  all.is_mutable = true;
  for (size_t i = 0; i < 4; ++i) {
    auto v = victim_->Put(ns_, chain_, i, blocks_[i].data(), blocks_[i].size(), all);
    EXPECT_TRUE(v.ok()) << v.status();
  }
  ExpectVictimIntact();
}

}  // namespace
}  // namespace kvf::testing
