/* bench_rt_workers.c: the runtime on worker threads (workers = N), each
 * row measured against the same Lua topology with workers = 1 in the same
 * run, interleaved. The topologies are driven as `neuronbus run` drives a
 * free-running one: bursts of NB__BURST_NS (nb__rt_burst: with workers, one
 * round of the team, then the pause), and a row's figure is the spikes its
 * sinks checked between two pauses, over the time between them.
 *
 * - workers_scaling: one Lua producer broadcasting to 8 Lua agents that
 *   each spend ~5 us of compiled Lua per spike (bench/lua/busy.lua, its
 *   loop calibrated at the start of the run), workers = 2 against 1;
 * - lua_hop_workers: the Lua one hop (producer -> sink, 1024 spikes a
 *   tick) with producer and sink on workers 0 and 1 (pinned: the cache-line
 *   hop between the two CPUs is measured before the row), against the same
 *   hop on one worker;
 * - lua_pingpong_workers: the mean round trip of one ball between ping.lua
 *   and pong.lua on workers 0 and 1 (pinned), against one worker;
 * - workers_auto_peak: 2 producer -> sink pairs per CPU, each pair on one
 *   worker, workers = "auto" against 1.
 *
 * Correctness: every sink checks that each spike is the next one of its
 * source (sequence, source, payload) and raises otherwise; after each run
 * the producers are told to stop, the runtime drains and every sink must
 * hold exactly what its producer sent, with no agent error. */
#include "bench.h"
#include "bench_rt.h"
#include "nb_rt_internal.h"

#define WK_BURST_NS 2000000ull  /* as nb_rt_run's free-running burst */
#define WK_MAX_SIDE 16          /* producers or sinks in a topology */
#define WK_WORK_NS 5000.0       /* the busy agents' target per spike */

/* One topology to run: its manifest and what the run checks. */
typedef struct wk_s {
  char src[16 * PATH_MAX];
  uint32_t nprod, nsink;  /* neurons a_p1.., then b_s1.. (ids in order) */
  int broadcast;          /* 1 producer to every sink, else pair i -> i */
  int pingpong;           /* a_p1 is ping.lua, b_s1 pong.lua: serve ball 0 */
  uint32_t workers;       /* what nb_rt_workers must say */
  int where[2 * WK_MAX_SIDE]; /* expected worker per id, -1 = any */
  uint64_t warm_ns, window_ns;
  /* Filled by each run: the workers' busy time over the window (summed,
   * ns), rounds (bursts) in the window. */
  double busy_frac[2];
  double cpu_frac; /* CPU time the process got over the window / wall */
  uint64_t rounds;
  double over_ns, gap_ns; /* last run, per round: the burst past its 2 ms
                             (the pause's wait for ticks in progress), and
                             the time between bursts (the bench's reads) */
  /* Summed over every run: spikes checked, process CPU and wall time in
   * the windows (spikes per CPU second says what the threads cost apart
   * from how much CPU the machine let them have). */
  double spikes_sum, cpu_sum_ns, wall_sum_ns;
} wk_t;

/* Returns the CPU time of the whole process so far, ns (every thread: on
 * a shared machine, what the run really got). */
static uint64_t wk_cpu_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Returns the spikes every sink of rt has received, summed. */
static uint64_t wk_sunk(nb_rt_t *rt, const wk_t *k) {
  uint64_t n = 0;
  for (uint32_t i = 0; i < k->nsink; i++)
    n += nb_bench_rt_stat(rt, k->nprod + i).spikes_in;
  return n;
}

/* Runs one burst as nb_rt_run's idle callback does; fails on an error. */
static void wk_burst(nb_rt_t *rt, uint64_t budget_ns) {
  int64_t rc = nb__rt_burst(rt, UINT64_MAX, budget_ns);
  if (rc < 0) nb_bench_fail("nb__rt_burst: %s", nb_strerror((int)rc));
}

/* Returns the busy time of worker w so far (0 with one worker). */
static uint64_t wk_busy(nb_rt_t *rt, uint32_t w) {
  nb_rt_worker_stat_t ws;
  if (nb_rt_worker_stat(rt, w, &ws) != 0) return 0;
  return ws.busy_ns;
}

/* Tells every producer to stop, drains, and checks that each sink got
 * exactly what its producer sent; closes rt. */
