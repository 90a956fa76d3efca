// kvf-bench's per-node balance: how many blocks and bytes each node holds,
// read from the agents' /metrics pages where their HTTP addresses are known,
// else counted from Lookup's holders over a sample of the benchmark's chains.
#ifndef KVF_BENCH_KVF_BENCH_REPORT_H_
#define KVF_BENCH_KVF_BENCH_REPORT_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
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
