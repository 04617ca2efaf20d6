/* nb_rt_reload.c: hot reload of agent scripts. Versions (a counter and the
 * FNV-1a 64 hash of the source); the reload in two steps: the new source
 * compiled to bytecode in a scratch state (any thread, while the old
 * version ticks), then swapped into the neuron's own state between ticks;
 * and the libuv side of `neuronbus run`: a debounced watch of every
 * script's directory and SIGHUP, compiling on libuv's thread pool.
 *
 * Nothing here touches the cortex: the neuron's inbox and axons hold their
 * spikes across a reload, so the spikes queued while the new code loads are
 * delivered to it, each once, in order. */
#include "nb_rt_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <luajit.h>
#include <uv.h>

#include "nb_lstate.h"

/* Quiet time after the last file event before the file is read: editors
 * write, truncate, rename and chmod in bursts. */
#define NB__RELOAD_DEBOUNCE_MS 20


/* Returns the whole file at path, malloc'd and NUL-terminated, with its
 * length in *len, or NULL with errno set. */
static char *slurp(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  size_t cap = 4096, n = 0;
  char *buf = malloc(cap);
  if (!buf) abort();
  for (;;) {
    n += fread(buf + n, 1, cap - n - 1, f);
    if (n < cap - 1) break;
    cap *= 2;
    char *p = realloc(buf, cap);
    if (!p) abort();
    buf = p;
  }
  int bad = ferror(f);
  int saved = errno;
  fclose(f);
  if (bad) {
    free(buf);
    errno = saved ? saved : EIO;
    return NULL;
  }
  buf[n] = 0;
  *len = n;
  return buf;
}

/* Sets a's version fields to hash (counter unchanged); returns nothing. */
static void set_hash(nb__agent_t *a, uint64_t hash) {
  a->ver.hash = hash;
  snprintf(a->ver.hex, sizeof a->ver.hex, "%016" PRIx64, hash);
}

void nb__reload_boot(nb__agent_t *a) {
  if (!a->script) return;
  size_t len = 0;
  char *src = slurp(a->script, &len);
  /* An unreadable file fails the boot itself, with its own message. */
  uint64_t h = src ? nb__fnv1a(src, len) : 0;
  free(src);
  if (a->ver.counter == 0) a->ver.counter = 1;
  else if (h != a->ver.hash) a->ver.counter++; /* a re-boot of changed code */
  set_hash(a, h);
  if (a->neuron) nb_neuron_set_version(a->neuron, a->ver.counter);
}

/* Returns the agent behind cell's view of neuron id (its own agent while it
 * boots, before it is in rt->agents), or NULL. */
static const nb__agent_t *card_agent(const nb_rt_cell_t *cell,
                                     uint32_t id) {
  const nb__agent_t *self = (const nb__agent_t *)cell;
  if (cell->id == id) return self;
  const nb_rt_t *rt = self->rt;
  return id < rt->n ? rt->agents[id] : NULL;
}

uint32_t nb_rt_card_version(const nb_rt_cell_t *cell, uint32_t id) {
  const nb__agent_t *b = card_agent(cell, id);
  if (!b) return 0;
  /* The cortex's card is the record others discover; before registration
   * (own boot) only the agent has it. */
  return b->neuron ? nb_neuron_card(b->neuron)->version : b->ver.counter;
}

const char *nb_rt_card_hash(const nb_rt_cell_t *cell, uint32_t id) {
  const nb__agent_t *b = card_agent(cell, id);
  return b && b->ver.counter ? b->ver.hex : "";
}

int nb_rt_version(const nb_rt_t *rt, uint32_t id, nb_rt_version_t *out) {
  if (id >= rt->n) return NB_ENOENT;
  const nb__agent_t *a = rt->agents[id];
  memset(out, 0, sizeof *out);
  out->counter = a->ver.counter;
  out->reloads = a->ver.reloads;
  out->rejected = a->ver.rejected;
  if (a->ver.counter) memcpy(out->hash, a->ver.hex, sizeof out->hash);
  return 0;
}

