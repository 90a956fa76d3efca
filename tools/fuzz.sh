#!/usr/bin/env bash
# Builds kvfabric's libFuzzer targets with Clang and runs each for a while
# against its checked-in corpus (docs/fuzzing.md).
#
#   tools/fuzz.sh [--minutes N] [--seed] [--minimise] [--build-only] [target...]
#   tools/fuzz.sh --minutes 1 codec trace
#
# Targets (short or full names): protocol (kvf_protocol_fuzz), codec
# (kvf_codec_fuzz), trace (kvf_trace_fuzz), coordinator (kvf_coordinator_fuzz);
# all four when none is named. Each runs N minutes (default 10), one at a
# time, in one process, under `nice`. New inputs that reach new edges are
# merged into tests/fuzz/corpus/<target>/ with -merge=1 -use_counters=0 (edge
# coverage, not hit counts, so the corpus stays small); crashes, timeouts and
# OOMs go to
# build/fuzz/fuzz-work/<target>/crashes/. Prints per target: executions,
# exec/s, coverage, corpus size and crashes; exits 1 if any target crashed.
#
#   --seed        (re)write the seed inputs (the project's own encoders)
#                 first; also done for a corpus directory that is missing or empty
#   --minimise    instead of fuzzing, rebuild each corpus as the smallest set
#                 with the same edge coverage (files named regression-* stay)
#   --build-only  configure and build, run nothing
#
# Environment: KVF_FUZZ_BUILD_DIR (default build/fuzz), KVF_FUZZ_NICE (19),
# KVF_FUZZ_ARGS (extra libFuzzer flags, e.g. "-dict=... -seed=1").
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
build="${KVF_FUZZ_BUILD_DIR:-build/fuzz}"
nice_level="${KVF_FUZZ_NICE:-19}"
corpus_root="tests/fuzz/corpus"
work="$build/fuzz-work"
minutes=10
seed=0
build_only=0
minimise=0
targets=()

usage() { sed -n '2,27p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }

while [ $# -gt 0 ]; do
  case "$1" in
    --minutes) minutes="${2:?--minutes needs a number}"; shift 2 ;;
    --minutes=*) minutes="${1#*=}"; shift ;;
    --seed) seed=1; shift ;;
    --build-only) build_only=1; shift ;;
    --minimise|--minimize) minimise=1; shift ;;
    -h|--help) usage 0 ;;
    -*) echo "fuzz.sh: unknown flag $1" >&2; usage 2 ;;
    *) targets+=("$1"); shift ;;
  esac
done
case "$minutes" in ''|*[!0-9]*|0) echo "fuzz.sh: --minutes wants a whole number >= 1" >&2; exit 2 ;; esac

all=(kvf_protocol_fuzz kvf_codec_fuzz kvf_trace_fuzz kvf_coordinator_fuzz)
[ ${#targets[@]} -eq 0 ] && targets=("${all[@]}")
for i in "${!targets[@]}"; do
  t="${targets[$i]}"
  case "$t" in kvf_*_fuzz) ;; *) t="kvf_${t}_fuzz" ;; esac
  if [[ ! " ${all[*]} " == *" $t "* ]]; then
    echo "fuzz.sh: unknown target ${targets[$i]} (one of: ${all[*]})" >&2
    exit 2
  fi
  targets[i]="$t"
done

# Longest input libFuzzer makes, per target (blobs of a few layouts; request
# sequences of a few dozen calls).
max_len() {
  case "$1" in
    kvf_codec_fuzz) echo 16384 ;;
    kvf_protocol_fuzz) echo 8192 ;;
    *) echo 8192 ;;
  esac
}

for tool in clang clang++ cmake ninja; do
  if ! command -v "$tool" >/dev/null; then
    echo "fuzz.sh: $tool not found (Debian: apt-get install clang cmake ninja-build)" >&2
    exit 1
  fi
done

# The whole build carries coverage (fuzzer-no-link) and ASan+UBSan, so the
# libraries under test are instrumented, not only the harnesses; the ring
# computations are left out of coverage (tests/fuzz/coverage_ignorelist.txt).
cov_flags="-fsanitize=fuzzer-no-link -fsanitize-coverage-ignorelist=$root/tests/fuzz/coverage_ignorelist.txt"
nice -n "$nice_level" cmake -S . -B "$build" -G Ninja \
  -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_C_FLAGS="$cov_flags" -DCMAKE_CXX_FLAGS="$cov_flags" \
  -DKVF_SANITIZE="address;undefined" \
  -DKVF_ENABLE_CUDA=OFF -DKVF_BUILD_BENCH=OFF -DKVF_BUILD_TESTS=ON >/dev/null
nice -n "$nice_level" cmake --build "$build" --target "${targets[@]}" kvf_fuzz_seeds -- -j2
[ "$build_only" -eq 1 ] && exit 0

bin_of() { find "$build/tests" -name "$1" -type f -perm -u+x | head -1; }

