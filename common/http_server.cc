#include "common/http_server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <httplib.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <deque>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"

namespace kvf {
namespace {

// cpp-httplib's accept loop hands each accepted socket to a TaskQueue. This
// one runs the task at once on the accept thread; the task (Acceptor's
// process_and_close_socket) only passes the socket on, so it cannot block.
class InlineTaskQueue final : public httplib::TaskQueue {
 public:
  void enqueue(std::function<void()> fn) override { fn(); }
  void shutdown() override {}
};

void AddressOf(int fd, bool peer, std::string& ip, int& port) {
  sockaddr_storage addr{};
  socklen_t len = sizeof(addr);
  sockaddr* sa = reinterpret_cast<sockaddr*>(&addr);
  if ((peer ? getpeername(fd, sa, &len) : getsockname(fd, sa, &len)) != 0) return;
  char text[INET6_ADDRSTRLEN] = {};
  if (addr.ss_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(&addr);
    inet_ntop(AF_INET, &in->sin_addr, text, sizeof(text));
    port = ntohs(in->sin_port);
  } else if (addr.ss_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&addr);
    inet_ntop(AF_INET6, &in6->sin6_addr, text, sizeof(text));
    port = ntohs(in6->sin6_port);
  }
  ip = text;
}

// One request, already read whole, as cpp-httplib's Stream: reads come from
// memory and the answer is collected in memory, so the worker that runs the
// handler never waits on the client.
class BufferedExchange final : public httplib::Stream {
 public:
  BufferedExchange(int fd, std::string request) : fd_(fd), request_(std::move(request)) {}

  bool is_readable() const override { return pos_ < request_.size(); }
  bool is_writable() const override { return true; }
  ssize_t read(char* ptr, size_t size) override {
    size_t n = std::min(size, request_.size() - pos_);
    std::memcpy(ptr, request_.data() + pos_, n);
    pos_ += n;
    return static_cast<ssize_t>(n);
  }
  using httplib::Stream::write;
  ssize_t write(const char* ptr, size_t size) override {
    response_.append(ptr, size);
    return static_cast<ssize_t>(size);
  }
  void get_remote_ip_and_port(std::string& ip, int& port) const override {
    AddressOf(fd_, /*peer=*/true, ip, port);
  }
  void get_local_ip_and_port(std::string& ip, int& port) const override {
    AddressOf(fd_, /*peer=*/false, ip, port);
  }
  socket_t socket() const override { return fd_; }

  std::string TakeResponse() { return std::move(response_); }

 private:
  const int fd_;  // for the addresses only; never read or written here
  const std::string request_;
  size_t pos_ = 0;
  std::string response_;
};

// cpp-httplib's Server keeps its accept loop, parser, router and response
// writer; its own per-connection loop (a pool thread blocked on each socket)
// is replaced: accepted sockets go to `on_accept`, and Serve() answers one
// request that was read elsewhere.
class Acceptor final : public httplib::Server {
 public:
  explicit Acceptor(std::function<void(int)> on_accept) : on_accept_(std::move(on_accept)) {}
  ~Acceptor() override {
    // Bound but never listened on (Start failed half way): stop() would not
    // close it.
    int fd = svr_sock_.exchange(INVALID_SOCKET);
    if (fd != INVALID_SOCKET) ::close(fd);
  }

  // Linux takes a second listen() on a listening socket as a new backlog;
  // cpp-httplib listens with 5.
  bool SetBacklog(int backlog) { return ::listen(svr_sock_, backlog) == 0; }

  bool Serve(httplib::Stream& strm, bool close_connection, bool& connection_closed) {
    return process_request(strm, close_connection, connection_closed, nullptr);
  }

 private:
  bool process_and_close_socket(socket_t sock) override {
    on_accept_(sock);
    return true;
  }

  std::function<void(int)> on_accept_;
};

absl::Status Validate(const HttpServerOptions& o) {
  if (o.request_timeout <= absl::ZeroDuration() || o.keep_alive_timeout <= absl::ZeroDuration() ||
      o.write_timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("http: timeouts must be positive");
  }
  if (o.max_requests_per_connection < 1 || o.max_connections < 1 || o.max_request_bytes < 1 ||
      o.worker_threads < 1 || o.listen_backlog < 1) {
    return absl::InvalidArgumentError("http: limits must be at least 1");
  }
  return absl::OkStatus();
}

void SetThreadName(const char* name) { pthread_setname_np(pthread_self(), name); }

// Makes the close that follows send a reset: a connection dropped by a limit
// leaves no TIME_WAIT behind (an abuser would otherwise fill the table).
void Abort(int fd) {
  linger lin{1, 0};
  setsockopt(fd, SOL_SOCKET, SO_LINGER, &lin, sizeof(lin));
}

}  // namespace

