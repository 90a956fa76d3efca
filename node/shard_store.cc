#include "node/shard_store.h"

#include <algorithm>
#include <array>
#include <utility>
#include <variant>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "kernels/device.h"
#include "node/eviction_policy.h"
#include "node/internal/block_index.h"
#include "node/internal/slab_allocator.h"

namespace kvf {
namespace {

using internal::BlockIndex;
using internal::Entry;
using internal::SlabAllocator;

constexpr uint64_t kPageAlignment = 64;  // a cache line; RMA-friendly
constexpr uint64_t kMiB = uint64_t{1} << 20;
constexpr size_t kMaxReservedEntries = size_t{1} << 24;

uint64_t RoundUp(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }

bool ValidCodec(CodecId c) { return static_cast<int>(c) < kNumCodecs; }

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

class ShardStoreImpl final : public ShardStore {
 public:
  ShardStoreImpl(const ShardStoreOptions& options, std::vector<Tier> tiers,
                 std::unique_ptr<EvictionPolicy> policy)
      : options_(options),
        clock_(options.clock ? *options.clock : Clock::Real()),
        tiers_(std::move(tiers)),
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
  absl::Status Unpin(uint64_t lease_id) override;
  uint64_t ExpireLeases() override;
  size_t MatchPrefix(NamespaceId ns, absl::Span<const BlockKey> keys) override;
  std::vector<std::optional<BlockInfo>> Lookup(NamespaceId ns,
                                               absl::Span<const BlockKey> keys) override;
  absl::Status Remove(NamespaceId ns, const BlockKey& key) override;
  uint64_t EvictToTarget(uint64_t target_used_bytes) override;
  AgeHistogram Ages() const override;
  uint64_t EvictOlderThan(absl::Duration age, uint64_t keep_bytes) override;
  std::vector<StoredBlock> Scan(const std::function<bool(uint64_t)>& want) const override;
  void SetEpoch(uint64_t epoch) override;
  ShardStoreStats Stats() const override;

