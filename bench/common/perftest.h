// Runs ucx_perftest (UCX's own benchmark, Debian's ucx-utils) as the peer
// number benchmarks are compared with, in the same run and on the same host.
#ifndef KVF_BENCH_COMMON_PERFTEST_H_
#define KVF_BENCH_COMMON_PERFTEST_H_

#include <cstddef>
#include <string>
#include <utility>

namespace kvf::bench {

// One ucx_perftest server/client pair on loopback with UCX_TLS=`tls`.
// Returns {overall MB/s (10^6 bytes), average latency in µs}, or {0, 0} when
// ucx_perftest is missing or fails.
std::pair<double, double> Perftest(const std::string& tls, const std::string& test, size_t size,
                                   int outstanding, int iters);

}  // namespace kvf::bench

#endif  // KVF_BENCH_COMMON_PERFTEST_H_
