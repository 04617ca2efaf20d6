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

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"
#include "bench_cortex.h"
#include "bench_rt.h"

/* ---- throughput topologies ---- */

/* Extra manifest keys every Lua neuron of the next topology gets (the
 * jit = false rows set it around their runs), "" for none. */
static const char *agent_keys = "";

/* Extra top-level manifest keys of the next topology ("" for none). */
static const char *top_keys = "";

/* The payload size the next topology's producer fires and its sinks check
 * (8 = the inline "NBbench!" of every other row; lua_hop_1k sets 1024
 * around its runs: the arena). */
static unsigned payload_size = 8;

/* Builds the manifest of t with Lua agents (ids follow the sorted names:
 * a_producer 0, b_relay 1 when present, then the sinks). */
static void topo_manifest(const nb_bench_topo_t *t, char *out, size_t size) {
  int relay = t->relay;
  int first_sink = relay ? 2 : 1;
  /* Without a target the producer broadcasts (the fan-out). */
  char target[32] = "";
  if (t->sinks == 1) snprintf(target, sizeof target, ", target = 1"); /* relay or sink */
  char psize[32] = ""; /* nothing for 8 bytes: the manifests stay as they were */
  if (payload_size != 8) snprintf(psize, sizeof psize, ", size = %u", payload_size);
  size_t o = 0;
  o += (size_t)snprintf(out + o, size - o,
      "return {\n  name = 'bench', tick = 'free',%s\n"
      "  axon = { capacity = %u, inbox = %u },\n  neurons = {\n"
      "    a_producer = { script = '%s/bench/lua/producer.lua', threshold = 0,"
      " refractory = 0, config = { n = %" PRIu64 ", batch = %u%s%s }%s },\n",
      top_keys, NB_BENCH_CX_CAP, NB_BENCH_CX_CAP, nb_bench_rt_root, t->n,
      NB_BENCH_CX_BATCH,
      target, psize, agent_keys);
  if (relay)
    o += (size_t)snprintf(out + o, size - o,
        "    b_relay = { script = '%s/bench/lua/relay.lua', refractory = 0,"
        " config = { next = %d }%s },\n", nb_bench_rt_root, first_sink, agent_keys);
  for (int i = 0; i < t->sinks; i++)
    o += (size_t)snprintf(out + o, size - o,
        "    c_sink%d = { script = '%s/bench/lua/sink.lua', refractory = 0,"
        " config = { source = %d%s }%s },\n", i + 1, nb_bench_rt_root, relay ? 1 : 0,
        psize, agent_keys);
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

/* The metrics row (lua_hop_metrics): 0 = the runtime's default (metrics
 * on, no endpoint), 1 = metrics off, 2 = metrics on with the HTTP endpoint
 * scraped every 100 ms by another thread. */
static int obs_mode;
static uint64_t obs_scrapes, obs_ns; /* scrapes seen, and over how long */
static uint64_t obs_n;               /* spikes per run of the metrics row */

/* The scraper of obs_mode 2: GET /metrics every 100 ms until stop. */
typedef struct scraper_s {
  pthread_t th;
  int port;
  _Atomic int stop, done;
  uint64_t scrapes, bytes, bad;
} scraper_t;

/* Scraper thread: counts whole 200 answers; returns NULL. */
static void *scrape_loop(void *arg) {
  scraper_t *sc = arg;
  char buf[65536];
  do { /* at least once: a tiny run may end before the thread starts */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)sc->port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    static const char req[] = "GET /metrics HTTP/1.0\r\n\r\n";
    ssize_t n, got = 0;
    int ok200 = 0;
    if (fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
        write(fd, req, sizeof req - 1) == (ssize_t)(sizeof req - 1)) {
      while ((n = read(fd, buf, sizeof buf)) > 0) {
        if (got == 0) ok200 = n > 12 && !memcmp(buf + 9, "200", 3);
        got += n;
      }
    }
    if (fd >= 0) close(fd);
    if (ok200) sc->scrapes++, sc->bytes += (uint64_t)got;
    else sc->bad++;
    struct timespec ts = {0, 100000000};
    if (!atomic_load(&sc->stop)) nanosleep(&ts, NULL);
  } while (!atomic_load(&sc->stop));
  atomic_store(&sc->done, 1);
  return NULL;
}

