/* bench.h: the shared harness of every NeuronBus benchmark.
 *
 * Each bench/<name>.c is its own binary (one translation unit), so this
 * header holds static functions rather than a library. A binary lists its
 * row groups in a table and calls nb_bench_main(); the harness parses
 * --tiny / --row NAME / --runs N / --list, pins threads, measures the
 * cache-line hop between the two CPUs, runs subject and baseline
 * interleaved (warm-up, then >= 5 runs each), and prints one JSON object
 * per row on a line starting "ROW ". Anything that fails a correctness
 * check calls nb_bench_fail(), which prints "BENCH FAILED" and exits 2:
 * a benchmark of a broken path is worse than none.
 *
 * Extension point: a new binary (bench/bench_lua.c for the Lua rows, the
 * reload / isolation / TCP rows) includes this header, defines its groups
 * and calls nb_bench_main(); bench/run.sh and spec/e2e/bench_smoke.sh pick
 * up every binary in $(BUILD)/bench/ by themselves. */
#ifndef NB_BENCH_H
#define NB_BENCH_H

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <stdalign.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#if defined(__x86_64__) || defined(__i386__)
#include <x86intrin.h>
#endif

#define NB_BENCH_MAX_CPUS 256
#define NB_BENCH_MAX_RUNS 64
#define NB_BENCH_UNUSED __attribute__((unused))

/* ---- options and the row registry ---- */

typedef struct nb_bench_opts_s {
  int tiny;           /* small sizes: a correctness smoke test */
  const char *row;    /* run only the group that emits this row */
  int runs;           /* measured runs per figure (after one warm-up) */
  int list;           /* print row names and exit */
  int ncpus;          /* CPUs this process may run on */
  int cpus[NB_BENCH_MAX_CPUS];
  int rows_emitted;
} nb_bench_opts_t;

static nb_bench_opts_t nb_bench = {.runs = 7};

/* A group of rows measured together (one set of runs can feed several
 * rows: p50 and p99, total and per reader). */
typedef struct nb_bench_group_s {
  const char *rows; /* space-separated names of the rows it emits */
  void (*run)(void);
} nb_bench_group_t;

/* ---- failing loudly ---- */

/* Prints "BENCH FAILED: <why>" on stdout and stderr and exits 2; never
 * returns. Used for every lost, reordered or corrupted record. */
NB_BENCH_UNUSED __attribute__((noreturn, format(printf, 1, 2)))
static void nb_bench_fail(const char *fmt, ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  fflush(stdout);
  printf("BENCH FAILED: %s\n", msg);
  fflush(stdout);
  fprintf(stderr, "BENCH FAILED: %s\n", msg);
  exit(2);
}

/* Returns the byte count rounded up to 64, for aligned_alloc. */
static inline size_t nb_bench_round64(size_t n) { return (n + 63) & ~(size_t)63; }

/* Returns zeroed 64-byte-aligned memory or fails the bench. */
NB_BENCH_UNUSED static void *nb_bench_alloc(size_t n) {
  void *p = aligned_alloc(64, nb_bench_round64(n ? n : 1));
  if (!p) nb_bench_fail("out of memory allocating %zu bytes", n);
  memset(p, 0, nb_bench_round64(n ? n : 1));
  return p;
}

/* ---- clocks ---- */

/* Returns CLOCK_MONOTONIC in nanoseconds. */
static inline uint64_t nb_bench_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Returns a cheap cycle-ish counter for per-sample latency (the TSC on x86,
 * where it is invariant on this machine class; else nanoseconds). */
static inline uint64_t nb_bench_ticks(void) {
#if defined(__x86_64__) || defined(__i386__)
  return __rdtsc();
#else
  return nb_bench_now_ns();
#endif
}

/* Returns nanoseconds per tick of nb_bench_ticks(), calibrated once against
 * CLOCK_MONOTONIC over ~20 ms. */
