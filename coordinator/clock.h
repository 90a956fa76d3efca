// CoordinatorClock: the coordinator's source of time for leases, injectable so
// tests can expire a lease without waiting for it.
#ifndef KVF_COORDINATOR_CLOCK_H_
#define KVF_COORDINATOR_CLOCK_H_

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace kvf {

// Implementations are thread-safe.
class CoordinatorClock {
 public:
  virtual ~CoordinatorClock() = default;
  virtual absl::Time Now() const = 0;

  // The process-wide real clock (absl::Now()); never destroyed.
  static const CoordinatorClock& Real();
};

}  // namespace kvf

#endif  // KVF_COORDINATOR_CLOCK_H_
