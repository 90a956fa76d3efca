#include "client/internal/data_plane.h"

#include <algorithm>
#include <cstring>
#include <random>
#include <utility>

#include "client/internal/plan.h"
#include "common/credentials.h"
#include "protocol/reply.h"

namespace kvf::client_internal {

using protocol::DecodeHeader;
using protocol::ErrorResponse;
using protocol::FrameType;

DataPlane::DataPlane(Transport* transport, MapWatcher* maps, absl::Duration timeout,
                     std::string credential, DataLane lane)
    : transport_(transport),
      maps_(maps),
      timeout_(timeout),
      credential_(std::move(credential)),
      tenant_(CredentialTenant(credential_, &tenant_name_)),
      lane_(lane) {
  std::random_device rd;
  next_request_id_ = (uint64_t{rd()} << 32) | rd();
  next_tag_ = (uint64_t{rd()} << 32) | rd();
}

DataPlane::~DataPlane() {
  // Imports must go before the transport (owned by the Client, destroyed
  // after us).
  absl::MutexLock l(&mu_);
  peers_.clear();
}

protocol::FrameHeader DataPlane::Header(const NamespaceState& ns) {
  protocol::FrameHeader h;
  h.request_id = next_request_id_.fetch_add(1, std::memory_order_relaxed);
  auto snap = maps_->Current();
  h.sender_epoch = snap != nullptr ? snap->map.epoch : 0;
  h.namespace_id = ns.id;
  h.layout_fingerprint = ns.fingerprint;
  return h;
}

absl::StatusOr<PeerId> DataPlane::PeerFor(NodeId node) { return PeerFor(node, 0, nullptr); }

absl::StatusOr<DataPlane::Link> DataPlane::LinkFor(NodeId node, NamespaceId ns) {
  Link link;
  KVF_ASSIGN_OR_RETURN(link.peer, PeerFor(node, ns, &link));
  if (link.session == 0) {
    KVF_ASSIGN_OR_RETURN(link.session, SessionFor(node, link.peer));
  }
  return link;
}

absl::StatusOr<PeerId> DataPlane::PeerFor(NodeId node, NamespaceId ns, Link* link) {
  auto snap = maps_->Current();
  const NodeInfo* info = snap != nullptr ? snap->map.Find(node) : nullptr;
  // A tenant's client talks to the messages-only worker where there is one.
  const std::string* address = info == nullptr ? nullptr
                               : tenant_ && !info->tenant_data_address.empty()
                                   ? &info->tenant_data_address
                                   : &info->data_address;
  if (info == nullptr || address->empty()) {
    return MarkUnreachable(absl::UnavailableError(
        absl::StrCat("node ", node, " has no data address in the cluster map")));
  }
  // Map addresses are base64 of the worker address (common/cluster_map.h).
  auto worker = DecodeDataAddress(*address);
  if (!worker.ok()) {
    return MarkUnreachable(absl::UnavailableError(absl::StrCat(
        "node ", node, ": bad data address in the map: ", std::string(worker.status().message()))));
  }
  absl::MutexLock l(&mu_);
  auto it = peers_.find(node);
  if (it != peers_.end()) {
    if (it->second.address == *address) {
      if (link != nullptr) {
        link->session = it->second.session;
        link->registered = it->second.registered.contains(ns);
      }
      return it->second.peer;
    }
    // The node restarted with a new worker: same PeerId, new connection.
    absl::Status s = transport_->Reconnect(it->second.peer, *worker);
    if (!s.ok()) return MarkUnreachable(s);
    it->second.address = *address;
    it->second.session = 0;
    it->second.registered.clear();
    it->second.imports.clear();
    it->second.mapped_here = false;
    it->second.device_arenas.clear();
    return it->second.peer;
  }
  auto peer = transport_->Connect(*worker);
  if (!peer.ok()) return MarkUnreachable(peer.status());
  Peer& p = peers_[node];
  p.peer = *peer;
  p.address = *address;
  return p.peer;
}

absl::StatusOr<uint64_t> DataPlane::SessionFor(NodeId node, PeerId peer) {
  {
    absl::MutexLock l(&mu_);
    auto it = peers_.find(node);
    if (it != peers_.end() && it->second.peer == peer && it->second.session != 0) {
      return it->second.session;
    }
  }
  protocol::HelloRequest hello;
  hello.header.request_id = next_request_id_.fetch_add(1, std::memory_order_relaxed);
  hello.role = protocol::PeerRole::kClient;
  hello.credential = credential_;
  auto bytes = hello.Encode();
  if (!bytes.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("kvf client: the credential cannot be sent: ", std::string(bytes.status().message())));
  }
  auto resp = transport_->Call(peer, static_cast<uint16_t>(FrameType::kHelloRequest), *bytes,
                               absl::Now() + timeout_);
  if (!resp.ok()) {
    return MarkUnreachable(absl::Status(
        resp.status().code(), absl::StrCat("node ", node, ": ", std::string(resp.status().message()))));
  }
  auto reply = protocol::DecodeReply<protocol::HelloResponse>(*resp);
  if (!reply.ok()) {
    return absl::Status(reply.status().code(), absl::StrCat("node ", node, ": hello: ",
                                                            std::string(reply.status().message())));
  }
  absl::MutexLock l(&mu_);
  auto it = peers_.find(node);
  if (it != peers_.end() && it->second.peer == peer) it->second.session = reply->session;
  return reply->session;
}

