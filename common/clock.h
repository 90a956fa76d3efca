// Clock: the source of time for leases and ages, injectable for tests.
#ifndef KVF_NODE_CLOCK_H_
#define KVF_NODE_CLOCK_H_

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

#endif  // KVF_NODE_CLOCK_H_
