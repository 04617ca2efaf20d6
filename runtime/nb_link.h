/* nb_link.h: TCP links between NeuronBus processes on a libuv loop.
 *
 * A node (nb_link_node_t) is one cortex's end: it names its cortex, exposes
 * some neuron names with their ids, listens on an address and/or connects
 * to peers. Each peer is one link (nb_link_t), both directions on one TCP
 * connection (TCP_NODELAY), opened by a HELLO exchange (nb_link_wire.h;
 * after a mutual proof of a shared secret when one is set, nb_link_auth.h)
 * that maps names to the peer's ids: ids are per cortex, so a spike is
 * addressed by the target's NAME and rewritten to the peer's id on the way
 * out; the receiver refuses ids it does not expose.
 *
 * Threads: a node and its links belong to the thread running its loop;
 * every call below must be made from that thread (the callbacks run there).
 *
 * Sending: nb_link_send copies the spike (and the payload of an arena ref)
 * into the link's BOUNDED queue and returns NB_EFULL when it is full: the
 * caller keeps the spike (in its axon), so backpressure reaches the
 * producer. Frames leave batched, many per write, once per loop iteration.
 * With a file-backed arena (arena_path) a ref spike is queued as its ref
 * (retained until acknowledged) and its bytes are read when written; when
 * the peer maps the same file (the HELLOs say so) only the ref travels.
 *
 * Receiving: each spike goes to the node's on_spike callback (runs of
 * plain spikes to on_spikes, when set); when it answers NB_EFULL the link stops reading that socket (TCP pushes back on
 * the sender) until nb_link_resume. Bad input (handshake, length, payload
 * size, spike, unknown target id) closes that connection with a logged
 * error naming the peer; every other link keeps running.
 *
 * No silent loss: the receiver acks cumulatively; the sender keeps every
 * unacked spike in the same bounded queue. A lost connection is redialled
 * (by the side that connected) with exponential backoff; the HELLO carries
 * how many frames each side accepted from the other, and the link's policy
 * decides what happens to what was not confirmed:
 *   NB_LINK_RESEND  written-but-unconfirmed and queued spikes are sent again
 *                   from the peer's count: exactly once when the same peer
 *                   process comes back; a restarted peer (new incarnation)
 *                   starts at 0 and gets every unconfirmed spike (so a
 *                   spike the dead process had read but not acked is sent
 *                   to its successor: at least once across a restart).
 *   NB_LINK_DROP    at the loss, queued spikes are dropped and counted in
 *                   lost; written-but-unconfirmed ones are settled by the
 *                   peer's count at reconnect (acked or lost; all lost if
 *                   the peer restarted). Spikes sent while down are queued
 *                   and go out after the reconnect.
 * A peer that comes back after another process spoke for its cortex is
 * taken as restarted (its count is in a numbering the link left).
 * Either way, per link: sent == acked + lost + queued + in_doubt.
 *
 * Limits (nb_link_limits_t): what peers may hold of a node is bounded:
 * callers in their handshake (the oldest goes first), links for callers,
 * connections per IP address, bytes of partial frames, how long a
 * handshake or a frame may take, how long a link may stay silent (an up
 * link writes an ack of what it already acked as a keepalive), and the
 * last eighth of the descriptor limit. A caller's link that never carried
 * a spike is freed when its connection ends (NB_LINK_GONE). Refusals are
 * logged once per address and kind (then at most once a minute). */
#ifndef NB_LINK_H
#define NB_LINK_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "nb_arena.h"
#include "nb_spike.h"

typedef struct nb_link_node_s nb_link_node_t;
typedef struct nb_link_s nb_link_t;

typedef enum nb_link_policy_e {
  NB_LINK_RESEND = 0, /* default */
  NB_LINK_DROP = 1
} nb_link_policy_t;

typedef enum nb_link_event_e {
  NB_LINK_UP = 1,   /* handshake done: sends resolve names now */
  NB_LINK_DOWN = 2, /* connection lost or closed (redial pending if ours) */
  NB_LINK_DRAIN = 3, /* the queue has room again after an NB_EFULL */
  NB_LINK_GONE = 4   /* a link a peer opened, that never carried a spike,
                        lost its connection: it is freed after this call
                        (forget the pointer) */
} nb_link_event_t;

typedef enum nb_link_log_level_e {
  NB_LINK_LOG_ERROR = 1, /* a connection closed for bad input or a fault */
  NB_LINK_LOG_WARN = 2,  /* a peer unreachable, spikes reported lost */
  NB_LINK_LOG_INFO = 3   /* connected, reconnected, closed by the peer */
} nb_link_log_level_t;

