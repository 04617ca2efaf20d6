/* nb_rt_run.c: the libuv loop that drives a runtime (fixed tick interval
 * or free-running), clean shutdown on SIGINT/SIGTERM, and the statistics
 * report (a readable table, or one JSON object per line). */
#include "nb_rt_internal.h"
#include "nb_rt_metrics.h"

#include <inttypes.h>
#include <signal.h>
#include <string.h>

#include <uv.h>

/* The loop's bounds. Ticks run in slices of at most NB__SLICE_NS of work
 * (the clock is read after every tick, whatever a tick costs), then the
 * loop serves signals, --for, link I/O, task timers and statistics before
 * the next slice: SIGINT/SIGTERM are served within a slice plus the tick
 * that was running. A timed runtime that falls behind by more than
 * NB__LATE_WINDOW_NS of ticks skips the older overdue ticks (counted in
 * the statistics as skipped): it runs late, it never catches up forever. */
#define NB__SLICE_NS 10000000ull      /* 10 ms of ticks, then the loop */
#define NB__BURST_NS 2000000ull       /* free-running: 2 ms per loop turn */
#define NB__LATE_WINDOW_NS 100000000ull /* timed: overdue ticks caught up */
#define NB__LATE_REPORT_NS 10000000000ull /* skipped ticks: a line per 10 s */

#define NB__DRAIN_NS 2000000000ull  /* shutdown delivers for at most 2 s */

#define NB__KEEP_SCAN_MS 250              /* how often old keeps are looked for */

typedef struct loop_s {
  uv_loop_t *loop; /* the runtime's (nb__loop) */
  uv_timer_t tick, limit, stats, keeps;
  uv_idle_t idle;
  uv_signal_t sigint, sigterm, sigusr1;
  nb_rt_t *rt;
  const nb_rt_run_opts_t *o;
  uint64_t t0_ns;   /* when ticking started */
  uint64_t done;    /* ticks run by the loop */
  uint64_t skipped; /* timed: overdue ticks skipped (t0 moved past them) */
  uint64_t reported_ns, reported; /* the last line about skipped ticks */
  int stopping;
  int error;        /* a negative nb_err_t from a tick */
} loop_t;

/* Ends the loop: no more ticks; shutdown happens after uv_run returns. */
static void loop_stop(loop_t *l) {
  if (l->stopping) return;
  l->stopping = 1;
  uv_stop(l->loop);
}

/* Runs up to max ticks (fewer when the tick limit is reached, or once
 * budget_ns of work ran: the clock is read after each tick); returns the
 * number run. */
static uint64_t loop_ticks(loop_t *l, uint64_t max, uint64_t budget_ns) {
  if (l->stopping) return 0;
  if (l->o->ticks) {
    if (l->done >= l->o->ticks) {
      loop_stop(l);
      return 0;
    }
    if (max > l->o->ticks - l->done) max = l->o->ticks - l->done;
  }
  /* One thread: tick by tick, the clock read after each; with workers,
   * one round of the team (docs/workers.md). */
  int64_t ran = nb__rt_burst(l->rt, max, budget_ns);
  if (ran < 0) {
    fprintf(nb__log(stderr), "neuronbus: tick failed: %s\n",
            nb_strerror((int)ran));
    l->error = (int)ran;
    loop_stop(l);
    return 0;
  }
  l->done += (uint64_t)ran;
  if (l->o->ticks && l->done >= l->o->ticks) loop_stop(l);
  return (uint64_t)ran;
}

/* Timed mode: runs the ticks due by now, in one slice; a backlog larger
 * than the catch-up window is skipped (the runtime runs late). */
