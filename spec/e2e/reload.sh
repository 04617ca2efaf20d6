#!/usr/bin/env bash
# End-to-end hot reload through the `neuronbus` command: a topology in a
# temp dir (producer -> relay -> sink, beside beat -> tally) runs while the
# relay's script is replaced by rename (mv of a new file over it), written
# in place, touched without a change, broken and fixed; SIGHUP reloads a
# changed script; a second run with --no-watch reloads only on SIGHUP.
# Every wait is bounded and waits for output, never for time; the checks
# read the process output (the agents print their counts in on_stop).
# Ends with "N passed, M failed".
set -u
top=$(cd "$(dirname "$0")/../.." && pwd)
build=${NB_BUILD:-$top/build/default}
nb=$build/neuronbus
fx=$top/spec/fixtures/reload
work=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
cd "$top" || exit 1
. "$top/spec/e2e/lib.bash"
# wait_for FILE PATTERN [COUNT]: waits (at most 30 s) until FILE has COUNT
# (default 1) lines matching PATTERN; returns 0 when it does.
wait_for() {
  local i n
  for i in $(seq 1 600); do
    n=$(grep -c -- "$2" "$work/$1" 2>/dev/null)
    [ "${n:-0}" -ge "${3:-1}" ] && return 0
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.05
  done
  n=$(grep -c -- "$2" "$work/$1" 2>/dev/null)
  [ "${n:-0}" -ge "${3:-1}" ]
}
# relay_as LABEL: the relay's source with its label set to LABEL.
relay_as() { sed "s/^local LABEL = \"v1\"/local LABEL = \"$1\"/" "$fx/relay.lua"; }
# stop_run: SIGTERM, then waits (bounded) for the process to exit; sets $rc.
stop_run() {
  kill -TERM "$pid" 2>/dev/null
  for _ in $(seq 1 600); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
  if kill -0 "$pid" 2>/dev/null; then kill -9 "$pid"; rc=137; else wait "$pid"; rc=$?; fi
  pid=
}

need "$nb"

cp "$fx"/producer.lua "$fx"/relay.lua "$fx"/sink.lua "$fx"/tally.lua "$work/"
cat >"$work/topo.lua" <<'EOF'
return {
  name = "reload-e2e",
  tick = "1ms",
  neurons = {
    producer = { script = "producer.lua", threshold = 0, refractory = 0,
                 config = { n = 1e9, batch = 20, to = "relay", print = true } },
    relay = { script = "relay.lua", refractory = 0, config = { to = "sink", print = true } },
    sink = { script = "sink.lua", refractory = 0, config = { print = true } },
    beat = { script = "producer.lua", threshold = 0, refractory = 0,
             config = { n = 1e9, batch = 5, to = "tally", print = true } },
    tally = { script = "tally.lua", refractory = 0, config = { print = true } },
  },
  synapses = {
    { from = "producer", to = "relay", weight = 1 },
    { from = "relay", to = "sink", weight = 1 },
    { from = "beat", to = "tally", weight = 1 },
  },
}
EOF
relay=$work/relay.lua

# --- run 1: the watch
"$nb" run "$work/topo.lua" --for 120s --stats=json >"$work/out" 2>"$work/err" &
pid=$!
check "the run starts ticking" wait_for out "producer: ticking"

relay_as v2 >"$work/relay.new"
mv "$work/relay.new" "$relay"
check "a file renamed over the script is reloaded (version 2)" \
  wait_for err 'agent "relay" (id [0-9]*): reloaded .*relay.lua: version 2 (hash [0-9a-f]\{16\})'
check "version 2 handles spikes" wait_for out "relay: version 2 (v2) handles spikes"

relay_as v3 >"$relay"
check "a script written in place is reloaded (version 3)" wait_for err "reloaded .*relay.lua: version 3 "
check "version 3 handles spikes" wait_for out "relay: version 3 (v3) handles spikes"

touch "$relay"
kill -HUP "$pid"
check "a touch without a change reloads nothing, nor does SIGHUP" \
  wait_for err "SIGHUP received, 0 agents reloaded"
