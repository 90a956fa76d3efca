// The one interface through which kvfabric moves bytes between processes:
// agents to agents, agents to engines. Backends (UCX, NCCL) live behind
// CreateTransport(); callers hold a std::unique_ptr<Transport> and ask
// capabilities() what it can do instead of #ifdef-ing on how it was built.
//
// Model (docs/transport.md has the long form):
//  * Memory is registered (RegisterMemory) or allocated by the transport
//    (AllocateMemory: faster one-sided access on one host) and yields a
//    MemoryRegion whose
//    RemoteDescriptor — (region id, address, size, memory type, remote key) —
//    is serialisable and sent to other processes out of band.
//  * A process connects to a peer by the peer's serialisable worker address
//    (Connect), imports the peer's descriptors (ImportRemote, which checks
//    with the owner that the region is live), and posts one-sided get/put
//    batches against them (Post).
//  * Every transfer is non-blocking: Post returns a TransferRequest, a lease
//    on the in-flight operation: Poll or Wait(deadline), Cancel, and release
//    by destroying it. Its state is explicit (TransferState).
//  * Small request/response messages (Call / RegisterHandler) carry the data-
//    plane protocol spoken above this layer.
//  * Progress is driven by a named progress thread or by the caller (Poll,
//    Wait, Call and Progress drive it), chosen at creation.
//
// Errors are absl::Status naming the operation, the peer and the backend's
// own text ("ucp_get_nbx to peer 3 (agent-7): Connection reset by remote
// peer"). A failed peer fails fast until it is Reconnect()ed: its pending
// and new work fail with UNAVAILABLE (CANCELLED after a Cancel()).
// Exception: UCX 1.13 over shared memory alone cannot detect a dead peer;
// its work stays in progress until the caller's deadline, and a peer killed
// while writing a message to this process (UCX's mm FIFO: slot claimed, never
// published) stops this process's shared-memory receive path for good.
#ifndef KVF_TRANSPORT_TRANSPORT_H_
#define KVF_TRANSPORT_TRANSPORT_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "transport/descriptor.h"

namespace kvf {

enum class TransportBackend { kUcx, kNccl };

// Who calls the backend's progress engine.
enum class ProgressMode {
  kThread,  // a named thread ("kvf-tp-<name>") owned by the Transport
  kCaller,  // the caller, through Poll/Wait/Call/Progress; lowest latency
};

struct TransportConfig {
  TransportBackend backend = TransportBackend::kUcx;
  // Names the progress thread and appears in errors and logs.
  std::string name = "kvf";
  ProgressMode progress = ProgressMode::kThread;

  // UCX: the transports to use, in UCX_TLS syntax ("sm,self", "tcp,self",
  // "rc,cuda_copy,self"). Empty leaves the choice to UCX (and the process's
  // own UCX_TLS, if set).
  std::string ucx_tls;

  // UCX: false creates the context without one-sided access
  // (UCP_FEATURE_RMA): messages only. Then UCX does not even register the
  // handlers with which it emulates one-sided operations on transports
  // without RDMA (they serve whatever address a peer names), so a peer that
  // speaks UCX itself reaches nothing but this process's message handlers.
  // RegisterMemory, AllocateMemory, ImportRemote and Post answer
  // FAILED_PRECONDITION. For the side of an agent that untrusted clients
  // reach (docs/security.md).
  bool one_sided = true;
  // UCX: the network devices to use, in UCX_NET_DEVICES syntax ("lo",
  // "eth0,mlx5_0:1"). UCX's TCP transport listens on every device it uses,
  // so this is also where it listens (NetDevicesForHost in
  // transport/net_devices.h maps an address to it). Empty leaves the choice
  // to UCX (and the process's own UCX_NET_DEVICES, if set). Shared memory,
  // self and CUDA transports are not network devices and are unaffected.
  std::string net_devices;

