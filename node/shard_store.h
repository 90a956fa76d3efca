// ShardStore: the node-local block store each shard agent runs.
#ifndef KVF_NODE_SHARD_STORE_H_
#define KVF_NODE_SHARD_STORE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "common/age_histogram.h"
#include "common/block_key.h"
#include "common/namespace.h"
#include "common/version.h"
#include "kernels/codec.h"
#include "common/clock.h"
#include "common/latency_histogram.h"
#include "node/memory_tier.h"

namespace kvf {

struct ShardStoreOptions {
  // Bytes of host memory; pinned through CUDA when `pin_host` and a device exist.
  uint64_t host_bytes = uint64_t{1} << 30;
  bool pin_host = true;
  // When set, the host tier lives in these `host_bytes` bytes, owned by the
  // caller and outliving the store (the agent passes its transport-allocated
  // arena); `pin_host` is ignored.
  std::byte* host_memory = nullptr;
  // Bytes of GPU memory on CUDA device `device`, a tier in front of the host
  // tier (docs/shard-store.md, "Device tier"): new blocks land there, and
  // when it is full its least recently used blocks are demoted to the host
  // tier (copied, with key, version and metadata) before anything leaves
  // memory. Ignored (with a log line) where no such device exists; callers
  // that need it check Devices() first (kvf-agent does).
  uint64_t device_bytes = 0;
  int device = 0;
  // Test hook: makes the device tier instead of CreateDeviceTier (a fake
  // behind MemoryTier, e.g. host memory reporting kDevice), whether or not a
  // device exists. Null: the real thing.
  std::function<absl::StatusOr<std::unique_ptr<MemoryTier>>(uint64_t bytes)> device_tier_factory;
  // Allocation unit: memory moves between page classes a slab at a time. 0
  // picks arena/64 clamped to [4 MiB, 64 MiB]. A block's stored form must fit
  // in one slab.
  uint64_t slab_bytes = 0;
  // Smallest page (blocks smaller than this still take a whole page). The
  // allocator keeps 4 bytes of metadata per possible page of this size.
  uint64_t min_page_bytes = 1024;
  // See EvictionPolicyNames().
  std::string eviction_policy = "lru";
  // Read leases not released within this time expire and unpin their block.
  absl::Duration default_lease = absl::Seconds(10);
  // Source of time for leases and block ages; the real clock when null. Not
  // owned; must outlive the store.
  const Clock* clock = nullptr;

