// kvf-bench's per-node balance: how many blocks and bytes each node holds,
// read from the agents' /metrics pages where their HTTP addresses are known,
// else counted from Lookup's holders over a sample of the benchmark's chains.
// And the agents' arena prefault, waited for before the timed phase.
#ifndef KVF_BENCH_KVF_BENCH_REPORT_H_
#define KVF_BENCH_KVF_BENCH_REPORT_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "client/client.h"

namespace kvf::bench {

struct NodeLoad {
  NodeId node = kNoNode;
  std::string where;  // the agent's HTTP address, or "" when counted by Lookup
  uint64_t blocks = 0;
  uint64_t bytes = 0;
};

struct Balance {
  std::string source;  // "metrics" or "lookup"
  std::vector<NodeLoad> nodes;
  // max / mean blocks over the nodes (1.0 is perfect balance).
  double Skew() const;
};

// Scrapes kvf_agent_blocks and kvf_agent_tier_stored_bytes (summed over tiers)
// from http://<http[i]>/metrics. `nodes[i]` names agent i (kNoNode if unknown).
absl::StatusOr<Balance> BalanceFromMetrics(absl::Span<const std::string> http,
                                           absl::Span<const NodeId> nodes);

// The agents' arena prefault (kvf-agent --prefault_arena; docs/agent.md),
// from kvf_agent_arena_prefault_{bytes,seconds,running}: the first-touch cost
// an agent pays at start-up so that puts do not.
struct ArenaPrefault {
  // Per agent that reports the gauges (agents without them are left out).
  std::vector<uint64_t> bytes;
  std::vector<double> seconds;
  bool done = true;         // no agent still prefaulting when the wait ended
  double waited_s = 0;      // how long WaitForArenaPrefault waited
  double MaxSeconds() const;
};

// Polls http://<http[i]>/metrics until no agent reports a prefault running,
// or until `timeout` (then done = false). UNAVAILABLE if a page cannot be read.
absl::StatusOr<ArenaPrefault> WaitForArenaPrefault(absl::Span<const std::string> http,
                                                   absl::Duration timeout);
// "arena prefault: 3 x 682 MiB in 0.84 s (first-touch cost, paid at start-up)"
// and its JSON object.
std::string ArenaPrefaultText(const ArenaPrefault& p);
std::string ArenaPrefaultJson(const ArenaPrefault& p);

// Counts, for every block of `chains`, each node Lookup names as a holder
// (replicas included); bytes are the holdings' sizes.
absl::StatusOr<Balance> BalanceFromLookups(Client& client, const Namespace& ns,
                                           absl::Span<const std::vector<BlockKey>> chains);

// "1.50 GiB", "64 KiB", "512 B".
std::string HumanBytes(double bytes);
// The 1-minute load average from /proc/loadavg, or -1.
double LoadAverage();

}  // namespace kvf::bench

#endif  // KVF_BENCH_KVF_BENCH_REPORT_H_