  // NCCL: this process's rank among world_size, the communicator's unique id
  // (NcclUniqueId() on one rank, carried to the others by the caller), and
  // the CUDA device to bind.
  int nccl_rank = 0;
  int nccl_world_size = 0;
  std::string nccl_unique_id;
  int cuda_device = 0;
};

// What a Transport can do on this machine, as built and as detected.
struct Capabilities {
  bool host_memory = false;  // can register and move host memory
  bool cuda_memory = false;  // can register and move CUDA device memory
  bool one_sided = false;    // ImportRemote + kGet/kPut
  bool two_sided = false;    // kSend/kRecv (tagged) and RegisterDataHandler
  bool messages = false;     // Call / RegisterHandler
  // The fabric actually in use, e.g. "ucx 1.13.1: posix/memory cma/memory
  // self/memory0" or "nccl 2.19.3".
  std::string fabric;
};

using PeerId = uint64_t;

// A registered (RegisterMemory) or transport-allocated (AllocateMemory)
// local region. Deregistered — and, when allocated, freed — when destroyed;
// it must be destroyed before the Transport that made it. Thread-compatible.
class MemoryRegion {
 public:
  virtual ~MemoryRegion() = default;
  virtual void* data() const = 0;
  virtual size_t size() const = 0;
  virtual MemoryType memory_type() const = 0;
  // What another process needs to get/put into this region.
  virtual const RemoteDescriptor& descriptor() const = 0;
};

// A peer's region imported for one-sided access on one connection. Bound to
// the connection it was imported on: after Reconnect() of that peer, posts
// against it fail with FAILED_PRECONDITION and it must be imported again.
// Must be destroyed before the Transport. Thread-compatible.
class RemoteRegion {
 public:
  virtual ~RemoteRegion();
  virtual PeerId peer() const = 0;
  virtual const RemoteDescriptor& descriptor() const = 0;

  // State tied to this import's mapping (Transport::MappedAddress): the
  // attachment under `key`, made by `make` on first use (a null one is kept
  // too, so `make` is not retried). Attachments are destroyed when the
  // import goes, before its mapping is released, so they may hold what
  // refers to the mapped addresses, such as a CUDA host registration of
  // them: a later mapping at the same addresses never inherits it.
  // Thread-safe.
  std::shared_ptr<void> Attachment(const void* key,
                                   const std::function<std::shared_ptr<void>()>& make) const;

 protected:
  // Destroys the attachments; a backend that maps calls it first in its
  // destructor, before it unmaps.
  void DropAttachments();

 private:
  mutable std::mutex attach_mu_;
  mutable std::vector<std::pair<const void*, std::shared_ptr<void>>> attachments_;
};

enum class TransferKind { kGet, kPut, kSend, kRecv };

// One block of a batch. For kGet/kPut, `remote_offset` is relative to the
// start of the RemoteRegion; for kSend/kRecv it is ignored and `tag` pairs a
// send with a receive. UCX: a kRecv op takes the one message of its tag from
// any peer, of at most `length` bytes (a longer one fails the op); receivers
// keep their tags unique among their outstanding receives.
struct TransferOp {
  void* local = nullptr;
  size_t length = 0;
  uint64_t remote_offset = 0;
  uint64_t tag = 0;
};

// Many blocks in one post. `local_region`, when set, must contain every
// op's local range (it lets the backend skip registering it per op).
struct TransferBatch {
  TransferKind kind = TransferKind::kGet;
  PeerId peer = 0;                               // kSend/kRecv (and ignored for kGet/kPut)
  const RemoteRegion* remote = nullptr;          // kGet/kPut
  const MemoryRegion* local_region = nullptr;    // optional for UCX, required for NCCL
  std::vector<TransferOp> ops;
};

enum class TransferState {
  kInProgress,  // posted, not finished; local buffers belong to the transport
  kDone,        // every op completed; status() is OK
  kFailed,      // status() says why; local buffers are free again
  kCancelled,   // Cancel() took effect; local buffers are free again
};

// A lease on one posted batch. While kInProgress the batch's local buffers
// belong to the transport. Destroying it releases the lease: an unfinished
// transfer is cancelled and the destructor waits until the backend has let go
// of the buffers. Must be destroyed before the Transport.
//
// Thread-safety: one thread at a time per request; different requests may be
// used from different threads.
class TransferRequest {
 public:
  virtual ~TransferRequest() = default;
  // Non-blocking. In kCaller mode it drives progress once.
  virtual TransferState Poll() = 0;
  // Blocks until the transfer leaves kInProgress or `deadline` passes.
  // OK when done; DEADLINE_EXCEEDED when still in progress (the request stays
  // posted: wait again, or Cancel); otherwise the transfer's error.
  virtual absl::Status Wait(absl::Time deadline) = 0;
  // Asks the backend to stop. One-sided RMA cannot be withdrawn op by op in
  // UCX or NCCL, so cancelling resets the connection to the peer (other
  // requests to it fail with CANCELLED; Reconnect() to use it again).
  // Returns immediately; Poll/Wait report kCancelled once buffers are free.
  virtual void Cancel() = 0;
  virtual TransferState state() const = 0;
  // The final status; OK while in progress.
  virtual absl::Status status() const = 0;
};

// Handles one request message and returns the response (or an error, which
// travels back to the caller as its code and message). Runs on the progress
// thread (or inside the caller's progress call): it must not block, and must
// not call back into the Transport's blocking methods.
using MessageHandler = std::function<absl::StatusOr<std::string>(std::string_view request)>;

// Bytes a handler sends back to the caller as tagged messages (the caller
// receives them with TransferKind::kRecv, posted before its request), ahead
// of its response: a block moves on the fabric's bulk path (UCX: zero-copy
// rendezvous) instead of in message-sized pieces, and without one-sided
// access, which some fabrics only emulate (UCX over TCP). Each op's `local`
// and `length` are the bytes, `tag` the caller's tag; the bytes must stay
// valid until `done` runs. `done`, when set, runs exactly once, on the
// progress thread or inside the handler's dispatch: OK once every send
// completed, else the first error (the caller went away; a Notify has no
// caller to send to; the handler returned an error, which sends nothing).
struct ReplySends {
  std::vector<TransferOp> ops;
  std::function<void(absl::Status)> done;
};
using DataMessageHandler =
    std::function<absl::StatusOr<std::string>(std::string_view request, ReplySends* sends)>;

// Message types at and above this are the transport's own.
inline constexpr uint16_t kFirstReservedMessageType = 0xff00;
// Largest request or response payload.
inline constexpr size_t kMaxMessageBytes = 64 * 1024;

// Thread-safety: all methods are safe to call concurrently from any thread
// (the backend serialises its own state with a mutex and, for UCX, a
// multi-threaded worker). MemoryRegion, RemoteRegion and TransferRequest
// objects must be destroyed before the Transport.
class Transport {
 public:
  virtual ~Transport() = default;

