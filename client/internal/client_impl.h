// Client::Impl and the per-block round state shared by the client's
// operations (client.cc: connection, rounds, lookup, remove; client_get.cc;
// client_put.cc). Internal: not installed.
#ifndef KVF_CLIENT_INTERNAL_CLIENT_IMPL_H_
#define KVF_CLIENT_INTERNAL_CLIENT_IMPL_H_

#include <functional>
#include <memory>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/types/span.h"
#include "client/block_io.h"
#include "client/client.h"
#include "client/internal/data_plane.h"
#include "client/internal/map_watcher.h"
#include "client/internal/plan.h"
#include "client/internal/worker_pool.h"
#include "protocol/frames.h"

namespace kvf {
namespace client_internal {

// What a round of a batch operation decided for one block.
enum class Next {
  kDone,        // final: result.status says how it went
  kNextOwner,   // this owner could not serve it; try the next one
  kReplan,      // WRONG_OWNER: the map was refreshed; place it again
};

struct ItemState {
  BlockResult result;
  uint64_t version_tag = 0;  // puts: the primary's proof of result.version
  Next next = Next::kNextOwner;
  size_t owner_index = 0;  // which owner (in placement order) to ask next
  int replans = 0;
};

// The version a primary committed and its proof (protocol::CommitResult).
struct PrimaryVersion {
  Version version;
  uint64_t tag = 0;
};

// Applies a whole-request failure to every item of a batch.
inline void FailBatch(const absl::Status& s, const NodeBatch& batch, std::vector<ItemState>& items) {
  for (uint32_t it : batch.items) {
    items[it].result.status = s;
    items[it].next = IsWrongOwner(s) ? Next::kReplan : IsUnreachable(s) ? Next::kNextOwner : Next::kDone;
  }
}

inline absl::Status NotOk(absl::StatusCode code, NodeId node, std::string_view what) {
  return absl::Status(code, absl::StrCat("node ", node, ": ", std::string(what)));
}


// What a put writes: the caller's buffers (BatchPut), or blocks of
// `block_bytes` a BlockWriter writes in place (BatchPutWith).
struct PutSource {
  absl::Span<const ConstBlockBuffer> buffers;
  BlockWriter* writer = nullptr;
  size_t block_bytes = 0;
  size_t size(size_t i) const { return writer != nullptr ? block_bytes : buffers[i].size; }
};

// Where a get's bytes go: the caller's buffers (BatchGet), or a BlockReader
// that consumes blocks of up to `capacity` bytes where they are (BatchGetWith).
struct GetSink {
  absl::Span<const BlockBuffer> buffers;
  BlockReader* reader = nullptr;
  size_t capacity = 0;
  size_t capacity_of(size_t i) const { return reader != nullptr ? capacity : buffers[i].size; }
};

}  // namespace client_internal

struct Client::Impl {
  using DataPlane = client_internal::DataPlane;
  using ItemState = client_internal::ItemState;
  using KeyRef = protocol::KeyRef;
  using MapWatcher = client_internal::MapWatcher;
  using NamespaceState = client_internal::NamespaceState;
  using NodeBatch = client_internal::NodeBatch;
  using PrimaryVersion = client_internal::PrimaryVersion;
  using WorkerPool = client_internal::WorkerPool;

  ClientOptions options;
  // Declaration order is destruction order reversed: the pool stops first,
  // imports go before the transport.
  std::unique_ptr<Transport> transport;
  std::unique_ptr<MapWatcher> maps;
  std::unique_ptr<DataPlane> data;
  std::unique_ptr<WorkerPool> pool;

  absl::StatusOr<std::shared_ptr<const NamespaceState>> State(const Namespace& ns) const;

  // Runs one task per batch on the pool and waits for all.
  void RunBatches(const std::vector<NodeBatch>& batches,
                  const std::function<void(const NodeBatch&)>& fn) {
    std::vector<std::function<void()>> tasks;
    tasks.reserve(batches.size());
    for (const NodeBatch& b : batches) tasks.push_back([&fn, &b] { fn(b); });
    pool->RunAll(tasks);
  }

  // The rounds shared by get and put: each block goes to owners in placement
  // order (starting with the primary) until one serves it, re-planning after a
  // WRONG_OWNER once. `serve` handles one node's batch and sets each item's
  // `next`.
  void RunRounds(absl::Span<const KeyRef> keys, std::vector<ItemState>& items, size_t max_batch,
                 const std::function<void(const NodeBatch&)>& serve);

  void GetBatch(const NamespaceState& ns, absl::Span<const KeyRef> keys,
                const client_internal::GetSink& sink, const GetOptions& options,
                const NodeBatch& batch, std::vector<ItemState>& items);
  // BatchGet and BatchGetWith after their argument checks.
  BatchResult GetBlocks(const NamespaceState& ns, absl::Span<const BlockKey> chain, size_t begin,
                        size_t count, const client_internal::GetSink& sink,
                        const GetOptions& options);
  // Reserve, write and commit one node's batch. `versions` (replica writes
  // for ack=all) carries the primary's version per item; then commits do not
  // fan out.
  void PutBatch(const NamespaceState& ns, absl::Span<const BlockKey> chain, size_t begin,
                absl::Span<const KeyRef> keys, const client_internal::PutSource& source,
                const PutOptions& options, const std::vector<PrimaryVersion>* versions,
                const NodeBatch& batch, std::vector<ItemState>& items);
  // BatchPut and BatchPutWith after their argument checks.
  BatchResult PutBlocks(const NamespaceState& ns, absl::Span<const BlockKey> chain, size_t begin,
                        size_t count, const client_internal::PutSource& source,
                        const PutOptions& options);
};

}  // namespace kvf

#endif  // KVF_CLIENT_INTERNAL_CLIENT_IMPL_H_