NB_BENCH_UNUSED static double nb_bench_ns_per_tick(void) {
  static double cached;
  if (cached > 0) return cached;
#if defined(__x86_64__) || defined(__i386__)
  uint64_t n0 = nb_bench_now_ns(), t0 = nb_bench_ticks();
  while (nb_bench_now_ns() - n0 < 20000000ull) {
  }
  uint64_t n1 = nb_bench_now_ns(), t1 = nb_bench_ticks();
  cached = t1 > t0 ? (double)(n1 - n0) / (double)(t1 - t0) : 1.0;
#else
  cached = 1.0;
#endif
  return cached;
}

/* Emits the CPU's spin-loop hint. */
static inline void nb_bench_pause(void) {
#if defined(__x86_64__) || defined(__i386__)
  _mm_pause();
#elif defined(__aarch64__)
  __asm__ __volatile__("yield" ::: "memory");
#else
  atomic_signal_fence(memory_order_seq_cst);
#endif
}

/* Keeps the compiler from proving a value or buffer unused (so malloc/free
 * pairs and copies are not optimised away). */
static inline void nb_bench_escape(const void *p) {
  __asm__ __volatile__("" : : "g"(p) : "memory");
}

/* ---- waiting, identical for subject and baseline ---- */

/* Why a wait gives up: another thread failed, or the deadline passed. */
typedef struct nb_bench_stop_s {
  _Atomic int abort;     /* set by whoever failed first */
  uint64_t deadline_ns;  /* CLOCK_MONOTONIC; 0 = none */
  char why[256];
} nb_bench_stop_t;

/* Backs off once inside a wait loop: pause-hint spins up to spin_limit,
 * then sched_yield (so threads that share a core still progress); returns
 * nonzero when the wait must give up (abort flag or deadline). Subject and
 * baseline use this same function, so it cancels out of every ratio. */
static inline int nb_bench_backoff(unsigned *spins, unsigned spin_limit,
                                   nb_bench_stop_t *stop) {
  if (++*spins < spin_limit) {
    nb_bench_pause();
    return 0;
  }
  if ((*spins & 63u) == 0) {
    if (atomic_load_explicit(&stop->abort, memory_order_relaxed)) return 1;
    if (stop->deadline_ns && nb_bench_now_ns() > stop->deadline_ns) return 1;
  }
  sched_yield();
  return 0;
}

/* Records the first failure of a run and tells every other thread to stop. */
NB_BENCH_UNUSED __attribute__((format(printf, 2, 3)))
static void nb_bench_stop_fail(nb_bench_stop_t *stop, const char *fmt, ...) {
  int expected = 0;
  if (!atomic_compare_exchange_strong(&stop->abort, &expected, 1)) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(stop->why, sizeof stop->why, fmt, ap);
  va_end(ap);
}

/* Arms a stop with a deadline of seconds from now (generous: it only turns
 * a lost record, which would hang a reader, into a loud failure). */
NB_BENCH_UNUSED static void nb_bench_stop_init(nb_bench_stop_t *stop,
                                               double seconds) {
  memset(stop, 0, sizeof *stop);
  stop->deadline_ns = nb_bench_now_ns() + (uint64_t)(seconds * 1e9);
}

/* ---- CPUs and threads ---- */

/* Fills nb_bench.cpus with the CPUs this process may use; returns the count. */
NB_BENCH_UNUSED static int nb_bench_detect_cpus(void) {
  cpu_set_t set;
  CPU_ZERO(&set);
  nb_bench.ncpus = 0;
  if (sched_getaffinity(0, sizeof set, &set) != 0) {
    nb_bench.cpus[nb_bench.ncpus++] = 0;
    return 1;
  }
  for (int c = 0; c < CPU_SETSIZE && nb_bench.ncpus < NB_BENCH_MAX_CPUS; c++)
    if (CPU_ISSET(c, &set)) nb_bench.cpus[nb_bench.ncpus++] = c;
  if (nb_bench.ncpus == 0) nb_bench.cpus[nb_bench.ncpus++] = 0;
  return nb_bench.ncpus;
}

