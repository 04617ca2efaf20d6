/* Learning: the TRACE and REWARD STDP modes against reference values
 * computed here from the models' equations (NEST's stdp_synapse and
 * stdp_dopamine_synapse, Izhikevich 2007), rewards carried by modulatory
 * spikes through the cortex, and the spike clock (strictly increasing
 * timestamps per source, STDP measuring dt inside one tick). */
#include <math.h>
#include <pthread.h>

#include "neuronbus.h"
#include "nbtest.h"

#define MS 1000000ull /* ns */
#define T0 (1000 * MS) /* event times start here: 0 means "no spike" */

/* Returns a cortex of two neurons "a" (0) and "b" (1) with IF params
 * pa, pb (NULL = defaults), ops for both, and spike_time
 * (NB_SPIKE_TIME_*). */
static nb_cortex_t *two(const nb_if_params_t *pa, const nb_if_params_t *pb,
                        const nb_agent_ops_t *ops, void *agent,
                        uint32_t spike_time) {
  nb_cortex_opts_t o = nb_cortex_opts_default();
  o.max_neurons = 16;
  o.axon_capacity = 64;
  o.spike_time = spike_time;
  nb_cortex_t *cx = NULL;
  if (nb_cortex_new(&cx, &o) != 0) return NULL;
  nb_card_t c;
  memset(&c, 0, sizeof c);
  c.name = "a";
  nb_cortex_register(cx, &c, pa, ops, agent, NULL);
  c.name = "b";
  nb_cortex_register(cx, &c, pb, ops, agent, NULL);
  return cx;
}

/* Returns the synapse a -> b. */
static nb_synapse_t *ab(nb_cortex_t *cx) {
  return nb_synapse_table_get(nb_cortex_synapses(cx), 0, 1);
}

/* Returns STDP parameters of the TRACE reference case. */
static nb_stdp_t trace_params(void) {
  nb_stdp_t p = nb_stdp_default();
  p.mode = NB_STDP_TRACE;
  p.w_min = 0.0f;
  p.w_max = 100.0f;
  p.lambda = 0.01f;
  p.alpha = 1.0f;
  p.mu_plus = p.mu_minus = 1.0f;
  p.tau_plus_ms = p.tau_minus_ms = 20.0f;
  return p;
}

/* The reference: from w = 50, Wmax = 100, lambda 0.01, alpha 1,
 * mu 1, tau 20 ms, a pre spike 10 ms before a post spike gives
 * Wmax * (w/Wmax + lambda (1 - w/Wmax) e^(-10/20)) = 50.3033; the reverse
 * order Wmax * (w/Wmax - alpha lambda (w/Wmax) e^(-10/20)) = 49.6967. */
static void trace_reference_case(void) {
  double pot = 100.0 * (0.5 + 0.01 * (1.0 - 0.5) * exp(-10.0 / 20.0));
  double dep = 100.0 * (0.5 - 1.0 * 0.01 * 0.5 * exp(-10.0 / 20.0));
  NBT_NEAR(pot, 50.3033, 1e-4);
  NBT_NEAR(dep, 49.6967, 1e-4);
  nb_cortex_t *cx = two(NULL, NULL, NULL, NULL, 0);
  nb_stdp_t p = trace_params();
  NBT_EQ(nb_cortex_connect(cx, 0, 1, 50.0f, NULL, 0, &p), 0);
  nb_synapse_on_pre(ab(cx), T0);
  NBT_NEAR(nb_synapse_on_post(ab(cx), T0 + 10 * MS), pot, 1e-4);
  NBT_EQ(nb_cortex_connect(cx, 0, 1, 50.0f, NULL, 0, &p), 0); /* fresh */
  nb_synapse_on_post(ab(cx), T0);
  NBT_NEAR(nb_synapse_on_pre(ab(cx), T0 + 10 * MS), dep, 1e-4);
  /* A pre spike routed after a later post spike was seen still pairs as
   * pre-before-post. */
  NBT_EQ(nb_cortex_connect(cx, 0, 1, 50.0f, NULL, 0, &p), 0);
  nb_synapse_on_post(ab(cx), T0 + 10 * MS);
  NBT_NEAR(nb_synapse_on_pre(ab(cx), T0), pot, 1e-4);
  nb_cortex_free(cx);
}

