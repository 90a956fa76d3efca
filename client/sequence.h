// kvf::Sequence: a mutable, position-addressed list of blocks (issue #5;
// docs/sequences.md).
//
// Content-addressed blocks (chained token hashes) are immutable: equal keys
// mean equal bytes. A *sequence* is the other kind of entry: an engine appends
// decode-time KV blocks to it and may overwrite a position; readers read
// ranges of positions. It is a layer over the public kvf::Client calls only:
// position i of sequence `id` is the ordinary block key SequenceBlockKey(id, i)
// stored as a mutable entry (PutOptions::is_mutable), so the agents bump its
// version on every write and the usual placement applies (segments of
// NamespaceSpec::segment_blocks positions land on their own owners).
//
// Length. There is no length record in the cluster: the length is the number
// of leading positions some owner holds. Open finds it with Client::Lookup
// over windows of positions (64, 128, 256, ... up to max_length). A handle
// then keeps its own idea of the length: it grows with this handle's Append
// and is re-read from the cluster by Refresh.
//
// Read-your-writes. The handle remembers the version of every position it
// wrote or learned (Open, Refresh, Read). Read serves each position at or
// past that version: one BatchGet of the range, then, only for the positions
// that came back older (a replica that had not caught up), a re-read with
// GetOptions::min_version. A position that still cannot be served at that
// version reports FAILED_PRECONDITION.
//
// What the cache may do. kvfabric is a cache: any block may be evicted.
//  - An evicted position reads back NOT_FOUND (that block only); the engine
//    recomputes it and Write()s it back.
//  - Open/Refresh stop at the first position nobody holds, so a sequence with
//    an evicted middle block opens shorter. A writer that reopens such a
//    sequence and appends at the hole re-exposes the positions after it that
//    are still cached (docs/sequences.md, "Eviction").
//  - A position rewritten after its eviction starts again at counter 1, so a
//    handle that remembers a newer version reports FAILED_PRECONDITION for it
//    until Refresh() makes it forget.
//
// Mixed precision. With NamespaceSpec::precision on, the raw-block calls
// (AppendBlocks, WriteBlock, ReadBlocks) store the last recent_blocks
// positions in one codec (int8) and re-encode older ones to another (int4)
// as they age, from raw copies the writer keeps; readers decode whatever a
// position holds (docs/sequences.md, "Mixed precision").
//
// Thread-safety. The *sequence* (namespace, id) must have a single writer: at
// most one handle in the whole cluster calls Append/Write (or AppendBlocks/
// WriteBlock) at a time. Two writers would append at their own idea of the
// length and overwrite each other; nothing detects it. Any number of handles,
// in any processes, may Open and Read it. One *handle* is thread-safe: Read,
// ReadBlocks, length() and version() may run from many threads, concurrently
// with the writer's calls; Append, Write, AppendBlocks, WriteBlock and Refresh
// on one handle run one at a time (a second call waits for the first).
//
// Lifetime. A Sequence holds a pointer to its Client, which must outlive it.
// Sequence is move-only; a moved-from handle answers FAILED_PRECONDITION.
#ifndef KVF_CLIENT_SEQUENCE_H_
#define KVF_CLIENT_SEQUENCE_H_

#include <compare>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "client/client.h"
#include "common/block_hash.h"
#include "common/block_key.h"
#include "common/version.h"

namespace kvf {

// The longest sequence a handle will probe for or append to, in blocks.
inline constexpr size_t kMaxSequenceLength = size_t{1} << 20;

// A caller-chosen 128-bit sequence identity, unique within a namespace (a
// request id, a session id, ...). FromName derives one from a string.
struct SequenceId {
  uint64_t hi = 0;
  uint64_t lo = 0;

  // The id of a named sequence. Pass the namespace's hash algorithm where
  // names come from untrusted users (XXH3 collisions can be forged).
  static SequenceId FromName(std::string_view name,
                             HashAlgorithm algorithm = HashAlgorithm::kXxh3_128);
  // 32 lowercase hex digits, hi first.
  std::string ToHex() const;

