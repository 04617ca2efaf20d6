/* nb_rt_keep.c: payloads an agent keeps past on_spike (spike:keep()).
 *
 * A keep is a copy of the 64-byte spike in the agent's keep table plus,
 * for an arena payload, one reference of its own, so the bytes stay valid
 * until the agent releases the handle (or its state closes: the Lua
 * handle's ffi.gc finalizer releases it). The table is capped per agent
 * (keep_max); every keep records when it was made, so the statistics can
 * name the oldest holder and a keep older than keep_warn is reported once
 * by agent name: a leak is visible, never silently pinned.
 *
 * Handles are (slot, serial) pairs: the serial changes each time a slot is
 * reused, so a stale handle (released twice, or kept from a closed state)
 * is refused instead of releasing someone else's payload. Everything runs
 * on the runtime's one thread. */
#include "nb_rt_internal.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

typedef struct slot_s {
  nb_spike_t s;      /* the spike as it was delivered */
  uint64_t since_ns; /* when it was kept */
  uint32_t serial;   /* 0 = free */
  uint32_t next;     /* free list, when free */
  int reported;      /* the leak report for it was printed */
} slot_t;

struct nb__keep_s {
  slot_t *v;
  uint32_t cap, used, free_head; /* free_head == cap: none free */
  uint32_t serial;               /* last serial handed out */
};

/* Returns a's keep table, made on first use, or NULL when out of memory. */
static struct nb__keep_s *table(nb__agent_t *a) {
  if (!a->keep) a->keep = calloc(1, sizeof *a->keep);
  return a->keep;
}

/* Grows the table to hold at least one more slot; returns 0 or NB_ENOMEM. */
static int grow(struct nb__keep_s *k) {
  uint32_t cap = k->cap ? k->cap * 2 : 16;
  slot_t *v = NULL;
  if (posix_memalign((void **)&v, _Alignof(slot_t), cap * sizeof *v) != 0)
    return NB_ENOMEM;
  if (k->cap) memcpy(v, k->v, k->cap * sizeof *v);
  memset(v + k->cap, 0, (cap - k->cap) * sizeof *v);
  /* Called only with the free list empty (free_head == the old cap, which
   * is the first new slot): the new slots become the free list. */
  for (uint32_t i = k->cap; i < cap; i++) v[i].next = i + 1;
  free(k->v);
  k->v = v;
  k->cap = cap;
  return 0;
}

int nb__keep(nb__agent_t *a, const nb_spike_t *s, uint32_t *serial) {
  if (a->keep && a->keep->used >= a->keep_max) return NB_EKEEPS;
  if (a->keep_max == 0) return NB_EKEEPS;
  struct nb__keep_s *k = table(a);
  if (!k) return NB_ENOMEM;
  if (k->free_head == k->cap && grow(k) != 0) return NB_ENOMEM;
  nb_arena_ref_t ref;
  if (nb_spike_is_ref(s)) {
    if (nb_spike_get_ref(s, &ref) != 0) return NB_EINVAL;
    int rc = nb_arena_retain(a->rt->arena, &ref, 1);
    if (rc != 0) return rc;
  }
  uint32_t i = k->free_head;
  slot_t *sl = &k->v[i];
  k->free_head = sl->next;
  sl->s = *s;
  sl->since_ns = nb_clock_ns();
  if (++k->serial == 0) k->serial = 1;
  sl->serial = k->serial;
  sl->reported = 0;
  k->used++;
  *serial = sl->serial;
  return (int)i;
}

/* Returns the slot of a live handle, or NULL. */
static slot_t *find(const nb__agent_t *a, uint32_t slot, uint32_t serial) {
  const struct nb__keep_s *k = a->keep;
  if (!k || slot >= k->cap || serial == 0 || k->v[slot].serial != serial)
    return NULL;
  return &k->v[slot];
}

const nb_spike_t *nb__keep_spike(const nb__agent_t *a, uint32_t slot,
                                 uint32_t serial) {
  slot_t *sl = find(a, slot, serial);
  return sl ? &sl->s : NULL;
}

int nb__keep_release(nb__agent_t *a, uint32_t slot, uint32_t serial) {
  slot_t *sl = find(a, slot, serial);
  if (!sl) return NB_EINVAL;
  nb_arena_release_spike(a->rt->arena, &sl->s);
  sl->serial = 0;
  sl->next = a->keep->free_head;
  a->keep->free_head = slot;
  a->keep->used--;
  return 0;
}

uint32_t nb__keep_count(const nb__agent_t *a) {
  return a->keep ? a->keep->used : 0;
}

uint64_t nb__keep_oldest(const nb__agent_t *a) {
  const struct nb__keep_s *k = a->keep;
  uint64_t oldest = 0;
  if (!k || !k->used) return 0;
  for (uint32_t i = 0; i < k->cap; i++)
    if (k->v[i].serial && (!oldest || k->v[i].since_ns < oldest))
      oldest = k->v[i].since_ns;
  return oldest;
}

void nb__keep_scan(nb_rt_t *rt, uint64_t now) {
  for (uint32_t id = 0; id < rt->n; id++) {
    nb__agent_t *a = rt->agents[id];
    struct nb__keep_s *k = a->keep;
    if (!k || !k->used || !a->keep_warn_ns) continue;
    uint32_t fresh = 0;
    uint64_t age = 0;
    for (uint32_t i = 0; i < k->cap; i++) {
      slot_t *sl = &k->v[i];
      if (!sl->serial || sl->reported || now - sl->since_ns < a->keep_warn_ns)
        continue;
      sl->reported = 1;
      fresh++;
      if (now - sl->since_ns > age) age = now - sl->since_ns;
    }
    if (!fresh || rt->opts.quiet) continue;
    fprintf(nb__log(stderr), "neuronbus: neuron %s: %u payload%s kept longer than "
            "keep_warn (%.3g s; the oldest for %.3g s), %u kept in all: "
            "release them with handle:release()\n", a->name, fresh,
            fresh == 1 ? "" : "s", (double)a->keep_warn_ns / 1e9,
            (double)age / 1e9, k->used);
    fflush(stderr);
  }
}

void nb__keep_free(nb__agent_t *a) {
  struct nb__keep_s *k = a->keep;
  if (!k) return;
  /* Whatever the closed state did not release (it always does, through
   * its finalizers; this is the safety net behind them). */
  for (uint32_t i = 0; i < k->cap; i++)
    if (k->v[i].serial) nb_arena_release_spike(a->rt->arena, &k->v[i].s);
  free(k->v);
  free(k);
  a->keep = NULL;
}
