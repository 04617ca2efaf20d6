/* Arena: segment geometry, writers and 8-aligned exact payloads, segment
 * reuse only after seal and release, rewinds, generations and stale refs,
 * exhaustion, runs, retain/release counts, the releaser, forged refs, the
 * spike payload glue, statistics, and file-backed arenas shared between
 * handles and processes (reaping, clean starts, bad files, crash safety). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "neuronbus.h"
#include "nbtest.h"

/* 64 KiB: segments of NB_ARENA_SEG_MIN (4096), 16 of them; payloads of
 * PAY bytes fit PER_SEG to a segment. */
#define SMALL (64u * 1024u)
#define NSEG 16u
#define PAY 1000u
#define PER_SEG 4u

/* Where the shared tables sit in an arena file (see nb_arena.c). */
#define OFF_SEGS (128u + NB_ARENA_PROCS * 64u)
#define SEG_SPAN_AT 20u

static char tmpdir[64];

/* Returns a path in the test's temporary directory (static buffer). */
static const char *tpath(const char *name) {
  static char buf[4][320];
  static int i;
  char *p = buf[i++ & 3];
  snprintf(p, 320, "%s/%s", tmpdir, name);
  return p;
}

/* Fills buf with a pattern derived from seed; returns buf. */
static uint8_t *pattern(uint8_t *buf, size_t len, unsigned seed) {
  for (size_t i = 0; i < len; i++) buf[i] = (uint8_t)(seed * 31u + i * 7u + 1u);
  return buf;
}

/* Returns 1 when the arena bytes of ref equal buf. */
static int reads_back(const nb_arena_t *a, const nb_arena_ref_t *r,
                      const void *buf, size_t len) {
  const void *p;
  if (nb_arena_read(a, r, &p) != 0 || r->len != len) return 0;
  return memcmp(p, buf, len) == 0;
}

/* Returns the arena's statistics. */
static nb_arena_stats_t stats_of(const nb_arena_t *a) {
  nb_arena_stats_t st;
  nb_arena_stats(a, &st);
  return st;
}

/* Returns 1 when the segment counts of st add up. */
static int adds_up(const nb_arena_stats_t *st) {
  return st->free + st->active + st->sealed == st->segments &&
         st->in_use == (uint64_t)(st->active + st->sealed) * st->segment_size &&
         st->capacity == (uint64_t)st->segments * st->segment_size;
}

/* Writes PAY-byte payloads (seeded by their index) until the arena is
 * full; returns how many were written. */
static unsigned fill(nb_arena_writer_t *w, nb_arena_ref_t *refs, unsigned max) {
  uint8_t buf[PAY];
  unsigned n = 0;
  while (n < max && nb_arena_write(w, pattern(buf, PAY, n), PAY, &refs[n]) == 0)
    n++;
  return n;
}

/* Returns 1 when refs[i] holds payload i of fill. */
static int intact(const nb_arena_t *a, const nb_arena_ref_t *r, unsigned i) {
  uint8_t buf[PAY];
  return reads_back(a, r, pattern(buf, PAY, i), PAY);
}

/* ---- geometry and round trips ---- */

static void geometry_rounds_capacity_to_segments(void) {
  static const struct {
    size_t cap;
    uint32_t seg, nsegs;
  } cases[] = {
      {1, 4096, 1},
      {1000, 4096, 1},
      {4096, 4096, 1},
      {4097, 4096, 2},
      {SMALL, 4096, 16},
      {1u << 20, 4096, 256},        /* 1 MiB / 256 = 4096 */
      {2u << 20, 8192, 256},        /* 8192 */
      {(3u << 20) + 5, 8192, 385},  /* 12 KiB rounds down to 8192 */
      {100u << 20, 256u << 10, 400}, /* 400 KiB rounds down to 256 KiB */
      {(size_t)1 << 30, 1u << 20, 1024}, /* 4 MiB clamps to the 1 MiB max */
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    nb_arena_t *a = NULL;
    NBT_EQ(nb_arena_new(&a, cases[i].cap), 0);
    if (!a) continue;
    nb_arena_stats_t st = stats_of(a);
    NBT_EQ(nb_arena_segment_size(a), cases[i].seg);
    NBT_EQ(st.segment_size, cases[i].seg);
    NBT_EQ(st.segments, cases[i].nsegs);
    NBT_EQ(nb_arena_capacity(a), (uint64_t)cases[i].seg * cases[i].nsegs);
    NBT_CHECK(nb_arena_capacity(a) >= cases[i].cap);
    NBT_EQ(st.free, cases[i].nsegs);
    NBT_EQ(st.in_use, 0);
    NBT_EQ(st.processes, 1);
    NBT_EQ(nb_arena_shared(a), 0);
    NBT_CHECK(adds_up(&st));
    nb_arena_free(a);
  }
  nb_arena_t *a = (nb_arena_t *)1;
  NBT_EQ(nb_arena_new(&a, 0), NB_EINVAL);
  NBT_CHECK(a == NULL);
  NBT_EQ(nb_arena_new(NULL, 64), NB_EINVAL);
  nb_arena_free(NULL);
  nb_arena_writer_free(NULL);
}

static void writes_round_trip_8_aligned_with_exact_lengths(void) {
  nb_arena_t *a;
  nb_arena_writer_t *w;
  NBT_EQ(nb_arena_new(&a, SMALL), 0);
  NBT_EQ(nb_arena_writer_new(&w, a), 0);
  uint8_t buf[200];
  nb_arena_ref_t refs[101];
  uint64_t next = 0;
  for (unsigned len = 0; len <= 100; len++) {
    nb_arena_ref_t *r = &refs[len];
    NBT_EQ(nb_arena_write(w, pattern(buf, len, len), len, r), 0);
    NBT_EQ(r->len, len);
    NBT_EQ(r->offset % NB_ARENA_ALIGN, 0);
    NBT_EQ(r->reserved, 0);
    NBT_EQ(r->segment, r->offset / 4096);
    /* Bump allocation: each payload follows the last, 8-aligned (an empty
     * one still takes 8 bytes), or starts the next segment when the rest
     * of this one is too short. */
    uint64_t need = len ? (len + 7) / 8 * 8 : 8;
    if (next % 4096 + need > 4096) next = (next / 4096 + 1) * 4096;
    NBT_EQ(r->offset, next);
    next += need;
  }
  for (unsigned len = 0; len <= 100; len++) {
    NBT_CHECK(reads_back(a, &refs[len], pattern(buf, len, len), len));
    uint8_t out[200];
    memset(out, 0xEE, sizeof out);
    NBT_EQ(nb_arena_copy(a, &refs[len], out), 0);
    NBT_EQ(memcmp(out, buf, len), 0);
    NBT_EQ(out[len], 0xEE); /* exactly len bytes */
  }
  /* The locked convenience writes through the arena's own writer. */
  nb_arena_ref_t r;
  NBT_EQ(nb_arena_alloc(a, "locked", 6, &r), 0);
  NBT_CHECK(reads_back(a, &r, "locked", 6));
  NBT_CHECK(r.segment != refs[0].segment); /* its own segment */
  NBT_EQ(nb_arena_release(a, &r, 1), 0);
  for (unsigned len = 0; len <= 100; len++)
    NBT_EQ(nb_arena_release(a, &refs[len], 1), 0);
  nb_arena_writer_free(w);
  nb_arena_stats_t st = stats_of(a);
  NBT_EQ(st.free, NSEG - 1); /* the arena's own writer keeps its segment */
  NBT_EQ(st.active, 1);
  nb_arena_free(a);
}

static void bad_arguments_are_rejected(void) {
  nb_arena_t *a;
  nb_arena_writer_t *w = (nb_arena_writer_t *)1;
  nb_arena_ref_t r;
  const void *p;
  NBT_EQ(nb_arena_new(&a, SMALL), 0);
  NBT_EQ(nb_arena_writer_new(&w, NULL), NB_EINVAL);
  NBT_CHECK(w == NULL);
  NBT_EQ(nb_arena_writer_new(NULL, a), NB_EINVAL);
  NBT_EQ(nb_arena_writer_new(&w, a), 0);
  NBT_EQ(nb_arena_write(w, NULL, 5, &r), NB_EINVAL);
  NBT_EQ(nb_arena_write(w, "x", 1, NULL), NB_EINVAL);
  NBT_EQ(nb_arena_write(NULL, "x", 1, &r), NB_EINVAL);
  NBT_EQ(nb_arena_write(w, "x", (size_t)UINT32_MAX + 1, &r), NB_ETOOBIG);
  NBT_EQ(nb_arena_alloc(NULL, "x", 1, &r), NB_EINVAL);
  NBT_EQ(nb_arena_read(a, NULL, &p), NB_EINVAL);
  NBT_EQ(nb_arena_write(w, "x", 1, &r), 0);
  NBT_EQ(nb_arena_read(a, &r, NULL), NB_EINVAL);
  NBT_EQ(nb_arena_copy(a, &r, NULL), NB_EINVAL);
  NBT_EQ(nb_arena_retain(a, &r, 0), NB_EINVAL);
  NBT_EQ(nb_arena_release(a, &r, 0), NB_EINVAL);
  NBT_EQ(nb_arena_reap(a), 0); /* private: nobody to reap */
  NBT_EQ(nb_arena_release(a, &r, 1), 0);
  nb_arena_writer_free(w);
  NBT_EQ(stats_of(a).free, NSEG);
  nb_arena_free(a);
}