/* Runs topology t once with Lua agents; returns millions of spikes per
 * second arriving at the sinks (summed). Fails the bench on any agent
 * error or a count that is off. */
static double topo_lua_run(void *ctx) {
  nb_bench_topo_t *t = ctx;
  char src[16 * PATH_MAX];
  topo_manifest(t, src, sizeof src);
  nb_bench_rt_metrics_off = obs_mode == 1;
  nb_rt_t *rt = nb_bench_rt_open(src);
  nb_bench_rt_metrics_off = 0;
  scraper_t sc;
  memset(&sc, 0, sizeof sc);
  uint64_t served_ns = 0;
  if (obs_mode == 2) {
    if (nb_rt_http_start(rt, "127.0.0.1:0") != 0) nb_bench_fail("nb_rt_http_start");
    sc.port = nb_rt_http_port(rt);
    if (pthread_create(&sc.th, NULL, scrape_loop, &sc) != 0)
      nb_bench_fail("pthread_create");
  }
  uint32_t prod = nb_bench_rt_id(rt, "a_producer");
  uint32_t relay = t->relay ? nb_bench_rt_id(rt, "b_relay") : 0;
  uint32_t sinks[NB_BENCH_CX_MAX_SINKS];
  char name[32];
  for (int i = 0; i < t->sinks; i++) {
    snprintf(name, sizeof name, "c_sink%d", i + 1);
    sinks[i] = nb_bench_rt_id(rt, name);
  }
  if (prod != 0 || (t->relay && relay != 1) || sinks[0] != (t->relay ? 2u : 1u))
    nb_bench_fail("bench topology ids are not in name order");
  uint64_t max_ticks = 4 * (t->n / NB_BENCH_CX_BATCH + 1) + 1000, ticks = 0;
  uint64_t t0 = nb_bench_now_ns();
  for (;;) {
    int64_t rc = nb_rt_tick(rt, 1);
    if (rc < 0) nb_bench_fail("nb_rt_tick: %s", nb_strerror((int)rc));
    /* Snapshots for the scraper, at most every 2 ms of ticks: how often
     * neuronbus run's free-running loop turns (its burst). */
    if (obs_mode == 2 && nb_bench_now_ns() - served_ns >= 2000000u) {
      nb_rt_http_serve(rt);
      served_ns = nb_bench_now_ns();
    }
    /* Cheap: counters are plain fields; checked every tick so the clock
     * stops at the last delivery. */
    int done = 1;
    for (int i = 0; i < t->sinks && done; i++) {
      nb_rt_stat_t st;
      nb_rt_stat(rt, sinks[i], &st);
      if (st.spikes_in < t->n) done = 0;
      if (st.errors) nb_bench_rt_stat(rt, sinks[i]);
    }
    if (done) break;
    if (++ticks > max_ticks) {
      nb_rt_stat_t st = nb_bench_rt_stat(rt, sinks[0]);
      nb_bench_fail("Lua topology: %" PRIu64 " ticks and sink 1 has %" PRIu64
                    " of %" PRIu64 " spikes: lost", ticks, st.spikes_in, t->n);
    }
  }
  uint64_t ns = nb_bench_now_ns() - t0;
  nb_rt_stat_t ps = nb_bench_rt_stat(rt, prod);
  if (ps.spikes_out != t->n)
    nb_bench_fail("Lua producer sent %" PRIu64 " of %" PRIu64, ps.spikes_out, t->n);
  if (t->relay) {
    nb_rt_stat_t rs = nb_bench_rt_stat(rt, relay);
    if (rs.spikes_in != t->n || rs.spikes_out != t->n)
      nb_bench_fail("Lua relay: %" PRIu64 " in, %" PRIu64 " out of %" PRIu64,
                    rs.spikes_in, rs.spikes_out, t->n);
  }
  for (int i = 0; i < t->sinks; i++) {
    nb_rt_stat_t st = nb_bench_rt_stat(rt, sinks[i]);
    if (st.spikes_in != t->n)
      nb_bench_fail("Lua sink %d got %" PRIu64 " of %" PRIu64, i + 1,
                    st.spikes_in, t->n);
  }
  if (obs_mode == 2) {
    /* Served until the scraper is out: a request in flight waits for the
     * snapshot only this thread builds. */
    atomic_store(&sc.stop, 1);
    while (!atomic_load(&sc.done)) {
      nb_rt_http_serve(rt);
      struct timespec ms = {0, 1000000};
      nanosleep(&ms, NULL);
    }
    pthread_join(sc.th, NULL);
    nb_rt_http_stop(rt);
    /* A run shorter than the first 100 ms sleep may see one scrape. */
    if (!sc.scrapes || sc.bad)
      nb_bench_fail("the scraper got %" PRIu64 " good and %" PRIu64
                    " bad answers from /metrics", sc.scrapes, sc.bad);
    obs_scrapes += sc.scrapes;
    obs_ns += ns;
  }
  nb_rt_close(rt);
  return (double)t->n * t->sinks / ((double)ns / 1e9) / 1e6;
}

