// UCX backend: the two-sided lane. kSend/kRecv batches are tagged messages
// (ucp_tag_send_nbx / ucp_tag_recv_nbx): large ones move by UCX's rendezvous
// protocol straight into the receiver's buffer, which over TCP runs several
// times faster than the one-sided gets UCX emulates there with active
// messages (docs/transport.md, "Two-sided lane"). A data handler's reply
// sends (ReplySends) go out the same way on the requester's endpoint.
//
// Receives are posted on the worker, not on a connection: a tag matches a
// message from any peer, so callers keep their tags unique. They can be
// withdrawn one by one (ucp_request_cancel), so cancelling a receive batch
// leaves the connections alone, unlike one-sided batches.
#include <atomic>
#include <memory>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "transport/ucx/ucx_internal.h"
#include "transport/ucx/ucx_status.h"

namespace kvf::transport_internal::ucx {
namespace {

// The outstanding UCX requests of one receive batch, so Cancel can withdraw
// them. Touched only with the worker lock held (posting, callbacks, Cancel),
// which serialises it.
struct RecvBatch {
  BatchState* state = nullptr;
  std::vector<void*> requests;  // null once completed (or never posted)
  struct Slot {
    RecvBatch* batch;
    size_t index;
  };
  std::vector<Slot> slots;
};

// The reply sends of one data-handler request.
struct ReplyState {
  std::atomic<int64_t> outstanding{1};  // + one per posted send
  absl::Mutex mu;
  absl::Status first_error ABSL_GUARDED_BY(mu);
  std::function<void(absl::Status)> done;

