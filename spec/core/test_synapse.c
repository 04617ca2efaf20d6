/* Synapses: atomic f32, the STDP rule and its numbers, clamping, dendritic
 * filters, and the synapse table (dense and sparse behave the same, lists
 * keep connection order, pointers stay valid, pruning). */
#include <math.h>
#include <pthread.h>

#include "neuronbus.h"
#include "nbtest.h"

#define MS 1000000ll /* nanoseconds per millisecond */

static void atomic_f32_load_store_add(void) {
  nb_atomic_f32_t w;
  atomic_init(&w.bits, 0);
  NBT_NEAR(nb_atomic_f32_load(&w), 0.0, 0);
  nb_atomic_f32_store(&w, 0.25f);
  NBT_NEAR(nb_atomic_f32_load(&w), 0.25, 0);
  NBT_NEAR(nb_atomic_f32_fetch_add(&w, 0.5f), 0.25, 0);
  NBT_NEAR(nb_atomic_f32_load(&w), 0.75, 0);
  NBT_NEAR(nb_atomic_f32_fetch_add(&w, -1.0f), 0.75, 0);
  NBT_NEAR(nb_atomic_f32_load(&w), -0.25, 0);
  /* Negative zero and odd values survive the bit round trip. */
  nb_atomic_f32_store(&w, -0.0f);
  NBT_CHECK(signbit(nb_atomic_f32_load(&w)));
  nb_atomic_f32_store(&w, 1e-38f);
  NBT_CHECK(nb_atomic_f32_load(&w) == 1e-38f);
}

static void atomic_f32_add_clamped_both_ends(void) {
  nb_atomic_f32_t w;
  atomic_init(&w.bits, 0);
  nb_atomic_f32_store(&w, 0.5f);
  NBT_NEAR(nb_atomic_f32_add_clamped(&w, 0.25f, 0.0f, 1.0f), 0.75, 0);
  NBT_NEAR(nb_atomic_f32_add_clamped(&w, 10.0f, 0.0f, 1.0f), 1.0, 0);
  NBT_NEAR(nb_atomic_f32_load(&w), 1.0, 0);
  NBT_NEAR(nb_atomic_f32_add_clamped(&w, -10.0f, 0.1f, 1.0f), 0.1f, 0);
  NBT_NEAR(nb_atomic_f32_load(&w), 0.1f, 0);
  /* A NaN delta leaves the weight as it was. */
  NBT_NEAR(nb_atomic_f32_add_clamped(&w, NAN, 0.0f, 1.0f), 0.1f, 0);
  nb_atomic_f32_store(&w, NAN);
  NBT_NEAR(nb_atomic_f32_add_clamped(&w, 0.0f, 0.2f, 1.0f), 0.2f, 0);
}

/* Adds 1.0 to a shared weight 100000 times; returns NULL. */
static void *adder(void *arg) {
  for (int i = 0; i < 100000; i++) nb_atomic_f32_fetch_add(arg, 1.0f);
  return NULL;
}

static void atomic_f32_concurrent_adds_lose_nothing(void) {
  nb_atomic_f32_t w;
  atomic_init(&w.bits, 0);
  pthread_t th[4];
  for (int i = 0; i < 4; i++) pthread_create(&th[i], NULL, adder, &w);
  for (int i = 0; i < 4; i++) pthread_join(th[i], NULL);
  NBT_NEAR(nb_atomic_f32_load(&w), 400000.0, 0); /* exact below 2^24 */
}

static void stdp_numbers_match_the_rule(void) {
  nb_stdp_t p = nb_stdp_default();
  NBT_NEAR(p.a_plus, 0.01, 1e-9);
  NBT_NEAR(p.a_minus, 0.012, 1e-9);
  NBT_NEAR(p.tau_plus_ms, 20, 0);
  NBT_NEAR(p.tau_minus_ms, 20, 0);
  NBT_NEAR(p.w_min, 0.001, 1e-9);
  NBT_NEAR(p.w_max, 1.0, 0);
  NBT_NEAR(nb_stdp_delta(&p, 10 * MS), 0.0060653, 1e-6);
  NBT_NEAR(nb_stdp_delta(&p, -10 * MS), -0.0072784, 1e-6);
  NBT_NEAR(nb_stdp_delta(&p, 20 * MS), 0.01 * exp(-1.0), 1e-6);
  NBT_NEAR(nb_stdp_delta(&p, -40 * MS), -0.012 * exp(-2.0), 1e-6);
  NBT_NEAR(nb_stdp_delta(&p, 1), 0.01, 1e-6);
  NBT_NEAR(nb_stdp_delta(&p, -1), -0.012, 1e-6);
  NBT_NEAR(nb_stdp_delta(&p, 0), 0.0, 0);
  NBT_NEAR(nb_stdp_delta(&p, INT64_MAX), 0.0, 1e-12);
  NBT_NEAR(nb_stdp_delta(&p, INT64_MIN), 0.0, 1e-12);
  p.tau_plus_ms = 0;
  NBT_NEAR(nb_stdp_delta(&p, 10 * MS), 0.0, 0);
}

