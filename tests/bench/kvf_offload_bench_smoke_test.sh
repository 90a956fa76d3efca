#!/usr/bin/env bash
# kvf-offload-bench smoke test (ctest kvf_offload_bench_smoke_test, labels
# integration cluster): a --quick run on a 1-agent local cluster, pages where
# this machine has them (host memory without a GPU). It must exit 0, print the
# table, and write JSON holding every row: {offload, load} x {2 MiB, 8 MiB} x
# {none, fp8}, each as a batch row and a 1-block (fixed-cost) row, each
# measured or marked unsupported.
set -euo pipefail
bench="${1:?usage: $0 path/to/kvf-offload-bench}"
dir="$(mktemp -d)"
trap 'rm -rf "$dir"' EXIT

fail() { echo "FAIL: $*" >&2; exit 1; }
expect() {  # expect FILE PATTERN
  grep -qE -- "$2" "$1" || { cat "$1" >&2; fail "no line matching '$2'"; }
}

"$bench" --quick --json "$dir/offload.json" >"$dir/out" 2>&1 || { cat "$dir/out"; fail "exited $?"; }
expect "$dir/out" '^pages: '
expect "$dir/out" '^peer: '
expect "$dir/out" '^op +block +codec +blocks +GB/s'
for op in offload load; do
  for block in '2 MiB' '8 MiB'; do
    for codec in none fp8; do
      expect "$dir/out" "^$op +$block +$codec +4 "
      expect "$dir/out" "^$op +$block +$codec +1 "
    done
  done
done
expect "$dir/out" '^targets missed: '

json="$dir/offload.json"
grep -q '"bench":"kvf-offload-bench"' "$json" || fail "offload.json lacks the bench name"
for op in offload load; do
  for bytes in 2097152 8388608; do
    for codec in none fp8; do
      for row in batch fixed; do
        pat="\"op\":\"$op\",\"block_bytes\":$bytes,\"codec\":\"$codec\",\"blocks\":[0-9]+,\"row\":\"$row\",(\"gbps\":[0-9.e+-]+|\"unsupported\":)"
        grep -qE -- "$pat" "$json" || { cat "$json" >&2; fail "offload.json lacks $op $bytes $codec $row"; }
      done
    done
  done
done
# Where the rows are measured, ratios are positive numbers.
if grep -q '"gbps":' "$json"; then
  grep -qE '"ratio":[0-9]*\.?[0-9]+(e[+-]?[0-9]+)?,' "$json" || fail "offload.json has no ratio"
fi
cat "$dir/out"
echo "PASS"
