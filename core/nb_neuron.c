/* nb_neuron.c: integrate-and-fire dynamics, the neuron's lifetime, and the
 * handle through which an agent fires spikes into its own axon. */
#include "nb_neuron.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "nb__axon_internal.h"
#include "nb__neuron_internal.h"
#include "nb_clock.h"
#include "nb_err.h"

/* ---- integrate-and-fire ---- */

/* Returns the reference defaults (DESIGN 9). */
nb_if_params_t nb_if_params_default(void) {
  nb_if_params_t p = {.threshold = 1.0f, .rest = 0.0f, .leak = 0.95f,
                      .refractory = 2};
  return p;
}

/* Returns NB_EINVAL for a NULL pointer, a non-finite number or a leak
 * outside [0, 1], else 0. */
int nb_if_params_check(const nb_if_params_t *p) {
  if (!p) return NB_EINVAL;
  if (!isfinite(p->threshold) || !isfinite(p->rest) || !isfinite(p->leak))
    return NB_EINVAL;
  if (p->leak < 0.0f || p->leak > 1.0f) return NB_EINVAL;
  return 0;
}

/* Sets s to rest with params p (NULL = defaults); returns nothing. */
void nb_if_init(nb_if_t *s, const nb_if_params_t *p) {
  s->p = p ? *p : nb_if_params_default();
  s->potential = s->p.rest;
  s->refractory_left = 0;
}

/* Moves the potential by weight according to kind; returns nothing. */
void nb_if_integrate(nb_if_t *s, nb_kind_t kind, float weight) {
  if (kind == NB_EXCITATORY) {
    s->potential += weight;
  } else if (kind == NB_INHIBITORY) {
    s->potential -= weight;
    /* The floor keeps a burst of inhibition from silencing a neuron for
     * an unbounded number of ticks. */
    float floor = s->p.rest - 1.0f;
    if (s->potential < floor) s->potential = floor;
  }
}

/* Returns 1 and resets to rest with the refractory period when the
 * potential reached the threshold, else leaks towards rest and returns 0. */
int nb_if_step(nb_if_t *s) {
  if (s->potential >= s->p.threshold) {
    s->potential = s->p.rest;
    s->refractory_left = s->p.refractory;
    return 1;
  }
  s->potential = s->p.rest + (s->potential - s->p.rest) * s->p.leak;
  return 0;
}

/* ---- lifetime ---- */

/* Returns 0 when card can be registered, else NB_EINVAL. */
int nb__card_check(const nb_card_t *card) {
  if (!card || !card->name || !card->name[0]) return NB_EINVAL;
  if (card->ncapabilities > NB_CARD_MAX_TAGS ||
      card->nregions > NB_CARD_MAX_TAGS)
    return NB_EINVAL;
  for (size_t i = 0; i < card->ncapabilities; i++)
    if (!card->capabilities[i]) return NB_EINVAL;
  for (size_t i = 0; i < card->nregions; i++)
    if (!card->regions[i]) return NB_EINVAL;
  return 0;
}

/* Appends s with its terminator at *at; returns the copy. */
static const char *copy_string(char **at, const char *s) {
  size_t len = strlen(s) + 1;
  char *dst = *at;
  memcpy(dst, s, len);
  *at += len;
  return dst;
}

/* Deep-copies card into n->card with all strings in one block; returns 0
 * or NB_ENOMEM. */
static int copy_card(nb_neuron_t *n, const nb_card_t *card) {
  size_t total = strlen(card->name) + 1;
  for (size_t i = 0; i < card->ncapabilities; i++)
    total += strlen(card->capabilities[i]) + 1;
  for (size_t i = 0; i < card->nregions; i++)
    total += strlen(card->regions[i]) + 1;
  n->strings = malloc(total);
  if (!n->strings) return NB_ENOMEM;
  char *at = n->strings;
  memset(&n->card, 0, sizeof n->card);
  n->card.name = copy_string(&at, card->name);
  n->card.id = n->id;
  n->card.version = card->version;
  n->card.ncapabilities = card->ncapabilities;
  n->card.nregions = card->nregions;
  for (size_t i = 0; i < card->ncapabilities; i++)
    n->card.capabilities[i] = copy_string(&at, card->capabilities[i]);
  for (size_t i = 0; i < card->nregions; i++)
    n->card.regions[i] = copy_string(&at, card->regions[i]);
  return 0;
}

