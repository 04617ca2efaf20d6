#include "nb_spike.h"

#include <string.h>

#include "nb_err.h"

nb_spike_t *nb_spike_init(nb_spike_t *s, nb_id_t target, nb_kind_t kind,
                          uint8_t priority) {
  memset(s, 0, sizeof *s);
  s->target = target;
  s->meta = (uint8_t)(kind & 3u);
  s->priority = priority;
  return s;
}

int nb_spike_set_kind(nb_spike_t *s, nb_kind_t kind) {
  if ((unsigned)kind > NB_MODULATORY) return NB_EINVAL;
  s->meta = (uint8_t)((s->meta & ~3u) | (unsigned)kind);
  return 0;
}

int nb_spike_set_payload(nb_spike_t *s, const void *data, size_t len) {
  if (len > NB_PAYLOAD_MAX) return NB_ETOOBIG;
  if (len) memcpy(s->payload, data, len);
  /* Zero the tail so equal spikes compare equal byte for byte. */
  memset(s->payload + len, 0, NB_PAYLOAD_MAX - len);
  s->meta = (uint8_t)((s->meta & 3u) | (unsigned)(len << 2));
  return 0;
}

int nb_spike_set_ref(nb_spike_t *s, const nb_arena_ref_t *ref) {
  memset(s->payload, 0, NB_PAYLOAD_MAX);
  s->payload[0] = NB_ARENA_MARKER;
  /* payload is at offset 18, so the ref is unaligned: memcpy, never cast. */
  memcpy(s->payload + 1, ref, sizeof *ref);
  s->meta = (uint8_t)((s->meta & 3u) | (NB_LEN_ARENA << 2));
  return 0;
}

int nb_spike_get_ref(const nb_spike_t *s, nb_arena_ref_t *ref) {
  if (!nb_spike_is_ref(s) || s->payload[0] != NB_ARENA_MARKER)
    return NB_ENOTREF;
  memcpy(ref, s->payload + 1, sizeof *ref);
  return 0;
}

int nb_spike_check(const uint8_t bytes[NB_SPIKE_SIZE]) {
  unsigned kind = bytes[16] & 3u, len = bytes[16] >> 2;
  if (kind == 3u) return NB_EINVAL;
  if (len > NB_PAYLOAD_MAX && len != NB_LEN_ARENA) return NB_EINVAL;
  if (len == NB_LEN_ARENA && bytes[18] != NB_ARENA_MARKER) return NB_EINVAL;
  return 0;
}

int nb_spike_from_bytes(nb_spike_t *out, const uint8_t bytes[NB_SPIKE_SIZE]) {
  if (nb_spike_check(bytes) != 0) return NB_EINVAL;
  memcpy(out, bytes, NB_SPIKE_SIZE);
  return 0;
}
