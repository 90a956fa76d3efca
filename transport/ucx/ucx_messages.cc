// UCX backend: request/response frames over active messages (eager only),
// the handler registry, and the pending-call table.
#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "transport/ucx/ucx_internal.h"
#include "transport/ucx/ucx_status.h"

namespace kvf::transport_internal::ucx {

OutgoingFrame* FrameRegistry::Add(std::string header, std::string payload) {
  auto f = std::make_unique<OutgoingFrame>(OutgoingFrame{this, std::move(header), std::move(payload)});
  OutgoingFrame* raw = f.get();
  absl::MutexLock l(&mu_);
  frames_[raw] = std::move(f);
  return raw;
}

void FrameRegistry::Remove(OutgoingFrame* f) {
  std::unique_ptr<OutgoingFrame> gone;  // freed after the lock is released
  absl::MutexLock l(&mu_);
  auto it = frames_.find(f);
  if (it == frames_.end()) return;
  gone = std::move(it->second);
  frames_.erase(it);
}

void OnFrameSent(void* request, ucs_status_t, void* user_data) {
  auto* frame = static_cast<OutgoingFrame*>(user_data);
  frame->registry->Remove(frame);
  ucp_request_free(request);
}

absl::Status UcxTransport::RegisterHandler(uint16_t type, MessageHandler handler) {
  if (type >= kFirstReservedMessageType) {
    return absl::InvalidArgumentError(absl::StrCat("RegisterHandler: type ", type, " is reserved"));
  }
  absl::MutexLock l(&mu_);
  data_handlers_.erase(type);
  handlers_[type] = std::make_shared<MessageHandler>(std::move(handler));
  return absl::OkStatus();
}

absl::StatusOr<std::string> UcxTransport::Call(PeerId peer, uint16_t type,
                                               std::string_view request, absl::Time deadline) {
  KVF_RETURN_IF_ERROR(CheckMessage("Call", type, request.size()));
  return CallInternal(peer, type, request, deadline);
}

absl::Status UcxTransport::CheckMessage(const char* api, uint16_t type, size_t size,
                                        bool internal) {
  if (!internal && type >= kFirstReservedMessageType) {
    return absl::InvalidArgumentError(absl::StrCat(api, ": type ", type, " is reserved"));
  }
  if (size > kMaxMessageBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat(api, ": message of ", size, " bytes exceeds ", kMaxMessageBytes));
  }
  return absl::OkStatus();
}

absl::StatusOr<uint64_t> UcxTransport::SendCall(Conn& conn, uint16_t type, std::string_view request,
                                                std::shared_ptr<PendingCall> pending) {
  FrameHeader h;
  h.kind = FrameKind::kRequest;
  h.type = type;
  h.payload_length = static_cast<uint32_t>(request.size());
  {
    absl::MutexLock l(&calls_mu_);
    h.call_id = next_call_++;
    if (pending->callback) ++async_calls_;
    calls_[h.call_id] = std::move(pending);
  }
  absl::Status sent = SendFrame(conn, h, request, /*want_reply=*/true);
  if (!sent.ok()) {
    ForgetCall(h.call_id);
    return sent;
  }
  return h.call_id;
}

void UcxTransport::ForgetCall(uint64_t call_id) {
  absl::MutexLock l(&calls_mu_);
  auto it = calls_.find(call_id);
  if (it == calls_.end()) return;
  if (it->second->callback) --async_calls_;
  calls_.erase(it);
}

absl::Status UcxTransport::Notify(PeerId peer, uint16_t type, std::string_view message) {
  KVF_RETURN_IF_ERROR(CheckMessage("Notify", type, message.size()));
  KVF_ASSIGN_OR_RETURN(std::shared_ptr<Conn> conn, FindConn(peer));
  // A request frame without a reply endpoint: the peer runs the handler and
  // answers nobody (HandleRequest).
  FrameHeader h;
  h.kind = FrameKind::kRequest;
  h.type = type;
  h.call_id = 0;
  h.payload_length = static_cast<uint32_t>(message.size());
  return SendFrame(*conn, h, message, /*want_reply=*/false);
}

