/* nb_link_wire.c: handshake, ack and URL codecs and the receive state
 * machine of a link (see nb_link_wire.h). Pure: no I/O, no globals, so the
 * fuzzer drives exactly the code the sockets use. */
#include "nb_link_wire.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nb_err.h"
#include "nb_le_internal.h"


/* Formats a reason into why (if any); returns NB_EFRAME. */
static int set_why(char *why, size_t whylen, const char *fmt, ...) {
  if (why && whylen) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, whylen, fmt, ap);
    va_end(ap);
  }
  return NB_EFRAME;
}

/* Returns the length of the well-formed UTF-8 sequence at p (m > 0 bytes
 * left), or 0 when there is none (Unicode Table 3-7: no overlong forms,
 * surrogates or code points past U+10FFFF). */
static size_t utf8_len(const unsigned char *p, size_t m) {
  unsigned char c = p[0], lo = 0x80, hi = 0xbf;
  size_t len = c < 0x80 ? 1 : c < 0xc2 ? 0 : c < 0xe0 ? 2 : c < 0xf0 ? 3
             : c < 0xf5 ? 4 : 0;
  if (c == 0xe0) lo = 0xa0;
  else if (c == 0xed) hi = 0x9f;
  else if (c == 0xf0) lo = 0x90;
  else if (c == 0xf4) hi = 0x8f;
  if (len > m) return 0;
  for (size_t i = 1; i < len; i++, lo = 0x80, hi = 0xbf)
    if (p[i] < lo || p[i] > hi) return 0;
  return len;
}

int nb_link_name_ok(const char *p, size_t n) {
  if (n == 0 || n > NB_LINK_NAME_MAX) return 0;
  const unsigned char *u = (const unsigned char *)p;
  for (size_t i = 0; i < n;) {
    if (u[i] < 0x20 || u[i] == 0x7f) return 0;
    size_t k = utf8_len(u + i, n - i);
    if (!k) return 0;
    i += k;
  }
  return 1;
}

size_t nb_link_hello_size(const nb_link_hello_t *h) {
  size_t n = NB_LINK_HELLO_HEAD + 8 + 8 + 8 + 4 + 1 + strlen(h->cortex) + 4;
  for (uint32_t i = 0; i < h->count; i++)
    n += 3 + strlen(h->names[i].name);
  if (h->flags & NB_LINK_F_ARENA) n += 8 + 8 + 8 + 1 + strlen(h->arena.host);
  return n;
}

/* Returns 1 when the n bytes at p make a valid host id (1..64 printable
 * ASCII bytes), else 0. */
static int host_ok(const char *p, size_t n) {
  if (n == 0 || n > NB_LINK_HOST_MAX) return 0;
  for (size_t i = 0; i < n; i++)
    if (p[i] < 0x21 || p[i] > 0x7e) return 0;
  return 1;
}

int nb_link_arena_same(const nb_link_arena_id_t *a,
                       const nb_link_arena_id_t *b) {
  return a->dev == b->dev && a->ino == b->ino && a->capacity == b->capacity &&
         a->host[0] && strcmp(a->host, b->host) == 0;
}