  virtual const Capabilities& capabilities() const = 0;

  // This process's serialisable worker address; give it to peers.
  virtual std::string address() const = 0;

  // Registers [data, data + size) for local and remote access.
  // INVALID_ARGUMENT for an empty range or an unsupported memory type.
  virtual absl::StatusOr<std::unique_ptr<MemoryRegion>> RegisterMemory(void* data, size_t size,
                                                                       MemoryType type) = 0;

  // Allocates `size` bytes of `type` memory owned by the transport, mapped
  // and registered in one step; the region's data() is where they are, and
  // destroying the region frees them. Prefer it for memory peers will get/put
  // often (an agent's host tier, allocated once at start): UCX allocates it
  // so that shared-memory transports can map it into a peer on the same host
  // (posix/sysv segment), making a peer's get/put a memcpy that needs nothing
  // from this process. RegisterMemory'd memory cannot be mapped that way in
  // UCX 1.13 and one-sided access to it is emulated with messages that this
  // process's progress must serve (docs/transport.md, "Performance").
  // Contents are unspecified (zero for fresh pages in practice).
  // INVALID_ARGUMENT for size 0 or an unsupported memory type; UNIMPLEMENTED
  // for a backend that cannot allocate (NCCL: allocate with CUDA and
  // RegisterMemory instead).
  virtual absl::StatusOr<std::unique_ptr<MemoryRegion>> AllocateMemory(size_t size,
                                                                       MemoryType type);

  // Opens a connection to the process whose address() is `address`. Does not
  // wait for the peer: a dead or unreachable peer shows up as the first
  // operation's error. INVALID_ARGUMENT for a truncated or garbage address.
  virtual absl::StatusOr<PeerId> Connect(std::string_view address) = 0;
  // Replaces the connection to `peer` (after the peer restarted, or after a
  // failure): the old endpoint is closed, its pending requests fail, and the
  // same PeerId now names the new connection.
  virtual absl::Status Reconnect(PeerId peer, std::string_view address) = 0;
  // Closes the connection; pending requests fail. NOT_FOUND if unknown.
  virtual absl::Status Disconnect(PeerId peer) = 0;
  // OK while the connection is believed healthy; otherwise why not.
  virtual absl::Status PeerHealth(PeerId peer) const = 0;

