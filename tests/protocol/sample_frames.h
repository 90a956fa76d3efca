// Sample frames of every type and byte-surgery helpers shared by the frame
// codec's tests (frames_test.cc: round trips and golden bytes;
// frames_rules_test.cc: one test per validation rule). Test-only; internal
// linkage, each test file gets its own copy.
#ifndef KVF_TESTS_PROTOCOL_SAMPLE_FRAMES_H_
#define KVF_TESTS_PROTOCOL_SAMPLE_FRAMES_H_

#include "protocol/frames.h"

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <iterator>
#include <memory>
#include <random>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/kv_layout.h"
#include "common/namespace.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/protocol/all_frames.h"
#include "transport/descriptor.h"

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"

namespace kvf::protocol {
namespace {

using ::testing::HasSubstr;

// ---- Sample frames ------------------------------------------------------------

// Header field offsets the codec has no names for (kSessionOffset and
// kBodyBytesOffset are in frames.h), and where every body starts.
constexpr size_t kVersionOffset = 4;
constexpr size_t kTypeOffset = 6;
constexpr size_t kNamespaceIdOffset = 24;
constexpr size_t kFingerprintOffset = 32;
constexpr size_t kBody = kFrameHeaderBytes;

// Entry sizes of the bodies (docs/protocol.md), for offsets into batches.
constexpr size_t kLookupEntry = 24;
constexpr size_t kGetEntry = 40;
constexpr size_t kReserveEntry = 76;
constexpr size_t kReserveResult = 56;
constexpr size_t kCommitResult = 32;
constexpr size_t kReadRange = 12;
constexpr size_t kWriteRange = 16;
// Where the entries start: after the counts (and GetResponse's lease).
constexpr size_t kGetResponseEntries = kBody + 24;
constexpr size_t kReserveResponseEntries = kBody + 8;
// ReadRequest: after lease id, count and reserved; ReadResponse and
// WriteRequest: after count and reserved.
constexpr size_t kReadRequestRanges = kBody + 16;
constexpr size_t kReadResponseBytes = kBody + 8;
constexpr size_t kWriteRequestRanges = kBody + 8;

constexpr uint64_t kSampleSession = 0x5e55100000000abc;

FrameHeader Header() {
  return FrameHeader{.request_id = 0x0102030405060708,
                     .sender_epoch = 42,
                     .namespace_id = 0x1122334455667788,
                     .layout_fingerprint = 0x99aabbccddeeff00,
                     .session = kSampleSession};
}

RemoteDescriptor HostArena() {
  return RemoteDescriptor{.region_id = 0x5eed0001,
                          .address = 0x7f0000000000,
                          .size = 1 << 20,
                          .memory_type = MemoryType::kHost,
                          .rkey = std::string("\x01\x02\x00\x03rkey-host", 13)};
}
RemoteDescriptor CudaArena() {
  return RemoteDescriptor{.region_id = 0x5eed0002,
                          .address = 0x7e0000000000,
                          .size = 64 << 20,
                          .memory_type = MemoryType::kCuda,
                          .rkey = std::string(200, '\xab')};
}

NamespaceSpec Llama3Spec() {
  NamespaceSpec spec;
  spec.model_id = "meta-llama/Meta-Llama-3-8B";
  spec.layout = KvLayout{.num_layers = 32,
                         .num_kv_heads = 8,
                         .head_dim = 128,
                         .block_tokens = 16,
                         .dtype = DType::kFp16};
  spec.tp_rank = 1;
  spec.tp_size = 2;
  spec.tenant = "acme";
  spec.hash = HashAlgorithm::kSha256;
  spec.segment_blocks = 16;
  return spec;
}

KeyRef Ref(uint64_t i) {
  return KeyRef{.key = BlockKey{0xa000 + i, 0xb000 + i}, .placement_hash = 0xc000 + i};
}

// A HelloRequest opens the session: its header names no namespace, layout
// or session.
void Fill(HelloRequest* m) {
  m->header.namespace_id = 0;
  m->header.layout_fingerprint = 0;
  m->header.session = 0;
  m->role = PeerRole::kAgent;
  m->node_id = 7;
  m->credential = std::string("cluster-token:\x00\xff\x01secret", 23);
}
// The agent's answer echoes the request's header (session 0 there); the
// session travels in the body.
void Fill(HelloResponse* m) {
  m->header.namespace_id = 0;
  m->header.layout_fingerprint = 0;
  m->header.session = 0;
  m->session = kSampleSession;
  m->idle_ttl_us = 300'000'000;
}
void Fill(RegisterNamespaceRequest* m) {
  m->spec = Llama3Spec();
  m->header.namespace_id = m->spec.Id();
  m->header.layout_fingerprint = m->spec.layout.Fingerprint();
}
void Fill(LookupRequest* m) { m->keys = {Ref(1), Ref(2), Ref(3)}; }
void Fill(LookupResponse* m) {
  m->entries = {{.held = true, .codec = CodecId::kFp8E4m3, .size = 65536, .version = {3, 9}},
                {},
                {.held = true, .codec = CodecId::kInt4, .size = 1234, .version = {1, 1}}};
}
void Fill(GetRequest* m) {
  m->keys = {Ref(7), Ref(8)};
  m->has_min_version = true;
  m->min_version = {5, 77};
  m->device_ok = true;
}
void Fill(FetchRequest* m) {
  m->keys = {Ref(7), Ref(8), Ref(9)};
  m->tags = {0x1000, 0x1001, 0xfeedface00000002};
  m->has_min_version = true;
  m->min_version = {5, 77};
}
void Fill(GetResponse* m) {
  m->lease_id = 0xdeadbeef;
  m->lease_ttl_us = 10'000'000;
  m->entries = {{.code = absl::StatusCode::kOk,
                 .location = {.descriptor_index = 0, .offset = 4096, .size = 8192},
                 .version = {2, 3},
                 .codec = CodecId::kInt8},
                {.code = absl::StatusCode::kNotFound},
                {.code = absl::StatusCode::kOk,
                 .location = {.descriptor_index = 1, .offset = (64 << 20) - 100, .size = 100},
                 .version = {2, 4},
                 .codec = CodecId::kNone}};
  m->descriptors = {HostArena(), CudaArena()};
}
void Fill(ReleaseRequest* m) { m->lease_id = 0xfeedface12345678; }
void Fill(ReserveRequest* m) {
  m->entries = {{.key = {1, 2},
                 .placement_hash = 0x1234,
                 .parent = BlockKey::Root(),
                 .size = 65536,
                 .depth = 0,
                 .codec = CodecId::kNone},
                {.key = {3, 4},
                 .placement_hash = 0x5678,
                 .parent = {1, 2},
                 .size = 17000,
                 .depth = 1,
                 .codec = CodecId::kFp8E4m3,
                 .is_mutable = true,
                 .has_version = true,
                 .version = {6, 1},
                 .version_tag = 0x7a67'0000'0000'6001}};
}
void Fill(StoreRequest* m) {
  ReserveRequest reserve;
  Fill(&reserve);
  m->entries = reserve.entries;
  m->tags = {0x2000, 0x2001};
}
void Fill(ReserveResponse* m) {
  m->results = {{.code = absl::StatusCode::kOk,
                 .reservation_id = 991,
                 .location = {.descriptor_index = 1, .offset = 1 << 20, .size = 65536}},
                {.code = absl::StatusCode::kOk,
                 .already_present = true,
                 .version = {4, 2},
                 .version_tag = 0x7a67'0000'0000'4002},
                {.code = absl::StatusCode::kResourceExhausted}};
  m->descriptors = {HostArena(), CudaArena()};
}
void Fill(CommitRequest* m) {
  m->reservation_ids = {991, 992, 0xffffffffffffffff};
  m->no_fanout = true;
  m->want_version_tags = true;
}
void Fill(CommitResponse* m) {
  m->results = {{.code = absl::StatusCode::kOk, .version = {4, 3}, .version_tag = 0x7a67'0000'0000'4003},
                {.code = absl::StatusCode::kNotFound}};
}
void Fill(RemoveRequest* m) { m->keys = {Ref(11)}; }
void Fill(RemoveResponse* m) {
  m->codes = {absl::StatusCode::kOk, absl::StatusCode::kNotFound,
              absl::StatusCode::kFailedPrecondition};
}
void Fill(InvalidateRequest* m) {
  m->invalidations = {{.key = {9, 9}, .version = {7, 1}}, {.key = {8, 8}, .version = {7, 2}}};
}
// Bytes with every value a byte can have in them (zero, 0xff, ...), so a
// codec that stopped at a NUL or sign-extended a byte would show.
std::string PatternBytes(size_t n, uint8_t seed) {
  std::string b(n, '\0');
  for (size_t i = 0; i < n; ++i) b[i] = static_cast<char>(seed + 37 * i);
  return b;
}
// Three ranges of a lease: 100 bytes in all, the sample ReadResponse's.
void Fill(ReadRequest* m) {
  m->lease_id = 0xdeadbeef;
  m->ranges = {{.entry = 0, .offset = 0, .length = 64},
               {.entry = 2, .offset = 4096, .length = 32},
               {.entry = 1, .offset = 0x0a0b0c0d, .length = 4}};
}
void Fill(ReadResponse* m) { m->bytes = PatternBytes(100, 0); }
// Two ranges of two reservations and their 64 bytes.
void Fill(WriteRequest* m) {
  m->ranges = {{.reservation_id = 991, .offset = 0, .length = 48},
               {.reservation_id = 0xfedc'ba98'7654'3210, .offset = 65000, .length = 16}};
  m->bytes = PatternBytes(64, 0x8e);  // byte 10 is 0
}
void Fill(AckResponse*) {}
void Fill(ErrorResponse* m) {
  m->code = absl::StatusCode::kFailedPrecondition;
  m->wrong_owner = true;
  m->current_epoch = 43;
  m->message = "not the owner of 0xabc at epoch 43";
}

template <typename T>
T Sample() {
  T m;
  m.header = Header();
  Fill(&m);
  return m;
}

template <typename T>
std::string Encoded(const T& m) {
  auto bytes = m.Encode();
  EXPECT_TRUE(bytes.ok()) << bytes.status();
  return bytes.ok() ? *bytes : std::string();
}
template <typename T>
std::string SampleBytes() {
  return Encoded(Sample<T>());
}

// ---- Byte surgery ---------------------------------------------------------------

template <typename U>
void Patch(std::string& b, size_t offset, U v) {
  for (size_t i = 0; i < sizeof(U); ++i) b.at(offset + i) = static_cast<char>(v >> (8 * i));
}
void FixBodyLength(std::string& b) {
  Patch<uint32_t>(b, kBodyBytesOffset, static_cast<uint32_t>(b.size() - kFrameHeaderBytes));
}
std::string Hex(std::string_view b) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  for (char c : b) {
    out.push_back(kDigits[static_cast<uint8_t>(c) >> 4]);
    out.push_back(kDigits[static_cast<uint8_t>(c) & 15]);
  }
  return out;
}

// Decodes `bytes` from a heap buffer of exactly its size, so ASan sees any
// read past the end (a std::string has spare capacity).
template <typename T>
absl::StatusOr<T> DecodeExact(std::string_view bytes) {
  std::unique_ptr<char[]> buf(new char[bytes.size() + (bytes.empty() ? 1 : 0)]);
  std::copy(bytes.begin(), bytes.end(), buf.get());
  return T::Decode(std::string_view(buf.get(), bytes.size()));
}

// Decode must fail with `code` and a message containing `needle`.
template <typename T>
void ExpectRejected(std::string_view bytes, absl::StatusCode code, std::string_view needle) {
  auto m = DecodeExact<T>(bytes);
  ASSERT_FALSE(m.ok()) << "decoded: " << Hex(bytes);
  EXPECT_EQ(m.status().code(), code) << m.status();
  EXPECT_THAT(std::string(m.status().message()), HasSubstr(std::string(needle)));
}
template <typename T>
void ExpectInvalid(std::string_view bytes, std::string_view needle) {
  ExpectRejected<T>(bytes, absl::StatusCode::kInvalidArgument, needle);
}
template <typename T>
void ExpectEncodeRefused(const T& m, std::string_view needle) {
  auto bytes = m.Encode();
  ASSERT_FALSE(bytes.ok());
  EXPECT_EQ(bytes.status().code(), absl::StatusCode::kInvalidArgument) << bytes.status();
  EXPECT_THAT(std::string(bytes.status().message()), HasSubstr(std::string(needle)));
}

std::string CorpusPath(std::string_view type) {
  return std::string(KVF_PROTOCOL_CORPUS_DIR) + "/" + std::string(type) + ".bin";
}

}  // namespace
}  // namespace kvf::protocol

#pragma GCC diagnostic pop

#endif  // KVF_TESTS_PROTOCOL_SAMPLE_FRAMES_H_
