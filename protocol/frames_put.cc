// Encode/Decode of the put-side frames (reserve, commit, remove, invalidate)
// and the generic responses; frames.cc has the rest.
#include "protocol/frames.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "protocol/internal/frame_codec.h"

namespace kvf::protocol {

using namespace internal;  // NOLINT(build/namespaces): the codec's shared pieces

// ---- Reserve / Commit ---------------------------------------------------------

namespace {

// Reserve and Store share a body: u32 entry count | entries, and for Store
// then one u64 tag per entry.
template <typename M>
absl::StatusOr<std::string> EncodeReserveBody(const M& m, const std::vector<uint64_t>* tags) {
  constexpr FrameType t = M::kType;
  KVF_RETURN_IF_ERROR(CheckCount(t, "entry", m.entries.size(), kMaxReserveKeys));
  if (tags != nullptr && tags->size() != m.entries.size()) {
    return Invalid(t, tags->size(), " tags for ", m.entries.size(), " entries");
  }
  for (size_t i = 0; i < m.entries.size(); ++i) {
    KVF_RETURN_IF_ERROR(CheckCodec(t, i, m.entries[i].codec));
    if (!m.entries[i].has_version &&
        (m.entries[i].version != Version{} || m.entries[i].version_tag != 0)) {
      return Invalid(t, "entry ", i, ": version or its tag set without has_version");
    }
  }
  const size_t per_entry = kReserveEntryBytes + (tags != nullptr ? 8 : 0);
  return EncodeFrame(t, m.header, 4 + m.entries.size() * per_entry, [&](WireWriter& w) {
    w.Put<uint32_t>(static_cast<uint32_t>(m.entries.size()));
    for (const ReserveEntry& e : m.entries) {
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
      w.Put<uint64_t>(e.version_tag);
    }
    if (tags != nullptr) {
      for (uint64_t tag : *tags) w.Put<uint64_t>(tag);
    }
    return absl::OkStatus();
  });
}

template <typename M>
absl::StatusOr<M> DecodeReserveBody(std::string_view frame, std::vector<uint64_t>* tags) {
  constexpr FrameType t = M::kType;
  M m;
  KVF_ASSIGN_OR_RETURN(std::string_view body, OpenFrame(frame, t, &m.header));
  WireReader r(body, FrameTypeName(t));
  uint32_t count = 0;
  KVF_RETURN_IF_ERROR(r.Get(&count, "entry count"));
  KVF_RETURN_IF_ERROR(CheckCount(t, "entry", count, kMaxReserveKeys));
  const size_t per_entry = kReserveEntryBytes + (tags != nullptr ? 8 : 0);
  KVF_RETURN_IF_ERROR(CheckBodySize(t, "entry", body.size(), 4, count, per_entry));
  m.entries.resize(count);
  for (size_t i = 0; i < count; ++i) {
    ReserveEntry& e = m.entries[i];
    KVF_RETURN_IF_ERROR(GetKey(r, &e.key, "key"));
    KVF_RETURN_IF_ERROR(r.Get(&e.placement_hash, "placement hash"));
    KVF_RETURN_IF_ERROR(GetKey(r, &e.parent, "parent"));
    KVF_RETURN_IF_ERROR(r.Get(&e.size, "size"));
    KVF_RETURN_IF_ERROR(r.Get(&e.depth, "depth"));
    KVF_RETURN_IF_ERROR(GetCodec(r, t, i, &e.codec));
    KVF_RETURN_IF_ERROR(r.Bool(&e.is_mutable, "mutable"));
    KVF_RETURN_IF_ERROR(r.Bool(&e.has_version, "has_version"));
    KVF_RETURN_IF_ERROR(r.Reserved(1, "after has_version"));
    KVF_RETURN_IF_ERROR(GetVersion(r, &e.version, "version"));
    KVF_RETURN_IF_ERROR(r.Get(&e.version_tag, "version tag"));
    if (!e.has_version && (e.version != Version{} || e.version_tag != 0)) {
      return Invalid(t, "entry ", i, ": version ", e.version.ToString(),
                     " or its tag set without has_version");
    }
  }
  if (tags != nullptr) {
    tags->resize(count);
    for (uint64_t& tag : *tags) KVF_RETURN_IF_ERROR(r.Get(&tag, "tag"));
  }
  KVF_RETURN_IF_ERROR(r.ExpectEnd());
  return m;
}

}  // namespace

absl::StatusOr<std::string> ReserveRequest::Encode() const {
  return EncodeReserveBody(*this, nullptr);
}
absl::StatusOr<ReserveRequest> ReserveRequest::Decode(std::string_view frame) {
  return DecodeReserveBody<ReserveRequest>(frame, nullptr);
}

absl::StatusOr<std::string> StoreRequest::Encode() const { return EncodeReserveBody(*this, &tags); }
absl::StatusOr<StoreRequest> StoreRequest::Decode(std::string_view frame) {
  std::vector<uint64_t> tags;
  KVF_ASSIGN_OR_RETURN(StoreRequest m, DecodeReserveBody<StoreRequest>(frame, &tags));
  m.tags = std::move(tags);
  return m;
}

namespace {
absl::Status CheckReserveResult(size_t i, const ReserveResult& e,
                                const std::vector<RemoteDescriptor>& descriptors) {
  constexpr FrameType t = FrameType::kReserveResponse;
  KVF_RETURN_IF_ERROR(CheckCode(t, i, e.code));
  const bool no_reservation = e.reservation_id == 0 && e.location == BlockLocation{};
  if (e.code != absl::StatusCode::kOk) {
    if (e.already_present || e.version != Version{} || e.version_tag != 0 || !no_reservation) {
      return Invalid(t, "entry ", i, ": error entry carries a result");
    }
    return absl::OkStatus();
  }
  if (e.already_present) {
    if (!no_reservation) return Invalid(t, "entry ", i, ": already_present with a reservation");
    return absl::OkStatus();
  }
  if (e.version != Version{} || e.version_tag != 0) {
    return Invalid(t, "entry ", i, ": reservation carries a version");
  }
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
      w.Put<uint64_t>(e.version_tag);
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
    KVF_RETURN_IF_ERROR(r.Get(&e.version_tag, "version tag"));
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
    w.Put<uint8_t>(want_version_tags ? 1 : 0);
    w.Zeros(2);
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
  KVF_RETURN_IF_ERROR(r.Bool(&m.want_version_tags, "want_version_tags"));
  KVF_RETURN_IF_ERROR(r.Reserved(2, "after want_version_tags"));
  m.reservation_ids.resize(count);
  for (uint64_t& id : m.reservation_ids) KVF_RETURN_IF_ERROR(r.Get(&id, "reservation id"));
  KVF_RETURN_IF_ERROR(r.ExpectEnd());
  return m;
}

absl::StatusOr<std::string> CommitResponse::Encode() const {
  KVF_RETURN_IF_ERROR(CheckCount(kType, "result", results.size(), kMaxCommitIds));
  for (size_t i = 0; i < results.size(); ++i) {
    KVF_RETURN_IF_ERROR(CheckCode(kType, i, results[i].code));
    if (results[i].code != absl::StatusCode::kOk &&
        (results[i].version != Version{} || results[i].version_tag != 0)) {
      return Invalid(kType, "entry ", i, ": error entry carries a version");
    }
  }
  return EncodeFrame(kType, header, 4 + results.size() * kCommitResultBytes, [&](WireWriter& w) {
    w.Put<uint32_t>(static_cast<uint32_t>(results.size()));
    for (const CommitResult& e : results) {
      w.Put<uint32_t>(static_cast<uint32_t>(e.code));
      w.Zeros(4);
      PutVersion(w, e.version);
      w.Put<uint64_t>(e.version_tag);
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
    KVF_RETURN_IF_ERROR(r.Get(&e.version_tag, "version tag"));
    if (e.code != absl::StatusCode::kOk && (e.version != Version{} || e.version_tag != 0)) {
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
