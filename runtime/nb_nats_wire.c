/* nb_nats_wire.c: the NATS messages' codec (nb_nats_wire.h). */
#include "nb_nats_wire.h"

#include <stdio.h>
#include <string.h>

#include "nb_err.h"
#include "nb_le_internal.h"
#include "nb_link_wire.h"


int nb_nats_head_encode(uint8_t *out, uint8_t type, uint64_t inc, uint64_t a,
                        uint64_t b, uint32_t count, uint32_t body_len,
                        const char *cortex) {
  size_t n = cortex ? strlen(cortex) : 0;
  if (!nb_link_name_ok(cortex, n)) return NB_EINVAL;
  nb__put32(out, NB_NATS_MAGIC);
  out[4] = NB_NATS_VERSION;
  out[5] = type;
  nb__put16(out + 6, 0);
  nb__put64(out + 8, inc);
  nb__put64(out + 16, a);
  nb__put64(out + 24, b);
  nb__put32(out + 32, count);
  nb__put32(out + 36, body_len);
  out[NB_NATS_HEAD] = (uint8_t)n;
  memcpy(out + NB_NATS_HEAD + 1, cortex, n);
  return (int)(NB_NATS_HEAD + 1 + n);
}

void nb_nats_head_patch(uint8_t *msg, uint64_t b, uint32_t count,
                        uint32_t body_len) {
  nb__put64(msg + 24, b);
  nb__put32(msg + 32, count);
  nb__put32(msg + 36, body_len);
}

int nb_nats_head_decode(const uint8_t *msg, size_t len, nb_nats_head_t *h,
                        const char **why) {
  *why = NULL;
  if (len < NB_NATS_HEAD + 1) *why = "shorter than a message head";
  else if (nb__get32(msg) != NB_NATS_MAGIC) *why = "not a NeuronBus message (bad magic)";
  else if (msg[4] != NB_NATS_VERSION) *why = "unknown protocol version";
  else if (msg[5] < NB_NATS_BATCH || msg[5] > NB_NATS_REGION) *why = "unknown message type";
  else if (nb__get16(msg + 6) != 0) *why = "unknown flags";
  if (*why) return NB_EFRAME;
  size_t n = msg[NB_NATS_HEAD];
  if (len < NB_NATS_HEAD + 1 + n || !nb_link_name_ok((const char *)msg + NB_NATS_HEAD + 1, n)) {
    *why = "bad cortex name";
    return NB_EFRAME;
  }
  h->type = msg[5];
  h->inc = nb__get64(msg + 8);
  h->a = nb__get64(msg + 16);
  h->b = nb__get64(msg + 24);
  h->count = nb__get32(msg + 32);
  h->body_len = nb__get32(msg + 36);
  memcpy(h->cortex, msg + NB_NATS_HEAD + 1, n);
  h->cortex[n] = 0;
  h->body = msg + NB_NATS_HEAD + 1 + n;
  if (h->inc == 0) *why = "incarnation 0";
  else if ((uint64_t)h->body_len != len - (NB_NATS_HEAD + 1 + n))
    *why = "body length does not match the message";
  else if ((h->type == NB_NATS_ACK || h->type == NB_NATS_BYE) &&
           (h->body_len || h->count))
    *why = "an ack or bye carries no body";
  else if (h->type == NB_NATS_BATCH &&
           (h->count == 0 || h->a == 0 || h->b == 0 ||
            h->a + h->count < h->a || h->b >= h->a + h->count))
    *why = "bad batch numbering";
  else if ((h->type == NB_NATS_BATCH || h->type == NB_NATS_REGION) &&
           h->count > h->body_len / NB_FRAME_SPIKE)
    *why = "batch count exceeds its bytes";
  else if (h->type == NB_NATS_REGION && (h->count == 0 || h->a || h->b))
    *why = "bad region message numbering";
  return *why ? NB_EFRAME : 0;
}

