// Validation rules of the frames that carry sessions and memory grants
// (protocol v2: HelloRequest/HelloResponse, StampSession, version tags,
// ReadRequest/ReadResponse/WriteRequest): one test per rule, as
// frames_rules_test.cc does for the rest.
#include "tests/protocol/sample_frames.h"

namespace kvf::protocol {
namespace {

// ---- Data frames (ReadRequest, ReadResponse, WriteRequest) ------------------------------

TEST(DataFrames, ZeroLengthRangeRefused) {
  ReadRequest read = Sample<ReadRequest>();
  read.ranges[1].length = 0;
  ExpectEncodeRefused(read, "ReadRequest: range 1: length 0");
  std::string b = SampleBytes<ReadRequest>();
  Patch<uint32_t>(b, kReadRequestRanges + kReadRange + 8, 0);  // range 1's length
  ExpectInvalid<ReadRequest>(b, "ReadRequest: range 1: length 0");

  WriteRequest write = Sample<WriteRequest>();
  write.ranges.push_back(WriteRange{.reservation_id = 5, .offset = 0, .length = 0});
  ExpectEncodeRefused(write, "WriteRequest: range 2: length 0");  // bytes still match
  b = SampleBytes<WriteRequest>();
  Patch<uint32_t>(b, kWriteRequestRanges + 12, 0);  // range 0's length
  ExpectInvalid<WriteRequest>(b, "WriteRequest: range 0: length 0");
}

// A frame with kMaxDataRanges + 1 ranges, its counts and body consistent.
TEST(DataFrames, MoreThanMaxRangesRefused) {
  ReadRequest read;
  read.ranges.assign(kMaxDataRanges, ReadRange{.entry = 1, .offset = 2, .length = 3});
  std::string b = Encoded(read);
  b.append(kReadRange, '\x01');
  Patch<uint32_t>(b, kBody + 8, kMaxDataRanges + 1);
  FixBodyLength(b);
  ExpectInvalid<ReadRequest>(b, "ReadRequest: range count 129 exceeds 128");
  read.ranges.push_back(read.ranges.back());
  ExpectEncodeRefused(read, "ReadRequest: range count 129 exceeds 128");

  WriteRequest write;
  write.ranges.assign(kMaxDataRanges, WriteRange{.reservation_id = 7, .length = 1});
  write.bytes.assign(kMaxDataRanges, 'w');
  b = Encoded(write);
  // One more range (16 bytes, before the data) and its one byte.
  std::string extra(kWriteRange, '\0');
  Patch<uint32_t>(extra, 12, 1);
  b.insert(kWriteRequestRanges + kMaxDataRanges * kWriteRange, extra);
  b.push_back('w');
  Patch<uint32_t>(b, kBody, kMaxDataRanges + 1);
  FixBodyLength(b);
  ExpectInvalid<WriteRequest>(b, "WriteRequest: range count 129 exceeds 128");
  write.ranges.push_back(write.ranges.back());
  write.bytes.push_back('w');
  ExpectEncodeRefused(write, "WriteRequest: range count 129 exceeds 128");
}

TEST(DataFrames, TotalOverMaxDataBytesRefused) {
  constexpr std::string_view kOver = "ranges total more than 61440 bytes";
  // Exactly kMaxDataBytes is fine, one more is not; in one range or several.
  ReadRequest read;
  read.ranges = {{.entry = 0, .length = kMaxDataBytes - 1}, {.entry = 1, .length = 1}};
  EXPECT_TRUE(DecodeExact<ReadRequest>(Encoded(read)).ok());
  read.ranges[1].length = 2;
  ExpectEncodeRefused(read, kOver);
  read.ranges = {{.entry = 0, .length = kMaxDataBytes + 1}};
  ExpectEncodeRefused(read, kOver);
  read.ranges = {{.entry = 0, .length = ~0u}, {.entry = 1, .length = ~0u}};  // no wrap-around
  ExpectEncodeRefused(read, kOver);
  std::string b = SampleBytes<ReadRequest>();
  Patch<uint32_t>(b, kReadRequestRanges + 8, kMaxDataBytes - 35);  // + 32 + 4 = one over
  ExpectInvalid<ReadRequest>(b, kOver);
  Patch<uint32_t>(b, kReadRequestRanges + 8, kMaxDataBytes - 36);  // exactly the maximum
  EXPECT_TRUE(DecodeExact<ReadRequest>(b).ok());
  Patch<uint32_t>(b, kReadRequestRanges + 8, ~0u);
  ExpectInvalid<ReadRequest>(b, kOver);

  WriteRequest write;
  write.ranges = {{.reservation_id = 1, .length = kMaxDataBytes},
                  {.reservation_id = 2, .length = 1}};
  write.bytes.assign(kMaxDataBytes + 1, 'x');
  ExpectEncodeRefused(write, kOver);
  // On the wire: a frame of one range of kMaxDataBytes, grown by one byte
  // in the range's length and in the data (it still fits a message).
  write.ranges.resize(1);
  write.bytes.resize(kMaxDataBytes);
  b = Encoded(write);
  ASSERT_TRUE(DecodeExact<WriteRequest>(b).ok());
  Patch<uint32_t>(b, kWriteRequestRanges + 12, kMaxDataBytes + 1);
  b.push_back('x');
  FixBodyLength(b);
  ExpectInvalid<WriteRequest>(b, kOver);
}

TEST(DataFrames, WriteBytesMustMatchRanges) {
  // The sample's ranges total 64 bytes.
  WriteRequest write = Sample<WriteRequest>();
  write.bytes.pop_back();
  ExpectEncodeRefused(write, "WriteRequest: 63 bytes for ranges of 64");
  write = Sample<WriteRequest>();
  write.bytes.push_back('!');
  ExpectEncodeRefused(write, "WriteRequest: 65 bytes for ranges of 64");
  write = Sample<WriteRequest>();
  write.bytes.clear();
  ExpectEncodeRefused(write, "WriteRequest: 0 bytes for ranges of 64");
  write.ranges.clear();
  write.bytes = "x";  // bytes without ranges
  ExpectEncodeRefused(write, "WriteRequest: 1 bytes for ranges of 0");

  std::string b = SampleBytes<WriteRequest>();
  b.pop_back();
  FixBodyLength(b);
  ExpectInvalid<WriteRequest>(b, "WriteRequest: 63 bytes for ranges of 64");
  b = SampleBytes<WriteRequest>();
  b.push_back('!');
  FixBodyLength(b);
  ExpectInvalid<WriteRequest>(b, "WriteRequest: 65 bytes for ranges of 64");
  // The same with the ranges changed instead of the bytes.
  b = SampleBytes<WriteRequest>();
  Patch<uint32_t>(b, kWriteRequestRanges + kWriteRange + 12, 17);  // range 1: 16 -> 17
  ExpectInvalid<WriteRequest>(b, "WriteRequest: 64 bytes for ranges of 65");
  Patch<uint32_t>(b, kWriteRequestRanges + kWriteRange + 12, 15);
  ExpectInvalid<WriteRequest>(b, "WriteRequest: 64 bytes for ranges of 63");
}

TEST(DataFrames, ReadResponseOverMaxDataBytesRefused) {
  ReadResponse m;
  m.bytes.assign(kMaxDataBytes + 1, 'r');
  ExpectEncodeRefused(m, "ReadResponse: 61441 bytes exceed 61440");
  m.bytes.pop_back();
  const std::string max = Encoded(m);
  ASSERT_TRUE(DecodeExact<ReadResponse>(max).ok());
  // One byte more on the wire, count and body consistent.
  std::string b = max;
  b.push_back('r');
  Patch<uint32_t>(b, kBody, kMaxDataBytes + 1);
  FixBodyLength(b);
  ExpectInvalid<ReadResponse>(b, "ReadResponse: 61441 bytes exceed 61440");
  // A huge count is refused before the bytes are looked for.
  b = SampleBytes<ReadResponse>();
  Patch<uint32_t>(b, kBody, ~0u);
  ExpectInvalid<ReadResponse>(b, "ReadResponse: 4294967295 bytes exceed 61440");
}

// ---- Version tags -----------------------------------------------------------------------

TEST(VersionTags, ReserveRequestTagOnlyWithVersion) {
  // Entry 0 of the sample has no version: a tag alone is refused.
  ReserveRequest m = Sample<ReserveRequest>();
  m.entries[0].version_tag = 1;
  ExpectEncodeRefused(m, "entry 0: version or its tag set without has_version");
  std::string b = SampleBytes<ReserveRequest>();
  Patch<uint64_t>(b, kBody + 4 + 68, 1);  // entry 0's tag
  ExpectInvalid<ReserveRequest>(b, "entry 0: version 0.0 or its tag set without has_version");

  // A version with a zero tag is fine (agents send 0), and so is the tag
  // with its version.
  m = Sample<ReserveRequest>();
  m.entries[1].version_tag = 0;
  auto back = ReserveRequest::Decode(Encoded(m));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->entries[1].version_tag, 0u);
  back = ReserveRequest::Decode(SampleBytes<ReserveRequest>());
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->entries[1].version_tag, Sample<ReserveRequest>().entries[1].version_tag);
}

