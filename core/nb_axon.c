/* nb_axon.c: the SPMC Disruptor ring of spikes.
 *
 * Sequences are 64-bit and never wrap; spike number q lives in slot
 * q & mask. The producer's write cursor is the count of published spikes;
 * each reader's cursor is the sequence it reads next.
 *
 * GATED MODE. The producer may write sequence q only when every attached
 * reader's cursor is above q - capacity. It caches that bound as `limit`
 * (slowest cursor + capacity) and rescans the reader slots only when
 * next >= limit, so the fast path is a slot copy and one release store.
 * Data visibility: the producer's release store of the write cursor pairs
 * with the reader's acquire load (the reader sees the spike); the reader's
 * release store of its cursor pairs with the producer's acquire load in
 * the rescan (the reader's copy is finished before the slot is reused).
 *
 * ATTACH WHILE PRODUCING. The danger is a reader that starts at a write
 * cursor value W it read, while the producer's cached limit came from a
 * rescan that did not see this reader and allows writing up to m + cap
 * with m > W: the new reader would be lapped. The attach protocol:
 *
 *   reader (attach)                    producer (rescan)
 *   CAS slot FREE -> ATTACHING         (last publish: wc = W_pub, release)
 *   raise high-water slot count        fence(seq_cst)               [F_P]
 *   W1 = wc; cursor = W1               g1 = gen
 *   state = ACTIVE (release)           for slots < high-water:
 *   gen += 1 (release)                   if state == ACTIVE: m = min(cursor)
 *   fence(seq_cst)             [F_R]   g2 = gen; retry when g1 != g2
 *   W2 = wc; start = max(W1, W2)       limit = m + cap, m <= W_pub
 *
 * F_R and F_P are totally ordered. If F_P comes first, the load of W2
 * after F_R sees the store of W_pub before F_P, so start >= W_pub >= m and
 * that rescan's limit m + cap <= start + cap is safe for the new reader. If
 * F_R comes first, the rescan's loads after F_P see the high-water count
 * and the ACTIVE state stored before F_R, and the acquire on the state
 * shows a cursor >= W1: the rescan gates on the reader (conservatively,
 * since W1 <= start). A slot still ATTACHING holds no meaningful cursor and
 * is skipped: a rescan that reads ATTACHING read a state older than ACTIVE,
 * which by the argument above means F_P came first and start >= W_pub.
 *
 * CLONE copies a position P instead of reading the write cursor, and a
 * rescan could read the original reader's cursor after it moved past P yet
 * miss the clone. The generation counter closes that hole: the clone bumps
 * gen after storing ACTIVE and before the original moves on (clone runs on
 * the original's thread), so a rescan that read a moved cursor (acquire,
 * pairing with the reader's release) then sees the new gen in g2; if g1
 * already had it, the acquire on g1 shows the clone's ACTIVE state. Either
 * way the rescan repeats or gates on the clone. A rescan that sees neither
 * reader has m <= the original's start <= P, by the attach argument.
 * tests: attach_while_producing_is_never_lapped in spec/core/test_axon.c.
 *
 * OVERWRITE MODE is a seqlock over the ring. Before writing sequences up
 * to end-1 the producer stores claim_cursor = end and issues a release
 * fence; the reader copies a slot with relaxed atomic word loads, issues an
 * acquire fence and reloads claim_cursor. If any word it copied came from
 * the newer write, the fences pair and the reload shows claim >= that
 * write's end, so the copy of sequence p is intact iff claim <= p + cap.
 * Otherwise the reader jumps to claim - cap, the oldest spike still intact,
 * and reports exactly the sequences it skipped.
 *
 * PARKING (wait kind YIELD_PARK only). Readers park on read_park waiting
 * for the write cursor; the producer parks on gate_park waiting for the
 * slowest reader to reach gate_want. Whoever moves a cursor that the other
 * side may sleep on checks for sleepers after its release store. That
 * costs one seq_cst fence (an mfence or locked op, ~20-40 cycles on x86)
 * and one load per cursor update, the price of the Dekker handshake that
 * makes a lost wake impossible; batch calls pay it once per batch, and the
 * spin strategies never park, so they skip it entirely. A reader wakes the
 * producer only when its advance crosses gate_want, not on every read: the
 * producer stores gate_want before its release increment of sleepers, and
 * the reader loads sleepers with acquire, so a reader that sees the
 * producer asleep sees the target it sleeps for. Which reader crosses it
 * first does not matter: the first advance at or past gate_want either is
 * seen by the producer's re-check or sees the producer's registration.
 * A blocked publisher waits for a quarter of the ring to free up before it
 * resumes, so a fast producer and a slow reader trade one wake per quarter
 * ring instead of one per spike; the reader still has the other three
 * quarters queued, so this costs it no latency. */
