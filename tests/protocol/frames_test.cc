// Tests of the data-plane frame codec (protocol/frames.h): round trips
// and golden bytes. With KVF_PROTOCOL_WRITE_CORPUS=1 in the environment the
// RoundTrip test also (re)writes the fuzz corpus seeds, one per type.
// frames_rules_test.cc has one test per validation rule, truncation and the
// random-mutation loop.
#include "tests/protocol/sample_frames.h"

namespace kvf::protocol {
namespace {

// ---- Round trips and golden bytes ---------------------------------------------------

TEST(Frames, EveryTypeRoundTrips) {
  const bool write_corpus = std::getenv("KVF_PROTOCOL_WRITE_CORPUS") != nullptr;
  testing::ForEachFrame([&]<typename T>() {
    SCOPED_TRACE(std::string(FrameTypeName(T::kType)));
    const T m = Sample<T>();
    const std::string bytes = Encoded(m);
    ASSERT_FALSE(bytes.empty());
    auto header = DecodeHeader(bytes);
    ASSERT_TRUE(header.ok()) << header.status();
    EXPECT_EQ(header->type, T::kType);
    EXPECT_EQ(header->header, m.header);
    auto back = DecodeExact<T>(bytes);
    ASSERT_TRUE(back.ok()) << back.status();
    EXPECT_TRUE(*back == m);
    EXPECT_EQ(Encoded(*back), bytes);
    if (write_corpus) {
      std::ofstream(CorpusPath(FrameTypeName(T::kType)), std::ios::binary) << bytes;
    }
  });
}

TEST(Frames, EmptyBatchesRoundTrip) {
  testing::ForEachFrame([&]<typename T>() {
    SCOPED_TRACE(std::string(FrameTypeName(T::kType)));
    if constexpr (std::is_same_v<T, RegisterNamespaceRequest> || std::is_same_v<T, ErrorResponse>) {
      return;  // no batch; a default spec or code is invalid
    } else {
      T m;
      auto bytes = m.Encode();
      ASSERT_TRUE(bytes.ok()) << bytes.status();
      auto back = T::Decode(*bytes);
      ASSERT_TRUE(back.ok()) << back.status();
      EXPECT_TRUE(*back == m);
    }
  });
}

TEST(Frames, CorpusSeedsDecode) {
  testing::ForEachFrame([&]<typename T>() {
    const std::string type(FrameTypeName(T::kType));
    std::ifstream in(CorpusPath(type), std::ios::binary);
    if (!in) {
      ADD_FAILURE() << "no corpus seed for " << type
                    << " (run with KVF_PROTOCOL_WRITE_CORPUS=1 to write them)";
      return;
    }
    const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    bool decoded = false;
    EXPECT_TRUE(testing::DecodeReencodes<T>(bytes, &decoded)) << type;
    EXPECT_TRUE(decoded) << type << " corpus seed no longer decodes";
  });
}

TEST(Frames, ComparisonSeesEveryNewField) {
  auto lookup = Sample<LookupRequest>();
  auto other = lookup;
  other.keys[1].placement_hash ^= 1;
  EXPECT_FALSE(lookup == other);

  auto commit = Sample<CommitRequest>();
  auto commit2 = commit;
  commit2.no_fanout = false;
  EXPECT_FALSE(commit == commit2);

  const auto reg = Sample<RegisterNamespaceRequest>();
  auto differs = [&](auto mutate) {
    auto copy = reg;
    mutate(copy.spec);
    return !(copy == reg);
  };
  EXPECT_TRUE(differs([](NamespaceSpec& s) { s.model_id += "x"; }));
  EXPECT_TRUE(differs([](NamespaceSpec& s) { s.layout.head_dim = 64; }));
  EXPECT_TRUE(differs([](NamespaceSpec& s) { s.tp_rank = 0; }));
  EXPECT_TRUE(differs([](NamespaceSpec& s) { s.tp_size = 4; }));
  EXPECT_TRUE(differs([](NamespaceSpec& s) { s.tenant = "other"; }));
  EXPECT_TRUE(differs([](NamespaceSpec& s) { s.hash = HashAlgorithm::kXxh3_128; }));
  EXPECT_TRUE(differs([](NamespaceSpec& s) { s.segment_blocks = 8; }));
  auto h = reg;
  h.header.request_id++;
  EXPECT_FALSE(h == reg);
}

TEST(Frames, GoldenHeaderBytes) {
  AckResponse ack;
  ack.header = Header();
  EXPECT_EQ(Hex(Encoded(ack)),
            "4b564644"            // magic "KVFD"
            "0100"                // version 1
            "0d00"                // type 13 (AckResponse)
            "0807060504030201"    // request id
            "2a00000000000000"    // sender epoch 42
            "8877665544332211"    // namespace id
            "00ffeeddccbbaa99"    // layout fingerprint
            "00000000");          // body bytes
}

TEST(Frames, GoldenCommitRequestBytes) {
  CommitRequest m;
  m.header.request_id = 1;
  m.reservation_ids = {0x0102, 7};
  m.no_fanout = true;
  EXPECT_EQ(Hex(Encoded(m)),
            "4b564644" "0100" "0800"  // magic, version, type 8
            "0100000000000000" "0000000000000000" "0000000000000000" "0000000000000000"
            "18000000"          // body: 24 bytes
            "02000000"          // 2 ids
            "01" "000000"       // no_fanout, reserved
            "0201000000000000"  // 0x0102
            "0700000000000000");
}

TEST(Frames, GoldenLookupRequestBytes) {
  LookupRequest m;
  m.keys = {KeyRef{.key = {.hi = 0x11, .lo = 0x22}, .placement_hash = 0x33}};
  EXPECT_EQ(Hex(Encoded(m)).substr(2 * 40),
            "1c000000"  // body: 28 bytes
            "01000000"  // 1 key
            "1100000000000000" "2200000000000000" "3300000000000000");
}

TEST(Frames, GoldenRegisterNamespaceBytes) {
  RegisterNamespaceRequest m;
  m.spec.model_id = "m";
  m.spec.layout = KvLayout{.num_layers = 2, .num_kv_heads = 3, .head_dim = 4,
                           .block_tokens = 5, .dtype = DType::kBf16};
  m.spec.tp_rank = 0;
  m.spec.tp_size = 1;
  m.spec.tenant = "tt";
  m.spec.hash = HashAlgorithm::kSha256;
  m.spec.segment_blocks = 6;
  m.header.namespace_id = m.spec.Id();
  m.header.layout_fingerprint = m.spec.layout.Fingerprint();
  EXPECT_EQ(Hex(Encoded(m)).substr(2 * 40),
            "29000000"             // body: 41 bytes
            "01000000" "6d"        // model_id "m"
            "02000000" "03000000" "04000000" "05000000" "01"  // layout, bf16
            "00000000" "01000000"  // tp_rank, tp_size
            "02000000" "7474"      // tenant "tt"
            "01"                   // sha256
            "06000000");           // segment_blocks
}

}  // namespace
}  // namespace kvf::protocol