static void on_tick(uv_timer_t *t) {
  loop_t *l = t->data;
  nb_rt_t *rt = l->rt;
  uint64_t now = nb_clock_ns();
  uint64_t due = (now - l->t0_ns) / rt->tick_ns + 1 - l->skipped;
  uint64_t window = NB__LATE_WINDOW_NS / rt->tick_ns;
  if (window < 2) window = 2;
  if (due > l->done + window) {
    uint64_t skip = due - l->done - window;
    l->skipped += skip;
    rt->ticks_skipped += skip;
    due -= skip;
    if (!rt->opts.quiet && (!l->reported_ns ||
                            now - l->reported_ns >= NB__LATE_REPORT_NS)) {
      fprintf(nb__log(stderr), "neuronbus: the loop is behind: ticks take longer "
              "than the tick interval (%.3g ms); %" PRIu64 " overdue ticks "
              "skipped so far (%" PRIu64 " since the last report): the "
              "runtime runs late, it does not catch up\n",
              (double)rt->tick_ns / 1e6, rt->ticks_skipped,
              rt->ticks_skipped - l->reported);
      l->reported_ns = now;
      l->reported = rt->ticks_skipped;
    }
  }
  if (due > l->done) {
    /* How late the oldest tick of this slice runs. */
    uint64_t sched = l->t0_ns + (l->done + l->skipped) * rt->tick_ns;
    rt->late_ns = now > sched ? now - sched : 0;
    loop_ticks(l, due - l->done, NB__SLICE_NS);
  } else {
    rt->late_ns = 0;
  }
}

/* Free-running mode: a burst of at most NB__BURST_NS per loop turn, so
 * signals and timers are served between bursts. */
static void on_idle(uv_idle_t *h) {
  loop_ticks(h->data, UINT64_MAX, NB__BURST_NS);
}

/* --for elapsed: ends the loop. */
static void on_limit(uv_timer_t *t) { loop_stop(t->data); }

/* Closes the metrics interval and prints the periodic statistics: the
 * line or table, and the JSON line of --stats-file. */
static void on_stats(uv_timer_t *t) {
  loop_t *l = t->data;
  nb__metrics_close(l->rt, nb_clock_ns(), 0);
  if (l->o->stats_file) {
    json_t *o = nb__stats_json(l->rt);
    if (o) {
      nb__json_line(l->o->stats_file, o);
      fflush(l->o->stats_file);
    }
  }
  if (l->o->stats)
    nb_rt_print_stats(l->rt, l->o->out ? l->o->out : stdout,
                      l->o->stats == 2, 0);
}

/* SIGUSR1: the statistics table on stderr, and the run goes on. */
static void on_usr1(uv_signal_t *s, int signum) {
  loop_t *l = s->data;
  (void)signum;
  fprintf(nb__log(stderr), "neuronbus: SIGUSR1: statistics follow\n");
  nb_rt_print_stats(l->rt, stderr, 0, 0);
}

/* Reports payloads kept longer than their neuron's keep_warn. */
static void on_keeps(uv_timer_t *t) {
  loop_t *l = t->data;
  nb__keep_scan(l->rt, nb_clock_ns());
}

/* SIGINT/SIGTERM: announces it and ends the loop (shutdown follows). */
static void on_signal(uv_signal_t *s, int signum) {
  loop_t *l = s->data;
  fprintf(nb__log(stderr), "neuronbus: %s received, stopping\n",
          signum == SIGINT ? "SIGINT" : "SIGTERM");
  loop_stop(l);
}

/* Nothing to free: every handle lives in the loop_t on the stack. */
static void on_close(uv_handle_t *h) { (void)h; }

/* Closes every handle still open (callback for uv_walk). */
static void close_walk(uv_handle_t *h, void *arg) {
  (void)arg;
  if (!uv_is_closing(h)) uv_close(h, on_close);
}