#include "nb_axon.h"

#include <stdlib.h>
#include <string.h>

#include "nb__axon_internal.h"
#include "nb_err.h"

/* GCC warns (-Wtsan) that ThreadSanitizer does not model fences. No fence
 * here orders plain data: spikes are handed over by release/acquire on the
 * cursors, and the fences only order atomics (the Dekker wake checks, the
 * attach handshake, the overwrite seqlock), so TSan's verdict on data races
 * stays exact. Only that diagnostic is silenced. */
#if defined(__SANITIZE_THREAD__) && defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wtsan"
#endif

/* A 64-bit word that may alias a spike's bytes, for the seqlock copies. */
typedef uint64_t word_t __attribute__((may_alias));

/* Returns the smaller of two sizes. */
static size_t min_size(size_t a, size_t b) { return a < b ? a : b; }

/* Returns the slot that holds sequence seq. */
static nb_spike_t *slot_of(const nb_axon_t *ax, uint64_t seq) {
  return &ax->buf[seq & ax->mask];
}

nb_axon_opts_t nb_axon_opts_default(void) {
  nb_axon_opts_t o = {NB_AXON_DEFAULT_CAPACITY, NB_AXON_GATED,
                      nb_wait_default(NB_WAIT_SPIN_HINT)};
  return o;
}

int nb_axon_new(nb_axon_t **out, const nb_axon_opts_t *opts) {
  *out = NULL;
  nb_axon_opts_t o = opts ? *opts : nb_axon_opts_default();
  if (o.capacity == 0) o.capacity = NB_AXON_DEFAULT_CAPACITY;
  if (o.capacity < 2 || (o.capacity & (o.capacity - 1))) return NB_EINVAL;
  if (o.mode != NB_AXON_GATED && o.mode != NB_AXON_OVERWRITE) return NB_EINVAL;
  if ((unsigned)o.wait.kind > NB_WAIT_YIELD_PARK) return NB_EINVAL;
#if SIZE_MAX <= UINT32_MAX
  if (o.capacity > SIZE_MAX / sizeof(nb_spike_t)) return NB_ENOMEM;
#endif
  nb_axon_t *ax = aligned_alloc(128, sizeof *ax);
  if (!ax) return NB_ENOMEM;
  memset(ax, 0, sizeof *ax);
  size_t bytes = (size_t)o.capacity * sizeof(nb_spike_t);
  ax->buf = aligned_alloc(64, bytes);
  if (!ax->buf) {
    free(ax);
    return NB_ENOMEM;
  }
  memset(ax->buf, 0, bytes);
  ax->capacity = o.capacity;
  ax->mask = o.capacity - 1u;
  ax->mode = o.mode;
  ax->wait = o.wait;
  ax->wake = o.wait.kind == NB_WAIT_YIELD_PARK;
  atomic_init(&ax->write_cursor, 0);
  atomic_init(&ax->claim_cursor, 0);
  ax->limit = 0; /* forces a rescan on the first publish */
  atomic_init(&ax->read_park.word, 0);
  atomic_init(&ax->read_park.sleepers, 0);
  atomic_init(&ax->gate_park.word, 0);
  atomic_init(&ax->gate_park.sleepers, 0);
  atomic_init(&ax->gate_want, 0);
  atomic_init(&ax->closed, 0);
  atomic_init(&ax->gen, 0);
  atomic_init(&ax->nslots, 0);
  for (int i = 0; i < NB_AXON_MAX_READERS; i++) {
    atomic_init(&ax->slots[i].cursor, 0);
    atomic_init(&ax->slots[i].state, NB__SLOT_FREE);
  }
  *out = ax;
  return 0;
}

