/* nb_rt_topo.c: building a runtime from a topology. The one place C reads
 * a manifest: neuronbus.manifest (Lua) validates and normalizes it, and
 * this file reads the normalized table through getters that trust it (no
 * type checks, no defaults of its own beyond core's), turning it into a
 * cortex, agents, synapses and the link and isolation configurations the
 * lower layers take as C structs.
 *
 * `neuronbus check` is the same build in dry-run mode: every agent boots in
 * a state with its own limits (so a memory bomb at a script's top level is
 * a problem reported, not a crash), every synapse and custom filter is
 * checked, but no arena file is created, no init runs, and every problem is
 * collected instead of stopping at the first stage that had one. */
#include "nb_rt_internal.h"

#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <fcntl.h>

#include <lauxlib.h>
#include <lualib.h>

#include "nb_rt_defaults.h"

/* The arena of a dry run: large payloads are never fired in one. */
#define DRY_ARENA (64u << 10)

/* ------------------------------------------------------------------ */
/* getters over the normalized form                                    */

/* Returns number field key of the table at idx, def when absent. */
static double num(lua_State *C, int idx, const char *key, double def) {
  lua_getfield(C, idx, key);
  double v = lua_type(C, -1) == LUA_TNUMBER ? lua_tonumber(C, -1) : def;
  lua_pop(C, 1);
  return v;
}

/* Returns string field key of the table at idx, or NULL; the string lives
 * as long as the table does. */
static const char *str(lua_State *C, int idx, const char *key) {
  lua_getfield(C, idx, key);
  const char *v = lua_type(C, -1) == LUA_TSTRING ? lua_tostring(C, -1) : NULL;
  lua_pop(C, 1);
  return v;
}

/* Returns 1 when field key of the table at idx is true, def when absent. */
static int flag(lua_State *C, int idx, const char *key, int def) {
  lua_getfield(C, idx, key);
  int v = lua_isnil(C, -1) ? def : lua_toboolean(C, -1);
  lua_pop(C, 1);
  return v;
}

/* Pushes field key of the table at idx; returns its absolute index when
 * it is a table, else 0 (the value is pushed either way). */
static int sub(lua_State *C, int idx, const char *key) {
  lua_getfield(C, idx, key);
  return lua_istable(C, -1) ? lua_gettop(C) : 0;
}

/* Copies the strings of array field key into out (at most
 * NB_CARD_MAX_TAGS, as validated); returns the count. */
static size_t tags(lua_State *C, int idx, const char *key, char **out) {
  size_t n = 0;
  int t = sub(C, idx, key);
  size_t len = t ? lua_objlen(C, t) : 0;
  for (size_t i = 1; i <= len && n < NB_CARD_MAX_TAGS; i++) {
    lua_rawgeti(C, t, (int)i);
    out[n++] = nb__strdup(lua_tostring(C, -1));
    lua_pop(C, 1);
  }
  lua_pop(C, 1);
  return n;
}

/* ------------------------------------------------------------------ */
/* configurations for the lower layers                                 */

/* Returns the string (any bytes) at key of the table at idx with its
 * length in *len, or NULL; the table keeps it alive. */
static const char *bytes(lua_State *C, int idx, const char *key, size_t *len) {
  lua_getfield(C, idx, key);
  const char *v = lua_type(C, -1) == LUA_TSTRING ? lua_tolstring(C, -1, len)
                                                 : NULL;
  lua_pop(C, 1);
  return v;
}

/* Reads link options (policy, queue, queue_bytes, backoff_*_ms; a dialled
 * link's secret and encrypt, pointing into the table). */
static nb_link_opts_t link_opts(lua_State *C, int idx) {
  nb_link_opts_t o = nb_link_opts_default();
  const char *pol = str(C, idx, "policy");
  if (pol && !strcmp(pol, "drop")) o.policy = NB_LINK_DROP;
  o.queue_spikes = (uint32_t)num(C, idx, "queue", o.queue_spikes);
  o.queue_bytes = (uint32_t)num(C, idx, "queue_bytes", o.queue_bytes);
  o.backoff_min_ms = (uint32_t)num(C, idx, "backoff_min_ms", o.backoff_min_ms);
  o.backoff_max_ms = (uint32_t)num(C, idx, "backoff_max_ms", o.backoff_max_ms);
  size_t len = 0;
  o.secret = bytes(C, idx, "secret", &len);
  o.secret_len = (uint32_t)len;
  o.encrypt = flag(C, idx, "encrypt", 0);
  return o;
}

