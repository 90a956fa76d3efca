// EpochStore: the one thing the coordinator persists, its last epoch, so the
// epoch never goes backwards across a restart (DESIGN.md, "Cluster
// operations": everything else is soft state rebuilt from agents).
#ifndef KVF_COORDINATOR_EPOCH_STORE_H_
#define KVF_COORDINATOR_EPOCH_STORE_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace kvf {

// Not thread-safe: the coordinator calls it under its own lock.
class EpochStore {
 public:
  // Uses `<dir>/epoch`, creating `dir` if needed. An empty `dir` gives a store
  // that keeps nothing (Load() returns 0, Save() succeeds).
  static absl::StatusOr<std::unique_ptr<EpochStore>> Open(std::string dir);

  // The last saved epoch; 0 when none was saved. DATA_LOSS if the file exists
  // but does not hold a number.
  absl::StatusOr<uint64_t> Load() const;

  // Atomically replaces the saved epoch: writes a temporary file, fsyncs it,
  // renames it over the old one and fsyncs the directory. On error the old
  // value stays.
  absl::Status Save(uint64_t epoch);

  const std::string& path() const { return path_; }

 private:
  explicit EpochStore(std::string dir);
  std::string dir_;
  std::string path_;
};

}  // namespace kvf

#endif  // KVF_COORDINATOR_EPOCH_STORE_H_
