// kvf-cluster-bench: the data path's numbers on a local cluster of real
// processes (a kvf-coordinator and N kvf-agents on loopback), through the
// client library (issue 5):
//   * coherency: a mutable block rewritten with ack=primary; the primaries'
//     own histogram of "commit -> every replica acknowledged the
//     invalidation" (a replica acks once it knows its copy is stale or holds
//     the new version), p50/p99 as bucket upper bounds;
//   * lookup: the longest-prefix + placement query of a 128-block prompt,
//     p50/p99 measured by the client;
//   * throughput: put and get of 256 KiB blocks with 1, 4 and 16 client
//     threads, next to ucx_perftest's ucp_put_bw / ucp_get at the same size
//     in the same run.
// --netns puts the coordinator, each agent and this process on hosts of their
// own (network namespaces on a bridge, UCX over TCP only;
// bench/common/netns_hosts.h), and the throughput reference is then
// ucx_perftest tag_bw from this host to agent 0's.
// Prints a table; --json FILE writes the numbers.
//   kvf-cluster-bench [--agents 4] [--replication 2] [--tls posix,cma,self]
//                     [--threads 1,4,16] [--size 262144] [--seconds 2] [--netns]
//                     [--json F]
#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "bench/common/netns_hosts.h"
#include "bench/common/perftest.h"
#include "client/client.h"
#include "common/block_hash.h"
#include "common/process.h"
#include "httplib.h"
#include "tools/launch/local_cluster.h"

namespace kvf {
namespace {

struct Args {
  int agents = 4;
  uint32_t replication = 2;
  std::string tls = "posix,cma,self";
  bool tls_set = false;
  bool netns = false;
  std::vector<int> threads = {1, 4, 16};
  size_t size = 256 * 1024;
  double seconds = 2;
  std::string json;
};

double Percentile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(q * (v.size() - 1) + 0.5))];
}

// Sums a Prometheus histogram over agents and returns {p50, p99} upper bounds
// in µs.
std::pair<double, double> AgentHistogram(const launch::LocalCluster& c, const std::string& name) {
  std::vector<std::pair<double, double>> buckets;  // le (s), cumulative count
  for (const auto& a : c.agents()) {
    if (a.pid < 0) continue;
    const size_t colon = a.http.rfind(':');
    httplib::Client cli(a.http.substr(0, colon), std::stoi(a.http.substr(colon + 1)));
    auto res = cli.Get("/metrics");
    if (!res) continue;
    size_t i = 0;
    for (absl::string_view line : absl::StrSplit(res->body, '\n')) {
      const std::string prefix = name + "_bucket{le=\"";
      if (line.substr(0, prefix.size()) != prefix) continue;
      const size_t q = line.find('"', prefix.size());
      const std::string le(line.substr(prefix.size(), q - prefix.size()));
      double count = 0;
      (void)absl::SimpleAtod(line.substr(line.rfind(' ') + 1), &count);
      const double bound = le == "+Inf" ? 1e9 : std::stod(le);
      if (buckets.size() <= i) buckets.emplace_back(bound, 0);
      buckets[i].second += count;
      ++i;
    }
  }
  if (buckets.empty() || buckets.back().second == 0) return {0, 0};
  const double total = buckets.back().second;
  auto at = [&](double q) {
    for (const auto& [le, n] : buckets) {
      if (n >= q * total) return le * 1e6;
    }
    return 1e15;
  };
  return {at(0.5), at(0.99)};
}

NamespaceSpec SpecFor(size_t block_bytes) {
  // fp16, 2 layers x 2 heads x 64 dims = 1 KiB per token; block_bytes / 1 KiB tokens.
  NamespaceSpec s;
  s.model_id = "cluster-bench";
  s.layout = KvLayout{.num_layers = 2, .num_kv_heads = 2, .head_dim = 64,
                      .block_tokens = static_cast<uint32_t>(block_bytes / 1024),
                      .dtype = DType::kFp16};
  s.segment_blocks = 16;
  return s;
}

