/* validate_workers: the sharded cortex under load, in the style of
 * validate_axon. 4 workers, 8 neurons each (placed round robin), every
 * neuron firing to neurons on every worker: unicast to every other neuron
 * in turn (through a synapse or without one), broadcast along 5 synapses
 * (one local, the others on the 3 other workers; some with STDP), some
 * payloads in the arena. Each worker runs on its own thread and fires the
 * quota of its own neurons between its ticks, retrying whatever backpressure
 * refuses. Every delivered spike is checked: its source, its target, its
 * per-(source, target) sequence (unicast) or per-source broadcast
 * sequence, the axon sequence and timestamp never going backwards per
 * source, its weight (1.0 without a synapse, within the STDP bounds with
 * one), and every payload byte. At the end each pair's count must be
 * exact, nothing pending, no dead letter, every arena payload released.
 *
 * Usage: validate_workers [--spikes N] [NAME...]: N spikes fired in all
 * (default 5,000,000, about a second or two here; 200,000 under TSan,
 * 500,000 under ASan; --spikes 10000000 for the figure). The
 * backpressure round fires half as many. */
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>

#include "nb_clock.h"
#include "nb_cortex.h"
#include "nb_err.h"
#include "nbtest.h"

#define WORKERS 4
#define PER_WORKER 8
#define NN (WORKERS * PER_WORKER)
#define OUT_DEG 5 /* synapses i -> i+1 .. i+5 */
#define BURST 64
#define BIG 100
#define SMALL 24

static uint64_t spikes = 5000000;

/* One neuron's agent: its sending side is touched by the thread of its
 * worker before a tick, its receiving side in that worker's deliveries. */
typedef struct agent_s {
  nb_neuron_t *n;
  uint16_t id;
  uint64_t quota, sent;
  uint32_t pair_next[NN]; /* next unicast sequence to each target */
  uint32_t bcast_next;
  uint32_t got_pair[NN]; /* next unicast sequence expected from each */
  uint32_t got_bcast[NN];
  uint32_t last_axseq[NN]; /* axon sequence + 1 last seen from each */
  uint64_t last_ts[NN];
  uint64_t received;
  uint64_t digest; /* order-sensitive hash of what arrived */
} agent_t;

typedef struct world_s {
  nb_cortex_t *cx;
  nb_arena_t *arena;
  agent_t ag[NN];
  uint64_t expect; /* deliveries the quotas add up to */
  _Atomic uint64_t received;
  _Atomic int failed;
  _Atomic int done;
  char why[512];
  uint64_t deadline_ns;
} world_t;

/* Records the first failure and stops every thread; returns nothing. */
static void fail(world_t *wd, const char *fmt, ...) {
  int no = 0;
  if (!atomic_compare_exchange_strong(&wd->failed, &no, 1)) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(wd->why, sizeof wd->why, fmt, ap);
  va_end(ap);
}

/* Returns the check word of a spike's payload. */
static uint64_t check_word(uint16_t src, uint16_t tgt, uint32_t seq) {
  uint64_t v = ((uint64_t)src << 48) ^ ((uint64_t)tgt << 32) ^ seq;
  return (v + 1) * 0x9E3779B97F4A7C15ull;
}

/* Returns 1 when src -> dst is a synapse of the topology (dst at offset 1
 * to OUT_DEG from src), else 0. */
static int has_synapse(unsigned src, unsigned dst) {
  unsigned d = (dst + NN - src) % NN;
  return d >= 1 && d <= OUT_DEG;
}

/* Fills buf with spike k of source src (sequence seq) to tgt; returns the
 * payload length: arena-sized for some, inline for the rest. */
static size_t build(uint8_t *buf, uint16_t src, uint16_t tgt, uint32_t seq,
                    uint64_t k) {
  size_t len = (k % 16 == 5) ? BIG : SMALL;
  uint64_t w = check_word(src, tgt, seq);
  memcpy(buf, &src, 2);
  memcpy(buf + 2, &tgt, 2);
  memcpy(buf + 4, &seq, 4);
  memcpy(buf + 8, &w, 8);
  for (size_t i = 16; i < len; i++) buf[i] = (uint8_t)(w >> (i % 8 * 8)) ^ (uint8_t)i;
  return len;
}