void DataPlane::ForgetSession(NodeId node) {
  absl::MutexLock l(&mu_);
  auto it = peers_.find(node);
  if (it != peers_.end()) it->second.session = 0;
}

absl::StatusOr<std::string> DataPlane::Stamped(uint64_t session, const std::string& bytes) {
  std::string out = bytes;
  KVF_RETURN_IF_ERROR(protocol::StampSession(&out, session));
  return out;
}

absl::Status DataPlane::Register(NodeId node, PeerId peer, const NamespaceState& ns) {
  protocol::RegisterNamespaceRequest req;
  req.header = Header(ns);
  req.spec = ns.spec;
  KVF_ASSIGN_OR_RETURN(std::string unstamped, req.Encode());
  KVF_ASSIGN_OR_RETURN(uint64_t session, SessionFor(node, peer));
  KVF_ASSIGN_OR_RETURN(std::string bytes, Stamped(session, unstamped));
  auto resp = transport_->Call(peer, static_cast<uint16_t>(FrameType::kRegisterNamespaceRequest),
                               bytes, absl::Now() + timeout_);
  if (!resp.ok()) {
    return MarkUnreachable(absl::Status(
        resp.status().code(), absl::StrCat("node ", node, ": ", std::string(resp.status().message()))));
  }
  KVF_ASSIGN_OR_RETURN(auto hdr, DecodeHeader(*resp));
  if (hdr.type == FrameType::kErrorResponse) {
    KVF_ASSIGN_OR_RETURN(auto err, ErrorResponse::Decode(*resp));
    if (err.code == absl::StatusCode::kUnauthenticated) ForgetSession(node);
    return absl::Status(err.code, absl::StrCat("node ", node, ": registering namespace ",
                                               ns.spec.DebugString(), ": ", err.message));
  }
  KVF_RETURN_IF_ERROR(protocol::AckResponse::Decode(*resp).status());
  absl::MutexLock l(&mu_);
  peers_[node].registered.insert(ns.id);
  return absl::OkStatus();
}

