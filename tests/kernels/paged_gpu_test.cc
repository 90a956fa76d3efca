// Paged gather/scatter on the GPU (kernels/core/cuda_ops.h) against the CPU
// twins (kernels/core/paged.h): byte-identical blocks and page pools for the
// vLLM, layer-major and a custom (HND) layout, random page tables, blocks that
// span several pages, more layers than one launch takes, access widths from 16
// down to 2 bytes, and every codec fused into the gather/scatter, in both
// format versions (v2 from T=32/64 at H*D=1024; version-1 blobs of v2 shapes
// still scatter).
// Abseil-free: also built by kernels/standalone/. Labelled `gpu`; skips with a
// message where no device exists.
#include <cuda_runtime_api.h>

#include <memory>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/core/blob_format.h"
#include "kernels/core/cpu_codec_ref.h"
#include "kernels/core/cuda_ops.h"
#include "kernels/core/paged.h"
#include "tests/kernels/gpu_test_util.h"
#include "tests/kernels/kernels_test_util.h"

namespace kvf {
namespace {

using kcore::ElemType;
using kcore::KvShape;
using kcore::PagedKvDesc;
using kcore::PagedLayoutKind;
using testing::DevMem;
using testing::kTestFingerprint;
using testing::Shape;
using testing::Sync;

enum class Kind { kVllm, kLayerMajor, kHnd };
const Kind kKinds[] = {Kind::kVllm, Kind::kLayerMajor, Kind::kHnd};

std::string KindName(Kind k) {
  return k == Kind::kVllm ? "vllm" : k == Kind::kLayerMajor ? "layer-major" : "hnd";
}

// The same page pool in host memory (for the CPU twins) and device memory.
struct Pool {
  PagedKvDesc host, dev;
  std::vector<std::vector<std::byte>> host_mem;
  std::vector<DevMem> dev_mem;

