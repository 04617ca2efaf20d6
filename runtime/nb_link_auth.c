/* nb_link_auth.c: the link's authenticated opening and sealed stream (see
 * nb_link_auth.h for the messages and keys, docs/links.md for the threat
 * model). */
#include "nb_link_auth.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "nb_err.h"
#include "nb_link_wire.h"

#define NB__AUTH_HEAD 8u /* magic, version, type, flags */
#define NB__AUTH_MSG_MAX (NB__AUTH_HEAD + 1 + NB_LINK_NAME_MAX + \
                          NB_LINK_AUTH_NONCE + NB_LINK_AUTH_MAC)
#define NB__AUTH_T_MAX (8 + 2 * (1 + NB_LINK_NAME_MAX) + 2 * NB_LINK_AUTH_NONCE)
#define NB__REC_HEAD 4u
#define NB__REC_TAG crypto_aead_chacha20poly1305_ietf_ABYTES

static const uint8_t auth_magic[4] = {'N', 'B', 'A', 'U'};
static const uint8_t hello_magic[4] = {'N', 'B', 'L', 'K'};

enum { ST_START, ST_WAIT_PEER, ST_WAIT_PROOF, ST_UP, ST_FAILED };

typedef struct allow_s {
  char *cortex;
  nb_link_key_t key;
} allow_t;

struct nb_link_keyring_s {
  int encrypt, has_default;
  nb_link_key_t dflt;
  allow_t *allow;
  size_t nallow, cap;
};

struct nb_link_auth_s {
  int caller, state, want_encrypt, encrypted;
  const nb_link_keyring_t *kr;
  nb_link_key_t key;
  char self[NB_LINK_NAME_MAX + 1], peer[NB_LINK_NAME_MAX + 1];
  uint8_t nonce_c[NB_LINK_AUTH_NONCE], nonce_a[NB_LINK_AUTH_NONCE];
  uint8_t flags_c, flags_a;
  uint8_t msg[NB__AUTH_MSG_MAX]; /* the message being collected */
  size_t mlen;
  uint8_t out[NB__AUTH_MSG_MAX]; /* the message to write */
  uint8_t k_tx[32], k_rx[32];
  uint64_t n_tx, n_rx; /* records sealed and opened */
  uint8_t *rec;        /* a record cut by the read, collected here */
  size_t rlen;
  uint8_t *plain;      /* opened records, handed out by nb_link_auth_input */
  size_t pcap;
  char why[200];
};

/* Returns 0 once libsodium is ready, else -1. */
static int sodium_ready(void) { return sodium_init() < 0 ? -1 : 0; }

/* Records why a failed (the state is sticky); returns NB_EFRAME. */
static int fail(nb_link_auth_t *a, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(a->why, sizeof a->why, fmt, ap);
  va_end(ap);
  a->state = ST_FAILED;
  return NB_EFRAME;
}

/* ---- keys ---- */

int nb_link_key_derive(nb_link_key_t *out, const void *secret, size_t len) {
  static const char label[] = "neuronbus-link-secret-v1";
  if (!out || !secret || len < NB_LINK_AUTH_SECRET_MIN || sodium_ready() != 0)
    return NB_EINVAL;
  crypto_generichash_state st;
  crypto_generichash_init(&st, NULL, 0, sizeof out->k);
  crypto_generichash_update(&st, (const uint8_t *)label, sizeof label - 1);
  crypto_generichash_update(&st, secret, len);
  crypto_generichash_final(&st, out->k, sizeof out->k);
  sodium_memzero(&st, sizeof st);
  return 0;
}

void nb_link_key_wipe(nb_link_key_t *k) { sodium_memzero(k, sizeof *k); }

int nb_link_keyring_new(nb_link_keyring_t **out, int encrypt) {
  *out = calloc(1, sizeof **out);
  if (!*out) return NB_ENOMEM;
  (*out)->encrypt = encrypt != 0;
  return 0;
}

int nb_link_keyring_set_default(nb_link_keyring_t *kr, const void *secret,
                                size_t len) {
  int rc = nb_link_key_derive(&kr->dflt, secret, len);
  if (rc == 0) kr->has_default = 1;
  return rc;
}

