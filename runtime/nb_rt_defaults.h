/* nb_rt_defaults.h: the defaults and limits a manifest shares with the
 * runtime. The manifest validator (lua/neuronbus/manifest/) fills these
 * defaults into the normalized topology and checks these limits; the
 * block below is copied into lua/neuronbus/layout.lua by
 * lua/neuronbus/gen_cdefs.lua, so C and Lua read the same numbers.
 * Values are integer literals, names defined in a CONSTANTS block of an
 * earlier header, or (A << B): what the generator reads. */
#ifndef NB_RT_DEFAULTS_H
#define NB_RT_DEFAULTS_H

#include "nb_axon.h"

/* BEGIN CONSTANTS */
/* topology */
#define NB_TICK_DEFAULT_NS 1000000ull       /* tick = "1ms" */
#define NB_ARENA_DEFAULT (16u << 20)         /* arena.size: 16 MB */
#define NB_AXON_DEFAULT NB_AXON_DEFAULT_CAPACITY /* axon.capacity */
#define NB_AXON_MAX (1u << 24)               /* slots per axon (1 GiB of spikes) */
#define NB_DESCRIPTION_MAX 256u              /* bytes of a neuron's description */

/* fault isolation of a neuron with a script */
#define NB_MEMORY_MIN (256u << 10)           /* the smallest memory cap */
/* memory: the default cap of a neuron's Lua heap (memory = false: none).
 * Agents hold their state, not their traffic (payloads live in the
 * arena): a few MB in practice, tens for big caches; 256 MB leaves room
 * for those and stops a runaway one before it takes the machine. */
#define NB_MEMORY_DEFAULT (256u << 20)
#define NB_WATCHDOG_DEFAULT_NS 1000000000ull /* watchdog = "1s" */
#define NB_RESTART_MAX 5u                    /* restart.max */
#define NB_RESTART_MAX_LIMIT 10000u          /* restarts a window keeps track of */
#define NB_RESTART_WINDOW_NS 60000000000ull  /* restart.window = "60s" */
#define NB_RESTART_BACKOFF_NS 100000000ull   /* restart.backoff = "100ms" */
#define NB_RESTART_BACKOFF_MAX_NS 10000000000ull /* restart.backoff_max = "10s" */

/* tasks (nb:spawn, timer callbacks) of one neuron at once */
#define NB_TASKS_MAX_DEFAULT 1024u           /* max_tasks */
#define NB_TASKS_MAX_LIMIT (1u << 20)

/* payloads a neuron keeps past on_spike (spike:keep) */
#define NB_KEEP_MAX_DEFAULT 1024u            /* keep_max */
#define NB_KEEP_MAX_LIMIT (1u << 20)
#define NB_KEEP_WARN_DEFAULT_NS 60000000000ull /* keep_warn = "60s" */

/* TCP links (listen, peers, accept, max_payload) */
#define NB_LINK_QUEUE_DEFAULT 16384u         /* spikes queued per link */
#define NB_LINK_QUEUE_MAX (1u << 24)
#define NB_LINK_QUEUE_BYTES_DEFAULT (16u << 20)
#define NB_LINK_BACKOFF_MIN_MS 50u           /* first redial delay */
#define NB_LINK_BACKOFF_MAX_MS 5000u         /* longest redial delay */
/* the largest max_payload (its default is NB_FRAME_PAYLOAD_DEFAULT_MAX) */
#define NB_LINK_PAYLOAD_LIMIT (1u << 30)
/* link_limits: what peers may hold of a process (runtime/nb_link.h) */
#define NB_LINK_HANDSHAKE_TIMEOUT_MS 5000u   /* handshake_timeout = "5s" */
#define NB_LINK_MAX_PENDING 64u              /* callers in their handshake */
#define NB_LINK_PENDING_PER_ADDR 16u         /* ... from one IP address */
#define NB_LINK_MAX_LINKS 256u               /* peers that called in */
#define NB_LINK_LINKS_PER_ADDR 64u           /* connections from one address */
#define NB_LINK_PROXIES_PER_PEER 64u         /* local neurons made for one
                                                peer's unannounced senders */
#define NB_LINK_FRAME_TIMEOUT_MS 30000u      /* frame_timeout = "30s" */
#define NB_LINK_KEEPALIVE_MS 10000u          /* keepalive = "10s" */
#define NB_LINK_IDLE_TIMEOUT_MS 30000u       /* idle_timeout = "30s" */
#define NB_LINK_RX_BYTES (64u << 20)         /* rx_buffer = "64MB" */
#define NB_LINK_COUNT_LIMIT (1u << 20)       /* the largest count limit */
#define NB_LINK_SECRET_MIN 16u               /* shortest link secret, bytes */

/* processes (nb.exec) and files (nb.files) */
#define NB_EXEC_OUTPUT_MAX (16u << 20)       /* bytes kept per stream: past it, killed */
#define NB_EXEC_TIMEOUT_DEFAULT_NS 60000000000ull /* timeout = "60s" */
#define NB_EXEC_GRACE_NS 1000000000ull       /* SIGTERM, then SIGKILL this much later */
#define NB_FILES_MAX (64u << 20)             /* bytes of a file read or written */
/* END CONSTANTS */

#endif
