#include "node/agent/agent_metrics.h"

#include <algorithm>

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
                             const Replicator& replicator, const Migrator& migrator,
                             const MemoryPressure* pressure, const ArenaPrefaultProgress* prefault) {
  const ShardStoreStats s = store.Stats();
  Page p;
  p.Help("kvf_agent_epoch", "gauge", "Cluster map epoch this agent serves at.");
  p.Line("kvf_agent_epoch", dp.epoch());
  p.Help("kvf_agent_tier_capacity_bytes", "gauge", "Capacity per memory tier.");
  for (const TierStats& t : s.tiers) {
    p.Line("kvf_agent_tier_capacity_bytes", t.capacity_bytes,
           absl::StrCat("tier=\"", std::string(TierName(t.kind)), "\""));
  }
  const ArenaPrefaultProgress pf = prefault != nullptr ? *prefault : ArenaPrefaultProgress{};
  p.Help("kvf_agent_arena_prefault_bytes", "gauge",
         "Bytes of the host arena populated (allocated and mapped) at start-up so far.");
  p.Line("kvf_agent_arena_prefault_bytes", pf.bytes);
  p.Help("kvf_agent_arena_prefault_seconds", "gauge",
         "Seconds the arena's prefault has taken (in all, once it ended).");
  p.Line("kvf_agent_arena_prefault_seconds", pf.seconds);
  p.Help("kvf_agent_arena_prefault_running", "gauge",
         "1 while the arena is being prefaulted; 0 once done, stopped, or off.");
  p.Line("kvf_agent_arena_prefault_running", pf.running ? 1 : 0);
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
  p.Help("kvf_agent_tier_blocks", "gauge", "Blocks resident per tier.");
  bool device_tier = false;
  for (const TierStats& t : s.tiers) {
    p.Line("kvf_agent_tier_blocks", t.blocks,
           absl::StrCat("tier=\"", std::string(TierName(t.kind)), "\""));
    device_tier = device_tier || t.kind == TierKind::kDevice;
  }
  if (device_tier) {
    // The GPU tier (docs/agent.md, "GPU tier"): its demotions to the host
    // tier, and remote traffic through host staging.
    p.Help("kvf_agent_tier_demotions_total", "counter",
           "Blocks moved from a memory tier to the next one (GPU to host).");
    p.Help("kvf_agent_tier_demoted_bytes_total", "counter",
           "Bytes moved from a memory tier to the next one (GPU to host).");
    for (size_t i = 0; i + 1 < s.tiers.size(); ++i) {
      if (s.tiers[i + 1].kind == TierKind::kDisk) break;
      const std::string label = absl::StrCat("tier=\"", std::string(TierName(s.tiers[i].kind)), "\"");
      p.Line("kvf_agent_tier_demotions_total", s.tiers[i].demotions, label);
      p.Line("kvf_agent_tier_demoted_bytes_total", s.tiers[i].demoted_bytes, label);
    }
    p.Help("kvf_agent_device_staged_total", "counter",
           "GPU-tier blocks moved through host staging: reads copied out for a remote reader "
           "(op=read), remote puts moved in at commit (op=write).");
    p.Line("kvf_agent_device_staged_total", s.staged_reads, "op=\"read\"");
    p.Line("kvf_agent_device_staged_total", s.staged_writes, "op=\"write\"");
    p.Help("kvf_agent_device_staged_bytes_total", "counter", "Bytes of the same.");
    p.Line("kvf_agent_device_staged_bytes_total", s.staged_read_bytes, "op=\"read\"");
    p.Line("kvf_agent_device_staged_bytes_total", s.staged_write_bytes, "op=\"write\"");
    p.Help("kvf_agent_device_staging_failures_total", "counter",
           "Staging copies or staged commits that failed (the read or commit failed).");
    p.Line("kvf_agent_device_staging_failures_total", s.staging_failures);
    p.Help("kvf_agent_device_demotion_failures_total", "counter",
           "Demotions that failed (copy or write error): the block was dropped instead.");
    p.Line("kvf_agent_device_demotion_failures_total", s.demotion_failures);
  }
  p.Help("kvf_agent_blocks", "gauge", "Blocks stored.");
  p.Line("kvf_agent_blocks", s.entries);
  p.Help("kvf_agent_hits_total", "counter", "Blocks found by get and lookup.");
  p.Line("kvf_agent_hits_total", s.hits);
  p.Help("kvf_agent_tier_hits_total", "counter",
         "Blocks found by get and lookup, by the tier they were found in.");
  p.Line("kvf_agent_tier_hits_total", s.hits - s.disk_hits, "tier=\"memory\"");
  p.Line("kvf_agent_tier_hits_total", s.disk_hits, "tier=\"disk\"");
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
  const ReadHoldStats holds = dp.read_holds();
  p.Help("kvf_agent_read_holds_total", "counter",
         "Blocks held after a lookup for the get that follows.");
  p.Line("kvf_agent_read_holds_total", holds.held);
  p.Help("kvf_agent_read_holds_skipped_total", "counter",
         "Blocks a lookup reported but not held: the hold budget was spent.");
  p.Line("kvf_agent_read_holds_skipped_total", holds.skipped);
  p.Help("kvf_agent_read_hold_prefetches_total", "counter",
         "Disk-tier blocks read back into memory after a lookup.");
  p.Line("kvf_agent_read_hold_prefetches_total", holds.prefetched);
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
  if (const LatencyHistogram* read = store.DiskReadLatency()) {
    p.Help("kvf_agent_disk_blocks", "gauge", "Blocks held only in the disk tier.");
    p.Line("kvf_agent_disk_blocks", s.disk_entries);
    p.Help("kvf_agent_disk_demotions_total", "counter", "Blocks written to disk on eviction.");
    p.Line("kvf_agent_disk_demotions_total", s.demotions);
    p.Help("kvf_agent_disk_promotions_total", "counter", "Blocks read back into memory on a hit.");
    p.Line("kvf_agent_disk_promotions_total", s.promotions);
    p.Help("kvf_agent_disk_demotion_failures_total", "counter",
           "Demotions whose write failed (the block was dropped).");
    p.Line("kvf_agent_disk_demotion_failures_total", s.demotion_failures);
    p.Help("kvf_agent_disk_evictions_total", "counter",
           "Blocks the disk tier dropped to make room (oldest segment first).");
    p.Line("kvf_agent_disk_evictions_total", s.disk_evictions);
    p.Help("kvf_agent_disk_corrupt_records_total", "counter",
           "Disk records that failed their checksum (at start or on a read): dropped, never served.");
    p.Line("kvf_agent_disk_corrupt_records_total", s.disk_corrupt_records);
    p.Help("kvf_agent_disk_recovered_blocks", "gauge", "Blocks found on disk when the agent started.");
    p.Line("kvf_agent_disk_recovered_blocks", s.disk_recovered);
    p.Help("kvf_agent_disk_io_total", "counter", "Disk tier records read and written.");
    p.Line("kvf_agent_disk_io_total", s.disk_reads, "op=\"read\"");
    p.Line("kvf_agent_disk_io_total", s.disk_writes, "op=\"write\"");
    p.Help("kvf_agent_disk_io_bytes_total", "counter", "Disk tier bytes read and written.");
    p.Line("kvf_agent_disk_io_bytes_total", s.disk_read_bytes, "op=\"read\"");
    p.Line("kvf_agent_disk_io_bytes_total", s.disk_written_bytes, "op=\"write\"");
    p.Help("kvf_agent_disk_read_seconds", "histogram", "One record read from the disk tier.");
    read->AppendPrometheus(p.out(), "kvf_agent_disk_read_seconds", "");
    p.Help("kvf_agent_disk_write_seconds", "histogram",
           "One write to the disk tier (a run of contiguous records).");
    store.DiskWriteLatency()->AppendPrometheus(p.out(), "kvf_agent_disk_write_seconds", "");
  }
  p.Help("kvf_agent_memory_limit_bytes", "gauge",
         "Usable bytes of the memory tiers (shrunk under memory pressure).");
  uint64_t memory_capacity = 0;
  for (const TierStats& t : s.tiers) {
    if (t.kind != TierKind::kDisk) memory_capacity += t.capacity_bytes;
  }
  p.Line("kvf_agent_memory_limit_bytes", std::min(memory_capacity, s.memory_limit_bytes));
  if (pressure != nullptr) {
    p.Help("kvf_agent_memory_pressure_level", "gauge",
           "0 normal, 1 elevated (holding), 2 high (shrinking).");
    p.Line("kvf_agent_memory_pressure_level", static_cast<int>(pressure->level()));
    p.Help("kvf_agent_memory_used_fraction", "gauge",
           "Used fraction of the machine's or cgroup's memory at the last check.");
    p.Line("kvf_agent_memory_used_fraction", pressure->used_fraction());
    p.Help("kvf_agent_memory_pressure_actions_total", "counter",
           "Steps the memory limit took, by direction.");
    p.Line("kvf_agent_memory_pressure_actions_total", pressure->shrinks(), "action=\"shrink\"");
    p.Line("kvf_agent_memory_pressure_actions_total", pressure->grows(), "action=\"grow\"");
  }
  return *p.out();
}

}  // namespace kvf
