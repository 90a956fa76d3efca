// MemoryPressure: shrinks the shard store's usable memory in steps while the
// machine (or the agent's cgroup) runs short, and grows it back after
// (docs/agent.md, "Memory pressure").
#ifndef KVF_NODE_AGENT_MEMORY_PRESSURE_H_
#define KVF_NODE_AGENT_MEMORY_PRESSURE_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace kvf {

// How much memory the agent may use and how much is used, from one source.
struct MemorySample {
  uint64_t limit_bytes = 0;  // cgroup memory.max, or MemTotal
  uint64_t used_bytes = 0;   // cgroup memory.current, or MemTotal - MemAvailable
  std::string source;        // "cgroup" or "meminfo", for the log
};

// Where samples come from; a test injects a fake. Read is called from one
// thread at a time.
class MemorySource {
 public:
  virtual ~MemorySource() = default;
  virtual absl::StatusOr<MemorySample> Read() = 0;
};

// cgroup v2 (memory.max and memory.current of this process's cgroup) when a
// limit is set there; /proc/meminfo (MemTotal, MemAvailable) otherwise.
// `root` replaces "/" for both trees (tests).
std::unique_ptr<MemorySource> SystemMemorySource(std::string root = "");

struct MemoryPressureOptions {
  // Used fraction at or above which the limit shrinks a step per tick. 0: off.
  double high = 0;
  // Used fraction below which the limit grows back a step per tick (between
  // `low` and `high` it holds). 0: high - 0.1.
  double low = 0;
  // A step, as a fraction of the full memory tier.
  double step = 0.125;
  // The limit never goes below this fraction of the full memory tier.
  double floor = 0.125;
};

enum class PressureLevel { kNormal = 0, kElevated = 1, kHigh = 2 };
std::string_view PressureLevelName(PressureLevel level);

struct PressureDecision {
  PressureLevel level = PressureLevel::kNormal;
  double used_fraction = 0;
  uint64_t limit_bytes = 0;  // the store's memory limit from now on
  bool changed = false;      // limit_bytes differs from the last tick's
};

// Thread-compatible Tick (the agent's maintenance thread); the accessors are
// thread-safe (the /metrics thread reads them).
class MemoryPressure {
 public:
  // INVALID_ARGUMENT unless 0 < low < high <= 1.
  static absl::StatusOr<std::unique_ptr<MemoryPressure>> Create(
      const MemoryPressureOptions& options, uint64_t full_bytes,
      std::unique_ptr<MemorySource> source);

  // Reads a sample and decides the limit. A failed read holds the limit.
  absl::StatusOr<PressureDecision> Tick();

  PressureLevel level() const { return static_cast<PressureLevel>(level_.load()); }
  uint64_t limit_bytes() const { return limit_.load(); }
  double used_fraction() const { return used_fraction_.load(); }
  uint64_t shrinks() const { return shrinks_.load(); }
  uint64_t grows() const { return grows_.load(); }
  uint64_t full_bytes() const { return full_; }

 private:
  MemoryPressure(const MemoryPressureOptions& options, uint64_t full_bytes,
                 std::unique_ptr<MemorySource> source);

  const MemoryPressureOptions options_;
  const uint64_t full_;
  const uint64_t step_;
  const uint64_t floor_;
  std::unique_ptr<MemorySource> source_;
  std::atomic<int> level_{0};
  std::atomic<uint64_t> limit_;
  std::atomic<double> used_fraction_{0};
  std::atomic<uint64_t> shrinks_{0};
  std::atomic<uint64_t> grows_{0};
};

}  // namespace kvf

#endif  // KVF_NODE_AGENT_MEMORY_PRESSURE_H_
