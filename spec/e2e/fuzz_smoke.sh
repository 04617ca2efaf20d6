#!/usr/bin/env bash
# spec/e2e/fuzz_smoke.sh: the libFuzzer targets run without libFuzzer, so
# make test needs no clang: make fuzz-replay builds each with cc, ASan and
# UBSan and spec/fuzz/replay.c, which replays the target's kept corpus,
# then seeded mutations of it:
#   - the link's frame decoder and handshake parser (fuzz_frames.c, corpus
#     spec/fuzz/corpus, NB_FUZZ_MUTATIONS mutations, default 200000);
#   - the statistics' JSON writer (fuzz_stats.c: the line always parses,
#     whatever bytes the names hold; spec/fuzz/corpus_stats,
#     NB_FUZZ_STATS_MUTATIONS, default 50000);
#   - opening and using an arena file (fuzz_arena.c: the error an oracle
#     expects, references inside the data region, a clean arena reads back
#     and ends all free; spec/fuzz/corpus_arena, NB_FUZZ_ARENA_MUTATIONS,
#     default 20000);
#   - the manifest loader as neuronbus check runs it (fuzz_manifest.c: no
#     crash, every refusal has one line of valid UTF-8 a problem;
#     spec/fuzz/corpus_manifest, NB_FUZZ_MANIFEST_MUTATIONS, default 3000).
# The seed changes per run (NB_FUZZ_SEED fixes it) and a failure names the
# command that replays it. Coverage-guided fuzzing is `make fuzz` (clang).
# Ends with "N passed, M failed".
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

# 7. The arena file's open path and what a process does with the file.
abin=build/fuzz/replay_arena
amuts=${NB_FUZZ_ARENA_MUTATIONS:-20000}
check "the arena replayer builds" test -x "$abin"
if [ -x "$abin" ]; then
  n=$(find spec/fuzz/corpus_arena -type f | wc -l)
  check "arena corpus holds $n seeds (>= 20)" test "$n" -ge 20
  "$abin" spec/fuzz/corpus_arena >"$work/out" 2>"$work/err"; rc=$?
  check "arena corpus replays clean" test "$rc" -eq 0
  "$abin" --mutate "$amuts" --seed "$seed" spec/fuzz/corpus_arena >"$work/out" 2>"$work/err"; rc=$?
  check "$amuts arena mutations clean (replay: $abin --mutate $amuts --seed $seed spec/fuzz/corpus_arena)" \
    test "$rc" -eq 0
fi

# 8. The manifest loader (run from the top: the agent scripts it names are
# spec/fixtures/runtime's).
mbin=build/fuzz/replay_manifest
mmuts=${NB_FUZZ_MANIFEST_MUTATIONS:-3000}
check "the manifest replayer builds" test -x "$mbin"
if [ -x "$mbin" ]; then
  n=$(find spec/fuzz/corpus_manifest -type f | wc -l)
  check "manifest corpus holds $n seeds (>= 20)" test "$n" -ge 20
  "$mbin" spec/fuzz/corpus_manifest >"$work/out" 2>"$work/err"; rc=$?
  check "manifest corpus replays clean" test "$rc" -eq 0
  "$mbin" --mutate "$mmuts" --seed "$seed" spec/fuzz/corpus_manifest >"$work/out" 2>"$work/err"; rc=$?
  check "$mmuts manifest mutations clean (replay: $mbin --mutate $mmuts --seed $seed spec/fuzz/corpus_manifest)" \
    test "$rc" -eq 0
fi
finish
