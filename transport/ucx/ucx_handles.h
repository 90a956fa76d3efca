// Move-only owners for every UCX handle the backend holds: context, worker,
// endpoint, memory handle, unpacked remote key, request. Private to
// transport/ucx/. Thread-compatible (the Transport serialises their use).
#ifndef KVF_TRANSPORT_UCX_UCX_HANDLES_H_
#define KVF_TRANSPORT_UCX_UCX_HANDLES_H_

#include <chrono>
#include <utility>

#include <ucp/api/ucp.h>

namespace kvf::transport_internal {

// Owns a pointer-like UCX handle and releases it with Release::operator().
template <typename Handle, typename Release>
class UcxOwner {
 public:
  UcxOwner() = default;
  UcxOwner(Handle h, Release release) : h_(h), release_(std::move(release)) {}
  UcxOwner(UcxOwner&& o) noexcept
      : h_(std::exchange(o.h_, nullptr)), release_(std::move(o.release_)) {}
  UcxOwner& operator=(UcxOwner&& o) noexcept {
    if (this != &o) {
      reset();
      h_ = std::exchange(o.h_, nullptr);
      release_ = std::move(o.release_);
    }
    return *this;
  }
  UcxOwner(const UcxOwner&) = delete;
  UcxOwner& operator=(const UcxOwner&) = delete;
  ~UcxOwner() { reset(); }

  Handle get() const { return h_; }
  explicit operator bool() const { return h_ != nullptr; }
  void reset() {
    if (h_ != nullptr) release_(std::exchange(h_, nullptr));
  }

 private:
  Handle h_ = nullptr;
  Release release_{};
};

struct ReleaseContext {
  void operator()(ucp_context_h c) const { ucp_cleanup(c); }
};
struct ReleaseWorker {
  void operator()(ucp_worker_h w) const { ucp_worker_destroy(w); }
};
struct ReleaseConfig {
  void operator()(ucp_config_t* c) const { ucp_config_release(c); }
};
struct ReleaseMemh {
  ucp_context_h context = nullptr;
  void operator()(ucp_mem_h m) const { ucp_mem_unmap(context, m); }
};
struct ReleaseRkey {
  void operator()(ucp_rkey_h k) const { ucp_rkey_destroy(k); }
};
struct ReleaseRkeyBuffer {
  void operator()(void* b) const { ucp_rkey_buffer_release(b); }
};
struct ReleaseWorkerAddress {
  ucp_worker_h worker = nullptr;
  void operator()(ucp_address_t* a) const { ucp_worker_release_address(worker, a); }
};
// A request the caller no longer tracks: UCX frees it on completion.
struct ReleaseRequest {
  void operator()(void* r) const { ucp_request_free(r); }
};

using UcpContext = UcxOwner<ucp_context_h, ReleaseContext>;
using UcpWorker = UcxOwner<ucp_worker_h, ReleaseWorker>;
using UcpConfig = UcxOwner<ucp_config_t*, ReleaseConfig>;
using UcpMemh = UcxOwner<ucp_mem_h, ReleaseMemh>;
using UcpRkey = UcxOwner<ucp_rkey_h, ReleaseRkey>;
using UcpRkeyBuffer = UcxOwner<void*, ReleaseRkeyBuffer>;
using UcpWorkerAddress = UcxOwner<ucp_address_t*, ReleaseWorkerAddress>;
using UcpRequest = UcxOwner<void*, ReleaseRequest>;

// Owns an endpoint. Closing is a request that needs the worker progressed,
// so the owner closes (force mode: outstanding operations complete with
// UCS_ERR_CANCELED, the peer is not waited for) and progresses until done.
class UcpEndpoint {
 public:
  UcpEndpoint() = default;
  UcpEndpoint(ucp_worker_h worker, ucp_ep_h ep) : worker_(worker), ep_(ep) {}
  UcpEndpoint(UcpEndpoint&& o) noexcept
      : worker_(o.worker_), ep_(std::exchange(o.ep_, nullptr)) {}
  UcpEndpoint& operator=(UcpEndpoint&& o) noexcept {
    if (this != &o) {
      Close();
      worker_ = o.worker_;
      ep_ = std::exchange(o.ep_, nullptr);
    }
    return *this;
  }
  UcpEndpoint(const UcpEndpoint&) = delete;
  UcpEndpoint& operator=(const UcpEndpoint&) = delete;
  ~UcpEndpoint() { Close(); }

  ucp_ep_h get() const { return ep_; }
  void Close() {
    if (ep_ == nullptr) return;
    ucp_request_param_t param{};
    param.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS;
    param.flags = UCP_EP_CLOSE_FLAG_FORCE;
    ucs_status_ptr_t req = ucp_ep_close_nbx(std::exchange(ep_, nullptr), &param);
    if (UCS_PTR_IS_PTR(req)) {
      // Bounded: without peer-failure support a close can wait on a dead
      // peer forever; then the request is left to UCX (freed at worker
      // teardown) rather than hanging the caller.
      const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(2);
      while (ucp_request_check_status(req) == UCS_INPROGRESS &&
             std::chrono::steady_clock::now() < give_up) {
        ucp_worker_progress(worker_);
      }
      if (ucp_request_check_status(req) != UCS_INPROGRESS) ucp_request_free(req);
    }
  }

 private:
  ucp_worker_h worker_ = nullptr;
  ucp_ep_h ep_ = nullptr;
};

}  // namespace kvf::transport_internal

#endif  // KVF_TRANSPORT_UCX_UCX_HANDLES_H_
