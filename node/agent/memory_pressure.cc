#include "node/agent/memory_pressure.h"

#include <algorithm>
#include <fstream>
#include <optional>
#include <sstream>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace kvf {
namespace {

bool ReadFirstLine(const std::string& path, std::string* line) {
  std::ifstream in(path);
  return in && std::getline(in, *line);
}

class SystemSource final : public MemorySource {
 public:
  explicit SystemSource(std::string root) : root_(std::move(root)) {}

  absl::StatusOr<MemorySample> Read() override {
    if (std::optional<MemorySample> c = FromCgroup()) return *c;
    return FromMeminfo();
  }

 private:
  // This process's cgroup v2 directory ("0::/path" in /proc/self/cgroup).
  std::string CgroupDir() const {
    std::ifstream in(root_ + "/proc/self/cgroup");
    std::string line;
    while (std::getline(in, line)) {
      if (line.rfind("0::", 0) == 0) return root_ + "/sys/fs/cgroup" + line.substr(3);
    }
    return "";
  }

  std::optional<MemorySample> FromCgroup() const {
    const std::string dir = CgroupDir();
    if (dir.empty()) return std::nullopt;
    std::string max, current;
    uint64_t limit = 0, used = 0;
    if (!ReadFirstLine(dir + "/memory.max", &max) || !absl::SimpleAtoi(max, &limit) ||
        !ReadFirstLine(dir + "/memory.current", &current) ||
        !absl::SimpleAtoi(current, &used) || limit == 0) {
      return std::nullopt;  // no limit ("max") or no memory controller
    }
    return MemorySample{limit, used, "cgroup"};
  }

  absl::StatusOr<MemorySample> FromMeminfo() const {
    std::ifstream in(root_ + "/proc/meminfo");
    if (!in) return absl::UnavailableError("cannot read /proc/meminfo");
    std::string line;
    uint64_t total = 0, available = 0;
    bool has_total = false, has_available = false;
    while (std::getline(in, line)) {
      std::istringstream words(line);
      std::string name;
      uint64_t kib = 0;
      words >> name >> kib;
      if (name == "MemTotal:") total = kib * 1024, has_total = true;
      if (name == "MemAvailable:") available = kib * 1024, has_available = true;
    }
    if (!has_total || !has_available || total == 0) {
      return absl::UnavailableError("/proc/meminfo has no MemTotal or MemAvailable");
    }
    return MemorySample{total, total - std::min(total, available), "meminfo"};
  }

  const std::string root_;
};

}  // namespace

std::unique_ptr<MemorySource> SystemMemorySource(std::string root) {
  return std::make_unique<SystemSource>(std::move(root));
}

std::string_view PressureLevelName(PressureLevel level) {
  switch (level) {
    case PressureLevel::kNormal: return "normal";
    case PressureLevel::kElevated: return "elevated";
    case PressureLevel::kHigh: return "high";
  }
  return "unknown";
}

absl::StatusOr<std::unique_ptr<MemoryPressure>> MemoryPressure::Create(
    const MemoryPressureOptions& options, uint64_t full_bytes,
    std::unique_ptr<MemorySource> source) {
  MemoryPressureOptions o = options;
  if (o.low == 0) o.low = o.high - 0.1;
  if (!(o.high > 0 && o.high <= 1 && o.low > 0 && o.low < o.high)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "memory pressure thresholds must satisfy 0 < low < high <= 1 (low ", o.low, ", high ",
        o.high, ")"));
  }
  if (!(o.step > 0 && o.step <= 1 && o.floor >= 0 && o.floor <= 1)) {
    return absl::InvalidArgumentError("memory pressure step and floor are fractions");
  }
  return std::unique_ptr<MemoryPressure>(new MemoryPressure(o, full_bytes, std::move(source)));
}

MemoryPressure::MemoryPressure(const MemoryPressureOptions& options, uint64_t full_bytes,
                               std::unique_ptr<MemorySource> source)
    : options_(options),
      full_(full_bytes),
      step_(std::max<uint64_t>(1, static_cast<uint64_t>(options.step * full_bytes))),
      floor_(static_cast<uint64_t>(options.floor * full_bytes)),
      source_(std::move(source)),
      limit_(full_bytes) {}

absl::StatusOr<PressureDecision> MemoryPressure::Tick() {
  absl::StatusOr<MemorySample> sample = source_->Read();
  if (!sample.ok()) return sample.status();
  PressureDecision d;
  d.used_fraction = sample->limit_bytes ? double(sample->used_bytes) / double(sample->limit_bytes)
                                        : 0.0;
  const uint64_t before = limit_.load();
  uint64_t limit = before;
  if (d.used_fraction >= options_.high) {
    d.level = PressureLevel::kHigh;
    limit = before > floor_ + step_ ? before - step_ : floor_;
  } else if (d.used_fraction < options_.low) {
    d.level = PressureLevel::kNormal;
    limit = std::min(full_, before + step_);
  } else {
    d.level = PressureLevel::kElevated;
  }
  d.limit_bytes = limit;
  d.changed = limit != before;
  if (limit < before) ++shrinks_;
  if (limit > before) ++grows_;
  limit_ = limit;
  level_ = static_cast<int>(d.level);
  used_fraction_ = d.used_fraction;
  return d;
}

}  // namespace kvf
