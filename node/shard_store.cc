#include "node/shard_store.h"

#include <algorithm>
#include <array>
#include <utility>
#include <variant>

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "kernels/device.h"
#include "node/internal/shard_store_impl.h"

namespace kvf {
namespace internal {
namespace {

constexpr uint64_t kPageAlignment = 64;  // a cache line; RMA-friendly
constexpr uint64_t kMiB = uint64_t{1} << 20;
constexpr size_t kMaxReservedEntries = size_t{1} << 24;
// Get and Pin of a block on disk bring it to memory and look again; a block
// that keeps moving (evicted again at once) is given up after this many tries.
constexpr int kMaxPromoteAttempts = 4;

uint64_t RoundUp(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }

bool ValidCodec(CodecId c) { return static_cast<int>(c) < kNumCodecs; }

}  // namespace

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
  --tier_blocks_[e.tier];
  index_.Erase(id);
}

void ShardStoreImpl::DropDiskLocked(EntryId id) {
  disk_->Free(SlotOf(index_.at(id)));
  --disk_entries_;
  index_.Erase(id);
}

absl::StatusOr<std::variant<PendingPut, PutResult, std::monostate>> ShardStoreImpl::BeginPutLocked(
    NamespaceId ns, const BlockKey& key, uint64_t size, const PutOptions& options,
    uint64_t* evicted, std::vector<Demotion>* demotions, size_t min_tier) {
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
      present.evicted_blocks = *evicted;
      return present;
    }
    if (options.version && *options.version <= e.version) {
      return absl::FailedPreconditionError(
          absl::StrCat("block ", key.ToHex(), ": version ", options.version->ToString(),
                       " is not newer than stored ", e.version.ToString()));
    }
  }
  KVF_ASSIGN_OR_RETURN(std::optional<PageRef> page,
                       ReserveLocked(info, options.codec, evicted, demotions, min_tier));
  if (!page) return std::monostate{};
  return PendingPut{.ns = ns, .key = key, .options = options, .size = size, .page = *page,
                    .evicted = *evicted};
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
    const bool tracked = Tracked(e);
    if (tracked && e.tier != put.page.tier) PolicyOf(e).Erase(*id);  // moves to another tier's policy
    const bool touch = tracked && e.tier == put.page.tier;
    if (e.tier == kDiskTier) {
      // The record is stale now: forget it and rebuild the entry in memory.
      Entry fresh = e;
      DropDiskLocked(*id);
      fresh.pins = 0;
      fresh.tier = put.page.tier;
      id = index_.Insert(fresh);
    } else {
      if (e.pins > 0) {
        // Readers (and a demotion in flight) keep the old version's page
        // until their pins go.
        retired_[{e.tier, e.offset}] += e.pins;
        e.pins = 0;
        --pinned_entries_;
      } else {
        ReleasePageLocked(PageRef{e.tier, e.offset});
      }
      tier_stored_bytes_[e.tier] -= e.size;
      --tier_blocks_[e.tier];
    }
    Entry& n = index_.at(*id);
    tier_stored_bytes_[put.page.tier] += put.size;
    ++tier_blocks_[put.page.tier];
    n.version = result.version;
    n.codec = options.codec;
    n.mutable_entry = options.mutable_entry;
    n.placement_hash = options.placement_hash;
    n.tier = put.page.tier;
    n.offset = put.page.offset;
    n.size = put.size;
    n.demoting = false;
    n.parent = options.parent;
    n.depth = options.depth;
    if (touch) {
      TouchLocked(*id, now);
    } else {
      n.last_access = now;
      PolicyOf(n).Insert(*id, EvictionHint{put.key, options.parent, options.depth, n.size});
    }
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
    e.parent = options.parent;
    e.depth = options.depth;
    const EntryId new_id = index_.Insert(e);
    tier_stored_bytes_[e.tier] += e.size;
    ++tier_blocks_[e.tier];
    policies_[e.tier]->Insert(new_id, EvictionHint{put.key, options.parent, options.depth, e.size});
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
    uint64_t evicted = 0;
    std::vector<Demotion> demotions;
    for (;;) {
      KVF_ASSIGN_OR_RETURN(auto begun,
                           BeginPutLocked(ns, key, data.size(), options, &evicted, &demotions));
      if (auto* present = std::get_if<PutResult>(&begun)) return *present;
      if (auto* pending = std::get_if<PendingPut>(&begun)) {
        put = std::move(*pending);
        break;
      }
      SettleLocked(&demotions);
    }
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
  ExpireLeasesLocked(clock_.Now());
  uint64_t evicted = 0;
  std::vector<Demotion> demotions;
  PendingPut put;
  PutReservation out;
  // A writer that reaches host memory only gets a host page; where a device
  // tier is in front, a staging page that Commit moves up.
  const size_t min_tier = options.host_writer ? host_tier_ : 0;
  if (min_tier >= tiers_.size()) {
    return absl::FailedPreconditionError("no host tier for a host-memory writer");
  }
  for (;;) {
    KVF_ASSIGN_OR_RETURN(auto begun, BeginPutLocked(ns, key, size, options, &evicted, &demotions,
                                                    min_tier));
    if (auto* present = std::get_if<PutResult>(&begun)) {
      out.already_present = true;
      out.version = present->version;
      return out;
    }
    if (auto* pending = std::get_if<PendingPut>(&begun)) {
      put = std::move(*pending);
      break;
    }
    SettleLocked(&demotions);
  }
  put.expires = clock_.Now() + lease;
  put.staged = min_tier > 0;
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
  if (put.staged) {
    mu_.Unlock();
    absl::StatusOr<PutResult> result = CommitStaged(put);
    mu_.Lock();
    return result;
  }
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
  bool from_disk = false;
  for (int attempt = 0;; ++attempt) {
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
      if (e.tier != kDiskTier) {
        if (e.pins++ == 0) ++pinned_entries_;  // hold it while copying outside the lock
        info = InfoOf(e);
        tier = e.tier;
        offset = e.offset;
        break;
      }
    }
    if (attempt + 1 >= kMaxPromoteAttempts) {
      return absl::UnavailableError(
          absl::StrCat("block ", key.ToHex(), " was evicted again each time it was read from disk"));
    }
    from_disk = true;
    KVF_RETURN_IF_ERROR(Promote(ns, key));
  }
  absl::Status copied = tiers_[tier].memory->Read(offset, dst.first(info.size));
  absl::MutexLock lock(&mu_);
  UnpinLocked(id, PageRef{tier, offset});
  if (!copied.ok()) return copied;
  ++hits_;
  if (from_disk) ++disk_hits_;
  // Removed (and its id perhaps reused) while we copied: nothing to touch.
  if (const Entry& e = index_.at(id); e.live && e.ns == ns && e.key == key) {
    TouchLocked(id, clock_.Now());
  }
  return info;
}

