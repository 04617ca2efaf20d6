/* bench_reload.c: the hot reload pause (issue 4). A Lua chain producer ->
 * relay -> sink (bench/lua/, 1024 spikes per tick) keeps flowing while the
 * relay is reloaded; the pause is the time from the reload's start to the
 * moment the new version handles its first spike, stamped by the new
 * version itself (CLOCK_MONOTONIC, bench/lua/relay_reload.lua).
 *
 *   reload_pause       the new version compiled with nb_rt_reload_prepare
 *                      while the chain ticks on (as `neuronbus run` does
 *                      on the thread pool), then nb_rt_reload_commit
 *                      between ticks: from the commit to the relay's first
 *                      spike (the chunk run, on_reload, the state's traces
 *                      flushed, the next tick up to that spike); the note
 *                      gives the compile and that whole first tick
 *   reload_pause_file  `neuronbus run`'s loop (nb_rt_run, free-running):
 *                      from the relay writing its own next version (a new
 *                      file renamed over the script) through the directory
 *                      watch and its 20 ms debounce to the first spike
 *
 * Baseline of both: tick_latency, the median wall time of one tick of the
 * same topology in steady state (the normal per-tick latency), measured
 * interleaved in the same run.
 *
 * Correctness: every run ends with nb_rt_stop (pending spikes delivered)
 * and requires zero agent errors, the sink (which checks each spike's
 * sequence, source and payload) to have received exactly what the relay
 * sent and the relay exactly what the producer sent, and the relay at the
 * expected version with no rejected reload. Run from the repository root
 * (or set NB_BENCH_ROOT). */
#include "bench.h"
#include "bench_rt.h"

#define BATCH 1024u /* spikes the producer fires per tick (as bench_lua) */
#define CAP 4096u   /* axon and inbox capacity */

/* What runs leave in the temp dir besides topo.lua (file_run's relay). */
static const char *const tmp_files[] = {"relay.lua", "relay.lua.new", NULL};

/* Returns the whole file at path (malloc'd), or fails the bench. */
static char *slurp(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) nb_bench_fail("cannot read %s: %s", path, strerror(errno));
  char *buf = NULL;
  size_t n = 0, cap = 0;
  for (;;) {
    if (cap - n < 4096) {
      cap = cap ? cap * 2 : 8192;
      buf = realloc(buf, cap);
      if (!buf) nb_bench_fail("out of memory");
    }
    size_t got = fread(buf + n, 1, cap - n - 1, f);
    n += got;
    if (got == 0) break;
  }
  fclose(f);
  buf[n] = 0;
  return buf;
}

/* Writes text to path, or fails the bench. */
static void spill(const char *path, const char *text) {
  FILE *f = fopen(path, "wb");
  if (!f || fputs(text, f) < 0 || fclose(f) != 0)
    nb_bench_fail("cannot write %s: %s", path, strerror(errno));
}

/* Opens the chain a_producer (0) -> b_relay (1) -> c_sink (2) with the
 * relay script at relay and extra Lua fields in its config; returns the
 * runtime or fails. */
static nb_rt_t *open_chain(const char *relay, const char *relay_config) {
  char src[4 * PATH_MAX + 1024];
  snprintf(src, sizeof src,
      "return {\n  name = 'bench_reload', tick = 'free',\n"
      "  axon = { capacity = %u, inbox = %u },\n  neurons = {\n"
      "    a_producer = { script = '%s/bench/lua/producer.lua', threshold = 0,"
      " refractory = 0, config = { n = 1e15, batch = %u, target = 1 } },\n"
      "    b_relay = { script = '%s', refractory = 0,"
      " config = { next = 2%s } },\n"
      "    c_sink = { script = '%s/bench/lua/sink.lua', refractory = 0,"
      " config = { source = 1 } },\n  },\n  synapses = {\n"
      "    { from = 'a_producer', to = 'b_relay', weight = 0.5 },\n"
      "    { from = 'b_relay', to = 'c_sink', weight = 0.5 },\n  },\n}\n",
      CAP, CAP, nb_bench_rt_root, BATCH, relay, relay_config, nb_bench_rt_root);
  nb_rt_t *rt = nb_bench_rt_open(src);
  if (nb_rt_id(rt, "a_producer") != 0 || nb_rt_id(rt, "b_relay") != 1 ||
      nb_rt_id(rt, "c_sink") != 2)
    nb_bench_fail("bench_reload topology ids are not in name order");
  return rt;
}

/* Runs one tick or fails. */
static void tick1(nb_rt_t *rt) {
  int64_t rc = nb_rt_tick(rt, 1);
  if (rc < 0) nb_bench_fail("nb_rt_tick: %s", nb_strerror((int)rc));
}

/* Stops rt (pending spikes delivered), checks that nothing was lost and
 * that the relay runs version `version` with no rejected reload, closes. */
