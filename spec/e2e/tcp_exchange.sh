#!/usr/bin/env bash
# Two neuronbus processes on loopback exchange 1,000,000 spikes in each
# direction over one TCP link, free-running. Every spike is checked by the
# gen fixture (spec/fixtures/tcp/gen.lua): count, order per source, and
# every payload byte, with inline, 47..4095-byte and 64 KiB payloads (the
# large ones cross with their bytes). The final JSON statistics of both
# must account for every spike. Ends with "N passed, M failed".
source "$(dirname "$0")/tcp_lib.bash"
N=${NB_TCP_SPIKES:-1000000}

gen() { # gen LABEL TARGET: the gen neuron of one side
  echo "gen = { script = \"$fx/gen.lua\", threshold = 0, refractory = 0,
    config = { to = \"$2\", count = $N, expect = $N, label = \"$1\" } },"
}
gen_manifest "$work/b.lua" b 'listen = "tcp://127.0.0.1:0", arena = { size = "256MB" },' \
  "$(gen b far) far = { remote = \"peer://a/gen\" },"
start_nb b "$work/b.lua" --stats=json --no-watch
port=$(port_of b) || bail "b announces its port"
gen_manifest "$work/a.lua" a 'arena = { size = "256MB" },' \
  "$(gen a far) far = { remote = \"tcp://127.0.0.1:$port/gen\" },"
t0=$(date +%s%N)
start_nb a "$work/a.lua" --stats=json --no-watch

done_both=0
wait_for "$work/a.out" "a: received all $N" 120 && wait_for "$work/b.out" "b: received all $N" 60 && done_both=1
t1=$(date +%s%N)
secs=$(awk -v d=$((t1 - t0)) 'BEGIN { printf "%.2f", d / 1e9 }')
check "both received all $N spikes (in ${secs}s: $(awk -v n="$N" -v d=$((t1 - t0)) 'BEGIN { printf "%.0f", 2 * n / (d / 1e9) }') spikes/s both ways)" test "$done_both" -eq 1
stop_nb a; rc_a=$rc
stop_nb b; rc_b=$rc
check "both shut down cleanly on SIGTERM (exit $rc_a, $rc_b)" test "$rc_a" -eq 0 -a "$rc_b" -eq 0

for s in a b; do
  check "$s: fired $N, received $N from one source" \
    test "$(summary $s fired)" = "$N" -a "$(summary $s received)" = "$N" -a "$(summary $s sources)" = 1
  check "$s: every spike in order, every payload byte right" \
    test "$(summary $s order_errors)" = 0 -a "$(summary $s payload_errors)" = 0 -a "$(summary $s last)" = $((N - 1))
  check "$s: large ($(summary $s large)) and 64 KiB ($(summary $s huge)) payloads crossed" \
    test "$(summary $s large)" -gt 0 -a "$(summary $s huge)" -gt 0
  read -r sent acked lost received rejected queued errors < <(stat $s link.sent link.acked link.lost link.received link.rejected link.queued link.errors | tr '\n' ' ')
  check "$s: link stats: sent $sent, acked $acked, received $received, lost $lost, rejected $rejected, queued $queued" \
    test "$sent" = "$N" -a "$acked" = "$N" -a "$received" = "$N" -a "$lost" = 0 -a "$rejected" = 0 -a "$queued" = 0 -a "$errors" = 0
  check "$s: no error logged" bash -c "! grep -q 'error' '$work/$s.err'"
done
finish
