// Little-endian fixed-width writer and a bounds-checked reader for the frame
// codec (frames.cc). Private to protocol.
#ifndef KVF_PROTOCOL_INTERNAL_WIRE_IO_H_
#define KVF_PROTOCOL_INTERNAL_WIRE_IO_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <type_traits>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace kvf::protocol::internal {

// Appends values byte by byte, least significant first: no struct is ever
// copied to the wire, so there are no padding or host-order bytes.
class WireWriter {
 public:
  explicit WireWriter(std::string* out) : out_(out) {}

  template <typename T>
  void Put(T v) {
    static_assert(std::is_unsigned_v<T>);
    for (size_t i = 0; i < sizeof(T); ++i) out_->push_back(static_cast<char>(v >> (8 * i)));
  }
  void Bytes(std::string_view b) { out_->append(b.data(), b.size()); }
  void Zeros(size_t n) { out_->append(n, '\0'); }

 private:
  std::string* out_;
};

// Reads from a view it never leaves: a read past the end fails with
// INVALID_ARGUMENT naming the message type and field, and leaves the position.
class WireReader {
 public:
  WireReader(std::string_view data, std::string_view what) : data_(data), what_(what) {}

  template <typename T>
  absl::Status Get(T* v, std::string_view field) {
    static_assert(std::is_unsigned_v<T>);
    if (remaining() < sizeof(T)) return Short(sizeof(T), field);
    T r = 0;
    for (size_t i = 0; i < sizeof(T); ++i) {
      r |= static_cast<T>(static_cast<T>(static_cast<uint8_t>(data_[pos_ + i])) << (8 * i));
    }
    *v = r;
    pos_ += sizeof(T);
    return absl::OkStatus();
  }

  absl::Status Bytes(size_t n, std::string_view* out, std::string_view field) {
    if (remaining() < n) return Short(n, field);
    *out = data_.substr(pos_, n);
    pos_ += n;
    return absl::OkStatus();
  }

  // `n` reserved bytes, which must be zero.
  absl::Status Reserved(size_t n, std::string_view field) {
    std::string_view b;
    if (absl::Status s = Bytes(n, &b, field); !s.ok()) return s;
    for (char c : b) {
      if (c != 0) {
        return absl::InvalidArgumentError(
            absl::StrCat(std::string(what_), ": reserved bytes ", std::string(field), " not zero"));
      }
    }
    return absl::OkStatus();
  }

  absl::Status Bool(bool* v, std::string_view field) {
    uint8_t b = 0;
    if (absl::Status s = Get(&b, field); !s.ok()) return s;
    if (b > 1) {
      return absl::InvalidArgumentError(absl::StrCat(std::string(what_), ": ", std::string(field),
                                                     " is ", b, ", not a boolean (0 or 1)"));
    }
    *v = b == 1;
    return absl::OkStatus();
  }

  absl::Status ExpectEnd() const {
    if (remaining() == 0) return absl::OkStatus();
    return absl::InvalidArgumentError(
        absl::StrCat(std::string(what_), ": ", remaining(), " trailing bytes after the body"));
  }

  size_t remaining() const { return data_.size() - pos_; }
  size_t position() const { return pos_; }

 private:
  absl::Status Short(size_t n, std::string_view field) const {
    return absl::InvalidArgumentError(absl::StrCat(std::string(what_), ": body ends inside ",
                                                   std::string(field), " (needs ", n,
                                                   " bytes at offset ", pos_, ", has ",
                                                   remaining(), ")"));
  }

  std::string_view data_;
  std::string_view what_;
  size_t pos_ = 0;
};

}  // namespace kvf::protocol::internal

#endif  // KVF_PROTOCOL_INTERNAL_WIRE_IO_H_
