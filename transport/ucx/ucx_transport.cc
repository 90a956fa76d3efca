// The UCX backend: UCP RMA (ucp_get_nbx/ucp_put_nbx + one ucp_ep_flush_nbx per
// batch) for blocks, active messages for request/response frames, worker
// addresses for connections, UCP_ERR_HANDLING_MODE_PEER so a dead peer fails
// requests instead of hanging them.
//
// Locking: never call into UCX while holding mu_ or calls_mu_. UCX callbacks
// run with the worker's lock held and take those mutexes, so the order is
// always worker lock -> mu_/calls_mu_. A connection's ep_mu is taken (shared)
// around every call that uses its endpoint and (exclusive) to close it.
#include "transport/ucx/ucx_transport.h"

#include <pthread.h>

#include <atomic>
#include <cstdio>
#include <random>
#include <thread>

#include "absl/cleanup/cleanup.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "transport/internal/wire.h"
#include "transport/ucx/ucx_handles.h"
#include "transport/ucx/ucx_status.h"

namespace kvf::transport_internal {
namespace {

constexpr unsigned kAmId = 0x6b;  // one AM id carries every frame
constexpr uint8_t kUcxBackendTag = 1;
constexpr uint16_t kValidateRegion = 0xff01;
constexpr absl::Duration kReleaseTimeout = absl::Seconds(1);

class UcxTransport;

// One connection to a peer. Shared by the peer table, imported regions and
// in-flight requests, so its endpoint outlives everything that posted on it.
class Conn {
 public:
  Conn(UcxTransport* owner, PeerId id, uint64_t generation, std::string label)
      : owner_(owner), id_(id), generation_(generation), label_(std::move(label)) {}
  ~Conn() { Close(absl::CancelledError("connection closed")); }

  PeerId id() const { return id_; }
  uint64_t generation() const { return generation_; }
  const std::string& label() const { return label_; }
  UcxTransport* owner() const { return owner_; }

  void Attach(UcpEndpoint ep) {
    absl::MutexLock l(&ep_mu_);
    ep_ = std::move(ep);
  }
  absl::Status health() const {
    absl::MutexLock l(&status_mu_);
    return failure_;
  }
  // Records the first failure; later ones keep the first reason.
  void MarkFailed(absl::Status why) {
    absl::MutexLock l(&status_mu_);
    if (failure_.ok()) failure_ = std::move(why);
  }
  // Force-closes the endpoint: outstanding operations complete with
  // UCS_ERR_CANCELED.
  void Close(absl::Status why) {
    MarkFailed(std::move(why));
    absl::WriterMutexLock l(&ep_mu_);
    ep_.Close();
  }
  // Runs fn(ep) with the endpoint pinned open; UNAVAILABLE once closed or
  // failed.
  template <typename Fn>
  absl::Status WithEndpoint(Fn fn) {
    KVF_RETURN_IF_ERROR(health());
    absl::ReaderMutexLock l(&ep_mu_);
    if (ep_.get() == nullptr) return absl::UnavailableError(absl::StrCat(label_, ": closed"));
    return fn(ep_.get());
  }

 private:
  UcxTransport* const owner_;
  const PeerId id_;
  const uint64_t generation_;
  const std::string label_;
  mutable absl::Mutex ep_mu_;
  UcpEndpoint ep_ ABSL_GUARDED_BY(ep_mu_);
  mutable absl::Mutex status_mu_;
  absl::Status failure_ ABSL_GUARDED_BY(status_mu_);
};

class UcxMemoryRegion final : public MemoryRegion {
 public:
  UcxMemoryRegion(UcxTransport* owner, void* data, size_t size, MemoryType type, UcpMemh memh,
                  RemoteDescriptor descriptor)
      : owner_(owner),
        data_(data),
        size_(size),
        type_(type),
        memh_(std::move(memh)),
        descriptor_(std::move(descriptor)) {}
  ~UcxMemoryRegion() override;
  void* data() const override { return data_; }
  size_t size() const override { return size_; }
  MemoryType memory_type() const override { return type_; }
  const RemoteDescriptor& descriptor() const override { return descriptor_; }
  ucp_mem_h memh() const { return memh_.get(); }

 private:
  UcxTransport* const owner_;
  void* const data_;
  const size_t size_;
  const MemoryType type_;
  UcpMemh memh_;
  const RemoteDescriptor descriptor_;
};

class UcxRemoteRegion final : public RemoteRegion {
 public:
  UcxRemoteRegion(std::shared_ptr<Conn> conn, RemoteDescriptor d, UcpRkey rkey)
      : conn_(std::move(conn)), descriptor_(std::move(d)), rkey_(std::move(rkey)) {}
  PeerId peer() const override { return conn_->id(); }
  const RemoteDescriptor& descriptor() const override { return descriptor_; }
  const std::shared_ptr<Conn>& conn() const { return conn_; }
  ucp_rkey_h rkey() const { return rkey_.get(); }

