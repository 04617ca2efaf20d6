/* The axon: capacity rules, publish and read, batches, gating without
 * loss, blocking on both sides, reader attach/clone/detach (also while the
 * producer runs), overwrite laps with exact counts, torn reads never
 * returned, parked threads that sleep, and close. */
#include <pthread.h>
#include <sched.h>

#include "nb_axon.h"
#include "nb_err.h"
#include "nbtest.h"

/* Returns payload byte k of the spike numbered i. */
static uint8_t pay(uint64_t i, unsigned k) {
  return (uint8_t)(i * 131u + k * 7u + (i >> 8));
}

/* Fills s as spike number i: every field derives from i. Returns s. */
static nb_spike_t *mk(nb_spike_t *s, uint64_t i) {
  uint8_t p[NB_PAYLOAD_MAX];
  for (unsigned k = 0; k < NB_PAYLOAD_MAX; k++) p[k] = pay(i, k);
  nb_spike_init(s, (nb_id_t)(i >> 16), NB_EXCITATORY, (uint8_t)i);
  s->timestamp_ns = i;
  s->sequence = (uint32_t)i;
  s->source = 7;
  nb_spike_set_payload(s, p, NB_PAYLOAD_MAX);
  return s;
}

/* Returns nonzero when s is intact: every field agrees with its own
 * timestamp, which carries the spike number. */
static int intact(const nb_spike_t *s) {
  uint64_t i = s->timestamp_ns;
  if (s->sequence != (uint32_t)i || s->source != 7 ||
      s->target != (nb_id_t)(i >> 16) || s->priority != (uint8_t)i ||
      nb_spike_inline_len(s) != NB_PAYLOAD_MAX)
    return 0;
  for (unsigned k = 0; k < NB_PAYLOAD_MAX; k++)
    if (s->payload[k] != pay(i, k)) return 0;
  return 1;
}

/* Returns nonzero when s is spike number i, intact. */
static int is_spike(const nb_spike_t *s, uint64_t i) {
  return s->timestamp_ns == i && intact(s);
}

/* Returns a new axon with capacity cap, mode and wait kind (fails the
 * test and returns NULL on error). */
static nb_axon_t *axon(uint32_t cap, nb_axon_mode_t mode, nb_wait_kind_t k) {
  nb_axon_opts_t o = nb_axon_opts_default();
  o.capacity = cap;
  o.mode = mode;
  o.wait = nb_wait_default(k);
  nb_axon_t *ax = NULL;
  NBT_EQ(nb_axon_new(&ax, &o), 0);
  return ax;
}

/* Returns an attached reader (NULL and a failed check on error). */
static nb_axon_reader_t *reader(nb_axon_t *ax) {
  nb_axon_reader_t *r = NULL;
  NBT_EQ(nb_axon_reader_attach(ax, &r), 0);
  return r;
}

static void capacity_must_be_a_power_of_two(void) {
  nb_axon_opts_t o = nb_axon_opts_default();
  NBT_EQ(o.capacity, 4096);
  NBT_EQ(o.mode, NB_AXON_GATED);
  NBT_EQ(o.wait.kind, NB_WAIT_SPIN_HINT);
  uint32_t bad[] = {1, 3, 6, 100, 4095, 0x80000001u};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    nb_axon_t *ax = (nb_axon_t *)&o;
    o.capacity = bad[i];
    NBT_EQ(nb_axon_new(&ax, &o), NB_EINVAL);
    NBT_CHECK(ax == NULL);
  }
  uint32_t good[] = {2, 64, 4096};
  for (size_t i = 0; i < 3; i++) {
    nb_axon_t *ax = NULL;
    o.capacity = good[i];
    NBT_EQ(nb_axon_new(&ax, &o), 0);
    NBT_EQ(nb_axon_capacity(ax), good[i]);
    nb_axon_free(ax);
  }
  nb_axon_t *ax = NULL;
  o.capacity = 0;
  NBT_EQ(nb_axon_new(&ax, &o), 0);
  NBT_EQ(nb_axon_capacity(ax), NB_AXON_DEFAULT_CAPACITY);
  nb_axon_free(ax);
  NBT_EQ(nb_axon_new(&ax, NULL), 0);
  NBT_EQ(nb_axon_capacity(ax), NB_AXON_DEFAULT_CAPACITY);
  nb_axon_free(ax);
  o.capacity = 8;
  o.mode = (nb_axon_mode_t)5;
  NBT_EQ(nb_axon_new(&ax, &o), NB_EINVAL);
}

static void single_publish_and_read(void) {
  nb_axon_t *ax = axon(8, NB_AXON_GATED, NB_WAIT_SPIN_HINT);
  nb_axon_reader_t *r = reader(ax);
  nb_spike_t s, got;
  uint64_t missed = 99;
  NBT_EQ(nb_axon_try_read(r, &got, &missed), NB_EEMPTY);
  NBT_EQ(nb_axon_reader_available(r), 0);
  NBT_EQ(nb_axon_try_publish(ax, mk(&s, 0)), 0);
  NBT_EQ(nb_axon_published(ax), 1);
  NBT_EQ(nb_axon_reader_available(r), 1);
  NBT_EQ(nb_axon_try_read(r, &got, &missed), 0);
  NBT_CHECK(memcmp(&got, &s, sizeof s) == 0);
  NBT_EQ(missed, 0);
  NBT_EQ(nb_axon_try_read(r, &got, NULL), NB_EEMPTY);
  NBT_EQ(nb_axon_reader_available(r), 0);
  nb_axon_reader_detach(r);
  nb_axon_free(ax);
}

