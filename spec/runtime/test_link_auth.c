/* test_link_auth.c: the links' authentication and record sealing
 * (runtime/nb_link_auth.h), byte for byte, without sockets. The proofs a
 * hostile caller would send are computed here from the documented
 * transcript, independently of the module. */
#include <sodium.h>
#include <string.h>

#include "nb_err.h"
#include "nb_link_auth.h"
#include "nbtest.h"

static const char SECRET[] = "correct horse battery staple 42";
static const char WRONG[] = "correct horse battery staple 43";

/* Everything either side put on the wire, for the leak check. */
static uint8_t wire[1 << 20];
static size_t wire_len;

/* Records n bytes at p as written to the socket; returns nothing. */
static void on_wire(const uint8_t *p, size_t n) {
  NBT_CHECK(wire_len + n <= sizeof wire);
  if (wire_len + n > sizeof wire) return;
  memcpy(wire + wire_len, p, n);
  wire_len += n;
}

/* Returns 1 when the n bytes at needle occur anywhere on the wire. */
static int on_wire_has(const void *needle, size_t n) {
  return memmem(wire, wire_len, needle, n) != NULL;
}

/* Makes a keyring holding the cluster secret s; returns it. */
static nb_link_keyring_t *ring_of(const char *s, int encrypt) {
  nb_link_keyring_t *kr = NULL;
  NBT_EQ(nb_link_keyring_new(&kr, encrypt), 0);
  NBT_EQ(nb_link_keyring_set_default(kr, s, strlen(s)), 0);
  return kr;
}

/* Makes a caller named name proving secret s; returns it. */
static nb_link_auth_t *caller_of(const char *name, const char *s, int enc) {
  nb_link_key_t k;
  NBT_EQ(nb_link_key_derive(&k, s, strlen(s)), 0);
  nb_link_auth_t *a = NULL;
  NBT_EQ(nb_link_auth_caller(&a, name, &k, enc), 0);
  return a;
}

/* The three messages of one handshake, as written. */
typedef struct msgs_s {
  uint8_t m1[400], m2[400], m3[400];
  size_t l1, l2, l3;
} msgs_t;

/* Runs a handshake between c and a, message by message, with tamper (if
 * set) changing each message before delivery; fills *m with what was
 * sent. Returns 0 when both sides are established, else the first
 * failing side's code (1 caller, 2 acceptor). */
static int handshake(nb_link_auth_t *c, nb_link_auth_t *a, msgs_t *m,
                     void (*tamper)(int msg, uint8_t *p, size_t n)) {
  uint8_t *buf[3] = {m->m1, m->m2, m->m3};
  size_t *len[3] = {&m->l1, &m->l2, &m->l3};
  nb_link_auth_t *to[3] = {a, c, a};
  nb_link_auth_io_t io;
  NBT_EQ(nb_link_auth_begin(c, &io), 0);
  for (int i = 0; i < 3; i++) {
    NBT_CHECK(io.out != NULL);
    if (!io.out) return i == 1 ? 2 : 1;
    memcpy(buf[i], io.out, io.out_len);
    *len[i] = io.out_len;
    on_wire(buf[i], *len[i]);
    if (tamper) tamper(i + 1, buf[i], *len[i]);
    if (nb_link_auth_input(to[i], buf[i], *len[i], &io) != 0)
      return to[i] == c ? 1 : 2;
    NBT_CHECK(io.established == (i > 0));
  }
  return 0;
}

/* A caller "alpha" and an acceptor "beta" and their handshake. */
typedef struct pair_s {
  nb_link_auth_t *c, *a;
  msgs_t m;
} pair_t;

/* Makes the pair (the caller proving secret, asking for encryption when
 * enc is 1; the acceptor checking against kr) and runs the handshake with
 * tamper; returns what handshake returns. */
static int pair_run(pair_t *p, const char *secret, int enc,
                    nb_link_keyring_t *kr,
                    void (*tamper)(int msg, uint8_t *p, size_t n)) {
  p->c = caller_of("alpha", secret, enc);
  p->a = NULL;
  NBT_EQ(nb_link_auth_acceptor(&p->a, "beta", kr), 0);
  return handshake(p->c, p->a, &p->m, tamper);
}

