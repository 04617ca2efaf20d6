/* nb_rt_ffi.h: the runtime's surface as Lua sees it. The block between
 * "BEGIN FFI" and "END FFI" is copied verbatim (comments stripped) into the
 * Lua cdefs by lua/neuronbus/gen_cdefs.lua: the cell and the calls agent
 * states make (nb_rt_ffi.c), and the calls the busted harness makes
 * (lua/neuronbus/testing.lua). Plain C declarations only: no macros, no
 * includes inside the block.
 *
 * Threads: a runtime is driven by one thread, like its cortex. */
#ifndef NB_RT_FFI_H
#define NB_RT_FFI_H

#include <stddef.h>
#include <stdint.h>

#include "neuronbus.h"

/* BEGIN FFI (lua/neuronbus/gen_cdefs.lua copies the declarations below) */

/* One per neuron state, created by the runtime and handed to the state once
 * at boot as cdata, so the per-tick handover is two stores from C and field
 * reads from Lua: no lightuserdata cast on the hot path. */
typedef struct nb_rt_cell_s {
  const nb_spike_t *spikes;  /* this tick's batch (valid during dispatch) */
  const float *weights;      /* weights[i] belongs to spikes[i] */
  uint32_t count;            /* spikes in the batch */
  uint32_t pos;              /* next spike to hand out: resume after error */
  const nb_spike_t *fspike;  /* the spike a custom filter is asked about */
  void *neuron;              /* nb_neuron_t of this state */
  void *rt;                  /* the nb_rt_t that owns it */
  uint32_t id;               /* neuron id */
  uint32_t has_tick;         /* the agent has a tick function: set by
                                neuronbus.agent after every entry that can
                                change it, so a firing neuron without one
                                costs no entry into its state */
} nb_rt_cell_t;

typedef struct nb_rt_layout_s {
  uint32_t size, align;
  uint32_t timestamp_ns, sequence, source, target, meta, priority, payload;
  uint32_t payload_size;
  uint32_t ref_size, ref_offset, ref_len, ref_segment, ref_gen, ref_reserved;
} nb_rt_layout_t;

/* Fills *out with sizeof/alignof/offsetof of nb_spike_t and nb_arena_ref_t
 * as the C compiler laid them out; returns out. */
nb_rt_layout_t *nb_rt_layout(nb_rt_layout_t *out);

/* Fires one spike from the cell's neuron to target (an id, or 0xFFFF for
 * broadcast) with kind 0..2, priority 0..255 and len payload bytes (over 46
 * go to the arena); returns 0 or a negative nb_err_t (NB_EFULL when the
 * axon is full: nothing was sent). */
int nb_rt_fire(nb_rt_cell_t *cell, uint32_t target, int kind, int priority,
               const char *data, size_t len);

/* Fires one spike from the cell's neuron to every neuron in the region
 * subtree path: each local one through the cell's axon (as nb_rt_fire,
 * stopping at the first refusal), and, when the runtime is on NATS, one
 * publish on the region's subject that every other runtime with neurons
 * in the subtree receives (at most once). Returns the local neurons fired
 * to (>= 0), or a negative nb_err_t (NB_EFULL: the axon filled; NB_EIO: the
 * publish failed). */
int nb_rt_fire_region(nb_rt_cell_t *cell, const char *path, const char *data,
                      size_t len);

/* Points *data and *len at a spike's payload, inline or in the arena of the
 * cell's runtime (cell may be NULL for inline payloads); returns 0,
 * NB_ESTALE, NB_EBOUNDS, or NB_EINVAL for a reference without an arena. */
int nb_rt_payload(const nb_rt_cell_t *cell, const nb_spike_t *s,
                  const char **data, size_t *len);

/* Returns the id of the neuron called name, or -1 when there is none. */
int nb_rt_lookup(const nb_rt_cell_t *cell, const char *name);

/* Writes up to max ids of neurons with capability (or, with region != 0,
 * in the region subtree named by what) into out; returns the total found. */
size_t nb_rt_find(const nb_rt_cell_t *cell, int region, const char *what,
                  uint16_t *out, size_t max);

