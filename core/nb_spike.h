/* nb_spike.h: the 64-byte spike, the one unit NeuronBus moves.
 *
 * This header is the single source of truth for the wire and memory layout;
 * the Lua cdefs are generated from it (see lua/neuronbus/gen_cdefs.lua) and
 * a spec checks every offset against offsetof(). */
#ifndef NB_SPIKE_H
#define NB_SPIKE_H

#include <stdalign.h>
#include <stddef.h>
#include <stdint.h>

#define NB_SPIKE_SIZE 64
#define NB_PAYLOAD_MAX 46        /* inline payload bytes */
#define NB_BROADCAST 0xFFFFu     /* target id meaning "every outgoing synapse" */
#define NB_LEN_ARENA 63u         /* inline-length value marking an arena ref */
#define NB_ARENA_MARKER 0xA0u    /* first payload byte of an arena ref */

typedef uint16_t nb_id_t;

typedef enum nb_kind_e {
  NB_EXCITATORY = 0,
  NB_INHIBITORY = 1,
  NB_MODULATORY = 2
} nb_kind_t;

/* BEGIN LAYOUT (lua/neuronbus/gen_cdefs.lua copies the structs below) */
typedef struct nb_spike_s {
  alignas(64) uint64_t timestamp_ns; /* monotonic ns when fired */
  uint32_t sequence;                 /* per-source counter */
  uint16_t source;                   /* sender id */
  uint16_t target;                   /* receiver id, NB_BROADCAST = all */
  uint8_t meta;                      /* bits 0-1 kind, bits 2-7 length */
  uint8_t priority;                  /* 0-255 */
  uint8_t payload[46];               /* inline bytes or an arena ref */
} nb_spike_t;

/* Where a large payload lives in an arena. Stored in payload[1..24]. */
typedef struct nb_arena_ref_s {
  uint64_t offset;   /* byte offset in the arena's data region */
  uint32_t len;      /* exact payload length */
  uint32_t segment;  /* index of the (first) segment holding it */
  uint32_t gen;      /* that segment's generation: detects stale refs */
  uint32_t reserved; /* zero */
} nb_arena_ref_t;
/* END LAYOUT */

_Static_assert(sizeof(nb_spike_t) == 64, "spike is one cache line");
_Static_assert(alignof(nb_spike_t) == 64, "spike is cache-line aligned");
_Static_assert(offsetof(nb_spike_t, timestamp_ns) == 0, "layout");
_Static_assert(offsetof(nb_spike_t, sequence) == 8, "layout");
_Static_assert(offsetof(nb_spike_t, source) == 12, "layout");
_Static_assert(offsetof(nb_spike_t, target) == 14, "layout");
_Static_assert(offsetof(nb_spike_t, meta) == 16, "layout");
_Static_assert(offsetof(nb_spike_t, priority) == 17, "layout");
_Static_assert(offsetof(nb_spike_t, payload) == 18, "layout");
_Static_assert(sizeof(nb_arena_ref_t) == 24, "arena ref is 24 bytes");
_Static_assert(1 + sizeof(nb_arena_ref_t) <= NB_PAYLOAD_MAX, "ref fits");

/* Returns the kind (bits 0-1 of meta). */
static inline nb_kind_t nb_spike_kind(const nb_spike_t *s) {
  return (nb_kind_t)(s->meta & 3u);
}

/* Returns 1 when the payload is an arena reference, else 0. */
static inline int nb_spike_is_ref(const nb_spike_t *s) {
  return (s->meta >> 2) == NB_LEN_ARENA;
}

/* Returns the inline payload length (0..46), or 0 for an arena reference.
 * A malformed length (47..62) reads as 46, so no caller reads past the
 * spike. */
static inline size_t nb_spike_inline_len(const nb_spike_t *s) {
  unsigned n = s->meta >> 2;
  if (n == NB_LEN_ARENA) return 0;
  return n > NB_PAYLOAD_MAX ? NB_PAYLOAD_MAX : n;
}

/* Fills s as a zeroed spike to target with kind and priority; returns s. */
nb_spike_t *nb_spike_init(nb_spike_t *s, nb_id_t target, nb_kind_t kind,
                          uint8_t priority);

/* Sets the kind; returns NB_EINVAL for a kind above 2, else 0. */
int nb_spike_set_kind(nb_spike_t *s, nb_kind_t kind);

/* Copies len bytes inline; returns NB_ETOOBIG when len > 46, else 0. The
 * exact length is kept, so binary payloads and trailing zeros survive. */
int nb_spike_set_payload(nb_spike_t *s, const void *data, size_t len);

/* Stores ref as the payload (marker byte 0xA0, then the ref); returns 0. */
int nb_spike_set_ref(nb_spike_t *s, const nb_arena_ref_t *ref);

/* Reads the arena ref out of s; returns NB_ENOTREF when s holds inline data
 * or the marker byte is wrong, else 0. */
int nb_spike_get_ref(const nb_spike_t *s, nb_arena_ref_t *ref);

/* Returns the spike's bytes: the zero-copy view for memcpy or the wire. */
static inline const uint8_t *nb_spike_as_bytes(const nb_spike_t *s) {
  return (const uint8_t *)s;
}

/* Validates the meta byte (and the ref marker) of 64 spike bytes without
 * copying them; returns NB_EINVAL when the kind is 3, the length is
 * between 47 and 62 or a ref lacks its marker, else 0. */
int nb_spike_check(const uint8_t bytes[NB_SPIKE_SIZE]);

/* Copies 64 bytes into out and validates meta (nb_spike_check); returns
 * NB_EINVAL (out untouched) or 0. */
int nb_spike_from_bytes(nb_spike_t *out, const uint8_t bytes[NB_SPIKE_SIZE]);

#endif
