#include "node/protocol/frames.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "node/protocol/internal/wire_io.h"

namespace kvf::protocol {
namespace {

using internal::WireReader;
using internal::WireWriter;

// Body sizes (docs/protocol.md has the tables).
constexpr size_t kKeyBytes = 16;
constexpr size_t kKeyRefBytes = kKeyBytes + 8;
constexpr size_t kVersionBytes = 16;
constexpr size_t kLookupEntryBytes = 24;
constexpr size_t kGetEntryBytes = 40;
constexpr size_t kReserveEntryBytes = 68;
constexpr size_t kReserveResultBytes = 48;
constexpr size_t kCommitResultBytes = 24;
constexpr size_t kInvalidationBytes = 32;
constexpr size_t kGetResponseFixedBytes = 24;
constexpr size_t kReserveResponseFixedBytes = 8;
// A UCX descriptor (rkey of a few hundred bytes) is well under this; the rest
// of a maximal Get/Reserve response leaves at least this much per descriptor.
constexpr size_t kDescriptorBudget = 1024;

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
constexpr size_t kRegisterNamespaceMaxBytes =
    2 * (4 + NamespaceSpec::kMaxStringLength) + 4 * 4 + 1 + 2 * 4 + 1 + 4;
static_assert(kFrameHeaderBytes + kRegisterNamespaceMaxBytes <= kMaxMessageBytes);

constexpr uint32_t kMaxStatusCode = static_cast<uint32_t>(absl::StatusCode::kUnauthenticated);

std::string Name(FrameType t) { return std::string(FrameTypeName(t)); }

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

void PutKey(WireWriter& w, const BlockKey& k) {
  w.Put<uint64_t>(k.hi);
  w.Put<uint64_t>(k.lo);
}
absl::Status GetKey(WireReader& r, BlockKey* k, std::string_view field) {
  KVF_RETURN_IF_ERROR(r.Get(&k->hi, field));
  return r.Get(&k->lo, field);
}
void PutVersion(WireWriter& w, const Version& v) {
  w.Put<uint64_t>(v.epoch);
  w.Put<uint64_t>(v.counter);
}
void PutKeyRef(WireWriter& w, const KeyRef& k) {
  PutKey(w, k.key);
  w.Put<uint64_t>(k.placement_hash);
}
absl::Status GetKeyRef(WireReader& r, KeyRef* k) {
  KVF_RETURN_IF_ERROR(GetKey(r, &k->key, "key"));
  return r.Get(&k->placement_hash, "placement hash");
}
absl::Status GetVersion(WireReader& r, Version* v, std::string_view field) {
  KVF_RETURN_IF_ERROR(r.Get(&v->epoch, field));
  return r.Get(&v->counter, field);
}
absl::Status GetCodec(WireReader& r, FrameType t, size_t i, CodecId* codec) {
  uint8_t b = 0;
  KVF_RETURN_IF_ERROR(r.Get(&b, "codec"));
  auto c = CodecFromWire(b);
  if (!c.ok()) return Invalid(t, "entry ", i, ": codec byte ", b, ": ", c.status().message());
  *codec = *c;
  return absl::OkStatus();
}
absl::Status GetCode(WireReader& r, FrameType t, size_t i, absl::StatusCode* code) {
  uint32_t c = 0;
  KVF_RETURN_IF_ERROR(r.Get(&c, "status code"));
  if (c > kMaxStatusCode)
    return Invalid(t, "entry ", i, ": status code ", c, " is not an absl code");
  *code = static_cast<absl::StatusCode>(c);
  return absl::OkStatus();
}
absl::Status CheckCode(FrameType t, size_t i, absl::StatusCode code) {
  const auto c = static_cast<uint32_t>(code);
  if (c > kMaxStatusCode)
    return Invalid(t, "entry ", i, ": status code ", c, " is not an absl code");
  return absl::OkStatus();
}
absl::Status CheckCodec(FrameType t, size_t i, CodecId codec) {
  if (!CodecFromWire(static_cast<uint8_t>(codec)).ok()) {
    return Invalid(t, "entry ", i, ": unknown codec ", static_cast<int>(codec));
  }
  return absl::OkStatus();
}

absl::Status CheckCount(FrameType t, std::string_view what, size_t count, size_t max) {
  if (count > max) return Invalid(t, what, " count ", count, " exceeds ", max);
  return absl::OkStatus();
}

// The body must be exactly `fixed + count * entry` bytes.
absl::Status CheckBodySize(FrameType t, std::string_view what, size_t body, size_t fixed,
                           size_t count, size_t entry) {
  const size_t want = fixed + count * entry;  // count is bounded: no overflow
  if (body != want) {
    return Invalid(t, "body of ", body, " bytes does not match ", what, " count ", count,
                   " (needs ", want, ")");
  }
  return absl::OkStatus();
}

// A location must name a descriptor of the response and lie inside it.
absl::Status CheckLocation(FrameType t, size_t i, const BlockLocation& loc,
                           const std::vector<RemoteDescriptor>& descriptors) {
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

void PutLocation(WireWriter& w, const BlockLocation& loc) {
  w.Put<uint32_t>(loc.descriptor_index);
  w.Put<uint32_t>(loc.size);
  w.Put<uint64_t>(loc.offset);
}
absl::Status GetLocation(WireReader& r, BlockLocation* loc) {
  KVF_RETURN_IF_ERROR(r.Get(&loc->descriptor_index, "descriptor index"));
  KVF_RETURN_IF_ERROR(r.Get(&loc->size, "size"));
  return r.Get(&loc->offset, "offset");
}

// Descriptors: u32 length | RemoteDescriptor::Serialize() bytes, each.
absl::Status PutDescriptors(WireWriter& w, FrameType t,
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
absl::Status GetDescriptors(WireReader& r, FrameType t, size_t count,
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

bool SameDescriptors(const std::vector<RemoteDescriptor>& a,
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
  w.Put<uint32_t>(0);  // body bytes, patched below
  KVF_RETURN_IF_ERROR(body(w));
  if (out.size() > kMaxMessageBytes) {
    return Invalid(type, "frame of ", out.size(), " bytes exceeds kMaxMessageBytes (",
                   kMaxMessageBytes, ")");
  }
  const auto body_bytes = static_cast<uint32_t>(out.size() - kFrameHeaderBytes);
  for (size_t i = 0; i < 4; ++i) out[40 + i] = static_cast<char>(body_bytes >> (8 * i));
  return out;
}

// Validates the header of a frame of `expected` type; returns its body.
absl::StatusOr<std::string_view> OpenFrame(std::string_view frame, FrameType expected,
                                           FrameHeader* header) {
  KVF_ASSIGN_OR_RETURN(ParsedHeader parsed, DecodeHeader(frame));
  if (parsed.type != expected) {
    return absl::InvalidArgumentError(
        absl::StrCat("expected a ", Name(expected), " frame, got type ", Name(parsed.type)));
  }
  *header = parsed.header;
  return frame.substr(kFrameHeaderBytes);
}

}  // namespace

std::string_view FrameTypeName(FrameType type) {
  switch (type) {
    case FrameType::kLookupRequest:
      return "LookupRequest";
    case FrameType::kLookupResponse:
      return "LookupResponse";
    case FrameType::kGetRequest:
      return "GetRequest";
    case FrameType::kGetResponse:
      return "GetResponse";
    case FrameType::kReleaseRequest:
      return "ReleaseRequest";
    case FrameType::kReserveRequest:
      return "ReserveRequest";
    case FrameType::kReserveResponse:
      return "ReserveResponse";
    case FrameType::kCommitRequest:
      return "CommitRequest";
    case FrameType::kCommitResponse:
      return "CommitResponse";
    case FrameType::kRemoveRequest:
      return "RemoveRequest";
    case FrameType::kRemoveResponse:
      return "RemoveResponse";
    case FrameType::kInvalidateRequest:
      return "InvalidateRequest";
    case FrameType::kAckResponse:
      return "AckResponse";
    case FrameType::kErrorResponse:
      return "ErrorResponse";
    case FrameType::kRegisterNamespaceRequest:
      return "RegisterNamespaceRequest";
  }
  return "unknown";
}

absl::StatusOr<ParsedHeader> DecodeHeader(std::string_view frame) {
  if (frame.size() > kMaxMessageBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "frame of ", frame.size(), " bytes exceeds kMaxMessageBytes (", kMaxMessageBytes, ")"));
  }
  WireReader r(frame, "frame header");
  uint32_t magic = 0, body_bytes = 0;
  uint16_t version = 0, type = 0;
  ParsedHeader p;
  if (frame.size() < kFrameHeaderBytes) {
    return absl::DataLossError(absl::StrCat("frame header: truncated (", frame.size(), " of ",
                                            kFrameHeaderBytes, " bytes)"));
  }
  KVF_RETURN_IF_ERROR(r.Get(&magic, "magic"));
  KVF_RETURN_IF_ERROR(r.Get(&version, "version"));
  KVF_RETURN_IF_ERROR(r.Get(&type, "type"));
  KVF_RETURN_IF_ERROR(r.Get(&p.header.request_id, "request id"));
  KVF_RETURN_IF_ERROR(r.Get(&p.header.sender_epoch, "sender epoch"));
  KVF_RETURN_IF_ERROR(r.Get(&p.header.namespace_id, "namespace id"));
  KVF_RETURN_IF_ERROR(r.Get(&p.header.layout_fingerprint, "layout fingerprint"));
  KVF_RETURN_IF_ERROR(r.Get(&body_bytes, "body bytes"));
  if (magic != kFrameMagic) {
    return absl::InvalidArgumentError(
        absl::StrCat("frame header: bad magic 0x", absl::Hex(magic), " (want \"KVFD\")"));
  }
  if (version != kProtocolVersion) {
    return absl::InvalidArgumentError(absl::StrCat("frame header: unsupported version ", version,
                                                   " (this build speaks ", kProtocolVersion, ")"));
  }
  if (type == 0 || type > kMaxFrameType) {
    return absl::InvalidArgumentError(absl::StrCat("frame header: unknown type ", type));
  }
  p.type = static_cast<FrameType>(type);
  if (body_bytes > r.remaining()) {
    return absl::DataLossError(absl::StrCat("frame header: body bytes ", body_bytes,
                                            " but the frame holds ", r.remaining(),
                                            " (truncated)"));
  }
  if (body_bytes < r.remaining()) {
    return absl::InvalidArgumentError(absl::StrCat("frame header: body bytes ", body_bytes,
                                                   " but the frame holds ", r.remaining(),
                                                   " (trailing bytes)"));
  }
  return p;
}

// ---- RegisterNamespace --------------------------------------------------------

namespace {

// Everything Decode checks besides the encoding itself: a valid spec that the
// header names by id and layout fingerprint.
absl::Status CheckRegisterNamespace(const FrameHeader& h, const NamespaceSpec& spec) {
  constexpr FrameType t = FrameType::kRegisterNamespaceRequest;
  if (absl::Status s = spec.Validate(); !s.ok()) {
    return Invalid(t, "spec: ", std::string(s.message()));
  }
  if (h.namespace_id != spec.Id()) {
    return Invalid(t, "header namespace id 0x", absl::Hex(h.namespace_id),
                   " is not the spec's id 0x", absl::Hex(spec.Id()));
  }
  if (h.layout_fingerprint != spec.layout.Fingerprint()) {
    return Invalid(t, "header layout fingerprint 0x", absl::Hex(h.layout_fingerprint),
                   " is not the spec layout's 0x", absl::Hex(spec.layout.Fingerprint()));
  }
  return absl::OkStatus();
}

void PutString(WireWriter& w, const std::string& s) {
  w.Put<uint32_t>(static_cast<uint32_t>(s.size()));
  w.Bytes(s);
}
absl::Status GetString(WireReader& r, FrameType t, std::string_view field, std::string* out) {
  uint32_t length = 0;
  KVF_RETURN_IF_ERROR(r.Get(&length, field));
  if (length > NamespaceSpec::kMaxStringLength) {
    return Invalid(t, std::string(field), " length ", length, " exceeds ",
                   NamespaceSpec::kMaxStringLength);
  }
  std::string_view bytes;
  KVF_RETURN_IF_ERROR(r.Bytes(length, &bytes, field));
  *out = std::string(bytes);
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::string> RegisterNamespaceRequest::Encode() const {
  KVF_RETURN_IF_ERROR(CheckRegisterNamespace(header, spec));
  const size_t hint = 4 + spec.model_id.size() + 4 * 4 + 1 + 2 * 4 + 4 + spec.tenant.size() + 1 + 4;
  return EncodeFrame(kType, header, hint, [&](WireWriter& w) {
    PutString(w, spec.model_id);
    w.Put<uint32_t>(spec.layout.num_layers);
    w.Put<uint32_t>(spec.layout.num_kv_heads);
    w.Put<uint32_t>(spec.layout.head_dim);
    w.Put<uint32_t>(spec.layout.block_tokens);
    w.Put<uint8_t>(static_cast<uint8_t>(spec.layout.dtype));
    w.Put<uint32_t>(spec.tp_rank);
    w.Put<uint32_t>(spec.tp_size);
    PutString(w, spec.tenant);
    w.Put<uint8_t>(static_cast<uint8_t>(spec.hash));
    w.Put<uint32_t>(spec.segment_blocks);
    return absl::OkStatus();
  });
}
absl::StatusOr<RegisterNamespaceRequest> RegisterNamespaceRequest::Decode(std::string_view frame) {
  RegisterNamespaceRequest m;
  KVF_ASSIGN_OR_RETURN(std::string_view body, OpenFrame(frame, kType, &m.header));
  WireReader r(body, FrameTypeName(kType));
  NamespaceSpec& spec = m.spec;
  uint8_t dtype = 0, hash = 0;
  KVF_RETURN_IF_ERROR(GetString(r, kType, "model_id", &spec.model_id));
  KVF_RETURN_IF_ERROR(r.Get(&spec.layout.num_layers, "num_layers"));
  KVF_RETURN_IF_ERROR(r.Get(&spec.layout.num_kv_heads, "num_kv_heads"));
  KVF_RETURN_IF_ERROR(r.Get(&spec.layout.head_dim, "head_dim"));
  KVF_RETURN_IF_ERROR(r.Get(&spec.layout.block_tokens, "block_tokens"));
  KVF_RETURN_IF_ERROR(r.Get(&dtype, "dtype"));
  KVF_RETURN_IF_ERROR(r.Get(&spec.tp_rank, "tp_rank"));
  KVF_RETURN_IF_ERROR(r.Get(&spec.tp_size, "tp_size"));
  KVF_RETURN_IF_ERROR(GetString(r, kType, "tenant", &spec.tenant));
  KVF_RETURN_IF_ERROR(r.Get(&hash, "hash"));
  KVF_RETURN_IF_ERROR(r.Get(&spec.segment_blocks, "segment_blocks"));
  KVF_RETURN_IF_ERROR(r.ExpectEnd());
  // Any byte fits the enums' storage; Validate rejects the unknown ones.
  spec.layout.dtype = static_cast<DType>(dtype);
  spec.hash = static_cast<HashAlgorithm>(hash);
  KVF_RETURN_IF_ERROR(CheckRegisterNamespace(m.header, spec));
  return m;
}
bool operator==(const RegisterNamespaceRequest& a, const RegisterNamespaceRequest& b) {
  const NamespaceSpec& x = a.spec;
  const NamespaceSpec& y = b.spec;
  return a.header == b.header && x.model_id == y.model_id && x.layout == y.layout &&
         x.tp_rank == y.tp_rank && x.tp_size == y.tp_size && x.tenant == y.tenant &&
         x.hash == y.hash && x.segment_blocks == y.segment_blocks;
}

// ---- Lookup -----------------------------------------------------------------

namespace {

absl::StatusOr<std::string> EncodeKeys(FrameType t, const FrameHeader& h,
                                       const std::vector<KeyRef>& keys, size_t max) {
  KVF_RETURN_IF_ERROR(CheckCount(t, "key", keys.size(), max));
  return EncodeFrame(t, h, 4 + keys.size() * kKeyRefBytes, [&](WireWriter& w) {
    w.Put<uint32_t>(static_cast<uint32_t>(keys.size()));
    for (const KeyRef& k : keys) PutKeyRef(w, k);
    return absl::OkStatus();
  });
}

absl::Status DecodeKeys(FrameType t, std::string_view frame, FrameHeader* h,
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

}  // namespace

absl::StatusOr<std::string> LookupRequest::Encode() const {
  return EncodeKeys(kType, header, keys, kMaxLookupKeys);
}
absl::StatusOr<LookupRequest> LookupRequest::Decode(std::string_view frame) {
  LookupRequest m;
  KVF_RETURN_IF_ERROR(DecodeKeys(kType, frame, &m.header, &m.keys, kMaxLookupKeys));
  return m;
}

absl::StatusOr<std::string> LookupResponse::Encode() const {
  KVF_RETURN_IF_ERROR(CheckCount(kType, "entry", entries.size(), kMaxLookupKeys));
  for (size_t i = 0; i < entries.size(); ++i) {
    KVF_RETURN_IF_ERROR(CheckCodec(kType, i, entries[i].codec));
  }
  return EncodeFrame(kType, header, 4 + entries.size() * kLookupEntryBytes, [&](WireWriter& w) {
    w.Put<uint32_t>(static_cast<uint32_t>(entries.size()));
    for (const LookupEntry& e : entries) {
      w.Put<uint8_t>(e.held ? 1 : 0);
      w.Put<uint8_t>(static_cast<uint8_t>(e.codec));
      w.Zeros(2);
      w.Put<uint32_t>(e.size);
      PutVersion(w, e.version);
    }
    return absl::OkStatus();
  });
}
absl::StatusOr<LookupResponse> LookupResponse::Decode(std::string_view frame) {
  LookupResponse m;
  KVF_ASSIGN_OR_RETURN(std::string_view body, OpenFrame(frame, kType, &m.header));
  WireReader r(body, FrameTypeName(kType));
  uint32_t count = 0;
  KVF_RETURN_IF_ERROR(r.Get(&count, "entry count"));
  KVF_RETURN_IF_ERROR(CheckCount(kType, "entry", count, kMaxLookupKeys));
  KVF_RETURN_IF_ERROR(CheckBodySize(kType, "entry", body.size(), 4, count, kLookupEntryBytes));
  m.entries.resize(count);
  for (size_t i = 0; i < count; ++i) {
    LookupEntry& e = m.entries[i];
    KVF_RETURN_IF_ERROR(r.Bool(&e.held, "held"));
    KVF_RETURN_IF_ERROR(GetCodec(r, kType, i, &e.codec));
    KVF_RETURN_IF_ERROR(r.Reserved(2, "after codec"));
    KVF_RETURN_IF_ERROR(r.Get(&e.size, "size"));
    KVF_RETURN_IF_ERROR(GetVersion(r, &e.version, "version"));
  }
  KVF_RETURN_IF_ERROR(r.ExpectEnd());
  return m;
}

// ---- Get / Release ------------------------------------------------------------

absl::StatusOr<std::string> GetRequest::Encode() const {
  KVF_RETURN_IF_ERROR(CheckCount(kType, "key", keys.size(), kMaxGetKeys));
  if (!has_min_version && min_version != Version{}) {
    return Invalid(kType, "min_version set without has_min_version");
  }
  return EncodeFrame(kType, header, 24 + keys.size() * kKeyRefBytes, [&](WireWriter& w) {
    w.Put<uint32_t>(static_cast<uint32_t>(keys.size()));
    w.Put<uint8_t>(has_min_version ? 1 : 0);
    w.Zeros(3);
    PutVersion(w, min_version);
    for (const KeyRef& k : keys) PutKeyRef(w, k);
    return absl::OkStatus();
  });
}
absl::StatusOr<GetRequest> GetRequest::Decode(std::string_view frame) {
  GetRequest m;
  KVF_ASSIGN_OR_RETURN(std::string_view body, OpenFrame(frame, kType, &m.header));
  WireReader r(body, FrameTypeName(kType));
  uint32_t count = 0;
  KVF_RETURN_IF_ERROR(r.Get(&count, "key count"));
  KVF_RETURN_IF_ERROR(CheckCount(kType, "key", count, kMaxGetKeys));
  KVF_RETURN_IF_ERROR(CheckBodySize(kType, "key", body.size(), 24, count, kKeyRefBytes));
  KVF_RETURN_IF_ERROR(r.Bool(&m.has_min_version, "has_min_version"));
  KVF_RETURN_IF_ERROR(r.Reserved(3, "after has_min_version"));
  KVF_RETURN_IF_ERROR(GetVersion(r, &m.min_version, "min_version"));
  if (!m.has_min_version && m.min_version != Version{}) {
    return Invalid(kType, "min_version ", m.min_version.ToString(), " set without has_min_version");
  }
  m.keys.resize(count);
  for (KeyRef& k : m.keys) KVF_RETURN_IF_ERROR(GetKeyRef(r, &k));
  KVF_RETURN_IF_ERROR(r.ExpectEnd());
  return m;
}

namespace {
absl::Status CheckGetEntry(size_t i, const GetEntry& e,
                           const std::vector<RemoteDescriptor>& descriptors) {
  constexpr FrameType t = FrameType::kGetResponse;
  KVF_RETURN_IF_ERROR(CheckCode(t, i, e.code));
  KVF_RETURN_IF_ERROR(CheckCodec(t, i, e.codec));
  if (e.code != absl::StatusCode::kOk) {
    if (e.location != BlockLocation{} || e.version != Version{} || e.codec != CodecId::kNone) {
      return Invalid(t, "entry ", i, ": error entry carries a location, version or codec");
    }
    return absl::OkStatus();
  }
  return CheckLocation(t, i, e.location, descriptors);
}
}  // namespace

absl::StatusOr<std::string> GetResponse::Encode() const {
  KVF_RETURN_IF_ERROR(CheckCount(kType, "entry", entries.size(), kMaxGetKeys));
  KVF_RETURN_IF_ERROR(CheckCount(kType, "descriptor", descriptors.size(), kMaxDescriptors));
  for (size_t i = 0; i < entries.size(); ++i) {
    KVF_RETURN_IF_ERROR(CheckGetEntry(i, entries[i], descriptors));
  }
  const size_t hint = kGetResponseFixedBytes + entries.size() * kGetEntryBytes +
                      descriptors.size() * kDescriptorBudget / 2;
  return EncodeFrame(kType, header, hint, [&](WireWriter& w) {
    w.Put<uint64_t>(lease_id);
    w.Put<uint64_t>(lease_ttl_us);
    w.Put<uint32_t>(static_cast<uint32_t>(entries.size()));
    w.Put<uint32_t>(static_cast<uint32_t>(descriptors.size()));
    for (const GetEntry& e : entries) {
      w.Put<uint32_t>(static_cast<uint32_t>(e.code));
      PutLocation(w, e.location);
      w.Put<uint8_t>(static_cast<uint8_t>(e.codec));
      w.Zeros(3);
      PutVersion(w, e.version);
    }
    return PutDescriptors(w, kType, descriptors);
  });
}
absl::StatusOr<GetResponse> GetResponse::Decode(std::string_view frame) {
  GetResponse m;
  KVF_ASSIGN_OR_RETURN(std::string_view body, OpenFrame(frame, kType, &m.header));
  WireReader r(body, FrameTypeName(kType));
  uint32_t count = 0, num_descriptors = 0;
  KVF_RETURN_IF_ERROR(r.Get(&m.lease_id, "lease id"));
  KVF_RETURN_IF_ERROR(r.Get(&m.lease_ttl_us, "lease ttl"));
  KVF_RETURN_IF_ERROR(r.Get(&count, "entry count"));
  KVF_RETURN_IF_ERROR(r.Get(&num_descriptors, "descriptor count"));
  KVF_RETURN_IF_ERROR(CheckCount(kType, "entry", count, kMaxGetKeys));
  KVF_RETURN_IF_ERROR(CheckCount(kType, "descriptor", num_descriptors, kMaxDescriptors));
  if (r.remaining() < size_t{count} * kGetEntryBytes) {
    return Invalid(kType, "body of ", body.size(), " bytes too short for entry count ", count);
  }
  m.entries.resize(count);
  for (size_t i = 0; i < count; ++i) {
    GetEntry& e = m.entries[i];
    KVF_RETURN_IF_ERROR(GetCode(r, kType, i, &e.code));
    KVF_RETURN_IF_ERROR(GetLocation(r, &e.location));
    KVF_RETURN_IF_ERROR(GetCodec(r, kType, i, &e.codec));
    KVF_RETURN_IF_ERROR(r.Reserved(3, "after codec"));
    KVF_RETURN_IF_ERROR(GetVersion(r, &e.version, "version"));
  }
  KVF_RETURN_IF_ERROR(GetDescriptors(r, kType, num_descriptors, &m.descriptors));
  KVF_RETURN_IF_ERROR(r.ExpectEnd());
  for (size_t i = 0; i < count; ++i) {
    KVF_RETURN_IF_ERROR(CheckGetEntry(i, m.entries[i], m.descriptors));
  }
  return m;
}
bool operator==(const GetResponse& a, const GetResponse& b) {
  return a.header == b.header && a.lease_id == b.lease_id && a.lease_ttl_us == b.lease_ttl_us &&
         a.entries == b.entries && SameDescriptors(a.descriptors, b.descriptors);
}

absl::StatusOr<std::string> ReleaseRequest::Encode() const {
  return EncodeFrame(kType, header, 8, [&](WireWriter& w) {
    w.Put<uint64_t>(lease_id);
    return absl::OkStatus();
  });
}
absl::StatusOr<ReleaseRequest> ReleaseRequest::Decode(std::string_view frame) {
  ReleaseRequest m;
  KVF_ASSIGN_OR_RETURN(std::string_view body, OpenFrame(frame, kType, &m.header));
  WireReader r(body, FrameTypeName(kType));
  KVF_RETURN_IF_ERROR(r.Get(&m.lease_id, "lease id"));
  KVF_RETURN_IF_ERROR(r.ExpectEnd());
  return m;
}

// ---- Reserve / Commit ---------------------------------------------------------

absl::StatusOr<std::string> ReserveRequest::Encode() const {
  KVF_RETURN_IF_ERROR(CheckCount(kType, "entry", entries.size(), kMaxReserveKeys));
  for (size_t i = 0; i < entries.size(); ++i) {
    KVF_RETURN_IF_ERROR(CheckCodec(kType, i, entries[i].codec));
    if (!entries[i].has_version && entries[i].version != Version{}) {
      return Invalid(kType, "entry ", i, ": version set without has_version");
    }
  }
  return EncodeFrame(kType, header, 4 + entries.size() * kReserveEntryBytes, [&](WireWriter& w) {
    w.Put<uint32_t>(static_cast<uint32_t>(entries.size()));
    for (const ReserveEntry& e : entries) {
      PutKey(w, e.key);
      w.Put<uint64_t>(e.placement_hash);
      PutKey(w, e.parent);
      w.Put<uint32_t>(e.size);
      w.Put<uint32_t>(e.depth);
      w.Put<uint8_t>(static_cast<uint8_t>(e.codec));
      w.Put<uint8_t>(e.is_mutable ? 1 : 0);
      w.Put<uint8_t>(e.has_version ? 1 : 0);
      w.Zeros(1);
      PutVersion(w, e.version);
    }
    return absl::OkStatus();
  });
}
absl::StatusOr<ReserveRequest> ReserveRequest::Decode(std::string_view frame) {
  ReserveRequest m;
  KVF_ASSIGN_OR_RETURN(std::string_view body, OpenFrame(frame, kType, &m.header));
  WireReader r(body, FrameTypeName(kType));
  uint32_t count = 0;
  KVF_RETURN_IF_ERROR(r.Get(&count, "entry count"));
  KVF_RETURN_IF_ERROR(CheckCount(kType, "entry", count, kMaxReserveKeys));
  KVF_RETURN_IF_ERROR(CheckBodySize(kType, "entry", body.size(), 4, count, kReserveEntryBytes));
  m.entries.resize(count);
  for (size_t i = 0; i < count; ++i) {
    ReserveEntry& e = m.entries[i];
    KVF_RETURN_IF_ERROR(GetKey(r, &e.key, "key"));
    KVF_RETURN_IF_ERROR(r.Get(&e.placement_hash, "placement hash"));
    KVF_RETURN_IF_ERROR(GetKey(r, &e.parent, "parent"));
    KVF_RETURN_IF_ERROR(r.Get(&e.size, "size"));
    KVF_RETURN_IF_ERROR(r.Get(&e.depth, "depth"));
    KVF_RETURN_IF_ERROR(GetCodec(r, kType, i, &e.codec));
    KVF_RETURN_IF_ERROR(r.Bool(&e.is_mutable, "mutable"));
    KVF_RETURN_IF_ERROR(r.Bool(&e.has_version, "has_version"));
    KVF_RETURN_IF_ERROR(r.Reserved(1, "after has_version"));
    KVF_RETURN_IF_ERROR(GetVersion(r, &e.version, "version"));
    if (!e.has_version && e.version != Version{}) {
      return Invalid(kType, "entry ", i, ": version ", e.version.ToString(),
                     " set without has_version");
    }
  }
  KVF_RETURN_IF_ERROR(r.ExpectEnd());
  return m;
}

namespace {
absl::Status CheckReserveResult(size_t i, const ReserveResult& e,
                                const std::vector<RemoteDescriptor>& descriptors) {
  constexpr FrameType t = FrameType::kReserveResponse;
  KVF_RETURN_IF_ERROR(CheckCode(t, i, e.code));
  const bool no_reservation = e.reservation_id == 0 && e.location == BlockLocation{};
  if (e.code != absl::StatusCode::kOk) {
    if (e.already_present || e.version != Version{} || !no_reservation) {
      return Invalid(t, "entry ", i, ": error entry carries a result");
    }
    return absl::OkStatus();
  }
  if (e.already_present) {
    if (!no_reservation) return Invalid(t, "entry ", i, ": already_present with a reservation");
    return absl::OkStatus();
  }
  if (e.version != Version{}) return Invalid(t, "entry ", i, ": reservation carries a version");
  return CheckLocation(t, i, e.location, descriptors);
}
}  // namespace

absl::StatusOr<std::string> ReserveResponse::Encode() const {
  KVF_RETURN_IF_ERROR(CheckCount(kType, "result", results.size(), kMaxReserveKeys));
  KVF_RETURN_IF_ERROR(CheckCount(kType, "descriptor", descriptors.size(), kMaxDescriptors));
  for (size_t i = 0; i < results.size(); ++i) {
    KVF_RETURN_IF_ERROR(CheckReserveResult(i, results[i], descriptors));
  }
  const size_t hint = kReserveResponseFixedBytes + results.size() * kReserveResultBytes +
                      descriptors.size() * kDescriptorBudget / 2;
  return EncodeFrame(kType, header, hint, [&](WireWriter& w) {
    w.Put<uint32_t>(static_cast<uint32_t>(results.size()));
    w.Put<uint32_t>(static_cast<uint32_t>(descriptors.size()));
    for (const ReserveResult& e : results) {
      w.Put<uint32_t>(static_cast<uint32_t>(e.code));
      w.Put<uint8_t>(e.already_present ? 1 : 0);
      w.Zeros(3);
      PutVersion(w, e.version);
      w.Put<uint64_t>(e.reservation_id);
      PutLocation(w, e.location);
    }
    return PutDescriptors(w, kType, descriptors);
  });
}
absl::StatusOr<ReserveResponse> ReserveResponse::Decode(std::string_view frame) {
  ReserveResponse m;
  KVF_ASSIGN_OR_RETURN(std::string_view body, OpenFrame(frame, kType, &m.header));
  WireReader r(body, FrameTypeName(kType));
  uint32_t count = 0, num_descriptors = 0;
  KVF_RETURN_IF_ERROR(r.Get(&count, "result count"));
  KVF_RETURN_IF_ERROR(r.Get(&num_descriptors, "descriptor count"));
  KVF_RETURN_IF_ERROR(CheckCount(kType, "result", count, kMaxReserveKeys));
  KVF_RETURN_IF_ERROR(CheckCount(kType, "descriptor", num_descriptors, kMaxDescriptors));
  if (r.remaining() < size_t{count} * kReserveResultBytes) {
    return Invalid(kType, "body of ", body.size(), " bytes too short for result count ", count);
  }
  m.results.resize(count);
  for (size_t i = 0; i < count; ++i) {
    ReserveResult& e = m.results[i];
    KVF_RETURN_IF_ERROR(GetCode(r, kType, i, &e.code));
    KVF_RETURN_IF_ERROR(r.Bool(&e.already_present, "already_present"));
    KVF_RETURN_IF_ERROR(r.Reserved(3, "after already_present"));
    KVF_RETURN_IF_ERROR(GetVersion(r, &e.version, "version"));
    KVF_RETURN_IF_ERROR(r.Get(&e.reservation_id, "reservation id"));
    KVF_RETURN_IF_ERROR(GetLocation(r, &e.location));
  }
  KVF_RETURN_IF_ERROR(GetDescriptors(r, kType, num_descriptors, &m.descriptors));
  KVF_RETURN_IF_ERROR(r.ExpectEnd());
  for (size_t i = 0; i < count; ++i) {
    KVF_RETURN_IF_ERROR(CheckReserveResult(i, m.results[i], m.descriptors));
  }
  return m;
}
bool operator==(const ReserveResponse& a, const ReserveResponse& b) {
  return a.header == b.header && a.results == b.results &&
         SameDescriptors(a.descriptors, b.descriptors);
}

absl::StatusOr<std::string> CommitRequest::Encode() const {
  KVF_RETURN_IF_ERROR(CheckCount(kType, "reservation id", reservation_ids.size(), kMaxCommitIds));
  return EncodeFrame(kType, header, 8 + reservation_ids.size() * 8, [&](WireWriter& w) {
    w.Put<uint32_t>(static_cast<uint32_t>(reservation_ids.size()));
    w.Put<uint8_t>(no_fanout ? 1 : 0);
    w.Zeros(3);
    for (uint64_t id : reservation_ids) w.Put<uint64_t>(id);
    return absl::OkStatus();
  });
}
absl::StatusOr<CommitRequest> CommitRequest::Decode(std::string_view frame) {
  CommitRequest m;
  KVF_ASSIGN_OR_RETURN(std::string_view body, OpenFrame(frame, kType, &m.header));
  WireReader r(body, FrameTypeName(kType));
  uint32_t count = 0;
  KVF_RETURN_IF_ERROR(r.Get(&count, "reservation id count"));
  KVF_RETURN_IF_ERROR(CheckCount(kType, "reservation id", count, kMaxCommitIds));
  KVF_RETURN_IF_ERROR(CheckBodySize(kType, "reservation id", body.size(), 8, count, 8));
  KVF_RETURN_IF_ERROR(r.Bool(&m.no_fanout, "no_fanout"));
  KVF_RETURN_IF_ERROR(r.Reserved(3, "after no_fanout"));
  m.reservation_ids.resize(count);
  for (uint64_t& id : m.reservation_ids) KVF_RETURN_IF_ERROR(r.Get(&id, "reservation id"));
  KVF_RETURN_IF_ERROR(r.ExpectEnd());
  return m;
}

absl::StatusOr<std::string> CommitResponse::Encode() const {
  KVF_RETURN_IF_ERROR(CheckCount(kType, "result", results.size(), kMaxCommitIds));
  for (size_t i = 0; i < results.size(); ++i) {
    KVF_RETURN_IF_ERROR(CheckCode(kType, i, results[i].code));
    if (results[i].code != absl::StatusCode::kOk && results[i].version != Version{}) {
      return Invalid(kType, "entry ", i, ": error entry carries a version");
    }
  }
  return EncodeFrame(kType, header, 4 + results.size() * kCommitResultBytes, [&](WireWriter& w) {
    w.Put<uint32_t>(static_cast<uint32_t>(results.size()));
    for (const CommitResult& e : results) {
      w.Put<uint32_t>(static_cast<uint32_t>(e.code));
      w.Zeros(4);
      PutVersion(w, e.version);
    }
    return absl::OkStatus();
  });
}
absl::StatusOr<CommitResponse> CommitResponse::Decode(std::string_view frame) {
  CommitResponse m;
  KVF_ASSIGN_OR_RETURN(std::string_view body, OpenFrame(frame, kType, &m.header));
  WireReader r(body, FrameTypeName(kType));
  uint32_t count = 0;
  KVF_RETURN_IF_ERROR(r.Get(&count, "result count"));
  KVF_RETURN_IF_ERROR(CheckCount(kType, "result", count, kMaxCommitIds));
  KVF_RETURN_IF_ERROR(CheckBodySize(kType, "result", body.size(), 4, count, kCommitResultBytes));
  m.results.resize(count);
  for (size_t i = 0; i < count; ++i) {
    CommitResult& e = m.results[i];
    KVF_RETURN_IF_ERROR(GetCode(r, kType, i, &e.code));
    KVF_RETURN_IF_ERROR(r.Reserved(4, "after status code"));
    KVF_RETURN_IF_ERROR(GetVersion(r, &e.version, "version"));
    if (e.code != absl::StatusCode::kOk && e.version != Version{}) {
      return Invalid(kType, "entry ", i, ": error entry carries a version");
    }
  }
  KVF_RETURN_IF_ERROR(r.ExpectEnd());
  return m;
}

// ---- Remove -------------------------------------------------------------------

absl::StatusOr<std::string> RemoveRequest::Encode() const {
  return EncodeKeys(kType, header, keys, kMaxRemoveKeys);
}
absl::StatusOr<RemoveRequest> RemoveRequest::Decode(std::string_view frame) {
  RemoveRequest m;
  KVF_RETURN_IF_ERROR(DecodeKeys(kType, frame, &m.header, &m.keys, kMaxRemoveKeys));
  return m;
}

absl::StatusOr<std::string> RemoveResponse::Encode() const {
  KVF_RETURN_IF_ERROR(CheckCount(kType, "code", codes.size(), kMaxRemoveKeys));
  for (size_t i = 0; i < codes.size(); ++i) KVF_RETURN_IF_ERROR(CheckCode(kType, i, codes[i]));
  return EncodeFrame(kType, header, 4 + codes.size() * 4, [&](WireWriter& w) {
    w.Put<uint32_t>(static_cast<uint32_t>(codes.size()));
    for (absl::StatusCode c : codes) w.Put<uint32_t>(static_cast<uint32_t>(c));
    return absl::OkStatus();
  });
}
absl::StatusOr<RemoveResponse> RemoveResponse::Decode(std::string_view frame) {
  RemoveResponse m;
  KVF_ASSIGN_OR_RETURN(std::string_view body, OpenFrame(frame, kType, &m.header));
  WireReader r(body, FrameTypeName(kType));
  uint32_t count = 0;
  KVF_RETURN_IF_ERROR(r.Get(&count, "code count"));
  KVF_RETURN_IF_ERROR(CheckCount(kType, "code", count, kMaxRemoveKeys));
  KVF_RETURN_IF_ERROR(CheckBodySize(kType, "code", body.size(), 4, count, 4));
  m.codes.resize(count);
  for (size_t i = 0; i < count; ++i) KVF_RETURN_IF_ERROR(GetCode(r, kType, i, &m.codes[i]));
  KVF_RETURN_IF_ERROR(r.ExpectEnd());
  return m;
}

// ---- Invalidate -----------------------------------------------------------------

absl::StatusOr<std::string> InvalidateRequest::Encode() const {
  KVF_RETURN_IF_ERROR(CheckCount(kType, "invalidation", invalidations.size(), kMaxInvalidations));
  return EncodeFrame(kType, header, 4 + invalidations.size() * kInvalidationBytes,
                     [&](WireWriter& w) {
                       w.Put<uint32_t>(static_cast<uint32_t>(invalidations.size()));
                       for (const Invalidation& v : invalidations) {
                         PutKey(w, v.key);
                         PutVersion(w, v.version);
                       }
                       return absl::OkStatus();
                     });
}
absl::StatusOr<InvalidateRequest> InvalidateRequest::Decode(std::string_view frame) {
  InvalidateRequest m;
  KVF_ASSIGN_OR_RETURN(std::string_view body, OpenFrame(frame, kType, &m.header));
  WireReader r(body, FrameTypeName(kType));
  uint32_t count = 0;
  KVF_RETURN_IF_ERROR(r.Get(&count, "invalidation count"));
  KVF_RETURN_IF_ERROR(CheckCount(kType, "invalidation", count, kMaxInvalidations));
  KVF_RETURN_IF_ERROR(
      CheckBodySize(kType, "invalidation", body.size(), 4, count, kInvalidationBytes));
  m.invalidations.resize(count);
  for (Invalidation& v : m.invalidations) {
    KVF_RETURN_IF_ERROR(GetKey(r, &v.key, "key"));
    KVF_RETURN_IF_ERROR(GetVersion(r, &v.version, "version"));
  }
  KVF_RETURN_IF_ERROR(r.ExpectEnd());
  return m;
}

// ---- Ack / Error ------------------------------------------------------------------

absl::StatusOr<std::string> AckResponse::Encode() const {
  return EncodeFrame(kType, header, 0, [](WireWriter&) { return absl::OkStatus(); });
}
absl::StatusOr<AckResponse> AckResponse::Decode(std::string_view frame) {
  AckResponse m;
  KVF_ASSIGN_OR_RETURN(std::string_view body, OpenFrame(frame, kType, &m.header));
  KVF_RETURN_IF_ERROR(WireReader(body, FrameTypeName(kType)).ExpectEnd());
  return m;
}

namespace {
absl::Status CheckError(const ErrorResponse& e) {
  constexpr FrameType t = FrameType::kErrorResponse;
  const auto code = static_cast<uint32_t>(e.code);
  if (code == 0 || code > kMaxStatusCode) {
    return Invalid(t, "status code ", code, " is not an absl error code");
  }
  if (e.wrong_owner && e.code != absl::StatusCode::kFailedPrecondition) {
    return Invalid(t, "wrong_owner with status code ", code, " (must be FAILED_PRECONDITION)");
  }
  if (e.message.size() > kMaxErrorMessageBytes) {
    return Invalid(t, "message of ", e.message.size(), " bytes exceeds ", kMaxErrorMessageBytes);
  }
  return absl::OkStatus();
}
}  // namespace

ErrorResponse ErrorResponse::FromStatus(const FrameHeader& header, const absl::Status& status,
                                        uint64_t current_epoch) {
  ErrorResponse e;
  e.header = header;
  e.current_epoch = current_epoch;
  if (status.ok()) {
    e.code = absl::StatusCode::kInternal;
    e.message = "ErrorResponse made from an OK status";
  } else {
    e.code = status.code();
    if (static_cast<uint32_t>(e.code) > kMaxStatusCode) e.code = absl::StatusCode::kUnknown;
    e.message = std::string(status.message().substr(0, kMaxErrorMessageBytes));
  }
  return e;
}

ErrorResponse ErrorResponse::WrongOwner(const FrameHeader& header, uint64_t current_epoch,
                                        std::string_view message) {
  ErrorResponse e;
  e.header = header;
  e.code = absl::StatusCode::kFailedPrecondition;
  e.wrong_owner = true;
  e.current_epoch = current_epoch;
  e.message = std::string(message.substr(0, kMaxErrorMessageBytes));
  return e;
}

absl::Status ErrorResponse::ToStatus() const {
  if (code == absl::StatusCode::kOk) return absl::InternalError("ErrorResponse with an OK code");
  if (wrong_owner) {
    return absl::Status(
        code, absl::StrCat("WRONG_OWNER (responder epoch ", current_epoch, "): ", message));
  }
  return absl::Status(code, message);
}

absl::StatusOr<std::string> ErrorResponse::Encode() const {
  KVF_RETURN_IF_ERROR(CheckError(*this));
  return EncodeFrame(kType, header, 20 + message.size(), [&](WireWriter& w) {
    w.Put<uint32_t>(static_cast<uint32_t>(code));
    w.Put<uint8_t>(wrong_owner ? 1 : 0);
    w.Zeros(3);
    w.Put<uint64_t>(current_epoch);
    w.Put<uint32_t>(static_cast<uint32_t>(message.size()));
    w.Bytes(message);
    return absl::OkStatus();
  });
}
absl::StatusOr<ErrorResponse> ErrorResponse::Decode(std::string_view frame) {
  ErrorResponse m;
  KVF_ASSIGN_OR_RETURN(std::string_view body, OpenFrame(frame, kType, &m.header));
  WireReader r(body, FrameTypeName(kType));
  uint32_t code = 0, length = 0;
  KVF_RETURN_IF_ERROR(r.Get(&code, "status code"));
  if (code == 0 || code > kMaxStatusCode) {
    return Invalid(kType, "status code ", code, " is not an absl error code");
  }
  m.code = static_cast<absl::StatusCode>(code);
  KVF_RETURN_IF_ERROR(r.Bool(&m.wrong_owner, "wrong_owner"));
  KVF_RETURN_IF_ERROR(r.Reserved(3, "after wrong_owner"));
  KVF_RETURN_IF_ERROR(r.Get(&m.current_epoch, "current epoch"));
  KVF_RETURN_IF_ERROR(r.Get(&length, "message length"));
  if (length > kMaxErrorMessageBytes) {
    return Invalid(kType, "message length ", length, " exceeds ", kMaxErrorMessageBytes);
  }
  if (length != r.remaining()) {
    return Invalid(kType, "message length ", length, " disagrees with the body's ", r.remaining(),
                   " remaining bytes");
  }
  std::string_view message;
  KVF_RETURN_IF_ERROR(r.Bytes(length, &message, "message"));
  m.message = std::string(message);
  KVF_RETURN_IF_ERROR(r.ExpectEnd());
  KVF_RETURN_IF_ERROR(CheckError(m));
  return m;
}

}  // namespace kvf::protocol