int nb_link_keyring_allow(nb_link_keyring_t *kr, const char *cortex,
                          const void *secret, size_t len) {
  if (!cortex || !nb_link_name_ok(cortex, strlen(cortex))) return NB_EINVAL;
  nb_link_key_t k;
  int rc = nb_link_key_derive(&k, secret, len);
  if (rc != 0) return rc;
  if (kr->nallow == kr->cap) {
    size_t cap = kr->cap ? kr->cap * 2 : 8;
    allow_t *v = realloc(kr->allow, cap * sizeof *v);
    if (!v) return NB_ENOMEM;
    kr->allow = v;
    kr->cap = cap;
  }
  char *name = strdup(cortex);
  if (!name) return NB_ENOMEM;
  kr->allow[kr->nallow].cortex = name;
  kr->allow[kr->nallow].key = k;
  kr->nallow++;
  sodium_memzero(&k, sizeof k);
  return 0;
}

int nb_link_keyring_default(const nb_link_keyring_t *kr, nb_link_key_t *out) {
  if (!kr || !kr->has_default) return 0;
  *out = kr->dflt;
  return 1;
}

int nb_link_keyring_encrypt(const nb_link_keyring_t *kr) {
  return kr && kr->encrypt;
}

/* Finds the key the caller named cortex must prove; returns 1, or 0 when
 * it is not let in. */
static int keyring_find(const nb_link_keyring_t *kr, const char *cortex,
                        nb_link_key_t *out) {
  for (size_t i = 0; i < kr->nallow; i++)
    if (strcmp(kr->allow[i].cortex, cortex) == 0) {
      *out = kr->allow[i].key;
      return 1;
    }
  if (kr->nallow || !kr->has_default) return 0;
  *out = kr->dflt;
  return 1;
}

void nb_link_keyring_free(nb_link_keyring_t *kr) {
  if (!kr) return;
  for (size_t i = 0; i < kr->nallow; i++) free(kr->allow[i].cortex);
  if (kr->allow) sodium_memzero(kr->allow, kr->nallow * sizeof *kr->allow);
  free(kr->allow);
  sodium_memzero(kr, sizeof *kr);
  free(kr);
}

/* ---- the handshake ---- */

/* Makes the common part of a state; returns it or NULL. */
static nb_link_auth_t *auth_new(const char *self) {
  if (!self || !nb_link_name_ok(self, strlen(self)) || sodium_ready() != 0)
    return NULL;
  nb_link_auth_t *a = calloc(1, sizeof *a);
  if (!a) return NULL;
  snprintf(a->self, sizeof a->self, "%s", self);
  return a;
}

int nb_link_auth_caller(nb_link_auth_t **out, const char *self,
                        const nb_link_key_t *key, int encrypt) {
  *out = NULL;
  if (!key) return NB_EINVAL;
  nb_link_auth_t *a = auth_new(self);
  if (!a) return NB_EINVAL;
  a->caller = 1;
  a->key = *key;
  a->want_encrypt = encrypt != 0;
  *out = a;
  return 0;
}

int nb_link_auth_acceptor(nb_link_auth_t **out, const char *self,
                          const nb_link_keyring_t *kr) {
  *out = NULL;
  if (!kr) return NB_EINVAL;
  nb_link_auth_t *a = auth_new(self);
  if (!a) return NB_EINVAL;
  a->kr = kr;
  a->want_encrypt = kr->encrypt;
  *out = a;
  return 0;
}

/* Writes a message head of type into p; returns its length. */
static size_t put_head(uint8_t *p, uint8_t type, uint8_t flags) {
  memcpy(p, auth_magic, 4);
  p[4] = (uint8_t)(NB_LINK_AUTH_VERSION & 0xff);
  p[5] = (uint8_t)(NB_LINK_AUTH_VERSION >> 8);
  p[6] = type;
  p[7] = flags;
  return NB__AUTH_HEAD;
}

/* Appends u8 length and name at p; returns the bytes written. */
static size_t put_name(uint8_t *p, const char *name) {
  size_t n = strlen(name);
  p[0] = (uint8_t)n;
  memcpy(p + 1, name, n);
  return n + 1;
}

/* Writes the transcript T into t; returns its length. */
static size_t transcript(const nb_link_auth_t *a, uint8_t *t) {
  const char *name_c = a->caller ? a->self : a->peer;
  const char *name_a = a->caller ? a->peer : a->self;
  size_t n = 0;
  memcpy(t, auth_magic, 4);
  t[4] = (uint8_t)(NB_LINK_AUTH_VERSION & 0xff);
  t[5] = (uint8_t)(NB_LINK_AUTH_VERSION >> 8);
  t[6] = a->flags_c;
  t[7] = a->flags_a;
  n = 8;
  n += put_name(t + n, name_c);
  n += put_name(t + n, name_a);
  memcpy(t + n, a->nonce_c, NB_LINK_AUTH_NONCE);
  n += NB_LINK_AUTH_NONCE;
  memcpy(t + n, a->nonce_a, NB_LINK_AUTH_NONCE);
  return n + NB_LINK_AUTH_NONCE;
}

