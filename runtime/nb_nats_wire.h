/* nb_nats_wire.h: the bytes NeuronBus runtimes exchange over NATS, as pure
 * functions (no libnats here): fuzzed by spec/fuzz/fuzz_nats.c.
 *
 * Every message starts with the same head (integers little-endian):
 *   u32 magic "NBNA" | u8 version (1) | u8 type | u16 flags (0)
 *   u64 incarnation of the sender (random, nonzero, one per process)
 *   u64 a | u64 b | u32 count | u32 body length (exact)
 *   u8 n, n bytes: the sender's cortex name (1..255 bytes)
 * then the body:
 *   BATCH  a = seq of the first spike, b = the sender's lowest unacked seq
 *          (a receiver that knows nothing of this incarnation starts
 *          there; b < a + count: a batch sent again may start below it),
          count spikes as TCP frames (nb_frame.h: u32 length,
 *          the 64-byte spike, the payload bytes of an arena ref).
 *   ACK    a = the highest seq accepted, in order, from the incarnation b
 *          of the receiver of this ack; no body.
 *   CARD   a = the announce period in ms; count neurons, each
 *          u16 id | u8 n, name | u8 nc, nc x (u8 n, capability) |
 *          u8 nr, nr x (u8 n, region). BYE (a runtime leaving) has none.
 *   REGION a = b = 0; body: u8 n, n bytes: the region path (0..255 bytes,
 *          no control characters), then count spikes as in a BATCH, for
 *          every neuron of that subtree in the runtimes that receive it
 *          (published once on the region's subject; not acknowledged).
 * Names are 1..255 bytes, ids below NB_LINK_CTRL_ID, unique. */
#ifndef NB_NATS_WIRE_H
#define NB_NATS_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include "nb_frame.h"
#include "nb_spike.h"

#define NB_NATS_MAGIC 0x414e424eu /* "NBNA" little-endian */
#define NB_NATS_VERSION 1u
#define NB_NATS_HEAD 40u          /* the fixed part, before the name */
#define NB_NATS_TAGS_MAX 16u      /* capabilities or regions per neuron */

typedef enum nb_nats_type_e {
  NB_NATS_BATCH = 1,
  NB_NATS_ACK = 2,
  NB_NATS_CARD = 3,
  NB_NATS_BYE = 4,
  NB_NATS_REGION = 5
} nb_nats_type_t;

typedef struct nb_nats_head_s {
  uint8_t type;
  uint64_t inc, a, b;
  uint32_t count, body_len;
  char cortex[256];
  const uint8_t *body; /* into the message */
} nb_nats_head_t;

/* Writes the head of a message into out (room for NB_NATS_HEAD + 1 + 255
 * bytes); returns its length, or NB_EINVAL for a bad name. */
int nb_nats_head_encode(uint8_t *out, uint8_t type, uint64_t inc, uint64_t a,
                        uint64_t b, uint32_t count, uint32_t body_len,
                        const char *cortex);

/* Patches the count, body length and b of an encoded head (a batch grown
 * or resent); returns nothing. */
void nb_nats_head_patch(uint8_t *msg, uint64_t b, uint32_t count,
                        uint32_t body_len);

/* Parses the head of a message of len bytes; returns 0 or NB_EFRAME with
 * *why naming the fault (bad magic, version, type, name, lengths). */
int nb_nats_head_decode(const uint8_t *msg, size_t len, nb_nats_head_t *h,
                        const char **why);

/* One spike of a batch body. */
typedef struct nb_nats_rec_s {
  nb_spike_t spike;
  const uint8_t *payload; /* bytes of an arena ref, else NULL */
  size_t len;
} nb_nats_rec_t;

/* Reads the next spike of a batch body at *off (advanced past it);
 * returns 1 with *r, 0 at the end, or NB_EFRAME (a bad length, payload
 * over max_payload, a malformed spike, bytes after the count). */
int nb_nats_batch_next(const nb_nats_head_t *h, size_t *off, uint32_t *seen,
                       uint32_t max_payload, nb_nats_rec_t *r,
                       const char **why);

/* Checks a whole batch (every spike, the count exact); returns 0 or
 * NB_EFRAME with *why. */
int nb_nats_batch_check(const nb_nats_head_t *h, uint32_t max_payload,
                        const char **why);

/* Reads the region path of a REGION message into path (256 bytes) and
 * sets *off to where its spikes start; returns 0 or NB_EFRAME with *why. */
int nb_nats_region_path(const nb_nats_head_t *h, char *path, size_t *off,
                        const char **why);

/* Checks a whole REGION message (the path and every spike); returns 0 or
 * NB_EFRAME with *why. */
int nb_nats_region_check(const nb_nats_head_t *h, uint32_t max_payload,
                         const char **why);

/* Writes the subject of region path under root into out (cap bytes): root
 * ".region" then one token per non-empty segment (nb_nats_token); returns 0
 * or NB_ETOOBIG. */
int nb_nats_region_subject(const char *root, const char *path, char *out,
                           size_t cap);

/* One neuron of a card. */
typedef struct nb_nats_neuron_s {
  nb_id_t id;
  char name[256];
  uint8_t ncap, nreg;
  char caps[NB_NATS_TAGS_MAX][256];
  char regs[NB_NATS_TAGS_MAX][256];
} nb_nats_neuron_t;

/* Appends one neuron to a card body in buf (*len bytes used of cap);
 * returns 0, NB_EINVAL (a bad name or tag, too many tags) or NB_ETOOBIG. */
int nb_nats_card_add(uint8_t *buf, size_t cap, size_t *len,
                     const nb_nats_neuron_t *n);

/* Reads the next neuron of a card at *off; returns 1 with *n, 0 at the
 * end, or NB_EFRAME with *why. */
int nb_nats_card_next(const nb_nats_head_t *h, size_t *off, uint32_t *seen,
                      nb_nats_neuron_t *n, const char **why);

/* Checks a whole card (names valid, ids and names unique); returns 0 or
 * NB_EFRAME with *why. */
int nb_nats_card_check(const nb_nats_head_t *h, const char **why);

/* Writes the subject token for a name into out (cap bytes): the name when
 * it is only [A-Za-z0-9_-], else "x" and its bytes in hex, so a cortex or
 * region named with dots, spaces or wildcards stays one token. Returns 0
 * or NB_ETOOBIG. */
int nb_nats_token(const char *name, char *out, size_t cap);

#endif
