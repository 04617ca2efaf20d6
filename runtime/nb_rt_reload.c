/* nb_rt_reload.c: hot reload of agent scripts. Versions (a counter and the
 * FNV-1a 64 hash of the source), nb_rt_reload (the new code loaded into the
 * neuron's own state between ticks), the JIT flush and full collection
 * that keep old code from piling up, and the libuv side of `neuronbus run`:
 * a debounced watch of every script's directory and SIGHUP.
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
 * neuron use (the new version must export them); returns nothing. */
static void push_needed_filters(nb__agent_t *a) {
  lua_State *L = a->L;
  lua_newtable(L);
  size_t n = 0, k = 0;
  nb_synapse_t *const *in = nb_synapse_table_incoming(
      nb_cortex_synapses(a->rt->cx), (nb_id_t)a->cell.id, &n);
  for (size_t i = 0; i < n; i++)
    for (size_t f = 0; f < in[i]->nfilters; f++)
      if (in[i]->filters[f].type == NB_FILTER_CUSTOM) {
        lua_pushstring(L, in[i]->filters[f].name);
        lua_rawseti(L, -2, (int)++k);
      }
}

/* Says what a reload did on stderr unless the runtime is quiet; returns
 * nothing. */
static void reload_say(const nb__agent_t *a, const char *what) {
  if (a->rt->opts.quiet) return;
  fprintf(nb__log(stderr), "neuronbus: agent \"%s\" (id %u): %s\n", a->name, a->cell.id,
          what);
  fflush(stderr);
}

/* Reload modes of reload_one: what counts as "nothing to do". */
enum {
  NB__RL_CHANGED = 0, /* the running version's source */
  NB__RL_FORCE = 1,   /* nothing: always load */
  NB__RL_WATCH = 2    /* the running source, or the last rejected one (a
                         touch of a broken file does not report it again) */
};

/* nb_rt_reload with a mode; returns as nb_rt_reload. */
static int reload_one(nb_rt_t *rt, uint32_t id, const char *src, size_t len,
                      int mode, char **err) {
  *err = NULL;
  if (id >= rt->n) {
    *err = nb__strf("reload: no neuron with id %u", id);
    return NB_ENOENT;
  }
  nb__agent_t *a = rt->agents[id];
  if (!a->L || !a->script) {
    *err = nb__strf("reload: neuron \"%s\" has no agent script", a->name);
    return NB_ENOENT;
  }
  if (nb__rt_busy(a)) {
    *err = nb__strf("reload: neuron \"%s\" is inside a call on its "
                    "worker's thread; it reloads between its calls",
                    a->name);
    return NB_EBUSY;
  }
  char *buf = NULL;
  if (!src) {
    buf = slurp(a->script, &len);
    if (!buf) {
      *err = nb__strf("%s: cannot read the agent script: %s", a->script,
                      strerror(errno));
      return NB_EIO;
    }
    src = buf;
  }
  uint64_t h = nb__fnv1a(src, len);
  if ((mode != NB__RL_FORCE && h == a->ver.hash) ||
      (mode == NB__RL_WATCH && a->ver.rejected && h == a->ver.rejected_hash)) {
    free(buf);
    return 0; /* touched, not changed */
  }
  char hex[17];
  snprintf(hex, sizeof hex, "%016" PRIx64, h);
  lua_State *L = a->L;
  int top = lua_gettop(L);
  /* neuronbus.agent is loaded in every agent state: boot came from it. */
  lua_getfield(L, LUA_REGISTRYINDEX, "_LOADED");
  lua_getfield(L, -1, "neuronbus.agent");
  lua_getfield(L, -1, "reload");
  lua_pushlstring(L, src, len);
  lua_pushfstring(L, "@%s", a->script);
  lua_pushinteger(L, (lua_Integer)a->ver.counter + 1);
  lua_pushstring(L, hex);
  lua_pushinteger(L, (lua_Integer)a->ver.counter);
  lua_pushstring(L, a->ver.hex);
  push_needed_filters(a);
  free(buf);
  /* The agent's own code runs under reload's xpcall; an error reaching
   * this call is the runtime's (a missing entry), or one of the state's
   * limits: the new chunk and on_reload run under its memory cap and
   * budget like any entry (nb_lstate_call). */
  char why[8192];
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
  /* Old prototypes stay alive while a JIT trace refers to them: flush every
   * trace of this state. The old code (and a rejected version's leftovers)
   * is then garbage like any other, which the incremental collector
   * reclaims as the agent allocates: a full collection here was half the
   * reload's pause. Only a state past half its memory cap, where garbage
   * could push it over, is collected in full now. */
  luaJIT_setmode(L, 0, LUAJIT_MODE_ENGINE | LUAJIT_MODE_FLUSH);
  nb_lstate_stats_t st;
  nb_lstate_stats(a->S, &st);
  if (st.limit && st.bytes > st.limit / 2) lua_gc(L, LUA_GCCOLLECT, 0);
  if (rc == 1) {
    a->ver.counter++;
    a->ver.reloads++;
    set_hash(a, h);
    nb_neuron_set_version(a->neuron, a->ver.counter);
    char *msg = nb__strf("reloaded %s: version %u (hash %s)", a->script,
                         a->ver.counter, a->ver.hex);
    reload_say(a, msg);
    free(msg);
    return 1;
  }
  a->ver.rejected++;
  a->ver.rejected_hash = h;
  char *msg = nb__strf("reload rejected, version %u keeps running: %s",
                       a->ver.counter, *err);
  reload_say(a, msg);
  free(msg);
  return rc;
}

