#include "bench/kvf_bench/redis_peer.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "common/status_macros.h"

namespace kvf::bench {
namespace {

absl::Status Errno(const std::string& what) {
  return absl::UnavailableError(absl::StrCat(what, ": ", std::strerror(errno)));
}

bool Executable(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) && access(path.c_str(), X_OK) == 0;
}

// A port the kernel considers free right now (bind port 0, read it, close).
absl::StatusOr<int> FreePort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return Errno("socket");
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(a);
  if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    const absl::Status s = Errno("bind 127.0.0.1:0");
    close(fd);
    return s;
  }
  close(fd);
  return ntohs(a.sin_port);
}

}  // namespace

absl::StatusOr<std::string> FindRedisServer() {
  if (const char* env = std::getenv("KVF_REDIS_SERVER"); env != nullptr && *env != '\0') {
    if (Executable(env)) return std::string(env);
    return absl::NotFoundError(absl::StrCat("$KVF_REDIS_SERVER=", env, " is not an executable"));
  }
  std::vector<std::string> dirs;
  if (const char* path = std::getenv("PATH"); path != nullptr) {
    for (absl::string_view d : absl::StrSplit(path, ':', absl::SkipEmpty())) dirs.emplace_back(d);
  }
  dirs.push_back("/usr/bin");
  dirs.push_back("/usr/sbin");
  for (const std::string& d : dirs) {
    const std::string p = absl::StrCat(d, "/redis-server");
    if (Executable(p)) return p;
  }
  return absl::NotFoundError("redis-server not found ($PATH, /usr/bin, /usr/sbin, $KVF_REDIS_SERVER)");
}

absl::StatusOr<std::unique_ptr<RedisServer>> RedisServer::Start(const RedisServerOptions& options) {
  std::string binary = options.binary;
  if (binary.empty()) {
    KVF_ASSIGN_OR_RETURN(binary, FindRedisServer());
  }
  absl::Status last = absl::UnavailableError("redis-server did not start");
  for (int attempt = 0; attempt < 5; ++attempt) {
    // Free here; in another namespace (nothing else listens there) a clash
    // is retried like any other.
    KVF_ASSIGN_OR_RETURN(const int port, FreePort());
    const std::vector<std::string> args = {
        binary, "--port", std::to_string(port), "--bind", options.host, "--save", "",
        "--appendonly", "no", "--protected-mode", "no", "--daemonize", "no",
        "--io-threads", std::to_string(std::max(1, options.io_threads)), "--loglevel", "warning",
        "--logfile", ""};
    launch::SpawnOptions spawn;
    spawn.argv = args;
    spawn.in = spawn.out = spawn.err = launch::Stdio::Null();
    spawn.netns = options.netns;
    KVF_ASSIGN_OR_RETURN(launch::ChildProcess child, launch::ChildProcess::Spawn(spawn));
    std::unique_ptr<RedisServer> server(new RedisServer(std::move(child), options.host, port));
    // Poll until it answers PING, or it exits (the port was taken meanwhile).
    const absl::Time deadline = absl::Now() + absl::Seconds(10);
    bool exited = false;
    while (absl::Now() < deadline) {
      if (std::optional<launch::ExitStatus> exit = server->child_.Poll()) {
        exited = true;
        last = absl::UnavailableError(
            absl::StrCat("redis-server on port ", port, " ", exit->ToString()));
        break;
      }
      auto conn = RespConnection::Connect(options.host, port);
      if (conn.ok()) {
        const std::vector<std::string> ping = {"PING"};
        auto pong = (*conn)->Command(ping);
        if (pong.ok() && *pong == "PONG") {
          const std::vector<std::string> info = {"INFO", "server"};
          if (auto text = (*conn)->Command(info); text.ok()) {
            const size_t at = text->find("redis_version:");
            if (at != std::string::npos) {
              const size_t end = text->find_first_of("\r\n", at);
              server->version_ = absl::StrCat("redis-server ", text->substr(at + 14, end - at - 14));
            }
          }
          return server;
        }
      }
      absl::SleepFor(absl::Milliseconds(20));
    }
    if (!exited) return absl::UnavailableError("redis-server did not answer PING within 10 s");
  }
  return last;
}

RedisServer::~RedisServer() { child_.Stop(absl::Seconds(5)); }

absl::StatusOr<std::unique_ptr<RespConnection>> RespConnection::Connect(const std::string& host,
                                                                        int port) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return Errno("socket");
  std::unique_ptr<RespConnection> c(new RespConnection(fd));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  if (inet_pton(AF_INET, host.c_str(), &a.sin_addr) != 1) {
    return absl::InvalidArgumentError(absl::StrCat("not an IPv4 address: ", host));
  }
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
    return Errno(absl::StrCat("connect ", host, ":", port));
  }
  const int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  return c;
}

RespConnection::~RespConnection() {
  if (fd_ >= 0) close(fd_);
}

