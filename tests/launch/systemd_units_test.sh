#!/usr/bin/env bash
# deploy/systemd: `systemd-analyze verify` on both units (the agent template as
# instance @0), with ExecStart pointed at the built binaries, since verify
# checks that they exist; the example configs parse as their protos.
# Exits 77 (skip) where systemd-analyze is missing.
set -uo pipefail
source "$(dirname "$0")/lib.sh"
src=$1
coordinator=$(realpath "$2")
agent=$(realpath "$3")
units=$src/deploy/systemd

command -v systemd-analyze >/dev/null || { echo "SKIP: no systemd-analyze here"; exit 77; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
sed "s|/usr/local/bin/kvf-coordinator|$coordinator|" "$units/kvf-coordinator.service" \
  >"$tmp/kvf-coordinator.service"
sed "s|/usr/local/bin/kvf-agent|$agent|" "$units/kvf-agent@.service" >"$tmp/kvf-agent@.service"
grep -q "ExecStart=$agent --config" "$tmp/kvf-agent@.service" || fail "agent ExecStart not rewritten"
ln -s "kvf-agent@.service" "$tmp/kvf-agent@0.service"

# verify warns (and fails) about things a container lacks; keep only what is
# about our units.
out=$(cd "$tmp" && SYSTEMD_LOG_LEVEL=notice systemd-analyze verify --man=no \
  "$tmp/kvf-coordinator.service" "$tmp/kvf-agent@0.service" 2>&1)
rc=$?
echo "$out"
ours=$(grep -E 'kvf-(coordinator|agent)' <<<"$out" | grep -v 'Documentation=' || true)
[[ -z $ours ]] || fail "systemd-analyze verify complains about the units: $ours"
if [[ $rc != 0 && -z $(grep -iE 'Failed to (connect|initialize|setup)|Operation not permitted|not booted' <<<"$out") ]]; then
  fail "systemd-analyze verify returned $rc"
fi
for key in Restart=on-failure RestartSec= LimitMEMLOCK=infinity LimitNOFILE= User=kvfabric \
    KillSignal=SIGTERM TimeoutStopSec= CUDA_VISIBLE_DEVICES=%i /etc/kvfabric/agent-%i.textproto; do
  grep -q "$key" "$units/kvf-agent@.service" || fail "kvf-agent@.service lacks $key"
done

# The example configs are valid textprotos of their messages.
if command -v protoc >/dev/null; then
  protoc -I "$src/proto" --encode=kvf.proto.CoordinatorConfig coordinator_config.proto \
    <"$units/coordinator.textproto" >/dev/null || fail "coordinator.textproto"
  protoc -I "$src/proto" --encode=kvf.proto.AgentConfig agent_config.proto \
    <"$units/agent.textproto" >/dev/null || fail "agent.textproto"
else
  echo "note: no protoc; example configs not parsed"
fi
echo PASS
