// libkvfabric: the engine-side client of kvfabric (docs/design.md, "Interfaces
// people use"; docs/data-path.md, "Client").
//
// A Client holds the cluster map (fetched from kvf-coordinator and kept
// current by a watch stream), computes placement locally, and moves blocks
// between the caller's memory and the agents with one-sided RMA: no
// coordinator and no extra copy on the data path.
//
// Keys and chains. Blocks are named by chained hashes (common/block_hash.h):
// chain[i] covers tokens [0, (i+1)·T) of one sequence. A block is placed by
// the key of the first block of its segment (NamespaceSpec::segment_blocks),
// so every call takes the whole chain from block 0 and the range of indices it
// acts on; `chain` must hold at least `end` keys. The common case is the whole
// prefix: begin = 0, end = chain.size().
//
// Memory. Buffers are the caller's host memory, or CUDA device memory where
// capabilities().cuda_memory is true. They must stay valid, and (for gets)
// untouched, until the call returns; every call blocks until its transfers
// are done.
//
// Errors. A call returns a non-OK Status when it could not run at all (bad
// arguments, no owner reachable for a whole lookup, ...). Batch calls
// otherwise return OK with one BlockResult per block, so an engine recomputes
// just the blocks that failed: NOT_FOUND (nobody holds it), UNAVAILABLE (its
// owners could not be reached), FAILED_PRECONDITION (below min_version),
// RESOURCE_EXHAUSTED (no room), INVALID_ARGUMENT (refused).
//
// Thread-safety: a Client is thread-safe; share one per process. Namespace is
// a cheap, copyable, immutable handle.
#ifndef KVF_CLIENT_CLIENT_H_
#define KVF_CLIENT_CLIENT_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "client/block_io.h"
#include "common/block_key.h"
#include "common/cluster_map.h"
#include "common/namespace.h"
#include "common/version.h"
#include "kernels/codec.h"
#include "transport/transport.h"

namespace kvf {

// When a put counts as done (docs/design.md, "Coherency").
enum class AckMode {
  kPrimary,  // the primary committed; it invalidates and syncs replicas lazily
  kAll,      // every owner holds the new version
};

// How block bytes move between a client and an agent (docs/data-path.md,
// "Two-sided lane").
enum class DataLane {
  // One-sided where the fabric does it natively (shared memory: a memcpy out
  // of the mapped arena; RDMA), two-sided where it only emulates it (UCX
  // over TCP, where gets run several times slower than the same bytes sent).
  kAuto,
  kOneSided,  // always read and write the agent's arena one-sided
  kTwoSided,  // always send the bytes as tagged messages (Fetch and Store)
};

struct ClientOptions {
  // host:port of kvf-coordinator's gRPC endpoint, or a comma-separated list
  // of several (etcd-backed coordinators, docs/coordinator.md): calls go to
  // the leader and move on when one fails.
  std::string coordinator;
  // A tenant credential (`kvfctl credential --tenant=T`; docs/security.md):
  // this tenant's namespaces only (NamespaceSpec::tenant must be T; others
  // get PERMISSION_DENIED), its block bytes copied by the agents. The cluster
  // token works too, for every tenant, with one-sided access to the agents'
  // memory: a trusted host (operators' tools, benchmarks).
  std::string token;
  // PEM CA certificate(s) to verify a coordinator that serves TLS (its
  // --tls_cert) against; empty: plaintext. A TLS coordinator refuses a
  // plaintext client, and a certificate the CA did not sign fails the
  // handshake: Connect returns UNAVAILABLE either way.
  std::string tls_ca_file;
  // Where this client's own UCX worker may listen (UCX's TCP transport opens
  // a listening socket per network device it uses; transport/net_devices.h):
  // an IP address or host name. Empty: loopback when the coordinator is on
  // loopback (a local cluster), else every interface. $UCX_NET_DEVICES wins.
  std::string data_listen_host;
  // UCX transports (UCX_TLS syntax); empty lets UCX choose.
  std::string ucx_tls;
  absl::Duration rpc_timeout = absl::Seconds(5);   // coordinator RPCs
  absl::Duration data_timeout = absl::Seconds(5);  // one data-plane request or transfer
  AckMode ack = AckMode::kPrimary;
  // A tenant's client always moves bytes through the agent.
  DataLane data_lane = DataLane::kAuto;
  // Threads that fan a batch out to its owners (the calling thread works too).
  int worker_threads = 4;
  std::string name = "kvf-client";  // names threads and appears in logs
};

namespace client_internal {
struct NamespaceState;
}

// A registered namespace: a validated NamespaceSpec and what is derived from
// it. Obtained from Client::RegisterNamespace.
class Namespace {
 public:
  Namespace() = default;
  const NamespaceSpec& spec() const;
  NamespaceId id() const;
  uint64_t layout_fingerprint() const;
  // Stored bytes of one block under `codec` (layout.BytesPerBlock() for none).
  size_t BlockBytes(CodecId codec = CodecId::kNone) const;
  bool valid() const { return state_ != nullptr; }

