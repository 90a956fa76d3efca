// LeaderElection: one leader among the coordinators sharing an etcd prefix.
//
// Each candidate holds an etcd lease of `ttl` and campaigns with one
// transaction: if the leader key does not exist (create_revision == 0), put it
// with the candidate's address, attached to its lease; else read it. The
// winner's term is the key's create revision: it grows with every election
// and fences the leader's writes (coordinator/etcd_state_store.h). Losers try
// again every `retry`, so when a leader dies its key vanishes with its lease
// (ttl after its last keep-alive, plus etcd's expiry check, up to 0.5 s) and
// a new leader follows within one retry: about ttl + 0.6 s in all.
//
// The leader renews its lease with LeaseKeepAlive every ttl/4 and checks that
// the key is still its own. It steps down (on_lost) when etcd says the lease
// expired, when the key is gone or someone else's, when a fenced write says
// so (StepDown), or, if etcd cannot be reached, when its own count of the
// lease runs out: ttl after the last keep-alive that was *sent* and
// answered. etcd counts from when it received that keep-alive, which is
// later, so the old leader stops before any other coordinator can be
// elected; fenced writes cover whatever clock skew remains.
//
// Thread-safety: all methods are thread-safe. on_elected and on_lost run on
// the election's own thread, one at a time, alternating (on_lost only after
// on_elected); they may call leader() and term() but not Stop().
#ifndef KVF_COORDINATOR_LEADER_ELECTION_H_
#define KVF_COORDINATOR_LEADER_ELECTION_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "coordinator/etcd_client.h"

namespace kvf {

struct ElectionOptions {
  std::string key;          // the leader key (EtcdLeaderKey(prefix))
  std::string candidate;    // this candidate's address: the key's value
  absl::Duration ttl = absl::Seconds(2);  // whole seconds in etcd, at least 1
  absl::Duration retry = absl::Milliseconds(100);
  std::function<void(int64_t term)> on_elected;
  std::function<void()> on_lost;
};

class LeaderElection {
 public:
  // `etcd` is not owned and must outlive it. Start() begins the campaign.
  LeaderElection(EtcdClient* etcd, ElectionOptions options);
  // Starts campaigning on a thread. Call once.
  void Start();
  // Stop(resign = true).
  ~LeaderElection();

  // Ends the campaign and joins the thread. With `resign`, a leader deletes
  // its key and revokes its lease, so another is elected at once; without,
  // the key stays until the lease expires (what a crash looks like).
  void Stop(bool resign = true);

  // A fenced write showed this leader was replaced: step down now.
  void StepDown(const absl::Status& why);

  bool is_leader() const;
  int64_t term() const;          // the leader's term while leader; else 0
  std::string leader() const;    // the leader's address as last seen; "" if none
  absl::Time leader_since() const;

 private:
  void Loop();
  // One campaign attempt as a follower.
  void Campaign();
  // One renewal as the leader; false when leadership is lost.
  bool Renew();
  void Lose(const std::string& why);
  bool WaitStop(absl::Duration d);

  EtcdClient* const etcd_;
  const ElectionOptions options_;

  mutable absl::Mutex mu_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  bool resign_ ABSL_GUARDED_BY(mu_) = true;
  bool step_down_ ABSL_GUARDED_BY(mu_) = false;
  bool leader_ ABSL_GUARDED_BY(mu_) = false;
  int64_t term_ ABSL_GUARDED_BY(mu_) = 0;
  std::string leader_address_ ABSL_GUARDED_BY(mu_);
  absl::Time leader_since_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();

  // Election thread only.
  int64_t lease_ = 0;
  // A lease given up while etcd was out of reach: revoked as soon as it is
  // back, so the key it holds goes at once rather than after its TTL.
  int64_t stale_lease_ = 0;
  absl::Time lease_valid_until_ = absl::InfinitePast();
  absl::Time last_renewal_ = absl::InfinitePast();
  std::thread thread_;
};

}  // namespace kvf

#endif  // KVF_COORDINATOR_LEADER_ELECTION_H_