static void gated_axon_without_readers_keeps_publishing(void) {
  nb_axon_t *ax = axon(4, NB_AXON_GATED, NB_WAIT_SPIN_HINT);
  nb_spike_t s;
  for (uint64_t i = 0; i < 20; i++) NBT_EQ(nb_axon_try_publish(ax, mk(&s, i)), 0);
  NBT_EQ(nb_axon_published(ax), 20);
  nb_axon_reader_t *r = reader(ax); /* starts at the write cursor */
  NBT_EQ(nb_axon_reader_available(r), 0);
  NBT_EQ(nb_axon_try_publish(ax, mk(&s, 20)), 0);
  NBT_EQ(nb_axon_try_read(r, &s, NULL), 0);
  NBT_CHECK(is_spike(&s, 20));
  nb_axon_reader_detach(r);
  nb_axon_free(ax);
}

typedef struct watcher_s {
  nb_axon_t *ax;
  uint64_t final;
  _Atomic int ready;
  uint64_t odd;   /* values seen that are neither 0 nor final */
  uint64_t polls; /* loads made while waiting */
} watcher_t;

/* Polls the write cursor until it reaches final, counting the values that
 * are neither 0 nor final; returns NULL. */
static void *watch_thread(void *arg) {
  watcher_t *w = arg;
  atomic_store(&w->ready, 1);
  for (;;) {
    uint64_t v = nb_axon_published(w->ax);
    w->polls++;
    if (v == w->final) return NULL;
    if (v != 0) w->odd++;
  }
}

static void batch_publish_updates_the_cursor_once(void) {
  enum { N = 4096 };
  static nb_spike_t in[N], out[N];
  for (uint64_t i = 0; i < N; i++) mk(&in[i], i);
  uint64_t odd = 0, polls = 0;
  for (int round = 0; round < 10; round++) {
    nb_axon_t *ax = axon(N, NB_AXON_GATED, NB_WAIT_SPIN_HINT);
    nb_axon_reader_t *r = reader(ax);
    watcher_t w = {ax, N, 0, 0, 0};
    pthread_t t;
    pthread_create(&t, NULL, watch_thread, &w);
    while (!atomic_load(&w.ready)) sched_yield();
    NBT_EQ(nb_axon_try_publish_batch(ax, in, N), N);
    pthread_join(t, NULL);
    odd += w.odd;
    polls += w.polls;
    uint64_t missed = 9;
    NBT_EQ(nb_axon_read_batch(r, out, N, &missed), N);
    NBT_EQ(missed, 0);
    NBT_CHECK(memcmp(in, out, sizeof in) == 0);
    nb_axon_reader_detach(r);
    nb_axon_free(ax);
  }
  printf("    %llu polls of the cursor saw %llu intermediate values\n",
         (unsigned long long)polls, (unsigned long long)odd);
  NBT_EQ(odd, 0);
}

static void batches_wrap_and_stop_at_the_gate(void) {
  nb_axon_t *ax = axon(8, NB_AXON_GATED, NB_WAIT_SPIN_HINT);
  nb_axon_reader_t *r = reader(ax);
  nb_spike_t in[20], out[20];
  for (uint64_t i = 0; i < 20; i++) mk(&in[i], i);
  NBT_EQ(nb_axon_try_publish_batch(ax, in, 5), 5);
  NBT_EQ(nb_axon_read_batch(r, out, 20, NULL), 5);
  /* 8 fit (the reader is at 5, so the run wraps), the rest is refused. */
  NBT_EQ(nb_axon_try_publish_batch(ax, in + 5, 15), 8);
  NBT_EQ(nb_axon_published(ax), 13);
  NBT_EQ(nb_axon_try_publish_batch(ax, in + 13, 7), 0);
  NBT_EQ(nb_axon_read_batch(r, out + 5, 3, NULL), 3);
  NBT_EQ(nb_axon_try_publish_batch(ax, in + 13, 7), 3);
  NBT_EQ(nb_axon_read_batch(r, out + 8, 20, NULL), 8);
  NBT_EQ(nb_axon_read_batch(r, out + 16, 20, NULL), 0);
  for (uint64_t i = 0; i < 16; i++) NBT_CHECK(is_spike(&out[i], i));
  NBT_EQ(nb_axon_try_publish_batch(ax, in, 0), 0);
  nb_axon_reader_detach(r);
  nb_axon_free(ax);
}

static void gated_never_overwrites_an_unread_slot(void) {
  nb_axon_t *ax = axon(16, NB_AXON_GATED, NB_WAIT_SPIN_HINT);
  nb_axon_reader_t *r = reader(ax);
  nb_spike_t s;
  uint64_t next = 0, want = 0;
  for (; next < 16; next++) NBT_EQ(nb_axon_try_publish(ax, mk(&s, next)), 0);
  NBT_EQ(nb_axon_try_publish(ax, mk(&s, next)), NB_EFULL);
  NBT_EQ(nb_axon_try_publish(ax, mk(&s, next)), NB_EFULL);
  NBT_EQ(nb_axon_published(ax), 16);
  NBT_EQ(nb_axon_try_read(r, &s, NULL), 0);
  NBT_CHECK(is_spike(&s, want++));
  NBT_EQ(nb_axon_try_publish(ax, mk(&s, next++)), 0);
  NBT_EQ(nb_axon_try_publish(ax, mk(&s, next)), NB_EFULL);
  while (nb_axon_try_read(r, &s, NULL) == 0) NBT_CHECK(is_spike(&s, want++));
  NBT_EQ(want, 17);
  nb_axon_reader_detach(r);
  nb_axon_free(ax);
}

