// The UCX backend's own types, shared by its translation units. Private to
// transport/ucx/. Who does what:
//   ucx_transport.cc    context/worker lifecycle, capabilities, progress thread
//   ucx_connections.cc  peers: endpoints, connect/reconnect, failure handling
//   ucx_memory.cc       registration, allocation, descriptors, remote keys
//   ucx_transfers.cc    get/put batches and their requests
//   ucx_tagged.cc       send/receive batches, handlers' reply sends
//   ucx_messages.cc     request/response frames over active messages
//
// Locking: never call into UCX while holding mu_ or calls_mu_. UCX callbacks
// run with the worker's lock held and take those mutexes, so the order is
// always worker lock -> mu_/calls_mu_. A connection's ep_mu is taken (shared)
// around every call that uses its endpoint and (exclusive) to close it.
#ifndef KVF_TRANSPORT_UCX_UCX_INTERNAL_H_
#define KVF_TRANSPORT_UCX_UCX_INTERNAL_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include <ucp/api/ucp.h>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/status_macros.h"
#include "transport/internal/wire.h"
#include "transport/transport.h"
#include "transport/ucx/ucx_handles.h"

namespace kvf::transport_internal::ucx {

inline constexpr unsigned kAmId = 0x6b;  // one AM id carries every frame
inline constexpr uint8_t kUcxBackendTag = 1;
inline constexpr uint16_t kValidateRegion = 0xff01;
inline constexpr absl::Duration kReleaseTimeout = absl::Seconds(1);

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
  // Whether the endpoint has RMA lanes of its own (shared memory, RDMA)
  // rather than UCX's emulation over active messages (TCP). Set once after
  // the endpoint is created.
  bool native_rma() const { return native_rma_.load(std::memory_order_relaxed); }
  void set_native_rma(bool v) { native_rma_.store(v, std::memory_order_relaxed); }
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
  // UCS_ERR_CANCELED. Takes the worker lock (ucx_connections.cc).
  void Close(absl::Status why);
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
  std::atomic<bool> native_rma_{true};
};

// A registered (RegisterMemory) or UCX-allocated (AllocateMemory) region.
// For an allocated one, unmapping the memh also frees the memory.
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

// An imported region. Thread-safety: every method may be called
// concurrently; Populate and the background populate share the granule
// bitmap, whose bits are hints (a copy into an unpopulated page only faults).
class UcxRemoteRegion final : public RemoteRegion {
 public:
  UcxRemoteRegion(std::shared_ptr<Conn> conn, RemoteDescriptor d, UcpRkey rkey, void* mapped)
      : conn_(std::move(conn)), descriptor_(std::move(d)), rkey_(std::move(rkey)), mapped_(mapped) {
    if (mapped_ != nullptr) {
      granules_ = (descriptor_.size + kGranule - 1) / kGranule;
      const uint64_t words = granules_ / 64 + 1;
      populated_ = std::make_unique<std::atomic<uint64_t>[]>(words);
      for (uint64_t i = 0; i < words; ++i) populated_[i].store(0, std::memory_order_relaxed);
    }
  }
  // Stops the background populate and waits for it (at most one granule,
  // ~0.1 ms) before the rkey, and with it the mapping, goes away.
  ~UcxRemoteRegion() override;
  PeerId peer() const override { return conn_->id(); }
  const RemoteDescriptor& descriptor() const override { return descriptor_; }
  const std::shared_ptr<Conn>& conn() const { return conn_; }
  ucp_rkey_h rkey() const { return rkey_.get(); }
  // Where the whole region is mapped into this process (ucp_rkey_ptr: a
  // shared-memory segment of a peer on this host), or null. Valid while the
  // rkey lives.
  char* mapped() const { return static_cast<char*>(mapped_); }
  // Before touching [offset, offset + length) of the mapping: populates the
  // page tables of the granules it covers that this process has not touched
  // yet, in one madvise each. On a paravirtualised guest a page fault costs
  // ~14 us, so a 256 KiB copy into fresh pages took 64 of them (~0.9 ms);
  // MADV_POPULATE_WRITE does the same work in the kernel without the traps.
  // Best effort: where it fails, the copy faults as before.
  void Populate(uint64_t offset, uint64_t length) const;
  // Populates the whole mapping on a thread of its own (`kvf-populate`), a
  // granule at a time in address order, after asking for transparent huge
  // pages (best effort): one read per page, which maps it (writable: the
  // mapping is a shared-memory segment) and changes nothing, so transfers
  // run during it. Shares the bitmap with Populate, so a transfer finds the
  // granules ahead of it done and skips them, and the thread skips those a
  // transfer did. Called once, by ImportRemote; a no-op when the region is
  // not mapped.
  void PopulateInBackground();
  // Granules (1 MiB) of the mapping, and those populated so far (by the
  // background thread or by transfers; one that madvise failed on counts:
  // it is not tried again). Zero for a region that is not mapped.
  uint64_t granules() const { return granules_; }
  uint64_t populated_granules() const { return populated_count_.load(std::memory_order_relaxed); }
  // True once the background populate has ended (every granule done). False
  // before it started, while it runs, and for a region that is not mapped.
  bool background_populate_done() const { return populate_done_.load(std::memory_order_acquire); }