/* Gives rt the links of topology.transport at idx, when it has one. */
static void read_links(nb_rt_t *rt, lua_State *C, int idx) {
  int top = lua_gettop(C);
  int t = sub(C, idx, "transport");
  if (!t) {
    lua_settop(C, top);
    return;
  }
  nb__link_conf_t conf = {.listen = str(C, t, "listen"),
                          .max_payload = (uint32_t)num(C, t, "max_payload", 0)};
  int a = sub(C, t, "accept");
  conf.accept = a ? link_opts(C, a) : nb_link_opts_default();
  int p = sub(C, t, "peers");
  size_t n = p ? lua_objlen(C, p) : 0;
  nb__peer_conf_t *peers = n ? calloc(n, sizeof *peers) : NULL;
  if (n && !peers) abort();
  for (size_t i = 0; i < n; i++) {
    lua_rawgeti(C, p, (int)i + 1);
    peers[i].url = str(C, -1, "url");
    peers[i].o = link_opts(C, lua_gettop(C));
    lua_pop(C, 1);
  }
  conf.peers = peers;
  conf.npeers = n;
  int lim = sub(C, t, "limits");
  if (lim) {
    nb_link_limits_t *o = &conf.limits;
    o->max_pending = (uint32_t)num(C, lim, "max_pending", 0);
    o->pending_per_addr = (uint32_t)num(C, lim, "pending_per_addr", 0);
    o->max_links = (uint32_t)num(C, lim, "max_links", 0);
    o->links_per_addr = (uint32_t)num(C, lim, "links_per_addr", 0);
    o->frame_timeout_ms = (uint32_t)num(C, lim, "frame_timeout_ms", 0);
    o->keepalive_ms = (uint32_t)num(C, lim, "keepalive_ms", 0);
    o->idle_timeout_ms = (uint32_t)num(C, lim, "idle_timeout_ms", 0);
    o->rx_bytes = (uint64_t)num(C, lim, "rx_buffer", 0);
    conf.hello_timeout_ms = (uint32_t)num(C, lim, "handshake_timeout_ms", 0);
    conf.proxies_per_peer = (uint32_t)num(C, lim, "proxies_per_peer", 0);
  }
  conf.secret = bytes(C, t, "secret", &conf.secret_len);
  conf.encrypt = flag(C, t, "encrypt", 0);
  int al = sub(C, t, "allow");
  conf.nallow = al ? lua_objlen(C, al) : 0;
  nb_link_allow_t *allow = conf.nallow ? calloc(conf.nallow, sizeof *allow)
                                       : NULL;
  if (conf.nallow && !allow) abort();
  for (size_t i = 0; i < conf.nallow; i++) {
    lua_rawgeti(C, al, (int)i + 1);
    size_t len = 0;
    allow[i].cortex = str(C, -1, "cortex");
    allow[i].secret = bytes(C, -1, "secret", &len);
    allow[i].secret_len = (uint32_t)len;
    lua_pop(C, 1);
  }
  conf.allow = allow;
  int ar = sub(C, idx, "arena");
  if (ar) conf.arena_path = str(C, ar, "path");
  int ns = sub(C, t, "nats");
  if (ns) {
    nb__nats_conf_t *c = &conf.nats;
    /* Borrowed from the table: nb__link_configure copies them. */
    c->url = (char *)str(C, ns, "url");
    c->cluster = (char *)str(C, ns, "cluster");
    c->user = (char *)str(C, ns, "user");
    c->password = (char *)str(C, ns, "password");
    c->token = (char *)str(C, ns, "token");
    c->nkey_public = (char *)str(C, ns, "nkey_public");
    c->nkey_seed = (char *)str(C, ns, "nkey_seed");
    c->creds = (char *)str(C, ns, "creds");
    c->tls_ca = (char *)str(C, ns, "tls_ca");
    c->tls_cert = (char *)str(C, ns, "tls_cert");
    c->tls_key = (char *)str(C, ns, "tls_key");
    c->window = (uint32_t)num(C, ns, "window", 0);
    c->window_bytes = (uint32_t)num(C, ns, "window_bytes", 0);
    c->batch_bytes = (uint32_t)num(C, ns, "batch_bytes", 0);
    c->resend_ms = (uint32_t)num(C, ns, "resend_ms", 0);
    c->announce_ms = (uint32_t)num(C, ns, "announce_ms", 0);
    c->connect_ms = (uint32_t)num(C, ns, "connect_ms", 0);
  }
  nb__link_configure(rt, &conf);
  free(peers);
  free(allow);
  lua_settop(C, top);
}

/* Reads the isolation keys of the neuron table at idx. The require list
 * points into names (malloc'd, NULL-terminated; free with free_names). */
static nb__isol_conf_t read_isolation(lua_State *C, int idx, char ***names) {
  nb__isol_conf_t c = nb__isol_conf_default();
  c.o.memory_limit = (size_t)num(C, idx, "memory", 0);
  c.o.budget_ns = (uint64_t)num(C, idx, "budget_ns", 0);
  c.o.jit = flag(C, idx, "jit", 1);
  lua_getfield(C, idx, "watchdog_ns");
  if (lua_type(C, -1) == LUA_TBOOLEAN && !lua_toboolean(C, -1))
    c.o.watchdog_ns = NB_LSTATE_WATCHDOG_OFF;
  else if (lua_type(C, -1) == LUA_TNUMBER)
    c.o.watchdog_ns = (uint64_t)lua_tonumber(C, -1);
  lua_pop(C, 1);
  c.o.exit_ns = (uint64_t)num(C, idx, "watchdog_exit_ns", 0);
  c.o.sandbox = flag(C, idx, "sandbox", 0);
  *names = NULL;
  int r = sub(C, idx, "require");
  if (r) {
    size_t n = lua_objlen(C, r);
    char **v = calloc(n + 1, sizeof *v);
    if (!v) abort();
    for (size_t i = 0; i < n; i++) {
      lua_rawgeti(C, r, (int)i + 1);
      v[i] = nb__strdup(lua_tostring(C, -1));
      lua_pop(C, 1);
    }
    *names = v;
    c.o.require_allow = (const char *const *)v;
  }
  lua_pop(C, 1);
  const char *policy = str(C, idx, "policy"), *on_error = str(C, idx, "on_error");
  c.policy_stop = policy && !strcmp(policy, "stop");
  c.error_is_fault = on_error && !strcmp(on_error, "policy");
  int rs = sub(C, idx, "restart");
  if (rs) {
    c.restart_max = (uint32_t)num(C, rs, "max", c.restart_max);
    c.window_ns = (uint64_t)num(C, rs, "window_ns", (double)c.window_ns);
    c.backoff_ns = (uint64_t)num(C, rs, "backoff_ns", (double)c.backoff_ns);
    c.backoff_max_ns = (uint64_t)num(C, rs, "backoff_max_ns",
                                     (double)c.backoff_max_ns);
  }
  lua_pop(C, 1);
  return c;
}

