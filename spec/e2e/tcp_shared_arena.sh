#!/usr/bin/env bash
# Two neuronbus processes on one host open the same file-backed arena
# (arena.path in /dev/shm): their handshakes find the same file (device,
# inode, capacity, boot id), so large payloads cross by reference: the ref
# travels, the bytes stay in the shared file. Checked against the link's
# counters: refs_out/refs_in count the bare refs, and bytes_out stays far
# below the payload bytes. Two runs for contrast: each process with its
# own arena file, where the bytes travel. The receiver checks every byte.
# Ends with "N passed, M failed".
source "$(dirname "$0")/tcp_lib.bash"
N=2000            # 200 of them 64 KiB, and a few 47..4095 bytes
PAYLOAD=$((200 * 65536))

arena() { # arena PATH: the arena key, file-backed unless PATH is empty
  if [ -n "$1" ]; then echo "arena = { size = \"64MB\", path = \"$1\" },"
  else echo 'arena = { size = "64MB" },'; fi
}

run() { # run LABEL ARENA_A ARENA_B
  local label=$1 pa=$2 pb=$3
  gen_manifest "$work/b_$label.lua" b "listen = \"tcp://127.0.0.1:0\", $(arena "$pb")" \
    "gen = { script = \"$fx/gen.lua\", config = { expect = $N, huge_every = 10, label = \"b\" } },"
  start_nb "b_$label" "$work/b_$label.lua" --stats=json --no-watch
  local port
  port=$(port_of "b_$label") || bail "$label: b announces its port"
  gen_manifest "$work/a_$label.lua" a "$(arena "$pa")" \
    "gen = { script = \"$fx/gen.lua\", threshold = 0, refractory = 0,
      config = { to = \"far\", count = $N, huge_every = 10, label = \"a\" } },
     far = { remote = \"tcp://127.0.0.1:$port/gen\" },"
  start_nb "a_$label" "$work/a_$label.lua" --stats=json --no-watch
  check "$label: b received all $N" wait_for "$work/b_$label.out" "b: received all $N" 60
  stop_nb "a_$label"; stop_nb "b_$label"
  check "$label: every payload byte right ($(summary "b_$label" huge) of 64 KiB)" \
    test "$(summary "b_$label" payload_errors)" = 0 -a "$(summary "b_$label" order_errors)" = 0 \
      -a "$(summary "b_$label" huge)" = 200
  read -r shared refs_out bytes_out < <(stat "a_$label" link.shared_arena link.refs_out link.bytes_out | tr '\n' ' ')
  refs_in=$(stat "b_$label" link.refs_in)
  echo "# $label: shared $shared, refs out $refs_out / in $refs_in, bytes out $bytes_out (64 KiB payloads: $PAYLOAD bytes)"
}

shm=/dev/shm/nb-e2e-$$
run shared "$shm-one" "$shm-one"
check "shared: the handshake found the same arena file" test "$shared" = true
check "shared: the large payloads crossed as refs ($refs_out out, $refs_in in)" test "$refs_out" -ge 200 -a "$refs_in" = "$refs_out"
check "shared: their bytes did not travel ($bytes_out bytes written < 1 MB)" test "$bytes_out" -lt 1000000
check "shared: both processes mapped one file" test -f "$shm-one" -a ! -e "$shm-two"
run separate "$shm-two" "$shm-three"
check "separate files: no sharing, the bytes travel ($bytes_out bytes written)" \
  test "$shared" = false -a "$refs_out" = 0 -a "$bytes_out" -gt "$PAYLOAD"
run private "" ""
check "private arenas: the bytes travel" test "$shared" = false -a "$refs_out" = 0 -a "$bytes_out" -gt "$PAYLOAD"
finish
