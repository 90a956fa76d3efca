// Namespace: the scope in which block keys mean something.
#ifndef KVF_COMMON_NAMESPACE_H_
#define KVF_COMMON_NAMESPACE_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "common/block_hash.h"
#include "common/kv_layout.h"

namespace kvf {

// 64-bit namespace id: XXH3-64 of the canonical encoding of a NamespaceSpec.
using NamespaceId = uint64_t;

// Everything that must match for two engines to share KV bytes. Engines with a
// different layout, TP rank/size, model or tenant land in different namespaces,
// so they can never read each other's blocks (docs/design.md, "Data model").
struct NamespaceSpec {
  std::string model_id;
  KvLayout layout;
  uint32_t tp_rank = 0;
  uint32_t tp_size = 1;
  std::string tenant;
  HashAlgorithm hash = HashAlgorithm::kXxh3_128;
  // Blocks per placement segment (docs/design.md, "Segment"); used by
  // placement. 1 (each block placed by its own key) balances a cluster whose
  // requests share a first block; larger segments keep a chain's blocks
  // together at the price of one node holding every request's first segment
  // (docs/decisions.md, "Placement segments").
  uint32_t segment_blocks = 1;

  static constexpr size_t kMaxStringLength = 256;

  // INVALID_ARGUMENT naming the bad field, or OK.
  absl::Status Validate() const;

  // Stable id; changes when any field above changes (segment_blocks included:
  // a different segmentation places blocks elsewhere).
  NamespaceId Id() const;

  std::string DebugString() const;
};

}  // namespace kvf

#endif  // KVF_COMMON_NAMESPACE_H_
