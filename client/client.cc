#include "client/client.h"

#include <algorithm>
#include <cstdlib>
#include <functional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "client/internal/data_plane.h"
#include "client/internal/map_watcher.h"
#include "client/internal/net_options.h"
#include "client/internal/plan.h"
#include "client/internal/worker_pool.h"
#include "common/status_macros.h"
#include "protocol/frames.h"

namespace kvf {

using client_internal::DataPlane;
using client_internal::GroupByNode;
using client_internal::IsUnreachable;
using client_internal::IsWrongOwner;
using client_internal::MapSnapshot;
using client_internal::MapWatcher;
using client_internal::NamespaceState;
using client_internal::NodeBatch;
using client_internal::WorkerPool;
using protocol::KeyRef;

// ---- Namespace, BatchResult -------------------------------------------------

const NamespaceSpec& Namespace::spec() const { return state_->spec; }
NamespaceId Namespace::id() const { return state_->id; }
uint64_t Namespace::layout_fingerprint() const { return state_->fingerprint; }
size_t Namespace::BlockBytes(CodecId codec) const {
  return client_internal::EncodedBlockBytes(state_->spec.layout, codec);
}

size_t BatchResult::ok_count() const {
  return static_cast<size_t>(
      std::count_if(blocks.begin(), blocks.end(), [](const BlockResult& b) { return b.status.ok(); }));
}

absl::Status BatchResult::FirstError() const {
  for (size_t i = 0; i < blocks.size(); ++i) {
    if (!blocks[i].status.ok()) return blocks[i].status;
  }
  return absl::OkStatus();
}

// ---- Client -----------------------------------------------------------------

namespace {

// What a round of a batch operation decided for one block.
enum class Next {
  kDone,        // final: result.status says how it went
  kNextOwner,   // this owner could not serve it; try the next one
  kReplan,      // WRONG_OWNER: the map was refreshed; place it again
};

struct ItemState {
  BlockResult result;
  uint64_t version_tag = 0;  // puts: the primary's proof of result.version
  Next next = Next::kNextOwner;
  size_t owner_index = 0;  // which owner (in placement order) to ask next
  int replans = 0;
};

// The version a primary committed and its proof (protocol::CommitResult).
struct PrimaryVersion {
  Version version;
  uint64_t tag = 0;
};

// Applies a whole-request failure to every item of a batch.
void FailBatch(const absl::Status& s, const NodeBatch& batch, std::vector<ItemState>& items) {
  for (uint32_t it : batch.items) {
    items[it].result.status = s;
    items[it].next = IsWrongOwner(s) ? Next::kReplan : IsUnreachable(s) ? Next::kNextOwner : Next::kDone;
  }
}

absl::Status NotOk(absl::StatusCode code, NodeId node, std::string_view what) {
  return absl::Status(code, absl::StrCat("node ", node, ": ", std::string(what)));
}

}  // namespace

struct Client::Impl {
  ClientOptions options;
  // Declaration order is destruction order reversed: the pool stops first,
  // imports go before the transport.
  std::unique_ptr<Transport> transport;
  std::unique_ptr<MapWatcher> maps;
  std::unique_ptr<DataPlane> data;
  std::unique_ptr<WorkerPool> pool;

  absl::StatusOr<std::shared_ptr<const NamespaceState>> State(const Namespace& ns) const;

  // Runs one task per batch on the pool and waits for all.
  void RunBatches(const std::vector<NodeBatch>& batches,
                  const std::function<void(const NodeBatch&)>& fn) {
    std::vector<std::function<void()>> tasks;
    tasks.reserve(batches.size());
    for (const NodeBatch& b : batches) tasks.push_back([&fn, &b] { fn(b); });
    pool->RunAll(tasks);
  }

  // The rounds shared by get and put: each block goes to owners in placement
  // order (starting with the primary) until one serves it, re-planning after a
  // WRONG_OWNER once. `serve` handles one node's batch and sets each item's
  // `next`.
  void RunRounds(absl::Span<const KeyRef> keys, std::vector<ItemState>& items, size_t max_batch,
                 const std::function<void(const NodeBatch&)>& serve);

