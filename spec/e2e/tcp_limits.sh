#!/usr/bin/env bash
# Bounded resources per peer (link_limits, docs/links.md#limits): while a
# good peer streams spikes both ways between two `neuronbus` processes at a
# fixed rate, raw sockets (spec/fixtures/tcp/hostile.py, from 127.0.0.2
# and up) attack the listener b, which runs with a descriptor limit of 64:
# a peer declaring 3,000 sources, 2,000 one-shot handshakes, slowloris
# frames sent a byte a second, 300 silent sockets, 1,000 idle handshakes
# up to the descriptor limit, 200 half-sent 1 MiB frames. After each: the
# attack was refused or bounded (counts, peak VmRSS), every refusal line
# appears at most once per address and kind, and the good link's rate is
# at least 90% of what it was before. Then an established link without
# traffic stays up on keepalives while a handshaken but silent peer is
# closed after the idle timeout. About 45 s. Ends with "N passed, M failed".
source "$(dirname "$0")/tcp_lib.bash"
FD_LIMIT=64
LIMITS='link_limits = { handshake_timeout = "1s", frame_timeout = "2s",
  max_pending = 32, pending_per_addr = 8, max_links = 64, links_per_addr = 16,
  proxies_per_peer = 16, rx_buffer = "8MB", keepalive = "300ms",
  idle_timeout = "1500ms" },'

cat >"$work/sink.lua" <<'EOF'
local agent = {}
function agent.on_spike(spike, nb) nb.state.n = (nb.state.n or 0) + 1 end
return agent
EOF
# gen_at NAME TO: a gen neuron firing 10 spikes per 1 ms tick to TO, for
# ever (the rate stays fixed whatever the machine does).
gen_at() {
  echo "gen = { script = \"$fx/gen.lua\", threshold = 0, refractory = 0,
    config = { to = \"$2\", count = 100000000, per_tick = 10, label = \"$1\",
               large_every = 0, huge_every = 0 } },"
}
cat >"$work/b.lua" <<EOF
return { name = "b", tick = "1ms", listen = "tcp://127.0.0.1:0", $LIMITS
  neurons = { $(gen_at b far) far = { remote = "peer://a/gen" },
    sink = { script = "$work/sink.lua", threshold = 0, refractory = 0 } } }
EOF
( ulimit -n "$FD_LIMIT" && exec "$nb" run "$work/b.lua" --stats=json --no-watch ) \
  >"$work/b.out" 2>"$work/b.err" &
nb_pid[b]=$!
port=$(port_of b) || bail "b announces its port"
cat >"$work/a.lua" <<EOF
return { name = "a", tick = "1ms", $LIMITS
  neurons = { $(gen_at a far) far = { remote = "tcp://127.0.0.1:$port/gen" } } }
EOF
start_nb a "$work/a.lua" --stats=json --no-watch
wait_for "$work/a.err" "connected" 20 || bail "a connects to b"
bpid=${nb_pid[b]}

hostile() { timeout 30 python3 "$fx/hostile.py" "$port" "$@"; }
watch() { python3 "$fx/watch.py" "$@"; }
rss_now() { awk '/^VmRSS/ { print $2 }' "/proc/$bpid/status"; }
# rates: sets rb (what b receives from a) and ra (a from b), spikes/s over
# the next 2 s.
rates() {
  watch rate "$work/b.out" a 2 >"$work/rb" & watch rate "$work/a.out" b 2 >"$work/ra"
  wait $!; sleep 0.1
  rb=$(cat "$work/rb") ra=$(cat "$work/ra")
}
# good_rate NAME: the good link carries at least 90% of its rate before
# the attacks, both ways.
good_rate() {
  rates
  echo "# $1: good link $rb/s into b, $ra/s into a (before: $rb0/s, $ra0/s)"
  check "$1: the good link keeps >= 90% of its rate both ways" \
    test $((rb * 10)) -ge $((rb0 * 9)) -a $((ra * 10)) -ge $((ra0 * 9))
}
# lines PATTERN: how many lines of b.err match.
lines() { grep -c -- "$1" "$work/b.err"; }
# at_most_once: no refusal line of the same kind for the same address
# twice (the address, and the reason without digits, make the kind).
at_most_once() {
  grep 'logged once a minute per address' "$work/b.err" |
    sed -E 's/.*\(([0-9.]+):[0-9]+\): /\1 /; s/.*peer ([0-9.]+):[0-9]+: /\1 /; s/[0-9]+ (ms|of|callers|connections|links)/N \1/g; s/descriptor [0-9]+/descriptor N/; s/\(begun [0-9]+ ms ago\)//' |
    sed -E 's/^([0-9.]+) (.{0,60}).*/\1 \2/' | sort | uniq -c | awk '$1 > 1 { bad = 1; print "    twice: " $0 } END { exit bad }'
}