  // The disk (SSD) tier (docs/shard-store.md, "Disk tier"): none when
  // `disk_path` is empty. Blocks evicted from memory are written there
  // instead of dropped and come back to memory on a hit. A store created over
  // a directory an earlier store used serves that store's immutable blocks
  // again. `disk_bytes` is the file's size; the log reclaims its oldest
  // segment when full.
  std::string disk_path;
  uint64_t disk_bytes = 0;
  uint64_t disk_segment_bytes = 0;  // 0: disk_bytes/16 in [1 MiB, 64 MiB], >= a slab
  int disk_io_threads = 2;
};

// Where a pinned block lives, for handing out to an RMA reader.
struct BlockLocation {
  TierKind tier = TierKind::kHost;
  std::byte* address = nullptr;  // host or device pointer, per `tier`
  uint64_t size = 0;
};

struct BlockInfo {
  Version version;
  CodecId codec = CodecId::kNone;
  uint64_t size = 0;  // stored bytes
  TierKind tier = TierKind::kHost;
  // A mutable entry (PutOptions::mutable_entry): its bytes can change under
  // the same key, so a copy can be stale. Immutable ones cannot.
  bool mutable_entry = false;
};

struct PutOptions {
  CodecId codec = CodecId::kNone;
  // Mutable entries (sequence tails, overwritten positions) take a new version
  // on every write. Immutable (content-addressed) ones are written once: a
  // re-put is an idempotent no-op.
  bool mutable_entry = false;
  // Chain position, for chain-aware eviction (EvictionHint).
  BlockKey parent = BlockKey::Root();
  uint32_t depth = 0;
  // An explicit version (replica sync, migration): stored only if newer than
  // the one held, else FAILED_PRECONDITION. Unset: the store assigns one.
  std::optional<Version> version;
  // The placement hash of the block's segment (common/placement.h), kept with
  // the entry so migration can find the blocks of a hash range (Scan).
  uint64_t placement_hash = 0;
  // Reserve only: the writer reaches CPU-addressable memory only (a remote
  // writer through the agent's host arena). Where a device tier is in front,
  // the reservation is a host *staging* page, and Commit moves the block into
  // the fastest tier with room (a host-to-device copy) and frees the staging
  // page. Ignored by Put.
  bool host_writer = false;
};

// One stored block as Scan reports it.
struct StoredBlock {
  NamespaceId ns = 0;
  BlockKey key;
  uint64_t placement_hash = 0;
  BlockInfo info;
};

struct PutResult {
  Version version;
  bool already_present = false;  // an idempotent re-put of an immutable block
  uint64_t evicted_blocks = 0;   // evictions this put caused
};

// A page reserved for a block that a remote writer fills with RMA before it
// commits (docs/design.md, "Data path": Put). Invisible to readers until Commit.
struct PutReservation {
  uint64_t id = 0;
  BlockLocation location;  // where the writer puts exactly location.size bytes
  absl::Time expires;      // an uncommitted reservation is freed after this
  // The block was already stored (an immutable re-put): nothing was reserved,
  // `location` is empty, and there is nothing to commit.
  bool already_present = false;
  Version version;  // of the stored block when already_present
};

struct Lease {
  uint64_t id = 0;
  BlockLocation location;
  BlockInfo info;
  absl::Time expires;
};

struct TierStats {
  TierKind kind = TierKind::kHost;
  uint64_t capacity_bytes = 0;
  uint64_t used_bytes = 0;      // pages handed out
  uint64_t stored_bytes = 0;    // bytes of blocks in those pages
  uint64_t free_bytes = 0;      // in free slabs and free pages
  uint64_t blocks = 0;          // blocks resident in this tier
  // Memory tiers: blocks moved from this tier to the next memory tier (a
  // device tier's demotions to host); demotions to disk are
  // ShardStoreStats::demotions.
  uint64_t demotions = 0;
  uint64_t demoted_bytes = 0;
};

struct ShardStoreStats {
  std::vector<TierStats> tiers;  // memory tiers fastest first, then the disk tier if any
  uint64_t entries = 0;
  uint64_t pinned_entries = 0;
  uint64_t active_leases = 0;
  uint64_t pending_reservations = 0;
  uint64_t hits = 0;    // blocks found by Get / MatchPrefix
  uint64_t misses = 0;  // blocks asked for and not found
  uint64_t puts = 0;    // blocks newly stored or overwritten
  uint64_t evictions = 0;
  uint64_t evicted_bytes = 0;
  uint64_t expired_leases = 0;        // leases and reservations
  // Internal fragmentation: page bytes not holding block bytes, over page bytes.
  double internal_fragmentation = 0;
  // Free memory stuck in partially used slabs of other classes, over free memory.
  double external_fragmentation = 0;

  // Host tiers' usable bytes (SetMemoryLimit); UINT64_MAX when unlimited.
  uint64_t memory_limit_bytes = UINT64_MAX;
  // Device tier traffic through host staging (PinHost, host_writer reserves).
  uint64_t staged_reads = 0;         // device blocks copied to a host staging page for a reader
  uint64_t staged_read_bytes = 0;
  uint64_t staged_writes = 0;        // host-staged puts moved into the device tier at Commit
  uint64_t staged_write_bytes = 0;
  uint64_t staging_failures = 0;     // copies that failed (the read or commit failed with them)
  // The disk tier (all zero without one). `evictions` counts blocks leaving
  // memory, demoted or dropped; `disk_evictions` those the disk tier dropped
  // to make room.
  uint64_t disk_entries = 0;
  uint64_t disk_hits = 0;        // of `hits`: blocks found on disk
  uint64_t demotions = 0;        // memory -> disk
  uint64_t promotions = 0;       // disk -> memory
  // Demotions (to disk, or device to host) that failed (a write or copy
  // error): the block was dropped instead.
  uint64_t demotion_failures = 0;
  uint64_t disk_evictions = 0;
  uint64_t disk_reads = 0;
  uint64_t disk_writes = 0;
  uint64_t disk_read_bytes = 0;
  uint64_t disk_written_bytes = 0;
  uint64_t disk_corrupt_records = 0;  // found at start or on a read; dropped, never served
  uint64_t disk_recovered = 0;        // blocks found on disk at start
};

// Thread-safe: every method may be called from any thread. Metadata (index,
// allocator, policy, leases) sits behind one mutex; block bytes are copied
// outside it, under a pin, so copies of different blocks run in parallel.
// Never allocates on the Put/Get path once warm, except for the index's hash
// table growing.
class ShardStore {
 public:
  static absl::StatusOr<std::unique_ptr<ShardStore>> Create(const ShardStoreOptions& options);
  virtual ~ShardStore() = default;

