// kvf-trace-replay: prefix hit rate of every eviction policy on a request
// trace, next to the offline optimum (Belady). See docs/eviction.md.
//
//   kvf-trace-replay [--trace FILE] [--capacities 0.02,0.05,0.10,0.20]
//                    [--policies all|lru,chain,...] [--block-bytes N]
//                    [--json FILE] [--direct] [--part all|first|second]
//
// --part first|second replays only the first or second half of the trace's
// requests (capacities are then fractions of that half's unique blocks), to
// check that a policy's gain is not fitted to one stretch of one trace.
// --direct drives the policies without a ShardStore (a fast simulator of the
// store's protocol); by default every policy runs inside a real store.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "bench/replay/simulate.h"
#include "bench/replay/trace.h"
#include "common/process.h"
#include "common/status_macros.h"
#include "node/eviction_policy.h"

#ifndef KVF_SOURCE_DIR
#define KVF_SOURCE_DIR "."
#endif

namespace kvf::replay {
namespace {

struct Args {
  std::string trace;
  std::vector<double> capacities = {0.02, 0.05, 0.10, 0.20};
  std::vector<std::string> policies;
  uint64_t block_bytes = 1024;
  std::string json;
  bool direct = false;
  std::string part = "all";  // all, first or second half of the requests
};

constexpr char kUsage[] =
    "usage: kvf-trace-replay [--trace FILE] [--capacities 0.02,0.05,0.10,0.20]\n"
    "                        [--policies all|NAME,...] [--block-bytes N] [--json FILE]\n"
    "                        [--direct] [--part all|first|second]\n";

std::string DefaultTrace() {
  if (const char* env = std::getenv("KVF_TRACE"); env != nullptr && *env != '\0') return env;
  return std::string(KVF_SOURCE_DIR) + "/data/traces/conversation_trace.jsonl";
}

absl::StatusOr<Args> ParseArgs(int argc, char** argv) {
  Args args;
  std::string policies = "all";
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--direct") {
      args.direct = true;
      continue;
    }
    if (arg == "--help" || arg == "-h") return absl::CancelledError(kUsage);
    std::string value;
    if (size_t eq = arg.find('='); eq != std::string::npos) {
      value = arg.substr(eq + 1);
      arg = arg.substr(0, eq);
    } else if (i + 1 < argc) {
      value = argv[++i];
    } else {
      return absl::InvalidArgumentError(absl::StrCat(arg, " needs a value\n", kUsage));
    }
    if (arg == "--trace") {
      args.trace = std::string(value);
    } else if (arg == "--json") {
      args.json = std::string(value);
    } else if (arg == "--part") {
      if (value != "all" && value != "first" && value != "second") {
        return absl::InvalidArgumentError(
            absl::StrCat("--part: '", value, "' is not all, first or second"));
      }
      args.part = value;
    } else if (arg == "--policies") {
      policies = std::string(value);
    } else if (arg == "--block-bytes") {
      if (!absl::SimpleAtoi(value, &args.block_bytes) || args.block_bytes == 0) {
        return absl::InvalidArgumentError(
            absl::StrCat("--block-bytes: '", value, "' is not a positive integer"));
      }
    } else if (arg == "--capacities") {
      args.capacities.clear();
      for (const std::string& c : std::vector<std::string>(absl::StrSplit(value, ','))) {
        double f = 0;
        if (!absl::SimpleAtod(c, &f) || f <= 0 || f > 1) {
          return absl::InvalidArgumentError(
              absl::StrCat("--capacities: '", c, "' is not a fraction in (0, 1]"));
        }
        args.capacities.push_back(f);
      }
    } else {
      return absl::InvalidArgumentError(absl::StrCat("unknown flag '", arg, "'\n", kUsage));
    }
  }
  if (args.trace.empty()) args.trace = DefaultTrace();
  std::vector<std::string> known;
  for (std::string_view n : EvictionPolicyNames()) known.emplace_back(n);
  if (policies == "all") {
    args.policies = known;
  } else {
    for (const std::string& p : std::vector<std::string>(absl::StrSplit(policies, ','))) {
      if (std::find(known.begin(), known.end(), p) == known.end()) {
        return absl::InvalidArgumentError(absl::StrCat("--policies: unknown policy '", p,
                                                       "'; known: ", absl::StrJoin(known, ",")));
      }
      args.policies.emplace_back(p);
    }
  }
  return args;
}

struct Row {
  std::string name;
  std::vector<double> hit_rates;  // one per capacity
};

