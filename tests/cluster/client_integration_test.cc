// libkvfabric against a real cluster on loopback: kvf-coordinator and four
// kvf-agent processes (tests/cluster/local_cluster.h). Round trips are
// byte-exact; every refusal is an error, never bytes. Registered twice: as
// kvf_client_integration_test_netns every process is on a host of its own,
// UCX over TCP (netns_hosts.h).
#include <algorithm>
#include <optional>
#include <set>

#include "absl/strings/str_cat.h"
#include "client/client.h"
#include "common/cluster_map.h"
#include "gtest/gtest.h"
#include "protocol/frames.h"
#include "tests/cluster/cluster_fixture.h"
#include "tools/launch/spawn.h"
#include "transport/transport.h"

namespace kvf::testing {
namespace {

using ClientCluster = ClusterTest;

TEST_F(ClientCluster, RoundTripsTwoNamespacesByteExact) {
  auto a = client_->RegisterNamespace(Spec("model-a", 2, 2, 64, 16));
  auto b = client_->RegisterNamespace(Spec("model-b", 3, 1, 128, 8, 4));
  ASSERT_TRUE(a.ok() && b.ok());
  for (const Namespace* ns : {&*a, &*b}) {
    SCOPED_TRACE(ns->spec().DebugString());
    const size_t n = 40;
    std::vector<BlockKey> chain = RandomChain(*ns, n);
    auto data = RandomBlocks(n, ns->BlockBytes());
    auto put = client_->BatchPut(*ns, chain, 0, Sources(data));
    ASSERT_TRUE(put.ok()) << put.status();
    ASSERT_TRUE(put->all_ok()) << put->FirstError();

    auto lookup = client_->Lookup(*ns, chain);
    ASSERT_TRUE(lookup.ok()) << lookup.status();
    EXPECT_EQ(lookup->prefix, n);
    for (const BlockHolding& h : lookup->blocks) {
      EXPECT_FALSE(h.nodes.empty());
      EXPECT_EQ(h.size, ns->BlockBytes());
    }

    std::vector<std::vector<uint8_t>> out(n, std::vector<uint8_t>(ns->BlockBytes()));
    auto got = client_->BatchGet(*ns, chain, 0, Sinks(out));
    ASSERT_TRUE(got.ok()) << got.status();
    ASSERT_TRUE(got->all_ok()) << got->FirstError();
    for (size_t i = 0; i < n; ++i) {
      EXPECT_EQ(out[i], data[i]) << "block " << i;
      EXPECT_EQ(got->blocks[i].size, ns->BlockBytes());
    }

    // Part of the chain: blocks [10, 20).
    std::vector<std::vector<uint8_t>> part(10, std::vector<uint8_t>(ns->BlockBytes()));
    auto got_part = client_->BatchGet(*ns, chain, 10, Sinks(part));
    ASSERT_TRUE(got_part.ok() && got_part->all_ok());
    for (size_t i = 0; i < 10; ++i) EXPECT_EQ(part[i], data[10 + i]);

    // Re-putting immutable blocks is a no-op that still succeeds.
    auto again = client_->BatchPut(*ns, chain, 0, Sources(data));
    ASSERT_TRUE(again.ok() && again->all_ok());
  }
  // Keys of one namespace mean nothing in the other.
  std::vector<BlockKey> chain = RandomChain(*a, 4);
  auto data = RandomBlocks(4, a->BlockBytes());
  ASSERT_TRUE(client_->BatchPut(*a, chain, 0, Sources(data))->all_ok());
  auto other = client_->Lookup(*b, chain);
  ASSERT_TRUE(other.ok()) << other.status();
  EXPECT_EQ(other->prefix, 0u);
}

TEST_F(ClientCluster, LongSequenceSpreadsAcrossAgentsAndReadsBackInOneBatch) {
  auto ns = client_->RegisterNamespace(Spec("long", 2, 2, 32, 16, 16));
  ASSERT_TRUE(ns.ok());
  const size_t n = 256;
  std::vector<BlockKey> chain = RandomChain(*ns, n);
  auto data = RandomBlocks(n, ns->BlockBytes());
  auto put = client_->BatchPut(*ns, chain, 0, Sources(data));
  ASSERT_TRUE(put.ok()) << put.status();
  ASSERT_TRUE(put->all_ok()) << put->FirstError();
  std::set<NodeId> writers;
  for (const auto& r : put->blocks) writers.insert(r.node);

  std::vector<std::vector<uint8_t>> out(n, std::vector<uint8_t>(ns->BlockBytes()));
  auto got = client_->BatchGet(*ns, chain, 0, Sinks(out));
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_TRUE(got->all_ok()) << got->FirstError();
  std::set<NodeId> readers;
  for (size_t i = 0; i < n; ++i) {
    ASSERT_EQ(out[i], data[i]) << "block " << i;
    readers.insert(got->blocks[i].node);
  }
  // 16 segments over 4 agents: the sequence is sharded, not on one node.
  EXPECT_GE(writers.size(), 2u);
  EXPECT_GE(readers.size(), 2u);
  auto lookup = client_->Lookup(*ns, chain);
  ASSERT_TRUE(lookup.ok());
  EXPECT_EQ(lookup->prefix, n);
}

TEST_F(ClientCluster, LookupLatencyOf128Blocks) {
  auto ns = client_->RegisterNamespace(Spec("latency", 1, 1, 32, 16, 16));
  ASSERT_TRUE(ns.ok());
  std::vector<BlockKey> chain = RandomChain(*ns, 128);
  auto data = RandomBlocks(128, ns->BlockBytes());
  ASSERT_TRUE(client_->BatchPut(*ns, chain, 0, Sources(data))->all_ok());
  std::vector<double> us;
  for (int i = 0; i < 300; ++i) {
    const absl::Time t0 = absl::Now();
    auto r = client_->Lookup(*ns, chain);
    us.push_back(absl::ToDoubleMicroseconds(absl::Now() - t0));
    ASSERT_TRUE(r.ok());
    ASSERT_EQ(r->prefix, 128u);
  }
  std::sort(us.begin(), us.end());
  std::cout << "Lookup(128 blocks, 4 agents): p50 " << us[us.size() / 2] << " us, p99 "
            << us[us.size() * 99 / 100] << " us\n";
  RecordProperty("lookup128_p50_us", static_cast<int>(us[us.size() / 2]));
  RecordProperty("lookup128_p99_us", static_cast<int>(us[us.size() * 99 / 100]));
}

TEST_F(ClientCluster, WrongLayoutGetsAnErrorNeverBytes) {
  NamespaceSpec spec = Spec("layout", 2, 2, 64, 16);
  auto ns = client_->RegisterNamespace(spec);
  ASSERT_TRUE(ns.ok());
  std::vector<BlockKey> chain = RandomChain(*ns, 8);
  auto data = RandomBlocks(8, ns->BlockBytes());
  ASSERT_TRUE(client_->BatchPut(*ns, chain, 0, Sources(data))->all_ok());

  // The same model with another layout is another namespace: no bytes.
  NamespaceSpec other = spec;
  other.layout.head_dim = 32;
  auto ons = client_->RegisterNamespace(other);
  ASSERT_TRUE(ons.ok());
  std::vector<std::vector<uint8_t>> out(8, std::vector<uint8_t>(ns->BlockBytes(), 0xee));
  auto got = client_->BatchGet(*ons, chain, 0, Sinks(out));
  ASSERT_TRUE(got.ok()) << got.status();
  for (size_t i = 0; i < 8; ++i) {
    EXPECT_EQ(got->blocks[i].status.code(), absl::StatusCode::kNotFound) << got->blocks[i].status;
    EXPECT_TRUE(std::all_of(out[i].begin(), out[i].end(), [](uint8_t v) { return v == 0xee; }));
  }

  // A raw frame naming the namespace with a wrong layout fingerprint.
  auto map = cluster_->GetClusterMap();
  ASSERT_TRUE(map.ok());
  const NodeInfo& node = map->nodes.front();
  auto worker = DecodeDataAddress(node.data_address);
  ASSERT_TRUE(worker.ok()) << worker.status();
  TransportConfig tc;
  tc.name = "raw";
  tc.ucx_tls = cluster_->options().ucx_tls;
  auto t = CreateTransport(tc);
  ASSERT_TRUE(t.ok()) << t.status();
  auto peer = (*t)->Connect(*worker);
  ASSERT_TRUE(peer.ok());
  // Open a session, and register the namespace properly, so the agent knows
  // its layout.
  protocol::HelloRequest hello;
  hello.credential = cluster_->token();
  auto hello_resp = (*t)->Call(*peer, static_cast<uint16_t>(protocol::FrameType::kHelloRequest),
                               *hello.Encode(), absl::Now() + absl::Seconds(5));
  ASSERT_TRUE(hello_resp.ok()) << hello_resp.status();
  auto session = protocol::HelloResponse::Decode(*hello_resp);
  ASSERT_TRUE(session.ok()) << session.status();
  protocol::RegisterNamespaceRequest reg;
  reg.header.session = session->session;
  reg.header.request_id = 1;
  reg.header.sender_epoch = map->epoch;
  reg.header.namespace_id = ns->id();
  reg.header.layout_fingerprint = ns->layout_fingerprint();
  reg.spec = ns->spec();
  auto reg_bytes = reg.Encode();
  ASSERT_TRUE(reg_bytes.ok());
  auto reg_resp = (*t)->Call(*peer, static_cast<uint16_t>(protocol::FrameType::kRegisterNamespaceRequest),
                             *reg_bytes, absl::Now() + absl::Seconds(5));
  ASSERT_TRUE(reg_resp.ok()) << reg_resp.status();
  ASSERT_EQ(protocol::DecodeHeader(*reg_resp)->type, protocol::FrameType::kAckResponse);
  protocol::GetRequest req;
  req.header.session = session->session;
  req.header.request_id = 2;
  req.header.sender_epoch = map->epoch;
  req.header.namespace_id = ns->id();
  req.header.layout_fingerprint = ns->layout_fingerprint() ^ 1;
  req.keys.push_back({chain[0], 0});
  auto bytes = req.Encode();
  ASSERT_TRUE(bytes.ok());
  auto resp = (*t)->Call(*peer, static_cast<uint16_t>(protocol::FrameType::kGetRequest), *bytes,
                         absl::Now() + absl::Seconds(5));
  ASSERT_TRUE(resp.ok()) << resp.status();
  auto hdr = protocol::DecodeHeader(*resp);
  ASSERT_TRUE(hdr.ok());
  ASSERT_EQ(hdr->type, protocol::FrameType::kErrorResponse);
  auto err = protocol::ErrorResponse::Decode(*resp);
  ASSERT_TRUE(err.ok());
  EXPECT_EQ(err->code, absl::StatusCode::kInvalidArgument) << err->message;
}

TEST_F(ClientCluster, WrongTokenIsUnauthenticated) {
  ClientOptions o = MakeClientOptions();
  o.token = "not-the-token";
  auto c = Client::Connect(o);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), absl::StatusCode::kUnauthenticated) << c.status();
}