/* Returns the target of spike k of source i: every 4th a broadcast, the
 * others every other neuron in turn. */
static uint16_t target_of(unsigned i, uint64_t k) {
  if (k % 4 == 3) return NB_BROADCAST;
  uint64_t u = k - k / 4; /* unicast number */
  return (uint16_t)((i + 1 + u % (NN - 1)) % NN);
}

/* Fires up to BURST of agent a's quota; returns nothing. Backpressure
 * (a full axon, a full arena) leaves the rest for the next call. */
static void fire_some(agent_t *a) {
  uint8_t buf[BIG];
  for (int b = 0; b < BURST && a->sent < a->quota; b++) {
    uint16_t tgt = target_of(a->id, a->sent);
    uint32_t seq = tgt == NB_BROADCAST ? a->bcast_next : a->pair_next[tgt];
    size_t len = build(buf, a->id, tgt, seq, a->sent);
    int rc = nb_neuron_fire_ex(a->n, tgt, NB_EXCITATORY,
                               (uint8_t)(a->sent & 7), buf, len);
    if (rc != 0) break;
    if (tgt == NB_BROADCAST) a->bcast_next++;
    else a->pair_next[tgt]++;
    a->sent++;
  }
}

/* Checks one delivered spike against everything it must be; returns 0 or
 * -1 after recording the failure. */
static int check(world_t *wd, agent_t *me, const nb_spike_t *s, float w) {
  unsigned src = s->source;
  if (src >= NN || src == me->id) {
    fail(wd, "%u got a spike from %u", me->id, src);
    return -1;
  }
  const void *data;
  size_t len;
  int rc = nb_neuron_payload(me->n, s, &data, &len);
  if (rc != 0 || (len != BIG && len != SMALL)) {
    fail(wd, "%u: payload of %u unreadable (%d, %zu bytes)", me->id, src,
         rc, len);
    return -1;
  }
  const uint8_t *p = data;
  uint16_t hsrc, htgt;
  uint32_t seq;
  uint64_t word;
  memcpy(&hsrc, p, 2);
  memcpy(&htgt, p + 2, 2);
  memcpy(&seq, p + 4, 4);
  memcpy(&word, p + 8, 8);
  int bcast = s->target == NB_BROADCAST;
  if (hsrc != src || htgt != s->target || (!bcast && htgt != me->id)) {
    fail(wd, "%u: spike from %u to %u says %u -> %u", me->id, src,
         s->target, hsrc, htgt);
    return -1;
  }
  if (bcast && !has_synapse(src, me->id)) {
    fail(wd, "%u: broadcast of %u without a synapse", me->id, src);
    return -1;
  }
  uint32_t *next = bcast ? &me->got_bcast[src] : &me->got_pair[src];
  if (seq != *next) {
    fail(wd, "%u: %s %u of %u, expected %u: %s", me->id,
         bcast ? "broadcast" : "unicast", seq, src, *next,
         seq < *next ? "duplicated or reordered" : "lost spikes");
    return -1;
  }
  (*next)++;
  if (s->sequence + 1 <= me->last_axseq[src] || s->timestamp_ns == 0 ||
      s->timestamp_ns < me->last_ts[src]) {
    fail(wd, "%u: axon sequence %u (ts %llu) of %u went backwards", me->id,
         s->sequence, (unsigned long long)s->timestamp_ns, src);
    return -1;
  }
  me->last_axseq[src] = s->sequence + 1;
  me->last_ts[src] = s->timestamp_ns;
  if (word != check_word(hsrc, htgt, seq)) {
    fail(wd, "%u: check word of %u's spike %u", me->id, src, seq);
    return -1;
  }
  for (size_t i = 16; i < len; i++)
    if (p[i] != ((uint8_t)(word >> (i % 8 * 8)) ^ (uint8_t)i)) {
      fail(wd, "%u: payload byte %zu of %u's spike %u", me->id, i, src, seq);
      return -1;
    }
  int syn = has_synapse(src, me->id);
  if (syn ? !(w >= 0.001f && w <= 1.0f) : w != 1.0f) {
    fail(wd, "%u: weight %g from %u (%s synapse)", me->id, (double)w, src,
         syn ? "a" : "no");
    return -1;
  }
  me->received++;
  me->digest = (me->digest ^ ((uint64_t)src << 32 ^ seq ^ (uint64_t)bcast << 31)) *
               0x100000001B3ull;
  return 0;
}