/* ---- segment lifecycle ---- */

static void a_segment_is_reused_only_when_sealed_and_released(void) {
  nb_arena_t *a;
  nb_arena_writer_t *w;
  NBT_EQ(nb_arena_new(&a, SMALL), 0);
  NBT_EQ(nb_arena_writer_new(&w, a), 0);
  static nb_arena_ref_t refs[NSEG * PER_SEG + 1];
  NBT_EQ(fill(w, refs, NSEG * PER_SEG + 1), NSEG * PER_SEG);
  for (unsigned i = 0; i < NSEG * PER_SEG; i++)
    NBT_EQ(refs[i].segment, i / PER_SEG);
  nb_arena_stats_t st = stats_of(a);
  NBT_EQ(st.free, 0);
  NBT_EQ(st.active, 1);
  NBT_EQ(st.sealed, NSEG - 1);
  NBT_EQ(st.in_use, SMALL);
  NBT_CHECK(adds_up(&st));
  /* All but one payload of segment 0 released: it stays in use. */
  for (unsigned i = 0; i < PER_SEG - 1; i++)
    NBT_EQ(nb_arena_release(a, &refs[i], 1), 0);
  st = stats_of(a);
  NBT_EQ(st.free, 0);
  NBT_EQ(st.sealed, NSEG - 1);
  NBT_EQ(st.reclaimed, 0);
  nb_arena_ref_t r;
  uint8_t buf[PAY];
  NBT_EQ(nb_arena_write(w, pattern(buf, PAY, 99), PAY, &r), NB_ENOSPACE);
  NBT_CHECK(intact(a, &refs[PER_SEG - 1], PER_SEG - 1));
  /* The last one frees it. */
  NBT_EQ(nb_arena_release(a, &refs[PER_SEG - 1], 1), 0);
  st = stats_of(a);
  NBT_EQ(st.free, 1);
  NBT_EQ(st.sealed, NSEG - 2);
  NBT_EQ(st.reclaimed, 1);
  NBT_CHECK(adds_up(&st));
  /* Writes succeed again, into segment 0 with a new generation; the
   * writer's full segment is sealed. */
  NBT_EQ(nb_arena_write(w, pattern(buf, PAY, 99), PAY, &r), 0);
  NBT_EQ(r.segment, 0);
  NBT_EQ(r.gen, refs[0].gen + 1);
  NBT_CHECK(reads_back(a, &r, buf, PAY));
  st = stats_of(a);
  NBT_EQ(st.free, 0);
  NBT_EQ(st.active, 1);
  NBT_EQ(st.sealed, NSEG - 1);
  /* The active segment is not freed while active, even with nothing in
   * it held: the writer still owns it. */
  NBT_EQ(nb_arena_release(a, &r, 1), 0);
  NBT_EQ(stats_of(a).active, 1);
  NBT_EQ(stats_of(a).free, 0);
  for (unsigned i = PER_SEG; i < NSEG * PER_SEG; i++) {
    NBT_CHECK(intact(a, &refs[i], i));
    NBT_EQ(nb_arena_release(a, &refs[i], 1), 0);
  }
  st = stats_of(a);
  NBT_EQ(st.free, NSEG - 1);
  NBT_EQ(st.active, 1);
  nb_arena_writer_free(w); /* seals it: nothing held, so free */
  st = stats_of(a);
  NBT_EQ(st.free, NSEG);
  NBT_EQ(st.in_use, 0);
  NBT_EQ(st.reclaimed, NSEG + 1);
  nb_arena_free(a);
}

static void a_writer_rewinds_a_segment_wholly_released(void) {
  nb_arena_t *a;
  nb_arena_writer_t *w;
  NBT_EQ(nb_arena_new(&a, SMALL), 0);
  NBT_EQ(nb_arena_writer_new(&w, a), 0);
  nb_arena_ref_t refs[PER_SEG], r;
  NBT_EQ(fill(w, refs, PER_SEG), PER_SEG);
  for (unsigned i = 0; i < PER_SEG; i++) NBT_EQ(refs[i].segment, 0);
  for (unsigned i = 0; i < PER_SEG; i++)
    NBT_EQ(nb_arena_release(a, &refs[i], 1), 0);
  /* Full and wholly released: the next write starts it over in place. */
  uint8_t buf[PAY];
  NBT_EQ(nb_arena_write(w, pattern(buf, PAY, 7), PAY, &r), 0);
  NBT_EQ(r.segment, 0);
  NBT_EQ(r.offset, 0);
  NBT_EQ(r.gen, refs[0].gen + 1);
  nb_arena_stats_t st = stats_of(a);
  NBT_EQ(st.active, 1);
  NBT_EQ(st.free, NSEG - 1); /* no other segment taken */
  NBT_EQ(st.sealed, 0);
  const void *p;
  NBT_EQ(nb_arena_read(a, &refs[0], &p), NB_ESTALE); /* same offset, old gen */
  NBT_CHECK(reads_back(a, &r, buf, PAY));
  /* With one payload still held it cannot rewind: a new segment is taken
   * and the old one sealed. */
  nb_arena_ref_t more[PER_SEG - 1];
  for (unsigned i = 0; i < PER_SEG - 1; i++)
    NBT_EQ(nb_arena_write(w, pattern(buf, PAY, i), PAY, &more[i]), 0);
  for (unsigned i = 0; i < PER_SEG - 1; i++)
    NBT_EQ(nb_arena_release(a, &more[i], 1), 0);
  nb_arena_ref_t r2;
  NBT_EQ(nb_arena_write(w, pattern(buf, PAY, 8), PAY, &r2), 0);
  NBT_EQ(r2.segment, 1);
  st = stats_of(a);
  NBT_EQ(st.active, 1);
  NBT_EQ(st.sealed, 1);
  NBT_CHECK(reads_back(a, &r, pattern(buf, PAY, 7), PAY));
  NBT_EQ(nb_arena_release(a, &r, 1), 0);
  NBT_EQ(stats_of(a).sealed, 0);
  NBT_EQ(stats_of(a).free, NSEG - 1);
  NBT_EQ(nb_arena_release(a, &r2, 1), 0);
  nb_arena_writer_free(w);
  NBT_EQ(stats_of(a).free, NSEG);
  nb_arena_free(a);
}

static void old_refs_read_stale_after_reuse_and_change_nothing(void) {
  nb_arena_t *a;
  nb_arena_writer_t *w;
  NBT_EQ(nb_arena_new(&a, SMALL), 0);
  NBT_EQ(nb_arena_writer_new(&w, a), 0);
  nb_arena_ref_t old, fresh;
  NBT_EQ(nb_arena_write(w, "old data", 8, &old), 0);
  NBT_EQ(nb_arena_release(a, &old, 1), 0);
  nb_arena_writer_free(w); /* sealed with nothing held: freed */
  NBT_EQ(stats_of(a).free, NSEG);
  const void *p;
  char out[8];
  /* Freed but not yet reused: stale already. */
  NBT_EQ(nb_arena_read(a, &old, &p), NB_ESTALE);
  NBT_EQ(nb_arena_retain(a, &old, 1), NB_ESTALE);
  NBT_EQ(stats_of(a).free, NSEG);
  NBT_EQ(nb_arena_writer_new(&w, a), 0);
  NBT_EQ(nb_arena_write(w, "new data", 8, &fresh), 0);
  NBT_EQ(fresh.segment, old.segment);
  NBT_EQ(fresh.offset, old.offset);
  NBT_EQ(fresh.gen, old.gen + 1);
  NBT_EQ(nb_arena_read(a, &old, &p), NB_ESTALE);
  NBT_EQ(nb_arena_copy(a, &old, out), NB_ESTALE);
  NBT_EQ(nb_arena_retain(a, &old, 3), NB_ESTALE);
  NBT_EQ(nb_arena_release(a, &old, 1), NB_ESTALE);
  NBT_EQ(nb_arena_release(a, &old, 5), NB_ESTALE);
  nb_arena_releaser_t rel = {.arena = a};
  nb_arena_releaser_add(&rel, &old);
  nb_arena_releaser_flush(&rel);
  NBT_EQ(rel.errors, 1);
  /* Nothing was added or dropped: sealing leaves the fresh payload's one
   * reference, which keeps the segment, and one release frees it. */
  nb_arena_writer_free(w);
  nb_arena_stats_t st = stats_of(a);
  NBT_EQ(st.sealed, 1);
  NBT_EQ(st.free, NSEG - 1);
  NBT_CHECK(reads_back(a, &fresh, "new data", 8));
  NBT_EQ(nb_arena_copy(a, &fresh, out), 0);
  NBT_EQ(memcmp(out, "new data", 8), 0);
  NBT_EQ(nb_arena_release(a, &fresh, 1), 0);
  NBT_EQ(stats_of(a).free, NSEG);
  NBT_EQ(nb_arena_read(a, &fresh, &p), NB_ESTALE);
  NBT_EQ(nb_arena_release(a, &fresh, 1), NB_ESTALE); /* no double free */
  nb_arena_free(a);
}

