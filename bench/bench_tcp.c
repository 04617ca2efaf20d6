/* bench_tcp.c: loopback TCP rows (issue 5), beside the in-process figures
 * measured in the same run.
 *
 *   tcp_1link          spikes/s over one link (runtime/nb_link.h): a C
 *                      sender on one thread and loop queues 64-byte spikes
 *                      (nb_link_send, until full, every loop turn), a C
 *                      receiver on another thread and loop checks each one
 *                      (sequence and check word); 68-byte frames, many per
 *                      write, cumulative acks. Baseline: axon_1p1c_batch64,
 *                      the in-process cross-thread figure.
 *   tcp_pingpong_p50,  one-way latency (half a round trip) of one spike
 *   tcp_pingpong_p99   bounced between two links' ends on two threads, each
 *                      loop sleeping in epoll between spikes (as `neuronbus
 *                      run` with a tick interval). Baseline: pingpong_p50/
 *                      p99, the same through two axons.
 *   tcp_pingpong_spin_p50, _p99
 *                      the same with both loops polling without sleeping
 *                      (as a free-running `neuronbus run`): the wake-up is
 *                      gone, what is left is the transport.
 *
 *   tcp_1link_auth     tcp_1link with both ends holding a secret: the
 *                      link opens with the mutual proof (nb_link_auth.h),
 *                      frames then travel as without one. Baseline:
 *                      tcp_1link_plain, the same link without a secret,
 *                      measured beside it (target >= 0.95).
 *   tcp_1link_encrypt  the same with encrypt: every write sealed
 *                      (ChaCha20-Poly1305 records of up to 64 KiB) and
 *                      every read opened. Baseline: tcp_1link_plain.
 *
 *   tcp_rt_1link       the same through the runtime: two runtimes (two
 *                      threads, two loops, as two `neuronbus run`), a Lua
 *                      producer (bench/lua/producer.lua, 1024 nb:fire_to per
 *                      tick) -> its remote neuron (a proxy) -> the link ->
 *                      injection -> a Lua sink (bench/lua/sink.lua) checking
 *                      every spike. Baseline: lua_hop_local, the same two
 *                      agents in one runtime through a synapse (lua_hop).
 *
 * The two threads are NOT pinned (the baselines' are, as in bench_axon):
 * two `neuronbus run` processes are not either, and a loop that sleeps in
 * epoll, pinned to a CPU another process holds, waits for its time slice.
 * Only the spinning ping-pong pins its two threads apart, like its
 * baseline.
 * Every spike is checked; a lost, duplicated, reordered or corrupted one
 * fails the bench. */
#include "bench.h"
#include "bench_axon.h"

#include <signal.h>
#include <uv.h>

#include <limits.h>
#include <sys/stat.h>

#include "nb_err.h"
#include "nb_link.h"
#include "nb_rt.h"

#define SINK_ID 1
#define SRC_ID 2

/* ---- one link between two threads, each with its own loop ---- */

typedef struct tcp_run_s tcp_run_t;

typedef struct tcp_end_s {
  tcp_run_t *run;
  uv_loop_t loop;
  nb_link_node_t *node;
  nb_link_t *link;
  int handle;
  uv_idle_t idle;   /* the sender's producer (throughput) */
  uv_timer_t timer; /* closes this end once the run is over */
  uint64_t count;   /* spikes sent (A) or checked (B) */
  int closing;
} tcp_end_t;

struct tcp_run_s {
  uint64_t n;
  int pingpong;      /* 0 throughput, 1 ping-pong, 2 ping-pong spinning */
  int auth;          /* 0 no secret, 1 a secret, 2 a secret and encrypt */
  double *samples;  /* ping-pong: one-way ns per round trip */
  double half_ns;
  uint64_t prev;    /* ticks at the previous send (ping-pong) */
  nb_bench_stop_t stop;
  _Atomic int port;  /* B's port once it listens */
  _Atomic int done;  /* every spike arrived (or the run failed) */
  uint64_t t0, t_end;
  tcp_end_t a, b;   /* a sends (and times a ping-pong), b receives */
};

/* Closes an end's node and handles (on its own thread); returns nothing. */
static void end_close(tcp_end_t *e) {
  if (e->closing) return;
  e->closing = 1;
  if (uv_is_active((uv_handle_t *)&e->idle)) uv_idle_stop(&e->idle);
  uv_close((uv_handle_t *)&e->idle, NULL);
  uv_close((uv_handle_t *)&e->timer, NULL);
  nb_link_node_close(e->node, NULL, NULL);
}

