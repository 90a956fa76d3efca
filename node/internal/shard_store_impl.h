// ShardStoreImpl: the ShardStore behind ShardStore::Create. Private to node/:
// shard_store.cc holds the memory-tier paths (puts, reads, leases, stats),
// shard_store_tiering.cc eviction, the disk tier's demotion and promotion,
// and recovery; shard_store_device.cc the chain of memory tiers (device ->
// host demotion) and host staging for device blocks.
#ifndef KVF_NODE_INTERNAL_SHARD_STORE_IMPL_H_
#define KVF_NODE_INTERNAL_SHARD_STORE_IMPL_H_

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <utility>
#include <variant>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "node/disk/disk_tier.h"
#include "node/eviction_policy.h"
#include "node/internal/block_index.h"
#include "node/internal/slab_allocator.h"
#include "node/shard_store.h"

namespace kvf::internal {

struct NamespaceInfo {
  NamespaceSpec spec;
  std::array<uint64_t, kNumCodecs> encoded_size{};
  // Page class per (tier, codec); -1 until the first put needs it.
  std::vector<std::array<int, kNumCodecs>> page_class;
};

struct Tier {
  std::unique_ptr<MemoryTier> memory;
  SlabAllocator allocator;
};

struct PageRef {
  uint8_t tier = 0;
  uint64_t offset = 0;
};

struct LeaseRecord {
  EntryId entry;
  PageRef page;  // the page pinned: it outlives an overwrite of the entry
  absl::Time expires;
};

// A put between its two phases: a page reserved and not yet in the index.
struct PendingPut {
  NamespaceId ns = 0;
  BlockKey key;
  PutOptions options;
  uint64_t size = 0;
  PageRef page;
  uint64_t evicted = 0;
  absl::Time expires = absl::InfiniteFuture();  // for remote writers only
  // A host staging page for a block whose home is a faster (device) tier:
  // Commit stores it there (a Put of the page's bytes) and frees the page.
  bool staged = false;
};

// A victim on its way down: to the disk tier, or (`to_memory`) to a page of
// the next memory tier (`dest`, reserved already). Its page is pinned (so it
// is neither freed nor reused) while its bytes are copied out, outside the
// lock.
struct Demotion {
  EntryId id = 0;
  PageRef page;
  uint64_t page_bytes = 0;  // pages this frees from memory (0 for a memory move)
  DiskSlot slot;
  DiskRecordMeta meta;
  bool to_memory = false;
  PageRef dest;
};

// What MakeRoomLocked achieved.
enum class Room {
  kNone,    // nothing evictable in the tier (or in the tiers below it)
  kFreed,   // a page of the tier is free now
  kQueued,  // a demotion is queued: room once it is settled
};

class ShardStoreImpl final : public ShardStore {
 public:
  // One eviction policy per memory tier (each tier's blocks compete only
  // with each other: a tier's victim moves to the next tier).
  ShardStoreImpl(const ShardStoreOptions& options, std::vector<Tier> tiers,
                 std::vector<std::unique_ptr<EvictionPolicy>> policies,
                 std::unique_ptr<DiskTier> disk)
      : options_(options),
        clock_(options.clock ? *options.clock : Clock::Real()),
        tiers_(std::move(tiers)),
        host_tier_(FirstHostTier(tiers_)),
        disk_(std::move(disk)),
        policies_(std::move(policies)),
        tier_stored_bytes_(tiers_.size(), 0),
        tier_blocks_(tiers_.size(), 0),
        tier_demotions_(tiers_.size(), 0),
        tier_demoted_bytes_(tiers_.size(), 0) {}