static void exhaustion_changes_nothing_and_flow_resumes(void) {
  nb_arena_t *a;
  nb_arena_writer_t *w;
  NBT_EQ(nb_arena_new(&a, SMALL), 0);
  NBT_EQ(nb_arena_writer_new(&w, a), 0);
  static nb_arena_ref_t refs[NSEG * PER_SEG];
  NBT_EQ(fill(w, refs, NSEG * PER_SEG), NSEG * PER_SEG);
  nb_arena_stats_t before = stats_of(a);
  nb_arena_ref_t r, untouched;
  memset(&r, 0x5A, sizeof r);
  untouched = r;
  uint8_t buf[3 * 4096];
  NBT_EQ(nb_arena_write(w, buf, PAY, &r), NB_ENOSPACE);
  NBT_EQ(nb_arena_write(w, buf, 9000, &r), NB_ENOSPACE); /* a run */
  NBT_EQ(nb_arena_alloc(a, buf, 8, &r), NB_ENOSPACE);
  NBT_EQ(memcmp(&r, &untouched, sizeof r), 0);
  /* 96 bytes still fit in the writer's segment (4000 of 4096 used). */
  NBT_EQ(nb_arena_write(w, pattern(buf, 96, 1), 96, &r), 0);
  NBT_EQ(r.segment, NSEG - 1);
  NBT_EQ(nb_arena_write(w, buf, 8, &untouched), NB_ENOSPACE);
  nb_arena_stats_t after = stats_of(a);
  NBT_EQ(after.free, before.free);
  NBT_EQ(after.active, before.active);
  NBT_EQ(after.sealed, before.sealed);
  NBT_EQ(after.reclaimed, before.reclaimed);
  for (unsigned i = 0; i < NSEG * PER_SEG; i++) NBT_CHECK(intact(a, &refs[i], i));
  /* Producer/consumer flow: release the oldest, retry, repeatedly. */
  unsigned head = 0, retries = 0;
  for (unsigned k = 0; k < 200; k++) {
    nb_arena_ref_t n;
    int rc;
    while ((rc = nb_arena_write(w, pattern(buf, PAY, k + 1000), PAY, &n)) ==
           NB_ENOSPACE) {
      NBT_CHECK(intact(a, &refs[head % (NSEG * PER_SEG)],
                       head < NSEG * PER_SEG ? head : head + 1000 - NSEG * PER_SEG));
      NBT_EQ(nb_arena_release(a, &refs[head % (NSEG * PER_SEG)], 1), 0);
      head++;
      retries++;
    }
    NBT_EQ(rc, 0);
    NBT_CHECK(reads_back(a, &n, buf, PAY));
    refs[(NSEG * PER_SEG + k) % (NSEG * PER_SEG)] = n;
  }
  NBT_CHECK(retries > 0);
  nb_arena_writer_free(w);
  nb_arena_free(a); /* with refs outstanding: must still unmap cleanly */
}

static void payloads_larger_than_a_segment_take_runs(void) {
  nb_arena_t *a;
  nb_arena_writer_t *w;
  NBT_EQ(nb_arena_new(&a, SMALL), 0);
  NBT_EQ(nb_arena_writer_new(&w, a), 0);
  static uint8_t big[SMALL + 1];
  pattern(big, sizeof big, 3);
  nb_arena_ref_t small, run, r;
  NBT_EQ(nb_arena_write(w, "head", 4, &small), 0); /* segment 0, active */
  NBT_EQ(nb_arena_write(w, big, 10000, &run), 0); /* 3 segments: 1..3 */
  NBT_EQ(run.segment, 1);
  NBT_EQ(run.offset, 4096);
  NBT_EQ(run.len, 10000);
  NBT_CHECK(reads_back(a, &run, big, 10000));
  nb_arena_stats_t st = stats_of(a);
  NBT_EQ(st.active, 1);
  NBT_EQ(st.sealed, 3);
  NBT_EQ(st.free, NSEG - 4);
  /* The writer's segment was not disturbed by the run. */
  NBT_EQ(nb_arena_write(w, "tail", 4, &r), 0);
  NBT_EQ(r.segment, 0);
  NBT_EQ(r.offset, 8);
  /* A continuation segment cannot be named, even with its generation
   * (a fresh arena: every claimed segment is at generation 1). */
  const void *p;
  nb_arena_ref_t f = {.offset = 2 * 4096, .len = 8, .segment = 2, .gen = 1};
  NBT_EQ(run.gen, 1);
  NBT_EQ(nb_arena_read(a, &f, &p), NB_ESTALE);
  NBT_EQ(nb_arena_retain(a, &f, 1), NB_ESTALE);
  NBT_EQ(nb_arena_release(a, &f, 1), NB_ESTALE);
  /* Offsets inside the run are in bounds, past its end are not. */
  f = run;
  f.offset = 4096 + 3 * 4096 - 8;
  f.len = 8;
  NBT_EQ(nb_arena_read(a, &f, &p), 0);
  f.len = 9;
  NBT_EQ(nb_arena_read(a, &f, &p), NB_EBOUNDS);
  NBT_EQ(nb_arena_release(a, &run, 1), 0);
  st = stats_of(a);
  NBT_EQ(st.sealed, 0);
  NBT_EQ(st.free, NSEG - 1);
  NBT_EQ(nb_arena_read(a, &run, &p), NB_ESTALE);
  /* Beyond the arena: too big, whatever is free. */
  NBT_EQ(nb_arena_write(w, big, SMALL + 1, &r), NB_ETOOBIG);
  /* The whole arena as one run needs every segment, the writer's too. */
  NBT_EQ(nb_arena_write(w, big, SMALL, &r), NB_ENOSPACE);
  NBT_EQ(nb_arena_release(a, &small, 1), 0);
  NBT_EQ(nb_arena_release(a, &r, 1), 0); /* "tail" */
  nb_arena_writer_free(w);
  NBT_EQ(stats_of(a).free, NSEG);
  NBT_EQ(nb_arena_writer_new(&w, a), 0);
  NBT_EQ(nb_arena_write(w, big, SMALL, &r), 0);
  NBT_EQ(r.segment, 0);
  NBT_EQ(stats_of(a).free, 0);
  NBT_CHECK(reads_back(a, &r, big, SMALL));
  /* A run cannot fit in free segments that are not contiguous. */
  NBT_EQ(nb_arena_release(a, &r, 1), 0);
  nb_arena_ref_t one[NSEG];
  NBT_EQ(fill(w, one, NSEG), NSEG); /* 4 segments, one active */
  for (unsigned i = 0; i < NSEG; i += 2 * PER_SEG)
    for (unsigned j = 0; j < PER_SEG; j++)
      NBT_EQ(nb_arena_release(a, &one[i + j], 1), 0); /* segments 0 and 2 */
  NBT_EQ(stats_of(a).free, NSEG - 2);
  NBT_EQ(nb_arena_write(w, big, (NSEG - 3) * 4096, &r), NB_ENOSPACE);
  NBT_EQ(nb_arena_write(w, big, (NSEG - 4) * 4096, &r), 0);
  NBT_EQ(r.segment, 4);
  NBT_EQ(nb_arena_release(a, &r, 1), 0);
  nb_arena_writer_free(w);
  nb_arena_free(a);
}