int nb_nats_batch_next(const nb_nats_head_t *h, size_t *off, uint32_t *seen,
                       uint32_t max_payload, nb_nats_rec_t *r,
                       const char **why) {
  size_t left = h->body_len - *off;
  if (*seen == h->count) {
    if (left == 0) return 0;
    *why = "bytes after the last spike";
    return NB_EFRAME;
  }
  const uint8_t *p = h->body + *off;
  if (left < NB_FRAME_SPIKE) {
    *why = "a spike cut short";
    return NB_EFRAME;
  }
  uint32_t L = nb__get32(p);
  if (L < NB_SPIKE_SIZE || (uint64_t)L > left - NB_FRAME_HEADER) {
    *why = "a spike's length runs past the batch";
    return NB_EFRAME;
  }
  if (nb_spike_from_bytes(&r->spike, p + NB_FRAME_HEADER) != 0) {
    *why = "a malformed spike";
    return NB_EFRAME;
  }
  size_t plen = L - NB_SPIKE_SIZE;
  nb_arena_ref_t ref;
  if (nb_spike_is_ref(&r->spike)) {
    if (nb_spike_get_ref(&r->spike, &ref) != 0 || ref.len != plen) {
      *why = "a payload whose length disagrees with its spike";
      return NB_EFRAME;
    }
    if (plen > max_payload) {
      *why = "a payload over the maximum";
      return NB_EFRAME;
    }
    r->payload = p + NB_FRAME_SPIKE;
    r->len = plen;
  } else {
    if (plen) {
      *why = "payload bytes after an inline spike";
      return NB_EFRAME;
    }
    r->payload = NULL;
    r->len = 0;
  }
  if (r->spike.source >= NB_LINK_CTRL_ID || r->spike.target >= NB_LINK_CTRL_ID) {
    *why = "a spike addressed to a control id";
    return NB_EFRAME;
  }
  *off += NB_FRAME_HEADER + L;
  (*seen)++;
  return 1;
}

int nb_nats_batch_check(const nb_nats_head_t *h, uint32_t max_payload,
                        const char **why) {
  size_t off = 0;
  uint32_t seen = 0;
  nb_nats_rec_t r;
  int rc;
  while ((rc = nb_nats_batch_next(h, &off, &seen, max_payload, &r, why)) == 1) {}
  return rc;
}

/* Appends a u8-length string to buf; returns 0, NB_EINVAL or NB_ETOOBIG. */
static int put_str(uint8_t *buf, size_t cap, size_t *len, const char *s) {
  size_t n = strlen(s);
  if (!nb_link_name_ok(s, n)) return NB_EINVAL;
  if (*len + 1 + n > cap) return NB_ETOOBIG;
  buf[(*len)++] = (uint8_t)n;
  memcpy(buf + *len, s, n);
  *len += n;
  return 0;
}

int nb_nats_card_add(uint8_t *buf, size_t cap, size_t *len,
                     const nb_nats_neuron_t *n) {
  if (n->id >= NB_LINK_CTRL_ID || n->ncap > NB_NATS_TAGS_MAX ||
      n->nreg > NB_NATS_TAGS_MAX)
    return NB_EINVAL;
  size_t l = *len;
  if (l + 2 > cap) return NB_ETOOBIG;
  nb__put16(buf + l, n->id);
  l += 2;
  int rc = put_str(buf, cap, &l, n->name);
  if (rc == 0 && l + 1 > cap) rc = NB_ETOOBIG;
  if (rc == 0) buf[l++] = n->ncap;
  for (uint8_t i = 0; rc == 0 && i < n->ncap; i++) rc = put_str(buf, cap, &l, n->caps[i]);
  if (rc == 0 && l + 1 > cap) rc = NB_ETOOBIG;
  if (rc == 0) buf[l++] = n->nreg;
  for (uint8_t i = 0; rc == 0 && i < n->nreg; i++) rc = put_str(buf, cap, &l, n->regs[i]);
  if (rc == 0) *len = l;
  return rc;
}

/* Reads a u8-length name at *off into out; returns 0 or NB_EFRAME. */
static int get_str(const nb_nats_head_t *h, size_t *off, char *out) {
  if (*off >= h->body_len) return NB_EFRAME;
  size_t n = h->body[*off];
  if (h->body_len - *off - 1 < n) return NB_EFRAME;
  if (!nb_link_name_ok((const char *)h->body + *off + 1, n)) return NB_EFRAME;
  memcpy(out, h->body + *off + 1, n);
  out[n] = 0;
  *off += 1 + n;
  return 0;
}

