// Format version 2 of fp8_e4m3 and int8 (kernels/core/blob_format.h): K
// centred per channel. Which shapes get it, that it stays small enough, that
// version-1 blobs written before it still decode, and that corrupt channel
// parameters are refused.
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/codec.h"
#include "kernels/core/cpu_codec_ref.h"
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

uint16_t VersionOf(const std::vector<std::byte>& blob) { return kcore::BlobVersionOf(blob.data()); }

// The v1 blob of `block`, written as an encoder before version 2 did.
std::vector<std::byte> EncodeV1(CodecId id, const KvLayout& l, const std::vector<std::byte>& block) {
  std::vector<std::byte> out(internal::GeometryForVersion(id, internal::ShapeOf(l), 1).total());
  const kcore::Result r = kcore::CpuEncodeVersion(id, internal::ShapeOf(l), l.Fingerprint(), 1,
                                                  block.data(), out.data());
  EXPECT_TRUE(r.ok()) << r.message;
  return out;
}

double RelError(const std::vector<float>& ref, const std::vector<float>& got) {
  double num = 0, den = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    num += (got[i] - ref[i]) * (got[i] - ref[i]);
    den += ref[i] * ref[i];
  }
  return std::sqrt(num / den);
}

TEST(CodecFormatV2, ChosenWhereItStaysAtLeast1Point9xSmallerThanFp16) {
  // Llama-3-8B: fp8 from 32 tokens per block, int8 from 64; int4 never.
  struct Want {
    uint32_t tokens;
    uint16_t fp8, int8;
  };
  for (const Want w : {Want{16, 1, 1}, Want{32, 2, 1}, Want{64, 2, 2}, Want{256, 2, 2}}) {
    const KvLayout l = MakeLayout(32, 8, 128, w.tokens);
    SCOPED_TRACE(l.DebugString());
    EXPECT_EQ(internal::BlobVersionFor(CodecId::kFp8E4m3, l), w.fp8);
    EXPECT_EQ(internal::BlobVersionFor(CodecId::kInt8, l), w.int8);
    EXPECT_EQ(internal::BlobVersionFor(CodecId::kInt4, l), 1);
    EXPECT_EQ(internal::BlobVersionFor(CodecId::kNone, l), 1);
    for (CodecId id : {CodecId::kFp8E4m3, CodecId::kInt8}) {
      const double ratio = static_cast<double>(l.BytesPerBlock()) / CpuCodec(id).EncodedSize(l);
      EXPECT_GE(ratio, 1.9) << CodecName(id);
    }
  }
}

TEST(CodecFormatV2, EncodersWriteVersion2AndDecodeIt) {
  const KvLayout l = MakeLayout(2, 3, 40, 64, DType::kBf16);
  const std::vector<std::byte> block = ToBlock(SyntheticKv(l, 11), DType::kBf16);
  for (CodecId id : {CodecId::kFp8E4m3, CodecId::kInt8}) {
    SCOPED_TRACE(CodecName(id));
    auto enc = EncodeBlock(CpuCodec(id), l, block);
    ASSERT_TRUE(enc.ok()) << enc.status();
    EXPECT_EQ(VersionOf(*enc), 2);
    EXPECT_EQ(enc->size(), CpuCodec(id).EncodedSize(l));
    auto dec = DecodeBlock(CpuCodec(id), l, *enc);
    ASSERT_TRUE(dec.ok()) << dec.status();
    EXPECT_LT(RelError(FromBlock(block, l.dtype), FromBlock(*dec, l.dtype)), 0.05);
  }
}

TEST(CodecFormatV2, Version1BlobsStillDecode) {
  // A blob written before version 2 existed, of a shape that now gets v2:
  // both decoders (the wrapper and the core the device path checks with)
  // read it, and it decodes as version 1 did.
  const KvLayout l = MakeLayout(2, 4, 64, 64, DType::kFp16);
  const std::vector<std::byte> block = ToBlock(SyntheticKv(l, 3), DType::kFp16);
  const std::vector<float> original = FromBlock(block, l.dtype);
  for (CodecId id : {CodecId::kFp8E4m3, CodecId::kInt8}) {
    SCOPED_TRACE(CodecName(id));
    ASSERT_EQ(internal::BlobVersionFor(id, l), 2);
    const std::vector<std::byte> v1 = EncodeV1(id, l, block);
    EXPECT_EQ(VersionOf(v1), 1);
    EXPECT_NE(v1.size(), CpuCodec(id).EncodedSize(l));
    auto dec = DecodeBlock(CpuCodec(id), l, v1);
    ASSERT_TRUE(dec.ok()) << dec.status();
    const double v1_error = RelError(original, FromBlock(*dec, l.dtype));
    EXPECT_LT(v1_error, id == CodecId::kInt8 ? 0.03 : 0.08);

    const kcore::KvShape shape = internal::ShapeOf(l);
    ASSERT_TRUE(kcore::CheckBlobHeaderBytes(id, shape, l.Fingerprint(), v1.data(), v1.size()).ok());
    std::vector<std::byte> core(l.BytesPerBlock());
    ASSERT_TRUE(kcore::CpuDecode(id, shape, v1.data(), core.data()).ok());
    EXPECT_EQ(core, *dec);

    // Version 2 of the same block: int8's per-channel K scales make it more
    // exact; fp8's error is relative to each value either way.
    auto v2 = EncodeBlock(CpuCodec(id), l, block);
    ASSERT_TRUE(v2.ok());
    auto dec2 = DecodeBlock(CpuCodec(id), l, *v2);
    ASSERT_TRUE(dec2.ok());
    EXPECT_LT(RelError(original, FromBlock(*dec2, l.dtype)),
              id == CodecId::kInt8 ? v1_error / 2 : v1_error * 1.1);
  }
}