/* Frees both ends of p; returns nothing. */
static void pair_free(pair_t *p) {
  nb_link_auth_free(p->c);
  nb_link_auth_free(p->a);
  p->c = p->a = NULL;
}

/* Writes what a hostile caller proving secret sends as message 3 over
 * the t_len-byte transcript t (computed here from the documented
 * derivation, independently of the module) into m3. */
static void hostile_msg3(const char *secret, const uint8_t *t, size_t t_len,
                         uint8_t m3[40]) {
  static const uint8_t head[8] = {'N', 'B', 'A', 'U', 1, 0, 3, 0};
  uint8_t k[32];
  crypto_generichash_state st;
  crypto_generichash_init(&st, NULL, 0, 32);
  crypto_generichash_update(&st, (const uint8_t *)"neuronbus-link-secret-v1", 24);
  crypto_generichash_update(&st, (const uint8_t *)secret, strlen(secret));
  crypto_generichash_final(&st, k, 32);
  memcpy(m3, head, 8);
  crypto_auth_hmacsha512256_state hs;
  crypto_auth_hmacsha512256_init(&hs, k, 32);
  crypto_auth_hmacsha512256_update(&hs, (const uint8_t *)"caller", 6);
  crypto_auth_hmacsha512256_update(&hs, t, t_len);
  crypto_auth_hmacsha512256_final(&hs, m3 + 8);
}

static void test_good_secret_both_sides_established(void) {
  nb_link_keyring_t *kr = ring_of(SECRET, 0);
  pair_t p;
  NBT_EQ(pair_run(&p, SECRET, 0, kr, NULL), 0);
  nb_link_auth_t *c = p.c, *a = p.a;
  NBT_CHECK(nb_link_auth_established(c) && nb_link_auth_established(a));
  NBT_CHECK(strcmp(nb_link_auth_peer(c), "beta") == 0);
  NBT_CHECK(strcmp(nb_link_auth_peer(a), "alpha") == 0);
  NBT_CHECK(!nb_link_auth_encrypted(c) && !nb_link_auth_encrypted(a));
  /* Unencrypted: the link's bytes pass through untouched. */
  nb_link_auth_io_t io;
  NBT_EQ(nb_link_auth_input(a, (const uint8_t *)"NBLKxyz", 7, &io), 0);
  NBT_EQ(io.plain_len, 7u);
  NBT_CHECK(memcmp(io.plain, "NBLKxyz", 7) == 0);
  pair_free(&p);
  nb_link_keyring_free(kr);
}

static void test_wrong_secret_fails_on_both_sides(void) {
  nb_link_keyring_t *kr = ring_of(SECRET, 0);
  /* A caller with the wrong secret refuses the acceptor's proof. */
  pair_t p;
  NBT_EQ(pair_run(&p, WRONG, 0, kr, NULL), 1);
  NBT_CHECK(strstr(nb_link_auth_why(p.c), "does not prove") != NULL);
  NBT_CHECK(!nb_link_auth_established(p.c));
  pair_free(&p);
  /* A hostile caller that answers anyway, proving the wrong key over the
   * right transcript: the acceptor refuses it. */
  nb_link_auth_t *a = NULL;
  NBT_EQ(nb_link_auth_acceptor(&a, "beta", kr), 0);
  uint8_t m1[8 + 1 + 5 + 32] = {'N', 'B', 'A', 'U', 1, 0, 1, 0, 5,
                                'a', 'l', 'p', 'h', 'a'};
  randombytes_buf(m1 + 14, 32);
  nb_link_auth_io_t io;
  NBT_EQ(nb_link_auth_input(a, m1, sizeof m1, &io), 0);
  NBT_EQ(io.out_len, 8u + 1 + 4 + 32 + 32);
  uint8_t t[8 + 6 + 5 + 64] = {'N', 'B', 'A', 'U', 1, 0, 0, 0, 5,
                               'a', 'l', 'p', 'h', 'a', 4, 'b', 'e', 't', 'a'};
  memcpy(t + 19, m1 + 14, 32);
  memcpy(t + 51, io.out + 13, 32);
  uint8_t m3[8 + 32];
  hostile_msg3(WRONG, t, sizeof t, m3);
  NBT_EQ(nb_link_auth_input(a, m3, sizeof m3, &io), NB_EFRAME);
  NBT_CHECK(strstr(nb_link_auth_why(a), "does not prove its secret") != NULL);
  /* Sticky: nothing more is taken. */
  NBT_EQ(nb_link_auth_input(a, m3, 1, &io), NB_EFRAME);
  /* The same computation with the right secret is accepted: the failure
   * above is the key's, not the test's transcript. */
  nb_link_auth_free(a);
  a = NULL;
  NBT_EQ(nb_link_auth_acceptor(&a, "beta", kr), 0);
  NBT_EQ(nb_link_auth_input(a, m1, sizeof m1, &io), 0);
  memcpy(t + 51, io.out + 13, 32);
  hostile_msg3(SECRET, t, sizeof t, m3);
  NBT_EQ(nb_link_auth_input(a, m3, sizeof m3, &io), 0);
  NBT_CHECK(io.established);
  NBT_CHECK(strcmp(nb_link_auth_peer(a), "alpha") == 0);
  nb_link_auth_free(a);
  nb_link_keyring_free(kr);
}

