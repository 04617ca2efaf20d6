/* The cortex with several workers, ticked in turn on one thread: options,
 * a held target parking its source's spikes without holding back the ring,
 * a slow worker and a parked target backing up into the producer's axon,
 * dead letters where they are found, filters run on the target's worker, and a broadcast with an
 * arena payload split over three workers; and on two threads, a neuron
 * stuck in a call whose worker another thread adopts. validate_workers
 * runs the whole cortex on threads. */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>

#include "neuronbus.h"
#include "nbtest.h"

static int current_worker = -1; /* set around each nb_cortex_tick_worker */

typedef struct agent_s {
  int spikes, filter_calls, filter_worker;
  uint32_t last; /* the last counter received + 1 */
  int out_of_order;
  size_t last_len;
  uint8_t last_bytes[128];
} agent_t;

/* Records a spike whose payload starts with a counter; returns 0. */
static int on_spike(void *agent, nb_neuron_t *n, const nb_spike_t *s,
                    float w) {
  (void)w;
  agent_t *a = agent;
  const void *data;
  size_t len;
  if (nb_neuron_payload(n, s, &data, &len) != 0) return -1;
  uint32_t c = 0;
  if (len >= sizeof c) memcpy(&c, data, sizeof c);
  if (c != a->last) a->out_of_order++;
  a->last = c + 1;
  a->last_len = len < sizeof a->last_bytes ? len : sizeof a->last_bytes;
  memcpy(a->last_bytes, data, a->last_len);
  a->spikes++;
  return 0;
}

/* Passes everything and notes on which worker it ran; returns 1. */
static int filter(void *agent, nb_neuron_t *n, const char *name,
                  const nb_spike_t *s, const void *p, size_t len) {
  (void)n, (void)name, (void)s, (void)p, (void)len;
  agent_t *a = agent;
  a->filter_calls++;
  a->filter_worker = current_worker;
  return 1;
}

static const nb_agent_ops_t ops = {.on_spike = on_spike, .filter = filter};

/* Returns a cortex with workers, small capacities and arena (may be
 * NULL), or NULL. */
static nb_cortex_t *mk(uint32_t workers, uint32_t axon, uint32_t inbox,
                       uint32_t ring, nb_arena_t *arena) {
  nb_cortex_opts_t o = nb_cortex_opts_default();
  o.max_neurons = 128;
  o.axon_capacity = axon;
  o.inbox_capacity = inbox;
  o.ring_capacity = ring;
  o.workers = workers;
  o.arena = arena;
  nb_cortex_t *cx = NULL;
  return nb_cortex_new(&cx, &o) == 0 ? cx : NULL;
}

/* Registers name (refractory 0) with agent a; returns the neuron. */
static nb_neuron_t *reg(nb_cortex_t *cx, const char *name, agent_t *a) {
  nb_card_t c = {.name = name};
  nb_if_params_t p = nb_if_params_default();
  p.refractory = 0;
  nb_neuron_t *n = NULL;
  NBT_EQ(nb_cortex_register(cx, &c, &p, &ops, a, &n), 0);
  return n;
}

/* Ticks every worker in turn, k times, noting the worker; returns
 * nothing. */
static void ticks(nb_cortex_t *cx, int k) {
  for (int i = 0; i < k; i++)
    for (uint32_t w = 0; w < nb_cortex_workers(cx); w++) {
      current_worker = (int)w;
      NBT_CHECK(nb_cortex_tick_worker(cx, w) >= 0);
      current_worker = -1;
    }
}

/* Fires counter c from n to target; returns the fire's result. */
static int fire(nb_neuron_t *n, nb_id_t target, uint32_t c) {
  return nb_neuron_fire_to(n, target, &c, sizeof c);
}