sleep 2
rates; rb0=$rb ra0=$ra
echo "# before the attacks: $rb0 spikes/s into b, $ra0 into a; b VmRSS $(rss_now) KiB"
check "the good link streams (>= 5000/s both ways)" test "$rb0" -ge 5000 -a "$ra0" -ge 5000

# 1. A peer declaring 3,000 sources: 16 proxies (proxies_per_peer), one line.
r0=$(rss_now)
watch rss "$bpid" 2.5 >"$work/peak" & hostile proxies 3000 sink >"$work/h.log"; wait $!
sleep 1.2
echo "# proxies: b VmRSS $r0 KiB -> peak $(cat "$work/peak") KiB; $(cat "$work/h.log")"
check "proxies: b made 16 local neurons for the flooding peer" test "$(watch neurons "$work/b.out" flood/)" = 16
check "proxies: its other 2984 spikes were refused" test "$(watch field "$work/b.out" flood rejected)" = 2984
check "proxies: one line names the peer and the limit" \
  test "$(lines "peer 'flood': refused a local neuron.*link_limits.proxies_per_peer")" = 1
check "proxies: VmRSS grew less than 16 MB" test $(( $(cat "$work/peak") - r0 )) -lt 16384
good_rate proxies

# 2. 2,000 one-shot handshakes: their links are freed, not kept.
r0=$(rss_now)
watch rss "$bpid" 2 >"$work/peak" & hostile links 2000 >"$work/h.log"; wait $!
sleep 0.5
echo "# links: b VmRSS $r0 KiB -> peak $(cat "$work/peak") KiB; $(cat "$work/h.log")"
check "links: 2000 handshakes done" grep -q "^handshakes 2000" "$work/h.log"
check "links: b keeps 2 link rows (the good peer, the proxy flooder)" test "$(watch links "$work/b.out")" = 2
check "links: at most one connect line per attacking address" test "$(lines "peer 'tw[0-9]*'.*connected")" -le 8
check "links: VmRSS grew less than 24 MB" test $(( $(cat "$work/peak") - r0 )) -lt 24576
good_rate links

# 3. Slowloris: 20 frames of 1 MiB, a byte a second: closed at frame_timeout.
hostile slowloris 20 6 >"$work/h.log"
echo "# slowloris: $(tr '\n' ' ' <"$work/h.log")"
check "slowloris: all 20 closed" grep -q "^closed 20$" "$work/h.log"
check "slowloris: within the 2 s frame timeout (+ a sweep)" \
  awk '/^last_closed_s/ { exit !($2 >= 1.9 && $2 < 3.5) }' "$work/h.log"
check "slowloris: one line per address (4)" test "$(lines "link_limits.frame_timeout")" = 4
good_rate slowloris

# 4. 300 silent sockets from one address: its oldest go, a good handshake
# from another address is answered at once.
hostile silent 300 1.2 >"$work/h.log"
echo "# silent: $(tr '\n' ' ' <"$work/h.log")"
check "silent: a good handshake was answered within 1 s" \
  awk '/^good_handshake_s/ { exit !($2 >= 0 && $2 < 1) }' "$work/h.log"
