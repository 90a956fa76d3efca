// The device movers: pages in CUDA device memory, moved with the paged
// kernels on the caller's stream through one device scratch block.
//
// Everything a call enqueues is ordered on one stream, so the one scratch
// block is reused safely: block k + 1's gather writes it only after block k's
// copy out of it ran. A call waits for its stream once, at the end (the
// client commits, or releases its read lease, right after).
#include <algorithm>
#include <cstring>
#include <memory>
#include <utility>

#include "absl/strings/str_cat.h"
#include "client/internal/page_movers.h"
#include "common/logging.h"
#include "kernels/device.h"

namespace kvf::client_internal {
namespace {

absl::Span<const int32_t> PagesOf(const PagedJob& job, size_t i) {
  return job.page_ids.subspan(i * job.per_block, job.per_block);
}

// Agent arenas page-locked with CUDA, once per import: a copy between the
// device and page-locked memory is asynchronous and runs at the link's
// speed; into pageable memory the driver stages it. Registering pins the
// whole arena (the agent keeps it resident anyway). The registration is an
// attachment of the import (RemoteRegion::Attachment), so it is undone
// before the mapping goes: a later mapping at the same addresses is never
// taken for registered. Best effort: where it fails, copies still work,
// slower, and the failure is logged once per import.
void PageLockArena(const RemoteRegion* region, absl::Span<const std::byte> arena) {
  if (region == nullptr || arena.empty()) return;
  static const char kKey = 0;
  region->Attachment(&kKey, [&]() -> std::shared_ptr<void> {
    absl::StatusOr<HostRegistration> reg =
        HostRegistration::Register(const_cast<std::byte*>(arena.data()), arena.size());
    if (!reg.ok()) {
      KVF_LOG(WARNING) << "paged transfer: could not page-lock an agent arena of " << arena.size()
                       << " bytes (" << reg.status().message()
                       << "); device copies to it are staged by the driver";
      return nullptr;
    }
    return std::make_shared<HostRegistration>(*std::move(reg));
  });
}

// All of a call's statuses set to `s` where they are OK.
void FailAll(std::vector<absl::Status>& out, const absl::Status& s) {
  for (absl::Status& o : out) {
    if (o.ok()) o = s;
  }
}

class DeviceGatherer final : public BlockWriter {
 public:
  DeviceGatherer(const PagedJob& job, DeviceBuffer scratch)
      : job_(job), scratch_(std::move(scratch)) {}

  std::vector<absl::Status> Write(absl::Span<const BlockSlot> slots) override {
    std::vector<absl::Status> out(slots.size());
    absl::MutexLock l(&mu_);  // one scratch block: calls take turns
    for (size_t k = 0; k < slots.size(); ++k) {
      const BlockSlot& s = slots[k];
      PageLockArena(s.region, s.arena);
      out[k] = GatherPagesOnDevice(job_.pages, job_.layout, PagesOf(job_, s.index), job_.codec,
                                   scratch_.data(), s.bytes.size(), job_.stream);
      if (out[k].ok()) out[k] = CopyAsync(s.bytes.data(), scratch_.data(), s.bytes.size(), job_.stream);
    }
    if (absl::Status synced = SynchronizeStream(job_.stream); !synced.ok()) FailAll(out, synced);
    return out;
  }

 private:
  const PagedJob job_;
  absl::Mutex mu_;
  DeviceBuffer scratch_;
};

// Host callback arguments of one Read: a layer's (or every layer's) blocks
// have landed.
struct Landed {
  LayerProgress* progress = nullptr;
  int64_t layer = -1;  // -1: every layer
  size_t blocks = 0;
};

void OnLanded(void* arg) {
  auto* a = static_cast<Landed*>(arg);
  if (a->layer < 0) {
    a->progress->AddAll(a->blocks);
  } else {
    a->progress->Add(static_cast<uint32_t>(a->layer), a->blocks);
  }
}

class DeviceScatterer final : public BlockReader {
 public:
  DeviceScatterer(const PagedJob& job, DeviceBuffer scratch, DeviceBuffer flags)
      : job_(job), scratch_(std::move(scratch)), flags_(std::move(flags)) {}

  // Blocks in an agent's GPU tier come device to device (CUDA IPC): the
  // copies below take any pair of host and device memory.
  int DeviceOrdinal() const override { return scratch_.device(); }