/* Watchdog of an end: closes it once the run is done or failed. */
static void end_watch(uv_timer_t *t) {
  tcp_end_t *e = t->data;
  if (atomic_load(&e->run->done) || atomic_load(&e->run->stop.abort) ||
      nb_bench_now_ns() > e->run->stop.deadline_ns)
    end_close(e);
}

/* Sends spike i from end e (to the other end's sink); returns 0 or an
 * nb_err_t. */
static int end_send(tcp_end_t *e, uint64_t i) {
  nb_spike_t s;
  nb_bench_stamp(&s, i, SRC_ID, 0);
  return nb_link_send(e->link, e->handle, &s, NULL, 0);
}

/* Keeps a loop polling without sleeping (the spinning ping-pong). */
static void spin(uv_idle_t *h) { (void)h; }

/* Throughput sender, once per loop turn: fills the link's queue. */
static void a_produce(uv_idle_t *h) {
  tcp_end_t *e = h->data;
  tcp_run_t *run = e->run;
  if (!nb_link_is_up(e->link)) return;
  while (e->count < run->n) {
    int rc = end_send(e, e->count);
    if (rc == NB_EFULL) break;
    if (rc) {
      nb_bench_stop_fail(&run->stop, "send %" PRIu64 ": %s", e->count,
                         nb_strerror(rc));
      uv_idle_stop(h);
      return;
    }
    e->count++;
  }
  if (e->count == run->n) uv_idle_stop(h);
}

/* A's link events: timing starts when the link is up. */
static void a_event(void *ud, nb_link_t *l, nb_link_event_t ev) {
  tcp_end_t *e = ud;
  tcp_run_t *run = e->run;
  if (ev != NB_LINK_UP || run->t0) return;
  run->t0 = nb_bench_now_ns();
  if (run->pingpong) {
    run->prev = nb_bench_ticks();
    if (end_send(e, 0) != 0) nb_bench_stop_fail(&run->stop, "first send failed");
  }
}

/* Checks spike s, which must be number want; returns 1, or 0 after
 * failing the run. */
static int check(tcp_run_t *run, const nb_spike_t *s, uint64_t want,
                 const char *who) {
  if (s->target == SINK_ID && nb_bench_is_record(s, want)) return 1;
  nb_bench_stop_fail(&run->stop, "%s: spike %" PRIu64 " came wrong (sequence "
                     "%u, target %u)", who, want, s->sequence, s->target);
  atomic_store(&run->done, 1);
  return 0;
}

/* A's receive side: only ping-pong echoes arrive; each is timed and the
 * next ball served. */
static int a_spike(void *ud, nb_link_t *l, const nb_spike_t *s,
                   const void *payload, size_t len) {
  tcp_end_t *e = ud;
  tcp_run_t *run = e->run;
  if (!check(run, s, e->count, "A")) return 0;
  uint64_t now = nb_bench_ticks();
  run->samples[e->count] = (double)(now - run->prev) * run->half_ns;
  run->prev = now;
  if (++e->count == run->n) {
    atomic_store(&run->done, 1);
    return 0;
  }
  if (end_send(e, e->count) != 0) {
    nb_bench_stop_fail(&run->stop, "A: send %" PRIu64 " failed", e->count);
    atomic_store(&run->done, 1);
  }
  return 0;
}

/* B's receive side: checks every spike in order; in a ping-pong sends it
 * back. */
static int b_spike(void *ud, nb_link_t *l, const nb_spike_t *s,
                   const void *payload, size_t len) {
  tcp_end_t *e = ud;
  tcp_run_t *run = e->run;
  if (!check(run, s, e->count, "B")) return 0;
  e->count++;
  if (run->pingpong) {
    if (!e->link) {
      e->link = l;
      e->handle = nb_link_target(l, "sink");
    }
    nb_spike_t back = *s;
    back.source = SRC_ID;
    if (nb_link_send(e->link, e->handle, &back, NULL, 0) != 0) {
      nb_bench_stop_fail(&run->stop, "B: echo %" PRIu64 " refused", e->count);
      atomic_store(&run->done, 1);
    }
  } else if (e->count == run->n) {
    run->t_end = nb_bench_now_ns();
    atomic_store(&run->done, 1);
  }
  return 0;
}

