#include "tests/transport/peer_process.h"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/status_macros.h"
#include "kernels/device.h"
#include "transport/transport.h"
#include "xxhash.h"

namespace kvf::testing {
namespace {

absl::Status WriteAll(int fd, const char* p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return absl::UnavailableError(absl::StrCat("write: ", std::strerror(errno)));
    p += w;
    n -= static_cast<size_t>(w);
  }
  return absl::OkStatus();
}

absl::Status ReadAll(int fd, char* p, size_t n, absl::Time deadline) {
  while (n > 0) {
    const int64_t ms = absl::ToInt64Milliseconds(deadline - absl::Now());
    if (ms <= 0) return absl::DeadlineExceededError("peer did not answer in time");
    pollfd pfd{fd, POLLIN, 0};
    int r = poll(&pfd, 1, static_cast<int>(std::min<int64_t>(ms, 1000)));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) continue;
    ssize_t got = read(fd, p, n);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) return absl::UnavailableError("peer closed the pipe");
    p += got;
    n -= static_cast<size_t>(got);
  }
  return absl::OkStatus();
}

uint64_t SplitMix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

}  // namespace

absl::Status WriteMessage(int fd, const Message& m) {
  std::string out;
  auto put32 = [&](uint32_t v) { out.append(reinterpret_cast<const char*>(&v), 4); };
  put32(static_cast<uint32_t>(m.size()));
  for (const std::string& f : m) {
    put32(static_cast<uint32_t>(f.size()));
    out += f;
  }
  return WriteAll(fd, out.data(), out.size());
}

absl::StatusOr<Message> ReadMessage(int fd, absl::Time deadline) {
  uint32_t count = 0;
  KVF_RETURN_IF_ERROR(ReadAll(fd, reinterpret_cast<char*>(&count), 4, deadline));
  Message m(count);
  for (std::string& f : m) {
    uint32_t len = 0;
    KVF_RETURN_IF_ERROR(ReadAll(fd, reinterpret_cast<char*>(&len), 4, deadline));
    f.resize(len);
    KVF_RETURN_IF_ERROR(ReadAll(fd, f.data(), len, deadline));
  }
  return m;
}

void FillPattern(uint64_t seed, uint64_t offset, char* out, size_t n) {
  // Byte p of the region is byte (p % 8) of SplitMix(seed * K + p / 8).
  size_t i = 0;
  while (i < n) {
    const uint64_t pos = offset + i;
    const uint64_t word = SplitMix(seed * 0x100000001b3ull + pos / 8);
    for (uint64_t b = pos % 8; b < 8 && i < n; ++b) out[i++] = static_cast<char>(word >> (8 * b));
  }
}

absl::StatusOr<std::unique_ptr<PeerProcess>> PeerProcess::Start(const std::string& backend,
                                                                const std::string& tls) {
  int fds[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) {
    return absl::InternalError(absl::StrCat("socketpair: ", std::strerror(errno)));
  }
  launch::SpawnOptions options;
  options.argv = {KVF_SELF_PATH, "--gtest_filter=TransportPeer.Serve"};
  options.set_env = {{"KVF_PEER_FD", absl::StrCat(fds[1])},
                     {"KVF_PEER_BACKEND", backend},
                     {"KVF_PEER_TLS", tls}};
  options.keep_fds = {fds[1]};  // the child's end, across exec
  absl::StatusOr<launch::ChildProcess> child = launch::ChildProcess::Spawn(options);
  close(fds[1]);
  if (!child.ok()) {
    close(fds[0]);
    return child.status();
  }
  std::unique_ptr<PeerProcess> p(new PeerProcess());
  p->child_ = *std::move(child);
  p->fd_ = fds[0];
  KVF_ASSIGN_OR_RETURN(Message ready, ReadMessage(p->fd_, absl::Now() + absl::Seconds(30)));
  if (ready.size() != 2 || ready[0] != "ready") {
    return absl::InternalError(absl::StrCat("peer failed to start: ", ready.empty() ? "" : ready.back()));
  }
  p->address_ = ready[1];
  return p;
}

absl::StatusOr<Message> PeerProcess::Request(const Message& m, absl::Duration timeout) {
  if (fd_ < 0) return absl::FailedPreconditionError("peer is dead");
  KVF_RETURN_IF_ERROR(WriteMessage(fd_, m));
  KVF_ASSIGN_OR_RETURN(Message reply, ReadMessage(fd_, absl::Now() + timeout));
  if (reply.empty() || reply[0] != "ok") {
    return absl::InternalError(absl::StrCat("peer: ", reply.size() > 1 ? reply[1] : "bad reply"));
  }
  return reply;
}

