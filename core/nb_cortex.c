/* nb_cortex.c: registration, discovery, topology and the tick that routes
 * spikes from axons into inboxes and delivers inboxes to agents.
 *
 * The tick allocates nothing: inboxes, the injection ring and the scratch
 * array used by broadcast are sized when the cortex or a neuron is made. */
#include "nb_cortex.h"

#include <math.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "nb__neuron_internal.h"
#include "nb__wring_internal.h"
#include "nb_clock.h"
#include "nb_err.h"

/* ---- string index: name, capability or region path -> ids ----
 *
 * Open addressing with linear probing. Each entry owns a copy of its key,
 * so an entry left behind by a failed registration never points into a
 * freed card. Ids are appended in registration order, which is id order,
 * so every answer comes out sorted. An entry whose list is empty is treated
 * as absent (that is how a failed registration is undone). */

typedef struct ix_entry_s {
  char *key; /* owned copy, NUL-terminated; NULL = free slot */
  uint32_t len;
  uint32_t hash;
  uint32_t n, cap;
  nb_id_t *ids;
} ix_entry_t;

typedef struct ix_s {
  ix_entry_t *slots;
  uint32_t mask; /* slot count - 1 (0 with no slots) */
  uint32_t used;
} ix_t;

/* Returns the FNV-1a hash of len bytes at key. */
static uint32_t ix_hash(const char *key, size_t len) {
  uint32_t h = 2166136261u;
  for (size_t i = 0; i < len; i++) {
    h ^= (uint8_t)key[i];
    h *= 16777619u;
  }
  return h;
}

/* Returns the entry for key, or NULL when there is none. */
static ix_entry_t *ix_lookup(const ix_t *ix, const char *key, size_t len) {
  if (!ix->slots) return NULL;
  uint32_t h = ix_hash(key, len);
  for (uint32_t i = h & ix->mask;; i = (i + 1) & ix->mask) {
    ix_entry_t *e = &ix->slots[i];
    if (!e->key) return NULL;
    if (e->hash == h && e->len == len && memcmp(e->key, key, len) == 0)
      return e;
  }
}

/* Doubles the slot array (64 at first) and rehashes; returns 0 or
 * NB_ENOMEM. */
static int ix_grow(ix_t *ix) {
  uint32_t ncap = ix->slots ? (ix->mask + 1) * 2 : 64;
  ix_entry_t *ns = calloc(ncap, sizeof *ns);
  if (!ns) return NB_ENOMEM;
  if (ix->slots) {
    for (uint32_t i = 0; i <= ix->mask; i++) {
      ix_entry_t *e = &ix->slots[i];
      if (!e->key) continue;
      uint32_t j = e->hash & (ncap - 1);
      while (ns[j].key) j = (j + 1) & (ncap - 1);
      ns[j] = *e;
    }
  }
  free(ix->slots);
  ix->slots = ns;
  ix->mask = ncap - 1;
  return 0;
}

/* Appends id to key's list (creating the entry), skipping it when it is
 * already the last id; returns 0 or NB_ENOMEM. */
static int ix_add(ix_t *ix, const char *key, size_t len, nb_id_t id) {
  ix_entry_t *e = ix_lookup(ix, key, len);
  if (!e) {
    /* Half full at most, so probes stay short and one slot is always
     * free, which ends every probe loop. */
    if (!ix->slots || (ix->used + 1) * 2 > ix->mask + 1) {
      if (ix_grow(ix) != 0) return NB_ENOMEM;
    }
    char *copy = malloc(len + 1);
    if (!copy) return NB_ENOMEM;
    memcpy(copy, key, len);
    copy[len] = 0;
    uint32_t h = ix_hash(key, len);
    uint32_t i = h & ix->mask;
    while (ix->slots[i].key) i = (i + 1) & ix->mask;
    e = &ix->slots[i];
    e->key = copy;
    e->len = (uint32_t)len;
    e->hash = h;
    ix->used++;
  }
  if (e->n && e->ids[e->n - 1] == id) return 0;
  if (e->n == e->cap) {
    uint32_t ncap = e->cap ? e->cap * 2 : 4;
    nb_id_t *ids = realloc(e->ids, ncap * sizeof *ids);
    if (!ids) return NB_ENOMEM;
    e->ids = ids;
    e->cap = ncap;
  }
  e->ids[e->n++] = id;
  return 0;
}

/* Removes id from key's list when it is the last one; returns nothing. */
static void ix_pop(ix_t *ix, const char *key, size_t len, nb_id_t id) {
  ix_entry_t *e = ix_lookup(ix, key, len);
  if (e && e->n && e->ids[e->n - 1] == id) e->n--;
}

/* Frees the index's memory; returns nothing. */
static void ix_free(ix_t *ix) {
  if (ix->slots) {
    for (uint32_t i = 0; i <= ix->mask; i++) {
      free(ix->slots[i].key);
      free(ix->slots[i].ids);
    }
  }
  free(ix->slots);
  memset(ix, 0, sizeof *ix);
}

/* ---- the cortex ---- */

/* Spikes from one other worker that could not be routed when they arrived
 * (their target's inbox was full, or an earlier spike of their source
 * waited): a FIFO as large as the ring, retried before the ring, so a full
 * inbox holds back its source's spikes without holding back the ring. */
typedef struct park_s {
  nb_spike_t *s;
  uint32_t cap, head, count;
} park_t;

/* One worker: a shard of the neurons and everything its tick writes. With
 * one worker it is the whole cortex. */
typedef struct worker_s {
  nb_cortex_t *cx;
  uint32_t index;
  nb_id_t *shard; /* its neurons, in id order */
  uint32_t nshard, shard_cap;
  /* Per-synapse verdicts of the broadcast being routed, one byte per
   * possible destination, so a broadcast is all-or-nothing without an
   * allocation. */
  uint8_t *verdict;
  /* References of consumed spikes, dropped in batches (one atomic per run
   * of payloads from one segment), flushed at the end of each phase. */
  nb_arena_releaser_t rel;
  nb_cortex_stats_t stats;
  /* Several workers only. out[v]: the ring to worker v (NULL for itself);
   * park[v]: what worker v sent that waits; blocked[source] == epoch:
   * that source has a spike waiting in this pass; bcast_to[v]: worker v
   * gets a copy of the broadcast being routed. */
  nb__wring_t **out;
  park_t *park;
  uint32_t *blocked;
  uint32_t epoch;
  uint8_t *bcast_to;
  /* Several workers only: who runs the tick (see "adoption" below). */
  alignas(64) _Atomic uint64_t lock;
  _Atomic uint64_t call_since; /* when the agent call under way began */
  _Atomic uint32_t call_id;    /* its neuron */
  uint64_t held;               /* the lock value of the current holder */
} worker_t;

struct nb_cortex_s {
  nb_cortex_opts_t opts; /* with the zero defaults resolved */
  nb_neuron_t **neurons; /* by id */
  uint32_t count, cap;
  nb_synapse_table_t *syn;
  ix_t names, caps, regions;
  /* The injection queue: a ring drained by worker 0 after its axons. */
  nb_spike_t *inject;
  uint32_t inject_mask, inject_head, inject_count;
  worker_t *w;
  uint32_t nworkers;
  nb_cortex_stats_t sum; /* nb_cortex_stats' answer with several workers */
  _Atomic uint32_t plastic; /* 1 once a synapse with STDP was connected */
};

/* Returns the default options. */
nb_cortex_opts_t nb_cortex_opts_default(void) {
  nb_cortex_opts_t o = {.max_neurons = 1024,
                        .axon_capacity = NB_AXON_DEFAULT_CAPACITY,
                        .inbox_capacity = 0,
                        .arena = NULL,
                        .prune_every = 0,
                        .workers = 1,
                        .ring_capacity = 0,
                        .adopt_after_ns = 0};
  return o;
}

/* Sets up worker w of cx (the rings and parks only with several workers);
 * returns 0 or NB_ENOMEM / NB_EINVAL. */