/* All-to-all: two pre spikes then one post sum both pairings through the
 * pre trace; additive (mu 0) ignores the weight. */
static void trace_all_to_all_and_additive(void) {
  nb_cortex_t *cx = two(NULL, NULL, NULL, NULL, 0);
  nb_stdp_t p = trace_params();
  p.mu_plus = p.mu_minus = 0.0f;
  NBT_EQ(nb_cortex_connect(cx, 0, 1, 50.0f, NULL, 0, &p), 0);
  nb_synapse_on_pre(ab(cx), T0);
  nb_synapse_on_pre(ab(cx), T0 + 5 * MS);
  double kp = exp(-15.0 / 20.0) + exp(-10.0 / 20.0);
  NBT_NEAR(nb_synapse_on_post(ab(cx), T0 + 15 * MS),
           100.0 * (0.5 + 0.01 * kp), 1e-4);
  nb_cortex_free(cx);
}

/* Parameters of the REWARD reference case: NEST-like amplitudes on a
 * weight range of 0..10, with a baseline so that eligibility alone moves
 * the weight too (dw/dt = -b c). */
static nb_stdp_t reward_params(void) {
  nb_stdp_t p = nb_stdp_default();
  p.mode = NB_STDP_REWARD;
  p.a_plus = 1.0f;
  p.a_minus = 1.5f;
  p.tau_plus_ms = p.tau_minus_ms = 20.0f;
  p.tau_c_ms = 1000.0f;
  p.tau_n_ms = 200.0f;
  p.baseline = 0.001f;
  p.w_min = 0.0f;
  p.w_max = 10.0f;
  return p;
}

/* The REWARD reference: pre at 10 ms, post at 20, reward +5 at 50, pre at
 * 100, reward -1 at 150, weight read at 1000 ms, from w = 5. Expected:
 * dw/dt = c(t) (n(t) - b) integrated numerically here (midpoint rule,
 * 1 us steps) from the model's definitions: c jumps by a_plus e^(-dt/tau+)
 * at a post spike and by -a_minus * (post trace) at a pre spike and decays
 * with tau_c; n jumps by r / tau_n at a reward and decays with tau_n. */
static void reward_reference_case(void) {
  nb_stdp_t p = reward_params();
  double c = 0, n = 0, w = 5.0, b = p.baseline, h = 0.001;
  for (double t = 10.0; t < 1000.0 - h / 2; t += h) {
    w += c * exp(-h / 2 / 1000.0) * (n * exp(-h / 2 / 200.0) - b) * h;
    c *= exp(-h / 1000.0);
    n *= exp(-h / 200.0);
    double tn = t + h; /* events at the end of this step */
    if (fabs(tn - 20.0) < h / 2) c += 1.0 * exp(-10.0 / 20.0);
    if (fabs(tn - 50.0) < h / 2) n += 5.0 / 200.0;
    if (fabs(tn - 100.0) < h / 2) c -= 1.5 * exp(-80.0 / 20.0);
    if (fabs(tn - 150.0) < h / 2) n += -1.0 / 200.0;
  }
  nb_cortex_t *cx = two(NULL, NULL, NULL, NULL, 0);
  NBT_EQ(nb_cortex_connect(cx, 0, 1, 5.0f, NULL, 0, &p), 0);
  nb_synapse_t *s = ab(cx);
  nb_synapse_on_pre(s, T0 + 10 * MS);
  nb_synapse_on_post(s, T0 + 20 * MS);
  NBT_NEAR(nb_synapse_eligibility(s), exp(-0.5), 1e-9);
  nb_synapse_on_reward(s, T0 + 50 * MS, 5.0);
  nb_synapse_on_pre(s, T0 + 100 * MS);
  nb_synapse_on_reward(s, T0 + 150 * MS, -1.0);
  double got = nb_synapse_settle(s, T0 + 1000 * MS);
  NBT_NEAR(got, w, 1e-4);
  NBT_CHECK(fabs(got - 5.0) > 0.5); /* it did learn */
  printf("# reward reference: w(1000 ms) = %.6f (from 5)\n", got);
  nb_cortex_free(cx);
}

