// A MemoryTier that reports itself as device memory (kDevice, not
// CPU-addressable) but lives in host memory: the shard store's device-tier
// paths (demotion to host, host staging) run in unit tests without a GPU.
// Inject it with ShardStoreOptions::device_tier_factory.
#ifndef KVF_TESTS_NODE_FAKE_DEVICE_TIER_H_
#define KVF_TESTS_NODE_FAKE_DEVICE_TIER_H_

#include <atomic>
#include <cstring>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "node/memory_tier.h"

namespace kvf {

// Thread-safe as MemoryTier requires (disjoint ranges); the counters are atomic.
class FakeDeviceTier final : public MemoryTier {
 public:
  explicit FakeDeviceTier(uint64_t bytes) : arena_(bytes) {}

  TierKind kind() const override { return TierKind::kDevice; }
  TierCapabilities capabilities() const override {
    return {.device_memory = true, .cpu_addressable = false, .page_locked = false};
  }
  uint64_t capacity() const override { return arena_.size(); }
  // A "device pointer": the store never dereferences it (not CPU-addressable).
  std::byte* base() const override { return const_cast<std::byte*>(arena_.data()); }

  absl::Status Write(uint64_t offset, absl::Span<const std::byte> src) override {
    if (fail_copies_.load()) return absl::InternalError("fake device: copy failed");
    if (offset > arena_.size() || src.size() > arena_.size() - offset) {
      return absl::OutOfRangeError(absl::StrCat("fake device write at ", offset));
    }
    std::memcpy(arena_.data() + offset, src.data(), src.size());
    writes_.fetch_add(1);
    return absl::OkStatus();
  }
  absl::Status Read(uint64_t offset, absl::Span<std::byte> dst) const override {
    if (fail_copies_.load() || fail_reads_.load()) {
      return absl::InternalError("fake device: copy failed");
    }
    if (offset > arena_.size() || dst.size() > arena_.size() - offset) {
      return absl::OutOfRangeError(absl::StrCat("fake device read at ", offset));
    }
    std::memcpy(dst.data(), arena_.data() + offset, dst.size());
    reads_.fetch_add(1);
    return absl::OkStatus();
  }

  uint64_t reads() const { return reads_.load(); }
  uint64_t writes() const { return writes_.load(); }
  void set_fail_copies(bool fail) { fail_copies_.store(fail); }
  void set_fail_reads(bool fail) { fail_reads_.store(fail); }

 private:
  std::vector<std::byte> arena_;
  mutable std::atomic<uint64_t> reads_{0};
  std::atomic<uint64_t> writes_{0};
  std::atomic<bool> fail_copies_{false};
  std::atomic<bool> fail_reads_{false};
};

}  // namespace kvf

#endif  // KVF_TESTS_NODE_FAKE_DEVICE_TIER_H_
