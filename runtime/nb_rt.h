/* nb_rt.h: the NeuronBus runtime, the host that gives every neuron its own
 * LuaJIT state, builds a cortex from a manifest, and drives it.
 *
 * Public names are nb_rt_*; what Lua sees is declared in nb_rt_ffi.h, the
 * command's side (running, statistics, checking, links) here.
 *
 * Threads: a runtime is driven by one thread, like its cortex. */
#ifndef NB_RT_H
#define NB_RT_H

#include <stdint.h>
#include <stdio.h>

#include "neuronbus.h"
#include "nb_rt_ffi.h"


/* ---- the command's side (not seen from Lua) ---- */

typedef struct nb_rt_run_opts_s {
  uint64_t ticks;       /* stop after this many ticks, 0 = no limit */
  uint64_t for_ns;      /* stop after this long, 0 = no limit */
  int stats;            /* 0 none, 1 table, 2 json lines */
  uint64_t stats_every_ns; /* period of the stats lines (and of the
                              metrics' intervals), 0 = 1 s */
  FILE *out;            /* statistics go here (default stdout) */
  FILE *stats_file;     /* NULL, or JSON statistics lines go here too, at
                           the same period (whatever stats says) */
  const char *http;     /* NULL, or "HOST:PORT" the HTTP endpoint listens
                           on (port 0: any free one, said on stderr) */
  int no_watch;         /* 1 = do not watch the agent scripts (hot reload
                           then only through SIGHUP) */
  uint64_t drain_ns;    /* TCP links: how long shutdown waits for spikes
                           to leave and be acknowledged, 0 = 2 s */
} nb_rt_run_opts_t;

/* Runs rt on a libuv loop (a timer per tick interval, or free-running in
 * bounded bursts), reloading an agent between ticks when its script
 * changes (unless no_watch) or on SIGHUP, until the tick or time limit or
 * SIGINT/SIGTERM, then
 * stops it (pending spikes delivered, on_stop called) and prints the final
 * statistics when asked; returns 0, or a negative nb_err_t when the loop
 * could not be set up. */
int nb_rt_run(nb_rt_t *rt, const nb_rt_run_opts_t *opts);

/* Prints the statistics of rt to out: a readable table (json 0) or one
 * JSON object on one line (json 1); final marks the closing report. */
void nb_rt_print_stats(nb_rt_t *rt, FILE *out, int json, int final);

/* Validates the manifest at path and loads every script it names in a
 * scratch state; prints each problem as one line to out; returns the number
 * of problems (0 = good). */
int nb_rt_check(const char *path, FILE *out);

/* Returns the topology of the manifest at path as Graphviz DOT (malloc'd,
 * free with nb_rt_free_string): neurons as nodes grouped by their first
 * region into clusters, synapses as edges labelled with their weight;
 * nothing runs (no agent script is loaded). NULL with *err (malloc'd)
 * naming the manifest's problems. */
char *nb_rt_graph_dot(const char *path, char **err);

/* Writes dot_text rendered as SVG by Graphviz's dot to out_path (NULL:
 * stdout); returns 0, or 1 with the reason on stderr (no dot installed). */
int nb_rt_graph_svg(const char *dot_text, const char *out_path);

/* The orders of neuronbus top. */
enum { NB_TOP_SORT_BUSY, NB_TOP_SORT_DEPTH, NB_TOP_SORT_IN, NB_TOP_SORT_NAME };

/* Shows the neurons of the runtime serving addr ("HOST:PORT", see --http)
 * as a table sorted by sort, one frame a second (frames of them, 0 = until
 * killed; a terminal is cleared before each); returns 0, or 1 with the
 * reason on stderr when the endpoint cannot be read. */
int nb_rt_top(const char *addr, int sort, int frames, FILE *out);

/* Draws the statistics JSON lines in jsonl (--stats-file) as an SVG at svg
 * with gnuplot: spikes/s into each neuron and every synapse weight over
 * time; returns 0, or 1 with the reason on stderr. */
int nb_rt_plot(const char *jsonl, const char *svg);

/* A hot reload in two steps, so the slow part (parsing the new source)
 * runs while the old version still ticks: nb_rt_reload_prepare compiles,
 * nb_rt_reload_commit swaps between ticks. nb_rt_reload is the two in a
 * row; `neuronbus run` prepares on libuv's thread pool. */
