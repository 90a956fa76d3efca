// Version: (epoch, counter) carried by every entry (docs/design.md, "Version").
#ifndef KVF_COMMON_VERSION_H_
#define KVF_COMMON_VERSION_H_

#include <compare>
#include <cstdint>
#include <string>

#include "absl/strings/str_cat.h"

namespace kvf {

// Ordered lexicographically: a later cluster-map epoch always wins, and within
// an epoch the counter orders writes to one mutable entry.
struct Version {
  uint64_t epoch = 0;
  uint64_t counter = 0;

  friend bool operator==(const Version&, const Version&) = default;
  friend auto operator<=>(const Version&, const Version&) = default;

  std::string ToString() const { return absl::StrCat(epoch, ".", counter); }
};

}  // namespace kvf

#endif  // KVF_COMMON_VERSION_H_
