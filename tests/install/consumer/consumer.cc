// A program built against an installed kvfabric (tests/install/): connects to
// the cluster kvf-launch started (KVF_COORDINATOR, KVF_TOKEN), registers a
// namespace, puts blocks and a sequence, reads them back and compares bytes.
// Exits 0 when every check passed, 1 otherwise.
//
//   consumer LABEL    LABEL names the build (cmake, pkg-config) in its output
//                     and in the model id, so two consumers never collide.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "client/client.h"
#include "client/paged.h"  // compiles from the install, too
#include "client/sequence.h"

namespace {

int Fail(const std::string& label, const std::string& what) {
  std::fprintf(stderr, "consumer(%s): FAIL: %s\n", label.c_str(), what.c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string label = argc > 1 ? argv[1] : "consumer";
  const char* coordinator = std::getenv("KVF_COORDINATOR");
  const char* token = std::getenv("KVF_TOKEN");
  if (coordinator == nullptr || token == nullptr) {
    return Fail(label, "KVF_COORDINATOR and KVF_TOKEN must be set (run under kvf-launch)");
  }

  kvf::ClientOptions options;
  options.coordinator = coordinator;
  options.token = token;
  options.name = "install-" + label;
  absl::StatusOr<std::unique_ptr<kvf::Client>> client = kvf::Client::Connect(options);
  if (!client.ok()) return Fail(label, "Connect: " + client.status().ToString());

  kvf::NamespaceSpec spec;
  spec.model_id = "install-test-" + label;
  spec.layout = {.num_layers = 2, .num_kv_heads = 2, .head_dim = 32, .block_tokens = 16,
                 .dtype = kvf::DType::kBf16};
  spec.segment_blocks = 4;
  absl::StatusOr<kvf::Namespace> ns = (*client)->RegisterNamespace(spec);
  if (!ns.ok()) return Fail(label, "RegisterNamespace: " + ns.status().ToString());
  const size_t bytes = ns->BlockBytes();

  // 6 blocks of random tokens (two placement segments), random bytes each.
  constexpr size_t kBlocks = 6;
  std::mt19937 rng(std::random_device{}());
  std::vector<uint32_t> tokens(kBlocks * spec.layout.block_tokens);
  for (uint32_t& t : tokens) t = static_cast<uint32_t>(rng());
  absl::StatusOr<std::vector<kvf::BlockKey>> chain =
      kvf::HashSequence(spec.hash, tokens, spec.layout.block_tokens);
  if (!chain.ok() || chain->size() != kBlocks) return Fail(label, "HashSequence");

  std::vector<std::vector<unsigned char>> src(kBlocks, std::vector<unsigned char>(bytes));
  std::vector<std::vector<unsigned char>> dst(kBlocks, std::vector<unsigned char>(bytes));
  std::vector<kvf::ConstBlockBuffer> in;
  std::vector<kvf::BlockBuffer> out;
  for (size_t i = 0; i < kBlocks; ++i) {
    for (unsigned char& b : src[i]) b = static_cast<unsigned char>(rng());
    in.push_back({src[i].data(), bytes});
    out.push_back({dst[i].data(), bytes});
  }

  absl::StatusOr<kvf::BatchResult> put = (*client)->BatchPut(*ns, *chain, 0, in);
  if (!put.ok()) return Fail(label, "BatchPut: " + put.status().ToString());
  if (!put->all_ok()) return Fail(label, "BatchPut block: " + put->FirstError().ToString());

  absl::StatusOr<kvf::LookupResult> lookup = (*client)->Lookup(*ns, *chain);
  if (!lookup.ok()) return Fail(label, "Lookup: " + lookup.status().ToString());
  if (lookup->prefix != kBlocks) {
    return Fail(label, "Lookup prefix " + std::to_string(lookup->prefix) + ", want " +
                           std::to_string(kBlocks));
  }

  absl::StatusOr<kvf::BatchResult> get = (*client)->BatchGet(*ns, *chain, 0, out);
  if (!get.ok()) return Fail(label, "BatchGet: " + get.status().ToString());
  if (!get->all_ok()) return Fail(label, "BatchGet block: " + get->FirstError().ToString());
  for (size_t i = 0; i < kBlocks; ++i) {
    if (get->blocks[i].size != bytes || src[i] != dst[i]) {
      return Fail(label, "block " + std::to_string(i) + " read back different bytes");
    }
  }

  // A sequence: append two blocks, read them back through a second handle.
  const kvf::SequenceId id = kvf::SequenceId::FromName("install-seq-" + label);
  absl::StatusOr<kvf::Sequence> seq = kvf::Sequence::Open(**client, *ns, id);
  if (!seq.ok()) return Fail(label, "Sequence::Open: " + seq.status().ToString());
  absl::StatusOr<kvf::BatchResult> appended = seq->Append(absl::MakeConstSpan(in).first(2));
  if (!appended.ok() || !appended->all_ok() || seq->length() != 2) {
    return Fail(label, "Sequence::Append");
  }
  absl::StatusOr<kvf::Sequence> reader = kvf::Sequence::Open(**client, *ns, id);
  if (!reader.ok() || reader->length() != 2) return Fail(label, "second Sequence::Open");
  for (auto& d : dst) std::fill(d.begin(), d.end(), 0);
  absl::StatusOr<kvf::BatchResult> read = reader->Read(0, 2, absl::MakeConstSpan(out).first(2));
  if (!read.ok() || !read->all_ok()) return Fail(label, "Sequence::Read");
  if (src[0] != dst[0] || src[1] != dst[1]) return Fail(label, "sequence bytes differ");

  std::printf("consumer(%s): OK: %zu blocks of %zu bytes and a 2-block sequence round-tripped "
              "through %zu node(s)\n",
              label.c_str(), kBlocks, bytes, (*client)->cluster_map().nodes.size());
  return 0;
}
