/* nb_frame.h: the wire frame codec.
 *
 * Frame: 4-byte little-endian length L, then L bytes: the 64-byte spike,
 * then (only when the spike holds an arena ref) the payload's ref.len bytes
 * so large payloads cross hosts. L == 64 for a plain spike. The socket layer
 * lives in the runtime; this module only encodes and decodes. */
#ifndef NB_FRAME_H
#define NB_FRAME_H

#include <stddef.h>
#include <stdint.h>

#include "nb_spike.h"

#define NB_FRAME_HEADER 4
#define NB_FRAME_SPIKE (NB_FRAME_HEADER + NB_SPIKE_SIZE) /* 68 */
/* BEGIN CONSTANTS: copied into lua/neuronbus/layout.lua */
#define NB_FRAME_PAYLOAD_DEFAULT_MAX (1u << 20)
/* END CONSTANTS */

/* Writes the 68-byte frame of a spike whose payload is inline; returns 68,
 * or NB_EINVAL when s holds an arena ref (use nb_frame_encode_head). */
int nb_frame_encode(const nb_spike_t *s, uint8_t out[NB_FRAME_SPIKE]);

/* Writes the 68-byte frame of the spike whose 64 bytes are at spike (as
 * nb_spike_as_bytes gives them), its target replaced by target, in one
 * copy; returns 68, or NB_EINVAL when those bytes hold an arena ref (use
 * nb_frame_encode_head). A sender's queue keeps spikes as bytes. */
int nb_frame_encode_to(const uint8_t spike[NB_SPIKE_SIZE], nb_id_t target,
                       uint8_t out[NB_FRAME_SPIKE]);

/* Writes the 68-byte head of a frame carrying len payload bytes after the
 * spike (the caller sends the payload next); returns 68, or NB_EINVAL when
 * payload_len disagrees with the spike (ref.len for a ref, else 0). */
int nb_frame_encode_head(const nb_spike_t *s, size_t payload_len,
                         uint8_t out[NB_FRAME_SPIKE]);

typedef struct nb_frame_decoder_s {
  uint32_t max_payload; /* largest payload accepted after a spike */
  uint32_t need;        /* bytes of the current frame body still missing */
  uint32_t body_len;    /* L of the current frame */
  uint32_t have;        /* bytes of header + body collected */
  uint8_t head[NB_FRAME_SPIKE];
  uint8_t *payload;     /* grown to max_payload on demand */
  uint32_t payload_cap;
  int failed;           /* sticky: after an error the stream is dead */
  int bare_refs;        /* 1: a 64-byte frame may hold an arena ref whose
                           bytes stay in an arena both ends map (set after
                           the two ends agreed on it); 0 by default */
} nb_frame_decoder_t;

/* Prepares a decoder accepting payloads up to max_payload bytes (0 = only
 * plain 64-byte frames; capped at UINT32_MAX - 68 so a frame's 32-bit byte
 * count never wraps). */
void nb_frame_decoder_init(nb_frame_decoder_t *d, uint32_t max_payload);

/* Frees the decoder's payload buffer; the decoder may be initialized again. */
void nb_frame_decoder_free(nb_frame_decoder_t *d);

/* Writes the 68-byte frame of a ref spike WITHOUT its payload bytes, for a
 * peer that maps the same arena (its decoder has bare_refs set); returns
 * 68, or NB_EINVAL when s holds no ref. */
int nb_frame_encode_bare_ref(const nb_spike_t *s, uint8_t out[NB_FRAME_SPIKE]);

/* Feeds up to len bytes and stops after at most one complete frame;
 * *used gets the bytes consumed. Returns 1 with *out (and *payload and
 * *payload_len, or NULL/0, valid until the next call) when a frame is
 * complete, 0 when more bytes are needed, or NB_EFRAME for a wrong length,
 * an oversized or mismatched payload, or a malformed spike; after an error
 * every later call returns NB_EFRAME. Accepts the stream cut anywhere.
 * NB_ENOMEM (growing the payload buffer) is not sticky: call again. */
int nb_frame_decode(nb_frame_decoder_t *d, const uint8_t *data, size_t len,
                    size_t *used, nb_spike_t *out, const uint8_t **payload,
                    size_t *payload_len);

/* Decodes the run of whole payload-less frames of inline spikes at the
 * start of data, at most max of them, into out[0..k-1], while d is between
 * frames; returns k, having consumed k * NB_FRAME_SPIKE bytes (the caller
 * advances by that, or by fewer whole frames, and decodes the rest again
 * later). Stops, without consuming it, at any other frame (cut by the end
 * of data, carrying a payload or an arena reference, or malformed), which
 * nb_frame_decode then takes (and reports). The same checks as
 * nb_frame_decode, for a receiver's common case in one call. */
size_t nb_frame_decode_run(const nb_frame_decoder_t *d, const uint8_t *data,
                           size_t len, nb_spike_t *out, size_t max);

#endif
