// Request traces in the Mooncake JSONL format (data/traces/README.md).
#ifndef KVF_BENCH_REPLAY_TRACE_H_
#define KVF_BENCH_REPLAY_TRACE_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace kvf::replay {

struct TraceRequest {
  int64_t timestamp_ms = 0;
  int64_t input_length = 0;
  int64_t output_length = 0;
  // Prefix-chained ids of the prompt's 512-token blocks.
  std::vector<uint64_t> hash_ids;
};

struct Trace {
  std::vector<TraceRequest> requests;
  uint64_t total_blocks = 0;   // block references, all requests
  uint64_t unique_blocks = 0;  // distinct hash ids
};

// Parses one JSON object per line (blank lines are skipped). Keys other than
// the four above are ignored if their values are numbers, strings or arrays
// of numbers. INVALID_ARGUMENT naming the line and what was wrong.
absl::StatusOr<Trace> ParseTrace(std::string_view text);

// Reads and parses a file; NOT_FOUND if it cannot be opened.
absl::StatusOr<Trace> LoadTrace(const std::string& path);

// Requests [begin, end) of `trace` (clamped), with the counts recomputed: for
// checking a policy on one half of a trace and then on the other.
Trace SliceTrace(const Trace& trace, size_t begin, size_t end);

}  // namespace kvf::replay

#endif  // KVF_BENCH_REPLAY_TRACE_H_
