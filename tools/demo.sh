#!/usr/bin/env bash
# The demo, once built: a local cluster (kvf-coordinator + 3 kvf-agents on
# host memory over UCX) and a real workload through the client library: the
# first requests of the Mooncake conversation trace in this checkout
# (data/traces/), each one a lookup of the cached prefix, a get of the hits
# and a put of the misses. Prints the summary; stops the cluster unless
# --keep. `./kvf demo` builds, then runs this; tests/launch/demo_clone_test.sh
# runs it from a copy of the checkout.
#
#   tools/demo.sh BUILD_DIR [--keep] [kvf-bench trace options, e.g. --max_requests N]
set -euo pipefail

if [[ $# -lt 1 || $1 == -* ]]; then
  echo "usage: tools/demo.sh BUILD_DIR [--keep] [kvf-bench trace options]" >&2
  exit 2
fi
build=$1
shift
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
trace=$root/data/traces/conversation_trace.jsonl
launch=$build/tools/launch/kvf-launch
bench_bin=$build/bench/kvf_bench/kvf-bench
for f in "$launch" "$bench_bin"; do
  [[ -x $f ]] || { echo "demo: $f is missing: build first (./kvf demo does)" >&2; exit 1; }
done
[[ -r $trace ]] || { echo "demo: the trace $trace is missing" >&2; exit 1; }

keep=0
args=()
max=(--max_requests 1000)  # unless the caller names it
for a in "$@"; do
  case $a in
    --keep) keep=1 ;;
    --max_requests | --max_requests=*) max=(); args+=("$a") ;;
    *) args+=("$a") ;;
  esac
done
bench=("$bench_bin" trace "$trace" "${max[@]}" "${args[@]}")

if [[ $keep == 1 ]]; then
  out=$("$launch" local --agents 3 --keep)
  echo "$out"
  dir=$(sed -n 's/^kvf-launch: cluster up in //p' <<<"$out")
  # shellcheck disable=SC1091
  (source "$dir/cluster.env" && "${bench[@]}")
else
  exec "$launch" local --agents 3 -- "${bench[@]}"
fi
