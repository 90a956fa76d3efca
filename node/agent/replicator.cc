#include "node/agent/replicator.h"

#include <algorithm>
#include <map>
#include <optional>
#include <pthread.h>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/status_macros.h"

namespace kvf {

Replicator::Replicator(ShardStore* store, DataPlane* data_plane, PeerLinks* peers,
                       Transport* transport, ReplicatorOptions options)
    : store_(store),
      data_plane_(data_plane),
      peers_(peers),
      transport_(transport),
      options_(options),
      thread_([this] { Run(); }) {
  absl::MutexLock lock(&shared_->mu);
  shared_->replicator = this;
}

Replicator::~Replicator() {
  {
    // Waits for a callback running now; later ones find no replicator.
    absl::MutexLock lock(&shared_->mu);
    shared_->replicator = nullptr;
  }
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  thread_.join();
}

void Replicator::Committed(std::vector<CommitRecord> records) {
  InvalidateNow(records);
  Enqueue(std::move(records));
}

void Replicator::InvalidateNow(std::vector<CommitRecord>& records) {
  std::shared_ptr<const Ownership> own = data_plane_->ownership();
  const NodeId self = data_plane_->self();
  // (replica, namespace) -> indices of the mutable records it must hear of.
  std::map<std::pair<NodeId, NamespaceId>, std::vector<size_t>> work;
  absl::flat_hash_map<std::pair<NodeId, NamespaceId>, std::optional<PeerLinks::Ready>> ready;
  for (size_t i = 0; i < records.size(); ++i) {
    const CommitRecord& r = records[i];
    if (r.version.counter == 0) continue;  // immutable: nothing to invalidate
    bool all_ready = true;
    std::vector<NodeId> replicas;
    for (NodeId owner : own->Owners(r.placement_hash)) {
      if (owner == self) continue;
      auto [it, inserted] = ready.try_emplace({owner, r.ns});
      if (inserted) it->second = peers_->ReadyPeer(owner, r.ns);
      all_ready = all_ready && it->second.has_value();
      replicas.push_back(owner);
    }
    if (!all_ready || replicas.empty()) continue;  // the thread does it
    for (NodeId node : replicas) work[{node, r.ns}].push_back(i);
    records[i].invalidated = true;
  }
  for (auto& [target, indices] : work) {
    const auto [node, ns] = target;
    std::optional<NamespaceSpec> spec = data_plane_->Spec(ns);
    const PeerLinks::Ready link = *ready[target];
    for (size_t start = 0; spec && start < indices.size(); start += protocol::kMaxInvalidations) {
      const size_t end = std::min(indices.size(), start + protocol::kMaxInvalidations);
      protocol::InvalidateRequest req;
      req.header = {.request_id = 0, .sender_epoch = own->epoch(), .namespace_id = ns,
                    .layout_fingerprint = spec->layout.Fingerprint(), .session = link.session};
      std::vector<CommitRecord> sent;
      for (size_t i = start; i < end; ++i) {
        req.invalidations.push_back({records[indices[i]].key, records[indices[i]].version});
        sent.push_back(records[indices[i]]);
        sent.back().invalidated = false;  // for the retry below
      }
      absl::StatusOr<std::string> bytes = req.Encode();
      if (!bytes.ok()) continue;
      auto done = [shared = shared_, node, sent](absl::StatusOr<std::string> raw) mutable {
        absl::Status s = raw.ok() ? protocol::DecodeReply<protocol::AckResponse>(*raw).status()
                                  : raw.status();
        absl::MutexLock lock(&shared->mu);
        Replicator* self = shared->replicator;
        if (self == nullptr) return;
        if (!s.ok()) {
          // The thread retries (connecting and announcing as needed).
          ++self->sync_failures_;
          KVF_LOG(WARNING) << "sync: invalidation to node " << node << " failed: " << s
                           << "; retrying from the sync thread";
          self->Enqueue(std::move(sent));
          return;
        }
        const absl::Time now = absl::Now();
        for (const CommitRecord& r : sent) self->invalidation_latency_.Record(now - r.committed);
      };
      absl::Status posted = transport_->CallAsync(link.peer, static_cast<uint16_t>(protocol::FrameType::kInvalidateRequest),
                                                  *bytes, absl::Now() + options_.timeout, std::move(done));
      if (!posted.ok()) {
        for (size_t i = start; i < end; ++i) records[indices[i]].invalidated = false;
      }
    }
    if (!spec) {
      for (size_t i : indices) records[i].invalidated = false;
    }
  }
}

void Replicator::Enqueue(std::vector<CommitRecord> records) {
  absl::MutexLock lock(&mu_);
  queue_.insert(queue_.end(), std::make_move_iterator(records.begin()),
                std::make_move_iterator(records.end()));
}

void Replicator::Cancel(NamespaceId ns, const std::vector<BlockKey>& keys) {
  absl::MutexLock lock(&mu_);
  if (queue_.empty()) return;
  std::erase_if(queue_, [&](const CommitRecord& r) {
    return r.ns == ns && std::find(keys.begin(), keys.end(), r.key) != keys.end();
  });
}

size_t Replicator::queued() const {
  absl::MutexLock lock(&mu_);
  return queue_.size();
}

void Replicator::Run() {
  pthread_setname_np(pthread_self(), "kvf-sync");
  for (;;) {
    std::vector<CommitRecord> batch;
    {
      absl::MutexLock lock(&mu_);
      auto ready = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return stop_ || !queue_.empty(); };
      mu_.Await(absl::Condition(&ready));
      if (stop_) return;
      batch.swap(queue_);
    }
    Process(std::move(batch));
  }
}

