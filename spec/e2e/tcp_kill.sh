#!/usr/bin/env bash
# A peer killed (SIGKILL) mid-stream and restarted on the same port, under
# both link policies. The sender a streams N numbered spikes to b's gen;
# b is killed after it reported some progress, and a new b takes over.
#   resend: every spike reaches b exactly as far as b confirmed it; the new
#           b receives the rest in order from where the old one confirmed
#           (first = confirmed), so confirmed + delivered to the new b ==
#           fired == acked, lost 0, resent reported.
#   drop:   what was queued or unconfirmed at the loss is counted lost; the
#           new b receives everything fired after it in order, so
#           (first - lost) + delivered to the new b == acked, and
#           acked + lost == fired.
# Counts are printed from on_stop summaries and the final JSON statistics.
# Ends with "N passed, M failed".
source "$(dirname "$0")/tcp_lib.bash"
N=${NB_TCP_KILL_SPIKES:-400000}

run_policy() {
  local policy=$1 port b_old=b1_$1 b_new=b2_$1 a=a_$1
  port=$(free_port)
  gen_manifest "$work/b_$policy.lua" b "listen = \"tcp://127.0.0.1:$port\", arena = { size = \"128MB\" }," \
    "gen = { script = \"$fx/gen.lua\", threshold = 0, refractory = 0,
      config = { expect = $N, progress = 20000, label = \"b\" } },"
  gen_manifest "$work/a_$policy.lua" a "arena = { size = \"128MB\" },
    peers = { { url = \"tcp://127.0.0.1:$port\", policy = \"$policy\", backoff = { \"20ms\", \"200ms\" } } }," \
    "gen = { script = \"$fx/gen.lua\", threshold = 0, refractory = 0,
      config = { to = \"far\", count = $N, per_tick = 512, label = \"a\" } },
     far = { remote = \"tcp://127.0.0.1:$port/gen\" },"
  start_nb "$b_old" "$work/b_$policy.lua" --no-watch
  port_of "$b_old" >/dev/null || bail "$policy: b announces its port"
  start_nb "$a" "$work/a_$policy.lua" --stats=json --no-watch
  wait_for "$work/$b_old.out" "progress received=60000" 60 || bail "$policy: b got 60000 spikes"
  stop_nb "$b_old" KILL
  local seen
  seen=$(sed -n 's/.*progress received=\([0-9]*\).*/\1/p' "$work/$b_old.out" | tail -n 1)
  check "$policy: b killed mid-stream (it had reported $seen of $N)" test "$seen" -lt "$N"
  sleep 0.3
  check "$policy: the sender survives its peer's death" alive "$a"
  start_nb "$b_new" "$work/b_$policy.lua" --no-watch
  check "$policy: the new b gets the stream up to the last spike" wait_for "$work/$b_new.out" "b: received all $N" 90
  wait_for "$work/$a.out" "a: sent all $N" 30
  stop_nb "$a"; local rc_a=$rc
  stop_nb "$b_new"; local rc_b=$rc
  check "$policy: both end cleanly (exit $rc_a, $rc_b)" test "$rc_a" -eq 0 -a "$rc_b" -eq 0
  local fired first got ord pay sent acked lost resent reconn queued doubt
  fired=$(summary "$a" fired)
  first=$(summary "$b_new" first); got=$(summary "$b_new" received)
  ord=$(summary "$b_new" order_errors); pay=$(summary "$b_new" payload_errors)
  read -r sent acked lost resent reconn queued doubt < <(stat "$a" link.sent link.acked link.lost link.resent link.reconnects link.queued link.in_doubt | tr '\n' ' ')
  echo "# $policy: fired $fired; link: sent $sent, acked $acked, resent $resent, lost $lost, reconnects $reconn, queued $queued, in_doubt $doubt"
  echo "# $policy: old b confirmed up to the new b's first ($first); new b delivered $got (in order: $ord errors, payloads: $pay errors)"
  check "$policy: the sender fired all $N and the link took them all" test "$fired" = "$N" -a "$sent" = "$N"
  check "$policy: acked + lost == fired, nothing queued or in doubt" test $((acked + lost)) -eq "$N" -a "$queued" = 0 -a "$doubt" = 0
  check "$policy: the link reconnected" test "$reconn" -ge 1
  check "$policy: the new b's stream is in order, payloads intact" test "$ord" = 0 -a "$pay" = 0
  if [ "$policy" = resend ]; then
    check "resend: nothing lost" test "$lost" = 0
    check "resend: confirmed by the old b ($first) + delivered to the new b ($got) == fired ($N)" \
      test $((first + got)) -eq "$N" -a "$first" -gt 0
  else
    check "drop: the spikes lost at the kill are counted ($lost)" test "$lost" -gt 0
    check "drop: confirmed by the old b ($((first - lost))) + delivered to the new b ($got) == acked ($acked)" \
      test $((first - lost + got)) -eq "$acked"
  fi
}

run_policy resend
run_policy drop
finish