/* Frees what read_isolation allocated; returns nothing. */
static void free_names(char **names) {
  if (!names) return;
  for (char **m = names; *m; m++) free(*m);
  free(names);
}

/* ------------------------------------------------------------------ */
/* neurons                                                             */

typedef struct build_s {
  nb_rt_t *rt;
  lua_State *C;
  nb__buf_t errs;
  int dry;          /* neuronbus check: boot only, no init, no files */
  const char *file; /* the manifest, for messages (NULL from source) */
  const char *placement; /* where a neuron without `worker` goes */
} build_t;

/* ------------------------------------------------------------------ */
/* workers                                                             */

uint32_t nb_rt_cpus(void) {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) != 0) return 1;
  int n = CPU_COUNT(&set);
  return n > 0 ? (uint32_t)n : 1;
}

/* Places a (registered; its normalized table at idx, 0 for a recorder) on
 * its worker: its `worker` key, else by the topology's placement; returns
 * 0, or -1 with the problem in b->errs. */
static int place(build_t *b, nb__agent_t *a, int idx) {
  nb_rt_t *rt = b->rt;
  uint32_t n = rt->workers, id = a->cell.id, w = id % n;
  double want = idx ? num(b->C, idx, "worker", -1) : -1;
  if (want >= 0) {
    if (want >= n) {
      nb__addf(&b->errs, "neurons.%s.worker: %.0f is out of range: workers "
               "= \"auto\" gives %u workers (0 to %u) on this machine",
               a->name, want, n, n - 1);
      return -1;
    }
    w = (uint32_t)want;
  } else if (!strcmp(b->placement, "hash")) {
    w = (uint32_t)(nb__fnv1a(a->name, strlen(a->name)) % n);
  } else if (!strcmp(b->placement, "region") && a->ntags[1]) {
    w = (uint32_t)(nb__fnv1a(a->tags[1][0], strlen(a->tags[1][0])) % n);
  }
  if ((uint32_t)nb_cortex_worker_of(rt->cx, (nb_id_t)id) == w) return 0;
  int rc = nb_cortex_place(rt->cx, (nb_id_t)id, w);
  if (rc) {
    nb__addf(&b->errs, "neurons.%s: cannot place it on worker %u: %s",
             a->name, w, nb_strerror(rc));
    return -1;
  }
  return 0;
}

/* Adds the neuron described by the normalized table at idx, or a recorder
 * called name when idx is 0; problems go to b->errs. Returns 0 or -1. */