int nb_link_hello_encode(const nb_link_hello_t *h, uint8_t *out, size_t cap) {
  size_t clen = strlen(h->cortex);
  if (!nb_link_name_ok(h->cortex, clen)) return NB_EINVAL;
  for (uint32_t i = 0; i < h->count; i++) {
    const char *nm = h->names[i].name;
    if (!nm || !nb_link_name_ok(nm, strlen(nm))) return NB_EINVAL;
    if (h->names[i].id >= NB_LINK_CTRL_ID) return NB_EINVAL;
  }
  if (h->flags & ~NB_LINK_F_ARENA) return NB_EINVAL;
  if ((h->flags & NB_LINK_F_ARENA) &&
      !host_ok(h->arena.host, strlen(h->arena.host)))
    return NB_EINVAL;
  size_t total = nb_link_hello_size(h);
  if (total - NB_LINK_HELLO_HEAD > NB_LINK_HELLO_MAX || total > cap)
    return NB_ETOOBIG;
  uint8_t *p = out;
  nb__put32(p, NB_LINK_MAGIC);
  nb__put16(p + 4, h->version ? h->version : NB_LINK_VERSION);
  nb__put16(p + 6, h->flags);
  nb__put32(p + 8, (uint32_t)(total - NB_LINK_HELLO_HEAD));
  p += NB_LINK_HELLO_HEAD;
  nb__put64(p, h->incarnation);
  nb__put64(p + 8, h->peer_incarnation);
  nb__put64(p + 16, h->recv_seq);
  nb__put32(p + 24, h->max_payload);
  p += 28;
  *p++ = (uint8_t)clen;
  memcpy(p, h->cortex, clen);
  p += clen;
  nb__put32(p, h->count);
  p += 4;
  for (uint32_t i = 0; i < h->count; i++) {
    size_t n = strlen(h->names[i].name);
    nb__put16(p, h->names[i].id);
    p[2] = (uint8_t)n;
    memcpy(p + 3, h->names[i].name, n);
    p += 3 + n;
  }
  if (h->flags & NB_LINK_F_ARENA) {
    size_t n = strlen(h->arena.host);
    nb__put64(p, h->arena.dev);
    nb__put64(p + 8, h->arena.ino);
    nb__put64(p + 16, h->arena.capacity);
    p[24] = (uint8_t)n;
    memcpy(p + 25, h->arena.host, n);
    p += 25 + n;
  }
  return (int)(p - out);
}

/* Orders name pointers for the duplicate check. */
static int name_cmp(const void *a, const void *b) {
  return strcmp(((const nb_link_name_t *)a)->name,
                ((const nb_link_name_t *)b)->name);
}