std::vector<BlockKey> Chain(const Namespace& ns, size_t blocks, std::mt19937_64& rng) {
  std::vector<uint32_t> tokens(blocks * ns.spec().layout.block_tokens);
  for (auto& t : tokens) t = static_cast<uint32_t>(rng());
  return *HashSequence(ns.spec().hash, tokens, ns.spec().layout.block_tokens);
}

int Main(int argc, char** argv) {
  Args args;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string { return i + 1 < argc ? argv[++i] : ""; };
    if (a == "--agents") args.agents = std::stoi(next());
    else if (a == "--replication") args.replication = std::stoi(next());
    else if (a == "--tls") {
      args.tls = next();
      args.tls_set = true;
    } else if (a == "--netns") args.netns = true;
    else if (a == "--size") args.size = std::stoul(next());
    else if (a == "--seconds") args.seconds = std::stod(next());
    else if (a == "--json") args.json = next();
    else if (a == "--threads") {
      args.threads.clear();
      for (absl::string_view t : absl::StrSplit(next(), ',')) args.threads.push_back(std::stoi(std::string(t)));
    } else {
      std::fprintf(stderr, "usage: %s [--agents N] [--replication R] [--tls T] [--threads a,b] [--size B] [--seconds S] [--netns] [--json F]\n", argv[0]);
      return 2;
    }
  }
  // Declared before the cluster and the client, so the namespaces go after
  // them on every return.
  std::unique_ptr<bench::BenchHosts> hosts;
  if (args.netns) {
    // Before any thread is started: they all belong on the client's host.
    auto h = bench::BenchHosts::Enter(args.agents);
    if (!h.ok()) {
      std::fprintf(stderr, "--netns: %s\n", h.status().ToString().c_str());
      return 1;
    }
    hosts = std::move(*h);
    if (!args.tls_set) args.tls = "tcp";
    std::printf("hosts apart: %s\n", hosts->Describe().c_str());
  }
  launch::LocalClusterOptions co;
  co.agents = args.agents;
  co.replication = args.replication;
  if (hosts) hosts->Place(&co);
  co.ucx_tls = args.tls;
  co.host_bytes = 512ull << 20;
  auto cluster = launch::LocalCluster::Start(co);
  if (!cluster.ok()) {
    std::fprintf(stderr, "cluster: %s\n", cluster.status().ToString().c_str());
    return 1;
  }
  ClientOptions o;
  o.coordinator = (*cluster)->coordinator();
  o.token = (*cluster)->token();
  o.ucx_tls = args.tls;
  o.worker_threads = 4;
  auto client = Client::Connect(o);
  if (!client.ok()) {
    std::fprintf(stderr, "client: %s\n", client.status().ToString().c_str());
    return 1;
  }
  Client& c = **client;
  std::mt19937_64 rng(7);
  std::string json = "{";

  // ---- Coherency --------------------------------------------------------
  {
    auto ns = *c.RegisterNamespace(SpecFor(4096));
    std::vector<std::vector<BlockKey>> keys;
    for (int k = 0; k < 64; ++k) keys.push_back(Chain(ns, 1, rng));
    std::vector<uint8_t> block(ns.BlockBytes(), 1);
    PutOptions po;
    po.is_mutable = true;
    int failed = 0;
    for (int i = 0; i < 2000; ++i) {
      block[0] = static_cast<uint8_t>(i);
      if (!c.Put(ns, keys[i % keys.size()], 0, block.data(), block.size(), po).ok()) ++failed;
    }
    absl::SleepFor(absl::Milliseconds(200));  // let the last syncs land before scraping
    auto [p50, p99] = AgentHistogram(**cluster, "kvf_agent_invalidation_seconds");
    auto [s50, s99] = AgentHistogram(**cluster, "kvf_agent_sync_lag_seconds");
    std::printf("coherency (2000 mutable puts, R=%u, %d failed)\n", args.replication, failed);
    std::printf("  commit -> replicas know (invalidation acked)   p50 <= %.0f us   p99 <= %.0f us   (target p99 < 200 us)\n", p50, p99);
    std::printf("  commit -> replicas hold the version (lazy sync) p50 <= %.0f us   p99 <= %.0f us\n", s50, s99);
    absl::StrAppend(&json, "\"coherency_invalidate_p50_us\":", p50, ",\"coherency_invalidate_p99_us\":", p99,
                    ",\"coherency_sync_p50_us\":", s50, ",\"coherency_sync_p99_us\":", s99, ",");
  }

  // ---- Lookup of a 128-block prompt -------------------------------------
  {
    auto ns = *c.RegisterNamespace(SpecFor(16384));
    auto chain = Chain(ns, 128, rng);
    std::vector<std::vector<uint8_t>> blocks(128, std::vector<uint8_t>(ns.BlockBytes(), 3));
    std::vector<ConstBlockBuffer> src;
    for (auto& b : blocks) src.push_back({b.data(), b.size()});
    auto put = c.BatchPut(ns, chain, 0, src);
    std::vector<double> us;
    for (int i = 0; i < 2000; ++i) {
      const absl::Time t = absl::Now();
      auto l = c.Lookup(ns, chain);
      us.push_back(absl::ToDoubleMicroseconds(absl::Now() - t));
      if (!l.ok() || l->prefix != 128) {
        std::fprintf(stderr, "lookup: %s\n", l.ok() ? "short prefix" : l.status().ToString().c_str());
        break;
      }
    }
    const double p50 = Percentile(us, 0.5), p99 = Percentile(us, 0.99);
    std::printf("lookup of a 128-block prompt (%d agents)   p50 %.0f us   p99 %.0f us   (target p99 < 300 us)\n",
                args.agents, p50, p99);
    absl::StrAppend(&json, "\"lookup128_p50_us\":", p50, ",\"lookup128_p99_us\":", p99, ",");
    (void)put;
  }

  // ---- Throughput -------------------------------------------------------
  // On one host, one-sided RMA as kvfabric's get and put use it; between
  // hosts, two-sided tag_bw: what the TCP path carries.
  const char* ref_put = hosts ? "tag_bw" : "ucp_put_bw";
  const char* ref_get = hosts ? "tag_bw" : "ucp_get";
  auto reference = [&](const char* test) {
    bench::PerftestOptions po;
    po.tls = args.tls;
    po.test = test;
    po.size = args.size;
    po.outstanding = 16;
    po.iters = 4000;
    if (hosts) {
      po.server_netns = hosts->agent_netns(0);
      po.server_address = hosts->agent_address(0);
    }
    const bench::PerftestResult r = bench::RunPerftest(po);
    if (r.mbps <= 0) std::fprintf(stderr, "ucx_perftest %s: %s\n", test, r.error.c_str());
    return r.mbps;
  };
  const double perf_put = reference(ref_put);
  // tag_bw has no direction: one run serves both.
  const double perf_get = hosts ? perf_put : reference(ref_get);
  std::printf("\n%-5s %8s %12s %12s %14s %8s\n", "op", "threads", "blocks/s", "GB/s", "perftest GB/s", "ratio");
  auto ns = *c.RegisterNamespace(SpecFor(args.size));
  const size_t batch = 16;
  absl::StrAppend(&json, "\"throughput\":[");
  bool first = true;
  for (int threads : args.threads) {
    for (const char* op : {"put", "get"}) {
      const bool is_put = std::string(op) == "put";
      // Gets read sequences written beforehand; puts write fresh immutable
      // sequences every round (the KV-cache workload: blocks never change).
      std::vector<std::vector<std::vector<BlockKey>>> chains(threads);
      std::vector<uint8_t> fill(args.size, 5);
      std::vector<ConstBlockBuffer> fill_src(batch, ConstBlockBuffer{fill.data(), fill.size()});
      for (auto& t : chains) {
        for (int s = 0; s < 4; ++s) {
          t.push_back(Chain(ns, batch, rng));
          if (is_put) continue;
          auto w = c.BatchPut(ns, t.back(), 0, fill_src);
          absl::Status ws = w.ok() ? w->FirstError() : w.status();
          if (!ws.ok()) std::fprintf(stderr, "writing the get set: %s\n", ws.ToString().c_str());
        }
      }
      std::atomic<uint64_t> done{0}, errors{0};
      absl::Mutex first_error_mu;
      absl::Status first_error;
      std::atomic<bool> stop{false};
      // Put rounds' chains, removed after the phase (untimed): left in place
      // they overfill the cluster, and the replicas' lazy pushes still
      // arriving would evict the next get phase's freshly written blocks.
      std::vector<std::vector<std::vector<BlockKey>>> written(threads);
      std::vector<std::thread> pool;
      const absl::Time start = absl::Now();
      for (int t = 0; t < threads; ++t) {
        pool.emplace_back([&, t] {
          std::mt19937_64 trng(1000 + t);
          std::vector<std::vector<uint8_t>> bufs(batch, std::vector<uint8_t>(args.size, static_cast<uint8_t>(t)));
          std::vector<ConstBlockBuffer> src;
          std::vector<BlockBuffer> dst;
          for (auto& b : bufs) {
            src.push_back({b.data(), b.size()});
            dst.push_back({b.data(), b.size()});
          }
          for (size_t round = 0; !stop.load(); ++round) {
            absl::StatusOr<BatchResult> r;
            if (is_put) {
              written[t].push_back(Chain(ns, batch, trng));
              r = c.BatchPut(ns, written[t].back(), 0, src);
            } else {
              r = c.BatchGet(ns, chains[t][round % chains[t].size()], 0, dst);
            }
            absl::Status bad = r.ok() ? r->FirstError() : r.status();
            if (r.ok()) { done += r->ok_count(); errors += batch - r->ok_count(); } else { errors += batch; }
            if (!bad.ok()) {
              absl::MutexLock l(&first_error_mu);
              if (first_error.ok()) first_error = bad;
            }
          }
        });
      }
      absl::SleepFor(absl::Seconds(args.seconds));
      stop = true;
      for (auto& th : pool) th.join();
      const double secs = absl::ToDoubleSeconds(absl::Now() - start);
      for (const auto& per_thread : written) {
        for (const auto& chain : per_thread) (void)c.Remove(ns, chain);
      }
      const double gbps = done.load() * args.size / secs / 1e9;
      const double ref = (is_put ? perf_put : perf_get) / 1e3;
      std::printf("%-5s %8d %12.0f %12.2f %14.2f %8.2f%s\n", op, threads, done.load() / secs, gbps, ref,
                  ref > 0 ? gbps / ref : 0.0, errors.load() ? absl::StrCat("  (", errors.load(), " failed)").c_str() : "");
      if (!first_error.ok()) std::printf("      first failure: %s\n", first_error.ToString().c_str());
      absl::StrAppend(&json, first ? "" : ",", "{\"op\":\"", op, "\",\"threads\":", threads,
                      ",\"gbps\":", gbps, ",\"perftest_gbps\":", ref, ",\"errors\":", errors.load(), "}");
      first = false;
    }
  }
  absl::StrAppend(&json, "],\"netns\":", hosts ? "true" : "false", ",\"tls\":\"", args.tls,
                  "\",\"perftest_put\":\"", ref_put, "\",\"perftest_get\":\"", ref_get, "\"}");
  std::printf("\nperftest: ucx_perftest %s / %s, %zu B, 16 outstanding, UCX_TLS=%s, same run%s\n",
              ref_put, ref_get, args.size, args.tls.c_str(),
              hosts ? ", server on agent 0's host, client on this one" : "");
  double load[1] = {0};
  if (getloadavg(load, 1) == 1) std::printf("load average (1 min): %.2f\n", load[0]);
  if (!args.json.empty()) std::ofstream(args.json) << json << "\n";
  return 0;
}

}  // namespace
}  // namespace kvf

int main(int argc, char** argv) {
  kvf::ConfigureProcessForServing();
  return kvf::Main(argc, argv);
}
