#!/usr/bin/env bash
# spec/e2e/fuzz_smoke.sh: builds the libFuzzer target of the link's frame
# decoder and handshake parser (clang -fsanitize=fuzzer,address,undefined),
# replays the corpus kept in spec/fuzz/corpus, then fuzzes for
# NB_FUZZ_SECONDS (default 20). Ends with "N passed, M failed".
set -u
top=$(cd "$(dirname "$0")/../.." && pwd)
cd "$top" || exit 1
passed=0 failed=0
secs=${NB_FUZZ_SECONDS:-20}
bin=build/fuzz/fuzz_frames
log=$(mktemp -d)
trap 'rm -rf "$log"' EXIT

ok() { echo "ok - $1"; passed=$((passed + 1)); }
bad() {
  echo "not ok - $1"
  failed=$((failed + 1))
  [ -f "${2:-}" ] && tail -n 30 "$2" | sed 's/^/    /'
}
finish() { echo "$passed passed, $failed failed"; [ "$failed" -eq 0 ]; exit $?; }

# 1. It builds (make installs clang and the fuzzer runtime when missing).
if make -s fuzz-build >"$log/build" 2>&1 && [ -x "$bin" ]; then
  ok "fuzz target builds with clang -fsanitize=fuzzer,address,undefined"
else
  bad "fuzz target builds" "$log/build"
  finish
fi

# 2. The kept corpus is there and replays without a finding.
n=$(find spec/fuzz/corpus -type f | wc -l)
if [ "$n" -ge 10 ]; then ok "corpus holds $n seeds"; else bad "corpus holds $n seeds (want >= 10)"; fi
if "$bin" -runs=0 -artifact_prefix="$log/" spec/fuzz/corpus >"$log/replay" 2>&1; then
  ok "corpus replays clean"
else
  bad "corpus replays clean" "$log/replay"
fi

# 3. Fresh inputs for a while: no crash, no leak, no verdict mismatch.
mkdir -p "$log/new"
if "$bin" -max_total_time="$secs" -max_len=16384 -print_final_stats=1 \
    -timeout=20 -rss_limit_mb=2048 -artifact_prefix="$log/" \
    "$log/new" spec/fuzz/corpus >"$log/fuzz" 2>&1; then
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log/fuzz")
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log/fuzz")
  if [ "${runs:-0}" -gt 1000 ]; then
    ok "fuzzed ${secs}s: $runs inputs, $rate exec/s, no finding"
  else
    bad "fuzzed ${secs}s but only ${runs:-0} inputs ran" "$log/fuzz"
  fi
else
  for f in "$log"/crash-* "$log"/leak-* "$log"/timeout-* "$log"/oom-*; do
    [ -f "$f" ] && mkdir -p build/fuzz && cp "$f" build/fuzz/ && echo "    kept build/fuzz/$(basename "$f")"
  done
  bad "fuzzing found a failure" "$log/fuzz"
fi
finish
