// kvf-placement-table: the ring's measured properties, as a table.
//
// For N = 4, 16, 64, 256 nodes (8 racks as failure domains) and R = 1, 3,
// over 2M keys from a fixed seed, every replica counted:
//   balance  max/mean (and min/mean) keys per node
//   join     replicas moved when node N+1 joins / the ideal R/(N+1) of keys,
//            and whether every move went to the new node
//   leave    replicas moved when one node leaves / its ideal share R/N, and
//            whether only keys it owned changed
//   cost     Build time, and lookup ns per key (one key's R owners): one
//            Owners() call a key, and Placement::OwnersBatch over all keys
// Usage: kvf-placement-table [--json FILE]
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/placement.h"
#include "common/process.h"

namespace kvf {
namespace {

constexpr int kKeys = 2'000'000;

struct Row {
  int n = 0;
  uint32_t r = 0;
  size_t ranges = 0;
  double build_ms = 0, max_mean = 0, min_mean = 0;
  double join_ratio = 0, leave_ratio = 0, lookup_ns = 0, batch_ns = 0;
  bool join_only_new = true, leave_only_its = true;
};

std::vector<PlacementNode> Nodes(int n) {
  std::vector<PlacementNode> out;
  for (int i = 1; i <= n; ++i) out.push_back({static_cast<NodeId>(i), absl::StrCat("rack-", i % 8), 1.0});
  return out;
}

Placement Build(std::vector<PlacementNode> nodes, uint32_t r) {
  RingParams p;
  p.replication = r;
  return *Placement::Build(std::move(nodes), p);
}

bool Has(const OwnerList& l, NodeId id) { return std::find(l.begin(), l.end(), id) != l.end(); }

double Seconds(std::chrono::steady_clock::time_point a, std::chrono::steady_clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

Row Measure(int n, uint32_t r, const std::vector<uint64_t>& keys) {
  Row row;
  row.n = n;
  row.r = r;
  auto t0 = std::chrono::steady_clock::now();
  Placement base = Build(Nodes(n), r);
  row.build_ms = Seconds(t0, std::chrono::steady_clock::now()) * 1e3;
  row.ranges = base.Ranges().size();

  std::vector<OwnerList> owners(keys.size());
  t0 = std::chrono::steady_clock::now();
  for (size_t i = 0; i < keys.size(); ++i) owners[i] = base.Owners(keys[i]);
  row.lookup_ns = Seconds(t0, std::chrono::steady_clock::now()) * 1e9 / keys.size();
  {
    std::vector<NodeId> flat(keys.size() * base.replicas());
    t0 = std::chrono::steady_clock::now();
    base.OwnersBatch(keys, absl::MakeSpan(flat));
    row.batch_ns = Seconds(t0, std::chrono::steady_clock::now()) * 1e9 / keys.size();
  }

  absl::flat_hash_map<NodeId, uint64_t> count;
  for (const OwnerList& o : owners) {
    for (NodeId id : o) ++count[id];
  }
  uint64_t max = 0, min = UINT64_MAX;
  for (const auto& [id, c] : count) {
    max = std::max(max, c);
    min = std::min(min, c);
  }
  if (static_cast<int>(count.size()) < n) min = 0;
  const double mean = static_cast<double>(keys.size()) * std::min<int>(r, n) / n;
  row.max_mean = max / mean;
  row.min_mean = min / mean;

  const NodeId joiner = static_cast<NodeId>(n + 1);
  Placement joined = Build(Nodes(n + 1), r);
  uint64_t moved = 0;
  for (size_t i = 0; i < keys.size(); ++i) {
    for (NodeId id : joined.Owners(keys[i])) {
      if (Has(owners[i], id)) continue;
      ++moved;
      if (id != joiner) row.join_only_new = false;
    }
  }
  row.join_ratio = moved / (static_cast<double>(keys.size()) * std::min<int>(r, n + 1) / (n + 1));

  auto rest = Nodes(n);
  const NodeId leaver = rest[n / 2].id;
  rest.erase(rest.begin() + n / 2);
  Placement left = Build(std::move(rest), r);
  moved = 0;
  for (size_t i = 0; i < keys.size(); ++i) {
    const OwnerList now = left.Owners(keys[i]);
    if (!Has(owners[i], leaver)) {
      if (now != owners[i]) row.leave_only_its = false;
      continue;
    }
    for (NodeId id : now) moved += Has(owners[i], id) ? 0 : 1;
  }
  // Ideal: the leaver's replicas each need one new holder (none if R >= N).
  const double ideal = static_cast<double>(keys.size()) * std::min<int>(r, n) / n;
  row.leave_ratio = static_cast<int>(r) >= n ? 0.0 : moved / ideal;
  return row;
}

}  // namespace
}  // namespace kvf

int main(int argc, char** argv) {
  kvf::ConfigureProcessForServing();
  const char* json_path = nullptr;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--json") == 0 && i + 1 < argc) {
      json_path = argv[++i];
    } else {
      std::fprintf(stderr, "usage: %s [--json FILE]\n", argv[0]);
      return 2;
    }
  }
  std::vector<uint64_t> keys(kvf::kKeys);
  uint64_t s = 42;
  for (auto& h : keys) {
    uint64_t z = (s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    h = z ^ (z >> 31);
  }
  std::printf("%4s %2s %9s %9s %8s %8s | %10s %8s | %11s %8s | %9s %8s\n", "N", "R", "build ms", "ranges",
              "max/mean", "min/mean", "join/ideal", "all new", "leave/ideal", "only its", "lookup ns",
              "batch ns");
  std::string json = "[";
  for (int n : {4, 16, 64, 256}) {
    for (uint32_t r : {1u, 3u}) {
      const kvf::Row row = kvf::Measure(n, r, keys);
      std::printf("%4d %2u %9.1f %9zu %8.4f %8.4f | %10.3f %8s | %11.3f %8s | %9.1f %8.1f\n", row.n, row.r,
                  row.build_ms, row.ranges, row.max_mean, row.min_mean, row.join_ratio,
                  row.join_only_new ? "yes" : "NO", row.leave_ratio, row.leave_only_its ? "yes" : "NO",
                  row.lookup_ns, row.batch_ns);
      std::fflush(stdout);
      absl::StrAppend(&json, json.size() > 1 ? "," : "", "\n  ",
                      absl::StrFormat("{\"nodes\": %d, \"replication\": %u, \"keys\": %d, \"build_ms\": %.2f, "
                                      "\"ranges\": %zu, \"max_over_mean\": %.4f, \"min_over_mean\": %.4f, "
                                      "\"join_moved_over_ideal\": %.4f, \"join_all_to_new\": %s, "
                                      "\"leave_moved_over_ideal\": %.4f, \"leave_only_its_keys\": %s, "
                                      "\"lookup_ns\": %.1f, \"batch_lookup_ns\": %.1f}",
                                      row.n, row.r, kvf::kKeys, row.build_ms, row.ranges, row.max_mean,
                                      row.min_mean, row.join_ratio, row.join_only_new ? "true" : "false",
                                      row.leave_ratio, row.leave_only_its ? "true" : "false", row.lookup_ns,
                                      row.batch_ns));
    }
  }
  json += "\n]\n";
  if (json_path != nullptr) {
    FILE* f = std::fopen(json_path, "w");
    if (f == nullptr || std::fputs(json.c_str(), f) < 0 || std::fclose(f) != 0) {
      std::fprintf(stderr, "cannot write %s\n", json_path);
      return 1;
    }
  }
  return 0;
}
