// The client's pure planning: placement hashes per block, per-node batches
// within the protocol's limits, block sizes, and error classification.
#include "client/internal/plan.h"

#include <set>

#include "common/block_hash.h"
#include "gtest/gtest.h"

namespace kvf::client_internal {
namespace {

std::vector<BlockKey> Chain(size_t n) {
  std::vector<BlockKey> keys;
  BlockKey parent = BlockKey::Root();
  for (size_t i = 0; i < n; ++i) {
    uint32_t tok = static_cast<uint32_t>(i);
    parent = HashBlock(HashAlgorithm::kXxh3_128, parent, absl::MakeConstSpan(&tok, 1));
    keys.push_back(parent);
  }
  return keys;
}

TEST(MakeKeyRefs, EveryBlockIsPlacedByItsSegmentHead) {
  std::vector<BlockKey> chain = Chain(40);
  const NamespaceId ns = 77;
  std::vector<protocol::KeyRef> refs = MakeKeyRefs(ns, chain, 16, 5, 40);
  ASSERT_EQ(refs.size(), 35u);
  for (size_t i = 5; i < 40; ++i) {
    EXPECT_EQ(refs[i - 5].key, chain[i]);
    EXPECT_EQ(refs[i - 5].placement_hash, PlacementHash(ns, chain[i - i % 16])) << i;
  }
  // Blocks of one segment share a hash; the next segment differs.
  EXPECT_EQ(refs[0].placement_hash, refs[10].placement_hash);
  EXPECT_NE(refs[10].placement_hash, refs[11].placement_hash);
}

TEST(MakeKeyRefs, NamespaceChangesPlacement) {
  std::vector<BlockKey> chain = Chain(1);
  EXPECT_NE(MakeKeyRefs(1, chain, 16, 0, 1)[0].placement_hash,
            MakeKeyRefs(2, chain, 16, 0, 1)[0].placement_hash);
}

TEST(CheckRange, RejectsRangesOutsideTheChain) {
  EXPECT_TRUE(CheckRange(10, 0, 10).ok());
  EXPECT_TRUE(CheckRange(10, 10, 10).ok());
  EXPECT_EQ(CheckRange(10, 0, 11).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(CheckRange(10, 5, 4).code(), absl::StatusCode::kInvalidArgument);
}

TEST(GroupByNode, SplitsPerNodeWithinTheLimit) {
  std::vector<std::pair<NodeId, uint32_t>> assign;
  for (uint32_t i = 0; i < 2500; ++i) assign.emplace_back(i % 2 == 0 ? 3 : 1, i);
  assign.emplace_back(kNoNode, 9999);
  std::vector<NodeBatch> batches = GroupByNode(assign, 1000);
  // Node 1: 1250 items -> 1000 + 250; node 3 the same. Ascending node ids.
  ASSERT_EQ(batches.size(), 4u);
  EXPECT_EQ(batches[0].node, 1u);
  EXPECT_EQ(batches[0].items.size(), 1000u);
  EXPECT_EQ(batches[1].node, 1u);
  EXPECT_EQ(batches[1].items.size(), 250u);
  EXPECT_EQ(batches[2].node, 3u);
  std::set<uint32_t> seen;
  for (const NodeBatch& b : batches) {
    EXPECT_LE(b.items.size(), 1000u);
    for (size_t k = 1; k < b.items.size(); ++k) EXPECT_LT(b.items[k - 1], b.items[k]);
    for (uint32_t it : b.items) EXPECT_TRUE(seen.insert(it).second);
  }
  EXPECT_EQ(seen.size(), 2500u);
  EXPECT_EQ(seen.count(9999), 0u);
}

TEST(GroupByNode, OneMessagePerNodeForALookup) {
  // 128 blocks in 8 segments, R = 2 over 4 nodes: each node gets one batch.
  ClusterMap map;
  map.epoch = 1;
  map.ring.replication = 2;
  for (NodeId id = 1; id <= 4; ++id) {
    NodeInfo n;
    n.id = id;
    n.failure_domain = "d" + std::to_string(id);
    n.capacity_bytes = 1 << 30;
    n.state = NodeState::kActive;
    map.nodes.push_back(n);
  }
  auto placement = Placement::Build(Placement::ReadMembers(map), map.ring);
  ASSERT_TRUE(placement.ok());
  std::vector<BlockKey> chain = Chain(128);
  auto refs = MakeKeyRefs(9, chain, 16, 0, 128);
  auto owners = OwnersOf(*placement, refs);
  std::vector<std::pair<NodeId, uint32_t>> assign;
  for (uint32_t i = 0; i < refs.size(); ++i) {
    ASSERT_EQ(owners[i].size(), 2u);
    EXPECT_EQ(owners[i], placement->Owners(refs[i].placement_hash));
    for (NodeId o : owners[i]) assign.emplace_back(o, i);
  }
  auto batches = GroupByNode(assign, protocol::kMaxLookupKeys);
  std::set<NodeId> nodes;
  size_t total = 0;
  for (const auto& b : batches) {
    EXPECT_TRUE(nodes.insert(b.node).second) << "one message per node";
    total += b.items.size();
  }
  EXPECT_EQ(total, 256u);
}

TEST(EncodedBlockBytes, MatchesTheCodec) {
  KvLayout l{4, 2, 64, 16, DType::kFp16};
  EXPECT_EQ(EncodedBlockBytes(l, CodecId::kNone), l.BytesPerBlock());
  EXPECT_EQ(EncodedBlockBytes(l, CodecId::kInt8), CpuCodec(CodecId::kInt8).EncodedSize(l));
  EXPECT_LT(EncodedBlockBytes(l, CodecId::kInt4), l.BytesPerBlock());
}

TEST(ErrorMarks, SurviveCopiesAndKeepTheCode) {
  absl::Status s = MarkUnreachable(absl::DeadlineExceededError("node 3: timeout"));
  absl::Status copy = s;
  EXPECT_TRUE(IsUnreachable(copy));
  EXPECT_EQ(copy.code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_FALSE(IsWrongOwner(copy));
  absl::Status w = WrongOwnerError(12, "node 2: not mine");
  EXPECT_TRUE(IsWrongOwner(w));
  EXPECT_EQ(w.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_FALSE(IsUnreachable(w));
  EXPECT_FALSE(IsUnreachable(absl::NotFoundError("x")));
}

TEST(ClassifyError, FollowsTheProtocol) {
  protocol::ErrorResponse e;
  e.code = absl::StatusCode::kFailedPrecondition;
  e.wrong_owner = true;
  EXPECT_EQ(ClassifyError(e), ErrorAction::kRefreshAndRetry);
  e.wrong_owner = false;
  e.message = "namespace 1234 is not registered";
  EXPECT_EQ(ClassifyError(e), ErrorAction::kRegisterAndRetry);
  e.message = "below min_version";
  EXPECT_EQ(ClassifyError(e), ErrorAction::kFail);
  e.code = absl::StatusCode::kNotFound;
  EXPECT_EQ(ClassifyError(e), ErrorAction::kRegisterAndRetry);
  e.code = absl::StatusCode::kInvalidArgument;
  e.message = "layout fingerprint mismatch";
  EXPECT_EQ(ClassifyError(e), ErrorAction::kFail);
}

TEST(TryNextOwner, OnlyForCodesAnotherReplicaCanFix) {
  EXPECT_TRUE(TryNextOwner(absl::StatusCode::kAborted));
  EXPECT_TRUE(TryNextOwner(absl::StatusCode::kNotFound));
  EXPECT_TRUE(TryNextOwner(absl::StatusCode::kUnavailable));
  EXPECT_FALSE(TryNextOwner(absl::StatusCode::kFailedPrecondition));
  EXPECT_FALSE(TryNextOwner(absl::StatusCode::kInvalidArgument));
}

}  // namespace
}  // namespace kvf::client_internal
