// Synthetic KV blocks and the errors a codec leaves in them, for tests that
// store real-looking KV in a cluster (mixed_precision_test.cc). Blocks come
// from kernels/codec_quality.h (outlier K channels, as real caches have).
#ifndef KVF_TESTS_CLUSTER_KV_BLOCKS_H_
#define KVF_TESTS_CLUSTER_KV_BLOCKS_H_

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <random>
#include <vector>

#include "common/kv_layout.h"
#include "gtest/gtest.h"
#include "kernels/codec.h"
#include "kernels/codec_quality.h"

namespace kvf::testing {

using Blocks = std::vector<std::vector<std::byte>>;

inline Blocks KvBlocks(const KvLayout& layout, size_t n, uint32_t seed) {
  auto all = SyntheticKvBlocks(layout, SyntheticKvKind::kOutliers, n, seed);
  EXPECT_TRUE(all.ok()) << all.status();
  Blocks out(n);
  if (!all.ok()) return out;
  const size_t bytes = layout.BytesPerBlock();
  for (size_t i = 0; i < n; ++i)
    out[i].assign(all->begin() + i * bytes, all->begin() + (i + 1) * bytes);
  return out;
}

// What a block stored with `codec` must read back as, bit for bit.
inline std::vector<std::byte> RoundTrip(const KvLayout& layout, CodecId codec,
                                        const std::vector<std::byte>& raw) {
  if (codec == CodecId::kNone) return raw;
  std::vector<std::byte> blob(CpuCodec(codec).EncodedSize(layout));
  std::vector<std::byte> back(raw.size());
  EXPECT_TRUE(CpuCodec(codec).Encode(layout, raw, absl::MakeSpan(blob)).ok());
  EXPECT_TRUE(CpuCodec(codec).Decode(layout, blob, absl::MakeSpan(back)).ok());
  return back;
}

inline std::vector<float> Floats(const KvLayout& layout, const Blocks& blocks) {
  std::vector<float> out;
  for (const auto& b : blocks) {
    std::vector<float> f = BlockToFloats(b, layout.dtype);
    out.insert(out.end(), f.begin(), f.end());
  }
  return out;
}

inline double RelL2(const std::vector<float>& want, const std::vector<float>& got) {
  double err = 0, norm = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    err += (double{got[i]} - want[i]) * (double{got[i]} - want[i]);
    norm += double{want[i]} * want[i];
  }
  return norm == 0 ? 0 : std::sqrt(err / norm);
}

struct AttentionError {
  double rel_l2 = 0;
  double cosine = 1;
};

// Attention softmax(q K^T / sqrt(D)) V over the *whole* sequence (every token
// of every block, as a decode step reads it), per (layer, head) with
// `queries` random N(0, 1) queries, from original vs decoded KV. Each
// argument is the sequence's blocks as floats, concatenated.
inline AttentionError SequenceAttentionError(const KvLayout& layout, const std::vector<float>& want,
                                             const std::vector<float>& got, size_t num_blocks,
                                             int queries) {
  const size_t L = layout.num_layers, H = layout.num_kv_heads, D = layout.head_dim,
               T = layout.block_tokens, N = num_blocks * T;
  const size_t per_block = layout.ElementsPerBlock();
  auto at = [&](const std::vector<float>& kv, size_t l, int k_or_v, size_t token, size_t h) {
    const size_t b = token / T, t = token % T;
    return &kv[b * per_block + ((l * 2 + k_or_v) * T + t) * H * D + h * D];
  };
  std::mt19937 rng(99);
  std::normal_distribution<double> normal;
  double err = 0, norm = 0, dot = 0, norm_got = 0;
  std::vector<double> q(D), lw(N), lg(N);
  for (size_t l = 0; l < L; ++l) {
    for (size_t h = 0; h < H; ++h) {
      for (int qi = 0; qi < queries; ++qi) {
        for (double& x : q) x = normal(rng);
        for (const auto* kv : {&want, &got}) {
          std::vector<double>& logits = kv == &want ? lw : lg;
          double max = -1e300;
          for (size_t n = 0; n < N; ++n) {
            const float* k = at(*kv, l, 0, n, h);
            double s = 0;
            for (size_t d = 0; d < D; ++d) s += q[d] * k[d];
            logits[n] = s / std::sqrt(double(D));
            max = std::max(max, logits[n]);
          }
          double sum = 0;
          for (double& x : logits) sum += (x = std::exp(x - max));
          for (double& x : logits) x /= sum;
        }
        for (size_t d = 0; d < D; ++d) {
          double ow = 0, og = 0;
          for (size_t n = 0; n < N; ++n) {
            ow += lw[n] * at(want, l, 1, n, h)[d];
            og += lg[n] * at(got, l, 1, n, h)[d];
          }
          err += (og - ow) * (og - ow);
          norm += ow * ow;
          norm_got += og * og;
          dot += ow * og;
        }
      }
    }
  }
  return {std::sqrt(err / norm), dot / std::sqrt(norm * norm_got)};
}

}  // namespace kvf::testing

#endif  // KVF_TESTS_CLUSTER_KV_BLOCKS_H_