double nb_rt_memory(nb_rt_t *rt, uint32_t id) {
  if (id >= rt->n || !rt->agents[id]->L) return -1;
  lua_State *L = rt->agents[id]->L;
  lua_gc(L, LUA_GCCOLLECT, 0);
  return (double)lua_gc(L, LUA_GCCOUNT, 0) * 1024.0 +
         (double)lua_gc(L, LUA_GCCOUNTB, 0);
}

/* Pushes an array of the custom filter names that synapses into a's
 * neuron use (the new version must export them), or nil when there are
 * none; returns nothing. */
static void push_needed_filters(nb__agent_t *a) {
  lua_State *L = a->L;
  size_t n = 0, k = 0;
  nb_synapse_t *const *in = nb_synapse_table_incoming(
      nb_cortex_synapses(a->rt->cx), (nb_id_t)a->cell.id, &n);
  for (size_t i = 0; i < n; i++)
    for (size_t f = 0; f < in[i]->nfilters; f++)
      if (in[i]->filters[f].type == NB_FILTER_CUSTOM) {
        if (k == 0) lua_newtable(L);
        lua_pushstring(L, in[i]->filters[f].name);
        lua_rawseti(L, -2, (int)++k);
      }
  if (k == 0) lua_pushnil(L);
}

/* Says what a reload did on stderr unless the runtime is quiet; returns
 * nothing. */
static void reload_say(const nb__agent_t *a, const char *what) {
  if (a->rt->opts.quiet) return;
  fprintf(nb__log(stderr), "neuronbus: agent \"%s\" (id %u): %s\n", a->name, a->cell.id,
          what);
  fflush(stderr);
}

/* Reload modes of commit: what counts as "nothing to do". */
enum {
  NB__RL_CHANGED = 0, /* the running version's source */
  NB__RL_FORCE = 1,   /* nothing: always load */
  NB__RL_WATCH = 2    /* the running source, or the last rejected one (a
                         touch of a broken file does not report it again) */
};

/* A new version compiled off the pause: the bytecode of the chunk (debug
 * information kept, so errors name the file and line), or the reason it
 * does not compile. */
struct nb_rt_reload_prep_s {
  uint32_t id;
  uint64_t hash;  /* FNV-1a 64 of the source */
  char *bc;       /* bytecode, or NULL with why set */
  size_t bclen, bccap;
  char *why;      /* "file:line: message" */
};

/* lua_dump's writer: appends to the prep's buffer; returns 0. */
static int bc_write(lua_State *L, const void *p, size_t n, void *ud) {
  (void)L;
  nb_rt_reload_prep_t *r = ud;
  if (r->bclen + n > r->bccap) {
    size_t cap = r->bccap ? r->bccap : 4096;
    while (cap < r->bclen + n) cap *= 2;
    char *b = realloc(r->bc, cap);
    if (!b) abort();
    r->bc = b;
    r->bccap = cap;
  }
  memcpy(r->bc + r->bclen, p, n);
  r->bclen += n;
  return 0;
}

/* Compiles src (len bytes, text only) named chunkname ("@path") into r's
 * bytecode in a scratch state of the calling thread, or sets r->why;
 * returns nothing. The neuron's own state is not touched: parsing is the
 * slow part of a reload, and it runs while the old version still ticks. */
static void compile(nb_rt_reload_prep_t *r, const char *src, size_t len,
                    const char *chunkname) {
  if (len && src[0] == 0x1b) {
    r->why = nb__strf("%s: precompiled bytecode is refused: a reload loads "
                      "Lua source text only", chunkname + 1);
    return;
  }
  /* A bare state: the lexer loads the FFI itself for 64-bit literals. */
  lua_State *S = luaL_newstate();
  if (!S) abort();
  if (luaL_loadbufferx(S, src, len, chunkname, "t") != 0) {
    const char *m = lua_tostring(S, -1);
    r->why = nb__strf("%s", m ? m : "the chunk does not compile");
  } else if (lua_dump(S, bc_write, r) != 0) {
    r->why = nb__strf("%s: cannot dump the compiled chunk", chunkname + 1);
  }
  lua_close(S);
  if (r->why) {
    free(r->bc);
    r->bc = NULL;
  }
}

