// Helpers shared by the codec tests: layouts, synthetic KV blocks with
// outlier channels, dtype conversion, encode/decode round trips.
#ifndef KVF_TESTS_KERNELS_CODEC_TEST_UTIL_H_
#define KVF_TESTS_KERNELS_CODEC_TEST_UTIL_H_

#include <cstddef>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/kv_layout.h"
#include "kernels/codec.h"
#include "kernels/codec_quality.h"

namespace kvf::testing {

inline KvLayout MakeLayout(uint32_t layers, uint32_t heads, uint32_t dim, uint32_t tokens,
                           DType dtype = DType::kFp16) {
  KvLayout l;
  l.num_layers = layers;
  l.num_kv_heads = heads;
  l.head_dim = dim;
  l.block_tokens = tokens;
  l.dtype = dtype;
  return l;
}

inline const CodecId kAllCodecs[] = {CodecId::kNone, CodecId::kFp8E4m3, CodecId::kInt8,
                                     CodecId::kInt4};
inline const DType kAllDTypes[] = {DType::kFp16, DType::kBf16, DType::kFp32};

// Floats <-> a block of `dtype` (rounded to nearest even): the library's
// conversion (kernels/codec_quality.h), for vectors.
inline std::vector<std::byte> ToBlock(const std::vector<float>& v, DType dtype) {
  return FloatsToBlock(v, dtype);
}

inline std::vector<float> FromBlock(const std::vector<std::byte>& b, DType dtype) {
  return BlockToFloats(b, dtype);
}

// Synthetic KV in canonical order [L][2][T][H][D]: N(0, 1) values, plus a
// few outlier channels per (layer, head) in K that are 10-50x larger (what
// real K caches show, the reason KIVI quantises K per channel), and a milder
// per-token magnitude spread in V.
inline std::vector<float> SyntheticKv(const KvLayout& l, uint32_t seed,
                                      int outliers_per_head = 4) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_real_distribution<float> uni(10.0f, 50.0f);
  const size_t T = l.block_tokens, H = l.num_kv_heads, D = l.head_dim;
  std::vector<float> v(l.ElementsPerBlock());
  std::vector<float> channel_gain(H * D);
  std::vector<float> token_gain(T);
  for (size_t layer = 0; layer < l.num_layers; ++layer) {
    for (size_t kv = 0; kv < 2; ++kv) {
      std::fill(channel_gain.begin(), channel_gain.end(), 1.0f);
      if (kv == 0) {
        for (size_t h = 0; h < H; ++h) {
          for (int o = 0; o < outliers_per_head && D > 1; ++o) {
            channel_gain[h * D + rng() % D] = uni(rng);
          }
        }
      }
      for (size_t t = 0; t < T; ++t) token_gain[t] = kv == 1 ? 0.5f + (rng() % 100) / 50.0f : 1.0f;
      const size_t base = (layer * 2 + kv) * T * H * D;
      for (size_t t = 0; t < T; ++t) {
        for (size_t j = 0; j < H * D; ++j) {
          v[base + t * H * D + j] = normal(rng) * channel_gain[j] * token_gain[t];
        }
      }
    }
  }
  return v;
}

inline absl::StatusOr<std::vector<std::byte>> EncodeBlock(const Codec& codec,
                                                          const KvLayout& l,
                                                          const std::vector<std::byte>& block) {
  std::vector<std::byte> out(codec.EncodedSize(l));
  absl::Status s = codec.Encode(l, block, absl::MakeSpan(out));
  if (!s.ok()) return s;
  return out;
}

inline absl::StatusOr<std::vector<std::byte>> DecodeBlock(const Codec& codec, const KvLayout& l,
                                                          const std::vector<std::byte>& enc) {
  std::vector<std::byte> out(l.BytesPerBlock());
  absl::Status s = codec.Decode(l, enc, absl::MakeSpan(out));
  if (!s.ok()) return s;
  return out;
}

}  // namespace kvf::testing

#endif  // KVF_TESTS_KERNELS_CODEC_TEST_UTIL_H_