  absl::StatusOr<NamespaceId> RegisterNamespace(const NamespaceSpec& spec) override;
  absl::StatusOr<PutResult> Put(NamespaceId ns, const BlockKey& key,
                                absl::Span<const std::byte> data,
                                const PutOptions& options) override;
  absl::StatusOr<PutReservation> Reserve(NamespaceId ns, const BlockKey& key, uint64_t size,
                                         const PutOptions& options, absl::Duration lease) override;
  absl::StatusOr<PutResult> Commit(uint64_t reservation_id) override;
  absl::Status Abort(uint64_t reservation_id) override;
  absl::StatusOr<BlockInfo> Get(NamespaceId ns, const BlockKey& key, absl::Span<std::byte> dst,
                                std::optional<Version> min_version) override;
  absl::StatusOr<Lease> Pin(NamespaceId ns, const BlockKey& key, absl::Duration lease) override;
  absl::StatusOr<Lease> PinHost(NamespaceId ns, const BlockKey& key,
                                absl::Duration lease) override;
  absl::StatusOr<uint64_t> Hold(NamespaceId ns, const BlockKey& key, absl::Duration hold) override;
  absl::Status Unpin(uint64_t lease_id) override;
  uint64_t ExpireLeases() override;
  size_t MatchPrefix(NamespaceId ns, absl::Span<const BlockKey> keys) override;
  std::vector<std::optional<BlockInfo>> Lookup(NamespaceId ns,
                                               absl::Span<const BlockKey> keys) override;
  absl::Status Remove(NamespaceId ns, const BlockKey& key) override;
  uint64_t EvictToTarget(uint64_t target_used_bytes) override;
  uint64_t SetMemoryLimit(uint64_t bytes) override;
  AgeHistogram Ages() const override;
  uint64_t EvictOlderThan(absl::Duration age, uint64_t keep_bytes) override;
  std::vector<StoredBlock> Scan(const std::function<bool(uint64_t)>& want) const override;
  void SetEpoch(uint64_t epoch) override;
  ShardStoreStats Stats() const override;
  absl::Span<std::byte> TierArena(TierKind kind) const override;
  const LatencyHistogram* DiskReadLatency() const override {
    return disk_ ? &disk_->read_latency() : nullptr;
  }
  const LatencyHistogram* DiskWriteLatency() const override {
    return disk_ ? &disk_->write_latency() : nullptr;
  }

  // Puts the disk tier's recovered records into the index (at creation).
  void AdoptRecovered(const DiskRecovery& recovery);

