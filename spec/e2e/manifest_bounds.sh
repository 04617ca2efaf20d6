#!/usr/bin/env bash
# End-to-end bounds of a manifest's evaluation (docs/manifest.md): an
# endless loop (the instruction limit), a backtracking string.find (one
# long call into C: the 5 s time limit, a killed child process) and a
# manifest allocating gigabytes (the 64 MB memory limit): `neuronbus
# check` and `run` exit 1 with a message naming the manifest, in time.
# Ends with "N passed, M failed".
set -u
top=$(cd "$(dirname "$0")/../.." && pwd)
build=${NB_BUILD:-$top/build/default}
nb=$build/neuronbus
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work" || exit 1
. "$top/spec/e2e/lib.bash"
need "$nb"

ms() { echo $(( $(date +%s%N) / 1000000 )); }

echo 'while true do end' >loop.lua
echo 'local s = ("a"):rep(22); s:find(("a*"):rep(22) .. "b"); return {}' >backtrack.lua
echo 'local t = {} for i = 1, 1e9 do t[i] = ("x"):rep(1e6) .. i end return {}' >gigabytes.lua

# bounded FILE LIMIT_MS MESSAGE: check and run exit 1 within LIMIT_MS
# with MESSAGE.
bounded() {
  local f=$1 limit=$2 msg=$3 cmd t0 rc took
  for cmd in check run; do
    t0=$(ms)
    timeout 60 "$nb" $cmd "$f" >out 2>err; rc=$?
    took=$(( $(ms) - t0 ))
    if [ "$rc" -eq 1 ] && [ "$took" -le "$limit" ] && grep -qF -- "$msg" out err; then
      ok "$cmd $f: exit 1 in $took ms: $msg"
    else
      not_ok "$cmd $f: rc $rc in $took ms (limit $limit), expected: $msg" out err
    fi
  done
}

bounded loop.lua 5500 "loop.lua:1: ran for over 50000000 instructions"
bounded backtrack.lua 5800 "backtrack.lua: evaluation took longer than 5 s"
bounded gigabytes.lua 5500 "gigabytes.lua: evaluation used more than 64 MB"

finish
