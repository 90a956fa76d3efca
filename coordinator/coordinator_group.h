// CoordinatorGroup: one of several kvf-coordinator processes that share the
// cluster's state in etcd (docs/coordinator.md, "Several coordinators").
//
// Every member watches the state key (coordinator/etcd_state_store.h) and
// serves the maps it sees (feed(): GetClusterMap, WatchClusterMap). One member
// at a time is elected leader (coordinator/leader_election.h); while it leads
// it runs a CoordinatorService on an EtcdStateStore fenced by its term, which
// starts from the state in etcd at the next epoch, exactly as a restarted
// single coordinator does from its state dir (every node keeps its state and
// gets a fresh lease; migrations in progress are planned again). Writes go to
// that service only: Leader() returns null on the others, with the leader's
// address for the redirect.
//
// When the leadership is lost (lease expired, etcd out of reach for a TTL, or
// a fenced write), the service is shut down and dropped at once; RPCs still
// holding it finish against it, and any write they attempt fails the fence.
//
// Thread-safety: all methods are thread-safe.
#ifndef KVF_COORDINATOR_COORDINATOR_GROUP_H_
#define KVF_COORDINATOR_COORDINATOR_GROUP_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "coordinator/coordinator_service.h"
#include "coordinator/etcd_client.h"
#include "coordinator/leader_election.h"
#include "coordinator/map_feed.h"
#include "proto/coordinator.pb.h"

namespace kvf {

struct CoordinatorGroupOptions {
  // The service's options for each term (state_dir and store are ignored).
  CoordinatorOptions core;
  std::string prefix = "/kvfabric/default";  // this cluster's keys in etcd
  absl::Duration election_ttl = absl::Seconds(2);
  absl::Duration campaign_retry = absl::Milliseconds(100);
  // How long Start waits for etcd to answer the first read.
  absl::Duration start_timeout = absl::Seconds(10);
};

class CoordinatorGroup {
 public:
  // Checks the options; contacts nothing. Until Start(), writes are refused
  // ("no leader elected yet") and there is no map. `etcd` is not owned and
  // must outlive the group. INVALID_ARGUMENT for bad options.
  static absl::StatusOr<std::unique_ptr<CoordinatorGroup>> Create(
      EtcdClient* etcd, CoordinatorGroupOptions options);
  ~CoordinatorGroup();  // Shutdown(true)

  // Reads the state from etcd, starts watching it, and campaigns as `self`
  // (this member's advertised gRPC address: the leader key's value and the
  // address redirects name). Call once. UNAVAILABLE if etcd did not answer
  // within start_timeout; DATA_LOSS if the state key is not a coordinator
  // state.
  absl::Status Start(const std::string& self);

  // The service while this member leads; else null and `*leader` (if given)
  // is the leader's address, "" when none is known.
  std::shared_ptr<CoordinatorService> Leader(std::string* leader = nullptr) const;
  const MapFeed& feed() const { return feed_; }
  std::string self() const;

  // The daemon's lease check: the leader's Tick().
  void Tick();

  // Stops campaigning (with `resign`, the leader hands over at once; without,
  // as a crash would: after its lease) and ends watch streams.
  void Shutdown(bool resign = true);
  bool shutting_down() const { return feed_.shutting_down(); }

  proto::CoordinatorStatusResponse Status() const;
  // The leader's counters; on a follower only the epoch it serves.
  CoordinatorStats Stats() const;
  bool is_leader() const { return Leader() != nullptr; }

 private:
  CoordinatorGroup(EtcdClient* etcd, CoordinatorGroupOptions options);
  void OnStateEvent(const mvccpb::Event& event);
  void BecomeLeader(int64_t term);
  void BecomeFollower();

  EtcdClient* const etcd_;
  const CoordinatorGroupOptions options_;
  MapFeed feed_;
  std::unique_ptr<LeaderElection> election_;
  std::unique_ptr<EtcdWatch> watch_;

  mutable absl::Mutex mu_;
  std::string self_ ABSL_GUARDED_BY(mu_);
  std::shared_ptr<CoordinatorService> core_ ABSL_GUARDED_BY(mu_);
  bool shut_down_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace kvf

#endif  // KVF_COORDINATOR_COORDINATOR_GROUP_H_
