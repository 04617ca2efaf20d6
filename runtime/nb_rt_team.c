/* nb_rt_team.c: the worker threads of a runtime with workers > 1.
 *
 * The cortex is sharded over N workers (docs/workers.md); here N threads
 * tick them, one worker each, while the loop thread coordinates. The
 * runtime alternates two phases:
 *
 *   round: every worker thread ticks its worker, up to a target number of
 *          ticks or until the loop asks for a pause (free-running bursts);
 *          between ticks each thread also adopts a worker stuck in one
 *          agent call for longer than adopt_after (the core lets it tick
 *          every neuron of that worker but the stuck one);
 *   pause: the loop thread holds every worker (nb_cortex_worker_hold) and
 *          the service lock, and does what must not race a tick: the
 *          loop's I/O and timers, tasks resuming, links, restarts, reload,
 *          statistics, topology changes, shutdown.
 *
 * So no Lua state is ever entered by two threads at once, and everything
 * the runtime does between ticks stays single-threaded, as with one
 * worker. What agents call during a round that reaches the loop (timers,
 * HTTP, processes, files, links, fault policies) takes the service lock:
 * libuv and the runtime's lists are used by one thread at a time.
 *
 * Outside rounds the loop thread owns the pause; a thread that was stuck
 * in a call when it was adopted waits for its worker when the call
 * returns, and a call still running during a pause keeps its neuron busy:
 * the pause never enters that neuron (nb__rt_busy). */
#include "nb_rt_internal.h"

#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "nb_wait.h"

#define HELP_EVERY 64       /* ticks between looks at stuck workers */
#define IDLE_WAIT_NS 10000000ull /* a thread done with its round looks at
                                    stuck workers this often, 10 ms */
#define JOIN_WAIT_NS 1000000000ull /* the loop's join, per wait: 1 s */
#define JOIN_GRACE_S 2      /* closing: how long a thread in a call may
                               take to return before it is left behind */

typedef struct thr_s {
  struct nb__team_s *T;
  uint32_t w;
  pthread_t th;
  int started;
  nb_arena_writer_t *writer; /* this thread's (nb_neuron_thread_writer) */
} thr_t;

/* One worker's counters, on its own cache line: written by whichever
 * thread ticks the worker, read by the loop (relaxed: statistics). */
typedef struct wstat_s {
  alignas(64) _Atomic uint64_t ticks;     /* ticks run (any thread) */
  _Atomic uint64_t target;                /* the round's: stop at this */
  _Atomic uint64_t delivered, busy_ns;    /* spikes handed over, time */
  _Atomic uint64_t adopted;               /* ticks run by another thread */
  _Atomic uint64_t reported_since;        /* the stuck call reported */
  _Atomic int64_t stuck_id;               /* its neuron, -1 for none */
  _Atomic uint64_t own_since; /* when its own thread began the tick it is
                                 in, 0 when it is in none */
} wstat_t;

struct nb__team_s {
  nb_rt_t *rt;
  nb_cortex_t *cx;
  uint32_t n;
  int pin;
  uint64_t adopt_after_ns;
  thr_t *thr;
  wstat_t *ws;
  /* The loop bumps round (release) after setting the targets and clearing
   * pause; threads wait on it. pause (release) asks them to start no tick. */
  alignas(64) _Atomic uint64_t round;
  nb_parking_t round_park;
  _Atomic int pause, quit;
  /* Workers that reached the round's target: the loop's join waits on it
   * (bumped by the tick that reaches it, so once a worker a round). */
  alignas(64) _Atomic uint64_t reached;
  nb_parking_t reached_park;
  pthread_mutex_t svc; /* the service lock (see the top) */
  pthread_t loop;      /* the thread that made the team and pauses it */
  int held;            /* the loop holds the pause (read on the loop only) */
  int started;
  int broken;          /* a thread could not start: no round runs */
};

/* ---- the service lock ---- */

nb_rt_t *nb__svc_enter(nb_rt_t *rt) {
  if (!rt || !rt->team) return NULL;
  struct nb__team_s *T = rt->team;
  /* The pause's owner holds it already (tasks resumed in the pause). */
  if (pthread_equal(T->loop, pthread_self()) && T->held) return NULL;
  pthread_mutex_lock(&T->svc);
  return rt;
}

