/* fuzz_link_auth.c: libFuzzer target for the links' authentication and
 * record parser alone (runtime/nb_link_auth.h: nb_link_auth_input), in
 * each of its states.
 *
 * Build: clang -fsanitize=fuzzer,address,undefined (make fuzz), or cc with
 * spec/fuzz/replay.c (make fuzz-replay). Input: a mode byte, a cut byte,
 * then the bytes. The mode picks the side under test (acceptor or
 * caller), who asks for encryption, the acceptor's keyring (cluster
 * secret, allow list, both, or an honest peer with a wrong secret), how
 * many valid handshake messages an honest peer (the same module, the
 * other role) delivers first (so the bytes land in the first message, in
 * the proof, or after the handshake, plain or in records), and, once
 * encrypted, whether the honest peer seals the bytes into records (with
 * one byte flipped, by the cut byte's top bit). Randomness is made
 * deterministic per input (randombytes_set_implementation), so a finding
 * replays.
 *
 * Properties (a failure traps):
 *   - a call returns 0 or NB_EFRAME; a failure has a reason, is sticky,
 *     and leaves the state not established, naming no peer;
 *   - the handshake completes at most once, an answer fits a message;
 *   - the verdict, the answers and (when no record failed) the plain
 *     bytes do not depend on how the bytes are cut (except for an
 *     acceptor's first message, where bytes beyond it in the same read
 *     are refused by design);
 *   - after an unencrypted handshake the bytes pass through unchanged;
 *     bytes the honest peer sealed open to themselves, and with a byte
 *     flipped only a prefix of them opens (the stream fails, or its
 *     last record waits for bytes a flipped length asks for). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "nb_err.h"
#include "nb_link_auth.h"

#define CHECK(c)                                                             \
  do {                                                                       \
    if (!(c)) {                                                              \
      fprintf(stderr, "fuzz_link_auth: property failed: %s (line %d)\n", #c, \
              __LINE__);                                                     \
      __builtin_trap();                                                      \
    }                                                                        \
  } while (0)

#define FNV(h, v) ((h) = ((h) ^ (uint64_t)(v)) * 1099511628211ull)
#define MSG_MAX 400u /* more than the longest handshake message */

static const char SECRET[] = "fuzz link auth secret 0123456789";
static const char ALPHA[] = "fuzz secret of alpha 0123456789";
static const char WRONG[] = "fuzz wrong secret 0123456789abcd";

/* ---- deterministic randomness ---- */

static uint64_t rng;

static uint64_t rng_next(void) {
  rng ^= rng >> 12;
  rng ^= rng << 25;
  rng ^= rng >> 27;
  return rng * 2685821657736338717ull;
}

static const char *rng_name(void) { return "fuzz-deterministic"; }
static uint32_t rng_random(void) { return (uint32_t)(rng_next() >> 32); }
static void rng_buf(void *const buf, const size_t size) {
  uint8_t *p = buf;
  for (size_t i = 0; i < size; i++) p[i] = (uint8_t)(rng_next() >> 56);
}

static randombytes_implementation rng_impl = {
    rng_name, rng_random, NULL, NULL, rng_buf, NULL};

/* ---- one run ---- */

typedef struct verdict_s {
  int error;           /* the first failing call's code, or 0 */
  int established;     /* calls that completed the handshake */
  uint64_t out_digest, plain_digest;
  size_t plain_len;
} verdict_t;

typedef struct setup_s {
  int u_caller, h_enc, u_enc, ring, stage, sealed, flip;
} setup_t;

static uint8_t plain_all[1 << 16];

/* Returns the next piece length for cut byte seed. */
static size_t next_cut(uint32_t *st, uint8_t seed, size_t left) {
  size_t n;
  switch (seed & 3) {
    case 0: n = 1; break;
    case 1: n = 1 + ((seed >> 2) & 15); break;
    case 2: n = 4 + ((seed >> 2) & 3) * 16; break;
    default:
      *st = *st * 1664525u + 1013904223u;
      n = 1 + (*st >> 8) % 200;
  }
  return n < left ? n : left;
}