TEST(VersionTags, CommitResponseErrorEntryCarriesNoTag) {
  CommitResponse m = Sample<CommitResponse>();
  m.results[1].version_tag = 5;  // entry 1 is NOT_FOUND
  ExpectEncodeRefused(m, "entry 1: error entry carries a version");
  std::string b = SampleBytes<CommitResponse>();
  Patch<uint64_t>(b, kBody + 4 + kCommitResult + 24, 5);
  ExpectInvalid<CommitResponse>(b, "entry 1: error entry carries a version");
}

TEST(VersionTags, ReserveResponseTagOnlyWhenAlreadyPresent) {
  // Entry 2 is RESOURCE_EXHAUSTED: no tag.
  ReserveResponse m = Sample<ReserveResponse>();
  m.results[2].version_tag = 5;
  ExpectEncodeRefused(m, "entry 2: error entry carries a result");
  std::string b = SampleBytes<ReserveResponse>();
  Patch<uint64_t>(b, kReserveResponseEntries + 2 * kReserveResult + 24, 5);
  ExpectInvalid<ReserveResponse>(b, "entry 2: error entry carries a result");

  // Entry 0 is a reservation: no version, so no tag either.
  m = Sample<ReserveResponse>();
  m.results[0].version_tag = 5;
  ExpectEncodeRefused(m, "entry 0: reservation carries a version");
  b = SampleBytes<ReserveResponse>();
  Patch<uint64_t>(b, kReserveResponseEntries + 24, 5);
  ExpectInvalid<ReserveResponse>(b, "entry 0: reservation carries a version");
}