static void wk_close(nb_rt_t *rt, const wk_t *k) {
  for (uint32_t p = 0; p < k->nprod; p++) {
    int rc = nb_rt_inject(rt, p, p, 0, 0, "stop", 4);
    if (rc) nb_bench_fail("nb_rt_inject: %s", nb_strerror(rc));
  }
  uint64_t t0 = nb_bench_now_ns();
  for (;;) {
    if (nb_bench_now_ns() - t0 > 20000000000ull)
      nb_bench_fail("workers bench: the topology did not drain in 20 s "
                    "(producer 1: %" PRIu64 " in, %" PRIu64 " out; sink 1: %"
                    PRIu64 " in)", nb_bench_rt_stat(rt, 0).spikes_in,
                    nb_bench_rt_stat(rt, 0).spikes_out,
                    nb_bench_rt_stat(rt, k->nprod).spikes_in);
    wk_burst(rt, WK_BURST_NS / 4);
    int done = 1;
    /* The stop arrived: a producer gets nothing else; ping also gets
     * every answer, so all of them plus the stop (no ball in flight). */
    for (uint32_t p = 0; p < k->nprod && done; p++)
      done = nb_bench_rt_stat(rt, p).spikes_in >=
             (k->pingpong ? nb_bench_rt_stat(rt, k->nprod).spikes_out + 1 : 1);
    for (uint32_t i = 0; i < k->nsink && done; i++) {
      uint32_t p = k->broadcast ? 0 : i;
      /* Ping-pong: ball 0 was injected, not fired by ping. */
      done = nb_bench_rt_stat(rt, k->nprod + i).spikes_in ==
             nb_bench_rt_stat(rt, p).spikes_out + (uint64_t)k->pingpong;
    }
    if (done) break;
  }
  uint64_t sent[WK_MAX_SIDE], got = wk_sunk(rt, k);
  for (uint32_t p = 0; p < k->nprod; p++) sent[p] = nb_bench_rt_stat(rt, p).spikes_out;
  wk_burst(rt, WK_BURST_NS / 4); /* nothing may follow the stop */
  for (uint32_t p = 0; p < k->nprod; p++)
    if (nb_bench_rt_stat(rt, p).spikes_out != sent[p])
      nb_bench_fail("workers bench: producer %u did not stop", p + 1);
  if (wk_sunk(rt, k) != got) nb_bench_fail("workers bench: spikes after the stop");
  nb_rt_close(rt);
}

/* Opens k's topology, runs it free for the warm-up and then the window;
 * returns millions of spikes per second the sinks checked in the window.
 * Fails the bench on an agent error, a wrong placement or a loss. */
static double wk_run(void *ctx) {
  wk_t *k = ctx;
  nb_rt_t *rt = nb_bench_rt_open(k->src);
  if (nb_rt_workers(rt) != k->workers)
    nb_bench_fail("workers bench: %u workers, expected %u", nb_rt_workers(rt),
                  k->workers);
  char name[32];
  for (uint32_t i = 0; i < k->nprod + k->nsink; i++) {
    if (i < k->nprod) snprintf(name, sizeof name, "a_p%u", i + 1);
    else snprintf(name, sizeof name, "b_s%u", i - k->nprod + 1);
    if (nb_bench_rt_id(rt, name) != i)
      nb_bench_fail("workers bench: ids are not in name order (%s)", name);
    if (k->where[i] >= 0 && nb_rt_worker_of(rt, i) != k->where[i])
      nb_bench_fail("workers bench: %s on worker %d, expected %d", name,
                    nb_rt_worker_of(rt, i), k->where[i]);
  }
  if (k->pingpong) {
    int rc = nb_rt_inject(rt, 0, 1, 0, 0, "NBbench!", 8);
    if (rc) nb_bench_fail("nb_rt_inject: %s", nb_strerror(rc));
  }
  uint64_t t0 = nb_bench_now_ns();
  while (nb_bench_now_ns() - t0 < k->warm_ns) wk_burst(rt, WK_BURST_NS);
  uint64_t b0[2] = {wk_busy(rt, 0), wk_busy(rt, 1)};
  uint64_t s0 = wk_sunk(rt, k), rounds = 0, c0 = wk_cpu_ns();
  t0 = nb_bench_now_ns();
  uint64_t now = t0;
  uint64_t over = 0, gap = 0, prev = t0;
  /* The window, and past it until a spike arrived (at most 10 s): on a
   * loaded machine a new or pinned worker thread may get no CPU for tens
   * of ms, and a short (--tiny) window then sees nothing. */
  while (now - t0 < k->window_ns ||
         (now - t0 < 10000000000ull && wk_sunk(rt, k) == s0)) {
    uint64_t b = nb_bench_now_ns();
    wk_burst(rt, WK_BURST_NS);
    rounds++;
    now = nb_bench_now_ns();
    gap += b - prev;
    if (now - b > WK_BURST_NS) over += now - b - WK_BURST_NS;
    prev = now;
  }
  k->over_ns = (double)over / (double)rounds;
  k->gap_ns = (double)gap / (double)rounds;
  uint64_t s1 = wk_sunk(rt, k);
  for (int w = 0; w < 2; w++)
    k->busy_frac[w] = (double)(wk_busy(rt, (uint32_t)w) - b0[w]) / (double)(now - t0);
  k->rounds = rounds;
  uint64_t cpu = wk_cpu_ns() - c0;
  k->cpu_frac = (double)cpu / (double)(now - t0);
  k->spikes_sum += (double)(s1 - s0);
  k->cpu_sum_ns += (double)cpu;
  k->wall_sum_ns += (double)(now - t0);
  if (s1 == s0) nb_bench_fail("workers bench: no spike in the window");
  wk_close(rt, k);
  return (double)(s1 - s0) / ((double)(now - t0) / 1e9) / 1e6;
}

