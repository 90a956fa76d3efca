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
    if constexpr (std::is_same_v<T, RegisterNamespaceRequest> ||
                  std::is_same_v<T, ErrorResponse> || std::is_same_v<T, HelloRequest> ||
                  std::is_same_v<T, HelloResponse>) {
      return;  // no batch; a default spec, code, credential or session is invalid
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
  h = reg;
  h.header.session ^= 1;
  EXPECT_FALSE(h == reg);

  auto reserve = Sample<ReserveRequest>();
  auto reserve2 = reserve;
  reserve2.entries[1].version_tag ^= 1;
  EXPECT_FALSE(reserve == reserve2);
  auto reserve_response = Sample<ReserveResponse>();
  auto reserve_response2 = reserve_response;
  reserve_response2.results[1].version_tag ^= 1;
  EXPECT_FALSE(reserve_response == reserve_response2);
  auto commit_response = Sample<CommitResponse>();
  auto commit_response2 = commit_response;
  commit_response2.results[0].version_tag ^= 1;
  EXPECT_FALSE(commit_response == commit_response2);

  const auto hello = Sample<HelloRequest>();
  auto hello2 = hello;
  hello2.role = PeerRole::kClient;
  EXPECT_FALSE(hello == hello2);
  hello2 = hello;
  hello2.node_id++;
  EXPECT_FALSE(hello == hello2);
  hello2 = hello;
  hello2.credential.back() ^= 1;
  EXPECT_FALSE(hello == hello2);
  const auto welcome = Sample<HelloResponse>();
  auto welcome2 = welcome;
  welcome2.session++;
  EXPECT_FALSE(welcome == welcome2);
  welcome2 = welcome;
  welcome2.idle_ttl_us++;
  EXPECT_FALSE(welcome == welcome2);

  const auto read = Sample<ReadRequest>();
  auto read2 = read;
  read2.lease_id ^= 1;
  EXPECT_FALSE(read == read2);
  for (uint32_t ReadRange::*field : {&ReadRange::entry, &ReadRange::offset, &ReadRange::length}) {
    read2 = read;
    read2.ranges[1].*field ^= 1;
    EXPECT_FALSE(read == read2);
  }
  const auto data = Sample<ReadResponse>();
  auto data2 = data;
  data2.bytes[50] ^= 1;
  EXPECT_FALSE(data == data2);
  const auto write = Sample<WriteRequest>();
  auto write2 = write;
  write2.ranges[1].reservation_id ^= 1;
  EXPECT_FALSE(write == write2);
  for (uint32_t WriteRange::*field : {&WriteRange::offset, &WriteRange::length}) {
    write2 = write;
    write2.ranges[1].*field ^= 1;
    EXPECT_FALSE(write == write2);
  }
  write2 = write;
  write2.bytes.back() ^= 1;
  EXPECT_FALSE(write == write2);
}

// The sample frames carry every new field with a value that is not zero, so
// the round trips above would see one the codec dropped.
TEST(Frames, SamplesCoverTheNewFields) {
  EXPECT_NE(Header().session, 0u);
  EXPECT_NE(Sample<ReserveRequest>().entries[1].version_tag, 0u);
  EXPECT_NE(Sample<ReserveResponse>().results[1].version_tag, 0u);
  EXPECT_NE(Sample<CommitResponse>().results[0].version_tag, 0u);
  EXPECT_NE(Sample<HelloResponse>().session, 0u);
  EXPECT_FALSE(Sample<HelloRequest>().credential.empty());
  EXPECT_TRUE(Sample<CommitRequest>().want_version_tags);
  // The data frames: several ranges with non-zero entries, offsets and
  // reservation ids above 32 bits, and bytes with NULs and high bytes in them.
  const ReadRequest read = Sample<ReadRequest>();
  EXPECT_NE(read.lease_id, 0u);
  ASSERT_GE(read.ranges.size(), 2u);
  EXPECT_NE(read.ranges[1].entry, 0u);
  EXPECT_NE(read.ranges[1].offset, 0u);
  size_t read_total = 0;
  for (const ReadRange& r : read.ranges) read_total += r.length;
  const ReadResponse data = Sample<ReadResponse>();
  EXPECT_EQ(data.bytes.size(), read_total);  // the answer to the sample request
  EXPECT_NE(data.bytes.find('\0'), std::string::npos);
  EXPECT_NE(data.bytes.find('\xff'), std::string::npos);
  const WriteRequest write = Sample<WriteRequest>();
  ASSERT_GE(write.ranges.size(), 2u);
  EXPECT_GT(write.ranges[1].reservation_id, uint64_t{0xffffffff});
  EXPECT_NE(write.ranges[1].offset, 0u);
  size_t write_total = 0;
  for (const WriteRange& r : write.ranges) write_total += r.length;
  EXPECT_EQ(write.bytes.size(), write_total);
  EXPECT_NE(write.bytes.find('\0'), std::string::npos);
  auto header = DecodeHeader(SampleBytes<LookupRequest>());
  ASSERT_TRUE(header.ok()) << header.status();
  EXPECT_EQ(header->header.session, kSampleSession);
}