 private:
  // A requested lease, with 0 meaning the store's default.
  absl::StatusOr<absl::Duration> LeaseOrDefault(absl::Duration lease) const {
    if (lease < absl::ZeroDuration()) return absl::InvalidArgumentError("negative lease");
    return lease == absl::ZeroDuration() ? options_.default_lease : lease;
  }
  BlockInfo InfoOf(const Entry& e) const {
    return BlockInfo{e.version, e.codec, e.size, tiers_[e.tier].memory->kind(), e.mutable_entry};
  }
  absl::StatusOr<int> PageClassLocked(NamespaceInfo& info, size_t tier, CodecId codec)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A page for a block of `codec` in `ns`, evicting by policy as needed.
  absl::StatusOr<PageRef> ReserveLocked(NamespaceInfo& info, CodecId codec,
                                            uint64_t* evicted) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Phase 1 of a put: validates, answers an immutable re-put at once (the
  // PutResult), or reserves a page (the PendingPut).
  absl::StatusOr<std::variant<PendingPut, PutResult>> BeginPutLocked(NamespaceId ns,
                                                                     const BlockKey& key,
                                                                     uint64_t size,
                                                                     const PutOptions& options)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
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
  // Frees an entry's page and forgets it. The policy must already have let go.
  void DropLocked(EntryId id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool EvictOneLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Drops `id` (already out of the policy) and counts it as evicted.
  void EvictLocked(EntryId id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  uint64_t ExpireLeasesLocked(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  uint64_t UsedBytesLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void TouchLocked(EntryId id, absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    index_.at(id).last_access = now;
    policy_->Touch(id);
  }

  const ShardStoreOptions options_;
  const Clock& clock_;
  std::vector<Tier> tiers_;  // fastest first; the vector itself never changes

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
  uint64_t hits_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t misses_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t puts_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t evictions_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t evicted_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t expired_leases_ ABSL_GUARDED_BY(mu_) = 0;
};

absl::StatusOr<NamespaceId> ShardStoreImpl::RegisterNamespace(const NamespaceSpec& spec) {
  KVF_RETURN_IF_ERROR(spec.Validate());
  NamespaceInfo info;
  info.spec = spec;
  for (int c = 0; c < kNumCodecs; ++c) {
    info.encoded_size[c] = CpuCodec(static_cast<CodecId>(c)).EncodedSize(spec.layout);
  }
  const uint64_t largest = *std::max_element(info.encoded_size.begin(), info.encoded_size.end());
  const uint64_t slab = tiers_.front().allocator.slab_bytes();
  if (RoundUp(largest, kPageAlignment) > slab) {
    return absl::InvalidArgumentError(absl::StrCat(
        "namespace ", spec.model_id, ": a block of ", largest, " bytes (", spec.layout.DebugString(),
        ") does not fit in a ", slab, "-byte slab; raise slab_bytes"));
  }
  info.page_class.assign(tiers_.size(), std::array<int, kNumCodecs>{-1, -1, -1, -1});
  const NamespaceId id = spec.Id();
  absl::MutexLock lock(&mu_);
  if (namespaces_.contains(id)) return id;
  // Size the index for this namespace's smallest blocks filling every tier.
  uint64_t capacity = 0;
  for (const Tier& t : tiers_) capacity += t.memory->capacity();
  const uint64_t smallest = std::max<uint64_t>(
      options_.min_page_bytes, *std::min_element(info.encoded_size.begin(), info.encoded_size.end()));
  index_.Reserve(std::min<size_t>(kMaxReservedEntries, index_.size() + capacity / smallest));
  namespaces_.emplace(id, std::move(info));
  return id;
}

absl::StatusOr<int> ShardStoreImpl::PageClassLocked(NamespaceInfo& info, size_t tier,
                                                    CodecId codec) {
  int& cls = info.page_class[tier][static_cast<int>(codec)];
  if (cls < 0) {
    const uint64_t page = std::max(options_.min_page_bytes,
                                   RoundUp(info.encoded_size[static_cast<int>(codec)], kPageAlignment));
    KVF_ASSIGN_OR_RETURN(cls, tiers_[tier].allocator.AddClass(page));
  }
  return cls;
}

absl::StatusOr<PageRef> ShardStoreImpl::ReserveLocked(NamespaceInfo& info, CodecId codec,
                                                          uint64_t* evicted) {
  bool expired_leases = false;
  for (;;) {
    for (size_t t = 0; t < tiers_.size(); ++t) {
      KVF_ASSIGN_OR_RETURN(const int cls, PageClassLocked(info, t, codec));
      if (std::optional<uint64_t> offset = tiers_[t].allocator.Allocate(cls)) {
        return PageRef{static_cast<uint8_t>(t), *offset};
      }
    }
    if (EvictOneLocked()) {
      ++*evicted;
      continue;
    }
    if (!expired_leases) {
      expired_leases = true;
      if (ExpireLeasesLocked(clock_.Now()) > 0) continue;
    }
    return absl::ResourceExhaustedError(absl::StrCat(
        "no room for a ", info.encoded_size[static_cast<int>(codec)], "-byte block: ",
        index_.size(), " blocks stored, ", pinned_entries_, " pinned, none evictable"));
  }
}

bool ShardStoreImpl::EvictOneLocked() {
  std::optional<EntryId> victim =
      policy_->Evict([this](EntryId id) ABSL_NO_THREAD_SAFETY_ANALYSIS {
        return index_.at(id).pins == 0;
      });
  if (!victim) return false;
  EvictLocked(*victim);
  return true;
}

void ShardStoreImpl::EvictLocked(EntryId id) {
  ++evictions_;
  evicted_bytes_ += index_.at(id).size;
  DropLocked(id);
}

void ShardStoreImpl::UnpinLocked(EntryId entry, const PageRef& page) {
  const Entry& e = index_.at(entry);
  if (e.live && e.tier == page.tier && e.offset == page.offset) {
    if (--index_.at(entry).pins == 0) --pinned_entries_;
    return;
  }
  auto it = retired_.find({page.tier, page.offset});
  if (it != retired_.end() && --it->second == 0) {
    ReleasePageLocked(page);
    retired_.erase(it);
  }
}

void ShardStoreImpl::DropLocked(EntryId id) {
  const Entry& e = index_.at(id);
  tiers_[e.tier].allocator.Free(e.offset);
  tier_stored_bytes_[e.tier] -= e.size;
  index_.Erase(id);
}

absl::StatusOr<std::variant<PendingPut, PutResult>> ShardStoreImpl::BeginPutLocked(
    NamespaceId ns, const BlockKey& key, uint64_t size, const PutOptions& options) {
  if (!ValidCodec(options.codec)) {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown codec ", static_cast<int>(options.codec)));
  }
  auto ns_it = namespaces_.find(ns);
  if (ns_it == namespaces_.end()) {
    return absl::NotFoundError(absl::StrCat("namespace ", absl::Hex(ns), " is not registered"));
  }
  NamespaceInfo& info = ns_it->second;
  const uint64_t expected = info.encoded_size[static_cast<int>(options.codec)];
  if (size != expected) {
    return absl::InvalidArgumentError(absl::StrCat(
        "block ", key.ToHex(), " is ", size, " bytes; namespace ", info.spec.model_id, " (",
        info.spec.layout.DebugString(), ") with codec ", std::string(CodecName(options.codec)),
        " stores ", expected));
  }
  const bool immutable_put = !options.mutable_entry && !options.version.has_value();
  if (std::optional<EntryId> id = index_.Find(ns, key)) {
    Entry& e = index_.at(*id);
    if (immutable_put && !e.mutable_entry) {
      if (e.codec != options.codec) {
        return absl::FailedPreconditionError(absl::StrCat(
            "block ", key.ToHex(), " is stored with codec ", std::string(CodecName(e.codec))));
      }
      TouchLocked(*id, clock_.Now());
      PutResult present;
      present.version = e.version;
      present.already_present = true;
      return present;
    }
    if (options.version && *options.version <= e.version) {
      return absl::FailedPreconditionError(
          absl::StrCat("block ", key.ToHex(), ": version ", options.version->ToString(),
                       " is not newer than stored ", e.version.ToString()));
    }
  }
  PendingPut put{.ns = ns, .key = key, .options = options, .size = size};
  KVF_ASSIGN_OR_RETURN(put.page, ReserveLocked(info, options.codec, &put.evicted));
  return put;
}

absl::StatusOr<PutResult> ShardStoreImpl::FinishPutLocked(const PendingPut& put) {
  const PutOptions& options = put.options;
  const bool immutable_put = !options.mutable_entry && !options.version.has_value();
  const absl::Time now = clock_.Now();
  PutResult result;
  result.evicted_blocks = put.evicted;
  if (std::optional<EntryId> id = index_.Find(put.ns, put.key)) {
    Entry& e = index_.at(*id);
    if (immutable_put && !e.mutable_entry) {  // another writer of the same block won
      ReleasePageLocked(put.page);
      TouchLocked(*id, now);
      result.version = e.version;
      result.already_present = true;
      return result;
    }
    if (options.version && *options.version <= e.version) {
      ReleasePageLocked(put.page);
      return absl::FailedPreconditionError(absl::StrCat(
          "block ", put.key.ToHex(), " changed during the put (now version ",
          e.version.ToString(), ")"));
    }
    result.version = options.version
                         ? *options.version
                         : Version{std::max(epoch_, e.version.epoch), e.version.counter + 1};
    if (e.pins > 0) {
      // Readers keep the old version's page until their pins go.
      retired_[{e.tier, e.offset}] += e.pins;
      e.pins = 0;
      --pinned_entries_;
    } else {
      ReleasePageLocked(PageRef{e.tier, e.offset});
    }
    tier_stored_bytes_[e.tier] -= e.size;
    tier_stored_bytes_[put.page.tier] += put.size;
    e.version = result.version;
    e.codec = options.codec;
    e.mutable_entry = options.mutable_entry;
    e.placement_hash = options.placement_hash;
    e.tier = put.page.tier;
    e.offset = put.page.offset;
    e.size = put.size;
    TouchLocked(*id, now);
  } else {
    result.version = options.version ? *options.version
                                     : Version{epoch_, options.mutable_entry ? 1u : 0u};
    Entry e;
    e.ns = put.ns;
    e.key = put.key;
    e.version = result.version;
    e.codec = options.codec;
    e.mutable_entry = options.mutable_entry;
    e.placement_hash = options.placement_hash;
    e.tier = put.page.tier;
    e.offset = put.page.offset;
    e.size = put.size;
    e.last_access = now;
    const EntryId new_id = index_.Insert(e);
    tier_stored_bytes_[e.tier] += e.size;
    policy_->Insert(new_id, EvictionHint{put.key, options.parent, options.depth, e.size});
  }
  ++puts_;
  return result;
}

absl::StatusOr<PutResult> ShardStoreImpl::Put(NamespaceId ns, const BlockKey& key,
                                              absl::Span<const std::byte> data,
                                              const PutOptions& options) {
  PendingPut put;
  {
    absl::MutexLock lock(&mu_);
    KVF_ASSIGN_OR_RETURN(auto begun, BeginPutLocked(ns, key, data.size(), options));
    if (auto* present = std::get_if<PutResult>(&begun)) return *present;
    put = std::get<PendingPut>(std::move(begun));
  }
  // The page is ours alone: nobody else can see it until it is in the index.
  absl::Status copied = tiers_[put.page.tier].memory->Write(put.page.offset, data);
  absl::MutexLock lock(&mu_);
  if (!copied.ok()) {
    ReleasePageLocked(put.page);
    return copied;
  }
  return FinishPutLocked(put);
}

absl::StatusOr<PutReservation> ShardStoreImpl::Reserve(NamespaceId ns, const BlockKey& key,
                                                       uint64_t size, const PutOptions& options,
                                                       absl::Duration lease) {
  KVF_ASSIGN_OR_RETURN(lease, LeaseOrDefault(lease));
  absl::MutexLock lock(&mu_);
  const absl::Time now = clock_.Now();
  ExpireLeasesLocked(now);
  KVF_ASSIGN_OR_RETURN(auto begun, BeginPutLocked(ns, key, size, options));
  PutReservation out;
  if (auto* present = std::get_if<PutResult>(&begun)) {
    out.already_present = true;
    out.version = present->version;
    return out;
  }
  PendingPut& put = std::get<PendingPut>(begun);
  put.expires = now + lease;
  out.id = next_lease_id_++;
  out.location = BlockLocation{tiers_[put.page.tier].memory->kind(),
                               tiers_[put.page.tier].memory->base() + put.page.offset, put.size};
  out.expires = put.expires;
  next_expiry_ = std::min(next_expiry_, put.expires);
  reservations_.emplace(out.id, std::move(put));
  return out;
}

absl::StatusOr<PutResult> ShardStoreImpl::Commit(uint64_t reservation_id) {
  absl::MutexLock lock(&mu_);
  auto it = reservations_.find(reservation_id);
  if (it == reservations_.end()) {
    return absl::NotFoundError(absl::StrCat("reservation ", reservation_id,
                                            " is unknown, committed, aborted or expired"));
  }
  const PendingPut put = std::move(it->second);
  reservations_.erase(it);
  return FinishPutLocked(put);
}

absl::Status ShardStoreImpl::Abort(uint64_t reservation_id) {
  absl::MutexLock lock(&mu_);
  auto it = reservations_.find(reservation_id);
  if (it == reservations_.end()) {
    return absl::NotFoundError(absl::StrCat("reservation ", reservation_id,
                                            " is unknown, committed, aborted or expired"));
  }
  ReleasePageLocked(it->second.page);
  reservations_.erase(it);
  return absl::OkStatus();
}

absl::StatusOr<BlockInfo> ShardStoreImpl::Get(NamespaceId ns, const BlockKey& key,
                                              absl::Span<std::byte> dst,
                                              std::optional<Version> min_version) {
  EntryId id;
  BlockInfo info;
  uint8_t tier;
  uint64_t offset;
  {
    absl::MutexLock lock(&mu_);
    std::optional<EntryId> found = index_.Find(ns, key);
    if (!found) {
      ++misses_;
      return absl::NotFoundError(absl::StrCat("block ", key.ToHex(), " is not stored here"));
    }
    id = *found;
    Entry& e = index_.at(id);
    if (min_version && e.version < *min_version) {
      return absl::FailedPreconditionError(absl::StrCat("block ", key.ToHex(), " is at version ",
                                                        e.version.ToString(), ", older than ",
                                                        min_version->ToString()));
    }
    if (dst.size() < e.size) {
      return absl::InvalidArgumentError(absl::StrCat("buffer of ", dst.size(),
                                                     " bytes for a block of ", e.size));
    }
    if (e.pins++ == 0) ++pinned_entries_;  // hold it while copying outside the lock
    info = InfoOf(e);
    tier = e.tier;
    offset = e.offset;
  }
  absl::Status copied = tiers_[tier].memory->Read(offset, dst.first(info.size));
  absl::MutexLock lock(&mu_);
  UnpinLocked(id, PageRef{tier, offset});
  if (!copied.ok()) return copied;
  ++hits_;
  TouchLocked(id, clock_.Now());
  return info;
}

absl::StatusOr<Lease> ShardStoreImpl::Pin(NamespaceId ns, const BlockKey& key,
                                          absl::Duration lease) {
  KVF_ASSIGN_OR_RETURN(lease, LeaseOrDefault(lease));
  absl::MutexLock lock(&mu_);
  const absl::Time now = clock_.Now();
  ExpireLeasesLocked(now);
  std::optional<EntryId> id = index_.Find(ns, key);
  if (!id) {
    ++misses_;
    return absl::NotFoundError(absl::StrCat("block ", key.ToHex(), " is not stored here"));
  }
  Entry& e = index_.at(*id);
  if (e.pins++ == 0) ++pinned_entries_;
  Lease out;
  out.id = next_lease_id_++;
  out.info = InfoOf(e);
  out.location = BlockLocation{out.info.tier, tiers_[e.tier].memory->base() + e.offset, e.size};
  out.expires = now + lease;
  leases_.emplace(out.id, LeaseRecord{*id, PageRef{e.tier, e.offset}, out.expires});
  next_expiry_ = std::min(next_expiry_, out.expires);
  ++hits_;
  TouchLocked(*id, now);
  return out;
}

absl::Status ShardStoreImpl::Unpin(uint64_t lease_id) {
  absl::MutexLock lock(&mu_);
  auto it = leases_.find(lease_id);
  if (it == leases_.end()) {
    return absl::NotFoundError(
        absl::StrCat("lease ", lease_id, " is unknown, already released or expired"));
  }
  UnpinLocked(it->second.entry, it->second.page);
  leases_.erase(it);
  return absl::OkStatus();
}

uint64_t ShardStoreImpl::ExpireLeases() {
  absl::MutexLock lock(&mu_);
  return ExpireLeasesLocked(clock_.Now());
}

uint64_t ShardStoreImpl::ExpireLeasesLocked(absl::Time now) {
  if (now < next_expiry_) return 0;
  uint64_t expired = 0;
  absl::Time next = absl::InfiniteFuture();
  for (auto it = leases_.begin(); it != leases_.end();) {
    if (it->second.expires <= now) {
      UnpinLocked(it->second.entry, it->second.page);
      leases_.erase(it++);
      ++expired;
    } else {
      next = std::min(next, it->second.expires);
      ++it;
    }
  }
  for (auto it = reservations_.begin(); it != reservations_.end();) {
    if (it->second.expires <= now) {
      ReleasePageLocked(it->second.page);
      reservations_.erase(it++);
      ++expired;
    } else {
      next = std::min(next, it->second.expires);
      ++it;
    }
  }
  next_expiry_ = next;
  expired_leases_ += expired;
  return expired;
}

size_t ShardStoreImpl::MatchPrefix(NamespaceId ns, absl::Span<const BlockKey> keys) {
  absl::MutexLock lock(&mu_);
  const absl::Time now = clock_.Now();
  size_t n = 0;
  for (; n < keys.size(); ++n) {
    std::optional<EntryId> id = index_.Find(ns, keys[n]);
    if (!id) break;
    TouchLocked(*id, now);
  }
  hits_ += n;
  if (n < keys.size()) ++misses_;
  return n;
}

std::vector<std::optional<BlockInfo>> ShardStoreImpl::Lookup(NamespaceId ns,
                                                            absl::Span<const BlockKey> keys) {
  std::vector<std::optional<BlockInfo>> out(keys.size());
  absl::MutexLock lock(&mu_);
  for (size_t i = 0; i < keys.size(); ++i) {
    if (std::optional<EntryId> id = index_.Find(ns, keys[i])) out[i] = InfoOf(index_.at(*id));
  }
  return out;
}

absl::Status ShardStoreImpl::Remove(NamespaceId ns, const BlockKey& key) {
  absl::MutexLock lock(&mu_);
  std::optional<EntryId> id = index_.Find(ns, key);
  if (!id) return absl::NotFoundError(absl::StrCat("block ", key.ToHex(), " is not stored here"));
  policy_->Erase(*id);
  Entry& e = index_.at(*id);
  if (e.pins > 0) {
    // Readers keep their bytes: the page is retired, freed with its last pin.
    retired_[{e.tier, e.offset}] += e.pins;
    e.pins = 0;
    --pinned_entries_;
    tier_stored_bytes_[e.tier] -= e.size;
    index_.Erase(*id);
    return absl::OkStatus();
  }
  DropLocked(*id);
  return absl::OkStatus();
}

uint64_t ShardStoreImpl::UsedBytesLocked() const {
  uint64_t used = 0;
  for (const Tier& t : tiers_) used += t.allocator.GetStats().used_bytes;
  return used;
}

uint64_t ShardStoreImpl::EvictToTarget(uint64_t target_used_bytes) {
  absl::MutexLock lock(&mu_);
  uint64_t evicted = 0;
  while (UsedBytesLocked() > target_used_bytes && EvictOneLocked()) ++evicted;
  return evicted;
}

AgeHistogram ShardStoreImpl::Ages() const {
  AgeHistogram ages;
  absl::MutexLock lock(&mu_);
  const absl::Time now = clock_.Now();
  index_.ForEach([&](EntryId, const Entry& e) { ages.Add(now - e.last_access, e.size); });
  return ages;
}

std::vector<StoredBlock> ShardStoreImpl::Scan(const std::function<bool(uint64_t)>& want) const {
  absl::MutexLock lock(&mu_);
  std::vector<StoredBlock> out;
  index_.ForEach([&](EntryId, const Entry& e) {
    if (want(e.placement_hash)) {
      out.push_back(StoredBlock{e.ns, e.key, e.placement_hash, InfoOf(e)});
    }
  });
  return out;
}

uint64_t ShardStoreImpl::EvictOlderThan(absl::Duration age, uint64_t keep_bytes) {
  absl::MutexLock lock(&mu_);
  const absl::Time cutoff = clock_.Now() - age;
  std::vector<std::pair<absl::Time, EntryId>> victims;
  index_.ForEach([&](EntryId id, const Entry& e) {
    if (e.pins == 0 && e.last_access <= cutoff) victims.emplace_back(e.last_access, id);
  });
  std::sort(victims.begin(), victims.end());
  uint64_t evicted = 0;
  for (const auto& [last_access, id] : victims) {
    if (keep_bytes > 0 && UsedBytesLocked() <= keep_bytes) break;
    policy_->Erase(id);
    EvictLocked(id);
    ++evicted;
  }
  return evicted;
}

void ShardStoreImpl::SetEpoch(uint64_t epoch) {
  absl::MutexLock lock(&mu_);
  epoch_ = std::max(epoch_, epoch);
}

ShardStoreStats ShardStoreImpl::Stats() const {
  absl::MutexLock lock(&mu_);
  ShardStoreStats s;
  uint64_t used = 0, stored = 0, free = 0, free_in_slabs = 0;
  for (size_t i = 0; i < tiers_.size(); ++i) {
    const SlabAllocator::Stats a = tiers_[i].allocator.GetStats();
    s.tiers.push_back(TierStats{tiers_[i].memory->kind(), a.capacity_bytes, a.used_bytes,
                                tier_stored_bytes_[i], a.free_bytes});
    used += a.used_bytes;
    stored += tier_stored_bytes_[i];
    free += a.free_bytes;
    free_in_slabs += a.free_slab_bytes;
  }
  s.entries = index_.size();
  s.pinned_entries = pinned_entries_;
  s.active_leases = leases_.size();
  s.pending_reservations = reservations_.size();
  s.hits = hits_;
  s.misses = misses_;
  s.puts = puts_;
  s.evictions = evictions_;
  s.evicted_bytes = evicted_bytes_;
  s.expired_leases = expired_leases_;
  s.internal_fragmentation = used ? 1.0 - double(stored) / double(used) : 0.0;
  s.external_fragmentation = free ? double(free - free_in_slabs) / double(free) : 0.0;
  return s;
}

uint64_t DefaultSlabBytes(uint64_t arena) {
  return std::clamp(RoundUp(arena / 64, kMiB), 4 * kMiB, 64 * kMiB);
}

}  // namespace

absl::StatusOr<std::unique_ptr<ShardStore>> ShardStore::Create(const ShardStoreOptions& options) {
  std::vector<Tier> tiers;
  auto add_tier = [&](std::unique_ptr<MemoryTier> memory) -> absl::Status {
    const uint64_t arena = memory->capacity();
    uint64_t slab = options.slab_bytes ? options.slab_bytes : DefaultSlabBytes(arena);
    slab = std::min(slab, arena);
    KVF_ASSIGN_OR_RETURN(SlabAllocator allocator,
                         SlabAllocator::Create(arena, slab, options.min_page_bytes));
    tiers.push_back(Tier{std::move(memory), std::move(allocator)});
    return absl::OkStatus();
  };
  if (options.device_bytes > 0) {
    if (Devices().count > 0) {
      KVF_ASSIGN_OR_RETURN(auto device, CreateDeviceTier(options.device_bytes, 0));
      KVF_RETURN_IF_ERROR(add_tier(std::move(device)));
    } else {
      KVF_LOG(INFO) << "shard store: device tier of " << options.device_bytes
                    << " bytes skipped (" << Devices().reason << "); blocks live in host memory";
    }
  }
  if (options.host_bytes > 0) {
    KVF_ASSIGN_OR_RETURN(auto host,
                         options.host_memory != nullptr
                             ? CreateBorrowedHostTier(options.host_memory, options.host_bytes)
                             : CreateHostTier(options.host_bytes, options.pin_host));
    KVF_RETURN_IF_ERROR(add_tier(std::move(host)));
  }
  if (tiers.empty()) {
    return absl::InvalidArgumentError("shard store needs host_bytes or a usable device tier");
  }
  if (options.default_lease <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("default_lease must be positive");
  }
  uint64_t capacity = 0;
  for (const Tier& t : tiers) capacity += t.memory->capacity();
  const size_t hint = std::min<uint64_t>(kMaxReservedEntries, capacity / (64 * 1024) + 1024);
  KVF_ASSIGN_OR_RETURN(auto policy, CreateEvictionPolicy(options.eviction_policy, hint));
  return std::make_unique<ShardStoreImpl>(options, std::move(tiers), std::move(policy));
}

}  // namespace kvf