/* Makes end e's node on its loop (sink exposed, errors logged only). */
static void end_init(tcp_end_t *e, tcp_run_t *run, const char *cortex,
                     nb_link_spike_fn on_spike, nb_link_event_fn on_event) {
  e->run = run;
  if (uv_loop_init(&e->loop) != 0) nb_bench_fail("uv_loop_init failed");
  nb_link_node_opts_t o;
  memset(&o, 0, sizeof o);
  o.cortex = cortex;
  o.on_spike = on_spike;
  o.on_event = on_event;
  o.ud = e;
  o.log_level = NB_LINK_LOG_ERROR;
  if (run->auth) {
    static const char secret[] = "bench secret, 32 bytes long ...";
    o.secret = secret;
    o.secret_len = sizeof secret - 1;
    o.encrypt = run->auth == 2;
  }
  int rc = nb_link_node_new(&e->node, &e->loop, &o);
  if (!rc) rc = nb_link_node_expose(e->node, "sink", SINK_ID);
  if (!rc) rc = nb_link_node_expose(e->node, "src", SRC_ID);
  if (rc) nb_bench_fail("link node %s: %s", cortex, nb_strerror(rc));
  uv_idle_init(&e->loop, &e->idle);
  e->idle.data = e;
  uv_timer_init(&e->loop, &e->timer);
  e->timer.data = e;
  uv_timer_start(&e->timer, end_watch, 50, 50);
}

/* Thread B: listens, receives until the run is over. */
static void *b_main(void *arg) {
  tcp_run_t *run = arg;
  tcp_end_t *e = &run->b;
  end_init(e, run, "bench-b", b_spike, NULL);
  if (nb_link_node_listen(e->node, "tcp://127.0.0.1:0") != 0) {
    nb_bench_stop_fail(&run->stop, "B cannot listen on loopback");
    atomic_store(&run->done, 1);
  }
  atomic_store(&run->port, nb_link_node_port(e->node));
  if (run->pingpong == 2) uv_idle_start(&e->idle, spin);
  uv_run(&e->loop, UV_RUN_DEFAULT);
  uv_loop_close(&e->loop);
  return NULL;
}

/* Thread A: dials B, sends (throughput) or serves (ping-pong). */
static void *a_main(void *arg) {
  tcp_run_t *run = arg;
  tcp_end_t *e = &run->a;
  while (!atomic_load(&run->port) && !atomic_load(&run->done))
    if (nb_bench_now_ns() > run->stop.deadline_ns) {
      nb_bench_stop_fail(&run->stop, "B never listened");
      atomic_store(&run->done, 1);
    }
  end_init(e, run, "bench-a", a_spike, a_event);
  char url[64];
  snprintf(url, sizeof url, "tcp://127.0.0.1:%d", atomic_load(&run->port));
  int rc = nb_link_connect(e->node, url, NULL, &e->link);
  if (!rc) rc = (e->handle = nb_link_target(e->link, "sink")) < 0 ? e->handle : 0;
  if (rc) {
    nb_bench_stop_fail(&run->stop, "A cannot dial %s: %s", url, nb_strerror(rc));
    atomic_store(&run->done, 1);
  }
  nb_link_set_data(e->link, e);
  if (!run->pingpong) uv_idle_start(&e->idle, a_produce);
  else if (run->pingpong == 2) uv_idle_start(&e->idle, spin);
  uv_run(&e->loop, UV_RUN_DEFAULT);
  uv_loop_close(&e->loop);
  return NULL;
}

/* Runs one transfer (or ping-pong) of ctx's size; returns the run after
 * checking it (the caller frees it). */
