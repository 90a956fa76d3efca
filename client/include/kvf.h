/* kvf.h: the C API of libkvfabric, for C programs and FFI (Python ctypes/cffi,
 * Rust, Go). A thin layer over kvf::Client (client/client.h); the same
 * semantics, with opaque handles and integer status codes.
 *
 * Status codes are absl::StatusCode values (KVF_OK = 0 ... KVF_UNAUTHENTICATED
 * = 16). Every function that fails stores a message naming what went wrong;
 * kvf_last_error() returns the calling thread's latest one (valid until that
 * thread's next kvf_* call). Functions with an `err` out-parameter also copy
 * it there when it is non-NULL.
 *
 * Keys: a chain of 128-bit block keys from block 0 of a sequence (chained
 * hashes; kvf_hash_tokens computes them). Calls act on blocks
 * [begin, begin + count) of the chain and need the whole chain before them,
 * because a block is placed by the first key of its segment.
 *
 * Batch calls return KVF_OK when every block succeeded; otherwise the code of
 * the call's error or of the first failed block, and — when `per_block` is
 * non-NULL — each block's own code there, so an engine recomputes just those.
 *
 * Thread-safety: a kvf_client may be used from many threads at once; a
 * kvf_namespace is immutable. Closing a client while calls on it run is
 * undefined. */
#ifndef KVF_H_
#define KVF_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef int kvf_status;
enum {
  KVF_OK = 0,
  KVF_CANCELLED = 1,
  KVF_UNKNOWN = 2,
  KVF_INVALID_ARGUMENT = 3,
  KVF_DEADLINE_EXCEEDED = 4,
  KVF_NOT_FOUND = 5,
  KVF_ALREADY_EXISTS = 6,
  KVF_PERMISSION_DENIED = 7,
  KVF_RESOURCE_EXHAUSTED = 8,
  KVF_FAILED_PRECONDITION = 9,
  KVF_ABORTED = 10,
  KVF_OUT_OF_RANGE = 11,
  KVF_UNIMPLEMENTED = 12,
  KVF_INTERNAL = 13,
  KVF_UNAVAILABLE = 14,
  KVF_DATA_LOSS = 15,
  KVF_UNAUTHENTICATED = 16
};

/* dtype values (common/kv_layout.h) */
enum { KVF_DTYPE_FP16 = 0, KVF_DTYPE_BF16 = 1, KVF_DTYPE_FP32 = 2 };
/* codec values (kernels/codec.h) */
enum { KVF_CODEC_NONE = 0, KVF_CODEC_FP8_E4M3 = 1, KVF_CODEC_INT8 = 2, KVF_CODEC_INT4 = 3 };
/* hash algorithms (common/block_hash.h) */
enum { KVF_HASH_XXH3_128 = 0, KVF_HASH_SHA256 = 1 };

typedef struct kvf_client kvf_client;
typedef struct kvf_namespace kvf_namespace;

typedef struct kvf_block_key {
  uint64_t hi;
  uint64_t lo;
} kvf_block_key;

typedef struct kvf_version {
  uint64_t epoch;
  uint64_t counter;
} kvf_version;

typedef struct kvf_client_options {
  const char* coordinator; /* host:port, required */
  const char* token;       /* cluster token; NULL = "" */
  const char* ucx_tls;     /* NULL or "" lets UCX choose */
  uint32_t rpc_timeout_ms; /* 0 = 5000 */
  uint32_t data_timeout_ms; /* 0 = 5000 */
  int ack_all;             /* 0: ack when the primary committed; 1: every owner */
  int worker_threads;      /* < 0 = default (4) */
} kvf_client_options;

/* Fills `options` with the defaults (everything zero/NULL but
 * worker_threads = -1). */
void kvf_client_options_init(kvf_client_options* options);

/* The calling thread's latest error message ("" if none). */
const char* kvf_last_error(void);
/* "OK", "NOT_FOUND", ... */
const char* kvf_status_name(kvf_status status);

/* Connects to the coordinator and fetches the cluster map. On success
 * *out is a client to close with kvf_close. UNAUTHENTICATED for a wrong
 * token, UNAVAILABLE when nothing answers. `err`, when non-NULL, receives a
 * pointer to the message (valid as kvf_last_error's). */
kvf_status kvf_connect(const kvf_client_options* options, kvf_client** out, const char** err);
/* NULL is allowed. */
void kvf_close(kvf_client* client);

typedef struct kvf_namespace_spec {
  const char* model_id; /* required */
  const char* tenant;   /* NULL = "" */
  uint32_t num_layers;
  uint32_t num_kv_heads;
  uint32_t head_dim;
  uint32_t block_tokens;
  uint32_t dtype;          /* KVF_DTYPE_* */
  uint32_t tp_rank;
  uint32_t tp_size;        /* 0 = 1 */
  uint32_t segment_blocks; /* 0 = 1 (each block placed by its own key) */
  uint32_t hash_algorithm; /* KVF_HASH_* */
} kvf_namespace_spec;

kvf_status kvf_register_namespace(kvf_client* client, const kvf_namespace_spec* spec,
                                  kvf_namespace** out);