static void finish(nb_rt_t *rt, uint32_t version) {
  nb_rt_stop(rt, 0);
  nb_rt_stat_t p = nb_bench_rt_stat(rt, 0), r = nb_bench_rt_stat(rt, 1),
               s = nb_bench_rt_stat(rt, 2);
  if (r.spikes_in != p.spikes_out || r.spikes_out != r.spikes_in ||
      s.spikes_in != r.spikes_out)
    nb_bench_fail("reload chain lost spikes: producer sent %" PRIu64 ", relay "
                  "got %" PRIu64 " and sent %" PRIu64 ", sink got %" PRIu64,
                  p.spikes_out, r.spikes_in, r.spikes_out, s.spikes_in);
  nb_rt_version_t v;
  nb_rt_version(rt, 1, &v);
  if (v.counter != version || v.rejected)
    nb_bench_fail("relay at version %u (%" PRIu64 " rejected), expected %u",
                  v.counter, v.rejected, version);
  nb_rt_close(rt);
}

/* ---- baseline: the normal per-tick latency ---- */

typedef struct tick_ctx_s {
  uint64_t ticks;  /* timed ticks per run */
  double *samples; /* us per tick */
} tick_ctx_t;

/* Returns the median wall time of one tick (us) of the chain in steady
 * state, after a warm-up that fills the pipeline and compiles the traces. */
static double tick_run(void *ctx) {
  tick_ctx_t *c = ctx;
  char relay[PATH_MAX + 40];
  snprintf(relay, sizeof relay, "%s/bench/lua/relay_reload.lua", nb_bench_rt_root);
  nb_rt_t *rt = open_chain(relay, "");
  for (int i = 0; i < 20; i++) tick1(rt);
  for (uint64_t i = 0; i < c->ticks; i++) {
    uint64_t t0 = nb_bench_now_ns();
    tick1(rt);
    c->samples[i] = (double)(nb_bench_now_ns() - t0) / 1e3;
  }
  finish(rt, 1);
  return nb_bench_summarize(c->samples, (int)c->ticks).median;
}

/* ---- reload_pause: prepared, then committed between ticks ---- */

typedef struct api_ctx_s {
  uint64_t reloads;  /* per run */
  double *samples;   /* us per reload */
  double *compiles;  /* us per nb_rt_reload_prepare */
  char *src;         /* relay_reload.lua */
  double compile_us; /* median of the last run's prepares */
  double *firsts;     /* us of the tick the new version first ran in */
  double first_us;    /* median of the last run's */
  double *commits;    /* us of each nb_rt_reload_commit call */
  double commit_us;   /* median of the last run's */
} api_ctx_t;

/* Reloads the relay `reloads` times while the chain flows: each new
 * version is compiled with nb_rt_reload_prepare (what `neuronbus run` does
 * on the thread pool while ticks go on), the chain ticks on the old
 * version, then nb_rt_reload_commit swaps it in between ticks; returns the
 * median pause (us) from the commit call to the new version's first
 * spike. */
static double api_run(void *ctx) {
  api_ctx_t *c = ctx;
  char relay[PATH_MAX + 40];
  snprintf(relay, sizeof relay, "%s/bench/lua/relay_reload.lua", nb_bench_rt_root);
  nb_rt_t *rt = open_chain(relay, "");
  for (int i = 0; i < 20; i++) tick1(rt);
  size_t len = strlen(c->src);
  char *src = malloc(len + 64);
  if (!src) nb_bench_fail("out of memory");
  for (uint64_t r = 0; r < c->reloads; r++) {
    /* a distinct source each time: each reload is a new version */
    snprintf(src, len + 64, "%s\n-- reload %" PRIu64 "\n", c->src, r);
    nb_rt_reload_prep_t *prep = NULL;
    char *err = NULL;
    uint64_t p0 = nb_bench_now_ns();
    if (nb_rt_reload_prepare(rt, 1, src, strlen(src), &prep, &err) != 0)
      nb_bench_fail("nb_rt_reload_prepare: %s", err ? err : "?");
    c->compiles[r] = (double)(nb_bench_now_ns() - p0) / 1e3;
    for (int i = 0; i < 3; i++) tick1(rt); /* the old version flows on */
    nb_rt_stat_t before = nb_bench_rt_stat(rt, 1);
    uint64_t t0 = nb_bench_now_ns();
    int rc = nb_rt_reload_commit(rt, prep, 1, &err);
    if (rc != 1) nb_bench_fail("nb_rt_reload_commit: %d: %s", rc, err ? err : "?");
    int waited = 0;
    uint64_t t1 = nb_bench_now_ns();
    c->commits[r] = (double)(t1 - t0) / 1e3;
    while (nb_bench_rt_stat(rt, 1).spikes_in == before.spikes_in) {
      if (++waited > 100) nb_bench_fail("the reloaded relay got no spike in 100 ticks");
      tick1(rt);
    }
    c->firsts[r] = (double)(nb_bench_now_ns() - t1) / 1e3;
    double first = nb_bench_rt_state_num(rt, 1, "first_ns");
    if (first < (double)t0) nb_bench_fail("the new version did not stamp its first spike");
    c->samples[r] = (first - (double)t0) / 1e3;
  }
  free(src);
  finish(rt, (uint32_t)c->reloads + 1);
  c->compile_us = nb_bench_summarize(c->compiles, (int)c->reloads).median;
  c->first_us = nb_bench_summarize(c->firsts, (int)c->reloads).median;
  c->commit_us = nb_bench_summarize(c->commits, (int)c->reloads).median;
  return nb_bench_summarize(c->samples, (int)c->reloads).median;
}