/* Returns the M spikes k's runs checked per second of process CPU. */
static double wk_per_cpu(const wk_t *k) {
  return k->cpu_sum_ns > 0 ? k->spikes_sum / (k->cpu_sum_ns / 1e9) / 1e6 : 0;
}

/* Returns the CPUs k's runs got on average over their windows. */
static double wk_cpus(const wk_t *k) {
  return k->wall_sum_ns > 0 ? k->cpu_sum_ns / k->wall_sum_ns : 0;
}

/* Starts k's manifest: name, free tick, workers (0 = "auto"), pin, and
 * the axon capacities; the caller appends neurons and synapses. Returns
 * the length written. */
static size_t wk_head(wk_t *k, uint32_t workers, int pin, unsigned cap,
                      unsigned inbox) {
  char wk[32];
  if (workers) snprintf(wk, sizeof wk, "%u", workers);
  else snprintf(wk, sizeof wk, "'auto'");
  k->workers = workers ? workers : nb_rt_cpus();
  k->warm_ns = nb_bench.tiny ? 20000000ull : 100000000ull;
  k->window_ns = nb_bench.tiny ? 30000000ull : 300000000ull;
  for (int i = 0; i < 2 * WK_MAX_SIDE; i++) k->where[i] = -1;
  return (size_t)snprintf(k->src, sizeof k->src,
      "return {\n  name = 'bench_workers', tick = 'free', workers = %s,%s\n"
      "  axon = { capacity = %u, inbox = %u },\n  neurons = {\n",
      wk, pin ? " pin = true," : "", cap, inbox);
}

/* Appends to k's manifest at offset o; returns the new offset. */
__attribute__((format(printf, 3, 4)))
static size_t wk_add(wk_t *k, size_t o, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(k->src + o, sizeof k->src - o, fmt, ap);
  va_end(ap);
  if (n < 0 || (size_t)n >= sizeof k->src - o)
    nb_bench_fail("workers bench: manifest too long");
  return o + (size_t)n;
}

/* Returns " worker = w," when the topology has more than one worker, ""
 * otherwise (the baseline's manifest is the same topology without it). */
static const char *wk_on(const wk_t *k, int w) {
  static char buf[8][32];
  static int next;
  char *b = buf[next++ % 8];
  if (k->workers > 1) snprintf(b, 32, " worker = %d,", w);
  else b[0] = 0;
  return b;
}

/* ---- the busy agents' calibration ---- */

static uint64_t busy_iters;  /* xorshift rounds per spike (busy.lua) */
static double busy_ns;       /* what one spike then cost, best of 3 */

/* Builds the scaling topology: a producer broadcasting `batch` spikes a
 * tick to nbusy busy agents of iters rounds each, on `workers` workers
 * (round robin: the producer and half the agents on worker 0). */
