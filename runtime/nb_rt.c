/* nb_rt.c: agents and their lifecycle. An agent is a neuron run by a Lua
 * state: its boot, every entry into it (reported and handed to the
 * isolation policy when it fails), the batch handover to on_spike, its
 * callbacks on the neuron, and the runtime's life around them: ticks,
 * stop, close, injection and inspection. Building from a manifest is
 * nb_rt_topo.c's job, what agents call through the FFI nb_rt_ffi.c's. */
#include "nb_rt_internal.h"
#include "nb_rt_metrics.h"

#include <inttypes.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lualib.h>
#include <uv.h>

#define STOP_TICKS_DEFAULT 1000u
/* How long a stop waits for agent calls still running on other threads. */
#define NB__SETTLE_NS 2000000000ull
#define ERRLOG_MAX 100   /* messages kept per neuron for nb_rt_errors */
#define ERRPRINT_MAX 10  /* printed per neuron; later ones only counted */
#define MSG_MAX 8192     /* an entry's error message with its traceback */

/* Records an agent error: stderr (unless quiet), the neuron's log, the
 * count. Returns nothing. */
static void agent_error(nb__agent_t *a, const char *where, const char *msg) {
  /* One writer (the thread in a's call); relaxed for the statistics. */
  __atomic_store_n(&a->errors, a->errors + 1, __ATOMIC_RELAXED);
  /* An agent failing on every spike must not flood stderr: the first few
   * are printed in full, the rest show in the statistics' errors column. */
  if (!a->rt->opts.quiet && a->errors <= ERRPRINT_MAX) {
    fprintf(nb__log(stderr), "neuronbus: agent \"%s\" (id %u) failed in %s: %s\n",
            a->name, a->cell.id, where, msg ? msg : "(no message)");
    if (a->errors == ERRPRINT_MAX)
      fprintf(nb__log(stderr), "neuronbus: agent \"%s\": %d errors printed; later "
              "ones are counted in the statistics, not printed\n", a->name,
              ERRPRINT_MAX);
    fflush(stderr);
  }
  if (a->nerr >= ERRLOG_MAX) return;
  char *entry = nb__strf("%s%s: %s", a->errlen ? "\n\f\n" : "", where,
                         msg ? msg : "(no message)");
  size_t n = strlen(entry);
  char *p = realloc(a->errlog, a->errlen + n + 1);
  if (!p) abort();
  memcpy(p + a->errlen, entry, n + 1);
  a->errlog = p;
  a->errlen += n;
  a->nerr++;
  free(entry);
}

/* Calls the entry at slot with nargs arguments already pushed above it
 * (the function is inserted below them) through nb_lstate_call: under the
 * state's memory cap and budget, with a traceback; returns 0 with nres
 * results left, or the nb_err_t after reporting the error as the agent's,
 * in where, and applying its isolation policy (which may close the state:
 * callers check nb__isol_running before touching a->L again). */
static int call(nb__agent_t *a, int slot, int nargs, int nres,
             const char *where) {
  lua_State *L = a->L;
  lua_pushvalue(L, slot);
  if (nargs) lua_insert(L, -nargs - 1);
  char msg[MSG_MAX];
  int rc = nb_lstate_call_in(a->S, where, nargs, nres, msg, sizeof msg);
  if (rc == 0) return 0;
  agent_error(a, where, msg);
  lua_settop(L, NB__SLOT_TOP);
  /* A policy closes states and cancels requests: the loop's business. */
  NB__SVC_SCOPE(a->rt);
  nb__isol_fault(a, rc, where);
  return rc;
}

static int deliver(nb__agent_t *a, const nb_spike_t *spikes,
                const float *weights, uint32_t count) {
  if (!nb__isol_running(a)) {
    /* Cannot happen while the cortex holds a waiting neuron back; if it
     * did, the spikes are kept (or counted), never dropped. */
    nb__isol_cut(a, spikes, weights, count);
    return 0;
  }
  a->cell.spikes = spikes;
  a->cell.weights = weights;
  a->cell.count = count;
  a->cell.pos = 0;
  int failed = 0;
  /* After an error in on_spike the loop resumes at the next spike; after
   * a fault (the policy took the state away) the rest of the batch goes
   * to the restarted state or counts as dead letters. */
  while (a->cell.pos < a->cell.count) {
    uint32_t before = a->cell.pos;
    if (call(a, NB__SLOT_DISPATCH, 0, 0, "on_spike") == 0) continue;
    failed = 1;
    /* A failure before dispatch took a spike (it cannot happen today)
     * must not spin here: that spike counts as the failed one. */
    if (a->cell.pos == before) a->cell.pos++;
    if (!nb__isol_running(a)) {
      uint32_t pos = a->cell.pos;
      nb__isol_cut(a, spikes + pos, weights ? weights + pos : NULL,
                   count - pos);
      break;
    }
  }
  a->cell.spikes = NULL;
  a->cell.weights = NULL;
  a->cell.count = 0;
  return failed ? NB_EAGENT : 0;
}