void nb__svc_leave(nb_rt_t **rtp) {
  if (*rtp) pthread_mutex_unlock(&(*rtp)->team->svc);
}

int nb__rt_busy(const nb__agent_t *a) {
  return a->rt->team && a->neuron &&
         nb_cortex_busy(a->rt->cx, (nb_id_t)a->cell.id);
}

/* ---- one worker's tick ---- */

/* Ticks worker w on the calling thread (t0: the clock just before),
 * counting it; returns the spikes delivered, or NB_EBUSY when another
 * thread has the worker. */
static int tick_one(struct nb__team_s *T, uint32_t w, int adopted,
                    uint64_t t0) {
  int rc = nb_cortex_tick_worker(T->cx, w);
  if (rc < 0) return rc;
  wstat_t *s = &T->ws[w];
  atomic_fetch_add_explicit(&s->busy_ns, nb_clock_ns() - t0,
                            memory_order_relaxed);
  atomic_fetch_add_explicit(&s->delivered, (uint64_t)rc,
                            memory_order_relaxed);
  if (adopted) atomic_fetch_add_explicit(&s->adopted, 1, memory_order_relaxed);
  uint64_t prev = atomic_fetch_add_explicit(&s->ticks, 1,
                                            memory_order_relaxed);
  if (prev + 1 == atomic_load_explicit(&s->target, memory_order_relaxed)) {
    /* Release: the loop's join sees this worker's tick before it pauses
     * (the pause then orders everything else through the worker lock). */
    atomic_fetch_add_explicit(&T->reached, 1, memory_order_release);
    nb_parking_wake(&T->reached_park);
  }
  return rc;
}

/* Reports the neuron stuck in a call on worker w (once per call); in the
 * pause. */
static void report_stuck(struct nb__team_s *T, uint32_t w, nb_id_t id,
                         uint64_t since) {
  wstat_t *s = &T->ws[w];
  uint64_t old = atomic_load_explicit(&s->reported_since,
                                      memory_order_relaxed);
  if (old == since ||
      !atomic_compare_exchange_strong_explicit(&s->reported_since, &old,
                                               since, memory_order_relaxed,
                                               memory_order_relaxed))
    return;
  atomic_store_explicit(&s->stuck_id, (int64_t)id, memory_order_relaxed);
  nb_rt_t *rt = T->rt;
  if (rt->opts.quiet) return;
  const char *name = nb_neuron_name(nb_cortex_neuron(T->cx, id));
  fprintf(stderr, "neuronbus: neuron \"%s\" (id %u, worker %u) has been in "
          "one call for %.0f ms: the other neurons of worker %u are ticked "
          "by other threads until it returns; spikes to it wait\n",
          name ? name : "?", (unsigned)id, w,
          (double)(nb_clock_ns() - since) / 1e6, w);
  fflush(stderr);
}

/* Ticks, once each, the workers (other than self) whose own thread has
 * been inside one tick for adopt_after or longer (stuck in an agent call:
 * the core lets another thread tick the rest) and that are still short of
 * their target; returns how many it ticked. After the first adoption the
 * worker's lock no longer shows the call, so the thread's own clock, not
 * the lock, says it is stuck. */
static int help_stuck(struct nb__team_s *T, uint32_t self) {
  int ran = 0;
  for (uint32_t w = 0; w < T->n; w++) {
    if (w == self) continue;
    wstat_t *s = &T->ws[w];
    uint64_t own = atomic_load_explicit(&s->own_since, memory_order_relaxed);
    if (!own || nb_clock_ns() - own < T->adopt_after_ns) continue;
    if (atomic_load_explicit(&s->ticks, memory_order_relaxed) >=
        atomic_load_explicit(&s->target, memory_order_relaxed))
      continue;
    if (tick_one(T, w, 1, nb_clock_ns()) >= 0) ran++;
  }
  return ran;
}

/* ---- worker threads ---- */

