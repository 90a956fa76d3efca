// kvf-kernel-bench: GPU codecs and paged gather/scatter against a
// device-to-device cudaMemcpyAsync of the same bytes, timed with CUDA events.
//
//   kvf-kernel-bench [--json FILE] [--quick]
//
// Every figure is the median over many samples after warm-up; a sample times
// a batch of launches with CUDA events. Each launch uses the next of several
// buffers (and page lists) spanning at least 4x the L2 cache, so data comes
// from HBM, not L2. Bytes/s count bytes read plus bytes written (a copy of N
// bytes moves 2N). "vs memcpy" divides by the memcpy of the block's bytes
// measured in the same run. Codec rows name the stored format version
// (fp8/int8 write version 2 from T = 32 / 64 at H=8, D=128). Rows with a
// target (issue 7: gather/scatter >= 80% of memcpy from 1 MiB; issue 15:
// fp8/int8 codecs and their fused paged forms >= 80%, int4 >= 60%, from
// 2 MiB) say whether they meet it, and a summary line counts them. Without a
// CUDA device it prints one line and exits 0. Abseil-free: built by the main
// build and by kernels/standalone/.
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <functional>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "kernels/core/blob_format.h"
#include "kernels/core/cuda_ops.h"
#include "kernels/core/paged.h"