/* Returns a synapse template with weight w and STDP on or off. */
static nb_synapse_t make_syn(float w, int stdp_on) {
  nb_synapse_t s;
  memset(&s, 0, sizeof s);
  atomic_init(&s.weight.bits, 0);
  atomic_init(&s.last_pre_ns, 0);
  nb_atomic_f32_store(&s.weight, w);
  s.stdp = nb_stdp_default();
  s.stdp_on = (uint8_t)stdp_on;
  return s;
}

static void synapse_stdp_steps_and_clamps(void) {
  nb_synapse_t s = make_syn(0.5f, 1);
  NBT_NEAR(nb_synapse_stdp(&s, 10 * MS), 0.5 + 0.0060653, 1e-6);
  NBT_NEAR(nb_synapse_stdp(&s, -10 * MS), 0.5 + 0.0060653 - 0.0072784, 1e-6);
  nb_atomic_f32_store(&s.weight, 0.995f);
  NBT_NEAR(nb_synapse_stdp(&s, 1), 1.0, 0);
  NBT_NEAR(nb_synapse_stdp(&s, 1), 1.0, 0);
  nb_atomic_f32_store(&s.weight, 0.005f);
  NBT_NEAR(nb_synapse_stdp(&s, -1), 0.001f, 0);
  NBT_NEAR(nb_atomic_f32_load(&s.weight), 0.001f, 0);
  s.stdp.w_max = 0.5f;
  nb_atomic_f32_store(&s.weight, 0.49f);
  NBT_NEAR(nb_synapse_stdp(&s, 1), 0.5, 0);
  nb_synapse_t off = make_syn(0.3f, 0);
  NBT_NEAR(nb_synapse_stdp(&off, 1), 0.3f, 0);
  NBT_NEAR(nb_atomic_f32_load(&off.weight), 0.3f, 0);
}

/* What the custom filter callback saw. */
typedef struct seen_s {
  int calls, verdict;
  nb_id_t target;
  char name[NB_FILTER_NAME_MAX];
  const nb_spike_t *spike;
  const void *payload;
  size_t len;
} seen_t;

/* Records its arguments in ctx; returns the verdict stored there. */
static int custom_cb(void *ctx, nb_id_t target, const char *name,
                     const nb_spike_t *s, const void *payload, size_t len) {
  seen_t *w = ctx;
  w->calls++;
  w->target = target;
  snprintf(w->name, sizeof w->name, "%s", name);
  w->spike = s;
  w->payload = payload;
  w->len = len;
  return w->verdict;
}

static void kind_and_priority_filters(void) {
  nb_spike_t s;
  nb_spike_init(&s, 1, NB_INHIBITORY, 100);
  nb_filter_t f = nb_filter_kind(1u << NB_EXCITATORY);
  NBT_EQ(f.type, NB_FILTER_KIND);
  NBT_CHECK(!nb_filter_pass(&f, 1, &s, NULL, 0, NULL, NULL));
  f = nb_filter_kind((1u << NB_EXCITATORY) | (1u << NB_INHIBITORY));
  NBT_CHECK(nb_filter_pass(&f, 1, &s, NULL, 0, NULL, NULL));
  nb_spike_set_kind(&s, NB_MODULATORY);
  NBT_CHECK(!nb_filter_pass(&f, 1, &s, NULL, 0, NULL, NULL));
  f = nb_filter_kind(0);
  NBT_CHECK(!nb_filter_pass(&f, 1, &s, NULL, 0, NULL, NULL));

  f = nb_filter_priority(100);
  NBT_EQ(f.type, NB_FILTER_PRIORITY);
  NBT_CHECK(nb_filter_pass(&f, 1, &s, NULL, 0, NULL, NULL)); /* >= */
  s.priority = 99;
  NBT_CHECK(!nb_filter_pass(&f, 1, &s, NULL, 0, NULL, NULL));
  s.priority = 255;
  NBT_CHECK(nb_filter_pass(&f, 1, &s, NULL, 0, NULL, NULL));
  f = nb_filter_priority(0);
  s.priority = 0;
  NBT_CHECK(nb_filter_pass(&f, 1, &s, NULL, 0, NULL, NULL));
}

