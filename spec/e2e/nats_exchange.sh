#!/usr/bin/env bash
# Two neuronbus processes joined through one nats-server (its own, on a
# free loopback port) exchange N spikes in each direction (default
# 1,000,000), free-running, each addressing the other's gen by name
# (remote = "nats://CORTEX/gen"). Every spike is checked by the gen
# fixture (spec/fixtures/tcp/gen.lua): count, order, every payload byte,
# inline, 47..4095-byte and 64 KiB payloads (their bytes travel in the
# batches). The final JSON statistics must account for every spike, show
# batching (many spikes per NATS message) and no resend. Ends with "N
# passed, M failed".
source "$(dirname "$0")/nats_lib.bash"
N=${NB_NATS_SPIKES:-1000000}
nats_start

gen() { # gen LABEL: the gen neuron of one side, firing to the other's
  echo "gen = { script = \"$fx/gen.lua\", threshold = 0, refractory = 0,
    config = { to = \"far\", count = $N, expect = $N, label = \"$1\" } },"
}
for s in a b; do
  o=$([ $s = a ] && echo b || echo a)
  gen_manifest "$work/$s.lua" $s "arena = { size = \"256MB\" },
    nats = { url = \"$(nats_url)\", cluster = \"e2e\" }," \
    "$(gen $s) far = { remote = \"nats://$o/gen\" },"
done
t0=$(date +%s%N)
start_nb a "$work/a.lua" --stats=json --no-watch
start_nb b "$work/b.lua" --stats=json --no-watch
check_both_received "$N" "$t0" 150

for s in a b; do
  check_gen_stream $s "$N"
  read -r sent acked lost received rejected queued transport batches malformed < <(stat $s link.sent link.acked link.lost link.received link.rejected link.queued link.transport link.nats.batches_out link.nats.malformed | tr '\n' ' ')
  check "$s: link stats: sent $sent, acked $acked, received $received, lost $lost, rejected $rejected, queued $queued over $transport" \
    test "$sent" = "$N" -a "$acked" = "$N" -a "$received" = "$N" -a "$lost" = 0 -a "$rejected" = 0 -a "$queued" = 0 -a "$transport" = nats
  check "$s: batched: $batches NATS batches for $N spikes ($((N / (batches > 0 ? batches : 1))) per batch), $malformed malformed" \
    test "$batches" -gt 0 -a "$batches" -lt $((N / 20)) -a "$malformed" = 0
  rtt=$(stat $s link.rtt_ms)
  check "$s: the link measured its round trip (smoothed $rtt ms)" \
    python3 -c 'import sys; r = float(sys.argv[1]); assert 0 < r < 5000, r' "$rtt"
  check "$s: no error logged" bash -c "! grep -q 'error' '$work/$s.err'"
done
nats_stop
finish
