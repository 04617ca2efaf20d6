/* nb_synapse.c: atomic f32 weights, the STDP rule, dendritic filters, and
 * the synapse table.
 *
 * Table storage: every synapse is its own heap object, so a pointer handed
 * out stays valid until that synapse is disconnected or pruned, whatever
 * else is inserted. Lookup by (pre, post) goes through a dense index array
 * (max_neurons^2 uint32 into a pool of synapse pointers) up to
 * NB_SYNAPSE_DENSE_MAX neurons, and through an open-addressing hash keyed on
 * (pre << 16) | post beyond. Both keep per-neuron outgoing and incoming
 * vectors in connection order, so broadcast and STDP visit only the
 * synapses that exist. Id NB_BROADCAST is never a neuron. */
#include "nb_synapse.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "nb_err.h"

/* ---- atomic f32 ---- */

/* Returns the float whose bit pattern is bits (memcpy: no type punning). */
static float f32_from_bits(uint32_t bits) {
  float f;
  memcpy(&f, &bits, sizeof f);
  return f;
}

/* Returns the bit pattern of f. */
static uint32_t f32_to_bits(float f) {
  uint32_t bits;
  memcpy(&bits, &f, sizeof bits);
  return bits;
}

/* All weight accesses are relaxed: the weight is a number read on its own,
 * never a flag that publishes other data, and approximate is fine. */
float nb_atomic_f32_load(const nb_atomic_f32_t *a) {
  uint32_t bits = atomic_load_explicit(&a->bits, memory_order_relaxed);
  return f32_from_bits(bits);
}

void nb_atomic_f32_store(nb_atomic_f32_t *a, float v) {
  atomic_store_explicit(&a->bits, f32_to_bits(v), memory_order_relaxed);
}

float nb_atomic_f32_fetch_add(nb_atomic_f32_t *a, float delta) {
  uint32_t old = atomic_load_explicit(&a->bits, memory_order_relaxed);
  while (!atomic_compare_exchange_weak_explicit(
      &a->bits, &old, f32_to_bits(f32_from_bits(old) + delta),
      memory_order_relaxed, memory_order_relaxed)) {
  }
  return f32_from_bits(old);
}

/* Returns old + delta clamped to [lo, hi]; a NaN sum keeps old (or lo when
 * old itself is NaN), so one bad delta cannot poison a weight. */
static float clamp_sum(float old, float delta, float lo, float hi) {
  float x = old + delta;
  if (isnan(x)) x = isnan(old) ? lo : old;
  if (x < lo) x = lo;
  if (x > hi) x = hi;
  return x;
}

float nb_atomic_f32_add_clamped(nb_atomic_f32_t *a, float delta, float lo,
                                float hi) {
  uint32_t old = atomic_load_explicit(&a->bits, memory_order_relaxed);
  float x;
  do {
    x = clamp_sum(f32_from_bits(old), delta, lo, hi);
  } while (!atomic_compare_exchange_weak_explicit(
      &a->bits, &old, f32_to_bits(x), memory_order_relaxed,
      memory_order_relaxed));
  return x;
}

/* ---- STDP ---- */

nb_stdp_t nb_stdp_default(void) {
  return (nb_stdp_t){.a_plus = (float)NB_STDP_DEFAULT_A_PLUS,
                     .a_minus = (float)NB_STDP_DEFAULT_A_MINUS,
                     .tau_plus_ms = (float)NB_STDP_DEFAULT_TAU_PLUS_MS,
                     .tau_minus_ms = (float)NB_STDP_DEFAULT_TAU_MINUS_MS,
                     .w_min = (float)NB_STDP_DEFAULT_W_MIN,
                     .w_max = (float)NB_STDP_DEFAULT_W_MAX,
                     .mode = NB_STDP_PAIR,
                     .lambda = (float)NB_STDP_DEFAULT_LAMBDA,
                     .alpha = (float)NB_STDP_DEFAULT_ALPHA,
                     .mu_plus = (float)NB_STDP_DEFAULT_MU_PLUS,
                     .mu_minus = (float)NB_STDP_DEFAULT_MU_MINUS,
                     .tau_c_ms = (float)NB_STDP_DEFAULT_TAU_C_MS,
                     .tau_n_ms = (float)NB_STDP_DEFAULT_TAU_N_MS,
                     .baseline = (float)NB_STDP_DEFAULT_BASELINE};
}