/* Pins the calling thread to the k-th CPU it may run on; returns nothing. */
static void pin_to(uint32_t k) {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) != 0) return;
  int ncpu = CPU_COUNT(&set);
  if (ncpu <= 0) return;
  int want = (int)(k % (uint32_t)ncpu), seen = 0;
  for (int c = 0; c < CPU_SETSIZE; c++) {
    if (!CPU_ISSET(c, &set)) continue;
    if (seen++ == want) {
      cpu_set_t one;
      CPU_ZERO(&one);
      CPU_SET(c, &one);
      pthread_setaffinity_np(pthread_self(), sizeof one, &one);
      return;
    }
  }
}

/* A worker thread: per round, ticks its worker up to the target or until
 * the pause, helping stuck workers between ticks; returns NULL at quit. */
static void *thr_main(void *arg) {
  thr_t *t = arg;
  struct nb__team_s *T = t->T;
  char name[16]; /* what ps, top and /proc/PID/task/TID/comm show */
  snprintf(name, sizeof name, "nb-worker-%u", t->w);
  pthread_setname_np(pthread_self(), name);
  if (T->pin) pin_to(t->w);
  nb_neuron_thread_writer(t->writer);
  nb_wait_t wait = nb_wait_default(NB_WAIT_YIELD_PARK);
  wstat_t *s = &T->ws[t->w];
  uint64_t seen = 0;
  for (;;) {
    seen = nb_wait_for(&wait, &T->round, seen + 1, &T->round_park,
                       &T->quit);
    if (atomic_load_explicit(&T->quit, memory_order_acquire)) break;
    /* The round (acquire) orders the targets and the pause flag. */
    uint64_t k = 0;
    while (!atomic_load_explicit(&T->pause, memory_order_acquire)) {
      uint64_t done = atomic_load_explicit(&s->ticks, memory_order_relaxed);
      if (done >= atomic_load_explicit(&s->target, memory_order_relaxed)) {
        /* Its part is done: sleep until the next round, looking now and
         * then for a stuck worker that needs a hand. */
        if (help_stuck(T, t->w)) continue;
        if (nb_wait_for_timeout(&wait, &T->round, seen + 1, &T->round_park,
                                IDLE_WAIT_NS) > seen)
          break;
        continue;
      }
      uint64_t t0 = nb_clock_ns();
      atomic_store_explicit(&s->own_since, t0, memory_order_relaxed);
      int rc = tick_one(T, t->w, 0, t0);
      atomic_store_explicit(&s->own_since, 0, memory_order_relaxed);
      if (rc == NB_EBUSY || rc == 0) sched_yield();
      if ((++k % HELP_EVERY) == 0 || rc <= 0) help_stuck(T, t->w);
    }
  }
  nb_neuron_thread_writer(NULL);
  return NULL;
}

/* ---- the loop's side ---- */

/* In the pause: names the neuron each stuck worker's own thread is in a
 * call with (a busy neuron of that worker: the pause holds the worker, so
 * the busy marks are stable); returns nothing. */
static void find_stuck(struct nb__team_s *T) {
  uint64_t now = nb_clock_ns();
  for (uint32_t w = 0; w < T->n; w++) {
    uint64_t own = atomic_load_explicit(&T->ws[w].own_since,
                                        memory_order_relaxed);
    if (!own || now - own < T->adopt_after_ns) continue;
    size_t count = nb_cortex_count(T->cx);
    for (size_t id = 0; id < count; id++)
      if ((uint32_t)nb_cortex_worker_of(T->cx, (nb_id_t)id) == w &&
          nb_cortex_busy(T->cx, (nb_id_t)id)) {
        report_stuck(T, w, (nb_id_t)id, own);
        break;
      }
  }
}

/* Holds every worker and the service lock (the pause); returns nothing. */
static void pause_take(struct nb__team_s *T) {
  if (T->held) return;
  atomic_store_explicit(&T->pause, 1, memory_order_release);
  /* Workers first, then the service lock: a thread blocked on the lock is
   * in an agent call (holdable) or in a filter, which the lock lets
   * finish. */
  for (uint32_t w = 0; w < T->n; w++)
    while (nb_cortex_worker_hold(T->cx, w) == NB_EBUSY) sched_yield();
  pthread_mutex_lock(&T->svc);
  T->held = 1;
  find_stuck(T);
}

