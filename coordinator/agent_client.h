// AgentClient: how the coordinator calls agents' AgentControl service. An
// interface so tests can put a fake behind it; the daemon uses the gRPC one.
#ifndef KVF_COORDINATOR_AGENT_CLIENT_H_
#define KVF_COORDINATOR_AGENT_CLIENT_H_

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "grpcpp/security/credentials.h"
#include "proto/agent_control.pb.h"

namespace kvf {

// Implementations are thread-safe. Calls block for at most their deadline.
class AgentClient {
 public:
  virtual ~AgentClient() = default;
  // `address` is the agent's control endpoint (host:port).
  virtual absl::Status AssignMigration(const std::string& address,
                                       const proto::AssignMigrationRequest& request) = 0;
  virtual absl::Status ApplyEvictionCutoff(const std::string& address,
                                           const proto::EvictionCutoffRequest& request) = 0;
};

// Calls agents over gRPC with `token` in the `authorization: Bearer` header,
// each call bounded by `timeout`. Channels are cached per address.
// `credentials` null means plaintext.
std::unique_ptr<AgentClient> NewGrpcAgentClient(
    std::string token, std::shared_ptr<grpc::ChannelCredentials> credentials,
    absl::Duration timeout);

}  // namespace kvf

#endif  // KVF_COORDINATOR_AGENT_CLIENT_H_
