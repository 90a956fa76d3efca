// libFuzzer target: the decoders of stored KV blocks (kernels/), fed bytes
// that claim to be a blob. A stored block arrives from the network or from
// memory that may be corrupt, so every decoder must return OK, DATA_LOSS or
// INVALID_ARGUMENT and never read or write out of bounds (ASan/UBSan).
//
// Input (tests/fuzz/input_formats.h, CodecInput):
//   [0] codec = b & 3, entry point = (b >> 2) & 3:
//         0 Codec::Decode (kernels/codec.h), cross-checked with kcore::CpuDecode
//         1 kcore::CheckBlobHeaderBytes + kcore::CpuDecode (the device twins' path)
//         2 ScatterPages (kernels/paged.h) into a vLLM page table
//         3 kcore::ScatterCpu into a layer-major page buffer
//   [1] dtype = b % 3; bit 6: one page per token (else one page per block);
//       bit 7: write the layout's fingerprint into the blob (so mutated layouts
//       get past the fingerprint check and reach the section checks)
//   [2..5] layers 1..4, heads 1..4, head_dim 1..80, tokens 1..80
//   [6..] the blob
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "common/kv_layout.h"
#include "kernels/codec.h"
#include "kernels/core/cpu_codec_ref.h"
#include "kernels/core/paged.h"
#include "kernels/internal/codec_format.h"
#include "kernels/paged.h"
#include "tests/fuzz/input_formats.h"