static void options_are_checked(void) {
  nb_cortex_t *cx = mk(0, 16, 4, 8, NULL);
  NBT_CHECK(cx != NULL);
  NBT_EQ(nb_cortex_workers(cx), 1);
  NBT_EQ(nb_cortex_tick_worker(cx, 1), NB_EINVAL);
  nb_cortex_free(cx);
  NBT_CHECK(mk(NB_MAX_WORKERS + 1, 16, 4, 8, NULL) == NULL);
  NBT_CHECK(mk(2, 16, 4, 12, NULL) == NULL); /* not a power of two */
  cx = mk(3, 16, 4, 8, NULL);
  NBT_EQ(nb_cortex_workers(cx), 3);
  NBT_EQ(nb_cortex_tick_worker(cx, 3), NB_EINVAL);
  NBT_EQ(nb_cortex_worker_of(cx, 0), -1);
  NBT_CHECK(nb_cortex_worker_stats(cx, 3) == NULL);
  /* A held worker is not ticked by anyone else until it is given back. */
  NBT_EQ(nb_cortex_worker_hold(cx, 1), 0);
  NBT_EQ(nb_cortex_tick_worker(cx, 1), NB_EBUSY);
  NBT_EQ(nb_cortex_worker_hold(cx, 1), NB_EBUSY);
  NBT_EQ(nb_cortex_tick_worker(cx, 2), 0);
  nb_cortex_worker_release(cx, 1);
  NBT_EQ(nb_cortex_tick_worker(cx, 1), 0);
  NBT_EQ(nb_cortex_worker_hold(cx, 3), NB_EINVAL);
  nb_cortex_free(cx);
}

static void a_held_target_parks_its_sources_spikes_only(void) {
  nb_cortex_t *cx = mk(2, 32, 4, 16, NULL);
  agent_t aa = {0}, ab = {0}, ac = {0}, ad = {0};
  nb_neuron_t *a = reg(cx, "a", &aa), *b = reg(cx, "b", &ab);
  nb_neuron_t *c = reg(cx, "c", &ac);
  reg(cx, "d", &ad);
  NBT_EQ(nb_cortex_worker_of(cx, 1), 1);
  NBT_EQ(nb_cortex_worker_of(cx, 3), 1);
  nb_neuron_hold(b, 1);
  for (uint32_t i = 0; i < 20; i++) NBT_EQ(fire(a, 1, i), 0);
  for (uint32_t i = 0; i < 5; i++) NBT_EQ(fire(c, 3, i), 0);
  ticks(cx, 4);
  /* b's inbox (4) and the park (16) hold a's 20 spikes; the ring from
   * worker 0 is free again, so c's spikes to d went through. */
  NBT_EQ(ad.spikes, 5);
  NBT_EQ(ad.out_of_order, 0);
  NBT_EQ(ab.spikes, 0);
  NBT_EQ(nb_cortex_pending(cx), 20);
  nb_neuron_hold(b, 0);
  ticks(cx, 10);
  NBT_EQ(ab.spikes, 20);
  NBT_EQ(ab.last, 20);
  NBT_EQ(ab.out_of_order, 0);
  NBT_EQ(nb_cortex_pending(cx), 0);
  NBT_EQ(nb_cortex_stats(cx)->routed, 25);
  NBT_EQ(nb_cortex_worker_stats(cx, 1)->routed, 25);
  NBT_EQ(nb_cortex_worker_stats(cx, 0)->routed, 0);
  nb_cortex_free(cx);
}

/* Fires counters from a to target until the axon refuses, ticking the
 * workers in mask each round; returns how many were sent. */
static uint32_t flood(nb_cortex_t *cx, nb_neuron_t *a, nb_id_t target,
                      unsigned mask) {
  uint32_t sent = 0;
  for (int round = 0; round < 10; round++) {
    while (fire(a, target, sent) == 0) sent++;
    for (uint32_t w = 0; w < nb_cortex_workers(cx); w++)
      if (mask & (1u << w)) NBT_CHECK(nb_cortex_tick_worker(cx, w) >= 0);
  }
  return sent;
}

static void a_slow_worker_backs_up_into_the_producer(void) {
  nb_cortex_t *cx = mk(2, 16, 4, 8, NULL);
  agent_t aa = {0}, ab = {0};
  nb_neuron_t *a = reg(cx, "a", &aa);
  reg(cx, "b", &ab);
  /* Worker 1 never ticks: ring 8 + axon 16, then the producer is
   * refused. */
  NBT_EQ(flood(cx, a, 1, 1u), 24);
  NBT_CHECK(nb_neuron_stats(a)->full > 0);
  NBT_EQ(nb_cortex_pending(cx), 24);
  ticks(cx, 20);
  NBT_EQ(ab.spikes, 24);
  NBT_EQ(ab.out_of_order, 0);
  NBT_EQ(nb_cortex_pending(cx), 0);
  nb_cortex_free(cx);
}