static void prefix_filter_reads_the_resolved_payload(void) {
  nb_spike_t s;
  nb_spike_init(&s, 1, NB_EXCITATORY, 0);
  nb_spike_set_payload(&s, "cmd:run", 7);
  nb_filter_t f = nb_filter_prefix("cmd:", 4);
  NBT_EQ(f.type, NB_FILTER_PREFIX);
  NBT_EQ(f.prefix_len, 4);
  NBT_CHECK(nb_filter_pass(&f, 1, &s, s.payload, 7, NULL, NULL));
  NBT_CHECK(!nb_filter_pass(&f, 1, &s, "cmd", 3, NULL, NULL)); /* too short */
  NBT_CHECK(!nb_filter_pass(&f, 1, &s, "cmx:run", 7, NULL, NULL));
  /* A payload in the arena is filtered by its bytes, not by the ref. */
  nb_arena_t *a;
  nb_arena_writer_t *w;
  NBT_EQ(nb_arena_new(&a, 1024), 0);
  NBT_EQ(nb_arena_writer_new(&w, a), 0);
  char big[100];
  memset(big, '.', sizeof big);
  memcpy(big, "cmd:big", 7);
  NBT_EQ(nb_arena_put_payload(w, &s, big, sizeof big), 0);
  const void *p;
  size_t n;
  NBT_EQ(nb_arena_get_payload(a, &s, &p, &n), 0);
  NBT_CHECK(nb_filter_pass(&f, 1, &s, p, n, NULL, NULL));
  NBT_CHECK(!nb_filter_pass(&f, 1, &s, s.payload, 25, NULL, NULL));
  nb_arena_writer_free(w);
  nb_arena_free(a);
  /* Binary prefixes with zeros, the full 16 bytes, and the empty prefix. */
  uint8_t bin[16] = {0, 1, 0, 2, 0xA0, 0, 0, 0, 9, 9, 9, 9, 9, 9, 9, 0};
  f = nb_filter_prefix(bin, 16);
  NBT_EQ(f.type, NB_FILTER_PREFIX);
  NBT_CHECK(nb_filter_pass(&f, 1, &s, bin, 16, NULL, NULL));
  uint8_t other[16];
  memcpy(other, bin, 16);
  other[15] = 1;
  NBT_CHECK(!nb_filter_pass(&f, 1, &s, other, 16, NULL, NULL));
  f = nb_filter_prefix(NULL, 0);
  NBT_EQ(f.type, NB_FILTER_PREFIX);
  NBT_CHECK(nb_filter_pass(&f, 1, &s, NULL, 0, NULL, NULL));
  /* Too long a prefix gives a type-0 filter, which passes nothing. */
  uint8_t long17[17] = {0};
  f = nb_filter_prefix(long17, 17);
  NBT_EQ(f.type, 0);
  NBT_CHECK(!nb_filter_pass(&f, 1, &s, long17, 17, NULL, NULL));
}

static void custom_filter_asks_the_callback(void) {
  nb_spike_t s;
  nb_spike_init(&s, 9, NB_EXCITATORY, 0);
  nb_spike_set_payload(&s, "xyz", 3);
  nb_filter_t f = nb_filter_custom("only_urgent");
  NBT_EQ(f.type, NB_FILTER_CUSTOM);
  NBT_CHECK(strcmp(f.name, "only_urgent") == 0);
  /* Without a callback a custom filter passes nothing. */
  NBT_CHECK(!nb_filter_pass(&f, 9, &s, s.payload, 3, NULL, NULL));
  seen_t w = {.verdict = 1};
  NBT_CHECK(nb_filter_pass(&f, 9, &s, s.payload, 3, custom_cb, &w));
  NBT_EQ(w.calls, 1);
  NBT_EQ(w.target, 9);
  NBT_CHECK(strcmp(w.name, "only_urgent") == 0);
  NBT_CHECK(w.spike == &s && w.payload == s.payload);
  NBT_EQ(w.len, 3);
  w.verdict = 0;
  NBT_CHECK(!nb_filter_pass(&f, 9, &s, s.payload, 3, custom_cb, &w));
  w.verdict = 42; /* any nonzero passes */
  NBT_CHECK(nb_filter_pass(&f, 9, &s, s.payload, 3, custom_cb, &w));
  /* Names of 32 bytes or more are refused rather than truncated. */
  char name[40];
  memset(name, 'n', sizeof name);
  name[31] = 0;
  NBT_EQ(nb_filter_custom(name).type, NB_FILTER_CUSTOM);
  name[31] = 'n';
  name[32] = 0;
  NBT_EQ(nb_filter_custom(name).type, 0);
  NBT_EQ(nb_filter_custom(NULL).type, 0);
}

