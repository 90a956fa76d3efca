#include "tools/launch/internal/client_check.h"

#include <cstdint>
#include <cstring>
#include <random>
#include <set>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "client/client.h"
#include "common/block_hash.h"
#include "common/namespace.h"
#include "common/status_macros.h"

namespace kvf::launch::internal {

absl::StatusOr<std::string> ClientRoundTrip(const std::string& coordinator,
                                            const std::string& token, const std::string& ucx_tls,
                                            int blocks) {
  ClientOptions options;
  options.coordinator = coordinator;
  options.token = token;
  options.ucx_tls = ucx_tls;
  options.name = "kvf-launch-check";
  KVF_ASSIGN_OR_RETURN(std::unique_ptr<Client> client, Client::Connect(options));

  NamespaceSpec spec;
  spec.model_id = "kvf-launch-client-check";
  spec.layout.num_layers = 2;
  spec.layout.num_kv_heads = 2;
  spec.layout.head_dim = 64;
  spec.layout.block_tokens = 16;
  spec.layout.dtype = DType::kFp16;
  spec.segment_blocks = 4;  // 64 blocks: 16 segments, spread over the ring
  KVF_ASSIGN_OR_RETURN(Namespace ns, client->RegisterNamespace(spec));

  std::mt19937_64 rng{std::random_device{}()};
  const size_t n = static_cast<size_t>(blocks);
  std::vector<uint32_t> tokens(n * spec.layout.block_tokens);
  for (uint32_t& t : tokens) t = static_cast<uint32_t>(rng());
  KVF_ASSIGN_OR_RETURN(std::vector<BlockKey> chain,
                       HashSequence(spec.hash, tokens, spec.layout.block_tokens));

  const size_t bytes = ns.BlockBytes();
  std::vector<std::vector<uint8_t>> data(n, std::vector<uint8_t>(bytes));
  for (auto& b : data) {
    for (size_t i = 0; i < bytes; i += 8) {
      const uint64_t v = rng();
      std::memcpy(b.data() + i, &v, std::min<size_t>(8, bytes - i));
    }
  }
  std::vector<ConstBlockBuffer> sources;
  for (const auto& b : data) sources.push_back({b.data(), b.size()});

  const absl::Time t0 = absl::Now();
  KVF_ASSIGN_OR_RETURN(BatchResult put, client->BatchPut(ns, chain, 0, sources));
  const absl::Duration put_time = absl::Now() - t0;
  if (!put.all_ok()) {
    return absl::Status(put.FirstError().code(),
                        absl::StrCat("put: ", put.ok_count(), "/", n,
                                     " blocks stored; first error: ", put.FirstError().ToString()));
  }

  std::vector<std::vector<uint8_t>> out(n, std::vector<uint8_t>(bytes, 0));
  std::vector<BlockBuffer> sinks;
  for (auto& b : out) sinks.push_back({b.data(), b.size()});
  const absl::Time t1 = absl::Now();
  KVF_ASSIGN_OR_RETURN(BatchResult got, client->BatchGet(ns, chain, 0, sinks));
  const absl::Duration get_time = absl::Now() - t1;
  if (!got.all_ok()) {
    return absl::Status(got.FirstError().code(),
                        absl::StrCat("get: ", got.ok_count(), "/", n,
                                     " blocks read; first error: ", got.FirstError().ToString()));
  }
  std::set<NodeId> writers;
  std::set<NodeId> readers;
  for (size_t i = 0; i < n; ++i) {
    if (out[i] != data[i]) {
      return absl::DataLossError(absl::StrCat("block ", i, " read back from node ",
                                              got.blocks[i].node, " differs from what was put"));
    }
    writers.insert(put.blocks[i].node);
    readers.insert(got.blocks[i].node);
  }
  const ClusterMap map = client->cluster_map();
  return absl::StrFormat(
      "client check OK: %d blocks of %d bytes put to %d node(s), read back byte-exact from %d "
      "node(s) (cluster epoch %d, %d node(s); put %.1f ms, get %.1f ms)",
      n, bytes, writers.size(), readers.size(), map.epoch, map.nodes.size(),
      absl::ToDoubleMilliseconds(put_time), absl::ToDoubleMilliseconds(get_time));
}

}  // namespace kvf::launch::internal