  // Checks with `peer` that `descriptor` names a live region it registered
  // and prepares it for one-sided access. NOT_FOUND if the peer does not know
  // the region (never registered, or deregistered); UNAVAILABLE if the peer
  // is dead; DEADLINE_EXCEEDED if it does not answer in time.
  virtual absl::StatusOr<std::unique_ptr<RemoteRegion>> ImportRemote(
      PeerId peer, const RemoteDescriptor& descriptor, absl::Time deadline) = 0;

  // Posts a batch. Validation errors (unknown peer, out-of-range offsets,
  // stale import, unsupported kind) come back here, with nothing posted.
  virtual absl::StatusOr<std::unique_ptr<TransferRequest>> Post(TransferBatch batch) = 0;

  // Registers the handler for message `type` (< kFirstReservedMessageType),
  // replacing any earlier one.
  virtual absl::Status RegisterHandler(uint16_t type, MessageHandler handler) = 0;
  // Registers a handler that may send bytes back with its response
  // (ReplySends), replacing any earlier handler of `type`. UNIMPLEMENTED
  // where the backend has no two-sided path (capabilities().two_sided).
  virtual absl::Status RegisterDataHandler(uint16_t type, DataMessageHandler handler);

  // Whether one-sided get/put to `peer` run on the fabric's own RMA (shared
  // memory, RDMA) rather than emulated with messages, as UCX does over TCP,
  // where a batch of gets runs several times slower than the same bytes sent
  // two-sided (docs/transport.md, "Two-sided lane"). Bulk movers use it to
  // pick a lane. False for an unknown peer.
  virtual bool NativeOneSided(PeerId peer) const;

  // Where [offset, offset + length) of `remote` is mapped into this process
  // (UCX: a shared-memory segment of a peer on this host), ready to touch
  // (page tables populated), so a caller may read or write the bytes in
  // place instead of posting a kGet/kPut; null where they are not mapped, the
  // range leaves the region, or the peer is known to have failed. Bytes
  // written there are visible to the peer as those of a completed kPut are.
  // Valid while `remote` lives; the caller keeps its own accesses within the
  // protocol's leases and reservations, as for transfers. Default: null.
  virtual std::byte* MappedAddress(const RemoteRegion& remote, uint64_t offset,
                                   uint64_t length) const;

  // Sends a request to `peer` and waits for its response. The peer's handler
  // error comes back with its code; NOT_FOUND/UNIMPLEMENTED if the peer has
  // no handler for `type`; DEADLINE_EXCEEDED past the deadline.
  virtual absl::StatusOr<std::string> Call(PeerId peer, uint16_t type, std::string_view request,
                                           absl::Time deadline) = 0;

  // Sends a request like Call but does not wait: `done` runs once with the
  // response or the error (the peer's handler error, UNAVAILABLE when the
  // connection fails, DEADLINE_EXCEEDED once `deadline` has passed without
  // an answer). It runs on the progress thread, or for an expired call on
  // whichever thread next calls CallAsync (kCaller mode has no progress
  // thread: expiry waits for the next CallAsync), and must not block.
  // CallAsync may be called from a handler. Callbacks still pending when the
  // transport is destroyed are dropped without running. The status returned
  // covers the send only: when it is not OK, `done` does not run.
  using CallCallback = std::function<void(absl::StatusOr<std::string> response)>;
  virtual absl::Status CallAsync(PeerId peer, uint16_t type, std::string_view request,
                                 absl::Time deadline, CallCallback done);

  // Sends a one-way message: the peer's handler for `type` runs and its
  // answer (or error) is dropped. OK means handed to the fabric, not
  // delivered: use it where a lost message is harmless (releasing a read
  // lease that would expire anyway). Saves the round trip Call waits for.
  // UNIMPLEMENTED where the backend carries no messages.
  virtual absl::Status Notify(PeerId peer, uint16_t type, std::string_view message);

  // Drives progress once; returns whether anything happened. Needed in
  // kCaller mode by a process that only serves (handlers, RMA emulation).
  virtual bool Progress() = 0;
};

// Creates a transport of `config.backend`. UNIMPLEMENTED when that backend
// was not compiled in; FAILED_PRECONDITION when the machine lacks what it
// needs (no GPU for NCCL).
absl::StatusOr<std::unique_ptr<Transport>> CreateTransport(const TransportConfig& config);

// A fresh NCCL communicator id to hand to every rank (TransportConfig::
// nccl_unique_id). UNIMPLEMENTED without NCCL.
absl::StatusOr<std::string> NcclUniqueId();

}  // namespace kvf

#endif  // KVF_TRANSPORT_TRANSPORT_H_
