// A fixture that speaks the data-plane protocol in raw frames over a real
// transport to the agents of a real two-agent local cluster (R=1): what a
// buggy or hostile client can send. Used by the wire tests (bad input) and
// the security suite (tests/security).
#ifndef KVF_TESTS_CLUSTER_WIRE_FIXTURE_H_
#define KVF_TESTS_CLUSTER_WIRE_FIXTURE_H_

#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/namespace.h"
#include "common/placement.h"
#include "gtest/gtest.h"
#include "protocol/frames.h"
#include "protocol/reply.h"
#include "tests/cluster/local_cluster.h"
#include "transport/transport.h"

namespace kvf::testing {

using protocol::FrameType;

inline NamespaceSpec TinySpec(std::string model = "wire-test") {
  NamespaceSpec s;
  s.model_id = std::move(model);
  s.layout = KvLayout{.num_layers = 2, .num_kv_heads = 2, .head_dim = 64, .block_tokens = 8,
                      .dtype = DType::kFp16};
  s.segment_blocks = 4;
  return s;
}

class WireFixture : public ::testing::Test {
 protected:
  void SetUp() override {
#ifndef KVF_AGENT_BIN
    GTEST_SKIP() << "kvf-agent is not built";
#endif
    LocalClusterOptions o;
    o.agents = 2;
    o.replication = replication_;
    o.extra_agent_flags = extra_agent_flags_;
    o.ucx_tls = ucx_tls_;
    auto c = LocalCluster::Start(o);
    ASSERT_TRUE(c.ok()) << c.status();
    cluster_ = std::move(*c);
    auto map = cluster_->GetClusterMap();
    ASSERT_TRUE(map.ok()) << map.status();
    map_ = *map;
    auto placement = Placement::Build(Placement::ReadMembers(map_), map_.ring);
    ASSERT_TRUE(placement.ok());
    placement_.emplace(*std::move(placement));
    TransportConfig tc;
    tc.name = "wire-test";
    tc.ucx_tls = ucx_tls_;
    auto t = CreateTransport(tc);
    ASSERT_TRUE(t.ok()) << t.status();
    transport_ = std::move(*t);
    for (const NodeInfo& n : map_.nodes) {
      auto raw = DecodeDataAddress(n.data_address);
      ASSERT_TRUE(raw.ok()) << raw.status();
      auto peer = transport_->Connect(*raw);
      ASSERT_TRUE(peer.ok()) << peer.status();
      peers_[n.id] = *peer;
    }
    spec_ = TinySpec();
  }

  void TearDown() override {
    if (HasFailure() && cluster_) {
      for (const AgentProcess& a : cluster_->agents()) {
        std::cerr << "---- " << a.log_prefix << ".err\n" << cluster_->TailLog(a.log_prefix) << "\n";
      }
    }
    regions_.clear();
    transport_.reset();
    cluster_.reset();
  }

  protocol::FrameHeader Header(const NamespaceSpec& spec) const {
    return {.request_id = 1, .sender_epoch = map_.epoch, .namespace_id = spec.Id(),
            .layout_fingerprint = spec.layout.Fingerprint()};
  }

  // Opens a session with `node` as `role` proving `credential`.
  absl::StatusOr<uint64_t> Hello(NodeId node, protocol::PeerRole role,
                                 const std::string& credential) {
    protocol::HelloRequest hello;
    hello.role = role;
    hello.credential = credential;
    auto bytes = hello.Encode();
    if (!bytes.ok()) return bytes.status();
    auto raw = transport_->Call(peers_.at(node), static_cast<uint16_t>(FrameType::kHelloRequest),
                                *bytes, absl::Now() + absl::Seconds(10));
    if (!raw.ok()) return raw.status();
    auto reply = protocol::DecodeReply<protocol::HelloResponse>(*raw);
    if (!reply.ok()) return reply.status();
    return reply->session;
  }

  // Sends `bytes` as they are when `stamp_` is off; otherwise with this
  // test's session with `node` (opened as role_ with credential_) stamped in.
  absl::StatusOr<std::string> Raw(NodeId node, FrameType type, const std::string& bytes) {
    std::string frame = bytes;
    // Garbage shorter than a header goes out as it is.
    if (stamp_ && type != FrameType::kHelloRequest && frame.size() >= protocol::kFrameHeaderBytes) {
      auto it = sessions_.find(node);
      if (it == sessions_.end()) {
        auto session = Hello(node, role_, credential_.empty() ? cluster_->token() : credential_);
        if (!session.ok()) return session.status();
        it = sessions_.emplace(node, *session).first;
      }
      if (absl::Status s = protocol::StampSession(&frame, it->second); !s.ok()) return s;
    }
    return transport_->Call(peers_.at(node), static_cast<uint16_t>(type), frame,
                            absl::Now() + absl::Seconds(10));
  }

  // Who this test speaks as: a new role or credential takes new sessions.
  void SpeakAs(protocol::PeerRole role, std::string credential) {
    role_ = role;
    credential_ = std::move(credential);
    sessions_.clear();
  }