void nb_rt_reload_prep_free(nb_rt_reload_prep_t *r) {
  if (!r) return;
  free(r->bc);
  free(r->why);
  free(r);
}

/* Checks that neuron id of rt can be reloaded; returns 0, or NB_ENOENT
 * with *err set. */
static int reloadable(const nb_rt_t *rt, uint32_t id, char **err) {
  if (id >= rt->n) {
    *err = nb__strf("reload: no neuron with id %u", id);
    return NB_ENOENT;
  }
  const nb__agent_t *a = rt->agents[id];
  if (!a->L || !a->script) {
    *err = nb__strf("reload: neuron \"%s\" has no agent script", a->name);
    return NB_ENOENT;
  }
  return 0;
}

/* Returns neuron id's next version compiled from src (its script file
 * script), whose hash is known; any thread. */
static nb_rt_reload_prep_t *prep_new(uint32_t id, const char *script,
                                     const char *src, size_t len,
                                     uint64_t hash) {
  nb_rt_reload_prep_t *r = calloc(1, sizeof *r);
  if (!r) abort();
  r->id = id;
  r->hash = hash;
  char *chunkname = nb__strf("@%s", script);
  compile(r, src, len, chunkname);
  free(chunkname);
  return r;
}

/* Points *src and *len at a's script file read into *buf (malloc'd, for
 * the caller to free) when *src is NULL; returns 0, or NB_EIO with *err
 * set. */
static int source_of(const nb__agent_t *a, const char **src, size_t *len,
                     char **buf, char **err) {
  *buf = NULL;
  if (*src) return 0;
  *buf = slurp(a->script, len);
  if (!*buf) {
    *err = nb__strf("%s: cannot read the agent script: %s", a->script,
                    strerror(errno));
    return NB_EIO;
  }
  *src = *buf;
  return 0;
}

int nb_rt_reload_prepare(const nb_rt_t *rt, uint32_t id, const char *src,
                         size_t len, nb_rt_reload_prep_t **out, char **err) {
  *err = NULL;
  *out = NULL;
  int rc = reloadable(rt, id, err);
  if (rc) return rc;
  const nb__agent_t *a = rt->agents[id];
  char *buf;
  if ((rc = source_of(a, &src, &len, &buf, err)) != 0) return rc;
  *out = prep_new(id, a->script, src, len, nb__fnv1a(src, len));
  free(buf);
  return 0;
}

/* Swaps the compiled version r into a's state: the bytecode is loaded and
 * neuronbus.agent's reload runs the chunk, checks the contract and calls
 * on_reload; returns 1, or NB_EAGENT with *err set (the old version keeps
 * running). */
