/* fuzz_arena.c: libFuzzer target for opening an arena file
 * (core/nb_arena.c): the header checks, the process table and its OFD
 * locks, and the shared tables a process trusts once it joined (segment
 * table, free bitmap, held table), then what a process does with them.
 *
 * Build: clang -fsanitize=fuzzer,address,undefined (make fuzz); cc with
 * spec/fuzz/replay.c in make test (spec/e2e/fuzz_smoke.sh). Input:
 *   byte 0    how the file is sized: bits 0-1 = 1 the file is the image
 *             exactly, else the image zero-extended (or cut) to the size
 *             its header asks for (3: one byte more), when that is at most
 *             FIT_MAX; bits 2-3 the capacity passed to nb_arena_open (0,
 *             the header's, twice it, 1 byte)
 *   bytes 1-2 the process slots the harness holds the lock of (through an
 *             open file description of its own): they read as processes
 *             alive, so their rows, and the tables, are not wiped
 *   byte 3    K, then K bytes of operations (below), then the file image.
 * The file is a memfd reopened through /proc/self/fd (each open is an
 * open file description of its own, as another process's would be).
 * Checks:
 *   - nb_arena_open returns what an oracle of this file decides from the
 *     header bytes alone (NB_ETRUNC, NB_EBADMAGIC, NB_EBADVER, NB_EINVAL,
 *     NB_ELIMIT when no slot is free, else 0), and an error has a text;
 *   - once open, every operation keeps its references inside the data
 *     region: a read or write that succeeds points into it, whatever the
 *     tables say; statistics add up;
 *   - with no slot held (no process alive: the arena starts clean) it is
 *     a model check: payloads read back as written, releases of held
 *     references succeed, and once everything is released and the writers
 *     freed every segment is free again.
 * A difference traps, so libFuzzer reports it like a crash. */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "nb_arena.h"
#include "nb_err.h"

#define CHECK(c) \
  do {           \
    if (!(c)) __builtin_trap(); \
  } while (0)

#define FIT_MAX (4u << 20) /* largest file the fit mode makes */
#define REFS 8             /* payloads a run keeps at once */
#define PAY_MAX (3u << 20) /* longest payload written */

/* The header fields (nb_arena.c's arena_header_t), read from raw bytes. */
typedef struct hdr_s {
  uint64_t magic;
  uint32_t version, header_size;
  uint64_t capacity;
  uint32_t seg_size, nsegs, procs, shared;
} hdr_t;

static uint32_t rd32(const uint8_t *p) {
  uint32_t v;
  memcpy(&v, p, 4);
  return v;
}

static uint64_t rd64(const uint8_t *p) {
  uint64_t v;
  memcpy(&v, p, 8);
  return v;
}

/* Decodes the header from the first 128 bytes of img. */
static hdr_t header_of(const uint8_t *img) {
  hdr_t h = {rd64(img),      rd32(img + 8),  rd32(img + 12), rd64(img + 16),
             rd32(img + 24), rd32(img + 28), rd32(img + 32), rd32(img + 36)};
  return h;
}

/* Oracle: the size of a shared arena file of h's geometry, from
 * docs/payloads.md's layout (header, process rows, segment rows, bitmap,
 * held table, page-aligned data); 0 when it is absurd. */
static uint64_t file_size_for(uint32_t nsegs, uint32_t seg_size) {
  uint64_t meta = 128 + 16 * 64 + (uint64_t)nsegs * 64 + ((uint64_t)nsegs + 63) / 64 * 8;
  meta = (meta + 63) / 64 * 64 + 16ull * nsegs * 4;
  meta = (meta + 4095) / 4096 * 4096;
  uint64_t data = (uint64_t)nsegs * seg_size;
  return meta + data;
}

/* Oracle: the segment geometry nb_arena_open gives a capacity (its
 * docs: capacity/256 rounded down to a power of two, within the segment
 * limits; whole segments). */
