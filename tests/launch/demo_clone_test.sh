#!/usr/bin/env bash
# The demo from a user's clone: copy exactly what a clone of this checkout
# holds (the files git tracks, plus untracked ones it does not ignore, so a
# file not yet committed counts) into an empty temp dir with nothing beside
# it, and run the demo's command path there (tools/demo.sh: kvf-launch local
# with 3 agents running kvf-bench trace on the in-repo trace) against the
# binaries already built in BUILD_DIR. Passes when the summary is printed
# with no failures, and when nothing outlives it; `--keep` too.
#   demo_clone_test.sh SOURCE_DIR BUILD_DIR
set -uo pipefail
source "$(dirname "$0")/lib.sh"
src=$1
build=$(cd "$2" && pwd) || fail "no build dir $2"
requests=20

command -v git >/dev/null || { echo "SKIP: no git"; exit 77; }
git -C "$src" rev-parse --is-inside-work-tree >/dev/null 2>&1 ||
  { echo "SKIP: $src is not a git checkout"; exit 77; }

tmp=$(mktemp -d)
pids=""
cleanup() {
  for p in $pids; do kill -9 "$p" 2>/dev/null; done
  rm -rf "$tmp"
}
trap cleanup EXIT
clone=$tmp/clone
mkdir -p "$clone" "$tmp/tmp"
export TMPDIR=$tmp/tmp  # kvf-launch's cluster dirs land in here too
unset KVF_KEEP_CLUSTER_DIR KVF_COORDINATOR KVF_TOKEN KVF_TOKEN_FILE

# The clone's files. A tracked file deleted in the working tree is not there.
(
  cd "$src" || exit 1
  git ls-files -z -co --exclude-standard |
    while IFS= read -r -d '' f; do [[ -e $f || -L $f ]] && printf '%s\0' "$f"; done |
    tar --null -T - -cf -
) | tar -xf - -C "$clone" || fail "exporting the source tree into $clone"
[[ -x $clone/kvf && -x $clone/tools/demo.sh ]] || fail "kvf or tools/demo.sh is not in the clone"
[[ ! -e $tmp/shared && ! -e "$(dirname "$clone")/shared" ]] || fail "a shared/ beside the clone"
[[ -s $clone/data/traces/conversation_trace.jsonl ]] || fail "the trace is not in the clone"

expect() {  # expect OUTPUT REGEX
  grep -Eq -- "$2" <<<"$1" || { echo "$1"; fail "no line matching '$2'"; }
}
expect_summary() {  # expect_summary OUTPUT
  local trace=$clone/data/traces/conversation_trace.jsonl
  expect "$1" "^kvf-bench trace $trace: $requests of [0-9]+ requests"
  expect "$1" '^hit rate \(blocks\): [0-9.]+%'
  expect "$1" '\(.* 0 put failures, 0 get failures\)$'
  expect "$1" '\(0 failed lookups\)$'
  expect "$1" '^latency per request'
}

# The demo as `./kvf demo` runs it after building: the cluster stops at the end.
out=$(cd "$clone" && timeout 150 tools/demo.sh "$build" --max_requests "$requests" 2>&1)
rc=$?
pids=$(pids_of "$out")
echo "$out"
[[ $rc == 0 ]] || fail "tools/demo.sh returned $rc"
expect_summary "$out"
expect "$out" '^kvf-launch: .*kvf-bench exited with 0$'
[[ $(wc -w <<<"$pids") == 4 ]] || fail "want 4 pids (coordinator, 3 agents), got: $pids"
expect_gone $pids
dir=$(sed -n 's/^kvf-launch: cluster up in //p' <<<"$out")
[[ -n $dir && ! -e $dir ]] || fail "cluster dir '$dir' is left behind"

# --keep: the summary, then a cluster that still runs until stopped.
out=$(cd "$clone" && timeout 150 tools/demo.sh "$build" --keep --max_requests "$requests" 2>&1)
rc=$?
pids=$(pids_of "$out")
echo "$out"
[[ $rc == 0 ]] || fail "tools/demo.sh --keep returned $rc"
expect_summary "$out"
[[ $(wc -w <<<"$pids") == 4 ]] || fail "want 4 pids (coordinator, 3 agents), got: $pids"
for p in $pids; do running "$p" || fail "pid $p is not running after --keep"; done
dir=$(sed -n 's/^kvf-launch: cluster up in //p' <<<"$out")
"$build/tools/launch/kvf-launch" stop "$dir" || fail "kvf-launch stop $dir returned $?"
expect_gone $pids
[[ ! -e $dir ]] || fail "$dir is left behind"
echo PASS