static void retain_and_release_take_counts(void) {
  nb_arena_t *a;
  nb_arena_writer_t *w;
  NBT_EQ(nb_arena_new(&a, SMALL), 0);
  NBT_EQ(nb_arena_writer_new(&w, a), 0);
  nb_arena_ref_t r;
  NBT_EQ(nb_arena_write(w, "abcdef", 6, &r), 0);
  NBT_EQ(nb_arena_retain(a, &r, 5), 0); /* 6 references */
  nb_arena_writer_free(w);
  NBT_EQ(nb_arena_release(a, &r, 3), 0);
  NBT_EQ(stats_of(a).sealed, 1);
  NBT_EQ(nb_arena_release(a, &r, 2), 0);
  NBT_EQ(stats_of(a).sealed, 1);
  NBT_CHECK(reads_back(a, &r, "abcdef", 6));
  NBT_EQ(nb_arena_retain(a, &r, 1), 0);
  NBT_EQ(nb_arena_release(a, &r, 2), 0); /* the last two */
  NBT_EQ(stats_of(a).free, NSEG);
  NBT_EQ(nb_arena_retain(a, &r, 1), NB_ESTALE); /* no revival */
  NBT_EQ(nb_arena_release(a, &r, 1), NB_ESTALE);
  NBT_EQ(stats_of(a).free, NSEG);
  nb_arena_free(a);
}

static void the_releaser_batches_by_segment(void) {
  nb_arena_t *a;
  nb_arena_writer_t *w;
  NBT_EQ(nb_arena_new(&a, SMALL), 0);
  NBT_EQ(nb_arena_writer_new(&w, a), 0);
  nb_arena_ref_t refs[3 * PER_SEG];
  NBT_EQ(fill(w, refs, 3 * PER_SEG), 3 * PER_SEG); /* segments 0, 1, 2 */
  nb_arena_writer_free(w);
  nb_arena_releaser_t rel = {.arena = a};
  /* A batch of one segment is pending until another segment comes. */
  for (unsigned i = 0; i < PER_SEG; i++) nb_arena_releaser_add(&rel, &refs[i]);
  NBT_EQ(rel.pending, PER_SEG);
  NBT_EQ(stats_of(a).sealed, 3);
  nb_arena_releaser_add(&rel, &refs[PER_SEG]);
  NBT_EQ(rel.pending, 1);
  NBT_EQ(stats_of(a).sealed, 2); /* segment 0 went in one release */
  NBT_EQ(stats_of(a).reclaimed, 1);
  /* Interleaved segments flush at every change and still add up. */
  for (unsigned i = 1; i < PER_SEG; i++) {
    nb_arena_releaser_add(&rel, &refs[2 * PER_SEG + i - 1]);
    nb_arena_releaser_add(&rel, &refs[PER_SEG + i]);
  }
  NBT_EQ(stats_of(a).sealed, 2);
  nb_arena_releaser_add(&rel, &refs[3 * PER_SEG - 1]);
  NBT_EQ(stats_of(a).sealed, 1); /* segment 1 done, 2's last pending */
  nb_arena_releaser_flush(&rel);
  NBT_EQ(rel.pending, 0);
  NBT_EQ(rel.errors, 0);
  NBT_EQ(stats_of(a).free, NSEG);
  /* Releases of references not held are counted, not applied; a flush
   * with nothing pending does nothing. */
  for (unsigned i = 0; i < 3 * PER_SEG; i++) nb_arena_releaser_add(&rel, &refs[i]);
  nb_arena_releaser_flush(&rel);
  NBT_EQ(rel.errors, 3 * PER_SEG);
  nb_arena_releaser_flush(&rel);
  NBT_EQ(rel.errors, 3 * PER_SEG);
  NBT_EQ(stats_of(a).free, NSEG);
  nb_arena_free(a);
}

static void forged_refs_are_refused(void) {
  nb_arena_t *a;
  nb_arena_writer_t *w;
  NBT_EQ(nb_arena_new(&a, SMALL), 0);
  NBT_EQ(nb_arena_writer_new(&w, a), 0);
  nb_arena_ref_t r, f;
  NBT_EQ(nb_arena_write(w, "0123456789abcdef", 16, &r), 0);
  nb_arena_writer_free(w); /* sealed, one reference */
  const void *p;
  char out[64];
  struct {
    nb_arena_ref_t ref;
    int want;
  } cases[] = {
      {{.offset = r.offset, .len = 16, .segment = NSEG, .gen = r.gen}, NB_EBOUNDS},
      {{.offset = r.offset, .len = 16, .segment = UINT32_MAX, .gen = r.gen},
       NB_EBOUNDS},
      {{.offset = r.offset, .len = 16, .segment = 0, .gen = r.gen + 1}, NB_ESTALE},
      {{.offset = r.offset, .len = 16, .segment = 0, .gen = r.gen - 1}, NB_ESTALE},
      {{.offset = 4096, .len = 8, .segment = 0, .gen = r.gen}, NB_EBOUNDS},
      {{.offset = 4096 - 8, .len = 16, .segment = 0, .gen = r.gen}, NB_EBOUNDS},
      {{.offset = 4, .len = 8, .segment = 0, .gen = r.gen}, NB_EBOUNDS},
      {{.offset = 0, .len = UINT32_MAX, .segment = 0, .gen = r.gen}, NB_EBOUNDS},
      {{.offset = UINT64_MAX - 7, .len = 16, .segment = 0, .gen = r.gen},
       NB_EBOUNDS},
      {{.offset = 8 * 4096, .len = 8, .segment = 0, .gen = r.gen}, NB_EBOUNDS},
      /* A free segment, at the generation it would have. */
      {{.offset = 4096, .len = 8, .segment = 1, .gen = 0}, NB_ESTALE},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    f = cases[i].ref;
    NBT_EQ(nb_arena_read(a, &f, &p), cases[i].want);
    NBT_EQ(nb_arena_copy(a, &f, out), cases[i].want);
    NBT_EQ(nb_arena_retain(a, &f, 1), cases[i].want);
    NBT_EQ(nb_arena_release(a, &f, 1), cases[i].want);
  }
  /* The edge of the segment is in bounds, and nothing above counted. */
  f = r;
  f.offset = 4096 - 8;
  f.len = 8;
  NBT_EQ(nb_arena_read(a, &f, &p), 0);
  NBT_EQ(stats_of(a).sealed, 1);
  NBT_CHECK(reads_back(a, &r, "0123456789abcdef", 16));
  NBT_EQ(nb_arena_release(a, &r, 1), 0);
  NBT_EQ(stats_of(a).free, NSEG);
  nb_arena_free(a);
}

static void payloads_go_inline_or_to_the_arena(void) {
  nb_arena_t *a;
  nb_arena_writer_t *w;
  NBT_EQ(nb_arena_new(&a, SMALL), 0);
  NBT_EQ(nb_arena_writer_new(&w, a), 0);
  uint8_t big[300];
  pattern(big, sizeof big, 9);
  nb_spike_t s;
  const void *p;
  size_t n;
  nb_spike_init(&s, 2, NB_EXCITATORY, 0);
  NBT_EQ(nb_arena_put_payload(NULL, &s, big, 46), 0); /* inline: no writer */
  NBT_EQ(nb_spike_is_ref(&s), 0);
  NBT_EQ(stats_of(a).free, NSEG);
  NBT_EQ(nb_arena_get_payload(NULL, &s, &p, &n), 0);
  NBT_EQ(n, 46);
  NBT_EQ(memcmp(p, big, 46), 0);
  NBT_EQ(nb_arena_release_spike(a, &s), 0);
  NBT_EQ(nb_arena_put_payload(w, &s, big, 47), 0);
  NBT_EQ(nb_spike_is_ref(&s), 1);
  NBT_EQ(nb_arena_get_payload(a, &s, &p, &n), 0);
  NBT_EQ(n, 47);
  NBT_EQ(memcmp(p, big, 47), 0);
  NBT_EQ(nb_arena_get_payload(NULL, &s, &p, &n), NB_EINVAL);
  nb_arena_ref_t r;
  NBT_EQ(nb_spike_get_ref(&s, &r), 0);
  NBT_EQ(r.len, 47);
  nb_spike_t t;
  nb_spike_init(&t, 2, NB_EXCITATORY, 0);
  NBT_EQ(nb_arena_put_payload(NULL, &t, big, 47), NB_ENOSPACE);
  NBT_EQ(nb_arena_put_payload(w, &t, big, 300), 0);
  NBT_EQ(nb_arena_get_payload(a, &t, &p, &n), 0);
  NBT_EQ(n, 300);
  NBT_EQ(memcmp(p, big, 300), 0);
  nb_arena_writer_free(w);
  NBT_EQ(nb_arena_release_spike(a, &s), 0);
  NBT_EQ(stats_of(a).sealed, 1);
  NBT_EQ(nb_arena_release_spike(a, &t), 0);
  NBT_EQ(stats_of(a).free, NSEG);
  NBT_EQ(nb_arena_get_payload(a, &s, &p, &n), NB_ESTALE);
  NBT_EQ(nb_arena_release_spike(a, &t), NB_ESTALE);
  NBT_EQ(nb_arena_release_spike(NULL, &t), NB_EINVAL);
  nb_arena_free(a);
}