/* ops.on_batch of a Lua agent: one state entry per tick for the batch. */
static int lua_batch(void *agent, nb_neuron_t *n, const nb_spike_t *spikes,
                     const float *weights, size_t count) {
  nb__agent_t *a = agent;
  if (a->rt->opts.record) nb__record_batch(a, spikes, weights, count);
  uint64_t t0 = nb__metrics_begin(a);
  int rc = deliver(a, spikes, weights, (uint32_t)count);
  if (t0) nb__metrics_end(a, t0, (uint32_t)count);
  return rc;
}

/* ops.on_spike fallback (the cortex calls on_batch when present). */
static int lua_spike(void *agent, nb_neuron_t *n, const nb_spike_t *s,
                     float weight) {
  return lua_batch(agent, n, s, &weight, 1);
}

/* ops.tick of a Lua agent: agent.tick(nb) when the neuron fires. */
static int lua_tick(void *agent, nb_neuron_t *n) {
  nb__agent_t *a = agent;
  /* While stopping, pending spikes are delivered but no periodic work
   * starts: a pacemaker would otherwise keep the cortex busy forever. */
  /* Relaxed: a worker thread reads what the loop's pause wrote (a call
   * caught by the pause may be reading it meanwhile). */
  if (__atomic_load_n(&a->rt->stopped, __ATOMIC_RELAXED) ||
      !a->cell.has_tick || !nb__isol_running(a))
    return 0;
  uint64_t t0 = nb__metrics_begin(a);
  int rc = call(a, NB__SLOT_TICK, 0, 0, "tick") ? NB_EAGENT : 0;
  if (t0) nb__metrics_end(a, t0, 0);
  return rc;
}

/* ops.filter: the target agent's filters[name](spike, nb) decides. */
static int lua_filter(void *agent, nb_neuron_t *n, const char *name,
                      const nb_spike_t *s, const void *payload,
                      size_t len) {
  nb__agent_t *a = agent;
  /* No state (stopped by its policy): passes nothing; a stopped neuron
   * gets no spikes routed anyway (dead letters). */
  if (!nb__isol_has_state(a)) return 0;
  a->cell.fspike = s;
  lua_pushstring(a->L, name);
  char where[64];
  snprintf(where, sizeof where, "filters.%s", name);
  if (call(a, NB__SLOT_FILTER, 1, 1, where) != 0) {
    a->cell.fspike = NULL;
    return 0; /* a failing filter passes nothing */
  }
  int pass = lua_toboolean(a->L, -1);
  lua_settop(a->L, NB__SLOT_TOP);
  a->cell.fspike = NULL;
  return pass;
}

/* ops.on_stop of a Lua agent. */
static void lua_stop(void *agent, nb_neuron_t *n) {
  nb__agent_t *a = agent;
  if (!nb__isol_running(a)) return; /* stopped by its policy: no state */
  if (nb__rt_busy(a)) return; /* still in a call on its worker's thread */
  call(a, NB__SLOT_STOP, 0, 0, "on_stop");
}

const nb_agent_ops_t nb__lua_ops = {
  .on_batch = lua_batch,
  .on_spike = lua_spike,
  .tick = lua_tick,
  .filter = lua_filter,
  .on_stop = lua_stop,
};