void nb_axon_free(nb_axon_t *ax) {
  if (!ax) return;
  free(ax->buf);
  free(ax);
}

uint32_t nb_axon_capacity(const nb_axon_t *ax) { return ax->capacity; }

uint64_t nb_axon_published(const nb_axon_t *ax) {
  /* Acquire pairs with the producer's release store of the cursor. */
  return atomic_load_explicit(&ax->write_cursor, memory_order_acquire);
}

/* ---- producer side ---------------------------------------------------- */

/* Rescans the reader slots; returns the new gate limit (slowest cursor plus
 * capacity, or next plus capacity with no reader), also cached in
 * ax->limit. The protocol is argued at the top of this file. */
static uint64_t refresh_limit(nb_axon_t *ax) {
  uint64_t min;
  _Atomic uint64_t *slowest;
  uint32_t g1, g2;
  do {
    /* F_P: pairs with F_R in attach_at (the attach argument above). */
    atomic_thread_fence(memory_order_seq_cst);
    /* Acquire pairs with the release bump of gen in attach_at: a clone
     * counted in g1 has its ACTIVE state visible to the loads below. */
    g1 = atomic_load_explicit(&ax->gen, memory_order_acquire);
    /* Relaxed: ordered by F_P (or by the acquire on g1) as argued above. */
    uint32_t n = atomic_load_explicit(&ax->nslots, memory_order_relaxed);
    min = ax->next;
    slowest = NULL;
    for (uint32_t i = 0; i < n; i++) {
      nb__axon_slot_t *sl = &ax->slots[i];
      /* Acquire pairs with the ACTIVE release store in attach_at, so the
       * cursor load below sees the attacher's first cursor or a later one. */
      if (atomic_load_explicit(&sl->state, memory_order_acquire) !=
          NB__SLOT_ACTIVE)
        continue;
      /* Acquire pairs with the reader's release store of its cursor: its
       * copy of every slot below that cursor is done before we reuse it. */
      uint64_t c = atomic_load_explicit(&sl->cursor, memory_order_acquire);
      if (c < min) {
        min = c;
        slowest = &sl->cursor;
      }
    }
    /* Acquire: a cursor moved after a clone's gen bump makes g2 differ. */
    g2 = atomic_load_explicit(&ax->gen, memory_order_acquire);
  } while (g1 != g2);
  ax->limit = min + ax->capacity;
  ax->slowest = slowest;
  return ax->limit;
}

/* Returns how many slots past next are free in a gated axon, rescanning
 * when the cache shows fewer than want. */
static uint64_t gated_room(nb_axon_t *ax, uint64_t want) {
  uint64_t room = ax->limit > ax->next ? ax->limit - ax->next : 0;
  if (room >= want) return room;
  uint64_t limit = refresh_limit(ax);
  return limit > ax->next ? limit - ax->next : 0;
}

/* Opens an overwrite write of the sequences below end: readers that copy
 * any of those slots from now on will see claim >= end. Returns nothing. */
static void begin_overwrite(nb_axon_t *ax, uint64_t end) {
  if (end <= ax->claim_hi) return; /* an earlier claim and fence cover it */
  ax->claim_hi = end;
  atomic_store_explicit(&ax->claim_cursor, end, memory_order_relaxed);
  /* Pairs with the acquire fence in oldest_intact, after a reader copy: a
   * reader that copies any word stored after this fence sees claim >= end. */
  atomic_thread_fence(memory_order_release);
}