// Threads: the accept thread (cpp-httplib's listen loop) passes sockets to the
// I/O thread, which alone owns the connections, reads requests, enforces the
// limits and writes answers; workers turn a whole request into an answer.
class HttpServer::Impl {
 public:
  Impl(HttpHandlers handlers, const HttpServerOptions& options);
  ~Impl() { Stop(); }

  // Binds, then starts the threads; returns the bound port.
  absl::StatusOr<int> Listen(const std::string& host, int port);
  void Stop();
  uint64_t refused() const { return refused_.load(std::memory_order_relaxed); }

 private:
  enum class State {
    kReading,     // waiting for a request's line and headers
    kProcessing,  // a worker has the request; not polled, never closed
    kWriting,     // sending the answer
  };
  struct Conn {
    int fd = -1;  // -1 once closed
    State state = State::kReading;
    std::string in;      // received, not yet handed to a worker
    size_t scanned = 0;  // prefix of `in` known not to hold the blank line
    std::string out;     // the answer being sent
    size_t out_pos = 0;
    bool close_after_write = false;
    int served = 0;            // answers sent
    absl::Time deadline;       // for the current state
    absl::Time waiting_since;  // when it began waiting for a request
  };
  struct Job {
    Conn* conn = nullptr;  // stays valid: the I/O thread does not close kProcessing
    int fd = -1;
    std::string request;
    bool close_connection = false;
  };
  struct Done {
    Conn* conn = nullptr;
    std::string response;
    bool keep_alive = false;
  };

  void OnAccept(int fd);  // accept thread
  void Wake();
  void WorkerLoop();
  bool WorkOrStop() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stopping_ || !jobs_.empty(); }

  // I/O thread only.
  void IoLoop();
  void Admit(int fd, absl::Time now);
  void ReadFrom(Conn& c, absl::Time now);
  bool TryDispatch(Conn& c, absl::Time now);
  void RefuseOversized(Conn& c, absl::Time now);
  void WriteTo(Conn& c, absl::Time now);
  void Finish(Done done, absl::Time now);
  void Close(Conn& c, bool refused);
  // Waiting for a request that has not come whole (as opposed to idle
  // between answered ones): closing it refuses a client.
  static bool Unanswered(const Conn& c) {
    return c.state == State::kReading && (c.served == 0 || !c.in.empty());
  }

  const HttpServerOptions options_;
  std::unique_ptr<Acceptor> server_;
  int wake_fd_ = -1;
  absl::Notification listening_;
  std::thread accept_thread_;
  std::thread io_thread_;
  std::vector<std::thread> workers_;
  std::once_flag stop_once_;
  std::atomic<uint64_t> refused_{0};

  absl::Mutex mu_;
  std::vector<int> accepted_ ABSL_GUARDED_BY(mu_);
  std::deque<Job> jobs_ ABSL_GUARDED_BY(mu_);
  std::vector<Done> done_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;

  // Owned by the I/O thread while it runs.
  std::vector<std::unique_ptr<Conn>> conns_;
  size_t open_ = 0;
};

