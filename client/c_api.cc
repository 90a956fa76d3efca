// The C API (include/kvf.h) over kvf::Client. No exception or C++ type
// crosses it; every failure becomes a code and a thread-local message.
#include "kvf.h"

#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "client/client.h"
#include "client/paged.h"
#include "client/sequence.h"
#include "common/block_hash.h"

struct kvf_client {
  std::unique_ptr<kvf::Client> impl;
};

struct kvf_namespace {
  kvf::Namespace ns;
};

struct kvf_sequence {
  kvf::Sequence seq;
};

namespace {

thread_local std::string g_last_error;

kvf_status Fail(const absl::Status& s) {
  g_last_error = s.ToString();
  return static_cast<kvf_status>(s.code());
}

kvf_status Invalid(const char* what) {
  return Fail(absl::InvalidArgumentError(what));
}

std::vector<kvf::BlockKey> Chain(const kvf_block_key* chain, size_t n) {
  std::vector<kvf::BlockKey> out(n);
  for (size_t i = 0; i < n; ++i) out[i] = kvf::BlockKey{chain[i].hi, chain[i].lo};
  return out;
}

// Fills per-block codes and returns the batch's overall code.
kvf_status Finish(const kvf::BatchResult& r, kvf_status* per_block) {
  kvf_status first = KVF_OK;
  for (size_t i = 0; i < r.blocks.size(); ++i) {
    const kvf_status c = static_cast<kvf_status>(r.blocks[i].status.code());
    if (per_block != nullptr) per_block[i] = c;
    if (c != KVF_OK && first == KVF_OK) {
      first = c;
      g_last_error = absl::StrCat("block ", i, ": ", r.blocks[i].status.ToString());
    }
  }
  if (first == KVF_OK) g_last_error.clear();
  return first;
}

// Runs `body` and copies the calling thread's latest error to *err (when
// non-null): the calls with an `err` out-parameter.
template <typename Body>
kvf_status WithError(const char** err, Body body) {
  const kvf_status s = body();
  if (err != nullptr) *err = g_last_error.c_str();
  return s;
}

#define KVF_C_CHECK(cond, msg) \
  if (!(cond)) return Invalid(msg)

kvf::SequenceId SeqId(const kvf_sequence_id& id) { return kvf::SequenceId{id.hi, id.lo}; }

// Put options of a sequence write: mutable, `codec`, and `ack` (KVF_ACK_*).
kvf::PutOptions SeqPutOptions(uint32_t codec, int ack) {
  kvf::PutOptions o;
  o.codec = static_cast<kvf::CodecId>(codec);
  o.is_mutable = true;
  o.has_ack = ack != KVF_ACK_DEFAULT;
  o.ack = ack == KVF_ACK_ALL ? kvf::AckMode::kAll : kvf::AckMode::kPrimary;
  return o;
}

}  // namespace

