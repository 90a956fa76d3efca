// ReadHolds: a block a Lookup reported stays readable for the Get that
// follows (docs/agent.md, "Read holds").
//
// An engine asks which prefix the cluster holds, then fetches it. Between
// the two, other clients' puts may evict what was just reported, and the get
// fails for a block the engine was told it could have. After a Lookup the
// data plane holds each reported block (ShardStore::Hold: a pin that counts
// no hit) until a Get of it arrives (Release) or the hold's time is up; a
// block on the disk tier is read back into memory meanwhile, on the prefetch
// thread, so the Get finds it there. Holds are bounded in bytes so lookups
// that are never followed by gets cannot pin the store.
//
// Thread-safe. OnLookup and Release never block on I/O (they run on a
// transport's progress thread): memory blocks are held inline (the store's
// lock), disk blocks are queued for the prefetch thread.
#ifndef KVF_NODE_AGENT_READ_HOLDS_H_
#define KVF_NODE_AGENT_READ_HOLDS_H_

#include <cstdint>
#include <deque>
#include <optional>
#include <thread>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "common/block_key.h"
#include "common/namespace.h"
#include "node/shard_store.h"

namespace kvf {

struct ReadHoldOptions {
  absl::Duration hold = absl::Milliseconds(500);  // longest hold; 0: no holds
  uint64_t max_held_bytes = 0;                    // 0: no holds
  size_t max_prefetch_queue = 4096;               // disk blocks waiting; more are dropped
};

struct ReadHoldStats {
  uint64_t held = 0;        // holds placed
  uint64_t released = 0;    // ended by the block's Get
  uint64_t expired = 0;     // ended by time: no Get came
  uint64_t skipped = 0;     // not held: the byte budget was spent
  uint64_t prefetched = 0;  // disk blocks read back for a hold
  uint64_t dropped = 0;     // disk blocks not queued: queue full
};

class ReadHolds {
 public:
  ReadHolds(ShardStore* store, ReadHoldOptions options);
  ~ReadHolds();  // ends every hold
  ReadHolds(const ReadHolds&) = delete;
  ReadHolds& operator=(const ReadHolds&) = delete;

  // Holds the blocks of `keys` that `found` reports (found[i] for keys[i])
  // and are not held already.
  void OnLookup(NamespaceId ns, absl::Span<const BlockKey> keys,
                absl::Span<const std::optional<BlockInfo>> found);
  // Ends the holds of `keys` (their Get pinned them itself).
  void Release(NamespaceId ns, absl::Span<const BlockKey> keys);

  ReadHoldStats stats() const;
  // Bytes under holds now.
  uint64_t held_bytes() const;
  // Blocks until every queued prefetch has been done (tests).
  void Drain();

 private:
  using Key = std::pair<NamespaceId, BlockKey>;
  struct Hold {
    uint64_t lease = 0;  // 0 while a prefetch is queued or running
    uint64_t bytes = 0;
    absl::Time expires;
  };
  // Ends holds past their time. Returns their leases to unpin (outside mu_).
  std::vector<uint64_t> ExpireLocked(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Unpin(const std::vector<uint64_t>& leases);
  void PrefetchLoop();

  ShardStore* const store_;
  const ReadHoldOptions options_;
  mutable absl::Mutex mu_;
  absl::flat_hash_map<Key, Hold> held_ ABSL_GUARDED_BY(mu_);
  // Every hold in the order it was placed, which is expiry order (all last
  // options_.hold); entries of holds released meanwhile are skipped.
  std::deque<std::pair<absl::Time, Key>> order_ ABSL_GUARDED_BY(mu_);
  uint64_t held_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  std::deque<Key> queue_ ABSL_GUARDED_BY(mu_);  // disk blocks to read back
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool busy_ ABSL_GUARDED_BY(mu_) = false;  // the prefetcher holds a popped item
  ReadHoldStats stats_ ABSL_GUARDED_BY(mu_);
  std::thread prefetcher_;
};

}  // namespace kvf

#endif  // KVF_NODE_AGENT_READ_HOLDS_H_
