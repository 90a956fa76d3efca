// The data plane's reads: Get pins blocks under a batch lease and hands out
// their offsets in the arena; Release (or expiry) unpins. PinBatch and the
// lease table are shared with Fetch (data_plane_bytes.cc).
#include <string>
#include <utility>
#include <vector>

#include "node/agent/data_plane.h"

namespace kvf {

DataPlane::BatchLease DataPlane::PinBatch(NamespaceId ns, const std::vector<protocol::KeyRef>& keys,
                                          bool has_min_version, const Version& min_version,
                                          bool descriptors, protocol::GetResponse* resp,
                                          bool device) {
  resp->entries.resize(keys.size());
  BatchLease batch;
  batch.grants.resize(keys.size());
  batch.expires = absl::Now() + options_.get_lease;
  const bool fenced = LeaseLapsed();
  for (size_t i = 0; i < keys.size(); ++i) {
    protocol::GetEntry& e = resp->entries[i];
    // PinHost: a device-tier block is staged into the host arena for the
    // reader; a device reader on this host takes it where it is (Pin).
    absl::StatusOr<Lease> lease = device ? store_->Pin(ns, keys[i].key, options_.get_lease)
                                         : store_->PinHost(ns, keys[i].key, options_.get_lease);
    if (!lease.ok()) {
      e.code = lease.status().code();
      continue;
    }
    absl::StatusCode refuse = absl::StatusCode::kOk;
    if (fenced && lease->info.mutable_entry) {
      ++fenced_refusals_;
      refuse = absl::StatusCode::kUnavailable;
    } else if (IsStale(ns, keys[i].key, lease->info.version)) {
      ++stale_refusals_;
      refuse = absl::StatusCode::kAborted;
    } else if (has_min_version && lease->info.version < min_version) {
      refuse = absl::StatusCode::kFailedPrecondition;
    }
    const bool on_device = device && lease->location.tier == TierKind::kDevice;
    absl::StatusOr<uint64_t> offset =
        on_device ? device_export_->Offset(lease->location.address, lease->location.size)
                  : ArenaOffset(lease->location);
    if (refuse == absl::StatusCode::kOk && !offset.ok()) refuse = offset.status().code();
    if (refuse != absl::StatusCode::kOk) {
      (void)store_->Unpin(lease->id);
      e.code = refuse;
      continue;
    }
    const auto size = static_cast<uint32_t>(lease->info.size);
    e.location = protocol::BlockLocation{on_device ? 1u : 0u, descriptors ? *offset : 0, size};
    // Grants are host-arena bytes the agent itself may send (Fetch,
    // ReadThrough); a device entry has none.
    if (!on_device) batch.grants[i] = Grant{*offset, size};
    e.version = lease->info.version;
    e.codec = lease->info.codec;
    batch.store_leases.push_back(lease->id);
  }
  // The get pinned what it serves: the lookup's holds on these blocks end.
  if (holds_ != nullptr) {
    std::vector<BlockKey> held;
    held.reserve(keys.size());
    for (const auto& k : keys) held.push_back(k.key);
    holds_->Release(ns, held);
  }
  resp->lease_ttl_us = static_cast<uint64_t>(absl::ToInt64Microseconds(options_.get_lease));
  return batch;
}

uint64_t DataPlane::AddLease(BatchLease batch, bool counted, const std::string& tenant,
                             NamespaceId ns) {
  if (batch.store_leases.empty()) return 0;
  batch.tenant = tenant;
  batch.ns = ns;
  batch.counted = counted;
  absl::MutexLock lock(&mu_);
  // Ids are sequential: a Release of another tenant's lease is ignored
  // (OnRelease), so guessing one gains nothing.
  const uint64_t id = next_lease_++;
  if (counted) ++usage_[tenant].read_leases;
  leases_.emplace(id, std::move(batch));
  return id;
}

void DataPlane::ReleaseLease(uint64_t id) {
  std::vector<uint64_t> unpin;
  {
    absl::MutexLock lock(&mu_);
    auto it = leases_.find(id);
    if (it == leases_.end()) return;  // released, or expired and swept
    unpin = std::move(it->second.store_leases);
    ReleaseUsage(it->second.tenant, it->second.counted, &TenantUsage::read_leases);
    leases_.erase(it);
  }
  for (uint64_t l : unpin) (void)store_->Unpin(l);
}

absl::StatusOr<std::string> DataPlane::OnGet(const protocol::GetRequest& r, const Session& s) {
  std::string wrong;
  if (!CheckOwner(r.header, s, HashesOf(r.keys), &wrong).ok()) return wrong;
  const NamespaceId ns = r.header.namespace_id;
  const std::string tenant = TenantOf(ns);  // CheckHeader found it
  if (!s.cluster) {
    absl::MutexLock lock(&mu_);
    if (usage_[tenant].read_leases >= options_.tenant_limits.read_leases) {
      return Exhausted(LimitedResource::kReadLeases, tenant, options_.tenant_limits.read_leases);
    }
  }
  protocol::GetResponse resp;
  resp.header = Reply(r.header, epoch());
  // Trusted peers read the arena one-sided; a tenant reads through the agent.
  const bool through_agent = !s.cluster;
  if (!through_agent) resp.descriptors.push_back(arena_->descriptor());
  // A client on this host with a GPU reader takes GPU-tier blocks over CUDA
  // IPC (descriptor 1) instead of through host staging.
  const bool device = r.device_ok && !through_agent && device_export_.has_value();
  if (device) resp.descriptors.push_back(device_export_->descriptor());
  BatchLease batch =
      PinBatch(ns, r.keys, r.has_min_version, r.min_version, !through_agent, &resp, device);
  resp.lease_id = AddLease(std::move(batch), !s.cluster, tenant, ns);
  absl::StatusOr<std::string> out = resp.Encode();
  if (!out.ok() && resp.lease_id != 0) ReleaseLease(resp.lease_id);
  return out;
}

absl::StatusOr<std::string> DataPlane::OnRelease(const protocol::ReleaseRequest& r,
                                                 const Session& s) {
  bool mine = false;
  {
    absl::MutexLock lock(&mu_);
    auto it = leases_.find(r.lease_id);
    // Another tenant's lease is left alone, as if unknown.
    mine = it != leases_.end() && s.MayUse(it->second.tenant);
  }
  // An unknown lease already expired: releasing it is harmless.
  if (mine) ReleaseLease(r.lease_id);
  return protocol::AckResponse{Reply(r.header, epoch())}.Encode();
}

}  // namespace kvf