static world_t *the_world; /* the agents' callbacks reach it */

/* on_batch: checks every spike of the batch; returns 0. */
static int on_batch(void *agent, nb_neuron_t *n, const nb_spike_t *s,
                    const float *w, size_t count) {
  (void)n;
  agent_t *me = agent;
  for (size_t k = 0; k < count; k++)
    if (check(the_world, me, &s[k], w[k]) != 0) return 0;
  atomic_fetch_add_explicit(&the_world->received, count, memory_order_relaxed);
  return 0;
}

/* Builds the cortex: NN neurons, the synapses, the quotas; returns the
 * world (checks fail the test on any error). */
static world_t *setup(uint64_t total, uint32_t axon_cap, uint32_t inbox_cap,
                      uint32_t ring_cap) {
  world_t *wd = calloc(1, sizeof *wd);
  NBT_CHECK(wd != NULL);
  NBT_EQ(nb_arena_new(&wd->arena, 64u << 20), 0);
  nb_cortex_opts_t o = nb_cortex_opts_default();
  o.max_neurons = NN;
  o.axon_capacity = axon_cap;
  o.inbox_capacity = inbox_cap;
  o.ring_capacity = ring_cap;
  o.arena = wd->arena;
  o.workers = WORKERS;
  NBT_EQ(nb_cortex_new(&wd->cx, &o), 0);
  nb_agent_ops_t ops = {.on_batch = on_batch};
  nb_if_params_t ip = nb_if_params_default();
  for (unsigned i = 0; i < NN; i++) {
    char name[16];
    snprintf(name, sizeof name, "n%u", i);
    nb_card_t card = {.name = name};
    agent_t *a = &wd->ag[i];
    a->id = (uint16_t)i;
    NBT_EQ(nb_cortex_register(wd->cx, &card, &ip, &ops, a, &a->n), 0);
    NBT_EQ(nb_cortex_worker_of(wd->cx, (nb_id_t)i), (int)(i % WORKERS));
  }
  nb_stdp_t st = nb_stdp_default();
  for (unsigned i = 0; i < NN; i++)
    for (unsigned d = 1; d <= OUT_DEG; d++)
      NBT_EQ(nb_cortex_connect(wd->cx, (nb_id_t)i, (nb_id_t)((i + d) % NN),
                               0.5f, NULL, 0, d % 2 ? &st : NULL),
             0);
  uint64_t per = total / NN;
  for (unsigned i = 0; i < NN; i++) {
    wd->ag[i].quota = per;
    uint64_t bc = per / 4; /* k % 4 == 3 for k < per */
    wd->expect += (per - bc) + bc * OUT_DEG;
  }
  return wd;
}

typedef struct thread_arg_s {
  world_t *wd;
  uint32_t w;
} thread_arg_t;

/* A worker thread: fires its neurons' quota between its ticks until every
 * spike arrived; returns NULL. */
static void *worker_main(void *arg) {
  thread_arg_t *t = arg;
  world_t *wd = t->wd;
  uint64_t n = 0;
  while (!atomic_load(&wd->done) && !atomic_load(&wd->failed)) {
    for (unsigned i = t->w; i < NN; i += WORKERS) fire_some(&wd->ag[i]);
    int rc = nb_cortex_tick_worker(wd->cx, t->w);
    /* One thread per worker here: nobody else may hold it (no NB_EBUSY). */
    if (rc < 0) fail(wd, "worker %u: tick returned %d", t->w, rc);
    /* More threads than CPUs here: an idle worker lets a busy one run. */
    if (rc == 0) sched_yield();
    if (atomic_load_explicit(&wd->received, memory_order_relaxed) ==
        wd->expect)
      atomic_store(&wd->done, 1);
    if ((++n & 1023) == 0 && nb_clock_ns() > wd->deadline_ns)
      fail(wd, "worker %u: deadline passed with %llu of %llu delivered", t->w,
           (unsigned long long)atomic_load(&wd->received),
           (unsigned long long)wd->expect);
  }
  return NULL;
}