absl::StatusOr<Lease> ShardStoreImpl::Pin(NamespaceId ns, const BlockKey& key,
                                          absl::Duration lease) {
  return PinBlock(ns, key, lease, /*read=*/true);
}

absl::StatusOr<uint64_t> ShardStoreImpl::Hold(NamespaceId ns, const BlockKey& key,
                                             absl::Duration hold) {
  KVF_ASSIGN_OR_RETURN(Lease lease, PinBlock(ns, key, hold, /*read=*/false));
  return lease.id;
}

absl::StatusOr<Lease> ShardStoreImpl::PinBlock(NamespaceId ns, const BlockKey& key,
                                               absl::Duration lease, bool read) {
  KVF_ASSIGN_OR_RETURN(lease, LeaseOrDefault(lease));
  bool from_disk = false;
  for (int attempt = 0;; ++attempt) {
    {
      absl::MutexLock lock(&mu_);
      const absl::Time now = clock_.Now();
      ExpireLeasesLocked(now);
      std::optional<EntryId> id = index_.Find(ns, key);
      if (!id) {
        if (read) ++misses_;
        return absl::NotFoundError(absl::StrCat("block ", key.ToHex(), " is not stored here"));
      }
      Entry& e = index_.at(*id);
      if (e.tier != kDiskTier) {
        if (e.pins++ == 0) ++pinned_entries_;
        return PinLocked(*id, PageRef{e.tier, e.offset}, lease, read, from_disk);
      }
    }
    if (attempt + 1 >= kMaxPromoteAttempts) {
      return absl::UnavailableError(
          absl::StrCat("block ", key.ToHex(), " was evicted again each time it was read from disk"));
    }
    from_disk = true;
    KVF_RETURN_IF_ERROR(Promote(ns, key));
  }
}

