#include "transport/transport.h"

#include "transport/nccl/nccl_transport.h"
#include "transport/ucx/ucx_transport.h"

namespace kvf {

absl::StatusOr<std::unique_ptr<MemoryRegion>> Transport::AllocateMemory(size_t, MemoryType) {
  return absl::UnimplementedError("AllocateMemory: this transport cannot allocate memory");
}

absl::StatusOr<std::unique_ptr<Transport>> CreateTransport(const TransportConfig& config) {
  switch (config.backend) {
    case TransportBackend::kUcx:
      return transport_internal::CreateUcxTransport(config);
    case TransportBackend::kNccl:
      return transport_internal::CreateNcclTransport(config);
  }
  return absl::InvalidArgumentError("CreateTransport: unknown backend");
}

absl::StatusOr<std::string> NcclUniqueId() { return transport_internal::NewNcclUniqueId(); }

absl::Status Transport::CallAsync(PeerId, uint16_t, std::string_view, absl::Time, CallCallback) {
  return absl::UnimplementedError("CallAsync: this transport carries no messages");
}

absl::Status Transport::Notify(PeerId, uint16_t, std::string_view) {
  return absl::UnimplementedError("Notify: this transport carries no messages");
}

absl::Status Transport::RegisterDataHandler(uint16_t, DataMessageHandler) {
  return absl::UnimplementedError("RegisterDataHandler: this transport has no two-sided path");
}

RemoteRegion::~RemoteRegion() { DropAttachments(); }

std::shared_ptr<void> RemoteRegion::Attachment(
    const void* key, const std::function<std::shared_ptr<void>()>& make) const {
  std::lock_guard<std::mutex> l(attach_mu_);
  for (const auto& [k, v] : attachments_) {
    if (k == key) return v;
  }
  attachments_.emplace_back(key, make());
  return attachments_.back().second;
}

void RemoteRegion::DropAttachments() {
  std::vector<std::pair<const void*, std::shared_ptr<void>>> dropped;
  {
    std::lock_guard<std::mutex> l(attach_mu_);
    dropped.swap(attachments_);
  }
}

bool Transport::NativeOneSided(PeerId) const { return true; }

std::byte* Transport::MappedAddress(const RemoteRegion&, uint64_t, uint64_t) const {
  return nullptr;
}

}  // namespace kvf
