#!/usr/bin/env bash
# spec/run.sh BUILD_DIR [SAN]: runs every test tier and prints one closing
# line "N passed, M failed" summed over all of them; exits non-zero when
# anything failed or nothing ran. The tiers, in order:
#
#   C tests       every binary in BUILD_DIR/spec/*/ (spec/nbtest.h: one
#                 process per test, each with its own time limit)
#   spec/unit     busted, pure Lua: no runtime library (.busted task "unit")
#   spec/runtime  busted, drives BUILD_DIR's libnbruntime.so
#   spec/agents   busted, the example agents
#   spec/<other>  busted, any other folder of *_spec.lua files
#   spec/e2e      the end-to-end scripts (spec/e2e/lib.bash keeps the tally)
#
# Every program (each C binary, each busted spec file, each end-to-end
# script) runs in its own process under a time limit: one that crashes,
# hangs or ends without its closing line counts as one more failure and
# the rest still run. Under SAN only the C tier runs. A summary by tier
# comes before the closing line.
set -u
build=${1:?usage: spec/run.sh BUILD_DIR [SAN]}
san=${2:-}
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top" || exit 1
passed=0 failed=0 tier_p=0 tier_f=0 tier=
summary=()
log=$(mktemp -d)
trap 'rm -rf "$log"' EXIT

# Starts a tier section named $1.
begin_tier() { tier=$1 tier_p=0 tier_f=0; echo "== $tier"; }

# Ends the current tier and keeps its line for the summary.
end_tier() { summary+=("$(printf '%-44s %s' "$tier" "$tier_p passed, $tier_f failed")"); }

# Adds p passed and f failed to the tier and the totals.
count() { tier_p=$((tier_p + $1)); tier_f=$((tier_f + $2)); passed=$((passed + $1)); failed=$((failed + $2)); }

# Tallies a program that ends with "N passed, M failed" (the C binaries and
# the end-to-end scripts); no closing line counts as one failure.
tally_closing() {
  local name=$1 out=$2 rc=$3 line p f
  line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$out" | tail -n 1)
  if [ -z "$line" ]; then
    echo "not ok - $name: exited $rc without a closing line"
    tail -n 20 "$out" | sed 's/^/    /'
    count 0 1
    return
  fi
  p=${line%% passed*}; f=${line#*, }; f=${f%% failed*}
  if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
    echo "not ok - $name: exited $rc after reporting no failure"
    f=1
  fi
  if [ "$f" -gt 0 ]; then
    # A C test prints its failed check above its verdict, a script below.
    grep -E -B8 -A3 '^not ok' "$out" | head -n 80 | sed 's/^/    /'
  fi
  count "$p" "$f"
  printf '%-44s %s\n' "$name" "$p passed, $f failed"
}

# Tallies one busted spec file's TAP output: a run without its plan line
# (a crash, a timeout) or a failed exit with no failed test is one failure.
tally_tap() {
  local name=$1 out=$2 rc=$3 p f
  p=$(grep -cE '^ok ' "$out"); f=$(grep -cE '^not ok ' "$out")
  if ! grep -qE '^1\.\.[0-9]+' "$out" || { [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; }; then
    echo "not ok - $name: busted exited $rc before the end of its plan"
    tail -n 20 "$out" | sed 's/^/    /'
    f=$((f + 1))
  fi
  grep -E -A12 '^not ok ' "$out" | head -n 120 | sed 's/^/    /'
  count "$p" "$f"
  printf '%-44s %s\n' "$name" "$p passed, $f failed"
}

# run KIND NAME LIMIT COMMAND...: runs one program under a time limit and
# tallies it (KIND closing or tap).
run() {
  local kind=$1 name=$2 limit=$3; shift 3
  local out="$log/$(echo "$name" | tr '/ ' '__').out" rc
  timeout --kill-after=5 "$limit" "$@" >"$out" 2>&1
  rc=$?
  [ "$rc" -eq 124 ] && echo "    (timed out after ${limit}s)" >>"$out"
  "tally_$kind" "$name" "$out" "$rc"
}

# The C binaries keep a time limit per test; this outer one only stops a
# runner that hangs itself.
begin_tier "C tests ($build)"
for t in "$build"/spec/*/test_* "$build"/spec/*/validate_*; do
  [ -x "$t" ] || continue
  # A binary whose source was renamed or removed is stale: not a test now.
  [ -f "${t#"$build"/}.c" ] || { echo "# ${t#"$build"/}: no ${t#"$build"/}.c, a stale binary (skipped)"; continue; }
  run closing "${t#"$build"/}" 3600 "$t"
done
end_tier

if [ -z "$san" ]; then
  tiers=(unit runtime agents)
  for d in spec/*/; do
    d=${d%/}; d=${d#spec/}
    case " ${tiers[*]} " in *" $d "*) continue ;; esac
    ls "spec/$d"/*_spec.lua >/dev/null 2>&1 && tiers+=("$d")
  done
  for d in "${tiers[@]}"; do
    begin_tier "spec/$d (busted, LuaJIT)"
    task=()
    # The three tiers have a .busted task (the unit one loads no runtime).
    case $d in unit | runtime | agents) task=(--run="$d") ;; esac
    for f in spec/"$d"/*_spec.lua; do
      [ -f "$f" ] || continue
      NB_BUILD="$top/$build" run tap "$f" 300 busted --lua=luajit "${task[@]}" -o TAP "$f"
    done
    end_tier
  done

  begin_tier "spec/e2e (end-to-end)"
  for t in spec/e2e/*.sh; do
    [ -f "$t" ] || continue
    NB_BUILD="$top/$build" run closing "$t" 300 bash "$t"
  done
  end_tier
else
  echo "== SAN=$san: the busted tiers and the end-to-end runs are skipped (C parts only)"
fi

echo "== by tier"
printf '%s\n' "${summary[@]}"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