int nb_stdp_check(const nb_stdp_t *p) {
  if (!isfinite(p->a_plus) || !isfinite(p->a_minus) ||
      !isfinite(p->tau_plus_ms) || !isfinite(p->tau_minus_ms) ||
      !isfinite(p->w_min) || !isfinite(p->w_max))
    return NB_EINVAL;
  if (p->tau_plus_ms <= 0 || p->tau_minus_ms <= 0 || p->w_min > p->w_max)
    return NB_EINVAL;
  if (p->mode > NB_STDP_REWARD) return NB_EINVAL;
  if (p->mode == NB_STDP_PAIR) return 0; /* the fields below are unused */
  if (!isfinite(p->lambda) || !isfinite(p->alpha) || !isfinite(p->mu_plus) ||
      !isfinite(p->mu_minus) || !isfinite(p->tau_c_ms) ||
      !isfinite(p->tau_n_ms) || !isfinite(p->baseline))
    return NB_EINVAL;
  /* TRACE divides by w_max; REWARD divides by both time constants. */
  if (p->lambda < 0 || p->alpha < 0 || p->mu_plus < 0 || p->mu_minus < 0 ||
      p->w_max <= 0 || p->tau_c_ms <= 0 || p->tau_n_ms <= 0)
    return NB_EINVAL;
  return 0;
}

float nb_stdp_delta(const nb_stdp_t *p, int64_t dt_ns) {
  /* Double precision: dt in ns can exceed float's exact integer range. */
  double dt_ms = (double)dt_ns / 1e6;
  /* A non-positive time constant has no meaningful decay: no learning. */
  if (dt_ns > 0) {
    if (!(p->tau_plus_ms > 0.0f)) return 0.0f;
    return (float)((double)p->a_plus * exp(-dt_ms / (double)p->tau_plus_ms));
  }
  if (dt_ns < 0) {
    if (!(p->tau_minus_ms > 0.0f)) return 0.0f;
    return (float)(-(double)p->a_minus * exp(dt_ms / (double)p->tau_minus_ms));
  }
  return 0.0f;
}

/* ---- dendritic filters ---- */

nb_filter_t nb_filter_kind(uint8_t kinds_mask) {
  nb_filter_t f;
  memset(&f, 0, sizeof f);
  f.type = NB_FILTER_KIND;
  f.kinds = kinds_mask;
  return f;
}

nb_filter_t nb_filter_priority(uint8_t min_priority) {
  nb_filter_t f;
  memset(&f, 0, sizeof f);
  f.type = NB_FILTER_PRIORITY;
  f.min_priority = min_priority;
  return f;
}

nb_filter_t nb_filter_prefix(const void *prefix, size_t len) {
  nb_filter_t f;
  memset(&f, 0, sizeof f);
  if (len > NB_FILTER_PREFIX_MAX || (len && !prefix)) return f; /* type 0 */
  f.type = NB_FILTER_PREFIX;
  f.prefix_len = (uint8_t)len;
  if (len) memcpy(f.prefix, prefix, len);
  return f;
}

nb_filter_t nb_filter_custom(const char *name) {
  nb_filter_t f;
  memset(&f, 0, sizeof f);
  /* Truncating would silently name another filter, so refuse instead. */
  if (!name) return f;
  size_t n = strlen(name);
  if (n >= NB_FILTER_NAME_MAX) return f; /* type 0 */
  f.type = NB_FILTER_CUSTOM;
  memcpy(f.name, name, n + 1);
  return f;
}