static void stats_add_up_under_a_random_workload(void) {
  nb_arena_t *a;
  nb_arena_writer_t *w[3];
  NBT_EQ(nb_arena_new(&a, SMALL * 4), 0); /* 64 segments of 4096 */
  for (int i = 0; i < 3; i++) NBT_EQ(nb_arena_writer_new(&w[i], a), 0);
  enum { KEEP = 256 };
  static nb_arena_ref_t keep[KEEP];
  static uint8_t have[KEEP];
  static uint8_t buf[9000];
  uint32_t x = 12345;
  unsigned bad = 0;
  for (unsigned k = 0; k < 20000; k++) {
    x = x * 1103515245u + 12345u;
    unsigned slot = (x >> 8) % KEEP;
    if (have[slot]) {
      if (!reads_back(a, &keep[slot], pattern(buf, keep[slot].len, slot),
                      keep[slot].len))
        bad++;
      NBT_EQ(nb_arena_release(a, &keep[slot], 1), 0);
      have[slot] = 0;
    } else {
      size_t len = (x >> 20) % 64 == 0 ? 5000 + (x >> 4) % 4000 : PAY;
      int rc = nb_arena_write(w[x % 3], pattern(buf, len, slot), len, &keep[slot]);
      NBT_CHECK(rc == 0 || rc == NB_ENOSPACE);
      have[slot] = rc == 0;
    }
    nb_arena_stats_t st = stats_of(a);
    if (!adds_up(&st) || st.active > 3) bad++;
  }
  NBT_EQ(bad, 0);
  for (unsigned i = 0; i < KEEP; i++)
    if (have[i]) NBT_EQ(nb_arena_release(a, &keep[i], 1), 0);
  nb_arena_stats_t st = stats_of(a);
  NBT_EQ(st.sealed, 0);
  NBT_CHECK(st.active <= 3);
  for (int i = 0; i < 3; i++) nb_arena_writer_free(w[i]);
  st = stats_of(a);
  NBT_EQ(st.free, st.segments);
  NBT_CHECK(st.reclaimed > 64);
  nb_arena_free(a);
}

/* ---- threads ---- */

typedef struct tjob_s {
  nb_arena_t *a;
  unsigned id, bad, full;
} tjob_t;

/* Writes payloads through its own writer, keeps a window of them, checks
 * each before releasing it; returns NULL. */
static void *thread_writer(void *arg) {
  tjob_t *j = arg;
  nb_arena_writer_t *w;
  if (nb_arena_writer_new(&w, j->a) != 0) {
    j->bad++;
    return NULL;
  }
  enum { WIN = 32 };
  nb_arena_ref_t win[WIN];
  unsigned seeds[WIN];
  uint8_t buf[2100], chk[2100];
  nb_arena_releaser_t rel = {.arena = j->a};
  for (unsigned i = 0; i < 20000 + WIN; i++) {
    unsigned s = i % WIN;
    if (i >= WIN) {
      size_t len = win[s].len;
      if (nb_arena_copy(j->a, &win[s], chk) != 0 ||
          memcmp(chk, pattern(buf, len, seeds[s]), len) != 0)
        j->bad++;
      if (i & 1) nb_arena_releaser_add(&rel, &win[s]);
      else if (nb_arena_release(j->a, &win[s], 1) != 0) j->bad++;
    }
    if (i >= 20000) continue;
    seeds[s] = j->id * 100000u + i;
    size_t len = 47 + (i * 37u) % 2000;
    int rc;
    while ((rc = nb_arena_write(w, pattern(buf, len, seeds[s]), len,
                                &win[s])) == NB_ENOSPACE) {
      j->full++;
      nb_arena_releaser_flush(&rel);
      sched_yield();
    }
    if (rc) j->bad++;
  }
  nb_arena_releaser_flush(&rel);
  j->bad += rel.errors;
  nb_arena_writer_free(w);
  return NULL;
}

static void four_threads_write_disjoint_payloads(void) {
  nb_arena_t *a;
  NBT_EQ(nb_arena_new(&a, 1u << 20), 0); /* 256 segments of 4096 */
  tjob_t jobs[4];
  pthread_t th[4];
  for (unsigned i = 0; i < 4; i++) {
    jobs[i] = (tjob_t){.a = a, .id = i};
    pthread_create(&th[i], NULL, thread_writer, &jobs[i]);
  }
  unsigned bad = 0;
  for (unsigned i = 0; i < 4; i++) {
    pthread_join(th[i], NULL);
    bad += jobs[i].bad;
  }
  NBT_EQ(bad, 0);
  nb_arena_stats_t st = stats_of(a);
  NBT_EQ(st.free, st.segments);
  nb_arena_free(a);
}

/* ---- file-backed arenas ---- */

/* Returns the size of the file at path, or -1. */
static long long file_size(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 ? (long long)st.st_size : -1;
}

/* Returns how many entries of the temporary directory are not named keep
 * (NULL: counts every entry). */
static int others_in_tmpdir(const char *keep) {
  DIR *d = opendir(tmpdir);
  int others = 0;
  for (struct dirent *e; d && (e = readdir(d));)
    if (e->d_name[0] != '.' && (!keep || strcmp(e->d_name, keep) != 0)) others++;
  if (d) closedir(d);
  return others;
}

static void file_arena_reopens_with_the_same_bytes(void) {
  const char *path = tpath("reopen.arena");
  nb_arena_t *a, *b;
  nb_arena_writer_t *w;
  uint8_t buf[5000];
  nb_arena_ref_t r1, r2;
  mode_t old = umask(0);
  NBT_EQ(nb_arena_open(&a, path, SMALL), 0);
  umask(old);
  struct stat st;
  NBT_EQ(stat(path, &st), 0);
  NBT_EQ(st.st_mode & 0777, 0600); /* whatever the umask */
  NBT_EQ(nb_arena_shared(a), 1);
  NBT_EQ(nb_arena_capacity(a), SMALL);
  long long size = file_size(path);
  NBT_CHECK(size > (long long)SMALL);
  NBT_EQ(nb_arena_writer_new(&w, a), 0);
  NBT_EQ(nb_arena_write(w, pattern(buf, 200, 5), 200, &r1), 0);
  NBT_EQ(nb_arena_write(w, pattern(buf, 5000, 6), 5000, &r2), 0);
  nb_arena_writer_free(w);
  /* A second handle keeps them alive across a's close and reopen. */
  NBT_EQ(nb_arena_open(&b, path, 0), 0);
  NBT_EQ(nb_arena_retain(b, &r1, 1), 0);
  NBT_EQ(nb_arena_retain(b, &r2, 1), 0);
  nb_arena_free(a); /* drops a's references, not b's */
  NBT_EQ(nb_arena_open(&a, path, 0), 0); /* 0: take the file's capacity */
  NBT_EQ(nb_arena_capacity(a), SMALL);
  NBT_EQ(file_size(path), size);
  NBT_CHECK(reads_back(a, &r1, pattern(buf, 200, 5), 200));
  NBT_CHECK(reads_back(a, &r2, pattern(buf, 5000, 6), 5000));
  nb_arena_stats_t s = stats_of(a);
  NBT_EQ(s.processes, 2);
  NBT_EQ(s.sealed, 3);
  NBT_CHECK(adds_up(&s));
  nb_arena_t *c = (nb_arena_t *)1;
  NBT_EQ(nb_arena_open(&c, path, 2 * SMALL), NB_EINVAL); /* other geometry */
  NBT_CHECK(c == NULL);
  NBT_EQ(nb_arena_open(&c, path, SMALL - 100), 0); /* rounds the same */
  nb_arena_free(c);
  nb_arena_free(b);
  NBT_EQ(stats_of(a).free, NSEG); /* b's references went with it */
  nb_arena_free(a);
  NBT_EQ(others_in_tmpdir("reopen.arena"), 0); /* no temporary left */
  unlink(path);
}