check "silent: none is left open after the handshake timeout" grep -q "^silent_open 0$" "$work/h.log"
check "silent: one line for the address past pending_per_addr" \
  test "$(lines "127.0.0.3:.*link_limits.pending_per_addr")" = 1
good_rate silent

# 5. 1,000 idle handshakes from 8 addresses against 64 descriptors: the
# last eighth stays free, idle links close, a good handshake gets in.
hostile idle 1000 2 >"$work/h.log"
fds=$(ls "/proc/$bpid/fd" | wc -l)
echo "# idle: $(tr '\n' ' ' <"$work/h.log") b holds $fds descriptors now"
check "idle: a good handshake got in during the attack" \
  awk '/^good_handshake_s/ { exit !($2 >= 0 && $2 < 4) }' "$work/h.log"
check "idle: every idle socket was closed (idle timeout)" grep -q "^idle_open 0$" "$work/h.log"
check "idle: running short of descriptors was logged" grep -q "descriptors run short\|close to the limit" "$work/b.err"
check "idle: b is back to a handful of descriptors" test "$fds" -lt 24
check "idle: b is alive" alive b
good_rate idle

# 6. 200 half-sent 1 MiB frames: rx_buffer (8 MB) and the frame timeout.
r0=$(rss_now)
watch rss "$bpid" 3.5 >"$work/peak" & hostile halfframes 200 3 >"$work/h.log"; wait $!
echo "# halfframes: b VmRSS $r0 KiB -> peak $(cat "$work/peak") KiB; $(tr '\n' ' ' <"$work/h.log")"
check "halfframes: the partial-frame budget closed the oldest" grep -q "link_limits.rx_buffer" "$work/b.err"
check "halfframes: none is left open" grep -q "^half_open 0$" "$work/h.log"
check "halfframes: VmRSS grew less than 40 MB (not 200 x 0.5 MB)" test $(( $(cat "$work/peak") - r0 )) -lt 40960
good_rate halfframes
check "every refusal was logged at most once per address and kind" at_most_once

# 7. Keepalives: c dials b and sends nothing; over 3 idle timeouts the link
# stays up. A raw peer that shakes hands and goes silent is closed.
cat >"$work/c.lua" <<EOF
return { name = "c", tick = "10ms", $LIMITS
  neurons = { w = { script = "$work/sink.lua" },
              far = { remote = "tcp://127.0.0.1:$port/sink" } } }
EOF
start_nb c "$work/c.lua" --stats=json --no-watch
wait_for "$work/c.err" "connected" 20 || bail "c connects to b"
sleep 1.1
in0=$(watch field "$work/c.out" b bytes_in)
hostile peer 5 >"$work/h.log"
sleep 3.2 # with the 1.1 s before: quiet for over 3 idle timeouts
in1=$(watch field "$work/c.out" b bytes_in)
echo "# keepalive: $(cat "$work/h.log"); c's quiet link: $(watch field "$work/c.out" b state), $((in1 - in0)) bytes in since"
check "idle: the silent peer was closed after the 1.5 s idle timeout" \
  awk '/^mute_closed_s/ { exit !($2 >= 1.4 && $2 < 2.5) }' "$work/h.log"
check "keepalive: c's quiet link is up, never reconnected" \
  test "$(watch field "$work/c.out" b state)" = up -a "$(watch field "$work/c.out" b connects)" = 1 \
    -a "$(watch field "$work/c.out" b reconnects)" = 0
check "keepalive: b's keepalives kept coming (>= 10 acks of 68 bytes)" \
  test $((in1 - in0)) -ge 680
check "keepalive: b closed no link of c for idleness" bash -c "! grep -q \"peer 'c'.*idle_timeout\" '$work/b.err'"
stop_nb c
stop_nb a; rc_a=$rc
stop_nb b; rc_b=$rc
check "a and b shut down cleanly (exit $rc_a, $rc_b)" test "$rc_a" -eq 0 -a "$rc_b" -eq 0
check "the good link saw no error and lost nothing" \
  test "$(stat a link.errors)" = 0 -a "$(stat a link.lost)" = 0 -a "$(stat b link.errors)" = 0
finish