  friend bool operator==(const SequenceId&, const SequenceId&) = default;
  friend auto operator<=>(const SequenceId&, const SequenceId&) = default;
};

// The block key of position `index` of sequence `id`, in a namespace that
// hashes with `algorithm` (NamespaceSpec::hash). Deterministic across
// machines and runs; domain-separated from token-chain keys (HashSequence)
// by a reserved parent and `extra` tag, so a sequence position never names a
// content block (docs/sequences.md, "Keys"). Thread-safe, allocation-free.
BlockKey SequenceBlockKey(HashAlgorithm algorithm, const SequenceId& id, uint64_t index);

struct SequenceOptions {
  // Open and Refresh probe at most this many positions; Append and Write
  // refuse to go past it (OUT_OF_RANGE). 1 .. kMaxSequenceLength.
  size_t max_length = kMaxSequenceLength;
  // Positions in Open's first Lookup window; each next window is twice the
  // last. A hint: sequences about this long open in one round trip.
  size_t first_window = 64;
};

class Sequence {
 public:
  // Opens sequence `id` of `ns` through `client` (which must outlive the
  // handle) and discovers its length: the longest prefix of positions some
  // owner holds, found with Client::Lookup in growing windows (about
  // log2(length / first_window) + 1 round trips, each to every owner of the
  // window). Remembers the version each position reported. A sequence nobody
  // wrote opens with length 0. INVALID_ARGUMENT for an unregistered namespace
  // or bad options; the Lookup's error when no owner answers.
  static absl::StatusOr<Sequence> Open(Client& client, const Namespace& ns, const SequenceId& id,
                                       const SequenceOptions& options = {});

  Sequence(Sequence&&) noexcept;
  Sequence& operator=(Sequence&&) noexcept;
  ~Sequence();

  // Writes blocks at positions [length(), length() + blocks.size()) as
  // mutable entries (options.is_mutable is forced on; codec and ack as in
  // Client::BatchPut). Each buffer must be exactly ns.BlockBytes(codec) bytes
  // (INVALID_ARGUMENT for the whole call, nothing written). OUT_OF_RANGE when
  // the sequence would pass max_length.
  //
  // Returns one BlockResult per block (its version on success). The length
  // grows by the leading blocks that succeeded: if block k fails, the blocks
  // after it that did land report ABORTED and are removed again (best
  // effort), so the sequence never has a hole, and length() is the old
  // length + k.
  absl::StatusOr<BatchResult> Append(absl::Span<const ConstBlockBuffer> blocks,
                                     const PutOptions& options = {});

  // Overwrites position `index` < length() with `size` bytes (the cluster
  // bumps its version), or appends one block when index == length(). Returns
  // the new version, or the block's error. OUT_OF_RANGE past length().
  absl::StatusOr<Version> Write(size_t index, const void* data, size_t size,
                                const PutOptions& options = {});

  // Reads positions [begin, end) into dst (dst.size() == end - begin, each
  // at least the stored block's size), at or past the version this handle
  // remembers for each one, and at or past options.min_version when set.
  // OUT_OF_RANGE unless begin <= end <= length(); INVALID_ARGUMENT for a
  // wrong number of buffers or an empty one. Otherwise one BlockResult per
  // position: NOT_FOUND (evicted: recompute it), FAILED_PRECONDITION (no owner
  // serves the remembered version), ...; a failed position's buffer holds
  // unspecified bytes. Versions read raise the remembered ones.
  absl::StatusOr<BatchResult> Read(size_t begin, size_t end, absl::Span<const BlockBuffer> dst,
                                   const GetOptions& options = {});

