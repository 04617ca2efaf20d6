/* fuzz_frames.c: libFuzzer target for what a link reads off the network.
 *
 * Build: clang -fsanitize=fuzzer,address,undefined (make fuzz). Input: one
 * seed byte that picks how the stream is cut, then the stream. Every input
 * goes through:
 *   - nb_link_hello_parse; a HELLO it accepts must re-encode to the very
 *     same bytes (the format has one spelling);
 *   - the link's receive state machine (HELLO, then frames and acks) fed
 *     whole and fed in seed-chosen pieces: the events and the verdict must
 *     not depend on where the stream was cut; once with bare refs refused
 *     and once accepted after the HELLO (a peer sharing the arena file);
 *   - the bare frame decoder of nb_frame.h, whole and in pieces, with
 *     and without bare refs, and with nb_frame_decode_run taking every
 *     run of plain frames it can first (the same events must come out);
 *   - the URL parser, on the input as text.
 * A difference traps, so libFuzzer reports it like a crash. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "nb_err.h"
#include "nb_link_wire.h"
#include "nb_frame.h"

#define FNV(h, v) ((h) = ((h) ^ (uint64_t)(v)) * 1099511628211ull)

/* Returns the next piece length for a cut pattern driven by seed. */
static size_t next_cut(uint32_t *state, uint8_t seed, size_t left) {
  size_t n;
  switch (seed & 3) {
    case 0: n = 1; break;                        /* byte by byte */
    case 1: n = 1 + (seed >> 2);                 /* fixed small pieces */
      break;
    case 2: n = 67 + (seed >> 2) % 3; break;     /* around a frame */
    default:
      *state = *state * 1664525u + 1013904223u;
      n = 1 + (*state >> 8) % 300;
  }
  return n < left ? n : left;
}

typedef struct verdict_s {
  uint64_t digest; /* of every event, in order */
  int events;
  int error;       /* the final negative code, or 0 */
} verdict_t;

/* Runs the receive state machine over data, whole (seed 255 = one piece)
 * or cut by seed; returns what it saw. */
static verdict_t run_rx(const uint8_t *data, size_t len, uint32_t max_payload,
                        int whole, uint8_t seed, int bare) {
  verdict_t v = {1469598103934665603ull, 0, 0};
  nb_link_rx_t rx;
  nb_link_rx_init(&rx, max_payload);
  uint32_t st = seed * 2654435761u + 1;
  size_t pos = 0;
  while (pos < len && !v.error) {
    size_t n = whole ? len - pos : next_cut(&st, seed, len - pos);
    size_t off = 0;
    while (off < n) {
      nb_link_rx_event_t ev;
      size_t used = 0;
      int rc = nb_link_rx_feed(&rx, data + pos + off, n - off, &used, &ev);
      if (used > n - off) __builtin_trap();
      off += used;
      if (rc < 0) {
        v.error = rc;
        if (rc == NB_EFRAME && rx.why[0] == 0) __builtin_trap();
        break;
      }
      if (rc == 0) {
        if (off != n) __builtin_trap(); /* "need more" takes everything */
        break;
      }
      v.events++;
      FNV(v.digest, ev.kind);
      if (ev.kind == NB_LINK_RX_HELLO) {
        FNV(v.digest, ev.hello.incarnation);
        FNV(v.digest, ev.hello.recv_seq);
        FNV(v.digest, ev.hello.count);
        for (uint32_t i = 0; i < ev.hello.count; i++) {
          FNV(v.digest, ev.hello.names[i].id);
          for (const char *p = ev.hello.names[i].name; *p; p++)
            FNV(v.digest, (uint8_t)*p);
        }
        FNV(v.digest, ev.hello.flags);
        FNV(v.digest, ev.hello.arena.ino);
        nb_link_hello_free(&ev.hello);
        /* What a link does once both HELLOs name the same arena. */
        nb_link_rx_bare_refs(&rx, bare);
      } else if (ev.kind == NB_LINK_RX_ACK) {
        FNV(v.digest, ev.ack);
      } else {
        const uint8_t *b = (const uint8_t *)&ev.spike;
        for (size_t i = 0; i < NB_SPIKE_SIZE; i++) FNV(v.digest, b[i]);
        if (ev.payload_len > max_payload) __builtin_trap();
        if (nb_spike_is_ref(&ev.spike)) {
          nb_arena_ref_t ref;
          if (nb_spike_get_ref(&ev.spike, &ref) != 0 ||
              (ref.len != ev.payload_len &&
               !(bare && ev.payload_len == 0 && !ev.payload)))
            __builtin_trap();
        } else if (ev.payload_len != 0) {
          __builtin_trap();
        }
        for (size_t i = 0; i < ev.payload_len; i++)
          FNV(v.digest, ev.payload[i]);
      }
    }
    pos += n;
  }
  nb_link_rx_free(&rx);
  return v;
}

/* Hashes a decoded spike and its payload into v; returns nothing. */
static void hash_spike(verdict_t *v, const nb_spike_t *s,
                       const uint8_t *payload, size_t plen) {
  v->events++;
  const uint8_t *b = (const uint8_t *)s;
  for (size_t i = 0; i < NB_SPIKE_SIZE; i++) FNV(v->digest, b[i]);
  for (size_t i = 0; i < plen; i++) FNV(v->digest, payload[i]);
}

