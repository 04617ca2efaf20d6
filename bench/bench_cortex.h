/* bench_cortex.h: topologies of C agents driven by the single-threaded
 * cortex tick, each run checked end to end (every sink sees every spike of
 * its source once, in order, with its check word; the cortex counts no dead
 * letter and no filtered spike; nothing is left pending).
 *
 * Topologies: one hop (source -> synapse -> target), a chain (producer ->
 * relay -> sink), a fan-out (one producer broadcasting to k sinks), and a
 * ping-pong between two agents. bench_cortex.c measures them with C agents;
 * the Lua rows (bench_lua.c, phase 2) run the same topologies with Lua
 * agents and use these C figures as their in-run baselines. */
#ifndef NB_BENCH_CORTEX_H
#define NB_BENCH_CORTEX_H

#include "bench.h"
#include "bench_ring.h"
#include "neuronbus.h"

#define NB_BENCH_CX_BATCH 1024u /* spikes a producer fires per tick */
#define NB_BENCH_CX_CAP 4096u   /* axon and inbox capacity */
#define NB_BENCH_CX_MAX_SINKS 16

/* How the producer puts its spikes on its axon. */
typedef enum nb_bench_fire_e {
  NB_BENCH_FIRE_BATCH, /* pre-stamped, nb_axon_try_publish_batch: routing only */
  NB_BENCH_FIRE_EACH   /* nb_neuron_fire per spike: the agent API path */
} nb_bench_fire_t;

/* ---- the C agents ---- */

typedef struct nb_bench_producer_s {
  uint64_t n, next;  /* spikes to send, spikes sent */
  nb_id_t target;    /* an id or NB_BROADCAST */
  nb_bench_fire_t how;
  int failed;
  char why[160];
} nb_bench_producer_t;

typedef struct nb_bench_sink_s {
  nb_id_t expect_source;
  uint64_t got, sum;
  int failed;
  char why[160];
} nb_bench_sink_t;

typedef struct nb_bench_relay_s {
  nb_id_t next; /* where each received spike goes on */
  uint64_t forwarded;
  int failed;
  char why[160];
} nb_bench_relay_t;

/* Producer tick (it fires every tick): sends up to NB_BENCH_CX_BATCH of its
 * remaining spikes; returns 0, or -1 after recording a refused spike. */
static int nb_bench__producer_tick(void *agent, nb_neuron_t *n) {
  nb_bench_producer_t *p = agent;
  nb_spike_t buf[64];
  uint64_t left = p->n - p->next;
  uint64_t k = left < NB_BENCH_CX_BATCH ? left : NB_BENCH_CX_BATCH;
  nb_id_t me = nb_neuron_id(n);
  if (p->how == NB_BENCH_FIRE_EACH) {
    for (uint64_t j = 0; j < k; j++) {
      nb_bench_stamp(buf, p->next, me, p->target);
      int rc = nb_neuron_fire(n, buf);
      if (rc == NB_EFULL) break; /* backpressure: retried next tick */
      if (rc) {
        p->failed = 1;
        snprintf(p->why, sizeof p->why, "nb_neuron_fire: %s", nb_strerror(rc));
        return -1;
      }
      p->next++;
    }
    return 0;
  }
  /* One clock read per batch: STDP needs a real pre time, not per spike. */
  uint64_t now = nb_clock_ns();
  nb_axon_t *ax = nb_neuron_axon(n);
  while (k) {
    size_t m = k < 64 ? (size_t)k : 64;
    for (size_t j = 0; j < m; j++) {
      nb_bench_stamp(&buf[j], p->next + j, me, p->target);
      buf[j].timestamp_ns = now;
    }
    size_t done = nb_axon_try_publish_batch(ax, buf, m);
    p->next += done;
    if (done < m) break; /* full: the rest goes next tick */
    k -= m;
  }
  return 0;
}