/* Computes the proof of role ("caller" or "acceptor") into mac. */
static void proof(const nb_link_auth_t *a, const char *role, uint8_t *mac) {
  uint8_t t[NB__AUTH_T_MAX];
  size_t tl = transcript(a, t);
  crypto_auth_hmacsha512256_state st;
  crypto_auth_hmacsha512256_init(&st, a->key.k, sizeof a->key.k);
  crypto_auth_hmacsha512256_update(&st, (const uint8_t *)role, strlen(role));
  crypto_auth_hmacsha512256_update(&st, t, tl);
  crypto_auth_hmacsha512256_final(&st, mac);
  sodium_memzero(&st, sizeof st);
}

/* Derives the session's two record keys once both proofs are known. */
static void session_keys(nb_link_auth_t *a) {
  uint8_t t[NB__AUTH_T_MAX], s[crypto_kdf_KEYBYTES];
  size_t tl = transcript(a, t);
  crypto_generichash(s, sizeof s, t, tl, a->key.k, sizeof a->key.k);
  uint8_t c2a[32], a2c[32];
  crypto_kdf_derive_from_key(c2a, sizeof c2a, 1, "NBlink01", s);
  crypto_kdf_derive_from_key(a2c, sizeof a2c, 2, "NBlink01", s);
  memcpy(a->k_tx, a->caller ? c2a : a2c, 32);
  memcpy(a->k_rx, a->caller ? a2c : c2a, 32);
  sodium_memzero(s, sizeof s);
  sodium_memzero(c2a, sizeof c2a);
  sodium_memzero(a2c, sizeof a2c);
  a->encrypted = ((a->flags_c | a->flags_a) & NB_LINK_AUTH_F_ENCRYPT) != 0;
  a->state = ST_UP;
}

int nb_link_auth_begin(nb_link_auth_t *a, nb_link_auth_io_t *io) {
  memset(io, 0, sizeof *io);
  if (!a->caller || a->state != ST_START) return NB_EINVAL;
  randombytes_buf(a->nonce_c, sizeof a->nonce_c);
  a->flags_c = a->want_encrypt ? NB_LINK_AUTH_F_ENCRYPT : 0;
  size_t n = put_head(a->out, 1, a->flags_c);
  n += put_name(a->out + n, a->self);
  memcpy(a->out + n, a->nonce_c, NB_LINK_AUTH_NONCE);
  io->out = a->out;
  io->out_len = n + NB_LINK_AUTH_NONCE;
  a->state = ST_WAIT_PEER;
  return 0;
}

/* Returns the length of the message collected so far once it is known
 * (0: more bytes needed first). */
static size_t msg_need(const nb_link_auth_t *a) {
  if (a->mlen < NB__AUTH_HEAD) return NB__AUTH_HEAD;
  uint8_t type = a->msg[6];
  if (type == 3) return NB__AUTH_HEAD + NB_LINK_AUTH_MAC;
  if (a->mlen < NB__AUTH_HEAD + 1) return NB__AUTH_HEAD + 1;
  size_t n = NB__AUTH_HEAD + 1 + a->msg[NB__AUTH_HEAD] + NB_LINK_AUTH_NONCE;
  return type == 2 ? n + NB_LINK_AUTH_MAC : n;
}

/* Checks the head of the collected message; returns 0 or NB_EFRAME. */
static int check_head(nb_link_auth_t *a, uint8_t type) {
  uint16_t v = (uint16_t)(a->msg[4] | (a->msg[5] << 8));
  if (v != NB_LINK_AUTH_VERSION)
    return fail(a, "authentication version mismatch: the peer speaks %u, "
                "this node %u", v, NB_LINK_AUTH_VERSION);
  if (a->msg[6] != type)
    return fail(a, "bad authentication: message type %u where %u belongs",
                a->msg[6], type);
  if (a->msg[7] & ~NB_LINK_AUTH_F_ENCRYPT)
    return fail(a, "bad authentication: unknown flags 0x%02x", a->msg[7]);
  return 0;
}

