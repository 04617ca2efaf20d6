/* nb_link_nats.h: links between NeuronBus runtimes through a NATS server
 * or cluster (libnats), behind the link interface (nb_linkif.h).
 *
 * A node is one runtime's connection. Subjects, under the root
 * "nb.<cluster>" (names that are not [A-Za-z0-9_-] become "x" + hex):
 *   <root>.rt.<cortex>   batches and acks for that runtime (its inbox)
 *   <root>.cards         every runtime's card: its neurons' names, ids,
 *                        capabilities and regions, every announce period,
 *                        at start, on a newcomer, and a BYE when leaving
 * Messages are nb_nats_wire.h's. A link is the pair (this runtime, one
 * peer cortex); it is up while the peer's card is fresh (seen within
 * three announce periods).
 *
 * Sending: spikes for one peer go into one open batch (many per NATS
 * message, payload bytes included); it is published when it reaches
 * batch_bytes and at the end of every loop turn (a prepare handle). Each
 * spike gets a sequence number; the receiver acks cumulatively; the sender
 * keeps every unacked spike (the window, bounded by window spikes and
 * window_bytes) and sends again from the oldest unacked when no ack came
 * for resend_ms (go-back-N; the receiver drops what it already has). A
 * full window answers NB_EFULL: backpressure into the producer's axon.
 *
 * Receiving: libnats calls back on its own threads; the callback only
 * queues the message (bounded) and wakes the loop (uv_async_send); the
 * loop decodes, checks the whole batch before delivering any of it (a
 * malformed one is counted and dropped with a log line), and hands each
 * spike to on_spike in order. NB_EFULL from it pauses that peer's
 * messages until nb_linkif resume.
 *
 * Threads: everything here runs on the loop's thread except the libnats
 * callbacks, which touch only the queue under its mutex. */
#ifndef NB_LINK_NATS_H
#define NB_LINK_NATS_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "nb_arena.h"
#include "nb_link.h"
#include "nb_linkif.h"
#include "nb_nats_wire.h"
#include "nb_spike.h"

typedef struct nb_nats_node_s nb_nats_node_t;
typedef struct nb_nats_link_s nb_nats_link_t;

/* Receives one spike as nb_link_spike_fn does (source: the peer's id). */
typedef int (*nb_nats_spike_fn)(void *ud, nb_nats_link_t *l,
                                const nb_spike_t *s, const void *payload,
                                size_t len);
/* Tells about a link: NB_LINK_UP (a card of a new incarnation, or the
 * first), NB_LINK_DOWN (its card went stale or it said BYE). */
typedef void (*nb_nats_event_fn)(void *ud, nb_nats_link_t *l,
                                 nb_link_event_t ev);

/* Receives one spike a runtime broadcast to the region subtree path (a
 * REGION message; source: the peer's id). For a ref spike the payload was
 * written to the node's arena (the callee owns one reference). Returns 0,
 * or a negative value when nothing took it (counted as dropped). */
typedef int (*nb_nats_region_fn)(void *ud, nb_nats_link_t *l,
                                 const char *path, const nb_spike_t *s,
                                 const void *payload, size_t len);

typedef struct nb_nats_opts_s {
  const char *cortex;      /* this runtime's name, 1..255 bytes */
  const char *url;         /* "nats://h:p", a comma-separated list allowed */
  const char *cluster;     /* subject root "nb.<cluster>", NULL "default" */
  /* Credentials, passed to libnats as they are (NULL: unset). */
  const char *user, *password, *token;
  const char *nkey_public, *nkey_seed; /* NKey: public key, seed file */
  const char *creds;                   /* a .creds file (JWT + seed) */
  const char *tls_ca, *tls_cert, *tls_key; /* TLS when any is set */
  nb_arena_t *arena;       /* incoming payloads are written here (NULL:
                              the callback gets the bytes only) */
  uint32_t max_payload;    /* largest payload accepted, 0 = 1 MiB */
  uint32_t window;         /* unacked + unsent spikes per link, 0 = 16384 */
  uint32_t window_bytes;   /* their payload bytes, 0 = 16 MiB */
  uint32_t batch_bytes;    /* publish a batch at this size, 0 = 64 KiB */
  uint32_t resend_ms;      /* no ack this long: send again, 0 = 500 */
  uint32_t announce_ms;    /* card period, 0 = 1000; gone after 3 */
  uint32_t connect_ms;     /* connect timeout, 0 = 2000 */
  nb_nats_spike_fn on_spike;
  nb_nats_event_fn on_event;
  nb_nats_region_fn on_region; /* NULL: region messages are not read */
  void *ud;
  int quiet;               /* info lines off */
} nb_nats_opts_t;

