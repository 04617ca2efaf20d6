#!/usr/bin/env bash
# bench/run.sh BUILD_DIR [--row NAME] [--tiny]: runs every benchmark binary
# in BUILD_DIR/bench/, prints one table (row, median, min-max, baseline,
# ratio, target, pass/miss, change against the previous run) and, for a
# full run of every row, writes bench/results.json (rows + machine facts)
# and copies it to bench/history/<UTC timestamp>.json.
#
# A binary that fails a correctness check prints "BENCH FAILED" and exits
# non-zero; this script then says so loudly and exits 1 (after the table),
# and the run is not added to the history.
set -u
build=${1:?usage: bench/run.sh BUILD_DIR [--row NAME] [--tiny]}
shift
row="" tiny=""
while [ $# -gt 0 ]; do
  case $1 in
    --row) row=${2:?--row needs a name}; shift 2 ;;
    --tiny) tiny=--tiny; shift ;;
    *) echo "usage: bench/run.sh BUILD_DIR [--row NAME] [--tiny]" >&2; exit 2 ;;
  esac
done
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top" || exit 1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

bins=()
for b in "$build"/bench/*; do
  [ -f "$b" ] && [ -x "$b" ] && bins+=("$b")
done
if [ ${#bins[@]} -eq 0 ]; then
  echo "bench: no benchmark binaries in $build/bench (run make bench)" >&2
  exit 1
fi

load_before=$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null)
started=$(date +%s)
failed=()
: >"$tmp/rows"
for b in "${bins[@]}"; do
  name=${b##*/}
  args=($tiny)
  if [ -n "$row" ]; then
    # Only the binary that has the row runs it.
    "$b" --list 2>/dev/null | tr ' ' '\n' | grep -qx "$row" || continue
    args+=(--row "$row")
  fi
  echo "== $name ${args[*]}" >&2
  t0=$(date +%s)
  timeout --kill-after=5 240 "$b" "${args[@]}" >"$tmp/$name.out" 2>"$tmp/$name.err"
  rc=$?
  grep '^NOTE' "$tmp/$name.out" >&2
  grep '^ROW ' "$tmp/$name.out" | sed 's/^ROW //' >>"$tmp/rows"
  if [ "$rc" -ne 0 ]; then
    [ "$rc" -eq 124 ] && echo "bench: $name timed out after 240 s" >>"$tmp/$name.err"
    failed+=("$name")
    echo "!!!!!!!! $name FAILED (exit $rc) !!!!!!!!" >&2
    grep -h 'BENCH FAILED' "$tmp/$name.out" >&2
    tail -n 5 "$tmp/$name.err" >&2
  else
    echo "   $name done in $(( $(date +%s) - t0 )) s" >&2
  fi