/* Receives one spike from link: target is a local id this node exposes;
 * source is the peer's id (nb_link_peer_neuron names it). For a ref spike
 * payload/len hold its bytes, and when the node has an arena the ref was
 * rewritten to a copy there (the callee then owns one reference). Returns
 * 0 when taken, NB_EFULL to be asked again after nb_link_resume (nothing
 * more is read meanwhile), any other negative value to refuse it (counted
 * in rejected; it is acked, not redelivered). When the node's arena has
 * no room for a payload the link pauses the same way (logged). */
typedef int (*nb_link_spike_fn)(void *ud, nb_link_t *link,
                                const nb_spike_t *s, const void *payload,
                                size_t len);
/* Receives n > 0 spikes from link in order, all with inline payloads (no
 * ref), each as on_spike would: takes them from the first, stops before
 * the first one it cannot take now (as on_spike's NB_EFULL: the link
 * pauses and offers it again, in order, after nb_link_resume) and may
 * refuse any for good, counting those in *rejected. Returns how many it
 * took or refused (0..n). Optional: a busy link hands runs of frames that
 * were whole in one read here instead of one on_spike call each. */
typedef size_t (*nb_link_spikes_fn)(void *ud, nb_link_t *link,
                                    const nb_spike_t *s, size_t n,
                                    size_t *rejected);
/* Tells about link state changes; returns nothing. */
typedef void (*nb_link_event_fn)(void *ud, nb_link_t *link,
                                 nb_link_event_t ev);
/* Takes one log line (no newline), already naming the peer. */
typedef void (*nb_link_log_fn)(void *ud, nb_link_log_level_t level,
                               const char *msg);

typedef struct nb_link_opts_s {
  nb_link_policy_t policy;
  uint32_t queue_spikes;   /* queued + unacked spikes held, 0 = 16384 */
  uint32_t queue_bytes;    /* ref payload bytes held, 0 = 16 MiB */
  uint32_t backoff_min_ms; /* first redial delay, 0 = 50 */
  uint32_t backoff_max_ms; /* delay cap (doubling), 0 = 5000 */
  /* Dialled links only (nb_link_connect; not kept after it returns): */
  const void *secret;      /* this link's secret (>= 16 bytes), NULL: the
                              node's cluster secret, if any */
  uint32_t secret_len;
  int encrypt;             /* ask for an encrypted stream (needs a secret) */
} nb_link_opts_t;

/* What one node spends on peers at most (0 in a field = its default). A
 * refusal at a limit is logged once per remote IP address and kind, then
 * at most every 60 s with the count of those held back. */
typedef struct nb_link_limits_s {
  uint32_t max_pending;      /* callers in their handshake at once, 0 = 64;
                                one more closes the oldest of them */
  uint32_t pending_per_addr; /* of those, from one IP address, 0 = 16;
                                one more closes that address's oldest */
  uint32_t max_links;        /* links made for peers that called in (one per
                                cortex name), 0 = 256; a new cortex past it
                                is refused */
  uint32_t links_per_addr;   /* handshaken connections from one IP address,
                                0 = 64; one more is refused */
  uint32_t frame_timeout_ms; /* a frame begun and not complete this long
                                closes the connection, 0 = 30000 */
  uint32_t keepalive_ms;     /* an up link that wrote nothing this long
                                writes an ack (a no-op frame), 0 = 10000 */
  uint32_t idle_timeout_ms;  /* an up link that read nothing this long is
                                closed (a dialled one is redialled), 0 =
                                30000; above keepalive_ms */
  uint64_t rx_bytes;         /* bytes of partly received frames and HELLOs
                                held over all connections, 0 = 64 MiB; past
                                it the oldest partial frame's connection is
                                closed */
} nb_link_limits_t;

/* Returns the default limits (every field filled). */
nb_link_limits_t nb_link_limits_default(void);
/* A cortex allowed to call in, with its own secret (>= 16 bytes). */
typedef struct nb_link_allow_s {
  const char *cortex;
  const void *secret;
  uint32_t secret_len;
} nb_link_allow_t;