static int worker_init(nb_cortex_t *cx, uint32_t w) {
  worker_t *wk = &cx->w[w];
  const nb_cortex_opts_t *o = &cx->opts;
  wk->cx = cx;
  wk->index = w;
  wk->rel.arena = o->arena;
  wk->verdict = malloc(o->max_neurons);
  if (!wk->verdict) return NB_ENOMEM;
  if (cx->nworkers == 1) return 0;
  uint32_t nw = cx->nworkers;
  wk->out = calloc(nw, sizeof *wk->out);
  wk->park = calloc(nw, sizeof *wk->park);
  wk->blocked = calloc(o->max_neurons, sizeof *wk->blocked);
  wk->bcast_to = calloc(nw, 1);
  if (!wk->out || !wk->park || !wk->blocked || !wk->bcast_to)
    return NB_ENOMEM;
  for (uint32_t v = 0; v < nw; v++) {
    if (v == w) continue;
    int rc = nb__wring_new(&wk->out[v], o->ring_capacity);
    if (rc != 0) return rc;
    wk->park[v].cap = o->ring_capacity;
    wk->park[v].s = aligned_alloc(alignof(nb_spike_t),
                                  (size_t)o->ring_capacity * sizeof(nb_spike_t));
    if (!wk->park[v].s) return NB_ENOMEM;
  }
  return 0;
}

/* Frees what worker_init made; returns nothing. */
static void worker_free(nb_cortex_t *cx, worker_t *wk) {
  for (uint32_t v = 0; wk->out && v < cx->nworkers; v++)
    nb__wring_free(wk->out[v]);
  for (uint32_t v = 0; wk->park && v < cx->nworkers; v++) free(wk->park[v].s);
  free(wk->out);
  free(wk->park);
  free(wk->blocked);
  free(wk->bcast_to);
  free(wk->verdict);
  free(wk->shard);
}

/* Returns 0 with *out set to a new cortex, NB_EINVAL or NB_ENOMEM. */
int nb_cortex_new(nb_cortex_t **out, const nb_cortex_opts_t *opts) {
  if (!out) return NB_EINVAL;
  *out = NULL;
  nb_cortex_opts_t o = opts ? *opts : nb_cortex_opts_default();
  if (o.max_neurons == 0 || o.max_neurons > NB_MAX_NEURONS) return NB_EINVAL;
  if (o.axon_capacity == 0) o.axon_capacity = NB_AXON_DEFAULT_CAPACITY;
  if (o.axon_capacity < 2 || (o.axon_capacity & (o.axon_capacity - 1)))
    return NB_EINVAL;
  if (o.inbox_capacity == 0) o.inbox_capacity = o.axon_capacity;
  if (o.workers == 0) o.workers = 1;
  if (o.workers > NB_MAX_WORKERS) return NB_EINVAL;
  if (o.ring_capacity == 0) o.ring_capacity = NB_RING_DEFAULT_CAPACITY;
  if (o.ring_capacity < 2 || (o.ring_capacity & (o.ring_capacity - 1)))
    return NB_EINVAL;
  if (o.adopt_after_ns == 0) o.adopt_after_ns = NB_ADOPT_AFTER_DEFAULT_NS;
  if (o.spike_time > NB_SPIKE_TIME_AUTO) return NB_EINVAL;
  nb_clock_calibrate(); /* once per process: spikes read the spike clock */
  nb_cortex_t *cx = calloc(1, sizeof *cx);
  if (!cx) return NB_ENOMEM;
  cx->opts = o;
  int rc = nb_synapse_table_new(&cx->syn, o.max_neurons);
  if (rc != 0) goto fail;
  rc = NB_ENOMEM;
  cx->inject = aligned_alloc(alignof(nb_spike_t),
                             (size_t)o.axon_capacity * sizeof(nb_spike_t));
  /* Aligned: a worker's lock word sits on its own cache line. */
  cx->w = aligned_alloc(alignof(worker_t), o.workers * sizeof *cx->w);
  if (!cx->inject || !cx->w) goto fail;
  memset(cx->w, 0, o.workers * sizeof *cx->w);
  cx->nworkers = o.workers;
  for (uint32_t w = 0; w < o.workers; w++)
    if ((rc = worker_init(cx, w)) != 0) goto fail;
  cx->inject_mask = o.axon_capacity - 1;
  *out = cx;
  return 0;
fail:
  nb_cortex_free(cx);
  return rc;
}

/* Drops the reference s holds, if any, in wk's current batch; returns
 * nothing. */
static inline void consume(worker_t *wk, const nb_spike_t *s) {
  if (!nb_spike_is_ref(s) || !wk->rel.arena) return;
  nb_arena_ref_t ref;
  if (nb_spike_get_ref(s, &ref) == 0) nb_arena_releaser_add(&wk->rel, &ref);
}

/* Returns the spikes between workers: in the rings and parked. */
static uint64_t in_flight(const nb_cortex_t *cx) {
  uint64_t total = 0;
  for (uint32_t w = 0; cx->nworkers > 1 && w < cx->nworkers; w++)
    for (uint32_t v = 0; v < cx->nworkers; v++)
      if (v != w)
        total += nb__wring_used(cx->w[w].out[v]) + cx->w[w].park[v].count;
  return total;
}

/* Returns the spikes the other workers queued for worker w (in their
 * rings to w, and parked at w), 0 for w out of range or one worker. */
uint64_t nb_cortex_worker_queued(const nb_cortex_t *cx, uint32_t w) {
  uint64_t total = 0;
  for (uint32_t v = 0; cx->nworkers > 1 && w < cx->nworkers &&
                       v < cx->nworkers; v++)
    if (v != w)
      total += nb__wring_used(cx->w[v].out[w]) + cx->w[w].park[v].count;
  return total;
}

/* Drops the references of every spike still waiting (axons, the injection
 * queue, inboxes, rings, parks), so a shared arena gets its space back;
 * returns nothing. */
static void consume_pending(nb_cortex_t *cx) {
  worker_t *wk = &cx->w[0];
  for (uint32_t i = 0; i < cx->count; i++) {
    nb_neuron_t *n = cx->neurons[i];
    uint64_t avail = nb_axon_reader_available(n->reader);
    for (uint64_t k = 0; k < avail;) {
      uint32_t run;
      const nb_spike_t *s = nb__axon_reader_peek_run(n->reader, k, avail - k,
                                                     &run);
      if (!s) break;
      for (uint32_t j = 0; j < run; j++) consume(wk, &s[j]);
      k += run;
    }
    if (avail) nb_axon_reader_advance(n->reader, avail);
    for (uint32_t k = 0; k < n->inbox_count; k++) consume(wk, &n->inbox[k]);
    n->inbox_count = 0;
  }
  for (; cx->inject_count; cx->inject_count--) {
    consume(wk, &cx->inject[cx->inject_head]);
    cx->inject_head = (cx->inject_head + 1) & cx->inject_mask;
  }
  for (uint32_t w = 0; cx->nworkers > 1 && w < cx->nworkers; w++) {
    for (uint32_t v = 0; v < cx->nworkers; v++) {
      if (v == w) continue;
      park_t *p = &cx->w[v].park[w];
      for (; p->count; p->count--, p->head = (p->head + 1) & (p->cap - 1))
        consume(wk, &p->s[p->head]);
      uint32_t k;
      const nb_spike_t *s;
      while ((s = nb__wring_peek(cx->w[w].out[v], &k)) != NULL) {
        for (uint32_t j = 0; j < k; j++) consume(wk, &s[j]);
        nb__wring_advance(cx->w[w].out[v], k);
      }
    }
  }
  nb_arena_releaser_flush(&wk->rel);
}

/* Frees the cortex, its neurons, synapses and indexes; returns nothing. */
void nb_cortex_free(nb_cortex_t *cx) {
  if (!cx) return;
  if (cx->opts.arena && cx->neurons && cx->w) consume_pending(cx);
  for (uint32_t i = 0; i < cx->count; i++) nb__neuron_free(cx->neurons[i]);
  free(cx->neurons);
  if (cx->syn) nb_synapse_table_free(cx->syn);
  ix_free(&cx->names);
  ix_free(&cx->caps);
  ix_free(&cx->regions);
  free(cx->inject);
  for (uint32_t w = 0; cx->w && w < cx->nworkers; w++)
    worker_free(cx, &cx->w[w]);
  free(cx->w);
  free(cx);
}