  void Upload() {
    for (size_t i = 0; i < host_mem.size(); ++i) dev_mem[i].Upload(host_mem[i]);
  }
  // Device contents equal host contents, allocation by allocation.
  ::testing::AssertionResult SameAsHost() const {
    for (size_t i = 0; i < host_mem.size(); ++i) {
      if (dev_mem[i].Download() != host_mem[i]) {
        return ::testing::AssertionFailure() << "allocation " << i << " differs";
      }
    }
    return ::testing::AssertionSuccess();
  }
};

PagedKvDesc Describe(Kind kind, const KvShape& s, uint32_t page_size, uint32_t num_pages,
                     const std::vector<void*>& bases) {
  switch (kind) {
    case Kind::kVllm:
      return kcore::VllmPagedLayout(s.num_layers, s.num_kv_heads, s.head_dim, page_size,
                                    num_pages, s.dtype, bases);
    case Kind::kLayerMajor:
      return kcore::LayerMajorPagedLayout(s.num_layers, s.num_kv_heads, s.head_dim, page_size,
                                          num_pages, s.dtype, bases[0]);
    case Kind::kHnd: {
      // Per layer [num_pages][2][H][page_size][D].
      PagedKvDesc d;
      d.kind = PagedLayoutKind::kCustom;
      d.num_layers = s.num_layers;
      d.num_kv_heads = s.num_kv_heads;
      d.head_dim = s.head_dim;
      d.page_size = page_size;
      d.num_pages = num_pages;
      d.dtype = s.dtype;
      d.token_stride = s.head_dim;
      d.head_stride = uint64_t{page_size} * s.head_dim;
      d.kv_stride = d.head_stride * s.num_kv_heads;
      d.page_stride = 2 * d.kv_stride;
      d.layer_bases = bases;
      d.layer_bytes = kcore::VllmLayerBytes(d);
      return d;
    }
  }
  return {};
}

std::unique_ptr<Pool> MakePool(Kind kind, const KvShape& s, uint32_t page_size,
                               uint32_t num_pages, uint32_t seed) {
  auto pool = std::make_unique<Pool>();
  const size_t layer_bytes = size_t{num_pages} * 2 * page_size * s.num_kv_heads * s.head_dim *
                             kcore::ElemSize(s.dtype);
  const size_t allocs = kind == Kind::kLayerMajor ? 1 : s.num_layers;
  const size_t bytes = kind == Kind::kLayerMajor ? layer_bytes * s.num_layers : layer_bytes;
  std::vector<void*> host_bases, dev_bases;
  for (size_t i = 0; i < allocs; ++i) {
    pool->host_mem.push_back(
        testing::RandomElements(bytes / kcore::ElemSize(s.dtype), s.dtype, seed + i));
    pool->dev_mem.emplace_back(bytes);
    host_bases.push_back(pool->host_mem.back().data());
    dev_bases.push_back(pool->dev_mem.back().get());
  }
  pool->host = Describe(kind, s, page_size, num_pages, host_bases);
  pool->dev = Describe(kind, s, page_size, num_pages, dev_bases);
  pool->Upload();
  return pool;
}

struct Case {
  KvShape shape;
  uint32_t page_size;
  uint32_t num_pages;
};

// Blocks of 1 to 25 pages; head rows of 256, 24 (8-byte access), 14 (2-byte)
// and 12 (4-byte) bytes; odd head counts. The last four are of format
// version 2 for fp8 and int8 (T = 64, 100, 256; D = 36 is not a multiple of 8).
std::vector<Case> Cases(ElemType dtype) {
  return {{Shape(2, 8, 128, 16, dtype), 16, 9},
          {Shape(3, 3, 64, 12, dtype), 4, 7},
          {Shape(2, 2, 12, 10, dtype), 2, 11},
          {Shape(1, 5, 7, 5, dtype), 1, 6},
          {Shape(2, 1, 6, 6, dtype), 3, 4},
          {Shape(1, 4, 40, 64, dtype), 16, 5},
          {Shape(2, 8, 128, 64, dtype), 16, 6},
          {Shape(1, 3, 40, 100, dtype), 4, 27},
          {Shape(1, 2, 24, 256, dtype), 16, 17},
          {Shape(2, 3, 36, 64, dtype), 8, 9}};
}

std::string VersionName(CodecId codec, const KvShape& s) {
  return codec == CodecId::kNone ? "" : " v" + std::to_string(kcore::BlobVersionFor(codec, s));
}

std::string Trace(Kind kind, CodecId codec, const Case& c) {
  return KindName(kind) + " codec " + std::to_string(static_cast<int>(codec)) + " " +
         testing::ShapeName(c.shape) + " page_size " + std::to_string(c.page_size) +
         VersionName(codec, c.shape);
}

class PagedGpu : public testing::GpuTest {};

TEST_F(PagedGpu, GatherMatchesCpuTwin) {
  uint32_t seed = 100;
  for (Kind kind : kKinds) {
    for (ElemType dtype : testing::kCoreDTypes) {
      for (const Case& c : Cases(dtype)) {
        auto pool = MakePool(kind, c.shape, c.page_size, c.num_pages, seed++);
        const auto pages =
            testing::RandomPages(c.shape.block_tokens / c.page_size, c.num_pages, seed++);
        for (CodecId codec : testing::kCoreCodecs) {
          SCOPED_TRACE(Trace(kind, codec, c));
          const size_t stored = kcore::StoredSize(codec, c.shape);
          std::vector<std::byte> cpu(stored);
          kcore::Result r = kcore::GatherCpu(pool->host, c.shape, pages.data(), pages.size(),
                                             codec, kTestFingerprint, cpu.data(), cpu.size());
          ASSERT_TRUE(r.ok()) << r.message;
          DevMem d_out(stored);
          d_out.Fill(0xa5);
          r = kcore::GatherOnDevice(pool->dev, c.shape, pages.data(), pages.size(), codec,
                                    kTestFingerprint, d_out.get(), d_out.size(), nullptr);
          ASSERT_TRUE(r.ok()) << r.message;
          Sync();
          EXPECT_TRUE(d_out.Download() == cpu);
          EXPECT_TRUE(pool->SameAsHost()) << "gather must not write the pages";
        }
      }
    }
  }
}

TEST_F(PagedGpu, ScatterMatchesCpuTwinAndLeavesOtherPagesAlone) {
  uint32_t seed = 200;
  for (Kind kind : kKinds) {
    for (ElemType dtype : testing::kCoreDTypes) {
      for (const Case& c : Cases(dtype)) {
        for (CodecId codec : testing::kCoreCodecs) {
          SCOPED_TRACE(Trace(kind, codec, c));
          auto pool = MakePool(kind, c.shape, c.page_size, c.num_pages, seed++);
          const auto pages =
              testing::RandomPages(c.shape.block_tokens / c.page_size, c.num_pages, seed++);
          std::vector<std::byte> stored(kcore::StoredSize(codec, c.shape));
          ASSERT_TRUE(kcore::CpuEncode(codec, c.shape, kTestFingerprint,
                                       testing::RandomBlock(c.shape, seed++).data(),
                                       stored.data())
                          .ok());
          kcore::Result r = kcore::ScatterCpu(pool->host, c.shape, pages.data(), pages.size(),
                                              codec, kTestFingerprint, stored.data(),
                                              stored.size());
          ASSERT_TRUE(r.ok()) << r.message;
          DevMem d_in(stored);
          DevMem d_err(sizeof(uint32_t));
          d_err.Fill(0x7f);
          r = kcore::ScatterOnDevice(pool->dev, c.shape, pages.data(), pages.size(), codec,
                                     kTestFingerprint, d_in.get(), d_in.size(),
                                     static_cast<uint32_t*>(d_err.get()), nullptr);
          ASSERT_TRUE(r.ok()) << r.message;
          Sync();
          EXPECT_TRUE(pool->SameAsHost());
          if (codec != CodecId::kNone) {
            uint32_t err = 9;
            ASSERT_EQ(cudaMemcpy(&err, d_err.get(), 4, cudaMemcpyDeviceToHost), cudaSuccess);
            EXPECT_EQ(err, 0u);
          }
        }
      }
    }
  }
}

// Blobs written before format version 2, of shapes encoders now write as
// version 2, scatter like on the CPU.
TEST_F(PagedGpu, ScatterOfVersion1BlobMatchesCpuTwin) {
  uint32_t seed = 500;
  for (Kind kind : kKinds) {
    for (ElemType dtype : testing::kCoreDTypes) {
      for (const Case& c : Cases(dtype)) {
        for (CodecId codec : {CodecId::kFp8E4m3, CodecId::kInt8}) {
          if (kcore::BlobVersionFor(codec, c.shape) != kcore::kBlobVersion2) continue;
          SCOPED_TRACE(Trace(kind, codec, c) + " (v1 blob)");
          auto pool = MakePool(kind, c.shape, c.page_size, c.num_pages, seed++);
          const auto pages =
              testing::RandomPages(c.shape.block_tokens / c.page_size, c.num_pages, seed++);
          std::vector<std::byte> blob(
              kcore::GeometryForVersion(codec, c.shape, kcore::kBlobVersion1).total());
          ASSERT_TRUE(kcore::CpuEncodeVersion(codec, c.shape, kTestFingerprint,
                                              kcore::kBlobVersion1,
                                              testing::RandomBlock(c.shape, seed++).data(),
                                              blob.data())
                          .ok());
          kcore::Result r = kcore::ScatterCpu(pool->host, c.shape, pages.data(), pages.size(),
                                              codec, kTestFingerprint, blob.data(), blob.size());
          ASSERT_TRUE(r.ok()) << r.message;
          DevMem d_in(blob), d_err(sizeof(uint32_t));
          d_err.Fill(0x7f);
          r = kcore::ScatterOnDevice(pool->dev, c.shape, pages.data(), pages.size(), codec,
                                     kTestFingerprint, d_in.get(), blob.size(),
                                     static_cast<uint32_t*>(d_err.get()), nullptr);
          ASSERT_TRUE(r.ok()) << r.message;
          Sync();
          EXPECT_TRUE(pool->SameAsHost());
          uint32_t err = 9;
          ASSERT_EQ(cudaMemcpy(&err, d_err.get(), 4, cudaMemcpyDeviceToHost), cudaSuccess);
          EXPECT_EQ(err, 0u);
        }
      }
    }
  }
}

TEST_F(PagedGpu, GatherScatterRoundTripAcrossLayouts) {
  // Pages of a vLLM pool -> block -> other pages of a layer-major pool -> block.
  const KvShape s = Shape(4, 8, 128, 64);
  auto a = MakePool(Kind::kVllm, s, 16, 12, 1);
  auto b = MakePool(Kind::kLayerMajor, s, 16, 10, 2);
  const auto pa = testing::RandomPages(4, 12, 3), pb = testing::RandomPages(4, 10, 4);
  DevMem block(s.BytesPerBlock()), again(s.BytesPerBlock());
  ASSERT_TRUE(kcore::GatherOnDevice(a->dev, s, pa.data(), pa.size(), CodecId::kNone, 0,
                                    block.get(), block.size(), nullptr)
                  .ok());
  ASSERT_TRUE(kcore::ScatterOnDevice(b->dev, s, pb.data(), pb.size(), CodecId::kNone, 0,
                                     block.get(), block.size(), nullptr, nullptr)
                  .ok());
  ASSERT_TRUE(kcore::GatherOnDevice(b->dev, s, pb.data(), pb.size(), CodecId::kNone, 0,
                                    again.get(), again.size(), nullptr)
                  .ok());
  Sync();
  const std::vector<std::byte> want = block.Download();
  EXPECT_TRUE(again.Download() == want);
  // And the CPU twin saw the same block in the vLLM pool.
  std::vector<std::byte> cpu(s.BytesPerBlock());
  ASSERT_TRUE(kcore::GatherCpu(a->host, s, pa.data(), pa.size(), CodecId::kNone, 0, cpu.data(),
                               cpu.size())
                  .ok());
  EXPECT_TRUE(cpu == want);
}

// Encode-on-gather equals gather-then-encode, decode-on-scatter equals
// decode-then-scatter (device against device).
void CheckFusedEqualsSeparate(Kind kind, CodecId codec, const KvShape& s) {
  const uint32_t num_pages = s.block_tokens / 16 + 5;
  auto pool = MakePool(kind, s, 16, num_pages, 7);
  const auto pages = testing::RandomPages(s.block_tokens / 16, num_pages, 8);
  const size_t stored = kcore::StoredSize(codec, s);
  DevMem raw(s.BytesPerBlock()), fused(stored), separate(stored);
  ASSERT_TRUE(kcore::GatherOnDevice(pool->dev, s, pages.data(), pages.size(), CodecId::kNone, 0,
                                    raw.get(), raw.size(), nullptr)
                  .ok());
  ASSERT_TRUE(kcore::EncodeOnDevice(codec, s, kTestFingerprint, raw.get(), separate.get(),
                                    separate.size(), nullptr)
                  .ok());
  ASSERT_TRUE(kcore::GatherOnDevice(pool->dev, s, pages.data(), pages.size(), codec,
                                    kTestFingerprint, fused.get(), fused.size(), nullptr)
                  .ok());
  Sync();
  const std::vector<std::byte> want = separate.Download();
  EXPECT_TRUE(fused.Download() == want);

  auto p1 = MakePool(kind, s, 16, num_pages, 9);
  auto p2 = MakePool(kind, s, 16, num_pages, 9);
  DevMem decoded(s.BytesPerBlock()), err(2 * sizeof(uint32_t));
  uint32_t* d_err = static_cast<uint32_t*>(err.get());
  ASSERT_TRUE(kcore::ScatterOnDevice(p1->dev, s, pages.data(), pages.size(), codec,
                                     kTestFingerprint, fused.get(), fused.size(), d_err, nullptr)
                  .ok());
  ASSERT_TRUE(kcore::DecodeOnDevice(codec, s, kTestFingerprint, fused.get(), fused.size(),
                                    decoded.get(), decoded.size(), d_err + 1, nullptr)
                  .ok());
  ASSERT_TRUE(kcore::ScatterOnDevice(p2->dev, s, pages.data(), pages.size(), CodecId::kNone, 0,
                                     decoded.get(), decoded.size(), nullptr, nullptr)
                  .ok());
  Sync();
  for (size_t i = 0; i < p1->dev_mem.size(); ++i) {
    EXPECT_TRUE(p1->dev_mem[i].Download() == p2->dev_mem[i].Download()) << "allocation " << i;
  }
}

TEST_F(PagedGpu, EncodeOnGatherEqualsGatherThenEncode) {
  // Format version 1 (int8) / 2 (fp8), then 2 for both.
  const KvShape shapes[] = {Shape(3, 4, 72, 48, ElemType::kBf16),
                            Shape(2, 4, 72, 64, ElemType::kFp16)};
  for (CodecId codec : {CodecId::kFp8E4m3, CodecId::kInt8, CodecId::kInt4}) {
    for (Kind kind : kKinds) {
      for (const KvShape& s : shapes) {
        SCOPED_TRACE(KindName(kind) + " codec " + std::to_string(static_cast<int>(codec)) + " " +
                     testing::ShapeName(s) + VersionName(codec, s));
        CheckFusedEqualsSeparate(kind, codec, s);
      }
    }
  }
}

TEST_F(PagedGpu, ModelsWithMoreLayersThanOneLaunchTakes) {
  const uint32_t layers = kcore::kMaxLayersPerLaunch + 7;
  const KvShape s = Shape(layers, 2, 32, 8);
  for (CodecId codec : testing::kCoreCodecs) {
    SCOPED_TRACE("codec " + std::to_string(static_cast<int>(codec)));
    auto pool = MakePool(Kind::kVllm, s, 4, 5, 11);
    const auto pages = testing::RandomPages(2, 5, 12);
    const size_t stored = kcore::StoredSize(codec, s);
    std::vector<std::byte> cpu(stored);
    ASSERT_TRUE(kcore::GatherCpu(pool->host, s, pages.data(), pages.size(), codec,
                                 kTestFingerprint, cpu.data(), cpu.size())
                    .ok());
    DevMem d_out(stored);
    ASSERT_TRUE(kcore::GatherOnDevice(pool->dev, s, pages.data(), pages.size(), codec,
                                      kTestFingerprint, d_out.get(), d_out.size(), nullptr)
                    .ok());
    Sync();
    EXPECT_TRUE(d_out.Download() == cpu);

    // Scatter it into other pages of both copies of the pool.
    const auto other = testing::RandomPages(2, 5, 13);
    ASSERT_TRUE(kcore::ScatterCpu(pool->host, s, other.data(), other.size(), codec,
                                  kTestFingerprint, cpu.data(), cpu.size())
                    .ok());
    DevMem d_err(sizeof(uint32_t));
    ASSERT_TRUE(kcore::ScatterOnDevice(pool->dev, s, other.data(), other.size(), codec,
                                       kTestFingerprint, d_out.get(), d_out.size(),
                                       static_cast<uint32_t*>(d_err.get()), nullptr)
                    .ok());
    Sync();
    EXPECT_TRUE(pool->SameAsHost());
  }
}

TEST_F(PagedGpu, ScatterOfMismatchedBlobWritesNoPage) {
  const KvShape s = Shape(2, 2, 32, 8);
  auto pool = MakePool(Kind::kVllm, s, 4, 4, 21);
  const auto pages = testing::RandomPages(2, 4, 22);
  for (CodecId codec : {CodecId::kFp8E4m3, CodecId::kInt8, CodecId::kInt4}) {
    std::vector<std::byte> blob(kcore::StoredSize(codec, s));
    ASSERT_TRUE(kcore::CpuEncode(codec, s, kTestFingerprint + 1, testing::RandomBlock(s, 3).data(),
                                 blob.data())
                    .ok());
    DevMem d_blob(blob), d_err(sizeof(uint32_t));
    d_err.Fill(0);
    ASSERT_TRUE(kcore::ScatterOnDevice(pool->dev, s, pages.data(), pages.size(), codec,
                                       kTestFingerprint, d_blob.get(), d_blob.size(),
                                       static_cast<uint32_t*>(d_err.get()), nullptr)
                    .ok());
    Sync();
    uint32_t err = 0;
    ASSERT_EQ(cudaMemcpy(&err, d_err.get(), 4, cudaMemcpyDeviceToHost), cudaSuccess);
    EXPECT_EQ(err, 1u);
    EXPECT_TRUE(pool->SameAsHost());
  }
}

TEST_F(PagedGpu, BadArgumentsAreRejectedBeforeAnyLaunch) {
  const KvShape s = Shape(2, 2, 32, 8);
  auto pool = MakePool(Kind::kVllm, s, 4, 4, 31);
  DevMem out(kcore::StoredSize(CodecId::kInt4, s));
  const std::vector<int32_t> out_of_range = {1, 4}, dup = {2, 2}, too_few = {1};
  auto gather = [&](const std::vector<int32_t>& p) {
    return kcore::GatherOnDevice(pool->dev, s, p.data(), p.size(), CodecId::kNone, 0, out.get(),
                                 out.size(), nullptr)
        .code;
  };
  EXPECT_EQ(gather(out_of_range), kcore::ResultCode::kInvalidArgument);
  EXPECT_EQ(gather(too_few), kcore::ResultCode::kInvalidArgument);
  EXPECT_EQ(kcore::ScatterOnDevice(pool->dev, s, dup.data(), dup.size(), CodecId::kNone, 0,
                                   out.get(), out.size(), nullptr, nullptr)
                .code,
            kcore::ResultCode::kInvalidArgument);
  // d_error is required to decode. The input must be long enough for an int8
  // blob, or the (earlier) size check answers DATA_LOSS instead: the first
  // H200 run caught exactly that with the int4-sized buffer above.
  const std::vector<int32_t> ok = {0, 1};
  DevMem int8_blob(kcore::StoredSize(CodecId::kInt8, s));
  EXPECT_EQ(kcore::ScatterOnDevice(pool->dev, s, ok.data(), ok.size(), CodecId::kInt8, 0,
                                   int8_blob.get(), int8_blob.size(), nullptr, nullptr)
                .code,
            kcore::ResultCode::kInvalidArgument);
  EXPECT_TRUE(pool->SameAsHost());
}

}  // namespace
}  // namespace kvf