int nb_filter_pass(const nb_filter_t *f, nb_id_t target, const nb_spike_t *s,
                   const void *payload, size_t len, nb_custom_filter_fn fn,
                   void *ctx) {
  switch (f->type) {
  case NB_FILTER_KIND:
    return (f->kinds >> nb_spike_kind(s)) & 1u;
  case NB_FILTER_PRIORITY:
    return s->priority >= f->min_priority;
  case NB_FILTER_PREFIX:
    if (f->prefix_len > NB_FILTER_PREFIX_MAX || len < f->prefix_len) return 0;
    return f->prefix_len == 0 || memcmp(payload, f->prefix, f->prefix_len) == 0;
  case NB_FILTER_CUSTOM:
    return fn ? fn(ctx, target, f->name, s, payload, len) != 0 : 0;
  default:
    /* An invalid (type 0) filter fails closed rather than letting all in. */
    return 0;
  }
}

/* ---- synapse ---- */

int nb_synapse_pass(const nb_synapse_t *syn, const nb_spike_t *s,
                    const void *payload, size_t len, nb_custom_filter_fn fn,
                    void *ctx) {
  if (syn->nfilters > NB_FILTERS_MAX) return 0; /* corrupt: fail closed */
  for (unsigned i = 0; i < syn->nfilters; i++)
    if (!nb_filter_pass(&syn->filters[i], syn->post, s, payload, len, fn, ctx))
      return 0;
  return 1;
}

float nb_synapse_stdp(nb_synapse_t *syn, int64_t dt_ns) {
  if (!syn->stdp_on) return nb_atomic_f32_load(&syn->weight);
  return nb_atomic_f32_add_clamped(&syn->weight,
                                   nb_stdp_delta(&syn->stdp, dt_ns),
                                   syn->stdp.w_min, syn->stdp.w_max);
}

/* ---- trace and reward modes ---- */

/* Returns a trace worth k at t0_ns, decayed to t_ns with tau_ms (k itself
 * when t_ns is not later). */
static double decay(double k, uint64_t t0_ns, uint64_t t_ns, double tau_ms) {
  if (t_ns <= t0_ns) return k;
  return k * exp(-(double)(t_ns - t0_ns) / 1e6 / tau_ms);
}

/* Stores w clamped to syn's bounds; returns it. One writer (the post
 * neuron's worker), so a plain store suffices. */
static float store_weight(nb_synapse_t *syn, double w) {
  if (isnan(w)) w = nb_atomic_f32_load(&syn->weight);
  if (w < syn->stdp.w_min) w = syn->stdp.w_min;
  if (w > syn->stdp.w_max) w = syn->stdp.w_max;
  nb_atomic_f32_store(&syn->weight, (float)w);
  return (float)w;
}

/* Returns x^mu for x in [0, 1], the two common exponents without pow()
 * (additive mu = 0, multiplicative mu = 1: a pow call per spike was most
 * of the TRACE mode's cost). */
static double power(double x, double mu) {
  if (mu == 1.0) return x;
  if (mu == 0.0) return 1.0;
  return pow(x, mu);
}

/* TRACE potentiation by pre trace kp (NEST stdp_synapse's facilitate:
 * w/Wmax + lambda * (1 - w/Wmax)^mu_plus * kp, at most 1); returns the new
 * weight. */
static float facilitate(nb_synapse_t *syn, double kp) {
  const nb_stdp_t *p = &syn->stdp;
  double wmax = p->w_max, x = nb_atomic_f32_load(&syn->weight) / wmax;
  x += p->lambda * power(1.0 - x, p->mu_plus) * kp;
  return store_weight(syn, (x < 1.0 ? x : 1.0) * wmax);
}

/* TRACE depression by post trace km (NEST's depress: w/Wmax - alpha *
 * lambda * (w/Wmax)^mu_minus * km, at least 0); returns the new weight. */
static float depress(nb_synapse_t *syn, double km) {
  const nb_stdp_t *p = &syn->stdp;
  double wmax = p->w_max, x = nb_atomic_f32_load(&syn->weight) / wmax;
  x -= p->alpha * p->lambda * power(x, p->mu_minus) * km;
  return store_weight(syn, (x > 0.0 ? x : 0.0) * wmax);
}