static int add_neuron(build_t *b, int idx, const char *name) {
  nb_rt_t *rt = b->rt;
  lua_State *C = b->C;
  nb_if_params_t p = nb_if_params_default();
  int recorder = idx == 0 || flag(C, idx, "recorder", 0);
  nb__agent_t *a = nb__agent_new(rt, idx ? str(C, idx, "name") : name);
  if (idx) {
    int r = sub(C, idx, "remote");
    if (r)
      nb__link_proxy_new(rt, a, flag(C, r, "nats", 0) ? "nats" : str(C, r, "url"),
                         str(C, r, "cortex"),
                         str(C, r, "neuron"));
    lua_pop(C, 1);
    if (!recorder && !a->proxy) a->script = nb__strdup(str(C, idx, "script"));
    if (a->script) {
      char **names;
      nb__isol_conf_t conf = read_isolation(C, idx, &names);
      nb__isol_new(a, &conf);
      free_names(names);
      /* sandbox: the commands and directories it may reach (exec, files) */
      if (conf.o.sandbox) nb__allow_read(a, C, idx);
      a->keep_max = (uint32_t)num(C, idx, "keep_max", a->keep_max);
      a->max_tasks = (uint32_t)num(C, idx, "max_tasks", a->max_tasks);
      a->keep_warn_ns = (uint64_t)num(C, idx, "keep_warn_ns",
                                      (double)a->keep_warn_ns);
    }
    for (int i = 0; i < NB__CARD_TEXTS; i++)
      a->text[i] = nb__strdup(str(C, idx, nb__card_text_keys[i]));
    a->ntags[0] = tags(C, idx, "capabilities", a->tags[0]);
    a->ntags[1] = tags(C, idx, "regions", a->tags[1]);
    p.threshold = (float)num(C, idx, "threshold", p.threshold);
    p.rest = (float)num(C, idx, "rest", p.rest);
    p.leak = (float)num(C, idx, "leak", p.leak);
    p.refractory = (uint32_t)num(C, idx, "refractory", p.refractory);
  }
  if (recorder || a->proxy) {
    /* A recorder (or a proxy) never fires, so it is never refractory:
     * what it is sent arrives in the tick it is routed. */
    p.threshold = 1e30f;
    p.refractory = 0;
  } else {
    char *err = NULL;
    if (rt->host->boot(a, &err) != 0) {
      nb__addf(&b->errs, "%s", err);
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
    nb__addf(&b->errs, "neurons.%s: cannot register: %s", a->name,
             nb_strerror(rc));
    nb__agent_free(a);
    return -1;
  }
  nb_neuron_set_writer(a->neuron, rt->writer);
  /* rewire: nb:connect may change any neuron's synapses, not just its own
   * outgoing ones (nb_rt_learn.c). */
  if (idx && flag(C, idx, "rewire", 0))
    nb__learn_set_rewire(rt, nb_neuron_id(a->neuron), 1);
  nb__agent_add(rt, a);
  return rt->workers > 1 ? place(b, a, idx) : 0;
}

/* ------------------------------------------------------------------ */
/* synapses                                                            */

/* Returns the kind number of a kind name (validated). */
static int kind_of(const char *s) {
  if (!strcmp(s, "inhibitory")) return NB_INHIBITORY;
  if (!strcmp(s, "modulatory")) return NB_MODULATORY;
  return NB_EXCITATORY;
}

/* Reads the normalized filters array at idx into f for a synapse into
 * post (the agent that runs custom filters); returns the count. A custom
 * filter the agent does not export is a problem named on the user's key
 * path, starting with the script that lacks it. */
static size_t read_filters(build_t *b, int idx, nb_filter_t *f,
                           nb__agent_t *post) {
  lua_State *C = b->C;
  size_t n = 0, len = idx ? lua_objlen(C, idx) : 0;
  for (size_t i = 1; i <= len && n < NB_FILTERS_MAX; i++) {
    lua_rawgeti(C, idx, (int)i);
    int t = lua_gettop(C);
    const char *type = str(C, t, "type");
    if (!strcmp(type, "kind")) {
      uint8_t mask = 0;
      int k = sub(C, t, "kinds");
      size_t nk = k ? lua_objlen(C, k) : 0;
      for (size_t j = 1; j <= nk; j++) {
        lua_rawgeti(C, k, (int)j);
        mask |= (uint8_t)(1u << kind_of(lua_tostring(C, -1)));
        lua_pop(C, 1);
      }
      f[n++] = nb_filter_kind(mask);
    } else if (!strcmp(type, "priority")) {
      f[n++] = nb_filter_priority((uint8_t)num(C, t, "min", 0));
    } else if (!strcmp(type, "prefix")) {
      lua_getfield(C, t, "prefix");
      size_t pl = 0;
      const char *pfx = lua_tolstring(C, -1, &pl);
      f[n++] = nb_filter_prefix(pfx, pl);
    } else { /* custom */
      const char *name = str(C, t, "name");
      if (nb__has_filter(post, name)) {
        f[n++] = nb_filter_custom(name);
      } else {
        const char *fpath = str(C, t, "path");
        const char *site = post->script;
        if (post->L) {
          lua_getfield(post->L, LUA_REGISTRYINDEX, "neuronbus.site");
          if (lua_isstring(post->L, -1)) site = lua_tostring(post->L, -1);
        }
        nb__addf(&b->errs, "%s: neuron %s: no filters.%s function (%s%s%s "
                 "names it)", site ? site : post->name, post->name, name,
                 b->file ? b->file : "", b->file ? ": " : "", fpath);
        if (post->L) lua_settop(post->L, NB__SLOT_TOP);
      }
    }
    lua_settop(C, t - 1);
  }
  return n;
}

/* Connects the normalized synapse at idx; problems go to b->errs. */
static void add_synapse(build_t *b, int idx) {
  nb_rt_t *rt = b->rt;
  lua_State *C = b->C;
  int top = lua_gettop(C);
  const char *spath = str(C, idx, "path");
  int pre = nb_rt_id(rt, str(C, idx, "from"));
  int post = nb_rt_id(rt, str(C, idx, "to"));
  /* An endpoint whose neuron failed to build was reported already. */
  if (pre < 0 || post < 0) return;
  nb_stdp_t stdp = nb_stdp_default();
  int st = sub(C, idx, "stdp");
  if (st) {
    stdp.a_plus = (float)num(C, st, "a_plus", stdp.a_plus);
    stdp.a_minus = (float)num(C, st, "a_minus", stdp.a_minus);
    stdp.tau_plus_ms = (float)num(C, st, "tau_plus_ms", stdp.tau_plus_ms);
    stdp.tau_minus_ms = (float)num(C, st, "tau_minus_ms", stdp.tau_minus_ms);
    stdp.w_min = (float)num(C, st, "w_min", stdp.w_min);
    stdp.w_max = (float)num(C, st, "w_max", stdp.w_max);
    stdp.mode = (uint8_t)num(C, st, "mode_code", stdp.mode);
    stdp.lambda = (float)num(C, st, "lambda", stdp.lambda);
    stdp.alpha = (float)num(C, st, "alpha", stdp.alpha);
    stdp.mu_plus = (float)num(C, st, "mu_plus", stdp.mu_plus);
    stdp.mu_minus = (float)num(C, st, "mu_minus", stdp.mu_minus);
    stdp.tau_c_ms = (float)num(C, st, "tau_c_ms", stdp.tau_c_ms);
    stdp.tau_n_ms = (float)num(C, st, "tau_n_ms", stdp.tau_n_ms);
    stdp.baseline = (float)num(C, st, "baseline", stdp.baseline);
  }
  nb_filter_t f[NB_FILTERS_MAX];
  size_t nf = read_filters(b, sub(C, idx, "filters"), f, rt->agents[post]);
  int rc = nb_cortex_connect(rt->cx, (nb_id_t)pre, (nb_id_t)post,
                             (float)num(C, idx, "weight", 1.0), f, nf,
                             st ? &stdp : NULL);
  if (rc)
    nb__addf(&b->errs, "%s%s%s (%s -> %s): cannot connect: %s",
             b->file ? b->file : "", b->file ? ": " : "", spath,
             rt->agents[pre]->name, rt->agents[post]->name, nb_strerror(rc));
  lua_settop(C, top);
}

/* ------------------------------------------------------------------ */
/* the topology                                                        */

/* Runs every agent's init with its config (once every neuron exists, so
 * init may discover and fire); problems go to b->errs. */
static void run_inits(build_t *b, int nidx, size_t nneurons) {
  lua_State *C = b->C;
  for (size_t i = 0; i < nneurons && i < b->rt->n; i++) {
    nb__agent_t *a = b->rt->agents[i];
    if (!a->L) continue;
    int top = lua_gettop(C);
    lua_rawgeti(C, nidx, (int)i + 1);
    lua_getfield(C, -1, "config");
    nb__isol_keep_config(a, C, lua_gettop(C)); /* init again on a restart */
    char *err = NULL;
    char path[160];
    snprintf(path, sizeof path, "neurons.%s.config", a->name);
    int bad = nb__xcopy(C, -1, a->L, path, 0, &err);
    lua_settop(C, top);
    if (bad) {
      nb__addf(&b->errs, "%s", err);
      free(err);
      lua_settop(a->L, NB__SLOT_TOP);
      continue;
    }
    a->rt->host->call(a, NB__SLOT_INIT, 1, 0, "init");
  }
}

/* Returns the number of names in a comma-separated list (0 for NULL). */
static size_t count_names(const char *list) {
  size_t n = list ? 1 : 0;
  for (const char *c = list; c && *c; c++) n += *c == ',';
  return n;
}

/* Builds b->rt from the normalized topology at idx of b->C and, unless a
 * dry run, runs every agent's init; returns 0, or -1 with every problem in
 * b->errs. */
static int build(build_t *b, int idx) {
  nb_rt_t *rt = b->rt;
  lua_State *C = b->C;
  const char *name = str(C, idx, "name");
  rt->name = nb__strdup(name ? name : "topology");
  double tick = num(C, idx, "tick_ns", 0);
  rt->tick_ns = tick > 0 ? (uint64_t)tick : 0;
  nb_cortex_opts_t o = nb_cortex_opts_default();
  o.axon_capacity = (uint32_t)num(C, idx, "axon_capacity", o.axon_capacity);
  o.inbox_capacity = (uint32_t)num(C, idx, "inbox_capacity", o.inbox_capacity);
  o.prune_every = (uint32_t)num(C, idx, "prune_every", o.prune_every);
  rt->prune_every = o.prune_every;
  /* workers: the caller's (the test harness) over the manifest's; 0 in
   * the manifest is "auto". */
  double wk = rt->opts.workers ? rt->opts.workers : num(C, idx, "workers", 1);
  rt->workers = wk >= 1 ? (uint32_t)wk : nb_rt_cpus();
  if (rt->workers > NB_MAX_WORKERS) rt->workers = NB_MAX_WORKERS;
  if (b->dry) rt->workers = 1; /* a check starts no thread */
  o.workers = rt->workers;
  rt->pin = flag(C, idx, "pin", 0);
  b->placement = str(C, idx, "placement");
  if (!b->placement) b->placement = "round-robin";
  /* The validator gives "auto", "fire" or "tick". */
  const char *st = str(C, idx, "spike_time");
  o.spike_time = !st || !strcmp(st, "auto") ? NB_SPIKE_TIME_AUTO
                 : !strcmp(st, "tick")      ? NB_SPIKE_TIME_TICK
                                            : NB_SPIKE_TIME_FIRE;
  int ar = sub(C, idx, "arena");
  double asize = ar ? num(C, ar, "size", NB_ARENA_DEFAULT) : NB_ARENA_DEFAULT;
  const char *apath = ar ? str(C, ar, "path") : NULL;
  lua_pop(C, 1);
  int nidx = sub(C, idx, "neurons");
  size_t nneurons = nidx ? lua_objlen(C, nidx) : 0;
  size_t nrec = count_names(rt->opts.recorders) + count_names(rt->opts.peers);
  if (nneurons + nrec > o.max_neurons) o.max_neurons = (uint32_t)(nneurons + nrec);
  if (!b->dry) read_links(rt, C, idx);
  /* Room for the proxies of peers' neurons that write to us unannounced. */
  if (rt->link && o.max_neurons < nneurons + nrec + NB__LINK_ID_ROOM) {
    size_t want = nneurons + nrec + NB__LINK_ID_ROOM;
    o.max_neurons = want > NB_MAX_NEURONS ? NB_MAX_NEURONS : (uint32_t)want;
  }
  int rc = 0;
  if (b->dry) rc = nb_arena_new(&rt->arena, DRY_ARENA);
  else if (asize > 0)
    rc = apath ? nb_arena_open(&rt->arena, apath, (size_t)asize)
               : nb_arena_new(&rt->arena, (size_t)asize);
  if (rc == 0) rc = nb_arena_writer_new(&rt->writer, rt->arena);
  if (rc) {
    nb__addf(&b->errs, "arena%s%s: %s", apath ? " " : "", apath ? apath : "",
             nb_strerror(rc));
    return -1;
  }
  o.arena = rt->arena;
  rc = nb_cortex_new(&rt->cx, &o);
  if (rc) {
    nb__addf(&b->errs, "topology: cannot create the cortex (axon_capacity "
             "%u, inbox_capacity %u): %s", o.axon_capacity, o.inbox_capacity,
             nb_strerror(rc));
    return -1;
  }
  int failed = 0;
  for (size_t i = 1; i <= nneurons; i++) {
    lua_rawgeti(C, nidx, (int)i);
    failed |= add_neuron(b, lua_gettop(C), NULL) != 0;
    lua_pop(C, 1);
  }
  /* Recorders, and peers a manifest file did not place among its own. */
  const char *lists[2] = {rt->opts.recorders, rt->opts.peers};
  for (int l = 0; l < 2; l++) {
    if (!lists[l]) continue;
    char *copy = nb__strdup(lists[l]), *save = NULL;
    for (char *r = strtok_r(copy, ",", &save); r; r = strtok_r(NULL, ",", &save))
      if (*r && nb_rt_id(rt, r) < 0) failed |= add_neuron(b, 0, r) != 0;
    free(copy);
  }
  /* A dry run reports the synapses of the neurons that did build too. */
  if (failed && !b->dry) return -1;
  /* The team takes the pause now: inits and everything until the first
   * round run on this thread. */
  if (rt->workers > 1) nb__team_new(rt, rt->workers, rt->pin, 0);
  int sidx = sub(C, idx, "synapses");
  size_t ns = sidx ? lua_objlen(C, sidx) : 0;
  for (size_t i = 1; i <= ns; i++) {
    lua_rawgeti(C, sidx, (int)i);
    add_synapse(b, lua_gettop(C));
    lua_pop(C, 1);
  }
  lua_pop(C, 1);
  if (b->errs.n) return -1;
  if (!b->dry) run_inits(b, nidx, nneurons);
  lua_pop(C, 1);
  return b->errs.n ? -1 : 0;
}

/* Returns a runtime built from the topology on top of C, or NULL with the
 * problems in *err (a dry run returns NULL either way, problems or not). */
static nb_rt_t *open_from(lua_State *C, const nb_rt_opts_t *opts, int dry,
                          const char *file, char **err) {
  build_t b = {.rt = nb__rt_new(opts), .C = C, .dry = dry, .file = file};
  if (dry) b.rt->opts.quiet = 1;
  int rc = build(&b, lua_gettop(C));
  if (rc != 0 || dry) {
    *err = b.errs.n ? nb__take(&b.errs) : NULL;
    if (!*err) free(b.errs.p);
    b.rt->stopped = 1; /* never ran: no on_stop */
    nb_rt_close(b.rt);
    return NULL;
  }
  free(b.errs.p);
  return b.rt;
}


/* Appends msg to errs, prefixed with path unless it starts with it. */
static void add_located(nb__buf_t *errs, const char *path, const char *msg) {
  size_t n = strlen(path);
  if (!strncmp(msg, path, n) && (msg[n] == ':' || msg[n] == 0))
    nb__addf(errs, "%s", msg);
  else
    nb__addf(errs, "%s: %s", path, msg);
}

/* Sets field key of the table on top of C to the names of a
 * comma-separated list, when there is one; returns nothing. */
static void push_names(lua_State *C, const char *list, const char *key) {
  if (!list) return;
  char *copy = nb__strdup(list), *save = NULL;
  int i = 0;
  lua_newtable(C);
  for (char *r = strtok_r(copy, ",", &save); r; r = strtok_r(NULL, ",", &save))
    if (*r) {
      lua_pushstring(C, r);
      lua_rawseti(C, -2, ++i);
    }
  free(copy);
  lua_setfield(C, -2, key);
}

/* Runs neuronbus.manifest's load(path), or load_source(src) with label and
 * opts' peers and recorders as recorder neurons, in C; returns 1 with the normalized
 * topology on top, or 0 with every problem appended to errs. */
static int manifest_load(lua_State *C, const char *path, const char *src,
                         size_t len, const nb_rt_opts_t *opts,
                         nb__buf_t *errs) {
  lua_pushcfunction(C, nb__msgh);
  int h = lua_gettop(C);
  lua_getglobal(C, "require");
  lua_pushliteral(C, "neuronbus.manifest");
  if (lua_pcall(C, 1, 1, h)) {
    nb__addf(errs, "cannot load the manifest validator: %s",
             lua_tostring(C, -1));
    return 0;
  }
  if (src) {
    lua_getfield(C, -1, "load_source");
    lua_pushlstring(C, src, len);
    lua_pushstring(C, path);
    lua_pushnil(C);         /* scripts resolve against the working dir */
    lua_pushstring(C, path); /* names a topology without a name */
    lua_newtable(C);
    if (opts) {
      push_names(C, opts->peers, "recorders");
      push_names(C, opts->recorders, "injector");
    }
  } else {
    lua_getfield(C, -1, "load");
    lua_pushstring(C, path);
  }
  if (lua_pcall(C, src ? 5 : 1, 2, h)) {
    add_located(errs, path, lua_tostring(C, -1));
    return 0;
  }
  if (lua_istable(C, -2)) {
    lua_pop(C, 1);
    return 1;
  }
  size_t n = lua_istable(C, -1) ? lua_objlen(C, -1) : 0;
  for (size_t i = 1; i <= n; i++) {
    lua_rawgeti(C, -1, (int)i);
    add_located(errs, path, lua_tostring(C, -1));
    lua_pop(C, 1);
  }
  if (n == 0) nb__addf(errs, "%s: rejected (no reason given)", path);
  return 0;
}

/* The bounds of a manifest's evaluation (the manifest file is Lua run by
 * the runtime): its state's memory, and for a manifest file its time. */
#define NB__MANIFEST_MEMORY (64u << 20)
#define NB__MANIFEST_TIME_NS 5000000000ull

typedef struct mcap_s {
  size_t used, limit;
  int hit; /* an allocation was refused */
} mcap_t;

/* The manifest state's allocator: refuses to grow past the limit. */
static void *mcap_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  mcap_t *c = ud;
  if (nsize == 0) {
    free(ptr);
    c->used -= osize;
    return NULL;
  }
  if (nsize > osize && c->used - osize + nsize > c->limit) {
    c->hit = 1;
    return NULL;
  }
  void *p = realloc(ptr, nsize);
  if (p) c->used = c->used - osize + nsize;
  return p;
}

