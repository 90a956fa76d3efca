#include "node/agent/data_plane.h"

#include <algorithm>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "common/credentials.h"
#include "common/logging.h"
#include "common/status_macros.h"

namespace kvf {
namespace {

using protocol::ErrorResponse;
using protocol::FrameHeader;

// Known-newer versions kept for keys a replica has not caught up on. Past
// this the oldest half is forgotten; their stale copies were already dropped
// (Invalidate removes unpinned stale blocks), so nothing stale is served.
constexpr size_t kMaxKnownVersions = 1 << 20;
constexpr absl::Duration kTombstoneTtl = absl::Seconds(2);

}  // namespace

FrameHeader DataPlane::Reply(const FrameHeader& request, uint64_t epoch) {
  FrameHeader h = request;
  h.sender_epoch = epoch;
  return h;
}

std::vector<uint64_t> DataPlane::HashesOf(const std::vector<protocol::KeyRef>& keys) {
  std::vector<uint64_t> out;
  out.reserve(keys.size());
  for (const auto& k : keys) out.push_back(k.placement_hash);
  return out;
}

std::string_view DataOpName(DataOp op) {
  switch (op) {
    case DataOp::kLookup: return "lookup";
    case DataOp::kGet: return "get";
    case DataOp::kRelease: return "release";
    case DataOp::kReserve: return "reserve";
    case DataOp::kCommit: return "commit";
    case DataOp::kRemove: return "remove";
    case DataOp::kInvalidate: return "invalidate";
    case DataOp::kRegister: return "register_namespace";
    case DataOp::kHello: return "hello";
    case DataOp::kRead: return "read";
    case DataOp::kWrite: return "write";
    case DataOp::kFetch: return "fetch";
    case DataOp::kStore: return "store";
  }
  return "unknown";
}

std::string_view LimitedResourceName(LimitedResource r) {
  switch (r) {
    case LimitedResource::kSessions: return "sessions";
    case LimitedResource::kNamespaces: return "namespaces";
    case LimitedResource::kReadLeases: return "read_leases";
    case LimitedResource::kReservations: return "reservations";
  }
  return "unknown";
}

bool Ownership::Owns(NodeId node, uint64_t hash) const {
  for (const std::optional<Placement>* p : {&read, &target}) {
    if (!p->has_value()) continue;
    for (NodeId id : (*p)->Owners(hash)) {
      if (id == node) return true;
    }
  }
  return false;
}

OwnerList Ownership::Owners(uint64_t hash) const {
  OwnerList out;
  for (const std::optional<Placement>* p : {&read, &target}) {
    if (!p->has_value()) continue;
    for (NodeId id : (*p)->Owners(hash)) {
      if (std::find(out.begin(), out.end(), id) == out.end()) out.push_back(id);
    }
  }
  return out;
}

DataPlane::DataPlane(ShardStore* store, Transport* transport, const MemoryRegion* arena,
                     DataPlaneOptions options)
    : store_(store),
      transport_(transport),
      arena_(arena),
      device_export_(DeviceExport::Of(*store)),
      options_(options),
      sessions_(options.cluster_token, options.previous_tokens, options.sessions),
      tagger_(options.cluster_token),
      ownership_(std::make_shared<Ownership>()) {
  for (const std::string& t : options.previous_tokens) {
    previous_taggers_.push_back(std::make_unique<const VersionTagger>(t));
  }
  if (options.read_holds.hold > absl::ZeroDuration() && options.read_holds.max_held_bytes > 0) {
    holds_ = std::make_unique<ReadHolds>(store_, options.read_holds);
  }
  absl::MutexLock l(&fetch_guard_->mu);
  fetch_guard_->plane = this;
}

ReadHoldStats DataPlane::read_holds() const {
  return holds_ != nullptr ? holds_->stats() : ReadHoldStats{};
}

DataPlane::~DataPlane() {
  {
    absl::MutexLock l(&fetch_guard_->mu);  // waits for a Fetch callback in flight
    fetch_guard_->plane = nullptr;
  }
  // Requests arriving from now on are refused without touching this object.
  for (uint16_t type = 1; type <= protocol::kMaxFrameType; ++type) {
    (void)RegisterEverywhere(type, [](std::string_view) -> absl::StatusOr<std::string> {
      return absl::UnavailableError("agent is shutting down");
    });
  }
  absl::MutexLock lock(&mu_);
  for (auto& [id, lease] : leases_) {
    for (uint64_t l : lease.store_leases) (void)store_->Unpin(l);
  }
}

absl::Status DataPlane::SetMap(const ClusterMap& map) {
  auto next = std::make_shared<Ownership>();
  next->map = map;
  KVF_ASSIGN_OR_RETURN(Placement read, Placement::Build(Placement::ReadMembers(map), map.ring));
  KVF_ASSIGN_OR_RETURN(Placement target,
                       Placement::Build(Placement::TargetMembers(map), map.ring));
  next->read.emplace(std::move(read));
  next->target.emplace(std::move(target));
  absl::MutexLock lock(&mu_);
  if (map.epoch <= ownership_->epoch() && ownership_->epoch() != 0) return absl::OkStatus();
  ownership_ = std::move(next);
  return absl::OkStatus();
}

std::shared_ptr<const Ownership> DataPlane::ownership() const {
  absl::MutexLock lock(&mu_);
  return ownership_;
}

uint64_t DataPlane::epoch() const { return ownership()->epoch(); }

std::optional<NamespaceSpec> DataPlane::Spec(NamespaceId ns) const {
  absl::MutexLock lock(&mu_);
  auto it = specs_.find(ns);
  if (it == specs_.end()) return std::nullopt;
  return it->second;
}

bool DataPlane::TagAccepted(uint64_t tag, NamespaceId ns, const BlockKey& key,
                            const Version& version) const {
  if (tag == tagger_.Tag(ns, key, version)) return true;
  for (const auto& t : previous_taggers_) {
    if (tag == t->Tag(ns, key, version)) return true;
  }
  return false;
}

std::string DataPlane::TenantOf(NamespaceId ns) const {
  absl::MutexLock lock(&mu_);
  auto it = specs_.find(ns);
  return it == specs_.end() ? std::string() : it->second.tenant;
}

void DataPlane::SetLeaseUntil(std::chrono::steady_clock::time_point until) {
  lease_until_ns_.store(
      std::chrono::duration_cast<std::chrono::nanoseconds>(until.time_since_epoch()).count());
}

bool DataPlane::LeaseLapsed() const {
  const int64_t until = lease_until_ns_.load();
  if (until == 0) return false;
  const int64_t now = std::chrono::duration_cast<std::chrono::nanoseconds>(
                          std::chrono::steady_clock::now().time_since_epoch())
                          .count();
  return now > until;
}

bool DataPlane::IsStale(NamespaceId ns, const BlockKey& key, const Version& stored) const {
  absl::MutexLock lock(&mu_);
  auto it = known_.find(KeyOf{ns, key});
  return it != known_.end() && it->second > stored;
}

uint64_t DataPlane::requests(DataOp op) const { return latency_[static_cast<int>(op)].count(); }

uint64_t DataPlane::active_batch_leases() const {
  absl::MutexLock lock(&mu_);
  return leases_.size();
}

void DataPlane::Sweep() {
  const absl::Time now = absl::Now();
  std::vector<uint64_t> unpin;
  // Stores that expired: their receives are withdrawn (outside mu_), then
  // their pages released, so no late message lands in a reused page.
  std::vector<std::pair<uint64_t, std::shared_ptr<TransferRequest>>> withdrawn;
  {
    absl::MutexLock lock(&mu_);
    for (auto it = leases_.begin(); it != leases_.end();) {
      if (it->second.expires <= now) {
        unpin.insert(unpin.end(), it->second.store_leases.begin(), it->second.store_leases.end());
        ReleaseUsage(it->second.tenant, it->second.counted, &TenantUsage::read_leases);
        leases_.erase(it++);
      } else {
        ++it;
      }
    }
    for (auto it = reservations_.begin(); it != reservations_.end();) {
      if (it->second.expires <= now) {
        ReleaseUsage(it->second.tenant, it->second.counted, &TenantUsage::reservations);
        if (it->second.recv != nullptr) withdrawn.push_back({it->first, std::move(it->second.recv)});
        reservations_.erase(it++);
      } else {
        ++it;
      }
    }
    absl::erase_if(removed_, [&](const auto& r) { return r.second + kTombstoneTtl <= now; });
  }
  for (uint64_t l : unpin) (void)store_->Unpin(l);
  for (auto& [id, recv] : withdrawn) {
    recv.reset();  // cancels a receive still posted and waits for UCX to let go
    (void)store_->Abort(id);
  }
  store_->ExpireLeases();
  sessions_.Expire();
}

void DataPlane::ReleaseUsage(const std::string& tenant, bool counted,
                             size_t TenantUsage::*field) {
  if (!counted) return;
  auto it = usage_.find(tenant);
  if (it != usage_.end() && it->second.*field > 0) --(it->second.*field);
}

absl::Status DataPlane::Exhausted(LimitedResource r, const std::string& tenant, size_t limit) {
  ++exhausted_[static_cast<int>(r)];
  return absl::ResourceExhaustedError(absl::StrCat("tenant '", tenant, "' holds its limit of ",
                                                   limit, " ", std::string(LimitedResourceName(r)),
                                                   " on node ", self_.load()));
}

absl::Status DataPlane::Start(CommitListener on_commit, RemoveListener on_remove) {
  on_commit_ = std::move(on_commit);
  on_remove_ = std::move(on_remove);
  KVF_RETURN_IF_ERROR(RegisterEverywhere(
      static_cast<uint16_t>(protocol::FrameType::kHelloRequest),
      [this](std::string_view bytes) -> absl::StatusOr<std::string> {
        const absl::Time start = absl::Now();
        absl::StatusOr<std::string> out = OnHello(bytes);
        latency_[static_cast<int>(DataOp::kHello)].Record(absl::Now() - start);
        return out;
      }));
  KVF_RETURN_IF_ERROR(Handle<protocol::RegisterNamespaceRequest>(
      DataOp::kRegister, [this](const auto& r, const Session& s) { return OnRegister(r, s); }));
  KVF_RETURN_IF_ERROR(Handle<protocol::LookupRequest>(
      DataOp::kLookup, [this](const auto& r, const Session& s) { return OnLookup(r, s); }));
  KVF_RETURN_IF_ERROR(Handle<protocol::GetRequest>(
      DataOp::kGet, [this](const auto& r, const Session& s) { return OnGet(r, s); }));
  KVF_RETURN_IF_ERROR(Handle<protocol::ReleaseRequest>(
      DataOp::kRelease, [this](const auto& r, const Session& s) { return OnRelease(r, s); }));
  KVF_RETURN_IF_ERROR(Handle<protocol::ReserveRequest>(
      DataOp::kReserve, [this](const auto& r, const Session& s) { return OnReserve(r, s); }));
  if (transport_->capabilities().two_sided) {  // Store posts receives: main transport only
    KVF_RETURN_IF_ERROR(transport_->RegisterHandler(
        static_cast<uint16_t>(protocol::FrameType::kStoreRequest), [this](std::string_view bytes) {
          return Serve<protocol::StoreRequest>(
              DataOp::kStore, bytes, [this](const auto& r, const Session& s) {
                return ReserveEntries(r.header, r.entries, s, &r.tags);
              });
        }));
  }
  KVF_RETURN_IF_ERROR(Handle<protocol::CommitRequest>(
      DataOp::kCommit, [this](const auto& r, const Session& s) { return OnCommit(r, s); }));
  KVF_RETURN_IF_ERROR(Handle<protocol::RemoveRequest>(
      DataOp::kRemove, [this](const auto& r, const Session& s) { return OnRemove(r, s); }));
  KVF_RETURN_IF_ERROR(Handle<protocol::ReadRequest>(
      DataOp::kRead, [this](const auto& r, const Session& s) { return OnRead(r, s); }));
  KVF_RETURN_IF_ERROR(Handle<protocol::WriteRequest>(
      DataOp::kWrite, [this](const auto& r, const Session& s) { return OnWrite(r, s); }));
  // The two-sided lane: the main transport only (the tenants' messages-only
  // transport has no tagged messages; tenants read through the agent).
  if (transport_->capabilities().two_sided) {
    KVF_RETURN_IF_ERROR(transport_->RegisterDataHandler(
        static_cast<uint16_t>(protocol::FrameType::kFetchRequest),
        [this](std::string_view bytes, ReplySends* sends) {
          return Serve<protocol::FetchRequest>(
              DataOp::kFetch, bytes,
              [this, sends](const auto& r, const Session& s) { return OnFetch(r, s, sends); });
        }));
  }
  return Handle<protocol::InvalidateRequest>(
      DataOp::kInvalidate, [this](const auto& r, const Session& s) { return OnInvalidate(r, s); });
}

absl::Status DataPlane::RegisterEverywhere(uint16_t type, const MessageHandler& handler) {
  KVF_RETURN_IF_ERROR(transport_->RegisterHandler(type, handler));
  for (Transport* t : also_) KVF_RETURN_IF_ERROR(t->RegisterHandler(type, handler));
  return absl::OkStatus();
}

absl::StatusOr<std::string> DataPlane::OnHello(std::string_view bytes) {
  const uint64_t epoch = this->epoch();
  absl::StatusOr<protocol::HelloRequest> req = protocol::HelloRequest::Decode(bytes);
  if (!req.ok()) {
    ++bad_frames_;
    ++errors_[static_cast<int>(DataOp::kHello)];
    absl::StatusOr<protocol::ParsedHeader> h = protocol::DecodeHeader(bytes);
    return ErrorResponse::FromStatus(h.ok() ? h->header : FrameHeader{}, req.status(), epoch)
        .Encode();
  }
  absl::StatusOr<uint64_t> session = serving_.load()
                                         ? sessions_.Open(*req)
                                         : absl::UnavailableError("agent is shutting down");
  if (!session.ok()) {
    ++errors_[static_cast<int>(DataOp::kHello)];
    if (absl::IsUnauthenticated(session.status())) ++unauthenticated_;
    if (absl::IsResourceExhausted(session.status())) {
      ++exhausted_[static_cast<int>(LimitedResource::kSessions)];
    }
    return ErrorResponse::FromStatus(req->header, session.status(), epoch).Encode();
  }
  protocol::HelloResponse resp;
  resp.header = Reply(req->header, epoch);
  resp.session = *session;
  resp.idle_ttl_us = static_cast<uint64_t>(absl::ToInt64Microseconds(options_.sessions.idle_ttl));
  return resp.Encode();
}

template <typename Req, typename Fn>
absl::Status DataPlane::Handle(DataOp op, Fn fn) {
  return RegisterEverywhere(static_cast<uint16_t>(Req::kType),
                            [this, op, fn](std::string_view bytes) {
                              return Serve<Req>(op, bytes, fn);
                            });
}

template <typename Req, typename Fn>
absl::StatusOr<std::string> DataPlane::Serve(DataOp op, std::string_view bytes, const Fn& fn) {
  const absl::Time start = absl::Now();
  const uint64_t epoch = this->epoch();
  absl::StatusOr<Req> req = Req::Decode(bytes);
  absl::StatusOr<std::string> out;
  if (!req.ok()) {
    ++bad_frames_;
    absl::StatusOr<protocol::ParsedHeader> h = protocol::DecodeHeader(bytes);
    out = ErrorResponse::FromStatus(h.ok() ? h->header : FrameHeader{}, req.status(), epoch)
              .Encode();
  } else if (absl::StatusOr<std::shared_ptr<const Session>> session =
                 sessions_.Find(req->header.session);
             !session.ok()) {
    ++unauthenticated_;
    out = ErrorResponse::FromStatus(req->header, session.status(), epoch).Encode();
  } else if (op == DataOp::kInvalidate && !(*session)->is_agent()) {
    ++permission_denied_;
    out = ErrorResponse::FromStatus(
              req->header,
              absl::PermissionDeniedError(absl::StrCat(
                  std::string(protocol::FrameTypeName(Req::kType)), " is only accepted from agents")),
              epoch)
              .Encode();
  } else if (absl::Status s = op == DataOp::kRegister ? absl::OkStatus()
                                                       : CheckHeader(req->header, **session);
             !s.ok()) {
    out = ErrorResponse::FromStatus(req->header, s, epoch).Encode();
  } else {
    out = fn(*req, **session);
    if (!out.ok()) out = ErrorResponse::FromStatus(req->header, out.status(), epoch).Encode();
  }
  if (!req.ok() || (out.ok() && protocol::DecodeHeader(*out).ok() &&
                    protocol::DecodeHeader(*out)->type == protocol::FrameType::kErrorResponse)) {
    ++errors_[static_cast<int>(op)];
  }
  latency_[static_cast<int>(op)].Record(absl::Now() - start);
  return out;
}

absl::Status DataPlane::CheckHeader(const FrameHeader& h, const Session& session) {
  if (!serving_.load()) return absl::UnavailableError("agent is shutting down");
  absl::MutexLock lock(&mu_);
  auto it = specs_.find(h.namespace_id);
  if (it == specs_.end()) {
    return absl::NotFoundError(absl::StrCat("namespace ", absl::Hex(h.namespace_id),
                                            " is not registered on node ", self_.load(),
                                            "; send RegisterNamespaceRequest"));
  }
  if (!session.MayUse(it->second.tenant)) {
    ++permission_denied_;
    return absl::PermissionDeniedError(absl::StrCat(
        "namespace ", absl::Hex(h.namespace_id), " belongs to another tenant than '",
        session.tenant, "'"));
  }
  const uint64_t fp = it->second.layout.Fingerprint();
  if (fp != h.layout_fingerprint) {
    return absl::InvalidArgumentError(absl::StrCat(
        "layout fingerprint ", absl::Hex(h.layout_fingerprint), " differs from namespace ",
        it->second.model_id, "'s ", absl::Hex(fp), " (", it->second.layout.DebugString(), ")"));
  }
  return absl::OkStatus();
}

absl::Status DataPlane::CheckOwner(const FrameHeader& h, const Session& session,
                                   const std::vector<uint64_t>& hashes,
                                   std::string* wrong_owner_frame) {
  std::shared_ptr<const Ownership> own = ownership();
  const NodeId self = self_.load();
  // No map yet: nothing to check against. An agent that knows a newer map is
  // trusted (it holds the cluster token); a client's epoch is only a claim,
  // so a client with a newer map than ours gets WRONG_OWNER at our epoch and
  // asks again once our map has caught up (client/internal/data_plane.cc).
  if (own->epoch() == 0 || self == kNoNode) return absl::OkStatus();
  if (session.is_agent() && h.sender_epoch > own->epoch()) return absl::OkStatus();
  for (uint64_t hash : hashes) {
    if (own->Owns(self, hash)) continue;
    ++wrong_owner_;
    const std::string why = absl::StrCat("node ", self, " does not own placement hash ",
                                         absl::Hex(hash), " at epoch ", own->epoch());
    KVF_ASSIGN_OR_RETURN(*wrong_owner_frame,
                         ErrorResponse::WrongOwner(h, own->epoch(), why).Encode());
    return absl::FailedPreconditionError(why);
  }
  return absl::OkStatus();
}

absl::StatusOr<uint64_t> DataPlane::ArenaOffset(const BlockLocation& loc) const {
  const auto* base = static_cast<const std::byte*>(arena_->data());
  if (loc.address < base || loc.address + loc.size > base + arena_->size()) {
    // PinHost and host-writer reservations always answer host-arena pages.
    return absl::InternalError(
        absl::StrCat("a ", std::string(TierName(loc.tier)),
                     "-tier page outside the agent's host arena was handed out"));
  }
  return static_cast<uint64_t>(loc.address - base);
}

absl::StatusOr<std::string> DataPlane::OnRegister(const protocol::RegisterNamespaceRequest& r,
                                                  const Session& s) {
  if (!serving_.load()) return absl::UnavailableError("agent is shutting down");
  if (!s.MayUse(r.spec.tenant)) {
    ++permission_denied_;
    return absl::PermissionDeniedError(absl::StrCat(
        "a session of tenant '", s.tenant, "' cannot register a namespace of tenant '",
        r.spec.tenant, "'"));
  }
  {
    // Count the namespace against its tenant before the store keeps it.
    absl::MutexLock lock(&mu_);
    if (!specs_.contains(r.header.namespace_id)) {
      TenantUsage& usage = usage_[r.spec.tenant];
      if (!s.cluster && usage.namespaces >= options_.tenant_limits.namespaces) {
        return Exhausted(LimitedResource::kNamespaces, r.spec.tenant,
                         options_.tenant_limits.namespaces);
      }
    }
  }
  KVF_ASSIGN_OR_RETURN(NamespaceId id, store_->RegisterNamespace(r.spec));
  if (id != r.header.namespace_id) {
    return absl::InvalidArgumentError("namespace id does not match its spec");
  }
  {
    absl::MutexLock lock(&mu_);
    if (specs_.emplace(id, r.spec).second) ++usage_[r.spec.tenant].namespaces;
  }
  return protocol::AckResponse{Reply(r.header, epoch())}.Encode();
}

absl::StatusOr<std::string> DataPlane::OnLookup(const protocol::LookupRequest& r,
                                                const Session& s) {
  std::string wrong;
  if (!CheckOwner(r.header, s, HashesOf(r.keys), &wrong).ok()) return wrong;
  std::vector<BlockKey> keys;
  keys.reserve(r.keys.size());
  for (const auto& k : r.keys) keys.push_back(k.key);
  std::vector<std::optional<BlockInfo>> found = store_->Lookup(r.header.namespace_id, keys);
  protocol::LookupResponse resp;
  resp.header = Reply(r.header, epoch());
  resp.entries.resize(keys.size());
  const bool fenced = LeaseLapsed();
  {
    absl::MutexLock lock(&mu_);
    for (size_t i = 0; i < keys.size(); ++i) {
      if (!found[i]) continue;
      if (fenced && found[i]->mutable_entry) {  // cannot prove it current: not held
        ++fenced_refusals_;
        found[i].reset();
        continue;
      }
      auto it = known_.find(KeyOf{r.header.namespace_id, keys[i]});
      if (it != known_.end() && it->second > found[i]->version) {  // stale: not held
        found[i].reset();
        continue;
      }
      resp.entries[i] = protocol::LookupEntry{true, found[i]->codec,
                                              static_cast<uint32_t>(found[i]->size),
                                              found[i]->version};
    }
  }
  // What was reported held stays readable for the get that follows.
  if (holds_ != nullptr) holds_->OnLookup(r.header.namespace_id, keys, found);
  return resp.Encode();
}

absl::StatusOr<std::string> DataPlane::OnReserve(const protocol::ReserveRequest& r,
                                                 const Session& s) {
  return ReserveEntries(r.header, r.entries, s, nullptr);
}

absl::StatusOr<std::string> DataPlane::ReserveEntries(
    const protocol::FrameHeader& header, const std::vector<protocol::ReserveEntry>& entries,
    const Session& s, const std::vector<uint64_t>* tags) {
  if (tags != nullptr && !s.cluster) {
    ++permission_denied_;
    return absl::PermissionDeniedError(
        "StoreRequest is for trusted sessions; a tenant writes through the agent (WriteRequest)");
  }
  std::vector<uint64_t> hashes;
  for (const auto& e : entries) hashes.push_back(e.placement_hash);
  std::string wrong;
  if (!CheckOwner(header, s, hashes, &wrong).ok()) return wrong;
  const NamespaceId ns = header.namespace_id;
  const std::string tenant = TenantOf(ns);  // CheckHeader found it
  protocol::ReserveResponse resp;
  resp.header = Reply(header, epoch());
  resp.results.resize(entries.size());
  // Trusted peers write the arena one-sided, or send (Store); a tenant
  // writes through the agent.
  const bool no_descriptors = !s.cluster || tags != nullptr;
  if (!no_descriptors) resp.descriptors.push_back(arena_->descriptor());
  // A Store's reservation is withdrawn by Sweep at half the TTL (its receive
  // first, then the page), well before the store would expire the page
  // under a receive still posted into it.
  const absl::Time expires =
      absl::Now() + (tags != nullptr ? options_.reservation_ttl / 2 : options_.reservation_ttl);
  const bool fenced = LeaseLapsed();
  for (size_t i = 0; i < entries.size(); ++i) {
    const protocol::ReserveEntry& in = entries[i];
    protocol::ReserveResult& out = resp.results[i];
    if (in.has_version && !s.is_agent() &&
        !TagAccepted(in.version_tag, ns, in.key, in.version)) {
      // Only an owner's commit moves a version: a client forwards a
      // primary's version (ack=all) with the primary's tag, or not at all.
      ++permission_denied_;
      out.code = absl::StatusCode::kPermissionDenied;
      continue;
    }
    if (fenced && in.is_mutable && !in.has_version) {
      // A client's write of a mutable entry: another owner may hold a newer
      // version this node cannot see. Copies from a primary carry a version
      // and are kept only if newer, so they stay welcome.
      ++fenced_refusals_;
      out.code = absl::StatusCode::kUnavailable;
      continue;
    }
    {
      absl::MutexLock lock(&mu_);
      auto tomb = removed_.find(KeyOf{ns, in.key});
      if (tomb != removed_.end()) {
        if (!in.has_version) {
          removed_.erase(tomb);  // a client writes it anew
        } else if (tomb->second + kTombstoneTtl > absl::Now()) {
          out.code = absl::StatusCode::kAborted;  // removed while this copy was in flight
          continue;
        }
      }
    }
    if (in.has_version) {
      // A copy from the primary or a migration: keep the newest only.
      std::optional<BlockInfo> stored = store_->Lookup(ns, {&in.key, 1})[0];
      if (stored && stored->version >= in.version) {
        out.already_present = true;
        out.version = stored->version;
        out.version_tag = tagger_.Tag(ns, in.key, stored->version);
        continue;
      }
      if (IsStale(ns, in.key, in.version)) {
        out.code = absl::StatusCode::kAborted;  // a newer version is already known
        continue;
      }
    }
    PutOptions options;
    options.codec = in.codec;
    options.mutable_entry = in.is_mutable;
    options.parent = in.parent;
    options.depth = in.depth;
    options.placement_hash = in.placement_hash;
    if (in.has_version) options.version = in.version;
    // The writer reaches the host arena only: with a device tier the page is
    // a host staging page, and Commit moves the block up (docs/agent.md).
    options.host_writer = true;
    absl::StatusOr<PutReservation> res =
        store_->Reserve(ns, in.key, in.size, options, options_.reservation_ttl);
    if (!res.ok()) {
      out.code = res.status().code();
      continue;
    }
    if (res->already_present) {
      out.already_present = true;
      out.version = res->version;
      out.version_tag = tagger_.Tag(ns, in.key, res->version);
      continue;
    }
    absl::StatusOr<uint64_t> offset = ArenaOffset(res->location);
    if (!offset.ok()) {
      (void)store_->Abort(res->id);
      out.code = offset.status().code();
      continue;
    }
    const auto size = static_cast<uint32_t>(res->location.size);
    std::shared_ptr<TransferRequest> recv;
    if (tags != nullptr) {
      TransferBatch b;
      b.kind = TransferKind::kRecv;
      b.ops.push_back({static_cast<char*>(arena_->data()) + *offset, size, 0, (*tags)[i]});
      absl::StatusOr<std::unique_ptr<TransferRequest>> posted = transport_->Post(std::move(b));
      if (!posted.ok()) {
        (void)store_->Abort(res->id);
        out.code = absl::StatusCode::kUnavailable;
        continue;
      }
      recv = std::move(*posted);
    }
    absl::MutexLock lock(&mu_);
    if (!s.cluster && usage_[tenant].reservations >= options_.tenant_limits.reservations) {
      (void)store_->Abort(res->id);
      ++exhausted_[static_cast<int>(LimitedResource::kReservations)];
      out.code = absl::StatusCode::kResourceExhausted;
      continue;
    }
    if (!s.cluster) ++usage_[tenant].reservations;
    out.reservation_id = res->id;
    out.location = protocol::BlockLocation{0, no_descriptors ? 0 : *offset, size};
    reservations_.emplace(res->id,
                          Reservation{tenant, !s.cluster, *offset, size, ns, in.key,
                                      in.placement_hash, expires, in.has_version, false,
                                      std::move(recv)});
  }
  return resp.Encode();
}

absl::StatusOr<std::string> DataPlane::OnCommit(const protocol::CommitRequest& r,
                                                const Session& /*s: CheckHeader vouched*/) {
  protocol::CommitResponse resp;
  resp.header = Reply(r.header, epoch());
  resp.results.resize(r.reservation_ids.size());
  std::vector<CommitRecord> fanout;
  const absl::Time now = absl::Now();
  for (size_t i = 0; i < r.reservation_ids.size(); ++i) {
    const uint64_t id = r.reservation_ids[i];
    Reservation res;
    {
      absl::MutexLock lock(&mu_);
      auto it = reservations_.find(id);
      if (it == reservations_.end() || it->second.ns != r.header.namespace_id) {
        resp.results[i].code = absl::StatusCode::kNotFound;
        continue;
      }
      // A Store's bytes may still be arriving (a tagged message and this
      // commit need not come in order): the caller commits it again.
      if (it->second.recv != nullptr && it->second.recv->state() == TransferState::kInProgress) {
        resp.results[i].code = absl::StatusCode::kUnavailable;
        continue;
      }
      res = it->second;
      ReleaseUsage(res.tenant, res.counted, &TenantUsage::reservations);
      reservations_.erase(it);
    }
    if (res.recv != nullptr && res.recv->state() != TransferState::kDone) {
      (void)store_->Abort(id);  // the bytes never landed whole
      resp.results[i].code = absl::StatusCode::kDataLoss;
      continue;
    }
    res.recv.reset();
    if (res.removed) {
      (void)store_->Abort(id);
      resp.results[i].code = absl::StatusCode::kAborted;  // removed while this copy was in flight
      continue;
    }
    absl::StatusOr<PutResult> put = store_->Commit(id);
    if (!put.ok()) {
      resp.results[i].code = put.status().code();
      continue;
    }
    resp.results[i].version = put->version;
    if (r.want_version_tags) resp.results[i].version_tag = tagger_.Tag(res.ns, res.key, put->version);
    {
      absl::MutexLock lock(&mu_);
      auto it = known_.find(KeyOf{res.ns, res.key});
      if (it != known_.end() && it->second <= put->version) known_.erase(it);
    }
    if (!r.no_fanout) fanout.push_back(CommitRecord{res.ns, res.key, res.placement_hash, put->version, now});
  }
  if (!fanout.empty() && on_commit_) on_commit_(std::move(fanout));
  return resp.Encode();
}

absl::StatusOr<std::string> DataPlane::OnRemove(const protocol::RemoveRequest& r,
                                                const Session& s) {
  std::string wrong;
  if (!CheckOwner(r.header, s, HashesOf(r.keys), &wrong).ok()) return wrong;
  protocol::RemoveResponse resp;
  resp.header = Reply(r.header, epoch());
  if (on_remove_) {
    std::vector<BlockKey> keys;
    for (const auto& k : r.keys) keys.push_back(k.key);
    on_remove_(r.header.namespace_id, keys);
  }
  absl::flat_hash_set<KeyOf> gone;
  for (const auto& k : r.keys) {
    resp.codes.push_back(store_->Remove(r.header.namespace_id, k.key).code());
    absl::MutexLock lock(&mu_);
    known_.erase(KeyOf{r.header.namespace_id, k.key});
    removed_[KeyOf{r.header.namespace_id, k.key}] = absl::Now();
    gone.insert(KeyOf{r.header.namespace_id, k.key});
  }
  // A copy reserved before this remove (the primary's sync of a put that
  // raced it) would bring the key back here when it commits: the tombstone
  // only stops copies reserved after it.
  absl::MutexLock lock(&mu_);
  for (auto& [id, res] : reservations_) {
    if (res.copy && gone.contains(KeyOf{res.ns, res.key})) res.removed = true;
  }
  return resp.Encode();
}

absl::StatusOr<std::string> DataPlane::OnInvalidate(const protocol::InvalidateRequest& r,
                                                    const Session& /*s: an agent*/) {
  const NamespaceId ns = r.header.namespace_id;
  std::vector<BlockKey> keys;
  for (const auto& inv : r.invalidations) keys.push_back(inv.key);
  const std::vector<std::optional<BlockInfo>> stored = store_->Lookup(ns, keys);
  std::vector<BlockKey> drop;
  {
    absl::MutexLock lock(&mu_);
    if (known_.size() + keys.size() > kMaxKnownVersions) {
      KVF_LOG(WARNING) << "agent: forgetting " << known_.size() / 2 << " known versions";
      size_t n = known_.size() / 2;
      for (auto it = known_.begin(); it != known_.end() && n > 0; --n) known_.erase(it++);
    }
    for (size_t i = 0; i < keys.size(); ++i) {
      const Version& v = r.invalidations[i].version;
      if (stored[i] && stored[i]->version >= v) continue;
      Version& known = known_[KeyOf{ns, keys[i]}];
      known = std::max(known, v);
      if (stored[i]) drop.push_back(keys[i]);
    }
  }
  // Free stale copies now (a pinned one is dropped by its next refresh).
  for (const BlockKey& k : drop) (void)store_->Remove(ns, k);
  return protocol::AckResponse{Reply(r.header, epoch())}.Encode();
}

}  // namespace kvf
