#include "client/internal/recent_blocks.h"

#include <algorithm>
#include <cstring>

namespace kvf::client_internal {

CodecId CodecForPosition(const PrecisionPolicy& policy, size_t index, size_t length) {
  if (!policy.enabled()) return CodecId::kNone;
  // index < length - recent_blocks, written without underflow.
  const bool old = index + policy.recent_blocks < length;
  return static_cast<CodecId>(old ? policy.old : policy.recent);
}

RecentBlocks::RecentBlocks(size_t capacity, size_t block_bytes)
    : capacity_(capacity), block_bytes_(block_bytes), slots_(capacity) {}

void RecentBlocks::Keep(size_t index, absl::Span<const std::byte> raw) {
  if (capacity_ == 0 || raw.size() != block_bytes_) return;
  if (bytes_ == nullptr) bytes_ = std::make_unique<std::byte[]>(capacity_ * block_bytes_);
  const size_t slot = index % capacity_;
  std::memcpy(SlotBytes(slot), raw.data(), block_bytes_);
  slots_[slot] = Slot{index, true};
}

void RecentBlocks::Drop(size_t index) {
  if (capacity_ == 0) return;
  Slot& s = slots_[index % capacity_];
  if (s.used && s.index == index) s.used = false;
}

void RecentBlocks::DropFrom(size_t index) {
  for (Slot& s : slots_) {
    if (s.used && s.index >= index) s.used = false;
  }
}

std::vector<size_t> RecentBlocks::KeptBelow(size_t end) const {
  std::vector<size_t> out;
  for (const Slot& s : slots_) {
    if (s.used && s.index < end) out.push_back(s.index);
  }
  std::sort(out.begin(), out.end());
  return out;
}

absl::Span<const std::byte> RecentBlocks::Find(size_t index) const {
  if (capacity_ == 0) return {};
  const size_t slot = index % capacity_;
  const Slot& s = slots_[slot];
  if (!s.used || s.index != index) return {};
  return absl::MakeConstSpan(SlotBytes(slot), block_bytes_);
}

size_t RecentBlocks::size() const {
  return static_cast<size_t>(
      std::count_if(slots_.begin(), slots_.end(), [](const Slot& s) { return s.used; }));
}

}  // namespace kvf::client_internal
