// Conformance suite run against every CPU codec, plus per-codec format checks.
#include "kernels/codec.h"

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/internal/codec_format.h"
#include "kernels/internal/codec_math.h"
#include "tests/kernels/codec_test_util.h"

namespace kvf {
namespace {

using ::kvf::testing::DecodeBlock;
using ::kvf::testing::EncodeBlock;
using ::kvf::testing::FromBlock;
using ::kvf::testing::MakeLayout;
using ::kvf::testing::SyntheticKv;
using ::kvf::testing::ToBlock;

TEST(CodecNames, ParseAndNameRoundTrip) {
  for (CodecId id : testing::kAllCodecs) {
    auto parsed = ParseCodec(CodecName(id));
    ASSERT_TRUE(parsed.ok()) << parsed.status();
    EXPECT_EQ(*parsed, id);
    auto wire = CodecFromWire(static_cast<uint8_t>(id));
    ASSERT_TRUE(wire.ok());
    EXPECT_EQ(*wire, id);
    EXPECT_EQ(CpuCodec(id).id(), id);
  }
  EXPECT_EQ(*ParseCodec("fp8"), CodecId::kFp8E4m3);
  EXPECT_EQ(ParseCodec("int2").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(CodecFromWire(4).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(CodecFromWire(255).status().code(), absl::StatusCode::kInvalidArgument);
}

struct Case {
  CodecId codec;
  DType dtype;
};

std::string CaseName(const ::testing::TestParamInfo<Case>& info) {
  return std::string(CodecName(info.param.codec)) + "_" + std::string(DTypeName(info.param.dtype));
}

std::vector<Case> AllCases() {
  std::vector<Case> cases;
  for (CodecId c : testing::kAllCodecs) {
    for (DType d : testing::kAllDTypes) cases.push_back({c, d});
  }
  return cases;
}

class CodecConformance : public ::testing::TestWithParam<Case> {
 protected:
  const Codec& codec() const { return CpuCodec(GetParam().codec); }
  DType dtype() const { return GetParam().dtype; }
};

// Worst-case elementwise error bound relative to the block's absmax: loose
// enough for every codec, tight enough to catch a wrong index or scale.
double Tolerance(CodecId id) {
  switch (id) {
    case CodecId::kNone: return 0.0;
    case CodecId::kFp8E4m3: return 1.0 / 16;  // half an ulp of a 3-bit mantissa
    case CodecId::kInt8: return 1.0 / 127;
    case CodecId::kInt4: return 0.25;
  }
  return 0;
}

// Odd sizes: T=7 and D=40 are not multiples of the int4 group of 32, so the
// last group of every row is short; H=3 and L=2 catch index mix-ups.
TEST_P(CodecConformance, RoundTripsOddSizes) {
  for (const KvLayout& l :
       {MakeLayout(2, 3, 40, 7, dtype()), MakeLayout(1, 1, 3, 1, dtype()),
        MakeLayout(2, 2, 33, 45, dtype()), MakeLayout(1, 2, 64, 64, dtype())}) {
    SCOPED_TRACE(l.DebugString());
    const std::vector<std::byte> block = ToBlock(SyntheticKv(l, 42, 1), dtype());
    const std::vector<float> in = FromBlock(block, dtype());
    auto enc = EncodeBlock(codec(), l, block);
    ASSERT_TRUE(enc.ok()) << enc.status();
    EXPECT_EQ(enc->size(), codec().EncodedSize(l));
    auto dec = DecodeBlock(codec(), l, *enc);
    ASSERT_TRUE(dec.ok()) << dec.status();
    const std::vector<float> out = FromBlock(*dec, dtype());
    ASSERT_EQ(out.size(), in.size());
    // Bound the error per (layer, K|V) section by that section's absmax.
    const size_t sec = size_t{l.block_tokens} * l.num_kv_heads * l.head_dim;
    for (size_t s = 0; s < 2 * l.num_layers; ++s) {
      double amax = 0;
      for (size_t i = s * sec; i < (s + 1) * sec; ++i) amax = std::max(amax, double{std::fabs(in[i])});
      // 2^-8 slack for rounding the decoded value back into a 16-bit dtype.
      const double tol = amax * (Tolerance(GetParam().codec) + 1.0 / 256) + 1e-6;
      for (size_t i = s * sec; i < (s + 1) * sec; ++i) {
        ASSERT_TRUE(std::isfinite(out[i])) << i;
        ASSERT_LE(std::fabs(out[i] - in[i]), GetParam().codec == CodecId::kNone ? 0 : tol)
            << "element " << i << " in " << in[i] << " out " << out[i];
      }
    }
  }
}

TEST_P(CodecConformance, ZeroAndConstantBlocksDecodeWithoutNan) {
  const KvLayout l = MakeLayout(2, 2, 40, 7, dtype());
  for (float value : {0.0f, 1.5f, -3.0f}) {
    const std::vector<std::byte> block =
        ToBlock(std::vector<float>(l.ElementsPerBlock(), value), dtype());
    auto enc = EncodeBlock(codec(), l, block);
    ASSERT_TRUE(enc.ok()) << enc.status();
    auto dec = DecodeBlock(codec(), l, *enc);
    ASSERT_TRUE(dec.ok()) << dec.status();
    for (float f : FromBlock(*dec, dtype())) {
      ASSERT_FALSE(std::isnan(f));
      if (value == 0.0f) {
        ASSERT_EQ(f, 0.0f);
      } else {
        ASSERT_NEAR(f, value, std::fabs(value) * 0.07);
      }
    }
  }
}

TEST_P(CodecConformance, RejectsWrongSizesAndInvalidLayouts) {
  const KvLayout l = MakeLayout(2, 2, 16, 4, dtype());
  std::vector<std::byte> block(l.BytesPerBlock());
  std::vector<std::byte> out(codec().EncodedSize(l));
  std::vector<std::byte> short_block(block.size() - 1);
  EXPECT_EQ(codec().Encode(l, short_block, absl::MakeSpan(out)).code(),
            absl::StatusCode::kInvalidArgument);
  std::vector<std::byte> small_out(out.size() - 1);
  EXPECT_EQ(codec().Encode(l, block, absl::MakeSpan(small_out)).code(),
            absl::StatusCode::kInvalidArgument);
  KvLayout bad = l;
  bad.head_dim = 0;
  EXPECT_EQ(codec().Encode(bad, block, absl::MakeSpan(out)).code(),
            absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE(codec().Encode(l, block, absl::MakeSpan(out)).ok());
  std::vector<std::byte> small_block(block.size() - 1);
  EXPECT_EQ(codec().Decode(l, out, absl::MakeSpan(small_block)).code(),
            absl::StatusCode::kInvalidArgument);
  std::vector<std::byte> truncated(out.begin(), out.end() - 1);
  EXPECT_EQ(codec().Decode(l, truncated, absl::MakeSpan(block)).code(),
            absl::StatusCode::kDataLoss);
  EXPECT_EQ(codec().Decode(l, {}, absl::MakeSpan(block)).code(), absl::StatusCode::kDataLoss);
}

TEST_P(CodecConformance, RejectsBlobOfAnotherLayout) {
  if (GetParam().codec == CodecId::kNone) GTEST_SKIP() << "none stores raw bytes, no header";
  const KvLayout l = MakeLayout(2, 2, 32, 8, dtype());
  auto enc = EncodeBlock(codec(), l, ToBlock(SyntheticKv(l, 1), dtype()));
  ASSERT_TRUE(enc.ok());
  // Another layout of the same element count, and the same shape in another dtype.
  KvLayout other = MakeLayout(2, 2, 16, 16, dtype());
  std::vector<std::byte> out(other.BytesPerBlock());
  absl::Status s = codec().Decode(other, *enc, absl::MakeSpan(out));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_NE(s.message().find("layout"), std::string::npos) << s;
  KvLayout other_dtype = l;
  other_dtype.dtype = dtype() == DType::kFp32 ? DType::kFp16 : DType::kFp32;
  std::vector<std::byte> out2(other_dtype.BytesPerBlock());
  EXPECT_EQ(codec().Decode(other_dtype, *enc, absl::MakeSpan(out2)).code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_P(CodecConformance, RejectsBlobOfAnotherCodec) {
  if (GetParam().codec == CodecId::kNone) GTEST_SKIP() << "none stores raw bytes, no header";
  const KvLayout l = MakeLayout(2, 2, 32, 8, dtype());
  const std::vector<std::byte> block = ToBlock(SyntheticKv(l, 1), dtype());
  for (CodecId other : {CodecId::kFp8E4m3, CodecId::kInt8, CodecId::kInt4}) {
    if (other == GetParam().codec) continue;
    auto enc = EncodeBlock(CpuCodec(other), l, block);
    ASSERT_TRUE(enc.ok());
    enc->resize(std::max(enc->size(), codec().EncodedSize(l)));
    std::vector<std::byte> out(l.BytesPerBlock());
    absl::Status s = codec().Decode(l, *enc, absl::MakeSpan(out));
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  }
}

TEST_P(CodecConformance, RejectsInfiniteInput) {
  if (GetParam().codec == CodecId::kNone) GTEST_SKIP() << "none copies bytes as they are";
  const KvLayout l = MakeLayout(1, 2, 32, 4, dtype());
  std::vector<float> v(l.ElementsPerBlock(), 1.0f);
  v[37] = INFINITY;
  std::vector<std::byte> out(codec().EncodedSize(l));
  EXPECT_EQ(codec().Encode(l, ToBlock(v, dtype()), absl::MakeSpan(out)).code(),
            absl::StatusCode::kInvalidArgument);
}

INSTANTIATE_TEST_SUITE_P(AllCodecsAllDTypes, CodecConformance, ::testing::ValuesIn(AllCases()),
                         CaseName);

TEST(NoneCodec, StoresRawBytesExactly) {
  const KvLayout l = MakeLayout(3, 2, 40, 7, DType::kBf16);
  std::vector<std::byte> block(l.BytesPerBlock());
  for (size_t i = 0; i < block.size(); ++i) block[i] = static_cast<std::byte>(i * 131 + 7);
  const Codec& none = CpuCodec(CodecId::kNone);
  EXPECT_EQ(none.EncodedSize(l), l.BytesPerBlock());
  auto enc = EncodeBlock(none, l, block);
  ASSERT_TRUE(enc.ok());
  EXPECT_EQ(*enc, block);
  auto dec = DecodeBlock(none, l, *enc);
  ASSERT_TRUE(dec.ok());
  EXPECT_EQ(*dec, block);
}

TEST(Fp8Codec, ExactlyRepresentableValuesRoundTripExactly) {
  // Every (layer, K|V, head) holds +-448, so its scale is exactly 1 and every
  // E4M3 value encodes to itself.
  const KvLayout l = MakeLayout(2, 2, 32, 8, DType::kFp32);
  std::vector<float> v(l.ElementsPerBlock());
  for (size_t i = 0; i < v.size(); ++i) {
    const uint8_t code = static_cast<uint8_t>(i % 255);
    v[i] = (code & 0x7f) == 0x7f ? 0.0f : internal::E4m3ToFloat(code);
    if (i % 32 == 0) v[i] = (i / 32) % 2 ? 448.0f : -448.0f;
  }
  const std::vector<std::byte> block = ToBlock(v, DType::kFp32);
  auto enc = EncodeBlock(CpuCodec(CodecId::kFp8E4m3), l, block);
  ASSERT_TRUE(enc.ok());
  auto dec = DecodeBlock(CpuCodec(CodecId::kFp8E4m3), l, *enc);
  ASSERT_TRUE(dec.ok());
  EXPECT_EQ(*dec, block);
}

TEST(Fp8Codec, SaturatesAtTheHeadMaximum) {
  const KvLayout l = MakeLayout(1, 1, 4, 1, DType::kFp32);
  const std::vector<float> v = {448.0f, -448.0f, 0.0f, 224.0f};  // K
  std::vector<float> all = v;
  all.insert(all.end(), {1.0f, 2.0f, 3.0f, 4.0f});  // V
  auto enc = EncodeBlock(CpuCodec(CodecId::kFp8E4m3), l, ToBlock(all, DType::kFp32));
  ASSERT_TRUE(enc.ok());
  const uint8_t* payload =
      reinterpret_cast<const uint8_t*>(enc->data()) + internal::kBlobHeaderSize + 2 * 4;
  EXPECT_EQ(payload[0], 0x7e);
  EXPECT_EQ(payload[1], 0xfe);
  EXPECT_EQ(payload[7], 0x7e);  // 4.0 is V's absmax: saturates to the 448 code
}

// Stored size vs the fp16 original, header and scales included.
double Ratio(CodecId id, const KvLayout& fp16_layout) {
  return static_cast<double>(fp16_layout.BytesPerBlock()) /
         static_cast<double>(CpuCodec(id).EncodedSize(fp16_layout));
}

TEST(CodecSize, MeetsCompressionTargetsForRealisticLayouts) {
  // Llama-3-8B (L=32, H=8, D=128) at vLLM's T=16 and larger blocks; Llama-3-70B
  // (L=80, H=8, D=128); Mistral-7B-like.
  for (const KvLayout& l : {MakeLayout(32, 8, 128, 16), MakeLayout(32, 8, 128, 32),
                            MakeLayout(32, 8, 128, 256), MakeLayout(80, 8, 128, 16),
                            MakeLayout(32, 8, 128, 64)}) {
    SCOPED_TRACE(l.DebugString());
    EXPECT_GE(Ratio(CodecId::kFp8E4m3, l), 1.9);
    EXPECT_GE(Ratio(CodecId::kInt8, l), 1.9);
    EXPECT_GE(Ratio(CodecId::kInt4, l), 3.5);
    EXPECT_EQ(Ratio(CodecId::kNone, l), 1.0);
    std::printf("%-26s fp8 %.3fx  int8 %.3fx  int4 %.3fx\n", l.DebugString().c_str(),
                Ratio(CodecId::kFp8E4m3, l), Ratio(CodecId::kInt8, l),
                Ratio(CodecId::kInt4, l));
  }
}

TEST(CodecFormat, HeaderRecordsCodecDtypeAndLayout) {
  const KvLayout l = MakeLayout(2, 3, 40, 7, DType::kBf16);
  auto enc = EncodeBlock(CpuCodec(CodecId::kInt4), l, ToBlock(SyntheticKv(l, 5), DType::kBf16));
  ASSERT_TRUE(enc.ok());
  internal::BlobHeader h;
  std::memcpy(&h, enc->data(), sizeof(h));
  EXPECT_EQ(h.magic, internal::kBlobMagic);
  EXPECT_EQ(std::memcmp(enc->data(), "KVFC", 4), 0);
  EXPECT_EQ(h.version, internal::kBlobVersion1);  // int4 has one version
  EXPECT_EQ(h.codec, static_cast<uint8_t>(CodecId::kInt4));
  EXPECT_EQ(h.dtype, static_cast<uint8_t>(DType::kBf16));
  EXPECT_EQ(h.layout_fingerprint, l.Fingerprint());
  EXPECT_EQ(internal::kBlobHeaderSize + h.scales_bytes + h.meta_bytes + h.payload_bytes,
            enc->size());
}

}  // namespace
}  // namespace kvf