static void geometry_for(uint64_t cap, uint32_t *seg, uint64_t *nsegs) {
  uint64_t s = NB_ARENA_SEG_MIN;
  while (s * 2 <= NB_ARENA_SEG_MAX && s * 2 <= cap / 256) s *= 2;
  *seg = (uint32_t)s;
  *nsegs = (cap + s - 1) / s;
}

/* Oracle: what nb_arena_open must return for the file img (size bytes,
 * at least 128 of them readable when size >= 128), capacity cap and the
 * harness's held slots; 1 means "0 or NB_ELIMIT, decided by the process
 * table" (the caller decides that part). */
static int expected_open(const uint8_t *img, uint64_t size, uint64_t cap) {
  if (size < 128) return NB_ETRUNC;
  hdr_t h = header_of(img);
  if (h.magic != NB_ARENA_MAGIC)
    return !memcmp(img, "NBNAREN1", 8) ? NB_EBADVER : NB_EBADMAGIC;
  if (h.version != NB_ARENA_VERSION || h.header_size != 128 ||
      h.procs != NB_ARENA_PROCS || h.shared != 1)
    return NB_EBADVER;
  int pow2 = h.seg_size && !(h.seg_size & (h.seg_size - 1));
  if (h.seg_size < NB_ARENA_SEG_MIN || h.seg_size > NB_ARENA_SEG_MAX || !pow2 ||
      h.nsegs == 0 || h.capacity != (uint64_t)h.nsegs * h.seg_size ||
      file_size_for(h.nsegs, h.seg_size) != size)
    return NB_ETRUNC;
  if (cap) {
    uint32_t s;
    uint64_t n;
    geometry_for(cap, &s, &n);
    if (s != h.seg_size || n != h.nsegs) return NB_EINVAL;
  }
  return 1;
}

/* Oracle: 1 when a process opening the file finds a free slot, given the
 * process rows of img and the slots whose lock the harness holds. */
static int slot_free(const uint8_t *img, uint16_t held) {
  const uint8_t *procs = img + 128;
  int alive = 0;
  for (int i = 0; i < 16; i++)
    alive += rd32(procs + 64 * i) == 1 && (held >> i & 1);
  for (int i = 0; i < 16; i++) {
    if (held >> i & 1) continue;
    uint32_t st = rd32(procs + 64 * i);
    /* A clean start empties every row; else a dead live row is reaped. */
    if (!alive || st == 0 || st == 1) return 1;
  }
  return 0;
}

static int memfd = -1;
static char fdpath[64];
static uint8_t *pay; /* PAY_MAX bytes of pattern */

/* Locks byte i of the file through fd (an OFD lock); returns 0 or -1. */
static int lock_slot(int fd, int i) {
  struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET,
                     .l_start = i + 1, .l_len = 1};
  return fcntl(fd, F_OFD_SETLK, &fl);
}

/* A payload this run wrote and still holds. */
typedef struct own_s {
  nb_arena_ref_t ref;
  uint32_t seed; /* its bytes are pay + seed */
  int live;
} own_t;

typedef struct run_s {
  const uint8_t *op, *end; /* the operation bytes left */
  nb_arena_t *a;
  nb_arena_writer_t *w;
  own_t own[REFS];
  int clean; /* no other process: the model check applies */
} run_t;

static uint8_t next(run_t *r) { return r->op < r->end ? *r->op++ : 0; }

static uint16_t next16(run_t *r) {
  uint16_t lo = next(r);
  return (uint16_t)(lo | next(r) << 8);
}

/* Checks that a reference the arena accepted lies in its data region and
 * reads its bytes (a fault or a sanitizer report otherwise); returns a
 * byte of them so the reads are not optimized away. */
