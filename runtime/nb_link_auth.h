/* nb_link_auth.h: the authenticated opening of a TCP link and the optional
 * encryption of its stream, as functions over bytes (no sockets; libsodium
 * for the cryptography). docs/links.md tells the protocol and its threat
 * model; nb_link.c feeds a connection's bytes through here before the HELLO
 * (nb_link_wire.h) when the node has a secret.
 *
 * A secret is any byte string of at least NB_LINK_AUTH_SECRET_MIN bytes; it
 * never crosses the wire. Its key is K = BLAKE2b-256("neuronbus-link-
 * secret-v1" || secret). The caller speaks first; all integers are
 * little-endian; every message starts "NBAU" | u16 version | u8 type |
 * u8 flags (bit 0: this side asks for encryption):
 *   1 caller -> acceptor:  u8 n, n bytes: the caller's cortex name,
 *                          32 bytes: nonce_c (random)
 *   2 acceptor -> caller:  u8 n, n bytes: the acceptor's cortex name,
 *                          32 bytes: nonce_a (random), 32 bytes: mac_a
 *   3 caller -> acceptor:  32 bytes: mac_c
 * T (the transcript) = "NBAU" | u16 version | u8 flags_c | u8 flags_a |
 * u8 n, name_c | u8 n, name_a | nonce_c | nonce_a;
 * mac_a = HMAC-SHA512-256(K, "acceptor" || T), mac_c = HMAC-SHA512-256(K,
 * "caller" || T), compared in constant time. The acceptor picks K by the
 * caller's name (an allowed cortex's own secret, else the cluster secret);
 * the caller by the link it dials. Then, in each direction, the HELLO and
 * the frames as without authentication; encrypted when either side asked:
 * the session key S = BLAKE2b-256(key K, T), one key per direction from
 * crypto_kdf (S, id 1 caller to acceptor, id 2 the other way, context
 * "NBlink01"), and the stream cut in records u32 n | ChaCha20-Poly1305-IETF
 * ciphertext of n - 16 bytes (at most NB_LINK_AUTH_RECORD), the length as
 * associated data and the record's number in its direction as the nonce. */
#ifndef NB_LINK_AUTH_H
#define NB_LINK_AUTH_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "nb_rt_defaults.h"

#define NB_LINK_AUTH_VERSION 1u
/* shortest secret accepted, bytes (a default the manifest checks too) */
#define NB_LINK_AUTH_SECRET_MIN NB_LINK_SECRET_MIN
#define NB_LINK_AUTH_NONCE 32u
#define NB_LINK_AUTH_MAC 32u
#define NB_LINK_AUTH_RECORD 65536u   /* most plaintext bytes per record */
#define NB_LINK_AUTH_F_ENCRYPT 0x01u

/* The key of one secret. */
typedef struct nb_link_key_s {
  uint8_t k[32];
} nb_link_key_t;

/* Derives the key of the len-byte secret; returns 0, or NB_EINVAL when the
 * secret is shorter than NB_LINK_AUTH_SECRET_MIN or fails to init libsodium. */
int nb_link_key_derive(nb_link_key_t *out, const void *secret, size_t len);

/* Zeroes *k where the compiler cannot skip it; returns nothing. */
void nb_link_key_wipe(nb_link_key_t *k);

/* The keys an accepting node checks callers with. */
typedef struct nb_link_keyring_s nb_link_keyring_t;

/* Makes an empty keyring that asks (encrypt 1) or not for encryption;
 * returns 0 or NB_ENOMEM. */
int nb_link_keyring_new(nb_link_keyring_t **out, int encrypt);

/* Sets the cluster secret, taken from a caller whose name is not listed
 * by nb_link_keyring_allow (when nothing is listed: from every caller);
 * returns 0 or NB_EINVAL (too short). */
int nb_link_keyring_set_default(nb_link_keyring_t *kr, const void *secret,
                                size_t len);

/* Lets the caller named cortex in with its own secret; once any name is
 * listed, only listed names are let in. Returns 0, NB_EINVAL or
 * NB_ENOMEM. */
int nb_link_keyring_allow(nb_link_keyring_t *kr, const char *cortex,
                          const void *secret, size_t len);

/* Copies the cluster key into *out; returns 1 when there is one, else 0. */
int nb_link_keyring_default(const nb_link_keyring_t *kr, nb_link_key_t *out);

/* Returns 1 when the keyring asks for encryption, else 0. */
int nb_link_keyring_encrypt(const nb_link_keyring_t *kr);

/* Frees kr (wiping its keys); NULL is fine. */
void nb_link_keyring_free(nb_link_keyring_t *kr);

/* One connection's authentication and stream protection. */
typedef struct nb_link_auth_s nb_link_auth_t;

/* What one step produced. */
typedef struct nb_link_auth_io_s {
  const uint8_t *out;   /* bytes to write to the peer now, or NULL */
  size_t out_len;
  const uint8_t *plain; /* the link's own bytes (HELLO, frames) that
                           followed, valid until the next call */
  size_t plain_len;
  int established;      /* the handshake completed in this call */
} nb_link_auth_io_t;

/* Makes the state of a caller named self proving key, asking for
 * encryption when encrypt is 1; returns 0, NB_EINVAL or NB_ENOMEM. */
int nb_link_auth_caller(nb_link_auth_t **out, const char *self,
                        const nb_link_key_t *key, int encrypt);

/* Makes the state of an acceptor named self checking callers against kr
 * (which must outlive it); returns 0, NB_EINVAL or NB_ENOMEM. */
int nb_link_auth_acceptor(nb_link_auth_t **out, const char *self,
                          const nb_link_keyring_t *kr);

/* Puts the caller's first message in io->out; returns 0, or NB_EINVAL for
 * an acceptor or a second call. */
int nb_link_auth_begin(nb_link_auth_t *a, nb_link_auth_io_t *io);

/* Feeds len bytes read from the peer (cut anywhere); fills *io. Returns 0,
 * NB_ENOMEM, or NB_EFRAME with the reason in nb_link_auth_why (sticky: the
 * connection must be closed): a stranger, a wrong or missing secret, a
 * name not allowed, a tampered or replayed message or record. */
int nb_link_auth_input(nb_link_auth_t *a, const uint8_t *data, size_t len,
                       nb_link_auth_io_t *io);

/* Returns 1 once the handshake completed, else 0. */
int nb_link_auth_established(const nb_link_auth_t *a);

/* Returns 1 when the established stream is encrypted, else 0. */
int nb_link_auth_encrypted(const nb_link_auth_t *a);

/* Returns the cortex name the peer proved its key for, or "" before. */
const char *nb_link_auth_peer(const nb_link_auth_t *a);

/* Returns why the last call failed ("" when none did). */
const char *nb_link_auth_why(const nb_link_auth_t *a);

/* Returns the bytes nb_link_auth_seal writes for plain bytes of input. */
size_t nb_link_auth_sealed_size(size_t plain);

/* Encrypts the n buffers (in order, as one stream) into records at out
 * (nb_link_auth_sealed_size of their total bytes); returns the bytes
 * written, or NB_EINVAL when the stream is not encrypted. */
int64_t nb_link_auth_seal(nb_link_auth_t *a, const struct iovec *iov,
                          size_t n, uint8_t *out);

/* Frees a (wiping its keys); NULL is fine. */
void nb_link_auth_free(nb_link_auth_t *a);

#endif