/* Stores one spike into a slot as relaxed atomic words (overwrite mode,
 * where a lapped reader may be copying the slot at the same time). */
static void store_words(nb_spike_t *dst, const nb_spike_t *src) {
  word_t *d = (word_t *)dst;
  const word_t *s = (const word_t *)src;
  for (int i = 0; i < 8; i++) __atomic_store_n(&d[i], s[i], __ATOMIC_RELAXED);
}

/* Loads one spike from a slot as relaxed atomic words (overwrite mode). */
static void load_words(nb_spike_t *dst, const nb_spike_t *src) {
  word_t *d = (word_t *)dst;
  const word_t *s = (const word_t *)src;
  for (int i = 0; i < 8; i++) d[i] = __atomic_load_n(&s[i], __ATOMIC_RELAXED);
}

/* Writes n spikes to the sequences from seq on; returns nothing. Gated
 * mode copies plainly (no reader can look at these slots); overwrite mode
 * stores atomic words after begin_overwrite. */
static void ring_put(nb_axon_t *ax, uint64_t seq, const nb_spike_t *s,
                     size_t n) {
  if (ax->mode == NB_AXON_OVERWRITE) {
    for (size_t i = 0; i < n; i++) store_words(slot_of(ax, seq + i), &s[i]);
    return;
  }
  size_t at = (size_t)(seq & ax->mask);
  size_t first = min_size(n, ax->capacity - at);
  memcpy(&ax->buf[at], s, first * sizeof *s);
  if (n > first) memcpy(ax->buf, s + first, (n - first) * sizeof *s);
}

int nb_axon_try_publish(nb_axon_t *ax, const nb_spike_t *s) {
  uint64_t q = ax->next;
  if (ax->mode == NB_AXON_OVERWRITE) {
    begin_overwrite(ax, q + 1);
    store_words(slot_of(ax, q), s);
  } else {
    if (q >= ax->limit && q >= refresh_limit(ax)) return NB_EFULL;
    *slot_of(ax, q) = *s;
  }
  nb__axon_publish_to(ax, q + 1);
  return 0;
}

size_t nb_axon_try_publish_batch(nb_axon_t *ax, const nb_spike_t *s,
                                 size_t n) {
  if (n == 0) return 0;
  if (ax->mode == NB_AXON_OVERWRITE) {
    /* Only the last capacity spikes can survive a run this long; the ones
     * before them count as published and overwritten, so readers learn
     * the exact loss from the cursors alone. */
    size_t keep = min_size(n, ax->capacity);
    uint64_t end = ax->next + n;
    begin_overwrite(ax, end);
    ring_put(ax, end - keep, s + (n - keep), keep);
    nb__axon_publish_to(ax, end);
    return n;
  }
  size_t k = (size_t)min_size(n, (size_t)gated_room(ax, n));
  if (k == 0) return 0;
  ring_put(ax, ax->next, s, k);
  nb__axon_publish_to(ax, ax->next + k);
  return k;
}

/* Waits until the slowest reader has freed want slots past next, a reader
 * detaches, or the axon is closed; returns nothing. Called right after a
 * rescan found the ring full, so ax->slowest is set. */
static void wait_gate(nb_axon_t *ax, uint64_t want) {
  if (!ax->slowest) return;
  uint64_t target = ax->next + want - ax->capacity;
  /* Relaxed: published by the release increment of sleepers in park_once
   * (nb_wait.c), which a waking reader loads with acquire. */
  atomic_store_explicit(&ax->gate_want, target, memory_order_relaxed);
  nb_wait_for(&ax->wait, ax->slowest, target, &ax->gate_park, &ax->closed);
}

