/* nb_arena.c: the segmented payload arena (see nb_arena.h and
 * docs/payloads.md for the design, its invariants and memory orderings).
 *
 * Layout of the mapping (file-backed arenas share it across processes):
 *   header          128 bytes: magic "NBARENA2", version, geometry
 *   process table   NB_ARENA_PROCS x 64 bytes: who maps the file
 *   segment table   segments x 64 bytes: live count, generation, state
 *   free bitmap     one bit per segment, set = free
 *   held table      file-backed only: NB_ARENA_PROCS x segments uint32,
 *                   the references each process holds in each segment
 *   data            segments x segment size, page aligned
 *
 * Live counts are biased (page_frag): a segment taken by a writer starts at
 * BIAS; the writer counts its allocations privately and subtracts BIAS - n
 * when it seals the segment, so the count can only reach zero after the
 * seal, when every payload written into it was released. Whoever brings it
 * to zero frees it. A writer whose whole segment was released rewinds it
 * in place (hot producer/consumer pairs stay in one cache-warm segment).
 *
 * Generations: a segment's generation is bumped each time it is taken for
 * writing (and on a rewind), before any byte is written. A reference
 * carries the generation it was made in; a mismatch reads as NB_ESTALE.
 * Copies re-check the generation after copying (a seqlock read), so even a
 * reader holding no reference never returns another payload's bytes.
 *
 * Processes: each process mapping a file claims a slot and holds an OFD
 * lock on one byte of the file for it; the kernel drops the lock when the
 * process dies, so a survivor that can take the lock knows the process is
 * gone and drops what its held row says it held. Every multi-step update a
 * process makes to shared counts is ordered so that dying in the middle
 * leaks (a segment stays pinned) rather than frees early: garbage is never
 * an outcome, a leak after a crash is. A process that opens the file when
 * no one else is alive starts it clean.
 *
 * Creating a file-backed arena: the file is built unnamed (O_TMPFILE) and
 * linked to path only when whole, so a process killed meanwhile leaves
 * nothing behind; a loser of the creation race opens the winner's file. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "nb_arena.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "nb_err.h"

#define HEADER_SIZE 128u
#define LINE 64u
#define PAGE 4096u
#define BIAS ((int64_t)1 << 40) /* far above any segment's payload count */
#define REAP_EVERY_NS 50000000ull /* a writer short of space reaps this often */

/* The segment states (nb_arena.h: the inline read checks them too). */
#define SEG_FREE NB__SEG_FREE
#define SEG_ACTIVE NB__SEG_ACTIVE
#define SEG_SEALED NB__SEG_SEALED
#define SEG_CONT NB__SEG_CONT
enum { PROC_FREE = 0, PROC_LIVE = 1 };

/* The shared header; atomics in the mapping must be address-free, which
 * lock-free atomics are, so two processes mapping it anywhere agree. */
typedef struct arena_header_s {
  uint64_t magic;       /* NB_ARENA_MAGIC */
  uint32_t version;     /* NB_ARENA_VERSION */
  uint32_t header_size; /* 128 */
  uint64_t capacity;    /* segments x segment_size */
  uint32_t seg_size;    /* power of two */
  uint32_t nsegs;
  uint32_t procs;    /* NB_ARENA_PROCS */
  uint32_t shared;   /* 1 = has the held table */
  _Atomic uint32_t hint;     /* bitmap word to scan first */
  uint32_t reserved0;
  _Atomic uint64_t instance; /* bumped by each clean start */
  uint8_t reserved[72];
} arena_header_t;

typedef struct proc_s {
  _Atomic uint32_t state; /* PROC_FREE or PROC_LIVE */
  _Atomic uint32_t pid;   /* for reports */
  uint8_t pad[56];
} proc_t;

/* A segment's row: nb__arena_seg_t in nb_arena.h, where the inline read
 * can see it. */
typedef nb__arena_seg_t seg_t;

_Static_assert(sizeof(arena_header_t) == HEADER_SIZE, "header is 128 bytes");
_Static_assert(sizeof(proc_t) == LINE && sizeof(seg_t) == LINE,
               "one cache line per process and per segment");
_Static_assert(ATOMIC_LLONG_LOCK_FREE == 2 && ATOMIC_INT_LOCK_FREE == 2,
               "shared-memory atomics must be lock-free (address-free)");

typedef struct layout_s {
  size_t procs, segs, bitmap, held, data, size;
} layout_t;

struct nb_arena_s {
  /* First: the data region, segment table, segment count and shift the
   * inline fast paths of nb_arena.h read (through a cast to it). */
  nb__arena_hot_t hot;
  uint8_t *base;
  size_t map_size;
  int fd; /* -1 for a private arena */
  uint64_t capacity;
  uint32_t seg_size, words;
  arena_header_t *hdr;
  proc_t *procs;
  _Atomic uint64_t *bitmap;
  _Atomic uint32_t *held; /* NULL for a private arena */
  uint32_t me; /* this process's slot */
  pthread_mutex_t lock;
  nb_arena_writer_t *own; /* nb_arena_alloc's writer, under lock */
  /* Free segments only `reserver` may take (nb_arena_writer_reserve). */
  _Atomic uint32_t reserve;
  nb_arena_writer_t *_Atomic reserver;
  _Atomic uint64_t reclaimed, reaped, last_reap_ns;
};

_Static_assert(offsetof(struct nb_arena_s, hot) == 0,
               "the inline fast paths cast the arena to its first member");

/* The writer (struct nb_arena_writer_s) is in nb_arena.h, for the inline
 * fast path of nb_arena_write. */

/* ---- geometry ---- */

/* Returns the segment size for a capacity: capacity/256 rounded down to a
 * power of two, clamped to the segment limits. */
