// The data-plane protocol spoken between kvf-agent and libkvfabric (and between
// agents) over transport/ messages (docs/data-path.md, docs/protocol.md).
//
// A frame is one transport message: a fixed 52-byte little-endian header
//
//   u32 magic "KVFD" | u16 version (2) | u16 type | u64 request id |
//   u64 sender epoch | u64 namespace id | u64 layout fingerprint |
//   u64 session | u32 body bytes
//
// Every request but HelloRequest carries the session its sender got from the
// agent's HelloResponse (docs/security.md); responses echo it.
//
// followed by a typed body. Each message type below is a plain value struct
// with
//
//   absl::StatusOr<std::string> Encode() const;
//   static absl::StatusOr<T> Decode(std::string_view frame);
//
// Encode refuses (INVALID_ARGUMENT) a batch over the type's kMax* count, a
// frame over kMaxMessageBytes, and fields the decoder would refuse, so a frame
// that encodes always decodes. The client splits larger batches.
//
// Decode validates everything before returning: magic, version, known type and
// the type the caller asked for, body length equal to the header's and to the
// counts inside, counts within the maxima, codec bytes (CodecFromWire), status
// codes, booleans 0/1, reserved bytes zero, descriptor references in range,
// embedded RemoteDescriptors (parsed and canonical), and no trailing bytes.
// Truncated input (a frame shorter than its lengths say) is DATA_LOSS;
// anything else malformed is INVALID_ARGUMENT. Messages name the type and the
// field ("GetRequest: key count 70000 exceeds 1024"). Decode never reads
// outside `frame`, whatever its bytes. A frame that decodes re-encodes to the
// same bytes (the encoding is canonical).
//
// Thread-safety: all functions are pure; the structs are plain values.
#ifndef KVF_PROTOCOL_FRAMES_H_
#define KVF_PROTOCOL_FRAMES_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/block_key.h"
#include "common/namespace.h"
#include "common/version.h"
#include "kernels/codec.h"
#include "transport/descriptor.h"
#include "transport/transport.h"

namespace kvf::protocol {

inline constexpr uint32_t kFrameMagic = 0x4446564b;  // "KVFD" in byte order
inline constexpr uint16_t kProtocolVersion = 2;
inline constexpr size_t kFrameHeaderBytes = 52;
// Where the session and the body length sit in the header.
inline constexpr size_t kSessionOffset = 40;
inline constexpr size_t kBodyBytesOffset = 48;

// Wire values of the `type` field; never renumber.
enum class FrameType : uint16_t {
  kLookupRequest = 1,
  kLookupResponse = 2,
  kGetRequest = 3,
  kGetResponse = 4,
  kReleaseRequest = 5,
  kReserveRequest = 6,
  kReserveResponse = 7,
  kCommitRequest = 8,
  kCommitResponse = 9,
  kRemoveRequest = 10,
  kRemoveResponse = 11,
  kInvalidateRequest = 12,
  kAckResponse = 13,  // the answer to Release and Invalidate
  kErrorResponse = 14,
  kRegisterNamespaceRequest = 15,  // answered by AckResponse
  kHelloRequest = 16,
  kHelloResponse = 17,
  kReadRequest = 18,
  kReadResponse = 19,
  kWriteRequest = 20,  // answered by AckResponse
  kFetchRequest = 21,  // answered by GetResponse; the bytes come as tagged messages
  kStoreRequest = 22,  // answered by ReserveResponse; the bytes go as tagged messages
};
inline constexpr uint16_t kMaxFrameType = 22;

std::string_view FrameTypeName(FrameType type);

// Per-type batch limits. Each is chosen so the largest frame of the type fits
// kMaxMessageBytes with room for descriptors (static_asserts in frames.cc).
inline constexpr size_t kMaxLookupKeys = 2048;
inline constexpr size_t kMaxGetKeys = 1024;
inline constexpr size_t kMaxReserveKeys = 512;
inline constexpr size_t kMaxCommitIds = kMaxReserveKeys;
inline constexpr size_t kMaxRemoveKeys = 2048;
inline constexpr size_t kMaxInvalidations = 1024;
// Descriptors carried by one Get/Reserve response (one per tier arena).
inline constexpr size_t kMaxDescriptors = 16;
inline constexpr size_t kMaxErrorMessageBytes = 4096;
// Block bytes one ReadResponse or WriteRequest carries, and the ranges one
// ReadRequest or WriteRequest names.
inline constexpr size_t kMaxDataBytes = 60 * 1024;
inline constexpr size_t kMaxDataRanges = 128;

// Everything in the header but magic, version, type and body length (those
// are implied by the message and computed by Encode).
struct FrameHeader {
  uint64_t request_id = 0;
  uint64_t sender_epoch = 0;
  NamespaceId namespace_id = 0;
  uint64_t layout_fingerprint = 0;
  uint64_t session = 0;  // from HelloResponse; 0 in a HelloRequest