static void busy_topo(wk_t *k, uint32_t workers, uint32_t nbusy, uint64_t iters,
                      unsigned batch) {
  size_t o = wk_head(k, workers, 0, 256, 64);
  k->nprod = 1;
  k->nsink = nbusy;
  k->broadcast = 1;
  o = wk_add(k, o,
      "    a_p1 = { script = '%s/bench/lua/producer.lua', threshold = 0,"
      " refractory = 0, config = { n = 2^52, batch = %u, stop_on_spike = true } },\n",
      nb_bench_rt_root, batch);
  for (uint32_t i = 0; i < nbusy; i++)
    o = wk_add(k, o,
        "    b_s%u = { script = '%s/bench/lua/busy.lua', refractory = 0,"
        " config = { source = 0, iters = %" PRIu64 ", seed = %u } },\n",
        i + 1, nb_bench_rt_root, iters, 2463534242u + i);
  o = wk_add(k, o, "  },\n  synapses = {\n");
  for (uint32_t i = 0; i < nbusy; i++)
    o = wk_add(k, o, "    { from = 'a_p1', to = 'b_s%u', weight = 0.5 },\n", i + 1);
  wk_add(k, o, "  },\n}\n");
  for (uint32_t i = 0; i <= nbusy; i++) k->where[i] = (int)(i % k->workers);
}

/* Calibrates busy.lua once: runs one busy agent on one worker and scales
 * its rounds until a spike costs ~WK_WORK_NS of CPU time (the process's
 * CPU clock over the windows, so time the machine gave to other work does
 * not count); prints what it found. */
static void busy_calibrate(void) {
  if (busy_iters) return;
  static wk_t k;
  uint64_t iters = 2000;
  for (int pass = 0; pass < 3; pass++) {
    memset(&k, 0, sizeof k);
    busy_topo(&k, 1, 1, iters, 64);
    k.window_ns /= 2;
    for (int r = 0; r < 2; r++) wk_run(&k);
    busy_ns = 1e3 / wk_per_cpu(&k); /* M spikes per CPU s -> ns a spike */
    if (pass == 2) break;
    iters = (uint64_t)((double)iters * WK_WORK_NS / busy_ns);
    if (iters < 1) iters = 1;
    if (nb_bench.tiny) iters = 200; /* tiny: a few hundred ns, still checked */
  }
  busy_iters = iters;
  printf("NOTE: busy.lua: %" PRIu64 " xorshift rounds a spike cost %.2f us of "
         "CPU (one busy agent, workers = 1, 2 windows; wall-clock rate %.2f us "
         "a spike at %.2f CPUs)\n", busy_iters, busy_ns / 1e3,
         1e9 / (k.spikes_sum / (k.wall_sum_ns / 1e9)) / 1e3, wk_cpus(&k));
}

/* ---- rows ---- */

/* Prints, on stderr, one side's figures besides the rate: the CPUs it got
 * and its spikes per CPU second (all runs), the workers' busy fraction and
 * the rounds of the last run. */
static void wk_diag(const char *side, const wk_t *k) {
  fprintf(stderr, "  %s: workers %u; all runs: %.2f CPUs, %.3g M spikes per "
          "CPU second; last run: busy w0 %.0f%% w1 %.0f%%, %" PRIu64
          " rounds in %.0f ms, a burst %.0f us past its 2 ms, %.0f us between "
          "bursts\n", side, k->workers, wk_cpus(k), wk_per_cpu(k),
          100 * k->busy_frac[0], 100 * k->busy_frac[1], k->rounds,
          (double)k->window_ns / 1e6, k->over_ns / 1e3, k->gap_ns / 1e3);
}

/* Measures run(sub) against run(base) (interleaved, 2 ms bursts), prints
 * both sides' figures on stderr and emits row r with baseline base_name and
 * a note of what it runs plus the CPUs used, spikes per CPU second and busy
 * fractions; returns nothing. */