/* Returns the CPU for logical slot i: slot 0 is the first allowed CPU,
 * slot 1 the second, and slots past the count wrap (threads share). */
static inline int nb_bench_cpu(int i) {
  return nb_bench.cpus[i % (nb_bench.ncpus ? nb_bench.ncpus : 1)];
}

/* Starts fn(arg) on a new thread pinned to cpu (cpu < 0 = unpinned);
 * fails the bench when the thread cannot be created. */
NB_BENCH_UNUSED static pthread_t nb_bench_spawn(int cpu, void *(*fn)(void *),
                                                void *arg) {
  pthread_attr_t attr;
  pthread_t t;
  pthread_attr_init(&attr);
  if (cpu >= 0) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    /* Pin before the thread starts, so it never runs on the wrong CPU. */
    pthread_attr_setaffinity_np(&attr, sizeof set, &set);
  }
  int rc = pthread_create(&t, &attr, fn, arg);
  pthread_attr_destroy(&attr);
  if (rc != 0) nb_bench_fail("pthread_create: %s", strerror(rc));
  return t;
}

/* Pins the calling thread to cpu; returns 0 or an errno. */
NB_BENCH_UNUSED static int nb_bench_pin(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  return pthread_setaffinity_np(pthread_self(), sizeof set, &set);
}

/* A start line: threads check in, then all leave together when the main
 * thread opens it, so no thread measures another's creation. */
typedef struct nb_bench_gate_s {
  alignas(64) _Atomic int ready;
  alignas(64) _Atomic int go;
} nb_bench_gate_t;

/* Checks in at the gate and waits until it opens. */
static inline void nb_bench_gate_wait(nb_bench_gate_t *g) {
  atomic_fetch_add(&g->ready, 1);
  unsigned spins = 0;
  while (!atomic_load_explicit(&g->go, memory_order_acquire)) {
    if (++spins > 256) sched_yield(); else nb_bench_pause();
  }
}

/* Waits until n threads checked in, then opens the gate. */
NB_BENCH_UNUSED static void nb_bench_gate_open(nb_bench_gate_t *g, int n) {
  while (atomic_load(&g->ready) < n) sched_yield();
  atomic_store_explicit(&g->go, 1, memory_order_release);
}

/* ---- statistics ---- */

typedef struct nb_bench_stats_s {
  double median, min, max;
  int n;
} nb_bench_stats_t;

static int nb_bench__cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* Returns median, min and max of v[0..n) (v is sorted in place). */
NB_BENCH_UNUSED static nb_bench_stats_t nb_bench_summarize(double *v, int n) {
  nb_bench_stats_t s = {0, 0, 0, n};
  if (n <= 0) return s;
  qsort(v, (size_t)n, sizeof *v, nb_bench__cmp_double);
  s.min = v[0];
  s.max = v[n - 1];
  s.median = n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
  return s;
}

/* Returns the q-quantile (0..1) of sorted samples v[0..n), nearest rank. */
NB_BENCH_UNUSED static double nb_bench_quantile(const double *v, size_t n,
                                                double q) {
  if (n == 0) return 0;
  size_t k = (size_t)(q * (double)n);
  if (k >= n) k = n - 1;
  return v[k];
}

/* ---- the cache-line hop ---- */

/* Returns the spin budget before yielding for latency loops: long on two
 * CPUs (a yield would be the latency), short on one (the peer needs it). */
static inline unsigned nb_bench_latency_spins(void) {
  return nb_bench.ncpus < 2 ? 16u : 1u << 14;
}

typedef struct nb_bench_hop_s {
  alignas(64) _Atomic uint64_t line; /* the one cache line that travels */
  char pad[56];
  uint64_t iters, done;
  double *samples; /* one-way ns of each round trip */
  nb_bench_gate_t gate;
  nb_bench_stop_t stop;
} nb_bench_hop_t;

