#!/usr/bin/env bash
# The README's two-process topology: agents/tcp_back.lua (listens) and
# agents/tcp_front.lua (dials, asks its squarer) as two neuronbus processes.
# The manifests are copied with their fixed port 7401 replaced by a free
# one, so a run never meets another on the same machine. Ends with
# "N passed, M failed".
source "$(dirname "$0")/tcp_lib.bash"
port=$(free_port)
for m in back front; do
  sed -e "s/127\.0\.0\.1:7401/127.0.0.1:$port/g" \
      -e "s#script = \"tcp_#script = \"$top/agents/tcp_#" \
      "$top/agents/tcp_$m.lua" >"$work/tcp_$m.lua"
  "$nb" check "$work/tcp_$m.lua" >"$work/check_$m.out" 2>&1
  check "check: agents/tcp_$m.lua is valid" test $? -eq 0
done
start_nb back "$work/tcp_back.lua" --stats=json --no-watch
port_of back >/dev/null || bail "back listens"
start_nb front "$work/tcp_front.lua" --stats=json --no-watch
check "front: every question answered across the link" wait_for "$work/front.out" "asker: all 21 answered" 30
check "front: the squares came back" grep -q "^asker: 20^2 = 400$" "$work/front.out"
check "front: the 100 KB question crossed with its bytes" grep -q "^asker: 100000 bytes$" "$work/front.out"
stop_nb front; rc_f=$rc
stop_nb back; rc_b=$rc
check "both stop cleanly (exit $rc_f, $rc_b)" test "$rc_f" -eq 0 -a "$rc_b" -eq 0
check "back: the asker is known there as front/asker" \
  test "$(stat back neuron.front/asker.spikes_in)" = 21
check "front: the link sent and confirmed 21, lost none" \
  test "$(stat front link.sent)" = 21 -a "$(stat front link.acked)" = 21 -a "$(stat front link.lost)" = 0
check "back: squarer answered 21" grep -q "^squarer: answered 21, refused 0$" "$work/back.out"
finish