done
if [ -n "$row" ] && [ ! -s "$tmp/rows" ] && [ ${#failed[@]} -eq 0 ]; then
  echo "bench: no binary has a row named $row" >&2
  exit 2
fi
elapsed=$(( $(date +%s) - started ))
load_after=$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null)

# The previous full run, for the change column.
prev=$(ls bench/history/*.json 2>/dev/null | sort | tail -n 1)
: >"$tmp/prev"
[ -n "$prev" ] && grep '"name"' "$prev" | grep '"median"' >"$tmp/prev"

# The table. The rows are our own flat JSON, one object per line, so awk
# reads them without a JSON library.
awk -v prevfile="$tmp/prev" '
function jget(s, k,   re, v) {
  re = "\"" k "\":(\"[^\"]*\"|[^,}]*)"
  if (!match(s, re)) return ""
  v = substr(s, RSTART + length(k) + 3, RLENGTH - length(k) - 3)
  gsub(/^"|"$/, "", v)
  return v
}
function num(x) {
  if (x == "") return "-"
  if (x + 0 >= 100) return sprintf("%.0f", x)
  if (x + 0 >= 10) return sprintf("%.1f", x)
  return sprintf("%.2f", x)
}
function meets(x, target,   op, val) {
  op = substr(target, 1, 2); val = substr(target, 3) + 0
  if (op == ">=") return x + 0 >= val
  if (op == "<=") return x + 0 <= val
  return 0
}
# pass when the ratio meets target and the median meets target_abs (each
# only when given); "-" when the row has neither.
function verdict(ratio, target, med, tabs) {
  if ((target == "" || ratio == "") && tabs == "") return "-"
  if (target != "" && ratio != "" && !meets(ratio, target)) return "MISS"
  if (tabs != "" && !meets(med, tabs)) return "MISS"
  return "pass"
}
function tgt(target, tabs) {
  if (tabs == "") return target == "" ? "-" : target
  return (target == "" ? "" : target "&") "abs" tabs
}
BEGIN {
  while ((getline l < prevfile) > 0) pm[jget(l, "name")] = jget(l, "median")
  printf "%-26s %9s %-17s %-13s %-28s %9s %7s %-15s %-5s %6s %7s\n", "row", "median", "min-max", "unit", "baseline", "base med", "ratio", "target", "", "hop ns", "vs prev"
}
{
  n = jget($0, "name"); med = jget($0, "median")
  ch = "-"
  if ((n in pm) && pm[n] + 0 != 0) ch = sprintf("%+.0f%%", 100 * (med / pm[n] - 1))
  hop = jget($0, "hop_ns"); if (hop == "") hop = "-"
  sh = jget($0, "shared_cores") == "true" ? "*" : ""
  printf "%-26s %9s %-17s %-13s %-28s %9s %7s %-15s %-5s %6s %7s\n", n sh, num(med), num(jget($0, "min")) "-" num(jget($0, "max")), jget($0, "unit"), (jget($0, "baseline") == "" ? "-" : jget($0, "baseline")), num(jget($0, "baseline_median")), (jget($0, "ratio") == "" ? "-" : sprintf("%.3f", jget($0, "ratio"))), tgt(jget($0, "target"), jget($0, "target_abs")), verdict(jget($0, "ratio"), jget($0, "target"), med, jget($0, "target_abs")), hop, ch
}' "$tmp/rows"
echo "(ratio = median / baseline median, both from this run; target applies to the ratio, absN to the median; * = threads share a core; vs prev = median against the last run in bench/history)"
echo "bench: ${elapsed} s; load average before: ${load_before}, after: ${load_after}; $(nproc) CPUs"

json_str() { printf '"%s"' "$(printf '%s' "$1" | sed 's/\\/\\\\/g; s/"/\\"/g')"; }

if [ -z "$row" ] && [ -z "$tiny" ]; then
  ts=$(date -u +%Y%m%dT%H%M%SZ)
  cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
  cc_v=$(${CC:-cc} --version 2>/dev/null | head -n 1)
  lj_v=$(luajit -v 2>/dev/null | head -n 1)
  commit=$(git rev-parse --short HEAD 2>/dev/null)
  ok=true
  [ ${#failed[@]} -gt 0 ] && ok=false
  {
    echo "{"
    echo "  \"timestamp\": \"$ts\","
    echo "  \"ok\": $ok,"
    echo "  \"failed\": [$(for f in "${failed[@]}"; do printf '"%s",' "$f"; done | sed 's/,$//')],"
    echo "  \"machine\": {"
    echo "    \"cpu_model\": $(json_str "$cpu"),"
    echo "    \"cores\": $(nproc),"
    echo "    \"kernel\": $(json_str "$(uname -r)"),"
    echo "    \"compiler\": $(json_str "$cc_v"),"
    echo "    \"luajit\": $(json_str "$lj_v"),"
    echo "    \"commit\": $(json_str "$commit"),"
    echo "    \"loadavg_before\": $(json_str "$load_before"),"
    echo "    \"loadavg_after\": $(json_str "$load_after"),"
    echo "    \"seconds\": $elapsed"
    echo "  },"
    echo "  \"rows\": ["
    sed '$!s/$/,/; s/^/    /' "$tmp/rows"
    echo "  ]"
    echo "}"
  } >bench/results.json
  echo "bench: wrote bench/results.json"
  if [ "$ok" = true ]; then
    mkdir -p bench/history
    cp bench/results.json "bench/history/$ts.json"
    echo "bench: copied it to bench/history/$ts.json"
  fi
fi

if [ ${#failed[@]} -gt 0 ]; then
  echo "!!!!!!!! BENCH FAILED: ${failed[*]} (a correctness check failed or the run crashed: its figures mean nothing) !!!!!!!!"
  exit 1
fi
exit 0
