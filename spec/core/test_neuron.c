/* Integrate-and-fire dynamics, pacemakers, and the neuron handle: stamping,
 * sequences, the full axon, large payloads through the arena, the card. */
#include <math.h>

#include "neuronbus.h"
#include "nbtest.h"

/* ---- helpers ---- */

/* A card with just a name; returns it. */
static nb_card_t card_named(const char *name) {
  nb_card_t c;
  memset(&c, 0, sizeof c);
  c.name = name;
  return c;
}

/* Records the ticks (of the test's clock) at which the agent fired. */
typedef struct pace_s {
  uint64_t *now;
  uint64_t fired_at[64];
  size_t nfired;
} pace_t;

/* Notes the current test tick; returns 0. */
static int pace_tick(void *agent, nb_neuron_t *n) {
  pace_t *p = agent;
  if (p->nfired < 64) p->fired_at[p->nfired++] = *p->now;
  return 0;
}

/* Returns a cortex with small axons and the given arena, or NULL. */
static nb_cortex_t *small_cortex(nb_arena_t *arena, uint32_t axon_cap) {
  nb_cortex_opts_t o = nb_cortex_opts_default();
  o.axon_capacity = axon_cap;
  o.arena = arena;
  nb_cortex_t *cx = NULL;
  return nb_cortex_new(&cx, &o) == 0 ? cx : NULL;
}

/* ---- integrate-and-fire ---- */

static void if_defaults_are_the_reference(void) {
  nb_if_params_t p = nb_if_params_default();
  NBT_NEAR(p.threshold, 1.0, 0);
  NBT_NEAR(p.rest, 0.0, 0);
  NBT_NEAR(p.leak, 0.95, 1e-7);
  NBT_EQ(p.refractory, 2);
  NBT_EQ(nb_if_params_check(&p), 0);
  nb_if_t s;
  nb_if_init(&s, NULL);
  NBT_NEAR(s.potential, 0.0, 0);
  NBT_EQ(s.refractory_left, 0);
  NBT_NEAR(s.p.leak, 0.95, 1e-7);
}

static void if_params_are_checked(void) {
  nb_if_params_t p = nb_if_params_default();
  p.leak = 1.5f;
  NBT_EQ(nb_if_params_check(&p), NB_EINVAL);
  p.leak = -0.1f;
  NBT_EQ(nb_if_params_check(&p), NB_EINVAL);
  p.leak = 0.0f;
  NBT_EQ(nb_if_params_check(&p), 0);
  p.leak = 1.0f;
  NBT_EQ(nb_if_params_check(&p), 0);
  p.threshold = NAN;
  NBT_EQ(nb_if_params_check(&p), NB_EINVAL);
  p.threshold = 1.0f;
  p.rest = INFINITY;
  NBT_EQ(nb_if_params_check(&p), NB_EINVAL);
  NBT_EQ(nb_if_params_check(NULL), NB_EINVAL);
}

static void if_leak_numbers(void) {
  nb_if_t s;
  nb_if_init(&s, NULL);
  nb_if_integrate(&s, NB_EXCITATORY, 0.5f);
  NBT_NEAR(s.potential, 0.5, 1e-6);
  NBT_EQ(nb_if_step(&s), 0);
  NBT_NEAR(s.potential, 0.475, 1e-6);
  NBT_EQ(nb_if_step(&s), 0);
  NBT_NEAR(s.potential, 0.45125, 1e-6);
  /* Leak pulls towards rest from either side, with a non-zero rest too. */
  nb_if_params_t p = nb_if_params_default();
  p.rest = 0.5f;
  p.leak = 0.5f;
  nb_if_init(&s, &p);
  nb_if_integrate(&s, NB_INHIBITORY, 0.5f);
  NBT_NEAR(s.potential, 0.0, 1e-6);
  NBT_EQ(nb_if_step(&s), 0);
  NBT_NEAR(s.potential, 0.25, 1e-6);
}

