#include "client/client.h"

#include <algorithm>
#include <cstdlib>
#include <functional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "client/internal/client_impl.h"
#include "client/internal/data_plane.h"
#include "client/internal/map_watcher.h"
#include "client/internal/net_options.h"
#include "client/internal/plan.h"
#include "client/internal/worker_pool.h"
#include "common/status_macros.h"
#include "protocol/frames.h"

namespace kvf {

using client_internal::DataPlane;
using client_internal::FailBatch;
using client_internal::GroupByNode;
using client_internal::ItemState;
using client_internal::Next;
using client_internal::NotOk;
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
