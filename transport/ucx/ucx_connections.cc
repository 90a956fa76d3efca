// UCX backend: peers. One endpoint per connection, created from the peer's
// worker address; Reconnect swaps in a new one under the same PeerId; an
// endpoint error marks the connection failed and fails its pending calls.
#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "transport/ucx/ucx_internal.h"
#include "transport/ucx/ucx_status.h"

namespace kvf::transport_internal::ucx {

void Conn::Close(absl::Status why) {
  MarkFailed(std::move(why));
  UcpEndpoint ep;
  {
    absl::WriterMutexLock l(&ep_mu_);  // waits for calls using the endpoint
    ep = std::move(ep_);
  }
  if (ep.get() == nullptr) return;
  // Closing progresses the worker, which runs callbacks and handlers, and a
  // handler may send to this very peer (WithEndpoint takes ep_mu_) or to
  // another (the worker lock). Progressing under ep_mu_, or without the
  // worker lock, would deadlock against the progress thread running such a
  // handler. The order stays ep_mu_ -> worker lock -> UCX's lock.
  UcxTransport::WorkerLock l(owner_);
  ep.Close();
}

void OnEndpointError(void* arg, ucp_ep_h, ucs_status_t status) {
  auto* conn = static_cast<Conn*>(arg);
  conn->owner()->OnConnFailed(conn, status);
}

// UCX 1.13 has no query for an endpoint's lanes (ucp_ep_query learned
// UCP_EP_ATTR_FIELD_TRANSPORTS in 1.14), but ucp_ep_print_info lists them:
// an endpoint with RMA lanes of its own prints "put[i]"/"get[i]" protocol
// lines; one whose RMA UCX emulates over active messages (TCP) prints none.
// Unparseable output counts as native (the one-sided path stays).
bool UcxTransport::HasNativeRma(ucp_ep_h ep) {
  char* text = nullptr;
  size_t size = 0;
  FILE* f = open_memstream(&text, &size);
  if (f == nullptr) return true;
  {
    WorkerLock l(this);
    ucp_ep_print_info(ep, f);
  }
  std::fclose(f);
  const std::string_view info(text, size);
  const bool native = info.find("put[") != std::string_view::npos ||
                      info.find("get[") != std::string_view::npos ||
                      info.find("lane[") == std::string_view::npos;
  std::free(text);
  return native;
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
  conn->set_native_rma(HasNativeRma(raw_ep));
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

}  // namespace kvf::transport_internal::ucx
