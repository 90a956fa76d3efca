#include "common/process.h"

#include "absl/synchronization/mutex.h"

namespace kvf {

void ConfigureProcessForServing() {
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
}

}  // namespace kvf