static void if_one_unit_spike_fires_at_once(void) {
  nb_if_t s;
  nb_if_init(&s, NULL);
  nb_if_integrate(&s, NB_EXCITATORY, 1.0f);
  NBT_EQ(nb_if_step(&s), 1);
  NBT_NEAR(s.potential, 0.0, 0);
  NBT_EQ(s.refractory_left, 2);
  /* Two half spikes in one tick add up. */
  nb_if_init(&s, NULL);
  nb_if_integrate(&s, NB_EXCITATORY, 0.5f);
  nb_if_integrate(&s, NB_EXCITATORY, 0.5f);
  NBT_EQ(nb_if_step(&s), 1);
}

static void if_inhibition_is_floored_and_modulation_is_neutral(void) {
  nb_if_t s;
  nb_if_init(&s, NULL);
  nb_if_integrate(&s, NB_INHIBITORY, 5.0f);
  NBT_NEAR(s.potential, -1.0, 1e-6);
  nb_if_integrate(&s, NB_INHIBITORY, 5.0f);
  NBT_NEAR(s.potential, -1.0, 1e-6);
  nb_if_integrate(&s, NB_MODULATORY, 5.0f);
  NBT_NEAR(s.potential, -1.0, 1e-6);
  nb_if_params_t p = nb_if_params_default();
  p.rest = 2.0f;
  p.threshold = 3.0f;
  nb_if_init(&s, &p);
  nb_if_integrate(&s, NB_INHIBITORY, 10.0f);
  NBT_NEAR(s.potential, 1.0, 1e-6);
  nb_if_integrate(&s, NB_EXCITATORY, 0.25f);
  NBT_NEAR(s.potential, 1.25, 1e-6);
}

/* Threshold 0 fires on every tick it is not refractory: every N+1 ticks. */
static void pacemaker_fires_every_n_plus_one_ticks(void) {
  for (uint32_t n = 0; n <= 3; n++) {
    nb_cortex_t *cx = small_cortex(NULL, 16);
    NBT_CHECK(cx != NULL);
    if (!cx) return;
    uint64_t now = 0;
    pace_t pace = {.now = &now};
    nb_agent_ops_t ops = {.tick = pace_tick};
    nb_if_params_t p = nb_if_params_default();
    p.threshold = 0.0f;
    p.refractory = n;
    nb_card_t c = card_named("pace");
    NBT_EQ(nb_cortex_register(cx, &c, &p, &ops, &pace, NULL), 0);
    for (now = 1; now <= 24; now++) nb_cortex_tick(cx);
    NBT_EQ(pace.nfired, 24 / (n + 1));
    for (size_t i = 0; i < pace.nfired; i++)
      NBT_EQ(pace.fired_at[i], 1 + i * (n + 1));
    NBT_EQ(nb_neuron_stats(nb_cortex_neuron(cx, 0))->fires, pace.nfired);
    nb_cortex_free(cx);
  }
}

/* ---- the handle ---- */