/* A reward with no eligibility changes nothing; bounds hold. */
static void reward_is_bounded_and_needs_eligibility(void) {
  nb_stdp_t p = reward_params();
  p.baseline = 0.0f;
  nb_cortex_t *cx = two(NULL, NULL, NULL, NULL, 0);
  NBT_EQ(nb_cortex_connect(cx, 0, 1, 5.0f, NULL, 0, &p), 0);
  nb_synapse_t *s = ab(cx);
  nb_synapse_on_reward(s, T0, 100.0);
  NBT_NEAR(nb_synapse_settle(s, T0 + 1000 * MS), 5.0, 1e-6);
  nb_synapse_on_pre(s, T0 + 1000 * MS);
  nb_synapse_on_post(s, T0 + 1001 * MS);
  nb_synapse_on_reward(s, T0 + 1002 * MS, 1e6);
  NBT_NEAR(nb_synapse_settle(s, T0 + 3000 * MS), 10.0, 1e-6);
  nb_synapse_on_reward(s, T0 + 3001 * MS, -1e9);
  NBT_NEAR(nb_synapse_settle(s, T0 + 5000 * MS), 0.0, 1e-6);
  nb_cortex_free(cx);
}

static void connect_rejects_bad_learning_params(void) {
  nb_cortex_t *cx = two(NULL, NULL, NULL, NULL, 0);
  nb_stdp_t p = reward_params();
  p.tau_c_ms = 0.0f;
  NBT_EQ(nb_cortex_connect(cx, 0, 1, 1.0f, NULL, 0, &p), NB_EINVAL);
  p = trace_params();
  p.lambda = -1.0f;
  NBT_EQ(nb_cortex_connect(cx, 0, 1, 1.0f, NULL, 0, &p), NB_EINVAL);
  p = trace_params();
  p.mode = 3;
  NBT_EQ(nb_cortex_connect(cx, 0, 1, 1.0f, NULL, 0, &p), NB_EINVAL);
  p = trace_params();
  p.mu_plus = NAN;
  NBT_EQ(nb_cortex_connect(cx, 0, 1, 1.0f, NULL, 0, &p), NB_EINVAL);
  nb_cortex_free(cx);
}

/* Injects a spike src -> dst of kind with text stamped ts; returns
 * nb_cortex_inject's result. */
static int inject(nb_cortex_t *cx, nb_id_t src, nb_id_t dst, nb_kind_t kind,
                  const char *text, uint64_t ts) {
  nb_spike_t s;
  nb_spike_init(&s, dst, kind, 0);
  s.source = src;
  s.timestamp_ns = ts;
  if (text) nb_spike_set_payload(&s, text, strlen(text));
  return nb_cortex_inject(cx, &s);
}

/* Through the cortex: a spike a -> b that makes b fire leaves
 * eligibility; a modulatory spike "2" into b is a reward of 2, "x" is
 * none; the weight then moves up. */
static void modulatory_spikes_carry_rewards(void) {
  nb_if_params_t pb = nb_if_params_default();
  pb.threshold = 0.5f;
  pb.refractory = 0;
  nb_cortex_t *cx = two(NULL, &pb, NULL, NULL, 0);
  nb_stdp_t p = reward_params();
  p.baseline = 0.0f;
  p.a_minus = 0.0f;
  NBT_EQ(nb_cortex_connect(cx, 0, 1, 5.0f, NULL, 0, &p), 0);
  uint64_t now = nb_clock_spike_ns();
  NBT_EQ(inject(cx, 0, 1, NB_EXCITATORY, NULL, now - 5 * MS), 0);
  nb_cortex_tick(cx);
  nb_synapse_t *s = ab(cx);
  NBT_CHECK(nb_synapse_eligibility(s) > 0.5);
  NBT_EQ(inject(cx, 0, 1, NB_MODULATORY, "x", 0), 0);
  nb_cortex_tick(cx);
  NBT_EQ(nb_cortex_stats(cx)->rewards, 0);
  NBT_EQ(inject(cx, 0xFFFE, 1, NB_MODULATORY, "2", 0), 0);
  nb_cortex_tick(cx);
  NBT_EQ(nb_cortex_stats(cx)->rewards, 1);
  float w = nb_synapse_settle(s, nb_clock_spike_ns() + 500 * MS);
  NBT_CHECK(w > 5.5f);
  nb_cortex_free(cx);
}