/* Returns 0 with *out set to a new neuron, NB_EINVAL or NB_ENOMEM. */
int nb__neuron_new(nb_neuron_t **out, nb_id_t id, const nb_card_t *card,
                   const nb_if_params_t *params, const nb_agent_ops_t *ops,
                   void *agent, uint32_t axon_capacity,
                   uint32_t inbox_capacity, nb_arena_t *arena) {
  *out = NULL;
  if (nb__card_check(card) != 0) return NB_EINVAL;
  if (params && nb_if_params_check(params) != 0) return NB_EINVAL;
  if (inbox_capacity == 0) return NB_EINVAL;
  nb_neuron_t *n = calloc(1, sizeof *n);
  if (!n) return NB_ENOMEM;
  n->id = id;
  n->agent = agent;
  n->arena = arena;
  if (ops) n->ops = *ops;
  nb_if_init(&n->ifs, params);
  int rc = copy_card(n, card);
  if (rc != 0) goto fail;
  nb_axon_opts_t ao = nb_axon_opts_default();
  ao.capacity = axon_capacity;
  ao.mode = NB_AXON_GATED;
  rc = nb_axon_new(&n->axon, &ao);
  if (rc != 0) goto fail;
  /* The cortex's reader exists before anyone can fire, so the gated axon
   * never runs ahead of it and nothing fired is ever unread. */
  rc = nb_axon_reader_attach(n->axon, &n->reader);
  if (rc != 0) goto fail;
  n->inbox_cap = inbox_capacity;
  n->inbox = aligned_alloc(alignof(nb_spike_t),
                           (size_t)inbox_capacity * sizeof(nb_spike_t));
  n->inbox_w = malloc((size_t)inbox_capacity * sizeof(float));
  if (!n->inbox || !n->inbox_w) {
    rc = NB_ENOMEM;
    goto fail;
  }
  *out = n;
  return 0;
fail:
  nb__neuron_free(n);
  return rc;
}

/* Frees n and everything it owns; returns nothing. */
void nb__neuron_free(nb_neuron_t *n) {
  if (!n) return;
  if (n->reader) nb_axon_reader_detach(n->reader);
  if (n->axon) nb_axon_free(n->axon);
  nb_arena_writer_free(n->own_writer);
  free(n->inbox);
  free(n->inbox_w);
  free(n->strings);
  free(n);
}

/* ---- the handle ---- */

/* Returns the neuron's id. */
nb_id_t nb_neuron_id(const nb_neuron_t *n) { return n->id; }

/* Returns the neuron's name (owned by the neuron). */
const char *nb_neuron_name(const nb_neuron_t *n) { return n->card.name; }

/* Returns the neuron's own copy of its card. */
const nb_card_t *nb_neuron_card(const nb_neuron_t *n) { return &n->card; }

/* Returns the neuron's counters. */
uint64_t nb_neuron_last_fire_ns(const nb_neuron_t *n) {
  return n->last_fire_ns;
}

const nb_neuron_stats_t *nb_neuron_stats(const nb_neuron_t *n) {
  return &n->stats;
}

/* Returns the spikes waiting in n's axon (see nb_neuron.h). */
uint64_t nb_neuron_axon_depth(const nb_neuron_t *n) {
  return n->reader ? nb__axon_reader_behind(n->reader) : 0;
}

/* Returns the neuron's integrate-and-fire state. */
nb_if_t *nb_neuron_if(nb_neuron_t *n) { return &n->ifs; }

void nb_neuron_hold(nb_neuron_t *n, int held) { n->held = held != 0; }

int nb_neuron_held(const nb_neuron_t *n) { return n->held; }

/* Returns the neuron's output axon. */
nb_axon_t *nb_neuron_axon(nb_neuron_t *n) { return n->axon; }