/* Frees an agent and closes its state. */
void nb__agent_free(nb__agent_t *a) {
  if (!a) return;
  nb__isol_free(a); /* closes the state: its keep handles are released */
  nb__async_agent_free(a);
  nb__allow_free(a); /* sandbox allowlists (nb_rt_allow.c) */
  nb__keep_free(a);
  for (int w = 0; w < 2; w++) {
    for (size_t i = 0; i < a->rec[w].n; i++) free(a->rec[w].v[i].data);
    free(a->rec[w].v);
    for (size_t i = 0; i < a->ntags[w]; i++) free(a->tags[w][i]);
  }
  for (int i = 0; i < NB__CARD_TEXTS; i++) free(a->text[i]);
  free(a->errlog);
  free(a->name);
  free(a->script);
  free(a->metrics);
  if (a->proxy) nb__link_proxy_free(a->proxy);
  free(a);
}

/* Requires neuronbus.agent in L (host work under nb_lstate_cpcall); returns
 * 0, leaving nothing on the stack (package.loaded keeps the module). */
static int require_agent(lua_State *L) {
  lua_getglobal(L, "require");
  lua_pushliteral(L, "neuronbus.agent");
  lua_call(L, 1, 0);
  return 0;
}

/* Pushes the runtime's Lua side (neuronbus.agent) in S, loaded as host work:
 * it is trusted runtime code, so neither the agent's memory cap nor its
 * budget is charged for it (under load, interpreting its FFI declarations
 * in a jit = false state can take longer than a 20 ms budget); returns 0,
 * or the nb_lstate_cpcall code with the reason in msg. */
int nb__push_agent_module(nb_lstate_t *S, char *msg, size_t n) {
  int rc = nb_lstate_cpcall(S, require_agent, NULL, msg, n);
  if (rc != 0) return rc;
  lua_State *L = nb_lstate_L(S);
  lua_getfield(L, LUA_REGISTRYINDEX, "_LOADED");
  lua_getfield(L, -1, "neuronbus.agent");
  lua_remove(L, -2);
  return 0;
}

/* Loads script into a's new state (nb__isol_state_new: its memory cap,
 * budget, JIT mode and sandbox) through neuronbus.agent's boot (loaded as
 * host work; boot runs through nb_lstate_call: the chunk is agent code), and
 * keeps the entry
 * points in their stack slots; returns 0, or -1 with *err set to the file
 * and the reason. */
static int agent_boot(nb__agent_t *a, char **err) {
  nb__reload_boot(a); /* version 1 (and the file's hash) for the card */
  if (nb__isol_state_new(a, err) != 0) return -1;
  lua_State *L = a->L;
  char msg[MSG_MAX];
  int rc;
  lua_pushcfunction(L, nb__msgh); /* slot 1 */
  if (nb__push_agent_module(a->S, msg, sizeof msg) != 0) {
    *err = nb__strf("%s: cannot load the runtime's Lua side "
                    "(neuronbus.agent): %s", a->script, msg);
    return -1;
  }
  lua_getfield(L, -1, "boot");
  lua_remove(L, -2);
  lua_pushlightuserdata(L, &a->cell);
  lua_pushstring(L, a->script);
  lua_pushstring(L, a->name);
  lua_pushinteger(L, a->cell.id);
  if ((rc = nb_lstate_call_in(a->S, "the script's top level", 4, 2, msg,
                              sizeof msg)) != 0) {
    /* The agent's own errors name the file; the two limits do not. */
    if (rc == NB_EMEMLIMIT || rc == NB_EBUDGET)
      *err = nb__strf("%s: neuron %s: running the script: %s", a->script,
                      a->name, msg);
    else
      *err = nb__strf("%s", msg);
    return -1;
  }
  if (!lua_istable(L, -2)) {
    *err = nb__strf("%s", lua_isstring(L, -1) ? lua_tostring(L, -1)
                                              : "agent refused (no reason)");
    return -1;
  }
  lua_pop(L, 1);
  static const char *const names[] = {"dispatch", "tick", "filter", "stop",
                                      "init", "dump", "has_filter",
                                      "resume"};
  int entries = lua_gettop(L);
  for (int i = 0; i < 8; i++) {
    lua_getfield(L, entries, names[i]);
    if (!lua_isfunction(L, -1)) {
      *err = nb__strf("%s: neuronbus.agent.boot returned no %s entry",
                      a->script, names[i]);
      return -1;
    }
  }
  lua_remove(L, entries);
  return 0;
}

/* ------------------------------------------------------------------ */
/* driving and inspecting                                              */

/* Closes a loop made by nb__loop with whatever handles are left; returns
 * nothing. */
