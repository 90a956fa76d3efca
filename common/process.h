// Process-wide settings for kvfabric binaries (daemons, tools, benchmarks).
#ifndef KVF_COMMON_PROCESS_H_
#define KVF_COMMON_PROCESS_H_

#include <string>

#include "absl/status/statusor.h"

namespace kvf {

// Call once at the top of main() in serving and benchmark binaries.
//
// Debian's Abseil is built without NDEBUG, which turns on absl::Mutex deadlock
// detection: a lock-graph update on every Lock/Unlock, about 100 ns a pair and
// a third of the shard store's own time per put (measured with callgrind).
// Tests leave it on, since it catches lock-order bugs; binaries that serve or
// measure turn it off here.
void ConfigureProcessForServing();

// Daemons stop on SIGINT/SIGTERM: BlockStopSignals() at the top of main(),
// before any thread starts (so every thread inherits the mask), then
// WaitForStopSignal() where the daemon should wait; it returns the signal.
void BlockStopSignals();
int WaitForStopSignal();

// The whole file (config, token, PEM). NOT_FOUND if it cannot be read.
absl::StatusOr<std::string> ReadFileToString(const std::string& path);

}  // namespace kvf

#endif  // KVF_COMMON_PROCESS_H_
