#!/usr/bin/env bash
# A slow peer: b ticks every 10 ms and its gen takes at most 16 spikes a
# tick (inbox 16), while a's gen fires as fast as it can. Backpressure must
# reach a's producer (its fire reports full and the neuron's full counter
# grows; the link refuses with full; b's link pauses reading) and a's
# memory must stay bounded (VmRSS from /proc, sampled while it runs).
# Nothing is lost: what b received is in order with intact payloads.
# Ends with "N passed, M failed".
source "$(dirname "$0")/tcp_lib.bash"

gen_manifest "$work/b.lua" b 'listen = "tcp://127.0.0.1:0", tick = "10ms",
  axon = { capacity = 64, inbox = 16 },' \
  "gen = { script = \"$fx/gen.lua\", threshold = 0, refractory = 0,
    config = { label = \"b\", large_every = 0, huge_every = 0 } },"
sed -i 's/tick = "free", //' "$work/b.lua" # b keeps its 10 ms tick
start_nb b "$work/b.lua" --stats=json --no-watch
port=$(port_of b) || bail "b announces its port"
gen_manifest "$work/a.lua" a "arena = { size = \"16MB\" },
  peers = { { url = \"tcp://127.0.0.1:$port\", queue = 2048 } }," \
  "gen = { script = \"$fx/gen.lua\", threshold = 0, refractory = 0,
    config = { to = \"far\", count = 100000000, label = \"a\", large_every = 0, huge_every = 0 } },
   far = { remote = \"tcp://127.0.0.1:$port/gen\" },"
start_nb a "$work/a.lua" --stats=json --no-watch

rss() { awk '/^VmRSS:/ { print $2 }' "/proc/${nb_pid[a]}/status" 2>/dev/null; }
sleep 1.5
rss1=$(rss); samples=$rss1; peak=$rss1
for i in $(seq 8); do
  sleep 0.5
  r=$(rss); samples="$samples $r"
  [ "${r:-0}" -gt "$peak" ] && peak=$r
done
rss2=$(rss)
echo "# a's VmRSS (kB) every 0.5 s after 1.5 s: $samples"
check "a's memory stays bounded (peak ${peak} kB < 150000 kB)" test "${peak:-999999}" -lt 150000
check "a's memory stops growing (${rss1} -> ${rss2} kB, < 4 MB more)" test $(( ${rss2:-0} - ${rss1:-0} )) -lt 4096
check "a keeps running" alive a

full1=$(python3 "$fx/stats.py" "$work/a.out" --periodic 2 neuron.gen.full)
full2=$(python3 "$fx/stats.py" "$work/a.out" --periodic -1 neuron.gen.full)
check "a's producer sees full, and more and more ($full1 -> $full2)" test "${full1:-0}" -gt 0 -a "${full2:-0}" -gt "${full1:-0}"
stop_nb a; rc_a=$rc
stop_nb b; rc_b=$rc
check "both shut down on SIGTERM (exit $rc_a, $rc_b)" test "$rc_a" -eq 0 -a "$rc_b" -eq 0
read -r sent acked lost lfull held pend < <(stat a link.sent link.acked link.lost link.full link.held pending_at_close | tr '\n' ' ')
read -r pauses received < <(stat b link.pauses link.received | tr '\n' ' ')
fired=$(summary a fired)
echo "# a fired $fired; a's link: sent $sent, acked $acked, lost $lost (unacknowledged at shutdown), refused full $lfull; held by the proxy $held, still in a's cortex $pend; b's link: received $received, paused $pauses times"
check "a's link refused with full ($lfull times), holding at most its queue" test "$lfull" -gt 0
check "b's link paused reading (TCP pushed back: $pauses)" test "$pauses" -gt 0
check "a's link accounts for every spike it took (sent = acked + lost)" test "$sent" -eq $((acked + lost))
check "every spike a fired is accounted for (fired = sent + held + still in the cortex)" test "$fired" -eq $((sent + held + pend))
check "the slow b got what was acknowledged ($received >= $acked), in order, intact" \
  test "$received" -ge "$acked" -a "$(summary b order_errors)" = 0 -a "$(summary b payload_errors)" = 0
check "a's producer was held back: it fired far fewer than it wanted ($fired)" test "$fired" -lt 10000000
finish