int nb_rt_reload(nb_rt_t *rt, uint32_t id, const char *src, size_t len,
                 int force, char **err) {
  return reload_one(rt, id, src, len, force ? NB__RL_FORCE : NB__RL_CHANGED,
                    err);
}

/* Reloads agent id from its file when the file changed (mode: see
 * reload_one); returns 1 when reloaded, else 0 (unchanged, rejected or
 * unreadable: reported). */
static int reload_if_changed(nb_rt_t *rt, uint32_t id, int mode) {
  char *err = NULL;
  int rc = reload_one(rt, id, NULL, 0, mode, &err);
  if (rc == NB_EIO && !rt->opts.quiet) {
    /* Mid-replace by an editor, or deleted: the next event retries. */
    fprintf(nb__log(stderr), "neuronbus: agent \"%s\": %s (the running version "
            "stays)\n", rt->agents[id]->name, err);
  }
  nb_rt_free_string(err);
  return rc == 1;
}

int nb_rt_reload_changed(nb_rt_t *rt) {
  int n = 0;
  for (uint32_t i = 0; i < rt->n; i++)
    if (rt->agents[i]->L && rt->agents[i]->script)
      n += reload_if_changed(rt, i, NB__RL_CHANGED);
  return n;
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

struct nb__watch_s {
  nb_rt_t *rt;
  uv_signal_t hup;
  wdir_t *dirs;
  size_t ndirs;
  wfile_t *files;
  size_t nfiles;
};

/* Debounce timer of one script: the burst is over, so reloads it if its
 * content changed; returns nothing. */
static void on_debounce(uv_timer_t *t) {
  wfile_t *f = t->data;
  /* A neuron in a long call on a worker thread reloads once it returns. */
  if (nb__rt_busy(f->w->rt->agents[f->id])) {
    uv_timer_start(t, on_debounce, BUSY_RETRY_MS, 0);
    return;
  }
  reload_if_changed(f->w->rt, f->id, NB__RL_WATCH);
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

/* SIGHUP: reloads every changed script now and says how many; returns
 * nothing. */
static void on_hup(uv_signal_t *s, int signum) {
  watch_t *w = s->data;
  int n = nb_rt_reload_changed(w->rt);
  fprintf(nb__log(stderr), "neuronbus: SIGHUP received, %d agent%s reloaded\n", n,
          n == 1 ? "" : "s");
  fflush(stderr);
}

struct nb__watch_s *nb__reload_watch_start(void *uv_loop, nb_rt_t *rt,
                                           int watch_files) {
  uv_loop_t *loop = uv_loop;
  watch_t *w = calloc(1, sizeof *w);
  if (!w) abort();
  w->rt = rt;
  w->files = calloc(rt->n ? rt->n : 1, sizeof *w->files);
  w->dirs = calloc(rt->n ? rt->n : 1, sizeof *w->dirs);
  if (!w->files || !w->dirs) abort();
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
  free(w);
}
