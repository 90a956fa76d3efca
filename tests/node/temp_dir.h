// A fresh directory under $TMPDIR (mkdtemp), removed with everything in it
// when the object goes.
#ifndef KVF_TESTS_NODE_TEMP_DIR_H_
#define KVF_TESTS_NODE_TEMP_DIR_H_

#include <cstdlib>
#include <filesystem>
#include <string>

namespace kvf {

class TempDir {
 public:
  TempDir() {
    const char* tmp = std::getenv("TMPDIR");
    std::string pattern = std::string(tmp && *tmp ? tmp : "/tmp") + "/kvf-disk-XXXXXX";
    if (::mkdtemp(pattern.data()) != nullptr) path_ = pattern;
  }
  ~TempDir() {
    std::error_code ec;
    if (!path_.empty()) std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  // Empty if mkdtemp failed.
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

}  // namespace kvf

#endif  // KVF_TESTS_NODE_TEMP_DIR_H_