/* Reads the name after the head into dst; returns 0 or NB_EFRAME. */
static int take_name(nb_link_auth_t *a, char *dst) {
  size_t n = a->msg[NB__AUTH_HEAD];
  const char *p = (const char *)a->msg + NB__AUTH_HEAD + 1;
  if (!nb_link_name_ok(p, n))
    return fail(a, "refused: the peer's cortex name (%zu bytes) is not a "
                "valid name (1..255 bytes of UTF-8, no control characters)",
                n);
  memcpy(dst, p, n);
  dst[n] = 0;
  return 0;
}

/* The acceptor got message 1: answers with message 2. */
static int on_msg1(nb_link_auth_t *a, nb_link_auth_io_t *io) {
  if (check_head(a, 1) != 0 || take_name(a, a->peer) != 0) return NB_EFRAME;
  if (!keyring_find(a->kr, a->peer, &a->key))
    return fail(a, "refused: cortex '%s' may not call (it is not in "
                "accept.allow)", a->peer);
  a->flags_c = a->msg[7];
  memcpy(a->nonce_c, a->msg + NB__AUTH_HEAD + 1 + a->msg[NB__AUTH_HEAD],
         NB_LINK_AUTH_NONCE);
  randombytes_buf(a->nonce_a, sizeof a->nonce_a);
  a->flags_a = a->want_encrypt ? NB_LINK_AUTH_F_ENCRYPT : 0;
  size_t n = put_head(a->out, 2, a->flags_a);
  n += put_name(a->out + n, a->self);
  memcpy(a->out + n, a->nonce_a, NB_LINK_AUTH_NONCE);
  n += NB_LINK_AUTH_NONCE;
  proof(a, "acceptor", a->out + n);
  io->out = a->out;
  io->out_len = n + NB_LINK_AUTH_MAC;
  a->state = ST_WAIT_PROOF;
  return 0;
}

/* The caller got message 2: checks the acceptor's proof, answers with
 * message 3. */
static int on_msg2(nb_link_auth_t *a, nb_link_auth_io_t *io) {
  if (check_head(a, 2) != 0 || take_name(a, a->peer) != 0) return NB_EFRAME;
  a->flags_a = a->msg[7];
  const uint8_t *p = a->msg + NB__AUTH_HEAD + 1 + a->msg[NB__AUTH_HEAD];
  memcpy(a->nonce_a, p, NB_LINK_AUTH_NONCE);
  uint8_t mac[NB_LINK_AUTH_MAC];
  proof(a, "acceptor", mac);
  if (crypto_verify_32(mac, p + NB_LINK_AUTH_NONCE) != 0)
    return fail(a, "authentication failed: cortex '%s' does not prove this "
                "link's secret (the two sides' secrets differ)", a->peer);
  size_t n = put_head(a->out, 3, a->flags_c);
  proof(a, "caller", a->out + n);
  io->out = a->out;
  io->out_len = n + NB_LINK_AUTH_MAC;
  session_keys(a);
  io->established = 1;
  return 0;
}

/* The acceptor got message 3: checks the caller's proof. */
static int on_msg3(nb_link_auth_t *a, nb_link_auth_io_t *io) {
  if (check_head(a, 3) != 0) return NB_EFRAME;
  if (a->msg[7] != a->flags_c)
    return fail(a, "bad authentication: cortex '%s' changed its flags",
                a->peer);
  uint8_t mac[NB_LINK_AUTH_MAC];
  proof(a, "caller", mac);
  if (crypto_verify_32(mac, a->msg + NB__AUTH_HEAD) != 0)
    return fail(a, "authentication failed: cortex '%s' does not prove its "
                "secret (a wrong secret, or a replayed handshake)", a->peer);
  session_keys(a);
  io->established = 1;
  return 0;
}

/* Collects handshake bytes from *data; returns 1 with a whole message in
 * a->msg, 0 when more are needed, or NB_EFRAME. */
static int collect(nb_link_auth_t *a, const uint8_t **data, size_t *len) {
  for (;;) {
    size_t need = msg_need(a);
    if (a->mlen >= need) return 1;
    size_t take = need - a->mlen;
    if (take > *len) take = *len;
    if (!take) return 0;
    size_t at = a->mlen;
    memcpy(a->msg + at, *data, take);
    a->mlen += take;
    *data += take;
    *len -= take;
    /* A stranger is refused at its first wrong byte; "NBL" is a plain
     * HELLO (a caller without a secret). */
    for (size_t i = at; i < a->mlen && i < 4; i++) {
      if (a->msg[i] == auth_magic[i]) continue;
      if (!a->caller && i == 2 && a->msg[2] == hello_magic[2])
        return fail(a, "refused: an unauthenticated caller (a plain HELLO, "
                    "without proof of a secret); this node requires one");
      return fail(a, "refused: not an authenticating NeuronBus peer (byte "
                  "%zu is 0x%02x)", i, a->msg[i]);
    }
  }
}

