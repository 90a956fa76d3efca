#!/usr/bin/env bash
# mpirun -np 3 kvf-launch mpi --client-check, on loopback only: every rank an
# agent, rank 0 the coordinator, a byte-exact client round trip, clean exit.
set -uo pipefail
source "$(dirname "$0")/lib.sh"
mpirun=$1
launch=$2

# Open MPI in a container: TCP over loopback only, no UCX/openib components
# (the ranks' own UCX use stays in kvf's client), root allowed, 3 ranks on
# however many cores there are.
args=(--oversubscribe --allow-run-as-root --timeout 200
      --mca btl self,tcp --mca btl_tcp_if_include lo --mca oob_tcp_if_include lo
      --mca pml ob1 --mca osc ^ucx --mca btl_base_warn_component_unused 0)
export OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

out=$("$mpirun" "${args[@]}" -np 3 "$launch" mpi --host_bytes 64M --client-check 2>&1)
rc=$?
echo "$out"
[[ $rc == 0 ]] || fail "mpirun returned $rc"
grep -q '^kvf-launch: 3 agent(s) active' <<<"$out" || fail "no '3 agent(s) active' line"
grep -q '^kvf-launch: client check OK' <<<"$out" || fail "no client check line"
grep -q '^kvf-launch: cluster stopped' <<<"$out" || fail "no 'cluster stopped' line"
expect_gone $(pids_of "$out")
echo PASS
