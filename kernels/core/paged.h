// Paged KV: where an inference engine keeps its KV cache, and the gather /
// scatter between an engine's pages and one contiguous kvfabric block.
// Abseil-free (kernels/core/); kernels/paged.h wraps it in absl::Status.
//
// An engine stores K and V in pages of `page_size` tokens. A kvfabric block of
// T tokens (canonical order [L][2 (K,V)][T][H][D], common/kv_layout.h) spans
// T / page_size pages, listed by id: block token t lives in page
// page_ids[t / page_size] at slot t % page_size, for every layer. Gather reads
// those pages into a block (optionally encoding it, kernels/codec.h); scatter
// writes a block back into pages (optionally decoding it).
//
// The engine side is described by PagedKvDesc: per layer a base pointer, and
// element strides of page, K|V, token slot and head; the D elements of one
// head are contiguous. Factories fill it for the common layouts; any other
// layout whose rows of D elements are contiguous can be described by hand
// (kCustom), e.g. vLLM's HND variant or TensorRT-LLM's block-major pool.
#ifndef KVF_KERNELS_CORE_PAGED_H_
#define KVF_KERNELS_CORE_PAGED_H_

#include <cstddef>
#include <cstdint>
#include <vector>

#include "kernels/core/types.h"

namespace kvf::kcore {

enum class PagedLayoutKind : uint8_t {
  // vLLM: one tensor per layer, [num_pages][2][page_size][H][D]; layer_bases
  // holds the L tensors' data pointers.
  kVllm = 0,
  // One contiguous allocation, layer-major: [L][2][num_pages][page_size][H][D]
  // (per layer a K pool then a V pool, as SGLang/LMCache-style layer buffers).
  kLayerMajor = 1,
  // Strides and per-layer bases set by the caller.
  kCustom = 2,
};

struct PagedKvDesc {
  PagedLayoutKind kind = PagedLayoutKind::kCustom;
  uint32_t num_layers = 0;
  uint32_t num_kv_heads = 0;
  uint32_t head_dim = 0;
  uint32_t page_size = 0;  // tokens per page
  uint32_t num_pages = 0;  // pages per layer; valid page ids are [0, num_pages)
  ElemType dtype = ElemType::kFp16;
  // Element (not byte) strides inside one layer. Element (page p, kv, slot s,
  // head h, d) of layer l is at
  //   layer_bases[l] + (p*page_stride + kv*kv_stride + s*token_stride
  //                     + h*head_stride + d) * ElemSize(dtype).
  uint64_t page_stride = 0;
  uint64_t kv_stride = 0;
  uint64_t token_stride = 0;
  uint64_t head_stride = 0;
  // Host array of L pointers (into device memory for the device calls, host
  // memory for the CPU twins). Not owned.
  std::vector<void*> layer_bases;
  // Bytes addressable from each layer base (0: unknown, not checked). When
  // set, Validate() proves every element of every page lies inside.
  uint64_t layer_bytes = 0;
};

// vLLM's per-layer tensors [num_pages][2][page_size][H][D].
PagedKvDesc VllmPagedLayout(uint32_t num_layers, uint32_t num_kv_heads, uint32_t head_dim,
                            uint32_t page_size, uint32_t num_pages, ElemType dtype,
                            std::vector<void*> layer_bases);

// One buffer [L][2][num_pages][page_size][H][D] at `base`.
PagedKvDesc LayerMajorPagedLayout(uint32_t num_layers, uint32_t num_kv_heads, uint32_t head_dim,
                                  uint32_t page_size, uint32_t num_pages, ElemType dtype,
                                  void* base);

// Bytes of one layer of the vLLM layout / of the whole layer-major buffer.
size_t VllmLayerBytes(const PagedKvDesc& desc);
size_t LayerMajorBytes(const PagedKvDesc& desc);

// Checks the descriptor alone: dims non-zero and within KvLayout's limits,
// one non-null base per layer aligned to the element size, strides that keep
// rows of one page from overlapping (head_stride >= D, and for K|V, slots and
// pages: the extent of the inner dimensions), and the extent within
// layer_bytes when given. INVALID_ARGUMENT naming the field.
Result ValidatePagedDesc(const PagedKvDesc& desc);

// Checks one transfer: the descriptor, the block shape against it (layers,
// heads, head_dim, dtype equal; block_tokens a multiple of page_size), and
// the page list (exactly block_tokens / page_size ids, each < num_pages; at
// most kMaxPagesPerBlock). For a scatter also that no page id repeats (two
// block tokens would land in one slot). INVALID_ARGUMENT naming what is wrong.
inline constexpr size_t kMaxPagesPerBlock = 512;
Result ValidatePagedTransfer(const PagedKvDesc& desc, const KvShape& block,
                             const int32_t* page_ids, size_t num_page_ids, bool scatter);

// CPU twins of the device gather/scatter (kernels/core/cuda_ops.h), same
// semantics, on host memory.
//
// GatherCpu writes the stored form of the block made of `page_ids` into `out`
// (out_bytes >= StoredSize(codec, block)): for kNone the raw canonical block,
// else the codec's blob with `fingerprint` in its header (identical to
// gathering, then CpuEncode).
Result GatherCpu(const PagedKvDesc& src, const KvShape& block, const int32_t* page_ids,
                 size_t num_page_ids, CodecId codec, uint64_t fingerprint, void* out,
                 size_t out_bytes);

// ScatterCpu writes a stored block (kNone: the raw block; else a blob whose
// header must be the one encoders write for codec/block/fingerprint) into the
// pages `page_ids` of `dst`. Only the T slots of those pages are written.
Result ScatterCpu(const PagedKvDesc& dst, const KvShape& block, const int32_t* page_ids,
                  size_t num_page_ids, CodecId codec, uint64_t fingerprint, const void* in,
                  size_t in_bytes);

}  // namespace kvf::kcore

#endif  // KVF_KERNELS_CORE_PAGED_H_
