// kvfctl's output: aligned text tables for people, compact JSON for scripts.
//
// JSON is written by hand (no JSON library in the tree): JsonObject and
// JsonArray build one value each; strings are escaped per RFC 8259 (quotes,
// backslash, control characters as \uXXXX; bytes >= 0x80 pass through, so
// UTF-8 stays UTF-8). Keys keep insertion order, so output is deterministic.
//
// Thread-compatible value types.
#ifndef KVF_TOOLS_KVFCTL_OUTPUT_H_
#define KVF_TOOLS_KVFCTL_OUTPUT_H_

#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>
#include <vector>

namespace kvf::ctl {

// A JSON string literal for `s`, quotes included.
std::string JsonString(std::string_view s);

// A JSON number for `v`; NaN and infinities (not JSON) become null.
std::string JsonNumber(double v);

class JsonObject {
 public:
  JsonObject& Raw(std::string_view key, std::string_view json);  // `json` is already JSON
  JsonObject& Str(std::string_view key, std::string_view value);
  JsonObject& Int(std::string_view key, int64_t value);
  JsonObject& Uint(std::string_view key, uint64_t value);
  JsonObject& Num(std::string_view key, double value);
  JsonObject& Bool(std::string_view key, bool value);
  JsonObject& Null(std::string_view key);
  std::string Done() const { return "{" + body_ + "}"; }

 private:
  void Key(std::string_view key);
  std::string body_;
};

class JsonArray {
 public:
  JsonArray& Raw(std::string_view json);
  JsonArray& Str(std::string_view value) { return Raw(JsonString(value)); }
  JsonArray& Uint(uint64_t value) { return Raw(std::to_string(value)); }
  std::string Done() const { return "[" + body_ + "]"; }

 private:
  std::string body_;
};

// Columns separated by two spaces, each as wide as its widest cell; a header
// row first. Cells are printed as given (left aligned, except columns marked
// numeric, which are right aligned).
class Table {
 public:
  explicit Table(std::vector<std::string> headers, std::vector<bool> numeric = {});
  void AddRow(std::vector<std::string> cells);
  void Print(std::FILE* out) const;

 private:
  std::vector<std::string> headers_;
  std::vector<bool> numeric_;
  std::vector<std::vector<std::string>> rows_;
};

// "64.0 MiB", "1.5 GiB", "512 B".
std::string HumanBytes(uint64_t bytes);
// "0x" and 16 lowercase hex digits.
std::string Hex64(uint64_t v);

}  // namespace kvf::ctl

#endif  // KVF_TOOLS_KVFCTL_OUTPUT_H_
