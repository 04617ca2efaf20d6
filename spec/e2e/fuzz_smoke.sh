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
#     spec/fuzz/corpus_manifest, NB_FUZZ_MANIFEST_MUTATIONS, default 3000);
#   - the TCP link session (fuzz_link.c: a listening node, a good peer
#     node and scripted callers on loopback, on a virtual clock; per link
#     sent == acked + lost + queued + in_doubt, no link taken over without
#     the secret, the connections back to the baseline at the end;
#     spec/fuzz/corpus_link, NB_FUZZ_LINK_MUTATIONS, default 5000);
#   - the NATS messages' decoder (fuzz_nats.c: counts and bounds of
#     batches and cards, round trips, every prefix of an accepted message
#     refused; spec/fuzz/corpus_nats, NB_FUZZ_NATS_MUTATIONS, default
#     50000);
#   - the links' authentication and records alone (fuzz_link_auth.c:
#     verdicts independent of the cut, sticky failures with a reason,
#     sealed bytes open to themselves; spec/fuzz/corpus_link_auth,
#     NB_FUZZ_LINK_AUTH_MUTATIONS, default 30000).
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

# Replays target NAME (its replayer build/fuzz/replay_NAME) over its
# corpus DIR, which holds at least MIN seeds, then MUTS mutations of it.
replay_target() {
  local name=$1 dir=$2 min=$3 muts=$4 bin=build/fuzz/replay_$1 n rc
  check "the $name replayer builds" test -x "$bin"
  [ -x "$bin" ] || return
  n=$(find "$dir" -type f | wc -l)
  check "$name corpus holds $n seeds (>= $min)" test "$n" -ge "$min"
  "$bin" "$dir" >"$work/out" 2>"$work/err"; rc=$?
  check "$name corpus replays clean" test "$rc" -eq 0
  "$bin" --mutate "$muts" --seed "$seed" "$dir" >"$work/out" 2>"$work/err"; rc=$?
  check "$muts $name mutations clean (replay: $bin --mutate $muts --seed $seed $dir)" \
    test "$rc" -eq 0
}

# 6. The statistics' JSON writer: every line parses.
replay_target stats spec/fuzz/corpus_stats 5 "${NB_FUZZ_STATS_MUTATIONS:-50000}"
# 7. The arena file's open path and what a process does with the file.
replay_target arena spec/fuzz/corpus_arena 20 "${NB_FUZZ_ARENA_MUTATIONS:-20000}"
# 8. The manifest loader (run from the top: the agent scripts it names are
# spec/fixtures/runtime's).
replay_target manifest spec/fuzz/corpus_manifest 20 "${NB_FUZZ_MANIFEST_MUTATIONS:-3000}"
# 9. The link session: nodes and scripted callers on loopback.
replay_target link spec/fuzz/corpus_link 25 "${NB_FUZZ_LINK_MUTATIONS:-5000}"
# 10. The authentication and records alone, in each state.
replay_target link_auth spec/fuzz/corpus_link_auth 12 "${NB_FUZZ_LINK_AUTH_MUTATIONS:-30000}"
# 11. The NATS messages a runtime reads from the cluster's subjects.
replay_target nats spec/fuzz/corpus_nats 20 "${NB_FUZZ_NATS_MUTATIONS:-50000}"
finish