int nb_nats_card_next(const nb_nats_head_t *h, size_t *off, uint32_t *seen,
                      nb_nats_neuron_t *n, const char **why) {
  if (*seen == h->count) {
    if (*off == h->body_len) return 0;
    *why = "bytes after the last neuron of a card";
    return NB_EFRAME;
  }
  *why = "a malformed neuron in a card";
  if (h->body_len - *off < 2) return NB_EFRAME;
  n->id = nb__get16(h->body + *off);
  *off += 2;
  if (n->id >= NB_LINK_CTRL_ID || get_str(h, off, n->name) != 0) return NB_EFRAME;
  for (int w = 0; w < 2; w++) {
    if (*off >= h->body_len) return NB_EFRAME;
    uint8_t k = h->body[(*off)++];
    if (k > NB_NATS_TAGS_MAX) return NB_EFRAME;
    for (uint8_t i = 0; i < k; i++)
      if (get_str(h, off, w ? n->regs[i] : n->caps[i]) != 0) return NB_EFRAME;
    if (w) n->nreg = k;
    else n->ncap = k;
  }
  *why = NULL;
  (*seen)++;
  return 1;
}

int nb_nats_card_check(const nb_nats_head_t *h, const char **why) {
  if (h->count >= NB_LINK_CTRL_ID) {
    *why = "a card with too many neurons";
    return NB_EFRAME;
  }
  size_t off = 0;
  uint32_t seen = 0;
  static uint8_t ids[65536 / 8];
  memset(ids, 0, sizeof ids);
  nb_nats_neuron_t n;
  int rc;
  while ((rc = nb_nats_card_next(h, &off, &seen, &n, why)) == 1) {
    if (ids[n.id >> 3] & (1u << (n.id & 7))) {
      *why = "a card naming one id twice";
      return NB_EFRAME;
    }
    ids[n.id >> 3] |= (uint8_t)(1u << (n.id & 7));
  }
  return rc;
}

int nb_nats_token(const char *name, char *out, size_t cap) {
  size_t n = strlen(name);
  int plain = n > 0;
  for (size_t i = 0; i < n && plain; i++) {
    char c = name[i];
    plain = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
            (c >= '0' && c <= '9') || c == '_' || c == '-';
  }
  if (plain) {
    if (n + 1 > cap) return NB_ETOOBIG;
    memcpy(out, name, n + 1);
    return 0;
  }
  if (2 * n + 2 > cap) return NB_ETOOBIG;
  out[0] = 'x';
  for (size_t i = 0; i < n; i++)
    snprintf(out + 1 + 2 * i, 3, "%02x", (unsigned char)name[i]);
  return 0;
}

int nb_nats_region_path(const nb_nats_head_t *h, char *path, size_t *off,
                        const char **why) {
  size_t n = h->body_len ? h->body[0] : 0;
  if (!h->body_len || h->body_len - 1 < n ||
      (n && !nb_link_name_ok((const char *)h->body + 1, n))) {
    *why = "a bad region path";
    return NB_EFRAME;
  }
  memcpy(path, h->body + 1, n);
  path[n] = 0;
  *off = 1 + n;
  return 0;
}

int nb_nats_region_check(const nb_nats_head_t *h, uint32_t max_payload,
                         const char **why) {
  char path[256];
  size_t off;
  if (nb_nats_region_path(h, path, &off, why) != 0) return NB_EFRAME;
  uint32_t seen = 0;
  nb_nats_rec_t r;
  int rc;
  while ((rc = nb_nats_batch_next(h, &off, &seen, max_payload, &r, why)) == 1) {}
  return rc;
}

int nb_nats_region_subject(const char *root, const char *path, char *out,
                           size_t cap) {
  int w = snprintf(out, cap, "%s.region", root);
  if (w < 0 || (size_t)w >= cap) return NB_ETOOBIG;
  size_t len = (size_t)w;
  const char *p = path;
  while (*p) {
    while (*p == '/') p++;
    if (!*p) break;
    const char *e = strchr(p, '/');
    size_t n = e ? (size_t)(e - p) : strlen(p);
    char seg[256], tok[520];
    if (n >= sizeof seg) return NB_ETOOBIG;
    memcpy(seg, p, n);
    seg[n] = 0;
    if (nb_nats_token(seg, tok, sizeof tok) != 0) return NB_ETOOBIG;
    w = snprintf(out + len, cap - len, ".%s", tok);
    if (w < 0 || (size_t)w >= cap - len) return NB_ETOOBIG;
    len += (size_t)w;
    p += n;
  }
  return 0;
}
