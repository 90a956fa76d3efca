// Versioned lazy sync, the primary's side (docs/data-path.md, "Coherency"):
// committed keys are queued; a named thread sends every other owner an
// invalidation for them at once (one InvalidateRequest per owner and
// namespace), then pushes the blocks themselves in batches (Reserve with the
// primary's version, one-sided put from this agent's arena, Commit without
// further fan-out). Push() is also how the migrator streams a key range to
// its new owner.
//
// The invalidations of a commit leave from the commit handler itself, on the
// progress thread, as asynchronous calls (Transport::CallAsync) to every
// replica whose connection is ready: no thread hand-off between the commit
// and the invalidation. A replica not yet connected (or a failed send) is
// left to the thread, which connects, announces the namespace and sends.
//
// A replica that is down or refuses is skipped: the coordinator re-replicates
// after a failure, and a replica that missed an invalidation never held the
// key or is caught by a later one. Thread-safe.
#ifndef KVF_NODE_AGENT_REPLICATOR_H_
#define KVF_NODE_AGENT_REPLICATOR_H_

#include <atomic>
#include <random>
#include <cstdint>
#include <memory>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "common/latency_histogram.h"
#include "node/agent/data_plane.h"
#include "node/agent/peer_links.h"
#include "node/shard_store.h"

namespace kvf {

struct ReplicatorOptions {
  // How long the data push waits to gather more keys after the invalidations
  // went out (the "lazy" in lazy sync). Invalidations never wait.
  absl::Duration sync_delay = absl::Microseconds(200);
  absl::Duration timeout = absl::Seconds(5);
};

// What one Push achieved.
struct PushResult {
  uint64_t blocks = 0;  // now held by the destination (written or already there)
  uint64_t bytes = 0;   // written
};

class Replicator {
 public:
  Replicator(ShardStore* store, DataPlane* data_plane, PeerLinks* peers, Transport* transport,
             ReplicatorOptions options);
  ~Replicator();  // stops the thread; queued work is dropped
  Replicator(const Replicator&) = delete;
  Replicator& operator=(const Replicator&) = delete;

  // Non-blocking: called from the commit handler. Sends the invalidations
  // it can at once, then queues the records for the thread.
  void Committed(std::vector<CommitRecord> records);
  // Queues records for the thread (invalidations not yet sent, and pushes).
  void Enqueue(std::vector<CommitRecord> records);
  // Drops queued (not yet started) syncs of these keys: they were removed.
  void Cancel(NamespaceId ns, const std::vector<BlockKey>& keys);

  // Copies `blocks` (all of namespace `spec`) to node `to`, keeping their
  // versions. Blocks evicted meanwhile are skipped. Blocks the destination
  // refused are counted out of PushResult::blocks. The frames carry the
  // newer of this node's map epoch and `epoch`: a migration task speaks for
  // the map it was planned at, which this node's watch may not have brought
  // yet, and a destination just as far behind must not refuse it as
  // WRONG_OWNER under the old map.
  absl::StatusOr<PushResult> Push(NodeId to, const NamespaceSpec& spec,
                                  absl::Span<const StoredBlock> blocks, uint64_t epoch = 0);

  size_t queued() const;
  // Commit -> every other owner acknowledged the invalidation.
  const LatencyHistogram& invalidation_latency() const { return invalidation_latency_; }
  // Commit -> every other owner holds the new version.
  const LatencyHistogram& sync_latency() const { return sync_latency_; }
  uint64_t sync_failures() const { return sync_failures_.load(); }

 private:
  // What asynchronous invalidation callbacks may touch, alive until the last
  // of them has run even if the Replicator is gone by then.
  struct Shared {
    absl::Mutex mu;
    Replicator* replicator ABSL_GUARDED_BY(mu) = nullptr;  // null once destroyed
  };

  void Run();
  void Process(std::vector<CommitRecord> batch);
  // Sends invalidations of mutable records to every other owner whose
  // connection is ready; marks the records it covered.
  void InvalidateNow(std::vector<CommitRecord>& records);

  ShardStore* const store_;
  DataPlane* const data_plane_;
  PeerLinks* const peers_;
  Transport* const transport_;
  const ReplicatorOptions options_;

  std::shared_ptr<Shared> shared_ = std::make_shared<Shared>();
  mutable absl::Mutex mu_;
  std::vector<CommitRecord> queue_ ABSL_GUARDED_BY(mu_);
  bool stop_ ABSL_GUARDED_BY(mu_) = false;

  LatencyHistogram invalidation_latency_;
  LatencyHistogram sync_latency_;
  std::atomic<uint64_t> sync_failures_{0};
  // Tags of this agent's two-sided pushes: a random start, so two senders'
  // tags do not meet at one receiver (UCX matches a tag from any sender).
  std::atomic<uint64_t> next_tag_{(uint64_t{std::random_device{}()} << 32) |
                                  std::random_device{}()};
  std::thread thread_;
};

}  // namespace kvf

#endif  // KVF_NODE_AGENT_REPLICATOR_H_