namespace {

using kvf::CodecId;
using namespace kvf::kcore;

#define CHECK_CUDA(call)                                                                   \
  do {                                                                                     \
    cudaError_t e_ = (call);                                                               \
    if (e_ != cudaSuccess) {                                                               \
      std::fprintf(stderr, "%s:%d %s: %s\n", __FILE__, __LINE__, #call, cudaGetErrorString(e_)); \
      std::exit(1);                                                                        \
    }                                                                                      \
  } while (0)

void CheckResult(const Result& r, const char* what) {
  if (!r.ok()) {
    std::fprintf(stderr, "%s: %s\n", what, r.message.c_str());
    std::exit(1);
  }
}

struct Options {
  std::string json;
  bool quick = false;
};

struct Row {
  std::string kernel, shape;
  size_t block_bytes = 0, moved_bytes = 0;
  double seconds = 0, memcpy_seconds = 0;
  double target = 0;  // ratio to memcpy to reach, 0: none
  int version = 0;    // stored format version, 0: not a codec blob
  double Bw() const { return moved_bytes / seconds; }
  double MemcpyBw() const { return 2.0 * block_bytes / memcpy_seconds; }
  double Ratio() const { return Bw() / MemcpyBw(); }
  bool Meets() const { return target == 0 || Ratio() >= target; }
};

// Targets by kernel family and block size (see the header comment).
double TargetFor(CodecId codec, bool paged, size_t block_bytes) {
  if (codec == CodecId::kNone) return paged && block_bytes >= (size_t{1} << 20) ? 0.8 : 0;
  if (block_bytes < (size_t{2} << 20)) return 0;
  return codec == CodecId::kInt4 ? 0.6 : 0.8;
}

const char* CodecLabel(CodecId c) {
  return c == CodecId::kFp8E4m3 ? "fp8" : c == CodecId::kInt8 ? "int8" : "int4";
}

std::string VersionSuffix(CodecId c, const KvShape& s) {
  return c == CodecId::kNone ? "" : " v" + std::to_string(BlobVersionFor(c, s));
}

// Median seconds per call of launch(i), i = 0, 1, ... (rotating buffers).
double Time(const std::function<void(size_t)>& launch, bool quick) {
  const int warmup = quick ? 2 : 5, samples = quick ? 7 : 31, batch = quick ? 5 : 20;
  cudaEvent_t a, b;
  CHECK_CUDA(cudaEventCreate(&a));
  CHECK_CUDA(cudaEventCreate(&b));
  size_t i = 0;
  for (int w = 0; w < warmup * batch; ++w) launch(i++);
  std::vector<double> t;
  for (int s = 0; s < samples; ++s) {
    CHECK_CUDA(cudaEventRecord(a, nullptr));
    for (int k = 0; k < batch; ++k) launch(i++);
    CHECK_CUDA(cudaEventRecord(b, nullptr));
    CHECK_CUDA(cudaEventSynchronize(b));
    float ms = 0;
    CHECK_CUDA(cudaEventElapsedTime(&ms, a, b));
    t.push_back(ms * 1e-3 / batch);
  }
  CHECK_CUDA(cudaGetLastError());
  CHECK_CUDA(cudaEventDestroy(a));
  CHECK_CUDA(cudaEventDestroy(b));
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

void* Alloc(size_t bytes, std::vector<void*>* owned) {
  void* p = nullptr;
  CHECK_CUDA(cudaMalloc(&p, bytes));
  CHECK_CUDA(cudaMemset(p, 0, bytes));
  owned->push_back(p);
  return p;
}

// Fills with small finite fp16 values (random bits could be NaN/inf).
void FillFp16(void* p, size_t bytes, uint32_t seed) {
  std::vector<uint16_t> h(bytes / 2);
  std::mt19937 rng(seed);
  for (auto& x : h) x = static_cast<uint16_t>(0x3000 + rng() % 0x0fff) | ((rng() & 1) << 15);
  CHECK_CUDA(cudaMemcpy(p, h.data(), h.size() * 2, cudaMemcpyHostToDevice));
}

std::string ShapeName(const KvShape& s, uint32_t page_size) {
  char buf[128];
  std::snprintf(buf, sizeof(buf), "L=%u H=%u D=%u T=%u p=%u", s.num_layers, s.num_kv_heads,
                s.head_dim, s.block_tokens, page_size);
  return buf;
}

struct Bench {
  Options opt;
  size_t rotate_bytes = 0;
  std::vector<Row> rows;

  void RunShape(const KvShape& s, uint32_t page_size) {
    std::vector<void*> owned;
    const size_t block = s.BytesPerBlock();
    const size_t slots = std::max<size_t>(2, (rotate_bytes + block - 1) / block);
    const size_t stride = (StoredSize(CodecId::kInt4, s) > block ? StoredSize(CodecId::kInt4, s)
                                                                 : block) + 256;
    char* blocks = static_cast<char*>(Alloc(slots * block, &owned));
    char* blobs = static_cast<char*>(Alloc(slots * stride, &owned));
    char* copies = static_cast<char*>(Alloc(slots * block, &owned));
    uint32_t* err = static_cast<uint32_t*>(Alloc(64, &owned));
    FillFp16(blocks, slots * block, 1);
    const std::string name = ShapeName(s, page_size);

    const double memcpy_s = Time(
        [&](size_t i) {
          CHECK_CUDA(cudaMemcpyAsync(copies + (i % slots) * block, blocks + (i % slots) * block,
                                     block, cudaMemcpyDeviceToDevice, nullptr));
        },
        opt.quick);
    auto add = [&](const std::string& kernel, size_t moved, double secs, double target = 0,
                   int version = 0) {
      rows.push_back({kernel, name, block, moved, secs, memcpy_s, target, version});
    };
    add("memcpy (D2D)", 2 * block, memcpy_s);

    for (CodecId c : {CodecId::kFp8E4m3, CodecId::kInt8, CodecId::kInt4}) {
      const size_t stored = StoredSize(c, s);
      const std::string cname = CodecLabel(c) + VersionSuffix(c, s);
      const double target = TargetFor(c, false, block);
      const int version = BlobVersionFor(c, s);
      add("encode " + cname, block + stored,
          Time([&](size_t i) {
                 CheckResult(EncodeOnDevice(c, s, 1, blocks + (i % slots) * block,
                                            blobs + (i % slots) * stride, stride, nullptr),
                             "encode");
               },
               opt.quick),
          target, version);
      add("decode " + cname, block + stored,
          Time([&](size_t i) {
                 CheckResult(DecodeOnDevice(c, s, 1, blobs + (i % slots) * stride, stride,
                                            copies + (i % slots) * block, block, err, nullptr),
                             "decode");
               },
               opt.quick),
          target, version);
    }

    // Page pools spanning the rotation size; random distinct page lists.
    const uint32_t pages_per_block = s.block_tokens / page_size;
    const size_t page_bytes = size_t{2} * page_size * s.num_kv_heads * s.head_dim * 2;
    const uint32_t num_pages = static_cast<uint32_t>(std::max<size_t>(
        pages_per_block * 2, rotate_bytes / (page_bytes * s.num_layers) + pages_per_block));
    std::vector<void*> bases;
    for (uint32_t l = 0; l < s.num_layers; ++l) {
      bases.push_back(Alloc(size_t{num_pages} * page_bytes, &owned));
      FillFp16(bases.back(), size_t{num_pages} * page_bytes, 10 + l);
    }
    const PagedKvDesc vllm = VllmPagedLayout(s.num_layers, s.num_kv_heads, s.head_dim, page_size,
                                             num_pages, ElemType::kFp16, bases);
    void* lm_base = Alloc(size_t{num_pages} * page_bytes * s.num_layers, &owned);
    FillFp16(lm_base, size_t{num_pages} * page_bytes * s.num_layers, 99);
    const PagedKvDesc lm = LayerMajorPagedLayout(s.num_layers, s.num_kv_heads, s.head_dim,
                                                 page_size, num_pages, ElemType::kFp16, lm_base);
    std::vector<std::vector<int32_t>> lists;
    std::mt19937 rng(7);
    for (int k = 0; k < 64; ++k) {
      std::vector<int32_t> all(num_pages);
      std::iota(all.begin(), all.end(), 0);
      std::shuffle(all.begin(), all.end(), rng);
      all.resize(pages_per_block);
      lists.push_back(all);
    }
    auto gather = [&](const PagedKvDesc& d, CodecId c, const std::string& kind) {
      const std::string label = c == CodecId::kNone ? "gather " + kind
                                                    : std::string("gather+") + CodecLabel(c) +
                                                          VersionSuffix(c, s) + " " + kind;
      add(label, block + StoredSize(c, s),
          Time([&](size_t i) {
                 const auto& ids = lists[i % lists.size()];
                 CheckResult(GatherOnDevice(d, s, ids.data(), ids.size(), c, 1,
                                            blobs + (i % slots) * stride, stride, nullptr),
                             label.c_str());
               },
               opt.quick),
          TargetFor(c, true, block), c == CodecId::kNone ? 0 : BlobVersionFor(c, s));
    };
    auto scatter = [&](const PagedKvDesc& d, CodecId c, const std::string& kind) {
      const std::string label = c == CodecId::kNone ? "scatter " + kind
                                                    : std::string(CodecLabel(c)) + "+scatter" +
                                                          VersionSuffix(c, s) + " " + kind;
      // Blobs must carry the right header for the codec: encode them first.
      for (size_t k = 0; k < slots; ++k) {
        CheckResult(EncodeOnDevice(c, s, 1, blocks + k * block, blobs + k * stride, stride,
                                   nullptr),
                    "encode for scatter");
      }
      add(label, block + StoredSize(c, s),
          Time([&](size_t i) {
                 const auto& ids = lists[i % lists.size()];
                 CheckResult(ScatterOnDevice(d, s, ids.data(), ids.size(), c, 1,
                                             blobs + (i % slots) * stride, stride, err, nullptr),
                             label.c_str());
               },
               opt.quick),
          TargetFor(c, true, block), c == CodecId::kNone ? 0 : BlobVersionFor(c, s));
    };
    gather(vllm, CodecId::kNone, "vllm");
    gather(lm, CodecId::kNone, "layer-major");
    for (CodecId c : {CodecId::kFp8E4m3, CodecId::kInt8, CodecId::kInt4}) gather(vllm, c, "vllm");
    scatter(vllm, CodecId::kNone, "vllm");
    scatter(lm, CodecId::kNone, "layer-major");
    for (CodecId c : {CodecId::kFp8E4m3, CodecId::kInt8, CodecId::kInt4}) scatter(vllm, c, "vllm");
    CHECK_CUDA(cudaDeviceSynchronize());
    for (void* p : owned) CHECK_CUDA(cudaFree(p));
  }

  // 64 pages into one block: one gather launch vs 64 (and vs the 128 the
  // layout really needs, K and V apart) cudaMemcpyAsync calls.
  void RunGather64() {
    const uint32_t page_size = 16;
    const KvShape s{1, 8, 128, 64 * page_size, ElemType::kFp16};
    std::vector<void*> owned;
    const size_t block = s.BytesPerBlock();
    const size_t page_bytes = size_t{2} * page_size * 8 * 128 * 2;
    const uint32_t num_pages =
        static_cast<uint32_t>(std::max<size_t>(256, rotate_bytes / page_bytes));
    void* pool = Alloc(size_t{num_pages} * page_bytes, &owned);
    const size_t slots = std::max<size_t>(2, rotate_bytes / block);
    char* out = static_cast<char*>(Alloc(slots * block, &owned));
    const PagedKvDesc d = VllmPagedLayout(1, 8, 128, page_size, num_pages, ElemType::kFp16, {pool});
    std::vector<std::vector<int32_t>> lists;
    std::mt19937 rng(3);
    for (int k = 0; k < 32; ++k) {
      std::vector<int32_t> all(num_pages);
      std::iota(all.begin(), all.end(), 0);
      std::shuffle(all.begin(), all.end(), rng);
      all.resize(64);
      lists.push_back(all);
    }
    const std::string name = ShapeName(s, page_size) + " (64 pages)";
    const double kernel = Time(
        [&](size_t i) {
          const auto& ids = lists[i % lists.size()];
          CheckResult(GatherOnDevice(d, s, ids.data(), 64, CodecId::kNone, 0,
                                     out + (i % slots) * block, block, nullptr),
                      "gather64");
        },
        opt.quick);
    const double memcpy64 = Time(
        [&](size_t i) {
          const auto& ids = lists[i % lists.size()];
          char* dst = out + (i % slots) * block;
          for (int p = 0; p < 64; ++p) {
            CHECK_CUDA(cudaMemcpyAsync(dst + p * page_bytes,
                                       static_cast<char*>(pool) + size_t(ids[p]) * page_bytes,
                                       page_bytes, cudaMemcpyDeviceToDevice, nullptr));
          }
        },
        opt.quick);
    const size_t half = page_bytes / 2;
    const double memcpy128 = Time(
        [&](size_t i) {
          const auto& ids = lists[i % lists.size()];
          char* dst = out + (i % slots) * block;
          for (int p = 0; p < 64; ++p) {
            for (int kv = 0; kv < 2; ++kv) {
              CHECK_CUDA(cudaMemcpyAsync(
                  dst + kv * (block / 2) + p * half,
                  static_cast<char*>(pool) + size_t(ids[p]) * page_bytes + kv * half, half,
                  cudaMemcpyDeviceToDevice, nullptr));
            }
          }
        },
        opt.quick);
    rows.push_back({"gather64 kernel", name, block, 2 * block, kernel, memcpy64});
    rows.push_back({"64 x cudaMemcpyAsync", name, block, 2 * block, memcpy64, memcpy64});
    rows.push_back({"128 x cudaMemcpyAsync (K,V)", name, block, 2 * block, memcpy128, memcpy64});
    std::printf("gather of 64 pages: %.1f us; 64 cudaMemcpyAsync: %.1f us (%.1fx); 128 (K,V "
                "apart, what the layout needs): %.1f us (%.1fx)\n",
                kernel * 1e6, memcpy64 * 1e6, memcpy64 / kernel, memcpy128 * 1e6,
                memcpy128 / kernel);
    for (void* p : owned) CHECK_CUDA(cudaFree(p));
  }

  void Print() const {
    std::printf("%-28s %-26s %10s %10s %10s %9s  %s\n", "kernel", "shape (fp16)", "block",
                "time us", "GB/s r+w", "vs memcpy", "target");
    int with_target = 0, met = 0;
    for (const Row& r : rows) {
      char target[32] = "";
      if (r.target > 0) {
        std::snprintf(target, sizeof(target), ">=%.0f%% %s", 100 * r.target,
                      r.Meets() ? "ok" : "MISS");
        ++with_target;
        met += r.Meets();
      }
      std::printf("%-28s %-26s %9.2fM %10.2f %10.1f %8.0f%%  %s\n", r.kernel.c_str(),
                  r.shape.c_str(), r.block_bytes / 1048576.0, r.seconds * 1e6, r.Bw() / 1e9,
                  100 * r.Ratio(), target);
    }
    std::printf("targets met: %d of %d\n", met, with_target);
  }

  bool WriteJson(const std::string& path, const cudaDeviceProp& prop) const {
    FILE* f = std::fopen(path.c_str(), "w");
    if (f == nullptr) return false;
    std::fprintf(f, "{\"device\": \"%s\", \"rows\": [\n", prop.name);
    for (size_t i = 0; i < rows.size(); ++i) {
      const Row& r = rows[i];
      std::fprintf(f,
                   "  {\"kernel\": \"%s\", \"shape\": \"%s\", \"block_bytes\": %zu, "
                   "\"moved_bytes\": %zu, \"seconds\": %.9g, \"bytes_per_s\": %.6g, "
                   "\"memcpy_bytes_per_s\": %.6g, \"ratio_to_memcpy\": %.4f, "
                   "\"format_version\": %d, \"target_ratio\": %.2f, \"meets_target\": %s}%s\n",
                   r.kernel.c_str(), r.shape.c_str(), r.block_bytes, r.moved_bytes, r.seconds,
                   r.Bw(), r.MemcpyBw(), r.Ratio(), r.version, r.target,
                   r.Meets() ? "true" : "false", i + 1 < rows.size() ? "," : "");
    }
    std::fprintf(f, "]}\n");
    return std::fclose(f) == 0;
  }
};

}  // namespace

int main(int argc, char** argv) {
  Options opt;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--json") == 0 && i + 1 < argc) {
      opt.json = argv[++i];
    } else if (std::strcmp(argv[i], "--quick") == 0) {
      opt.quick = true;
    } else {
      std::fprintf(stderr, "usage: %s [--json FILE] [--quick]\n", argv[0]);
      return 2;
    }
  }
  int n = 0;
  const cudaError_t err = cudaGetDeviceCount(&n);
  if (err != cudaSuccess || n == 0) {
    std::printf("kvf-kernel-bench: no CUDA device (%s); nothing to measure\n",
                err != cudaSuccess ? cudaGetErrorString(err) : "the driver reports none");
    return 0;
  }
  cudaDeviceProp prop;
  CHECK_CUDA(cudaGetDeviceProperties(&prop, 0));
  Bench b;
  b.opt = opt;
  b.rotate_bytes = std::max<size_t>(size_t{4} * prop.l2CacheSize, size_t{256} << 20);
  std::printf("device: %s, %d SMs, L2 %d MiB; buffers rotate over %zu MiB\n", prop.name,
              prop.multiProcessorCount, prop.l2CacheSize >> 20, b.rotate_bytes >> 20);
  for (uint32_t layers : {8u, 32u}) {
    for (uint32_t tokens : {16u, 64u, 256u}) {
      if (layers == 8 && tokens != 16) continue;
      b.RunShape(KvShape{layers, 8, 128, tokens, ElemType::kFp16}, 16);
    }
  }
  b.RunGather64();
  b.Print();
  if (!opt.json.empty() && !b.WriteJson(opt.json, prop)) {
    std::fprintf(stderr, "cannot write %s\n", opt.json.c_str());
    return 1;
  }
  return 0;
}
