// kcore::Result -> absl::Status, the one place the core's results become the
// project's errors (the codes are defined with absl::StatusCode's values).
#ifndef KVF_KERNELS_INTERNAL_STATUS_CONVERT_H_
#define KVF_KERNELS_INTERNAL_STATUS_CONVERT_H_

#include "absl/status/status.h"
#include "kernels/core/types.h"

namespace kvf::internal {

inline absl::Status ToStatus(const kcore::Result& r) {
  if (r.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(static_cast<int>(r.code)), r.message);
}

}  // namespace kvf::internal

#endif  // KVF_KERNELS_INTERNAL_STATUS_CONVERT_H_
