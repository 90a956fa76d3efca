// UCX backend: one-sided transfers. A batch is posted as one ucp_get_nbx or
// ucp_put_nbx per op (plus one ucp_ep_flush_nbx for puts) and tracked by a
// BatchState; UcxTransferRequest is the caller's lease on it.
#include <pthread.h>
#include <sys/mman.h>

#include <algorithm>
#include <cstring>
#include <functional>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/logging.h"
#include "transport/ucx/ucx_internal.h"
#include "transport/ucx/ucx_status.h"

namespace kvf::transport_internal::ucx {

void BatchState::OpDone(absl::Status s) {
  if (!s.ok()) {
    absl::MutexLock l(&mu);
    if (first_error.ok()) first_error = std::move(s);
  }
  if (outstanding.fetch_sub(1, std::memory_order_acq_rel) == 1) Finish();
}

void BatchState::Finish() {
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

namespace {

class UcxTransferRequest final : public TransferRequest {
 public:
  // `cancel`, when set, replaces the default Cancel (closing the connection,
  // the only way to withdraw one-sided operations): receives are cancelled
  // one by one instead.
  UcxTransferRequest(UcxTransport* owner, std::shared_ptr<Conn> conn, std::string what,
                     std::function<void()> cancel = {})
      : owner_(owner), conn_(std::move(conn)), cancel_(std::move(cancel)) {
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
    if (cancel_) {
      cancel_();
      return;
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
  std::function<void()> cancel_;
  std::unique_ptr<BatchState> state_ = std::make_unique<BatchState>();
};

}  // namespace

std::unique_ptr<TransferRequest> MakeTransferRequest(UcxTransport* owner,
                                                     std::shared_ptr<Conn> conn, std::string what,
                                                     BatchState** state,
                                                     std::function<void()> cancel) {
  auto request = std::make_unique<UcxTransferRequest>(owner, std::move(conn), std::move(what),
                                                      std::move(cancel));
  *state = request->batch();
  return request;
}

void OnOpDone(void* request, ucs_status_t status, void* user_data) {
  auto* batch = static_cast<BatchState*>(user_data);
  ucp_request_free(request);
  batch->OpDone(UcxError(status, "transfer", batch->what));
}

#ifndef MADV_POPULATE_WRITE
constexpr int MADV_POPULATE_WRITE = 23;  // Linux 5.14; older headers lack it
#endif

namespace {
constexpr uintptr_t kPage = 4096;
}  // namespace

bool UcxRemoteRegion::GranuleDone(uint64_t g) const {
  return (populated_[g / 64].load(std::memory_order_relaxed) & (uint64_t{1} << (g % 64))) != 0;
}

void UcxRemoteRegion::MarkGranule(uint64_t g) const {
  // Two threads may both populate a granule before either marks it; that
  // repeats work, nothing else.
  const uint64_t bit = uint64_t{1} << (g % 64);
  if ((populated_[g / 64].fetch_or(bit, std::memory_order_relaxed) & bit) == 0) {
    populated_count_.fetch_add(1, std::memory_order_relaxed);
  }
}

std::pair<char*, char*> UcxRemoteRegion::GranulePages(uint64_t g) const {
  // The mapping starts at the region's first byte, which need not be page
  // aligned; only whole pages inside the region are touched.
  const uintptr_t base = reinterpret_cast<uintptr_t>(mapped_);
  const uintptr_t begin = (base + g * kGranule + kPage - 1) & ~(kPage - 1);
  const uintptr_t end = (base + std::min<uint64_t>((g + 1) * kGranule, descriptor_.size)) & ~(kPage - 1);
  return {reinterpret_cast<char*>(begin), reinterpret_cast<char*>(std::max(begin, end))};
}

void UcxRemoteRegion::Populate(uint64_t offset, uint64_t length) const {
  if (populated_granules() == granules_) return;  // the background populate finished
  const uint64_t first = offset / kGranule, last = (offset + length - 1) / kGranule;
  for (uint64_t g = first; g <= last; ++g) {
    if (GranuleDone(g)) continue;
    const auto [begin, end] = GranulePages(g);
    // Set even when madvise fails: the copy then faults as before, and the
    // granule is not tried again.
    if (end > begin) (void)madvise(begin, end - begin, MADV_POPULATE_WRITE);
    MarkGranule(g);
  }
}

void UcxRemoteRegion::PopulateInBackground() {
  if (mapped_ == nullptr || populator_.joinable()) return;
  populator_ = std::thread([this] {
    pthread_setname_np(pthread_self(), "kvf-populate");
    PopulateAll();
    populate_done_.store(true, std::memory_order_release);
  });
}

void UcxRemoteRegion::PopulateAll() {
  // Huge pages, where the peer's segment has them (docs/operating.md, "Arena
  // memory"), are then mapped here whole. Best effort.
#ifdef MADV_HUGEPAGE
  char* const first = GranulePages(0).first;
  char* const last = GranulePages(granules_ - 1).second;
  if (last > first) (void)madvise(first, last - first, MADV_HUGEPAGE);
#endif
  // One read per page, not MADV_POPULATE_WRITE: madvise holds the process's
  // mm lock (shared) for the whole call, so a background thread preempted
  // inside it would hold up every mmap, munmap and mprotect of the process,
  // and the lock's readers queued behind those (a put's own Populate among
  // them). A read fault takes only this mapping's lock (per-VMA locking) and
  // maps the page writable (a shared segment needs no write notification),
  // with its neighbours (fault-around): it costs what madvise does (0.08-0.1
  // s/GiB on the development VM) and copies after it run at warm speed. A
  // read changes no byte.
  const absl::Time start = absl::Now();
  char sink = 0;
  for (uint64_t g = 0; g < granules_; ++g) {
    // Checked per granule (~0.1 ms), so the destructor waits at most that.
    if (stop_populating_.load(std::memory_order_relaxed)) return;
    if (GranuleDone(g)) continue;
    const auto [begin, end] = GranulePages(g);
    for (const char* p = begin; p < end; p += kPage) sink ^= __atomic_load_n(p, __ATOMIC_RELAXED);
    MarkGranule(g);
    std::this_thread::yield();  // in small bites: transfers waiting for a core go first
  }
  touched_.store(sink, std::memory_order_relaxed);
  KVF_LOG(INFO) << "transport: populated the mapped region of " << conn_->label() << " ("
                << (descriptor_.size >> 20) << " MiB) in " << absl::Now() - start;
}

UcxRemoteRegion::~UcxRemoteRegion() {
  stop_populating_.store(true, std::memory_order_relaxed);
  if (populator_.joinable()) populator_.join();
  // What refers to the mapped addresses goes before the rkey unmaps them.
  DropAttachments();
}

std::byte* UcxTransport::MappedAddress(const RemoteRegion& region, uint64_t offset,
                                       uint64_t length) const {
  const auto* remote = dynamic_cast<const UcxRemoteRegion*>(&region);
  if (remote == nullptr || remote->mapped() == nullptr || mapped_disabled_) return nullptr;
  const RemoteDescriptor& d = remote->descriptor();
  if (length == 0 || offset > d.size || length > d.size - offset) return nullptr;
  // As PostMapped: a peer known to have failed, or a region imported on an
  // earlier connection, is not touched.
  absl::StatusOr<std::shared_ptr<Conn>> conn = FindConn(remote->peer());
  if (!conn.ok() || *conn != remote->conn() || !(*conn)->health().ok()) return nullptr;
  remote->Populate(offset, length);
  return reinterpret_cast<std::byte*>(remote->mapped() + offset);
}

absl::StatusOr<std::unique_ptr<TransferRequest>> UcxTransport::PostMapped(
    const TransferBatch& batch, const UcxRemoteRegion& remote, std::shared_ptr<Conn> conn) {
  // The peer's region is mapped here: the bytes move now, on this thread.
  // Completion means they are in place (a put is visible to the peer: the
  // mapping is coherent shared memory). A peer known to have failed still
  // fails the batch, as the UCX path would.
  KVF_RETURN_IF_ERROR(conn->health());
  const bool get = batch.kind == TransferKind::kGet;
  char* base = remote.mapped();
  for (const TransferOp& op : batch.ops) {
    remote.Populate(op.remote_offset, op.length);
    if (get) {
      std::memcpy(op.local, base + op.remote_offset, op.length);
    } else {
      std::memcpy(base + op.remote_offset, op.local, op.length);
    }
  }
  auto request = std::make_unique<UcxTransferRequest>(
      this, std::move(conn),
      absl::StrCat("mapped ", get ? "get" : "put", " batch of ", batch.ops.size(), " ops"));
  request->batch()->OpDone(absl::OkStatus());
  return std::unique_ptr<TransferRequest>(std::move(request));
}

absl::StatusOr<std::unique_ptr<TransferRequest>> UcxTransport::Post(TransferBatch batch) {
  KVF_RETURN_IF_ERROR(CheckOneSided("Post"));
  if (batch.kind == TransferKind::kSend || batch.kind == TransferKind::kRecv) {
    return PostTagged(batch);
  }
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
  if (remote->mapped() != nullptr && !mapped_disabled_ &&
      (local != nullptr ? local->memory_type() == MemoryType::kHost : !caps_.cuda_memory)) {
    return PostMapped(batch, *remote, std::move(conn));
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
    WorkerLock l(this);
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
  WakeProgress();
  if (!posted.ok()) return posted;
  return std::unique_ptr<TransferRequest>(std::move(request));
}

}  // namespace kvf::transport_internal::ucx
