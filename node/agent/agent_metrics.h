// The agent's /metrics page (Prometheus text exposition).
#ifndef KVF_NODE_AGENT_AGENT_METRICS_H_
#define KVF_NODE_AGENT_AGENT_METRICS_H_

#include <cstdint>
#include <string>

#include "node/agent/data_plane.h"
#include "node/agent/memory_pressure.h"
#include "node/agent/migrator.h"
#include "node/agent/replicator.h"
#include "node/shard_store.h"

namespace kvf {

// Where the background prefault of the arena stands (AgentOptions::
// prefault_arena): bytes populated so far, seconds taken so far (in all, once
// it ended), and whether it still runs.
struct ArenaPrefaultProgress {
  uint64_t bytes = 0;
  double seconds = 0;
  bool running = false;
};

// `pressure` is null when memory-pressure sizing is off; `prefault` null when
// the arena is not prefaulted (the gauges then read 0).
std::string AgentMetricsText(const ShardStore& store, const DataPlane& data_plane,
                             const Replicator& replicator, const Migrator& migrator,
                             const MemoryPressure* pressure = nullptr,
                             const ArenaPrefaultProgress* prefault = nullptr);

}  // namespace kvf

#endif  // KVF_NODE_AGENT_AGENT_METRICS_H_
