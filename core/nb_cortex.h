/* nb_cortex.h: topology, discovery and the tick that routes spikes.
 *
 * Concurrency contract: with one worker (the default) a cortex is driven
 * by ONE thread (the cortex thread). Neurons may fire from other threads
 * into their own axons; the axon is the cross-thread channel.
 *
 * Workers (opts.workers = N > 1, docs/workers.md): the neurons are
 * sharded over N workers, each ticked by nb_cortex_tick_worker on one
 * thread at a time, in parallel with the others. A worker routes the axons
 * of its own neurons: a spike for a neuron of another worker goes into the
 * bounded ring from this worker to that one, which routes it into the
 * target's inbox at its next tick (filters, weights and STDP on the
 * target's worker). Everything else in this header (register, connect,
 * place, prune, set_stopped, inject, pending, stop, stats, free) is called
 * only while no worker ticks, or - set_stopped, add_dead_letters - by the
 * thread that ticks the neuron's worker; inject by worker 0's thread.
 * nb_cortex_tick runs every worker in turn on the calling thread.
 *
 * One tick, in deterministic order (same inputs, same outputs):
 *  1. COLLECT + ROUTE: for each neuron in id order, then the injection
 *     queue, drain its axon. A unicast spike goes to its target with the
 *     synapse's filters and weight when a synapse joins the pair, else with
 *     weight 1.0; a broadcast spike goes along every outgoing synapse whose
 *     filters pass. STDP "pre" is recorded on each synapse used. A spike
 *     whose target inbox is full stays in the axon (and with it every later
 *     spike of that source): backpressure, never loss. Spikes to an unknown
 *     id are counted as dead letters.
 *  2. DELIVER + FIRE: for each neuron in id order: if refractory, count the
 *     tick down and keep its inbox waiting; else integrate the inbox, hand
 *     it to the agent as one batch, then nb_if_step; on fire apply STDP
 *     "post" on incoming synapses and call the agent's tick.
 *
 * Payloads: a spike holding an arena reference carries exactly one. The
 * cortex drops it when the spike is consumed (after the handler it was
 * delivered to returns, or as a dead letter or filtered); a broadcast
 * retains one per extra destination; a spike that waits (axon, injection
 * queue, refractory inbox) keeps its reference. */
#ifndef NB_CORTEX_H
#define NB_CORTEX_H

#include <stddef.h>
#include <stdint.h>

#include "nb_arena.h"
#include "nb_neuron.h"
#include "nb_synapse.h"

/* BEGIN CONSTANTS: copied into lua/neuronbus/layout.lua */
#define NB_MAX_NEURONS 0xFFFFu /* ids 0..0xFFFE; 0xFFFF is broadcast */
#define NB_MAX_WORKERS 256
/* END CONSTANTS */
#define NB_RING_DEFAULT_CAPACITY 1024 /* spikes per ring between workers */
#define NB_ADOPT_AFTER_DEFAULT_NS 100000000ull /* 100 ms */

typedef struct nb_cortex_s nb_cortex_t;

typedef struct nb_cortex_opts_s {
  uint32_t max_neurons;    /* id space; <= 1024 keeps synapses dense */
  uint32_t axon_capacity;  /* per neuron, power of two, 0 = 4096 */
  uint32_t inbox_capacity; /* per neuron, 0 = axon_capacity */
  nb_arena_t *arena;       /* for large payloads; NULL = none */
  uint32_t prune_every;    /* prune weak synapses every N ticks, 0 = never
                            * (counted in worker 0's ticks) */
  uint32_t workers;        /* worker shards, 1..NB_MAX_WORKERS, 0 = 1 */
  uint32_t ring_capacity;  /* spikes per ring between two workers (power
                            * of two), 0 = NB_RING_DEFAULT_CAPACITY */
  uint64_t adopt_after_ns; /* an agent call this old lets another thread
                            * tick its worker (nb_cortex_tick_worker),
                            * 0 = NB_ADOPT_AFTER_DEFAULT_NS, UINT64_MAX =
                            * never */
  uint32_t spike_time;     /* the time a fired spike (and a fire)
                            * carries: NB_SPIKE_TIME_* */
} nb_cortex_opts_t;

/* Values of nb_cortex_opts_t.spike_time. FIRE: each spike its own fire
 * time (nb_clock_spike_ns, a TSC read per spike). TICK: the tick's time,
 * one clock read per tick (a source's spikes of one tick get it +1 ns
 * each, so they still increase). AUTO: TICK until the cortex has a
 * synapse with STDP, whose learning needs the exact time, then FIRE. */
enum { NB_SPIKE_TIME_FIRE = 0, NB_SPIKE_TIME_TICK = 1, NB_SPIKE_TIME_AUTO = 2 };

