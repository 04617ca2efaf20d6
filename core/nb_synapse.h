/* nb_synapse.h: adaptive connections (STDP), dendritic filters, and the
 * table that stores them.
 *
 * Concurrency contract: weights are atomic (CAS on the f32 bits, relaxed:
 * approximate weights are fine); the table itself is owned by one thread
 * (the cortex) and is not safe for concurrent insert/remove. */
#ifndef NB_SYNAPSE_H
#define NB_SYNAPSE_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "nb_spike.h"

#define NB_SYNAPSE_DENSE_MAX 1024 /* dense table up to this many neurons */
/* BEGIN CONSTANTS: copied into lua/neuronbus/layout.lua */
#define NB_FILTERS_MAX 4          /* filters per synapse (all must pass) */
#define NB_FILTER_PREFIX_MAX 16
#define NB_FILTER_NAME_MAX 32
/* END CONSTANTS */

/* ---- atomic f32 ---- */

typedef struct nb_atomic_f32_s {
  _Atomic uint32_t bits;
} nb_atomic_f32_t;

/* Returns the current value (relaxed). */
float nb_atomic_f32_load(const nb_atomic_f32_t *a);
/* Stores v (relaxed). */
void nb_atomic_f32_store(nb_atomic_f32_t *a, float v);
/* Adds delta with a CAS loop; returns the previous value. */
float nb_atomic_f32_fetch_add(nb_atomic_f32_t *a, float delta);
/* Adds delta and clamps the result to [lo, hi] in one CAS loop; returns the
 * new value. */
float nb_atomic_f32_add_clamped(nb_atomic_f32_t *a, float delta, float lo,
                                float hi);

/* ---- STDP ----
 *
 * Three learning rules (docs/learning.md has the equations):
 *  - PAIR: the nearest pre/post pair, additive: a_plus * exp(-dt/tau_plus)
 *    or -a_minus * exp(dt/tau_minus), applied at once.
 *  - TRACE: NEST's stdp_synapse, all-to-all pairing through a pre trace
 *    (tau_plus) and a post trace (tau_minus); lambda, alpha, mu_plus and
 *    mu_minus on the weight normalised by w_max (mu 0 additive, 1
 *    multiplicative).
 *  - REWARD: NEST's stdp_dopamine_synapse (Izhikevich 2007): the same
 *    traces feed an eligibility c (a_plus, a_minus, decaying with tau_c);
 *    a reward r (a modulatory spike into the post neuron) adds r / tau_n to
 *    a reward trace n (decaying with tau_n); the weight follows
 *    dw/dt = c * (n - baseline), integrated exactly between events. */

/* BEGIN CONSTANTS: copied into lua/neuronbus/layout.lua */
#define NB_STDP_PAIR 0
#define NB_STDP_TRACE 1
#define NB_STDP_REWARD 2
#define NB_STDP_DEFAULT_A_PLUS 0.01
#define NB_STDP_DEFAULT_A_MINUS 0.012
#define NB_STDP_DEFAULT_TAU_PLUS_MS 20.0
#define NB_STDP_DEFAULT_TAU_MINUS_MS 20.0
#define NB_STDP_DEFAULT_W_MIN 0.001
#define NB_STDP_DEFAULT_W_MAX 1.0
#define NB_STDP_DEFAULT_LAMBDA 0.01
#define NB_STDP_DEFAULT_ALPHA 1.0
#define NB_STDP_DEFAULT_MU_PLUS 1.0
#define NB_STDP_DEFAULT_MU_MINUS 1.0
#define NB_STDP_DEFAULT_TAU_C_MS 1000.0
#define NB_STDP_DEFAULT_TAU_N_MS 200.0
#define NB_STDP_DEFAULT_BASELINE 0.0
/* END CONSTANTS */

typedef struct nb_stdp_s {
  float a_plus;      /* PAIR, REWARD: potentiation amplitude, 0.01 */
  float a_minus;     /* PAIR, REWARD: depression amplitude, 0.012 */
  float tau_plus_ms; /* pre trace time constant, 20 */
  float tau_minus_ms;/* post trace time constant, 20 */
  float w_min;       /* lower weight bound, 0.001 */
  float w_max;       /* upper weight bound, 1.0 */
  uint8_t mode;      /* NB_STDP_PAIR (default), _TRACE or _REWARD */
  float lambda;      /* TRACE: learning rate, 0.01 */
  float alpha;       /* TRACE: depression / potentiation ratio, 1 */
  float mu_plus;     /* TRACE: potentiation exponent (0 additive), 1 */
  float mu_minus;    /* TRACE: depression exponent (0 additive), 1 */
  float tau_c_ms;    /* REWARD: eligibility time constant, 1000 */
  float tau_n_ms;    /* REWARD: reward trace time constant, 200 */
  float baseline;    /* REWARD: reward level that changes nothing, 0 */
} nb_stdp_t;