/* nb__state_new, with the manifest's memory cap c. */
static lua_State *manifest_state_new(mcap_t *c, char **err) {
  memset(c, 0, sizeof *c);
  c->limit = NB__MANIFEST_MEMORY;
  return nb__state_new_with(mcap_alloc, c, err);
}

/* Replaces what a manifest that hit its memory cap reported. */
static void memory_hit(nb__buf_t *errs, const char *path) {
  free(errs->p);
  memset(errs, 0, sizeof *errs);
  nb__addf(errs, "%s: evaluation used more than %u MB (the manifest's "
           "memory limit)", path, NB__MANIFEST_MEMORY >> 20);
}

/* Evaluates the manifest file at path in a child process first, which is
 * killed past NB__MANIFEST_TIME_NS: a Lua loop meets the instruction limit,
 * but one long call into C (a backtracking string.find) checks no hook,
 * and a thread cannot stop it. Returns 0 when it ended in time (the real
 * evaluation follows and ends likewise: a manifest has no io, os or
 * clock), -1 with the problem in errs when it did not. */
static int manifest_timed(const char *path, nb__buf_t *errs) {
  fflush(stdout);
  fflush(stderr);
  pid_t pid = fork();
  if (pid < 0) return 0; /* no guard then: the instruction limit remains */
  if (pid == 0) {
    int fd = open("/dev/null", O_WRONLY);
    if (fd >= 0) {
      dup2(fd, 1);
      dup2(fd, 2);
    }
    mcap_t cap;
    char *err = NULL;
    lua_State *C = manifest_state_new(&cap, &err);
    if (C) {
      nb__buf_t e = {0};
      manifest_load(C, path, NULL, 0, NULL, &e);
    }
    _exit(0);
  }
  uint64_t start = nb_clock_ns();
  struct timespec nap = {0, 200000}; /* 0.2 ms, doubling to 20 ms */
  for (;;) {
    int st;
    pid_t r = waitpid(pid, &st, WNOHANG);
    if (r == pid || (r < 0 && errno != EINTR)) return 0;
    if (nb_clock_ns() - start >= NB__MANIFEST_TIME_NS) break;
    nanosleep(&nap, NULL);
    if (nap.tv_nsec < 20000000) nap.tv_nsec *= 2;
  }
  kill(pid, SIGKILL);
  while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {}
  nb__addf(errs, "%s: evaluation took longer than %.0f s (the manifest's "
           "time limit: an endless loop, or a pattern that backtracks?)",
           path, (double)NB__MANIFEST_TIME_NS / 1e9);
  return -1;
}

