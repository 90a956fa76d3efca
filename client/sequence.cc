#include "client/sequence.h"

#include <algorithm>
#include <array>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "client/internal/sequence_impl.h"
#include "common/status_macros.h"

namespace kvf {
namespace {

// Domain separation from token chains (docs/sequences.md, "Keys"): a chain
// key's parent is the root or another chain key, never this constant
// ("kvf.sequence.v1\0" as two little-endian words), and engines must not pass
// an `extra` beginning with "kvf.sequence".
constexpr BlockKey kSequenceParent{0x757165732e66766bULL, 0x0031762e65636e65ULL};
constexpr std::string_view kSequenceKeyTag = "kvf.sequence.v1";
constexpr std::string_view kSequenceNameTag = "kvf.sequence-id.v1";

std::array<uint32_t, 2> Words(uint64_t v) {
  return {static_cast<uint32_t>(v), static_cast<uint32_t>(v >> 32)};
}

absl::Status MovedFrom() {
  return absl::FailedPreconditionError("kvf::Sequence handle was moved from");
}

}  // namespace

SequenceId SequenceId::FromName(std::string_view name, HashAlgorithm algorithm) {
  std::string extra(kSequenceNameTag);
  extra.append(":").append(name);
  const BlockKey k = HashBlock(algorithm, kSequenceParent, {}, extra);
  return SequenceId{k.hi, k.lo};
}

std::string SequenceId::ToHex() const { return absl::StrFormat("%016x%016x", hi, lo); }

BlockKey SequenceBlockKey(HashAlgorithm algorithm, const SequenceId& id, uint64_t index) {
  const auto h = Words(id.hi), l = Words(id.lo), i = Words(index);
  const std::array<uint32_t, 6> words{h[0], h[1], l[0], l[1], i[0], i[1]};
  return HashBlock(algorithm, kSequenceParent, words, kSequenceKeyTag);
}

using client_internal::KeyBuffer;

std::shared_ptr<KeyBuffer> Sequence::Impl::EnsureKeys(size_t n) {
  std::shared_ptr<KeyBuffer> buf;
  {
    absl::MutexLock lock(&mu);
    buf = keys;
  }
  if (n <= computed) return buf;
  if (buf == nullptr || buf->capacity < n) {
    const size_t cap = std::min(
        std::max({n, size_t{64}, buf == nullptr ? size_t{0} : 2 * buf->capacity}),
        options.max_length);
    auto bigger = std::make_shared<KeyBuffer>(cap);
    if (computed > 0) std::copy_n(buf->keys.get(), computed, bigger->keys.get());
    buf = std::move(bigger);
  }
  const HashAlgorithm algorithm = ns.spec().hash;
  for (size_t i = computed; i < n; ++i) buf->keys[i] = SequenceBlockKey(algorithm, id, i);
  computed = n;
  absl::MutexLock lock(&mu);
  keys = buf;
  return buf;
}

absl::Status Sequence::Impl::Probe() {
  std::vector<Version> found;
  size_t start = 0;
  size_t window = std::min(options.first_window, options.max_length);
  while (start < options.max_length) {
    const size_t end = start + std::min(window, options.max_length - start);
    std::shared_ptr<KeyBuffer> buf = EnsureKeys(end);
    KVF_ASSIGN_OR_RETURN(LookupResult r,
                         client->Lookup(ns, absl::MakeConstSpan(buf->keys.get(), end), start, end));
    for (size_t k = 0; k < r.prefix; ++k) found.push_back(r.blocks[k].version);
    if (r.prefix < end - start) break;
    start = end;
    window = std::min(2 * window, options.max_length);
  }
  absl::MutexLock lock(&mu);
  length = found.size();
  versions = std::move(found);
  return absl::OkStatus();
}

absl::Status Sequence::Impl::CheckRoom(size_t len, size_t n) const {
  if (n <= options.max_length - len) return absl::OkStatus();
  return absl::OutOfRangeError(absl::StrCat("appending ", n, " blocks to sequence ", id.ToHex(),
                                            " of length ", len, " passes its max length ",
                                            options.max_length));
}

absl::StatusOr<BatchResult> Sequence::Impl::AppendLocked(absl::Span<const ConstBlockBuffer> blocks,
                                                         const PutOptions& options_in) {
  size_t len;
  {
    absl::MutexLock lock(&mu);
    len = length;
  }
  const size_t n = blocks.size();
  if (n == 0) return BatchResult{};
  KVF_RETURN_IF_ERROR(CheckRoom(len, n));
  std::shared_ptr<KeyBuffer> buf = EnsureKeys(len + n);
  const absl::Span<const BlockKey> chain(buf->keys.get(), len + n);
  PutOptions po = options_in;
  po.is_mutable = true;
  KVF_ASSIGN_OR_RETURN(BatchResult r, client->BatchPut(ns, chain, len, blocks, po));
  size_t ok = 0;
  while (ok < n && r.blocks[ok].status.ok()) ++ok;
  if (ok < n) {
    // Whatever landed past the failed block is not part of the sequence:
    // drop it (and any older block at those positions) so no reader's Open
    // sees it. Best effort: an owner that misses this still stops at the hole.
    for (size_t k = ok + 1; k < n; ++k) {
      if (!r.blocks[k].status.ok()) continue;
      r.blocks[k].status = absl::AbortedError(
          absl::StrCat("not appended: block ", len + ok, " before it failed"));
    }
    (void)client->Remove(ns, chain, len + ok, len + n);
  }
  absl::MutexLock lock(&mu);
  versions.resize(len);
  for (size_t k = 0; k < ok; ++k) versions.push_back(r.blocks[k].version);
  length = len + ok;
  return r;
}

absl::StatusOr<BatchResult> Sequence::Impl::OverwriteLocked(
    size_t begin, absl::Span<const ConstBlockBuffer> blocks, const PutOptions& options_in) {
  std::shared_ptr<KeyBuffer> buf = EnsureKeys(begin + blocks.size());
  PutOptions po = options_in;
  po.is_mutable = true;
  KVF_ASSIGN_OR_RETURN(
      BatchResult r,
      client->BatchPut(ns, absl::MakeConstSpan(buf->keys.get(), begin + blocks.size()), begin,
                       blocks, po));
  absl::MutexLock lock(&mu);
  for (size_t k = 0; k < blocks.size(); ++k) {
    if (r.blocks[k].status.ok() && begin + k < versions.size()) {
      versions[begin + k] = r.blocks[k].version;
    }
  }
  return r;
}

// ---- Sequence ---------------------------------------------------------------

Sequence::Sequence(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Sequence::Sequence(Sequence&&) noexcept = default;
Sequence& Sequence::operator=(Sequence&&) noexcept = default;
Sequence::~Sequence() = default;

absl::StatusOr<Sequence> Sequence::Open(Client& client, const Namespace& ns, const SequenceId& id,
                                        const SequenceOptions& options) {
  if (!ns.valid()) return absl::InvalidArgumentError("namespace handle is empty (not registered)");
  if (options.max_length == 0 || options.max_length > kMaxSequenceLength) {
    return absl::InvalidArgumentError(absl::StrCat("SequenceOptions.max_length must be in [1, ",
                                                   kMaxSequenceLength, "], got ",
                                                   options.max_length));
  }
  if (options.first_window == 0) {
    return absl::InvalidArgumentError("SequenceOptions.first_window must be > 0");
  }
  auto impl = std::make_unique<Impl>(&client, ns, id, options);
  {
    absl::MutexLock lock(&impl->write_mu);
    KVF_RETURN_IF_ERROR(impl->Probe());
  }
  return Sequence(std::move(impl));
}

absl::StatusOr<BatchResult> Sequence::Append(absl::Span<const ConstBlockBuffer> blocks,
                                             const PutOptions& options) {
  if (impl_ == nullptr) return MovedFrom();
  absl::MutexLock lock(&impl_->write_mu);
  return impl_->AppendLocked(blocks, options);
}

absl::StatusOr<Version> Sequence::Write(size_t index, const void* data, size_t size,
                                        const PutOptions& options) {
  if (impl_ == nullptr) return MovedFrom();
  Impl& s = *impl_;
  absl::MutexLock wlock(&s.write_mu);
  size_t len;
  {
    absl::MutexLock lock(&s.mu);
    len = s.length;
  }
  const ConstBlockBuffer block{data, size};
  if (index == len) {
    KVF_ASSIGN_OR_RETURN(BatchResult r, s.AppendLocked(absl::MakeConstSpan(&block, 1), options));
    if (!r.blocks[0].status.ok()) return r.blocks[0].status;
    return r.blocks[0].version;
  }
  if (index > len) {
    return absl::OutOfRangeError(absl::StrCat("write at position ", index, " of sequence ",
                                              s.id.ToHex(), " of length ", len,
                                              ": only positions up to the length can be written"));
  }
  // The caller's bytes replace whatever raw copy mixed precision kept: the
  // position is no longer that block, so it must not age from it.
  s.recent.Drop(index);
  KVF_ASSIGN_OR_RETURN(BatchResult r,
                       s.OverwriteLocked(index, absl::MakeConstSpan(&block, 1), options));
  if (!r.blocks[0].status.ok()) return r.blocks[0].status;
  return r.blocks[0].version;
}

absl::StatusOr<BatchResult> Sequence::Read(size_t begin, size_t end,
                                           absl::Span<const BlockBuffer> dst,
                                           const GetOptions& options) {
  if (impl_ == nullptr) return MovedFrom();
  Impl& s = *impl_;
  std::shared_ptr<KeyBuffer> buf;
  std::vector<Version> want;
  {
    absl::MutexLock lock(&s.mu);
    if (begin > end || end > s.length) {
      return absl::OutOfRangeError(absl::StrCat("read of positions [", begin, ", ", end,
                                                ") of sequence ", s.id.ToHex(), " of length ",
                                                s.length));
    }
    buf = s.keys;
    want.assign(s.versions.begin() + begin, s.versions.begin() + end);
  }
  if (dst.size() != end - begin) {
    return absl::InvalidArgumentError(absl::StrCat("read of ", end - begin, " positions got ",
                                                   dst.size(), " destination buffers"));
  }
  if (begin == end) return BatchResult{};
  const absl::Span<const BlockKey> chain(buf->keys.get(), end);
  KVF_ASSIGN_OR_RETURN(BatchResult r, s.client->BatchGet(s.ns, chain, begin, dst, options));

  // Read-your-writes: re-read what came back older than remembered, one
  // contiguous run at a time at the run's lowest remembered version, then
  // block by block for what is still below its own.
  auto stale = [&](size_t k) { return r.blocks[k].status.ok() && r.blocks[k].version < want[k]; };
  auto at_least = [&](const Version& v) {
    return options.has_min_version ? std::max(v, options.min_version) : v;
  };
  const size_t n = end - begin;
  for (size_t k = 0; k < n;) {
    if (!stale(k)) {
      ++k;
      continue;
    }
    size_t run_end = k;
    Version lowest = want[k];
    while (run_end < n && stale(run_end)) lowest = std::min(lowest, want[run_end++]);
    const GetOptions go{.has_min_version = true, .min_version = at_least(lowest)};
    KVF_ASSIGN_OR_RETURN(BatchResult again,
                         s.client->BatchGet(s.ns, chain, begin + k,
                                            dst.subspan(k, run_end - k), go));
    for (size_t j = k; j < run_end; ++j) {
      BlockResult& got = again.blocks[j - k];
      if (got.status.ok() && got.version < want[j]) {
        const GetOptions one{.has_min_version = true, .min_version = at_least(want[j])};
        KVF_ASSIGN_OR_RETURN(got, s.client->Get(s.ns, chain, begin + j, dst[j].data, dst[j].size,
                                                one));
      }
      r.blocks[j] = std::move(got);
    }
    k = run_end;
  }

  absl::MutexLock lock(&s.mu);
  for (size_t k = 0; k < n; ++k) {
    if (r.blocks[k].status.ok() && begin + k < s.versions.size()) {
      s.versions[begin + k] = std::max(s.versions[begin + k], r.blocks[k].version);
    }
  }
  return r;
}

absl::Status Sequence::Refresh() {
  if (impl_ == nullptr) return MovedFrom();
  absl::MutexLock lock(&impl_->write_mu);
  KVF_RETURN_IF_ERROR(impl_->Probe());
  // Positions past a shorter length (an evicted middle block) will be
  // rewritten by the writer (docs/sequences.md, "Eviction"); their copies no
  // longer describe the sequence.
  impl_->recent.DropFrom(impl_->Length());
  return absl::OkStatus();
}

size_t Sequence::length() const {
  if (impl_ == nullptr) return 0;
  absl::MutexLock lock(&impl_->mu);
  return impl_->length;
}

Version Sequence::version(size_t index) const {
  if (impl_ == nullptr) return Version{};
  absl::MutexLock lock(&impl_->mu);
  return index < impl_->versions.size() ? impl_->versions[index] : Version{};
}

const SequenceId& Sequence::id() const {
  static const SequenceId kNone;
  return impl_ == nullptr ? kNone : impl_->id;
}

const Namespace& Sequence::ns() const {
  static const Namespace kNone;
  return impl_ == nullptr ? kNone : impl_->ns;
}

size_t Sequence::max_length() const { return impl_ == nullptr ? 0 : impl_->options.max_length; }

}  // namespace kvf
