/* validate_arena: cross-thread validation of the segmented arena, in the
 * style of Concurrency Kit's regressions/<name>/validate.
 *
 * One producer writes payloads 0..N-1 of mixed sizes (47 bytes to 8 KiB,
 * every byte derived from the payload's number) through one writer into a
 * small arena, and hands each reference, in a spike, to one of the
 * consumers (round robin) over a gated axon per consumer (single producer,
 * single reader). A consumer checks it receives its payloads in order,
 * reads each while holding its reference and checks every byte, then drops
 * it: some through nb_arena_release, some through a releaser, a few after
 * an extra retain. The axons hold far more payload bytes than the arena,
 * so the producer runs out of segments and retries (backpressure): a
 * segment reused while a consumer still held a payload in it shows up as
 * wrong bytes or NB_ESTALE. At the end every segment but the writer's is
 * free, and all of them once the writer is freed.
 *
 * Usage: validate_arena [--payloads N] [NAME...] (names as in nbtest.h).
 * The default is 10,000,000 payloads per round; 200,000 under TSan and
 * 2,000,000 under ASan. */
#include <pthread.h>
#include <sched.h>

#include "nb_arena.h"
#include "nb_axon.h"
#include "nb_err.h"
#include "nbtest.h"

#define ARENA_BYTES (4u << 20) /* 256 segments of 16 KiB */
#define AXON_CAP 8192u         /* per consumer: ~3.5 MiB of payload each */
#define MAX_CONSUMERS 3
#define MAX_LEN 8192u

/* Returns the length of payload i: mostly 47..302 bytes, one in 16 up to
 * 8 KiB, and the two extremes now and then. */
static uint32_t len_of(uint64_t i) {
  uint64_t h = (i + 1) * 0x9E3779B97F4A7C15ull;
  h ^= h >> 29;
  if (i % 1000 == 0) return MAX_LEN;
  if (i % 1000 == 1) return 47;
  if ((h & 15) == 0) return 47 + (uint32_t)((h >> 8) % (MAX_LEN - 47 + 1));
  return 47 + (uint32_t)((h >> 8) % 256);
}

/* Returns word k of payload i. */
static inline uint64_t word_of(uint64_t i, uint64_t k) {
  return (i * 0x9E3779B97F4A7C15ull) ^ (k * 0xBF58476D1CE4E5B9ull) ^ 0x5a5a;
}

/* Fills buf with payload i (len bytes); returns buf. */
static uint8_t *build(uint8_t *buf, uint64_t i, uint32_t len) {
  uint64_t w[MAX_LEN / 8];
  for (uint32_t k = 0; k < (len + 7) / 8; k++) w[k] = word_of(i, k);
  memcpy(buf, w, len);
  return buf;
}

/* Returns 1 when p holds payload i of len bytes. */
static int intact(const uint8_t *p, uint64_t i, uint32_t len) {
  uint32_t k = 0;
  for (; (k + 1) * 8 <= len; k++) {
    uint64_t v;
    memcpy(&v, p + 8 * k, 8);
    if (v != word_of(i, k)) return 0;
  }
  if (k * 8 < len) {
    uint64_t v = word_of(i, k);
    if (memcmp(p + 8 * k, &v, len - k * 8) != 0) return 0;
  }
  return 1;
}

typedef struct shared_s {
  nb_arena_t *arena;
  nb_axon_t *ax[MAX_CONSUMERS];
  int consumers;
  uint64_t n;
  _Atomic int failed; /* the first violation wins the message */
  char why[256];
  /* Producer results. */
  uint64_t retries, full_episodes, bytes;
  int write_rc;
} shared_t;

typedef struct consumer_s {
  shared_t *sh;
  nb_axon_reader_t *r;
  int id;
  uint64_t got, direct, batched, retained;
  uint32_t rel_errors;
} consumer_t;

/* Records the first violation and closes every axon so all threads stop;
 * returns nothing. */
static void violation(shared_t *sh, int who, uint64_t i, const char *what,
                      int rc) {
  int no = 0;
  if (atomic_compare_exchange_strong(&sh->failed, &no, 1))
    snprintf(sh->why, sizeof sh->why, "consumer %d, payload %llu: %s (%s)",
             who, (unsigned long long)i, what, rc ? nb_err_name(rc) : "-");
  for (int c = 0; c < sh->consumers; c++) nb_axon_close(sh->ax[c]);
}

/* Writes payloads 0..n-1, retrying while the arena is full, and sends
 * each reference to consumer i % consumers; returns NULL. */
