// The trace through a real kvf::ShardStore.
#include <algorithm>
#include <numeric>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "bench/replay/simulate.h"
#include "common/namespace.h"
#include "common/status_macros.h"
#include "node/shard_store.h"

namespace kvf::replay {
namespace {

constexpr uint64_t kPageAlignment = 64;  // the store rounds pages to this

// A fp16 layout whose BytesPerBlock() is exactly `bytes` (2*L*T*H*D*2 bytes).
absl::StatusOr<KvLayout> TinyLayout(uint64_t bytes) {
  if (bytes % 4 != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("--block-bytes ", bytes, " is not a multiple of 4 (fp16 K and V)"));
  }
  const uint64_t elements = bytes / 4;  // H * D with L = T = 1
  uint64_t d = std::min<uint64_t>(elements, KvLayout::kMaxHeadDim);
  while (elements % d != 0) --d;
  KvLayout layout;
  layout.num_layers = 1;
  layout.block_tokens = 1;
  layout.head_dim = static_cast<uint32_t>(d);
  layout.num_kv_heads = static_cast<uint32_t>(elements / d);
  layout.dtype = DType::kFp16;
  KVF_RETURN_IF_ERROR(layout.Validate());
  return layout;
}

}  // namespace

absl::StatusOr<ReplayResult> ReplayStore(const Trace& trace, std::string_view policy,
                                         uint64_t capacity_blocks, uint64_t block_bytes) {
  if (capacity_blocks == 0) return absl::InvalidArgumentError("capacity of 0 blocks");
  KVF_ASSIGN_OR_RETURN(KvLayout layout, TinyLayout(block_bytes));
  // Pages are block-sized; a slab holds k pages with k dividing the capacity
  // where possible, so the arena holds exactly `capacity_blocks` blocks.
  const uint64_t page = (block_bytes + kPageAlignment - 1) / kPageAlignment * kPageAlignment;
  uint64_t per_slab = 64;
  for (uint64_t k = 64; k >= 16; --k) {
    if (capacity_blocks % k == 0) {
      per_slab = k;
      break;
    }
  }
  const uint64_t slabs = (capacity_blocks + per_slab - 1) / per_slab;
  ShardStoreOptions options;
  options.host_bytes = slabs * per_slab * page;
  options.slab_bytes = per_slab * page;
  options.min_page_bytes = std::min<uint64_t>(page, 1024);
  options.pin_host = false;
  options.eviction_policy = std::string(policy);
  KVF_ASSIGN_OR_RETURN(std::unique_ptr<ShardStore> store, ShardStore::Create(options));
  NamespaceSpec spec;
  spec.model_id = "trace-replay";
  spec.layout = layout;
  KVF_ASSIGN_OR_RETURN(NamespaceId ns, store->RegisterNamespace(spec));

  const std::vector<std::byte> payload(block_bytes, std::byte{0x5a});
  std::vector<BlockKey> keys;
  ReplayResult result;
  for (const TraceRequest& r : trace.requests) {
    keys.clear();
    for (uint64_t h : r.hash_ids) keys.push_back(TraceKey(h));
    result.requested_blocks += keys.size();
    const size_t hits = store->MatchPrefix(ns, keys);
    result.hit_blocks += hits;
    for (size_t i = hits; i < keys.size(); ++i) {
      PutOptions put;
      put.parent = i == 0 ? BlockKey::Root() : keys[i - 1];
      put.depth = static_cast<uint32_t>(i);
      absl::StatusOr<PutResult> p = store->Put(ns, keys[i], payload, put);
      if (!p.ok()) {
        return absl::Status(p.status().code(), absl::StrCat("put of block ", i, " of a request: ",
                                                            p.status().message()));
      }
      if (p->already_present) {
        ++result.touched_blocks;
      } else {
        ++result.stored_blocks;
      }
      result.evictions += p->evicted_blocks;
    }
  }
  return result;
}

}  // namespace kvf::replay