static void a_parked_target_holds_senders_in_their_axons(void) {
  nb_cortex_t *cx = mk(2, 16, 4, 8, NULL);
  agent_t aa = {0}, ab = {0};
  nb_neuron_t *a = reg(cx, "a", &aa), *b = reg(cx, "b", &ab);
  nb_neuron_hold(b, 1);
  /* The first ring load: 4 into b's inbox, 4 parked, which marks b
   * congested; a's later spikes then wait in its axon (16), not in the
   * ring. */
  NBT_EQ(flood(cx, a, 1, 3u), 24);
  NBT_EQ(nb_cortex_pending(cx), 24);
  nb_neuron_hold(b, 0);
  ticks(cx, 20);
  NBT_EQ(ab.spikes, 24);
  NBT_EQ(ab.out_of_order, 0);
  NBT_EQ(nb_cortex_pending(cx), 0);
  nb_cortex_free(cx);
}

static void dead_letters_are_counted_where_found(void) {
  nb_cortex_t *cx = mk(2, 16, 4, 8, NULL);
  agent_t aa = {0}, ab = {0};
  nb_neuron_t *a = reg(cx, "a", &aa);
  nb_neuron_t *b = reg(cx, "b", &ab);
  NBT_EQ(fire(a, 77, 0), 0); /* no such neuron: the sender's worker */
  NBT_EQ(nb_cortex_set_stopped(cx, 1, 1), 0);
  NBT_EQ(fire(a, 1, 1), 0); /* stopped: the target's worker */
  ticks(cx, 2);
  NBT_EQ(nb_cortex_worker_stats(cx, 0)->dead_letters, 1);
  NBT_EQ(nb_cortex_worker_stats(cx, 1)->dead_letters, 1);
  NBT_EQ(nb_neuron_stats(b)->dead_letters, 1);
  NBT_EQ(nb_cortex_stats(cx)->dead_letters, 2);
  NBT_EQ(ab.spikes, 0);
  nb_cortex_free(cx);
}

static void filters_run_on_the_targets_worker(void) {
  nb_cortex_t *cx = mk(2, 16, 4, 8, NULL);
  agent_t aa = {0}, ab = {0}, ac = {0}, ad = {0};
  nb_neuron_t *a = reg(cx, "a", &aa);
  reg(cx, "b", &ab);
  reg(cx, "c", &ac);
  reg(cx, "d", &ad);
  nb_filter_t f = nb_filter_custom("mine");
  NBT_EQ(nb_cortex_connect(cx, 0, 1, 0.5f, &f, 1, NULL), 0);
  NBT_EQ(nb_cortex_connect(cx, 0, 3, 0.5f, &f, 1, NULL), 0);
  NBT_EQ(nb_cortex_connect(cx, 0, 2, 0.5f, &f, 1, NULL), 0);
  NBT_EQ(fire(a, 1, 0), 0);
  NBT_EQ(nb_neuron_broadcast(a, "x", 1), 0);
  ticks(cx, 2);
  NBT_EQ(ab.filter_calls, 2);
  NBT_EQ(ab.filter_worker, 1);
  NBT_EQ(ad.filter_calls, 1);
  NBT_EQ(ad.filter_worker, 1);
  NBT_EQ(ac.filter_calls, 1); /* c is on worker 0 with a */
  NBT_EQ(ac.filter_worker, 0);
  NBT_EQ(ab.spikes, 2);
  NBT_EQ(ac.spikes, 1);
  NBT_EQ(ad.spikes, 1);
  nb_cortex_free(cx);
}

static void a_broadcast_payload_is_split_over_three_workers(void) {
  nb_arena_t *arena;
  NBT_EQ(nb_arena_new(&arena, 1 << 16), 0);
  nb_cortex_t *cx = mk(3, 16, 4, 8, arena);
  agent_t ag[6] = {{0}};
  const char *names[6] = {"a", "b", "c", "d", "e", "f"};
  nb_neuron_t *n[6];
  for (int i = 0; i < 6; i++) n[i] = reg(cx, names[i], &ag[i]);
  /* a (worker 0) -> b (1), c (2), d (0), e (1); f (2) rejects by kind. */
  for (nb_id_t t = 1; t <= 4; t++)
    NBT_EQ(nb_cortex_connect(cx, 0, t, 0.5f, NULL, 0, NULL), 0);
  nb_filter_t only_inhibitory = nb_filter_kind(1u << NB_INHIBITORY);
  NBT_EQ(nb_cortex_connect(cx, 0, 5, 0.5f, &only_inhibitory, 1, NULL), 0);
  uint8_t big[100];
  for (int i = 0; i < 100; i++) big[i] = (uint8_t)(i * 7 + 1);
  memset(big, 0, 4); /* counter 0 */
  for (int k = 0; k < 3; k++) {
    big[0] = (uint8_t)k;
    NBT_EQ(nb_neuron_broadcast(n[0], big, sizeof big), 0);
  }
  ticks(cx, 3);
  for (int i = 1; i <= 4; i++) {
    NBT_EQ(ag[i].spikes, 3);
    NBT_EQ(ag[i].out_of_order, 0);
    NBT_EQ(ag[i].last_len, sizeof big);
    NBT_EQ(memcmp(ag[i].last_bytes, big, sizeof big), 0);
  }
  NBT_EQ(ag[5].spikes, 0);
  NBT_EQ(nb_cortex_worker_stats(cx, 2)->filtered, 3);
  NBT_EQ(nb_cortex_stats(cx)->routed, 12);
  NBT_EQ(nb_cortex_pending(cx), 0);
  nb_cortex_free(cx);
  nb_arena_stats_t st;
  nb_arena_stats(arena, &st);
  NBT_EQ(st.sealed, 0);
  NBT_EQ(st.active, 0);
  nb_arena_free(arena);
}

