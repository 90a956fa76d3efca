// The frame codec's shared pieces, private to protocol/: sizes and
// limits, field readers and writers, descriptor and location checks, and the
// frame envelope. Used by frames.cc (header, namespace, lookup, get) and
// frames_put.cc (reserve, commit, remove, invalidate, ack, error). Nothing
// outside protocol/ includes this. The functions are inline (one definition
// shared by both files); the two files use the pieces unqualified, as parts of
// one codec, through a using-directive of their own.
#ifndef KVF_PROTOCOL_INTERNAL_FRAME_CODEC_H_
#define KVF_PROTOCOL_INTERNAL_FRAME_CODEC_H_

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "protocol/frames.h"
#include "protocol/internal/wire_io.h"

namespace kvf::protocol::internal {

// Body sizes (docs/protocol.md has the tables).
inline constexpr size_t kKeyBytes = 16;
inline constexpr size_t kKeyRefBytes = kKeyBytes + 8;
inline constexpr size_t kVersionBytes = 16;
inline constexpr size_t kLookupEntryBytes = 24;
inline constexpr size_t kGetEntryBytes = 40;
inline constexpr size_t kReserveEntryBytes = 76;
inline constexpr size_t kReserveResultBytes = 56;
inline constexpr size_t kCommitResultBytes = 32;
inline constexpr size_t kInvalidationBytes = 32;
inline constexpr size_t kGetResponseFixedBytes = 24;
inline constexpr size_t kReserveResponseFixedBytes = 8;
// A UCX descriptor (rkey of a few hundred bytes) is well under this; the rest
// of a maximal Get/Reserve response leaves at least this much per descriptor.
inline constexpr size_t kDescriptorBudget = 1024;

static_assert(kFrameHeaderBytes + 4 + kMaxLookupKeys * kKeyRefBytes <= kMaxMessageBytes);
static_assert(kFrameHeaderBytes + 4 + kMaxLookupKeys * kLookupEntryBytes <= kMaxMessageBytes);
static_assert(kFrameHeaderBytes + 24 + kMaxGetKeys * kKeyRefBytes <= kMaxMessageBytes);
static_assert(kFrameHeaderBytes + kGetResponseFixedBytes + kMaxGetKeys * kGetEntryBytes +
                  kMaxDescriptors * kDescriptorBudget <=
              kMaxMessageBytes);
static_assert(kFrameHeaderBytes + 4 + kMaxReserveKeys * kReserveEntryBytes <= kMaxMessageBytes);
static_assert(kFrameHeaderBytes + kReserveResponseFixedBytes +
                  kMaxReserveKeys * kReserveResultBytes + kMaxDescriptors * kDescriptorBudget <=
              kMaxMessageBytes);
static_assert(kFrameHeaderBytes + 8 + kMaxCommitIds * 8 <= kMaxMessageBytes);
static_assert(kFrameHeaderBytes + 4 + kMaxCommitIds * kCommitResultBytes <= kMaxMessageBytes);
static_assert(kFrameHeaderBytes + 4 + kMaxRemoveKeys * kKeyRefBytes <= kMaxMessageBytes);
static_assert(kFrameHeaderBytes + 4 + kMaxRemoveKeys * 4 <= kMaxMessageBytes);
static_assert(kFrameHeaderBytes + 4 + kMaxInvalidations * kInvalidationBytes <= kMaxMessageBytes);
static_assert(kFrameHeaderBytes + 20 + kMaxErrorMessageBytes <= kMaxMessageBytes);
// RegisterNamespace at its largest: model_id and tenant (u32 length + up to
// kMaxStringLength bytes each), four layout u32s, dtype u8, tp_rank and tp_size
// u32s, hash u8, segment_blocks u32.
inline constexpr size_t kRegisterNamespaceMaxBytes =
    2 * (4 + NamespaceSpec::kMaxStringLength) + 4 * 4 + 1 + 2 * 4 + 1 + 4;
static_assert(kFrameHeaderBytes + kRegisterNamespaceMaxBytes <= kMaxMessageBytes);

inline constexpr uint32_t kMaxStatusCode =
    static_cast<uint32_t>(absl::StatusCode::kUnauthenticated);

inline std::string Name(FrameType t) { return std::string(FrameTypeName(t)); }

// The installed Abseil's StrCat does not take std::string_view (its
// absl::string_view is a separate type); everything else passes through.
template <typename T>
const T& Piece(const T& v) {
  return v;
}
inline absl::string_view Piece(std::string_view v) { return absl::string_view(v.data(), v.size()); }

absl::Status Invalid(FrameType t, const auto&... parts) {
  return absl::InvalidArgumentError(absl::StrCat(Name(t), ": ", Piece(parts)...));
}

// ---- Shared field codecs ---------------------------------------------------

inline void PutKey(WireWriter& w, const BlockKey& k) {
  w.Put<uint64_t>(k.hi);
  w.Put<uint64_t>(k.lo);
}
inline absl::Status GetKey(WireReader& r, BlockKey* k, std::string_view field) {
  KVF_RETURN_IF_ERROR(r.Get(&k->hi, field));
  return r.Get(&k->lo, field);
}
inline void PutVersion(WireWriter& w, const Version& v) {
  w.Put<uint64_t>(v.epoch);
  w.Put<uint64_t>(v.counter);
}
inline void PutKeyRef(WireWriter& w, const KeyRef& k) {
  PutKey(w, k.key);
  w.Put<uint64_t>(k.placement_hash);
}
inline absl::Status GetKeyRef(WireReader& r, KeyRef* k) {
  KVF_RETURN_IF_ERROR(GetKey(r, &k->key, "key"));
  return r.Get(&k->placement_hash, "placement hash");
}
inline absl::Status GetVersion(WireReader& r, Version* v, std::string_view field) {
  KVF_RETURN_IF_ERROR(r.Get(&v->epoch, field));
  return r.Get(&v->counter, field);
}
inline absl::Status GetCodec(WireReader& r, FrameType t, size_t i, CodecId* codec) {
  uint8_t b = 0;
  KVF_RETURN_IF_ERROR(r.Get(&b, "codec"));
  auto c = CodecFromWire(b);
  if (!c.ok()) return Invalid(t, "entry ", i, ": codec byte ", b, ": ", c.status().message());
  *codec = *c;
  return absl::OkStatus();
}
inline absl::Status GetCode(WireReader& r, FrameType t, size_t i, absl::StatusCode* code) {
  uint32_t c = 0;
  KVF_RETURN_IF_ERROR(r.Get(&c, "status code"));
  if (c > kMaxStatusCode)
    return Invalid(t, "entry ", i, ": status code ", c, " is not an absl code");
  *code = static_cast<absl::StatusCode>(c);
  return absl::OkStatus();
}
inline absl::Status CheckCode(FrameType t, size_t i, absl::StatusCode code) {
  const auto c = static_cast<uint32_t>(code);
  if (c > kMaxStatusCode)
    return Invalid(t, "entry ", i, ": status code ", c, " is not an absl code");
  return absl::OkStatus();
}
inline absl::Status CheckCodec(FrameType t, size_t i, CodecId codec) {
  if (!CodecFromWire(static_cast<uint8_t>(codec)).ok()) {
    return Invalid(t, "entry ", i, ": unknown codec ", static_cast<int>(codec));
  }
  return absl::OkStatus();
}

inline absl::Status CheckCount(FrameType t, std::string_view what, size_t count, size_t max) {
  if (count > max) return Invalid(t, what, " count ", count, " exceeds ", max);
  return absl::OkStatus();
}

// The body must be exactly `fixed + count * entry` bytes.
inline absl::Status CheckBodySize(FrameType t, std::string_view what, size_t body, size_t fixed,
                           size_t count, size_t entry) {
  const size_t want = fixed + count * entry;  // count is bounded: no overflow
  if (body != want) {
    return Invalid(t, "body of ", body, " bytes does not match ", what, " count ", count,
                   " (needs ", want, ")");
  }
  return absl::OkStatus();
}

// A location must name a descriptor of the response and lie inside it; in a
// response without descriptors (a tenant's, read and written through the
// agent) it is {0, 0, the block's size}.
inline absl::Status CheckLocation(FrameType t, size_t i, const BlockLocation& loc,
                           const std::vector<RemoteDescriptor>& descriptors) {
  if (descriptors.empty()) {
    if (loc.descriptor_index != 0 || loc.offset != 0 || loc.size == 0) {
      return Invalid(t, "entry ", i, ": a location without descriptors must be {0, 0, size}");
    }
    return absl::OkStatus();
  }
  if (loc.descriptor_index >= descriptors.size()) {
    return Invalid(t, "entry ", i, ": descriptor index ", loc.descriptor_index, " out of range (",
                   descriptors.size(), " descriptors)");
  }
  if (loc.size == 0) return Invalid(t, "entry ", i, ": size 0");
  const uint64_t region = descriptors[loc.descriptor_index].size;
  if (loc.offset > region || loc.size > region - loc.offset) {
    return Invalid(t, "entry ", i, ": range [", loc.offset, ", +", loc.size,
                   ") outside descriptor ", loc.descriptor_index, " of ", region, " bytes");
  }
  return absl::OkStatus();
}

inline void PutLocation(WireWriter& w, const BlockLocation& loc) {
  w.Put<uint32_t>(loc.descriptor_index);
  w.Put<uint32_t>(loc.size);
  w.Put<uint64_t>(loc.offset);
}
inline absl::Status GetLocation(WireReader& r, BlockLocation* loc) {
  KVF_RETURN_IF_ERROR(r.Get(&loc->descriptor_index, "descriptor index"));
  KVF_RETURN_IF_ERROR(r.Get(&loc->size, "size"));
  return r.Get(&loc->offset, "offset");
}

// Descriptors: u32 length | RemoteDescriptor::Serialize() bytes, each.
inline absl::Status PutDescriptors(WireWriter& w, FrameType t,
                            const std::vector<RemoteDescriptor>& descriptors) {
  for (size_t i = 0; i < descriptors.size(); ++i) {
    const std::string bytes = descriptors[i].Serialize();
    if (auto back = RemoteDescriptor::Parse(bytes); !back.ok()) {
      return Invalid(t, "descriptor ", i, ": ", back.status().message());
    }
    w.Put<uint32_t>(static_cast<uint32_t>(bytes.size()));
    w.Bytes(bytes);
  }
  return absl::OkStatus();
}
inline absl::Status GetDescriptors(WireReader& r, FrameType t, size_t count,
                            std::vector<RemoteDescriptor>* out) {
  out->reserve(count);
  for (size_t i = 0; i < count; ++i) {
    uint32_t length = 0;
    std::string_view bytes;
    KVF_RETURN_IF_ERROR(r.Get(&length, "descriptor length"));
    KVF_RETURN_IF_ERROR(r.Bytes(length, &bytes, "descriptor"));
    auto d = RemoteDescriptor::Parse(bytes);
    if (!d.ok()) return Invalid(t, "descriptor ", i, ": ", d.status().message());
    // Parse checks a checksum but not every reserved bit; insist on the one
    // encoding so a decoded frame re-encodes to the same bytes.
    if (d->Serialize() != bytes) return Invalid(t, "descriptor ", i, ": not in canonical form");
    out->push_back(*std::move(d));
  }
  return absl::OkStatus();
}

inline bool SameDescriptors(const std::vector<RemoteDescriptor>& a,
                     const std::vector<RemoteDescriptor>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i].Serialize() != b[i].Serialize()) return false;
  }
  return true;
}

