/* nb_neuron.h: integrate-and-fire state, the neuron handle that fires
 * spikes, and the callback table through which an embedder (the Lua
 * runtime, a C agent, a test) plugs behaviour in. Core knows nothing of Lua.
 *
 * Concurrency contract: a neuron's fire functions are called by one thread
 * at a time (the axon's single producer); everything else belongs to the
 * cortex thread. */
#ifndef NB_NEURON_H
#define NB_NEURON_H

#include <stddef.h>
#include <stdint.h>

#include "nb_arena.h"
#include "nb_axon.h"
#include "nb_spike.h"

/* ---- integrate-and-fire ---- */

typedef struct nb_if_params_s {
  float threshold;     /* fire at potential >= threshold, default 1.0 */
  float rest;          /* resting potential, default 0.0 */
  float leak;          /* per tick: p = rest + (p - rest) * leak, 0.95 */
  uint32_t refractory; /* ticks without input after a fire, default 2 */
} nb_if_params_t;

typedef struct nb_if_s {
  nb_if_params_t p;
  float potential;
  uint32_t refractory_left;
} nb_if_t;

/* Returns the reference defaults above. */
nb_if_params_t nb_if_params_default(void);

/* Returns NB_EINVAL when a parameter is out of range (leak outside [0,1],
 * a non-finite number), else 0. */
int nb_if_params_check(const nb_if_params_t *p);

/* Sets the state to rest with params p (NULL = defaults). */
void nb_if_init(nb_if_t *s, const nb_if_params_t *p);

/* Adds weight (excitatory), subtracts it (inhibitory, floored at
 * rest - 1.0) or does nothing (modulatory). */
void nb_if_integrate(nb_if_t *s, nb_kind_t kind, float weight);

/* Ends a non-refractory tick: when potential >= threshold, resets to rest,
 * enters the refractory period and returns 1; else applies the leak and
 * returns 0. Integration happens before this, so one spike of weight 1.0
 * fires a default neuron in the tick it arrives. */
int nb_if_step(nb_if_t *s);

/* ---- agent cards ---- */

/* BEGIN CONSTANTS: copied into lua/neuronbus/layout.lua */
#define NB_CARD_MAX_TAGS 16
/* END CONSTANTS */

typedef struct nb_card_s {
  const char *name;
  nb_id_t id; /* set by the cortex */
  const char *capabilities[NB_CARD_MAX_TAGS];
  size_t ncapabilities;
  const char *regions[NB_CARD_MAX_TAGS];
  size_t nregions;
  uint32_t version; /* embedder's code version (hot reload), 0 = none */
} nb_card_t;

/* ---- the embedder's callbacks ---- */

typedef struct nb_neuron_s nb_neuron_t;

typedef struct nb_agent_ops_s {
  /* The batch delivered this tick (weights[i] belongs to spikes[i]);
   * called once per tick with count >= 1. Return 0, or a negative code that
   * is counted as an agent error. If NULL, on_spike is called per spike. */
  int (*on_batch)(void *agent, nb_neuron_t *n, const nb_spike_t *spikes,
                  const float *weights, size_t count);
  int (*on_spike)(void *agent, nb_neuron_t *n, const nb_spike_t *s,
                  float weight);
  /* Called when the neuron fires. */
  int (*tick)(void *agent, nb_neuron_t *n);
  /* Custom dendritic filter named name on a synapse into this neuron:
   * return nonzero to pass, 0 to reject, or a negative code (counted as an
   * agent error; the spike is rejected). NULL passes nothing. It may be
   * asked again about the same spike if that spike had to wait for inbox
   * room, so it should be a pure predicate. */
  int (*filter)(void *agent, nb_neuron_t *n, const char *name,
                const nb_spike_t *s, const void *payload, size_t len);
  /* Called once by nb_cortex_stop. */
  void (*on_stop)(void *agent, nb_neuron_t *n);
} nb_agent_ops_t;

/* Per-neuron counters, written by the cortex thread, read anywhere. */
typedef struct nb_neuron_stats_s {
  uint64_t spikes_in;  /* delivered to the agent */
  uint64_t spikes_out; /* published to its axon */
  uint64_t fires;      /* threshold crossings */
  uint64_t errors;     /* agent callbacks that returned an error */
  uint64_t full;       /* fire attempts refused because the axon was full */
  uint64_t arena_full; /* fire attempts refused because the arena was */
  uint64_t deferred;   /* tick-spike pairs held back by refractory */
  uint64_t filtered;   /* spikes into it stopped by a dendritic filter */
  uint64_t dead_letters; /* spikes to it counted as dead letters because it
                          * was stopped (see nb_cortex_set_stopped) */
} nb_neuron_stats_t;

/* ---- the handle ---- */

