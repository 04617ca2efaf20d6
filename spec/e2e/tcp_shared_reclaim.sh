#!/usr/bin/env bash
# Two runtimes share one file-backed arena (a temporary directory) and
# exchange N large payloads each way as bare references (policy resend).
# b is SIGKILLed mid-stream while it keeps 512 received payloads
# (spike:keep()) and has its own payloads queued: references a dead
# process holds. The survivor a keeps firing into the shared arena while b
# is down, so its writer finds no free segment and reaps b (arena.reaped
# in a's statistics): a sender whose peer died holding references gets
# them back. A new b then takes over on the same port: a's stream resumes
# where the old b confirmed (confirmed + delivered to the new b == fired,
# lost 0), a receives the new b's whole stream, nothing stays paused, and
# every byte and the order are checked (spec/fixtures/tcp/bulk.lua).
# Then a short third runtime maps the file while a and b still run, after
# a stopped, and after both stopped: every segment is free but the live
# writers' own. Ends with "N passed, M failed".
source "$(dirname "$0")/tcp_lib.bash"
N=${NB_TCP_SHARED_PAYLOADS:-400000}
file=$work/arena/shared.nba
mkdir -p "$work/arena"
port=$(free_port)
ARENA="arena = { size = \"32MB\", path = \"$file\" },"