/* Makes the keyring of the acceptor as su says; returns it. */
static nb_link_keyring_t *make_ring(const setup_t *su, int enc) {
  nb_link_keyring_t *kr = NULL;
  CHECK(nb_link_keyring_new(&kr, enc) == 0);
  if (su->ring != 1)
    CHECK(nb_link_keyring_set_default(kr, SECRET, sizeof SECRET - 1) == 0);
  if (su->ring == 1 || su->ring == 2)
    CHECK(nb_link_keyring_allow(kr, "alpha", ALPHA, sizeof ALPHA - 1) == 0);
  return kr;
}

/* Makes a caller named "alpha" proving the secret its keyring expects
 * (the wrong one for ring 3); returns it. */
static nb_link_auth_t *make_caller(const setup_t *su, int enc) {
  const char *s = su->ring == 1 || su->ring == 2 ? ALPHA
                  : su->ring == 3                 ? WRONG
                                                  : SECRET;
  nb_link_key_t k;
  CHECK(nb_link_key_derive(&k, s, strlen(s)) == 0);
  nb_link_auth_t *a = NULL;
  CHECK(nb_link_auth_caller(&a, "alpha", &k, enc) == 0);
  nb_link_key_wipe(&k);
  return a;
}

/* Delivers io's answer from one side to the other; returns the other's
 * result code. */
static int deliver(nb_link_auth_io_t *io, nb_link_auth_t *to) {
  uint8_t m[MSG_MAX];
  CHECK(io->out && io->out_len <= sizeof m);
  memcpy(m, io->out, io->out_len);
  size_t n = io->out_len;
  return nb_link_auth_input(to, m, n, io);
}

/* Feeds data (len bytes) to u in pieces chosen by cut (whole: one piece)
 * and checks each call; returns the verdict. */
static verdict_t feed(nb_link_auth_t *u, const uint8_t *data, size_t len,
                      uint8_t cut, int whole, int was_up) {
  verdict_t v = {0, 0, 1469598103934665603ull, 1469598103934665603ull, 0};
  uint32_t st = cut * 2654435761u + 7;
  size_t pos = 0, fed = 0;
  int up = was_up;
  while (pos < len) {
    size_t n = whole ? len - pos : next_cut(&st, cut, len - pos);
    nb_link_auth_io_t io;
    int rc = nb_link_auth_input(u, data + pos, n, &io);
    pos += n;
    fed += n;
    CHECK(rc == 0 || rc == NB_EFRAME);
    if (rc != 0) {
      v.error = rc;
      CHECK(nb_link_auth_why(u)[0] != 0);
      CHECK(!nb_link_auth_established(u));
      CHECK(nb_link_auth_peer(u)[0] == 0);
      uint8_t one = 0;
      CHECK(nb_link_auth_input(u, &one, 1, &io) == NB_EFRAME); /* sticky */
      break;
    }
    CHECK(io.out_len <= MSG_MAX && (io.out_len == 0) == (io.out == NULL));
    for (size_t i = 0; i < io.out_len; i++) FNV(v.out_digest, io.out[i]);
    if (io.established) {
      CHECK(!up);
      up = 1;
      v.established++;
      CHECK(nb_link_auth_established(u));
      CHECK(nb_link_auth_peer(u)[0] != 0);
    }
    CHECK(io.plain_len == 0 || up);
    CHECK(v.plain_len + io.plain_len <= fed);
    if (io.plain_len) {
      CHECK(v.plain_len + io.plain_len <= sizeof plain_all);
      memcpy(plain_all + v.plain_len, io.plain, io.plain_len);
      for (size_t i = 0; i < io.plain_len; i++) FNV(v.plain_digest, io.plain[i]);
      v.plain_len += io.plain_len;
    }
  }
  return v;
}

static uint8_t sealed_buf[(1 << 16) + 4096];

