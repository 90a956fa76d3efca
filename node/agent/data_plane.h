// The agent's data plane: the handlers for every request frame of
// protocol/frames.h, served over transport/ messages against the shard
// store (docs/data-path.md).
//
//  * Every frame but HelloRequest names a session opened by a hello with a
//    credential (sessions.h; UNAUTHENTICATED otherwise). A tenant's session
//    touches only that tenant's namespaces (PERMISSION_DENIED otherwise),
//    within the tenant's limits on namespaces, read leases and reservations
//    (RESOURCE_EXHAUSTED). Only agents may send Invalidate, and only agents'
//    map epochs are trusted ahead of this agent's own. A client's versioned
//    copy (ack=all) needs the primary's version tag (common/credentials.h).
//  * Memory grants: a tenant's session never sees the arena's descriptor.
//    Its Get and Reserve answers carry none, and it moves bytes with Read
//    (within the blocks its lease pinned) and Write (within its reservations'
//    pages), copied by the agent. Agents and cluster-token clients get the
//    descriptor and move bytes one-sided, as trusted hosts.
//
//  * Every request names a namespace the agent was told of
//    (RegisterNamespaceRequest; NOT_FOUND otherwise) with the namespace's
//    layout fingerprint (INVALID_ARGUMENT otherwise), and keys this agent owns
//    at its map epoch (WRONG_OWNER with the epoch otherwise; a sender with a
//    newer map is trusted).
//  * Get pins every block under one batch lease and hands out offsets into the
//    transport-registered arena; Release (or the lease's expiry) unpins.
//  * Fetch (the two-sided lane, for peers whose one-sided access the fabric
//    only emulates, e.g. UCX over TCP) pins the same way and sends each
//    block's bytes back as a tagged message ahead of the answer; the pins go
//    when the sends complete. Trusted sessions only, on the main transport.
//  * Reserve/Commit are the store's two-phase put with the arena as the RMA
//    target. Store is Reserve on the two-sided lane: the agent posts a
//    tagged receive into each reserved page and the peer sends the bytes; a
//    Commit that finds them still arriving answers UNAVAILABLE for the block. A client commit (no_fanout = false) hands the committed keys to
//    the commit listener (the replicator), which invalidates and syncs the
//    other owners.
//  * Invalidate records a newer version than the stored one: the stale copy is
//    never served again (Get answers ABORTED for it, Lookup says not held) and
//    is dropped when unpinned.
//  * Lease fencing: past the agent's own view of its coordinator lease
//    (SetLeaseUntil), this node may have been declared down and its ranges
//    written elsewhere, so it cannot prove its mutable entries current: Get
//    answers UNAVAILABLE for them (the client reads another owner), Lookup
//    says not held, and client writes of mutable entries are refused.
//    Immutable (content-addressed) blocks cannot be stale and stay served, so
//    a coordinator outage does not take reads of them down (docs/faults.md).
//
// Handlers run on the transport's progress thread: they only take this
// class's and the store's mutexes, never block on the network.
// Thread-safe.
#ifndef KVF_NODE_AGENT_DATA_PLANE_H_
#define KVF_NODE_AGENT_DATA_PLANE_H_

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/cluster_map.h"
#include "common/credentials.h"
#include "common/latency_histogram.h"
#include "common/namespace.h"
#include "common/placement.h"
#include "protocol/frames.h"
#include "node/agent/device_export.h"
#include "node/agent/read_holds.h"
#include "node/agent/sessions.h"
#include "node/shard_store.h"
#include "transport/transport.h"

