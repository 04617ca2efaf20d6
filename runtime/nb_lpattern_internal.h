/* nb_lpattern_internal.h: string.find, string.match, string.gmatch and
 * string.gsub for contained agent states (runtime/nb_lpattern.c), with
 * LuaJIT's semantics and a step count that lets the state's time limit
 * stop a match in progress.
 *
 * A budgeted or sandboxed state (runtime/nb_lstate.c) gets them in place
 * of LuaJIT's builtins, which run a backtracking match to its end inside
 * C where no hook fires; other states keep the builtins (compiled by the
 * JIT). */
#ifndef NB_LPATTERN_INTERNAL_H
#define NB_LPATTERN_INTERNAL_H

#include <lua.h>

#include "nb_lstate.h"

/* Matcher steps (a pattern item tried, a subject byte scanned) between two
 * checks of the time limit (a clock read each). */
#define NB_LPATTERN_STEPS 4096

/* Bytes a plain find scans between two checks of the time limit. */
#define NB_LPATTERN_PLAIN_CHUNK (1u << 20)

/* Sets find, match, gmatch and gsub in the table at index idx to the
 * step-counted versions; returns 0. In a state not made by nb_lstate_new
 * they behave the same, unlimited (the tests compare them with the
 * builtins that way). */
int nb__lpattern_register(lua_State *L, int idx);

/* The time-limit check of long C work in agent code (nb_lstate.c): returns
 * 0 while the running entry of S is within its limit (or no entry runs),
 * raises the limit's error in L past it (the budget's, NB_EBUDGET for the
 * entry; in a sandboxed state without a budget, the watchdog's). */
int nb__lstate_c_check(lua_State *L, nb_lstate_t *S);

#endif
