/* nb_arena.h: the mmap region that holds payloads larger than 46 bytes,
 * reclaimed segment by segment while other payloads stay alive.
 *
 * The data region is cut into equal segments. A producer allocates through
 * its own writer, which owns one active segment and bumps into it with no
 * atomic operation; a segment's live count is a biased counter (the Linux
 * page_frag trick), so shared counters are touched once per segment and
 * once per release batch, never once per payload. A sealed segment whose
 * count reaches zero is free again; a generation number per segment,
 * bumped each time a segment is taken for writing, makes any reference to
 * its earlier contents read as NB_ESTALE, never as another payload's bytes.
 * docs/payloads.md states the invariants and memory orderings.
 *
 * Concurrency contract: a writer is used by one thread at a time; read,
 * copy, retain and release are lock-free and safe from any thread, and for
 * a file-backed arena from any process mapping it. nb_arena_alloc is the
 * locked convenience for code that has no writer of its own. */
#ifndef NB_ARENA_H
#define NB_ARENA_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "nb_err.h"
#include "nb_spike.h"

#define NB_ARENA_MAGIC 0x32414e455241424eull /* the bytes "NBARENA2" */
#define NB_ARENA_VERSION 2u
#define NB_ARENA_ALIGN 8u
/* BEGIN CONSTANTS: copied into lua/neuronbus/layout.lua */
#define NB_ARENA_PROCS 16u          /* processes sharing one arena file */
#define NB_ARENA_SEG_MIN 4096u      /* smallest segment, bytes */
#define NB_ARENA_SEG_MAX (1u << 20) /* largest segment, bytes */
/* END CONSTANTS */

typedef struct nb_arena_s nb_arena_t;
typedef struct nb_arena_writer_s nb_arena_writer_t;

/* What nb_arena_stats reports; segment counts add up to segments. */
typedef struct nb_arena_stats_s {
  uint64_t capacity;    /* data bytes: segments x segment_size */
  uint64_t in_use;      /* bytes of active and sealed segments */
  uint32_t segment_size;
  uint32_t segments;
  uint32_t free;        /* ready to be taken */
  uint32_t active;      /* owned by a writer */
  uint32_t sealed;      /* full or retired, waiting for their payloads */
  uint32_t processes;   /* live processes mapping the arena (1 if private) */
  uint64_t reclaimed;   /* segments freed since this handle opened */
  uint64_t reaped;      /* dead processes whose references were dropped */
} nb_arena_stats_t;

/* Creates an anonymous (process-private) arena of at least capacity data
 * bytes (rounded up to whole segments: capacity/256 rounded down to a power
 * of two, within NB_ARENA_SEG_MIN..NB_ARENA_SEG_MAX); returns 0, NB_EINVAL
 * for capacity 0, or NB_ENOMEM. */
int nb_arena_new(nb_arena_t **out, size_t capacity);

/* Opens the arena file at path, creating it (rounded as nb_arena_new) when
 * it does not exist; a new file appears whole or not at all. An existing
 * file is checked: NB_EBADMAGIC for a foreign file, NB_EBADVER for another
 * version, NB_ETRUNC when its size does not match its header (capacity 0 =
 * take the file's; another capacity that rounds differently is NB_EINVAL),
 * NB_ELIMIT when NB_ARENA_PROCS processes already map it. Processes that
 * died holding references are reaped first; when no other process is
 * alive the arena starts clean (every earlier reference reads stale).
 * Returns 0 or one of those, or NB_EIO with errno kept. */
int nb_arena_open(nb_arena_t **out, const char *path, size_t capacity);

/* Drops every reference this process still holds (file-backed arenas),
 * unmaps the arena and frees a. Writers must be freed first. */
void nb_arena_free(nb_arena_t *a);

/* Creates a writer: the allocation cursor of one producing thread; returns
 * 0, NB_EINVAL or NB_ENOMEM. */
int nb_arena_writer_new(nb_arena_writer_t **out, nb_arena_t *a);

/* Seals the writer's segment and frees the writer; NULL is a no-op. */
void nb_arena_writer_free(nb_arena_writer_t *w);