/* Returns the defaults above. */
nb_stdp_t nb_stdp_default(void);

/* Returns 0 when p is usable: finite numbers, time constants > 0, w_min <=
 * w_max, a known mode, and in TRACE / REWARD mode lambda, alpha and mu >=
 * 0 and w_max > 0; else NB_EINVAL. */
int nb_stdp_check(const nb_stdp_t *p);

/* Returns the weight change for dt_ns = t_post - t_pre: a_plus *
 * exp(-dt/tau_plus) when dt > 0 (pre before post), -a_minus *
 * exp(dt/tau_minus) when dt < 0, and 0 when dt == 0. */
float nb_stdp_delta(const nb_stdp_t *p, int64_t dt_ns);

/* ---- dendritic filters ---- */

typedef enum nb_filter_type_e {
  NB_FILTER_KIND = 1,     /* pass when the spike's kind bit is in kinds */
  NB_FILTER_PRIORITY = 2, /* pass when priority >= min_priority */
  NB_FILTER_PREFIX = 3,   /* pass when the payload starts with prefix */
  NB_FILTER_CUSTOM = 4    /* ask the embedder's callback by name */
} nb_filter_type_t;

typedef struct nb_filter_s {
  nb_filter_type_t type;
  uint8_t kinds;        /* KIND: bit (1 << kind) per allowed kind */
  uint8_t min_priority; /* PRIORITY */
  uint8_t prefix_len;   /* PREFIX */
  uint8_t prefix[NB_FILTER_PREFIX_MAX];
  char name[NB_FILTER_NAME_MAX]; /* CUSTOM */
} nb_filter_t;

/* Builders; each returns a filled filter. prefix_len above 16 is an error
 * reported by nb_filter_prefix returning a filter with type 0; likewise a
 * NULL custom name or one of 32 bytes or more. A type-0 filter passes
 * nothing. */
nb_filter_t nb_filter_kind(uint8_t kinds_mask);
nb_filter_t nb_filter_priority(uint8_t min_priority);
nb_filter_t nb_filter_prefix(const void *prefix, size_t len);
nb_filter_t nb_filter_custom(const char *name);

/* Evaluates a custom filter: returns nonzero to pass. ctx is the embedder's,
 * target is the post-synaptic neuron. */
typedef int (*nb_custom_filter_fn)(void *ctx, nb_id_t target,
                                   const char *name, const nb_spike_t *s,
                                   const void *payload, size_t len);

/* Returns nonzero when s passes f. payload/len is the resolved payload
 * (inline or arena); custom filters call fn(ctx, ...), and with fn NULL a
 * custom filter passes nothing. */
int nb_filter_pass(const nb_filter_t *f, nb_id_t target, const nb_spike_t *s,
                   const void *payload, size_t len, nb_custom_filter_fn fn,
                   void *ctx);

/* ---- synapse ---- */

/* The learning state of a TRACE or REWARD synapse. Written only by the
 * worker of the post neuron (as every synapse write is), read between
 * ticks. */
typedef struct nb_stdp_state_s {
  double k_plus;        /* pre trace just after the last pre spike */
  double k_minus;       /* post trace just after the last post spike */
  double k_minus_prev;  /* post trace just before it */
  uint64_t t_post_ns;   /* the last post spike, 0 = none */
  double c;             /* REWARD: eligibility at t_update_ns */
  double n;             /* REWARD: reward trace at t_update_ns */
  uint64_t t_update_ns; /* REWARD: when w, c and n were brought up to date */
  double km;            /* the post trace at km_at_ns, the last post spike
                         * being km_post_ns (a cache) */
  uint64_t km_at_ns, km_post_ns;
} nb_stdp_state_t;

