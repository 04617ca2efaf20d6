/* bench_lua.c: the Lua agent rows. The same topologies as bench_cortex.c
 * (one hop, producer -> relay -> sink, 1 -> 8 fan-out, ping-pong), run
 * with Lua agents (the scripts in bench/lua/, one LuaJIT state per neuron) by the
 * runtime's C API in this process, each interleaved with the C-agent
 * topology as its in-run baseline.
 *
 * Correctness: every Lua sink checks each spike is the next one of its
 * source (sequence, source, payload) and raises otherwise; after each run
 * the bench requires zero agent errors, exactly n spikes into every sink
 * and out of the producer (and relay). Run from the repository root (or
 * set NB_BENCH_ROOT): the agents live in bench/lua/, the modules in lua/. */
#include <limits.h>
#include <sys/stat.h>

#include "bench.h"
#include "bench_cortex.h"
#include "nb_rt.h"

static char root[PATH_MAX];
static char tmpdir[PATH_MAX];

/* Finds the repository root and points the runtime at lua/; fails the
 * bench when bench/lua/ cannot be found. */
static void lua_setup(void) {
  if (root[0]) return;
  const char *env = getenv("NB_BENCH_ROOT");
  if (env && *env) snprintf(root, sizeof root, "%s", env);
  else if (!getcwd(root, sizeof root)) nb_bench_fail("getcwd: %s", strerror(errno));
  char probe[PATH_MAX + 32];
  struct stat st;
  snprintf(probe, sizeof probe, "%s/bench/lua/producer.lua", root);
  if (stat(probe, &st) != 0)
    nb_bench_fail("cannot find %s: run from the repository root or set "
                  "NB_BENCH_ROOT", probe);
  snprintf(probe, sizeof probe, "%s/lua", root);
  setenv("NB_LUA_PATH", probe, 0); /* the runtime's own guess is relative to
                                      its binary, which lives deeper here */
  snprintf(tmpdir, sizeof tmpdir, "/tmp/nb_bench_lua.XXXXXX");
  if (!mkdtemp(tmpdir)) nb_bench_fail("mkdtemp: %s", strerror(errno));
}

/* Removes the manifest directory at exit. */
static void lua_cleanup(void) {
  if (!tmpdir[0]) return;
  char path[PATH_MAX + 32];
  snprintf(path, sizeof path, "%s/topo.lua", tmpdir);
  unlink(path);
  rmdir(tmpdir);
}

/* Writes src as the manifest, opens it; returns the runtime or fails. */
static nb_rt_t *open_topo(const char *src) {
  char path[PATH_MAX + 32];
  snprintf(path, sizeof path, "%s/topo.lua", tmpdir);
  FILE *f = fopen(path, "w");
  if (!f || fputs(src, f) < 0 || fclose(f) != 0)
    nb_bench_fail("cannot write %s: %s", path, strerror(errno));
  nb_rt_opts_t o;
  memset(&o, 0, sizeof o);
  o.quiet = 1;
  char *err = NULL;
  nb_rt_t *rt = nb_rt_open(path, &o, &err);
  if (!rt) nb_bench_fail("nb_rt_open: %s", err ? err : "(no message)");
  return rt;
}

/* Returns the id of name in rt, or fails the bench. */
static uint32_t rt_id(nb_rt_t *rt, const char *name) {
  int id = nb_rt_id(rt, name);
  if (id < 0) nb_bench_fail("no neuron %s in the bench topology", name);
  return (uint32_t)id;
}

/* Returns neuron id's counters after checking it had no agent error. */
static nb_rt_stat_t rt_stat(nb_rt_t *rt, uint32_t id) {
  nb_rt_stat_t st;
  if (nb_rt_stat(rt, id, &st) != 0) nb_bench_fail("nb_rt_stat(%u) failed", id);
  if (st.errors) {
    char *e = nb_rt_errors(rt, id);
    nb_bench_fail("Lua agent %s: %" PRIu64 " error(s): %.300s", nb_rt_name(rt, id),
                  st.errors, e ? e : "");
  }
  return st;
}

/* ---- throughput topologies ---- */

/* Extra manifest keys every Lua neuron of the next topology gets (the
 * jit = false rows set it around their runs), "" for none. */
static const char *agent_keys = "";

/* Builds the manifest of t with Lua agents (ids follow the sorted names:
 * a_producer 0, b_relay 1 when present, then the sinks). */