  // ---- Raw blocks and mixed precision (docs/sequences.md, "Mixed precision")
  //
  // These calls take and return *unencoded* blocks: exactly
  // ns().spec().layout.BytesPerBlock() bytes each, in host memory (they
  // encode and decode on the CPU). The handle picks each position's codec
  // from the namespace's NamespaceSpec::precision, so callers never see one:
  //  - policy off (recent_blocks == 0): positions are stored unencoded;
  //  - policy on: the last recent_blocks positions are stored with
  //    `precision.recent`, older ones with `precision.old`. The writer's
  //    handle keeps an owned raw copy of each recent position it wrote (at
  //    most recent_blocks copies); when AppendBlocks moves positions out of
  //    the window it re-encodes them with `old` from those copies and
  //    overwrites them (one BatchPut per contiguous run of aged positions: a
  //    version bump, like Write). A position this handle holds no copy of
  //    (written by another handle or by the encoded calls, or present before
  //    Open) is left as it is.
  // Readers need no policy: ReadBlocks decodes whatever codec each position
  // holds (BlockResult::codec). The encoded calls above still work on the
  // same positions; Write drops the handle's raw copy of the position, and
  // Append moves the window without aging (the next AppendBlocks does).

  // What AppendBlocks did.
  struct AppendBlocksResult {
    // One BlockResult per raw block, with Append's meaning (length grows by
    // the leading blocks that succeeded; later ones report ABORTED).
    BatchResult appended;
    // Positions this call re-encoded to precision.old.
    size_t aged = 0;
    // OK, or the first error of re-encoding an aged position. Not an error
    // of the append: such a position keeps its `recent` block (readable, just
    // larger) and its raw copy is dropped, so it stays that way.
    absl::Status aging;
  };

  // Appends raw blocks at [length(), length() + raw.size()). Each is encoded
  // with the codec its position will have when the append is done (new
  // positions already outside the window go straight to `old`), then stored
  // as Append does; then aged positions are re-encoded (above).
  // options.codec must be none (INVALID_ARGUMENT: the bytes are raw);
  // is_mutable is forced on, ack applies to both writes. INVALID_ARGUMENT for
  // the whole call, nothing written, when a buffer is null, not exactly
  // BytesPerBlock() or holds a value the codec refuses (an infinity);
  // OUT_OF_RANGE past max_length.
  absl::StatusOr<AppendBlocksResult> AppendBlocks(absl::Span<const ConstBlockBuffer> raw,
                                                  const PutOptions& options = {});

  // Overwrites position `index` < length() with a raw block, encoded with the
  // codec of its age; a recent position's raw copy is replaced. Returns the
  // new version or the block's error. OUT_OF_RANGE for index >= length()
  // (append with AppendBlocks); other arguments as AppendBlocks.
  absl::StatusOr<Version> WriteBlock(size_t index, const void* data, size_t size,
                                     const PutOptions& options = {});

  // Reads positions [begin, end) as Read does and decodes each into raw_dst
  // (each buffer at least BytesPerBlock() bytes; INVALID_ARGUMENT for the
  // call otherwise). Per position: BlockResult::codec is the codec it was
  // stored with, size is BytesPerBlock() on success; a blob that does not
  // decode reports the codec's error (DATA_LOSS, ...) for that position.
  absl::StatusOr<BatchResult> ReadBlocks(size_t begin, size_t end,
                                         absl::Span<const BlockBuffer> raw_dst,
                                         const GetOptions& options = {});

  // Re-discovers the length and versions from the cluster, as Open does,
  // replacing what this handle remembered. Readers call it to see a writer's
  // appends; anyone calls it after FAILED_PRECONDITION from a rewritten
  // position. Not needed by the writer for its own writes.
  absl::Status Refresh();

  // The length this handle knows of; 0 for a moved-from handle.
  size_t length() const;
  // The version remembered for position `index`; Version{} past length().
  Version version(size_t index) const;

  const SequenceId& id() const;
  const Namespace& ns() const;
  size_t max_length() const;

 private:
  struct Impl;
  explicit Sequence(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace kvf

#endif  // KVF_CLIENT_SEQUENCE_H_
