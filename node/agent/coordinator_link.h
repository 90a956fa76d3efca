// The agent's side of membership (proto/coordinator.proto): join, heartbeats
// with usage and the age histogram, migration progress, leave, and the
// cluster-map watch stream on its own thread. Every call carries the cluster
// token.
//
// Several coordinators (docs/coordinator.md, "Several coordinators"): the
// address may be a comma-separated list. Calls go to the coordinator that
// last answered; one that is unreachable (UNAVAILABLE) moves the call on to
// the next, and a follower's refusal naming the leader (trailing metadata
// `x-kvf-leader`) moves it to the leader, within the same call and its
// deadline. While no leader is elected the call waits and retries, so a
// fail-over (about 3 s) costs a slow call, not a failed one, when the
// timeout is longer. Only UNAVAILABLE is retried: nothing else says that
// the coordinator did not act on the request. The watch moves to the next
// coordinator when its stream breaks (any coordinator serves it).
//
// Thread-safe.
#ifndef KVF_NODE_AGENT_COORDINATOR_LINK_H_
#define KVF_NODE_AGENT_COORDINATOR_LINK_H_

#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/cluster_map.h"
#include "grpcpp/client_context.h"
#include "grpcpp/security/credentials.h"
#include "proto/coordinator.grpc.pb.h"

namespace kvf {

class CoordinatorLink {
 public:
  // `address`: host:port, or several separated by commas.
  // `credentials`: the channel's (proto/channel.h ChannelCredentialsFor);
  // null means plaintext.
  CoordinatorLink(const std::string& address, std::string token, absl::Duration timeout,
                  std::shared_ptr<grpc::ChannelCredentials> credentials = nullptr);
  ~CoordinatorLink();  // stops the watch
  CoordinatorLink(const CoordinatorLink&) = delete;
  CoordinatorLink& operator=(const CoordinatorLink&) = delete;

  absl::StatusOr<proto::JoinResponse> Join(const proto::JoinRequest& request);
  absl::StatusOr<proto::HeartbeatResponse> Heartbeat(const proto::HeartbeatRequest& request);
  absl::StatusOr<ClusterMap> GetClusterMap();
  absl::Status ReportMigration(uint32_t node, const std::vector<proto::TaskProgress>& tasks);
  absl::Status Leave(uint32_t node);

  // Streams every map newer than `after_epoch` to `on_map` from a thread,
  // re-opening the stream (after a short back-off, on the next coordinator)
  // when it breaks, until StopWatch() or destruction.
  void StartWatch(uint64_t after_epoch, std::function<void(const ClusterMap&)> on_map);
  void StopWatch();

  // The coordinator calls go to now (tests, logs).
  std::string current() const;

 private:
  struct Target {
    std::string address;
    std::unique_ptr<proto::Coordinator::Stub> stub;
  };
  using Call = std::function<grpc::Status(proto::Coordinator::Stub&, grpc::ClientContext*)>;

  // Runs `call` against the coordinators as the class comment says.
  absl::Status Invoke(const char* name, const Call& call);
  // The index of `address`, added to the list if it is not there.
  size_t IndexOfLocked(const std::string& address) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void WatchLoop(uint64_t after_epoch, std::function<void(const ClusterMap&)> on_map);

  const std::string token_;
  const absl::Duration timeout_;
  const std::shared_ptr<grpc::ChannelCredentials> credentials_;

  mutable absl::Mutex mu_;
  std::vector<std::unique_ptr<Target>> targets_ ABSL_GUARDED_BY(mu_);  // never shrinks
  size_t preferred_ ABSL_GUARDED_BY(mu_) = 0;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  grpc::ClientContext* watch_ctx_ ABSL_GUARDED_BY(mu_) = nullptr;
  std::thread watch_;
};

}  // namespace kvf

#endif  // KVF_NODE_AGENT_COORDINATOR_LINK_H_
