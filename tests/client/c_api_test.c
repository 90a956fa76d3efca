/* The C API from a C program.
 *
 *   kvf_c_api_test                      error paths only (no cluster needed)
 *   kvf_c_api_test HOST:PORT TOKEN      also round trips (blocks and
 *                                       sequences) against a cluster
 *
 * Exits 0 when every check passed. */
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "kvf.h"

static int failures = 0;

#define CHECK(cond)                                                              \
  do {                                                                           \
    if (!(cond)) {                                                               \
      fprintf(stderr, "%s:%d: check failed: %s (last error: %s)\n", __FILE__, \
              __LINE__, #cond, kvf_last_error());                                \
      ++failures;                                                                \
    }                                                                            \
  } while (0)

static int closed_port(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a;
  socklen_t len = sizeof(a);
  memset(&a, 0, sizeof(a));
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, (struct sockaddr*)&a, sizeof(a));
  getsockname(fd, (struct sockaddr*)&a, &len);
  close(fd);
  return ntohs(a.sin_port);
}

static void error_paths(void) {
  kvf_client_options o;
  kvf_client* c = (kvf_client*)1;
  const char* err = NULL;
  char addr[64];

  kvf_client_options_init(&o);
  CHECK(kvf_connect(&o, &c, &err) == KVF_INVALID_ARGUMENT);
  CHECK(c == NULL);
  CHECK(err != NULL && strstr(err, "coordinator") != NULL);

  snprintf(addr, sizeof(addr), "127.0.0.1:%d", closed_port());
  o.coordinator = addr;
  o.rpc_timeout_ms = 2000;
  CHECK(kvf_connect(&o, &c, &err) == KVF_UNAVAILABLE);
  CHECK(c == NULL);
  CHECK(strstr(kvf_last_error(), addr) != NULL);
  printf("closed port: %s: %s\n", kvf_status_name(KVF_UNAVAILABLE), kvf_last_error());

  CHECK(kvf_connect(NULL, &c, NULL) == KVF_INVALID_ARGUMENT);
  CHECK(kvf_register_namespace(NULL, NULL, NULL) == KVF_INVALID_ARGUMENT);
  CHECK(kvf_put(NULL, NULL, NULL, 0, 0, 0, NULL, NULL, 0, 0, NULL, NULL) == KVF_INVALID_ARGUMENT);
  CHECK(kvf_save_pages(NULL, NULL, NULL, 0, 0, 0, NULL, NULL, 0, 0, NULL) == KVF_INVALID_ARGUMENT);
  CHECK(kvf_load_pages(NULL, NULL, NULL, 0, 0, 0, NULL, NULL, 0, NULL) == KVF_INVALID_ARGUMENT);
  CHECK(strcmp(kvf_status_name(KVF_NOT_FOUND), "NOT_FOUND") == 0);
  CHECK(strcmp(kvf_status_name(99), "UNKNOWN_STATUS") == 0);
  kvf_close(NULL);
  kvf_namespace_free(NULL);

  /* Sequences: NULL handles are errors, never crashes. */
  {
    kvf_sequence* seq = (kvf_sequence*)1;
    kvf_sequence_id a = kvf_sequence_id_from_name("req-1", 5, KVF_HASH_XXH3_128);
    kvf_sequence_id b = kvf_sequence_id_from_name("req-1", 5, KVF_HASH_XXH3_128);
    kvf_sequence_id d = kvf_sequence_id_from_name("req-2", 5, KVF_HASH_XXH3_128);
    kvf_version v;
    CHECK(a.hi == b.hi && a.lo == b.lo);
    CHECK(a.hi != d.hi || a.lo != d.lo);
    CHECK(kvf_sequence_open(NULL, NULL, &a, 0, &seq, &err) == KVF_INVALID_ARGUMENT);
    CHECK(seq == NULL);
    CHECK(err != NULL && strstr(err, "kvf_sequence_open") != NULL);
    CHECK(kvf_sequence_length(NULL) == 0);
    CHECK(kvf_sequence_version(NULL, 0, &v) == KVF_INVALID_ARGUMENT);
    CHECK(kvf_sequence_refresh(NULL) == KVF_INVALID_ARGUMENT);
    CHECK(kvf_sequence_append(NULL, 0, NULL, NULL, 0, 0, NULL, NULL, NULL) == KVF_INVALID_ARGUMENT);
    CHECK(kvf_sequence_write(NULL, 0, NULL, 0, 0, 0, NULL) == KVF_INVALID_ARGUMENT);
    CHECK(kvf_sequence_read(NULL, 0, 0, NULL, NULL, NULL, NULL, NULL, NULL) ==
          KVF_INVALID_ARGUMENT);
    CHECK(kvf_sequence_block_key(NULL, &a, 0, NULL) == KVF_INVALID_ARGUMENT);
    kvf_sequence_close(NULL);
  }
}