bulk() { # bulk LABEL TARGET EXTRA: the bulk neuron of one side
  echo "gen = { script = \"$fx/bulk.lua\", threshold = 0, refractory = 0,
    config = { to = \"$2\", count = $N, expect = $N, label = \"$1\", progress = 10000, restarts = true ${3:-} } },"
}
gen_manifest "$work/b1.lua" b "listen = \"tcp://127.0.0.1:$port\", $ARENA" \
  "$(bulk b far ', keep = 512') far = { remote = \"peer://a/gen\" },"
gen_manifest "$work/b2.lua" b "listen = \"tcp://127.0.0.1:$port\", $ARENA" \
  "$(bulk b far) far = { remote = \"peer://a/gen\" },"
gen_manifest "$work/a.lua" a "$ARENA
  peers = { { url = \"tcp://127.0.0.1:$port\", policy = \"resend\", backoff = { \"20ms\", \"200ms\" } } }," \
  "$(bulk a far) far = { remote = \"tcp://127.0.0.1:$port/gen\" },"
gen_manifest "$work/probe.lua" probe "$ARENA" \
  "idle = { script = \"$fx/bulk.lua\", config = { } },"

# probe LABEL: a third runtime maps the file for one tick; prints its final
# arena statistics "segments free active sealed processes".
probe() {
  "$nb" run "$work/probe.lua" --ticks 1 --stats=json >"$work/probe_$1.out" 2>"$work/probe_$1.err"
  python3 -c '
import json, sys
d = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{\"type\":\"stats\"")]
d = [x for x in d if x.get("final")][-1]["arena"]
print(d["segments"], d["free"], d["active"], d["sealed"], d["processes"])' "$work/probe_$1.out" 2>/dev/null || echo "0 0 0 0 0"
}

t0=$SECONDS
start_nb b1 "$work/b1.lua" --no-watch
port_of b1 >/dev/null || bail "b announces its port"
start_nb a "$work/a.lua" --stats=json --no-watch
wait_for "$work/b1.out" "progress received=40000" 60 || bail "the old b got 40000 payloads"
wait_for "$work/a.err" "sharing the arena file" 1 || bail "the link shares the arena file"
stop_nb b1 KILL
seen=$(sed -n 's/.*progress received=\([0-9]*\).*/\1/p' "$work/b1.out" | tail -n 1)
check "b killed mid-stream holding references (it had reported $seen of $N)" test "$seen" -lt "$N"

# a keeps firing into the shared arena while b is down: it must reap b.
reaped=0
for i in $(seq 100); do
  reaped=$(python3 "$fx/stats.py" "$work/a.out" --periodic -1 arena 2>/dev/null | python3 -c '
import ast, sys
try: print(ast.literal_eval(sys.stdin.read())["reaped"])
except Exception: print(0)')
  [ "${reaped:-0}" -ge 1 ] && break
  sleep 0.1
done
check "the survivor reaped the dead b's references (arena.reaped $reaped)" test "${reaped:-0}" -ge 1
check "the survivor is alive" alive a

start_nb b2 "$work/b2.lua" --no-watch
check "the new b gets a's stream up to the last payload" wait_for "$work/b2.out" "b: received all $N" 90
check "a gets the new b's whole stream" wait_for "$work/a.out" "a: received all $N" 90
wait_for "$work/a.out" "a: sent all $N" 30
wait_for "$work/b2.out" "b: sent all $N" 30
sleep 1.2 # a periodic statistics line after the end of both streams
state=$(python3 "$fx/stats.py" "$work/a.out" --periodic -1 link.state)
check "a's link is up, not paused, after the streams ended ($state)" test "$state" = up

# A process killed between two steps of a shared count's update leaves
# its segment pinned (the arena's rule: a leak, never an early free); we
# measured about one such segment per 100 SIGKILLs under load, so the one
# kill here may leave one sealed segment.
read -r segs free active sealed procs < <(probe live)
echo "# probe with a and b running: $segs segments, free $free, active $active, sealed $sealed, processes $procs"
check "with a and b running, all segments free but their writers' ($free of $segs, active $active, sealed $sealed)" \
  test "$procs" = 3 -a "$segs" -gt 0 -a "$sealed" -le 1 -a "$active" -le 4 -a $((free + active + sealed)) -eq "$segs"

stop_nb a; rc_a=$rc
read -r segs free active sealed procs < <(probe a_gone)
echo "# probe with b running: $segs segments, free $free, active $active, sealed $sealed, processes $procs"
check "after a stopped, all segments free but b's writers' ($free of $segs, active $active, sealed $sealed)" \
  test "$procs" = 2 -a "$sealed" -le 1 -a "$active" -le 2 -a $((free + active + sealed)) -eq "$segs"
stop_nb b2; rc_b=$rc
check "both end cleanly (exit $rc_a, $rc_b)" test "$rc_a" -eq 0 -a "$rc_b" -eq 0
read -r segs free active sealed procs < <(probe both_gone)
echo "# probe alone: $segs segments, free $free, active $active, sealed $sealed, processes $procs"
check "reopened alone, the arena file reports every segment free ($free of $segs)" \
  test "$procs" = 1 -a "$segs" -gt 0 -a "$free" = "$segs"
check "only the arena file is left in its directory ($(ls -A "$work/arena" | tr '\n' ' '))" \
  test "$(ls -A "$work/arena")" = shared.nba

fired=$(summary a fired)
first=$(summary b2 first); got=$(summary b2 received)
read -r sent acked lost resent reconn queued doubt refs_out refs_in errors < <(stat a link.sent link.acked link.lost link.resent link.reconnects link.queued link.in_doubt link.refs_out link.refs_in link.errors | tr '\n' ' ')
echo "# a: fired $fired; link: sent $sent, acked $acked, resent $resent, lost $lost, reconnects $reconn, refs out $refs_out / in $refs_in, errors $errors"
echo "# old b confirmed up to the new b's first ($first); new b delivered $got; a saw b restart $(summary a restarts) time(s), $(summary a since_restart) payloads since"
check "a fired all $N and the link took them all" test "$fired" = "$N" -a "$sent" = "$N"
check "acked == fired, lost 0, nothing queued or in doubt" test "$acked" = "$N" -a "$lost" = 0 -a "$queued" = 0 -a "$doubt" = 0
check "the link reconnected, the payloads crossed as references" test "$reconn" -ge 1 -a "$refs_out" -ge "$N" -a "$refs_in" -ge "$N"
check "confirmed by the old b ($first) + delivered to the new b ($got) == fired ($N)" \
  test "$first" -gt 0 -a $((first + got)) -eq "$N"
check "the new b: in order, every byte right" test "$(summary b2 order_errors)" = 0 -a "$(summary b2 payload_errors)" = 0
check "a: the new b's stream whole, in order, every byte right" \
  test "$(summary a restarts)" = 1 -a "$(summary a since_restart)" = "$N" -a "$(summary a order_errors)" = 0 -a "$(summary a payload_errors)" = 0
check "no error logged by a or the new b" bash -c "! grep -q 'error' '$work/a.err' '$work/b2.err'"
echo "# took $((SECONDS - t0)) s"
finish