static void test_replayed_transcript_fails(void) {
  nb_link_keyring_t *kr = ring_of(SECRET, 0);
  pair_t p;
  NBT_EQ(pair_run(&p, SECRET, 0, kr, NULL), 0);
  msgs_t m = p.m;
  pair_free(&p);
  nb_link_auth_t *c = NULL, *a = NULL;
  /* A recorder replays the caller's two messages to a fresh acceptor:
   * its new nonce makes the old proof worthless. */
  a = NULL;
  NBT_EQ(nb_link_auth_acceptor(&a, "beta", kr), 0);
  nb_link_auth_io_t io;
  NBT_EQ(nb_link_auth_input(a, m.m1, m.l1, &io), 0);
  NBT_EQ(nb_link_auth_input(a, m.m3, m.l3, &io), NB_EFRAME);
  NBT_CHECK(!nb_link_auth_established(a));
  nb_link_auth_free(a);
  /* And the acceptor's answer replayed to a fresh caller fails too. */
  c = caller_of("alpha", SECRET, 0);
  NBT_EQ(nb_link_auth_begin(c, &io), 0);
  NBT_EQ(nb_link_auth_input(c, m.m2, m.l2, &io), NB_EFRAME);
  nb_link_auth_free(c);
  nb_link_keyring_free(kr);
}

/* Which byte tamper_one flips: message, offset (from the end if < 0). */
static int tamper_msg, tamper_at;

static void tamper_one(int msg, uint8_t *p, size_t n) {
  if (msg != tamper_msg) return;
  size_t i = tamper_at < 0 ? n + (size_t)tamper_at : (size_t)tamper_at;
  p[i] ^= 0x01;
}

static void test_tampered_nonce_name_or_flags_fails(void) {
  nb_link_keyring_t *kr = ring_of(SECRET, 0);
  static const struct { int msg, at; } cases[] = {
      {1, -1},      /* the caller's nonce */
      {1, 10},      /* the caller's name ("alpha" -> "a`pha") */
      {1, 7},       /* the caller's flags: asks for encryption */
      {2, 10},      /* the acceptor's name */
      {2, 8 + 1 + 4 + 3}, /* the acceptor's nonce */
      {2, 7},       /* the acceptor's flags */
      {2, -1},      /* the acceptor's proof */
      {3, -1},      /* the caller's proof */
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    tamper_msg = cases[i].msg;
    tamper_at = cases[i].at;
    pair_t p;
    int rc = pair_run(&p, SECRET, 0, kr, tamper_one);
    if (rc == 0) fprintf(stderr, "# tamper case %zu was not noticed\n", i);
    NBT_CHECK(rc != 0);
    NBT_CHECK(!(nb_link_auth_established(p.c) && nb_link_auth_established(p.a)));
    pair_free(&p);
  }
  nb_link_keyring_free(kr);
}

