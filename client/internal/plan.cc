#include "client/internal/plan.h"

#include <algorithm>
#include <map>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/cord.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace kvf::client_internal {
namespace {

constexpr char kUnreachableUrl[] = "type.kvfabric.dev/unreachable";
constexpr char kWrongOwnerUrl[] = "type.kvfabric.dev/wrong_owner";

}  // namespace

absl::Status CheckRange(size_t chain_size, size_t begin, size_t end) {
  if (begin > end || end > chain_size) {
    return absl::InvalidArgumentError(absl::StrCat("block range [", begin, ", ", end,
                                                   ") is not inside a chain of ", chain_size,
                                                   " keys"));
  }
  return absl::OkStatus();
}

std::vector<protocol::KeyRef> MakeKeyRefs(NamespaceId ns, absl::Span<const BlockKey> chain,
                                          uint32_t segment_blocks, size_t begin, size_t end) {
  std::vector<protocol::KeyRef> refs;
  refs.reserve(end - begin);
  size_t head = SIZE_MAX;
  uint64_t hash = 0;
  for (size_t i = begin; i < end; ++i) {
    const size_t h = i - i % segment_blocks;
    if (h != head) {
      head = h;
      hash = PlacementHash(ns, chain[h]);
    }
    refs.push_back(protocol::KeyRef{chain[i], hash});
  }
  return refs;
}

std::vector<OwnerList> OwnersOf(const Placement& placement,
                                absl::Span<const protocol::KeyRef> keys) {
  std::vector<OwnerList> out(keys.size());
  uint64_t last_hash = 0;
  bool have_last = false;
  for (size_t i = 0; i < keys.size(); ++i) {
    // Keys of one segment share a hash and arrive together.
    if (have_last && keys[i].placement_hash == last_hash) {
      out[i] = out[i - 1];
      continue;
    }
    out[i] = placement.Owners(keys[i].placement_hash);
    last_hash = keys[i].placement_hash;
    have_last = true;
  }
  return out;
}

std::vector<NodeBatch> GroupByNode(absl::Span<const std::pair<NodeId, uint32_t>> assignments,
                                   size_t max_items) {
  std::map<NodeId, std::vector<uint32_t>> per_node;
  for (const auto& [node, item] : assignments) {
    if (node == kNoNode) continue;
    per_node[node].push_back(item);
  }
  std::vector<NodeBatch> out;
  for (auto& [node, items] : per_node) {
    for (size_t i = 0; i < items.size(); i += max_items) {
      NodeBatch b;
      b.node = node;
      b.items.assign(items.begin() + i, items.begin() + std::min(items.size(), i + max_items));
      out.push_back(std::move(b));
    }
  }
  return out;
}

size_t EncodedBlockBytes(const KvLayout& layout, CodecId codec) {
  if (codec == CodecId::kNone) return layout.BytesPerBlock();
  return CpuCodec(codec).EncodedSize(layout);
}

absl::Status MarkUnreachable(absl::Status status) {
  if (status.ok()) status = absl::UnavailableError("unreachable");
  status.SetPayload(kUnreachableUrl, absl::Cord("1"));
  return status;
}

bool IsUnreachable(const absl::Status& status) {
  return status.GetPayload(kUnreachableUrl).has_value();
}

absl::Status WrongOwnerError(uint64_t agent_epoch, std::string_view message) {
  absl::Status s = absl::FailedPreconditionError(
      absl::StrCat("WRONG_OWNER (agent epoch ", agent_epoch, "): ", std::string(message)));
  s.SetPayload(kWrongOwnerUrl, absl::Cord(absl::StrCat(agent_epoch)));
  return s;
}

bool IsWrongOwner(const absl::Status& status) {
  return status.GetPayload(kWrongOwnerUrl).has_value();
}

ErrorAction ClassifyError(const protocol::ErrorResponse& error) {
  if (error.wrong_owner) return ErrorAction::kRefreshAndRetry;
  if (error.code == absl::StatusCode::kUnauthenticated) return ErrorAction::kHelloAndRetry;
  if (error.code == absl::StatusCode::kNotFound) return ErrorAction::kRegisterAndRetry;
  if (error.code == absl::StatusCode::kFailedPrecondition &&
      absl::StrContains(error.message, "not registered")) {
    return ErrorAction::kRegisterAndRetry;
  }
  return ErrorAction::kFail;
}

bool TryNextOwner(absl::StatusCode code) {
  switch (code) {
    case absl::StatusCode::kAborted:
    case absl::StatusCode::kNotFound:
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kDeadlineExceeded:
      return true;
    default:
      return false;
  }
}

}  // namespace kvf::client_internal
