#include "node/agent/peer_links.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace kvf {

PeerLinks::~PeerLinks() {
  absl::MutexLock lock(&mu_);
  for (auto& [node, link] : links_) link.imports.clear();
}

void PeerLinks::UpdateMap(const ClusterMap& map) {
  for (const NodeInfo& n : map.nodes) {
    if (!n.data_address.empty()) SetAddress(n.id, n.data_address);
  }
}

void PeerLinks::SetAddress(NodeId node, const std::string& data_address) {
  absl::StatusOr<std::string> raw = DecodeDataAddress(data_address);
  if (!raw.ok()) return;
  absl::MutexLock lock(&mu_);
  Link& link = links_[node];
  if (link.address == *raw) return;
  link.address = *std::move(raw);
  link.broken = link.connected;  // reconnect to the new address on next use
  link.session = 0;
  link.announced.clear();
  link.imports.clear();
}

absl::StatusOr<PeerId> PeerLinks::PeerLocked(NodeId node, Link& link) {
  if (link.address.empty()) {
    return absl::UnavailableError(absl::StrCat("node ", node, " has no data address"));
  }
  if (!link.connected) {
    KVF_ASSIGN_OR_RETURN(link.peer, transport_->Connect(link.address));
    link.connected = true;
    link.broken = false;
    link.session = 0;
  } else if (link.broken) {
    link.imports.clear();
    link.announced.clear();
    link.session = 0;
    KVF_RETURN_IF_ERROR(transport_->Reconnect(link.peer, link.address));
    link.broken = false;
  }
  return link.peer;
}

absl::StatusOr<PeerId> PeerLinks::Peer(NodeId node) {
  absl::MutexLock l(&mu_);
  return PeerLocked(node, links_[node]);
}

bool PeerLinks::NativeOneSided(NodeId node) {
  absl::StatusOr<PeerId> peer = Peer(node);
  return !peer.ok() || transport_->NativeOneSided(*peer);
}

absl::StatusOr<std::string> PeerLinks::Call(NodeId node, const NamespaceSpec& spec,
                                            uint16_t type, const std::string& frame,
                                            absl::Time deadline) {
  PeerId peer;
  uint64_t session = 0;
  bool announce = false;
  {
    absl::MutexLock lock(&mu_);
    Link& link = links_[node];
    KVF_ASSIGN_OR_RETURN(peer, PeerLocked(node, link));
    announce = !link.announced.contains(spec.Id());
    session = link.session;
  }
  if (session == 0) {
    absl::StatusOr<uint64_t> opened = Hello(node, peer, deadline);
    if (!opened.ok()) return opened.status();
    session = *opened;
  }
  if (announce) {
    protocol::RegisterNamespaceRequest reg;
    reg.header.namespace_id = spec.Id();
    reg.header.layout_fingerprint = spec.layout.Fingerprint();
    reg.header.session = session;
    reg.spec = spec;
    KVF_ASSIGN_OR_RETURN(std::string bytes, reg.Encode());
    absl::StatusOr<std::string> raw = transport_->Call(
        peer, static_cast<uint16_t>(protocol::FrameType::kRegisterNamespaceRequest), bytes,
        deadline);
    if (!raw.ok()) {
      Reset(node);
      return raw.status();
    }
    KVF_RETURN_IF_ERROR(protocol::DecodeReply<protocol::AckResponse>(*raw).status());
    absl::MutexLock lock(&mu_);
    links_[node].announced.insert(spec.Id());
  }
  std::string stamped = frame;
  KVF_RETURN_IF_ERROR(protocol::StampSession(&stamped, session));
  absl::StatusOr<std::string> raw = transport_->Call(peer, type, stamped, deadline);
  if (!raw.ok()) Reset(node);
  return raw;
}

absl::StatusOr<uint64_t> PeerLinks::Hello(NodeId node, PeerId peer, absl::Time deadline) {
  protocol::HelloRequest hello;
  hello.role = protocol::PeerRole::kAgent;
  hello.node_id = static_cast<uint32_t>(self_ ? self_() : kNoNode);
  hello.credential = token_;
  KVF_ASSIGN_OR_RETURN(std::string bytes, hello.Encode());
  absl::StatusOr<std::string> raw = transport_->Call(
      peer, static_cast<uint16_t>(protocol::FrameType::kHelloRequest), bytes, deadline);
  if (!raw.ok()) {
    Reset(node);
    return raw.status();
  }
  absl::StatusOr<protocol::HelloResponse> reply =
      protocol::DecodeReply<protocol::HelloResponse>(*raw);
  if (!reply.ok()) {
    return absl::Status(reply.status().code(), absl::StrCat("hello to node ", node, ": ",
                                                            std::string(reply.status().message())));
  }
  absl::MutexLock lock(&mu_);
  auto it = links_.find(node);
  if (it != links_.end() && it->second.peer == peer) it->second.session = reply->session;
  return reply->session;
}

void PeerLinks::ForgetSession(NodeId node) {
  absl::MutexLock lock(&mu_);
  links_[node].session = 0;
  links_[node].announced.clear();  // a restarted node forgot those too
}

void PeerLinks::ForgetNamespaces(NodeId node) {
  absl::MutexLock lock(&mu_);
  links_[node].announced.clear();
}

absl::StatusOr<std::shared_ptr<const RemoteRegion>> PeerLinks::Import(NodeId node,
                                                      const RemoteDescriptor& descriptor,
                                                      absl::Time deadline) {
  PeerId peer;
  {
    absl::MutexLock lock(&mu_);
    Link& link = links_[node];
    KVF_ASSIGN_OR_RETURN(peer, PeerLocked(node, link));
    if (auto it = link.imports.find(descriptor.region_id); it != link.imports.end()) {
      return it->second;
    }
  }
  // Import outside the lock: it waits for the peer.
  KVF_ASSIGN_OR_RETURN(std::unique_ptr<RemoteRegion> region,
                       transport_->ImportRemote(peer, descriptor, deadline));
  absl::MutexLock lock(&mu_);
  auto& slot = links_[node].imports[descriptor.region_id];
  if (slot == nullptr) slot = std::move(region);
  return slot;
}

std::optional<PeerLinks::Ready> PeerLinks::ReadyPeer(NodeId node, NamespaceId ns) {
  // TryLock: the holder may be inside transport_->Connect, waiting for the
  // UCX worker lock that the progress thread calling us holds.
  if (!mu_.TryLock()) return std::nullopt;
  std::optional<Ready> peer;
  auto it = links_.find(node);
  if (it != links_.end() && it->second.connected && !it->second.broken &&
      it->second.session != 0 && it->second.announced.contains(ns)) {
    peer = Ready{it->second.peer, it->second.session};
  }
  mu_.Unlock();
  return peer;
}

void PeerLinks::Reset(NodeId node) {
  absl::MutexLock lock(&mu_);
  auto it = links_.find(node);
  if (it == links_.end() || !it->second.connected) return;
  it->second.broken = true;
}

}  // namespace kvf