HttpServer::Impl::Impl(HttpHandlers handlers, const HttpServerOptions& options)
    : options_(options), server_(std::make_unique<Acceptor>([this](int fd) { OnAccept(fd); })) {
  httplib::Server& s = *server_;
  s.Get("/metrics",
        [metrics = std::move(handlers.metrics)](const httplib::Request&, httplib::Response& res) {
          res.set_content(metrics ? metrics() : std::string(), "text/plain; version=0.0.4");
        });
  s.Get("/healthz",
        [health = std::move(handlers.health)](const httplib::Request&, httplib::Response& res) {
          absl::StatusOr<std::string> h = health ? health() : absl::StatusOr<std::string>("ok\n");
          if (h.ok()) {
            res.set_content(*h, "text/plain");
          } else {
            res.status = 503;
            res.set_content(absl::StrCat(std::string(h.status().message()), "\n"), "text/plain");
          }
        });
  // Runs before cpp-httplib reads any body: only GET on the two paths passes.
  s.set_pre_routing_handler([](const httplib::Request& req, httplib::Response& res) {
    if (req.path != "/metrics" && req.path != "/healthz") {
      res.status = 404;
      res.set_content("not found\n", "text/plain");
    } else if (req.method != "GET") {
      res.status = 405;
      res.set_header("Allow", "GET");
      res.set_content("method not allowed\n", "text/plain");
    } else {
      return httplib::Server::HandlerResponse::Unhandled;
    }
    return httplib::Server::HandlerResponse::Handled;
  });
  // Every answer but 2xx closes the connection (Done::keep_alive); say so.
  s.set_post_routing_handler([](const httplib::Request&, httplib::Response& res) {
    if (res.status >= 200 && res.status < 300) return;
    res.headers.erase("Keep-Alive");
    if (!res.has_header("Connection")) res.set_header("Connection", "close");
  });
  // Only for the Keep-Alive header it sends; the I/O thread enforces both.
  s.set_keep_alive_timeout(
      absl::ToInt64Seconds(absl::Ceil(options_.keep_alive_timeout, absl::Seconds(1))));
  s.set_keep_alive_max_count(static_cast<size_t>(options_.max_requests_per_connection));
  // Called once, by the accept thread once cpp-httplib counts as running (so
  // that stop() takes effect from then on).
  s.new_task_queue = [this]() -> httplib::TaskQueue* {
    listening_.Notify();
    return new InlineTaskQueue();
  };
}

absl::StatusOr<int> HttpServer::Impl::Listen(const std::string& host, int port) {
  int bound =
      port == 0 ? server_->bind_to_any_port(host) : (server_->bind_to_port(host, port) ? port : -1);
  if (bound <= 0) {
    return absl::UnavailableError(absl::StrCat("http: cannot listen on ", host, ":", port));
  }
  if (!server_->SetBacklog(options_.listen_backlog)) {
    return absl::UnavailableError(
        absl::StrCat("http: listen on ", host, ":", bound, ": ", std::strerror(errno)));
  }
  wake_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (wake_fd_ < 0) {
    return absl::UnavailableError(absl::StrCat("http: eventfd: ", std::strerror(errno)));
  }
  io_thread_ = std::thread([this] { IoLoop(); });
  for (int i = 0; i < options_.worker_threads; ++i) {
    workers_.emplace_back([this] { WorkerLoop(); });
  }
  accept_thread_ = std::thread([this] {
    SetThreadName("kvf-http-accept");
    server_->listen_after_bind();
  });
  listening_.WaitForNotification();
  return bound;
}

void HttpServer::Impl::Stop() {
  std::call_once(stop_once_, [this] {
    server_->stop();  // the accept loop ends
    if (accept_thread_.joinable()) accept_thread_.join();
    {
      absl::MutexLock lock(&mu_);
      stopping_ = true;
    }
    if (wake_fd_ >= 0) Wake();
    for (std::thread& w : workers_) w.join();  // after their current request
    if (io_thread_.joinable()) io_thread_.join();
    for (auto& c : conns_) Close(*c, /*refused=*/false);
    conns_.clear();
    absl::MutexLock lock(&mu_);
    for (int fd : accepted_) ::close(fd);
    accepted_.clear();
    if (wake_fd_ >= 0) ::close(wake_fd_);
    wake_fd_ = -1;
  });
}

void HttpServer::Impl::OnAccept(int fd) {
  {
    absl::MutexLock lock(&mu_);
    if (!stopping_) {
      accepted_.push_back(fd);
      fd = -1;
    }
  }
  if (fd >= 0) {
    ::close(fd);
  } else {
    Wake();
  }
}

void HttpServer::Impl::Wake() {
  uint64_t one = 1;
  // Fails only when the counter is saturated, which wakes the reader anyway.
  (void)!::write(wake_fd_, &one, sizeof(one));
}

