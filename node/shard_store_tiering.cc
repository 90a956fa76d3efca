// ShardStoreImpl: eviction, and the disk tier's demotion, promotion and
// recovery (docs/shard-store.md, "Disk tier").
#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "node/internal/shard_store_impl.h"

namespace kvf::internal {
namespace {

// Demotions go to disk in batches of about this many bytes (or a sixteenth
// of memory, if smaller), so a full store writes a few victims per write
// rather than one.
constexpr uint64_t kDemoteBatchBytes = uint64_t{1} << 20;
// The most demotions one batch holds when evicting to a target.
constexpr size_t kMaxBatch = 64;

}  // namespace

DiskSlot ShardStoreImpl::SlotOf(const Entry& e) {
  return DiskSlot{e.offset, DiskRecordBytes(e.size), e.size, e.disk_gen};
}

DiskRecordMeta ShardStoreImpl::MetaOf(const Entry& e) {
  DiskRecordMeta m;
  m.ns = e.ns;
  m.key = e.key;
  m.version = e.version;
  m.codec = e.codec;
  m.mutable_entry = e.mutable_entry;
  m.size = e.size;
  m.placement_hash = e.placement_hash;
  m.parent = e.parent;
  m.depth = e.depth;
  return m;
}

uint64_t ShardStoreImpl::UsedBytesLocked(size_t min_tier) const {
  uint64_t used = 0;
  for (size_t t = min_tier; t < tiers_.size(); ++t) used += tiers_[t].allocator.GetStats().used_bytes;
  return used;
}

absl::StatusOr<std::optional<PageRef>> ShardStoreImpl::ReserveLocked(
    NamespaceInfo& info, CodecId codec, uint64_t* evicted, std::vector<Demotion>* demotions,
    size_t min_tier) {
  std::array<int, 8> classes{};
  for (size_t t = 0; t < tiers_.size(); ++t) {
    KVF_ASSIGN_OR_RETURN(classes[t], PageClassLocked(info, t, codec));
  }
  const uint64_t page_bytes = tiers_.back().allocator.page_bytes(classes[tiers_.size() - 1]);
  uint64_t capacity = 0;
  for (const Tier& t : tiers_) capacity += t.memory->capacity();
  const uint64_t batch_bytes = std::max(page_bytes, std::min(kDemoteBatchBytes, capacity / 16));
  uint64_t queued = 0;
  bool expired_leases = false;
  for (;;) {
    // Once demotions are queued, their pages are the room: run them first.
    if (demotions->empty()) {
      if (std::optional<uint64_t> offset = AllocateLocked(min_tier, classes[min_tier])) {
        return PageRef{static_cast<uint8_t>(min_tier), *offset};
      }
    }
    if (!demotions->empty() && queued >= batch_bytes) return std::nullopt;
    const size_t before = demotions->size();
    const Room room = MakeRoomLocked(min_tier, classes, evicted, demotions);
    if (room == Room::kFreed) continue;
    if (room == Room::kQueued) {
      if (demotions->size() > before) queued += demotions->back().meta.size;
      continue;
    }
    // Nothing in `min_tier` can move (all pinned, or the chain below is):
    // any slower tier with a free page will do.
    if (demotions->empty()) {
      for (size_t t = min_tier + 1; t < tiers_.size(); ++t) {
        if (std::optional<uint64_t> offset = AllocateLocked(t, classes[t])) {
          return PageRef{static_cast<uint8_t>(t), *offset};
        }
      }
    }
    if (!demotions->empty()) return std::nullopt;
    if (demotions_in_flight_ > 0) return std::nullopt;  // others' demotions will free room
    if (!expired_leases) {
      expired_leases = true;
      if (ExpireLeasesLocked(clock_.Now()) > 0) continue;
    }
    return absl::ResourceExhaustedError(absl::StrCat(
        "no room for a ", info.encoded_size[static_cast<int>(codec)], "-byte block: ",
        index_.size() - disk_entries_, " blocks in memory, ", pinned_entries_,
        " pinned, none evictable"));
  }
}

bool ShardStoreImpl::EvictOneLocked(size_t min_tier, std::vector<Demotion>* demotions) {
  for (size_t t = tiers_.size(); t-- > min_tier;) {
    std::optional<EntryId> victim =
        policies_[t]->Evict([this](EntryId id) ABSL_NO_THREAD_SAFETY_ANALYSIS {
          return index_.at(id).pins == 0;
        });
    if (!victim) continue;
    if (demotions != nullptr && disk_ && StartDemotionLocked(*victim, demotions)) return true;
    EvictLocked(*victim);
    return true;
  }
  return false;
}

bool ShardStoreImpl::StartDemotionLocked(EntryId id, std::vector<Demotion>* demotions) {
  const DiskRecordMeta meta = MetaOf(index_.at(id));
  std::vector<ReclaimedRecord> reclaimed;
  absl::StatusOr<DiskSlot> slot = disk_->Allocate(meta, &reclaimed);
  DropReclaimedLocked(reclaimed);
  if (!slot.ok()) {
    KVF_LOG(WARNING) << "shard store: block " << meta.key.ToHex()
                     << " dropped instead of demoted: " << slot.status();
    return false;
  }
  Entry& e = index_.at(id);
  e.demoting = true;
  if (e.pins++ == 0) ++pinned_entries_;
  uint64_t page_bytes = e.size;
  if (auto it = namespaces_.find(e.ns); it != namespaces_.end()) {
    const int cls = it->second.page_class[e.tier][static_cast<int>(e.codec)];
    if (cls >= 0) page_bytes = tiers_[e.tier].allocator.page_bytes(cls);
  }
  ++demotions_in_flight_;
  demoting_bytes_ += page_bytes;
  demotions->push_back(Demotion{id, PageRef{e.tier, e.offset}, page_bytes, *slot, meta});
  return true;
}

void ShardStoreImpl::DropReclaimedLocked(const std::vector<ReclaimedRecord>& reclaimed) {
  for (const ReclaimedRecord& r : reclaimed) {
    std::optional<EntryId> id = index_.Find(r.ns, r.key);
    if (!id) continue;
    const Entry& e = index_.at(*id);
    if (e.tier != kDiskTier || e.offset != r.offset) continue;  // moved on since
    // Its space is the log's again already: forget the entry only.
    --disk_entries_;
    ++disk_evictions_;
    index_.Erase(*id);
  }
}

void ShardStoreImpl::EvictLocked(EntryId id) {
  ++evictions_;
  evicted_bytes_ += index_.at(id).size;
  DropLocked(id);
}

void ShardStoreImpl::SettleLocked(std::vector<Demotion>* demotions) {
  if (demotions->empty()) {
    // Only demotions other threads run can free room: wait for one to end.
    struct Wait {
      ShardStoreImpl* self;
      uint64_t seen;
      static bool Done(Wait* w) ABSL_NO_THREAD_SAFETY_ANALYSIS {
        return w->self->demotions_finished_ != w->seen || w->self->demotions_in_flight_ == 0;
      }
    } wait{this, demotions_finished_};
    mu_.AwaitWithTimeout(absl::Condition(&Wait::Done, &wait), absl::Seconds(1));
    return;
  }
  std::vector<Demotion> batch = std::move(*demotions);
  demotions->clear();
  mu_.Unlock();
  // The pages are pinned: nobody frees or reuses them while we copy. Moves
  // to the next memory tier are one copy each; disk demotions one batched write.
  std::vector<bool> written(batch.size(), false);
  std::vector<size_t> to_disk;  // batch index of each record in `writes`
  DiskWriteBatch writes;
  for (size_t i = 0; i < batch.size(); ++i) {
    const Demotion& d = batch[i];
    if (d.to_memory) {
      const absl::Status copied = CopyPage(d.page, d.dest, d.meta.size);
      if (!copied.ok()) KVF_LOG(WARNING) << "shard store: demotion copy: " << copied;
      written[i] = copied.ok();
      continue;
    }
    absl::Span<std::byte> dst = writes.Add(d.slot, d.meta);
    if (!tiers_[d.page.tier].memory->Read(d.page.offset, dst).ok()) writes.Cancel(to_disk.size());
    to_disk.push_back(i);
  }
  if (!to_disk.empty()) {
    if (absl::Status s = disk_->Write(&writes); !s.ok()) {
      KVF_LOG(WARNING) << "shard store: disk write: " << s;
    }
    for (size_t k = 0; k < to_disk.size(); ++k) written[to_disk[k]] = writes.written(k);
  }
  mu_.Lock();
  FinishDemotionsLocked(batch, written);
}

void ShardStoreImpl::FinishDemotionsLocked(const std::vector<Demotion>& demotions,
                                           const std::vector<bool>& written) {
  for (size_t i = 0; i < demotions.size(); ++i) {
    const Demotion& d = demotions[i];
    if (d.to_memory) {
      FinishMoveLocked(d, written[i]);
      continue;
    }
    disk_->EndIo(d.slot.offset);
    --demotions_in_flight_;
    demoting_bytes_ -= d.page_bytes;
    ++demotions_finished_;
    Entry& e = index_.at(d.id);
    const bool same =
        e.live && e.demoting && e.tier == d.page.tier && e.offset == d.page.offset;
    if (!same) {  // removed or overwritten meanwhile: its page was retired with our pin
      disk_->Free(d.slot);
      UnpinLocked(d.id, d.page);
      continue;
    }
    e.demoting = false;
    if (!written[i]) {
      disk_->Free(d.slot);
      ++demotion_failures_;
      if (--e.pins == 0) {
        --pinned_entries_;
        EvictLocked(d.id);
      } else {  // readers hold it: keep it in memory
        PolicyOf(e).Insert(d.id, EvictionHint{e.key, e.parent, e.depth, e.size});
      }
      continue;
    }
    LeavePageLocked(e, d.page);
    e.tier = kDiskTier;
    e.offset = d.slot.offset;
    e.disk_gen = d.slot.segment_gen;
    ++disk_entries_;
    ++demotions_;
    ++evictions_;
    evicted_bytes_ += e.size;
  }
}

absl::Status ShardStoreImpl::Promote(NamespaceId ns, const BlockKey& key) {
  PageRef page;
  DiskSlot slot;
  DiskRecordMeta meta;
  {
    absl::MutexLock lock(&mu_);
    uint64_t evicted = 0;
    std::vector<Demotion> demotions;
    for (;;) {
      std::optional<EntryId> id = index_.Find(ns, key);
      if (!id) {
        ++misses_;
        return absl::NotFoundError(absl::StrCat("block ", key.ToHex(), " is not stored here"));
      }
      if (index_.at(*id).tier != kDiskTier) return absl::OkStatus();  // promoted meanwhile
      auto ns_it = namespaces_.find(ns);
      if (ns_it == namespaces_.end()) {
        return absl::FailedPreconditionError(absl::StrCat(
            "block ", key.ToHex(), " is on disk in namespace ", absl::Hex(ns),
            ", which is not registered here yet"));
      }
      const Entry& e = index_.at(*id);
      if (e.size != ns_it->second.encoded_size[static_cast<int>(e.codec)]) {
        DropDiskLocked(*id);
        ++misses_;
        return absl::NotFoundError(absl::StrCat("block ", key.ToHex(),
                                                " on disk does not match its namespace's layout"));
      }
      KVF_ASSIGN_OR_RETURN(std::optional<PageRef> reserved,
                           ReserveLocked(ns_it->second, e.codec, &evicted, &demotions));
      if (!reserved) {
        SettleLocked(&demotions);
        continue;
      }
      // Reserving may have reclaimed disk space: is the record still there?
      id = index_.Find(ns, key);
      if (!id || index_.at(*id).tier != kDiskTier) {
        ReleasePageLocked(*reserved);
        continue;
      }
      page = *reserved;
      slot = SlotOf(index_.at(*id));
      meta = MetaOf(index_.at(*id));
      disk_->BeginIo(slot.offset);
      break;
    }
  }
  // Outside the lock: read and verify the record, fill the page nobody else sees.
  absl::StatusOr<DiskRead> read = disk_->Read(slot, meta);
  absl::Status copied = read.ok() ? tiers_[page.tier].memory->Write(page.offset, read->payload())
                                  : read.status();
  absl::MutexLock lock(&mu_);
  disk_->EndIo(slot.offset);
  std::optional<EntryId> id = index_.Find(ns, key);
  const bool same = id && index_.at(*id).tier == kDiskTier && index_.at(*id).offset == slot.offset &&
                    index_.at(*id).disk_gen == slot.segment_gen;
  if (!copied.ok()) {
    ReleasePageLocked(page);
    if (same && absl::IsDataLoss(copied)) {
      KVF_LOG(WARNING) << "shard store: " << copied.message() << "; dropped";
      DropDiskLocked(*id);
      ++misses_;
      return absl::NotFoundError(absl::StrCat("block ", key.ToHex(),
                                              " was corrupt on disk and is dropped"));
    }
    return copied;
  }
  if (!same) {  // removed, overwritten or promoted by another reader meanwhile
    ReleasePageLocked(page);
    return absl::OkStatus();
  }
  disk_->Free(slot);
  --disk_entries_;
  Entry& e = index_.at(*id);
  e.tier = page.tier;
  e.offset = page.offset;
  e.disk_gen = 0;
  tier_stored_bytes_[page.tier] += e.size;
  ++tier_blocks_[page.tier];
  PolicyOf(e).Insert(*id, EvictionHint{e.key, e.parent, e.depth, e.size});
  ++promotions_;
  return absl::OkStatus();
}

uint64_t ShardStoreImpl::EvictWhile(size_t min_tier, const std::function<bool()>& more) {
  uint64_t evicted = 0;
  std::vector<Demotion> demotions;
  for (;;) {
    while (demotions.size() < kMaxBatch && more() &&
           EvictOneLocked(min_tier, disk_ ? &demotions : nullptr)) {
      ++evicted;
    }
    if (demotions.empty()) return evicted;
    SettleLocked(&demotions);
  }
}

uint64_t ShardStoreImpl::EvictToTarget(uint64_t target_used_bytes) {
  absl::MutexLock lock(&mu_);
  return EvictWhile(0, [&]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
    return UsedBytesLocked() - demoting_bytes_ > target_used_bytes;
  });
}

