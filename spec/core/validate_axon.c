/* validate_axon: cross-thread validation of the gated axon, in the style of
 * Concurrency Kit's regressions/<name>/validate.
 *
 * One producer publishes spikes 0..N-1 through a ring of capacity 64, so
 * the gate closes constantly; 1, 2 or 4 readers each check that they see
 * every spike exactly once, in order, intact (source, sequence, timestamp
 * and payload all derive from the spike's number). A round stops at the
 * first violation and names the reader, the expected and the received
 * spike. Extra rounds mix batch publish with batch reads, and park every
 * waiting thread on a futex.
 *
 * Usage: validate_axon [--spikes N] [NAME...] (names as in nbtest.h). The
 * default is 10,000,000 spikes per round; 200,000 under TSan and
 * 2,000,000 under ASan. */
#include <pthread.h>

#include "nb_axon.h"
#include "nb_err.h"
#include "nbtest.h"

#define CAPACITY 64
#define SOURCE 0x5a5au
#define MAX_READERS 4

/* Fills s as spike number i: every byte derives from i. Returns s. */
static nb_spike_t *build(nb_spike_t *s, uint64_t i) {
  uint64_t v = (i + 1) * 0x9E3779B97F4A7C15ull;
  memset(s, 0, sizeof *s);
  s->timestamp_ns = i;
  s->sequence = (uint32_t)i;
  s->source = SOURCE;
  s->target = (uint16_t)(i >> 32);
  s->meta = (uint8_t)(NB_PAYLOAD_MAX << 2);
  s->priority = (uint8_t)(i >> 3);
  for (int k = 0; k < 5; k++) {
    uint64_t w = v ^ (uint64_t)k;
    memcpy(s->payload + 8 * k, &w, 8);
  }
  memcpy(s->payload + 40, &v, 6);
  return s;
}

typedef struct round_s {
  const char *name;
  int readers;
  int batch; /* batch publish and batch read */
  nb_wait_t wait;
} round_t;

typedef struct shared_s {
  nb_axon_t *ax;
  uint64_t n;
  int batch;
  _Atomic int failed; /* the first violation wins the message */
  char why[256];
  int publish_rc;
} shared_t;

typedef struct reader_arg_s {
  shared_t *sh;
  nb_axon_reader_t *r;
  int id;
} reader_arg_t;

/* Records the first violation, closes the axon so every thread stops;
 * returns nothing. */
static void violation(shared_t *sh, int reader, uint64_t expected,
                      const nb_spike_t *got, const char *what) {
  int no = 0;
  if (atomic_compare_exchange_strong(&sh->failed, &no, 1))
    snprintf(sh->why, sizeof sh->why,
             "reader %d: expected spike %llu, got %llu (source 0x%x, "
             "sequence %u): %s",
             reader, (unsigned long long)expected,
             (unsigned long long)got->timestamp_ns, got->source, got->sequence,
             what);
  nb_axon_close(sh->ax);
}

/* Returns NULL when got is spike number i, else what differs. */
static const char *check(const nb_spike_t *got, uint64_t i) {
  nb_spike_t want;
  build(&want, i);
  if (got->source != SOURCE) return "wrong source";
  if (got->timestamp_ns != i || got->sequence != (uint32_t)i)
    return got->timestamp_ns < i ? "duplicate or reordered" : "lost spikes";
  if (memcmp(got, &want, sizeof want) != 0) return "payload or header bytes";
  return NULL;
}

/* Publishes spikes 0..n-1 (in runs of 1..31 in batch mode); returns NULL. */
static void *producer(void *arg) {
  shared_t *sh = arg;
  nb_spike_t run[31];
  sh->publish_rc = 0;
  for (uint64_t i = 0; i < sh->n;) {
    int rc;
    if (sh->batch) {
      size_t k = 1 + (size_t)(i % 31);
      if (k > sh->n - i) k = (size_t)(sh->n - i);
      for (size_t j = 0; j < k; j++) build(&run[j], i + j);
      rc = nb_axon_publish_batch(sh->ax, run, k);
      i += k;
    } else {
      nb_spike_t s;
      rc = nb_axon_publish(sh->ax, build(&s, i));
      i++;
    }
    if (rc != 0) {
      sh->publish_rc = rc;
      break;
    }
  }
  return NULL;
}

/* Reads and checks all n spikes (batches of up to 16 in batch mode, with a
 * blocking single read when a batch finds nothing); returns NULL. */
static void *reader(void *arg) {
  reader_arg_t *a = arg;
  shared_t *sh = a->sh;
  nb_spike_t out[16];
  uint64_t next = 0;
  while (next < sh->n) {
    size_t k = 0;
    uint64_t missed = 0;
    if (sh->batch) k = nb_axon_read_batch(a->r, out, 16, &missed);
    if (k == 0) {
      int rc = nb_axon_read(a->r, out, &missed);
      if (rc == NB_ECLOSED) return NULL; /* another thread failed */
      if (rc != 0) {
        violation(sh, a->id, next, out, nb_err_name(rc));
        return NULL;
      }
      k = 1;
    }
    if (missed) {
      violation(sh, a->id, next, out, "reported a lap in gated mode");
      return NULL;
    }
    for (size_t j = 0; j < k; j++, next++) {
      const char *bad = check(&out[j], next);
      if (bad) {
        violation(sh, a->id, next, &out[j], bad);
        return NULL;
      }
    }
  }
  return NULL;
}