static void synapse_pass_needs_every_filter(void) {
  nb_synapse_t syn = make_syn(1.0f, 0);
  syn.pre = 2;
  syn.post = 7;
  nb_spike_t s;
  nb_spike_init(&s, 7, NB_EXCITATORY, 50);
  nb_spike_set_payload(&s, "go:now", 6);
  NBT_CHECK(nb_synapse_pass(&syn, &s, s.payload, 6, NULL, NULL)); /* none */
  syn.filters[0] = nb_filter_kind(1u << NB_EXCITATORY);
  syn.filters[1] = nb_filter_priority(10);
  syn.filters[2] = nb_filter_prefix("go:", 3);
  syn.filters[3] = nb_filter_custom("gate");
  syn.nfilters = 4;
  seen_t w = {.verdict = 1};
  NBT_CHECK(nb_synapse_pass(&syn, &s, s.payload, 6, custom_cb, &w));
  NBT_EQ(w.target, 7); /* the post-synaptic neuron */
  NBT_CHECK(strcmp(w.name, "gate") == 0);
  NBT_CHECK(!nb_synapse_pass(&syn, &s, s.payload, 6, NULL, NULL));
  w.verdict = 0;
  NBT_CHECK(!nb_synapse_pass(&syn, &s, s.payload, 6, custom_cb, &w));
  w.verdict = 1;
  s.priority = 9;
  int calls = w.calls;
  NBT_CHECK(!nb_synapse_pass(&syn, &s, s.payload, 6, custom_cb, &w));
  NBT_EQ(w.calls, calls); /* stops at the first failing filter */
  s.priority = 10;
  NBT_CHECK(!nb_synapse_pass(&syn, &s, "no:now", 6, custom_cb, &w));
  nb_spike_set_kind(&s, NB_INHIBITORY);
  NBT_CHECK(!nb_synapse_pass(&syn, &s, s.payload, 6, custom_cb, &w));
  syn.nfilters = 5; /* corrupt: fails closed */
  NBT_CHECK(!nb_synapse_pass(&syn, &s, s.payload, 6, custom_cb, &w));
}

/* ---- table ---- */

/* Returns 1 when the list holds exactly the pairs given, in that order. */
static int list_is(nb_synapse_t *const *list, size_t n, const nb_id_t *pairs,
                   size_t npairs) {
  if (n != npairs) return 0;
  if (n && !list) return 0;
  for (size_t i = 0; i < n; i++)
    if (list[i]->pre != pairs[2 * i] || list[i]->post != pairs[2 * i + 1])
      return 0;
  return 1;
}

/* Returns 1 when pre's outgoing list is exactly pairs, in order. */
static int out_is(const nb_synapse_table_t *t, nb_id_t pre,
                  const nb_id_t *pairs, size_t npairs) {
  size_t n;
  nb_synapse_t *const *l = nb_synapse_table_outgoing(t, pre, &n);
  return list_is(l, n, pairs, npairs);
}

/* Returns 1 when post's incoming list is exactly pairs, in order. */
static int in_is(const nb_synapse_table_t *t, nb_id_t post,
                 const nb_id_t *pairs, size_t npairs) {
  size_t n;
  nb_synapse_t *const *l = nb_synapse_table_incoming(t, post, &n);
  return list_is(l, n, pairs, npairs);
}

/* Runs the basic table behaviour on a table of max neurons; returns
 * nothing (checks record failures). */