uint64_t ShardStoreImpl::SetMemoryLimit(uint64_t bytes) {
  absl::MutexLock lock(&mu_);
  memory_limit_ = bytes;
  // Only host tiers count; demoting_bytes_ may include device pages being
  // demoted to disk, hence the saturating difference.
  return EvictWhile(host_tier_, [&]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
    const uint64_t used = UsedBytesLocked(host_tier_);
    return (used > demoting_bytes_ ? used - demoting_bytes_ : 0) > bytes;
  });
}

uint64_t ShardStoreImpl::EvictOlderThan(absl::Duration age, uint64_t keep_bytes) {
  absl::MutexLock lock(&mu_);
  const absl::Time cutoff = clock_.Now() - age;
  std::vector<std::pair<absl::Time, EntryId>> victims;
  index_.ForEach([&](EntryId id, const Entry& e) {
    if (e.pins == 0 && Tracked(e) && e.last_access <= cutoff) victims.emplace_back(e.last_access, id);
  });
  std::sort(victims.begin(), victims.end());
  uint64_t evicted = 0;
  std::vector<Demotion> demotions;
  for (const auto& [last_access, id] : victims) {
    if (keep_bytes > 0 && UsedBytesLocked() - demoting_bytes_ <= keep_bytes) break;
    const Entry& e = index_.at(id);
    // A batch of demotions drops the lock: the entry may have changed.
    if (!e.live || e.pins > 0 || !Tracked(e) || e.last_access > cutoff) continue;
    PolicyOf(e).Erase(id);
    if (!(disk_ && StartDemotionLocked(id, &demotions))) EvictLocked(id);
    ++evicted;
    if (demotions.size() >= kMaxBatch) SettleLocked(&demotions);
  }
  if (!demotions.empty()) SettleLocked(&demotions);
  return evicted;
}