 private:
  friend class Client;
  explicit Namespace(std::shared_ptr<const client_internal::NamespaceState> s) : state_(std::move(s)) {}
  std::shared_ptr<const client_internal::NamespaceState> state_;
};

// One block's outcome in a batch call.
struct BlockResult {
  absl::Status status;
  Version version;                // OK puts and gets: the version stored / read
  CodecId codec = CodecId::kNone;  // gets: the stored codec
  uint32_t size = 0;              // gets: bytes written into the buffer
  NodeId node = kNoNode;          // the node that served (get) or took (put) it
};

struct BatchResult {
  std::vector<BlockResult> blocks;  // blocks[i] is block begin + i
  size_t ok_count() const;
  bool all_ok() const { return ok_count() == blocks.size(); }
  // The first failed block's status, or OK.
  absl::Status FirstError() const;
};

struct PutOptions {
  CodecId codec = CodecId::kNone;  // the codec the bytes are already encoded in
  bool is_mutable = false;         // sequence entries: the primary bumps versions
  // Overrides ClientOptions::ack for this call when set.
  bool has_ack = false;
  AckMode ack = AckMode::kPrimary;
};

struct GetOptions {
  // Read-your-writes: serve only at or past this version.
  bool has_min_version = false;
  Version min_version;
};

// A source or destination buffer of one block.
struct ConstBlockBuffer {
  const void* data = nullptr;
  size_t size = 0;
};
struct BlockBuffer {
  void* data = nullptr;
  size_t size = 0;  // capacity; at least the block's stored size
};

struct BlockHolding {
  std::vector<NodeId> nodes;  // the nodes that hold it (primary order)
  Version version;            // the newest version any of them reported
  CodecId codec = CodecId::kNone;
  uint32_t size = 0;
};

struct LookupResult {
  // Blocks [begin, begin + prefix) are held by some node: the longest cached
  // prefix of the range.
  size_t prefix = 0;
  std::vector<BlockHolding> blocks;  // blocks[i] is block begin + i
};

class Client {
 public:
  // Connects to the coordinator (gRPC, `authorization: Bearer <token>`),
  // fetches the cluster map and starts watching it; creates the UCX transport.
  // UNAUTHENTICATED for a wrong token, UNAVAILABLE when nothing answers,
  // INVALID_ARGUMENT for bad options.
  static absl::StatusOr<std::unique_ptr<Client>> Connect(const ClientOptions& options);
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // Validates `spec` (INVALID_ARGUMENT naming the field). Local bookkeeping
  // only: agents learn of the namespace on first use.
  absl::StatusOr<Namespace> RegisterNamespace(const NamespaceSpec& spec);

  // Stores blocks [begin, begin + blocks.size()) of `chain`. Each buffer must
  // be exactly ns.BlockBytes(options.codec) bytes (INVALID_ARGUMENT for the
  // whole call otherwise). Re-putting an immutable block is a no-op.
  absl::StatusOr<BatchResult> BatchPut(const Namespace& ns, absl::Span<const BlockKey> chain,
                                       size_t begin, absl::Span<const ConstBlockBuffer> blocks,
                                       const PutOptions& options = {});
  // One block; returns its version.
  absl::StatusOr<Version> Put(const Namespace& ns, absl::Span<const BlockKey> chain, size_t index,
                              const void* data, size_t size, const PutOptions& options = {});

  // Reads blocks [begin, begin + dst.size()) of `chain` into `dst`, from the
  // primary, falling back to the other owners for blocks it cannot serve.
  absl::StatusOr<BatchResult> BatchGet(const Namespace& ns, absl::Span<const BlockKey> chain,
                                       size_t begin, absl::Span<const BlockBuffer> dst,
                                       const GetOptions& options = {});
  // One block; the returned result's status is the block's.
  absl::StatusOr<BlockResult> Get(const Namespace& ns, absl::Span<const BlockKey> chain,
                                  size_t index, void* dst, size_t capacity,
                                  const GetOptions& options = {});

  // In-place forms (client/block_io.h): `writer` writes blocks
  // [begin, begin + count) of ns.BlockBytes(options.codec) bytes each where
  // they go (the agent's memory when it is mapped here); `reader` consumes
  // each found block where it is, blocks up to `capacity` bytes (a larger
  // one is INVALID_ARGUMENT, unread). Placement, fallback and results as
  // BatchPut/BatchGet; a writer's or reader's error is that block's result.
  // Blocks of agents that are not mapped here are staged in client memory:
  // up to count * (block size, or capacity for gets) at once, so split very
  // large calls (client/paged.h moves at most kPagedChunkBytes per call).
  absl::StatusOr<BatchResult> BatchPutWith(const Namespace& ns, absl::Span<const BlockKey> chain,
                                           size_t begin, size_t count, BlockWriter& writer,
                                           const PutOptions& options = {});
  absl::StatusOr<BatchResult> BatchGetWith(const Namespace& ns, absl::Span<const BlockKey> chain,
                                           size_t begin, size_t count, size_t capacity,
                                           BlockReader& reader, const GetOptions& options = {});

  // Asks every owner of blocks [begin, end) which ones they hold (one message
  // per node, all in parallel). `end` is clamped to chain.size().
  absl::StatusOr<LookupResult> Lookup(const Namespace& ns, absl::Span<const BlockKey> chain,
                                      size_t begin = 0, size_t end = SIZE_MAX);
  // Per block of [begin, end): held by some owner.
  absl::StatusOr<std::vector<bool>> Exists(const Namespace& ns, absl::Span<const BlockKey> chain,
                                           size_t begin = 0, size_t end = SIZE_MAX);
  // Removes blocks [begin, end) from every owner. Per block: OK if some owner
  // removed it, NOT_FOUND if none held it.
  absl::StatusOr<BatchResult> Remove(const Namespace& ns, absl::Span<const BlockKey> chain,
                                     size_t begin = 0, size_t end = SIZE_MAX);

  // The cluster map the client currently places with.
  uint64_t map_epoch() const;
  ClusterMap cluster_map() const;
  const Capabilities& transport_capabilities() const;

 private:
  struct Impl;
  explicit Client(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace kvf

#endif  // KVF_CLIENT_CLIENT_H_