void Replicator::Process(std::vector<CommitRecord> batch) {
  std::shared_ptr<const Ownership> own = data_plane_->ownership();
  const NodeId self = data_plane_->self();
  // (replica, namespace) -> the records it must hear about.
  std::map<std::pair<NodeId, NamespaceId>, std::vector<const CommitRecord*>> work;
  for (const CommitRecord& r : batch) {
    for (NodeId owner : own->Owners(r.placement_hash)) {
      if (owner != self) work[{owner, r.ns}].push_back(&r);
    }
  }
  if (work.empty()) return;
  const absl::Time deadline = absl::Now() + options_.timeout;
  // 1. Invalidations, at once, for mutable entries. An immutable block
  // (version counter 0: content-addressed, re-putting it is a no-op) has no
  // older version a replica could serve, so there is nothing to invalidate:
  // the push below is all a replica needs, and skipping the round trip
  // halves the messages replication costs per put batch.
  absl::flat_hash_map<const CommitRecord*, int> acked;
  for (auto& [target, records] : work) {
    const auto [node, ns] = target;
    std::optional<NamespaceSpec> spec = data_plane_->Spec(ns);
    if (!spec) continue;
    std::vector<const CommitRecord*> changed;
    for (const CommitRecord* r : records) {
      if (r->version.counter > 0 && !r->invalidated) changed.push_back(r);
    }
    for (size_t start = 0; start < changed.size(); start += protocol::kMaxInvalidations) {
      const size_t end = std::min(changed.size(), start + protocol::kMaxInvalidations);
      protocol::InvalidateRequest req;
      req.header = {.request_id = 0, .sender_epoch = own->epoch(), .namespace_id = ns,
                    .layout_fingerprint = spec->layout.Fingerprint()};
      for (size_t i = start; i < end; ++i) {
        req.invalidations.push_back({changed[i]->key, changed[i]->version});
      }
      auto ack = peers_->Exchange<protocol::AckResponse>(node, *spec, req, deadline);
      if (!ack.ok()) {
        ++sync_failures_;
        KVF_LOG(WARNING) << "sync: invalidation to node " << node << " failed: " << ack.status();
        continue;
      }
      for (size_t i = start; i < end; ++i) ++acked[changed[i]];
    }
  }
  const absl::Time invalidated = absl::Now();
  for (const auto& [r, n] : acked) invalidation_latency_.Record(invalidated - r->committed);

  // 2. The data, lazily: give concurrent commits a moment to join the batch.
  if (options_.sync_delay > absl::ZeroDuration()) absl::SleepFor(options_.sync_delay);
  for (auto& [target, records] : work) {
    const auto [node, ns] = target;
    std::optional<NamespaceSpec> spec = data_plane_->Spec(ns);
    if (!spec) continue;
    std::vector<StoredBlock> blocks;
    for (const CommitRecord* r : records) {
      StoredBlock b;
      b.ns = ns;
      b.key = r->key;
      b.placement_hash = r->placement_hash;
      b.info.version = r->version;
      blocks.push_back(b);
    }
    absl::StatusOr<PushResult> pushed = Push(node, *spec, blocks);
    if (!pushed.ok()) {
      ++sync_failures_;
      KVF_LOG(WARNING) << "sync: push to node " << node << " failed: " << pushed.status();
      continue;
    }
    const absl::Time done = absl::Now();
    for (const CommitRecord* r : records) sync_latency_.Record(done - r->committed);
  }
}

