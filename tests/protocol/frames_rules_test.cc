// Tests of the frame codec's validation (protocol/frames.h): one test per
// rule, every truncation, and a bounded random-mutation loop.
#include "tests/protocol/sample_frames.h"

namespace kvf::protocol {
namespace {

// ---- Header rules ---------------------------------------------------------------------

TEST(FrameHeaderRules, BadMagic) {
  std::string b = SampleBytes<ReleaseRequest>();
  b[0] = 'X';
  ExpectInvalid<ReleaseRequest>(b, "magic");
  EXPECT_FALSE(DecodeHeader(b).ok());
}

TEST(FrameHeaderRules, BadVersion) {
  std::string b = SampleBytes<ReleaseRequest>();
  Patch<uint16_t>(b, kVersionOffset, 1);  // the 44-byte header of version 1
  ExpectInvalid<ReleaseRequest>(b, "unsupported version 1 (this build speaks 2)");
  EXPECT_FALSE(DecodeHeader(b).ok());
  Patch<uint16_t>(b, kVersionOffset, 3);
  ExpectInvalid<ReleaseRequest>(b, "version 3");
  Patch<uint16_t>(b, kVersionOffset, 0);
  ExpectInvalid<ReleaseRequest>(b, "version 0");
}

TEST(FrameHeaderRules, UnknownType) {
  std::string b = SampleBytes<AckResponse>();
  for (uint16_t type : {uint16_t{0}, uint16_t{kMaxFrameType + 1}, uint16_t{0xffff}}) {
    Patch<uint16_t>(b, kTypeOffset, type);
    auto h = DecodeHeader(b);
    ASSERT_FALSE(h.ok());
    EXPECT_EQ(h.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(h.status().message()), HasSubstr("unknown type"));
  }
  // Every known type parses and has a name.
  for (uint16_t type = 1; type <= kMaxFrameType; ++type) {
    Patch<uint16_t>(b, kTypeOffset, type);
    auto h = DecodeHeader(b);
    ASSERT_TRUE(h.ok()) << type;
    EXPECT_NE(FrameTypeName(h->type), "unknown") << type;
  }
  EXPECT_EQ(FrameTypeName(FrameType::kRegisterNamespaceRequest), "RegisterNamespaceRequest");
  EXPECT_EQ(FrameTypeName(FrameType::kHelloRequest), "HelloRequest");
  EXPECT_EQ(FrameTypeName(FrameType::kHelloResponse), "HelloResponse");
  EXPECT_EQ(FrameTypeName(FrameType::kReadRequest), "ReadRequest");
  EXPECT_EQ(FrameTypeName(FrameType::kReadResponse), "ReadResponse");
  EXPECT_EQ(FrameTypeName(FrameType::kWriteRequest), "WriteRequest");
  EXPECT_EQ(static_cast<uint16_t>(FrameType::kReadRequest), 18);
  EXPECT_EQ(static_cast<uint16_t>(FrameType::kReadResponse), 19);
  EXPECT_EQ(static_cast<uint16_t>(FrameType::kWriteRequest), 20);
  EXPECT_EQ(FrameTypeName(FrameType::kFetchRequest), "FetchRequest");
  EXPECT_EQ(static_cast<uint16_t>(FrameType::kFetchRequest), 21);
  EXPECT_EQ(FrameTypeName(FrameType::kStoreRequest), "StoreRequest");
  EXPECT_EQ(static_cast<uint16_t>(FrameType::kStoreRequest), 22);
  EXPECT_EQ(kMaxFrameType, static_cast<uint16_t>(FrameType::kStoreRequest));
}

TEST(FrameHeaderRules, WrongTypeForDecode) {
  const std::string b = SampleBytes<LookupRequest>();
  ExpectInvalid<RemoveRequest>(b, "expected a RemoveRequest");
  ExpectInvalid<AckResponse>(SampleBytes<ErrorResponse>(), "expected a AckResponse");
  ExpectInvalid<RegisterNamespaceRequest>(SampleBytes<AckResponse>(),
                                          "expected a RegisterNamespaceRequest");
  ExpectInvalid<HelloRequest>(SampleBytes<HelloResponse>(), "expected a HelloRequest");
  ExpectInvalid<HelloResponse>(SampleBytes<HelloRequest>(), "expected a HelloResponse");
  ExpectInvalid<ReadRequest>(SampleBytes<ReadResponse>(), "expected a ReadRequest");
  ExpectInvalid<ReadResponse>(SampleBytes<ReadRequest>(), "expected a ReadResponse");
  ExpectInvalid<WriteRequest>(SampleBytes<ReadRequest>(), "expected a WriteRequest");
  ExpectInvalid<AckResponse>(SampleBytes<WriteRequest>(), "expected a AckResponse");
}

TEST(FrameHeaderRules, BodyLengthDisagreesWithFrame) {
  std::string b = SampleBytes<ReleaseRequest>();
  Patch<uint32_t>(b, kBodyBytesOffset, 9);  // says more than is there
  ExpectRejected<ReleaseRequest>(b, absl::StatusCode::kDataLoss, "truncated");
  Patch<uint32_t>(b, kBodyBytesOffset, 7);  // says less
  ExpectInvalid<ReleaseRequest>(b, "trailing bytes");
  Patch<uint32_t>(b, kBodyBytesOffset, 0xffffffff);
  ExpectRejected<ReleaseRequest>(b, absl::StatusCode::kDataLoss, "truncated");
}

TEST(FrameHeaderRules, TrailingBytes) {
  testing::ForEachFrame([&]<typename T>() {
    SCOPED_TRACE(std::string(FrameTypeName(T::kType)));
    std::string b = SampleBytes<T>();
    b.push_back('\0');
    ExpectInvalid<T>(b, "trailing bytes");  // header length unchanged
    FixBodyLength(b);
    auto m = DecodeExact<T>(b);  // the body itself is now one byte too long
    ASSERT_FALSE(m.ok());
    EXPECT_EQ(m.status().code(), absl::StatusCode::kInvalidArgument) << m.status();
  });
}

TEST(FrameHeaderRules, OversizeFrame) {
  std::string b = SampleBytes<AckResponse>();
  b.resize(kMaxMessageBytes + 1);
  FixBodyLength(b);
  auto h = DecodeHeader(b);
  ASSERT_FALSE(h.ok());
  EXPECT_THAT(std::string(h.status().message()), HasSubstr("exceeds kMaxMessageBytes"));

  // Encode refuses a frame that would not fit one transport message.
  GetResponse m = Sample<GetResponse>();
  m.descriptors.assign(kMaxDescriptors, CudaArena());
  for (auto& d : m.descriptors) d.rkey.assign(8000, 'k');
  ExpectEncodeRefused(m, "exceeds kMaxMessageBytes");
}

// Every proper prefix of a valid frame is DATA_LOSS (never a crash or an
// out-of-bounds read: DecodeExact gives ASan an exact buffer).
TEST(FrameHeaderRules, EveryPrefixIsTruncation) {
  testing::ForEachFrame([&]<typename T>() {
    SCOPED_TRACE(std::string(FrameTypeName(T::kType)));
    const std::string b = SampleBytes<T>();
    for (size_t n = 0; n < b.size(); ++n) {
      auto m = DecodeExact<T>(std::string_view(b).substr(0, n));
      ASSERT_FALSE(m.ok()) << n;
      EXPECT_EQ(m.status().code(), absl::StatusCode::kDataLoss) << n << ": " << m.status();
    }
  });
}

// The same prefixes with the header's length made consistent: the body is
// short for its counts, which is INVALID_ARGUMENT, still never a crash.
TEST(FrameHeaderRules, EveryShortBodyIsRejected) {
  testing::ForEachFrame([&]<typename T>() {
    SCOPED_TRACE(std::string(FrameTypeName(T::kType)));
    const std::string full = SampleBytes<T>();
    for (size_t n = kFrameHeaderBytes; n < full.size(); ++n) {
      std::string b = full.substr(0, n);
      FixBodyLength(b);
      auto m = DecodeExact<T>(b);
      ASSERT_FALSE(m.ok()) << n;
      EXPECT_EQ(m.status().code(), absl::StatusCode::kInvalidArgument) << n << ": " << m.status();
    }
  });
}

// ---- Counts and body sizes ------------------------------------------------------------

// Patches the u32 count at `offset` to max + 1: Decode must name the limit.
template <typename T>
void ExpectCountLimit(size_t offset, size_t max) {
  SCOPED_TRACE(std::string(FrameTypeName(T::kType)));
  std::string b = SampleBytes<T>();
  Patch<uint32_t>(b, offset, static_cast<uint32_t>(max + 1));
  ExpectInvalid<T>(b, absl::StrCat("count ", max + 1, " exceeds ", max));
  Patch<uint32_t>(b, offset, 0xffffffff);
  ExpectInvalid<T>(b, "exceeds");
}

TEST(FrameCounts, DecodeRefusesCountsOverMaxima) {
  ExpectCountLimit<LookupRequest>(kBody, kMaxLookupKeys);
  ExpectCountLimit<LookupResponse>(kBody, kMaxLookupKeys);
  ExpectCountLimit<GetRequest>(kBody, kMaxGetKeys);
  ExpectCountLimit<GetResponse>(kBody + 16, kMaxGetKeys);
  ExpectCountLimit<GetResponse>(kBody + 20, kMaxDescriptors);
  ExpectCountLimit<ReserveRequest>(kBody, kMaxReserveKeys);
  ExpectCountLimit<ReserveResponse>(kBody, kMaxReserveKeys);
  ExpectCountLimit<ReserveResponse>(kBody + 4, kMaxDescriptors);
  ExpectCountLimit<CommitRequest>(kBody, kMaxCommitIds);
  ExpectCountLimit<CommitResponse>(kBody, kMaxCommitIds);
  ExpectCountLimit<RemoveRequest>(kBody, kMaxRemoveKeys);
  ExpectCountLimit<RemoveResponse>(kBody, kMaxRemoveKeys);
  ExpectCountLimit<InvalidateRequest>(kBody, kMaxInvalidations);
  ExpectCountLimit<ReadRequest>(kBody + 8, kMaxDataRanges);
  ExpectCountLimit<WriteRequest>(kBody, kMaxDataRanges);
}

TEST(FrameCounts, EncodeRefusesCountsOverMaxima) {
  LookupRequest lookup;
  lookup.keys.resize(kMaxLookupKeys + 1);
  ExpectEncodeRefused(lookup, "exceeds 2048");
  lookup.keys.resize(kMaxLookupKeys);
  EXPECT_TRUE(lookup.Encode().ok());  // the maximum itself fits

  LookupResponse lookup_response;
  lookup_response.entries.resize(kMaxLookupKeys + 1);
  ExpectEncodeRefused(lookup_response, "exceeds");
  GetRequest get;
  get.keys.resize(kMaxGetKeys + 1);
  ExpectEncodeRefused(get, "exceeds");
  GetResponse get_response;
  get_response.entries.resize(kMaxGetKeys + 1, GetEntry{.code = absl::StatusCode::kNotFound});
  ExpectEncodeRefused(get_response, "exceeds");
  get_response.entries.clear();
  get_response.descriptors.assign(kMaxDescriptors + 1, HostArena());
  ExpectEncodeRefused(get_response, "exceeds");
  ReserveRequest reserve;
  reserve.entries.resize(kMaxReserveKeys + 1);
  ExpectEncodeRefused(reserve, "exceeds");
  reserve.entries.resize(kMaxReserveKeys);
  for (auto& e : reserve.entries) {
    e.has_version = true;
    e.version = {~0ull, ~0ull};
    e.version_tag = ~0ull;
  }
  EXPECT_TRUE(reserve.Encode().ok());
  ReserveResponse reserve_response;
  reserve_response.results.resize(kMaxReserveKeys + 1,
                                  ReserveResult{.code = absl::StatusCode::kAborted});
  ExpectEncodeRefused(reserve_response, "exceeds");
  reserve_response.results.clear();
  reserve_response.descriptors.assign(kMaxDescriptors + 1, HostArena());
  ExpectEncodeRefused(reserve_response, "exceeds");
  CommitRequest commit;
  commit.reservation_ids.resize(kMaxCommitIds + 1);
  ExpectEncodeRefused(commit, "exceeds");
  CommitResponse commit_response;
  commit_response.results.resize(kMaxCommitIds + 1);
  ExpectEncodeRefused(commit_response, "exceeds");
  RemoveRequest remove;
  remove.keys.resize(kMaxRemoveKeys + 1);
  ExpectEncodeRefused(remove, "exceeds");
  RemoveResponse remove_response;
  remove_response.codes.resize(kMaxRemoveKeys + 1);
  ExpectEncodeRefused(remove_response, "exceeds");
  InvalidateRequest invalidate;
  invalidate.invalidations.resize(kMaxInvalidations + 1);
  ExpectEncodeRefused(invalidate, "exceeds");
  ErrorResponse error = Sample<ErrorResponse>();
  error.message.assign(kMaxErrorMessageBytes + 1, 'x');
  ExpectEncodeRefused(error, "exceeds");
  ReadRequest read;
  read.ranges.resize(kMaxDataRanges + 1, ReadRange{.length = 1});
  ExpectEncodeRefused(read, "range count 129 exceeds 128");
  WriteRequest write;
  write.ranges.resize(kMaxDataRanges + 1, WriteRange{.length = 1});
  write.bytes.assign(kMaxDataRanges + 1, 'w');
  ExpectEncodeRefused(write, "range count 129 exceeds 128");
  ReadResponse read_response;
  read_response.bytes.assign(kMaxDataBytes + 1, 'r');
  ExpectEncodeRefused(read_response, "61441 bytes exceed 61440");
}

// The largest frame of each data type encodes, decodes, and has the size
// docs/protocol.md gives under Limits.
TEST(FrameCounts, LargestDataFramesFit) {
  ReadRequest read;
  read.lease_id = ~uint64_t{0};
  read.ranges.assign(kMaxDataRanges, ReadRange{.entry = ~0u,
                                               .offset = ~0u,
                                               .length = kMaxDataBytes / kMaxDataRanges});
  ReadResponse read_response;
  read_response.bytes.assign(kMaxDataBytes, '\xff');
  WriteRequest write;
  write.ranges.assign(kMaxDataRanges, WriteRange{.reservation_id = ~uint64_t{0},
                                                 .offset = ~0u,
                                                 .length = kMaxDataBytes / kMaxDataRanges});
  write.bytes.assign(kMaxDataBytes, '\xee');
  static_assert(kMaxDataBytes == 61440 && kMaxDataRanges == 128);

  const std::string r = Encoded(read);
  EXPECT_EQ(r.size(), 1604u);
  EXPECT_TRUE(DecodeExact<ReadRequest>(r).ok());
  const std::string rr = Encoded(read_response);
  EXPECT_EQ(rr.size(), 61500u);
  EXPECT_TRUE(DecodeExact<ReadResponse>(rr).ok());
  const std::string w = Encoded(write);
  EXPECT_EQ(w.size(), 63548u);
  auto back = DecodeExact<WriteRequest>(w);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(*back, write);
}

// A count that disagrees with the body (header length consistent).
TEST(FrameCounts, BodySizeMustMatchCounts) {
  std::string b = SampleBytes<LookupRequest>();  // 3 keys
  Patch<uint32_t>(b, kBody, 2);
  ExpectInvalid<LookupRequest>(b, "does not match key count 2");
  Patch<uint32_t>(b, kBody, 4);
  ExpectInvalid<LookupRequest>(b, "does not match key count 4");

  auto check = [](auto type_tag, size_t offset, uint32_t count, std::string_view needle) {
    using T = decltype(type_tag);
    std::string bytes = SampleBytes<T>();
    Patch<uint32_t>(bytes, offset, count);
    ExpectInvalid<T>(bytes, needle);
  };
  check(LookupResponse{}, kBody, 4, "does not match");
  check(GetRequest{}, kBody, 3, "does not match");
  check(GetResponse{}, kBody + 16, 1000, "too short for entry count");
  check(GetResponse{}, kBody + 20, 3, "descriptor");
  check(ReserveRequest{}, kBody, 1, "does not match");
  check(ReserveResponse{}, kBody, 500, "too short for result count");
  check(ReserveResponse{}, kBody + 4, 1, "trailing");
  check(CommitRequest{}, kBody, 2, "does not match");
  check(CommitResponse{}, kBody, 3, "does not match");
  check(RemoveRequest{}, kBody, 0, "does not match");
  check(RemoveResponse{}, kBody, 2, "does not match");
  check(InvalidateRequest{}, kBody, 3, "does not match");
  // The HelloRequest credential's length must match the rest of the body.
  check(HelloRequest{}, kBody + 8, 24, "body ends inside credential");
  check(HelloRequest{}, kBody + 8, 22, "trailing");
  // The data frames (sample: 3 read ranges, 100 response bytes, 2 write
  // ranges of 64 bytes).
  check(ReadRequest{}, kBody + 8, 2, "does not match range count 2");
  check(ReadRequest{}, kBody + 8, 4, "does not match range count 4");
  check(ReadResponse{}, kBody, 101, "body ends inside bytes");
  check(ReadResponse{}, kBody, 99, "1 trailing bytes");
  check(WriteRequest{}, kBody, 1, "bytes for ranges of 48");
  check(WriteRequest{}, kBody, 8, "too short for range count 8");
}

// ---- Field rules ------------------------------------------------------------------

TEST(FrameFields, BadCodecByte) {
  std::string b = SampleBytes<LookupResponse>();
  b[kBody + 4 + 1] = 4;  // entry 0 codec
  ExpectInvalid<LookupResponse>(b, "entry 0: codec byte 4");
  b = SampleBytes<GetResponse>();
  b[kGetResponseEntries + 20] = 0x7f;
  ExpectInvalid<GetResponse>(b, "codec byte 127");
  b = SampleBytes<ReserveRequest>();
  b[kBody + 4 + kReserveEntry + 48] = 9;  // entry 1 codec
  ExpectInvalid<ReserveRequest>(b, "entry 1: codec byte 9");

  LookupResponse lookup = Sample<LookupResponse>();
  lookup.entries[0].codec = static_cast<CodecId>(4);
  ExpectEncodeRefused(lookup, "unknown codec");
  GetResponse get = Sample<GetResponse>();
  get.entries[0].codec = static_cast<CodecId>(200);
  ExpectEncodeRefused(get, "unknown codec");
  ReserveRequest reserve = Sample<ReserveRequest>();
  reserve.entries[1].codec = static_cast<CodecId>(4);
  ExpectEncodeRefused(reserve, "unknown codec");
}

TEST(FrameFields, NonBooleanBool) {
  auto check = [](auto type_tag, size_t offset, std::string_view field) {
    using T = decltype(type_tag);
    SCOPED_TRACE(std::string(FrameTypeName(T::kType)));
    std::string b = SampleBytes<T>();
    b.at(offset) = 2;
    ExpectInvalid<T>(b, absl::StrCat(std::string(field), " is 2, not a boolean"));
  };
  check(LookupResponse{}, kBody + 4, "held");
  check(GetRequest{}, kBody + 4, "has_min_version");
  check(GetRequest{}, kBody + 5, "device_ok");
  check(ReserveRequest{}, kBody + 4 + 49, "mutable");
  check(ReserveRequest{}, kBody + 4 + 50, "has_version");
  check(ReserveResponse{}, kReserveResponseEntries + 4, "already_present");
  check(CommitRequest{}, kBody + 4, "no_fanout");
  check(CommitRequest{}, kBody + 5, "want_version_tags");
  check(ErrorResponse{}, kBody + 4, "wrong_owner");
}

TEST(FrameFields, NonzeroReserved) {
  auto check = [](auto type_tag, size_t offset) {
    using T = decltype(type_tag);
    SCOPED_TRACE(absl::StrCat(std::string(FrameTypeName(T::kType)), " at ", offset));
    std::string b = SampleBytes<T>();
    b.at(offset) = 1;
    ExpectInvalid<T>(b, "reserved bytes");
  };
  for (size_t i : {6, 7}) check(LookupResponse{}, kBody + i);
  for (size_t i : {6, 7}) check(GetRequest{}, kBody + i);  // 5: device_ok
  for (size_t i : {21, 22, 23}) check(GetResponse{}, kGetResponseEntries + i);
  check(ReserveRequest{}, kBody + 4 + 51);
  for (size_t i : {5, 6, 7}) check(ReserveResponse{}, kReserveResponseEntries + i);
  for (size_t i : {6, 7}) check(CommitRequest{}, kBody + i);
  for (size_t i : {4, 5, 6, 7}) check(CommitResponse{}, kBody + 4 + i);
  for (size_t i : {5, 6, 7}) check(ErrorResponse{}, kBody + i);
  for (size_t i : {1, 2, 3}) check(HelloRequest{}, kBody + i);
  for (size_t i : {12, 13, 14, 15}) check(ReadRequest{}, kBody + i);
  for (size_t i : {4, 5, 6, 7}) check(ReadResponse{}, kBody + i);
  for (size_t i : {4, 5, 6, 7}) check(WriteRequest{}, kBody + i);
}

TEST(FrameFields, StatusCodeOutOfRange) {
  auto check = [](auto type_tag, size_t offset) {
    using T = decltype(type_tag);
    SCOPED_TRACE(std::string(FrameTypeName(T::kType)));
    std::string b = SampleBytes<T>();
    Patch<uint32_t>(b, offset, 17);
    ExpectInvalid<T>(b, "status code 17");
    Patch<uint32_t>(b, offset, 0x80000000);
    ExpectInvalid<T>(b, "status code");
  };
  check(GetResponse{}, kGetResponseEntries + kGetEntry);  // entry 1 (NOT_FOUND)
  check(ReserveResponse{}, kReserveResponseEntries + 2 * kReserveResult);
  check(CommitResponse{}, kBody + 4 + kCommitResult);
  check(RemoveResponse{}, kBody + 4 + 4);
  check(ErrorResponse{}, kBody);
  std::string b = SampleBytes<ErrorResponse>();
  Patch<uint32_t>(b, kBody, 0);  // an error response cannot carry OK
  ExpectInvalid<ErrorResponse>(b, "status code 0");

  const auto bad = static_cast<absl::StatusCode>(17);
  RemoveResponse remove = Sample<RemoveResponse>();
  remove.codes[2] = bad;
  ExpectEncodeRefused(remove, "status code 17");
  GetResponse get = Sample<GetResponse>();
  get.entries[1].code = bad;
  ExpectEncodeRefused(get, "status code 17");
  ReserveResponse reserve = Sample<ReserveResponse>();
  reserve.results[2].code = bad;
  ExpectEncodeRefused(reserve, "status code 17");
  CommitResponse commit = Sample<CommitResponse>();
  commit.results[1].code = bad;
  ExpectEncodeRefused(commit, "status code 17");
  ErrorResponse error = Sample<ErrorResponse>();
  error.code = absl::StatusCode::kOk;
  ExpectEncodeRefused(error, "status code 0");
}

TEST(FrameFields, DescriptorIndexOutOfRange) {
  std::string b = SampleBytes<GetResponse>();
  Patch<uint32_t>(b, kGetResponseEntries + 4, 2);  // entry 0 names descriptor 2 of 2
  ExpectInvalid<GetResponse>(b, "descriptor index 2 out of range");
  b = SampleBytes<ReserveResponse>();
  Patch<uint32_t>(b, kReserveResponseEntries + 40, 7);  // entry 0's location
  ExpectInvalid<ReserveResponse>(b, "descriptor index 7 out of range");

  GetResponse get = Sample<GetResponse>();
  get.entries[2].location.descriptor_index = 2;
  ExpectEncodeRefused(get, "descriptor index 2 out of range (2 descriptors)");
  // One descriptor left: entry 0's index 1 is past it. (With none at all the
  // no-descriptor rule applies instead: NoDescriptorLocations below.)
  ReserveResponse reserve = Sample<ReserveResponse>();
  reserve.descriptors.resize(1);
  ExpectEncodeRefused(reserve, "descriptor index 1 out of range (1 descriptors)");
  get = Sample<GetResponse>();
  get.descriptors.resize(1);
  ExpectEncodeRefused(get, "entry 2: descriptor index 1 out of range (1 descriptors)");
}

// A response without descriptors (a tenant's: its bytes move through the
// agent in Read/Write frames) carries each OK location as {0, 0, size > 0}.
TEST(FrameFields, NoDescriptorLocations) {
  const std::string kRule = "a location without descriptors must be {0, 0, size}";
  GetResponse get = Sample<GetResponse>();
  get.descriptors.clear();
  get.entries[0].location = {.descriptor_index = 0, .offset = 0, .size = 8192};
  get.entries[2].location = {.descriptor_index = 0, .offset = 0, .size = 100};
  ReserveResponse reserve = Sample<ReserveResponse>();
  reserve.descriptors.clear();
  reserve.results[0].location = {.descriptor_index = 0, .offset = 0, .size = 65536};

  // Accepted and round-tripped; the error entries keep their zero locations.
  const std::string get_bytes = Encoded(get);
  auto get_back = DecodeExact<GetResponse>(get_bytes);
  ASSERT_TRUE(get_back.ok()) << get_back.status();
  EXPECT_TRUE(*get_back == get);
  EXPECT_TRUE(get_back->descriptors.empty());
  EXPECT_EQ(Encoded(*get_back), get_bytes);
  const std::string reserve_bytes = Encoded(reserve);
  auto reserve_back = DecodeExact<ReserveResponse>(reserve_bytes);
  ASSERT_TRUE(reserve_back.ok()) << reserve_back.status();
  EXPECT_TRUE(*reserve_back == reserve);
  EXPECT_EQ(Encoded(*reserve_back), reserve_bytes);
  // The largest size a location can carry is fine: there is no region to fit.
  GetResponse big = get;
  big.entries[2].location.size = ~0u;
  EXPECT_TRUE(DecodeExact<GetResponse>(Encoded(big)).ok());

  // Refused: a non-zero offset, a non-zero index, a zero size; Encode and
  // Decode alike. Location on the wire: u32 index | u32 size | u64 offset.
  const std::vector<std::pair<BlockLocation, std::string_view>> bad = {
      {{.descriptor_index = 0, .offset = 1, .size = 100}, "offset"},
      {{.descriptor_index = 0, .offset = uint64_t{1} << 40, .size = 100}, "high offset"},
      {{.descriptor_index = 1, .offset = 0, .size = 100}, "index"},
      {{.descriptor_index = 0, .offset = 0, .size = 0}, "size"}};
  for (const auto& [loc, what] : bad) {
    SCOPED_TRACE(what);
    GetResponse g = get;
    g.entries[2].location = loc;
    ExpectEncodeRefused(g, absl::StrCat("GetResponse: entry 2: ", kRule));
    ReserveResponse r = reserve;
    r.results[0].location = loc;
    ExpectEncodeRefused(r, absl::StrCat("ReserveResponse: entry 0: ", kRule));

    std::string b = get_bytes;
    const size_t get_loc = kGetResponseEntries + 2 * kGetEntry + 4;
    Patch<uint32_t>(b, get_loc, loc.descriptor_index);
    Patch<uint32_t>(b, get_loc + 4, loc.size);
    Patch<uint64_t>(b, get_loc + 8, loc.offset);
    ExpectInvalid<GetResponse>(b, absl::StrCat("GetResponse: entry 2: ", kRule));
    b = reserve_bytes;
    const size_t reserve_loc = kReserveResponseEntries + 40;
    Patch<uint32_t>(b, reserve_loc, loc.descriptor_index);
    Patch<uint32_t>(b, reserve_loc + 4, loc.size);
    Patch<uint64_t>(b, reserve_loc + 8, loc.offset);
    ExpectInvalid<ReserveResponse>(b, absl::StrCat("ReserveResponse: entry 0: ", kRule));
  }
}

TEST(FrameFields, LocationOutsideDescriptor) {
  // GetResponse entry 2: descriptor 1 (64 MiB), the last 100 bytes.
  std::string b = SampleBytes<GetResponse>();
  const size_t entry2 = kGetResponseEntries + 2 * kGetEntry;
  Patch<uint32_t>(b, entry2 + 8, 101);  // size: one byte past the end
  ExpectInvalid<GetResponse>(b, "outside descriptor 1");
  Patch<uint32_t>(b, entry2 + 8, 100);
  Patch<uint64_t>(b, entry2 + 12, ~uint64_t{0});  // offset + size would wrap
  ExpectInvalid<GetResponse>(b, "outside descriptor 1");
  Patch<uint64_t>(b, entry2 + 12, 0);
  Patch<uint32_t>(b, entry2 + 8, 0);
  ExpectInvalid<GetResponse>(b, "size 0");

  b = SampleBytes<ReserveResponse>();
  Patch<uint64_t>(b, kReserveResponseEntries + 48, (64 << 20) - 65535);  // entry 0 offset
  ExpectInvalid<ReserveResponse>(b, "outside descriptor 1");

  GetResponse get = Sample<GetResponse>();
  get.entries[0].location.offset = (1 << 20) - 8191;
  ExpectEncodeRefused(get, "outside descriptor 0");
  ReserveResponse reserve = Sample<ReserveResponse>();
  reserve.results[0].location.size = 0;
  ExpectEncodeRefused(reserve, "size 0");
}

TEST(FrameFields, DescriptorsMustParseAndBeCanonical) {
  // The first descriptor's bytes start after its u32 length.
  std::string b = SampleBytes<GetResponse>();
  const size_t first = kGetResponseEntries + 3 * kGetEntry + 4;
  b.at(first + 30) ^= 1;  // inside the size: the checksum no longer matches
  ExpectInvalid<GetResponse>(b, "descriptor 0");
  b = SampleBytes<ReserveResponse>();
  Patch<uint32_t>(b, kReserveResponseEntries + 3 * kReserveResult, 3);  // descriptor 0 length
  ExpectInvalid<ReserveResponse>(b, "descriptor 0");

  // Encode refuses a descriptor that would not parse (size 0).
  GetResponse get = Sample<GetResponse>();
  get.descriptors.push_back(RemoteDescriptor{.region_id = 1, .size = 0});
  ExpectEncodeRefused(get, "descriptor 2");
}

TEST(FrameFields, FieldsThatMustBeZeroWhenAbsent) {
  // GetRequest: a min_version without has_min_version.
  GetRequest get = Sample<GetRequest>();
  get.has_min_version = false;
  ExpectEncodeRefused(get, "min_version");
  std::string b = SampleBytes<GetRequest>();
  b[kBody + 4] = 0;
  ExpectInvalid<GetRequest>(b, "set without has_min_version");

  // ReserveRequest: a version without has_version.
  ReserveRequest reserve = Sample<ReserveRequest>();
  reserve.entries[1].has_version = false;
  ExpectEncodeRefused(reserve, "version or its tag set without has_version");
  b = SampleBytes<ReserveRequest>();
  b[kBody + 4 + kReserveEntry + 50] = 0;
  ExpectInvalid<ReserveRequest>(b, "entry 1: version 6.1 or its tag set without has_version");

  // GetResponse: an error entry with a location, version or codec.
  GetResponse get_response = Sample<GetResponse>();
  get_response.entries[1].version = {1, 1};
  ExpectEncodeRefused(get_response, "error entry");
  b = SampleBytes<GetResponse>();
  b[kGetResponseEntries + kGetEntry + 20] = 1;  // entry 1 (NOT_FOUND) codec
  ExpectInvalid<GetResponse>(b, "entry 1: error entry");

  // ReserveResponse: each of the three shapes, mixed.
  ReserveResponse rr = Sample<ReserveResponse>();
  rr.results[2].reservation_id = 5;
  ExpectEncodeRefused(rr, "error entry carries a result");
  rr = Sample<ReserveResponse>();
  rr.results[1].reservation_id = 5;
  ExpectEncodeRefused(rr, "already_present with a reservation");
  rr = Sample<ReserveResponse>();
  rr.results[0].version = {1, 1};
  ExpectEncodeRefused(rr, "reservation carries a version");
  b = SampleBytes<ReserveResponse>();
  b[kReserveResponseEntries + 2 * kReserveResult + 4] = 1;  // error entry marked already_present
  ExpectInvalid<ReserveResponse>(b, "entry 2: error entry carries a result");
  b = SampleBytes<ReserveResponse>();
  // already_present with a reservation id
  Patch<uint64_t>(b, kReserveResponseEntries + kReserveResult + 32, 9);
  ExpectInvalid<ReserveResponse>(b, "entry 1: already_present with a reservation");

  // CommitResponse: an error with a version.
  CommitResponse commit = Sample<CommitResponse>();
  commit.results[1].version = {1, 0};
  ExpectEncodeRefused(commit, "error entry carries a version");
  b = SampleBytes<CommitResponse>();
  b[kBody + 4 + kCommitResult + 8] = 1;
  ExpectInvalid<CommitResponse>(b, "entry 1: error entry carries a version");

  // ErrorResponse: wrong_owner only with FAILED_PRECONDITION.
  ErrorResponse error = Sample<ErrorResponse>();
  error.code = absl::StatusCode::kNotFound;
  ExpectEncodeRefused(error, "wrong_owner");
  b = SampleBytes<ErrorResponse>();
  Patch<uint32_t>(b, kBody, static_cast<uint32_t>(absl::StatusCode::kNotFound));
  ExpectInvalid<ErrorResponse>(b, "wrong_owner with status code 5");
}

TEST(FrameFields, ErrorMessageLength) {
  std::string b = SampleBytes<ErrorResponse>();
  const size_t length_at = kBody + 16;  // after code, wrong_owner and epoch
  const uint32_t length = static_cast<uint32_t>(b.size() - (length_at + 4));
  Patch<uint32_t>(b, length_at, length + 1);
  ExpectInvalid<ErrorResponse>(b, "disagrees");
  Patch<uint32_t>(b, length_at, length - 1);
  ExpectInvalid<ErrorResponse>(b, "disagrees");
  Patch<uint32_t>(b, length_at, kMaxErrorMessageBytes + 1);
  ExpectInvalid<ErrorResponse>(b, "exceeds 4096");

  ErrorResponse max = Sample<ErrorResponse>();
  max.message.assign(kMaxErrorMessageBytes, 'm');
  auto back = ErrorResponse::Decode(Encoded(max));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->message, max.message);
}

// ---- Random mutation -------------------------------------------------------------------

// A deterministic, bounded stand-in for the fuzzer that always runs: mutants
// of every type's seed, decoded as every type from an exact-size buffer.
// Whatever decodes must re-encode to the same bytes.
TEST(FrameMutation, MutantsNeverCrashAndReencodeCanonically) {
  std::vector<std::string> seeds;
  testing::ForEachFrame([&]<typename T>() { seeds.push_back(SampleBytes<T>()); });
  std::mt19937_64 rng(20240611);
  auto uniform = [&](size_t n) { return static_cast<size_t>(rng() % n); };
  constexpr int kMutants = 20000;
  int decoded_mutants = 0;
  for (int i = 0; i < kMutants; ++i) {
    std::string b = seeds[uniform(seeds.size())];
    const int edits = 1 + static_cast<int>(uniform(4));
    for (int e = 0; e < edits; ++e) {
      switch (uniform(6)) {
        case 0:  // bit flip
          if (!b.empty()) b[uniform(b.size())] ^= static_cast<char>(1 << uniform(8));
          break;
        case 1:  // truncate
          b.resize(uniform(b.size() + 1));
          break;
        case 2:  // insert a byte
          b.insert(b.begin() + static_cast<std::ptrdiff_t>(uniform(b.size() + 1)),
                   static_cast<char>(rng()));
          break;
        case 3:  // erase a byte
          if (!b.empty()) b.erase(b.begin() + static_cast<std::ptrdiff_t>(uniform(b.size())));
          break;
        case 4:  // an interesting u32 somewhere
          if (b.size() >= 4) {
            static constexpr uint32_t kValues[] = {0, 1, 2, 16, 17, 255, 256, 0xffff, 0xffffffff};
            Patch<uint32_t>(b, uniform(b.size() - 3), kValues[uniform(std::size(kValues))]);
          }
          break;
        case 5:  // a random byte
          if (!b.empty()) b[uniform(b.size())] = static_cast<char>(rng());
          break;
      }
    }
    // Mostly keep the header's length honest, so mutants reach the bodies.
    if (b.size() >= kFrameHeaderBytes && uniform(4) != 0) FixBodyLength(b);

    std::unique_ptr<char[]> exact(new char[b.size() + 1]);
    std::copy(b.begin(), b.end(), exact.get());
    const std::string_view view(exact.get(), b.size());
    (void)DecodeHeader(view);
    bool any = false;
    testing::ForEachFrame([&]<typename T>() {
      bool decoded = false;
      ASSERT_TRUE(testing::DecodeReencodes<T>(view, &decoded))
          << FrameTypeName(T::kType) << " mutant " << i << ": " << Hex(b);
      any = any || decoded;
    });
    if (any) ++decoded_mutants;
  }
  // The loop must exercise the success path, not only the header checks.
  EXPECT_GT(decoded_mutants, kMutants / 20);
  std::cout << decoded_mutants << " of " << kMutants << " mutants decoded\n";
}

}  // namespace
}  // namespace kvf::protocol