static void table_basics(uint32_t max) {
  nb_synapse_table_t *t;
  NBT_EQ(nb_synapse_table_new(&t, max), 0);
  NBT_EQ(nb_synapse_table_is_dense(t), max <= NB_SYNAPSE_DENSE_MAX);
  nb_synapse_t tmpl = make_syn(0.5f, 1);
  tmpl.pre = 999; /* ignored: the arguments decide */
  NBT_EQ(nb_synapse_table_connect(t, 1, 2, &tmpl), 0);
  NBT_EQ(nb_synapse_table_connect(t, 1, 3, &tmpl), 0);
  NBT_EQ(nb_synapse_table_connect(t, 1, 0, &tmpl), 0);
  NBT_EQ(nb_synapse_table_connect(t, 4, 2, &tmpl), 0);
  NBT_EQ(nb_synapse_table_connect(t, 0, 2, &tmpl), 0);
  NBT_EQ(nb_synapse_table_count(t), 5);
  nb_synapse_t *s12 = nb_synapse_table_get(t, 1, 2);
  NBT_CHECK(s12 && s12->pre == 1 && s12->post == 2);
  NBT_NEAR(nb_atomic_f32_load(&s12->weight), 0.5, 0);
  NBT_CHECK(nb_synapse_table_get(t, 2, 1) == NULL);
  NBT_CHECK(nb_synapse_table_get(t, 1, 1) == NULL);
  /* Bad pairs. */
  NBT_EQ(nb_synapse_table_connect(t, 3, 3, &tmpl), NB_EINVAL);
  NBT_EQ(nb_synapse_table_connect(t, (nb_id_t)max, 1, &tmpl), NB_EINVAL);
  NBT_EQ(nb_synapse_table_connect(t, 1, (nb_id_t)max, &tmpl), NB_EINVAL);
  NBT_EQ(nb_synapse_table_connect(t, 1, NB_BROADCAST, &tmpl), NB_EINVAL);
  NBT_EQ(nb_synapse_table_connect(t, 1, 5, NULL), NB_EINVAL);
  nb_synapse_t many = tmpl;
  many.nfilters = NB_FILTERS_MAX + 1;
  NBT_EQ(nb_synapse_table_connect(t, 1, 5, &many), NB_EINVAL);
  NBT_CHECK(nb_synapse_table_get(t, (nb_id_t)max, 1) == NULL);
  NBT_EQ(nb_synapse_table_count(t), 5);
  /* The last id of the range is usable. */
  nb_id_t last = (nb_id_t)(max - 1);
  NBT_EQ(nb_synapse_table_connect(t, last, 0, &tmpl), 0);
  NBT_CHECK(nb_synapse_table_get(t, last, 0) != NULL);
  NBT_EQ(nb_synapse_table_disconnect(t, last, 0), 0);

  /* Lists in connection order. */
  size_t n;
  nb_id_t out1[] = {1, 2, 1, 3, 1, 0};
  NBT_CHECK(out_is(t, 1, out1, 3));
  nb_id_t in2[] = {1, 2, 4, 2, 0, 2};
  NBT_CHECK(in_is(t, 2, in2, 3));
  NBT_CHECK(nb_synapse_table_outgoing(t, 2, &n) == NULL || n == 0);
  NBT_EQ(n, 0);
  NBT_CHECK(nb_synapse_table_outgoing(t, (nb_id_t)max, &n) == NULL);
  NBT_EQ(n, 0);

  /* Replacing keeps the object and its place. */
  nb_synapse_t repl = make_syn(0.9f, 0);
  repl.filters[0] = nb_filter_priority(5);
  repl.nfilters = 1;
  NBT_EQ(nb_synapse_table_connect(t, 1, 2, &repl), 0);
  NBT_CHECK(nb_synapse_table_get(t, 1, 2) == s12);
  NBT_EQ(s12->pre, 1);
  NBT_EQ(s12->post, 2);
  NBT_EQ(s12->nfilters, 1);
  NBT_EQ(s12->stdp_on, 0);
  NBT_NEAR(nb_atomic_f32_load(&s12->weight), 0.9f, 0);
  NBT_EQ(nb_synapse_table_count(t), 5);
  NBT_CHECK(out_is(t, 1, out1, 3));

  /* Disconnect keeps the others, in order. */
  NBT_EQ(nb_synapse_table_disconnect(t, 1, 3), 0);
  NBT_EQ(nb_synapse_table_disconnect(t, 1, 3), NB_ENOENT);
  NBT_EQ(nb_synapse_table_disconnect(t, (nb_id_t)max, 3), NB_ENOENT);
  NBT_CHECK(nb_synapse_table_get(t, 1, 3) == NULL);
  nb_id_t out1b[] = {1, 2, 1, 0};
  NBT_CHECK(out_is(t, 1, out1b, 2));
  NBT_EQ(nb_synapse_table_disconnect(t, 4, 2), 0);
  nb_id_t in2b[] = {1, 2, 0, 2};
  NBT_CHECK(in_is(t, 2, in2b, 2));
  NBT_CHECK(nb_synapse_table_get(t, 1, 2) == s12);
  NBT_CHECK(nb_synapse_table_get(t, 0, 2) != NULL);
  /* Reconnecting appends at the end. */
  NBT_EQ(nb_synapse_table_connect(t, 1, 3, &tmpl), 0);
  nb_id_t out1c[] = {1, 2, 1, 0, 1, 3};
  NBT_CHECK(out_is(t, 1, out1c, 3));
  NBT_EQ(nb_synapse_table_count(t), 4);
  nb_synapse_table_free(t);
}

static void dense_table_basics(void) { table_basics(1024); }
static void sparse_table_basics(void) { table_basics(2000); }

/* Appends "pre>post " for each synapse to the string in ctx; returns
 * nothing. */
static void collect(void *ctx, const nb_synapse_t *s) {
  char *buf = ctx;
  size_t l = strlen(buf);
  snprintf(buf + l, 4096 - l, "%u>%u ", s->pre, s->post);
}

