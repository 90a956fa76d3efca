#include "coordinator/map_feed.h"

#include <algorithm>
#include <utility>

namespace kvf {

bool MapFeed::Install(std::shared_ptr<const proto::ClusterMap> map) {
  if (map == nullptr) return false;
  absl::MutexLock lock(&mu_);
  if (!history_.empty() && history_.back()->epoch() >= map->epoch()) return false;
  history_.push_back(std::move(map));
  while (history_.size() > history_limit_) history_.pop_front();
  return true;
}

std::shared_ptr<const proto::ClusterMap> MapFeed::Current() const {
  absl::MutexLock lock(&mu_);
  return history_.empty() ? nullptr : history_.back();
}

uint64_t MapFeed::epoch() const {
  absl::MutexLock lock(&mu_);
  return history_.empty() ? 0 : history_.back()->epoch();
}

std::vector<std::shared_ptr<const proto::ClusterMap>> MapFeed::WaitForMaps(
    uint64_t after_epoch, absl::Time deadline) const {
  absl::MutexLock lock(&mu_);
  auto ready = [&]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
    return shutdown_ || (!history_.empty() && history_.back()->epoch() > after_epoch);
  };
  mu_.AwaitWithDeadline(absl::Condition(&ready), deadline);
  if (shutdown_ || history_.empty() || history_.back()->epoch() <= after_epoch) return {};
  if (after_epoch == 0 || history_.front()->epoch() > after_epoch + 1) return {history_.back()};
  auto first = std::upper_bound(
      history_.begin(), history_.end(), after_epoch,
      [](uint64_t epoch, const std::shared_ptr<const proto::ClusterMap>& map) {
        return epoch < map->epoch();
      });
  return {first, history_.end()};
}

void MapFeed::Shutdown() {
  absl::MutexLock lock(&mu_);
  shutdown_ = true;
}

bool MapFeed::shutting_down() const {
  absl::MutexLock lock(&mu_);
  return shutdown_;
}

}  // namespace kvf
