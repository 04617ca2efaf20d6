/* bench_arena.c: arena allocations per second at 32 bytes and 1 KiB, each
 * beside malloc + memcpy + free of the same size in the same run.
 *
 * One "allocation" is a payload's whole life on one thread, as the runtime
 * lives it: the arena side copies it in through a writer (nb_arena_write),
 * reads it back through its ref (nb_arena_read), checks it, and hands the
 * ref to a releaser (nb_arena_releaser_t) flushed every 64 payloads, as a
 * delivery batch is; the baseline does malloc, memcpy, reads the block,
 * checks it, free.
 *
 * What the loop measures is the allocator, not the making of payloads: the
 * sources are a ring of RING payloads built and marked once, outside the
 * timed loop (marking a buffer every iteration with 8-byte stores and then
 * copying it stalls store forwarding and cost more than malloc itself).
 * Iteration i copies ring[i % RING] and checks the first and last 8 bytes
 * read back against that entry's marks; both sides do exactly this
 * non-allocator work, so the ratio is allocator against allocator. */
#include "bench.h"
#include "bench_ring.h"
#include "neuronbus.h"

#define ARENA_CAPACITY (4u << 20) /* stays in L2/L3, like a busy arena */
#define RING_BYTES 16384u         /* the source ring: L1-resident */
#define RELEASE_BATCH 64u         /* releaser flushes, as a delivery batch */

typedef struct arena_ctx_s {
  size_t size;
  uint64_t n;
  nb_arena_t *arena;
  nb_arena_writer_t *writer;
  uint8_t *ring;       /* ring_n sources of size bytes, marked once */
  uint64_t ring_mask;  /* ring_n - 1 (a power of two) */
  uint64_t expect_sum, sum_n; /* expect_sum is for sum_n payloads */
} arena_ctx_t;

/* Returns the first mark of ring entry k (the last is its mix). */
static inline uint64_t mark_of(uint64_t k) { return 0x4e42000000000000ull | k; }

/* Builds the source ring: entry k holds mark_of(k) in its first 8 bytes,
 * nb_bench_mix(k) in its last 8, a filler between. */
static void ring_build(arena_ctx_t *c) {
  uint64_t ring_n = 1;
  while (ring_n * 2 * c->size <= RING_BYTES && ring_n < 64) ring_n *= 2;
  c->ring_mask = ring_n - 1;
  c->ring = nb_bench_alloc(ring_n * c->size);
  for (uint64_t k = 0; k < ring_n; k++) {
    uint8_t *p = c->ring + k * c->size;
    uint64_t a = mark_of(k), b = nb_bench_mix(k);
    memset(p, (int)(0x41 + k % 26), c->size);
    memcpy(p, &a, 8);
    memcpy(p + c->size - 8, &b, 8);
  }
}

/* Returns the sum of both marks of p (read back for iteration i) when they
 * are those of its ring entry src, else fails. */
static inline uint64_t check(const uint8_t *p, const uint8_t *src, size_t size,
                             uint64_t i, const char *who) {
  uint64_t a, b, x, y;
  memcpy(&a, p, 8);
  memcpy(&b, p + size - 8, 8);
  memcpy(&x, src, 8);
  memcpy(&y, src + size - 8, 8);
  if (__builtin_expect(a != x || b != y, 0))
    nb_bench_fail("%s %zu B: payload %" PRIu64 " read back wrong (%016" PRIx64
                  ", %016" PRIx64 ")", who, size, i, a, b);
  return a + b;
}

/* Recomputes the checksum a run of c->n payloads must give, when n moved
 * (from the marks' definition, not from the ring's bytes). */
static void expect(arena_ctx_t *c) {
  if (c->sum_n == c->n && c->n) return;
  c->expect_sum = 0;
  for (uint64_t i = 0; i < c->n; i++) {
    uint64_t k = i & c->ring_mask;
    c->expect_sum += mark_of(k) + nb_bench_mix(k);
  }
  c->sum_n = c->n;
}

/* Returns millions of arena write + read + check + release per second;
 * fails the bench on any error or wrong byte. */