/* ---- regions ---- */

/* Returns the length of path without its trailing slashes. */
static size_t region_len(const char *path) {
  size_t len = strlen(path);
  while (len && path[len - 1] == '/') len--;
  return len;
}

/* Returns 1 when parent equals child or is a whole-segment prefix of it;
 * the empty path (or "/") is the root and contains every region. */
int nb_region_contains(const char *parent, const char *child) {
  if (!parent || !child) return 0;
  size_t lp = region_len(parent), lc = region_len(child);
  if (lp == 0) return 1;
  if (lp > lc || memcmp(parent, child, lp) != 0) return 0;
  return lp == lc || child[lp] == '/';
}

/* Calls ix_add (add nonzero) or ix_pop for every key under which region
 * must be found: each proper whole-segment prefix and the full path;
 * returns 0 or NB_ENOMEM. */
static int region_keys(ix_t *ix, const char *region, nb_id_t id, int add) {
  size_t len = region_len(region);
  if (len == 0) return 0; /* the root: found by scanning, see region() */
  for (size_t k = 1; k <= len; k++) {
    if (k < len && region[k] != '/') continue;
    if (!add) {
      ix_pop(ix, region, k, id);
    } else if (ix_add(ix, region, k, id) != 0) {
      return NB_ENOMEM;
    }
  }
  return 0;
}

/* Removes or adds n under its name, capabilities and regions; returns 0 or
 * NB_ENOMEM (when adding; the caller then removes). */
static int index_neuron(nb_cortex_t *cx, const nb_neuron_t *n, int add) {
  const nb_card_t *c = &n->card;
  if (add) {
    if (ix_add(&cx->names, c->name, strlen(c->name), n->id) != 0)
      return NB_ENOMEM;
    for (size_t i = 0; i < c->ncapabilities; i++)
      if (ix_add(&cx->caps, c->capabilities[i], strlen(c->capabilities[i]),
                 n->id) != 0)
        return NB_ENOMEM;
    for (size_t i = 0; i < c->nregions; i++)
      if (region_keys(&cx->regions, c->regions[i], n->id, 1) != 0)
        return NB_ENOMEM;
    return 0;
  }
  ix_pop(&cx->names, c->name, strlen(c->name), n->id);
  for (size_t i = 0; i < c->ncapabilities; i++)
    ix_pop(&cx->caps, c->capabilities[i], strlen(c->capabilities[i]), n->id);
  for (size_t i = 0; i < c->nregions; i++)
    region_keys(&cx->regions, c->regions[i], n->id, 0);
  return 0;
}

/* ---- registration and lookup ---- */

/* Inserts id into wk's shard, keeping id order; returns 0 or NB_ENOMEM. */
static int shard_add(worker_t *wk, nb_id_t id) {
  if (wk->nshard == wk->shard_cap) {
    uint32_t ncap = wk->shard_cap ? wk->shard_cap * 2 : 16;
    nb_id_t *ns = realloc(wk->shard, ncap * sizeof *ns);
    if (!ns) return NB_ENOMEM;
    wk->shard = ns;
    wk->shard_cap = ncap;
  }
  uint32_t i = wk->nshard;
  while (i > 0 && wk->shard[i - 1] > id) {
    wk->shard[i] = wk->shard[i - 1];
    i--;
  }
  wk->shard[i] = id;
  wk->nshard++;
  return 0;
}

/* Removes id from wk's shard; returns nothing. */
static void shard_remove(worker_t *wk, nb_id_t id) {
  uint32_t i = 0;
  while (i < wk->nshard && wk->shard[i] != id) i++;
  if (i == wk->nshard) return;
  memmove(&wk->shard[i], &wk->shard[i + 1],
          (wk->nshard - i - 1) * sizeof *wk->shard);
  wk->nshard--;
}

/* Returns 0 with the new neuron in *out (if out is not NULL), or NB_EEXIST,
 * NB_EINVAL, NB_ELIMIT, NB_ENOMEM. */
int nb_cortex_register(nb_cortex_t *cx, const nb_card_t *card,
                       const nb_if_params_t *params,
                       const nb_agent_ops_t *ops, void *agent,
                       nb_neuron_t **out) {
  if (out) *out = NULL;
  if (!cx || nb__card_check(card) != 0) return NB_EINVAL;
  if (params && nb_if_params_check(params) != 0) return NB_EINVAL;
  if (nb_cortex_find(cx, card->name)) return NB_EEXIST;
  /* NB_MAX_NEURONS is 0xFFFF, so the last id handed out is 0xFFFE and the
   * broadcast id is never a neuron. */
  if (cx->count >= cx->opts.max_neurons || cx->count >= NB_MAX_NEURONS)
    return NB_ELIMIT;
  if (cx->count == cx->cap) {
    uint32_t ncap = cx->cap ? cx->cap * 2 : 16;
    if (ncap > cx->opts.max_neurons) ncap = cx->opts.max_neurons;
    nb_neuron_t **nn = realloc(cx->neurons, ncap * sizeof *nn);
    if (!nn) return NB_ENOMEM;
    cx->neurons = nn;
    cx->cap = ncap;
  }
  nb_neuron_t *n;
  nb_id_t id = (nb_id_t)cx->count;
  int rc = nb__neuron_new(&n, id, card, params, ops, agent,
                          cx->opts.axon_capacity, cx->opts.inbox_capacity,
                          cx->opts.arena);
  if (rc != 0) return rc;
  /* Default placement: round robin by id, so consecutive registrations
   * spread over the workers. */
  n->worker = id % cx->nworkers;
  if (index_neuron(cx, n, 1) != 0 || shard_add(&cx->w[n->worker], id) != 0) {
    index_neuron(cx, n, 0);
    nb__neuron_free(n);
    return NB_ENOMEM;
  }
  cx->neurons[cx->count++] = n;
  if (out) *out = n;
  return 0;
}

/* Returns the number of workers. */
uint32_t nb_cortex_workers(const nb_cortex_t *cx) { return cx->nworkers; }

/* Returns the worker of neuron id, or -1 for an unknown id. */
int nb_cortex_worker_of(const nb_cortex_t *cx, nb_id_t id) {
  return id < cx->count ? (int)cx->neurons[id]->worker : -1;
}

/* Returns 0 with neuron id moved to worker w, NB_ENOENT, NB_EINVAL (a
 * worker out of range, or spikes between workers still in flight), or
 * NB_ENOMEM. */
int nb_cortex_place(nb_cortex_t *cx, nb_id_t id, uint32_t w) {
  if (id >= cx->count) return NB_ENOENT;
  if (w >= cx->nworkers) return NB_EINVAL;
  nb_neuron_t *n = cx->neurons[id];
  if (n->worker == w) return 0;
  /* A spike in a ring or a park is bound for its target's old worker:
   * moving the target now would let later spikes of the same pair, which
   * go to the new worker, overtake it. */
  if (in_flight(cx)) return NB_EINVAL;
  if (shard_add(&cx->w[w], id) != 0) return NB_ENOMEM;
  shard_remove(&cx->w[n->worker], id);
  n->worker = w;
  return 0;
}

/* Returns the neuron with id, or NULL. */
nb_neuron_t *nb_cortex_neuron(const nb_cortex_t *cx, nb_id_t id) {
  return id < cx->count ? cx->neurons[id] : NULL;
}

/* Returns the neuron named name, or NULL (one hash lookup). */
nb_neuron_t *nb_cortex_find(const nb_cortex_t *cx, const char *name) {
  if (!name) return NULL;
  const ix_entry_t *e = ix_lookup(&cx->names, name, strlen(name));
  return e && e->n ? cx->neurons[e->ids[0]] : NULL;
}

/* Returns the number of registered neurons. */
size_t nb_cortex_count(const nb_cortex_t *cx) { return cx->count; }

/* Copies up to max ids of e into out; returns the total (0 without e). */
static size_t copy_ids(const ix_entry_t *e, nb_id_t *out, size_t max) {
  if (!e) return 0;
  size_t n = e->n;
  if (out) memcpy(out, e->ids, (n < max ? n : max) * sizeof *out);
  return n;
}