static void two_handles_see_each_others_bytes(void) {
  const char *path = tpath("shared.arena");
  nb_arena_t *a, *b;
  nb_arena_writer_t *wa, *wb;
  nb_arena_ref_t ra = {0}, rb = {0}; /* read even when a write failed */
  NBT_EQ(nb_arena_open(&a, path, SMALL), 0);
  NBT_EQ(nb_arena_open(&b, path, SMALL), 0);
  NBT_EQ(stats_of(a).processes, 2); /* one OFD lock each */
  NBT_EQ(stats_of(b).processes, 2);
  NBT_EQ(nb_arena_writer_new(&wa, a), 0);
  NBT_EQ(nb_arena_writer_new(&wb, b), 0);
  NBT_EQ(nb_arena_write(wa, "from handle a, long enough", 26, &ra), 0);
  NBT_EQ(nb_arena_write(wb, "from handle b", 13, &rb), 0);
  NBT_CHECK(ra.segment != rb.segment);
  NBT_CHECK(reads_back(b, &ra, "from handle a, long enough", 26));
  NBT_CHECK(reads_back(a, &rb, "from handle b", 13));
  nb_arena_stats_t s = stats_of(a);
  NBT_EQ(s.active, 2);
  NBT_EQ(s.free, NSEG - 2);
  /* A release through one handle of a reference taken through it. */
  NBT_EQ(nb_arena_retain(b, &ra, 1), 0);
  NBT_EQ(nb_arena_release(b, &ra, 1), 0);
  nb_arena_writer_free(wa);
  NBT_EQ(stats_of(b).sealed, 1); /* ra still held by a */
  nb_arena_writer_free(wb);
  /* Closing b drops what b held (rb): its segment is free for a. */
  nb_arena_free(b);
  s = stats_of(a);
  NBT_EQ(s.processes, 1);
  NBT_EQ(s.sealed, 1);
  NBT_EQ(s.free, NSEG - 1);
  const void *p;
  NBT_EQ(nb_arena_read(a, &rb, &p), NB_ESTALE);
  NBT_CHECK(reads_back(a, &ra, "from handle a, long enough", 26));
  NBT_EQ(nb_arena_release(a, &ra, 1), 0);
  NBT_EQ(stats_of(a).free, NSEG);
  nb_arena_free(a);
  unlink(path);
}

/* Reads exactly len bytes from fd; returns 0 or -1. */
static int read_all(int fd, void *buf, size_t len) {
  uint8_t *p = buf;
  while (len) {
    ssize_t n = read(fd, p, len);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return -1;
    p += n;
    len -= (size_t)n;
  }
  return 0;
}

enum { CHILD_REFS = 10 };

/* In a child: opens path, writes CHILD_REFS payloads of PAY bytes (three
 * segments, the last one active), retains the first twice more, sends the
 * refs down fd; returns 0 or an exit code. */
static int child_writes(const char *path, size_t cap, int fd) {
  nb_arena_t *c;
  nb_arena_writer_t *w;
  nb_arena_ref_t r[CHILD_REFS];
  uint8_t buf[PAY];
  if (nb_arena_open(&c, path, cap) != 0) return 2;
  if (nb_arena_writer_new(&w, c) != 0) return 3;
  for (unsigned i = 0; i < CHILD_REFS; i++)
    if (nb_arena_write(w, pattern(buf, PAY, 500 + i), PAY, &r[i]) != 0) return 4;
  if (nb_arena_retain(c, &r[0], 2) != 0) return 5;
  if (write(fd, r, sizeof r) != (ssize_t)sizeof r) return 6;
  return 0;
}

static void a_dead_childs_references_are_reaped(void) {
  const char *path = tpath("reap.arena");
  nb_arena_t *a;
  nb_arena_writer_t *w;
  nb_arena_ref_t mine;
  NBT_EQ(nb_arena_open(&a, path, SMALL), 0);
  NBT_EQ(nb_arena_writer_new(&w, a), 0);
  NBT_EQ(nb_arena_write(w, "parent first", 12, &mine), 0);
  int fds[2];
  NBT_EQ(pipe(fds), 0);
  fflush(stdout);
  pid_t pid = fork();
  if (pid == 0) {
    close(fds[0]);
    /* Exits holding everything: no writer free, no arena free. */
    _exit(child_writes(path, 0, fds[1]));
  }
  close(fds[1]);
  nb_arena_ref_t r[CHILD_REFS];
  NBT_EQ(read_all(fds[0], r, sizeof r), 0);
  close(fds[0]);
  int status = -1;
  waitpid(pid, &status, 0);
  NBT_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  uint8_t buf[PAY];
  for (unsigned i = 0; i < CHILD_REFS; i++)
    NBT_CHECK(reads_back(a, &r[i], pattern(buf, PAY, 500 + i), PAY));
  nb_arena_stats_t s = stats_of(a);
  NBT_EQ(s.processes, 2); /* dead but not yet reaped */
  NBT_EQ(s.free, NSEG - 4);
  NBT_EQ(s.active, 2); /* the parent's and the dead child's */
  NBT_EQ(nb_arena_reap(a), 1);
  s = stats_of(a);
  NBT_EQ(s.processes, 1);
  NBT_EQ(s.reaped, 1);
  NBT_EQ(s.free, NSEG - 1);
  NBT_EQ(s.active, 1);
  NBT_EQ(s.sealed, 0);
  const void *p;
  for (unsigned i = 0; i < CHILD_REFS; i++)
    NBT_EQ(nb_arena_read(a, &r[i], &p), NB_ESTALE);
  NBT_CHECK(reads_back(a, &mine, "parent first", 12));
  NBT_EQ(nb_arena_reap(a), 0); /* nobody else */
  /* Its space is usable: the parent fills the arena. */
  static nb_arena_ref_t all[NSEG * PER_SEG];
  NBT_CHECK(fill(w, all, NSEG * PER_SEG) >= (NSEG - 1) * PER_SEG);
  NBT_CHECK(reads_back(a, &mine, "parent first", 12));
  nb_arena_writer_free(w);
  nb_arena_free(a);
  unlink(path);
}

static void a_fresh_open_after_a_kill_starts_clean(void) {
  const char *path = tpath("clean.arena");
  int fds[2];
  NBT_EQ(pipe(fds), 0);
  fflush(stdout);
  pid_t pid = fork();
  if (pid == 0) {
    close(fds[0]);
    int rc = child_writes(path, SMALL, fds[1]);
    if (rc) _exit(rc);
    for (;;) pause(); /* until killed */
  }
  close(fds[1]);
  nb_arena_ref_t r[CHILD_REFS];
  NBT_EQ(read_all(fds[0], r, sizeof r), 0);
  close(fds[0]);
  kill(pid, SIGKILL);
  int status = -1;
  waitpid(pid, &status, 0);
  NBT_CHECK(WIFSIGNALED(status));
  nb_arena_t *a;
  NBT_EQ(nb_arena_open(&a, path, 0), 0);
  nb_arena_stats_t s = stats_of(a);
  NBT_EQ(s.processes, 1);
  NBT_EQ(s.free, NSEG);
  NBT_EQ(s.in_use, 0);
  const void *p;
  uint8_t buf[PAY];
  for (unsigned i = 0; i < CHILD_REFS; i++) {
    NBT_EQ(nb_arena_read(a, &r[i], &p), NB_ESTALE);
    NBT_EQ(nb_arena_copy(a, &r[i], buf), NB_ESTALE);
    NBT_EQ(nb_arena_release(a, &r[i], 1), NB_ESTALE);
  }
  /* A new payload in the old place does not revive an old ref. */
  nb_arena_writer_t *w;
  nb_arena_ref_t n = {0}; /* read even when the write failed */
  NBT_EQ(nb_arena_writer_new(&w, a), 0);
  NBT_EQ(nb_arena_write(w, pattern(buf, PAY, 1), PAY, &n), 0);
  NBT_EQ(nb_arena_read(a, &r[0], &p), NB_ESTALE);
  NBT_CHECK(n.gen != r[0].gen || n.segment != r[0].segment);
  nb_arena_writer_free(w);
  nb_arena_free(a);
  unlink(path);
}