typedef struct nb_synapse_s {
  nb_id_t pre, post;
  uint8_t stdp_on;
  uint8_t nfilters;
  nb_atomic_f32_t weight;
  nb_stdp_t stdp;
  _Atomic uint64_t last_pre_ns; /* last spike through it, 0 = none */
  /* Spikes it carried into post's inbox and spikes its filters stopped:
   * written (relaxed) only by the thread that routes into post, read
   * anywhere for the statistics. */
  _Atomic uint64_t carried, filtered;
  nb_filter_t filters[NB_FILTERS_MAX];
  nb_stdp_state_t st;
} nb_synapse_t;

/* Returns nonzero when s passes every filter of syn (see nb_filter_pass). */
int nb_synapse_pass(const nb_synapse_t *syn, const nb_spike_t *s,
                    const void *payload, size_t len, nb_custom_filter_fn fn,
                    void *ctx);

/* Applies one STDP step for dt_ns = t_post - t_pre (no-op when stdp is
 * off), clamping to [w_min, w_max]; returns the new weight. */
float nb_synapse_stdp(nb_synapse_t *syn, int64_t dt_ns);

/* The three events a learning synapse sees, in any mode (each a no-op
 * with STDP off; PAIR ignores rewards). t_ns is the spike clock's time of
 * the event; events may arrive slightly out of order (a pre spike is
 * routed after its post neuron fired in the same tick): a pre spike older
 * than the last post spike pairs with that post spike as it would have.
 * Each returns the new weight. */
/* A spike fired at t_pre_ns passes the synapse. */
float nb_synapse_on_pre(nb_synapse_t *syn, uint64_t t_pre_ns);
/* The post neuron fires at t_ns. */
float nb_synapse_on_post(nb_synapse_t *syn, uint64_t t_ns);
/* A reward r reaches the post neuron at t_ns (REWARD mode). */
float nb_synapse_on_reward(nb_synapse_t *syn, uint64_t t_ns, double r);
/* Brings a REWARD synapse's weight, eligibility and reward trace up to
 * t_ns without an event (the weight keeps moving while c * (n - baseline)
 * is not 0); no-op in other modes. */
float nb_synapse_settle(nb_synapse_t *syn, uint64_t t_ns);

/* Returns the eligibility of a REWARD synapse at its last update. */
double nb_synapse_eligibility(const nb_synapse_t *syn);

/* ---- table ---- */

typedef struct nb_synapse_table_s nb_synapse_table_t;

/* Creates a table for ids below max_neurons: dense (O(1) index array) when
 * max_neurons <= 1024, sparse (hash) beyond; returns 0 or NB_ENOMEM. */
int nb_synapse_table_new(nb_synapse_table_t **out, uint32_t max_neurons);
void nb_synapse_table_free(nb_synapse_table_t *t);

/* Returns 1 when the table is dense, 0 when sparse. */
int nb_synapse_table_is_dense(const nb_synapse_table_t *t);

/* Adds or replaces the synapse pre->post (copied from *syn, with pre/post
 * taken from the arguments); returns 0, NB_EINVAL for ids out of range or
 * pre == post, NB_ENOMEM. Pointers returned earlier stay valid. */
int nb_synapse_table_connect(nb_synapse_table_t *t, nb_id_t pre, nb_id_t post,
                             const nb_synapse_t *syn);

/* Returns the synapse pre->post, or NULL. O(1). */
nb_synapse_t *nb_synapse_table_get(const nb_synapse_table_t *t, nb_id_t pre,
                                   nb_id_t post);

/* Removes pre->post; returns 0 or NB_ENOENT. */
int nb_synapse_table_disconnect(nb_synapse_table_t *t, nb_id_t pre,
                                nb_id_t post);

/* Returns the outgoing synapses of pre in connection order (stable: used
 * for broadcast, never scanning all pairs); *n gets the count. */
nb_synapse_t *const *nb_synapse_table_outgoing(const nb_synapse_table_t *t,
                                               nb_id_t pre, size_t *n);

/* Returns the incoming synapses of post (for STDP on fire); *n the count. */
nb_synapse_t *const *nb_synapse_table_incoming(const nb_synapse_table_t *t,
                                               nb_id_t post, size_t *n);

/* Removes every synapse whose weight is at or below its w_min; returns the
 * number removed. */
size_t nb_synapse_table_prune(nb_synapse_table_t *t);

/* Returns the number of synapses. */
size_t nb_synapse_table_count(const nb_synapse_table_t *t);

/* Calls fn for every synapse in (pre, then connection) order. */
void nb_synapse_table_each(const nb_synapse_table_t *t,
                           void (*fn)(void *ctx, const nb_synapse_t *s),
                           void *ctx);

#endif
