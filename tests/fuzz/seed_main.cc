// kvf_fuzz_seeds <corpus root>: writes the seed inputs of the fuzz targets
// into <root>/<target>/seed-*, made with the project's own encoders (real
// blobs, real request protobufs) so the fuzzers start from valid inputs and
// mutate from there. tools/fuzz.sh --seed runs it; the seeds are checked in.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/kv_layout.h"
#include "kernels/codec.h"
#include "proto/coordinator.pb.h"
#include "tests/fuzz/input_formats.h"
#include "tests/kernels/codec_test_util.h"

namespace kvf::fuzz {
namespace {

namespace fs = std::filesystem;

void Write(const fs::path& dir, const std::string& name, const std::string& bytes) {
  fs::create_directories(dir);
  std::ofstream out(dir / name, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// A block of small, varied, finite values in `dtype` (bit patterns of
// moderate floats, so every dtype reads them as finite numbers).
std::vector<std::byte> Block(const KvLayout& l) {
  std::vector<std::byte> b(l.BytesPerBlock());
  const size_t elem = DTypeSize(l.dtype);
  for (size_t i = 0; i < b.size() / elem; ++i) {
    if (l.dtype == DType::kFp32) {
      const float v = static_cast<float>(static_cast<int>(i * 37 % 101) - 50) / 16.0f;
      std::memcpy(b.data() + i * 4, &v, 4);
    } else {
      // fp16 0x3c00 = 1.0, bf16 0x3f80 = 1.0; vary the low mantissa and sign.
      const uint16_t one = l.dtype == DType::kFp16 ? 0x3c00 : 0x3f80;
      const uint16_t h = static_cast<uint16_t>((one + i * 13 % 256) | ((i % 3 == 0) << 15));
      std::memcpy(b.data() + i * 2, &h, 2);
    }
  }
  return b;
}

void CodecSeeds(const fs::path& dir) {
  int n = 0;
  const KvLayout layouts[] = {testing::MakeLayout(1, 2, 40, 7, DType::kFp16),
                              testing::MakeLayout(2, 1, 33, 33, DType::kBf16),
                              testing::MakeLayout(1, 1, 8, 4, DType::kFp32)};
  for (int c = 0; c < kNumCodecs; ++c) {
    const Codec& codec = CpuCodec(static_cast<CodecId>(c));
    for (const KvLayout& l : layouts) {
      std::vector<std::byte> blob(codec.EncodedSize(l));
      if (!codec.Encode(l, Block(l), absl::MakeSpan(blob)).ok()) std::abort();
      const std::string bytes(reinterpret_cast<const char*>(blob.data()), blob.size());
      for (int entry = 0; entry < 4; ++entry) {
        const uint8_t flags = (entry >= 2 && l.block_tokens == 4) ? kPagePerToken : 0;
        Write(dir, absl::StrCat("seed-", n++),
              CodecInputPrefix(codec.id(), entry, l, flags | kFixFingerprint) + bytes);
      }
    }
  }
}

void TraceSeeds(const fs::path& dir) {
  Write(dir, "seed-0",
        "{\"timestamp\": 0, \"input_length\": 6758, \"output_length\": 500, \"hash_ids\": [0, 1, "
        "2, 3, 4, 5]}\n"
        "{\"timestamp\": 0, \"input_length\": 7322, \"output_length\": 490, \"hash_ids\": [0, 14, "
        "15]}\n"
        "{\"timestamp\": 3052, \"input_length\": 2290, \"output_length\": 316, \"hash_ids\": [0, "
        "42, 43, 44, 45]}\n");
  Write(dir, "seed-1",
        "{\"hash_ids\":[],\"timestamp\":1.5e3,\"model\":\"llama\",\"tags\":[1,2],\"x\":7}\r\n"
        "\n   \t\n"
        "{\"input_length\":1,\"hash_ids\":[9223372036854775807]}");
  Write(dir, "seed-2", "{\"hash_ids\": [1], \"note\": \"a \\\"quoted\\\" value\"}\n");
}

std::string Serialize(const google::protobuf::MessageLite& m) { return m.SerializeAsString(); }

proto::JoinRequest JoinReq(int i, const char* host = "10.0.0.") {
  proto::JoinRequest r;
  r.set_address(absl::StrCat(host, i, ":7000"));
  r.set_data_address("dGNwOi8vMTAuMC4wLjE6NzAwMQ==");
  r.set_failure_domain(absl::StrCat("rack", i % 2));
  r.set_capacity_bytes(uint64_t{1} << 30);
  r.add_tiers("host");
  r.set_http_address(absl::StrCat(host, i, ":9100"));
  return r;
}

std::string NodeReq(uint32_t id) {
  proto::NodeRequest r;
  r.set_node_id(id);
  return Serialize(r);
}

std::string Millis(uint32_t ms) { return std::string(reinterpret_cast<const char*>(&ms), 4); }

void CoordinatorSeeds(const fs::path& dir) {
  using Op = CoordinatorOp;
  const char config = static_cast<char>(1 | kWithAgents);  // R = 2, agents on, lease 1 s
  // Three nodes join, finish their migrations, one drains and leaves.
  {
    std::string s(1, config);
    for (int i = 1; i <= 3; ++i) AppendCoordinatorRecord(&s, Op::kJoin, Serialize(JoinReq(i)));
    AppendCoordinatorRecord(&s, Op::kHeartbeatAll, "");
    AppendCoordinatorRecord(&s, Op::kCompleteTasks, std::string(1, '\0'));
    AppendCoordinatorRecord(&s, Op::kDrain, NodeReq(2));
    AppendCoordinatorRecord(&s, Op::kCompleteTasks, std::string(1, '\0'));
    AppendCoordinatorRecord(&s, Op::kWaitForMaps, std::string(1, '\2'));
    AppendCoordinatorRecord(&s, Op::kInspect, "");
    Write(dir, "seed-0", s);
  }
  // A heartbeat with usage, an age histogram and task progress; an undrain.
  {
    std::string s(1, config);
    for (int i = 1; i <= 2; ++i) AppendCoordinatorRecord(&s, Op::kJoin, Serialize(JoinReq(i)));
    proto::HeartbeatRequest hb;
    hb.set_node_id(1);
    hb.set_used_bytes(900 << 20);
    hb.set_capacity_bytes(uint64_t{1} << 30);
    for (int b = 0; b < 64; ++b) hb.mutable_ages()->add_bytes(b < 20 ? 40 << 20 : 0);
    proto::TaskProgress* p = hb.add_tasks();
    p->set_task_id(1);
    p->set_done(true);
    hb.set_known_epoch(3);
    AppendCoordinatorRecord(&s, Op::kHeartbeat, Serialize(hb));
    AppendCoordinatorRecord(&s, Op::kCompleteTasks, std::string(1, '\0'));
    AppendCoordinatorRecord(&s, Op::kDrain, NodeReq(1));
    AppendCoordinatorRecord(&s, Op::kUndrain, NodeReq(1));
    proto::ReportMigrationRequest rm;
    rm.set_node_id(2);
    rm.add_tasks()->set_task_id(2);
    rm.mutable_tasks(0)->set_error("disk full");
    AppendCoordinatorRecord(&s, Op::kReportMigration, Serialize(rm));
    AppendCoordinatorRecord(&s, Op::kDeliver, std::string(1, '\2'));
    Write(dir, "seed-1", s);
  }
  // A node misses its lease, goes down, re-joins with its id; another leaves.
  {
    std::string s(1, config);
    for (int i = 1; i <= 3; ++i) AppendCoordinatorRecord(&s, Op::kJoin, Serialize(JoinReq(i)));
    AppendCoordinatorRecord(&s, Op::kCompleteTasks, std::string(1, '\0'));
    AppendCoordinatorRecord(&s, Op::kAdvanceAndTick, Millis(700));
    AppendCoordinatorRecord(&s, Op::kHeartbeatAll, "");
    AppendCoordinatorRecord(&s, Op::kAdvanceAndTick, Millis(1500));
    proto::JoinRequest again = JoinReq(3);
    again.set_node_id(3);
    AppendCoordinatorRecord(&s, Op::kJoin, Serialize(again));
    AppendCoordinatorRecord(&s, Op::kLeave, NodeReq(1));
    AppendCoordinatorRecord(&s, Op::kCompleteTasks, std::string(1, '\1'));
    AppendCoordinatorRecord(&s, Op::kInspect, "");
    Write(dir, "seed-2", s);
  }
  // A restarted coordinator: nodes re-join with their ids; a new join waits.
  {
    std::string s(1, static_cast<char>(2 | kWithAgents | kPersisted | kRestarted));
    for (int i = 4; i >= 1; --i) {
      proto::JoinRequest r = JoinReq(i);
      r.set_node_id(static_cast<uint32_t>(i));
      AppendCoordinatorRecord(&s, Op::kJoin, Serialize(r));
    }
    AppendCoordinatorRecord(&s, Op::kJoin, Serialize(JoinReq(9)));
    AppendCoordinatorRecord(&s, Op::kAdvanceAndTick, Millis(2000));
    AppendCoordinatorRecord(&s, Op::kJoin, Serialize(JoinReq(9)));
    AppendCoordinatorRecord(&s, Op::kCompleteTasks, std::string(1, '\0'));
    Write(dir, "seed-3", s);
  }
  // A persisted coordinator restarts mid-migration, once cleanly and once
  // with a corrupted roster.
  {
    std::string s(1, static_cast<char>(1 | kWithAgents | kPersisted));
    for (int i = 1; i <= 3; ++i) AppendCoordinatorRecord(&s, Op::kJoin, Serialize(JoinReq(i)));
    AppendCoordinatorRecord(&s, Op::kRestart, "");
    AppendCoordinatorRecord(&s, Op::kHeartbeatAll, "");
    AppendCoordinatorRecord(&s, Op::kCompleteTasks, std::string(1, '\0'));
    AppendCoordinatorRecord(&s, Op::kDrain, NodeReq(3));
    AppendCoordinatorRecord(&s, Op::kRestart, std::string("\0\0\0\0\x55", 5));
    AppendCoordinatorRecord(&s, Op::kInspect, "");
    Write(dir, "seed-5", s);
  }
  // An unreachable source: deliveries fail and are retried.
  {
    std::string s(1, static_cast<char>(0 | kWithAgents | 0x08));
    AppendCoordinatorRecord(&s, Op::kJoin, Serialize(JoinReq(1, "unreachable-")));
    AppendCoordinatorRecord(&s, Op::kJoin, Serialize(JoinReq(2)));
    AppendCoordinatorRecord(&s, Op::kDeliver, "");
    AppendCoordinatorRecord(&s, Op::kCompleteTasks, std::string(1, '\2'));
    AppendCoordinatorRecord(&s, Op::kInspect, "");
    Write(dir, "seed-4", s);
  }
}

}  // namespace
}  // namespace kvf::fuzz

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s <corpus root>\n", argv[0]);
    return 2;
  }
  const std::filesystem::path root = argv[1];
  kvf::fuzz::CodecSeeds(root / "kvf_codec_fuzz");
  kvf::fuzz::TraceSeeds(root / "kvf_trace_fuzz");
  kvf::fuzz::CoordinatorSeeds(root / "kvf_coordinator_fuzz");
  return 0;
}