relay_as v4 | sed 's/^function agent.on_spike(spike, nb)$/function agent.on_spike(spike, nb/' >"$relay"
check "a broken script is rejected with its file and line; version 3 keeps running" \
  wait_for err 'reload rejected, version 3 keeps running: .*relay.lua:[0-9]*: '
touch "$relay"
kill -HUP "$pid"
check "SIGHUP tries the broken script again (the touch alone does not)" \
  wait_for err "SIGHUP received, 0 agents reloaded" 2
check "... and it is rejected again" wait_for err "reload rejected, version 3 keeps running" 2
relay_as v4 >"$relay"
check "fixing the file reloads again (version 4: neither the touch nor the broken file took a number)" \
  wait_for err "reloaded .*relay.lua: version 4 "
check "version 4 handles spikes" wait_for out "relay: version 4 (v4) handles spikes"

kill -HUP "$pid"
check "SIGHUP after the watch reloaded the fix reloads nothing" \
  wait_for err "SIGHUP received, 0 agents reloaded" 3
stop_run
check "run 1 exits 0 after SIGTERM" test "$rc" -eq 0
check "no version 5 was ever loaded" test -z "$(grep 'version 5' "$work/err")"
check "the broken file was reported twice (its write, SIGHUP), not for the touch" \
  test "$(grep -c 'reload rejected' "$work/err")" -eq 2

sent=$(sed -n 's/^producer: sent \([0-9]*\)$/\1/p' "$work/out")
got=$(sed -n 's/^sink: got \([0-9]*\) bad .*/\1/p' "$work/out")
check "every spike the producer sent reached the sink ($got of $sent)" \
  test -n "$sent" -a "${sent:-0}" -gt 0 -a "$sent" = "$got"
check "each once, in order, old version before new" \
  grep -q "^sink: got $sent bad 0 order 1:v1=[0-9]* 2:v2=[0-9]* 3:v3=[0-9]* 4:v4=[0-9]*$" "$work/out"
bsent=$(sed -n 's/^beat: sent \([0-9]*\)$/\1/p' "$work/out")
check "the bystander pair lost nothing (tally got $bsent)" \
  grep -q "^tally: got ${bsent:-x} bad 0$" "$work/out"
check "nb.state survived: the relay's counts span every version" \
  grep -q "^relay: version 4 handled v1=[0-9]* v2=[0-9]* v3=[0-9]* v4=[0-9]*$" "$work/out"
check "the final JSON statistics show the relay's version, hash and reloads" \
  grep -q '"final":true,.*"name":"relay",[^}]*"version":4,"hash":"[0-9a-f]\{16\}","reloads":3,"reloads_rejected":2}' "$work/out"
check "agent errors: none" \
  grep -q '"final":true,.*"totals":{[^}]*"errors":0}' "$work/out"

# --- run 2: --no-watch, SIGHUP only; the table statistics
cp "$fx/relay.lua" "$relay"
"$nb" run "$work/topo.lua" --for 120s --no-watch --stats >"$work/out" 2>"$work/err" &
pid=$!
check "run 2 starts ticking" wait_for out "producer: ticking"
relay_as h2 >"$relay"
kill -HUP "$pid"
check "SIGHUP reloads the changed script" wait_for err "SIGHUP received, 1 agent reloaded"
check "... as version 2" grep -q "reloaded .*relay.lua: version 2 " "$work/err"
check "version 2 handles spikes" wait_for out "relay: version 2 (h2) handles spikes"
stop_run
check "run 2 exits 0 after SIGTERM" test "$rc" -eq 0
sent=$(sed -n 's/^producer: sent \([0-9]*\)$/\1/p' "$work/out")
check "run 2: every spike arrived, each once, in order" \
  grep -q "^sink: got ${sent:-x} bad 0 order 1:v1=[0-9]* 2:h2=[0-9]*$" "$work/out"
check "the statistics table shows the version" grep -q "relay .* v2/[0-9a-f]\{8\}$" "$work/out"

finish