TEST(CodecFormatV2, Int4HasNoVersion2) {
  const KvLayout l = MakeLayout(1, 1, 32, 64);
  std::vector<std::byte> block(l.BytesPerBlock()), out(1 << 16);
  const kcore::Result r = kcore::CpuEncodeVersion(CodecId::kInt4, internal::ShapeOf(l),
                                                  l.Fingerprint(), 2, block.data(), out.data());
  EXPECT_EQ(r.code, kcore::ResultCode::kInvalidArgument);
}

TEST(CodecFormatV2, ConstantAndNanChannelsDecodeCloseToTheirValues) {
  // Channel 0 constant (centre = value rounded to bf16, tiny residual),
  // channel 1 all NaN (empty range: centre 0), channel 2 a large offset with
  // small variation (the case centring exists for).
  const KvLayout l = MakeLayout(1, 1, 128, 64, DType::kFp16);
  std::vector<float> v = SyntheticKv(l, 4);
  for (size_t t = 0; t < 64; ++t) {
    float* k = v.data() + t * 128;
    k[0] = 3.14159f;
    k[1] = std::numeric_limits<float>::quiet_NaN();
    k[2] = 1000.0f + 0.01f * static_cast<float>(t);
    k[3] = static_cast<float>(t) - 32.0f;
  }
  for (CodecId id : {CodecId::kFp8E4m3, CodecId::kInt8}) {
    SCOPED_TRACE(CodecName(id));
    ASSERT_EQ(internal::BlobVersionFor(id, l), 2);
    auto enc = EncodeBlock(CpuCodec(id), l, ToBlock(v, l.dtype));
    ASSERT_TRUE(enc.ok()) << enc.status();
    auto dec = DecodeBlock(CpuCodec(id), l, *enc);
    ASSERT_TRUE(dec.ok()) << dec.status();
    const std::vector<float> got = FromBlock(*dec, l.dtype);
    const std::vector<float> want = FromBlock(ToBlock(v, l.dtype), l.dtype);
    for (size_t t = 0; t < 64; ++t) {
      const float* k = got.data() + t * 128;
      const float* w = want.data() + t * 128;
      EXPECT_NEAR(k[0], w[0], 0.01f) << t;
      // fp8 keeps NaN; int8 has no NaN code (the channel's scale is 0).
      if (id == CodecId::kFp8E4m3) {
        EXPECT_TRUE(std::isnan(k[1])) << t;
      } else {
        EXPECT_EQ(k[1], 0.0f) << t;
      }
      EXPECT_NEAR(k[2], w[2], id == CodecId::kInt8 ? 0.01f : 0.05f) << t;
      EXPECT_NEAR(k[3], w[3], id == CodecId::kInt8 ? 0.2f : 2.0f) << t;
    }
  }
}

TEST(CodecFormatV2, InfiniteKValueIsRefused) {
  const KvLayout l = MakeLayout(1, 2, 8, 64, DType::kFp32);
  std::vector<float> v(l.ElementsPerBlock(), 1.0f);
  v[5 * 16 + 3] = -std::numeric_limits<float>::infinity();  // K, token 5
  for (CodecId id : {CodecId::kFp8E4m3, CodecId::kInt8}) {
    auto enc = EncodeBlock(CpuCodec(id), l, ToBlock(v, DType::kFp32));
    EXPECT_EQ(enc.status().code(), absl::StatusCode::kInvalidArgument) << CodecName(id);
  }
}

TEST(CodecFormatV2, CorruptChannelParametersAreDataLoss) {
  const KvLayout l = MakeLayout(2, 2, 64, 64, DType::kFp16);
  const std::vector<std::byte> block = ToBlock(SyntheticKv(l, 8), DType::kFp16);
  for (CodecId id : {CodecId::kFp8E4m3, CodecId::kInt8}) {
    SCOPED_TRACE(CodecName(id));
    ASSERT_EQ(internal::BlobVersionFor(id, l), 2);
    auto enc = EncodeBlock(CpuCodec(id), l, block);
    ASSERT_TRUE(enc.ok());
    const internal::BlobGeometry g = internal::GeometryFor(id, l);
    const size_t channels = 2 * 64;
    struct Bad {
      size_t index;    // bf16 slot in meta
      uint16_t value;  // infinity, NaN or a negative scale
    };
    std::vector<Bad> bad = {{0, 0x7f80}, {channels - 1, 0xffc0}};
    if (id == CodecId::kInt8) bad.push_back({2 * channels + channels + 4, 0xbf80});  // -1.0
    for (const Bad b : bad) {
      std::vector<std::byte> corrupt = *enc;
      std::memcpy(corrupt.data() + g.meta_offset() + 2 * b.index, &b.value, 2);
      auto dec = DecodeBlock(CpuCodec(id), l, corrupt);
      EXPECT_EQ(dec.status().code(), absl::StatusCode::kDataLoss) << b.index;
    }
  }
}

}  // namespace
}  // namespace kvf
