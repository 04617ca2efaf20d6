/* nb_rt_async.c: what agents wait for without blocking the loop: the
 * runtime's libuv loop, requests (timers here; HTTP, processes and files
 * in their own files) and the completions that resume an agent's tasks.
 *
 * A request belongs to one agent. Its backend runs it on the loop and
 * reports with nb__req_event: each event is queued on the agent (copied:
 * the backend's buffers may go), and the agent is put on the ready list.
 * Between ticks the runtime enters each ready agent's state through the
 * "resume" entry (one entry per task step, so a budget and the watchdog
 * apply per resume, and an error there is the agent's, under its policy);
 * the Lua side (neuronbus.agent) pulls one event with nb_rt_next_event and
 * resumes the task waiting for it, or starts a task nb:spawn queued.
 *
 * Cancelling: a request cancelled (by its task, or because the agent's
 * state closes at a restart or stop, or the runtime stops) asks its
 * backend to stop; no event of it is delivered after. The backend frees
 * the request once its handles are closed.
 *
 * Threads: everything here runs on the runtime's loop thread, or on a
 * worker thread under the service lock (the nb_rt_* entries agents call:
 * NB__SVC_SCOPE). */
#include "nb_rt_internal.h"

#include <stdlib.h>
#include <string.h>

#include <uv.h>

#define RESUMES_PER_TURN 64 /* task steps per agent before others get a turn */

typedef struct ev_s {
  struct ev_s *next;
  nb_rt_event_t e; /* its pointers point into bytes */
  char bytes[];
} ev_t;

struct nb__async_s { /* per agent */
  nb__req_t *reqs;       /* outstanding, newest first */
  ev_t *head, *tail;     /* completions not yet pulled */
  ev_t *last;            /* the event Lua holds (freed on the next pull) */
  uint32_t next_id;      /* request ids, never 0 */
  uint32_t tasks;        /* live tasks (nb_rt_task_begin/end) */
  uint64_t tasks_total;  /* tasks started */
  int ready;             /* on the runtime's ready list */
  nb__agent_t *next_ready;
};

struct nb__async_rt_s { /* per runtime */
  uv_check_t check;   /* resumes ready agents after each I/O phase */
  uv_idle_t spin;     /* active while agents are ready: the loop polls
                         instead of sleeping until its next timer */
  int check_on;
  int stopped;        /* nb__async_stop ran: new requests are refused */
  nb__agent_t *ready; /* agents with events or spawned tasks */
  uint64_t live;      /* outstanding requests, all agents */
  void (*stops[4])(nb_rt_t *rt); /* backends' cleanups (nb__async_on_stop) */
  int nstops;
};

/* ---- the runtime's part ---- */

/* Returns rt's async state, made on first use (never NULL: aborts on OOM). */
static struct nb__async_rt_s *rt_async(nb_rt_t *rt) {
  if (!rt->async) {
    rt->async = calloc(1, sizeof *rt->async);
    if (!rt->async) abort();
  }
  return rt->async;
}

static void on_check(uv_check_t *h);

/* Starts the check handle on rt's loop once; returns nothing. */
static void start_check(nb_rt_t *rt) {
  struct nb__async_rt_s *R = rt_async(rt);
  if (R->check_on || R->stopped) return;
  uv_check_init(nb__loop(rt), &R->check);
  R->check.data = rt;
  uv_check_start(&R->check, on_check);
  uv_unref((uv_handle_t *)&R->check); /* never keeps the loop alive alone */
  uv_idle_init(nb__loop(rt), &R->spin);
  R->spin.data = rt;
  uv_unref((uv_handle_t *)&R->spin);
  R->check_on = 1;
}

/* ---- agents ---- */

/* Returns a's async state, made on first use. */
static struct nb__async_s *ag(nb__agent_t *a) {
  if (!a->async) {
    a->async = calloc(1, sizeof *a->async);
    if (!a->async) abort();
  }
  return a->async;
}

/* Puts a on the ready list (once); returns nothing. */
static void make_ready(nb__agent_t *a) {
  struct nb__async_s *A = ag(a);
  if (A->ready) return;
  struct nb__async_rt_s *R = rt_async(a->rt);
  A->ready = 1;
  A->next_ready = R->ready;
  R->ready = a;
}

