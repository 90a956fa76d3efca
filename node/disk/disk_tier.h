// DiskTier: the shard store's SSD tier, a log of self-describing block records
// in one file that survives restarts (docs/shard-store.md, "Disk tier").
#ifndef KVF_NODE_DISK_DISK_TIER_H_
#define KVF_NODE_DISK_DISK_TIER_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "common/block_key.h"
#include "common/latency_histogram.h"
#include "common/namespace.h"
#include "common/version.h"
#include "kernels/codec.h"

namespace kvf {

struct DiskTierOptions {
  // A directory (created if missing). The tier is one file in it,
  // `kvf-disk.log`, locked (flock) while open so two agents cannot share it.
  std::string path;
  // The file's size, rounded down to whole segments; at least two segments.
  uint64_t capacity_bytes = 0;
  // The log's unit of reclaim. 0: capacity/16 clamped to [1 MiB, 64 MiB],
  // raised to `min_segment_bytes`.
  uint64_t segment_bytes = 0;
  // The largest record the caller will write must fit in one segment: the
  // store passes its slab size (no block is larger) plus a header's room.
  uint64_t min_segment_bytes = 0;
  // Threads that write batches (reads run on the caller's thread).
  int io_threads = 2;
};

// What a record says about its block: enough to rebuild the store's entry
// after a restart, namespace by id (a namespace registered later finds it).
struct DiskRecordMeta {
  NamespaceId ns = 0;
  BlockKey key;
  Version version;
  CodecId codec = CodecId::kNone;
  bool mutable_entry = false;
  uint64_t size = 0;  // payload bytes
  uint64_t placement_hash = 0;
  BlockKey parent = BlockKey::Root();
  uint32_t depth = 0;
};

// The bytes a record of `payload_bytes` takes in the file: a 128-byte header
// and the payload, rounded up to 4 KiB.
uint64_t DiskRecordBytes(uint64_t payload_bytes);

// Where a record lives in the file.
struct DiskSlot {
  uint64_t offset = 0;        // from the start of the file, 4 KiB aligned
  uint64_t record_bytes = 0;  // header + payload, rounded up to 4 KiB
  uint64_t payload_bytes = 0;
  uint64_t segment_gen = 0;
};

struct RecoveredRecord {
  DiskRecordMeta meta;
  DiskSlot slot;
};

// What Open found in an existing file.
struct DiskRecovery {
  std::vector<RecoveredRecord> records;  // the newest record of each live key
  uint64_t corrupt = 0;         // records whose header or checksum did not verify
  uint64_t mutable_dropped = 0; // mutable records: never recovered (may be stale)
  uint64_t superseded = 0;      // older copies of a key, and removed keys
  bool reinitialized = false;   // no usable file (new, or other geometry)
};

// A record the log took back to make room; the caller forgets the block if
// its entry still points at `offset`.
struct ReclaimedRecord {
  NamespaceId ns = 0;
  BlockKey key;
  uint64_t offset = 0;
};

struct DiskSpaceStats {
  uint64_t capacity_bytes = 0;  // segments * segment_bytes
  uint64_t used_bytes = 0;      // record bytes of live records
  uint64_t stored_bytes = 0;    // payload bytes of live records
  uint64_t segment_bytes = 0;
  uint64_t reclaimed_records = 0;  // live records dropped to make room
};

// A batch of records to append, built by the caller outside any lock it
// holds: Add gives the buffer for each payload. Move-only.
class DiskWriteBatch {
 public:
  DiskWriteBatch();
  ~DiskWriteBatch();
  DiskWriteBatch(DiskWriteBatch&&) noexcept;
  DiskWriteBatch& operator=(DiskWriteBatch&&) noexcept;

  // Where the caller copies `meta.size` payload bytes for the record at `slot`.
  absl::Span<std::byte> Add(const DiskSlot& slot, const DiskRecordMeta& meta);
  size_t size() const;
  // Record `i` is not to be written after all (its payload could not be
  // copied): Write skips it and written(i) stays false.
  void Cancel(size_t i);
  // After DiskTier::Write: whether record `i` reached the file.
  bool written(size_t i) const;