// ---- Sessions ------------------------------------------------------------------------

TEST(Hello, UnknownRoleRefused) {
  for (uint8_t role : {uint8_t{0}, uint8_t{3}, uint8_t{0xff}}) {
    SCOPED_TRACE(static_cast<int>(role));
    HelloRequest m = Sample<HelloRequest>();
    m.role = static_cast<PeerRole>(role);
    ExpectEncodeRefused(m, absl::StrCat("unknown role ", static_cast<int>(role)));
    std::string b = SampleBytes<HelloRequest>();
    b.at(kBody) = static_cast<char>(role);
    ExpectInvalid<HelloRequest>(b, absl::StrCat("unknown role ", static_cast<int>(role)));
  }
  // Both known roles round-trip.
  for (PeerRole role : {PeerRole::kAgent, PeerRole::kClient}) {
    HelloRequest m = Sample<HelloRequest>();
    m.role = role;
    auto back = HelloRequest::Decode(Encoded(m));
    ASSERT_TRUE(back.ok()) << back.status();
    EXPECT_EQ(back->role, role);
  }
}

TEST(Hello, CredentialLength) {
  HelloRequest m = Sample<HelloRequest>();
  m.credential.clear();
  ExpectEncodeRefused(m, "credential of 0 bytes (1..512 allowed)");
  m.credential.assign(kMaxCredentialBytes + 1, 'c');
  ExpectEncodeRefused(m, "credential of 513 bytes");

  // The largest credential fits.
  m.credential.assign(kMaxCredentialBytes, 'c');
  auto back = HelloRequest::Decode(Encoded(m));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->credential, m.credential);

  // On the wire: an empty credential (length 0, body cut to match).
  std::string b = SampleBytes<HelloRequest>();
  b.resize(kBody + 12);
  Patch<uint32_t>(b, kBody + 8, 0);
  FixBodyLength(b);
  ExpectInvalid<HelloRequest>(b, "credential of 0 bytes");

  // A length over the maximum is refused before the bytes are looked for,
  // and so is an over-long credential that is all there.
  b = SampleBytes<HelloRequest>();
  Patch<uint32_t>(b, kBody + 8, kMaxCredentialBytes + 1);
  ExpectInvalid<HelloRequest>(b, "credential length 513 exceeds 512");
  b.resize(kBody + 12);
  b.append(kMaxCredentialBytes + 1, 'c');
  FixBodyLength(b);
  ExpectInvalid<HelloRequest>(b, "credential length 513 exceeds 512");
  Patch<uint32_t>(b, kBody + 8, 0xffffffff);
  ExpectInvalid<HelloRequest>(b, "exceeds 512");
}

