// Paged offload and load of pages in CUDA device memory (client/paged.h)
// against a real agent on this host: the device movers (gather/encode on the
// GPU, one copy into the agent's page-locked arena; the reverse for loads)
// must store exactly what the CPU twins store from the same pages, land
// every layer when WaitLayer says so, and leave pages untouched for a block
// they refuse. Label `gpu`: skips without a CUDA device.
#include <cstring>
#include <numeric>
#include <vector>

#include "client/paged.h"
#include "gtest/gtest.h"
#include "kernels/codec.h"
#include "kernels/device.h"
#include "tests/cluster/cluster_fixture.h"
#include "tests/cluster/scrape.h"

namespace kvf::testing {
namespace {

// Llama-like heads; 64-token blocks of 4 pages, so fp8/int8 write format v2.
constexpr uint32_t kLayers = 4, kHeads = 8, kDim = 128, kPageSize = 16, kBlockTokens = 64;
constexpr uint32_t kPages = 16;
constexpr size_t kLayerElems = size_t{kPages} * 2 * kPageSize * kHeads * kDim;

// An engine's KV pages in device memory (vLLM layout), with a host mirror.
struct DeviceEngine {
  std::vector<DeviceBuffer> layers;
  PagedKvDesc desc;

  static absl::StatusOr<DeviceEngine> Make(uint16_t seed) {
    DeviceEngine e;
    std::vector<void*> bases;
    std::vector<uint16_t> host(kLayerElems);
    for (uint32_t l = 0; l < kLayers; ++l) {
      auto b = DeviceBuffer::Allocate(kLayerElems * 2, 0);
      if (!b.ok()) return b.status();
      for (size_t i = 0; i < kLayerElems; ++i) {
        host[i] = static_cast<uint16_t>((i * 2654435761u + seed * 97 + l * 13) & 0x3bff);
      }
      if (absl::Status s = CopyHostToDevice(b->data(), host.data(), kLayerElems * 2); !s.ok()) return s;
      bases.push_back(b->data());
      e.layers.push_back(*std::move(b));
    }
    e.desc = VllmPagedLayout(kLayers, kHeads, kDim, kPageSize, kPages, ElemType::kFp16, bases);
    e.desc.layer_bytes = kLayerElems * 2;
    return e;
  }
  std::vector<uint16_t> Layer(uint32_t l) const {
    std::vector<uint16_t> out(kLayerElems);
    EXPECT_TRUE(CopyDeviceToHost(out.data(), layers[l].data(), kLayerElems * 2).ok());
    return out;
  }
  // A host copy of every layer, described as host pages.
  struct Host {
    std::vector<std::vector<uint16_t>> layers;
    PagedKvDesc desc;
  };
  Host ToHost() const {
    Host h;
    std::vector<void*> bases;
    for (uint32_t l = 0; l < kLayers; ++l) h.layers.push_back(Layer(l));
    for (auto& v : h.layers) bases.push_back(v.data());
    h.desc = VllmPagedLayout(kLayers, kHeads, kDim, kPageSize, kPages, ElemType::kFp16, bases);
    h.desc.layer_bytes = kLayerElems * 2;
    return h;
  }
};

class PagedGpuClientTest : public ClusterTest {
 protected:
  LocalClusterOptions ClusterOptions() override {
    LocalClusterOptions o;
    o.agents = 1;
    o.replication = 1;
    o.ucx_tls = "posix,cma,self";  // the agent's arena is mapped here
    return o;
  }
  void SetUp() override {
    if (Devices().count == 0) GTEST_SKIP() << "needs a CUDA device: " << Devices().reason;
    ClusterTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    auto ns = client_->RegisterNamespace(Spec("paged-gpu", kLayers, kHeads, kDim, kBlockTokens));
    ASSERT_TRUE(ns.ok()) << ns.status();
    ns_ = *ns;
  }
  Namespace ns_;
};

TEST_F(PagedGpuClientTest, DevicePagesStoreWhatTheCpuTwinsStore) {
  for (CodecId codec : {CodecId::kNone, CodecId::kFp8E4m3, CodecId::kInt8, CodecId::kInt4}) {
    auto a = DeviceEngine::Make(1);
    ASSERT_TRUE(a.ok()) << a.status();
    const std::vector<BlockKey> chain = RandomChain(ns_, 3);
    const std::vector<int32_t> pages{9, 2, 14, 5, 0, 1, 2 + 1, 4 + 4, 11, 12, 7, 6};
    PutOptions po;
    po.codec = codec;
    auto saved = SavePages(*client_, ns_, chain, 0, 3, a->desc, pages, po);
    ASSERT_TRUE(saved.ok()) << CodecName(codec) << ": " << saved.status();
    ASSERT_TRUE(saved->all_ok()) << CodecName(codec) << ": " << saved->FirstError();
    // The stored block is what the CPU twin gathers from the same pages.
    DeviceEngine::Host host = a->ToHost();
    for (size_t i = 0; i < 3; ++i) {
      std::vector<std::byte> stored(ns_.BlockBytes(codec)), want(stored.size());
      auto got = client_->Get(ns_, chain, i, stored.data(), stored.size());
      ASSERT_TRUE(got.ok() && got->status.ok());
      ASSERT_TRUE(GatherPages(host.desc, ns_.spec().layout,
                              absl::MakeConstSpan(pages).subspan(4 * i, 4), codec,
                              absl::MakeSpan(want))
                      .ok());
      EXPECT_EQ(stored, want) << CodecName(codec) << " block " << i;
    }
    // Loaded into other device pages: what the CPU twin scatters.
    auto b = DeviceEngine::Make(2);
    ASSERT_TRUE(b.ok());
    DeviceEngine::Host expect = b->ToHost();
    auto cpu = LoadPages(*client_, ns_, chain, 0, 3, expect.desc, pages);
    ASSERT_TRUE(cpu.ok() && cpu->all_ok());
    auto loaded = LoadPages(*client_, ns_, chain, 0, 3, b->desc, pages);
    ASSERT_TRUE(loaded.ok()) << loaded.status();
    ASSERT_TRUE(loaded->all_ok()) << CodecName(codec) << ": " << loaded->FirstError();
    for (uint32_t l = 0; l < kLayers; ++l) {
      EXPECT_EQ(b->Layer(l), expect.layers[l]) << CodecName(codec) << " layer " << l;
    }
  }
}

TEST_F(PagedGpuClientTest, LayersAreInPlaceWhenWaitLayerReturns) {
  auto a = DeviceEngine::Make(3);
  auto b = DeviceEngine::Make(4);
  ASSERT_TRUE(a.ok() && b.ok());
  const std::vector<BlockKey> chain = RandomChain(ns_, 4);
  std::vector<int32_t> pages(16);
  std::iota(pages.begin(), pages.end(), 0);
  ASSERT_TRUE(SavePages(*client_, ns_, chain, 0, 4, a->desc, pages).ok());
  PagedTransfer load = StartLoadPages(*client_, ns_, chain, 0, 4, b->desc, pages);
  for (uint32_t l = 0; l < kLayers; ++l) {
    ASSERT_TRUE(load.WaitLayer(l).ok());
    EXPECT_EQ(b->Layer(l), a->Layer(l)) << "layer " << l;
  }
  auto r = load.Wait();
  ASSERT_TRUE(r.ok() && r->all_ok());
}

TEST_F(PagedGpuClientTest, ABlobOfAnotherLayoutLeavesTheDevicePagesUntouched) {
  // A block stored as fp8 of another shape: its header does not match.
  auto other = client_->RegisterNamespace(Spec("paged-gpu", kLayers, kHeads, kDim, kBlockTokens / 2));
  ASSERT_TRUE(other.ok());
  const std::vector<BlockKey> chain = RandomChain(ns_, 2);
  auto a = DeviceEngine::Make(5);
  ASSERT_TRUE(a.ok());
  std::vector<int32_t> pages{0, 1, 2, 3, 4, 5, 6, 7};
  PutOptions fp8;
  fp8.codec = CodecId::kFp8E4m3;
  ASSERT_TRUE(SavePages(*client_, ns_, chain, 0, 1, a->desc, {0, 1, 2, 3}, fp8).ok());
  // Block 1: the same fp8 blob bytes, of a 32-token layout, stored under
  // this namespace's key (BatchPut checks only the size, so pad it).
  std::vector<std::byte> blob(ns_.BlockBytes(CodecId::kFp8E4m3));
  DeviceEngine::Host host = a->ToHost();
  PagedKvDesc half = host.desc;
  ASSERT_TRUE(GatherPages(half, other->spec().layout, {0, 1}, CodecId::kFp8E4m3,
                          absl::MakeSpan(blob).first(other->BlockBytes(CodecId::kFp8E4m3)))
                  .ok());
  ConstBlockBuffer buf{blob.data(), blob.size()};
  auto put = client_->BatchPut(ns_, chain, 1, absl::MakeConstSpan(&buf, 1), fp8);
  ASSERT_TRUE(put.ok() && put->all_ok());
  auto b = DeviceEngine::Make(6);
  ASSERT_TRUE(b.ok());
  DeviceEngine::Host before = b->ToHost();
  auto loaded = LoadPages(*client_, ns_, chain, 0, 2, b->desc, pages);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_TRUE(loaded->blocks[0].status.ok()) << loaded->blocks[0].status;
  EXPECT_FALSE(loaded->blocks[1].status.ok());
  const size_t page_elems = size_t{2} * kPageSize * kHeads * kDim;
  for (uint32_t l = 0; l < kLayers; ++l) {
    std::vector<uint16_t> now = b->Layer(l);
    for (int32_t p = 4; p < 8; ++p) {
      EXPECT_TRUE(std::equal(now.begin() + p * page_elems, now.begin() + (p + 1) * page_elems,
                             before.layers[l].begin() + p * page_elems))
          << "layer " << l << " page " << p << " was written";
    }
  }
}

// An agent with a GPU tier on the same GPU: device pages load from it device
// to device over CUDA IPC (no host staging on the agent), host pages through
// host staging, both byte for byte.
class PagedGpuTierTest : public PagedGpuClientTest {
 protected:
  LocalClusterOptions ClusterOptions() override {
    LocalClusterOptions o = PagedGpuClientTest::ClusterOptions();
    o.extra_agent_flags = {"--device=0", "--device_bytes=268435456"};
    return o;
  }
  double Staged(const std::string& op) {
    return Metric(cluster_->agents()[0].http,
                  absl::StrCat("kvf_agent_device_staged_total{op=\"", op, "\"}"));
  }
};

TEST_F(PagedGpuTierTest, DevicePagesReadTheGpuTierOverIpc) {
  auto a = DeviceEngine::Make(7);
  auto b = DeviceEngine::Make(8);
  ASSERT_TRUE(a.ok() && b.ok());
  const std::vector<BlockKey> chain = RandomChain(ns_, 4);
  std::vector<int32_t> pages(16);
  std::iota(pages.begin(), pages.end(), 0);
  auto saved = SavePages(*client_, ns_, chain, 0, 4, a->desc, pages);
  ASSERT_TRUE(saved.ok() && saved->all_ok()) << (saved.ok() ? saved->FirstError() : saved.status());
  // The client asks for GPU-tier blocks once it has mapped the agent's host
  // arena (the save did, or this first load): then they come over CUDA IPC.
  ASSERT_TRUE(LoadPages(*client_, ns_, chain, 0, 1, b->desc, {0, 1, 2, 3}).ok());
  const double staged_before = Staged("read");
  auto loaded = LoadPages(*client_, ns_, chain, 0, 4, b->desc, pages);
  ASSERT_TRUE(loaded.ok() && loaded->all_ok())
      << (loaded.ok() ? loaded->FirstError() : loaded.status());
  for (uint32_t l = 0; l < kLayers; ++l) EXPECT_EQ(b->Layer(l), a->Layer(l)) << "layer " << l;
  EXPECT_EQ(Staged("read"), staged_before) << "the device load was staged through host memory";
  // Host pages cannot take device bytes: the agent stages those reads.
  DeviceEngine::Host host = b->ToHost();
  auto via_host = LoadPages(*client_, ns_, chain, 0, 4, host.desc, pages);
  ASSERT_TRUE(via_host.ok() && via_host->all_ok());
  EXPECT_GT(Staged("read"), staged_before);
  for (uint32_t l = 0; l < kLayers; ++l) EXPECT_EQ(host.layers[l], a->Layer(l)) << "layer " << l;
}

}  // namespace
}  // namespace kvf::testing
