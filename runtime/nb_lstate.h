/* nb_lstate.h: isolation primitives for agent states.
 *
 * One nb_lstate_t wraps one lua_State made by lua_newstate with a private
 * allocator, and gives it:
 *   - a memory cap counted by that allocator (current and peak bytes); the
 *     cap applies while agent code runs (inside nb_lstate_call and
 *     nb_lstate_load_agent), never to the host's own work on the state, so
 *     a host call cannot hit it;
 *   - a time budget per entry, enforced by a count hook; a state with a
 *     budget always runs with the JIT off, because compiled loops never
 *     check hooks. Pattern matching runs in C where no hook fires, so a
 *     budgeted or sandboxed state gets string.find, match, gmatch and
 *     gsub that count their steps and check the entry's limit
 *     (runtime/nb_lpattern.c): the budget, or in a sandboxed state
 *     without one the watchdog limit (both NB_EBUDGET);
 *   - a watchdog thread that notices an entry running past its limit (the
 *     only protection a JIT state has against an endless compiled loop)
 *     and reports it: the state's name, the entry, how long it has run and
 *     whether it can be interrupted; again at 2, 4, 8... times the limit,
 *     once past opts.exit_ns, and when it returns. It never interrupts or
 *     fails the entry: one that returns returns its results;
 *   - an optional sandbox: the agent's chunk runs in its own environment
 *     holding safe libraries only, while trusted runtime code in the same
 *     state keeps the real globals (ffi, require, package...).
 *
 * Errors are nb_err_t codes: NB_EMEMLIMIT and NB_EBUDGET for the two
 * limits, NB_EAGENT for an ordinary Lua error (with its traceback).
 *
 * Threads: a state is driven by one thread at a time. Only the watchdog
 * touches it from another thread: the running entry through atomics, its
 * own bookkeeping under its report lock. */
#ifndef NB_LSTATE_H
#define NB_LSTATE_H

#include <stddef.h>
#include <stdint.h>

#include <lua.h>

#include "nb_err.h"
#include "nb_rt_defaults.h"

typedef struct nb_lstate_s nb_lstate_t;

/* Instructions between two budget checks (a clock read each). */
#define NB_LSTATE_HOOK_COUNT 1000
/* Watchdog limit of a state whose opts.watchdog_ns is 0. */
#define NB_LSTATE_WATCHDOG_DEFAULT_NS NB_WATCHDOG_DEFAULT_NS
/* opts.watchdog_ns value that keeps the state away from the watchdog. */
#define NB_LSTATE_WATCHDOG_OFF UINT64_MAX

typedef struct nb_lstate_opts_s {
  size_t memory_limit;  /* bytes the Lua heap may hold, 0 = no cap */
  int jit;              /* 1 = JIT on; ignored (off) when budget_ns > 0 */
  uint64_t budget_ns;   /* per entry, enforced by a count hook; 0 = none */
  uint64_t watchdog_ns; /* an entry running longer is reported (it goes
                           on); 0 = 1 s, NB_LSTATE_WATCHDOG_OFF = not
                           watched; a budgeted state uses at least
                           2 x budget_ns */
  uint64_t exit_ns;     /* an entry running this long gets one more report,
                           NB_LSTATE_WATCH_EXIT (nb_rt_run exits the process
                           on it); 0 = none; at least the watchdog limit;
                           ignored when the state is not watched */
  int sandbox;          /* 1 = agent chunks get the sandbox environment */
  const char *name;     /* neuron name for messages (copied) */
  /* Sandbox only: NULL-terminated exact module names an agent may
   * require (loaded by the real require with the real globals, so list
   * only modules safe to hand to an agent). NULL = none. */
  const char *const *require_allow;
} nb_lstate_opts_t;

typedef struct nb_lstate_stats_s {
  size_t bytes;               /* Lua heap now */
  size_t peak;                /* highest bytes ever */
  size_t limit;               /* the cap, 0 = none */
  uint64_t entries;           /* outermost nb_lstate_call entries */
  uint64_t mem_errors;        /* entries that ended in NB_EMEMLIMIT */
  uint64_t refused;           /* allocations refused by the cap */
  uint64_t budget_overruns;   /* entries interrupted by the budget (or a
                                 sandbox's pattern limit) */
  uint64_t watchdog_overruns; /* entries that ran past the watchdog limit */
  int jit;                    /* JIT engine on for this state */
  int sandbox;
} nb_lstate_stats_t;

/* What the watchdog reports about one entry, in this order. */
enum {
  NB_LSTATE_WATCH_OVER = 1, /* it has run past the watchdog limit */
  NB_LSTATE_WATCH_STILL,    /* still running, at 2, 4, 8... times the limit */
  NB_LSTATE_WATCH_EXIT,     /* still running past opts.exit_ns (once) */
  NB_LSTATE_WATCH_RETURNED  /* a reported entry returned (elapsed: in all) */
};

typedef struct nb_lstate_watch_s {
  int kind;             /* NB_LSTATE_WATCH_* */
  const char *name;     /* the state's (neuron's) name */
  const char *entry;    /* what the caller of nb_lstate_call_in named it:
                           "on_spike", "tick", "init", "filters.x", "task
                           x"...; "an entry" when unnamed */
  uint64_t elapsed_ns;  /* how long it has run (RETURNED: in all) */
  uint64_t limit_ns;    /* the state's watchdog limit */
  uint64_t exit_ns;     /* the state's exit_ns, 0 = none */
  uint64_t budget_ns;   /* the state's budget, 0 = none */
  int jit;              /* the JIT engine is on for the state */
  uint64_t token;       /* the same for every report of one entry, unique
                           in the process */
} nb_lstate_watch_t;