/* Measures topology t with Lua agents against C agents and emits a row. */
static void lua_row(const char *name, nb_bench_topo_t t, const char *base,
                    const char *target, const char *target_abs,
                    const char *note) {
  nb_bench_rt_setup("producer.lua", "lua", NULL);
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
          "c_hop_fire", ">=0.25", ">=50",
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

/* A topology run with extra keys on every Lua neuron and a payload size. */
typedef struct lua_mode_s {
  nb_bench_topo_t t;
  const char *keys; /* e.g. ", jit = false" */
  unsigned size;    /* payload bytes; 0 = 8 */
  const char *top;  /* top-level keys, e.g. " spike_time = 'tick',"; NULL = none */
} lua_mode_t;

/* Runs m's topology with Lua agents, m's keys and payload size; returns
 * M spikes/s. */
static double topo_lua_mode_run(void *ctx) {
  lua_mode_t *m = ctx;
  agent_keys = m->keys;
  payload_size = m->size ? m->size : 8;
  top_keys = m->top ? m->top : "";
  double v = topo_lua_run(&m->t);
  agent_keys = "";
  top_keys = "";
  payload_size = 8;
  return v;
}

/* Measures the one-hop Lua topology with keys against the same topology
 * with the JIT on (the default), interleaved in this run; emits a row. */
static void lua_mode_row(const char *name, const char *keys, const char *note) {
  nb_bench_rt_setup("producer.lua", "lua", NULL);
  /* Sized for the slower interpreter; both sides run the same n. */
  lua_mode_t sub = {nb_bench_topo(nb_bench_size(1u << 20, 1u << 13), 1, 0, 0,
                                  NB_BENCH_FIRE_EACH), keys, 8, NULL};
  lua_mode_t jit = {sub.t, "", 8, NULL};
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

/* ---- spike time ---- */

static void group_spike_time(void) {
  nb_bench_rt_setup("producer.lua", "lua", NULL);
  lua_mode_t fire = {nb_bench_topo(nb_bench_size(4u << 20, 1u << 14), 1, 0, 0,
                                   NB_BENCH_FIRE_EACH), "", 8,
                     " spike_time = 'fire',"};
  lua_mode_t tick = {fire.t, "", 8, " spike_time = 'tick',"};
  nb_bench_row_t r = nb_bench_row("lua_hop_spike_time", "M spikes/s");
  nb_bench_measure(topo_lua_mode_run, &fire, &fire.t.n, topo_lua_mode_run,
                   &tick, &tick.t.n, &r.v, &r.b);
  r.baseline = "lua_hop_tick_time";
  r.target = ">=0.97";
  r.note = "the lua_hop topology with spike_time = 'fire' (each spike "
           "carries the time it was fired, read from the TSC spike clock); "
           "baseline: the same with spike_time = 'tick' (one clock read per "
           "tick, what the default 'auto' gives a topology without STDP), "
           "interleaved";
  nb_bench_emit(&r);
}

/* ---- the metrics' cost ---- */

/* Runs the one-hop topology in obs_mode *ctx; returns M spikes/s. */
static double topo_obs_run(void *ctx) {
  static nb_bench_topo_t t;
  t = nb_bench_topo(obs_n, 1, 0, 0, NB_BENCH_FIRE_EACH);
  obs_mode = *(int *)ctx;
  double v = topo_lua_run(&t);
  obs_mode = 0;
  return v;
}

static void group_metrics(void) {
  nb_bench_rt_setup("producer.lua", "lua", NULL);
  static int on = 2, off = 1;
  /* Not shrunk to the usual ~100 ms: a run lasts ~0.5-1.5 s, so the
   * endpoint is scraped several times in each. */
  obs_n = nb_bench_size(48u << 20, 1u << 14);
  nb_bench_row_t r = nb_bench_row("lua_hop_metrics", "M spikes/s");
  nb_bench_measure(topo_obs_run, &on, NULL, topo_obs_run, &off, NULL, &r.v,
                   &r.b);
  r.baseline = "lua_hop_nometrics";
  r.target = ">=0.95";
  char note[400];
  snprintf(note, sizeof note,
           "the lua_hop topology with metrics on (handler time per batch, "
           "depths) and the HTTP endpoint scraped every 100 ms by another "
           "thread (%.1f scrapes/s served); baseline: no_metrics, "
           "no endpoint, interleaved in this run",
           obs_ns ? (double)obs_scrapes / ((double)obs_ns / 1e9) : 0);
  r.note = note;
  nb_bench_emit(&r);
}

/* ---- large payloads ---- */

static void group_hop_1k(void) {
  nb_bench_rt_setup("producer.lua", "lua", NULL);
  lua_mode_t sub = {nb_bench_topo(nb_bench_size(2u << 20, 1u << 13), 1, 0, 0,
                                  NB_BENCH_FIRE_EACH), "", 1024, NULL};
  lua_mode_t inl = {sub.t, "", 8, NULL};
  nb_bench_row_t r = nb_bench_row("lua_hop_1k", "M spikes/s");
  nb_bench_measure(topo_lua_mode_run, &sub, &sub.t.n, topo_lua_mode_run, &inl,
                   &inl.t.n, &r.v, &r.b);
  r.baseline = "lua_hop_8b";
  r.target = ">=0.5";
  r.note = "the lua_hop topology with 1 KiB payloads: the producer fires one "
           "1 KiB string built once (nb:fire_to writes it into the arena), the "
           "sink checks each through spike:view() (length, first, second and "
           "last bytes), the tick releases it (16 MB arena); baseline: the "
           "same agents with the 8-byte inline payload, interleaved";
  nb_bench_emit(&r);
}

/* The sustained mixed-size flow: one runtime kept open across the runs. */
#define FLOW_SIZES 64             /* payload sizes, 47 B .. 8 KiB */
#define FLOW_ARENA (16u << 20)    /* the runtime's default arena */
#define FLOW_SAMPLE_EVERY 16      /* ticks between arena samples */

typedef struct flow_s {
  nb_rt_t *rt;
  int mixed;            /* 1 = the mixed sizes in the arena, 0 = 8 B inline */
  uint64_t window_ns;   /* how long one run ticks */
  uint64_t peak_in_use; /* the arena's largest in_use sampled, bytes */
  uint64_t seen;        /* sink spikes counted so far */
} flow_t;

/* Opens the flow's runtime: a Lua producer firing 1024 spikes per tick
 * without end (until told to stop) -> a Lua sink checking each. */
static void flow_open(flow_t *f) {
  char src[8 * PATH_MAX];
  char cfg[PATH_MAX + 96];
  if (f->mixed)
    snprintf(cfg, sizeof cfg, ", mixed = %d, sizes_script = '%s/bench/lua/sizes.lua'",
             FLOW_SIZES, nb_bench_rt_root);
  else
    cfg[0] = 0;
  snprintf(src, sizeof src,
      "return {\n  name = 'bench_flow', tick = 'free',\n"
      "  axon = { capacity = %u, inbox = %u },\n  arena = { size = %u },\n"
      "  neurons = {\n"
      "    a_producer = { script = '%s/bench/lua/producer.lua', threshold = 0,"
      " refractory = 0, config = { n = 2^52, batch = %u, target = 1,"
      " stop_on_spike = true%s } },\n"
      "    c_sink1 = { script = '%s/bench/lua/sink.lua', refractory = 0,"
      " config = { source = 0%s } },\n"
      "  },\n  synapses = {\n"
      "    { from = 'a_producer', to = 'c_sink1', weight = 0.5 },\n  },\n}\n",
      NB_BENCH_CX_CAP, NB_BENCH_CX_CAP, FLOW_ARENA, nb_bench_rt_root,
      NB_BENCH_CX_BATCH, cfg, nb_bench_rt_root, cfg);
  f->rt = nb_bench_rt_open(src);
  if (nb_bench_rt_id(f->rt, "a_producer") != 0 || nb_bench_rt_id(f->rt, "c_sink1") != 1)
    nb_bench_fail("flow topology ids are not in name order");
  f->seen = 0;
}

/* Samples the arena's in_use into the peak. */
static void flow_sample(flow_t *f) {
  nb_rt_arena_stat_t as;
  nb_rt_arena_stat(f->rt, &as);
  if (as.in_use > f->peak_in_use) f->peak_in_use = as.in_use;
}

/* Ticks f's runtime for its window; returns millions of spikes per second
 * the sink checked meanwhile. Fails the bench on an agent error or a flow
 * that stalls. */
static double flow_window(void *ctx) {
  flow_t *f = ctx;
  uint64_t t0 = nb_bench_now_ns(), now = t0, ticks = 0, stalled = 0;
  nb_rt_stat_t st;
  nb_rt_stat(f->rt, 1, &st);
  uint64_t first = st.spikes_in, last = first;
  while (now - t0 < f->window_ns) {
    int64_t rc = nb_rt_tick(f->rt, 1);
    if (rc < 0) nb_bench_fail("nb_rt_tick: %s", nb_strerror((int)rc));
    nb_rt_stat(f->rt, 1, &st);
    if (st.errors) nb_bench_rt_stat(f->rt, 1);
    stalled = st.spikes_in == last ? stalled + 1 : 0;
    if (stalled > 100000) nb_bench_fail("payload flow stalled at %" PRIu64, last);
    last = st.spikes_in;
    if (++ticks % FLOW_SAMPLE_EVERY == 0) flow_sample(f);
    now = nb_bench_now_ns();
  }
  f->seen = last;
  return (double)(last - first) / ((double)(now - t0) / 1e9) / 1e6;
}

/* Stops the producer (a spike to it), drains the flow, checks that the
 * sink got every spike the producer sent, and closes the runtime. */
static void flow_close(flow_t *f) {
  int rc = nb_rt_inject(f->rt, 1, 0, 0, 0, "stop", 4);
  if (rc) nb_bench_fail("nb_rt_inject: %s", nb_strerror(rc));
  nb_rt_stat_t ps, ss;
  for (int i = 0;; i++) {
    if (i > 100000) nb_bench_fail("payload flow did not drain");
    int64_t r = nb_rt_tick(f->rt, 1);
    if (r < 0) nb_bench_fail("nb_rt_tick: %s", nb_strerror((int)r));
    ps = nb_bench_rt_stat(f->rt, 0);
    ss = nb_bench_rt_stat(f->rt, 1);
    /* Stopped: it received the stop spike, and everything it sent is in. */
    if (ps.spikes_in >= 1 && ss.spikes_in == ps.spikes_out) {
      uint64_t sent = ps.spikes_out;
      nb_rt_tick(f->rt, 1); /* one more: nothing may follow */
      if (nb_bench_rt_stat(f->rt, 0).spikes_out != sent ||
          nb_bench_rt_stat(f->rt, 1).spikes_in != sent)
        nb_bench_fail("payload flow: the producer did not stop");
      break;
    }
  }
  if (ss.spikes_in < f->seen)
    nb_bench_fail("payload flow: sink count went back");
  nb_rt_close(f->rt);
  f->rt = NULL;
}

/* One baseline run: a fresh runtime with 8-byte inline payloads, ticked
 * for its window, drained and checked; returns M spikes/s. */
static double flow_inline_run(void *ctx) {
  flow_t *f = ctx;
  flow_open(f);
  double v = flow_window(f);
  flow_close(f);
  return v;
}

static void group_flow(void) {
  nb_bench_rt_setup("producer.lua", "lua", NULL);
  uint64_t total_ns = nb_bench.tiny ? 300000000ull : 30000000000ull;
  int runs = nb_bench.runs;
  flow_t sub = {.mixed = 1, .window_ns = total_ns / (uint64_t)runs};
  flow_t base = {.mixed = 0, .window_ns = nb_bench.tiny ? 20000000ull : 300000000ull};
  double sv[NB_BENCH_MAX_RUNS], bv[NB_BENCH_MAX_RUNS];
  uint64_t t0 = nb_bench_now_ns();
  flow_open(&sub);
  /* Warm-up: traces compiled, the arena's pages faulted in; not counted. */
  uint64_t w = sub.window_ns;
  sub.window_ns = w / 8;
  flow_window(&sub);
  sub.window_ns = w;
  flow_inline_run(&base);
  sub.peak_in_use = 0;
  for (int i = 0; i < runs; i++) {
    bv[i] = flow_inline_run(&base);
    sv[i] = flow_window(&sub);
  }
  uint64_t flowed = sub.seen;
  flow_sample(&sub);
  flow_close(&sub);
  double secs = (double)(nb_bench_now_ns() - t0) / 1e9;
  nb_bench_row_t r = nb_bench_row("lua_payload_flow", "M spikes/s");
  r.v = nb_bench_summarize(sv, runs);
  r.b = nb_bench_summarize(bv, runs);
  r.baseline = "lua_flow_8b";
  r.extra_key = "arena_peak_mib";
  r.extra = (double)sub.peak_in_use / (1 << 20);
  static char note[512];
  snprintf(note, sizeof note,
           "sustained flow, %.1f s of ticking in %d windows (one runtime): a "
           "Lua producer firing 1024 spikes per tick with payloads of %d sizes "
           "from 47 B to 8 KiB (mean ~1.6 KiB) -> a Lua sink checking each "
           "through spike:view() (length, first, middle, last byte); %" PRIu64
           " spikes; 16 MB arena, peak in_use %.1f MiB (sampled every %d "
           "ticks); baseline: the same flow with 8-byte inline payloads, "
           "a fresh runtime per run, interleaved; %.0f s in all",
           (double)total_ns / 1e9, runs, FLOW_SIZES, flowed,
           (double)sub.peak_in_use / (1 << 20), FLOW_SAMPLE_EVERY, secs);
  r.note = note;
  nb_bench_emit(&r);
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
           "  },\n}\n", nb_bench_rt_root, pp->iters, nb_bench_rt_root);
  nb_rt_t *rt = nb_bench_rt_open(src);
  uint32_t ping = nb_bench_rt_id(rt, "a_ping"), pong = nb_bench_rt_id(rt, "b_pong");
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
    if (st.errors) nb_bench_rt_stat(rt, ping);
    if (st.spikes_in != seen) {
      uint64_t now = nb_bench_ticks();
      if (k < pp->iters) pp->samples[k] = (double)(now - prev) * ns_per_tick;
      k++;
      prev = now;
      seen = st.spikes_in;
    }
  }
  nb_bench_rt_stat(rt, pong);
  if (k != pp->iters || seen != pp->iters)
    nb_bench_fail("Lua ping-pong: %" PRIu64 " samples for %" PRIu64 " balls", k, seen);
  nb_rt_close(rt);
  nb_bench_summarize(pp->samples, (int)pp->iters);
  return nb_bench_quantile(pp->samples, pp->iters, 0.5);
}

static void group_pingpong(void) {
  nb_bench_rt_setup("producer.lua", "lua", NULL);
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
    {"lua_hop_1k", group_hop_1k},
    {"lua_hop_spike_time", group_spike_time},
    {"lua_payload_flow", group_flow},
    {"lua_hop_metrics", group_metrics},
    /* Extension point: further Lua rows go here as groups (or in their
     * own bench binary, as the reload pause did: bench_reload.c). */
};

int main(int argc, char **argv) {
  atexit(nb_bench_rt_cleanup);
  return nb_bench_main(argc, argv, groups, sizeof groups / sizeof groups[0]);
}