/* Fires one spike with every form of the handle and checks the stamps. */
static void handle_stamps_source_sequence_and_time(void) {
  nb_cortex_t *cx = small_cortex(NULL, 64);
  NBT_CHECK(cx != NULL);
  if (!cx) return;
  nb_card_t a = card_named("a"), b = card_named("b");
  nb_neuron_t *na, *nb;
  NBT_EQ(nb_cortex_register(cx, &a, NULL, NULL, NULL, &na), 0);
  NBT_EQ(nb_cortex_register(cx, &b, NULL, NULL, NULL, &nb), 0);
  NBT_EQ(nb_neuron_id(nb), 1);
  nb_axon_reader_t *r;
  NBT_EQ(nb_axon_reader_attach(nb_neuron_axon(nb), &r), 0);

  nb_spike_t s;
  nb_spike_init(&s, 0, NB_INHIBITORY, 9);
  s.source = 77;   /* overwritten */
  s.sequence = 99; /* overwritten */
  NBT_EQ(nb_neuron_fire(nb, &s), 0);
  NBT_EQ(s.source, 1);
  NBT_EQ(s.sequence, 0);
  NBT_CHECK(s.timestamp_ns != 0);
  NBT_EQ(nb_neuron_fire_to(nb, 0, "hi", 2), 0);
  NBT_EQ(nb_neuron_broadcast(nb, "all", 3), 0);
  NBT_EQ(nb_neuron_fire_ex(nb, 0, NB_MODULATORY, 200, "x", 1), 0);
  /* A bad kind is refused before any sequence is consumed. */
  NBT_EQ(nb_neuron_fire_ex(nb, 0, (nb_kind_t)3, 0, NULL, 0), NB_EINVAL);
  NBT_EQ(nb_neuron_fire_ex(nb, 0, NB_EXCITATORY, 0, NULL, 4), NB_EINVAL);
  NBT_EQ(nb_neuron_fire_to(nb, 0, NULL, 0), 0);

  nb_spike_t got[8];
  uint64_t last_ts = 0;
  size_t n = 0;
  while (n < 8 && nb_axon_try_read(r, &got[n], NULL) == 0) n++;
  NBT_EQ(n, 5);
  for (size_t i = 0; i < n; i++) {
    NBT_EQ(got[i].source, 1);
    NBT_EQ(got[i].sequence, i);
    NBT_CHECK(got[i].timestamp_ns >= last_ts);
    last_ts = got[i].timestamp_ns;
  }
  NBT_CHECK(memcmp(&got[0], &s, sizeof s) == 0);
  NBT_EQ(nb_spike_kind(&got[0]), NB_INHIBITORY);
  NBT_EQ(got[0].priority, 9);
  NBT_EQ(got[1].target, 0);
  NBT_EQ(nb_spike_kind(&got[1]), NB_EXCITATORY);
  NBT_EQ(got[1].priority, 0);
  NBT_EQ(nb_spike_inline_len(&got[1]), 2);
  NBT_CHECK(memcmp(got[1].payload, "hi", 2) == 0);
  NBT_EQ(got[2].target, NB_BROADCAST);
  NBT_EQ(nb_spike_inline_len(&got[2]), 3);
  NBT_EQ(nb_spike_kind(&got[3]), NB_MODULATORY);
  NBT_EQ(got[3].priority, 200);
  NBT_EQ(nb_spike_inline_len(&got[4]), 0);
  NBT_EQ(nb_neuron_stats(nb)->spikes_out, 5);
  NBT_EQ(nb_neuron_stats(na)->spikes_out, 0);
  nb_axon_reader_detach(r);
  nb_cortex_free(cx);
}

/* fire_ex writes the slot byte for byte as nb_spike_init and
 * nb_spike_set_payload would build it, for every inline length (each size
 * class of its small copy) and kind. */
static void fire_ex_slot_equals_the_built_spike(void) {
  nb_cortex_t *cx = small_cortex(NULL, 64);
  NBT_CHECK(cx != NULL);
  if (!cx) return;
  nb_card_t a = card_named("a");
  nb_neuron_t *na;
  NBT_EQ(nb_cortex_register(cx, &a, NULL, NULL, NULL, &na), 0);
  nb_axon_reader_t *r;
  NBT_EQ(nb_axon_reader_attach(nb_neuron_axon(na), &r), 0);
  uint8_t data[NB_PAYLOAD_MAX];
  for (size_t i = 0; i < sizeof data; i++) data[i] = (uint8_t)(0xA0 + i);
  int same = 1;
  for (size_t len = 0; len <= NB_PAYLOAD_MAX; len++) {
    nb_kind_t kind = (nb_kind_t)(len % 3);
    const uint8_t *src = len ? data + (NB_PAYLOAD_MAX - len) : NULL;
    NBT_EQ(nb_neuron_fire_ex(na, (nb_id_t)(len + 1), kind, (uint8_t)len, src,
                             len), 0);
    nb_spike_t got, want;
    NBT_EQ(nb_axon_try_read(r, &got, NULL), 0);
    nb_spike_init(&want, (nb_id_t)(len + 1), kind, (uint8_t)len);
    nb_spike_set_payload(&want, src, len);
    want.source = got.source;
    want.sequence = got.sequence;
    want.timestamp_ns = got.timestamp_ns;
    same &= memcmp(&got, &want, sizeof got) == 0 && got.sequence == len;
  }
  NBT_CHECK(same);
  nb_axon_reader_detach(r);
  nb_cortex_free(cx);
}