/* Returns the embedder's agent pointer. */
void *nb_neuron_agent(const nb_neuron_t *n) { return n->agent; }

/* Sets the card's version; returns nothing. */
void nb_neuron_set_version(nb_neuron_t *n, uint32_t version) {
  n->card.version = version;
}

/* Adds one to a counter that only the firing thread writes; returns
 * nothing. A relaxed atomic store keeps readers on other threads from
 * seeing a torn value without costing a read-modify-write. */
static inline void bump_producer_stat(uint64_t *c) {
  __atomic_store_n(c, __atomic_load_n(c, __ATOMIC_RELAXED) + 1,
                   __ATOMIC_RELAXED);
}

/* Claims the axon's next slot for n; returns it, or NULL (counted in
 * stats.full) when the axon is full. */
static inline nb_spike_t *claim_slot(nb_neuron_t *n) {
  nb_spike_t *slot = nb__axon_claim(n->axon);
  if (!slot) bump_producer_stat(&n->stats.full);
  return slot;
}

/* Publishes the claimed slot and consumes the sequence it carries;
 * returns 0. */
static inline int commit_slot(nb_neuron_t *n) {
  nb__axon_commit1(n->axon);
  n->next_seq++;
  bump_producer_stat(&n->stats.spikes_out);
  return 0;
}

_Thread_local uint64_t nb__tick_now;

/* Stamps s with n's source, next sequence and the time (the spike clock,
 * or the tick's, see NB_SPIKE_TIME_TICK), later than any timestamp n
 * fired before, so two spikes of one source never share a time; returns
 * s. */
static inline nb_spike_t *stamp(nb_neuron_t *n, nb_spike_t *s) {
  uint64_t now = nb__tick_now;
  if (!now) now = nb__clock_at(&n->clock);
  if (now <= n->last_stamp_ns) now = n->last_stamp_ns + 1;
  n->last_stamp_ns = now;
  s->source = n->id;
  s->sequence = n->next_seq;
  s->timestamp_ns = now;
  return s;
}

/* Returns 1 when s's meta byte is well formed, as nb_spike_from_bytes
 * judges it (kind 0..2, inline length 0..46, or 63 with the ref marker). */
static int meta_ok(const nb_spike_t *s) {
  unsigned kind = s->meta & 3u, len = (unsigned)s->meta >> 2;
  if (kind == 3u) return 0;
  if (len == NB_LEN_ARENA) return s->payload[0] == NB_ARENA_MARKER;
  return len <= NB_PAYLOAD_MAX;
}

/* Stamps *s and publishes it; returns 0, NB_EINVAL for a malformed meta
 * byte, or NB_EFULL (nothing sent, the sequence not consumed, *s
 * untouched). */
int nb_neuron_fire(nb_neuron_t *n, nb_spike_t *s) {
  /* A hand-built spike is the one way into an axon that no builder
   * checked: an inline length of 47..62 would reach agents as a payload
   * running past the spike. */
  if (!meta_ok(s)) return NB_EINVAL;
  nb_spike_t *slot = claim_slot(n);
  if (!slot) return NB_EFULL;
  /* Copy first, stamp the slot, then write the stamps back: stamping *s
   * first made the 64-byte copy load across fresh 8-byte stores, a
   * store-forwarding stall that was three quarters of this function. */
  *slot = *s;
  stamp(n, slot);
  s->source = slot->source;
  s->sequence = slot->sequence;
  s->timestamp_ns = slot->timestamp_ns;
  return commit_slot(n);
}

/* Copies len <= NB_PAYLOAD_MAX bytes from src to dst (src may be NULL when
 * len is 0) with at most two overlapping loads per size class instead of a
 * call; returns nothing. */