  // Makes a namespace known and adds the page classes its blocks need (one per
  // codec). Idempotent. INVALID_ARGUMENT for a bad spec or a block larger than
  // a slab.
  virtual absl::StatusOr<NamespaceId> RegisterNamespace(const NamespaceSpec& spec) = 0;

  // Stores one block (`data` is the stored form for `options.codec`: exactly
  // CpuCodec(codec).EncodedSize(layout) bytes). Evicts to make room.
  //   NOT_FOUND           unknown namespace
  //   INVALID_ARGUMENT    size does not match the namespace's layout and codec
  //   RESOURCE_EXHAUSTED  no room even after evicting everything unpinned
  //   FAILED_PRECONDITION an explicit version not newer than the stored one
  // A mutable write to a pinned entry proceeds: the readers keep the old
  // version's page (it is retired, and freed with its last pin).
  // On any error the store is unchanged, except for blocks evicted to make room.
  virtual absl::StatusOr<PutResult> Put(NamespaceId ns, const BlockKey& key,
                                        absl::Span<const std::byte> data,
                                        const PutOptions& options = {}) = 0;

  // Two-phase put for writers that fill the page themselves (one-sided RMA):
  // Reserve checks and reserves exactly like Put (same errors; evicts to make
  // room) without copying; the caller writes `location.size` bytes at
  // `location`, then Commit makes the block visible, or Abort frees the page.
  // A reservation not committed within `lease` (0 = the default lease)
  // expires and its page is freed. Commit re-checks what may have changed
  // meanwhile (a racing writer of the same immutable block wins and Commit
  // reports already_present; an explicit version overtaken meanwhile is
  // FAILED_PRECONDITION). Commit and Abort of an unknown or expired id:
  // NOT_FOUND.
  virtual absl::StatusOr<PutReservation> Reserve(NamespaceId ns, const BlockKey& key,
                                                 uint64_t size, const PutOptions& options = {},
                                                 absl::Duration lease = absl::ZeroDuration()) = 0;
  virtual absl::StatusOr<PutResult> Commit(uint64_t reservation_id) = 0;
  virtual absl::Status Abort(uint64_t reservation_id) = 0;

  // Copies a block into `dst` (at least its stored size). A block on the disk
  // tier is first read back into memory (blocking, outside the lock); one
  // that does not verify there is dropped and reported NOT_FOUND. NOT_FOUND if absent;
  // FAILED_PRECONDITION if `min_version` is newer than what is stored;
  // INVALID_ARGUMENT if `dst` is too small.
  virtual absl::StatusOr<BlockInfo> Get(NamespaceId ns, const BlockKey& key,
                                        absl::Span<std::byte> dst,
                                        std::optional<Version> min_version = {}) = 0;

