/* The C API from a C program.
 *
 *   kvf_c_api_test                      error paths only (no cluster needed)
 *   kvf_c_api_test HOST:PORT TOKEN      also round trips against a cluster
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
  CHECK(strcmp(kvf_status_name(KVF_NOT_FOUND), "NOT_FOUND") == 0);
  CHECK(strcmp(kvf_status_name(99), "UNKNOWN_STATUS") == 0);
  kvf_close(NULL);
  kvf_namespace_free(NULL);
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