/* REWARD: integrates dw/dt = c (n - b) from t_update_ns to t_ns with c and
 * n decaying (NEST stdp_dopamine_synapse's update_weight_, exact for
 * piecewise exponential c and n), then decays c and n to t_ns; returns
 * nothing. A time not after the last update changes nothing. */
static void reward_advance(nb_synapse_t *syn, uint64_t t_ns) {
  nb_stdp_state_t *st = &syn->st;
  if (st->t_update_ns == 0 || t_ns <= st->t_update_ns) {
    if (st->t_update_ns == 0) st->t_update_ns = t_ns;
    return;
  }
  const nb_stdp_t *p = &syn->stdp;
  double tc = p->tau_c_ms, tn = p->tau_n_ms;
  double minus_dt = -(double)(t_ns - st->t_update_ns) / 1e6; /* ms, < 0 */
  if (st->c != 0.0) {
    double taus = (tc + tn) / (tc * tn);
    double w = nb_atomic_f32_load(&syn->weight);
    w -= st->c * (st->n / taus * expm1(taus * minus_dt) -
                  p->baseline * tc * expm1(minus_dt / tc));
    store_weight(syn, w);
  }
  st->c *= exp(minus_dt / tc);
  st->n *= exp(minus_dt / tn);
  st->t_update_ns = t_ns;
}

float nb_synapse_on_pre(nb_synapse_t *syn, uint64_t t_pre_ns) {
  nb_stdp_state_t *st = &syn->st;
  const nb_stdp_t *p = &syn->stdp;
  uint64_t last_pre =
      atomic_load_explicit(&syn->last_pre_ns, memory_order_relaxed);
  atomic_store_explicit(&syn->last_pre_ns, t_pre_ns, memory_order_relaxed);
  if (!syn->stdp_on || p->mode == NB_STDP_PAIR) {
    if (syn->stdp_on && st->t_post_ns)
      return nb_synapse_stdp(syn, (int64_t)(st->t_post_ns - t_pre_ns));
    return nb_atomic_f32_load(&syn->weight);
  }
  int reward = p->mode == NB_STDP_REWARD;
  if (reward) reward_advance(syn, t_pre_ns);
  /* The post trace at t_pre: the spikes before it only. A post spike
   * already seen but fired after this pre spike (routed late) pairs with
   * it the other way round, as a potentiation. */
  double km = 0.0, kp_late = 0.0;
  if (st->t_post_ns && st->t_post_ns > t_pre_ns) {
    km = st->k_minus_prev *
         exp((double)(st->t_post_ns - t_pre_ns) / 1e6 / p->tau_minus_ms);
    kp_late = exp(-(double)(st->t_post_ns - t_pre_ns) / 1e6 / p->tau_plus_ms);
  } else if (st->t_post_ns && st->t_post_ns < t_pre_ns) {
    /* Spikes fired together share a time: one exp for the lot. */
    if (st->km_at_ns != t_pre_ns || st->km_post_ns != st->t_post_ns) {
      st->km = decay(st->k_minus, st->t_post_ns, t_pre_ns, p->tau_minus_ms);
      st->km_at_ns = t_pre_ns;
      st->km_post_ns = st->t_post_ns;
    }
    km = st->km;
  }
  if (reward) {
    st->c += p->a_plus * kp_late - p->a_minus * km;
  } else {
    if (kp_late > 0.0) facilitate(syn, kp_late);
    if (km > 0.0) depress(syn, km);
  }
  /* The pre trace, kept at the latest pre spike (a late one counts from
   * its own time as the older spikes do). */
  if (last_pre && t_pre_ns >= last_pre)
    st->k_plus = decay(st->k_plus, last_pre, t_pre_ns, p->tau_plus_ms) + 1.0;
  else if (last_pre)
    st->k_plus += decay(1.0, t_pre_ns, last_pre, p->tau_plus_ms);
  else
    st->k_plus = 1.0;
  if (last_pre > t_pre_ns)
    atomic_store_explicit(&syn->last_pre_ns, last_pre, memory_order_relaxed);
  return nb_atomic_f32_load(&syn->weight);
}

