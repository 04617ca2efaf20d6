/* nb_rt_isolation.c: fault isolation of agents. Every agent state
 * is an nb_lstate (memory cap, time budget, watchdog, sandbox: see
 * nb_lstate.h) made from the neuron's manifest keys; a fault (a memory or
 * budget error, a watchdog overrun, and an ordinary error when on_error is
 * "policy") applies the neuron's policy:
 *
 *   restart  the neuron waits out a backoff (doubling up to backoff_max)
 *            with its inbound spikes held (nb_neuron_hold), so the
 *            cortex leaves them in its inbox and, once that is full, in the
 *            axons upstream (backpressure, never loss). Then a fresh state
 *            boots the script, init runs again with the config kept from
 *            the manifest, the rest of the batch the fault cut short is
 *            delivered first, then the held inbox. More than restart.max
 *            restarts within restart.window stop the neuron.
 *   stop     nb_cortex_set_stopped: the inbox and every later spike to the
 *            neuron are counted as its dead letters, and so is the rest of
 *            the batch the fault cut short. Its state is closed.
 *
 * The watchdog is not a fault: an entry running past its limit is
 * reported (nb_lstate's watchdog, and under `neuronbus run` run_report
 * below), never failed, and the neuron goes on once it returns. Under
 * `neuronbus run`, a neuron's watchdog_exit key exits the process with
 * status 3 when one of its entries runs that long, and a second SIGINT or
 * SIGTERM while an entry is stuck past its watchdog exits at once (the
 * loop thread cannot serve signals while it runs agent code). */
#include "nb_rt_internal.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <errno.h>
#include <semaphore.h>
#include <signal.h>

#include <lauxlib.h>
#include <lualib.h>

#include "nb_rt_defaults.h"

/* Exit status of `neuronbus run` when an entry ran past its neuron's
 * watchdog_exit. */
#define NB__EXIT_STUCK 3
/* Registry slots of the kept configs in the vault: id + this, clear of the
 * slots luaL_ref hands out (the vault never uses luaL_ref). */
#define NB__VAULT_KEY 1000

typedef struct nb__isol_s isol_t;

enum { NB__RUNNING = 0, NB__BACKOFF = 1, NB__STOPPED = 2 };

struct nb__isol_s {
  /* from the manifest */
  nb__isol_conf_t c;    /* c.o.require_allow points at require */
  char **require;       /* NULL-terminated copy, or NULL */
  /* life */
  int state;            /* NB__RUNNING, NB__BACKOFF, NB__STOPPED */
  uint64_t restart_at;  /* end of the backoff being waited out */
  uint64_t next_backoff;
  uint64_t last_fault;
  uint64_t *ring;       /* times of the restarts in the window (rmax) */
  uint32_t ring_head, ring_n;
  uint64_t restarts, faults;
  /* counters of the states closed by restarts: the statistics add them */
  uint64_t old_mem_errors, old_budget, old_watchdog;
  size_t peak;          /* highest heap of any of its states */
  /* the rest of a batch a fault cut short, for the restarted state */
  nb_spike_t *held;
  float *held_w;
  uint32_t nheld, held_cap;
};

struct nb__isol_rt_s {
  lua_State *vault;  /* plain state keeping every neuron's config (by id)
                        for the init of a restart; never runs agent code */
  uint32_t waiting;  /* neurons in backoff */
};

/* ------------------------------------------------------------------ */
/* configuration                                                       */

nb__isol_conf_t nb__isol_conf_default(void) {
  nb__isol_conf_t c;
  memset(&c, 0, sizeof c);
  c.o.jit = 1;
  c.restart_max = NB_RESTART_MAX;
  c.window_ns = NB_RESTART_WINDOW_NS;
  c.backoff_ns = NB_RESTART_BACKOFF_NS;
  c.backoff_max_ns = NB_RESTART_BACKOFF_MAX_NS;
  return c;
}

void nb__isol_new(nb__agent_t *a, const nb__isol_conf_t *conf) {
  isol_t *I = calloc(1, sizeof *I);
  if (!I) abort();
  I->c = *conf;
  /* The validator keeps restart.max within NB_RESTART_MAX_LIMIT,
   * backoff_max at least backoff, and the JIT off under a budget. */
  I->c.o.name = NULL;
  if (conf->o.require_allow) {
    size_t n = 0;
    while (conf->o.require_allow[n]) n++;
    I->require = calloc(n + 1, sizeof *I->require);
    if (!I->require) abort();
    for (size_t i = 0; i < n; i++)
      I->require[i] = nb__strdup(conf->o.require_allow[i]);
    I->c.o.require_allow = (const char *const *)I->require;
  }
  I->next_backoff = I->c.backoff_ns;
  a->isol = I;
}

