/* nb_rt_metrics.h: the runtime's metrics (not installed): per neuron the
 * handler time as a histogram, inbox and axon depths with their
 * high-water marks; per interval the handler's p50/p99/max and the spike
 * rates (nb_rt_metrics.c); and the views built from them on the loop
 * thread: JSON members, table rows, the Prometheus text exposition, the
 * live topology in DOT, snapshots (nb_rt_views.c), served over HTTP
 * (nb_rt_httpd.c).
 *
 * Threads: a neuron's counters are written only by the thread running
 * that neuron (relaxed atomic stores: one writer, no locked add) and read
 * with relaxed loads by the loop thread, which alone closes intervals and
 * builds every view (nb__snapshot_build); no other thread touches the
 * runtime's structures (the HTTP endpoint serves copies, nb_rt_httpd.c).
 * docs/observability.md lists every metric with its unit. */
#ifndef NB_RT_METRICS_H
#define NB_RT_METRICS_H

#include "nb_rt_internal.h"

/* Handler-time buckets: bucket k counts calls of at most 1 us * 2^k
 * (k < NB__HIST_N - 1: 1 us .. ~1.05 s); the last one counts the rest. */
#define NB__HIST_N 22

/* One neuron's counters (see the threads note above). */
typedef struct nb__nmetrics_s {
  uint64_t hist[NB__HIST_N]; /* handler calls by duration bucket */
  uint64_t calls;            /* handler calls timed (batches and ticks) */
  uint64_t busy_ns;          /* time spent in them */
  uint64_t max_ns;           /* the longest, since the start */
  uint64_t win_max_ns;       /* the longest since the loop last took it */
  uint64_t batches;          /* batches delivered */
  uint64_t inbox_last, inbox_hwm; /* inbox depth at the last delivery, max */
  uint64_t axon_last, axon_hwm;   /* axon depth after the last call, max */
} nb__nmetrics_t;

/* ---- nb_rt_metrics.c (below nb_rt.c) ---- */

/* Returns new zeroed counters (aborts when out of memory). */
nb__nmetrics_t *nb__metrics_new(void);

/* Returns the clock (ns) to hand to nb__metrics_end when a keeps metrics,
 * else 0: one clock read per batch or tick call, never per spike. The
 * spike clock (the TSC) rather than CLOCK_MONOTONIC: a few ns a read
 * where the VM's clock_gettime costs ~20, and both ends read it. */
static inline uint64_t nb__metrics_begin(const nb__agent_t *a) {
  return a->metrics ? nb_clock_spike_ns() : 0;
}

/* Records a handler call of a that began at t0 (nb__metrics_begin, not 0)
 * and delivered count spikes (0 for a tick call): its time, the inbox
 * depth it emptied and the depth of a's axon after it; returns nothing.
 * The thread running a only. */
void nb__metrics_end(nb__agent_t *a, uint64_t t0, uint32_t count);

/* Closes the current interval at now: per neuron the handler's
 * p50/p99/max and the spike rates since the previous close, or (whole)
 * since the start of the run (the final report); loop thread. Returns
 * nothing. */
void nb__metrics_close(nb_rt_t *rt, uint64_t now, int whole);

/* Sets how long an interval lasts when a view closes it on demand
 * (nb__snapshot_build), 0 = 1 s; returns nothing. */
void nb__metrics_set_interval(nb_rt_t *rt, uint64_t ns);

/* Closes the interval when its on-demand period passed; returns nothing. */
void nb__metrics_close_if_due(nb_rt_t *rt, uint64_t now);

/* Frees what rt's metrics hold on the loop side; returns nothing. */
void nb__metrics_rt_free(nb_rt_t *rt);

/* Returns bucket k's upper bound in seconds (+inf for the last one). */
double nb__bucket_le(unsigned k);

/* One neuron's last closed interval, and the counters at its start. */
typedef struct nb__ival_s {
  uint64_t hist0[NB__HIST_N];
  uint64_t in0, out0, busy0;
  double p50, p99, max; /* seconds */
  double in_rate, out_rate, busy; /* spikes/s, and busy time / interval */
} nb__ival_t;

/* The loop side of rt's metrics (rt->mrt). */
struct nb__mrt_s {
  nb__ival_t *iv;    /* per neuron */
  uint32_t n, cap;
  uint64_t t0_ns;    /* the current interval began */
  uint64_t every_ns; /* on-demand closing period */
  double len_s;      /* length of the last closed interval */
};

/* Returns rt's loop-side metrics state with room for every neuron (made
 * on first use; aborts when out of memory). */
struct nb__mrt_s *nb__mrt(nb_rt_t *rt);

/* ---- nb_rt_views.c (the top layer) ---- */

/* Adds neuron id's metrics members (card tags, rates, handler time,
 * inbox and axon depths) to its statistics object obj, all flat (no
 * nested object); returns nothing. */
void nb__metrics_json(nb_rt_t *rt, uint32_t id, json_t *obj);

/* Prints the metrics rows of the statistics table to f; returns nothing. */
void nb__metrics_table(nb_rt_t *rt, FILE *f);

/* A snapshot of every view, built on the loop thread and then read-only:
 * what the HTTP endpoint serves. */
typedef struct nb__snap_s {
  char *json;   /* the statistics object (as a --stats=json line) */
  char *prom;   /* Prometheus text exposition format 0.0.4 */
  char *dot;    /* the live topology as Graphviz DOT */
  size_t njson, nprom, ndot;
  uint32_t n;   /* neurons */
  char **names; /* their names */
  char **cards; /* their JSON objects (/neurons/NAME) */
  uint64_t built_ns;
  int refs;     /* the endpoint's responses sending from it (under its
                   mutex, nb_rt_httpd.c) */
  void *owner;  /* the endpoint that holds it */
} nb__snap_t;

/* Builds a snapshot of rt (closing the interval when it is due); returns
 * it, or NULL when out of memory. The loop thread only. */
nb__snap_t *nb__snapshot_build(nb_rt_t *rt);

/* Frees a snapshot; NULL is a no-op. */
void nb__snap_free(nb__snap_t *s);

/* ---- nb_rt_httpd.c ---- */

/* Starts rt's HTTP endpoint on addr ("HOST:PORT", "[V6]:PORT" or "PORT":
 * loopback) with uv_loop (a uv_loop_t) building its snapshots; says the
 * address on stderr. Returns 0, or NB_EINVAL / NB_EIO with the reason on
 * stderr (a bad address, a port taken). */
int nb__httpd_start(nb_rt_t *rt, void *uv_loop, const char *addr);

/* Stops the endpoint (waiting requests get the last snapshot) and closes
 * its loop handle; does nothing without one. nb__async_stop calls it too
 * (registered at start), so stopping or closing the runtime stops it.
 * Returns nothing. */
void nb__httpd_stop(nb_rt_t *rt);

/* ---- nb_rt_run.c ---- */

/* Returns the statistics object (what --stats=json prints as a line) with
 * the spike rate since the last periodic report, without starting a new
 * rate window; NULL when out of memory. */
json_t *nb__stats_json(nb_rt_t *rt);

#endif
