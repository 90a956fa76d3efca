// An agent's connections to the other agents of the cluster, by node id:
// connected lazily from the cluster map's data addresses, replaced when a
// node's address changes (it restarted), each with a session opened by a
// hello with the cluster token (stamped into every frame), imported remote
// arenas cached per connection and namespaces announced once per peer. Used by the
// replicator (invalidations, lazy sync) and the migrator (block streaming).
//
// Thread-safe. Never called from the transport's progress thread (it blocks),
// except ReadyPeer, which never blocks.
#ifndef KVF_NODE_AGENT_PEER_LINKS_H_
#define KVF_NODE_AGENT_PEER_LINKS_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/cluster_map.h"
#include "common/namespace.h"
#include "protocol/frames.h"
#include "protocol/reply.h"
#include "transport/transport.h"

namespace kvf {

class PeerLinks {
 public:
  // `cluster_token` opens sessions with the other agents; `self` names this
  // node in hellos (diagnostics only).
  PeerLinks(Transport* transport, std::string cluster_token, std::function<NodeId()> self)
      : transport_(transport), token_(std::move(cluster_token)), self_(std::move(self)) {}
  ~PeerLinks();
  PeerLinks(const PeerLinks&) = delete;
  PeerLinks& operator=(const PeerLinks&) = delete;

  // Learns every node's data address (base64 in the map).
  void UpdateMap(const ClusterMap& map);
  // Adds or replaces one node's address (a migration task names it).
  void SetAddress(NodeId node, const std::string& data_address);

  // Sends `request` (a frame struct with Encode) to `node` and decodes the
  // typed answer. Says hello and announces `spec`'s namespace to the node
  // first, once per connection, and again when the node answers
  // UNAUTHENTICATED or NOT_FOUND (it restarted).
  template <typename Resp, typename Req>
  absl::StatusOr<Resp> Exchange(NodeId node, const NamespaceSpec& spec, const Req& request,
                                absl::Time deadline) {
    auto bytes = request.Encode();
    if (!bytes.ok()) return bytes.status();
    for (int attempt = 0;; ++attempt) {
      auto raw = Call(node, spec, static_cast<uint16_t>(Req::kType), *bytes, deadline);
      if (!raw.ok()) return raw.status();
      auto reply = protocol::DecodeReply<Resp>(*raw);
      if (reply.ok() || attempt > 0) return reply;
      if (absl::IsUnauthenticated(reply.status())) {
        ForgetSession(node);
      } else if (absl::IsNotFound(reply.status())) {
        ForgetNamespaces(node);
      } else {
        return reply;
      }
    }
  }

  // The node's arena for one-sided access, imported once per connection.
  // Shared: a reconnect drops the cache while transfers may still hold it.
  absl::StatusOr<std::shared_ptr<const RemoteRegion>> Import(NodeId node, const RemoteDescriptor& descriptor,
                                             absl::Time deadline);

  // After a transfer or call failure: the next use reconnects.
  void Reset(NodeId node);

  // The transport peer of `node`, connecting as needed (for two-sided
  // sends), and whether one-sided access to it is native or emulated
  // (Transport::NativeOneSided).
  absl::StatusOr<PeerId> Peer(NodeId node);
  bool NativeOneSided(NodeId node);

  // A connection whose session is open and whose peer knows a namespace.
  struct Ready {
    PeerId peer = 0;
    uint64_t session = 0;  // stamp it into frames (protocol::StampSession)
  };
  // The link to `node` if its connection is up and already knows namespace
  // `ns`, so that a request can go out at once; otherwise (or when another
  // thread holds the links' lock, which may be waiting on UCX) nothing.
  // Never connects or waits: safe on the progress thread.
  std::optional<Ready> ReadyPeer(NodeId node, NamespaceId ns);

 private:
  struct Link {
    std::string address;  // raw worker address
    PeerId peer = 0;
    bool connected = false;
    bool broken = false;
    uint64_t session = 0;  // 0: say hello first
    absl::flat_hash_set<NamespaceId> announced;
    absl::flat_hash_map<uint64_t, std::shared_ptr<const RemoteRegion>> imports;  // by region id
  };

  absl::StatusOr<std::string> Call(NodeId node, const NamespaceSpec& spec, uint16_t type,
                                   const std::string& frame, absl::Time deadline);
  absl::StatusOr<PeerId> PeerLocked(NodeId node, Link& link) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ForgetNamespaces(NodeId node);
  void ForgetSession(NodeId node);
  // Opens a session with `node` over `peer`.
  absl::StatusOr<uint64_t> Hello(NodeId node, PeerId peer, absl::Time deadline);

  Transport* const transport_;
  const std::string token_;
  const std::function<NodeId()> self_;
  absl::Mutex mu_;
  absl::flat_hash_map<NodeId, Link> links_ ABSL_GUARDED_BY(mu_);
};

}  // namespace kvf

#endif  // KVF_NODE_AGENT_PEER_LINKS_H_
