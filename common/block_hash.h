// Chained block hashing: how engines and kvfabric agree on block keys.
//
//   key[i] = H(key[i-1], tokens[i*T, (i+1)*T), extra)
//
// The hash input is a fixed, versioned byte encoding (little endian):
//   "kvfb1" | parent.hi | parent.lo | u32 token count | u32 tokens... |
//   u32 extra length | extra bytes
// so the same tokens give the same key on every machine, process and run
// (golden values are checked in tests/common/block_hash_test.cc). Changing this
// encoding changes every key in every deployed cache: don't.
#ifndef KVF_COMMON_BLOCK_HASH_H_
#define KVF_COMMON_BLOCK_HASH_H_

#include <cstdint>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "common/block_key.h"

namespace kvf {

enum class HashAlgorithm : uint8_t {
  kXxh3_128 = 0,  // fast; default. Forgeable by an adversary who picks tokens.
  kSha256 = 1,    // for untrusted tenants: first 128 bits of SHA-256.
};

absl::StatusOr<HashAlgorithm> ParseHashAlgorithm(std::string_view name);
std::string_view HashAlgorithmName(HashAlgorithm algorithm);

// Hashes one block. `extra` carries anything besides tokens that changes the
// KV (LoRA adapter id, multimodal content hash, salt); empty when none.
// Thread-safe, allocation-free.
BlockKey HashBlock(HashAlgorithm algorithm, const BlockKey& parent,
                   absl::Span<const uint32_t> tokens, std::string_view extra = {});

// Hashes every *full* block of `tokens` (a trailing partial block has no key:
// engines cache only full blocks). `block_tokens` must be > 0.
absl::StatusOr<std::vector<BlockKey>> HashSequence(HashAlgorithm algorithm,
                                                   absl::Span<const uint32_t> tokens,
                                                   uint32_t block_tokens,
                                                   std::string_view extra = {},
                                                   const BlockKey& parent = BlockKey::Root());

}  // namespace kvf

#endif  // KVF_COMMON_BLOCK_HASH_H_