float nb_synapse_on_post(nb_synapse_t *syn, uint64_t t_ns) {
  nb_stdp_state_t *st = &syn->st;
  const nb_stdp_t *p = &syn->stdp;
  if (!syn->stdp_on) return nb_atomic_f32_load(&syn->weight);
  if (p->mode == NB_STDP_PAIR) {
    st->t_post_ns = t_ns;
    uint64_t t_pre =
        atomic_load_explicit(&syn->last_pre_ns, memory_order_relaxed);
    if (t_pre) return nb_synapse_stdp(syn, (int64_t)(t_ns - t_pre));
    return nb_atomic_f32_load(&syn->weight);
  }
  int reward = p->mode == NB_STDP_REWARD;
  if (reward) reward_advance(syn, t_ns);
  uint64_t t_pre =
      atomic_load_explicit(&syn->last_pre_ns, memory_order_relaxed);
  /* Pre and post at the same instant do not pair (as in NEST). */
  if (t_pre && t_pre < t_ns) {
    double kp = decay(st->k_plus, t_pre, t_ns, p->tau_plus_ms);
    if (reward)
      st->c += p->a_plus * kp;
    else
      facilitate(syn, kp);
  }
  st->k_minus_prev =
      st->t_post_ns ? decay(st->k_minus, st->t_post_ns, t_ns, p->tau_minus_ms)
                    : 0.0;
  st->k_minus = st->k_minus_prev + 1.0;
  if (t_ns > st->t_post_ns) st->t_post_ns = t_ns;
  return nb_atomic_f32_load(&syn->weight);
}

float nb_synapse_on_reward(nb_synapse_t *syn, uint64_t t_ns, double r) {
  if (!syn->stdp_on || syn->stdp.mode != NB_STDP_REWARD || !isfinite(r))
    return nb_atomic_f32_load(&syn->weight);
  reward_advance(syn, t_ns);
  syn->st.n += r / syn->stdp.tau_n_ms;
  return nb_atomic_f32_load(&syn->weight);
}

float nb_synapse_settle(nb_synapse_t *syn, uint64_t t_ns) {
  if (syn->stdp_on && syn->stdp.mode == NB_STDP_REWARD)
    reward_advance(syn, t_ns);
  return nb_atomic_f32_load(&syn->weight);
}

double nb_synapse_eligibility(const nb_synapse_t *syn) { return syn->st.c; }

/* ---- table ---- */

/* A growable vector of synapse pointers, in insertion order. */
typedef struct synvec_s {
  nb_synapse_t **items;
  uint32_t len, cap;
} synvec_t;

/* One open-addressing bucket; syn NULL marks it empty. */
typedef struct bucket_s {
  uint32_t key;
  nb_synapse_t *syn;
} bucket_t;

struct nb_synapse_table_s {
  uint32_t max;        /* ids below this are valid */
  int dense;
  size_t count;
  synvec_t *out;   /* out[pre]: outgoing in connection order */
  synvec_t *in;    /* in[post]: incoming in connection order */
  /* dense */
  uint32_t *index;     /* index[pre * max + post]: pool slot + 1, 0 = none */
  nb_synapse_t **pool;
  uint32_t pool_len, pool_cap;
  uint32_t *free_slots; /* pool slots emptied by removals, reused first */
  uint32_t nfree, free_cap;
  /* sparse */
  bucket_t *buckets;
  size_t nbuckets;     /* power of two */
};

/* Ensures v has room for one more item; returns 0 or NB_ENOMEM. */
static int vec_reserve(synvec_t *v) {
  if (v->len < v->cap) return 0;
  uint32_t cap = v->cap ? v->cap * 2 : 4;
  nb_synapse_t **p = realloc(v->items, (size_t)cap * sizeof *p);
  if (!p) return NB_ENOMEM;
  v->items = p;
  v->cap = cap;
  return 0;
}

/* Removes syn from v keeping the order of the rest; returns nothing. */
static void vec_remove(synvec_t *v, const nb_synapse_t *syn) {
  for (uint32_t i = 0; i < v->len; i++) {
    if (v->items[i] == syn) {
      memmove(&v->items[i], &v->items[i + 1],
              (size_t)(v->len - i - 1) * sizeof *v->items);
      v->len--;
      return;
    }
  }
}

