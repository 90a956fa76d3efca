// MemoryTier: one arena of memory a shard store keeps blocks in.
#ifndef KVF_NODE_MEMORY_TIER_H_
#define KVF_NODE_MEMORY_TIER_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace kvf {

// Fastest first: a store prefers lower values. kDisk is the store's SSD tier
// (node/disk/disk_tier.h), not a MemoryTier: its blocks are not addressable and
// come back to memory on a hit.
enum class TierKind : uint8_t { kDevice = 0, kPinnedHost = 1, kHost = 2, kDisk = 3 };
std::string_view TierName(TierKind kind);

// What a tier can do; callers ask instead of #ifdef-ing (STYLE.md).
struct TierCapabilities {
  bool device_memory = false;    // base() is a CUDA device pointer
  bool cpu_addressable = false;  // base() may be dereferenced by the CPU
  bool page_locked = false;      // pinned: DMA-able without staging
};

// Owns one contiguous arena for its whole life (released in the destructor).
// Thread-safe: Read/Write of disjoint ranges may run concurrently; the arena's
// layout is the allocator's business, not the tier's.
class MemoryTier {
 public:
  virtual ~MemoryTier() = default;

  virtual TierKind kind() const = 0;
  virtual TierCapabilities capabilities() const = 0;
  virtual uint64_t capacity() const = 0;
  // Arena start: a host pointer, or a device pointer for device tiers.
  virtual std::byte* base() const = 0;

  // Copy between host memory and [offset, offset + size) of the arena.
  // OUT_OF_RANGE if the range leaves the arena; INTERNAL with the CUDA text if
  // a device copy fails.
  virtual absl::Status Write(uint64_t offset, absl::Span<const std::byte> src) = 0;
  virtual absl::Status Read(uint64_t offset, absl::Span<std::byte> dst) const = 0;
};

// Host memory, 2 MiB aligned. With `pin` and a CUDA device present, the arena
// is page-locked through the CUDA runtime (kind kPinnedHost); otherwise plain
// host memory (kHost). RESOURCE_EXHAUSTED if the memory is not there.
absl::StatusOr<std::unique_ptr<MemoryTier>> CreateHostTier(uint64_t bytes, bool pin);

// One cudaMalloc arena on `device`. FAILED_PRECONDITION when the build has no
// CUDA or the machine has no such device.
// A host tier over memory the caller owns and keeps alive longer than the
// tier (e.g. an arena allocated by the transport so peers can reach it with
// one-sided RMA). Not freed, not pinned by the tier.
absl::StatusOr<std::unique_ptr<MemoryTier>> CreateBorrowedHostTier(std::byte* base, uint64_t bytes);

absl::StatusOr<std::unique_ptr<MemoryTier>> CreateDeviceTier(uint64_t bytes, int device);

}  // namespace kvf

#endif  // KVF_NODE_MEMORY_TIER_H_
