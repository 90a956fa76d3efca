// What a copy into shared memory costs depending on whether this process has
// touched the pages before: the cost behind put throughput into an agent's
// arena (docs/benchmarks.md, "Why puts are slow on the development VM").
// Each iteration copies 256 KiB blocks over a 64 MiB shared mapping (memfd,
// as UCX's posix segments) in one of four states:
//   fresh      pages that do not exist yet: allocated and zeroed on fault
//   mapped     pages exist (another process wrote them), new mapping here:
//              one minor fault per 4 KiB page
//   populated  as `mapped`, then MADV_POPULATE_WRITE over the range (timed
//              with the copy), what the transport does per 1 MiB granule
//   warm       the same mapping copied into again
// A paravirtualised guest without nested paging pays for every first access
// to a page through a shadow page table, even after populate.
#include <sys/mman.h>
#include <unistd.h>

#include <cstring>
#include <vector>

#include "benchmark/benchmark.h"

namespace {

#ifndef MADV_POPULATE_WRITE
constexpr int MADV_POPULATE_WRITE = 23;
#endif

constexpr size_t kRegion = 64 << 20;
constexpr size_t kBlock = 256 << 10;

enum Mode { kFresh = 0, kMapped = 1, kPopulated = 2, kWarm = 3 };

void BM_CopyIntoSharedPages(benchmark::State& state) {
  const Mode mode = static_cast<Mode>(state.range(0));
  std::vector<char> src(kBlock, 7);
  int fd = memfd_create("kvf-first-touch", 0);
  if (fd < 0 || ftruncate(fd, kRegion) != 0) {
    state.SkipWithError("memfd_create/ftruncate failed");
    return;
  }
  auto map = [&] {
    return static_cast<char*>(mmap(nullptr, kRegion, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0));
  };
  char* p = map();
  for (size_t o = 0; o < kRegion; o += kBlock) std::memcpy(p + o, src.data(), kBlock);
  for (auto _ : state) {
    state.PauseTiming();
    if (mode == kFresh) {  // drop the pages: the next copy allocates them
      munmap(p, kRegion);
      (void)ftruncate(fd, 0);
      (void)ftruncate(fd, kRegion);
      p = map();
    } else if (mode != kWarm) {  // keep the pages, forget this mapping
      munmap(p, kRegion);
      p = map();
    }
    state.ResumeTiming();
    if (mode == kPopulated) (void)madvise(p, kRegion, MADV_POPULATE_WRITE);
    for (size_t o = 0; o < kRegion; o += kBlock) std::memcpy(p + o, src.data(), kBlock);
    benchmark::ClobberMemory();
  }
  munmap(p, kRegion);
  close(fd);
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * kRegion));
  static const char* kNames[] = {"fresh", "mapped", "populated", "warm"};
  state.SetLabel(kNames[mode]);
}
BENCHMARK(BM_CopyIntoSharedPages)->DenseRange(kFresh, kWarm)->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