static uint32_t seg_size_for(uint64_t capacity) {
  uint64_t s = NB_ARENA_SEG_MIN;
  while (s * 2 <= capacity / 256 && s * 2 <= NB_ARENA_SEG_MAX) s *= 2;
  return (uint32_t)s;
}

/* Fills *l for the geometry; returns 0, or NB_ENOMEM when it overflows. */
static int layout(uint32_t nsegs, uint32_t seg_size, int shared,
                  layout_t *l) {
  uint64_t words = ((uint64_t)nsegs + 63) / 64;
  uint64_t p = HEADER_SIZE;
  l->procs = p;
  p += (uint64_t)NB_ARENA_PROCS * LINE;
  l->segs = p;
  p += (uint64_t)nsegs * LINE;
  l->bitmap = p;
  p += words * 8;
  p = (p + LINE - 1) & ~(uint64_t)(LINE - 1);
  l->held = p;
  if (shared) p += (uint64_t)NB_ARENA_PROCS * nsegs * 4;
  p = (p + PAGE - 1) & ~(uint64_t)(PAGE - 1);
  l->data = p;
  uint64_t size = p + (uint64_t)nsegs * seg_size;
  if (size > (uint64_t)SIZE_MAX || size > (uint64_t)INT64_MAX) return NB_ENOMEM;
  l->size = (size_t)size;
  return 0;
}

/* Computes the geometry for a requested capacity; returns 0 or NB_ENOMEM. */
static int geometry(uint64_t capacity, uint32_t *seg_size, uint32_t *nsegs) {
  uint32_t s = seg_size_for(capacity);
  uint64_t n = (capacity + s - 1) / s;
  if (n == 0 || n > UINT32_MAX / 2) return NB_ENOMEM;
  *seg_size = s;
  *nsegs = (uint32_t)n;
  return 0;
}

/* Writes a fresh header and free bitmap into a zeroed mapping (every
 * segment free, generation 0, no process); returns nothing. */
static void format(uint8_t *base, const layout_t *l, uint32_t seg_size,
                   uint32_t nsegs, int shared) {
  arena_header_t *h = (arena_header_t *)base;
  h->version = NB_ARENA_VERSION;
  h->header_size = HEADER_SIZE;
  h->capacity = (uint64_t)nsegs * seg_size;
  h->seg_size = seg_size;
  h->nsegs = nsegs;
  h->procs = NB_ARENA_PROCS;
  h->shared = (uint32_t)shared;
  atomic_init(&h->hint, 0);
  atomic_init(&h->instance, 1);
  _Atomic uint64_t *bm = (_Atomic uint64_t *)(base + l->bitmap);
  for (uint32_t i = 0; i < nsegs; i += 64) {
    uint32_t k = nsegs - i < 64 ? nsegs - i : 64;
    atomic_init(&bm[i / 64], k == 64 ? ~0ull : ((1ull << k) - 1));
  }
  /* Magic last: a reader of a half-written file sees a foreign file. */
  h->magic = NB_ARENA_MAGIC;
}

/* Wraps a mapping in a handle; returns 0 or NB_ENOMEM. */
static int wrap(nb_arena_t **out, uint8_t *base, size_t size, int fd) {
  arena_header_t *h = (arena_header_t *)base;
  layout_t l;
  if (layout(h->nsegs, h->seg_size, (int)h->shared, &l)) return NB_ENOMEM;
  nb_arena_t *a = calloc(1, sizeof *a);
  if (!a) return NB_ENOMEM;
  if (pthread_mutex_init(&a->lock, NULL) != 0) {
    free(a);
    return NB_ENOMEM;
  }
  a->base = base;
  a->map_size = size;
  a->fd = fd;
  a->capacity = h->capacity;
  a->seg_size = h->seg_size;
  a->hot.nsegs = h->nsegs;
  a->hot.seg_shift = (uint32_t)__builtin_ctz(h->seg_size);
  a->words = (h->nsegs + 63) / 64;
  a->hdr = h;
  a->procs = (proc_t *)(base + l.procs);
  a->hot.segs = (seg_t *)(base + l.segs);
  a->bitmap = (_Atomic uint64_t *)(base + l.bitmap);
  a->held = h->shared ? (_Atomic uint32_t *)(base + l.held) : NULL;
  a->hot.data = base + l.data;
  *out = a;
  return 0;
}

/* Returns the held counter of process p for segment s. */
static inline _Atomic uint32_t *held_of(const nb_arena_t *a, uint32_t p,
                                        uint32_t s) {
  return &a->held[(size_t)p * a->hot.nsegs + s];
}

/* Adds d to this process's held count for s (it is the only writer of its
 * row, so a relaxed load and store suffice; survivors read the row only
 * after the process died). */
static inline void held_add(const nb_arena_t *a, uint32_t s, int32_t d) {
  _Atomic uint32_t *h = held_of(a, a->me, s);
  atomic_store_explicit(
      h, atomic_load_explicit(h, memory_order_relaxed) + (uint32_t)d,
      memory_order_relaxed);
}

/* ---- segments ---- */

/* Frees the run starting at s (its count reached zero); returns nothing. */
static void free_run(nb_arena_t *a, uint32_t s) {
  seg_t *g = &a->hot.segs[s];
  uint32_t span = atomic_load_explicit(&g->span, memory_order_relaxed);
  if (span == 0 || span > a->hot.nsegs - s) span = 1;
  for (uint32_t j = 0; j < span; j++) {
    atomic_store_explicit(&a->hot.segs[s + j].owner, 0, memory_order_relaxed);
    atomic_store_explicit(&a->hot.segs[s + j].state, SEG_FREE,
                          memory_order_relaxed);
  }
  /* Release: a taker that acquires the bit sees the state above, and every
   * release of the run's payloads happened before (their fetch_subs were
   * release and we acquired them). */
  for (uint32_t j = 0; j < span; j++) {
    uint32_t i = s + j;
    atomic_fetch_or_explicit(&a->bitmap[i / 64], 1ull << (i % 64),
                             memory_order_release);
  }
  atomic_fetch_add_explicit(&a->reclaimed, 1, memory_order_relaxed);
}