/* A sequence of 6 blocks (two segments of 4): append with ack=all, overwrite,
 * read your writes from this handle and a second one, range errors. */
static void sequences(kvf_client* c, const kvf_namespace* ns, size_t bytes) {
  char name[64];
  kvf_sequence_id id;
  kvf_sequence* seq = NULL;
  kvf_sequence* other = NULL;
  kvf_block_key keys[6];
  void* src[6];
  void* dst[6];
  size_t sizes[6], caps[6], got_sizes[6], i, length = 0, prefix = 0;
  kvf_version versions[6], v, v2;
  kvf_status per_block[6];
  uint32_t holders[6 * 2];

  snprintf(name, sizeof(name), "c-api-seq-%d", (int)getpid());
  id = kvf_sequence_id_from_name(name, strlen(name), KVF_HASH_XXH3_128);
  CHECK(kvf_sequence_open(c, ns, &id, 0, &seq, NULL) == KVF_OK);
  if (seq == NULL) return;
  CHECK(kvf_sequence_length(seq) == 0);
  for (i = 0; i < 6; ++i) {
    size_t b;
    src[i] = malloc(bytes);
    dst[i] = calloc(1, bytes);
    for (b = 0; b < bytes; ++b) ((unsigned char*)src[i])[b] = (unsigned char)rand();
    sizes[i] = bytes;
    caps[i] = bytes;
  }
  sizes[0] = bytes - 1;
  CHECK(kvf_sequence_append(seq, 1, (const void* const*)src, sizes, KVF_CODEC_NONE,
                            KVF_ACK_DEFAULT, NULL, NULL, &length) == KVF_INVALID_ARGUMENT);
  CHECK(length == 0);
  sizes[0] = bytes;
  CHECK(kvf_sequence_append(seq, 6, (const void* const*)src, sizes, KVF_CODEC_NONE, KVF_ACK_ALL,
                            versions, per_block, &length) == KVF_OK);
  CHECK(length == 6 && kvf_sequence_length(seq) == 6);
  for (i = 0; i < 6; ++i) {
    CHECK(per_block[i] == KVF_OK);
    CHECK(versions[i].counter >= 1);
    CHECK(kvf_sequence_block_key(ns, &id, i, &keys[i]) == KVF_OK);
  }
  /* ack=all: both owners of every position hold it. */
  CHECK(kvf_lookup(c, ns, keys, 6, &prefix, holders, 2) == KVF_OK);
  CHECK(prefix == 6);
  for (i = 0; i < 6; ++i) CHECK(holders[i * 2] != 0 && holders[i * 2 + 1] != 0);

  /* Overwrite position 2 with the bytes of position 5. */
  CHECK(kvf_sequence_write(seq, 2, src[5], bytes, KVF_CODEC_NONE, KVF_ACK_DEFAULT, &v) == KVF_OK);
  CHECK(v.epoch > versions[2].epoch ||
        (v.epoch == versions[2].epoch && v.counter > versions[2].counter));
  memcpy(src[2], src[5], bytes);
  CHECK(kvf_sequence_read(seq, 0, 6, dst, caps, NULL, got_sizes, versions, per_block) == KVF_OK);
  for (i = 0; i < 6; ++i) {
    CHECK(per_block[i] == KVF_OK);
    CHECK(got_sizes[i] == bytes);
    CHECK(memcmp(src[i], dst[i], bytes) == 0);
  }
  CHECK(versions[2].epoch == v.epoch && versions[2].counter >= v.counter);

  /* A second handle sees the length and the new version. */
  CHECK(kvf_sequence_open(c, ns, &id, 0, &other, NULL) == KVF_OK);
  if (other != NULL) {
    CHECK(kvf_sequence_length(other) == 6);
    CHECK(kvf_sequence_version(other, 2, &v2) == KVF_OK);
    CHECK(v2.epoch == v.epoch && v2.counter == v.counter);
    CHECK(kvf_sequence_version(other, 6, &v2) == KVF_OUT_OF_RANGE);
    memset(dst[0], 0, bytes);
    CHECK(kvf_sequence_read(other, 2, 1, dst, caps, NULL, NULL, NULL, NULL) == KVF_OK);
    CHECK(memcmp(src[2], dst[0], bytes) == 0);
    CHECK(kvf_sequence_refresh(other) == KVF_OK);
    CHECK(kvf_sequence_length(other) == 6);
    kvf_sequence_close(other);
  }

  /* Ranges past the end. */
  CHECK(kvf_sequence_read(seq, 5, 2, dst, caps, NULL, NULL, NULL, NULL) == KVF_OUT_OF_RANGE);
  CHECK(strstr(kvf_last_error(), "length") != NULL);
  CHECK(kvf_sequence_write(seq, 7, src[0], bytes, KVF_CODEC_NONE, KVF_ACK_DEFAULT, NULL) ==
        KVF_OUT_OF_RANGE);
  CHECK(kvf_sequence_write(seq, 6, src[0], bytes, KVF_CODEC_NONE, 7, NULL) ==
        KVF_INVALID_ARGUMENT);
  CHECK(kvf_sequence_write(seq, 6, src[0], bytes, KVF_CODEC_NONE, KVF_ACK_PRIMARY, NULL) ==
        KVF_OK);
  CHECK(kvf_sequence_length(seq) == 7);

  for (i = 0; i < 6; ++i) {
    free(src[i]);
    free(dst[i]);
  }
  kvf_sequence_close(seq);
}