 private:
  static constexpr uint64_t kGranule = 1 << 20;
  bool GranuleDone(uint64_t g) const;
  void MarkGranule(uint64_t g) const;
  // The whole pages of granule `g` inside the region: [first, second).
  std::pair<char*, char*> GranulePages(uint64_t g) const;
  void PopulateAll();

  std::shared_ptr<Conn> conn_;
  const RemoteDescriptor descriptor_;
  UcpRkey rkey_;  // destroyed before conn_ releases the endpoint
  void* const mapped_;
  uint64_t granules_ = 0;
  // One bit per granule of the mapping: populated here already.
  mutable std::unique_ptr<std::atomic<uint64_t>[]> populated_;
  mutable std::atomic<uint64_t> populated_count_{0};
  std::atomic<bool> stop_populating_{false};
  std::atomic<bool> populate_done_{false};
  std::atomic<char> touched_{0};  // what the reads saw, so they are not optimised away
  std::thread populator_;  // joined by the destructor
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
  // State the backend's callbacks use beside this one (a receive batch's
  // outstanding requests); lives exactly as long as the batch.
  std::shared_ptr<void> keep_alive;

  // One UCX request (or the poster, with OK) is done.
  void OpDone(absl::Status s);

 private:
  void Finish();
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
  OutgoingFrame* Add(std::string header, std::string payload);
  void Remove(OutgoingFrame* f);

 private:
  absl::Mutex mu_;
  absl::flat_hash_map<OutgoingFrame*, std::unique_ptr<OutgoingFrame>> frames_ ABSL_GUARDED_BY(mu_);
};

struct PendingCall {
  const Conn* conn = nullptr;
  bool done = false;
  absl::StatusOr<std::string> result = std::string();
  // CallAsync: runs (outside calls_mu_) instead of waking a waiter.
  Transport::CallCallback callback;
  absl::Time deadline = absl::InfiniteFuture();
};

// A caller's lease on a batch (ucx_transfers.cc); *state receives its
// BatchState. `cancel`: see UcxTransferRequest.
std::unique_ptr<TransferRequest> MakeTransferRequest(UcxTransport* owner,
                                                     std::shared_ptr<Conn> conn, std::string what,
                                                     BatchState** state,
                                                     std::function<void()> cancel = {});

// UCX callbacks (C function pointers).
void OnOpDone(void* request, ucs_status_t status, void* user_data);
void OnTagRecvDone(void* request, ucs_status_t status, const ucp_tag_recv_info_t* info,
                   void* user_data);