namespace {

using kvf::CodecId;
using kvf::KvLayout;

[[noreturn]] void Fail(const char* what, const absl::Status& s) {
  std::fprintf(stderr, "codec fuzz: %s: %s\n", what, s.ToString().c_str());
  std::abort();
}

void CheckExpected(const char* what, const absl::Status& s) {
  if (s.ok() || s.code() == absl::StatusCode::kDataLoss ||
      s.code() == absl::StatusCode::kInvalidArgument) {
    return;
  }
  Fail(what, s);
}

absl::Status FromCore(const kvf::kcore::Result& r) {
  return absl::Status(static_cast<absl::StatusCode>(r.code), r.message);
}

// Codec::Decode; when it accepts the blob the reference decoder must produce
// the same bytes, and the decoded block must survive an encode/decode cycle.
void FuzzDecode(const kvf::Codec& codec, const KvLayout& layout,
                const std::vector<std::byte>& blob) {
  // Exactly-sized heap buffers, so ASan sees any overrun.
  std::vector<std::byte> out(layout.BytesPerBlock());
  const absl::Status s = codec.Decode(layout, blob, absl::MakeSpan(out));
  CheckExpected("Decode", s);
  if (!s.ok()) return;
  std::vector<std::byte> ref(layout.BytesPerBlock());
  const kvf::kcore::Result r =
      kvf::kcore::CpuDecode(codec.id(), kvf::internal::ShapeOf(layout), blob.data(), ref.data());
  if (!r.ok()) Fail("CpuDecode after a successful Decode", FromCore(r));
  if (std::memcmp(out.data(), ref.data(), out.size()) != 0) {
    Fail("Decode and CpuDecode disagree", absl::OkStatus());
  }
  std::vector<std::byte> again(codec.EncodedSize(layout));
  const absl::Status e = codec.Encode(layout, out, absl::MakeSpan(again));
  // A huge scale can decode to infinities, which encoders refuse.
  CheckExpected("Encode of a decoded block", e);
  if (!e.ok()) return;
  const absl::Status d = codec.Decode(layout, again, absl::MakeSpan(out));
  if (!d.ok()) Fail("Decode of a re-encoded block", d);
}

void FuzzCoreDecode(CodecId codec, const KvLayout& layout, const std::vector<std::byte>& blob) {
  const kvf::kcore::KvShape shape = kvf::internal::ShapeOf(layout);
  const absl::Status s = FromCore(kvf::kcore::CheckBlobHeaderBytes(
      codec, shape, layout.Fingerprint(), blob.data(), blob.size()));
  CheckExpected("CheckBlobHeaderBytes", s);
  if (!s.ok()) return;
  std::vector<std::byte> out(layout.BytesPerBlock());
  const absl::Status d = FromCore(kvf::kcore::CpuDecode(codec, shape, blob.data(), out.data()));
  if (!d.ok()) Fail("CpuDecode after CheckBlobHeaderBytes", d);
}

// Page tables just big enough: `page_size` tokens a page, one spare page, the
// block's pages taken in reverse order from the top.
struct Pages {
  uint32_t page_size;
  uint32_t num_pages;
  std::vector<int32_t> ids;
};

Pages PagesFor(const KvLayout& layout, bool page_per_token) {
  Pages p;
  p.page_size = page_per_token ? 1 : layout.block_tokens;
  const uint32_t used = layout.block_tokens / p.page_size;
  p.num_pages = used + 1;
  for (uint32_t i = 0; i < used; ++i) p.ids.push_back(static_cast<int32_t>(p.num_pages - 1 - i));
  return p;
}

void FuzzScatterPages(CodecId codec, const KvLayout& layout, bool page_per_token,
                      const std::vector<std::byte>& blob) {
  const Pages p = PagesFor(layout, page_per_token);
  const auto dtype = kvf::ElemTypeOf(layout.dtype);
  kvf::PagedKvDesc probe = kvf::VllmPagedLayout(layout.num_layers, layout.num_kv_heads,
                                                layout.head_dim, p.page_size, p.num_pages, dtype,
                                                {});
  const size_t layer_bytes = kvf::kcore::VllmLayerBytes(probe);
  std::vector<std::vector<std::byte>> layers(layout.num_layers,
                                             std::vector<std::byte>(layer_bytes));
  std::vector<void*> bases;
  for (auto& l : layers) bases.push_back(l.data());
  kvf::PagedKvDesc desc = kvf::VllmPagedLayout(layout.num_layers, layout.num_kv_heads,
                                               layout.head_dim, p.page_size, p.num_pages, dtype,
                                               bases);
  desc.layer_bytes = layer_bytes;
  CheckExpected("ScatterPages", kvf::ScatterPages(desc, layout, p.ids, codec, blob));
}

void FuzzScatterCpu(CodecId codec, const KvLayout& layout, bool page_per_token,
                    const std::vector<std::byte>& blob) {
  const Pages p = PagesFor(layout, page_per_token);
  const auto dtype = kvf::ElemTypeOf(layout.dtype);
  kvf::PagedKvDesc probe =
      kvf::LayerMajorPagedLayout(layout.num_layers, layout.num_kv_heads, layout.head_dim,
                                 p.page_size, p.num_pages, dtype, nullptr);
  std::vector<std::byte> buffer(kvf::kcore::LayerMajorBytes(probe));
  kvf::PagedKvDesc desc =
      kvf::LayerMajorPagedLayout(layout.num_layers, layout.num_kv_heads, layout.head_dim,
                                 p.page_size, p.num_pages, dtype, buffer.data());
  const absl::Status s = FromCore(kvf::kcore::ScatterCpu(
      desc, kvf::internal::ShapeOf(layout), p.ids.data(), p.ids.size(), codec,
      layout.Fingerprint(), blob.data(), blob.size()));
  CheckExpected("ScatterCpu", s);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  kvf::fuzz::CodecInput in;
  if (!kvf::fuzz::ParseCodecInput(data, size, &in)) return -1;  // not added to the corpus
  if (!in.layout.Validate().ok()) Fail("harness built an invalid layout", in.layout.Validate());
  switch (in.entry) {
    case 0: FuzzDecode(kvf::CpuCodec(in.codec), in.layout, in.blob); break;
    case 1: FuzzCoreDecode(in.codec, in.layout, in.blob); break;
    case 2: FuzzScatterPages(in.codec, in.layout, in.page_per_token, in.blob); break;
    default: FuzzScatterCpu(in.codec, in.layout, in.page_per_token, in.blob); break;
  }
  return 0;
}