/* A full axon refuses without consuming the sequence; draining frees it. */
static void handle_full_axon_keeps_the_sequence(void) {
  nb_cortex_t *cx = small_cortex(NULL, 4);
  NBT_CHECK(cx != NULL);
  if (!cx) return;
  nb_card_t a = card_named("a");
  nb_neuron_t *na;
  NBT_EQ(nb_cortex_register(cx, &a, NULL, NULL, NULL, &na), 0);
  for (int i = 0; i < 4; i++) NBT_EQ(nb_neuron_fire_to(na, 0, NULL, 0), 0);
  nb_spike_t s;
  nb_spike_init(&s, 0, NB_EXCITATORY, 0);
  NBT_EQ(nb_neuron_fire(na, &s), NB_EFULL);
  NBT_EQ(s.source, 0);
  NBT_EQ(s.timestamp_ns, 0); /* untouched */
  NBT_EQ(nb_neuron_fire_to(na, 0, "x", 1), NB_EFULL);
  NBT_EQ(nb_neuron_stats(na)->full, 2);
  NBT_EQ(nb_neuron_stats(na)->spikes_out, 4);
  nb_cortex_tick(cx); /* the cortex drains the axon into a's own inbox */
  nb_axon_reader_t *r;
  NBT_EQ(nb_axon_reader_attach(nb_neuron_axon(na), &r), 0);
  NBT_EQ(nb_neuron_fire(na, &s), 0);
  NBT_EQ(s.sequence, 4);
  nb_axon_reader_detach(r);
  nb_cortex_free(cx);
}

/* A hand-built spike with a malformed meta byte (an inline length of 47..62,
 * kind 3, or the arena length without the ref marker) is refused before it
 * reaches the axon: otherwise the cortex would hand agents a payload length
 * that runs past the 64-byte spike. */
static void handle_refuses_a_malformed_spike(void) {
  nb_cortex_t *cx = small_cortex(NULL, 4);
  NBT_CHECK(cx != NULL);
  if (!cx) return;
  nb_card_t a = card_named("a");
  nb_neuron_t *na;
  NBT_EQ(nb_cortex_register(cx, &a, NULL, NULL, NULL, &na), 0);
  nb_spike_t s;
  nb_spike_init(&s, 0, NB_EXCITATORY, 0);
  s.meta = (uint8_t)(50u << 2); /* inline length 50 */
  NBT_EQ(nb_neuron_fire(na, &s), NB_EINVAL);
  s.meta = 3; /* kind 3 */
  NBT_EQ(nb_neuron_fire(na, &s), NB_EINVAL);
  s.meta = (uint8_t)(NB_LEN_ARENA << 2); /* ref length, no marker */
  NBT_EQ(nb_neuron_fire(na, &s), NB_EINVAL);
  NBT_EQ(nb_axon_published(nb_neuron_axon(na)), 0);
  NBT_EQ(nb_neuron_stats(na)->spikes_out, 0);
  NBT_EQ(s.timestamp_ns, 0); /* untouched */
  nb_spike_init(&s, 0, NB_EXCITATORY, 0);
  NBT_EQ(nb_neuron_fire(na, &s), 0);
  NBT_EQ(s.sequence, 0); /* the refusals consumed no sequence */
  /* The accessor keeps its documented range whatever the byte says. */
  s.meta = (uint8_t)(62u << 2);
  NBT_CHECK(nb_spike_inline_len(&s) <= NB_PAYLOAD_MAX);
  nb_cortex_free(cx);
}