namespace kvf {

// One committed block a replica must hear about.
struct CommitRecord {
  NamespaceId ns = 0;
  BlockKey key;
  uint64_t placement_hash = 0;
  Version version;
  absl::Time committed;
  bool invalidated = false;  // the replicas' invalidations already went out
};

// Who owns what at one map epoch.
struct Ownership {
  ClusterMap map;
  std::optional<Placement> read;    // active + draining nodes
  std::optional<Placement> target;  // active + joining nodes
  uint64_t epoch() const { return map.epoch; }
  // Whether `node` holds (or is receiving) data for `hash` at this epoch.
  bool Owns(NodeId node, uint64_t hash) const;
  // Every owner of `hash` under either placement, read owners first.
  OwnerList Owners(uint64_t hash) const;
};

enum class DataOp {
  kLookup, kGet, kRelease, kReserve, kCommit, kRemove, kInvalidate, kRegister, kHello,
  kRead, kWrite, kFetch, kStore
};
inline constexpr int kNumDataOps = 13;
std::string_view DataOpName(DataOp op);

struct DataPlaneOptions {
  absl::Duration get_lease = absl::Seconds(10);
  absl::Duration reservation_ttl = absl::Seconds(10);
  // Checks credentials and signs version tags. Empty refuses every hello.
  std::string cluster_token;
  // Still accepted for credentials and version tags while the token is
  // rotated.
  std::vector<std::string> previous_tokens;
  SessionLimits sessions;
  TenantLimits tenant_limits;
  // Blocks a Lookup reports are held for the Get that follows (read_holds.h).
  ReadHoldOptions read_holds;
};

class DataPlane {
 public:
  using CommitListener = std::function<void(std::vector<CommitRecord>)>;
  // Keys removed by a client: queued replica syncs of them are dropped.
  using RemoveListener = std::function<void(NamespaceId, const std::vector<BlockKey>&)>;

  // `arena` is the store's host tier, registered with `transport`; every
  // block location handed out is an offset into it.
  DataPlane(ShardStore* store, Transport* transport, const MemoryRegion* arena,
            DataPlaneOptions options);
  ~DataPlane();
  DataPlane(const DataPlane&) = delete;
  DataPlane& operator=(const DataPlane&) = delete;

  // Also serves the frames arriving on `transport` (before Start): the
  // messages-only worker tenants use. Handlers are the same; what a frame
  // may do still depends only on its session.
  void ServeAlso(Transport* transport) { also_.push_back(transport); }

  // Installs the handlers on the transport(s).
  absl::Status Start(CommitListener on_commit, RemoveListener on_remove = nullptr);

  void SetSelf(NodeId self) { self_.store(self); }
  NodeId self() const { return self_.load(); }
  // Installs a newer map (older ones are ignored).
  absl::Status SetMap(const ClusterMap& map);
  std::shared_ptr<const Ownership> ownership() const;
  uint64_t epoch() const;

  // While false, every request is answered UNAVAILABLE ("shutting down").
  void SetServing(bool serving) { serving_.store(serving); }

  // The coordinator lease as this agent knows it: the send time of the last
  // heartbeat (or join) the coordinator accepted, plus the lease. The
  // coordinator's own deadline starts at its receipt, so this one never ends
  // later. Until the first call, nothing is fenced (the node owns nothing).
  void SetLeaseUntil(std::chrono::steady_clock::time_point until);
  // Whether the lease above has run out (mutable entries are fenced).
  bool LeaseLapsed() const;

  std::optional<NamespaceSpec> Spec(NamespaceId ns) const;
  // The tenant of a registered namespace ("" when unknown).
  std::string TenantOf(NamespaceId ns) const;
  // Whether a version newer than `stored` is known for the key.
  bool IsStale(NamespaceId ns, const BlockKey& key, const Version& stored) const;

  // Expires batch leases and reservations past their deadline.
  void Sweep();

  const MemoryRegion& arena() const { return *arena_; }
  const LatencyHistogram& latency(DataOp op) const { return latency_[static_cast<int>(op)]; }
  uint64_t requests(DataOp op) const;
  uint64_t wrong_owner() const { return wrong_owner_.load(); }
  uint64_t bad_frames() const { return bad_frames_.load(); }
  uint64_t stale_refusals() const { return stale_refusals_.load(); }
  // Read holds after lookups; zeros when they are off.
  ReadHoldStats read_holds() const;
  // Mutable blocks refused (reads and writes) while the lease had lapsed.
  uint64_t fenced_refusals() const { return fenced_refusals_.load(); }
  uint64_t active_batch_leases() const;
  // Frames refused for want of a valid session or credential.
  uint64_t unauthenticated() const { return unauthenticated_.load(); }
  // Frames refused because the session may not do that (another tenant's
  // namespace, an agent-only frame, a forged version).
  uint64_t permission_denied() const { return permission_denied_.load(); }
  uint64_t exhausted(LimitedResource r) const { return exhausted_[static_cast<int>(r)].load(); }
  size_t sessions() const { return sessions_.size(); }

