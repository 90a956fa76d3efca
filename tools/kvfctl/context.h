// What every kvfctl command shares: the coordinator connection, the token,
// output mode, HTTP scraping, and the mapping of failures to exit codes.
//
// Commands print their result on stdout and failures on stderr as
// "kvfctl: <what failed>: <why>\n  <what to do>", and return an exit code.
//
// Thread-compatible: kvfctl is single-threaded.
#ifndef KVF_TOOLS_KVFCTL_CONTEXT_H_
#define KVF_TOOLS_KVFCTL_CONTEXT_H_

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/cluster_map.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/support/status.h"
#include "proto/cluster_map.pb.h"
#include "proto/coordinator.grpc.pb.h"

namespace kvf::ctl {

enum ExitCode : int {
  kExitOk = 0,
  kExitFailed = 1,           // the operation failed (the error says what to do)
  kExitUsage = 2,            // bad command line
  kExitTimeout = 3,          // a wait ran past --timeout
  kExitUnauthenticated = 4,  // wrong or missing token
  kExitUnreachable = 5,      // coordinator (or an agent) not reachable
};

struct Options {
  // gRPC host:port, or several coordinators' separated by commas (state in
  // etcd): calls go to the leader, found with CoordinatorStatus.
  std::string coordinator;
  std::string token;            // the cluster token (from --token, --token_file or KVF_TOKEN)
  std::string token_file;       // as given (for `join`)
  bool token_from_env = false;  // token came from KVF_TOKEN (for `join`)
  bool json = false;
  absl::Duration rpc_timeout = absl::Seconds(5);
  std::string coordinator_http;         // optional host:port of the coordinator's /metrics
  std::vector<std::string> agent_http;  // optional agents' /metrics host:port
  // --tls_ca as given (for `join`), and the credentials of every gRPC channel
  // (coordinator and agents) made from it; null: plaintext.
  std::string tls_ca;
  std::shared_ptr<grpc::ChannelCredentials> credentials;
};

// Prometheus text parsed into series -> value; the key is the series exactly
// as written before the value ("name" or "name{labels}").
using Metrics = std::map<std::string, double>;
Metrics ParseMetrics(const std::string& text);

// GET http://host_port/path. UNAVAILABLE when it cannot connect, INTERNAL for
// a non-200 answer, INVALID_ARGUMENT for a malformed host:port.
absl::StatusOr<std::string> HttpGet(const std::string& host_port, const std::string& path,
                                    absl::Duration timeout);

// Prints "kvfctl: <message>" (and an indented hint line if not empty) to
// stderr and returns `code`.
int Fail(int code, const std::string& message, const std::string& hint = "");

// What one coordinator says about itself (CoordinatorStatus).
struct CoordinatorProbe {
  std::string address;  // as listed
  bool reachable = false;
  std::string error;    // when !reachable
  proto::CoordinatorStatusResponse status;
};

class Context {
 public:
  explicit Context(Options options);

  const Options& options() const { return options_; }
  bool json() const { return options_.json; }

  // The coordinator to call: the leader as the listed ones report it (a
  // single follower listed: its leader), else the first that answers, else
  // the first listed.
  proto::Coordinator::Stub& coordinator();
  // Its address (after coordinator()).
  const std::string& active_coordinator() const { return active_; }
  // CoordinatorStatus of every listed coordinator, in order.
  std::vector<CoordinatorProbe> ProbeCoordinators() const;
  std::vector<std::string> CoordinatorList() const;
  // A fresh context with the token and the RPC deadline set.
  std::unique_ptr<grpc::ClientContext> NewCall() const;
  std::unique_ptr<grpc::ClientContext> NewCall(absl::Duration timeout) const;
  // For Drain, Undrain and Leave: the coordinator hands migration tasks to
  // agents (2 s each at most) before it answers, so these get at least 30 s.
  std::unique_ptr<grpc::ClientContext> NewMutationCall() const;

  // GetClusterMap; on failure prints the error (RpcFailed) and returns
  // nullopt with *exit_code set.
  std::optional<proto::ClusterMap> GetMap(int* exit_code);

  // Prints a failed coordinator RPC with a hint that fits its code and returns
  // the exit code: UNAUTHENTICATED 4, UNAVAILABLE/DEADLINE_EXCEEDED 5,
  // anything else 1.
  // `mutation`: the call changes the map, so a deadline may have passed after
  // the change was made; the hint says to look before retrying.
  int RpcFailed(const std::string& what, const grpc::Status& status, bool mutation = false) const;
  // The same for an RPC to an agent at `address`.
  int AgentRpcFailed(const std::string& what, const std::string& address,
                     const grpc::Status& status) const;

 private:
  Options options_;
  std::string active_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<proto::Coordinator::Stub> stub_;
};

// Helpers for the map on the wire.
const char* StateName(int proto_state);  // "active", ...; "unknown"
bool IsLive(int proto_state);            // joining, active or draining
const proto::Node* FindNode(const proto::ClusterMap& map, uint32_t id);

}  // namespace kvf::ctl

#endif  // KVF_TOOLS_KVFCTL_CONTEXT_H_
