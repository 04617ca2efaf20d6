/* nb_rt.c: the host. One lua_State per neuron, the agent contract, the
 * batch handover, firing from Lua, building a cortex from a topology, and
 * the recording the busted harness reads. */
#include "nb_rt_internal.h"

#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lualib.h>

#include "nb_lstate.h"

#ifndef NB_LUA_DEFAULT_DIR
#define NB_LUA_DEFAULT_DIR "/usr/local/share/neuronbus/lua"
#endif

#define NB__ARENA_DEFAULT (16u << 20)
#define NB__STOP_TICKS_DEFAULT 1000u
#define NB__ERRLOG_MAX 100 /* messages kept per neuron for nb_rt_errors */
#define NB__ERRPRINT_MAX 10 /* printed per neuron; later ones only counted */
#define NB__MSG_MAX 8192    /* an entry's error message with its traceback */

/* ------------------------------------------------------------------ */
/* small helpers                                                       */

char *nb__strf(const char *fmt, ...) {
  va_list ap, ap2;
  va_start(ap, fmt);
  va_copy(ap2, ap);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (n < 0) n = 0;
  char *s = malloc((size_t)n + 1);
  if (!s) abort();
  vsnprintf(s, (size_t)n + 1, fmt, ap2);
  va_end(ap2);
  return s;
}

/* Returns a malloc'd copy of s (NULL stays NULL). */
static char *nb__strdup(const char *s) {
  if (!s) return NULL;
  size_t n = strlen(s) + 1;
  char *d = malloc(n);
  if (!d) abort();
  return memcpy(d, s, n);
}

/* A growing text buffer for error lists. */
typedef struct nb__buf_s {
  char *p;
  size_t n, cap;
} nb__buf_t;

/* Appends a formatted line (a newline is added); returns nothing. */
static void nb__addf(nb__buf_t *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void nb__addf(nb__buf_t *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (n < 0) return;
  size_t need = b->n + (size_t)n + 2;
  if (need > b->cap) {
    size_t cap = b->cap ? b->cap * 2 : 256;
    while (cap < need) cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) abort();
    b->p = p;
    b->cap = cap;
  }
  va_start(ap, fmt);
  vsnprintf(b->p + b->n, (size_t)n + 1, fmt, ap);
  va_end(ap);
  b->n += (size_t)n;
  b->p[b->n++] = '\n';
  b->p[b->n] = 0;
}

/* Returns the buffer's text without its last newline (caller frees). */
static char *nb__take(nb__buf_t *b) {
  if (!b->p) return nb__strdup("");
  if (b->n && b->p[b->n - 1] == '\n') b->p[--b->n] = 0;
  return b->p;
}

void nb_rt_free_string(char *s) { free(s); }

/* ------------------------------------------------------------------ */
/* states                                                              */

/* Returns the directory holding this code (the executable, or
 * libnbruntime.so when loaded into busted) in buf, or "" when unknown. */
static const char *nb__code_dir(char *buf, size_t size) {
  Dl_info info;
  char path[PATH_MAX];
  buf[0] = 0;
  if (dladdr((void *)nb__code_dir, &info) && info.dli_fname &&
      strstr(info.dli_fname, ".so") && realpath(info.dli_fname, path)) {
    /* in a shared library: its own file */
  } else {
    ssize_t n = readlink("/proc/self/exe", path, sizeof path - 1);
    if (n <= 0) return buf;
    path[n] = 0;
  }
  char *slash = strrchr(path, '/');
  if (!slash) return buf;
  *slash = 0;
  snprintf(buf, size, "%s", path);
  return buf;
}

/* Returns the package.path prefix every state gets (computed once):
 * NB_LUA_PATH, then ../share/lua/5.1 and ../../lua beside the code, then
 * the compiled-in dir. */
const char *nb__lua_path(void) {
  static char *path;
  if (path) return path;
  nb__buf_t b = {0};
  const char *env = getenv("NB_LUA_PATH");
  if (env && *env) {
    if (strchr(env, '?')) {
      nb__addf(&b, "%s;", env); /* already Lua templates */
    } else {
      /* a ':'-separated list of directories */
      char *copy = nb__strdup(env), *save = NULL;
      for (char *d = strtok_r(copy, ":", &save); d; d = strtok_r(NULL, ":", &save))
        nb__addf(&b, "%s/?.lua;%s/?/init.lua;", d, d);
      free(copy);
    }
  }
  char dir[PATH_MAX], lua[PATH_MAX + 32], real[PATH_MAX];
  /* Beside the code: an install (PREFIX/bin or PREFIX/lib ->
   * PREFIX/share/lua/5.1), or a build tree (build/<cfg> -> lua). */
  static const char *const beside[] = {"../share/lua/5.1", "../../lua"};
  if (*nb__code_dir(dir, sizeof dir)) {
    for (size_t i = 0; i < 2; i++) {
      snprintf(lua, sizeof lua, "%s/%s", dir, beside[i]);
      if (realpath(lua, real)) nb__addf(&b, "%s/?.lua;%s/?/init.lua;", real, real);
    }
  }
  nb__addf(&b, "%s/?.lua;%s/?/init.lua;", NB_LUA_DEFAULT_DIR, NB_LUA_DEFAULT_DIR);
  /* nb__addf ends every piece with a newline: drop them. */
  size_t j = 0;
  for (size_t i = 0; i < b.n; i++)
    if (b.p[i] != '\n') b.p[j++] = b.p[i];
  b.p[j] = 0;
  path = b.p;
  return path;
}

lua_State *nb__state_new(char **err) {
  lua_State *L = luaL_newstate();
  if (!L) {
    *err = nb__strdup("cannot create a Lua state: out of memory");
    return NULL;
  }
  luaL_openlibs(L);
  lua_getglobal(L, "package");
  lua_getfield(L, -1, "path");
  lua_pushfstring(L, "%s%s", nb__lua_path(), lua_tostring(L, -1));
  lua_setfield(L, -3, "path");
  lua_pop(L, 2);
  return L;
}

/* Message handler for every lua_pcall: the error text plus a traceback. */
static int nb__msgh(lua_State *L) {
  const char *msg = lua_tostring(L, 1);
  if (!msg) {
    if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING)
      return 1;
    msg = lua_pushfstring(L, "(error object is a %s value)",
                          luaL_typename(L, 1));
  }
  luaL_traceback(L, L, msg, 1);
  return 1;
}

void *nb_rt_lua_newstate_addr(void) {
  /* Function to object pointer through a union: defined in practice. */
  union { lua_State *(*fn)(lua_Alloc, void *); void *p; } u;
  u.fn = lua_newstate;
  return u.p;
}