/* Hop side A: writes odd values, waits for the even answer, and times each
 * round trip with the same clock the ping-pong row uses; returns NULL. */
static void *nb_bench__hop_a(void *arg) {
  nb_bench_hop_t *h = arg;
  double half_ns = nb_bench_ns_per_tick() / 2;
  nb_bench_gate_wait(&h->gate);
  uint64_t prev = nb_bench_ticks();
  for (uint64_t i = 0; i < h->iters; i++) {
    atomic_store_explicit(&h->line, 2 * i + 1, memory_order_release);
    unsigned spins = 0;
    while (atomic_load_explicit(&h->line, memory_order_acquire) != 2 * i + 2)
      if (nb_bench_backoff(&spins, nb_bench_latency_spins(), &h->stop))
        return NULL;
    uint64_t now = nb_bench_ticks();
    h->samples[i] = (double)(now - prev) * half_ns;
    prev = now;
  }
  h->done = h->iters;
  return NULL;
}

/* Hop side B: answers each odd value with the next even one; returns NULL. */
static void *nb_bench__hop_b(void *arg) {
  nb_bench_hop_t *h = arg;
  nb_bench_gate_wait(&h->gate);
  for (uint64_t i = 0; i < h->iters; i++) {
    unsigned spins = 0;
    while (atomic_load_explicit(&h->line, memory_order_acquire) != 2 * i + 1)
      if (nb_bench_backoff(&spins, nb_bench_latency_spins(), &h->stop))
        return NULL;
    atomic_store_explicit(&h->line, 2 * i + 2, memory_order_release);
  }
  return NULL;
}

/* Returns the one-way cost in ns of moving one cache line between CPUs a
 * and b: the median over iters round trips of half a round trip (a median,
 * not a mean, so a preempted round trip on a busy machine does not count);
 * fails the bench if the exchange did not finish. */
NB_BENCH_UNUSED static double nb_bench_hop_once(int a, int b, uint64_t iters) {
  nb_bench_hop_t *h = nb_bench_alloc(sizeof *h);
  h->iters = iters;
  h->samples = nb_bench_alloc(iters * sizeof(double));
  nb_bench_stop_init(&h->stop, 30);
  pthread_t ta = nb_bench_spawn(a, nb_bench__hop_a, h);
  pthread_t tb = nb_bench_spawn(b, nb_bench__hop_b, h);
  nb_bench_gate_open(&h->gate, 2);
  pthread_join(ta, NULL);
  pthread_join(tb, NULL);
  if (atomic_load(&h->stop.abort) || h->done != iters ||
      atomic_load(&h->line) != 2 * iters)
    nb_bench_fail("hop ping-pong between CPU %d and %d did not finish", a, b);
  nb_bench_summarize(h->samples, (int)iters);
  double ns = nb_bench_quantile(h->samples, iters, 0.5);
  free(h->samples);
  free(h);
  return ns;
}

/* Returns the hop between CPUs a and b as the median of 5 short runs, or -1
 * when a == b (one CPU: there is no hop to measure). Called before each
 * cross-core row because the hypervisor may have moved the vCPUs. */
NB_BENCH_UNUSED static double nb_bench_hop_ns(int a, int b) {
  if (a == b) return -1;
  double v[5];
  for (int r = 0; r < 5; r++)
    v[r] = nb_bench_hop_once(a, b, nb_bench.tiny ? 1000 : 20000);
  return nb_bench_summarize(v, 5).median;
}

/* Runs one measurement and returns its figure (a rate or a latency); it
 * checks its own correctness and calls nb_bench_fail on any loss. */
typedef double (*nb_bench_fn)(void *ctx);

/* How long one measured run should last: on a loaded machine a full-size
 * run can take 30x longer, so sizes shrink after the warm-up to keep
 * `make bench` within its few minutes. */
#define NB_BENCH_RUN_NS 100000000ull