/* Returns the name of neuron id, or NULL when there is none. */
const char *nb_rt_card_name(const nb_rt_cell_t *cell, uint32_t id);

/* Returns tag i of neuron id's capabilities (which 0) or regions (which 1),
 * or NULL past the last one. */
const char *nb_rt_card_tag(const nb_rt_cell_t *cell, uint32_t id, int which,
                           size_t i);

/* Returns the code version counter in neuron id's card (1 at boot, +1 per
 * accepted hot reload; 0 for a neuron without a script or no such id). */
uint32_t nb_rt_card_version(const nb_rt_cell_t *cell, uint32_t id);

/* Returns the FNV-1a 64 hash of the source neuron id runs, as 16 hex
 * digits ("" for a neuron without a script or no such id). */
const char *nb_rt_card_hash(const nb_rt_cell_t *cell, uint32_t id);

/* A payload an agent keeps past on_spike (spike:keep()): the slot in its
 * keep table and a serial that makes a released handle stale. */
typedef struct nb_rt_kept_s {
  uint32_t slot, serial; /* serial 0 = released */
} nb_rt_kept_t;

/* Keeps s (a copy, and a reference to its arena payload) for the cell's
 * agent; returns 0 with *out set, or NB_EKEEPS past the agent's keep_max,
 * NB_ESTALE when its payload is already gone, NB_EINVAL, NB_ENOMEM. */
int nb_rt_keep(nb_rt_cell_t *cell, const nb_spike_t *s, nb_rt_kept_t *out);

/* Returns the kept spike of a live handle (its payload readable), or NULL
 * once released. */
const nb_spike_t *nb_rt_kept_spike(const nb_rt_cell_t *cell,
                                   const nb_rt_kept_t *k);

/* Releases a kept payload and zeroes k's serial; returns 0, or NB_EINVAL
 * when it was released already. */
int nb_rt_kept_release(nb_rt_cell_t *cell, nb_rt_kept_t *k);

/* Checks, after the bytes of s's arena payload were copied, that its
 * segment was not reused meanwhile (a spike:copy() holds no reference);
 * returns 0, or NB_ESTALE. */
int nb_rt_payload_valid(const nb_rt_cell_t *cell, const nb_spike_t *s);

/* A completion for an agent's task (nb_rt_next_event). */
typedef struct nb_rt_event_s {
  uint32_t req;      /* the request it answers */
  int32_t status;    /* the request's: HTTP status, exit status, 0 */
  int32_t code;      /* 0, or a negative nb_err_t when the request failed */
  uint32_t final;    /* 1: the request is over (its last event) */
  const char *data;  /* body, chunk, stdout, file bytes; NULL = none */
  size_t len;
  const char *data2; /* headers, stderr; NULL = none */
  size_t len2;
  const char *msg;   /* why it failed (NUL-terminated), or NULL */
} nb_rt_event_t;

/* Counts a task of the cell's agent in (begin: 0, or NB_ELIMIT past its
 * max_tasks, NB_ECLOSED once the runtime stops) and out (end). */
int nb_rt_task_begin(nb_rt_cell_t *cell);
void nb_rt_task_end(nb_rt_cell_t *cell);

/* Asks for a resume entry between ticks (a task was spawned). */
void nb_rt_wake(nb_rt_cell_t *cell);

/* Starts a timer of the cell's agent: an event after after_ns, then every
 * repeat_ns when it is not 0 (rounded up to milliseconds); returns its
 * request id, or a negative nb_err_t. */
int64_t nb_rt_timer(nb_rt_cell_t *cell, uint64_t after_ns,
                    uint64_t repeat_ns);

