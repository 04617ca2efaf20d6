/* nb_lstate_internal.h: what nb_lstate.c shares with its helper files
 * (not installed). */
#ifndef NB_LSTATE_INTERNAL_H
#define NB_LSTATE_INTERNAL_H

/* nb_lstate_jit.c */

/* Returns 1 when the calling allocation was requested by LuaJIT compiled
 * code (a trace), 0 when by the interpreter or C; walks the C stack, so
 * it is for the rare moment a block is about to be refused. */
int nb__lstate_in_trace(void);

#endif