  friend bool operator==(const FrameHeader&, const FrameHeader&) = default;
};

// Writes `session` into an encoded frame's header (a frame is encoded once
// and may be sent on several connections, each with its own session).
// INVALID_ARGUMENT if `frame` is shorter than a header.
absl::Status StampSession(std::string* frame, uint64_t session);

// The header of any frame plus its type, validated (magic, version, known
// type, body length == frame size - kFrameHeaderBytes <= kMaxMessageBytes); the body is not
// looked at. For dispatching a request to the right Decode.
struct ParsedHeader {
  FrameType type = FrameType::kErrorResponse;
  FrameHeader header;
};
absl::StatusOr<ParsedHeader> DecodeHeader(std::string_view frame);

// A slice of a RemoteDescriptor in the same response: descriptors[index]
// starting at `offset`, `size` bytes.
struct BlockLocation {
  uint32_t descriptor_index = 0;
  uint64_t offset = 0;
  uint32_t size = 0;

  friend bool operator==(const BlockLocation&, const BlockLocation&) = default;
};

// A key as requests carry it: the block key and the placement hash of its
// segment (PlacementHash(ns, SegmentHead(...))), which the receiver cannot
// compute from one key. The agent checks ownership with it (WRONG_OWNER) and
// stores it with the block so migration can find a hash range's blocks.
struct KeyRef {
  BlockKey key;
  uint64_t placement_hash = 0;

  friend bool operator==(const KeyRef&, const KeyRef&) = default;
};

// ---- Sessions -----------------------------------------------------------------

// Who a connection speaks for. An agent proves the cluster token; a client
// proves a tenant credential (common/credentials.h) or, as the operator's
// tool, the cluster token.
enum class PeerRole : uint8_t { kAgent = 1, kClient = 2 };
inline constexpr size_t kMaxCredentialBytes = 512;

// The first frame on a connection: the agent answers HelloResponse with a
// session id for every later frame, or an ErrorResponse (UNAUTHENTICATED for
// a wrong credential, RESOURCE_EXHAUSTED when the tenant has too many
// sessions). The header's session, namespace and fingerprint are zero.
struct HelloRequest {
  static constexpr FrameType kType = FrameType::kHelloRequest;
  FrameHeader header;
  PeerRole role = PeerRole::kClient;
  uint32_t node_id = 0;    // an agent's own node id (0 before it joined)
  std::string credential;  // at most kMaxCredentialBytes

  absl::StatusOr<std::string> Encode() const;
  static absl::StatusOr<HelloRequest> Decode(std::string_view frame);
  friend bool operator==(const HelloRequest&, const HelloRequest&) = default;
};

struct HelloResponse {
  static constexpr FrameType kType = FrameType::kHelloResponse;
  FrameHeader header;
  uint64_t session = 0;  // never 0
  // Idle sessions are forgotten after this; the next frame then gets
  // UNAUTHENTICATED and the sender says hello again.
  uint64_t idle_ttl_us = 0;

