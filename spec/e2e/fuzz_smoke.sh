#!/usr/bin/env bash
# spec/e2e/fuzz_smoke.sh: the libFuzzer targets of the link's frame decoder
# and handshake parser (spec/fuzz/fuzz_frames.c) and of the statistics'
# JSON writer (spec/fuzz/fuzz_stats.c: the line always parses, whatever
# bytes the names hold; corpus spec/fuzz/corpus_stats, NB_FUZZ_STATS_MUTATIONS
# mutations, default 50000), run without libFuzzer so
# make test needs no clang: make fuzz-replay builds it with cc, ASan and
# UBSan (spec/fuzz/replay.c), which replays the corpus kept in
# spec/fuzz/corpus, then NB_FUZZ_MUTATIONS (default 200000) seeded
# mutations of it. The seed changes per run (NB_FUZZ_SEED fixes it) and a
# failure names the command that replays it. Coverage-guided fuzzing is
# `make fuzz` (clang). Ends with "N passed, M failed".
set -u
top=$(cd "$(dirname "$0")/../.." && pwd)
cd "$top" || exit 1
. spec/e2e/lib.bash
muts=${NB_FUZZ_MUTATIONS:-200000}
seed=${NB_FUZZ_SEED:-$(date +%s)}
bin=build/fuzz/replay_frames
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# 1. It builds with the base toolchain.
make -s fuzz-replay >"$work/out" 2>"$work/err"
check "the replayer builds with cc -fsanitize=address,undefined" test -x "$bin"
[ -x "$bin" ] || { finish; exit; }

# 2. The kept corpus is there.
n=$(find spec/fuzz/corpus -type f | wc -l)
check "corpus holds $n seeds (>= 10)" test "$n" -ge 10

# 3. The sanitizer is live: a read past a heap block aborts the replayer.
"$bin" --plant-overflow >"$work/out" 2>"$work/err"; rc=$?
check "the replayer runs under ASan (a planted overflow aborts it)" \
  test "$rc" -ne 0 -a -n "$(grep -m1 'heap-buffer-overflow' "$work/err")"

# 4. The corpus replays without a finding.
"$bin" spec/fuzz/corpus >"$work/out" 2>"$work/err"; rc=$?
check "corpus replays clean" test "$rc" -eq 0

# 5. Mutations of it: no crash, no leak, no verdict that depends on the cut.
"$bin" --mutate "$muts" --seed "$seed" spec/fuzz/corpus >"$work/out" 2>"$work/err"; rc=$?
check "$muts mutations clean (replay: $bin --mutate $muts --seed $seed spec/fuzz/corpus)" \
  test "$rc" -eq 0

# 6. The statistics' JSON writer: its corpus and mutations of it.
sbin=build/fuzz/replay_stats
smuts=${NB_FUZZ_STATS_MUTATIONS:-50000}
check "the stats replayer builds" test -x "$sbin"
if [ -x "$sbin" ]; then
  "$sbin" spec/fuzz/corpus_stats >"$work/out" 2>"$work/err"; rc=$?
  check "stats corpus replays clean (every line parses)" test "$rc" -eq 0
  "$sbin" --mutate "$smuts" --seed "$seed" spec/fuzz/corpus_stats >"$work/out" 2>"$work/err"; rc=$?
  check "$smuts stats mutations clean (replay: $sbin --mutate $smuts --seed $seed spec/fuzz/corpus_stats)" \
    test "$rc" -eq 0
fi
finish
