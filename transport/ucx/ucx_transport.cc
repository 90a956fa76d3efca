// The UCX backend's lifecycle (docs/transport.md): context and worker
// creation, capability detection, teardown, and the progress thread. The rest
// of UcxTransport is in ucx_connections.cc, ucx_memory.cc, ucx_transfers.cc
// and ucx_messages.cc (ucx_internal.h lists who does what).
#include "transport/ucx/ucx_transport.h"

#include <poll.h>
#include <pthread.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/logging.h"
#include "transport/ucx/ucx_internal.h"
#include "transport/ucx/ucx_status.h"

namespace kvf::transport_internal::ucx {

namespace {

// Lists the transports UCX selected for this context, e.g. "posix/memory".
std::string DescribeResources(ucp_context_h context) {
  char* buf = nullptr;
  size_t len = 0;
  FILE* f = open_memstream(&buf, &len);
  if (f == nullptr) return "?";
  ucp_context_print_info(context, f);
  fclose(f);
  std::string text(buf, len);
  free(buf);
  // Lines look like "#   md 1  :  component 1  posix" and
  // "#      resource 2  :  md 1  dev 1  flags -- posix/memory".
  std::vector<std::string> resources;
  size_t pos = 0;
  while ((pos = text.find("resource", pos)) != std::string::npos) {
    size_t eol = text.find('\n', pos);
    std::string line = text.substr(pos, eol == std::string::npos ? std::string::npos : eol - pos);
    size_t last = line.find_last_of(' ');
    if (last != std::string::npos && line.find('/') != std::string::npos) {
      resources.push_back(line.substr(last + 1));
    }
    pos = eol == std::string::npos ? text.size() : eol;
  }
  return absl::StrJoin(resources, " ");
}

}  // namespace

absl::StatusOr<std::unique_ptr<Transport>> UcxTransport::Create(const TransportConfig& config) {
  std::unique_ptr<UcxTransport> t(new UcxTransport(config));
  const char* no_mapped = std::getenv("KVF_UCX_NO_MAPPED");
  t->mapped_disabled_ = no_mapped != nullptr && std::string_view(no_mapped) == "1";
  const std::string ctx = absl::StrCat("for transport '", config.name, "'");

  ucp_config_t* raw_config = nullptr;
  KVF_RETURN_IF_ERROR(UcxError(ucp_config_read(nullptr, nullptr, &raw_config), "ucp_config_read", ctx));
  UcpConfig ucp_config(raw_config, {});
  if (!config.ucx_tls.empty()) {
    KVF_RETURN_IF_ERROR(UcxError(ucp_config_modify(raw_config, "TLS", config.ucx_tls.c_str()),
                                 "ucp_config_modify(TLS)", ctx));
  }
  if (!config.net_devices.empty()) {
    KVF_RETURN_IF_ERROR(
        UcxError(ucp_config_modify(raw_config, "NET_DEVICES", config.net_devices.c_str()),
                 "ucp_config_modify(NET_DEVICES)",
                 absl::StrCat(ctx, " (net devices '", config.net_devices, "')")));
  }
  // Notice dead peers within seconds rather than UCX's default 20 s.
  (void)ucp_config_modify(raw_config, "KEEPALIVE_INTERVAL", "1s");

  ucp_params_t params{};
  params.field_mask = UCP_PARAM_FIELD_FEATURES | UCP_PARAM_FIELD_MT_WORKERS_SHARED |
                      UCP_PARAM_FIELD_NAME;
  // Tagged messages (the two-sided lane) come with one-sided access: a
  // messages-only context (the side untrusted peers reach) keeps no tag
  // matching, whose unexpected-message queue a peer could fill.
  params.features =
      UCP_FEATURE_AM | (config.one_sided ? UCP_FEATURE_RMA | UCP_FEATURE_TAG : 0);
  // The progress thread sleeps on the worker's event fd when idle.
  if (config.progress == ProgressMode::kThread) params.features |= UCP_FEATURE_WAKEUP;
  params.mt_workers_shared = 0;
  params.name = config.name.c_str();
  ucp_context_h context = nullptr;
  KVF_RETURN_IF_ERROR(UcxError(ucp_init(&params, raw_config, &context), "ucp_init", ctx));
  t->context_ = UcpContext(context, {});

  ucp_worker_params_t wparams{};
  wparams.field_mask = UCP_WORKER_PARAM_FIELD_THREAD_MODE;
  wparams.thread_mode = UCS_THREAD_MODE_MULTI;
  ucp_worker_h worker = nullptr;
  KVF_RETURN_IF_ERROR(UcxError(ucp_worker_create(context, &wparams, &worker), "ucp_worker_create", ctx));
  t->worker_ = UcpWorker(worker, {});
  ucp_worker_attr_t wattr{};
  wattr.field_mask = UCP_WORKER_ATTR_FIELD_THREAD_MODE;
  KVF_RETURN_IF_ERROR(UcxError(ucp_worker_query(worker, &wattr), "ucp_worker_query", ctx));
  if (wattr.thread_mode != UCS_THREAD_MODE_MULTI) {
    return absl::FailedPreconditionError(
        "ucp_worker_create: this UCX was built without multi-thread support (--enable-mt)");
  }

  ucp_address_t* raw_address = nullptr;
  size_t address_length = 0;
  KVF_RETURN_IF_ERROR(UcxError(ucp_worker_get_address(worker, &raw_address, &address_length),
                               "ucp_worker_get_address", ctx));
  UcpWorkerAddress address(raw_address, ReleaseWorkerAddress{worker});
  t->address_ = SealAddress(
      kUcxBackendTag,
      std::string_view(reinterpret_cast<const char*>(address.get()), address_length));

  ucp_am_handler_param_t am{};
  am.field_mask = UCP_AM_HANDLER_PARAM_FIELD_ID | UCP_AM_HANDLER_PARAM_FIELD_FLAGS |
                  UCP_AM_HANDLER_PARAM_FIELD_CB | UCP_AM_HANDLER_PARAM_FIELD_ARG;
  am.id = kAmId;
  am.flags = UCP_AM_FLAG_WHOLE_MSG;
  am.cb = &UcxTransport::OnFrame;
  am.arg = t.get();
  KVF_RETURN_IF_ERROR(UcxError(ucp_worker_set_am_recv_handler(worker, &am),
                               "ucp_worker_set_am_recv_handler", ctx));

  ucp_context_attr_t cattr{};
  cattr.field_mask = UCP_ATTR_FIELD_MEMORY_TYPES;
  KVF_RETURN_IF_ERROR(UcxError(ucp_context_query(context, &cattr), "ucp_context_query", ctx));
  unsigned major = 0, minor = 0, release = 0;
  ucp_get_version(&major, &minor, &release);
  t->caps_.host_memory = true;
  t->caps_.cuda_memory = (cattr.memory_types & UCS_BIT(UCS_MEMORY_TYPE_CUDA)) != 0;
  t->caps_.one_sided = config.one_sided;
  t->caps_.two_sided = config.one_sided;
  t->caps_.messages = true;
  t->caps_.fabric =
      absl::StrCat("ucx ", major, ".", minor, ".", release, ": ", DescribeResources(context));

  t->peer_failure_detection_ = false;
  for (absl::string_view r : absl::StrSplit(DescribeResources(context), ' ')) {
    absl::string_view tl = r.substr(0, r.find('/'));
    if (tl != "self" && tl != "posix" && tl != "sysv" && tl != "cma" && tl != "knem" &&
        tl != "xpmem") {
      t->peer_failure_detection_ = true;
    }
  }
  if (config.progress == ProgressMode::kThread) {
    int efd = -1;
    const ucs_status_t st = ucp_worker_get_efd(worker, &efd);
    if (st == UCS_OK) {
      t->event_fd_ = efd;  // owned by the worker
    } else {
      KVF_LOG(WARNING) << "transport '" << config.name << "': no worker event fd ("
                       << ucs_status_string(st) << "); the progress thread polls with sleeps";
    }
    t->progress_thread_ = std::thread([raw = t.get()] { raw->ProgressLoop(); });
  }
  KVF_LOG(INFO) << "transport '" << config.name << "': " << t->caps_.fabric;
  return std::unique_ptr<Transport>(std::move(t));
}

UcxTransport::~UcxTransport() {
  stop_.store(true);
  if (progress_thread_.joinable()) {
    if (event_fd_ >= 0) ucp_worker_signal(worker_.get());
    progress_thread_.join();
  }
  absl::flat_hash_map<PeerId, std::shared_ptr<Conn>> peers;
  {
    absl::MutexLock l(&mu_);
    peers.swap(peers_);
  }
  for (auto& [id, conn] : peers) conn->Close(absl::CancelledError("transport destroyed"));
  peers.clear();
  // Let UCX finish what the closes started before the worker goes away.
  while (worker_ && ucp_worker_progress(worker_.get()) != 0) {
  }
}

// Spin while there is work (latency), then yield for a while, then sleep.
// With an event fd the sleep is ucp_worker_arm + poll: any arriving message
// or completion can wake the thread at once, and WakeProgress()/the
// destructor use ucp_worker_signal. The poll timeout (kMaxSleepNs) bounds the
// latency of progress no event announces (a send queued behind a full peer
// FIFO, a sender that does not signal). Without an event fd it falls back to
// 10-100 us sleeps.
//
// Why it matters: on a machine with fewer cores than busy pollers (2 cores,
// a peer in the same host, builds), a spinning thread takes the CPU the
// process it waits for needs to answer.
thread_local const UcxTransport* UcxTransport::WorkerLock::holder_ = nullptr;

void UcxTransport::ProgressLoop() {
  const std::string name = absl::StrCat("kvf-tp-", config_.name).substr(0, 15);
  pthread_setname_np(pthread_self(), name.c_str());
  constexpr int kSpin = 256, kYield = 1024;
  // Not measured to wake reliably: a posix sender in a process without
  // UCP_FEATURE_WAKEUP (kCaller mode) was seen not to signal an armed peer,
  // so the sleep stays as short as the old loop's (100 us) until that is
  // understood; arriving events still cut it short where they do fire.
  constexpr int64_t kMaxSleepNs = 100'000;
  int idle = 0;
  int64_t sleep_ns = 100'000;
  // Asynchronous calls expire here; a worker that always has something to
  // progress (a dead TCP peer's reconnect attempts, say) must not starve
  // them, so a busy loop expires them too, once a millisecond.
  absl::Time next_expiry = absl::InfinitePast();
  while (!stop_.load(std::memory_order_relaxed)) {
    if (Progress()) {
      idle = 0;
      sleep_ns = 100'000;
      if (const absl::Time now = absl::Now(); now >= next_expiry) {
        ExpireAsyncCalls();
        next_expiry = now + absl::Milliseconds(1);
      }
      continue;
    }
    if (++idle < kSpin) continue;
    if (idle < kYield) {
      std::this_thread::yield();
      continue;
    }
    ExpireAsyncCalls();
    if (event_fd_ < 0) {
      absl::SleepFor(absl::Microseconds(idle < 4096 ? 10 : 100));
      continue;
    }
    // A poster that saw progress_sleeping_ false did not signal: its work was
    // queued before this store, so this last progress call sees it.
    progress_sleeping_.store(true, std::memory_order_seq_cst);
    if (Progress()) {
      progress_sleeping_.store(false, std::memory_order_release);
      idle = 0;
      continue;
    }
    const ucs_status_t armed = ucp_worker_arm(worker_.get());
    if (armed == UCS_OK && !stop_.load(std::memory_order_seq_cst)) {
      pollfd p{event_fd_, POLLIN, 0};
      const timespec ts{0, static_cast<long>(sleep_ns)};
      if (ppoll(&p, 1, &ts, nullptr) == 0) {
        sleep_ns = std::min<int64_t>(sleep_ns * 2, kMaxSleepNs);
      } else {
        sleep_ns = 100'000;
        idle = 0;
      }
    } else if (armed != UCS_ERR_BUSY && armed != UCS_OK) {
      absl::SleepFor(absl::Microseconds(100));  // cannot arm: poll slowly
    } else {
      idle = 0;  // events are pending: progress them
    }
    progress_sleeping_.store(false, std::memory_order_release);
  }
}

}  // namespace kvf::transport_internal::ucx

namespace kvf::transport_internal {

absl::StatusOr<std::unique_ptr<Transport>> CreateUcxTransport(const TransportConfig& config) {
  return ucx::UcxTransport::Create(config);
}

}  // namespace kvf::transport_internal
