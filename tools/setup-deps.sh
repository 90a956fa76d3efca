#!/usr/bin/env bash
# Installs kvfabric's build and test dependencies from Debian 12 packages.
# Idempotent and quiet: prints nothing and touches nothing when all is present.
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config
  iproute2                                        # fault tests: network namespaces (ip netns)
  libabsl-dev                                     # Abseil: status, containers, sync
  libxxhash-dev                                   # XXH3 block hashing
  libssl-dev                                      # SHA-256 block hashing (libcrypto)
  libgtest-dev libgmock-dev libbenchmark-dev      # tests and micro benchmarks
  libucx-dev ucx-utils                            # transport (ucx_perftest for peers)
  libprotobuf-dev protobuf-compiler libgrpc++-dev protobuf-compiler-grpc
  libopenmpi-dev openmpi-bin                      # mpirun launcher
  libcpp-httplib-dev                              # /metrics and /healthz
  python3-dev pybind11-dev python3-pybind11       # the Python package (python/, docs/python.md)
  python3-numpy python3-torch python3-pytest      # its buffers, torch KV caches and tests (CPU torch)
  redis-server                                    # kvf-bench's peer: the issue names Redis as the store to beat
  etcd-server etcd-client                         # several coordinators' shared state (kvf-launch --coordinators, failover tests)
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "kvfabric: installing ${missing[*]}" >&2
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >/dev/null
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