/* Subtracts d from s's live count; frees the run when it reaches zero.
 * Returns the count before. */
static int64_t drop(nb_arena_t *a, uint32_t s, int64_t d) {
  seg_t *g = &a->hot.segs[s];
  /* Release: this holder's reads of the bytes happen before the count
   * drops, so whoever sees zero may hand the bytes to a new writer. */
  int64_t prev = atomic_fetch_sub_explicit(&g->live, d, memory_order_release);
  if (prev == d) {
    /* Acquire: pairs with every other holder's release above. An acquire
     * load of the count (it reads this RMW's zero, which ends every
     * holder's release sequence) rather than an acquire fence: the same in
     * C11, but ThreadSanitizer does not model fences, so with one it saw
     * the next writer's bytes race with earlier holders' reads. */
    (void)atomic_load_explicit(&g->live, memory_order_acquire);
    free_run(a, s);
  }
  return prev;
}

/* Tries to clear bit i of the free bitmap; returns 1 when this call took
 * it. */
static int take_bit(nb_arena_t *a, uint32_t i) {
  _Atomic uint64_t *w = &a->bitmap[i / 64];
  uint64_t bit = 1ull << (i % 64);
  uint64_t cur = atomic_load_explicit(w, memory_order_relaxed);
  while (cur & bit) {
    /* Acquire: pairs with free_run's release of the bit. */
    if (atomic_compare_exchange_weak_explicit(w, &cur, cur & ~bit,
                                              memory_order_acquire,
                                              memory_order_relaxed))
      return 1;
  }
  return 0;
}

/* Gives bit i back (a run that could not be completed); returns nothing. */
static void give_bit(nb_arena_t *a, uint32_t i) {
  atomic_fetch_or_explicit(&a->bitmap[i / 64], 1ull << (i % 64),
                           memory_order_release);
}

/* Returns the free bits of bitmap word wi that name segments: a file
 * another process scribbled on may have bits set past the last segment,
 * and taking one would write past the data region. */
static uint64_t free_bits(const nb_arena_t *a, uint32_t wi) {
  uint64_t bits = atomic_load_explicit(&a->bitmap[wi], memory_order_relaxed);
  uint32_t past = a->hot.nsegs - wi * 64;
  return past < 64 ? bits & ((1ull << past) - 1) : bits;
}

/* Takes k contiguous free segments; returns 0 with *first set, or
 * NB_ENOSPACE. */
static int take_run(nb_arena_t *a, uint32_t k, uint32_t *first) {
  uint32_t words = a->words;
  uint32_t start = atomic_load_explicit(&a->hdr->hint, memory_order_relaxed);
  if (start >= words) start = 0;
  if (k == 1) {
    for (uint32_t n = 0; n < words; n++) {
      uint32_t wi = (start + n) % words;
      uint64_t cur = free_bits(a, wi);
      while (cur) {
        uint32_t i = wi * 64 + (uint32_t)__builtin_ctzll(cur);
        if (take_bit(a, i)) {
          atomic_store_explicit(&a->hdr->hint, wi, memory_order_relaxed);
          *first = i;
          return 0;
        }
        cur = free_bits(a, wi);
      }
    }
    return NB_ENOSPACE;
  }
  if (k > a->hot.nsegs) return NB_ENOSPACE;
  /* Runs are rare (payloads larger than a segment): a plain scan, taking
   * bits one by one and giving them back when a racer took one. */
  for (uint32_t s = 0; s + k <= a->hot.nsegs; s++) {
    uint32_t j = 0;
    while (j < k && take_bit(a, s + j)) j++;
    if (j == k) {
      *first = s;
      return 0;
    }
    for (uint32_t m = 0; m < j; m++) give_bit(a, s + m);
    s += j; /* s + j was not free */
  }
  return NB_ENOSPACE;
}

/* Prepares a taken run for writing: new generations first, then the live
 * count (release) that publishes them; returns the first's generation. */
static uint32_t claim(nb_arena_t *a, uint32_t s, uint32_t k, uint32_t state,
                      int64_t live) {
  uint32_t gen = 0;
  for (uint32_t j = 0; j < k; j++) {
    seg_t *g = &a->hot.segs[s + j];
    /* Relaxed load and store, not a read-modify-write: only the taker of
     * a segment's free bit (we, now) writes its generation, so no update
     * can be lost; readers order it through the release store below. */
    uint32_t v = atomic_load_explicit(&g->gen, memory_order_relaxed) + 1;
    atomic_store_explicit(&g->gen, v, memory_order_relaxed);
    if (j == 0) gen = v;
    atomic_store_explicit(&g->state, j ? SEG_CONT : state, memory_order_relaxed);
    atomic_store_explicit(&g->span, j ? 0 : k, memory_order_relaxed);
    atomic_store_explicit(&g->allocs, 0, memory_order_relaxed);
    atomic_store_explicit(&g->owner, state == SEG_ACTIVE ? a->me + 1 : 0,
                          memory_order_relaxed);
  }
  /* Release: a retainer whose CAS reads this count also sees the new
   * generation, and so undoes a retain made with an old reference. */
  atomic_store_explicit(&a->hot.segs[s].live, live, memory_order_release);
  /* Release fence: the payload bytes written after this point are ordered
   * after the generation bump for a copier that checks it afterwards (the
   * seqlock writer side). */
  atomic_thread_fence(memory_order_release);
  return gen;
}