static int swap_in(nb__agent_t *a, const nb_rt_reload_prep_t *r, char **err) {
  char hex[17];
  snprintf(hex, sizeof hex, "%016" PRIx64, r->hash);
  lua_State *L = a->L;
  int top = lua_gettop(L);
  /* No collector steps on the pause: loading and running the new version
   * allocates, and each allocation would pay a step of the collector's
   * debt. It runs again from the swap on, in its usual increments, or
   * once the swap grew the heap by NB_LSTATE_GC_HOLD_MAX (a new version
   * whose top level churns). Not in a burst of reloads with no tick
   * between them (the state would never run its collector), nor in a
   * state past half its memory cap, where garbage could push it over:
   * that one is collected in full after the swap instead. */
  nb_lstate_stats_t st;
  nb_lstate_stats(a->S, &st);
  int near_cap = st.limit && st.bytes > st.limit / 2;
  int stop_gc = !near_cap && a->ver.swap_tick != a->rt->ticks + 1;
  a->ver.swap_tick = a->rt->ticks + 1;
  if (stop_gc) nb_lstate_gc_hold(a->S);
  char *chunkname = nb__strf("@%s", a->script);
  char why[8192];
  int lrc = nb_lstate_load_compiled(a->S, r->bc, r->bclen, chunkname, why,
                                    sizeof why);
  free(chunkname);
  if (lrc != 0) {
    *err = nb__strf("%s: reload failed: %s", a->script, why);
    if (stop_gc) nb_lstate_gc_release(a->S);
    return NB_EAGENT;
  }
  int chunk = lua_gettop(L);
  /* neuronbus.agent is loaded in every agent state: boot came from it. */
  lua_getfield(L, LUA_REGISTRYINDEX, "_LOADED");
  lua_getfield(L, -1, "neuronbus.agent");
  lua_getfield(L, -1, "reload");
  lua_pushvalue(L, chunk);
  lua_pushstring(L, a->script);
  lua_pushinteger(L, (lua_Integer)a->ver.counter + 1);
  lua_pushstring(L, hex);
  lua_pushinteger(L, (lua_Integer)a->ver.counter);
  lua_pushstring(L, a->ver.hex);
  push_needed_filters(a);
  /* The agent's own code runs under reload's xpcall; an error reaching
   * this call is the runtime's (a missing entry), or one of the state's
   * limits: the new chunk and on_reload run under its memory cap and
   * budget like any entry (nb_lstate_call). */
  int rc = NB_EAGENT;
  if (nb_lstate_call_in(a->S, "a reload", 7, 2, why, sizeof why) != 0) {
    *err = nb__strf("%s: reload failed: %s", a->script, why);
  } else if (!lua_toboolean(L, -2)) {
    *err = nb__strf("%s", lua_isstring(L, -1) ? lua_tostring(L, -1)
                                              : "reload refused (no reason)");
  } else {
    rc = 1;
  }
  lua_settop(L, top);
  /* Every JIT trace of the state is flushed: a trace keeps the prototypes
   * it was recorded from alive, and any trace may hold the version that is
   * out (not only those rooted in its code: one rooted in a library
   * function the agent calls goes on into the agent's code when it returns
   * there). The old code is then garbage like any other, which the
   * incremental collector reclaims as the agent allocates (a full
   * collection here was half the pause); a state past half its memory cap
   * is collected in full now. */
  nb_lstate_flush_jit(a->S);
  if (stop_gc) nb_lstate_gc_release(a->S);
  if (near_cap) lua_gc(L, LUA_GCCOLLECT, 0);
  return rc;
}

/* Returns 1 when a source hashing to h is nothing to do in mode (see
 * NB__RL_*), given the running version's hash and the last rejected
 * one's (0: none), else 0. */
static int unchanged(int mode, uint64_t h, uint64_t running,
                     uint64_t rejected) {
  return (mode != NB__RL_FORCE && h == running) ||
         (mode == NB__RL_WATCH && rejected && h == rejected);
}

/* Returns the hash of a's last rejected source, 0 when none was. */
static uint64_t last_rejected(const nb__agent_t *a) {
  return a->ver.rejected ? a->ver.rejected_hash : 0;
}

/* Sets *err to say that a is inside a call on a worker thread; returns
 * NB_EBUSY. */
static int say_busy(const nb__agent_t *a, char **err) {
  *err = nb__strf("reload: neuron \"%s\" is inside a call on its worker's "
                  "thread; it reloads between its calls", a->name);
  return NB_EBUSY;
}

/* Applies r to its neuron between ticks (see nb_rt_reload for mode and
 * the returns); r stays the caller's. */
static int commit(nb_rt_t *rt, const nb_rt_reload_prep_t *r, int mode,
                  char **err) {
  *err = NULL;
  int rc = reloadable(rt, r->id, err);
  if (rc) return rc;
  nb__agent_t *a = rt->agents[r->id];
  if (nb__rt_busy(a)) return say_busy(a, err);
  if (unchanged(mode, r->hash, a->ver.hash, last_rejected(a)))
    return 0; /* touched, not changed */
  if (r->why) {
    *err = nb__strf("%s", r->why);
    rc = NB_EAGENT;
  } else {
    rc = swap_in(a, r, err);
  }
  if (rc == 1) {
    a->ver.counter++;
    a->ver.reloads++;
    set_hash(a, r->hash);
    nb_neuron_set_version(a->neuron, a->ver.counter);
    char *msg = nb__strf("reloaded %s: version %u (hash %s)", a->script,
                         a->ver.counter, a->ver.hex);
    reload_say(a, msg);
    free(msg);
    return 1;
  }
  a->ver.rejected++;
  a->ver.rejected_hash = r->hash;
  char *msg = nb__strf("reload rejected, version %u keeps running: %s",
                       a->ver.counter, *err);
  reload_say(a, msg);
  free(msg);
  return rc;
}

