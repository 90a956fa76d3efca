// kvf::Sequence's raw-block calls and mixed precision (client/sequence.h;
// docs/sequences.md, "Mixed precision"): choose each position's codec from
// the namespace's PrecisionPolicy, encode before the encoded calls store,
// re-encode positions that leave the recent window, decode on read.
#include <algorithm>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "client/internal/recent_blocks.h"
#include "client/internal/sequence_impl.h"
#include "client/sequence.h"
#include "common/status_macros.h"
#include "kernels/codec.h"

namespace kvf {
namespace {

using client_internal::CodecForPosition;

// CodecName as a std::string (absl's string_view is not std's here).
std::string Name(CodecId codec) { return std::string(CodecName(codec)); }

BlockResult Failed(absl::Status status) {
  BlockResult b;
  b.status = std::move(status);
  return b;
}

absl::Status MovedFrom() {
  return absl::FailedPreconditionError("kvf::Sequence handle was moved from");
}

absl::Status CheckRawOptions(const PutOptions& options) {
  if (options.codec == CodecId::kNone) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat("raw-block calls take unencoded blocks: PutOptions.codec must be none, got ",
                   Name(options.codec), " (the namespace's precision policy picks codecs)"));
}

absl::Status CheckRawBlock(const KvLayout& layout, size_t index, const void* data, size_t size) {
  if (data == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("position ", index, ": buffer is null"));
  }
  if (size != layout.BytesPerBlock()) {
    return absl::InvalidArgumentError(absl::StrCat("position ", index, ": raw block of ", size,
                                                   " bytes, the layout's is ",
                                                   layout.BytesPerBlock()));
  }
  return absl::OkStatus();
}

// Blocks encoded with one codec, ready for a BatchPut. Codec none passes the
// caller's bytes through; others own their blobs (one allocation).
struct EncodedRun {
  CodecId codec = CodecId::kNone;
  std::vector<std::byte> storage;
  std::vector<ConstBlockBuffer> blocks;
};

// Encodes raw[k] (the block of position first + k) with `codec`. Errors name
// the position.
absl::StatusOr<EncodedRun> EncodeRun(const Namespace& ns, CodecId codec, size_t first,
                                     absl::Span<const ConstBlockBuffer> raw) {
  EncodedRun run;
  run.codec = codec;
  if (codec == CodecId::kNone) {
    run.blocks.assign(raw.begin(), raw.end());
    return run;
  }
  const KvLayout& layout = ns.spec().layout;
  const size_t out_bytes = ns.BlockBytes(codec);
  run.storage.resize(raw.size() * out_bytes);
  for (size_t k = 0; k < raw.size(); ++k) {
    const absl::Span<std::byte> out(run.storage.data() + k * out_bytes, out_bytes);
    const absl::Status s = CpuCodec(codec).Encode(
        layout, absl::MakeConstSpan(static_cast<const std::byte*>(raw[k].data), raw[k].size), out);
    if (!s.ok()) {
      return absl::Status(s.code(), absl::StrCat("position ", first + k, ": encoding with ",
                                                 Name(codec), ": ", s.message()));
    }
    run.blocks.push_back({out.data(), out.size()});
  }
  return run;
}

}  // namespace

// Every aged position's copy is dropped, whatever happens: a position whose
// write failed keeps its `recent` block (still readable), and retrying it
// would need a copy outside the bounded window.
void Sequence::Impl::AgeLocked(size_t length, const PutOptions& options, AppendBlocksResult& out) {
  const PrecisionPolicy& policy = ns.spec().precision;
  if (!policy.enabled() || length <= policy.recent_blocks) return;
  const CodecId old = static_cast<CodecId>(policy.old);
  const std::vector<size_t> aged = recent.KeptBelow(length - policy.recent_blocks);
  auto fail = [&](size_t index, const absl::Status& why) {
    if (!out.aging.ok()) return;
    out.aging =
        absl::Status(why.code(), absl::StrCat("re-encoding position ", index, " of sequence ",
                                              id.ToHex(), " to ", Name(old), " (it keeps its ",
                                              Name(static_cast<CodecId>(policy.recent)),
                                              " block): ", why.message()));
  };
  PutOptions po = options;
  po.codec = old;
  for (size_t i = 0; i < aged.size();) {
    size_t j = i + 1;
    while (j < aged.size() && aged[j] == aged[j - 1] + 1) ++j;
    std::vector<ConstBlockBuffer> raw;
    for (size_t k = i; k < j; ++k) {
      const absl::Span<const std::byte> b = recent.Find(aged[k]);
      raw.push_back({b.data(), b.size()});
    }
    absl::StatusOr<EncodedRun> run = EncodeRun(ns, old, aged[i], raw);
    absl::StatusOr<BatchResult> r =
        run.ok() ? OverwriteLocked(aged[i], run->blocks, po) : run.status();
    for (size_t k = i; k < j; ++k) {
      const absl::Status st = r.ok() ? r->blocks[k - i].status : r.status();
      if (st.ok()) {
        ++out.aged;
      } else {
        fail(aged[k], st);
      }
      recent.Drop(aged[k]);
    }
    i = j;
  }
}