/* An agent whose tick fires `burst` spikes to b once; it records their
 * timestamps. */
typedef struct burst_s {
  int burst, done;
  uint64_t ts[64];
} burst_t;

/* Fires the burst from neuron a's first tick; returns 0. */
static int burst_tick(void *agent, nb_neuron_t *n) {
  burst_t *b = agent;
  if (nb_neuron_id(n) != 0 || b->done) return 0;
  b->done = 1;
  for (int i = 0; i < b->burst; i++) {
    nb_spike_t s;
    nb_spike_init(&s, 1, NB_EXCITATORY, 0);
    if (nb_neuron_fire(n, &s) != 0) return -1;
    b->ts[i] = s.timestamp_ns;
  }
  return 0;
}

/* Spikes fired in one tick carry their own, strictly increasing times,
 * with per-tick time too (then one tick time plus 1 ns per spike). */
static void timestamps_strictly_increase_per_source(void) {
  for (uint32_t tick_time = 0; tick_time <= 1; tick_time++) {
    burst_t b = {.burst = 32};
    nb_if_params_t pace = nb_if_params_default();
    pace.threshold = 0.0f;
    pace.refractory = 0;
    nb_agent_ops_t ops = {.tick = burst_tick};
    nb_cortex_t *cx = two(&pace, NULL, &ops, &b,
                          tick_time ? NB_SPIKE_TIME_TICK : NB_SPIKE_TIME_FIRE);
    nb_cortex_tick(cx);
    NBT_EQ(b.done, 1);
    for (int i = 1; i < b.burst; i++) NBT_CHECK(b.ts[i] > b.ts[i - 1]);
    if (tick_time) NBT_EQ(b.ts[31] - b.ts[0], 31);
    nb_cortex_free(cx);
  }
}

/* a fires a spike to b from its tick callback, then b (a pacemaker,
 * refractory one tick) fires later in the same tick: STDP sees
 * dt = t_post - t_pre > 0 measured between the two, and potentiates by
 * a_plus e^(-dt/tau+). With per-tick time both carry the tick's time: dt
 * is 0 and nothing changes. */
static void stdp_dt_inside_one_tick(void) {
  for (uint32_t tick_time = 0; tick_time <= 1; tick_time++) {
    burst_t bu = {.burst = 1};
    nb_if_params_t pace = nb_if_params_default();
    pace.threshold = 0.0f;
    pace.refractory = 0;
    nb_if_params_t pb = pace;
    pb.refractory = 1;
    nb_agent_ops_t ops = {.tick = burst_tick};
    nb_cortex_t *cx = two(&pace, &pb, &ops, &bu,
                          tick_time ? NB_SPIKE_TIME_TICK : NB_SPIKE_TIME_FIRE);
    nb_stdp_t p = nb_stdp_default();
    NBT_EQ(nb_cortex_connect(cx, 0, 1, 0.5f, NULL, 0, &p), 0);
    nb_cortex_tick(cx); /* a fires its spike, then b fires */
    uint64_t t_post = nb_neuron_last_fire_ns(nb_cortex_neuron(cx, 1));
    nb_cortex_tick(cx); /* the spike is routed; b is refractory */
    float w = nb_atomic_f32_load(&ab(cx)->weight);
    if (tick_time) {
      NBT_EQ(t_post, bu.ts[0]);
      NBT_NEAR(w, 0.5, 1e-7);
    } else {
      NBT_CHECK(t_post > bu.ts[0]);
      double dt_ms = (double)(t_post - bu.ts[0]) / 1e6;
      NBT_CHECK(dt_ms < 1.0);
      NBT_NEAR(w, 0.5f + (float)(0.01 * exp(-dt_ms / 20.0)), 1e-6);
    }
    nb_cortex_free(cx);
  }
}