static uint8_t in_region(const nb_arena_t *a, const nb_arena_ref_t *ref,
                         const void *p) {
  const nb__arena_hot_t *h = (const nb__arena_hot_t *)(const void *)a;
  uint64_t cap = nb_arena_capacity(a);
  CHECK(ref->segment < h->nsegs);
  CHECK(ref->offset <= cap && ref->len <= cap - ref->offset);
  CHECK((const uint8_t *)p == h->data + ref->offset);
  uint8_t x = 0;
  for (uint32_t i = 0; i < ref->len; i += 512) x ^= ((const uint8_t *)p)[i];
  if (ref->len) x ^= ((const uint8_t *)p)[ref->len - 1];
  return x;
}

/* Checks the statistics add up. */
static void stats_ok(const nb_arena_t *a, int clean_empty) {
  nb_arena_stats_t st;
  nb_arena_stats(a, &st);
  CHECK(st.free + st.active + st.sealed == st.segments);
  CHECK(st.processes >= 1 && st.processes <= NB_ARENA_PROCS);
  CHECK(st.capacity == (uint64_t)st.segments * st.segment_size);
  if (clean_empty) CHECK(st.free == st.segments && st.processes == 1);
}

/* Writes a payload of len bytes at pattern offset seed into slot k. */
static void op_write(run_t *r, int k, size_t len, uint32_t seed) {
  own_t *o = &r->own[k];
  if (o->live) {
    int rc = nb_arena_release(r->a, &o->ref, 1);
    if (r->clean) CHECK(rc == 0);
    o->live = 0;
  }
  nb_arena_ref_t ref;
  int rc = nb_arena_write(r->w, pay + seed, len, &ref);
  if (rc != 0) {
    CHECK(rc == NB_ENOSPACE || rc == NB_ETOOBIG);
    CHECK(rc != NB_ETOOBIG || len > nb_arena_capacity(r->a));
    return;
  }
  CHECK(ref.len == len && ref.offset % NB_ARENA_ALIGN == 0);
  /* Where the bytes went: inside the data region, whatever the tables. */
  const nb__arena_hot_t *h = (const nb__arena_hot_t *)(const void *)r->a;
  uint64_t cap = nb_arena_capacity(r->a);
  CHECK(ref.segment < h->nsegs && ref.offset >> h->seg_shift == ref.segment);
  CHECK(ref.offset <= cap && len <= cap - ref.offset);
  const void *p;
  int rrc = nb_arena_read(r->a, &ref, &p);
  if (r->clean) CHECK(rrc == 0 && !memcmp(p, pay + seed, len));
  if (rrc == 0) in_region(r->a, &ref, p);
  o->ref = ref;
  o->seed = seed;
  o->live = 1;
}

/* Reads a payload this run holds: its own bytes when the arena started
 * clean, in the data region whatever happens. */
static void op_read_own(run_t *r, own_t *o) {
  if (!o->live) return;
  const void *p;
  int rc = nb_arena_read(r->a, &o->ref, &p);
  if (r->clean) CHECK(rc == 0 && !memcmp(p, pay + o->seed, o->ref.len));
  if (rc == 0) in_region(r->a, &o->ref, p);
  uint8_t *copy = malloc(o->ref.len ? o->ref.len : 1);
  if (!copy) abort();
  rc = nb_arena_copy(r->a, &o->ref, copy);
  if (r->clean) CHECK(rc == 0 && !memcmp(copy, pay + o->seed, o->ref.len));
  free(copy);
}

/* A reference made up from the bytes (and the segment's generation, so
 * it often passes that check): read, copy, retain and release must keep
 * to the data region. */
