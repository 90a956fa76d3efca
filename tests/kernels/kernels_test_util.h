// Helpers for the kernel-core tests (Abseil-free, so the GPU tests also build
// in kernels/standalone/ with only CUDA and GoogleTest): synthetic KV with
// outlier channels, dtype conversion, random page tables, and a move-only
// device buffer for tests.
#ifndef KVF_TESTS_KERNELS_KERNELS_TEST_UTIL_H_
#define KVF_TESTS_KERNELS_KERNELS_TEST_UTIL_H_

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "kernels/core/paged.h"
#include "kernels/core/types.h"
#include "kernels/internal/codec_math.h"

namespace kvf::testing {

inline kcore::KvShape Shape(uint32_t layers, uint32_t heads, uint32_t dim, uint32_t tokens,
                            kcore::ElemType dtype = kcore::ElemType::kFp16) {
  kcore::KvShape s;
  s.num_layers = layers;
  s.num_kv_heads = heads;
  s.head_dim = dim;
  s.block_tokens = tokens;
  s.dtype = dtype;
  return s;
}

inline std::string ShapeName(const kcore::KvShape& s) {
  return "L=" + std::to_string(s.num_layers) + " H=" + std::to_string(s.num_kv_heads) +
         " D=" + std::to_string(s.head_dim) + " T=" + std::to_string(s.block_tokens) +
         " dtype=" + std::to_string(static_cast<int>(s.dtype));
}

inline const CodecId kCoreCodecs[] = {CodecId::kNone, CodecId::kFp8E4m3, CodecId::kInt8,
                                      CodecId::kInt4};
inline const kcore::ElemType kCoreDTypes[] = {kcore::ElemType::kFp16, kcore::ElemType::kBf16,
                                              kcore::ElemType::kFp32};

// Floats written as `dtype` (rounded to nearest even).
inline std::vector<std::byte> Encode(const std::vector<float>& v, kcore::ElemType dtype) {
  std::vector<std::byte> out(v.size() * kcore::ElemSize(dtype));
  for (size_t i = 0; i < v.size(); ++i) {
    if (dtype == kcore::ElemType::kFp32) {
      std::memcpy(out.data() + 4 * i, &v[i], 4);
    } else {
      const uint16_t h = dtype == kcore::ElemType::kFp16 ? internal::FloatToHalf(v[i])
                                                         : internal::FloatToBf16(v[i]);
      std::memcpy(out.data() + 2 * i, &h, 2);
    }
  }
  return out;
}

// `n` values of N(0, 1) with outlier channels: every `period`-th channel
// (with a random phase) is scaled 10-50x, the way real K caches look.
inline std::vector<float> RandomKvValues(size_t n, size_t channels, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_real_distribution<float> gain(10.0f, 50.0f);
  std::vector<float> channel_gain(std::max<size_t>(channels, 1), 1.0f);
  for (size_t c = 0; c < channel_gain.size(); ++c) {
    if (rng() % 16 == 0) channel_gain[c] = gain(rng);
  }
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = normal(rng) * channel_gain[i % channel_gain.size()];
  return v;
}

// A random block of `shape` (canonical order) in its dtype.
inline std::vector<std::byte> RandomBlock(const kcore::KvShape& s, uint32_t seed) {
  return Encode(RandomKvValues(s.ElementsPerBlock(), size_t{s.num_kv_heads} * s.head_dim, seed),
                s.dtype);
}

// Random bytes that are finite values of `dtype` (for page pools).
inline std::vector<std::byte> RandomElements(size_t count, kcore::ElemType dtype, uint32_t seed) {
  return Encode(RandomKvValues(count, 128, seed), dtype);
}

// `n` distinct page ids out of [0, num_pages), in random order.
inline std::vector<int32_t> RandomPages(size_t n, uint32_t num_pages, uint32_t seed) {
  std::vector<int32_t> all(num_pages);
  std::iota(all.begin(), all.end(), 0);
  std::mt19937 rng(seed);
  std::shuffle(all.begin(), all.end(), rng);
  all.resize(n);
  return all;
}

inline constexpr uint64_t kTestFingerprint = 0x0123456789abcdefull;

}  // namespace kvf::testing

#endif  // KVF_TESTS_KERNELS_KERNELS_TEST_UTIL_H_