/* Runs the bare frame decoder over data (with runs: nb_frame_decode_run
 * first wherever it takes something); returns what it saw. */
static verdict_t run_frames(const uint8_t *data, size_t len,
                            uint32_t max_payload, int whole, uint8_t seed,
                            int bare, int runs) {
  verdict_t v = {1469598103934665603ull, 0, 0};
  nb_frame_decoder_t d;
  nb_frame_decoder_init(&d, max_payload);
  d.bare_refs = bare;
  uint32_t st = seed * 2246822519u + 7;
  size_t pos = 0;
  while (pos < len && !v.error) {
    size_t n = whole ? len - pos : next_cut(&st, seed, len - pos);
    size_t off = 0;
    while (off < n) {
      nb_spike_t s;
      const uint8_t *payload = NULL;
      size_t plen = 0, used = 0;
      if (runs) {
        nb_spike_t run[5];
        size_t k = nb_frame_decode_run(&d, data + pos + off, n - off, run,
                                       1 + seed % 5);
        if (k * NB_FRAME_SPIKE > n - off) __builtin_trap();
        /* A receiver may take only the first frames of a run; the rest is
         * decoded again. */
        if (k > 1) k -= (size_t)(seed >> 3) % k;
        for (size_t i = 0; i < k; i++) {
          if (nb_spike_is_ref(&run[i])) __builtin_trap();
          hash_spike(&v, &run[i], NULL, 0);
        }
        off += k * NB_FRAME_SPIKE;
        if (k) continue;
      }
      int rc = nb_frame_decode(&d, data + pos + off, n - off, &used, &s,
                               &payload, &plen);
      if (used > n - off) __builtin_trap();
      off += used;
      if (rc < 0) {
        v.error = rc;
        /* Sticky: the stream stays dead. */
        if (rc == NB_EFRAME &&
            nb_frame_decode(&d, data, len, &used, &s, &payload, &plen) !=
                NB_EFRAME)
          __builtin_trap();
        break;
      }
      if (rc == 0) break;
      hash_spike(&v, &s, payload, plen);
      /* What comes out must encode back to the same head. */
      uint8_t head[NB_FRAME_SPIKE];
      if (bare && plen == 0 && nb_spike_is_ref(&s)) {
        if (nb_frame_encode_bare_ref(&s, head) != NB_FRAME_SPIKE ||
            memcmp(head + NB_FRAME_HEADER, &s, NB_SPIKE_SIZE) != 0)
          __builtin_trap();
      } else if (nb_frame_encode_head(&s, plen, head) != NB_FRAME_SPIKE) {
        __builtin_trap();
      }
    }
    pos += n;
  }
  nb_frame_decoder_free(&d);
  return v;
}

static void same(verdict_t a, verdict_t b) {
  if (a.digest != b.digest || a.events != b.events || a.error != b.error)
    __builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *in, size_t size) {
  if (size < 1) return 0;
  uint8_t seed = in[0];
  const uint8_t *data = in + 1;
  size_t len = size - 1;

  /* The handshake parser, and its one spelling. */
  nb_link_hello_t h;
  char why[200];
  int n = nb_link_hello_parse(data, len, &h, why, sizeof why);
  if (n > 0) {
    size_t sz = nb_link_hello_size(&h);
    uint8_t *re = malloc(sz);
    if (!re || sz != (size_t)n ||
        nb_link_hello_encode(&h, re, sz) != n || memcmp(re, data, sz) != 0)
      __builtin_trap();
    free(re);
    nb_link_hello_free(&h);
  } else if (n == NB_EFRAME && why[0] == 0) {
    __builtin_trap();
  }

  /* The link's receive path, with a small maximum (payload paths are
   * reached by small inputs) and the default one. */
  static const uint32_t maxes[2] = {4096, NB_FRAME_PAYLOAD_DEFAULT_MAX};
  for (int i = 0; i < 4; i++) {
    int bare = i >= 2;
    same(run_rx(data, len, maxes[i & 1], 1, seed, bare),
         run_rx(data, len, maxes[i & 1], 0, seed, bare));
    verdict_t whole = run_frames(data, len, maxes[i & 1], 1, seed, bare, 0);
    same(whole, run_frames(data, len, maxes[i & 1], 0, seed, bare, 0));
    same(whole, run_frames(data, len, maxes[i & 1], seed & 1, seed, bare, 1));
  }

  /* The URL parser on the input as text. */
  char url[320], host[64];
  size_t ul = len < sizeof url - 1 ? len : sizeof url - 1;
  memcpy(url, data, ul);
  url[ul] = 0;
  int port;
  const char *nm = NULL;
  if (nb_link_parse_url(url, host, sizeof host, &port, &nm) == 0) {
    if (port < 0 || port > 65535 || strlen(host) == 0) __builtin_trap();
    if (nm && (nm < url || nm > url + ul)) __builtin_trap();
  }
  return 0;
}