  absl::StatusOr<std::string> Encode() const;
  static absl::StatusOr<HelloResponse> Decode(std::string_view frame);
  friend bool operator==(const HelloResponse&, const HelloResponse&) = default;
};

// ---- Namespaces -------------------------------------------------------------

// Tells an agent the whole NamespaceSpec behind a namespace id before the
// first request that uses it (the agent needs the layout to size pages). The
// header's namespace_id must equal spec.Id() and its layout_fingerprint
// spec.layout.Fingerprint(); Decode checks both and spec.Validate().
// Idempotent. A request naming a namespace the agent was never told of gets
// a request-level NOT_FOUND ("namespace ... is not registered"): the client
// sends this frame and retries.
struct RegisterNamespaceRequest {
  static constexpr FrameType kType = FrameType::kRegisterNamespaceRequest;
  FrameHeader header;
  NamespaceSpec spec;

  absl::StatusOr<std::string> Encode() const;
  static absl::StatusOr<RegisterNamespaceRequest> Decode(std::string_view frame);
  friend bool operator==(const RegisterNamespaceRequest& a, const RegisterNamespaceRequest& b);
};

// ---- Lookup ---------------------------------------------------------------

struct LookupRequest {
  static constexpr FrameType kType = FrameType::kLookupRequest;
  FrameHeader header;
  std::vector<KeyRef> keys;  // at most kMaxLookupKeys

  absl::StatusOr<std::string> Encode() const;
  static absl::StatusOr<LookupRequest> Decode(std::string_view frame);
  friend bool operator==(const LookupRequest&, const LookupRequest&) = default;
};

struct LookupEntry {
  bool held = false;
  CodecId codec = CodecId::kNone;
  uint32_t size = 0;  // stored bytes
  Version version;

  friend bool operator==(const LookupEntry&, const LookupEntry&) = default;
};

// One entry per requested key, in request order.
struct LookupResponse {
  static constexpr FrameType kType = FrameType::kLookupResponse;
  FrameHeader header;
  std::vector<LookupEntry> entries;

  absl::StatusOr<std::string> Encode() const;
  static absl::StatusOr<LookupResponse> Decode(std::string_view frame);
  friend bool operator==(const LookupResponse&, const LookupResponse&) = default;
};

// ---- Get / Release --------------------------------------------------------

struct GetRequest {
  static constexpr FrameType kType = FrameType::kGetRequest;
  FrameHeader header;
  std::vector<KeyRef> keys;  // at most kMaxGetKeys
  // Read-your-writes: serve only at or past this version, else per-key
  // FAILED_PRECONDITION. When absent the wire carries zeros.
  bool has_min_version = false;
  Version min_version;
  // The reader can take blocks in the agent's GPU tier where they are: a
  // client on the agent's host whose reader is on a GPU. The agent then
  // answers device-tier blocks with a CUDA IPC descriptor of that tier
  // (memory type kCuda) instead of staging them through its host arena.
  bool device_ok = false;

  absl::StatusOr<std::string> Encode() const;
  static absl::StatusOr<GetRequest> Decode(std::string_view frame);
  friend bool operator==(const GetRequest&, const GetRequest&) = default;
};

// OK: `location`, `version` and `codec` say where the block is. Otherwise the
// key's error (NOT_FOUND, FAILED_PRECONDITION for min_version, ...) and every
// other field is zero.
struct GetEntry {
  absl::StatusCode code = absl::StatusCode::kOk;
  BlockLocation location;
  Version version;
  CodecId codec = CodecId::kNone;

  friend bool operator==(const GetEntry&, const GetEntry&) = default;
};

struct GetResponse {
  static constexpr FrameType kType = FrameType::kGetResponse;
  FrameHeader header;
  // Releases the pins of every OK entry (ReleaseRequest).
  uint64_t lease_id = 0;
  // The lease expires this long after the agent answered; a client counts it
  // from when it sent the request (clocks of two hosts are not compared).
  uint64_t lease_ttl_us = 0;
  std::vector<GetEntry> entries;  // one per requested key, in request order
  // The arenas the entries point into, at most kMaxDescriptors.
  std::vector<RemoteDescriptor> descriptors;

  absl::StatusOr<std::string> Encode() const;
  static absl::StatusOr<GetResponse> Decode(std::string_view frame);
  // Descriptors compare by their serialised form.
  friend bool operator==(const GetResponse& a, const GetResponse& b);
};

struct ReleaseRequest {
  static constexpr FrameType kType = FrameType::kReleaseRequest;
  FrameHeader header;
  uint64_t lease_id = 0;