/* Returns the neuron's id, name, card and counters. */
nb_id_t nb_neuron_id(const nb_neuron_t *n);
const char *nb_neuron_name(const nb_neuron_t *n);
const nb_card_t *nb_neuron_card(const nb_neuron_t *n);
const nb_neuron_stats_t *nb_neuron_stats(const nb_neuron_t *n);

/* Returns the spike-clock time n last fired (its integrate-and-fire
 * threshold crossed: STDP's "post" time), 0 = never. The cortex thread's
 * call, between ticks. */
uint64_t nb_neuron_last_fire_ns(const nb_neuron_t *n);
nb_if_t *nb_neuron_if(nb_neuron_t *n);
nb_axon_t *nb_neuron_axon(nb_neuron_t *n);
/* Returns how many spikes wait in n's axon for the cortex to route them;
 * any thread, even while the cortex reads the axon (atomic cursor loads):
 * the thread that fires n sees its own fires exactly. */
uint64_t nb_neuron_axon_depth(const nb_neuron_t *n);
void *nb_neuron_agent(const nb_neuron_t *n);
/* Sets the version shown in the card. */
void nb_neuron_set_version(nb_neuron_t *n, uint32_t version);

/* Holds n out of delivery (held != 0) or lets it go (0): while held it
 * neither integrates, receives nor fires, and its spikes wait in order in
 * its inbox and then in the axons upstream, as in a refractory tick. The
 * cortex thread's call, between ticks; returns nothing. */
void nb_neuron_hold(nb_neuron_t *n, int held);

/* Returns 1 while n is held (nb_neuron_hold), else 0. */
int nb_neuron_held(const nb_neuron_t *n);

/* Stamps source, the next sequence and the monotonic time on *s and
 * publishes it (non-blocking). Inside a cortex tick (agent callbacks) the
 * time is the tick's, read once per tick; elsewhere it is read per spike.
 * Either way the timestamps of a neuron firing from one thread never
 * decrease. Returns 0, NB_EINVAL
 * when s's meta byte is malformed (as nb_spike_from_bytes judges it), or
 * NB_EFULL when the axon is full (either way nothing is sent, the sequence
 * is not consumed, *s is left untouched). A spike holding an arena
 * reference hands that reference to the cortex on success (it is released
 * after delivery); on failure the caller still holds it. */
int nb_neuron_fire(nb_neuron_t *n, nb_spike_t *s);

/* Fires an excitatory priority-0 spike to target with any payload length
 * (over 46 bytes goes to the cortex's arena through the neuron's writer,
 * the spike holding its one reference); returns 0, NB_EFULL, NB_ENOSPACE
 * (arena full: retry once payloads are released), NB_ETOOBIG. */
int nb_neuron_fire_to(nb_neuron_t *n, nb_id_t target, const void *payload,
                      size_t len);

/* Fires with every field chosen; returns as nb_neuron_fire_to, or
 * NB_EINVAL for a kind above 2. */
int nb_neuron_fire_ex(nb_neuron_t *n, nb_id_t target, nb_kind_t kind,
                      uint8_t priority, const void *payload, size_t len);

/* Fires to NB_BROADCAST; returns as nb_neuron_fire_to. */
int nb_neuron_broadcast(nb_neuron_t *n, const void *payload, size_t len);

/* Sets s's payload as nb_arena_put_payload does, through n's writer (as
 * the fire calls do; an NB_ENOSPACE is counted in stats.arena_full), for
 * a spike built before nb_neuron_fire; returns 0 or the arena's error. */
int nb_neuron_put_payload(nb_neuron_t *n, nb_spike_t *s, const void *data,
                          size_t len);

/* Makes n write its large payloads through w, a writer of the cortex's
 * arena used only on the thread that fires n (several neurons firing from
 * one thread may share one); NULL returns to n's own writer, made on first
 * use. The writer must outlive n's use of it. Returns nothing. */
void nb_neuron_set_writer(nb_neuron_t *n, nb_arena_writer_t *w);

/* Makes the large payloads fired on the calling thread, by any neuron of
 * w's arena, go through w instead of the neuron's writer (NULL: back to
 * the neurons' own): an embedder that ticks workers on several threads
 * gives each thread a writer, so no writer is bumped by two threads even
 * when a worker changes threads. Returns nothing. */
void nb_neuron_thread_writer(nb_arena_writer_t *w);

/* Resolves a spike's payload (inline or arena) into *data and *len; returns 0,
 * NB_ESTALE or NB_EBOUNDS. The bytes are valid while the spike's reference
 * is held: in the cortex, until the handler it was delivered to returns. */
int nb_neuron_payload(const nb_neuron_t *n, const nb_spike_t *s,
                      const void **data, size_t *len);

#endif
