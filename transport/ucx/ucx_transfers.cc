// UCX backend: one-sided transfers. A batch is posted as one ucp_get_nbx or
// ucp_put_nbx per op (plus one ucp_ep_flush_nbx for puts) and tracked by a
// BatchState; UcxTransferRequest is the caller's lease on it.
#include <sys/mman.h>

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"
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

}  // namespace

void OnOpDone(void* request, ucs_status_t status, void* user_data) {
  auto* batch = static_cast<BatchState*>(user_data);
  ucp_request_free(request);
  batch->OpDone(UcxError(status, "transfer", batch->what));
}

void UcxRemoteRegion::Populate(uint64_t offset, uint64_t length) const {
#ifndef MADV_POPULATE_WRITE
  constexpr int MADV_POPULATE_WRITE = 23;  // Linux 5.14; older headers lack it
#endif
  const uint64_t first = offset / kGranule, last = (offset + length - 1) / kGranule;
  for (uint64_t g = first; g <= last; ++g) {
    std::atomic<uint64_t>& word = populated_[g / 64];
    const uint64_t bit = uint64_t{1} << (g % 64);
    if ((word.load(std::memory_order_relaxed) & bit) != 0) continue;
    // The mapping starts at the region's first byte, which need not be page
    // aligned; madvise wants page-aligned ranges inside the mapping.
    const uintptr_t page = 4096;
    const uintptr_t base = reinterpret_cast<uintptr_t>(mapped_);
    const uintptr_t begin = (base + g * kGranule + page - 1) & ~(page - 1);
    const uintptr_t end = (base + std::min<uint64_t>((g + 1) * kGranule, descriptor_.size)) & ~(page - 1);
    if (end > begin) (void)madvise(reinterpret_cast<void*>(begin), end - begin, MADV_POPULATE_WRITE);
    word.fetch_or(bit, std::memory_order_relaxed);
  }
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