/* Frees what nb__isol_new allocated besides I; returns nothing. */
static void isol_clear(isol_t *I) {
  if (I->require)
    for (char **m = I->require; *m; m++) free(*m);
  free(I->require);
  free(I->ring);
  free(I->held);
  free(I->held_w);
}

/* ------------------------------------------------------------------ */
/* states                                                              */

/* Sets package.path of the state at argument 1 (host work under
 * nb_lstate_cpcall); returns 0. */
static int set_path(lua_State *L) {
  lua_getglobal(L, "package");
  lua_getfield(L, -1, "path");
  lua_pushfstring(L, "%s%s", nb__lua_path(), lua_tostring(L, -1));
  lua_setfield(L, -3, "path");
  lua_pop(L, 2);
  return 0;
}

/* Makes an nb_lstate from I's options with package.path set; returns it,
 * or NULL with *err set (malloc'd). */
static nb_lstate_t *lstate_make(isol_t *I, const char *name,
                                char **err) {
  nb_lstate_opts_t o = I->c.o;
  o.name = name;
  nb_lstate_t *S = NULL;
  int rc = nb_lstate_new(&S, &o);
  if (rc != 0) {
    *err = nb__strf("cannot create the Lua state of neuron \"%s\": %s", name,
                    nb_strerror(rc));
    return NULL;
  }
  char msg[256];
  if (nb_lstate_cpcall(S, set_path, NULL, msg, sizeof msg) != 0) {
    *err = nb__strf("cannot set up the Lua state of neuron \"%s\": %s", name,
                    msg);
    nb_lstate_close(S);
    return NULL;
  }
  return S;
}

int nb__isol_state_new(nb__agent_t *a, char **err) {
  isol_t none;
  isol_t *I = a->isol;
  if (!I) { /* defaults: no cap, JIT on, no sandbox */
    memset(&none, 0, sizeof none);
    none.c = nb__isol_conf_default();
    I = &none;
  }
  nb_lstate_t *S = lstate_make(I, a->name, err);
  if (!S) return -1;
  a->S = S;
  a->L = nb_lstate_L(S);
  return 0;
}

/* Closes a's state (if any) after adding its counters to the neuron's
 * totals; returns nothing. */
static void state_close(nb__agent_t *a) {
  if (!a->S) return;
  a->rt->host->state_closing(a); /* its tasks' requests are cancelled */
  if (a->isol) {
    nb_lstate_stats_t st;
    nb_lstate_stats(a->S, &st);
    a->isol->old_mem_errors += st.mem_errors;
    a->isol->old_budget += st.budget_overruns;
    a->isol->old_watchdog += st.watchdog_overruns;
    if (st.peak > a->isol->peak) a->isol->peak = st.peak;
  }
  nb_lstate_close(a->S);
  a->S = NULL;
  a->L = NULL;
}

void nb__isol_free(nb__agent_t *a) {
  state_close(a);
  if (!a->isol) return;
  if (a->isol->nheld) nb__refs_release(a->rt->arena, a->isol->held,
                                       a->isol->nheld);
  isol_clear(a->isol);
  free(a->isol);
  a->isol = NULL;
}

/* ------------------------------------------------------------------ */
/* configs kept for restarts                                           */

/* Returns rt's isolation data, made on first use. */
static struct nb__isol_rt_s *rt_isol(nb_rt_t *rt) {
  if (!rt->isol) {
    rt->isol = calloc(1, sizeof *rt->isol);
    if (!rt->isol) abort();
  }
  return rt->isol;
}

void nb__isol_keep_config(nb__agent_t *a, lua_State *C, int idx) {
  if (!a->isol || a->isol->c.policy_stop) return;
  struct nb__isol_rt_s *R = rt_isol(a->rt);
  if (!R->vault) {
    R->vault = luaL_newstate();
    if (!R->vault) abort();
  }
  char *err = NULL;
  lua_State *V = R->vault;
  if (idx < 0) idx = lua_gettop(C) + idx + 1;
  int top = lua_gettop(C);
  /* Plain data, or nothing kept: the first init reports a bad config. */
  if (nb__xcopy(C, idx, V, "config", 0, &err) == 0)
    lua_rawseti(V, LUA_REGISTRYINDEX, (int)a->cell.id + NB__VAULT_KEY);
  free(err);
  lua_settop(V, 0);
  lua_settop(C, top); /* a failed copy leaves values on both stacks */
}

