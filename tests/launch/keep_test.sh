#!/usr/bin/env bash
# kvf-launch local --keep: the cluster outlives kvf-launch, cluster.env
# reaches it, `kvf-launch stop DIR` stops every daemon and removes DIR.
set -uo pipefail
source "$(dirname "$0")/lib.sh"
launch=$1

out=$(timeout 120 "$launch" local --agents 2 --host_bytes 16M --keep 2>&1)
rc=$?
echo "$out"
pids=$(pids_of "$out")
dir=$(sed -n 's/^kvf-launch: cluster up in //p' <<<"$out")
cleanup() { for p in $pids; do kill -9 "$p" 2>/dev/null; done; }
trap cleanup EXIT
[[ $rc == 0 ]] || fail "kvf-launch --keep returned $rc"
[[ $(wc -w <<<"$pids") == 3 ]] || fail "want 3 pids, got: $pids"
grep -q "kvf-launch stop $dir" <<<"$out" || fail "no stop instructions"
for p in $pids; do running "$p" || fail "pid $p is not running after --keep"; done

source "$dir/cluster.env"
[[ -n $KVF_COORDINATOR && -s $KVF_TOKEN_FILE && -n $KVF_TOKEN ]] || fail "cluster.env is incomplete"
http=$(grep -o 'coordinator  grpc=[^ ]* http=[^ ]*' <<<"$out" | sed 's/.*http=//')
if command -v curl >/dev/null; then
  curl -fsS "http://$http/healthz" >/dev/null || fail "coordinator /healthz at $http"
fi

"$launch" stop "$dir" || fail "kvf-launch stop returned $?"
expect_gone $pids
[[ ! -e $dir ]] || fail "$dir is left behind"
trap - EXIT
echo PASS