static void topo_manifest(const nb_bench_topo_t *t, char *out, size_t size) {
  int relay = t->relay;
  int first_sink = relay ? 2 : 1;
  /* Without a target the producer broadcasts (the fan-out). */
  char target[32] = "";
  if (t->sinks == 1) snprintf(target, sizeof target, ", target = 1"); /* relay or sink */
  size_t o = 0;
  o += (size_t)snprintf(out + o, size - o,
      "return {\n  name = 'bench', tick = 'free',\n"
      "  axon = { capacity = %u, inbox = %u },\n  neurons = {\n"
      "    a_producer = { script = '%s/bench/lua/producer.lua', threshold = 0,"
      " refractory = 0, config = { n = %" PRIu64 ", batch = %u%s }%s },\n",
      NB_BENCH_CX_CAP, NB_BENCH_CX_CAP, root, t->n, NB_BENCH_CX_BATCH, target,
      agent_keys);
  if (relay)
    o += (size_t)snprintf(out + o, size - o,
        "    b_relay = { script = '%s/bench/lua/relay.lua', refractory = 0,"
        " config = { next = %d }%s },\n", root, first_sink, agent_keys);
  for (int i = 0; i < t->sinks; i++)
    o += (size_t)snprintf(out + o, size - o,
        "    c_sink%d = { script = '%s/bench/lua/sink.lua', refractory = 0,"
        " config = { source = %d }%s },\n", i + 1, root, relay ? 1 : 0,
        agent_keys);
  o += (size_t)snprintf(out + o, size - o, "  },\n  synapses = {\n");
  if (relay)
    o += (size_t)snprintf(out + o, size - o,
        "    { from = 'a_producer', to = 'b_relay', weight = 0.5 },\n"
        "    { from = 'b_relay', to = 'c_sink1', weight = 0.5 },\n");
  else
    for (int i = 0; i < t->sinks; i++)
      o += (size_t)snprintf(out + o, size - o,
          "    { from = 'a_producer', to = 'c_sink%d', weight = 0.5 },\n", i + 1);
  snprintf(out + o, size - o, "  },\n}\n");
}

/* Runs topology t once with Lua agents; returns millions of spikes per
 * second arriving at the sinks (summed). Fails the bench on any agent
 * error or a count that is off. */
static double topo_lua_run(void *ctx) {
  nb_bench_topo_t *t = ctx;
  char src[16 * PATH_MAX];
  topo_manifest(t, src, sizeof src);
  nb_rt_t *rt = open_topo(src);
  uint32_t prod = rt_id(rt, "a_producer");
  uint32_t relay = t->relay ? rt_id(rt, "b_relay") : 0;
  uint32_t sinks[NB_BENCH_CX_MAX_SINKS];
  char name[32];
  for (int i = 0; i < t->sinks; i++) {
    snprintf(name, sizeof name, "c_sink%d", i + 1);
    sinks[i] = rt_id(rt, name);
  }
  if (prod != 0 || (t->relay && relay != 1) || sinks[0] != (t->relay ? 2u : 1u))
    nb_bench_fail("bench topology ids are not in name order");
  uint64_t max_ticks = 4 * (t->n / NB_BENCH_CX_BATCH + 1) + 1000, ticks = 0;
  uint64_t t0 = nb_bench_now_ns();
  for (;;) {
    int64_t rc = nb_rt_tick(rt, 1);
    if (rc < 0) nb_bench_fail("nb_rt_tick: %s", nb_strerror((int)rc));
    /* Cheap: counters are plain fields; checked every tick so the clock
     * stops at the last delivery. */
    int done = 1;
    for (int i = 0; i < t->sinks && done; i++) {
      nb_rt_stat_t st;
      nb_rt_stat(rt, sinks[i], &st);
      if (st.spikes_in < t->n) done = 0;
      if (st.errors) rt_stat(rt, sinks[i]);
    }
    if (done) break;
    if (++ticks > max_ticks) {
      nb_rt_stat_t st = rt_stat(rt, sinks[0]);
      nb_bench_fail("Lua topology: %" PRIu64 " ticks and sink 1 has %" PRIu64
                    " of %" PRIu64 " spikes: lost", ticks, st.spikes_in, t->n);
    }
  }
  uint64_t ns = nb_bench_now_ns() - t0;
  nb_rt_stat_t ps = rt_stat(rt, prod);
  if (ps.spikes_out != t->n)
    nb_bench_fail("Lua producer sent %" PRIu64 " of %" PRIu64, ps.spikes_out, t->n);
  if (t->relay) {
    nb_rt_stat_t rs = rt_stat(rt, relay);
    if (rs.spikes_in != t->n || rs.spikes_out != t->n)
      nb_bench_fail("Lua relay: %" PRIu64 " in, %" PRIu64 " out of %" PRIu64,
                    rs.spikes_in, rs.spikes_out, t->n);
  }
  for (int i = 0; i < t->sinks; i++) {
    nb_rt_stat_t st = rt_stat(rt, sinks[i]);
    if (st.spikes_in != t->n)
      nb_bench_fail("Lua sink %d got %" PRIu64 " of %" PRIu64, i + 1,
                    st.spikes_in, t->n);
  }
  nb_rt_close(rt);
  return (double)t->n * t->sinks / ((double)ns / 1e9) / 1e6;
}