static inline void copy_small(uint8_t *dst, const void *src, size_t len) {
  const uint8_t *s = src;
  if (len >= 16) {
    memcpy(dst, s, len);
  } else if (len >= 8) {
    uint64_t a, b;
    memcpy(&a, s, 8);
    memcpy(&b, s + len - 8, 8);
    memcpy(dst, &a, 8);
    memcpy(dst + len - 8, &b, 8);
  } else if (len >= 4) {
    uint32_t a, b;
    memcpy(&a, s, 4);
    memcpy(&b, s + len - 4, 4);
    memcpy(dst, &a, 4);
    memcpy(dst + len - 4, &b, 4);
  } else {
    for (size_t i = 0; i < len; i++) dst[i] = s[i];
  }
}

/* The calling thread's writer (nb_neuron_thread_writer), NULL for none. */
static _Thread_local nb_arena_writer_t *thread_writer;

void nb_neuron_thread_writer(nb_arena_writer_t *w) { thread_writer = w; }

int nb_neuron_put_payload(nb_neuron_t *n, nb_spike_t *s, const void *data,
                          size_t len) {
  /* A neuron may fire from several threads in turn (a worker ticked by
   * another thread while its own is stuck in a call): a writer is only
   * ever bumped by one thread, so the thread's writer wins. */
  nb_arena_writer_t *w = thread_writer && thread_writer->a == n->arena
                             ? thread_writer
                             : n->writer;
  if (!w && n->arena && len > NB_PAYLOAD_MAX) {
    int rc = nb_arena_writer_new(&n->own_writer, n->arena);
    if (rc != 0) return rc;
    w = n->writer = n->own_writer;
  }
  int rc = nb_arena_put_payload(w, s, data, len);
  if (rc == NB_ENOSPACE) bump_producer_stat(&n->stats.arena_full);
  return rc;
}

/* Builds the spike directly in the axon slot (no copy, and no arena space
 * spent when the axon is full); returns 0, NB_EINVAL, NB_EFULL, or the
 * arena's error (the slot then stays unpublished). */
int nb_neuron_fire_ex(nb_neuron_t *n, nb_id_t target, nb_kind_t kind,
                      uint8_t priority, const void *payload, size_t len) {
  if ((unsigned)kind > NB_MODULATORY) return NB_EINVAL;
  if (len && !payload) return NB_EINVAL;
  nb_spike_t *slot = claim_slot(n);
  if (!slot) return NB_EFULL;
  /* As nb_spike_init and nb_arena_put_payload, inline: the slot is zeroed
   * whole, so an inline payload needs no tail zeroing, and its few bytes
   * are copied without a library call. */
  memset(slot, 0, sizeof *slot);
  slot->target = target;
  slot->priority = priority;
  if (len <= NB_PAYLOAD_MAX) {
    copy_small(slot->payload, payload, len);
    slot->meta = (uint8_t)(((unsigned)kind & 3u) | (unsigned)(len << 2));
  } else {
    slot->meta = (uint8_t)((unsigned)kind & 3u);
    int rc = nb_neuron_put_payload(n, slot, payload, len);
    if (rc != 0) return rc;
  }
  stamp(n, slot);
  return commit_slot(n);
}

/* Fires an excitatory priority-0 spike to target; returns as fire_ex. */
int nb_neuron_fire_to(nb_neuron_t *n, nb_id_t target, const void *payload,
                      size_t len) {
  return nb_neuron_fire_ex(n, target, NB_EXCITATORY, 0, payload, len);
}

/* Fires an excitatory priority-0 spike to every outgoing synapse; returns
 * as fire_ex. */
int nb_neuron_broadcast(nb_neuron_t *n, const void *payload, size_t len) {
  return nb_neuron_fire_ex(n, NB_BROADCAST, NB_EXCITATORY, 0, payload, len);
}

/* Makes n write large payloads through w; returns nothing. */
void nb_neuron_set_writer(nb_neuron_t *n, nb_arena_writer_t *w) {
  n->writer = w ? w : n->own_writer;
}

/* Resolves s's payload through the cortex's arena; returns 0, NB_ESTALE,
 * NB_EBOUNDS, or NB_EINVAL for a reference with no arena. */
int nb_neuron_payload(const nb_neuron_t *n, const nb_spike_t *s,
                      const void **data, size_t *len) {
  return nb_arena_get_payload(n->arena, s, data, len);
}
