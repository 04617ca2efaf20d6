/* nb_link_wire.h: the bytes of a NeuronBus TCP link, as pure functions.
 *
 * No sockets here (no libuv): the handshake codec, the ack frame, the URL
 * parser and the receive state machine the link feeds with whatever the
 * socket delivered. Everything is fuzzed by spec/fuzz/fuzz_frames.c.
 *
 * A connection carries, in each direction, one HELLO and then frames
 * (nb_frame.h: 4-byte LE length, the 64-byte spike, and the payload
 * bytes when the spike holds an arena ref). The connecting side sends its
 * HELLO first; the accepting side answers once it knows who called, since
 * its HELLO carries how many frames it already received from that peer.
 *
 * HELLO (all integers little-endian):
 *   u32 magic "NBLK" | u16 version | u16 flags | u32 body length
 *   body: u64 incarnation (random, nonzero: one per running node)
 *         u64 peer incarnation (whose frames recv_seq counts; 0 = none)
 *         u64 recv_seq (data frames accepted from that incarnation)
 *         u32 max_payload (largest payload this side accepts)
 *         u8 n, n bytes: the cortex name
 *         u32 count, then count x { u16 id, u8 n, n bytes }: the neuron
 *         names this side exposes with their ids
 *         only with flag NB_LINK_F_ARENA (the sender's payload arena is a
 *         file it can share with a peer on the same host):
 *         u64 dev, u64 inode (of the arena file), u64 capacity,
 *         u8 n, n bytes: the host's boot id (same kernel, same boot)
 *   Names are 1..255 bytes of UTF-8 with no control characters; ids are below
 *   NB_LINK_CTRL_ID; names and ids are unique; the body length is exact;
 *   other flags are refused (a later version's features).
 *
 * Two ends whose HELLOs carry the same arena identity map the same file:
 * a ref spike then travels as a bare 68-byte frame (nb_frame_encode_
 * bare_ref), its bytes staying in the shared arena; otherwise (and always
 * between hosts) the bytes follow the spike.
 *
 * Control frames are plain 68-byte frames whose spike has source and target
 * NB_LINK_CTRL_ID (never a neuron exposed on a link): payload byte 0 is the
 * type, 1 = ACK, then a u64 cumulative count of data frames accepted. */
#ifndef NB_LINK_WIRE_H
#define NB_LINK_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include "nb_spike.h"
#include "nb_frame.h"

#define NB_LINK_MAGIC 0x4b4c424eu /* "NBLK" little-endian */
#define NB_LINK_VERSION 1u
#define NB_LINK_HELLO_HEAD 12u
#define NB_LINK_HELLO_MAX (1u << 20) /* largest HELLO body accepted */
#define NB_LINK_NAME_MAX 255u
#define NB_LINK_CTRL_ID 0xFFFEu /* source and target of control frames */
#define NB_LINK_CTRL_ACK 1u
#define NB_LINK_F_ARENA 0x0001u /* the HELLO ends with an arena identity */
#define NB_LINK_HOST_MAX 64u    /* bytes of the host id in the HELLO */

typedef struct nb_link_name_s {
  const char *name; /* NUL-terminated, 1..255 bytes */
  nb_id_t id;
} nb_link_name_t;

/* What makes two processes' arenas the same memory. */
typedef struct nb_link_arena_id_s {
  uint64_t dev, ino;  /* of the arena file */
  uint64_t capacity;  /* data bytes, as its header says */
  char host[NB_LINK_HOST_MAX + 1]; /* the boot id: 1..64 printable bytes */
} nb_link_arena_id_t;

/* Returns 1 when the n bytes at p make a valid cortex or neuron name
 * (1..NB_LINK_NAME_MAX bytes of well-formed UTF-8 without control
 * characters: always safe to log and to put in JSON), else 0. */
int nb_link_name_ok(const char *p, size_t n);

/* Returns 1 when a and b name the same arena file on the same host, else
 * 0. */
int nb_link_arena_same(const nb_link_arena_id_t *a,
                       const nb_link_arena_id_t *b);

typedef struct nb_link_hello_s {
  uint16_t version;
  uint16_t flags;
  uint64_t incarnation;
  uint64_t peer_incarnation;
  uint64_t recv_seq;
  uint32_t max_payload;
  char cortex[NB_LINK_NAME_MAX + 1];
  uint32_t count;
  nb_link_name_t *names; /* count entries (parsed: one allocation holding
                            the names too, see nb_link_hello_free) */
  nb_link_arena_id_t arena; /* with flags & NB_LINK_F_ARENA */
} nb_link_hello_t;

