// libFuzzer target: the request-trace parser (bench/replay/trace.h), fed
// arbitrary text. It must return a trace or INVALID_ARGUMENT, never crash
// (ASan/UBSan); a trace it accepts must hold what it says (non-empty, block
// counts that add up) and parse to the same requests when written back out.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "bench/replay/trace.h"

namespace {

[[noreturn]] void Fail(const std::string& what) {
  std::fprintf(stderr, "trace fuzz: %s\n", what.c_str());
  std::abort();
}

// The canonical JSONL form of `trace`.
std::string Write(const kvf::replay::Trace& trace) {
  std::string out;
  for (const auto& r : trace.requests) {
    absl::StrAppend(&out, "{\"timestamp\": ", r.timestamp_ms, ", \"input_length\": ",
                    r.input_length, ", \"output_length\": ", r.output_length,
                    ", \"hash_ids\": [", absl::StrJoin(r.hash_ids, ", "), "]}\n");
  }
  return out;
}

bool SameRequests(const kvf::replay::Trace& a, const kvf::replay::Trace& b) {
  if (a.requests.size() != b.requests.size()) return false;
  for (size_t i = 0; i < a.requests.size(); ++i) {
    const auto& x = a.requests[i];
    const auto& y = b.requests[i];
    if (x.timestamp_ms != y.timestamp_ms || x.input_length != y.input_length ||
        x.output_length != y.output_length || x.hash_ids != y.hash_ids) {
      return false;
    }
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  auto trace = kvf::replay::ParseTrace(text);
  if (!trace.ok()) {
    if (trace.status().code() != absl::StatusCode::kInvalidArgument) {
      Fail(absl::StrCat("unexpected error: ", trace.status().ToString()));
    }
    return 0;
  }
  if (trace->requests.empty()) Fail("accepted a trace with no requests");
  uint64_t total = 0;
  absl::flat_hash_set<uint64_t> unique;
  for (const auto& r : trace->requests) {
    if (r.timestamp_ms < 0 || r.input_length < 0 || r.output_length < 0) {
      Fail("accepted a negative field");
    }
    total += r.hash_ids.size();
    unique.insert(r.hash_ids.begin(), r.hash_ids.end());
  }
  if (total != trace->total_blocks || unique.size() != trace->unique_blocks) {
    Fail(absl::StrCat("block counts ", trace->total_blocks, "/", trace->unique_blocks,
                      ", recounted ", total, "/", unique.size()));
  }
  auto again = kvf::replay::ParseTrace(Write(*trace));
  if (!again.ok()) Fail(absl::StrCat("written-back trace fails: ", again.status().ToString()));
  if (!SameRequests(*trace, *again)) Fail("written-back trace parses differently");
  return 0;
}
