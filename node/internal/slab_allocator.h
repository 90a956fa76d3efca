// SlabAllocator: fixed-size pages over one tier's arena, O(1) both ways.
#ifndef KVF_NODE_INTERNAL_SLAB_ALLOCATOR_H_
#define KVF_NODE_INTERNAL_SLAB_ALLOCATOR_H_

#include <cstdint>
#include <optional>
#include <vector>

#include "absl/status/statusor.h"

namespace kvf::internal {

// The arena is cut into slabs of `slab_bytes`. A free slab is given to a page
// class the first time that class needs room and is cut into equal pages; when
// its last page is freed it goes back to the free slabs, so memory follows the
// mix of block sizes in use. Allocate and Free are O(1) (intrusive lists and a
// per-slab stack of freed pages) and never allocate: all metadata is sized at
// Create from `min_page_bytes` (4 bytes per possible page).
//
// Offsets are relative to the arena; the allocator never touches the arena,
// so it works the same for host and device memory. Not thread-safe.
class SlabAllocator {
 public:
  static constexpr int kMaxClasses = 64;

  struct Stats {
    uint64_t capacity_bytes = 0;  // whole slabs only
    uint64_t used_bytes = 0;      // page bytes handed out
    uint64_t free_bytes = 0;      // capacity - used
    uint64_t free_slab_bytes = 0; // of which in wholly free slabs
    uint64_t used_pages = 0;
  };

  // INVALID_ARGUMENT unless 0 < min_page_bytes <= slab_bytes <= arena_bytes.
  static absl::StatusOr<SlabAllocator> Create(uint64_t arena_bytes, uint64_t slab_bytes,
                                              uint64_t min_page_bytes);

  // Adds (or finds) the class of pages of exactly `page_bytes`. INVALID_ARGUMENT
  // if the size is outside [min_page_bytes, slab_bytes] or the table is full.
  absl::StatusOr<int> AddClass(uint64_t page_bytes);
  // The class of exactly `page_bytes`, if one was added.
  std::optional<int> FindClass(uint64_t page_bytes) const;
  uint64_t page_bytes(int cls) const { return classes_[cls].page_bytes; }
  int num_classes() const { return static_cast<int>(classes_.size()); }

  // A page of class `cls`, as an arena offset; nullopt when the arena is full
  // for that class.
  std::optional<uint64_t> Allocate(int cls);
  // Returns a page from Allocate. Freeing anything else is a bug (checked).
  void Free(uint64_t offset);

  uint64_t slab_bytes() const { return slab_bytes_; }
  Stats GetStats() const;

 private:
  static constexpr int32_t kNone = -1;

  struct PageClass {
    uint64_t page_bytes = 0;
    uint32_t pages_per_slab = 0;
    int32_t partial_head = kNone;  // slabs of this class with a free page
    uint64_t used_pages = 0;
  };

  SlabAllocator() = default;
  void LinkPartial(int cls, uint32_t slab);
  void UnlinkPartial(int cls, uint32_t slab);

  uint64_t slab_bytes_ = 0;
  uint32_t max_pages_per_slab_ = 0;
  std::vector<PageClass> classes_;
  // Per slab.
  std::vector<int16_t> slab_class_;   // kNone when free
  std::vector<uint32_t> slab_used_;   // pages handed out
  std::vector<uint32_t> slab_bump_;   // pages ever cut from the slab
  std::vector<uint32_t> slab_freed_;  // entries on the slab's freed-page stack
  std::vector<int32_t> slab_prev_, slab_next_;  // partial list links
  std::vector<uint32_t> freed_pages_;  // [slab * max_pages_per_slab_ + i]
  std::vector<uint32_t> free_slabs_;   // stack of wholly free slabs
};

}  // namespace kvf::internal

#endif  // KVF_NODE_INTERNAL_SLAB_ALLOCATOR_H_