  absl::StatusOr<std::string> Encode() const;
  static absl::StatusOr<ReleaseRequest> Decode(std::string_view frame);
  friend bool operator==(const ReleaseRequest&, const ReleaseRequest&) = default;
};

// A Get whose bytes the agent sends back on the two-sided lane
// (docs/data-path.md, "Two-sided lane"): the caller has posted one tagged
// receive per key (tags[i] for keys[i]) before sending this. The agent
// answers with a GetResponse that has no lease and no descriptors (every OK
// entry's location is {0, 0, size}), and sends each OK entry's bytes as one
// tagged message ahead of the answer; an entry that is not OK sends nothing,
// and neither does an error answer, so the caller cancels those receives.
struct FetchRequest {
  static constexpr FrameType kType = FrameType::kFetchRequest;
  FrameHeader header;
  std::vector<KeyRef> keys;   // at most kMaxGetKeys
  std::vector<uint64_t> tags;  // one per key
  bool has_min_version = false;
  Version min_version;

  absl::StatusOr<std::string> Encode() const;
  static absl::StatusOr<FetchRequest> Decode(std::string_view frame);
  friend bool operator==(const FetchRequest&, const FetchRequest&) = default;
};

// ---- Bytes through the agent (tenant sessions) ------------------------------

// A tenant's session is never handed the agent's arena descriptor: its Get
// and Reserve answers carry no descriptors, each OK location is
// {descriptor 0, offset 0, the block's size}, and the bytes move through the
// agent in these frames, which it checks against the grant: the pinned
// blocks of a read lease, the page of a reservation (docs/security.md).

// Bytes [offset, offset + length) of block `entry` (its index in the
// GetRequest) of lease `lease_id`.
struct ReadRange {
  uint32_t entry = 0;
  uint32_t offset = 0;
  uint32_t length = 0;

  friend bool operator==(const ReadRange&, const ReadRange&) = default;
};

struct ReadRequest {
  static constexpr FrameType kType = FrameType::kReadRequest;
  FrameHeader header;
  uint64_t lease_id = 0;
  // At most kMaxDataRanges; lengths non-zero and summing to at most
  // kMaxDataBytes.
  std::vector<ReadRange> ranges;

  absl::StatusOr<std::string> Encode() const;
  static absl::StatusOr<ReadRequest> Decode(std::string_view frame);
  friend bool operator==(const ReadRequest&, const ReadRequest&) = default;
};

// The requested ranges' bytes, concatenated in request order.
struct ReadResponse {
  static constexpr FrameType kType = FrameType::kReadResponse;
  FrameHeader header;
  std::string bytes;  // at most kMaxDataBytes

  absl::StatusOr<std::string> Encode() const;
  static absl::StatusOr<ReadResponse> Decode(std::string_view frame);
  friend bool operator==(const ReadResponse&, const ReadResponse&) = default;
};

// Bytes for [offset, offset + length) of reservation `reservation_id`.
struct WriteRange {
  uint64_t reservation_id = 0;
  uint32_t offset = 0;
  uint32_t length = 0;

  friend bool operator==(const WriteRange&, const WriteRange&) = default;
};

// Writes every range or none; answered by AckResponse.
struct WriteRequest {
  static constexpr FrameType kType = FrameType::kWriteRequest;
  FrameHeader header;
  std::vector<WriteRange> ranges;  // as ReadRequest's
  std::string bytes;               // the ranges' bytes, concatenated

  absl::StatusOr<std::string> Encode() const;
  static absl::StatusOr<WriteRequest> Decode(std::string_view frame);
  friend bool operator==(const WriteRequest&, const WriteRequest&) = default;
};

// ---- Put: Reserve / Commit ------------------------------------------------

struct ReserveEntry {
  BlockKey key;
  uint64_t placement_hash = 0;  // as in KeyRef
  BlockKey parent;  // BlockKey::Root() for none
  uint32_t size = 0;   // stored bytes (after the codec)
  uint32_t depth = 0;  // position in its chain
  CodecId codec = CodecId::kNone;
  bool is_mutable = false;
  // Replica sync and stale pulls commit with the primary's version; a client
  // put leaves it absent (zeros on the wire) and the primary assigns one.
  bool has_version = false;
  Version version;
  // A client forwarding the primary's version (ack=all) must show the
  // primary's CommitResult::version_tag for it; agents send 0.
  uint64_t version_tag = 0;

