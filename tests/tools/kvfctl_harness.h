// The kvfctl test harness: a minimal JSON reader for kvfctl's --json output,
// running kvfctl as a subprocess with its output captured, and small helpers
// (temporary directories, unused ports). Used by tests/tools/kvfctl_test.cc.
#ifndef KVF_TESTS_TOOLS_KVFCTL_HARNESS_H_
#define KVF_TESTS_TOOLS_KVFCTL_HARNESS_H_

#include <cctype>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <string>
#include <system_error>
#include <variant>
#include <vector>

#include <stdlib.h>

#include "absl/time/time.h"

namespace kvf::testing {

// ---- A minimal JSON reader: enough to check kvfctl's output is valid JSON
// and to read fields from it.
struct Json {
  std::variant<std::nullptr_t, bool, double, std::string, std::vector<Json>,
               std::map<std::string, Json>>
      v;
  bool is_object() const { return v.index() == 5; }
  bool is_array() const { return v.index() == 4; }
  const Json& operator[](const std::string& k) const {
    static const Json kNull;
    if (!is_object()) return kNull;
    auto& m = std::get<5>(v);
    auto it = m.find(k);
    return it == m.end() ? kNull : it->second;
  }
  const std::vector<Json>& array() const {
    static const std::vector<Json> kEmpty;
    return is_array() ? std::get<4>(v) : kEmpty;
  }
  std::string str() const { return v.index() == 3 ? std::get<3>(v) : ""; }
  double num() const { return v.index() == 2 ? std::get<2>(v) : -1; }
  bool boolean() const { return v.index() == 1 && std::get<1>(v); }
  bool is_null() const { return v.index() == 0; }
};

class JsonReader {
 public:
  explicit JsonReader(const std::string& s) : s_(s) {}
  bool Parse(Json* out) {
    if (!Value(out)) return false;
    Ws();
    return i_ == s_.size();
  }

 private:
  void Ws() {
    while (i_ < s_.size() && std::isspace(static_cast<unsigned char>(s_[i_]))) ++i_;
  }
  bool Lit(const char* lit) {
    const size_t n = std::strlen(lit);
    if (s_.compare(i_, n, lit) != 0) return false;
    i_ += n;
    return true;
  }
  bool String(std::string* out) {
    if (i_ >= s_.size() || s_[i_] != '"') return false;
    ++i_;
    while (i_ < s_.size() && s_[i_] != '"') {
      char c = s_[i_++];
      if (static_cast<unsigned char>(c) < 0x20) return false;
      if (c != '\\') {
        *out += c;
        continue;
      }
      if (i_ >= s_.size()) return false;
      c = s_[i_++];
      switch (c) {
        case '"':
        case '\\':
        case '/':
          *out += c;
          break;
        case 'n':
          *out += '\n';
          break;
        case 't':
          *out += '\t';
          break;
        case 'r':
          *out += '\r';
          break;
        case 'b':
          *out += '\b';
          break;
        case 'f':
          *out += '\f';
          break;
        case 'u': {
          if (i_ + 4 > s_.size()) return false;
          *out += static_cast<char>(std::stoi(s_.substr(i_, 4), nullptr, 16));
          i_ += 4;
          break;
        }
        default:
          return false;
      }
    }
    if (i_ >= s_.size()) return false;
    ++i_;
    return true;
  }
  bool Value(Json* out) {
    Ws();
    if (i_ >= s_.size()) return false;
    const char c = s_[i_];
    if (c == '{') {
      ++i_;
      std::map<std::string, Json> m;
      Ws();
      if (i_ < s_.size() && s_[i_] == '}') {
        ++i_;
      } else {
        for (;;) {
          Ws();
          std::string k;
          if (!String(&k)) return false;
          Ws();
          if (i_ >= s_.size() || s_[i_++] != ':') return false;
          if (!Value(&m[k])) return false;
          Ws();
          if (i_ < s_.size() && s_[i_] == ',') {
            ++i_;
            continue;
          }
          if (i_ < s_.size() && s_[i_] == '}') {
            ++i_;
            break;
          }
          return false;
        }
      }
      out->v = std::move(m);
      return true;
    }
    if (c == '[') {
      ++i_;
      std::vector<Json> a;
      Ws();
      if (i_ < s_.size() && s_[i_] == ']') {
        ++i_;
      } else {
        for (;;) {
          a.emplace_back();
          if (!Value(&a.back())) return false;
          Ws();
          if (i_ < s_.size() && s_[i_] == ',') {
            ++i_;
            continue;
          }
          if (i_ < s_.size() && s_[i_] == ']') {
            ++i_;
            break;
          }
          return false;
        }
      }
      out->v = std::move(a);
      return true;
    }
    if (c == '"') {
      std::string str;
      if (!String(&str)) return false;
      out->v = std::move(str);
      return true;
    }
    if (Lit("true")) {
      out->v = true;
      return true;
    }
    if (Lit("false")) {
      out->v = false;
      return true;
    }
    if (Lit("null")) {
      out->v = nullptr;
      return true;
    }
    size_t used = 0;
    try {
      out->v = std::stod(s_.substr(i_), &used);
    } catch (...) {
      return false;
    }
    i_ += used;
    return used > 0;
  }
  const std::string& s_;
  size_t i_ = 0;
};

// ---- Running kvfctl.
struct CtlResult {
  int code = -1;  // exit status; -1: killed (timed out)
  std::string out, err;
  absl::Duration took;
};

// The contents of `path` ("" if it cannot be read).
std::string ReadFile(const std::string& path);

// Runs kvfctl with `args` (and `env` added), capturing output in files under
// `dir`; kills it after `timeout`.
CtlResult RunCtl(const std::string& dir, std::vector<std::string> args,
                 const std::vector<std::string>& env = {},
                 absl::Duration timeout = absl::Seconds(60));

// Exit status, time taken, stdout and stderr, for failure messages.
std::string Describe(const CtlResult& r);

// Whether the build has kvf-agent (cluster tests skip without it).
bool AgentBuilt();

// A loopback port nobody listens on (bound, then released: nothing else on
// this machine picks it in the moment between).
int UnusedPort();

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "kvfctl-test-XXXXXX").string();
    if (::mkdtemp(tmpl.data()) != nullptr) path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    if (!path_.empty()) std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

}  // namespace kvf::testing

#endif  // KVF_TESTS_TOOLS_KVFCTL_HARNESS_H_
