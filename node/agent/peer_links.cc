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
  } else if (link.broken) {
    link.imports.clear();
    link.announced.clear();
    KVF_RETURN_IF_ERROR(transport_->Reconnect(link.peer, link.address));
    link.broken = false;
  }
  return link.peer;
}

absl::StatusOr<std::string> PeerLinks::Call(NodeId node, const NamespaceSpec& spec,
                                            uint16_t type, const std::string& frame,
                                            absl::Time deadline) {
  PeerId peer;
  bool announce = false;
  {
    absl::MutexLock lock(&mu_);
    Link& link = links_[node];
    KVF_ASSIGN_OR_RETURN(peer, PeerLocked(node, link));
    announce = !link.announced.contains(spec.Id());
  }
  if (announce) {
    protocol::RegisterNamespaceRequest reg;
    reg.header.namespace_id = spec.Id();
    reg.header.layout_fingerprint = spec.layout.Fingerprint();
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
  absl::StatusOr<std::string> raw = transport_->Call(peer, type, frame, deadline);
  if (!raw.ok()) Reset(node);
  return raw;
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

std::optional<PeerId> PeerLinks::ReadyPeer(NodeId node, NamespaceId ns) {
  // TryLock: the holder may be inside transport_->Connect, waiting for the
  // UCX worker lock that the progress thread calling us holds.
  if (!mu_.TryLock()) return std::nullopt;
  std::optional<PeerId> peer;
  auto it = links_.find(node);
  if (it != links_.end() && it->second.connected && !it->second.broken &&
      it->second.announced.contains(ns)) {
    peer = it->second.peer;
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