int nb_rt_run(nb_rt_t *rt, const nb_rt_run_opts_t *opts) {
  nb_rt_run_opts_t defaults = {0};
  if (!opts) opts = &defaults;
  loop_t l;
  memset(&l, 0, sizeof l);
  l.rt = rt;
  l.o = opts;
  FILE *out = opts->out ? opts->out : stdout;
  l.loop = nb__loop(rt);
  rt->looping = 1; /* tasks resume from the loop's check phase */
  uv_signal_init(l.loop, &l.sigint);
  uv_signal_init(l.loop, &l.sigterm);
  l.sigint.data = l.sigterm.data = &l;
  uv_signal_start(&l.sigint, on_signal, SIGINT);
  uv_signal_start(&l.sigterm, on_signal, SIGTERM);
  uv_signal_init(l.loop, &l.sigusr1);
  l.sigusr1.data = &l;
  uv_signal_start(&l.sigusr1, on_usr1, SIGUSR1);
  uv_unref((uv_handle_t *)&l.sigusr1); /* never keeps the loop alive */
  /* Hot reload: script changes and SIGHUP are served between ticks. */
  struct nb__watch_s *watch = nb__reload_watch_start(l.loop, rt,
                                                     !opts->no_watch);
  /* TCP links: listen and dial before the first tick (a taken port ends
   * the run before any agent ticks). */
  int lrc = nb_rt_link_start(rt, l.loop);
  if (lrc != 0) {
    l.error = lrc;
    /* Not loop_stop: uv_stop before any uv_run would make the closing
     * uv_run below return at once, leaving this frame's handles in the
     * loop. */
    l.stopping = 1;
  }
  /* Fault isolation: the watchdog reports a long entry, and signals are
   * acknowledged while one holds the loop thread (after uv_signal_start). */
  nb__isol_run_begin(rt);
  l.t0_ns = nb_clock_ns();
  if (rt->tick_ns) {
    /* A timer of the tick interval (at least 1 ms: libuv's resolution);
     * sub-millisecond ticks are caught up each millisecond. */
    uint64_t ms = rt->tick_ns / 1000000u;
    if (ms == 0) ms = 1;
    uv_timer_init(l.loop, &l.tick);
    l.tick.data = &l;
    uv_timer_start(&l.tick, on_tick, ms, ms);
  } else {
    uv_idle_init(l.loop, &l.idle);
    l.idle.data = &l;
    uv_idle_start(&l.idle, on_idle);
  }
  if (opts->for_ns) {
    uv_timer_init(l.loop, &l.limit);
    l.limit.data = &l;
    uint64_t ms = (opts->for_ns + 999999u) / 1000000u;
    uv_timer_start(&l.limit, on_limit, ms, 0);
  }
  uv_timer_init(l.loop, &l.keeps);
  l.keeps.data = &l;
  uv_timer_start(&l.keeps, on_keeps, NB__KEEP_SCAN_MS, NB__KEEP_SCAN_MS);
  uv_unref((uv_handle_t *)&l.keeps); /* never keeps the loop alive */
  if (opts->stats_every_ns) nb__metrics_set_interval(rt, opts->stats_every_ns);
  if (!l.stopping && opts->http &&
      nb__httpd_start(rt, l.loop, opts->http) != 0) {
    /* Not loop_stop: uv_stop's flag would keep the run below that closes
     * the handles from turning at all. */
    l.error = NB_EIO;
    l.stopping = 1;
  }
  if (opts->stats || opts->stats_file) {
    uint64_t every = opts->stats_every_ns ? opts->stats_every_ns : 1000000000u;
    uint64_t ms = every / 1000000u ? every / 1000000u : 1;
    uv_timer_init(l.loop, &l.stats);
    l.stats.data = &l;
    uv_timer_start(&l.stats, on_stats, ms, ms);
  }
  if (!l.stopping && (opts->ticks == 0 || l.done < opts->ticks))
    uv_run(l.loop, UV_RUN_DEFAULT);
  /* Tasks stop first: their pending requests are cancelled. With links,
   * shutdown then flushes them on the still-running loop (their handles
   * close before the walk below); on_stop runs in there. The loop itself
   * is the runtime's: nb_rt_close closes it. */
  nb__async_stop(rt);
  nb__httpd_stop(rt);
  if (rt->link) nb_rt_link_stop(rt, opts->drain_ns);
  uv_walk(l.loop, close_walk, NULL);
  uv_run(l.loop, UV_RUN_DEFAULT);
  rt->looping = 0;
  nb__reload_watch_free(watch);
  /* Pending spikes are delivered (for at most the drain time: a slow
   * agent does not hold the exit for long) and every on_stop runs. */
  nb__rt_stop_within(rt, opts->drain_ns ? opts->drain_ns : NB__DRAIN_NS);
  nb__metrics_close(rt, nb_clock_ns(), 1); /* the final: whole run */
  if (opts->stats_file) {
    json_t *o = nb__stats_json(rt);
    if (o) {
      json_object_set_new(o, "final", json_true());
      nb__json_line(opts->stats_file, o);
    }
    fflush(opts->stats_file);
  }
  nb_rt_print_stats(rt, out, opts->stats == 2, 1);
  fflush(out);
  nb__isol_run_end(rt);
  return l.error;
}