/* Checks every count after a run and frees the world; returns nothing. */
static void verify_and_free(world_t *wd) {
  if (atomic_load(&wd->failed)) printf("    %s\n", wd->why);
  NBT_EQ(atomic_load(&wd->failed), 0);
  NBT_EQ(atomic_load(&wd->received), wd->expect);
  for (unsigned i = 0; i < NN; i++) {
    agent_t *a = &wd->ag[i];
    NBT_EQ(a->sent, a->quota);
    for (unsigned j = 0; j < NN; j++) {
      if (j == i) continue;
      NBT_EQ(wd->ag[j].got_pair[i], a->pair_next[j]);
      NBT_EQ(wd->ag[j].got_bcast[i], has_synapse(i, j) ? a->bcast_next : 0);
    }
  }
  NBT_EQ(nb_cortex_pending(wd->cx), 0);
  const nb_cortex_stats_t *cs = nb_cortex_stats(wd->cx);
  NBT_EQ(cs->routed, wd->expect);
  NBT_EQ(cs->dead_letters, 0);
  NBT_EQ(cs->filtered, 0);
  uint64_t routed = 0;
  for (uint32_t w = 0; w < WORKERS; w++) {
    const nb_cortex_stats_t *ws = nb_cortex_worker_stats(wd->cx, w);
    NBT_CHECK(ws->routed > 0);
    routed += ws->routed;
  }
  NBT_EQ(routed, wd->expect);
  /* STDP moved the weights of the synapses that have it, and only
   * those. */
  int moved = 0;
  for (unsigned i = 0; i < NN; i++)
    for (unsigned d = 1; d <= OUT_DEG; d++) {
      nb_synapse_t *s = nb_synapse_table_get(nb_cortex_synapses(wd->cx),
                                             (nb_id_t)i, (nb_id_t)((i + d) % NN));
      float w = nb_atomic_f32_load(&s->weight);
      if (d % 2) moved += w != 0.5f;
      else NBT_CHECK(w == 0.5f);
    }
  NBT_CHECK(moved > 0);
  nb_cortex_free(wd->cx);
  nb_arena_stats_t st;
  nb_arena_stats(wd->arena, &st);
  NBT_EQ(st.sealed, 0); /* every payload released */
  nb_arena_free(wd->arena);
  free(wd);
}

/* Runs the world with one thread per worker; returns nothing. */
static void run_threads(uint64_t total, uint32_t axon_cap,
                        uint32_t inbox_cap, uint32_t ring_cap) {
  world_t *wd = setup(total, axon_cap, inbox_cap, ring_cap);
  the_world = wd;
  wd->deadline_ns = nb_clock_ns() + 600ull * 1000000000ull;
  thread_arg_t args[WORKERS];
  pthread_t th[WORKERS];
  uint64_t t0 = nb_clock_ns();
  for (uint32_t w = 0; w < WORKERS; w++) {
    args[w] = (thread_arg_t){wd, w};
    NBT_EQ(pthread_create(&th[w], NULL, worker_main, &args[w]), 0);
  }
  for (uint32_t w = 0; w < WORKERS; w++) pthread_join(th[w], NULL);
  double s = (double)(nb_clock_ns() - t0) / 1e9;
  printf("    %llu spikes fired, %llu deliveries checked in %.2f s (%.2f M "
         "deliveries/s), axon %u inbox %u ring %u\n",
         (unsigned long long)total, (unsigned long long)wd->expect, s,
         (double)wd->expect / s / 1e6, axon_cap, inbox_cap, ring_cap);
  verify_and_free(wd);
}