/* Returns nonzero once nb_axon_close has run. */
static int is_closed(const nb_axon_t *ax) {
  /* Acquire pairs with the release store in nb_axon_close. */
  return atomic_load_explicit(&ax->closed, memory_order_acquire);
}

/* Returns how many free slots a blocked publisher waits for: a quarter of
 * the ring (the hysteresis argued at the top), at least 1, at most need. */
static uint64_t resume_at(const nb_axon_t *ax, uint64_t need) {
  uint64_t q = ax->capacity / 4 ? ax->capacity / 4 : 1;
  return need < q ? need : q;
}

int nb_axon_publish(nb_axon_t *ax, const nb_spike_t *s) {
  for (;;) {
    if (nb_axon_try_publish(ax, s) == 0) return 0;
    if (is_closed(ax)) return NB_ECLOSED;
    wait_gate(ax, resume_at(ax, ax->capacity));
  }
}

int nb_axon_publish_batch(nb_axon_t *ax, const nb_spike_t *s, size_t n) {
  for (;;) {
    size_t k = nb_axon_try_publish_batch(ax, s, n);
    s += k;
    n -= k;
    if (n == 0) return 0;
    if (is_closed(ax)) return NB_ECLOSED;
    wait_gate(ax, resume_at(ax, n));
  }
}

nb_spike_t *nb_axon_claim_at(nb_axon_t *ax, uint32_t i) {
  if (i >= ax->capacity) return NULL;
  uint64_t q = ax->next + i;
  if (ax->mode == NB_AXON_OVERWRITE) begin_overwrite(ax, q + 1);
  else if (q >= ax->limit && q >= refresh_limit(ax)) return NULL;
  return slot_of(ax, q);
}

nb_spike_t *nb_axon_claim(nb_axon_t *ax) { return nb_axon_claim_at(ax, 0); }

uint32_t nb_axon_claimable(nb_axon_t *ax) {
  if (ax->mode == NB_AXON_OVERWRITE) return ax->capacity;
  return (uint32_t)gated_room(ax, 1);
}

void nb_axon_commit(nb_axon_t *ax, uint32_t n) {
  if (n) nb__axon_publish_to(ax, ax->next + n);
}

void nb_axon_close(nb_axon_t *ax) {
  /* Release pairs with is_closed's acquire; nb_parking_wake's fence then
   * orders this store before its sleeper check (the Dekker handshake). */
  atomic_store_explicit(&ax->closed, 1, memory_order_release);
  nb_parking_wake(&ax->read_park);
  nb_parking_wake(&ax->gate_park);
}

/* ---- readers ----------------------------------------------------------- */

/* Attaches a reader at *from, or at the write cursor when from is NULL;
 * returns 0, NB_ELIMIT or NB_ENOMEM. The protocol is argued at the top. */
