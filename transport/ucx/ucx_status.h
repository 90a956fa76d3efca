// The one place UCX status codes become absl::Status. Private to transport/.
#ifndef KVF_TRANSPORT_UCX_UCX_STATUS_H_
#define KVF_TRANSPORT_UCX_UCX_STATUS_H_

#include <string_view>

#include <ucs/type/status.h>

#include "absl/status/status.h"

namespace kvf::transport_internal {

// "ucp_get_nbx from peer 3 (kvf-agent): Connection reset by remote peer",
// with the code mapped to the nearest absl::StatusCode (peer failures are
// UNAVAILABLE, cancellation CANCELLED, timeouts DEADLINE_EXCEEDED).
absl::Status UcxError(ucs_status_t status, std::string_view call, std::string_view context);

}  // namespace kvf::transport_internal

#endif  // KVF_TRANSPORT_UCX_UCX_STATUS_H_
