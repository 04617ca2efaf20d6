/* nb_rt_internal.h: what the runtime's files share (not installed).
 *
 * The files form layers, and a file calls only into the layers below it:
 *
 *   nb_rt_util.c, nb_rt_json.c        strings, error lists, Lua state setup,
 *                                     the statistics' JSON values (jansson)
 *   nb_lstate.c, nb_link*.c           one agent state; the TCP link protocol
 *   nb_rt_rec.c, nb_rt_reload.c,      recording, code versions and hot
 *   nb_rt_isolation.c, nb_rt_link.c,  reload, fault policies, links to peers,
 *   nb_rt_keep.c, nb_rt_allow.c,      kept payloads, the sandbox's allowlists,
 *   nb_rt_metrics.c                   handler times and depths (recording)
 *   nb_rt_async.c                     requests, completions, resuming tasks
 *   nb_rt_http.c, nb_rt_exec.c,       the requests' backends: HTTP, processes,
 *   nb_rt_files.c                     files
 *   nb_rt.c                           agents, lifecycle and delivery
 *   nb_rt_topo.c, nb_rt_ffi.c,        building from a manifest (and check),
 *   nb_rt_run.c, nb_rt_views.c,       what Lua calls, the `neuronbus run` loop,
 *   nb_rt_httpd.c, nb_rt_tools.c      the metrics' views and the endpoint,
 *                                     graph, top and plot
 *
 * Where a lower layer must act on an agent (restart it, report an error,
 * tick the runtime), it goes through rt->host, the ops table nb_rt.c hands
 * to every runtime it makes. Each section below names the file that
 * defines it. */
#ifndef NB_RT_INTERNAL_H
#define NB_RT_INTERNAL_H

#include <lua.h>

#include "nb_rt.h"
#include "nb_lstate.h"
#include "nb_link.h"
#include "nb_rt_json.h"

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
  NB__SLOT_RESUME,     /* resume(): one task step; true when it ran one */
  NB__SLOT_TOP = NB__SLOT_RESUME
};

/* Free-text keys of a neuron in the manifest that its card carries and the
 * statistics show (table and JSON), copied as they are: one line a key. */
#define NB__CARD_TEXT_MAP(XX) \
  XX(description)

#define NB__CARD_TEXT_ONE(key) +1
#define NB__CARD_TEXT_NAME(key) #key,
enum { NB__CARD_TEXTS = 0 NB__CARD_TEXT_MAP(NB__CARD_TEXT_ONE) };

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
  uint64_t swap_tick; /* rt->ticks at the last swap, plus one (0: none) */
} nb__version_t;

typedef struct nb__agent_s {
  nb_rt_cell_t cell; /* first: a cell pointer is the agent pointer */
  nb_rt_t *rt;
  nb_neuron_t *neuron;
  lua_State *L; /* NULL for a native recorder neuron */
  nb_lstate_t *S;          /* L's isolation wrapper (nb_lstate.h), NULL
                              without a state */
  struct nb__isol_s *isol; /* fault isolation: limits, policy, restarts,
                              held spikes (nb_rt_isolation.c); NULL for a
                              neuron without a script */
  char *name, *script;
  char *text[NB__CARD_TEXTS]; /* NB__CARD_TEXT_MAP, NULL when not given */
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
  struct nb__keep_s *keep;   /* payloads kept past on_spike (nb_rt_keep.c),
                                NULL until the first keep */
  struct nb__async_s *async; /* requests and completions (nb_rt_async.c),
                                NULL until the first */
  uint32_t max_tasks;        /* max_tasks: live tasks allowed at once */
  uint32_t keep_max;         /* keep_max: keeps allowed at once */
  uint64_t keep_warn_ns;     /* keep_warn: a keep older is reported, 0 never */
  struct nb__allow_s *allow; /* sandbox: the commands it may run and the
                                directories it may touch (nb_rt_allow.c);
                                NULL without sandbox: no restriction */
  struct nb__nmetrics_s *metrics; /* handler time, depths (nb_rt_metrics.c),
                                     NULL with metrics off */
} nb__agent_t;

