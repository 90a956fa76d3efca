#include "coordinator/epoch_store.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace kvf {
namespace {

absl::Status ErrnoError(const std::string& what, int err) {
  return absl::InternalError(absl::StrCat(what, ": ", std::strerror(err)));
}

}  // namespace

EpochStore::EpochStore(std::string dir) : dir_(std::move(dir)) {
  if (!dir_.empty()) {
    path_ = dir_ + "/epoch";
    roster_path_ = dir_ + "/roster.pb";
  }
}

absl::StatusOr<std::unique_ptr<EpochStore>> EpochStore::Open(std::string dir) {
  if (!dir.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    if (ec) {
      return absl::FailedPreconditionError(
          absl::StrCat("state dir ", dir, ": cannot create: ", ec.message()));
    }
  }
  return std::unique_ptr<EpochStore>(new EpochStore(std::move(dir)));
}

absl::StatusOr<uint64_t> EpochStore::Load() const {
  if (path_.empty()) return uint64_t{0};
  std::ifstream in(path_);
  if (!in) {
    if (!std::filesystem::exists(path_)) return uint64_t{0};
    return absl::InternalError(absl::StrCat(path_, ": cannot read"));
  }
  std::stringstream buf;
  buf << in.rdbuf();
  std::string text = buf.str();
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  uint64_t epoch = 0;
  if (!absl::SimpleAtoi(absl::string_view(text), &epoch)) {
    return absl::DataLossError(absl::StrCat(path_, ": not an epoch number: '", text.substr(0, 40), "'"));
  }
  return epoch;
}

absl::Status EpochStore::Save(uint64_t epoch) {
  if (path_.empty()) return absl::OkStatus();
  return WriteAtomically(path_, absl::StrCat(epoch, "\n"));
}

absl::StatusOr<std::optional<std::string>> EpochStore::LoadRoster() const {
  if (roster_path_.empty() || !std::filesystem::exists(roster_path_)) {
    return std::optional<std::string>();
  }
  std::ifstream in(roster_path_, std::ios::binary);
  if (!in) return absl::InternalError(absl::StrCat(roster_path_, ": cannot read"));
  std::stringstream buf;
  buf << in.rdbuf();
  return std::optional<std::string>(buf.str());
}

absl::Status EpochStore::SaveRoster(const std::string& bytes) {
  if (roster_path_.empty()) return absl::OkStatus();
  return WriteAtomically(roster_path_, bytes);
}

absl::Status EpochStore::WriteAtomically(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return ErrnoError(absl::StrCat("open ", tmp), errno);
  size_t off = 0;
  while (off < text.size()) {
    ssize_t n = ::write(fd, text.data() + off, text.size() - off);
    if (n < 0) {
      if (errno == EINTR) continue;
      int err = errno;
      ::close(fd);
      return ErrnoError(absl::StrCat("write ", tmp), err);
    }
    off += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0) {
    int err = errno;
    ::close(fd);
    return ErrnoError(absl::StrCat("fsync ", tmp), err);
  }
  if (::close(fd) != 0) return ErrnoError(absl::StrCat("close ", tmp), errno);
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    return ErrnoError(absl::StrCat("rename ", tmp, " to ", path), errno);
  }
  int dfd = ::open(dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);  // best effort: the rename is durable once the directory is
    ::close(dfd);
  }
  return absl::OkStatus();
}

}  // namespace kvf
