#include "node/disk/disk_tier.h"

#include <fcntl.h>
#include <pthread.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <filesystem>
#include <functional>
#include <thread>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/blocking_counter.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "node/disk/internal/record.h"

namespace kvf {

using disk_internal::CheckHeader;
using disk_internal::HeaderState;
using disk_internal::kIoAlign;
using disk_internal::RecordBytesFor;
using disk_internal::RecordHeader;

namespace {

constexpr uint64_t kMiB = uint64_t{1} << 20;
constexpr size_t kMaxIov = 256;
constexpr uint64_t kMaxRunBytes = 8 * kMiB;
constexpr const char* kFileName = "kvf-disk.log";

struct FreeDeleter {
  void operator()(std::byte* p) const { std::free(p); }
};
using AlignedBuf = std::unique_ptr<std::byte, FreeDeleter>;

AlignedBuf AllocAligned(uint64_t bytes) {
  return AlignedBuf(static_cast<std::byte*>(std::aligned_alloc(kIoAlign, bytes)));
}

absl::Status Errno(const std::string& what) {
  const int e = errno;
  return absl::Status(e == ENOSPC ? absl::StatusCode::kResourceExhausted
                                  : absl::StatusCode::kInternal,
                      absl::StrCat(what, ": ", std::strerror(e)));
}

// Whole-range pread/pwrite, retrying short transfers and EINTR.
absl::Status PreadAll(int fd, std::byte* buf, uint64_t bytes, uint64_t offset) {
  uint64_t done = 0;
  while (done < bytes) {
    const ssize_t n = ::pread(fd, buf + done, bytes - done, static_cast<off_t>(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Errno(absl::StrCat("pread of ", bytes, " bytes at ", offset));
    if (n == 0) return absl::DataLossError(absl::StrCat("short read at ", offset + done));
    done += static_cast<uint64_t>(n);
  }
  return absl::OkStatus();
}

absl::Status PwriteAll(int fd, const std::byte* buf, uint64_t bytes, uint64_t offset) {
  uint64_t done = 0;
  while (done < bytes) {
    const ssize_t n = ::pwrite(fd, buf + done, bytes - done, static_cast<off_t>(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Errno(absl::StrCat("pwrite of ", bytes, " bytes at ", offset));
    done += static_cast<uint64_t>(n);
  }
  return absl::OkStatus();
}

// A few named threads that run closures; RunAll runs a set of them (one on
// the caller) and waits.
class IoPool {
 public:
  explicit IoPool(int threads) {
    for (int i = 0; i < threads; ++i) {
      threads_.emplace_back([this] {
        pthread_setname_np(pthread_self(), "kvf-disk-io");
        Loop();
      });
    }
  }
  ~IoPool() {
    {
      absl::MutexLock lock(&mu_);
      stop_ = true;
    }
    for (std::thread& t : threads_) t.join();
  }

  void RunAll(std::vector<std::function<void()>>& tasks) {
    if (tasks.empty()) return;
    absl::BlockingCounter done(static_cast<int>(tasks.size()) - 1);
    {
      absl::MutexLock lock(&mu_);
      for (size_t i = 1; i < tasks.size(); ++i) {
        queue_.push_back([&tasks, i, &done] {
          tasks[i]();
          done.DecrementCount();
        });
      }
    }
    tasks[0]();
    done.Wait();
  }

 private:
  void Loop() {
    for (;;) {
      std::function<void()> task;
      {
        absl::MutexLock lock(&mu_);
        mu_.Await(absl::Condition(
            +[](IoPool* p) ABSL_EXCLUSIVE_LOCKS_REQUIRED(p->mu_) {
              return p->stop_ || !p->queue_.empty();
            },
            this));
        if (queue_.empty()) return;  // stopping
        task = std::move(queue_.front());
        queue_.pop_front();
      }
      task();
    }
  }

  absl::Mutex mu_;
  std::deque<std::function<void()>> queue_ ABSL_GUARDED_BY(mu_);
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;
};

struct Segment {
  uint64_t gen = 0;  // 0: empty since the file was made
  uint64_t fill = 0;
  uint64_t live_bytes = 0;
  uint64_t live_payload = 0;
  uint32_t busy = 0;  // I/Os in flight on its records
  std::vector<ReclaimedRecord> records;  // appended since it was opened
};

bool SameBlock(const DiskRecordMeta& a, const DiskRecordMeta& b) {
  return a.ns == b.ns && a.key == b.key && a.version == b.version && a.size == b.size &&
         a.codec == b.codec;
}

}  // namespace

uint64_t DiskRecordBytes(uint64_t payload_bytes) { return RecordBytesFor(payload_bytes); }

struct DiskWriteBatch::Rep {
  struct Item {
    DiskSlot slot;
    DiskRecordMeta meta;
    AlignedBuf buf;
    bool written = false;
    bool cancelled = false;
  };
  std::vector<Item> items;
};

DiskWriteBatch::DiskWriteBatch() : rep_(std::make_unique<Rep>()) {}
DiskWriteBatch::~DiskWriteBatch() = default;
DiskWriteBatch::DiskWriteBatch(DiskWriteBatch&&) noexcept = default;
DiskWriteBatch& DiskWriteBatch::operator=(DiskWriteBatch&&) noexcept = default;
size_t DiskWriteBatch::size() const { return rep_->items.size(); }
void DiskWriteBatch::Cancel(size_t i) { rep_->items[i].cancelled = true; }
bool DiskWriteBatch::written(size_t i) const { return rep_->items[i].written; }

absl::Span<std::byte> DiskWriteBatch::Add(const DiskSlot& slot, const DiskRecordMeta& meta) {
  Rep::Item item{slot, meta, AllocAligned(slot.record_bytes)};
  std::byte* payload = item.buf.get() + disk_internal::kHeaderBytes;
  rep_->items.push_back(std::move(item));
  return {payload, meta.size};
}

struct DiskTier::Impl {
  Impl(int fd, uint64_t segment_bytes, uint64_t segments, int io_threads)
      : fd(fd), segment_bytes(segment_bytes), seg(segments), pool(std::max(1, io_threads)) {}
  ~Impl() { ::close(fd); }

  size_t SegmentOf(uint64_t offset) const { return (offset - kIoAlign) / segment_bytes; }
  uint64_t SegmentStart(size_t i) const { return kIoAlign + i * segment_bytes; }

  // Recovery: scans segment `i` (its bytes in `buf`) into `found`.
  struct Candidate {
    DiskRecordMeta meta;
    DiskSlot slot;
    bool tombstone = false;
  };
  void ScanSegment(size_t i, const std::byte* buf, std::vector<Candidate>* found, uint64_t* corrupt);

  const int fd;
  const uint64_t segment_bytes;
  // Space: the caller serialises these.
  std::vector<Segment> seg;
  int head = -1;
  uint64_t next_gen = 1;

  IoPool pool;
  std::atomic<uint64_t> reads{0}, writes{0}, read_bytes{0}, written_bytes{0}, corrupt{0};
  LatencyHistogram read_latency, write_latency;
};

void DiskTier::Impl::ScanSegment(size_t i, const std::byte* buf, std::vector<Candidate>* found,
                                 uint64_t* corrupt_found) {
  Segment& s = seg[i];
  uint64_t pos = 0;
  uint64_t gen = 0;
  while (pos + kIoAlign <= segment_bytes) {
    RecordHeader h;
    const HeaderState state = CheckHeader(buf + pos, segment_bytes - pos, &h);
    if (state == HeaderState::kEnd) break;
    if (state == HeaderState::kBadHeader) {  // torn or corrupt: the rest is unreadable
      ++*corrupt_found;
      break;
    }
    if (gen == 0) gen = h.segment_gen;
    if (h.segment_gen != gen) break;  // a previous generation's leftovers
    Candidate c;
    c.meta = disk_internal::MetaOf(h);
    c.slot = DiskSlot{SegmentStart(i) + pos, h.record_bytes, h.payload_bytes, h.segment_gen};
    c.tombstone = state == HeaderState::kTombstone;
    if (!c.tombstone && !disk_internal::CheckPayload(h, buf + pos)) {
      ++*corrupt_found;
    } else {
      found->push_back(c);
    }
    pos += h.record_bytes;
  }
  s.gen = gen;
  s.fill = gen == 0 ? 0 : pos;
  next_gen = std::max(next_gen, gen + 1);
}

DiskTier::DiskTier(std::unique_ptr<Impl> impl, std::string file_path, bool direct_io)
    : impl_(std::move(impl)), file_path_(std::move(file_path)), direct_io_(direct_io) {}
DiskTier::~DiskTier() = default;

absl::StatusOr<std::unique_ptr<DiskTier>> DiskTier::Open(const DiskTierOptions& options,
                                                         DiskRecovery* recovery) {
  *recovery = DiskRecovery{};
  if (options.path.empty()) return absl::InvalidArgumentError("disk tier: no path");
  uint64_t segment_bytes = options.segment_bytes
                               ? options.segment_bytes
                               : std::clamp<uint64_t>(options.capacity_bytes / 16, kMiB, 64 * kMiB);
  segment_bytes = disk_internal::RoundUpIo(
      std::max(segment_bytes, options.min_segment_bytes + disk_internal::kHeaderBytes));
  const uint64_t segments =
      options.capacity_bytes > kIoAlign ? (options.capacity_bytes - kIoAlign) / segment_bytes : 0;
  if (segments < 2) {
    return absl::InvalidArgumentError(absl::StrCat(
        "disk tier: ", options.capacity_bytes, " bytes hold fewer than two ", segment_bytes,
        "-byte segments (a segment must hold the largest block); raise disk_bytes"));
  }
  std::error_code ec;
  std::filesystem::create_directories(options.path, ec);
  if (ec) {
    return absl::InternalError(
        absl::StrCat("disk tier: cannot create ", options.path, ": ", ec.message()));
  }
  const std::string file = (std::filesystem::path(options.path) / kFileName).string();
  bool direct = true;
  int fd = ::open(file.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_DIRECT, 0600);
  if (fd < 0 && errno == EINVAL) {  // the file system has no O_DIRECT (tmpfs)
    direct = false;
    fd = ::open(file.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  }
  if (fd < 0) return Errno(absl::StrCat("disk tier: open ", file));
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    const int e = errno;
    ::close(fd);
    errno = e;
    return e == EWOULDBLOCK ? absl::FailedPreconditionError(absl::StrCat(
                                  "disk tier: ", file, " is in use by another process"))
                            : Errno(absl::StrCat("disk tier: flock ", file));
  }
  auto impl = std::make_unique<Impl>(fd, segment_bytes, segments, options.io_threads);
  const uint64_t file_bytes = kIoAlign + segments * segment_bytes;

  AlignedBuf block = AllocAligned(kIoAlign);
  struct stat st;
  if (::fstat(fd, &st) != 0) return Errno("disk tier: fstat");
  uint64_t old_segment_bytes = 0, old_segments = 0;
  const bool usable = static_cast<uint64_t>(st.st_size) >= file_bytes &&
                      PreadAll(fd, block.get(), kIoAlign, 0).ok() &&
                      disk_internal::ReadSuperBlock(block.get(), &old_segment_bytes, &old_segments) &&
                      old_segment_bytes == segment_bytes && old_segments == segments;
  if (!usable) {
    if (st.st_size > 0) {
      KVF_LOG(WARNING) << "disk tier: " << file << " was made with other settings (segment "
                       << old_segment_bytes << " bytes x " << old_segments
                       << "); starting it empty";
    }
    recovery->reinitialized = true;
    // Truncating first zeroes every old byte: nothing of a previous geometry
    // can pass for a record.
    if (::ftruncate(fd, 0) != 0) return Errno("disk tier: ftruncate");
    if (int e = ::posix_fallocate(fd, 0, static_cast<off_t>(file_bytes)); e != 0) {
      if (e == ENOSPC) {
        return absl::ResourceExhaustedError(absl::StrCat(
            "disk tier: no room for ", file_bytes, " bytes at ", options.path));
      }
      if (::ftruncate(fd, static_cast<off_t>(file_bytes)) != 0) return Errno("disk tier: ftruncate");
    }
    disk_internal::MakeSuperBlock(segment_bytes, segments, {block.get(), kIoAlign});
    KVF_RETURN_IF_ERROR(PwriteAll(fd, block.get(), kIoAlign, 0));
    if (::fdatasync(fd) != 0) return Errno("disk tier: fdatasync");
  } else {
    std::vector<Impl::Candidate> found;
    AlignedBuf buf = AllocAligned(segment_bytes);
    for (size_t i = 0; i < segments; ++i) {
      KVF_RETURN_IF_ERROR(PreadAll(fd, buf.get(), segment_bytes, impl->SegmentStart(i)));
      impl->ScanSegment(i, buf.get(), &found, &recovery->corrupt);
    }
    // The newest record of each key wins; a tombstone wins by removing it.
    absl::flat_hash_map<std::pair<NamespaceId, BlockKey>, size_t> newest;
    auto newer = [&](size_t a, size_t b) {
      return std::pair(found[a].slot.segment_gen, found[a].slot.offset) >
             std::pair(found[b].slot.segment_gen, found[b].slot.offset);
    };
    for (size_t i = 0; i < found.size(); ++i) {
      auto [it, inserted] = newest.try_emplace(std::pair(found[i].meta.ns, found[i].meta.key), i);
      if (!inserted) {
        ++recovery->superseded;
        if (newer(i, it->second)) it->second = i;
      }
    }
    for (const auto& [key, i] : newest) {
      const Impl::Candidate& c = found[i];
      if (c.tombstone) {
        ++recovery->superseded;
        continue;
      }
      if (c.meta.mutable_entry) {
        ++recovery->mutable_dropped;
        continue;
      }
      Segment& s = impl->seg[impl->SegmentOf(c.slot.offset)];
      s.live_bytes += c.slot.record_bytes;
      s.live_payload += c.slot.payload_bytes;
      s.records.push_back(ReclaimedRecord{c.meta.ns, c.meta.key, c.slot.offset});
      recovery->records.push_back(RecoveredRecord{c.meta, c.slot});
    }
    impl->corrupt += recovery->corrupt;
  }
  return std::unique_ptr<DiskTier>(new DiskTier(std::move(impl), file, direct));
}

absl::StatusOr<DiskSlot> DiskTier::Allocate(const DiskRecordMeta& meta,
                                            std::vector<ReclaimedRecord>* reclaimed) {
  Impl& m = *impl_;
  const uint64_t rb = RecordBytesFor(meta.size);
  if (rb > m.segment_bytes) {
    return absl::InvalidArgumentError(absl::StrCat("a ", meta.size, "-byte block does not fit in a ",
                                                   m.segment_bytes, "-byte disk segment"));
  }
  if (m.head < 0 || m.seg[m.head].fill + rb > m.segment_bytes) {
    int next = -1;
    for (size_t i = 0; i < m.seg.size(); ++i) {
      if (static_cast<int>(i) == m.head || m.seg[i].busy > 0) continue;
      if (next < 0 || m.seg[i].gen < m.seg[next].gen) next = static_cast<int>(i);
    }
    if (next < 0) return absl::UnavailableError("every disk segment is busy with I/O");
    Segment& s = m.seg[next];
    reclaimed->insert(reclaimed->end(), s.records.begin(), s.records.end());
    s = Segment{};
    s.gen = m.next_gen++;
    m.head = next;
  }
  Segment& s = m.seg[m.head];
  DiskSlot slot{m.SegmentStart(m.head) + s.fill, rb, meta.size, s.gen};
  s.fill += rb;
  s.live_bytes += rb;
  s.live_payload += meta.size;
  ++s.busy;
  s.records.push_back(ReclaimedRecord{meta.ns, meta.key, slot.offset});
  return slot;
}

void DiskTier::Free(const DiskSlot& slot) {
  Segment& s = impl_->seg[impl_->SegmentOf(slot.offset)];
  if (s.gen != slot.segment_gen) return;  // reclaimed since
  s.live_bytes -= slot.record_bytes;
  s.live_payload -= slot.payload_bytes;
}

void DiskTier::BeginIo(uint64_t offset) { ++impl_->seg[impl_->SegmentOf(offset)].busy; }
void DiskTier::EndIo(uint64_t offset) { --impl_->seg[impl_->SegmentOf(offset)].busy; }

DiskSpaceStats DiskTier::SpaceStats() const {
  DiskSpaceStats s;
  s.segment_bytes = impl_->segment_bytes;
  s.capacity_bytes = impl_->seg.size() * impl_->segment_bytes;
  for (const Segment& g : impl_->seg) {
    s.used_bytes += g.live_bytes;
    s.stored_bytes += g.live_payload;
  }
  return s;
}

absl::Status DiskTier::Write(DiskWriteBatch* batch) {
  auto& items = batch->rep_->items;
  if (items.empty()) return absl::OkStatus();
  std::vector<size_t> order(items.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(),
            [&](size_t a, size_t b) { return items[a].slot.offset < items[b].slot.offset; });
  // Runs of records that follow each other in the file: one pwritev each.
  std::vector<std::vector<size_t>> runs;
  uint64_t run_end = 0, run_bytes = 0;
  for (size_t i : order) {
    if (items[i].cancelled) continue;
    const DiskSlot& s = items[i].slot;
    if (runs.empty() || s.offset != run_end || runs.back().size() >= kMaxIov ||
        run_bytes + s.record_bytes > kMaxRunBytes) {
      runs.emplace_back();
      run_bytes = 0;
    }
    runs.back().push_back(i);
    run_end = s.offset + s.record_bytes;
    run_bytes += s.record_bytes;
  }
  absl::Mutex mu;
  absl::Status first;
  std::vector<std::function<void()>> tasks;
  for (const std::vector<size_t>& run : runs) {
    tasks.push_back([&, run] {
      std::vector<iovec> iov;
      uint64_t bytes = 0;
      for (size_t i : run) {
        auto& it = items[i];
        disk_internal::SealRecord(it.meta, it.slot.segment_gen, {it.buf.get(), it.slot.record_bytes});
        iov.push_back(iovec{it.buf.get(), it.slot.record_bytes});
        bytes += it.slot.record_bytes;
      }
      const absl::Time start = absl::Now();
      const uint64_t offset = items[run.front()].slot.offset;
      absl::Status s;
      ssize_t n;
      do {
        n = ::pwritev(impl_->fd, iov.data(), static_cast<int>(iov.size()), static_cast<off_t>(offset));
      } while (n < 0 && errno == EINTR);
      if (n < 0) {
        s = Errno(absl::StrCat("disk tier: pwritev of ", bytes, " bytes at ", offset));
      } else if (static_cast<uint64_t>(n) < bytes) {
        // Short write (rare): finish record by record.
        uint64_t done = static_cast<uint64_t>(n), pos = 0;
        for (size_t k = 0; k < run.size() && s.ok(); ++k) {
          const auto& it = items[run[k]];
          const uint64_t end = pos + it.slot.record_bytes;
          if (done < end) {
            const uint64_t skip = done > pos ? done - pos : 0;
            s = PwriteAll(impl_->fd, it.buf.get() + skip, it.slot.record_bytes - skip,
                          it.slot.offset + skip);
            done = end;
          }
          pos = end;
        }
      }
      impl_->write_latency.Record(absl::Now() - start);
      if (s.ok()) {
        for (size_t i : run) items[i].written = true;
        impl_->writes += run.size();
        impl_->written_bytes += bytes;
      } else {
        absl::MutexLock lock(&mu);
        if (first.ok()) first = s;
      }
    });
  }
  impl_->pool.RunAll(tasks);
  return first;
}

absl::StatusOr<DiskRead> DiskTier::Read(const DiskSlot& slot, const DiskRecordMeta& expect) {
  const absl::Time start = absl::Now();
  AlignedBuf buf = AllocAligned(slot.record_bytes);
  KVF_RETURN_IF_ERROR(PreadAll(impl_->fd, buf.get(), slot.record_bytes, slot.offset));
  impl_->read_latency.Record(absl::Now() - start);
  ++impl_->reads;
  impl_->read_bytes += slot.record_bytes;
  RecordHeader h;
  const HeaderState state = CheckHeader(buf.get(), slot.record_bytes, &h);
  if (state != HeaderState::kRecord || h.record_bytes != slot.record_bytes ||
      h.segment_gen != slot.segment_gen || !SameBlock(disk_internal::MetaOf(h), expect) ||
      !disk_internal::CheckPayload(h, buf.get())) {
    ++impl_->corrupt;
    return absl::DataLossError(absl::StrCat("disk tier: record of block ", expect.key.ToHex(),
                                            " at offset ", slot.offset, " of ", file_path_,
                                            " does not verify"));
  }
  DiskRead out;
  out.meta_ = disk_internal::MetaOf(h);
  std::byte* raw = buf.release();
  out.buffer_ = std::shared_ptr<std::byte>(raw, FreeDeleter());
  out.payload_ = {raw + disk_internal::kHeaderBytes, h.payload_bytes};
  return out;
}

absl::Status DiskTier::Tombstone(const DiskSlot& slot, const DiskRecordMeta& meta) {
  AlignedBuf block = AllocAligned(kIoAlign);
  disk_internal::MakeTombstone(slot.segment_gen, slot.record_bytes, meta, {block.get(), kIoAlign});
  return PwriteAll(impl_->fd, block.get(), kIoAlign, slot.offset);
}

uint64_t DiskTier::reads() const { return impl_->reads.load(); }
uint64_t DiskTier::writes() const { return impl_->writes.load(); }
uint64_t DiskTier::read_bytes() const { return impl_->read_bytes.load(); }
uint64_t DiskTier::written_bytes() const { return impl_->written_bytes.load(); }
uint64_t DiskTier::corrupt_records() const { return impl_->corrupt.load(); }
const LatencyHistogram& DiskTier::read_latency() const { return impl_->read_latency; }
const LatencyHistogram& DiskTier::write_latency() const { return impl_->write_latency; }

}  // namespace kvf