/* An HTTP request of a task (nb.http, runtime/nb_rt_http.c). */
typedef struct nb_rt_http_req_s {
  const char *method;     /* "GET", "POST", ... */
  const char *url;        /* http:// or https:// */
  const char *headers;    /* "Name: value" lines separated by '\n', or NULL */
  size_t headers_len;
  const char *body;       /* NULL = no body */
  size_t body_len;
  uint64_t timeout_ns;    /* the whole transfer, 0 = no limit */
  uint32_t stream;        /* 1: a headers event, then each chunk as it comes */
  uint32_t follow;        /* 1: follow redirects (at most 10) */
  const char *cafile;     /* https: a PEM file of the CAs to trust instead of
                             the system's, or NULL */
  uint32_t insecure;      /* 1: no verification of the server's certificate
                             and host name (tests only) */
} nb_rt_http_req_t;

/* Starts an HTTP request of the cell's agent on the runtime's loop (libcurl
 * multi); returns its request id, or a negative nb_err_t. Events: see
 * runtime/nb_rt_http.c. */
int64_t nb_rt_http(nb_rt_cell_t *cell, const nb_rt_http_req_t *req);

/* Cancels request req of the cell's agent (no event of it follows);
 * returns 0 or NB_ENOENT (over already). */
int nb_rt_cancel(nb_rt_cell_t *cell, uint32_t req);

/* Tells request req of the cell's agent that its task took len bytes of
 * it (a stream's chunk): a stream paused on its unread bytes goes on.
 * Returns 0 or NB_ENOENT (over already). */
int nb_rt_consumed(nb_rt_cell_t *cell, uint32_t req, size_t len);

/* Takes the next completion for the cell's agent into *out (its pointers
 * valid until the next call); returns 1, or 0 when there is none. */
int nb_rt_next_event(nb_rt_cell_t *cell, nb_rt_event_t *out);

/* Starts a process for the cell's agent (nb.exec, runtime/nb_rt_exec.c):
 * cmd (a name looked up on the runtime's PATH, or a path) with the
 * NULL-terminated args (not counting cmd), env entries "NAME=VALUE" (set)
 * or "NAME" (removed) applied to the runtime's environment (NULL: as is),
 * in cwd (NULL: the runtime's), stdin bytes (NULL: /dev/null), killed
 * after timeout_ns (0: never). Returns its request id, or a negative
 * nb_err_t; its one event: status = exit status (128 + signal), code 0 or
 * NB_ETIMEDOUT, NB_ETOOBIG, NB_ENOENT, NB_EINVAL (refused), NB_EIO, with
 * data = stdout, data2 = stderr and msg saying why (or "signal N"). */
int64_t nb_rt_exec(nb_rt_cell_t *cell, const char *cmd, const char **args,
                   const char **env, const char *cwd, const char *stdin_data,
                   size_t stdin_len, int has_stdin, uint64_t timeout_ns);

/* Reads the whole file at path for the cell's agent (nb.files.read,
 * runtime/nb_rt_files.c); returns its request id, or a negative nb_err_t.
 * Its one event: data = the bytes, or code < 0 and msg. */
int64_t nb_rt_file_read(nb_rt_cell_t *cell, const char *path);

/* Writes len bytes of data as the whole file at path, atomically (a
 * temporary file beside it, renamed over it); returns its request id, or
 * a negative nb_err_t. Its one event: code 0, or code < 0 and msg. */
int64_t nb_rt_file_write(nb_rt_cell_t *cell, const char *path,
                         const char *data, size_t len);

/* Returns the static text of an nb_err_t code. */
const char *nb_strerror(int err);

/* Returns the runtime's monotonic clock (CLOCK_MONOTONIC, the clock that
 * stamps spikes) in nanoseconds. */
uint64_t nb_rt_now_ns(void);

/* A synapse an agent asks for (nb:connect, runtime/nb_rt_learn.c): plain
 * fields so Lua needs no core struct. */
typedef struct nb_rt_syn_opts_s {
  double weight;        /* initial weight (clamped to the bounds) */
  int32_t mode;         /* -1 = no STDP, else NB_STDP_PAIR/_TRACE/_REWARD */
  double a_plus, a_minus, tau_plus_ms, tau_minus_ms, w_min, w_max;
  double lambda, alpha, mu_plus, mu_minus, tau_c_ms, tau_n_ms, baseline;
  uint32_t kinds;       /* kind filter: bit (1 << kind) per kind, 0 = none */
  int32_t min_priority; /* priority filter, -1 = none */
  const char *prefix;   /* prefix filter (1..16 bytes), NULL = none */
  size_t prefix_len;
  const char *custom;   /* custom filter name, NULL = none */
} nb_rt_syn_opts_t;

