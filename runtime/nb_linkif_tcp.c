/* nb_linkif_tcp.c: the TCP links (nb_link.h) as an nb_linkif_t. The
 * adapters only change the handle's type. */
#include "nb_linkif.h"

/* nb_link_send through the interface; returns as it. */
static int tcp_send(void *l, int target, const nb_spike_t *s,
                    const void *payload, size_t len) {
  return nb_link_send(l, target, s, payload, len);
}
/* nb_link_send_run through the interface; returns as it. */
static size_t tcp_send_run(void *l, int target, const nb_spike_t *s,
                           size_t n) {
  return nb_link_send_run(l, target, s, n);
}
/* nb_link_room through the interface; returns as it. */
static size_t tcp_room(const void *l) { return nb_link_room(l); }
/* nb_link_target through the interface; returns as it. */
static int tcp_target(void *l, const char *name) { return nb_link_target(l, name); }
/* nb_link_is_up through the interface; returns as it. */
static int tcp_is_up(const void *l) { return nb_link_is_up(l); }
/* nb_link_is_paused through the interface; returns as it. */
static int tcp_is_paused(const void *l) { return nb_link_is_paused(l); }
/* nb_link_is_shared through the interface; returns as it. */
static int tcp_is_shared(const void *l) { return nb_link_is_shared(l); }
/* nb_link_resume through the interface; returns nothing. */
static void tcp_resume(void *l) { nb_link_resume(l); }
/* nb_link_peer through the interface; returns as it. */
static const char *tcp_peer(const void *l) { return nb_link_peer(l); }
/* nb_link_peer_neuron through the interface; returns as it. */
static const char *tcp_peer_neuron(const void *l, nb_id_t id) {
  return nb_link_peer_neuron(l, id);
}
/* nb_link_stats through the interface; returns out. */
static nb_link_stats_t *tcp_stats(const void *l, nb_link_stats_t *out) {
  return nb_link_stats(l, out);
}
/* nb_link_set_data through the interface; returns nothing. */
static void tcp_set_data(void *l, void *d) { nb_link_set_data(l, d); }
/* nb_link_data through the interface; returns as it. */
static void *tcp_data(const void *l) { return nb_link_data(l); }

const nb_linkif_t nb_linkif_tcp = {
  .scheme = "tcp",
  .send = tcp_send,
  .send_run = tcp_send_run,
  .room = tcp_room,
  .target = tcp_target,
  .is_up = tcp_is_up,
  .is_paused = tcp_is_paused,
  .is_shared = tcp_is_shared,
  .resume = tcp_resume,
  .peer = tcp_peer,
  .peer_neuron = tcp_peer_neuron,
  .stats = tcp_stats,
  .set_data = tcp_set_data,
  .data = tcp_data,
};