TEST_F(ClientCluster, OversizeBlockIsInvalidArgument) {
  auto ns = client_->RegisterNamespace(Spec("size", 1, 1, 64, 16));
  ASSERT_TRUE(ns.ok());
  std::vector<BlockKey> chain = RandomChain(*ns, 1);
  std::vector<uint8_t> big(ns->BlockBytes() + 1);
  auto put = client_->Put(*ns, chain, 0, big.data(), big.size());
  ASSERT_FALSE(put.ok());
  EXPECT_EQ(put.status().code(), absl::StatusCode::kInvalidArgument) << put.status();
  EXPECT_FALSE((*client_->Exists(*ns, chain))[0]);
}

TEST_F(ClientCluster, UnknownKeysAreNotFoundPerBlock) {
  auto ns = client_->RegisterNamespace(Spec("unknown", 1, 1, 64, 16));
  ASSERT_TRUE(ns.ok());
  std::vector<BlockKey> chain = RandomChain(*ns, 20);
  // Half of them present.
  auto data = RandomBlocks(10, ns->BlockBytes());
  ASSERT_TRUE(client_->BatchPut(*ns, chain, 0, Sources(data))->all_ok());
  std::vector<std::vector<uint8_t>> out(20, std::vector<uint8_t>(ns->BlockBytes()));
  auto got = client_->BatchGet(*ns, chain, 0, Sinks(out));
  ASSERT_TRUE(got.ok()) << got.status();
  for (size_t i = 0; i < 20; ++i) {
    if (i < 10) {
      EXPECT_TRUE(got->blocks[i].status.ok()) << got->blocks[i].status;
      EXPECT_EQ(out[i], data[i]);
    } else {
      EXPECT_EQ(got->blocks[i].status.code(), absl::StatusCode::kNotFound) << got->blocks[i].status;
    }
  }
  auto lookup = client_->Lookup(*ns, chain);
  ASSERT_TRUE(lookup.ok());
  EXPECT_EQ(lookup->prefix, 10u);
}

