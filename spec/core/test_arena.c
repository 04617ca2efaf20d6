/* Arena: bump allocation, alignment, out of space, ref slots and counts,
 * epochs and stale refs, bounds on forged refs, spike payload glue, and
 * file-backed arenas shared between mappings and processes. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "neuronbus.h"
#include "nbtest.h"

#define HDR 64u
#define SLOTS_BYTES (NB_ARENA_REF_SLOTS * 4u)

static char tmpdir[64];

/* Returns a path in the test's temporary directory (static buffer). */
static const char *tpath(const char *name) {
  static char buf[4][256];
  static int i;
  char *p = buf[i++ & 3];
  snprintf(p, 256, "%s/%s", tmpdir, name);
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

static void new_checks_capacity(void) {
  nb_arena_t *a = (nb_arena_t *)1;
  NBT_EQ(nb_arena_new(&a, 0), NB_EINVAL);
  NBT_CHECK(a == NULL);
  NBT_EQ(nb_arena_new(&a, 1000), 0);
  NBT_EQ(nb_arena_capacity(a), 1000);
  NBT_EQ(nb_arena_used(a), 0);
  NBT_EQ(nb_arena_epoch(a), 1);
  nb_arena_free(a);
  nb_arena_free(NULL);
}

static void allocations_are_8_aligned_with_exact_lengths(void) {
  nb_arena_t *a;
  NBT_EQ(nb_arena_new(&a, 4096), 0);
  uint8_t buf[64];
  nb_arena_ref_t refs[21];
  uint64_t expect = 0;
  for (unsigned len = 0; len <= 20; len++) {
    nb_arena_ref_t *r = &refs[len];
    NBT_EQ(nb_arena_alloc(a, pattern(buf, len, len), len, r), 0);
    NBT_EQ(r->offset, expect);
    NBT_EQ(r->offset % 8, 0);
    NBT_EQ(r->len, len);
    NBT_EQ(r->ref_slot, len);
    NBT_EQ(r->epoch, 1);
    NBT_EQ(r->reserved, 0);
    const void *p;
    NBT_EQ(nb_arena_read(a, r, &p), 0);
    NBT_EQ((uintptr_t)p % 8, 0);
    expect += (len + 7u) & ~7u;
    NBT_EQ(nb_arena_used(a), expect);
  }
  for (unsigned len = 0; len <= 20; len++)
    NBT_CHECK(reads_back(a, &refs[len], pattern(buf, len, len), len));
  nb_arena_free(a);
}

static void bad_arguments_are_rejected(void) {
  nb_arena_t *a;
  nb_arena_ref_t r;
  const void *p;
  NBT_EQ(nb_arena_new(&a, 64), 0);
  NBT_EQ(nb_arena_alloc(a, NULL, 5, &r), NB_EINVAL);
  NBT_EQ(nb_arena_alloc(a, "x", 1, NULL), NB_EINVAL);
  NBT_EQ(nb_arena_alloc(a, "x", (size_t)UINT32_MAX + 1, &r), NB_ETOOBIG);
  NBT_EQ(nb_arena_read(a, NULL, &p), NB_EINVAL);
  NBT_EQ(nb_arena_used(a), 0);
  nb_arena_free(a);
}

static void out_of_space_fails_and_keeps_earlier_data(void) {
  nb_arena_t *a;
  NBT_EQ(nb_arena_new(&a, 64), 0);
  uint8_t b1[41], b2[24], b3[16];
  nb_arena_ref_t r1, r2, r3, bad;
  NBT_EQ(nb_arena_alloc(a, pattern(b1, 41, 1), 41, &r1), 0); /* 48 used */
  memset(&bad, 0x5A, sizeof bad);
  nb_arena_ref_t before = bad;
  NBT_EQ(nb_arena_alloc(a, pattern(b2, 24, 2), 24, &bad), NB_ENOSPACE);
  NBT_CHECK(memcmp(&bad, &before, sizeof bad) == 0); /* ref untouched */
  NBT_EQ(nb_arena_used(a), 48);
  NBT_EQ(nb_arena_alloc(a, b2, 1000, &bad), NB_ENOSPACE);
  /* A failed request moved nothing: an exact fit still succeeds. */
  NBT_EQ(nb_arena_alloc(a, pattern(b3, 16, 3), 16, &r3), 0);
  NBT_EQ(r3.offset, 48);
  NBT_EQ(nb_arena_used(a), 64);
  NBT_EQ(nb_arena_alloc(a, b2, 1, &r2), NB_ENOSPACE);
  NBT_EQ(nb_arena_alloc(a, b2, 0, &r2), 0); /* empty still fits at the end */
  NBT_EQ(r2.offset, 64);
  NBT_CHECK(reads_back(a, &r1, b1, 41));
  NBT_CHECK(reads_back(a, &r3, b3, 16));
  /* Only three slots were taken: failures consume none. */
  NBT_EQ(r2.ref_slot, 2);
  nb_arena_free(a);
}

static void ref_slots_run_out(void) {
  nb_arena_t *a;
  NBT_EQ(nb_arena_new(&a, (NB_ARENA_REF_SLOTS + 4) * 8u), 0);
  nb_arena_ref_t first = {0}, last = {0}, r;
  int bad = 0;
  for (uint32_t i = 0; i < NB_ARENA_REF_SLOTS; i++) {
    uint64_t v = i;
    if (nb_arena_alloc(a, &v, 8, &r) != 0 || r.ref_slot != i) bad++;
    if (i == 0) first = r;
    last = r;
  }
  NBT_EQ(bad, 0);
  uint64_t v = 7;
  size_t used = nb_arena_used(a);
  NBT_EQ(nb_arena_alloc(a, &v, 8, &r), NB_EREFSLOTS);
  NBT_EQ(nb_arena_used(a), used);
  uint64_t x = 0;
  NBT_CHECK(reads_back(a, &first, &x, 8));
  x = NB_ARENA_REF_SLOTS - 1;
  NBT_CHECK(reads_back(a, &last, &x, 8));
  NBT_EQ(nb_arena_release(a, &last), 0);
  /* Reset frees every slot. */
  NBT_EQ(nb_arena_reset(a), 2);
  NBT_EQ(nb_arena_alloc(a, &v, 8, &r), 0);
  NBT_EQ(r.ref_slot, 0);
  nb_arena_free(a);
}

static void retain_and_release_count(void) {
  nb_arena_t *a;
  NBT_EQ(nb_arena_new(&a, 256), 0);
  nb_arena_ref_t r, r2;
  NBT_EQ(nb_arena_alloc(a, "abcdef", 6, &r), 0);
  NBT_EQ(nb_arena_alloc(a, "gh", 2, &r2), 0);
  NBT_EQ(nb_arena_retain(a, &r), 2);
  NBT_EQ(nb_arena_retain(a, &r), 3);
  NBT_EQ(nb_arena_release(a, &r), 2);
  NBT_EQ(nb_arena_release(a, &r), 1);
  NBT_EQ(nb_arena_release(a, &r), 0);
  NBT_EQ(nb_arena_release(a, &r), NB_EINVAL); /* already zero */
  NBT_EQ(nb_arena_retain(a, &r), NB_EINVAL);  /* no revival */
  NBT_EQ(nb_arena_release(a, &r2), 0);        /* counts are per slot */
  nb_arena_ref_t f = r2;
  f.ref_slot = 2; /* not handed out yet */
  NBT_EQ(nb_arena_retain(a, &f), NB_EBOUNDS);
  f.ref_slot = NB_ARENA_REF_SLOTS;
  NBT_EQ(nb_arena_release(a, &f), NB_EBOUNDS);
  f = r2;
  f.offset = 1024; /* data out of bounds */
  NBT_EQ(nb_arena_release(a, &f), NB_EBOUNDS);
  /* The bytes stay readable whatever the count says until reset. */
  NBT_CHECK(reads_back(a, &r, "abcdef", 6));
  nb_arena_free(a);
}

static void reset_makes_old_refs_stale(void) {
  nb_arena_t *a;
  NBT_EQ(nb_arena_new(&a, 128), 0);
  nb_arena_ref_t old, fresh;
  const void *p = NULL;
  NBT_EQ(nb_arena_alloc(a, "old data", 8, &old), 0);
  NBT_EQ(nb_arena_reset(a), 2);
  NBT_EQ(nb_arena_epoch(a), 2);
  NBT_EQ(nb_arena_used(a), 0);
  NBT_EQ(nb_arena_read(a, &old, &p), NB_ESTALE);
  NBT_CHECK(p == NULL);
  NBT_EQ(nb_arena_retain(a, &old), NB_ESTALE);
  NBT_EQ(nb_arena_release(a, &old), NB_ESTALE);
  /* The new epoch reuses offset 0 and slot 0; the old ref still reads as
   * stale, never as the new bytes. */
  NBT_EQ(nb_arena_alloc(a, "new data", 8, &fresh), 0);
  NBT_EQ(fresh.offset, old.offset);
  NBT_EQ(fresh.ref_slot, old.ref_slot);
  NBT_EQ(fresh.epoch, 2);
  NBT_EQ(nb_arena_read(a, &old, &p), NB_ESTALE);
  NBT_CHECK(reads_back(a, &fresh, "new data", 8));
  NBT_EQ(nb_arena_retain(a, &fresh), 2); /* the slot count restarted at 1 */
  NBT_EQ(nb_arena_reset(a), 3);
  nb_arena_free(a);
}

static void forged_refs_fail_the_bounds_check(void) {
  nb_arena_t *a;
  NBT_EQ(nb_arena_new(&a, 256), 0);
  nb_arena_ref_t r, f;
  const void *p = NULL;
  NBT_EQ(nb_arena_alloc(a, "0123456789abcdef", 16, &r), 0); /* used 16 */
  f = r;
  f.len = 17; /* past the bump offset, though inside capacity */
  NBT_EQ(nb_arena_read(a, &f, &p), NB_EBOUNDS);
  f = r;
  f.offset = 16;
  f.len = 1;
  NBT_EQ(nb_arena_read(a, &f, &p), NB_EBOUNDS);
  f.offset = 256;
  f.len = 0;
  NBT_EQ(nb_arena_read(a, &f, &p), NB_EBOUNDS);
  f.offset = 8;
  f.len = UINT32_MAX;
  NBT_EQ(nb_arena_read(a, &f, &p), NB_EBOUNDS);
  f.offset = UINT64_MAX - 7; /* offset + len would wrap */
  f.len = 16;
  NBT_EQ(nb_arena_read(a, &f, &p), NB_EBOUNDS);
  f.offset = 3; /* never a real allocation */
  f.len = 4;
  NBT_EQ(nb_arena_read(a, &f, &p), NB_EBOUNDS);
  NBT_CHECK(p == NULL);
  memset(&f, 0, sizeof f); /* an all-zero ref is from no live epoch */
  NBT_EQ(nb_arena_read(a, &f, &p), NB_ESTALE);
  f = r;
  f.offset = 8;
  f.len = 8; /* a sub-range of live data is in bounds */
  NBT_EQ(nb_arena_read(a, &f, &p), 0);
  NBT_CHECK(memcmp(p, "89abcdef", 8) == 0);
  nb_arena_free(a);
}

static void payloads_go_inline_or_to_the_arena(void) {
  nb_arena_t *a;
  NBT_EQ(nb_arena_new(&a, 512), 0);
  nb_spike_t s;
  const void *p;
  size_t n;
  uint8_t big[300];
  pattern(big, sizeof big, 9);
  nb_spike_init(&s, 1, NB_INHIBITORY, 3);
  NBT_EQ(nb_arena_put_payload(a, &s, big, 46), 0);
  NBT_CHECK(!nb_spike_is_ref(&s));
  NBT_EQ(nb_arena_used(a), 0);
  NBT_EQ(nb_arena_get_payload(a, &s, &p, &n), 0);
  NBT_EQ(n, 46);
  NBT_CHECK(p == s.payload && memcmp(p, big, 46) == 0);
  NBT_EQ(nb_arena_get_payload(NULL, &s, &p, &n), 0); /* inline needs none */
  NBT_EQ(nb_arena_put_payload(NULL, &s, big, 0), 0);
  NBT_EQ(nb_arena_get_payload(a, &s, &p, &n), 0);
  NBT_EQ(n, 0);

  NBT_EQ(nb_arena_put_payload(a, &s, big, 47), 0);
  NBT_CHECK(nb_spike_is_ref(&s));
  NBT_EQ(nb_spike_kind(&s), NB_INHIBITORY);
  NBT_EQ(nb_arena_used(a), 48);
  NBT_EQ(nb_arena_get_payload(a, &s, &p, &n), 0);
  NBT_EQ(n, 47);
  NBT_CHECK(memcmp(p, big, 47) == 0);
  NBT_EQ(nb_arena_put_payload(a, &s, big, 300), 0);
  NBT_EQ(nb_arena_get_payload(a, &s, &p, &n), 0);
  NBT_EQ(n, 300);
  NBT_CHECK(memcmp(p, big, 300) == 0);
  NBT_EQ(nb_arena_get_payload(NULL, &s, &p, &n), NB_EINVAL);

  nb_spike_t t = s;
  NBT_EQ(nb_arena_put_payload(NULL, &t, big, 47), NB_ENOSPACE);
  NBT_EQ(nb_arena_put_payload(a, &t, big, 300), NB_ENOSPACE); /* full */
  NBT_CHECK(memcmp(&t, &s, sizeof t) == 0); /* spike unchanged on error */
  t.payload[0] = 0; /* a ref length without its marker */
  NBT_EQ(nb_arena_get_payload(a, &t, &p, &n), NB_EINVAL);

  nb_arena_reset(a);
  NBT_EQ(nb_arena_get_payload(a, &s, &p, &n), NB_ESTALE);
  nb_arena_free(a);
}

/* Allocation work for one thread of the concurrency test. */
typedef struct alloc_job_s {
  nb_arena_t *a;
  unsigned id, n, ok, nospace, other;
  nb_arena_ref_t refs[2000];
  unsigned idx[2000]; /* which attempt made refs[k] */
} alloc_job_t;

/* Allocates n records of varied lengths tagged with the thread id; returns
 * NULL. */
static void *alloc_worker(void *arg) {
  alloc_job_t *j = arg;
  uint8_t buf[100];
  for (unsigned i = 0; i < j->n; i++) {
    size_t len = 1 + (i * 13u + j->id) % 90u;
    pattern(buf, len, j->id * 10000u + i);
    nb_arena_ref_t r;
    int rc = nb_arena_alloc(j->a, buf, len, &r);
    if (rc == 0) {
      j->idx[j->ok] = i;
      j->refs[j->ok++] = r;
    }
    else if (rc == NB_ENOSPACE) j->nospace++;
    else j->other++;
  }
  return NULL;
}

/* Orders refs by offset for qsort; returns <0, 0 or >0. */
static int by_offset(const void *x, const void *y) {
  const nb_arena_ref_t *a = x, *b = y;
  return a->offset < b->offset ? -1 : a->offset > b->offset;
}

/* Runs 4 allocating threads on an arena of capacity cap; returns the count
 * of successful allocations after checking them disjoint and intact. */
static unsigned run_alloc_threads(size_t cap, unsigned per_thread) {
  nb_arena_t *a;
  NBT_EQ(nb_arena_new(&a, cap), 0);
  static alloc_job_t jobs[4];
  pthread_t th[4];
  for (unsigned i = 0; i < 4; i++) {
    memset(&jobs[i], 0, sizeof jobs[i]);
    jobs[i].a = a;
    jobs[i].id = i;
    jobs[i].n = per_thread;
    NBT_EQ(pthread_create(&th[i], NULL, alloc_worker, &jobs[i]), 0);
  }
  for (unsigned i = 0; i < 4; i++) pthread_join(th[i], NULL);
  static nb_arena_ref_t all[8000];
  unsigned total = 0, corrupt = 0;
  for (unsigned i = 0; i < 4; i++) {
    NBT_EQ(jobs[i].other, 0);
    NBT_EQ(jobs[i].ok + jobs[i].nospace, per_thread);
    for (unsigned k = 0; k < jobs[i].ok; k++) {
      unsigned n = jobs[i].idx[k];
      size_t len = 1 + (n * 13u + i) % 90u;
      uint8_t buf[100];
      if (!reads_back(a, &jobs[i].refs[k], pattern(buf, len, i * 10000u + n),
                      len))
        corrupt++;
      all[total++] = jobs[i].refs[k];
    }
  }
  NBT_EQ(corrupt, 0);
  qsort(all, total, sizeof all[0], by_offset);
  unsigned overlaps = 0, slots_seen = 0;
  for (unsigned i = 0; i < total; i++) {
    if (all[i].offset % 8 || all[i].offset + all[i].len > cap) overlaps++;
    if (i && all[i - 1].offset + ((all[i - 1].len + 7u) & ~7u) > all[i].offset)
      overlaps++;
  }
  NBT_EQ(overlaps, 0);
  /* Ref slots are distinct too. */
  static uint8_t seen[NB_ARENA_REF_SLOTS];
  memset(seen, 0, sizeof seen);
  for (unsigned i = 0; i < total; i++) {
    if (seen[all[i].ref_slot]) slots_seen++;
    seen[all[i].ref_slot] = 1;
  }
  NBT_EQ(slots_seen, 0);
  NBT_CHECK(nb_arena_used(a) <= cap);
  nb_arena_free(a);
  return total;
}

static void four_threads_get_disjoint_regions(void) {
  NBT_EQ(run_alloc_threads(4 * 2000 * 96, 2000), 8000);
}

static void four_threads_racing_into_a_full_arena(void) {
  /* Room for roughly a quarter of the demand: every success must still be
   * disjoint and intact, every failure NB_ENOSPACE. */
  unsigned ok = run_alloc_threads(100000, 2000);
  NBT_CHECK(ok > 0 && ok < 8000);
}

/* Returns the size of the file at path, or -1. */
static long long file_size(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 ? (long long)st.st_size : -1;
}

static void file_arena_reopens_with_the_same_bytes(void) {
  const char *path = tpath("reopen.arena");
  nb_arena_t *a, *b;
  uint8_t buf[200];
  nb_arena_ref_t r1, r2;
  NBT_EQ(nb_arena_open(&a, path, 4096), 0);
  NBT_EQ(file_size(path), HDR + SLOTS_BYTES + 4096);
  NBT_EQ(nb_arena_alloc(a, pattern(buf, 200, 5), 200, &r1), 0);
  NBT_EQ(nb_arena_alloc(a, "tail", 4, &r2), 0);
  nb_arena_free(a);
  NBT_EQ(nb_arena_open(&b, path, 0), 0); /* 0: take the file's capacity */
  NBT_EQ(nb_arena_capacity(b), 4096);
  NBT_EQ(nb_arena_used(b), 200 + 8);
  NBT_EQ(nb_arena_epoch(b), 1);
  NBT_CHECK(reads_back(b, &r1, buf, 200));
  NBT_CHECK(reads_back(b, &r2, "tail", 4));
  NBT_EQ(nb_arena_retain(b, &r1), 2); /* counts persist too */
  nb_arena_free(b);
  NBT_EQ(nb_arena_open(&b, path, 4096), 0);
  NBT_EQ(nb_arena_release(b, &r1), 1);
  nb_arena_free(b);
  b = (nb_arena_t *)1;
  NBT_EQ(nb_arena_open(&b, path, 8192), NB_EINVAL);
  NBT_CHECK(b == NULL);
  /* No temporary files are left beside it. */
  DIR *d = opendir(tmpdir);
  int others = 0;
  for (struct dirent *e; d && (e = readdir(d));)
    if (e->d_name[0] != '.' && strcmp(e->d_name, "reopen.arena") != 0) others++;
  if (d) closedir(d);
  NBT_EQ(others, 0);
  unlink(path);
}

static void two_mappings_see_each_other(void) {
  const char *path = tpath("shared.arena");
  nb_arena_t *a, *b;
  nb_arena_ref_t ra, rb;
  NBT_EQ(nb_arena_open(&a, path, 1024), 0);
  NBT_EQ(nb_arena_open(&b, path, 1024), 0);
  NBT_EQ(nb_arena_alloc(a, "from mapping a", 14, &ra), 0);
  NBT_CHECK(reads_back(b, &ra, "from mapping a", 14));
  NBT_EQ(nb_arena_alloc(b, "from mapping b", 14, &rb), 0);
  NBT_EQ(rb.offset, 16);   /* b's bump continued after a's */
  NBT_EQ(rb.ref_slot, 1);  /* and so did the slot counter */
  NBT_CHECK(reads_back(a, &rb, "from mapping b", 14));
  NBT_EQ(nb_arena_retain(b, &ra), 2);
  NBT_EQ(nb_arena_release(a, &ra), 1);
  NBT_EQ(nb_arena_used(a), 32);
  NBT_EQ(nb_arena_reset(b), 2);
  NBT_EQ(nb_arena_epoch(a), 2);
  const void *p;
  NBT_EQ(nb_arena_read(a, &ra, &p), NB_ESTALE);
  NBT_EQ(nb_arena_used(a), 0);
  nb_arena_free(a);
  nb_arena_free(b);
  unlink(path);
}

static void a_forked_child_allocates_and_the_parent_reads(void) {
  const char *path = tpath("fork.arena");
  nb_arena_t *a;
  NBT_EQ(nb_arena_open(&a, path, 4096), 0);
  nb_arena_ref_t mine;
  NBT_EQ(nb_arena_alloc(a, "parent first", 12, &mine), 0);
  int fds[2];
  NBT_EQ(pipe(fds), 0);
  pid_t pid = fork();
  if (pid == 0) {
    /* The child maps the file afresh, as an unrelated process would. */
    close(fds[0]);
    nb_arena_t *c;
    nb_arena_ref_t r[2];
    int ok = nb_arena_open(&c, path, 0) == 0 &&
             nb_arena_alloc(c, "hello from the child process", 28, &r[0]) ==
                 0 &&
             nb_arena_alloc(c, "second", 6, &r[1]) == 0 &&
             reads_back(c, &mine, "parent first", 12);
    if (ok && write(fds[1], r, sizeof r) == (ssize_t)sizeof r) _exit(0);
    _exit(1);
  }
  close(fds[1]);
  nb_arena_ref_t r[2];
  ssize_t got = read(fds[0], r, sizeof r);
  close(fds[0]);
  int status = -1;
  waitpid(pid, &status, 0);
  NBT_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  NBT_EQ(got, sizeof r);
  if (got == (ssize_t)sizeof r) {
    NBT_EQ(r[0].offset, 16);
    NBT_CHECK(reads_back(a, &r[0], "hello from the child process", 28));
    NBT_CHECK(reads_back(a, &r[1], "second", 6));
  }
  NBT_EQ(nb_arena_used(a), 16 + 32 + 8);
  nb_arena_free(a);
  unlink(path);
}

static void processes_racing_to_create_share_one_arena(void) {
  const char *path = tpath("race.arena");
  enum { KIDS = 4 };
  int gate[2];
  NBT_EQ(pipe(gate), 0);
  pid_t pids[KIDS];
  for (int i = 0; i < KIDS; i++) {
    pids[i] = fork();
    if (pids[i] == 0) {
      char c;
      close(gate[1]);
      /* Everyone starts together when the parent closes the gate. */
      (void)!read(gate[0], &c, 1);
      nb_arena_t *a;
      nb_arena_ref_t r;
      uint64_t v = 0xC0FFEE00u + (uint64_t)i;
      if (nb_arena_open(&a, path, 2048) != 0) _exit(2);
      if (nb_arena_alloc(a, &v, 8, &r) != 0) _exit(3);
      nb_arena_free(a);
      _exit(0);
    }
  }
  close(gate[0]);
  close(gate[1]);
  int bad = 0;
  for (int i = 0; i < KIDS; i++) {
    int st = -1;
    waitpid(pids[i], &st, 0);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) bad++;
  }
  NBT_EQ(bad, 0);
  nb_arena_t *a;
  NBT_EQ(nb_arena_open(&a, path, 0), 0);
  NBT_EQ(nb_arena_used(a), 8 * KIDS); /* one arena, not four */
  unsigned seen = 0;
  for (unsigned i = 0; i < KIDS; i++) {
    nb_arena_ref_t r = {.offset = i * 8u, .len = 8, .ref_slot = i, .epoch = 1};
    const void *p;
    uint64_t v;
    NBT_EQ(nb_arena_read(a, &r, &p), 0);
    memcpy(&v, p, 8);
    if (v >= 0xC0FFEE00u && v < 0xC0FFEE00u + KIDS) seen |= 1u << (v & 0xFF);
  }
  NBT_EQ(seen, (1u << KIDS) - 1);
  nb_arena_free(a);
  DIR *d = opendir(tmpdir);
  int others = 0;
  for (struct dirent *e; d && (e = readdir(d));)
    if (e->d_name[0] != '.' && strcmp(e->d_name, "race.arena") != 0) others++;
  if (d) closedir(d);
  NBT_EQ(others, 0);
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

/* Creates a valid arena file of capacity cap at path; returns 0 or -1. */
static int make_arena_file(const char *path, size_t cap) {
  nb_arena_t *a;
  if (nb_arena_open(&a, path, cap) != 0) return -1;
  nb_arena_free(a);
  return 0;
}

static void bad_files_get_specific_errors(void) {
  nb_arena_t *a = NULL;
  const char *path = tpath("bad.arena");
  /* A foreign file of plausible size. */
  static uint8_t junk[HDR + SLOTS_BYTES + 1024];
  memset(junk, 'x', sizeof junk);
  NBT_EQ(write_file(path, junk, sizeof junk), 0);
  NBT_EQ(nb_arena_open(&a, path, 0), NB_EBADMAGIC);
  NBT_EQ(nb_arena_open(&a, path, 1024), NB_EBADMAGIC);
  /* Another version. */
  unlink(path);
  NBT_EQ(make_arena_file(path, 1024), 0);
  uint32_t v = NB_ARENA_VERSION + 1;
  NBT_EQ(patch_file(path, 8, &v, 4), 0);
  NBT_EQ(nb_arena_open(&a, path, 0), NB_EBADVER);
  v = NB_ARENA_VERSION;
  NBT_EQ(patch_file(path, 8, &v, 4), 0);
  NBT_EQ(nb_arena_open(&a, path, 0), 0);
  nb_arena_free(a);
  /* Another header size is another layout. */
  uint32_t hs = 128;
  NBT_EQ(patch_file(path, 12, &hs, 4), 0);
  NBT_EQ(nb_arena_open(&a, path, 0), NB_EBADVER);
  /* Truncated by one byte, grown by one, and a capacity that lies. */
  unlink(path);
  NBT_EQ(make_arena_file(path, 1024), 0);
  NBT_EQ(truncate(path, HDR + SLOTS_BYTES + 1023), 0);
  NBT_EQ(nb_arena_open(&a, path, 0), NB_ETRUNC);
  NBT_EQ(truncate(path, HDR + SLOTS_BYTES + 1025), 0);
  NBT_EQ(nb_arena_open(&a, path, 1024), NB_ETRUNC);
  NBT_EQ(truncate(path, HDR + SLOTS_BYTES + 1024), 0);
  uint64_t cap = UINT64_MAX - 10;
  NBT_EQ(patch_file(path, 16, &cap, 8), 0);
  NBT_EQ(nb_arena_open(&a, path, 0), NB_ETRUNC);
  /* Shorter than the header, and empty. */
  NBT_EQ(truncate(path, 40), 0);
  NBT_EQ(nb_arena_open(&a, path, 0), NB_ETRUNC);
  NBT_EQ(truncate(path, 0), 0);
  NBT_EQ(nb_arena_open(&a, path, 1024), NB_ETRUNC);
  NBT_CHECK(a == NULL);
  unlink(path);
  /* Missing with capacity 0, and an impossible directory. */
  errno = 0;
  NBT_EQ(nb_arena_open(&a, tpath("missing.arena"), 0), NB_EIO);
  NBT_EQ(errno, ENOENT);
  NBT_EQ(file_size(tpath("missing.arena")), -1);
  NBT_EQ(nb_arena_open(&a, tpath("no/such/dir.arena"), 64), NB_EIO);
  NBT_EQ(nb_arena_open(&a, NULL, 64), NB_EINVAL);
}

static void corrupt_shared_counters_cannot_widen_bounds(void) {
  /* Another process (or a raced failure) may leave the shared bump offset
   * and slot counter anywhere; bounds come from the trusted capacity. */
  const char *path = tpath("corrupt.arena");
  nb_arena_t *a;
  nb_arena_ref_t r;
  const void *p;
  NBT_EQ(nb_arena_open(&a, path, 1024), 0);
  NBT_EQ(nb_arena_alloc(a, "keep me!", 8, &r), 0);
  uint64_t off = UINT64_MAX - 3;
  NBT_EQ(patch_file(path, 24, &off, 8), 0);
  NBT_EQ(nb_arena_used(a), 1024); /* reads as full */
  nb_arena_ref_t f = r;
  f.offset = 1024;
  f.len = 8;
  NBT_EQ(nb_arena_read(a, &f, &p), NB_EBOUNDS);
  f.offset = 1016;
  NBT_EQ(nb_arena_read(a, &f, &p), 0); /* inside the mapping: harmless */
  NBT_EQ(nb_arena_alloc(a, "x", 1, &f), NB_ENOSPACE);
  uint32_t next = UINT32_MAX;
  NBT_EQ(patch_file(path, 40, &next, 4), 0);
  NBT_EQ(nb_arena_alloc(a, "x", 1, &f), NB_EREFSLOTS);
  f = r;
  f.ref_slot = NB_ARENA_REF_SLOTS + 5;
  NBT_EQ(nb_arena_retain(a, &f), NB_EBOUNDS);
  NBT_CHECK(reads_back(a, &r, "keep me!", 8));
  /* Reset repairs both. */
  NBT_EQ(nb_arena_reset(a), 2);
  NBT_EQ(nb_arena_alloc(a, "again", 5, &f), 0);
  NBT_EQ(f.offset, 0);
  NBT_EQ(f.ref_slot, 0);
  nb_arena_free(a);
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
    NBT_TEST(new_checks_capacity),
    NBT_TEST(allocations_are_8_aligned_with_exact_lengths),
    NBT_TEST(bad_arguments_are_rejected),
    NBT_TEST(out_of_space_fails_and_keeps_earlier_data),
    NBT_TEST(ref_slots_run_out),
    NBT_TEST(retain_and_release_count),
    NBT_TEST(reset_makes_old_refs_stale),
    NBT_TEST(forged_refs_fail_the_bounds_check),
    NBT_TEST(payloads_go_inline_or_to_the_arena),
    NBT_TEST(file_arena_reopens_with_the_same_bytes),
    NBT_TEST(two_mappings_see_each_other),
    NBT_TEST(a_forked_child_allocates_and_the_parent_reads),
    NBT_TEST(processes_racing_to_create_share_one_arena),
    NBT_TEST(bad_files_get_specific_errors),
    NBT_TEST(corrupt_shared_counters_cannot_widen_bounds),
    NBT_TEST(four_threads_get_disjoint_regions),
    NBT_TEST(four_threads_racing_into_a_full_arena),
};

static const nbt_hooks_t hooks = {make_tmpdir, remove_tmpdir};

int main(int argc, char **argv) { return NBT_MAIN(argc, argv, tests, &hooks); }