typedef struct nb_cortex_stats_s {
  uint64_t ticks;
  uint64_t routed;       /* spike deliveries into inboxes */
  uint64_t dead_letters; /* spikes to unknown or stopped targets, spikes
                          * waiting in a neuron's inbox when it is stopped,
                          * broadcasts with no outgoing synapse, and spikes
                          * whose arena payload a filter could not read
                          * (stale reference) */
  uint64_t filtered;     /* stopped by dendritic filters */
  uint64_t pruned;       /* synapses removed by pruning */
  uint64_t rewards;      /* modulatory spikes routed carrying a reward */
} nb_cortex_stats_t;

/* Returns the default options (max_neurons 1024, one worker). */
nb_cortex_opts_t nb_cortex_opts_default(void);

/* Creates a cortex; returns 0, NB_EINVAL or NB_ENOMEM. */
int nb_cortex_new(nb_cortex_t **out, const nb_cortex_opts_t *opts);

/* Frees the cortex and its neurons (does not call on_stop: see stop). */
void nb_cortex_free(nb_cortex_t *cx);

/* Registers a neuron with a copy of card (name must be unique and
 * non-empty), IF parameters (NULL = defaults) and callbacks; assigns the
 * next id. Returns 0, NB_EEXIST, NB_EINVAL, NB_ELIMIT past max_neurons (or
 * 0xFFFE), NB_ENOMEM. *out may be NULL. */
int nb_cortex_register(nb_cortex_t *cx, const nb_card_t *card,
                       const nb_if_params_t *params,
                       const nb_agent_ops_t *ops, void *agent,
                       nb_neuron_t **out);

/* Returns the number of workers. */
uint32_t nb_cortex_workers(const nb_cortex_t *cx);

/* Returns the worker of neuron id (registration places id on worker
 * id % workers), or -1 for an unknown id. */
int nb_cortex_worker_of(const nb_cortex_t *cx, nb_id_t id);

/* Moves neuron id to worker w (its inbox, axon and state go with it);
 * only while no worker ticks. Returns 0, NB_ENOENT, NB_EINVAL for w out of
 * range or while spikes between workers are still in flight (rings or
 * parked: tick until they are delivered), NB_ENOMEM. */
int nb_cortex_place(nb_cortex_t *cx, nb_id_t id, uint32_t w);

/* Returns the neuron with id, or by name, or NULL. */
nb_neuron_t *nb_cortex_neuron(const nb_cortex_t *cx, nb_id_t id);
nb_neuron_t *nb_cortex_find(const nb_cortex_t *cx, const char *name);

/* Returns the number of registered neurons (ids are 0..count-1). */
size_t nb_cortex_count(const nb_cortex_t *cx);

/* Connects pre->post with weight (clamped to the STDP bounds), up to
 * NB_FILTERS_MAX filters, and STDP parameters (NULL = STDP off, the bounds
 * then come from nb_stdp_default()); replaces an existing synapse. Returns
 * 0, NB_ENOENT for an unregistered end, NB_EINVAL (pre == post, a
 * non-finite weight, a malformed filter, STDP with w_min > w_max, a
 * time constant <= 0, an unknown mode, or in TRACE / REWARD mode a
 * negative lambda, alpha or mu, or w_max <= 0), NB_ENOMEM. */
int nb_cortex_connect(nb_cortex_t *cx, nb_id_t pre, nb_id_t post,
                      float weight, const nb_filter_t *filters,
                      size_t nfilters, const nb_stdp_t *stdp);

/* Returns the synapse table (weights, iteration). */
nb_synapse_table_t *nb_cortex_synapses(const nb_cortex_t *cx);

/* Returns 1 when parent equals child or is a whole-segment prefix of it
 * ("cortex" and "cortex/lang" are parents of "cortex/lang/x"; "cortex/lang"
 * is not a parent of "cortex/language"). Trailing slashes are ignored; the
 * empty path (or "/") is the root and contains every region. NULL gives 0. */
int nb_region_contains(const char *parent, const char *child);

/* Writes up to max ids of neurons with capability into out (id order);
 * returns the total number found. */
size_t nb_cortex_discover(const nb_cortex_t *cx, const char *capability,
                          nb_id_t *out, size_t max);

/* Writes up to max ids of neurons in the region subtree path (id order,
 * each neuron once); returns the total number found. */
size_t nb_cortex_region(const nb_cortex_t *cx, const char *path,
                        nb_id_t *out, size_t max);

/* Queues a copy of a spike from outside the cortex (a test, a socket),
 * taking over the arena reference it holds when it returns 0,
 * routed at the next tick as if fired by s->source; a zero timestamp_ns is
 * stamped with nb_clock_ns() (STDP reads 0 as "no spike"). The queue holds
 * axon_capacity spikes. Returns 0, NB_EFULL, or NB_EINVAL for a malformed
 * spike (as nb_spike_from_bytes judges it). */
int nb_cortex_inject(nb_cortex_t *cx, const nb_spike_t *s);

/* nb_cortex_inject of s as if fired by source at timestamp_ns (0: the
 * clock), one copy into the queue (a link hands over a peer's spike with
 * the local proxy as its source and the local clock); returns as
 * nb_cortex_inject. */
