// Client gets: BatchGet, Get and BatchGetWith over one round per owner node.

#include <algorithm>
#include <functional>
#include <optional>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "client/client.h"
#include "client/internal/client_impl.h"
#include "common/status_macros.h"

namespace kvf {

using client_internal::FailBatch;
using client_internal::GetSink;
using client_internal::ItemState;
using client_internal::NamespaceState;
using client_internal::Next;
using client_internal::NodeBatch;
using client_internal::NotOk;
using protocol::KeyRef;

// ---- Get --------------------------------------------------------------------

void Client::Impl::GetBatch(const NamespaceState& ns, absl::Span<const KeyRef> keys,
                            const GetSink& sink, const GetOptions& options,
                            const NodeBatch& batch, std::vector<ItemState>& items) {
  const NodeId node = batch.node;
  BlockReader* const reader = sink.reader;
  protocol::GetRequest req;
  req.keys.reserve(batch.items.size());
  for (uint32_t i : batch.items) req.keys.push_back(keys[i]);
  req.has_min_version = options.has_min_version;
  req.min_version = options.min_version;
  // A reader on a GPU takes GPU-tier blocks of an agent on this host where
  // they are (CUDA IPC); only the one-sided lane carries descriptors.
  const int device = reader != nullptr ? reader->DeviceOrdinal() : -1;
  req.device_ok = device >= 0 && !data->TwoSidedTo(node) && data->OnThisHost(node);
  const bool req_device_ok = req.device_ok;
  // A reader's blocks are read where they are when the agent's arena is
  // mapped here; the others land in this batch's staging first (slot j for
  // position j), allocated on first use.
  std::vector<std::byte> staging;
  std::vector<BlockBuffer> staged;  // by item index, as sink.buffers
  auto slot = [&](size_t j) -> void* {
    if (staging.empty()) {
      staging.resize(batch.items.size() * sink.capacity);
      staged.assign(keys.size(), BlockBuffer{});
      for (size_t k = 0; k < batch.items.size(); ++k) {
        staged[batch.items[k]] = {staging.data() + k * sink.capacity, sink.capacity};
      }
    }
    return staged[batch.items[j]].data;
  };
  // The two-sided lane: the agent sends the bytes into receives posted here
  // (`received` says which landed); the answer then has no descriptors.
  const bool two_sided = data->TwoSidedTo(node);
  if (two_sided && reader != nullptr) slot(0);
  // Two-sided receives land in `staged` for a reader (allocated just above).
  absl::Span<const BlockBuffer> dst = reader != nullptr ? absl::MakeConstSpan(staged) : sink.buffers;
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
  // What the reader is given: position j and where its bytes are.
  std::vector<FoundBlock> found;
  std::vector<uint32_t> found_items;
  // Per descriptor: its arena when mapped here (looked up on first use).
  std::vector<std::optional<client_internal::MappedArena>> arenas(resp->descriptors.size());
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
    if (reader != nullptr) {
      found.push_back(FoundBlock{batch.items[j],
                                 {static_cast<const std::byte*>(slot(j)), e.location.size},
                                 e.codec,
                                 {}});
      found_items.push_back(j);
    }
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
    if (e.location.size > sink.capacity_of(i)) {
      it.result.status = absl::InvalidArgumentError(absl::StrCat(
          "buffer of ", sink.capacity_of(i), " bytes is smaller than the stored block (",
          e.location.size, " bytes, codec ", std::string(CodecName(e.codec)), ")"));
      it.next = Next::kDone;
      continue;
    }
    if (two_sided) {
      finish(static_cast<uint32_t>(j), received[j]);
      continue;
    }
    if (through_agent) {
      void* to = reader != nullptr ? slot(j) : dst[i].data;
      reads.push_back({static_cast<uint32_t>(j), to, e.location.size});
      read_items.push_back(static_cast<uint32_t>(j));
      continue;
    }
    if (e.location.descriptor_index >= per_desc.size()) {
      it.result.status = NotOk(absl::StatusCode::kInternal, node, "descriptor index out of range");
      it.next = Next::kDone;
      continue;
    }
    const RemoteDescriptor& d = resp->descriptors[e.location.descriptor_index];
    if (d.memory_type == MemoryType::kCuda) {
      // The agent's GPU tier, answered because we asked (device_ok).
      absl::StatusOr<std::byte*> base =
          req_device_ok ? data->DeviceArenaOf(node, d, device)
                        : absl::InternalError("a GPU-tier location that was not asked for");
      if (!base.ok()) {
        it.result.status = base.status();
        it.next = Next::kNextOwner;
        continue;
      }
      it.result = BlockResult{absl::OkStatus(), e.version, e.codec, e.location.size, node};
      it.next = Next::kDone;
      found.push_back(FoundBlock{i, {*base + e.location.offset, e.location.size}, e.codec, {},
                                 nullptr, /*on_device=*/true});
      found_items.push_back(static_cast<uint32_t>(j));
      continue;
    }
    if (reader != nullptr) {
      // In place: the agent's arena is mapped here, and the read lease
      // keeps the bytes still until the release below.
      auto& arena = arenas[e.location.descriptor_index];
      if (!arena.has_value()) arena = data->MappedArenaOf(node, d);
      if (const std::byte* at = arena->At(e.location.offset, e.location.size)) {
        it.result = BlockResult{absl::OkStatus(), e.version, e.codec, e.location.size, node};
        it.next = Next::kDone;
        found.push_back(FoundBlock{i, {at, e.location.size}, e.codec, arena->bytes,
                                   arena->region.get()});
        found_items.push_back(static_cast<uint32_t>(j));
        continue;
      }
    }
    TransferBatch& tb = per_desc[e.location.descriptor_index];
    tb.kind = TransferKind::kGet;
    tb.ops.push_back(TransferOp{reader != nullptr ? slot(j) : dst[i].data, e.location.size,
                                e.location.offset});
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
  if (reader != nullptr && !found.empty()) {
    // Staged blocks point at their slot (dst is `staged` for a reader).
    std::vector<absl::Status> consumed = reader->Read(found);
    for (size_t k = 0; k < found.size(); ++k) {
      absl::Status s = k < consumed.size()
                           ? consumed[k]
                           : absl::InternalError("the block reader returned too few statuses");
      if (s.ok()) continue;
      ItemState& it = items[found[k].index];
      it.result.status = std::move(s);
      it.next = Next::kDone;
    }
  }
  if (resp->lease_id != 0) {
    protocol::ReleaseRequest rel;
    rel.lease_id = resp->lease_id;
    // One way: a lost release is harmless (the lease expires), and waiting
    // for its answer would double the messages a get waits on.
    (void)data->Tell(node, ns, std::move(rel));
  }
}

BatchResult Client::Impl::GetBlocks(const NamespaceState& ns, absl::Span<const BlockKey> chain,
                                    size_t begin, size_t count, const GetSink& sink,
                                    const GetOptions& options) {
  std::vector<KeyRef> keys =
      client_internal::MakeKeyRefs(ns.id, chain, ns.spec.segment_blocks, begin, begin + count);
  std::vector<ItemState> items(keys.size());
  RunRounds(keys, items, protocol::kMaxGetKeys,
            [&](const NodeBatch& b) { GetBatch(ns, keys, sink, options, b, items); });
  BatchResult out;
  out.blocks.reserve(items.size());
  for (ItemState& it : items) out.blocks.push_back(std::move(it.result));
  return out;
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
  GetSink sink;
  sink.buffers = dst;
  return impl_->GetBlocks(*st, chain, begin, dst.size(), sink, options);
}

absl::StatusOr<BatchResult> Client::BatchGetWith(const Namespace& ns,
                                                 absl::Span<const BlockKey> chain, size_t begin,
                                                 size_t count, size_t capacity,
                                                 BlockReader& reader, const GetOptions& options) {
  KVF_ASSIGN_OR_RETURN(auto st, impl_->State(ns));
  KVF_RETURN_IF_ERROR(client_internal::CheckRange(chain.size(), begin, begin + count));
  if (capacity == 0) return absl::InvalidArgumentError("BatchGetWith: capacity is 0");
  GetSink sink;
  sink.reader = &reader;
  sink.capacity = capacity;
  return impl_->GetBlocks(*st, chain, begin, count, sink, options);
}

absl::StatusOr<BlockResult> Client::Get(const Namespace& ns, absl::Span<const BlockKey> chain,
                                        size_t index, void* dst, size_t capacity,
                                        const GetOptions& options) {
  BlockBuffer b{dst, capacity};
  KVF_ASSIGN_OR_RETURN(BatchResult r, BatchGet(ns, chain, index, absl::MakeConstSpan(&b, 1), options));
  return std::move(r.blocks[0]);
}


}  // namespace kvf
