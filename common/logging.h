// Minimal leveled logging to stderr. The installed Abseil (20220623) has no
// absl/log; this keeps the same shape (`KVF_LOG(INFO) << ...`) so moving to it
// later is a search-and-replace.
#ifndef KVF_COMMON_LOGGING_H_
#define KVF_COMMON_LOGGING_H_

#include <sstream>

namespace kvf {

enum class LogSeverity { kINFO = 0, kWARNING = 1, kERROR = 2 };

// Messages below this level are dropped. Initialised from the environment
// variable KVF_LOG_LEVEL (INFO, WARNING, ERROR); INFO when unset.
LogSeverity MinLogSeverity();
void SetMinLogSeverity(LogSeverity severity);

namespace internal {

// Buffers one message and writes it, with a single write(2), when destroyed.
class LogMessage {
 public:
  LogMessage(LogSeverity severity, const char* file, int line);
  ~LogMessage();
  LogMessage(const LogMessage&) = delete;
  LogMessage& operator=(const LogMessage&) = delete;
  std::ostream& stream() { return stream_; }

 private:
  LogSeverity severity_;
  std::ostringstream stream_;
};

}  // namespace internal
}  // namespace kvf

#define KVF_LOG(severity)                                                    \
  if (::kvf::LogSeverity::k##severity < ::kvf::MinLogSeverity()) {           \
  } else                                                                     \
    ::kvf::internal::LogMessage(::kvf::LogSeverity::k##severity, __FILE__,   \
                                __LINE__)                                    \
        .stream()

#endif  // KVF_COMMON_LOGGING_H_