/* Returns 1 when writer w may take k segments now: it holds the reserve,
 * or more than the reserve would stay free (a soft bound: two racing
 * takers may both pass). Counting the free bits costs one popcount per
 * bitmap word, once per segment taken. */
static int room(nb_arena_t *a, const nb_arena_writer_t *w, uint32_t k) {
  uint32_t keep = atomic_load_explicit(&a->reserve, memory_order_relaxed);
  if (!keep || atomic_load_explicit(&a->reserver, memory_order_relaxed) == w)
    return 1;
  uint64_t nfree = 0;
  for (uint32_t i = 0; i < a->words; i++)
    nfree += (uint64_t)__builtin_popcountll(free_bits(a, i));
  return nfree >= (uint64_t)k + keep;
}

/* Takes k free segments for w, reaping dead processes once when none is
 * free; returns 0 or NB_ENOSPACE. */
static int take(nb_arena_t *a, const nb_arena_writer_t *w, uint32_t k,
                uint32_t *first) {
  if (room(a, w, k) && take_run(a, k, first) == 0) return 0;
  if (!a->held) return NB_ENOSPACE;
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  uint64_t now = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
  uint64_t last = atomic_load_explicit(&a->last_reap_ns, memory_order_relaxed);
  if (now - last < REAP_EVERY_NS) return NB_ENOSPACE;
  atomic_store_explicit(&a->last_reap_ns, now, memory_order_relaxed);
  if (nb_arena_reap(a) == 0 || !room(a, w, k)) return NB_ENOSPACE;
  return take_run(a, k, first);
}

/* ---- writers ---- */

/* Seals the writer's segment: subtracts the unused bias, freeing it when
 * every payload in it was already released; returns nothing. */
static void seal(nb_arena_writer_t *w) {
  nb_arena_t *a = w->a;
  seg_t *g = &a->hot.segs[w->seg];
  /* Owner cleared before the count moves: a process dying in between
   * leaves the bias in place (a leak), never subtracted twice. */
  atomic_store_explicit(&g->owner, 0, memory_order_relaxed);
  atomic_store_explicit(&g->state, SEG_SEALED, memory_order_relaxed);
  drop(a, w->seg, BIAS - (int64_t)w->n);
  w->have = 0;
  w->room = 0;
}

/* Reuses the writer's segment in place when every payload written into it
 * was released; returns 1 when it did. */
static int rewind_seg(nb_arena_writer_t *w) {
  nb_arena_t *a = w->a;
  seg_t *g = &a->hot.segs[w->seg];
  int64_t idle = BIAS - (int64_t)w->n;
  /* Acquire: pairs with the releases that brought the count here, so their
   * reads of the old bytes are done before we overwrite them. Zero while
   * the generation moves makes concurrent retains refuse. */
  if (!atomic_compare_exchange_strong_explicit(&g->live, &idle, 0,
                                               memory_order_acquire,
                                               memory_order_relaxed))
    return 0;
  w->gen = atomic_fetch_add_explicit(&g->gen, 1, memory_order_relaxed) + 1;
  if (a->held) atomic_store_explicit(&g->allocs, 0, memory_order_relaxed);
  atomic_store_explicit(&g->live, BIAS, memory_order_release); /* as claim */
  atomic_thread_fence(memory_order_release);
  w->pos = 0;
  w->n = 0;
  return 1;
}

/* Gives the writer room for need bytes: rewinds, or takes a new segment
 * and seals the old one; returns 0 or NB_ENOSPACE (the old one is kept). */
static int writer_next(nb_arena_writer_t *w) {
  nb_arena_t *a = w->a;
  if (w->have && rewind_seg(w)) return 0;
  uint32_t s;
  if (take(a, w, 1, &s) != 0) return NB_ENOSPACE;
  if (w->have) seal(w);
  w->gen = claim(a, s, 1, SEG_ACTIVE, BIAS);
  w->seg = s;
  w->seg_off = (uint64_t)s << a->hot.seg_shift;
  w->pos = 0;
  w->n = 0;
  w->have = 1;
  return 0;
}

int nb_arena_writer_new(nb_arena_writer_t **out, nb_arena_t *a) {
  if (!out) return NB_EINVAL;
  *out = NULL;
  if (!a) return NB_EINVAL;
  nb_arena_writer_t *w = calloc(1, sizeof *w);
  if (!w) return NB_ENOMEM;
  w->a = a;
  w->data = a->hot.data; /* room 0: the first write takes the slow path */
  *out = w;
  return 0;
}

int nb_arena_writer_reserve(nb_arena_writer_t *w, uint32_t segments) {
  if (!w) return NB_EINVAL;
  nb_arena_t *a = w->a;
  if (segments > a->hot.nsegs) segments = a->hot.nsegs;
  atomic_store_explicit(&a->reserver, segments ? w : NULL,
                        memory_order_relaxed);
  atomic_store_explicit(&a->reserve, segments, memory_order_relaxed);
  return 0;
}

void nb_arena_writer_free(nb_arena_writer_t *w) {
  if (!w) return;
  nb_arena_writer_t *mine = w;
  if (atomic_compare_exchange_strong(&w->a->reserver, &mine, NULL))
    atomic_store_explicit(&w->a->reserve, 0, memory_order_relaxed);
  if (w->have) seal(w);
  free(w);
}

/* Writes a payload longer than a segment into a run of its own, sealed at
 * once with one reference; returns 0, NB_ETOOBIG or NB_ENOSPACE. */