absl::StatusOr<std::string> DataPlane::Interpret(NodeId node, absl::StatusOr<std::string> resp,
                                                 Retry* retry) {
  *retry = Retry::kNo;
  if (!resp.ok()) {
    return MarkUnreachable(absl::Status(
        resp.status().code(), absl::StrCat("node ", node, ": ", std::string(resp.status().message()))));
  }
  auto hdr = DecodeHeader(*resp);
  if (!hdr.ok()) {
    return absl::Status(hdr.status().code(), absl::StrCat("node ", node, " answered a bad frame: ",
                                                          std::string(hdr.status().message())));
  }
  if (hdr->type != FrameType::kErrorResponse) return std::move(resp);
  KVF_ASSIGN_OR_RETURN(ErrorResponse err, ErrorResponse::Decode(*resp));
  switch (ClassifyError(err)) {
    case ErrorAction::kRegisterAndRetry:
      *retry = Retry::kRegister;
      break;
    case ErrorAction::kHelloAndRetry:
      ForgetSession(node);
      *retry = Retry::kHello;
      break;
    case ErrorAction::kRefreshAndRetry: {
      auto snap = maps_->Current();
      if (snap != nullptr && err.current_epoch < snap->map.epoch) {
        // The node has not seen our map yet (it trusts no sender's epoch):
        // ask it again once it may have.
        *retry = Retry::kLagging;
      } else {
        absl::Status s = maps_->RefreshTo(err.current_epoch, absl::Now() + timeout_);
        (void)s;  // the caller re-plans with whatever map it has now
      }
      return WrongOwnerError(err.current_epoch, absl::StrCat("node ", node, ": ", err.message));
    }
    case ErrorAction::kFail:
      break;
  }
  return absl::Status(err.code, absl::StrCat("node ", node, ": ", err.message));
}

absl::StatusOr<std::string> DataPlane::Exchange(NodeId node, const NamespaceState& ns,
                                                uint16_t type, const std::string& bytes) {
  KVF_ASSIGN_OR_RETURN(Link link, LinkFor(node, ns.id));
  const PeerId peer = link.peer;
  if (!link.registered) KVF_RETURN_IF_ERROR(Register(node, peer, ns));
  bool registered_again = false, hello_again = false;
  absl::Duration lag_wait = absl::Milliseconds(1);
  const absl::Time give_up = absl::Now() + timeout_;
  while (true) {
    if (link.session == 0) {
      KVF_ASSIGN_OR_RETURN(link.session, SessionFor(node, peer));
    }
    KVF_ASSIGN_OR_RETURN(std::string stamped, Stamped(link.session, bytes));
    Retry retry = Retry::kNo;
    auto out = Interpret(node, transport_->Call(peer, type, stamped, absl::Now() + timeout_), &retry);
    switch (retry) {
      case Retry::kNo:
        return out;
      case Retry::kRegister:
        if (registered_again) return out;
        registered_again = true;
        {
          absl::MutexLock l(&mu_);
          peers_[node].registered.erase(ns.id);
        }
        KVF_RETURN_IF_ERROR(Register(node, peer, ns));
        break;
      case Retry::kHello:
        if (hello_again) return out;
        hello_again = true;
        link.session = 0;  // SessionFor says hello on the next turn
        break;
      case Retry::kLagging:
        // Map pushes reach agents within milliseconds; past a quarter of the
        // timeout the caller re-plans with the WRONG_OWNER.
        if (absl::Now() + lag_wait > give_up - 3 * timeout_ / 4) return out;
        absl::SleepFor(lag_wait);
        lag_wait = std::min(2 * lag_wait, absl::Milliseconds(64));
        break;
    }
  }
}