typedef struct nb_rt_reload_prep_s nb_rt_reload_prep_t;

/* Compiles src (len bytes), or neuron id's script file when src is NULL,
 * as the next version of neuron id in a scratch Lua state; any thread,
 * while rt ticks. A source that does not compile (or is bytecode) still
 * gives a prep: nb_rt_reload_commit rejects it as nb_rt_reload would.
 * Returns 0 with *out set, or NB_ENOENT / NB_EIO with *err set (free with
 * nb_rt_free_string). */
int nb_rt_reload_prepare(const nb_rt_t *rt, uint32_t id, const char *src,
                         size_t len, nb_rt_reload_prep_t **out, char **err);

/* Swaps prep into its neuron between ticks on rt's thread: returns as
 * nb_rt_reload (force likewise), and frees prep. */
int nb_rt_reload_commit(nb_rt_t *rt, nb_rt_reload_prep_t *prep, int force,
                        char **err);

/* Frees a prep that is not committed; returns nothing. */
void nb_rt_reload_prep_free(nb_rt_reload_prep_t *prep);

/* Returns the ticks run so far and the tick interval of the topology in ns
 * (0 = free-running). */
uint64_t nb_rt_ticks(const nb_rt_t *rt);
uint64_t nb_rt_tick_ns(const nb_rt_t *rt);

/* Returns the Lua module path (package.path templates) every state the
 * runtime makes gets, before LuaJIT's own. */
const char *nb_rt_lua_path(void);

/* Returns the topology's name. */
const char *nb_rt_topology_name(const nb_rt_t *rt);

/* ---- the HTTP endpoint, for C programs that tick the runtime themselves
 * (nb_rt_run starts it from its --http option) ---- */

/* Starts rt's HTTP endpoint (/metrics, /stats, /graph, /neurons/NAME) on
 * addr ("HOST:PORT", port 0 = any free one); its snapshots are built on
 * rt's loop, so the caller runs nb_rt_http_serve between ticks. Returns 0,
 * or NB_EINVAL / NB_EIO / NB_EEXIST with the reason on stderr. */
int nb_rt_http_start(nb_rt_t *rt, const char *addr);

/* Builds the snapshots requests wait for (runs rt's loop once without
 * blocking); does nothing while nb_rt_run drives the loop. Returns
 * nothing. */
void nb_rt_http_serve(nb_rt_t *rt);

/* Returns the port the endpoint listens on, 0 without one. */
int nb_rt_http_port(const nb_rt_t *rt);

/* Stops the endpoint; returns nothing (also without one). */
void nb_rt_http_stop(nb_rt_t *rt);

/* ---- TCP links: what nb_rt_run does with them, for C tests
 * and benchmarks that drive their own loop ---- */

/* Starts rt's links on uv_loop (a uv_loop_t): exposes every local neuron
 * by name, listens, dials every peer and binds the remote neurons' proxies.
 * Returns 0 (also for a topology without links), NB_EEXIST when already
 * started, or NB_EIO / NB_EINVAL / NB_ENOMEM with the reason on stderr
 * (the address to listen on is taken, for instance). */
int nb_rt_link_start(nb_rt_t *rt, void *uv_loop);

/* Returns the port rt listens on, or 0 when it does not listen. */
int nb_rt_link_port(const nb_rt_t *rt);

/* Stops rt cleanly with its links: agents' tick is no longer called, ticks
 * and the loop run until every spike routed to a remote neuron left and
 * was acknowledged (or grace_ns passed, 0 = 2 s), every on_stop runs (as
 * nb_rt_stop), what on_stop fired is flushed, then the links close (their
 * counters stay in the statistics). Without links it is nb_rt_stop(rt, 0).
 * Returns nothing. */
void nb_rt_link_stop(nb_rt_t *rt, uint64_t grace_ns);

/* Returns the number of links rt has (dialled, expected, or accepted). */
size_t nb_rt_link_count(const nb_rt_t *rt);

/* Copies link i's counters into *out (an nb_link_stats_t, nb_link.h) and
 * points *peer at its peer's name (or dialled url); returns 0, or
 * NB_ENOENT past the last link. */
int nb_rt_link_stats(const nb_rt_t *rt, size_t i, void *out,
                     const char **peer);

#endif