TEST_F(ClientCluster, ReadYourWritesOnAMutableKey) {
  auto ns = client_->RegisterNamespace(Spec("mutable", 1, 1, 64, 16));
  ASSERT_TRUE(ns.ok());
  std::vector<BlockKey> chain = RandomChain(*ns, 1);
  auto data = RandomBlocks(3, ns->BlockBytes());
  PutOptions po;
  po.is_mutable = true;
  Version last;
  for (int w = 0; w < 3; ++w) {
    SCOPED_TRACE(absl::StrCat("write ", w));
    auto v = client_->Put(*ns, chain, 0, data[w].data(), data[w].size(), po);
    ASSERT_TRUE(v.ok()) << v.status();
    EXPECT_GT(*v, last);
    last = *v;
    GetOptions go;
    go.has_min_version = true;
    go.min_version = *v;
    std::vector<uint8_t> out(ns->BlockBytes());
    auto got = client_->Get(*ns, chain, 0, out.data(), out.size(), go);
    ASSERT_TRUE(got.ok()) << got.status();
    ASSERT_TRUE(got->status.ok()) << got->status;
    EXPECT_GE(got->version, *v);
    EXPECT_EQ(out, data[w]);
  }
  GetOptions future;
  future.has_min_version = true;
  future.min_version = Version{last.epoch, last.counter + 1000};
  std::vector<uint8_t> out(ns->BlockBytes());
  auto got = client_->Get(*ns, chain, 0, out.data(), out.size(), future);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->status.code(), absl::StatusCode::kFailedPrecondition) << got->status;
}