void kvf_namespace_free(kvf_namespace* ns);
/* Stored bytes of one block under `codec`; 0 for an unknown codec. */
size_t kvf_namespace_block_bytes(const kvf_namespace* ns, uint32_t codec);
uint64_t kvf_namespace_id(const kvf_namespace* ns);

/* Keys of every full block of `tokens` (block_tokens of the namespace's
 * layout per block), chained from the root, with the namespace's hash. Writes
 * at most `capacity` keys and sets *count to the number of full blocks. */
kvf_status kvf_hash_tokens(const kvf_namespace* ns, const uint32_t* tokens, size_t num_tokens,
                           kvf_block_key* keys, size_t capacity, size_t* count);

/* Stores blocks [begin, begin + count) of `chain` from blocks[i] (sizes[i]
 * bytes each; each must be kvf_namespace_block_bytes(ns, codec)). Host
 * memory, or CUDA memory where the transport supports it. `versions` and
 * `per_block` may be NULL. */
kvf_status kvf_put(kvf_client* client, const kvf_namespace* ns, const kvf_block_key* chain,
                   size_t chain_len, size_t begin, size_t count, const void* const* blocks,
                   const size_t* sizes, uint32_t codec, int is_mutable, kvf_version* versions,
                   kvf_status* per_block);

/* Reads blocks [begin, begin + count) of `chain` into dst[i] (capacities[i]
 * bytes). With min_version non-NULL, only that version or a newer one is
 * served (read-your-writes). `sizes`, `versions` and `per_block` may be
 * NULL. */
kvf_status kvf_get(kvf_client* client, const kvf_namespace* ns, const kvf_block_key* chain,
                   size_t chain_len, size_t begin, size_t count, void* const* dst,
                   const size_t* capacities, const kvf_version* min_version, size_t* sizes,
                   kvf_version* versions, kvf_status* per_block);

/* The longest cached prefix of the whole chain in *prefix. When `holders` is
 * non-NULL it receives, per block i, up to `max_holders` node ids at
 * holders[i * max_holders ...] (0-padded), primary first. */
kvf_status kvf_lookup(kvf_client* client, const kvf_namespace* ns, const kvf_block_key* chain,
                      size_t chain_len, size_t* prefix, uint32_t* holders, size_t max_holders);

/* exists[i] = 1 when block begin + i is held by some node. */
kvf_status kvf_exists(kvf_client* client, const kvf_namespace* ns, const kvf_block_key* chain,
                      size_t chain_len, size_t begin, size_t count, uint8_t* exists);

/* Removes blocks [begin, begin + count) from every owner. */
kvf_status kvf_remove(kvf_client* client, const kvf_namespace* ns, const kvf_block_key* chain,
                      size_t chain_len, size_t begin, size_t count, kvf_status* per_block);

/* ---- Paged KV (client/paged.h, docs/python.md "Paged KV") -----------------
 * An engine's KV pages: per layer a base pointer, and element strides of
 * page, K|V, token slot and head (the head_dim elements of a head are
 * contiguous). Element (page p, kv, slot s, head h, d) of layer l is at
 *   layer_bases[l] + (p*page_stride + kv*kv_stride + s*token_stride
 *                     + h*head_stride + d) * element size.
 * vLLM's per-layer [num_pages][2][page_size][H][D] tensors: page_stride =
 * 2*page_size*H*D, kv_stride = page_size*H*D, token_stride = H*D,
 * head_stride = D. The layer bases are all host memory or all CUDA device
 * memory; device pages are gathered and scattered on the GPU, ordered on
 * `cuda_stream` (a cudaStream_t; NULL: the default stream). Zero-initialise
 * the struct so fields added later read as absent. */
typedef struct kvf_paged_kv {
  uint32_t num_layers, num_kv_heads, head_dim;
  uint32_t page_size; /* tokens per page; must divide the block's tokens */
  uint32_t num_pages; /* per layer */
  uint32_t dtype;     /* KVF_DTYPE_*, as the namespace's */
  uint64_t page_stride, kv_stride, token_stride, head_stride;
  void* const* layer_bases; /* num_layers pointers */
  uint64_t layer_bytes;     /* bytes addressable from each base; 0 = unchecked */
  void* cuda_stream;        /* device pages: the stream to order with; NULL = default */
} kvf_paged_kv;

/* Stores blocks [begin, begin + count) of `chain` from `pages`: block
 * begin + i is made of pages page_ids[i*P .. (i+1)*P), P = block_tokens /
 * page_size (num_page_ids must be count * P), encoded with `codec`. A layout
 * that does not match the namespace's is KVF_INVALID_ARGUMENT before any
 * byte moves. `per_block` may be NULL. */
kvf_status kvf_save_pages(kvf_client* client, const kvf_namespace* ns, const kvf_block_key* chain,
                          size_t chain_len, size_t begin, size_t count, const kvf_paged_kv* pages,
                          const int32_t* page_ids, size_t num_page_ids, uint32_t codec,
                          kvf_status* per_block);

