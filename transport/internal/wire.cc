#include "transport/internal/wire.h"

#include "absl/strings/str_cat.h"
#include "transport/transport.h"
#include "xxhash.h"

namespace kvf::transport_internal {
namespace {
constexpr uint32_t kAddressMagic = 0x4157564b;  // "KVWA"
constexpr uint32_t kFrameMagic = 0x4d46564b;    // "KVFM"
constexpr uint8_t kVersion = 1;
constexpr size_t kMaxAddressBytes = 64 * 1024;
}  // namespace

uint64_t Checksum(std::string_view bytes) { return XXH64(bytes.data(), bytes.size(), 0x6b7666); }

std::string SealAddress(uint8_t backend, std::string_view body) {
  std::string out;
  ByteWriter w(&out);
  w.Put<uint32_t>(kAddressMagic);
  w.Put<uint8_t>(kVersion);
  w.Put<uint8_t>(backend);
  w.Put<uint16_t>(0);
  w.Put<uint32_t>(static_cast<uint32_t>(body.size()));
  w.Bytes(body);
  w.Put<uint64_t>(Checksum(out));
  return out;
}

absl::StatusOr<std::string_view> OpenAddress(uint8_t backend, std::string_view sealed) {
  ByteReader r(sealed);
  uint32_t magic = 0, length = 0;
  uint8_t version = 0, got_backend = 0;
  uint16_t reserved = 0;
  std::string_view body;
  uint64_t checksum = 0;
  if (!r.Get(&magic) || !r.Get(&version) || !r.Get(&got_backend) || !r.Get(&reserved) ||
      !r.Get(&length)) {
    return absl::InvalidArgumentError(
        absl::StrCat("worker address: truncated header (", sealed.size(), " bytes)"));
  }
  if (magic != kAddressMagic) return absl::InvalidArgumentError("worker address: bad magic");
  if (version != kVersion) {
    return absl::InvalidArgumentError(absl::StrCat("worker address: unknown version ", version));
  }
  if (got_backend != backend) {
    return absl::InvalidArgumentError(absl::StrCat("worker address: made by backend ",
                                                   got_backend, ", this is backend ", backend));
  }
  if (length > kMaxAddressBytes || !r.Bytes(length, &body) || !r.Get(&checksum)) {
    return absl::InvalidArgumentError(
        absl::StrCat("worker address: truncated (", sealed.size(), " bytes, body says ", length,
                     ")"));
  }
  if (r.remaining() != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("worker address: ", r.remaining(), " trailing bytes"));
  }
  if (checksum != Checksum(sealed.substr(0, sealed.size() - 8))) {
    return absl::InvalidArgumentError("worker address: checksum mismatch (corrupted)");
  }
  return body;
}

std::string EncodeFrameHeader(const FrameHeader& h) {
  std::string out;
  out.reserve(kFrameHeaderBytes);
  ByteWriter w(&out);
  w.Put<uint32_t>(kFrameMagic);
  w.Put<uint8_t>(kVersion);
  w.Put<uint8_t>(static_cast<uint8_t>(h.kind));
  w.Put<uint16_t>(h.type);
  w.Put<uint64_t>(h.call_id);
  w.Put<uint32_t>(h.status_code);
  w.Put<uint32_t>(h.payload_length);
  return out;
}

absl::StatusOr<FrameHeader> ParseFrameHeader(std::string_view bytes, size_t payload_length) {
  if (bytes.size() != kFrameHeaderBytes) {
    return absl::InvalidArgumentError(absl::StrCat("message frame: header is ", bytes.size(),
                                                   " bytes, expected ", kFrameHeaderBytes));
  }
  ByteReader r(bytes);
  uint32_t magic = 0;
  uint8_t version = 0, kind = 0;
  FrameHeader h;
  r.Get(&magic);
  r.Get(&version);
  r.Get(&kind);
  r.Get(&h.type);
  r.Get(&h.call_id);
  r.Get(&h.status_code);
  r.Get(&h.payload_length);
  if (magic != kFrameMagic) return absl::InvalidArgumentError("message frame: bad magic");
  if (version != kVersion) {
    return absl::InvalidArgumentError(absl::StrCat("message frame: unknown version ", version));
  }
  if (kind != static_cast<uint8_t>(FrameKind::kRequest) &&
      kind != static_cast<uint8_t>(FrameKind::kResponse)) {
    return absl::InvalidArgumentError(absl::StrCat("message frame: unknown kind ", kind));
  }
  h.kind = static_cast<FrameKind>(kind);
  if (h.payload_length != payload_length || payload_length > kMaxMessageBytes) {
    return absl::InvalidArgumentError(absl::StrCat("message frame: header says ",
                                                   h.payload_length, " payload bytes, ",
                                                   payload_length, " arrived (max ",
                                                   kMaxMessageBytes, ")"));
  }
  if (h.kind == FrameKind::kResponse && h.status_code > 16) {
    return absl::InvalidArgumentError(
        absl::StrCat("message frame: unknown status code ", h.status_code));
  }
  return h;
}

}  // namespace kvf::transport_internal