/* Returns n shrunk so a run that took took_ns for n lasts about
 * NB_BENCH_RUN_NS: never larger, never below max(1024, n / 100), a
 * multiple of 64. */
static uint64_t nb_bench__fit(uint64_t n, uint64_t took_ns) {
  if (took_ns <= NB_BENCH_RUN_NS + NB_BENCH_RUN_NS / 2) return n;
  uint64_t floor_n = n / 100 > 1024 ? n / 100 : 1024;
  uint64_t m = (uint64_t)((double)n * (double)NB_BENCH_RUN_NS / (double)took_ns);
  m &= ~(uint64_t)63;
  return m < floor_n ? (floor_n < n ? floor_n : n) : m;
}

/* Runs subject and baseline interleaved, one warm-up each and then
 * nb_bench.runs measured runs each (alternating, so a noisy neighbour or a
 * hypervisor move hits both alike); fills *sub and *base. base may be NULL
 * for a row without an in-run baseline. sn and bn point at the size (spikes,
 * iterations) each context runs, or are NULL: a warm-up that ran much longer
 * than NB_BENCH_RUN_NS shrinks it (the contexts recompute what they expect
 * from the size at each run). */
NB_BENCH_UNUSED static void nb_bench_measure(nb_bench_fn subject, void *sctx,
                                             uint64_t *sn, nb_bench_fn baseline,
                                             void *bctx, uint64_t *bn,
                                             nb_bench_stats_t *sub,
                                             nb_bench_stats_t *base) {
  double sv[NB_BENCH_MAX_RUNS], bv[NB_BENCH_MAX_RUNS];
  int runs = nb_bench.runs;
  /* The warm-up runs an eighth of the size (enough to fault pages in and
   * compile traces) and its time, times 8, sizes the measured runs. */
  uint64_t s_full = sn ? *sn : 0, b_full = bn ? *bn : 0;
  int shrink = !nb_bench.tiny;
  if (shrink && sn && *sn >= 8 * 1024) *sn /= 8;
  if (shrink && bn && bn != sn && *bn >= 8 * 1024) *bn /= 8;
  uint64_t t0 = nb_bench_now_ns(), tb = 0, ts;
  if (baseline) {
    baseline(bctx);
    tb = (nb_bench_now_ns() - t0) * (bn && *bn != b_full ? 8 : 1);
    t0 = nb_bench_now_ns();
  }
  subject(sctx);
  ts = (nb_bench_now_ns() - t0) * (sn && *sn != s_full ? 8 : 1);
  if (sn) *sn = s_full;
  if (bn) *bn = b_full;
  if (shrink) {
    if (sn && sn == bn) {
      *sn = nb_bench__fit(*sn, ts > tb ? ts : tb);
    } else {
      if (sn) *sn = nb_bench__fit(*sn, ts);
      if (bn && baseline) *bn = nb_bench__fit(*bn, tb);
    }
  }
  for (int i = 0; i < runs; i++) {
    if (baseline) bv[i] = baseline(bctx);
    sv[i] = subject(sctx);
  }
  *sub = nb_bench_summarize(sv, runs);
  if (base) *base = baseline ? nb_bench_summarize(bv, runs) : (nb_bench_stats_t){0, 0, 0, 0};
}

/* ---- output ---- */

typedef struct nb_bench_row_s {
  const char *name;
  const char *unit;     /* the unit of median/min/max, e.g. "M spikes/s" */
  int lower_is_better;  /* latency rows */
  nb_bench_stats_t v;
  const char *baseline; /* NULL = no baseline */
  nb_bench_stats_t b;
  const char *target;   /* ratio target, ">=0.85" or "<=2"; NULL = none */
  const char *target_abs; /* target on the median itself, ">=30"; NULL = none */
  double hop_ns;        /* >= 0 on cross-core rows */
  int cpu_a, cpu_b;     /* the two CPUs used (-1 = not applicable) */
  int shared_cores;     /* more threads than CPUs: some share a core */
  const char *note;
  /* One extra figure of the row (e.g. "arena_peak_mib"), printed as its
   * own JSON key after the standard ones; NULL = none. */
  const char *extra_key;
  double extra;
} nb_bench_row_t;

