#!/usr/bin/env bash
# Runs every kvfabric GPU test and benchmark from a bundle made by
# tools/gpu-bundle.sh, on a machine with CUDA and PyTorch (for its NCCL):
#
#   gpu-bundle/run-gpu.sh RESULTS_DIR
#
# Writes into RESULTS_DIR eight files (the device tool brings back at most
# eight): one GoogleTest JSON per test binary, kernel-bench.json,
# offload-bench.json (kvf-offload-bench: paged offload/load through a local
# agent vs pinned cudaMemcpyAsync; it starts its own agent), all.log
# (every step's output, in order, each under a header line) and summary.txt
# (one line per step: PASS NAME or FAIL NAME rc=N). Exits 1 if any step failed.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
results=${1:?usage: run-gpu.sh RESULTS_DIR}
mkdir -p "$results"
results=$(cd "$results" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
tar -C "$work" -xJf "$here/kvf-gpu.tar.xz"
kvf=$work/kvf

# NCCL: the machine's own (PyTorch's wheel), else whatever the loader finds.
nccl=$(python3 -c 'import nvidia.nccl, os; print(os.path.join(nvidia.nccl.__path__[0], "lib"))' \
       2>/dev/null || true)
export LD_LIBRARY_PATH=$kvf/lib${nccl:+:$nccl}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export UCX_MODULE_DIR=$kvf/ucx
summary=$results/summary.txt
: >"$summary"
: >"$results/all.log"
failed=0
{
  echo "host: $(hostname), $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null | head -1)"
  echo "nccl: ${nccl:-not found (NCCL tests will fail to load it)}"
} >>"$summary"

step() {  # step NAME CMD...: runs CMD, its output appended to all.log
  local name=$1
  shift
  echo "==== $name: $*" >>"$results/all.log"
  "$@" >>"$results/all.log" 2>&1
  local rc=$?
  if [[ $rc == 0 ]]; then
    echo "PASS $name" >>"$summary"
  else
    echo "FAIL $name rc=$rc" >>"$summary"
    failed=1
  fi
}

for t in kvf_codec_gpu_test kvf_codec_gpu_core_test kvf_paged_gpu_test; do
  step "$t" "$kvf/bin/$t" --gtest_output="json:$results/$t.json"
done
# Paged offload/load of device pages through a real agent (starts its own
# coordinator and agent from beside it); its output goes to all.log only, to
# keep within the eight files.
step kvf_paged_gpu_client_test "$kvf/bin/kvf_paged_gpu_client_test"
step kvf_transport_conformance_Nccl "$kvf/bin/kvf_transport_conformance_test" \
  --gtest_filter='*Nccl*' --gtest_output="json:$results/kvf_transport_conformance_Nccl.json"
step kernel-bench "$kvf/bin/kvf-kernel-bench" --json "$results/kernel-bench.json"
step offload-bench "$kvf/bin/kvf-offload-bench" --json "$results/offload-bench.json"
cat "$summary"
exit $failed
