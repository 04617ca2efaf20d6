/* nb_frame.c: the wire frame codec.
 *
 * Frame: a 4-byte little-endian length L, the 64-byte spike, then L - 64
 * payload bytes, present only when the spike holds an arena ref (and then
 * exactly ref.len of them). The decoder is a byte-at-a-time state machine
 * over one frame (with a shortcut for a whole payload-less frame at a
 * frame boundary): it accepts the stream cut at any point, and the first
 * inconsistency kills the stream for good, since after a bad length no
 * later byte can be trusted to start a frame. */
#include "nb_frame.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "nb_err.h"

/* Writes v as 4 little-endian bytes, whatever the host order; returns
 * nothing. */
static void put_le32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)v;
  p[1] = (uint8_t)(v >> 8);
  p[2] = (uint8_t)(v >> 16);
  p[3] = (uint8_t)(v >> 24);
}

/* Returns the little-endian uint32 at p. */
static uint32_t get_le32(const uint8_t *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
         (uint32_t)p[3] << 24;
}

int nb_frame_encode(const nb_spike_t *s, uint8_t out[NB_FRAME_SPIKE]) {
  if (nb_spike_is_ref(s)) return NB_EINVAL;
  put_le32(out, NB_SPIKE_SIZE);
  memcpy(out + NB_FRAME_HEADER, nb_spike_as_bytes(s), NB_SPIKE_SIZE);
  return NB_FRAME_SPIKE;
}

int nb_frame_encode_to(const uint8_t spike[NB_SPIKE_SIZE], nb_id_t target,
                       uint8_t out[NB_FRAME_SPIKE]) {
  if (spike[offsetof(nb_spike_t, meta)] >> 2 == NB_LEN_ARENA) return NB_EINVAL;
  put_le32(out, NB_SPIKE_SIZE);
  memcpy(out + NB_FRAME_HEADER, spike, NB_SPIKE_SIZE);
  memcpy(out + NB_FRAME_HEADER + offsetof(nb_spike_t, target), &target,
         sizeof target);
  return NB_FRAME_SPIKE;
}

int nb_frame_encode_head(const nb_spike_t *s, size_t payload_len,
                         uint8_t out[NB_FRAME_SPIKE]) {
  /* Refuse what the decoder would reject, so a bug shows at the sender. */
  nb_arena_ref_t ref;
  if (nb_spike_is_ref(s)) {
    if (nb_spike_get_ref(s, &ref) != 0 || payload_len != ref.len)
      return NB_EINVAL;
  } else if (payload_len != 0) {
    return NB_EINVAL;
  }
  if (payload_len > UINT32_MAX - NB_SPIKE_SIZE) return NB_ETOOBIG;
  put_le32(out, (uint32_t)(NB_SPIKE_SIZE + payload_len));
  memcpy(out + NB_FRAME_HEADER, nb_spike_as_bytes(s), NB_SPIKE_SIZE);
  return NB_FRAME_SPIKE;
}

int nb_frame_encode_bare_ref(const nb_spike_t *s,
                             uint8_t out[NB_FRAME_SPIKE]) {
  nb_arena_ref_t ref;
  if (!nb_spike_is_ref(s) || nb_spike_get_ref(s, &ref) != 0) return NB_EINVAL;
  put_le32(out, NB_SPIKE_SIZE);
  memcpy(out + NB_FRAME_HEADER, nb_spike_as_bytes(s), NB_SPIKE_SIZE);
  return NB_FRAME_SPIKE;
}

void nb_frame_decoder_init(nb_frame_decoder_t *d, uint32_t max_payload) {
  memset(d, 0, sizeof *d);
  /* The frame's byte count (header + spike + payload) lives in 32 bits:
   * capping here keeps it from wrapping on a 4 GiB frame. */
  d->max_payload = max_payload > UINT32_MAX - NB_FRAME_SPIKE
                       ? UINT32_MAX - NB_FRAME_SPIKE
                       : max_payload;
}

void nb_frame_decoder_free(nb_frame_decoder_t *d) {
  free(d->payload);
  d->payload = NULL;
  d->payload_cap = 0;
}

/* Marks the stream dead; returns NB_EFRAME. */
static int frame_fail(nb_frame_decoder_t *d) {
  d->failed = 1;
  return NB_EFRAME;
}

/* Grows the payload buffer to hold n bytes (n <= max_payload); returns 0
 * or NB_ENOMEM with the decoder unchanged. */
static int frame_grow(nb_frame_decoder_t *d, uint32_t n) {
  if (n <= d->payload_cap) return 0;
  /* Doubling amortises a stream of growing payloads; the cap bounds it. */
  uint64_t cap = d->payload_cap ? (uint64_t)d->payload_cap * 2 : 256;
  while (cap < n) cap *= 2;
  if (cap > d->max_payload) cap = d->max_payload;
  uint8_t *p = realloc(d->payload, (size_t)cap);
  if (!p) return NB_ENOMEM;
  d->payload = p;
  d->payload_cap = (uint32_t)cap;
  return 0;
}