/* Gives the pause back; returns nothing. */
static void pause_give(struct nb__team_s *T) {
  if (!T->held) return;
  pthread_mutex_unlock(&T->svc);
  for (uint32_t w = 0; w < T->n; w++) nb_cortex_worker_release(T->cx, w);
  T->held = 0;
}

/* Starts the threads (at the first round); returns 0 or NB_ENOMEM (then
 * for good: the threads that did start wait for the runtime's close). */
static int start(struct nb__team_s *T) {
  T->started = 1;
  for (uint32_t w = 0; w < T->n; w++) {
    thr_t *t = &T->thr[w];
    t->T = T;
    t->w = w;
    if ((T->rt->arena && !t->writer &&
         nb_arena_writer_new(&t->writer, T->rt->arena) != 0) ||
        pthread_create(&t->th, NULL, thr_main, t) != 0) {
      T->broken = 1;
      return NB_ENOMEM;
    }
    t->started = 1;
  }
  return 0;
}

int nb__team_new(nb_rt_t *rt, uint32_t workers, int pin,
                 uint64_t adopt_after_ns) {
  struct nb__team_s *T = calloc(1, sizeof *T);
  if (!T) abort();
  T->rt = rt;
  T->cx = rt->cx;
  T->n = workers;
  T->pin = pin;
  T->adopt_after_ns = adopt_after_ns ? adopt_after_ns
                                     : NB_ADOPT_AFTER_DEFAULT_NS;
  T->loop = pthread_self();
  T->thr = calloc(workers, sizeof *T->thr);
  T->ws = aligned_alloc(64, workers * sizeof *T->ws);
  if (!T->thr || !T->ws) abort();
  memset(T->ws, 0, workers * sizeof *T->ws);
  for (uint32_t w = 0; w < workers; w++)
    atomic_store_explicit(&T->ws[w].stuck_id, -1, memory_order_relaxed);
  pthread_mutex_init(&T->svc, NULL);
  rt->team = T;
  /* Built and initialized on the loop thread: it owns the pause until the
   * first round. */
  pause_take(T);
  return 0;
}

/* Returns the spikes every worker of T delivered so far. */
static uint64_t delivered_all(const struct nb__team_s *T) {
  uint64_t d = 0;
  for (uint32_t w = 0; w < T->n; w++)
    d += atomic_load_explicit(&T->ws[w].delivered, memory_order_relaxed);
  return d;
}

int64_t nb__team_round(nb_rt_t *rt, uint64_t ticks, uint64_t budget_ns,
                       uint64_t *delivered) {
  struct nb__team_s *T = rt->team;
  if (T->broken) return NB_ENOMEM;
  if (!T->started) {
    int rc = start(T);
    if (rc) {
      fprintf(stderr, "neuronbus: cannot start %u worker threads (out of "
              "memory or threads): no tick runs\n", T->n);
      return rc;
    }
  }
  uint64_t base0 = atomic_load_explicit(&T->ws[0].ticks, memory_order_relaxed);
  uint64_t d0 = delivered_all(T);
  for (uint32_t w = 0; w < T->n; w++) {
    uint64_t done = atomic_load_explicit(&T->ws[w].ticks,
                                         memory_order_relaxed);
    atomic_store_explicit(&T->ws[w].target,
                          ticks == UINT64_MAX ? UINT64_MAX : done + ticks,
                          memory_order_relaxed);
  }
  atomic_store_explicit(&T->reached, 0, memory_order_relaxed);
  atomic_store_explicit(&T->pause, 0, memory_order_relaxed);
  pause_give(T);
  /* Release: the targets and the pause flag before the round. */
  atomic_fetch_add_explicit(&T->round, 1, memory_order_release);
  nb_parking_wake(&T->round_park);
  /* The loop thread runs no agent code in a round (a stuck agent there
   * would stop the loop): it waits for every worker to reach its target,
   * or for the burst's time to pass. */
  uint64_t start_ns = nb_clock_ns();
  nb_wait_t wait = nb_wait_default(NB_WAIT_YIELD_PARK);
  for (;;) {
    uint64_t now = nb_clock_ns(), slice = JOIN_WAIT_NS;
    if (budget_ns) {
      if (now - start_ns >= budget_ns) break;
      if (budget_ns - (now - start_ns) < slice)
        slice = budget_ns - (now - start_ns);
    }
    if (nb_wait_for_timeout(&wait, &T->reached, T->n, &T->reached_park,
                            slice) >= T->n)
      break;
  }
  pause_take(T);
  if (delivered) *delivered = delivered_all(T) - d0;
  return (int64_t)(atomic_load_explicit(&T->ws[0].ticks,
                                        memory_order_relaxed) - base0);
}

