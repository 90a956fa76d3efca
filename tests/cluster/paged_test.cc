// Paged offload and load (client/paged.h) against a real cluster: an
// engine's host-resident KV pages in vLLM's layout -> blocks -> another
// engine's pages, byte for byte; codecs; what a failed block does to the
// pages (nothing); layout mismatches refused before any byte moves.
#include "client/paged.h"

#include <cstring>
#include <numeric>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/codec.h"
#include "tests/cluster/cluster_fixture.h"

namespace kvf::testing {
namespace {

constexpr uint32_t kLayers = 3, kHeads = 2, kDim = 32, kPageSize = 8, kBlockTokens = 16;
constexpr uint32_t kPages = 24;

// One engine's KV cache: per layer a [pages][2][page_size][H][D] fp16 buffer.
struct Engine {
  std::vector<std::vector<uint16_t>> layers;
  PagedKvDesc desc;

  explicit Engine(uint16_t seed) {
    const size_t per_layer = size_t{kPages} * 2 * kPageSize * kHeads * kDim;
    std::vector<void*> bases;
    for (uint32_t l = 0; l < kLayers; ++l) {
      layers.emplace_back(per_layer);
      // Finite fp16 values (exponent bits never all ones) so codecs apply.
      for (size_t i = 0; i < per_layer; ++i) {
        layers[l][i] = static_cast<uint16_t>(((i * 2654435761u + seed * 97 + l) & 0x3bff));
      }
      bases.push_back(layers[l].data());
    }
    desc = VllmPagedLayout(kLayers, kHeads, kDim, kPageSize, kPages, ElemType::kFp16, bases);
    desc.layer_bytes = per_layer * sizeof(uint16_t);
  }
  // The bytes of one page of one layer (both K and V).
  std::vector<uint16_t> Page(uint32_t layer, int32_t page) const {
    const size_t n = size_t{2} * kPageSize * kHeads * kDim;
    return {layers[layer].begin() + page * n, layers[layer].begin() + (page + 1) * n};
  }
};

class PagedTest : public ClusterTest {
 protected:
  LocalClusterOptions ClusterOptions() override {
    LocalClusterOptions o;
    o.agents = 2;
    o.replication = 1;
    return o;
  }
  void SetUp() override {
    ClusterTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    auto ns = client_->RegisterNamespace(Spec("paged", kLayers, kHeads, kDim, kBlockTokens));
    ASSERT_TRUE(ns.ok()) << ns.status();
    ns_ = *ns;
    chain_ = RandomChain(ns_, 6);
  }
  Namespace ns_;
  std::vector<BlockKey> chain_;
};

TEST_F(PagedTest, SaveThenLoadIntoOtherPagesIsByteIdentical) {
  Engine a(1), b(2);
  // Block i of A lives in pages {2i+1, 2i}; B receives it in pages {20-2i, 21-2i}.
  std::vector<int32_t> a_pages, b_pages;
  for (int32_t i = 0; i < 6; ++i) {
    a_pages.insert(a_pages.end(), {2 * i + 1, 2 * i});
    b_pages.insert(b_pages.end(), {21 - 2 * i, 20 - 2 * i});
  }
  auto saved = SavePages(*client_, ns_, chain_, 0, 6, a.desc, a_pages);
  ASSERT_TRUE(saved.ok()) << saved.status();
  ASSERT_TRUE(saved->all_ok()) << saved->FirstError();
  // The stored block is the canonical form: the same bytes GatherPages gives.
  std::vector<std::byte> block(ns_.BlockBytes());
  auto got = client_->Get(ns_, chain_, 2, block.data(), block.size());
  ASSERT_TRUE(got.ok() && got->status.ok());
  std::vector<std::byte> want(ns_.BlockBytes());
  ASSERT_TRUE(GatherPages(a.desc, ns_.spec().layout, {5, 4}, CodecId::kNone, absl::MakeSpan(want)).ok());
  EXPECT_EQ(block, want);

  auto loaded = LoadPages(*client_, ns_, chain_, 0, 6, b.desc, b_pages);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  ASSERT_TRUE(loaded->all_ok()) << loaded->FirstError();
  for (uint32_t l = 0; l < kLayers; ++l) {
    for (size_t i = 0; i < a_pages.size(); ++i) {
      EXPECT_EQ(a.Page(l, a_pages[i]), b.Page(l, b_pages[i])) << "layer " << l << " entry " << i;
    }
  }
}

TEST_F(PagedTest, CodecsRoundTripThroughTheCpuReference) {
  for (CodecId codec : {CodecId::kFp8E4m3, CodecId::kInt8, CodecId::kInt4}) {
    Engine a(3), b(4);
    std::vector<int32_t> pages{0, 1, 2, 3};
    PutOptions po;
    po.codec = codec;
    auto chain = RandomChain(ns_, 2);
    auto saved = SavePages(*client_, ns_, chain, 0, 2, a.desc, pages, po);
    ASSERT_TRUE(saved.ok() && saved->all_ok()) << CodecName(codec);
    auto loaded = LoadPages(*client_, ns_, chain, 0, 2, b.desc, pages);
    ASSERT_TRUE(loaded.ok() && loaded->all_ok()) << CodecName(codec);
    EXPECT_EQ(loaded->blocks[0].codec, codec);
    // What B holds is exactly decode(encode(A's block)).
    const KvLayout& layout = ns_.spec().layout;
    std::vector<std::byte> blob(ns_.BlockBytes(codec)), raw(layout.BytesPerBlock()), mine(raw.size());
    ASSERT_TRUE(GatherPages(a.desc, layout, {0, 1}, codec, absl::MakeSpan(blob)).ok());
    ASSERT_TRUE(CpuCodec(codec).Decode(layout, blob, absl::MakeSpan(raw)).ok());
    ASSERT_TRUE(GatherPages(b.desc, layout, {0, 1}, CodecId::kNone, absl::MakeSpan(mine)).ok());
    EXPECT_EQ(raw, mine) << CodecName(codec);
  }
}

TEST_F(PagedTest, AMissingBlockIsReportedAndItsPagesAreNotWritten) {
  Engine a(5), b(6);
  std::vector<int32_t> pages{0, 1, 2, 3, 4, 5};
  ASSERT_TRUE(SavePages(*client_, ns_, chain_, 0, 3, a.desc, pages).ok());
  auto removed = client_->Remove(ns_, chain_, 1, 2);
  ASSERT_TRUE(removed.ok() && removed->all_ok());
  const Engine before = b;
  auto loaded = LoadPages(*client_, ns_, chain_, 0, 3, b.desc, pages);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_TRUE(loaded->blocks[0].status.ok());
  EXPECT_EQ(loaded->blocks[1].status.code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(loaded->blocks[2].status.ok());
  for (uint32_t l = 0; l < kLayers; ++l) {
    EXPECT_EQ(b.Page(l, 0), a.Page(l, 0));
    EXPECT_EQ(b.Page(l, 2), before.Page(l, 2)) << "a failed block's page was written";
    EXPECT_EQ(b.Page(l, 3), before.Page(l, 3)) << "a failed block's page was written";
    EXPECT_EQ(b.Page(l, 4), a.Page(l, 4));
  }
}

TEST_F(PagedTest, LayoutMismatchesAreRefusedBeforeAnyByteMoves) {
  Engine a(7);
  std::vector<int32_t> pages{0, 1};
  PagedKvDesc heads = a.desc;
  heads.num_kv_heads = 1;
  heads.head_stride = kDim;
  auto r = SavePages(*client_, ns_, chain_, 0, 1, heads, pages);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("num_kv_heads"), std::string::npos) << r.status();
  PagedKvDesc dtype = a.desc;
  dtype.dtype = ElemType::kBf16;
  EXPECT_EQ(LoadPages(*client_, ns_, chain_, 0, 1, dtype, pages).status().code(),
            absl::StatusCode::kInvalidArgument);
  PagedKvDesc page_size = a.desc;
  page_size.page_size = 5;  // does not divide 16
  EXPECT_EQ(LoadPages(*client_, ns_, chain_, 0, 1, page_size, pages).status().code(),
            absl::StatusCode::kInvalidArgument);
  // Wrong page-id counts and out-of-range ids.
  EXPECT_EQ(SavePages(*client_, ns_, chain_, 0, 1, a.desc, {0}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(SavePages(*client_, ns_, chain_, 0, 1, a.desc, {0, kPages}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(SavePages(*client_, ns_, chain_, 5, 2, a.desc, {0, 1, 2, 3}).status().code(),
            absl::StatusCode::kInvalidArgument);
  // Nothing was stored by any of them.
  auto look = client_->Lookup(ns_, chain_);
  ASSERT_TRUE(look.ok());
  EXPECT_EQ(look->prefix, 0u);
}

TEST_F(PagedTest, AsynchronousTransfersReportTheSameResults) {
  Engine a(8), b(9);
  std::vector<int32_t> pages(12);
  std::iota(pages.begin(), pages.end(), 0);
  PagedTransfer save = StartSavePages(*client_, ns_, chain_, 0, 6, a.desc, pages);
  auto saved = save.Wait();
  ASSERT_TRUE(saved.ok() && saved->all_ok());
  EXPECT_TRUE(save.Done());
  EXPECT_EQ(save.Wait().status().code(), absl::StatusCode::kFailedPrecondition);  // taken
  PagedTransfer load = StartLoadPages(*client_, ns_, chain_, 0, 6, b.desc, pages);
  auto loaded = load.Wait();
  ASSERT_TRUE(loaded.ok() && loaded->all_ok());
  EXPECT_TRUE(load.LayerReady(kLayers - 1));
  EXPECT_FALSE(load.LayerReady(kLayers));
  for (int32_t p = 0; p < 12; ++p) EXPECT_EQ(a.Page(0, p), b.Page(0, p));
  PagedTransfer empty;
  EXPECT_EQ(empty.Wait().status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(PagedTest, LoadsLandLayerByLayer) {
  Engine a(10), b(11);
  std::vector<int32_t> pages(12);
  std::iota(pages.begin(), pages.end(), 0);
  auto saved = SavePages(*client_, ns_, chain_, 0, 6, a.desc, pages);
  ASSERT_TRUE(saved.ok() && saved->all_ok());
  PagedTransfer load = StartLoadPages(*client_, ns_, chain_, 0, 6, b.desc, pages);
  // Once layer l is ready every block's layer l is in the pages, whatever
  // the later layers are doing (they are other buffers).
  for (uint32_t l = 0; l < kLayers; ++l) {
    ASSERT_TRUE(load.WaitLayer(l).ok());
    EXPECT_TRUE(load.LayerReady(l));
    for (int32_t p = 0; p < 12; ++p) EXPECT_EQ(a.Page(l, p), b.Page(l, p)) << "layer " << l;
  }
  EXPECT_EQ(load.WaitLayer(kLayers).code(), absl::StatusCode::kInvalidArgument);
  auto loaded = load.Wait();
  ASSERT_TRUE(loaded.ok() && loaded->all_ok());
  // A load with a missing block still finishes every layer (the block never
  // arrives; its pages stay as they were).
  Engine c(12);
  const std::vector<uint16_t> before = c.Page(1, 11);
  auto removed = client_->Remove(ns_, chain_, 5, 6);
  ASSERT_TRUE(removed.ok());
  PagedTransfer partial = StartLoadPages(*client_, ns_, chain_, 0, 6, c.desc, pages);
  for (uint32_t l = 0; l < kLayers; ++l) ASSERT_TRUE(partial.WaitLayer(l).ok());
  auto r = partial.Wait();
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->ok_count(), 5u);
  EXPECT_EQ(r->blocks[5].status.code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(c.Page(1, 11), before);
  EXPECT_EQ(c.Page(1, 0), a.Page(1, 0));
}

}  // namespace
}  // namespace kvf::testing