/* Loads blocks [begin, begin + count) of `chain` into `pages`. A block whose
 * per_block status is not KVF_OK left its pages untouched: recompute it. */
kvf_status kvf_load_pages(kvf_client* client, const kvf_namespace* ns, const kvf_block_key* chain,
                          size_t chain_len, size_t begin, size_t count, const kvf_paged_kv* pages,
                          const int32_t* page_ids, size_t num_page_ids, kvf_status* per_block);

/* ---- Sequences (docs/sequences.md) ----------------------------------------
 * A sequence is a mutable, position-addressed list of blocks of one
 * namespace: an engine appends decode-time blocks and may overwrite a
 * position; readers read ranges. Position i of sequence `id` is the block key
 * kvf_sequence_block_key(ns, id, i), stored as a mutable entry.
 *
 * A kvf_sequence is a handle over kvf::Sequence (client/sequence.h): it knows
 * the length (found at open: the longest prefix of positions some node holds)
 * and the version of every position it wrote or read, and reads each position
 * at or past that version (read-your-writes). One writer per sequence in the
 * whole cluster; any number of readers. A handle may be used from many
 * threads (reads concurrently with its writer's appends). Close every
 * sequence before its client; the namespace may be freed once it is open.
 *
 * Eviction: an evicted position reads back KVF_NOT_FOUND (recompute and
 * kvf_sequence_write it); a sequence with an evicted middle block opens
 * shorter. */

typedef struct kvf_sequence kvf_sequence;

typedef struct kvf_sequence_id {
  uint64_t hi;
  uint64_t lo;
} kvf_sequence_id;

/* ack values of sequence writes */
enum {
  KVF_ACK_DEFAULT = 0, /* the client's (kvf_client_options.ack_all) */
  KVF_ACK_PRIMARY = 1, /* the primary committed */
  KVF_ACK_ALL = 2      /* every owner holds the new version */
};

/* The id of a named sequence (`len` bytes of `name`), hashed with
 * `hash_algorithm` (KVF_HASH_*; pass the namespace's for untrusted names).
 * An unknown algorithm hashes with XXH3. */
kvf_sequence_id kvf_sequence_id_from_name(const char* name, size_t len, uint32_t hash_algorithm);

/* The block key of position `index` of sequence `id` in `ns`. */
kvf_status kvf_sequence_block_key(const kvf_namespace* ns, const kvf_sequence_id* id,
                                  uint64_t index, kvf_block_key* out);

/* Opens sequence `id` of `ns` and discovers its length. `max_length` bounds
 * the probe and later appends (0 = the default, 1 << 20 blocks). On success
 * *out is a handle to close with kvf_sequence_close. `err` as kvf_connect's. */
kvf_status kvf_sequence_open(kvf_client* client, const kvf_namespace* ns,
                             const kvf_sequence_id* id, size_t max_length, kvf_sequence** out,
                             const char** err);
/* NULL is allowed. */
void kvf_sequence_close(kvf_sequence* seq);

/* The length this handle knows of (0 for NULL). */
size_t kvf_sequence_length(const kvf_sequence* seq);
/* The version remembered for position `index`; KVF_OUT_OF_RANGE past the
 * length. */
kvf_status kvf_sequence_version(const kvf_sequence* seq, size_t index, kvf_version* out);
/* Re-discovers the length and versions from the cluster (readers call it to
 * see a writer's appends). */
kvf_status kvf_sequence_refresh(kvf_sequence* seq);

/* Appends `count` blocks (blocks[i], sizes[i] bytes, each exactly
 * kvf_namespace_block_bytes(ns, codec)) at the end. The length grows by the
 * leading blocks that succeeded; blocks after a failed one report
 * KVF_ABORTED. `versions`, `per_block` and `new_length` may be NULL.
 * KVF_OUT_OF_RANGE past max_length. */
kvf_status kvf_sequence_append(kvf_sequence* seq, size_t count, const void* const* blocks,
                               const size_t* sizes, uint32_t codec, int ack,
                               kvf_version* versions, kvf_status* per_block, size_t* new_length);

/* Overwrites position `index` (< length; == length appends one block).
 * `version` (may be NULL) receives the new version. KVF_OUT_OF_RANGE past
 * the length. */
kvf_status kvf_sequence_write(kvf_sequence* seq, size_t index, const void* data, size_t size,
                              uint32_t codec, int ack, kvf_version* version);

/* Reads positions [begin, begin + count) into dst[i] (capacities[i] bytes),
 * each at or past the version the handle remembers and, when min_version is
 * non-NULL, at or past it. KVF_OUT_OF_RANGE past the length. A position no
 * node serves at its version reports KVF_FAILED_PRECONDITION. `sizes`,
 * `versions` and `per_block` may be NULL. */
kvf_status kvf_sequence_read(kvf_sequence* seq, size_t begin, size_t count, void* const* dst,
                             const size_t* capacities, const kvf_version* min_version,
                             size_t* sizes, kvf_version* versions, kvf_status* per_block);

#ifdef __cplusplus
}
#endif

#endif /* KVF_H_ */