std::vector<absl::StatusOr<std::string>> DataPlane::ExchangeAll(
    const NamespaceState& ns, uint16_t type, const std::vector<std::pair<NodeId, std::string>>& reqs) {
  std::vector<absl::StatusOr<std::string>> out(reqs.size(), absl::UnknownError("not sent"));
  struct Pending {
    absl::Mutex mu;
    size_t outstanding ABSL_GUARDED_BY(mu) = 0;
    std::vector<absl::StatusOr<std::string>> raw ABSL_GUARDED_BY(mu);
  };
  auto pending = std::make_shared<Pending>();
  {
    absl::MutexLock l(&pending->mu);
    pending->raw.assign(reqs.size(), absl::UnknownError("no answer"));
  }
  std::vector<bool> async(reqs.size(), false);
  const absl::Time deadline = absl::Now() + timeout_;
  for (size_t i = 0; i < reqs.size(); ++i) {
    const NodeId node = reqs[i].first;
    auto link = LinkFor(node, ns.id);
    if (!link.ok()) {
      out[i] = link.status();
      continue;
    }
    // A node that has not heard of the namespace yet takes the blocking path,
    // which registers first.
    if (!link->registered) continue;
    auto stamped = Stamped(link->session, reqs[i].second);
    if (!stamped.ok()) {
      out[i] = stamped.status();
      continue;
    }
    {
      absl::MutexLock l(&pending->mu);
      ++pending->outstanding;
    }
    absl::Status sent = transport_->CallAsync(
        link->peer, type, *stamped, deadline, [pending, i](absl::StatusOr<std::string> r) {
          absl::MutexLock l(&pending->mu);
          pending->raw[i] = std::move(r);
          --pending->outstanding;
        });
    if (!sent.ok()) {
      absl::MutexLock l(&pending->mu);
      --pending->outstanding;
      continue;  // the blocking path below reports it
    }
    async[i] = true;
  }
  // Nodes that need the blocking path go while the others' answers travel.
  for (size_t i = 0; i < reqs.size(); ++i) {
    if (!async[i] && out[i].status().code() == absl::StatusCode::kUnknown) {
      out[i] = Exchange(reqs[i].first, ns, type, reqs[i].second);
    }
  }
  std::vector<absl::StatusOr<std::string>> raw;
  {
    absl::MutexLock l(&pending->mu);
    auto all_in = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(pending->mu) { return pending->outstanding == 0; };
    // CallAsync enforces the deadline; the margin covers the progress
    // thread's idle sweep.
    pending->mu.AwaitWithDeadline(absl::Condition(&all_in), deadline + absl::Seconds(1));
    raw = pending->raw;
  }
  for (size_t i = 0; i < reqs.size(); ++i) {
    if (!async[i]) continue;
    Retry retry = Retry::kNo;
    out[i] = Interpret(reqs[i].first, std::move(raw[i]), &retry);
    if (retry == Retry::kRegister) {
      absl::MutexLock l(&mu_);
      peers_[reqs[i].first].registered.erase(ns.id);
    }
    // The blocking path registers, says hello or waits for a lagging node.
    if (retry != Retry::kNo) out[i] = Exchange(reqs[i].first, ns, type, reqs[i].second);
  }
  return out;
}

namespace {

// Splits items of `sizes` into frames of at most kMaxDataRanges ranges and
// kMaxDataBytes bytes: calls add(frame, item, offset, length) per range.
template <typename Add>
size_t SplitIntoFrames(const std::vector<uint32_t>& sizes, Add add) {
  size_t frame = 0, ranges = 0, bytes = 0;
  for (size_t i = 0; i < sizes.size(); ++i) {
    for (uint32_t off = 0; off < sizes[i];) {
      if (ranges == protocol::kMaxDataRanges || bytes == protocol::kMaxDataBytes) {
        ++frame;
        ranges = bytes = 0;
      }
      const auto len = static_cast<uint32_t>(
          std::min<size_t>(sizes[i] - off, protocol::kMaxDataBytes - bytes));
      add(frame, i, off, len);
      ++ranges;
      bytes += len;
      off += len;
    }
  }
  return sizes.empty() ? 0 : frame + 1;
}

}  // namespace

absl::Status DataPlane::ReadThrough(NodeId node, const NamespaceState& ns, uint64_t lease_id,
                                    const std::vector<ReadItem>& items) {
  std::vector<uint32_t> sizes;
  for (const ReadItem& it : items) sizes.push_back(it.size);
  // Where each range's bytes go, per frame.
  std::vector<std::vector<std::pair<char*, uint32_t>>> dst;
  std::vector<std::pair<NodeId, protocol::ReadRequest>> reqs;
  SplitIntoFrames(sizes, [&](size_t frame, size_t i, uint32_t off, uint32_t len) {
    if (frame == reqs.size()) {
      reqs.emplace_back(node, protocol::ReadRequest{});
      reqs.back().second.lease_id = lease_id;
      dst.emplace_back();
    }
    reqs[frame].second.ranges.push_back({items[i].entry, off, len});
    dst[frame].emplace_back(static_cast<char*>(items[i].dst) + off, len);
  });
  std::vector<absl::StatusOr<protocol::ReadResponse>> resps =
      SendAll<protocol::ReadResponse>(ns, std::move(reqs));
  for (size_t f = 0; f < resps.size(); ++f) {
    if (!resps[f].ok()) return resps[f].status();
    const std::string& bytes = resps[f]->bytes;
    size_t want = 0;
    for (const auto& [to, len] : dst[f]) want += len;
    if (bytes.size() != want) {
      return absl::InternalError(absl::StrCat("node ", node, " answered a read with ",
                                              bytes.size(), " bytes for ", want));
    }
    size_t at = 0;
    for (const auto& [to, len] : dst[f]) {
      std::memcpy(to, bytes.data() + at, len);
      at += len;
    }
  }
  return absl::OkStatus();
}

