// Paged offload and load on host-resident pages: gather into host staging,
// then BatchPut; BatchGet into staging, then scatter each block that came back.
#include "client/paged.h"

#include <algorithm>
#include <atomic>
#include <functional>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "client/internal/page_movers.h"

namespace kvf {
namespace {

// Staging capacity of one block: the largest stored form any codec gives, so
// a get lands whatever codec the block was stored with.
size_t StagingBytes(const Namespace& ns) {
  size_t bytes = 0;
  for (size_t c = 0; c < kNumCodecs; ++c) {
    bytes = std::max(bytes, ns.BlockBytes(static_cast<CodecId>(c)));
  }
  return bytes;
}

// Blocks per round trip, so that staging stays under kPagedChunkBytes.
size_t ChunkBlocks(size_t block_bytes) {
  return std::max<size_t>(1, kPagedChunkBytes / std::max<size_t>(1, block_bytes));
}

// A chunk of a transfer is a call of its own, whose blocks count from 0:
// these shift them back to the transfer's numbering.
class OffsetWriter final : public BlockWriter {
 public:
  OffsetWriter(BlockWriter& inner, size_t first) : inner_(inner), first_(first) {}
  std::vector<absl::Status> Write(absl::Span<const BlockSlot> slots) override {
    std::vector<BlockSlot> shifted(slots.begin(), slots.end());
    for (BlockSlot& s : shifted) s.index += first_;
    return inner_.Write(shifted);
  }

 private:
  BlockWriter& inner_;
  const size_t first_;
};

class OffsetReader final : public BlockReader {
 public:
  OffsetReader(BlockReader& inner, size_t first) : inner_(inner), first_(first) {}
  std::vector<absl::Status> Read(absl::Span<const FoundBlock> blocks) override {
    std::vector<FoundBlock> shifted(blocks.begin(), blocks.end());
    for (FoundBlock& b : shifted) b.index += first_;
    return inner_.Read(shifted);
  }

