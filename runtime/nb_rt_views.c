/* nb_rt_views.c: what shows the metrics (nb_rt_metrics.h), on the loop
 * thread: the members of the statistics' JSON and table, the Prometheus
 * text, the live topology and a manifest's in DOT, and the snapshots the
 * HTTP endpoint serves. The top layer, beside nb_rt_run.c. */
#include "nb_rt_metrics.h"

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include <lua.h>

/* Relaxed loads of counters another thread writes (nb_rt_metrics.h). */
#define LD(p) __atomic_load_n((p), __ATOMIC_RELAXED)

/* ------------------------------------------------------------------ */
/* JSON and the table                                                  */

/* Returns a JSON array of the n strings at v. */
static json_t *str_array(char *const *v, size_t n) {
  json_t *arr = json_array();
  for (size_t i = 0; arr && i < n; i++) json_array_append_new(arr, nb__json_str(v[i]));
  return arr;
}

void nb__metrics_json(nb_rt_t *rt, uint32_t id, json_t *obj) {
  nb__agent_t *a = rt->agents[id];
  struct nb__mrt_s *r = nb__mrt(rt);
  nb__ival_t *v = &r->iv[id];
  nb__json_set(obj, "capabilities", str_array(a->tags[0], a->ntags[0]));
  nb__json_set(obj, "regions", str_array(a->tags[1], a->ntags[1]));
  nb__json_set(obj, "in_per_s", nb__json_num("%.1f", v->in_rate));
  nb__json_set(obj, "out_per_s", nb__json_num("%.1f", v->out_rate));
  nb__nmetrics_t *m = a->metrics;
  if (!m) return;
  nb__json_set_u64(obj, "handler_calls", LD(&m->calls));
  nb__json_set(obj, "busy_s", nb__json_num("%.6f", (double)LD(&m->busy_ns) / 1e9));
  nb__json_set(obj, "busy_ratio", nb__json_num("%.4f", v->busy));
  nb__json_set(obj, "p50_ms", nb__json_num("%.4f", v->p50 * 1e3));
  nb__json_set(obj, "p99_ms", nb__json_num("%.4f", v->p99 * 1e3));
  nb__json_set(obj, "max_ms", nb__json_num("%.4f", v->max * 1e3));
  nb__json_set(obj, "max_ever_ms", nb__json_num("%.4f", (double)LD(&m->max_ns) / 1e6));
  nb__json_set_u64(obj, "batches", LD(&m->batches));
  nb__json_set_u64(obj, "inbox", LD(&m->inbox_last));
  nb__json_set_u64(obj, "inbox_max", LD(&m->inbox_hwm));
  nb__json_set_u64(obj, "axon", LD(&m->axon_last));
  nb__json_set_u64(obj, "axon_max", LD(&m->axon_hwm));
}

void nb__metrics_table(nb_rt_t *rt, FILE *f) {
  int any = 0;
  for (uint32_t i = 0; i < rt->n && !any; i++)
    any = rt->agents[i]->metrics && LD(&rt->agents[i]->metrics->calls);
  if (!any) return;
  struct nb__mrt_s *r = nb__mrt(rt);
  /* "name:" first (no id column): scripts that pick a neuron's row of
   * the counters table (its id, then its name) never land here. */
  fprintf(f, "  %-25s %9s %9s %9s %9s %9s %6s %6s %6s %6s %6s\n",
          "handler time, depths", "in/s", "out/s", "p50 ms", "p99 ms",
          "max ms", "busy", "inbox", "in^", "axon", "ax^");
  for (uint32_t i = 0; i < rt->n; i++) {
    nb__nmetrics_t *m = rt->agents[i]->metrics;
    if (!m || !LD(&m->calls)) continue;
    nb__ival_t *v = &r->iv[i];
    char name[96];
    snprintf(name, sizeof name, "%s:", rt->agents[i]->name);
    fprintf(f, "  %-25s %9.0f %9.0f %9.4f %9.4f %9.4f %5.1f%% %6" PRIu64
            " %6" PRIu64 " %6" PRIu64 " %6" PRIu64 "\n", name,
            v->in_rate, v->out_rate, v->p50 * 1e3, v->p99 * 1e3, v->max * 1e3,
            v->busy * 100, LD(&m->inbox_last), LD(&m->inbox_hwm),
            LD(&m->axon_last), LD(&m->axon_hwm));
  }
}

