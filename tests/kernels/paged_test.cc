// Paged gather/scatter on the CPU (kernels/paged.h, the twins of the device
// kernels): element placement checked against an independent index formula,
// round trips through both layouts, codecs fused into gather/scatter, and
// bad descriptors and page lists rejected with INVALID_ARGUMENT.
#include "kernels/paged.h"

#include <cstring>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/codec.h"
#include "kernels/device.h"
#include "tests/kernels/codec_test_util.h"
#include "tests/kernels/kernels_test_util.h"

namespace kvf {
namespace {

using ::kvf::testing::MakeLayout;

kcore::KvShape internal_shape(const KvLayout& l) {
  return testing::Shape(l.num_layers, l.num_kv_heads, l.head_dim, l.block_tokens,
                        ElemTypeOf(l.dtype));
}

struct HostPool {
  std::vector<std::vector<std::byte>> mem;
  PagedKvDesc desc;
};

HostPool VllmPool(const KvLayout& l, uint32_t page_size, uint32_t pages, uint32_t seed) {
  HostPool p;
  const size_t layer_elems = size_t{pages} * 2 * page_size * l.num_kv_heads * l.head_dim;
  std::vector<void*> bases;
  for (uint32_t i = 0; i < l.num_layers; ++i) {
    p.mem.push_back(testing::RandomElements(layer_elems, ElemTypeOf(l.dtype), seed + i));
    bases.push_back(p.mem.back().data());
  }
  p.desc = VllmPagedLayout(l.num_layers, l.num_kv_heads, l.head_dim, page_size, pages,
                           ElemTypeOf(l.dtype), bases);
  return p;
}

HostPool LayerMajorPool(const KvLayout& l, uint32_t page_size, uint32_t pages, uint32_t seed) {
  HostPool p;
  const size_t elems =
      size_t{l.num_layers} * 2 * pages * page_size * l.num_kv_heads * l.head_dim;
  p.mem.push_back(testing::RandomElements(elems, ElemTypeOf(l.dtype), seed));
  p.desc = LayerMajorPagedLayout(l.num_layers, l.num_kv_heads, l.head_dim, page_size, pages,
                                 ElemTypeOf(l.dtype), p.mem[0].data());
  return p;
}

TEST(PagedCpu, GatherPlacesEveryElementWhereTheLayoutsSay) {
  const KvLayout l = MakeLayout(3, 2, 8, 12);  // 3 pages of 4 tokens
  const uint32_t ps = 4, pages = 7;
  const std::vector<int32_t> ids = {5, 0, 3};
  HostPool v = VllmPool(l, ps, pages, 1), m = LayerMajorPool(l, ps, pages, 2);
  std::vector<std::byte> bv(l.BytesPerBlock()), bm(l.BytesPerBlock());
  ASSERT_TRUE(GatherPages(v.desc, l, ids, CodecId::kNone, absl::MakeSpan(bv)).ok());
  ASSERT_TRUE(GatherPages(m.desc, l, ids, CodecId::kNone, absl::MakeSpan(bm)).ok());
  const size_t H = 2, D = 8, T = 12;
  size_t e = 0;
  for (size_t layer = 0; layer < 3; ++layer) {
    for (size_t kv = 0; kv < 2; ++kv) {
      for (size_t t = 0; t < T; ++t) {
        for (size_t h = 0; h < H; ++h) {
          for (size_t d = 0; d < D; ++d, ++e) {
            const size_t page = ids[t / ps], slot = t % ps;
            // vLLM: per layer [pages][2][ps][H][D].
            const size_t iv = (((page * 2 + kv) * ps + slot) * H + h) * D + d;
            // Layer-major: [L][2][pages][ps][H][D].
            const size_t im = ((((layer * 2 + kv) * pages + page) * ps + slot) * H + h) * D + d;
            ASSERT_EQ(std::memcmp(bv.data() + 2 * e, v.mem[layer].data() + 2 * iv, 2), 0) << e;
            ASSERT_EQ(std::memcmp(bm.data() + 2 * e, m.mem[0].data() + 2 * im, 2), 0) << e;
          }
        }
      }
    }
  }
}

TEST(PagedCpu, ScatterThenGatherRoundTripsAndTouchesOnlyItsPages) {
  for (DType dtype : testing::kAllDTypes) {
    const KvLayout l = MakeLayout(2, 3, 20, 32, dtype);
    for (bool layer_major : {false, true}) {
      HostPool p = layer_major ? LayerMajorPool(l, 8, 9, 3) : VllmPool(l, 8, 9, 3);
      const std::vector<std::vector<std::byte>> before = p.mem;
      const std::vector<int32_t> ids = {8, 2, 6, 0};
      const std::vector<std::byte> block = testing::RandomBlock(internal_shape(l), 4);
      ASSERT_TRUE(ScatterPages(p.desc, l, ids, CodecId::kNone, block).ok());
      std::vector<std::byte> back(block.size());
      ASSERT_TRUE(GatherPages(p.desc, l, ids, CodecId::kNone, absl::MakeSpan(back)).ok());
      EXPECT_EQ(back, block);
      // Pages not in the list are unchanged: gather them from both.
      const std::vector<int32_t> rest = {1, 3, 4, 5};
      HostPool orig = p;
      orig.mem = before;
      orig.desc = layer_major ? LayerMajorPagedLayout(2, 3, 20, 8, 9, ElemTypeOf(dtype),
                                                      orig.mem[0].data())
                              : VllmPagedLayout(2, 3, 20, 8, 9, ElemTypeOf(dtype),
                                                {orig.mem[0].data(), orig.mem[1].data()});
      std::vector<std::byte> a(block.size()), b(block.size());
      ASSERT_TRUE(GatherPages(p.desc, l, rest, CodecId::kNone, absl::MakeSpan(a)).ok());
      ASSERT_TRUE(GatherPages(orig.desc, l, rest, CodecId::kNone, absl::MakeSpan(b)).ok());
      EXPECT_EQ(a, b);
    }
  }
}

TEST(PagedCpu, EncodeOnGatherEqualsGatherThenEncode) {
  const KvLayout l = MakeLayout(2, 4, 40, 48, DType::kBf16);
  HostPool p = VllmPool(l, 16, 5, 9);
  const std::vector<int32_t> ids = {4, 1, 2};
  std::vector<std::byte> raw(l.BytesPerBlock());
  ASSERT_TRUE(GatherPages(p.desc, l, ids, CodecId::kNone, absl::MakeSpan(raw)).ok());
  for (CodecId codec : {CodecId::kFp8E4m3, CodecId::kInt8, CodecId::kInt4}) {
    const Codec& c = CpuCodec(codec);
    std::vector<std::byte> fused(c.EncodedSize(l)), separate(c.EncodedSize(l));
    ASSERT_TRUE(GatherPages(p.desc, l, ids, codec, absl::MakeSpan(fused)).ok());
    ASSERT_TRUE(c.Encode(l, raw, absl::MakeSpan(separate)).ok());
    EXPECT_EQ(fused, separate) << CodecName(codec);

    // Decode-on-scatter puts back what decoding gives.
    HostPool q = VllmPool(l, 16, 5, 10);
    ASSERT_TRUE(ScatterPages(q.desc, l, ids, codec, fused).ok());
    std::vector<std::byte> decoded(l.BytesPerBlock()), back(l.BytesPerBlock());
    ASSERT_TRUE(c.Decode(l, fused, absl::MakeSpan(decoded)).ok());
    ASSERT_TRUE(GatherPages(q.desc, l, ids, CodecId::kNone, absl::MakeSpan(back)).ok());
    EXPECT_EQ(back, decoded) << CodecName(codec);
  }
}

TEST(PagedCpu, ScatterRejectsBlobOfAnotherLayoutAndWritesNothing) {
  const KvLayout l = MakeLayout(2, 2, 16, 8), other = MakeLayout(2, 2, 16, 8, DType::kBf16);
  HostPool p = VllmPool(l, 4, 4, 11);
  const auto before = p.mem;
  std::vector<std::byte> blob(CpuCodec(CodecId::kInt8).EncodedSize(other));
  ASSERT_TRUE(CpuCodec(CodecId::kInt8)
                  .Encode(other, testing::RandomBlock(internal_shape(other), 1),
                          absl::MakeSpan(blob))
                  .ok());
  const std::vector<int32_t> ids = {1, 2};
  EXPECT_EQ(ScatterPages(p.desc, l, ids, CodecId::kInt8, blob).code(),
            absl::StatusCode::kInvalidArgument);
  blob.resize(30);
  EXPECT_EQ(ScatterPages(p.desc, l, ids, CodecId::kInt8, blob).code(),
            absl::StatusCode::kDataLoss);
  EXPECT_EQ(p.mem, before);
}

TEST(PagedCpu, RejectsBadDescriptorsAndPageLists) {
  const KvLayout l = MakeLayout(2, 2, 16, 8);
  HostPool p = VllmPool(l, 4, 4, 12);
  std::vector<std::byte> out(l.BytesPerBlock());
  const std::vector<int32_t> ids = {0, 1};
  auto gather = [&](const PagedKvDesc& d, const KvLayout& layout,
                    std::vector<int32_t> pages = {0, 1}) {
    return GatherPages(d, layout, pages, CodecId::kNone, absl::MakeSpan(out));
  };
  ASSERT_TRUE(gather(p.desc, l).ok());

  auto expect_invalid = [](const absl::Status& s, const char* what) {
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << what << ": " << s;
    EXPECT_FALSE(s.message().empty()) << what;
  };
  PagedKvDesc d = p.desc;
  d.layer_bases.pop_back();
  expect_invalid(gather(d, l), "missing base");
  d = p.desc;
  d.layer_bases[1] = nullptr;
  expect_invalid(gather(d, l), "null base");
  d = p.desc;
  d.layer_bases[0] = static_cast<std::byte*>(d.layer_bases[0]) + 1;
  expect_invalid(gather(d, l), "misaligned base");
  d = p.desc;
  d.page_size = 0;
  expect_invalid(gather(d, l), "page_size 0");
  d = p.desc;
  d.head_stride = 8;  // < head_dim: rows overlap
  expect_invalid(gather(d, l), "overlapping heads");
  d = p.desc;
  d.page_stride = d.kv_stride;  // pages overlap V of the previous page
  expect_invalid(gather(d, l), "overlapping pages");
  d = p.desc;
  d.layer_bytes -= 2;
  expect_invalid(gather(d, l), "layer too small");
  d = p.desc;
  d.kind = PagedLayoutKind::kCustom;
  EXPECT_TRUE(ValidatePagedKvDesc(d).ok());
  expect_invalid(ValidatePagedKvDesc(PagedKvDesc{}), "empty descriptor");

  expect_invalid(gather(p.desc, MakeLayout(3, 2, 16, 8)), "layers differ");
  expect_invalid(gather(p.desc, MakeLayout(2, 2, 16, 8, DType::kFp32)), "dtype differs");
  expect_invalid(gather(p.desc, MakeLayout(2, 2, 16, 6)), "T not a multiple of page_size");
  expect_invalid(gather(p.desc, l, {0}), "too few pages");
  expect_invalid(gather(p.desc, l, {0, 4}), "page id out of range");
  expect_invalid(gather(p.desc, l, {-1, 0}), "negative page id");
  EXPECT_TRUE(gather(p.desc, l, {2, 2}).ok());  // a gather may read a page twice
  expect_invalid(ScatterPages(p.desc, l, std::vector<int32_t>{2, 2}, CodecId::kNone, out),
                 "scatter to one page twice");
  std::vector<std::byte> small(10);
  expect_invalid(GatherPages(p.desc, l, ids, CodecId::kNone, absl::MakeSpan(small)),
                 "output too small");
}

TEST(PagedCpu, DeviceCallsFailCleanlyWhereThereIsNoDevice) {
  if (Devices().count > 0) GTEST_SKIP() << "a CUDA device exists: covered by kvf_paged_gpu_test";
  const KvLayout l = MakeLayout(1, 1, 8, 4);
  HostPool p = VllmPool(l, 4, 2, 13);
  std::vector<std::byte> out(l.BytesPerBlock());
  const std::vector<int32_t> ids = {1};
  const absl::Status s =
      GatherPagesOnDevice(p.desc, l, ids, CodecId::kNone, out.data(), out.size(), nullptr);
  EXPECT_FALSE(s.ok());
  EXPECT_TRUE(s.code() == absl::StatusCode::kInternal ||
              s.code() == absl::StatusCode::kFailedPrecondition)
      << s;
}

}  // namespace
}  // namespace kvf
