#!/usr/bin/env bash
# Discovery across runtimes through their own nats-server: a router in one
# process finds, by capability (nb:discover("square")), workers that two
# other processes announce in their cards, and asks each (fire_to the name
# discovery gave, "<cortex>/<neuron>"); both answer. Then one worker
# process leaves with SIGTERM (a BYE: seen at once) and the other is
# SIGKILLed (no BYE: seen when its card is three announce periods old,
# here 3 x 200 ms); each time the router's set shrinks within the
# documented time. Ends with "N passed, M failed".
source "$(dirname "$0")/nats_lib.bash"
nats_start
common="nats = { url = \"$(nats_url)\", cluster = \"disc\", announce = \"200ms\" }, tick = \"10ms\","
gen_manifest "$work/r.lua" r "$common" \
  "router = { script = \"$top/spec/fixtures/nats/router.lua\", threshold = 0, refractory = 0 },"
for w in 1 2; do
  gen_manifest "$work/p$w.lua" p$w "$common" \
    "w$w = { script = \"$top/spec/fixtures/nats/worker.lua\", capabilities = { \"square\" },
            config = { label = \"w$w\" } },
     other = { script = \"$top/spec/fixtures/nats/worker.lua\", capabilities = { \"cube\" } },"
done
sed -i 's/tick = "free", //' "$work"/*.lua
start_nb r "$work/r.lua" --stats=json --no-watch
start_nb p1 "$work/p1.lua" --no-watch
start_nb p2 "$work/p2.lua" --no-watch
check "the router finds both workers by capability (and not the cube one)" \
  wait_for "$work/r.out" "router: workers p1/w1,p2/w2$" 20
sleep 1.5
stop_nb p2
t0=$(date +%s%N)
check "p2 left with a BYE: the router sees only p1/w1" wait_for "$work/r.out" "router: workers p1/w1$" 5
t1=$(date +%s%N)
ms=$(( (t1 - t0) / 1000000 ))
check "... within 1 s of its exit (seen $ms ms after it exited)" test "$ms" -lt 1000
t0=$(date +%s%N)
stop_nb p1 KILL
check "p1 SIGKILLed: the router's set empties" wait_for "$work/r.out" "router: workers -$" 5
t1=$(date +%s%N)
ms=$(( (t1 - t0) / 1000000 ))
check "... within 6 announce periods (3 x 200 ms documented, slack for a loaded machine: $ms ms)" test "$ms" -lt 1200
start_nb p2b "$work/p2.lua" --no-watch
check "p2 back: the router finds p2/w2 again" wait_for "$work/r.out" "router: workers p2/w2$" 10
sleep 1
stop_nb p2b
stop_nb r; rc_r=$rc
check "the router ends cleanly (exit $rc_r)" test "$rc_r" -eq 0
ans=$(sed -n 's/^router: answers //p' "$work/r.out")
a1=$(sed -n 's/.*w1=\([0-9]*\).*/\1/p' <<<"$ans"); a2=$(sed -n 's/.*w2=\([0-9]*\).*/\1/p' <<<"$ans")
check "both workers answered the router across runtimes (w1: ${a1:-0}, w2: ${a2:-0})" \
  test "${a1:-0}" -gt 0 -a "${a2:-0}" -gt 0
nats_stop
finish