absl::Status DataPlane::WriteThrough(NodeId node, const NamespaceState& ns,
                                     const std::vector<WriteItem>& items) {
  std::vector<uint32_t> sizes;
  for (const WriteItem& it : items) sizes.push_back(it.size);
  std::vector<std::pair<NodeId, protocol::WriteRequest>> reqs;
  SplitIntoFrames(sizes, [&](size_t frame, size_t i, uint32_t off, uint32_t len) {
    if (frame == reqs.size()) reqs.emplace_back(node, protocol::WriteRequest{});
    reqs[frame].second.ranges.push_back({items[i].reservation_id, off, len});
    reqs[frame].second.bytes.append(static_cast<const char*>(items[i].src) + off, len);
  });
  for (auto& r : SendAll<protocol::AckResponse>(ns, std::move(reqs))) {
    if (!r.ok()) return r.status();
  }
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<RemoteRegion>> DataPlane::Import(
    NodeId node, const RemoteDescriptor& descriptor) {
  KVF_ASSIGN_OR_RETURN(PeerId peer, PeerFor(node));
  {
    // The import remembers what it imported: a region re-registered under
    // the same id (new rkey or range) is imported again.
    absl::MutexLock l(&mu_);
    auto& imports = peers_[node].imports;
    auto it = imports.find(descriptor.region_id);
    if (it != imports.end() && it->second->descriptor() == descriptor) return it->second;
  }
  auto region = transport_->ImportRemote(peer, descriptor, absl::Now() + timeout_);
  if (!region.ok()) {
    absl::Status s(region.status().code(), absl::StrCat("importing a region of node ", node, ": ",
                                                        std::string(region.status().message())));
    return region.status().code() == absl::StatusCode::kNotFound ? s : MarkUnreachable(s);
  }
  std::shared_ptr<RemoteRegion> shared(std::move(*region));
  absl::MutexLock l(&mu_);
  auto it = peers_.find(node);
  if (it != peers_.end() && it->second.peer == peer) {
    it->second.imports[descriptor.region_id] = shared;
  }
  return shared;
}

MappedArena DataPlane::MappedArenaOf(NodeId node, const RemoteDescriptor& descriptor) {
  MappedArena arena;
  absl::StatusOr<std::shared_ptr<RemoteRegion>> region = Import(node, descriptor);
  if (!region.ok()) return arena;
  std::byte* base = transport_->MappedAddress(**region, 0, 1);
  if (base == nullptr) return arena;
  arena.region = *std::move(region);
  arena.transport = transport_;
  arena.bytes = absl::MakeSpan(base, descriptor.size);
  absl::MutexLock l(&mu_);
  if (auto it = peers_.find(node); it != peers_.end()) it->second.mapped_here = true;
  return arena;
}

bool DataPlane::OnThisHost(NodeId node) {
  absl::MutexLock l(&mu_);
  auto it = peers_.find(node);
  return it != peers_.end() && it->second.mapped_here;
}

absl::StatusOr<std::byte*> DataPlane::DeviceArenaOf(NodeId node,
                                                    const RemoteDescriptor& descriptor,
                                                    int device) {
  const std::pair<uint64_t, int> key{descriptor.region_id, device};
  {
    absl::MutexLock l(&mu_);
    auto it = peers_.find(node);
    if (it == peers_.end()) return absl::UnavailableError(absl::StrCat("node ", node, " is not connected"));
    if (auto m = it->second.device_arenas.find(key); m != it->second.device_arenas.end()) {
      return static_cast<std::byte*>(m->second->data());
    }
  }
  // Opened outside the lock (it may take milliseconds); a racing opener's
  // mapping is kept, this one closed.
  absl::StatusOr<IpcMapping> opened = IpcMapping::Open(descriptor.rkey, device);
  absl::MutexLock l(&mu_);
  auto it = peers_.find(node);
  if (it == peers_.end()) return absl::UnavailableError(absl::StrCat("node ", node, " is not connected"));
  if (!opened.ok()) {
    it->second.mapped_here = false;
    return absl::Status(opened.status().code(),
                        absl::StrCat("node ", node, ": mapping its GPU tier over CUDA IPC: ",
                                     std::string(opened.status().message())));
  }
  auto [m, fresh] = it->second.device_arenas.try_emplace(
      key, std::make_shared<IpcMapping>(*std::move(opened)));
  return static_cast<std::byte*>(m->second->data());
}

void DataPlane::DropImport(NodeId node, uint64_t region_id) {
  absl::MutexLock l(&mu_);
  auto it = peers_.find(node);
  if (it != peers_.end()) it->second.imports.erase(region_id);
}

absl::Status DataPlane::Transfer(NodeId node, const RemoteDescriptor& descriptor,
                                 TransferBatch batch) {
  for (int attempt = 0;; ++attempt) {
    KVF_ASSIGN_OR_RETURN(std::shared_ptr<RemoteRegion> remote, Import(node, descriptor));
    batch.remote = remote.get();
    auto req = transport_->Post(batch);
    if (!req.ok()) {
      if (req.status().code() == absl::StatusCode::kFailedPrecondition && attempt == 0) {
        DropImport(node, descriptor.region_id);
        continue;
      }
      return MarkUnreachable(absl::Status(
          req.status().code(),
          absl::StrCat("posting to node ", node, ": ", std::string(req.status().message()))));
    }
    absl::Status s = (*req)->Wait(absl::Now() + timeout_);
    if (!s.ok()) {
      if (s.code() == absl::StatusCode::kDeadlineExceeded) (*req)->Cancel();
      req->reset();  // waits until the backend lets go of the buffers
      return MarkUnreachable(absl::Status(
          s.code(), absl::StrCat("transfer with node ", node, ": ", std::string(s.message()))));
    }
    return absl::OkStatus();
  }
}

bool DataPlane::TwoSidedTo(NodeId node) {
  if (tenant_ || !transport_->capabilities().two_sided || lane_ == DataLane::kOneSided) {
    return false;
  }
  if (lane_ == DataLane::kTwoSided) return true;
  absl::StatusOr<PeerId> peer = PeerFor(node);
  return peer.ok() && !transport_->NativeOneSided(*peer);
}

absl::StatusOr<protocol::GetResponse> DataPlane::Fetch(NodeId node, const NamespaceState& ns,
                                                       protocol::GetRequest get,
                                                       absl::Span<const BlockBuffer> dst,
                                                       const std::vector<uint32_t>& items,
                                                       std::vector<absl::Status>* received) {
  protocol::FetchRequest req;
  req.keys = std::move(get.keys);
  req.has_min_version = get.has_min_version;
  req.min_version = get.min_version;
  const size_t n = req.keys.size();
  // One receive (one request) per block, so those the answer says nothing
  // comes for can be withdrawn alone.
  std::vector<std::unique_ptr<TransferRequest>> recvs(n);
  req.tags.resize(n);
  for (size_t k = 0; k < n; ++k) {
    const BlockBuffer& b = dst[items[k]];
    req.tags[k] = next_tag_.fetch_add(1, std::memory_order_relaxed);
    TransferBatch batch;
    batch.kind = TransferKind::kRecv;
    batch.ops.push_back({b.data, b.size, 0, req.tags[k]});
    absl::StatusOr<std::unique_ptr<TransferRequest>> r = transport_->Post(std::move(batch));
    if (!r.ok()) {
      return absl::Status(r.status().code(), absl::StrCat("posting a receive for node ", node,
                                                          ": ", r.status().message()));
    }
    recvs[k] = std::move(*r);
  }
  absl::StatusOr<protocol::GetResponse> resp = Send<protocol::GetResponse>(node, ns, std::move(req));
  if (!resp.ok()) return resp.status();  // nothing was sent: the receives are withdrawn
  if (resp->entries.size() != n || !resp->descriptors.empty() || resp->lease_id != 0) {
    return absl::InternalError(
        absl::StrCat("node ", node, " answered a FetchRequest with a get's lease or wrong entries"));
  }
  received->assign(n, absl::OkStatus());
  const absl::Time deadline = absl::Now() + timeout_;
  for (size_t k = 0; k < n; ++k) {
    if (resp->entries[k].code != absl::StatusCode::kOk) {
      recvs[k].reset();  // nothing comes for it
      (*received)[k] = absl::Status(resp->entries[k].code, "not served");
      continue;
    }
    absl::Status s = recvs[k]->Wait(deadline);
    if (s.ok()) continue;
    if (s.code() == absl::StatusCode::kDeadlineExceeded) recvs[k]->Cancel();
    recvs[k].reset();
    (*received)[k] = MarkUnreachable(absl::Status(
        s.code(), absl::StrCat("receiving a block from node ", node, ": ", s.message())));
  }
  return resp;
}

absl::StatusOr<protocol::ReserveResponse> DataPlane::Store(NodeId node, const NamespaceState& ns,
                                                           protocol::ReserveRequest req,
                                                           std::vector<uint64_t>* tags) {
  protocol::StoreRequest store;
  store.entries = std::move(req.entries);
  store.tags.resize(store.entries.size());
  for (uint64_t& t : store.tags) t = next_tag_.fetch_add(1, std::memory_order_relaxed);
  *tags = store.tags;
  absl::StatusOr<protocol::ReserveResponse> resp =
      Send<protocol::ReserveResponse>(node, ns, std::move(store));
  if (resp.ok() && !resp->descriptors.empty()) {
    return absl::InternalError(absl::StrCat("node ", node, " answered a StoreRequest with descriptors"));
  }
  return resp;
}

absl::Status DataPlane::SendBlocks(NodeId node, const std::vector<WriteItem>& items) {
  KVF_ASSIGN_OR_RETURN(PeerId peer, PeerFor(node));
  TransferBatch batch;
  batch.kind = TransferKind::kSend;
  batch.peer = peer;
  for (const WriteItem& it : items) {
    batch.ops.push_back({const_cast<void*>(it.src), it.size, 0, it.tag});
  }
  auto req = transport_->Post(std::move(batch));
  if (!req.ok()) {
    return MarkUnreachable(absl::Status(
        req.status().code(), absl::StrCat("sending to node ", node, ": ", req.status().message())));
  }
  absl::Status s = (*req)->Wait(absl::Now() + timeout_);
  if (!s.ok()) {
    if (s.code() == absl::StatusCode::kDeadlineExceeded) (*req)->Cancel();
    req->reset();
    return MarkUnreachable(
        absl::Status(s.code(), absl::StrCat("sending to node ", node, ": ", s.message())));
  }
  return absl::OkStatus();
}

absl::StatusOr<protocol::CommitResponse> DataPlane::CommitSent(NodeId node,
                                                               const NamespaceState& ns,
                                                               protocol::CommitRequest commit) {
  const std::vector<uint64_t> ids = commit.reservation_ids;
  KVF_ASSIGN_OR_RETURN(protocol::CommitResponse out,
                       Send<protocol::CommitResponse>(node, ns, commit));
  if (out.results.size() != ids.size()) return out;  // the caller reports the count
  // Each retry is a round trip behind the sends this client already saw
  // complete, so the bytes are at most in the agent's receive queue.
  const absl::Time deadline = absl::Now() + timeout_;
  while (true) {
    std::vector<size_t> again;
    for (size_t k = 0; k < ids.size(); ++k) {
      if (out.results[k].code == absl::StatusCode::kUnavailable) again.push_back(k);
    }
    if (again.empty() || absl::Now() >= deadline) return out;
    protocol::CommitRequest retry = commit;
    retry.reservation_ids.clear();
    for (size_t k : again) retry.reservation_ids.push_back(ids[k]);
    KVF_ASSIGN_OR_RETURN(protocol::CommitResponse r,
                         Send<protocol::CommitResponse>(node, ns, std::move(retry)));
    if (r.results.size() != again.size()) return out;
    for (size_t m = 0; m < again.size(); ++m) out.results[again[m]] = r.results[m];
  }
}

}  // namespace kvf::client_internal