 private:
  std::shared_ptr<Conn> conn_;
  const RemoteDescriptor descriptor_;
  UcpRkey rkey_;  // destroyed before conn_ releases the endpoint
};

// Completion state of one posted batch. `outstanding` counts UCX requests
// still running plus one for the poster; whoever drops it to zero finishes.
struct BatchState {
  absl::Mutex mu;
  TransferState state ABSL_GUARDED_BY(mu) = TransferState::kInProgress;
  absl::Status status ABSL_GUARDED_BY(mu);
  absl::Status first_error ABSL_GUARDED_BY(mu);
  bool cancel_requested ABSL_GUARDED_BY(mu) = false;
  std::atomic<bool> finished{false};
  std::atomic<int64_t> outstanding{1};
  std::string what;  // "ucp_get_nbx batch of 4 ops from peer 3 (...)"

  // One UCX request (or the poster, with OK) is done.
  void OpDone(absl::Status s) {
    if (!s.ok()) {
      absl::MutexLock l(&mu);
      if (first_error.ok()) first_error = std::move(s);
    }
    if (outstanding.fetch_sub(1, std::memory_order_acq_rel) == 1) Finish();
  }

 private:
  void Finish() {
    absl::MutexLock l(&mu);
    if (first_error.ok()) {
      state = TransferState::kDone;
    } else if (cancel_requested || first_error.code() == absl::StatusCode::kCancelled) {
      state = TransferState::kCancelled;
      status = absl::CancelledError(absl::StrCat(what, ": cancelled (", first_error.message(), ")"));
    } else {
      state = TransferState::kFailed;
      status = first_error;
    }
    finished.store(true, std::memory_order_release);
  }
};

// A message in flight: UCX reads its buffers until the send completes.
class FrameRegistry;
struct OutgoingFrame {
  FrameRegistry* registry;
  std::string header;
  std::string payload;
};

// Owns every OutgoingFrame until its send callback runs. A send to a dead
// peer may never complete; such frames are freed with the registry, after
// the worker is gone.
class FrameRegistry {
 public:
  OutgoingFrame* Add(std::string header, std::string payload) {
    auto f = std::make_unique<OutgoingFrame>(OutgoingFrame{this, std::move(header), std::move(payload)});
    OutgoingFrame* raw = f.get();
    absl::MutexLock l(&mu_);
    frames_[raw] = std::move(f);
    return raw;
  }
  void Remove(OutgoingFrame* f) {
    std::unique_ptr<OutgoingFrame> gone;
    absl::MutexLock l(&mu_);
    auto it = frames_.find(f);
    if (it == frames_.end()) return;
    gone = std::move(it->second);
    frames_.erase(it);
  }

 private:
  absl::Mutex mu_;
  absl::flat_hash_map<OutgoingFrame*, std::unique_ptr<OutgoingFrame>> frames_ ABSL_GUARDED_BY(mu_);
};



struct PendingCall {
  const Conn* conn = nullptr;
  bool done = false;
  absl::StatusOr<std::string> result = std::string();
};

class UcxTransferRequest;

// Thread-safety: see Transport. Internally: peers_, regions_, handlers_ under
// mu_; pending calls under calls_mu_.
class UcxTransport final : public Transport {
 public:
  static absl::StatusOr<std::unique_ptr<Transport>> Create(const TransportConfig& config);
  ~UcxTransport() override;

  const Capabilities& capabilities() const override { return caps_; }
  std::string address() const override { return address_; }
  absl::StatusOr<std::unique_ptr<MemoryRegion>> RegisterMemory(void* data, size_t size,
                                                               MemoryType type) override;
  absl::StatusOr<PeerId> Connect(std::string_view address) override;
  absl::Status Reconnect(PeerId peer, std::string_view address) override;
  absl::Status Disconnect(PeerId peer) override;
  absl::Status PeerHealth(PeerId peer) const override;
  absl::StatusOr<std::unique_ptr<RemoteRegion>> ImportRemote(PeerId peer,
                                                             const RemoteDescriptor& descriptor,
                                                             absl::Time deadline) override;
  absl::StatusOr<std::unique_ptr<TransferRequest>> Post(TransferBatch batch) override;
  absl::Status RegisterHandler(uint16_t type, MessageHandler handler) override;
  absl::StatusOr<std::string> Call(PeerId peer, uint16_t type, std::string_view request,
                                   absl::Time deadline) override;
  bool Progress() override { return ucp_worker_progress(worker_.get()) != 0; }

  // Keeps a batch UCX never completed until the worker is gone.
  void Abandon(std::unique_ptr<BatchState> state) {
    absl::MutexLock l(&mu_);
    abandoned_.push_back(std::move(state));
  }
  bool caller_progress() const { return config_.progress == ProgressMode::kCaller; }
  void ForgetRegion(uint64_t region_id) {
    absl::MutexLock l(&mu_);
    regions_.erase(region_id);
  }
  void OnConnFailed(Conn* conn, ucs_status_t status);

