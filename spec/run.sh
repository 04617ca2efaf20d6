#!/usr/bin/env bash
# spec/run.sh BUILD_DIR [SAN]: runs every test and prints one closing line
# "N passed, M failed" summed over the C tests, the busted specs and the
# end-to-end runs. Each program runs in its own process with a time limit;
# one that crashes or ends without its closing line counts as one failure.
set -u
build=${1:?usage: spec/run.sh BUILD_DIR [SAN]}
san=${2:-}
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top" || exit 1
passed=0 failed=0
log=$(mktemp -d)
trap 'rm -rf "$log"' EXIT

# Adds a program's closing line to the totals, or one failure if it has none.
tally() {
  local name=$1 out=$2 rc=$3 line p f
  line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$out" | tail -n 1)
  if [ -z "$line" ]; then
    echo "not ok - $name: exited $rc without a closing line"
    tail -n 20 "$out" | sed 's/^/    /'
    failed=$((failed + 1))
    return
  fi
  p=${line%% passed*}; f=${line#*, }; f=${f%% failed*}
  if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
    echo "not ok - $name: exited $rc after reporting no failure"
    f=1
  fi
  passed=$((passed + p)); failed=$((failed + f))
  if [ "$f" -gt 0 ]; then
    grep -E -A3 '^not ok' "$out" | head -n 60 | sed 's/^/    /'
  fi
  printf '%-44s %s\n' "$name" "$line"
}

# Runs one test program under a time limit and tallies it.
run_prog() {
  local name=$1 limit=$2; shift 2
  local out="$log/$(echo "$name" | tr '/ ' '__').out" rc
  timeout --kill-after=5 "$limit" "$@" >"$out" 2>&1
  rc=$?
  [ "$rc" -eq 124 ] && echo "    (timed out after ${limit}s)" >>"$out"
  tally "$name" "$out" "$rc"
}

echo "== C tests ($build)"
for t in "$build"/spec/*/test_* "$build"/spec/*/validate_*; do
  [ -x "$t" ] || continue
  run_prog "${t#"$build"/}" 300 "$t"
done

if [ -z "$san" ]; then
  if [ -d spec/core ] && ls spec/*/*_spec.lua >/dev/null 2>&1; then
    echo "== busted specs (LuaJIT)"
    out="$log/busted.out"
    NB_BUILD="$top/$build" timeout --kill-after=5 480 \
      busted --lua=luajit -o TAP spec >"$out" 2>&1
    rc=$?
    p=$(grep -cE '^ok ' "$out"); f=$(grep -cE '^not ok ' "$out")
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
      f=1; echo "not ok - busted exited $rc"; tail -n 30 "$out" | sed 's/^/    /'
    fi
    grep -E -A12 '^not ok ' "$out" | head -n 200 | sed 's/^/    /'
    passed=$((passed + p)); failed=$((failed + f))
    printf '%-44s %s\n' "busted" "$p passed, $f failed"
  fi
  echo "== end-to-end runs"
  for t in spec/e2e/*.sh; do
    [ -f "$t" ] || continue
    NB_BUILD="$top/$build" run_prog "$t" 300 bash "$t"
  done
else
  echo "== SAN=$san: busted specs and end-to-end runs are skipped (C parts only)"
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
