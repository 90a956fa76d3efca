#include "bench/kvf_bench/report.h"

#include <algorithm>
#include <cstdio>
#include <map>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "httplib.h"

namespace kvf::bench {

double Balance::Skew() const {
  if (nodes.empty()) return 0;
  uint64_t total = 0, max = 0;
  for (const NodeLoad& n : nodes) {
    total += n.blocks;
    max = std::max(max, n.blocks);
  }
  return total == 0 ? 0 : static_cast<double>(max) * nodes.size() / total;
}

absl::StatusOr<Balance> BalanceFromMetrics(absl::Span<const std::string> http,
                                           absl::Span<const NodeId> nodes) {
  Balance b;
  b.source = "metrics";
  for (size_t i = 0; i < http.size(); ++i) {
    const size_t colon = http[i].rfind(':');
    int port = 0;
    if (colon == std::string::npos || !absl::SimpleAtoi(http[i].substr(colon + 1), &port)) {
      return absl::InvalidArgumentError(absl::StrCat("not host:port: ", http[i]));
    }
    httplib::Client cli(http[i].substr(0, colon), port);
    cli.set_connection_timeout(2);
    auto res = cli.Get("/metrics");
    if (!res || res->status != 200) {
      return absl::UnavailableError(absl::StrCat("GET http://", http[i], "/metrics failed"));
    }
    NodeLoad n;
    n.node = i < nodes.size() ? nodes[i] : kNoNode;
    n.where = http[i];
    for (absl::string_view line : absl::StrSplit(res->body, '\n')) {
      if (line.empty() || line[0] == '#') continue;
      const size_t space = line.rfind(' ');
      if (space == absl::string_view::npos) continue;
      const absl::string_view name = line.substr(0, line.find_first_of("{ "));
      double v = 0;
      if (!absl::SimpleAtod(line.substr(space + 1), &v)) continue;
      if (name == "kvf_agent_blocks") n.blocks = static_cast<uint64_t>(v);
      if (name == "kvf_agent_tier_stored_bytes") n.bytes += static_cast<uint64_t>(v);
    }
    b.nodes.push_back(n);
  }
  return b;
}

absl::StatusOr<Balance> BalanceFromLookups(Client& client, const Namespace& ns,
                                           absl::Span<const std::vector<BlockKey>> chains) {
  std::map<NodeId, NodeLoad> by_node;
  for (const NodeInfo& n : client.cluster_map().nodes) by_node[n.id].node = n.id;
  for (const auto& chain : chains) {
    auto l = client.Lookup(ns, chain);
    if (!l.ok()) return l.status();
    for (const BlockHolding& h : l->blocks) {
      for (NodeId id : h.nodes) {
        NodeLoad& n = by_node[id];
        n.node = id;
        n.blocks++;
        n.bytes += h.size;
      }
    }
  }
  Balance b;
  b.source = "lookup";
  for (auto& [id, n] : by_node) b.nodes.push_back(n);
  return b;
}

std::string HumanBytes(double bytes) {
  static const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (bytes >= 1024 && u < 4) {
    bytes /= 1024;
    ++u;
  }
  if (u == 0 || bytes == static_cast<uint64_t>(bytes)) return absl::StrFormat("%.0f %s", bytes, kUnits[u]);
  return absl::StrFormat("%.2f %s", bytes, kUnits[u]);
}

double LoadAverage() {
  double load = -1;
  if (FILE* f = std::fopen("/proc/loadavg", "r")) {
    if (std::fscanf(f, "%lf", &load) != 1) load = -1;
    std::fclose(f);
  }
  return load;
}

}  // namespace kvf::bench
