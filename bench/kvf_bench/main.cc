// kvf-bench: kvfabric's end-to-end benchmark (docs/benchmarks.md).
//
//   kvf-bench [cluster] put|get|mixed [options]
//   kvf-bench [cluster] trace FILE [options]
//
// Cluster: --coordinator HOST:PORT with --token / --token_file (or
// $KVF_COORDINATOR, $KVF_TOKEN, $KVF_TOKEN_FILE), or --local N to start a
// cluster of N agents on this machine and stop it at the end.
//
// put/get/mixed time block traffic from --clients kvf::Client instances with
// --threads threads each, and (--compare-redis, on by default when
// redis-server exists) the same traffic against a redis-server kvf-bench
// starts on loopback, plus ucx_perftest at the same size with --local.
// --netns (with --local) puts the coordinator, each agent, kvf-bench itself
// and its Redis on hosts of their own (network namespaces on a bridge, UCX
// over TCP; bench/common/netns_hosts.h), and compares with ucx_perftest
// tag_bw across the same kind of link. trace replays a hash_ids request
// trace: lookup the cached prefix, get it, put the rest. Prints a table;
// --json FILE writes the same numbers.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "bench/common/netns_hosts.h"
#include "bench/common/perftest.h"
#include "bench/kvf_bench/redis_peer.h"
#include "bench/kvf_bench/report.h"
#include "bench/kvf_bench/workload.h"
#include "bench/replay/trace.h"
#include "client/client.h"
#include "common/credentials.h"
#include "common/process.h"
#include "common/status_macros.h"
#include "tools/launch/local_cluster.h"