/* Called with each report, one at a time and in order: OVER, STILL and
 * EXIT from the watchdog thread while the entry runs (the callback must
 * not touch the state nor close any state), RETURNED from the thread
 * driving the state just before nb_lstate_call returns. */
typedef void (*nb_lstate_report_fn)(const nb_lstate_watch_t *w, void *ud);

/* Creates a state per o (NULL = no cap, JIT on, no budget, no sandbox)
 * with the standard libraries open; returns 0 and sets *out, or NB_ENOMEM
 * or NB_EINVAL. */
int nb_lstate_new(nb_lstate_t **out, const nb_lstate_opts_t *o);

/* Returns the lua_State of S. */
lua_State *nb_lstate_L(nb_lstate_t *S);

/* Returns the nb_lstate_t that owns L (any thread of it), or NULL when L
 * was not made by nb_lstate_new. */
nb_lstate_t *nb_lstate_from_L(lua_State *L);

/* Returns the name S was created with ("?" when none). */
const char *nb_lstate_name(const nb_lstate_t *S);

/* The protected entry into agent code, like lua_pcall(L, nargs, nresults)
 * with the function and its arguments on top of S's stack, under the
 * memory cap, the budget and the watchdog; returns 0 with nresults on the
 * stack, or NB_EMEMLIMIT, NB_EBUDGET (interrupted by the budget, or a
 * sandboxed state's pattern matching stopped at the watchdog limit),
 * NB_EAGENT (a Lua error: message and traceback in err) or NB_ENOMEM (the
 * process itself is out of memory), with the function, arguments and
 * error removed from the stack. err may be NULL. A long entry is only
 * reported: it is never failed for its length. */
int nb_lstate_call(nb_lstate_t *S, int nargs, int nresults, char *err,
                   size_t errlen);

/* nb_lstate_call naming the entry for the watchdog's reports ("on_spike",
 * "tick", "task fetch"...; copied, the first 47 bytes; NULL = "an entry").
 * Only an outermost entry's name is used. */
int nb_lstate_call_in(nb_lstate_t *S, const char *entry, int nargs,
                      int nresults, char *err, size_t errlen);

/* Runs fn(L) with ud as its light userdata argument, protected by
 * lua_cpcall and without the cap (host work on the state); returns 0,
 * NB_ENOMEM, or NB_EAGENT with fn's error in err. */
int nb_lstate_cpcall(nb_lstate_t *S, lua_CFunction fn, void *ud, char *err,
                     size_t errlen);

/* Loads an agent chunk (a file path, or source text when is_source) as
 * text only and with the sandbox environment when S is sandboxed, runs it
 * through nb_lstate_call, and leaves its one returned value on the stack;
 * returns 0 or the nb_lstate_call codes, NB_EIO (file unreadable) or
 * NB_EAGENT (syntax error, bytecode refused), with err set. */
int nb_lstate_load_agent(nb_lstate_t *S, const char *path_or_source,
                         int is_source, char *err, size_t errlen);

/* How far the Lua heap may grow while the collector is held (see
 * nb_lstate_gc_hold) before it runs again anyway. */
#define NB_LSTATE_GC_HOLD_MAX (1u << 20)

/* Holds S's collector for a burst of the host's own work in S (a hot
 * reload's swap), so its allocations pay no collector steps, until
 * nb_lstate_gc_release or until the heap grew by NB_LSTATE_GC_HOLD_MAX
 * (agent code run in the burst cannot grow it without bound); from the
 * thread driving S, between entries. Returns nothing. */
void nb_lstate_gc_hold(nb_lstate_t *S);

/* Lets S's collector run again, from its next allocation, if it is
 * still held; returns nothing. */
void nb_lstate_gc_release(nb_lstate_t *S);

/* Flushes every JIT trace of S (between entries, from the thread driving
 * S): a trace keeps the prototypes it was recorded from alive. Cheaper
 * than luaJIT_setmode's whole-engine flush, which also frees the machine
 * code; returns nothing. */
void nb_lstate_flush_jit(nb_lstate_t *S);

/* Loads bytecode the host compiled from agent text (a hot reload's new
 * version: never bytecode an agent handed in, which is refused as text
 * only) named chunkname, under S's memory cap like agent code, and pushes
 * the chunk; returns 0, or NB_EMEMLIMIT / NB_ENOMEM / NB_EAGENT with err
 * set and nothing pushed. */
int nb_lstate_load_compiled(nb_lstate_t *S, const char *bc, size_t len,
                            const char *chunkname, char *err, size_t errlen);

/* Pushes the agent environment (the sandbox table, or the globals table
 * when S is not sandboxed) onto S's stack; returns 0. */
int nb_lstate_push_env(nb_lstate_t *S);

/* Fills *out with S's counters (call from the thread driving S); returns
 * out. */
nb_lstate_stats_t *nb_lstate_stats(const nb_lstate_t *S,
                                   nb_lstate_stats_t *out);

/* Closes S without the cap (safe after any error, not while an entry of S
 * is running) and frees it; returns the heap bytes the allocator still
 * counted after lua_close, 0 when every block came back (S NULL: 0). */
size_t nb_lstate_close(nb_lstate_t *S);

/* Sets the watchdog's report callback (NULL = nb_lstate_watch_text on
 * stderr); returns the previous one. */
nb_lstate_report_fn nb_lstate_watchdog_report(nb_lstate_report_fn fn,
                                              void *ud);

/* Writes the report w as one line (no newline) into buf: the neuron, the
 * entry, how long it has run, and what is known (JIT on or off, whether
 * the entry can be interrupted); returns buf. */
const char *nb_lstate_watch_text(const nb_lstate_watch_t *w, char *buf,
                                 size_t len);

/* Stops and joins the watchdog thread (it restarts with the next watched
 * state); returns 0. */
int nb_lstate_watchdog_stop(void);

#endif