  template <typename Resp, typename Req>
  absl::StatusOr<Resp> Send(NodeId node, const Req& req, protocol::ReplyError* err = nullptr) {
    auto bytes = req.Encode();
    if (!bytes.ok()) return bytes.status();
    auto raw = Raw(node, Req::kType, *bytes);
    if (!raw.ok()) return raw.status();
    return protocol::DecodeReply<Resp>(*raw, err);
  }

  absl::Status Register(NodeId node, const NamespaceSpec& spec) {
    protocol::RegisterNamespaceRequest r;
    r.header = Header(spec);
    r.spec = spec;
    return Send<protocol::AckResponse>(node, r).status();
  }

  // A key whose (single, R=1) owner is `node`, and its placement hash.
  protocol::KeyRef KeyOwnedBy(NodeId node, uint64_t salt = 0) {
    for (uint64_t i = salt * 100000;; ++i) {
      protocol::KeyRef k{BlockKey{0x77, i}, 0};
      k.placement_hash = PlacementHash(spec_.Id(), k.key);
      if (placement_->Owners(k.placement_hash)[0] == node) return k;
    }
  }

  // Reserve, one-sided put, commit: what a client does.
  absl::Status PutBlock(NodeId node, const protocol::KeyRef& k, const std::vector<char>& data) {
    protocol::ReserveRequest rr;
    rr.header = Header(spec_);
    protocol::ReserveEntry e;
    e.key = k.key;
    e.placement_hash = k.placement_hash;
    e.size = static_cast<uint32_t>(data.size());
    rr.entries.push_back(e);
    auto reserved = Send<protocol::ReserveResponse>(node, rr);
    if (!reserved.ok()) return reserved.status();
    const protocol::ReserveResult& r = reserved->results[0];
    if (r.code != absl::StatusCode::kOk) return absl::Status(r.code, "reserve refused");
    if (r.already_present) return absl::OkStatus();
    if (reserved->descriptors.empty()) {
      // A tenant's session: the agent copies the bytes in.
      protocol::WriteRequest w;
      w.header = Header(spec_);
      w.ranges.push_back({r.reservation_id, 0, static_cast<uint32_t>(data.size())});
      w.bytes.assign(data.begin(), data.end());
      if (auto ack = Send<protocol::AckResponse>(node, w); !ack.ok()) return ack.status();
    } else if (absl::Status s = WriteOneSided(node, *reserved, r, data); !s.ok()) {
      return s;
    }
    protocol::CommitRequest c;
    c.header = Header(spec_);
    c.reservation_ids.push_back(r.reservation_id);
    auto committed = Send<protocol::CommitResponse>(node, c);
    if (!committed.ok()) return committed.status();
    return absl::Status(committed->results[0].code, "commit");
  }

  absl::Status WriteOneSided(NodeId node, const protocol::ReserveResponse& reserved,
                             const protocol::ReserveResult& r, const std::vector<char>& data) {
    auto region = Import(node, reserved.descriptors[r.location.descriptor_index]);
    if (!region.ok()) return region.status();
    TransferBatch b;
    b.kind = TransferKind::kPut;
    b.remote = *region;
    b.ops.push_back({const_cast<char*>(data.data()), data.size(), r.location.offset});
    auto posted = transport_->Post(std::move(b));
    if (!posted.ok()) return posted.status();
    return (*posted)->Wait(absl::Now() + absl::Seconds(10));
  }

  absl::StatusOr<const RemoteRegion*> Import(NodeId node, const RemoteDescriptor& d) {
    auto it = regions_.find(d.region_id);
    if (it != regions_.end()) return it->second.get();
    auto region = transport_->ImportRemote(peers_.at(node), d, absl::Now() + absl::Seconds(10));
    if (!region.ok()) return region.status();
    return (regions_[d.region_id] = std::move(*region)).get();
  }

  std::vector<char> Block(uint8_t seed) const {
    std::vector<char> data(spec_.layout.BytesPerBlock());
    for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>(seed + i * 7);
    return data;
  }

  // Set before SetUp runs (in the derived fixture's constructor).
  std::vector<std::string> extra_agent_flags_ = {"--get_lease_ms=300"};
  int replication_ = 1;
  std::string ucx_tls_;  // the agents' and this test's UCX_TLS; empty: UCX's choice
  std::unique_ptr<LocalCluster> cluster_;
  ClusterMap map_;
  std::optional<Placement> placement_;
  std::unique_ptr<Transport> transport_;
  std::map<NodeId, PeerId> peers_;
  std::map<uint64_t, std::unique_ptr<RemoteRegion>> regions_;
  NamespaceSpec spec_;
  // The session each request carries (Raw).
  bool stamp_ = true;
  protocol::PeerRole role_ = protocol::PeerRole::kAgent;
  std::string credential_;  // empty: the cluster token
  std::map<NodeId, uint64_t> sessions_;
};

}  // namespace kvf::testing

#endif  // KVF_TESTS_CLUSTER_WIRE_FIXTURE_H_