int nb_link_auth_established(const nb_link_auth_t *a) {
  return a && a->state == ST_UP;
}

int nb_link_auth_encrypted(const nb_link_auth_t *a) {
  return a && a->state == ST_UP && a->encrypted;
}

const char *nb_link_auth_peer(const nb_link_auth_t *a) {
  return a && a->state == ST_UP ? a->peer : "";
}

const char *nb_link_auth_why(const nb_link_auth_t *a) { return a->why; }

/* ---- records ---- */

size_t nb_link_auth_sealed_size(size_t plain) {
  size_t recs = (plain + NB_LINK_AUTH_RECORD - 1) / NB_LINK_AUTH_RECORD;
  return plain + recs * (NB__REC_HEAD + NB__REC_TAG);
}

/* Writes the 12-byte nonce of record number n. */
static void rec_nonce(uint64_t n, uint8_t nonce[12]) {
  memset(nonce, 0, 12);
  for (int i = 0; i < 8; i++) nonce[i] = (uint8_t)(n >> (8 * i));
}

/* Seals the m bytes at src as one record at dst; returns its size. */
static size_t seal_one(nb_link_auth_t *a, const uint8_t *src, size_t m,
                       uint8_t *dst) {
  uint32_t n = (uint32_t)(m + NB__REC_TAG);
  for (int i = 0; i < 4; i++) dst[i] = (uint8_t)(n >> (8 * i));
  uint8_t nonce[12];
  rec_nonce(a->n_tx++, nonce);
  unsigned long long clen = 0;
  crypto_aead_chacha20poly1305_ietf_encrypt(dst + NB__REC_HEAD, &clen, src, m,
                                            dst, NB__REC_HEAD, NULL, nonce,
                                            a->k_tx);
  return NB__REC_HEAD + (size_t)clen;
}

int64_t nb_link_auth_seal(nb_link_auth_t *a, const struct iovec *iov,
                          size_t n, uint8_t *out) {
  if (!nb_link_auth_encrypted(a)) return NB_EINVAL;
  /* Records are cut every NB_LINK_AUTH_RECORD bytes across the buffers:
   * a record's plaintext is gathered first (in the slot its ciphertext
   * takes: encryption may run in place). */
  size_t o = 0, fill = 0;
  for (size_t i = 0; i < n; i++) {
    const uint8_t *p = iov[i].iov_base;
    size_t left = iov[i].iov_len;
    while (left) {
      size_t take = NB_LINK_AUTH_RECORD - fill;
      if (take > left) take = left;
      memcpy(out + o + NB__REC_HEAD + fill, p, take);
      fill += take;
      p += take;
      left -= take;
      if (fill == NB_LINK_AUTH_RECORD) {
        o += seal_one(a, out + o + NB__REC_HEAD, fill, out + o);
        fill = 0;
      }
    }
  }
  if (fill) o += seal_one(a, out + o + NB__REC_HEAD, fill, out + o);
  return (int64_t)o;
}

/* Opens the record at rec (its whole n + 4 bytes) into dst; returns the
 * plaintext length or NB_EFRAME. */
static int64_t open_one(nb_link_auth_t *a, const uint8_t *rec, uint32_t n,
                        uint8_t *dst) {
  uint8_t nonce[12];
  rec_nonce(a->n_rx, nonce);
  unsigned long long mlen = 0;
  if (crypto_aead_chacha20poly1305_ietf_decrypt(dst, &mlen, NULL,
                                                rec + NB__REC_HEAD, n, rec,
                                                NB__REC_HEAD, nonce,
                                                a->k_rx) != 0)
    return fail(a, "encrypted record %llu from cortex '%s' does not verify "
                "(tampered, replayed or reordered)",
                (unsigned long long)a->n_rx + 1, a->peer);
  a->n_rx++;
  return (int64_t)mlen;
}

/* Returns the length field of the record head at p. */
static uint32_t rec_len(const uint8_t *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
         (uint32_t)p[3] << 24;
}