absl::Status RespConnection::WriteAll(std::vector<struct iovec>& iov) {
  size_t i = 0;
  while (i < iov.size()) {
    const int n = static_cast<int>(std::min<size_t>(iov.size() - i, IOV_MAX));
    const ssize_t w = writev(fd_, &iov[i], n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return Errno("redis writev");
    }
    size_t left = static_cast<size_t>(w);
    while (i < iov.size() && left >= iov[i].iov_len) left -= iov[i++].iov_len;
    if (left > 0) {
      iov[i].iov_base = static_cast<char*>(iov[i].iov_base) + left;
      iov[i].iov_len -= left;
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> RespConnection::ReadLine() {
  while (true) {
    const char* begin = buf_.data() + head_;
    const char* end = buf_.data() + tail_;
    const char* nl = static_cast<const char*>(memchr(begin, '\n', end - begin));
    if (nl != nullptr) {
      std::string line(begin, nl > begin && nl[-1] == '\r' ? nl - 1 : nl);
      head_ = nl + 1 - buf_.data();
      return line;
    }
    if (head_ > 0) {
      std::memmove(buf_.data(), begin, end - begin);
      tail_ -= head_;
      head_ = 0;
    }
    if (tail_ == buf_.size()) buf_.resize(buf_.size() * 2);
    const ssize_t r = recv(fd_, buf_.data() + tail_, buf_.size() - tail_, 0);
    if (r == 0) return absl::UnavailableError("redis closed the connection");
    if (r < 0) {
      if (errno == EINTR) continue;
      return Errno("redis recv");
    }
    tail_ += r;
  }
}

absl::Status RespConnection::ReadExact(void* dst, size_t n) {
  char* out = static_cast<char*>(dst);
  const size_t buffered = std::min(n, tail_ - head_);
  std::memcpy(out, buf_.data() + head_, buffered);
  head_ += buffered;
  size_t got = buffered;
  while (got < n) {  // the rest straight from the socket into the caller's buffer
    const ssize_t r = recv(fd_, out + got, n - got, 0);
    if (r == 0) return absl::UnavailableError("redis closed the connection");
    if (r < 0) {
      if (errno == EINTR) continue;
      return Errno("redis recv");
    }
    got += r;
  }
  return absl::OkStatus();
}

absl::Status RespConnection::Skip(size_t n) {
  char scratch[4096];
  while (n > 0) {
    const size_t k = std::min(n, sizeof(scratch));
    KVF_RETURN_IF_ERROR(ReadExact(scratch, k));
    n -= k;
  }
  return absl::OkStatus();
}

absl::Status RespConnection::PipelinedSet(absl::Span<const std::string> keys,
                                          absl::Span<const std::pair<const void*, size_t>> values) {
  std::vector<std::string> heads(keys.size());
  std::vector<struct iovec> iov;
  static const char kCrlf[] = "\r\n";
  for (size_t i = 0; i < keys.size(); ++i) {
    heads[i] = absl::StrCat("*3\r\n$3\r\nSET\r\n$", keys[i].size(), "\r\n", keys[i], "\r\n$",
                            values[i].second, "\r\n");
  }
  for (size_t i = 0; i < keys.size(); ++i) {
    iov.push_back({heads[i].data(), heads[i].size()});
    iov.push_back({const_cast<void*>(values[i].first), values[i].second});
    iov.push_back({const_cast<char*>(kCrlf), 2});
  }
  KVF_RETURN_IF_ERROR(WriteAll(iov));
  absl::Status first = absl::OkStatus();
  for (size_t i = 0; i < keys.size(); ++i) {
    KVF_ASSIGN_OR_RETURN(std::string line, ReadLine());
    if (line != "+OK" && first.ok()) first = absl::InternalError(absl::StrCat("redis SET: ", line));
  }
  return first;
}

absl::Status RespConnection::PipelinedGet(absl::Span<const std::string> keys,
                                          absl::Span<void* const> dst, absl::Span<const size_t> caps,
                                          std::vector<size_t>* sizes) {
  std::string req;
  for (const std::string& k : keys) absl::StrAppend(&req, "*2\r\n$3\r\nGET\r\n$", k.size(), "\r\n", k, "\r\n");
  std::vector<struct iovec> iov = {{req.data(), req.size()}};
  KVF_RETURN_IF_ERROR(WriteAll(iov));
  sizes->assign(keys.size(), 0);
  absl::Status first = absl::OkStatus();
  for (size_t i = 0; i < keys.size(); ++i) {
    KVF_ASSIGN_OR_RETURN(std::string line, ReadLine());
    int64_t len = -1;
    if (line.empty() || line[0] != '$' || !absl::SimpleAtoi(line.substr(1), &len)) {
      if (first.ok()) first = absl::InternalError(absl::StrCat("redis GET: ", line));
      continue;
    }
    if (len < 0) {
      if (first.ok()) first = absl::NotFoundError(absl::StrCat("redis GET ", keys[i], ": nil"));
      continue;
    }
    if (static_cast<size_t>(len) > caps[i]) {
      KVF_RETURN_IF_ERROR(Skip(len + 2));
      if (first.ok()) first = absl::OutOfRangeError("redis GET: value larger than the buffer");
      continue;
    }
    KVF_RETURN_IF_ERROR(ReadExact(dst[i], len));
    KVF_RETURN_IF_ERROR(Skip(2));
    (*sizes)[i] = len;
  }
  return first;
}

absl::StatusOr<std::string> RespConnection::Command(absl::Span<const std::string> args) {
  std::string req = absl::StrCat("*", args.size(), "\r\n");
  for (const std::string& a : args) absl::StrAppend(&req, "$", a.size(), "\r\n", a, "\r\n");
  std::vector<struct iovec> iov = {{req.data(), req.size()}};
  KVF_RETURN_IF_ERROR(WriteAll(iov));
  KVF_ASSIGN_OR_RETURN(std::string line, ReadLine());
  if (line.empty()) return absl::InternalError("redis: empty reply");
  if (line[0] == '-') return absl::InternalError(absl::StrCat("redis: ", line.substr(1)));
  if (line[0] == '$') {
    int64_t len = -1;
    if (!absl::SimpleAtoi(line.substr(1), &len)) return absl::InternalError("redis: bad bulk length");
    if (len < 0) return absl::NotFoundError("redis: nil");
    std::string out(len, '\0');
    KVF_RETURN_IF_ERROR(ReadExact(out.data(), len));
    KVF_RETURN_IF_ERROR(Skip(2));
    return out;
  }
  return line.substr(1);
}

}  // namespace kvf::bench
