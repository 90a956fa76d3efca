// A tiny HTTP endpoint for /metrics (Prometheus text) and /healthz, shared
// by kvf-coordinator and kvf-agent. Serves on its own thread.
#ifndef KVF_COMMON_HTTP_SERVER_H_
#define KVF_COMMON_HTTP_SERVER_H_

#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"

namespace httplib {
class Server;
}

namespace kvf {

struct HttpHandlers {
  std::function<std::string()> metrics;  // the /metrics body
  // /healthz: OK's text with 200, an error's message with 503.
  std::function<absl::StatusOr<std::string>()> health;
};

class HttpServer {
 public:
  // Binds host:port (port 0 picks a free one) and starts serving.
  static absl::StatusOr<std::unique_ptr<HttpServer>> Start(const std::string& host, int port,
                                                           HttpHandlers handlers);
  ~HttpServer();
  void Stop();
  int port() const { return port_; }

 private:
  HttpServer() = default;
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  int port_ = 0;
};

}  // namespace kvf

#endif  // KVF_COMMON_HTTP_SERVER_H_