static void *producer(void *arg) {
  shared_t *sh = arg;
  nb_arena_writer_t *w = NULL;
  uint8_t *b = malloc(MAX_LEN);
  int rc = nb_arena_writer_new(&w, sh->arena);
  if (rc != 0 || !b) {
    sh->write_rc = rc ? rc : NB_ENOMEM;
    violation(sh, -1, 0, "writer_new", rc);
    free(b);
    return NULL;
  }
  for (uint64_t i = 0; i < sh->n && !atomic_load(&sh->failed); i++) {
    uint32_t len = len_of(i);
    build(b, i, len);
    nb_arena_ref_t ref;
    unsigned spins = 0;
    while ((rc = nb_arena_write(w, b, len, &ref)) == NB_ENOSPACE) {
      if (spins++ == 0) sh->full_episodes++;
      sh->retries++;
      if (atomic_load(&sh->failed)) break;
      sched_yield();
    }
    if (rc != 0) {
      sh->write_rc = rc;
      violation(sh, -1, i, "nb_arena_write", rc);
      break;
    }
    sh->bytes += len;
    nb_spike_t s;
    memset(&s, 0, sizeof s);
    s.timestamp_ns = i;
    s.sequence = (uint32_t)i;
    nb_spike_set_ref(&s, &ref);
    if (nb_axon_publish(sh->ax[i % (uint64_t)sh->consumers], &s) != 0) {
      nb_arena_release(sh->arena, &ref, 1); /* closed: a consumer failed */
      break;
    }
  }
  free(b);
  /* Sealed only after the consumers are done: main checks that only this
   * writer's segment is still in use, then frees it. */
  return w;
}

/* Checks and drops one payload; returns 0 or -1 after a violation. */
static int consume(consumer_t *c, nb_arena_releaser_t *rel,
                   const nb_spike_t *s, uint64_t expect) {
  shared_t *sh = c->sh;
  nb_arena_ref_t ref;
  if (s->timestamp_ns != expect || s->sequence != (uint32_t)expect) {
    violation(sh, c->id, expect,
              s->timestamp_ns < expect ? "duplicate or reordered"
                                       : "lost payloads",
              0);
    return -1;
  }
  int rc = nb_spike_get_ref(s, &ref);
  if (rc != 0) {
    violation(sh, c->id, expect, "not a ref", rc);
    return -1;
  }
  if (ref.len != len_of(expect)) {
    violation(sh, c->id, expect, "wrong length", 0);
    return -1;
  }
  const void *p;
  rc = nb_arena_read(sh->arena, &ref, &p);
  if (rc != 0) {
    violation(sh, c->id, expect, "read of a held payload", rc);
    return -1;
  }
  if (((uintptr_t)p & (NB_ARENA_ALIGN - 1)) != 0 ||
      !intact(p, expect, ref.len)) {
    violation(sh, c->id, expect, "bytes changed while held", 0);
    return -1;
  }
  if (expect % 97 == 0) {
    /* Two more references, then all three dropped at once. */
    rc = nb_arena_retain(sh->arena, &ref, 2);
    if (rc == 0) rc = nb_arena_release(sh->arena, &ref, 3);
    if (rc != 0) {
      violation(sh, c->id, expect, "retain/release 3", rc);
      return -1;
    }
    c->retained++;
  } else if ((expect / 7) % 2 == 0) {
    rc = nb_arena_release(sh->arena, &ref, 1);
    if (rc != 0) {
      violation(sh, c->id, expect, "release", rc);
      return -1;
    }
    c->direct++;
  } else {
    nb_arena_releaser_add(rel, &ref);
    c->batched++;
  }
  return 0;
}

/* Reads this consumer's payloads in order (batches, with a blocking read
 * when a batch finds nothing, flushing the releaser first); returns NULL. */
static void *consumer(void *arg) {
  consumer_t *c = arg;
  shared_t *sh = c->sh;
  nb_arena_releaser_t rel = {.arena = sh->arena};
  nb_spike_t out[32];
  uint64_t next = (uint64_t)c->id, step = (uint64_t)sh->consumers;
  while (next < sh->n) {
    size_t k = nb_axon_read_batch(c->r, out, 32, NULL);
    if (k == 0) {
      /* About to wait: give back what the batch holds. */
      nb_arena_releaser_flush(&rel);
      int rc = nb_axon_read(c->r, out, NULL);
      if (rc == NB_ECLOSED) break; /* another thread failed */
      if (rc != 0) {
        violation(sh, c->id, next, "axon read", rc);
        break;
      }
      k = 1;
    }
    for (size_t j = 0; j < k; j++, next += step) {
      if (consume(c, &rel, &out[j], next) != 0) goto out;
      c->got++;
    }
  }
out:
  nb_arena_releaser_flush(&rel);
  c->rel_errors = rel.errors;
  return NULL;
}

static uint64_t payloads = 10000000;

