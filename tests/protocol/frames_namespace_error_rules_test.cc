// Tests of the frame codec's validation (protocol/frames.h), continued: the
// RegisterNamespace frame's rules and the ErrorResponse helpers.
#include "tests/protocol/sample_frames.h"

namespace kvf::protocol {
namespace {

// ---- RegisterNamespace ------------------------------------------------------------------

TEST(RegisterNamespace, HeaderMustNameTheSpec) {
  RegisterNamespaceRequest m = Sample<RegisterNamespaceRequest>();
  m.header.namespace_id ^= 1;
  ExpectEncodeRefused(m, "namespace id");
  m = Sample<RegisterNamespaceRequest>();
  m.header.layout_fingerprint ^= 1;
  ExpectEncodeRefused(m, "layout fingerprint");

  std::string b = SampleBytes<RegisterNamespaceRequest>();
  b[kNamespaceIdOffset] ^= 1;
  ExpectInvalid<RegisterNamespaceRequest>(b, "namespace id");
  b = SampleBytes<RegisterNamespaceRequest>();
  b[kFingerprintOffset] ^= 1;
  ExpectInvalid<RegisterNamespaceRequest>(b, "layout fingerprint");
  // A field changed in the body no longer matches the header's id.
  b = SampleBytes<RegisterNamespaceRequest>();
  const size_t segment_blocks = b.size() - 4;
  Patch<uint32_t>(b, segment_blocks, 32);
  ExpectInvalid<RegisterNamespaceRequest>(b, "namespace id");
}

// Re-encodes a spec with its header fixed up, so only Validate can refuse it.
std::string RegisterBytes(const NamespaceSpec& spec) {
  RegisterNamespaceRequest m = Sample<RegisterNamespaceRequest>();
  m.spec = spec;
  m.header.namespace_id = spec.Id();
  m.header.layout_fingerprint = spec.layout.Fingerprint();
  return m.Encode().value_or("");
}

TEST(RegisterNamespace, SpecMustValidate) {
  auto refused = [](auto mutate, std::string_view needle) {
    RegisterNamespaceRequest m = Sample<RegisterNamespaceRequest>();
    mutate(m.spec);
    m.header.namespace_id = m.spec.Id();
    m.header.layout_fingerprint = m.spec.layout.Fingerprint();
    ExpectEncodeRefused(m, needle);
  };
  refused([](NamespaceSpec& s) { s.model_id.clear(); }, "model_id");
  refused([](NamespaceSpec& s) { s.model_id.assign(NamespaceSpec::kMaxStringLength + 1, 'm'); },
          "model_id");
  refused([](NamespaceSpec& s) { s.tenant.assign(NamespaceSpec::kMaxStringLength + 1, 't'); },
          "tenant");
  refused([](NamespaceSpec& s) { s.layout.num_layers = 0; }, "num_layers");
  refused([](NamespaceSpec& s) { s.tp_rank = 2; }, "tp_rank");
  refused([](NamespaceSpec& s) { s.segment_blocks = 0; }, "segment_blocks");
  refused([](NamespaceSpec& s) { s.layout.dtype = static_cast<DType>(3); }, "dtype");
  refused([](NamespaceSpec& s) { s.hash = static_cast<HashAlgorithm>(2); }, "hash");

  // The largest strings fit.
  NamespaceSpec big = Llama3Spec();
  big.model_id.assign(NamespaceSpec::kMaxStringLength, 'm');
  big.tenant.assign(NamespaceSpec::kMaxStringLength, 't');
  const std::string b = RegisterBytes(big);
  ASSERT_FALSE(b.empty());
  auto back = RegisterNamespaceRequest::Decode(b);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->spec.tenant, big.tenant);
}

TEST(RegisterNamespace, DecodeRefusesBadFields) {
  const std::string base = SampleBytes<RegisterNamespaceRequest>();
  const size_t model_len = Llama3Spec().model_id.size();
  const size_t layout = kBody + 4 + model_len;
  const size_t dtype = layout + 16;
  const size_t tp_rank = dtype + 1;
  const size_t hash = base.size() - 5;

  std::string b = base;
  b[dtype] = 3;
  ExpectInvalid<RegisterNamespaceRequest>(b, "dtype");
  b = base;
  b[hash] = 2;
  ExpectInvalid<RegisterNamespaceRequest>(b, "hash");
  b = base;
  Patch<uint32_t>(b, tp_rank, 2);  // == tp_size
  ExpectInvalid<RegisterNamespaceRequest>(b, "tp_rank");
  b = base;
  Patch<uint32_t>(b, layout, 0);
  ExpectInvalid<RegisterNamespaceRequest>(b, "num_layers");
  b = base;
  Patch<uint32_t>(b, kBody, NamespaceSpec::kMaxStringLength + 1);
  ExpectInvalid<RegisterNamespaceRequest>(b, "model_id length 257 exceeds 256");
  b = base;
  Patch<uint32_t>(b, kBody, static_cast<uint32_t>(model_len + 1));  // runs into the layout
  ExpectInvalid<RegisterNamespaceRequest>(b, "RegisterNamespaceRequest");
  b = base;
  Patch<uint32_t>(b, tp_rank + 8, NamespaceSpec::kMaxStringLength + 1);
  ExpectInvalid<RegisterNamespaceRequest>(b, "tenant length 257 exceeds 256");
  b = base;
  Patch<uint32_t>(b, tp_rank + 8, 0xffff);
  ExpectInvalid<RegisterNamespaceRequest>(b, "tenant");
}

// ---- ErrorResponse helpers ------------------------------------------------------------

TEST(ErrorResponseHelpers, FromStatusKeepsCodeAndMessage) {
  const auto e = ErrorResponse::FromStatus(Header(), absl::NotFoundError("no such block"), 77);
  EXPECT_EQ(e.header, Header());
  EXPECT_EQ(e.code, absl::StatusCode::kNotFound);
  EXPECT_FALSE(e.wrong_owner);
  EXPECT_EQ(e.current_epoch, 77u);
  EXPECT_EQ(e.message, "no such block");
  EXPECT_EQ(e.ToStatus(), absl::NotFoundError("no such block"));
  auto back = ErrorResponse::Decode(Encoded(e));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(*back, e);
}

TEST(ErrorResponseHelpers, FromStatusOfOkIsInternal) {
  const auto e = ErrorResponse::FromStatus(Header(), absl::OkStatus(), 1);
  EXPECT_EQ(e.code, absl::StatusCode::kInternal);
  EXPECT_FALSE(e.ToStatus().ok());
  EXPECT_TRUE(e.Encode().ok());
}

TEST(ErrorResponseHelpers, FromStatusCutsLongMessages) {
  const std::string long_message(kMaxErrorMessageBytes + 100, 'z');
  const auto e = ErrorResponse::FromStatus(Header(), absl::InternalError(long_message), 1);
  EXPECT_EQ(e.message.size(), kMaxErrorMessageBytes);
  EXPECT_TRUE(e.Encode().ok());
  const auto w = ErrorResponse::WrongOwner(Header(), 1, long_message);
  EXPECT_EQ(w.message.size(), kMaxErrorMessageBytes);
  EXPECT_TRUE(w.Encode().ok());
}

TEST(ErrorResponseHelpers, WrongOwner) {
  const auto e = ErrorResponse::WrongOwner(Header(), 99, "key 0xabc moved");
  EXPECT_EQ(e.code, absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(e.wrong_owner);
  EXPECT_EQ(e.current_epoch, 99u);
  const absl::Status s = e.ToStatus();
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(s.message()), HasSubstr("WRONG_OWNER"));
  EXPECT_THAT(std::string(s.message()), HasSubstr("99"));
  EXPECT_THAT(std::string(s.message()), HasSubstr("key 0xabc moved"));
  auto back = ErrorResponse::Decode(Encoded(e));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(*back, e);
}

TEST(ErrorResponseHelpers, ToStatusOfOkCodeIsInternal) {
  ErrorResponse e;
  e.code = absl::StatusCode::kOk;
  EXPECT_EQ(e.ToStatus().code(), absl::StatusCode::kInternal);
}

}  // namespace
}  // namespace kvf::protocol