// ---- Frame envelope ---------------------------------------------------------

// Writes the header, then the body by `body(w)`, patches the body length and
// checks the frame fits a transport message.
template <typename BodyFn>
absl::StatusOr<std::string> EncodeFrame(FrameType type, const FrameHeader& h, size_t body_hint,
                                        BodyFn&& body) {
  std::string out;
  out.reserve(kFrameHeaderBytes + body_hint);
  WireWriter w(&out);
  w.Put<uint32_t>(kFrameMagic);
  w.Put<uint16_t>(kProtocolVersion);
  w.Put<uint16_t>(static_cast<uint16_t>(type));
  w.Put<uint64_t>(h.request_id);
  w.Put<uint64_t>(h.sender_epoch);
  w.Put<uint64_t>(h.namespace_id);
  w.Put<uint64_t>(h.layout_fingerprint);
  w.Put<uint64_t>(h.session);
  w.Put<uint32_t>(0);  // body bytes, patched below
  KVF_RETURN_IF_ERROR(body(w));
  if (out.size() > kMaxMessageBytes) {
    return Invalid(type, "frame of ", out.size(), " bytes exceeds kMaxMessageBytes (",
                   kMaxMessageBytes, ")");
  }
  const auto body_bytes = static_cast<uint32_t>(out.size() - kFrameHeaderBytes);
  for (size_t i = 0; i < 4; ++i) out[kBodyBytesOffset + i] = static_cast<char>(body_bytes >> (8 * i));
  return out;
}

