// Encode/decode throughput of the CPU codecs on fp16 blocks of ~1 MiB and
// ~4 MiB (bytes/s counts the unencoded block). Run:
//   build/bench/micro/kvf_codec_bench --benchmark_filter=Codec
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "benchmark/benchmark.h"
#include "kernels/codec.h"
#include "kernels/internal/codec_math.h"

namespace kvf {
namespace {

// Llama-3-8B shape (H=8, D=128) with 8 layers: T=32 is 1 MiB, T=128 4 MiB.
KvLayout BenchLayout(uint32_t tokens) {
  KvLayout l;
  l.num_layers = 8;
  l.num_kv_heads = 8;
  l.head_dim = 128;
  l.block_tokens = tokens;
  l.dtype = DType::kFp16;
  return l;
}

std::vector<std::byte> RandomBlock(const KvLayout& l) {
  std::mt19937 rng(1);
  std::normal_distribution<float> n01(0.0f, 1.0f);
  std::vector<std::byte> b(l.BytesPerBlock());
  for (size_t i = 0; i < l.ElementsPerBlock(); ++i) {
    const uint16_t h = internal::FloatToHalf(n01(rng) * (i % 128 == 5 ? 30.0f : 1.0f));
    std::memcpy(b.data() + 2 * i, &h, 2);
  }
  return b;
}

void BM_CodecEncode(benchmark::State& state) {
  const Codec& codec = CpuCodec(static_cast<CodecId>(state.range(0)));
  const KvLayout l = BenchLayout(static_cast<uint32_t>(state.range(1)));
  const std::vector<std::byte> block = RandomBlock(l);
  std::vector<std::byte> out(codec.EncodedSize(l));
  for (auto _ : state) {
    absl::Status s = codec.Encode(l, block, absl::MakeSpan(out));
    benchmark::DoNotOptimize(s);
    benchmark::DoNotOptimize(out.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * l.BytesPerBlock()));
  state.SetLabel(std::string(CodecName(codec.id())));
}

void BM_CodecDecode(benchmark::State& state) {
  const Codec& codec = CpuCodec(static_cast<CodecId>(state.range(0)));
  const KvLayout l = BenchLayout(static_cast<uint32_t>(state.range(1)));
  const std::vector<std::byte> block = RandomBlock(l);
  std::vector<std::byte> enc(codec.EncodedSize(l));
  if (!codec.Encode(l, block, absl::MakeSpan(enc)).ok()) {
    state.SkipWithError("encode failed");
    return;
  }
  std::vector<std::byte> out(l.BytesPerBlock());
  for (auto _ : state) {
    absl::Status s = codec.Decode(l, enc, absl::MakeSpan(out));
    benchmark::DoNotOptimize(s);
    benchmark::DoNotOptimize(out.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * l.BytesPerBlock()));
  state.SetLabel(std::string(CodecName(codec.id())));
}

// Args: {codec id, block_tokens}.
#define KVF_CODEC_ARGS ArgsProduct({{0, 1, 2, 3}, {32, 128}})->Unit(benchmark::kMicrosecond)
BENCHMARK(BM_CodecEncode)->KVF_CODEC_ARGS;
BENCHMARK(BM_CodecDecode)->KVF_CODEC_ARGS;

}  // namespace
}  // namespace kvf

BENCHMARK_MAIN();