static tcp_run_t *tcp_once(uint64_t n, int pingpong, double *samples,
                           int auth) {
  tcp_run_t *run = nb_bench_alloc(sizeof *run);
  run->n = n;
  run->pingpong = pingpong;
  run->auth = auth;
  run->samples = samples;
  run->half_ns = nb_bench_ns_per_tick() / 2;
  nb_bench_stop_init(&run->stop, 60);
  /* Not pinned, as `neuronbus run` is not: a sleeping loop pinned to a
   * CPU that another process holds waits for its time slice (p99 ~1.5 ms
   * at load 2, ~30 us unpinned). Two spinning loops are pinned apart, as
   * the axon's spinning threads: unpinned they end up time-sliced on one
   * CPU (p99 ~4 ms). */
  int pin = pingpong == 2;
  pthread_t tb = nb_bench_spawn(pin ? nb_bench_cpu(1) : -1, b_main, run);
  pthread_t ta = nb_bench_spawn(pin ? nb_bench_cpu(0) : -1, a_main, run);
  pthread_join(ta, NULL);
  pthread_join(tb, NULL);
  if (atomic_load(&run->stop.abort))
    nb_bench_fail("tcp: %s", run->stop.why);
  uint64_t got = pingpong ? run->a.count : run->b.count;
  if (got != n)
    nb_bench_fail("tcp: %" PRIu64 " of %" PRIu64 " spikes arrived (timed out)",
                  got, n);
  return run;
}

typedef struct tcp_ctx_s {
  uint64_t n;
  int spin;
  int auth; /* tcp_run_s.auth */
  double *samples;
  int calls;
  double p99[NB_BENCH_MAX_RUNS + 1];
} tcp_ctx_t;

/* Returns millions of checked spikes per second over one link. */
static double tcp_flow_run(void *ctx) {
  tcp_ctx_t *c = ctx;
  tcp_run_t *run = tcp_once(c->n, 0, NULL, c->auth);
  double rate = (double)c->n / ((double)(run->t_end - run->t0) / 1e9) / 1e6;
  free(run);
  return rate;
}

/* Returns the p50 one-way latency in ns (p99 kept in c->p99). */
static double tcp_pingpong_run(void *ctx) {
  tcp_ctx_t *c = ctx;
  tcp_run_t *run = tcp_once(c->n, c->spin ? 2 : 1, c->samples, 0);
  free(run);
  nb_bench_summarize(c->samples, (int)c->n);
  double p50 = nb_bench_quantile(c->samples, c->n, 0.50);
  if (c->calls <= NB_BENCH_MAX_RUNS)
    c->p99[c->calls] = nb_bench_quantile(c->samples, c->n, 0.99);
  c->calls++;
  return p50;
}

static void group_flow(void) {
  tcp_ctx_t c;
  memset(&c, 0, sizeof c);
  c.n = nb_bench_size(2u << 20, 1u << 14);
  nb_bench_flow_t ax = nb_bench_flow(NB_BENCH_AXON, 64, 1,
                                     nb_bench_size(4u << 20, 1u << 14));
  nb_bench_row_t r = nb_bench_row("tcp_1link", "M spikes/s");
  r.cpu_a = ax.cpu_producer;
  r.cpu_b = ax.cpu_reader[0];
  r.hop_ns = nb_bench_hop_ns(r.cpu_a, r.cpu_b);
  nb_bench_measure(tcp_flow_run, &c, &c.n, nb_bench_flow_run, &ax, &ax.n,
                   &r.v, &r.b);
  r.baseline = "axon_1p1c_batch64";
  r.target_abs = ">=10";
  r.note = "one TCP link on loopback, C sender and receiver on two "
           "unpinned threads with their own loops, 64-byte spikes (68-byte "
           "frames), every one checked; baseline: the in-process axon between "
           "two pinned threads (cpus and hop_ns are the baseline's)";
  nb_bench_emit(&r);
}

/* Measures one link with a secret (auth 1) or encrypted (auth 2) against
 * the same link without a secret, and emits the row name. */
static void auth_row(const char *name, int auth, const char *target,
                     const char *note) {
  tcp_ctx_t c, plain;
  memset(&c, 0, sizeof c);
  c.n = nb_bench_size(2u << 20, 1u << 14);
  c.auth = auth;
  plain = c;
  plain.auth = 0;
  nb_bench_row_t r = nb_bench_row(name, "M spikes/s");
  nb_bench_measure(tcp_flow_run, &c, &c.n, tcp_flow_run, &plain, &plain.n,
                   &r.v, &r.b);
  r.baseline = "tcp_1link_plain";
  r.target = target;
  r.note = note;
  nb_bench_emit(&r);
}

static void group_flow_auth(void) {
  auth_row("tcp_1link_auth", 1, ">=0.95",
           "tcp_1link with a secret on both ends (mutual proof before the "
           "HELLO, frames as without); baseline: the same link without a "
           "secret, measured beside it");
}

