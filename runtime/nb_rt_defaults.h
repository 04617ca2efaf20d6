/* nb_rt_defaults.h: defaults and limits of the runtime that the manifest
 * validator (Lua) applies and the runtime (C) relies on. The CONSTANTS
 * block is copied into lua/neuronbus/layout.lua by gen_cdefs.lua: one
 * source of truth for both languages. */
#ifndef NB_RT_DEFAULTS_H
#define NB_RT_DEFAULTS_H

/* BEGIN CONSTANTS */
#define NB_ARENA_DEFAULT 16777216          /* bytes of a topology's arena */
#define NB_RESTART_MAX 5                   /* restarts within the window */
#define NB_RESTART_MAX_LIMIT 10000         /* the most the runtime tracks */
#define NB_RESTART_WINDOW_NS 60000000000   /* 60 s */
#define NB_RESTART_BACKOFF_NS 100000000    /* 100 ms, doubled per fault */
#define NB_RESTART_BACKOFF_MAX_NS 10000000000 /* 10 s */
/* END CONSTANTS */

#endif
