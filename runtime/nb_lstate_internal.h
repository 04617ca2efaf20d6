/* nb_lstate_internal.h: what nb_lstate.c shares with its helper files
 * (not installed). */
#ifndef NB_LSTATE_INTERNAL_H
#define NB_LSTATE_INTERNAL_H

/* nb_lstate_jit.c */

/* Returns 1 when the calling allocation was requested by LuaJIT compiled
 * code (a trace), 0 when by the interpreter or C; walks the C stack, so
 * it is for the rare moment a block is about to be refused. */
int nb__lstate_in_trace(void);

/* nb_lstate_traces.c */

#include <lua.h>

/* Starts noting the traces L compiles (a jit.attach handler); returns
 * the handler's registry reference, or LUA_NOREF when LuaJIT has no VM
 * events (the flush is then the whole-engine one). Call before any code
 * runs in L, from a protected call (it allocates). */
int nb__lstate_traces_attach(lua_State *L);

/* Flushes every JIT trace of L: those noted since the last flush one by
 * one (the machine code area is kept for new traces), or the whole engine
 * when the record is incomplete or ref is LUA_NOREF; returns nothing. */
void nb__lstate_traces_flush(lua_State *L, int ref);

#endif
