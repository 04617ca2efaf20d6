#!/usr/bin/env bash
# Bad input from raw sockets (spec/fixtures/tcp/bad_peer.py): garbage, a
# wrong protocol version, a truncated frame, an oversized payload, a length
# below a spike, a malformed spike and a frame for a neuron the node does
# not expose. Each connection is closed with one logged error naming the
# peer (its address) and the reason, while the node keeps serving a good
# peer that streams spikes both ways the whole time. Also: `neuronbus
# check` names the problems of a manifest with bad TCP keys.
# Ends with "N passed, M failed".
source "$(dirname "$0")/tcp_lib.bash"
N=${NB_TCP_BAD_SPIKES:-300000}

gen() {
  echo "gen = { script = \"$fx/gen.lua\", threshold = 0, refractory = 0,
    config = { to = \"far\", count = $N, expect = $N, per_tick = 256, label = \"$1\" } },"
}
gen_manifest "$work/b.lua" b 'listen = "tcp://127.0.0.1:0", arena = { size = "128MB" },' \
  "$(gen b) far = { remote = \"peer://a/gen\" },"
start_nb b "$work/b.lua" --stats=json --no-watch
port=$(port_of b) || bail "b announces its port"
gen_manifest "$work/a.lua" a 'arena = { size = "128MB" },' \
  "$(gen a) far = { remote = \"tcp://127.0.0.1:$port/gen\" },"
start_nb a "$work/a.lua" --stats=json --no-watch
wait_for "$work/a.err" "connected" 20 || bail "a connects to b"

timeout 60 python3 "$fx/bad_peer.py" "$port" >"$work/raw.log" 2>&1
sed 's/^/# /' "$work/raw.log"
reason_garbage="not a NeuronBus link"
reason_version="protocol version mismatch: peer speaks version 9"
reason_truncated="connection ended inside frame 1 (truncated)"
reason_oversized="oversized frame 1"
reason_short_length="length 10 is below 64"
reason_malformed_spike="malformed spike in frame 1"
reason_unknown_target="targets neuron id 999, which this node does not expose"
for c in garbage version truncated oversized short_length malformed_spike unknown_target; do
  line=$(grep "^case $c " "$work/raw.log")
  lport=$(echo "$line" | awk '{ print $4 }')
  reason_var=reason_$c
  check "$c: the node closed the connection" test "$(echo "$line" | awk '{ print $5 }')" = closed
  check "$c: one error naming the peer 127.0.0.1:$lport and the reason" \
    grep -q "error: peer .*127.0.0.1:$lport.*${!reason_var}.*connection closed" "$work/b.err"
done
check "b keeps running after all of them" alive b
check "the good peer's stream goes on to the end (a got all $N)" wait_for "$work/a.out" "a: received all $N" 90
check "... and b got all $N" wait_for "$work/b.out" "b: received all $N" 30
stop_nb a; rc_a=$rc
stop_nb b; rc_b=$rc
check "both shut down cleanly (exit $rc_a, $rc_b)" test "$rc_a" -eq 0 -a "$rc_b" -eq 0
for s in a b; do
  check "$s: the good link saw no error, lost nothing, every spike in order" \
    test "$(stat $s link.errors)" = 0 -a "$(stat $s link.lost)" = 0 \
      -a "$(summary $s order_errors)" = 0 -a "$(summary $s payload_errors)" = 0
done

# neuronbus check on TCP keys: every problem, with its key path.
cat >"$work/bad.lua" <<EOF2
return { name = "bad", listen = "tcp://localhost:7401",
  peers = { { url = "tcp://127.0.0.1:7402", policy = "maybe" } },
  neurons = {
    w = { script = "$fx/pinger.lua" },
    p = { remote = "tcp://127.0.0.1:7402", script = "$fx/pinger.lua" },
  } }
EOF2
"$nb" check "$work/bad.lua" >"$work/check.out" 2>&1; rc=$?
check "check: exits 1 on bad TCP keys" test "$rc" -eq 1
check "check: names listen" grep -q ': listen: bad host "localhost"' "$work/check.out"
check "check: names the policy" grep -q ': peers\[1\].policy: unknown policy "maybe"' "$work/check.out"
check "check: names the remote without a neuron" grep -q ': neurons.p.remote: .*names no neuron' "$work/check.out"
check "check: a remote takes no script" grep -q ': neurons.p.script: a remote neuron runs in its peer' "$work/check.out"
cat >"$work/good.lua" <<EOF2
return { name = "good", listen = "tcp://127.0.0.1:7401",
  neurons = { w = { script = "$fx/pinger.lua" }, p = { remote = "tcp://127.0.0.1:7402/p" } } }
EOF2
"$nb" check "$work/good.lua" >"$work/check.out" 2>&1; rc=$?
check "check: a good manifest with a remote neuron passes" test "$rc" -eq 0
finish
