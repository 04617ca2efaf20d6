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
 *     check hooks;
 *   - a watchdog thread that notices an entry running past its limit (the
 *     only protection a JIT state has against an endless compiled loop),
 *     reports the state's name, and quarantines the state;
 *   - an optional sandbox: the agent's chunk runs in its own environment
 *     holding safe libraries only, while trusted runtime code in the same
 *     state keeps the real globals (ffi, require, package...).
 *
 * Errors are nb_err_t codes: NB_EMEMLIMIT and NB_EBUDGET for the two
 * limits, NB_EAGENT for an ordinary Lua error (with its traceback).
 *
 * Threads: a state is driven by one thread at a time. Only the watchdog
 * touches it from another thread, and only through atomics. */
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
  uint64_t watchdog_ns; /* an entry running longer is reported and the
                           state quarantined; 0 = 1 s, NB_LSTATE_WATCHDOG_OFF
                           = not watched; a budgeted state uses at least
                           2 x budget_ns */
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
  uint64_t budget_overruns;   /* entries interrupted by the budget hook */
  uint64_t watchdog_overruns; /* entries the watchdog caught */
  int jit;                    /* JIT engine on for this state */
  int sandbox;
  int quarantined;            /* the watchdog caught an entry: deliver no more */
} nb_lstate_stats_t;

/* Called from the watchdog thread when an entry of state name has run
 * elapsed_ns, past limit_ns; must be thread-safe and must not touch the
 * state (it is still running). */
typedef void (*nb_lstate_report_fn)(const char *name, uint64_t elapsed_ns,
                                    uint64_t limit_ns, void *ud);

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
 * memory cap and the budget; returns 0 with nresults on the stack, or
 * NB_EMEMLIMIT, NB_EBUDGET (interrupted, or caught by the watchdog, or
 * quarantined before the call), NB_EAGENT (a Lua error: message and
 * traceback in err) or NB_ENOMEM (the process itself is out of memory),
 * with the function, arguments and error removed from the stack. err may
 * be NULL. */
int nb_lstate_call(nb_lstate_t *S, int nargs, int nresults, char *err,
                   size_t errlen);

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

/* Pushes the agent environment (the sandbox table, or the globals table
 * when S is not sandboxed) onto S's stack; returns 0. */
int nb_lstate_push_env(nb_lstate_t *S);

/* Returns 1 while S may be entered, 0 once the watchdog quarantined it. */
int nb_lstate_usable(const nb_lstate_t *S);

/* Fills *out with S's counters (call from the thread driving S); returns
 * out. */
nb_lstate_stats_t *nb_lstate_stats(const nb_lstate_t *S,
                                   nb_lstate_stats_t *out);

/* Closes S without the cap (safe after any error, not while an entry of S
 * is running) and frees it; returns the heap bytes the allocator still
 * counted after lua_close, 0 when every block came back (S NULL: 0). */
size_t nb_lstate_close(nb_lstate_t *S);

/* Sets the watchdog's report callback (NULL = one line on stderr); returns
 * the previous one. */
nb_lstate_report_fn nb_lstate_watchdog_report(nb_lstate_report_fn fn,
                                              void *ud);

/* Stops and joins the watchdog thread (it restarts with the next watched
 * state); returns 0. */
int nb_lstate_watchdog_stop(void);

#endif