/* Frees a list of events; returns nothing. */
static void free_events(ev_t *e) {
  while (e) {
    ev_t *n = e->next;
    free(e);
    e = n;
  }
}

/* ---- requests ---- */

nb__req_t *nb__req_new(nb__agent_t *a, size_t size,
                       void (*cancel)(nb__req_t *r)) {
  struct nb__async_rt_s *R = rt_async(a->rt);
  if (R->stopped) return NULL;
  start_check(a->rt);
  struct nb__async_s *A = ag(a);
  if (size < sizeof(nb__req_t)) size = sizeof(nb__req_t);
  nb__req_t *r = calloc(1, size);
  if (!r) return NULL;
  if (++A->next_id == 0) A->next_id = 1;
  r->id = A->next_id;
  r->a = a;
  r->loop = nb__loop(a->rt);
  r->cancel = cancel;
  r->next = A->reqs;
  if (A->reqs) A->reqs->prev = r;
  A->reqs = r;
  R->live++;
  return r;
}

/* Takes r off its agent's list (it delivers nothing more); returns
 * nothing. The backend still owns the memory. */
static void detach(nb__req_t *r) {
  if (!r->a) return;
  struct nb__async_s *A = r->a->async;
  if (r->prev) r->prev->next = r->next;
  else A->reqs = r->next;
  if (r->next) r->next->prev = r->prev;
  r->prev = r->next = NULL;
  rt_async(r->a->rt)->live--;
  r->a = NULL;
}

void nb__req_event(nb__req_t *r, int32_t status, int32_t code,
                   const void *data, size_t len, const void *data2,
                   size_t len2, const char *msg, int final) {
  nb__agent_t *a = r->a;
  if (!a) return; /* cancelled: nothing is delivered after */
  size_t mlen = msg ? strlen(msg) + 1 : 0;
  ev_t *e = malloc(sizeof *e + len + 1 + len2 + 1 + mlen);
  if (!e) abort();
  char *p = e->bytes;
  e->next = NULL;
  e->e = (nb_rt_event_t){.req = r->id, .status = status, .code = code,
                         .final = final ? 1u : 0u};
  /* NUL after each part: a text body reads as a C string too. */
  if (data) {
    memcpy(p, data, len);
    e->e.data = p;
    e->e.len = len;
  }
  p[len] = 0;
  p += len + 1;
  if (data2) {
    memcpy(p, data2, len2);
    e->e.data2 = p;
    e->e.len2 = len2;
  }
  p[len2] = 0;
  p += len2 + 1;
  if (msg) {
    memcpy(p, msg, mlen);
    e->e.msg = p;
  }
  struct nb__async_s *A = a->async;
  if (A->tail) A->tail->next = e;
  else A->head = e;
  A->tail = e;
  make_ready(a);
  if (final) detach(r);
}

/* Cancels r: off the list first (no event after), then its backend stops
 * it; returns nothing. */
static void req_cancel(nb__req_t *r) {
  detach(r);
  if (r->cancel) r->cancel(r);
}

/* ---- timers (nb:sleep, nb:after, nb:every) ---- */

typedef struct timer_req_s {
  nb__req_t r;
  uv_timer_t t;
} timer_req_t;

/* Frees a timer request once its handle is closed. */
static void timer_closed(uv_handle_t *h) { free(h->data); }

/* The timer fired: an event; the last one of a one-shot timer. */
static void timer_fired(uv_timer_t *t) {
  timer_req_t *tr = t->data;
  int once = uv_timer_get_repeat(t) == 0;
  nb__req_event(&tr->r, 0, 0, NULL, 0, NULL, 0, NULL, once);
  if (once) uv_close((uv_handle_t *)&tr->t, timer_closed);
}

/* Cancel: stop and close (the request is freed by the close). */
static void timer_cancel(nb__req_t *r) {
  timer_req_t *tr = (timer_req_t *)r;
  uv_timer_stop(&tr->t);
  uv_close((uv_handle_t *)&tr->t, timer_closed);
}

/* Milliseconds for a duration, rounded up (libuv's timers count ms). */
static uint64_t ms_of(uint64_t ns) { return (ns + 999999u) / 1000000u; }