static void test_allow_list_and_strangers(void) {
  nb_link_keyring_t *kr = NULL;
  NBT_EQ(nb_link_keyring_new(&kr, 0), 0);
  NBT_EQ(nb_link_keyring_allow(kr, "alpha", SECRET, strlen(SECRET)), 0);
  NBT_EQ(nb_link_keyring_allow(kr, "gamma", WRONG, strlen(WRONG)), 0);
  NBT_EQ(nb_link_keyring_allow(kr, "short", "abc", 3), NB_EINVAL);
  /* alpha with its own secret is in; gamma's secret does not admit alpha;
   * an unlisted name is refused before any proof is given. */
  pair_t p;
  NBT_EQ(pair_run(&p, SECRET, 0, kr, NULL), 0);
  pair_free(&p);
  NBT_EQ(pair_run(&p, WRONG, 0, kr, NULL), 1);
  pair_free(&p);
  msgs_t m;
  nb_link_auth_t *a = NULL, *c = caller_of("delta", SECRET, 0);
  NBT_EQ(nb_link_auth_acceptor(&a, "beta", kr), 0);
  NBT_EQ(handshake(c, a, &m, NULL), 2);
  NBT_CHECK(strstr(nb_link_auth_why(a), "'delta' may not call") != NULL);
  nb_link_auth_free(c);
  nb_link_auth_free(a);
  /* A plain HELLO, a stranger and a non-UTF-8 name are refused, each
   * with its reason. */
  nb_link_auth_io_t io;
  NBT_EQ(nb_link_auth_acceptor(&a, "beta", kr), 0);
  NBT_EQ(nb_link_auth_input(a, (const uint8_t *)"NBLK\1\0", 6, &io), NB_EFRAME);
  NBT_CHECK(strstr(nb_link_auth_why(a), "unauthenticated caller") != NULL);
  nb_link_auth_free(a);
  NBT_EQ(nb_link_auth_acceptor(&a, "beta", kr), 0);
  NBT_EQ(nb_link_auth_input(a, (const uint8_t *)"GET / HTTP/1.0", 14, &io),
         NB_EFRAME);
  NBT_CHECK(strstr(nb_link_auth_why(a), "not an authenticating") != NULL);
  nb_link_auth_free(a);
  NBT_EQ(nb_link_auth_acceptor(&a, "beta", kr), 0);
  uint8_t bad[8 + 1 + 3 + 32] = {'N', 'B', 'A', 'U', 1, 0, 1, 0, 3,
                                 'a', 0xff, 'b'};
  NBT_EQ(nb_link_auth_input(a, bad, sizeof bad, &io), NB_EFRAME);
  NBT_CHECK(strstr(nb_link_auth_why(a), "UTF-8") != NULL);
  nb_link_auth_free(a);
  nb_link_keyring_free(kr);
}

/* Seals the n bytes at p on s and feeds them to r cut every step bytes;
 * returns 1 when r gave back exactly p, else 0. */
static int roundtrip(nb_link_auth_t *s, nb_link_auth_t *r, const uint8_t *p,
                     size_t n, size_t step) {
  static uint8_t sealed[3 << 20], got[3 << 20];
  struct iovec v[3] = {{(void *)p, n / 3}, {(void *)(p + n / 3), n / 3},
                       {(void *)(p + 2 * (n / 3)), n - 2 * (n / 3)}};
  int64_t sl = nb_link_auth_seal(s, v, 3, sealed);
  if (sl != (int64_t)nb_link_auth_sealed_size(n)) return 0;
  on_wire(sealed, (size_t)sl);
  size_t g = 0;
  for (size_t off = 0; off < (size_t)sl; off += step) {
    size_t k = (size_t)sl - off < step ? (size_t)sl - off : step;
    nb_link_auth_io_t io;
    if (nb_link_auth_input(r, sealed + off, k, &io) != 0) return 0;
    memcpy(got + g, io.plain, io.plain_len);
    g += io.plain_len;
  }
  return g == n && memcmp(got, p, n) == 0;
}

