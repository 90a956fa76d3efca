// Factory for the UCX backend (docs/transport.md). Private to transport/.
#ifndef KVF_TRANSPORT_UCX_UCX_TRANSPORT_H_
#define KVF_TRANSPORT_UCX_UCX_TRANSPORT_H_

#include <memory>

#include "absl/status/statusor.h"
#include "transport/transport.h"

namespace kvf::transport_internal {

absl::StatusOr<std::unique_ptr<Transport>> CreateUcxTransport(const TransportConfig& config);

}  // namespace kvf::transport_internal

#endif  // KVF_TRANSPORT_UCX_UCX_TRANSPORT_H_