/* Returns the number of neurons with capability, writing up to max ids. */
size_t nb_cortex_discover(const nb_cortex_t *cx, const char *capability,
                          nb_id_t *out, size_t max) {
  if (!capability) return 0;
  return copy_ids(ix_lookup(&cx->caps, capability, strlen(capability)), out,
                  max);
}

/* Returns the number of neurons in the region subtree path, writing up to
 * max ids. */
size_t nb_cortex_region(const nb_cortex_t *cx, const char *path,
                        nb_id_t *out, size_t max) {
  if (!path) return 0;
  size_t len = region_len(path);
  if (len) return copy_ids(ix_lookup(&cx->regions, path, len), out, max);
  /* The root holds every neuron that names any region. */
  size_t total = 0;
  for (uint32_t i = 0; i < cx->count; i++) {
    if (cx->neurons[i]->card.nregions == 0) continue;
    if (out && total < max) out[total] = (nb_id_t)i;
    total++;
  }
  return total;
}

/* ---- topology ---- */

/* Returns 0 when f is a well-formed filter, else NB_EINVAL. */
static int filter_check(const nb_filter_t *f) {
  switch (f->type) {
  case NB_FILTER_KIND:
  case NB_FILTER_PRIORITY:
    return 0;
  case NB_FILTER_PREFIX:
    return f->prefix_len <= NB_FILTER_PREFIX_MAX ? 0 : NB_EINVAL;
  case NB_FILTER_CUSTOM:
    return f->name[0] && memchr(f->name, 0, NB_FILTER_NAME_MAX) ? 0
                                                                : NB_EINVAL;
  default:
    return NB_EINVAL;
  }
}

/* Returns 0, NB_ENOENT for an unregistered end, NB_EINVAL, NB_ENOMEM. */
int nb_cortex_connect(nb_cortex_t *cx, nb_id_t pre, nb_id_t post,
                      float weight, const nb_filter_t *filters,
                      size_t nfilters, const nb_stdp_t *stdp) {
  if (pre >= cx->count || post >= cx->count) return NB_ENOENT;
  if (pre == post || !isfinite(weight)) return NB_EINVAL;
  if (nfilters > NB_FILTERS_MAX || (nfilters && !filters)) return NB_EINVAL;
  for (size_t i = 0; i < nfilters; i++)
    if (filter_check(&filters[i]) != 0) return NB_EINVAL;
  if (stdp && nb_stdp_check(stdp) != 0) return NB_EINVAL;
  nb_synapse_t syn;
  memset(&syn, 0, sizeof syn);
  syn.pre = pre;
  syn.post = post;
  syn.stdp_on = stdp != NULL;
  /* From the first synapse that learns, spikes carry exact times. Written
   * between ticks (a team's pause), read by deliver. */
  if (stdp) atomic_store_explicit(&cx->plastic, 1, memory_order_relaxed);
  /* With STDP off the defaults still give the bounds for clamping and
   * pruning. */
  syn.stdp = stdp ? *stdp : nb_stdp_default();
  syn.nfilters = (uint8_t)nfilters;
  if (nfilters) memcpy(syn.filters, filters, nfilters * sizeof *filters);
  if (weight < syn.stdp.w_min) weight = syn.stdp.w_min;
  if (weight > syn.stdp.w_max) weight = syn.stdp.w_max;
  nb_atomic_f32_store(&syn.weight, weight);
  atomic_init(&syn.last_pre_ns, 0);
  atomic_init(&syn.carried, 0);
  atomic_init(&syn.filtered, 0);
  return nb_synapse_table_connect(cx->syn, pre, post, &syn);
}

/* Returns the synapse table. */
nb_synapse_table_t *nb_cortex_synapses(const nb_cortex_t *cx) {
  return cx->syn;
}

/* Returns the number of synapses removed at or below their w_min. */
size_t nb_cortex_prune(nb_cortex_t *cx) {
  size_t n = nb_synapse_table_prune(cx->syn);
  cx->w[0].stats.pruned += n;
  return n;
}

/* Returns 0 or NB_ENOENT; stopping turns the waiting inbox into dead
 * letters so nothing stays pending for a neuron that will never run. */
int nb_cortex_set_stopped(nb_cortex_t *cx, nb_id_t id, int stopped) {
  nb_neuron_t *n = nb_cortex_neuron(cx, id);
  if (!n) return NB_ENOENT;
  n->stopped = stopped != 0;
  if (n->stopped) {
    worker_t *wk = &cx->w[n->worker];
    wk->stats.dead_letters += n->inbox_count;
    n->stats.dead_letters += n->inbox_count;
    for (uint32_t k = 0; k < n->inbox_count; k++) consume(wk, &n->inbox[k]);
    nb_arena_releaser_flush(&wk->rel);
    n->inbox_count = 0;
  }
  return 0;
}

/* Returns 0 or NB_ENOENT; the embedder took these spikes out of the inbox
 * (a batch cut short) and cannot deliver them: they are counted, not lost. */
int nb_cortex_add_dead_letters(nb_cortex_t *cx, nb_id_t id, uint64_t n) {
  nb_neuron_t *t = nb_cortex_neuron(cx, id);
  if (!t) return NB_ENOENT;
  cx->w[t->worker].stats.dead_letters += n;
  t->stats.dead_letters += n;
  return 0;
}

/* ---- injection ---- */

/* Returns 0, NB_EFULL when the queue (axon_capacity spikes) is full, or
 * NB_EINVAL for a malformed spike (kind 3, bad length or ref marker). */
int nb_cortex_inject(nb_cortex_t *cx, const nb_spike_t *s) {
  if (!s) return NB_EINVAL;
  return nb_cortex_inject_as(cx, s, s->source, s->timestamp_ns);
}

/* Returns as nb_cortex_inject. */
int nb_cortex_inject_as(nb_cortex_t *cx, const nb_spike_t *s, nb_id_t source,
                        uint64_t timestamp_ns) {
  if (!s) return NB_EINVAL;
  if (cx->inject_count > cx->inject_mask) return NB_EFULL;
  nb_spike_t *slot =
      &cx->inject[(cx->inject_head + cx->inject_count) & cx->inject_mask];
  /* from_bytes validates meta, so a bad length never reaches an agent. */
  int rc = nb_spike_from_bytes(slot, nb_spike_as_bytes(s));
  if (rc != 0) return rc;
  slot->source = source;
  /* 0 means "no spike yet" in STDP bookkeeping, so an unstamped spike gets
   * the clock. */
  slot->timestamp_ns = timestamp_ns ? timestamp_ns : nb_clock_spike_ns();
  cx->inject_count++;
  return 0;
}

/* ---- routing ---- */

enum { ROUTED = 0, BLOCKED = 1 };
enum { V_REJECT = 0, V_PASS = 1, V_STOPPED = 2, V_ELSEWHERE = 3 };

/* The payload of the spike being routed, resolved at most once. */
typedef struct payload_view_s {
  int state; /* 0 unresolved, 1 resolved, -1 unresolvable */
  const void *data;
  size_t len;
} payload_view_t;

/* Adapts nb_custom_filter_fn to the target's ops->filter; returns 1 to
 * pass, 0 to reject. A negative answer is an agent error: counted, and the
 * spike is rejected. */
static int custom_filter(void *ctx, nb_id_t target, const char *name,
                         const nb_spike_t *s, const void *payload,
                         size_t len) {
  nb_neuron_t *t = nb_cortex_neuron((const nb_cortex_t *)ctx, target);
  if (!t || !t->ops.filter) return 0;
  int rc = t->ops.filter(t->agent, t, name, s, payload, len);
  if (rc < 0) {
    t->stats.errors++;
    return 0;
  }
  return rc != 0;
}

/* Returns 1 when a filter of syn looks at the payload, else 0. */
static int needs_payload(const nb_synapse_t *syn) {
  for (uint8_t i = 0; i < syn->nfilters; i++)
    if (syn->filters[i].type == NB_FILTER_PREFIX ||
        syn->filters[i].type == NB_FILTER_CUSTOM)
      return 1;
  return 0;
}

/* Returns V_PASS or V_REJECT for s through syn, or -1 when a filter needs
 * the payload and it cannot be resolved (a stale or foreign ref). */
