// Mixed precision of sequences (docs/sequences.md, "Mixed precision"): which
// codec a position is stored with, and the writer's raw copies of the
// positions in the recent window, from which a block is re-encoded when it
// ages out. No I/O; unit-tested on its own (tests/client/recent_blocks_test.cc).
#ifndef KVF_CLIENT_INTERNAL_RECENT_BLOCKS_H_
#define KVF_CLIENT_INTERNAL_RECENT_BLOCKS_H_

#include <cstddef>
#include <memory>
#include <vector>

#include "absl/types/span.h"
#include "common/namespace.h"
#include "kernels/codec.h"

namespace kvf::client_internal {

// The codec position `index` of a sequence of `length` positions is stored
// with under `policy`: none when the policy is off, `recent` for the last
// recent_blocks positions, `old` before them. Pure.
CodecId CodecForPosition(const PrecisionPolicy& policy, size_t index, size_t length);

// Owned raw copies of at most `capacity` positions, one slot per position
// modulo capacity. A sequence's recent window is `capacity` consecutive
// positions, so the positions of one window never share a slot; Keep of a
// position whose slot holds another one replaces it (that one is then simply
// not kept: its stored block is left as it is).
//
// Memory: capacity x block_bytes, allocated by the first Keep (a reader's
// handle never keeps anything and pays nothing).
//
// Thread-safety: none; the owning Sequence calls it under its writer lock.
class RecentBlocks {
 public:
  RecentBlocks(size_t capacity, size_t block_bytes);

  // Copies `raw` (exactly block_bytes) as the bytes of position `index`.
  void Keep(size_t index, absl::Span<const std::byte> raw);
  // Forgets position `index` (no-op when it is not kept).
  void Drop(size_t index);
  // Forgets every position >= `index`.
  void DropFrom(size_t index);
  // The kept positions below `end`, ascending.
  std::vector<size_t> KeptBelow(size_t end) const;
  // Position `index`'s bytes, or an empty span when it is not kept.
  absl::Span<const std::byte> Find(size_t index) const;
  // How many positions are kept.
  size_t size() const;

 private:
  struct Slot {
    size_t index = 0;
    bool used = false;
  };
  std::byte* SlotBytes(size_t slot) const { return bytes_.get() + slot * block_bytes_; }

  size_t capacity_;
  size_t block_bytes_;
  std::vector<Slot> slots_;
  std::unique_ptr<std::byte[]> bytes_;
};

}  // namespace kvf::client_internal

#endif  // KVF_CLIENT_INTERNAL_RECENT_BLOCKS_H_