/* Sink: checks each spike is the next record of its source; returns 0, or
 * -1 after recording the first wrong one. */
static int nb_bench__sink_batch(void *agent, nb_neuron_t *n,
                                const nb_spike_t *s, const float *w,
                                size_t count) {
  nb_bench_sink_t *k = agent;
  if (k->failed) return -1;
  for (size_t i = 0; i < count; i++) {
    if (s[i].source != k->expect_source || !nb_bench_is_record(&s[i], k->got)) {
      k->failed = 1;
      snprintf(k->why, sizeof k->why,
               "sink %u: spike %" PRIu64 " wrong (source %u, sequence %u)",
               nb_neuron_id(n), k->got, s[i].source, s[i].sequence);
      return -1;
    }
    k->sum += nb_bench_word(&s[i]);
    k->got++;
  }
  return 0;
}

/* Relay: fires each received spike on to r->next (nb_neuron_fire restamps
 * source and sequence, keeps the payload); returns 0, or -1 when its axon
 * refused one (that would be a loss: the bench sizes batches so it never
 * happens). */
static int nb_bench__relay_batch(void *agent, nb_neuron_t *n,
                                 const nb_spike_t *s, const float *w,
                                 size_t count) {
  nb_bench_relay_t *r = agent;
  for (size_t i = 0; i < count; i++) {
    nb_spike_t out = s[i];
    out.target = r->next;
    int rc = nb_neuron_fire(n, &out);
    if (rc) {
      r->failed = 1;
      snprintf(r->why, sizeof r->why, "relay: nb_neuron_fire: %s",
               nb_strerror(rc));
      return -1;
    }
    r->forwarded++;
  }
  return 0;
}

/* ---- building and running ---- */

/* Returns a new cortex sized for these topologies, or fails the bench. */
NB_BENCH_UNUSED static nb_cortex_t *nb_bench_cortex_new_ex(uint32_t tick_time) {
  nb_cortex_opts_t o = nb_cortex_opts_default();
  o.spike_time = tick_time ? NB_SPIKE_TIME_TICK : NB_SPIKE_TIME_FIRE;
  o.max_neurons = 64;
  o.axon_capacity = NB_BENCH_CX_CAP;
  o.inbox_capacity = NB_BENCH_CX_CAP;
  nb_cortex_t *cx;
  int rc = nb_cortex_new(&cx, &o);
  if (rc) nb_bench_fail("nb_cortex_new: %s", nb_strerror(rc));
  return cx;
}

/* Returns a new cortex with the default spike time (each spike its own). */
NB_BENCH_UNUSED static nb_cortex_t *nb_bench_cortex_new(void) {
  return nb_bench_cortex_new_ex(0);
}

/* Registers a C agent named name with on_batch/tick and integrate-and-fire
 * threshold thr, refractory 0 (refractory would hold inboxes by design and
 * measure the model, not the bus); returns its id or fails the bench. */
NB_BENCH_UNUSED static nb_id_t nb_bench_cortex_add(
    nb_cortex_t *cx, const char *name, float thr,
    int (*on_batch)(void *, nb_neuron_t *, const nb_spike_t *, const float *,
                    size_t),
    int (*tick)(void *, nb_neuron_t *), void *agent) {
  nb_card_t card;
  memset(&card, 0, sizeof card);
  card.name = name;
  nb_if_params_t ip = nb_if_params_default();
  ip.threshold = thr;
  ip.refractory = 0;
  nb_agent_ops_t ops;
  memset(&ops, 0, sizeof ops);
  ops.on_batch = on_batch;
  ops.tick = tick;
  nb_neuron_t *n;
  int rc = nb_cortex_register(cx, &card, &ip, &ops, agent, &n);
  if (rc) nb_bench_fail("nb_cortex_register(%s): %s", name, nb_strerror(rc));
  return nb_neuron_id(n);
}