 private:
  // A requested lease, with 0 meaning the store's default.
  absl::StatusOr<absl::Duration> LeaseOrDefault(absl::Duration lease) const {
    if (lease < absl::ZeroDuration()) return absl::InvalidArgumentError("negative lease");
    return lease == absl::ZeroDuration() ? options_.default_lease : lease;
  }
  BlockInfo InfoOf(const Entry& e) const {
    const TierKind kind = e.tier == kDiskTier ? TierKind::kDisk : tiers_[e.tier].memory->kind();
    return BlockInfo{e.version, e.codec, e.size, kind, e.mutable_entry};
  }
  // In the eviction policy: resident in memory and not being demoted.
  static bool Tracked(const Entry& e) { return e.tier != kDiskTier && !e.demoting; }
  // The first tier the CPU can address (tiers are fastest first: device
  // tiers, then host tiers); tiers.size() if none.
  static size_t FirstHostTier(const std::vector<Tier>& tiers) {
    size_t t = 0;
    while (t < tiers.size() && !tiers[t].memory->capabilities().cpu_addressable) ++t;
    return t;
  }
  bool IsHostTier(size_t t) const { return t >= host_tier_; }
  EvictionPolicy& PolicyOf(const Entry& e) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return *policies_[e.tier];
  }
  static DiskSlot SlotOf(const Entry& e);
  static DiskRecordMeta MetaOf(const Entry& e);
  absl::StatusOr<int> PageClassLocked(NamespaceInfo& info, size_t tier, CodecId codec)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A page for a block of `codec` in `ns`, evicting by policy as needed.
  // Without a disk tier: a page or RESOURCE_EXHAUSTED. With one, victims are
  // demoted, which frees nothing until their writes are done: then it returns
  // nullopt with the demotions to run in `demotions` (or none, when only other
  // threads' demotions can free room), and the caller calls SettleLocked and
  // starts over (the lock was dropped: references into the store are stale).
  // The page goes to tier `min_tier` or slower: to `min_tier` when it has
  // room or room can be made there by demoting its victims down the chain of
  // memory tiers (a full device tier sends its oldest blocks to host); to a
  // slower tier with a free page only when nothing in `min_tier` can move.
  absl::StatusOr<std::optional<PageRef>> ReserveLocked(NamespaceInfo& info, CodecId codec,
                                                       uint64_t* evicted,
                                                       std::vector<Demotion>* demotions,
                                                       size_t min_tier = 0)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A free page of class `cls` in tier `t`, within the host memory limit.
  std::optional<uint64_t> AllocateLocked(size_t t, int cls) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Makes room in tier `t` for one page: its policy's victim moves to tier
  // t+1 (room made there first, recursively) or, from the last memory tier,
  // leaves memory (demoted to disk, or dropped: counted in `evicted`).
  // `classes` are the page classes per tier of the block that needs the room.
  Room MakeRoomLocked(size_t t, const std::array<int, 8>& classes, uint64_t* evicted,
                      std::vector<Demotion>* demotions) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Copies `size` bytes between two pages of (possibly different) tiers.
  absl::Status CopyPage(const PageRef& from, const PageRef& to, uint64_t size) const;
  // Pin's bookkeeping for a memory entry: the lease on `page`.
  Lease PinLocked(EntryId id, const PageRef& page, absl::Duration lease, bool read, bool from_disk)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Commit of a staged reservation: stores the staging page's bytes in the
  // fastest tier (a Put) and frees the page.
  absl::StatusOr<PutResult> CommitStaged(const PendingPut& put);
  // Copies a pinned device block into a host staging page, pinned by a new lease.
  absl::StatusOr<Lease> StageLocked(EntryId id, absl::Duration lease)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Runs `demotions` outside the lock (copy out of the pinned pages, one
  // batched write) and finishes them; with none, waits for another thread's
  // demotions to finish. Drops and retakes mu_. Clears `demotions`.
  void SettleLocked(std::vector<Demotion>* demotions) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void FinishDemotionsLocked(const std::vector<Demotion>& demotions,
                             const std::vector<bool>& written) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A move to the next memory tier is copied (`copied`) or failed: the entry
  // moves to `d.dest`, or stays (the destination page is freed).
  void FinishMoveLocked(const Demotion& d, bool copied) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // `id` is out of its tier's policy: queue its move to `dest`, a page of the next tier.
  void StartMoveLocked(EntryId id, const PageRef& dest, std::vector<Demotion>* demotions)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Phase 1 of a put: validates, answers an immutable re-put at once (the
  // PutResult), reserves a page (the PendingPut), or asks for demotions first
  // (std::monostate, with `demotions` as ReserveLocked leaves them).
  absl::StatusOr<std::variant<PendingPut, PutResult, std::monostate>> BeginPutLocked(
      NamespaceId ns, const BlockKey& key, uint64_t size, const PutOptions& options,
      uint64_t* evicted, std::vector<Demotion>* demotions, size_t min_tier = 0)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Phase 2: the page holds the bytes; make them the entry (or give the page
  // back if the entry changed in a way that forbids it).
  absl::StatusOr<PutResult> FinishPutLocked(const PendingPut& put) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ReleasePageLocked(const PageRef& page) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    tiers_[page.tier].allocator.Free(page.offset);
  }
  // A demoted block leaves `page` (its demotion pin ends): readers that still
  // pin the page keep it until their last pin; the tier's counts drop.
  void LeavePageLocked(Entry& e, const PageRef& page) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Drops one pin on `page`, taken when it held `entry`. If the entry has
  // since moved to another page (overwritten while pinned), the old page was
  // retired and is freed with its last pin.
  void UnpinLocked(EntryId entry, const PageRef& page) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Frees a memory entry's page and forgets it. The policy must already have let go.
  void DropLocked(EntryId id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Forgets a disk entry and frees its record's space.
  void DropDiskLocked(EntryId id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Takes one block out of memory: the victim of the slowest memory tier at
  // or after `min_tier` that has one. Demotes it (queued in `demotions`,
  // when there is a disk tier and `demotions` is not null) or drops it.
  // False when nothing is evictable.
  bool EvictOneLocked(size_t min_tier, std::vector<Demotion>* demotions)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // `id` is out of the policy: queue its demotion. False if the disk tier
  // has no room for it now (the caller drops it instead).
  bool StartDemotionLocked(EntryId id, std::vector<Demotion>* demotions)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Forgets the blocks whose records the disk tier reclaimed.
  void DropReclaimedLocked(const std::vector<ReclaimedRecord>& reclaimed)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Drops `id` (already out of the policy) and counts it as evicted.
  void EvictLocked(EntryId id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Brings `key`'s block from the disk tier into memory. OK when it is in
  // memory afterwards (or was already, or changed meanwhile: callers look
  // again); NOT_FOUND if absent or corrupt on disk (then dropped).
  absl::Status Promote(NamespaceId ns, const BlockKey& key);
  // Pin and Hold: `read` counts the hit and touches the block.
  absl::StatusOr<Lease> PinBlock(NamespaceId ns, const BlockKey& key, absl::Duration lease,
                                 bool read);
  uint64_t ExpireLeasesLocked(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Pages handed out in the memory tiers from `min_tier` on (host_tier_:
  // what the memory limit caps).
  uint64_t UsedBytesLocked(size_t min_tier = 0) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void TouchLocked(EntryId id, absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    Entry& e = index_.at(id);
    // A reader that copied outside the lock may find its entry removed
    // meanwhile: a dead slot is in no policy.
    if (!e.live) return;
    e.last_access = now;
    if (Tracked(e)) PolicyOf(e).Touch(id);
  }
  // Evicts by policy (demoting to disk where it can) from the tiers at or
  // after `min_tier` while `more()` says so.
  uint64_t EvictWhile(size_t min_tier, const std::function<bool()>& more)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const ShardStoreOptions options_;
  const Clock& clock_;
  std::vector<Tier> tiers_;  // fastest first; the vector itself never changes
  const size_t host_tier_;   // FirstHostTier(tiers_)
  const std::unique_ptr<DiskTier> disk_;  // null without a disk tier

  mutable absl::Mutex mu_;
  std::vector<std::unique_ptr<EvictionPolicy>> policies_ ABSL_GUARDED_BY(mu_);  // per tier
  absl::flat_hash_map<NamespaceId, NamespaceInfo> namespaces_ ABSL_GUARDED_BY(mu_);
  BlockIndex index_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<uint64_t, LeaseRecord> leases_ ABSL_GUARDED_BY(mu_);
  // Pages of overwritten versions still pinned by readers: (tier, offset) ->
  // pins left. Freed when the count reaches zero.
  absl::flat_hash_map<std::pair<uint8_t, uint64_t>, uint32_t> retired_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<uint64_t, PendingPut> reservations_ ABSL_GUARDED_BY(mu_);
  uint64_t next_lease_id_ ABSL_GUARDED_BY(mu_) = 1;  // shared by leases and reservations
  absl::Time next_expiry_ ABSL_GUARDED_BY(mu_) = absl::InfiniteFuture();
  uint64_t epoch_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t pinned_entries_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<uint64_t> tier_stored_bytes_ ABSL_GUARDED_BY(mu_);  // block bytes per tier
  std::vector<uint64_t> tier_blocks_ ABSL_GUARDED_BY(mu_);        // blocks per tier
  std::vector<uint64_t> tier_demotions_ ABSL_GUARDED_BY(mu_);     // moved to the next tier
  std::vector<uint64_t> tier_demoted_bytes_ ABSL_GUARDED_BY(mu_);
  uint64_t staged_reads_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t staged_read_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t staged_writes_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t staged_write_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t staging_failures_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t memory_limit_ ABSL_GUARDED_BY(mu_) = UINT64_MAX;
  uint64_t hits_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t misses_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t puts_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t evictions_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t evicted_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t expired_leases_ ABSL_GUARDED_BY(mu_) = 0;
  // Disk tier.
  uint64_t disk_entries_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t demotions_in_flight_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t demoting_bytes_ ABSL_GUARDED_BY(mu_) = 0;  // pages pinned by demotions
  uint64_t demotions_finished_ ABSL_GUARDED_BY(mu_) = 0;  // ever: SettleLocked waits on it
  uint64_t disk_hits_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t demotions_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t promotions_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t demotion_failures_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t disk_evictions_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t disk_recovered_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace kvf::internal

#endif  // KVF_NODE_INTERNAL_SHARD_STORE_IMPL_H_
