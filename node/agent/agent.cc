#include "node/agent/agent.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <optional>
#include <pthread.h>
#include <thread>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "common/http_server.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server.h"
#include "grpcpp/server_builder.h"
#include "kernels/device.h"
#include "node/agent/agent_metrics.h"
#include "node/agent/coordinator_link.h"
#include "node/agent/data_plane.h"
#include "node/agent/memory_pressure.h"
#include "node/agent/migrator.h"
#include "node/agent/peer_links.h"
#include "node/agent/replicator.h"
#include "proto/agent_control.grpc.pb.h"
#include "proto/auth.h"
#include "proto/channel.h"
#include "proto/cluster_map_convert.h"
#include "transport/net_devices.h"
#include "transport/transport.h"

namespace kvf {
namespace {

// Tries of one migration report (backing off 0.2, 0.4, 0.8 s) before it is
// dropped: enough for a coordinator busy for a moment, short enough that an
// agent stopping while its coordinator is gone is not held up.
constexpr int kMigrationReportAttempts = 4;

absl::Status SplitHostPort(const std::string& hp, std::string* host, int* port) {
  const size_t colon = hp.rfind(':');
  if (colon == std::string::npos || !absl::SimpleAtoi(hp.substr(colon + 1), port) || *port < 0 ||
      *port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat("'", hp, "' is not host:port"));
  }
  *host = hp.substr(0, colon);
  return absl::OkStatus();
}

// UCX_NET_DEVICES for the data plane: the interface(s) owning
// data_listen_host (default: the host of `listen`), so UCX's TCP transport
// listens there only. "" (UCX's choice) when the environment sets
// UCX_NET_DEVICES: an operator's explicit setting wins.
// `host_override`, when set, replaces data_listen_host (the tenants' worker).
// A GPU tier asked for (device_bytes > 0) must be there: the operator gets an
// error at start, not an agent that quietly runs host-only.
absl::Status CheckDeviceTier(const AgentOptions& options) {
  if (options.device_bytes == 0) {
    if (options.device >= 0) {
      KVF_LOG(INFO) << "agent: --device=" << options.device
                    << " without --device_bytes: no GPU tier";
    }
    return absl::OkStatus();
  }
  if (options.device < 0) {
    return absl::InvalidArgumentError("--device_bytes needs --device=N (a CUDA device ordinal)");
  }
  if (!CudaCompiledIn()) {
    return absl::FailedPreconditionError(
        "--device_bytes: this kvf-agent was built without CUDA; drop --device_bytes to run "
        "host-only");
  }
  const DeviceInventory& devices = Devices();
  if (options.device >= devices.count) {
    return absl::FailedPreconditionError(absl::StrCat(
        "--device=", options.device, ": ",
        devices.count == 0 ? absl::StrCat("no usable CUDA device (", devices.reason, ")")
                           : absl::StrCat("only ", devices.count, " CUDA devices"),
        "; drop --device_bytes to run host-only"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> DataNetDevices(const AgentOptions& options,
                                           const std::string& host_override = "") {
  if (const char* env = std::getenv("UCX_NET_DEVICES"); env != nullptr && *env != '\0') {
    KVF_LOG(INFO) << "agent: UCX network devices from $UCX_NET_DEVICES (" << env << ")";
    return std::string();
  }
  std::string host = host_override.empty() ? options.data_listen_host : host_override;
  if (host.empty()) {
    int port = 0;
    KVF_RETURN_IF_ERROR(SplitHostPort(options.listen, &host, &port));
  }
  absl::StatusOr<std::string> devices = NetDevicesForHost(host);
  if (!devices.ok()) {
    return absl::Status(devices.status().code(),
                        absl::StrCat("data listen host ", host, ": ", devices.status().message()));
  }
  KVF_LOG(INFO) << "agent: UCX network devices for " << host << ": "
                << (devices->empty() ? "all" : *devices);
  return devices;
}

// Populates the arena on a thread of its own (`kvf-prefault`) so its pages
// exist and are mapped before puts write them (docs/agent.md, "Arena
// prefault"): MADV_HUGEPAGE (best effort), then MADV_POPULATE_WRITE a chunk at
// a time. That faults pages in as a write would but writes nothing, so the
// agent serves (and blocks land in the arena) while it runs.
// Thread-safety: progress() from any thread; Stop() and the destructor from
// one.
class ArenaPrefaulter {
 public:
  // Starts at once. [data, data + size) must stay mapped until Stop().
  ArenaPrefaulter(void* data, size_t size)
      : data_(static_cast<char*>(data)), size_(size), start_(absl::Now()) {
    thread_ = std::thread([this] {
      pthread_setname_np(pthread_self(), "kvf-prefault");
      Run();
    });
  }
  ~ArenaPrefaulter() { Stop(); }
  ArenaPrefaulter(const ArenaPrefaulter&) = delete;
  ArenaPrefaulter& operator=(const ArenaPrefaulter&) = delete;

  // Returns within one chunk's madvise (~20 ms for new 4 KiB pages, ~0.1 s
  // where the kernel compacts memory for huge pages).
  void Stop() {
    stop_.store(true, std::memory_order_relaxed);
    if (thread_.joinable()) thread_.join();
  }
  ArenaPrefaultProgress progress() const {
    ArenaPrefaultProgress p;
    p.running = running_.load(std::memory_order_acquire);
    p.bytes = bytes_.load(std::memory_order_relaxed);
    p.seconds = p.running ? absl::ToDoubleSeconds(absl::Now() - start_)
                          : absl::ToDoubleSeconds(absl::Nanoseconds(nanos_.load()));
    return p;
  }

 private:
  // 16 MiB: madvise holds the mm's lock (shared) for the whole call, so a
  // chunk bounds how long an mmap elsewhere in the process waits (~20 ms at
  // 1.2 s/GiB for new pages), and how long Stop() waits.
  static constexpr size_t kChunk = size_t{16} << 20;

  void Run() {
#ifndef MADV_POPULATE_WRITE
    constexpr int MADV_POPULATE_WRITE = 23;  // Linux 5.14; older headers lack it
#endif
    const uintptr_t page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
    const uintptr_t base = reinterpret_cast<uintptr_t>(data_);
    char* const begin = reinterpret_cast<char*>((base + page - 1) & ~(page - 1));
    char* const end = reinterpret_cast<char*>((base + size_) & ~(page - 1));
#ifdef MADV_HUGEPAGE
    // Matters only for pages the populate below allocates, in memory that
    // may use huge pages on request (anonymous memory under THP "madvise",
    // shared memory under huge=advise). UCX's posix segments are allocated
    // (written) before this, so their page size is the tmpfs mount's huge=
    // (docs/operating.md, "Arena memory"); there it changes nothing.
    if (end > begin && madvise(begin, end - begin, MADV_HUGEPAGE) != 0) {
      KVF_LOG(INFO) << "agent: madvise(MADV_HUGEPAGE) on the arena: " << std::strerror(errno)
                    << "; 4 KiB pages";
    }
#endif
    bool complete = true;
    for (char* p = begin; p < end;) {
      if (stop_.load(std::memory_order_relaxed)) {
        complete = false;
        break;
      }
      const size_t n = std::min<size_t>(kChunk, end - p);
      if (madvise(p, n, MADV_POPULATE_WRITE) != 0) {
        const int error = errno;
        if (error == EINTR || error == EAGAIN) continue;  // try the chunk again
        if (error == EINVAL) {
          KVF_LOG(WARNING) << "agent: this kernel has no MADV_POPULATE_WRITE (Linux 5.14+); the "
                              "arena is not prefaulted and puts pay for first touches";
        } else {
          KVF_LOG(WARNING) << "agent: arena prefault stopped after " << bytes_.load()
                           << " bytes: madvise(MADV_POPULATE_WRITE): " << std::strerror(error);
        }
        complete = false;
        break;
      }
      p += n;
      bytes_.fetch_add(n, std::memory_order_relaxed);
    }
    const absl::Duration took = absl::Now() - start_;
    nanos_.store(absl::ToInt64Nanoseconds(took));
    if (complete) {
      const double bytes = static_cast<double>(bytes_.load());
      KVF_LOG(INFO) << "arena prefaulted: "
                    << (bytes >= (1 << 30) ? absl::StrFormat("%.2f GiB", bytes / (1 << 30))
                                           : absl::StrFormat("%.0f MiB", bytes / (1 << 20)))
                    << absl::StrFormat(" in %.2f s", absl::ToDoubleSeconds(took));
    }
    running_.store(false, std::memory_order_release);
  }

  char* const data_;
  const size_t size_;
  const absl::Time start_;
  std::atomic<uint64_t> bytes_{0};
  std::atomic<int64_t> nanos_{0};  // in all, once ended
  std::atomic<bool> running_{true};
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

// AgentControl: the coordinator hands this agent migration tasks and the
// global eviction cutoff.
class ControlService final : public proto::AgentControl::Service {
 public:
  ControlService(std::vector<std::string> tokens, Migrator* migrator, ShardStore* store)
      : tokens_(std::move(tokens)), migrator_(migrator), store_(store) {}

  grpc::Status AssignMigration(grpc::ServerContext* ctx, const proto::AssignMigrationRequest* req,
                               proto::AssignMigrationResponse* resp) override {
    if (!HasClusterToken(*ctx, tokens_)) return Unauthenticated();
    std::vector<proto::MigrationTask> tasks(req->tasks().begin(), req->tasks().end());
    resp->set_accepted(static_cast<uint32_t>(migrator_->Assign(std::move(tasks))));
    return grpc::Status::OK;
  }

  grpc::Status ApplyEvictionCutoff(grpc::ServerContext* ctx,
                                   const proto::EvictionCutoffRequest* req,
                                   proto::EvictionCutoffResponse* resp) override {
    if (!HasClusterToken(*ctx, tokens_)) return Unauthenticated();
    const uint64_t before = store_->Stats().evicted_bytes;
    store_->EvictOlderThan(absl::Milliseconds(req->cutoff_ms()), /*keep_bytes=*/0);
    resp->set_evicted_bytes(store_->Stats().evicted_bytes - before);
    return grpc::Status::OK;
  }

 private:
  static grpc::Status Unauthenticated() {
    return grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "missing or wrong cluster token");
  }
  const std::vector<std::string> tokens_;
  Migrator* const migrator_;
  ShardStore* const store_;
};

class AgentImpl final : public Agent {
 public:
  explicit AgentImpl(const AgentOptions& options) : options_(options) {}
  ~AgentImpl() override { Shutdown(false); }

  absl::Status Init();
  void Shutdown(bool leave) override;
  NodeId node_id() const override { return data_plane_ ? data_plane_->self() : kNoNode; }
  std::string control_address() const override { return control_address_; }
  std::string http_address() const override { return http_address_; }

 private:
  // Joins as node `id` (kNoNode: a new node) and installs the map.
  absl::Status JoinCluster(NodeId id);
  // Back after being declared down, or forgotten by a coordinator that lost
  // its state: drops what may be stale, then re-joins (as a new node if the
  // coordinator does not know this id).
  void Rejoin(const absl::Status& why);
  void OnMap(const ClusterMap& map);
  // Runs `step` every heartbeat period until Shutdown.
  void Every(const std::function<void()>& step);
  void Heartbeat();
  // Lease sweep, the eviction cutoff the last heartbeat brought, and
  // CollectForeignBlocks: work that may scan the store, kept off the
  // heartbeat thread so a long scan never costs the node its lease.
  void Maintain();
  // Drops blocks this node no longer owns once no migration out of it runs.
  void CollectForeignBlocks();
  // One memory-pressure check: shrinks or grows the store's memory limit.
  void AdaptToMemoryPressure();

  const AgentOptions options_;
  std::unique_ptr<Transport> transport_;
  // The worker tenants' clients use: messages only (no one-sided access).
  std::unique_ptr<Transport> tenant_transport_;
  std::unique_ptr<MemoryRegion> arena_;
  std::unique_ptr<ArenaPrefaulter> prefaulter_;  // null when off; stopped before arena_ goes
  std::unique_ptr<ShardStore> store_;
  std::unique_ptr<MemoryPressure> pressure_;  // null when off
  std::unique_ptr<DataPlane> data_plane_;
  std::unique_ptr<PeerLinks> peers_;
  std::unique_ptr<Replicator> replicator_;
  std::unique_ptr<CoordinatorLink> link_;
  std::unique_ptr<Migrator> migrator_;
  std::unique_ptr<ControlService> control_;
  std::unique_ptr<grpc::Server> grpc_server_;
  std::unique_ptr<HttpServer> http_;
  std::string control_address_;
  std::string http_address_;
  bool link_watching_ = false;

  absl::Mutex mu_;
  absl::Duration heartbeat_ ABSL_GUARDED_BY(mu_) = absl::Seconds(1);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t collected_epoch_ ABSL_GUARDED_BY(mu_) = 0;
  struct EvictionCutoff {
    absl::Duration age;
    uint64_t keep_bytes = 0;
  };
  std::optional<EvictionCutoff> eviction_cutoff_ ABSL_GUARDED_BY(mu_);  // not yet applied
  void ApplyEvictionCutoff(const EvictionCutoff& cutoff);
  std::thread heartbeats_;
  std::thread maintenance_;
  std::atomic<bool> shut_down_{false};
};

absl::Status AgentImpl::Init() {
  if (options_.coordinator.empty()) return absl::InvalidArgumentError("--coordinator is required");
  if (options_.token.empty()) return absl::InvalidArgumentError("a cluster token is required");
  KVF_RETURN_IF_ERROR(CheckDeviceTier(options_));
  // TLS files are checked before anything starts.
  KVF_ASSIGN_OR_RETURN(std::shared_ptr<grpc::ChannelCredentials> coordinator_credentials,
                       ChannelCredentialsFor(options_.tls_ca));
  KVF_ASSIGN_OR_RETURN(std::shared_ptr<grpc::ServerCredentials> control_credentials,
                       ServerCredentialsFor(options_.tls_cert, options_.tls_key));
  TransportConfig tc;
  tc.name = "agent";
  tc.progress = ProgressMode::kThread;
  tc.ucx_tls = options_.ucx_tls;
  KVF_ASSIGN_OR_RETURN(tc.net_devices, DataNetDevices(options_));
  KVF_ASSIGN_OR_RETURN(transport_, CreateTransport(tc));
  // Tenants reach a second worker without one-sided access, so that UCX's
  // emulated one-sided handlers (which serve any address) are not there at
  // all (docs/security.md). Same interfaces as the data plane.
  TransportConfig tenant_tc = tc;
  tenant_tc.name = "tenants";
  tenant_tc.one_sided = false;
  if (!options_.tenant_listen_host.empty()) {
    KVF_ASSIGN_OR_RETURN(tenant_tc.net_devices,
                         DataNetDevices(options_, options_.tenant_listen_host));
  }
  KVF_ASSIGN_OR_RETURN(tenant_transport_, CreateTransport(tenant_tc));
  // Whole MiB: the slab allocator carves the arena into slabs of MiB sizes.
  const uint64_t host_bytes = options_.host_bytes / (1 << 20) * (1 << 20);
  if (host_bytes < (uint64_t{16} << 20)) {
    return absl::InvalidArgumentError("host_bytes must be at least 16 MiB");
  }
  KVF_ASSIGN_OR_RETURN(arena_, transport_->AllocateMemory(host_bytes, MemoryType::kHost));
  if (options_.prefault_arena) {
    prefaulter_ = std::make_unique<ArenaPrefaulter>(arena_->data(), arena_->size());
  }
  ShardStoreOptions so;
  so.host_bytes = host_bytes;
  so.host_memory = static_cast<std::byte*>(arena_->data());
  so.eviction_policy = options_.eviction_policy;
  so.default_lease = options_.get_lease;
  so.disk_path = options_.disk_path;
  so.disk_bytes = options_.disk_bytes;
  so.device_bytes = options_.device_bytes;
  so.device = std::max(options_.device, 0);
  KVF_ASSIGN_OR_RETURN(store_, ShardStore::Create(so));
  if (options_.device_bytes > 0) {
    KVF_LOG(INFO) << "agent: GPU tier of " << options_.device_bytes << " bytes on CUDA device "
                  << options_.device << "; remote readers and writers go through host staging";
  }
  if (options_.memory_pressure_high > 0) {
    MemoryPressureOptions mp;
    mp.high = options_.memory_pressure_high;
    mp.low = options_.memory_pressure_low;
    KVF_ASSIGN_OR_RETURN(pressure_, MemoryPressure::Create(mp, host_bytes, SystemMemorySource()));
  }

  DataPlaneOptions dp;
  dp.get_lease = options_.get_lease;
  dp.reservation_ttl = options_.get_lease;
  dp.cluster_token = options_.token;
  dp.previous_tokens = options_.previous_tokens;
  dp.tenant_limits = options_.tenant_limits;
  dp.sessions = options_.sessions;
  dp.read_holds.hold = options_.lookup_hold;
  dp.read_holds.max_held_bytes = host_bytes / 8;
  data_plane_ = std::make_unique<DataPlane>(store_.get(), transport_.get(), arena_.get(), dp);
  data_plane_->ServeAlso(tenant_transport_.get());
  peers_ = std::make_unique<PeerLinks>(transport_.get(), options_.token,
                                       [dp = data_plane_.get()] { return dp->self(); });
  replicator_ = std::make_unique<Replicator>(store_.get(), data_plane_.get(), peers_.get(),
                                             transport_.get(), ReplicatorOptions{});
  KVF_RETURN_IF_ERROR(data_plane_->Start(
      [r = replicator_.get()](std::vector<CommitRecord> records) { r->Committed(std::move(records)); },
      [r = replicator_.get()](NamespaceId ns, const std::vector<BlockKey>& keys) {
        r->Cancel(ns, keys);
      }));
  link_ = std::make_unique<CoordinatorLink>(options_.coordinator, options_.token,
                                            options_.rpc_timeout, coordinator_credentials);
  migrator_ = std::make_unique<Migrator>(
      store_.get(), data_plane_.get(), replicator_.get(), peers_.get(),
      [this](std::vector<proto::TaskProgress> progress) {
        // The coordinator only resends a task it did not hear failed: a lost
        // "done" would leave its destination joining (or its source
        // draining) for good. Reports are idempotent, so retry a while.
        absl::Status s;
        for (int attempt = 0; attempt < kMigrationReportAttempts; ++attempt) {
          if (attempt > 0) absl::SleepFor(absl::Milliseconds(100 << std::min(attempt, 5)));
          s = link_->ReportMigration(node_id(), progress);
          if (s.ok() || absl::IsFailedPrecondition(s) || absl::IsNotFound(s)) break;
          KVF_LOG(WARNING) << "agent: migration report failed (attempt " << attempt + 1
                           << "): " << s;
        }
        if (!s.ok()) KVF_LOG(WARNING) << "agent: migration report dropped: " << s;
      });

  // AgentControl.
  std::vector<std::string> tokens = {options_.token};
  tokens.insert(tokens.end(), options_.previous_tokens.begin(), options_.previous_tokens.end());
  control_ = std::make_unique<ControlService>(std::move(tokens), migrator_.get(), store_.get());
  std::string host;
  int port = 0;
  KVF_RETURN_IF_ERROR(SplitHostPort(options_.listen, &host, &port));
  int bound = 0;
  grpc::ServerBuilder builder;
  builder.AddListeningPort(options_.listen, control_credentials, &bound);
  builder.RegisterService(control_.get());
  grpc_server_ = builder.BuildAndStart();
  if (!grpc_server_ || bound == 0) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ", options_.listen));
  }
  control_address_ = absl::StrCat(host, ":", bound);

  if (!options_.http_listen.empty()) {
    KVF_RETURN_IF_ERROR(SplitHostPort(options_.http_listen, &host, &port));
    HttpHandlers handlers;
    handlers.metrics = [this] {
      std::optional<ArenaPrefaultProgress> prefault;
      if (prefaulter_) prefault = prefaulter_->progress();
      return AgentMetricsText(*store_, *data_plane_, *replicator_, *migrator_, pressure_.get(),
                              prefault ? &*prefault : nullptr);
    };
    handlers.health = [this]() -> absl::StatusOr<std::string> {
      {
        absl::MutexLock lock(&mu_);
        if (stopping_) return absl::UnavailableError("shutting down");
      }
      return absl::StrCat("ok node=", node_id(), " epoch=", data_plane_->epoch(), "\n");
    };
    KVF_ASSIGN_OR_RETURN(http_, HttpServer::Start(host, port, handlers));
    http_address_ = absl::StrCat(host, ":", http_->port());
  }

  KVF_RETURN_IF_ERROR(JoinCluster(options_.node_id));
  heartbeats_ = std::thread([this] {
    pthread_setname_np(pthread_self(), "kvf-heartbeat");
    Every([this] { Heartbeat(); });
  });
  maintenance_ = std::thread([this] {
    pthread_setname_np(pthread_self(), "kvf-maint");
    Every([this] { Maintain(); });
  });
  return absl::OkStatus();
}

absl::Status AgentImpl::JoinCluster(NodeId id) {
  proto::JoinRequest req;
  req.set_address(control_address_);
  req.set_data_address(EncodeDataAddress(transport_->address()));
  req.set_tenant_data_address(EncodeDataAddress(tenant_transport_->address()));
  req.set_http_address(http_address_);
  std::string domain = options_.failure_domain;
  if (domain.empty()) {
    char name[256] = {};
    gethostname(name, sizeof(name) - 1);
    domain = name;
  }
  req.set_failure_domain(domain);
  // The memory the node offers: the GPU tier, if any, and the host tier (the
  // heartbeat's used bytes count both).
  req.set_capacity_bytes(options_.host_bytes + options_.device_bytes);
  req.set_device_bytes(options_.device_bytes);
  if (options_.device_bytes > 0) req.add_tiers("device");
  req.add_tiers("host");
  if (!options_.disk_path.empty()) req.add_tiers("disk");
  req.set_node_id(id);
  req.set_known_epoch(data_plane_->epoch());
  const auto sent = std::chrono::steady_clock::now();
  KVF_ASSIGN_OR_RETURN(proto::JoinResponse resp, link_->Join(req));
  data_plane_->SetSelf(resp.node_id());
  data_plane_->SetLeaseUntil(sent + std::chrono::milliseconds(resp.lease_ms()));
  {
    absl::MutexLock lock(&mu_);
    if (options_.heartbeat > absl::ZeroDuration()) {
      heartbeat_ = options_.heartbeat;
    } else {
      heartbeat_ = std::max(absl::Milliseconds(50), absl::Milliseconds(resp.lease_ms()) / 3);
    }
  }
  KVF_ASSIGN_OR_RETURN(ClusterMap map, ClusterMapFromProto(resp.map()));
  OnMap(map);
  if (!link_watching_) {
    link_watching_ = true;
    link_->StartWatch(map.epoch, [this](const ClusterMap& m) { OnMap(m); });
  }
  KVF_LOG(INFO) << "agent: node " << resp.node_id() << " joined at epoch " << map.epoch;
  return absl::OkStatus();
}

void AgentImpl::OnMap(const ClusterMap& map) {
  if (absl::Status s = data_plane_->SetMap(map); !s.ok()) {
    KVF_LOG(WARNING) << "agent: cannot use map epoch " << map.epoch << ": " << s;
    return;
  }
  store_->SetEpoch(data_plane_->epoch());
  peers_->UpdateMap(map);
}

void AgentImpl::Every(const std::function<void()>& step) {
  for (;;) {
    {
      absl::MutexLock lock(&mu_);
      mu_.AwaitWithTimeout(absl::Condition(&stopping_), heartbeat_);
      if (stopping_) return;
    }
    step();
  }
}

void AgentImpl::Maintain() {
  data_plane_->Sweep();
  AdaptToMemoryPressure();
  std::optional<EvictionCutoff> cutoff;
  {
    absl::MutexLock lock(&mu_);
    cutoff.swap(eviction_cutoff_);
  }
  if (cutoff) ApplyEvictionCutoff(*cutoff);
  CollectForeignBlocks();
}

// The coordinator's cutoff says how much this node frees: the bytes it holds
// not accessed for `age` (an approximation of one LRU over the cluster). Which
// blocks go is this node's eviction policy's choice, as for any other
// eviction, so a policy that knows better than recency keeps what it would
// keep (docs/agent.md, "Global eviction").
void AgentImpl::ApplyEvictionCutoff(const EvictionCutoff& cutoff) {
  const AgeHistogram ages = store_->Ages();
  uint64_t older = 0;
  for (int b = AgeHistogram::BucketOf(cutoff.age); b < AgeHistogram::kBuckets; ++b) {
    older += ages.bytes[b];
  }
  if (older == 0) return;
  const uint64_t used = ages.Total();
  const uint64_t target = std::max(cutoff.keep_bytes, used > older ? used - older : 0);
  const uint64_t evicted = store_->EvictToTarget(target);
  if (evicted > 0) {
    KVF_LOG(INFO) << "agent: eviction cutoff " << cutoff.age << ": " << older
                  << " bytes older, target " << target << " bytes (keep " << cutoff.keep_bytes
                  << "), evicted " << evicted << " blocks by policy";
  }
}

void AgentImpl::AdaptToMemoryPressure() {
  if (!pressure_) return;
  absl::StatusOr<PressureDecision> d = pressure_->Tick();
  if (!d.ok()) {
    KVF_LOG(WARNING) << "agent: memory pressure: " << d.status();
    return;
  }
  if (!d->changed) return;
  const bool full = d->limit_bytes >= pressure_->full_bytes();
  const uint64_t evicted = store_->SetMemoryLimit(full ? UINT64_MAX : d->limit_bytes);
  KVF_LOG(WARNING) << "agent: memory pressure " << PressureLevelName(d->level) << " ("
                   << static_cast<int>(d->used_fraction * 100) << "% used): host tier "
                   << (full ? "back to its full " : "limited to ") << d->limit_bytes << " bytes"
                   << (evicted > 0 ? absl::StrCat(", ", evicted, " blocks evicted or demoted")
                                   : std::string());
}

void AgentImpl::Heartbeat() {
  proto::HeartbeatRequest req;
  req.set_node_id(node_id());
  const ShardStoreStats stats = store_->Stats();
  uint64_t used = 0;
  for (const TierStats& t : stats.tiers) {
    if (t.kind != TierKind::kDisk) used += t.used_bytes;  // the coordinator weighs memory
  }
  req.set_used_bytes(used);
  req.set_capacity_bytes(options_.host_bytes + options_.device_bytes);
  const AgeHistogram ages = store_->Ages();
  for (uint64_t b : ages.bytes) req.mutable_ages()->add_bytes(b);
  req.set_known_epoch(data_plane_->epoch());
  const auto sent = std::chrono::steady_clock::now();
  absl::StatusOr<proto::HeartbeatResponse> resp = link_->Heartbeat(req);
  if (!resp.ok()) {
    KVF_LOG(WARNING) << "agent: heartbeat: " << resp.status();
    if (absl::IsFailedPrecondition(resp.status()) || absl::IsNotFound(resp.status())) {
      Rejoin(resp.status());
    }
    return;
  }
  data_plane_->SetLeaseUntil(sent + std::chrono::milliseconds(resp->lease_ms()));
  if (resp->has_eviction_cutoff_ms()) {
    absl::MutexLock lock(&mu_);
    eviction_cutoff_ = EvictionCutoff{absl::Milliseconds(resp->eviction_cutoff_ms()),
                                      resp->eviction_keep_bytes()};
  }
  if (resp->epoch() > data_plane_->epoch()) {
    // The watch lags: fetch the map now.
    if (absl::StatusOr<ClusterMap> map = link_->GetClusterMap(); map.ok()) OnMap(*map);
  }
}

void AgentImpl::Rejoin(const absl::Status& why) {
  // While this node was down its ranges had other owners, which may have
  // taken newer writes of mutable entries that it never heard of. It cannot
  // tell which, so it drops every mutable entry before it is active again
  // (the re-join's migration brings current copies back). Its lease has
  // lapsed (the coordinator's deadline ends after ours), so no client write
  // of a mutable entry lands between this scan and the join. Immutable blocks
  // are content-addressed: the same key is the same bytes, never stale.
  size_t dropped = 0;
  for (const StoredBlock& b : store_->Scan([](uint64_t) { return true; })) {
    if (b.info.mutable_entry && store_->Remove(b.ns, b.key).ok()) ++dropped;
  }
  KVF_LOG(WARNING) << "agent: node " << node_id() << " re-joins (" << why.message()
                   << "); dropped " << dropped << " mutable blocks that may be stale";
  absl::Status s = JoinCluster(node_id());
  if (absl::IsNotFound(s)) {
    // A coordinator that lost its state does not know this id: join as a new
    // node and keep the blocks (those the new placement does not give this
    // node are collected once no migration runs).
    KVF_LOG(WARNING) << "agent: " << s << "; joining as a new node";
    s = JoinCluster(kNoNode);
  }
  if (!s.ok()) {
    KVF_LOG(WARNING) << "agent: re-join: " << s;
  }
}

void AgentImpl::CollectForeignBlocks() {
  std::shared_ptr<const Ownership> own = data_plane_->ownership();
  {
    absl::MutexLock lock(&mu_);
    if (own->epoch() == collected_epoch_) return;
  }
  if (migrator_->pending() > 0 || own->epoch() == 0) return;
  const NodeId self = node_id();
  std::vector<StoredBlock> foreign =
      store_->Scan([&](uint64_t hash) { return !own->Owns(self, hash); });
  size_t dropped = 0;
  bool all = true;
  for (const StoredBlock& b : foreign) {
    if (store_->Remove(b.ns, b.key).ok()) {
      ++dropped;
    } else {
      all = false;  // pinned by a reader: next round
    }
  }
  if (dropped > 0) {
    KVF_LOG(INFO) << "agent: dropped " << dropped << " blocks not owned at epoch " << own->epoch();
  }
  if (all) {
    absl::MutexLock lock(&mu_);
    collected_epoch_ = own->epoch();
  }
}

void AgentImpl::Shutdown(bool leave) {
  if (shut_down_.exchange(true)) return;
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (data_plane_) data_plane_->SetServing(false);
  if (prefaulter_) prefaulter_->Stop();  // kept for /metrics until http_ stops
  if (heartbeats_.joinable()) heartbeats_.join();
  if (maintenance_.joinable()) maintenance_.join();
  if (leave && link_ && node_id() != kNoNode) {
    if (absl::Status s = link_->Leave(node_id()); !s.ok()) {
      KVF_LOG(WARNING) << "agent: leave: " << s;
    }
  }
  if (link_) link_->StopWatch();
  if (grpc_server_) grpc_server_->Shutdown(std::chrono::system_clock::now() +
                                           std::chrono::seconds(1));
  if (http_) http_->Stop();
  migrator_.reset();
  replicator_.reset();
  data_plane_.reset();  // unpins outstanding leases
  peers_.reset();
  store_.reset();
  prefaulter_.reset();
  arena_.reset();
  tenant_transport_.reset();
  transport_.reset();
}

}  // namespace

absl::StatusOr<std::unique_ptr<Agent>> Agent::Start(const AgentOptions& options) {
  auto agent = std::make_unique<AgentImpl>(options);
  KVF_RETURN_IF_ERROR(agent->Init());
  return agent;
}

}  // namespace kvf