/* What nb_rt.c does for the lower layers (see the top of this file). */
typedef struct nb__host_s {
  /* Makes a's state and loads its script; 0, or -1 with *err set. */
  int (*boot)(nb__agent_t *a, char **err);
  /* Records an agent error (stderr unless quiet, the log, the count). */
  void (*error)(nb__agent_t *a, const char *where, const char *msg);
  /* Calls the entry at slot with nargs pushed; 0 or the nb_err_t. */
  int (*call)(nb__agent_t *a, int slot, int nargs, int nres,
              const char *where);
  /* Hands count spikes to a's on_spike; 0 or NB_EAGENT. */
  int (*deliver)(nb__agent_t *a, const nb_spike_t *spikes,
                 const float *weights, uint32_t count);
  /* A new agent of rt with the next id (not registered yet), and adding
   * one that the cortex registered (nb__agent_new, nb__agent_add). */
  nb__agent_t *(*agent_new)(nb_rt_t *rt, const char *name);
  void (*agent_add)(nb_rt_t *rt, nb__agent_t *a);
  /* a's state is about to close (restart, stop): its tasks' requests go. */
  void (*state_closing)(nb__agent_t *a);
  /* nb_rt_tick and nb_rt_stop. */
  int64_t (*tick)(nb_rt_t *rt, uint64_t n);
  uint64_t (*stop)(nb_rt_t *rt, uint64_t max_ticks);
} nb__host_t;

struct nb_rt_s {
  const nb__host_t *host;
  nb_cortex_t *cx;
  nb_arena_t *arena;
  nb_arena_writer_t *writer; /* the loop thread's: every agent writes here */
  nb__agent_t **agents;
  uint32_t n, cap;
  nb_rt_opts_t opts;
  char *name;
  uint64_t tick_ns;
  uint64_t ticks;
  /* timed loop (nb_rt_run): overdue ticks skipped when it fell behind by
   * more than its catch-up window, and how late the last tick ran */
  uint64_t ticks_skipped, late_ns;
  int stopped;  /* nb_rt_stop ran (or began): agents' tick is no longer called */
  struct nb__isol_rt_s *isol; /* configs kept for restarts, neurons in
                                 backoff (nb_rt_isolation.c), NULL until used */
  /* stats rate: totals at the previous report */
  uint64_t rate_t0_ns, rate_in0;
  uint64_t start_ns;
  struct nb__rtlink_s *link; /* TCP links (nb_rt_link.c), NULL without */
  struct nb__async_rt_s *async; /* ready agents, requests (nb_rt_async.c) */
  void *loop;   /* the uv_loop_t everything runs on (nb__loop) */
  int own_loop; /* made by nb__loop (else a caller's: closed by it) */
  int looping;  /* nb_rt_run drives the loop (no nested uv_run) */
  struct nb__http_s *http; /* the curl multi (nb_rt_http.c), NULL until the
                              first HTTP request */
  struct nb__team_s *team; /* worker threads (nb_rt_team.c), NULL with one
                              worker */
  uint32_t workers;        /* the cortex's worker count */
  int pin;                 /* pin worker threads to CPUs */
  uint32_t team_left;      /* threads left in an agent call at close */
  uint32_t prune_every;    /* the cortex's (a team prunes in its pause) */
  struct nb__learn_s *learn; /* synapse changes agents asked for
                                (nb_rt_learn.c) */
  struct nb__mrt_s *mrt;   /* metrics intervals (nb_rt_metrics.c), NULL
                              until the first */
  struct nb__httpd_s *httpd; /* the --http endpoint (nb_rt_httpd.c), NULL
                                without */
};

/* ---- nb_rt_team.c ---- */

/* Makes rt's team of `workers` threads (started at the first round) and
 * takes the pause for the calling thread, the loop's; adopt_after_ns 0 is
 * the core's default. Returns 0. */
int nb__team_new(nb_rt_t *rt, uint32_t workers, int pin,
                 uint64_t adopt_after_ns);

/* Runs one round from the pause: every worker ticks `ticks` times
 * (UINT64_MAX: until budget_ns passed; a budget also cuts a counted round
 * short), then the pause is taken back; sets *delivered (when not NULL)
 * to the spikes the round handed to agents; returns worker 0's ticks, or
 * NB_ENOMEM when the threads cannot start. */
int64_t nb__team_round(nb_rt_t *rt, uint64_t ticks, uint64_t budget_ns,
                       uint64_t *delivered);

/* Returns the number of workers (1 without a team). */
uint32_t nb__team_workers(const nb_rt_t *rt);

