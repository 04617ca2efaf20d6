#!/usr/bin/env bash
# spec/e2e/agents_demo.sh: runs the example topologies with the neuronbus
# command as `make run` does, and checks what they print: `check` accepts
# them, the demo completes every request it sent (the aggregator's final
# total equals the producer's count) with no agent error, and ping-pong
# plays its ten rounds. Ends with "N passed, M failed". NB_BUILD is the
# build directory (spec/run.sh sets it).
set -u
top=$(cd "$(dirname "$0")/../.." && pwd)
build=${NB_BUILD:-$top/build/default}
nb="$build/neuronbus"
work=$(mktemp -d)
out=$work/out
trap 'rm -rf "$work"' EXIT
cd "$top" || exit 1
. "$top/spec/e2e/lib.bash"

need "$nb"

for m in agents/demo.lua agents/pingpong.lua; do
  if "$nb" check "$m" >"$out" 2>&1; then ok "neuronbus check $m"
  else not_ok "neuronbus check $m: exited $?"; fi
done

# The demo, as `make run` runs it.
timeout --kill-after=5 60 "$nb" run agents/demo.lua --for 3s --stats >"$out" 2>&1
rc=$?
sent=$(sed -n 's/^producer: \([0-9]*\) requests sent.*/\1/p' "$out" | tail -n 1)
got=$(sed -n 's/^aggregator: final \([0-9]*\) results.*/\1/p' "$out" | tail -n 1)
queued=$(sed -n 's/^router: .*, \([0-9]*\) still queued$/\1/p' "$out" | tail -n 1)
if [ "$rc" -ne 0 ]; then
  not_ok "demo runs for 3s: exited $rc"
elif [ -z "$sent" ] || [ -z "$got" ]; then
  not_ok "demo runs for 3s: no producer or aggregator summary"
elif [ "$sent" -lt 300 ]; then
  not_ok "demo runs for 3s: only $sent requests sent (200/s expected)"
elif [ "$sent" != "$got" ] || [ "$queued" != "0" ]; then
  not_ok "demo completes every request: sent $sent, aggregated $got, queued $queued"
elif grep -q 'failed in' "$out"; then
  not_ok "demo runs without agent errors: an agent failed"
elif ! grep -q 'final statistics' "$out"; then
  not_ok "demo prints final statistics: no final statistics"
else
  ok "demo completes all $sent requests in 3s, with statistics"
fi

# Ping-pong: ten rallies in far fewer than 200 ticks.
timeout --kill-after=5 60 "$nb" run agents/pingpong.lua --ticks 200 --stats >"$out" 2>&1
rc=$?
if [ "$rc" -ne 0 ]; then
  not_ok "pingpong runs: exited $rc"
elif ! grep -Eq '^ping: 10 rallies' "$out"; then
  not_ok "pingpong plays ten rounds: no \"ping: 10 rallies\" line"
else
  ok "pingpong plays ten rounds"
fi

finish
