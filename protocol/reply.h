// Reading the answer to a data-plane request: either the typed response frame
// or an ErrorResponse (protocol/frames.h). Shared by the client and by
// agents talking to each other.
#ifndef KVF_PROTOCOL_REPLY_H_
#define KVF_PROTOCOL_REPLY_H_

#include <cstdint>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "protocol/frames.h"

namespace kvf::protocol {

// What an ErrorResponse said, beyond its status.
struct ReplyError {
  bool wrong_owner = false;
  uint64_t current_epoch = 0;
};

// T when `bytes` is a T frame; the ErrorResponse's status when it is one
// (filling `error`, if given); INVALID_ARGUMENT/DATA_LOSS for anything else.
template <typename T>
absl::StatusOr<T> DecodeReply(std::string_view bytes, ReplyError* error = nullptr) {
  absl::StatusOr<ParsedHeader> h = DecodeHeader(bytes);
  if (!h.ok()) return h.status();
  if (h->type == FrameType::kErrorResponse) {
    absl::StatusOr<ErrorResponse> e = ErrorResponse::Decode(bytes);
    if (!e.ok()) return e.status();
    if (error != nullptr) *error = ReplyError{e->wrong_owner, e->current_epoch};
    return e->ToStatus();
  }
  return T::Decode(bytes);
}

}  // namespace kvf::protocol

#endif  // KVF_PROTOCOL_REPLY_H_
