#!/usr/bin/env bash
# End-to-end: LuaJIT compiled code reaching its state's memory cap
# (docs/isolation.md, "The memory cap and the JIT"). Agents with the JIT
# on grow past their cap in loops LuaJIT compiles, sandboxed and not,
# restarted after each hit: 64 MB a tick of kept strings against the
# default 256 MB cap (the case that crashed), 64 and 16 MB a tick against
# 96 and 80 MB (the loop is compiled before the cap is reached), and, in
# a second runtime, endless loops keeping tables, small strings and ever
# larger strings against 48 MB. Every hit must be an agent error reported
# as the memory limit with the policy applied, the process must never die
# (a refused block in compiled code ends it with SIGSEGV in LuaJIT
# 2.1-20230119, in about two runs of three), and a bystander flow must be
# delivered in full. Ends with "N passed, M failed".
set -u
top=$(cd "$(dirname "$0")/../.." && pwd)
build=${NB_BUILD:-$top/build/default}
nb=$build/neuronbus
fx=$top/spec/fixtures
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$top" || exit 1
. "$top/spec/e2e/lib.bash"
need "$nb"

RUNS=${JIT_MEMCAP_RUNS:-4}
N=50 # bystander spikes, 10 a tick

# agent NAME SCRIPT SANDBOX MEMORY CONFIG: one capped agent, restarted
# 1 ms after each failure.
agent() {
  echo "$1 = { script = '$2', threshold = 0, refractory = 0, sandbox = $3,
    $4 restart = { max = 1000, backoff = '1ms', backoff_max = '1ms' }, config = $5 },"
}
# manifest NAME AGENT...: the agents (lines of agent) beside the bystander.
manifest() {
  echo "return { name = '$1', tick = '10ms', neurons = {"
  shift
  printf '%s\n' "$@"
  echo "beat = { script = '$fx/isolation/beat.lua', threshold = 0, refractory = 0,
      config = { to = 'sink', batch = 10, n = $N } },
    sink = { script = '$fx/isolation/sink.lua', refractory = 0 },
  } }"
}
# Two runtimes, so neither's pace depends on the other's: the growers
# reach their caps in 2 to 5 ticks of 10 ms, while each endless hoarder
# fills its 48 MB in about half a second of one tick (a tick of the
# hoarders lasts over a second). grow16s needs its fifth tick: beside
# the hoarders that took most of a 3 s run, and a slower machine missed it.
manifest growers \
  "$(agent grow64 "$fx/loop/grow.lua" false "" "{ mb = 64 }")" \
  "$(agent grow64s "$fx/loop/grow.lua" true "memory = '96MB'," "{ mb = 64 }")" \
  "$(agent grow16s "$fx/loop/grow.lua" true "memory = '80MB'," "{ mb = 16 }")" \
  >"$work/growers.lua"
manifest hoarders \
  "$(agent tables "$fx/loop/hoard.lua" false "memory = '48MB'," "{ kind = 'tables' }")" \
  "$(agent strings "$fx/loop/hoard.lua" true "memory = '48MB'," "{ kind = 'strings' }")" \
  "$(agent rep "$fx/loop/hoard.lua" true "memory = '48MB'," "{ kind = 'rep' }")" \
  >"$work/hoarders.lua"

crashes=0 short=0 hits=0 deferred=0 lost=0 shorts=""
: >"$work/other"
# one RUN KIND FOR AGENT...: runs KIND's manifest for FOR and counts.
one() {
  local run=$1 kind=$2 for=$3 rc n a
  shift 3
  "$nb" run "$work/$kind.lua" --for "$for" >"$work/out" 2>"$work/err"
  rc=$?
  [ "$rc" -ge 128 ] && crashes=$((crashes + 1))
  # every agent hit its cap (as an agent error) in the run
  for a in "$@"; do
    n=$(grep -c "agent \"$a\" .*failed in tick: memory limit [0-9]* MB exceeded" "$work/err")
    [ "$n" -ge 1 ] || { short=$((short + 1)); shorts="$shorts $a($n, run $run)"; }
    hits=$((hits + n))
  done
  deferred=$((deferred + $(grep -c 'compiled code went past it' "$work/err")))
  grep -q "^sink: got $N\$" "$work/out" || lost=$((lost + 1))
  # No error other than the cap's (grow.lua's on_stop writes to
  # io.stderr, which a sandboxed agent does not have).
  grep 'failed in' "$work/err" | grep -v -e 'memory limit [0-9]* MB exceeded' \
    -e 'failed in on_stop' >>"$work/other"
  echo "# run $run, $kind: exit $rc, $(grep -c 'memory limit [0-9]* MB exceeded' "$work/err") cap hits printed"
}
for run in $(seq 1 "$RUNS"); do
  one "$run" growers 2s grow64 grow64s grow16s
  one "$run" hoarders 4s tables strings rep
done
echo "# $RUNS runs of each: $hits cap hits, $deferred of them in compiled code"
check "no run ended by a signal ($crashes of $((2 * RUNS)) did)" [ "$crashes" -eq 0 ]
check "every agent hit its cap as an agent error in every run${shorts:+ (not:$shorts)}" [ "$short" -eq 0 ]
check "hits in compiled code are among them ($deferred)" [ "$deferred" -gt 0 ]
check "the bystander flow was delivered in full in every run" [ "$lost" -eq 0 ]
check "only memory-limit failures" [ ! -s "$work/other" ]
finish