void PeerProcess::Kill() {
  child_.Kill();
  if (fd_ >= 0) {
    close(fd_);
    fd_ = -1;
  }
}

// ---- the child ----

void ServePeer(int fd, const std::string& backend, const std::string& tls) {
  TransportConfig config;
  config.name = "peer";
  config.ucx_tls = tls;
  config.progress = ProgressMode::kThread;
  struct Region {
    std::unique_ptr<char[]> bytes;
    std::unique_ptr<MemoryRegion> region;
  };
  std::vector<Region> regions;
  auto parked = std::make_shared<std::atomic<bool>>(false);
  std::unique_ptr<Transport> transport;
  auto reply_error = [&](const absl::Status& s) { (void)WriteMessage(fd, {"error", s.ToString()}); };

  if (backend == "ucx") {
    auto t = CreateTransport(config);
    if (!t.ok()) return reply_error(t.status());
    transport = std::move(*t);
    (void)transport->RegisterHandler(1, [](std::string_view req) -> absl::StatusOr<std::string> {
      return absl::StrCat("echo:", std::string(req));
    });
    (void)transport->RegisterHandler(2, [](std::string_view req) -> absl::StatusOr<std::string> {
      return absl::NotFoundError(absl::StrCat("no such key: ", std::string(req)));
    });
    // 3 appends its message to a log (one-way Notify messages land here);
    // 4 answers with the log.
    auto log = std::make_shared<std::string>();
    (void)transport->RegisterHandler(3, [log](std::string_view req) -> absl::StatusOr<std::string> {
      log->append(req).append(";");
      return std::string("ignored");
    });
    (void)transport->RegisterHandler(4, [log](std::string_view) -> absl::StatusOr<std::string> {
      return *log;
    });
    // 5 parks the progress thread: this peer stops serving (and stops sending)
    // as a hung process would, until it is killed. It breaks the rule that
    // handlers do not block on purpose, and gives up after a minute so that a
    // peer nobody kills still ends. The "parked" command reports it.
    (void)transport->RegisterHandler(5, [parked](std::string_view) -> absl::StatusOr<std::string> {
      parked->store(true);
      absl::SleepFor(absl::Minutes(1));
      parked->store(false);
      return absl::DeadlineExceededError("parked for a minute and nobody killed this peer");
    });
    // 6 (a data handler) sends back, as tagged messages, COUNT blocks of LEN
    // bytes of Pattern(SEED) at offsets i * LEN with tags TAG + i, then
    // answers "sent". Request: "SEED LEN TAG COUNT". The pattern buffer
    // lives until the sends are done.
    (void)transport->RegisterDataHandler(
        6, [](std::string_view req, ReplySends* sends) -> absl::StatusOr<std::string> {
          std::vector<std::string> f = absl::StrSplit(absl::string_view(req.data(), req.size()), ' ');
          uint64_t seed = 0, len = 0, tag = 0, count = 0;
          if (f.size() != 4 || !absl::SimpleAtoi(f[0], &seed) || !absl::SimpleAtoi(f[1], &len) ||
              !absl::SimpleAtoi(f[2], &tag) || !absl::SimpleAtoi(f[3], &count)) {
            return absl::InvalidArgumentError("want SEED LEN TAG COUNT");
          }
          auto bytes = std::make_shared<std::string>(len * count, '\0');
          FillPattern(seed, 0, bytes->data(), bytes->size());
          for (uint64_t i = 0; i < count; ++i) {
            sends->ops.push_back({bytes->data() + i * len, len, 0, tag + i});
          }
          sends->done = [bytes](absl::Status) {};
          return std::string("sent");
        });
    if (!WriteMessage(fd, {"ready", transport->address()}).ok()) return;
  } else {
    if (!WriteMessage(fd, {"ready", ""}).ok()) return;
  }

  while (true) {
    absl::StatusOr<Message> m = ReadMessage(fd, absl::InfiniteFuture());
    if (!m.ok() || m->empty() || (*m)[0] == "quit") break;
    const Message& c = *m;
    // region SIZE SEED -> descriptor INDEX: registers caller memory;
    // alloc SIZE SEED -> descriptor INDEX: AllocateMemory. Both hold Pattern(SEED).
    if ((c[0] == "region" || c[0] == "alloc") && c.size() == 3) {
      uint64_t size = 0, seed = 0;
      (void)absl::SimpleAtoi(c[1], &size);
      (void)absl::SimpleAtoi(c[2], &seed);
      Region r;
      absl::StatusOr<std::unique_ptr<MemoryRegion>> reg;
      if (c[0] == "region") {
        r.bytes.reset(new char[size]);
        FillPattern(seed, 0, r.bytes.get(), size);
        reg = transport->RegisterMemory(r.bytes.get(), size, MemoryType::kHost);
      } else {
        reg = transport->AllocateMemory(size, MemoryType::kHost);
        if (reg.ok()) FillPattern(seed, 0, static_cast<char*>((*reg)->data()), size);
      }
      if (!reg.ok()) {
        reply_error(reg.status());
        continue;
      }
      r.region = std::move(*reg);
      std::string d = r.region->descriptor().Serialize();
      regions.push_back(std::move(r));
      (void)WriteMessage(fd, {"ok", d, absl::StrCat(regions.size() - 1)});
    } else if (c[0] == "trecv" && c.size() == 4) {  // trecv TAG LENGTH SEED -> "same"
      // Receives one tagged message into fresh memory and compares it with
      // Pattern(SEED).
      uint64_t tag = 0, len = 0, seed = 0;
      (void)absl::SimpleAtoi(c[1], &tag);
      (void)absl::SimpleAtoi(c[2], &len);
      (void)absl::SimpleAtoi(c[3], &seed);
      std::string got(len, '\0');
      TransferBatch b;
      b.kind = TransferKind::kRecv;
      b.ops.push_back({got.data(), len, 0, tag});
      auto req = transport->Post(std::move(b));
      absl::Status st = req.ok() ? (*req)->Wait(absl::Now() + absl::Seconds(30)) : req.status();
      if (!st.ok()) {
        reply_error(st);
        continue;
      }
      std::string want(len, '\0');
      FillPattern(seed, 0, want.data(), len);
      (void)WriteMessage(fd, {"ok", got == want ? "same" : "differ"});
    } else if (c[0] == "parked" && c.size() == 1) {  // parked -> "1" once handler 5 runs
      (void)WriteMessage(fd, {"ok", parked->load() ? "1" : "0"});
    } else if (c[0] == "dereg" && c.size() == 2) {
      size_t i = 0;
      (void)absl::SimpleAtoi(c[1], &i);
      if (i < regions.size()) regions[i].region.reset();
      (void)WriteMessage(fd, {"ok"});
    } else if (c[0] == "hash" && c.size() == 4) {  // hash INDEX OFFSET LENGTH
      size_t i = 0, off = 0, len = 0;
      (void)absl::SimpleAtoi(c[1], &i);
      (void)absl::SimpleAtoi(c[2], &off);
      (void)absl::SimpleAtoi(c[3], &len);
      if (i >= regions.size() || regions[i].region == nullptr || off + len > regions[i].region->size()) {
        reply_error(absl::OutOfRangeError("hash: bad range"));
        continue;
      }
      const char* bytes = static_cast<const char*>(regions[i].region->data());
      (void)WriteMessage(fd, {"ok", absl::StrCat(XXH64(bytes + off, len, 0))});
    } else if (c[0] == "nccl_recv" && c.size() == 4) {  // nccl_recv UNIQUE_ID LENGTH SEED
      config.backend = TransportBackend::kNccl;
      config.nccl_unique_id = c[1];
      config.nccl_rank = 1;
      config.nccl_world_size = 2;
      config.cuda_device = 1;  // NCCL refuses two ranks on one GPU
      size_t len = 0;
      uint64_t seed = 0;
      (void)absl::SimpleAtoi(c[2], &len);
      (void)absl::SimpleAtoi(c[3], &seed);
      auto status = [&]() -> absl::StatusOr<std::string> {
        KVF_ASSIGN_OR_RETURN(auto nccl, CreateTransport(config));
        KVF_ASSIGN_OR_RETURN(DeviceBuffer buf, DeviceBuffer::Allocate(len, config.cuda_device));
        TransferBatch b;
        b.kind = TransferKind::kRecv;
        b.peer = 0;
        b.ops.push_back({buf.data(), len, 0});
        KVF_ASSIGN_OR_RETURN(auto req, nccl->Post(std::move(b)));
        KVF_RETURN_IF_ERROR(req->Wait(absl::Now() + absl::Seconds(60)));
        std::string host(len, '\0');
        KVF_RETURN_IF_ERROR(CopyDeviceToHost(host.data(), buf.data(), len));
        std::string want(len, '\0');
        FillPattern(seed, 0, want.data(), len);
        if (host != want) return absl::DataLossError("nccl_recv: bytes differ");
        return std::string("same");
      }();
      if (!status.ok()) {
        reply_error(status.status());
      } else {
        (void)WriteMessage(fd, {"ok", *status});
      }
    } else {
      reply_error(absl::InvalidArgumentError(absl::StrCat("unknown command ", c[0])));
    }
  }
  regions.clear();
}

}  // namespace kvf::testing
