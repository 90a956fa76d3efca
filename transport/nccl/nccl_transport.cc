// The NCCL backend: GPU-to-GPU bulk moves with ncclSend/ncclRecv on one CUDA
// stream, one ncclGroupStart/End per batch, completion tracked by a CUDA
// event. Two-sided only: both ranks post matching batches (a kSend on one,
// a kRecv of the same lengths on the other). The communicator is built from
// a unique id the caller carried between ranks (the coordinator, or MPI).
//
// This file is the only one that calls NCCL, and NcclError / CudaError below
// are where NCCL and CUDA results become absl::Status for this backend.
#include "transport/nccl/nccl_transport.h"

#include <cuda_runtime_api.h>
#include <nccl.h>

#include <random>
#include <thread>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "kernels/device.h"
#include "transport/internal/wire.h"

namespace kvf::transport_internal {
namespace {

constexpr uint8_t kNcclBackendTag = 2;

absl::Status NcclError(ncclResult_t r, std::string_view call, std::string_view context) {
  if (r == ncclSuccess) return absl::OkStatus();
  const absl::StatusCode code = r == ncclInvalidArgument || r == ncclInvalidUsage
                                    ? absl::StatusCode::kInvalidArgument
                                    : r == ncclRemoteError || r == ncclSystemError
                                          ? absl::StatusCode::kUnavailable
                                          : absl::StatusCode::kInternal;
  return absl::Status(code, absl::StrCat(std::string(call), " ", std::string(context), ": ",
                                         ncclGetErrorString(r)));
}

absl::Status CudaError(cudaError_t e, std::string_view call, std::string_view context) {
  if (e == cudaSuccess) return absl::OkStatus();
  return absl::InternalError(absl::StrCat(std::string(call), " ", std::string(context), ": ",
                                          cudaGetErrorName(e), ": ", cudaGetErrorString(e)));
}

class NcclRegion final : public MemoryRegion {
 public:
  NcclRegion(void* data, size_t size, RemoteDescriptor d)
      : data_(data), size_(size), descriptor_(std::move(d)) {}
  void* data() const override { return data_; }
  size_t size() const override { return size_; }
  MemoryType memory_type() const override { return MemoryType::kCuda; }
  const RemoteDescriptor& descriptor() const override { return descriptor_; }

 private:
  void* const data_;
  const size_t size_;
  const RemoteDescriptor descriptor_;
};

class NcclTransport;

// Owns the CUDA event that marks the end of one grouped batch.
class NcclRequest final : public TransferRequest {
 public:
  NcclRequest(NcclTransport* owner, cudaEvent_t event, std::string what)
      : owner_(owner), event_(event), what_(std::move(what)) {}
  ~NcclRequest() override;
  TransferState Poll() override;
  absl::Status Wait(absl::Time deadline) override {
    while (Poll() == TransferState::kInProgress) {
      if (absl::Now() >= deadline) {
        return absl::DeadlineExceededError(absl::StrCat(what_, ": still in progress"));
      }
      std::this_thread::yield();
    }
    return status();
  }
  void Cancel() override;
  TransferState state() const override {
    absl::MutexLock l(&mu_);
    return state_;
  }
  absl::Status status() const override {
    absl::MutexLock l(&mu_);
    return status_;
  }

