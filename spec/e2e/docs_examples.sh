#!/usr/bin/env bash
# Runs the C and shell examples of README.md and docs/*.md, so the text
# never shows code that does not build, commands that do not work, or
# output the program no longer prints. A fenced block is an example when a
# marker line sits right above it:
#   <!-- example: c -->           a ```c block, compiled against
#                                 libneuronbus.a and run; passes on exit 0;
#   <!-- example: sh -->          a ```sh block, run with bash -e from the
#                                 repository root; passes on exit 0;
#   <!-- example: output DIR -->  a block whose first line is "$ COMMAND":
#                                 COMMAND runs in DIR and must print the
#                                 rest of the block (stdout and stderr, the
#                                 repository's path written /path/to).
# Commands run with the build directory on PATH and HOME a scratch folder
# of their own, so an example that installs or copies into ~ starts clean.
# A marker ending in "pending: WHY" is skipped (the feature lands later).
# spec/agents/docs_examples_spec.lua checks the other kinds of marker.
set -u
top=$(cd "$(dirname "$0")/../.." && pwd)
build=${NB_BUILD:-$top/build/default}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
. "$top/spec/e2e/lib.bash"

# Writes each marked c, sh or output block of the given files to
# $work/exN.KIND and lists "N KIND FILE:LINE ARG [pending]" lines (ARG "-"
# when the marker has none) in $work/list.
extract() {
  awk -v dir="$work" '
    FNR == 1 { nm = 0 }
    /^<!-- example: .* -->$/ {
      m = $0; sub(/^<!-- example: /, "", m); sub(/ -->$/, "", m)
      nm++; pend[nm] = (m ~ /pending: /) ? " pending" : ""
      sub(/ *pending: .*$/, "", m)
      kind[nm] = m; sub(/ .*/, "", kind[nm])
      arg[nm] = m; if (!sub(/^[^ ]+ +/, "", arg[nm])) arg[nm] = "-"
      next
    }
    !inblk && /^```[a-z]*$/ {
      lang = substr($0, 4); inblk = 1; nf = 0
      for (i = 1; i <= nm; i++)
        if ((kind[i] == lang && (lang == "c" || lang == "sh")) || kind[i] == "output") {
          n++; files[++nf] = dir "/ex" n "." kind[i]
          print n, kind[i], FILENAME ":" FNR, arg[i] pend[i] > (dir "/list")
          printf "" > files[nf]
        }
      nm = 0; next
    }
    inblk && /^```$/ { inblk = 0; for (i = 1; i <= nf; i++) close(files[i]); next }
    inblk { for (i = 1; i <= nf; i++) print > files[i]; next }
    { nm = 0 }
  ' "$@"
}

# Runs the command on the first line of output example $1 ("$ COMMAND") in
# directory $2 and compares what it prints with the rest of the example.
output_matches() {
  local src=$1 dir=$2 cmd
  cmd=$(head -n 1 "$src")
  case $cmd in '$ '*) cmd=${cmd#'$ '} ;; *) echo "first line is not \"\$ COMMAND\"" >"$work/err"; return 1 ;; esac
  (cd "$top/$dir" && timeout --kill-after=5 60 bash -c "$cmd") </dev/null 2>&1 | sed "s#$top#/path/to#g" >"$work/got"
  tail -n +2 "$src" >"$work/want"
  diff -u "$work/want" "$work/got" >"$work/out"
}

cd "$top" || exit 1
shopt -s nullglob
: >"$work/list"
extract README.md docs/*.md
export NB_BUILD="$build" PATH="$build:$PATH"
found=0
while read -r n kind where arg pend; do
  found=$((found + 1))
  name="$where ($kind example $n)"
  if [ -n "$pend" ]; then
    echo "# skip - $name: pending"
    continue
  fi
  src="$work/ex$n.$kind"
  : >"$work/out"; : >"$work/err"
  export HOME="$work/home$n"
  mkdir -p "$HOME"
  case $kind in
    c)
      cc -std=c11 -D_GNU_SOURCE -Wall -Werror -I"$top/core" -o "$src.bin" "$src" \
        "$build/libneuronbus.a" -pthread -lm >"$work/out" 2>"$work/err" &&
        "$src.bin" >"$work/out" 2>"$work/err" ;;
    sh)
      timeout --kill-after=5 120 bash -e "$src" </dev/null >"$work/out" 2>"$work/err" ;;
    output)
      output_matches "$src" "$arg" ;;
  esac
  if [ $? -eq 0 ]; then ok "$name"; else not_ok "$name"; fi
done <"$work/list"
[ "$found" -gt 0 ] || not_ok "a c, sh or output example in README.md or docs/"
finish
