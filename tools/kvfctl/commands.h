// kvfctl's commands. Each prints its result (a table, or one JSON object with
// --json) on stdout, failures on stderr, and returns an exit code (ExitCode in
// context.h). Flags are parsed in main.cc and handed in as parameter structs.
#ifndef KVF_TOOLS_KVFCTL_COMMANDS_H_
#define KVF_TOOLS_KVFCTL_COMMANDS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "common/namespace.h"
#include "tools/kvfctl/context.h"

namespace kvf::ctl {

// Parses a node id ("3"); false for anything else.
bool ParseNodeId(const std::string& text, uint32_t* id);

int RunStatus(Context& ctx);
int RunNodes(Context& ctx);

struct DrainParams {
  uint32_t node = 0;
  bool wait = true;
  absl::Duration timeout = absl::Minutes(10);
  absl::Duration poll = absl::Milliseconds(250);
};
int RunDrain(Context& ctx, const DrainParams& params);
int RunUndrain(Context& ctx, uint32_t node);
int RunLeave(Context& ctx, uint32_t node);

struct JoinParams {
  bool exec = false;
  std::string agent_bin;                // empty: next to kvfctl, then PATH
  std::vector<std::string> agent_args;  // extra kvf-agent flags (after --)
};
int RunJoin(Context& ctx, const JoinParams& params);

struct EvictParams {
  double to_percent = 0;                         // target usage, 0..100
  absl::Duration start_cutoff = absl::Hours(1);  // first age cutoff; halved each round
  absl::Duration settle = absl::Seconds(30);     // wait for heartbeats to report usage
};
int RunEvict(Context& ctx, const EvictParams& params);

struct PlacementParams {
  std::string key;          // 32 hex digits (a segment head) or 0x + placement hash
  std::string tokens_file;  // or: a file of token ids
  NamespaceSpec spec;       // the namespace (ignored with namespace_id)
  bool have_namespace_id = false;
  uint64_t namespace_id = 0;
  std::string extra;  // HashBlock's extra bytes
};
int RunPlacement(Context& ctx, const PlacementParams& params);

int RunMetrics(Context& ctx, uint32_t node, std::string http);

}  // namespace kvf::ctl

#endif  // KVF_TOOLS_KVFCTL_COMMANDS_H_
