#include "common/block_key.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace kvf {

std::string BlockKey::ToHex() const { return absl::StrFormat("%016x%016x", hi, lo); }

absl::StatusOr<BlockKey> BlockKey::FromHex(std::string_view hex) {
  if (hex.size() != 32) {
    return absl::InvalidArgumentError(
        absl::StrCat("block key must be 32 hex digits, got ", hex.size(), " characters"));
  }
  BlockKey key;
  for (size_t i = 0; i < 32; ++i) {
    const char c = hex[i];
    uint64_t v;
    if (c >= '0' && c <= '9') v = c - '0';
    else if (c >= 'a' && c <= 'f') v = c - 'a' + 10;
    else if (c >= 'A' && c <= 'F') v = c - 'A' + 10;
    else return absl::InvalidArgumentError(absl::StrCat("block key has a non-hex character at ", i));
    uint64_t& word = i < 16 ? key.hi : key.lo;
    word = (word << 4) | v;
  }
  return key;
}

}  // namespace kvf