nb_rt_layout_t *nb_rt_layout(nb_rt_layout_t *o) {
  o->size = sizeof(nb_spike_t);
  o->align = _Alignof(nb_spike_t);
  o->timestamp_ns = offsetof(nb_spike_t, timestamp_ns);
  o->sequence = offsetof(nb_spike_t, sequence);
  o->source = offsetof(nb_spike_t, source);
  o->target = offsetof(nb_spike_t, target);
  o->meta = offsetof(nb_spike_t, meta);
  o->priority = offsetof(nb_spike_t, priority);
  o->payload = offsetof(nb_spike_t, payload);
  o->payload_size = sizeof(((nb_spike_t *)0)->payload);
  o->ref_size = sizeof(nb_arena_ref_t);
  o->ref_offset = offsetof(nb_arena_ref_t, offset);
  o->ref_len = offsetof(nb_arena_ref_t, len);
  o->ref_slot = offsetof(nb_arena_ref_t, ref_slot);
  o->ref_epoch = offsetof(nb_arena_ref_t, epoch);
  o->ref_reserved = offsetof(nb_arena_ref_t, reserved);
  return o;
}

/* ------------------------------------------------------------------ */
/* copying plain data between states                                   */

/* Copies the value at idx of from onto the top of to (nil, booleans,
 * numbers, strings, tables of those); returns 0, or -1 with *err naming
 * the path of the first value that cannot be copied (both stacks then hold
 * leftovers: the caller resets them with lua_settop). */
int nb__xcopy(lua_State *from, int idx, lua_State *to, const char *path,
              int depth, char **err) {
  if (idx < 0) idx = lua_gettop(from) + idx + 1;
  switch (lua_type(from, idx)) {
  case LUA_TNIL: lua_pushnil(to); return 0;
  case LUA_TBOOLEAN: lua_pushboolean(to, lua_toboolean(from, idx)); return 0;
  case LUA_TNUMBER: lua_pushnumber(to, lua_tonumber(from, idx)); return 0;
  case LUA_TSTRING: {
    size_t n;
    const char *s = lua_tolstring(from, idx, &n);
    lua_pushlstring(to, s, n);
    return 0;
  }
  case LUA_TTABLE: break;
  default:
    *err = nb__strf("%s: a %s cannot be copied into an agent's state "
                    "(plain data only)", path, luaL_typename(from, idx));
    return -1;
  }
  if (depth > 64) {
    *err = nb__strf("%s: nested more than 64 deep (a cycle?)", path);
    return -1;
  }
  if (!lua_checkstack(from, 4) || !lua_checkstack(to, 4)) {
    *err = nb__strf("%s: Lua stack overflow", path);
    return -1;
  }
  lua_newtable(to);
  lua_pushnil(from);
  while (lua_next(from, idx)) {
    char sub[512];
    int kt = lua_type(from, -2);
    if (kt == LUA_TSTRING)
      snprintf(sub, sizeof sub, "%s.%s", path, lua_tostring(from, -2));
    else if (kt == LUA_TNUMBER)
      snprintf(sub, sizeof sub, "%s[%.14g]", path, lua_tonumber(from, -2));
    else
      snprintf(sub, sizeof sub, "%s[%s]", path, luaL_typename(from, -2));
    if (kt != LUA_TSTRING && kt != LUA_TNUMBER && kt != LUA_TBOOLEAN) {
      *err = nb__strf("%s: a %s key cannot be copied", sub,
                      luaL_typename(from, -2));
      return -1;
    }
    if (nb__xcopy(from, -2, to, sub, depth + 1, err) ||
        nb__xcopy(from, -1, to, sub, depth + 1, err))
      return -1;
    lua_rawset(to, -3);
    lua_pop(from, 1);
  }
  return 0;
}

/* ------------------------------------------------------------------ */
/* agents                                                              */

/* Records an agent error: stderr (unless quiet), the neuron's log, the
 * count. Returns nothing. */