/* From the pause, before the runtime stops: lets agent calls that other
 * threads are still in (the round ended during them) return, for at most
 * wait_ns, so their neurons' spikes and on_stop run too; logs each neuron
 * still in a call after that (its on_stop is skipped). Returns how many
 * are left. */
uint32_t nb__team_settle(nb_rt_t *rt, uint64_t wait_ns);

/* One worker's counters for the statistics. */
typedef struct nb__team_stat_s {
  uint64_t ticks, delivered, busy_ns;
  uint64_t adopted;  /* ticks run by another thread while it was stuck */
  int stuck;         /* neuron id in a call now, else -1 */
  uint64_t stuck_ns; /* for how long */
} nb__team_stat_t;

/* Fills out for worker w (zeroes for none), in the pause; returns
 * nothing. */
void nb__team_stat(const nb_rt_t *rt, uint32_t w, nb__team_stat_t *out);

/* The workers' lines of the statistics table (nothing with one worker),
 * and their JSON array (one entry with one worker); return nothing, and
 * the array (NULL when out of memory). */
void nb__team_print(const nb_rt_t *rt, FILE *f);
json_t *nb__team_json(const nb_rt_t *rt);

/* Stops and joins the threads; returns how many could not be joined
 * (still in an agent call after a grace time: left running, and rt's
 * cortex and agents must then stay allocated), 0 when the team is gone. */
uint32_t nb__team_free(nb_rt_t *rt);

/* The service lock: what agents call that reaches the loop's state
 * (libuv, requests, links, fault policies) runs under it when rt has a
 * team. NB__SVC_SCOPE(rt) holds it to the end of the enclosing block;
 * nothing when rt has one worker or the caller owns the pause. */
nb_rt_t *nb__svc_enter(nb_rt_t *rt);
void nb__svc_leave(nb_rt_t **rtp);
#define NB__SVC_SCOPE(rt)                                                 \
  nb_rt_t *nb__svc_scope __attribute__((cleanup(nb__svc_leave), unused)) = \
      nb__svc_enter(rt)

/* Returns 1 when a's agent is inside a call on a worker thread (stuck, or
 * caught by the pause): the pause must not enter its state. */
int nb__rt_busy(const nb__agent_t *a);

/* ---- nb_rt.c ---- */

/* Runs up to max ticks within budget_ns (the clock is read after each
 * tick; with workers, one round); returns the ticks run (worker 0's), or
 * a negative nb_err_t. */
int64_t nb__rt_burst(nb_rt_t *rt, uint64_t max, uint64_t budget_ns);

/* nb_rt_stop, but the spikes in flight are delivered for at most ns (and
 * STOP_TICKS_DEFAULT ticks): nb_rt_run's shutdown. Returns the ticks run. */
uint64_t nb__rt_stop_within(nb_rt_t *rt, uint64_t ns);

/* ---- nb_rt_learn.c ---- */

typedef struct nb__learn_s nb__learn_t;

/* Makes rt's queue of synapse changes; returns 0 or NB_ENOMEM. */
int nb__learn_rt_init(nb_rt_t *rt);

/* Frees it (pending changes are dropped); accepts a runtime without. */
void nb__learn_rt_free(nb_rt_t *rt);

/* Lets neuron id change any neuron's synapses (manifest rewire = true), or
 * only its own outgoing ones; returns 0, NB_EINVAL, NB_ENOMEM. */
int nb__learn_set_rewire(nb_rt_t *rt, uint32_t id, int on);

/* Applies the synapse changes agents queued, in order, between ticks on
 * the loop thread (no worker ticks): they take effect from the next tick.
 * Returns nothing; failures are counted as refused. */
void nb__rt_apply_synapse_changes(nb_rt_t *rt);

/* Writes the changes applied so far: connected, disconnected, refused. */
void nb__learn_counts(const nb_rt_t *rt, uint64_t out[3]);

/* ---- nb_rt_util.c ---- */

/* A growing text buffer for error lists. */
typedef struct nb__buf_s {
  char *p;
  size_t n, cap;
} nb__buf_t;

/* Returns a malloc'd printf-formatted string (never NULL: aborts on OOM). */
char *nb__strf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Returns the FNV-1a 64 hash of n bytes at p. */
uint64_t nb__fnv1a(const char *p, size_t n);
/* Writes the ISO 8601 UTC time of now with milliseconds and a space
 * ("2026-12-03T05:50:01.123Z ") to f, the prefix of the runtime's lines on
 * stderr; returns f, so a line is fprintf(nb__log(stderr), ...). */
