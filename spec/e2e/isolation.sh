#!/usr/bin/env bash
# End-to-end fault isolation through the `neuronbus` command: every memory
# bomb shape under memory = "16MB", every loop shape under budget = "20ms"
# with jit = false, restarts with backoff until restart.max, the stop policy
# and its dead letters in the statistics (JSON and table), the watchdog
# (a 2.5 s entry, JIT on and off, is reported and the run goes on without
# loss; watchdog_exit exits with status 3; one SIGTERM during a long entry
# is served once it returns, a second one exits at once), every sandbox
# denial, a memory bomb and a looping agent in one run, and
# neuronbus check on the new keys. Each topology runs a
# bystander pair (beat -> tally, 3,000 numbered spikes) beside the faulty
# neuron: it must lose nothing. A feeder sends the faulty neuron its
# sequence; the sink "out" prints what arrived. Ends with "N passed, M
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
has() { grep -q -- "$2" "$work/$1"; }
count() { grep -c -- "$2" "$work/$1"; }

# topo NAME VICTIM_SCRIPT 'SEQ' 'VICTIM KEYS': writes $work/NAME.lua.
topo() {
  cat >"$work/$1.lua" <<EOF
return {
  name = "$1", tick = "1ms",
  neurons = {
    feeder = { script = "$fx/feeder.lua", threshold = 0, refractory = 0,
               config = { to = "victim", seq = { $3 } } },
    victim = { script = "$fx/$2", refractory = 0, config = { to = "out" }, $4 },
    out = { script = "$fx/sink.lua", refractory = 0 },
    beat = { script = "$fx/beat.lua", threshold = 0, refractory = 0,
             config = { to = "tally", n = 3000, batch = 10, print = true } },
    tally = { script = "$fx/count.lua", refractory = 0, config = { print = true } },
  },
}
EOF
}
# run NAME ARGS...: runs the topology (bounded), sets $rc.
run() {
  local name=$1; shift
  timeout --kill-after=5 60 "$nb" run "$work/$name.lua" "$@" >"$work/out" 2>"$work/err"
  rc=$?
}
bystander() { has out "^beat: sent 3000$" && has out "^tally: got 3000 bad 0$"; }
# victim FIELD: the value of FIELD in the victim's object of the final JSON.
victim() {
  grep '"final":true' "$work/out" | grep -o '{"id":[0-9]*,"name":"victim"[^}]*}' |
    grep -o "\"$1\":[^,}]*" | cut -d: -f2
}
got() { grep "^out: got " "$work/out" | awk '{print $3}'; }
outs() { grep "^out| " "$work/out" | cut -c6- | tr '\n' ' '; }

need "$nb"

# --- memory bombs (memory = "16MB", restart policy)
topo memory bomb.lua '"1", "table", "2", "concat", "3", "rep", "4", "closures", "5",
  "coroutines", "6", "ffi", "7"' 'memory = "16MB",
  restart = { max = 10, backoff = "10ms", backoff_max = "20ms" }'
run memory --for 4s --stats=json
check "memory: the run ends normally (exit 0)" test "$rc" -eq 0
check "memory: each of the 6 bomb shapes is a memory error naming the neuron" \
  test "$(count err 'agent "victim" (id [0-9]*) failed in on_spike: memory limit 16 MB exceeded')" -eq 6
check "memory: each is followed by a restart with backoff" \
  test "$(count err 'agent "victim" (id [0-9]*): memory limit in on_spike: restarting in')" -eq 6
check "memory: ... and the restarts happen" test "$(count err 'agent "victim" (id [0-9]*): restarted')" -eq 6
check "memory: every other spike arrived, in order" test "$(outs)" = "1 2 3 4 5 6 7 "
check "memory: statistics say 6 restarts, 6 memory errors, running, capped at 16 MB" \
  test "$(victim restarts)/$(victim mem_errors)/$(victim state)/$(victim memory_limit)" = "6/6/\"running\"/16777216"
check "memory: the peak stayed under the cap" test "$(victim memory_peak)" -le $((16 * 1024 * 1024 + 65536))
check "memory: the bystander lost nothing" bystander

