// The data plane's byte movers: Read and Write, block bytes copied by the
// agent for sessions that are not given the arena's descriptor (tenants),
// checked against what they were granted (data_plane.h, "Memory grants");
// and Fetch, block bytes sent by the agent as tagged messages to a trusted
// peer whose one-sided access the fabric only emulates (the two-sided lane).
#include <cstring>

#include "absl/strings/str_cat.h"
#include "node/agent/data_plane.h"

namespace kvf {

absl::StatusOr<std::string> DataPlane::OnRead(const protocol::ReadRequest& r, const Session& s) {
  protocol::ReadResponse resp;
  resp.header = r.header;
  resp.header.sender_epoch = epoch();  // before mu_: epoch() takes it
  const auto* base = static_cast<const char*>(arena_->data());
  // Under mu_ the lease cannot expire (Sweep erases it under mu_ and unpins
  // only afterwards), so the pinned pages stay this block's while copied.
  absl::MutexLock lock(&mu_);
  auto it = leases_.find(r.lease_id);
  if (it == leases_.end() || it->second.ns != r.header.namespace_id ||
      !s.MayUse(it->second.tenant)) {
    return absl::NotFoundError(absl::StrCat("read lease ", r.lease_id,
                                            " is unknown (released or expired)"));
  }
  const BatchLease& lease = it->second;
  for (const protocol::ReadRange& range : r.ranges) {
    if (range.entry >= lease.grants.size() || lease.grants[range.entry].size == 0) {
      return absl::OutOfRangeError(
          absl::StrCat("entry ", range.entry, " of lease ", r.lease_id, " was not granted"));
    }
    const Grant& g = lease.grants[range.entry];
    if (uint64_t{range.offset} + range.length > g.size) {
      return absl::OutOfRangeError(absl::StrCat("bytes [", range.offset, ", +", range.length,
                                                ") are outside the ", g.size, "-byte block"));
    }
  }
  for (const protocol::ReadRange& range : r.ranges) {
    resp.bytes.append(base + lease.grants[range.entry].offset + range.offset, range.length);
  }
  return resp.Encode();
}

absl::StatusOr<std::string> DataPlane::OnWrite(const protocol::WriteRequest& r, const Session& s) {
  auto* base = static_cast<char*>(arena_->data());
  const absl::Time now = absl::Now();
  protocol::AckResponse ack;
  ack.header = r.header;
  ack.header.sender_epoch = epoch();  // before mu_: epoch() takes it
  // Every range is checked before any byte is written; under mu_ the
  // reservation cannot be committed, expired or aborted meanwhile (and the
  // store keeps the page at least as long as reservations_ keeps the entry).
  absl::MutexLock lock(&mu_);
  for (const protocol::WriteRange& range : r.ranges) {
    auto it = reservations_.find(range.reservation_id);
    if (it == reservations_.end() || it->second.ns != r.header.namespace_id ||
        !s.MayUse(it->second.tenant) || it->second.expires <= now) {
      return absl::NotFoundError(absl::StrCat("reservation ", range.reservation_id,
                                              " is unknown (committed, expired or another's)"));
    }
    if (uint64_t{range.offset} + range.length > it->second.size) {
      return absl::OutOfRangeError(absl::StrCat("bytes [", range.offset, ", +", range.length,
                                                ") are outside the ", it->second.size,
                                                "-byte reservation"));
    }
  }
  size_t at = 0;
  for (const protocol::WriteRange& range : r.ranges) {
    const Reservation& res = reservations_.at(range.reservation_id);
    std::memcpy(base + res.arena_offset + range.offset, r.bytes.data() + at, range.length);
    at += range.length;
  }
  return ack.Encode();
}

absl::StatusOr<std::string> DataPlane::OnFetch(const protocol::FetchRequest& r, const Session& s,
                                               ReplySends* sends) {
  if (!s.cluster) {
    ++permission_denied_;
    return absl::PermissionDeniedError(
        "FetchRequest is for trusted sessions; a tenant reads through the agent (ReadRequest)");
  }
  std::string wrong;
  if (!CheckOwner(r.header, s, HashesOf(r.keys), &wrong).ok()) return wrong;
  const NamespaceId ns = r.header.namespace_id;
  protocol::GetResponse resp;
  resp.header = Reply(r.header, epoch());
  BatchLease batch = PinBatch(ns, r.keys, r.has_min_version, r.min_version,
                              /*descriptors=*/false, &resp);
  std::vector<TransferOp> ops;
  const auto* base = static_cast<const char*>(arena_->data());
  for (size_t i = 0; i < batch.grants.size(); ++i) {
    const Grant& g = batch.grants[i];
    if (g.size == 0) continue;
    ops.push_back({const_cast<char*>(base + g.offset), g.size, 0, r.tags[i]});
  }
  // The caller sees no lease: the pins last until the sends are done (or the
  // lease expires, as a Get's would, if they never complete).
  const uint64_t lease = AddLease(std::move(batch), /*counted=*/false, TenantOf(ns), ns);
  absl::StatusOr<std::string> out = resp.Encode();
  if (!out.ok()) {
    ReleaseLease(lease);
    return out;
  }
  if (lease != 0) {
    sends->ops = std::move(ops);
    sends->done = [guard = fetch_guard_, lease](absl::Status) {
      absl::MutexLock l(&guard->mu);
      if (guard->plane != nullptr) guard->plane->ReleaseLease(lease);
    };
  }
  return out;
}

}  // namespace kvf