/* Paged KV: two engines' caches in vLLM's layout, [pages][2][16][H][D] per
 * layer (bf16 as 16-bit words), blocks of one page each. */
static void paged(kvf_client* c, const kvf_namespace* ns, const kvf_block_key* chain) {
  enum { L = 2, H = 2, D = 32, T = 16, PAGES = 6 };
  const size_t per_layer = (size_t)PAGES * 2 * T * H * D;
  uint16_t* a[L];
  uint16_t* b[L];
  kvf_paged_kv pa, pb;
  const int32_t a_pages[3] = {4, 0, 2}, b_pages[3] = {1, 5, 3};
  kvf_status per_block[3];
  size_t l, i;
  for (l = 0; l < L; ++l) {
    a[l] = malloc(per_layer * 2);
    b[l] = calloc(per_layer, 2);
    for (i = 0; i < per_layer; ++i) a[l][i] = (uint16_t)(rand() & 0x3bff);
  }
  memset(&pa, 0, sizeof(pa));
  pa.num_layers = L;
  pa.num_kv_heads = H;
  pa.head_dim = D;
  pa.page_size = T;
  pa.num_pages = PAGES;
  pa.dtype = KVF_DTYPE_BF16;
  pa.page_stride = 2 * T * H * D;
  pa.kv_stride = T * H * D;
  pa.token_stride = H * D;
  pa.head_stride = D;
  pa.layer_bases = (void* const*)a;
  pa.layer_bytes = per_layer * 2;
  pb = pa;
  pb.layer_bases = (void* const*)b;

  CHECK(kvf_save_pages(c, ns, chain, 8, 0, 3, &pa, a_pages, 3, KVF_CODEC_NONE, per_block) == KVF_OK);
  CHECK(kvf_load_pages(c, ns, chain, 8, 0, 3, &pb, b_pages, 3, per_block) == KVF_OK);
  for (i = 0; i < 3; ++i) {
    CHECK(per_block[i] == KVF_OK);
    for (l = 0; l < L; ++l) {
      const size_t page = (size_t)2 * T * H * D;
      CHECK(memcmp(a[l] + a_pages[i] * page, b[l] + b_pages[i] * page, page * 2) == 0);
    }
  }
  /* A block nobody holds: reported, its pages untouched (still zero). */
  CHECK(kvf_load_pages(c, ns, chain, 8, 7, 1, &pb, b_pages, 1, per_block) == KVF_NOT_FOUND);
  CHECK(per_block[0] == KVF_NOT_FOUND);
  /* A layout that is not the namespace's (1 head) is refused. */
  pb.num_kv_heads = 1;
  CHECK(kvf_load_pages(c, ns, chain, 8, 0, 1, &pb, b_pages, 1, NULL) == KVF_INVALID_ARGUMENT);
  CHECK(strstr(kvf_last_error(), "num_kv_heads") != NULL);
  /* Wrong number of page ids. */
  CHECK(kvf_save_pages(c, ns, chain, 8, 0, 2, &pa, a_pages, 3, KVF_CODEC_NONE, NULL) ==
        KVF_INVALID_ARGUMENT);
  CHECK(kvf_remove(c, ns, chain, 8, 0, 3, NULL) == KVF_OK);
  for (l = 0; l < L; ++l) {
    free(a[l]);
    free(b[l]);
  }
}