/* Returns a row template with no baseline, no hop and no CPUs. */
NB_BENCH_UNUSED static nb_bench_row_t nb_bench_row(const char *name,
                                                   const char *unit) {
  nb_bench_row_t r;
  memset(&r, 0, sizeof r);
  r.name = name;
  r.unit = unit;
  r.hop_ns = -1;
  r.cpu_a = r.cpu_b = -1;
  return r;
}

/* Sets key to s as a JSON string in o, when s is set. */
static void nb_bench__json_str(json_t *o, const char *key, const char *s) {
  if (s) json_object_set_new(o, key, json_string(s));
}

/* Prints the row as one flat JSON object on a line starting "ROW ", unless
 * --row asked for another row; returns nothing. jansson escapes the
 * strings and keeps the keys in the order they are set. */
NB_BENCH_UNUSED static void nb_bench_emit(const nb_bench_row_t *r) {
  if (nb_bench.row && strcmp(nb_bench.row, r->name) != 0) return;
  json_t *o = json_object();
  nb_bench__json_str(o, "name", r->name);
  nb_bench__json_str(o, "unit", r->unit);
  nb_bench__json_str(o, "better", r->lower_is_better ? "lower" : "higher");
  json_object_set_new(o, "median", json_real(r->v.median));
  json_object_set_new(o, "min", json_real(r->v.min));
  json_object_set_new(o, "max", json_real(r->v.max));
  json_object_set_new(o, "runs", json_integer(r->v.n));
  if (r->baseline) {
    nb_bench__json_str(o, "baseline", r->baseline);
    json_object_set_new(o, "baseline_median", json_real(r->b.median));
    json_object_set_new(o, "baseline_min", json_real(r->b.min));
    json_object_set_new(o, "baseline_max", json_real(r->b.max));
    json_object_set_new(
        o, "ratio", json_real(r->b.median != 0 ? r->v.median / r->b.median : 0.0));
  }
  nb_bench__json_str(o, "target", r->target);
  nb_bench__json_str(o, "target_abs", r->target_abs);
  if (r->hop_ns >= 0) json_object_set_new(o, "hop_ns", json_real(r->hop_ns));
  if (r->cpu_a >= 0) {
    char cpus[32];
    snprintf(cpus, sizeof cpus, "%d,%d", r->cpu_a, r->cpu_b);
    nb_bench__json_str(o, "cpus", cpus);
  }
  if (r->shared_cores) json_object_set_new(o, "shared_cores", json_true());
  if (nb_bench.ncpus < 2) json_object_set_new(o, "single_cpu", json_true());
  if (nb_bench.tiny) json_object_set_new(o, "tiny", json_true());
  if (r->extra_key) json_object_set_new(o, r->extra_key, json_real(r->extra));
  nb_bench__json_str(o, "note", r->note);
  char *line = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER |
                                 JSON_REAL_PRECISION(6));
  json_decref(o);
  if (!line) {
    fprintf(stderr, "bench: out of memory writing row %s\n", r->name);
    exit(2);
  }
  printf("ROW %s\n", line);
  free(line);
  fflush(stdout);
  nb_bench.rows_emitted++;
}

/* Emits the p99 row of a latency row r measured by nb_bench_measure, from
 * the p99 of each of its runs: v99 the subject's and b99 the baseline's,
 * both with the warm-up first (index 0, skipped); name, baseline and note
 * replace r's. Returns nothing. */