/* Returns how many neurons are in a call another thread is still in (read
 * in the pause, which holds every worker: the busy marks are stable). */
static uint32_t count_busy(struct nb__team_s *T) {
  uint32_t busy = 0;
  size_t count = nb_cortex_count(T->cx);
  for (size_t id = 0; id < count; id++)
    busy += nb_cortex_busy(T->cx, (nb_id_t)id) ? 1u : 0u;
  return busy;
}

uint32_t nb__team_settle(nb_rt_t *rt, uint64_t wait_ns) {
  struct nb__team_s *T = rt->team;
  if (!T || !T->held) return 0;
  uint64_t until = nb_clock_ns() + wait_ns;
  uint32_t busy;
  while ((busy = count_busy(T)) && nb_clock_ns() < until) {
    /* The pause flag stays set, so no thread starts a tick or adopts a
     * worker: only a thread returning from its call takes its worker back
     * (call_end), finishes the tick it was in and gives the worker up. */
    pause_give(T);
    struct timespec ts = {0, 200000};
    nanosleep(&ts, NULL);
    pause_take(T);
  }
  if (busy && !rt->opts.quiet) {
    size_t count = nb_cortex_count(T->cx);
    for (size_t id = 0; id < count; id++) {
      if (!nb_cortex_busy(T->cx, (nb_id_t)id)) continue;
      const char *name = nb_neuron_name(nb_cortex_neuron(T->cx, (nb_id_t)id));
      fprintf(nb__log(stderr), "neuronbus: shutdown: neuron \"%s\" (id %u) is "
              "still in one call on another thread after %.3g s: its "
              "on_stop is skipped and spikes to it are not delivered\n",
              name ? name : "?", (unsigned)id, (double)wait_ns / 1e9);
    }
    fflush(stderr);
  }
  return busy;
}

uint32_t nb__team_workers(const nb_rt_t *rt) {
  return rt->team ? rt->team->n : 1;
}

void nb__team_stat(const nb_rt_t *rt, uint32_t w, nb__team_stat_t *out) {
  memset(out, 0, sizeof *out);
  if (!rt->team || w >= rt->team->n) return;
  wstat_t *s = &rt->team->ws[w];
  out->ticks = atomic_load_explicit(&s->ticks, memory_order_relaxed);
  out->delivered = atomic_load_explicit(&s->delivered, memory_order_relaxed);
  out->busy_ns = atomic_load_explicit(&s->busy_ns, memory_order_relaxed);
  out->adopted = atomic_load_explicit(&s->adopted, memory_order_relaxed);
  /* The last neuron reported stuck on w, while it is still in its call
   * (busy: read under the pause, which holds w). */
  int64_t id = atomic_load_explicit(&s->stuck_id, memory_order_relaxed);
  out->stuck = -1;
  if (id >= 0 && nb_cortex_busy(rt->cx, (nb_id_t)id)) {
    out->stuck = (int)id;
    out->stuck_ns = nb_clock_ns() - atomic_load_explicit(
                                        &s->reported_since,
                                        memory_order_relaxed);
  }
}