/* Keeps the last segments free segments for w alone (0 ends it): other
 * writers of this process get NB_ENOSPACE rather than take them. For a
 * writer whose payloads are consumed promptly (a link receiver) in a
 * process whose producers can fill the arena with payloads that wait on
 * that very receiver (their peer's acks): without room of its own it
 * could not read and both would wait for good. One writer per arena holds
 * the reserve; freeing it ends the reserve. Returns 0 or NB_EINVAL. */
int nb_arena_writer_reserve(nb_arena_writer_t *w, uint32_t segments);

/* Copies len bytes into the writer's segment (a fresh one when it is full;
 * a payload larger than a segment takes a run of whole segments), with one
 * reference held by the caller; fills *ref. Returns 0, NB_ENOSPACE (no
 * free segment, or only another writer's reserve: release payloads and
 * retry; nothing changed, *ref included),
 * NB_ETOOBIG for len >= 4 GiB or longer than the whole arena, or
 * NB_EINVAL. Inline: its fast path (no atomic) is at the end of this
 * header. */
static inline int nb_arena_write(nb_arena_writer_t *w, const void *data,
                                 size_t len, nb_arena_ref_t *ref);

/* As nb_arena_write through the arena's own writer, under a lock: for code
 * without a writer, from any thread. */
int nb_arena_alloc(nb_arena_t *a, const void *data, size_t len,
                   nb_arena_ref_t *ref);

/* Points *data at the bytes of ref after checking its generation
 * (NB_ESTALE) and bounds (NB_EBOUNDS); returns 0 or one of those. The
 * bytes stay valid while the caller holds a reference to the payload.
 * Inline (at the end of this header). */
static inline int nb_arena_read(const nb_arena_t *a, const nb_arena_ref_t *ref,
                                const void **data);

/* Copies the payload of ref into dst (ref->len bytes) and checks, after the
 * copy, that its segment was not reused meanwhile; returns 0, NB_ESTALE
 * (dst then holds no promise) or NB_EBOUNDS. Safe without a reference. */
int nb_arena_copy(const nb_arena_t *a, const nb_arena_ref_t *ref, void *dst);

/* The second half of nb_arena_copy, for a caller that copied the bytes
 * from nb_arena_read itself: returns 0 when ref's segment was not reused
 * since, else NB_ESTALE (what was copied must then be thrown away). */
int nb_arena_valid(const nb_arena_t *a, const nb_arena_ref_t *ref);

/* Adds n references to a payload the caller can name; returns 0, NB_ESTALE
 * when its segment was freed or reused or its count cannot take n more
 * (nothing added), NB_EBOUNDS, or NB_EINVAL for n == 0. */
int nb_arena_retain(nb_arena_t *a, const nb_arena_ref_t *ref, uint32_t n);

/* Drops n references the caller holds; the last one frees the segment once
 * it is sealed. In a file-backed arena each handle counts the references
 * it holds, so a reference must be released through the handle (the
 * process) that holds it. Returns 0, or NB_ESTALE/NB_EBOUNDS (nothing dropped: the
 * caller did not hold it). */
int nb_arena_release(nb_arena_t *a, const nb_arena_ref_t *ref, uint32_t n);

/* Batches releases: consecutive payloads of one segment cost one atomic.
 * Zero-initialise, add, then flush (also before the batch's memory goes).
 * add and flush are inline; the flush's drop is out of line. */
typedef struct nb_arena_releaser_s {
  nb_arena_t *arena;
  nb_arena_ref_t ref; /* last payload added; its segment is pending */
  uint32_t pending;   /* references to drop from that segment */
  uint32_t errors;    /* releases refused (not held) */
} nb_arena_releaser_t;

/* Adds one reference to drop; returns nothing (refusals are counted). */
static inline void nb_arena_releaser_add(nb_arena_releaser_t *r,
                                         const nb_arena_ref_t *ref);

/* Drops what is pending, checking the reference (generation and bounds)
 * as nb_arena_release does; returns nothing. */
static inline void nb_arena_releaser_flush(nb_arena_releaser_t *r);

/* Drops the references held by processes that died while mapping a
 * file-backed arena; returns how many processes were reaped (0 for a
 * private arena, or when another process is reaping). */