/* Runs one setup over data; returns the verdict. */
static verdict_t run(const setup_t *su, const uint8_t *data, size_t len,
                     uint8_t cut, int whole) {
  rng = 0x9e3779b97f4a7c15ull;
  nb_link_keyring_t *kr = make_ring(su, su->u_caller ? su->h_enc : su->u_enc);
  nb_link_auth_t *acc = NULL, *cal;
  CHECK(nb_link_auth_acceptor(&acc, "beta", kr) == 0);
  cal = make_caller(su, su->u_caller ? su->u_enc : su->h_enc);
  nb_link_auth_t *u = su->u_caller ? cal : acc, *h = su->u_caller ? acc : cal;
  /* The honest prefix: message 1 always leaves the caller; the stage says
   * how far the exchange goes before the fuzz bytes reach u. */
  nb_link_auth_io_t io;
  CHECK(nb_link_auth_begin(cal, &io) == 0);
  int up = 0, ok = 1;
  if (!su->u_caller && su->stage >= 1) {
    ok = deliver(&io, acc) == 0;             /* acc: m1, answers m2 */
    if (ok && su->stage >= 2) {
      ok = deliver(&io, cal) == 0;           /* cal: m2, answers m3 */
      ok = ok && deliver(&io, acc) == 0;     /* acc: m3 */
      up = ok;
    }
  } else if (su->u_caller && su->stage >= 1) {
    ok = deliver(&io, acc) == 0 && deliver(&io, cal) == 0; /* cal: m2 */
    up = ok;
  }
  verdict_t v;
  if (up) CHECK(nb_link_auth_established(u));
  if (up && su->sealed && nb_link_auth_encrypted(h) && ok) {
    /* h seals the bytes: u must open them to themselves. */
    CHECK(nb_link_auth_encrypted(u));
    struct iovec vec = {(void *)data, len};
    int64_t m = nb_link_auth_seal(h, &vec, 1, sealed_buf);
    CHECK(m >= 0 && (size_t)m == nb_link_auth_sealed_size(len));
    size_t flip_at = len ? data[0] * 131u % (size_t)m : 0;
    if (su->flip && m) sealed_buf[flip_at] ^= 0x40;
    v = feed(u, sealed_buf, (size_t)m, cut, whole, 1);
    if (!su->flip || !m) {
      CHECK(v.error == 0 && v.plain_len == len);
      CHECK(memcmp(plain_all, data, len) == 0);
    } else {
      /* A flipped length may only leave the last record waiting. */
      CHECK(v.error == NB_EFRAME || v.plain_len < len);
      CHECK(v.plain_len <= len && memcmp(plain_all, data, v.plain_len) == 0);
    }
  } else {
    int plain = up && !nb_link_auth_encrypted(u);
    v = feed(u, data, len, cut, whole, up);
    if (plain) {
      /* Plain after the handshake: the bytes pass through. */
      CHECK(v.error == 0 && v.plain_len == len);
      CHECK(memcmp(plain_all, data, len) == 0);
    }
  }
  nb_link_auth_free(acc);
  nb_link_auth_free(cal);
  nb_link_keyring_free(kr);
  return v;
}

int LLVMFuzzerTestOneInput(const uint8_t *in, size_t size) {
  static int ready;
  if (!ready) {
    CHECK(randombytes_set_implementation(&rng_impl) == 0);
    CHECK(sodium_init() >= 0);
    ready = 1;
  }
  if (size < 2) return 0;
  uint8_t mode = in[0], cut = in[1];
  setup_t su = {mode & 1, (mode >> 1) & 1, (mode >> 2) & 1, (mode >> 3) & 3,
                (mode >> 5) & 3, mode >> 7, cut >> 7};
  const uint8_t *data = in + 2;
  size_t len = size - 2;
  verdict_t whole = run(&su, data, len, cut, 1);
  verdict_t cutv = run(&su, data, len, cut, 0);
  if (!su.u_caller && su.stage == 0) return 0;
  CHECK(whole.error == cutv.error);
  CHECK(whole.established == cutv.established);
  CHECK(whole.out_digest == cutv.out_digest);
  /* A bad record drops the good ones read with it: the plain bytes of a
   * failed stream depend on the cut (the connection closes anyway). */
  if (whole.error) return 0;
  CHECK(whole.plain_len == cutv.plain_len);
  CHECK(whole.plain_digest == cutv.plain_digest);
  return 0;
}