uint32_t nb__team_free(nb_rt_t *rt) {
  struct nb__team_s *T = rt->team;
  if (!T) return 0;
  atomic_store_explicit(&T->quit, 1, memory_order_release);
  atomic_fetch_add_explicit(&T->round, 1, memory_order_release);
  nb_parking_wake(&T->round_park);
  /* A thread returning from a call it was adopted in waits for its
   * worker: let it finish that tick and see quit. */
  pause_give(T);
  uint32_t left = 0;
  for (uint32_t w = 0; w < T->n; w++) {
    thr_t *t = &T->thr[w];
    if (t->started) {
      struct timespec until;
      clock_gettime(CLOCK_REALTIME, &until);
      until.tv_sec += JOIN_GRACE_S;
      if (pthread_timedjoin_np(t->th, NULL, &until) != 0) {
        /* Still inside an agent call: it is left running, and so is
         * everything it may touch (the caller keeps the cortex). */
        pthread_detach(t->th);
        left++;
        continue;
      }
    }
    nb_arena_writer_free(t->writer);
  }
  if (left) return left; /* the team stays too: its threads read it */
  pthread_mutex_destroy(&T->svc);
  free(T->thr);
  free(T->ws);
  free(T);
  rt->team = NULL;
  return 0;
}

void nb__team_print(const nb_rt_t *rt, FILE *f) {
  for (uint32_t w = 0; rt->team && w < rt->team->n; w++) {
    nb__team_stat_t st;
    nb__team_stat(rt, w, &st);
    uint32_t neurons = 0;
    for (uint32_t i = 0; i < rt->n; i++)
      neurons += (uint32_t)nb_cortex_worker_of(rt->cx, (nb_id_t)i) == w;
    double up = (double)(nb_clock_ns() - rt->start_ns);
    fprintf(f, "  worker %u: %u neurons, ticks %" PRIu64 ", busy %.1f%%, "
            "delivered %" PRIu64 ", queued for it %" PRIu64 ", adopted "
            "ticks %" PRIu64, w, neurons, st.ticks,
            up > 0 ? 100.0 * (double)st.busy_ns / up : 0, st.delivered,
            nb_cortex_worker_queued(rt->cx, w), st.adopted);
    if (st.stuck >= 0)
      fprintf(f, "; \"%s\" in one call for %.1f s",
              nb_rt_name(rt, (uint32_t)st.stuck), (double)st.stuck_ns / 1e9);
    fputc('\n', f);
  }
}

json_t *nb__team_json(const nb_rt_t *rt) {
  json_t *arr = json_array();
  for (uint32_t w = 0; arr && w < nb__team_workers(rt); w++) {
    nb__team_stat_t st;
    nb__team_stat(rt, w, &st);
    json_t *o = json_object();
    if (!o) break;
    nb__json_set_u64(o, "worker", w);
    nb__json_set_u64(o, "ticks", rt->team ? st.ticks : rt->ticks);
    nb__json_set_u64(o, "busy_ns", st.busy_ns);
    nb__json_set_u64(o, "delivered", st.delivered);
    nb__json_set_u64(o, "queued", nb_cortex_worker_queued(rt->cx, w));
    nb__json_set_u64(o, "adopted_ticks", st.adopted);
    if (st.stuck >= 0) {
      nb__json_set_str(o, "stuck", nb_rt_name(rt, (uint32_t)st.stuck));
      nb__json_set(o, "stuck_s", nb__json_num("%.3f",
                                              (double)st.stuck_ns / 1e9));
    }
    json_array_append_new(arr, o);
  }
  return arr;
}

uint32_t nb_rt_workers(const nb_rt_t *rt) { return nb__team_workers(rt); }

int nb_rt_worker_of(const nb_rt_t *rt, uint32_t id) {
  return id < rt->n ? nb_cortex_worker_of(rt->cx, (nb_id_t)id) : -1;
}

int nb_rt_worker_stat(const nb_rt_t *rt, uint32_t w,
                      nb_rt_worker_stat_t *out) {
  if (w >= nb__team_workers(rt)) return NB_ENOENT;
  nb__team_stat_t st;
  nb__team_stat(rt, w, &st);
  *out = (nb_rt_worker_stat_t){
      .ticks = rt->team ? st.ticks : rt->ticks, .busy_ns = st.busy_ns,
      .delivered = st.delivered, .queued = nb_cortex_worker_queued(rt->cx, w),
      .adopted = st.adopted, .stuck = st.stuck, .stuck_ns = st.stuck_ns};
  return 0;
}