int nb_arena_reap(nb_arena_t *a);

/* Fills *st with a snapshot (counts read without stopping anyone). */
void nb_arena_stats(const nb_arena_t *a, nb_arena_stats_t *st);

/* Returns the data capacity in bytes, and the segment size. */
size_t nb_arena_capacity(const nb_arena_t *a);
size_t nb_arena_segment_size(const nb_arena_t *a);

/* Returns 1 when a is file-backed (shareable with other processes). */
int nb_arena_shared(const nb_arena_t *a);

/* Builds a spike payload of any length: inline when len <= 46, else in the
 * arena through w (w may be NULL only for inline payloads: NB_ENOSPACE
 * otherwise); returns 0 or an error from nb_arena_write. */
int nb_arena_put_payload(nb_arena_writer_t *w, nb_spike_t *s,
                         const void *data, size_t len);

/* Points *data and *len at a spike's payload wherever it lives (inline or in
 * the arena); returns 0, NB_ESTALE, NB_EBOUNDS, or NB_EINVAL when the spike
 * holds a ref and a is NULL. */
int nb_arena_get_payload(const nb_arena_t *a, const nb_spike_t *s,
                         const void **data, size_t *len);

/* Drops the reference a spike holds, if its payload is in the arena;
 * returns 0 or as nb_arena_release (0 for inline payloads). */
int nb_arena_release_spike(nb_arena_t *a, const nb_spike_t *s);

/* ======================================================================
 * NOT API: the inline fast paths of nb_arena_write, nb_arena_read and the
 * releaser, and the few internals they need. Nothing below is part of the
 * interface: the struct layouts and nb__ functions may change in any
 * release; use only the functions declared above. (The Concurrency Kit
 * pattern: the common case inline, everything else out of line in
 * nb_arena.c.)
 * ====================================================================== */

/* One row of the segment table (one cache line, in the mapping; a
 * file-backed arena shares it across processes). */
typedef struct nb__arena_seg_s {
  _Atomic int64_t live;    /* biased while active; 0 = free */
  _Atomic uint32_t gen;    /* bumped each time it is taken for writing */
  _Atomic uint32_t state;  /* NB__SEG_* */
  _Atomic uint32_t owner;  /* process slot + 1 while active */
  _Atomic uint32_t span;   /* segments of the run starting here */
  _Atomic uint32_t allocs; /* payloads written by the owner (shared only) */
  uint8_t pad[36];
} nb__arena_seg_t;

enum { NB__SEG_FREE = 0, NB__SEG_ACTIVE = 1, NB__SEG_SEALED = 2,
       NB__SEG_CONT = 3 };

/* The first member of struct nb_arena_s (nb_arena.c): what an inline read
 * needs, fixed when the arena is opened. */
typedef struct nb__arena_hot_s {
  uint8_t *data;          /* the data region */
  nb__arena_seg_t *segs;  /* the segment table */
  uint32_t nsegs, seg_shift;
} nb__arena_hot_t;

/* A writer: one producing thread's allocation cursor. The fast path bumps
 * pos inside the active segment while room allows; room is 0 whenever the
 * slow path must run (no segment yet, or a file-backed arena, whose held
 * table is kept out of line). */
struct nb_arena_writer_s {
  nb_arena_t *a;
  uint8_t *data;     /* a's data region */
  uint64_t seg_off;  /* byte offset of the active segment */
  uint32_t seg, gen; /* the active segment, valid when have */
  uint32_t pos, n;   /* bytes and payloads written into it */
  uint32_t room;     /* bytes the fast path may still bump (a multiple of 8) */
  int have;
};

/* Out of line in nb_arena.c (not API): a new segment, a seal, a rewind, a
 * run of segments, a file-backed arena's held accounting, bad arguments. */
int nb__arena_write_slow(nb_arena_writer_t *w, const void *data, size_t len,
                         nb_arena_ref_t *ref);
/* Not API: flushes r, then makes ref the pending one (ref by value, so
 * the caller's ref never escapes and can stay in registers). */
void nb__arena_releaser_switch(nb_arena_releaser_t *r, nb_arena_ref_t ref);
/* Not API: drops r's pending references through nb_arena_release. */
void nb__arena_releaser_drop(nb_arena_releaser_t *r);

