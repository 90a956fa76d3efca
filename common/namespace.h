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

// Mixed precision of sequences (docs/sequences.md, "Mixed precision"): the
// last `recent_blocks` positions of a kvf::Sequence are stored with codec
// `recent`, older ones with `old`, re-encoded from the writer's raw copy as
// they leave the recent window. Applies to the raw-block calls of
// kvf::Sequence (AppendBlocks, WriteBlock, ReadBlocks) only; content-addressed
// blocks and the encoded Sequence calls store what the caller passes.
//
// Codecs are CodecId values (kernels/core/types.h: 0 none, 1 fp8_e4m3, 2 int8,
// 3 int4) held as bytes, because common/ sits below kernels/ in the link
// order; Validate() rejects unknown ids. Write
// `static_cast<uint8_t>(CodecId::kInt8)`.
struct PrecisionPolicy {
  // Positions kept in `recent`; 0 turns mixed precision off (the raw calls
  // then store blocks unencoded). The writer keeps a raw copy of each of them
  // (recent_blocks x layout.BytesPerBlock() bytes per writing handle).
  uint32_t recent_blocks = 0;
  uint8_t recent = 2;  // CodecId::kInt8
  uint8_t old = 3;     // CodecId::kInt4

  static constexpr uint32_t kMaxRecentBlocks = 4096;

  bool enabled() const { return recent_blocks > 0; }
};

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
  // How the raw-block calls of kvf::Sequence store positions by age. Not part
  // of Id(): stored blocks are self-describing (each carries its codec), so
  // engines with different policies share, read and overwrite the same
  // entries; the policy is a writer-side choice.
  PrecisionPolicy precision;

  static constexpr size_t kMaxStringLength = 256;

  // INVALID_ARGUMENT naming the bad field, or OK.
  absl::Status Validate() const;

  // Stable id; changes when any field above `precision` changes
  // (segment_blocks included: a different segmentation places blocks
  // elsewhere).
  NamespaceId Id() const;

  std::string DebugString() const;
};

}  // namespace kvf

#endif  // KVF_COMMON_NAMESPACE_H_