/* Returns the hash key of a pair. */
static uint32_t pair_key(nb_id_t pre, nb_id_t post) {
  return ((uint32_t)pre << 16) | post;
}

/* Returns the home bucket of key. The murmur3 finaliser mixes every key
 * bit into the low bits we mask, so pairs sharing a post (equal low key
 * bits) do not pile up in one run. */
static size_t home_slot(const nb_synapse_table_t *t, uint32_t key) {
  key ^= key >> 16;
  key *= 0x85ebca6bu;
  key ^= key >> 13;
  key *= 0xc2b2ae35u;
  key ^= key >> 16;
  return (size_t)key & (t->nbuckets - 1);
}

/* Returns the bucket index holding key, or the empty bucket that ends its
 * probe sequence. */
static size_t probe_slot(const nb_synapse_table_t *t, uint32_t key) {
  size_t mask = t->nbuckets - 1, i = home_slot(t, key);
  while (t->buckets[i].syn && t->buckets[i].key != key) i = (i + 1) & mask;
  return i;
}

/* Doubles the bucket array when one more entry would pass half load;
 * returns 0 or NB_ENOMEM (the table is unchanged then). */
static int hash_reserve(nb_synapse_table_t *t) {
  if ((t->count + 1) * 2 <= t->nbuckets) return 0;
  size_t n = t->nbuckets * 2;
  bucket_t *nb = calloc(n, sizeof *nb), *old = t->buckets;
  if (!nb) return NB_ENOMEM;
  size_t oldn = t->nbuckets;
  t->buckets = nb;
  t->nbuckets = n;
  for (size_t i = 0; i < oldn; i++)
    if (old[i].syn) t->buckets[probe_slot(t, old[i].key)] = old[i];
  free(old);
  return 0;
}

/* Empties bucket i with backward-shift deletion, so no tombstones build up
 * and probe sequences stay short; returns nothing. */
static void hash_erase(nb_synapse_table_t *t, size_t i) {
  size_t mask = t->nbuckets - 1, j = i;
  for (;;) {
    j = (j + 1) & mask;
    if (!t->buckets[j].syn) break;
    size_t k = home_slot(t, t->buckets[j].key);
    /* Entry j may fill the hole at i unless its home lies cyclically in
     * (i, j], where moving it would put it before its home. */
    int stays = i <= j ? (i < k && k <= j) : (i < k || k <= j);
    if (stays) continue;
    t->buckets[i] = t->buckets[j];
    i = j;
  }
  t->buckets[i].syn = NULL;
  t->buckets[i].key = 0;
}

int nb_synapse_table_new(nb_synapse_table_t **out, uint32_t max_neurons) {
  if (!out) return NB_EINVAL;
  *out = NULL;
  /* Ids are 16 bits and NB_BROADCAST is not a neuron. */
  if (max_neurons > NB_BROADCAST) max_neurons = NB_BROADCAST;
  nb_synapse_table_t *t = calloc(1, sizeof *t);
  if (!t) return NB_ENOMEM;
  t->max = max_neurons;
  t->dense = max_neurons <= NB_SYNAPSE_DENSE_MAX;
  size_t n = max_neurons ? max_neurons : 1;
  t->out = calloc(n, sizeof *t->out);
  t->in = calloc(n, sizeof *t->in);
  if (!t->out || !t->in) goto nomem;
  if (t->dense) {
    /* calloc gets lazily zeroed pages: untouched rows cost no memory. */
    t->index = calloc(n * n, sizeof *t->index);
    if (!t->index) goto nomem;
  } else {
    t->nbuckets = 64;
    t->buckets = calloc(t->nbuckets, sizeof *t->buckets);
    if (!t->buckets) goto nomem;
  }
  *out = t;
  return 0;
nomem:
  nb_synapse_table_free(t);
  return NB_ENOMEM;
}