typedef struct producer_s {
  nb_axon_t *ax;
  uint64_t n;
  int batch; /* publish_batch in runs of 7 instead of publish */
  int rc;
  uint64_t cpu_ns;
} producer_t;

/* Publishes spikes 0..n-1 with the blocking calls; returns NULL. */
static void *produce_thread(void *arg) {
  producer_t *p = arg;
  nb_spike_t s[7];
  uint64_t c0 = nbt_thread_cpu_ns();
  p->rc = 0;
  for (uint64_t i = 0; i < p->n && p->rc == 0;) {
    if (p->batch) {
      size_t k = p->n - i < 7 ? (size_t)(p->n - i) : 7;
      for (size_t j = 0; j < k; j++) mk(&s[j], i + j);
      p->rc = nb_axon_publish_batch(p->ax, s, k);
      i += k;
    } else {
      p->rc = nb_axon_publish(p->ax, mk(&s[0], i));
      i++;
    }
  }
  p->cpu_ns = nbt_thread_cpu_ns() - c0;
  return NULL;
}

static void blocking_publish_waits_and_resumes(void) {
  const nb_wait_kind_t ks[] = {NB_WAIT_SPIN_HINT, NB_WAIT_YIELD_PARK};
  for (int k = 0; k < 2; k++) {
    for (int batch = 0; batch < 2; batch++) {
      nb_axon_t *ax = axon(4, NB_AXON_GATED, ks[k]);
      nb_axon_reader_t *r = reader(ax);
      producer_t p = {ax, 200, batch, -1, 0};
      pthread_t t;
      pthread_create(&t, NULL, produce_thread, &p);
      nbt_sleep_ms(30);
      NBT_EQ(nb_axon_published(ax), 4); /* it waits at the gate */
      nb_spike_t s;
      for (uint64_t i = 0; i < 200; i++) {
        NBT_EQ(nb_axon_read(r, &s, NULL), 0);
        NBT_CHECK(is_spike(&s, i));
      }
      pthread_join(t, NULL);
      NBT_EQ(p.rc, 0);
      NBT_EQ(nb_axon_published(ax), 200);
      nb_axon_reader_detach(r);
      nb_axon_free(ax);
    }
  }
}

static void readers_have_independent_cursors(void) {
  nb_axon_t *ax = axon(8, NB_AXON_GATED, NB_WAIT_SPIN_HINT);
  nb_axon_reader_t *a = reader(ax), *b = reader(ax);
  nb_spike_t s;
  for (uint64_t i = 0; i < 6; i++) NBT_EQ(nb_axon_try_publish(ax, mk(&s, i)), 0);
  for (uint64_t i = 0; i < 6; i++) {
    NBT_EQ(nb_axon_try_read(a, &s, NULL), 0);
    NBT_CHECK(is_spike(&s, i));
  }
  NBT_EQ(nb_axon_reader_available(a), 0);
  NBT_EQ(nb_axon_reader_available(b), 6);
  NBT_EQ(nb_axon_try_read(b, &s, NULL), 0);
  NBT_CHECK(is_spike(&s, 0));
  /* b is the slowest: it holds the gate at 1 + 8. */
  NBT_EQ(nb_axon_try_publish(ax, mk(&s, 6)), 0);
  NBT_EQ(nb_axon_try_publish(ax, mk(&s, 7)), 0);
  NBT_EQ(nb_axon_try_publish(ax, mk(&s, 8)), 0);
  NBT_EQ(nb_axon_try_publish(ax, mk(&s, 9)), NB_EFULL);
  NBT_EQ(nb_axon_reader_available(a), 3);
  NBT_EQ(nb_axon_reader_available(b), 8);
  nb_axon_reader_detach(a);
  nb_axon_reader_detach(b);
  nb_axon_free(ax);
}

static void clone_starts_at_the_readers_position(void) {
  nb_axon_t *ax = axon(16, NB_AXON_GATED, NB_WAIT_SPIN_HINT);
  nb_axon_reader_t *r = reader(ax), *c = NULL;
  nb_spike_t s;
  for (uint64_t i = 0; i < 10; i++) NBT_EQ(nb_axon_try_publish(ax, mk(&s, i)), 0);
  for (int i = 0; i < 4; i++) NBT_EQ(nb_axon_try_read(r, &s, NULL), 0);
  NBT_EQ(nb_axon_reader_clone(r, &c), 0);
  NBT_EQ(nb_axon_reader_available(c), 6);
  for (uint64_t i = 4; i < 10; i++) {
    NBT_EQ(nb_axon_try_read(c, &s, NULL), 0);
    NBT_CHECK(is_spike(&s, i));
  }
  NBT_EQ(nb_axon_try_read(c, &s, NULL), NB_EEMPTY);
  /* The clone gates too: r is at 4, so 4 + 16 is the limit. */
  nb_axon_reader_detach(r);
  for (uint64_t i = 10; i < 26; i++) NBT_EQ(nb_axon_try_publish(ax, mk(&s, i)), 0);
  NBT_EQ(nb_axon_try_publish(ax, mk(&s, 26)), NB_EFULL);
  nb_axon_reader_detach(c);
  nb_axon_free(ax);
}

