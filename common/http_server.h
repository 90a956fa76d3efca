// A tiny HTTP endpoint for /metrics (Prometheus text) and /healthz, shared
// by kvf-coordinator and kvf-agent. Serves on its own threads.
//
// The port faces whoever can reach it, so it is built to stay answerable
// under abuse: waiting for a request costs a socket and a few KiB, never a
// thread. One I/O thread reads every connection (poll) until a request's
// line and headers are whole, within a size and time bound; only then does a
// worker run the handler (cpp-httplib parses and routes), and the I/O thread
// writes the answer back. Idle, slow or oversized clients are dropped by the
// limits in HttpServerOptions; they cannot hold a worker or grow memory.
#ifndef KVF_COMMON_HTTP_SERVER_H_
#define KVF_COMMON_HTTP_SERVER_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace kvf {

struct HttpHandlers {
  std::function<std::string()> metrics;  // the /metrics body
  // /healthz: OK's text with 200, an error's message with 503.
  std::function<absl::StatusOr<std::string>()> health;
};

// Limits on what one client can hold. The defaults fit a Prometheus scraper
// and a liveness probe; see docs/operating.md, "HTTP endpoint limits".
struct HttpServerOptions {
  // A request's line and headers must arrive whole within this time of the
  // connection being accepted (or of its first byte, on a kept-alive
  // connection); otherwise the connection is closed. Stops slow trickles.
  absl::Duration request_timeout = absl::Seconds(2);
  // A kept-alive connection with no new request is closed after this.
  absl::Duration keep_alive_timeout = absl::Seconds(2);
  // An answer must be taken by the client within this time, or the
  // connection is closed.
  absl::Duration write_timeout = absl::Seconds(5);
  // Requests answered on one connection before it is closed.
  int max_requests_per_connection = 100;
  // Connections open at once. At the limit, a new connection replaces the
  // one that has waited longest for a request of its own (closed at once);
  // when every open connection has a request in progress, the new one is
  // closed at once instead.
  int max_connections = 256;
  // Bytes of request line plus headers. Past it the client gets 414 (no
  // whole request line yet) or 431 and the connection is closed; nothing
  // larger is ever buffered. Only GET is served, so no body is ever read.
  size_t max_request_bytes = 16 * 1024;
  // Threads that run the handlers. They never wait on a client's socket, so
  // a slow client cannot take one; two keep /healthz answering while a slow
  // /metrics is being built.
  int worker_threads = 2;
  // Accept queue length of the listening socket (cpp-httplib's default is 5).
  int listen_backlog = 128;
};

// Serves GET /metrics and GET /healthz; other paths get 404, other methods on
// these paths 405. Answers other than 2xx close the connection.
//
// Thread-safe: the accessors may be called from any thread while it serves.
// Stop() (and the destructor) blocks until a handler in progress returns.
class HttpServer {
 public:
  // Binds host:port (port 0 picks a free one) and starts serving with the
  // default options. UnavailableError when it cannot listen.
  static absl::StatusOr<std::unique_ptr<HttpServer>> Start(const std::string& host, int port,
                                                           HttpHandlers handlers);
  // As above with explicit limits; InvalidArgumentError when one is out of
  // range (a count below 1, a duration not positive).
  static absl::StatusOr<std::unique_ptr<HttpServer>> Start(const std::string& host, int port,
                                                           HttpHandlers handlers,
                                                           const HttpServerOptions& options);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Stops accepting, closes every connection and joins the threads.
  // Idempotent.
  void Stop();
  int port() const { return port_; }

  // Connections closed by a limit before a request on them was answered:
  // over max_connections (the new one or the one it replaced), request not
  // whole within request_timeout, or request over max_request_bytes.
  uint64_t refused_connections() const;

 private:
  class Impl;
  explicit HttpServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
  int port_ = 0;
};

}  // namespace kvf

#endif  // KVF_COMMON_HTTP_SERVER_H_