/* ---- adoption: a neuron stuck in a call on worker 1 ---- */

typedef struct stuck_agent_s {
  _Atomic int got;      /* spikes delivered */
  _Atomic int disorder; /* counters out of order */
  uint32_t next;        /* counter expected next */
  _Atomic int in_call;  /* 1 while stuck */
  _Atomic int *release; /* the stuck call returns once *release */
  int stuck_on_first;
  _Atomic int filtered, filtered_in_call; /* custom filter calls */
} stuck_agent_t;

/* Checks the counter order; the first spike of a stuck_on_first agent
 * spins until released; returns 0. */
static int stuck_on_spike(void *agent, nb_neuron_t *n, const nb_spike_t *s,
                          float w) {
  (void)n, (void)w;
  stuck_agent_t *a = agent;
  uint32_t c;
  memcpy(&c, s->payload, sizeof c);
  if (c != a->next) atomic_fetch_add(&a->disorder, 1);
  a->next = c + 1;
  atomic_fetch_add(&a->got, 1);
  if (a->stuck_on_first && c == 0) {
    atomic_store(&a->in_call, 1);
    while (!atomic_load(a->release)) sched_yield();
    atomic_store(&a->in_call, 0);
  }
  return 0;
}

/* Passes everything, noting a call made while the agent is in another
 * call (two threads in one agent); returns 1. */
static int stuck_filter(void *agent, nb_neuron_t *n, const char *name,
                        const nb_spike_t *s, const void *p, size_t len) {
  (void)n, (void)name, (void)s, (void)p, (void)len;
  stuck_agent_t *a = agent;
  atomic_fetch_add(&a->filtered, 1);
  if (atomic_load(&a->in_call)) atomic_fetch_add(&a->filtered_in_call, 1);
  return 1;
}

typedef struct ticker_s {
  nb_cortex_t *cx;
  _Atomic int stop;
} ticker_t;

/* Ticks worker 1 until told to stop; returns NULL. */
static void *tick_worker1(void *arg) {
  ticker_t *t = arg;
  while (!atomic_load(&t->stop))
    if (nb_cortex_tick_worker(t->cx, 1) <= 0) sched_yield();
  return NULL;
}