static int write_run(nb_arena_writer_t *w, const void *data, size_t len,
                     uint64_t need, nb_arena_ref_t *ref) {
  nb_arena_t *a = w->a;
  uint64_t k = (need + a->seg_size - 1) >> a->hot.seg_shift;
  if (k > a->hot.nsegs) return NB_ETOOBIG;
  uint32_t s;
  if (take(a, w, (uint32_t)k, &s) != 0) return NB_ENOSPACE;
  uint32_t gen = claim(a, s, (uint32_t)k, SEG_SEALED, 1);
  if (a->held) held_add(a, s, 1);
  uint64_t off = (uint64_t)s << a->hot.seg_shift;
  memcpy(a->hot.data + off, data, len);
  *ref = (nb_arena_ref_t){.offset = off, .len = (uint32_t)len, .segment = s,
                          .gen = gen};
  return 0;
}

/* Writes one payload as the slow path must; returns as nb_arena_write. */
static int write_slow(nb_arena_writer_t *w, const void *data, size_t len,
                      nb_arena_ref_t *ref) {
  if (len > UINT32_MAX) return NB_ETOOBIG;
  nb_arena_t *a = w->a;
  uint64_t need = ((uint64_t)len + NB_ARENA_ALIGN - 1) &
                  ~(uint64_t)(NB_ARENA_ALIGN - 1);
  if (need == 0) need = NB_ARENA_ALIGN;
  if (need > a->seg_size) return write_run(w, data, len, need, ref);
  if (!w->have || w->pos + need > a->seg_size) {
    int rc = writer_next(w);
    if (rc) return rc;
  }
  uint64_t off = w->seg_off + w->pos;
  if (len) memcpy(a->hot.data + off, data, len);
  w->pos += (uint32_t)need;
  w->n++;
  if (a->held) {
    /* allocs before held: a process dying between them leaves one
     * reference unaccounted (a leak), never one subtracted twice. */
    atomic_store_explicit(&a->hot.segs[w->seg].allocs, w->n, memory_order_relaxed);
    held_add(a, w->seg, 1);
  }
  *ref = (nb_arena_ref_t){.offset = off, .len = (uint32_t)len,
                          .segment = w->seg, .gen = w->gen};
  return 0;
}

/* The slow path of nb_arena_write (nb_arena.h has the fast one): bad
 * arguments, a payload larger than a segment, a full segment (rewind, or a
 * new one and a seal) and every write into a file-backed arena (the held
 * table). Leaves w->room at what the fast path may bump next. */
int nb__arena_write_slow(nb_arena_writer_t *w, const void *data, size_t len,
                         nb_arena_ref_t *ref) {
  if (!w || !ref || (len && !data)) return NB_EINVAL;
  int rc = write_slow(w, data, len, ref);
  nb_arena_t *a = w->a;
  /* A file-backed arena keeps room 0: every write comes here and counts
   * itself in the held table. */
  w->room = w->have && !a->held ? a->seg_size - w->pos : 0;
  return rc;
}

int nb_arena_alloc(nb_arena_t *a, const void *data, size_t len,
                   nb_arena_ref_t *ref) {
  if (!a) return NB_EINVAL;
  pthread_mutex_lock(&a->lock);
  int rc = 0;
  if (!a->own) rc = nb_arena_writer_new(&a->own, a);
  if (rc == 0) rc = nb_arena_write(a->own, data, len, ref);
  pthread_mutex_unlock(&a->lock);
  return rc;
}

/* ---- readers ---- */

/* Checking a ref (nb__arena_check) and nb_arena_read are inline in
 * nb_arena.h. */
static inline int check(const nb_arena_t *a, const nb_arena_ref_t *ref) {
  return nb__arena_check(a, ref);
}

int nb_arena_copy(const nb_arena_t *a, const nb_arena_ref_t *ref, void *dst) {
  if (!a || !ref || (!dst && ref->len)) return NB_EINVAL;
  int rc = check(a, ref);
  if (rc) return rc;
  memcpy(dst, a->hot.data + ref->offset, ref->len);
  return nb_arena_valid(a, ref);
}

int nb_arena_valid(const nb_arena_t *a, const nb_arena_ref_t *ref) {
  if (!a || !ref || ref->segment >= a->hot.nsegs) return NB_EINVAL;
  /* Acquire fence (the seqlock reader side): if the copy read any byte a
   * new writer wrote, the load below sees that writer's generation. */
  atomic_thread_fence(memory_order_acquire);
  uint32_t gen = atomic_load_explicit(&a->hot.segs[ref->segment].gen,
                                      memory_order_relaxed);
  return gen == ref->gen ? 0 : NB_ESTALE;
}

int nb_arena_retain(nb_arena_t *a, const nb_arena_ref_t *ref, uint32_t n) {
  if (!a || !ref || n == 0) return NB_EINVAL;
  int rc = check(a, ref);
  if (rc) return rc;
  seg_t *g = &a->hot.segs[ref->segment];
  int64_t cur = atomic_load_explicit(&g->live, memory_order_relaxed);
  do {
    /* Zero: freed, or being rewound; nothing left to keep alive. A count
     * n short of overflowing is no live segment's (a scribbled file):
     * refused too, before the addition could overflow. */
    if (cur <= 0 || cur > INT64_MAX - (int64_t)n) return NB_ESTALE;
    /* Acquire on success: pairs with claim's release store of the count,
     * so the generation re-check below sees a reuse that happened. */
  } while (!atomic_compare_exchange_weak_explicit(
      &g->live, &cur, cur + n, memory_order_acquire, memory_order_relaxed));
  if (atomic_load_explicit(&g->gen, memory_order_relaxed) != ref->gen) {
    drop(a, ref->segment, n); /* counted into a reused segment: undo */
    return NB_ESTALE;
  }
  if (a->held) held_add(a, ref->segment, (int32_t)n);
  return 0;
}

int nb_arena_release(nb_arena_t *a, const nb_arena_ref_t *ref, uint32_t n) {
  if (!a || !ref || n == 0) return NB_EINVAL;
  int rc = check(a, ref);
  if (rc) return rc;
  /* held before live: dying between them leaks, never frees early. */
  if (a->held) held_add(a, ref->segment, -(int32_t)n);
  drop(a, ref->segment, n);
  return 0;
}

