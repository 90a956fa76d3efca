// Client puts: BatchPut, Put and BatchPutWith (reserve, write, commit; ack=all
// replica writes).

#include <algorithm>
#include <functional>
#include <optional>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "client/client.h"
#include "client/internal/client_impl.h"
#include "common/status_macros.h"
#include "absl/time/clock.h"

namespace kvf {

using client_internal::FailBatch;
using client_internal::GroupByNode;
using client_internal::IsUnreachable;
using client_internal::IsWrongOwner;
using client_internal::ItemState;
using client_internal::MapSnapshot;
using client_internal::NamespaceState;
using client_internal::Next;
using client_internal::NodeBatch;
using client_internal::NotOk;
using client_internal::PrimaryVersion;
using client_internal::PutSource;
using protocol::KeyRef;

// ---- Put --------------------------------------------------------------------

void Client::Impl::PutBatch(const NamespaceState& ns, absl::Span<const BlockKey> chain,
                            size_t begin, absl::Span<const KeyRef> keys,
                            const PutSource& source, const PutOptions& options,
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
    e.size = static_cast<uint32_t>(source.size(i));
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
  BlockWriter* const writer = source.writer;
  std::vector<BlockSlot> slots;      // a writer's blocks, in place or staged
  std::vector<uint32_t> slot_items;  // their positions j
  std::vector<std::optional<client_internal::MappedArena>> arenas(resp->descriptors.size());
  std::vector<std::byte> staging;  // a writer's staged blocks: slot j at j * block_bytes
  // Queues position j's bytes at `src` for the agent: one-sided into its
  // reservation, or through the agent (tenant sessions, the two-sided lane).
  auto Send = [&](uint32_t j, const void* src) {
    const uint32_t i = batch.items[j];
    const protocol::ReserveResult& r = resp->results[j];
    if (through_agent) {
      writes.push_back({r.reservation_id, src, static_cast<uint32_t>(source.size(i)),
                        two_sided ? tags[j] : 0});
      write_items.push_back(j);
      return;
    }
    TransferBatch& tb = per_desc[r.location.descriptor_index];
    tb.kind = TransferKind::kPut;
    tb.ops.push_back(TransferOp{const_cast<void*>(src), source.size(i), r.location.offset});
    per_desc_items[r.location.descriptor_index].push_back(j);
  };
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
                              static_cast<uint32_t>(source.size(i)), node};
      it.version_tag = r.version_tag;
      it.next = Next::kDone;
      continue;
    }
    if ((!through_agent && r.location.descriptor_index >= per_desc.size()) ||
        r.location.size < source.size(i)) {
      it.result.status = NotOk(absl::StatusCode::kInternal, node, "bad reservation location");
      it.next = Next::kDone;
      continue;
    }
    // A writer's block goes straight into the agent's arena when it is
    // mapped here (the reservation keeps the range ours until commit);
    // otherwise into this batch's staging, sent once the writer filled it.
    if (writer != nullptr) {
      if (!through_agent) {
        auto& arena = arenas[r.location.descriptor_index];
        if (!arena.has_value()) {
          arena = data->MappedArenaOf(node, resp->descriptors[r.location.descriptor_index]);
        }
        if (std::byte* at = arena->At(r.location.offset, source.block_bytes)) {
          slots.push_back(BlockSlot{i, {at, source.block_bytes}, arena->bytes, arena->region.get()});
          slot_items.push_back(static_cast<uint32_t>(j));
          continue;
        }
      }
      if (staging.empty()) staging.resize(batch.items.size() * source.block_bytes);
      slots.push_back(BlockSlot{i, {staging.data() + j * source.block_bytes, source.block_bytes}, {}});
      slot_items.push_back(static_cast<uint32_t>(j));
      continue;
    }
    Send(static_cast<uint32_t>(j), source.buffers[i].data);
  }
  // The writer fills every slot, in place or staged, in one call.
  std::vector<uint32_t> written;  // positions j in the batch
  if (!slots.empty()) {
    std::vector<absl::Status> filled = writer->Write(slots);
    for (size_t k = 0; k < slots.size(); ++k) {
      const uint32_t j = slot_items[k];
      absl::Status st = k < filled.size()
                            ? filled[k]
                            : absl::InternalError("the block writer returned too few statuses");
      if (!st.ok()) {
        // Not sent, not committed: the reservation expires on the agent.
        ItemState& it = items[batch.items[j]];
        it.result.status = std::move(st);
        it.next = Next::kDone;
      } else if (slots[k].arena.data() != nullptr) {
        written.push_back(j);  // already in the agent's memory
      } else {
        Send(j, slots[k].bytes.data());
      }
    }
  }
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
                            static_cast<uint32_t>(source.size(i)), node};
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
  PutSource source;
  source.buffers = blocks;
  return impl_->PutBlocks(*st, chain, begin, blocks.size(), source, options);
}

absl::StatusOr<BatchResult> Client::BatchPutWith(const Namespace& ns,
                                                 absl::Span<const BlockKey> chain, size_t begin,
                                                 size_t count, BlockWriter& writer,
                                                 const PutOptions& options) {
  KVF_ASSIGN_OR_RETURN(auto st, impl_->State(ns));
  KVF_RETURN_IF_ERROR(client_internal::CheckRange(chain.size(), begin, begin + count));
  if (static_cast<int>(options.codec) >= kNumCodecs) {
    return absl::InvalidArgumentError("unknown codec");
  }
  PutSource source;
  source.writer = &writer;
  source.block_bytes = client_internal::EncodedBlockBytes(st->spec.layout, options.codec);
  return impl_->PutBlocks(*st, chain, begin, count, source, options);
}

BatchResult Client::Impl::PutBlocks(const NamespaceState& ns, absl::Span<const BlockKey> chain,
                                    size_t begin, size_t count, const PutSource& source,
                                    const PutOptions& options) {
  std::vector<KeyRef> keys = client_internal::MakeKeyRefs(ns.id, chain, ns.spec.segment_blocks,
                                                          begin, begin + count);
  std::vector<ItemState> items(keys.size());
  RunRounds(keys, items, protocol::kMaxReserveKeys, [&](const NodeBatch& b) {
    PutBatch(ns, chain, begin, keys, source, options, nullptr, b, items);
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
    RunRounds(keys, items, protocol::kMaxReserveKeys, [&](const NodeBatch& b) {
      PutBatch(ns, chain, begin, keys, source, options, nullptr, b, items);
    });
  }

  const AckMode ack = options.has_ack ? options.ack : this->options.ack;
  if (ack == AckMode::kAll) {
    // Write the primary's version to every other owner, without fan-out.
    std::shared_ptr<const MapSnapshot> snap = maps->Current();
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
        PutBatch(ns, chain, begin, keys, source, options, &versions, batches[b],
                        per_batch[b]);
      });
    }
    pool->RunAll(tasks);
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
        auto r = data->Send<protocol::LookupResponse>(batches[b].node, ns, std::move(req));
        if (!r.ok() || r->entries.size() != asked.size()) return;
        for (size_t k = 0; k < asked.size(); ++k) {
          const protocol::LookupEntry& e = r->entries[k];
          if (e.held && e.version >= versions[asked[k]].version) {
            per_batch[b][asked[k]].result.status = absl::OkStatus();
          }
        }
      });
    }
    pool->RunAll(checks);
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


}  // namespace kvf
