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
  struct nb_lstate_s *S;   /* L's isolation wrapper (nb_lstate.h), NULL
                              without a state */
  struct nb__isol_s *isol; /* fault isolation: limits, policy, restarts,
                              held spikes (nb_rt_isolation.c); NULL for a
                              neuron without a script */
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
  struct nb__isol_rt_s *isol; /* configs kept for restarts, neurons in
                                 backoff (nb_rt_isolation.c), NULL until used */
  /* stats rate: totals at the previous report */
  uint64_t rate_t0_ns, rate_in0;
  uint64_t start_ns;
  struct nb__rtlink_s *link; /* TCP links (nb_rt_link.c), NULL without */
};

/* Returns a new plain Lua state with the standard libraries and
 * package.path set, for the runtime's own work (manifests, never agent
 * code: agent states come from nb__isol_state_new), or NULL with *err set
 * (malloc'd). */
lua_State *nb__state_new(char **err);

/* ---- shared with nb_rt_isolation.c (nb_rt.c) ---- */

/* Returns the package.path prefix every state gets (computed once). */
const char *nb__lua_path(void);

/* Copies plain data at idx of from onto to's stack; returns 0, or -1 with
 * *err (malloc'd) naming path's first value that cannot be copied. */
int nb__xcopy(lua_State *from, int idx, lua_State *to, const char *path,
              int depth, char **err);

/* Records an agent error (stderr unless quiet, the log, the count);
 * returns nothing. */
void nb__agent_error(nb__agent_t *a, const char *where, const char *msg);

/* Makes a's state, loads its script through neuronbus.agent's boot and
 * keeps the entry points in their slots; returns 0, or -1 with *err set. */
int nb__agent_boot(nb__agent_t *a, char **err);

/* Calls the entry at slot with nargs arguments pushed, through
 * nb_lstate_call, reporting a failure as the agent's error in where and
 * applying the isolation policy; returns 0 (nres results left) or the
 * nb_err_t of the failure. */
int nb__call(nb__agent_t *a, int slot, int nargs, int nres, const char *where);

/* Hands count spikes to a's on_spike in one entry, resuming after an
 * ordinary error; a fault keeps (or counts) the rest; returns 0 or
 * NB_EAGENT when any call failed. */
int nb__deliver(nb__agent_t *a, const nb_spike_t *spikes,
                const float *weights, uint32_t count);

/* ---- fault isolation (nb_rt_isolation.c, issue 4) ---- */

/* Reads the isolation keys of the normalized neuron table at idx of C into
 * a new a->isol; returns 0, or -1 with *err set (malloc'd). */
int nb__isol_parse(nb__agent_t *a, lua_State *C, int idx, char **err);

/* Creates a's state per a->isol (defaults without it) with package.path
 * set, into a->S and a->L; returns 0, or -1 with *err set (malloc'd). */
int nb__isol_state_new(nb__agent_t *a, char **err);

/* Returns a scratch state made with the isolation keys of the neuron
 * table at idx of C (neuronbus check probes scripts in it), with its
 * wrapper in *S (close with nb_lstate_close), or NULL with *err set. */
lua_State *nb__isol_probe_state(lua_State *C, int idx, const char *name,
                                struct nb_lstate_s **S, char **err);

/* Keeps a copy of the config at idx of C for the init of a restart;
 * returns nothing. */
void nb__isol_keep_config(nb__agent_t *a, lua_State *C, int idx);

/* After a failed entry of a: applies the policy when the failure is a
 * fault (memory, budget, watchdog, or an error with on_error = "policy");
 * returns 1 when it did (a is no longer running), 0 when a goes on. */
int nb__isol_fault(nb__agent_t *a, int code, const char *where);

/* Returns 1 when a has a state and is not waiting or stopped. */
int nb__isol_running(const nb__agent_t *a);

/* Returns 1 when a has a state that may still be entered (a custom filter
 * of a neuron in backoff runs in its old state). */
int nb__isol_has_state(const nb__agent_t *a);

/* Takes the n spikes of a batch a fault cut short: kept for the restarted
 * state, or counted as a's dead letters when it is stopped; returns
 * nothing. */
void nb__isol_cut(nb__agent_t *a, const nb_spike_t *spikes,
                  const float *weights, uint32_t n);

/* Before each tick: holds neurons in backoff and restarts those whose
 * backoff ended; returns nothing. */
void nb__isol_tick(nb_rt_t *rt);

/* At nb_rt_stop: restarts every neuron still in backoff at once (a fault
 * while stopping stops it); returns nothing. */
void nb__isol_stopping(nb_rt_t *rt);

/* Closes a's state and frees a->isol; returns nothing. */
void nb__isol_free(nb__agent_t *a);

/* Frees rt->isol; returns nothing. */
void nb__isol_rt_free(nb_rt_t *rt);

/* Statistics: the table's column heads, one neuron's cells, the total
 * row's cells (into buf, returned), and the JSON members of a neuron and
 * of the totals (written to f). */
const char *nb__isol_head(void);
const char *nb__isol_cells(const nb_rt_t *rt, uint32_t id, char *buf,
                           size_t n);
const char *nb__isol_total_cells(const nb_rt_t *rt, char *buf, size_t n);
void nb__isol_json(const nb_rt_t *rt, uint32_t id, FILE *f);
void nb__isol_json_totals(const nb_rt_t *rt, FILE *f);

/* `neuronbus run`: installs the watchdog report that names the neuron and
 * exits the process when the loop thread never comes back from the entry
 * (begin), and removes it (end); return nothing. */
void nb__isol_run_begin(nb_rt_t *rt);
void nb__isol_run_end(nb_rt_t *rt);

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
