// Placement lookup cost: one key's R owners, and a batch of 1,000 keys.
#include <cstdint>
#include <vector>

#include "absl/strings/str_cat.h"
#include "benchmark/benchmark.h"
#include "common/placement.h"
#include "common/process.h"

namespace kvf {
namespace {

Placement Make(int n, uint32_t r) {
  std::vector<PlacementNode> nodes;
  for (int i = 1; i <= n; ++i) nodes.push_back({static_cast<NodeId>(i), absl::StrCat("rack-", i % 8), 1.0});
  RingParams p;
  p.replication = r;
  return *Placement::Build(std::move(nodes), p);
}

std::vector<uint64_t> Hashes(size_t n) {
  std::vector<uint64_t> out(n);
  uint64_t s = 1;
  for (auto& h : out) {
    uint64_t z = (s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    h = z ^ (z >> 31);
  }
  return out;
}

void BM_Placement_Owners(benchmark::State& state) {
  const Placement p = Make(static_cast<int>(state.range(0)), static_cast<uint32_t>(state.range(1)));
  const std::vector<uint64_t> hashes = Hashes(1 << 20);
  size_t i = 0;
  NodeId out[kMaxReplication];
  for (auto _ : state) {
    benchmark::DoNotOptimize(p.Owners(hashes[i++ & ((1 << 20) - 1)], absl::MakeSpan(out)));
    benchmark::ClobberMemory();
  }
}
BENCHMARK(BM_Placement_Owners)->ArgsProduct({{4, 16, 64, 256}, {1, 3}});

// 1,000 keys through Placement::OwnersBatch (prefetching pipeline).
void BM_Placement_OwnersBatch1000(benchmark::State& state) {
  const Placement p = Make(static_cast<int>(state.range(0)), static_cast<uint32_t>(state.range(1)));
  const std::vector<uint64_t> hashes = Hashes(1 << 20);
  std::vector<NodeId> out(1000 * kMaxReplication);
  size_t base = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(p.OwnersBatch(absl::MakeConstSpan(&hashes[base], 1000), absl::MakeSpan(out)));
    base += 1000;
    if (base + 1000 > hashes.size()) base = 0;
    benchmark::DoNotOptimize(out.data());
  }
  state.SetItemsProcessed(state.iterations() * 1000);
}
BENCHMARK(BM_Placement_OwnersBatch1000)->ArgsProduct({{4, 16, 64, 256}, {1, 3}});

// The same 1,000 keys as a loop of single Owners() calls, for comparison.
void BM_Placement_OwnersLoop1000(benchmark::State& state) {
  const Placement p = Make(static_cast<int>(state.range(0)), static_cast<uint32_t>(state.range(1)));
  const std::vector<uint64_t> hashes = Hashes(1 << 20);
  std::vector<NodeId> out(1000 * kMaxReplication);
  size_t base = 0;
  for (auto _ : state) {
    for (size_t k = 0; k < 1000; ++k) {
      p.Owners(hashes[(base + k) & ((1 << 20) - 1)], absl::MakeSpan(&out[k * kMaxReplication], kMaxReplication));
    }
    base += 1000;
    benchmark::DoNotOptimize(out.data());
  }
  state.SetItemsProcessed(state.iterations() * 1000);
}
BENCHMARK(BM_Placement_OwnersLoop1000)->ArgsProduct({{16, 256}, {1, 3}});

void BM_Placement_Build(benchmark::State& state) {
  for (auto _ : state) {
    benchmark::DoNotOptimize(Make(static_cast<int>(state.range(0)), static_cast<uint32_t>(state.range(1))));
  }
}
BENCHMARK(BM_Placement_Build)->ArgsProduct({{4, 16, 64, 256}, {1, 3}})->Unit(benchmark::kMillisecond);

void BM_Placement_Ranges(benchmark::State& state) {
  const Placement p = Make(static_cast<int>(state.range(0)), 3);
  for (auto _ : state) benchmark::DoNotOptimize(p.Ranges());
}
BENCHMARK(BM_Placement_Ranges)->Arg(16)->Arg(256)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace kvf

int main(int argc, char** argv) {
  kvf::ConfigureProcessForServing();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
