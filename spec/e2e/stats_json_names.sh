#!/usr/bin/env bash
# --stats=json stays valid UTF-8 JSON whatever the strings it shows hold: a
# neuron's description (free text from the manifest, with quotes,
# backslashes, valid and ill-formed UTF-8) and a peer's cortex name (chosen
# by the peer, arriving in its HELLO over a raw socket, with quotes and
# backslashes; one that is not UTF-8 is refused) (spec/fixtures/tcp/
# odd_names.py). Every periodic and final line parses with python's
# json.loads after a strict UTF-8 decode, and the strings read as
# bytes.decode("utf-8", "replace") reads them (docs/cli.md). The writer's
# property over arbitrary bytes is fuzzed by spec/fuzz/fuzz_stats.c.
# Ends with "N passed, M failed".
source "$(dirname "$0")/tcp_lib.bash"

python3 "$fx/odd_names.py" manifest "$work/odd.lua" "$top/spec/fixtures/readme/greeter.lua"
"$nb" check "$work/odd.lua" >"$work/check.out" 2>&1
check "check: a description with quotes and ill-formed UTF-8 is accepted" test $? -eq 0
start_nb odd "$work/odd.lua" --for 4s --stats=json --no-watch
port=$(port_of odd) || bail "the node announces its port"
# Held past the node's end: a caller's link that carried no spike is freed
# when its connection ends (docs/links.md#limits), and with it its row.
timeout 20 python3 "$fx/odd_names.py" peer "$port" 6 >"$work/peer.log" 2>&1 &
peer=$!
sleep 0.5
timeout 20 python3 "$fx/odd_names.py" badpeer "$port" >"$work/badpeer.log" 2>&1
wait "$peer"
check "the odd peer's handshake is accepted" grep -q "peer up" "$work/peer.log"
check "a peer whose cortex name is not UTF-8 is refused" grep -q "peer refused" "$work/badpeer.log"
check "... with one line saying why" test "$(grep -c 'bad handshake: the cortex name is not 1..255 bytes of UTF-8' "$work/odd.err")" -eq 1
for i in $(seq 200); do alive odd || break; sleep 0.1; done
stop_nb odd
check "the node ends cleanly (exit $rc)" test "$rc" -eq 0
python3 "$fx/odd_names.py" check "$work/odd.out" >"$work/check.log" 2>&1
while IFS= read -r line; do
  case $line in
    "ok - "*) ok "${line#ok - }" ;;
    "not ok - "*) not_ok "${line#not ok - }" ;;
  esac
done <"$work/check.log"
grep -q '^ok - ' "$work/check.log" || not_ok "the checker ran" "$work/check.log"
finish