 private:
  explicit UcxTransport(TransportConfig config) : config_(std::move(config)) {}
  absl::StatusOr<std::shared_ptr<Conn>> FindConn(PeerId peer) const;
  absl::StatusOr<std::shared_ptr<Conn>> OpenConn(PeerId id, std::string_view address);
  absl::StatusOr<std::string> CallInternal(PeerId peer, uint16_t type, std::string_view request,
                                           absl::Time deadline);
  absl::Status SendFrame(Conn& conn, const FrameHeader& h, std::string_view payload);
  static ucs_status_t OnFrame(void* arg, const void* header, size_t header_length, void* data,
                              size_t length, const ucp_am_recv_param_t* param);
  void HandleRequest(const FrameHeader& h, std::string_view payload, ucp_ep_h reply_ep);
  void HandleResponse(const FrameHeader& h, std::string_view payload);
  absl::StatusOr<std::string> ValidateRegion(std::string_view request);
  void ProgressLoop();

  const TransportConfig config_;
  Capabilities caps_;
  // Destroyed after worker_ (members go in reverse order), so callbacks UCX
  // runs at worker teardown still find their state.
  std::vector<std::unique_ptr<BatchState>> abandoned_;
  FrameRegistry frames_;
  UcpContext context_;
  UcpWorker worker_;
  std::string address_;
  std::thread progress_thread_;
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> dropped_frames_{0};
  std::atomic<bool> warned_no_peer_failure_{false};
  // False when every resource is shared memory: UCX 1.13's posix/sysv/cma
  // cannot report peer failure and refuse UCP_ERR_HANDLING_MODE_PEER.
  bool peer_failure_detection_ = true;

  mutable absl::Mutex mu_;
  PeerId next_peer_ ABSL_GUARDED_BY(mu_) = 1;
  uint64_t next_generation_ ABSL_GUARDED_BY(mu_) = 1;
  absl::flat_hash_map<PeerId, std::shared_ptr<Conn>> peers_ ABSL_GUARDED_BY(mu_);
  struct RegionInfo {
    uint64_t address;
    uint64_t size;
  };
  absl::flat_hash_map<uint64_t, RegionInfo> regions_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<uint16_t, std::shared_ptr<MessageHandler>> handlers_ ABSL_GUARDED_BY(mu_);
  std::mt19937_64 rng_ ABSL_GUARDED_BY(mu_){std::random_device{}()};

  absl::Mutex calls_mu_;
  uint64_t next_call_ ABSL_GUARDED_BY(calls_mu_) = 1;
  absl::flat_hash_map<uint64_t, std::shared_ptr<PendingCall>> calls_ ABSL_GUARDED_BY(calls_mu_);
};

UcxMemoryRegion::~UcxMemoryRegion() { owner_->ForgetRegion(descriptor_.region_id); }

class UcxTransferRequest final : public TransferRequest {
 public:
  UcxTransferRequest(UcxTransport* owner, std::shared_ptr<Conn> conn, std::string what)
      : owner_(owner), conn_(std::move(conn)) {
    state_->what = std::move(what);
  }
  ~UcxTransferRequest() override {
    if (!state_->finished.load(std::memory_order_acquire)) {
      Cancel();
      if (!WaitFor(absl::Now() + kReleaseTimeout)) {
        // UCX never completed the operations (a peer without failure
        // detection). Hanging the caller is worse than leaking the state the
        // callbacks would write to.
        KVF_LOG(ERROR) << state_->what << ": not completed " << kReleaseTimeout
                       << " after cancel; abandoning it";
        owner_->Abandon(std::move(state_));
        return;
      }
    }
    absl::MutexLock l(&state_->mu);  // the callback may still be leaving Finish()
  }
  BatchState* batch() { return state_.get(); }

  TransferState Poll() override {
    if (!state_->finished.load(std::memory_order_acquire) && owner_->caller_progress()) {
      owner_->Progress();
    }
    return state();
  }
  absl::Status Wait(absl::Time deadline) override {
    if (!WaitFor(deadline)) {
      return absl::DeadlineExceededError(absl::StrCat(state_->what, ": still in progress"));
    }
    return status();
  }
  void Cancel() override {
    {
      absl::MutexLock l(&state_->mu);
      if (state_->state != TransferState::kInProgress) return;
      state_->cancel_requested = true;
    }
    conn_->Close(absl::CancelledError(
        absl::StrCat(conn_->label(), ": connection reset by Cancel(); Reconnect() to reuse")));
  }
  TransferState state() const override {
    absl::MutexLock l(&state_->mu);
    return state_->state;
  }
  absl::Status status() const override {
    absl::MutexLock l(&state_->mu);
    return state_->status;
  }

 private:
  bool WaitFor(absl::Time deadline) {
    if (owner_->caller_progress()) {
      while (!state_->finished.load(std::memory_order_acquire)) {
        if (owner_->Progress()) continue;
        if (absl::Now() >= deadline) return false;
      }
      return true;
    }
    absl::MutexLock l(&state_->mu);
    return state_->mu.AwaitWithDeadline(
        absl::Condition(
            +[](std::atomic<bool>* f) { return f->load(std::memory_order_acquire); },
            &state_->finished),
        deadline);
  }