/* Opens a runtime from the manifest at path, or from the manifest source
 * src (len bytes) labelled path; returns it or NULL with *err set. */
static nb_rt_t *open_manifest(const char *path, const char *src, size_t len,
                              const nb_rt_opts_t *opts, char **err) {
  *err = NULL;
  nb__buf_t errs = {0};
  if (!src && manifest_timed(path, &errs)) {
    *err = nb__take(&errs);
    return NULL;
  }
  mcap_t cap;
  lua_State *C = manifest_state_new(&cap, err);
  if (!C) return NULL;
  nb_rt_t *rt = NULL;
  if (manifest_load(C, path, src, len, opts, &errs)) {
    rt = open_from(C, opts, 0, path, err);
  } else {
    if (cap.hit) memory_hit(&errs, path);
    *err = nb__take(&errs);
  }
  lua_close(C);
  return rt;
}

nb_rt_t *nb_rt_open_topo(const char *src, size_t len, const char *chunkname,
                         const nb_rt_opts_t *opts, char **err) {
  /* "=name" and "@name" are Lua's chunk names: the label is the name. */
  const char *label = chunkname ? chunkname : "manifest";
  if (*label == '=' || *label == '@') label++;
  return open_manifest(label, src, len, opts, err);
}

nb_rt_t *nb_rt_open(const char *path, const nb_rt_opts_t *opts, char **err) {
  return open_manifest(path, NULL, 0, opts, err);
}