static void each_visits_pre_then_connection_order(void) {
  uint32_t maxes[] = {16, 3000};
  for (int m = 0; m < 2; m++) {
    nb_synapse_table_t *t;
    NBT_EQ(nb_synapse_table_new(&t, maxes[m]), 0);
    nb_synapse_t tmpl = make_syn(0.5f, 0);
    nb_synapse_table_connect(t, 5, 1, &tmpl);
    nb_synapse_table_connect(t, 2, 9, &tmpl);
    nb_synapse_table_connect(t, 5, 0, &tmpl);
    nb_synapse_table_connect(t, 2, 3, &tmpl);
    nb_synapse_table_connect(t, 0, 5, &tmpl);
    char buf[4096] = "";
    nb_synapse_table_each(t, collect, buf);
    NBT_CHECK(strcmp(buf, "0>5 2>9 2>3 5>1 5>0 ") == 0);
    nb_synapse_table_free(t);
  }
}

static void pointers_survive_many_inserts(void) {
  uint32_t maxes[] = {1024, 4000};
  for (int m = 0; m < 2; m++) {
    nb_synapse_table_t *t;
    NBT_EQ(nb_synapse_table_new(&t, maxes[m]), 0);
    nb_synapse_t tmpl = make_syn(0.5f, 0);
    NBT_EQ(nb_synapse_table_connect(t, 0, 1, &tmpl), 0);
    nb_synapse_t *first = nb_synapse_table_get(t, 0, 1);
    int bad = 0;
    /* Enough inserts to grow the pool or the hash many times over. */
    for (uint32_t i = 0; i < 20000; i++) {
      nb_id_t pre = (nb_id_t)(1 + i % 900), post = (nb_id_t)(i / 900 + 2);
      if (pre == post) continue;
      if (nb_synapse_table_connect(t, pre, post, &tmpl) != 0) bad++;
    }
    NBT_EQ(bad, 0);
    NBT_CHECK(nb_synapse_table_get(t, 0, 1) == first);
    NBT_EQ(first->pre, 0);
    NBT_EQ(first->post, 1);
    nb_atomic_f32_store(&first->weight, 0.75f); /* still writable memory */
    NBT_NEAR(nb_atomic_f32_load(&nb_synapse_table_get(t, 0, 1)->weight), 0.75,
             0);
    nb_synapse_table_free(t);
  }
}

static void prune_removes_at_or_below_w_min(void) {
  uint32_t maxes[] = {64, 1500};
  for (int m = 0; m < 2; m++) {
    nb_synapse_table_t *t;
    NBT_EQ(nb_synapse_table_new(&t, maxes[m]), 0);
    nb_synapse_t tmpl = make_syn(0.5f, 1);
    float w_min = tmpl.stdp.w_min;
    float ws[] = {0.5f, w_min, nextafterf(w_min, 1.0f), w_min / 2, 0.0f,
                  1.0f, -1.0f};
    for (int i = 0; i < 7; i++) {
      nb_atomic_f32_store(&tmpl.weight, ws[i]);
      NBT_EQ(nb_synapse_table_connect(t, 1, (nb_id_t)(10 + i), &tmpl), 0);
      NBT_EQ(nb_synapse_table_connect(t, (nb_id_t)(10 + i), 2, &tmpl), 0);
    }
    /* A synapse with its own, higher floor. */
    nb_synapse_t own = make_syn(0.3f, 1);
    own.stdp.w_min = 0.3f;
    NBT_EQ(nb_synapse_table_connect(t, 3, 4, &own), 0);
    NBT_EQ(nb_synapse_table_count(t), 15);
    NBT_EQ(nb_synapse_table_prune(t), 9); /* 4 x 2 plus the own floor */
    NBT_EQ(nb_synapse_table_count(t), 6);
    size_t n;
    nb_id_t out1[] = {1, 10, 1, 12, 1, 15};
    NBT_CHECK(out_is(t, 1, out1, 3));
    nb_id_t in2[] = {10, 2, 12, 2, 15, 2};
    NBT_CHECK(in_is(t, 2, in2, 3));
    NBT_CHECK(nb_synapse_table_get(t, 1, 11) == NULL);
    NBT_CHECK(nb_synapse_table_get(t, 13, 2) == NULL);
    NBT_CHECK(nb_synapse_table_get(t, 3, 4) == NULL);
    NBT_CHECK(nb_synapse_table_get(t, 1, 12) != NULL);
    NBT_EQ(nb_synapse_table_incoming(t, 11, &n) ? n : 0, 0);
    NBT_EQ(nb_synapse_table_prune(t), 0);
    /* STDP down to the floor makes a synapse prunable. */
    nb_synapse_t *s = nb_synapse_table_get(t, 1, 10);
    for (int i = 0; i < 100; i++) nb_synapse_stdp(s, -1);
    NBT_NEAR(nb_atomic_f32_load(&s->weight), w_min, 0);
    NBT_EQ(nb_synapse_table_prune(t), 1);
    NBT_CHECK(nb_synapse_table_get(t, 1, 10) == NULL);
    /* Freed dense slots and hash buckets are reused cleanly. */
    nb_atomic_f32_store(&tmpl.weight, 0.5f);
    NBT_EQ(nb_synapse_table_connect(t, 1, 11, &tmpl), 0);
    NBT_EQ(nb_synapse_table_connect(t, 1, 10, &tmpl), 0);
    nb_id_t out1b[] = {1, 12, 1, 15, 1, 11, 1, 10};
    NBT_CHECK(out_is(t, 1, out1b, 4));
    nb_synapse_table_free(t);
  }
}