static void wk_row(nb_bench_row_t *r, nb_bench_fn run, wk_t *sub, wk_t *base,
                   const char *base_name, const char *what) {
  nb_bench_measure(run, sub, NULL, run, base, NULL, &r->v, &r->b);
  wk_diag(r->name, sub);
  wk_diag(base_name, base);
  r->baseline = base_name;
  r->extra_key = "cpus_used";
  r->extra = wk_cpus(sub);
  static char note[1280];
  snprintf(note, sizeof note,
           "%s; free-running bursts of 2 ms; process CPUs used %.2f against "
           "%.2f, M spikes per CPU second %.3g against %.3g (ratio %.2f); "
           "worker busy (last run) %.0f%% + %.0f%%", what, wk_cpus(sub),
           wk_cpus(base), wk_per_cpu(sub), wk_per_cpu(base),
           wk_per_cpu(base) > 0 ? wk_per_cpu(sub) / wk_per_cpu(base) : 0,
           100 * sub->busy_frac[0], 100 * sub->busy_frac[1]);
  r->note = note;
  nb_bench_emit(r);
}

static void group_scaling(void) {
  nb_bench_rt_setup("busy.lua", "workers", NULL);
  busy_calibrate();
  static wk_t two, one;
  unsigned batch = 64;
  busy_topo(&two, 2, 8, busy_iters, batch);
  busy_topo(&one, 1, 8, busy_iters, batch);
  nb_bench_row_t r = nb_bench_row("workers_scaling", "M spikes/s");
  r.target = ">=1.8";
  char what[512];
  snprintf(what, sizeof what,
           "deliveries/s: a Lua producer broadcasting %u spikes a tick to 8 "
           "Lua agents (busy.lua: %" PRIu64 " xorshift rounds a spike, "
           "calibrated to %.2f us of CPU), workers = 2 (round robin, "
           "unpinned) against workers = 1; axon 256, inbox 64",
           batch, busy_iters, busy_ns / 1e3);
  wk_row(&r, wk_run, &two, &one, "workers_scaling_1", what);
}

/* Builds the one hop: a_p1 (1024 spikes a tick) -> b_s1, on workers 0 and
 * 1 (pinned) when workers is 2. */
static void hop_topo(wk_t *k, uint32_t workers) {
  size_t o = wk_head(k, workers, workers > 1, 4096, 4096);
  k->nprod = k->nsink = 1;
  k->broadcast = 0;
  o = wk_add(k, o,
      "    a_p1 = { script = '%s/bench/lua/producer.lua', threshold = 0,"
      " refractory = 0,%s config = { n = 2^52, batch = 1024, target = 1,"
      " stop_on_spike = true } },\n"
      "    b_s1 = { script = '%s/bench/lua/sink.lua', refractory = 0,%s"
      " config = { source = 0 } },\n  },\n  synapses = {\n"
      "    { from = 'a_p1', to = 'b_s1', weight = 0.5 },\n  },\n}\n",
      nb_bench_rt_root, wk_on(k, 0), nb_bench_rt_root, wk_on(k, 1));
  (void)o;
  k->where[0] = 0;
  k->where[1] = workers > 1 ? 1 : 0;
}

/* Measures a two-agent topology (built by topo) with its agents on
 * workers 0 and 1, pinned, against the same on one worker, the cache-line
 * hop between the two CPUs measured first; emits the row. */
static void wk_cross_row(const char *name, const char *unit, int lower,
                         void (*topo)(wk_t *, uint32_t), nb_bench_fn run,
                         const char *base_name, const char *what) {
  nb_bench_rt_setup("busy.lua", "workers", NULL);
  static wk_t two, one; /* large (the manifest): not on the stack */
  memset(&two, 0, sizeof two);
  memset(&one, 0, sizeof one);
  topo(&two, 2);
  topo(&one, 1);
  nb_bench_row_t r = nb_bench_row(name, unit);
  r.lower_is_better = lower;
  r.cpu_a = nb_bench_cpu(0);
  r.cpu_b = nb_bench_cpu(1);
  r.hop_ns = nb_bench_hop_ns(r.cpu_a, r.cpu_b);
  wk_row(&r, run, &two, &one, base_name, what);
}

static void group_hop(void) {
  wk_cross_row("lua_hop_workers", "M spikes/s", 0, hop_topo, wk_run,
               "lua_hop_1worker",
               "Lua producer (1024 spikes a tick) -> Lua sink checking each, "
               "on workers 0 and 1 (workers = 2, pin = true: the CPUs of "
               "hop_ns), against the same hop with workers = 1");
}

/* Builds the ping-pong: a_p1 (ping.lua) <-> b_s1 (pong.lua), on workers 0
 * and 1 (pinned) when workers is 2. */
