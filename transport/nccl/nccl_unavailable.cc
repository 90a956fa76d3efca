// The NCCL backend where this build has no CUDA or no NCCL.
#include "transport/nccl/nccl_transport.h"

namespace kvf::transport_internal {

absl::StatusOr<std::unique_ptr<Transport>> CreateNcclTransport(const TransportConfig&) {
  return absl::UnimplementedError("the NCCL transport was not built (no CUDA or no NCCL found)");
}

absl::StatusOr<std::string> NewNcclUniqueId() {
  return absl::UnimplementedError("the NCCL transport was not built (no CUDA or no NCCL found)");
}

}  // namespace kvf::transport_internal