/* Receives a large payload and checks it byte for byte. */
typedef struct big_s {
  const uint8_t *expect;
  size_t len;
  int ok, seen, stale;
} big_t;

/* Resolves each delivered payload through the arena; returns 0. */
static int big_on_spike(void *agent, nb_neuron_t *n, const nb_spike_t *s,
                        float w) {
  big_t *b = agent;
  const void *data;
  size_t len;
  b->seen++;
  int rc = nb_neuron_payload(n, s, &data, &len);
  if (rc == NB_ESTALE) b->stale++;
  if (rc == 0 && nb_spike_is_ref(s) && len == b->len &&
      memcmp(data, b->expect, len) == 0)
    b->ok++;
  return 0;
}

static void handle_large_payload_goes_through_the_arena(void) {
  nb_arena_t *arena;
  NBT_EQ(nb_arena_new(&arena, 1 << 16), 0);
  nb_cortex_t *cx = small_cortex(arena, 16);
  NBT_CHECK(cx != NULL);
  if (!cx) return;
  NBT_CHECK(nb_cortex_arena(cx) == arena);
  uint8_t big[300];
  for (size_t i = 0; i < sizeof big; i++) big[i] = (uint8_t)(i * 7 + 1);
  big_t rx = {.expect = big, .len = sizeof big};
  nb_agent_ops_t ops = {.on_spike = big_on_spike};
  nb_card_t a = card_named("a"), b = card_named("b");
  nb_neuron_t *na, *nbn;
  NBT_EQ(nb_cortex_register(cx, &a, NULL, NULL, NULL, &na), 0);
  nb_if_params_t quick = nb_if_params_default();
  quick.refractory = 0; /* receives on every tick */
  NBT_EQ(nb_cortex_register(cx, &b, &quick, &ops, &rx, &nbn), 0);
  /* 46 bytes stay inline, 47 go to the arena (through the neuron's own
   * writer, which takes a segment on first use). */
  nb_arena_stats_t st;
  nb_arena_stats(arena, &st);
  uint32_t free0 = st.free;
  NBT_EQ(nb_neuron_fire_to(na, 1, big, 46), 0);
  nb_arena_stats(arena, &st);
  NBT_EQ(st.free, free0);
  NBT_EQ(nb_neuron_fire_to(na, 1, big, sizeof big), 0);
  nb_arena_stats(arena, &st);
  NBT_EQ(st.free, free0 - 1);
  NBT_EQ(st.active, 1);
  nb_cortex_tick(cx);
  NBT_EQ(rx.seen, 2);
  NBT_EQ(rx.ok, 1);
  /* A reference whose segment was freed reads as stale in the handler. */
  nb_arena_writer_t *w;
  nb_arena_ref_t ref;
  NBT_EQ(nb_arena_writer_new(&w, arena), 0);
  NBT_EQ(nb_arena_write(w, big, sizeof big, &ref), 0);
  NBT_EQ(nb_arena_release(arena, &ref, 1), 0);
  nb_arena_writer_free(w);
  nb_spike_t old;
  nb_spike_init(&old, 1, NB_EXCITATORY, 0);
  NBT_EQ(nb_spike_set_ref(&old, &ref), 0);
  NBT_EQ(nb_neuron_fire(na, &old), 0);
  nb_cortex_tick(cx);
  NBT_EQ(rx.seen, 3);
  NBT_EQ(rx.stale, 1);
  NBT_EQ(rx.ok, 1);
  /* Without an arena a large payload has nowhere to go. */
  nb_cortex_t *bare = small_cortex(NULL, 16);
  nb_neuron_t *lone;
  NBT_EQ(nb_cortex_register(bare, &a, NULL, NULL, NULL, &lone), 0);
  NBT_EQ(nb_neuron_fire_to(lone, 0, big, 47), NB_ENOSPACE);
  NBT_EQ(nb_neuron_stats(lone)->spikes_out, 0);
  NBT_EQ(nb_neuron_fire_to(lone, 0, big, 46), 0);
  nb_axon_reader_t *r;
  NBT_EQ(nb_axon_reader_attach(nb_neuron_axon(lone), &r), 0);
  nb_spike_t s;
  nb_spike_init(&s, 0, NB_EXCITATORY, 0);
  NBT_EQ(nb_neuron_fire(lone, &s), 0);
  NBT_EQ(s.sequence, 1); /* the refused fire consumed nothing */
  nb_axon_reader_detach(r);
  nb_cortex_free(bare);
  nb_cortex_free(cx);
  nb_arena_free(arena);
}