/* Not API: checks a ref's bounds and generation against the segment table;
 * returns 0, NB_ESTALE or NB_EBOUNDS. */
static inline int nb__arena_check(const nb_arena_t *a,
                                  const nb_arena_ref_t *ref) {
  const nb__arena_hot_t *h = (const nb__arena_hot_t *)(const void *)a;
  uint32_t s = ref->segment;
  if (s >= h->nsegs) return NB_EBOUNDS;
  nb__arena_seg_t *g = &h->segs[s];
  /* Acquire: pairs with claim's release, so a reader that sees the
   * generation also sees the state and span it was claimed with. */
  uint32_t gen = atomic_load_explicit(&g->gen, memory_order_acquire);
  if (gen != ref->gen) return NB_ESTALE;
  /* Relaxed: ordered after the acquire load of the generation above. */
  uint32_t st = atomic_load_explicit(&g->state, memory_order_relaxed);
  if (st != NB__SEG_ACTIVE && st != NB__SEG_SEALED) return NB_ESTALE;
  /* Relaxed: as the state. */
  uint64_t span = atomic_load_explicit(&g->span, memory_order_relaxed);
  if (span == 0 || span > h->nsegs - s) return NB_EBOUNDS;
  /* In bounds: aligned, inside the run, and its bytes too (rel wraps
   * to a huge value below the run's start). */
  uint64_t rel = ref->offset - ((uint64_t)s << h->seg_shift);
  uint64_t run_bytes = span << h->seg_shift;
  if (rel % NB_ARENA_ALIGN || rel > run_bytes || ref->len > run_bytes - rel)
    return NB_EBOUNDS;
  return 0;
}

static inline int nb_arena_write(nb_arena_writer_t *w, const void *data,
                                 size_t len, nb_arena_ref_t *ref) {
  /* Fast path: a private arena's active segment has room. len - 1 < room
   * also sends len 0 to the slow path; room is a multiple of 8, so the
   * aligned size fits too. No atomic: the writer owns its segment, whose
   * biased count already covers every payload it will hold. */
  if (__builtin_expect(w && ref && data && len - 1 < (size_t)w->room, 1)) {
    uint32_t need = ((uint32_t)len + (NB_ARENA_ALIGN - 1)) &
                    ~(uint32_t)(NB_ARENA_ALIGN - 1);
    uint64_t off = w->seg_off + w->pos;
    memcpy(w->data + off, data, len);
    w->pos += need;
    w->room -= need;
    w->n++;
    ref->offset = off;
    ref->len = (uint32_t)len;
    ref->segment = w->seg;
    ref->gen = w->gen;
    ref->reserved = 0;
    return 0;
  }
  /* Through a local: the caller's ref does not escape into the call, so
   * the compiler may keep it in registers around the fast path (worth
   * ~0.4 ns a payload in bench_arena). On an error *ref is untouched. */
  nb_arena_ref_t out;
  int rc = nb__arena_write_slow(w, data, len, ref ? &out : NULL);
  if (rc == 0) *ref = out;
  return rc;
}

static inline int nb_arena_read(const nb_arena_t *a, const nb_arena_ref_t *ref,
                                const void **data) {
  if (!a || !ref || !data) return NB_EINVAL;
  int rc = nb__arena_check(a, ref);
  if (rc) return rc;
  *data = ((const nb__arena_hot_t *)(const void *)a)->data + ref->offset;
  return 0;
}

static inline void nb_arena_releaser_add(nb_arena_releaser_t *r,
                                         const nb_arena_ref_t *ref) {
  /* Fast path: another payload of the pending segment and generation. The
   * flush checks the ref before anything is dropped. */
  if (__builtin_expect(r->pending && ref->segment == r->ref.segment &&
                       ref->gen == r->ref.gen, 1)) {
    r->pending++;
    return;
  }
  nb__arena_releaser_switch(r, *ref);
}

static inline void nb_arena_releaser_flush(nb_arena_releaser_t *r) {
  if (r->pending) nb__arena_releaser_drop(r);
}

#endif
