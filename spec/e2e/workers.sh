#!/usr/bin/env bash
# Worker threads through the `neuronbus` command (docs/workers.md): a
# neuron that loops forever on worker 1 of two holds only its own spikes:
# the bystander pair beside it (beat on worker 0 -> tally on worker 1,
# 3,000 numbered spikes) loses nothing, the stuck neuron is named on
# stderr and in the statistics, and the run ends (--for, then SIGTERM)
# with the looping thread left behind (its on_stop skipped, said); a
# neuron in a long call when the run ends still gets its on_stop;
# --workers and the manifest keys are checked. Ends with "N passed, M
# failed".
set -u
top=$(cd "$(dirname "$0")/../.." && pwd)
build=${NB_BUILD:-$top/build/default}
nb=$build/neuronbus
fx=$top/spec/fixtures/isolation
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$top" || exit 1
. "$top/spec/e2e/lib.bash"
need "$nb"
has() { grep -q -- "$2" "$work/$1"; }
# stop_within SECONDS PID: waits for the signalled process, killing it
# after SECONDS; returns its exit status.
stop_within() {
  local i
  for i in $(seq 1 $(($1 * 10))); do kill -0 "$2" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$2" 2>/dev/null; then kill -KILL "$2"; fi
  wait "$2"
}

cat >"$work/stuck.lua" <<EOF
return {
  name = "stuck", tick = "1ms", workers = 2,
  neurons = {
    feeder = { script = "$fx/feeder.lua", threshold = 0, refractory = 0,
               worker = 0, config = { to = "victim", seq = { "a", "while", "b" } } },
    victim = { script = "$fx/spin.lua", refractory = 0, worker = 1,
               watchdog = false, config = { to = "out" } },
    out = { script = "$fx/sink.lua", refractory = 0, worker = 0 },
    beat = { script = "$fx/beat.lua", threshold = 0, refractory = 0, worker = 0,
             config = { to = "tally", n = 3000, batch = 10, print = true } },
    tally = { script = "$fx/count.lua", refractory = 0, worker = 1,
              config = { print = true } },
  },
}
EOF

t0=$(date +%s%N)
timeout --kill-after=5 60 "$nb" run "$work/stuck.lua" --for 2s --stats=json >"$work/out" 2>"$work/err"
rc=$?
secs=$(( ($(date +%s%N) - t0) / 1000000000 ))
check "a run with a neuron looping forever on worker 1 ends by itself (exit $rc, ${secs}s)" \
  test "$rc" -eq 0 -a "$secs" -lt 20
check "the looping neuron is named on stderr with its worker" \
  has err 'neuron "victim" (id [0-9]*, worker 1) has been in one call for'
check "the bystander beside it on worker 1 lost nothing (tally: got 3000 bad 0)" \
  has out '^tally: got 3000 bad 0$'
check "what the victim forwarded before it looped arrived" has out '^out| a$'
check "the statistics name it as stuck on worker 1" \
  python3 -c '
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
w = [r for r in rows if r.get("type") == "stats"][-1]["workers"]
assert len(w) == 2 and w[1].get("stuck") == "victim" and w[1]["adopted_ticks"] > 0, w
' "$work/out"
check "the thread still in its call is left behind at exit, said on stderr" \
  has err 'worker thread still inside an agent call at exit'
check "and the neuron whose on_stop could not run is named" \
  has err 'shutdown: neuron "victim" (id [0-9]*) is still in one call on another thread after 2 s: its on_stop is skipped'

# A neuron whose every call is long but returns: the stop waits for the
# call the run ended in, and its on_stop runs (each of three runs, ended
# by --for and by SIGTERM, stops in the middle of one of its calls).
cat >"$work/slow.lua" <<EOF
return {
  name = "slow", tick = "1ms", workers = 2,
  neurons = {
    slow = { script = "$top/spec/fixtures/workers/slow_count.lua", threshold = 0,
             refractory = 0, worker = 1, watchdog = false, config = { tick_ms = 300 } },
    beat = { script = "$fx/beat.lua", threshold = 0, refractory = 0, worker = 0,
             config = { to = "tally", n = 3000, batch = 10, print = true } },
    tally = { script = "$fx/count.lua", refractory = 0, worker = 0,
              config = { print = true } },
  },
}
EOF
stopped=0 skipped=0
for run in 1 2 3; do
  if [ "$run" -lt 3 ]; then
    timeout --kill-after=5 30 "$nb" run "$work/slow.lua" --for 1s >"$work/out" 2>"$work/err"
  else
    "$nb" run "$work/slow.lua" >"$work/out" 2>"$work/err" &
    pid=$!
    sleep 1.1
    kill -TERM "$pid"
    stop_within 20 "$pid"
  fi
  has out '^slow: stopped after [1-9][0-9]* ticks$' && stopped=$((stopped + 1))
  has err 'on_stop is skipped' && skipped=$((skipped + 1))
done
check "a neuron in a long call at the stop still gets its on_stop ($stopped of 3 runs)" \
  test "$stopped" -eq 3 -a "$skipped" -eq 0

# The same run ended by SIGTERM instead of --for.
"$nb" run "$work/stuck.lua" >"$work/out" 2>"$work/err" &
pid=$!
sleep 1.5
kill -TERM "$pid"
t0=$(date +%s%N)
stop_within 20 "$pid"; rc=$?
secs=$(( ($(date +%s%N) - t0) / 1000000000 ))
check "one SIGTERM ends it while the neuron loops (exit $rc, ${secs}s after the signal)" \
  test "$rc" -eq 0 -a "$secs" -lt 10
check "and the bystander still lost nothing" has out '^tally: got 3000 bad 0$'

# Bad worker settings: named, exit 1.
bad() { # bad NAME EXPECTED ARGS...: the command fails with EXPECTED on stderr
  local name=$1 want=$2; shift 2
  "$nb" "$@" >"$work/out" 2>"$work/err"; rc=$?
  check "$name: exit 1 naming it" bash -c "test $rc -eq 1 && cat '$work/out' '$work/err' | grep -qF -- '$want'"
}
bad "--workers 0" '--workers needs a number of worker threads (1 to 256) or "auto", got "0"' run "$work/stuck.lua" --workers 0
bad "--workers lots" 'got "lots"' run "$work/stuck.lua" --workers lots
sed 's/workers = 2,/workers = 1,/' "$work/stuck.lua" >"$work/one.lua"
bad "worker = 1 with workers = 1" 'neurons.tally.worker: 1 is out of range: workers = 1 gives workers 0 to 0' check "$work/one.lua"
sed 's/workers = 2,/workers = "two",/' "$work/stuck.lua" >"$work/two.lua"
bad 'workers = "two"' 'workers: expected a number of workers or "auto"' check "$work/two.lua"
finish
