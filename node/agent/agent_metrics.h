// The agent's /metrics page (Prometheus text exposition).
#ifndef KVF_NODE_AGENT_AGENT_METRICS_H_
#define KVF_NODE_AGENT_AGENT_METRICS_H_

#include <string>

#include "node/agent/data_plane.h"
#include "node/agent/memory_pressure.h"
#include "node/agent/migrator.h"
#include "node/agent/replicator.h"
#include "node/shard_store.h"

namespace kvf {

// `pressure` is null when memory-pressure sizing is off.
std::string AgentMetricsText(const ShardStore& store, const DataPlane& data_plane,
                             const Replicator& replicator, const Migrator& migrator,
                             const MemoryPressure* pressure = nullptr);

}  // namespace kvf

#endif  // KVF_NODE_AGENT_AGENT_METRICS_H_