static void close_any(uv_handle_t *h, void *arg) {
  (void)arg;
  if (!uv_is_closing(h)) uv_close(h, NULL);
}

static void loop_close(void *loop) {
  uv_walk(loop, close_any, NULL);
  uv_run(loop, UV_RUN_DEFAULT);
  uv_loop_close(loop);
  free(loop);
}

/* Runtimes closed while a worker thread was still in an agent call: kept
 * (the thread may touch them), and reachable for leak checkers. */
#define KEPT_MAX 16
static nb_rt_t *kept[KEPT_MAX];
static _Atomic unsigned kept_n;

void nb_rt_close(nb_rt_t *rt) {
  if (!rt) return;
  if (!rt->stopped && rt->cx) nb_rt_stop(rt, 0);
  if (rt->team && (rt->team_left = nb__team_free(rt)) != 0 &&
      !rt->opts.quiet)
    fprintf(stderr, "neuronbus: %u worker thread%s still inside an agent "
            "call at exit: left running, with the cortex and agents it "
            "uses\n", rt->team_left, rt->team_left == 1 ? "" : "s");
  nb__async_stop(rt); /* cancels every request while the agents exist */
  /* A thread left in a call still uses the agents, cortex and arena:
   * they stay, reachable (a leak checker sees them kept on purpose). */
  if (rt->team_left) {
    unsigned k = atomic_fetch_add(&kept_n, 1);
    if (k < KEPT_MAX) kept[k] = rt;
    if (rt->link) nb__link_free(rt);
    nb__async_free(rt);
    if (rt->loop && rt->own_loop) loop_close(rt->loop);
    return;
  }
  for (uint32_t i = 0; i < rt->n; i++) nb__agent_free(rt->agents[i]);
  /* Agents whose registration failed were freed already. */
  free(rt->agents);
  if (rt->link) nb__link_free(rt);
  nb__async_free(rt);
  if (rt->loop && rt->own_loop) loop_close(rt->loop);
  nb__isol_rt_free(rt);
  nb__learn_rt_free(rt);
  nb__metrics_rt_free(rt);
  if (rt->cx) nb_cortex_free(rt->cx);
  nb_arena_writer_free(rt->writer);
  if (rt->arena) nb_arena_free(rt->arena);
  free(rt->name);
  free((char *)rt->opts.recorders);
  free((char *)rt->opts.peers);
  free(rt);
}

/* What runs between ticks (with workers, in the pause): tasks resume,
 * links push, restarts fall due; returns nothing. */
static void between_ticks(nb_rt_t *rt) {
  /* Tasks whose requests completed resume between ticks. */
  if (rt->async) nb__async_pump(rt);
  if (rt->link) nb__link_pretick(rt);
  nb__isol_tick(rt); /* neurons in backoff: held, or restarted when due */
}

/* One round of the team (workers > 1) of up to ticks ticks within
 * budget_ns (the spikes it delivered in *delivered, when not NULL), then
 * the cortex's pruning when due; returns worker 0's ticks or a negative
 * nb_err_t. */
static int64_t team_round(nb_rt_t *rt, uint64_t ticks, uint64_t budget_ns,
                          uint64_t *delivered) {
  uint64_t before = rt->ticks;
  int64_t ran = nb__team_round(rt, ticks, budget_ns, delivered);
  if (ran < 0) return ran;
  rt->ticks += (uint64_t)ran;
  nb__rt_apply_synapse_changes(rt); /* agents' nb:connect, nb:disconnect */
  /* nb_cortex_tick prunes for one thread; a team prunes in its pause. */
  uint32_t every = rt->prune_every;
  if (every && rt->ticks / every != before / every) nb_cortex_prune(rt->cx);
  return ran;
}

int64_t nb_rt_tick(nb_rt_t *rt, uint64_t n) {
  int64_t total = 0;
  for (uint64_t i = 0; i < n; i++) {
    between_ticks(rt);
    if (rt->team) {
      uint64_t got = 0;
      int64_t rc = team_round(rt, 1, 0, &got);
      if (rc < 0) return rc;
      total += (int64_t)got;
      continue;
    }
    int rc = nb_cortex_tick(rt->cx);
    if (rc < 0) return rc;
    nb__rt_apply_synapse_changes(rt); /* agents' nb:connect, nb:disconnect */
    total += rc;
    rt->ticks++;
  }
  return total;
}