void ShardStoreImpl::AdoptRecovered(const DiskRecovery& recovery) {
  absl::MutexLock lock(&mu_);
  const absl::Time now = clock_.Now();
  for (const RecoveredRecord& r : recovery.records) {
    if (index_.Find(r.meta.ns, r.meta.key)) continue;
    Entry e;
    e.ns = r.meta.ns;
    e.key = r.meta.key;
    e.version = r.meta.version;
    e.codec = r.meta.codec;
    e.mutable_entry = r.meta.mutable_entry;
    e.tier = kDiskTier;
    e.offset = r.slot.offset;
    e.size = r.meta.size;
    e.placement_hash = r.meta.placement_hash;
    e.last_access = now;
    e.parent = r.meta.parent;
    e.depth = r.meta.depth;
    e.disk_gen = r.slot.segment_gen;
    index_.Insert(e);
    ++disk_entries_;
    ++disk_recovered_;
  }
}

void ShardStoreImpl::LeavePageLocked(Entry& e, const PageRef& page) {
  const uint32_t readers = e.pins - 1;
  e.pins = 0;
  --pinned_entries_;
  if (readers > 0) {
    retired_[{page.tier, page.offset}] += readers;  // freed with their last pin
  } else {
    ReleasePageLocked(page);
  }
  tier_stored_bytes_[page.tier] -= e.size;
  --tier_blocks_[page.tier];
}

}  // namespace kvf::internal
