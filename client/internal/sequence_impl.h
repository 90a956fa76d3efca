// The state behind a kvf::Sequence handle (client/sequence.h), shared by
// sequence.cc (keys, length, encoded calls) and sequence_blocks.cc (the
// raw-block calls and mixed precision). Not part of the public surface.
#ifndef KVF_CLIENT_INTERNAL_SEQUENCE_IMPL_H_
#define KVF_CLIENT_INTERNAL_SEQUENCE_IMPL_H_

#include <cstddef>
#include <memory>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/types/span.h"
#include "client/client.h"
#include "client/internal/recent_blocks.h"
#include "client/sequence.h"
#include "common/block_key.h"
#include "common/version.h"

namespace kvf {
namespace client_internal {

// Keys [0, capacity) of one sequence; slots are written once by the writer
// and read by everyone (see Sequence::Impl).
struct KeyBuffer {
  explicit KeyBuffer(size_t cap) : keys(new BlockKey[cap]), capacity(cap) {}
  std::unique_ptr<BlockKey[]> keys;
  size_t capacity;
};

}  // namespace client_internal

// Two locks. write_mu serialises the writer's calls (Append, Write, Refresh
// and their raw-block twins) for their whole duration, network included. mu
// guards the shared state and is held only to copy or update it, so readers
// never wait on the network.
//
// The key chain. Client calls take the chain from position 0, so the handle
// caches keys [0, computed) in a KeyBuffer. Readers copy the buffer's
// shared_ptr and the length under mu and then read slots [0, length) without
// a lock. The writer only ever writes slots >= computed >= length (never read
// by anyone) and publishes them by raising the length under mu; when it needs
// more room it copies into a new, larger buffer and swaps the pointer, and
// readers holding the old buffer keep it alive.
struct Sequence::Impl {
  using KeyBuffer = client_internal::KeyBuffer;

  Impl(Client* c, const Namespace& n, const SequenceId& i, const SequenceOptions& o)
      : client(c),
        ns(n),
        id(i),
        options(o),
        recent(n.spec().precision.recent_blocks, n.spec().layout.BytesPerBlock()) {}

  Client* client;
  Namespace ns;
  SequenceId id;
  SequenceOptions options;

  absl::Mutex write_mu;
  size_t computed ABSL_GUARDED_BY(write_mu) = 0;
  // Raw copies of the recent window, written by the raw-block calls
  // (docs/sequences.md, "Mixed precision"); capacity 0 when the policy is off.
  client_internal::RecentBlocks recent ABSL_GUARDED_BY(write_mu);

  mutable absl::Mutex mu;
  std::shared_ptr<KeyBuffer> keys ABSL_GUARDED_BY(mu);
  size_t length ABSL_GUARDED_BY(mu) = 0;
  std::vector<Version> versions ABSL_GUARDED_BY(mu);  // one per position < length

  size_t Length() const ABSL_LOCKS_EXCLUDED(mu) {
    absl::MutexLock lock(&mu);
    return length;
  }
  // Keys [0, n) exist in the returned buffer.
  std::shared_ptr<KeyBuffer> EnsureKeys(size_t n) ABSL_EXCLUSIVE_LOCKS_REQUIRED(write_mu);
  absl::Status Probe() ABSL_EXCLUSIVE_LOCKS_REQUIRED(write_mu);
  // OUT_OF_RANGE when appending n blocks to length `len` passes max_length.
  absl::Status CheckRoom(size_t len, size_t n) const;
  // Appends encoded blocks (Sequence::Append's contract).
  absl::StatusOr<BatchResult> AppendLocked(absl::Span<const ConstBlockBuffer> blocks,
                                           const PutOptions& options)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(write_mu);
  // Overwrites positions [begin, begin + blocks.size()), all < length, with
  // encoded blocks in one BatchPut; records the versions of those that landed.
  absl::StatusOr<BatchResult> OverwriteLocked(size_t begin,
                                              absl::Span<const ConstBlockBuffer> blocks,
                                              const PutOptions& options)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(write_mu);
  // Mixed precision: re-encodes the kept positions below the recent window of
  // a sequence of `length` positions with precision.old and overwrites them,
  // one BatchPut per contiguous run; adds to out.aged / out.aging.
  void AgeLocked(size_t length, const PutOptions& options, AppendBlocksResult& out)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(write_mu);
};

}  // namespace kvf

#endif  // KVF_CLIENT_INTERNAL_SEQUENCE_IMPL_H_
