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
passed=0 failed=0
out=$(mktemp)
trap 'rm -f "$out"' EXIT

found=0
for b in "$build"/bench/*; do
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
    echo "ok - $name --tiny ($(grep -c '^ROW ' "$out") rows)"
    passed=$((passed + 1))
  else
    echo "not ok - $name --tiny: $why"
    tail -n 15 "$out" | sed 's/^/    /'
    failed=$((failed + 1))
  fi
done
if [ "$found" -eq 0 ]; then
  echo "not ok - no benchmark binaries in $build/bench (make builds them with make test)"
  failed=$((failed + 1))
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
