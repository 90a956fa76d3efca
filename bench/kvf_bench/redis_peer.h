// Redis as kvf-bench's in-run peer: a redis-server child on loopback that
// kvf-bench starts and kills itself, and a minimal RESP client (SET and GET
// with binary values, pipelined) so the comparison needs no new library.
//
// The issue names Redis as the store kvfabric's get path is measured against
// (target: >= 4x its GET throughput for 256 KiB blocks, 16 clients).
#ifndef KVF_BENCH_KVF_BENCH_REDIS_PEER_H_
#define KVF_BENCH_KVF_BENCH_REDIS_PEER_H_

#include <sys/types.h>
#include <sys/uio.h>

#include <cstddef>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "tools/launch/spawn.h"

namespace kvf::bench {

// Where redis-server is: $KVF_REDIS_SERVER, then $PATH, then /usr/bin and
// /usr/sbin. NOT_FOUND when there is none.
absl::StatusOr<std::string> FindRedisServer();

struct RedisServerOptions {
  std::string binary;   // empty: FindRedisServer()
  int io_threads = 1;   // redis-server --io-threads (1: Redis's default)
  // The address Redis binds, and the network namespace (a name under
  // /var/run/netns) it runs in; empty: this process's. With a namespace,
  // `host` must be an address of that namespace this process reaches
  // (kvf-bench --netns: the peer host of bench/common/netns_hosts.h).
  std::string host = "127.0.0.1";
  std::string netns;
};

// One redis-server child bound to options.host on a port the kernel picked
// (bind port 0, read it, close, start Redis on it; retried on a collision),
// with persistence off (--save '' --appendonly no). The child dies with kvf-bench
// even on a crash (launch::ChildProcess); the destructor SIGTERMs it, then
// SIGKILLs it if it lingers 5 s.
//
// Thread-compatible.
class RedisServer {
 public:
  // Returns once the server answers PING. NOT_FOUND without a redis-server,
  // UNAVAILABLE when it would not start.
  static absl::StatusOr<std::unique_ptr<RedisServer>> Start(const RedisServerOptions& options);
  ~RedisServer();
  RedisServer(const RedisServer&) = delete;
  RedisServer& operator=(const RedisServer&) = delete;

  const std::string& host() const { return host_; }
  int port() const { return port_; }
  pid_t pid() const { return child_.pid(); }
  // "redis-server 7.0.15" (from INFO), or "" when it could not be asked.
  const std::string& version() const { return version_; }

 private:
  RedisServer(launch::ChildProcess child, std::string host, int port)
      : child_(std::move(child)), host_(std::move(host)), port_(port) {}
  launch::ChildProcess child_;
  std::string host_;
  int port_ = 0;
  std::string version_;
};

// A blocking RESP2 connection over TCP (TCP_NODELAY). Values are sent with
// writev straight from the caller's buffer and read straight into it, so a
// GET costs what any Redis client must pay: the socket copies.
//
// Thread-compatible: one connection per thread.
class RespConnection {
 public:
  static absl::StatusOr<std::unique_ptr<RespConnection>> Connect(const std::string& host, int port);
  ~RespConnection();
  RespConnection(const RespConnection&) = delete;
  RespConnection& operator=(const RespConnection&) = delete;

  // SETs keys[i] to values[i], all pipelined (one write, then the replies).
  absl::Status PipelinedSet(absl::Span<const std::string> keys,
                            absl::Span<const std::pair<const void*, size_t>> values);
  // GETs keys[i] into dst[i] (capacity caps[i]), pipelined. sizes[i] receives
  // the value's length. NOT_FOUND if a key is missing, OUT_OF_RANGE if a value
  // is larger than its buffer.
  absl::Status PipelinedGet(absl::Span<const std::string> keys, absl::Span<void* const> dst,
                            absl::Span<const size_t> caps, std::vector<size_t>* sizes);
  // Any command with small arguments; returns the reply's first line without
  // its type byte, or the bulk string (PING -> "PONG", INFO -> the text).
  absl::StatusOr<std::string> Command(absl::Span<const std::string> args);

 private:
  explicit RespConnection(int fd) : fd_(fd) {}
  absl::Status WriteAll(std::vector<struct iovec>& iov);
  absl::StatusOr<std::string> ReadLine();
  absl::Status ReadExact(void* dst, size_t n);
  absl::Status Skip(size_t n);

  int fd_ = -1;
  std::vector<char> buf_ = std::vector<char>(64 * 1024);
  size_t head_ = 0, tail_ = 0;  // unread bytes are buf_[head_, tail_)
};

}  // namespace kvf::bench

#endif  // KVF_BENCH_KVF_BENCH_REDIS_PEER_H_