static void a_stuck_neuron_holds_back_only_its_own_spikes(void) {
  nb_cortex_opts_t o = nb_cortex_opts_default();
  o.workers = 2;
  o.axon_capacity = 64;
  o.inbox_capacity = 16;
  o.ring_capacity = 16;
  o.adopt_after_ns = 20000000; /* 20 ms */
  nb_cortex_t *cx;
  NBT_EQ(nb_cortex_new(&cx, &o), 0);
  _Atomic int release = 0;
  stuck_agent_t ag[4];
  memset(ag, 0, sizeof ag);
  nb_agent_ops_t sops = {.on_spike = stuck_on_spike, .filter = stuck_filter};
  const char *names[4] = {"p0", "x", "p2", "y"};
  nb_neuron_t *n[4];
  nb_if_params_t ip = nb_if_params_default();
  ip.refractory = 0;
  for (int i = 0; i < 4; i++) {
    ag[i].release = &release;
    nb_card_t c = {.name = names[i]};
    NBT_EQ(nb_cortex_register(cx, &c, &ip, &sops, &ag[i], &n[i]), 0);
  }
  ag[1].stuck_on_first = 1; /* x, on worker 1 with y */
  nb_filter_t f = nb_filter_custom("x's own");
  NBT_EQ(nb_cortex_connect(cx, 2, 1, 0.5f, &f, 1, NULL), 0);
  ticker_t tk = {.cx = cx};
  pthread_t th;
  NBT_EQ(pthread_create(&th, NULL, tick_worker1, &tk), 0);
  /* This thread is worker 0 and the watchdog. */
  uint32_t to_x = 0, to_y = 0;
  NBT_EQ(fire(n[2], 1, to_x++), 0);
  nb_id_t id = 0;
  uint64_t since = 0, t0 = nb_clock_ns();
  while (!nb_cortex_worker_call(cx, 1, &id, &since) ||
         !atomic_load(&ag[1].in_call)) {
    nb_cortex_tick_worker(cx, 0);
    NBT_CHECK(nb_clock_ns() - t0 < 10000000000ull);
    if (nb_clock_ns() - t0 >= 10000000000ull) break;
  }
  NBT_EQ(id, 1);
  NBT_EQ(strcmp(nb_neuron_name(nb_cortex_neuron(cx, id)), "x"), 0);
  /* Holding a worker in a call (of any age) leaves the call running: x
   * is still busy, y is not, and x's thread waits for the worker after. */
  NBT_EQ(nb_cortex_worker_hold(cx, 1), 0);
  NBT_EQ(nb_cortex_busy(cx, 1), 1);
  NBT_EQ(nb_cortex_busy(cx, 3), 0);
  NBT_EQ(atomic_load(&ag[1].in_call), 1);
  nb_cortex_worker_release(cx, 1);
  /* Worker 1's thread is stuck in x: y still receives once this thread
   * adopts worker 1 (after 20 ms); x's spikes wait. */
  t0 = nb_clock_ns();
  int adopted_ticks = 0;
  while (nb_clock_ns() - t0 < 300000000ull) {
    if (to_y < 5000 && fire(n[0], 3, to_y) == 0) to_y++;
    if (to_x < 200 && fire(n[2], 1, to_x) == 0) to_x++;
    nb_cortex_tick_worker(cx, 0);
    adopted_ticks += nb_cortex_tick_worker(cx, 1) > 0;
  }
  NBT_CHECK(adopted_ticks > 0);
  NBT_CHECK(atomic_load(&ag[3].got) > 100);
  NBT_EQ(atomic_load(&ag[1].got), 1);
  NBT_EQ(atomic_load(&ag[1].in_call), 1);
  atomic_store(&release, 1);
  /* Everything sent arrives, in order, whichever thread ticks worker 1. */
  t0 = nb_clock_ns();
  while ((atomic_load(&ag[1].got) < (int)to_x ||
          atomic_load(&ag[3].got) < (int)to_y) &&
         nb_clock_ns() - t0 < 10000000000ull) {
    nb_cortex_tick_worker(cx, 0);
    nb_cortex_tick_worker(cx, 1);
  }
  atomic_store(&tk.stop, 1);
  pthread_join(th, NULL);
  NBT_EQ(atomic_load(&ag[1].got), (int)to_x);
  NBT_EQ(atomic_load(&ag[3].got), (int)to_y);
  NBT_EQ(atomic_load(&ag[1].disorder), 0);
  NBT_EQ(atomic_load(&ag[3].disorder), 0);
  /* x's filter ran for each of its spikes, never while x was in its call
   * on the other thread. */
  NBT_CHECK(atomic_load(&ag[1].filtered) >= (int)to_x);
  NBT_EQ(atomic_load(&ag[1].filtered_in_call), 0);
  NBT_EQ(nb_cortex_worker_call(cx, 1, NULL, NULL), 0);
  NBT_EQ(nb_cortex_pending(cx), 0);
  NBT_EQ(nb_cortex_stats(cx)->dead_letters, 0);
  nb_cortex_free(cx);
}

static const nbt_test_t tests[] = {
    NBT_TEST(options_are_checked),
    NBT_TEST(a_held_target_parks_its_sources_spikes_only),
    NBT_TEST(a_slow_worker_backs_up_into_the_producer),
    NBT_TEST(a_parked_target_holds_senders_in_their_axons),
    NBT_TEST(dead_letters_are_counted_where_found),
    NBT_TEST(filters_run_on_the_targets_worker),
    NBT_TEST(a_broadcast_payload_is_split_over_three_workers),
    NBT_TEST(a_stuck_neuron_holds_back_only_its_own_spikes),
};

int main(int argc, char **argv) { return NBT_MAIN(argc, argv, tests, NULL); }