/* Returns the encoded size of h in bytes (header included). */
size_t nb_link_hello_size(const nb_link_hello_t *h);

/* Writes h (version NB_LINK_VERSION unless h->version is set) into out;
 * returns the bytes written, NB_ETOOBIG when cap is too small or the body
 * exceeds NB_LINK_HELLO_MAX, or NB_EINVAL for a bad name or id. */
int nb_link_hello_encode(const nb_link_hello_t *h, uint8_t *out, size_t cap);

/* Parses a HELLO from the start of buf (len bytes so far); returns the bytes
 * it took (> 0) when complete and valid, 0 when more bytes are needed (O(1)
 * until the whole HELLO is there), or NB_EFRAME with a reason in why
 * (out->version is set once known, so a version mismatch can be told apart).
 * On success out->names is allocated: free it with nb_link_hello_free. */
int nb_link_hello_parse(const uint8_t *buf, size_t len, nb_link_hello_t *out,
                        char *why, size_t whylen);

/* Frees the names of h and zeroes it. */
void nb_link_hello_free(nb_link_hello_t *h);

/* Writes the 68-byte ACK frame for a cumulative count seq; returns 68. */
int nb_link_ack_encode(uint64_t seq, uint8_t out[NB_FRAME_SPIKE]);

/* Returns 1 when s is a control spike (source and target NB_LINK_CTRL_ID),
 * else 0. */
int nb_link_is_ctrl(const nb_spike_t *s);

/* Reads the count of an ACK spike into *seq; returns 0, or NB_EFRAME for a
 * malformed or unknown control spike. */
int nb_link_ack_parse(const nb_spike_t *s, uint64_t *seq);

/* Parses "tcp://HOST:PORT[/NEURON]" (HOST a numeric IPv4 address, or an
 * IPv6 one in brackets); writes the host (NUL-terminated) and port and
 * points *neuron at the neuron name inside url (NULL when absent); returns 0
 * or NB_EINVAL. neuron may be NULL when a neuron is not expected (then a
 * neuron part is NB_EINVAL). */
int nb_link_parse_url(const char *url, char *host, size_t hostcap, int *port,
                      const char **neuron);

/* ---- the receive state machine: HELLO first, then frames ---- */

typedef enum nb_link_rx_kind_e {
  NB_LINK_RX_HELLO = 1,
  NB_LINK_RX_SPIKE = 2,
  NB_LINK_RX_ACK = 3
} nb_link_rx_kind_t;

typedef struct nb_link_rx_event_s {
  nb_link_rx_kind_t kind;
  nb_link_hello_t hello;  /* HELLO: the caller owns it (nb_link_hello_free) */
  nb_spike_t spike;       /* SPIKE: the data spike as received */
  const uint8_t *payload; /* SPIKE: ref payload bytes or NULL, valid until
                             the next nb_link_rx_feed */
  size_t payload_len;
  uint64_t ack;           /* ACK: cumulative count */
} nb_link_rx_event_t;

typedef struct nb_link_rx_s {
  int state;           /* 0 HELLO, 1 frames, -1 failed */
  uint8_t *hbuf;       /* HELLO bytes collected so far */
  uint32_t hlen, hcap;
  nb_frame_decoder_t dec;
  uint64_t frames;     /* frames decoded (data and control) */
  char why[192];       /* the reason of the last error */
} nb_link_rx_t;

/* Prepares rx for a new connection accepting payloads up to max_payload. */
void nb_link_rx_init(nb_link_rx_t *rx, uint32_t max_payload);

/* Accepts (on 1) or refuses (0, the default) ref spikes without their
 * bytes from now on: for a peer sharing this end's arena. Returns nothing. */
void nb_link_rx_bare_refs(nb_link_rx_t *rx, int on);
void nb_link_rx_free(nb_link_rx_t *rx);

/* Feeds up to len bytes, stopping after at most one event; *used gets the
 * bytes consumed. Returns 1 with *ev filled, 0 when all of data was taken
 * and more is needed, NB_ENOMEM (not sticky), or NB_EFRAME with the reason
 * in rx->why (sticky: the connection must be closed). Accepts the stream cut
 * at any byte. */
int nb_link_rx_feed(nb_link_rx_t *rx, const uint8_t *data, size_t len,
                    size_t *used, nb_link_rx_event_t *ev);

/* Returns 1 when rx holds part of a HELLO or frame (a close now truncates
 * it), else 0. */
int nb_link_rx_partial(const nb_link_rx_t *rx);

#endif
