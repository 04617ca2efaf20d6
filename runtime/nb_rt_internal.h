/* nb_rt_internal.h: what the runtime's own files share (not installed). */
#ifndef NB_RT_INTERNAL_H
#define NB_RT_INTERNAL_H

#include <lua.h>

#include "nb_rt.h"

/* Fixed stack slots of every agent state: the entry points returned by
 * neuronbus.agent's boot, kept on the stack so a call is one pushvalue. */
enum {
  NB__SLOT_MSGH = 1,   /* traceback message handler */
  NB__SLOT_DISPATCH,   /* dispatch(): hands cell's batch to on_spike */
  NB__SLOT_TICK,       /* tick(): agent.tick(nb) when present */
  NB__SLOT_FILTER,     /* filter(name): agent.filters[name](spike, nb) */
  NB__SLOT_STOP,       /* stop(): agent.on_stop(nb) when present */
  NB__SLOT_INIT,       /* init(config): agent.init(nb, config) */
  NB__SLOT_DUMP,       /* dump(): nb.state as Lua source */
  NB__SLOT_HASFILTER,  /* has_filter(name): boolean */
  NB__SLOT_TOP = NB__SLOT_HASFILTER
};

typedef struct nb__rec_s {
  unsigned char s[NB_SPIKE_SIZE]; /* bytes: realloc'd arrays are not 64-aligned */
  float weight;
  char *data; /* payload bytes (NUL-terminated copy) */
  size_t len;
} nb__rec_t;

typedef struct nb__reclog_s {
  nb__rec_t *v;
  size_t n, cap;
} nb__reclog_t;

/* The code version of an agent: what nb_rt_reload.c keeps per neuron. */
typedef struct nb__version_s {
  uint32_t counter;  /* 1 at boot, +1 per accepted reload; 0 = no script */
  uint64_t hash;     /* FNV-1a 64 of the source now running */
  char hex[17];      /* hash as 16 lowercase hex digits */
  uint64_t reloads;  /* accepted reloads */
  uint64_t rejected; /* reloads refused (the old version kept running) */
  uint64_t rejected_hash; /* hash of the last refused source */
} nb__version_t;

typedef struct nb__agent_s {
  nb_rt_cell_t cell; /* first: a cell pointer is the agent pointer */
  nb_rt_t *rt;
  nb_neuron_t *neuron;
  lua_State *L; /* NULL for a native recorder neuron */
  char *name, *script;
  char *tags[2][NB_CARD_MAX_TAGS];
  size_t ntags[2];
  uint64_t errors;
  char *errlog; /* reported errors separated by "\n\f\n" */
  size_t errlen, nerr;
  nb__reclog_t rec[2]; /* 0 received, 1 fired */
  uint32_t inject_seq; /* sequence of spikes injected in its name */
  nb__version_t ver;   /* hot reload: code version (nb_rt_reload.c) */
  struct nb__proxy_s *proxy; /* a remote neuron's link end (nb_rt_link.c),
                                NULL for every other neuron */
} nb__agent_t;

struct nb_rt_s {
  nb_cortex_t *cx;
  nb_arena_t *arena;
  nb__agent_t **agents;
  uint32_t n, cap;
  nb_rt_opts_t opts;
  char *name;
  uint64_t tick_ns;
  uint64_t ticks;
  int stopped;  /* nb_rt_stop ran (or began): agents' tick is no longer called */
  /* stats rate: totals at the previous report */
  uint64_t rate_t0_ns, rate_in0;
  uint64_t start_ns;
  struct nb__rtlink_s *link; /* TCP links (nb_rt_link.c), NULL without */
};

/* Returns a new Lua state with the standard libraries and package.path set
 * (the one place states are made: issue 4 adds the allocator here), or NULL
 * with *err set (malloc'd). */
lua_State *nb__state_new(char **err);

/* Hashes a's script file and sets its version before a (re)boot: 1 the
 * first time, +1 when the file differs from the version running (see
 * nb_rt_reload.c); returns nothing. */
void nb__reload_boot(nb__agent_t *a);

/* Starts reloading on SIGHUP and, with watch_files, watching every agent
 * script of rt on uv_loop (a uv_loop_t: one debounced watch per script
 * directory);
 * returns the watch (never NULL; a directory that cannot be watched is
 * reported on stderr), to free with nb__reload_watch_free once the loop
 * closed its handles. */
struct nb__watch_s *nb__reload_watch_start(void *uv_loop, nb_rt_t *rt,
                                           int watch_files);

/* Frees what nb__reload_watch_start allocated (its handles must be closed
 * by then); returns nothing. */
void nb__reload_watch_free(struct nb__watch_s *w);

/* Returns a malloc'd printf-formatted string (never NULL: aborts on OOM). */
char *nb__strf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ---- TCP links (nb_rt_link.c, issue 5) ---- */

/* Ids kept free for proxies made at run time for peers' neurons. */
#define NB__LINK_ID_ROOM 256

/* The callbacks of a remote neuron's proxy (no Lua state). */
extern const nb_agent_ops_t nb__proxy_ops;

/* Reads topology.transport and arena.path from the topology table at idx of
 * C into a new rt->link (nothing when the topology has no transport);
 * returns 0, or -1 with *err set (malloc'd, one problem per line). */
int nb__link_config(nb_rt_t *rt, lua_State *C, int idx, char **err);

/* Makes a's proxy from the normalized remote table on top of C (a url or
 * a cortex, and the remote neuron's name); returns 0, or -1 with *err set
 * (malloc'd). The caller registers a with nb__proxy_ops afterwards. */
int nb__link_proxy_new(nb_rt_t *rt, nb__agent_t *a, lua_State *C, char **err);

/* Frees a proxy; returns nothing. */
void nb__link_proxy_free(struct nb__proxy_s *p);

/* Before each tick: pushes spikes the proxies hold into their links and
 * lets paused links read again; returns nothing. */
void nb__link_pretick(nb_rt_t *rt);

/* Prints the link rows of the statistics (a table, or a ",\"links\":[...]"
 * member for JSON); returns nothing. */
void nb__link_print_stats(nb_rt_t *rt, FILE *f, int json);

/* Frees rt->link (its node must be closed by then); returns nothing. */
void nb__link_free(nb_rt_t *rt);

#endif