# --- loops under a budget (budget = "20ms", jit = false)
topo loops spin.lua '"1", "while", "2", "for", "3", "repeat", "4", "goto", "5", "tail",
  "6", "cfunc", "7", "pcall", "8", "xpcall", "9", "coroutine", "10", "gsub", "11", "sort", "12"' \
  'budget = "20ms", jit = false, restart = { max = 20, backoff = "10ms", backoff_max = "20ms" }'
run loops --for 5s --stats=json
check "loops: the run ends normally (exit 0)" test "$(echo $rc)" -eq 0
check "loops: each of the 11 loop shapes is interrupted by the budget, naming the neuron" \
  test "$(count err 'agent "victim" (id [0-9]*) failed in on_spike: .*budget of 20 ms exceeded')" -eq 10
check "loops: (the first 10 errors are printed; all 11 restarts are announced)" \
  test "$(count err 'agent "victim" (id [0-9]*): budget overrun in on_spike: restarting in')" -eq 11
check "loops: every other spike arrived, in order" test "$(outs)" = "1 2 3 4 5 6 7 8 9 10 11 12 "
check "loops: statistics say 11 budget overruns, 11 restarts, jit off" \
  test "$(victim budget_overruns)/$(victim restarts)/$(victim jit)" = "11/11/false"
check "loops: the bystander lost nothing" bystander

# --- restart until restart.max, then stopped: dead letters
topo restarts bomb.lua '"1", "boom", "2", "boom", "3", "boom", "4", "5"' \
  'on_error = "policy", restart = { max = 2, window = "60s", backoff = "10ms" }'
run restarts --for 2s --stats=json
check "restarts: exit 0" test "$rc" -eq 0
check "restarts: backoff 10 ms, then 20 ms" \
  sh -c "grep -q 'restarting in 10 ms' '$work/err' && grep -q 'restarting in 20 ms' '$work/err'"
check "restarts: the third fault within the window stops it, saying why" \
  has err 'agent "victim" (id [0-9]*): stopped (error in on_spike: 2 restarts within 60 s already, restart.max is 2)'
check "restarts: what came before each fault arrived" test "$(outs)" = "1 2 3 "
check "restarts: the rest are dead letters, in the statistics" \
  test "$(victim dead_letters)/$(victim restarts)/$(victim state)" = "2/2/\"stopped\""
check "restarts: the totals count them" \
  sh -c "grep '\"final\":true' '$work/out' | grep -q '\"dead_letters\":2,\"restarts\":2,\"errors\":3}'"
check "restarts: the bystander lost nothing" bystander

# --- the stop policy, statistics as a table
topo stop bomb.lua '"1", "boom", "2", "3", "4"' 'policy = "stop", on_error = "policy"'
run stop --for 1500ms --stats
row=$(grep '^ *[0-9]* victim ' "$work/out" | tail -n 1)
check "stop: exit 0" test "$rc" -eq 0
check "stop: stopped at its first fault, saying so" \
  has err 'agent "victim" (id [0-9]*): stopped (error in on_spike, policy stop): its inbound spikes are counted as dead letters'
check "stop: the table has the columns dead, restarts, state, memory" has out " dead restarts state    memory"
check "stop: its row shows 3 dead letters, no restart, stopped ($row)" \
  test "$(echo "$row" | awk '{print $10 "/" $11 "/" $12}')" = "3/0/stopped"
check "stop: the total row and the cortex count them" \
  sh -c "grep -q '^ *total .* 3 *0\$' '$work/out' && grep -q 'dead letters 3,' '$work/out'"
check "stop: only the first spike arrived" test "$(outs)" = "1 "
check "stop: the bystander lost nothing" bystander

# --- the watchdog: a long entry that returns, JIT on (default settings)
# on_spike busy-waits 2.5 s: reported at 1 s, 2 s and when it returns;
# nothing is stopped, nothing is lost, the run ends normally.
topo long spin.lua '"1", "wait:2500", "2", "3"' ''
run long --for 4s --stats=json
check "long (JIT on): exit 0" test "$rc" -eq 0
check "long (JIT on): reported past the watchdog, naming neuron, entry, time, JIT on" \
  has err "watchdog: neuron 'victim' has been in on_spike for 1\.[0-9]* s, past its watchdog of 1 s; JIT on, so it cannot be interrupted"
