#include "transport/descriptor.h"

#include "absl/strings/str_cat.h"
#include "transport/internal/wire.h"

namespace kvf {
namespace {
constexpr uint32_t kDescriptorMagic = 0x4452564b;  // "KVRD"
constexpr uint8_t kDescriptorVersion = 1;
constexpr uint32_t kMaxRkeyBytes = 16 * 1024;
using transport_internal::ByteReader;
using transport_internal::ByteWriter;
using transport_internal::Checksum;
}  // namespace

std::string_view MemoryTypeName(MemoryType type) {
  switch (type) {
    case MemoryType::kHost:
      return "host";
    case MemoryType::kCuda:
      return "cuda";
  }
  return "unknown";
}

std::string RemoteDescriptor::Serialize() const {
  std::string out;
  ByteWriter w(&out);
  w.Put<uint32_t>(kDescriptorMagic);
  w.Put<uint8_t>(kDescriptorVersion);
  w.Put<uint8_t>(static_cast<uint8_t>(memory_type));
  w.Put<uint16_t>(0);
  w.Put<uint64_t>(region_id);
  w.Put<uint64_t>(address);
  w.Put<uint64_t>(size);
  w.Put<uint32_t>(static_cast<uint32_t>(rkey.size()));
  w.Bytes(rkey);
  w.Put<uint64_t>(Checksum(out));
  return out;
}

absl::StatusOr<RemoteDescriptor> RemoteDescriptor::Parse(std::string_view bytes) {
  ByteReader r(bytes);
  uint32_t magic = 0, rkey_length = 0;
  uint8_t version = 0, type = 0;
  uint16_t reserved = 0;
  RemoteDescriptor d;
  if (!r.Get(&magic) || !r.Get(&version) || !r.Get(&type) || !r.Get(&reserved) ||
      !r.Get(&d.region_id) || !r.Get(&d.address) || !r.Get(&d.size) || !r.Get(&rkey_length)) {
    return absl::InvalidArgumentError(
        absl::StrCat("remote descriptor: truncated header (", bytes.size(), " bytes)"));
  }
  if (magic != kDescriptorMagic) return absl::InvalidArgumentError("remote descriptor: bad magic");
  if (version != kDescriptorVersion) {
    return absl::InvalidArgumentError(
        absl::StrCat("remote descriptor: unknown version ", version));
  }
  if (type > static_cast<uint8_t>(MemoryType::kCuda)) {
    return absl::InvalidArgumentError(
        absl::StrCat("remote descriptor: unknown memory type ", type));
  }
  std::string_view rkey;
  uint64_t checksum = 0;
  if (rkey_length > kMaxRkeyBytes || !r.Bytes(rkey_length, &rkey) || !r.Get(&checksum)) {
    return absl::InvalidArgumentError(absl::StrCat("remote descriptor: truncated (",
                                                   bytes.size(), " bytes, remote key says ",
                                                   rkey_length, ")"));
  }
  if (r.remaining() != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("remote descriptor: ", r.remaining(), " trailing bytes"));
  }
  if (checksum != Checksum(bytes.substr(0, bytes.size() - 8))) {
    return absl::InvalidArgumentError("remote descriptor: checksum mismatch (corrupted)");
  }
  if (d.size == 0 || d.address + d.size < d.address) {
    return absl::InvalidArgumentError(absl::StrCat("remote descriptor: bad range [", d.address,
                                                   ", +", d.size, ")"));
  }
  d.memory_type = static_cast<MemoryType>(type);
  d.rkey = std::string(rkey);
  return d;
}

}  // namespace kvf
