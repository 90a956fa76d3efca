// kvf-launch --client-check: a client round trip through a running cluster.
#ifndef KVF_TOOLS_LAUNCH_INTERNAL_CLIENT_CHECK_H_
#define KVF_TOOLS_LAUNCH_INTERNAL_CLIENT_CHECK_H_

#include <string>

#include "absl/status/statusor.h"

namespace kvf::launch::internal {

// Connects a kvf::Client to `coordinator`, puts `blocks` random blocks of one
// sequence (several placement segments, so several primaries), reads them
// back and compares byte for byte. Returns a one-line summary
// ("client check OK: ..."); an error names the first block that failed.
absl::StatusOr<std::string> ClientRoundTrip(const std::string& coordinator,
                                            const std::string& token, const std::string& ucx_tls,
                                            int blocks = 64);

}  // namespace kvf::launch::internal

#endif  // KVF_TOOLS_LAUNCH_INTERNAL_CLIENT_CHECK_H_
