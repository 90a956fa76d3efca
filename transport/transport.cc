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

bool Transport::NativeOneSided(PeerId) const { return true; }

std::byte* Transport::MappedAddress(const RemoteRegion&, uint64_t, uint64_t) const {
  return nullptr;
}

}  // namespace kvf