static void empty_and_huge_id_spaces(void) {
  nb_synapse_table_t *t;
  nb_synapse_t tmpl = make_syn(0.5f, 0);
  size_t n;
  NBT_EQ(nb_synapse_table_new(&t, 0), 0);
  NBT_EQ(nb_synapse_table_connect(t, 0, 1, &tmpl), NB_EINVAL);
  NBT_CHECK(nb_synapse_table_get(t, 0, 1) == NULL);
  NBT_CHECK(nb_synapse_table_outgoing(t, 0, &n) == NULL && n == 0);
  NBT_EQ(nb_synapse_table_prune(t), 0);
  nb_synapse_table_free(t);
  NBT_EQ(nb_synapse_table_new(&t, 1u << 20), 0);
  NBT_EQ(nb_synapse_table_is_dense(t), 0);
  NBT_EQ(nb_synapse_table_connect(t, 65534, 0, &tmpl), 0);
  NBT_EQ(nb_synapse_table_connect(t, 0, 65534, &tmpl), 0);
  NBT_EQ(nb_synapse_table_connect(t, 0, NB_BROADCAST, &tmpl), NB_EINVAL);
  NBT_CHECK(nb_synapse_table_get(t, 65534, 0) != NULL);
  NBT_EQ(nb_synapse_table_count(t), 2);
  nb_synapse_table_free(t);
  nb_synapse_table_free(NULL);
}

/* ---- dense and sparse against a model ---- */

#define MODEL_MAX 4000

/* The reference model: every live synapse with its connection stamp. */
typedef struct model_s {
  int n;
  struct { nb_id_t pre, post; float w; long stamp; } e[MODEL_MAX];
  long clock;
} model_t;

/* Returns the model index of pre->post, or -1. */
static int model_find(const model_t *m, nb_id_t pre, nb_id_t post) {
  for (int i = 0; i < m->n; i++)
    if (m->e[i].pre == pre && m->e[i].post == post) return i;
  return -1;
}

/* Removes model entry i keeping the stamp order; returns nothing. */
static void model_remove(model_t *m, int i) {
  memmove(&m->e[i], &m->e[i + 1], (size_t)(m->n - i - 1) * sizeof m->e[0]);
  m->n--;
}

/* Returns 1 when t's lists, lookups and count match the model. */
static int matches_model(const nb_synapse_table_t *t, const model_t *m,
                         int ids) {
  if ((int)nb_synapse_table_count(t) != m->n) return 0;
  for (int i = 0; i < m->n; i++) {
    nb_synapse_t *s = nb_synapse_table_get(t, m->e[i].pre, m->e[i].post);
    if (!s || nb_atomic_f32_load(&s->weight) != m->e[i].w) return 0;
  }
  /* Model entries are kept in stamp order, so walking them once and
   * advancing a cursor per pre (and per post) checks every list's order. */
  static size_t kout[1024], kin[1024];
  memset(kout, 0, sizeof kout);
  memset(kin, 0, sizeof kin);
  for (int i = 0; i < m->n; i++) {
    size_t n;
    nb_synapse_t *const *out = nb_synapse_table_outgoing(t, m->e[i].pre, &n);
    size_t *ko = &kout[m->e[i].pre];
    if (*ko >= n || out[(*ko)++]->post != m->e[i].post) return 0;
    nb_synapse_t *const *in = nb_synapse_table_incoming(t, m->e[i].post, &n);
    size_t *ki = &kin[m->e[i].post];
    if (*ki >= n || in[(*ki)++]->pre != m->e[i].pre) return 0;
  }
  for (int id = 0; id < ids; id++) {
    size_t n;
    nb_synapse_table_outgoing(t, (nb_id_t)id, &n);
    if (n != kout[id]) return 0;
    nb_synapse_table_incoming(t, (nb_id_t)id, &n);
    if (n != kin[id]) return 0;
  }
  return 1;
}

