// Factory for the NCCL backend (docs/transport.md). Private to transport/.
// Built from nccl_transport.cc where CUDA and NCCL exist, otherwise from
// nccl_unavailable.cc, whose functions answer UNIMPLEMENTED.
#ifndef KVF_TRANSPORT_NCCL_NCCL_TRANSPORT_H_
#define KVF_TRANSPORT_NCCL_NCCL_TRANSPORT_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "transport/transport.h"

namespace kvf::transport_internal {

absl::StatusOr<std::unique_ptr<Transport>> CreateNcclTransport(const TransportConfig& config);
absl::StatusOr<std::string> NewNcclUniqueId();

}  // namespace kvf::transport_internal

#endif  // KVF_TRANSPORT_NCCL_NCCL_TRANSPORT_H_
