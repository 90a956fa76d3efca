// The serialisable description of a registered region, as sent between
// processes: (region id, address, size, memory type, remote key).
#ifndef KVF_TRANSPORT_DESCRIPTOR_H_
#define KVF_TRANSPORT_DESCRIPTOR_H_

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace kvf {

enum class MemoryType : uint8_t { kHost = 0, kCuda = 1 };

std::string_view MemoryTypeName(MemoryType type);

// Value type. Wire format (little endian, docs/transport.md):
//   "KVRD" | u8 version=1 | u8 memory type | u16 0 | u64 region id |
//   u64 address | u64 size | u32 rkey length | rkey | u64 XXH64(all before)
// Parse rejects truncated, oversized, mis-tagged and corrupted input with
// INVALID_ARGUMENT; it never trusts a length it has not bounds-checked.
struct RemoteDescriptor {
  uint64_t region_id = 0;  // random per registration: names it to its owner
  uint64_t address = 0;    // the owner's virtual address of byte 0
  uint64_t size = 0;
  MemoryType memory_type = MemoryType::kHost;
  std::string rkey;  // backend-specific packed remote key

  std::string Serialize() const;
  static absl::StatusOr<RemoteDescriptor> Parse(std::string_view bytes);
  friend bool operator==(const RemoteDescriptor&, const RemoteDescriptor&) = default;
};

}  // namespace kvf

#endif  // KVF_TRANSPORT_DESCRIPTOR_H_
