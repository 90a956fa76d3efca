// Sessions: HelloRequest / HelloResponse and stamping a session into a frame.
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "protocol/frames.h"
#include "protocol/internal/frame_codec.h"

namespace kvf::protocol {

using namespace internal;  // NOLINT(build/namespaces): the codec's shared pieces

absl::Status StampSession(std::string* frame, uint64_t session) {
  if (frame->size() < kFrameHeaderBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("StampSession: frame of ", frame->size(), " bytes has no header"));
  }
  for (size_t i = 0; i < 8; ++i) {
    (*frame)[kSessionOffset + i] = static_cast<char>(session >> (8 * i));
  }
  return absl::OkStatus();
}

namespace {

absl::Status CheckHelloHeader(FrameType t, const FrameHeader& h) {
  if (h.namespace_id != 0 || h.layout_fingerprint != 0) {
    return Invalid(t, "namespace id and layout fingerprint must be 0");
  }
  return absl::OkStatus();
}

absl::Status CheckHello(const HelloRequest& m) {
  constexpr FrameType t = FrameType::kHelloRequest;
  KVF_RETURN_IF_ERROR(CheckHelloHeader(t, m.header));
  if (m.header.session != 0) return Invalid(t, "session must be 0");
  if (m.role != PeerRole::kAgent && m.role != PeerRole::kClient) {
    return Invalid(t, "unknown role ", static_cast<int>(m.role));
  }
  if (m.credential.empty() || m.credential.size() > kMaxCredentialBytes) {
    return Invalid(t, "credential of ", m.credential.size(), " bytes (1..", kMaxCredentialBytes,
                   " allowed)");
  }
  return absl::OkStatus();
}

}  // namespace

// Body: u8 role | 3 zero bytes | u32 node id | u32 credential length | credential
absl::StatusOr<std::string> HelloRequest::Encode() const {
  KVF_RETURN_IF_ERROR(CheckHello(*this));
  return EncodeFrame(kType, header, 12 + credential.size(), [&](WireWriter& w) {
    w.Put<uint8_t>(static_cast<uint8_t>(role));
    w.Zeros(3);
    w.Put<uint32_t>(node_id);
    w.Put<uint32_t>(static_cast<uint32_t>(credential.size()));
    w.Bytes(credential);
    return absl::OkStatus();
  });
}

absl::StatusOr<HelloRequest> HelloRequest::Decode(std::string_view frame) {
  HelloRequest m;
  KVF_ASSIGN_OR_RETURN(std::string_view body, OpenFrame(frame, kType, &m.header));
  WireReader r(body, FrameTypeName(kType));
  uint8_t role = 0;
  uint32_t length = 0;
  KVF_RETURN_IF_ERROR(r.Get(&role, "role"));
  KVF_RETURN_IF_ERROR(r.Reserved(3, "after role"));
  KVF_RETURN_IF_ERROR(r.Get(&m.node_id, "node id"));
  KVF_RETURN_IF_ERROR(r.Get(&length, "credential length"));
  if (length > kMaxCredentialBytes) {
    return Invalid(kType, "credential length ", length, " exceeds ", kMaxCredentialBytes);
  }
  std::string_view credential;
  KVF_RETURN_IF_ERROR(r.Bytes(length, &credential, "credential"));
  KVF_RETURN_IF_ERROR(r.ExpectEnd());
  m.role = static_cast<PeerRole>(role);
  m.credential = std::string(credential);
  KVF_RETURN_IF_ERROR(CheckHello(m));
  return m;
}

// Body: u64 session | u64 idle ttl in microseconds
absl::StatusOr<std::string> HelloResponse::Encode() const {
  KVF_RETURN_IF_ERROR(CheckHelloHeader(kType, header));
  if (session == 0) return Invalid(kType, "session 0");
  return EncodeFrame(kType, header, 16, [&](WireWriter& w) {
    w.Put<uint64_t>(session);
    w.Put<uint64_t>(idle_ttl_us);
    return absl::OkStatus();
  });
}

absl::StatusOr<HelloResponse> HelloResponse::Decode(std::string_view frame) {
  HelloResponse m;
  KVF_ASSIGN_OR_RETURN(std::string_view body, OpenFrame(frame, kType, &m.header));
  WireReader r(body, FrameTypeName(kType));
  KVF_RETURN_IF_ERROR(r.Get(&m.session, "session"));
  KVF_RETURN_IF_ERROR(r.Get(&m.idle_ttl_us, "idle ttl"));
  KVF_RETURN_IF_ERROR(r.ExpectEnd());
  KVF_RETURN_IF_ERROR(CheckHelloHeader(kType, m.header));
  if (m.session == 0) return Invalid(kType, "session 0");
  return m;
}

}  // namespace kvf::protocol