  friend bool operator==(const ReserveEntry&, const ReserveEntry&) = default;
};

struct ReserveRequest {
  static constexpr FrameType kType = FrameType::kReserveRequest;
  FrameHeader header;
  std::vector<ReserveEntry> entries;  // at most kMaxReserveKeys

  absl::StatusOr<std::string> Encode() const;
  static absl::StatusOr<ReserveRequest> Decode(std::string_view frame);
  friend bool operator==(const ReserveRequest&, const ReserveRequest&) = default;
};

// Exactly one of:
//  * code != OK: the key was refused (oversize, no room, ...); rest zero.
//  * already_present: nothing to write; `version` is the stored one; the
//    reservation fields are zero.
//  * a reservation: write `location`, then commit `reservation_id`;
//    `version` is zero.
struct ReserveResult {
  absl::StatusCode code = absl::StatusCode::kOk;
  bool already_present = false;
  Version version;
  uint64_t version_tag = 0;  // already_present: as CommitResult::version_tag
  uint64_t reservation_id = 0;
  BlockLocation location;

  friend bool operator==(const ReserveResult&, const ReserveResult&) = default;
};

struct ReserveResponse {
  static constexpr FrameType kType = FrameType::kReserveResponse;
  FrameHeader header;
  std::vector<ReserveResult> results;  // one per requested key, in order
  std::vector<RemoteDescriptor> descriptors;

  absl::StatusOr<std::string> Encode() const;
  static absl::StatusOr<ReserveResponse> Decode(std::string_view frame);
  friend bool operator==(const ReserveResponse& a, const ReserveResponse& b);
};

// A Reserve whose bytes the caller sends on the two-sided lane
// (docs/data-path.md, "Two-sided lane"): for each new reservation the agent
// posts a tagged receive (tags[i] for entries[i]) into the reserved page
// before it answers, with a ReserveResponse that has no descriptors (every
// reservation's location is {0, 0, size}). The caller then sends each
// reserved block as one tagged message and commits as usual; a commit that
// finds a block's bytes still arriving answers UNAVAILABLE for it, and the
// caller commits it again. Refused and already-present entries get no
// receive: send nothing for them.
struct StoreRequest {
  static constexpr FrameType kType = FrameType::kStoreRequest;
  FrameHeader header;
  std::vector<ReserveEntry> entries;  // at most kMaxReserveKeys
  std::vector<uint64_t> tags;         // one per entry

  absl::StatusOr<std::string> Encode() const;
  static absl::StatusOr<StoreRequest> Decode(std::string_view frame);
  friend bool operator==(const StoreRequest&, const StoreRequest&) = default;
};

struct CommitRequest {
  static constexpr FrameType kType = FrameType::kCommitRequest;
  FrameHeader header;
  std::vector<uint64_t> reservation_ids;  // at most kMaxCommitIds
  // Replica sync and migration commit copies that must not be re-replicated
  // by the receiver (it is not the primary of them, or it is catching up):
  // true suppresses the invalidation and lazy-sync fan-out a client commit
  // starts on the primary.
  bool no_fanout = false;
  // Ask for CommitResult::version_tag (a client that will forward the
  // versions to the other owners, ack=all); otherwise tags are 0, sparing
  // the primary an HMAC per block.
  bool want_version_tags = false;

  absl::StatusOr<std::string> Encode() const;
  static absl::StatusOr<CommitRequest> Decode(std::string_view frame);
  friend bool operator==(const CommitRequest&, const CommitRequest&) = default;
};

// OK: committed as `version`. Otherwise the error and a zero version.
struct CommitResult {
  absl::StatusCode code = absl::StatusCode::kOk;
  Version version;
  // The primary's proof that it committed `version` of this key (a keyed MAC
  // under the cluster token, common/credentials.h): replicas accept a client's
  // ack=all copy only with it, so no client can invent a version.
  uint64_t version_tag = 0;