/* Default capacities: the rings and inboxes rarely fill. */
static void four_workers_every_spike_checked(void) {
  run_threads(spikes, NB_AXON_DEFAULT_CAPACITY, 0, 0);
}

/* Small capacities: axons, rings, inboxes and parks fill all the time, so
 * every backpressure path runs (half the spikes: the refractory period
 * caps what a 32-spike inbox takes in a tick). */
static void four_workers_under_constant_backpressure(void) {
  run_threads(spikes / 2, 128, 32, 32);
}

/* Runs the world on this thread alone (nb_cortex_tick: every worker in
 * turn) and returns its digest; the same script gives the same digest. */
static uint64_t run_one_thread(uint64_t total) {
  world_t *wd = setup(total, 64, 16, 16);
  the_world = wd;
  for (uint64_t t = 0; atomic_load(&wd->received) < wd->expect; t++) {
    for (unsigned i = 0; i < NN; i++) fire_some(&wd->ag[i]);
    NBT_CHECK(nb_cortex_tick(wd->cx) >= 0);
    if (t > 10000000 || atomic_load(&wd->failed)) break;
  }
  uint64_t digest = 0;
  for (unsigned i = 0; i < NN; i++)
    digest = (digest ^ wd->ag[i].digest) * 0x100000001B3ull;
  verify_and_free(wd);
  return digest;
}

/* Workers ticked in turn on one thread are deterministic, as one worker
 * is: two runs deliver the same spikes in the same order. */
static void workers_ticked_in_turn_are_deterministic(void) {
  uint64_t n = spikes / 10 > 20000 ? spikes / 10 : 20000;
  uint64_t a = run_one_thread(n), b = run_one_thread(n);
  NBT_EQ(a, b);
}

/* Placement: a neuron moved to another worker keeps receiving in order;
 * a move while spikes cross between workers is refused. */
static void place_moves_a_neuron_between_ticks(void) {
  world_t *wd = setup(NN * 400, 64, 16, 16);
  the_world = wd;
  NBT_EQ(nb_cortex_place(wd->cx, 5, WORKERS), NB_EINVAL);
  NBT_EQ(nb_cortex_place(wd->cx, NN, 0), NB_ENOENT);
  NBT_EQ(nb_cortex_workers(wd->cx), WORKERS);
  int refused = 0, moved = 0;
  for (uint64_t t = 0; atomic_load(&wd->received) < wd->expect && t < 100000;
       t++) {
    for (unsigned i = 0; i < NN; i++) fire_some(&wd->ag[i]);
    nb_cortex_tick(wd->cx);
    int rc = nb_cortex_place(wd->cx, (nb_id_t)(t % NN), (uint32_t)(t % 3));
    if (rc == NB_EINVAL) refused++;
    else if (rc == 0) moved++;
    else NBT_EQ(rc, 0);
  }
  NBT_CHECK(refused > 0);
  NBT_CHECK(moved > 0);
  verify_and_free(wd);
}

static const nbt_test_t tests[] = {
    NBT_TEST_TIMEOUT(four_workers_every_spike_checked, 600),
    NBT_TEST_TIMEOUT(four_workers_under_constant_backpressure, 600),
    NBT_TEST_TIMEOUT(workers_ticked_in_turn_are_deterministic, 300),
    NBT_TEST_TIMEOUT(place_moves_a_neuron_between_ticks, 120),
};

int main(int argc, char **argv) {
  const char *san = nbt_san();
  if (san && strcmp(san, "thread") == 0) spikes = 200000;
  else if (san && strcmp(san, "address") == 0) spikes = 500000;
  if (argc > 2 && strcmp(argv[1], "--spikes") == 0) {
    spikes = strtoull(argv[2], NULL, 10);
    argv[2] = argv[0];
    argv += 2;
    argc -= 2;
  }
  if (spikes < NN * 4) spikes = NN * 4;
  if (argc < 2 || strcmp(argv[1], "--list") != 0)
    printf("# validate_workers: %d workers x %d neurons, %llu spikes fired "
           "per threaded round\n",
           WORKERS, PER_WORKER, (unsigned long long)spikes);
  return NBT_MAIN(argc, argv, tests, NULL);
}
