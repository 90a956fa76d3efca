#include "bench/kvf_bench/workload.h"

#include <algorithm>
#include <atomic>
#include <functional>
#include <memory>
#include <random>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "bench/kvf_bench/redis_peer.h"
#include "common/status_macros.h"

namespace kvf::bench {
namespace {

double Pick(const std::vector<double>& sorted, double q) {
  if (sorted.empty()) return 0;
  return sorted[std::min(sorted.size() - 1, static_cast<size_t>(q * (sorted.size() - 1) + 0.5))];
}

// Runs body(worker) on `n` threads at once and returns when all are done. The
// first error any of them returns is the result.
absl::Status RunThreads(int n, const std::function<absl::Status(int)>& body) {
  absl::Mutex mu;
  absl::Status first;
  std::vector<std::thread> pool;
  for (int w = 0; w < n; ++w) {
    pool.emplace_back([&, w] {
      absl::Status s = body(w);
      absl::MutexLock l(&mu);
      if (first.ok() && !s.ok()) first = s;
    });
  }
  for (auto& t : pool) t.join();
  return first;
}

// The timed phase of a synthetic run: the clock starts once every worker
// has called Ready() (set-up done), and stopped() turns true `seconds` later.
class PhaseClock {
 public:
  PhaseClock(int workers, double seconds)
      : workers_(workers), seconds_(seconds), thread_([this] { Run(); }) {}
  ~PhaseClock() {
    if (thread_.joinable()) thread_.join();
  }
  void Ready() {
    absl::MutexLock l(&mu_);
    ++ready_;
  }
  bool stopped() const { return stop_.load(std::memory_order_relaxed); }
  // Seconds from the start until now; call after the workers are done.
  double Elapsed() {
    thread_.join();
    return absl::ToDoubleSeconds(absl::Now() - start_);
  }

 private:
  void Run() {
    {
      absl::MutexLock l(&mu_);
      mu_.Await(absl::Condition(
          +[](PhaseClock* c) ABSL_EXCLUSIVE_LOCKS_REQUIRED(c->mu_) { return c->ready_ >= c->workers_; },
          this));
    }
    start_ = absl::Now();
    absl::SleepFor(absl::Seconds(seconds_));
    stop_ = true;
  }