 private:
  NcclTransport* const owner_;
  cudaEvent_t event_;
  const std::string what_;
  mutable absl::Mutex mu_;
  TransferState state_ ABSL_GUARDED_BY(mu_) = TransferState::kInProgress;
  absl::Status status_ ABSL_GUARDED_BY(mu_);
};

// Thread-safety: see Transport; posts are serialised by mu_ (NCCL groups
// must not interleave on one communicator).
class NcclTransport final : public Transport {
 public:
  static absl::StatusOr<std::unique_ptr<Transport>> Create(const TransportConfig& config) {
    if (Devices().count == 0) {
      return absl::FailedPreconditionError(
          absl::StrCat("NCCL transport: no CUDA device (", Devices().reason, ")"));
    }
    if (config.nccl_unique_id.size() != sizeof(ncclUniqueId)) {
      return absl::InvalidArgumentError(absl::StrCat("NCCL transport: unique id is ",
                                                     config.nccl_unique_id.size(), " bytes, expected ",
                                                     sizeof(ncclUniqueId)));
    }
    if (config.nccl_world_size < 2 || config.nccl_rank < 0 ||
        config.nccl_rank >= config.nccl_world_size) {
      return absl::InvalidArgumentError(absl::StrCat("NCCL transport: rank ", config.nccl_rank,
                                                     " of ", config.nccl_world_size));
    }
    const std::string ctx = absl::StrCat("for rank ", config.nccl_rank, " of ", config.nccl_world_size);
    KVF_RETURN_IF_ERROR(CudaError(cudaSetDevice(config.cuda_device), "cudaSetDevice", ctx));
    std::unique_ptr<NcclTransport> t(new NcclTransport(config));
    ncclUniqueId id;
    std::memcpy(&id, config.nccl_unique_id.data(), sizeof(id));
    KVF_RETURN_IF_ERROR(NcclError(
        ncclCommInitRank(&t->comm_, config.nccl_world_size, id, config.nccl_rank), "ncclCommInitRank", ctx));
    KVF_RETURN_IF_ERROR(CudaError(cudaStreamCreateWithFlags(&t->stream_, cudaStreamNonBlocking),
                                  "cudaStreamCreateWithFlags", ctx));
    int version = 0;
    ncclGetVersion(&version);
    t->caps_.cuda_memory = true;
    t->caps_.two_sided = true;
    t->caps_.fabric = absl::StrCat("nccl ", version / 10000, ".", (version / 100) % 100, ".",
                                   version % 100, ": rank ", config.nccl_rank, " of ",
                                   config.nccl_world_size, " on device ", config.cuda_device);
    std::string rank;
    ByteWriter(&rank).Put<uint32_t>(static_cast<uint32_t>(config.nccl_rank));
    t->address_ = SealAddress(kNcclBackendTag, rank);
    return std::unique_ptr<Transport>(std::move(t));
  }

  ~NcclTransport() override {
    if (stream_ != nullptr) {
      cudaStreamSynchronize(stream_);
      cudaStreamDestroy(stream_);
    }
    if (comm_ != nullptr) ncclCommDestroy(comm_);
  }

  const Capabilities& capabilities() const override { return caps_; }
  std::string address() const override { return address_; }

  absl::StatusOr<std::unique_ptr<MemoryRegion>> RegisterMemory(void* data, size_t size,
                                                               MemoryType type) override {
    if (data == nullptr || size == 0) return absl::InvalidArgumentError("RegisterMemory: empty range");
    if (type != MemoryType::kCuda) {
      return absl::InvalidArgumentError("RegisterMemory: the NCCL transport moves CUDA memory only");
    }
    RemoteDescriptor d;
    d.region_id = std::random_device{}() | 1;
    d.address = reinterpret_cast<uint64_t>(data);
    d.size = size;
    d.memory_type = type;
    return std::make_unique<NcclRegion>(data, size, std::move(d));
  }

  absl::StatusOr<PeerId> Connect(std::string_view address) override {
    KVF_ASSIGN_OR_RETURN(std::string_view body, OpenAddress(kNcclBackendTag, address));
    ByteReader r(body);
    uint32_t rank = 0;
    if (!r.Get(&rank) || r.remaining() != 0 || rank >= static_cast<uint32_t>(config_.nccl_world_size)) {
      return absl::InvalidArgumentError("Connect: not an NCCL rank of this communicator");
    }
    return static_cast<PeerId>(rank);
  }
  absl::Status Reconnect(PeerId, std::string_view) override {
    return absl::UnimplementedError(
        "Reconnect: an NCCL communicator is rebuilt from a new unique id, not reconnected");
  }
  absl::Status Disconnect(PeerId) override { return absl::OkStatus(); }
  absl::Status PeerHealth(PeerId) const override { return CommHealth(); }
  absl::StatusOr<std::unique_ptr<RemoteRegion>> ImportRemote(PeerId, const RemoteDescriptor&,
                                                             absl::Time) override {
    return absl::UnimplementedError("ImportRemote: the NCCL transport is two-sided only");
  }
  absl::Status RegisterHandler(uint16_t, MessageHandler) override {
    return absl::UnimplementedError("RegisterHandler: the NCCL transport carries no messages");
  }
  absl::StatusOr<std::string> Call(PeerId, uint16_t, std::string_view, absl::Time) override {
    return absl::UnimplementedError("Call: the NCCL transport carries no messages");
  }
  bool Progress() override { return false; }