check "long (JIT on): reported again at 2 s" \
  has err "watchdog: neuron 'victim' is still in on_spike after 2\.[0-9]* s (JIT on"
check "long (JIT on): and when it returned, with the time in all" \
  has err "watchdog: neuron 'victim' returned from on_spike after 2\.[5-9][0-9] s in all"
check "long (JIT on): three lines, not a flood" test "$(count err 'watchdog: neuron')" -eq 3
check "long (JIT on): not a fault: no policy applied, no exit" \
  sh -c "! grep -q 'agent \"victim\"\|exiting' '$work/err'"
check "long (JIT on): the flow resumed: every spike arrived, in order" test "$(outs)" = "1 2 3 "
check "long (JIT on): statistics: running, 1 watchdog overrun, 0 dead letters, 0 restarts" \
  test "$(victim state)/$(victim watchdog_overruns)/$(victim dead_letters)/$(victim restarts)" = '"running"/1/0/0'
check "long (JIT on): the bystander lost nothing" bystander

# --- the same with jit = false and no budget
topo long_nojit spin.lua '"1", "wait:2500", "2", "3"' 'jit = false'
run long_nojit --for 4s --stats=json
check "long (JIT off): exit 0" test "$rc" -eq 0
check "long (JIT off): reported, saying JIT off and no budget" \
  has err "watchdog: neuron 'victim' has been in on_spike for 1\.[0-9]* s, past its watchdog of 1 s; JIT off and no budget, so nothing interrupts it"
check "long (JIT off): never advised jit = false" sh -c "! grep -q 'jit = false' '$work/err'"
check "long (JIT off): returned, with the time in all" \
  has err "watchdog: neuron 'victim' returned from on_spike after 2\.[5-9][0-9] s in all"
check "long (JIT off): every spike arrived, in order" test "$(outs)" = "1 2 3 "
check "long (JIT off): running, jit false, 0 dead letters" \
  test "$(victim state)/$(victim jit)/$(victim dead_letters)" = '"running"/false/0'
check "long (JIT off): the bystander lost nothing" bystander

# --- watchdog_exit: the manifest asks to exit when an entry is stuck
topo stuck spin.lua '"1", "while"' 'watchdog = "200ms", watchdog_exit = "1s"'
t0=$(date +%s%N)
run stuck --for 30s --stats=json
t1=$(date +%s%N)
check "watchdog_exit: the process exits with status 3" test "$rc" -eq 3
check "watchdog_exit: the first report announces it" \
  has err "neuron 'victim' has been in on_spike for .*If it is still running at 1 s, the process exits with status 3 (watchdog_exit)"
check "watchdog_exit: the exit names neuron, entry, time, and that the manifest asked" \
  has err "neuron 'victim' has been in on_spike for 1\.[0-9]* s, past its watchdog_exit of 1 s (JIT on: it cannot be interrupted): exiting with status 3, as its manifest asks"
check "watchdog_exit: after about 1 s, not at --for ($(((t1 - t0) / 1000000)) ms)" \
  test $(((t1 - t0) / 1000000)) -lt 5000

# --- signals during a long entry
# waitfor PATTERN: waits up to 10 s for PATTERN in $work/err.
waitfor() {
  local i
  for i in $(seq 200); do grep -q -- "$1" "$work/err" && return 0; sleep 0.05; done
  return 1
}
# One SIGTERM while on_spike busy-waits 2.5 s: said at once, served once
# the entry returns (the run stops, drains, prints its statistics).
topo sig_once spin.lua '"1", "wait:2500", "2"' ''
"$nb" run "$work/sig_once.lua" --for 30s --stats=json >"$work/out" 2>"$work/err" &
pid=$!
waitfor "has been in on_spike for"
kill -TERM "$pid"
wait "$pid"; rc=$?
check "one SIGTERM: exit 0 once the entry returned" test "$rc" -eq 0
check "one SIGTERM: said while stuck, with neuron, entry and time" \
  has err "SIGTERM received while neuron 'victim' has been in on_spike for [0-9.]* s (JIT on: it cannot be interrupted): the runtime stops once the entry returns"
