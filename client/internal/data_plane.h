// The client's connections to agents: one transport PeerId per node (opened
// lazily, reconnected when the map shows a new data address), one session per
// agent (HelloRequest with the client's credential, stamped into every frame),
// per-agent namespace registration, one request/response exchange with the
// protocol's error handling (hello-, register- and refresh-and-retry), and the
// cache of imported remote regions.
//
// Thread-safety: all methods are safe from any thread; no lock is held while
// a request is in flight.
#ifndef KVF_CLIENT_INTERNAL_DATA_PLANE_H_
#define KVF_CLIENT_INTERNAL_DATA_PLANE_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "client/client.h"
#include "client/internal/map_watcher.h"
#include "kernels/device.h"
#include "common/namespace.h"
#include "common/status_macros.h"
#include "protocol/frames.h"
#include "transport/transport.h"

namespace kvf::client_internal {

struct NamespaceState {
  NamespaceSpec spec;
  NamespaceId id = 0;
  uint64_t fingerprint = 0;
};

// An agent's arena mapped into this process (an agent on this host over
// shared memory): blocks can be read and written in place. Holds the import,
// and with it the mapping, alive. Empty (`region` null) when not mapped.
struct MappedArena {
  std::shared_ptr<RemoteRegion> region;
  const Transport* transport = nullptr;
  absl::Span<std::byte> bytes;  // the whole arena
  // [offset, offset + length) ready to touch (Transport::MappedAddress), or
  // null when it leaves the arena or the agent is known to have failed.
  std::byte* At(uint64_t offset, uint64_t length) const {
    return region == nullptr ? nullptr : transport->MappedAddress(*region, offset, length);
  }
};

class DataPlane {
 public:
  // `credential`: the cluster token or a tenant credential (common/credentials.h).
  DataPlane(Transport* transport, MapWatcher* maps, absl::Duration timeout,
            std::string credential, DataLane lane = DataLane::kAuto);
  ~DataPlane();

  // Sends `req` to `node` (the header is filled here) and decodes the typed
  // answer. Errors: unreachable nodes are marked (IsUnreachable), WRONG_OWNER
  // too (IsWrongOwner; the map was refreshed), otherwise the agent's code and
  // message prefixed with the node.
  template <typename Resp, typename Req>
  absl::StatusOr<Resp> Send(NodeId node, const NamespaceState& ns, Req req) {
    req.header = Header(ns);
    KVF_ASSIGN_OR_RETURN(std::string bytes, req.Encode());
    KVF_ASSIGN_OR_RETURN(std::string resp, Exchange(node, ns, static_cast<uint16_t>(Req::kType), bytes));
    auto decoded = Resp::Decode(resp);
    if (!decoded.ok()) {
      return absl::Status(decoded.status().code(),
                          absl::StrCat("node ", node, " answered a bad frame: ",
                                       std::string(decoded.status().message())));
    }
    return decoded;
  }

  // Sends one request per entry of `reqs` (node, request) all at once
  // (Transport::CallAsync) and waits for every answer: no thread per node.
  // Each answer is decoded and its errors handled as Send does; a node that
  // does not know the namespace yet takes Send's blocking path.
  template <typename Resp, typename Req>
  std::vector<absl::StatusOr<Resp>> SendAll(const NamespaceState& ns,
                                            std::vector<std::pair<NodeId, Req>> reqs) {
    std::vector<absl::StatusOr<Resp>> out(reqs.size(), absl::UnknownError("not sent"));
    std::vector<std::pair<NodeId, std::string>> frames;
    std::vector<size_t> index;
    for (size_t i = 0; i < reqs.size(); ++i) {
      reqs[i].second.header = Header(ns);
      auto bytes = reqs[i].second.Encode();
      if (!bytes.ok()) {
        out[i] = bytes.status();
        continue;
      }
      frames.emplace_back(reqs[i].first, *std::move(bytes));
      index.push_back(i);
    }
    std::vector<absl::StatusOr<std::string>> raw =
        ExchangeAll(ns, static_cast<uint16_t>(Req::kType), frames);
    for (size_t k = 0; k < raw.size(); ++k) {
      const size_t i = index[k];
      if (!raw[k].ok()) {
        out[i] = raw[k].status();
        continue;
      }
      auto decoded = Resp::Decode(*raw[k]);
      if (!decoded.ok()) {
        out[i] = absl::Status(decoded.status().code(),
                              absl::StrCat("node ", reqs[i].first, " answered a bad frame: ",
                                           std::string(decoded.status().message())));
        continue;
      }
      out[i] = *std::move(decoded);
    }
    return out;
  }