/* Asks for the synapse from -> to (from -1: the cell's own neuron) with o,
 * replacing one that exists; the runtime applies it between ticks, after
 * the current one (it takes effect from the next tick). Returns 0 when
 * queued, NB_ENOENT for an unknown neuron, NB_EPERM when from is another
 * neuron and the cell's neuron may not rewire, NB_EINVAL for bad options
 * (as nb_cortex_connect judges them, or from == to), NB_ENOMEM. */
int nb_rt_syn_connect(nb_rt_cell_t *cell, int32_t from, uint32_t to,
                      const nb_rt_syn_opts_t *o);

/* Asks for the removal of from -> to (from -1: the cell's own), applied as
 * nb_rt_syn_connect's changes are; returns 0 when queued, NB_ENOENT when no
 * such synapse exists now (and none is queued), NB_EPERM, NB_ENOMEM. */
int nb_rt_syn_disconnect(nb_rt_cell_t *cell, int32_t from, uint32_t to);

/* Returns the weight of from -> to now (a relaxed atomic read; from -1:
 * the cell's own neuron), or -1 when there is no such synapse. */
double nb_rt_syn_weight(const nb_rt_cell_t *cell, int32_t from,
                        uint32_t to);

/* ---- used by the busted harness through FFI (lua/neuronbus/testing.lua) */

typedef struct nb_rt_s nb_rt_t;

typedef struct nb_rt_opts_s {
  int record;      /* keep every delivered and fired spike (tests) */
  int quiet;       /* do not print agent errors to stderr (still counted) */
  const char *recorders; /* comma-separated names of extra recorder neurons
                            registered after the topology's */
  const char *peers;     /* comma-separated names of recorder neurons that
                            take their place among the topology's in name
                            order (they may be synapse endpoints) */
  uint32_t workers;      /* worker threads, over the manifest's workers key
                            (0: the manifest's; docs/workers.md) */
  int no_metrics;  /* no handler timing nor depth tracking (the metrics'
                      overhead benchmark's baseline) */
} nb_rt_opts_t;

typedef struct nb_rt_stat_s {
  uint64_t spikes_in, spikes_out, fires, errors, full, deferred, filtered;
  uint64_t tasks;      /* live tasks (nb:spawn, timers' callbacks) */
  uint64_t arena_full; /* fires refused for want of arena space */
  uint64_t kept;       /* payloads the agent keeps now (spike:keep) */
  uint64_t kept_since_ns; /* when the oldest of them was kept, 0 = none */
} nb_rt_stat_t;

/* Returns the number of CPUs this process may run on (at least 1): what
 * workers = "auto" starts. */
uint32_t nb_rt_cpus(void);

typedef struct nb_rt_worker_stat_s {
  uint64_t ticks;     /* ticks the worker ran (by any thread) */
  uint64_t busy_ns;   /* time inside those ticks */
  uint64_t delivered; /* spikes handed to its agents */
  uint64_t queued;    /* spikes other workers sent it, not yet routed */
  uint64_t adopted;   /* ticks another thread ran while it was stuck */
  int32_t stuck;      /* neuron id inside one call now, -1 for none */
  uint64_t stuck_ns;  /* for how long */
} nb_rt_worker_stat_t;

/* Returns the number of workers of rt (1 without worker threads). */
uint32_t nb_rt_workers(const nb_rt_t *rt);

/* Returns the worker of neuron id, or -1 for an unknown id. */
int nb_rt_worker_of(const nb_rt_t *rt, uint32_t id);

/* Fills out with worker w's counters (between ticks); returns 0, or
 * NB_ENOENT for w out of range. */
int nb_rt_worker_stat(const nb_rt_t *rt, uint32_t w, nb_rt_worker_stat_t *out);