  std::vector<absl::Status> Read(absl::Span<const FoundBlock> blocks) override {
    std::vector<absl::Status> out(blocks.size());
    absl::MutexLock l(&mu_);
    const uint32_t layers = job_.layout.num_layers;
    const size_t raw_bytes = job_.layout.BytesPerBlock();
    auto* d_flags = static_cast<uint32_t*>(flags_.data());
    const size_t max_flags = flags_.size() / sizeof(uint32_t);
    std::vector<size_t> by_layer;
    std::vector<size_t> coded;  // blocks checked on the device: flag k
    std::vector<Landed> landed;
    landed.reserve(layers + 1);  // stable addresses for the callbacks
    for (size_t k = 0; k < blocks.size(); ++k) {
      const FoundBlock& b = blocks[k];
      PageLockArena(b.region, b.arena);
      if (b.codec == CodecId::kNone && b.bytes.size() == raw_bytes && layers > 1) {
        by_layer.push_back(k);
        continue;
      }
      if (b.bytes.size() > scratch_.size() || coded.size() >= max_flags) {
        out[k] = absl::InternalError("paged load: block larger than the device scratch");
        continue;
      }
      out[k] = CopyAsync(scratch_.data(), b.bytes.data(), b.bytes.size(), job_.stream);
      if (out[k].ok()) {
        out[k] = ScatterPagesOnDevice(job_.pages, job_.layout, PagesOf(job_, b.index), b.codec,
                                      scratch_.data(), b.bytes.size(), d_flags + coded.size(),
                                      job_.stream);
      }
      if (out[k].ok()) coded.push_back(k);
    }
    auto report = [&](int64_t layer, size_t n) {
      if (job_.progress == nullptr || n == 0) return;
      landed.push_back(Landed{job_.progress, layer, n});
      absl::Status s = EnqueueHostCallback(job_.stream, &OnLanded, &landed.back());
      if (!s.ok()) {
        landed.back().blocks = 0;  // counted when the load finishes instead
        KVF_LOG(WARNING) << "paged load: layer progress unavailable: " << s.message();
      }
    };
    report(-1, coded.size());
    const KvLayout one = OneLayerShape(job_.layout);
    const size_t slice = raw_bytes / std::max<uint32_t>(1, layers);
    for (uint32_t l = 0; l < layers && !by_layer.empty(); ++l) {
      const PagedKvDesc pages = OneLayer(job_.pages, l);
      for (size_t k : by_layer) {
        if (!out[k].ok()) continue;
        out[k] = CopyAsync(scratch_.data(), blocks[k].bytes.data() + l * slice, slice, job_.stream);
        if (out[k].ok()) {
          out[k] = ScatterPagesOnDevice(pages, one, PagesOf(job_, blocks[k].index), CodecId::kNone,
                                        scratch_.data(), slice, nullptr, job_.stream);
        }
      }
      report(l, by_layer.size());
    }
    std::vector<uint32_t> mismatch(coded.size(), 0);
    if (!coded.empty()) {
      absl::Status s = CopyAsync(mismatch.data(), d_flags, coded.size() * sizeof(uint32_t), job_.stream);
      if (!s.ok()) FailAll(out, s);
    }
    if (absl::Status synced = SynchronizeStream(job_.stream); !synced.ok()) FailAll(out, synced);
    for (size_t c = 0; c < coded.size(); ++c) {
      if (mismatch[c] != 0 && out[coded[c]].ok()) {
        out[coded[c]] = absl::DataLossError(absl::StrCat(
            "block ", blocks[coded[c]].index, ": its blob is of another layout or codec than ",
            job_.layout.DebugString(), "; its pages were not written"));
      }
    }
    return out;
  }

 private:
  const PagedJob job_;
  absl::Mutex mu_;
  DeviceBuffer scratch_;
  DeviceBuffer flags_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<BlockWriter>> MakeDeviceGatherer(const PagedJob& job) {
  const int device = DeviceOf(job.pages.layer_bases.empty() ? nullptr : job.pages.layer_bases[0]);
  absl::StatusOr<DeviceBuffer> scratch =
      DeviceBuffer::Allocate(CpuCodec(job.codec).EncodedSize(job.layout), device);
  if (!scratch.ok()) return scratch.status();
  return std::unique_ptr<BlockWriter>(new DeviceGatherer(job, *std::move(scratch)));
}

absl::StatusOr<std::unique_ptr<BlockReader>> MakeDeviceScatterer(const PagedJob& job,
                                                                  size_t max_stored) {
  const int device = DeviceOf(job.pages.layer_bases.empty() ? nullptr : job.pages.layer_bases[0]);
  absl::StatusOr<DeviceBuffer> scratch = DeviceBuffer::Allocate(max_stored, device);
  if (!scratch.ok()) return scratch.status();
  // One mismatch flag per compressed block of a call (at most a get batch).
  absl::StatusOr<DeviceBuffer> flags = DeviceBuffer::Allocate(1024 * sizeof(uint32_t), device);
  if (!flags.ok()) return flags.status();
  return std::unique_ptr<BlockReader>(
      new DeviceScatterer(job, *std::move(scratch), *std::move(flags)));
}

}  // namespace kvf::client_internal
