#!/usr/bin/env bash
# spec/e2e/bench_smoke.sh: runs every benchmark binary once with --tiny so
# the benchmarks never rot. One test per binary: it passes when the binary
# exits 0, prints no "BENCH FAILED", and prints a ROW line for every row
# its --list names. Timings are never asserted. Ends with "N passed, M
# failed". NB_BUILD is the build directory (spec/run.sh sets it).
set -u
top=$(cd "$(dirname "$0")/../.." && pwd)
build=${NB_BUILD:-$top/build/default}
cd "$top" || exit 1 # bench_lua finds its agents in bench/lua/ from here
work=$(mktemp -d)
out=$work/out
trap 'rm -rf "$work"' EXIT
. "$top/spec/e2e/lib.bash"

found=0
# The binaries of bench/*.c: one left in the build folder by a source
# that is gone is not this tree's.
for src in bench/*.c; do
  b=$build/bench/$(basename "$src" .c)
  [ -f "$b" ] && [ -x "$b" ] || continue
  found=1
  name=bench/${b##*/}
  timeout --kill-after=5 120 "$b" --tiny >"$out" 2>&1
  rc=$?
  why=""
  if [ "$rc" -ne 0 ]; then
    why="exited $rc"
  elif grep -q 'BENCH FAILED' "$out"; then
    why="printed BENCH FAILED"
  elif ! grep -q '^ROW {' "$out"; then
    why="printed no ROW line"
  else
    for row in $("$b" --list 2>/dev/null); do
      grep -q "^ROW {\"name\":\"$row\"" "$out" || why="${why:+$why; }no ROW for $row"
    done
  fi
  if [ -z "$why" ]; then
    ok "$name --tiny ($(grep -c '^ROW ' "$out") rows)"
  else
    not_ok "$name --tiny: $why"
  fi
done
[ "$found" -eq 1 ] || not_ok "no benchmark binaries in $build/bench (make builds them with make test)"
finish
