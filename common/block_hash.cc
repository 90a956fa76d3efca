#include "common/block_hash.h"

#include <bit>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/internal/sha256.h"
#include "xxhash.h"

namespace kvf {
namespace {

static_assert(std::endian::native == std::endian::little,
              "block hashing encodes little endian; add byte swaps for this target");

constexpr char kDomain[] = "kvfb1";

// Feeds the canonical encoding (see block_hash.h) to a streaming hasher.
template <typename Sink>
void Encode(Sink& sink, const BlockKey& parent, absl::Span<const uint32_t> tokens,
            std::string_view extra) {
  sink(kDomain, sizeof(kDomain) - 1);
  sink(&parent.hi, sizeof(parent.hi));
  sink(&parent.lo, sizeof(parent.lo));
  const uint32_t count = static_cast<uint32_t>(tokens.size());
  sink(&count, sizeof(count));
  sink(tokens.data(), tokens.size() * sizeof(uint32_t));
  const uint32_t extra_len = static_cast<uint32_t>(extra.size());
  sink(&extra_len, sizeof(extra_len));
  sink(extra.data(), extra.size());
}

}  // namespace

absl::StatusOr<HashAlgorithm> ParseHashAlgorithm(std::string_view name) {
  if (name == "xxh3_128" || name == "xxh3") return HashAlgorithm::kXxh3_128;
  if (name == "sha256") return HashAlgorithm::kSha256;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown hash algorithm '", std::string(name), "' (want xxh3_128 or sha256)"));
}

std::string_view HashAlgorithmName(HashAlgorithm algorithm) {
  switch (algorithm) {
    case HashAlgorithm::kXxh3_128: return "xxh3_128";
    case HashAlgorithm::kSha256: return "sha256";
  }
  return "unknown";
}

BlockKey HashBlock(HashAlgorithm algorithm, const BlockKey& parent,
                   absl::Span<const uint32_t> tokens, std::string_view extra) {
  if (algorithm == HashAlgorithm::kSha256) {
    internal::Sha256 sha;
    auto sink = [&sha](const void* p, size_t n) { sha.Update(p, n); };
    Encode(sink, parent, tokens, extra);
    const std::array<uint8_t, 32> digest = sha.Finish();
    BlockKey key;
    for (int i = 0; i < 8; ++i) key.hi = (key.hi << 8) | digest[i];
    for (int i = 8; i < 16; ++i) key.lo = (key.lo << 8) | digest[i];
    return key;
  }
  XXH3_state_t state;
  XXH3_128bits_reset(&state);
  auto sink = [&state](const void* p, size_t n) { XXH3_128bits_update(&state, p, n); };
  Encode(sink, parent, tokens, extra);
  const XXH128_hash_t h = XXH3_128bits_digest(&state);
  return BlockKey{h.high64, h.low64};
}

absl::StatusOr<std::vector<BlockKey>> HashSequence(HashAlgorithm algorithm,
                                                   absl::Span<const uint32_t> tokens,
                                                   uint32_t block_tokens, std::string_view extra,
                                                   const BlockKey& parent) {
  if (block_tokens == 0) return absl::InvalidArgumentError("block_tokens must be > 0");
  std::vector<BlockKey> keys;
  keys.reserve(tokens.size() / block_tokens);
  BlockKey prev = parent;
  for (size_t start = 0; start + block_tokens <= tokens.size(); start += block_tokens) {
    prev = HashBlock(algorithm, prev, tokens.subspan(start, block_tokens), extra);
    keys.push_back(prev);
  }
  return keys;
}

}  // namespace kvf