/* NATS-only counters of a link (and of the node, in every row). */
typedef struct nb_nats_stats_s {
  uint64_t messages_out, messages_in; /* NATS messages of this link */
  uint64_t batches_out, batches_in;   /* of those, batches (resends too) */
  uint64_t resends;                   /* batches published again */
  uint64_t window;                    /* spikes in the window now */
  uint64_t window_max;                /* its bound */
  uint64_t reconnects;                /* the node's reconnects to NATS */
  uint64_t malformed;                 /* messages dropped as malformed */
  uint64_t dropped;                   /* messages dropped (out of order,
                                         unknown sender, queue over) */
  uint64_t region_in;                 /* region spikes taken from it */
  uint64_t region_out;                /* region spikes the node published */
  uint64_t region_dropped;            /* region spikes it received that no
                                         neuron took (sender unknown,
                                         none in the subtree here) */
} nb_nats_stats_t;

/* Connects to the server (synchronously, connect_ms at most) and makes a
 * node; returns 0, or NB_EINVAL / NB_EIO with *err (malloc'd) naming the
 * server and the reason (wrong credentials, unreachable, TLS). */
int nb_nats_node_new(nb_nats_node_t **out, uv_loop_t *loop,
                     const nb_nats_opts_t *o, char **err);

/* Adds a neuron to this runtime's card (before nb_nats_node_start);
 * returns 0, NB_EINVAL, NB_EEXIST or NB_ETOOBIG (the card is full). */
int nb_nats_node_expose(nb_nats_node_t *n, const nb_nats_neuron_t *neuron);

/* Publishes s once on the subject of region path (every runtime with a
 * neuron in that subtree receives it; at most once: no ack, no resend).
 * payload/len: the bytes of a payload over 46 bytes (s's inline payload
 * travels as it is). Spikes for one path go out together, one NATS
 * message per loop turn or per batch_bytes. Returns 0, NB_EINVAL or NB_EIO
 * (not published). */
int nb_nats_region_send(nb_nats_node_t *n, const char *path,
                        const nb_spike_t *s, const void *payload, size_t len);

/* Subscribes, announces the card and starts the timers; returns 0 or
 * NB_EIO (logged). */
int nb_nats_node_start(nb_nats_node_t *n);

/* Returns the link to the runtime named cortex, made when absent (spikes
 * wait, NB_EFULL, until its card arrives), or NULL for a bad name. */
nb_nats_link_t *nb_nats_link(nb_nats_node_t *n, const char *cortex);

/* Returns the node's i-th link (creation order), or NULL past the end. */
nb_nats_link_t *nb_nats_link_at(const nb_nats_node_t *n, size_t i);

/* Returns the url the node connected to. */
const char *nb_nats_node_url(const nb_nats_node_t *n);

/* Fills *out with the i-th neuron of the peer's card; returns 1, or 0
 * past the end or while the link is down. */
int nb_nats_link_neuron(const nb_nats_link_t *l, size_t i,
                        nb_nats_neuron_t *out);

/* Fills *out with the NATS counters of l; returns out. */
nb_nats_stats_t *nb_nats_link_stats(const nb_nats_link_t *l,
                                    nb_nats_stats_t *out);

/* Fills *out with the node's own counters (reconnects, and messages
 * dropped as malformed or otherwise, whoever sent them; the per-link
 * fields are 0); returns out. */
nb_nats_stats_t *nb_nats_node_stats(const nb_nats_node_t *n,
                                    nb_nats_stats_t *out);

/* Flushes, says BYE, closes the connection and the handles; spikes still
 * in a window are counted lost. done(ud) runs once the loop closed the
 * handles. Returns nothing. */
void nb_nats_node_close(nb_nats_node_t *n, void (*done)(void *ud), void *ud);

/* The NATS backend of the link interface. */
extern const nb_linkif_t nb_linkif_nats;

#endif