/* ------------------------------------------------------------------ */
/* statistics                                                          */

typedef struct syn_ctx_s {
  nb_rt_t *rt;
  FILE *f;      /* the table's rows, or */
  json_t *arr;  /* the JSON objects */
} syn_ctx_t;

/* Returns the manifest name of s's learning mode (the text table prints
 * it after "stdp" with a space, except "pair"). */
static const char *learning_name(const nb_synapse_t *s) {
  switch (s->stdp.mode) {
  case NB_STDP_TRACE: return " trace";
  case NB_STDP_REWARD: return " reward";
  default: return " pair";
  }
}

/* Prints one synapse, or adds its JSON object to c->arr (callback of
 * nb_synapse_table_each). */
static void print_synapse(void *ctx, const nb_synapse_t *s) {
  syn_ctx_t *c = ctx;
  const char *from = nb_rt_name(c->rt, s->pre), *to = nb_rt_name(c->rt, s->post);
  float w = nb_atomic_f32_load(&s->weight);
  if (c->arr) {
    json_t *o = json_object();
    if (!o) return;
    nb__json_set_str(o, "from", from ? from : "?");
    nb__json_set_str(o, "to", to ? to : "?");
    nb__json_set(o, "weight", nb__json_num("%.6g", w));
    nb__json_set_bool(o, "stdp", s->stdp_on);
    if (s->stdp_on) nb__json_set_str(o, "learning", learning_name(s) + 1);
    nb__json_set_u64(o, "carried",
                     atomic_load_explicit(&s->carried, memory_order_relaxed));
    nb__json_set_u64(o, "filtered",
                     atomic_load_explicit(&s->filtered, memory_order_relaxed));
    json_array_append_new(c->arr, o);
  } else {
    char pair[128];
    snprintf(pair, sizeof pair, "%s -> %s", from ? from : "?", to ? to : "?");
    fprintf(c->f, "  %-36s %10.6f%s%s\n", pair, w, s->stdp_on ? "  stdp" : "",
            s->stdp_on && s->stdp.mode != NB_STDP_PAIR ? learning_name(s) : "");
  }
}

/* Prints the arena's use and the payloads agents keep: one line to f, or
 * (obj not NULL) an "arena" member of obj. */
