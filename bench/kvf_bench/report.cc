#include "bench/kvf_bench/report.h"

#include <algorithm>
#include <cstdio>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
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

namespace {

// Every sample of http://<where>/metrics as (name without labels, value),
// in page order.
absl::StatusOr<std::vector<std::pair<std::string, double>>> Scrape(const std::string& where) {
  const size_t colon = where.rfind(':');
  int port = 0;
  if (colon == std::string::npos || !absl::SimpleAtoi(where.substr(colon + 1), &port)) {
    return absl::InvalidArgumentError(absl::StrCat("not host:port: ", where));
  }
  httplib::Client cli(where.substr(0, colon), port);
  cli.set_connection_timeout(2);
  auto res = cli.Get("/metrics");
  if (!res || res->status != 200) {
    return absl::UnavailableError(absl::StrCat("GET http://", where, "/metrics failed"));
  }
  std::vector<std::pair<std::string, double>> samples;
  for (absl::string_view line : absl::StrSplit(res->body, '\n')) {
    if (line.empty() || line[0] == '#') continue;
    const size_t space = line.rfind(' ');
    if (space == absl::string_view::npos) continue;
    double v = 0;
    if (!absl::SimpleAtod(line.substr(space + 1), &v)) continue;
    samples.emplace_back(std::string(line.substr(0, line.find_first_of("{ "))), v);
  }
  return samples;
}

}  // namespace

absl::StatusOr<Balance> BalanceFromMetrics(absl::Span<const std::string> http,
                                           absl::Span<const NodeId> nodes) {
  Balance b;
  b.source = "metrics";
  for (size_t i = 0; i < http.size(); ++i) {
    auto samples = Scrape(http[i]);
    if (!samples.ok()) return samples.status();
    NodeLoad n;
    n.node = i < nodes.size() ? nodes[i] : kNoNode;
    n.where = http[i];
    for (const auto& [name, v] : *samples) {
      if (name == "kvf_agent_blocks") n.blocks = static_cast<uint64_t>(v);
      if (name == "kvf_agent_tier_stored_bytes") n.bytes += static_cast<uint64_t>(v);
    }
    b.nodes.push_back(n);
  }
  return b;
}

double ArenaPrefault::MaxSeconds() const {
  double max = 0;
  for (double s : seconds) max = std::max(max, s);
  return max;
}

absl::StatusOr<ArenaPrefault> WaitForArenaPrefault(absl::Span<const std::string> http,
                                                   absl::Duration timeout) {
  const absl::Time start = absl::Now();
  for (;;) {
    ArenaPrefault p;
    bool running = false;
    for (const std::string& where : http) {
      auto samples = Scrape(where);
      if (!samples.ok()) return samples.status();
      bool reported = false;
      uint64_t bytes = 0;
      double seconds = 0;
      for (const auto& [name, v] : *samples) {
        if (name == "kvf_agent_arena_prefault_bytes") {
          bytes = static_cast<uint64_t>(v);
          reported = true;
        }
        if (name == "kvf_agent_arena_prefault_seconds") seconds = v;
        if (name == "kvf_agent_arena_prefault_running" && v != 0) running = true;
      }
      if (reported) {
        p.bytes.push_back(bytes);
        p.seconds.push_back(seconds);
      }
    }
    p.waited_s = absl::ToDoubleSeconds(absl::Now() - start);
    if (!running) return p;
    if (absl::Now() - start >= timeout) {
      p.done = false;
      return p;
    }
    absl::SleepFor(absl::Milliseconds(50));
  }
}

std::string ArenaPrefaultText(const ArenaPrefault& p) {
  if (p.bytes.empty()) return "arena prefault: not reported by the agents";
  uint64_t total = 0;
  bool same = true;
  for (uint64_t b : p.bytes) {
    total += b;
    same = same && b == p.bytes[0];
  }
  if (total == 0) return "arena prefault: off (first touches are paid by the puts)";
  std::string out = absl::StrFormat(
      "arena prefault: %s in %.2f s (first-touch cost, paid at start-up)",
      same ? absl::StrCat(p.bytes.size(), " x ", HumanBytes(p.bytes[0]))
           : absl::StrCat(p.bytes.size(), " agents, ", HumanBytes(total)),
      p.MaxSeconds());
  if (!p.done) {
    absl::StrAppend(&out, "; still running after ", absl::StrFormat("%.0f", p.waited_s),
                    " s, the timed phase started anyway");
  } else if (p.waited_s >= 0.05) {
    absl::StrAppend(&out, absl::StrFormat("; waited %.2f s for it", p.waited_s));
  }
  return out;
}

std::string ArenaPrefaultJson(const ArenaPrefault& p) {
  return absl::StrCat("{\"agents\":", p.bytes.size(), ",\"bytes\":[", absl::StrJoin(p.bytes, ","),
                      "],\"seconds\":[", absl::StrJoin(p.seconds, ","),
                      "],\"max_seconds\":", p.MaxSeconds(), ",\"done\":", p.done ? "true" : "false",
                      ",\"waited_s\":", p.waited_s, "}");
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