  // Sends `req` one way (Transport::Notify): no answer, no wait. For
  // messages whose loss is harmless, such as releasing a read lease.
  template <typename Req>
  absl::Status Tell(NodeId node, const NamespaceState& ns, Req req) {
    req.header = Header(ns);
    KVF_ASSIGN_OR_RETURN(std::string bytes, req.Encode());
    KVF_ASSIGN_OR_RETURN(Link link, LinkFor(node, ns.id));
    KVF_RETURN_IF_ERROR(protocol::StampSession(&bytes, link.session));
    return transport_->Notify(link.peer, static_cast<uint16_t>(Req::kType), bytes);
  }

  // Block bytes through the agent, for a session the agent gives no
  // descriptors (a tenant's: docs/security.md). The bytes of `size` at entry
  // `entry` of read lease `lease_id` go to `dst`; those at `src` go to
  // reservation `reservation_id`. Split into frames of at most
  // protocol::kMaxDataBytes, all in flight at once; any failure fails all.
  struct ReadItem {
    uint32_t entry = 0;
    void* dst = nullptr;
    uint32_t size = 0;
  };
  absl::Status ReadThrough(NodeId node, const NamespaceState& ns, uint64_t lease_id,
                           const std::vector<ReadItem>& items);
  struct WriteItem {
    uint64_t reservation_id = 0;
    const void* src = nullptr;
    uint32_t size = 0;
    uint64_t tag = 0;  // SendBlocks: the Store's tag for this block
  };
  absl::Status WriteThrough(NodeId node, const NamespaceState& ns,
                            const std::vector<WriteItem>& items);

  // The transport peer of `node`, connecting or reconnecting as needed.
  absl::StatusOr<PeerId> PeerFor(NodeId node);

  // Everything one request to `node` needs, read under one lock (the hot
  // path of every call): the peer, the session (said hello for if there was
  // none) and whether `node` knows namespace `ns`.
  struct Link {
    PeerId peer = 0;
    uint64_t session = 0;
    bool registered = false;
  };
  absl::StatusOr<Link> LinkFor(NodeId node, NamespaceId ns);

  // The imported region for `descriptor` on `node`'s current connection.
  absl::StatusOr<std::shared_ptr<RemoteRegion>> Import(NodeId node,
                                                       const RemoteDescriptor& descriptor);
  // The arena of `descriptor` on `node` where it is mapped here; empty
  // otherwise (also when the import fails: a transfer then reports why).
  MappedArena MappedArenaOf(NodeId node, const RemoteDescriptor& descriptor);
  // Whether `node` runs on this host: its host arena has been mapped here
  // (MappedArenaOf) on the current connection. What a GetRequest's
  // device_ok needs, since CUDA IPC works between processes of one host.
  bool OnThisHost(NodeId node);
  // The base of `node`'s GPU tier (a descriptor of memory type kCuda, rkey
  // its CUDA IPC handle) mapped into this process on `device`, opened once
  // per connection. An error marks the node as not on this host, so later
  // gets stop asking for device blocks.
  absl::StatusOr<std::byte*> DeviceArenaOf(NodeId node, const RemoteDescriptor& descriptor,
                                           int device);
  // Forgets an import (after Post said it is stale).
  void DropImport(NodeId node, uint64_t region_id);

  // Posts `batch` against `descriptor` of `node` and waits for it; re-imports
  // once when the import went stale. Transfer failures are marked unreachable.
  absl::Status Transfer(NodeId node, const RemoteDescriptor& descriptor, TransferBatch batch);

  // Whether gets and puts with `node` take the two-sided lane: per the DataLane, and
  // for kAuto where the transport only emulates one-sided access to it.
  // Never for a tenant (its agent worker has no tagged messages).
  bool TwoSidedTo(NodeId node);