static int round_trips(const char* coordinator, const char* token) {
  kvf_client_options o;
  kvf_client* c = NULL;
  kvf_namespace* ns = NULL;
  kvf_namespace_spec spec;
  uint32_t tokens[8 * 16];
  kvf_block_key chain[8];
  size_t n = 0, i, bytes, prefix = 0;
  void* src[8];
  void* dst[8];
  size_t sizes[8], caps[8], got_sizes[8];
  kvf_status per_block[8];
  kvf_version versions[8];
  uint32_t holders[8 * 2];
  uint8_t exists[8];

  kvf_client_options_init(&o);
  o.coordinator = coordinator;
  o.token = "wrong-token";
  CHECK(kvf_connect(&o, &c, NULL) == KVF_UNAUTHENTICATED);
  o.token = token;
  if (kvf_connect(&o, &c, NULL) != KVF_OK) {
    fprintf(stderr, "connect: %s\n", kvf_last_error());
    return 1;
  }

  memset(&spec, 0, sizeof(spec));
  spec.model_id = "c-api-model";
  spec.num_layers = 2;
  spec.num_kv_heads = 2;
  spec.head_dim = 32;
  spec.block_tokens = 16;
  spec.dtype = KVF_DTYPE_BF16;
  spec.segment_blocks = 4;
  CHECK(kvf_register_namespace(c, &spec, &ns) == KVF_OK);
  if (ns == NULL) return 1;
  bytes = kvf_namespace_block_bytes(ns, KVF_CODEC_NONE);
  CHECK(bytes == 2u * 2 * 16 * 2 * 32 * 2);

  srand((unsigned)getpid());
  for (i = 0; i < 8 * 16; ++i) tokens[i] = (uint32_t)rand();
  CHECK(kvf_hash_tokens(ns, tokens, 8 * 16, chain, 8, &n) == KVF_OK);
  CHECK(n == 8);

  for (i = 0; i < 8; ++i) {
    size_t b;
    src[i] = malloc(bytes);
    dst[i] = calloc(1, bytes);
    for (b = 0; b < bytes; ++b) ((unsigned char*)src[i])[b] = (unsigned char)rand();
    sizes[i] = bytes;
    caps[i] = bytes;
  }
  /* Wrong size: a clear INVALID_ARGUMENT. */
  sizes[0] = bytes + 1;
  CHECK(kvf_put(c, ns, chain, 8, 0, 1, (const void* const*)src, sizes, KVF_CODEC_NONE, 0, NULL,
                NULL) == KVF_INVALID_ARGUMENT);
  sizes[0] = bytes;

  /* Put the first 6 of 8. */
  CHECK(kvf_put(c, ns, chain, 8, 0, 6, (const void* const*)src, sizes, KVF_CODEC_NONE, 0,
                versions, per_block) == KVF_OK);
  CHECK(kvf_lookup(c, ns, chain, 8, &prefix, holders, 2) == KVF_OK);
  CHECK(prefix == 6);
  CHECK(holders[0] != 0);
  CHECK(holders[7 * 2] == 0);
  CHECK(kvf_exists(c, ns, chain, 8, 4, 4, exists) == KVF_OK);
  CHECK(exists[0] == 1 && exists[1] == 1 && exists[2] == 0 && exists[3] == 0);

  CHECK(kvf_get(c, ns, chain, 8, 0, 8, dst, caps, NULL, got_sizes, NULL, per_block) ==
        KVF_NOT_FOUND);
  for (i = 0; i < 8; ++i) {
    if (i < 6) {
      CHECK(per_block[i] == KVF_OK);
      CHECK(got_sizes[i] == bytes);
      CHECK(memcmp(src[i], dst[i], bytes) == 0);
    } else {
      CHECK(per_block[i] == KVF_NOT_FOUND);
    }
  }
  CHECK(kvf_remove(c, ns, chain, 8, 0, 6, per_block) == KVF_OK);
  CHECK(kvf_lookup(c, ns, chain, 8, &prefix, NULL, 0) == KVF_OK);
  CHECK(prefix == 0);

  sequences(c, ns, bytes);
  paged(c, ns, chain);

  for (i = 0; i < 8; ++i) {
    free(src[i]);
    free(dst[i]);
  }
  kvf_namespace_free(ns);
  kvf_close(c);
  return 0;
}

int main(int argc, char** argv) {
  error_paths();
  if (argc >= 3 && round_trips(argv[1], argv[2]) != 0) ++failures;
  if (failures != 0) {
    fprintf(stderr, "%d check(s) failed\n", failures);
    return 1;
  }
  printf("kvf C API: all checks passed\n");
  return 0;
}