/* Blocks in nb_axon_publish for one more spike; returns NULL. */
static void *publish_one_thread(void *arg) {
  producer_t *p = arg;
  nb_spike_t s;
  uint64_t c0 = nbt_thread_cpu_ns();
  p->rc = nb_axon_publish(p->ax, mk(&s, p->n));
  p->cpu_ns = nbt_thread_cpu_ns() - c0;
  return NULL;
}

static void detach_releases_the_gate(void) {
  nb_axon_t *ax = axon(4, NB_AXON_GATED, NB_WAIT_SPIN_HINT);
  nb_axon_reader_t *fast = reader(ax), *slow = reader(ax);
  nb_spike_t s;
  for (uint64_t i = 0; i < 4; i++) NBT_EQ(nb_axon_try_publish(ax, mk(&s, i)), 0);
  while (nb_axon_try_read(fast, &s, NULL) == 0) {
  }
  NBT_EQ(nb_axon_try_publish(ax, mk(&s, 4)), NB_EFULL);
  nb_axon_reader_detach(slow);
  NBT_EQ(nb_axon_try_publish(ax, mk(&s, 4)), 0);
  nb_axon_reader_detach(fast);
  nb_axon_free(ax);

  /* A publisher parked at the gate wakes when the slow reader leaves. */
  ax = axon(4, NB_AXON_GATED, NB_WAIT_YIELD_PARK);
  slow = reader(ax);
  for (uint64_t i = 0; i < 4; i++) NBT_EQ(nb_axon_try_publish(ax, mk(&s, i)), 0);
  producer_t p = {ax, 4, 0, -1, 0};
  pthread_t t;
  pthread_create(&t, NULL, publish_one_thread, &p);
  nbt_sleep_ms(50);
  NBT_EQ(nb_axon_published(ax), 4);
  nb_axon_reader_detach(slow);
  pthread_join(t, NULL);
  NBT_EQ(p.rc, 0);
  NBT_EQ(nb_axon_published(ax), 5);
  nb_axon_free(ax);
}

static void attach_stops_at_the_reader_limit(void) {
  nb_axon_t *ax = axon(8, NB_AXON_GATED, NB_WAIT_SPIN_HINT);
  nb_axon_reader_t *rs[NB_AXON_MAX_READERS], *x = NULL;
  for (int i = 0; i < NB_AXON_MAX_READERS; i++) rs[i] = reader(ax);
  NBT_EQ(nb_axon_reader_attach(ax, &x), NB_ELIMIT);
  NBT_CHECK(x == NULL);
  NBT_EQ(nb_axon_reader_clone(rs[0], &x), NB_ELIMIT);
  nb_axon_reader_detach(rs[5]);
  NBT_EQ(nb_axon_reader_attach(ax, &rs[5]), 0);
  nb_spike_t s;
  NBT_EQ(nb_axon_try_publish(ax, mk(&s, 0)), 0);
  for (int i = 0; i < NB_AXON_MAX_READERS; i++) {
    NBT_EQ(nb_axon_try_read(rs[i], &s, NULL), 0);
    nb_axon_reader_detach(rs[i]);
  }
  nb_axon_free(ax);
}

typedef struct runner_s {
  nb_axon_t *ax;
  _Atomic int stop;
  uint64_t published;
} runner_t;

/* Publishes spikes 0, 1, 2, ... as fast as the gate allows until told to
 * stop; returns NULL. */
static void *free_run_thread(void *arg) {
  runner_t *p = arg;
  nb_spike_t s;
  uint64_t i = 0;
  while (!atomic_load_explicit(&p->stop, memory_order_relaxed)) {
    mk(&s, i);
    for (int tries = 0; tries < 64; tries++) {
      if (nb_axon_try_publish(p->ax, &s) == 0) {
        i++;
        break;
      }
      sched_yield();
    }
  }
  p->published = i;
  return NULL;
}

/* Reads n spikes from r and checks they are consecutive and intact from
 * the first one on; returns the first spike's number, or UINT64_MAX after
 * printing the first violation. */
static uint64_t read_run(nb_axon_reader_t *r, uint64_t n, const char *who) {
  nb_spike_t s;
  uint64_t first = 0;
  for (uint64_t k = 0; k < n; k++) {
    if (nb_axon_read(r, &s, NULL) != 0) return UINT64_MAX;
    if (k == 0) first = s.timestamp_ns;
    if (!is_spike(&s, first + k)) {
      printf("    %s: spike %llu of the run: expected %llu, got %llu%s\n", who,
             (unsigned long long)k, (unsigned long long)(first + k),
             (unsigned long long)s.timestamp_ns, intact(&s) ? "" : " (torn)");
      return UINT64_MAX;
    }
  }
  return first;
}