  // The two-sided lane for one node's get batch: posts one tagged receive
  // per key of `req` (into dst[items[k]], its capacity the limit), sends the
  // FetchRequest and waits for the bytes of every OK entry. On success
  // (*received)[k] says whether block k's bytes landed (OK) or why not; the
  // receives of entries that are not OK are withdrawn. The answer's errors
  // are Send's; receives that time out mark the node unreachable.
  absl::StatusOr<protocol::GetResponse> Fetch(NodeId node, const NamespaceState& ns,
                                              protocol::GetRequest req,
                                              absl::Span<const BlockBuffer> dst,
                                              const std::vector<uint32_t>& items,
                                              std::vector<absl::Status>* received);

  // The two-sided lane for one node's put batch. Store sends `req`'s entries
  // as a StoreRequest with fresh tags (*tags, one per entry); the agent
  // posts a receive into each page it reserves. SendBlocks sends each item
  // as one tagged message and waits for the sends. CommitSent commits, and
  // commits again the blocks whose bytes the agent still saw arriving
  // (UNAVAILABLE), until they land or the data timeout passes.
  absl::StatusOr<protocol::ReserveResponse> Store(NodeId node, const NamespaceState& ns,
                                                  protocol::ReserveRequest req,
                                                  std::vector<uint64_t>* tags);
  absl::Status SendBlocks(NodeId node, const std::vector<WriteItem>& items);
  absl::StatusOr<protocol::CommitResponse> CommitSent(NodeId node, const NamespaceState& ns,
                                                      protocol::CommitRequest commit);

  Transport* transport() const { return transport_; }
  absl::Duration timeout() const { return timeout_; }

 private:
  struct Peer {
    PeerId peer = 0;
    uint64_t session = 0;  // 0: say hello first
    std::string address;
    absl::flat_hash_set<NamespaceId> registered;
    absl::flat_hash_map<uint64_t, std::shared_ptr<RemoteRegion>> imports;  // by region id
    // Its host arena was mapped here: it runs on this host (OnThisHost).
    bool mapped_here = false;
    // Its GPU tier mapped over CUDA IPC, by (region id, device).
    absl::flat_hash_map<std::pair<uint64_t, int>, std::shared_ptr<IpcMapping>> device_arenas;
  };

  protocol::FrameHeader Header(const NamespaceState& ns);
  absl::StatusOr<std::string> Exchange(NodeId node, const NamespaceState& ns, uint16_t type,
                                       const std::string& bytes);
  std::vector<absl::StatusOr<std::string>> ExchangeAll(
      const NamespaceState& ns, uint16_t type, const std::vector<std::pair<NodeId, std::string>>& reqs);
  // What Exchange does after an answer.
  enum class Retry {
    kNo,
    kRegister,  // the node no longer knows the namespace
    kHello,     // the node no longer knows the session
    kLagging,   // WRONG_OWNER from a node whose map is older than ours
  };
  // A node's answer (or the transport's error) as Exchange returns it.
  absl::StatusOr<std::string> Interpret(NodeId node, absl::StatusOr<std::string> resp, Retry* retry);
  absl::Status Register(NodeId node, PeerId peer, const NamespaceState& ns);
  // The session with `node`, saying hello first when there is none.
  absl::StatusOr<uint64_t> SessionFor(NodeId node, PeerId peer);
  void ForgetSession(NodeId node);
  // `bytes` with `session` stamped in.
  static absl::StatusOr<std::string> Stamped(uint64_t session, const std::string& bytes);
  // PeerFor, also reading the node's session and whether it knows `ns`
  // (when `link` is given) under the same lock.
  absl::StatusOr<PeerId> PeerFor(NodeId node, NamespaceId ns, Link* link);

  Transport* const transport_;
  MapWatcher* const maps_;
  const absl::Duration timeout_;
  const std::string credential_;
  std::string tenant_name_;
  const bool tenant_;  // credential_ is a tenant credential
  const DataLane lane_;
  std::atomic<uint64_t> next_request_id_;
  std::atomic<uint64_t> next_tag_;  // receive tags, unique on this transport

  absl::Mutex mu_;
  absl::flat_hash_map<NodeId, Peer> peers_ ABSL_GUARDED_BY(mu_);
};

}  // namespace kvf::client_internal

#endif  // KVF_CLIENT_INTERNAL_DATA_PLANE_H_
