// kvf-transport-bench: one-sided get/put bandwidth and latency, and message
// round trips, through kvf::Transport (UCX backend), next to ucx_perftest run
// in the same invocation on the same transports, with the ratio per row.
//
//   kvf-transport-bench [--tls posix,cma,self] [--sizes 4096,...] [--outstanding 1,8,64]
//                       [--peers 1] [--json FILE] [--no-perftest] [--registered] [--spread]
//
// Peers are child processes of this binary (--serve FD TLS MODE). Each
// allocates one region with AllocateMemory (or, with --registered, registers
// a std::vector: the slow path kept for comparison) and busy-polls progress;
// the client drives progress itself.
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "bench/common/perftest.h"
#include "common/process.h"
#include "tools/launch/spawn.h"
#include "transport/transport.h"

namespace kvf {
namespace {

using bench::Perftest;

constexpr size_t kRegionBytes = 64 << 20;

bool WriteString(int fd, const std::string& s) {
  uint32_t n = static_cast<uint32_t>(s.size());
  return write(fd, &n, 4) == 4 && write(fd, s.data(), n) == static_cast<ssize_t>(n);
}
bool ReadString(int fd, std::string* s) {
  uint32_t n = 0;
  if (read(fd, &n, 4) != 4) return false;
  s->resize(n);
  size_t got = 0;
  while (got < n) {
    ssize_t r = read(fd, s->data() + got, n - got);
    if (r <= 0) return false;
    got += static_cast<size_t>(r);
  }
  return true;
}

// The peer: allocates (AllocateMemory, the default) or registers
// (--registered) one region, busy-polls progress (as ucx_perftest's server
// does; allocated regions need none for RMA, messages do), and exits when the
// parent closes its end of the socket.
int Serve(int fd, const std::string& tls, bool registered) {
  TransportConfig c;
  c.name = "bench-peer";
  c.ucx_tls = tls;
  c.progress = ProgressMode::kCaller;  // busy-polls, as ucx_perftest's server
  auto t = CreateTransport(c);
  if (!t.ok()) return 1;
  std::vector<char> user_memory;
  absl::StatusOr<std::unique_ptr<MemoryRegion>> reg;
  if (registered) {
    user_memory.assign(kRegionBytes, 1);
    reg = (*t)->RegisterMemory(user_memory.data(), user_memory.size(), MemoryType::kHost);
  } else {
    reg = (*t)->AllocateMemory(kRegionBytes, MemoryType::kHost);
    if (reg.ok()) std::memset((*reg)->data(), 1, kRegionBytes);
  }
  if (!reg.ok()) {
    std::fprintf(stderr, "peer: %s\n", reg.status().ToString().c_str());
    return 1;
  }
  (void)(*t)->RegisterHandler(1, [](std::string_view r) -> absl::StatusOr<std::string> {
    return std::string(r);
  });
  if (!WriteString(fd, (*t)->address()) || !WriteString(fd, (*reg)->descriptor().Serialize())) return 1;
  for (uint64_t i = 0;; ++i) {
    (*t)->Progress();
    if ((i & 1023) == 0) {
      pollfd p{fd, POLLIN, 0};
      if (poll(&p, 1, 0) != 0) break;  // the parent closed its end
    }
  }
  reg->reset();
  return 0;
}

struct Peer {
  launch::ChildProcess child;  // killed if the run ends early
  int fd = -1;
  PeerId id = 0;
  std::unique_ptr<RemoteRegion> remote;
};

struct Row {
  std::string op;
  size_t size = 0;
  int outstanding = 1;
  int peers = 1;
  double mbps = 0, lat_us = 0, ref = 0;  // ref: ucx_perftest's number (MB/s or us)
  std::string ref_test;
};

// Keeps `outstanding` single-op batches in flight over `peers`; returns
// {MB/s, average microseconds per op}.
// Like ucx_perftest, every op uses the same local and remote bytes unless
// `spread`, which rotates over 64 slots (16 MiB at 256 KiB: out of cache).
std::pair<double, double> RunRma(Transport& t, std::vector<Peer>& peers, TransferKind kind,
                                 size_t size, int outstanding, std::vector<char>& local,
                                 bool spread) {
  const size_t total = std::max<size_t>(200, std::min<size_t>(20000, (512u << 20) / size));
  const size_t slots = kRegionBytes / size;
  std::deque<std::unique_ptr<TransferRequest>> inflight;
  size_t posted = 0, done = 0;
  auto post = [&] {
    TransferBatch b;
    b.kind = kind;
    b.remote = peers[posted % peers.size()].remote.get();
    const size_t slot = spread ? posted % std::min<size_t>(slots, 64) : 0;
    b.ops = {{local.data() + slot * size, size, slot * size}};
    auto r = t.Post(std::move(b));
    if (!r.ok()) {
      std::fprintf(stderr, "post: %s\n", r.status().ToString().c_str());
      std::exit(1);
    }
    inflight.push_back(std::move(*r));
    ++posted;
  };
  const absl::Time start = absl::Now();
  while (done < total) {
    while (posted < total && inflight.size() < static_cast<size_t>(outstanding)) post();
    // Requests complete in order on one connection; poll the oldest.
    TransferState s = inflight.front()->Poll();
    if (s == TransferState::kInProgress) continue;
    if (s != TransferState::kDone) {
      std::fprintf(stderr, "transfer: %s\n", inflight.front()->status().ToString().c_str());
      std::exit(1);
    }
    inflight.pop_front();
    ++done;
  }
  const double secs = absl::ToDoubleSeconds(absl::Now() - start);
  return {static_cast<double>(total) * size / secs / 1e6, secs * 1e6 / total * outstanding};
}

template <typename T>
std::vector<T> ParseList(const std::string& s) {
  std::vector<T> out;
  for (absl::string_view p : absl::StrSplit(s, ',')) {
    T v{};
    if (absl::SimpleAtoi(p, &v)) out.push_back(v);
  }
  return out;
}

int Main(int argc, char** argv) {
  std::string tls = "posix,cma,self", json;
  std::vector<size_t> sizes = {4096, 65536, 262144, 1 << 20, 4 << 20};
  std::vector<int> outstanding = {1, 64};
  int npeers = 1;
  bool perftest = true;
  bool registered = false;
  bool spread = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&] { return i + 1 < argc ? std::string(argv[++i]) : std::string(); };
    if (a == "--serve") {
      const int fd = std::atoi(next().c_str());
      const std::string serve_tls = next();
      return Serve(fd, serve_tls, next() == "registered");
    }
    if (a == "--tls") tls = next();
    else if (a == "--sizes") sizes = ParseList<size_t>(next());
    else if (a == "--outstanding") outstanding = ParseList<int>(next());
    else if (a == "--peers") npeers = std::atoi(next().c_str());
    else if (a == "--json") json = next();
    else if (a == "--no-perftest") perftest = false;
    else if (a == "--registered") registered = true;
    else if (a == "--spread") spread = true;
    else {
      std::fprintf(stderr, "usage: %s [--tls T] [--sizes a,b] [--outstanding a,b] [--peers N] [--json F] [--no-perftest] [--registered] [--spread]\n", argv[0]);
      return 2;
    }
  }
  TransportConfig c;
  c.name = "bench";
  c.ucx_tls = tls;
  c.progress = ProgressMode::kCaller;
  auto t = CreateTransport(c);
  if (!t.ok()) {
    std::fprintf(stderr, "%s\n", t.status().ToString().c_str());
    return 1;
  }
  std::vector<Peer> peers(static_cast<size_t>(npeers));
  for (Peer& p : peers) {
    int fds[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) return 1;
    launch::SpawnOptions spawn;
    spawn.argv = {"/proc/self/exe", "--serve", std::to_string(fds[1]), tls,
                  registered ? "registered" : "allocated"};
    spawn.keep_fds = {fds[1]};
    auto child = launch::ChildProcess::Spawn(spawn);
    close(fds[1]);
    if (!child.ok()) {
      std::fprintf(stderr, "%s\n", child.status().ToString().c_str());
      return 1;
    }
    p.child = *std::move(child);
    p.fd = fds[0];
    std::string address, descriptor;
    if (!ReadString(p.fd, &address) || !ReadString(p.fd, &descriptor)) return 1;
    auto id = (*t)->Connect(address);
    auto d = RemoteDescriptor::Parse(descriptor);
    if (!id.ok() || !d.ok()) return 1;
    p.id = *id;
    auto remote = (*t)->ImportRemote(p.id, *d, absl::Now() + absl::Seconds(10));
    if (!remote.ok()) {
      std::fprintf(stderr, "%s\n", remote.status().ToString().c_str());
      return 1;
    }
    p.remote = std::move(*remote);
  }
  std::vector<char> local(kRegionBytes, 2);
  std::vector<Row> rows;
  std::printf("kvf-transport-bench: %s, %d peer(s), peer memory %s, %s\n",
              (*t)->capabilities().fabric.c_str(), npeers,
              registered ? "registered (RegisterMemory)" : "allocated (AllocateMemory)",
              spread ? "ops spread over 64 slots" : "every op on the same bytes (as ucx_perftest)");
  for (TransferKind kind : {TransferKind::kGet, TransferKind::kPut}) {
    for (size_t size : sizes) {
      for (int out : outstanding) {
        Row r;
        r.op = kind == TransferKind::kGet ? "get" : "put";
        r.size = size;
        r.outstanding = out;
        r.peers = npeers;
        std::tie(r.mbps, r.lat_us) = RunRma(**t, peers, kind, size, out, local, spread);
        r.ref_test = kind == TransferKind::kGet ? "ucp_get" : "ucp_put_bw";
        if (perftest && npeers == 1) {
          const int iters = static_cast<int>(std::max<size_t>(200, std::min<size_t>(20000, (512u << 20) / size)));
          r.ref = Perftest(tls, r.ref_test, size, out, iters).first;
        }
        rows.push_back(r);
      }
    }
  }
  // Small-message round trip: Call() vs twice tag_lat's one-way latency.
  for (size_t size : {size_t{8}, size_t{256}}) {
    const std::string msg(size, 'x');
    const int n = 20000;
    const absl::Time start = absl::Now();
    for (int i = 0; i < n; ++i) {
      auto resp = (*t)->Call(peers[0].id, 1, msg, absl::Now() + absl::Seconds(5));
      if (!resp.ok()) return 1;
    }
    Row r;
    r.op = "call rtt";
    r.size = size;
    r.outstanding = 1;
    r.peers = npeers;
    r.lat_us = absl::ToDoubleMicroseconds(absl::Now() - start) / n;
    r.ref_test = "2 x tag_lat";
    if (perftest) r.ref = 2 * Perftest(tls, "tag_lat", size, 1, n).second;
    rows.push_back(r);
  }
  std::printf("\n%-9s %9s %4s %10s %10s %12s %12s %7s\n", "op", "size", "outs", "MB/s", "lat us",
              "ucx_perftest", "test", "ratio");
  for (const Row& r : rows) {
    const bool latency = r.op == "call rtt";
    const double ours = latency ? r.lat_us : r.mbps;
    // For latency lower is better: ratio = ours/theirs, target <= 1.5.
    const double ratio = r.ref > 0 ? ours / r.ref : 0;
    std::printf("%-9s %9zu %4d %10.0f %10.2f %12.2f %12s %7.2f\n", r.op.c_str(), r.size,
                r.outstanding, latency ? 0.0 : r.mbps, r.lat_us, r.ref, r.ref_test.c_str(), ratio);
  }
  // Two-sided bandwidth for reference (the UCX backend has no two-sided bulk path).
  if (perftest) {
    for (size_t size : sizes) {
      std::printf("reference tag_bw %9zu: %.0f MB/s\n", size,
                  Perftest(tls, "tag_bw", size, 1, 2000).first);
    }
  }
  if (!json.empty()) {
    std::ofstream f(json);
    f << "{\"fabric\": \"" << (*t)->capabilities().fabric << "\", \"rows\": [";
    for (size_t i = 0; i < rows.size(); ++i) {
      const Row& r = rows[i];
      f << (i ? "," : "") << "\n {\"op\": \"" << r.op << "\", \"size\": " << r.size
        << ", \"outstanding\": " << r.outstanding << ", \"peers\": " << r.peers
        << ", \"mbps\": " << r.mbps << ", \"latency_us\": " << r.lat_us << ", \"reference_test\": \""
        << r.ref_test << "\", \"reference\": " << r.ref << "}";
    }
    f << "\n]}\n";
  }
  for (Peer& p : peers) {
    p.remote.reset();
    close(p.fd);  // the peer exits when its end closes
    p.child.Wait();
  }
  return 0;
}

}  // namespace
}  // namespace kvf

int main(int argc, char** argv) {
  kvf::ConfigureProcessForServing();
  return kvf::Main(argc, argv);
}