TEST_F(ClientCluster, RemoveDropsFromEveryOwner) {
  auto ns = client_->RegisterNamespace(Spec("remove", 1, 1, 64, 16));
  ASSERT_TRUE(ns.ok());
  std::vector<BlockKey> chain = RandomChain(*ns, 6);
  auto data = RandomBlocks(6, ns->BlockBytes());
  PutOptions po;
  po.has_ack = true;
  po.ack = AckMode::kAll;
  auto put = client_->BatchPut(*ns, chain, 0, Sources(data), po);
  ASSERT_TRUE(put.ok() && put->all_ok()) << (put.ok() ? put->FirstError() : put.status());
  auto lookup = client_->Lookup(*ns, chain);
  ASSERT_TRUE(lookup.ok());
  for (const auto& h : lookup->blocks) EXPECT_EQ(h.nodes.size(), 2u) << "ack=all: every owner";
  auto rm = client_->Remove(*ns, chain, 3);
  ASSERT_TRUE(rm.ok()) << rm.status();
  EXPECT_TRUE(rm->all_ok()) << rm->FirstError();
  auto exists = client_->Exists(*ns, chain);
  ASSERT_TRUE(exists.ok());
  EXPECT_EQ(*exists, std::vector<bool>({true, true, true, false, false, false}));
}

TEST_F(ClientCluster, CApiProgramRunsAgainstTheCluster) {
#ifndef KVF_C_API_TEST_BIN
  GTEST_SKIP() << "C test program not built";
#else
  launch::SpawnOptions options;
  options.argv = {KVF_C_API_TEST_BIN, cluster_->coordinator(), cluster_->token()};
  absl::StatusOr<launch::ChildProcess> child = launch::ChildProcess::Spawn(options);
  ASSERT_TRUE(child.ok()) << child.status();
  const std::optional<launch::ExitStatus> exit = child->Wait();
  ASSERT_TRUE(exit.has_value());
  EXPECT_TRUE(exit->success()) << exit->ToString();
#endif
}

}  // namespace
}  // namespace kvf::testing