static void attach_while_producing_is_never_lapped(void) {
  /* A free-running producer is gated only by the reader that keeps
   * attaching. A reader the producer did not account for would read slots
   * overwritten one lap ahead and then jump back: read_run sees it. */
  enum { CAP = 8 };
  nb_axon_t *ax = axon(CAP, NB_AXON_GATED, NB_WAIT_YIELD_PARK);
  runner_t p;
  memset(&p, 0, sizeof p);
  p.ax = ax;
  pthread_t t;
  pthread_create(&t, NULL, free_run_thread, &p);
  /* At least 500 attaches, then up to 20000 or 3 seconds: a loaded
   * machine slows each one down a lot. */
  int iters = nbt_under_san() ? 1500 : 20000, bad = 0, it;
  uint64_t t_end = nbt_now_ns() + 3000000000u;
  for (it = 0; it < iters && !bad && (it < 500 || nbt_now_ns() < t_end); it++) {
    nb_axon_reader_t *r = NULL, *c = NULL;
    /* Attach only while the producer is running free, publishing. */
    uint64_t before = nb_axon_published(ax);
    while (nb_axon_published(ax) < before + 4 * CAP) nb_wait_pause();
    before = nb_axon_published(ax);
    NBT_EQ(nb_axon_reader_attach(ax, &r), 0);
    /* Dawdle like any reader may: a producer that missed us laps us now. */
    for (volatile int d = 0; d < 2000; d++) {
    }
    uint64_t first = read_run(r, CAP + 4, "attached");
    if (first == UINT64_MAX || first < before) {
      bad = 1;
    } else if (it % 2) {
      /* Clone mid-stream, then let the original run ahead while the
       * clone lags: both must see the same spikes from the same place. */
      NBT_EQ(nb_axon_reader_clone(r, &c), 0);
      uint64_t b = read_run(r, CAP, "original"); /* as far as c allows */
      uint64_t a = read_run(c, CAP + 4, "clone");
      if (b != first + CAP + 4 || a != b) bad = 1;
      nb_axon_reader_detach(c);
    }
    nb_axon_reader_detach(r);
  }
  atomic_store(&p.stop, 1);
  pthread_join(t, NULL);
  printf("    %d attaches (half with a clone) over %llu spikes\n", it,
         (unsigned long long)p.published);
  NBT_EQ(bad, 0);
  nb_axon_free(ax);
}

static void overwrite_reports_the_exact_lap(void) {
  nb_axon_t *ax = axon(64, NB_AXON_OVERWRITE, NB_WAIT_SPIN_HINT);
  nb_axon_reader_t *r = reader(ax);
  nb_spike_t s;
  uint64_t missed = 0;
  for (uint64_t i = 0; i < 64 + 37; i++) NBT_EQ(nb_axon_try_publish(ax, mk(&s, i)), 0);
  NBT_EQ(nb_axon_reader_available(r), 64); /* only the intact ones */
  NBT_EQ(nb_axon_try_read(r, &s, &missed), NB_ELAPPED);
  NBT_EQ(missed, 37);
  NBT_EQ(nb_axon_try_read(r, &s, &missed), 0);
  NBT_CHECK(is_spike(&s, 37)); /* the oldest intact spike */
  NBT_EQ(missed, 0);
  for (uint64_t i = 38; i < 101; i++) {
    NBT_EQ(nb_axon_try_read(r, &s, NULL), 0);
    NBT_CHECK(is_spike(&s, i));
  }
  NBT_EQ(nb_axon_try_read(r, &s, &missed), NB_EEMPTY);
  /* A second lap, several rings deep, counted just as exactly. */
  for (uint64_t i = 101; i < 101 + 5 * 64 + 3; i++)
    NBT_EQ(nb_axon_try_publish(ax, mk(&s, i)), 0);
  NBT_EQ(nb_axon_read(r, &s, &missed), NB_ELAPPED);
  NBT_EQ(missed, 4 * 64 + 3);
  NBT_EQ(nb_axon_read(r, &s, &missed), 0);
  NBT_CHECK(is_spike(&s, 101 + 4 * 64 + 3));
  nb_axon_reader_detach(r);
  nb_axon_free(ax);
}

static void overwrite_batches_report_the_gap(void) {
  nb_axon_t *ax = axon(16, NB_AXON_OVERWRITE, NB_WAIT_SPIN_HINT);
  nb_axon_reader_t *r = reader(ax);
  nb_spike_t in[100], out[100];
  uint64_t missed = 0;
  for (uint64_t i = 0; i < 100; i++) mk(&in[i], i);
  NBT_EQ(nb_axon_try_publish_batch(ax, in, 40), 40);
  NBT_EQ(nb_axon_read_batch(r, out, 100, &missed), 16);
  NBT_EQ(missed, 24);
  for (uint64_t i = 0; i < 16; i++) NBT_CHECK(is_spike(&out[i], 24 + i));
  NBT_EQ(nb_axon_read_batch(r, out, 100, &missed), 0);
  NBT_EQ(missed, 0);
  /* A run longer than the ring keeps its last 16 spikes, one cursor move. */
  NBT_EQ(nb_axon_try_publish_batch(ax, in, 100), 100);
  NBT_EQ(nb_axon_published(ax), 140);
  NBT_EQ(nb_axon_read_batch(r, out, 5, &missed), 5);
  NBT_EQ(missed, 84);
  for (uint64_t i = 0; i < 5; i++) NBT_CHECK(is_spike(&out[i], 84 + i));
  NBT_EQ(nb_axon_read_batch(r, out, 100, &missed), 11);
  NBT_EQ(missed, 0);
  NBT_CHECK(is_spike(&out[10], 99));
  nb_axon_reader_detach(r);
  nb_axon_free(ax);
}