typedef struct nb_link_node_opts_s {
  const char *cortex;   /* this node's cortex name, 1..255 bytes */
  nb_arena_t *arena;    /* incoming ref payloads are stored here (NULL:
                           the callback only gets the bytes); outgoing ref
                           spikes sent without bytes are read from it */
  uint32_t max_payload; /* largest payload accepted, 0 = 1 MiB */
  nb_link_spike_fn on_spike;
  nb_link_spikes_fn on_spikes; /* may be NULL: on_spike takes every spike */
  nb_link_event_fn on_event; /* may be NULL */
  void *ud;                  /* for on_spike(s) and on_event */
  nb_link_log_fn log;        /* NULL = stderr */
  void *log_ud;
  nb_link_log_level_t log_level; /* lines above it are not emitted;
                                    0 = NB_LINK_LOG_INFO (all) */
  nb_link_opts_t accept;         /* options of links made by accepting */
  uint32_t hello_timeout_ms;     /* a connection whose handshake is not
                                    done this long after it opened is
                                    closed, 0 = 5000 */
  const char *arena_path; /* the file arena maps (nb_arena_open), NULL for
                             a private arena: a peer on this host that maps
                             the same file gets ref spikes by reference
                             (the bytes stay in the file), and ref spikes
                             sent without bytes are read from the arena
                             when written instead of copied when queued */
  nb_link_limits_t limits; /* what peers may hold of this node */
  /* Authentication (nb_link_auth.h; none of it is kept by reference).
   * With a secret or an allow list every caller must prove a secret
   * before anything else is said (a plain HELLO is refused), and dialled
   * links prove theirs (opts.secret, else this one); without either the
   * node speaks plain HELLOs as before (loopback development). */
  const void *secret;            /* the cluster secret (>= 16 bytes) */
  uint32_t secret_len;
  const nb_link_allow_t *allow;  /* when nallow > 0: only these callers,
                                    each with its own secret */
  uint32_t nallow;
  int encrypt;                   /* ask every peer for encryption */
} nb_link_node_opts_t;

typedef struct nb_link_stats_s {
  uint64_t sent;       /* spikes taken by nb_link_send */
  uint64_t acked;      /* of those, confirmed accepted by the peer */
  uint64_t resent;     /* frames written again after a reconnect */
  uint64_t lost;       /* dropped by policy or unroutable, reported */
  uint64_t received;   /* spikes accepted by on_spike */
  uint64_t rejected;   /* spikes on_spike refused (not redelivered) */
  uint64_t bytes_out;  /* bytes written, HELLOs and acks included */
  uint64_t bytes_in;   /* bytes read */
  uint64_t connects;   /* handshakes completed */
  uint64_t reconnects; /* of those, after a lost connection */
  uint64_t errors;     /* connections closed for an error */
  uint64_t full;       /* sends refused with NB_EFULL */
  uint64_t pauses;     /* times reading stopped for a full receiver */
  uint64_t queued;     /* spikes held now: unsent or unacked */
  uint64_t in_doubt;   /* DROP policy: written, unsettled while down */
  uint64_t queue_bytes; /* payload bytes held now */
  uint64_t refs_out;   /* frames written as a bare ref (shared arena) */
  uint64_t refs_in;    /* spikes received as a bare ref (shared arena) */
  uint64_t rtt_ns;     /* round trip, a write to its ack, smoothed as TCP's
                          SRTT (1/8 of each sample); 0 before the first */
  uint64_t rtt_last_ns; /* the last sample */
} nb_link_stats_t;

/* Folds a round-trip sample of ns into st (rtt_ns moves by 1/8 of the
 * difference, as TCP's smoothed RTT); returns nothing. */
static inline void nb_link_rtt_add(nb_link_stats_t *st, uint64_t ns) {
  st->rtt_last_ns = ns;
  st->rtt_ns = st->rtt_ns ? st->rtt_ns - st->rtt_ns / 8 + ns / 8 : ns;
}

/* Returns the default link options (resend, 16384 spikes, 16 MiB). */
nb_link_opts_t nb_link_opts_default(void);

/* Creates a node on loop; returns 0, NB_EINVAL (bad cortex name, no
 * on_spike, a secret under 16 bytes, a bad allowed name) or NB_ENOMEM. */
int nb_link_node_new(nb_link_node_t **out, uv_loop_t *loop,
                     const nb_link_node_opts_t *opts);

/* Starts closing every link and handle of the node; it frees itself once
 * the loop has run their close callbacks (then done(ud) is called if set).
 * Spikes still queued are counted lost. Returns nothing. */
void nb_link_node_close(nb_link_node_t *n, void (*done)(void *ud), void *ud);

/* Exposes the local neuron name under id to peers (sent in every later
 * handshake); returns 0, NB_EINVAL (bad name, id >= 0xFFFE), NB_EEXIST
 * (name or id already exposed) or NB_ENOMEM. */
int nb_link_node_expose(nb_link_node_t *n, const char *name, nb_id_t id);

/* Listens on url ("tcp://127.0.0.1:7401"; port 0 picks one); returns 0,
 * NB_EINVAL for a bad url, NB_EEXIST when already listening, or NB_EIO
 * (logged with the libuv reason). */
int nb_link_node_listen(nb_link_node_t *n, const char *url);

/* Returns the port the node listens on, or 0 when it does not. */
int nb_link_node_port(const nb_link_node_t *n);

/* Returns this node's incarnation (random, nonzero, one per node). */
uint64_t nb_link_node_incarnation(const nb_link_node_t *n);

