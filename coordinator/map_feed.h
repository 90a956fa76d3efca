// MapFeed: the maps a coordinator serves to watchers when the state lives in
// etcd. Every coordinator of a group keeps one, fed by its watch of the state
// key (and, on the leader, by its own publications too); maps arrive in any
// order and more than once, and the feed keeps each epoch once, in order.
//
// Thread-safe.
#ifndef KVF_COORDINATOR_MAP_FEED_H_
#define KVF_COORDINATOR_MAP_FEED_H_

#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "proto/cluster_map.pb.h"

namespace kvf {

class MapFeed {
 public:
  explicit MapFeed(size_t history = 1024) : history_limit_(history ? history : 1) {}

  // Keeps `map` if its epoch is newer than every map so far; returns whether
  // it did. An older or equal epoch is ignored.
  bool Install(std::shared_ptr<const proto::ClusterMap> map);

  // The newest map; null before the first.
  std::shared_ptr<const proto::ClusterMap> Current() const;
  uint64_t epoch() const;

  // CoordinatorService::WaitForMaps's contract: blocks until a map newer than
  // `after_epoch` exists, `deadline` passes or Shutdown(); returns the newer
  // maps in order (only the newest for after_epoch 0 or when history does
  // not reach back).
  std::vector<std::shared_ptr<const proto::ClusterMap>> WaitForMaps(uint64_t after_epoch,
                                                                    absl::Time deadline) const;
  void Shutdown();
  bool shutting_down() const;

 private:
  const size_t history_limit_;
  mutable absl::Mutex mu_;
  std::deque<std::shared_ptr<const proto::ClusterMap>> history_ ABSL_GUARDED_BY(mu_);
  bool shutdown_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace kvf

#endif  // KVF_COORDINATOR_MAP_FEED_H_
