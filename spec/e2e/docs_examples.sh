#!/usr/bin/env bash
# Runs the C and shell examples of README.md and docs/*.md, so the text
# never shows code that does not build or commands that do not work. A
# fenced block is an example when a marker line sits right above it:
#   <!-- example: c -->   a ```c block, compiled against libneuronbus.a
#                         and run; it passes when it exits 0;
#   <!-- example: sh -->  a ```sh block, run with bash -e from the
#                         repository root (HOME a scratch folder, the build
#                         directory on PATH); it passes when it exits 0.
# A marker ending in "pending: WHY" is skipped (the feature lands later).
# spec/agents/docs_examples_spec.lua checks the other kinds of marker.
set -u
top=$(cd "$(dirname "$0")/../.." && pwd)
build=${NB_BUILD:-$top/build/default}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
. "$top/spec/e2e/lib.bash"

# Writes each marked c or sh block of the given files to $work/exN.KIND and
# lists "N KIND FILE:LINE [pending]" lines in $work/list.
extract() {
  awk -v dir="$work" '
    FNR == 1 { nm = 0 }
    /^<!-- example: .* -->$/ {
      m = $0; sub(/^<!-- example: /, "", m); sub(/ -->$/, "", m)
      nm++; kind[nm] = m; sub(/ .*/, "", kind[nm])
      pend[nm] = (m ~ /pending: /) ? " pending" : ""
      next
    }
    !inblk && /^```[a-z]*$/ {
      lang = substr($0, 4); inblk = 1; file = ""
      for (i = 1; i <= nm; i++) if (kind[i] == lang && (lang == "c" || lang == "sh")) {
        n++; file = dir "/ex" n "." lang
        print n, lang, FILENAME ":" FNR pend[i] > (dir "/list")
        printf "" > file
      }
      nm = 0; next
    }
    inblk && /^```$/ { inblk = 0; if (file != "") close(file); next }
    inblk { if (file != "") print > file; next }
    { nm = 0 }
  ' "$@"
}

cd "$top" || exit 1
shopt -s nullglob
: >"$work/list"
extract README.md docs/*.md
mkdir -p "$work/home"
found=0
while read -r n kind where pend; do
  found=$((found + 1))
  name="$where ($kind example $n)"
  if [ -n "$pend" ]; then
    echo "# skip - $name: pending"
    continue
  fi
  src="$work/ex$n.$kind"
  if [ "$kind" = c ]; then
    cc -std=c11 -D_GNU_SOURCE -Wall -Werror -I"$top/core" -o "$src.bin" "$src" \
      "$build/libneuronbus.a" -pthread -lm >"$work/out" 2>"$work/err" &&
      "$src.bin" >"$work/out" 2>"$work/err"
  else
    HOME="$work/home" NB_BUILD="$build" PATH="$work/home/.local/bin:$build:$PATH" \
      timeout --kill-after=5 120 bash -e "$src" </dev/null >"$work/out" 2>"$work/err"
  fi
  if [ $? -eq 0 ]; then ok "$name"; else not_ok "$name"; fi
done <"$work/list"
[ "$found" -gt 0 ] || { : >"$work/out"; not_ok "a c or sh example in README.md or docs/"; }
finish
