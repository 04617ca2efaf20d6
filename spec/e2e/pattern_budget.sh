#!/usr/bin/env bash
# End-to-end: a backtracking pattern (string.find, match, gmatch, gsub on
# 5,000 bytes, minutes of work in LuaJIT's builtins) in a neuron under
# budget = "20ms", and in a sandboxed one without a budget (watchdog =
# "200ms"), is stopped by its limit, reported as a budget overrun and
# handled by the policy (restart), while a bystander pair (beat -> meter,
# a spike per tick) loses nothing: its rate in the second after the
# attack is at least 90% of its rate in the second before it. Ends with
# "N passed, M failed".
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

# topo NAME FN 'HOSTILE KEYS': writes $work/NAME.lua.
topo() {
  cat >"$work/$1.lua" <<EOT
return {
  name = "$1", tick = "1ms",
  neurons = {
    beat = { script = "$fx/isolation/beat.lua", threshold = 0, refractory = 0,
             config = { to = "meter", batch = 1, print = true } },
    meter = { script = "$fx/lpattern/meter.lua", refractory = 0,
              config = { hostile = "hostile" } },
    hostile = { script = "$fx/lpattern/hostile.lua", refractory = 0,
                config = { fn = "$2" }, restart = { backoff = "10ms" }, $3 },
  },
}
EOT
}
# hostile FIELD: the value of FIELD in the hostile's object of the final JSON.
hostile() {
  grep '"final":true' "$work/out" | grep -o '{"id":[0-9]*,"name":"hostile"[^}]*}' |
    grep -o "\"$1\":[^,}]*" | cut -d: -f2
}
# scenario NAME FN KEYS MESSAGE: runs it 4 s and checks it.
scenario() {
  local name=$1 fn=$2 keys=$3 msg=$4
  topo "$name" "$fn" "$keys"
  timeout --kill-after=5 60 "$nb" run "$work/$name.lua" --for 4s --stats=json \
    >"$work/out" 2>"$work/err"
  local rc=$? line before after
  check "$name: the run ends normally (exit 0)" test "$rc" -eq 0
  check "$name: string.$fn stopped: '$msg', naming the neuron" \
    grep -q "agent \"hostile\" (id [0-9]*) failed in on_spike: $msg" "$work/err"
  check "$name: the policy applies (a budget overrun: restart)" \
    grep -q "agent \"hostile\" (id [0-9]*): budget overrun in on_spike: restarting in 10 ms" "$work/err"
  check "$name: statistics: 1 budget overrun, 1 restart, running" \
    test "$(hostile budget_overruns)/$(hostile restarts)/$(hostile state)" = '1/1/"running"'
  line=$(grep '^meter: got ' "$work/out")
  before=$(echo "$line" | awk '{print $7}'); after=$(echo "$line" | awk '{print $9}')
  echo "# $name: bystander $line"
  check "$name: the bystander lost nothing (beat sent = meter got, in order)" \
    test "$(grep '^beat: sent ' "$work/out" | awk '{print $3}')" = "$(echo "$line" | awk '{print $3}')" -a \
    "$(echo "$line" | awk '{print $5}')" = 0
  check "$name: bystander rate after the attack >= 90% of before ($after vs $before spikes/s)" \
    test "${before:-0}" -gt 100 -a $((${after:-0} * 10)) -ge $((${before:-0} * 9))
}

scenario budget_find find 'budget = "20ms", sandbox = true' "budget of 20 ms exceeded"
scenario budget_gsub gsub 'budget = "20ms"' "budget of 20 ms exceeded"
scenario budget_gmatch gmatch 'budget = "20ms", sandbox = true' "budget of 20 ms exceeded"
scenario sandbox_match match 'sandbox = true, watchdog = "200ms"' \
  "watchdog of 200 ms exceeded in string pattern matching"
finish
