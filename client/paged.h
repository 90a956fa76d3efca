// Paged offload and load: an engine's KV pages <-> kvfabric blocks, in one
// call (docs/python.md, "Paged KV"; docs/vllm.md).
//
// An engine keeps KV in pages (kernels/core/paged.h: PagedKvDesc describes
// them: vLLM's per-layer tensors, a layer-major pool, or any strided layout).
// SavePages gathers, for each block of a chain range, the pages that hold its
// tokens, encodes them with the chosen codec and stores the blocks; LoadPages
// fetches blocks and scatters them back into the engine's pages.
//
//   PagedKvDesc pages = VllmPagedLayout(L, H, D, /*page_size=*/16, num_pages,
//                                       ElemType::kFp16, layer_ptrs);
//   // block begin+i is made of page_ids[i*P, (i+1)*P), P = T / page_size
//   KVF_ASSIGN_OR_RETURN(BatchResult saved,
//                        SavePages(client, ns, chain, begin, count, pages, page_ids));
//
// Results are per block, as for Client::BatchGet/BatchPut. A block that fails
// to load (not found, unreachable, a blob of another layout or codec) leaves
// its pages untouched and reports why, so the engine recomputes exactly those
// blocks and never reads garbage.
//
// Memory. Pages may be in host memory (moved by the CPU twins of the paged
// kernels, kernels/paged.h) or in CUDA device memory (moved by the device
// kernels on `stream`, a cudaStream_t; nullptr is the legacy default stream):
// every layer base in one kind. Where the owning agent runs on this host its
// arena is mapped here and blocks are gathered straight into it, and
// scattered straight out of it: no client copy between the pages and the
// agent (device pages: one device -> host copy of each stored block into
// the agent's page-locked arena, and the reverse). For other agents the
// blocks pass through client staging, in calls of at most kPagedChunkBytes.
// docs/gpu-data-path.md has the design and the numbers.
//
// Streams. A save reads the pages after the work already on `stream`; a
// load's writes are done when it returns (or, per layer, when WaitLayer
// returns), so the engine's kernels may read them from any stream after that.
//
// Thread-safety: the functions are thread-safe; concurrent loads into the
// same pages are the caller's race. A PagedTransfer is move-only and owned
// by one thread.
#ifndef KVF_CLIENT_PAGED_H_
#define KVF_CLIENT_PAGED_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "client/client.h"
#include "kernels/paged.h"

namespace kvf {
namespace client_internal {
class LayerProgress;
}  // namespace client_internal

// Host staging per round trip: a batch larger than this is moved in chunks.
inline constexpr size_t kPagedChunkBytes = size_t{256} << 20;

// Pages of one block: block_tokens / page_size of them.
size_t PagesPerBlock(const Namespace& ns, const PagedKvDesc& pages);

// Checks that `pages` can hold blocks of `ns` (layers, heads, head_dim, dtype
// equal; block_tokens a multiple of page_size; a valid descriptor) and that
// `page_ids` holds exactly count * PagesPerBlock ids, each in range.
// INVALID_ARGUMENT naming what differs: a layout mismatch is refused before
// any byte moves.
absl::Status CheckPagedTransfer(const Namespace& ns, const PagedKvDesc& pages, size_t count,
                                absl::Span<const int32_t> page_ids);

// Stores blocks [begin, begin + count) of `chain` from `pages`, encoded with
// options.codec. Whole-call errors: CheckPagedTransfer's, Client::BatchPut's,
// and for device pages FAILED_PRECONDITION without CUDA or the device scratch
// (one stored block) failing to allocate.
absl::StatusOr<BatchResult> SavePages(Client& client, const Namespace& ns,
                                      absl::Span<const BlockKey> chain, size_t begin, size_t count,
                                      const PagedKvDesc& pages, absl::Span<const int32_t> page_ids,
                                      const PutOptions& options = {}, void* stream = nullptr);

// Loads blocks [begin, begin + count) of `chain` into `pages`. Scatter page
// ids must be distinct within a block. A block's pages are written only if
// its status is OK; its BlockResult::size is the stored size. Uncompressed
// blocks land layer by layer (every block's layer 0 first); a compressed
// block lands whole.
absl::StatusOr<BatchResult> LoadPages(Client& client, const Namespace& ns,
                                      absl::Span<const BlockKey> chain, size_t begin, size_t count,
                                      const PagedKvDesc& pages, absl::Span<const int32_t> page_ids,
                                      const GetOptions& options = {}, void* stream = nullptr);

// An asynchronous SavePages/LoadPages: the transfer runs on its own thread;
// Wait() returns its result (once; later calls answer FAILED_PRECONDITION).
// The chain, the page ids and the descriptor are copied; the pages must stay
// valid (and, for a save, unchanged) until Wait() returns. The destructor
// waits. Layers: layer l of a load is ready once every block of the load has
// its layer l in the pages (uncompressed blocks arrive layer by layer), or
// the load has finished (a block that was not found never arrives); a save's
// layers are ready when it is done. What vLLM's wait_for_layer_load needs.
class PagedTransfer {
 public:
  PagedTransfer();
  PagedTransfer(PagedTransfer&&) noexcept;
  PagedTransfer& operator=(PagedTransfer&&) noexcept;
  PagedTransfer(const PagedTransfer&) = delete;
  PagedTransfer& operator=(const PagedTransfer&) = delete;
  ~PagedTransfer();

  bool valid() const { return state_ != nullptr; }
  // True once the transfer finished (Wait will not block).
  bool Done() const;
  bool LayerReady(uint32_t layer) const;
  // Blocks until LayerReady(layer); INVALID_ARGUMENT for a layer out of range.
  absl::Status WaitLayer(uint32_t layer) const;
  absl::StatusOr<BatchResult> Wait();

 private:
  friend PagedTransfer StartSavePages(Client&, const Namespace&, absl::Span<const BlockKey>,
                                      size_t, size_t, const PagedKvDesc&,
                                      absl::Span<const int32_t>, const PutOptions&, void*);
  friend PagedTransfer StartLoadPages(Client&, const Namespace&, absl::Span<const BlockKey>,
                                      size_t, size_t, const PagedKvDesc&,
                                      absl::Span<const int32_t>, const GetOptions&, void*);
  struct State;
  using Body = std::function<absl::StatusOr<BatchResult>(
      absl::Span<const BlockKey>, const PagedKvDesc&, absl::Span<const int32_t>,
      client_internal::LayerProgress*)>;
  static PagedTransfer Launch(absl::Span<const BlockKey> chain, const PagedKvDesc& pages,
                              absl::Span<const int32_t> page_ids, size_t blocks, Body body);
  std::unique_ptr<State> state_;
};

PagedTransfer StartSavePages(Client& client, const Namespace& ns, absl::Span<const BlockKey> chain,
                             size_t begin, size_t count, const PagedKvDesc& pages,
                             absl::Span<const int32_t> page_ids, const PutOptions& options = {},
                             void* stream = nullptr);
PagedTransfer StartLoadPages(Client& client, const Namespace& ns, absl::Span<const BlockKey> chain,
                             size_t begin, size_t count, const PagedKvDesc& pages,
                             absl::Span<const int32_t> page_ids, const GetOptions& options = {},
                             void* stream = nullptr);

}  // namespace kvf

#endif  // KVF_CLIENT_PAGED_H_