  UcxTransport* const owner_;
  std::shared_ptr<Conn> conn_;
  std::unique_ptr<BatchState> state_ = std::make_unique<BatchState>();
};

void OnOpDone(void* request, ucs_status_t status, void* user_data) {
  auto* batch = static_cast<BatchState*>(user_data);
  ucp_request_free(request);
  batch->OpDone(UcxError(status, "transfer", batch->what));
}

void OnEndpointError(void* arg, ucp_ep_h, ucs_status_t status) {
  auto* conn = static_cast<Conn*>(arg);
  conn->owner()->OnConnFailed(conn, status);
}

void OnFrameSent(void* request, ucs_status_t, void* user_data) {
  auto* frame = static_cast<OutgoingFrame*>(user_data);
  frame->registry->Remove(frame);
  ucp_request_free(request);
}

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

absl::StatusOr<std::unique_ptr<Transport>> UcxTransport::Create(const TransportConfig& config) {
  std::unique_ptr<UcxTransport> t(new UcxTransport(config));
  const std::string ctx = absl::StrCat("for transport '", config.name, "'");

  ucp_config_t* raw_config = nullptr;
  KVF_RETURN_IF_ERROR(UcxError(ucp_config_read(nullptr, nullptr, &raw_config), "ucp_config_read", ctx));
  UcpConfig ucp_config(raw_config, {});
  if (!config.ucx_tls.empty()) {
    KVF_RETURN_IF_ERROR(UcxError(ucp_config_modify(raw_config, "TLS", config.ucx_tls.c_str()),
                                 "ucp_config_modify(TLS)", ctx));
  }
  // Notice dead peers within seconds rather than UCX's default 20 s.
  (void)ucp_config_modify(raw_config, "KEEPALIVE_INTERVAL", "1s");

  ucp_params_t params{};
  params.field_mask = UCP_PARAM_FIELD_FEATURES | UCP_PARAM_FIELD_MT_WORKERS_SHARED |
                      UCP_PARAM_FIELD_NAME;
  params.features = UCP_FEATURE_RMA | UCP_FEATURE_AM;
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
  t->caps_.one_sided = true;
  t->caps_.two_sided = false;
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
    t->progress_thread_ = std::thread([raw = t.get()] { raw->ProgressLoop(); });
  }
  KVF_LOG(INFO) << "transport '" << config.name << "': " << t->caps_.fabric;
  return std::unique_ptr<Transport>(std::move(t));
}

UcxTransport::~UcxTransport() {
  stop_.store(true);
  if (progress_thread_.joinable()) progress_thread_.join();
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

void UcxTransport::ProgressLoop() {
  const std::string name = absl::StrCat("kvf-tp-", config_.name).substr(0, 15);
  pthread_setname_np(pthread_self(), name.c_str());
  int idle = 0;
  while (!stop_.load(std::memory_order_relaxed)) {
    if (ucp_worker_progress(worker_.get()) != 0) {
      idle = 0;
      continue;
    }
    // Spin briefly (latency), then back off so an idle transport costs
    // little CPU: yield, then sleep up to 100 us.
    if (++idle < 256) continue;
    if (idle < 1024) {
      std::this_thread::yield();
    } else {
      absl::SleepFor(absl::Microseconds(idle < 4096 ? 10 : 100));
    }
  }
}

absl::StatusOr<std::unique_ptr<MemoryRegion>> UcxTransport::RegisterMemory(void* data,
                                                                           size_t size,
                                                                           MemoryType type) {
  if (data == nullptr || size == 0) {
    return absl::InvalidArgumentError("RegisterMemory: empty range");
  }
  if (type == MemoryType::kCuda && !caps_.cuda_memory) {
    return absl::InvalidArgumentError(
        absl::StrCat("RegisterMemory: this UCX (", caps_.fabric, ") cannot move CUDA memory"));
  }
  const std::string ctx = absl::StrCat("of ", size, " bytes of ",
                                       std::string(MemoryTypeName(type)), " memory");
  ucp_mem_map_params_t mp{};
  mp.field_mask = UCP_MEM_MAP_PARAM_FIELD_ADDRESS | UCP_MEM_MAP_PARAM_FIELD_LENGTH |
                  UCP_MEM_MAP_PARAM_FIELD_MEMORY_TYPE;
  mp.address = data;
  mp.length = size;
  mp.memory_type = type == MemoryType::kCuda ? UCS_MEMORY_TYPE_CUDA : UCS_MEMORY_TYPE_HOST;
  ucp_mem_h raw_memh = nullptr;
  KVF_RETURN_IF_ERROR(UcxError(ucp_mem_map(context_.get(), &mp, &raw_memh), "ucp_mem_map", ctx));
  UcpMemh memh(raw_memh, ReleaseMemh{context_.get()});

  void* rkey_buffer = nullptr;
  size_t rkey_size = 0;
  KVF_RETURN_IF_ERROR(UcxError(ucp_rkey_pack(context_.get(), raw_memh, &rkey_buffer, &rkey_size),
                               "ucp_rkey_pack", ctx));
  UcpRkeyBuffer packed(rkey_buffer, {});

  RemoteDescriptor d;
  d.address = reinterpret_cast<uint64_t>(data);
  d.size = size;
  d.memory_type = type;
  d.rkey.assign(static_cast<const char*>(rkey_buffer), rkey_size);
  {
    absl::MutexLock l(&mu_);
    do {
      d.region_id = rng_();
    } while (d.region_id == 0 || regions_.contains(d.region_id));
    regions_[d.region_id] = RegionInfo{d.address, d.size};
  }
  return std::make_unique<UcxMemoryRegion>(this, data, size, type, std::move(memh), std::move(d));
}

absl::StatusOr<std::shared_ptr<Conn>> UcxTransport::OpenConn(PeerId id, std::string_view address) {
  KVF_ASSIGN_OR_RETURN(std::string_view raw, OpenAddress(kUcxBackendTag, address));
  uint64_t generation;
  {
    absl::MutexLock l(&mu_);
    generation = next_generation_++;
  }
  auto conn = std::make_shared<Conn>(this, id, generation,
                                     absl::StrCat("peer ", id, " (", config_.name, ")"));
  ucp_ep_params_t ep{};
  ep.field_mask = UCP_EP_PARAM_FIELD_REMOTE_ADDRESS | UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE |
                  UCP_EP_PARAM_FIELD_ERR_HANDLER;
  ep.address = reinterpret_cast<const ucp_address_t*>(raw.data());
  ep.err_mode = peer_failure_detection_ ? UCP_ERR_HANDLING_MODE_PEER : UCP_ERR_HANDLING_MODE_NONE;
  ep.err_handler.cb = &OnEndpointError;
  ep.err_handler.arg = conn.get();
  ucp_ep_h raw_ep = nullptr;
  ucs_status_t st = ucp_ep_create(worker_.get(), &ep, &raw_ep);
  if (st == UCS_ERR_UNREACHABLE) {
    // UCX 1.13's shared-memory transports (posix, sysv, cma) cannot report
    // peer failure, and refuse UCP_ERR_HANDLING_MODE_PEER. Connect without
    // it: a dead peer then shows up only as a missed deadline.
    ep.err_mode = UCP_ERR_HANDLING_MODE_NONE;
    st = ucp_ep_create(worker_.get(), &ep, &raw_ep);
    if (st == UCS_OK && !warned_no_peer_failure_.exchange(true)) {
      KVF_LOG(WARNING) << "transport '" << config_.name << "': the fabric (" << caps_.fabric
                       << ") cannot detect peer failure; dead peers surface as deadlines";
    }
  }
  KVF_RETURN_IF_ERROR(UcxError(st, "ucp_ep_create", absl::StrCat("to ", conn->label())));
  conn->Attach(UcpEndpoint(worker_.get(), raw_ep));
  return conn;
}

absl::StatusOr<PeerId> UcxTransport::Connect(std::string_view address) {
  PeerId id;
  {
    absl::MutexLock l(&mu_);
    id = next_peer_++;
  }
  KVF_ASSIGN_OR_RETURN(std::shared_ptr<Conn> conn, OpenConn(id, address));
  absl::MutexLock l(&mu_);
  peers_[id] = std::move(conn);
  return id;
}

absl::Status UcxTransport::Reconnect(PeerId peer, std::string_view address) {
  KVF_RETURN_IF_ERROR(FindConn(peer).status());
  KVF_ASSIGN_OR_RETURN(std::shared_ptr<Conn> conn, OpenConn(peer, address));
  std::shared_ptr<Conn> old = conn;
  {
    absl::MutexLock l(&mu_);
    auto it = peers_.find(peer);
    if (it == peers_.end()) return absl::NotFoundError(absl::StrCat("peer ", peer, " disconnected"));
    std::swap(old, it->second);
  }
  old->Close(absl::UnavailableError(absl::StrCat(old->label(), ": replaced by Reconnect()")));
  return absl::OkStatus();
}

absl::Status UcxTransport::Disconnect(PeerId peer) {
  std::shared_ptr<Conn> conn;
  {
    absl::MutexLock l(&mu_);
    auto it = peers_.find(peer);
    if (it == peers_.end()) return absl::NotFoundError(absl::StrCat("peer ", peer, " is not connected"));
    conn = std::move(it->second);
    peers_.erase(it);
  }
  conn->Close(absl::UnavailableError(absl::StrCat(conn->label(), ": disconnected")));
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<Conn>> UcxTransport::FindConn(PeerId peer) const {
  absl::MutexLock l(&mu_);
  auto it = peers_.find(peer);
  if (it == peers_.end()) {
    return absl::NotFoundError(absl::StrCat("peer ", peer, " is not connected to '", config_.name, "'"));
  }
  return it->second;
}

absl::Status UcxTransport::PeerHealth(PeerId peer) const {
  KVF_ASSIGN_OR_RETURN(std::shared_ptr<Conn> conn, FindConn(peer));
  return conn->health();
}

void UcxTransport::OnConnFailed(Conn* conn, ucs_status_t status) {
  absl::Status why = UcxError(status, "endpoint error", absl::StrCat("on ", conn->label()));
  conn->MarkFailed(why);
  absl::MutexLock l(&calls_mu_);
  for (auto& [id, call] : calls_) {
    if (call->conn == conn && !call->done) {
      call->result = why;
      call->done = true;
    }
  }
}

absl::StatusOr<std::unique_ptr<RemoteRegion>> UcxTransport::ImportRemote(
    PeerId peer, const RemoteDescriptor& d, absl::Time deadline) {
  if (d.memory_type == MemoryType::kCuda && !caps_.cuda_memory) {
    return absl::InvalidArgumentError("ImportRemote: this UCX cannot move CUDA memory");
  }
  std::string request;
  ByteWriter w(&request);
  w.Put<uint64_t>(d.region_id);
  w.Put<uint64_t>(d.address);
  w.Put<uint64_t>(d.size);
  KVF_RETURN_IF_ERROR(CallInternal(peer, kValidateRegion, request, deadline).status());
  KVF_ASSIGN_OR_RETURN(std::shared_ptr<Conn> conn, FindConn(peer));
  ucp_rkey_h rkey = nullptr;
  KVF_RETURN_IF_ERROR(conn->WithEndpoint([&](ucp_ep_h ep) {
    return UcxError(ucp_ep_rkey_unpack(ep, d.rkey.data(), &rkey), "ucp_ep_rkey_unpack",
                    absl::StrCat("from ", conn->label()));
  }));
  return std::make_unique<UcxRemoteRegion>(std::move(conn), d, UcpRkey(rkey, {}));
}

absl::StatusOr<std::string> UcxTransport::ValidateRegion(std::string_view request) {
  ByteReader r(request);
  uint64_t id = 0, address = 0, size = 0;
  if (!r.Get(&id) || !r.Get(&address) || !r.Get(&size) || r.remaining() != 0) {
    return absl::InvalidArgumentError("region validation: malformed request");
  }
  absl::MutexLock l(&mu_);
  auto it = regions_.find(id);
  if (it == regions_.end()) {
    return absl::NotFoundError(absl::StrCat("region ", absl::Hex(id), " is not registered with '",
                                            config_.name, "' (never, or deregistered)"));
  }
  if (it->second.address != address || it->second.size != size) {
    return absl::InvalidArgumentError(absl::StrCat("region ", absl::Hex(id),
                                                   ": descriptor does not match the registration"));
  }
  return std::string();
}

absl::StatusOr<std::unique_ptr<TransferRequest>> UcxTransport::Post(TransferBatch batch) {
  const bool get = batch.kind == TransferKind::kGet;
  if (!get && batch.kind != TransferKind::kPut) {
    return absl::UnimplementedError("Post: the UCX backend moves blocks one-sided (kGet/kPut)");
  }
  const auto* remote = dynamic_cast<const UcxRemoteRegion*>(batch.remote);
  if (remote == nullptr) {
    return absl::InvalidArgumentError("Post: kGet/kPut need a RemoteRegion from ImportRemote()");
  }
  KVF_ASSIGN_OR_RETURN(std::shared_ptr<Conn> conn, FindConn(remote->peer()));
  if (conn != remote->conn()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "Post: region ", absl::Hex(remote->descriptor().region_id), " was imported on an earlier connection to ",
        conn->label(), "; import it again after Reconnect()"));
  }
  if (batch.ops.empty()) return absl::InvalidArgumentError("Post: empty batch");
  const RemoteDescriptor& d = remote->descriptor();
  const auto* local = dynamic_cast<const UcxMemoryRegion*>(batch.local_region);
  if (batch.local_region != nullptr && local == nullptr) {
    return absl::InvalidArgumentError("Post: local region from another transport");
  }
  for (size_t i = 0; i < batch.ops.size(); ++i) {
    const TransferOp& op = batch.ops[i];
    if (op.local == nullptr || op.length == 0) {
      return absl::InvalidArgumentError(absl::StrCat("Post: op ", i, " is empty"));
    }
    if (op.remote_offset > d.size || op.length > d.size - op.remote_offset) {
      return absl::OutOfRangeError(absl::StrCat("Post: op ", i, " [", op.remote_offset, ", +",
                                                op.length, ") is outside remote region ",
                                                absl::Hex(d.region_id), " of ", d.size, " bytes"));
    }
    if (local != nullptr) {
      const auto begin = reinterpret_cast<uintptr_t>(local->data());
      const auto p = reinterpret_cast<uintptr_t>(op.local);
      if (p < begin || p - begin > local->size() || op.length > local->size() - (p - begin)) {
        return absl::OutOfRangeError(absl::StrCat("Post: op ", i, " local range is outside the local region"));
      }
    }
  }
  const char* call = get ? "ucp_get_nbx" : "ucp_put_nbx";
  auto request = std::make_unique<UcxTransferRequest>(
      this, conn,
      absl::StrCat(call, " batch of ", batch.ops.size(), get ? " ops from " : " ops to ",
                   conn->label()));
  BatchState* state = request->batch();
  // Gets complete when their data has landed; puts are followed by one flush
  // so that completion means the bytes are visible at the peer.
  absl::Status posted = conn->WithEndpoint([&](ucp_ep_h ep) -> absl::Status {
    auto track = [&](ucs_status_ptr_t r, const char* what) -> bool {
      if (UCS_PTR_IS_PTR(r)) {
        state->outstanding.fetch_add(1, std::memory_order_relaxed);
        return true;
      }
      if (UCS_PTR_IS_ERR(r)) {
        state->outstanding.fetch_add(1, std::memory_order_relaxed);
        state->OpDone(UcxError(UCS_PTR_STATUS(r), what, absl::StrCat(get ? "from " : "to ", conn->label())));
        return false;
      }
      return true;  // completed in place
    };
    for (const TransferOp& op : batch.ops) {
      ucp_request_param_t p{};
      p.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA;
      p.cb.send = &OnOpDone;
      p.user_data = state;
      const uint64_t addr = d.address + op.remote_offset;
      ucs_status_ptr_t r = get ? ucp_get_nbx(ep, op.local, op.length, addr, remote->rkey(), &p)
                               : ucp_put_nbx(ep, op.local, op.length, addr, remote->rkey(), &p);
      if (!track(r, call)) break;  // earlier ops are in flight and still tracked
    }
    if (!get) {
      ucp_request_param_t fp{};
      fp.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA;
      fp.cb.send = &OnOpDone;
      fp.user_data = state;
      track(ucp_ep_flush_nbx(ep, &fp), "ucp_ep_flush_nbx");
    }
    return absl::OkStatus();
  });
  state->OpDone(posted);  // the poster's share
  if (!posted.ok()) return posted;
  return std::unique_ptr<TransferRequest>(std::move(request));
}

absl::Status UcxTransport::RegisterHandler(uint16_t type, MessageHandler handler) {
  if (type >= kFirstReservedMessageType) {
    return absl::InvalidArgumentError(absl::StrCat("RegisterHandler: type ", type, " is reserved"));
  }
  absl::MutexLock l(&mu_);
  handlers_[type] = std::make_shared<MessageHandler>(std::move(handler));
  return absl::OkStatus();
}

absl::StatusOr<std::string> UcxTransport::Call(PeerId peer, uint16_t type,
                                               std::string_view request, absl::Time deadline) {
  if (type >= kFirstReservedMessageType) {
    return absl::InvalidArgumentError(absl::StrCat("Call: type ", type, " is reserved"));
  }
  return CallInternal(peer, type, request, deadline);
}

absl::StatusOr<std::string> UcxTransport::CallInternal(PeerId peer, uint16_t type,
                                                       std::string_view request,
                                                       absl::Time deadline) {
  if (request.size() > kMaxMessageBytes) {
    return absl::InvalidArgumentError(absl::StrCat("Call: request of ", request.size(),
                                                   " bytes exceeds ", kMaxMessageBytes));
  }
  KVF_ASSIGN_OR_RETURN(std::shared_ptr<Conn> conn, FindConn(peer));
  auto pending = std::make_shared<PendingCall>();
  pending->conn = conn.get();
  FrameHeader h;
  h.kind = FrameKind::kRequest;
  h.type = type;
  h.payload_length = static_cast<uint32_t>(request.size());
  {
    absl::MutexLock l(&calls_mu_);
    h.call_id = next_call_++;
    calls_[h.call_id] = pending;
  }
  absl::Cleanup forget = [&] {
    absl::MutexLock l(&calls_mu_);
    calls_.erase(h.call_id);
  };
  KVF_RETURN_IF_ERROR(SendFrame(*conn, h, request));

  auto done = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(calls_mu_) { return pending->done; };
  if (caller_progress()) {
    while (true) {
      {
        absl::MutexLock l(&calls_mu_);
        if (done()) break;
      }
      if (Progress()) continue;
      if (absl::Now() >= deadline) break;
    }
  }
  absl::MutexLock l(&calls_mu_);
  calls_mu_.AwaitWithDeadline(absl::Condition(&done), deadline);
  if (!pending->done) {
    return absl::DeadlineExceededError(
        absl::StrCat("Call of message type ", type, " to ", conn->label(), ": no response in time"));
  }
  return std::move(pending->result);
}

absl::Status UcxTransport::SendFrame(Conn& conn, const FrameHeader& h, std::string_view payload) {
  OutgoingFrame* frame = frames_.Add(EncodeFrameHeader(h), std::string(payload));
  return conn.WithEndpoint([&](ucp_ep_h ep) -> absl::Status {
    ucp_request_param_t p{};
    p.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA |
                     UCP_OP_ATTR_FIELD_FLAGS;
    p.cb.send = &OnFrameSent;
    p.user_data = frame;
    p.flags = UCP_AM_SEND_FLAG_EAGER | (h.kind == FrameKind::kRequest ? UCP_AM_SEND_FLAG_REPLY : 0);
    ucs_status_ptr_t r = ucp_am_send_nbx(ep, kAmId, frame->header.data(), frame->header.size(),
                                         frame->payload.data(), frame->payload.size(), &p);
    if (UCS_PTR_IS_PTR(r)) return absl::OkStatus();  // OnFrameSent frees the frame
    frames_.Remove(frame);
    return UcxError(UCS_PTR_STATUS(r), "ucp_am_send_nbx", absl::StrCat("to ", conn.label()));
  });
}

ucs_status_t UcxTransport::OnFrame(void* arg, const void* header, size_t header_length,
                                   void* data, size_t length, const ucp_am_recv_param_t* param) {
  auto* self = static_cast<UcxTransport*>(arg);
  if ((param->recv_attr & UCP_AM_RECV_ATTR_FLAG_RNDV) != 0) {
    self->dropped_frames_.fetch_add(1);
    KVF_LOG(WARNING) << "transport '" << self->config_.name
                     << "': dropped a rendezvous frame (messages are eager only)";
    return UCS_OK;
  }
  absl::StatusOr<FrameHeader> h = ParseFrameHeader(
      std::string_view(static_cast<const char*>(header), header_length), length);
  if (!h.ok()) {
    self->dropped_frames_.fetch_add(1);
    KVF_LOG(WARNING) << "transport '" << self->config_.name << "': dropped a frame: " << h.status();
    return UCS_OK;
  }
  const std::string_view payload(static_cast<const char*>(data), length);
  if (h->kind == FrameKind::kRequest) {
    const bool can_reply = (param->recv_attr & UCP_AM_RECV_ATTR_FIELD_REPLY_EP) != 0;
    self->HandleRequest(*h, payload, can_reply ? param->reply_ep : nullptr);
  } else {
    self->HandleResponse(*h, payload);
  }
  return UCS_OK;
}

void UcxTransport::HandleRequest(const FrameHeader& h, std::string_view payload,
                                 ucp_ep_h reply_ep) {
  absl::StatusOr<std::string> response;
  if (h.type == kValidateRegion) {
    response = ValidateRegion(payload);
  } else {
    std::shared_ptr<MessageHandler> handler;
    {
      absl::MutexLock l(&mu_);
      auto it = handlers_.find(h.type);
      if (it != handlers_.end()) handler = it->second;
    }
    if (handler == nullptr) {
      response = absl::UnimplementedError(
          absl::StrCat("'", config_.name, "' has no handler for message type ", h.type));
    } else {
      response = (*handler)(payload);
    }
  }
  if (response.ok() && response->size() > kMaxMessageBytes) {
    response = absl::InternalError(absl::StrCat("handler for message type ", h.type, " returned ",
                                                response->size(), " bytes (max ", kMaxMessageBytes, ")"));
  }
  if (reply_ep == nullptr) return;
  FrameHeader rh;
  rh.kind = FrameKind::kResponse;
  rh.type = h.type;
  rh.call_id = h.call_id;
  rh.status_code = static_cast<uint32_t>(response.status().code());
  std::string body = response.ok() ? std::move(*response) : std::string(response.status().message());
  rh.payload_length = static_cast<uint32_t>(body.size());
  OutgoingFrame* frame = frames_.Add(EncodeFrameHeader(rh), std::move(body));
  ucp_request_param_t p{};
  p.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA | UCP_OP_ATTR_FIELD_FLAGS;
  p.cb.send = &OnFrameSent;
  p.user_data = frame;
  p.flags = UCP_AM_SEND_FLAG_EAGER;
  ucs_status_ptr_t r = ucp_am_send_nbx(reply_ep, kAmId, frame->header.data(), frame->header.size(),
                                       frame->payload.data(), frame->payload.size(), &p);
  if (!UCS_PTR_IS_PTR(r)) frames_.Remove(frame);
}

void UcxTransport::HandleResponse(const FrameHeader& h, std::string_view payload) {
  absl::MutexLock l(&calls_mu_);
  auto it = calls_.find(h.call_id);
  if (it == calls_.end() || it->second->done) return;  // late (deadline passed) or forged
  PendingCall& call = *it->second;
  if (h.status_code == 0) {
    call.result = std::string(payload);
  } else {
    call.result = absl::Status(static_cast<absl::StatusCode>(h.status_code),
                               absl::StrCat(std::string(payload), " (from ", call.conn->label(), ")"));
  }
  call.done = true;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Transport>> CreateUcxTransport(const TransportConfig& config) {
  return UcxTransport::Create(config);
}

}  // namespace kvf::transport_internal