/* Measures topology t with Lua agents against C agents and emits a row. */
static void lua_row(const char *name, nb_bench_topo_t t, const char *base,
                    const char *target, const char *target_abs,
                    const char *note) {
  lua_setup();
  nb_bench_topo_t c = t;
  nb_bench_row_t r = nb_bench_row(name, "M spikes/s");
  nb_bench_measure(topo_lua_run, &t, &t.n, nb_bench_topo_c_run, &c, &c.n, &r.v,
                   &r.b);
  r.baseline = base;
  r.target = target;
  r.target_abs = target_abs;
  r.note = note;
  nb_bench_emit(&r);
}

static void group_hop(void) {
  lua_row("lua_hop",
          nb_bench_topo(nb_bench_size(4u << 20, 1u << 14), 1, 0, 0, NB_BENCH_FIRE_EACH),
          "c_hop_fire", ">=0.25", ">=30",
          "Lua producer (nb:fire_to per spike, 1024 per tick) -> synapse -> Lua "
          "sink (on_spike checks each), one thread; baseline: the same with C "
          "agents (as cortex_route_fire)");
}

static void group_chain(void) {
  lua_row("lua_chain",
          nb_bench_topo(nb_bench_size(2u << 20, 1u << 13), 1, 1, 0, NB_BENCH_FIRE_EACH),
          "c_chain", NULL, NULL,
          "Lua producer -> Lua relay (nb:fire_to(next, spike:payload())) -> Lua "
          "sink; baseline: the same chain with C agents");
}

static void group_fanout(void) {
  lua_row("lua_fanout8",
          nb_bench_topo(nb_bench_size(1u << 19, 1u << 12), 8, 0, 0, NB_BENCH_FIRE_EACH),
          "c_fanout8", NULL, NULL,
          "one Lua producer (nb:broadcast) -> 8 Lua sinks, deliveries/s summed; "
          "baseline: the same with C agents");
}

/* ---- the cost of jit = false (issue 4) ---- */

/* A topology run with extra keys on every Lua neuron. */
typedef struct lua_mode_s {
  nb_bench_topo_t t;
  const char *keys; /* e.g. ", jit = false" */
} lua_mode_t;

/* Runs m's topology with Lua agents and m's keys; returns M spikes/s. */
static double topo_lua_mode_run(void *ctx) {
  lua_mode_t *m = ctx;
  agent_keys = m->keys;
  double v = topo_lua_run(&m->t);
  agent_keys = "";
  return v;
}

/* Measures the one-hop Lua topology with keys against the same topology
 * with the JIT on (the default), interleaved in this run; emits a row. */
static void lua_mode_row(const char *name, const char *keys, const char *note) {
  lua_setup();
  /* Sized for the slower interpreter; both sides run the same n. */
  lua_mode_t sub = {nb_bench_topo(nb_bench_size(1u << 20, 1u << 13), 1, 0, 0,
                                  NB_BENCH_FIRE_EACH), keys};
  lua_mode_t jit = {sub.t, ""};
  nb_bench_row_t r = nb_bench_row(name, "M spikes/s");
  nb_bench_measure(topo_lua_mode_run, &sub, &sub.t.n, topo_lua_mode_run, &jit,
                   &jit.t.n, &r.v, &r.b);
  r.baseline = "lua_hop_jit";
  r.note = note;
  nb_bench_emit(&r);
}

static void group_nojit(void) {
  lua_mode_row("lua_hop_nojit", ", jit = false",
               "the lua_hop topology (Lua producer nb:fire_to per spike -> Lua "
               "sink checking each) with jit = false on both agents: the "
               "interpreter only; baseline: the same agents with the JIT on, "
               "interleaved in this run");
}