/* Runs one round with k consumers and records its verdict. */
static void run_round(int k) {
  static shared_t sh;
  memset(&sh, 0, sizeof sh);
  sh.n = payloads;
  sh.consumers = k;
  NBT_EQ(nb_arena_new(&sh.arena, ARENA_BYTES), 0);
  if (!sh.arena) return;
  consumer_t cs[MAX_CONSUMERS];
  nb_axon_opts_t o = nb_axon_opts_default();
  o.capacity = AXON_CAP;
  o.mode = NB_AXON_GATED;
  o.wait = (nb_wait_t){NB_WAIT_YIELD_PARK, 64, 2};
  for (int c = 0; c < k; c++) {
    NBT_EQ(nb_axon_new(&sh.ax[c], &o), 0);
    cs[c] = (consumer_t){.sh = &sh, .id = c};
    NBT_EQ(nb_axon_reader_attach(sh.ax[c], &cs[c].r), 0);
  }
  pthread_t pt, ct[MAX_CONSUMERS];
  uint64_t t0 = nbt_now_ns();
  uint64_t c0 = nbt_process_cpu_ns();
  for (int c = 0; c < k; c++) pthread_create(&ct[c], NULL, consumer, &cs[c]);
  pthread_create(&pt, NULL, producer, &sh);
  void *w = NULL;
  pthread_join(pt, &w);
  for (int c = 0; c < k; c++) pthread_join(ct[c], NULL);
  double s = (nbt_now_ns() - t0) / 1e9;
  double cpu = (nbt_process_cpu_ns() - c0) / 1e9;
  if (atomic_load(&sh.failed)) printf("    %s\n", sh.why);
  NBT_EQ(atomic_load(&sh.failed), 0);
  NBT_EQ(sh.write_rc, 0);
  uint64_t got = 0, direct = 0, batched = 0, retained = 0;
  for (int c = 0; c < k; c++) {
    got += cs[c].got;
    direct += cs[c].direct;
    batched += cs[c].batched;
    retained += cs[c].retained;
    NBT_EQ(cs[c].rel_errors, 0);
  }
  NBT_EQ(got, payloads);
  NBT_CHECK(direct > 0 && batched > 0 && retained > 0);
  /* Everything was released: only the writer's segment is in use. */
  nb_arena_stats_t st;
  nb_arena_stats(sh.arena, &st);
  NBT_EQ(st.sealed, 0);
  NBT_CHECK(st.active <= 1);
  NBT_CHECK(st.free + 1 >= st.segments);
  nb_arena_writer_free(w);
  nb_arena_stats(sh.arena, &st);
  NBT_EQ(st.free, st.segments);
  NBT_EQ(st.in_use, 0);
  printf("    %d consumers: %llu payloads (%.1f MiB) in %.3f s (cpu %.3f s): "
         "%.2f M payloads/s, %.2f GiB/s; producer retried %llu times in "
         "%llu full episodes; %llu segments reclaimed\n",
         k, (unsigned long long)payloads, sh.bytes / 1048576.0, s, cpu,
         payloads / s / 1e6, sh.bytes / s / 1073741824.0,
         (unsigned long long)sh.retries, (unsigned long long)sh.full_episodes,
         (unsigned long long)st.reclaimed);
  fflush(stdout);
  for (int c = 0; c < k; c++) {
    nb_axon_reader_detach(cs[c].r);
    nb_axon_free(sh.ax[c]);
  }
  nb_arena_free(sh.arena);
}

static void two_consumers(void) { run_round(2); }
static void three_consumers(void) { run_round(3); }

/* A round takes seconds alone; on 2 shared cores, under a sanitizer, it
 * may take minutes, which is slow but not a hang. */
static const nbt_test_t tests[] = {
    NBT_TEST_TIMEOUT(two_consumers, 180),
    NBT_TEST_TIMEOUT(three_consumers, 180),
};

int main(int argc, char **argv) {
  const char *san = nbt_san();
  /* Under ThreadSanitizer two rounds of 5 million: 10 million payloads
   * allocated on one thread and checked and released on others. */
  if (san && strcmp(san, "thread") == 0) payloads = 5000000;
  if (argc > 2 && strcmp(argv[1], "--payloads") == 0) {
    payloads = strtoull(argv[2], NULL, 10);
    argv[2] = argv[0];
    argv += 2;
    argc -= 2;
  }
  if (payloads == 0) payloads = 1;
  if (argc < 2 || strcmp(argv[1], "--list") != 0)
    printf("# validate_arena: %u KiB arena, %u-spike axons, %llu payloads "
           "per round\n",
           ARENA_BYTES / 1024, AXON_CAP, (unsigned long long)payloads);
  return NBT_MAIN(argc, argv, tests, NULL);
}
