// The agent's side of membership (proto/coordinator.proto): join, heartbeats
// with usage and the age histogram, migration progress, leave, and the
// cluster-map watch stream on its own thread. Every call carries the cluster
// token. Thread-safe.
#ifndef KVF_NODE_AGENT_COORDINATOR_LINK_H_
#define KVF_NODE_AGENT_COORDINATOR_LINK_H_

#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

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
  // re-opening the stream (after a short back-off) when it breaks, until
  // StopWatch() or destruction.
  void StartWatch(uint64_t after_epoch, std::function<void(const ClusterMap&)> on_map);
  void StopWatch();

 private:
  void Prepare(grpc::ClientContext* ctx) const;
  void WatchLoop(uint64_t after_epoch, std::function<void(const ClusterMap&)> on_map);

  const std::string token_;
  const absl::Duration timeout_;
  std::unique_ptr<proto::Coordinator::Stub> stub_;

  absl::Mutex mu_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  grpc::ClientContext* watch_ctx_ ABSL_GUARDED_BY(mu_) = nullptr;
  std::thread watch_;
};

}  // namespace kvf

#endif  // KVF_NODE_AGENT_COORDINATOR_LINK_H_