static void card_is_an_owned_copy(void) {
  nb_cortex_t *cx = small_cortex(NULL, 16);
  NBT_CHECK(cx != NULL);
  if (!cx) return;
  char name[16] = "translator", cap[16] = "translate", reg[32] = "cortex/lang";
  nb_card_t c = card_named(name);
  c.capabilities[0] = cap;
  c.capabilities[1] = "summarize";
  c.ncapabilities = 2;
  c.regions[0] = reg;
  c.nregions = 1;
  c.version = 3;
  c.id = 999; /* ignored: the cortex assigns ids */
  int agent_cookie = 5;
  nb_neuron_t *n;
  NBT_EQ(nb_cortex_register(cx, &c, NULL, NULL, &agent_cookie, &n), 0);
  strcpy(name, "changed");
  strcpy(cap, "changed");
  strcpy(reg, "changed");
  const nb_card_t *k = nb_neuron_card(n);
  NBT_CHECK(strcmp(nb_neuron_name(n), "translator") == 0);
  NBT_CHECK(strcmp(k->capabilities[0], "translate") == 0);
  NBT_CHECK(strcmp(k->capabilities[1], "summarize") == 0);
  NBT_CHECK(strcmp(k->regions[0], "cortex/lang") == 0);
  NBT_EQ(k->ncapabilities, 2);
  NBT_EQ(k->nregions, 1);
  NBT_EQ(k->id, 0);
  NBT_EQ(k->version, 3);
  nb_neuron_set_version(n, 4);
  NBT_EQ(nb_neuron_card(n)->version, 4);
  NBT_CHECK(nb_neuron_agent(n) == &agent_cookie);
  NBT_CHECK(nb_cortex_find(cx, "translator") == n);
  NBT_CHECK(nb_cortex_find(cx, "changed") == NULL);
  NBT_NEAR(nb_neuron_if(n)->p.threshold, 1.0, 0);
  nb_cortex_free(cx);
}

static const nbt_test_t tests[] = {
    NBT_TEST(if_defaults_are_the_reference),
    NBT_TEST(if_params_are_checked),
    NBT_TEST(if_leak_numbers),
    NBT_TEST(if_one_unit_spike_fires_at_once),
    NBT_TEST(if_inhibition_is_floored_and_modulation_is_neutral),
    NBT_TEST(pacemaker_fires_every_n_plus_one_ticks),
    NBT_TEST(handle_stamps_source_sequence_and_time),
    NBT_TEST(fire_ex_slot_equals_the_built_spike),
    NBT_TEST(handle_full_axon_keeps_the_sequence),
    NBT_TEST(handle_refuses_a_malformed_spike),
    NBT_TEST(handle_large_payload_goes_through_the_arena),
    NBT_TEST(card_is_an_owned_copy),
};

int main(int argc, char **argv) { return NBT_MAIN(argc, argv, tests, NULL); }