/* Fires two spikes from neuron a's tick, 50 us apart; records their
 * timestamps (again on each tick); returns 0. */
static int spaced_tick(void *agent, nb_neuron_t *n) {
  burst_t *b = agent;
  if (nb_neuron_id(n) != 0) return 0;
  for (int i = 0; i < 2; i++) {
    if (i) {
      uint64_t until = nb_clock_ns() + 50000;
      while (nb_clock_ns() < until) {
      }
    }
    nb_spike_t s;
    nb_spike_init(&s, 1, NB_EXCITATORY, 0);
    if (nb_neuron_fire(n, &s) != 0) return -1;
    b->ts[i] = s.timestamp_ns;
  }
  b->done++;
  return 0;
}

/* NB_SPIKE_TIME_AUTO: the tick's time (one clock read per tick) while no
 * synapse learns; from the first STDP synapse on, each spike its own fire
 * time, so STDP sees the 50 us between two spikes of one tick. Bad values
 * are refused. */
static void auto_spike_time_turns_exact_with_learning(void) {
  burst_t b = {0};
  nb_if_params_t pace = nb_if_params_default();
  pace.threshold = 0.0f;
  pace.refractory = 0;
  nb_agent_ops_t ops = {.tick = spaced_tick};
  nb_cortex_t *cx = two(&pace, NULL, &ops, &b, NB_SPIKE_TIME_AUTO);
  NBT_CHECK(cx != NULL);
  if (!cx) return;
  NBT_EQ(nb_cortex_connect(cx, 0, 1, 0.5f, NULL, 0, NULL), 0); /* plain */
  nb_cortex_tick(cx);
  NBT_EQ(b.done, 1);
  NBT_EQ(b.ts[1] - b.ts[0], 1); /* the tick's time, +1 ns */
  nb_cortex_free(cx);
  b.done = 0;
  cx = two(&pace, NULL, &ops, &b, NB_SPIKE_TIME_AUTO);
  nb_stdp_t p = nb_stdp_default();
  NBT_EQ(nb_cortex_connect(cx, 0, 1, 0.5f, NULL, 0, &p), 0);
  nb_cortex_tick(cx);
  NBT_EQ(b.done, 1);
  NBT_CHECK(b.ts[1] - b.ts[0] >= 50000);
  nb_cortex_free(cx);
  nb_cortex_opts_t o = nb_cortex_opts_default();
  o.spike_time = NB_SPIKE_TIME_AUTO + 1;
  cx = NULL;
  NBT_EQ(nb_cortex_new(&cx, &o), NB_EINVAL);
  NBT_CHECK(cx == NULL);
}

/* The spike clock agrees with CLOCK_MONOTONIC and never steps back. */
static void spike_clock_tracks_monotonic(void) {
  nb_clock_calibrate();
  uint64_t prev = nb_clock_spike_ns();
  for (int i = 0; i < 200000; i++) {
    uint64_t t = nb_clock_spike_ns();
    NBT_CHECK(t >= prev);
    if (t < prev) break;
    prev = t;
  }
  uint64_t a = nb_clock_ns(), s = nb_clock_spike_ns(), b = nb_clock_ns();
  /* Within 50 us of the OS clock (the anchors keep it far closer). */
  NBT_CHECK(s + 50000 >= a && s <= b + 50000);
}

/* The source of the workers test: each tick it fires one spike to each
 * target and, every 8th tick, a reward "1" to each. */
typedef struct src_s {
  int ticks;
  nb_id_t targets[2];
} src_t;

