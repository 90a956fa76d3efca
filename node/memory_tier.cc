#include "node/memory_tier.h"

#include <cstdlib>
#include <cstring>
#include <optional>

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "kernels/device.h"

namespace kvf {
namespace {

constexpr uint64_t kHostAlignment = uint64_t{2} << 20;  // huge-page friendly

absl::Status CheckRange(uint64_t offset, size_t size, uint64_t capacity, absl::string_view what) {
  if (offset > capacity || size > capacity - offset) {
    return absl::OutOfRangeError(absl::StrCat(what, " of ", size, " bytes at offset ", offset,
                                              " leaves the ", capacity, "-byte arena"));
  }
  return absl::OkStatus();
}

class HostTier final : public MemoryTier {
 public:
  HostTier(std::byte* base, uint64_t capacity, std::optional<HostRegistration> registration,
           bool owned = true)
      : base_(base), capacity_(capacity), registration_(std::move(registration)), owned_(owned) {}
  ~HostTier() override {
    registration_.reset();  // unregister before freeing
    if (owned_) std::free(base_);
  }

  TierKind kind() const override {
    return registration_ ? TierKind::kPinnedHost : TierKind::kHost;
  }
  TierCapabilities capabilities() const override {
    return {.device_memory = false, .cpu_addressable = true, .page_locked = registration_.has_value()};
  }
  uint64_t capacity() const override { return capacity_; }
  std::byte* base() const override { return base_; }

  absl::Status Write(uint64_t offset, absl::Span<const std::byte> src) override {
    if (auto s = CheckRange(offset, src.size(), capacity_, "write"); !s.ok()) return s;
    std::memcpy(base_ + offset, src.data(), src.size());
    return absl::OkStatus();
  }
  absl::Status Read(uint64_t offset, absl::Span<std::byte> dst) const override {
    if (auto s = CheckRange(offset, dst.size(), capacity_, "read"); !s.ok()) return s;
    std::memcpy(dst.data(), base_ + offset, dst.size());
    return absl::OkStatus();
  }

 private:
  std::byte* const base_;
  const uint64_t capacity_;
  std::optional<HostRegistration> registration_;
  const bool owned_;
};

class DeviceTier final : public MemoryTier {
 public:
  explicit DeviceTier(DeviceBuffer buffer) : buffer_(std::move(buffer)) {}

  TierKind kind() const override { return TierKind::kDevice; }
  TierCapabilities capabilities() const override {
    return {.device_memory = true, .cpu_addressable = false, .page_locked = false};
  }
  uint64_t capacity() const override { return buffer_.size(); }
  std::byte* base() const override { return static_cast<std::byte*>(buffer_.data()); }

  absl::Status Write(uint64_t offset, absl::Span<const std::byte> src) override {
    if (auto s = CheckRange(offset, src.size(), capacity(), "write"); !s.ok()) return s;
    return CopyHostToDevice(base() + offset, src.data(), src.size());
  }
  absl::Status Read(uint64_t offset, absl::Span<std::byte> dst) const override {
    if (auto s = CheckRange(offset, dst.size(), capacity(), "read"); !s.ok()) return s;
    return CopyDeviceToHost(dst.data(), base() + offset, dst.size());
  }

 private:
  DeviceBuffer buffer_;
};

}  // namespace

std::string_view TierName(TierKind kind) {
  switch (kind) {
    case TierKind::kDevice: return "device";
    case TierKind::kPinnedHost: return "pinned_host";
    case TierKind::kHost: return "host";
    case TierKind::kDisk: return "disk";
  }
  return "unknown";
}

absl::StatusOr<std::unique_ptr<MemoryTier>> CreateHostTier(uint64_t bytes, bool pin) {
  if (bytes == 0) return absl::InvalidArgumentError("host tier of 0 bytes");
  const uint64_t rounded = (bytes + kHostAlignment - 1) / kHostAlignment * kHostAlignment;
  void* base = std::aligned_alloc(kHostAlignment, rounded);
  if (base == nullptr) {
    return absl::ResourceExhaustedError(absl::StrCat("cannot allocate ", bytes, " bytes of host memory"));
  }
  std::optional<HostRegistration> registration;
  if (pin && Devices().count > 0) {
    auto reg = HostRegistration::Register(base, rounded);
    if (reg.ok()) {
      registration = std::move(reg).value();
    } else {
      KVF_LOG(WARNING) << "host tier stays pageable: " << reg.status();
    }
  }
  return std::make_unique<HostTier>(static_cast<std::byte*>(base), bytes, std::move(registration));
}

absl::StatusOr<std::unique_ptr<MemoryTier>> CreateBorrowedHostTier(std::byte* base,
                                                                  uint64_t bytes) {
  if (base == nullptr || bytes == 0) {
    return absl::InvalidArgumentError("borrowed host tier needs memory and a size");
  }
  if (reinterpret_cast<uintptr_t>(base) % 64 != 0) {
    return absl::InvalidArgumentError("borrowed host tier must be 64-byte aligned");
  }
  return std::make_unique<HostTier>(base, bytes, std::nullopt, /*owned=*/false);
}

absl::StatusOr<std::unique_ptr<MemoryTier>> CreateDeviceTier(uint64_t bytes, int device) {
  if (bytes == 0) return absl::InvalidArgumentError("device tier of 0 bytes");
  auto buffer = DeviceBuffer::Allocate(bytes, device);
  if (!buffer.ok()) return buffer.status();
  return std::make_unique<DeviceTier>(std::move(buffer).value());
}

}  // namespace kvf