static void print_arena(nb_rt_t *rt, FILE *f, json_t *obj, uint64_t now) {
  nb_arena_stats_t st;
  nb_arena_stats(rt->arena, &st);
  uint64_t kept = 0, refused = 0, oldest = 0;
  const char *holder = NULL;
  for (uint32_t i = 0; i < rt->n; i++) {
    nb_rt_stat_t s;
    nb_rt_stat(rt, i, &s);
    kept += s.kept;
    refused += s.arena_full;
    if (s.kept_since_ns && (!oldest || s.kept_since_ns < oldest)) {
      oldest = s.kept_since_ns;
      holder = rt->agents[i]->name;
    }
  }
  double age = oldest ? (double)(now - oldest) / 1e9 : 0;
  if (obj) {
    json_t *a = json_object();
    if (!a) return;
    nb__json_set_u64(a, "capacity", st.capacity);
    nb__json_set_u64(a, "in_use", st.in_use);
    nb__json_set_u64(a, "segment_size", st.segment_size);
    nb__json_set_u64(a, "segments", st.segments);
    nb__json_set_u64(a, "free", st.free);
    nb__json_set_u64(a, "active", st.active);
    nb__json_set_u64(a, "sealed", st.sealed);
    nb__json_set_u64(a, "processes", st.processes);
    nb__json_set_u64(a, "reclaimed", st.reclaimed);
    nb__json_set_u64(a, "reaped", st.reaped);
    nb__json_set_u64(a, "arena_full", refused);
    nb__json_set_u64(a, "kept", kept);
    if (holder) {
      nb__json_set(a, "oldest_kept_s", nb__json_num("%.3f", age));
      nb__json_set_str(a, "oldest_holder", holder);
    }
    nb__json_set(obj, "arena", a);
    return;
  }
  fprintf(f, "  arena: %.1f MB in %u segments of %u KB: in use %.1f MB "
          "(%.0f%%), free %u, active %u, sealed %u; reclaimed %" PRIu64,
          (double)st.capacity / 1048576.0, st.segments, st.segment_size >> 10,
          (double)st.in_use / 1048576.0,
          st.capacity ? 100.0 * (double)st.in_use / (double)st.capacity : 0,
          st.free, st.active, st.sealed, st.reclaimed);
  if (st.processes > 1 || st.reaped)
    fprintf(f, "; %u processes, %" PRIu64 " reaped", st.processes, st.reaped);
  fprintf(f, "; kept %" PRIu64, kept);
  if (holder) fprintf(f, " (oldest %.1f s, by %s)", age, holder);
  if (refused) fprintf(f, "; fires refused for want of space %" PRIu64, refused);
  fputc('\n', f);
}

/* Returns a new JSON object of neuron i's row, or NULL (out of memory). */
static json_t *neuron_json(nb_rt_t *rt, uint32_t i) {
  nb_rt_stat_t s;
  nb_rt_stat(rt, i, &s);
  json_t *o = json_object();
  if (!o) return NULL;
  nb__json_set_u64(o, "id", i);
  nb__json_set_str(o, "name", rt->agents[i]->name);
  nb__json_set_u64(o, "spikes_in", s.spikes_in);
  nb__json_set_u64(o, "spikes_out", s.spikes_out);
  nb__json_set_u64(o, "fires", s.fires);
  nb__json_set_u64(o, "errors", s.errors);
  nb__json_set_u64(o, "full", s.full);
  nb__json_set_u64(o, "deferred", s.deferred);
  nb__json_set_u64(o, "filtered", s.filtered);
  nb__json_set_u64(o, "arena_full", s.arena_full);
  nb__json_set_u64(o, "kept", s.kept);
  nb__json_set_u64(o, "worker", (uint64_t)nb_cortex_worker_of(rt->cx, i));
  nb__isol_json(rt, i, o); /* dead letters, restarts, state, memory */
  for (int k = 0; k < NB__CARD_TEXTS; k++)
    if (rt->agents[i]->text[k])
      nb__json_set_str(o, nb__card_text_keys[k], rt->agents[i]->text[k]);
  /* Flat members before the version's, which end the object (readers
   * match "reloads_rejected":N} as its end). */
  nb__metrics_json(rt, i, o); /* card tags, handler time, depths */
  nb_rt_version_t v;
  nb_rt_version(rt, i, &v);
  nb__json_set_u64(o, "version", v.counter);
  nb__json_set_str(o, "hash", v.hash);
  nb__json_set_u64(o, "reloads", v.reloads);
  nb__json_set_u64(o, "reloads_rejected", v.rejected);
  return o;
}

/* Returns the statistics as one JSON object (nb_rt_json.h: jansson, valid
 * UTF-8 whatever the names hold), or NULL when out of memory. */
