// Process-wide settings for kvfabric binaries (daemons, tools, benchmarks).
#ifndef KVF_COMMON_PROCESS_H_
#define KVF_COMMON_PROCESS_H_

namespace kvf {

// Call once at the top of main() in serving and benchmark binaries.
//
// Debian's Abseil is built without NDEBUG, which turns on absl::Mutex deadlock
// detection: a lock-graph update on every Lock/Unlock, about 100 ns a pair and
// a third of the shard store's own time per put (measured with callgrind).
// Tests leave it on, since it catches lock-order bugs; binaries that serve or
// measure turn it off here.
void ConfigureProcessForServing();

}  // namespace kvf

#endif  // KVF_COMMON_PROCESS_H_