/* The first wait of a timer: one more millisecond than asked, since the
 * loop's clock is whole milliseconds rounded down, so a wait is never
 * shorter than after_ns. */
static uint64_t first_ms(uint64_t ns) { return ns ? ms_of(ns) + 1 : 0; }

int64_t nb_rt_timer(nb_rt_cell_t *cell, uint64_t after_ns,
                    uint64_t repeat_ns) {
  NB__SVC_SCOPE(((nb__agent_t *)cell)->rt);
  nb__agent_t *a = (nb__agent_t *)cell;
  timer_req_t *tr = (timer_req_t *)nb__req_new(a, sizeof *tr, timer_cancel);
  if (!tr) return rt_async(a->rt)->stopped ? NB_ECLOSED : NB_ENOMEM;
  uv_timer_init(tr->r.loop, &tr->t);
  tr->t.data = tr;
  /* The loop's cached time may be a whole tick burst old: now, not then. */
  uv_update_time(tr->r.loop);
  uint64_t rep = repeat_ns ? ms_of(repeat_ns) : 0;
  uv_timer_start(&tr->t, timer_fired, first_ms(after_ns), rep);
  return tr->r.id;
}

/* ---- what the Lua side calls ---- */

/* Returns the live request id of the cell's agent, or NULL. */
static nb__req_t *req_find(nb_rt_cell_t *cell, uint32_t id) {
  nb__agent_t *a = (nb__agent_t *)cell;
  if (!a->async) return NULL;
  for (nb__req_t *r = a->async->reqs; r; r = r->next)
    if (r->id == id) return r;
  return NULL;
}

int nb_rt_cancel(nb_rt_cell_t *cell, uint32_t req) {
  NB__SVC_SCOPE(((nb__agent_t *)cell)->rt);
  nb__req_t *r = req_find(cell, req);
  if (!r) return NB_ENOENT;
  req_cancel(r);
  return 0;
}

int nb_rt_consumed(nb_rt_cell_t *cell, uint32_t req, size_t len) {
  NB__SVC_SCOPE(((nb__agent_t *)cell)->rt);
  nb__req_t *r = req_find(cell, req);
  if (!r) return NB_ENOENT;
  if (r->consumed) r->consumed(r, len);
  return 0;
}

int nb_rt_next_event(nb_rt_cell_t *cell, nb_rt_event_t *out) {
  NB__SVC_SCOPE(((nb__agent_t *)cell)->rt);
  nb__agent_t *a = (nb__agent_t *)cell;
  struct nb__async_s *A = a->async;
  if (!A) return 0;
  free(A->last);
  A->last = NULL;
  ev_t *e = A->head;
  if (!e) return 0;
  A->head = e->next;
  if (!A->head) A->tail = NULL;
  A->last = e;
  *out = e->e;
  return 1;
}

int nb_rt_task_begin(nb_rt_cell_t *cell) {
  NB__SVC_SCOPE(((nb__agent_t *)cell)->rt);
  nb__agent_t *a = (nb__agent_t *)cell;
  struct nb__async_s *A = ag(a);
  if (rt_async(a->rt)->stopped) return NB_ECLOSED;
  if (A->tasks >= a->max_tasks) return NB_ELIMIT;
  A->tasks++;
  A->tasks_total++;
  return 0;
}

void nb_rt_task_end(nb_rt_cell_t *cell) {
  NB__SVC_SCOPE(((nb__agent_t *)cell)->rt);
  struct nb__async_s *A = ((nb__agent_t *)cell)->async;
  if (A && A->tasks) A->tasks--;
}

void nb_rt_wake(nb_rt_cell_t *cell) {
  NB__SVC_SCOPE(((nb__agent_t *)cell)->rt);
  make_ready((nb__agent_t *)cell);
}

uint32_t nb__async_tasks(const nb__agent_t *a) {
  return a->async ? a->async->tasks : 0;
}

uint64_t nb__async_live(const nb_rt_t *rt) {
  return rt->async ? rt->async->live : 0;
}

/* ---- resuming ---- */