static uint64_t spikes = 10000000;

/* Runs one round and records its verdict through the nbtest checks. */
static void run_round(const round_t *rd) {
  static shared_t sh;
  memset(&sh, 0, sizeof sh);
  nb_axon_opts_t o = nb_axon_opts_default();
  o.capacity = CAPACITY;
  o.mode = NB_AXON_GATED;
  o.wait = rd->wait;
  NBT_EQ(nb_axon_new(&sh.ax, &o), 0);
  if (!sh.ax) return;
  sh.n = spikes;
  sh.batch = rd->batch;
  reader_arg_t ra[MAX_READERS];
  pthread_t rt[MAX_READERS], pt;
  for (int i = 0; i < rd->readers; i++) {
    ra[i].sh = &sh;
    ra[i].id = i;
    NBT_EQ(nb_axon_reader_attach(sh.ax, &ra[i].r), 0);
  }
  uint64_t t0 = nbt_now_ns();
  uint64_t c0 = nbt_process_cpu_ns();
  for (int i = 0; i < rd->readers; i++)
    pthread_create(&rt[i], NULL, reader, &ra[i]);
  pthread_create(&pt, NULL, producer, &sh);
  pthread_join(pt, NULL);
  for (int i = 0; i < rd->readers; i++) pthread_join(rt[i], NULL);
  double s = (nbt_now_ns() - t0) / 1e9;
  double cpu = (nbt_process_cpu_ns() - c0) / 1e9;
  if (atomic_load(&sh.failed)) printf("    %s\n", sh.why);
  NBT_EQ(atomic_load(&sh.failed), 0);
  NBT_EQ(sh.publish_rc, 0);
  printf("    %-30s %llu spikes x %d reader%s in %.3f s (cpu %.3f s): "
         "%.2f M spikes/s\n",
         rd->name, (unsigned long long)spikes, rd->readers,
         rd->readers > 1 ? "s" : " ", s, cpu, spikes / s / 1e6);
  fflush(stdout);
  for (int i = 0; i < rd->readers; i++) nb_axon_reader_detach(ra[i].r);
  nb_axon_free(sh.ax);
}

/* Rounds. Two readers and the producer already oversubscribe 2 cores, so
 * the waits spin briefly, yield twice and then park: a thread spinning
 * while the one it waits for sits in the run queue only burns the CPU that
 * thread needs. The park round parks after 16 spins, so nearly every wait
 * sleeps on the futex and every wake goes through the kernel; it runs one
 * reader because with two, on 2 cores, each wake of both readers preempts
 * the producer and the round degrades to one park per spike (measured:
 * 8.5 us per spike against 0.7). */
#define SHORT_SPIN {NB_WAIT_YIELD_PARK, 64, 2}
static const round_t r1 = {"gated, 1 reader", 1, 0, SHORT_SPIN};
static const round_t r2 = {"gated, 2 readers", 2, 0, SHORT_SPIN};
static const round_t r4 = {"gated, 4 readers", 4, 0, SHORT_SPIN};
static const round_t rb = {"batch publish + batch read, 2", 2, 1, SHORT_SPIN};
static const round_t rp = {"park waits, 1 reader", 1, 0,
                           {NB_WAIT_YIELD_PARK, 16, 0}};

static void gated_1_reader(void) { run_round(&r1); }
static void gated_2_readers(void) { run_round(&r2); }
static void gated_4_readers(void) { run_round(&r4); }
static void batch_publish_batch_read(void) { run_round(&rb); }
static void park_waits(void) { run_round(&rp); }

/* A round takes seconds alone; with 4 readers and a producer on 2 shared
 * cores it may take minutes, which is slow but not a hang. */
static const nbt_test_t tests[] = {
    NBT_TEST_TIMEOUT(gated_1_reader, 180),
    NBT_TEST_TIMEOUT(gated_2_readers, 180),
    NBT_TEST_TIMEOUT(gated_4_readers, 180),
    NBT_TEST_TIMEOUT(batch_publish_batch_read, 180),
    NBT_TEST_TIMEOUT(park_waits, 180),
};

int main(int argc, char **argv) {
  const char *san = nbt_san();
  if (san && strcmp(san, "thread") == 0) spikes = 200000;
  else if (san && strcmp(san, "address") == 0) spikes = 2000000;
  if (argc > 2 && strcmp(argv[1], "--spikes") == 0) {
    spikes = strtoull(argv[2], NULL, 10);
    argv[2] = argv[0];
    argv += 2;
    argc -= 2;
  }
  if (spikes == 0) spikes = 1;
  if (argc < 2 || strcmp(argv[1], "--list") != 0)
    printf("# validate_axon: capacity %d, gated, %llu spikes per round\n",
           CAPACITY, (unsigned long long)spikes);
  return NBT_MAIN(argc, argv, tests, NULL);
}
