// GPU codecs (kernels/core/cuda_ops.h) against the CPU reference twins
// (kernels/core/cpu_codec_ref.h): blobs and decoded blocks must be equal byte
// for byte, on random inputs with outlier channels and on shapes that are not
// multiples of any tile (thread block, int4 group of 32, 16-byte vector), in
// both format versions (v2: fp8/int8 K centred per channel, from T=32/64 at
// H*D=1024), at unaligned addresses, and for version-1 blobs of shapes that
// encoders now write as version 2. Abseil-free: also built by
// kernels/standalone/. Labelled `gpu`; skips with a message where no device
// exists (the host-only FastDiv test runs everywhere).
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/core/blob_format.h"
#include "kernels/core/cpu_codec_ref.h"
#include "kernels/core/cuda_ops.h"
#include "kernels/cuda/fast_div.cuh"
#include "kernels/internal/codec_math.h"
#include "tests/kernels/gpu_test_util.h"
#include "tests/kernels/kernels_test_util.h"

namespace kvf {
namespace {

using kcore::ElemType;
using kcore::KvShape;
using testing::DevMem;
using testing::kTestFingerprint;
using testing::Shape;
using testing::Sync;

// Compares without printing megabytes: the count and the first differences.
::testing::AssertionResult SameBytes(const std::vector<std::byte>& got,
                                     const std::vector<std::byte>& want, size_t n) {
  if (got.size() < n || want.size() < n) {
    return ::testing::AssertionFailure() << "sizes " << got.size() << " / " << want.size()
                                         << ", comparing " << n;
  }
  size_t bad = 0;
  std::string first;
  for (size_t i = 0; i < n; ++i) {
    if (got[i] != want[i]) {
      if (bad < 8) {
        first += " @" + std::to_string(i) + ": " + std::to_string(static_cast<int>(got[i])) +
                 " vs " + std::to_string(static_cast<int>(want[i]));
      }
      ++bad;
    }
  }
  if (bad == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << bad << " of " << n << " bytes differ;" << first;
}

std::string CodecName(CodecId codec) { return "codec " + std::to_string(static_cast<int>(codec)); }

// Version 1 shapes, then version 2 ones (for fp8 and int8 unless noted): T of
// 64, 100 and 256, H*D not a multiple of the thread block, D not a multiple
// of 8 (element-wise accesses), odd D (int4 nibbles shared between rows).
std::vector<KvShape> TestShapes(ElemType dtype) {
  return {Shape(2, 3, 40, 7, dtype),   Shape(2, 8, 128, 16, dtype), Shape(1, 2, 33, 45, dtype),
          Shape(3, 1, 257, 3, dtype),  Shape(1, 5, 96, 100, dtype), Shape(1, 1, 1, 1, dtype),
          Shape(4, 8, 128, 64, dtype), Shape(2, 3, 40, 64, dtype),  Shape(1, 5, 36, 100, dtype),
          Shape(1, 3, 72, 256, dtype), Shape(1, 6, 20, 256, dtype), Shape(2, 2, 33, 64, dtype),
          Shape(2, 8, 128, 256, dtype)};
}

// The shapes above of format version 2 for `codec`.
std::vector<KvShape> V2Shapes(CodecId codec, ElemType dtype) {
  std::vector<KvShape> out;
  for (const KvShape& s : TestShapes(dtype)) {
    if (kcore::BlobVersionFor(codec, s) == kcore::kBlobVersion2) out.push_back(s);
  }
  return out;
}

uint32_t ReadError(const DevMem& d_err) {
  uint32_t err = 7;
  EXPECT_EQ(cudaMemcpy(&err, d_err.get(), 4, cudaMemcpyDeviceToHost), cudaSuccess);
  return err;
}

// Host-only: the launch-time divisions of the kernels' index arithmetic.
TEST(FastDiv, MatchesIntegerDivision) {
  std::mt19937 rng(5);
  std::vector<uint32_t> divisors;
  for (uint32_t d = 1; d <= 4100; ++d) divisors.push_back(d);
  for (int i = 0; i < 32; ++i) {
    divisors.push_back(uint32_t{1} << i);
    divisors.push_back((uint32_t{1} << i) + 1);
    divisors.push_back((uint32_t{1} << i) - 1 + (i == 0));
  }
  for (int i = 0; i < 2000; ++i) divisors.push_back(rng() | 1);
  divisors.push_back(0xffffffffu);
  for (uint32_t d : divisors) {
    const kcore::FastDiv f(d);
    std::vector<uint32_t> ns = {0, 1, d - 1, d, d + 1, 2 * d - 1, 2 * d, 0x7fffffffu, 0x80000000u,
                                0xfffffffeu, 0xffffffffu, 0xffffffffu / d * d,
                                0xffffffffu / d * d - 1};
    for (int i = 0; i < 64; ++i) ns.push_back(rng());
    for (int i = 0; i < 64; ++i) ns.push_back(rng() % (uint64_t{d} * 70 + 1));
    for (uint32_t n : ns) {
      ASSERT_EQ(f.Div(n), n / d) << n << " / " << d;
      ASSERT_EQ(f.Mod(n), n % d) << n << " % " << d;
    }
  }
}

// Host-only: the int4 decoder computes a group's scale as
// MulRn(super, table[code]) with a table of E4m3ToFloat; that must stay
// Int4GroupScale's definition.
TEST(CodecGpuCoreMath, Int4GroupScaleIsSuperTimesE4m3) {
  for (float super : {0.0f, 1e-30f, 0.0123f, 1.0f, 3.5f, 448.0f, 1e30f}) {
    for (int c = 0; c < 256; ++c) {
      const uint8_t code = static_cast<uint8_t>(c);
      const float want = internal::Int4GroupScale(super, code);
      const float got = internal::MulRn(super, internal::E4m3ToFloat(code));
      ASSERT_EQ(internal::FloatBits(got), internal::FloatBits(want)) << super << " code " << c;
    }
  }
}

// Host-only: the shape list keeps covering both format versions.
TEST(CodecGpuCoreShapes, CoverBothFormatVersions) {
  for (CodecId codec : {CodecId::kFp8E4m3, CodecId::kInt8}) {
    const size_t v2 = V2Shapes(codec, ElemType::kFp16).size();
    EXPECT_GE(v2, 6u) << CodecName(codec);
    EXPECT_GE(TestShapes(ElemType::kFp16).size() - v2, 4u) << CodecName(codec);
  }
}

class CodecGpuCore : public testing::GpuTest {};

TEST_F(CodecGpuCore, EncodeAndDecodeMatchCpuBitForBit) {
  uint32_t seed = 1;
  for (CodecId codec : testing::kCoreCodecs) {
    for (ElemType dtype : testing::kCoreDTypes) {
      for (const KvShape& s : TestShapes(dtype)) {
        SCOPED_TRACE(CodecName(codec) + " " + testing::ShapeName(s) + " v" +
                     std::to_string(kcore::BlobVersionFor(codec, s)));
        const std::vector<std::byte> block = testing::RandomBlock(s, seed++);
        const size_t stored = kcore::StoredSize(codec, s);
        std::vector<std::byte> cpu_blob(stored);
        ASSERT_TRUE(
            kcore::CpuEncode(codec, s, kTestFingerprint, block.data(), cpu_blob.data()).ok());
        std::vector<std::byte> cpu_block(s.BytesPerBlock());
        ASSERT_TRUE(kcore::CpuDecode(codec, s, cpu_blob.data(), cpu_block.data()).ok());

        DevMem d_block(block);
        DevMem d_blob(stored + 7);  // slack: the encoder writes only `stored` bytes
        d_blob.Fill(0xa5);          // every blob byte must be written (int4 zeroes itself)
        const kcore::Result enc = kcore::EncodeOnDevice(codec, s, kTestFingerprint, d_block.get(),
                                                        d_blob.get(), d_blob.size(), nullptr);
        ASSERT_TRUE(enc.ok()) << enc.message;
        Sync();
        std::vector<std::byte> gpu_blob = d_blob.Download();
        EXPECT_TRUE(SameBytes(gpu_blob, cpu_blob, stored)) << "encode";
        for (size_t i = stored; i < gpu_blob.size(); ++i) {
          ASSERT_EQ(gpu_blob[i], std::byte{0xa5}) << "wrote past the blob at " << i;
        }

        // Decode the CPU blob on the device.
        d_blob.Upload(cpu_blob);
        DevMem d_out(s.BytesPerBlock());
        DevMem d_err(sizeof(uint32_t));
        d_err.Fill(0x7f);
        const kcore::Result dec = kcore::DecodeOnDevice(
            codec, s, kTestFingerprint, d_blob.get(), stored, d_out.get(), d_out.size(),
            static_cast<uint32_t*>(d_err.get()), nullptr);
        ASSERT_TRUE(dec.ok()) << dec.message;
        Sync();
        EXPECT_TRUE(SameBytes(d_out.Download(), cpu_block, cpu_block.size())) << "decode";
        if (codec != CodecId::kNone) {
          uint32_t err = 7;
          ASSERT_EQ(cudaMemcpy(&err, d_err.get(), 4, cudaMemcpyDeviceToHost), cudaSuccess);
          EXPECT_EQ(err, 0u);
        }
      }
    }
  }
}

// Blobs written before format version 2 (CpuEncodeVersion(..., 1, ...)) of
// shapes that encoders now write as version 2 decode like on the CPU, with
// the input exactly as long as the version-1 blob or longer.
TEST_F(CodecGpuCore, DecodesVersion1BlobsOfVersion2Shapes) {
  uint32_t seed = 300;
  for (CodecId codec : {CodecId::kFp8E4m3, CodecId::kInt8}) {
    for (ElemType dtype : testing::kCoreDTypes) {
      for (const KvShape& s : V2Shapes(codec, dtype)) {
        SCOPED_TRACE(CodecName(codec) + " " + testing::ShapeName(s));
        const size_t v1_bytes = kcore::GeometryForVersion(codec, s, kcore::kBlobVersion1).total();
        std::vector<std::byte> blob(v1_bytes);
        ASSERT_TRUE(kcore::CpuEncodeVersion(codec, s, kTestFingerprint, kcore::kBlobVersion1,
                                            testing::RandomBlock(s, seed++).data(), blob.data())
                        .ok());
        ASSERT_EQ(kcore::BlobVersionOf(blob.data()), kcore::kBlobVersion1);
        std::vector<std::byte> cpu_block(s.BytesPerBlock());
        ASSERT_TRUE(kcore::CpuDecode(codec, s, blob.data(), cpu_block.data()).ok());
        // (A version-1 blob is longer than the version-2 one when T > H*D for
        // int8: then the input holds both versions' sections.)
        const size_t longest = std::max(v1_bytes, kcore::StoredSize(codec, s));
        for (size_t slack : {size_t{0}, longest + 9 - v1_bytes}) {
          DevMem d_blob(v1_bytes + slack);
          d_blob.Fill(0x5a);
          d_blob.Upload(blob);
          DevMem d_out(s.BytesPerBlock()), d_err(sizeof(uint32_t));
          d_err.Fill(0x7f);
          const kcore::Result r = kcore::DecodeOnDevice(
              codec, s, kTestFingerprint, d_blob.get(), v1_bytes + slack, d_out.get(),
              d_out.size(), static_cast<uint32_t*>(d_err.get()), nullptr);
          ASSERT_TRUE(r.ok()) << r.message;
          Sync();
          EXPECT_TRUE(SameBytes(d_out.Download(), cpu_block, cpu_block.size()))
              << "slack " << slack;
          EXPECT_EQ(ReadError(d_err), 0u);
        }
      }
    }
  }
}

// Writes `v` at element (layer 0, K, token t, channel j) of a canonical block.
void SetK(const KvShape& s, std::vector<std::byte>& block, uint32_t t, uint32_t j, float v) {
  const std::vector<std::byte> e = testing::Encode({v}, s.dtype);
  std::memcpy(block.data() + (size_t{t} * s.num_kv_heads * s.head_dim + j) * e.size(), e.data(),
              e.size());
}

// Format v2 centres a K channel at its range's midpoint; for a channel of
// zeros the CPU's fold keeps the sign of the first one (MinIgnoringNan keeps
// the first of -0 and +0, and NaN is skipped), so the GPU must fold its token
// slices in order. Channels of NaN up to a random token k, then a zero of one
// sign at k and zeros of the other sign after it: the first zero lands in any
// of the tile's 8 token slices. (Positive quiet NaN, which the device keeps;
// int8 also compares the decoded block, fp8 decodes NaN codes, whose NaN
// payload the device does not keep.)
TEST_F(CodecGpuCore, SignedZeroChannelsCentreLikeCpu) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  for (ElemType dtype : testing::kCoreDTypes) {
    const KvShape s = Shape(1, 2, 64, 64, dtype);  // v2 for fp8 and int8; 8 token slices
    std::vector<std::byte> block = testing::RandomBlock(s, 77);
    std::mt19937 rng(78);
    const uint32_t hd = s.num_kv_heads * s.head_dim;
    for (uint32_t j = 0; j < hd; j += 3) {
      const uint32_t k = rng() % s.block_tokens;
      const bool first_negative = (j / 3) % 2 == 1;
      for (uint32_t t = 0; t < s.block_tokens; ++t) {
        const bool negative = t == k ? first_negative : !first_negative;
        SetK(s, block, t, j, t < k ? nan : negative ? -0.0f : 0.0f);
      }
    }
    for (CodecId codec : {CodecId::kFp8E4m3, CodecId::kInt8}) {
      SCOPED_TRACE(CodecName(codec) + " " + testing::ShapeName(s));
      ASSERT_EQ(kcore::BlobVersionFor(codec, s), kcore::kBlobVersion2);
      const size_t stored = kcore::StoredSize(codec, s);
      std::vector<std::byte> cpu_blob(stored), cpu_block(s.BytesPerBlock());
      ASSERT_TRUE(kcore::CpuEncode(codec, s, kTestFingerprint, block.data(), cpu_blob.data()).ok());
      ASSERT_TRUE(kcore::CpuDecode(codec, s, cpu_blob.data(), cpu_block.data()).ok());
      DevMem d_block(block), d_blob(stored), d_out(s.BytesPerBlock()), d_err(sizeof(uint32_t));
      ASSERT_TRUE(kcore::EncodeOnDevice(codec, s, kTestFingerprint, d_block.get(), d_blob.get(),
                                        stored, nullptr)
                      .ok());
      ASSERT_TRUE(kcore::DecodeOnDevice(codec, s, kTestFingerprint, d_blob.get(), stored,
                                        d_out.get(), d_out.size(),
                                        static_cast<uint32_t*>(d_err.get()), nullptr)
                      .ok());
      Sync();
      EXPECT_TRUE(SameBytes(d_blob.Download(), cpu_blob, stored)) << "encode";
      if (codec == CodecId::kInt8) {
        EXPECT_TRUE(SameBytes(d_out.Download(), cpu_block, cpu_block.size())) << "decode";
      }
    }
  }
}

// NaN inputs are ignored by every scale and range (a channel of NaN only is
// centred at 0) and encode to the same codes as on the CPU. (Positive quiet
// NaN only: the device's multiplies return the canonical NaN, which drops a
// negative NaN's sign. Decoded NaNs are not compared for the same reason.)
TEST_F(CodecGpuCore, NanInputsEncodeLikeCpu) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  for (ElemType dtype : testing::kCoreDTypes) {
    for (const KvShape& s : {Shape(1, 2, 64, 64, dtype), Shape(2, 2, 40, 16, dtype)}) {
      std::vector<std::byte> block = testing::RandomBlock(s, 90);
      std::mt19937 rng(91);
      const uint32_t hd = s.num_kv_heads * s.head_dim;
      for (uint32_t t = 0; t < s.block_tokens; ++t) SetK(s, block, t, 5, nan);  // all NaN
      for (int i = 0; i < 40; ++i) {
        SetK(s, block, rng() % s.block_tokens, rng() % hd, nan);
      }
      for (CodecId codec : {CodecId::kFp8E4m3, CodecId::kInt8, CodecId::kInt4}) {
        SCOPED_TRACE(CodecName(codec) + " " + testing::ShapeName(s));
        const size_t stored = kcore::StoredSize(codec, s);
        std::vector<std::byte> cpu_blob(stored);
        ASSERT_TRUE(
            kcore::CpuEncode(codec, s, kTestFingerprint, block.data(), cpu_blob.data()).ok());
        DevMem d_block(block), d_blob(stored);
        ASSERT_TRUE(kcore::EncodeOnDevice(codec, s, kTestFingerprint, d_block.get(),
                                          d_blob.get(), stored, nullptr)
                        .ok());
        Sync();
        EXPECT_TRUE(SameBytes(d_blob.Download(), cpu_blob, stored));
      }
    }
  }
}

// A version-2 blob cut to the length of a version-1 blob: the host cannot
// tell (the header is on the device), the device rejects it (its sections
// do not fit) and writes nothing. Shorter than both: DATA_LOSS on the host.
TEST_F(CodecGpuCore, TruncatedVersion2BlobIsFlaggedOnTheDevice) {
  const KvShape s = Shape(2, 8, 128, 64);
  for (CodecId codec : {CodecId::kFp8E4m3, CodecId::kInt8}) {
    SCOPED_TRACE(CodecName(codec));
    ASSERT_EQ(kcore::BlobVersionFor(codec, s), kcore::kBlobVersion2);
    const size_t v1_bytes = kcore::GeometryForVersion(codec, s, kcore::kBlobVersion1).total();
    const size_t v2_bytes = kcore::StoredSize(codec, s);
    ASSERT_LT(v1_bytes, v2_bytes);
    std::vector<std::byte> blob(v2_bytes);
    ASSERT_TRUE(kcore::CpuEncode(codec, s, kTestFingerprint, testing::RandomBlock(s, 9).data(),
                                 blob.data())
                    .ok());
    DevMem d_blob(blob), d_out(s.BytesPerBlock()), d_err(sizeof(uint32_t));
    d_out.Fill(0x3c);
    d_err.Fill(0);
    ASSERT_TRUE(kcore::DecodeOnDevice(codec, s, kTestFingerprint, d_blob.get(), v1_bytes,
                                      d_out.get(), d_out.size(),
                                      static_cast<uint32_t*>(d_err.get()), nullptr)
                    .ok());
    Sync();
    EXPECT_EQ(ReadError(d_err), 1u);
    for (std::byte b : d_out.Download()) ASSERT_EQ(b, std::byte{0x3c});
    EXPECT_EQ(kcore::DecodeOnDevice(codec, s, kTestFingerprint, d_blob.get(), v1_bytes - 1,
                                    d_out.get(), d_out.size(),
                                    static_cast<uint32_t*>(d_err.get()), nullptr)
                  .code,
              kcore::ResultCode::kDataLoss);
  }
}

// Blobs and blocks at addresses that defeat the vector paths: blob offsets
// of 1, 2 and 4 bytes (scales, meta and codes accessed bytewise), a block one
// element off 16-byte alignment (element-wise loads and stores).
TEST_F(CodecGpuCore, UnalignedBuffersMatchCpu) {
  uint32_t seed = 400;
  const std::vector<KvShape> shapes = {Shape(2, 3, 40, 64), Shape(2, 8, 128, 16),
                                       Shape(1, 2, 33, 45)};
  for (CodecId codec : {CodecId::kFp8E4m3, CodecId::kInt8, CodecId::kInt4}) {
    for (ElemType dtype : testing::kCoreDTypes) {
      for (KvShape s : shapes) {
        s.dtype = dtype;
        for (size_t blob_off : {1, 2, 4}) {
          SCOPED_TRACE(CodecName(codec) + " " + testing::ShapeName(s) + " blob offset " +
                       std::to_string(blob_off));
          const size_t es = kcore::ElemSize(dtype);
          const std::vector<std::byte> block = testing::RandomBlock(s, seed++);
          const size_t stored = kcore::StoredSize(codec, s);
          std::vector<std::byte> cpu_blob(stored), cpu_block(s.BytesPerBlock());
          ASSERT_TRUE(
              kcore::CpuEncode(codec, s, kTestFingerprint, block.data(), cpu_blob.data()).ok());
          ASSERT_TRUE(kcore::CpuDecode(codec, s, cpu_blob.data(), cpu_block.data()).ok());

          DevMem d_block(block.size() + es), d_blob(stored + blob_off + 8);
          std::vector<std::byte> shifted(es);
          shifted.insert(shifted.end(), block.begin(), block.end());
          d_block.Upload(shifted);
          d_blob.Fill(0xa5);
          ASSERT_TRUE(kcore::EncodeOnDevice(codec, s, kTestFingerprint, d_block.bytes() + es,
                                            d_blob.bytes() + blob_off, stored, nullptr)
                          .ok());
          Sync();
          const std::vector<std::byte> got = d_blob.Download();
          EXPECT_TRUE(SameBytes(std::vector<std::byte>(got.begin() + blob_off, got.end()),
                                cpu_blob, stored))
              << "encode";
          for (size_t i = 0; i < got.size(); ++i) {
            if (i < blob_off || i >= blob_off + stored) {
              ASSERT_EQ(got[i], std::byte{0xa5}) << "wrote outside the blob at " << i;
            }
          }

          std::vector<std::byte> upload(blob_off);
          upload.insert(upload.end(), cpu_blob.begin(), cpu_blob.end());
          d_blob.Upload(upload);
          DevMem d_out(block.size() + es), d_err(sizeof(uint32_t));
          d_out.Fill(0x3c);
          ASSERT_TRUE(kcore::DecodeOnDevice(codec, s, kTestFingerprint, d_blob.bytes() + blob_off,
                                            stored, d_out.bytes() + es, block.size(),
                                            static_cast<uint32_t*>(d_err.get()), nullptr)
                          .ok());
          Sync();
          const std::vector<std::byte> out = d_out.Download();
          EXPECT_TRUE(SameBytes(std::vector<std::byte>(out.begin() + es, out.end()), cpu_block,
                                cpu_block.size()))
              << "decode";
          for (size_t i = 0; i < es; ++i) ASSERT_EQ(out[i], std::byte{0x3c});
          EXPECT_EQ(ReadError(d_err), 0u);
        }
      }
    }
  }
}

TEST_F(CodecGpuCore, DecodeFlagsBlobOfAnotherShapeAndWritesNothing) {
  const KvShape s = Shape(2, 2, 32, 8), other = Shape(2, 2, 16, 16);
  for (CodecId codec : {CodecId::kFp8E4m3, CodecId::kInt8, CodecId::kInt4}) {
    std::vector<std::byte> blob(kcore::StoredSize(codec, s));
    ASSERT_TRUE(kcore::CpuEncode(codec, s, kTestFingerprint, testing::RandomBlock(s, 5).data(),
                                 blob.data())
                    .ok());
    DevMem d_blob(blob);
    DevMem d_out(other.BytesPerBlock());
    d_out.Fill(0x3c);
    DevMem d_err(sizeof(uint32_t));
    d_err.Fill(0);
    // Same size, other shape: must be caught on the device.
    ASSERT_TRUE(kcore::DecodeOnDevice(codec, other, kTestFingerprint, d_blob.get(), d_blob.size(),
                                      d_out.get(), d_out.size(),
                                      static_cast<uint32_t*>(d_err.get()), nullptr)
                    .ok() ||
                kcore::StoredSize(codec, other) > blob.size());
    Sync();
    if (kcore::StoredSize(codec, other) <= blob.size()) {
      uint32_t err = 0;
      ASSERT_EQ(cudaMemcpy(&err, d_err.get(), 4, cudaMemcpyDeviceToHost), cudaSuccess);
      EXPECT_EQ(err, 1u);
      for (std::byte b : d_out.Download()) ASSERT_EQ(b, std::byte{0x3c});
    }
    // Another fingerprint: also a mismatch.
    d_err.Fill(0);
    ASSERT_TRUE(kcore::DecodeOnDevice(codec, s, kTestFingerprint + 1, d_blob.get(), d_blob.size(),
                                      d_out.get(), d_out.size(),
                                      static_cast<uint32_t*>(d_err.get()), nullptr)
                    .ok());
    Sync();
    uint32_t err = 0;
    ASSERT_EQ(cudaMemcpy(&err, d_err.get(), 4, cudaMemcpyDeviceToHost), cudaSuccess);
    EXPECT_EQ(err, 1u);
  }
}

TEST_F(CodecGpuCore, HostSideChecksNeedNoDeviceWork) {
  const KvShape s = Shape(1, 2, 16, 4);
  DevMem d(4096);
  EXPECT_EQ(kcore::EncodeOnDevice(CodecId::kInt8, s, 0, d.get(), d.get(), 10, nullptr).code,
            kcore::ResultCode::kInvalidArgument);
  EXPECT_EQ(kcore::DecodeOnDevice(CodecId::kInt8, s, 0, d.get(), 10, d.get(), 4096, nullptr,
                                  nullptr)
                .code,
            kcore::ResultCode::kDataLoss);
  EXPECT_EQ(kcore::DecodeOnDevice(CodecId::kInt8, s, 0, d.get(), 4096, d.get(), 4096, nullptr,
                                  nullptr)
                .code,
            kcore::ResultCode::kInvalidArgument);  // d_error missing
}

}  // namespace
}  // namespace kvf