static json_t *stats_json(nb_rt_t *rt, int final, const nb_rt_stat_t *tot,
                          double elapsed, double rate, uint64_t now) {
  const nb_cortex_stats_t *cs = nb_cortex_stats(rt->cx);
  json_t *o = json_object();
  if (!o) return NULL;
  nb__json_set_str(o, "type", "stats");
  nb__json_set_bool(o, "final", final);
  nb__json_set_str(o, "topology", rt->name ? rt->name : "");
  nb__json_set_u64(o, "ticks", rt->ticks);
  nb__json_set(o, "elapsed_s", nb__json_num("%.3f", elapsed));
  nb__json_set(o, "spikes_per_s", nb__json_num("%.1f", rate));
  nb__json_set_u64(o, "ticks_skipped", rt->ticks_skipped);
  nb__json_set(o, "late_ms", nb__json_num("%.3f", (double)rt->late_ns / 1e6));
  json_t *t = json_object();
  if (t) {
    nb__json_set_u64(t, "spikes_in", tot->spikes_in);
    nb__json_set_u64(t, "spikes_out", tot->spikes_out);
    nb__json_set_u64(t, "fires", tot->fires);
    nb__isol_json_totals(rt, t); /* dead letters and restarts */
    nb__json_set_u64(t, "errors", tot->errors);
  }
  nb__json_set(o, "totals", t);
  json_t *c = json_object();
  if (c) {
    nb__json_set_u64(c, "routed", cs->routed);
    nb__json_set_u64(c, "dead_letters", cs->dead_letters);
    nb__json_set_u64(c, "filtered", cs->filtered);
    nb__json_set_u64(c, "pruned", cs->pruned);
    nb__json_set_u64(c, "rewards", cs->rewards);
    uint64_t ch[3];
    nb__learn_counts(rt, ch); /* agents' nb:connect / nb:disconnect */
    nb__json_set_u64(c, "connected", ch[0]);
    nb__json_set_u64(c, "disconnected", ch[1]);
    nb__json_set_u64(c, "changes_refused", ch[2]);
  }
  nb__json_set(o, "cortex", c);
  nb__json_set(o, "workers", nb__team_json(rt));
  json_t *ns = json_array();
  for (uint32_t i = 0; ns && i < rt->n; i++)
    json_array_append_new(ns, neuron_json(rt, i));
  nb__json_set(o, "neurons", ns);
  syn_ctx_t sc = {rt, NULL, json_array()};
  if (sc.arr)
    nb_synapse_table_each(nb_cortex_synapses(rt->cx), print_synapse, &sc);
  nb__json_set(o, "synapses", sc.arr);
  if (rt->arena) print_arena(rt, NULL, o, now);
  if (rt->link) nb__link_json(rt, o);
  return o;
}

/* Sums every neuron's counters into *tot; returns nothing. */
static void totals(nb_rt_t *rt, nb_rt_stat_t *tot) {
  memset(tot, 0, sizeof *tot);
  for (uint32_t i = 0; i < rt->n; i++) {
    nb_rt_stat_t s;
    nb_rt_stat(rt, i, &s);
    tot->spikes_in += s.spikes_in;
    tot->spikes_out += s.spikes_out;
    tot->fires += s.fires;
    tot->errors += s.errors;
  }
}

json_t *nb__stats_json(nb_rt_t *rt) {
  uint64_t now = nb_clock_ns();
  nb_rt_stat_t tot;
  totals(rt, &tot);
  double dt = (double)(now - rt->rate_t0_ns) / 1e9;
  double rate = dt > 0 ? (double)(tot.spikes_in - rt->rate_in0) / dt : 0;
  return stats_json(rt, 0, &tot, (double)(now - rt->start_ns) / 1e9, rate,
                    now);
}