# Seeds: the generator's for the new targets, the protocol test's golden
# frames for the frames target.
for t in "${targets[@]}"; do
  dir="$corpus_root/$t"
  if [ "$seed" -eq 1 ] || [ ! -d "$dir" ] || [ -z "$(ls -A "$dir" 2>/dev/null)" ]; then
    mkdir -p "$dir"
    if [ "$t" = kvf_protocol_fuzz ]; then
      for f in tests/protocol/corpus/*.bin; do cp "$f" "$dir/seed-$(basename "$f" .bin)"; done
    else
      "$(bin_of kvf_fuzz_seeds)" "$corpus_root"
    fi
  fi
done

bytes_of() { find "$1" -type f -printf '%s\n' | awk '{ s += $1 } END { print s + 0 }'; }

# Merges inputs from the directories after the first into the first, adding
# only those that reach new edges.
merge_into() {
  local bin="$1" t="$2"
  shift 2
  nice -n "$nice_level" "$bin" -merge=1 -use_counters=0 -timeout=10 -max_len="$(max_len "$t")" \
    "$@"
}

if [ "$minimise" -eq 1 ]; then
  for t in "${targets[@]}"; do
    dir="$corpus_root/$t"
    bin="$(bin_of "$t")"
    before="$(find "$dir" -type f | wc -l) files, $(bytes_of "$dir") bytes"
    fresh="$work/$t/minimised"
    pool="$work/$t/pool"
    rm -rf "$fresh" "$pool"
    mkdir -p "$fresh" "$pool"
    find "$dir" -type f ! -name 'regression-*' -exec mv {} "$pool/" \;
    if ! merge_into "$bin" "$t" "$fresh" "$pool" >"$work/$t/minimise.log" 2>&1; then
      mv "$pool"/* "$dir/"  # leave the corpus as it was
      echo "fuzz.sh: minimising $t failed; see $work/$t/minimise.log" >&2
      exit 1
    fi
    mv "$fresh"/* "$dir/" 2>/dev/null || true
    rm -rf "$pool" "$fresh"
    echo "$t: $before -> $(find "$dir" -type f | wc -l) files, $(bytes_of "$dir") bytes"
  done
  exit 0
fi

export ASAN_OPTIONS="${ASAN_OPTIONS:-abort_on_error=0:detect_leaks=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1}"
summary="$work/summary.txt"
mkdir -p "$work"
printf '%s  %s minutes per target\n' "$(date -u +%Y-%m-%dT%H:%MZ)" "$minutes" >"$summary"
printf '%-22s %12s %8s %7s %8s %7s %9s %8s\n' target execs exec/s cov features files bytes crashes \
  | tee -a "$summary"
status=0
for t in "${targets[@]}"; do
  bin="$(bin_of "$t")"
  dir="$corpus_root/$t"
  scratch="$work/$t"
  rm -rf "$scratch/new" "$scratch/crashes"
  mkdir -p "$scratch/new" "$scratch/crashes"
  log="$scratch/run.log"
  echo "fuzz.sh: $t for $minutes min (log: $log)" >&2
  set +e
  # shellcheck disable=SC2086  # KVF_FUZZ_ARGS is a list of flags
  nice -n "$nice_level" "$bin" -max_total_time=$((minutes * 60)) -timeout=10 -rss_limit_mb=2048 \
    -max_len="$(max_len "$t")" -print_final_stats=1 -artifact_prefix="$scratch/crashes/" \
    ${KVF_FUZZ_ARGS:-} "$scratch/new" "$dir" >"$log" 2>&1
  rc=$?
  set -e
  # Keep only inputs that reach edges the checked-in corpus does not.
  merge_into "$bin" "$t" "$dir" "$scratch/new" >"$scratch/merge.log" 2>&1 || true
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
  ft=$(grep -o 'ft: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
  files=$(find "$dir" -type f | wc -l)
  size=$(bytes_of "$dir")
  crashes=$(find "$scratch/crashes" -type f | wc -l)
  if [ "$rc" -ne 0 ] || [ "$crashes" -gt 0 ]; then
    status=1
    [ "$crashes" -eq 0 ] && echo "fuzz.sh: $t exited $rc without an artifact; see $log" >&2
  fi
  printf '%-22s %12s %8s %7s %8s %7s %9s %8s\n' "$t" "${execs:-?}" "${rate:-?}" "${cov:-?}" \
    "${ft:-?}" "$files" "$size" "$crashes" | tee -a "$summary"
  if [ "$crashes" -gt 0 ]; then
    find "$scratch/crashes" -type f -printf '  %p\n'
    echo "  reproduce: $bin <file>; minimise: $bin -minimize_crash=1 -max_total_time=60 <file>" >&2
  fi
  if [ "$size" -gt $((2 << 20)) ] || [ "$files" -gt 400 ]; then
    echo "fuzz.sh: $dir is over 2 MB or 400 files; re-minimise it (docs/fuzzing.md)" >&2
  fi
done
echo "fuzz.sh: summary in $summary" >&2
exit "$status"