static int verdict(nb_cortex_t *cx, const nb_synapse_t *syn,
                   const nb_spike_t *s, payload_view_t *pv) {
  if (syn->nfilters == 0) return V_PASS;
  if (needs_payload(syn)) {
    if (pv->state == 0) {
      int rc = nb_arena_get_payload(cx->opts.arena, s, &pv->data, &pv->len);
      pv->state = rc == 0 ? 1 : -1;
    }
    if (pv->state < 0) return -1;
  }
  return nb_synapse_pass(syn, s, pv->data, pv->len, custom_filter, cx)
             ? V_PASS
             : V_REJECT;
}

/* Adds one to a synapse counter: one writer (the thread routing into its
 * post), so a relaxed load and store, no locked add; returns nothing. */
static inline void syn_count(_Atomic uint64_t *c) {
  atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + 1,
                        memory_order_relaxed);
}

/* Records STDP "pre" on syn for a spike stamped t_pre (see
 * nb_synapse_on_pre); returns nothing. Without STDP only the time is kept,
 * inline, as that is the common case on the routing path. */
static inline void stdp_pre(nb_synapse_t *syn, uint64_t t_pre) {
  syn_count(&syn->carried);
  if (!syn->stdp_on) {
    atomic_store_explicit(&syn->last_pre_ns, t_pre, memory_order_relaxed);
    return;
  }
  nb_synapse_on_pre(syn, t_pre);
}

/* Returns 1 with *r set to the reward a modulatory spike carries: its
 * inline payload read as a decimal number ("1", "-0.5"), an empty payload
 * being 1; else 0 (an arena payload or text that is not one finite
 * number carries no reward). */
static int reward_of(const nb_spike_t *s, double *r) {
  if (nb_spike_is_ref(s)) return 0;
  size_t len = nb_spike_inline_len(s);
  if (len == 0) {
    *r = 1.0;
    return 1;
  }
  char buf[NB_PAYLOAD_MAX + 1], *end;
  memcpy(buf, s->payload, len);
  buf[len] = 0;
  double v = strtod(buf, &end);
  if (end == buf || *end != 0 || !isfinite(v)) return 0;
  *r = v;
  return 1;
}

/* Hands the reward of modulatory spike s, routed into t, to t's incoming
 * REWARD synapses at the spike's time (on t's worker, which owns every
 * write to them); returns nothing. */
static void reward(worker_t *wk, const nb_neuron_t *t, const nb_spike_t *s) {
  double r;
  if (!reward_of(s, &r)) return;
  size_t m;
  nb_synapse_t *const *in = nb_synapse_table_incoming(wk->cx->syn, t->id, &m);
  for (size_t j = 0; j < m; j++)
    if (in[j]->stdp_on && in[j]->stdp.mode == NB_STDP_REWARD)
      nb_synapse_on_reward(in[j], s->timestamp_ns, r);
  wk->stats.rewards++;
}

/* Returns the synapse's weight (relaxed), as nb_atomic_f32_load, inline. */
static inline float weight_of(const nb_synapse_t *syn) {
  uint32_t bits = atomic_load_explicit(&syn->weight.bits, memory_order_relaxed);
  float w;
  memcpy(&w, &bits, sizeof w);
  return w;
}

/* The (source, target) pair of the last unicast spike routed, with its
 * target neuron and synapse, when that pair needs no filter and the target
 * runs: later spikes of the same pair skip both lookups. Only agent code
 * can change what it caches (a custom filter may stop a neuron, reconnect
 * or register), so it is dropped whenever a filter could run. */
typedef struct route_cache_s {
  nb_neuron_t *t; /* NULL = empty */
  nb_synapse_t *syn;
  nb_id_t source, target;
} route_cache_t;

/* Copies s with weight w into t's inbox, which has room; returns nothing. */
static void inbox_push(worker_t *wk, nb_neuron_t *t, const nb_spike_t *s,
                       float w) {
  if (nb_spike_kind(s) == NB_MODULATORY) reward(wk, t, s);
  t->inbox[t->inbox_count] = *s;
  t->inbox_w[t->inbox_count] = w;
  t->inbox_count++;
  wk->stats.routed++;
}

/* Counts a filtered spike into t; returns ROUTED. */
static int filtered(worker_t *wk, nb_neuron_t *t) {
  wk->stats.filtered++;
  t->stats.filtered++;
  return ROUTED;
}

/* Counts a dead letter and drops its payload; returns ROUTED (the spike is
 * consumed). */
static int dead_letter(worker_t *wk, const nb_spike_t *s) {
  wk->stats.dead_letters++;
  consume(wk, s);
  return ROUTED;
}

/* Routes a unicast spike to a target of wk's shard; returns ROUTED
 * (delivered, filtered or dead) or BLOCKED when the target's inbox is
 * full. */
static int route_unicast(worker_t *wk, const nb_spike_t *s, route_cache_t *c) {
  nb_cortex_t *cx = wk->cx;
  nb_neuron_t *t = s->target < cx->count ? cx->neurons[s->target] : NULL;
  if (!t) return dead_letter(wk, s);
  if (t->stopped) {
    t->stats.dead_letters++;
    return dead_letter(wk, s);
  }
  /* Its agent is in a call on another thread: not even its filters may
   * run now. */
  if (t->busy) return BLOCKED;
  nb_synapse_t *syn = s->source < cx->count
                          ? nb_synapse_table_get(cx->syn, s->source, s->target)
                          : NULL;
  if (!syn || syn->nfilters == 0) {
    c->t = t;
    c->syn = syn;
    c->source = s->source;
    c->target = s->target;
  } else {
    c->t = NULL;
    payload_view_t pv = {0};
    int v = verdict(cx, syn, s, &pv);
    if (v < 0) return dead_letter(wk, s);
    if (v == V_REJECT) {
      consume(wk, s);
      syn_count(&syn->filtered);
      return filtered(wk, t);
    }
  }
  if (t->inbox_count == t->inbox_cap) return BLOCKED;
  float w = 1.0f;
  if (syn) {
    w = weight_of(syn);
    stdp_pre(syn, s->timestamp_ns);
  }
  inbox_push(wk, t, s, w);
  return ROUTED;
}

/* Routes a broadcast along the outgoing synapses of its source, all or
 * nothing: returns BLOCKED, delivering to no one, when any destination of
 * wk's shard that passes its filters has a full inbox, or (from_ring 0,
 * several workers) when the ring to a worker holding other destinations is
 * full; else ROUTED. With several workers the source's worker delivers to
 * its own shard and sends one copy to each other worker with destinations
 * (from_ring 0); a worker receiving that copy (from_ring 1) delivers to
 * its shard only. Each copy and each inbox copy holds its own reference. */
