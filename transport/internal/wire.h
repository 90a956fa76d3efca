// Byte-level encoding shared by the transport's wire formats: little-endian
// writer/reader with bounds checks, checksummed envelopes, message frames.
// Private to transport/.
#ifndef KVF_TRANSPORT_INTERNAL_WIRE_H_
#define KVF_TRANSPORT_INTERNAL_WIRE_H_

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace kvf::transport_internal {

class ByteWriter {
 public:
  explicit ByteWriter(std::string* out) : out_(out) {}
  template <typename T>
  void Put(T v) {
    static_assert(std::is_integral_v<T>);
    char buf[sizeof(T)];
    for (size_t i = 0; i < sizeof(T); ++i) buf[i] = static_cast<char>((v >> (8 * i)) & 0xff);
    out_->append(buf, sizeof(T));
  }
  void Bytes(std::string_view b) { out_->append(b.data(), b.size()); }

 private:
  std::string* out_;
};

class ByteReader {
 public:
  explicit ByteReader(std::string_view in) : in_(in) {}
  template <typename T>
  bool Get(T* v) {
    static_assert(std::is_integral_v<T>);
    if (in_.size() < sizeof(T)) return false;
    std::make_unsigned_t<T> u = 0;
    for (size_t i = 0; i < sizeof(T); ++i) {
      u |= static_cast<std::make_unsigned_t<T>>(static_cast<uint8_t>(in_[i])) << (8 * i);
    }
    *v = static_cast<T>(u);
    in_.remove_prefix(sizeof(T));
    return true;
  }
  bool Bytes(size_t n, std::string_view* b) {
    if (in_.size() < n) return false;
    *b = in_.substr(0, n);
    in_.remove_prefix(n);
    return true;
  }
  size_t remaining() const { return in_.size(); }

 private:
  std::string_view in_;
};

uint64_t Checksum(std::string_view bytes);

// A checksummed envelope: "KVWA" | u8 version=1 | u8 backend | u16 0 |
// u32 length | body | u64 XXH64(all before). Used for worker addresses.
std::string SealAddress(uint8_t backend, std::string_view body);
absl::StatusOr<std::string_view> OpenAddress(uint8_t backend, std::string_view sealed);

// Message frame header, sent as the UCX active-message header; the payload
// travels as the message data.
//   "KVFM" | u8 version=1 | u8 kind | u16 type | u64 call id |
//   u32 status code | u32 payload length           (24 bytes)
enum class FrameKind : uint8_t { kRequest = 1, kResponse = 2 };
struct FrameHeader {
  FrameKind kind = FrameKind::kRequest;
  uint16_t type = 0;
  uint64_t call_id = 0;
  uint32_t status_code = 0;  // absl::StatusCode of a response
  uint32_t payload_length = 0;
};
inline constexpr size_t kFrameHeaderBytes = 24;
std::string EncodeFrameHeader(const FrameHeader& header);
// INVALID_ARGUMENT for a short, long, mis-tagged or inconsistent header;
// `payload_length` must equal the data length that arrived with it.
absl::StatusOr<FrameHeader> ParseFrameHeader(std::string_view bytes, size_t payload_length);

}  // namespace kvf::transport_internal

#endif  // KVF_TRANSPORT_INTERNAL_WIRE_H_
