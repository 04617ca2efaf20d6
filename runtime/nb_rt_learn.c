/* nb_rt_learn.c: synapses in agents' hands. nb:connect, nb:disconnect
 * (through nb_rt_syn_connect / nb_rt_syn_disconnect) queue a change; the
 * runtime applies the queue between ticks (nb__rt_apply_synapse_changes, on the
 * loop thread, while no worker ticks: the cortex's topology may change
 * only then), so a change takes effect from the next tick. nb:weight reads
 * a weight with a relaxed atomic load. Agents on several worker threads
 * may queue at once: the queue has a mutex. */
#include "nb_rt_internal.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

/* One queued change: a connect (with its synapse) or a disconnect. */
typedef struct change_s {
  int connect;
  nb_id_t pre, post;
  float weight;
  int has_stdp;
  nb_stdp_t stdp;
  nb_filter_t filters[NB_FILTERS_MAX];
  size_t nfilters;
} change_t;

struct nb__learn_s {
  pthread_mutex_t mu;
  change_t *q;
  size_t n, cap;
  _Atomic int pending; /* n > 0: lets the apply skip the lock every tick */
  uint8_t *rewire; /* rewire[id]: may change other neurons' synapses */
  uint32_t nrewire;
  uint64_t connected, disconnected, refused;
};

/* Returns rt's learning state (made by nb__learn_rt_init when the runtime
 * is created; NULL only after nb__learn_rt_free). */
static nb__learn_t *learn_of(nb_rt_t *rt) { return rt->learn; }

int nb__learn_rt_init(nb_rt_t *rt) {
  if (rt->learn) return 0;
  nb__learn_t *l = calloc(1, sizeof *l);
  if (!l) return NB_ENOMEM;
  pthread_mutex_init(&l->mu, NULL);
  rt->learn = l;
  return 0;
}

void nb__learn_rt_free(nb_rt_t *rt) {
  nb__learn_t *l = rt->learn;
  if (!l) return;
  pthread_mutex_destroy(&l->mu);
  free(l->q);
  free(l->rewire);
  free(l);
  rt->learn = NULL;
}

int nb__learn_set_rewire(nb_rt_t *rt, uint32_t id, int on) {
  nb__learn_t *l = learn_of(rt);
  if (!l) return NB_EINVAL;
  if (id >= l->nrewire) {
    uint32_t n = id + 1;
    uint8_t *p = realloc(l->rewire, n);
    if (!p) return NB_ENOMEM;
    memset(p + l->nrewire, 0, n - l->nrewire);
    l->rewire = p;
    l->nrewire = n;
  }
  l->rewire[id] = on != 0;
  return 0;
}

/* Returns the pre id of a request from the cell's neuron (from -1 = its
 * own), or a negative error: NB_ENOENT, NB_EPERM. */
static int pre_of(const nb_rt_cell_t *cell, int32_t from) {
  nb_rt_t *rt = cell->rt;
  if (from < 0 || (uint32_t)from == cell->id) return (int)cell->id;
  if ((uint32_t)from >= nb_cortex_count(rt->cx)) return NB_ENOENT;
  nb__learn_t *l = learn_of(rt);
  if (!l || cell->id >= l->nrewire || !l->rewire[cell->id]) return NB_EPERM;
  return from;
}

/* Appends c to the queue; returns 0 or NB_ENOMEM. */
static int enqueue(nb__learn_t *l, const change_t *c) {
  int rc = 0;
  pthread_mutex_lock(&l->mu);
  if (l->n == l->cap) {
    size_t cap = l->cap ? l->cap * 2 : 16;
    change_t *q = realloc(l->q, cap * sizeof *q);
    if (!q) {
      rc = NB_ENOMEM;
      goto out;
    }
    l->q = q;
    l->cap = cap;
  }
  l->q[l->n++] = *c;
  /* Relaxed: an apply that sees it takes the mutex, which orders the
   * queue; the apply runs while no worker ticks, after the hold that
   * synchronizes with every worker thread, so it cannot miss a change
   * queued before the pause. */
  atomic_store_explicit(&l->pending, 1, memory_order_relaxed);
out:
  pthread_mutex_unlock(&l->mu);
  return rc;
}

/* Fills c's filters from o; returns 0 or NB_EINVAL. */
static int read_filters(change_t *c, const nb_rt_syn_opts_t *o) {
  c->nfilters = 0;
  if (o->kinds) {
    if (o->kinds > 7) return NB_EINVAL;
    c->filters[c->nfilters++] = nb_filter_kind((uint8_t)o->kinds);
  }
  if (o->min_priority >= 0) {
    if (o->min_priority > 255) return NB_EINVAL;
    c->filters[c->nfilters++] = nb_filter_priority((uint8_t)o->min_priority);
  }
  if (o->prefix) {
    nb_filter_t f = nb_filter_prefix(o->prefix, o->prefix_len);
    if (f.type == 0 || o->prefix_len == 0) return NB_EINVAL;
    c->filters[c->nfilters++] = f;
  }
  if (o->custom) {
    nb_filter_t f = nb_filter_custom(o->custom);
    if (f.type == 0 || !o->custom[0]) return NB_EINVAL;
    c->filters[c->nfilters++] = f;
  }
  return 0;
}