  friend bool operator==(const CommitResult&, const CommitResult&) = default;
};

struct CommitResponse {
  static constexpr FrameType kType = FrameType::kCommitResponse;
  FrameHeader header;
  std::vector<CommitResult> results;  // one per reservation id, in order

  absl::StatusOr<std::string> Encode() const;
  static absl::StatusOr<CommitResponse> Decode(std::string_view frame);
  friend bool operator==(const CommitResponse&, const CommitResponse&) = default;
};

// ---- Remove ---------------------------------------------------------------

struct RemoveRequest {
  static constexpr FrameType kType = FrameType::kRemoveRequest;
  FrameHeader header;
  std::vector<KeyRef> keys;  // at most kMaxRemoveKeys

  absl::StatusOr<std::string> Encode() const;
  static absl::StatusOr<RemoveRequest> Decode(std::string_view frame);
  friend bool operator==(const RemoveRequest&, const RemoveRequest&) = default;
};

// Per key: OK (removed), NOT_FOUND, FAILED_PRECONDITION (leased), ...
struct RemoveResponse {
  static constexpr FrameType kType = FrameType::kRemoveResponse;
  FrameHeader header;
  std::vector<absl::StatusCode> codes;

  absl::StatusOr<std::string> Encode() const;
  static absl::StatusOr<RemoveResponse> Decode(std::string_view frame);
  friend bool operator==(const RemoveResponse&, const RemoveResponse&) = default;
};

// ---- Coherency: primary -> replica ----------------------------------------

struct Invalidation {
  BlockKey key;
  Version version;  // the primary's new version

  friend bool operator==(const Invalidation&, const Invalidation&) = default;
};

struct InvalidateRequest {
  static constexpr FrameType kType = FrameType::kInvalidateRequest;
  FrameHeader header;
  std::vector<Invalidation> invalidations;  // at most kMaxInvalidations

  absl::StatusOr<std::string> Encode() const;
  static absl::StatusOr<InvalidateRequest> Decode(std::string_view frame);
  friend bool operator==(const InvalidateRequest&, const InvalidateRequest&) = default;
};

// ---- Generic responses ----------------------------------------------------

// Empty body: the answer to Release and Invalidate.
struct AckResponse {
  static constexpr FrameType kType = FrameType::kAckResponse;
  FrameHeader header;

  absl::StatusOr<std::string> Encode() const;
  static absl::StatusOr<AckResponse> Decode(std::string_view frame);
  friend bool operator==(const AckResponse&, const AckResponse&) = default;
};

// The whole request failed. `code` is never OK. WRONG_OWNER travels as
// FAILED_PRECONDITION with wrong_owner set; `current_epoch` is always the
// responder's epoch (the client refreshes its map past it).
struct ErrorResponse {
  static constexpr FrameType kType = FrameType::kErrorResponse;
  FrameHeader header;
  absl::StatusCode code = absl::StatusCode::kUnknown;
  bool wrong_owner = false;
  uint64_t current_epoch = 0;
  std::string message;  // at most kMaxErrorMessageBytes

  // From a non-OK status; the message is cut to kMaxErrorMessageBytes. An OK
  // status becomes INTERNAL (a bug in the caller).
  static ErrorResponse FromStatus(const FrameHeader& header, const absl::Status& status,
                                  uint64_t current_epoch);
  static ErrorResponse WrongOwner(const FrameHeader& header, uint64_t current_epoch,
                                  std::string_view message);
  // The status the caller of the failed request sees.
  absl::Status ToStatus() const;

  absl::StatusOr<std::string> Encode() const;
  static absl::StatusOr<ErrorResponse> Decode(std::string_view frame);
  friend bool operator==(const ErrorResponse&, const ErrorResponse&) = default;
};

}  // namespace kvf::protocol

#endif  // KVF_PROTOCOL_FRAMES_H_