namespace kvf::bench {
namespace {

// The longest kvf-bench waits for the agents' arena prefault (0.1-0.6 s per
// GiB on the development VM, more where the pages are new) before it times
// traffic regardless.
constexpr absl::Duration kPrefaultTimeout = absl::Minutes(10);

constexpr char kUsage[] = R"(usage: kvf-bench [cluster] MODE [options]
modes:
  put | get | mixed        timed block traffic (and the same against Redis)
  trace FILE               replay a hash_ids trace (data/traces/README.md)
cluster (one of):
  --local N                start N agents + a coordinator here, stop them at the end
    --replication R        (2)    --capacity_bytes B  total, split across agents
    --agent_flag F         pass F to every agent (repeatable), e.g. --agent_flag=--eviction_policy=chain;
                           {agent} in F is the agent's index: --agent_flag=--disk_path=/tmp/ssd-{agent}
    --coordinator_flag F   pass F to the coordinator (repeatable), e.g. --coordinator_flag=--high_watermark=0.95
    --netns                hosts apart: coordinator, each agent, this process and Redis each in a
                           network namespace of its own on a bridge, UCX over TCP (no shared memory);
                           ucx_perftest tag_bw from this host to agent 0's. Needs root and iproute2
  --coordinator HOST:PORT  a running cluster ($KVF_COORDINATOR)
    --token T | --token_file F    ($KVF_TOKEN, $KVF_TOKEN_FILE)
    --agent_http H:P,...   agents' HTTP addresses, for the per-node balance
  --ucx_tls T              UCX transports (--local default: posix,cma,self; --netns: tcp)
options:
  --block_bytes B  (256 KiB; trace: 64 KiB)   --batch N  blocks per call (1)
  --segment_blocks N  the namespace's placement segment, in blocks (1)
  --clients C  kvf::Client instances (4; trace: 1)
  --threads T  per client (4)                 --keys K  key space of get/mixed (1024)
  --seconds S  (5)   --read_fraction F  mixed (0.5)
  --max_requests N   trace: replay only the first N requests
  --key_seed N       key namespace (default: from the clock, so runs don't share keys)
  --compare-redis / --no-compare-redis        (on for put/get/mixed when redis-server exists)
  --redis_io_threads N  (1)
  --compare-perftest / --no-compare-perftest  (on with --local for put/get: ucp_put_bw / ucp_get,
                                               with --netns tag_bw)
  --tenant NAME     act as tenant NAME (a tenant credential derived from the token):
                    the agents copy its bytes instead of handing out their arena
  --json FILE
)";

struct Args {
  std::string mode;
  std::string trace_file;
  int local = 0;
  bool netns = false;
  uint32_t replication = 2;
  uint64_t capacity_bytes = 0;
  std::vector<std::string> agent_flags;  // --local: extra kvf-agent flags
  uint32_t segment_blocks = NamespaceSpec{}.segment_blocks;
  std::vector<std::string> coordinator_flags;  // --local: extra kvf-coordinator flags
  std::string coordinator, token, token_file, ucx_tls;
  bool ucx_tls_set = false;
  bool has_tenant = false;
  std::string tenant;
  std::vector<std::string> agent_http;
  size_t block_bytes = 0;
  size_t batch = 1;
  int clients = 0, threads = 4;
  uint64_t keys = 1024;
  double seconds = 5, read_fraction = 0.5;
  size_t max_requests = 0;
  std::optional<uint64_t> key_seed;
  std::optional<bool> compare_redis, compare_perftest;
  int redis_io_threads = 1;
  std::string json;
};

// Parses a byte count: plain, or with a K/M/G suffix (KiB, MiB, GiB).
bool ParseBytes(std::string s, uint64_t* out) {
  uint64_t mult = 1;
  for (const auto& [suffix, m] : std::vector<std::pair<std::string, uint64_t>>{
           {"KiB", 1ull << 10}, {"MiB", 1ull << 20}, {"GiB", 1ull << 30},
           {"K", 1ull << 10}, {"M", 1ull << 20}, {"G", 1ull << 30}}) {
    if (absl::EndsWith(s, suffix)) {
      s.resize(s.size() - suffix.size());
      mult = m;
      break;
    }
  }
  double v = 0;
  if (!absl::SimpleAtod(s, &v) || v < 0) return false;
  *out = static_cast<uint64_t>(v * mult);
  return true;
}

absl::StatusOr<Args> Parse(int argc, char** argv) {
  Args a;
  std::vector<std::string> positional;
  for (int i = 1; i < argc; ++i) {
    std::string flag = argv[i], value;
    bool has_value = false;
    if (!absl::StartsWith(flag, "--")) {
      positional.push_back(flag);
      continue;
    }
    if (const size_t eq = flag.find('='); eq != std::string::npos) {
      value = flag.substr(eq + 1);
      flag.resize(eq);
      has_value = true;
    }
    auto next = [&]() -> absl::StatusOr<std::string> {
      if (has_value) return value;
      if (i + 1 >= argc) return absl::InvalidArgumentError(absl::StrCat(flag, " needs a value"));
      return std::string(argv[++i]);
    };
    auto boolean = [&]() { return !has_value || (value != "0" && value != "false"); };
    auto bad = [&](const std::string& v) {
      return absl::InvalidArgumentError(absl::StrCat("bad value for ", flag, ": '", v, "'"));
    };
#define KVF_NUM(field, parse)                             \
  {                                                       \
    KVF_ASSIGN_OR_RETURN(std::string v, next());          \
    if (!parse(v, &field)) return bad(v);                 \
  }
    uint64_t u = 0;
    if (flag == "--local") KVF_NUM(a.local, absl::SimpleAtoi)
    else if (flag == "--netns") a.netns = boolean();
    else if (flag == "--replication") KVF_NUM(a.replication, absl::SimpleAtoi)
    else if (flag == "--capacity_bytes") KVF_NUM(a.capacity_bytes, ParseBytes)
    else if (flag == "--segment_blocks") KVF_NUM(a.segment_blocks, absl::SimpleAtoi)
    else if (flag == "--agent_flag") {
      KVF_ASSIGN_OR_RETURN(std::string f, next());
      a.agent_flags.push_back(std::move(f));
    } else if (flag == "--coordinator_flag") {
      KVF_ASSIGN_OR_RETURN(std::string f, next());
      a.coordinator_flags.push_back(std::move(f));
    }
    else if (flag == "--coordinator") { KVF_ASSIGN_OR_RETURN(a.coordinator, next()); }
    else if (flag == "--token") { KVF_ASSIGN_OR_RETURN(a.token, next()); }
    else if (flag == "--tenant") { KVF_ASSIGN_OR_RETURN(a.tenant, next()); a.has_tenant = true; }
    else if (flag == "--token_file") { KVF_ASSIGN_OR_RETURN(a.token_file, next()); }
    else if (flag == "--ucx_tls") { KVF_ASSIGN_OR_RETURN(a.ucx_tls, next()); a.ucx_tls_set = true; }
    else if (flag == "--agent_http") {
      KVF_ASSIGN_OR_RETURN(std::string v, next());
      a.agent_http = absl::StrSplit(v, ',', absl::SkipEmpty());
    } else if (flag == "--block_bytes") {
      KVF_NUM(u, ParseBytes);
      a.block_bytes = u;
    } else if (flag == "--batch") KVF_NUM(a.batch, absl::SimpleAtoi)
    else if (flag == "--clients") KVF_NUM(a.clients, absl::SimpleAtoi)
    else if (flag == "--threads") KVF_NUM(a.threads, absl::SimpleAtoi)
    else if (flag == "--keys") KVF_NUM(a.keys, absl::SimpleAtoi)
    else if (flag == "--seconds") KVF_NUM(a.seconds, absl::SimpleAtod)
    else if (flag == "--read_fraction") KVF_NUM(a.read_fraction, absl::SimpleAtod)
    else if (flag == "--max_requests") KVF_NUM(a.max_requests, absl::SimpleAtoi)
    else if (flag == "--key_seed") {
      KVF_NUM(u, absl::SimpleAtoi);
      a.key_seed = u;
    } else if (flag == "--redis_io_threads") KVF_NUM(a.redis_io_threads, absl::SimpleAtoi)
    else if (flag == "--compare-redis" || flag == "--compare_redis") a.compare_redis = boolean();
    else if (flag == "--no-compare-redis" || flag == "--no_compare_redis") a.compare_redis = false;
    else if (flag == "--compare-perftest" || flag == "--compare_perftest") a.compare_perftest = boolean();
    else if (flag == "--no-compare-perftest" || flag == "--no_compare_perftest") a.compare_perftest = false;
    else if (flag == "--json") { KVF_ASSIGN_OR_RETURN(a.json, next()); }
    else if (flag == "--help") return absl::CancelledError("help");
    else return absl::InvalidArgumentError(absl::StrCat("unknown flag ", flag));
#undef KVF_NUM
  }
  if (positional.empty()) return absl::InvalidArgumentError("no mode given");
  a.mode = positional[0];
  if (a.mode == "trace") {
    if (positional.size() != 2) return absl::InvalidArgumentError("trace needs exactly one FILE");
    a.trace_file = positional[1];
  } else if (a.mode != "put" && a.mode != "get" && a.mode != "mixed") {
    return absl::InvalidArgumentError(absl::StrCat("unknown mode '", a.mode, "'"));
  } else if (positional.size() != 1) {
    return absl::InvalidArgumentError("put/get/mixed take no positional arguments");
  }
  const bool trace = a.mode == "trace";
  if (a.block_bytes == 0) a.block_bytes = trace ? 64 * 1024 : 256 * 1024;
  if (a.clients == 0) a.clients = trace ? 1 : 4;
  if (a.clients < 1 || a.threads < 1 || a.batch < 1 || a.seconds <= 0 || a.keys < 1) {
    return absl::InvalidArgumentError("--clients, --threads, --batch, --keys and --seconds must be positive");
  }
  if (a.read_fraction < 0 || a.read_fraction > 1) return absl::InvalidArgumentError("--read_fraction is in [0, 1]");
  if (a.local == 0) {
    auto env = [](const char* name) { const char* v = std::getenv(name); return std::string(v ? v : ""); };
    if (a.coordinator.empty()) a.coordinator = env("KVF_COORDINATOR");
    if (a.token.empty() && a.token_file.empty()) {
      a.token = env("KVF_TOKEN");
      if (a.token.empty()) a.token_file = env("KVF_TOKEN_FILE");
    }
    if (a.coordinator.empty()) return absl::InvalidArgumentError("give --local N or --coordinator (or $KVF_COORDINATOR)");
  }
  if (!a.token_file.empty()) {
    std::ifstream f(a.token_file);
    if (!f) return absl::NotFoundError(absl::StrCat("cannot read --token_file ", a.token_file));
    std::stringstream ss;
    ss << f.rdbuf();
    // The first line is the current token (docs/security.md, "Rotation").
    auto tokens = ParseTokenFile(ss.str());
    a.token = tokens.ok() ? (*tokens)[0] : std::string();
  }
  if (a.netns && a.local <= 0) return absl::InvalidArgumentError("--netns needs --local N");
  // Hosts apart share no memory: TCP is what is left between them.
  if (a.netns && !a.ucx_tls_set) a.ucx_tls = "tcp";
  if (a.local > 0 && !a.ucx_tls_set && !a.netns) a.ucx_tls = "posix,cma,self";
  if (a.local > 0 && a.capacity_bytes == 0) a.capacity_bytes = trace ? (1ull << 30) : (2ull << 30);
  return a;
}

// A namespace whose blocks are exactly `bytes` long: 1 KiB per token (fp16,
// 2 layers x 2 KV heads x 64 dims) when that divides, else 4 B per token.
absl::StatusOr<NamespaceSpec> SpecFor(size_t bytes) {
  NamespaceSpec s;
  s.model_id = "kvf-bench";
  if (bytes % 1024 == 0 && bytes / 1024 <= KvLayout::kMaxBlockTokens) {
    s.layout = KvLayout{.num_layers = 2, .num_kv_heads = 2, .head_dim = 64,
                        .block_tokens = static_cast<uint32_t>(bytes / 1024), .dtype = DType::kFp16};
  } else if (bytes % 4 == 0 && bytes > 0 && bytes / 4 <= KvLayout::kMaxBlockTokens) {
    s.layout = KvLayout{.num_layers = 1, .num_kv_heads = 1, .head_dim = 1,
                        .block_tokens = static_cast<uint32_t>(bytes / 4), .dtype = DType::kFp16};
  } else {
    return absl::InvalidArgumentError(absl::StrCat(
        "--block_bytes ", bytes, ": use a multiple of 1 KiB (up to 64 MiB) or of 4 B (up to 256 KiB)"));
  }
  return s;
}

std::string OpRow(const std::string& who, const char* op, const OpStats& s, double secs) {
  const LatencySummary l = Summarize(s.latency_us);
  return absl::StrFormat("  %-10s %-5s %10.0f %10.0f %8.2f %9.0f %9.0f %9.0f %8u\n", who, op,
                         s.calls / secs, s.blocks / secs, s.bytes / secs / 1e9, l.p50_us, l.p90_us,
                         l.p99_us, s.failed_blocks);
}

std::string OpJson(const OpStats& s, double secs) {
  const LatencySummary l = Summarize(s.latency_us);
  return absl::StrCat("{\"calls\":", s.calls, ",\"blocks\":", s.blocks, ",\"failed_blocks\":", s.failed_blocks,
                      ",\"bytes\":", s.bytes, ",\"calls_per_s\":", s.calls / secs,
                      ",\"blocks_per_s\":", s.blocks / secs, ",\"gbps\":", s.bytes / secs / 1e9,
                      ",\"p50_us\":", l.p50_us, ",\"p90_us\":", l.p90_us, ",\"p99_us\":", l.p99_us,
                      ",\"mean_us\":", l.mean_us, "}");
}

std::string BalanceText(const Balance& b, std::string* json) {
  std::string out = absl::StrFormat("per-node balance (from %s%s)\n  %-6s %-22s %10s %12s %7s\n", b.source,
                                    b.source == "lookup" ? ", sampled chains, replicas counted" : "",
                                    "node", "agent", "blocks", "bytes", "share");
  uint64_t total = 0;
  for (const NodeLoad& n : b.nodes) total += n.blocks;
  absl::StrAppend(json, "\"balance\":{\"source\":\"", b.source, "\",\"skew\":", b.Skew(), ",\"nodes\":[");
  for (size_t i = 0; i < b.nodes.size(); ++i) {
    const NodeLoad& n = b.nodes[i];
    absl::StrAppend(&out, absl::StrFormat("  %-6s %-22s %10u %12s %6.1f%%\n",
                                          n.node == kNoNode ? "?" : std::to_string(n.node), n.where, n.blocks,
                                          HumanBytes(n.bytes), total ? 100.0 * n.blocks / total : 0.0));
    absl::StrAppend(json, i ? "," : "", "{\"node\":", n.node == kNoNode ? -1 : static_cast<int64_t>(n.node),
                    ",\"blocks\":", n.blocks, ",\"bytes\":", n.bytes, "}");
  }
  absl::StrAppend(&out, absl::StrFormat("  skew (max/mean blocks): %.2f\n", b.Skew()));
  absl::StrAppend(json, "]}");
  return out;
}

int Main(int argc, char** argv) {
  auto parsed = Parse(argc, argv);
  if (!parsed.ok()) {
    if (!absl::IsCancelled(parsed.status())) {
      std::fprintf(stderr, "kvf-bench: %s\n", std::string(parsed.status().message()).c_str());
    }
    std::fprintf(stderr, "%s", kUsage);
    return absl::IsCancelled(parsed.status()) ? 0 : 2;
  }
  Args& a = *parsed;
  const bool trace_mode = a.mode == "trace";
  const uint64_t key_tag =
      a.key_seed ? *a.key_seed : static_cast<uint64_t>(absl::ToUnixNanos(absl::Now())) | 1;

  // Load the trace first: a bad file should not cost a cluster start.
  replay::Trace trace;
  if (trace_mode) {
    auto t = replay::LoadTrace(a.trace_file);
    if (!t.ok()) {
      std::fprintf(stderr, "kvf-bench: %s\n", t.status().ToString().c_str());
      return 1;
    }
    trace = std::move(*t);
  }
  auto spec = SpecFor(a.block_bytes);
  if (spec.ok()) spec->segment_blocks = a.segment_blocks;
  if (!spec.ok()) {
    std::fprintf(stderr, "kvf-bench: %s\n", std::string(spec.status().message()).c_str());
    return 2;
  }
  if (a.has_tenant) spec->tenant = a.tenant;

  // ---- Cluster -----------------------------------------------------------
  // Declared first, so the namespaces go last: after the clients, the
  // cluster and the peers, on every return below.
  std::unique_ptr<BenchHosts> hosts;
  if (a.netns) {
    // Before any thread is started: they all belong on the client's host.
    auto h = BenchHosts::Enter(a.local);
    if (!h.ok()) {
      std::fprintf(stderr, "kvf-bench: --netns: %s\n", h.status().ToString().c_str());
      return 1;
    }
    hosts = std::move(*h);
  }
  std::unique_ptr<launch::LocalCluster> cluster;
  std::string cluster_desc;
  if (a.local > 0) {
    launch::LocalClusterOptions co;
    co.agents = a.local;
    co.replication = a.replication;
    if (hosts) hosts->Place(&co);
    co.ucx_tls = a.ucx_tls;
    // Whole MiB per agent: kvf-agent crashes on a --host_bytes that is not
    // page-aligned (seen with 2 GiB / 3).
    co.host_bytes = std::max<uint64_t>(1, a.capacity_bytes / a.local >> 20) << 20;
    co.extra_agent_flags = a.agent_flags;
    co.extra_coordinator_flags = a.coordinator_flags;
    auto c = launch::LocalCluster::Start(co);
    if (!c.ok()) {
      std::fprintf(stderr, "kvf-bench: local cluster: %s\n", c.status().ToString().c_str());
      return 1;
    }
    cluster = std::move(*c);
    a.coordinator = cluster->coordinator();
    a.token = cluster->token();
    a.agent_http.clear();
    for (const auto& agent : cluster->agents()) a.agent_http.push_back(agent.http);
    cluster_desc = absl::StrCat("local, ", a.local, " agents, R=", a.replication, ", capacity ",
                                HumanBytes(a.capacity_bytes), " (", HumanBytes(co.host_bytes), " each)");
    for (const std::string& f : a.agent_flags) absl::StrAppend(&cluster_desc, " agent ", f);
    for (const std::string& f : a.coordinator_flags) absl::StrAppend(&cluster_desc, " coordinator ", f);
    absl::StrAppend(&cluster_desc, ", UCX_TLS=", a.ucx_tls);
    if (hosts) absl::StrAppend(&cluster_desc, "; ", hosts->Describe());
  } else {
    cluster_desc = absl::StrCat("coordinator ", a.coordinator);
  }
  // Agents populate their arenas in the background at start-up (docs/agent.md,
  // "Arena prefault"): wait for that, so the timed phase measures puts into a
  // prepared arena, and report what it cost on a line of its own.
  std::string prefault_line, prefault_json = "null";
  if (!a.agent_http.empty()) {
    auto p = WaitForArenaPrefault(a.agent_http, kPrefaultTimeout);
    if (p.ok()) {
      prefault_line = ArenaPrefaultText(*p);
      prefault_json = ArenaPrefaultJson(*p);
    } else {
      prefault_line = absl::StrCat("arena prefault: unknown (", p.status().message(), ")");
    }
  }
  auto print_prefault = [&] {
    if (!prefault_line.empty()) std::printf("%s\n", prefault_line.c_str());
    std::fflush(stdout);
  };
  std::string credential = a.token;
  if (a.has_tenant) {
    auto c = TenantCredential(a.token, a.tenant);
    if (!c.ok()) {
      std::fprintf(stderr, "kvf-bench: --tenant: %s\n", std::string(c.status().message()).c_str());
      return 2;
    }
    credential = *c;
  }
  std::vector<std::unique_ptr<Client>> owned;
  std::vector<Client*> clients;
  for (int i = 0; i < a.clients; ++i) {
    ClientOptions o;
    o.coordinator = a.coordinator;
    o.token = credential;
    o.ucx_tls = a.ucx_tls;
    o.name = absl::StrCat("kvf-bench-", i);
    auto c = Client::Connect(o);
    if (!c.ok()) {
      std::fprintf(stderr, "kvf-bench: client %d: %s\n", i, c.status().ToString().c_str());
      return 1;
    }
    clients.push_back(c->get());
    owned.push_back(std::move(*c));
  }
  auto ns = clients[0]->RegisterNamespace(*spec);
  for (size_t i = 1; ns.ok() && i < clients.size(); ++i) (void)clients[i]->RegisterNamespace(*spec);
  if (!ns.ok()) {
    std::fprintf(stderr, "kvf-bench: namespace: %s\n", ns.status().ToString().c_str());
    return 1;
  }
  const size_t nodes = clients[0]->cluster_map().nodes.size();
  absl::StrAppend(&cluster_desc, a.local > 0 ? "" : absl::StrCat(", ", nodes, " nodes"));

  std::string json = absl::StrCat("{\"mode\":\"", a.mode, "\",\"block_bytes\":", a.block_bytes,
                                  ",\"clients\":", a.clients, ",\"threads\":", a.threads,
                                  ",\"load_avg_1m\":", LoadAverage(), ",\"nodes\":", nodes,
                                  ",\"arena_prefault\":", prefault_json, ",");
  std::vector<std::vector<BlockKey>> sample_chains;  // for a Lookup-based balance

  if (trace_mode) {
    // ---- Trace replay ----------------------------------------------------
    TraceOptions o;
    o.block_bytes = a.block_bytes;
    o.clients = a.clients;
    o.threads = a.threads;
    o.max_requests = a.max_requests;
    o.key_tag = key_tag;
    std::printf("kvf-bench trace %s: %zu of %zu requests, %s blocks, %d client(s) x %d thread(s); cluster: %s\n",
                a.trace_file.c_str(), a.max_requests ? std::min(a.max_requests, trace.requests.size()) : trace.requests.size(),
                trace.requests.size(), HumanBytes(a.block_bytes).c_str(), a.clients, a.threads, cluster_desc.c_str());
    print_prefault();
    auto r = RunKvfTrace(clients, *ns, trace, o);
    if (!r.ok()) {
      std::fprintf(stderr, "kvf-bench: trace: %s\n", r.status().ToString().c_str());
      return 1;
    }
    const double secs = r->seconds;
    const uint64_t moved = r->get.bytes + r->put.bytes;
    std::printf("hit rate (blocks): %.2f%% (%lu of %lu block references fetched from the cluster)\n",
                r->blocks ? 100.0 * r->hit_blocks / r->blocks : 0.0, r->hit_blocks, r->blocks);
    std::printf("bytes moved: get %s, put %s (%lu blocks put, %lu put failures, %lu get failures)\n",
                HumanBytes(r->get.bytes).c_str(), HumanBytes(r->put.bytes).c_str(), r->put.blocks,
                r->put.failed_blocks, r->get.failed_blocks);
    std::printf("throughput: %.1f requests/s, %.0f blocks/s, %.2f GB/s over %.2f s (%lu failed lookups)\n",
                r->requests / secs, r->blocks / secs, moved / secs / 1e9, secs, r->failed_requests);
    std::printf("latency per request  %9s %9s %9s %9s\n", "p50 us", "p90 us", "p99 us", "calls");
    for (const auto& [name, s] : {std::pair<const char*, const OpStats*>{"lookup", &r->lookup},
                                  {"get", &r->get}, {"put", &r->put}}) {
      const LatencySummary l = Summarize(s->latency_us);
      std::printf("  %-18s %9.0f %9.0f %9.0f %9lu\n", name, l.p50_us, l.p90_us, l.p99_us, s->calls);
    }
    absl::StrAppend(&json, "\"trace\":{\"file\":\"", a.trace_file, "\",\"requests\":", r->requests,
                    ",\"failed_requests\":", r->failed_requests, ",\"blocks\":", r->blocks,
                    ",\"hit_blocks\":", r->hit_blocks,
                    ",\"hit_rate\":", r->blocks ? static_cast<double>(r->hit_blocks) / r->blocks : 0.0,
                    ",\"seconds\":", secs, ",\"requests_per_s\":", r->requests / secs,
                    ",\"gbps\":", moved / secs / 1e9, ",\"lookup\":", OpJson(r->lookup, secs),
                    ",\"get\":", OpJson(r->get, secs), ",\"put\":", OpJson(r->put, secs), "},");
    for (size_t i = 0; i < trace.requests.size() && sample_chains.size() < 64; i += 7) {
      std::vector<BlockKey> chain;
      for (uint64_t id : trace.requests[i].hash_ids) chain.push_back(BlockKey{key_tag, id});
      if (!chain.empty()) sample_chains.push_back(std::move(chain));
    }
  } else {
    // ---- put / get / mixed, and the peers ---------------------------------
    SyntheticOptions o;
    o.mode = a.mode == "put" ? Mode::kPut : a.mode == "get" ? Mode::kGet : Mode::kMixed;
    o.read_fraction = a.read_fraction;
    o.block_bytes = a.block_bytes;
    o.batch = a.batch;
    o.clients = a.clients;
    o.threads = a.threads;
    o.keys = a.keys;
    o.seconds = a.seconds;
    o.key_tag = key_tag;
    std::printf("kvf-bench %s: %s blocks, batch %zu, %d client(s) x %d thread(s), %lu keys, %.1f s%s; cluster: %s\n",
                a.mode.c_str(), HumanBytes(a.block_bytes).c_str(), a.batch, a.clients, a.threads, a.keys,
                a.seconds, o.mode == Mode::kMixed ? absl::StrFormat(", %.0f%% reads", 100 * a.read_fraction).c_str() : "",
                cluster_desc.c_str());
    print_prefault();
    auto kvf = RunKvfSynthetic(clients, *ns, o);
    if (!kvf.ok()) {
      std::fprintf(stderr, "kvf-bench: %s: %s\n", a.mode.c_str(), kvf.status().ToString().c_str());
      return 1;
    }
    std::optional<SyntheticResult> redis;
    std::string redis_note, redis_version, redis_where;
    const bool want_redis = a.compare_redis.value_or(true);
    if (want_redis) {
      RedisServerOptions ro;
      ro.io_threads = a.redis_io_threads;
      if (hosts) {
        ro.host = hosts->peer_address();
        ro.netns = hosts->peer_netns();
      }
      auto server = RedisServer::Start(ro);
      if (!server.ok()) {
        redis_note = absl::StrCat("Redis comparison skipped: ", server.status().message());
      } else {
        redis_version = (*server)->version();
        redis_where = (*server)->host();
        auto r = RunRedisSynthetic((*server)->host(), (*server)->port(), o);
        if (r.ok()) {
          redis = std::move(*r);
        } else {
          redis_note = absl::StrCat("Redis comparison failed: ", r.status().ToString());
        }
      }  // the server is killed here
    } else {
      redis_note = "Redis comparison off (--no-compare-redis)";
    }
    double perftest_gbps = 0;
    std::string perftest_note;
    // Between hosts the reference is two-sided (tag_bw): what the same TCP
    // path carries, whichever way the bytes go.
    const char* perftest_test = o.mode == Mode::kMixed ? nullptr
                                : hosts                ? "tag_bw"
                                : o.mode == Mode::kPut ? "ucp_put_bw"
                                                       : "ucp_get";
    if (perftest_test != nullptr && a.compare_perftest.value_or(a.local > 0)) {
      PerftestOptions po;
      po.tls = a.ucx_tls.empty() ? "posix,cma,self" : a.ucx_tls;
      po.test = perftest_test;
      po.size = a.block_bytes;
      po.outstanding = 16;
      po.iters = 2000;
      if (hosts) {
        // Agent 0's host serves; this process's host (the client's) sends.
        po.server_netns = hosts->agent_netns(0);
        po.server_address = hosts->agent_address(0);
        po.iters = static_cast<int>(std::clamp<size_t>((2ull << 30) / a.block_bytes, 200, 20000));
        perftest_note = ", server on agent 0's host, client on this one";
      }
      const PerftestResult r = RunPerftest(po);
      perftest_gbps = r.mbps / 1e3;
      if (perftest_gbps <= 0) std::fprintf(stderr, "kvf-bench: ucx_perftest: %s\n", r.error.c_str());
    }

    std::printf("  %-10s %-5s %10s %10s %8s %9s %9s %9s %8s\n", "system", "op", "calls/s", "blocks/s", "GB/s",
                "p50 us", "p90 us", "p99 us", "failed");
    absl::StrAppend(&json, "\"batch\":", a.batch, ",\"keys\":", a.keys, ",\"seconds\":", kvf->seconds,
                    ",\"kvfabric\":{");
    bool first = true;
    for (const auto& [op, s] : {std::pair<const char*, const OpStats*>{"get", &kvf->get}, {"put", &kvf->put}}) {
      if (s->calls == 0) continue;
      std::printf("%s", OpRow("kvfabric", op, *s, kvf->seconds).c_str());
      absl::StrAppend(&json, first ? "" : ",", "\"", op, "\":", OpJson(*s, kvf->seconds));
      first = false;
    }
    absl::StrAppend(&json, "}");
    if (redis) {
      absl::StrAppend(&json, ",\"redis\":{\"version\":\"", redis_version, "\"");
      for (const auto& [op, s] : {std::pair<const char*, const OpStats*>{"get", &redis->get}, {"put", &redis->put}}) {
        if (s->calls == 0) continue;
        std::printf("%s", OpRow("redis", op, *s, redis->seconds).c_str());
        absl::StrAppend(&json, ",\"", op, "\":", OpJson(*s, redis->seconds));
      }
      absl::StrAppend(&json, "},\"ratio\":{");
      first = true;
      for (const auto& [op, k, r] : {std::tuple<const char*, const OpStats*, const OpStats*>{"get", &kvf->get, &redis->get},
                                     {"put", &kvf->put, &redis->put}}) {
        if (k->calls == 0 || r->blocks == 0) continue;
        const double ratio = (k->blocks / kvf->seconds) / (r->blocks / redis->seconds);
        std::printf("  ratio kvfabric/redis %s throughput: %.2fx\n", op, ratio);
        absl::StrAppend(&json, first ? "" : ",", "\"", op, "\":", ratio);
        first = false;
      }
      absl::StrAppend(&json, "}");
      std::printf("  redis: %s on %s (TCP%s), %d connections, %zu commands pipelined per call, io-threads %d\n",
                  redis_version.c_str(), redis_where.c_str(), hosts ? ", a host of its own" : "",
                  a.clients * a.threads, a.batch, a.redis_io_threads);
    } else {
      std::printf("  %s\n", redis_note.c_str());
      absl::StrAppend(&json, ",\"redis_skipped\":\"", redis_note, "\"");
    }
    double perftest_ratio = 0;
    if (perftest_gbps > 0) {
      const OpStats& s = o.mode == Mode::kPut ? kvf->put : kvf->get;
      perftest_ratio = s.bytes / kvf->seconds / 1e9 / perftest_gbps;
      std::printf("  ucx_perftest %s, %s, 16 outstanding, UCX_TLS=%s%s: %.2f GB/s\n", perftest_test,
                  HumanBytes(a.block_bytes).c_str(), a.ucx_tls.c_str(), perftest_note.c_str(), perftest_gbps);
      std::printf("  ratio kvfabric/ucx_perftest %s %s throughput: %.2fx\n", perftest_test,
                  o.mode == Mode::kPut ? "put" : "get", perftest_ratio);
    }
    absl::StrAppend(&json, ",\"perftest_test\":\"", perftest_test ? perftest_test : "",
                    "\",\"perftest_gbps\":", perftest_gbps, ",\"perftest_ratio\":", perftest_ratio,
                    ",\"netns\":", hosts ? "true" : "false", ",");
    if (o.mode != Mode::kPut) {
      for (uint64_t c = 0; c < std::min<uint64_t>(64, a.keys / a.batch); ++c) {
        std::vector<BlockKey> chain;
        for (size_t j = 0; j < a.batch; ++j) chain.push_back(BlockKey{key_tag, c * a.batch + j + 1});
        sample_chains.push_back(std::move(chain));
      }
    }
  }

  // ---- Per-node balance ----------------------------------------------------
  absl::StatusOr<Balance> balance = absl::UnavailableError("no agent addresses and no sampled chains");
  if (!a.agent_http.empty()) {
    std::vector<NodeId> ids;
    if (cluster) {
      for (const auto& agent : cluster->agents()) ids.push_back(agent.node);
    }
    balance = BalanceFromMetrics(a.agent_http, ids);
  } else if (!sample_chains.empty()) {
    balance = BalanceFromLookups(*clients[0], *ns, sample_chains);
  }
  if (balance.ok()) {
    std::printf("%s", BalanceText(*balance, &json).c_str());
  } else {
    std::printf("per-node balance: unknown (%s)\n", std::string(balance.status().message()).c_str());
    absl::StrAppend(&json, "\"balance\":null");
  }
  absl::StrAppend(&json, ",\"load_avg_1m_end\":", LoadAverage(), "}");
  std::printf("load average (1 min): %.2f\n", LoadAverage());
  if (!a.json.empty()) {
    std::ofstream f(a.json);
    f << json << "\n";
    if (!f) {
      std::fprintf(stderr, "kvf-bench: cannot write %s\n", a.json.c_str());
      return 1;
    }
  }
  owned.clear();    // clients before the cluster they talk to
  cluster.reset();  // kills the local cluster
  hosts.reset();    // then its namespaces (--netns)
  return 0;
}

}  // namespace
}  // namespace kvf::bench

int main(int argc, char** argv) {
  // Keep the client's INFO lines out of the table unless asked for.
  setenv("KVF_LOG_LEVEL", "WARNING", /*overwrite=*/0);
  kvf::ConfigureProcessForServing();
  return kvf::bench::Main(argc, argv);
}
