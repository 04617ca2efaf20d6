#!/usr/bin/env bash
# Large payloads for a long time in bounded memory: one source fires
# patterned payloads of 47 B .. 8 KiB (spec/fixtures/payloads) round robin
# to three sinks that check every byte and their order: one copies
# (spike:payload()), one reads in place (spike:view()), one keeps the last
# 16 (spike:keep()) and checks each again when it lets it go. The arena is
# 16 MB; the run carries NB_SOAK_PAYLOADS payloads (default 10 million;
# make soak sets more). Checked: nothing bad, nothing out of order, nothing
# lost; the arena's use and the process's VmRSS flat after warm-up; every
# segment free again at the end; a payload kept past keep_warn is
# reported by the holder's name. Ends with "N passed, M failed".
source "$(dirname "$0")/lib.bash"
top=$(cd "$(dirname "$0")/../.." && pwd)
nb=${NB_BUILD:-$top/build/default}/neuronbus
need "$nb"
work=$(mktemp -d)
# A failure shows the agents' reports and errors, not the JSON lines.
show_output() { [ -s "$work/err" ] && sed 's/^/    | /' "$work/err" | tail -n 30; return 0; }
trap 'kill "$pid" 2>/dev/null; rm -rf "$work"' EXIT
fx=$top/spec/fixtures/payloads
total=${NB_SOAK_PAYLOADS:-10000000}

cat > "$work/soak.lua" <<LUA
return {
  name = "soak", tick = "free", arena = { size = "16MB" },
  neurons = {
    src = { script = "$fx/src.lua", threshold = 0,
            config = { count = $total, burst = 512,
                       targets = { "copy", "view", "keep" } } },
    copy = { script = "$fx/sink.lua", config = { mode = "copy", report = true } },
    view = { script = "$fx/sink.lua", config = { mode = "view", report = true } },
    keep = { script = "$fx/sink.lua", config = { mode = "keep", hold = 16, report = true } },
  },
}
LUA
# NB_RUN_ARGS: extra options (workers_soak.sh: --workers 2)
# shellcheck disable=SC2086
"$nb" run "$work/soak.lua" --stats=json --no-watch ${NB_RUN_ARGS:-} >"$work/stats" 2>"$work/err" &
pid=$!

# Prints field $2 of the last JSON line of $1 (python3 reads it).
last() {
  python3 - "$1" "$2" <<'PY'
import json, sys
lines = [l for l in open(sys.argv[1]) if l.startswith('{"type":"stats"')]
if not lines: print(0); sys.exit()
d = json.loads(lines[-1])
v = d
for k in sys.argv[2].split('.'):
    if isinstance(v, list):
        v = next(x for x in v if x.get("name") == k)
    else:
        v = v.get(k, 0)
print(v)
PY
}
rss() { awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status" 2>/dev/null; }

t0=$(date +%s)
rss_samples="" use_samples="" rss_first="" rss_max=0 use_max=0 n=0
while kill -0 "$pid" 2>/dev/null; do
  sleep 1
  n=$((n + 1))
  got=$(last "$work/stats" totals.spikes_in)
  r=$(rss); u=$(last "$work/stats" arena.in_use)
  # Warm-up: the first 3 s (the arena's segments and the states' heaps
  # reach their working size).
  if [ "$n" -gt 3 ]; then
    [ -z "$rss_first" ] && rss_first=$r
    rss_samples="$rss_samples $r"; use_samples="$use_samples $((u / 1024))"
    [ "${r:-0}" -gt "$rss_max" ] && rss_max=$r
    [ "${u:-0}" -gt "$use_max" ] && use_max=$u
  fi
  [ "${got:-0}" -ge "$total" ] && break
  [ $(( $(date +%s) - t0 )) -gt 600 ] && break
done
secs=$(( $(date +%s) - t0 ))
kill -TERM "$pid" 2>/dev/null
wait "$pid"; rc=$?
echo "# $total payloads in ${secs} s; VmRSS (kB) after warm-up:$rss_samples"
echo "# arena in use (KB):$use_samples"
check "the run ends cleanly on SIGTERM (exit $rc)" test "$rc" -eq 0

for s in copy view keep; do
  echo "# $(grep "^sink $s " "$work/err")"
done
sum=0
for s in copy view keep; do
  got=$(last "$work/stats" "neurons.$s.spikes_in"); sum=$((sum + got))
done
check "every payload arrived ($sum of $total)" test "$sum" -eq "$total"
check "no sink saw a bad byte or a payload out of order" \
  test -z "$(grep -E '^sink .* (bad|out_of_order) [1-9]' "$work/err")"
check "every sink reported" test "$(grep -c '^sink ' "$work/err")" -eq 3
check "VmRSS was sampled after warm-up" test -n "$rss_first"
check "VmRSS flat after warm-up (${rss_first} -> max ${rss_max} kB, < 8 MB more)" \
  test $(( rss_max - ${rss_first:-0} )) -lt 8192
check "arena use bounded (max $((use_max / 1024)) KB of 16 MB)" test "$use_max" -le $((16 << 20))
check "every segment free again at the end (but the loop's active one)" \
  test "$(last "$work/stats" arena.sealed)" -eq 0 -a "$(last "$work/stats" arena.active)" -le 1
check "nothing kept at the end (the keeper let go in on_stop)" \
  test "$(last "$work/stats" arena.kept)" -eq 0

# The leak report: a keeper that never lets go, with keep_warn = 200ms.
cat > "$work/leak.lua" <<LUA
return {
  name = "leak", tick = "1ms",
  neurons = {
    src = { script = "$fx/src.lua", threshold = 0, config = { count = 5, targets = { "hoarder" } } },
    hoarder = { script = "$fx/sink.lua", config = { mode = "keep" }, keep_warn = "200ms" },
  },
}
LUA
"$nb" run "$work/leak.lua" --for 1s --stats --no-watch >"$work/out" 2>"$work/err"
check "a payload kept past keep_warn is reported by its holder's name" \
  grep -q "neuron hoarder: 5 payloads kept longer than keep_warn" "$work/err"
check "the statistics name the oldest holder" grep -q "kept 5 (oldest .* s, by hoarder)" "$work/out"
finish