int nb_cortex_inject_as(nb_cortex_t *cx, const nb_spike_t *s, nb_id_t source,
                        uint64_t timestamp_ns);

/* Runs one tick of every worker in turn on the calling thread; returns
 * the number of spikes delivered to agents, or a negative error. */
int nb_cortex_tick(nb_cortex_t *cx);

/* Runs one tick of worker w: spikes other workers sent it, then the axons
 * of its neurons, then (worker 0) the injection queue, then delivery and
 * fire for its neurons in id order. One thread per worker at a time, any
 * number of workers at once; a worker may change threads between ticks
 * when the handover orders memory (a join, a mutex). Returns the spikes
 * delivered, NB_EBUSY when another thread runs it, or NB_EINVAL for w out
 * of range. */
int nb_cortex_tick_worker(nb_cortex_t *cx, uint32_t w);

/* Takes worker w for the calling thread without ticking it: when no
 * thread ticks it, or when the one that does is inside an agent call
 * (of any age; the call goes on, and its thread waits for the worker when
 * it returns). While it holds every worker, an embedder may change the
 * topology or read a snapshot, but must not enter a neuron that is still
 * in a call (nb_cortex_busy). Returns 0 (always, with one worker),
 * NB_EBUSY (a thread is ticking it outside a call: retry) or NB_EINVAL. */
int nb_cortex_worker_hold(nb_cortex_t *cx, uint32_t w);

/* Gives back a worker taken with nb_cortex_worker_hold; returns nothing. */
void nb_cortex_worker_release(nb_cortex_t *cx, uint32_t w);

/* Returns 1 when neuron id's agent is inside a call on another thread
 * (a stuck call whose worker was adopted or held), else 0; only while
 * holding id's worker (or with one worker, where it is always 0). */
int nb_cortex_busy(const nb_cortex_t *cx, nb_id_t id);

/* With several workers a worker's tick is taken by one thread at a time:
 * nb_cortex_tick_worker returns NB_EBUSY at once when another thread runs
 * it.
 * Exception, adoption: while that thread is inside an agent call (a batch,
 * a tick callback) that began adopt_after_ns ago or more, another thread's
 * nb_cortex_tick_worker takes the worker over and ticks every neuron of
 * its shard but the one in the call, whose spikes wait (backpressure);
 * the call's thread waits for the worker when the call returns. */

/* Returns 1 and sets *id and *since_ns (nb_clock_ns) when worker w is
 * inside an agent call, else 0 (also for one worker); any thread. For a
 * watchdog: name the neuron, and tick its worker from another thread. */
int nb_cortex_worker_call(const nb_cortex_t *cx, uint32_t w, nb_id_t *id,
                          uint64_t *since_ns);

/* Returns spikes not yet delivered: in axons, the injection queue,
 * inboxes, and between workers (0 = quiescent). */
uint64_t nb_cortex_pending(const nb_cortex_t *cx);

/* Ticks until nothing is pending or max_ticks ran, then calls every
 * agent's on_stop once; returns the number of ticks run. */
uint64_t nb_cortex_stop(nb_cortex_t *cx, uint64_t max_ticks);

/* Removes synapses at or below w_min now; returns how many. */
size_t nb_cortex_prune(nb_cortex_t *cx);

/* Marks a neuron stopped (its inbound spikes, including those already
 * waiting in its inbox, become dead letters, counted; it no longer ticks)
 * or running again; returns 0 or NB_ENOENT. */
int nb_cortex_set_stopped(nb_cortex_t *cx, nb_id_t id, int stopped);

/* Counts n spikes for neuron id as dead letters (the cortex total and the
 * neuron's own counter): for an embedder that took them from the inbox in a
 * batch and cannot deliver them (its agent was stopped mid-batch); returns
 * 0 or NB_ENOENT. */
int nb_cortex_add_dead_letters(nb_cortex_t *cx, nb_id_t id, uint64_t n);

/* Returns the cortex counters: with several workers, the sum over
 * workers (ticks: the most ticks any worker ran), valid until the next
 * call. */
const nb_cortex_stats_t *nb_cortex_stats(const nb_cortex_t *cx);

/* Returns worker w's own counters (routed: deliveries into its inboxes;
 * dead letters, filtered: counted where they were found), or NULL for w
 * out of range. */
const nb_cortex_stats_t *nb_cortex_worker_stats(const nb_cortex_t *cx,
                                                uint32_t w);

/* Returns the spikes other workers queued for worker w and not yet routed
 * (in their rings to w, and parked at w); while no worker ticks, or
 * approximate (statistics). */
uint64_t nb_cortex_worker_queued(const nb_cortex_t *cx, uint32_t w);

/* Returns the arena given at creation (may be NULL). */
nb_arena_t *nb_cortex_arena(const nb_cortex_t *cx);

#endif
