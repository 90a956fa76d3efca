// Encode/decode throughput of the CPU codecs on fp16 blocks of ~1 MiB and
// ~4 MiB, and of the row kernels they run (kernels/core/cpu_rows.h), portable
// and AVX2 side by side; bytes/s counts the unencoded data. Run:
//   build/bench/micro/kvf_codec_bench --benchmark_filter=Codec
//   build/bench/micro/kvf_codec_bench --benchmark_filter=Rows
// Row benchmarks are named BM_Rows<Function>/avx2:<0|1>/dtype:<0 fp16, 1 bf16,
// 2 fp32>/row:<elements per call>.
#include <algorithm>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "benchmark/benchmark.h"
#include "kernels/codec.h"
#include "kernels/core/internal/cpu_rows_impl.h"
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

// ---------------------------------------------------------------------------
// Row kernels: 256 Ki elements (512 KiB of fp16, cache-resident like one
// block's section), processed in rows of `row` elements per call. Per-channel
// arrays (centre, inv, scale, lo, hi) hold one row and serve every row, as in
// the codecs.

namespace rows = ::kvf::kcore::rows_internal;
using kcore::ElemType;

constexpr size_t kRowBenchElems = size_t{1} << 18;
constexpr size_t kRowBenchMaxRow = 1024;

struct RowBenchData {
  explicit RowBenchData(ElemType t) : type(t) {
    std::mt19937 rng(1);
    std::normal_distribution<float> n01(0.0f, 1.0f);
    const size_t es = kcore::ElemSize(t);
    in.resize(kRowBenchElems * es);
    for (size_t i = 0; i < kRowBenchElems; ++i) {
      const float f = n01(rng) * (i % 128 == 5 ? 30.0f : 1.0f);
      if (t == ElemType::kFp32) {
        std::memcpy(&in[4 * i], &f, 4);
      } else {
        const uint16_t h =
            t == ElemType::kFp16 ? internal::FloatToHalf(f) : internal::FloatToBf16(f);
        std::memcpy(&in[2 * i], &h, 2);
      }
    }
    out.resize(kRowBenchElems * es);
    codes.resize(kRowBenchElems);
    centre.resize(kRowBenchMaxRow);
    inv.resize(kRowBenchMaxRow);
    scale.resize(kRowBenchMaxRow);
    lo.assign(kRowBenchMaxRow, internal::kRangeEmptyLo);
    hi.assign(kRowBenchMaxRow, internal::kRangeEmptyHi);
    for (size_t i = 0; i < kRowBenchMaxRow; ++i) {
      centre[i] = 0.125f * static_cast<float>(i % 7) - 0.375f;
      scale[i] = 0.05f + 0.001f * static_cast<float>(i % 13);
      inv[i] = internal::Reciprocal(scale[i]);
    }
    for (size_t i = 0; i < kRowBenchElems; ++i) codes[i] = static_cast<uint8_t>(rng());
  }
  ElemType type;
  std::vector<std::byte> in, out;
  std::vector<uint8_t> codes;
  std::vector<float> centre, inv, scale, lo, hi;
};

// Runs `per_row(offset, count)` over the data in rows; state: {avx2, dtype, row}.
template <typename F>
void RunRows(benchmark::State& state, const rows::RowKernels& k, ElemType t, F per_row) {
  const size_t row = static_cast<size_t>(state.range(2));
  for (auto _ : state) {
    for (size_t i = 0; i < kRowBenchElems; i += row) per_row(i, std::min(row, kRowBenchElems - i));
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(
      static_cast<int64_t>(state.iterations() * kRowBenchElems * kcore::ElemSize(t)));
  static const char* const kTypeNames[] = {"fp16", "bf16", "fp32"};
  state.SetLabel(std::string(k.name) + " " + kTypeNames[static_cast<int>(t)]);
}

const rows::RowKernels* RowImpl(benchmark::State& state) {
  const rows::RowKernels* k = state.range(0) == 0 ? &rows::PortableRows() : rows::Avx2Rows();
  if (k == nullptr) state.SkipWithError("this CPU has no AVX2 + F16C");
  return k;
}

#define KVF_ROW_BENCH(name, body)                             \
  void BM_Rows##name(benchmark::State& state) {               \
    const rows::RowKernels* k = RowImpl(state);               \
    if (k == nullptr) return;                                 \
    const ElemType t = static_cast<ElemType>(state.range(1)); \
    RowBenchData d(t);                                        \
    const size_t es = kcore::ElemSize(t);                     \
    RunRows(state, *k, t, [&](size_t i, size_t n) { body; }); \
  }                                                           \
  BENCHMARK(BM_Rows##name)                                    \
      ->ArgNames({"avx2", "dtype", "row"})                    \
      ->ArgsProduct({{0, 1}, {0, 1, 2}, {128, 1024}})

KVF_ROW_BENCH(AbsMax, benchmark::DoNotOptimize(k->abs_max(t, d.in.data() + es * i, n)));
KVF_ROW_BENCH(MinMax, k->min_max(t, d.in.data() + es * i, n, d.lo.data(), d.hi.data()));
KVF_ROW_BENCH(EncodeFp8,
              k->encode_fp8(t, d.in.data() + es * i, n, nullptr, 3.5f, d.codes.data() + i));
KVF_ROW_BENCH(EncodeFp8Centred,
              k->encode_fp8(t, d.in.data() + es * i, n, d.centre.data(), 3.5f, d.codes.data() + i));
KVF_ROW_BENCH(EncodeInt8, k->encode_int8(t, d.in.data() + es * i, n, 12.0f, d.codes.data() + i));
KVF_ROW_BENCH(EncodeInt8Channels,
              k->encode_int8_channels(t, d.in.data() + es * i, n, d.centre.data(), d.inv.data(),
                                      d.codes.data() + i));
KVF_ROW_BENCH(DecodeFp8,
              k->decode_fp8(d.codes.data() + i, n, nullptr, 0.3f, t, d.out.data() + es * i));
KVF_ROW_BENCH(DecodeFp8Centred, k->decode_fp8(d.codes.data() + i, n, d.centre.data(), 0.3f, t,
                                              d.out.data() + es * i));
KVF_ROW_BENCH(DecodeInt8, k->decode_int8(d.codes.data() + i, n, 0.08f, t, d.out.data() + es * i));
KVF_ROW_BENCH(DecodeInt8Channels,
              k->decode_int8_channels(d.codes.data() + i, n, d.centre.data(), d.scale.data(), t,
                                      d.out.data() + es * i));

#undef KVF_ROW_BENCH

}  // namespace
}  // namespace kvf

BENCHMARK_MAIN();