void OnEndpointError(void* arg, ucp_ep_h ep, ucs_status_t status);
void OnFrameSent(void* request, ucs_status_t status, void* user_data);

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
  absl::StatusOr<std::unique_ptr<MemoryRegion>> AllocateMemory(size_t size,
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
  absl::Status RegisterDataHandler(uint16_t type, DataMessageHandler handler) override;
  bool NativeOneSided(PeerId peer) const override;
  std::byte* MappedAddress(const RemoteRegion& remote, uint64_t offset,
                           uint64_t length) const override;
  absl::StatusOr<std::string> Call(PeerId peer, uint16_t type, std::string_view request,
                                   absl::Time deadline) override;
  absl::Status CallAsync(PeerId peer, uint16_t type, std::string_view request, absl::Time deadline,
                         CallCallback done) override;
  absl::Status Notify(PeerId peer, uint16_t type, std::string_view message) override;
  // Fails the asynchronous calls whose deadline has passed (progress thread,
  // when idle, and CallAsync).
  void ExpireAsyncCalls();
  bool Progress() override {
    WorkerLock l(this);
    return ucp_worker_progress(worker_.get()) != 0;
  }

  // Serialises this process's hot calls into the worker (progress, sends,
  // posts). UCX's own multi-thread lock is a spinlock: with more threads than
  // cores (16 callers on 2 cores) a preempted holder makes every other caller
  // spin away its time slice, which profiled at 45% of the client's CPU.
  // This lock sleeps instead, so the UCX lock under it is never contended.
  // Re-entrant on the thread that holds it: handlers run inside progress and
  // may send. Order: Conn::ep_mu_ -> WorkerLock -> UCX's lock -> mu_,
  // calls_mu_, batch and frame-registry locks (callbacks).
  class WorkerLock {
   public:
    explicit WorkerLock(UcxTransport* t) : t_(t), owner_(holder_ != t) {
      if (owner_) {
        t_->worker_mu_.Lock();
        previous_ = holder_;
        holder_ = t_;
      }
    }
    ~WorkerLock() {
      if (owner_) {
        holder_ = previous_;
        t_->worker_mu_.Unlock();
      }
    }
    WorkerLock(const WorkerLock&) = delete;
    WorkerLock& operator=(const WorkerLock&) = delete;

   private:
    static thread_local const UcxTransport* holder_;
    UcxTransport* const t_;
    const bool owner_;
    const UcxTransport* previous_ = nullptr;
  };

  // Keeps a batch UCX never completed until the worker is gone.
  void Abandon(std::unique_ptr<BatchState> state) {
    absl::MutexLock l(&mu_);
    abandoned_.push_back(std::move(state));
  }
  bool caller_progress() const { return config_.progress == ProgressMode::kCaller; }
  // FAILED_PRECONDITION naming `api` when the context has no one-sided access.
  absl::Status CheckOneSided(const char* api) const {
    if (config_.one_sided) return absl::OkStatus();
    return absl::FailedPreconditionError(absl::StrCat(
        api, ": transport '", config_.name, "' was created without one-sided access (messages only)"));
  }
  // Wakes the progress thread if it sleeps on the worker's event fd: called
  // after posting work that may need progress no event would announce.
  void WakeProgress() {
    if (progress_sleeping_.load(std::memory_order_seq_cst)) ucp_worker_signal(worker_.get());
  }
  void ForgetRegion(uint64_t region_id) {
    absl::MutexLock l(&mu_);
    regions_.erase(region_id);
  }
  void OnConnFailed(Conn* conn, ucs_status_t status);

 private:
  explicit UcxTransport(TransportConfig config) : config_(std::move(config)) {}
  absl::StatusOr<std::shared_ptr<Conn>> FindConn(PeerId peer) const;
  absl::StatusOr<std::shared_ptr<Conn>> OpenConn(PeerId id, std::string_view address);
  bool HasNativeRma(ucp_ep_h ep);
  // Packs the rkey of `memh`, records the region and wraps it.
  absl::StatusOr<std::unique_ptr<MemoryRegion>> MakeRegion(void* data, size_t size, MemoryType type,
                                                           UcpMemh memh, const std::string& ctx);
  absl::StatusOr<std::unique_ptr<TransferRequest>> PostMapped(const TransferBatch& batch,
                                                              const UcxRemoteRegion& remote,
                                                              std::shared_ptr<Conn> conn);
  // kSend/kRecv batches (ucx_tagged.cc).
  absl::StatusOr<std::unique_ptr<TransferRequest>> PostTagged(const TransferBatch& batch);
  // Posts a data handler's ReplySends on the requester's endpoint; runs
  // sends.done when they complete (ucx_tagged.cc).
  void SendReplyData(ucp_ep_h reply_ep, ReplySends sends);
  // INVALID_ARGUMENT for a reserved type (unless `internal`) or an oversize
  // message, naming `api`.
  static absl::Status CheckMessage(const char* api, uint16_t type, size_t size,
                                   bool internal = false);
  // Registers `pending` under a new call id and sends the request; nothing
  // stays registered when the send fails.
  absl::StatusOr<uint64_t> SendCall(Conn& conn, uint16_t type, std::string_view request,
                                    std::shared_ptr<PendingCall> pending);
  void ForgetCall(uint64_t call_id);
  absl::StatusOr<std::string> CallInternal(PeerId peer, uint16_t type, std::string_view request,
                                           absl::Time deadline);
  absl::Status SendFrame(Conn& conn, const FrameHeader& h, std::string_view payload,
                        bool want_reply);
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
  // The worker's event fd (kThread mode, UCP_FEATURE_WAKEUP), or -1 when the
  // fabric cannot provide one; then the thread backs off with short sleeps.
  int event_fd_ = -1;
  std::atomic<bool> progress_sleeping_{false};
  // KVF_UCX_NO_MAPPED=1 sends every transfer through UCX even where the
  // peer's region is mapped here (for comparisons; docs/transport.md).
  bool mapped_disabled_ = false;
  std::atomic<uint64_t> dropped_frames_{0};
  std::atomic<bool> warned_no_peer_failure_{false};
  // False when every resource is shared memory: UCX 1.13's posix/sysv/cma
  // cannot report peer failure and refuse UCP_ERR_HANDLING_MODE_PEER.
  bool peer_failure_detection_ = true;

  absl::Mutex worker_mu_;  // WorkerLock
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
  absl::flat_hash_map<uint16_t, std::shared_ptr<DataMessageHandler>> data_handlers_
      ABSL_GUARDED_BY(mu_);
  std::mt19937_64 rng_ ABSL_GUARDED_BY(mu_){std::random_device{}()};

  absl::Mutex calls_mu_;
  uint64_t next_call_ ABSL_GUARDED_BY(calls_mu_) = 1;
  size_t async_calls_ ABSL_GUARDED_BY(calls_mu_) = 0;  // pending CallAsync entries
  absl::flat_hash_map<uint64_t, std::shared_ptr<PendingCall>> calls_ ABSL_GUARDED_BY(calls_mu_);
};

}  // namespace kvf::transport_internal::ucx

#endif  // KVF_TRANSPORT_UCX_UCX_INTERNAL_H_