 private:
  // A pinned block of a batch lease, by request entry (size 0: not granted).
  struct Grant {
    uint64_t offset = 0;  // in the arena
    uint32_t size = 0;
  };
  struct BatchLease {
    std::vector<uint64_t> store_leases;
    std::vector<Grant> grants;  // by GetRequest entry
    NamespaceId ns = 0;
    absl::Time expires;
    std::string tenant;    // the namespace's tenant: only it may release
    bool counted = false;  // counted against the tenant's limit
  };
  struct Reservation {
    std::string tenant;
    bool counted = false;
    uint64_t arena_offset = 0;  // the reserved page
    uint32_t size = 0;
    NamespaceId ns = 0;
    BlockKey key;
    uint64_t placement_hash = 0;
    absl::Time expires;
    bool copy = false;     // carries a version: a primary's sync, a migration, ack=all
    bool removed = false;  // a copy whose key was removed since: never committed
    // A Store's tagged receive into the page (the two-sided lane); null for
    // a Reserve. Withdrawn before the page can be released (never under
    // mu_: destroying it takes the transport's worker lock).
    std::shared_ptr<TransferRequest> recv;
  };
  struct KeyOf {
    NamespaceId ns;
    BlockKey key;
    friend bool operator==(const KeyOf&, const KeyOf&) = default;
    template <typename H>
    friend H AbslHashValue(H h, const KeyOf& k) {
      return H::combine(std::move(h), k.ns, k.key);
    }
  };

  // What one tenant's clients hold (guarded by mu_).
  struct TenantUsage {
    size_t namespaces = 0;
    size_t read_leases = 0;
    size_t reservations = 0;
  };

  // The answer's header: the request's, with this agent's map epoch.
  static protocol::FrameHeader Reply(const protocol::FrameHeader& request, uint64_t epoch);
  // The placement hashes of `keys`, for CheckOwner.
  static std::vector<uint64_t> HashesOf(const std::vector<protocol::KeyRef>& keys);
  template <typename Req, typename Fn>
  absl::Status Handle(DataOp op, Fn fn);
  // Handle's checks, then fn(request, session), for one frame of `bytes`.
  template <typename Req, typename Fn>
  absl::StatusOr<std::string> Serve(DataOp op, std::string_view bytes, const Fn& fn);
  // Pins `keys` for a Get or Fetch answer: fills resp.entries (locations in
  // the arena when `descriptors`, else {0, 0, size}) and returns the batch
  // lease of what it pinned (store_leases empty when nothing was). With
  // `device` (a device_ok Get, the GPU tier exported as descriptor 1) a
  // GPU-tier block is pinned where it is and located in descriptor 1.
  BatchLease PinBatch(NamespaceId ns, const std::vector<protocol::KeyRef>& keys,
                      bool has_min_version, const Version& min_version, bool descriptors,
                      protocol::GetResponse* resp, bool device = false);
  // Files `batch` under a new lease id (0 when it pinned nothing).
  uint64_t AddLease(BatchLease batch, bool counted, const std::string& tenant, NamespaceId ns);
  // Unpins lease `id` if it is still there (Release, and the end of a Fetch's sends).
  void ReleaseLease(uint64_t id);
  // Namespace, fingerprint, tenant and serving checks common to every request.
  absl::Status CheckHeader(const protocol::FrameHeader& h, const Session& session);
  // OK, or the WRONG_OWNER error frame's status for the first foreign hash.
  absl::Status CheckOwner(const protocol::FrameHeader& h, const Session& session,
                          const std::vector<uint64_t>& hashes, std::string* wrong_owner_frame);
  absl::Status Exhausted(LimitedResource r, const std::string& tenant, size_t limit);
  void ReleaseUsage(const std::string& tenant, bool counted, size_t TenantUsage::*field)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<uint64_t> ArenaOffset(const BlockLocation& loc) const;