int nb_rt_reload_commit(nb_rt_t *rt, nb_rt_reload_prep_t *r, int force,
                        char **err) {
  int rc = commit(rt, r, force ? NB__RL_FORCE : NB__RL_CHANGED, err);
  nb_rt_reload_prep_free(r);
  return rc;
}

/* The hash is checked before compiling: an unchanged source costs no
 * compile. */
int nb_rt_reload(nb_rt_t *rt, uint32_t id, const char *src, size_t len,
                 int force, char **err) {
  int mode = force ? NB__RL_FORCE : NB__RL_CHANGED;
  *err = NULL;
  int rc = reloadable(rt, id, err);
  if (rc) return rc;
  nb__agent_t *a = rt->agents[id];
  if (nb__rt_busy(a)) return say_busy(a, err);
  char *buf;
  if ((rc = source_of(a, &src, &len, &buf, err)) != 0) return rc;
  uint64_t h = nb__fnv1a(src, len);
  if (unchanged(mode, h, a->ver.hash, last_rejected(a))) {
    free(buf);
    return 0;
  }
  nb_rt_reload_prep_t *r = prep_new(id, a->script, src, len, h);
  free(buf);
  rc = commit(rt, r, mode, err);
  nb_rt_reload_prep_free(r);
  return rc;
}

/* ------------------------------------------------------------------ */
/* the watch (`neuronbus run`)                                         */

typedef struct nb__watch_s watch_t;

#define BUSY_RETRY_MS 50 /* a busy neuron's reload is tried again after */

/* One watched directory. */
typedef struct wdir_s {
  uv_fs_event_t ev;
  char *path;
  watch_t *w;
} wdir_t;

/* One watched script (one per agent: two neurons may share a file). */
typedef struct wfile_s {
  uv_timer_t debounce;
  uint32_t id;
  size_t dir;       /* index into w->dirs */
  const char *base; /* file name inside the directory (into the script) */
  watch_t *w;
} wfile_t;

/* One turn of compiling off the loop: the scripts to read and compile on
 * the thread pool, committed on the loop thread when done. */
typedef struct wjob_s {
  uv_work_t req;
  watch_t *w;
  int mode;     /* NB__RL_WATCH (file events), NB__RL_CHANGED (SIGHUP) */
  size_t n;
  struct witem_s {
    uint32_t id;
    const char *script;        /* the agent's (lives as long as rt) */
    uint64_t hash, rejected;   /* the agent's when queued (0: none) */
    nb_rt_reload_prep_t *prep; /* NULL: unchanged, or unreadable */
    int read_errno;            /* the read's failure, else 0 */
  } item[];
} wjob_t;

struct nb__watch_s {
  nb_rt_t *rt;
  uv_loop_t *loop;
  uv_signal_t hup;
  wdir_t *dirs;
  size_t ndirs;
  wfile_t *files;
  size_t nfiles;
  /* One job at a time, so versions apply in the order they were read. */
  wjob_t *job;
  int hup_pending;  /* a SIGHUP came while a job ran */
  uint8_t *pending; /* per agent id: its file changed, not yet taken */
};

/* Thread pool: reads and compiles every script of job j that changed
 * since it was queued; touches no Lua state of the runtime; returns
 * nothing. */
static void job_work(uv_work_t *req) {
  wjob_t *j = req->data;
  for (size_t i = 0; i < j->n; i++) {
    struct witem_s *it = &j->item[i];
    size_t len = 0;
    char *src = slurp(it->script, &len);
    if (!src) {
      it->read_errno = errno ? errno : EIO;
      continue;
    }
    uint64_t h = nb__fnv1a(src, len);
    /* The loop thread checks again when it commits. */
    if (!unchanged(j->mode, h, it->hash, it->rejected))
      it->prep = prep_new(it->id, it->script, src, len, h);
    free(src);
  }
}