Lease ShardStoreImpl::PinLocked(EntryId id, const PageRef& page, absl::Duration lease, bool read,
                               bool from_disk) {
  const absl::Time now = clock_.Now();
  const Entry& e = index_.at(id);
  Lease out;
  out.id = next_lease_id_++;
  out.info = InfoOf(e);
  out.location = BlockLocation{tiers_[page.tier].memory->kind(),
                               tiers_[page.tier].memory->base() + page.offset, e.size};
  out.expires = now + lease;
  leases_.emplace(out.id, LeaseRecord{id, page, out.expires});
  next_expiry_ = std::min(next_expiry_, out.expires);
  if (read) {
    ++hits_;
    if (from_disk) ++disk_hits_;
    TouchLocked(id, now);
  }
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
    if (index_.at(*id).tier == kDiskTier) ++disk_hits_;
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
  DiskSlot slot;
  DiskRecordMeta meta;
  {
    absl::MutexLock lock(&mu_);
    std::optional<EntryId> id = index_.Find(ns, key);
    if (!id) return absl::NotFoundError(absl::StrCat("block ", key.ToHex(), " is not stored here"));
    Entry& e = index_.at(*id);
    if (e.tier != kDiskTier) {
      if (Tracked(e)) PolicyOf(e).Erase(*id);
      if (e.pins > 0) {
        // Readers (and a demotion in flight) keep their bytes: the page is
        // retired, freed with its last pin.
        retired_[{e.tier, e.offset}] += e.pins;
        e.pins = 0;
        --pinned_entries_;
        tier_stored_bytes_[e.tier] -= e.size;
        --tier_blocks_[e.tier];
        index_.Erase(*id);
        return absl::OkStatus();
      }
      DropLocked(*id);
      return absl::OkStatus();
    }
    // On disk: forget it, and write a tombstone over its record (outside the
    // lock) so a restart does not bring it back. The I/O bracket keeps its
    // segment from being reused meanwhile.
    slot = SlotOf(e);
    meta = MetaOf(e);
    DropDiskLocked(*id);
    disk_->BeginIo(slot.offset);
  }
  const absl::Status s = disk_->Tombstone(slot, meta);
  if (!s.ok()) KVF_LOG(WARNING) << "shard store: " << s;
  absl::MutexLock lock(&mu_);
  disk_->EndIo(slot.offset);
  return absl::OkStatus();
}