int nb_link_hello_parse(const uint8_t *buf, size_t len, nb_link_hello_t *out,
                        char *why, size_t whylen) {
  static const uint8_t magic[4] = {'N', 'B', 'L', 'K'};
  memset(out, 0, sizeof *out);
  /* Reject a stranger at its first wrong byte instead of waiting. */
  for (size_t i = 0; i < len && i < 4; i++)
    if (buf[i] != magic[i] && i == 2 && buf[2] == 'A')
      return set_why(why, whylen, "refused: the caller authenticates (it "
                     "has a secret) but this node has none: set the same "
                     "secret on both sides");
    else if (buf[i] != magic[i])
      return set_why(why, whylen,
                     "bad handshake: not a NeuronBus link (magic byte %zu is "
                     "0x%02x)", i, buf[i]);
  if (len < 6) return 0;
  out->version = nb__get16(buf + 4);
  if (out->version != NB_LINK_VERSION)
    return set_why(why, whylen,
                   "protocol version mismatch: peer speaks version %u, this "
                   "node speaks version %u", out->version, NB_LINK_VERSION);
  if (len < NB_LINK_HELLO_HEAD) return 0;
  out->flags = nb__get16(buf + 6);
  uint32_t body = nb__get32(buf + 8);
  if (out->flags & ~NB_LINK_F_ARENA)
    return set_why(why, whylen, "bad handshake: unknown flags 0x%04x",
                   out->flags);
  if (body > NB_LINK_HELLO_MAX)
    return set_why(why, whylen,
                   "bad handshake: %u-byte body exceeds the %u-byte maximum",
                   body, NB_LINK_HELLO_MAX);
  if (len - NB_LINK_HELLO_HEAD < body) return 0;

  const uint8_t *p = buf + NB_LINK_HELLO_HEAD, *end = p + body;
  if (end - p < 29)
    return set_why(why, whylen, "bad handshake: body of %u bytes is too short",
                   body);
  out->incarnation = nb__get64(p);
  out->peer_incarnation = nb__get64(p + 8);
  out->recv_seq = nb__get64(p + 16);
  out->max_payload = nb__get32(p + 24);
  p += 28;
  if (out->incarnation == 0)
    return set_why(why, whylen, "bad handshake: incarnation is 0");
  size_t clen = *p++;
  if ((size_t)(end - p) < clen + 4 || !nb_link_name_ok((const char *)p, clen))
    return set_why(why, whylen, "bad handshake: the cortex name is not "
                   "1..255 bytes of UTF-8 without control characters");
  memcpy(out->cortex, p, clen);
  out->cortex[clen] = 0;
  p += clen;
  uint32_t count = nb__get32(p);
  p += 4;
  /* Each entry takes at least 4 bytes: bound count before allocating. */
  if (count >= NB_LINK_CTRL_ID || (uint64_t)count * 4 > (uint64_t)(end - p))
    return set_why(why, whylen, "bad handshake: %u names cannot fit", count);
  nb_link_name_t *names = NULL;
  if (count) {
    names = malloc((size_t)count * sizeof *names + (size_t)(end - p));
    if (!names) return NB_ENOMEM;
  }
  char *blob = names ? (char *)(names + count) : NULL;
  int rc = 0;
  uint8_t *seen = calloc(1, 65536 / 8); /* ids already listed */
  if (!seen) {
    free(names);
    return NB_ENOMEM;
  }
  for (uint32_t i = 0; i < count && rc == 0; i++) {
    if (end - p < 3) {
      rc = set_why(why, whylen, "bad handshake: name %u is truncated", i);
      break;
    }
    nb_id_t id = nb__get16(p);
    size_t n = p[2];
    p += 3;
    if ((size_t)(end - p) < n || !nb_link_name_ok((const char *)p, n))
      rc = set_why(why, whylen, "bad handshake: name %u is malformed", i);
    else if (id >= NB_LINK_CTRL_ID)
      rc = set_why(why, whylen, "bad handshake: neuron id %u is reserved",
                   (unsigned)id);
    else if (seen[id >> 3] & (1u << (id & 7)))
      rc = set_why(why, whylen, "bad handshake: neuron id %u listed twice",
                   (unsigned)id);
    if (rc) break;
    seen[id >> 3] |= (uint8_t)(1u << (id & 7));
    memcpy(blob, p, n);
    blob[n] = 0;
    names[i].name = blob;
    names[i].id = id;
    blob += n + 1;
    p += n;
  }
  free(seen);
  if (rc == 0 && (out->flags & NB_LINK_F_ARENA)) {
    size_t n = end - p >= 25 ? p[24] : 0;
    if (end - p < 25 || (size_t)(end - p) - 25 < n ||
        !host_ok((const char *)p + 25, n)) {
      rc = set_why(why, whylen, "bad handshake: malformed arena identity");
    } else {
      out->arena.dev = nb__get64(p);
      out->arena.ino = nb__get64(p + 8);
      out->arena.capacity = nb__get64(p + 16);
      memcpy(out->arena.host, p + 25, n);
      out->arena.host[n] = 0;
      p += 25 + n;
    }
  }
  if (rc == 0 && p != end)
    rc = set_why(why, whylen, "bad handshake: %zu trailing bytes",
                 (size_t)(end - p));
  if (rc == 0 && count > 1) {
    /* Duplicates show up as neighbours once sorted; sort a copy so the
     * caller keeps the peer's order. */
    nb_link_name_t *tmp = malloc((size_t)count * sizeof *tmp);
    if (!tmp) {
      rc = NB_ENOMEM;
    } else {
      memcpy(tmp, names, (size_t)count * sizeof *tmp);
      qsort(tmp, count, sizeof *tmp, name_cmp);
      for (uint32_t i = 1; i < count && rc == 0; i++)
        if (strcmp(tmp[i - 1].name, tmp[i].name) == 0)
          rc = set_why(why, whylen, "bad handshake: name '%s' listed twice",
                       tmp[i].name);
      free(tmp);
    }
  }
  if (rc) {
    free(names);
    uint16_t v = out->version;
    memset(out, 0, sizeof *out);
    out->version = v;
    return rc;
  }
  out->count = count;
  out->names = names;
  return (int)(NB_LINK_HELLO_HEAD + body);
}

void nb_link_hello_free(nb_link_hello_t *h) {
  free(h->names);
  memset(h, 0, sizeof *h);
}