static int route_broadcast(worker_t *wk, const nb_spike_t *s, int from_ring) {
  nb_cortex_t *cx = wk->cx;
  if (s->source >= cx->count) return dead_letter(wk, s);
  size_t n;
  nb_synapse_t *const *out = nb_synapse_table_outgoing(cx->syn, s->source, &n);
  /* A broadcast that reaches nobody is lost, so it is counted. */
  if (n == 0) return dead_letter(wk, s);
  payload_view_t pv = {0};
  uint8_t *vd = wk->verdict;
  uint32_t remote = 0;
  int split = cx->nworkers > 1;
  if (split && !from_ring) memset(wk->bcast_to, 0, cx->nworkers);
  for (size_t i = 0; i < n; i++) {
    nb_neuron_t *t = cx->neurons[out[i]->post];
    if (split && t->worker != wk->index) {
      /* Filters run on the target's worker, which owns its agent. */
      if (!from_ring &&
          atomic_load_explicit(&t->congested, memory_order_relaxed))
        return BLOCKED;
      vd[i] = V_ELSEWHERE;
      if (!from_ring && !wk->bcast_to[t->worker]) {
        wk->bcast_to[t->worker] = 1;
        remote++;
      }
      continue;
    }
    if (t->stopped) {
      vd[i] = V_STOPPED;
      continue;
    }
    if (t->busy) return BLOCKED; /* as in route_unicast */
    int v = verdict(cx, out[i], s, &pv);
    if (v < 0) return dead_letter(wk, s);
    if (v == V_PASS && t->inbox_count == t->inbox_cap) return BLOCKED;
    vd[i] = (uint8_t)v;
  }
  if (remote)
    for (uint32_t v = 0; v < cx->nworkers; v++)
      if (wk->bcast_to[v] && nb__wring_room(wk->out[v], 1) == 0)
        return BLOCKED;
  /* The fired spike held one reference; each copy holds its own. */
  uint32_t copies = remote;
  for (size_t i = 0; i < n; i++) copies += vd[i] == V_PASS;
  if (copies == 0) {
    consume(wk, s);
  } else if (copies > 1 && nb_spike_is_ref(s) && cx->opts.arena) {
    nb_arena_ref_t ref;
    /* A payload that cannot be kept alive is not delivered as garbage. */
    if (nb_spike_get_ref(s, &ref) != 0 ||
        nb_arena_retain(cx->opts.arena, &ref, copies - 1) != 0)
      return dead_letter(wk, s);
  }
  for (size_t i = 0; i < n; i++) {
    nb_neuron_t *t = cx->neurons[out[i]->post];
    if (vd[i] == V_ELSEWHERE) {
      continue;
    } else if (vd[i] == V_STOPPED) {
      t->stats.dead_letters++;
      wk->stats.dead_letters++;
    } else if (vd[i] == V_REJECT) {
      syn_count(&out[i]->filtered);
      filtered(wk, t);
    } else {
      float w = nb_atomic_f32_load(&out[i]->weight);
      stdp_pre(out[i], s->timestamp_ns);
      inbox_push(wk, t, s, w);
    }
  }
  if (remote)
    for (uint32_t v = 0; v < cx->nworkers; v++)
      if (wk->bcast_to[v]) nb__wring_put(wk->out[v], s);
  return ROUTED;
}

/* Routes one spike read on wk (an axon of its shard or the injection
 * queue); returns ROUTED or BLOCKED. A unicast to another worker's neuron
 * goes into the ring to that worker, unless it is full. */
static int route(worker_t *wk, const nb_spike_t *s, route_cache_t *c) {
  if (s->target != NB_BROADCAST) {
    nb_cortex_t *cx = wk->cx;
    if (cx->nworkers > 1 && s->target < cx->count) {
      nb_neuron_t *t = cx->neurons[s->target];
      uint32_t to = t->worker;
      if (to != wk->index) {
        /* Its worker parks spikes for it already: keep this one in the
         * axon rather than fill the ring (and the park) behind them. */
        if (atomic_load_explicit(&t->congested, memory_order_relaxed) ||
            nb__wring_room(wk->out[to], 1) == 0)
          return BLOCKED;
        nb__wring_put(wk->out[to], s);
        return ROUTED;
      }
    }
    return route_unicast(wk, s, c);
  }
  c->t = NULL; /* its filters may run agent code */
  return route_broadcast(wk, s, 0);
}

/* Routes the k contiguous spikes at s in order, stopping at the first
 * blocked one; returns how many were consumed. A run of spikes of the
 * cached pair is copied with the inbox count in a register and no lookup,
 * exactly as route_unicast would route each. */
static uint32_t route_run(worker_t *wk, const nb_spike_t *s, uint32_t k,
                          route_cache_t *c) {
  uint32_t j = 0;
  while (j < k) {
    if (c->t && s[j].target == c->target && s[j].source == c->source) {
      nb_neuron_t *t = c->t;
      nb_synapse_t *syn = c->syn;
      nb_id_t src = c->source, dst = c->target;
      uint32_t cnt = t->inbox_count, cap = t->inbox_cap, from = j;
      if (cnt == cap) break; /* BLOCKED */
      do {
        float w = 1.0f;
        if (syn) {
          w = weight_of(syn);
          stdp_pre(syn, s[j].timestamp_ns);
        }
        if (nb_spike_kind(&s[j]) == NB_MODULATORY) reward(wk, t, &s[j]);
        t->inbox[cnt] = s[j];
        t->inbox_w[cnt] = w;
        cnt++;
        j++;
      } while (j < k && cnt < cap && s[j].target == dst &&
               s[j].source == src);
      t->inbox_count = cnt;
      wk->stats.routed += j - from;
      continue;
    }
    if (route(wk, &s[j], c) == BLOCKED) break;
    j++;
  }
  return j;
}

/* Routes a spike that came from another worker to wk's shard; returns
 * ROUTED or BLOCKED. */
static int route_arrived(worker_t *wk, const nb_spike_t *s) {
  if (s->target == NB_BROADCAST) return route_broadcast(wk, s, 1);
  route_cache_t c = {0};
  return route_unicast(wk, s, &c);
}

/* Marks the targets of a parked spike congested, so senders on other
 * workers hold their spikes for them in their axons; returns nothing. */
static void congest(worker_t *wk, const nb_spike_t *s) {
  nb_cortex_t *cx = wk->cx;
  if (s->target != NB_BROADCAST) {
    if (s->target < cx->count)
      atomic_store_explicit(&cx->neurons[s->target]->congested, 1,
                            memory_order_relaxed);
    return;
  }
  size_t n;
  nb_synapse_t *const *out = nb_synapse_table_outgoing(cx->syn, s->source, &n);
  for (size_t i = 0; i < n; i++) {
    nb_neuron_t *t = cx->neurons[out[i]->post];
    if (t->worker == wk->index && (t->inbox_count == t->inbox_cap || t->busy))
      atomic_store_explicit(&t->congested, 1, memory_order_relaxed);
  }
}

/* Routes s from another worker unless its source is already blocked in
 * this pass; parks it (behind every earlier parked spike) when it cannot
 * be routed; returns 0, or 1 when it had to be parked and the park is full
 * (s is then neither routed nor kept). */
static int arrive(worker_t *wk, park_t *p, const nb_spike_t *s) {
  if (wk->blocked[s->source] != wk->epoch && route_arrived(wk, s) == ROUTED)
    return 0;
  /* Every later spike of this source waits behind it, as in an axon. */
  wk->blocked[s->source] = wk->epoch;
  congest(wk, s);
  if (p->count == p->cap) return 1;
  p->s[(p->head + p->count) & (p->cap - 1)] = *s;
  p->count++;
  return 0;
}

/* Drains what the other workers sent to wk: for each, its parked spikes
 * first (the older ones), then its ring in runs, into wk's inboxes;
 * returns nothing. */
static void collect_arrivals(worker_t *wk) {
  nb_cortex_t *cx = wk->cx;
  if (++wk->epoch == 0) { /* wrapped: old marks could read as fresh */
    memset(wk->blocked, 0, cx->opts.max_neurons * sizeof *wk->blocked);
    wk->epoch = 1;
  }
  for (uint32_t v = 0; v < cx->nworkers; v++) {
    if (v == wk->index) continue;
    park_t *p = &wk->park[v];
    /* Parked spikes retry in order; the ones that stay are compacted to
     * the front, still in order. */
    uint32_t kept = 0, n = p->count, mask = p->cap - 1;
    for (uint32_t i = 0; i < n; i++) {
      const nb_spike_t *s = &p->s[(p->head + i) & mask];
      if (wk->blocked[s->source] != wk->epoch &&
          route_arrived(wk, s) == ROUTED)
        continue;
      wk->blocked[s->source] = wk->epoch;
      congest(wk, s);
      p->s[(p->head + kept) & mask] = *s;
      kept++;
    }
    p->count = kept;
    nb__wring_t *in = cx->w[v].out[wk->index];
    for (;;) {
      uint32_t k, j;
      const nb_spike_t *s = nb__wring_peek(in, &k);
      if (!s) break;
      for (j = 0; j < k; j++)
        if (arrive(wk, p, &s[j])) break;
      nb__wring_advance(in, j);
      if (j < k) break; /* the park is full: the ring backs up */
    }
  }
}

/* COLLECT + ROUTE: with several workers, what other workers sent first;
 * then every axon of wk's shard in id order, then (worker 0) the injection
 * queue, stopping a source at its first blocked spike; returns nothing. */