void nb_synapse_table_free(nb_synapse_table_t *t) {
  if (!t) return;
  if (t->out) {
    for (uint32_t i = 0; i < t->max; i++) {
      for (uint32_t j = 0; j < t->out[i].len; j++) free(t->out[i].items[j]);
      free(t->out[i].items);
    }
  }
  if (t->in)
    for (uint32_t i = 0; i < t->max; i++) free(t->in[i].items);
  free(t->out);
  free(t->in);
  free(t->index);
  free(t->pool);
  free(t->free_slots);
  free(t->buckets);
  free(t);
}

int nb_synapse_table_is_dense(const nb_synapse_table_t *t) { return t->dense; }

/* Returns 1 when pre->post is a valid pair of distinct neuron ids. */
static int pair_ok(const nb_synapse_table_t *t, nb_id_t pre, nb_id_t post) {
  return pre < t->max && post < t->max && pre != post;
}

nb_synapse_t *nb_synapse_table_get(const nb_synapse_table_t *t, nb_id_t pre,
                                   nb_id_t post) {
  if (pre >= t->max || post >= t->max) return NULL;
  if (t->dense) {
    uint32_t slot = t->index[(size_t)pre * t->max + post];
    return slot ? t->pool[slot - 1] : NULL;
  }
  return t->buckets[probe_slot(t, pair_key(pre, post))].syn;
}

/* Copies src's settings into dst (a live synapse) with pre and post set;
 * returns nothing. Atomics are copied by value, field by field, since a
 * struct copy of atomic members is not an atomic access. */
static void synapse_assign(nb_synapse_t *dst, const nb_synapse_t *src,
                           nb_id_t pre, nb_id_t post) {
  dst->pre = pre;
  dst->post = post;
  dst->stdp_on = src->stdp_on;
  dst->nfilters = src->nfilters;
  dst->stdp = src->stdp;
  memcpy(dst->filters, src->filters, sizeof dst->filters);
  dst->st = src->st;
  nb_atomic_f32_store(&dst->weight, nb_atomic_f32_load(&src->weight));
  /* Relaxed: timestamps are approximate, as the seed's table says. */
  atomic_store_explicit(
      &dst->last_pre_ns,
      atomic_load_explicit(&src->last_pre_ns, memory_order_relaxed),
      memory_order_relaxed);
}

/* Reserves room for one more synapse in the lookup structure; returns 0 or
 * NB_ENOMEM (with nothing changed that a reader could notice). */
static int index_reserve(nb_synapse_table_t *t) {
  if (!t->dense) return hash_reserve(t);
  if (t->nfree || t->pool_len < t->pool_cap) return 0;
  uint32_t cap = t->pool_cap ? t->pool_cap * 2 : 16;
  nb_synapse_t **p = realloc(t->pool, (size_t)cap * sizeof *p);
  if (!p) return NB_ENOMEM;
  t->pool = p;
  t->pool_cap = cap;
  return 0;
}

/* Records syn under (pre, post) after index_reserve; returns nothing. */
static void index_insert(nb_synapse_table_t *t, nb_synapse_t *syn) {
  if (t->dense) {
    uint32_t slot = t->nfree ? t->free_slots[--t->nfree] : t->pool_len++;
    t->pool[slot] = syn;
    t->index[(size_t)syn->pre * t->max + syn->post] = slot + 1;
    return;
  }
  size_t i = probe_slot(t, pair_key(syn->pre, syn->post));
  t->buckets[i].key = pair_key(syn->pre, syn->post);
  t->buckets[i].syn = syn;
}

/* Forgets (pre, post) in the lookup structure; returns nothing. The free
 * list was sized when the pool slot was created, so this cannot fail. */
static void index_erase(nb_synapse_table_t *t, nb_id_t pre, nb_id_t post) {
  if (t->dense) {
    uint32_t *cell = &t->index[(size_t)pre * t->max + post];
    t->pool[*cell - 1] = NULL;
    t->free_slots[t->nfree++] = *cell - 1;
    *cell = 0;
    return;
  }
  hash_erase(t, probe_slot(t, pair_key(pre, post)));
}