AgeHistogram ShardStoreImpl::Ages() const {
  AgeHistogram ages;
  absl::MutexLock lock(&mu_);
  const absl::Time now = clock_.Now();
  index_.ForEach([&](EntryId, const Entry& e) {
    if (e.tier != kDiskTier) ages.Add(now - e.last_access, e.size);
  });
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

void ShardStoreImpl::SetEpoch(uint64_t epoch) {
  absl::MutexLock lock(&mu_);
  epoch_ = std::max(epoch_, epoch);
}

absl::Span<std::byte> ShardStoreImpl::TierArena(TierKind kind) const {
  for (const Tier& t : tiers_) {
    if (t.memory->kind() == kind) return {t.memory->base(), t.memory->capacity()};
  }
  return {};
}

ShardStoreStats ShardStoreImpl::Stats() const {
  absl::MutexLock lock(&mu_);
  ShardStoreStats s;
  uint64_t used = 0, stored = 0, free = 0, free_in_slabs = 0;
  for (size_t i = 0; i < tiers_.size(); ++i) {
    const SlabAllocator::Stats a = tiers_[i].allocator.GetStats();
    s.tiers.push_back(TierStats{tiers_[i].memory->kind(), a.capacity_bytes, a.used_bytes,
                                tier_stored_bytes_[i], a.free_bytes, tier_blocks_[i],
                                tier_demotions_[i], tier_demoted_bytes_[i]});
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
  s.memory_limit_bytes = memory_limit_;
  s.staged_reads = staged_reads_;
  s.staged_read_bytes = staged_read_bytes_;
  s.staged_writes = staged_writes_;
  s.staged_write_bytes = staged_write_bytes_;
  s.staging_failures = staging_failures_;
  s.demotion_failures = demotion_failures_;
  if (disk_) {
    const DiskSpaceStats d = disk_->SpaceStats();
    s.tiers.push_back(TierStats{TierKind::kDisk, d.capacity_bytes, d.used_bytes, d.stored_bytes,
                                d.capacity_bytes - d.used_bytes, disk_entries_});
    s.disk_entries = disk_entries_;
    s.disk_hits = disk_hits_;
    s.demotions = demotions_;
    s.promotions = promotions_;
    s.disk_evictions = disk_evictions_;
    s.disk_reads = disk_->reads();
    s.disk_writes = disk_->writes();
    s.disk_read_bytes = disk_->read_bytes();
    s.disk_written_bytes = disk_->written_bytes();
    s.disk_corrupt_records = disk_->corrupt_records();
    s.disk_recovered = disk_recovered_;
  }
  return s;
}

namespace {

uint64_t DefaultSlabBytes(uint64_t arena) {
  return std::clamp(RoundUp(arena / 64, kMiB), 4 * kMiB, 64 * kMiB);
}

}  // namespace
}  // namespace internal

absl::StatusOr<std::unique_ptr<ShardStore>> ShardStore::Create(const ShardStoreOptions& options) {
  using internal::SlabAllocator;
  using internal::Tier;
  std::vector<Tier> tiers;
  uint64_t largest_slab = 0;
  auto add_tier = [&](std::unique_ptr<MemoryTier> memory) -> absl::Status {
    const uint64_t arena = memory->capacity();
    uint64_t slab = options.slab_bytes ? options.slab_bytes : internal::DefaultSlabBytes(arena);
    slab = std::min(slab, arena);
    KVF_ASSIGN_OR_RETURN(SlabAllocator allocator,
                         SlabAllocator::Create(arena, slab, options.min_page_bytes));
    largest_slab = std::max(largest_slab, slab);
    tiers.push_back(Tier{std::move(memory), std::move(allocator)});
    return absl::OkStatus();
  };
  if (options.device_bytes > 0) {
    if (options.device_tier_factory) {
      KVF_ASSIGN_OR_RETURN(auto device, options.device_tier_factory(options.device_bytes));
      KVF_RETURN_IF_ERROR(add_tier(std::move(device)));
    } else if (Devices().count > options.device) {
      KVF_ASSIGN_OR_RETURN(auto device, CreateDeviceTier(options.device_bytes, options.device));
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
  const size_t hint =
      std::min<uint64_t>(internal::kMaxReservedEntries, capacity / (64 * 1024) + 1024);
  std::vector<std::unique_ptr<EvictionPolicy>> policies;
  for (const Tier& t : tiers) {
    const size_t tier_hint = std::max<size_t>(
        1024, static_cast<size_t>(double(hint) * double(t.memory->capacity()) / double(capacity)));
    KVF_ASSIGN_OR_RETURN(auto policy, CreateEvictionPolicy(options.eviction_policy, tier_hint));
    policies.push_back(std::move(policy));
  }

  std::unique_ptr<DiskTier> disk;
  DiskRecovery recovery;
  if (!options.disk_path.empty()) {
    if (options.disk_bytes == 0) {
      return absl::InvalidArgumentError("a disk tier (disk_path) needs disk_bytes");
    }
    DiskTierOptions d;
    d.path = options.disk_path;
    d.capacity_bytes = options.disk_bytes;
    d.segment_bytes = options.disk_segment_bytes;
    d.min_segment_bytes = largest_slab;  // no block is larger than a slab
    d.io_threads = options.disk_io_threads;
    KVF_ASSIGN_OR_RETURN(disk, DiskTier::Open(d, &recovery));
    KVF_LOG(INFO) << "shard store: disk tier " << disk->file_path() << " ("
                  << disk->SpaceStats().capacity_bytes << " bytes"
                  << (disk->direct_io() ? ", O_DIRECT" : ", buffered: no O_DIRECT here") << "): "
                  << recovery.records.size() << " blocks recovered, " << recovery.corrupt
                  << " corrupt records dropped, " << recovery.mutable_dropped
                  << " mutable records dropped";
  }
  auto store = std::make_unique<internal::ShardStoreImpl>(options, std::move(tiers),
                                                          std::move(policies), std::move(disk));
  store->AdoptRecovered(recovery);
  return store;
}

}  // namespace kvf
