#include "node/agent/device_export.h"

#include <random>

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "kernels/device.h"

namespace kvf {

std::optional<DeviceExport> DeviceExport::Of(const ShardStore& store) {
  const absl::Span<std::byte> arena = store.TierArena(TierKind::kDevice);
  if (arena.empty()) return std::nullopt;
  absl::StatusOr<std::string> handle = ExportIpcHandle(arena.data());
  if (!handle.ok()) {
    KVF_LOG(WARNING) << "agent: the GPU tier cannot be shared over CUDA IPC ("
                     << handle.status().message()
                     << "); clients on this host read it through host staging";
    return std::nullopt;
  }
  DeviceExport out;
  out.base_ = arena.data();
  std::random_device rd;
  out.descriptor_.region_id = (uint64_t{rd()} << 32 | rd()) |
                              uint64_t{1};
  out.descriptor_.address = reinterpret_cast<uint64_t>(arena.data());
  out.descriptor_.size = arena.size();
  out.descriptor_.memory_type = MemoryType::kCuda;
  out.descriptor_.rkey = *std::move(handle);
  KVF_LOG(INFO) << "agent: GPU tier of " << arena.size()
                << " bytes shared over CUDA IPC with clients on this host";
  return out;
}

absl::StatusOr<uint64_t> DeviceExport::Offset(const std::byte* address, uint64_t size) const {
  if (address < base_ || address + size > base_ + descriptor_.size) {
    return absl::InternalError("a device page outside the GPU tier's arena was handed out");
  }
  return static_cast<uint64_t>(address - base_);
}

}  // namespace kvf