static void group_budget(void) {
  lua_mode_row("lua_hop_budget", ", budget = '1s'",
               "the same with budget = '1s' on both agents (JIT off and the "
               "count hook every 1000 instructions checking the deadline); "
               "baseline: the JIT on, interleaved in this run");
}

/* ---- ping-pong ---- */

typedef struct lua_pp_s {
  uint64_t iters;
  double *samples;
} lua_pp_t;

/* Runs iters ping-pong exchanges between two Lua agents; returns the median
 * round trip in ns, timed per ball from the driving loop like the C row. */
static double pingpong_lua_run(void *ctx) {
  lua_pp_t *pp = ctx;
  char src[3 * PATH_MAX + 512];
  snprintf(src, sizeof src,
           "return {\n  name = 'bench_pp', tick = 'free',\n  neurons = {\n"
           "    a_ping = { script = '%s/bench/lua/ping.lua', refractory = 0,"
           " config = { n = %" PRIu64 ", peer = 1 } },\n"
           "    b_pong = { script = '%s/bench/lua/pong.lua', refractory = 0 },\n"
           "  },\n}\n", root, pp->iters, root);
  nb_rt_t *rt = open_topo(src);
  uint32_t ping = rt_id(rt, "a_ping"), pong = rt_id(rt, "b_pong");
  if (ping != 0 || pong != 1) nb_bench_fail("ping-pong ids are not in name order");
  int rc = nb_rt_inject(rt, ping, pong, 0, 0, "NBbench!", 8);
  if (rc) nb_bench_fail("nb_rt_inject: %s", nb_strerror(rc));
  double ns_per_tick = nb_bench_ns_per_tick();
  uint64_t ticks = 0, seen = 0, k = 0, prev = nb_bench_ticks();
  while (seen < pp->iters) {
    if (ticks++ > 4 * pp->iters + 100)
      nb_bench_fail("Lua ping-pong: %" PRIu64 " of %" PRIu64 " came back", seen,
                    pp->iters);
    int64_t r = nb_rt_tick(rt, 1);
    if (r < 0) nb_bench_fail("nb_rt_tick: %s", nb_strerror((int)r));
    nb_rt_stat_t st;
    nb_rt_stat(rt, ping, &st);
    if (st.errors) rt_stat(rt, ping);
    if (st.spikes_in != seen) {
      uint64_t now = nb_bench_ticks();
      if (k < pp->iters) pp->samples[k] = (double)(now - prev) * ns_per_tick;
      k++;
      prev = now;
      seen = st.spikes_in;
    }
  }
  rt_stat(rt, pong);
  if (k != pp->iters || seen != pp->iters)
    nb_bench_fail("Lua ping-pong: %" PRIu64 " samples for %" PRIu64 " balls", k, seen);
  nb_rt_close(rt);
  nb_bench_summarize(pp->samples, (int)pp->iters);
  return nb_bench_quantile(pp->samples, pp->iters, 0.5);
}

static void group_pingpong(void) {
  lua_setup();
  lua_pp_t lp = {nb_bench_size(50000, 1000), NULL};
  lp.samples = nb_bench_alloc(lp.iters * sizeof(double));
  nb_bench_cxpp_t cp;
  memset(&cp, 0, sizeof cp);
  cp.iters = lp.iters;
  cp.samples = nb_bench_alloc(cp.iters * sizeof(double));
  nb_bench_row_t r = nb_bench_row("lua_pingpong", "ns round trip");
  r.lower_is_better = 1;
  nb_bench_measure(pingpong_lua_run, &lp, &lp.iters, nb_bench_cxpp_c_run, &cp,
                   &cp.iters, &r.v, &r.b);
  r.baseline = "c_pingpong";
  r.note = "p50 round trip between two Lua agents in the single-threaded "
           "runtime tick (2 ticks per exchange); baseline: two C agents";
  nb_bench_emit(&r);
  free(lp.samples);
  free(cp.samples);
}

static const nb_bench_group_t groups[] = {
    {"lua_hop", group_hop},
    {"lua_chain", group_chain},
    {"lua_fanout8", group_fanout},
    {"lua_pingpong", group_pingpong},
    {"lua_hop_nojit", group_nojit},
    {"lua_hop_budget", group_budget},
    /* Extension point: further Lua rows go here as groups (or in their
     * own bench binary, as the reload pause did: bench_reload.c). */
};

int main(int argc, char **argv) {
  atexit(lua_cleanup);
  return nb_bench_main(argc, argv, groups, sizeof groups / sizeof groups[0]);
}
