/* nb_rt_ffi.c: the functions agent states call through the FFI (declared
 * in nb_rt_ffi.h): firing, payloads, lookup and discovery, cards, and the
 * layout check. Everything here runs on the hot path of an agent or is
 * read once at boot. */
#include "nb_rt_internal.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <lua.h>

void *nb_rt_lua_newstate_addr(void) {
  /* Function to object pointer through a union: defined in practice. */
  union { lua_State *(*fn)(lua_Alloc, void *); void *p; } u;
  u.fn = lua_newstate;
  return u.p;
}

uint64_t nb_rt_now_ns(void) { return nb_clock_ns(); }

nb_rt_layout_t *nb_rt_layout(nb_rt_layout_t *o) {
  o->size = sizeof(nb_spike_t);
  o->align = _Alignof(nb_spike_t);
  o->timestamp_ns = offsetof(nb_spike_t, timestamp_ns);
  o->sequence = offsetof(nb_spike_t, sequence);
  o->source = offsetof(nb_spike_t, source);
  o->target = offsetof(nb_spike_t, target);
  o->meta = offsetof(nb_spike_t, meta);
  o->priority = offsetof(nb_spike_t, priority);
  o->payload = offsetof(nb_spike_t, payload);
  o->payload_size = sizeof(((nb_spike_t *)0)->payload);
  o->ref_size = sizeof(nb_arena_ref_t);
  o->ref_offset = offsetof(nb_arena_ref_t, offset);
  o->ref_len = offsetof(nb_arena_ref_t, len);
  o->ref_segment = offsetof(nb_arena_ref_t, segment);
  o->ref_gen = offsetof(nb_arena_ref_t, gen);
  o->ref_reserved = offsetof(nb_arena_ref_t, reserved);
  return o;
}

/* nb_rt_fire for a recording runtime: builds the spike on the stack, fires
 * it and records it; returns as nb_rt_fire. Out of line: its 64-byte
 * aligned local made the common path realign the stack on every call. */
static __attribute__((noinline)) int fire_recorded(nb__agent_t *a, uint32_t target,
                                                   int kind, int priority,
                                                   const char *data, size_t len) {
  nb_spike_t s;
  nb_spike_init(&s, (nb_id_t)target, (nb_kind_t)kind, (uint8_t)priority);
  int rc = nb_neuron_put_payload(a->neuron, &s, data, len);
  if (rc) return rc;
  rc = nb_neuron_fire(a->neuron, &s);
  if (rc) {
    nb_arena_release_spike(a->rt->arena, &s);
    return rc;
  }
  nb__record(&a->rec[1], &s, 1.0f, data, len);
  return 0;
}

int nb_rt_fire(nb_rt_cell_t *cell, uint32_t target, int kind, int priority,
               const char *data, size_t len) {
  nb__agent_t *a = (nb__agent_t *)cell;
  nb_rt_t *rt = a->rt;
  if ((unsigned)kind > NB_MODULATORY || (unsigned)priority > 255u)
    return NB_EINVAL;
  if (target != NB_BROADCAST && target >= rt->n) return NB_ENOENT;
  if (len && !data) return NB_EINVAL;
  if (rt->opts.record) return fire_recorded(a, target, kind, priority, data, len);
  /* Build the spike in the axon slot, with the same bytes and results,
   * instead of copying one built on the stack (the copy's wide loads
   * stalled on the builder's narrow stores); a full axon spends no arena
   * space. */
  return nb_neuron_fire_ex(a->neuron, (nb_id_t)target, (nb_kind_t)kind,
                           (uint8_t)priority, data, len);
}

int nb_rt_payload(const nb_rt_cell_t *cell, const nb_spike_t *s,
                  const char **data, size_t *len) {
  const void *p = NULL;
  nb_arena_t *arena = cell ? ((const nb__agent_t *)cell)->rt->arena : NULL;
  int rc = nb_arena_get_payload(arena, s, &p, len);
  *data = p;
  return rc;
}

int nb_rt_keep(nb_rt_cell_t *cell, const nb_spike_t *s, nb_rt_kept_t *out) {
  if (!cell || !s || !out) return NB_EINVAL;
  int slot = nb__keep((nb__agent_t *)cell, s, &out->serial);
  if (slot < 0) return slot;
  out->slot = (uint32_t)slot;
  return 0;
}

const nb_spike_t *nb_rt_kept_spike(const nb_rt_cell_t *cell,
                                   const nb_rt_kept_t *k) {
  if (!cell || !k) return NULL;
  return nb__keep_spike((const nb__agent_t *)cell, k->slot, k->serial);
}

int nb_rt_kept_release(nb_rt_cell_t *cell, nb_rt_kept_t *k) {
  if (!cell || !k) return NB_EINVAL;
  int rc = nb__keep_release((nb__agent_t *)cell, k->slot, k->serial);
  k->serial = 0;
  return rc;
}

int nb_rt_payload_valid(const nb_rt_cell_t *cell, const nb_spike_t *s) {
  nb_arena_ref_t ref;
  if (!nb_spike_is_ref(s)) return 0;
  if (!cell || nb_spike_get_ref(s, &ref) != 0) return NB_EINVAL;
  return nb_arena_valid(((const nb__agent_t *)cell)->rt->arena, &ref);
}

int nb_rt_lookup(const nb_rt_cell_t *cell, const char *name) {
  return nb_rt_id(((const nb__agent_t *)cell)->rt, name);
}

size_t nb_rt_find(const nb_rt_cell_t *cell, int region, const char *what,
                  uint16_t *out, size_t max) {
  nb_rt_t *rt = ((const nb__agent_t *)cell)->rt;
  size_t n = region ? nb_cortex_region(rt->cx, what, NULL, 0)
                    : nb_cortex_discover(rt->cx, what, NULL, 0);
  if (!rt->link || !n) {
    return region ? nb_cortex_region(rt->cx, what, out, max)
                  : nb_cortex_discover(rt->cx, what, out, max);
  }
  /* Neurons of NATS peers that left are not found (nb__link_hidden). */
  uint16_t *all = malloc(n * sizeof *all);
  if (!all) return 0;
  n = region ? nb_cortex_region(rt->cx, what, all, n)
             : nb_cortex_discover(rt->cx, what, all, n);
  size_t k = 0;
  for (size_t i = 0; i < n; i++) {
    if (nb__link_hidden(rt, all[i])) continue;
    if (out && k < max) out[k] = all[i];
    k++;
  }
  free(all);
  return k;
}

const char *nb_rt_card_name(const nb_rt_cell_t *cell, uint32_t id) {
  return nb_rt_name(((const nb__agent_t *)cell)->rt, id);
}

const char *nb_rt_card_tag(const nb_rt_cell_t *cell, uint32_t id, int which,
                           size_t i) {
  nb_rt_t *rt = ((const nb__agent_t *)cell)->rt;
  if (id >= rt->n || which < 0 || which > 1) return NULL;
  nb__agent_t *b = rt->agents[id];
  return i < b->ntags[which] ? b->tags[which][i] : NULL;
}
