#!/usr/bin/env bash
# Observability (docs/observability.md): the --http endpoint's /metrics
# parsed by prometheus_client's parser and equal to /stats and to the final
# --stats-file line; /graph and `neuronbus graph` parsed by Graphviz for
# every manifest in agents/ and spec/fixtures; the endpoint under abuse
# (1,000 idle connections, oversized and malformed requests, path
# traversal) while the flow keeps its rate and memory stays bounded;
# SIGUSR1 prints a snapshot and the run goes on to exit 0; neuronbus top
# and plot; bad options; the worker families with --workers 2. Loopback only, port 0 (the port is read from the
# announcement on stderr). Ends with "N passed, M failed".
source "$(dirname "$0")/tcp_lib.bash"
ofx=$top/spec/fixtures/obs

# Debian's prometheus_client is for /usr/bin/python3 (a pyenv one hides it).
py=python3
$py -c 'import prometheus_client' 2>/dev/null || py=/usr/bin/python3
$py -c 'import prometheus_client' 2>/dev/null || bail "python3-prometheus-client is installed"
command -v dot >/dev/null || bail "graphviz (dot) is installed"
command -v gnuplot >/dev/null || bail "gnuplot is installed"

# tally FILE: counts the checker's ok / not ok lines.
tally() {
  local line
  while IFS= read -r line; do
    case $line in
      "ok - "*) ok "${line#ok - }" ;;
      "not ok - "*) not_ok "${line#not ok - }" "$1" ;;
    esac
  done <"$1"
  grep -q '^ok - ' "$1" || not_ok "the checker ran" "$1"
}

# http_port NAME: the port NAME's endpoint announced.
http_port() {
  wait_for "$work/$1.err" "http endpoint on" 20 || return 1
  sed -n 's|.*http endpoint on http://[^ ]*:\([0-9]*\)/.*|\1|p' "$work/$1.err" | head -n 1
}

# --- a settled flow: /metrics against /stats and the final line ---------
start_nb flow "$ofx/flow.lua" --for 6s --stats-file "$work/flow.jsonl" \
  --http 127.0.0.1:0 --no-watch
port=$(http_port flow) || bail "the endpoint announces its port"
check "the endpoint listens on loopback" grep -q "http endpoint on http://127.0.0.1:$port/" "$work/flow.err"
check "log lines carry an ISO timestamp" grep -Eq '^20[0-9]{2}-[01][0-9]-[0-3][0-9]T[0-9:]{8}\.[0-9]{3}Z neuronbus: http endpoint' "$work/flow.err"
sleep 2.5 # the 1,500 requests are sent in ~1 s
$py "$ofx/check_obs.py" metrics "$port" >"$work/metrics.log" 2>&1
tally "$work/metrics.log"
curl -s "http://127.0.0.1:$port/graph" >"$work/live.dot"
check "/graph parses with dot -Tsvg" dot -Tsvg "$work/live.dot" -o "$work/live.svg"
check "/graph draws regions as clusters and weights as labels" \
  grep -q 'cluster_.*' "$work/live.dot"
check "... with the weight of relay -> counter" grep -q 'label="0.4", penwidth' "$work/live.dot"
curl -s "http://127.0.0.1:$port/neurons/relay" >"$work/relay.json"
check "/neurons/relay is its card, counters and version" \
  $py -c 'import json,sys; n=json.load(open(sys.argv[1])); assert n["name"]=="relay" and n["spikes_in"]==1500 and n["capabilities"]==["relay"] and n["regions"]==["obs/core"] and n["version"]==1' "$work/relay.json"
code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/neurons/nobody")
check "/neurons/NOBODY is 404 ($code)" test "$code" = 404
"$nb" top "127.0.0.1:$port" --once --sort busy >"$work/top.out" 2>&1
check "top prints a frame with every neuron" \
  bash -c "grep -q '^NEURON' '$work/top.out' && grep -q '^relay ' '$work/top.out' && grep -q '^counter ' '$work/top.out'"
for i in $(seq 100); do alive flow || break; sleep 0.1; done
stop_nb flow
check "the flow run ends with exit 0 ($rc)" test "$rc" -eq 0
check "the final table counts what /metrics and /stats counted (relay 1500 in, 1500 out)" \
  grep -Eq '^ +[0-9]+ relay +1500 +1500 ' "$work/flow.out"
check "stdout holds the agents' output and no statistics line" \
  bash -c "grep -q '^counter: 1500 spikes' '$work/flow.out' && ! grep -q '\"type\":\"stats\"' '$work/flow.out'"
# The final line: written at exit, it must equal what /stats said once
# the flow had settled (the same counters).
python3 - "$work/flow.jsonl" >"$work/final.log" <<'PY'
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
f = lines[-1]
n = {x["name"]: x for x in f["neurons"]}
print(("ok - " if f["final"] and n["relay"]["spikes_in"] == 1500 and n["counter"]["spikes_in"] == 1500 else "not ok - ") +
      "the final --stats-file line counts the 1,500 spikes through relay and counter")
print(("ok - " if all(l["type"] == "stats" for l in lines) else "not ok - ") + "--stats-file holds statistics lines only")
PY
tally "$work/final.log"
"$nb" plot "$work/flow.jsonl" -o "$work/flow.svg" >"$work/plot.out" 2>&1
check "neuronbus plot exits 0" test $? -eq 0
$py "$ofx/check_obs.py" svg "$work/flow.svg" relay counter "producer -> relay" >"$work/svg.log" 2>&1
tally "$work/svg.log"