typedef struct {
  lua_State *vault;
  int key;
} cfg_t;

/* Copies the kept config into the agent state's registry field
 * "neuronbus.config" (host work under nb_lstate_cpcall); returns 0. */
static int push_config(lua_State *L) {
  cfg_t *c = lua_touserdata(L, 1);
  char *err = NULL;
  int ok = 0;
  if (c->vault) {
    lua_rawgeti(c->vault, LUA_REGISTRYINDEX, c->key);
    ok = lua_istable(c->vault, -1) &&
         nb__xcopy(c->vault, -1, L, "config", 0, &err) == 0;
    lua_settop(c->vault, 0);
  }
  free(err);
  if (!ok) lua_newtable(L);
  lua_setfield(L, LUA_REGISTRYINDEX, "neuronbus.config");
  return 0;
}

/* ------------------------------------------------------------------ */
/* faults and policies                                                 */

/* Prints a policy line for a unless the runtime is quiet; returns nothing. */
static void say(const nb__agent_t *a, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void say(const nb__agent_t *a, const char *fmt, ...) {
  if (a->rt->opts.quiet) return;
  va_list ap;
  va_start(ap, fmt);
  fprintf(nb__log(stderr), "neuronbus: agent \"%s\" (id %u): ", a->name, a->cell.id);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  fflush(stderr);
  va_end(ap);
}

/* Writes a duration as "250 ms" / "1.5 s" into buf; returns buf. */
static const char *dur(char *buf, size_t n, uint64_t ns) {
  if (ns >= 1000000000ull) snprintf(buf, n, "%.3g s", ns / 1e9);
  else if (ns >= 1000000ull) snprintf(buf, n, "%.3g ms", ns / 1e6);
  else snprintf(buf, n, "%.3g us", ns / 1e3);
  return buf;
}

/* Stops a for good: inbox, later spikes and held ones become its counted
 * dead letters, its state is closed (no entry of it is running); returns
 * nothing. */
static void stop_for_good(nb__agent_t *a, const char *why) {
  isol_t *I = a->isol;
  if (I->state == NB__BACKOFF) a->rt->isol->waiting--;
  I->state = NB__STOPPED;
  nb_cortex_set_stopped(a->rt->cx, (nb_id_t)a->cell.id, 1);
  if (I->nheld) {
    nb_cortex_add_dead_letters(a->rt->cx, (nb_id_t)a->cell.id, I->nheld);
    nb__refs_release(a->rt->arena, I->held, I->nheld);
    I->nheld = 0;
  }
  state_close(a);
  say(a, "stopped (%s): its inbound spikes are counted as dead letters",
          why);
}

/* Returns 1 when a restart now would be more than restart.max within the
 * window, else records it and returns 0. */
static int window_full(isol_t *I, uint64_t now) {
  if (I->c.restart_max == 0) return 1;
  if (!I->ring) {
    I->ring = calloc(I->c.restart_max, sizeof *I->ring);
    if (!I->ring) abort();
  }
  /* Drop restarts older than the window (oldest first). */
  while (I->ring_n && now - I->ring[I->ring_head] > I->c.window_ns) {
    I->ring_head = (I->ring_head + 1) % I->c.restart_max;
    I->ring_n--;
  }
  if (I->ring_n >= I->c.restart_max) return 1;
  I->ring[(I->ring_head + I->ring_n) % I->c.restart_max] = now;
  I->ring_n++;
  return 0;
}

/* Keeps a out of delivery while it waits out its backoff: its spikes
 * wait in its inbox and upstream; returns nothing. */
static void hold(nb__agent_t *a) { nb_neuron_hold(a->neuron, 1); }

/* Applies a's policy to a fault of kind in where; returns nothing. */
static void apply_policy(nb__agent_t *a, const char *kind, const char *where) {
  isol_t *I = a->isol;
  uint64_t now = nb_clock_ns();
  I->faults++;
  char why[200], t1[32], t2[32];
  if (I->c.policy_stop || a->rt->stopped) {
    snprintf(why, sizeof why, "%s in %s, policy %s", kind, where,
             I->c.policy_stop ? "stop" : "restart (shutting down)");
    stop_for_good(a, why);
    return;
  }
  /* A whole window without a fault starts the backoff over. */
  if (I->last_fault && now - I->last_fault > I->c.window_ns)
    I->next_backoff = I->c.backoff_ns;
  I->last_fault = now;
  if (window_full(I, now)) {
    snprintf(why, sizeof why, "%s in %s: %u restart%s within %s already, "
             "restart.max is %u", kind, where, I->ring_n,
             I->ring_n == 1 ? "" : "s", dur(t1, sizeof t1, I->c.window_ns),
             I->c.restart_max);
    stop_for_good(a, why);
    return;
  }
  uint64_t wait = I->next_backoff;
  I->next_backoff = wait * 2 > I->c.backoff_max_ns ? I->c.backoff_max_ns : wait * 2;
  I->restart_at = now + wait;
  I->state = NB__BACKOFF;
  rt_isol(a->rt)->waiting++;
  hold(a);
  say(a, "%s in %s: restarting in %s (restart %u of at most %u within "
          "%s); its spikes wait", kind, where, dur(t1, sizeof t1, wait),
          I->ring_n, I->c.restart_max, dur(t2, sizeof t2, I->c.window_ns));
}

int nb__isol_fault(nb__agent_t *a, int code, const char *where) {
  isol_t *I = a->isol;
  if (!I || I->state != NB__RUNNING) return 0;
  if (code == NB_EAGENT && !I->c.error_is_fault) return 0;
  apply_policy(a, code == NB_EMEMLIMIT ? "memory limit"
               : code == NB_EBUDGET ? "budget overrun"
               : code == NB_ECSTACK ? "C stack overflow"
               : code == NB_ENOMEM ? "out of memory" : "error",
            where);
  return 1;
}

uint32_t nb__isol_waiting(const nb_rt_t *rt) {
  return rt->isol ? rt->isol->waiting : 0;
}

int nb__isol_running(const nb__agent_t *a) {
  return a->S && (!a->isol || a->isol->state == NB__RUNNING);
}

int nb__isol_has_state(const nb__agent_t *a) { return a->S != NULL; }

void nb__isol_cut(nb__agent_t *a, const nb_spike_t *spikes,
                  const float *weights, uint32_t n) {
  isol_t *I = a->isol;
  if (!n || !I) return;
  if (I->state != NB__BACKOFF) {
    /* stopped: counted, never silently dropped */
    nb_cortex_add_dead_letters(a->rt->cx, (nb_id_t)a->cell.id, n);
    return;
  }
  if (I->nheld + n > I->held_cap) {
    uint32_t cap = I->held_cap ? I->held_cap : 64;
    while (cap < I->nheld + n) cap *= 2;
    nb_spike_t *s = NULL;
    if (posix_memalign((void **)&s, _Alignof(nb_spike_t), cap * sizeof *s) != 0)
      abort();
    float *w = malloc(cap * sizeof *w);
    if (!w) abort();
    if (I->nheld) {
      memcpy(s, I->held, I->nheld * sizeof *s);
      memcpy(w, I->held_w, I->nheld * sizeof *w);
    }
    free(I->held);
    free(I->held_w);
    I->held = s;
    I->held_w = w;
    I->held_cap = cap;
  }
  memcpy(I->held + I->nheld, spikes, n * sizeof *spikes);
  /* The batch's references end when its handler returns: kept copies hold
   * their own until delivered to the restarted state. */
  nb__refs_retain(a->rt->arena, spikes, n);
  for (uint32_t i = 0; i < n; i++)
    I->held_w[I->nheld + i] = weights ? weights[i] : 1.0f;
  I->nheld += n;
}

/* Restarts a now: a fresh state boots the script, init runs with the kept
 * config, the held rest of the faulted batch is delivered; returns 0, or
 * -1 when the new state failed (a fault again: its policy was applied). */
static int restart_now(nb__agent_t *a) {
  isol_t *I = a->isol;
  struct nb__isol_rt_s *R = a->rt->isol;
  nb_lstate_t *oldS = a->S;
  lua_State *oldL = a->L;
  a->S = NULL;
  a->L = NULL;
  char *err = NULL;
  I->restarts++;
  I->state = NB__RUNNING;
  R->waiting--;
  if (a->rt->host->boot(a, &err) != 0) {
    /* The old state stays for the custom filters until the next try. */
    if (a->S) nb_lstate_close(a->S);
    a->S = oldS;
    a->L = oldL;
    a->rt->host->error(a, "restart", err ? err : "boot failed");
    free(err);
    apply_policy(a, "failed boot", "restart");
    return -1;
  }
  /* Close the old state with its counters kept for the statistics. */
  {
    nb_lstate_t *newS = a->S;
    lua_State *newL = a->L;
    a->S = oldS;
    a->L = oldL;
    state_close(a);
    a->S = newS;
    a->L = newL;
  }
  nb_neuron_hold(a->neuron, 0);
  say(a, "restarted (restart %" PRIu64 ", fresh state, init again)",
          I->restarts);
  cfg_t c = {R->vault, (int)a->cell.id + NB__VAULT_KEY};
  char msg[256];
  if (nb_lstate_cpcall(a->S, push_config, &c, msg, sizeof msg) != 0) {
    a->rt->host->error(a, "init", msg);
    return 0;
  }
  lua_getfield(a->L, LUA_REGISTRYINDEX, "neuronbus.config");
  lua_pushnil(a->L);
  lua_setfield(a->L, LUA_REGISTRYINDEX, "neuronbus.config");
  if (a->rt->host->call(a, NB__SLOT_INIT, 1, 0, "init") != 0 &&
      !nb__isol_running(a))
    return -1;
  if (!I->nheld) return 0;
  /* The rest of the faulted batch, before anything newer. */
  nb_spike_t *s = I->held;
  float *w = I->held_w;
  uint32_t n = I->nheld;
  I->held = NULL;
  I->held_w = NULL;
  I->nheld = I->held_cap = 0;
  a->rt->host->deliver(a, s, w, n);
  nb__refs_release(a->rt->arena, s, n);
  free(s);
  free(w);
  return 0;
}

void nb__isol_tick(nb_rt_t *rt) {
  struct nb__isol_rt_s *R = rt->isol;
  if (!R || !R->waiting) return;
  uint64_t now = nb_clock_ns();
  for (uint32_t i = 0; i < rt->n && R->waiting; i++) {
    nb__agent_t *a = rt->agents[i];
    if (!a->isol || a->isol->state != NB__BACKOFF) continue;
    /* Stopping (a drain): no backoff left to wait out. */
    if (now >= a->isol->restart_at || rt->stopped) restart_now(a);
  }
}

void nb__isol_stopping(nb_rt_t *rt) {
  struct nb__isol_rt_s *R = rt->isol;
  if (!R || !R->waiting) return;
  /* Shutting down: no backoff left to wait out. Restart now so the held
   * spikes are delivered in the drain; a fault there stops the neuron. */
  for (uint32_t i = 0; i < rt->n && R->waiting; i++) {
    nb__agent_t *a = rt->agents[i];
    if (a->isol && a->isol->state == NB__BACKOFF) restart_now(a);
  }
}

void nb__isol_rt_free(nb_rt_t *rt) {
  if (!rt->isol) return;
  if (rt->isol->vault) lua_close(rt->isol->vault);
  free(rt->isol);
  rt->isol = NULL;
}

/* ------------------------------------------------------------------ */
/* statistics                                                          */

int nb_rt_isol_stat(const nb_rt_t *rt, uint32_t id, nb_rt_isol_stat_t *out) {
  if (id >= rt->n) return NB_ENOENT;
  const nb__agent_t *a = rt->agents[id];
  memset(out, 0, sizeof *out);
  out->dead_letters = nb_neuron_stats(a->neuron)->dead_letters;
  const isol_t *I = a->isol;
  out->jit = 1;
  if (I) {
    out->state = I->state;
    out->policy = I->c.policy_stop;
    out->restarts = I->restarts;
    out->faults = I->faults;
    out->mem_errors = I->old_mem_errors;
    out->budget_overruns = I->old_budget;
    out->watchdog_overruns = I->old_watchdog;
    out->memory_peak = I->peak;
    out->memory_limit = I->c.o.memory_limit;
    out->budget_ns = I->c.o.budget_ns;
    out->jit = I->c.o.jit;
    out->sandbox = I->c.o.sandbox;
    out->held = I->nheld;
    if (I->state == NB__BACKOFF) {
      uint64_t now = nb_clock_ns();
      out->backoff_left_ns = I->restart_at > now ? I->restart_at - now : 0;
    }
    out->next_backoff_ns = I->next_backoff;
  }
  if (a->S) {
    nb_lstate_stats_t st;
    nb_lstate_stats(a->S, &st);
    out->memory = st.bytes;
    if (st.peak > out->memory_peak) out->memory_peak = st.peak;
    out->mem_errors += st.mem_errors;
    out->budget_overruns += st.budget_overruns;
    out->watchdog_overruns += st.watchdog_overruns;
    out->jit = st.jit;
    out->sandbox = st.sandbox;
  } else if (!I) {
    out->jit = 0; /* a recorder or a proxy: no Lua at all */
  }
  return 0;
}

/* Returns the text of a state number. */
static const char *state_name(int state) {
  return state == NB__BACKOFF ? "backoff"
         : state == NB__STOPPED ? "stopped" : "running";
}

/* Writes bytes as "812K" / "15.9M" into buf; returns buf. */
static const char *kib(char *buf, size_t n, uint64_t bytes) {
  if (bytes >= 10u << 20) snprintf(buf, n, "%.0fM", bytes / 1048576.0);
  else if (bytes >= 1u << 20) snprintf(buf, n, "%.1fM", bytes / 1048576.0);
  else snprintf(buf, n, "%.0fK", bytes / 1024.0);
  return buf;
}

const char *nb__isol_head(void) {
  return "     dead restarts state    memory";
}

const char *nb__isol_cells(const nb_rt_t *rt, uint32_t id, char *buf,
                           size_t n) {
  nb_rt_isol_stat_t s;
  nb_rt_isol_stat(rt, id, &s);
  char mem[48] = "-", a[16], b[16];
  if (s.memory && s.memory_limit)
    snprintf(mem, sizeof mem, "%s/%s", kib(a, sizeof a, s.memory),
             kib(b, sizeof b, s.memory_limit));
  else if (s.memory)
    kib(mem, sizeof mem, s.memory);
  snprintf(buf, n, " %8" PRIu64 " %8" PRIu64 " %-8s %9s", s.dead_letters,
           s.restarts, state_name(s.state), mem);
  return buf;
}

const char *nb__isol_total_cells(const nb_rt_t *rt, char *buf, size_t n) {
  uint64_t dead = 0, restarts = 0;
  for (uint32_t i = 0; i < rt->n; i++) {
    nb_rt_isol_stat_t s;
    nb_rt_isol_stat(rt, i, &s);
    dead += s.dead_letters;
    restarts += s.restarts;
  }
  snprintf(buf, n, " %8" PRIu64 " %8" PRIu64, dead, restarts);
  return buf;
}

void nb__isol_json(const nb_rt_t *rt, uint32_t id, json_t *obj) {
  nb_rt_isol_stat_t s;
  nb_rt_isol_stat(rt, id, &s);
  nb__json_set_u64(obj, "dead_letters", s.dead_letters);
  nb__json_set_u64(obj, "restarts", s.restarts);
  nb__json_set_u64(obj, "faults", s.faults);
  nb__json_set_str(obj, "state", state_name(s.state));
  nb__json_set_u64(obj, "memory", s.memory);
  nb__json_set_u64(obj, "memory_peak", s.memory_peak);
  nb__json_set_u64(obj, "memory_limit", s.memory_limit);
  nb__json_set_u64(obj, "mem_errors", s.mem_errors);
  nb__json_set_u64(obj, "budget_overruns", s.budget_overruns);
  nb__json_set_u64(obj, "watchdog_overruns", s.watchdog_overruns);
  nb__json_set_bool(obj, "jit", s.jit);
  nb__json_set_bool(obj, "sandbox", s.sandbox);
}

void nb__isol_json_totals(const nb_rt_t *rt, json_t *obj) {
  uint64_t dead = 0, restarts = 0;
  for (uint32_t i = 0; i < rt->n; i++) {
    nb_rt_isol_stat_t s;
    nb_rt_isol_stat(rt, i, &s);
    dead += s.dead_letters;
    restarts += s.restarts;
  }
  nb__json_set_u64(obj, "dead_letters", dead);
  nb__json_set_u64(obj, "restarts", restarts);
}

/* ------------------------------------------------------------------ */
/* the watchdog in `neuronbus run`                                     */

/* What `neuronbus run` knows of the entry the watchdog reported and that
 * has not returned yet (one loop thread: at most one stuck entry at a
 * time, nested entries aside), and of the signals received. Under run.mu;
 * the signal handler touches only the atomics and the semaphore. */
static struct {
  pthread_mutex_t mu;
  int stuck;              /* an OVER came, its RETURNED not yet */
  nb_lstate_watch_t w;    /* its last report (name and entry point below) */
  char name[64], entry[64];
  uint64_t start_ns;      /* when the entry began */
  uint64_t hinted_sig;    /* sig_count when the hint was printed */
  /* the signal thread */
  pthread_t th;
  int th_running;
  sem_t sem;
  struct sigaction old_int, old_term;
  int handlers;           /* ours are installed */
} run = {.mu = PTHREAD_MUTEX_INITIALIZER};

static _Atomic uint64_t sig_count;   /* SIGINT and SIGTERM received */
static _Atomic uint64_t sig_last_ns; /* when the last one came */
static _Atomic uint64_t sig_prev_ns; /* when the one before it came */
static _Atomic int sig_last_no;
static _Atomic int sig_quit;

/* Returns "SIGINT" or "SIGTERM". */
static const char *sig_name(int signo) {
  return signo == SIGINT ? "SIGINT" : "SIGTERM";
}

/* Writes what is known of w's entry ("JIT on, it cannot be
 * interrupted"...) into buf; returns buf. */
static const char *known(const nb_lstate_watch_t *w, char *buf, size_t n) {
  snprintf(buf, n, "%s", w->jit ? "JIT on: it cannot be interrupted"
           : !w->budget_ns ? "JIT off and no budget: nothing interrupts it"
           : "JIT off with a budget: a long call into C, which nothing "
             "interrupts");
  return buf;
}

/* With run.mu held: acts on the signals received while the stuck entry
 * runs. The first one is served by the loop once the entry returns: say
 * so, once. A second one exits now, saying what is lost. Returns nothing
 * (or never, when it exits). */
static void stuck_signals(void) {
  if (!run.stuck) return;
  uint64_t count = atomic_load(&sig_count);
  uint64_t last = atomic_load(&sig_last_ns), prev = atomic_load(&sig_prev_ns);
  int signo = atomic_load(&sig_last_no);
  if (!last || last < run.start_ns) return; /* none during this entry */
  uint64_t now = nb_clock_ns();
  double ran = (double)(now - run.start_ns) / 1e9;
  char k[96];
  known(&run.w, k, sizeof k);
  if (prev && prev >= run.start_ns) {
    fprintf(nb__log(stderr), "neuronbus: %s received again while neuron '%s' has "
            "been in %s for %.2f s (%s): exiting now with status %d; the "
            "spikes in flight are lost (no drain, no on_stop, no final "
            "statistics)\n", sig_name(signo), run.name, run.entry, ran, k,
            128 + signo);
    if (ftrylockfile(stdout) == 0) { /* the stuck thread may hold it */
      fflush(stdout);
      funlockfile(stdout);
    }
    fflush(stderr);
    _exit(128 + signo);
  }
  if (run.hinted_sig == count) return;
  run.hinted_sig = count;
  fprintf(nb__log(stderr), "neuronbus: %s received while neuron '%s' has been in %s "
          "for %.2f s (%s): the runtime stops once the entry returns, and "
          "delivers the spikes in flight then; send SIGINT or SIGTERM again "
          "to exit at once, losing them\n", sig_name(signo), run.name,
          run.entry, ran, k);
  fflush(stderr);
}

/* The watchdog's report in `neuronbus run` (the watchdog thread, or the
 * loop thread for RETURNED): prints it, keeps track of the stuck entry,
 * exits with NB__EXIT_STUCK when the manifest's watchdog_exit asks for
 * it; returns nothing. */
static void run_report(const nb_lstate_watch_t *w, void *ud) {
  (void)ud;
  char line[1024], k[96], t[32], el[32];
  pthread_mutex_lock(&run.mu);
  if (w->kind == NB_LSTATE_WATCH_EXIT) {
    snprintf(el, sizeof el, "%.2f s", w->elapsed_ns / 1e9);
    fprintf(nb__log(stderr), "neuronbus: neuron '%s' has been in %s for %s, past its "
            "watchdog_exit of %s (%s): exiting with status %d, as its "
            "manifest asks, so that a supervisor can restart the process; "
            "the spikes in flight are lost\n", w->name,
            w->entry, el, dur(t, sizeof t, w->exit_ns), known(w, k, sizeof k),
            NB__EXIT_STUCK);
    if (ftrylockfile(stdout) == 0) { /* the stuck thread may hold it */
      fflush(stdout);
      funlockfile(stdout);
    }
    fflush(stderr);
    _exit(NB__EXIT_STUCK);
  }
  nb_lstate_watch_text(w, line, sizeof line);
  if (w->kind == NB_LSTATE_WATCH_OVER && w->exit_ns) {
    size_t n = strlen(line);
    snprintf(line + n, sizeof line - n, ". If it is still running at %s, "
             "the process exits with status %d (watchdog_exit)",
             dur(t, sizeof t, w->exit_ns), NB__EXIT_STUCK);
  }
  fprintf(nb__log(stderr), "%s\n", line);
  fflush(stderr);
  if (w->kind == NB_LSTATE_WATCH_RETURNED) {
    if (run.stuck && run.w.token == w->token) run.stuck = 0;
  } else {
    if (!run.stuck || run.w.token != w->token) {
      run.start_ns = nb_clock_ns() - w->elapsed_ns;
      run.hinted_sig = 0;
    }
    run.stuck = 1;
    run.w = *w;
    snprintf(run.name, sizeof run.name, "%s", w->name);
    snprintf(run.entry, sizeof run.entry, "%s", w->entry);
    run.w.name = run.name;
    run.w.entry = run.entry;
    stuck_signals(); /* one may have come before it was reported */
  }
  pthread_mutex_unlock(&run.mu);
}

/* SIGINT/SIGTERM handler chained before libuv's: notes the signal for the
 * signal thread (async-signal-safe: atomics, clock_gettime, sem_post),
 * then calls libuv's handler, which wakes the loop as before. */
static void on_sig(int signo, siginfo_t *info, void *ctx) {
  int saved = errno;
  atomic_store(&sig_prev_ns, atomic_load(&sig_last_ns));
  atomic_store(&sig_last_ns, nb_clock_ns());
  atomic_store(&sig_last_no, signo);
  atomic_fetch_add(&sig_count, 1);
  sem_post(&run.sem);
  errno = saved;
  struct sigaction *old = signo == SIGINT ? &run.old_int : &run.old_term;
  if (old->sa_flags & SA_SIGINFO) {
    if (old->sa_sigaction) old->sa_sigaction(signo, info, ctx);
  } else if (old->sa_handler == SIG_DFL) {
    signal(signo, SIG_DFL);
    raise(signo);
  } else if (old->sa_handler != SIG_IGN) {
    old->sa_handler(signo);
  }
}

/* The signal thread: wakes at each SIGINT/SIGTERM and acts on it when an
 * entry is stuck (the loop thread cannot); returns NULL when told to. */
static void *sig_main(void *arg) {
  (void)arg;
  for (;;) {
    while (sem_wait(&run.sem) != 0 && errno == EINTR) {}
    if (atomic_load(&sig_quit)) return NULL;
    pthread_mutex_lock(&run.mu);
    stuck_signals();
    pthread_mutex_unlock(&run.mu);
  }
}

/* Installs on_sig in front of the handler in place (libuv's) for signo,
 * keeping that one in old; returns 0 or -1. */
static int chain(int signo, struct sigaction *old) {
  /* old is filled before ours is in place: on_sig reads it. */
  if (sigaction(signo, NULL, old) != 0) return -1;
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = on_sig;
  sa.sa_flags = SA_SIGINFO | SA_RESTART;
  sigfillset(&sa.sa_mask);
  return sigaction(signo, &sa, NULL);
}

/* Puts back the handler kept in old for signo, unless ours was replaced
 * meanwhile (libuv resets it when it closes its signal handles); returns
 * nothing. */
static void unchain(int signo, struct sigaction *old) {
  struct sigaction cur;
  if (sigaction(signo, NULL, &cur) == 0 && (cur.sa_flags & SA_SIGINFO) &&
      cur.sa_sigaction == on_sig)
    sigaction(signo, old, NULL);
}

void nb__isol_run_begin(nb_rt_t *rt) {
  (void)rt;
  pthread_mutex_lock(&run.mu);
  run.stuck = 0;
  pthread_mutex_unlock(&run.mu);
  nb_lstate_watchdog_report(run_report, NULL);
  /* Called after nb_rt_run started its uv signal handles: chain in front
   * of libuv's handlers, with a thread to act while the loop cannot. */
  atomic_store(&sig_quit, 0);
  if (sem_init(&run.sem, 0, 0) != 0) return;
  if (pthread_create(&run.th, NULL, sig_main, NULL) != 0) {
    sem_destroy(&run.sem);
    return;
  }
  run.th_running = 1;
  if (chain(SIGINT, &run.old_int) == 0) {
    if (chain(SIGTERM, &run.old_term) == 0) run.handlers = 1;
    else unchain(SIGINT, &run.old_int);
  }
}

void nb__isol_run_end(nb_rt_t *rt) {
  (void)rt;
  if (run.handlers) {
    unchain(SIGINT, &run.old_int);
    unchain(SIGTERM, &run.old_term);
    run.handlers = 0;
  }
  if (run.th_running) {
    atomic_store(&sig_quit, 1);
    sem_post(&run.sem);
    pthread_join(run.th, NULL);
    sem_destroy(&run.sem);
    run.th_running = 0;
  }
  nb_lstate_watchdog_report(NULL, NULL);
  pthread_mutex_lock(&run.mu);
  run.stuck = 0;
  pthread_mutex_unlock(&run.mu);
}