/* Connects pre -> post with weight 0.5, STDP off (stdp 0) or on in mode
 * stdp - 1 (NB_STDP_PAIR, _TRACE, _REWARD); fails the bench on error. */
NB_BENCH_UNUSED static void nb_bench_cortex_link(nb_cortex_t *cx, nb_id_t pre,
                                                 nb_id_t post, int stdp) {
  nb_stdp_t p = nb_stdp_default();
  if (stdp > 1) p.mode = (uint8_t)(stdp - 1);
  int rc = nb_cortex_connect(cx, pre, post, 0.5f, NULL, 0, stdp ? &p : NULL);
  if (rc) nb_bench_fail("nb_cortex_connect(%u, %u): %s", pre, post, nb_strerror(rc));
}

/* Ticks until every sink has n spikes; returns the elapsed ns. Fails the
 * bench when an agent recorded an error or the ticks run out. */
NB_BENCH_UNUSED static uint64_t nb_bench_cortex_drive(
    nb_cortex_t *cx, nb_bench_producer_t *p, nb_bench_relay_t *relay,
    nb_bench_sink_t *sinks, int nsinks, uint64_t n) {
  uint64_t max_ticks = 4 * (n / NB_BENCH_CX_BATCH + 1) + 1000, ticks = 0;
  uint64_t t0 = nb_bench_now_ns();
  for (;;) {
    int done = 1;
    for (int i = 0; i < nsinks; i++)
      if (sinks[i].got < n) done = 0;
    if (done) break;
    if (ticks++ > max_ticks)
      nb_bench_fail("cortex: %" PRIu64 " ticks and the sinks still wait "
                    "(first sink has %" PRIu64 " of %" PRIu64 "): spikes lost",
                    ticks, sinks[0].got, n);
    int rc = nb_cortex_tick(cx);
    if (rc < 0) nb_bench_fail("nb_cortex_tick: %s", nb_strerror(rc));
    if (p->failed) nb_bench_fail("producer: %s", p->why);
    if (relay && relay->failed) nb_bench_fail("%s", relay->why);
    for (int i = 0; i < nsinks; i++)
      if (sinks[i].failed) nb_bench_fail("%s", sinks[i].why);
  }
  uint64_t t1 = nb_bench_now_ns();
  return t1 - t0;
}

/* Checks counts, sums and the cortex counters after a run of n spikes to
 * nsinks sinks through `hops` routed hops; fails the bench on any mismatch. */
NB_BENCH_UNUSED static void nb_bench_cortex_verify(nb_cortex_t *cx,
                                                   nb_bench_sink_t *sinks,
                                                   int nsinks, uint64_t n,
                                                   int hops, uint64_t sum) {
  for (int i = 0; i < nsinks; i++)
    if (sinks[i].got != n || sinks[i].sum != sum)
      nb_bench_fail("sink %d got %" PRIu64 " of %" PRIu64 " (checksum %s)", i,
                    sinks[i].got, n, sinks[i].sum == sum ? "ok" : "WRONG");
  const nb_cortex_stats_t *st = nb_cortex_stats(cx);
  uint64_t want = n * (uint64_t)nsinks * (uint64_t)hops;
  if (st->routed != want || st->dead_letters || st->filtered)
    nb_bench_fail("cortex counted %" PRIu64 " routed (want %" PRIu64 "), %" PRIu64
                  " dead letters, %" PRIu64 " filtered", st->routed, want,
                  st->dead_letters, st->filtered);
  if (nb_cortex_pending(cx) != 0)
    nb_bench_fail("cortex still has %" PRIu64 " spikes pending after the run",
                  nb_cortex_pending(cx));
}

/* ---- measurement functions ---- */

