#!/usr/bin/env bash
# End-to-end runs of the `neuronbus` command: --help/--version, bad command
# lines, run --ticks/--for/--stats(=json), check on good and broken
# manifests, agent errors reported while the process runs on, and clean
# SIGTERM/SIGINT shutdown. Ends with "N passed, M failed".
set -u
top=$(cd "$(dirname "$0")/../.." && pwd)
build=${NB_BUILD:-$top/build/default}
nb=$build/neuronbus
fx=$top/spec/fixtures/runtime
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$top" || exit 1
. "$top/spec/e2e/lib.bash"
# run_nb ARGS...: runs the command with stdout/stderr captured; sets $rc.
run_nb() { timeout 60 "$nb" "$@" >"$work/out" 2>"$work/err"; rc=$?; }
has() { grep -q -- "$2" "$work/$1"; }

need "$nb"

# --- help and version
run_nb --help
check "--help exits 0 with the usage" test "$rc" -eq 0 -a -n "$(grep 'usage: neuronbus run MANIFEST' "$work/out")"
run_nb --version
check "--version prints the version" test "$rc" -eq 0 -a "$(cat "$work/out")" = "neuronbus 0.1.0"

# --- bad command lines: exit 1 and name the bad argument
bad_cli() {
  local name=$1 want=$2; shift 2
  run_nb "$@"
  if [ "$rc" -eq 1 ] && grep -q -- "$want" "$work/err"; then ok "$name"; else not_ok "$name (exit $rc)"; fi
}
bad_cli "no arguments: usage, exit 1" "usage:"
bad_cli "unknown command is named" 'unknown command "launch"' launch x.lua
bad_cli "run without a manifest" "run: missing MANIFEST" run
bad_cli "--ticks with a bad count is named" '"abc"' run "$fx/stopper.lua" --ticks abc
bad_cli "--ticks without a value" "--ticks needs a value" run "$fx/stopper.lua" --ticks
bad_cli "--for with a bad duration is named" '"5 parsecs"' run "$fx/stopper.lua" --for "5 parsecs"
bad_cli "--stats with a bad format is named" '"xml"' run "$fx/stopper.lua" --stats=xml
bad_cli "an unknown option is named" 'unknown option "--fast"' run "$fx/stopper.lua" --fast
bad_cli "two manifests are refused" 'second one: "b.lua"' check a.lua b.lua
bad_cli "run of a missing manifest names it" "no_such_manifest.lua" run "$work/no_such_manifest.lua" --ticks 1

# --- run --ticks: the final statistics, on_stop, STDP weight in stats
run_nb run "$fx/stopper.lua" --ticks 20
check "run --ticks 20 exits 0" test "$rc" -eq 0
check "run --ticks prints the final statistics table" has out "== final statistics: stopper, tick 2[01],"
check "run --ticks: every spike fired was delivered before on_stop" has out "keeper: on_stop ran after 20 spikes"
check "run --ticks: per-neuron counters" has out "1 keeper  *20 "
w=$(awk '/beat -> keeper/ {print $4}' "$work/out")
check "run --ticks: the STDP synapse's weight moved from 0.5 ($w)" test -n "$w" -a "$w" != "0.500000"

# --- --stats=json: one JSON object per line
run_nb run "$fx/stopper.lua" --ticks 5 --stats=json
json_ok=1
while IFS= read -r line; do
  case $line in
    keeper:*) ;;
    '{"type":"stats",'*'}') ;;
    *) json_ok=0 ;;
  esac
done <"$work/out"
check "--stats=json prints only JSON lines (besides the agents' own output)" test "$json_ok" -eq 1
check "--stats=json final line has totals, neurons and synapse weights" \
  grep -q '"final":true,.*"totals":{"spikes_in":5,.*"neurons":\[{"id":0,"name":"beat".*"synapses":\[{"from":"beat","to":"keeper","weight":' "$work/out"

# --- --for and periodic stats on a free-running topology
run_nb run "$fx/errors.lua" --for 1300ms --stats
check "run --for 1300ms ends by itself with exit 0" test "$rc" -eq 0
check "--stats prints a periodic table every second" has out "== periodic statistics: errors,"
check "an agent error names the neuron and where" has err 'agent "fragile" (id 1) failed in on_spike: .*failing.lua:[0-9]*: kaboom'
check "an agent error comes with a traceback" has err "stack traceback:"
errs=$(awk '$2 == "fragile" {print $6}' "$work/out" | tail -n 1)
check "the process ran on and counted every error ($errs)" test "${errs:-0}" -gt 100
check "only the first 10 errors are printed, then a note" \
  test "$(grep -c 'failed in on_spike' "$work/err")" -eq 10 -a -n "$(grep 'later ones are counted in the statistics' "$work/err")"