int64_t nb__rt_burst(nb_rt_t *rt, uint64_t max, uint64_t budget_ns) {
  if (rt->team) {
    between_ticks(rt);
    return team_round(rt, max, budget_ns, NULL);
  }
  uint64_t start = nb_clock_ns();
  int64_t ran = 0;
  while ((uint64_t)ran < max) {
    int64_t rc = nb_rt_tick(rt, 1);
    if (rc < 0) return rc;
    ran++;
    if (nb_clock_ns() - start >= budget_ns) break;
  }
  return ran;
}

/* Ticks until nothing is pending, max ticks ran, or ns passed (0: no time
 * limit); returns the ticks run. */
static uint64_t drain(nb_rt_t *rt, uint64_t max, uint64_t ns) {
  uint64_t start = nb_clock_ns(), t = 0;
  while (t < max && nb_cortex_pending(rt->cx) &&
         (!ns || nb_clock_ns() - start < ns)) {
    if (rt->team) {
      if (team_round(rt, 1, 0, NULL) < 0) break;
    } else {
      nb_cortex_tick(rt->cx);
      nb__rt_apply_synapse_changes(rt);
      rt->ticks++;
    }
    t++;
  }
  return t;
}

uint64_t nb_rt_stop(nb_rt_t *rt, uint64_t max_ticks) {
  if (rt->stopped) return 0;
  __atomic_store_n(&rt->stopped, 1, __ATOMIC_RELAXED); /* see lua_tick */
  /* Stopping cancels every task's pending request: nothing resumes now. */
  nb__async_stop(rt);
  nb__isol_stopping(rt); /* no backoff left to wait out: restart now */
  nb__team_settle(rt, NB__SETTLE_NS);
  uint64_t t = drain(rt, max_ticks ? max_ticks : STOP_TICKS_DEFAULT, 0);
  nb_cortex_stop(rt->cx, 0); /* every on_stop */
  return t;
}

uint64_t nb__rt_stop_within(nb_rt_t *rt, uint64_t ns) {
  if (rt->stopped) return 0;
  __atomic_store_n(&rt->stopped, 1, __ATOMIC_RELAXED); /* see lua_tick */
  nb__async_stop(rt);
  nb__isol_stopping(rt);
  uint64_t start = nb_clock_ns();
  nb__team_settle(rt, ns && ns < NB__SETTLE_NS ? ns : NB__SETTLE_NS);
  uint64_t t = drain(rt, STOP_TICKS_DEFAULT, ns ? ns : 1);
  uint64_t left = nb_cortex_pending(rt->cx);
  if (left && !rt->opts.quiet)
    fprintf(nb__log(stderr), "neuronbus: shutdown: %" PRIu64 " spikes still pending "
            "after %.3g s of draining (%" PRIu64 " ticks; --drain): not "
            "delivered\n", left, (double)(nb_clock_ns() - start) / 1e9, t);
  nb_cortex_stop(rt->cx, 0); /* every on_stop */
  return t;
}

uint32_t nb_rt_count(const nb_rt_t *rt) { return rt->n; }

int nb_rt_id(const nb_rt_t *rt, const char *name) {
  if (!name) return -1;
  for (uint32_t i = 0; i < rt->n; i++)
    if (!strcmp(rt->agents[i]->name, name)) return (int)i;
  return -1;
}

const char *nb_rt_name(const nb_rt_t *rt, uint32_t id) {
  return id < rt->n ? rt->agents[id]->name : NULL;
}

int nb_rt_inject(nb_rt_t *rt, uint32_t from, uint32_t to, int kind,
                 int priority, const char *data, size_t len) {
  if (from >= rt->n) return NB_ENOENT;
  if (to != NB_BROADCAST && to >= rt->n) return NB_ENOENT;
  if ((unsigned)kind > NB_MODULATORY || (unsigned)priority > 255u)
    return NB_EINVAL;
  if (len && !data) return NB_EINVAL;
  nb__agent_t *a = rt->agents[from];
  nb_spike_t s;
  nb_spike_init(&s, (nb_id_t)to, (nb_kind_t)kind, (uint8_t)priority);
  int rc = nb_arena_put_payload(rt->writer, &s, data, len);
  if (rc) return rc;
  s.source = (nb_id_t)from;
  s.sequence = a->inject_seq;
  s.timestamp_ns = nb_clock_ns();
  rc = nb_cortex_inject(rt->cx, &s);
  if (rc) {
    nb_arena_release_spike(rt->arena, &s);
    return rc;
  }
  a->inject_seq++;
  if (rt->opts.record) nb__record(&a->rec[1], &s, 1.0f, data, len);
  return 0;
}