static void the_seventeenth_handle_is_refused(void) {
  const char *path = tpath("limit.arena");
  nb_arena_t *h[NB_ARENA_PROCS + 1];
  for (unsigned i = 0; i < NB_ARENA_PROCS; i++)
    NBT_EQ(nb_arena_open(&h[i], path, SMALL), 0);
  NBT_EQ(stats_of(h[0]).processes, NB_ARENA_PROCS);
  h[NB_ARENA_PROCS] = (nb_arena_t *)1;
  NBT_EQ(nb_arena_open(&h[NB_ARENA_PROCS], path, SMALL), NB_ELIMIT);
  NBT_CHECK(h[NB_ARENA_PROCS] == NULL);
  nb_arena_free(h[5]);
  NBT_EQ(nb_arena_open(&h[5], path, SMALL), 0); /* its slot is free again */
  NBT_EQ(stats_of(h[0]).processes, NB_ARENA_PROCS);
  for (unsigned i = 0; i < NB_ARENA_PROCS; i++) nb_arena_free(h[i]);
  unlink(path);
}

/* Writes len bytes of buf to a new file at path; returns 0 or -1. */
static int write_file(const char *path, const void *buf, size_t len) {
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  if (fd < 0) return -1;
  ssize_t n = len ? write(fd, buf, len) : 0;
  close(fd);
  return n == (ssize_t)len ? 0 : -1;
}

/* Overwrites bytes at off in the file at path; returns 0 or -1. */
static int patch_file(const char *path, off_t off, const void *buf,
                      size_t len) {
  int fd = open(path, O_WRONLY);
  if (fd < 0) return -1;
  ssize_t n = pwrite(fd, buf, len, off);
  close(fd);
  return n == (ssize_t)len ? 0 : -1;
}

/* Creates a valid arena file of capacity cap at path; returns its size or
 * -1. */
static long long make_arena_file(const char *path, size_t cap) {
  nb_arena_t *a;
  if (nb_arena_open(&a, path, cap) != 0) return -1;
  nb_arena_free(a);
  return file_size(path);
}

static void bad_files_get_specific_errors(void) {
  nb_arena_t *a = NULL;
  const char *path = tpath("bad.arena");
  long long size = make_arena_file(path, SMALL);
  NBT_CHECK(size > 0);
  /* A foreign file of the right size. */
  static uint8_t junk[1 << 20];
  memset(junk, 'x', sizeof junk);
  unlink(path);
  NBT_EQ(write_file(path, junk, (size_t)size), 0);
  NBT_EQ(nb_arena_open(&a, path, 0), NB_EBADMAGIC);
  NBT_EQ(nb_arena_open(&a, path, SMALL), NB_EBADMAGIC);
  /* A version-1 file: its magic as version 1 wrote it (the value the old
   * header named "NBARENA1"). */
  uint64_t v1 = 0x314e4552414e424eull;
  NBT_EQ(patch_file(path, 0, &v1, 8), 0);
  NBT_EQ(nb_arena_open(&a, path, 0), NB_EBADVER);
  /* Another version number in a version-2 header. */
  unlink(path);
  NBT_EQ(make_arena_file(path, SMALL), size);
  uint32_t v = NB_ARENA_VERSION + 1;
  NBT_EQ(patch_file(path, 8, &v, 4), 0);
  NBT_EQ(nb_arena_open(&a, path, 0), NB_EBADVER);
  v = NB_ARENA_VERSION;
  NBT_EQ(patch_file(path, 8, &v, 4), 0);
  NBT_EQ(nb_arena_open(&a, path, 0), 0);
  nb_arena_free(a);
  /* Truncated by one byte, grown by one, a capacity that lies, a segment
   * size that is no power of two. */
  NBT_EQ(truncate(path, size - 1), 0);
  NBT_EQ(nb_arena_open(&a, path, 0), NB_ETRUNC);
  NBT_EQ(truncate(path, size + 1), 0);
  NBT_EQ(nb_arena_open(&a, path, SMALL), NB_ETRUNC);
  NBT_EQ(truncate(path, size), 0);
  NBT_EQ(nb_arena_open(&a, path, 0), 0);
  nb_arena_free(a);
  uint64_t cap = UINT64_MAX - 10;
  NBT_EQ(patch_file(path, 16, &cap, 8), 0);
  NBT_EQ(nb_arena_open(&a, path, 0), NB_ETRUNC);
  unlink(path);
  NBT_EQ(make_arena_file(path, SMALL), size);
  uint32_t seg = 4097;
  NBT_EQ(patch_file(path, 24, &seg, 4), 0);
  NBT_EQ(nb_arena_open(&a, path, 0), NB_ETRUNC);
  /* Shorter than the header, and empty. */
  NBT_EQ(truncate(path, 40), 0);
  NBT_EQ(nb_arena_open(&a, path, 0), NB_ETRUNC);
  NBT_EQ(truncate(path, 0), 0);
  NBT_EQ(nb_arena_open(&a, path, SMALL), NB_ETRUNC);
  NBT_CHECK(a == NULL);
  unlink(path);
  /* A capacity that rounds to another geometry. */
  NBT_EQ(make_arena_file(path, SMALL), size);
  NBT_EQ(nb_arena_open(&a, path, SMALL + 4096), NB_EINVAL);
  NBT_EQ(nb_arena_open(&a, path, 1u << 20), NB_EINVAL);
  unlink(path);
  /* Missing with capacity 0, and an impossible directory. */
  errno = 0;
  NBT_EQ(nb_arena_open(&a, tpath("missing.arena"), 0), NB_EIO);
  NBT_EQ(errno, ENOENT);
  NBT_EQ(file_size(tpath("missing.arena")), -1);
  NBT_EQ(nb_arena_open(&a, tpath("no/such/dir.arena"), SMALL), NB_EIO);
  NBT_EQ(nb_arena_open(&a, NULL, SMALL), NB_EINVAL);
  NBT_EQ(nb_arena_open(&a, "", SMALL), NB_EINVAL);
  NBT_EQ(others_in_tmpdir(NULL), 0);
}

/* Opens a file arena of SMALL bytes at path with a writer that wrote
 * "keep me!" (*r), for a test that scribbles on the file's tables. */
static void open_holding(const char *path, nb_arena_t **a,
                         nb_arena_writer_t **w, nb_arena_ref_t *r) {
  NBT_EQ(nb_arena_open(a, path, SMALL), 0);
  NBT_EQ(nb_arena_writer_new(w, *a), 0);
  NBT_EQ(nb_arena_write(*w, "keep me!", 8, r), 0);
}

static void a_corrupt_span_cannot_widen_bounds(void) {
  const char *path = tpath("corrupt.arena");
  nb_arena_t *a;
  nb_arena_writer_t *w;
  nb_arena_ref_t r;
  const void *p;
  open_holding(path, &a, &w, &r);
  /* Another process may scribble on the shared table: a span reaching
   * past the arena is refused, not trusted. */
  uint32_t span = NSEG + 1;
  NBT_EQ(patch_file(path, OFF_SEGS + 64u * r.segment + SEG_SPAN_AT, &span, 4), 0);
  NBT_EQ(nb_arena_read(a, &r, &p), NB_EBOUNDS);
  span = 1;
  NBT_EQ(patch_file(path, OFF_SEGS + 64u * r.segment + SEG_SPAN_AT, &span, 4), 0);
  NBT_CHECK(reads_back(a, &r, "keep me!", 8));
  NBT_EQ(nb_arena_release(a, &r, 1), 0);
  nb_arena_writer_free(w);
  NBT_EQ(stats_of(a).free, NSEG);
  nb_arena_free(a);
  unlink(path);
}

static void free_bits_past_the_last_segment_are_never_taken(void) {
  const char *path = tpath("stray.arena");
  nb_arena_t *a;
  nb_arena_writer_t *w;
  nb_arena_ref_t r;
  static uint8_t buf[PAY];
  NBT_EQ(nb_arena_open(&a, path, SMALL), 0);
  NBT_EQ(nb_arena_writer_new(&w, a), 0);
  /* Another process may scribble on the free bitmap: bits past the 16th
   * segment name no segment, and taking one would write past the data
   * region (the mapping's end). */
  uint64_t stray = ~0ull << NSEG | ((1ull << NSEG) - 1);
  NBT_EQ(patch_file(path, OFF_SEGS + 64u * NSEG, &stray, 8), 0);
  int written = 0, rc;
  while ((rc = nb_arena_write(w, pattern(buf, PAY, (unsigned)written), PAY,
                              &r)) == 0) {
    NBT_CHECK(r.segment < NSEG);
    NBT_CHECK(r.offset + r.len <= SMALL);
    NBT_CHECK(reads_back(a, &r, buf, PAY));
    if (++written > (int)(NSEG * PER_SEG)) break;
  }
  NBT_EQ(rc, NB_ENOSPACE);
  NBT_EQ(written, (int)(NSEG * PER_SEG));
  nb_arena_writer_free(w);
  nb_arena_free(a);
  unlink(path);
}