typedef struct lapper_s {
  nb_axon_t *ax;
  _Atomic int stop, done;
  _Atomic uint64_t n; /* spikes published, final once done is set */
} lapper_t;

/* Publishes spikes 0, 1, 2, ... in overwrite mode, singly and in small
 * batches, never waiting, until told to stop; returns NULL. */
static void *lap_thread(void *arg) {
  lapper_t *p = arg;
  nb_spike_t s[5];
  uint64_t i = 0;
  while (!atomic_load_explicit(&p->stop, memory_order_relaxed)) {
    if (i % 3 == 0) {
      for (int j = 0; j < 5; j++) mk(&s[j], i + j);
      nb_axon_try_publish_batch(p->ax, s, 5);
      i += 5;
    } else {
      nb_axon_try_publish(p->ax, mk(&s[0], i++));
    }
  }
  atomic_store(&p->n, i);
  atomic_store(&p->done, 1);
  return NULL;
}

static void overwrite_never_returns_a_torn_spike(void) {
  /* The producer laps the reader continuously on a tiny ring, so slots
   * are rewritten while they are copied. Every spike returned must be
   * intact and exactly where the loss accounting says it should be. */
  for (int batch = 0; batch < 2; batch++) {
    nb_axon_t *ax = axon(8, NB_AXON_OVERWRITE, NB_WAIT_SPIN_HINT);
    nb_axon_reader_t *r = reader(ax);
    lapper_t p;
    memset(&p, 0, sizeof p);
    p.ax = ax;
    pthread_t t;
    pthread_create(&t, NULL, lap_thread, &p);
    uint64_t want = nbt_under_san() ? 20000 : 300000;
    uint64_t t_end = nbt_now_ns() + 2000000000u;
    uint64_t expect = 0, got = 0, laps = 0, lost = 0, bad = 0;
    nb_spike_t out[4];
    while (!bad) {
      int done = atomic_load(&p.done);
      if (done && expect >= atomic_load(&p.n)) break;
      if (!done && (got >= want || nbt_now_ns() > t_end)) atomic_store(&p.stop, 1);
      uint64_t missed = 0;
      size_t n = 0;
      if (batch) {
        n = nb_axon_read_batch(r, out, 4, &missed);
      } else {
        int rc = nb_axon_try_read(r, out, &missed);
        if (rc == 0) n = 1;
        else if (rc != NB_ELAPPED && rc != NB_EEMPTY) bad = 1;
      }
      if (missed) laps++;
      lost += missed;
      expect += missed;
      for (size_t i = 0; i < n && !bad; i++, expect++) {
        if (!is_spike(&out[i], expect)) {
          printf("    expected %llu, got %llu%s\n", (unsigned long long)expect,
                 (unsigned long long)out[i].timestamp_ns,
                 intact(&out[i]) ? "" : " (torn)");
          bad = 1;
        }
      }
      got += n;
      if (!n && !missed && done && nb_axon_reader_available(r) == 0 &&
          expect < atomic_load(&p.n)) {
        printf("    drained at %llu of %llu\n", (unsigned long long)expect,
               (unsigned long long)atomic_load(&p.n));
        bad = 1;
      }
    }
    atomic_store(&p.stop, 1);
    pthread_join(t, NULL);
    printf("    %s: %llu spikes read intact, %llu lost in %llu laps\n",
           batch ? "read_batch" : "try_read", (unsigned long long)got,
           (unsigned long long)lost, (unsigned long long)laps);
    NBT_EQ(bad, 0);
    NBT_EQ(got + lost, atomic_load(&p.n));
    NBT_CHECK(laps > 0);
    nb_axon_reader_detach(r);
    nb_axon_free(ax);
  }
}

typedef struct blocked_reader_s {
  nb_axon_reader_t *r;
  int rc;
  nb_spike_t s;
  uint64_t cpu_ns;
} blocked_reader_t;

/* Blocks in nb_axon_read, measuring its CPU time; returns NULL. */
static void *read_one_thread(void *arg) {
  blocked_reader_t *b = arg;
  uint64_t c0 = nbt_thread_cpu_ns();
  b->rc = nb_axon_read(b->r, &b->s, NULL);
  b->cpu_ns = nbt_thread_cpu_ns() - c0;
  return NULL;
}

static void parked_reader_sleeps_and_wakes_on_publish(void) {
  nb_axon_t *ax = axon(8, NB_AXON_GATED, NB_WAIT_YIELD_PARK);
  blocked_reader_t b = {reader(ax), -1, {0}, 0};
  pthread_t t;
  pthread_create(&t, NULL, read_one_thread, &b);
  nbt_sleep_ms(200);
  nb_spike_t s;
  NBT_EQ(nb_axon_try_publish(ax, mk(&s, 0)), 0);
  pthread_join(t, NULL);
  NBT_EQ(b.rc, 0);
  NBT_CHECK(is_spike(&b.s, 0));
  printf("    reader parked 200 ms, used %.3f ms of CPU\n", b.cpu_ns / 1e6);
  NBT_CHECK(b.cpu_ns < 5000000u);
  nb_axon_reader_detach(b.r);
  nb_axon_free(ax);
}