void nb_rt_print_stats(nb_rt_t *rt, FILE *f, int json, int final) {
  uint64_t now = nb_clock_ns();
  nb_rt_stat_t tot;
  totals(rt, &tot);
  /* Periodic lines show the rate since the previous line; the final one
   * the average over the whole run. */
  uint64_t t0 = final ? rt->start_ns : rt->rate_t0_ns;
  uint64_t in0 = final ? 0 : rt->rate_in0;
  double dt = (double)(now - t0) / 1e9;
  double rate = dt > 0 ? (double)(tot.spikes_in - in0) / dt : 0;
  double elapsed = (double)(now - rt->start_ns) / 1e9;
  rt->rate_t0_ns = now;
  rt->rate_in0 = tot.spikes_in;
  if (json) {
    json_t *o = stats_json(rt, final, &tot, elapsed, rate, now);
    if (o) nb__json_line(f, o);
    fflush(f);
    return;
  }
  const nb_cortex_stats_t *cs = nb_cortex_stats(rt->cx);
  syn_ctx_t sc = {rt, f, NULL};
  fprintf(f, "== %s statistics: %s, tick %" PRIu64 ", %.2f s, %.0f spikes/s%s\n",
          final ? "final" : "periodic", rt->name, rt->ticks, elapsed, rate,
          final ? " (average)" : "");
  if (rt->ticks_skipped || rt->late_ns >= 2 * rt->tick_ns + 1000000u)
    fprintf(f, "  loop: ticks run %.1f ms late, %" PRIu64 " overdue ticks "
            "skipped\n", (double)rt->late_ns / 1e6, rt->ticks_skipped);
  fprintf(f, "  %4s %-20s %10s %10s %8s %7s %7s %8s %8s%s  %s\n", "id",
          "neuron", "spikes_in", "spikes_out", "fires", "errors", "full",
          "deferred", "filtered", nb__isol_head(), "version");
  for (uint32_t i = 0; i < rt->n; i++) {
    nb_rt_stat_t s;
    nb_rt_stat(rt, i, &s);
    /* version: counter/first 8 hex digits of the hash, then the
     * rejected reloads when there were any ("-" without a script). */
    nb_rt_version_t v;
    nb_rt_version(rt, i, &v);
    char ver[64] = "-";
    if (v.counter)
      snprintf(ver, sizeof ver, "v%u/%.8s%s", v.counter, v.hash,
               v.rejected ? " (rejected " : "");
    if (v.counter && v.rejected)
      snprintf(ver + strlen(ver), sizeof ver - strlen(ver), "%" PRIu64 ")",
               v.rejected);
    char iso[96];
    fprintf(f, "  %4u %-20s %10" PRIu64 " %10" PRIu64 " %8" PRIu64 " %7" PRIu64
            " %7" PRIu64 " %8" PRIu64 " %8" PRIu64 "%s  %s\n", i,
            rt->agents[i]->name, s.spikes_in, s.spikes_out, s.fires,
            s.errors, s.full, s.deferred, s.filtered,
            nb__isol_cells(rt, i, iso, sizeof iso), ver);
  }
  char iso[64];
  fprintf(f, "  %4s %-20s %10" PRIu64 " %10" PRIu64 " %8" PRIu64 " %7" PRIu64
          " %7s %8s %8s%s\n", "", "total", tot.spikes_in, tot.spikes_out,
          tot.fires, tot.errors, "", "", "",
          nb__isol_total_cells(rt, iso, sizeof iso));
  nb__metrics_table(rt, f);
  fprintf(f, "  cortex: routed %" PRIu64 ", dead letters %" PRIu64
          ", filtered %" PRIu64 ", pruned %" PRIu64 "\n",
          cs->routed, cs->dead_letters, cs->filtered, cs->pruned);
  uint64_t ch[3];
  nb__learn_counts(rt, ch);
  /* Only when learning happened: most topologies never reward or rewire. */
  if (cs->rewards || ch[0] || ch[1] || ch[2])
    fprintf(f, "  learning: rewards %" PRIu64 "; synapses connected %" PRIu64
            ", disconnected %" PRIu64 ", refused %" PRIu64 " at run time\n",
            cs->rewards, ch[0], ch[1], ch[2]);
  nb__team_print(rt, f);
  if (rt->arena) print_arena(rt, f, NULL, now);
  /* The cards' free text (a description), one line each. */
  for (uint32_t i = 0; i < rt->n; i++)
    for (int k = 0; k < NB__CARD_TEXTS; k++)
      if (rt->agents[i]->text[k])
        fprintf(f, "  %s %s: %s\n", rt->agents[i]->name,
                nb__card_text_keys[k], rt->agents[i]->text[k]);
  if (nb_synapse_table_count(nb_cortex_synapses(rt->cx))) {
    fprintf(f, "  %-36s %10s\n", "synapse", "weight");
    nb_synapse_table_each(nb_cortex_synapses(rt->cx), print_synapse, &sc);
  }
  if (rt->link) nb__link_print_stats(rt, f);
  fflush(f);
}
