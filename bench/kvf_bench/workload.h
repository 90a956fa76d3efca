// kvf-bench's workloads: timed put / get / mixed traffic against kvfabric (one
// or more kvf::Client instances, several threads each) or against Redis (one
// RESP connection per thread), and the replay of a hash_ids request trace.
// Each returns what it measured; printing is the caller's (main.cc).
#ifndef KVF_BENCH_KVF_BENCH_WORKLOAD_H_
#define KVF_BENCH_KVF_BENCH_WORKLOAD_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "bench/replay/trace.h"
#include "client/client.h"

namespace kvf::bench {

struct LatencySummary {
  uint64_t count = 0;
  double mean_us = 0, p50_us = 0, p90_us = 0, p99_us = 0;
};
LatencySummary Summarize(std::vector<double> us);

// One kind of call (lookup, get or put): what it moved and how long each
// call took.
struct OpStats {
  uint64_t calls = 0;
  uint64_t blocks = 0;         // blocks the calls succeeded on
  uint64_t failed_blocks = 0;  // blocks that came back with an error
  uint64_t bytes = 0;          // payload bytes of the successful blocks
  std::vector<double> latency_us;  // one per call
  void Merge(const OpStats& other);
};

enum class Mode { kPut, kGet, kMixed };
const char* ModeName(Mode mode);

struct SyntheticOptions {
  Mode mode = Mode::kGet;
  double read_fraction = 0.5;  // kMixed: the share of calls that are gets
  size_t block_bytes = 256 * 1024;
  size_t batch = 1;     // blocks per call (kvfabric BatchGet/BatchPut; Redis pipeline depth)
  int clients = 4;      // kvf::Client instances (Redis: ignored; see threads)
  int threads = 4;      // per client; Redis gets clients x threads connections
  uint64_t keys = 1024;  // blocks in the key space gets read from
  double seconds = 5;
  uint64_t key_tag = 1;  // distinguishes this run's keys from earlier runs'
};

struct SyntheticResult {
  double seconds = 0;  // the timed phase, wall clock
  OpStats get, put;
};

// Gets read blocks of a key space written beforehand (keys / batch chains of
// `batch` blocks); puts write fresh blocks each call, since KV blocks are
// immutable (re-putting one is a no-op). `clients` are shared by
// options.threads threads each.
absl::StatusOr<SyntheticResult> RunKvfSynthetic(absl::Span<Client* const> clients,
                                                const Namespace& ns,
                                                const SyntheticOptions& options);

// The same traffic against Redis at `host`:`port`: clients x threads
// connections, `batch` commands pipelined per call. Puts SET keys of the key
// space (Redis overwrites in place; fresh keys would grow it without bound).
absl::StatusOr<SyntheticResult> RunRedisSynthetic(const std::string& host, int port,
                                                  const SyntheticOptions& options);

struct TraceOptions {
  size_t block_bytes = 64 * 1024;
  int clients = 1;
  int threads = 1;           // per client; requests are handed out in trace order
  size_t max_requests = 0;   // 0: all
  uint64_t key_tag = 1;      // BlockKey.hi of every block; lo is the hash id
};

struct TraceResult {
  double seconds = 0;
  uint64_t requests = 0;
  uint64_t failed_requests = 0;  // a lookup that failed outright
  uint64_t blocks = 0;           // block references replayed
  uint64_t hit_blocks = 0;       // fetched from the cluster
  OpStats lookup, get, put;      // per request: one Lookup, one BatchGet, one BatchPut
};

// Replays `trace`: per request, maps hash_ids[i] to BlockKey{key_tag,
// hash_ids[i]} (ids are prefix-chained, so equal prefixes give equal keys),
// looks up the longest cached prefix, BatchGets it and BatchPuts the rest.
absl::StatusOr<TraceResult> RunKvfTrace(absl::Span<Client* const> clients, const Namespace& ns,
                                        const replay::Trace& trace, const TraceOptions& options);

}  // namespace kvf::bench

#endif  // KVF_BENCH_KVF_BENCH_WORKLOAD_H_
