// CreateEvictionPolicy: the one place that maps policy names to classes.
#include "node/eviction_policy.h"

#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "node/eviction/internal/policies.h"

namespace kvf {

std::vector<std::string_view> EvictionPolicyNames() {
  return {"lru", "lfu", "fifo", "s3fifo", "chain", "chain-lru", "reuse"};
}

absl::StatusOr<std::unique_ptr<EvictionPolicy>> CreateEvictionPolicy(std::string_view name,
                                                                     size_t capacity_hint) {
  if (name == "lru") return internal::NewLruPolicy(capacity_hint);
  if (name == "lfu") return internal::NewLfuPolicy(capacity_hint);
  if (name == "fifo") return internal::NewFifoPolicy(capacity_hint);
  if (name == "s3fifo") return internal::NewS3FifoPolicy(capacity_hint);
  if (name == "chain") return internal::NewChainPolicy(capacity_hint, {});
  if (name == "reuse") return internal::NewReusePolicy(capacity_hint, {});
  if (name == "chain-lru") {
    // Plain LRU order, but a request's blocks kept head-first: isolates what
    // tail-first ordering alone is worth.
    internal::ChainPolicyOptions options;
    options.name = "chain-lru";
    options.probation_percent = 100;
    options.inherit = false;
    options.ghost = false;
    options.demote = false;
    options.drop_run_tail = false;
    return internal::NewChainPolicy(capacity_hint, options);
  }
  // The installed Abseil's string_view is not std::string_view: go via string.
  std::string known;
  for (std::string_view n : EvictionPolicyNames()) {
    absl::StrAppend(&known, known.empty() ? "" : ", ", std::string(n));
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown eviction policy '", std::string(name), "'; known: ", known));
}

}  // namespace kvf
