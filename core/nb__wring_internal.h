/* nb__wring_internal.h: the bounded single-producer single-consumer ring of
 * spikes that carries spikes from one worker to another (one ring per
 * ordered pair of workers, see docs/workers.md). Not installed.
 *
 * Both sides batch: the producer writes slots and publishes its cursor once
 * per flush, the consumer reads a run of slots and publishes its cursor
 * once per advance; each caches the other's cursor and reloads it only when
 * the cache says the ring is full (producer) or empty (consumer). Sequences
 * are 64-bit and never wrap. The producer's release store of tail pairs
 * with the consumer's acquire load (the slots are written before they are
 * seen); the consumer's release store of head pairs with the producer's
 * acquire load (its copies are done before the slots are reused). */
#ifndef NB__WRING_INTERNAL_H
#define NB__WRING_INTERNAL_H

#include <stdalign.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "nb_err.h"
#include "nb_spike.h"

typedef struct nb__wring_s {
  /* Configuration: written once, then only read. */
  alignas(128) nb_spike_t *buf;
  uint64_t mask;
  uint32_t cap;
  /* Shared cursors, each alone on its line pair. */
  alignas(128) _Atomic uint64_t tail; /* published by the producer */
  alignas(128) _Atomic uint64_t head; /* published by the consumer */
  /* Producer-private. */
  alignas(128) uint64_t p_tail;      /* next sequence to write */
  uint64_t p_head;                   /* head last loaded */
  /* Consumer-private. */
  alignas(128) uint64_t c_head;      /* next sequence to read */
  uint64_t c_tail;                   /* tail last loaded */
} nb__wring_t;

/* Creates a ring of cap spikes (a power of two >= 2); returns 0, NB_EINVAL
 * or NB_ENOMEM. */
static inline int nb__wring_new(nb__wring_t **out, uint32_t cap) {
  *out = NULL;
  if (cap < 2 || (cap & (cap - 1))) return NB_EINVAL;
  nb__wring_t *r = aligned_alloc(128, sizeof *r);
  if (!r) return NB_ENOMEM;
  memset(r, 0, sizeof *r);
  r->buf = aligned_alloc(64, (size_t)cap * sizeof(nb_spike_t));
  if (!r->buf) {
    free(r);
    return NB_ENOMEM;
  }
  r->cap = cap;
  r->mask = cap - 1u;
  atomic_init(&r->tail, 0);
  atomic_init(&r->head, 0);
  *out = r;
  return 0;
}

/* Frees the ring; accepts NULL; returns nothing. */
static inline void nb__wring_free(nb__wring_t *r) {
  if (!r) return;
  free(r->buf);
  free(r);
}

/* Producer: returns how many slots are free, reloading the consumer's
 * cursor only when the cache shows fewer than want. */
static inline uint32_t nb__wring_room(nb__wring_t *r, uint32_t want) {
  uint64_t used = r->p_tail - r->p_head;
  if (r->cap - used >= want) return (uint32_t)(r->cap - used);
  /* Acquire pairs with the consumer's release store in nb__wring_advance. */
  r->p_head = atomic_load_explicit(&r->head, memory_order_acquire);
  return (uint32_t)(r->cap - (r->p_tail - r->p_head));
}

/* Producer: copies s into the next slot, which nb__wring_room said is free;
 * invisible to the consumer until nb__wring_flush. Returns nothing. */
static inline void nb__wring_put(nb__wring_t *r, const nb_spike_t *s) {
  r->buf[r->p_tail & r->mask] = *s;
  r->p_tail++;
}

/* Producer: publishes every slot put so far (one release store, skipped
 * when nothing is new); returns nothing. */
static inline void nb__wring_flush(nb__wring_t *r) {
  if (atomic_load_explicit(&r->tail, memory_order_relaxed) == r->p_tail)
    return;
  /* Release pairs with the consumer's acquire load in nb__wring_peek. */
  atomic_store_explicit(&r->tail, r->p_tail, memory_order_release);
}

/* Consumer: returns the next unread slot and sets *n to how many published
 * spikes follow it contiguously (counting it), or NULL with *n = 0. */
static inline const nb_spike_t *nb__wring_peek(nb__wring_t *r, uint32_t *n) {
  if (r->c_tail == r->c_head) {
    /* Acquire pairs with the producer's release store in nb__wring_flush. */
    r->c_tail = atomic_load_explicit(&r->tail, memory_order_acquire);
    if (r->c_tail == r->c_head) {
      *n = 0;
      return NULL;
    }
  }
  uint64_t k = r->c_tail - r->c_head;
  uint64_t to_end = r->cap - (r->c_head & r->mask);
  *n = (uint32_t)(k < to_end ? k : to_end);
  return &r->buf[r->c_head & r->mask];
}

/* Consumer: consumes n peeked spikes (one release store); returns
 * nothing. */
static inline void nb__wring_advance(nb__wring_t *r, uint32_t n) {
  if (!n) return;
  r->c_head += n;
  /* Release pairs with the producer's acquire load in nb__wring_room. */
  atomic_store_explicit(&r->head, r->c_head, memory_order_release);
}

/* Any thread, for counting: returns how many spikes are published and not
 * yet consumed (a snapshot). */
static inline uint64_t nb__wring_used(nb__wring_t *r) {
  uint64_t t = atomic_load_explicit(&r->tail, memory_order_acquire);
  uint64_t h = atomic_load_explicit(&r->head, memory_order_acquire);
  return t > h ? t - h : 0;
}

#endif
