/* nb_linkif.h: the link interface the runtime drives, whatever carries it.
 *
 * A backend (TCP: nb_link.h, NATS: nb_link_nats.h) gives the runtime one
 * link per peer cortex; runtime/nb_rt_link.c reaches every link only
 * through this table, so a remote neuron is addressed the same way
 * whichever backend carries it, and a third backend is one new file that
 * fills a table (plus its node's start and close). The semantics are those
 * of nb_link.h: bounded queues that answer NB_EFULL (backpressure), names
 * resolved to the peer's ids, counters in nb_link_stats_t.
 *
 * Threads: every entry is called on the loop thread of the link's node. */
#ifndef NB_LINKIF_H
#define NB_LINKIF_H

#include <stddef.h>

#include "nb_link.h"

typedef struct nb_linkif_s {
  const char *scheme; /* "tcp", "nats": names the backend in the stats */
  /* As nb_link_send: queues s for the target handle. */
  int (*send)(void *l, int target, const nb_spike_t *s, const void *payload,
              size_t len);
  /* As nb_link_send_run: queues the longest prefix of a run of spikes
   * that send would take one by one. NULL: the runtime calls send for
   * each. */
  size_t (*send_run)(void *l, int target, const nb_spike_t *s, size_t n);
  /* As nb_link_room: spikes the link takes now. */
  size_t (*room)(const void *l);
  /* As nb_link_target: a handle for the peer's neuron name. */
  int (*target)(void *l, const char *name);
  /* As nb_link_is_up / nb_link_is_paused / nb_link_is_shared. */
  int (*is_up)(const void *l);
  int (*is_paused)(const void *l);
  int (*is_shared)(const void *l);
  /* As nb_link_resume: reading goes on after a full receiver. */
  void (*resume)(void *l);
  /* As nb_link_peer / nb_link_peer_neuron. */
  const char *(*peer)(const void *l);
  const char *(*peer_neuron)(const void *l, nb_id_t remote_id);
  /* As nb_link_stats. */
  nb_link_stats_t *(*stats)(const void *l, nb_link_stats_t *out);
  /* As nb_link_set_data / nb_link_data. */
  void (*set_data)(void *l, void *data);
  void *(*data)(const void *l);
} nb_linkif_t;

/* The TCP backend (runtime/nb_linkif_tcp.c): nb_link.h's functions. */
extern const nb_linkif_t nb_linkif_tcp;

#endif