 private:
  BlockReader& inner_;
  const size_t first_;
};

}  // namespace

size_t PagesPerBlock(const Namespace& ns, const PagedKvDesc& pages) {
  if (pages.page_size == 0) return 0;
  return ns.spec().layout.block_tokens / pages.page_size;
}

absl::Status CheckPagedTransfer(const Namespace& ns, const PagedKvDesc& pages, size_t count,
                                absl::Span<const int32_t> page_ids) {
  if (!ns.valid()) return absl::InvalidArgumentError("namespace is not registered");
  KVF_RETURN_IF_ERROR(ValidatePagedKvDesc(pages));
  const KvLayout& l = ns.spec().layout;
  auto mismatch = [&](const char* field, uint64_t pages_value, uint64_t ns_value) {
    return absl::InvalidArgumentError(absl::StrCat(
        "paged KV does not match the namespace's layout: ", field, " is ", pages_value,
        " in the pages, ", ns_value, " in ", l.DebugString()));
  };
  if (pages.num_layers != l.num_layers) return mismatch("num_layers", pages.num_layers, l.num_layers);
  if (pages.num_kv_heads != l.num_kv_heads) {
    return mismatch("num_kv_heads", pages.num_kv_heads, l.num_kv_heads);
  }
  if (pages.head_dim != l.head_dim) return mismatch("head_dim", pages.head_dim, l.head_dim);
  if (pages.dtype != ElemTypeOf(l.dtype)) {
    return mismatch("dtype", static_cast<uint64_t>(pages.dtype), static_cast<uint64_t>(l.dtype));
  }
  if (l.block_tokens % pages.page_size != 0) {
    return mismatch("page_size (must divide block_tokens)", pages.page_size, l.block_tokens);
  }
  const size_t per_block = PagesPerBlock(ns, pages);
  if (page_ids.size() != count * per_block) {
    return absl::InvalidArgumentError(absl::StrCat("page_ids holds ", page_ids.size(),
                                                   " ids; ", count, " blocks of ", per_block,
                                                   " pages need ", count * per_block));
  }
  for (size_t i = 0; i < page_ids.size(); ++i) {
    if (page_ids[i] < 0 || static_cast<uint32_t>(page_ids[i]) >= pages.num_pages) {
      return absl::InvalidArgumentError(absl::StrCat("page id ", page_ids[i], " (entry ", i,
                                                     ") is outside [0, ", pages.num_pages, ")"));
    }
  }
  return client_internal::PagesOnDevice(pages).status();
}

absl::StatusOr<BatchResult> SavePages(Client& client, const Namespace& ns,
                                      absl::Span<const BlockKey> chain, size_t begin, size_t count,
                                      const PagedKvDesc& pages, absl::Span<const int32_t> page_ids,
                                      const PutOptions& options, void* stream) {
  KVF_RETURN_IF_ERROR(CheckPagedTransfer(ns, pages, count, page_ids));
  if (begin > chain.size() || count > chain.size() - begin) {
    return absl::InvalidArgumentError(absl::StrCat("blocks [", begin, ", ", begin + count,
                                                   ") are outside a chain of ", chain.size()));
  }
  client_internal::PagedJob job{pages, ns.spec().layout, page_ids, PagesPerBlock(ns, pages),
                                options.codec, stream, nullptr};
  KVF_ASSIGN_OR_RETURN(std::unique_ptr<BlockWriter> gather, client_internal::MakePageGatherer(job));
  // The writer indexes blocks from the call's `begin`; each chunk is a call.
  const size_t chunk = ChunkBlocks(ns.BlockBytes(options.codec));
  BatchResult out;
  out.blocks.reserve(count);
  for (size_t first = 0; first < count; first += chunk) {
    const size_t n = std::min(chunk, count - first);
    OffsetWriter writer(*gather, first);
    KVF_ASSIGN_OR_RETURN(BatchResult r,
                         client.BatchPutWith(ns, chain, begin + first, n, writer, options));
    for (BlockResult& b : r.blocks) out.blocks.push_back(std::move(b));
  }
  return out;
}

namespace {

absl::StatusOr<BatchResult> Load(Client& client, const Namespace& ns,
                                 absl::Span<const BlockKey> chain, size_t begin, size_t count,
                                 const PagedKvDesc& pages, absl::Span<const int32_t> page_ids,
                                 const GetOptions& options, void* stream,
                                 client_internal::LayerProgress* progress) {
  KVF_RETURN_IF_ERROR(CheckPagedTransfer(ns, pages, count, page_ids));
  const size_t capacity = StagingBytes(ns);
  client_internal::PagedJob job{pages, ns.spec().layout, page_ids, PagesPerBlock(ns, pages),
                                CodecId::kNone, stream, progress};
  KVF_ASSIGN_OR_RETURN(std::unique_ptr<BlockReader> scatter,
                       client_internal::MakePageScatterer(job, capacity));
  const size_t chunk = ChunkBlocks(capacity);
  BatchResult out;
  out.blocks.reserve(count);
  for (size_t first = 0; first < count; first += chunk) {
    const size_t n = std::min(chunk, count - first);
    OffsetReader reader(*scatter, first);
    KVF_ASSIGN_OR_RETURN(BatchResult r,
                         client.BatchGetWith(ns, chain, begin + first, n, capacity, reader, options));
    for (BlockResult& b : r.blocks) out.blocks.push_back(std::move(b));
  }
  return out;
}

}  // namespace

absl::StatusOr<BatchResult> LoadPages(Client& client, const Namespace& ns,
                                      absl::Span<const BlockKey> chain, size_t begin, size_t count,
                                      const PagedKvDesc& pages, absl::Span<const int32_t> page_ids,
                                      const GetOptions& options, void* stream) {
  return Load(client, ns, chain, begin, count, pages, page_ids, options, stream, nullptr);
}

// ---- PagedTransfer ----

struct PagedTransfer::State {
  std::thread thread;
  std::atomic<bool> done{false};
  absl::StatusOr<BatchResult> result = absl::UnknownError("not finished");
  bool taken = false;
  // Owned copies of what the caller passed.
  std::vector<BlockKey> chain;
  std::vector<int32_t> page_ids;
  PagedKvDesc pages;
  // How far each layer has come (a save's layers are ready when it is done).
  std::unique_ptr<client_internal::LayerProgress> progress;
};

PagedTransfer::PagedTransfer() = default;
PagedTransfer::PagedTransfer(PagedTransfer&&) noexcept = default;
PagedTransfer& PagedTransfer::operator=(PagedTransfer&& other) noexcept {
  if (this != &other) {
    if (state_ && state_->thread.joinable()) state_->thread.join();
    state_ = std::move(other.state_);
  }
  return *this;
}
PagedTransfer::~PagedTransfer() {
  if (state_ && state_->thread.joinable()) state_->thread.join();
}

bool PagedTransfer::Done() const { return state_ != nullptr && state_->done.load(); }

bool PagedTransfer::LayerReady(uint32_t layer) const {
  if (state_ == nullptr || layer >= state_->pages.num_layers) return false;
  return state_->progress->Ready(layer);
}

absl::Status PagedTransfer::WaitLayer(uint32_t layer) const {
  if (state_ == nullptr) return absl::FailedPreconditionError("no transfer (moved from or empty)");
  if (layer >= state_->pages.num_layers) {
    return absl::InvalidArgumentError(absl::StrCat("layer ", layer, " of a transfer of ",
                                                   state_->pages.num_layers, " layers"));
  }
  state_->progress->Wait(layer);
  return absl::OkStatus();
}

absl::StatusOr<BatchResult> PagedTransfer::Wait() {
  if (state_ == nullptr) return absl::FailedPreconditionError("no transfer (moved from or empty)");
  if (state_->thread.joinable()) state_->thread.join();
  if (state_->taken) return absl::FailedPreconditionError("the transfer's result was taken");
  state_->taken = true;
  return std::move(state_->result);
}

PagedTransfer PagedTransfer::Launch(absl::Span<const BlockKey> chain, const PagedKvDesc& pages,
                                    absl::Span<const int32_t> page_ids, size_t blocks,
                                    Body body) {
  PagedTransfer t;
  t.state_ = std::make_unique<State>();
  State* s = t.state_.get();
  s->chain.assign(chain.begin(), chain.end());
  s->page_ids.assign(page_ids.begin(), page_ids.end());
  s->pages = pages;
  s->progress = std::make_unique<client_internal::LayerProgress>(pages.num_layers, blocks);
  s->thread = std::thread([s, body = std::move(body)] {
    s->result = body(s->chain, s->pages, s->page_ids, s->progress.get());
    s->progress->Finish();
    s->done.store(true);
  });
  return t;
}

PagedTransfer StartSavePages(Client& client, const Namespace& ns, absl::Span<const BlockKey> chain,
                             size_t begin, size_t count, const PagedKvDesc& pages,
                             absl::Span<const int32_t> page_ids, const PutOptions& options,
                             void* stream) {
  return PagedTransfer::Launch(
      chain, pages, page_ids, std::max<size_t>(count, 1),
      [&client, ns, begin, count, options, stream](
          absl::Span<const BlockKey> c, const PagedKvDesc& p, absl::Span<const int32_t> ids,
          client_internal::LayerProgress*) {
        return SavePages(client, ns, c, begin, count, p, ids, options, stream);
      });
}

PagedTransfer StartLoadPages(Client& client, const Namespace& ns, absl::Span<const BlockKey> chain,
                             size_t begin, size_t count, const PagedKvDesc& pages,
                             absl::Span<const int32_t> page_ids, const GetOptions& options,
                             void* stream) {
  return PagedTransfer::Launch(
      chain, pages, page_ids, std::max<size_t>(count, 1),
      [&client, ns, begin, count, options, stream](
          absl::Span<const BlockKey> c, const PagedKvDesc& p, absl::Span<const int32_t> ids,
          client_internal::LayerProgress* progress) {
        return Load(client, ns, c, begin, count, p, ids, options, stream, progress);
      });
}

}  // namespace kvf