static void a_scribbled_live_count_cannot_overflow(void) {
  const char *path = tpath("live.arena");
  nb_arena_t *a;
  nb_arena_writer_t *w;
  nb_arena_ref_t r;
  open_holding(path, &a, &w, &r);
  /* A count no live segment has (another process scribbled on it): a
   * retain is refused rather than overflow it. */
  int64_t live, max = INT64_MAX;
  int fd = open(path, O_RDONLY);
  NBT_CHECK(fd >= 0);
  NBT_EQ(pread(fd, &live, 8, OFF_SEGS + 64u * r.segment), 8);
  close(fd);
  NBT_EQ(patch_file(path, OFF_SEGS + 64u * r.segment, &max, 8), 0);
  NBT_EQ(nb_arena_retain(a, &r, 1), NB_ESTALE);
  NBT_EQ(nb_arena_retain(a, &r, 2), NB_ESTALE);
  NBT_EQ(patch_file(path, OFF_SEGS + 64u * r.segment, &live, 8), 0);
  NBT_EQ(nb_arena_retain(a, &r, 1), 0);
  NBT_EQ(nb_arena_release(a, &r, 2), 0);
  nb_arena_writer_free(w);
  NBT_EQ(stats_of(a).free, NSEG);
  nb_arena_free(a);
  unlink(path);
}

/* In a child: creates arena files one after another in the temporary
 * directory, opening, closing and removing each, until killed. */
static void create_forever(unsigned round) {
  char name[64];
  for (unsigned j = 0;; j++) {
    snprintf(name, sizeof name, "k%u-%u.arena", round, j);
    nb_arena_t *a;
    const char *path = tpath(name);
    if (nb_arena_open(&a, path, 1u << 20) != 0) _exit(2);
    nb_arena_free(a);
    unlink(path);
  }
}

static void kills_during_creation_leave_no_stray_files(void) {
  srand((unsigned)getpid());
  unsigned early = 0;
  for (unsigned round = 0; round < 40; round++) {
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) create_forever(round);
    usleep((useconds_t)(rand() % 3000));
    kill(pid, SIGKILL);
    int status = -1;
    waitpid(pid, &status, 0);
    if (!WIFSIGNALED(status)) early++;
  }
  NBT_EQ(early, 0);
  /* Whatever is left is a whole arena file (killed between linking and
   * removing it) that opens cleanly. */
  DIR *d = opendir(tmpdir);
  NBT_CHECK(d != NULL);
  unsigned left = 0, stray = 0;
  for (struct dirent *e; d && (e = readdir(d));) {
    if (e->d_name[0] == '.') continue;
    size_t n = strlen(e->d_name);
    const char *path = tpath(e->d_name);
    nb_arena_t *a;
    if (n < 6 || strcmp(e->d_name + n - 6, ".arena") != 0 ||
        nb_arena_open(&a, path, 0) != 0) {
      printf("    stray: %s\n", e->d_name);
      stray++;
    } else {
      nb_arena_stats_t s = stats_of(a);
      if (s.processes != 1 || s.free != s.segments) stray++;
      nb_arena_free(a);
      left++;
    }
    unlink(path);
  }
  if (d) closedir(d);
  NBT_EQ(stray, 0);
  NBT_CHECK(left <= 40);
}

static void processes_racing_to_create_share_one_arena(void) {
  const char *path = tpath("race.arena");
  enum { KIDS = 4 };
  int gate[2], back[2], done[2];
  NBT_EQ(pipe(gate), 0);
  NBT_EQ(pipe(back), 0);
  NBT_EQ(pipe(done), 0);
  pid_t pids[KIDS];
  fflush(stdout);
  for (int i = 0; i < KIDS; i++) {
    pids[i] = fork();
    if (pids[i] == 0) {
      char c;
      close(gate[1]);
      close(back[0]);
      close(done[1]);
      /* Everyone starts together when the parent closes the gate. */
      (void)!read(gate[0], &c, 1);
      nb_arena_t *a;
      nb_arena_writer_t *w;
      nb_arena_ref_t r;
      uint64_t v[8] = {0xC0FFEE00u + (uint64_t)i};
      if (nb_arena_open(&a, path, SMALL) != 0) _exit(2);
      if (nb_arena_writer_new(&w, a) != 0) _exit(3);
      if (nb_arena_write(w, v, sizeof v, &r) != 0) _exit(4);
      if (write(back[1], &r, sizeof r) != (ssize_t)sizeof r) _exit(5);
      /* Hold it until the parent has looked. */
      (void)!read(done[0], &c, 1);
      nb_arena_writer_free(w);
      nb_arena_free(a);
      _exit(0);
    }
  }
  close(gate[0]);
  close(gate[1]);
  close(back[1]);
  close(done[0]);
  nb_arena_ref_t r[KIDS];
  NBT_EQ(read_all(back[0], r, sizeof r), 0);
  close(back[0]);
  nb_arena_t *a;
  NBT_EQ(nb_arena_open(&a, path, 0), 0);
  nb_arena_stats_t s = stats_of(a);
  NBT_EQ(s.processes, KIDS + 1); /* one arena, not four */
  NBT_EQ(s.active, KIDS);
  unsigned seen = 0;
  for (unsigned i = 0; i < KIDS; i++) {
    uint64_t v[8];
    NBT_EQ(nb_arena_copy(a, &r[i], v), 0);
    if (v[0] >= 0xC0FFEE00u && v[0] < 0xC0FFEE00u + KIDS)
      seen |= 1u << (v[0] & 0xFF);
  }
  NBT_EQ(seen, (1u << KIDS) - 1);
  close(done[1]);
  int bad = 0;
  for (int i = 0; i < KIDS; i++) {
    int st = -1;
    waitpid(pids[i], &st, 0);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) bad++;
  }
  NBT_EQ(bad, 0);
  s = stats_of(a);
  NBT_EQ(s.processes, 1);
  NBT_EQ(s.free, s.segments);
  nb_arena_free(a);
  NBT_EQ(others_in_tmpdir("race.arena"), 0);
  unlink(path);
}

/* Gives each test's process its own temporary directory. */
static void make_tmpdir(void) {
  snprintf(tmpdir, sizeof tmpdir, "/tmp/nb-test-arena-XXXXXX");
  NBT_CHECK(mkdtemp(tmpdir) != NULL);
}

/* Removes the directory; a test that left a file in it keeps it for a look. */
static void remove_tmpdir(void) { rmdir(tmpdir); }

static const nbt_test_t tests[] = {
    NBT_TEST(geometry_rounds_capacity_to_segments),
    NBT_TEST(writes_round_trip_8_aligned_with_exact_lengths),
    NBT_TEST(bad_arguments_are_rejected),
    NBT_TEST(a_segment_is_reused_only_when_sealed_and_released),
    NBT_TEST(a_writer_rewinds_a_segment_wholly_released),
    NBT_TEST(old_refs_read_stale_after_reuse_and_change_nothing),
    NBT_TEST(exhaustion_changes_nothing_and_flow_resumes),
    NBT_TEST(payloads_larger_than_a_segment_take_runs),
    NBT_TEST(retain_and_release_take_counts),
    NBT_TEST(the_releaser_batches_by_segment),
    NBT_TEST(forged_refs_are_refused),
    NBT_TEST(payloads_go_inline_or_to_the_arena),
    NBT_TEST(stats_add_up_under_a_random_workload),
    NBT_TEST(four_threads_write_disjoint_payloads),
    NBT_TEST(file_arena_reopens_with_the_same_bytes),
    NBT_TEST(two_handles_see_each_others_bytes),
    NBT_TEST(a_dead_childs_references_are_reaped),
    NBT_TEST(a_fresh_open_after_a_kill_starts_clean),
    NBT_TEST(the_seventeenth_handle_is_refused),
    NBT_TEST(bad_files_get_specific_errors),
    NBT_TEST(a_corrupt_span_cannot_widen_bounds),
    NBT_TEST(free_bits_past_the_last_segment_are_never_taken),
    NBT_TEST(a_scribbled_live_count_cannot_overflow),
    NBT_TEST_TIMEOUT(kills_during_creation_leave_no_stray_files, 120),
    NBT_TEST(processes_racing_to_create_share_one_arena),
};

static const nbt_hooks_t hooks = {make_tmpdir, remove_tmpdir};

int main(int argc, char **argv) { return NBT_MAIN(argc, argv, tests, &hooks); }
