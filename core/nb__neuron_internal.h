/* nb__neuron_internal.h: the private neuron struct shared by nb_neuron.c
 * (the handle, which fires) and nb_cortex.c (which routes and delivers).
 * Not installed, not part of the API: embedders use nb_neuron.h. */
#ifndef NB__NEURON_INTERNAL_H
#define NB__NEURON_INTERNAL_H

#include <stdint.h>

#include "nb_arena.h"
#include "nb_axon.h"
#include "nb_clock.h"
#include "nb_neuron.h"

struct nb_neuron_s {
  nb_id_t id;
  uint32_t worker;   /* the cortex worker that routes into it and ticks it */
  int busy;          /* several workers: its agent is in a call that the
                      * worker's tick was adopted away from (see
                      * nb_cortex.c); written under the worker's lock */
  _Atomic uint8_t congested; /* several workers: spikes for it are parked;
                              * a hint to senders on other workers */
  int stopped;       /* inbound spikes become dead letters */
  int held;          /* nb_neuron_hold: no delivery, spikes wait */
  int stop_called;   /* on_stop already ran (it runs once) */
  nb_card_t card;    /* owned copy: its strings live in strings */
  char *strings;     /* one block holding every string of card */
  nb_if_t ifs;
  nb_agent_ops_t ops; /* copied, so the caller's table may be temporary */
  void *agent;
  nb_arena_t *arena; /* the cortex's, for large payloads; may be NULL */

  /* Producer side: touched only by the thread that fires. */
  nb_axon_t *axon;
  uint32_t next_seq;
  uint64_t last_stamp_ns; /* the newest timestamp fired: the next is later */
  nb__clock_anchor_t clock; /* its spike clock (nb__clock_at) */
  nb_arena_writer_t *writer;     /* where large payloads are written */
  nb_arena_writer_t *own_writer; /* made on first use when none was set */

  /* Cortex side: the cortex's reader on the axon and the inbox that the
   * collect phase fills and the deliver phase empties in one go, so it is
   * a plain array (always contiguous for on_batch), not a ring. */
  nb_axon_reader_t *reader;
  nb_spike_t *inbox;
  float *inbox_w;
  uint32_t inbox_cap;
  uint32_t inbox_count;

  uint64_t last_fire_ns; /* 0 = never fired (STDP) */
  nb_neuron_stats_t stats;
};

/* The tick's clock, when spikes carry it (NB_SPIKE_TIME_*): set by the
 * cortex thread for the length of its deliver phase (0 otherwise). Spikes
 * fired from agent callbacks during a tick are then stamped with it instead
 * of their own fire time; without it each spike reads the spike clock
 * (nb_clock_spike_ns: the TSC, a few ns, where CLOCK_MONOTONIC costs ~30 ns
 * on a virtual machine, a quarter of a Lua hop). Thread-local, so a neuron
 * firing from its own thread still reads the clock. */
extern _Thread_local uint64_t nb__tick_now;

/* Integrates count spikes with their weights into s in order, exactly as
 * count calls of nb_if_integrate, with the potential kept in a register
 * (one call per spike stored and reloaded it: a store-forwarding chain
 * that was most of the deliver phase); returns 1 when any of the spikes
 * carries an arena reference, else 0, so the pass that releases them
 * after delivery (another read of every spike) can be skipped. */
static inline int nb__if_integrate_batch(nb_if_t *s, const nb_spike_t *in,
                                         const float *w, uint32_t count) {
  float pot = s->potential;
  const float floor = s->p.rest - 1.0f;
  int refs = 0;
  for (uint32_t k = 0; k < count; k++) {
    nb_kind_t kind = nb_spike_kind(&in[k]);
    refs |= nb_spike_is_ref(&in[k]);
    if (kind == NB_EXCITATORY) {
      pot += w[k];
    } else if (kind == NB_INHIBITORY) {
      pot -= w[k];
      if (pot < floor) pot = floor;
    }
  }
  s->potential = pot;
  return refs;
}

/* Returns the slot i places past r's position, as nb_axon_reader_peek_at
 * (gated mode only, else NULL), and sets *n to how many published spikes
 * follow contiguously in the ring from there, counting it, at most max (0
 * with NULL): the cortex reads a run of slots with one call. */
const nb_spike_t *nb__axon_reader_peek_run(nb_axon_reader_t *r, uint64_t i,
                                           uint64_t max, uint32_t *n);

/* Returns how many spikes published to r's axon r has not consumed, from
 * the atomic cursors only (r's published one, not its private position),
 * so any thread may ask while r's thread reads. */
uint64_t nb__axon_reader_behind(const nb_axon_reader_t *r);

/* Creates a neuron with id and a deep copy of card, IF params (NULL =
 * defaults), a copy of ops (NULL = none), its own gated axon of
 * axon_capacity with the cortex's reader attached and an inbox of
 * inbox_capacity; returns 0, NB_EINVAL or NB_ENOMEM. */
int nb__neuron_new(nb_neuron_t **out, nb_id_t id, const nb_card_t *card,
                   const nb_if_params_t *params, const nb_agent_ops_t *ops,
                   void *agent, uint32_t axon_capacity,
                   uint32_t inbox_capacity, nb_arena_t *arena);

/* Detaches the reader and frees the neuron with everything it owns;
 * accepts NULL. */
void nb__neuron_free(nb_neuron_t *n);

/* Returns 0 when card is acceptable for registration (a non-empty name, tag
 * counts within NB_CARD_MAX_TAGS, no NULL tag), else NB_EINVAL. */
int nb__card_check(const nb_card_t *card);

#endif