absl::StatusOr<PushResult> Replicator::Push(NodeId to, const NamespaceSpec& spec,
                                            absl::Span<const StoredBlock> blocks,
                                            uint64_t epoch) {
  PushResult result;
  const NamespaceId ns = spec.Id();
  const absl::Time deadline = absl::Now() + options_.timeout;
  const protocol::FrameHeader header{.request_id = 0,
                                     .sender_epoch = std::max(data_plane_->epoch(), epoch),
                                     .namespace_id = ns,
                                     .layout_fingerprint = spec.layout.Fingerprint()};
  for (size_t start = 0; start < blocks.size(); start += protocol::kMaxReserveKeys) {
    const size_t end = std::min(blocks.size(), start + protocol::kMaxReserveKeys);
    // Pin what is still here (and still the version we mean to send).
    std::vector<Lease> leases;
    protocol::ReserveRequest reserve;
    reserve.header = header;
    for (size_t i = start; i < end; ++i) {
      // PinHost: the push reads from the arena; a device-tier block is staged there.
      absl::StatusOr<Lease> lease = store_->PinHost(ns, blocks[i].key, options_.timeout);
      if (!lease.ok()) continue;
      if (blocks[i].info.version != Version{} && lease->info.version < blocks[i].info.version) {
        (void)store_->Unpin(lease->id);
        continue;
      }
      protocol::ReserveEntry e;
      e.key = blocks[i].key;
      e.placement_hash = blocks[i].placement_hash;
      e.size = static_cast<uint32_t>(lease->info.size);
      e.codec = lease->info.codec;
      e.is_mutable = blocks[i].info.mutable_entry || lease->info.version.counter > 0;
      e.has_version = true;
      e.version = lease->info.version;
      reserve.entries.push_back(e);
      leases.push_back(*std::move(lease));
    }
    auto unpin = [&] {
      for (const Lease& l : leases) (void)store_->Unpin(l.id);
    };
    if (reserve.entries.empty()) continue;
    // The two-sided lane where one-sided access to `to` is emulated (UCX
    // over TCP): Store, the bytes as tagged messages, commit (again while the
    // replica still sees them arriving).
    const bool two_sided = transport_->capabilities().two_sided && !peers_->NativeOneSided(to);
    protocol::StoreRequest store;
    if (two_sided) {
      store.header = reserve.header;
      store.entries = reserve.entries;
      for (size_t i = 0; i < store.entries.size(); ++i) store.tags.push_back(next_tag_++);
    }
    absl::StatusOr<protocol::ReserveResponse> reserved =
        two_sided ? peers_->Exchange<protocol::ReserveResponse>(to, spec, store, deadline)
                  : peers_->Exchange<protocol::ReserveResponse>(to, spec, reserve, deadline);
    if (!reserved.ok()) {
      unpin();
      return reserved.status();
    }
    protocol::CommitRequest commit;
    commit.header = header;
    commit.no_fanout = true;
    std::vector<std::unique_ptr<TransferRequest>> posted;
    absl::Status failed;
    // One batch per destination descriptor (an agent has one arena).
    std::map<uint32_t, TransferBatch> batches;
    std::map<uint32_t, std::shared_ptr<const RemoteRegion>> regions;
    for (size_t i = 0; i < reserved->results.size() && i < leases.size(); ++i) {
      const protocol::ReserveResult& r = reserved->results[i];
      if (r.code != absl::StatusCode::kOk) continue;
      if (r.already_present) {
        ++result.blocks;
        continue;
      }
      if (two_sided) {
        TransferBatch& b = batches[0];
        b.kind = TransferKind::kSend;
        b.ops.push_back(TransferOp{leases[i].location.address, r.location.size, 0, store.tags[i]});
        commit.reservation_ids.push_back(r.reservation_id);
        result.bytes += r.location.size;
        continue;
      }
      const uint32_t d = r.location.descriptor_index;
      if (!regions.contains(d)) {
        absl::StatusOr<std::shared_ptr<const RemoteRegion>> region =
            peers_->Import(to, reserved->descriptors[d], deadline);
        if (!region.ok()) {
          failed = region.status();
          break;
        }
        regions[d] = *region;
        TransferBatch& b = batches[d];
        b.kind = TransferKind::kPut;
        b.remote = regions[d].get();
        b.local_region = &data_plane_->arena();
      }
      batches[d].ops.push_back(TransferOp{leases[i].location.address, r.location.size,
                                          r.location.offset});
      commit.reservation_ids.push_back(r.reservation_id);
      result.bytes += r.location.size;
    }
    for (auto& [d, batch] : batches) {
      if (!failed.ok()) break;
      if (two_sided) {
        absl::StatusOr<PeerId> peer = peers_->Peer(to);
        if (!peer.ok()) {
          failed = peer.status();
          break;
        }
        batch.peer = *peer;
      }
      absl::StatusOr<std::unique_ptr<TransferRequest>> req = transport_->Post(std::move(batch));
      if (!req.ok()) {
        failed = req.status();
        break;
      }
      posted.push_back(*std::move(req));
    }
    for (auto& req : posted) {
      absl::Status s = req->Wait(deadline);
      if (!s.ok() && failed.ok()) failed = s;
    }
    posted.clear();
    unpin();
    if (!failed.ok()) {
      peers_->Reset(to);
      return failed;
    }
    if (commit.reservation_ids.empty()) continue;
    // On the two-sided lane a block whose bytes the replica still sees
    // arriving answers UNAVAILABLE: commit those again (each round trip
    // follows sends already complete here).
    while (!commit.reservation_ids.empty()) {
      KVF_ASSIGN_OR_RETURN(protocol::CommitResponse committed,
                           peers_->Exchange<protocol::CommitResponse>(to, spec, commit, deadline));
      std::vector<uint64_t> again;
      for (size_t k = 0; k < committed.results.size(); ++k) {
        const protocol::CommitResult& c = committed.results[k];
        if (c.code == absl::StatusCode::kOk) ++result.blocks;
        if (two_sided && c.code == absl::StatusCode::kUnavailable &&
            k < commit.reservation_ids.size() && absl::Now() < deadline) {
          again.push_back(commit.reservation_ids[k]);
        }
      }
      commit.reservation_ids = std::move(again);
    }
  }
  return result;
}

}  // namespace kvf
