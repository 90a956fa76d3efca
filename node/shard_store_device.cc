// ShardStoreImpl: the chain of memory tiers (docs/shard-store.md, "Device
// tier"). A full tier makes room by moving its eviction policy's victim to
// the next tier (device -> host), and only the last memory tier's victims
// leave memory (to the disk tier, or dropped). Readers and writers that reach
// host memory only are served through host staging pages.
#include <algorithm>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "node/internal/shard_store_impl.h"

namespace kvf::internal {

std::optional<uint64_t> ShardStoreImpl::AllocateLocked(size_t t, int cls) {
  if (IsHostTier(t) && memory_limit_ != UINT64_MAX &&
      UsedBytesLocked(host_tier_) + tiers_[t].allocator.page_bytes(cls) > memory_limit_) {
    return std::nullopt;
  }
  return tiers_[t].allocator.Allocate(cls);
}

Room ShardStoreImpl::MakeRoomLocked(size_t t, const std::array<int, 8>& classes,
                                    uint64_t* evicted, std::vector<Demotion>* demotions) {
  auto unpinned = [this](EntryId id) ABSL_NO_THREAD_SAFETY_ANALYSIS {
    return index_.at(id).pins == 0;
  };
  // The victim leaves memory: demoted to disk where there is one, else dropped.
  auto leave_memory = [&](EntryId victim) ABSL_NO_THREAD_SAFETY_ANALYSIS {
    ++*evicted;
    if (disk_ && StartDemotionLocked(victim, demotions)) return Room::kQueued;
    EvictLocked(victim);
    return Room::kFreed;
  };
  if (t + 1 == tiers_.size()) {
    std::optional<EntryId> victim = policies_[t]->Evict(unpinned);
    return victim ? leave_memory(*victim) : Room::kNone;
  }
  if (policies_[t]->size() == 0) return Room::kNone;
  // Room below first, so that the victim is not taken before it has
  // somewhere to go (it would lose its standing in the policy).
  std::optional<uint64_t> below;
  while (!(below = AllocateLocked(t + 1, classes[t + 1]))) {
    const Room r = MakeRoomLocked(t + 1, classes, evicted, demotions);
    if (r == Room::kFreed) continue;
    if (r == Room::kQueued) return r;
    // Nothing below can move (all pinned): this tier's victim leaves memory.
    std::optional<EntryId> victim = policies_[t]->Evict(unpinned);
    return victim ? leave_memory(*victim) : Room::kNone;
  }
  std::optional<EntryId> victim = policies_[t]->Evict(unpinned);
  if (!victim) {
    tiers_[t + 1].allocator.Free(*below);
    return Room::kNone;
  }
  const Entry& e = index_.at(*victim);
  int cls = -1;
  if (auto ns = namespaces_.find(e.ns); ns != namespaces_.end()) {
    absl::StatusOr<int> c = PageClassLocked(ns->second, t + 1, e.codec);
    if (c.ok()) cls = *c;
  }
  if (cls != classes[t + 1]) {
    // A block of another size: the page made for the block asking is no use.
    tiers_[t + 1].allocator.Free(*below);
    below = cls >= 0 ? AllocateLocked(t + 1, cls) : std::nullopt;
    // No page of its size below now: it leaves memory rather than holding
    // the put up (rare: namespaces of mixed block sizes on a full host tier).
    if (!below) return leave_memory(*victim);
  }
  StartMoveLocked(*victim, PageRef{static_cast<uint8_t>(t + 1), *below}, demotions);
  return Room::kQueued;
}

void ShardStoreImpl::StartMoveLocked(EntryId id, const PageRef& dest,
                                     std::vector<Demotion>* demotions) {
  Entry& e = index_.at(id);
  e.demoting = true;
  if (e.pins++ == 0) ++pinned_entries_;
  ++demotions_in_flight_;
  Demotion d;
  d.id = id;
  d.page = PageRef{e.tier, e.offset};
  d.meta = MetaOf(e);
  d.to_memory = true;
  d.dest = dest;
  demotions->push_back(d);
}

void ShardStoreImpl::FinishMoveLocked(const Demotion& d, bool copied) {
  --demotions_in_flight_;
  ++demotions_finished_;
  Entry& e = index_.at(d.id);
  const bool same = e.live && e.demoting && e.tier == d.page.tier && e.offset == d.page.offset;
  if (!same) {  // removed or overwritten meanwhile: its page was retired with our pin
    ReleasePageLocked(d.dest);
    UnpinLocked(d.id, d.page);
    return;
  }
  e.demoting = false;
  const EvictionHint hint{e.key, e.parent, e.depth, e.size};
  if (!copied) {
    // Its bytes could not be read: it is dropped, as a failed disk write
    // drops its victim (retrying would find the same error, and the put
    // waiting for room would never get it). Readers keep it meanwhile.
    ReleasePageLocked(d.dest);
    ++demotion_failures_;
    if (--e.pins == 0) {
      --pinned_entries_;
      EvictLocked(d.id);
    } else {
      PolicyOf(e).Insert(d.id, hint);
    }
    return;
  }
  LeavePageLocked(e, d.page);
  ++tier_demotions_[d.page.tier];
  tier_demoted_bytes_[d.page.tier] += e.size;
  e.tier = d.dest.tier;
  e.offset = d.dest.offset;
  tier_stored_bytes_[e.tier] += e.size;
  ++tier_blocks_[e.tier];
  // It was its tier's oldest and is newer than anything below: the policy's
  // newest there, as one LRU over the chain would have it.
  PolicyOf(e).Insert(d.id, hint);
}

absl::Status ShardStoreImpl::CopyPage(const PageRef& from, const PageRef& to,
                                      uint64_t size) const {
  const MemoryTier& src = *tiers_[from.tier].memory;
  MemoryTier& dst = *tiers_[to.tier].memory;
  if (dst.capabilities().cpu_addressable) {
    return src.Read(from.offset, absl::MakeSpan(dst.base() + to.offset, size));
  }
  if (src.capabilities().cpu_addressable) {
    return dst.Write(to.offset, absl::MakeConstSpan(src.base() + from.offset, size));
  }
  std::vector<std::byte> bounce(size);
  KVF_RETURN_IF_ERROR(src.Read(from.offset, absl::MakeSpan(bounce)));
  return dst.Write(to.offset, bounce);
}

absl::StatusOr<Lease> ShardStoreImpl::PinHost(NamespaceId ns, const BlockKey& key,
                                              absl::Duration lease) {
  if (host_tier_ == 0) return PinBlock(ns, key, lease, /*read=*/true);
  if (host_tier_ >= tiers_.size()) {
    return absl::FailedPreconditionError("no host tier to stage a device block in");
  }
  KVF_ASSIGN_OR_RETURN(lease, LeaseOrDefault(lease));
  constexpr int kMaxAttempts = 4;  // as Pin: a block that keeps moving off disk is given up
  bool from_disk = false;
  for (int attempt = 0;; ++attempt) {
    {
      absl::MutexLock lock(&mu_);
      ExpireLeasesLocked(clock_.Now());
      std::optional<EntryId> id = index_.Find(ns, key);
      if (!id) {
        ++misses_;
        return absl::NotFoundError(absl::StrCat("block ", key.ToHex(), " is not stored here"));
      }
      Entry& e = index_.at(*id);
      if (e.tier != kDiskTier) {
        if (e.pins++ == 0) ++pinned_entries_;
        if (IsHostTier(e.tier)) {
          return PinLocked(*id, PageRef{e.tier, e.offset}, lease, /*read=*/true, from_disk);
        }
        return StageLocked(*id, lease);
      }
    }
    if (attempt + 1 >= kMaxAttempts) {
      return absl::UnavailableError(
          absl::StrCat("block ", key.ToHex(), " was evicted again each time it was read from disk"));
    }
    from_disk = true;
    KVF_RETURN_IF_ERROR(Promote(ns, key));
  }
}

absl::StatusOr<Lease> ShardStoreImpl::StageLocked(EntryId id, absl::Duration lease) {
  const Entry& e = index_.at(id);
  const PageRef src{e.tier, e.offset};
  const BlockInfo info = InfoOf(e);
  const NamespaceId ns = e.ns;
  const BlockKey key = e.key;
  // A staging page in the host tiers, made room for as a put would. Our pin
  // keeps the device page while the lock is dropped to settle demotions.
  uint64_t evicted = 0;
  std::vector<Demotion> demotions;
  PageRef staging;
  for (;;) {
    auto ns_it = namespaces_.find(ns);
    absl::StatusOr<std::optional<PageRef>> page =
        ns_it == namespaces_.end()
            ? absl::StatusOr<std::optional<PageRef>>(absl::FailedPreconditionError(
                  absl::StrCat("namespace ", absl::Hex(ns), " is not registered")))
            : ReserveLocked(ns_it->second, info.codec, &evicted, &demotions, host_tier_);
    if (!page.ok()) {
      UnpinLocked(id, src);
      return page.status();
    }
    if (page->has_value()) {
      staging = **page;
      break;
    }
    SettleLocked(&demotions);
  }
  mu_.Unlock();
  const absl::Status copied = CopyPage(src, staging, info.size);
  mu_.Lock();
  UnpinLocked(id, src);
  if (!copied.ok()) {
    ReleasePageLocked(staging);
    ++staging_failures_;
    return copied;
  }
  ++staged_reads_;
  staged_read_bytes_ += info.size;
  // The staging page is the lease's alone: retired with one pin, it is freed
  // when the lease is released or expires (UnpinLocked).
  retired_[{staging.tier, staging.offset}] = 1;
  const absl::Time now = clock_.Now();
  Lease out;
  out.id = next_lease_id_++;
  out.info = info;
  out.location = BlockLocation{tiers_[staging.tier].memory->kind(),
                               tiers_[staging.tier].memory->base() + staging.offset, info.size};
  out.expires = now + lease;
  leases_.emplace(out.id, LeaseRecord{id, staging, out.expires});
  next_expiry_ = std::min(next_expiry_, out.expires);
  ++hits_;
  const Entry& now_e = index_.at(id);
  if (now_e.live && now_e.ns == ns && now_e.key == key) TouchLocked(id, now);
  return out;
}

absl::StatusOr<PutResult> ShardStoreImpl::CommitStaged(const PendingPut& put) {
  // The staging page is ours: out of the reservations and in no entry.
  const std::byte* bytes = tiers_[put.page.tier].memory->base() + put.page.offset;
  absl::StatusOr<PutResult> result =
      Put(put.ns, put.key, absl::MakeConstSpan(bytes, put.size), put.options);
  absl::MutexLock lock(&mu_);
  ReleasePageLocked(put.page);
  if (!result.ok()) {
    ++staging_failures_;
    return result;
  }
  if (!result->already_present) {
    ++staged_writes_;
    staged_write_bytes_ += put.size;
  }
  result->evicted_blocks += put.evicted;
  return result;
}

}  // namespace kvf::internal
