/* bench_arena.c: arena allocations per second at 32 bytes and 1 KiB, each
 * beside malloc + memcpy + free of the same size in the same run.
 *
 * One "allocation" is a payload's whole life on one thread: the arena side
 * copies it in through a writer (nb_arena_write), reads it back through its
 * ref (nb_arena_read) and drops the ref (nb_arena_release), so the writer
 * rewinds its segment in place each time it fills; the baseline does
 * malloc, memcpy, reads the block, free. Every payload read back is
 * checked (first and last 8 bytes) and summed. */
#include "bench.h"
#include "bench_ring.h"
#include "neuronbus.h"

#define ARENA_CAPACITY (4u << 20) /* stays in L2/L3, like a busy arena */

typedef struct arena_ctx_s {
  size_t size;
  uint64_t n;
  nb_arena_t *arena;
  nb_arena_writer_t *writer;
  uint8_t *buf;
  uint64_t expect_sum, sum_n; /* expect_sum is for sum_n payloads */
} arena_ctx_t;

/* Writes record i's marks into the first and last 8 bytes of buf. */
static inline void mark(uint8_t *buf, size_t size, uint64_t i) {
  uint64_t w = nb_bench_mix(i);
  memcpy(buf, &i, 8);
  memcpy(buf + size - 8, &w, 8);
}

/* Returns the sum of both marks of p if they are record i's, else fails. */
static inline uint64_t check(const uint8_t *p, size_t size, uint64_t i,
                             const char *who) {
  uint64_t a, b;
  memcpy(&a, p, 8);
  memcpy(&b, p + size - 8, 8);
  if (a != i || b != nb_bench_mix(i))
    nb_bench_fail("%s %zu B: payload %" PRIu64 " read back wrong (%" PRIu64
                  ", %016" PRIx64 ")", who, size, i, a, b);
  return a + b;
}

/* Recomputes the checksum a run of c->n payloads must give, when n moved. */
static void expect(arena_ctx_t *c) {
  if (c->sum_n == c->n && c->n) return;
  c->expect_sum = 0;
  for (uint64_t i = 0; i < c->n; i++) c->expect_sum += i + nb_bench_mix(i);
  c->sum_n = c->n;
}

/* Returns millions of arena write+read+release per second; fails the bench
 * on any error or wrong byte. */
static double arena_run(void *vctx) {
  arena_ctx_t *c = vctx;
  expect(c);
  uint64_t sum = 0, t0 = nb_bench_now_ns();
  for (uint64_t i = 0; i < c->n; i++) {
    nb_arena_ref_t ref;
    const void *p;
    mark(c->buf, c->size, i);
    int rc = nb_arena_write(c->writer, c->buf, c->size, &ref);
    if (rc) nb_bench_fail("nb_arena_write(%zu) #%" PRIu64 ": %s", c->size, i,
                          nb_strerror(rc));
    rc = nb_arena_read(c->arena, &ref, &p);
    if (rc) nb_bench_fail("nb_arena_read #%" PRIu64 ": %s", i, nb_strerror(rc));
    sum += check(p, c->size, i, "arena");
    rc = nb_arena_release(c->arena, &ref, 1);
    if (rc != 0) nb_bench_fail("nb_arena_release #%" PRIu64 " returned %d, want 0",
                               i, rc);
  }
  uint64_t t1 = nb_bench_now_ns();
  if (sum != c->expect_sum) nb_bench_fail("arena %zu B: checksum mismatch", c->size);
  return (double)c->n / ((double)(t1 - t0) / 1e9) / 1e6;
}

/* Returns millions of malloc+memcpy+read+free per second. */
static double malloc_run(void *vctx) {
  arena_ctx_t *c = vctx;
  expect(c);
  uint64_t sum = 0, t0 = nb_bench_now_ns();
  for (uint64_t i = 0; i < c->n; i++) {
    mark(c->buf, c->size, i);
    uint8_t *p = malloc(c->size);
    if (!p) nb_bench_fail("malloc(%zu) failed", c->size);
    memcpy(p, c->buf, c->size);
    nb_bench_escape(p); /* else the compiler may drop the malloc/free pair */
    sum += check(p, c->size, i, "malloc");
    free(p);
  }
  uint64_t t1 = nb_bench_now_ns();
  if (sum != c->expect_sum) nb_bench_fail("malloc %zu B: checksum mismatch", c->size);
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
  c.buf = nb_bench_alloc(size);
  nb_bench_row_t r = nb_bench_row(name, "M allocs/s");
  nb_bench_measure(arena_run, &c, &c.n, malloc_run, &c, &c.n, &r.v, &r.b);
  r.baseline = size == 32 ? "malloc_memcpy_free_32b" : "malloc_memcpy_free_1k";
  r.target = target;
  r.note = "writer write (copy in) + read back + release, segment rewinds "
           "amortised; baseline malloc + memcpy + read + free, one thread";
  nb_bench_emit(&r);
  nb_arena_writer_free(c.writer);
  nb_arena_free(c.arena);
  free(c.buf);
}

static void group_32(void) { arena_row("arena_32b", 32, 4u << 20, ">=5"); }
static void group_1k(void) { arena_row("arena_1k", 1024, 1u << 20, NULL); }

static const nb_bench_group_t groups[] = {
    {"arena_32b", group_32},
    {"arena_1k", group_1k},
};

int main(int argc, char **argv) {
  return nb_bench_main(argc, argv, groups, sizeof groups / sizeof groups[0]);
}