static void parked_publisher_sleeps_and_wakes_on_read(void) {
  nb_axon_t *ax = axon(4, NB_AXON_GATED, NB_WAIT_YIELD_PARK);
  nb_axon_reader_t *r = reader(ax);
  nb_spike_t s;
  for (uint64_t i = 0; i < 4; i++) NBT_EQ(nb_axon_try_publish(ax, mk(&s, i)), 0);
  producer_t p = {ax, 4, 0, -1, 0};
  pthread_t t;
  pthread_create(&t, NULL, publish_one_thread, &p);
  nbt_sleep_ms(200);
  NBT_EQ(nb_axon_published(ax), 4);
  NBT_EQ(nb_axon_try_read(r, &s, NULL), 0);
  pthread_join(t, NULL);
  NBT_EQ(p.rc, 0);
  printf("    publisher parked 200 ms, used %.3f ms of CPU\n", p.cpu_ns / 1e6);
  NBT_CHECK(p.cpu_ns < 5000000u);
  for (uint64_t i = 1; i < 5; i++) {
    NBT_EQ(nb_axon_try_read(r, &s, NULL), 0);
    NBT_CHECK(is_spike(&s, i));
  }
  nb_axon_reader_detach(r);
  nb_axon_free(ax);
}

static void close_wakes_blocked_callers(void) {
  for (int k = 0; k < 3; k++) {
    nb_axon_t *ax = axon(2, NB_AXON_GATED, (nb_wait_kind_t)k);
    nb_axon_reader_t *full = reader(ax), *r = NULL;
    nb_spike_t s;
    NBT_EQ(nb_axon_try_publish(ax, mk(&s, 0)), 0);
    NBT_EQ(nb_axon_try_publish(ax, mk(&s, 1)), 0);
    NBT_EQ(nb_axon_reader_attach(ax, &r), 0); /* at 2: nothing to read */
    blocked_reader_t b = {r, -1, {0}, 0};
    producer_t p = {ax, 2, 0, -1, 0};
    pthread_t tr, tp;
    pthread_create(&tr, NULL, read_one_thread, &b);
    pthread_create(&tp, NULL, publish_one_thread, &p);
    nbt_sleep_ms(50);
    nb_axon_close(ax);
    pthread_join(tr, NULL);
    pthread_join(tp, NULL);
    NBT_EQ(b.rc, NB_ECLOSED);
    NBT_EQ(p.rc, NB_ECLOSED);
    /* Closed and drained: the full reader still gets its two spikes. */
    NBT_EQ(nb_axon_read(full, &s, NULL), 0);
    NBT_CHECK(is_spike(&s, 0));
    NBT_EQ(nb_axon_read(full, &s, NULL), 0);
    NBT_CHECK(is_spike(&s, 1));
    NBT_EQ(nb_axon_read(full, &s, NULL), NB_ECLOSED);
    nb_axon_reader_detach(full);
    nb_axon_reader_detach(r);
    nb_axon_free(ax);
  }
}

static void claim_and_commit_publish_in_place(void) {
  nb_axon_t *ax = axon(8, NB_AXON_GATED, NB_WAIT_SPIN_HINT);
  nb_axon_reader_t *r = reader(ax);
  nb_spike_t s;
  NBT_EQ(nb_axon_claimable(ax), 8);
  nb_spike_t *slot = nb_axon_claim(ax);
  NBT_CHECK(slot != NULL);
  NBT_EQ((uintptr_t)slot % 64, 0);
  mk(slot, 0);
  NBT_EQ(nb_axon_reader_available(r), 0); /* not visible before commit */
  nb_axon_commit(ax, 1);
  NBT_EQ(nb_axon_claimable(ax), 7);
  for (uint32_t i = 0; i < 7; i++) {
    slot = nb_axon_claim_at(ax, i);
    NBT_CHECK(slot != NULL);
    if (slot) mk(slot, 1 + i);
  }
  NBT_CHECK(nb_axon_claim_at(ax, 7) == NULL); /* would overwrite spike 0 */
  nb_axon_commit(ax, 7);
  NBT_CHECK(nb_axon_claim(ax) == NULL);
  NBT_EQ(nb_axon_claimable(ax), 0);
  for (uint64_t i = 0; i < 8; i++) {
    NBT_EQ(nb_axon_try_read(r, &s, NULL), 0);
    NBT_CHECK(is_spike(&s, i));
  }
  NBT_EQ(nb_axon_claimable(ax), 8);
  NBT_CHECK(nb_axon_claim_at(ax, 8) == NULL);
  nb_axon_reader_detach(r);
  nb_axon_free(ax);

  /* Overwrite mode: claims never fail within the ring and laps count. */
  ax = axon(4, NB_AXON_OVERWRITE, NB_WAIT_SPIN_HINT);
  r = reader(ax);
  NBT_EQ(nb_axon_claimable(ax), 4);
  for (uint64_t i = 0; i < 6; i++) {
    slot = nb_axon_claim(ax);
    NBT_CHECK(slot != NULL);
    if (slot) mk(slot, i);
    nb_axon_commit(ax, 1);
  }
  uint64_t missed = 0;
  NBT_EQ(nb_axon_try_read(r, &s, &missed), NB_ELAPPED);
  NBT_EQ(missed, 2);
  NBT_EQ(nb_axon_try_read(r, &s, &missed), 0);
  NBT_CHECK(is_spike(&s, 2));
  nb_axon_reader_detach(r);
  nb_axon_free(ax);
}