// Validates the header of a frame of `expected` type; returns its body.
inline absl::StatusOr<std::string_view> OpenFrame(std::string_view frame, FrameType expected,
                                           FrameHeader* header) {
  KVF_ASSIGN_OR_RETURN(ParsedHeader parsed, DecodeHeader(frame));
  if (parsed.type != expected) {
    return absl::InvalidArgumentError(
        absl::StrCat("expected a ", Name(expected), " frame, got type ", Name(parsed.type)));
  }
  *header = parsed.header;
  return frame.substr(kFrameHeaderBytes);
}

// ---- Keys (lookup, get and remove requests) ----------------------------------

inline absl::StatusOr<std::string> EncodeKeys(FrameType t, const FrameHeader& h,
                                       const std::vector<KeyRef>& keys, size_t max) {
  KVF_RETURN_IF_ERROR(CheckCount(t, "key", keys.size(), max));
  return EncodeFrame(t, h, 4 + keys.size() * kKeyRefBytes, [&](WireWriter& w) {
    w.Put<uint32_t>(static_cast<uint32_t>(keys.size()));
    for (const KeyRef& k : keys) PutKeyRef(w, k);
    return absl::OkStatus();
  });
}

inline absl::Status DecodeKeys(FrameType t, std::string_view frame, FrameHeader* h,
                        std::vector<KeyRef>* keys, size_t max) {
  KVF_ASSIGN_OR_RETURN(std::string_view body, OpenFrame(frame, t, h));
  WireReader r(body, FrameTypeName(t));
  uint32_t count = 0;
  KVF_RETURN_IF_ERROR(r.Get(&count, "key count"));
  KVF_RETURN_IF_ERROR(CheckCount(t, "key", count, max));
  KVF_RETURN_IF_ERROR(CheckBodySize(t, "key", body.size(), 4, count, kKeyRefBytes));
  keys->resize(count);
  for (KeyRef& k : *keys) KVF_RETURN_IF_ERROR(GetKeyRef(r, &k));
  return r.ExpectEnd();
}

}  // namespace kvf::protocol::internal

#endif  // KVF_PROTOCOL_INTERNAL_FRAME_CODEC_H_
