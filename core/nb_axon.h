/* nb_axon.h: the SPMC ring of spikes that is each neuron's output.
 *
 * Concurrency contract: exactly ONE producer thread calls the publish
 * functions; each nb_axon_reader_t is used by ONE consumer thread; attach,
 * detach and clone may run on any thread while the producer publishes.
 *
 * Modes:
 * - NB_AXON_GATED (default): the producer never overwrites a slot that an
 *   attached reader has not consumed. try_publish answers NB_EFULL, blocking
 *   publish waits. The producer caches the slowest reader's cursor, so its
 *   fast path is a slot write plus one release store of the write cursor;
 *   it rescans the readers only when the cache says the ring looks full.
 * - NB_AXON_OVERWRITE: the producer never waits. A reader that was lapped
 *   gets NB_ELAPPED and the exact count of spikes it missed, then resumes
 *   at the oldest spike still intact. A slot overwritten while it was being
 *   copied is detected (the write cursor is re-read after the copy) and is
 *   never returned torn.
 *
 * With no reader attached, a gated axon accepts and discards nothing: it
 * keeps publishing and the spikes are simply not read by anybody (a reader
 * starts at the write cursor at the moment it attaches). */
#ifndef NB_AXON_H
#define NB_AXON_H

#include <stddef.h>
#include <stdint.h>

#include "nb_spike.h"
#include "nb_wait.h"

#define NB_AXON_MAX_READERS 32
/* BEGIN CONSTANTS: copied into lua/neuronbus/layout.lua */
#define NB_AXON_DEFAULT_CAPACITY 4096
/* END CONSTANTS */

typedef enum nb_axon_mode_e {
  NB_AXON_GATED = 0,
  NB_AXON_OVERWRITE = 1
} nb_axon_mode_t;

typedef struct nb_axon_opts_s {
  uint32_t capacity;   /* power of two, >= 2; 0 = default */
  nb_axon_mode_t mode; /* gated unless asked */
  nb_wait_t wait;      /* how blocking calls wait (both sides) */
} nb_axon_opts_t;

typedef struct nb_axon_s nb_axon_t;
typedef struct nb_axon_reader_s nb_axon_reader_t;

/* Returns default options: capacity 4096, gated, spin-hint waits. */
nb_axon_opts_t nb_axon_opts_default(void);

/* Creates an axon; returns 0, NB_EINVAL for a capacity that is not a power
 * of two (or < 2), or NB_ENOMEM. opts may be NULL for the defaults. */
int nb_axon_new(nb_axon_t **out, const nb_axon_opts_t *opts);

/* Frees the axon. Every reader must have been detached first. */
void nb_axon_free(nb_axon_t *ax);

/* Returns the capacity in spikes. */
uint32_t nb_axon_capacity(const nb_axon_t *ax);

/* Returns the number of spikes published so far (the write cursor). */
uint64_t nb_axon_published(const nb_axon_t *ax);

/* Publishes one spike; returns 0, or NB_EFULL (gated mode only) when the
 * slowest attached reader is a full ring behind. Producer thread only. */
int nb_axon_try_publish(nb_axon_t *ax, const nb_spike_t *s);

/* Publishes one spike, waiting with the axon's strategy while full;
 * returns 0, or NB_ECLOSED if the axon was closed while waiting. */
int nb_axon_publish(nb_axon_t *ax, const nb_spike_t *s);

/* Publishes up to n spikes with a single cursor update; returns how many
 * were published (fewer than n only when a gated axon is full). */
size_t nb_axon_try_publish_batch(nb_axon_t *ax, const nb_spike_t *s, size_t n);

/* Publishes all n spikes, waiting while full, updating the cursor once per
 * contiguous run; returns 0 or NB_ECLOSED. */
int nb_axon_publish_batch(nb_axon_t *ax, const nb_spike_t *s, size_t n);

/* Zero-copy publish, step 1: returns the slot the next spike goes into, or
 * NULL when a gated axon is full. The caller writes the spike in place and
 * then calls nb_axon_commit(ax, 1). Claims may be repeated up to
 * nb_axon_claimable() before one commit (claim i = i-th slot past the
 * cursor: use nb_axon_claim_at). In overwrite mode a lapped reader may be
 * copying the slot while the caller writes it: the copy is detected and
 * discarded, but it is a formal data race (TSan reports it), which the
 * publish calls avoid by storing atomic words. */
nb_spike_t *nb_axon_claim(nb_axon_t *ax);

/* Returns the slot i places past the write cursor, or NULL when it is not
 * free in a gated axon (or i >= capacity). */
nb_spike_t *nb_axon_claim_at(nb_axon_t *ax, uint32_t i);

/* Returns how many slots past the write cursor can be claimed now: the
 * capacity in overwrite mode; in gated mode the free slots the producer's
 * cache knows of, rescanning the readers only when it shows none. */
uint32_t nb_axon_claimable(nb_axon_t *ax);

/* Zero-copy publish, step 2: makes n claimed slots visible (one release
 * store). */
void nb_axon_commit(nb_axon_t *ax, uint32_t n);

/* Wakes blocked publishers and readers, which return NB_ECLOSED. */
void nb_axon_close(nb_axon_t *ax);

/* Attaches a reader starting at the current write cursor; returns 0, or
 * NB_ELIMIT when NB_AXON_MAX_READERS are attached, or NB_ENOMEM. */
int nb_axon_reader_attach(nb_axon_t *ax, nb_axon_reader_t **out);

/* Attaches a new reader at r's current position; returns as attach. Call
 * it on r's thread (or while nobody reads from r): r must not move during
 * the clone. */
int nb_axon_reader_clone(const nb_axon_reader_t *r, nb_axon_reader_t **out);

/* Detaches and frees r; a gated producer stops waiting for it. */
void nb_axon_reader_detach(nb_axon_reader_t *r);

/* Returns how many spikes are ready for r right now. */
uint64_t nb_axon_reader_available(const nb_axon_reader_t *r);

/* Reads the next spike into out; returns 0, NB_EEMPTY, or NB_ELAPPED
 * (overwrite mode) with *missed set to the exact number lost, after which
 * the next call reads the oldest intact spike. missed may be NULL. */
int nb_axon_try_read(nb_axon_reader_t *r, nb_spike_t *out, uint64_t *missed);

/* Reads the next spike, waiting with the axon's strategy; returns as
 * try_read, or NB_ECLOSED once the axon is closed and drained. */
int nb_axon_read(nb_axon_reader_t *r, nb_spike_t *out, uint64_t *missed);

/* Copies up to max spikes into out and advances the cursor once; returns
 * the count (0 when empty). In overwrite mode a lap is reported through
 * *missed (else set to 0) and the copy resumes after the gap. */
size_t nb_axon_read_batch(nb_axon_reader_t *r, nb_spike_t *out, size_t max,
                          uint64_t *missed);

/* Zero-copy read, gated mode: returns a pointer to the next unread slot (or
 * NULL when empty) without consuming it; the slot stays valid and unchanged
 * until nb_axon_reader_advance. peek_at(i) looks i slots further. In
 * overwrite mode they return NULL (a slot may change under the pointer at
 * any time): use try_read there. */
const nb_spike_t *nb_axon_reader_peek(const nb_axon_reader_t *r);
const nb_spike_t *nb_axon_reader_peek_at(const nb_axon_reader_t *r, uint64_t i);

/* Consumes n peeked spikes (one release store); n is capped at what is
 * published. */
void nb_axon_reader_advance(nb_axon_reader_t *r, uint64_t n);

#endif