  absl::StatusOr<std::unique_ptr<TransferRequest>> Post(TransferBatch batch) override {
    const bool send = batch.kind == TransferKind::kSend;
    if (!send && batch.kind != TransferKind::kRecv) {
      return absl::UnimplementedError("Post: the NCCL transport moves blocks two-sided (kSend/kRecv)");
    }
    if (batch.peer >= static_cast<PeerId>(config_.nccl_world_size) ||
        batch.peer == static_cast<PeerId>(config_.nccl_rank)) {
      return absl::NotFoundError(absl::StrCat("Post: no NCCL peer rank ", batch.peer));
    }
    if (batch.ops.empty()) return absl::InvalidArgumentError("Post: empty batch");
    for (size_t i = 0; i < batch.ops.size(); ++i) {
      if (batch.ops[i].local == nullptr || batch.ops[i].length == 0) {
        return absl::InvalidArgumentError(absl::StrCat("Post: op ", i, " is empty"));
      }
    }
    KVF_RETURN_IF_ERROR(CommHealth());
    const std::string what = absl::StrCat(send ? "ncclSend" : "ncclRecv", " batch of ",
                                          batch.ops.size(), send ? " ops to rank " : " ops from rank ",
                                          batch.peer);
    absl::MutexLock l(&mu_);
    cudaEvent_t event = nullptr;
    KVF_RETURN_IF_ERROR(CudaError(cudaEventCreateWithFlags(&event, cudaEventDisableTiming),
                                  "cudaEventCreateWithFlags", what));
    absl::Cleanup destroy_event = [event] { cudaEventDestroy(event); };
    KVF_RETURN_IF_ERROR(NcclError(ncclGroupStart(), "ncclGroupStart", what));
    absl::Status posted;
    for (const TransferOp& op : batch.ops) {
      const int peer = static_cast<int>(batch.peer);
      posted = send ? NcclError(ncclSend(op.local, op.length, ncclUint8, peer, comm_, stream_), "ncclSend", what)
                    : NcclError(ncclRecv(op.local, op.length, ncclUint8, peer, comm_, stream_), "ncclRecv", what);
      if (!posted.ok()) break;
    }
    absl::Status ended = NcclError(ncclGroupEnd(), "ncclGroupEnd", what);
    KVF_RETURN_IF_ERROR(posted);
    KVF_RETURN_IF_ERROR(ended);
    KVF_RETURN_IF_ERROR(CudaError(cudaEventRecord(event, stream_), "cudaEventRecord", what));
    std::move(destroy_event).Cancel();
    return std::unique_ptr<TransferRequest>(new NcclRequest(this, event, what));
  }

  absl::Status CommHealth() const {
    ncclResult_t async = ncclSuccess;
    KVF_RETURN_IF_ERROR(NcclError(ncclCommGetAsyncError(comm_, &async), "ncclCommGetAsyncError", ""));
    return NcclError(async, "NCCL communicator", absl::StrCat("of rank ", config_.nccl_rank));
  }
  void Abort() {
    absl::MutexLock l(&mu_);
    if (!aborted_) ncclCommAbort(comm_);
    aborted_ = true;
  }

 private:
  explicit NcclTransport(TransportConfig config) : config_(std::move(config)) {}

  const TransportConfig config_;
  Capabilities caps_;
  std::string address_;
  ncclComm_t comm_ = nullptr;
  cudaStream_t stream_ = nullptr;
  absl::Mutex mu_;
  bool aborted_ ABSL_GUARDED_BY(mu_) = false;
};

TransferState NcclRequest::Poll() {
  absl::MutexLock l(&mu_);
  if (state_ != TransferState::kInProgress) return state_;
  const cudaError_t e = cudaEventQuery(event_);
  if (e == cudaSuccess) {
    state_ = TransferState::kDone;
  } else if (e != cudaErrorNotReady) {
    state_ = TransferState::kFailed;
    status_ = CudaError(e, "cudaEventQuery", what_);
  } else if (absl::Status comm = owner_->CommHealth(); !comm.ok()) {
    state_ = TransferState::kFailed;
    status_ = comm;
  }
  return state_;
}

void NcclRequest::Cancel() {
  {
    absl::MutexLock l(&mu_);
    if (state_ != TransferState::kInProgress) return;
    state_ = TransferState::kCancelled;
    status_ = absl::CancelledError(absl::StrCat(what_, ": cancelled; the communicator is aborted"));
  }
  owner_->Abort();  // NCCL cannot withdraw one operation of a group
}

NcclRequest::~NcclRequest() {
  if (Poll() == TransferState::kInProgress) Cancel();
  cudaEventDestroy(event_);
}

}  // namespace

absl::StatusOr<std::unique_ptr<Transport>> CreateNcclTransport(const TransportConfig& config) {
  return NcclTransport::Create(config);
}

absl::StatusOr<std::string> NewNcclUniqueId() {
  ncclUniqueId id;
  KVF_RETURN_IF_ERROR(NcclError(ncclGetUniqueId(&id), "ncclGetUniqueId", ""));
  return std::string(reinterpret_cast<const char*>(&id), sizeof(id));
}

}  // namespace kvf::transport_internal