static void op_forged(run_t *r) {
  const nb__arena_hot_t *h = (const nb__arena_hot_t *)(const void *)r->a;
  nb_arena_ref_t ref;
  memset(&ref, 0, sizeof ref);
  uint8_t b = next(r);
  ref.segment = b == 0xff ? next16(r) | (uint32_t)next16(r) << 16
                          : b % (h->nsegs + 1);
  uint32_t gen = ref.segment < h->nsegs
                     ? atomic_load_explicit(&h->segs[ref.segment].gen,
                                            memory_order_relaxed)
                     : 0;
  ref.gen = b & 1 ? gen : gen + (next(r) & 3);
  uint64_t base = (uint64_t)ref.segment << h->seg_shift;
  ref.offset = base + (uint64_t)next16(r) * 8;
  if (next(r) & 1) ref.offset = (uint64_t)next16(r) << 32 | next16(r);
  ref.len = next16(r);
  if (b & 2) ref.len |= (uint32_t)next16(r) << 16;
  const void *p;
  if (nb_arena_read(r->a, &ref, &p) == 0) in_region(r->a, &ref, p);
  if (ref.len <= PAY_MAX) {
    uint8_t *copy = malloc(ref.len ? ref.len : 1);
    if (!copy) abort();
    (void)nb_arena_copy(r->a, &ref, copy);
    free(copy);
  }
  (void)nb_arena_valid(r->a, &ref);
  /* In a clean arena a made-up reference is never held: a retain that
   * worked is undone by exactly one release. */
  if (nb_arena_retain(r->a, &ref, 1) == 0) {
    int rc = nb_arena_release(r->a, &ref, 1);
    if (r->clean) CHECK(rc == 0);
  }
}

/* Runs the operation bytes against the open arena. */
static void run_ops(run_t *r) {
  uint32_t seed = 0;
  while (r->op < r->end) {
    uint8_t op = next(r);
    own_t *o = &r->own[(op >> 4) % REFS];
    switch ((op & 0x0f) % 10) { /* low nibble: what; high: which slot */
      case 0: { /* a small payload */
        size_t len = next(r) + 47u;
        seed = (seed + 977) % 4096;
        op_write(r, (op >> 4) % REFS, len, seed);
        break;
      }
      case 1: { /* a payload up to several segments */
        size_t len = (size_t)next16(r) * (op & 0x80 ? 41 : 1);
        if (len > PAY_MAX - 4096) len = PAY_MAX - 4096;
        seed = (seed + 131) % 4096;
        op_write(r, (op >> 4) % REFS, len, seed);
        break;
      }
      case 2: op_read_own(r, o); break;
      case 3: /* release */
        if (o->live) {
          int rc = nb_arena_release(r->a, &o->ref, 1);
          if (r->clean) CHECK(rc == 0);
          o->live = 0;
        }
        break;
      case 4: /* retain twice, release twice */
        if (o->live && nb_arena_retain(r->a, &o->ref, 2) == 0) {
          int rc = nb_arena_release(r->a, &o->ref, 2);
          if (r->clean) CHECK(rc == 0);
        } else if (o->live) {
          CHECK(!r->clean);
        }
        break;
      case 5: op_forged(r); break;
      case 6: { /* the releaser drops everything held */
        nb_arena_releaser_t rel = {.arena = r->a};
        for (int k = 0; k < REFS; k++)
          if (r->own[k].live) {
            nb_arena_releaser_add(&rel, &r->own[k].ref);
            r->own[k].live = 0;
          }
        nb_arena_releaser_flush(&rel);
        if (r->clean) CHECK(rel.errors == 0);
        break;
      }
      case 7: (void)nb_arena_reap(r->a); break;
      case 8: stats_ok(r->a, 0); break;
      default: /* a new writer, with a reserve or not */
        nb_arena_writer_free(r->w);
        if (nb_arena_writer_new(&r->w, r->a) != 0) abort();
        (void)nb_arena_writer_reserve(r->w, next(r) % 4);
    }
  }
}

/* Opens a second handle (another process, as far as the file can tell)
 * and reads what the first holds through it. */
static void second_handle(run_t *r) {
  nb_arena_t *b;
  int rc = nb_arena_open(&b, fdpath, 0);
  if (rc != 0) {
    CHECK(rc == NB_ELIMIT && nb_strerror(rc)[0]);
    return;
  }
  for (int k = 0; k < REFS; k++) {
    own_t *o = &r->own[k];
    const void *p;
    if (!o->live) continue;
    int rrc = nb_arena_read(b, &o->ref, &p);
    if (r->clean) CHECK(rrc == 0 && !memcmp(p, pay + o->seed, o->ref.len));
    if (rrc == 0) in_region(b, &o->ref, p);
  }
  stats_ok(b, 0);
  nb_arena_free(b);
}