/* Returns 0 when n is a possible record length, else NB_EFRAME. */
static int rec_len_ok(nb_link_auth_t *a, uint32_t n) {
  if (n >= NB__REC_TAG && n <= NB_LINK_AUTH_RECORD + NB__REC_TAG) return 0;
  return fail(a, "encrypted record %llu from cortex '%s' has a bad length %u",
              (unsigned long long)a->n_rx + 1, a->peer, n);
}

/* Opens every whole record of data (and the one collected before) into
 * a->plain; keeps a cut one; returns 0, NB_ENOMEM or NB_EFRAME. */
static int open_records(nb_link_auth_t *a, const uint8_t *data, size_t len,
                        nb_link_auth_io_t *io) {
  size_t need = len + a->rlen;
  if (need > a->pcap) {
    uint8_t *p = realloc(a->plain, need);
    if (!p) return NB_ENOMEM;
    a->plain = p;
    a->pcap = need;
  }
  if (!a->rec) {
    a->rec = malloc(NB__REC_HEAD + NB_LINK_AUTH_RECORD + NB__REC_TAG);
    if (!a->rec) return NB_ENOMEM;
  }
  size_t o = 0;
  while (len) {
    uint32_t n;
    int64_t m;
    if (!a->rlen && len >= NB__REC_HEAD) {
      /* A whole record in place: opened without a copy. */
      n = rec_len(data);
      if (rec_len_ok(a, n) != 0) return NB_EFRAME;
      if (len >= NB__REC_HEAD + n) {
        m = open_one(a, data, n, a->plain + o);
        if (m < 0) return (int)m;
        o += (size_t)m;
        data += NB__REC_HEAD + n;
        len -= NB__REC_HEAD + n;
        continue;
      }
    }
    /* A cut record: its head, then its rest, collected in a->rec. */
    if (a->rlen < NB__REC_HEAD) {
      size_t t = NB__REC_HEAD - a->rlen;
      if (t > len) t = len;
      memcpy(a->rec + a->rlen, data, t);
      a->rlen += t;
      data += t;
      len -= t;
      if (a->rlen < NB__REC_HEAD) break;
    }
    n = rec_len(a->rec);
    if (rec_len_ok(a, n) != 0) return NB_EFRAME;
    size_t t = NB__REC_HEAD + n - a->rlen;
    if (t > len) t = len;
    memcpy(a->rec + a->rlen, data, t);
    a->rlen += t;
    data += t;
    len -= t;
    if (a->rlen < NB__REC_HEAD + n) break;
    m = open_one(a, a->rec, n, a->plain + o);
    if (m < 0) return (int)m;
    o += (size_t)m;
    a->rlen = 0;
  }
  io->plain = a->plain;
  io->plain_len = o;
  return 0;
}

int nb_link_auth_input(nb_link_auth_t *a, const uint8_t *data, size_t len,
                       nb_link_auth_io_t *io) {
  memset(io, 0, sizeof *io);
  if (a->state == ST_FAILED) return NB_EFRAME;
  if (a->state == ST_START) {
    if (a->caller)
      return fail(a, "bad authentication: the peer spoke before the caller");
    a->state = ST_WAIT_PEER;
  }
  while (a->state != ST_UP) {
    int rc = collect(a, &data, &len);
    if (rc <= 0) return rc;
    if (a->caller) rc = on_msg2(a, io);
    else if (a->state == ST_WAIT_PEER) rc = on_msg1(a, io);
    else rc = on_msg3(a, io);
    a->mlen = 0;
    if (rc != 0) return rc;
    /* The acceptor answers message 1 and waits for message 3 (the caller
     * cannot send it before reading the answer). */
    if (a->state == ST_WAIT_PROOF && len)
      return fail(a, "bad authentication: cortex '%s' sent %zu bytes before "
                  "reading the answer", a->peer, len);
    if (a->state == ST_WAIT_PROOF) return 0;
  }
  if (!len) return 0;
  if (!a->encrypted) {
    io->plain = data;
    io->plain_len = len;
    return 0;
  }
  const uint8_t *out = io->out;
  size_t out_len = io->out_len;
  int est = io->established;
  int rc = open_records(a, data, len, io);
  io->out = out;
  io->out_len = out_len;
  io->established = est;
  return rc;
}

void nb_link_auth_free(nb_link_auth_t *a) {
  if (!a) return;
  free(a->rec);
  if (a->plain) sodium_memzero(a->plain, a->pcap);
  free(a->plain);
  sodium_memzero(a, sizeof *a);
  free(a);
}
