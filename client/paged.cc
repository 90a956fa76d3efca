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
#include "kernels/device.h"

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

absl::Status RefuseDevicePages(const PagedKvDesc& pages) {
  for (void* base : pages.layer_bases) {
    if (IsDeviceMemory(base)) {
      return absl::UnimplementedError(
          "paged KV in CUDA device memory: this version gathers and scatters host-resident pages "
          "only (the GPU data path is pending; docs/python.md)");
    }
  }
  return absl::OkStatus();
}

// Blocks per round trip, so that staging stays under kPagedChunkBytes.
size_t ChunkBlocks(size_t block_bytes) {
  return std::max<size_t>(1, kPagedChunkBytes / std::max<size_t>(1, block_bytes));
}

absl::Span<const int32_t> PagesOf(absl::Span<const int32_t> page_ids, size_t per_block, size_t i) {
  return page_ids.subspan(i * per_block, per_block);
}

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
  return RefuseDevicePages(pages);
}

absl::StatusOr<BatchResult> SavePages(Client& client, const Namespace& ns,
                                      absl::Span<const BlockKey> chain, size_t begin, size_t count,
                                      const PagedKvDesc& pages, absl::Span<const int32_t> page_ids,
                                      const PutOptions& options) {
  KVF_RETURN_IF_ERROR(CheckPagedTransfer(ns, pages, count, page_ids));
  if (begin > chain.size() || count > chain.size() - begin) {
    return absl::InvalidArgumentError(absl::StrCat("blocks [", begin, ", ", begin + count,
                                                   ") are outside a chain of ", chain.size()));
  }
  const KvLayout& layout = ns.spec().layout;
  const size_t per_block = PagesPerBlock(ns, pages);
  const size_t block_bytes = ns.BlockBytes(options.codec);
  const size_t chunk = ChunkBlocks(block_bytes);
  std::vector<std::byte> staging(std::min(count, chunk) * block_bytes);
  BatchResult out;
  out.blocks.reserve(count);
  for (size_t first = 0; first < count; first += chunk) {
    const size_t n = std::min(chunk, count - first);
    std::vector<ConstBlockBuffer> bufs(n);
    for (size_t i = 0; i < n; ++i) {
      absl::Span<std::byte> dst(staging.data() + i * block_bytes, block_bytes);
      KVF_RETURN_IF_ERROR(GatherPages(pages, layout, PagesOf(page_ids, per_block, first + i),
                                      options.codec, dst));
      bufs[i] = {dst.data(), block_bytes};
    }
    KVF_ASSIGN_OR_RETURN(BatchResult r, client.BatchPut(ns, chain, begin + first, bufs, options));
    for (BlockResult& b : r.blocks) out.blocks.push_back(std::move(b));
  }
  return out;
}

absl::StatusOr<BatchResult> LoadPages(Client& client, const Namespace& ns,
                                      absl::Span<const BlockKey> chain, size_t begin, size_t count,
                                      const PagedKvDesc& pages, absl::Span<const int32_t> page_ids,
                                      const GetOptions& options) {
  KVF_RETURN_IF_ERROR(CheckPagedTransfer(ns, pages, count, page_ids));
  const KvLayout& layout = ns.spec().layout;
  const size_t per_block = PagesPerBlock(ns, pages);
  const size_t block_bytes = StagingBytes(ns);
  const size_t chunk = ChunkBlocks(block_bytes);
  std::vector<std::byte> staging(std::min(count, chunk) * block_bytes);
  BatchResult out;
  out.blocks.reserve(count);
  for (size_t first = 0; first < count; first += chunk) {
    const size_t n = std::min(chunk, count - first);
    std::vector<BlockBuffer> bufs(n);
    for (size_t i = 0; i < n; ++i) bufs[i] = {staging.data() + i * block_bytes, block_bytes};
    KVF_ASSIGN_OR_RETURN(BatchResult r, client.BatchGet(ns, chain, begin + first, bufs, options));
    for (size_t i = 0; i < n; ++i) {
      BlockResult& b = r.blocks[i];
      if (b.status.ok()) {
        // A blob of another layout or codec fails here, before any page is
        // written (ScatterPages validates first).
        b.status = ScatterPages(pages, layout, PagesOf(page_ids, per_block, first + i), b.codec,
                                absl::MakeConstSpan(staging.data() + i * block_bytes, b.size));
      }
      out.blocks.push_back(std::move(b));
    }
  }
  return out;
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
  return Done() && layer < state_->pages.num_layers;
}

absl::StatusOr<BatchResult> PagedTransfer::Wait() {
  if (state_ == nullptr) return absl::FailedPreconditionError("no transfer (moved from or empty)");
  if (state_->thread.joinable()) state_->thread.join();
  if (state_->taken) return absl::FailedPreconditionError("the transfer's result was taken");
  state_->taken = true;
  return std::move(state_->result);
}

PagedTransfer PagedTransfer::Launch(absl::Span<const BlockKey> chain, const PagedKvDesc& pages,
                                    absl::Span<const int32_t> page_ids, Body body) {
  PagedTransfer t;
  t.state_ = std::make_unique<State>();
  State* s = t.state_.get();
  s->chain.assign(chain.begin(), chain.end());
  s->page_ids.assign(page_ids.begin(), page_ids.end());
  s->pages = pages;
  s->thread = std::thread([s, body = std::move(body)] {
    s->result = body(s->chain, s->pages, s->page_ids);
    s->done.store(true);
  });
  return t;
}

PagedTransfer StartSavePages(Client& client, const Namespace& ns, absl::Span<const BlockKey> chain,
                             size_t begin, size_t count, const PagedKvDesc& pages,
                             absl::Span<const int32_t> page_ids, const PutOptions& options) {
  return PagedTransfer::Launch(
      chain, pages, page_ids,
      [&client, ns, begin, count, options](absl::Span<const BlockKey> c, const PagedKvDesc& p,
                                           absl::Span<const int32_t> ids) {
        return SavePages(client, ns, c, begin, count, p, ids, options);
      });
}

PagedTransfer StartLoadPages(Client& client, const Namespace& ns, absl::Span<const BlockKey> chain,
                             size_t begin, size_t count, const PagedKvDesc& pages,
                             absl::Span<const int32_t> page_ids, const GetOptions& options) {
  return PagedTransfer::Launch(
      chain, pages, page_ids,
      [&client, ns, begin, count, options](absl::Span<const BlockKey> c, const PagedKvDesc& p,
                                           absl::Span<const int32_t> ids) {
        return LoadPages(client, ns, c, begin, count, p, ids, options);
      });
}

}  // namespace kvf