/* What a topology row runs. */
typedef struct nb_bench_topo_s {
  uint64_t n;           /* spikes the producer sends */
  int sinks;            /* fan-out width (1 = one hop or chain) */
  int relay;            /* 1 = producer -> relay -> sink */
  int stdp;             /* STDP on the synapses: 0 off, 1 + NB_STDP_* mode */
  nb_bench_fire_t how;  /* how the producer fires */
  uint64_t expect_sum, sum_n; /* expect_sum is for sum_n spikes */
  uint32_t tick_time;   /* the cortex option: spikes carry the tick's time */
} nb_bench_topo_t;

/* Returns a topology context with its expected checksum. */
NB_BENCH_UNUSED static nb_bench_topo_t nb_bench_topo(uint64_t n, int sinks,
                                                     int relay, int stdp,
                                                     nb_bench_fire_t how) {
  nb_bench_topo_t t = {n, sinks, relay, stdp, how, 0, 0, 0};
  if (sinks < 1 || sinks > NB_BENCH_CX_MAX_SINKS || (relay && sinks != 1))
    nb_bench_fail("topology: bad sinks %d / relay %d", sinks, relay);
  return t;
}

/* Runs the topology once with C agents; returns millions of spikes per
 * second arriving at the sinks (summed over sinks). Fails the bench on any
 * loss, reordering or corruption. */
NB_BENCH_UNUSED static double nb_bench_topo_c_run(void *ctx) {
  nb_bench_topo_t *t = ctx;
  if (t->sum_n != t->n || t->n == 0) {
    t->expect_sum = nb_bench_expected_sum(0, t->n);
    t->sum_n = t->n;
  }
  nb_cortex_t *cx = nb_bench_cortex_new_ex(t->tick_time);
  nb_bench_producer_t p;
  nb_bench_relay_t r;
  nb_bench_sink_t sinks[NB_BENCH_CX_MAX_SINKS];
  memset(&p, 0, sizeof p);
  memset(&r, 0, sizeof r);
  memset(sinks, 0, sizeof sinks);
  p.n = t->n;
  p.how = t->how;
  /* The producer fires every tick: threshold 0. The others never need to
   * reach threshold, but a default one (1.0) lets STDP "post" run. */
  nb_id_t src = nb_bench_cortex_add(cx, "producer", 0.0f, NULL,
                                    nb_bench__producer_tick, &p);
  nb_id_t first = src;
  if (t->relay) {
    first = nb_bench_cortex_add(cx, "relay", 1.0f, nb_bench__relay_batch, NULL, &r);
    nb_bench_cortex_link(cx, src, first, t->stdp);
  }
  char name[32];
  nb_id_t sink0 = 0;
  for (int i = 0; i < t->sinks; i++) {
    snprintf(name, sizeof name, "sink%d", i);
    sinks[i].expect_source = first;
    nb_id_t id = nb_bench_cortex_add(cx, name, 1.0f, nb_bench__sink_batch, NULL,
                                     &sinks[i]);
    nb_bench_cortex_link(cx, first, id, t->stdp);
    if (i == 0) sink0 = id;
  }
  r.next = sink0;
  p.target = t->sinks > 1 ? NB_BROADCAST : (t->relay ? first : sink0);
  uint64_t ns = nb_bench_cortex_drive(cx, &p, t->relay ? &r : NULL, sinks,
                                      t->sinks, t->n);
  nb_bench_cortex_verify(cx, sinks, t->sinks, t->n, t->relay ? 2 : 1,
                         t->expect_sum);
  nb_cortex_free(cx);
  return (double)t->n * t->sinks / ((double)ns / 1e9) / 1e6;
}

/* ---- ping-pong between two C agents ---- */

typedef struct nb_bench_cxpp_s {
  uint64_t iters;
  double *samples; /* round-trip ns per exchange */
  nb_id_t a, b;
  uint64_t sent, back;
  double ns_per_tick;
  int failed;
  char why[160];
} nb_bench_cxpp_t;

/* Pinger A: each pong i that comes back is checked, timed, and answered
 * with ping i+1; returns 0 or -1 on a wrong pong. */
