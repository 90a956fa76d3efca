#include "node/agent/read_holds.h"

namespace kvf {

ReadHolds::ReadHolds(ShardStore* store, ReadHoldOptions options)
    : store_(store), options_(options) {
  prefetcher_ = std::thread([this] { PrefetchLoop(); });
}

ReadHolds::~ReadHolds() {
  std::vector<uint64_t> leases;
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  prefetcher_.join();
  absl::MutexLock lock(&mu_);
  for (const auto& [key, h] : held_) {
    if (h.lease != 0) (void)store_->Unpin(h.lease);
  }
}

std::vector<uint64_t> ReadHolds::ExpireLocked(absl::Time now) {
  std::vector<uint64_t> unpin;
  while (!order_.empty() && order_.front().first <= now) {
    auto it = held_.find(order_.front().second);
    // A released hold (or one placed again since) is not this entry's.
    if (it != held_.end() && it->second.expires == order_.front().first) {
      if (it->second.lease != 0) unpin.push_back(it->second.lease);
      held_bytes_ -= it->second.bytes;
      held_.erase(it);
      ++stats_.expired;
    }
    order_.pop_front();
  }
  return unpin;
}

void ReadHolds::Unpin(const std::vector<uint64_t>& leases) {
  // NOT_FOUND when the store's own lease expiry got there first.
  for (uint64_t lease : leases) (void)store_->Unpin(lease);
}

void ReadHolds::OnLookup(NamespaceId ns, absl::Span<const BlockKey> keys,
                         absl::Span<const std::optional<BlockInfo>> found) {
  if (options_.hold <= absl::ZeroDuration() || options_.max_held_bytes == 0) return;
  const absl::Time now = absl::Now();
  const absl::Time expires = now + options_.hold;
  std::vector<size_t> in_memory;
  std::vector<uint64_t> unpin;
  {
    absl::MutexLock lock(&mu_);
    unpin = ExpireLocked(now);
    for (size_t i = 0; i < keys.size() && i < found.size(); ++i) {
      if (!found[i]) continue;
      const Key key{ns, keys[i]};
      if (held_.contains(key)) continue;
      if (held_bytes_ + found[i]->size > options_.max_held_bytes) {
        ++stats_.skipped;
        continue;
      }
      if (found[i]->tier == TierKind::kDisk) {
        if (queue_.size() >= options_.max_prefetch_queue) {
          ++stats_.dropped;
          continue;
        }
        queue_.push_back(key);
      } else {
        in_memory.push_back(i);
      }
      held_.emplace(key, Hold{0, found[i]->size, expires});
      order_.emplace_back(expires, key);
      held_bytes_ += found[i]->size;
    }
  }
  Unpin(unpin);
  // The store's lock, not I/O: a memory block is held at once.
  std::vector<std::pair<Key, uint64_t>> placed;
  for (size_t i : in_memory) {
    absl::StatusOr<uint64_t> lease = store_->Hold(ns, keys[i], options_.hold);
    if (lease.ok()) placed.emplace_back(Key{ns, keys[i]}, *lease);
  }
  std::vector<uint64_t> late;  // released (its Get came) before the lease was recorded
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [key, lease] : placed) {
      auto it = held_.find(key);
      if (it == held_.end() || it->second.lease != 0) {
        late.push_back(lease);
      } else {
        it->second.lease = lease;
        ++stats_.held;
      }
    }
  }
  Unpin(late);
}

void ReadHolds::Release(NamespaceId ns, absl::Span<const BlockKey> keys) {
  std::vector<uint64_t> unpin;
  {
    absl::MutexLock lock(&mu_);
    if (held_.empty()) return;
    for (const BlockKey& k : keys) {
      auto it = held_.find(Key{ns, k});
      if (it == held_.end()) continue;
      if (it->second.lease != 0) unpin.push_back(it->second.lease);
      held_bytes_ -= it->second.bytes;
      held_.erase(it);
      ++stats_.released;
    }
  }
  Unpin(unpin);
}

void ReadHolds::PrefetchLoop() {
  while (true) {
    Key key;
    {
      absl::MutexLock lock(&mu_);
      auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return stopping_ || !queue_.empty();
      };
      mu_.Await(absl::Condition(&ready));
      if (stopping_) return;
      key = queue_.front();
      queue_.pop_front();
      // Released (its Get came first) or expired meanwhile: nothing to do.
      if (!held_.contains(key)) continue;
      busy_ = true;
    }
    // Reads the block back from disk into memory (blocking) and holds it.
    absl::StatusOr<uint64_t> lease = store_->Hold(key.first, key.second, options_.hold);
    bool keep = false;
    {
      absl::MutexLock lock(&mu_);
      busy_ = false;
      auto it = held_.find(key);
      if (lease.ok() && it != held_.end() && it->second.lease == 0) {
        it->second.lease = *lease;
        ++stats_.held;
        ++stats_.prefetched;
        keep = true;
      }
    }
    if (lease.ok() && !keep) (void)store_->Unpin(*lease);
  }
}

void ReadHolds::Drain() {
  absl::MutexLock lock(&mu_);
  auto idle = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return stopping_ || (queue_.empty() && !busy_);
  };
  mu_.Await(absl::Condition(&idle));
}

ReadHoldStats ReadHolds::stats() const {
  absl::MutexLock lock(&mu_);
  return stats_;
}

uint64_t ReadHolds::held_bytes() const {
  absl::MutexLock lock(&mu_);
  return held_bytes_;
}

}  // namespace kvf
