#!/usr/bin/env bash
# Compiles and runs every C example in README.md (a ```c block right after
# the line "<!-- example: c -->"), so the README never shows code that does
# not build or run. Each example is one test; it passes when it exits 0.
set -u
top=$(cd "$(dirname "$0")/../.." && pwd)
build=${NB_BUILD:-$top/build/default}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
awk -v dir="$work" '
  /^<!-- example: c -->$/ { want = 1; next }
  want && /^```c$/ { n++; file = dir "/ex" n ".c"; inblk = 1; want = 0; next }
  inblk && /^```$/ { inblk = 0; close(file); next }
  inblk { print > file }
  { want = 0 }
' "$top/README.md"
passed=0 failed=0
for src in "$work"/ex*.c; do
  [ -f "$src" ] || continue
  name=$(basename "$src" .c)
  if cc -std=c11 -D_GNU_SOURCE -Wall -Werror -I"$top/core" -o "$work/$name" "$src" \
       "$build/libneuronbus.a" -pthread -lm >"$work/$name.log" 2>&1 &&
     "$work/$name" >>"$work/$name.log" 2>&1; then
    echo "ok - README C example $name"; passed=$((passed + 1))
  else
    echo "not ok - README C example $name"; sed 's/^/    /' "$work/$name.log"
    failed=$((failed + 1))
  fi
done
[ $((passed + failed)) -gt 0 ] || { echo "not ok - no C example found in README.md"; failed=1; }
echo "$passed passed, $failed failed"