TEST(Hello, RequestHeaderNamesNothing) {
  auto refused = [](auto mutate, std::string_view needle) {
    HelloRequest m = Sample<HelloRequest>();
    mutate(m.header);
    ExpectEncodeRefused(m, needle);
  };
  refused([](FrameHeader& h) { h.namespace_id = 1; }, "namespace id and layout fingerprint");
  refused([](FrameHeader& h) { h.layout_fingerprint = 1; }, "namespace id and layout fingerprint");
  refused([](FrameHeader& h) { h.session = kSampleSession; }, "session must be 0");

  for (size_t offset : {kNamespaceIdOffset, kFingerprintOffset}) {
    std::string b = SampleBytes<HelloRequest>();
    b.at(offset + 7) = 1;
    ExpectInvalid<HelloRequest>(b, "namespace id and layout fingerprint must be 0");
  }
  std::string b = SampleBytes<HelloRequest>();
  Patch<uint64_t>(b, kSessionOffset, kSampleSession);
  ExpectInvalid<HelloRequest>(b, "HelloRequest: session must be 0");
  // The header alone still parses: a receiver can answer with an error.
  auto h = DecodeHeader(b);
  ASSERT_TRUE(h.ok()) << h.status();
  EXPECT_EQ(h->type, FrameType::kHelloRequest);
  EXPECT_EQ(h->header.session, kSampleSession);
}

TEST(Hello, ResponseNeedsASession) {
  HelloResponse m = Sample<HelloResponse>();
  m.session = 0;
  ExpectEncodeRefused(m, "HelloResponse: session 0");
  std::string b = SampleBytes<HelloResponse>();
  Patch<uint64_t>(b, kBody, 0);
  ExpectInvalid<HelloResponse>(b, "HelloResponse: session 0");

  // Like the request, the response names no namespace or layout.
  m = Sample<HelloResponse>();
  m.header.namespace_id = 1;
  ExpectEncodeRefused(m, "namespace id and layout fingerprint must be 0");
  b = SampleBytes<HelloResponse>();
  b.at(kFingerprintOffset) = 1;
  ExpectInvalid<HelloResponse>(b, "HelloResponse: namespace id and layout fingerprint must be 0");
}

TEST(Hello, ResponseRoundTripsEveryTtl) {
  for (uint64_t ttl : {uint64_t{0}, uint64_t{1}, ~uint64_t{0}}) {
    HelloResponse m = Sample<HelloResponse>();
    m.idle_ttl_us = ttl;
    m.session = ~uint64_t{0};
    auto back = HelloResponse::Decode(Encoded(m));
    ASSERT_TRUE(back.ok()) << back.status();
    EXPECT_EQ(*back, m);
  }
}