  // Pins a block for an RMA reader until Unpin or the lease's expiry (a block
  // on the disk tier is brought back to memory first, as Get does): the
  // pinned bytes are never evicted, freed or written over (an overwrite of a
  // mutable entry goes to a new page). `lease` 0 = the default.
  virtual absl::StatusOr<Lease> Pin(NamespaceId ns, const BlockKey& key,
                                    absl::Duration lease = absl::ZeroDuration()) = 0;
  // Pin for a reader that reaches CPU-addressable memory only (a remote
  // reader through the agent's host arena). A block in a host tier is pinned
  // as Pin does. A block in a device tier stays there: its bytes are copied
  // (blocking, outside the lock) into a host *staging* page that the lease
  // pins and that is freed with it; the lease's location is that page (tier
  // kHost/kPinnedHost) and its info.tier the block's own. Making room for the
  // staging page evicts from the host tiers as a put does. Same errors as Pin.
  virtual absl::StatusOr<Lease> PinHost(NamespaceId ns, const BlockKey& key,
                                        absl::Duration lease = absl::ZeroDuration()) = 0;
  // A read hold: keeps a block that a Lookup just reported from being evicted
  // before the Get that usually follows (docs/shard-store.md, "Read holds").
  // A pin in every other way (a block on the disk tier is brought back to
  // memory first, blocking), but it counts no hit and does not touch the
  // block for the eviction policy: a lookup is not a read. Returns the lease
  // id (Unpin ends it early); NOT_FOUND if absent.
  virtual absl::StatusOr<uint64_t> Hold(NamespaceId ns, const BlockKey& key,
                                        absl::Duration hold) = 0;
  // NOT_FOUND if the lease is unknown, already released or expired.
  virtual absl::Status Unpin(uint64_t lease_id) = 0;
  // Releases leases and reservations past their expiry; returns how many.
  // Also runs lazily on Pin and Reserve, and when a put needs room.
  virtual uint64_t ExpireLeases() = 0;

  // The longest prefix of `keys` held here; counts hits and one miss, and
  // touches the hits for the eviction policy.
  virtual size_t MatchPrefix(NamespaceId ns, absl::Span<const BlockKey> keys) = 0;
  // For each key, its version if held. No side effects.
  virtual std::vector<std::optional<BlockInfo>> Lookup(NamespaceId ns,
                                                       absl::Span<const BlockKey> keys) = 0;

  // NOT_FOUND if absent. A pinned block is removed too (no new reader finds
  // it); its readers keep their bytes until their pins go.
  virtual absl::Status Remove(NamespaceId ns, const BlockKey& key) = 0;

  // Evicts by policy until used bytes <= `target_used_bytes` or only pinned
  // blocks remain. Returns the number of blocks evicted. With a disk tier the
  // victims are demoted to it (blocking on the writes, outside the lock).
  virtual uint64_t EvictToTarget(uint64_t target_used_bytes) = 0;

  // Caps the bytes the host (CPU-memory) tiers may use together (memory
  // pressure: node/agent/memory_pressure.h; a device tier is not host
  // memory and is not capped): evicts (demotes) down to it now, and puts,
  // promotions and device-to-host demotions evict to stay under it.
  // UINT64_MAX lifts the cap. Returns the number of blocks evicted.
  virtual uint64_t SetMemoryLimit(uint64_t bytes) = 0;

  // Bytes stored, by time since last access: what an agent reports with its
  // heartbeat for the coordinator's global eviction. O(entries) under the
  // store's lock (about a millisecond per million blocks).
  // Every stored block whose placement hash `want` accepts, in one pass under
  // the store's lock (keep `want` cheap: a range lookup, not I/O).
  virtual std::vector<StoredBlock> Scan(const std::function<bool(uint64_t)>& want) const = 0;

  virtual AgeHistogram Ages() const = 0;
  // Evicts unpinned blocks not accessed for `age` or longer (the
  // coordinator's cluster-wide cutoff), least recently used first, and stops
  // once the store's used bytes are at most `keep_bytes` (0: evicts every
  // such block). The floor keeps a cutoff computed from usage reports that
  // have since gone stale from emptying a store that no longer needs it.
  // Returns how many it evicted.
  virtual uint64_t EvictOlderThan(absl::Duration age, uint64_t keep_bytes) = 0;

  // The cluster-map epoch new versions are stamped with.
  virtual void SetEpoch(uint64_t epoch) = 0;

  virtual ShardStoreStats Stats() const = 0;
  // The arena of the first memory tier of `kind` (base, capacity), e.g. the
  // GPU tier's for exporting it over CUDA IPC; empty when there is none.
  virtual absl::Span<std::byte> TierArena(TierKind kind) const = 0;

  // Disk tier latencies (per record read, per coalesced write); null without
  // a disk tier. Live for the store's life.
  virtual const LatencyHistogram* DiskReadLatency() const = 0;
  virtual const LatencyHistogram* DiskWriteLatency() const = 0;
};

}  // namespace kvf

#endif  // KVF_NODE_SHARD_STORE_H_