  absl::StatusOr<std::string> OnHello(std::string_view bytes);
  absl::StatusOr<std::string> OnRegister(const protocol::RegisterNamespaceRequest& r,
                                         const Session& s);
  absl::StatusOr<std::string> OnLookup(const protocol::LookupRequest& r, const Session& s);
  absl::StatusOr<std::string> OnGet(const protocol::GetRequest& r, const Session& s);
  absl::StatusOr<std::string> OnRelease(const protocol::ReleaseRequest& r, const Session& s);
  absl::StatusOr<std::string> OnReserve(const protocol::ReserveRequest& r, const Session& s);
  // Reserve and Store: with `tags` (Store) the answer has no descriptors and
  // each new reservation gets a tagged receive into its page.
  absl::StatusOr<std::string> ReserveEntries(const protocol::FrameHeader& header,
                                             const std::vector<protocol::ReserveEntry>& entries,
                                             const Session& s, const std::vector<uint64_t>* tags);
  absl::StatusOr<std::string> OnCommit(const protocol::CommitRequest& r, const Session& s);
  absl::StatusOr<std::string> OnRemove(const protocol::RemoveRequest& r, const Session& s);
  absl::StatusOr<std::string> OnInvalidate(const protocol::InvalidateRequest& r, const Session& s);
  absl::StatusOr<std::string> OnRead(const protocol::ReadRequest& r, const Session& s);
  absl::StatusOr<std::string> OnWrite(const protocol::WriteRequest& r, const Session& s);
  absl::StatusOr<std::string> OnFetch(const protocol::FetchRequest& r, const Session& s,
                                      ReplySends* sends);

  ShardStore* const store_;
  Transport* const transport_;
  std::vector<Transport*> also_;  // more transports served (ServeAlso)
  // Registers `handler` for `type` on every transport served.
  absl::Status RegisterEverywhere(uint16_t type, const MessageHandler& handler);
  const MemoryRegion* const arena_;
  // The GPU tier shared over CUDA IPC, when there is one and CUDA could.
  const std::optional<DeviceExport> device_export_;
  const DataPlaneOptions options_;
  CommitListener on_commit_;
  RemoveListener on_remove_;
  std::atomic<NodeId> self_{kNoNode};
  std::atomic<bool> serving_{true};
  SessionTable sessions_;
  const VersionTagger tagger_;  // signs with the current token
  // Whether `tag` is some accepted token's tag for (ns, key, version).
  bool TagAccepted(uint64_t tag, NamespaceId ns, const BlockKey& key,
                   const Version& version) const;
  std::vector<std::unique_ptr<const VersionTagger>> previous_taggers_;
  // steady_clock nanoseconds; 0 = no lease yet.
  std::atomic<int64_t> lease_until_ns_{0};

  mutable absl::Mutex mu_;
  std::shared_ptr<const Ownership> ownership_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<NamespaceId, NamespaceSpec> specs_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<uint64_t, BatchLease> leases_ ABSL_GUARDED_BY(mu_);
  uint64_t next_lease_ ABSL_GUARDED_BY(mu_) = 1;
  absl::flat_hash_map<uint64_t, Reservation> reservations_ ABSL_GUARDED_BY(mu_);
  // Keys a client removed recently: copies arriving from a primary's lazy
  // sync or a migration (started before the remove) are refused for
  // kTombstoneTtl, so a remove is not undone by a sync in flight.
  absl::flat_hash_map<KeyOf, absl::Time> removed_ ABSL_GUARDED_BY(mu_);
  // Newest version heard of (Invalidate) for keys whose stored copy is older.
  absl::flat_hash_map<KeyOf, Version> known_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, TenantUsage> usage_ ABSL_GUARDED_BY(mu_);

  // What a Fetch's send-completion callback reaches this object through:
  // cleared (under its mutex) by the destructor, so a send completing during
  // shutdown finds no data plane instead of a freed one.
  struct FetchGuard {
    absl::Mutex mu;
    DataPlane* plane ABSL_GUARDED_BY(mu) = nullptr;
  };
  std::shared_ptr<FetchGuard> fetch_guard_ = std::make_shared<FetchGuard>();

  std::array<LatencyHistogram, kNumDataOps> latency_;
  std::array<std::atomic<uint64_t>, kNumDataOps> errors_{};
  std::atomic<uint64_t> wrong_owner_{0};
  std::atomic<uint64_t> bad_frames_{0};
  std::atomic<uint64_t> stale_refusals_{0};
  std::unique_ptr<ReadHolds> holds_;  // null when off
  std::atomic<uint64_t> fenced_refusals_{0};
  std::atomic<uint64_t> unauthenticated_{0};
  std::atomic<uint64_t> permission_denied_{0};
  std::array<std::atomic<uint64_t>, kNumLimitedResources> exhausted_{};
};

}  // namespace kvf

#endif  // KVF_NODE_AGENT_DATA_PLANE_H_