void HttpServer::Impl::WorkerLoop() {
  SetThreadName("kvf-http-work");
  for (;;) {
    Job job;
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(this, &Impl::WorkOrStop));
      if (stopping_) return;
      job = std::move(jobs_.front());
      jobs_.pop_front();
    }
    BufferedExchange exchange(job.fd, std::move(job.request));
    bool connection_closed = false;
    bool ok = server_->Serve(exchange, job.close_connection, connection_closed);
    Done done{job.conn, exchange.TakeResponse(), false};
    done.keep_alive = ok && !connection_closed && !job.close_connection &&
                      absl::StartsWith(done.response, "HTTP/1.1 2");
    {
      absl::MutexLock lock(&mu_);
      done_.push_back(std::move(done));
    }
    Wake();
  }
}

void HttpServer::Impl::IoLoop() {
  SetThreadName("kvf-http-io");
  std::vector<pollfd> fds;
  std::vector<Conn*> polled;  // polled[i] is fds[i + 1]
  for (;;) {
    std::vector<int> accepted;
    std::vector<Done> done;
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) return;
      accepted.swap(accepted_);
      done.swap(done_);
    }
    absl::Time now = absl::Now();
    for (Done& d : done) Finish(std::move(d), now);
    for (int fd : accepted) Admit(fd, now);

    fds.clear();
    polled.clear();
    fds.push_back(pollfd{wake_fd_, POLLIN, 0});
    absl::Time next = absl::InfiniteFuture();
    for (auto& c : conns_) {
      if (c->fd < 0 || c->state == State::kProcessing) continue;
      if (c->deadline <= now) {
        Close(*c, /*refused=*/Unanswered(*c));
        continue;
      }
      next = std::min(next, c->deadline);
      fds.push_back(
          pollfd{c->fd, static_cast<short>(c->state == State::kReading ? POLLIN : POLLOUT), 0});
      polled.push_back(c.get());
    }
    std::erase_if(conns_, [](const std::unique_ptr<Conn>& c) { return c->fd < 0; });

    int timeout_ms = -1;
    if (next != absl::InfiniteFuture()) {
      timeout_ms = static_cast<int>(std::min<int64_t>(
          absl::ToInt64Milliseconds(absl::Ceil(next - now, absl::Milliseconds(1))), 60'000));
    }
    int n = ::poll(fds.data(), fds.size(), timeout_ms);
    if (n <= 0) continue;  // timeout or EINTR: deadlines are checked above
    if (fds[0].revents != 0) {
      uint64_t count;
      (void)!::read(wake_fd_, &count, sizeof(count));
    }
    now = absl::Now();
    for (size_t i = 1; i < fds.size(); ++i) {
      if (fds[i].revents == 0) continue;
      Conn& c = *polled[i - 1];
      if (c.fd < 0) continue;
      if (c.state == State::kReading) {
        ReadFrom(c, now);
      } else if (c.state == State::kWriting) {
        WriteTo(c, now);
      }
    }
  }
}

void HttpServer::Impl::Admit(int fd, absl::Time now) {
  int flags = fcntl(fd, F_GETFL);
  if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0) {
    ::close(fd);
    return;
  }
  fcntl(fd, F_SETFD, FD_CLOEXEC);
  if (open_ >= static_cast<size_t>(options_.max_connections)) {
    // Make room by closing the connection that has waited longest for a
    // request; one with a request in progress is never dropped.
    Conn* victim = nullptr;
    for (auto& c : conns_) {
      if (c->fd >= 0 && c->state == State::kReading &&
          (victim == nullptr || c->waiting_since < victim->waiting_since)) {
        victim = c.get();
      }
    }
    if (victim == nullptr) {
      refused_.fetch_add(1, std::memory_order_relaxed);
      Abort(fd);
      ::close(fd);
      return;
    }
    Close(*victim, /*refused=*/Unanswered(*victim));
  }
  auto c = std::make_unique<Conn>();
  c->fd = fd;
  c->deadline = now + options_.request_timeout;
  c->waiting_since = now;
  conns_.push_back(std::move(c));
  ++open_;
}