/* Fires the tick's spikes; returns 0, or -1 when an axon is full. */
static int src_tick(void *agent, nb_neuron_t *n) {
  src_t *s = agent;
  if (nb_neuron_id(n) != 0) return 0;
  s->ticks++;
  for (int i = 0; i < 2; i++) {
    if (nb_neuron_fire_to(n, s->targets[i], NULL, 0) != 0) return -1;
    if (s->ticks % 8 == 0 &&
        nb_neuron_fire_ex(n, s->targets[i], NB_MODULATORY, 0, "1", 1) != 0)
      return -1;
  }
  return 0;
}

typedef struct ticker_s {
  nb_cortex_t *cx;
  uint32_t w;
  int n;
} ticker_t;

/* Ticks worker w n times (busy ticks of a worker taken by no one else). */
static void *ticker(void *arg) {
  ticker_t *t = arg;
  for (int i = 0; i < t->n; i++) {
    nb_cortex_tick_worker(t->cx, t->w);
    if (i % 64 == 0) nbt_sleep_ms(1); /* let spike times spread */
  }
  return NULL;
}

/* With two workers ticked by two threads at once, reward-mode synapses
 * into targets on both workers learn (every write on the target's worker:
 * TSan checks it), and rewards reach both. */
static void rewards_across_workers(void) {
  nb_cortex_opts_t o = nb_cortex_opts_default();
  o.max_neurons = 16;
  o.axon_capacity = 256;
  o.workers = 2;
  nb_cortex_t *cx = NULL;
  NBT_EQ(nb_cortex_new(&cx, &o), 0);
  src_t src = {0, {1, 2}};
  nb_if_params_t pace = nb_if_params_default();
  pace.threshold = 0.0f;
  pace.refractory = 0;
  nb_agent_ops_t ops = {.tick = src_tick};
  nb_card_t c;
  memset(&c, 0, sizeof c);
  const char *names[] = {"src", "d1", "d2"};
  for (int i = 0; i < 3; i++) {
    c.name = names[i];
    NBT_EQ(nb_cortex_register(cx, &c, &pace, &ops, &src, NULL), 0);
  }
  /* Ids go round robin: src and d2 on worker 0, d1 on worker 1. */
  NBT_EQ(nb_cortex_worker_of(cx, 1), 1);
  nb_stdp_t p = reward_params();
  p.baseline = 0.0f;
  p.a_plus = 0.01f;
  p.a_minus = 0.0f;
  for (nb_id_t t = 1; t <= 2; t++)
    NBT_EQ(nb_cortex_connect(cx, 0, t, 5.0f, NULL, 0, &p), 0);
  ticker_t a = {cx, 0, 400}, b = {cx, 1, 400};
  pthread_t ta, tb;
  pthread_create(&ta, NULL, ticker, &a);
  pthread_create(&tb, NULL, ticker, &b);
  pthread_join(ta, NULL);
  pthread_join(tb, NULL);
  NBT_CHECK(nb_cortex_stats(cx)->rewards > 0);
  for (nb_id_t t = 1; t <= 2; t++) {
    nb_synapse_t *s = nb_synapse_table_get(nb_cortex_synapses(cx), 0, t);
    NBT_CHECK(nb_atomic_f32_load(&s->weight) > 5.0f);
  }
  nb_cortex_free(cx);
}

static const nbt_test_t tests[] = {
    NBT_TEST(trace_reference_case),
    NBT_TEST(trace_all_to_all_and_additive),
    NBT_TEST(reward_reference_case),
    NBT_TEST(reward_is_bounded_and_needs_eligibility),
    NBT_TEST(connect_rejects_bad_learning_params),
    NBT_TEST(modulatory_spikes_carry_rewards),
    NBT_TEST(timestamps_strictly_increase_per_source),
    NBT_TEST(stdp_dt_inside_one_tick),
    NBT_TEST(auto_spike_time_turns_exact_with_learning),
    NBT_TEST(spike_clock_tracks_monotonic),
    NBT_TEST(rewards_across_workers),
};

int main(int argc, char **argv) { return NBT_MAIN(argc, argv, tests, NULL); }
