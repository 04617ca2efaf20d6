#!/usr/bin/env bash
# Three neuronbus processes joined through one nats-server (their own):
#   - pairs in a ring, a -> b -> c -> a: each gen fires N spikes (default
#     1,000,000) to the next runtime's gen (remote = "nats://NEXT/gen") and
#     checks the N it receives: count, order, every payload byte
#     (spec/fixtures/tcp/gen.lua);
#   - a region broadcast: a's bcast fires M spikes to the region "cortex"
#     with nb:fire_region (spec/fixtures/nats/region.lua), once nb:region
#     finds the three listeners (the cards arrived); one publish each
#     reaches the listeners of b (cortex/language) and c (cortex/vision),
#     and a's own listener (cortex/motor) gets them through its axon. Region
#     spikes are at most once: each listener's count plus what its runtime
#     reports dropped is M, and what arrived is in order.
# Ends with "N passed, M failed".
source "$(dirname "$0")/nats_lib.bash"
N=${NB_NATS_RING_SPIKES:-1000000}
M=${NB_NATS_REGION_SPIKES:-5000}
nats_start
declare -A next=([a]=b [b]=c [c]=a) area=([a]=motor [b]=language [c]=vision)
for s in a b c; do
  extra=""
  [ $s = a ] && extra="bcast = { script = \"$top/spec/fixtures/nats/region.lua\", threshold = 0, refractory = 0,
      config = { count = $M, path = \"cortex\", per_tick = 8, label = \"a\", members = 3 } },"
  gen_manifest "$work/$s.lua" $s "arena = { size = \"128MB\" },
    nats = { url = \"$(nats_url)\", cluster = \"three\" }," \
    "gen = { script = \"$fx/gen.lua\", threshold = 0, refractory = 0,
      config = { to = \"far\", count = $N, expect = $N, per_tick = 1024, label = \"$s\" } },
     far = { remote = \"nats://${next[$s]}/gen\" },
     listen = { script = \"$top/spec/fixtures/nats/region.lua\", regions = { \"cortex/${area[$s]}\" },
       config = { label = \"$s-listen\" } },
     $extra"
done
# The broadcast starts once b and c are there: a starts last.
start_nb b "$work/b.lua" --stats=json --no-watch
start_nb c "$work/c.lua" --stats=json --no-watch
wait_for "$work/c.err" "peer 'b' joined" 20 || bail "b and c see each other"
t0=$(date +%s%N)
start_nb a "$work/a.lua" --stats=json --no-watch
ok_all=1
for s in a b c; do wait_for "$work/$s.out" "$s: received all $N" 120 || ok_all=0; done
t1=$(date +%s%N)
check "the ring: each runtime received all $N from the previous one (in $(awk -v d=$((t1 - t0)) 'BEGIN { printf "%.2f", d / 1e9 }') s)" test "$ok_all" -eq 1
check "a's region broadcast went out ($M)" wait_for "$work/a.out" "a: region sent=$M" 30
sleep 1
for s in a b c; do stop_nb $s; done
for s in a b c; do
  check "$s: ring: fired $N, received $N in order, payloads intact" \
    test "$(summary $s fired)" = "$N" -a "$(summary $s received)" = "$N" -a "$(summary $s order_errors)" = 0 -a "$(summary $s payload_errors)" = 0
  read -r sent acked lost < <(stat $s link.sent link.acked link.lost | tr '\n' ' ')
  check "$s: its link to ${next[$s]}: sent $sent, acked $acked, lost $lost" \
    test "$sent" = "$N" -a "$acked" = "$N" -a "$lost" = 0
  got=$(sed -n "s/^$s-listen: region received=\([0-9]*\).*/\1/p" "$work/$s.out")
  ord=$(sed -n "s/^$s-listen: region .*order_errors=\([0-9]*\).*/\1/p" "$work/$s.out")
  drop=0
  [ $s != a ] && drop=$(stat $s nats.region_dropped)
  check "$s: its listener got $got of the $M region spikes (+ $drop reported dropped = $M), in order" \
    test "$((got + drop))" -eq "$M" -a "$ord" = 0 -a "$got" -gt 0
done
check "a published each region spike once ($(stat a nats.region_out))" test "$(stat a nats.region_out)" = "$M"
nats_stop
finish
