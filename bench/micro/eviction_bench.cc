// Per-policy cost of the operations a full shard store performs: an eviction
// followed by an insert (a miss), and a touch (a hit), with 1M tracked entries.
#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "benchmark/benchmark.h"
#include "node/eviction_policy.h"

namespace kvf {
namespace {

constexpr EntryId kEntries = 1 << 20;

EvictionHint HintFor(uint64_t n) {
  EvictionHint h;
  h.key = BlockKey{n + 1, n * 0x9e3779b97f4a7c15ULL};
  h.parent = n % 32 == 0 ? BlockKey::Root() : BlockKey{n, (n - 1) * 0x9e3779b97f4a7c15ULL};
  h.depth = static_cast<uint32_t>(n % 32);
  h.bytes = 1024;
  return h;
}

std::unique_ptr<EvictionPolicy> Filled(const std::string& name) {
  auto policy = *CreateEvictionPolicy(name, kEntries);
  for (EntryId id = 0; id < kEntries; ++id) policy->Insert(id, HintFor(id));
  return policy;
}

void BM_Eviction_EvictInsert(benchmark::State& state, std::string name) {
  auto policy = Filled(name);
  uint64_t next = kEntries;
  std::mt19937 rng(1);
  for (auto _ : state) {
    std::optional<EntryId> victim = policy->Evict([](EntryId) { return true; });
    policy->Insert(*victim, HintFor(next++));
    // Some hits, so frequency-aware policies see a realistic mix.
    if ((next & 3) == 0) policy->Touch(*victim);
  }
  state.SetItemsProcessed(state.iterations());
}

void BM_Eviction_Touch(benchmark::State& state, std::string name) {
  auto policy = Filled(name);
  std::mt19937 rng(2);
  std::vector<EntryId> ids(1 << 16);
  for (EntryId& id : ids) id = rng() % kEntries;
  size_t i = 0;
  for (auto _ : state) {
    policy->Touch(ids[i++ & (ids.size() - 1)]);
  }
  state.SetItemsProcessed(state.iterations());
}

int Register() {
  for (std::string_view name : EvictionPolicyNames()) {
    const std::string n(name);
    benchmark::RegisterBenchmark(("BM_Eviction_EvictInsert/" + n).c_str(), BM_Eviction_EvictInsert, n);
    benchmark::RegisterBenchmark(("BM_Eviction_Touch/" + n).c_str(), BM_Eviction_Touch, n);
  }
  return 0;
}
const int kRegistered = Register();

}  // namespace
}  // namespace kvf

BENCHMARK_MAIN();