void nb__async_dispatch(nb_rt_t *rt) {
  struct nb__async_rt_s *R = rt->async;
  if (!R || !R->ready) return;
  /* Take the list: agents made ready while we run go on the next one. */
  nb__agent_t *a = R->ready;
  R->ready = NULL;
  while (a) {
    struct nb__async_s *A = a->async;
    nb__agent_t *next = A->next_ready;
    A->ready = 0;
    A->next_ready = NULL;
    if (nb__rt_busy(a)) {
      /* Still inside a call on its worker's thread: its turn comes when
       * that returns. */
      make_ready(a);
      a = next;
      continue;
    }
    int more = 0;
    for (int i = 0; i < RESUMES_PER_TURN; i++) {
      if (!nb__isol_running(a)) break;
      if (rt->host->call(a, NB__SLOT_RESUME, 0, 1, "a task") != 0) {
        /* An error in a task: reported; the policy may have closed the
         * state (then its requests are gone). Go on with the next step. */
        if (!nb__isol_running(a)) break;
        more = 1;
        continue;
      }
      more = lua_toboolean(a->L, -1);
      lua_settop(a->L, NB__SLOT_TOP);
      if (!more) break;
    }
    if (more && nb__isol_running(a)) make_ready(a);
    a = next;
  }
}

/* Does nothing: while it is active the loop does not sleep in its poll. */
static void on_spin(uv_idle_t *h) { (void)h; }

/* After each I/O phase of the loop: resume what became ready; while some
 * agent still has work after its turn, the next poll does not sleep (else
 * a busy agent would wait for the next timer, up to a tick). */
static void on_check(uv_check_t *h) {
  nb_rt_t *rt = h->data;
  struct nb__async_rt_s *R = rt->async;
  nb__async_dispatch(rt);
  if (R->ready && !uv_is_active((uv_handle_t *)&R->spin))
    uv_idle_start(&R->spin, on_spin);
  else if (!R->ready && uv_is_active((uv_handle_t *)&R->spin))
    uv_idle_stop(&R->spin);
}

int nb__async_pump(nb_rt_t *rt) {
  struct nb__async_rt_s *R = rt->async;
  if (!R || R->stopped) return 0;
  /* Inside nb_rt_run the loop is already running: only resume. */
  if (!rt->looping) uv_run(nb__loop(rt), UV_RUN_NOWAIT);
  nb__async_dispatch(rt);
  return 0;
}

/* ---- closing ---- */

void nb__async_agent_close(nb__agent_t *a) {
  struct nb__async_s *A = a->async;
  if (!A) return;
  while (A->reqs) req_cancel(A->reqs);
  free_events(A->head);
  A->head = A->tail = NULL;
  free(A->last);
  A->last = NULL;
  A->tasks = 0;
}

void nb__async_agent_free(nb__agent_t *a) {
  nb__async_agent_close(a);
  free(a->async);
  a->async = NULL;
}

void nb__async_stop(nb_rt_t *rt) {
  struct nb__async_rt_s *R = rt->async;
  if (!R || R->stopped) return;
  R->stopped = 1;
  for (uint32_t i = 0; i < rt->n; i++) nb__async_agent_close(rt->agents[i]);
  /* Backends with state of their own (the curl multi) clean it up. */
  for (int i = 0; i < R->nstops; i++) R->stops[i](rt);
  R->ready = NULL;
  if (R->check_on) {
    uv_close((uv_handle_t *)&R->check, NULL);
    uv_close((uv_handle_t *)&R->spin, NULL);
    R->check_on = 0;
  }
  /* Let the cancelled requests' handles close (nb_rt_run's own turns do
   * it when it drives the loop). */
  if (rt->loop && !rt->looping) uv_run(rt->loop, UV_RUN_NOWAIT);
}

void nb__async_on_stop(nb_rt_t *rt, void (*fn)(nb_rt_t *rt)) {
  struct nb__async_rt_s *R = rt_async(rt);
  for (int i = 0; i < R->nstops; i++)
    if (R->stops[i] == fn) return;
  if (R->nstops == (int)(sizeof R->stops / sizeof R->stops[0])) abort();
  R->stops[R->nstops++] = fn;
}

void nb__async_free(nb_rt_t *rt) {
  if (!rt->async) return;
  nb__async_stop(rt);
  free(rt->async);
  rt->async = NULL;
}
