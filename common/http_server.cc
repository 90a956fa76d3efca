#include "common/http_server.h"

#include <httplib.h>

#include "absl/strings/str_cat.h"

namespace kvf {

absl::StatusOr<std::unique_ptr<HttpServer>> HttpServer::Start(const std::string& host, int port,
                                                              HttpHandlers handlers) {
  std::unique_ptr<HttpServer> ep(new HttpServer());
  ep->server_ = std::make_unique<httplib::Server>();
  ep->server_->Get("/metrics", [metrics = handlers.metrics](const httplib::Request&,
                                                            httplib::Response& res) {
    res.set_content(metrics ? metrics() : std::string(), "text/plain; version=0.0.4");
  });
  ep->server_->Get("/healthz", [health = handlers.health](const httplib::Request&,
                                                          httplib::Response& res) {
    absl::StatusOr<std::string> h = health ? health() : absl::StatusOr<std::string>("ok\n");
    if (h.ok()) {
      res.set_content(*h, "text/plain");
    } else {
      res.status = 503;
      res.set_content(absl::StrCat(std::string(h.status().message()), "\n"), "text/plain");
    }
  });
  if (port == 0) {
    ep->port_ = ep->server_->bind_to_any_port(host);
  } else {
    ep->port_ = ep->server_->bind_to_port(host, port) ? port : -1;
  }
  if (ep->port_ <= 0) {
    return absl::UnavailableError(absl::StrCat("http: cannot listen on ", host, ":", port));
  }
  httplib::Server* server = ep->server_.get();
  ep->thread_ = std::thread([server] { server->listen_after_bind(); });
  return ep;
}

HttpServer::~HttpServer() { Stop(); }

void HttpServer::Stop() {
  if (server_) server_->stop();
  if (thread_.joinable()) thread_.join();
}

}  // namespace kvf
