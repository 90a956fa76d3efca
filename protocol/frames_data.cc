// Block bytes through the agent: ReadRequest / ReadResponse / WriteRequest.
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "protocol/frames.h"
#include "protocol/internal/frame_codec.h"

namespace kvf::protocol {

using namespace internal;  // NOLINT(build/namespaces): the codec's shared pieces

namespace {

constexpr size_t kReadRangeBytes = 12;
constexpr size_t kWriteRangeBytes = 16;
static_assert(kFrameHeaderBytes + 16 + kMaxDataRanges * kReadRangeBytes <= kMaxMessageBytes);
static_assert(kFrameHeaderBytes + 8 + kMaxDataRanges * kWriteRangeBytes + kMaxDataBytes <=
              kMaxMessageBytes);
static_assert(kFrameHeaderBytes + 8 + kMaxDataBytes <= kMaxMessageBytes);

// Counts, non-empty ranges, and the total within kMaxDataBytes; the total.
template <typename Range>
absl::StatusOr<size_t> CheckRanges(FrameType t, const std::vector<Range>& ranges) {
  KVF_RETURN_IF_ERROR(CheckCount(t, "range", ranges.size(), kMaxDataRanges));
  size_t total = 0;
  for (size_t i = 0; i < ranges.size(); ++i) {
    if (ranges[i].length == 0) return Invalid(t, "range ", i, ": length 0");
    total += ranges[i].length;
    if (total > kMaxDataBytes) {
      return Invalid(t, "ranges total more than ", kMaxDataBytes, " bytes");
    }
  }
  return total;
}

}  // namespace

// Body: u64 lease id | u32 range count | u32 0 | ranges {u32 entry, u32 offset, u32 length}
absl::StatusOr<std::string> ReadRequest::Encode() const {
  KVF_RETURN_IF_ERROR(CheckRanges(kType, ranges).status());
  return EncodeFrame(kType, header, 16 + ranges.size() * kReadRangeBytes, [&](WireWriter& w) {
    w.Put<uint64_t>(lease_id);
    w.Put<uint32_t>(static_cast<uint32_t>(ranges.size()));
    w.Zeros(4);
    for (const ReadRange& r : ranges) {
      w.Put<uint32_t>(r.entry);
      w.Put<uint32_t>(r.offset);
      w.Put<uint32_t>(r.length);
    }
    return absl::OkStatus();
  });
}

absl::StatusOr<ReadRequest> ReadRequest::Decode(std::string_view frame) {
  ReadRequest m;
  KVF_ASSIGN_OR_RETURN(std::string_view body, OpenFrame(frame, kType, &m.header));
  WireReader r(body, FrameTypeName(kType));
  uint32_t count = 0;
  KVF_RETURN_IF_ERROR(r.Get(&m.lease_id, "lease id"));
  KVF_RETURN_IF_ERROR(r.Get(&count, "range count"));
  KVF_RETURN_IF_ERROR(r.Reserved(4, "after range count"));
  KVF_RETURN_IF_ERROR(CheckCount(kType, "range", count, kMaxDataRanges));
  KVF_RETURN_IF_ERROR(CheckBodySize(kType, "range", body.size(), 16, count, kReadRangeBytes));
  m.ranges.resize(count);
  for (ReadRange& x : m.ranges) {
    KVF_RETURN_IF_ERROR(r.Get(&x.entry, "entry"));
    KVF_RETURN_IF_ERROR(r.Get(&x.offset, "offset"));
    KVF_RETURN_IF_ERROR(r.Get(&x.length, "length"));
  }
  KVF_RETURN_IF_ERROR(r.ExpectEnd());
  KVF_RETURN_IF_ERROR(CheckRanges(kType, m.ranges).status());
  return m;
}

// Body: u32 byte count | u32 0 | bytes
absl::StatusOr<std::string> ReadResponse::Encode() const {
  if (bytes.size() > kMaxDataBytes) {
    return Invalid(kType, bytes.size(), " bytes exceed ", kMaxDataBytes);
  }
  return EncodeFrame(kType, header, 8 + bytes.size(), [&](WireWriter& w) {
    w.Put<uint32_t>(static_cast<uint32_t>(bytes.size()));
    w.Zeros(4);
    w.Bytes(bytes);
    return absl::OkStatus();
  });
}

absl::StatusOr<ReadResponse> ReadResponse::Decode(std::string_view frame) {
  ReadResponse m;
  KVF_ASSIGN_OR_RETURN(std::string_view body, OpenFrame(frame, kType, &m.header));
  WireReader r(body, FrameTypeName(kType));
  uint32_t length = 0;
  KVF_RETURN_IF_ERROR(r.Get(&length, "byte count"));
  KVF_RETURN_IF_ERROR(r.Reserved(4, "after byte count"));
  if (length > kMaxDataBytes) return Invalid(kType, length, " bytes exceed ", kMaxDataBytes);
  std::string_view bytes;
  KVF_RETURN_IF_ERROR(r.Bytes(length, &bytes, "bytes"));
  KVF_RETURN_IF_ERROR(r.ExpectEnd());
  m.bytes = std::string(bytes);
  return m;
}

// Body: u32 range count | u32 0 | ranges {u64 reservation id, u32 offset,
// u32 length} | the ranges' bytes
absl::StatusOr<std::string> WriteRequest::Encode() const {
  KVF_ASSIGN_OR_RETURN(const size_t total, CheckRanges(kType, ranges));
  if (bytes.size() != total) {
    return Invalid(kType, bytes.size(), " bytes for ranges of ", total);
  }
  return EncodeFrame(kType, header, 8 + ranges.size() * kWriteRangeBytes + bytes.size(),
                     [&](WireWriter& w) {
                       w.Put<uint32_t>(static_cast<uint32_t>(ranges.size()));
                       w.Zeros(4);
                       for (const WriteRange& r : ranges) {
                         w.Put<uint64_t>(r.reservation_id);
                         w.Put<uint32_t>(r.offset);
                         w.Put<uint32_t>(r.length);
                       }
                       w.Bytes(bytes);
                       return absl::OkStatus();
                     });
}

absl::StatusOr<WriteRequest> WriteRequest::Decode(std::string_view frame) {
  WriteRequest m;
  KVF_ASSIGN_OR_RETURN(std::string_view body, OpenFrame(frame, kType, &m.header));
  WireReader r(body, FrameTypeName(kType));
  uint32_t count = 0;
  KVF_RETURN_IF_ERROR(r.Get(&count, "range count"));
  KVF_RETURN_IF_ERROR(r.Reserved(4, "after range count"));
  KVF_RETURN_IF_ERROR(CheckCount(kType, "range", count, kMaxDataRanges));
  if (r.remaining() < size_t{count} * kWriteRangeBytes) {
    return Invalid(kType, "body of ", body.size(), " bytes too short for range count ", count);
  }
  m.ranges.resize(count);
  for (WriteRange& x : m.ranges) {
    KVF_RETURN_IF_ERROR(r.Get(&x.reservation_id, "reservation id"));
    KVF_RETURN_IF_ERROR(r.Get(&x.offset, "offset"));
    KVF_RETURN_IF_ERROR(r.Get(&x.length, "length"));
  }
  KVF_ASSIGN_OR_RETURN(const size_t total, CheckRanges(kType, m.ranges));
  if (r.remaining() != total) {
    return Invalid(kType, r.remaining(), " bytes for ranges of ", total);
  }
  std::string_view bytes;
  KVF_RETURN_IF_ERROR(r.Bytes(total, &bytes, "bytes"));
  m.bytes = std::string(bytes);
  return m;
}

}  // namespace kvf::protocol