TEST(StampSession, WritesWhereDecodeHeaderReads) {
  testing::ForEachFrame([&]<typename T>() {
    SCOPED_TRACE(std::string(FrameTypeName(T::kType)));
    const std::string original = SampleBytes<T>();
    std::string b = original;
    constexpr uint64_t kStamp = 0x0123456789abcdef;
    ASSERT_TRUE(StampSession(&b, kStamp).ok());
    ASSERT_EQ(b.size(), original.size());
    auto h = DecodeHeader(b);
    ASSERT_TRUE(h.ok()) << h.status();
    EXPECT_EQ(h->header.session, kStamp);
    EXPECT_EQ(h->type, T::kType);
    // Only the 8 session bytes changed.
    EXPECT_EQ(b.substr(0, kSessionOffset), original.substr(0, kSessionOffset));
    EXPECT_EQ(b.substr(kSessionOffset + 8), original.substr(kSessionOffset + 8));
    if constexpr (!std::is_same_v<T, HelloRequest>) {  // a hello must carry session 0
      auto m = DecodeExact<T>(b);
      ASSERT_TRUE(m.ok()) << m.status();
      EXPECT_EQ(m->header.session, kStamp);
      T want = Sample<T>();
      want.header.session = kStamp;
      EXPECT_EQ(Encoded(want), b);
    }
  });

  // Stamping 0 restores an unstamped frame; a frame can be re-stamped.
  std::string b = SampleBytes<AckResponse>();
  ASSERT_TRUE(StampSession(&b, 7).ok());
  ASSERT_TRUE(StampSession(&b, 0).ok());
  AckResponse unstamped = Sample<AckResponse>();
  unstamped.header.session = 0;
  EXPECT_EQ(b, Encoded(unstamped));
}

TEST(StampSession, RefusesAShortFrame) {
  const std::string full = SampleBytes<AckResponse>();  // exactly a header
  ASSERT_EQ(full.size(), kFrameHeaderBytes);
  for (size_t n : {size_t{0}, kSessionOffset, kSessionOffset + 8, kFrameHeaderBytes - 1}) {
    SCOPED_TRACE(n);
    std::string b = full.substr(0, n);
    const absl::Status s = StampSession(&b, 9);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
    EXPECT_THAT(std::string(s.message()), HasSubstr("has no header"));
    EXPECT_EQ(b, full.substr(0, n));  // untouched
  }
  std::string b = full;
  EXPECT_TRUE(StampSession(&b, 9).ok());
  auto h = DecodeHeader(b);
  ASSERT_TRUE(h.ok()) << h.status();
  EXPECT_EQ(h->header.session, 9u);
}

// ---- FetchRequest (the two-sided lane) ------------------------------------------------

TEST(FetchFrames, OneTagPerKey) {
  FetchRequest m = Sample<FetchRequest>();
  m.tags.pop_back();
  ExpectEncodeRefused(m, "FetchRequest: 2 tags for 3 keys");
  // A body one tag short (its count still says 3 keys) is refused by size.
  std::string b = SampleBytes<FetchRequest>();
  b.resize(b.size() - 8);
  FixBodyLength(b);
  ExpectInvalid<FetchRequest>(b, "FetchRequest");
}

TEST(FetchFrames, SharesGetRequestsRules) {
  FetchRequest m = Sample<FetchRequest>();
  m.has_min_version = false;
  ExpectEncodeRefused(m, "min_version set without has_min_version");
  m.min_version = {};
  m.keys.assign(kMaxGetKeys + 1, m.keys[0]);
  m.tags.assign(kMaxGetKeys + 1, 1);
  ExpectEncodeRefused(m, "FetchRequest: key count 1025 exceeds 1024");
  // The largest fetch fits a message.
  m.keys.pop_back();
  m.tags.pop_back();
  EXPECT_FALSE(Encoded(m).empty());
  // The byte that is a GetRequest's device_ok is reserved in a fetch (its
  // bytes travel through the agent's host arena, never over CUDA IPC).
  std::string b = SampleBytes<FetchRequest>();
  b.at(kBody + 5) = 1;
  ExpectInvalid<FetchRequest>(b, "reserved bytes");
}

TEST(StoreFrames, OneTagPerEntryAndReservesRules) {
  StoreRequest m = Sample<StoreRequest>();
  m.tags.push_back(3);
  ExpectEncodeRefused(m, "StoreRequest: 3 tags for 2 entries");
  std::string b = SampleBytes<StoreRequest>();
  b.resize(b.size() - 8);
  FixBodyLength(b);
  ExpectInvalid<StoreRequest>(b, "StoreRequest");
  m = Sample<StoreRequest>();
  m.entries[0].version = {1, 1};  // without has_version
  ExpectEncodeRefused(m, "entry 0: version or its tag set without has_version");
}

}  // namespace
}  // namespace kvf::protocol