extern "C" {

void kvf_client_options_init(kvf_client_options* options) {
  if (options == nullptr) return;
  std::memset(options, 0, sizeof(*options));
  options->worker_threads = -1;
}

const char* kvf_last_error(void) { return g_last_error.c_str(); }

const char* kvf_status_name(kvf_status status) {
  static const char* const kNames[] = {
      "OK",         "CANCELLED",          "UNKNOWN",        "INVALID_ARGUMENT", "DEADLINE_EXCEEDED",
      "NOT_FOUND",  "ALREADY_EXISTS",     "PERMISSION_DENIED", "RESOURCE_EXHAUSTED",
      "FAILED_PRECONDITION", "ABORTED",   "OUT_OF_RANGE",   "UNIMPLEMENTED",    "INTERNAL",
      "UNAVAILABLE", "DATA_LOSS",         "UNAUTHENTICATED"};
  if (status < 0 || status > 16) return "UNKNOWN_STATUS";
  return kNames[status];
}

kvf_status kvf_connect(const kvf_client_options* options, kvf_client** out, const char** err) {
  return WithError(err, [&]() -> kvf_status {
    KVF_C_CHECK(options != nullptr && out != nullptr, "kvf_connect: options and out are required");
    *out = nullptr;
    KVF_C_CHECK(options->coordinator != nullptr && options->coordinator[0] != '\0',
                "kvf_connect: options->coordinator (host:port) is required");
    kvf::ClientOptions o;
    o.coordinator = options->coordinator;
    o.token = options->token != nullptr ? options->token : "";
    o.ucx_tls = options->ucx_tls != nullptr ? options->ucx_tls : "";
    if (options->rpc_timeout_ms > 0) o.rpc_timeout = absl::Milliseconds(options->rpc_timeout_ms);
    if (options->data_timeout_ms > 0) o.data_timeout = absl::Milliseconds(options->data_timeout_ms);
    o.ack = options->ack_all != 0 ? kvf::AckMode::kAll : kvf::AckMode::kPrimary;
    if (options->worker_threads >= 0) o.worker_threads = options->worker_threads;
    auto client = kvf::Client::Connect(o);
    if (!client.ok()) return Fail(client.status());
    *out = new kvf_client{std::move(*client)};
    g_last_error.clear();
    return KVF_OK;
  });
}

void kvf_close(kvf_client* client) { delete client; }

kvf_status kvf_register_namespace(kvf_client* client, const kvf_namespace_spec* spec,
                                  kvf_namespace** out) {
  KVF_C_CHECK(client != nullptr && spec != nullptr && out != nullptr,
              "kvf_register_namespace: client, spec and out are required");
  *out = nullptr;
  KVF_C_CHECK(spec->model_id != nullptr, "kvf_register_namespace: model_id is required");
  KVF_C_CHECK(spec->dtype <= KVF_DTYPE_FP32, "kvf_register_namespace: unknown dtype");
  KVF_C_CHECK(spec->hash_algorithm <= KVF_HASH_SHA256,
              "kvf_register_namespace: unknown hash algorithm");
  kvf::NamespaceSpec s;
  s.model_id = spec->model_id;
  s.tenant = spec->tenant != nullptr ? spec->tenant : "";
  s.layout.num_layers = spec->num_layers;
  s.layout.num_kv_heads = spec->num_kv_heads;
  s.layout.head_dim = spec->head_dim;
  s.layout.block_tokens = spec->block_tokens;
  s.layout.dtype = static_cast<kvf::DType>(spec->dtype);
  s.tp_rank = spec->tp_rank;
  s.tp_size = spec->tp_size == 0 ? 1 : spec->tp_size;
  s.segment_blocks = spec->segment_blocks == 0 ? kvf::NamespaceSpec{}.segment_blocks
                                               : spec->segment_blocks;
  s.hash = static_cast<kvf::HashAlgorithm>(spec->hash_algorithm);
  auto ns = client->impl->RegisterNamespace(s);
  if (!ns.ok()) return Fail(ns.status());
  *out = new kvf_namespace{*std::move(ns)};
  g_last_error.clear();
  return KVF_OK;
}

void kvf_namespace_free(kvf_namespace* ns) { delete ns; }

size_t kvf_namespace_block_bytes(const kvf_namespace* ns, uint32_t codec) {
  if (ns == nullptr || codec >= static_cast<uint32_t>(kvf::kNumCodecs)) return 0;
  return ns->ns.BlockBytes(static_cast<kvf::CodecId>(codec));
}

uint64_t kvf_namespace_id(const kvf_namespace* ns) { return ns == nullptr ? 0 : ns->ns.id(); }

kvf_status kvf_hash_tokens(const kvf_namespace* ns, const uint32_t* tokens, size_t num_tokens,
                           kvf_block_key* keys, size_t capacity, size_t* count) {
  KVF_C_CHECK(ns != nullptr && count != nullptr, "kvf_hash_tokens: ns and count are required");
  KVF_C_CHECK(tokens != nullptr || num_tokens == 0, "kvf_hash_tokens: tokens is NULL");
  auto r = kvf::HashSequence(ns->ns.spec().hash, absl::MakeConstSpan(tokens, num_tokens),
                             ns->ns.spec().layout.block_tokens);
  if (!r.ok()) return Fail(r.status());
  *count = r->size();
  KVF_C_CHECK(keys != nullptr || capacity == 0, "kvf_hash_tokens: keys is NULL");
  for (size_t i = 0; i < r->size() && i < capacity; ++i) keys[i] = {(*r)[i].hi, (*r)[i].lo};
  return KVF_OK;
}

kvf_status kvf_put(kvf_client* client, const kvf_namespace* ns, const kvf_block_key* chain,
                   size_t chain_len, size_t begin, size_t count, const void* const* blocks,
                   const size_t* sizes, uint32_t codec, int is_mutable, kvf_version* versions,
                   kvf_status* per_block) {
  KVF_C_CHECK(client != nullptr && ns != nullptr, "kvf_put: client and ns are required");
  KVF_C_CHECK(chain != nullptr || chain_len == 0, "kvf_put: chain is NULL");
  KVF_C_CHECK(count == 0 || (blocks != nullptr && sizes != nullptr),
              "kvf_put: blocks and sizes are required");
  KVF_C_CHECK(codec < static_cast<uint32_t>(kvf::kNumCodecs), "kvf_put: unknown codec");
  std::vector<kvf::BlockKey> keys = Chain(chain, chain_len);
  std::vector<kvf::ConstBlockBuffer> bufs(count);
  for (size_t i = 0; i < count; ++i) bufs[i] = {blocks[i], sizes[i]};
  kvf::PutOptions o;
  o.codec = static_cast<kvf::CodecId>(codec);
  o.is_mutable = is_mutable != 0;
  auto r = client->impl->BatchPut(ns->ns, keys, begin, bufs, o);
  if (!r.ok()) return Fail(r.status());
  if (versions != nullptr) {
    for (size_t i = 0; i < count; ++i) {
      versions[i] = {r->blocks[i].version.epoch, r->blocks[i].version.counter};
    }
  }
  return Finish(*r, per_block);
}

kvf_status kvf_get(kvf_client* client, const kvf_namespace* ns, const kvf_block_key* chain,
                   size_t chain_len, size_t begin, size_t count, void* const* dst,
                   const size_t* capacities, const kvf_version* min_version, size_t* sizes,
                   kvf_version* versions, kvf_status* per_block) {
  KVF_C_CHECK(client != nullptr && ns != nullptr, "kvf_get: client and ns are required");
  KVF_C_CHECK(chain != nullptr || chain_len == 0, "kvf_get: chain is NULL");
  KVF_C_CHECK(count == 0 || (dst != nullptr && capacities != nullptr),
              "kvf_get: dst and capacities are required");
  std::vector<kvf::BlockKey> keys = Chain(chain, chain_len);
  std::vector<kvf::BlockBuffer> bufs(count);
  for (size_t i = 0; i < count; ++i) bufs[i] = {dst[i], capacities[i]};
  kvf::GetOptions o;
  if (min_version != nullptr) {
    o.has_min_version = true;
    o.min_version = {min_version->epoch, min_version->counter};
  }
  auto r = client->impl->BatchGet(ns->ns, keys, begin, bufs, o);
  if (!r.ok()) return Fail(r.status());
  for (size_t i = 0; i < count; ++i) {
    if (sizes != nullptr) sizes[i] = r->blocks[i].size;
    if (versions != nullptr) versions[i] = {r->blocks[i].version.epoch, r->blocks[i].version.counter};
  }
  return Finish(*r, per_block);
}

kvf_status kvf_lookup(kvf_client* client, const kvf_namespace* ns, const kvf_block_key* chain,
                      size_t chain_len, size_t* prefix, uint32_t* holders, size_t max_holders) {
  KVF_C_CHECK(client != nullptr && ns != nullptr && prefix != nullptr,
              "kvf_lookup: client, ns and prefix are required");
  KVF_C_CHECK(chain != nullptr || chain_len == 0, "kvf_lookup: chain is NULL");
  std::vector<kvf::BlockKey> keys = Chain(chain, chain_len);
  auto r = client->impl->Lookup(ns->ns, keys);
  if (!r.ok()) return Fail(r.status());
  *prefix = r->prefix;
  if (holders != nullptr) {
    for (size_t i = 0; i < r->blocks.size(); ++i) {
      for (size_t h = 0; h < max_holders; ++h) {
        holders[i * max_holders + h] = h < r->blocks[i].nodes.size() ? r->blocks[i].nodes[h] : 0;
      }
    }
  }
  g_last_error.clear();
  return KVF_OK;
}

kvf_status kvf_exists(kvf_client* client, const kvf_namespace* ns, const kvf_block_key* chain,
                      size_t chain_len, size_t begin, size_t count, uint8_t* exists) {
  KVF_C_CHECK(client != nullptr && ns != nullptr && (exists != nullptr || count == 0),
              "kvf_exists: client, ns and exists are required");
  KVF_C_CHECK(chain != nullptr || chain_len == 0, "kvf_exists: chain is NULL");
  KVF_C_CHECK(begin <= chain_len && count <= chain_len - begin,
              "kvf_exists: [begin, begin + count) is outside the chain");
  std::vector<kvf::BlockKey> keys = Chain(chain, chain_len);
  auto r = client->impl->Exists(ns->ns, keys, begin, begin + count);
  if (!r.ok()) return Fail(r.status());
  for (size_t i = 0; i < count; ++i) exists[i] = (*r)[i] ? 1 : 0;
  g_last_error.clear();
  return KVF_OK;
}

kvf_status kvf_remove(kvf_client* client, const kvf_namespace* ns, const kvf_block_key* chain,
                      size_t chain_len, size_t begin, size_t count, kvf_status* per_block) {
  KVF_C_CHECK(client != nullptr && ns != nullptr, "kvf_remove: client and ns are required");
  KVF_C_CHECK(chain != nullptr || chain_len == 0, "kvf_remove: chain is NULL");
  KVF_C_CHECK(begin <= chain_len && count <= chain_len - begin,
              "kvf_remove: [begin, begin + count) is outside the chain");
  std::vector<kvf::BlockKey> keys = Chain(chain, chain_len);
  auto r = client->impl->Remove(ns->ns, keys, begin, begin + count);
  if (!r.ok()) return Fail(r.status());
  return Finish(*r, per_block);
}

// ---- Paged KV ---------------------------------------------------------------

namespace {

kvf::PagedKvDesc PagedDesc(const kvf_paged_kv& p) {
  kvf::PagedKvDesc d;
  d.kind = kvf::PagedLayoutKind::kCustom;
  d.num_layers = p.num_layers;
  d.num_kv_heads = p.num_kv_heads;
  d.head_dim = p.head_dim;
  d.page_size = p.page_size;
  d.num_pages = p.num_pages;
  d.dtype = static_cast<kvf::ElemType>(p.dtype);
  d.page_stride = p.page_stride;
  d.kv_stride = p.kv_stride;
  d.token_stride = p.token_stride;
  d.head_stride = p.head_stride;
  if (p.layer_bases != nullptr) d.layer_bases.assign(p.layer_bases, p.layer_bases + p.num_layers);
  d.layer_bytes = p.layer_bytes;
  return d;
}

}  // namespace

kvf_status kvf_save_pages(kvf_client* client, const kvf_namespace* ns, const kvf_block_key* chain,
                          size_t chain_len, size_t begin, size_t count, const kvf_paged_kv* pages,
                          const int32_t* page_ids, size_t num_page_ids, uint32_t codec,
                          kvf_status* per_block) {
  KVF_C_CHECK(client != nullptr && ns != nullptr && pages != nullptr,
              "kvf_save_pages: client, ns and pages are required");
  KVF_C_CHECK(chain != nullptr || chain_len == 0, "kvf_save_pages: chain is NULL");
  KVF_C_CHECK(page_ids != nullptr || num_page_ids == 0, "kvf_save_pages: page_ids is NULL");
  KVF_C_CHECK(pages->dtype <= KVF_DTYPE_FP32, "kvf_save_pages: unknown dtype");
  KVF_C_CHECK(codec < static_cast<uint32_t>(kvf::kNumCodecs), "kvf_save_pages: unknown codec");
  kvf::PutOptions o;
  o.codec = static_cast<kvf::CodecId>(codec);
  auto r = kvf::SavePages(*client->impl, ns->ns, Chain(chain, chain_len), begin, count,
                          PagedDesc(*pages), {page_ids, num_page_ids}, o, pages->cuda_stream);
  if (!r.ok()) return Fail(r.status());
  return Finish(*r, per_block);
}

kvf_status kvf_load_pages(kvf_client* client, const kvf_namespace* ns, const kvf_block_key* chain,
                          size_t chain_len, size_t begin, size_t count, const kvf_paged_kv* pages,
                          const int32_t* page_ids, size_t num_page_ids, kvf_status* per_block) {
  KVF_C_CHECK(client != nullptr && ns != nullptr && pages != nullptr,
              "kvf_load_pages: client, ns and pages are required");
  KVF_C_CHECK(chain != nullptr || chain_len == 0, "kvf_load_pages: chain is NULL");
  KVF_C_CHECK(page_ids != nullptr || num_page_ids == 0, "kvf_load_pages: page_ids is NULL");
  KVF_C_CHECK(pages->dtype <= KVF_DTYPE_FP32, "kvf_load_pages: unknown dtype");
  auto r = kvf::LoadPages(*client->impl, ns->ns, Chain(chain, chain_len), begin, count,
                          PagedDesc(*pages), {page_ids, num_page_ids}, {}, pages->cuda_stream);
  if (!r.ok()) return Fail(r.status());
  return Finish(*r, per_block);
}

// ---- Sequences --------------------------------------------------------------

kvf_sequence_id kvf_sequence_id_from_name(const char* name, size_t len, uint32_t hash_algorithm) {
  const std::string_view n = name != nullptr ? std::string_view(name, len) : std::string_view();
  const kvf::HashAlgorithm a = hash_algorithm == KVF_HASH_SHA256 ? kvf::HashAlgorithm::kSha256
                                                                 : kvf::HashAlgorithm::kXxh3_128;
  const kvf::SequenceId id = kvf::SequenceId::FromName(n, a);
  return kvf_sequence_id{id.hi, id.lo};
}

kvf_status kvf_sequence_block_key(const kvf_namespace* ns, const kvf_sequence_id* id,
                                  uint64_t index, kvf_block_key* out) {
  KVF_C_CHECK(ns != nullptr && id != nullptr && out != nullptr,
              "kvf_sequence_block_key: ns, id and out are required");
  const kvf::BlockKey k = kvf::SequenceBlockKey(ns->ns.spec().hash, SeqId(*id), index);
  *out = {k.hi, k.lo};
  return KVF_OK;
}

kvf_status kvf_sequence_open(kvf_client* client, const kvf_namespace* ns,
                             const kvf_sequence_id* id, size_t max_length, kvf_sequence** out,
                             const char** err) {
  return WithError(err, [&]() -> kvf_status {
    if (out != nullptr) *out = nullptr;
    KVF_C_CHECK(client != nullptr && ns != nullptr && id != nullptr && out != nullptr,
                "kvf_sequence_open: client, ns, id and out are required");
    kvf::SequenceOptions o;
    if (max_length != 0) o.max_length = max_length;
    auto seq = kvf::Sequence::Open(*client->impl, ns->ns, SeqId(*id), o);
    if (!seq.ok()) return Fail(seq.status());
    *out = new kvf_sequence{*std::move(seq)};
    g_last_error.clear();
    return KVF_OK;
  });
}

void kvf_sequence_close(kvf_sequence* seq) { delete seq; }

size_t kvf_sequence_length(const kvf_sequence* seq) {
  return seq == nullptr ? 0 : seq->seq.length();
}

kvf_status kvf_sequence_version(const kvf_sequence* seq, size_t index, kvf_version* out) {
  KVF_C_CHECK(seq != nullptr && out != nullptr, "kvf_sequence_version: seq and out are required");
  const size_t length = seq->seq.length();
  if (index >= length) {
    return Fail(absl::OutOfRangeError(
        absl::StrCat("kvf_sequence_version: position ", index, " of a sequence of length ", length)));
  }
  const kvf::Version v = seq->seq.version(index);
  *out = {v.epoch, v.counter};
  g_last_error.clear();
  return KVF_OK;
}

kvf_status kvf_sequence_refresh(kvf_sequence* seq) {
  KVF_C_CHECK(seq != nullptr, "kvf_sequence_refresh: seq is required");
  absl::Status s = seq->seq.Refresh();
  if (!s.ok()) return Fail(s);
  g_last_error.clear();
  return KVF_OK;
}

kvf_status kvf_sequence_append(kvf_sequence* seq, size_t count, const void* const* blocks,
                               const size_t* sizes, uint32_t codec, int ack,
                               kvf_version* versions, kvf_status* per_block, size_t* new_length) {
  KVF_C_CHECK(seq != nullptr, "kvf_sequence_append: seq is required");
  KVF_C_CHECK(count == 0 || (blocks != nullptr && sizes != nullptr),
              "kvf_sequence_append: blocks and sizes are required");
  KVF_C_CHECK(codec < static_cast<uint32_t>(kvf::kNumCodecs), "kvf_sequence_append: unknown codec");
  KVF_C_CHECK(ack >= KVF_ACK_DEFAULT && ack <= KVF_ACK_ALL, "kvf_sequence_append: unknown ack");
  std::vector<kvf::ConstBlockBuffer> bufs(count);
  for (size_t i = 0; i < count; ++i) bufs[i] = {blocks[i], sizes[i]};
  auto r = seq->seq.Append(bufs, SeqPutOptions(codec, ack));
  if (new_length != nullptr) *new_length = seq->seq.length();
  if (!r.ok()) return Fail(r.status());
  if (versions != nullptr) {
    for (size_t i = 0; i < count; ++i) {
      versions[i] = {r->blocks[i].version.epoch, r->blocks[i].version.counter};
    }
  }
  return Finish(*r, per_block);
}

kvf_status kvf_sequence_write(kvf_sequence* seq, size_t index, const void* data, size_t size,
                              uint32_t codec, int ack, kvf_version* version) {
  KVF_C_CHECK(seq != nullptr && data != nullptr, "kvf_sequence_write: seq and data are required");
  KVF_C_CHECK(codec < static_cast<uint32_t>(kvf::kNumCodecs), "kvf_sequence_write: unknown codec");
  KVF_C_CHECK(ack >= KVF_ACK_DEFAULT && ack <= KVF_ACK_ALL, "kvf_sequence_write: unknown ack");
  auto v = seq->seq.Write(index, data, size, SeqPutOptions(codec, ack));
  if (!v.ok()) return Fail(v.status());
  if (version != nullptr) *version = {v->epoch, v->counter};
  g_last_error.clear();
  return KVF_OK;
}

kvf_status kvf_sequence_read(kvf_sequence* seq, size_t begin, size_t count, void* const* dst,
                             const size_t* capacities, const kvf_version* min_version,
                             size_t* sizes, kvf_version* versions, kvf_status* per_block) {
  KVF_C_CHECK(seq != nullptr, "kvf_sequence_read: seq is required");
  KVF_C_CHECK(count == 0 || (dst != nullptr && capacities != nullptr),
              "kvf_sequence_read: dst and capacities are required");
  if (count > SIZE_MAX - begin) {
    return Fail(absl::OutOfRangeError("kvf_sequence_read: begin + count overflows"));
  }
  std::vector<kvf::BlockBuffer> bufs(count);
  for (size_t i = 0; i < count; ++i) bufs[i] = {dst[i], capacities[i]};
  kvf::GetOptions o;
  if (min_version != nullptr) {
    o.has_min_version = true;
    o.min_version = {min_version->epoch, min_version->counter};
  }
  auto r = seq->seq.Read(begin, begin + count, bufs, o);
  if (!r.ok()) return Fail(r.status());
  for (size_t i = 0; i < count; ++i) {
    if (sizes != nullptr) sizes[i] = r->blocks[i].size;
    if (versions != nullptr) versions[i] = {r->blocks[i].version.epoch, r->blocks[i].version.counter};
  }
  return Finish(*r, per_block);
}

}  // extern "C"
