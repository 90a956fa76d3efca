// The movers of a paged transfer (client/paged.h): a BlockWriter that
// gathers (and encodes) blocks out of an engine's pages, and a BlockReader
// that scatters (and decodes) found blocks into them, wherever the client
// hands over the bytes (the agent's own memory when it is mapped here, else
// the client's staging; client/block_io.h).
//
// Pages in host memory move with the CPU twins of the paged kernels; pages
// in CUDA device memory with the device kernels, on the caller's stream,
// through one device scratch block: gather into scratch, then one
// stream-ordered copy into the bytes (device -> host), and the reverse for
// loads. Agent arenas the bytes lie in are page-locked with CUDA once per
// process, so those copies run at full PCIe/NVLink speed.
//
// Loads of uncompressed blocks go layer by layer (every block's layer l,
// then l + 1), so an engine can start on layer l while later layers are still
// landing (LayerProgress; vLLM's wait_for_layer_load). A compressed block's
// layers all land together: its blob is one unit.
#ifndef KVF_CLIENT_INTERNAL_PAGE_MOVERS_H_
#define KVF_CLIENT_INTERNAL_PAGE_MOVERS_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/types/span.h"
#include "client/block_io.h"
#include "common/kv_layout.h"
#include "kernels/paged.h"

namespace kvf::client_internal {

// How far a load has come, per layer: layer l is ready once every block of
// the load has its layer l in the pages, or the load finished (blocks that
// were not found never arrive).
class LayerProgress {
 public:
  LayerProgress(uint32_t layers, size_t blocks) : blocks_(blocks), done_(layers, 0) {}
  void Add(uint32_t layer, size_t blocks);
  void AddAll(size_t blocks);
  void Finish();
  bool Ready(uint32_t layer) const;
  // Blocks until Ready(layer). A layer out of range is ready once finished.
  void Wait(uint32_t layer) const;

 private:
  bool ReadyLocked(uint32_t layer) const ABSL_SHARED_LOCKS_REQUIRED(mu_);
  const size_t blocks_;
  mutable absl::Mutex mu_;
  std::vector<size_t> done_ ABSL_GUARDED_BY(mu_);
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
};

// One transfer: the pages, the block shape, the page ids of block i at
// [i * per_block, (i + 1) * per_block), the codec blocks are stored with
// (saves), the CUDA stream (device pages) and the progress to report (loads;
// may be null). The caller keeps what the spans and pointers name alive.
struct PagedJob {
  PagedKvDesc pages;
  KvLayout layout;
  absl::Span<const int32_t> page_ids;
  size_t per_block = 0;
  CodecId codec = CodecId::kNone;
  void* stream = nullptr;
  LayerProgress* progress = nullptr;
};

// Whether the pages are in device memory (every layer base), false for host
// memory; INVALID_ARGUMENT when the layers disagree.
absl::StatusOr<bool> PagesOnDevice(const PagedKvDesc& pages);

// Writers and readers for `job`, on the host or the device per its pages.
// Device ones allocate their scratch here (FAILED_PRECONDITION without CUDA).
// `max_stored` is the largest stored block a reader takes.
absl::StatusOr<std::unique_ptr<BlockWriter>> MakePageGatherer(const PagedJob& job);
absl::StatusOr<std::unique_ptr<BlockReader>> MakePageScatterer(const PagedJob& job,
                                                                size_t max_stored);

// The device movers (page_movers_device.cc).
absl::StatusOr<std::unique_ptr<BlockWriter>> MakeDeviceGatherer(const PagedJob& job);
absl::StatusOr<std::unique_ptr<BlockReader>> MakeDeviceScatterer(const PagedJob& job,
                                                                  size_t max_stored);

// Layer l of `pages` alone (a one-layer descriptor), and the one-layer block
// shape its slices have: how uncompressed blocks move layer by layer.
PagedKvDesc OneLayer(const PagedKvDesc& pages, uint32_t layer);
KvLayout OneLayerShape(const KvLayout& layout);

}  // namespace kvf::client_internal

#endif  // KVF_CLIENT_INTERNAL_PAGE_MOVERS_H_