void HttpServer::Impl::ReadFrom(Conn& c, absl::Time now) {
  char buf[16 * 1024];
  for (;;) {
    ssize_t n = ::recv(c.fd, buf, sizeof(buf), 0);
    if (n > 0) {
      // A kept-alive connection's next request has begun: it must now come
      // whole in time.
      if (c.in.empty() && c.served > 0) c.deadline = now + options_.request_timeout;
      c.in.append(buf, static_cast<size_t>(n));
      if (TryDispatch(c, now)) return;
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    Close(c, /*refused=*/false);  // the client went away
    return;
  }
}

bool HttpServer::Impl::TryDispatch(Conn& c, absl::Time now) {
  size_t end = c.in.find("\r\n\r\n", c.scanned >= 3 ? c.scanned - 3 : 0);
  if (end == std::string::npos) {
    c.scanned = c.in.size();
    if (c.in.size() > options_.max_request_bytes) {
      RefuseOversized(c, now);
      return true;
    }
    return false;
  }
  size_t head = end + 4;
  if (head > options_.max_request_bytes) {
    RefuseOversized(c, now);
    return true;
  }
  Job job{&c, c.fd, c.in.substr(0, head), c.served + 1 >= options_.max_requests_per_connection};
  c.in.erase(0, head);
  c.scanned = 0;
  c.state = State::kProcessing;
  {
    absl::MutexLock lock(&mu_);
    jobs_.push_back(std::move(job));
  }
  return true;
}

void HttpServer::Impl::RefuseOversized(Conn& c, absl::Time now) {
  bool line_whole = c.in.find('\n') != std::string::npos;
  c.out = line_whole ? "HTTP/1.1 431 Request Header Fields Too Large\r\n"
                     : "HTTP/1.1 414 URI Too Long\r\n";
  c.out += "Connection: close\r\nContent-Length: 0\r\n\r\n";
  c.out_pos = 0;
  std::string().swap(c.in);  // give the memory back now
  c.scanned = 0;
  c.close_after_write = true;
  c.state = State::kWriting;
  c.deadline = now + options_.write_timeout;
  refused_.fetch_add(1, std::memory_order_relaxed);
  WriteTo(c, now);
}

void HttpServer::Impl::Finish(Done done, absl::Time now) {
  Conn& c = *done.conn;
  ++c.served;
  if (done.response.empty()) {  // nothing to say (an unparsable request)
    Close(c, /*refused=*/false);
    return;
  }
  c.out = std::move(done.response);
  c.out_pos = 0;
  c.close_after_write = !done.keep_alive;
  c.state = State::kWriting;
  c.deadline = now + options_.write_timeout;
  WriteTo(c, now);
}

void HttpServer::Impl::WriteTo(Conn& c, absl::Time now) {
  while (c.out_pos < c.out.size()) {
    ssize_t n = ::send(c.fd, c.out.data() + c.out_pos, c.out.size() - c.out_pos, MSG_NOSIGNAL);
    if (n > 0) {
      c.out_pos += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    Close(c, /*refused=*/false);
    return;
  }
  std::string().swap(c.out);
  c.out_pos = 0;
  if (c.close_after_write) {
    Close(c, /*refused=*/false);
    return;
  }
  c.state = State::kReading;
  c.waiting_since = now;
  if (c.in.empty()) {
    c.deadline = now + options_.keep_alive_timeout;
  } else {  // a pipelined request already began
    c.deadline = now + options_.request_timeout;
    TryDispatch(c, now);
  }
}

void HttpServer::Impl::Close(Conn& c, bool refused) {
  if (c.fd < 0) return;
  if (refused) {
    // Counted first, so that whoever sees the close also sees the count.
    refused_.fetch_add(1, std::memory_order_relaxed);
    Abort(c.fd);
  }
  ::close(c.fd);
  c.fd = -1;
  --open_;
}

HttpServer::HttpServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

absl::StatusOr<std::unique_ptr<HttpServer>> HttpServer::Start(const std::string& host, int port,
                                                              HttpHandlers handlers) {
  return Start(host, port, std::move(handlers), HttpServerOptions());
}

absl::StatusOr<std::unique_ptr<HttpServer>> HttpServer::Start(const std::string& host, int port,
                                                              HttpHandlers handlers,
                                                              const HttpServerOptions& options) {
  absl::Status valid = Validate(options);
  if (!valid.ok()) return valid;
  auto impl = std::make_unique<Impl>(std::move(handlers), options);
  absl::StatusOr<int> bound = impl->Listen(host, port);
  if (!bound.ok()) return bound.status();
  std::unique_ptr<HttpServer> server(new HttpServer(std::move(impl)));
  server->port_ = *bound;
  return server;
}

HttpServer::~HttpServer() { Stop(); }

void HttpServer::Stop() {
  if (impl_) impl_->Stop();
}

uint64_t HttpServer::refused_connections() const { return impl_ ? impl_->refused() : 0; }

}  // namespace kvf