/* Returns a runtime built from the manifest at path, ready to tick (every
 * agent's init has run), or NULL with *err set to a malloc'd text naming
 * every problem, one per line (free with nb_rt_free_string). */
nb_rt_t *nb_rt_open(const char *path, const nb_rt_opts_t *opts, char **err);

/* Same as nb_rt_open from manifest source text (the same Lua a manifest
 * file holds, validated the same way; scripts resolve against the working
 * directory); chunkname labels it in errors and names a topology without a
 * name. */
nb_rt_t *nb_rt_open_topo(const char *src, size_t len, const char *chunkname,
                         const nb_rt_opts_t *opts, char **err);

/* Stops (see nb_rt_stop) if not stopped yet, then frees everything. */
void nb_rt_close(nb_rt_t *rt);

/* Frees a string the runtime returned. */
void nb_rt_free_string(char *s);

/* Runs n ticks; returns the spikes delivered to agents, or a negative
 * nb_err_t. */
int64_t nb_rt_tick(nb_rt_t *rt, uint64_t n);

/* Delivers what is still pending (up to max_ticks ticks, 0 = 1000) and
 * calls every agent's on_stop once; returns the ticks run. While it drains
 * agents' tick is not called (no new periodic work: a pacemaker would keep
 * the cortex busy forever), on_spike is. Later calls return 0. */
uint64_t nb_rt_stop(nb_rt_t *rt, uint64_t max_ticks);

/* Returns the number of neurons, the id of name (-1 if none), the name of
 * id (NULL if none). */
uint32_t nb_rt_count(const nb_rt_t *rt);
int nb_rt_id(const nb_rt_t *rt, const char *name);
const char *nb_rt_name(const nb_rt_t *rt, uint32_t id);

/* Queues a spike as if neuron from fired it (routed at the next tick);
 * returns 0 or a negative nb_err_t. */
int nb_rt_inject(nb_rt_t *rt, uint32_t from, uint32_t to, int kind,
                 int priority, const char *data, size_t len);

/* Fills *out with neuron id's counters (errors counts every failed agent
 * callback); returns 0 or NB_ENOENT. */
int nb_rt_stat(const nb_rt_t *rt, uint32_t id, nb_rt_stat_t *out);

/* The arena of a runtime (nb_arena_stats), as the harness reads it. */
typedef struct nb_rt_arena_stat_s {
  uint64_t capacity, in_use, reclaimed;
  uint32_t segment_size, segments, free, active, sealed, processes;
} nb_rt_arena_stat_t;

/* Fills *out with rt's arena counters; returns 0. */
int nb_rt_arena_stat(const nb_rt_t *rt, nb_rt_arena_stat_t *out);

/* Ticks rt and turns its loop (waiting for it at most 1 ms at a time when
 * nothing is left to tick) until no task runs, no request is pending and
 * no spike is pending, or timeout_ns passed; returns 0, or NB_ETIMEDOUT
 * (a timer of nb:every keeps it busy for good). For harnesses: not inside
 * nb_rt_run. */
int nb_rt_run_until_idle(nb_rt_t *rt, uint64_t timeout_ns);

/* Returns the live tasks and the pending requests of all agents. */
uint64_t nb_rt_tasks(const nb_rt_t *rt);
uint64_t nb_rt_requests(const nb_rt_t *rt);

/* Returns the weight of synapse from->to, or a negative number when there
 * is none. */
double nb_rt_weight(const nb_rt_t *rt, uint32_t from, uint32_t to);

/* Writes the learning counters: out[0] rewards routed, out[1] synapses
 * agents connected, out[2] disconnected, out[3] changes refused. */
void nb_rt_learn_stats(const nb_rt_t *rt, uint64_t out[4]);

/* Returns how many spikes neuron id received (which 0) or fired (which 1)
 * while recording. */
size_t nb_rt_rec_count(const nb_rt_t *rt, uint32_t id, int which);

/* Copies record i into *s and points *data and *len at its payload bytes (valid
 * until nb_rt_close); returns 0 or NB_ENOENT. */
