// placement: which nodes own a key, computed from the cluster map exactly as
// clients and agents compute it (common/placement.h).
#include <cstdio>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/block_hash.h"
#include "common/placement.h"
#include "proto/cluster_map_convert.h"
#include "tools/kvfctl/commands.h"
#include "tools/kvfctl/output.h"

namespace kvf::ctl {
namespace {

struct Segment {
  int64_t index = -1;  // -1: a bare key or hash, not from a token file
  size_t first_block = 0;
  size_t last_block = 0;
  std::string head_key;  // hex; empty for a bare hash
  uint64_t hash = 0;
};

absl::StatusOr<std::vector<uint32_t>> ReadTokens(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path));
  std::stringstream ss;
  ss << in.rdbuf();
  std::vector<uint32_t> tokens;
  for (absl::string_view t :
       absl::StrSplit(ss.str(), absl::ByAnyChar(" \t\r\n,"), absl::SkipEmpty())) {
    uint32_t v = 0;
    if (!absl::SimpleAtoi(t, &v)) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": '", std::string(t), "' is not a token id (0..4294967295)"));
    }
    tokens.push_back(v);
  }
  return tokens;
}

std::string OwnersText(const OwnerList& owners, const ClusterMap& map) {
  std::vector<std::string> parts;
  for (size_t i = 0; i < owners.size(); ++i) {
    const NodeInfo* n = map.Find(owners[i]);
    parts.push_back(absl::StrCat(owners[i], " (", i == 0 ? "primary, " : "",
                                 n ? std::string(NodeStateName(n->state)) : "?", ", ",
                                 n ? n->failure_domain : "?", ")"));
  }
  return absl::StrJoin(parts, "  ");
}

std::string OwnersJson(const OwnerList& owners, const ClusterMap& map) {
  JsonArray a;
  for (size_t i = 0; i < owners.size(); ++i) {
    const NodeInfo* n = map.Find(owners[i]);
    a.Raw(JsonObject()
              .Uint("id", owners[i])
              .Bool("primary", i == 0)
              .Str("state", n ? std::string(NodeStateName(n->state)) : "unknown")
              .Str("failure_domain", n ? n->failure_domain : "")
              .Str("address", n ? n->address : "")
              .Done());
  }
  return a.Done();
}

}  // namespace