static void job_kick(watch_t *w);

/* Restarts the debounce of agent id's file so a busy neuron is tried again
 * later; returns nothing. */
static void retry_later(watch_t *w, uint32_t id);

/* Loop thread: commits what job_work compiled (unless the run is closing),
 * reports, frees the job and starts the next; returns nothing. */
static void job_done(uv_work_t *req, int status) {
  wjob_t *j = req->data;
  watch_t *w = j->w;
  nb_rt_t *rt = w->rt;
  int closing = status != 0 || uv_is_closing((uv_handle_t *)&w->hup);
  int reloaded = 0;
  for (size_t i = 0; i < j->n && !closing; i++) {
    struct witem_s *it = &j->item[i];
    if (it->read_errno) {
      /* Mid-replace by an editor, or deleted: the next event retries. */
      if (!rt->opts.quiet)
        fprintf(nb__log(stderr), "neuronbus: agent \"%s\": %s: cannot read "
                "the agent script: %s (the running version stays)\n",
                rt->agents[it->id]->name, it->script,
                strerror(it->read_errno));
      continue;
    }
    if (!it->prep) continue;
    char *err = NULL;
    int rc = commit(rt, it->prep, j->mode, &err);
    nb_rt_free_string(err);
    if (rc == NB_EBUSY && j->mode == NB__RL_WATCH) retry_later(w, it->id);
    reloaded += rc == 1;
  }
  if (j->mode == NB__RL_CHANGED && !closing) {
    fprintf(nb__log(stderr), "neuronbus: SIGHUP received, %d agent%s "
            "reloaded\n", reloaded, reloaded == 1 ? "" : "s");
    fflush(stderr);
  }
  for (size_t i = 0; i < j->n; i++) nb_rt_reload_prep_free(j->item[i].prep);
  free(j);
  w->job = NULL;
  if (!closing) job_kick(w);
}

/* Starts a job for what is pending (SIGHUP first: every agent with a
 * script) unless one runs; returns nothing. */
static void job_kick(watch_t *w) {
  nb_rt_t *rt = w->rt;
  if (w->job || uv_is_closing((uv_handle_t *)&w->hup)) return;
  int hup = w->hup_pending;
  size_t n = 0;
  for (uint32_t i = 0; i < rt->n; i++)
    if (rt->agents[i]->L && rt->agents[i]->script && (hup || w->pending[i]))
      n++;
  if (!n && !hup) return;
  wjob_t *j = calloc(1, sizeof *j + n * sizeof j->item[0]);
  if (!j) abort();
  j->w = w;
  j->mode = hup ? NB__RL_CHANGED : NB__RL_WATCH;
  for (uint32_t i = 0; i < rt->n; i++) {
    const nb__agent_t *a = rt->agents[i];
    if (!a->L || !a->script || !(hup || w->pending[i])) continue;
    /* A busy neuron's file is left pending: its debounce retries. */
    w->pending[i] = 0;
    struct witem_s *it = &j->item[j->n++];
    it->id = i;
    it->script = a->script;
    it->hash = a->ver.hash;
    it->rejected = last_rejected(a);
  }
  w->hup_pending = 0;
  w->job = j;
  j->req.data = j;
  int rc = uv_queue_work(w->loop, &j->req, job_work, job_done);
  if (rc < 0) { /* never for a valid loop: do the work here */
    job_work(&j->req);
    job_done(&j->req, 0);
  }
}

/* Debounce timer of one script: the burst is over, so its file is read
 * and compiled off the loop, then reloaded if its content changed;
 * returns nothing. */
static void on_debounce(uv_timer_t *t) {
  wfile_t *f = t->data;
  /* A neuron in a long call on a worker thread reloads once it returns. */
  if (nb__rt_busy(f->w->rt->agents[f->id])) {
    uv_timer_start(t, on_debounce, BUSY_RETRY_MS, 0);
    return;
  }
  f->w->pending[f->id] = 1;
  job_kick(f->w);
}

