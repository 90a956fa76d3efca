// Clock: the source of time for leases, ages and timeouts, injectable so tests
// can expire a lease without waiting for it. Shared by node/ and coordinator/.
#ifndef KVF_COMMON_CLOCK_H_
#define KVF_COMMON_CLOCK_H_

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace kvf {

// Thread-safe.
class Clock {
 public:
  virtual ~Clock() = default;
  virtual absl::Time Now() const = 0;

  // The process-wide real clock.
  static const Clock& Real();
};

}  // namespace kvf

#endif  // KVF_COMMON_CLOCK_H_