/* The releaser's slow paths (nb_arena.h has the inline add and flush). */
void nb__arena_releaser_switch(nb_arena_releaser_t *r, nb_arena_ref_t ref) {
  nb_arena_releaser_flush(r);
  r->ref = ref;
  r->pending = 1;
}

void nb__arena_releaser_drop(nb_arena_releaser_t *r) {
  if (!r->pending) return;
  /* nb_arena_release checks the ref (generation, bounds) before it drops:
   * a batch the caller did not hold is refused whole and counted. */
  if (nb_arena_release(r->arena, &r->ref, r->pending) != 0)
    r->errors += r->pending;
  r->pending = 0;
}

/* ---- processes (file-backed arenas) ---- */

/* Takes (or with wait, waits for) the write lock on byte i of the file;
 * returns 0 or -1 (held by another open file description). */
static int lock_byte(int fd, off_t i, int wait) {
  struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = i,
                     .l_len = 1};
  int rc;
  do rc = fcntl(fd, wait ? F_OFD_SETLKW : F_OFD_SETLK, &fl);
  while (rc != 0 && errno == EINTR);
  return rc;
}

/* Drops the lock on byte i; returns nothing. */
static void unlock_byte(int fd, off_t i) {
  struct flock fl = {.l_type = F_UNLCK, .l_whence = SEEK_SET, .l_start = i,
                     .l_len = 1};
  (void)fcntl(fd, F_OFD_SETLK, &fl);
}

#define LOCK_INIT 0 /* serialises opening, reaping and closing */
#define LOCK_PROC(i) ((off_t)(i) + 1)

/* Drops every reference process slot p holds and seals the segment it was
 * writing; runs under LOCK_INIT with p dead or being closed. */
static void drop_proc(nb_arena_t *a, uint32_t p) {
  for (uint32_t s = 0; s < a->hot.nsegs; s++) {
    seg_t *g = &a->hot.segs[s];
    int64_t d = 0;
    _Atomic uint32_t *h = held_of(a, p, s);
    uint32_t held = atomic_load_explicit(h, memory_order_relaxed);
    if (held) {
      /* Zeroed before the count moves: dying here leaks, never repeats. */
      atomic_store_explicit(h, 0, memory_order_relaxed);
      d += held;
    }
    if (atomic_load_explicit(&g->state, memory_order_relaxed) == SEG_ACTIVE &&
        atomic_load_explicit(&g->owner, memory_order_relaxed) == p + 1) {
      uint32_t n = atomic_load_explicit(&g->allocs, memory_order_relaxed);
      atomic_store_explicit(&g->owner, 0, memory_order_relaxed);
      atomic_store_explicit(&g->state, SEG_SEALED, memory_order_relaxed);
      d += BIAS - (int64_t)n;
    }
    if (d) drop(a, s, d);
  }
}

/* Reaps every dead process but this one, under LOCK_INIT; returns how many,
 * and the number still alive in *alive. */
static int reap_locked(nb_arena_t *a, int self_ok, uint32_t *alive) {
  int reaped = 0;
  uint32_t live = 0;
  for (uint32_t i = 0; i < NB_ARENA_PROCS; i++) {
    if (self_ok && i == a->me) continue;
    if (atomic_load_explicit(&a->procs[i].state, memory_order_acquire) !=
        PROC_LIVE)
      continue;
    /* The lock of a live process is held; getting it means it died. */
    if (lock_byte(a->fd, LOCK_PROC(i), 0) != 0) {
      live++;
      continue;
    }
    drop_proc(a, i);
    atomic_store_explicit(&a->procs[i].state, PROC_FREE, memory_order_release);
    unlock_byte(a->fd, LOCK_PROC(i));
    reaped++;
  }
  if (alive) *alive = live;
  if (reaped) atomic_fetch_add_explicit(&a->reaped, (uint64_t)reaped,
                                        memory_order_relaxed);
  return reaped;
}

/* Empties the arena for a clean start (no other process alive): every
 * segment free with a new generation, no holdings; returns nothing. */
static void clean_start(nb_arena_t *a) {
  for (uint32_t s = 0; s < a->hot.nsegs; s++) {
    seg_t *g = &a->hot.segs[s];
    atomic_fetch_add_explicit(&g->gen, 1, memory_order_relaxed);
    atomic_store_explicit(&g->live, 0, memory_order_relaxed);
    atomic_store_explicit(&g->state, SEG_FREE, memory_order_relaxed);
    atomic_store_explicit(&g->owner, 0, memory_order_relaxed);
    atomic_store_explicit(&g->span, 1, memory_order_relaxed);
    atomic_store_explicit(&g->allocs, 0, memory_order_relaxed);
  }
  for (uint32_t i = 0; i < a->hot.nsegs; i += 64) {
    uint32_t k = a->hot.nsegs - i < 64 ? a->hot.nsegs - i : 64;
    atomic_store_explicit(&a->bitmap[i / 64],
                          k == 64 ? ~0ull : ((1ull << k) - 1),
                          memory_order_relaxed);
  }
  for (size_t i = 0; i < (size_t)NB_ARENA_PROCS * a->hot.nsegs; i++)
    atomic_store_explicit(&a->held[i], 0, memory_order_relaxed);
  for (uint32_t i = 0; i < NB_ARENA_PROCS; i++)
    atomic_store_explicit(&a->procs[i].state, PROC_FREE, memory_order_relaxed);
  /* Release: the emptied tables are published with the new instance. */
  atomic_fetch_add_explicit(&a->hdr->instance, 1, memory_order_release);
}

/* Joins the process table of a freshly mapped file arena; returns 0 or
 * NB_ELIMIT / NB_EIO. */