int nb_link_ack_encode(uint64_t seq, uint8_t out[NB_FRAME_SPIKE]) {
  nb_spike_t s;
  uint8_t body[9];
  body[0] = NB_LINK_CTRL_ACK;
  nb__put64(body + 1, seq);
  nb_spike_init(&s, NB_LINK_CTRL_ID, NB_MODULATORY, 255);
  s.source = NB_LINK_CTRL_ID;
  nb_spike_set_payload(&s, body, sizeof body);
  return nb_frame_encode(&s, out);
}

int nb_link_is_ctrl(const nb_spike_t *s) {
  return s->target == NB_LINK_CTRL_ID;
}

int nb_link_ack_parse(const nb_spike_t *s, uint64_t *seq) {
  if (s->source != NB_LINK_CTRL_ID || s->target != NB_LINK_CTRL_ID ||
      nb_spike_inline_len(s) != 9 || s->payload[0] != NB_LINK_CTRL_ACK)
    return NB_EFRAME;
  *seq = nb__get64(s->payload + 1);
  return 0;
}

int nb_link_parse_url(const char *url, char *host, size_t hostcap, int *port,
                      const char **neuron) {
  if (!url || strncmp(url, "tcp://", 6) != 0) return NB_EINVAL;
  const char *p = url + 6, *h0, *h1;
  if (*p == '[') {
    h0 = ++p;
    while (*p && *p != ']') p++;
    if (*p != ']') return NB_EINVAL;
    h1 = p++;
  } else {
    h0 = p;
    while (*p && *p != ':' && *p != '/') p++;
    h1 = p;
  }
  size_t hn = (size_t)(h1 - h0);
  if (hn == 0 || hn >= hostcap) return NB_EINVAL;
  for (const char *q = h0; q < h1; q++)
    if (!strchr("0123456789abcdefABCDEF.:", *q)) return NB_EINVAL;
  if (*p++ != ':') return NB_EINVAL;
  long v = 0;
  int digits = 0;
  while (*p >= '0' && *p <= '9' && digits < 6) {
    v = v * 10 + (*p++ - '0');
    digits++;
  }
  if (digits == 0 || v > 65535) return NB_EINVAL;
  const char *nm = NULL;
  if (*p == '/') {
    nm = p + 1;
    if (!neuron || !nb_link_name_ok(nm, strlen(nm))) return NB_EINVAL;
  } else if (*p) {
    return NB_EINVAL;
  }
  memcpy(host, h0, hn);
  host[hn] = 0;
  *port = (int)v;
  if (neuron) *neuron = nm;
  return 0;
}

/* ---- receive state machine ---- */

void nb_link_rx_init(nb_link_rx_t *rx, uint32_t max_payload) {
  memset(rx, 0, sizeof *rx);
  nb_frame_decoder_init(&rx->dec, max_payload);
}

void nb_link_rx_bare_refs(nb_link_rx_t *rx, int on) {
  rx->dec.bare_refs = on != 0;
}

void nb_link_rx_free(nb_link_rx_t *rx) {
  free(rx->hbuf);
  rx->hbuf = NULL;
  nb_frame_decoder_free(&rx->dec);
}

int nb_link_rx_partial(const nb_link_rx_t *rx) {
  if (rx->state == 0) return rx->hlen > 0;
  if (rx->state == 1) return rx->dec.have > 0;
  return 0;
}

/* Puts the reason the decoder refused the current frame into rx->why;
 * returns NB_EFRAME. */