/* ---- reload_pause_file: the watch in nb_rt_run ---- */

/* Runs the chain on nb_rt_run's loop with a fresh copy of the relay that
 * rewrites itself after 64 batches; returns the pause (us) from the file
 * change to the new version's first spike. */
static double file_run(void *ctx) {
  api_ctx_t *c = ctx;
  char relay[PATH_MAX + 32], config[PATH_MAX + 128];
  snprintf(relay, sizeof relay, "%s/relay.lua", nb_bench_rt_tmpdir);
  spill(relay, c->src);
  snprintf(config, sizeof config,
           ", rewrite = %u, path = '%s', stop_after_reload = true", 64 * BATCH,
           relay);
  nb_rt_t *rt = open_chain(relay, config);
  FILE *out = fopen("/dev/null", "w");
  if (!out) nb_bench_fail("/dev/null: %s", strerror(errno));
  /* The new version ends the run (SIGTERM to this process); 60 s bounds a
   * watch that never fires, which then fails below. */
  nb_rt_run_opts_t o;
  memset(&o, 0, sizeof o);
  o.for_ns = 60000000000ull;
  o.out = out;
  int rc = nb_rt_run(rt, &o);
  fclose(out);
  if (rc) nb_bench_fail("nb_rt_run: %s", nb_strerror(rc));
  double changed = nb_bench_rt_state_num(rt, 1, "changed_ns");
  double first = nb_bench_rt_state_num(rt, 1, "first_ns");
  if (!(changed > 0 && first >= changed))
    nb_bench_fail("reload_pause_file: change at %.0f, first spike at %.0f", changed,
                  first);
  finish(rt, 2);
  return (first - changed) / 1e3;
}

/* ---- rows ---- */

static void group_reload(void) {
  nb_bench_rt_setup("relay_reload.lua", "reload", tmp_files);
  tick_ctx_t t = {nb_bench_size(200, 20), NULL};
  t.samples = nb_bench_alloc(t.ticks * sizeof(double));
  char path[PATH_MAX + 40];
  snprintf(path, sizeof path, "%s/bench/lua/relay_reload.lua", nb_bench_rt_root);
  api_ctx_t a = {nb_bench_size(20, 5), NULL, NULL, slurp(path), 0, NULL, 0, NULL, 0};
  a.samples = nb_bench_alloc(a.reloads * sizeof(double));
  a.compiles = nb_bench_alloc(a.reloads * sizeof(double));
  a.firsts = nb_bench_alloc(a.reloads * sizeof(double));
  a.commits = nb_bench_alloc(a.reloads * sizeof(double));
  /* --row picks one of the two: skip measuring the other */
  int api = !nb_bench.row || !strcmp(nb_bench.row, "reload_pause");
  int file = !nb_bench.row || !strcmp(nb_bench.row, "reload_pause_file");
  nb_bench_row_t r = nb_bench_row("reload_pause", "us");
  r.lower_is_better = 1;
  r.target = "<=1"; /* a reload pauses no longer than one ordinary tick */
  if (api) nb_bench_measure(api_run, &a, NULL, tick_run, &t, NULL, &r.v, &r.b);
  r.baseline = "tick_latency";
  static char note[900];
  snprintf(note, sizeof note,
           "a Lua relay reloaded while producer -> relay -> sink flows (1024 "
           "spikes per tick): the new version compiled off the pause "
           "(nb_rt_reload_prepare, median %.1f us in the last run, while the "
           "old version ticks), then nb_rt_reload_commit between ticks (load "
           "the bytecode, run the chunk, on_reload, flush every JIT trace of "
           "the state) and the next tick up to the new version's first "
           "spike; median over 20 reloads per run. The commit alone took "
           "%.1f us, that whole first tick, with the state's code compiled "
           "again, %.1f us (medians, last run). Baseline: the median wall "
           "time of one tick of the same topology", a.compile_us,
           a.commit_us, a.first_us);
  r.note = note;
  if (api) nb_bench_emit(&r);

  nb_bench_row_t f = nb_bench_row("reload_pause_file", "us");
  f.lower_is_better = 1;
  if (file) nb_bench_measure(file_run, &a, NULL, tick_run, &t, NULL, &f.v, &f.b);
  f.baseline = "tick_latency";
  f.note = "neuronbus run's loop: from the relay writing its next version (a "
           "new file renamed over the script) through the directory watch and "
           "its 20 ms debounce to the new version's first spike. Baseline: "
           "the median wall time of one tick of the same topology";
  if (file) nb_bench_emit(&f);
  free(t.samples);
  free(a.samples);
  free(a.compiles);
  free(a.firsts);
  free(a.commits);
  free(a.src);
}

static const nb_bench_group_t groups[] = {
    {"reload_pause reload_pause_file", group_reload},
};

int main(int argc, char **argv) {
  atexit(nb_bench_rt_cleanup);
  return nb_bench_main(argc, argv, groups, sizeof groups / sizeof groups[0]);
}
