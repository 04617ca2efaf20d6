/* bench_ring.h: the reference ring every axon row is measured against, and
 * the record stamp every reader checks.
 *
 * The reference ring is the minimal correct single-producer ring of 64-byte
 * records: a power-of-two array of slots, a write cursor stored with
 * release, and one read cursor per reader (1 = SPSC; n = broadcast, the
 * producer gated by the slowest reader). Both sides cache the other side's
 * cursor, so an uncontended record costs one slot copy plus one release
 * store. It has no wait strategy, no modes, no attach/detach: what the axon
 * spends above it is the price of its features. */
#ifndef NB_BENCH_RING_H
#define NB_BENCH_RING_H

#include "bench.h"
#include "nb_spike.h"

#define NB_BENCH_RING_MAX_READERS 16

/* ---- the record stamp ---- */

/* Returns the check word for sequence i (a mix, so a torn or stale slot
 * whose sequence happens to match still fails). */
static inline uint64_t nb_bench_mix(uint64_t i) {
  uint64_t z = i + 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

/* Fills s as record i from source src to target dst: sequence i, an 8-byte
 * inline payload holding nb_bench_mix(i). */
static inline void nb_bench_stamp(nb_spike_t *s, uint64_t i, uint16_t src,
                                  uint16_t dst) {
  uint64_t w = nb_bench_mix(i);
  s->timestamp_ns = i;
  s->sequence = (uint32_t)i;
  s->source = src;
  s->target = dst;
  s->meta = (uint8_t)(8u << 2); /* excitatory, 8 inline bytes */
  s->priority = 0;
  memcpy(s->payload, &w, sizeof w); /* payload sits at offset 18: unaligned */
}

/* Returns the check word carried by s (0 is never a valid word in practice;
 * the caller compares with nb_bench_mix). */
static inline uint64_t nb_bench_word(const nb_spike_t *s) {
  uint64_t w;
  memcpy(&w, s->payload, sizeof w);
  return w;
}

/* Returns 1 when s is exactly record i (sequence, length and check word). */
static inline int nb_bench_is_record(const nb_spike_t *s, uint64_t i) {
  return s->sequence == (uint32_t)i && s->meta == (uint8_t)(8u << 2) &&
         nb_bench_word(s) == nb_bench_mix(i);
}

/* Returns the sum of check words of records first..first+n-1: what a
 * reader that saw every record exactly once must have summed. */
NB_BENCH_UNUSED static uint64_t nb_bench_expected_sum(uint64_t first,
                                                      uint64_t n) {
  uint64_t s = 0;
  for (uint64_t i = first; i < first + n; i++) s += nb_bench_mix(i);
  return s;
}

/* ---- the reference ring ---- */

typedef struct nb_bench_ring_reader_s {
  alignas(64) _Atomic uint64_t tail; /* read cursor, published */
  alignas(64) uint64_t pos;          /* reader-private */
  uint64_t cached_head;
} nb_bench_ring_reader_t;

typedef struct nb_bench_ring_s {
  nb_spike_t *slots;
  uint32_t cap, mask, nreaders;
  alignas(64) _Atomic uint64_t head; /* write cursor, published */
  alignas(64) uint64_t phead;        /* producer-private */
  uint64_t cached_min;
  nb_bench_ring_reader_t readers[NB_BENCH_RING_MAX_READERS];
} nb_bench_ring_t;

/* Returns a new ring of cap (power of two) slots read by nreaders readers,
 * or fails the bench. */
NB_BENCH_UNUSED static nb_bench_ring_t *nb_bench_ring_new(uint32_t cap,
                                                          uint32_t nreaders) {
  if (cap < 2 || (cap & (cap - 1)) || nreaders < 1 ||
      nreaders > NB_BENCH_RING_MAX_READERS)
    nb_bench_fail("reference ring: bad capacity %u or readers %u", cap,
                  nreaders);
  nb_bench_ring_t *r = nb_bench_alloc(sizeof *r);
  r->slots = nb_bench_alloc((size_t)cap * sizeof(nb_spike_t));
  r->cap = cap;
  r->mask = cap - 1;
  r->nreaders = nreaders;
  return r;
}

/* Frees the ring. */
NB_BENCH_UNUSED static void nb_bench_ring_free(nb_bench_ring_t *r) {
  if (!r) return;
  free(r->slots);
  free(r);
}

/* Returns the slowest reader's cursor (acquire, so the slots it freed may
 * be overwritten). */
static inline uint64_t nb_bench_ring_min_tail(nb_bench_ring_t *r) {
  uint64_t m = atomic_load_explicit(&r->readers[0].tail, memory_order_acquire);
  for (uint32_t i = 1; i < r->nreaders; i++) {
    uint64_t t = atomic_load_explicit(&r->readers[i].tail, memory_order_acquire);
    if (t < m) m = t;
  }
  return m;
}

/* Returns how many slots the producer may fill now (refreshing its cached
 * reader cursor only when the cache says fewer than want are free). */
static inline uint64_t nb_bench_ring_free_slots(nb_bench_ring_t *r,
                                                uint64_t want) {
  uint64_t free_n = r->cap - (r->phead - r->cached_min);
  if (free_n < want) {
    r->cached_min = nb_bench_ring_min_tail(r);
    free_n = r->cap - (r->phead - r->cached_min);
  }
  return free_n;
}

/* Publishes one record with one release store; returns 1, or 0 when full. */
static inline int nb_bench_ring_push(nb_bench_ring_t *r, const nb_spike_t *s) {
  if (nb_bench_ring_free_slots(r, 1) == 0) return 0;
  memcpy(&r->slots[r->phead & r->mask], s, sizeof *s);
  r->phead++;
  atomic_store_explicit(&r->head, r->phead, memory_order_release);
  return 1;
}

/* Publishes up to n records with one release store; returns how many. */
static inline size_t nb_bench_ring_push_batch(nb_bench_ring_t *r,
                                              const nb_spike_t *s, size_t n) {
  uint64_t k = nb_bench_ring_free_slots(r, n);
  if (k > n) k = n;
  for (uint64_t i = 0; i < k; i++)
    memcpy(&r->slots[(r->phead + i) & r->mask], &s[i], sizeof *s);
  r->phead += k;
  if (k) atomic_store_explicit(&r->head, r->phead, memory_order_release);
  return (size_t)k;
}

/* Copies the next record for reader rd into out; returns 1, or 0 when
 * there is none yet. One release store per record. */
static inline int nb_bench_ring_pop(nb_bench_ring_t *r, uint32_t rd,
                                    nb_spike_t *out) {
  nb_bench_ring_reader_t *me = &r->readers[rd];
  if (me->pos == me->cached_head) {
    me->cached_head = atomic_load_explicit(&r->head, memory_order_acquire);
    if (me->pos == me->cached_head) return 0;
  }
  memcpy(out, &r->slots[me->pos & r->mask], sizeof *out);
  me->pos++;
  atomic_store_explicit(&me->tail, me->pos, memory_order_release);
  return 1;
}

/* Copies up to max records for reader rd into out with one release store;
 * returns how many. */
static inline size_t nb_bench_ring_pop_batch(nb_bench_ring_t *r, uint32_t rd,
                                             nb_spike_t *out, size_t max) {
  nb_bench_ring_reader_t *me = &r->readers[rd];
  if (me->cached_head - me->pos < max)
    me->cached_head = atomic_load_explicit(&r->head, memory_order_acquire);
  uint64_t k = me->cached_head - me->pos;
  if (k > max) k = max;
  for (uint64_t i = 0; i < k; i++)
    memcpy(&out[i], &r->slots[(me->pos + i) & r->mask], sizeof *out);
  me->pos += k;
  if (k) atomic_store_explicit(&me->tail, me->pos, memory_order_release);
  return (size_t)k;
}

/* ---- memcpy bandwidth ---- */

/* Returns millions of 64-byte records per second copied by one thread from
 * a ring-sized buffer of cap records into a 64-record batch buffer (the
 * same-core ceiling for any ring); checks the copies landed. */
NB_BENCH_UNUSED static double nb_bench_memcpy_rate(uint32_t cap, uint64_t n) {
  nb_spike_t *src = nb_bench_alloc((size_t)cap * sizeof *src);
  nb_spike_t *dst = nb_bench_alloc(64 * sizeof *dst);
  for (uint32_t i = 0; i < cap; i++) nb_bench_stamp(&src[i], i, 1, 2);
  uint64_t sum = 0, t0 = nb_bench_now_ns();
  for (uint64_t i = 0; i < n; i += 64) {
    for (uint32_t j = 0; j < 64; j++)
      memcpy(&dst[j], &src[(i + j) & (cap - 1)], sizeof *dst);
    nb_bench_escape(dst);
    sum += dst[63].sequence;
  }
  uint64_t t1 = nb_bench_now_ns();
  uint64_t want = 0;
  for (uint64_t i = 0; i < n; i += 64) want += (uint32_t)((i + 63) & (cap - 1));
  free(src);
  free(dst);
  if (sum != want) nb_bench_fail("memcpy check: sum %" PRIu64 " != %" PRIu64, sum, want);
  return (double)n / ((double)(t1 - t0) / 1e9) / 1e6;
}

#endif
