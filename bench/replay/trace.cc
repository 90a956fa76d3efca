#include "bench/replay/trace.h"

#include <algorithm>
#include <cctype>
#include <fstream>
#include <sstream>

#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace kvf::replay {
namespace {

// A cursor over one line of JSON; every failure names the line and column.
class LineParser {
 public:
  LineParser(std::string_view line, size_t line_no) : s_(line), line_no_(line_no) {}

  absl::Status Error(std::string_view what) const {
    return absl::InvalidArgumentError(
        absl::StrCat("trace line ", line_no_, ", column ", pos_ + 1, ": ", std::string(what)));
  }

  void SkipSpace() {
    while (pos_ < s_.size() && std::isspace(static_cast<unsigned char>(s_[pos_]))) ++pos_;
  }
  bool Consume(char c) {
    SkipSpace();
    if (pos_ < s_.size() && s_[pos_] == c) {
      ++pos_;
      return true;
    }
    return false;
  }
  bool AtEnd() {
    SkipSpace();
    return pos_ == s_.size();
  }
  char Peek() {
    SkipSpace();
    return pos_ < s_.size() ? s_[pos_] : '\0';
  }

  absl::StatusOr<std::string_view> String() {
    if (!Consume('"')) return Error("expected '\"'");
    const size_t start = pos_;
    while (pos_ < s_.size() && s_[pos_] != '"') {
      if (s_[pos_] == '\\') ++pos_;  // keys and ignored values only: no unescaping
      ++pos_;
    }
    if (pos_ >= s_.size()) return Error("unterminated string");
    return s_.substr(start, pos_++ - start);
  }

  // A JSON number that must be a non-negative integer (ids, lengths, times).
  absl::StatusOr<int64_t> Integer() {
    SkipSpace();
    const size_t start = pos_;
    int64_t v = 0;
    while (pos_ < s_.size() && std::isdigit(static_cast<unsigned char>(s_[pos_]))) {
      if (v > (INT64_MAX - 9) / 10) return Error("integer out of range");
      v = v * 10 + (s_[pos_++] - '0');
    }
    if (pos_ == start) return Error("expected a non-negative integer");
    if (pos_ < s_.size() && (s_[pos_] == '.' || s_[pos_] == 'e' || s_[pos_] == 'E')) {
      // Timestamps may be written as floats; keep the integer part.
      ++pos_;
      while (pos_ < s_.size() && (std::isdigit(static_cast<unsigned char>(s_[pos_])) ||
                                  s_[pos_] == '-' || s_[pos_] == '+' || s_[pos_] == 'e' ||
                                  s_[pos_] == 'E')) {
        ++pos_;
      }
    }
    return v;
  }

  absl::Status IntegerArray(std::vector<uint64_t>* out) {
    if (!Consume('[')) return Error("expected '['");
    if (Consume(']')) return absl::OkStatus();
    do {
      auto v = Integer();
      if (!v.ok()) return v.status();
      out->push_back(static_cast<uint64_t>(*v));
    } while (Consume(','));
    if (!Consume(']')) return Error("expected ',' or ']' in array");
    return absl::OkStatus();
  }

 private:
  std::string_view s_;
  size_t line_no_;
  size_t pos_ = 0;
};

absl::StatusOr<TraceRequest> ParseLine(std::string_view line, size_t line_no) {
  LineParser p(line, line_no);
  TraceRequest r;
  bool have_ids = false;
  if (!p.Consume('{')) return p.Error("expected '{'");
  if (!p.Consume('}')) {
    do {
      auto key = p.String();
      if (!key.ok()) return key.status();
      if (!p.Consume(':')) return p.Error("expected ':'");
      if (*key == "hash_ids") {
        if (auto s = p.IntegerArray(&r.hash_ids); !s.ok()) return s;
        have_ids = true;
        continue;
      }
      int64_t* field = *key == "timestamp"       ? &r.timestamp_ms
                       : *key == "input_length"  ? &r.input_length
                       : *key == "output_length" ? &r.output_length
                                                 : nullptr;
      if (field != nullptr) {
        auto v = p.Integer();
        if (!v.ok()) return v.status();
        *field = *v;
      } else if (p.Peek() == '"') {
        if (auto s = p.String(); !s.ok()) return s.status();
      } else if (p.Peek() == '[') {
        std::vector<uint64_t> ignored;
        if (auto s = p.IntegerArray(&ignored); !s.ok()) return s;
      } else {
        if (auto v = p.Integer(); !v.ok()) return v.status();
      }
    } while (p.Consume(','));
    if (!p.Consume('}')) return p.Error("expected ',' or '}'");
  }
  if (!p.AtEnd()) return p.Error("trailing characters after the object");
  if (!have_ids) return p.Error("missing \"hash_ids\"");
  return r;
}

}  // namespace

absl::StatusOr<Trace> ParseTrace(std::string_view text) {
  Trace trace;
  absl::flat_hash_set<uint64_t> unique;
  size_t line_no = 0;
  while (!text.empty()) {
    ++line_no;
    const size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
    if (line.find_first_not_of(" \t\r") == std::string_view::npos) continue;
    auto request = ParseLine(line, line_no);
    if (!request.ok()) return request.status();
    trace.total_blocks += request->hash_ids.size();
    unique.insert(request->hash_ids.begin(), request->hash_ids.end());
    trace.requests.push_back(*std::move(request));
  }
  trace.unique_blocks = unique.size();
  if (trace.requests.empty()) return absl::InvalidArgumentError("trace has no requests");
  return trace;
}

absl::StatusOr<Trace> LoadTrace(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open trace '", path, "'"));
  std::stringstream buffer;
  buffer << in.rdbuf();
  auto trace = ParseTrace(buffer.str());
  if (!trace.ok()) {
    return absl::Status(trace.status().code(),
                        absl::StrCat(path, ": ", trace.status().message()));
  }
  return trace;
}

Trace SliceTrace(const Trace& trace, size_t begin, size_t end) {
  end = std::min(end, trace.requests.size());
  begin = std::min(begin, end);
  Trace out;
  absl::flat_hash_set<uint64_t> unique;
  for (size_t r = begin; r < end; ++r) {
    const TraceRequest& request = trace.requests[r];
    out.total_blocks += request.hash_ids.size();
    unique.insert(request.hash_ids.begin(), request.hash_ids.end());
    out.requests.push_back(request);
  }
  out.unique_blocks = unique.size();
  return out;
}

}  // namespace kvf::replay
