// The shard store's disk tier: a get of a 256 KiB block that lives on disk
// (read, verify, promote into memory, copy out), and a put that demotes a
// victim to disk, with p50/p99 from every call.
//
//   build/release/bench/micro/kvf_disk_bench [--disk_dir DIR] [benchmark flags]
//
// DIR (default $TMPDIR or /tmp) should be on the SSD to measure; the file is
// removed at the end. O_DIRECT: the page cache plays no part.
#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "benchmark/benchmark.h"
#include "common/process.h"
#include "node/shard_store.h"

namespace kvf {
namespace {

constexpr uint64_t kKiB = 1024;
constexpr uint64_t kMiB = 1024 * kKiB;
constexpr uint64_t kBlock = 256 * kKiB;
constexpr uint64_t kBlocks = 256;  // 64 MiB of blocks

std::string g_disk_dir;

NamespaceSpec Spec() {
  NamespaceSpec s;
  s.model_id = "disk-bench";
  s.layout = {.num_layers = 1, .num_kv_heads = 1, .head_dim = 128,
              .block_tokens = static_cast<uint32_t>(kBlock / (2 * 128 * 2))};
  return s;
}

struct Fixture {
  std::string dir;
  std::unique_ptr<ShardStore> store;
  NamespaceId ns = 0;
  std::vector<std::byte> data = std::vector<std::byte>(kBlock);

  explicit Fixture(uint64_t host_bytes) {
    dir = g_disk_dir + "/kvf-disk-bench-XXXXXX";
    if (::mkdtemp(dir.data()) == nullptr) std::abort();
    ShardStoreOptions o;
    o.host_bytes = host_bytes;
    o.pin_host = false;
    o.disk_path = dir;
    o.disk_bytes = 512 * kMiB;
    store = *ShardStore::Create(o);
    ns = *store->RegisterNamespace(Spec());
    for (size_t i = 0; i < data.size(); ++i) data[i] = std::byte(i * 131);
  }
  ~Fixture() {
    store.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
  static BlockKey Key(uint64_t i) { return BlockKey{0xb10c, i}; }
};

void Percentiles(benchmark::State& state, std::vector<double>& us) {
  if (us.empty()) return;
  std::sort(us.begin(), us.end());
  state.counters["p50_us"] = us[us.size() / 2];
  state.counters["p99_us"] = us[std::min(us.size() - 1, us.size() * 99 / 100)];
  state.counters["max_us"] = us.back();
}

// A get of a block on disk, with room in memory for it (no demotion).
void BM_DiskGet_256KiB(benchmark::State& state) {
  Fixture f(128 * kMiB);
  for (uint64_t i = 0; i < kBlocks; ++i) (void)f.store->Put(f.ns, Fixture::Key(i), f.data);
  f.store->EvictToTarget(0);  // every block on disk
  std::vector<std::byte> dst(kBlock);
  std::vector<double> us;
  uint64_t next = 0;
  for (auto _ : state) {
    if (next == kBlocks) {
      state.PauseTiming();
      f.store->EvictToTarget(0);
      next = 0;
      state.ResumeTiming();
    }
    const auto t0 = std::chrono::steady_clock::now();
    auto got = f.store->Get(f.ns, Fixture::Key(next++), absl::MakeSpan(dst));
    const auto t1 = std::chrono::steady_clock::now();
    if (!got.ok() || got->size != kBlock) state.SkipWithError("get failed");
    us.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
  }
  state.SetBytesProcessed(state.iterations() * kBlock);
  Percentiles(state, us);
}
BENCHMARK(BM_DiskGet_256KiB)->Iterations(2048)->Unit(benchmark::kMicrosecond);

// A get of a block on disk into a full memory tier: the read plus a victim's
// demotion (a batched write).
void BM_DiskGet_256KiB_FullMemory(benchmark::State& state) {
  Fixture f(32 * kMiB);  // holds 128 of the 256 blocks
  for (uint64_t i = 0; i < kBlocks; ++i) (void)f.store->Put(f.ns, Fixture::Key(i), f.data);
  std::vector<std::byte> dst(kBlock);
  std::vector<double> us;
  uint64_t next = 0;
  for (auto _ : state) {
    const auto t0 = std::chrono::steady_clock::now();
    auto got = f.store->Get(f.ns, Fixture::Key(next), absl::MakeSpan(dst));
    const auto t1 = std::chrono::steady_clock::now();
    next = (next + 1) % kBlocks;  // cyclic over twice memory: every get misses memory
    if (!got.ok()) state.SkipWithError("get failed");
    us.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
  }
  state.SetBytesProcessed(state.iterations() * kBlock);
  Percentiles(state, us);
}
BENCHMARK(BM_DiskGet_256KiB_FullMemory)->Iterations(2048)->Unit(benchmark::kMicrosecond);

// A get of a block in memory, for comparison.
void BM_MemoryGet_256KiB(benchmark::State& state) {
  Fixture f(128 * kMiB);
  for (uint64_t i = 0; i < kBlocks; ++i) (void)f.store->Put(f.ns, Fixture::Key(i), f.data);
  std::vector<std::byte> dst(kBlock);
  std::vector<double> us;
  uint64_t next = 0;
  for (auto _ : state) {
    const auto t0 = std::chrono::steady_clock::now();
    auto got = f.store->Get(f.ns, Fixture::Key(next), absl::MakeSpan(dst));
    const auto t1 = std::chrono::steady_clock::now();
    next = (next + 1) % kBlocks;
    if (!got.ok()) state.SkipWithError("get failed");
    us.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
  }
  Percentiles(state, us);
}
BENCHMARK(BM_MemoryGet_256KiB)->Iterations(2048)->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace kvf

int main(int argc, char** argv) {
  kvf::ConfigureProcessForServing();
  const char* tmp = std::getenv("TMPDIR");
  kvf::g_disk_dir = tmp && *tmp ? tmp : "/tmp";
  std::vector<char*> rest;
  for (int i = 0; i < argc; ++i) {
    const std::string a = argv[i];
    if (a.rfind("--disk_dir=", 0) == 0) {
      kvf::g_disk_dir = a.substr(11);
    } else {
      rest.push_back(argv[i]);
    }
  }
  int n = static_cast<int>(rest.size());
  benchmark::Initialize(&n, rest.data());
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