NB_BENCH_UNUSED static void nb_bench_emit_p99(const nb_bench_row_t *r,
                                              const char *name,
                                              const char *baseline,
                                              const double *v99,
                                              const double *b99,
                                              const char *note) {
  int n = nb_bench.runs;
  double v[NB_BENCH_MAX_RUNS], b[NB_BENCH_MAX_RUNS];
  for (int i = 0; i < n; i++) {
    v[i] = v99[i + 1];
    b[i] = b99[i + 1];
  }
  nb_bench_row_t r99 = *r;
  r99.name = name;
  r99.v = nb_bench_summarize(v, n);
  r99.b = nb_bench_summarize(b, n);
  r99.baseline = baseline;
  r99.note = note;
  nb_bench_emit(&r99);
}

/* Returns full when running full size, tiny under --tiny. */
static inline uint64_t nb_bench_size(uint64_t full, uint64_t tiny) {
  return nb_bench.tiny ? tiny : full;
}

/* Returns 1 when the space-separated list has the word w. */
static int nb_bench__has_word(const char *list, const char *w) {
  size_t n = strlen(w);
  for (const char *p = list; *p;) {
    while (*p == ' ') p++;
    const char *e = p;
    while (*e && *e != ' ') e++;
    if ((size_t)(e - p) == n && strncmp(p, w, n) == 0) return 1;
    p = e;
  }
  return 0;
}

/* Parses the arguments, says when the machine has one CPU, runs the
 * selected groups; returns the process exit status (0, or 2 on usage
 * errors and unknown rows; failed checks exit 2 inside). */
NB_BENCH_UNUSED static int nb_bench_main(int argc, char **argv,
                                         const nb_bench_group_t *groups,
                                         size_t ngroups) {
  int runs_given = 0;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--tiny")) {
      nb_bench.tiny = 1;
    } else if (!strcmp(argv[i], "--row") && i + 1 < argc) {
      nb_bench.row = argv[++i];
    } else if (!strcmp(argv[i], "--runs") && i + 1 < argc) {
      nb_bench.runs = atoi(argv[++i]);
      runs_given = 1;
    } else if (!strcmp(argv[i], "--list")) {
      nb_bench.list = 1;
    } else {
      fprintf(stderr,
              "usage: %s [--tiny] [--row NAME] [--runs N] [--list]\n"
              "  --tiny      small sizes, still checked (a smoke test)\n"
              "  --row NAME  run only the row NAME (see --list)\n"
              "  --runs N    measured runs per figure, 5..%d (default 7)\n",
              argv[0], NB_BENCH_MAX_RUNS);
      return 2;
    }
  }
  /* --tiny is a smoke test: the fewest runs allowed, unless asked. */
  if (nb_bench.tiny && !runs_given) nb_bench.runs = 5;
  if (nb_bench.runs < 5) nb_bench.runs = 5; /* the issue asks for >= 5 */
  if (nb_bench.runs > NB_BENCH_MAX_RUNS) nb_bench.runs = NB_BENCH_MAX_RUNS;
  if (nb_bench.list) {
    for (size_t g = 0; g < ngroups; g++) printf("%s\n", groups[g].rows);
    return 0;
  }
  int found = !nb_bench.row;
  for (size_t g = 0; g < ngroups; g++)
    if (nb_bench.row && nb_bench__has_word(groups[g].rows, nb_bench.row))
      found = 1;
  if (!found) {
    fprintf(stderr, "%s: no row named %s here (try --list)\n", argv[0],
            nb_bench.row);
    return 2;
  }
  nb_bench_detect_cpus();
  if (nb_bench.ncpus < 2)
    printf("NOTE: this machine lets us use only 1 CPU (%d): cross-core rows "
           "run both threads on it, time-sliced; they measure nothing "
           "cross-core\n", nb_bench.cpus[0]);
  for (size_t g = 0; g < ngroups; g++) {
    if (nb_bench.row && !nb_bench__has_word(groups[g].rows, nb_bench.row))
      continue;
    groups[g].run();
  }
  if (nb_bench.rows_emitted == 0) nb_bench_fail("no row was emitted");
  return 0;
}

#endif