int nb_rt_rec_get(const nb_rt_t *rt, uint32_t id, int which, size_t i,
                  nb_spike_t *s, const char **data, size_t *len);

/* Returns the synapse weight record i was delivered with (1.0 for a
 * fired record or without a synapse), or -1 when there is no such record. */
double nb_rt_rec_weight(const nb_rt_t *rt, uint32_t id, int which, size_t i);

/* Returns nb.state of neuron id serialized as Lua source ("return {...}"),
 * malloc'd (free with nb_rt_free_string), or NULL with *err set. */
char *nb_rt_state_dump(nb_rt_t *rt, uint32_t id, char **err);

/* Returns the agent errors of neuron id reported so far, one message with
 * its traceback per entry separated by a line "\f", malloc'd; "" if none. */
char *nb_rt_errors(const nb_rt_t *rt, uint32_t id);

typedef struct nb_rt_version_s {
  uint32_t counter;   /* 1 at boot, +1 per accepted reload; 0 = no script */
  uint32_t reserved;
  uint64_t reloads;   /* accepted reloads */
  uint64_t rejected;  /* refused reloads (the old version kept running) */
  char hash[17];      /* FNV-1a 64 of the running source, 16 hex digits */
} nb_rt_version_t;

/* Hot reload of neuron id, between ticks: loads src (len bytes), or its
 * script file when src is NULL, into the neuron's own state; the new
 * agent's functions replace the old ones, nb.state is kept, on_reload runs.
 * Unless force, a source whose hash equals the running version's is left
 * alone. Returns 1 (reloaded), 0 (unchanged), NB_ENOENT (no such neuron or
 * no script), NB_EIO (file unreadable) or NB_EAGENT (rejected: the old
 * version keeps running), with *err set to a malloc'd message naming the
 * file and line (free with nb_rt_free_string) on a negative return. */
int nb_rt_reload(nb_rt_t *rt, uint32_t id, const char *src, size_t len,
                 int force, char **err);

/* Fills *out with neuron id's code version; returns 0 or NB_ENOENT. */
int nb_rt_version(const nb_rt_t *rt, uint32_t id, nb_rt_version_t *out);

/* Returns the bytes of Lua heap neuron id's state holds after a full
 * garbage collection, or -1 for a neuron without a state. */
double nb_rt_memory(nb_rt_t *rt, uint32_t id);

/* Returns the address of lua_newstate as this library resolved it: the
 * busted spec compares it with the host process's own. */
void *nb_rt_lua_newstate_addr(void);

/* Fault isolation of one neuron. */
typedef struct nb_rt_isol_stat_s {
  uint64_t dead_letters;      /* spikes to it counted as dead letters while
                                 it was stopped */
  uint64_t restarts;          /* fresh states the restart policy made */
  uint64_t faults;            /* failures the policy was applied to */
  uint64_t mem_errors;        /* entries that hit the memory cap */
  uint64_t budget_overruns;   /* entries interrupted by the budget */
  uint64_t watchdog_overruns; /* entries the watchdog caught */
  uint64_t memory;            /* bytes of Lua heap its state holds now */
  uint64_t memory_peak;       /* highest of any of its states */
  uint64_t memory_limit;      /* the cap, 0 = none */
  uint64_t budget_ns;         /* per entry, 0 = none */
  uint64_t backoff_left_ns;   /* in backoff: time until the restart */
  uint64_t next_backoff_ns;   /* the backoff the next fault waits */
  uint64_t held;              /* spikes of a cut batch kept for the restart */
  int state;                  /* 0 running, 1 backoff, 2 stopped */
  int policy;                 /* 0 restart, 1 stop */
  int jit;                    /* JIT engine on in its state */
  int sandbox;
} nb_rt_isol_stat_t;

/* Fills *out with neuron id's isolation counters and state; returns 0 or
 * NB_ENOENT. */
int nb_rt_isol_stat(const nb_rt_t *rt, uint32_t id, nb_rt_isol_stat_t *out);

/* END FFI */

#endif