TEST(Frames, GoldenHeaderBytes) {
  AckResponse ack;
  ack.header = Header();
  EXPECT_EQ(Hex(Encoded(ack)),
            "4b564644"            // magic "KVFD"
            "0200"                // version 2
            "0d00"                // type 13 (AckResponse)
            "0807060504030201"    // request id
            "2a00000000000000"    // sender epoch 42
            "8877665544332211"    // namespace id
            "00ffeeddccbbaa99"    // layout fingerprint
            "bc0a00000010555e"    // session (offset 40)
            "00000000");          // body bytes (offset 48)
  static_assert(kFrameHeaderBytes == 52 && kSessionOffset == 40 && kBodyBytesOffset == 48);
  static_assert(kProtocolVersion == 2);
}

TEST(Frames, GoldenCommitRequestBytes) {
  CommitRequest m;
  m.header.request_id = 1;
  m.reservation_ids = {0x0102, 7};
  m.no_fanout = true;
  m.want_version_tags = true;
  EXPECT_EQ(Hex(Encoded(m)),
            "4b564644" "0200" "0800"  // magic, version 2, type 8
            "0100000000000000" "0000000000000000" "0000000000000000" "0000000000000000"
            "0000000000000000"  // session
            "18000000"          // body: 24 bytes
            "02000000"          // 2 ids
            "01" "01" "0000"    // no_fanout, want_version_tags, reserved
            "0201000000000000"  // 0x0102
            "0700000000000000");
}