absl::StatusOr<Sequence::AppendBlocksResult> Sequence::AppendBlocks(
    absl::Span<const ConstBlockBuffer> raw, const PutOptions& options) {
  if (impl_ == nullptr) return MovedFrom();
  KVF_RETURN_IF_ERROR(CheckRawOptions(options));
  Impl& s = *impl_;
  absl::MutexLock wlock(&s.write_mu);
  const PrecisionPolicy& policy = s.ns.spec().precision;
  const size_t len = s.Length();
  const size_t n = raw.size();
  for (size_t k = 0; k < n; ++k) {
    KVF_RETURN_IF_ERROR(CheckRawBlock(s.ns.spec().layout, len + k, raw[k].data, raw[k].size));
  }
  AppendBlocksResult out;
  if (n == 0) return out;
  // Checked before anything is stored: the append may take two BatchPuts.
  KVF_RETURN_IF_ERROR(s.CheckRoom(len, n));

  // New positions in at most two runs: those already past the window (old),
  // then the window (recent). Everything is encoded before anything is
  // stored, so a block the codec refuses fails the call with nothing written.
  std::vector<EncodedRun> runs;
  for (size_t k = 0; k < n;) {
    const CodecId codec = CodecForPosition(policy, len + k, len + n);
    size_t e = k + 1;
    while (e < n && CodecForPosition(policy, len + e, len + n) == codec) ++e;
    KVF_ASSIGN_OR_RETURN(EncodedRun run, EncodeRun(s.ns, codec, len + k, raw.subspan(k, e - k)));
    runs.push_back(std::move(run));
    k = e;
  }
  for (const EncodedRun& run : runs) {
    const size_t first = len + out.appended.blocks.size();
    if (!out.appended.all_ok()) {
      // An earlier block failed: the length stops there (Append's contract).
      for (size_t k = 0; k < run.blocks.size(); ++k) {
        out.appended.blocks.push_back(Failed(absl::AbortedError(
            absl::StrCat("not appended: block ", s.Length(), " before it failed"))));
      }
      continue;
    }
    PutOptions po = options;
    po.codec = run.codec;
    absl::StatusOr<BatchResult> r = s.AppendLocked(run.blocks, po);
    if (!r.ok() && first == len) return r.status();  // nothing stored yet: the call's error
    for (size_t k = 0; k < run.blocks.size(); ++k) {
      out.appended.blocks.push_back(r.ok() ? std::move(r->blocks[k]) : Failed(r.status()));
    }
  }

  const size_t new_len = s.Length();
  s.AgeLocked(new_len, options, out);
  if (policy.enabled()) {
    // After aging, which freed the slots of every position below the window.
    for (size_t p = std::max(len, new_len - std::min<size_t>(new_len, policy.recent_blocks));
         p < new_len; ++p) {
      s.recent.Keep(p, absl::MakeConstSpan(static_cast<const std::byte*>(raw[p - len].data),
                                           raw[p - len].size));
    }
  }
  return out;
}