/* ------------------------------------------------------------------ */
/* text buffers                                                        */

typedef struct tbuf_s {
  char *p;
  size_t n, cap;
  int oom;
} tbuf_t;

/* Appends printf-formatted text to b (sets b->oom when out of memory). */
static void tb_printf(tbuf_t *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void tb_printf(tbuf_t *b, const char *fmt, ...) {
  if (b->oom) return;
  for (;;) {
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(b->p ? b->p + b->n : NULL, b->p ? b->cap - b->n : 0,
                      fmt, ap);
    va_end(ap);
    if (k < 0) return;
    if (b->p && b->n + (size_t)k < b->cap) {
      b->n += (size_t)k;
      return;
    }
    size_t cap = b->cap ? b->cap * 2 : 4096;
    while (cap < b->n + (size_t)k + 1) cap *= 2;
    char *q = realloc(b->p, cap);
    if (!q) {
      b->oom = 1;
      return;
    }
    b->p = q;
    b->cap = cap;
  }
}

/* Appends s escaped as a Prometheus label value (\\, \", \n) or, dot
 * set, as a DOT quoted string (\\, \", newlines as spaces). */
static void tb_escaped(tbuf_t *b, const char *s, int dot) {
  for (; s && *s; s++) {
    if (*s == '\\') tb_printf(b, "\\\\");
    else if (*s == '"') tb_printf(b, "\\\"");
    else if (*s == '\n') tb_printf(b, dot ? " " : "\\n");
    else if (dot && *s == '\r') tb_printf(b, " ");
    else tb_printf(b, "%c", *s);
  }
}

/* ------------------------------------------------------------------ */
/* Prometheus                                                          */

/* Writes a family's HELP and TYPE lines. */
static void prom_family(tbuf_t *b, const char *name, const char *type,
                        const char *help) {
  tb_printf(b, "# HELP neuronbus_%s %s\n# TYPE neuronbus_%s %s\n", name, help,
            name, type);
}

/* Writes one sample of a per-neuron family: name{neuron="..."} value. */
static void prom_neuron(tbuf_t *b, const char *name, const char *neuron,
                        double v) {
  tb_printf(b, "neuronbus_%s{neuron=\"", name);
  tb_escaped(b, neuron, 0);
  tb_printf(b, "\"} %.17g\n", v);
}

/* The per-neuron counters and gauges: name, type, help, and the value. */
typedef struct nfam_s {
  const char *name, *type, *help;
  int kind; /* which value, see neuron_value */
} nfam_t;

static const nfam_t neuron_families[] = {
  {"spikes_in_total", "counter", "Spikes delivered to the neuron's agent.", 0},
  {"spikes_out_total", "counter", "Spikes the neuron published to its axon.", 1},
  {"fires_total", "counter", "Threshold crossings (integrate-and-fire).", 2},
  {"errors_total", "counter", "Agent callbacks that failed.", 3},
  {"deferred_total", "counter", "Tick-spike pairs held back by refractoriness.", 4},
  {"filtered_total", "counter", "Spikes into the neuron stopped by a dendritic filter.", 5},
  {"axon_full_total", "counter", "Fires refused because the axon was full.", 6},
  {"arena_full_total", "counter", "Fires refused because the arena was full.", 7},
  {"dead_letters_total", "counter", "Spikes to the neuron counted as dead letters.", 8},
  {"kept_payloads", "gauge", "Payloads the agent keeps now (spike:keep).", 9},
  {"busy_seconds_total", "counter", "Time spent in the agent's handlers (on_spike batches, tick).", 10},
  {"inbox_depth", "gauge", "Spikes in the inbox at the last delivery.", 11},
  {"inbox_depth_max", "gauge", "Most spikes delivered in one batch (inbox high-water mark).", 12},
  {"axon_depth", "gauge", "Spikes waiting in the axon after the last handler call.", 13},
  {"axon_depth_max", "gauge", "Axon high-water mark.", 14},
  {"handler_p50_seconds", "gauge", "Median handler call time over the last interval.", 15},
  {"handler_p99_seconds", "gauge", "99th percentile handler call time over the last interval.", 16},
  {"handler_max_seconds", "gauge", "Longest handler call over the last interval.", 17},
  {"spikes_in_per_second", "gauge", "Spikes delivered per second over the last interval.", 18},
};

/* Returns neuron i's value of family kind (see neuron_families). */
static double neuron_value(nb_rt_t *rt, uint32_t i, const nb_rt_stat_t *s,
                           int kind) {
  nb__nmetrics_t *m = rt->agents[i]->metrics;
  nb__ival_t *v = &rt->mrt->iv[i];
  switch (kind) {
  case 0: return (double)s->spikes_in;
  case 1: return (double)s->spikes_out;
  case 2: return (double)s->fires;
  case 3: return (double)s->errors;
  case 4: return (double)s->deferred;
  case 5: return (double)s->filtered;
  case 6: return (double)s->full;
  case 7: return (double)s->arena_full;
  case 8: return (double)nb_neuron_stats(rt->agents[i]->neuron)->dead_letters;
  case 9: return (double)s->kept;
  case 10: return m ? (double)LD(&m->busy_ns) / 1e9 : 0;
  case 11: return m ? (double)LD(&m->inbox_last) : 0;
  case 12: return m ? (double)LD(&m->inbox_hwm) : 0;
  case 13: return m ? (double)LD(&m->axon_last) : 0;
  case 14: return m ? (double)LD(&m->axon_hwm) : 0;
  case 15: return v->p50;
  case 16: return v->p99;
  case 17: return v->max;
  default: return v->in_rate;
  }
}

/* Writes a synapse's samples (callback of nb_synapse_table_each). */
typedef struct syn_prom_s {
  nb_rt_t *rt;
  tbuf_t *b;
  int which; /* 0 carried, 1 filtered, 2 weight */
} syn_prom_t;

static void syn_prom(void *ctx, const nb_synapse_t *s) {
  syn_prom_t *c = ctx;
  static const char *const names[] = {"synapse_spikes_total",
                                      "synapse_filtered_total",
                                      "synapse_weight"};
  const char *from = nb_rt_name(c->rt, s->pre), *to = nb_rt_name(c->rt, s->post);
  double v = c->which == 0   ? (double)atomic_load_explicit(&s->carried, memory_order_relaxed)
             : c->which == 1 ? (double)atomic_load_explicit(&s->filtered, memory_order_relaxed)
                             : (double)nb_atomic_f32_load(&s->weight);
  tb_printf(c->b, "neuronbus_%s{from=\"", names[c->which]);
  tb_escaped(c->b, from ? from : "?", 0);
  tb_printf(c->b, "\",to=\"");
  tb_escaped(c->b, to ? to : "?", 0);
  tb_printf(c->b, "\"} %.9g\n", v);
}

/* Writes the whole exposition of rt into b. */
static void prom_text(nb_rt_t *rt, tbuf_t *b, uint64_t now) {
  const nb_cortex_stats_t *cs = nb_cortex_stats(rt->cx);
  prom_family(b, "uptime_seconds", "gauge", "Seconds since the runtime started.");
  tb_printf(b, "neuronbus_uptime_seconds %.3f\n", (double)(now - rt->start_ns) / 1e9);
  prom_family(b, "ticks_total", "counter", "Ticks run.");
  tb_printf(b, "neuronbus_ticks_total %" PRIu64 "\n", rt->ticks);
  prom_family(b, "ticks_skipped_total", "counter", "Overdue ticks skipped by a late timed loop.");
  tb_printf(b, "neuronbus_ticks_skipped_total %" PRIu64 "\n", rt->ticks_skipped);
  prom_family(b, "routed_total", "counter", "Spike deliveries into inboxes.");
  tb_printf(b, "neuronbus_routed_total %" PRIu64 "\n", cs->routed);
  prom_family(b, "cortex_dead_letters_total", "counter", "Spikes to unknown or stopped targets.");
  tb_printf(b, "neuronbus_cortex_dead_letters_total %" PRIu64 "\n", cs->dead_letters);
  prom_family(b, "pruned_total", "counter", "Synapses removed by pruning.");
  tb_printf(b, "neuronbus_pruned_total %" PRIu64 "\n", cs->pruned);
  nb_rt_stat_t *st = calloc(rt->n ? rt->n : 1, sizeof *st);
  if (!st) {
    b->oom = 1;
    return;
  }
  for (uint32_t i = 0; i < rt->n; i++) nb_rt_stat(rt, i, &st[i]);
  for (size_t f = 0; f < sizeof neuron_families / sizeof *neuron_families; f++) {
    const nfam_t *fam = &neuron_families[f];
    prom_family(b, fam->name, fam->type, fam->help);
    for (uint32_t i = 0; i < rt->n; i++)
      prom_neuron(b, fam->name, rt->agents[i]->name,
                  neuron_value(rt, i, &st[i], fam->kind));
  }
  free(st);
  prom_family(b, "handler_seconds", "histogram",
              "Handler call time (one on_spike batch or one tick call).");
  for (uint32_t i = 0; i < rt->n; i++) {
    nb__nmetrics_t *m = rt->agents[i]->metrics;
    if (!m) continue;
    uint64_t cum = 0;
    for (unsigned k = 0; k < NB__HIST_N; k++) {
      cum += LD(&m->hist[k]);
      tb_printf(b, "neuronbus_handler_seconds_bucket{neuron=\"");
      tb_escaped(b, rt->agents[i]->name, 0);
      if (k < NB__HIST_N - 1) tb_printf(b, "\",le=\"%g\"} %" PRIu64 "\n", nb__bucket_le(k), cum);
      else tb_printf(b, "\",le=\"+Inf\"} %" PRIu64 "\n", cum);
    }
    /* _count equals the +Inf bucket: both from the same reads. */
    prom_neuron(b, "handler_seconds_sum", rt->agents[i]->name,
                (double)LD(&m->busy_ns) / 1e9);
    tb_printf(b, "neuronbus_handler_seconds_count{neuron=\"");
    tb_escaped(b, rt->agents[i]->name, 0);
    tb_printf(b, "\"} %" PRIu64 "\n", cum);
  }
  static const char *const syn_help[][2] = {
    {"synapse_spikes_total", "Spikes the synapse carried into its post's inbox."},
    {"synapse_filtered_total", "Spikes the synapse's filters stopped."},
    {"synapse_weight", "The synapse's weight now (STDP moves it)."}};
  for (int w = 0; w < 3; w++) {
    prom_family(b, syn_help[w][0], w == 2 ? "gauge" : "counter", syn_help[w][1]);
    syn_prom_t c = {rt, b, w};
    nb_synapse_table_each(nb_cortex_synapses(rt->cx), syn_prom, &c);
  }
  if (rt->arena) {
    nb_arena_stats_t as;
    nb_arena_stats(rt->arena, &as);
    uint64_t kept = 0;
    for (uint32_t i = 0; i < rt->n; i++) kept += nb__keep_count(rt->agents[i]);
    prom_family(b, "arena_capacity_bytes", "gauge", "Bytes of the payload arena.");
    tb_printf(b, "neuronbus_arena_capacity_bytes %" PRIu64 "\n", (uint64_t)as.capacity);
    prom_family(b, "arena_in_use_bytes", "gauge", "Arena bytes in segments not free.");
    tb_printf(b, "neuronbus_arena_in_use_bytes %" PRIu64 "\n", (uint64_t)as.in_use);
    prom_family(b, "arena_free_segments", "gauge", "Arena segments free for reuse.");
    tb_printf(b, "neuronbus_arena_free_segments %u\n", as.free);
    prom_family(b, "arena_segments", "gauge", "Arena segments in all.");
    tb_printf(b, "neuronbus_arena_segments %u\n", as.segments);
    prom_family(b, "arena_reclaimed_total", "counter", "Arena segments reclaimed for reuse.");
    tb_printf(b, "neuronbus_arena_reclaimed_total %" PRIu64 "\n", (uint64_t)as.reclaimed);
    prom_family(b, "arena_kept_payloads", "gauge", "Payloads agents keep past on_spike.");
    tb_printf(b, "neuronbus_arena_kept_payloads %" PRIu64 "\n", kept);
  }
  /* Workers: one series each (one worker: the loop thread's ticks). */
  prom_family(b, "neuron_worker", "gauge", "The worker a neuron runs on.");
  for (uint32_t i = 0; i < rt->n; i++)
    prom_neuron(b, "neuron_worker", rt->agents[i]->name,
                (double)nb_rt_worker_of(rt, i));
  static const char *const wk_help[][3] = {
    {"worker_ticks_total", "counter", "Ticks the worker ran."},
    {"worker_busy_seconds_total", "counter", "Time inside the worker's ticks."},
    {"worker_delivered_total", "counter", "Spikes the worker handed to its agents."},
    {"worker_queued", "gauge", "Spikes other workers sent it, not yet routed."},
    {"worker_adopted_ticks_total", "counter",
     "Ticks other threads ran while its own was stuck in a call."}};
  uint32_t nw = nb_rt_workers(rt);
  for (int k = 0; k < 5; k++) {
    prom_family(b, wk_help[k][0], wk_help[k][1], wk_help[k][2]);
    for (uint32_t w = 0; w < nw; w++) {
      nb_rt_worker_stat_t ws;
      nb_rt_worker_stat(rt, w, &ws);
      double v = k == 0 ? (double)ws.ticks : k == 1 ? (double)ws.busy_ns / 1e9
                 : k == 2 ? (double)ws.delivered : k == 3 ? (double)ws.queued
                 : (double)ws.adopted;
      tb_printf(b, "neuronbus_%s{worker=\"%u\"} %.9g\n", wk_help[k][0], w, v);
    }
  }
  size_t nl = nb_rt_link_count(rt);
  if (nl) {
    static const struct { const char *name, *type, *help; } lf[] = {
      {"link_sent_total", "counter", "Spikes handed to the link."},
      {"link_acked_total", "counter", "Sent spikes the peer confirmed."},
      {"link_resent_total", "counter", "Frames written again after a reconnect."},
      {"link_received_total", "counter", "Spikes received from the peer."},
      {"link_queued", "gauge", "Spikes held now: unsent or unacknowledged (the window)."},
      {"link_queue_bytes", "gauge", "Payload bytes held now."},
      {"link_reconnects_total", "counter", "Handshakes after a lost connection."},
      {"link_errors_total", "counter", "Connections closed for an error."},
      {"link_rtt_seconds", "gauge",
       "Round trip from a write to its ack, smoothed (0 before the first)."}};
    for (size_t f = 0; f < sizeof lf / sizeof *lf; f++) {
      prom_family(b, lf[f].name, lf[f].type, lf[f].help);
      for (size_t i = 0; i < nl; i++) {
        nb_link_stats_t ls;
        const char *peer = NULL;
        if (nb_rt_link_stats(rt, i, &ls, &peer) != 0) continue;
        double v[] = {(double)ls.sent, (double)ls.acked, (double)ls.resent,
                      (double)ls.received, (double)ls.queued,
                      (double)ls.queue_bytes, (double)ls.reconnects,
                      (double)ls.errors, (double)ls.rtt_ns / 1e9};
        tb_printf(b, "neuronbus_%s{link=\"%zu\",peer=\"", lf[f].name, i);
        tb_escaped(b, peer ? peer : "", 0);
        tb_printf(b, "\"} %.9g\n", v[f]);
      }
    }
  }
}

/* ------------------------------------------------------------------ */
/* DOT                                                                 */

/* A node and an edge of a graph to draw (live or from a manifest). */
typedef struct dnode_s {
  const char *name, *region; /* region: the first one, NULL for none */
  char extra[64];            /* appended to the label (DOT-escaped) */
  int remote;                /* a remote neuron: drawn dashed */
} dnode_t;

typedef struct dedge_s {
  uint32_t from, to;
  double w;
  int stdp;
  int64_t carried; /* -1: not known (no run) */
} dedge_t;

/* Writes a digraph titled title into b: nodes grouped by region as
 * clusters (in the order their first node appears), edges labelled with
 * their weight, pen width growing with it. */
static void dot_emit(tbuf_t *b, const char *title, const dnode_t *nd,
                     uint32_t n, const dedge_t *e, size_t ne) {
  tb_printf(b, "digraph \"");
  tb_escaped(b, title ? title : "neuronbus", 1);
  tb_printf(b, "\" {\n  rankdir=LR;\n  node [shape=box, style=rounded];\n");
  char *done = calloc(n ? n : 1, 1);
  if (!done) {
    b->oom = 1;
    return;
  }
  unsigned cluster = 0;
  for (uint32_t i = 0; i < n; i++) {
    if (done[i]) continue;
    const char *region = nd[i].region, *indent = "  ";
    if (region) {
      tb_printf(b, "  subgraph cluster_%u {\n    label=\"", cluster++);
      tb_escaped(b, region, 1);
      tb_printf(b, "\";\n");
      indent = "    ";
    }
    for (uint32_t j = i; j < n; j++) {
      const char *r2 = nd[j].region;
      if (done[j] || (region ? !r2 || strcmp(region, r2) : r2 != NULL)) continue;
      done[j] = 1;
      tb_printf(b, "%sn%u [label=\"", indent, j);
      tb_escaped(b, nd[j].name, 1);
      tb_printf(b, "%s\"%s];\n", nd[j].extra,
                nd[j].remote ? ", style=\"rounded,dashed\"" : "");
    }
    if (region) tb_printf(b, "  }\n");
  }
  free(done);
  for (size_t k = 0; k < ne; k++) {
    double w = e[k].w, wc = w < 0 ? 0 : w > 1 ? 1 : w;
    tb_printf(b, "  n%u -> n%u [label=\"%.3g%s\", penwidth=%.2f", e[k].from,
              e[k].to, w, e[k].stdp ? " stdp" : "", 0.5 + 4.0 * wc);
    if (e[k].carried >= 0)
      tb_printf(b, ", tooltip=\"%" PRId64 " spikes\"", e[k].carried);
    tb_printf(b, "];\n");
  }
  tb_printf(b, "}\n");
}

typedef struct edges_s {
  dedge_t *v;
  size_t n, cap;
  int oom;
} edges_t;

/* Appends e to es (sets es->oom when out of memory). */
static void edge_add(edges_t *es, dedge_t e) {
  if (es->n == es->cap) {
    size_t cap = es->cap ? es->cap * 2 : 16;
    dedge_t *v = realloc(es->v, cap * sizeof *v);
    if (!v) {
      es->oom = 1;
      return;
    }
    es->v = v;
    es->cap = cap;
  }
  es->v[es->n++] = e;
}

/* Adds a live synapse as an edge (callback of nb_synapse_table_each). */
static void syn_edge(void *ctx, const nb_synapse_t *s) {
  edge_add(ctx, (dedge_t){s->pre, s->post, nb_atomic_f32_load(&s->weight),
                          s->stdp_on,
                          (int64_t)atomic_load_explicit(&s->carried,
                                                        memory_order_relaxed)});
}

/* Writes the live graph of rt into b (spike counts in the labels). */
static void dot_text(nb_rt_t *rt, tbuf_t *b) {
  dnode_t *nd = calloc(rt->n ? rt->n : 1, sizeof *nd);
  edges_t es = {0};
  if (!nd) {
    b->oom = 1;
    return;
  }
  for (uint32_t i = 0; i < rt->n; i++) {
    nb__agent_t *a = rt->agents[i];
    nb_rt_stat_t s;
    nb_rt_stat(rt, i, &s);
    nd[i].name = a->name;
    nd[i].region = a->ntags[1] ? a->tags[1][0] : NULL;
    nd[i].remote = a->proxy != NULL;
    snprintf(nd[i].extra, sizeof nd[i].extra,
             "\\nin %" PRIu64 " out %" PRIu64, s.spikes_in, s.spikes_out);
  }
  nb_synapse_table_each(nb_cortex_synapses(rt->cx), syn_edge, &es);
  if (es.oom) b->oom = 1;
  else dot_emit(b, rt->name, nd, rt->n, es.v, es.n);
  free(es.v);
  free(nd);
}

/* What graph_walk fills from a normalized manifest. */
typedef struct mgraph_s {
  tbuf_t *b;
} mgraph_t;

/* Returns field key of the table at idx as a string in C's stack (kept
 * there), or NULL. */
static const char *field_str(lua_State *C, int idx, const char *key) {
  lua_getfield(C, idx, key);
  return lua_type(C, -1) == LUA_TSTRING ? lua_tostring(C, -1) : NULL;
}

/* Draws the normalized topology on top of C into ctx's buffer
 * (nb__manifest_with's callback); returns 0, or -1 out of memory. */
static int graph_walk(lua_State *C, void *ctx) {
  mgraph_t *g = ctx;
  int topo = lua_gettop(C);
  lua_getfield(C, topo, "neurons");
  int nidx = lua_gettop(C);
  uint32_t n = (uint32_t)lua_objlen(C, nidx);
  dnode_t *nd = calloc(n ? n : 1, sizeof *nd);
  edges_t es = {0};
  if (!nd) return -1;
  /* The strings stay referenced from the topology table on the stack. */
  for (uint32_t i = 0; i < n; i++) {
    lua_rawgeti(C, nidx, (int)i + 1);
    int t = lua_gettop(C);
    nd[i].name = field_str(C, t, "name");
    lua_pop(C, 1);
    lua_getfield(C, t, "regions");
    if (lua_istable(C, -1)) {
      lua_rawgeti(C, -1, 1);
      nd[i].region = lua_type(C, -1) == LUA_TSTRING ? lua_tostring(C, -1) : NULL;
      lua_pop(C, 1);
    }
    lua_pop(C, 1);
    lua_getfield(C, t, "remote");
    nd[i].remote = !lua_isnil(C, -1);
    lua_pop(C, 1);
    lua_getfield(C, t, "script");
    if (lua_type(C, -1) == LUA_TSTRING) {
      const char *sc = lua_tostring(C, -1), *base = strrchr(sc, '/');
      snprintf(nd[i].extra, sizeof nd[i].extra, "\\n%s", base ? base + 1 : sc);
    }
    lua_pop(C, 2);
  }
  lua_getfield(C, topo, "synapses");
  int sidx = lua_gettop(C);
  size_t ns = lua_objlen(C, sidx);
  for (size_t k = 0; k < ns; k++) {
    lua_rawgeti(C, sidx, (int)k + 1);
    int t = lua_gettop(C);
    const char *from = field_str(C, t, "from"), *to = field_str(C, t, "to");
    lua_getfield(C, t, "weight");
    double w = lua_tonumber(C, -1);
    lua_getfield(C, t, "stdp");
    int stdp = lua_toboolean(C, -1);
    uint32_t a = n, z = n;
    for (uint32_t i = 0; i < n; i++) {
      if (from && nd[i].name && !strcmp(nd[i].name, from)) a = i;
      if (to && nd[i].name && !strcmp(nd[i].name, to)) z = i;
    }
    if (a < n && z < n) edge_add(&es, (dedge_t){a, z, w, stdp, -1});
    lua_settop(C, sidx);
  }
  lua_getfield(C, topo, "name");
  const char *title = lua_type(C, -1) == LUA_TSTRING ? lua_tostring(C, -1) : NULL;
  int rc = es.oom ? -1 : 0;
  if (!rc) dot_emit(g->b, title, nd, n, es.v, es.n);
  free(es.v);
  free(nd);
  lua_settop(C, topo);
  return g->b->oom ? -1 : rc;
}

char *nb_rt_graph_dot(const char *path, char **err) {
  tbuf_t b = {0};
  mgraph_t g = {&b};
  if (nb__manifest_with(path, graph_walk, &g, err) != 0) {
    free(b.p);
    if (!*err) *err = nb__strf("%s: out of memory drawing the graph", path);
    return NULL;
  }
  return b.p;
}

/* ------------------------------------------------------------------ */
/* snapshots                                                           */

void nb__snap_free(nb__snap_t *s) {
  if (!s) return;
  free(s->json);
  free(s->prom);
  free(s->dot);
  for (uint32_t i = 0; i < s->n; i++) {
    free(s->names[i]);
    free(s->cards[i]);
  }
  free(s->names);
  free(s->cards);
  free(s);
}

nb__snap_t *nb__snapshot_build(nb_rt_t *rt) {
  uint64_t now = nb_clock_ns();
  nb__metrics_close_if_due(rt, now);
  nb__snap_t *s = calloc(1, sizeof *s);
  if (!s) return NULL;
  s->built_ns = now;
  json_t *o = nb__stats_json(rt);
  if (!o) goto oom;
  json_t *ns = json_object_get(o, "neurons");
  s->n = (uint32_t)json_array_size(ns);
  s->names = calloc(s->n ? s->n : 1, sizeof *s->names);
  s->cards = calloc(s->n ? s->n : 1, sizeof *s->cards);
  if (!s->names || !s->cards) {
    json_decref(o);
    goto oom;
  }
  for (uint32_t i = 0; i < s->n; i++) {
    json_t *one = json_array_get(ns, i);
    s->names[i] = nb__strdup(json_string_value(json_object_get(one, "name")));
    s->cards[i] = json_dumps(one, NB__JSON_FLAGS);
  }
  s->json = json_dumps(o, NB__JSON_FLAGS);
  json_decref(o);
  if (!s->json) goto oom;
  s->njson = strlen(s->json);
  tbuf_t p = {0};
  prom_text(rt, &p, now);
  if (p.oom) {
    free(p.p);
    goto oom;
  }
  s->prom = p.p;
  s->nprom = p.n;
  tbuf_t d = {0};
  dot_text(rt, &d);
  if (d.oom) {
    free(d.p);
    goto oom;
  }
  s->dot = d.p;
  s->ndot = d.n;
  return s;
oom:
  nb__snap_free(s);
  return NULL;
}
