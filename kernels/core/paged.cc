#include "kernels/core/paged.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "kernels/core/blob_format.h"
#include "kernels/core/cpu_codec_ref.h"

namespace kvf::kcore {
namespace {

// KvLayout's limits (common/kv_layout.h), repeated so the core stays free of
// the common library.
constexpr uint32_t kMaxLayers = 1024;
constexpr uint32_t kMaxKvHeads = 1024;
constexpr uint32_t kMaxHeadDim = 4096;
constexpr uint32_t kMaxTokens = 1 << 16;
constexpr uint32_t kMaxPages = 1u << 24;

std::string Str(uint64_t v) { return std::to_string(v); }

Result Bad(std::string m) { return Result::InvalidArgument("paged KV descriptor: " + std::move(m)); }

Result CheckDim(const char* name, uint64_t v, uint64_t max) {
  if (v == 0 || v > max) {
    return Bad(std::string(name) + " is " + Str(v) + " (want 1.." + Str(max) + ")");
  }
  return Result::Ok();
}

// Elements spanned by one layer's pages, or 0 when the strides let two
// elements share an address. Dimensions are taken from the smallest stride
// up; each must step past everything inside it (a mixed-radix layout), which
// holds for every dense permutation of [page][kv][slot][head][D].
uint64_t LayerExtent(const PagedKvDesc& d, std::string* why) {
  std::array<std::pair<uint64_t, uint64_t>, 4> dims = {{{d.head_stride, d.num_kv_heads},
                                                        {d.token_stride, d.page_size},
                                                        {d.kv_stride, 2},
                                                        {d.page_stride, d.num_pages}}};
  const char* names[4] = {"head_stride", "token_stride", "kv_stride", "page_stride"};
  std::array<int, 4> order = {0, 1, 2, 3};
  std::stable_sort(order.begin(), order.end(),
                   [&](int a, int b) { return dims[a].first < dims[b].first; });
  uint64_t ext = d.head_dim;
  for (int i : order) {
    const auto [stride, count] = dims[i];
    if (count <= 1) continue;
    if (stride < ext) {
      *why = std::string(names[i]) + " " + Str(stride) + " is smaller than the " + Str(ext) +
             " elements it must step over (rows would overlap)";
      return 0;
    }
    if (stride > (UINT64_MAX - ext) / (count - 1)) {
      *why = std::string(names[i]) + " " + Str(stride) + " overflows";
      return 0;
    }
    ext += stride * (count - 1);
  }
  return ext;
}

// Byte offset of the row (page, kv, slot, head) inside a layer.
inline uint64_t RowOffset(const PagedKvDesc& d, uint64_t page, uint64_t kv, uint64_t slot,
                          uint64_t h) {
  return (page * d.page_stride + kv * d.kv_stride + slot * d.token_stride + h * d.head_stride) *
         ElemSize(d.dtype);
}

// Copies between pages and a canonical block, row by row (D elements); where
// a page keeps its slots' heads back to back (vLLM's NHD layouts: head_stride
// == D and token_stride == H*D), the rows of consecutive block tokens in one
// page are one run in both, copied at once (a page's worth per memcpy instead
// of page_size * H rows).
template <bool kScatter>
void CopyRows(const PagedKvDesc& d, const KvShape& b, const int32_t* page_ids, std::byte* block) {
  const size_t row_bytes = size_t{b.head_dim} * ElemSize(b.dtype);
  const bool runs = d.head_stride == b.head_dim &&
                    d.token_stride == uint64_t{b.num_kv_heads} * b.head_dim;
  std::byte* out = block;
  auto copy = [](std::byte* page_side, std::byte* block_side, size_t n) {
    if constexpr (kScatter) {
      std::memcpy(page_side, block_side, n);
    } else {
      std::memcpy(block_side, page_side, n);
    }
  };
  for (uint32_t l = 0; l < b.num_layers; ++l) {
    std::byte* base = static_cast<std::byte*>(d.layer_bases[l]);
    for (uint32_t kv = 0; kv < 2; ++kv) {
      if (runs) {
        const size_t token_bytes = size_t{b.num_kv_heads} * row_bytes;
        for (uint32_t t = 0; t < b.block_tokens;) {
          const uint64_t page = static_cast<uint64_t>(page_ids[t / d.page_size]);
          const uint32_t slot = t % d.page_size;
          const uint32_t n = std::min(d.page_size - slot, b.block_tokens - t);
          copy(base + RowOffset(d, page, kv, slot, 0), out, n * token_bytes);
          out += n * token_bytes;
          t += n;
        }
        continue;
      }
      for (uint32_t t = 0; t < b.block_tokens; ++t) {
        const uint64_t page = static_cast<uint64_t>(page_ids[t / d.page_size]);
        const uint32_t slot = t % d.page_size;
        for (uint32_t h = 0; h < b.num_kv_heads; ++h, out += row_bytes) {
          copy(base + RowOffset(d, page, kv, slot, h), out, row_bytes);
        }
      }
    }
  }
}

}  // namespace

PagedKvDesc VllmPagedLayout(uint32_t num_layers, uint32_t num_kv_heads, uint32_t head_dim,
                            uint32_t page_size, uint32_t num_pages, ElemType dtype,
                            std::vector<void*> layer_bases) {
  PagedKvDesc d;
  d.kind = PagedLayoutKind::kVllm;
  d.num_layers = num_layers;
  d.num_kv_heads = num_kv_heads;
  d.head_dim = head_dim;
  d.page_size = page_size;
  d.num_pages = num_pages;
  d.dtype = dtype;
  d.head_stride = head_dim;
  d.token_stride = uint64_t{num_kv_heads} * head_dim;
  d.kv_stride = d.token_stride * page_size;
  d.page_stride = 2 * d.kv_stride;
  d.layer_bases = std::move(layer_bases);
  d.layer_bytes = VllmLayerBytes(d);
  return d;
}

PagedKvDesc LayerMajorPagedLayout(uint32_t num_layers, uint32_t num_kv_heads, uint32_t head_dim,
                                  uint32_t page_size, uint32_t num_pages, ElemType dtype,
                                  void* base) {
  PagedKvDesc d;
  d.kind = PagedLayoutKind::kLayerMajor;
  d.num_layers = num_layers;
  d.num_kv_heads = num_kv_heads;
  d.head_dim = head_dim;
  d.page_size = page_size;
  d.num_pages = num_pages;
  d.dtype = dtype;
  d.head_stride = head_dim;
  d.token_stride = uint64_t{num_kv_heads} * head_dim;
  d.page_stride = d.token_stride * page_size;
  d.kv_stride = d.page_stride * num_pages;
  const uint64_t layer_elems = 2 * d.kv_stride;
  d.layer_bytes = layer_elems * ElemSize(dtype);
  d.layer_bases.resize(num_layers);
  for (uint32_t l = 0; l < num_layers; ++l) {
    d.layer_bases[l] = base == nullptr ? nullptr : static_cast<std::byte*>(base) + l * d.layer_bytes;
  }
  return d;
}

size_t VllmLayerBytes(const PagedKvDesc& d) {
  return size_t{d.num_pages} * 2 * d.page_size * d.num_kv_heads * d.head_dim * ElemSize(d.dtype);
}

size_t LayerMajorBytes(const PagedKvDesc& d) { return VllmLayerBytes(d) * d.num_layers; }

Result ValidatePagedDesc(const PagedKvDesc& d) {
  if (Result r = CheckDim("num_layers", d.num_layers, kMaxLayers); !r.ok()) return r;
  if (Result r = CheckDim("num_kv_heads", d.num_kv_heads, kMaxKvHeads); !r.ok()) return r;
  if (Result r = CheckDim("head_dim", d.head_dim, kMaxHeadDim); !r.ok()) return r;
  if (Result r = CheckDim("page_size", d.page_size, kMaxTokens); !r.ok()) return r;
  if (Result r = CheckDim("num_pages", d.num_pages, kMaxPages); !r.ok()) return r;
  if (static_cast<uint8_t>(d.dtype) > static_cast<uint8_t>(ElemType::kFp32)) {
    return Bad("unknown dtype code " + Str(static_cast<uint8_t>(d.dtype)));
  }
  if (d.layer_bases.size() != d.num_layers) {
    return Bad(Str(d.layer_bases.size()) + " layer base pointers for " + Str(d.num_layers) +
               " layers");
  }
  const size_t es = ElemSize(d.dtype);
  for (uint32_t l = 0; l < d.num_layers; ++l) {
    if (d.layer_bases[l] == nullptr) return Bad("layer " + Str(l) + " base pointer is null");
    if (reinterpret_cast<uintptr_t>(d.layer_bases[l]) % es != 0) {
      return Bad("layer " + Str(l) + " base pointer is not aligned to the " + Str(es) +
                 "-byte element");
    }
  }
  std::string why;
  const uint64_t ext = LayerExtent(d, &why);
  if (ext == 0) return Bad(why);
  if (d.layer_bytes != 0 && (ext > d.layer_bytes / es)) {
    return Bad("pages span " + Str(ext * es) + " bytes per layer, layer_bytes is " +
               Str(d.layer_bytes));
  }
  return Result::Ok();
}

Result ValidatePagedTransfer(const PagedKvDesc& d, const KvShape& b, const int32_t* page_ids,
                             size_t n, bool scatter) {
  if (Result r = ValidatePagedDesc(d); !r.ok()) return r;
  if (b.num_layers != d.num_layers || b.num_kv_heads != d.num_kv_heads ||
      b.head_dim != d.head_dim || b.dtype != d.dtype) {
    return Result::InvalidArgument(
        "paged transfer: block shape (L=" + Str(b.num_layers) + " H=" + Str(b.num_kv_heads) +
        " D=" + Str(b.head_dim) + " dtype " + Str(static_cast<int>(b.dtype)) +
        ") differs from the pages' (L=" + Str(d.num_layers) + " H=" + Str(d.num_kv_heads) +
        " D=" + Str(d.head_dim) + " dtype " + Str(static_cast<int>(d.dtype)) + ")");
  }
  if (b.block_tokens == 0 || b.block_tokens > kMaxTokens || b.block_tokens % d.page_size != 0) {
    return Result::InvalidArgument("paged transfer: block_tokens " + Str(b.block_tokens) +
                                   " is not a positive multiple of page_size " +
                                   Str(d.page_size));
  }
  const size_t want = b.block_tokens / d.page_size;
  if (n != want) {
    return Result::InvalidArgument("paged transfer: " + Str(n) + " page ids for a block of " +
                                   Str(b.block_tokens) + " tokens in pages of " +
                                   Str(d.page_size) + " (want " + Str(want) + ")");
  }
  if (n > kMaxPagesPerBlock) {
    return Result::InvalidArgument("paged transfer: " + Str(n) + " pages per block (max " +
                                   Str(kMaxPagesPerBlock) + ")");
  }
  if (page_ids == nullptr) return Result::InvalidArgument("paged transfer: page_ids is null");
  for (size_t i = 0; i < n; ++i) {
    if (page_ids[i] < 0 || static_cast<uint64_t>(page_ids[i]) >= d.num_pages) {
      return Result::InvalidArgument("paged transfer: page id #" + Str(i) + " is " +
                                     std::to_string(page_ids[i]) + " (valid: 0.." +
                                     Str(d.num_pages - 1) + ")");
    }
  }
  if (scatter) {
    std::vector<int32_t> sorted(page_ids, page_ids + n);
    std::sort(sorted.begin(), sorted.end());
    if (auto it = std::adjacent_find(sorted.begin(), sorted.end()); it != sorted.end()) {
      return Result::InvalidArgument("paged scatter: page id " + std::to_string(*it) +
                                     " appears twice");
    }
  }
  return Result::Ok();
}

Result GatherCpu(const PagedKvDesc& src, const KvShape& block, const int32_t* page_ids,
                 size_t num_page_ids, CodecId codec, uint64_t fingerprint, void* out,
                 size_t out_bytes) {
  if (Result r = ValidatePagedTransfer(src, block, page_ids, num_page_ids, false); !r.ok()) {
    return r;
  }
  const size_t need = StoredSize(codec, block);
  if (out == nullptr || out_bytes < need) {
    return Result::InvalidArgument("paged gather: output is " + Str(out_bytes) +
                                   " bytes, needs " + Str(need));
  }
  if (codec == CodecId::kNone) {
    CopyRows<false>(src, block, page_ids, static_cast<std::byte*>(out));
    return Result::Ok();
  }
  std::vector<std::byte> raw(block.BytesPerBlock());
  CopyRows<false>(src, block, page_ids, raw.data());
  return CpuEncode(codec, block, fingerprint, raw.data(), out);
}

Result ScatterCpu(const PagedKvDesc& dst, const KvShape& block, const int32_t* page_ids,
                  size_t num_page_ids, CodecId codec, uint64_t fingerprint, const void* in,
                  size_t in_bytes) {
  if (Result r = ValidatePagedTransfer(dst, block, page_ids, num_page_ids, true); !r.ok()) {
    return r;
  }
  if (in == nullptr) return Result::InvalidArgument("paged scatter: input is null");
  if (Result r = CheckBlobHeaderBytes(codec, block, fingerprint, in, in_bytes); !r.ok()) return r;
  if (codec == CodecId::kNone) {
    CopyRows<true>(dst, block, page_ids,
                   const_cast<std::byte*>(static_cast<const std::byte*>(in)));
    return Result::Ok();
  }
  std::vector<std::byte> raw(block.BytesPerBlock());
  if (Result r = CpuDecode(codec, block, in, raw.data()); !r.ok()) return r;
  CopyRows<true>(dst, block, page_ids, raw.data());
  return Result::Ok();
}

}  // namespace kvf::kcore