  void OpDone(absl::Status s) {
    if (!s.ok()) {
      absl::MutexLock l(&mu);
      if (first_error.ok()) first_error = std::move(s);
    }
    if (outstanding.fetch_sub(1, std::memory_order_acq_rel) != 1) return;
    absl::Status result;
    {
      absl::MutexLock l(&mu);
      result = first_error;
    }
    if (done) done(std::move(result));
    delete this;
  }
};

void OnReplySent(void* request, ucs_status_t status, void* user_data) {
  ucp_request_free(request);
  static_cast<ReplyState*>(user_data)->OpDone(UcxError(status, "reply send", "to the caller"));
}

absl::Status CheckTaggedOps(const TransferBatch& batch) {
  if (batch.ops.empty()) return absl::InvalidArgumentError("Post: empty batch");
  for (size_t i = 0; i < batch.ops.size(); ++i) {
    if (batch.ops[i].local == nullptr || batch.ops[i].length == 0) {
      return absl::InvalidArgumentError(absl::StrCat("Post: op ", i, " is empty"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

void OnTagRecvDone(void* request, ucs_status_t status, const ucp_tag_recv_info_t* /*info*/,
                   void* user_data) {
  auto* slot = static_cast<RecvBatch::Slot*>(user_data);
  slot->batch->requests[slot->index] = nullptr;
  ucp_request_free(request);
  // A message longer than the buffer fails with UCS_ERR_MESSAGE_TRUNCATED.
  slot->batch->state->OpDone(UcxError(status, "ucp_tag_recv_nbx", slot->batch->state->what));
}

absl::StatusOr<std::unique_ptr<TransferRequest>> UcxTransport::PostTagged(
    const TransferBatch& batch) {
  KVF_RETURN_IF_ERROR(CheckTaggedOps(batch));
  BatchState* state = nullptr;
  if (batch.kind == TransferKind::kSend) {
    KVF_ASSIGN_OR_RETURN(std::shared_ptr<Conn> conn, FindConn(batch.peer));
    std::unique_ptr<TransferRequest> request = MakeTransferRequest(
        this, conn, absl::StrCat("tagged send of ", batch.ops.size(), " ops to ", conn->label()),
        &state);
    absl::Status posted = conn->WithEndpoint([&](ucp_ep_h ep) -> absl::Status {
      WorkerLock l(this);
      for (const TransferOp& op : batch.ops) {
        ucp_request_param_t p{};
        p.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA;
        p.cb.send = &OnOpDone;
        p.user_data = state;
        ucs_status_ptr_t r = ucp_tag_send_nbx(ep, op.local, op.length, op.tag, &p);
        if (UCS_PTR_IS_PTR(r)) {
          state->outstanding.fetch_add(1, std::memory_order_relaxed);
        } else if (UCS_PTR_IS_ERR(r)) {
          return UcxError(UCS_PTR_STATUS(r), "ucp_tag_send_nbx", absl::StrCat("to ", conn->label()));
        }
      }
      return absl::OkStatus();
    });
    state->OpDone(posted);  // the poster's share
    WakeProgress();
    if (!posted.ok()) return posted;
    return request;
  }

  auto recv = std::make_shared<RecvBatch>();
  recv->requests.assign(batch.ops.size(), nullptr);
  recv->slots.reserve(batch.ops.size());
  for (size_t i = 0; i < batch.ops.size(); ++i) recv->slots.push_back({recv.get(), i});
  // Cancel withdraws what is still posted; each cancelled receive completes
  // (its callback runs) with UCS_ERR_CANCELED. The worker lock keeps the
  // callbacks, and so the request list, still while it walks.
  auto cancel = [this, r = recv.get()] {
    WorkerLock l(this);
    for (void* req : std::vector<void*>(r->requests)) {
      if (req != nullptr) ucp_request_cancel(worker_.get(), req);
    }
  };
  std::unique_ptr<TransferRequest> request = MakeTransferRequest(
      this, nullptr, absl::StrCat("tagged receive of ", batch.ops.size(), " ops"), &state,
      std::move(cancel));
  recv->state = state;
  state->keep_alive = recv;
  absl::Status posted;
  {
    WorkerLock l(this);
    for (size_t i = 0; i < batch.ops.size(); ++i) {
      const TransferOp& op = batch.ops[i];
      ucp_request_param_t p{};
      p.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA;
      p.cb.recv = &OnTagRecvDone;
      p.user_data = &recv->slots[i];
      ucs_status_ptr_t r = ucp_tag_recv_nbx(worker_.get(), op.local, op.length, op.tag,
                                            ~ucp_tag_t{0}, &p);
      if (UCS_PTR_IS_PTR(r)) {
        state->outstanding.fetch_add(1, std::memory_order_relaxed);
        recv->requests[i] = r;
      } else if (UCS_PTR_IS_ERR(r)) {
        posted = UcxError(UCS_PTR_STATUS(r), "ucp_tag_recv_nbx", state->what);
        break;
      }
    }
  }
  if (!posted.ok()) request->Cancel();  // withdraws the ones already posted
  state->OpDone(posted);
  WakeProgress();
  if (!posted.ok()) return posted;
  return request;
}

void UcxTransport::SendReplyData(ucp_ep_h reply_ep, ReplySends sends) {
  auto* reply = new ReplyState;
  reply->done = std::move(sends.done);
  WorkerLock l(this);
  for (const TransferOp& op : sends.ops) {
    ucp_request_param_t p{};
    p.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA;
    p.cb.send = &OnReplySent;
    p.user_data = reply;
    ucs_status_ptr_t r = ucp_tag_send_nbx(reply_ep, op.local, op.length, op.tag, &p);
    if (UCS_PTR_IS_PTR(r)) {
      reply->outstanding.fetch_add(1, std::memory_order_relaxed);
    } else if (UCS_PTR_IS_ERR(r)) {
      // Counted as one more op that failed at once (the poster's share keeps
      // the state alive until the end of this function).
      reply->outstanding.fetch_add(1, std::memory_order_relaxed);
      reply->OpDone(UcxError(UCS_PTR_STATUS(r), "ucp_tag_send_nbx", "to the caller"));
      break;
    }
  }
  reply->OpDone(absl::OkStatus());  // the poster's share
}

absl::Status UcxTransport::RegisterDataHandler(uint16_t type, DataMessageHandler handler) {
  if (type >= kFirstReservedMessageType) {
    return absl::InvalidArgumentError(
        absl::StrCat("RegisterDataHandler: type ", type, " is reserved"));
  }
  if (!caps_.two_sided) {
    return absl::UnimplementedError(absl::StrCat(
        "RegisterDataHandler: transport '", config_.name,
        "' was created without one-sided access, and so without tagged messages"));
  }
  absl::MutexLock l(&mu_);
  handlers_.erase(type);
  data_handlers_[type] = std::make_shared<DataMessageHandler>(std::move(handler));
  return absl::OkStatus();
}

bool UcxTransport::NativeOneSided(PeerId peer) const {
  absl::StatusOr<std::shared_ptr<Conn>> conn = FindConn(peer);
  return conn.ok() && (*conn)->native_rma();
}

}  // namespace kvf::transport_internal::ucx