int RunPlacement(Context& ctx, const PlacementParams& p) {
  // The namespace: needed for every input but a bare placement hash.
  const bool bare_hash = p.tokens_file.empty() && absl::StartsWith(p.key, "0x");
  NamespaceId ns = p.namespace_id;
  if (!bare_hash && !p.have_namespace_id) {
    if (absl::Status s = p.spec.Validate(); !s.ok()) {
      return Fail(
          kExitUsage, std::string(s.message()),
          "give the engine's namespace: --model and the layout flags (--num_layers, "
          "--num_kv_heads, --head_dim, --block_tokens, --dtype, ...), or --namespace_id=0x...");
    }
    ns = p.spec.Id();
  }

  std::vector<Segment> segments;
  size_t num_tokens = 0, num_blocks = 0;
  if (!p.tokens_file.empty()) {
    auto tokens = ReadTokens(p.tokens_file);
    if (!tokens.ok()) return Fail(kExitUsage, std::string(tokens.status().message()));
    num_tokens = tokens->size();
    auto keys = HashSequence(p.spec.hash, *tokens, p.spec.layout.block_tokens, p.extra);
    if (!keys.ok()) return Fail(kExitUsage, std::string(keys.status().message()));
    num_blocks = keys->size();
    const uint32_t seg = p.spec.segment_blocks;
    for (size_t b = 0; b < keys->size(); b += seg) {
      Segment s;
      s.index = static_cast<int64_t>(b / seg);
      s.first_block = b;
      s.last_block = std::min(keys->size(), b + seg) - 1;
      const BlockKey& head = SegmentHead(*keys, b, seg);
      s.head_key = head.ToHex();
      s.hash = PlacementHash(ns, head);
      segments.push_back(s);
    }
  } else if (bare_hash) {
    Segment s;
    if (p.key.size() < 3 || p.key.size() > 18 ||
        !absl::SimpleHexAtoi(absl::string_view(p.key).substr(2), &s.hash)) {
      return Fail(kExitUsage,
                  absl::StrCat("'", p.key, "' is not a placement hash (0x + up to 16 hex digits)"));
    }
    segments.push_back(s);
  } else {
    auto key = BlockKey::FromHex(absl::AsciiStrToLower(p.key));
    if (!key.ok()) {
      return Fail(kExitUsage, absl::StrCat("'", p.key,
                                           "' is neither a block key (32 hex digits) nor a "
                                           "placement hash (0x...)"));
    }
    Segment s;
    s.head_key = key->ToHex();
    s.hash = PlacementHash(ns, *key);
    segments.push_back(s);
  }

  int code = 0;
  auto wire = ctx.GetMap(&code);
  if (!wire) return code;
  auto map = ClusterMapFromProto(*wire);
  if (!map.ok()) {
    return Fail(kExitFailed, absl::StrCat("the coordinator's map is invalid: ",
                                          std::string(map.status().message())));
  }
  std::vector<PlacementNode> members = Placement::ReadMembers(*map);
  auto read = Placement::Build(members, map->ring);
  auto target = Placement::Build(Placement::TargetMembers(*map), map->ring);
  if (!read.ok() || !target.ok()) {
    return Fail(kExitFailed,
                absl::StrCat("cannot build placement from the map: ",
                             std::string((read.ok() ? target.status() : read.status()).message())));
  }
  std::set<std::string> domains;
  for (const PlacementNode& m : members) domains.insert(m.failure_domain);

  if (ctx.json()) {
    JsonArray mem;
    for (const PlacementNode& m : members) {
      mem.Raw(JsonObject()
                  .Uint("id", m.id)
                  .Str("failure_domain", m.failure_domain)
                  .Num("weight", m.weight)
                  .Done());
    }
    JsonArray segs;
    for (const Segment& s : segments) {
      const OwnerList owners = read->Owners(s.hash);
      const OwnerList after = target->Owners(s.hash);
      JsonObject o;
      if (s.index >= 0) {
        o.Int("segment", s.index)
            .Uint("first_block", s.first_block)
            .Uint("last_block", s.last_block);
      }
      if (!s.head_key.empty()) o.Str("head_key", s.head_key);
      o.Str("placement_hash", Hex64(s.hash)).Raw("owners", OwnersJson(owners, *map));
      if (after != owners) o.Raw("owners_after_migration", OwnersJson(after, *map));
      segs.Raw(o.Done());
    }
    JsonObject out;
    out.Uint("epoch", map->epoch)
        .Uint("replication", map->ring.replication)
        .Uint("replicas", read->replicas())
        .Raw("read_members", mem.Done())
        .Uint("failure_domains", domains.size());
    if (!bare_hash) {
      out.Str("namespace_id", Hex64(ns));
      if (!p.have_namespace_id) out.Str("namespace", p.spec.DebugString());
    }
    if (!p.tokens_file.empty()) {
      out.Uint("tokens", num_tokens)
          .Uint("blocks", num_blocks)
          .Uint("block_tokens", p.spec.layout.block_tokens)
          .Uint("segment_blocks", p.spec.segment_blocks);
    }
    out.Raw("segments", segs.Done());
    std::printf("%s\n", out.Done().c_str());
    return kExitOk;
  }

  std::vector<std::string> mem_text;
  for (const PlacementNode& m : members)
    mem_text.push_back(absl::StrCat(m.id, "@", m.failure_domain));
  std::printf(
      "epoch %llu, R=%u: %zu read members (active and draining nodes) in %zu failure "
      "domains: %s\n",
      static_cast<unsigned long long>(map->epoch), map->ring.replication, members.size(),
      domains.size(), absl::StrJoin(mem_text, " ").c_str());
  std::printf(
      "owners: from the hash, walk the ring clockwise and take the first %zu nodes in "
      "distinct failure domains%s; primary first\n",
      read->replicas(),
      domains.size() < map->ring.replication ? " (fewer domains than R: then any distinct node)"
                                             : "");
  if (!bare_hash) {
    std::printf("namespace %s", Hex64(ns).c_str());
    if (!p.have_namespace_id) std::printf(" (%s)", p.spec.DebugString().c_str());
    std::printf("\n");
  }
  if (!p.tokens_file.empty()) {
    std::printf("%zu tokens -> %zu full blocks of %u tokens -> %zu segments of up to %u blocks\n",
                num_tokens, num_blocks, p.spec.layout.block_tokens, segments.size(),
                p.spec.segment_blocks);
  }
  Table t({"SEGMENT", "BLOCKS", "HEAD KEY", "PLACEMENT HASH", "OWNERS"},
          {true, false, false, false, false});
  for (const Segment& s : segments) {
    const OwnerList owners = read->Owners(s.hash);
    const OwnerList after = target->Owners(s.hash);
    std::string text = OwnersText(owners, *map);
    if (owners.empty()) text = "none (no active or draining node)";
    if (after != owners) text += absl::StrCat("  -> after migration: ", OwnersText(after, *map));
    t.AddRow({s.index >= 0 ? absl::StrCat(s.index) : "-",
              s.index >= 0 ? absl::StrCat(s.first_block, "-", s.last_block) : "-",
              s.head_key.empty() ? "-" : s.head_key, Hex64(s.hash), text});
  }
  t.Print(stdout);
  return kExitOk;
}

}  // namespace kvf::ctl