int nb_rt_syn_connect(nb_rt_cell_t *cell, int32_t from, uint32_t to,
                      const nb_rt_syn_opts_t *o) {
  nb_rt_t *rt = cell->rt;
  nb__learn_t *l = learn_of(rt);
  if (!l || !o) return NB_EINVAL;
  int pre = pre_of(cell, from);
  if (pre < 0) return pre;
  if (to >= nb_cortex_count(rt->cx)) return NB_ENOENT;
  if ((uint32_t)pre == to || !isfinite(o->weight)) return NB_EINVAL;
  change_t c;
  memset(&c, 0, sizeof c);
  c.connect = 1;
  c.pre = (nb_id_t)pre;
  c.post = (nb_id_t)to;
  c.weight = (float)o->weight;
  if (read_filters(&c, o) != 0) return NB_EINVAL;
  if (o->mode >= 0) {
    c.has_stdp = 1;
    nb_stdp_t *s = &c.stdp;
    *s = nb_stdp_default();
    s->mode = (uint8_t)(o->mode > 255 ? 255 : o->mode);
    s->a_plus = (float)o->a_plus;
    s->a_minus = (float)o->a_minus;
    s->tau_plus_ms = (float)o->tau_plus_ms;
    s->tau_minus_ms = (float)o->tau_minus_ms;
    s->w_min = (float)o->w_min;
    s->w_max = (float)o->w_max;
    s->lambda = (float)o->lambda;
    s->alpha = (float)o->alpha;
    s->mu_plus = (float)o->mu_plus;
    s->mu_minus = (float)o->mu_minus;
    s->tau_c_ms = (float)o->tau_c_ms;
    s->tau_n_ms = (float)o->tau_n_ms;
    s->baseline = (float)o->baseline;
    if (nb_stdp_check(s) != 0) return NB_EINVAL;
  }
  return enqueue(l, &c);
}

/* Returns 1 when the queue's last word on pre -> post is a connect, 0 a
 * disconnect, -1 none (the caller holds the mutex). */
static int queued(const nb__learn_t *l, nb_id_t pre, nb_id_t post) {
  for (size_t i = l->n; i-- > 0;)
    if (l->q[i].pre == pre && l->q[i].post == post) return l->q[i].connect;
  return -1;
}

int nb_rt_syn_disconnect(nb_rt_cell_t *cell, int32_t from, uint32_t to) {
  nb_rt_t *rt = cell->rt;
  nb__learn_t *l = learn_of(rt);
  if (!l) return NB_EINVAL;
  int pre = pre_of(cell, from);
  if (pre < 0) return pre;
  if (to >= nb_cortex_count(rt->cx)) return NB_ENOENT;
  pthread_mutex_lock(&l->mu);
  int q = queued(l, (nb_id_t)pre, (nb_id_t)to);
  pthread_mutex_unlock(&l->mu);
  /* The table only changes between ticks, so this read is safe here. */
  int exists = q >= 0 ? q : nb_synapse_table_get(nb_cortex_synapses(rt->cx),
                                                 (nb_id_t)pre,
                                                 (nb_id_t)to) != NULL;
  if (!exists) return NB_ENOENT;
  change_t c;
  memset(&c, 0, sizeof c);
  c.pre = (nb_id_t)pre;
  c.post = (nb_id_t)to;
  return enqueue(l, &c);
}

double nb_rt_syn_weight(const nb_rt_cell_t *cell, int32_t from,
                        uint32_t to) {
  return nb_rt_weight(cell->rt, from < 0 ? cell->id : (uint32_t)from, to);
}

void nb__rt_apply_synapse_changes(nb_rt_t *rt) {
  nb__learn_t *l = learn_of(rt);
  if (!l || !atomic_load_explicit(&l->pending, memory_order_relaxed)) return;
  pthread_mutex_lock(&l->mu);
  atomic_store_explicit(&l->pending, 0, memory_order_relaxed);
  size_t n = l->n;
  change_t *q = l->q;
  /* Taken out of the queue first: nothing queues while no worker ticks,
   * but an agent's on_stop might, from this thread. */
  l->q = NULL;
  l->n = l->cap = 0;
  pthread_mutex_unlock(&l->mu);
  for (size_t i = 0; i < n; i++) {
    change_t *c = &q[i];
    int rc = c->connect
                 ? nb_cortex_connect(rt->cx, c->pre, c->post, c->weight,
                                     c->filters, c->nfilters,
                                     c->has_stdp ? &c->stdp : NULL)
                 : nb_synapse_table_disconnect(nb_cortex_synapses(rt->cx),
                                               c->pre, c->post);
    if (rc != 0) {
      /* A disconnect of a pair removed meanwhile, or no memory. */
      l->refused++;
    } else if (c->connect) {
      l->connected++;
    } else {
      l->disconnected++;
    }
  }
  free(q);
}

void nb__learn_counts(const nb_rt_t *rt, uint64_t out[3]) {
  const nb__learn_t *l = rt->learn;
  out[0] = l ? l->connected : 0;
  out[1] = l ? l->disconnected : 0;
  out[2] = l ? l->refused : 0;
}

void nb_rt_learn_stats(const nb_rt_t *rt, uint64_t out[4]) {
  out[0] = nb_cortex_stats(rt->cx)->rewards;
  nb__learn_counts(rt, out + 1);
}
