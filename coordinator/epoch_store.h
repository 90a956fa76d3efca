// EpochStore: what the coordinator persists in its state dir. The epoch
// (`<dir>/epoch`, written before every change) so it never goes backwards
// across a restart, and the roster (`<dir>/roster.pb`, a
// proto::CoordinatorState written after every change) so a restarted
// coordinator knows every node id it handed out, however long it was away.
#ifndef KVF_COORDINATOR_EPOCH_STORE_H_
#define KVF_COORDINATOR_EPOCH_STORE_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "coordinator/state_store.h"

namespace kvf {

// Not thread-safe: the coordinator calls it under its own lock.
class EpochStore final : public StateStore {
 public:
  // Uses `<dir>/epoch`, creating `dir` if needed. An empty `dir` gives a store
  // that keeps nothing (Load() returns 0, Save() succeeds).
  static absl::StatusOr<std::unique_ptr<EpochStore>> Open(std::string dir);

  // The last saved epoch; 0 when none was saved. DATA_LOSS if the file exists
  // but does not hold a number.
  absl::StatusOr<uint64_t> Load() const override;

  // Atomically replaces the saved epoch: writes a temporary file, fsyncs it,
  // renames it over the old one and fsyncs the directory. On error the old
  // value stays.
  absl::Status Save(uint64_t epoch) override;

  // The last saved roster's bytes; nullopt when none was saved (a new state
  // dir, one from a version that kept only the epoch, or no dir at all).
  absl::StatusOr<std::optional<std::string>> LoadRoster() const override;
  // Atomically replaces the roster, like Save.
  absl::Status SaveRoster(const std::string& bytes) override;
  std::string Describe() const override { return dir_.empty() ? "no state dir" : "state dir " + dir_; }

  const std::string& path() const { return path_; }

 private:
  explicit EpochStore(std::string dir);
  // Writes `bytes` to `path` through a temporary file, fsync and rename.
  absl::Status WriteAtomically(const std::string& path, const std::string& bytes);

  std::string dir_;
  std::string path_;
  std::string roster_path_;
};

}  // namespace kvf

#endif  // KVF_COORDINATOR_EPOCH_STORE_H_
