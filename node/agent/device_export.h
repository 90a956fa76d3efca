// The agent's GPU tier, exported over CUDA IPC to clients on its host
// (docs/agent.md, "GPU tier"): a descriptor of memory type kCuda whose rkey
// is the tier arena's IPC handle, and the arithmetic from a pinned block's
// device address to its offset in that arena. A GetRequest with device_ok
// gets device-tier blocks located in it instead of staged through the host
// arena.
#ifndef KVF_NODE_AGENT_DEVICE_EXPORT_H_
#define KVF_NODE_AGENT_DEVICE_EXPORT_H_

#include <cstdint>
#include <optional>

#include "absl/status/statusor.h"
#include "node/memory_tier.h"
#include "node/shard_store.h"
#include "transport/descriptor.h"

namespace kvf {

class DeviceExport {
 public:
  // The store's GPU tier, exported; nullopt (with the reason logged) when
  // the store has none or CUDA cannot export it (a fake tier in tests).
  static std::optional<DeviceExport> Of(const ShardStore& store);

  const RemoteDescriptor& descriptor() const { return descriptor_; }
  // The offset of [address, address + size) in the tier's arena;
  // INTERNAL when it is not inside.
  absl::StatusOr<uint64_t> Offset(const std::byte* address, uint64_t size) const;

 private:
  RemoteDescriptor descriptor_;
  const std::byte* base_ = nullptr;
};

}  // namespace kvf

#endif  // KVF_NODE_AGENT_DEVICE_EXPORT_H_