int nb__manifest_with(const char *path, int (*fn)(lua_State *C, void *ctx),
                      void *ctx, char **err) {
  *err = NULL;
  nb__buf_t errs = {0};
  if (manifest_timed(path, &errs)) {
    *err = nb__take(&errs);
    return -1;
  }
  mcap_t cap;
  lua_State *C = manifest_state_new(&cap, err);
  if (!C) return -1;
  int rc = -1;
  if (manifest_load(C, path, NULL, 0, NULL, &errs)) {
    rc = fn(C, ctx);
    free(errs.p);
  } else {
    if (cap.hit) memory_hit(&errs, path);
    *err = nb__take(&errs);
  }
  lua_close(C);
  return rc;
}

/* Runs the dry run of neuronbus check in the manifest state C (its memory
 * cap is cap) over the manifest file at path, or the source src (len
 * bytes) labelled path when src is given; returns the problems' text
 * (malloc'd; NULL or empty when there is none) with the neuron and
 * synapse counts of a manifest that validated in *nn and *ns. Leaves C's
 * stack as it found it, so C can check again. */
static char *check_in(lua_State *C, mcap_t *cap, const char *path,
                      const char *src, size_t len, size_t *nn, size_t *ns) {
  nb__buf_t errs = {0};
  char *text = NULL;
  int top = lua_gettop(C);
  cap->hit = 0;
  if (manifest_load(C, path, src, len, NULL, &errs)) {
    int topo = lua_gettop(C);
    lua_getfield(C, topo, "neurons");
    *nn = lua_objlen(C, -1);
    lua_getfield(C, topo, "synapses");
    *ns = lua_objlen(C, -1);
    lua_settop(C, topo);
    open_from(C, NULL, 1, path, &text);
  } else {
    if (cap->hit) memory_hit(&errs, path);
    text = nb__take(&errs);
  }
  lua_settop(C, top);
  return text;
}