static void peek_and_advance_read_in_place(void) {
  nb_axon_t *ax = axon(4, NB_AXON_GATED, NB_WAIT_SPIN_HINT);
  nb_axon_reader_t *r = reader(ax);
  nb_spike_t s;
  NBT_CHECK(nb_axon_reader_peek(r) == NULL);
  for (uint64_t i = 0; i < 4; i++) NBT_EQ(nb_axon_try_publish(ax, mk(&s, i)), 0);
  const nb_spike_t *p0 = nb_axon_reader_peek(r);
  NBT_CHECK(p0 && is_spike(p0, 0));
  for (uint64_t i = 0; i < 4; i++) {
    const nb_spike_t *p = nb_axon_reader_peek_at(r, i);
    NBT_CHECK(p && is_spike(p, i));
  }
  NBT_CHECK(nb_axon_reader_peek_at(r, 4) == NULL);
  /* Peeked slots stay put: the producer is gated until advance. */
  NBT_EQ(nb_axon_try_publish(ax, mk(&s, 4)), NB_EFULL);
  NBT_CHECK(is_spike(p0, 0));
  nb_axon_reader_advance(r, 2);
  NBT_EQ(nb_axon_try_publish(ax, mk(&s, 4)), 0);
  NBT_EQ(nb_axon_try_publish(ax, mk(&s, 5)), 0);
  NBT_EQ(nb_axon_try_publish(ax, mk(&s, 6)), NB_EFULL);
  NBT_CHECK(is_spike(nb_axon_reader_peek(r), 2));
  nb_axon_reader_advance(r, 100); /* capped at what is published */
  NBT_EQ(nb_axon_reader_available(r), 0);
  NBT_EQ(nb_axon_try_publish(ax, mk(&s, 6)), 0);
  NBT_EQ(nb_axon_try_read(r, &s, NULL), 0);
  NBT_CHECK(is_spike(&s, 6));
  nb_axon_reader_detach(r);
  nb_axon_free(ax);

  ax = axon(4, NB_AXON_OVERWRITE, NB_WAIT_SPIN_HINT);
  r = reader(ax);
  NBT_EQ(nb_axon_try_publish(ax, mk(&s, 0)), 0);
  NBT_CHECK(nb_axon_reader_peek(r) == NULL); /* no stable slot to lend */
  nb_axon_reader_detach(r);
  nb_axon_free(ax);
}

typedef struct batch_reader_s {
  nb_axon_reader_t *r;
  uint64_t n, bad;
} batch_reader_t;

/* Reads n spikes with read_batch, checking order; returns NULL. */
static void *batch_read_thread(void *arg) {
  batch_reader_t *b = arg;
  nb_spike_t out[5];
  uint64_t next = 0;
  while (next < b->n && !b->bad) {
    size_t k = nb_axon_read_batch(b->r, out, 5, NULL);
    for (size_t i = 0; i < k; i++)
      if (!is_spike(&out[i], next++)) b->bad++;
    if (!k) sched_yield();
  }
  return NULL;
}

static void blocking_batches_move_everything_in_order(void) {
  nb_axon_t *ax = axon(8, NB_AXON_GATED, NB_WAIT_YIELD_PARK);
  batch_reader_t b = {reader(ax), nbt_under_san() ? 20000 : 200000, 0};
  producer_t p = {ax, b.n, 1, -1, 0};
  pthread_t tr, tp;
  pthread_create(&tr, NULL, batch_read_thread, &b);
  pthread_create(&tp, NULL, produce_thread, &p);
  pthread_join(tp, NULL);
  pthread_join(tr, NULL);
  NBT_EQ(p.rc, 0);
  NBT_EQ(b.bad, 0);
  NBT_EQ(nb_axon_published(ax), b.n);
  nb_axon_reader_detach(b.r);
  nb_axon_free(ax);
}

static const nbt_test_t tests[] = {
    NBT_TEST(capacity_must_be_a_power_of_two),
    NBT_TEST(single_publish_and_read),
    NBT_TEST(gated_axon_without_readers_keeps_publishing),
    NBT_TEST(batch_publish_updates_the_cursor_once),
    NBT_TEST(batches_wrap_and_stop_at_the_gate),
    NBT_TEST(gated_never_overwrites_an_unread_slot),
    NBT_TEST(blocking_publish_waits_and_resumes),
    NBT_TEST(readers_have_independent_cursors),
    NBT_TEST(clone_starts_at_the_readers_position),
    NBT_TEST(detach_releases_the_gate),
    NBT_TEST(attach_stops_at_the_reader_limit),
    NBT_TEST(attach_while_producing_is_never_lapped),
    NBT_TEST(overwrite_reports_the_exact_lap),
    NBT_TEST(overwrite_batches_report_the_gap),
    NBT_TEST(overwrite_never_returns_a_torn_spike),
    NBT_TEST(parked_reader_sleeps_and_wakes_on_publish),
    NBT_TEST(parked_publisher_sleeps_and_wakes_on_read),
    NBT_TEST(close_wakes_blocked_callers),
    NBT_TEST(claim_and_commit_publish_in_place),
    NBT_TEST(peek_and_advance_read_in_place),
    NBT_TEST(blocking_batches_move_everything_in_order),
};

int main(int argc, char **argv) { return NBT_MAIN(argc, argv, tests, NULL); }
