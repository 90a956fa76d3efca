#!/usr/bin/env bash
# kvf-bench --netns and kvf-cluster-bench --netns smoke test (ctest
# kvf_bench_netns_smoke_test, label netns): short runs with every process on a
# host of its own (network namespaces on a bridge, UCX over TCP). Each must
# exit 0, print its table and the ratios, and leave no namespace behind.
# Needs root and iproute2; exits 77 (skipped) without them.
set -euo pipefail
bench="${1:?usage: $0 path/to/kvf-bench path/to/kvf-cluster-bench}"
cluster_bench="${2:?usage: $0 path/to/kvf-bench path/to/kvf-cluster-bench}"
if [ "$(id -u)" != 0 ]; then echo "network namespaces unavailable: not root"; exit 77; fi
ip=$(command -v ip || true)
[ -n "$ip" ] || ip=/usr/sbin/ip
[ -x "$ip" ] || { echo "network namespaces unavailable: no iproute2"; exit 77; }
dir="$(mktemp -d)"
trap 'rm -rf "$dir"' EXIT

fail() { echo "FAIL: $*" >&2; exit 1; }
expect() {  # expect FILE PATTERN
  grep -qE -- "$2" "$1" || { cat "$1" >&2; fail "no line matching '$2'"; }
}
# run NAME CMD...: runs CMD, fails on a non-zero exit or on namespaces named
# after its pid ("kvf<pid>-...") that outlive it.
run() {
  local name="$1"
  shift
  "$@" >"$dir/$name.out" 2>&1 &
  local pid=$!
  wait "$pid" || { cat "$dir/$name.out"; fail "$name exited $?"; }
  if "$ip" netns list | grep -q "^kvf$pid-"; then
    "$ip" netns list >&2
    fail "$name left its namespaces behind"
  fi
}

# 64 KiB blocks keep ucx_perftest's run short.
run get "$bench" --local 2 --netns --seconds 0.5 --block_bytes 64KiB --clients 1 --threads 2 \
  --keys 64 --capacity_bytes 256MiB get --json "$dir/get.json"
expect "$dir/get.out" 'UCX_TLS=tcp; network namespaces kvf[0-9]+-0-\*'
expect "$dir/get.out" '^  kvfabric +get '
expect "$dir/get.out" '^per-node balance'
if command -v redis-server >/dev/null || [ -x /usr/bin/redis-server ]; then
  expect "$dir/get.out" '^  redis +get '
  expect "$dir/get.out" 'ratio kvfabric/redis get'
  expect "$dir/get.out" 'a host of its own'
fi
if command -v ucx_perftest >/dev/null; then
  expect "$dir/get.out" 'ratio kvfabric/ucx_perftest tag_bw get'
fi
grep -q '"netns":true' "$dir/get.json" || fail "get.json lacks netns:true"

run cluster "$cluster_bench" --netns --agents 2 --seconds 0.3 --threads 1 --size 65536
expect "$dir/cluster.out" '^hosts apart: network namespaces'
expect "$dir/cluster.out" '^coherency '
expect "$dir/cluster.out" '^lookup of a 128-block prompt'
expect "$dir/cluster.out" '^put +1 '
expect "$dir/cluster.out" '^get +1 '
expect "$dir/cluster.out" 'tag_bw / tag_bw'
cat "$dir/get.out" "$dir/cluster.out"
echo "PASS"
