// The local-cluster harness moved to tools/launch/local_cluster.h (library
// kvf::launch, namespace kvf::launch) so kvf-launch can use it; tests keep
// their kvf::testing names through this header.
#ifndef KVF_TESTS_CLUSTER_LOCAL_CLUSTER_H_
#define KVF_TESTS_CLUSTER_LOCAL_CLUSTER_H_

#include "tools/launch/local_cluster.h"

namespace kvf::testing {
using launch::AgentProcess;
using launch::LocalCluster;
using launch::LocalClusterOptions;
}  // namespace kvf::testing

#endif  // KVF_TESTS_CLUSTER_LOCAL_CLUSTER_H_