absl::StatusOr<std::string> UcxTransport::CallInternal(PeerId peer, uint16_t type,
                                                       std::string_view request,
                                                       absl::Time deadline) {
  KVF_RETURN_IF_ERROR(CheckMessage("Call", type, request.size(), /*internal=*/true));
  KVF_ASSIGN_OR_RETURN(std::shared_ptr<Conn> conn, FindConn(peer));
  auto pending = std::make_shared<PendingCall>();
  pending->conn = conn.get();
  KVF_ASSIGN_OR_RETURN(const uint64_t call_id, SendCall(*conn, type, request, pending));
  absl::Cleanup forget = [&] { ForgetCall(call_id); };

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

absl::Status UcxTransport::SendFrame(Conn& conn, const FrameHeader& h, std::string_view payload,
                                     bool want_reply) {
  OutgoingFrame* frame = frames_.Add(EncodeFrameHeader(h), std::string(payload));
  return conn.WithEndpoint([&](ucp_ep_h ep) -> absl::Status {
    ucp_request_param_t p{};
    p.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA |
                     UCP_OP_ATTR_FIELD_FLAGS;
    p.cb.send = &OnFrameSent;
    p.user_data = frame;
    p.flags = UCP_AM_SEND_FLAG_EAGER | (want_reply ? UCP_AM_SEND_FLAG_REPLY : 0);
    WorkerLock l(this);
    ucs_status_ptr_t r = ucp_am_send_nbx(ep, kAmId, frame->header.data(), frame->header.size(),
                                         frame->payload.data(), frame->payload.size(), &p);
    if (UCS_PTR_IS_PTR(r)) {  // OnFrameSent frees the frame
      WakeProgress();
      return absl::OkStatus();
    }
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
    std::shared_ptr<DataMessageHandler> data_handler;
    {
      absl::MutexLock l(&mu_);
      auto it = handlers_.find(h.type);
      if (it != handlers_.end()) handler = it->second;
      auto dit = data_handlers_.find(h.type);
      if (dit != data_handlers_.end()) data_handler = dit->second;
    }
    if (data_handler != nullptr) {
      ReplySends sends;
      response = (*data_handler)(payload, &sends);
      // The bytes go out ahead of the response, on the same endpoint.
      if (!response.ok()) {
        if (sends.done) sends.done(response.status());
      } else if (reply_ep == nullptr) {
        if (sends.done) {
          sends.done(absl::FailedPreconditionError("a one-way message has no caller to send to"));
        }
      } else if (sends.ops.empty()) {
        if (sends.done) sends.done(absl::OkStatus());
      } else {
        SendReplyData(reply_ep, std::move(sends));
      }
    } else if (handler == nullptr) {
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
  std::shared_ptr<PendingCall> async;
  {
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
    if (call.callback) {
      async = it->second;
      calls_.erase(it);
      --async_calls_;
    }
  }
  if (async != nullptr) async->callback(std::move(async->result));
}

absl::Status UcxTransport::CallAsync(PeerId peer, uint16_t type, std::string_view request,
                                     absl::Time deadline, CallCallback done) {
  KVF_RETURN_IF_ERROR(CheckMessage("CallAsync", type, request.size()));
  if (!done) return absl::InvalidArgumentError("CallAsync: no callback");
  ExpireAsyncCalls();
  KVF_ASSIGN_OR_RETURN(std::shared_ptr<Conn> conn, FindConn(peer));
  auto pending = std::make_shared<PendingCall>();
  pending->conn = conn.get();
  pending->callback = std::move(done);
  pending->deadline = deadline;
  return SendCall(*conn, type, request, std::move(pending)).status();
}

void UcxTransport::ExpireAsyncCalls() {
  std::vector<std::shared_ptr<PendingCall>> expired;
  {
    absl::MutexLock l(&calls_mu_);
    if (async_calls_ == 0) return;
    const absl::Time now = absl::Now();
    for (auto it = calls_.begin(); it != calls_.end();) {
      PendingCall& call = *it->second;
      if (call.callback && (call.done || call.deadline <= now)) {
        if (!call.done) {
          call.result = absl::DeadlineExceededError(
              absl::StrCat("asynchronous call to ", call.conn->label(), ": no response in time"));
        }
        expired.push_back(it->second);
        calls_.erase(it++);
        --async_calls_;
      } else {
        ++it;
      }
    }
  }
  for (auto& call : expired) call->callback(std::move(call->result));
}

}  // namespace kvf::transport_internal::ucx