check "one SIGTERM: served after the entry returned" \
  sh -c "grep -n 'returned from on_spike' '$work/err' | cut -d: -f1 > '$work/l1' &&
         grep -n 'SIGTERM received, stopping' '$work/err' | cut -d: -f1 > '$work/l2' &&
         [ \$(cat '$work/l1') -lt \$(cat '$work/l2') ]"
check "one SIGTERM: final statistics printed" has out '"final":true'
check "one SIGTERM: nothing in flight lost (tally got all beat sent)" \
  sh -c "s=\$(sed -n 's/^beat: sent //p' '$work/out'); [ -n \"\$s\" ] &&
         grep -q \"^tally: got \$s bad 0\$\" '$work/out'"
# A second SIGTERM while the entry is stuck (it never returns) exits now.
topo sig_twice spin.lua '"1", "while"' ''
"$nb" run "$work/sig_twice.lua" --for 30s --stats=json >"$work/out" 2>"$work/err" &
pid=$!
waitfor "has been in on_spike for"
kill -TERM "$pid"
waitfor "SIGTERM received while"
t0=$(date +%s%N)
kill -TERM "$pid"
wait "$pid"; rc=$?
t1=$(date +%s%N)
check "two SIGTERMs: exit status 143" test "$rc" -eq 143
check "two SIGTERMs: at once ($(((t1 - t0) / 1000000)) ms)" test $(((t1 - t0) / 1000000)) -lt 1000
check "two SIGTERMs: says so, and that the spikes in flight are lost" \
  has err "SIGTERM received again while neuron 'victim' has been in on_spike for [0-9.]* s (JIT on: it cannot be interrupted): exiting now with status 143; the spikes in flight are lost"

# --- the sandbox: every denial
probes='"ffi", "ffi_global", "debug", "debug_sethook", "jit", "jit_require", "io",
  "os_execute", "os_exit", "os_getenv", "bytecode", "bytecode_reader", "bytecode_loadstring",
  "string_dump", "string_dump_method", "string_meta", "require_module", "require_os",
  "loadlib", "getfenv", "setfenv", "loadfile", "dofile", "newproxy", "gc_stop",
  "math", "load_text", "plain"'
topo sandbox probe.lua "$probes" 'sandbox = true'
run sandbox --for 1500ms --stats=json
check "sandbox: exit 0" test "$rc" -eq 0
for p in ffi ffi_global debug debug_sethook jit jit_require io os_execute os_exit \
         os_getenv bytecode bytecode_reader bytecode_loadstring string_dump \
         string_dump_method string_meta require_module require_os loadlib getfenv \
         setfenv loadfile dofile newproxy gc_stop; do
  check "sandbox: $p is denied" has out "^out| $p denied: "
done
check "sandbox: math and load of text work" \
  sh -c "grep -q '^out| math allowed: 2' '$work/out' && grep -q '^out| load_text allowed: 42' '$work/out'"
check "sandbox: the nb API works (plain echo)" has out "^out| plain$"
check "sandbox: no denial was an agent error" test "$(victim errors)" = 0
check "sandbox: the bystander lost nothing" bystander