static int attach_at(nb_axon_t *ax, const uint64_t *from,
                     nb_axon_reader_t **out) {
  *out = NULL;
  nb_axon_reader_t *r = aligned_alloc(64, sizeof *r);
  if (!r) return NB_ENOMEM;
  uint32_t i;
  for (i = 0; i < NB_AXON_MAX_READERS; i++) {
    uint32_t expect = NB__SLOT_FREE;
    /* Acquire pairs with the FREE release store in detach: the previous
     * owner's cursor stores come before ours in the cursor's order. */
    if (atomic_compare_exchange_strong_explicit(
            &ax->slots[i].state, &expect, NB__SLOT_ATTACHING,
            memory_order_acquire, memory_order_relaxed))
      break;
  }
  if (i == NB_AXON_MAX_READERS) {
    free(r);
    return NB_ELIMIT;
  }
  nb__axon_slot_t *sl = &ax->slots[i];
  /* Relaxed: ordered for the producer by F_R below (or gen's release). */
  uint32_t n = atomic_load_explicit(&ax->nslots, memory_order_relaxed);
  while (n < i + 1 && !atomic_compare_exchange_weak_explicit(
                          &ax->nslots, &n, i + 1, memory_order_relaxed,
                          memory_order_relaxed)) {
  }
  uint64_t start =
      from ? *from
           : atomic_load_explicit(&ax->write_cursor, memory_order_relaxed);
  atomic_store_explicit(&sl->cursor, start, memory_order_relaxed);
  /* Release pairs with the rescan's acquire load of the state: a rescan
   * that sees ACTIVE sees this cursor or a later one. */
  atomic_store_explicit(&sl->state, NB__SLOT_ACTIVE, memory_order_release);
  /* Release pairs with the rescan's acquire loads of gen (clone case). */
  atomic_fetch_add_explicit(&ax->gen, 1, memory_order_release);
  /* F_R: pairs with F_P in refresh_limit. */
  atomic_thread_fence(memory_order_seq_cst);
  if (!from) {
    uint64_t w2 = atomic_load_explicit(&ax->write_cursor, memory_order_relaxed);
    if (w2 > start) {
      start = w2;
      /* Release: a producer may now gate on the higher value. */
      atomic_store_explicit(&sl->cursor, start, memory_order_release);
    }
  }
  r->ax = ax;
  r->slot = sl;
  r->pos = start;
  r->wc_cache = start; /* nothing known ready: the first read loads wc */
  *out = r;
  return 0;
}

int nb_axon_reader_attach(nb_axon_t *ax, nb_axon_reader_t **out) {
  return attach_at(ax, NULL, out);
}

int nb_axon_reader_clone(const nb_axon_reader_t *r, nb_axon_reader_t **out) {
  return attach_at(r->ax, &r->pos, out);
}

void nb_axon_reader_detach(nb_axon_reader_t *r) {
  if (!r) return;
  nb_axon_t *ax = r->ax;
  /* UINT64_MAX first: a producer waiting on this cursor sees it pass any
   * target and rescans. Release pairs with the rescan's acquire: our last
   * copies are done before the producer reuses those slots. */
  atomic_store_explicit(&r->slot->cursor, UINT64_MAX, memory_order_release);
  /* Release pairs with the acquire CAS of the slot's next owner. */
  atomic_store_explicit(&r->slot->state, NB__SLOT_FREE, memory_order_release);
  if (ax->wake && ax->mode == NB_AXON_GATED) nb_parking_wake(&ax->gate_park);
  free(r);
}

/* Moves r to newpos and publishes its cursor; wakes a parked producer.
 * Returns nothing. */
static void advance_to(nb_axon_reader_t *r, uint64_t newpos) {
  nb_axon_t *ax = r->ax;
  uint64_t old = r->pos;
  r->pos = newpos;
  /* Release pairs with the producer's acquire load in refresh_limit: our
   * copies of the slots below newpos finish before it overwrites them. */
  atomic_store_explicit(&r->slot->cursor, newpos, memory_order_release);
  if (!ax->wake || ax->mode != NB_AXON_GATED) return;
  /* F_W: pairs with F_S in park_once (nb_wait.c), as nb_parking_wake. */
  atomic_thread_fence(memory_order_seq_cst);
  /* Acquire pairs with park_once's release increment: we see the
   * gate_want the producer stored before it registered. */
  if (atomic_load_explicit(&ax->gate_park.sleepers, memory_order_acquire) == 0)
    return;
  uint64_t want = atomic_load_explicit(&ax->gate_want, memory_order_relaxed);
  if (old < want && want <= newpos) nb_parking_wake(&ax->gate_park);
}

/* Returns how many spikes past r->pos are published, loading the write
 * cursor only when the cached value shows fewer than want. */
