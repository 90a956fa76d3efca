#include "protocol/frames.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "protocol/internal/frame_codec.h"

namespace kvf::protocol {

using namespace internal;  // NOLINT(build/namespaces): the codec's shared pieces
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
    case FrameType::kHelloRequest:
      return "HelloRequest";
    case FrameType::kHelloResponse:
      return "HelloResponse";
    case FrameType::kReadRequest:
      return "ReadRequest";
    case FrameType::kReadResponse:
      return "ReadResponse";
    case FrameType::kWriteRequest:
      return "WriteRequest";
    case FrameType::kFetchRequest:
      return "FetchRequest";
    case FrameType::kStoreRequest:
      return "StoreRequest";
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
  KVF_RETURN_IF_ERROR(r.Get(&p.header.session, "session"));
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

namespace {

// Get and Fetch share a body: u32 key count | u8 has_min_version | 3 zero
// bytes | min_version | keys, and for Fetch then one u64 tag per key.
template <typename M>
absl::StatusOr<std::string> EncodeGetBody(const M& m, const std::vector<uint64_t>* tags) {
  constexpr FrameType t = M::kType;
  KVF_RETURN_IF_ERROR(CheckCount(t, "key", m.keys.size(), kMaxGetKeys));
  if (tags != nullptr && tags->size() != m.keys.size()) {
    return Invalid(t, tags->size(), " tags for ", m.keys.size(), " keys");
  }
  if (!m.has_min_version && m.min_version != Version{}) {
    return Invalid(t, "min_version set without has_min_version");
  }
  const size_t per_key = kKeyRefBytes + (tags != nullptr ? 8 : 0);
  return EncodeFrame(t, m.header, 24 + m.keys.size() * per_key, [&](WireWriter& w) {
    w.Put<uint32_t>(static_cast<uint32_t>(m.keys.size()));
    w.Put<uint8_t>(m.has_min_version ? 1 : 0);
    if constexpr (requires { m.device_ok; }) {
      w.Put<uint8_t>(m.device_ok ? 1 : 0);
    } else {
      w.Zeros(1);
    }
    w.Zeros(2);
    PutVersion(w, m.min_version);
    for (const KeyRef& k : m.keys) PutKeyRef(w, k);
    if (tags != nullptr) {
      for (uint64_t tag : *tags) w.Put<uint64_t>(tag);
    }
    return absl::OkStatus();
  });
}

template <typename M>
absl::StatusOr<M> DecodeGetBody(std::string_view frame, std::vector<uint64_t>* tags) {
  constexpr FrameType t = M::kType;
  M m;
  KVF_ASSIGN_OR_RETURN(std::string_view body, OpenFrame(frame, t, &m.header));
  WireReader r(body, FrameTypeName(t));
  uint32_t count = 0;
  KVF_RETURN_IF_ERROR(r.Get(&count, "key count"));
  KVF_RETURN_IF_ERROR(CheckCount(t, "key", count, kMaxGetKeys));
  const size_t per_key = kKeyRefBytes + (tags != nullptr ? 8 : 0);
  KVF_RETURN_IF_ERROR(CheckBodySize(t, "key", body.size(), 24, count, per_key));
  KVF_RETURN_IF_ERROR(r.Bool(&m.has_min_version, "has_min_version"));
  if constexpr (requires { m.device_ok; }) {
    KVF_RETURN_IF_ERROR(r.Bool(&m.device_ok, "device_ok"));
  } else {
    KVF_RETURN_IF_ERROR(r.Reserved(1, "after has_min_version"));
  }
  KVF_RETURN_IF_ERROR(r.Reserved(2, "after has_min_version"));
  KVF_RETURN_IF_ERROR(GetVersion(r, &m.min_version, "min_version"));
  if (!m.has_min_version && m.min_version != Version{}) {
    return Invalid(t, "min_version ", m.min_version.ToString(), " set without has_min_version");
  }
  m.keys.resize(count);
  for (KeyRef& k : m.keys) KVF_RETURN_IF_ERROR(GetKeyRef(r, &k));
  if (tags != nullptr) {
    tags->resize(count);
    for (uint64_t& tag : *tags) KVF_RETURN_IF_ERROR(r.Get(&tag, "tag"));
  }
  KVF_RETURN_IF_ERROR(r.ExpectEnd());
  return m;
}

}  // namespace

absl::StatusOr<std::string> GetRequest::Encode() const { return EncodeGetBody(*this, nullptr); }
absl::StatusOr<GetRequest> GetRequest::Decode(std::string_view frame) {
  return DecodeGetBody<GetRequest>(frame, nullptr);
}

absl::StatusOr<std::string> FetchRequest::Encode() const { return EncodeGetBody(*this, &tags); }
absl::StatusOr<FetchRequest> FetchRequest::Decode(std::string_view frame) {
  std::vector<uint64_t> tags;
  KVF_ASSIGN_OR_RETURN(FetchRequest m, DecodeGetBody<FetchRequest>(frame, &tags));
  m.tags = std::move(tags);
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

}  // namespace kvf::protocol