# --- a memory bomb and a looping agent together, beside the healthy pair
# bomber (memory = "16MB", restart.max 1): a bomb, a restart, a second bomb
# stops it; spinner (budget = "20ms", jit = false, policy stop): an endless
# loop is interrupted and stops it. What each is sent afterwards is counted
# as its dead letters; the pair beat -> tally runs beside them.
cat >"$work/both.lua" <<EOF
return {
  name = "both", tick = "1ms",
  neurons = {
    feed_bomb = { script = "$fx/feeder.lua", threshold = 0, refractory = 0,
                  config = { to = "bomber", seq = { "1", "table", "2", "concat", "3", "4" } } },
    feed_spin = { script = "$fx/feeder.lua", threshold = 0, refractory = 0,
                  config = { to = "spinner", seq = { "a", "while", "b", "c", "d" } } },
    bomber = { script = "$fx/bomb.lua", refractory = 0, config = { to = "out" },
               memory = "16MB", restart = { max = 1, window = "60s", backoff = "10ms" } },
    spinner = { script = "$fx/spin.lua", refractory = 0, config = { to = "out" },
                budget = "20ms", jit = false, policy = "stop" },
    out = { script = "$fx/sink.lua", refractory = 0 },
    beat = { script = "$fx/beat.lua", threshold = 0, refractory = 0,
             config = { to = "tally", n = 3000, batch = 10, print = true } },
    tally = { script = "$fx/count.lua", refractory = 0, config = { print = true } },
  },
}
EOF
run both --for 3s --stats=json
# neuron NAME FIELD: FIELD of neuron NAME in the final JSON statistics.
neuron() {
  grep '"final":true' "$work/out" | grep -o "{\"id\":[0-9]*,\"name\":\"$1\"[^}]*}" |
    grep -o "\"$2\":[^,}]*" | cut -d: -f2
}
check "both: the process survives both faulty neurons (exit 0)" test "$rc" -eq 0
check "both: the bomb is a memory error naming bomber" \
  has err 'agent "bomber" (id [0-9]*) failed in on_spike: memory limit 16 MB exceeded'
check "both: the loop is interrupted by the budget, naming spinner" \
  has err 'agent "spinner" (id [0-9]*) failed in on_spike: .*budget of 20 ms exceeded'
check "both: bomber restarted once, then stopped at its second bomb" \
  test "$(neuron bomber restarts)/$(neuron bomber state)/$(neuron bomber mem_errors)" = '1/"stopped"/2'
check "both: spinner stopped at its overrun (policy stop, no restart)" \
  test "$(neuron spinner restarts)/$(neuron spinner state)/$(neuron spinner budget_overruns)" = '0/"stopped"/1'
check "both: what they were sent after stopping are dead letters (2 and 3)" \
  test "$(neuron bomber dead_letters)/$(neuron spinner dead_letters)" = "2/3"
check "both: the totals count 5 dead letters and 1 restart" \
  sh -c "grep '\"final\":true' '$work/out' | grep -q '\"dead_letters\":5,\"restarts\":1,'"
check "both: what came before each fault arrived" \
  test "$(grep '^out| ' "$work/out" | cut -c6- | sort | tr '\n' ' ')" = "1 2 a "
check "both: the healthy pair lost nothing" bystander

# --- neuronbus check
cat >"$work/budget_jit.lua" <<EOF
return { neurons = { a = { script = "$fx/count.lua", budget = "20ms", jit = true } } }
EOF
"$nb" check "$work/budget_jit.lua" >"$work/out" 2>"$work/err"; rc=$?
check "check: budget with jit = true is an error naming both keys" \
  sh -c "[ $rc -eq 1 ] && grep -q 'neurons.a.budget: a budget needs jit = false, but neurons.a.jit is true' '$work/out'"
"$nb" run "$work/budget_jit.lua" --ticks 1 >"$work/out" 2>"$work/err"; rc=$?
check "check: run refuses it too" sh -c "[ $rc -eq 1 ] && grep -q 'a budget needs jit = false' '$work/err'"
"$nb" check spec/fixtures/isolation/check_bad.lua >"$work/out" 2>"$work/err"; rc=$?
check "check: a bomb and a sandbox denial at a script's top level are 2 problems, not a crash" \
  sh -c "[ $rc -eq 1 ] && grep -q 'check_bad.lua: 2 problems' '$work/out' &&
         grep -q '^/.*top_bomb.lua: neuron bomb: .*memory limit 1 MB exceeded' '$work/out' &&
         grep -q \"^/.*top_ffi.lua:3: neuron denied: .*module 'ffi' is not available in the sandbox\" '$work/out'"

finish