static void test_encrypted_records_roundtrip_and_refuse_tampering(void) {
  nb_link_keyring_t *kr = ring_of(SECRET, 0);
  /* The caller asks; the acceptor (which did not) agrees. */
  pair_t p;
  NBT_EQ(pair_run(&p, SECRET, 1, kr, NULL), 0);
  nb_link_auth_t *c = p.c, *a = p.a;
  NBT_CHECK(nb_link_auth_encrypted(c) && nb_link_auth_encrypted(a));
  static uint8_t data[300000];
  for (size_t i = 0; i < sizeof data; i++) data[i] = (uint8_t)(i * 7 + 1);
  NBT_CHECK(roundtrip(c, a, data, sizeof data, 65536));
  NBT_CHECK(roundtrip(a, c, data, 1000, 1));
  NBT_CHECK(roundtrip(c, a, data, 70000, 4093));
  NBT_CHECK(roundtrip(a, c, data, sizeof data, 1 << 20));
  /* A flipped bit, then a replayed record, are refused. */
  uint8_t rec[200], copy[200];
  struct iovec v = {data, 100};
  int64_t n = nb_link_auth_seal(c, &v, 1, rec);
  memcpy(copy, rec, (size_t)n);
  nb_link_auth_io_t io;
  rec[50] ^= 4;
  NBT_EQ(nb_link_auth_input(a, rec, (size_t)n, &io), NB_EFRAME);
  NBT_CHECK(strstr(nb_link_auth_why(a), "does not verify") != NULL);
  pair_free(&p);
  NBT_EQ(pair_run(&p, SECRET, 1, kr, NULL), 0);
  c = p.c;
  a = p.a;
  n = nb_link_auth_seal(c, &v, 1, rec);
  NBT_EQ(nb_link_auth_input(a, rec, (size_t)n, &io), 0);
  NBT_EQ(io.plain_len, 100u);
  NBT_EQ(nb_link_auth_input(a, rec, (size_t)n, &io), NB_EFRAME);
  /* A record of the previous session does not open in this one. */
  pair_free(&p);
  NBT_EQ(pair_run(&p, SECRET, 1, kr, NULL), 0);
  NBT_EQ(nb_link_auth_input(p.a, copy, (size_t)n, &io), NB_EFRAME);
  pair_free(&p);
  nb_link_keyring_free(kr);
}

static void test_no_secret_bytes_on_the_wire(void) {
  /* Everything the other tests write: handshakes (good, wrong, tampered,
   * replayed) and sealed records. Neither the secrets, nor their keys,
   * nor any 8-byte window of them, nor plaintext of sealed records
   * appears. */
  wire_len = 0;
  test_good_secret_both_sides_established();
  test_wrong_secret_fails_on_both_sides();
  test_replayed_transcript_fails();
  test_tampered_nonce_name_or_flags_fails();
  test_encrypted_records_roundtrip_and_refuse_tampering();
  NBT_CHECK(wire_len > 300000);
  nb_link_key_t k;
  const char *secrets[] = {SECRET, WRONG};
  for (int s = 0; s < 2; s++) {
    NBT_EQ(nb_link_key_derive(&k, secrets[s], strlen(secrets[s])), 0);
    for (size_t i = 0; i + 8 <= strlen(secrets[s]); i++)
      NBT_CHECK(!on_wire_has(secrets[s] + i, 8));
    for (size_t i = 0; i + 8 <= sizeof k.k; i++)
      NBT_CHECK(!on_wire_has(k.k + i, 8));
  }
  uint8_t pattern[16];
  for (size_t i = 0; i < sizeof pattern; i++) pattern[i] = (uint8_t)(i * 7 + 1);
  NBT_CHECK(!on_wire_has(pattern, sizeof pattern));
}

static void test_short_secret_refused(void) {
  nb_link_key_t k;
  NBT_EQ(nb_link_key_derive(&k, "0123456789abcde", 15), NB_EINVAL);
  NBT_EQ(nb_link_key_derive(&k, "0123456789abcdef", 16), 0);
}

static const nbt_test_t tests[] = {
    NBT_TEST(test_good_secret_both_sides_established),
    NBT_TEST(test_wrong_secret_fails_on_both_sides),
    NBT_TEST(test_replayed_transcript_fails),
    NBT_TEST(test_tampered_nonce_name_or_flags_fails),
    NBT_TEST(test_allow_list_and_strangers),
    NBT_TEST(test_encrypted_records_roundtrip_and_refuse_tampering),
    NBT_TEST(test_no_secret_bytes_on_the_wire),
    NBT_TEST(test_short_secret_refused),
};

int main(int argc, char **argv) { return NBT_MAIN(argc, argv, tests, NULL); }
