/* nb__axon_internal.h: the axon's layout, for the producer fast path that
 * the neuron's fire inlines (claim within the cached limit, publish one).
 * Not installed, not part of the API: embedders use nb_axon.h. The
 * protocol these fields carry is argued at the top of nb_axon.c. */
#ifndef NB__AXON_INTERNAL_H
#define NB__AXON_INTERNAL_H

#include <stdalign.h>
#include <stdatomic.h>
#include <stdint.h>

#include "nb_axon.h"

enum { NB__SLOT_FREE = 0, NB__SLOT_ATTACHING = 1, NB__SLOT_ACTIVE = 2 };

/* One reader's shared state, alone on its 128-byte line (two 64-byte lines,
 * so the adjacent-line prefetcher cannot couple neighbours). */
typedef struct nb__axon_slot_s {
  alignas(128) _Atomic uint64_t cursor; /* next sequence the reader reads */
  _Atomic uint32_t state;               /* NB__SLOT_* */
} nb__axon_slot_t;

struct nb_axon_s {
  /* Configuration: written once by nb_axon_new, then only read. */
  alignas(128) nb_spike_t *buf;
  uint64_t mask;
  uint32_t capacity;
  nb_axon_mode_t mode;
  nb_wait_t wait;
  int wake; /* YIELD_PARK: cursor movers must wake sleepers */

  /* Written by the producer on every publish, read by every reader. The
   * claim cursor (overwrite mode's seqlock begin marker) shares the line
   * because readers read both and the producer writes both. */
  alignas(128) _Atomic uint64_t write_cursor;
  _Atomic uint64_t claim_cursor;

  /* Producer-private. */
  alignas(128) uint64_t next;      /* equals the last stored write cursor */
  uint64_t limit;                  /* gated: may write sequences < limit */
  uint64_t claim_hi;               /* overwrite: last claim_cursor stored */
  _Atomic uint64_t *slowest;       /* gated: cursor that set the limit */

  alignas(128) nb_parking_t read_park; /* readers sleep, producer wakes */
  alignas(128) nb_parking_t gate_park; /* producer sleeps, readers wake */
  _Atomic uint64_t gate_want;          /* the cursor value it waits for */

  /* Rarely written: close, attach, detach. */
  alignas(128) _Atomic int closed;
  _Atomic uint32_t gen;    /* bumped by every attach and clone */
  _Atomic uint32_t nslots; /* high-water count of slots ever used */

  nb__axon_slot_t slots[NB_AXON_MAX_READERS];
};

/* Reader-private state on its own line; only its thread touches it. */
struct nb_axon_reader_s {
  alignas(64) nb_axon_t *ax;
  nb__axon_slot_t *slot;
  uint64_t pos;      /* next sequence to read (slot->cursor's value) */
  uint64_t wc_cache; /* write cursor last loaded (acquire): pos..wc ready */
};

/* Claims the next slot for the producer, as nb_axon_claim: inline when the
 * axon is gated and the cached limit allows it (no rescan, no call), else
 * through nb_axon_claim. Returns the slot, or NULL when the axon is full. */
static inline nb_spike_t *nb__axon_claim(nb_axon_t *ax) {
  uint64_t q = ax->next;
  if (ax->mode == NB_AXON_GATED && q < ax->limit) return &ax->buf[q & ax->mask];
  return nb_axon_claim(ax);
}

/* Publishes every claimed slot below end (the producer's next cursor
 * becomes end) and wakes parked readers; returns nothing. */
static inline void nb__axon_publish_to(nb_axon_t *ax, uint64_t end) {
  ax->next = end;
  /* Release pairs with the readers' acquire loads of the write cursor: the
   * slot contents are visible before the cursor says they are ready. */
  atomic_store_explicit(&ax->write_cursor, end, memory_order_release);
  if (ax->wake) nb_parking_wake(&ax->read_park);
}

/* Publishes the one slot nb__axon_claim returned, as nb_axon_commit(ax, 1);
 * returns nothing. */
static inline void nb__axon_commit1(nb_axon_t *ax) {
  nb__axon_publish_to(ax, ax->next + 1);
}

#endif