static int rx_frame_why(nb_link_rx_t *rx) {
  const nb_frame_decoder_t *d = &rx->dec;
  unsigned long long n = (unsigned long long)rx->frames + 1;
  rx->state = -1;
  if (d->have < NB_FRAME_HEADER)
    return set_why(rx->why, sizeof rx->why, "malformed frame %llu", n);
  uint32_t l = nb__get32(d->head);
  if (l < NB_SPIKE_SIZE)
    return set_why(rx->why, sizeof rx->why,
                   "malformed frame %llu: length %u is below %u", n, l,
                   NB_SPIKE_SIZE);
  if (l - NB_SPIKE_SIZE > d->max_payload)
    return set_why(rx->why, sizeof rx->why,
                   "oversized frame %llu: a %u-byte payload exceeds the "
                   "maximum of %u", n, l - NB_SPIKE_SIZE, d->max_payload);
  if (d->have < NB_FRAME_SPIKE)
    return set_why(rx->why, sizeof rx->why, "malformed frame %llu", n);
  nb_spike_t s;
  if (nb_spike_from_bytes(&s, d->head + NB_FRAME_HEADER) != 0)
    return set_why(rx->why, sizeof rx->why,
                   "malformed spike in frame %llu (meta byte 0x%02x)", n,
                   d->head[NB_FRAME_HEADER + 16]);
  return set_why(rx->why, sizeof rx->why,
                 "malformed frame %llu: length %u disagrees with its spike's "
                 "payload", n, l);
}

/* Collects HELLO bytes from data; returns as nb_link_rx_feed does. */
static int rx_hello(nb_link_rx_t *rx, const uint8_t *data, size_t len,
                    size_t *used, nb_link_rx_event_t *ev) {
  size_t pos = 0;
  while (pos < len) {
    /* Take only what belongs to the HELLO: the head first, then exactly
     * the body it announces, so frames after it stay for the decoder. */
    size_t want = NB_LINK_HELLO_HEAD;
    if (rx->hlen >= NB_LINK_HELLO_HEAD)
      want += nb__get32(rx->hbuf + 8); /* checked below by the parser */
    size_t take = want - rx->hlen;
    if (take > len - pos) take = len - pos;
    if (rx->hlen + take > rx->hcap) {
      size_t cap = rx->hcap ? rx->hcap : 256;
      while (cap < rx->hlen + take) cap *= 2;
      uint8_t *nb = realloc(rx->hbuf, cap);
      if (!nb) {
        *used = pos;
        return NB_ENOMEM;
      }
      rx->hbuf = nb;
      rx->hcap = (uint32_t)cap;
    }
    memcpy(rx->hbuf + rx->hlen, data + pos, take);
    rx->hlen += (uint32_t)take;
    pos += take;
    int rc = nb_link_hello_parse(rx->hbuf, rx->hlen, &ev->hello, rx->why,
                                 sizeof rx->why);
    if (rc == NB_ENOMEM) {
      /* Not the peer's fault: give the bytes back and let it retry. */
      rx->hlen -= (uint32_t)take;
      *used = pos - take;
      return rc;
    }
    if (rc < 0) {
      rx->state = -1;
      *used = pos;
      return rc;
    }
    if (rc > 0) {
      ev->kind = NB_LINK_RX_HELLO;
      rx->state = 1;
      free(rx->hbuf);
      rx->hbuf = NULL;
      rx->hlen = rx->hcap = 0;
      *used = pos;
      return 1;
    }
  }
  *used = pos;
  return 0;
}

int nb_link_rx_feed(nb_link_rx_t *rx, const uint8_t *data, size_t len,
                    size_t *used, nb_link_rx_event_t *ev) {
  *used = 0;
  if (rx->state < 0) return NB_EFRAME;
  if (rx->state == 0) return rx_hello(rx, data, len, used, ev);
  const uint8_t *payload = NULL;
  size_t plen = 0;
  int rc = nb_frame_decode(&rx->dec, data, len, used, &ev->spike, &payload,
                           &plen);
  if (rc == NB_EFRAME) return rx_frame_why(rx);
  if (rc <= 0) return rc;
  rx->frames++;
  if (nb_link_is_ctrl(&ev->spike)) {
    if (nb_link_ack_parse(&ev->spike, &ev->ack) != 0) {
      rx->state = -1;
      return set_why(rx->why, sizeof rx->why,
                     "malformed control frame %llu",
                     (unsigned long long)rx->frames);
    }
    ev->kind = NB_LINK_RX_ACK;
    return 1;
  }
  ev->kind = NB_LINK_RX_SPIKE;
  ev->payload = payload;
  ev->payload_len = plen;
  return 1;
}