static double arena_run(void *vctx) {
  arena_ctx_t *c = vctx;
  expect(c);
  const size_t size = c->size;
  const uint8_t *ring = c->ring;
  const uint64_t mask = c->ring_mask;
  nb_arena_t *a = c->arena;
  nb_arena_writer_t *w = c->writer;
  nb_arena_releaser_t rel = {.arena = a};
  uint64_t sum = 0, t0 = nb_bench_now_ns();
  for (uint64_t i = 0; i < c->n; i++) {
    const uint8_t *src = ring + (i & mask) * size;
    nb_arena_ref_t ref;
    const void *p;
    int rc = nb_arena_write(w, src, size, &ref);
    if (__builtin_expect(rc != 0, 0))
      nb_bench_fail("nb_arena_write(%zu) #%" PRIu64 ": %s", size, i,
                    nb_strerror(rc));
    rc = nb_arena_read(a, &ref, &p);
    if (__builtin_expect(rc != 0, 0))
      nb_bench_fail("nb_arena_read #%" PRIu64 ": %s", i, nb_strerror(rc));
    sum += check(p, src, size, i, "arena");
    nb_arena_releaser_add(&rel, &ref);
    if ((i & (RELEASE_BATCH - 1)) == RELEASE_BATCH - 1)
      nb_arena_releaser_flush(&rel);
  }
  nb_arena_releaser_flush(&rel);
  uint64_t t1 = nb_bench_now_ns();
  if (rel.errors)
    nb_bench_fail("arena %zu B: the releaser refused %u releases", size,
                  rel.errors);
  if (sum != c->expect_sum) nb_bench_fail("arena %zu B: checksum mismatch", size);
  return (double)c->n / ((double)(t1 - t0) / 1e9) / 1e6;
}

/* Returns millions of malloc + memcpy + read + check + free per second. */
static double malloc_run(void *vctx) {
  arena_ctx_t *c = vctx;
  expect(c);
  const size_t size = c->size;
  const uint8_t *ring = c->ring;
  const uint64_t mask = c->ring_mask;
  uint64_t sum = 0, t0 = nb_bench_now_ns();
  for (uint64_t i = 0; i < c->n; i++) {
    const uint8_t *src = ring + (i & mask) * size;
    uint8_t *p = malloc(size);
    if (__builtin_expect(!p, 0)) nb_bench_fail("malloc(%zu) failed", size);
    memcpy(p, src, size);
    nb_bench_escape(p); /* else the compiler may drop the malloc/free pair */
    sum += check(p, src, size, i, "malloc");
    free(p);
  }
  uint64_t t1 = nb_bench_now_ns();
  if (sum != c->expect_sum) nb_bench_fail("malloc %zu B: checksum mismatch", size);
  return (double)c->n / ((double)(t1 - t0) / 1e9) / 1e6;
}

/* Measures one size and emits its row. */
static void arena_row(const char *name, size_t size, uint64_t full,
                      const char *target) {
  arena_ctx_t c = {.size = size, .n = nb_bench_size(full, 20000)};
  int rc = nb_arena_new(&c.arena, ARENA_CAPACITY);
  if (rc) nb_bench_fail("nb_arena_new: %s", nb_strerror(rc));
  rc = nb_arena_writer_new(&c.writer, c.arena);
  if (rc) nb_bench_fail("nb_arena_writer_new: %s", nb_strerror(rc));
  ring_build(&c);
  nb_bench_row_t r = nb_bench_row(name, "M allocs/s");
  nb_bench_measure(arena_run, &c, &c.n, malloc_run, &c, &c.n, &r.v, &r.b);
  r.baseline = size == 32 ? "malloc_memcpy_free_32b" : "malloc_memcpy_free_1k";
  r.target = target;
  r.note = "writer write (copy in) + read back + check + releaser (flushed "
           "every 64, as a delivery batch), 4 MiB arena; baseline malloc + "
           "memcpy + read back + check + free; one thread; both copy from a "
           "ring of sources marked once outside the timed loop, so only the "
           "allocator differs";
  nb_bench_emit(&r);
  nb_arena_writer_free(c.writer);
  nb_arena_free(c.arena);
  free(c.ring);
}

static void group_32(void) { arena_row("arena_32b", 32, 16u << 20, ">=5"); }
static void group_1k(void) { arena_row("arena_1k", 1024, 4u << 20, ">=2"); }

static const nb_bench_group_t groups[] = {
    {"arena_32b", group_32},
    {"arena_1k", group_1k},
};

int main(int argc, char **argv) {
  return nb_bench_main(argc, argv, groups, sizeof groups / sizeof groups[0]);
}
