#include "transport/ucx/ucx_status.h"

#include <string>

#include "absl/strings/str_cat.h"

namespace kvf::transport_internal {
namespace {

absl::StatusCode CodeFor(ucs_status_t status) {
  switch (status) {
    case UCS_OK:
      return absl::StatusCode::kOk;
    case UCS_ERR_CANCELED:
      return absl::StatusCode::kCancelled;
    case UCS_ERR_TIMED_OUT:
      return absl::StatusCode::kDeadlineExceeded;
    // ENDPOINT_TIMEOUT is how UCX reports a dead peer (keepalive, or a TCP
    // peer that vanished): a peer failure, so UNAVAILABLE. As
    // DEADLINE_EXCEEDED, a failed transfer's Wait() read as "still in
    // progress" (transport.h).
    case UCS_ERR_ENDPOINT_TIMEOUT:
    case UCS_ERR_CONNECTION_RESET:
    case UCS_ERR_UNREACHABLE:
    case UCS_ERR_REJECTED:
    case UCS_ERR_NOT_CONNECTED:
    case UCS_ERR_IO_ERROR:
    case UCS_ERR_SOME_CONNECTS_FAILED:
      return absl::StatusCode::kUnavailable;
    case UCS_ERR_NO_MEMORY:
    case UCS_ERR_NO_RESOURCE:
    case UCS_ERR_EXCEEDS_LIMIT:
      return absl::StatusCode::kResourceExhausted;
    case UCS_ERR_INVALID_PARAM:
    case UCS_ERR_INVALID_ADDR:
    case UCS_ERR_MESSAGE_TRUNCATED:
    case UCS_ERR_OUT_OF_RANGE:
      return absl::StatusCode::kInvalidArgument;
    case UCS_ERR_UNSUPPORTED:
      return absl::StatusCode::kUnimplemented;
    case UCS_ERR_NO_ELEM:
    case UCS_ERR_NO_DEVICE:
      return absl::StatusCode::kNotFound;
    case UCS_ERR_BUSY:
    case UCS_ERR_ALREADY_EXISTS:
      return absl::StatusCode::kFailedPrecondition;
    default:
      return absl::StatusCode::kInternal;
  }
}

}  // namespace

absl::Status UcxError(ucs_status_t status, std::string_view call, std::string_view context) {
  if (status == UCS_OK) return absl::OkStatus();
  return absl::Status(CodeFor(status), absl::StrCat(std::string(call), " ", std::string(context),
                                                    ": ", ucs_status_string(status)));
}

}  // namespace kvf::transport_internal