/* Creates an outbound link dialling url (tcp://HOST:PORT) now and after
 * every loss, with opts (NULL = defaults); returns 0, NB_EINVAL (also a
 * secret under 16 bytes, or encrypt without a secret) or NB_ENOMEM. *out
 * may be NULL. */
int nb_link_connect(nb_link_node_t *n, const char *url,
                    const nb_link_opts_t *opts, nb_link_t **out);

/* Creates (or returns) the link for the peer cortex that will connect to
 * this node, so spikes can be queued and options chosen before it calls;
 * returns 0, NB_EINVAL or NB_ENOMEM. */
int nb_link_expect(nb_link_node_t *n, const char *cortex,
                   const nb_link_opts_t *opts, nb_link_t **out);

/* Returns the link to the peer cortex named cortex (known after its first
 * handshake, or made by nb_link_expect), or NULL. */
nb_link_t *nb_link_find(const nb_link_node_t *n, const char *cortex);

/* Returns the node's i-th link (creation order), or NULL past the end. */
nb_link_t *nb_link_at(const nb_link_node_t *n, size_t i);

/* Returns a handle for target name on link (>= 0, stable for the link's
 * life, valid before the peer is known), NB_EINVAL for a bad name, NB_ENOENT
 * when the link is up and the peer does not expose name, or NB_ELIMIT. */
int nb_link_target(nb_link_t *l, const char *name);

/* Queues s for the target handle (its target field is rewritten to the
 * peer's id when written). A ref spike needs its payload: len bytes at
 * payload (len must equal ref.len), or payload NULL to read them from the
 * node's arena; inline spikes pass NULL/0. Returns 0, NB_EFULL (nothing
 * taken), NB_ENOENT (the peer does not expose the target), NB_ETOOBIG (over
 * the peer's maximum payload), NB_EINVAL, or an arena read error. */
int nb_link_send(nb_link_t *l, int target, const nb_spike_t *s,
                 const void *payload, size_t len);

/* Queues the longest prefix of s[0..n) that nb_link_send(l, target, s[i],
 * NULL, 0) would take one by one with no other outcome than 0: spikes
 * with inline payloads while the queue has room; returns its length. The
 * first spike it stops at (a ref, a malformed spike, a full queue) goes to
 * nb_link_send, which takes it or says why not. */
size_t nb_link_send_run(nb_link_t *l, int target, const nb_spike_t *s,
                        size_t n);

/* As nb_link_send, addressing the target by name; returns the same. */
int nb_link_send_name(nb_link_t *l, const char *name, const nb_spike_t *s,
                      const void *payload, size_t len);

/* As nb_link_send, addressing the peer's neuron by its remote id (from a
 * spike's source: only ids the peer exposes); returns the same, NB_ENOENT
 * also while the link is not up. */
int nb_link_send_id(nb_link_t *l, nb_id_t remote_id, const nb_spike_t *s,
                    const void *payload, size_t len);

/* Returns how many more spikes nb_link_send would take now (0 = full); a
 * ref spike may still be refused when its bytes exceed the byte budget. */
size_t nb_link_room(const nb_link_t *l);

/* Reads again after on_spike answered NB_EFULL (the held spike is offered
 * first, in order); the work runs on the loop, not inside this call.
 * Returns nothing; harmless when not paused. */
void nb_link_resume(nb_link_t *l);

/* Returns 1 when the link is connected and its handshake done, else 0. */
int nb_link_is_up(const nb_link_t *l);

/* Returns 1 while reading is stopped for a full receiver, else 0. */
int nb_link_is_paused(const nb_link_t *l);

/* Returns 1 when the link is up and both ends map the same arena file
 * (ref spikes cross by reference), else 0. */
int nb_link_is_shared(const nb_link_t *l);

/* Returns the peer's cortex name once known, else the dialled url (never
 * NULL). */
const char *nb_link_peer(const nb_link_t *l);

/* Returns the name the peer exposes for its id, or NULL. */
const char *nb_link_peer_neuron(const nb_link_t *l, nb_id_t remote_id);

/* Returns the peer's id for name (up links only), or NB_ENOENT. */
int nb_link_resolve(const nb_link_t *l, const char *name);

/* Copies the link's counters into *out; returns out. */
nb_link_stats_t *nb_link_stats(const nb_link_t *l, nb_link_stats_t *out);

/* Closes the current connection as if it had been lost (fault injection,
 * or to force a redial); returns 0, or NB_ECLOSED when not connected. */
int nb_link_disconnect(nb_link_t *l);

/* Attaches user data to the link; returns nothing. */
void nb_link_set_data(nb_link_t *l, void *data);

/* Returns the user data of the link (NULL by default). */
void *nb_link_data(const nb_link_t *l);

#endif
