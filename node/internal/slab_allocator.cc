#include "node/internal/slab_allocator.h"

#include <cstdlib>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/logging.h"

namespace kvf::internal {

absl::StatusOr<SlabAllocator> SlabAllocator::Create(uint64_t arena_bytes, uint64_t slab_bytes,
                                                    uint64_t min_page_bytes) {
  if (min_page_bytes == 0 || slab_bytes < min_page_bytes || arena_bytes < slab_bytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "slab allocator needs 0 < min_page (", min_page_bytes, ") <= slab (", slab_bytes,
        ") <= arena (", arena_bytes, ")"));
  }
  if (slab_bytes / min_page_bytes > UINT32_MAX) {
    return absl::InvalidArgumentError("too many pages per slab");
  }
  SlabAllocator a;
  a.slab_bytes_ = slab_bytes;
  a.max_pages_per_slab_ = static_cast<uint32_t>(slab_bytes / min_page_bytes);
  const uint64_t num_slabs = arena_bytes / slab_bytes;
  a.slab_class_.assign(num_slabs, kNone);
  a.slab_used_.assign(num_slabs, 0);
  a.slab_bump_.assign(num_slabs, 0);
  a.slab_freed_.assign(num_slabs, 0);
  a.slab_prev_.assign(num_slabs, kNone);
  a.slab_next_.assign(num_slabs, kNone);
  a.freed_pages_.assign(num_slabs * a.max_pages_per_slab_, 0);
  a.free_slabs_.reserve(num_slabs);
  // Hand out low addresses first.
  for (uint64_t s = num_slabs; s-- > 0;) a.free_slabs_.push_back(static_cast<uint32_t>(s));
  a.classes_.reserve(kMaxClasses);
  return a;
}

absl::StatusOr<int> SlabAllocator::AddClass(uint64_t page_bytes) {
  if (auto existing = FindClass(page_bytes)) return *existing;
  const uint64_t min_page = slab_bytes_ / max_pages_per_slab_;
  if (page_bytes < min_page || page_bytes > slab_bytes_) {
    return absl::InvalidArgumentError(absl::StrCat("page of ", page_bytes,
                                                   " bytes is outside [", min_page, ", ",
                                                   slab_bytes_, "] (the slab size)"));
  }
  if (classes_.size() >= kMaxClasses) {
    return absl::InvalidArgumentError(absl::StrCat("more than ", kMaxClasses, " page classes"));
  }
  PageClass c;
  c.page_bytes = page_bytes;
  c.pages_per_slab = static_cast<uint32_t>(slab_bytes_ / page_bytes);
  classes_.push_back(c);
  return static_cast<int>(classes_.size() - 1);
}

std::optional<int> SlabAllocator::FindClass(uint64_t page_bytes) const {
  for (size_t i = 0; i < classes_.size(); ++i) {
    if (classes_[i].page_bytes == page_bytes) return static_cast<int>(i);
  }
  return std::nullopt;
}

void SlabAllocator::LinkPartial(int cls, uint32_t slab) {
  PageClass& c = classes_[cls];
  slab_prev_[slab] = kNone;
  slab_next_[slab] = c.partial_head;
  if (c.partial_head != kNone) slab_prev_[c.partial_head] = static_cast<int32_t>(slab);
  c.partial_head = static_cast<int32_t>(slab);
}

void SlabAllocator::UnlinkPartial(int cls, uint32_t slab) {
  PageClass& c = classes_[cls];
  const int32_t prev = slab_prev_[slab], next = slab_next_[slab];
  if (prev != kNone) slab_next_[prev] = next;
  else c.partial_head = next;
  if (next != kNone) slab_prev_[next] = prev;
  slab_prev_[slab] = slab_next_[slab] = kNone;
}

std::optional<uint64_t> SlabAllocator::Allocate(int cls) {
  PageClass& c = classes_[cls];
  uint32_t slab;
  if (c.partial_head != kNone) {
    slab = static_cast<uint32_t>(c.partial_head);
  } else {
    if (free_slabs_.empty()) return std::nullopt;
    slab = free_slabs_.back();
    free_slabs_.pop_back();
    slab_class_[slab] = static_cast<int16_t>(cls);
    LinkPartial(cls, slab);
  }
  uint32_t page;
  if (slab_freed_[slab] > 0) {
    page = freed_pages_[uint64_t{slab} * max_pages_per_slab_ + --slab_freed_[slab]];
  } else {
    page = slab_bump_[slab]++;
  }
  ++c.used_pages;
  if (++slab_used_[slab] == c.pages_per_slab) UnlinkPartial(cls, slab);
  return uint64_t{slab} * slab_bytes_ + uint64_t{page} * c.page_bytes;
}

void SlabAllocator::Free(uint64_t offset) {
  const uint64_t slab64 = offset / slab_bytes_;
  const int cls = slab64 < slab_class_.size() ? slab_class_[slab64] : kNone;
  if (cls == kNone || (offset - slab64 * slab_bytes_) % classes_[cls].page_bytes != 0) {
    KVF_LOG(ERROR) << "SlabAllocator::Free of offset " << offset << " that it never handed out";
    std::abort();
  }
  const uint32_t slab = static_cast<uint32_t>(slab64);
  PageClass& c = classes_[cls];
  const uint32_t page = static_cast<uint32_t>((offset - slab64 * slab_bytes_) / c.page_bytes);
  --c.used_pages;
  if (slab_used_[slab]-- == c.pages_per_slab) LinkPartial(cls, slab);
  if (slab_used_[slab] == 0) {
    UnlinkPartial(cls, slab);
    slab_class_[slab] = kNone;
    slab_bump_[slab] = 0;
    slab_freed_[slab] = 0;
    free_slabs_.push_back(slab);
    return;
  }
  freed_pages_[uint64_t{slab} * max_pages_per_slab_ + slab_freed_[slab]++] = page;
}

SlabAllocator::Stats SlabAllocator::GetStats() const {
  Stats s;
  s.capacity_bytes = slab_class_.size() * slab_bytes_;
  for (const PageClass& c : classes_) {
    s.used_bytes += c.used_pages * c.page_bytes;
    s.used_pages += c.used_pages;
  }
  s.free_bytes = s.capacity_bytes - s.used_bytes;
  s.free_slab_bytes = free_slabs_.size() * slab_bytes_;
  return s;
}

}  // namespace kvf::internal
