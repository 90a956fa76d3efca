#include "node/agent/agent_metrics.h"

#include "absl/strings/str_cat.h"

namespace kvf {
namespace {

class Page {
 public:
  void Help(const char* name, const char* type, const char* help) {
    absl::StrAppend(&out_, "# HELP ", name, " ", help, "\n# TYPE ", name, " ", type, "\n");
  }
  template <typename V>
  void Line(const char* name, V value, std::string_view labels = {}) {
    if (labels.empty()) {
      absl::StrAppend(&out_, name, " ", value, "\n");
    } else {
      absl::StrAppend(&out_, name, "{", std::string(labels), "} ", value, "\n");
    }
  }
  std::string* out() { return &out_; }

 private:
  std::string out_;
};

}  // namespace

std::string AgentMetricsText(const ShardStore& store, const DataPlane& dp,
                             const Replicator& replicator, const Migrator& migrator) {
  const ShardStoreStats s = store.Stats();
  Page p;
  p.Help("kvf_agent_epoch", "gauge", "Cluster map epoch this agent serves at.");
  p.Line("kvf_agent_epoch", dp.epoch());
  p.Help("kvf_agent_tier_capacity_bytes", "gauge", "Capacity per memory tier.");
  for (const TierStats& t : s.tiers) {
    p.Line("kvf_agent_tier_capacity_bytes", t.capacity_bytes,
           absl::StrCat("tier=\"", std::string(TierName(t.kind)), "\""));
  }
  p.Help("kvf_agent_tier_used_bytes", "gauge", "Pages handed out per memory tier.");
  for (const TierStats& t : s.tiers) {
    p.Line("kvf_agent_tier_used_bytes", t.used_bytes,
           absl::StrCat("tier=\"", std::string(TierName(t.kind)), "\""));
  }
  p.Help("kvf_agent_tier_stored_bytes", "gauge", "Block bytes stored per memory tier.");
  for (const TierStats& t : s.tiers) {
    p.Line("kvf_agent_tier_stored_bytes", t.stored_bytes,
           absl::StrCat("tier=\"", std::string(TierName(t.kind)), "\""));
  }
  p.Help("kvf_agent_blocks", "gauge", "Blocks stored.");
  p.Line("kvf_agent_blocks", s.entries);
  p.Help("kvf_agent_hits_total", "counter", "Blocks found by get and lookup.");
  p.Line("kvf_agent_hits_total", s.hits);
  p.Help("kvf_agent_misses_total", "counter", "Blocks asked for and not found.");
  p.Line("kvf_agent_misses_total", s.misses);
  p.Help("kvf_agent_puts_total", "counter", "Blocks stored or overwritten.");
  p.Line("kvf_agent_puts_total", s.puts);
  p.Help("kvf_agent_evictions_total", "counter", "Blocks evicted.");
  p.Line("kvf_agent_evictions_total", s.evictions);
  p.Help("kvf_agent_evicted_bytes_total", "counter", "Bytes evicted.");
  p.Line("kvf_agent_evicted_bytes_total", s.evicted_bytes);
  p.Help("kvf_agent_leases", "gauge", "Open read leases (batches).");
  p.Line("kvf_agent_leases", dp.active_batch_leases());
  p.Help("kvf_agent_pinned_blocks", "gauge", "Blocks pinned by leases and copies.");
  p.Line("kvf_agent_pinned_blocks", s.pinned_entries);
  p.Help("kvf_agent_expired_leases_total", "counter", "Leases and reservations that expired.");
  p.Line("kvf_agent_expired_leases_total", s.expired_leases);
  p.Help("kvf_agent_wrong_owner_total", "counter", "Requests answered WRONG_OWNER.");
  p.Line("kvf_agent_wrong_owner_total", dp.wrong_owner());
  p.Help("kvf_agent_bad_frames_total", "counter", "Requests that did not decode.");
  p.Line("kvf_agent_bad_frames_total", dp.bad_frames());
  p.Help("kvf_agent_stale_refusals_total", "counter", "Reads refused because the copy was stale.");
  p.Line("kvf_agent_stale_refusals_total", dp.stale_refusals());
  p.Help("kvf_agent_fenced_refusals_total", "counter",
         "Mutable blocks refused (reads and writes) while the coordinator lease had lapsed.");
  p.Line("kvf_agent_fenced_refusals_total", dp.fenced_refusals());
  p.Help("kvf_agent_lease_lapsed", "gauge",
         "1 while this agent's coordinator lease has lapsed (mutable blocks fenced).");
  p.Line("kvf_agent_lease_lapsed", dp.LeaseLapsed() ? 1 : 0);
  p.Help("kvf_agent_unauthenticated_total", "counter",
         "Data-plane frames and hellos refused for a missing, unknown or wrong credential.");
  p.Line("kvf_agent_unauthenticated_total", dp.unauthenticated());
  p.Help("kvf_agent_permission_denied_total", "counter",
         "Frames refused for what the session may not do: another tenant's namespace, an "
         "agent-only frame, a version without the primary's tag.");
  p.Line("kvf_agent_permission_denied_total", dp.permission_denied());
  p.Help("kvf_agent_resource_exhausted_total", "counter",
         "Requests refused because a tenant held its limit of a resource.");
  for (int r = 0; r < kNumLimitedResources; ++r) {
    const auto res = static_cast<LimitedResource>(r);
    p.Line("kvf_agent_resource_exhausted_total", dp.exhausted(res),
           absl::StrCat("resource=\"", std::string(LimitedResourceName(res)), "\""));
  }
  p.Help("kvf_agent_sessions", "gauge", "Open data-plane sessions (agents and clients).");
  p.Line("kvf_agent_sessions", dp.sessions());
  p.Help("kvf_agent_request_seconds", "histogram", "Data-plane request handling time by op.");
  for (int op = 0; op < kNumDataOps; ++op) {
    const auto o = static_cast<DataOp>(op);
    dp.latency(o).AppendPrometheus(p.out(), "kvf_agent_request_seconds",
                                   absl::StrCat("op=\"", std::string(DataOpName(o)), "\""));
  }
  p.Help("kvf_agent_sync_queue", "gauge", "Committed keys waiting for replica sync.");
  p.Line("kvf_agent_sync_queue", replicator.queued());
  p.Help("kvf_agent_sync_failures_total", "counter", "Replica invalidations or pushes that failed.");
  p.Line("kvf_agent_sync_failures_total", replicator.sync_failures());
  p.Help("kvf_agent_invalidation_seconds", "histogram",
         "Commit to every replica acknowledging the invalidation.");
  replicator.invalidation_latency().AppendPrometheus(p.out(), "kvf_agent_invalidation_seconds", "");
  p.Help("kvf_agent_sync_lag_seconds", "histogram", "Commit to every replica holding the version.");
  replicator.sync_latency().AppendPrometheus(p.out(), "kvf_agent_sync_lag_seconds", "");
  p.Help("kvf_agent_migration_tasks_pending", "gauge", "Migration tasks queued or running.");
  p.Line("kvf_agent_migration_tasks_pending", migrator.pending());
  p.Help("kvf_agent_migration_tasks_done_total", "counter", "Migration tasks finished.");
  p.Line("kvf_agent_migration_tasks_done_total", migrator.tasks_done());
  p.Help("kvf_agent_migration_bytes_total", "counter", "Bytes streamed to new owners.");
  p.Line("kvf_agent_migration_bytes_total", migrator.bytes_copied());
  return *p.out();
}

}  // namespace kvf