static uint64_t ready(nb_axon_reader_t *r, uint64_t want) {
  /* pos can pass the cached cursor after an overwrite-mode lap jump. */
  if (r->wc_cache > r->pos && r->wc_cache - r->pos >= want)
    return r->wc_cache - r->pos;
  /* Acquire pairs with the producer's release store in nb__axon_publish_to. */
  r->wc_cache = atomic_load_explicit(&r->ax->write_cursor, memory_order_acquire);
  return r->wc_cache > r->pos ? r->wc_cache - r->pos : 0;
}

/* Returns the sequence below which slots may be overwritten or being
 * overwritten (claim - capacity), after the acquire fence that validates
 * the copies made before the call. */
static uint64_t oldest_intact(const nb_axon_t *ax) {
  /* Pairs with the producer's release fence in begin_overwrite: if a copy
   * made before this fence read any word of a newer write, the claim load
   * below sees that write's claim. */
  atomic_thread_fence(memory_order_acquire);
  uint64_t c = atomic_load_explicit(&ax->claim_cursor, memory_order_relaxed);
  return c > ax->capacity ? c - ax->capacity : 0;
}

/* Reads one spike in overwrite mode, with one spike known published;
 * returns 0, or NB_ELAPPED with *missed set after jumping to the oldest
 * intact spike. */
static int read_overwrite(nb_axon_reader_t *r, nb_spike_t *out,
                          uint64_t *missed) {
  nb_axon_t *ax = r->ax;
  uint64_t pos = r->pos;
  nb_spike_t tmp;
  load_words(&tmp, slot_of(ax, pos));
  uint64_t lo = oldest_intact(ax);
  if (lo > pos) {
    advance_to(r, lo);
    if (missed) *missed = lo - pos;
    return NB_ELAPPED;
  }
  *out = tmp;
  advance_to(r, pos + 1);
  if (missed) *missed = 0;
  return 0;
}

int nb_axon_try_read(nb_axon_reader_t *r, nb_spike_t *out, uint64_t *missed) {
  if (ready(r, 1) == 0) return NB_EEMPTY;
  if (r->ax->mode == NB_AXON_OVERWRITE) return read_overwrite(r, out, missed);
  *out = *slot_of(r->ax, r->pos);
  advance_to(r, r->pos + 1);
  if (missed) *missed = 0;
  return 0;
}

int nb_axon_read(nb_axon_reader_t *r, nb_spike_t *out, uint64_t *missed) {
  nb_axon_t *ax = r->ax;
  for (;;) {
    int rc = nb_axon_try_read(r, out, missed);
    if (rc != NB_EEMPTY) return rc;
    if (is_closed(ax)) {
      /* A publish may have landed just before the close: drain it. */
      rc = nb_axon_try_read(r, out, missed);
      return rc == NB_EEMPTY ? NB_ECLOSED : rc;
    }
    nb_wait_for(&ax->wait, &ax->write_cursor, r->pos + 1, &ax->read_park,
                &ax->closed);
  }
}

/* Returns r's unconsumed spikes from the atomic cursors only (see
 * nb__neuron_internal.h). */
uint64_t nb__axon_reader_behind(const nb_axon_reader_t *r) {
  const nb_axon_t *ax = r->ax;
  uint64_t wc = atomic_load_explicit(&ax->write_cursor, memory_order_relaxed);
  uint64_t c = atomic_load_explicit(&r->slot->cursor, memory_order_relaxed);
  return wc > c ? wc - c : 0;
}

/* Copies n published spikes from sequence seq on into out; returns nothing.
 * Overwrite mode copies atomic words; the caller validates afterwards. */
static void ring_get(const nb_axon_t *ax, uint64_t seq, nb_spike_t *out,
                     size_t n) {
  if (ax->mode == NB_AXON_OVERWRITE) {
    for (size_t i = 0; i < n; i++) load_words(&out[i], slot_of(ax, seq + i));
    return;
  }
  size_t at = (size_t)(seq & ax->mask);
  size_t first = min_size(n, ax->capacity - at);
  memcpy(out, &ax->buf[at], first * sizeof *out);
  if (n > first) memcpy(out + first, ax->buf, (n - first) * sizeof *out);
}

