// BlockKey: the 128-bit identity of one KV block (docs/design.md, "Data model").
#ifndef KVF_COMMON_BLOCK_KEY_H_
#define KVF_COMMON_BLOCK_KEY_H_

#include <compare>
#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace kvf {

// A block key is a chained hash over token ids (see block_hash.h): equal keys
// mean equal prefixes. The all-zero key is reserved as "no parent" (the root of
// every chain) and is never produced by hashing in practice.
struct BlockKey {
  uint64_t hi = 0;
  uint64_t lo = 0;

  static constexpr BlockKey Root() { return BlockKey{}; }
  bool IsRoot() const { return hi == 0 && lo == 0; }

  // 32 lowercase hex digits, hi first.
  std::string ToHex() const;
  // Parses ToHex()'s form; anything else is INVALID_ARGUMENT.
  static absl::StatusOr<BlockKey> FromHex(std::string_view hex);

  friend bool operator==(const BlockKey&, const BlockKey&) = default;
  friend auto operator<=>(const BlockKey&, const BlockKey&) = default;

  template <typename H>
  friend H AbslHashValue(H h, const BlockKey& k) {
    return H::combine(std::move(h), k.hi, k.lo);
  }
};

}  // namespace kvf

#endif  // KVF_COMMON_BLOCK_KEY_H_
