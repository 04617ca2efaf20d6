#!/usr/bin/env bash
# Restarts mid-stream through NATS (docs/nats.md, "Guarantees"): a streams
# N numbered spikes to b's gen through its own nats-server.
#   1. b is SIGKILLed after it reported some progress and a new b starts:
#      the new b receives the stream in order from where the old one
#      acknowledged (its first), so first + delivered to the new b == N,
#      the sender's link acked N, lost 0, resent > 0, a peer restart seen.
#   2. the nats-server is stopped mid-stream and started again on the same
#      port a second later: both runtimes reconnect and b receives all N
#      exactly once, in order (acked N, lost 0, reconnects >= 1).
# Ends with "N passed, M failed".
source "$(dirname "$0")/nats_lib.bash"
N=${NB_NATS_KILL_SPIKES:-400000}
nats_start

manifests() { # manifests TAG: a streams to b, through cluster TAG
  gen_manifest "$work/b_$1.lua" b "arena = { size = \"128MB\" },
    nats = { url = \"$(nats_url)\", cluster = \"$1\", announce = \"200ms\", resend = \"200ms\" }," \
    "gen = { script = \"$fx/gen.lua\", threshold = 0, refractory = 0,
      config = { expect = $N, progress = 20000, label = \"b\" } },"
  gen_manifest "$work/a_$1.lua" a "arena = { size = \"128MB\" },
    nats = { url = \"$(nats_url)\", cluster = \"$1\", announce = \"200ms\", resend = \"200ms\" }," \
    "gen = { script = \"$fx/gen.lua\", threshold = 0, refractory = 0,
      config = { to = \"far\", count = $N, per_tick = 512, label = \"a\" } },
     far = { remote = \"nats://b/gen\" },"
}

# 1. the receiving runtime killed and restarted
manifests kill
start_nb b1 "$work/b_kill.lua" --no-watch
start_nb a1 "$work/a_kill.lua" --stats=json --no-watch
wait_for "$work/b1.out" "progress received=60000" 60 || bail "kill: b got 60000 spikes"
stop_nb b1 KILL
seen=$(sed -n 's/.*progress received=\([0-9]*\).*/\1/p' "$work/b1.out" | tail -n 1)
check "kill: b killed mid-stream (it had reported $seen of $N)" test "$seen" -lt "$N"
sleep 0.3
check "kill: the sender survives its peer's death" alive a1
start_nb b2 "$work/b_kill.lua" --no-watch
check "kill: the new b gets the stream up to the last spike" wait_for "$work/b2.out" "b: received all $N" 90
wait_for "$work/a1.out" "a: sent all $N" 30
stop_nb a1; rc_a=$rc
stop_nb b2; rc_b=$rc
check "kill: both end cleanly (exit $rc_a, $rc_b)" test "$rc_a" -eq 0 -a "$rc_b" -eq 0
first=$(summary b2 first); got=$(summary b2 received)
read -r sent acked lost resent reconn queued < <(stat a1 link.sent link.acked link.lost link.resent link.reconnects link.queued | tr '\n' ' ')
echo "# kill: fired $(summary a1 fired); link: sent $sent, acked $acked, resent $resent, lost $lost, peer restarts $reconn; new b: first $first, delivered $got"
check "kill: sent $N, acked $N, lost 0, nothing queued" test "$sent" = "$N" -a "$acked" = "$N" -a "$lost" = 0 -a "$queued" = 0
check "kill: the restart was seen ($reconn) and the unconfirmed sent again ($resent)" test "$reconn" -ge 1 -a "$resent" -gt 0
full=$(summary a1 full)
check "kill: while b was gone the window filled and held a's producer (nb:fire said full $full times)" \
  test "$full" -gt 0
check "kill: the new b's stream is in order, payloads intact" \
  test "$(summary b2 order_errors)" = 0 -a "$(summary b2 payload_errors)" = 0
check "kill: confirmed by the old b ($first) + delivered to the new b ($got) == $N" \
  test $((first + got)) -eq "$N" -a "$first" -gt 0

# 2. the server restarted
manifests srv
start_nb b3 "$work/b_srv.lua" --stats=json --no-watch
start_nb a3 "$work/a_srv.lua" --stats=json --no-watch
wait_for "$work/b3.out" "progress received=60000" 60 || bail "server: b got 60000 spikes"
nats_stop
sleep 1
check "server: both runtimes survive the server's loss" bash -c "kill -0 ${nb_pid[a3]} && kill -0 ${nb_pid[b3]}"
nats_start
check "server: b gets the stream up to the last spike" wait_for "$work/b3.out" "b: received all $N" 90
stop_nb a3; rc_a=$rc
stop_nb b3; rc_b=$rc
check "server: both end cleanly (exit $rc_a, $rc_b)" test "$rc_a" -eq 0 -a "$rc_b" -eq 0
read -r sent acked lost resent reconn < <(stat a3 link.sent link.acked link.lost link.resent link.nats.reconnects | tr '\n' ' ')
echo "# server: link: sent $sent, acked $acked, resent $resent, lost $lost, reconnects to NATS $reconn"
check "server: a reconnected to the server ($reconn) and lost nothing" \
  test "$reconn" -ge 1 -a "$sent" = "$N" -a "$acked" = "$N" -a "$lost" = 0
check "server: b received each spike exactly once, in order, from the start" \
  test "$(summary b3 received)" = "$N" -a "$(summary b3 first)" = 0 -a "$(summary b3 order_errors)" = 0 -a "$(summary b3 payload_errors)" = 0
check "server: b reconnected too" test "$(stat b3 link.nats.reconnects)" -ge 1
nats_stop
finish