static void pp_topo(wk_t *k, uint32_t workers) {
  size_t o = wk_head(k, workers, workers > 1, 4096, 4096);
  k->nprod = k->nsink = 1;
  k->broadcast = 0;
  k->pingpong = 1;
  wk_add(k, o,
      "    a_p1 = { script = '%s/bench/lua/ping.lua', refractory = 0,%s"
      " config = { n = 2^52, peer = 1 } },\n"
      "    b_s1 = { script = '%s/bench/lua/pong.lua', refractory = 0,%s },\n"
      "  },\n}\n",
      nb_bench_rt_root, wk_on(k, 0), nb_bench_rt_root, wk_on(k, 1));
  k->where[0] = 0;
  k->where[1] = workers > 1 ? 1 : 0;
}

/* Runs k's ping-pong once; returns the mean round trip in ns over the
 * window (balls pong answered, between two pauses). */
static double pp_run(void *ctx) { return 1e3 / wk_run(ctx); }

static void group_pingpong(void) {
  wk_cross_row("lua_pingpong_workers", "ns round trip", 1, pp_topo, pp_run,
               "lua_pingpong_1worker",
               "mean round trip of one ball between two Lua agents (ping.lua "
               "on worker 0, pong.lua on worker 1; workers = 2, pin = true: "
               "the CPUs of hop_ns), balls answered over 300 ms between two "
               "pauses; baseline: the same with workers = 1 (2 ticks an "
               "exchange)");
}

/* Builds pairs a_p<i> -> b_s<i>, pair i on worker i % workers. */
static void pairs_topo(wk_t *k, uint32_t workers, uint32_t pairs) {
  size_t o = wk_head(k, workers, 0, 4096, 4096);
  k->nprod = k->nsink = pairs;
  k->broadcast = 0;
  for (uint32_t i = 0; i < pairs; i++)
    o = wk_add(k, o,
        "    a_p%u = { script = '%s/bench/lua/producer.lua', threshold = 0,"
        " refractory = 0,%s config = { n = 2^52, batch = 1024, target = %u,"
        " stop_on_spike = true } },\n",
        i + 1, nb_bench_rt_root, wk_on(k, (int)(i % k->workers)), pairs + i);
  for (uint32_t i = 0; i < pairs; i++)
    o = wk_add(k, o,
        "    b_s%u = { script = '%s/bench/lua/sink.lua', refractory = 0,%s"
        " config = { source = %u } },\n",
        i + 1, nb_bench_rt_root, wk_on(k, (int)(i % k->workers)), i);
  o = wk_add(k, o, "  },\n  synapses = {\n");
  for (uint32_t i = 0; i < pairs; i++)
    o = wk_add(k, o, "    { from = 'a_p%u', to = 'b_s%u', weight = 0.5 },\n",
               i + 1, i + 1);
  wk_add(k, o, "  },\n}\n");
  for (uint32_t i = 0; i < pairs; i++)
    k->where[i] = k->where[pairs + i] = (int)(i % k->workers);
}

static void group_auto(void) {
  nb_bench_rt_setup("busy.lua", "workers", NULL);
  static wk_t many, one;
  uint32_t cpus = nb_rt_cpus();
  uint32_t pairs = 2 * cpus > WK_MAX_SIDE ? WK_MAX_SIDE : 2 * cpus;
  pairs_topo(&many, 0, pairs);
  pairs_topo(&one, 1, pairs);
  nb_bench_row_t r = nb_bench_row("workers_auto_peak", "M spikes/s");
  char what[512];
  snprintf(what, sizeof what,
           "%u Lua producer -> sink pairs (1024 spikes a tick, each checked), "
           "pair i on worker i %% N, workers = \"auto\" (%u here, unpinned) "
           "against the same pairs on workers = 1", pairs, cpus);
  wk_row(&r, wk_run, &many, &one, "workers_1_peak", what);
}

static const nb_bench_group_t groups[] = {
    {"workers_scaling", group_scaling},
    {"lua_hop_workers", group_hop},
    {"lua_pingpong_workers", group_pingpong},
    {"workers_auto_peak", group_auto},
};

int main(int argc, char **argv) {
  atexit(nb_bench_rt_cleanup);
  return nb_bench_main(argc, argv, groups, sizeof groups / sizeof groups[0]);
}