size_t nb_axon_read_batch(nb_axon_reader_t *r, nb_spike_t *out, size_t max,
                          uint64_t *missed) {
  nb_axon_t *ax = r->ax;
  uint64_t lost = 0;
  if (missed) *missed = 0;
  if (max == 0) return 0;
  uint64_t have = ready(r, max);
  if (have == 0) return 0;
  uint64_t pos = r->pos;
  if (ax->mode == NB_AXON_OVERWRITE) {
    /* Skip what is already known lost before copying it. */
    uint64_t lo = oldest_intact(ax);
    if (lo > pos) {
      lost = lo - pos;
      pos = lo;
    }
    have = r->wc_cache > pos ? r->wc_cache - pos : 0;
  }
  size_t n = have < max ? (size_t)have : max;
  ring_get(ax, pos, out, n);
  if (ax->mode == NB_AXON_OVERWRITE && n) {
    /* The oldest copies may have been overwritten meanwhile: drop them.
     * Older sequences are overwritten first, so the bad ones are a prefix. */
    uint64_t lo = oldest_intact(ax);
    if (lo > pos) {
      uint64_t end = pos + n;
      size_t bad = (size_t)(lo - pos < n ? lo - pos : n);
      lost += lo - pos;
      memmove(out, out + bad, (n - bad) * sizeof *out);
      n -= bad;
      pos = (end > lo ? end : lo) - n; /* pos + n is the next sequence */
    }
  }
  advance_to(r, pos + n);
  if (missed) *missed = lost;
  return n;
}

uint64_t nb_axon_reader_available(const nb_axon_reader_t *r) {
  const nb_axon_t *ax = r->ax;
  /* Acquire pairs with the producer's release store in nb__axon_publish_to. */
  uint64_t wc = atomic_load_explicit(&ax->write_cursor, memory_order_acquire);
  uint64_t from = r->pos;
  if (ax->mode == NB_AXON_OVERWRITE) {
    uint64_t c = atomic_load_explicit(&ax->claim_cursor, memory_order_relaxed);
    if (c > ax->capacity && c - ax->capacity > from) from = c - ax->capacity;
  }
  return wc > from ? wc - from : 0;
}

const nb_spike_t *nb_axon_reader_peek_at(const nb_axon_reader_t *r,
                                         uint64_t i) {
  if (r->ax->mode != NB_AXON_GATED) return NULL;
  /* The cache is reader-private and the reader object is never const
   * itself (attach allocates it), so refreshing it here is sound. */
  nb_axon_reader_t *rw = (nb_axon_reader_t *)r;
  if (ready(rw, i + 1) <= i) return NULL;
  return slot_of(r->ax, r->pos + i);
}

const nb_spike_t *nb__axon_reader_peek_run(nb_axon_reader_t *r, uint64_t i,
                                           uint64_t max, uint32_t *n) {
  *n = 0;
  nb_axon_t *ax = r->ax;
  if (ax->mode != NB_AXON_GATED || max == 0) return NULL;
  uint64_t have = ready(r, i + 1);
  if (have <= i) return NULL;
  uint64_t k = have - i;
  if (k > max) k = max;
  uint64_t seq = r->pos + i;
  uint64_t to_end = ax->capacity - (seq & ax->mask);
  if (k > to_end) k = to_end;
  *n = (uint32_t)k;
  return slot_of(ax, seq);
}

const nb_spike_t *nb_axon_reader_peek(const nb_axon_reader_t *r) {
  return nb_axon_reader_peek_at(r, 0);
}

void nb_axon_reader_advance(nb_axon_reader_t *r, uint64_t n) {
  /* Never move past the write cursor: that would lift the gate on slots
   * the producer has not written yet. */
  uint64_t have = ready(r, n);
  advance_to(r, r->pos + (n < have ? n : have));
}