absl::StatusOr<Version> Sequence::WriteBlock(size_t index, const void* data, size_t size,
                                             const PutOptions& options) {
  if (impl_ == nullptr) return MovedFrom();
  KVF_RETURN_IF_ERROR(CheckRawOptions(options));
  Impl& s = *impl_;
  absl::MutexLock wlock(&s.write_mu);
  const size_t len = s.Length();
  if (index >= len) {
    return absl::OutOfRangeError(absl::StrCat("WriteBlock at position ", index, " of sequence ",
                                              s.id.ToHex(), " of length ", len,
                                              ": it overwrites; append with AppendBlocks"));
  }
  KVF_RETURN_IF_ERROR(CheckRawBlock(s.ns.spec().layout, index, data, size));
  const PrecisionPolicy& policy = s.ns.spec().precision;
  const CodecId codec = CodecForPosition(policy, index, len);
  const ConstBlockBuffer block{data, size};
  KVF_ASSIGN_OR_RETURN(EncodedRun run,
                       EncodeRun(s.ns, codec, index, absl::MakeConstSpan(&block, 1)));
  // The old copy no longer describes the position, whatever the write does.
  s.recent.Drop(index);
  PutOptions po = options;
  po.codec = codec;
  KVF_ASSIGN_OR_RETURN(BatchResult r, s.OverwriteLocked(index, run.blocks, po));
  if (!r.blocks[0].status.ok()) return r.blocks[0].status;
  if (policy.enabled() && index + policy.recent_blocks >= len) {
    s.recent.Keep(index, absl::MakeConstSpan(static_cast<const std::byte*>(data), size));
  }
  return r.blocks[0].version;
}

absl::StatusOr<BatchResult> Sequence::ReadBlocks(size_t begin, size_t end,
                                                 absl::Span<const BlockBuffer> raw_dst,
                                                 const GetOptions& options) {
  if (impl_ == nullptr) return MovedFrom();
  const Namespace& ns = impl_->ns;
  const KvLayout& layout = ns.spec().layout;
  const size_t raw_bytes = layout.BytesPerBlock();
  if (begin <= end && raw_dst.size() == end - begin) {
    for (size_t k = 0; k < raw_dst.size(); ++k) {
      if (raw_dst[k].data == nullptr || raw_dst[k].size < raw_bytes) {
        return absl::InvalidArgumentError(absl::StrCat(
            "position ", begin + k, ": raw destination of ", raw_dst[k].size,
            " bytes (null: ", raw_dst[k].data == nullptr, "), a block needs ", raw_bytes));
      }
    }
  }  // else Read reports the range or count.

  // A stored block is read straight into the caller's buffer when every codec
  // fits there (realistic layouts: a blob is smaller than the raw block), so
  // an unencoded position costs no copy. Tiny layouts, where a blob's header
  // and scales outgrow the raw block, read into scratch blocks instead.
  size_t max_stored = 0;
  for (int c = 0; c < kNumCodecs; ++c) {
    max_stored = std::max(max_stored, ns.BlockBytes(static_cast<CodecId>(c)));
  }
  const bool direct = raw_bytes >= max_stored;
  std::vector<std::byte> scratch(direct ? 0 : raw_dst.size() * max_stored);
  std::vector<BlockBuffer> dst;
  if (!direct) {
    for (size_t k = 0; k < raw_dst.size(); ++k) {
      dst.push_back({scratch.data() + k * max_stored, max_stored});
    }
  }
  KVF_ASSIGN_OR_RETURN(BatchResult r,
                       Read(begin, end, direct ? raw_dst : absl::MakeConstSpan(dst), options));

  std::vector<std::byte> blob;  // direct: the stored blob, moved out of the way of decode
  for (size_t k = 0; k < r.blocks.size(); ++k) {
    BlockResult& b = r.blocks[k];
    if (!b.status.ok()) continue;
    const std::byte* stored = static_cast<const std::byte*>(direct ? raw_dst[k].data : dst[k].data);
    absl::Status s;
    if (b.codec == CodecId::kNone) {
      if (b.size != raw_bytes) {
        s = absl::DataLossError(
            absl::StrCat("unencoded block of ", b.size, " bytes, expected ", raw_bytes));
      } else if (!direct) {
        std::memcpy(raw_dst[k].data, stored, raw_bytes);
      }
    } else {
      if (direct) {
        blob.assign(stored, stored + b.size);
        stored = blob.data();
      }
      s = CpuCodec(b.codec).Decode(
          layout, absl::MakeConstSpan(stored, b.size),
          absl::MakeSpan(static_cast<std::byte*>(raw_dst[k].data), raw_bytes));
    }
    if (!s.ok()) {
      b.status = absl::Status(s.code(), absl::StrCat("position ", begin + k, ": decoding ",
                                                     Name(b.codec), ": ", s.message()));
      continue;
    }
    b.size = static_cast<uint32_t>(raw_bytes);
  }
  return r;
}

}  // namespace kvf
