// What the fault tests (tests/faults/, label `faults`) write, check and count.
//
// Every block's bytes say which block and which write round they hold, so a
// reader tells apart a right block, a wrong one (another block's bytes, or
// garbage) and a stale one (a round older than the last acknowledged write).
// FaultTest is a ClusterTest over real processes with a small namespace, a
// chain of keys and the checked reads and writes every fault test does; each
// test prints what it tried, what failed and what was lost or wrong.
#ifndef KVF_TESTS_FAULTS_FAULT_WORKLOAD_H_
#define KVF_TESTS_FAULTS_FAULT_WORKLOAD_H_

#include <atomic>
#include <cstdint>
#include <cstring>
#include <iostream>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/types/span.h"
#include "grpcpp/client_context.h"
#include "grpcpp/create_channel.h"
#include "proto/auth.h"
#include "proto/channel.h"
#include "proto/coordinator.grpc.pb.h"
#include "tests/cluster/cluster_fixture.h"

namespace kvf::testing {

inline uint64_t SplitMix(uint64_t& state) {
  uint64_t z = (state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

inline constexpr uint64_t kBlockMagic = 0x6b7666617531746bull;

// The bytes of round `round` of block `index`: a 24-byte header (magic,
// index, round), then a stream seeded by both.
inline void FillBlock(uint64_t index, uint64_t round, absl::Span<uint8_t> out) {
  const uint64_t header[3] = {kBlockMagic, index, round};
  std::memcpy(out.data(), header, std::min(out.size(), sizeof(header)));
  uint64_t state = (index << 32) ^ round ^ 0x5bd1e995;
  for (size_t i = sizeof(header); i < out.size(); i += 8) {
    const uint64_t v = SplitMix(state);
    std::memcpy(out.data() + i, &v, std::min<size_t>(8, out.size() - i));
  }
}

// The round a well-formed block `index` holds; nullopt for anything else.
inline std::optional<uint64_t> BlockRound(uint64_t index, absl::Span<const uint8_t> block) {
  uint64_t header[3];
  if (block.size() < sizeof(header)) return std::nullopt;
  std::memcpy(header, block.data(), sizeof(header));
  if (header[0] != kBlockMagic || header[1] != index) return std::nullopt;
  std::vector<uint8_t> want(block.size());
  FillBlock(index, header[2], absl::MakeSpan(want));
  if (std::memcmp(want.data(), block.data(), block.size()) != 0) return std::nullopt;
  return header[2];
}

// Operations of one kind: tried, failed (an error: the engine recomputes),
// wrong (bytes that are not the block), stale (an older round than the last
// acknowledged one), lost (acknowledged, then never readable again).
struct OpCounts {
  std::atomic<uint64_t> tried{0};
  std::atomic<uint64_t> failed{0};
  std::atomic<uint64_t> wrong{0};
  std::atomic<uint64_t> stale{0};
  std::atomic<uint64_t> lost{0};

  std::string Summary(const std::string& what) const {
    return absl::StrCat(what, ": tried ", tried.load(), ", failed ", failed.load(), ", wrong ",
                        wrong.load(), ", stale ", stale.load(), ", lost ", lost.load());
  }
};

inline NamespaceSpec FaultSpec() {
  NamespaceSpec s;
  s.model_id = "fault-test";
  s.layout = KvLayout{.num_layers = 2, .num_kv_heads = 2, .head_dim = 64, .block_tokens = 16,
                      .dtype = DType::kFp16};  // 16 KiB blocks
  s.segment_blocks = 4;
  return s;
}

class FaultTest : public ClusterTest {
 protected:
  // Three agents, R=2. The lease is short so faults take seconds, and long
  // enough that a loaded 2-core machine does not miss heartbeats.
  LocalClusterOptions ClusterOptions() override {
    LocalClusterOptions o;
    o.agents = 3;
    o.replication = 2;
    o.lease_ms = kLeaseMs;
    o.host_bytes = 64ull << 20;
    return o;
  }

  void SetUp() override {
    ClusterTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    auto ns = client_->RegisterNamespace(FaultSpec());
    ASSERT_TRUE(ns.ok()) << ns.status();
    ns_ = *ns;
    block_bytes_ = ns_.BlockBytes(CodecId::kNone);
    stub_ = proto::Coordinator::NewStub(
        OpenChannel(cluster_->coordinator()));
  }

  static absl::Duration Lease() { return absl::Milliseconds(kLeaseMs); }

  // Writes round `round` of blocks [begin, end) of `chain` (one batch);
  // returns how many were acknowledged.
  size_t WriteRound(Client& client, const std::vector<BlockKey>& chain, size_t begin, size_t end,
                    uint64_t round, bool is_mutable, OpCounts* counts) {
    std::vector<std::vector<uint8_t>> data(end - begin, std::vector<uint8_t>(block_bytes_));
    std::vector<ConstBlockBuffer> src;
    for (size_t i = begin; i < end; ++i) {
      FillBlock(i, round, absl::MakeSpan(data[i - begin]));
      src.push_back({data[i - begin].data(), data[i - begin].size()});
    }
    PutOptions po;
    po.is_mutable = is_mutable;
    po.has_ack = true;
    po.ack = AckMode::kAll;
    counts->tried += end - begin;
    absl::StatusOr<BatchResult> r = client.BatchPut(ns_, chain, begin, src, po);
    if (!r.ok()) {
      counts->failed += end - begin;
      return 0;
    }
    size_t ok = 0;
    for (const BlockResult& b : r->blocks) {
      if (b.status.ok()) {
        ++ok;
      } else {
        ++counts->failed;
      }
    }
    return ok;
  }

  // Reads block `index` of `chain` once and checks it is round `min_round` or
  // newer; returns the round read, or nullopt.
  std::optional<uint64_t> CheckedRead(Client& client, const std::vector<BlockKey>& chain,
                                      size_t index, uint64_t min_round, OpCounts* counts) {
    std::vector<uint8_t> buf(block_bytes_);
    ++counts->tried;
    absl::StatusOr<BlockResult> r = client.Get(ns_, chain, index, buf.data(), buf.size());
    if (!r.ok() || !r->status.ok()) {
      ++counts->failed;
      return std::nullopt;
    }
    std::optional<uint64_t> round = BlockRound(index, buf);
    if (!round) {
      ++counts->wrong;
    } else if (*round < min_round) {
      ++counts->stale;
    }
    return round;
  }

  grpc::Status Drain(NodeId node) {
    grpc::ClientContext ctx;
    AddClusterToken(&ctx, cluster_->token());
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    proto::NodeRequest req;
    req.set_node_id(node);
    proto::MembershipResponse resp;
    return stub_->Drain(&ctx, req, &resp);
  }

  // Waits until agent `index` is in `state` in the coordinator's map.
  absl::Status WaitForState(int index, NodeState state, absl::Duration timeout) {
    const NodeId node = cluster_->agents()[index].node;
    return cluster_->WaitForMap(
        [&](const ClusterMap& m) {
          const NodeInfo* n = m.Find(node);
          return n != nullptr && n->state == state;
        },
        absl::Now() + timeout);
  }

  // Runs `body` on a thread until Stop().
  class Loop {
   public:
    explicit Loop(std::function<void()> body)
        : thread_([this, body = std::move(body)] {
            while (!stop_.load()) body();
          }) {}
    ~Loop() { Stop(); }
    void Stop() {
      stop_.store(true);
      if (thread_.joinable()) thread_.join();
    }

   private:
    std::atomic<bool> stop_{false};
    std::thread thread_;
  };

  static constexpr uint64_t kLeaseMs = 1500;
  Namespace ns_;
  size_t block_bytes_ = 0;
  std::unique_ptr<proto::Coordinator::Stub> stub_;
};

}  // namespace kvf::testing

#endif  // KVF_TESTS_FAULTS_FAULT_WORKLOAD_H_
