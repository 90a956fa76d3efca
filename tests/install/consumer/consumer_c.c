/* A C program built against an installed kvfabric, using kvf.h only
 * (tests/install/): connects to the cluster kvf-launch started
 * (KVF_COORDINATOR, KVF_TOKEN), puts blocks, reads them back and compares
 * bytes. Exits 0 when every check passed, 1 otherwise.
 *
 *   consumer_c LABEL    LABEL names the build in its output and model id. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <kvf.h>

#define BLOCKS 4

static int fail(const char* label, const char* what) {
  fprintf(stderr, "consumer_c(%s): FAIL: %s: %s\n", label, what, kvf_last_error());
  return 1;
}

int main(int argc, char** argv) {
  const char* label = argc > 1 ? argv[1] : "c";
  kvf_client_options o;
  kvf_client* c = NULL;
  kvf_namespace* ns = NULL;
  kvf_namespace_spec spec;
  char model[128];
  uint32_t tokens[BLOCKS * 16];
  kvf_block_key chain[BLOCKS];
  void* src[BLOCKS];
  void* dst[BLOCKS];
  size_t sizes[BLOCKS], got[BLOCKS], n = 0, bytes, i, b;
  kvf_status per_block[BLOCKS];
  int rc = 0;

  kvf_client_options_init(&o);
  o.coordinator = getenv("KVF_COORDINATOR");
  o.token = getenv("KVF_TOKEN");
  if (o.coordinator == NULL || o.token == NULL) return fail(label, "KVF_COORDINATOR, KVF_TOKEN");
  if (kvf_connect(&o, &c, NULL) != KVF_OK) return fail(label, "kvf_connect");

  snprintf(model, sizeof(model), "install-test-c-%s", label);
  memset(&spec, 0, sizeof(spec));
  spec.model_id = model;
  spec.num_layers = 2;
  spec.num_kv_heads = 2;
  spec.head_dim = 32;
  spec.block_tokens = 16;
  spec.dtype = KVF_DTYPE_FP16;
  spec.segment_blocks = 2;
  if (kvf_register_namespace(c, &spec, &ns) != KVF_OK) return fail(label, "register");
  bytes = kvf_namespace_block_bytes(ns, KVF_CODEC_NONE);

  srand((unsigned)getpid());
  for (i = 0; i < BLOCKS * 16; ++i) tokens[i] = (uint32_t)rand();
  if (kvf_hash_tokens(ns, tokens, BLOCKS * 16, chain, BLOCKS, &n) != KVF_OK || n != BLOCKS) {
    return fail(label, "kvf_hash_tokens");
  }
  for (i = 0; i < BLOCKS; ++i) {
    src[i] = malloc(bytes);
    dst[i] = calloc(1, bytes);
    for (b = 0; b < bytes; ++b) ((unsigned char*)src[i])[b] = (unsigned char)rand();
    sizes[i] = bytes;
  }
  if (kvf_put(c, ns, chain, BLOCKS, 0, BLOCKS, (const void* const*)src, sizes, KVF_CODEC_NONE, 0,
              NULL, per_block) != KVF_OK) {
    rc = fail(label, "kvf_put");
  } else if (kvf_get(c, ns, chain, BLOCKS, 0, BLOCKS, dst, sizes, NULL, got, NULL, per_block) !=
             KVF_OK) {
    rc = fail(label, "kvf_get");
  } else {
    for (i = 0; i < BLOCKS; ++i) {
      if (got[i] != bytes || memcmp(src[i], dst[i], bytes) != 0) {
        rc = fail(label, "a block read back different bytes");
        break;
      }
    }
  }
  for (i = 0; i < BLOCKS; ++i) {
    free(src[i]);
    free(dst[i]);
  }
  kvf_namespace_free(ns);
  kvf_close(c);
  if (rc == 0) {
    printf("consumer_c(%s): OK: %d blocks of %zu bytes round-tripped\n", label, BLOCKS, bytes);
  }
  return rc;
}