static void retry_later(watch_t *w, uint32_t id) {
  for (size_t i = 0; i < w->nfiles; i++)
    if (w->files[i].id == id)
      uv_timer_start(&w->files[i].debounce, on_debounce, BUSY_RETRY_MS, 0);
}

/* A change in a watched directory: (re)starts the debounce timer of every
 * script it may concern (all of the directory's when no name is given);
 * returns nothing. */
static void on_fs_event(uv_fs_event_t *h, const char *name, int events,
                        int status) {
  wdir_t *d = h->data;
  watch_t *w = d->w;
  size_t di = (size_t)(d - w->dirs);
  if (status < 0) {
    fprintf(nb__log(stderr), "neuronbus: watching %s: %s\n", d->path,
            uv_strerror(status));
    return;
  }
  for (size_t i = 0; i < w->nfiles; i++) {
    wfile_t *f = &w->files[i];
    if (f->dir != di || (name && strcmp(name, f->base) != 0)) continue;
    uv_timer_start(&f->debounce, on_debounce, NB__RELOAD_DEBOUNCE_MS, 0);
  }
}

/* SIGHUP: reloads every changed script (compiled off the loop) and says
 * how many; returns nothing. */
static void on_hup(uv_signal_t *s, int signum) {
  watch_t *w = s->data;
  w->hup_pending = 1;
  job_kick(w);
}

struct nb__watch_s *nb__reload_watch_start(void *uv_loop, nb_rt_t *rt,
                                           int watch_files) {
  uv_loop_t *loop = uv_loop;
  watch_t *w = calloc(1, sizeof *w);
  if (!w) abort();
  w->rt = rt;
  w->loop = loop;
  w->pending = calloc(rt->n ? rt->n : 1, 1);
  w->files = calloc(rt->n ? rt->n : 1, sizeof *w->files);
  w->dirs = calloc(rt->n ? rt->n : 1, sizeof *w->dirs);
  if (!w->files || !w->dirs || !w->pending) abort();
  uv_signal_init(loop, &w->hup);
  w->hup.data = w;
  uv_signal_start(&w->hup, on_hup, SIGHUP);
  for (uint32_t i = 0; i < rt->n && watch_files; i++) {
    nb__agent_t *a = rt->agents[i];
    if (!a->L || !a->script) continue;
    const char *slash = strrchr(a->script, '/');
    char *dir = slash ? nb__strf("%.*s", (int)(slash - a->script), a->script)
                      : nb__strf(".");
    if (!*dir) {
      free(dir);
      dir = nb__strf("/");
    }
    size_t di = 0;
    while (di < w->ndirs && strcmp(w->dirs[di].path, dir) != 0) di++;
    if (di == w->ndirs) {
      wdir_t *d = &w->dirs[w->ndirs];
      d->path = dir;
      d->w = w;
      uv_fs_event_init(loop, &d->ev);
      d->ev.data = d;
      /* The directory, not the file: an editor that saves by renaming a
       * new file over the old one would end a watch on the file itself. */
      int rc = uv_fs_event_start(&d->ev, on_fs_event, dir, 0);
      if (rc < 0)
        fprintf(nb__log(stderr), "neuronbus: cannot watch %s for hot reload: %s "
                "(SIGHUP still reloads)\n", dir, uv_strerror(rc));
      w->ndirs++;
    } else {
      free(dir);
    }
    wfile_t *f = &w->files[w->nfiles++];
    f->id = i;
    f->dir = di;
    f->base = slash ? slash + 1 : a->script;
    f->w = w;
    uv_timer_init(loop, &f->debounce);
    f->debounce.data = f;
  }
  return w;
}

void nb__reload_watch_free(struct nb__watch_s *w) {
  if (!w) return;
  for (size_t i = 0; i < w->ndirs; i++) free(w->dirs[i].path);
  free(w->dirs);
  free(w->files);
  free(w->pending);
  free(w);
}
