#!/usr/bin/env bash
# Two neuronbus processes, each with a 16 MB private arena, exchange N large
# payloads each way (47 B .. 8 KiB, every one an arena reference) over one
# TCP link under policy resend. Far more payload bytes cross than the arena
# holds (and far more payloads than the 65,536 that once stopped a receiver
# for good), so this only passes when received payloads are reclaimed: the
# bulk fixture (spec/fixtures/tcp/bulk.lua) checks every byte and the order
# per source, the final JSON statistics must account for every spike
# (delivered == fired == acked, lost 0), each receiver's arena must be back
# to (nearly) all free segments at the end, and each process's RSS (VmRSS)
# must stay flat after warm-up. Ends with "N passed, M failed".
source "$(dirname "$0")/tcp_lib.bash"
N=${NB_TCP_PAYLOADS:-1000000}
RSS_SLACK_KB=${NB_TCP_PAYLOADS_RSS_SLACK_KB:-8192}

gen() { # gen LABEL TARGET: the bulk neuron of one side
  echo "gen = { script = \"$fx/bulk.lua\", threshold = 0, refractory = 0,
    config = { to = \"$2\", count = $N, expect = $N, label = \"$1\", progress = 100000 } },"
}
gen_manifest "$work/b.lua" b 'listen = "tcp://127.0.0.1:0", accept = { policy = "resend" }, arena = { size = "16MB" },' \
  "$(gen b far) far = { remote = \"peer://a/gen\" },"
start_nb b "$work/b.lua" --stats=json --no-watch
port=$(port_of b) || bail "b announces its port"
gen_manifest "$work/a.lua" a "arena = { size = \"16MB\" },
  peers = { { url = \"tcp://127.0.0.1:$port\", policy = \"resend\" } }," \
  "$(gen a far) far = { remote = \"tcp://127.0.0.1:$port/gen\" },"
t0=$(date +%s%N)
start_nb a "$work/a.lua" --stats=json --no-watch

rss() { sed -n 's/^VmRSS:[[:space:]]*\([0-9]*\).*/\1/p' "/proc/${nb_pid[$1]}/status" 2>/dev/null; }
declare -A samples=()
# RSS samples: one each time a receiver reports another 100,000 payloads
# (the first after warm-up), until both received everything.
done_both=0 seen=0 deadline=$((SECONDS + ${NB_TCP_PAYLOADS_LIMIT_S:-200}))
while [ "$SECONDS" -lt "$deadline" ]; do
  got=$(grep -c 'progress received=' "$work/a.out" "$work/b.out" 2>/dev/null | awk -F: '{ s += $2 } END { print s + 0 }')
  if [ "$got" -gt "$seen" ]; then
    seen=$got
    for s in a b; do samples[$s]="${samples[$s]:-} $(rss $s)"; done
  fi
  if grep -q "a: received all $N" "$work/a.out" && grep -q "b: received all $N" "$work/b.out"; then
    done_both=1; break
  fi
  alive a && alive b || break
  sleep 0.2
done
t1=$(date +%s%N)
for s in a b; do samples[$s]="${samples[$s]:-} $(rss $s)"; done
secs=$(awk -v d=$((t1 - t0)) 'BEGIN { printf "%.2f", d / 1e9 }')
secs_int=$(( (t1 - t0) / 1000000000 ))
rate=$(awk -v n="$N" -v d=$((t1 - t0)) 'BEGIN { printf "%.0f", n / (d / 1e9) }')
check "both received all $N large payloads (in ${secs}s: $rate payloads/s each way)" test "$done_both" -eq 1
for s in a b; do
  echo "# $s: VmRSS samples (kB):${samples[$s]}"
  read -r -a v <<<"${samples[$s]}"
  growth=0
  [ "${#v[@]}" -ge 3 ] && growth=$(printf '%s\n' "${v[@]}" | sort -n | tail -n 1) && growth=$((growth - v[0]))
  check "$s: RSS flat after warm-up (${#v[@]} samples, largest growth over the first ${growth} kB < $RSS_SLACK_KB kB)" \
    test "${#v[@]}" -ge 3 -a "$growth" -lt "$RSS_SLACK_KB"
done
stop_nb a; rc_a=$rc
stop_nb b; rc_b=$rc
check "both shut down cleanly on SIGTERM (exit $rc_a, $rc_b)" test "$rc_a" -eq 0 -a "$rc_b" -eq 0

for s in a b; do
  check "$s: fired $N, received $N from one source ($(summary $s bytes) bytes)" \
    test "$(summary $s fired)" = "$N" -a "$(summary $s received)" = "$N" -a "$(summary $s sources)" = 1
  check "$s: every payload in order, every byte right" \
    test "$(summary $s order_errors)" = 0 -a "$(summary $s payload_errors)" = 0 -a "$(summary $s first)" = 0 -a "$(summary $s last)" = $((N - 1))
  read -r sent acked lost received rejected queued doubt errors < <(stat $s link.sent link.acked link.lost link.received link.rejected link.queued link.in_doubt link.errors | tr '\n' ' ')
  check "$s: link stats: sent $sent, acked $acked, received $received, lost $lost, rejected $rejected, queued $queued, in doubt $doubt" \
    test "$sent" = "$N" -a "$acked" = "$N" -a "$received" = "$N" -a "$lost" = 0 -a "$rejected" = 0 -a "$queued" = 0 -a "$doubt" = 0 -a "$errors" = 0
  arena=$(python3 -c '
import json, sys
d = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{\"type\":\"stats\"")]
d = [x for x in d if x.get("final")][-1]["arena"]
print(d["segments"], d["free"], d["active"], d["sealed"], d["in_use"], d["kept"], d["reclaimed"])' "$work/$s.out" 2>/dev/null)
  read -r segs free active sealed in_use kept reclaimed <<<"${arena:-0 0 0 0 0 0 0}"
  echo "# $s: final arena: $segs segments, free $free, active $active, sealed $sealed, in_use $in_use, kept $kept, reclaimed $reclaimed"
  check "$s: arena back to (nearly) all free ($free of $segs free, active $active, sealed $sealed, kept $kept)" \
    test "$segs" -gt 0 -a "$kept" = 0 -a $((active + sealed)) -le 2 -a $((free + active + sealed)) -eq "$segs"
  check "$s: arena segments were reclaimed ($reclaimed) many times over" test "$reclaimed" -gt $((segs * 10))
  check "$s: no error logged" bash -c "! grep -q 'error' '$work/$s.err'"
  # Waits for arena room are counted (pauses) and logged at most every 10 s.
  waits=$(grep -c 'reading paused' "$work/$s.err")
  check "$s: arena waits logged $waits time(s) for $(stat $s link.pauses) pauses (at most one line per 10 s)" \
    test "$waits" -le $((secs_int / 10 + 1))
done
finish
