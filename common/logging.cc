#include "common/logging.h"

#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <string>

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace kvf {
namespace {

LogSeverity FromEnvironment() {
  const char* level = std::getenv("KVF_LOG_LEVEL");
  if (level == nullptr) return LogSeverity::kINFO;
  if (std::strcmp(level, "WARNING") == 0) return LogSeverity::kWARNING;
  if (std::strcmp(level, "ERROR") == 0) return LogSeverity::kERROR;
  return LogSeverity::kINFO;
}

std::atomic<int>& MinLevel() {
  static std::atomic<int> level{static_cast<int>(FromEnvironment())};
  return level;
}

}  // namespace

LogSeverity MinLogSeverity() { return static_cast<LogSeverity>(MinLevel().load()); }
void SetMinLogSeverity(LogSeverity severity) { MinLevel().store(static_cast<int>(severity)); }

namespace internal {

LogMessage::LogMessage(LogSeverity severity, const char* file, int line) : severity_(severity) {
  const char* base = std::strrchr(file, '/');
  stream_ << "IWE"[static_cast<int>(severity)]
          << absl::FormatTime("%m%d %H:%M:%E6S", absl::Now(), absl::LocalTimeZone()) << " "
          << (base ? base + 1 : file) << ":" << line << "] ";
}

LogMessage::~LogMessage() {
  stream_ << '\n';
  const std::string text = stream_.str();
  ssize_t unused = ::write(STDERR_FILENO, text.data(), text.size());
  (void)unused;
  (void)severity_;
}

}  // namespace internal
}  // namespace kvf