FILE *nb__log(FILE *f);

/* Returns a malloc'd copy of s (NULL stays NULL; aborts on OOM). */
char *nb__strdup(const char *s);

/* Appends a formatted line (a newline is added); returns nothing. */
void nb__addf(nb__buf_t *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Returns the buffer's text without its last newline (caller frees). */
char *nb__take(nb__buf_t *b);

/* Returns the package.path prefix every state gets (computed once). */
const char *nb__lua_path(void);

/* Returns a new plain Lua state with the standard libraries and
 * package.path set, for the runtime's own work (manifests, never agent
 * code), or NULL with *err set (malloc'd). */
lua_State *nb__state_new(char **err);

/* As nb__state_new, with the allocator f and its ud (NULL: the default). */
lua_State *nb__state_new_with(lua_Alloc f, void *ud, char **err);

/* The names of NB__CARD_TEXT_MAP, in its order. */
extern const char *const nb__card_text_keys[NB__CARD_TEXTS];

/* Adds (retain) or drops one arena reference for each of the n spikes at
 * s that hold one, for copies kept past the handler they were delivered
 * to; returns how many could not be retained (their payload reads stale). */
uint32_t nb__refs_retain(nb_arena_t *a, const nb_spike_t *s, size_t n);
void nb__refs_release(nb_arena_t *a, const nb_spike_t *s, size_t n);

/* Returns rt's libuv loop (a uv_loop_t *): rt->loop, made here on first
 * use when no caller gave one (never NULL: aborts when it cannot). */
void *nb__loop(nb_rt_t *rt);

/* Message handler for lua_pcall: the error text plus a traceback. */
int nb__msgh(lua_State *L);

/* Copies plain data at idx of from onto to's stack; returns 0, or -1 with
 * *err (malloc'd) naming path's first value that cannot be copied. */
int nb__xcopy(lua_State *from, int idx, lua_State *to, const char *path,
              int depth, char **err);

/* ---- nb_rt_topo.c ---- */

/* A manifest state kept to check many manifest sources in one process
 * (the manifest fuzzer): each check is neuronbus check's dry run, with its
 * memory cap but not its time limit (a source is not run in a child). */
typedef struct nb__checker_s nb__checker_t;

/* Returns a checker, or NULL with *err set (malloc'd). */
nb__checker_t *nb__checker_new(char **err);

/* Checks the manifest source src (len bytes) labelled label; returns the
 * problems' text (malloc'd; NULL or empty when there is none) and their
 * count, counted as neuronbus check counts them, in *problems. */
char *nb__checker_run(nb__checker_t *k, const char *label, const char *src,
                      size_t len, int *problems);

/* Loads and validates the manifest file at path (with neuronbus check's
 * time and memory limits, no agent script run) and calls fn(C, ctx) with
 * the normalized topology on top of C's stack; returns what fn returned,
 * or -1 with *err (malloc'd) naming every problem of the manifest. */
int nb__manifest_with(const char *path, int (*fn)(lua_State *C, void *ctx),
                      void *ctx, char **err);

/* Returns the checker's Lua state, where the validator runs (the fuzzer
 * hooks its lines, as coverage a libFuzzer build cannot see in Lua). */
lua_State *nb__checker_state(nb__checker_t *k);

/* Closes the checker's state and frees k; NULL is a no-op. */
void nb__checker_free(nb__checker_t *k);

/* ---- nb_rt_rec.c ---- */

/* The callbacks of a recorder neuron (no state: it keeps what it gets). */
extern const nb_agent_ops_t nb__rec_ops;

/* Appends a spike and a copy of its payload to a record log. */
void nb__record(nb__reclog_t *log, const nb_spike_t *s, float w,
                const void *data, size_t len);

/* Records every spike of a delivered batch as a's received ones. */
void nb__record_batch(nb__agent_t *a, const nb_spike_t *spikes,
                      const float *weights, size_t count);

/* ---- nb_rt_keep.c ---- */

/* Keeps a copy of s (and a reference to its arena payload) in a's keep
 * table; returns the slot with *serial set, or NB_EKEEPS past keep_max,
 * NB_ESTALE for a payload already gone, NB_ENOMEM. */
int nb__keep(nb__agent_t *a, const nb_spike_t *s, uint32_t *serial);

/* Returns the kept spike of a live handle, or NULL. */
const nb_spike_t *nb__keep_spike(const nb__agent_t *a, uint32_t slot,
                                 uint32_t serial);

/* Releases a handle; returns 0, or NB_EINVAL when it is not live. */
int nb__keep_release(nb__agent_t *a, uint32_t slot, uint32_t serial);

/* Returns how many payloads a keeps, and when the oldest was kept (0 when
 * none). */
uint32_t nb__keep_count(const nb__agent_t *a);
uint64_t nb__keep_oldest(const nb__agent_t *a);

/* Reports (stderr, once each) keeps older than their agent's keep_warn;
 * returns nothing. */
void nb__keep_scan(nb_rt_t *rt, uint64_t now);

/* Releases whatever a still keeps and frees the table; returns nothing. */
void nb__keep_free(nb__agent_t *a);

/* ---- nb_rt_async.c ---- */

/* One outstanding request of an agent. A backend embeds it first in its
 * own struct (nb__req_new allocates size bytes), runs it on loop, reports
 * with nb__req_event and frees it itself once its handles are closed:
 * after the final event, or after cancel (no event follows a cancel). */
typedef struct nb__req_s {
  uint32_t id;    /* the agent's request id (what Lua waits on) */
  nb__agent_t *a; /* NULL once final or cancelled */
  void *loop;     /* the runtime's uv_loop_t */
  void (*cancel)(struct nb__req_s *r);
  /* NULL, or told when the task took len bytes of r's events (flow
   * control of a stream): set by the request's maker. */
  void (*consumed)(struct nb__req_s *r, size_t len);
  struct nb__req_s *next, *prev;
} nb__req_t;

/* Registers a request of a (size >= sizeof(nb__req_t), zeroed) with its
 * cancel; returns it, or NULL when the runtime stopped or memory ran out. */
nb__req_t *nb__req_new(nb__agent_t *a, size_t size,
                       void (*cancel)(nb__req_t *r));

/* Queues an event of r for its agent's tasks (the bytes are copied; any
 * pointer may be NULL); final: r is over (nothing more is delivered).
 * Nothing happens for a cancelled request. Returns nothing. */
void nb__req_event(nb__req_t *r, int32_t status, int32_t code,
                   const void *data, size_t len, const void *data2,
                   size_t len2, const char *msg, int final);

/* Resumes the tasks of every ready agent (between ticks); returns nothing. */
void nb__async_dispatch(nb_rt_t *rt);

/* Runs the loop once without waiting and then dispatch (for a runtime
 * ticked without nb_rt_run: the test harness); returns 0. */
int nb__async_pump(nb_rt_t *rt);

/* Returns a's live tasks, and rt's outstanding requests. */
uint32_t nb__async_tasks(const nb__agent_t *a);
uint64_t nb__async_live(const nb_rt_t *rt);

/* Cancels a's requests and drops its queued events (its state closes);
 * frees them (the agent goes); returns nothing. */
void nb__async_agent_close(nb__agent_t *a);
void nb__async_agent_free(nb__agent_t *a);

/* Cancels every request and refuses new ones (the runtime stops); frees
 * it all, closing a loop made here; returns nothing. */
void nb__async_stop(nb_rt_t *rt);
void nb__async_free(nb_rt_t *rt);

/* Has nb__async_stop call fn(rt) after cancelling every request (a
 * backend's own state: the curl multi); registering twice is once.
 * Returns nothing. */
void nb__async_on_stop(nb_rt_t *rt, void (*fn)(nb_rt_t *rt));

/* ---- nb_rt_allow.c ---- */

/* Gives a sandboxed agent a its allowlists from the normalized neuron
 * table at idx of C (exec: commands, files: absolute directories, each
 * resolved with realpath when it exists); returns nothing. */
void nb__allow_read(nb__agent_t *a, lua_State *C, int idx);

/* Frees a->allow; returns nothing. */
void nb__allow_free(nb__agent_t *a);

/* Returns NULL when a may run cmd (as given to nb.exec), else a malloc'd
 * message naming cmd and the key. */
char *nb__allow_cmd(const nb__agent_t *a, const char *cmd);

/* Returns NULL when a may touch the resolved absolute path real (what,
 * e.g. "nb.files.read", and path, as the agent gave it, name it in the
 * message), else a malloc'd message naming path and the key. */
char *nb__allow_path(const nb__agent_t *a, const char *what, const char *path,
                     const char *real);

/* ---- nb_rt_http.c (same layer as nb_rt_async.c) ---- */

/* After every request was cancelled (nb__async_stop): cleans the curl multi
 * up and closes its loop handles (the state frees itself once they are
 * closed); returns nothing. */
void nb__http_stop(nb_rt_t *rt);

/* ---- nb_rt_reload.c ---- */

/* Hashes a's script file and sets its version before a (re)boot: 1 the
 * first time, +1 when the file differs from the version running; returns
 * nothing. */
void nb__reload_boot(nb__agent_t *a);

/* Starts reloading on SIGHUP and, with watch_files, watching every agent
 * script of rt on uv_loop (a uv_loop_t: one debounced watch per script
 * directory); returns the watch (never NULL; a directory that cannot be
 * watched is reported on stderr), to free with nb__reload_watch_free once
 * the loop closed its handles. */
struct nb__watch_s *nb__reload_watch_start(void *uv_loop, nb_rt_t *rt,
                                           int watch_files);

/* Frees what nb__reload_watch_start allocated (its handles must be closed
 * by then); returns nothing. */
void nb__reload_watch_free(struct nb__watch_s *w);

/* ---- nb_rt_isolation.c ---- */

/* A neuron's isolation keys, as the manifest gave them. */
typedef struct nb__isol_conf_s {
  nb_lstate_opts_t o;    /* memory, budget, jit, watchdog, sandbox,
                            require (name is set per state) */
  int policy_stop;       /* policy = "stop" (else restart) */
  int error_is_fault;    /* on_error = "policy" */
  uint32_t restart_max;
  uint64_t window_ns, backoff_ns, backoff_max_ns;
} nb__isol_conf_t;

/* Returns the isolation of a neuron whose manifest set no key. */
nb__isol_conf_t nb__isol_conf_default(void);

/* Gives a its isolation from conf (copied); returns nothing. */
void nb__isol_new(nb__agent_t *a, const nb__isol_conf_t *conf);

/* Creates a's state per a->isol (defaults without it) with package.path
 * set, into a->S and a->L; returns 0, or -1 with *err set (malloc'd). */
int nb__isol_state_new(nb__agent_t *a, char **err);

/* Keeps a copy of the config at idx of C for the init of a restart;
 * returns nothing. */
void nb__isol_keep_config(nb__agent_t *a, lua_State *C, int idx);

/* After a failed entry of a: applies the policy when the failure is a
 * fault (memory, budget, watchdog, or an error with on_error = "policy");
 * returns 1 when it did (a is no longer running), 0 when a goes on. */
int nb__isol_fault(nb__agent_t *a, int code, const char *where);

/* Returns the number of neurons waiting out a backoff before a restart. */
uint32_t nb__isol_waiting(const nb_rt_t *rt);

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

/* Before each tick: restarts the neurons whose backoff ended; returns
 * nothing. */
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
 * of the totals (added to obj, nb_rt_json.h). */
const char *nb__isol_head(void);
const char *nb__isol_cells(const nb_rt_t *rt, uint32_t id, char *buf,
                           size_t n);
const char *nb__isol_total_cells(const nb_rt_t *rt, char *buf, size_t n);
void nb__isol_json(const nb_rt_t *rt, uint32_t id, json_t *obj);
void nb__isol_json_totals(const nb_rt_t *rt, json_t *obj);

/* `neuronbus run`: installs the watchdog report (printed; exit status 3
 * past a neuron's watchdog_exit) and, in front of libuv's SIGINT/SIGTERM
 * handlers (call begin after starting them), a thread that acts on a
 * signal while an entry is stuck: said at once, a second one exits with
 * 128 + the signal (begin); removes both (end); return nothing. */
void nb__isol_run_begin(nb_rt_t *rt);
void nb__isol_run_end(nb_rt_t *rt);

/* ---- nb_rt_link.c ---- */

/* Ids kept free for proxies made at run time for peers' neurons. */
#define NB__LINK_ID_ROOM 256

/* One peer to dial. */
typedef struct nb__peer_conf_s {
  const char *url;
  nb_link_opts_t o;
} nb__peer_conf_t;

/* The manifest's nats section (strings are copied; url NULL: none). */
typedef struct nb__nats_conf_s {
  char *url, *cluster, *user, *password, *token, *nkey_public, *nkey_seed,
       *creds, *tls_ca, *tls_cert, *tls_key;
  uint32_t window, window_bytes, batch_bytes, resend_ms, announce_ms,
           connect_ms;
} nb__nats_conf_t;

/* Copies src into dst (strings duplicated); returns nothing. */
void nb__link_nats_conf_copy(nb__nats_conf_t *dst, const nb__nats_conf_t *src);

/* Frees the strings of c (a password wiped first); returns nothing. */
void nb__link_nats_conf_free(nb__nats_conf_t *c);

/* The manifest's transport keys (strings are copied). */
typedef struct nb__link_conf_s {
  const char *listen;     /* NULL: do not listen */
  const char *arena_path; /* a file-backed arena peers on this host share */
  uint32_t max_payload;
  nb_link_opts_t accept;
  const nb__peer_conf_t *peers; /* their opts may carry a secret */
  size_t npeers;
  nb_link_limits_t limits;   /* link_limits (0 fields: the defaults) */
  uint32_t hello_timeout_ms; /* link_limits.handshake_timeout, 0 = default */
  uint32_t proxies_per_peer; /* link_limits.proxies_per_peer, 0 = default */
  const char *secret;     /* the cluster secret (bytes), NULL: none */
  size_t secret_len;
  int encrypt;            /* ask every peer for encryption */
  const nb_link_allow_t *allow; /* callers let in with their own secret */
  size_t nallow;
  nb__nats_conf_t nats;   /* the nats section (url NULL: none) */
} nb__link_conf_t;

/* The callbacks of a remote neuron's proxy (no Lua state). */
extern const nb_agent_ops_t nb__proxy_ops;

/* Gives rt links made from conf; returns nothing. */
void nb__link_configure(nb_rt_t *rt, const nb__link_conf_t *conf);

/* Makes a the proxy of the remote neuron called neuron, reached through
 * url or the peer whose cortex is called cortex (one of the two); returns
 * nothing. The caller registers a with nb__proxy_ops afterwards. */
void nb__link_proxy_new(nb_rt_t *rt, nb__agent_t *a, const char *url,
                        const char *cortex, const char *neuron);

/* Returns 1 when neuron id stands for a neuron of a NATS peer that is
 * gone (its card went stale or it left): discovery leaves it out; else 0. */
int nb__link_hidden(const nb_rt_t *rt, uint32_t id);

/* Frees a proxy; returns nothing. */
void nb__link_proxy_free(struct nb__proxy_s *p);

/* Before each tick: pushes spikes the proxies hold into their links and
 * lets paused links read again; returns nothing. */
void nb__link_pretick(nb_rt_t *rt);

/* Prints the link rows of the statistics table to f; returns nothing. */
void nb__link_print_stats(nb_rt_t *rt, FILE *f);

/* Adds the links' members of the statistics' JSON to obj:
 * "pending_at_close" once the links closed, and the "links" array; returns
 * nothing. */
void nb__link_json(nb_rt_t *rt, json_t *obj);

/* Frees rt->link (its node must be closed by then); returns nothing. */
void nb__link_free(nb_rt_t *rt);

/* ---- nb_rt.c ---- */

/* The host ops of every runtime (see the top of this file). */
extern const nb__host_t nb__host;

/* The callbacks of a neuron run by a Lua agent. */
extern const nb_agent_ops_t nb__lua_ops;

/* Returns a new runtime with opts (copied; NULL = defaults), no cortex
 * yet. */
nb_rt_t *nb__rt_new(const nb_rt_opts_t *opts);

/* Returns a new agent of rt with the next id, not registered yet. */
nb__agent_t *nb__agent_new(nb_rt_t *rt, const char *name);

/* Frees an agent and closes its state; returns nothing. */
void nb__agent_free(nb__agent_t *a);

/* Appends a registered agent to rt->agents; returns nothing. */
void nb__agent_add(nb_rt_t *rt, nb__agent_t *a);

/* Pushes neuronbus.agent in S, loaded as host work (outside the agent's
 * cap and budget); returns 0, or the nb_lstate_cpcall code with the reason
 * in msg. */
int nb__push_agent_module(nb_lstate_t *S, char *msg, size_t n);

/* Returns 1 when agent a exports filters[name] as a function, else 0. */
int nb__has_filter(nb__agent_t *a, const char *name);

#endif