  const int workers_;
  const double seconds_;
  absl::Mutex mu_;
  int ready_ ABSL_GUARDED_BY(mu_) = 0;
  std::atomic<bool> stop_{false};
  absl::Time start_;  // written by the clock thread before stop_, read after join
  std::thread thread_;
};

std::vector<BlockKey> ChainOf(uint64_t tag, uint64_t first, size_t n) {
  std::vector<BlockKey> chain(n);
  for (size_t j = 0; j < n; ++j) chain[j] = BlockKey{tag, first + j + 1};
  return chain;
}

std::string RedisKey(uint64_t tag, uint64_t i) { return absl::StrCat("kvf-bench:", tag, ":", i); }

void Record(OpStats& s, size_t ok, size_t failed, size_t bytes, absl::Time start) {
  s.calls++;
  s.blocks += ok;
  s.failed_blocks += failed;
  s.bytes += bytes;
  s.latency_us.push_back(absl::ToDoubleMicroseconds(absl::Now() - start));
}

}  // namespace

LatencySummary Summarize(std::vector<double> us) {
  LatencySummary s;
  if (us.empty()) return s;
  std::sort(us.begin(), us.end());
  s.count = us.size();
  double sum = 0;
  for (double v : us) sum += v;
  s.mean_us = sum / us.size();
  s.p50_us = Pick(us, 0.5);
  s.p90_us = Pick(us, 0.9);
  s.p99_us = Pick(us, 0.99);
  return s;
}

void OpStats::Merge(const OpStats& o) {
  calls += o.calls;
  blocks += o.blocks;
  failed_blocks += o.failed_blocks;
  bytes += o.bytes;
  latency_us.insert(latency_us.end(), o.latency_us.begin(), o.latency_us.end());
}

const char* ModeName(Mode mode) {
  switch (mode) {
    case Mode::kPut: return "put";
    case Mode::kGet: return "get";
    case Mode::kMixed: return "mixed";
  }
  return "?";
}

absl::StatusOr<SyntheticResult> RunKvfSynthetic(absl::Span<Client* const> clients,
                                                const Namespace& ns,
                                                const SyntheticOptions& o) {
  const size_t batch = std::max<size_t>(1, o.batch);
  const uint64_t chains = std::max<uint64_t>(1, o.keys / batch);
  const int workers = static_cast<int>(clients.size()) * o.threads;
  // Key space: chain c holds blocks {key_tag, c*batch + 1 ...}. Fresh puts use
  // a tag per worker so no two workers ever write the same key.
  if (o.mode != Mode::kPut) {
    std::vector<uint8_t> fill(o.block_bytes, 0x5a);
    std::vector<ConstBlockBuffer> src(batch, ConstBlockBuffer{fill.data(), fill.size()});
    KVF_RETURN_IF_ERROR(RunThreads(workers, [&](int w) -> absl::Status {
      Client& c = *clients[w / o.threads];
      for (uint64_t ch = w; ch < chains; ch += workers) {
        auto r = c.BatchPut(ns, ChainOf(o.key_tag, ch * batch, batch), 0, src);
        if (!r.ok()) return r.status();
        if (!r->all_ok()) return absl::Status(r->FirstError().code(),
                                              absl::StrCat("prefill: ", r->FirstError().message()));
      }
      return absl::OkStatus();
    }));
  }
  std::vector<OpStats> gets(workers), puts(workers);
  PhaseClock clock(workers, o.seconds);
  absl::Status s = RunThreads(workers, [&](int w) -> absl::Status {
    Client& c = *clients[w / o.threads];
    std::mt19937_64 rng(1000 + w);
    std::vector<std::vector<uint8_t>> bufs(batch, std::vector<uint8_t>(o.block_bytes, static_cast<uint8_t>(w)));
    std::vector<ConstBlockBuffer> src;
    std::vector<BlockBuffer> dst;
    for (auto& b : bufs) {
      src.push_back({b.data(), b.size()});
      dst.push_back({b.data(), b.size()});
    }
    const uint64_t put_tag = o.key_tag ^ (static_cast<uint64_t>(w + 1) << 48);
    uint64_t next_put = 0;
    std::uniform_real_distribution<double> coin(0, 1);
    clock.Ready();
    while (!clock.stopped()) {
      const bool get = o.mode == Mode::kGet || (o.mode == Mode::kMixed && coin(rng) < o.read_fraction);
      const absl::Time t = absl::Now();
      if (get) {
        const auto chain = ChainOf(o.key_tag, (rng() % chains) * batch, batch);
        auto r = c.BatchGet(ns, chain, 0, dst);
        size_t ok = 0, bytes = 0;
        if (r.ok()) {
          for (const BlockResult& b : r->blocks) {
            if (b.status.ok()) { ++ok; bytes += b.size; }
          }
        }
        Record(gets[w], ok, batch - ok, bytes, t);
      } else {
        const auto chain = ChainOf(put_tag, next_put, batch);
        next_put += batch;
        auto r = c.BatchPut(ns, chain, 0, src);
        const size_t ok = r.ok() ? r->ok_count() : 0;
        Record(puts[w], ok, batch - ok, ok * o.block_bytes, t);
      }
    }
    return absl::OkStatus();
  });
  SyntheticResult result;
  result.seconds = clock.Elapsed();
  for (int w = 0; w < workers; ++w) {
    result.get.Merge(gets[w]);
    result.put.Merge(puts[w]);
  }
  KVF_RETURN_IF_ERROR(s);
  return result;
}

absl::StatusOr<SyntheticResult> RunRedisSynthetic(const std::string& host, int port,
                                                  const SyntheticOptions& o) {
  const size_t batch = std::max<size_t>(1, o.batch);
  const uint64_t chains = std::max<uint64_t>(1, o.keys / batch);
  const int workers = o.clients * o.threads;
  std::vector<std::unique_ptr<RespConnection>> conns(workers);
  for (auto& c : conns) {
    KVF_ASSIGN_OR_RETURN(c, RespConnection::Connect(host, port));
  }
  auto keys_of = [&](uint64_t chain) {
    std::vector<std::string> keys(batch);
    for (size_t j = 0; j < batch; ++j) keys[j] = RedisKey(o.key_tag, chain * batch + j);
    return keys;
  };
  {  // Prefill the key space (puts overwrite it; gets read it).
    std::vector<uint8_t> fill(o.block_bytes, 0x5a);
    std::vector<std::pair<const void*, size_t>> vals(batch, {fill.data(), fill.size()});
    KVF_RETURN_IF_ERROR(RunThreads(workers, [&](int w) -> absl::Status {
      for (uint64_t ch = w; ch < chains; ch += workers) {
        KVF_RETURN_IF_ERROR(conns[w]->PipelinedSet(keys_of(ch), vals));
      }
      return absl::OkStatus();
    }));
  }
  std::vector<OpStats> gets(workers), puts(workers);
  PhaseClock clock(workers, o.seconds);
  absl::Status s = RunThreads(workers, [&](int w) -> absl::Status {
    RespConnection& c = *conns[w];
    std::mt19937_64 rng(1000 + w);
    std::vector<std::vector<uint8_t>> bufs(batch, std::vector<uint8_t>(o.block_bytes, static_cast<uint8_t>(w)));
    std::vector<void*> dst;
    std::vector<size_t> caps(batch, o.block_bytes), sizes;
    std::vector<std::pair<const void*, size_t>> vals;
    for (auto& b : bufs) {
      dst.push_back(b.data());
      vals.push_back({b.data(), b.size()});
    }
    std::uniform_real_distribution<double> coin(0, 1);
    absl::Status first;
    clock.Ready();
    while (!clock.stopped()) {
      const bool get = o.mode == Mode::kGet || (o.mode == Mode::kMixed && coin(rng) < o.read_fraction);
      const auto keys = keys_of(rng() % chains);
      const absl::Time t = absl::Now();
      if (get) {
        absl::Status r = c.PipelinedGet(keys, dst, caps, &sizes);
        size_t ok = 0, bytes = 0;
        for (size_t n : sizes) {
          if (n > 0) { ++ok; bytes += n; }
        }
        Record(gets[w], ok, batch - ok, bytes, t);
        if (!r.ok() && first.ok()) first = r;
      } else {
        absl::Status r = c.PipelinedSet(keys, vals);
        const size_t ok = r.ok() ? batch : 0;
        Record(puts[w], ok, batch - ok, ok * o.block_bytes, t);
        if (!r.ok() && first.ok()) first = r;
      }
      if (absl::IsUnavailable(first)) return first;  // the connection is gone
    }
    return absl::OkStatus();
  });
  SyntheticResult result;
  result.seconds = clock.Elapsed();
  for (int w = 0; w < workers; ++w) {
    result.get.Merge(gets[w]);
    result.put.Merge(puts[w]);
  }
  KVF_RETURN_IF_ERROR(s);
  return result;
}

absl::StatusOr<TraceResult> RunKvfTrace(absl::Span<Client* const> clients, const Namespace& ns,
                                        const replay::Trace& trace, const TraceOptions& o) {
  size_t n = trace.requests.size();
  if (o.max_requests > 0) n = std::min(n, o.max_requests);
  const int workers = static_cast<int>(clients.size()) * std::max(1, o.threads);
  std::atomic<size_t> next{0};
  std::vector<TraceResult> per(workers);
  const absl::Time start = absl::Now();
  absl::Status s = RunThreads(workers, [&](int w) -> absl::Status {
    Client& c = *clients[w / std::max(1, o.threads)];
    TraceResult& r = per[w];
    std::vector<std::vector<uint8_t>> bufs;
    std::vector<BlockKey> chain;
    for (size_t i = next++; i < n; i = next++) {
      const replay::TraceRequest& req = trace.requests[i];
      if (req.hash_ids.empty()) continue;
      chain.resize(req.hash_ids.size());
      for (size_t j = 0; j < chain.size(); ++j) chain[j] = BlockKey{o.key_tag, req.hash_ids[j]};
      while (bufs.size() < chain.size()) bufs.emplace_back(o.block_bytes, static_cast<uint8_t>(bufs.size()));
      r.requests++;
      r.blocks += chain.size();

      absl::Time t = absl::Now();
      auto l = c.Lookup(ns, chain);
      if (!l.ok()) {
        r.failed_requests++;
        continue;
      }
      Record(r.lookup, l->prefix, 0, 0, t);

      // The cached prefix, fetched; a block that fails (evicted meanwhile)
      // ends the usable prefix, like an engine that recomputes from there.
      size_t usable = 0;
      if (l->prefix > 0) {
        std::vector<BlockBuffer> dst;
        for (size_t j = 0; j < l->prefix; ++j) dst.push_back({bufs[j].data(), bufs[j].size()});
        t = absl::Now();
        auto g = c.BatchGet(ns, chain, 0, dst);
        size_t ok = 0, bytes = 0;
        if (g.ok()) {
          for (const BlockResult& b : g->blocks) {
            if (!b.status.ok()) break;
            ++ok;
            bytes += b.size;
          }
        }
        Record(r.get, ok, l->prefix - ok, bytes, t);
        usable = ok;
      }
      r.hit_blocks += usable;

      // The rest, computed by the engine and stored.
      if (usable < chain.size()) {
        std::vector<ConstBlockBuffer> src;
        for (size_t j = usable; j < chain.size(); ++j) src.push_back({bufs[j].data(), bufs[j].size()});
        t = absl::Now();
        auto p = c.BatchPut(ns, chain, usable, src);
        const size_t ok = p.ok() ? p->ok_count() : 0;
        Record(r.put, ok, src.size() - ok, ok * o.block_bytes, t);
      }
    }
    return absl::OkStatus();
  });
  TraceResult total;
  total.seconds = absl::ToDoubleSeconds(absl::Now() - start);
  for (const TraceResult& r : per) {
    total.requests += r.requests;
    total.failed_requests += r.failed_requests;
    total.blocks += r.blocks;
    total.hit_blocks += r.hit_blocks;
    total.lookup.Merge(r.lookup);
    total.get.Merge(r.get);
    total.put.Merge(r.put);
  }
  KVF_RETURN_IF_ERROR(s);
  return total;
}

}  // namespace kvf::bench