static void collect(worker_t *wk) {
  nb_cortex_t *cx = wk->cx;
  if (cx->nworkers > 1) collect_arrivals(wk);
  route_cache_t c = {0};
  for (uint32_t i = 0; i < wk->nshard; i++) {
    nb_axon_reader_t *r = cx->neurons[wk->shard[i]]->reader;
    /* Bounded by what was there on entry, so a producer on another thread
     * cannot keep one tick going forever. */
    uint64_t avail = nb_axon_reader_available(r), used = 0;
    while (used < avail) {
      /* One peek per contiguous run of slots (at most two per lap). */
      uint32_t k;
      const nb_spike_t *s = nb__axon_reader_peek_run(r, used, avail - used, &k);
      if (!s) break;
      uint32_t done = route_run(wk, s, k, &c);
      used += done;
      if (done < k) break;
    }
    /* One cursor store per axon per tick. */
    if (used) nb_axon_reader_advance(r, used);
  }
  /* The injection queue in runs too (at most two: it is a ring), so a
   * link's stream from one proxy to one neuron takes the cached path. */
  while (wk->index == 0 && cx->inject_count) {
    uint32_t k = cx->inject_mask + 1 - cx->inject_head;
    if (k > cx->inject_count) k = cx->inject_count;
    uint32_t done = route_run(wk, &cx->inject[cx->inject_head], k, &c);
    cx->inject_head = (cx->inject_head + done) & cx->inject_mask;
    cx->inject_count -= done;
    if (done < k) break;
  }
  /* One release store per ring per tick. */
  for (uint32_t v = 0; wk->out && v < cx->nworkers; v++)
    if (wk->out[v]) nb__wring_flush(wk->out[v]);
  nb_arena_releaser_flush(&wk->rel);
}

/* ---- adoption ----
 *
 * With several workers, whoever ticks worker w holds w's lock word: bit 0
 * held, bit 1 "inside an agent call", the bits above a generation bumped
 * by every acquisition. Around each agent call (a batch, a tick callback)
 * the holder marks its neuron busy, records the neuron and the time, and
 * publishes bit 1 (release). While bit 1 is set, another thread may take
 * the lock once the call is older than opts.adopt_after_ns (acquire: it
 * sees every write the holder made before the call): it then routes w's
 * axons and arrivals and delivers w's neurons, all but the busy one,
 * whose inbox the call is still reading and into which nothing is routed.
 * When the call returns, its thread tries to clear bit 1 with a CAS on the
 * value it published; the generation makes that fail if the lock was
 * adopted meanwhile, even if the adopter is itself in a call by then, and
 * the returning thread waits to take the lock again before it touches the
 * worker's state. So w's state is only ever written by one thread at a
 * time, and a neuron stuck in a long call holds back only its own
 * spikes. Custom filters run while routing, outside these windows: a
 * filter that never returns holds its worker. */

enum { LK_HELD = 1, LK_CALL = 2, LK_GEN = 4 };

/* Tries to take wk's lock: free, or in an agent call older than
 * adopt_after_ns; returns 1 with wk->held set, else 0. */
static int lock_take(worker_t *wk) {
  /* Acquire pairs with the release stores in lock_give and call_begin. */
  uint64_t v = atomic_load_explicit(&wk->lock, memory_order_acquire);
  for (;;) {
    if (v & LK_HELD) {
      if (!(v & LK_CALL)) return 0;
      uint64_t since =
          atomic_load_explicit(&wk->call_since, memory_order_relaxed);
      if (nb_clock_ns() - since < wk->cx->opts.adopt_after_ns) return 0;
    }
    uint64_t nv = ((v & ~(uint64_t)(LK_HELD | LK_CALL)) + LK_GEN) | LK_HELD;
    if (atomic_compare_exchange_weak_explicit(&wk->lock, &v, nv,
                                              memory_order_acquire,
                                              memory_order_acquire)) {
      wk->held = nv;
      return 1;
    }
  }
}

/* Releases wk's lock (release: the next holder sees every write);
 * returns nothing. */
static void lock_give(worker_t *wk) {
  atomic_store_explicit(&wk->lock, wk->held & ~(uint64_t)(LK_HELD | LK_CALL),
                        memory_order_release);
}

/* Opens an agent call of n on wk (several workers only): n busy, the call
 * adoptable; returns the lock value to hand to call_end. */
static uint64_t call_begin(worker_t *wk, nb_neuron_t *n) {
  n->busy = 1;
  atomic_store_explicit(&wk->call_id, n->id, memory_order_relaxed);
  atomic_store_explicit(&wk->call_since, nb_clock_ns(), memory_order_relaxed);
  uint64_t held = wk->held;
  atomic_store_explicit(&wk->lock, held | LK_CALL, memory_order_release);
  return held;
}

/* Closes the call opened with held: keeps the lock when nobody adopted the
 * worker meanwhile, else waits to take it again; returns nothing. */
static void call_end(worker_t *wk, nb_neuron_t *n, uint64_t held) {
  uint64_t v = held | LK_CALL;
  if (!atomic_compare_exchange_strong_explicit(&wk->lock, &v, held,
                                               memory_order_acquire,
                                               memory_order_relaxed)) {
    while (!lock_take(wk)) sched_yield();
  } else {
    wk->held = held;
  }
  n->busy = 0;
}

/* Returns 1 with the neuron and the start of the agent call worker w is
 * in, or 0 when it is in none (or w is out of range, or one worker). */
int nb_cortex_worker_call(const nb_cortex_t *cx, uint32_t w, nb_id_t *id,
                          uint64_t *since_ns) {
  if (w >= cx->nworkers || cx->nworkers == 1) return 0;
  worker_t *wk = &cx->w[w];
  uint64_t v = atomic_load_explicit(&wk->lock, memory_order_acquire);
  if ((v & (LK_HELD | LK_CALL)) != (LK_HELD | LK_CALL)) return 0;
  if (id) *id = (nb_id_t)atomic_load_explicit(&wk->call_id,
                                              memory_order_relaxed);
  if (since_ns)
    *since_ns = atomic_load_explicit(&wk->call_since, memory_order_relaxed);
  return 1;
}

/* ---- delivery ---- */

/* Applies STDP "post" on n's incoming synapses and calls the agent's tick;
 * returns nothing. */
static void on_fire(worker_t *wk, nb_neuron_t *n) {
  nb_cortex_t *cx = wk->cx;
  /* The fire's own time, unless the cortex keeps one time per tick. */
  uint64_t now = nb__tick_now ? nb__tick_now : nb_clock_spike_ns();
  n->last_fire_ns = now;
  n->stats.fires++;
  size_t m;
  nb_synapse_t *const *in = nb_synapse_table_incoming(cx->syn, n->id, &m);
  for (size_t j = 0; j < m; j++)
    if (in[j]->stdp_on) nb_synapse_on_post(in[j], now);
  if (!n->ops.tick) return;
  uint64_t held = cx->nworkers > 1 ? call_begin(wk, n) : 0;
  if (n->ops.tick(n->agent, n) < 0) n->stats.errors++;
  if (cx->nworkers > 1) call_end(wk, n, held);
}

/* Hands n's inbox to its agent as one batch (or spike by spike); returns
 * nothing. */
static void hand_over(nb_neuron_t *n, uint32_t count) {
  if (n->ops.on_batch) {
    if (n->ops.on_batch(n->agent, n, n->inbox, n->inbox_w, count) < 0)
      n->stats.errors++;
  } else if (n->ops.on_spike) {
    for (uint32_t k = 0; k < count; k++)
      if (n->ops.on_spike(n->agent, n, &n->inbox[k], n->inbox_w[k]) < 0)
        n->stats.errors++;
  }
}

/* Drops the references of a batch its handler returned from; returns
 * nothing. */
static void consume_batch(worker_t *wk, const nb_spike_t *in,
                          uint32_t count) {
  for (uint32_t k = 0; k < count; k++)
    if (nb_spike_is_ref(&in[k])) consume(wk, &in[k]);
}

/* Returns 1 when spikes fired now carry the tick's time (see
 * NB_SPIKE_TIME_*), else 0. */