uint64_t nb_rt_tasks(const nb_rt_t *rt) {
  uint64_t n = 0;
  for (uint32_t i = 0; i < rt->n; i++) n += nb__async_tasks(rt->agents[i]);
  return n;
}

uint64_t nb_rt_requests(const nb_rt_t *rt) { return nb__async_live(rt); }

/* Wakes UV_RUN_ONCE: nothing to do. */
static void wake_noop(uv_timer_t *t) { (void)t; }

int nb_rt_run_until_idle(nb_rt_t *rt, uint64_t timeout_ns) {
  if (rt->looping) return NB_EINVAL;
  uint64_t deadline = nb_clock_ns() + timeout_ns;
  uv_loop_t *loop = nb__loop(rt);
  uv_timer_t wake;
  uv_timer_init(loop, &wake);
  int rc = NB_ETIMEDOUT;
  for (;;) {
    int64_t got = nb_rt_tick(rt, 1); /* resumes what completed */
    if (got < 0) {
      rc = (int)got;
      break;
    }
    int quiet = nb_cortex_pending(rt->cx) == 0 && nb__isol_waiting(rt) == 0;
    if (quiet && nb_rt_tasks(rt) == 0 && nb_rt_requests(rt) == 0) {
      rc = 0;
      break;
    }
    if (nb_clock_ns() >= deadline) break;
    if (quiet && got == 0) {
      /* Only the loop can move things now: wait for it, 1 ms at most. */
      uv_timer_start(&wake, wake_noop, 1, 0);
      uv_run(loop, UV_RUN_ONCE);
    }
  }
  uv_close((uv_handle_t *)&wake, NULL);
  uv_run(loop, UV_RUN_NOWAIT);
  return rc;
}

int nb_rt_arena_stat(const nb_rt_t *rt, nb_rt_arena_stat_t *out) {
  nb_arena_stats_t st;
  nb_arena_stats(rt->arena, &st);
  *out = (nb_rt_arena_stat_t){
      .capacity = st.capacity, .in_use = st.in_use, .reclaimed = st.reclaimed,
      .segment_size = st.segment_size, .segments = st.segments,
      .free = st.free, .active = st.active, .sealed = st.sealed,
      .processes = st.processes};
  return 0;
}

int nb_rt_stat(const nb_rt_t *rt, uint32_t id, nb_rt_stat_t *out) {
  if (id >= rt->n) return NB_ENOENT;
  const nb__agent_t *a = rt->agents[id];
  const nb_neuron_stats_t *s = nb_neuron_stats(a->neuron);
  out->spikes_in = s->spikes_in;
  /* What the agent counts as it fires (relaxed: with workers, a call the
   * pause caught on another thread may still be firing). */
  out->spikes_out = __atomic_load_n(&s->spikes_out, __ATOMIC_RELAXED);
  out->fires = s->fires;
  /* The runtime counts each failed callback (several per batch possible). */
  uint64_t errors = __atomic_load_n(&a->errors, __ATOMIC_RELAXED);
  out->errors = errors > s->errors ? errors : s->errors;
  out->full = __atomic_load_n(&s->full, __ATOMIC_RELAXED);
  out->tasks = nb__async_tasks(a);
  out->arena_full = __atomic_load_n(&s->arena_full, __ATOMIC_RELAXED);
  out->kept = nb__keep_count(a);
  out->kept_since_ns = nb__keep_oldest(a);
  out->deferred = s->deferred;
  out->filtered = s->filtered;
  return 0;
}

double nb_rt_weight(const nb_rt_t *rt, uint32_t from, uint32_t to) {
  if (from >= rt->n || to >= rt->n) return -1;
  nb_synapse_t *s = nb_synapse_table_get(nb_cortex_synapses(rt->cx),
                                         (nb_id_t)from, (nb_id_t)to);
  return s ? nb_atomic_f32_load(&s->weight) : -1;
}