static int nb_bench__ping_batch(void *agent, nb_neuron_t *n,
                                const nb_spike_t *s, const float *w,
                                size_t count) {
  nb_bench_cxpp_t *pp = agent;
  for (size_t i = 0; i < count; i++) {
    if (!nb_bench_is_record(&s[i], pp->back)) {
      pp->failed = 1;
      snprintf(pp->why, sizeof pp->why, "ping: pong %" PRIu64 " wrong", pp->back);
      return -1;
    }
    pp->back++;
    if (pp->sent < pp->iters) {
      nb_spike_t ping;
      nb_bench_stamp(&ping, pp->sent, pp->a, pp->b);
      int rc = nb_neuron_fire(n, &ping);
      if (rc) {
        pp->failed = 1;
        snprintf(pp->why, sizeof pp->why, "ping: fire: %s", nb_strerror(rc));
        return -1;
      }
      pp->sent++;
    }
  }
  return 0;
}

/* Ponger B: answers every ping with the same record; returns 0 or -1. */
static int nb_bench__pong_batch(void *agent, nb_neuron_t *n,
                                const nb_spike_t *s, const float *w,
                                size_t count) {
  nb_bench_cxpp_t *pp = agent;
  for (size_t i = 0; i < count; i++) {
    nb_spike_t pong = s[i];
    pong.target = pp->a;
    int rc = nb_neuron_fire(n, &pong);
    if (rc) {
      pp->failed = 1;
      snprintf(pp->why, sizeof pp->why, "pong: fire: %s", nb_strerror(rc));
      return -1;
    }
  }
  return 0;
}

/* Runs iters ping-pong exchanges between two C agents in the cortex tick;
 * returns the median round trip in ns. Fails the bench on a lost or wrong
 * spike. */
NB_BENCH_UNUSED static double nb_bench_cxpp_c_run(void *ctx) {
  nb_bench_cxpp_t *pp = ctx;
  pp->sent = pp->back = 0;
  pp->failed = 0;
  pp->ns_per_tick = nb_bench_ns_per_tick();
  nb_cortex_t *cx = nb_bench_cortex_new();
  pp->a = nb_bench_cortex_add(cx, "ping", 1.0f, nb_bench__ping_batch, NULL, pp);
  pp->b = nb_bench_cortex_add(cx, "pong", 1.0f, nb_bench__pong_batch, NULL, pp);
  /* The first ping, fired from this (the cortex) thread. */
  nb_spike_t ping;
  nb_bench_stamp(&ping, 0, pp->a, pp->b);
  int rc = nb_neuron_fire(nb_cortex_neuron(cx, pp->a), &ping);
  if (rc) nb_bench_fail("first ping: %s", nb_strerror(rc));
  pp->sent = 1;
  /* Timed from the driving loop, one sample per ball back, exactly as the
   * Lua ping-pong row times its runtime (bench_lua.c). */
  uint64_t ticks = 0, seen = 0, k = 0, prev = nb_bench_ticks();
  while (pp->back < pp->iters) {
    if (ticks++ > 4 * pp->iters + 100)
      nb_bench_fail("cortex ping-pong: %" PRIu64 " of %" PRIu64 " came back",
                    pp->back, pp->iters);
    rc = nb_cortex_tick(cx);
    if (rc < 0) nb_bench_fail("nb_cortex_tick: %s", nb_strerror(rc));
    if (pp->failed) nb_bench_fail("%s", pp->why);
    if (pp->back != seen) {
      uint64_t now = nb_bench_ticks();
      pp->samples[k++] = (double)(now - prev) * pp->ns_per_tick;
      prev = now;
      seen = pp->back;
    }
  }
  if (k != pp->iters)
    nb_bench_fail("cortex ping-pong: two balls came back in one tick");
  nb_cortex_free(cx);
  nb_bench_summarize(pp->samples, (int)pp->iters);
  return nb_bench_quantile(pp->samples, pp->iters, 0.5);
}

#endif
