#!/usr/bin/env bash
# kvf-bench smoke test (ctest kvf_bench_smoke_test, labels integration cluster):
# a short put run on a 3-agent local cluster, the same with redis-server hidden
# (the comparison is skipped with a message, not a failure), and the replay of
# a small synthetic hash_ids trace. Each must exit 0 and print its summary.
set -euo pipefail
bench="${1:?usage: $0 path/to/kvf-bench}"
dir="$(mktemp -d)"
trap 'rm -rf "$dir"' EXIT

fail() { echo "FAIL: $*" >&2; exit 1; }
expect() {  # expect FILE PATTERN
  grep -qE -- "$2" "$1" || { cat "$1" >&2; fail "no line matching '$2'"; }
}

common=(--local 3 --seconds 0.3 --block_bytes 64KiB --clients 1 --threads 2 --keys 64
        --capacity_bytes 256MiB --no-compare-perftest)

# put, with Redis when this machine has it.
"$bench" "${common[@]}" put --json "$dir/put.json" >"$dir/put.out" 2>&1 || { cat "$dir/put.out"; fail "put exited $?"; }
expect "$dir/put.out" '^  kvfabric +put '
expect "$dir/put.out" '^per-node balance'
if command -v redis-server >/dev/null || [ -x /usr/bin/redis-server ]; then
  expect "$dir/put.out" '^  redis +put '
  expect "$dir/put.out" 'ratio kvfabric/redis put'
fi
grep -q '"kvfabric":{"put":' "$dir/put.json" || fail "put.json lacks kvfabric.put"

# get with Redis missing: skipped, with a message.
KVF_REDIS_SERVER=/nonexistent/redis-server \
  "$bench" "${common[@]}" get >"$dir/get.out" 2>&1 || { cat "$dir/get.out"; fail "get exited $?"; }
expect "$dir/get.out" '^  kvfabric +get '
expect "$dir/get.out" 'Redis comparison skipped'

# trace: 40 requests over 4 conversations; later turns extend earlier prefixes.
: >"$dir/trace.jsonl"
for turn in 0 1 2 3 4 5 6 7 8 9; do
  for conv in 0 1 2 3; do
    ids=""
    for b in $(seq 0 $((turn + 2))); do ids="$ids${ids:+, }$((conv * 1000 + b))"; done
    echo "{\"timestamp\": $((turn * 100 + conv)), \"input_length\": $(((turn + 3) * 512)), \"output_length\": 16, \"hash_ids\": [$ids]}" >>"$dir/trace.jsonl"
  done
done
"$bench" --local 3 --capacity_bytes 256MiB --block_bytes 16KiB trace "$dir/trace.jsonl" \
  --json "$dir/trace.json" >"$dir/trace.out" 2>&1 || { cat "$dir/trace.out"; fail "trace exited $?"; }
expect "$dir/trace.out" '^hit rate \(blocks\): '
expect "$dir/trace.out" '^bytes moved: '
expect "$dir/trace.out" '^throughput: '
expect "$dir/trace.out" '^  lookup '
grep -q '"hit_rate":' "$dir/trace.json" || fail "trace.json lacks hit_rate"
# Every turn after the first re-reads its conversation's earlier blocks.
hits=$(sed -n 's/^hit rate (blocks): \([0-9.]*\)%.*/\1/p' "$dir/trace.out")
awk -v h="$hits" 'BEGIN { exit !(h > 50) }' || { cat "$dir/trace.out"; fail "hit rate $hits% <= 50%"; }
cat "$dir/put.out" "$dir/trace.out"
echo "PASS"