static void group_flow_encrypt(void) {
  auth_row("tcp_1link_encrypt", 2, NULL,
           "tcp_1link with a secret and encrypt (ChaCha20-Poly1305 records "
           "of up to 64 KiB, sealed per write); baseline: the same link "
           "without a secret, measured beside it");
}

/* Measures the ping-pong (sleeping or spinning loops) against the axon
 * ping-pong and emits its p50 and p99 rows. */
static void pingpong_rows(const char *p50, const char *p99, int spinning,
                          const char *note) {
  tcp_ctx_t c;
  memset(&c, 0, sizeof c);
  c.spin = spinning;
  c.n = nb_bench_size(20000, 500);
  c.samples = nb_bench_alloc(c.n * sizeof(double));
  nb_bench_pingpong_t pp = nb_bench_pingpong_ctx(nb_bench_size(200000, 2000));
  nb_bench_row_t r = nb_bench_row(p50, "ns one-way");
  r.lower_is_better = 1;
  r.cpu_a = pp.cpu_a;
  r.cpu_b = pp.cpu_b;
  r.hop_ns = nb_bench_hop_ns(r.cpu_a, r.cpu_b);
  nb_bench_measure(tcp_pingpong_run, &c, &c.n, nb_bench_pingpong_run, &pp,
                   &pp.iters, &r.v, &r.b);
  r.baseline = "pingpong_p50";
  r.note = note;
  nb_bench_emit(&r);
  /* p99 from the same runs (c.p99[0] and pp.p99[0] are the warm-ups). */
  nb_bench_emit_p99(&r, p99, "pingpong_p99", c.p99, pp.p99, "p99 of the same runs");
  free(c.samples);
  free(pp.samples);
}

static void group_pingpong(void) {
  pingpong_rows("tcp_pingpong_p50", "tcp_pingpong_p99", 0,
                "half the round trip of one spike bounced over one TCP link "
                "on loopback between two threads whose loops sleep in epoll "
                "between spikes; baseline: the same bounce through two axons "
                "(spinning)");
}

static void group_pingpong_spin(void) {
  pingpong_rows("tcp_pingpong_spin_p50", "tcp_pingpong_spin_p99", 1,
                "as tcp_pingpong with both loops polling without sleeping "
                "(a free-running loop): no wake-up, only the transport");
}

/* ---- the runtime over TCP ---- */

static char root[PATH_MAX];

/* Finds the repository root (the cwd or NB_BENCH_ROOT) and points the
 * runtime at lua/; fails the bench without bench/lua/. */
static void rt_setup(void) {
  if (root[0]) return;
  const char *env = getenv("NB_BENCH_ROOT");
  if (env && *env) snprintf(root, sizeof root, "%s", env);
  else if (!getcwd(root, sizeof root)) nb_bench_fail("getcwd failed");
  char probe[PATH_MAX + 32];
  struct stat st;
  snprintf(probe, sizeof probe, "%s/bench/lua/sink.lua", root);
  if (stat(probe, &st) != 0)
    nb_bench_fail("cannot find %s: run from the repository root or set "
                  "NB_BENCH_ROOT", probe);
  snprintf(probe, sizeof probe, "%s/lua", root);
  setenv("NB_LUA_PATH", probe, 0);
}

/* Returns a runtime from normalized topology source (printf-formatted), or
 * fails the bench. */