static int join(nb_arena_t *a) {
  if (lock_byte(a->fd, LOCK_INIT, 1) != 0) return NB_EIO;
  uint32_t alive = 0;
  a->me = NB_ARENA_PROCS; /* not a slot yet: reap everyone dead */
  reap_locked(a, 0, &alive);
  if (alive == 0) clean_start(a);
  int rc = NB_ELIMIT;
  for (uint32_t i = 0; i < NB_ARENA_PROCS; i++) {
    if (atomic_load_explicit(&a->procs[i].state, memory_order_relaxed) !=
        PROC_FREE)
      continue;
    if (lock_byte(a->fd, LOCK_PROC(i), 0) != 0) continue;
    a->me = i;
    atomic_store_explicit(&a->procs[i].pid, (uint32_t)getpid(),
                          memory_order_relaxed);
    atomic_store_explicit(&a->procs[i].state, PROC_LIVE, memory_order_release);
    rc = 0;
    break;
  }
  unlock_byte(a->fd, LOCK_INIT);
  return rc;
}

int nb_arena_reap(nb_arena_t *a) {
  if (!a || !a->held) return 0;
  if (lock_byte(a->fd, LOCK_INIT, 0) != 0) return 0; /* someone else is */
  int n = reap_locked(a, 1, NULL);
  unlock_byte(a->fd, LOCK_INIT);
  return n;
}

/* ---- opening and closing ---- */

int nb_arena_new(nb_arena_t **out, size_t capacity) {
  if (!out) return NB_EINVAL;
  *out = NULL;
  if (capacity == 0) return NB_EINVAL;
  uint32_t ss, ns;
  layout_t l;
  if (geometry(capacity, &ss, &ns) || layout(ns, ss, 0, &l)) return NB_ENOMEM;
  /* Anonymous memory arrives zeroed: every segment free at generation 0. */
  void *p = mmap(NULL, l.size, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return NB_ENOMEM;
  format(p, &l, ss, ns, 0);
  int rc = wrap(out, p, l.size, -1);
  if (rc) munmap(p, l.size);
  return rc;
}

/* Validates the arena file open on fd, maps it and joins it; returns 0,
 * NB_ETRUNC, NB_EBADMAGIC, NB_EBADVER, NB_EINVAL (capacity disagrees),
 * NB_ELIMIT, NB_ENOMEM or NB_EIO. Takes fd on success. */
static int attach(nb_arena_t **out, int fd, size_t capacity) {
  struct stat st;
  if (fstat(fd, &st) != 0) return NB_EIO;
  if (st.st_size < (off_t)HEADER_SIZE) return NB_ETRUNC;
  uint8_t raw[HEADER_SIZE];
  ssize_t got = pread(fd, raw, sizeof raw, 0);
  if (got < 0) return NB_EIO;
  if ((size_t)got < sizeof raw) return NB_ETRUNC;
  /* Fields are copied out of bytes: the file is untrusted until checked. */
  arena_header_t h;
  memcpy(&h, raw, sizeof h);
  if (h.magic != NB_ARENA_MAGIC) {
    uint64_t v1 = 0x314e4552414e424eull; /* the first format (bytes "NBNAREN1") */
    return h.magic == v1 ? NB_EBADVER : NB_EBADMAGIC;
  }
  if (h.version != NB_ARENA_VERSION || h.header_size != HEADER_SIZE ||
      h.procs != NB_ARENA_PROCS || h.shared != 1)
    return NB_EBADVER;
  layout_t l;
  if (h.seg_size < NB_ARENA_SEG_MIN || h.seg_size > NB_ARENA_SEG_MAX ||
      (h.seg_size & (h.seg_size - 1)) || h.nsegs == 0 ||
      h.capacity != (uint64_t)h.nsegs * h.seg_size ||
      layout(h.nsegs, h.seg_size, 1, &l) ||
      (uint64_t)st.st_size != (uint64_t)l.size)
    return NB_ETRUNC;
  if (capacity) {
    uint32_t ss, ns;
    if (geometry(capacity, &ss, &ns) || ss != h.seg_size || ns != h.nsegs)
      return NB_EINVAL;
  }
  void *p = mmap(NULL, l.size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) return errno == ENOMEM ? NB_ENOMEM : NB_EIO;
  nb_arena_t *a;
  int rc = wrap(&a, p, l.size, fd);
  if (rc) {
    munmap(p, l.size);
    return rc;
  }
  rc = join(a);
  if (rc) {
    pthread_mutex_destroy(&a->lock);
    munmap(p, l.size);
    free(a);
    return rc;
  }
  *out = a;
  return 0;
}

/* Opens an unnamed file in path's directory (O_TMPFILE), or a named
 * temporary beside path when the file system cannot (*tmp then holds its
 * name to unlink); returns the fd or -1. */
static int open_unnamed(const char *path, char **tmp) {
  *tmp = NULL;
  size_t plen = strlen(path);
  char *dir = malloc(plen + 8);
  if (!dir) return -1;
  memcpy(dir, path, plen + 1);
  char *slash = strrchr(dir, '/');
  if (!slash) strcpy(dir, ".");
  else if (slash == dir) dir[1] = 0;
  else *slash = 0;
  int fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
  if (fd >= 0 || (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL)) {
    free(dir);
    return fd;
  }
  memcpy(dir, path, plen);
  memcpy(dir + plen, ".XXXXXX", 8);
  fd = mkostemp(dir, O_CLOEXEC);
  if (fd < 0) {
    free(dir);
    return -1;
  }
  *tmp = dir;
  return fd;
}

/* Builds a new arena file and links it to path; returns 0 (then the caller
 * opens path), 1 when path appeared meanwhile (likewise), or an error with
 * errno kept for NB_EIO. */
static int create(const char *path, size_t capacity) {
  uint32_t ss, ns;
  layout_t l;
  if (geometry(capacity, &ss, &ns) || layout(ns, ss, 1, &l)) return NB_ENOMEM;
  char *tmp;
  int fd = open_unnamed(path, &tmp);
  if (fd < 0) return NB_EIO;
  int rc = NB_EIO, saved = 0;
  void *p = MAP_FAILED;
  /* Reserving the blocks now turns a full disk into an error here instead
   * of a SIGBUS on some later write through the mapping. */
  int frc = posix_fallocate(fd, 0, (off_t)l.size);
  if (frc != 0) {
    errno = frc;
    goto done;
  }
  p = mmap(NULL, l.size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) goto done;
  format(p, &l, ss, ns, 1); /* fresh file blocks read as zero */
  munmap(p, l.size);
  p = MAP_FAILED;
  if (tmp) {
    rc = link(tmp, path);
  } else {
    char proc[64];
    snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
    rc = linkat(AT_FDCWD, proc, AT_FDCWD, path, AT_SYMLINK_FOLLOW);
  }
  if (rc != 0) rc = errno == EEXIST ? 1 : NB_EIO;
done:
  saved = errno;
  if (p != MAP_FAILED) munmap(p, l.size);
  close(fd);
  if (tmp) unlink(tmp);
  free(tmp);
  errno = saved;
  return rc;
}

int nb_arena_open(nb_arena_t **out, const char *path, size_t capacity) {
  if (!out) return NB_EINVAL;
  *out = NULL;
  if (!path || !*path) return NB_EINVAL;
  /* A few rounds cover losing the creation race and the winner's file
   * being removed again before we could open it. */
  for (int round = 0; round < 4; round++) {
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd >= 0) {
      int rc = attach(out, fd, capacity);
      if (rc) {
        int saved = errno;
        close(fd);
        errno = saved;
      }
      return rc;
    }
    if (errno != ENOENT) return NB_EIO;
    /* Capacity 0 means "open an existing arena": report the missing file. */
    if (capacity == 0) return NB_EIO;
    int rc = create(path, capacity);
    if (rc < 0) return rc;
  }
  errno = ENOENT;
  return NB_EIO;
}