void nb__agent_error(nb__agent_t *a, const char *where, const char *msg) {
  a->errors++;
  /* An agent failing on every spike must not flood stderr: the first few
   * are printed in full, the rest show in the statistics' errors column. */
  if (!a->rt->opts.quiet && a->errors <= NB__ERRPRINT_MAX) {
    fprintf(stderr, "neuronbus: agent \"%s\" (id %u) failed in %s: %s\n",
            a->name, a->cell.id, where, msg ? msg : "(no message)");
    if (a->errors == NB__ERRPRINT_MAX)
      fprintf(stderr, "neuronbus: agent \"%s\": %d errors printed; later "
              "ones are counted in the statistics, not printed\n", a->name,
              NB__ERRPRINT_MAX);
    fflush(stderr);
  }
  if (a->nerr >= NB__ERRLOG_MAX) return;
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
int nb__call(nb__agent_t *a, int slot, int nargs, int nres,
             const char *where) {
  lua_State *L = a->L;
  lua_pushvalue(L, slot);
  if (nargs) lua_insert(L, -nargs - 1);
  char msg[NB__MSG_MAX];
  int rc = nb_lstate_call(a->S, nargs, nres, msg, sizeof msg);
  if (rc == 0) return 0;
  nb__agent_error(a, where, msg);
  lua_settop(L, NB__SLOT_TOP);
  nb__isol_fault(a, rc, where);
  return rc;
}

/* Appends a spike and a copy of its payload to a record log. */
static void nb__record(nb__reclog_t *log, const nb_spike_t *s, float w,
                       const void *data, size_t len) {
  if (log->n == log->cap) {
    size_t cap = log->cap ? log->cap * 2 : 64;
    nb__rec_t *v = realloc(log->v, cap * sizeof *v);
    if (!v) abort();
    log->v = v;
    log->cap = cap;
  }
  nb__rec_t *r = &log->v[log->n++];
  memcpy(r->s, s, sizeof r->s);
  r->weight = w;
  r->len = len;
  r->data = malloc(len + 1);
  if (!r->data) abort();
  if (len) memcpy(r->data, data, len);
  r->data[len] = 0;
}

/* Records every spike of a delivered batch (recording mode only). */
static void nb__record_batch(nb__agent_t *a, const nb_spike_t *spikes,
                             const float *weights, size_t count) {
  for (size_t i = 0; i < count; i++) {
    const void *data = NULL;
    size_t len = 0;
    if (nb_arena_get_payload(a->rt->arena, &spikes[i], &data, &len) != 0) {
      data = NULL;
      len = 0;
    }
    nb__record(&a->rec[0], &spikes[i], weights ? weights[i] : 1.0f, data, len);
  }
}

int nb__deliver(nb__agent_t *a, const nb_spike_t *spikes,
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
    if (nb__call(a, NB__SLOT_DISPATCH, 0, 0, "on_spike") == 0) continue;
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
static int nb__lua_batch(void *agent, nb_neuron_t *n, const nb_spike_t *spikes,
                         const float *weights, size_t count) {
  nb__agent_t *a = agent;
  if (a->rt->opts.record) nb__record_batch(a, spikes, weights, count);
  return nb__deliver(a, spikes, weights, (uint32_t)count);
}

/* ops.on_spike fallback (the cortex calls on_batch when present). */
static int nb__lua_spike(void *agent, nb_neuron_t *n, const nb_spike_t *s,
                         float weight) {
  return nb__lua_batch(agent, n, s, &weight, 1);
}

/* ops.tick of a Lua agent: agent.tick(nb) when the neuron fires. */
static int nb__lua_tick(void *agent, nb_neuron_t *n) {
  nb__agent_t *a = agent;
  /* While stopping, pending spikes are delivered but no periodic work
   * starts: a pacemaker would otherwise keep the cortex busy forever. */
  if (a->rt->stopped || !a->cell.has_tick || !nb__isol_running(a)) return 0;
  return nb__call(a, NB__SLOT_TICK, 0, 0, "tick") ? NB_EAGENT : 0;
}

/* ops.filter: the target agent's filters[name](spike, nb) decides. */
static int nb__lua_filter(void *agent, nb_neuron_t *n, const char *name,
                          const nb_spike_t *s, const void *payload,
                          size_t len) {
  nb__agent_t *a = agent;
  /* No state (stopped, or quarantined): passes nothing; a stopped neuron
   * gets no spikes routed anyway (dead letters). */
  if (!nb__isol_has_state(a)) return 0;
  a->cell.fspike = s;
  lua_pushstring(a->L, name);
  char where[64];
  snprintf(where, sizeof where, "filters.%s", name);
  if (nb__call(a, NB__SLOT_FILTER, 1, 1, where) != 0) {
    a->cell.fspike = NULL;
    return 0; /* a failing filter passes nothing */
  }
  int pass = lua_toboolean(a->L, -1);
  lua_settop(a->L, NB__SLOT_TOP);
  a->cell.fspike = NULL;
  return pass;
}

/* ops.on_stop of a Lua agent. */
static void nb__lua_stop(void *agent, nb_neuron_t *n) {
  nb__agent_t *a = agent;
  if (!nb__isol_running(a)) return; /* stopped by its policy: no state */
  nb__call(a, NB__SLOT_STOP, 0, 0, "on_stop");
}

/* ops.on_batch of a recorder neuron: keeps what it receives. */
static int nb__rec_batch(void *agent, nb_neuron_t *n, const nb_spike_t *spikes,
                         const float *weights, size_t count) {
  nb__agent_t *a = agent;
  if (a->rt->opts.record) nb__record_batch(a, spikes, weights, count);
  return 0;
}

static const nb_agent_ops_t nb__lua_ops = {
  .on_batch = nb__lua_batch,
  .on_spike = nb__lua_spike,
  .tick = nb__lua_tick,
  .filter = nb__lua_filter,
  .on_stop = nb__lua_stop,
};

static const nb_agent_ops_t nb__rec_ops = {.on_batch = nb__rec_batch};

/* Frees an agent and closes its state. */
static void nb__agent_free(nb__agent_t *a) {
  if (!a) return;
  nb__isol_free(a); /* closes the state */
  for (int w = 0; w < 2; w++) {
    for (size_t i = 0; i < a->rec[w].n; i++) free(a->rec[w].v[i].data);
    free(a->rec[w].v);
    for (size_t i = 0; i < a->ntags[w]; i++) free(a->tags[w][i]);
  }
  free(a->errlog);
  free(a->name);
  free(a->script);
  if (a->proxy) nb__link_proxy_free(a->proxy);
  free(a);
}

/* Requires neuronbus.agent in L (host work under nb_lstate_cpcall); returns
 * 0, leaving nothing on the stack (package.loaded keeps the module). */
static int nb__require_agent(lua_State *L) {
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
static int nb__push_agent_module(nb_lstate_t *S, char *msg, size_t n) {
  int rc = nb_lstate_cpcall(S, nb__require_agent, NULL, msg, n);
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
int nb__agent_boot(nb__agent_t *a, char **err) {
  nb__reload_boot(a); /* version 1 (and the file's hash) for the card */
  if (nb__isol_state_new(a, err) != 0) return -1;
  lua_State *L = a->L;
  char msg[NB__MSG_MAX];
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
  if ((rc = nb_lstate_call(a->S, 4, 2, msg, sizeof msg)) != 0) {
    /* The agent's own errors name the file; the two limits do not. */
    if (rc == NB_EMEMLIMIT || rc == NB_EBUDGET)
      *err = nb__strf("%s: running the script: %s", a->script, msg);
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
                                      "init", "dump", "has_filter"};
  int entries = lua_gettop(L);
  for (int i = 0; i < 7; i++) {
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
/* the FFI surface                                                     */

int nb_rt_fire(nb_rt_cell_t *cell, uint32_t target, int kind, int priority,
               const char *data, size_t len) {
  nb__agent_t *a = (nb__agent_t *)cell;
  nb_rt_t *rt = a->rt;
  if ((unsigned)kind > NB_MODULATORY || (unsigned)priority > 255u)
    return NB_EINVAL;
  if (target != NB_BROADCAST && target >= rt->n) return NB_ENOENT;
  if (len && !data) return NB_EINVAL;
  /* An inline payload cannot fail: build the spike in the axon slot, with
   * the same bytes and results, instead of copying one built on the stack
   * (the copy's wide loads stalled on the builder's narrow stores). */
  if (len <= NB_PAYLOAD_MAX && !rt->opts.record)
    return nb_neuron_fire_ex(a->neuron, (nb_id_t)target, (nb_kind_t)kind,
                             (uint8_t)priority, data, len);
  nb_spike_t s;
  nb_spike_init(&s, (nb_id_t)target, (nb_kind_t)kind, (uint8_t)priority);
  int rc = nb_arena_put_payload(rt->arena, &s, data, len);
  if (rc) return rc;
  rc = nb_neuron_fire(a->neuron, &s);
  if (rc) {
    nb_arena_ref_t ref;
    if (nb_spike_get_ref(&s, &ref) == 0) nb_arena_release(rt->arena, &ref);
    return rc;
  }
  if (rt->opts.record) nb__record(&a->rec[1], &s, 1.0f, data, len);
  return 0;
}

int nb_rt_payload(const nb_rt_cell_t *cell, const nb_spike_t *s,
                  const char **data, size_t *len) {
  const void *p = NULL;
  nb_arena_t *arena = cell ? ((const nb__agent_t *)cell)->rt->arena : NULL;
  int rc = nb_arena_get_payload(arena, s, &p, len);
  *data = p;
  return rc;
}

int nb_rt_lookup(const nb_rt_cell_t *cell, const char *name) {
  return nb_rt_id(((const nb__agent_t *)cell)->rt, name);
}

size_t nb_rt_find(const nb_rt_cell_t *cell, int region, const char *what,
                  uint16_t *out, size_t max) {
  nb_rt_t *rt = ((const nb__agent_t *)cell)->rt;
  return region ? nb_cortex_region(rt->cx, what, out, max)
                : nb_cortex_discover(rt->cx, what, out, max);
}

const char *nb_rt_card_name(const nb_rt_cell_t *cell, uint32_t id) {
  return nb_rt_name(((const nb__agent_t *)cell)->rt, id);
}

const char *nb_rt_card_tag(const nb_rt_cell_t *cell, uint32_t id, int which,
                           size_t i) {
  nb_rt_t *rt = ((const nb__agent_t *)cell)->rt;
  if (id >= rt->n || which < 0 || which > 1) return NULL;
  nb__agent_t *b = rt->agents[id];
  return i < b->ntags[which] ? b->tags[which][i] : NULL;
}

/* ------------------------------------------------------------------ */
/* building from a topology table                                      */

/* Returns field key of the table at idx as an integer, def when absent;
 * on a wrong type appends a problem naming path.key to errs. */
static double nb__num(lua_State *L, int idx, const char *key, double def,
                      const char *path, nb__buf_t *errs) {
  lua_getfield(L, idx, key);
  double v = def;
  if (lua_type(L, -1) == LUA_TNUMBER) v = lua_tonumber(L, -1);
  else if (!lua_isnil(L, -1))
    nb__addf(errs, "%s.%s: expected a number, got a %s", path, key,
             luaL_typename(L, -1));
  lua_pop(L, 1);
  return v;
}

/* Returns a malloc'd copy of string field key (NULL when absent); a wrong
 * type is appended to errs. */
static char *nb__str(lua_State *L, int idx, const char *key, const char *path,
                     nb__buf_t *errs) {
  lua_getfield(L, idx, key);
  char *v = NULL;
  if (lua_type(L, -1) == LUA_TSTRING) v = nb__strdup(lua_tostring(L, -1));
  else if (!lua_isnil(L, -1))
    nb__addf(errs, "%s.%s: expected a string, got a %s", path, key,
             luaL_typename(L, -1));
  lua_pop(L, 1);
  return v;
}

/* Copies the string array field key into tags (at most 16); problems go to
 * errs. Returns the count. */
static size_t nb__tags(lua_State *L, int idx, const char *key, char **tags,
                       const char *path, nb__buf_t *errs) {
  size_t n = 0;
  lua_getfield(L, idx, key);
  if (lua_istable(L, -1)) {
    size_t len = lua_objlen(L, -1);
    for (size_t i = 1; i <= len; i++) {
      lua_rawgeti(L, -1, (int)i);
      if (lua_type(L, -1) != LUA_TSTRING)
        nb__addf(errs, "%s.%s[%zu]: expected a string", path, key, i);
      else if (n == NB_CARD_MAX_TAGS)
        nb__addf(errs, "%s.%s: more than %d entries", path, key,
                 NB_CARD_MAX_TAGS);
      else
        tags[n++] = nb__strdup(lua_tostring(L, -1));
      lua_pop(L, 1);
    }
  } else if (!lua_isnil(L, -1)) {
    nb__addf(errs, "%s.%s: expected an array of strings", path, key);
  }
  lua_pop(L, 1);
  return n;
}

/* Adds the neuron described by the table at idx of control state C (or a
 * recorder called name when idx is 0); problems go to errs. Returns 0 or -1. */
static int nb__add_neuron(nb_rt_t *rt, lua_State *C, int idx,
                          const char *recorder_name, nb__buf_t *errs) {
  nb__agent_t *a = calloc(1, sizeof *a);
  if (!a) abort();
  a->rt = rt;
  a->cell.rt = rt;
  a->cell.id = rt->n;
  char path[160];
  nb_if_params_t p = nb_if_params_default();
  int recorder = idx == 0;
  if (recorder) {
    a->name = nb__strdup(recorder_name);
  } else {
    lua_getfield(C, idx, "name");
    const char *nm = lua_tostring(C, -1);
    snprintf(path, sizeof path, "neurons.%s", nm ? nm : "?");
    a->name = nb__strdup(nm);
    lua_pop(C, 1);
    if (!a->name) {
      nb__addf(errs, "neurons[%u].name: expected a string", rt->n + 1);
      nb__agent_free(a);
      return -1;
    }
    lua_getfield(C, idx, "recorder");
    recorder = lua_toboolean(C, -1);
    lua_pop(C, 1);
    lua_getfield(C, idx, "remote");
    if (lua_istable(C, -1)) {
      /* A remote neuron: a proxy whose spikes leave through a TCP link. */
      char *err = NULL;
      if (nb__link_proxy_new(rt, a, C, &err) != 0) {
        nb__addf(errs, "%s.remote: %s", path, err);
        free(err);
        lua_pop(C, 1);
        nb__agent_free(a);
        return -1;
      }
    }
    lua_pop(C, 1);
    if (!recorder && !a->proxy)
      a->script = nb__str(C, idx, "script", path, errs);
    if (a->script) {
      char *ierr = NULL;
      if (nb__isol_parse(a, C, idx, &ierr) != 0) {
        nb__addf(errs, "%s.%s", path, ierr);
        free(ierr);
      }
    }
    a->ntags[0] = nb__tags(C, idx, "capabilities", a->tags[0], path, errs);
    a->ntags[1] = nb__tags(C, idx, "regions", a->tags[1], path, errs);
    p.threshold = (float)nb__num(C, idx, "threshold", p.threshold, path, errs);
    p.rest = (float)nb__num(C, idx, "rest", p.rest, path, errs);
    p.leak = (float)nb__num(C, idx, "leak", p.leak, path, errs);
    p.refractory = (uint32_t)nb__num(C, idx, "refractory", p.refractory, path,
                                     errs);
  }
  if (recorder || a->proxy) {
    /* A recorder (or a proxy) never fires, so it is never refractory:
     * what it is sent arrives in the tick it is routed. */
    p.threshold = 1e30f;
    p.refractory = 0;
  } else if (!a->script) {
    nb__addf(errs, "%s.script: missing", path);
    nb__agent_free(a);
    return -1;
  }
  if (nb_if_params_check(&p) != 0) {
    nb__addf(errs, "neurons.%s: integrate-and-fire parameters out of range "
             "(threshold %g, rest %g, leak %g: leak must be in [0, 1])",
             a->name, p.threshold, p.rest, p.leak);
    nb__agent_free(a);
    return -1;
  }
  if (!recorder && !a->proxy) {
    char *err = NULL;
    if (nb__agent_boot(a, &err) != 0) {
      nb__addf(errs, "neurons.%s: %s", a->name, err);
      free(err);
      nb__agent_free(a);
      return -1;
    }
  }
  nb_card_t card;
  memset(&card, 0, sizeof card);
  card.name = a->name;
  for (int w = 0; w < 2; w++)
    for (size_t i = 0; i < a->ntags[w]; i++)
      (w ? card.regions : card.capabilities)[i] = a->tags[w][i];
  card.ncapabilities = a->ntags[0];
  card.nregions = a->ntags[1];
  card.version = a->ver.counter; /* 0 for a recorder */
  int rc = nb_cortex_register(rt->cx, &card, &p,
                              a->proxy ? &nb__proxy_ops
                              : recorder ? &nb__rec_ops : &nb__lua_ops, a,
                              &a->neuron);
  if (rc != 0) {
    nb__addf(errs, "neurons.%s: cannot register: %s", a->name,
             nb_strerror(rc));
    nb__agent_free(a);
    return -1;
  }
  if (nb_neuron_id(a->neuron) != rt->n) {
    nb__addf(errs, "neurons.%s: cortex assigned id %u, expected %u", a->name,
             nb_neuron_id(a->neuron), rt->n);
  }
  a->cell.neuron = a->neuron;
  if (rt->n == rt->cap) {
    rt->cap = rt->cap ? rt->cap * 2 : 16;
    nb__agent_t **v = realloc(rt->agents, rt->cap * sizeof *v);
    if (!v) abort();
    rt->agents = v;
  }
  rt->agents[rt->n++] = a;
  return 0;
}

/* Returns the kind number of a kind name, or -1. */
static int nb__kind_of(const char *s) {
  if (!s) return -1;
  if (!strcmp(s, "excitatory")) return NB_EXCITATORY;
  if (!strcmp(s, "inhibitory")) return NB_INHIBITORY;
  if (!strcmp(s, "modulatory")) return NB_MODULATORY;
  return -1;
}

/* Returns 1 when agent a exports filters[name] as a function, else 0. */
static int nb__has_filter(nb__agent_t *a, const char *name) {
  if (!a->L) return 0;
  lua_pushstring(a->L, name);
  if (nb__call(a, NB__SLOT_HASFILTER, 1, 1, "filters") != 0) return 0;
  int yes = lua_toboolean(a->L, -1);
  lua_settop(a->L, NB__SLOT_TOP);
  return yes;
}

/* Reads the filters array at idx into f (returns the count); problems go to
 * errs under path. */
static size_t nb__filters(nb_rt_t *rt, lua_State *C, int idx, nb_filter_t *f,
                          nb__agent_t *post, const char *path,
                          nb__buf_t *errs) {
  size_t n = 0;
  if (lua_isnil(C, idx)) return 0;
  if (!lua_istable(C, idx)) {
    nb__addf(errs, "%s.filters: expected an array", path);
    return 0;
  }
  size_t len = lua_objlen(C, idx);
  for (size_t i = 1; i <= len; i++) {
    char fp[200];
    snprintf(fp, sizeof fp, "%s.filters[%zu]", path, i);
    lua_rawgeti(C, idx, (int)i);
    int t = lua_gettop(C);
    if (n == NB_FILTERS_MAX) {
      nb__addf(errs, "%s: more than %d filters on one synapse", fp,
               NB_FILTERS_MAX);
      lua_settop(C, t - 1);
      break;
    }
    char *type = lua_istable(C, t) ? nb__str(C, t, "type", fp, errs) : NULL;
    if (!type) {
      nb__addf(errs, "%s.type: expected \"kind\", \"priority\", \"prefix\" "
               "or \"custom\"", fp);
    } else if (!strcmp(type, "kind")) {
      uint8_t mask = 0;
      lua_getfield(C, t, "kinds");
      size_t k = lua_istable(C, -1) ? lua_objlen(C, -1) : 0;
      for (size_t j = 1; j <= k; j++) {
        lua_rawgeti(C, -1, (int)j);
        int kind = nb__kind_of(lua_tostring(C, -1));
        if (kind < 0)
          nb__addf(errs, "%s.kinds[%zu]: expected \"excitatory\", "
                   "\"inhibitory\" or \"modulatory\"", fp, j);
        else
          mask |= (uint8_t)(1u << kind);
        lua_pop(C, 1);
      }
      lua_pop(C, 1);
      f[n++] = nb_filter_kind(mask);
    } else if (!strcmp(type, "priority")) {
      double m = nb__num(C, t, "min", 0, fp, errs);
      if (m < 0 || m > 255)
        nb__addf(errs, "%s.min: expected 0..255, got %g", fp, m);
      f[n++] = nb_filter_priority((uint8_t)m);
    } else if (!strcmp(type, "prefix")) {
      lua_getfield(C, t, "prefix");
      size_t pl = 0;
      const char *pfx = lua_tolstring(C, -1, &pl);
      if (!pfx || pl > NB_FILTER_PREFIX_MAX)
        nb__addf(errs, "%s.prefix: expected a string of at most %d bytes", fp,
                 NB_FILTER_PREFIX_MAX);
      else
        f[n++] = nb_filter_prefix(pfx, pl);
      lua_pop(C, 1);
    } else if (!strcmp(type, "custom")) {
      char *name = nb__str(C, t, "name", fp, errs);
      if (!name || !*name || strlen(name) >= NB_FILTER_NAME_MAX)
        nb__addf(errs, "%s.name: expected a filter name of 1..%d bytes", fp,
                 NB_FILTER_NAME_MAX - 1);
      else if (!nb__has_filter(post, name))
        nb__addf(errs, "%s: custom filter \"%s\": agent %s (%s) has no "
                 "filters.%s function", fp, name, post->name,
                 post->script ? post->script : "a recorder", name);
      else
        f[n++] = nb_filter_custom(name);
      free(name);
    } else {
      nb__addf(errs, "%s.type: unknown filter type \"%s\"", fp, type);
    }
    free(type);
    lua_settop(C, t - 1);
  }
  return n;
}

/* Connects the synapse described by the table at idx; problems go to errs. */
static void nb__add_synapse(nb_rt_t *rt, lua_State *C, int idx, size_t i,
                            nb__buf_t *errs) {
  char path[160];
  snprintf(path, sizeof path, "synapses[%zu]", i);
  char *from = nb__str(C, idx, "from", path, errs);
  char *to = nb__str(C, idx, "to", path, errs);
  int pre = from ? nb_rt_id(rt, from) : -1, post = to ? nb_rt_id(rt, to) : -1;
  if (pre < 0) nb__addf(errs, "%s.from: no neuron named \"%s\"", path, from ? from : "");
  if (post < 0) nb__addf(errs, "%s.to: no neuron named \"%s\"", path, to ? to : "");
  if (pre >= 0 && post >= 0) {
    snprintf(path, sizeof path, "synapses[%zu] (%s -> %s)", i, from, to);
    double w = nb__num(C, idx, "weight", 1.0, path, errs);
    nb_stdp_t stdp = nb_stdp_default();
    int stdp_on = 0;
    lua_getfield(C, idx, "stdp");
    int st = lua_gettop(C);
    if (lua_istable(C, st)) {
      stdp_on = 1;
      stdp.a_plus = (float)nb__num(C, st, "a_plus", stdp.a_plus, path, errs);
      stdp.a_minus = (float)nb__num(C, st, "a_minus", stdp.a_minus, path, errs);
      stdp.tau_plus_ms = (float)nb__num(C, st, "tau_plus_ms", stdp.tau_plus_ms, path, errs);
      stdp.tau_minus_ms = (float)nb__num(C, st, "tau_minus_ms", stdp.tau_minus_ms, path, errs);
      stdp.w_min = (float)nb__num(C, st, "w_min", stdp.w_min, path, errs);
      stdp.w_max = (float)nb__num(C, st, "w_max", stdp.w_max, path, errs);
    } else if (lua_toboolean(C, st)) {
      stdp_on = 1; /* stdp = true: the defaults */
    }
    lua_getfield(C, idx, "filters");
    nb_filter_t f[NB_FILTERS_MAX];
    size_t nf = nb__filters(rt, C, lua_gettop(C), f, rt->agents[post], path,
                            errs);
    lua_settop(C, st - 1);
    int rc = nb_cortex_connect(rt->cx, (nb_id_t)pre, (nb_id_t)post, (float)w,
                               f, nf, stdp_on ? &stdp : NULL);
    if (rc) nb__addf(errs, "%s: cannot connect: %s", path, nb_strerror(rc));
  }
  free(from);
  free(to);
}

/* Builds rt from the topology table at idx of control state C and runs
 * every agent's init; returns 0, or -1 with every problem in errs. */
static int nb__build(nb_rt_t *rt, lua_State *C, int idx, nb__buf_t *errs) {
  size_t nerr0 = errs->n;
  char *name = nb__str(C, idx, "name", "topology", errs);
  rt->name = name ? name : nb__strdup("topology");
  double tick = nb__num(C, idx, "tick_ns", 0, "topology", errs);
  rt->tick_ns = tick > 0 ? (uint64_t)tick : 0;
  nb_cortex_opts_t o = nb_cortex_opts_default();
  o.axon_capacity = (uint32_t)nb__num(C, idx, "axon_capacity", o.axon_capacity,
                                      "topology", errs);
  o.inbox_capacity = (uint32_t)nb__num(C, idx, "inbox_capacity",
                                       o.inbox_capacity, "topology", errs);
  o.prune_every = (uint32_t)nb__num(C, idx, "prune_every", o.prune_every,
                                    "topology", errs);
  double asize = NB__ARENA_DEFAULT;
  char *apath = NULL;
  lua_getfield(C, idx, "arena");
  if (lua_istable(C, -1)) {
    int t = lua_gettop(C);
    asize = nb__num(C, t, "size", asize, "arena", errs);
    apath = nb__str(C, t, "path", "arena", errs);
  }
  lua_pop(C, 1);
  lua_getfield(C, idx, "neurons");
  int nidx = lua_gettop(C);
  size_t nneurons = lua_istable(C, nidx) ? lua_objlen(C, nidx) : 0;
  if (!lua_istable(C, nidx))
    nb__addf(errs, "topology.neurons: expected an array of neurons");
  if (errs->n != nerr0) {
    free(apath);
    return -1;
  }
  size_t nrec = 0;
  if (rt->opts.recorders) {
    nrec = 1;
    for (const char *c = rt->opts.recorders; *c; c++) nrec += *c == ',';
  }
  if (nneurons + nrec > o.max_neurons) o.max_neurons = (uint32_t)(nneurons + nrec);
  char *lerr = NULL;
  if (nb__link_config(rt, C, idx, &lerr) != 0) {
    nb__addf(errs, "%s", lerr);
    free(lerr);
    free(apath);
    return -1;
  }
  /* Room for the proxies of peers' neurons that write to us unannounced. */
  if (rt->link && o.max_neurons < nneurons + nrec + NB__LINK_ID_ROOM) {
    size_t want = nneurons + nrec + NB__LINK_ID_ROOM;
    o.max_neurons = want > NB_MAX_NEURONS ? NB_MAX_NEURONS : (uint32_t)want;
  }
  int rc;
  if (asize > 0) {
    rc = apath ? nb_arena_open(&rt->arena, apath, (size_t)asize)
               : nb_arena_new(&rt->arena, (size_t)asize);
    if (rc) {
      nb__addf(errs, "arena%s%s: %s", apath ? " " : "", apath ? apath : "",
               nb_strerror(rc));
      free(apath);
      return -1;
    }
  }
  free(apath);
  o.arena = rt->arena;
  rc = nb_cortex_new(&rt->cx, &o);
  if (rc) {
    nb__addf(errs, "topology: cannot create the cortex (axon_capacity %u, "
             "inbox_capacity %u): %s", o.axon_capacity, o.inbox_capacity,
             nb_strerror(rc));
    return -1;
  }
  for (size_t i = 1; i <= nneurons; i++) {
    lua_rawgeti(C, nidx, (int)i);
    if (!lua_istable(C, -1))
      nb__addf(errs, "topology.neurons[%zu]: expected a table", i);
    else
      nb__add_neuron(rt, C, lua_gettop(C), NULL, errs);
    lua_pop(C, 1);
  }
  if (rt->opts.recorders) {
    char *copy = nb__strdup(rt->opts.recorders), *save = NULL;
    for (char *r = strtok_r(copy, ",", &save); r; r = strtok_r(NULL, ",", &save))
      if (*r && nb_rt_id(rt, r) < 0) nb__add_neuron(rt, C, 0, r, errs);
    free(copy);
  }
  lua_pop(C, 1);
  if (errs->n != nerr0) return -1;
  lua_getfield(C, idx, "synapses");
  int sidx = lua_gettop(C);
  if (lua_istable(C, sidx)) {
    size_t ns = lua_objlen(C, sidx);
    for (size_t i = 1; i <= ns; i++) {
      lua_rawgeti(C, sidx, (int)i);
      if (lua_istable(C, -1)) nb__add_synapse(rt, C, lua_gettop(C), i, errs);
      else nb__addf(errs, "synapses[%zu]: expected a table", i);
      lua_pop(C, 1);
    }
  } else if (!lua_isnil(C, sidx)) {
    nb__addf(errs, "topology.synapses: expected an array of synapses");
  }
  lua_pop(C, 1);
  if (errs->n != nerr0) return -1;
  /* init runs once every neuron exists, so it may discover and fire. */
  lua_getfield(C, idx, "neurons");
  int top = lua_gettop(C);
  for (size_t i = 0; i < nneurons; i++) {
    nb__agent_t *a = rt->agents[i];
    if (!a->L) continue;
    lua_rawgeti(C, top, (int)i + 1);
    lua_getfield(C, -1, "config");
    nb__isol_keep_config(a, C, lua_gettop(C)); /* init again on a restart */
    char *err = NULL;
    char path[160];
    snprintf(path, sizeof path, "neurons.%s.config", a->name);
    int bad = nb__xcopy(C, -1, a->L, path, 0, &err);
    lua_settop(C, top);
    if (bad) {
      nb__addf(errs, "%s", err);
      free(err);
      lua_settop(a->L, NB__SLOT_TOP);
      continue;
    }
    nb__call(a, NB__SLOT_INIT, 1, 0, "init");
  }
  lua_settop(C, top - 1);
  return errs->n != nerr0 ? -1 : 0;
}

/* Returns a runtime built from the topology on top of C, or NULL with *err. */
static nb_rt_t *nb__open_from(lua_State *C, const nb_rt_opts_t *opts,
                              char **err) {
  nb_rt_t *rt = calloc(1, sizeof *rt);
  if (!rt) abort();
  if (opts) {
    rt->opts = *opts;
    rt->opts.recorders = nb__strdup(opts->recorders);
  }
  rt->start_ns = rt->rate_t0_ns = nb_clock_ns();
  nb__buf_t errs = {0};
  if (nb__build(rt, C, lua_gettop(C), &errs) != 0) {
    *err = nb__take(&errs);
    rt->stopped = 1; /* never ran: no on_stop */
    nb_rt_close(rt);
    return NULL;
  }
  free(errs.p);
  return rt;
}

nb_rt_t *nb_rt_open_topo(const char *src, size_t len, const char *chunkname,
                         const nb_rt_opts_t *opts, char **err) {
  *err = NULL;
  lua_State *C = nb__state_new(err);
  if (!C) return NULL;
  nb_rt_t *rt = NULL;
  if (luaL_loadbuffer(C, src, len, chunkname ? chunkname : "=topology") ||
      lua_pcall(C, 0, 1, 0)) {
    *err = nb__strf("%s", lua_tostring(C, -1));
  } else if (!lua_istable(C, -1)) {
    *err = nb__strf("%s: did not return a topology table",
                    chunkname ? chunkname : "topology");
  } else {
    rt = nb__open_from(C, opts, err);
  }
  lua_close(C);
  return rt;
}

/* Runs neuronbus.manifest's load(path) in C; returns 1 with the topology
 * on top, or 0 with every problem appended to errs. */
static int nb__manifest_load(lua_State *C, const char *path, nb__buf_t *errs) {
  lua_pushcfunction(C, nb__msgh);
  int h = lua_gettop(C);
  lua_getglobal(C, "require");
  lua_pushliteral(C, "neuronbus.manifest");
  if (lua_pcall(C, 1, 1, h)) {
    nb__addf(errs, "cannot load the manifest validator: %s",
             lua_tostring(C, -1));
    return 0;
  }
  lua_getfield(C, -1, "load");
  lua_pushstring(C, path);
  if (lua_pcall(C, 1, 2, h)) {
    nb__addf(errs, "%s: %s", path, lua_tostring(C, -1));
    return 0;
  }
  if (lua_istable(C, -2)) {
    lua_pop(C, 1);
    return 1;
  }
  if (lua_istable(C, -1)) {
    size_t n = lua_objlen(C, -1);
    for (size_t i = 1; i <= n; i++) {
      lua_rawgeti(C, -1, (int)i);
      nb__addf(errs, "%s: %s", path, lua_tostring(C, -1));
      lua_pop(C, 1);
    }
    if (n == 0) nb__addf(errs, "%s: rejected (no reason given)", path);
  } else {
    nb__addf(errs, "%s: %s", path,
             lua_isstring(C, -1) ? lua_tostring(C, -1) : "rejected");
  }
  return 0;
}

nb_rt_t *nb_rt_open(const char *path, const nb_rt_opts_t *opts, char **err) {
  *err = NULL;
  lua_State *C = nb__state_new(err);
  if (!C) return NULL;
  nb__buf_t errs = {0};
  nb_rt_t *rt = NULL;
  if (nb__manifest_load(C, path, &errs)) rt = nb__open_from(C, opts, err);
  else *err = nb__take(&errs);
  lua_close(C);
  return rt;
}

int nb_rt_check(const char *path, FILE *out) {
  char *err = NULL;
  lua_State *C = nb__state_new(&err);
  if (!C) {
    fprintf(out, "%s\n", err);
    free(err);
    return 1;
  }
  nb__buf_t errs = {0};
  int problems = 0;
  size_t nn = 0, ns = 0;
  if (nb__manifest_load(C, path, &errs)) {
    /* Every script, each in a scratch state: the agent contract. */
    int topo = lua_gettop(C);
    lua_getfield(C, topo, "neurons");
    nn = lua_istable(C, -1) ? lua_objlen(C, -1) : 0;
    for (size_t i = 1; i <= nn; i++) {
      lua_rawgeti(C, -1, (int)i);
      lua_getfield(C, -1, "name");
      lua_getfield(C, -2, "script");
      const char *name = lua_tostring(C, -2), *script = lua_tostring(C, -1);
      if (!script) {
        /* A remote neuron: its script runs in its peer. */
        lua_pop(C, 3);
        continue;
      }
      /* Made with the neuron's own limits and sandbox, so a memory bomb
       * or a denied capability at the script's top level is a problem
       * reported here, not a crash. */
      nb_lstate_t *PS = NULL;
      char msg[NB__MSG_MAX];
      lua_State *S = nb__isol_probe_state(C, lua_gettop(C) - 2, name, &PS,
                                          &err);
      if (!S) {
        nb__addf(&errs, "neurons.%s: %s", name, err);
        free(err);
      } else {
        lua_pushcfunction(S, nb__msgh);
        if (nb__push_agent_module(PS, msg, sizeof msg)) {
          nb__addf(&errs, "neurons.%s: cannot load neuronbus.agent: %s", name,
                   msg);
        } else {
          lua_getfield(S, -1, "probe");
          lua_pushstring(S, script);
          if (nb_lstate_call(PS, 1, 2, msg, sizeof msg))
            nb__addf(&errs, "neurons.%s: %s: %s", name, script, msg);
          else if (!lua_toboolean(S, -2))
            nb__addf(&errs, "neurons.%s: %s", name, lua_tostring(S, -1));
          else {
            /* Custom filters on synapses into this neuron must exist;
             * probe returned (true, set of filter names) in slots 3, 4. */
            lua_getfield(C, topo, "synapses");
            int syn = lua_gettop(C);
            size_t k = lua_istable(C, syn) ? lua_objlen(C, syn) : 0;
            for (size_t j = 1; j <= k; j++) {
              lua_rawgeti(C, syn, (int)j);
              int sj = lua_gettop(C);
              lua_getfield(C, sj, "to");
              int into = name && lua_isstring(C, -1) &&
                         !strcmp(lua_tostring(C, -1), name);
              lua_getfield(C, sj, "filters");
              size_t nf = into && lua_istable(C, -1) ? lua_objlen(C, -1) : 0;
              for (size_t f = 1; f <= nf; f++) {
                lua_rawgeti(C, sj + 2, (int)f);
                lua_getfield(C, -1, "type");
                lua_getfield(C, -2, "name");
                const char *ft = lua_tostring(C, -2), *fname = lua_tostring(C, -1);
                if (ft && fname && !strcmp(ft, "custom")) {
                  lua_getfield(S, 4, fname);
                  if (!lua_toboolean(S, -1))
                    nb__addf(&errs, "synapses[%zu].filters[%zu]: custom filter "
                             "\"%s\": agent %s (%s) has no filters.%s function",
                             j, f, fname, name, script, fname);
                  lua_pop(S, 1);
                }
                lua_settop(C, sj + 2);
              }
              lua_settop(C, syn);
            }
            lua_settop(C, syn - 1);
          }
        }
        nb_lstate_close(PS);
      }
      lua_pop(C, 3);
    }
    lua_pop(C, 1);
    lua_getfield(C, topo, "synapses");
    ns = lua_istable(C, -1) ? lua_objlen(C, -1) : 0;
    lua_pop(C, 1);
  }
  lua_close(C);
  if (errs.n) {
    char *text = nb__take(&errs);
    /* One problem per line, except the lines of a traceback (a script
     * that raised at its top level). */
    for (char *line = text; line; line = strchr(line, '\n')) {
      if (*line == '\n') line++;
      if (*line != '\t' && strncmp(line, "stack traceback:", 16) != 0)
        problems++;
    }
    fprintf(out, "%s\n", text);
    fprintf(out, "check: %s: %d problem%s\n", path, problems,
            problems == 1 ? "" : "s");
    free(text);
  } else {
    fprintf(out, "check: %s: ok (%zu neurons, %zu synapses)\n", path, nn, ns);
  }
  return problems;
}

/* ------------------------------------------------------------------ */
/* driving and inspecting                                              */

void nb_rt_close(nb_rt_t *rt) {
  if (!rt) return;
  if (!rt->stopped && rt->cx) nb_rt_stop(rt, 0);
  for (uint32_t i = 0; i < rt->n; i++) nb__agent_free(rt->agents[i]);
  /* Agents whose registration failed were freed already. */
  free(rt->agents);
  if (rt->link) nb__link_free(rt);
  nb__isol_rt_free(rt);
  if (rt->cx) nb_cortex_free(rt->cx);
  if (rt->arena) nb_arena_free(rt->arena);
  free(rt->name);
  free((char *)rt->opts.recorders);
  free(rt);
}

int64_t nb_rt_tick(nb_rt_t *rt, uint64_t n) {
  int64_t total = 0;
  for (uint64_t i = 0; i < n; i++) {
    if (rt->link) nb__link_pretick(rt);
    nb__isol_tick(rt); /* neurons in backoff: held, or restarted when due */
    int rc = nb_cortex_tick(rt->cx);
    if (rc < 0) return rc;
    total += rc;
    rt->ticks++;
  }
  return total;
}

uint64_t nb_rt_stop(nb_rt_t *rt, uint64_t max_ticks) {
  if (rt->stopped) return 0;
  rt->stopped = 1;
  nb__isol_stopping(rt); /* no backoff left to wait out: restart now */
  uint64_t t = nb_cortex_stop(rt->cx, max_ticks ? max_ticks
                                                : NB__STOP_TICKS_DEFAULT);
  rt->ticks += t;
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
  int rc = nb_arena_put_payload(rt->arena, &s, data, len);
  if (rc) return rc;
  s.source = (nb_id_t)from;
  s.sequence = a->inject_seq;
  s.timestamp_ns = nb_clock_ns();
  rc = nb_cortex_inject(rt->cx, &s);
  if (rc) {
    nb_arena_ref_t ref;
    if (nb_spike_get_ref(&s, &ref) == 0) nb_arena_release(rt->arena, &ref);
    return rc;
  }
  a->inject_seq++;
  if (rt->opts.record) nb__record(&a->rec[1], &s, 1.0f, data, len);
  return 0;
}

int nb_rt_stat(const nb_rt_t *rt, uint32_t id, nb_rt_stat_t *out) {
  if (id >= rt->n) return NB_ENOENT;
  const nb__agent_t *a = rt->agents[id];
  const nb_neuron_stats_t *s = nb_neuron_stats(a->neuron);
  out->spikes_in = s->spikes_in;
  out->spikes_out = s->spikes_out;
  out->fires = s->fires;
  /* The runtime counts each failed callback (several per batch possible). */
  out->errors = a->errors > s->errors ? a->errors : s->errors;
  out->full = s->full;
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

size_t nb_rt_rec_count(const nb_rt_t *rt, uint32_t id, int which) {
  if (id >= rt->n || which < 0 || which > 1) return 0;
  return rt->agents[id]->rec[which].n;
}

int nb_rt_rec_get(const nb_rt_t *rt, uint32_t id, int which, size_t i,
                  nb_spike_t *s, const char **data, size_t *len) {
  if (id >= rt->n || which < 0 || which > 1) return NB_ENOENT;
  const nb__reclog_t *log = &rt->agents[id]->rec[which];
  if (i >= log->n) return NB_ENOENT;
  memcpy(s, log->v[i].s, sizeof log->v[i].s);
  *data = log->v[i].data;
  *len = log->v[i].len;
  return 0;
}

double nb_rt_rec_weight(const nb_rt_t *rt, uint32_t id, int which,
                        size_t i) {
  if (id >= rt->n || which < 0 || which > 1) return -1;
  const nb__reclog_t *log = &rt->agents[id]->rec[which];
  return i < log->n ? log->v[i].weight : -1;
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
  lua_State *L = a->L;
  lua_pushvalue(L, NB__SLOT_DUMP);
  char msg[NB__MSG_MAX];
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
