/* nb_rt_metrics.c: the runtime's metrics (see nb_rt_metrics.h): recording
 * on the neuron's thread, intervals on the loop thread. Below nb_rt.c,
 * which records through it; what shows them is nb_rt_views.c. */
#include "nb_rt_metrics.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Relaxed accessors: one writer per field (the neuron's thread), readers
 * anywhere, so plain loads and stores suffice and TSan sees atomics. */
#define LD(p) __atomic_load_n((p), __ATOMIC_RELAXED)
#define ST(p, v) __atomic_store_n((p), (v), __ATOMIC_RELAXED)

#define INTERVAL_DEFAULT_NS 1000000000ull

nb__nmetrics_t *nb__metrics_new(void) {
  nb__nmetrics_t *m = calloc(1, sizeof *m);
  if (!m) abort();
  return m;
}

/* Returns the bucket of a call of ns nanoseconds (NB__HIST_N's rule). */
static unsigned bucket_of(uint64_t ns) {
  uint64_t us = (ns + 999) / 1000;
  unsigned k = us <= 1 ? 0 : 64 - (unsigned)__builtin_clzll(us - 1);
  return k < NB__HIST_N - 1 ? k : NB__HIST_N - 1;
}

double nb__bucket_le(unsigned k) {
  return k < NB__HIST_N - 1 ? 1e-6 * (double)(1ull << k) : INFINITY;
}

void nb__metrics_end(nb__agent_t *a, uint64_t t0, uint32_t count) {
  nb__nmetrics_t *m = a->metrics;
  uint64_t now = nb_clock_spike_ns();
  uint64_t ns = now > t0 ? now - t0 : 0;
  unsigned k = bucket_of(ns);
  ST(&m->hist[k], LD(&m->hist[k]) + 1);
  ST(&m->calls, LD(&m->calls) + 1);
  ST(&m->busy_ns, LD(&m->busy_ns) + ns);
  if (ns > LD(&m->max_ns)) ST(&m->max_ns, ns);
  /* The loop thread zeroes win_max_ns when it closes an interval: a
   * compare and exchange, so a call ending meanwhile is not lost. */
  uint64_t w = LD(&m->win_max_ns);
  while (ns > w && !__atomic_compare_exchange_n(&m->win_max_ns, &w, ns, 0,
                                                __ATOMIC_RELAXED,
                                                __ATOMIC_RELAXED)) {
  }
  if (count) {
    ST(&m->batches, LD(&m->batches) + 1);
    ST(&m->inbox_last, (uint64_t)count);
    if (count > LD(&m->inbox_hwm)) ST(&m->inbox_hwm, (uint64_t)count);
  }
  if (a->neuron) {
    uint64_t d = nb_neuron_axon_depth(a->neuron);
    ST(&m->axon_last, d);
    if (d > LD(&m->axon_hwm)) ST(&m->axon_hwm, d);
  }
}

/* ------------------------------------------------------------------ */
/* intervals (loop thread)                                             */

/* Returns rt's loop-side state with room for every neuron. */
struct nb__mrt_s *nb__mrt(nb_rt_t *rt) {
  if (!rt->mrt) {
    rt->mrt = calloc(1, sizeof *rt->mrt);
    if (!rt->mrt) abort();
    rt->mrt->t0_ns = rt->start_ns;
  }
  struct nb__mrt_s *r = rt->mrt;
  if (r->cap < rt->n) {
    nb__ival_t *v = realloc(r->iv, rt->n * sizeof *v);
    if (!v) abort();
    memset(v + r->cap, 0, (rt->n - r->cap) * sizeof *v);
    r->iv = v;
    r->cap = rt->n;
  }
  if (r->n < rt->n) r->n = rt->n;
  return r;
}

void nb__metrics_set_interval(nb_rt_t *rt, uint64_t ns) {
  nb__mrt(rt)->every_ns = ns;
}

void nb__metrics_rt_free(nb_rt_t *rt) {
  if (!rt->mrt) return;
  free(rt->mrt->iv);
  free(rt->mrt);
  rt->mrt = NULL;
}

/* Returns the q-quantile (0..1) of the calls counted in d (per bucket,
 * total calls), interpolated inside its bucket, capped at max; seconds. */
static double quantile(const uint64_t *d, uint64_t total, double q,
                       double max) {
  if (!total) return 0;
  double rank = q * (double)total, seen = 0;
  for (unsigned k = 0; k < NB__HIST_N; k++) {
    if (!d[k]) continue;
    if (seen + (double)d[k] >= rank) {
      double lo = k ? nb__bucket_le(k - 1) : 0;
      double hi = k < NB__HIST_N - 1 ? nb__bucket_le(k) : max;
      double v = lo + (hi - lo) * (rank - seen) / (double)d[k];
      return v < max ? v : max;
    }
    seen += (double)d[k];
  }
  return max;
}

void nb__metrics_close(nb_rt_t *rt, uint64_t now, int whole) {
  struct nb__mrt_s *r = nb__mrt(rt);
  if (whole) {
    /* The whole run: every counter from zero. */
    r->t0_ns = rt->start_ns;
    for (uint32_t i = 0; i < rt->n; i++) {
      nb__ival_t *v = &r->iv[i];
      memset(v->hist0, 0, sizeof v->hist0);
      v->in0 = v->out0 = v->busy0 = 0;
    }
  }
  double len = (double)(now - r->t0_ns) / 1e9;
  if (len <= 0) return;
  for (uint32_t i = 0; i < rt->n; i++) {
    nb__agent_t *a = rt->agents[i];
    nb__ival_t *v = &r->iv[i];
    const nb_neuron_stats_t *s = nb_neuron_stats(a->neuron);
    v->in_rate = (double)(s->spikes_in - v->in0) / len;
    /* Relaxed: a neuron stuck in a call on a worker thread may still be
     * firing (nb_rt_stat reads it the same way). */
    uint64_t out = __atomic_load_n(&s->spikes_out, __ATOMIC_RELAXED);
    v->out_rate = (double)(out - v->out0) / len;
    v->in0 = s->spikes_in;
    v->out0 = out;
    if (!a->metrics) continue;
    nb__nmetrics_t *m = a->metrics;
    uint64_t d[NB__HIST_N], total = 0;
    for (unsigned k = 0; k < NB__HIST_N; k++) {
      uint64_t h = LD(&m->hist[k]);
      d[k] = h - v->hist0[k];
      v->hist0[k] = h;
      total += d[k];
    }
    uint64_t wmax = __atomic_exchange_n(&m->win_max_ns, 0, __ATOMIC_RELAXED);
    v->max = (double)(whole ? LD(&m->max_ns) : wmax) / 1e9;
    v->p50 = quantile(d, total, 0.5, v->max);
    v->p99 = quantile(d, total, 0.99, v->max);
    uint64_t busy = LD(&m->busy_ns);
    v->busy = (double)(busy - v->busy0) / 1e9 / len;
    v->busy0 = busy;
  }
  r->len_s = len;
  r->t0_ns = now;
}

void nb__metrics_close_if_due(nb_rt_t *rt, uint64_t now) {
  struct nb__mrt_s *r = nb__mrt(rt);
  uint64_t every = r->every_ns ? r->every_ns : INTERVAL_DEFAULT_NS;
  if (now - r->t0_ns >= every) nb__metrics_close(rt, now, 0);
}
