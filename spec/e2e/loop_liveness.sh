#!/usr/bin/env bash
# End-to-end liveness of `neuronbus run`'s loop (docs/cli.md, "the loop's
# bounds"): agents that spend 50 ms and 300 ms of CPU per tick (timed and
# free-running) and a slow sink with spikes waiting. SIGTERM must end the
# run within the documented bound (a 10 ms slice plus the tick running,
# plus the drain when spikes wait), --for must end on time, --stats lines
# must keep coming, and the skipped overdue ticks are counted. Ends with
# "N passed, M failed".
set -u
top=$(cd "$(dirname "$0")/../.." && pwd)
build=${NB_BUILD:-$top/build/default}
nb=$build/neuronbus
fx=$top/spec/fixtures/loop
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$top" || exit 1
. "$top/spec/e2e/lib.bash"
need "$nb"

ms() { echo $(( $(date +%s%N) / 1000000 )); }
SLACK=400 # ms: process exit, final statistics, a loaded 2-core machine

# topo NAME TICK 'NEURONS': writes $work/NAME.lua.
topo() {
  cat >"$work/$1.lua" <<EOT
return { name = "$1", tick = "$2", neurons = { $3 } }
EOT
}

# term NAME TICK_MS [DRAIN_MS]: runs $work/NAME.lua for 1.5 s, sends
# SIGTERM and checks the exit came within 10 ms + TICK_MS + DRAIN_MS +
# SLACK.
term() {
  local name=$1 tick=$2 drain=${3:-0}
  "$nb" run "$work/$name.lua" --stats=json >"$work/out" 2>"$work/err" &
  local pid=$!
  sleep 1.5
  local t0; t0=$(ms)
  kill -TERM "$pid"
  wait "$pid"; local rc=$?
  local took=$(( $(ms) - t0 )) bound=$(( 10 + tick + drain + SLACK ))
  echo "# $name: SIGTERM to exit $took ms (bound $bound ms)"
  if [ "$rc" -eq 0 ] && [ "$took" -le "$bound" ] &&
     grep -q '"final":true' "$work/out"; then
    ok "$name: SIGTERM served in $took ms <= $bound"
  else
    not_ok "$name: SIGTERM served in $took ms (rc $rc), bound $bound"
  fi
}

for hog in 50 300; do
  topo "hog$hog" 1ms "hog = { script = '$fx/hog.lua', threshold = 0, refractory = 0, config = { ms = $hog } },
    beat = { script = '$top/spec/fixtures/isolation/beat.lua', threshold = 0, refractory = 0, config = { to = 'tally', batch = 1 } },
    tally = { script = '$top/spec/fixtures/isolation/count.lua', refractory = 0 }"
  term "hog$hog" "$hog"
  check "hog$hog: skipped overdue ticks reported" \
    grep -q 'the loop is behind' "$work/err"
  check "hog$hog: skipped ticks in the statistics" \
    grep -q '"final":true.*"ticks_skipped":[1-9]' "$work/out"
  topo "free$hog" free "hog = { script = '$fx/hog.lua', threshold = 0, refractory = 0, config = { ms = $hog } }"
  term "free$hog" "$hog"
done

# --for and --stats with a 300 ms tick: the run ends on time and a
# statistics line comes about every second.
t0=$(ms)
"$nb" run "$work/hog300.lua" --for 2.5s --stats=json >"$work/out" 2>"$work/err"
took=$(( $(ms) - t0 ))
echo "# --for 2.5s with a 300 ms tick: $took ms"
# (the process start and the agents' init come on top of --for)
if [ "$took" -le $(( 2500 + 300 + 10 + SLACK + 300 )) ]; then
  ok "--for 2.5s ends on time ($took ms)"
else
  not_ok "--for 2.5s ended after $took ms"
fi
n=$(grep -c '"final":false' "$work/out")
check "--stats lines keep coming ($n periodic lines in 2.5 s)" [ "$n" -ge 2 ]

# A slow sink (100 ms per spike) fed 2 spikes a tick (its batch: a 200 ms
# entry): SIGTERM stops the loop within the tick running, and the drain
# delivers for at most --drain.
topo slow 1ms "feed = { script = '$top/spec/fixtures/isolation/beat.lua', threshold = 0, refractory = 0, config = { to = 'sink', batch = 2 } },
  sink = { script = '$fx/slowsink.lua', refractory = 0, config = { ms = 100 } }"
"$nb" run "$work/slow.lua" --drain 500ms >"$work/out" 2>"$work/err" &
pid=$!
sleep 1.5
t0=$(ms)
kill -TERM "$pid"
wait "$pid"; rc=$?
took=$(( $(ms) - t0 ))
echo "# slow sink: SIGTERM to exit $took ms"
# the tick running, then the drain and the tick running at its end
bound=$(( 10 + 200 + 500 + 200 + SLACK ))
if [ "$rc" -eq 0 ] && [ "$took" -le "$bound" ]; then
  ok "slow sink: SIGTERM served in $took ms (bound $bound)"
else
  not_ok "slow sink: SIGTERM served in $took ms (rc $rc)"
fi

# The default memory cap (256 MB): an agent keeping 64 MB more per tick is
# stopped by it with a clear report; memory = false lifts it.
topo grow 20ms "grow = { script = '$fx/grow.lua', threshold = 0, refractory = 0, restart = { max = 1, backoff = '10ms' } }"
"$nb" run "$work/grow.lua" --for 3s >"$work/out" 2>"$work/err"
check "the default cap stops a 64 MB/tick leak with a report" \
  grep -q 'failed in tick: memory limit 256 MB exceeded' "$work/err"
check "the leak is restarted, then stopped" \
  grep -q 'stopped (memory limit in tick' "$work/err"
topo grow 20ms "grow = { script = '$fx/grow.lua', threshold = 0, refractory = 0, memory = false }"
"$nb" run "$work/grow.lua" --ticks 6 >"$work/out" 2>"$work/err"
check "memory = false runs uncapped (384 MB held)" \
  grep -q 'grow: holds 384 MB' "$work/err"

finish