void nb_arena_free(nb_arena_t *a) {
  if (!a) return;
  nb_arena_writer_free(a->own);
  if (a->held && lock_byte(a->fd, LOCK_INIT, 1) == 0) {
    drop_proc(a, a->me);
    atomic_store_explicit(&a->procs[a->me].state, PROC_FREE,
                          memory_order_release);
    unlock_byte(a->fd, LOCK_PROC(a->me));
    unlock_byte(a->fd, LOCK_INIT);
  }
  if (a->fd >= 0) close(a->fd);
  munmap(a->base, a->map_size);
  pthread_mutex_destroy(&a->lock);
  free(a);
}

/* ---- statistics and helpers ---- */

void nb_arena_stats(const nb_arena_t *a, nb_arena_stats_t *st) {
  memset(st, 0, sizeof *st);
  st->capacity = a->capacity;
  st->segment_size = a->seg_size;
  st->segments = a->hot.nsegs;
  /* Relaxed: a statistic; nothing is read on its strength. */
  for (uint32_t s = 0; s < a->hot.nsegs; s++) {
    uint32_t v = atomic_load_explicit(&a->hot.segs[s].state, memory_order_relaxed);
    if (v == SEG_FREE) st->free++;
    else if (v == SEG_ACTIVE) st->active++;
    else st->sealed++;
  }
  st->in_use = (uint64_t)(st->active + st->sealed) * a->seg_size;
  st->processes = 1;
  if (a->held) {
    st->processes = 0;
    for (uint32_t i = 0; i < NB_ARENA_PROCS; i++)
      if (atomic_load_explicit(&a->procs[i].state, memory_order_relaxed) ==
          PROC_LIVE)
        st->processes++;
  }
  st->reclaimed = atomic_load_explicit(&a->reclaimed, memory_order_relaxed);
  st->reaped = atomic_load_explicit(&a->reaped, memory_order_relaxed);
}

size_t nb_arena_capacity(const nb_arena_t *a) { return (size_t)a->capacity; }

size_t nb_arena_segment_size(const nb_arena_t *a) { return a->seg_size; }

int nb_arena_shared(const nb_arena_t *a) { return a->held != NULL; }

int nb_arena_put_payload(nb_arena_writer_t *w, nb_spike_t *s,
                         const void *data, size_t len) {
  if (!s || (len && !data)) return NB_EINVAL;
  if (len <= NB_PAYLOAD_MAX) return nb_spike_set_payload(s, data, len);
  if (!w) return NB_ENOSPACE;
  nb_arena_ref_t ref;
  int rc = nb_arena_write(w, data, len, &ref);
  if (rc) return rc;
  return nb_spike_set_ref(s, &ref);
}

int nb_arena_get_payload(const nb_arena_t *a, const nb_spike_t *s,
                         const void **data, size_t *len) {
  if (!s || !data || !len) return NB_EINVAL;
  if (!nb_spike_is_ref(s)) {
    *data = s->payload;
    *len = nb_spike_inline_len(s);
    return 0;
  }
  nb_arena_ref_t ref;
  /* A ref-length spike without the marker byte is malformed input. */
  if (!a || nb_spike_get_ref(s, &ref) != 0) return NB_EINVAL;
  int rc = nb_arena_read(a, &ref, data);
  if (rc) return rc;
  *len = ref.len;
  return 0;
}

int nb_arena_release_spike(nb_arena_t *a, const nb_spike_t *s) {
  if (!nb_spike_is_ref(s)) return 0;
  nb_arena_ref_t ref;
  if (!a || nb_spike_get_ref(s, &ref) != 0) return NB_EINVAL;
  return nb_arena_release(a, &ref, 1);
}
