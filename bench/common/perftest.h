// Runs ucx_perftest (UCX's own benchmark, Debian's ucx-utils) as the peer
// number benchmarks are compared with, in the same run: a server child and a
// client child, on loopback or (server_netns) across network namespaces.
#ifndef KVF_BENCH_COMMON_PERFTEST_H_
#define KVF_BENCH_COMMON_PERFTEST_H_

#include <cstddef>
#include <string>
#include <utility>

namespace kvf::bench {

struct PerftestOptions {
  std::string tls;   // UCX_TLS for both sides (for UCP tests this is -x's job)
  std::string test;  // -t: ucp_get, ucp_put_bw, tag_bw, tag_lat, ...
  size_t size = 256 * 1024;
  int outstanding = 1;  // -O, when > 1
  int iters = 2000;
  // Where the server runs: a network namespace (a name under /var/run/netns;
  // empty: this process's) and the address the client dials. The client
  // always runs in this process's namespace.
  std::string server_netns;
  std::string server_address = "127.0.0.1";
};

struct PerftestResult {
  double mbps = 0;        // overall MB/s (10^6 bytes); 0 on failure
  double latency_us = 0;  // average
  std::string error;      // why there is no figure, when mbps is 0
};

// Starts the server, retries the client until the server listens (5 s),
// parses the client's final line. The server is killed if it outlives the
// client by 5 s. Blocks for the test's duration.
PerftestResult RunPerftest(const PerftestOptions& options);

// RunPerftest on loopback with UCX_TLS=`tls`. Returns {MB/s, average latency
// in µs}, or {0, 0} when ucx_perftest is missing or fails.
std::pair<double, double> Perftest(const std::string& tls, const std::string& test, size_t size,
                                   int outstanding, int iters);

}  // namespace kvf::bench

#endif  // KVF_BENCH_COMMON_PERFTEST_H_
