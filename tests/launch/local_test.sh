#!/usr/bin/env bash
# kvf-launch local: a cluster, a client round trip, a command that sees the
# cluster in its environment and whose exit code kvf-launch returns; nothing
# left running afterwards.
set -uo pipefail
source "$(dirname "$0")/lib.sh"
launch=$1

out=$(timeout 150 "$launch" local --agents 2 --host_bytes 64M --client-check -- \
  bash -c 'echo "command sees coordinator=$KVF_COORDINATOR"; test "$(cat "$KVF_TOKEN_FILE")" = "$KVF_TOKEN" || exit 3; exit 7' 2>&1)
rc=$?
echo "$out"
[[ $rc == 7 ]] || fail "kvf-launch returned $rc, want the command's 7"
grep -q '^kvf-launch: client check OK' <<<"$out" || fail "no client check line"
grep -Eq '^command sees coordinator=127\.0\.0\.1:[0-9]+$' <<<"$out" || fail "no KVF_COORDINATOR"
pids=$(pids_of "$out")
[[ $(wc -w <<<"$pids") == 3 ]] || fail "want 3 pids (coordinator, 2 agents), got: $pids"
dir=$(sed -n 's/^kvf-launch: cluster up in //p' <<<"$out")
expect_gone $pids
[[ ! -e $dir ]] || fail "$dir is left behind"

# A reused --dir: the second cluster must not read the first one's ready
# lines (it once did, and its agents dialled the old, dead coordinator).
reuse=$(mktemp -d)
for round in 1 2; do
  out=$(timeout 150 "$launch" local --agents 1 --host_bytes 16M --dir "$reuse" --client-check -- true 2>&1)
  rc=$?
  [[ $rc == 0 ]] || { echo "$out"; rm -rf "$reuse"; fail "--dir reused, round $round: rc $rc, want 0"; }
  expect_gone $(pids_of "$out")
done
[[ -d $reuse ]] || fail "a given --dir must not be removed"
rm -rf "$reuse"

# A command that cannot run: 127, and still nothing left.
out=$(timeout 150 "$launch" local --agents 1 --host_bytes 16M -- /nonexistent/cmd 2>&1)
rc=$?
[[ $rc == 127 ]] || { echo "$out"; fail "missing command: rc $rc, want 127"; }
expect_gone $(pids_of "$out")
# No command: serves until SIGTERM, then stops everything and exits 0.
log=$(mktemp)
"$launch" local --agents 2 --host_bytes 16M >"$log" 2>&1 &
launcher=$!
deadline=$((SECONDS + 120))
until grep -q '^kvf-launch: serving' "$log"; do
  running "$launcher" || { cat "$log"; fail "kvf-launch exited before serving"; }
  ((SECONDS < deadline)) || { kill -9 "$launcher"; cat "$log"; fail "no 'serving' line"; }
  sleep 0.1
done
pids=$(pids_of "$(cat "$log")")
kill -TERM "$launcher"
wait "$launcher"
rc=$?
cat "$log"
rm -f "$log"
[[ $rc == 0 ]] || fail "kvf-launch after SIGTERM: rc $rc, want 0"
[[ $(wc -w <<<"$pids") == 3 ]] || fail "want 3 pids, got: $pids"
expect_gone $pids
echo PASS