# --- abuse while a timed flow runs --------------------------------------
start_nb demo agents/demo.lua --for 9s --stats-file "$work/demo.jsonl" \
  --stats=table,500ms --http 127.0.0.1:0 --no-watch
dport=$(http_port demo) || bail "the demo's endpoint announces its port"
sleep 1.5
$py "$ofx/check_obs.py" abuse "$dport" "${nb_pid[demo]}" >"$work/abuse.log" 2>&1
tally "$work/abuse.log"
# SIGUSR1 during the run: the table on stderr, the run goes on.
kill -USR1 "${nb_pid[demo]}"
wait_for "$work/demo.err" "SIGUSR1: statistics follow" 5
check "SIGUSR1 prints the statistics on stderr" grep -q "== periodic statistics: demo" "$work/demo.err"
sleep 0.5
check "... and the run goes on" alive demo
for i in $(seq 150); do alive demo || break; sleep 0.1; done
stop_nb demo
check "the demo ends with exit 0 after the abuse and SIGUSR1 ($rc)" test "$rc" -eq 0
# 200 requests/s: the router takes each request and each result (400/s).
$py "$ofx/check_obs.py" rates "$work/demo.jsonl" router 300 >"$work/rates.log" 2>&1
tally "$work/rates.log"

# --- graphs of every manifest -------------------------------------------
drawn=0 refused=0 badgraph=()
for m in agents/*.lua $(find spec/fixtures -name '*.lua' | sort); do
  if "$nb" graph "$m" >"$work/g.dot" 2>"$work/g.err"; then
    drawn=$((drawn + 1))
    dot -Tsvg "$work/g.dot" -o /dev/null 2>>"$work/dot.err" || badgraph+=("$m")
  else
    refused=$((refused + 1))
    # A manifest graph refuses must be one check refuses too.
    if "$nb" check "$m" >/dev/null 2>&1; then badgraph+=("$m (refused, check accepts)"); fi
  fi
done
check "neuronbus graph draws $drawn manifests that dot parses ($refused non-manifests refused)" \
  test "${#badgraph[@]}" -eq 0 -a "$drawn" -ge 5
[ "${#badgraph[@]}" -eq 0 ] || printf '    | %s\n' "${badgraph[@]}"
"$nb" graph agents/demo.lua --format svg -o "$work/demo.svg"
check "graph --format svg writes an SVG" grep -q '<svg' "$work/demo.svg"
"$nb" graph agents/demo.lua >"$work/demo.dot"
check "graph groups regions as clusters" test "$(grep -c 'subgraph cluster_' "$work/demo.dot")" -eq 4

# --- bad input ------------------------------------------------------------
bad_cli() {
  local name=$1 pat=$2; shift 2
  "$nb" "$@" >"$work/bad.out" 2>"$work/bad.err"
  local st=$?
  if [ "$st" -eq 1 ] && grep -q -- "$pat" "$work/bad.err"; then ok "$name"
  else not_ok "$name (exit $st)" "$work/bad.err"; fi
}
bad_cli "--stats=bogus is refused" 'stats takes' run agents/demo.lua --stats=bogus
bad_cli "--http with a bad address is refused" 'is not HOST:PORT' run agents/demo.lua --for 1s --http=nowhere:x
taken=$(free_port)
python3 -c 'import socket,time,sys; s=socket.socket(); s.bind(("127.0.0.1",int(sys.argv[1]))); s.listen(); time.sleep(8)' "$taken" &
holder=$!
sleep 0.3
bad_cli "--http on a taken port ends the run" 'cannot listen on' run agents/demo.lua --for 5s --http "127.0.0.1:$taken"
kill "$holder" 2>/dev/null; wait "$holder" 2>/dev/null
bad_cli "--stats-file in a missing folder names it" 'cannot write /nonexistent' run agents/demo.lua --for 1s --stats-file /nonexistent/dir/s.jsonl
bad_cli "top without an endpoint says so" 'is a runtime running' top "127.0.0.1:$(free_port)" --once
bad_cli "graph of a missing file names it" 'nope.lua' graph "$work/nope.lua"
bad_cli "graph --format png is refused" 'format takes dot or svg' graph agents/demo.lua --format png
bad_cli "plot of a file without statistics lines says so" 'no statistics lines' plot "$work/final.log"

# --- two workers: the worker families, one series a worker --------------
start_nb wk agents/demo.lua --for 3s --workers 2 --http 127.0.0.1:0 --no-watch
port=$(http_port wk) || bail "the endpoint of the two-worker run announces its port"
sleep 1.5
curl -s "http://127.0.0.1:$port/metrics" >"$work/wk.prom"
check "with --workers 2, /metrics has both workers ticking and every neuron's worker" \
  $py -c '
import sys
from prometheus_client.parser import text_string_to_metric_families as fams
f = {m.name: m for m in fams(open(sys.argv[1]).read())}
ticks = {s.labels["worker"]: s.value for s in f["neuronbus_worker_ticks"].samples}
busy = {s.labels["worker"]: s.value for s in f["neuronbus_worker_busy_seconds"].samples}
where = {s.labels["neuron"]: s.value for s in f["neuronbus_neuron_worker"].samples}
assert set(ticks) == {"0", "1"} and min(ticks.values()) > 0, ticks
assert min(busy.values()) > 0, busy
assert set(where.values()) == {0.0, 1.0}, where
' "$work/wk.prom"
stop_nb wk
check "the two-worker run ends with exit 0 ($rc)" test "$rc" -eq 0
finish
