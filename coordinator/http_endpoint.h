// The coordinator's HTTP side: /metrics (Prometheus text format) and /healthz.
#ifndef KVF_COORDINATOR_HTTP_ENDPOINT_H_
#define KVF_COORDINATOR_HTTP_ENDPOINT_H_

#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "common/http_server.h"
#include "coordinator/coordinator_service.h"

namespace kvf {

// Extra counters the gRPC layer keeps.
struct RpcCounters {
  uint64_t unauthenticated = 0;
  uint64_t failed = 0;
};

// Prometheus text exposition of `stats` (and `rpc`).
std::string MetricsText(const CoordinatorStats& stats, const RpcCounters& rpc);

// Serves /metrics and /healthz on its own thread until Stop() or destruction.
class HttpEndpoint {
 public:
  // Binds host:port (port 0 picks a free one) and starts serving.
  // `rpc_counters` may be null.
  static absl::StatusOr<std::unique_ptr<HttpEndpoint>> Start(
      const std::string& host, int port, const CoordinatorService* core,
      std::function<RpcCounters()> rpc_counters);
  // The same from functions (a coordinator group: the leader's counters, or
  // a follower's epoch). `extra_metrics`, if set, is appended to /metrics.
  static absl::StatusOr<std::unique_ptr<HttpEndpoint>> Start(
      const std::string& host, int port, std::function<CoordinatorStats()> stats,
      std::function<absl::StatusOr<std::string>()> health,
      std::function<RpcCounters()> rpc_counters, std::function<std::string()> extra_metrics);
  ~HttpEndpoint();
  void Stop();
  int port() const;

 private:
  HttpEndpoint() = default;
  std::unique_ptr<HttpServer> server_;
};

}  // namespace kvf

#endif  // KVF_COORDINATOR_HTTP_ENDPOINT_H_
