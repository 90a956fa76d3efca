// LayerProgress, the host movers (CPU twins of the paged kernels) and the
// choice between host and device.
#include "client/internal/page_movers.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "kernels/device.h"

namespace kvf::client_internal {

// ---- LayerProgress ------------------------------------------------------------

void LayerProgress::Add(uint32_t layer, size_t blocks) {
  absl::MutexLock l(&mu_);
  if (layer < done_.size()) done_[layer] += blocks;
}

void LayerProgress::AddAll(size_t blocks) {
  absl::MutexLock l(&mu_);
  for (size_t& d : done_) d += blocks;
}

void LayerProgress::Finish() {
  absl::MutexLock l(&mu_);
  finished_ = true;
}

bool LayerProgress::ReadyLocked(uint32_t layer) const {
  return finished_ || (layer < done_.size() && done_[layer] >= blocks_);
}

bool LayerProgress::Ready(uint32_t layer) const {
  absl::ReaderMutexLock l(&mu_);
  return ReadyLocked(layer);
}

void LayerProgress::Wait(uint32_t layer) const {
  struct Arg {
    const LayerProgress* self;
    uint32_t layer;
  } arg{this, layer};
  absl::ReaderMutexLock l(&mu_);
  mu_.Await(absl::Condition(
      +[](Arg* a) ABSL_NO_THREAD_SAFETY_ANALYSIS { return a->self->ReadyLocked(a->layer); }, &arg));
}

// ---- One layer at a time ----------------------------------------------------------

PagedKvDesc OneLayer(const PagedKvDesc& pages, uint32_t layer) {
  PagedKvDesc d = pages;
  d.kind = PagedLayoutKind::kCustom;
  d.num_layers = 1;
  d.layer_bases = {pages.layer_bases[layer]};
  return d;
}

KvLayout OneLayerShape(const KvLayout& layout) {
  KvLayout l = layout;
  l.num_layers = 1;
  return l;
}

namespace {

absl::Span<const int32_t> PagesOf(const PagedJob& job, size_t i) {
  return job.page_ids.subspan(i * job.per_block, job.per_block);
}

// ---- Host movers --------------------------------------------------------------

class HostGatherer final : public BlockWriter {
 public:
  explicit HostGatherer(const PagedJob& job) : job_(job) {}
  std::vector<absl::Status> Write(absl::Span<const BlockSlot> slots) override {
    std::vector<absl::Status> out;
    out.reserve(slots.size());
    for (const BlockSlot& s : slots) {
      out.push_back(GatherPages(job_.pages, job_.layout, PagesOf(job_, s.index), job_.codec, s.bytes));
    }
    return out;
  }

 private:
  const PagedJob job_;
};

class HostScatterer final : public BlockReader {
 public:
  explicit HostScatterer(const PagedJob& job) : job_(job) {}
  std::vector<absl::Status> Read(absl::Span<const FoundBlock> blocks) override {
    std::vector<absl::Status> out(blocks.size());
    const uint32_t layers = job_.layout.num_layers;
    const size_t raw_bytes = job_.layout.BytesPerBlock();
    // Uncompressed blocks go layer by layer; a compressed blob (or one of the
    // wrong size, which ScatterPages refuses) goes whole.
    std::vector<size_t> by_layer;
    size_t whole = 0;
    for (size_t k = 0; k < blocks.size(); ++k) {
      const FoundBlock& b = blocks[k];
      if (b.codec == CodecId::kNone && b.bytes.size() == raw_bytes && layers > 1) {
        by_layer.push_back(k);
        continue;
      }
      out[k] = ScatterPages(job_.pages, job_.layout, PagesOf(job_, b.index), b.codec, b.bytes);
      ++whole;
    }
    if (job_.progress != nullptr && whole > 0) job_.progress->AddAll(whole);
    if (by_layer.empty()) return out;
    const KvLayout one = OneLayerShape(job_.layout);
    const size_t slice = raw_bytes / layers;
    for (uint32_t l = 0; l < layers; ++l) {
      const PagedKvDesc pages = OneLayer(job_.pages, l);
      for (size_t k : by_layer) {
        // A block whose page list is refused fails at layer 0, before any
        // of its pages is written; it is not tried again.
        if (!out[k].ok()) continue;
        out[k] = ScatterPages(pages, one, PagesOf(job_, blocks[k].index), CodecId::kNone,
                              blocks[k].bytes.subspan(l * slice, slice));
      }
      if (job_.progress != nullptr) job_.progress->Add(l, by_layer.size());
    }
    return out;
  }

 private:
  const PagedJob job_;
};

}  // namespace

absl::StatusOr<bool> PagesOnDevice(const PagedKvDesc& pages) {
  size_t on_device = 0;
  for (void* base : pages.layer_bases) on_device += IsDeviceMemory(base) ? 1 : 0;
  if (on_device != 0 && on_device != pages.layer_bases.size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "paged KV: ", on_device, " of ", pages.layer_bases.size(),
        " layer bases are in CUDA device memory; all layers must be on the device or all on the host"));
  }
  return on_device != 0;
}

absl::StatusOr<std::unique_ptr<BlockWriter>> MakePageGatherer(const PagedJob& job) {
  absl::StatusOr<bool> device = PagesOnDevice(job.pages);
  if (!device.ok()) return device.status();
  if (*device) return MakeDeviceGatherer(job);
  return std::unique_ptr<BlockWriter>(new HostGatherer(job));
}

absl::StatusOr<std::unique_ptr<BlockReader>> MakePageScatterer(const PagedJob& job,
                                                                size_t max_stored) {
  absl::StatusOr<bool> device = PagesOnDevice(job.pages);
  if (!device.ok()) return device.status();
  if (*device) return MakeDeviceScatterer(job, max_stored);
  return std::unique_ptr<BlockReader>(new HostScatterer(job));
}

}  // namespace kvf::client_internal