 private:
  friend class DiskTier;
  struct Rep;
  std::unique_ptr<Rep> rep_;
};

// A record read back and verified; owns its (aligned) buffer.
class DiskRead {
 public:
  absl::Span<const std::byte> payload() const { return payload_; }
  const DiskRecordMeta& meta() const { return meta_; }

 private:
  friend class DiskTier;
  std::shared_ptr<std::byte> buffer_;
  absl::Span<const std::byte> payload_;
  DiskRecordMeta meta_;
};

// Layout: a 4 KiB superblock (geometry), then fixed-size segments. Records are
// appended at the head segment; when it is full the head moves to the segment
// with the oldest generation that no I/O is using, and that segment's live
// records are reclaimed (FIFO over segments: the disk tier's eviction policy).
//
// Thread-safety: the space methods (Allocate, Free, BeginIo, EndIo,
// SpaceStats) are not thread-safe: the store calls them under its mutex; they
// do no I/O. The I/O methods (Write, Read, Tombstone, the stats accessors) are
// thread-safe and take no lock a caller may hold, so they run outside the
// store's mutex. A slot in use by I/O must be bracketed by BeginIo/EndIo
// (Allocate begins one for its write), so its segment is not reclaimed under it.
class DiskTier {
 public:
  // Opens or creates the file and scans it: every record that verifies is in
  // `recovery->records`; the rest are counted and their space is free.
  // INVALID_ARGUMENT for a capacity below two segments; the errno text
  // (e.g. "disk path ... is in use by another process") otherwise.
  static absl::StatusOr<std::unique_ptr<DiskTier>> Open(const DiskTierOptions& options,
                                                        DiskRecovery* recovery);
  ~DiskTier();
  DiskTier(const DiskTier&) = delete;
  DiskTier& operator=(const DiskTier&) = delete;

  const std::string& file_path() const { return file_path_; }
  bool direct_io() const { return direct_io_; }

  // ---- Space (not thread-safe; no I/O) ----
  // Room for a record of `meta` at the log's head, with an I/O begun on it.
  // May reclaim the oldest segment: its records go to `reclaimed`.
  // INVALID_ARGUMENT if the record is larger than a segment; UNAVAILABLE if
  // every other segment is busy with I/O.
  absl::StatusOr<DiskSlot> Allocate(const DiskRecordMeta& meta,
                                    std::vector<ReclaimedRecord>* reclaimed);
  // The record at `slot` is dead (its block was promoted, removed, replaced).
  void Free(const DiskSlot& slot);
  // Brackets a read or tombstone of a live slot: its segment is not
  // reclaimed in between.
  void BeginIo(uint64_t offset);
  void EndIo(uint64_t offset);
  DiskSpaceStats SpaceStats() const;

  // ---- I/O (thread-safe) ----
  // Seals and writes every record of `batch`; contiguous records go in one
  // pwritev, runs in parallel on the I/O threads. Blocks until all are done.
  // Returns the first error; batch->written(i) says which records made it.
  absl::Status Write(DiskWriteBatch* batch);
  // Reads and verifies the record at `slot`, which must be `expect`'s block
  // (namespace, key, version, size). DATA_LOSS, counted in corrupt_records(),
  // when it does not verify: a torn or corrupted record is never returned.
  absl::StatusOr<DiskRead> Read(const DiskSlot& slot, const DiskRecordMeta& expect);
  // Overwrites the record's first block with a tombstone, so a restart does
  // not bring the block back.
  absl::Status Tombstone(const DiskSlot& slot, const DiskRecordMeta& meta);

  uint64_t reads() const;
  uint64_t writes() const;  // records written
  uint64_t read_bytes() const;
  uint64_t written_bytes() const;
  uint64_t corrupt_records() const;  // found by Open and by Read
  const LatencyHistogram& read_latency() const;   // per record read
  const LatencyHistogram& write_latency() const;  // per write call (a coalesced run)

 private:
  struct Impl;
  DiskTier(std::unique_ptr<Impl> impl, std::string file_path, bool direct_io);
  std::unique_ptr<Impl> impl_;
  const std::string file_path_;
  const bool direct_io_;
};

}  // namespace kvf

#endif  // KVF_NODE_DISK_DISK_TIER_H_