/* Makes the free list able to hold every pool slot; returns 0 or
 * NB_ENOMEM. Called before a new pool slot is taken, so erase never has to
 * allocate. */
static int free_reserve(nb_synapse_table_t *t) {
  if (!t->dense || t->free_cap >= t->pool_cap) return 0;
  uint32_t *p = realloc(t->free_slots, (size_t)t->pool_cap * sizeof *p);
  if (!p) return NB_ENOMEM;
  t->free_slots = p;
  t->free_cap = t->pool_cap;
  return 0;
}

int nb_synapse_table_connect(nb_synapse_table_t *t, nb_id_t pre, nb_id_t post,
                             const nb_synapse_t *syn) {
  if (!t || !syn || !pair_ok(t, pre, post)) return NB_EINVAL;
  if (syn->nfilters > NB_FILTERS_MAX) return NB_EINVAL;
  nb_synapse_t *old = nb_synapse_table_get(t, pre, post);
  if (old) {
    /* Replacing in place keeps earlier pointers and the list order. */
    synapse_assign(old, syn, pre, post);
    return 0;
  }
  /* Reserve everything first so a failure leaves the table untouched. */
  if (vec_reserve(&t->out[pre]) || vec_reserve(&t->in[post]) ||
      index_reserve(t) || free_reserve(t))
    return NB_ENOMEM;
  nb_synapse_t *s = malloc(sizeof *s);
  if (!s) return NB_ENOMEM;
  memset(s, 0, sizeof *s);
  atomic_init(&s->weight.bits, 0);
  atomic_init(&s->last_pre_ns, 0);
  synapse_assign(s, syn, pre, post);
  index_insert(t, s);
  t->out[pre].items[t->out[pre].len++] = s;
  t->in[post].items[t->in[post].len++] = s;
  t->count++;
  return 0;
}

int nb_synapse_table_disconnect(nb_synapse_table_t *t, nb_id_t pre,
                                nb_id_t post) {
  nb_synapse_t *s = nb_synapse_table_get(t, pre, post);
  if (!s) return NB_ENOENT;
  index_erase(t, pre, post);
  vec_remove(&t->out[pre], s);
  vec_remove(&t->in[post], s);
  free(s);
  t->count--;
  return 0;
}

nb_synapse_t *const *nb_synapse_table_outgoing(const nb_synapse_table_t *t,
                                               nb_id_t pre, size_t *n) {
  if (pre >= t->max) {
    *n = 0;
    return NULL;
  }
  *n = t->out[pre].len;
  return t->out[pre].items;
}

nb_synapse_t *const *nb_synapse_table_incoming(const nb_synapse_table_t *t,
                                               nb_id_t post, size_t *n) {
  if (post >= t->max) {
    *n = 0;
    return NULL;
  }
  *n = t->in[post].len;
  return t->in[post].items;
}

size_t nb_synapse_table_prune(nb_synapse_table_t *t) {
  size_t removed = 0;
  for (uint32_t pre = 0; pre < t->max; pre++) {
    synvec_t *v = &t->out[pre];
    uint32_t w = 0;
    /* Compact in place so the survivors keep their connection order. */
    for (uint32_t r = 0; r < v->len; r++) {
      nb_synapse_t *s = v->items[r];
      if (nb_atomic_f32_load(&s->weight) <= s->stdp.w_min) {
        index_erase(t, s->pre, s->post);
        vec_remove(&t->in[s->post], s);
        free(s);
        removed++;
      } else {
        v->items[w++] = s;
      }
    }
    v->len = w;
  }
  t->count -= removed;
  return removed;
}

size_t nb_synapse_table_count(const nb_synapse_table_t *t) { return t->count; }

void nb_synapse_table_each(const nb_synapse_table_t *t,
                           void (*fn)(void *ctx, const nb_synapse_t *s),
                           void *ctx) {
  for (uint32_t pre = 0; pre < t->max; pre++)
    for (uint32_t i = 0; i < t->out[pre].len; i++)
      fn(ctx, t->out[pre].items[i]);
}
