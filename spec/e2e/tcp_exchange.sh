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

check_both_received "$N" "$t0" 120

for s in a b; do
  check_gen_stream $s "$N"
  read -r sent acked lost received rejected queued errors < <(stat $s link.sent link.acked link.lost link.received link.rejected link.queued link.errors | tr '\n' ' ')
  check "$s: link stats: sent $sent, acked $acked, received $received, lost $lost, rejected $rejected, queued $queued" \
    test "$sent" = "$N" -a "$acked" = "$N" -a "$received" = "$N" -a "$lost" = 0 -a "$rejected" = 0 -a "$queued" = 0 -a "$errors" = 0
  rtt=$(stat $s link.rtt_ms)
  check "$s: the link measured its round trip (smoothed $rtt ms)" \
    python3 -c 'import sys; r = float(sys.argv[1]); assert 0 < r < 5000, r' "$rtt"
  check "$s: no error logged" bash -c "! grep -q 'error' '$work/$s.err'"
done
finish