/* Checks the complete head (length and spike) of the current frame
 * against each other; returns 0 or NB_EFRAME. */
static int frame_check_head(nb_frame_decoder_t *d) {
  nb_spike_t s;
  if (nb_spike_from_bytes(&s, d->head + NB_FRAME_HEADER) != 0)
    return frame_fail(d);
  uint32_t plen = d->body_len - NB_SPIKE_SIZE;
  if (nb_spike_is_ref(&s)) {
    nb_arena_ref_t ref;
    if (nb_spike_get_ref(&s, &ref) != 0) return frame_fail(d);
    /* Between ends sharing an arena the bytes stay there. */
    if (plen == 0 && d->bare_refs) return 0;
    if (ref.len != plen) return frame_fail(d);
  } else if (plen != 0) {
    return frame_fail(d);
  }
  return 0;
}

/* Copies the spike of the frame at data into *out when data holds that
 * whole frame and it is payload-less with a valid inline spike (length
 * 64, no arena reference); returns 1, else 0 (*out may be written). */
static inline int whole_plain(const uint8_t *data, size_t len, nb_spike_t *out) {
  return len >= NB_FRAME_SPIKE && get_le32(data) == NB_SPIKE_SIZE &&
         nb_spike_from_bytes(out, data + NB_FRAME_HEADER) == 0 &&
         !nb_spike_is_ref(out);
}

int nb_frame_decode(nb_frame_decoder_t *d, const uint8_t *data, size_t len,
                    size_t *used, nb_spike_t *out, const uint8_t **payload,
                    size_t *payload_len) {
  size_t pos = 0;
  *used = 0;
  if (d->failed) return NB_EFRAME;
  /* Between frames, a whole frame of a spike without payload (a busy
   * link's common case) is checked and copied out in place, skipping the
   * head's staging. Anything else, a bad spike included, takes the path
   * below, which reports it. */
  if (d->have == 0 && whole_plain(data, len, out)) {
    *used = NB_FRAME_SPIKE;
    if (payload) *payload = NULL;
    if (payload_len) *payload_len = 0;
    return 1;
  }
  /* Head: length and spike, collected into d->head. */
  while (d->have < NB_FRAME_SPIKE && pos < len) {
    size_t take = NB_FRAME_SPIKE - d->have;
    if (take > len - pos) take = len - pos;
    /* Stop at the end of the length field to check it before the rest. */
    if (d->have < NB_FRAME_HEADER && take > NB_FRAME_HEADER - d->have)
      take = NB_FRAME_HEADER - d->have;
    memcpy(d->head + d->have, data + pos, take);
    d->have += (uint32_t)take;
    pos += take;
    if (d->have == NB_FRAME_HEADER) {
      uint32_t l = get_le32(d->head);
      /* Reject an impossible length at once, before waiting for a body. */
      if (l < NB_SPIKE_SIZE || l - NB_SPIKE_SIZE > d->max_payload) {
        *used = pos;
        return frame_fail(d);
      }
      d->body_len = l;
    }
    if (d->have >= NB_FRAME_HEADER)
      d->need = NB_FRAME_HEADER + d->body_len - d->have;
    if (d->have == NB_FRAME_SPIKE && frame_check_head(d) != 0) {
      *used = pos;
      return NB_EFRAME;
    }
  }
  if (d->have < NB_FRAME_SPIKE) {
    *used = pos;
    return 0;
  }
  /* Payload: the rest of the body (need bytes) goes straight into the
   * payload buffer; with no input left there is nothing to do (and data
   * may be NULL). */
  if (d->need && pos < len) {
    uint32_t plen = d->body_len - NB_SPIKE_SIZE;
    size_t take = d->need < len - pos ? d->need : len - pos;
    /* Grown with what arrived, not what the length announced: a peer
     * that announces a megabyte and sends a byte holds a byte (doubled). */
    int rc = frame_grow(d, plen - d->need + (uint32_t)take);
    if (rc) {
      *used = pos;
      return rc; /* not sticky: the state is intact, call again */
    }
    memcpy(d->payload + (plen - d->need), data + pos, take);
    d->need -= (uint32_t)take;
    d->have += (uint32_t)take;
    pos += take;
  }
  *used = pos;
  if (d->need) return 0;
  /* Complete: hand out the spike (checked with the head) and reset for
   * the next frame. */
  memcpy(out, d->head + NB_FRAME_HEADER, NB_SPIKE_SIZE);
  uint32_t plen = d->body_len - NB_SPIKE_SIZE;
  if (payload) *payload = plen ? d->payload : NULL;
  if (payload_len) *payload_len = plen;
  d->have = 0;
  d->body_len = 0;
  return 1;
}

size_t nb_frame_decode_run(const nb_frame_decoder_t *d, const uint8_t *data,
                           size_t len, nb_spike_t *out, size_t max) {
  if (d->failed || d->have != 0) return 0;
  size_t k = 0;
  while (k < max && whole_plain(data, len, &out[k])) {
    k++;
    data += NB_FRAME_SPIKE;
    len -= NB_FRAME_SPIKE;
  }
  return k;
}
