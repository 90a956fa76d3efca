// ShardStoreImpl: the ShardStore behind ShardStore::Create. Private to node/:
// shard_store.cc holds the memory-tier paths (puts, reads, leases, stats),
// shard_store_tiering.cc eviction, the disk tier's demotion and promotion,
// and recovery.
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
};

// A victim on its way to the disk tier: its page is pinned (so it is neither
// freed nor reused) while its bytes are copied out and written, outside the
// lock.
struct Demotion {
  EntryId id = 0;
  PageRef page;
  uint64_t page_bytes = 0;
  DiskSlot slot;
  DiskRecordMeta meta;
};

class ShardStoreImpl final : public ShardStore {
 public:
  ShardStoreImpl(const ShardStoreOptions& options, std::vector<Tier> tiers,
                 std::unique_ptr<EvictionPolicy> policy, std::unique_ptr<DiskTier> disk)
      : options_(options),
        clock_(options.clock ? *options.clock : Clock::Real()),
        tiers_(std::move(tiers)),
        disk_(std::move(disk)),
        policy_(std::move(policy)),
        tier_stored_bytes_(tiers_.size(), 0) {}

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
  absl::StatusOr<std::optional<PageRef>> ReserveLocked(NamespaceInfo& info, CodecId codec,
                                                       uint64_t* evicted,
                                                       std::vector<Demotion>* demotions)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Runs `demotions` outside the lock (copy out of the pinned pages, one
  // batched write) and finishes them; with none, waits for another thread's
  // demotions to finish. Drops and retakes mu_. Clears `demotions`.
  void SettleLocked(std::vector<Demotion>* demotions) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void FinishDemotionsLocked(const std::vector<Demotion>& demotions,
                             const std::vector<bool>& written) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Phase 1 of a put: validates, answers an immutable re-put at once (the
  // PutResult), reserves a page (the PendingPut), or asks for demotions first
  // (std::monostate, with `demotions` as ReserveLocked leaves them).
  absl::StatusOr<std::variant<PendingPut, PutResult, std::monostate>> BeginPutLocked(
      NamespaceId ns, const BlockKey& key, uint64_t size, const PutOptions& options,
      uint64_t* evicted, std::vector<Demotion>* demotions) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Phase 2: the page holds the bytes; make them the entry (or give the page
  // back if the entry changed in a way that forbids it).
  absl::StatusOr<PutResult> FinishPutLocked(const PendingPut& put) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ReleasePageLocked(const PageRef& page) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    tiers_[page.tier].allocator.Free(page.offset);
  }
  // Drops one pin on `page`, taken when it held `entry`. If the entry has
  // since moved to another page (overwritten while pinned), the old page was
  // retired and is freed with its last pin.
  void UnpinLocked(EntryId entry, const PageRef& page) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Frees a memory entry's page and forgets it. The policy must already have let go.
  void DropLocked(EntryId id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Forgets a disk entry and frees its record's space.
  void DropDiskLocked(EntryId id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Takes the next victim from the policy: demotes it (queued in
  // `demotions`, when there is a disk tier and `demotions` is not null) or
  // drops it. False when nothing is evictable.
  bool EvictOneLocked(std::vector<Demotion>* demotions) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
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
  uint64_t UsedBytesLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void TouchLocked(EntryId id, absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    Entry& e = index_.at(id);
    e.last_access = now;
    if (Tracked(e)) policy_->Touch(id);
  }
  // Evicts by policy (demoting where it can) while `more()` says so.
  uint64_t EvictWhile(const std::function<bool()>& more) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const ShardStoreOptions options_;
  const Clock& clock_;
  std::vector<Tier> tiers_;  // fastest first; the vector itself never changes
  const std::unique_ptr<DiskTier> disk_;  // null without a disk tier

  mutable absl::Mutex mu_;
  std::unique_ptr<EvictionPolicy> policy_ ABSL_GUARDED_BY(mu_);
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
