// A Clock that moves only when the test says so.
#ifndef KVF_TESTS_COMMON_FAKE_CLOCK_H_
#define KVF_TESTS_COMMON_FAKE_CLOCK_H_

#include "absl/synchronization/mutex.h"
#include "common/clock.h"

namespace kvf {

class FakeClock final : public Clock {
 public:
  absl::Time Now() const override {
    absl::MutexLock lock(&mu_);
    return now_;
  }
  void Advance(absl::Duration d) {
    absl::MutexLock lock(&mu_);
    now_ += d;
  }

 private:
  mutable absl::Mutex mu_;
  absl::Time now_ = absl::FromUnixSeconds(1'700'000'000);
};

}  // namespace kvf

#endif  // KVF_TESTS_COMMON_FAKE_CLOCK_H_