/* Returns the problems in text: one per line, except the lines of a
 * traceback (a script that raised at its top level). */
static int count_problems(const char *text) {
  int problems = 0;
  if (!text || !*text) return 0;
  for (const char *line = text; line; line = strchr(line, '\n')) {
    if (*line == '\n') line++;
    if (*line != '\t' && strncmp(line, "stack traceback:", 16) != 0)
      problems++;
  }
  return problems;
}

int nb_rt_check(const char *path, FILE *out) {
  char *err = NULL;
  nb__buf_t errs = {0};
  size_t nn = 0, ns = 0;
  char *text = NULL;
  mcap_t cap;
  if (!manifest_timed(path, &errs)) {
    lua_State *C = manifest_state_new(&cap, &err);
    if (!C) {
      fprintf(out, "%s\n", err);
      free(err);
      free(errs.p);
      return 1;
    }
    text = check_in(C, &cap, path, NULL, 0, &nn, &ns);
    lua_close(C);
  } else {
    text = nb__take(&errs);
  }
  int problems = count_problems(text);
  if (problems) {
    fprintf(out, "%s\n", text);
    fprintf(out, "check: %s: %d problem%s\n", path, problems,
            problems == 1 ? "" : "s");
  } else {
    fprintf(out, "check: %s: ok (%zu neurons, %zu synapses)\n", path, nn, ns);
  }
  free(text);
  return problems;
}

/* A manifest state kept for checking many sources (fuzz_manifest). */
struct nb__checker_s {
  lua_State *C;
  mcap_t cap;
};

nb__checker_t *nb__checker_new(char **err) {
  nb__checker_t *k = calloc(1, sizeof *k);
  if (!k) abort();
  k->C = manifest_state_new(&k->cap, err);
  if (!k->C) {
    free(k);
    return NULL;
  }
  return k;
}

char *nb__checker_run(nb__checker_t *k, const char *label, const char *src,
                      size_t len, int *problems) {
  size_t nn = 0, ns = 0;
  char *text = check_in(k->C, &k->cap, label, src, len, &nn, &ns);
  *problems = count_problems(text);
  return text;
}

lua_State *nb__checker_state(nb__checker_t *k) { return k->C; }

void nb__checker_free(nb__checker_t *k) {
  if (!k) return;
  lua_close(k->C);
  free(k);
}