absl::Status Run(const Args& args) {
  auto t0 = std::chrono::steady_clock::now();
  KVF_ASSIGN_OR_RETURN(Trace trace, LoadTrace(args.trace));
  if (args.part != "all") {
    const size_t half = trace.requests.size() / 2;
    trace = args.part == "first" ? SliceTrace(trace, 0, half)
                                 : SliceTrace(trace, half, trace.requests.size());
  }
  std::printf("trace %s (%s): %zu requests, %llu block references, %llu unique blocks\n",
              args.trace.c_str(), args.part.c_str(), trace.requests.size(),
              static_cast<unsigned long long>(trace.total_blocks),
              static_cast<unsigned long long>(trace.unique_blocks));
  std::printf("mode: %s; hit rate = leading cached blocks / blocks requested\n\n",
              args.direct ? "direct (policy only, no store)"
                          : absl::StrCat("ShardStore, ", args.block_bytes, "-byte blocks").c_str());
  std::vector<uint64_t> capacity_blocks;
  for (double f : args.capacities) {
    capacity_blocks.push_back(
        std::max<uint64_t>(1, static_cast<uint64_t>(f * static_cast<double>(trace.unique_blocks))));
  }
  std::vector<Row> rows;
  for (const std::string& policy : args.policies) {
    Row& row = rows.emplace_back();
    row.name = policy;
    for (uint64_t cap : capacity_blocks) {
      absl::StatusOr<ReplayResult> r = args.direct ? ReplayDirect(trace, policy, cap)
                                                   : ReplayStore(trace, policy, cap, args.block_bytes);
      if (!r.ok()) {
        return absl::Status(r.status().code(), absl::StrCat(policy, " at ", cap, " blocks: ",
                                                            r.status().message()));
      }
      row.hit_rates.push_back(r->HitRate());
    }
  }
  Row belady{"belady", {}};
  for (uint64_t cap : capacity_blocks) belady.hit_rates.push_back(ReplayBelady(trace, cap).HitRate());

  // Table.
  std::string header = absl::StrFormat("%-12s", "policy");
  for (size_t c = 0; c < args.capacities.size(); ++c) {
    header += absl::StrFormat(" %9s", absl::StrFormat("%.0f%%", args.capacities[c] * 100));
  }
  std::printf("%s\n", header.c_str());
  std::string caps = absl::StrFormat("%-12s", "(blocks)");
  for (uint64_t cap : capacity_blocks) caps += absl::StrFormat(" %9d", cap);
  std::printf("%s\n", caps.c_str());
  auto print_row = [](const Row& row) {
    std::string line = absl::StrFormat("%-12s", row.name);
    for (double h : row.hit_rates) line += absl::StrFormat(" %9.4f", h);
    std::printf("%s\n", line.c_str());
  };
  for (const Row& row : rows) print_row(row);
  print_row(belady);
  std::vector<std::string> best_names;
  std::vector<double> ratio;
  for (size_t c = 0; c < capacity_blocks.size(); ++c) {
    const Row* best = nullptr;
    for (const Row& row : rows) {
      if (best == nullptr || row.hit_rates[c] > best->hit_rates[c]) best = &row;
    }
    best_names.push_back(best == nullptr ? "-" : best->name);
    ratio.push_back(best == nullptr || belady.hit_rates[c] == 0
                        ? 0
                        : best->hit_rates[c] / belady.hit_rates[c]);
  }
  std::string best_line = absl::StrFormat("%-12s", "best/belady");
  for (size_t c = 0; c < ratio.size(); ++c) {
    best_line += absl::StrFormat(" %9s", absl::StrFormat("%.3f", ratio[c]));
  }
  std::printf("%s\n", best_line.c_str());
  std::printf("%-12s %s\n", "best policy", absl::StrJoin(best_names, " ").c_str());
  std::printf("(%.1f s)\n",
              std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());

  if (!args.json.empty()) {
    std::string json = absl::StrCat("{\"trace\":\"", args.trace, "\",\"part\":\"", args.part, "\",\"mode\":\"",
                                    args.direct ? "direct" : "store", "\",\"block_bytes\":",
                                    args.block_bytes, ",\"requests\":", trace.requests.size(),
                                    ",\"unique_blocks\":", trace.unique_blocks,
                                    ",\"capacities\":[", absl::StrJoin(args.capacities, ","),
                                    "],\"capacity_blocks\":[", absl::StrJoin(capacity_blocks, ","),
                                    "],\"hit_rates\":{");
    std::vector<std::string> entries;
    for (const Row& row : rows) {
      entries.push_back(absl::StrCat("\"", row.name, "\":[", absl::StrJoin(row.hit_rates, ","), "]"));
    }
    entries.push_back(absl::StrCat("\"belady\":[", absl::StrJoin(belady.hit_rates, ","), "]"));
    absl::StrAppend(&json, absl::StrJoin(entries, ","), "},\"best\":[\"",
                    absl::StrJoin(best_names, "\",\""), "\"],\"best_over_belady\":[",
                    absl::StrJoin(ratio, ","), "]}\n");
    std::ofstream out(args.json);
    out << json;
    if (!out) return absl::UnavailableError(absl::StrCat("cannot write --json file ", args.json));
  }
  return absl::OkStatus();
}

}  // namespace
}  // namespace kvf::replay

int main(int argc, char** argv) {
  kvf::ConfigureProcessForServing();
  absl::StatusOr<kvf::replay::Args> args = kvf::replay::ParseArgs(argc, argv);
  if (!args.ok()) {
    const bool help = absl::IsCancelled(args.status());
    std::fprintf(help ? stdout : stderr, "%s%s\n", help ? "" : "kvf-trace-replay: ",
                 std::string(args.status().message()).c_str());
    return help ? 0 : 2;
  }
  if (absl::Status s = kvf::replay::Run(*args); !s.ok()) {
    std::fprintf(stderr, "kvf-trace-replay: %s\n", s.ToString().c_str());
    return 1;
  }
  return 0;
}