static nb_rt_t *rt_open(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static nb_rt_t *rt_open(const char *fmt, ...) {
  char src[4 * PATH_MAX];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(src, sizeof src, fmt, ap);
  va_end(ap);
  nb_rt_opts_t o;
  memset(&o, 0, sizeof o);
  o.quiet = 1;
  char *err = NULL;
  nb_rt_t *rt = nb_rt_open_topo(src, strlen(src), "=bench", &o, &err);
  if (!rt) nb_bench_fail("nb_rt_open_topo: %s", err ? err : "?");
  return rt;
}

/* Returns neuron name's counters in rt after checking it had no agent
 * error (the Lua sink raises on a wrong spike). */
static nb_rt_stat_t rt_stat_of(nb_rt_t *rt, const char *name) {
  nb_rt_stat_t st;
  int id = nb_rt_id(rt, name);
  if (id < 0 || nb_rt_stat(rt, (uint32_t)id, &st) != 0)
    nb_bench_fail("no neuron %s", name);
  if (st.errors) {
    char *e = nb_rt_errors(rt, (uint32_t)id);
    nb_bench_fail("Lua agent %s: %.300s", name, e ? e : "");
  }
  return st;
}

#define RT_TOPO_HEAD                                                         \
  "return { name = '%s', tick = 'free', arena = { size = 1048576 },\n"      \
  "  axon = { capacity = 4096 },\n"

/* Ticks per loop turn, as a free-running `neuronbus run` runs bursts of
 * ticks between polls (there up to 256 or 2 ms). */
#ifndef RT_BURST
#define RT_BURST 8
#endif

typedef struct rt_side_s {
  nb_rt_t *rt;
  uv_loop_t loop;
  struct rt_pair_s *pair;
  int sink; /* the receiving side */
} rt_side_t;

typedef struct rt_pair_s {
  uint64_t n;
  rt_side_t a, b;
  _Atomic int port, done;
  uint64_t t_first, t_end, seen_first;
  nb_bench_stop_t stop;
} rt_pair_t;

/* Drives one runtime and its loop until the sink has every spike, then
 * stops it cleanly (links flushed and closed); returns NULL. */
static void *rt_side_main(void *arg) {
  rt_side_t *s = arg;
  rt_pair_t *p = s->pair;
  uv_loop_init(&s->loop);
  if (!s->sink) /* the sender dials once the receiver listens */
    while (!atomic_load(&p->port) && !atomic_load(&p->done)) sched_yield();
  if (nb_rt_link_start(s->rt, &s->loop) != 0) {
    nb_bench_stop_fail(&p->stop, "nb_rt_link_start failed");
    atomic_store(&p->done, 1);
  }
  if (s->sink) atomic_store(&p->port, nb_rt_link_port(s->rt));
  while (!atomic_load(&p->done)) {
    if (nb_rt_tick(s->rt, RT_BURST) < 0) {
      nb_bench_stop_fail(&p->stop, "nb_rt_tick failed");
      atomic_store(&p->done, 1);
    }
    uv_run(&s->loop, UV_RUN_NOWAIT);
    if (s->sink) {
      nb_rt_stat_t st = rt_stat_of(s->rt, "c_sink");
      if (st.spikes_in && !p->t_first) {
        p->t_first = nb_bench_now_ns();
        p->seen_first = st.spikes_in;
      }
      if (st.spikes_in >= p->n) {
        p->t_end = nb_bench_now_ns();
        atomic_store(&p->done, 1);
      }
    }
    if (nb_bench_now_ns() > p->stop.deadline_ns) {
      nb_bench_stop_fail(&p->stop, "deadline passed");
      atomic_store(&p->done, 1);
    }
  }
  nb_rt_link_stop(s->rt, 500000000ull);
  uv_loop_close(&s->loop);
  return NULL;
}

typedef struct rt_ctx_s {
  uint64_t n;
} rt_ctx_t;

/* Returns millions of spikes/s from a Lua producer in one runtime to a Lua
 * sink in another, over one TCP link (from the sink's first spike to its
 * last, so the connect is not timed); fails on any wrong or lost spike. */
static double rt_tcp_run(void *ctx) {
  rt_ctx_t *c = ctx;
  rt_setup();
  rt_pair_t *p = nb_bench_alloc(sizeof *p);
  p->n = c->n;
  nb_bench_stop_init(&p->stop, 120);
  /* b: c_sink (id 0) and the proxy of a's producer, far (id 1). */
  p->b.rt = rt_open(RT_TOPO_HEAD
      "  listen = 'tcp://127.0.0.1:0',\n"
      "  neurons = {\n"
      "    c_sink = { script = '%s/bench/lua/sink.lua', refractory = 0,"
      "      config = { source = 1 } },\n"
      "    far = { remote = 'peer://a/a_producer' } } }\n", "b", root);
  p->b.pair = p;
  p->b.sink = 1;
  p->a.pair = p;
  /* Unpinned like two processes: pinned, each competes with whatever else
   * holds its CPU (measured 2.1-2.6 M/s pinned against 3.7-4.4 unpinned
   * with one other busy process on the machine). */
  pthread_t tb = nb_bench_spawn(-1, rt_side_main, &p->b);
  while (!atomic_load(&p->port) && !atomic_load(&p->done)) sched_yield();
  /* a: a_producer (id 0) firing to far (id 1), the proxy of b's sink. */
  p->a.rt = rt_open(RT_TOPO_HEAD
      "  peers = { 'tcp://127.0.0.1:%d' },\n"
      "  neurons = {\n"
      "    a_producer = { script = '%s/bench/lua/producer.lua',"
      "      threshold = 0, refractory = 0,"
      "      config = { n = %" PRIu64 ", batch = 1024, target = 1 } },\n"
      "    far = { remote = 'tcp://127.0.0.1:%d/c_sink' } } }\n", "a",
      atomic_load(&p->port), root, c->n,
      atomic_load(&p->port));
  pthread_t ta = nb_bench_spawn(-1, rt_side_main, &p->a);
  pthread_join(ta, NULL);
  pthread_join(tb, NULL);
  if (atomic_load(&p->stop.abort)) nb_bench_fail("tcp runtime: %s", p->stop.why);
  nb_rt_stat_t st = rt_stat_of(p->b.rt, "c_sink");
  if (st.spikes_in != c->n)
    nb_bench_fail("tcp runtime: the sink got %" PRIu64 " of %" PRIu64, st.spikes_in, c->n);
  nb_rt_close(p->a.rt);
  nb_rt_close(p->b.rt);
  double rate = (double)(c->n - p->seen_first) /
                ((double)(p->t_end - p->t_first) / 1e9) / 1e6;
  free(p);
  return rate;
}

/* Returns millions of spikes/s from the same producer to the same sink in
 * one runtime, through a synapse (what lua_hop measures). */
static double rt_local_run(void *ctx) {
  rt_ctx_t *c = ctx;
  rt_setup();
  nb_rt_t *rt = rt_open(RT_TOPO_HEAD
      "  neurons = {\n"
      "    a_producer = { script = '%s/bench/lua/producer.lua',"
      "      threshold = 0, refractory = 0,"
      "      config = { n = %" PRIu64 ", batch = 1024, target = 1 } },\n"
      "    c_sink = { script = '%s/bench/lua/sink.lua', refractory = 0,"
      "      config = { source = 0 } } },\n"
      "  synapses = { { from = 'a_producer', to = 'c_sink', weight = 0.5 } } }\n",
      "local", root, c->n, root);
  uint64_t t0 = nb_bench_now_ns(), t1 = 0, ticks = 0;
  for (;;) {
    if (nb_rt_tick(rt, 1) < 0) nb_bench_fail("nb_rt_tick failed");
    nb_rt_stat_t st = rt_stat_of(rt, "c_sink");
    if (st.spikes_in >= c->n) {
      t1 = nb_bench_now_ns();
      break;
    }
    if (++ticks > 4 * (c->n / 1024 + 1) + 1000)
      nb_bench_fail("local: the sink got %" PRIu64 " of %" PRIu64, st.spikes_in, c->n);
  }
  nb_rt_close(rt);
  return (double)c->n / ((double)(t1 - t0) / 1e9) / 1e6;
}

static void group_rt(void) {
  rt_ctx_t tc = {nb_bench_size(2u << 20, 1u << 14)};
  rt_ctx_t lc = {nb_bench_size(4u << 20, 1u << 14)};
  nb_bench_row_t r = nb_bench_row("tcp_rt_1link", "M spikes/s");
  nb_bench_measure(rt_tcp_run, &tc, &tc.n, rt_local_run, &lc, &lc.n, &r.v,
                   &r.b);
  r.baseline = "lua_hop_local";
  r.target = ">=0.3";
  r.note = "two free-running runtimes on two unpinned threads (as two "
           "neuronbus run): Lua "
           "producer -> remote neuron (proxy) -> TCP link -> injection -> Lua "
           "sink checking each spike; baseline: the same agents in one runtime "
           "through a synapse";
  nb_bench_emit(&r);
}

static const nb_bench_group_t groups[] = {
    {"tcp_1link", group_flow},
    {"tcp_1link_auth", group_flow_auth},
    {"tcp_1link_encrypt", group_flow_encrypt},
    {"tcp_pingpong_p50 tcp_pingpong_p99", group_pingpong},
    {"tcp_pingpong_spin_p50 tcp_pingpong_spin_p99", group_pingpong_spin},
    {"tcp_rt_1link", group_rt},
};

int main(int argc, char **argv) {
  signal(SIGPIPE, SIG_IGN);
  return nb_bench_main(argc, argv, groups, sizeof groups / sizeof groups[0]);
}