static inline int tick_time(const nb_cortex_t *cx) {
  if (cx->opts.spike_time == NB_SPIKE_TIME_AUTO)
    return !atomic_load_explicit(&cx->plastic, memory_order_relaxed);
  return cx->opts.spike_time == NB_SPIKE_TIME_TICK;
}

/* DELIVER + FIRE for every neuron of wk's shard in id order; returns the
 * number of spikes handed to agents. */
static uint64_t deliver(worker_t *wk) {
  nb_cortex_t *cx = wk->cx;
  uint64_t total = 0;
  /* Per-tick time: one clock read for the whole deliver phase (see
   * nb__neuron_internal.h); else 0, and each spike reads its own. */
  nb__tick_now = tick_time(cx) ? nb_clock_spike_ns() : 0;
  for (uint32_t i = 0; i < wk->nshard; i++) {
    nb_neuron_t *n = cx->neurons[wk->shard[i]];
    if (cx->nworkers > 1) {
      if (n->busy) continue; /* in a call another thread is still in */
      /* Dispatchable again (or stopped: spikes to it are dead letters
       * now): senders may route to it. */
      if (!(n->held | n->ifs.refractory_left) &&
          atomic_load_explicit(&n->congested, memory_order_relaxed))
        atomic_store_explicit(&n->congested, 0, memory_order_relaxed);
    }
    if (n->stopped) continue;
    if (n->held | n->ifs.refractory_left) {
      /* A held neuron's refractory time still passes, so it is not
       * refractory longer after a hold than without one. */
      if (n->ifs.refractory_left) n->ifs.refractory_left--;
      n->stats.deferred += n->inbox_count;
      continue;
    }
    uint32_t count = n->inbox_count;
    int refs = nb__if_integrate_batch(&n->ifs, n->inbox, n->inbox_w, count);
    /* Emptied before the callbacks: nothing routes into an inbox during
     * delivery, and a callback that stops its own neuron must not count
     * these spikes again as dead letters. */
    n->inbox_count = 0;
    if (count) {
      if (cx->nworkers > 1) {
        uint64_t held = call_begin(wk, n);
        hand_over(n, count);
        call_end(wk, n, held);
      } else {
        hand_over(n, count);
      }
      if (refs && cx->opts.arena) consume_batch(wk, n->inbox, count);
      n->stats.spikes_in += count;
      total += count;
    }
    if (nb_if_step(&n->ifs)) on_fire(wk, n);
  }
  nb__tick_now = 0;
  nb_arena_releaser_flush(&wk->rel);
  return total;
}

/* Runs one tick of worker w; returns the spikes it delivered, or -1 when
 * another thread holds the worker (several workers only). */
static int64_t tick_worker(nb_cortex_t *cx, uint32_t w) {
  worker_t *wk = &cx->w[w];
  int locked = cx->nworkers > 1;
  if (locked && !lock_take(wk)) return -1;
  collect(wk);
  uint64_t delivered = deliver(wk);
  wk->stats.ticks++;
  if (locked) lock_give(wk);
  return (int64_t)delivered;
}

/* Takes w's lock for the caller without ticking: free, or inside an agent
 * call of any age (holding a worker stops no call; the call's thread waits
 * when it returns); returns 0 or NB_EBUSY, NB_EINVAL. */
int nb_cortex_worker_hold(nb_cortex_t *cx, uint32_t w) {
  if (w >= cx->nworkers) return NB_EINVAL;
  if (cx->nworkers == 1) return 0;
  worker_t *wk = &cx->w[w];
  /* Acquire pairs with the release stores in lock_give and call_begin. */
  uint64_t v = atomic_load_explicit(&wk->lock, memory_order_acquire);
  for (;;) {
    if ((v & (LK_HELD | LK_CALL)) == LK_HELD) return NB_EBUSY;
    uint64_t nv = ((v & ~(uint64_t)(LK_HELD | LK_CALL)) + LK_GEN) | LK_HELD;
    if (atomic_compare_exchange_weak_explicit(&wk->lock, &v, nv,
                                              memory_order_acquire,
                                              memory_order_acquire)) {
      wk->held = nv;
      return 0;
    }
  }
}

/* Gives back a worker taken with nb_cortex_worker_hold; returns nothing. */
void nb_cortex_worker_release(nb_cortex_t *cx, uint32_t w) {
  if (w < cx->nworkers && cx->nworkers > 1) lock_give(&cx->w[w]);
}

/* Returns 1 when neuron id is inside an agent call (its worker's other
 * thread is still in it), else 0; under its worker's lock. */
int nb_cortex_busy(const nb_cortex_t *cx, nb_id_t id) {
  return id < cx->count && cx->neurons[id]->busy;
}

/* Returns delivered capped to an int. */
static int capped(uint64_t delivered) {
  return delivered > INT32_MAX ? INT32_MAX : (int)delivered;
}

/* Runs one tick of every worker in turn; returns the number of spikes
 * delivered to agents. */
int nb_cortex_tick(nb_cortex_t *cx) {
  uint64_t delivered = 0;
  for (uint32_t w = 0; w < cx->nworkers; w++) {
    int64_t got = tick_worker(cx, w);
    if (got > 0) delivered += (uint64_t)got;
  }
  uint64_t ticks = cx->w[0].stats.ticks;
  if (cx->opts.prune_every && ticks % cx->opts.prune_every == 0)
    nb_cortex_prune(cx);
  return capped(delivered);
}

/* Runs one tick of worker w only; returns the spikes delivered, NB_EBUSY
 * when another thread ticks it, or NB_EINVAL for a worker out of range. */
int nb_cortex_tick_worker(nb_cortex_t *cx, uint32_t w) {
  if (w >= cx->nworkers) return NB_EINVAL;
  int64_t got = tick_worker(cx, w);
  return got < 0 ? NB_EBUSY : capped((uint64_t)got);
}

/* Returns the number of spikes in axons, the injection queue, inboxes,
 * the rings between workers and their parked spikes. */
uint64_t nb_cortex_pending(const nb_cortex_t *cx) {
  uint64_t total = cx->inject_count;
  for (uint32_t i = 0; i < cx->count; i++) {
    const nb_neuron_t *n = cx->neurons[i];
    total += nb_axon_reader_available(n->reader) + n->inbox_count;
  }
  return total + in_flight(cx);
}

/* Ticks until quiescent or max_ticks, then calls each on_stop once; returns
 * the number of ticks run. */
uint64_t nb_cortex_stop(nb_cortex_t *cx, uint64_t max_ticks) {
  uint64_t ran = 0;
  while (ran < max_ticks && nb_cortex_pending(cx)) {
    nb_cortex_tick(cx);
    ran++;
  }
  for (uint32_t i = 0; i < cx->count; i++) {
    nb_neuron_t *n = cx->neurons[i];
    if (n->stop_called) continue;
    n->stop_called = 1;
    if (n->ops.on_stop) n->ops.on_stop(n->agent, n);
  }
  return ran;
}

/* Returns the cortex counters: worker 0's own with one worker, else the
 * sum over workers (ticks: the most any worker ran). */
const nb_cortex_stats_t *nb_cortex_stats(const nb_cortex_t *cx) {
  if (cx->nworkers == 1) return &cx->w[0].stats;
  nb_cortex_stats_t *sum = &((nb_cortex_t *)cx)->sum;
  memset(sum, 0, sizeof *sum);
  for (uint32_t w = 0; w < cx->nworkers; w++) {
    const nb_cortex_stats_t *s = &cx->w[w].stats;
    if (s->ticks > sum->ticks) sum->ticks = s->ticks;
    sum->routed += s->routed;
    sum->dead_letters += s->dead_letters;
    sum->filtered += s->filtered;
    sum->pruned += s->pruned;
    sum->rewards += s->rewards;
  }
  return sum;
}

/* Returns worker w's own counters, or NULL for a worker out of range. */
const nb_cortex_stats_t *nb_cortex_worker_stats(const nb_cortex_t *cx,
                                                uint32_t w) {
  return w < cx->nworkers ? &cx->w[w].stats : NULL;
}

/* Returns the arena given at creation, or NULL. */
nb_arena_t *nb_cortex_arena(const nb_cortex_t *cx) { return cx->opts.arena; }
