// GPU codecs (kernels/core/cuda_ops.h) against the CPU reference twins
// (kernels/core/cpu_codec_ref.h): blobs and decoded blocks must be equal byte
// for byte, on random inputs with outlier channels and on shapes that are not
// multiples of any tile (thread block, int4 group of 32, 16-byte vector).
// Abseil-free: also built by kernels/standalone/. Labelled `gpu`; skips with
// a message where no device exists.
#include <cuda_runtime_api.h>

#include <cstring>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/core/blob_format.h"
#include "kernels/core/cpu_codec_ref.h"
#include "kernels/core/cuda_ops.h"
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

std::vector<KvShape> TestShapes(ElemType dtype) {
  return {Shape(2, 3, 40, 7, dtype),   Shape(2, 8, 128, 16, dtype), Shape(1, 2, 33, 45, dtype),
          Shape(3, 1, 257, 3, dtype),  Shape(1, 5, 96, 100, dtype), Shape(1, 1, 1, 1, dtype),
          Shape(4, 8, 128, 64, dtype)};
}

class CodecGpuCore : public testing::GpuTest {};

TEST_F(CodecGpuCore, EncodeAndDecodeMatchCpuBitForBit) {
  uint32_t seed = 1;
  for (CodecId codec : testing::kCoreCodecs) {
    for (ElemType dtype : testing::kCoreDTypes) {
      for (const KvShape& s : TestShapes(dtype)) {
        SCOPED_TRACE("codec " + std::to_string(static_cast<int>(codec)) + " " +
                     testing::ShapeName(s));
        const std::vector<std::byte> block = testing::RandomBlock(s, seed++);
        const size_t stored = kcore::StoredSize(codec, s);
        std::vector<std::byte> cpu_blob(stored);
        ASSERT_TRUE(kcore::CpuEncode(codec, s, kTestFingerprint, block.data(), cpu_blob.data()).ok());
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