int LLVMFuzzerTestOneInput(const uint8_t *in, size_t size) {
  if (size < 4) return 0;
  if (memfd < 0) {
    memfd = memfd_create("fuzz.arena", MFD_CLOEXEC);
    if (memfd < 0) abort();
    snprintf(fdpath, sizeof fdpath, "/proc/self/fd/%d", memfd);
    pay = malloc(PAY_MAX);
    if (!pay) abort();
    for (size_t i = 0; i < PAY_MAX; i++) pay[i] = (uint8_t)(i * 131 + (i >> 9));
  }
  uint8_t mode = in[0];
  uint16_t held = (uint16_t)(in[1] | in[2] << 8);
  size_t k = in[3] < size - 4 ? in[3] : size - 4;
  const uint8_t *ops = in + 4, *img = in + 4 + k;
  size_t ilen = size - 4 - k;

  /* The file: the image, sized as the mode says. */
  uint8_t head[128] = {0};
  memcpy(head, img, ilen < 128 ? ilen : 128);
  hdr_t h = header_of(head);
  uint64_t fsize = ilen;
  if ((mode & 3) != 1 && ilen >= 128) {
    uint64_t want = h.nsegs && h.seg_size ? file_size_for(h.nsegs, h.seg_size) : 0;
    if (want && want <= FIT_MAX) fsize = want + ((mode & 3) == 3);
  }
  if (ftruncate(memfd, 0) != 0 || ftruncate(memfd, (off_t)fsize) != 0) abort();
  size_t wlen = ilen < fsize ? ilen : (size_t)fsize;
  if (wlen && pwrite(memfd, img, wlen, 0) != (ssize_t)wlen) abort();

  /* The other processes: slots whose lock someone holds. */
  int lfd = open(fdpath, O_RDWR | O_CLOEXEC);
  if (lfd < 0) abort();
  for (int i = 0; i < 16; i++)
    if (held >> i & 1 && lock_slot(lfd, i) != 0) abort();

  uint64_t cap = 0;
  switch ((mode >> 2) & 3) {
    case 1: cap = h.capacity; break;
    case 2: cap = h.capacity * 2; break;
    case 3: cap = 1; break;
  }
  int want = expected_open(head, fsize, cap);
  if (want == 1) {
    /* The process rows as the file holds them. */
    uint8_t procs[128 + 16 * 64] = {0};
    ssize_t got = pread(memfd, procs, sizeof procs, 0);
    if (got < 0) abort();
    want = slot_free(procs, held) ? 0 : NB_ELIMIT;
  }
  run_t r;
  memset(&r, 0, sizeof r);
  int rc = nb_arena_open(&r.a, fdpath, (size_t)cap);
  CHECK(rc == want);
  if (rc != 0) {
    CHECK(r.a == NULL && nb_strerror(rc)[0] && strcmp(nb_strerror(rc), "unknown error"));
    close(lfd);
    return 0;
  }
  r.clean = held == 0;
  r.op = ops;
  r.end = ops + k;
  stats_ok(r.a, r.clean);
  if (nb_arena_writer_new(&r.w, r.a) != 0) abort();
  run_ops(&r);
  if (mode & 0x10) second_handle(&r);
  for (int j = 0; j < REFS; j++)
    if (r.own[j].live) {
      int rrc = nb_arena_release(r.a, &r.own[j].ref, 1);
      if (r.clean) CHECK(rrc == 0);
    }
  nb_arena_writer_free(r.w);
  stats_ok(r.a, r.clean);
  nb_arena_free(r.a);
  close(lfd);
  return 0;
}