# --- check
run_nb check "$fx/stopper.lua"
check "check on a good manifest: exit 0, ok" test "$rc" -eq 0 -a -n "$(grep 'ok (2 neurons, 1 synapses)' "$work/out")"
run_nb check "$fx/broken.lua"
check "check on a broken manifest exits 1" test "$rc" -eq 1
check "check names the key path of each problem" has out 'neurons.a.threshold: expected a number, got "high"'
check "check reports every problem, not just the first" has out 'synapses\[1\].to: unknown neuron "nobody"'
run_nb check "$fx/bad_agent.lua"
check "check loads every script: exit 1 on a broken agent contract" test "$rc" -eq 1
check "check names the script and the reason" has out "^/.*bad_no_on_spike.lua:[0-9]*: neuron a: the returned table has no on_spike function"
check "check names every broken script" has out "^/.*bad_not_table.lua:[0-9]*: neuron b: .*returned a number"
run_nb check "$fx/missing_filter.lua"
check "check finds a custom filter the target does not export" has out 'filtered.lua:[0-9]*: neuron dst: no filters.odd function (.*: synapses\[1\].filters.custom names it)'

# --- the README's command example
run_nb run spec/fixtures/readme/hello.lua --ticks 10 --stats
check "README example: run hello.lua --ticks 10 --stats" test "$rc" -eq 0
check "README example: the greeter's on_stop reports every greeting" has out "greeter: greeted 10 times"
check "README example: the synapse shows in the statistics" has out "caller -> greeter .* stdp"
run_nb check spec/fixtures/readme/hello.lua
check "README example: check hello.lua" has out "check: spec/fixtures/readme/hello.lua: ok (2 neurons, 1 synapses)"

# --- finding the Lua modules: ../../lua beside the binary, or NB_LUA_PATH
mkdir -p "$work/a/b"
cp "$nb" "$work/a/b/neuronbus"
timeout 60 "$work/a/b/neuronbus" check "$fx/stopper.lua" >"$work/out" 2>"$work/err"; rc=$?
check "a binary with no lua/ beside it says which module it cannot find" \
  test "$rc" -eq 1 -a -n "$(grep "module 'neuronbus.manifest' not found" "$work/out")"
NB_LUA_PATH="$work/nowhere:$top/lua" timeout 60 "$work/a/b/neuronbus" check "$fx/stopper.lua" >"$work/out" 2>"$work/err"; rc=$?
check "NB_LUA_PATH (directories) points it at lua/" test "$rc" -eq 0
# (both templates: neuronbus.manifest is a folder, lua/neuronbus/manifest/init.lua)
NB_LUA_PATH="$top/lua/?.lua;$top/lua/?/init.lua" timeout 60 "$work/a/b/neuronbus" run "$fx/stopper.lua" --ticks 3 >"$work/out" 2>"$work/err"; rc=$?
check "NB_LUA_PATH (Lua templates) works for run too" test "$rc" -eq 0 -a -n "$(grep 'keeper: on_stop ran after 3 spikes' "$work/out")"

# --- a neuron's description shows in its card of the statistics
cat >"$work/described.lua" <<EOF
return { name = "described", tick = "free", neurons = {
  greeter = { script = "$top/spec/fixtures/readme/greeter.lua",
              description = 'answers every spike, "politely"' } } }
EOF
run_nb run "$work/described.lua" --ticks 2 --stats
check "a description shows in the statistics table" has out '^  greeter description: answers every spike, "politely"$'
run_nb run "$work/described.lua" --ticks 2 --stats=json
check "a description is a JSON member of its neuron" has out '"name":"greeter",.*"description":"answers every spike, \\"politely\\""'
printf 'return { name = "d", neurons = { a = { script = "%s", description = "two\\nlines" } } }\n' \
  "$top/spec/fixtures/readme/greeter.lua" >"$work/two_lines.lua"
run_nb check "$work/two_lines.lua"
check "a description of two lines is refused, named" has out 'neurons.a.description: one line of text expected'

# --- signals: clean shutdown
for sig in TERM INT; do
  "$nb" run "$fx/stopper.lua" >"$work/out" 2>"$work/err" &
  pid=$!
  sleep 0.6
  kill -"$sig" "$pid"
  timeout 20 tail --pid="$pid" -f /dev/null
  wait "$pid"; rc=$?
  check "SIG$sig: exit 0" test "$rc" -eq 0
  check "SIG$sig: announced" has err "SIG$sig received, stopping"
  check "SIG$sig: on_stop ran after the pending spikes" has out "keeper: on_stop ran after [1-9][0-9]* spikes"
  check "SIG$sig: final statistics printed" has out "== final statistics: stopper"
done

finish