TEST(Frames, GoldenLookupRequestBytes) {
  LookupRequest m;
  m.keys = {KeyRef{.key = {.hi = 0x11, .lo = 0x22}, .placement_hash = 0x33}};
  m.header.session = 0x0102;
  EXPECT_EQ(Hex(Encoded(m)).substr(2 * kSessionOffset),
            "0201000000000000"  // session
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
  EXPECT_EQ(Hex(Encoded(m)).substr(2 * kBodyBytesOffset),
            "29000000"             // body: 41 bytes
            "01000000" "6d"        // model_id "m"
            "02000000" "03000000" "04000000" "05000000" "01"  // layout, bf16
            "00000000" "01000000"  // tp_rank, tp_size
            "02000000" "7474"      // tenant "tt"
            "01"                   // sha256
            "06000000");           // segment_blocks
}

TEST(Frames, GoldenHelloRequestBytes) {
  HelloRequest m;
  m.header.request_id = 1;
  m.header.sender_epoch = 3;
  m.role = PeerRole::kClient;
  m.node_id = 0x0a0b;
  m.credential = "tok";
  EXPECT_EQ(Hex(Encoded(m)),
            "4b564644" "0200" "1000"  // magic, version 2, type 16
            "0100000000000000"  // request id
            "0300000000000000"  // sender epoch
            "0000000000000000" "0000000000000000" "0000000000000000"  // ns, layout, session
            "0f000000"          // body: 15 bytes
            "02" "000000"       // role client, reserved
            "0b0a0000"          // node id
            "03000000" "746f6b");  // credential "tok"
}

TEST(Frames, GoldenHelloResponseBytes) {
  HelloResponse m;
  m.header.request_id = 1;
  m.session = 0x1122334455667788;
  m.idle_ttl_us = 60'000'000;
  EXPECT_EQ(Hex(Encoded(m)).substr(2 * 6),
            "1100"              // type 17
            "0100000000000000" "0000000000000000"  // request id, epoch
            "0000000000000000" "0000000000000000" "0000000000000000"  // ns, layout, session
            "10000000"          // body: 16 bytes
            "8877665544332211"  // session
            "0087930300000000");  // idle ttl 60 s
}

TEST(Frames, GoldenReserveRequestEntryBytes) {
  ReserveRequest m;
  m.entries = {ReserveEntry{.key = {1, 2},
                            .placement_hash = 3,
                            .parent = {4, 5},
                            .size = 6,
                            .depth = 7,
                            .codec = CodecId::kInt8,
                            .is_mutable = true,
                            .has_version = true,
                            .version = {8, 9},
                            .version_tag = 0xa0b0c0d0e0f01020}};
  EXPECT_EQ(Hex(Encoded(m)).substr(2 * kBodyBytesOffset),
            "50000000"          // body: 4 + 76 bytes
            "01000000"          // 1 entry
            "0100000000000000" "0200000000000000"  // key
            "0300000000000000"                     // placement hash
            "0400000000000000" "0500000000000000"  // parent
            "06000000" "07000000"                  // size, depth
            "02" "01" "01" "00"                    // codec int8, mutable, has_version, reserved
            "0800000000000000" "0900000000000000"  // version
            "2010f0e0d0c0b0a0");                   // version tag
}

TEST(Frames, GoldenReserveResponseResultBytes) {
  ReserveResponse m;
  m.results = {ReserveResult{.already_present = true,
                             .version = {8, 9},
                             .version_tag = 0x0102030405060708}};
  EXPECT_EQ(Hex(Encoded(m)).substr(2 * kBodyBytesOffset),
            "40000000"          // body: 8 + 56 bytes
            "01000000" "00000000"                  // 1 result, 0 descriptors
            "00000000" "01" "000000"               // OK, already_present, reserved
            "0800000000000000" "0900000000000000"  // version
            "0807060504030201"                     // version tag
            "0000000000000000"                     // reservation id
            "00000000" "00000000" "0000000000000000");  // location
}

TEST(Frames, GoldenCommitResponseBytes) {
  CommitResponse m;
  m.results = {CommitResult{.version = {8, 9}, .version_tag = 0x0102030405060708},
               CommitResult{.code = absl::StatusCode::kAborted}};
  EXPECT_EQ(Hex(Encoded(m)).substr(2 * kBodyBytesOffset),
            "44000000"          // body: 4 + 2 * 32 bytes
            "02000000"          // 2 results
            "00000000" "00000000"                  // OK, reserved
            "0800000000000000" "0900000000000000"  // version
            "0807060504030201"                     // version tag
            "0a000000" "00000000"                  // ABORTED, reserved
            "0000000000000000" "0000000000000000" "0000000000000000");
}

TEST(Frames, GoldenReadRequestBytes) {
  ReadRequest m;
  m.header.request_id = 1;
  m.lease_id = 0x0102030405060708;
  m.ranges = {ReadRange{.entry = 3, .offset = 0x10, .length = 0x20},
              ReadRange{.entry = 0, .offset = 0, .length = 1}};
  EXPECT_EQ(Hex(Encoded(m)),
            "4b564644" "0200" "1200"  // magic, version 2, type 18
            "0100000000000000" "0000000000000000" "0000000000000000" "0000000000000000"
            "0000000000000000"  // session
            "28000000"          // body: 16 + 2 * 12 bytes
            "0807060504030201"  // lease id
            "02000000" "00000000"  // 2 ranges, reserved
            "03000000" "10000000" "20000000"  // entry 3, offset 16, 32 bytes
            "00000000" "00000000" "01000000");  // entry 0, offset 0, 1 byte
}

TEST(Frames, GoldenReadResponseBytes) {
  ReadResponse m;
  m.header.request_id = 1;
  m.bytes = std::string("\x00\xff" "ab", 4);
  EXPECT_EQ(Hex(Encoded(m)),
            "4b564644" "0200" "1300"  // magic, version 2, type 19
            "0100000000000000" "0000000000000000" "0000000000000000" "0000000000000000"
            "0000000000000000"  // session
            "0c000000"          // body: 8 + 4 bytes
            "04000000" "00000000"  // 4 bytes, reserved
            "00ff6162");
}

TEST(Frames, GoldenWriteRequestBytes) {
  WriteRequest m;
  m.header.request_id = 1;
  m.ranges = {WriteRange{.reservation_id = 0x1122334455667788, .offset = 2, .length = 3},
              WriteRange{.reservation_id = 9, .offset = 0, .length = 1}};
  m.bytes = std::string("abc\x00", 4);
  EXPECT_EQ(Hex(Encoded(m)),
            "4b564644" "0200" "1400"  // magic, version 2, type 20
            "0100000000000000" "0000000000000000" "0000000000000000" "0000000000000000"
            "0000000000000000"  // session
            "2c000000"          // body: 8 + 2 * 16 + 4 bytes
            "02000000" "00000000"  // 2 ranges, reserved
            "8877665544332211" "02000000" "03000000"  // reservation, offset 2, 3 bytes
            "0900000000000000" "00000000" "01000000"  // reservation 9, offset 0, 1 byte
            "61626300");  // the ranges' bytes, in range order
}

}  // namespace
}  // namespace kvf::protocol