char *nb_rt_state_dump(nb_rt_t *rt, uint32_t id, char **err) {
  *err = NULL;
  if (id >= rt->n) {
    *err = nb__strf("no neuron with id %u", id);
    return NULL;
  }
  nb__agent_t *a = rt->agents[id];
  if (!a->L && a->isol) {
    *err = nb__strf("nb.state of %s: the neuron was stopped by its policy "
                    "and its state closed", a->name);
    return NULL;
  }
  if (!a->L) return nb__strdup("return {}"); /* a recorder has no state */
  if (nb__rt_busy(a)) {
    *err = nb__strf("nb.state of %s: the neuron is inside a call on its "
                    "worker's thread; ask again when it returns", a->name);
    return NULL;
  }
  lua_State *L = a->L;
  lua_pushvalue(L, NB__SLOT_DUMP);
  char msg[MSG_MAX];
  if (nb_lstate_call(a->S, 0, 1, msg, sizeof msg) != 0) {
    *err = nb__strf("nb.state of %s: %s", a->name, msg);
    lua_settop(L, NB__SLOT_TOP);
    return NULL;
  }
  size_t n;
  const char *s = lua_tolstring(L, -1, &n);
  char *copy = malloc(n + 1);
  if (!copy) abort();
  memcpy(copy, s ? s : "", s ? n : 0);
  copy[s ? n : 0] = 0;
  lua_settop(L, NB__SLOT_TOP);
  return copy;
}

char *nb_rt_errors(const nb_rt_t *rt, uint32_t id) {
  if (id >= rt->n || !rt->agents[id]->errlog) return nb__strdup("");
  return nb__strdup(rt->agents[id]->errlog);
}

uint64_t nb_rt_ticks(const nb_rt_t *rt) { return rt->ticks; }
uint64_t nb_rt_tick_ns(const nb_rt_t *rt) { return rt->tick_ns; }
const char *nb_rt_topology_name(const nb_rt_t *rt) { return rt->name; }

int nb__has_filter(nb__agent_t *a, const char *name) {
  if (!a->L) return 0;
  lua_pushstring(a->L, name);
  if (call(a, NB__SLOT_HASFILTER, 1, 1, "filters") != 0) return 0;
  int yes = lua_toboolean(a->L, -1);
  lua_settop(a->L, NB__SLOT_TOP);
  return yes;
}


nb_rt_t *nb__rt_new(const nb_rt_opts_t *opts) {
  nb_rt_t *rt = calloc(1, sizeof *rt);
  if (!rt) abort();
  rt->host = &nb__host;
  if (opts) {
    rt->opts = *opts;
    rt->opts.recorders = nb__strdup(opts->recorders);
    rt->opts.peers = nb__strdup(opts->peers);
  }
  rt->start_ns = rt->rate_t0_ns = nb_clock_ns();
  if (nb__learn_rt_init(rt) != 0) abort();
  return rt;
}

nb__agent_t *nb__agent_new(nb_rt_t *rt, const char *name) {
  nb__agent_t *a = calloc(1, sizeof *a);
  if (!a) abort();
  a->rt = rt;
  a->cell.rt = rt;
  a->cell.id = rt->n;
  a->name = nb__strdup(name);
  a->keep_max = NB_KEEP_MAX_DEFAULT;
  a->max_tasks = NB_TASKS_MAX_DEFAULT;
  a->keep_warn_ns = NB_KEEP_WARN_DEFAULT_NS;
  if (!rt->opts.no_metrics) a->metrics = nb__metrics_new();
  return a;
}

void nb__agent_add(nb_rt_t *rt, nb__agent_t *a) {
  a->cell.neuron = a->neuron;
  if (rt->n == rt->cap) {
    rt->cap = rt->cap ? rt->cap * 2 : 16;
    nb__agent_t **v = realloc(rt->agents, rt->cap * sizeof *v);
    if (!v) abort();
    rt->agents = v;
  }
  rt->agents[rt->n++] = a;
}

const nb__host_t nb__host = {
  .boot = agent_boot,
  .state_closing = nb__async_agent_close,
  .error = agent_error,
  .call = call,
  .deliver = deliver,
  .agent_new = nb__agent_new,
  .agent_add = nb__agent_add,
  .tick = nb_rt_tick,
  .stop = nb_rt_stop,
};