/* Drives a dense and a sparse table and the model through the same random
 * operations on ids < ids; returns nothing (checks record failures). */
static void random_ops(int ids, int steps, unsigned seed) {
  nb_synapse_table_t *d, *s;
  NBT_EQ(nb_synapse_table_new(&d, 1024), 0);
  NBT_EQ(nb_synapse_table_new(&s, 2000), 0);
  NBT_EQ(nb_synapse_table_is_dense(d), 1);
  NBT_EQ(nb_synapse_table_is_dense(s), 0);
  static model_t m;
  memset(&m, 0, sizeof m);
  uint64_t x = seed;
  int mismatches = 0, rc_diff = 0;
  nb_synapse_t tmpl = make_syn(0.5f, 1);
  for (int step = 0; step < steps; step++) {
    x = x * 6364136223846793005ull + 1442695040888963407ull;
    unsigned r = (unsigned)(x >> 33);
    nb_id_t pre = (nb_id_t)(r % ids), post = (nb_id_t)((r >> 12) % ids);
    unsigned op = (r >> 24) % 10;
    if (op < 6) { /* connect or replace */
      float w = (float)((r >> 3) % 1000) / 1000.0f;
      nb_atomic_f32_store(&tmpl.weight, w);
      int rd = nb_synapse_table_connect(d, pre, post, &tmpl);
      int rs = nb_synapse_table_connect(s, pre, post, &tmpl);
      if (rd != rs) rc_diff++;
      if (pre != post && m.n < MODEL_MAX) {
        int i = model_find(&m, pre, post);
        if (i >= 0) {
          m.e[i].w = w;
        } else {
          m.e[m.n].pre = pre;
          m.e[m.n].post = post;
          m.e[m.n].w = w;
          m.e[m.n++].stamp = m.clock++;
        }
      }
    } else if (op < 9) { /* disconnect, often of a live pair */
      if (m.n && op < 8) {
        int i = (int)((r >> 5) % (unsigned)m.n);
        pre = m.e[i].pre;
        post = m.e[i].post;
      }
      int rd = nb_synapse_table_disconnect(d, pre, post);
      int rs = nb_synapse_table_disconnect(s, pre, post);
      if (rd != rs) rc_diff++;
      int i = model_find(&m, pre, post);
      if ((i >= 0) != (rd == 0)) rc_diff++;
      if (i >= 0) model_remove(&m, i);
    } else { /* prune */
      size_t pd = nb_synapse_table_prune(d), ps = nb_synapse_table_prune(s);
      size_t pm = 0;
      for (int i = 0; i < m.n;)
        if (m.e[i].w <= tmpl.stdp.w_min) {
          model_remove(&m, i);
          pm++;
        } else {
          i++;
        }
      if (pd != ps || pd != pm) rc_diff++;
    }
    if (step % 97 == 0 || step == steps - 1) {
      if (!matches_model(d, &m, ids)) mismatches++;
      if (!matches_model(s, &m, ids)) mismatches++;
    }
  }
  NBT_EQ(rc_diff, 0);
  NBT_EQ(mismatches, 0);
  nb_synapse_table_free(d);
  nb_synapse_table_free(s);
}

static void dense_and_sparse_agree_with_a_model(void) {
  random_ops(12, 4000, 1);   /* few ids: many replaces and collisions */
  random_ops(60, 6000, 2);   /* fan-in and fan-out lists grow and shrink */
  random_ops(1000, 6000, 3); /* near the dense limit */
}

static const nbt_test_t tests[] = {
    NBT_TEST(atomic_f32_load_store_add),
    NBT_TEST(atomic_f32_add_clamped_both_ends),
    NBT_TEST(atomic_f32_concurrent_adds_lose_nothing),
    NBT_TEST(stdp_numbers_match_the_rule),
    NBT_TEST(synapse_stdp_steps_and_clamps),
    NBT_TEST(kind_and_priority_filters),
    NBT_TEST(prefix_filter_reads_the_resolved_payload),
    NBT_TEST(custom_filter_asks_the_callback),
    NBT_TEST(synapse_pass_needs_every_filter),
    NBT_TEST(dense_table_basics),
    NBT_TEST(sparse_table_basics),
    NBT_TEST(each_visits_pre_then_connection_order),
    NBT_TEST(pointers_survive_many_inserts),
    NBT_TEST(prune_removes_at_or_below_w_min),
    NBT_TEST(empty_and_huge_id_spaces),
    NBT_TEST(dense_and_sparse_agree_with_a_model),
};

int main(int argc, char **argv) { return NBT_MAIN(argc, argv, tests, NULL); }