  void GetBatch(const NamespaceState& ns, absl::Span<const KeyRef> keys,
                absl::Span<const BlockBuffer> dst, const GetOptions& options,
                const NodeBatch& batch, std::vector<ItemState>& items);
  // Reserve, write and commit one node's batch. `versions` (replica writes
  // for ack=all) carries the primary's version per item; then commits do not
  // fan out.
  void PutBatch(const NamespaceState& ns, absl::Span<const BlockKey> chain, size_t begin,
                absl::Span<const KeyRef> keys, absl::Span<const ConstBlockBuffer> blocks,
                const PutOptions& options, const std::vector<PrimaryVersion>* versions,
                const NodeBatch& batch, std::vector<ItemState>& items);
};

Client::Client(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Client::~Client() = default;

absl::StatusOr<std::unique_ptr<Client>> Client::Connect(const ClientOptions& options) {
  if (options.coordinator.empty()) {
    return absl::InvalidArgumentError("ClientOptions.coordinator (host:port) is empty");
  }
  if (options.rpc_timeout <= absl::ZeroDuration() || options.data_timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("ClientOptions timeouts must be positive");
  }
  auto impl = std::make_unique<Impl>();
  impl->options = options;
  KVF_ASSIGN_OR_RETURN(impl->maps, MapWatcher::Start(options.coordinator, options.token,
                                                     options.tls_ca_file, options.rpc_timeout));
  TransportConfig tc;
  tc.backend = TransportBackend::kUcx;
  tc.name = options.name;
  tc.progress = ProgressMode::kThread;
  tc.ucx_tls = options.ucx_tls;
  KVF_ASSIGN_OR_RETURN(tc.net_devices, client_internal::ClientNetDevices(options));
  auto transport = CreateTransport(tc);
  if (!transport.ok()) {
    return absl::Status(transport.status().code(),
                        absl::StrCat("kvf client: creating the UCX transport: ",
                                     std::string(transport.status().message())));
  }
  impl->transport = std::move(*transport);
  impl->data = std::make_unique<DataPlane>(impl->transport.get(), impl->maps.get(),
                                           options.data_timeout, options.token,
                                           options.data_lane);
  impl->pool = std::make_unique<WorkerPool>(std::max(0, options.worker_threads), "kvf-cl-work");
  return std::unique_ptr<Client>(new Client(std::move(impl)));
}

absl::StatusOr<Namespace> Client::RegisterNamespace(const NamespaceSpec& spec) {
  KVF_RETURN_IF_ERROR(spec.Validate());
  auto s = std::make_shared<NamespaceState>();
  s->spec = spec;
  s->id = spec.Id();
  s->fingerprint = spec.layout.Fingerprint();
  return Namespace(std::move(s));
}

absl::StatusOr<std::shared_ptr<const NamespaceState>> Client::Impl::State(
    const Namespace& ns) const {
  if (!ns.valid()) return absl::InvalidArgumentError("namespace handle is empty (not registered)");
  return ns.state_;
}

uint64_t Client::map_epoch() const { return impl_->maps->Current()->map.epoch; }
ClusterMap Client::cluster_map() const { return impl_->maps->Current()->map; }
const Capabilities& Client::transport_capabilities() const {
  return impl_->transport->capabilities();
}

void Client::Impl::RunRounds(absl::Span<const KeyRef> keys, std::vector<ItemState>& items,
                             size_t max_batch,
                             const std::function<void(const NodeBatch&)>& serve) {
  for (int round = 0; round < 2 * kMaxReplication + 2; ++round) {
    std::shared_ptr<const MapSnapshot> snap = maps->Current();
    std::vector<OwnerList> owners = client_internal::OwnersOf(snap->placement, keys);
    std::vector<std::pair<NodeId, uint32_t>> assign;
    for (uint32_t i = 0; i < items.size(); ++i) {
      ItemState& it = items[i];
      if (it.next == Next::kDone) continue;
      if (it.next == Next::kReplan) {
        if (it.replans++ > 0) {
          it.next = Next::kDone;  // keep the WRONG_OWNER status
          continue;
        }
        it.owner_index = 0;
      }
      if (it.owner_index >= owners[i].size()) {
        if (it.result.status.ok()) {
          it.result.status = absl::UnavailableError("no owner of this block is in the cluster map");
        }
        it.next = Next::kDone;
        continue;
      }
      assign.emplace_back(owners[i][it.owner_index], i);
    }
    if (assign.empty()) return;
    std::vector<NodeBatch> batches = GroupByNode(assign, max_batch);
    RunBatches(batches, serve);
    for (const auto& [node, i] : assign) {
      if (items[i].next == Next::kNextOwner) ++items[i].owner_index;
    }
  }
  for (ItemState& it : items) {
    if (it.next != Next::kDone && it.result.status.ok()) {
      it.result.status = absl::UnavailableError("gave up after too many retries");
    }
  }
}

// ---- Get --------------------------------------------------------------------

void Client::Impl::GetBatch(const NamespaceState& ns, absl::Span<const KeyRef> keys,
                            absl::Span<const BlockBuffer> dst, const GetOptions& options,
                            const NodeBatch& batch, std::vector<ItemState>& items) {
  const NodeId node = batch.node;
  protocol::GetRequest req;
  req.keys.reserve(batch.items.size());
  for (uint32_t i : batch.items) req.keys.push_back(keys[i]);
  req.has_min_version = options.has_min_version;
  req.min_version = options.min_version;
  // The two-sided lane: the agent sends the bytes into receives posted here
  // (`received` says which landed); the answer then has no descriptors.
  const bool two_sided = data->TwoSidedTo(node);
  std::vector<absl::Status> received;
  auto resp = two_sided ? data->Fetch(node, ns, std::move(req), dst, batch.items, &received)
                        : data->Send<protocol::GetResponse>(node, ns, std::move(req));
  if (!resp.ok()) return FailBatch(resp.status(), batch, items);
  if (resp->entries.size() != batch.items.size()) {
    return FailBatch(NotOk(absl::StatusCode::kInternal, node, "GetResponse has the wrong entry count"),
                     batch, items);
  }
  // One transfer batch per arena the entries point into; without
  // descriptors (a tenant's session) the agent copies the bytes (ReadThrough).
  std::vector<TransferBatch> per_desc(resp->descriptors.size());
  std::vector<std::vector<uint32_t>> per_desc_items(resp->descriptors.size());
  const bool through_agent = resp->descriptors.empty();
  std::vector<client_internal::DataPlane::ReadItem> reads;
  std::vector<uint32_t> read_items;
  // Item j (position in the batch) read, or failed with `s`.
  auto finish = [&](uint32_t j, const absl::Status& s) {
    ItemState& it = items[batch.items[j]];
    if (!s.ok()) {
      it.result.status = s;
      it.next = Next::kNextOwner;
      return;
    }
    const protocol::GetEntry& e = resp->entries[j];
    it.result = BlockResult{absl::OkStatus(), e.version, e.codec, e.location.size, node};
    it.next = Next::kDone;
  };
  for (size_t j = 0; j < batch.items.size(); ++j) {
    const uint32_t i = batch.items[j];
    const protocol::GetEntry& e = resp->entries[j];
    ItemState& it = items[i];
    if (e.code != absl::StatusCode::kOk) {
      it.result.status = NotOk(e.code, node, absl::StrCat("block ", keys[i].key.ToHex(), ": ",
                                                          absl::StatusCodeToString(e.code)));
      it.next = client_internal::TryNextOwner(e.code) ? Next::kNextOwner : Next::kDone;
      continue;
    }
    if (e.location.size > dst[i].size) {
      it.result.status = absl::InvalidArgumentError(absl::StrCat(
          "buffer of ", dst[i].size, " bytes is smaller than the stored block (", e.location.size,
          " bytes, codec ", std::string(CodecName(e.codec)), ")"));
      it.next = Next::kDone;
      continue;
    }
    if (two_sided) {
      finish(static_cast<uint32_t>(j), received[j]);
      continue;
    }
    if (through_agent) {
      reads.push_back({static_cast<uint32_t>(j), dst[i].data, e.location.size});
      read_items.push_back(static_cast<uint32_t>(j));
      continue;
    }
    if (e.location.descriptor_index >= per_desc.size()) {
      it.result.status = NotOk(absl::StatusCode::kInternal, node, "descriptor index out of range");
      it.next = Next::kDone;
      continue;
    }
    TransferBatch& tb = per_desc[e.location.descriptor_index];
    tb.kind = TransferKind::kGet;
    tb.ops.push_back(TransferOp{dst[i].data, e.location.size, e.location.offset});
    per_desc_items[e.location.descriptor_index].push_back(static_cast<uint32_t>(j));
  }
  for (size_t d = 0; d < per_desc.size(); ++d) {
    if (per_desc[d].ops.empty()) continue;
    absl::Status s = data->Transfer(node, resp->descriptors[d], std::move(per_desc[d]));
    for (uint32_t j : per_desc_items[d]) finish(j, s);
  }
  if (!reads.empty()) {
    absl::Status s = data->ReadThrough(node, ns, resp->lease_id, reads);
    for (uint32_t j : read_items) finish(j, s);
  }
  if (resp->lease_id != 0) {
    protocol::ReleaseRequest rel;
    rel.lease_id = resp->lease_id;
    // One way: a lost release is harmless (the lease expires), and waiting
    // for its answer would double the messages a get waits on.
    (void)data->Tell(node, ns, std::move(rel));
  }
}

absl::StatusOr<BatchResult> Client::BatchGet(const Namespace& ns, absl::Span<const BlockKey> chain,
                                             size_t begin, absl::Span<const BlockBuffer> dst,
                                             const GetOptions& options) {
  KVF_ASSIGN_OR_RETURN(auto st, impl_->State(ns));
  KVF_RETURN_IF_ERROR(client_internal::CheckRange(chain.size(), begin, begin + dst.size()));
  for (size_t i = 0; i < dst.size(); ++i) {
    if (dst[i].data == nullptr || dst[i].size == 0) {
      return absl::InvalidArgumentError(absl::StrCat("destination buffer ", i, " is empty"));
    }
  }
  std::vector<KeyRef> keys = client_internal::MakeKeyRefs(st->id, chain, st->spec.segment_blocks,
                                                          begin, begin + dst.size());
  std::vector<ItemState> items(keys.size());
  impl_->RunRounds(keys, items, protocol::kMaxGetKeys, [&](const NodeBatch& b) {
    impl_->GetBatch(*st, keys, dst, options, b, items);
  });
  BatchResult out;
  out.blocks.reserve(items.size());
  for (ItemState& it : items) out.blocks.push_back(std::move(it.result));
  return out;
}

absl::StatusOr<BlockResult> Client::Get(const Namespace& ns, absl::Span<const BlockKey> chain,
                                        size_t index, void* dst, size_t capacity,
                                        const GetOptions& options) {
  BlockBuffer b{dst, capacity};
  KVF_ASSIGN_OR_RETURN(BatchResult r, BatchGet(ns, chain, index, absl::MakeConstSpan(&b, 1), options));
  return std::move(r.blocks[0]);
}

// ---- Put --------------------------------------------------------------------

void Client::Impl::PutBatch(const NamespaceState& ns, absl::Span<const BlockKey> chain,
                            size_t begin, absl::Span<const KeyRef> keys,
                            absl::Span<const ConstBlockBuffer> blocks, const PutOptions& options,
                            const std::vector<PrimaryVersion>* versions, const NodeBatch& batch,
                            std::vector<ItemState>& items) {
  const NodeId node = batch.node;
  // The two-sided lane: Store (the agent posts a receive into each reserved
  // page) instead of Reserve, then the bytes go as tagged messages.
  const bool two_sided = data->TwoSidedTo(node);
  protocol::ReserveRequest req;
  req.entries.reserve(batch.items.size());
  for (uint32_t i : batch.items) {
    protocol::ReserveEntry e;
    const size_t index = begin + i;
    e.key = keys[i].key;
    e.placement_hash = keys[i].placement_hash;
    e.parent = index > 0 ? chain[index - 1] : BlockKey::Root();
    e.size = static_cast<uint32_t>(blocks[i].size);
    e.depth = static_cast<uint32_t>(index);
    e.codec = options.codec;
    e.is_mutable = options.is_mutable;
    if (versions != nullptr) {
      e.has_version = true;
      e.version = (*versions)[i].version;
      e.version_tag = (*versions)[i].tag;
    }
    req.entries.push_back(e);
  }
  std::vector<uint64_t> tags;
  auto resp = two_sided ? data->Store(node, ns, std::move(req), &tags)
                        : data->Send<protocol::ReserveResponse>(node, ns, std::move(req));
  if (!resp.ok()) return FailBatch(resp.status(), batch, items);
  if (resp->results.size() != batch.items.size()) {
    return FailBatch(
        NotOk(absl::StatusCode::kInternal, node, "ReserveResponse has the wrong result count"),
        batch, items);
  }
  std::vector<TransferBatch> per_desc(resp->descriptors.size());
  std::vector<std::vector<uint32_t>> per_desc_items(resp->descriptors.size());
  // Without descriptors (a tenant's session) the agent copies (WriteThrough).
  const bool through_agent = resp->descriptors.empty();
  std::vector<client_internal::DataPlane::WriteItem> writes;
  std::vector<uint32_t> write_items;
  for (size_t j = 0; j < batch.items.size(); ++j) {
    const uint32_t i = batch.items[j];
    const protocol::ReserveResult& r = resp->results[j];
    ItemState& it = items[i];
    if (r.code != absl::StatusCode::kOk) {
      it.result.status = NotOk(r.code, node, absl::StrCat("reserving block ", keys[i].key.ToHex(),
                                                          ": ", absl::StatusCodeToString(r.code)));
      it.next = r.code == absl::StatusCode::kUnavailable ? Next::kNextOwner : Next::kDone;
      continue;
    }
    if (r.already_present) {
      it.result = BlockResult{absl::OkStatus(), r.version, options.codec,
                              static_cast<uint32_t>(blocks[i].size), node};
      it.version_tag = r.version_tag;
      it.next = Next::kDone;
      continue;
    }
    if ((!through_agent && r.location.descriptor_index >= per_desc.size()) ||
        r.location.size < blocks[i].size) {
      it.result.status = NotOk(absl::StatusCode::kInternal, node, "bad reservation location");
      it.next = Next::kDone;
      continue;
    }
    if (through_agent) {
      writes.push_back({r.reservation_id, blocks[i].data, static_cast<uint32_t>(blocks[i].size),
                        two_sided ? tags[j] : 0});
      write_items.push_back(static_cast<uint32_t>(j));
      continue;
    }
    TransferBatch& tb = per_desc[r.location.descriptor_index];
    tb.kind = TransferKind::kPut;
    tb.ops.push_back(TransferOp{const_cast<void*>(blocks[i].data), blocks[i].size, r.location.offset});
    per_desc_items[r.location.descriptor_index].push_back(static_cast<uint32_t>(j));
  }
  std::vector<uint32_t> written;  // positions j in the batch
  if (!writes.empty()) {
    per_desc_items.push_back(std::move(write_items));
    per_desc.emplace_back();  // marks the agent-copied group below
  }
  for (size_t d = 0; d < per_desc.size(); ++d) {
    const bool copied = !writes.empty() && d + 1 == per_desc.size();
    if (!copied && per_desc[d].ops.empty()) continue;
    absl::Status s = !copied    ? data->Transfer(node, resp->descriptors[d], std::move(per_desc[d]))
                     : two_sided ? data->SendBlocks(node, writes)
                                 : data->WriteThrough(node, ns, writes);
    for (uint32_t j : per_desc_items[d]) {
      if (s.ok()) {
        written.push_back(j);
      } else {
        // The reservation is left to expire on the agent.
        items[batch.items[j]].result.status = s;
        items[batch.items[j]].next = Next::kNextOwner;
      }
    }
  }
  if (written.empty()) return;
  protocol::CommitRequest commit;
  commit.no_fanout = versions != nullptr;
  // Primary writes of an ack=all put get tags to show the other owners.
  const AckMode ack = options.has_ack ? options.ack : this->options.ack;
  commit.want_version_tags = versions == nullptr && ack == AckMode::kAll;
  for (uint32_t j : written) commit.reservation_ids.push_back(resp->results[j].reservation_id);
  auto cresp = two_sided ? data->CommitSent(node, ns, std::move(commit))
                         : data->Send<protocol::CommitResponse>(node, ns, std::move(commit));
  if (cresp.ok() && cresp->results.size() != written.size()) {
    cresp = NotOk(absl::StatusCode::kInternal, node, "CommitResponse has the wrong result count");
  }
  for (size_t k = 0; k < written.size(); ++k) {
    const uint32_t i = batch.items[written[k]];
    ItemState& it = items[i];
    if (!cresp.ok()) {
      it.result.status = cresp.status();
      it.next = IsUnreachable(cresp.status()) ? Next::kNextOwner
                : IsWrongOwner(cresp.status()) ? Next::kReplan
                                               : Next::kDone;
      continue;
    }
    const protocol::CommitResult& c = cresp->results[k];
    if (c.code != absl::StatusCode::kOk) {
      it.result.status = NotOk(c.code, node, absl::StrCat("committing block ", keys[i].key.ToHex(),
                                                          ": ", absl::StatusCodeToString(c.code)));
      it.next = Next::kDone;
      continue;
    }
    it.result = BlockResult{absl::OkStatus(), c.version, options.codec,
                            static_cast<uint32_t>(blocks[i].size), node};
    it.version_tag = c.version_tag;
    it.next = Next::kDone;
  }
}

absl::StatusOr<BatchResult> Client::BatchPut(const Namespace& ns, absl::Span<const BlockKey> chain,
                                             size_t begin, absl::Span<const ConstBlockBuffer> blocks,
                                             const PutOptions& options) {
  KVF_ASSIGN_OR_RETURN(auto st, impl_->State(ns));
  KVF_RETURN_IF_ERROR(client_internal::CheckRange(chain.size(), begin, begin + blocks.size()));
  if (static_cast<int>(options.codec) >= kNumCodecs) {
    return absl::InvalidArgumentError("unknown codec");
  }
  const size_t want = client_internal::EncodedBlockBytes(st->spec.layout, options.codec);
  for (size_t i = 0; i < blocks.size(); ++i) {
    if (blocks[i].data == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat("block ", begin + i, ": buffer is null"));
    }
    if (blocks[i].size != want) {
      return absl::InvalidArgumentError(absl::StrCat(
          "block ", begin + i, " is ", blocks[i].size, " bytes; namespace '", st->spec.model_id,
          "' (", st->spec.layout.DebugString(), ") stores blocks of exactly ", want,
          " bytes with codec ", std::string(CodecName(options.codec))));
    }
  }
  std::vector<KeyRef> keys = client_internal::MakeKeyRefs(st->id, chain, st->spec.segment_blocks,
                                                          begin, begin + blocks.size());
  std::vector<ItemState> items(keys.size());
  impl_->RunRounds(keys, items, protocol::kMaxReserveKeys, [&](const NodeBatch& b) {
    impl_->PutBatch(*st, chain, begin, keys, blocks, options, nullptr, b, items);
  });
  // A mutable overwrite is refused (FAILED_PRECONDITION) while a reader or
  // the primary's replica sync pins the old version; the pin is short, so
  // retry a few times before reporting it.
  for (int retry = 0; options.is_mutable && retry < 5; ++retry) {
    bool again = false;
    for (ItemState& it : items) {
      if (it.result.status.code() == absl::StatusCode::kFailedPrecondition &&
          !IsWrongOwner(it.result.status)) {
        it = ItemState{};
        again = true;
      } else {
        it.next = Next::kDone;
      }
    }
    if (!again) break;
    absl::SleepFor(absl::Milliseconds(1 << retry));
    impl_->RunRounds(keys, items, protocol::kMaxReserveKeys, [&](const NodeBatch& b) {
      impl_->PutBatch(*st, chain, begin, keys, blocks, options, nullptr, b, items);
    });
  }

  const AckMode ack = options.has_ack ? options.ack : impl_->options.ack;
  if (ack == AckMode::kAll) {
    // Write the primary's version to every other owner, without fan-out.
    std::shared_ptr<const MapSnapshot> snap = impl_->maps->Current();
    std::vector<OwnerList> owners = client_internal::OwnersOf(snap->placement, keys);
    std::vector<PrimaryVersion> versions(items.size());
    std::vector<std::pair<NodeId, uint32_t>> assign;
    for (uint32_t i = 0; i < items.size(); ++i) {
      if (!items[i].result.status.ok()) continue;
      versions[i] = PrimaryVersion{items[i].result.version, items[i].version_tag};
      for (NodeId o : owners[i]) {
        if (o != items[i].result.node) assign.emplace_back(o, i);
      }
    }
    std::vector<NodeBatch> batches = GroupByNode(assign, protocol::kMaxReserveKeys);
    // Each batch writes its own ItemState copy so two replicas of one block
    // do not race on one slot.
    std::vector<std::vector<ItemState>> per_batch(batches.size(),
                                                  std::vector<ItemState>(items.size()));
    std::vector<std::function<void()>> tasks;
    for (size_t b = 0; b < batches.size(); ++b) {
      tasks.push_back([&, b] {
        impl_->PutBatch(*st, chain, begin, keys, blocks, options, &versions, batches[b],
                        per_batch[b]);
      });
    }
    impl_->pool->RunAll(tasks);
    // A replica write can lose a race with the primary's own lazy sync of the
    // same version (the commit then finds it stored): ask the replica what it
    // holds before calling the write failed.
    std::vector<std::function<void()>> checks;
    for (size_t b = 0; b < batches.size(); ++b) {
      checks.push_back([&, b] {
        protocol::LookupRequest req;
        std::vector<uint32_t> asked;
        for (uint32_t i : batches[b].items) {
          if (per_batch[b][i].result.status.ok()) continue;
          req.keys.push_back(keys[i]);
          asked.push_back(i);
        }
        if (asked.empty()) return;
        auto r = impl_->data->Send<protocol::LookupResponse>(batches[b].node, *st, std::move(req));
        if (!r.ok() || r->entries.size() != asked.size()) return;
        for (size_t k = 0; k < asked.size(); ++k) {
          const protocol::LookupEntry& e = r->entries[k];
          if (e.held && e.version >= versions[asked[k]].version) {
            per_batch[b][asked[k]].result.status = absl::OkStatus();
          }
        }
      });
    }
    impl_->pool->RunAll(checks);
    for (size_t b = 0; b < batches.size(); ++b) {
      for (uint32_t i : batches[b].items) {
        const absl::Status& s = per_batch[b][i].result.status;
        if (!s.ok() && items[i].result.status.ok()) {
          items[i].result.status = absl::Status(
              s.code(), absl::StrCat("ack=all: replica write failed: ", std::string(s.message())));
        }
      }
    }
  }
  BatchResult out;
  out.blocks.reserve(items.size());
  for (ItemState& it : items) out.blocks.push_back(std::move(it.result));
  return out;
}

absl::StatusOr<Version> Client::Put(const Namespace& ns, absl::Span<const BlockKey> chain,
                                    size_t index, const void* data, size_t size,
                                    const PutOptions& options) {
  ConstBlockBuffer b{data, size};
  KVF_ASSIGN_OR_RETURN(BatchResult r, BatchPut(ns, chain, index, absl::MakeConstSpan(&b, 1), options));
  if (!r.blocks[0].status.ok()) return r.blocks[0].status;
  return r.blocks[0].version;
}

// ---- Lookup / Exists --------------------------------------------------------

absl::StatusOr<LookupResult> Client::Lookup(const Namespace& ns, absl::Span<const BlockKey> chain,
                                            size_t begin, size_t end) {
  KVF_ASSIGN_OR_RETURN(auto st, impl_->State(ns));
  end = std::min(end, chain.size());
  KVF_RETURN_IF_ERROR(client_internal::CheckRange(chain.size(), begin, end));
  std::vector<KeyRef> keys =
      client_internal::MakeKeyRefs(st->id, chain, st->spec.segment_blocks, begin, end);
  LookupResult out;
  for (int attempt = 0; attempt < 2; ++attempt) {
    out.blocks.assign(keys.size(), BlockHolding{});
    std::shared_ptr<const MapSnapshot> snap = impl_->maps->Current();
    std::vector<OwnerList> owners = client_internal::OwnersOf(snap->placement, keys);
    std::vector<std::pair<NodeId, uint32_t>> assign;
    assign.reserve(keys.size() * snap->placement.replicas());
    for (uint32_t i = 0; i < keys.size(); ++i) {
      for (NodeId o : owners[i]) assign.emplace_back(o, i);
    }
    std::vector<NodeBatch> batches = GroupByNode(assign, protocol::kMaxLookupKeys);
    // All nodes at once from this thread (CallAsync): a lookup is on the
    // engine's critical path, and waking a pool thread per node cost more
    // than the round trips on a busy host.
    std::vector<std::pair<NodeId, protocol::LookupRequest>> reqs(batches.size());
    for (size_t b = 0; b < batches.size(); ++b) {
      reqs[b].first = batches[b].node;
      reqs[b].second.keys.reserve(batches[b].items.size());
      for (uint32_t i : batches[b].items) reqs[b].second.keys.push_back(keys[i]);
    }
    std::vector<absl::StatusOr<protocol::LookupResponse>> resps =
        impl_->data->SendAll<protocol::LookupResponse>(*st, std::move(reqs));
    bool wrong_owner = false;
    absl::Status first_error;
    absl::Status unreachable;
    size_t answered = 0;
    for (size_t b = 0; b < batches.size(); ++b) {
      const absl::Status& s = resps[b].status();
      if (!s.ok()) {
        if (IsWrongOwner(s)) {
          wrong_owner = true;
        } else if (IsUnreachable(s)) {
          unreachable = s;
        } else if (first_error.ok()) {
          first_error = s;
        }
        continue;
      }
      if (resps[b]->entries.size() != batches[b].items.size()) {
        first_error = NotOk(absl::StatusCode::kInternal, batches[b].node,
                            "LookupResponse has the wrong entry count");
        continue;
      }
      ++answered;
      for (size_t j = 0; j < batches[b].items.size(); ++j) {
        const protocol::LookupEntry& e = resps[b]->entries[j];
        if (!e.held) continue;
        BlockHolding& h = out.blocks[batches[b].items[j]];
        if (h.nodes.empty() || e.version > h.version) {
          h.version = e.version;
          h.codec = e.codec;
          h.size = e.size;
        }
        h.nodes.push_back(batches[b].node);
      }
    }
    if (wrong_owner && attempt == 0) continue;
    if (!first_error.ok()) return first_error;
    if (answered == 0 && !keys.empty()) {
      return unreachable.ok() ? absl::UnavailableError("no active node in the cluster map")
                              : absl::UnavailableError(absl::StrCat(
                                    "no owner answered the lookup: ",
                                    std::string(unreachable.message())));
    }
    // Holders in placement order (primary first).
    for (size_t i = 0; i < out.blocks.size(); ++i) {
      auto& nodes = out.blocks[i].nodes;
      auto rank = [&](NodeId n) {
        return std::find(owners[i].begin(), owners[i].end(), n) - owners[i].begin();
      };
      std::sort(nodes.begin(), nodes.end(), [&](NodeId a, NodeId b) { return rank(a) < rank(b); });
    }
    break;
  }
  out.prefix = 0;
  while (out.prefix < out.blocks.size() && !out.blocks[out.prefix].nodes.empty()) ++out.prefix;
  return out;
}

absl::StatusOr<std::vector<bool>> Client::Exists(const Namespace& ns,
                                                 absl::Span<const BlockKey> chain, size_t begin,
                                                 size_t end) {
  KVF_ASSIGN_OR_RETURN(LookupResult r, Lookup(ns, chain, begin, end));
  std::vector<bool> out(r.blocks.size());
  for (size_t i = 0; i < r.blocks.size(); ++i) out[i] = !r.blocks[i].nodes.empty();
  return out;
}

// ---- Remove -----------------------------------------------------------------

absl::StatusOr<BatchResult> Client::Remove(const Namespace& ns, absl::Span<const BlockKey> chain,
                                           size_t begin, size_t end) {
  KVF_ASSIGN_OR_RETURN(auto st, impl_->State(ns));
  end = std::min(end, chain.size());
  KVF_RETURN_IF_ERROR(client_internal::CheckRange(chain.size(), begin, end));
  std::vector<KeyRef> keys =
      client_internal::MakeKeyRefs(st->id, chain, st->spec.segment_blocks, begin, end);
  BatchResult out;
  for (int attempt = 0; attempt < 2; ++attempt) {
    std::shared_ptr<const MapSnapshot> snap = impl_->maps->Current();
    std::vector<OwnerList> owners = client_internal::OwnersOf(snap->placement, keys);
    std::vector<std::pair<NodeId, uint32_t>> assign;
    for (uint32_t i = 0; i < keys.size(); ++i) {
      for (NodeId o : owners[i]) assign.emplace_back(o, i);
    }
    std::vector<NodeBatch> batches = GroupByNode(assign, protocol::kMaxRemoveKeys);
    std::vector<absl::StatusOr<protocol::RemoveResponse>> resps(batches.size());
    std::vector<std::function<void()>> tasks;
    for (size_t b = 0; b < batches.size(); ++b) {
      tasks.push_back([&, b] {
        protocol::RemoveRequest req;
        for (uint32_t i : batches[b].items) req.keys.push_back(keys[i]);
        resps[b] = impl_->data->Send<protocol::RemoveResponse>(batches[b].node, *st, std::move(req));
      });
    }
    impl_->pool->RunAll(tasks);
    // Per block: OK beats NOT_FOUND beats any other error.
    out.blocks.assign(keys.size(), BlockResult{});
    std::vector<int> rank(keys.size(), 3);  // 0 ok, 1 not found, 2 error, 3 nothing yet
    bool wrong_owner = false;
    auto offer = [&](uint32_t i, absl::Status s, NodeId node) {
      const int r = s.ok() ? 0 : s.code() == absl::StatusCode::kNotFound ? 1 : 2;
      if (r < rank[i]) {
        rank[i] = r;
        out.blocks[i].status = std::move(s);
        out.blocks[i].node = node;
      }
    };
    for (size_t b = 0; b < batches.size(); ++b) {
      const NodeId node = batches[b].node;
      if (!resps[b].ok()) {
        if (IsWrongOwner(resps[b].status())) wrong_owner = true;
        for (uint32_t i : batches[b].items) offer(i, resps[b].status(), node);
        continue;
      }
      if (resps[b]->codes.size() != batches[b].items.size()) {
        for (uint32_t i : batches[b].items) {
          offer(i, NotOk(absl::StatusCode::kInternal, node, "RemoveResponse has the wrong count"),
                node);
        }
        continue;
      }
      for (size_t j = 0; j < batches[b].items.size(); ++j) {
        const absl::StatusCode c = resps[b]->codes[j];
        offer(batches[b].items[j],
              c == absl::StatusCode::kOk ? absl::OkStatus()
                                         : NotOk(c, node, absl::StatusCodeToString(c)),
              node);
      }
    }
    for (size_t i = 0; i < keys.size(); ++i) {
      if (rank[i] == 3) out.blocks[i].status = absl::UnavailableError("no owner in the cluster map");
    }
    if (wrong_owner && attempt == 0) continue;
    break;
  }
  return out;
}

}  // namespace kvf
