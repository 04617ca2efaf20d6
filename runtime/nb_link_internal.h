/* nb_link_internal.h: what runtime/nb_link.c shares with
 * runtime/nb_link_limits.c: the bookkeeping behind nb_link_limits_t that
 * needs no connection internals (defaults, the per-address log limiter,
 * addresses, the spare descriptor), and a count the link fuzz target
 * checks. Not installed. */
#ifndef NB_LINK_INTERNAL_H
#define NB_LINK_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "nb_link.h"

#define NB__LIM_IP 48u          /* bytes of an IP address as text */
#define NB__LIM_LOG_EVERY_MS 60000u /* a held-back kind is logged again */
#define NB__LIM_LOG_SLOTS 128u  /* addresses x kinds remembered */

/* Kinds of refusal, each logged once per address per window. */
enum {
  NB__LIM_PENDING = 1,   /* max_pending: the oldest caller closed */
  NB__LIM_PENDING_ADDR,  /* pending_per_addr */
  NB__LIM_LINKS,         /* max_links */
  NB__LIM_LINKS_ADDR,    /* links_per_addr */
  NB__LIM_HANDSHAKE,     /* handshake_timeout */
  NB__LIM_FRAME,         /* frame_timeout */
  NB__LIM_RX,            /* rx_bytes */
  NB__LIM_IDLE,          /* idle_timeout */
  NB__LIM_FDS,           /* descriptors running out */
  NB__LIM_ACCEPT,        /* accept failed otherwise */
  NB__LIM_MSG = 0x10000  /* | a hash: one caller's other closing reasons */
};

typedef struct nb__lim_slot_s {
  char ip[NB__LIM_IP];
  uint32_t kind;
  uint64_t last_ms;    /* when last logged */
  uint64_t held;       /* lines held back since */
} nb__lim_slot_t;

/* The node's side of the limits. */
typedef struct nb__node_lim_s {
  nb_link_limits_t o;  /* filled: no zero field */
  nb__lim_slot_t log[NB__LIM_LOG_SLOTS];
  uint64_t rx_held;    /* bytes of partial frames and HELLOs, all conns */
  uint32_t inbound;    /* links made for callers (max_links counts them) */
  int spare_fd;        /* the reserve descriptor, -1 while spent */
  int fd_limit;        /* RLIMIT_NOFILE's soft limit when read, else 0 */
} nb__node_lim_t;

/* A connection's side of the limits. */
typedef struct nb__conn_lim_s {
  char ip[NB__LIM_IP]; /* a caller's address without the port, "" else */
  uint64_t last_rx_ms, last_tx_ms; /* last bytes read / written */
  uint64_t partial_ms; /* since when a frame (or the HELLO) is partial and
                          none completed, 0 = none partial */
  uint64_t partial_frame; /* frames decoded when partial_ms was set */
  uint64_t held;       /* its bytes counted in rx_held */
  int quiet;           /* its close was logged already (or is held back) */
  int ping;            /* a keepalive is owed */
} nb__conn_lim_t;

/* Returns in with every zero field set to its default and keepalive kept
 * below the idle timeout. */
nb_link_limits_t nb__limits_fill(const nb_link_limits_t *in);

/* Prepares l for a node with limits o (filled); opens the reserve
 * descriptor and reads the descriptor limit. Returns nothing. */
void nb__lim_init(nb__node_lim_t *l, const nb_link_limits_t *o);

/* Closes the reserve descriptor; returns nothing. */
void nb__lim_free(nb__node_lim_t *l);

/* Returns the period of the node's sweep in ms: a quarter of the shortest
 * of the timeouts (handshake hello_ms included), at least 5. */
uint32_t nb__lim_sweep_ms(const nb__node_lim_t *l, uint32_t hello_ms);

/* Decides whether a line of kind about ip is logged now: returns 1 (and
 * sets *held to the lines held back since the last one) the first time and
 * once per NB__LIM_LOG_EVERY_MS after, else 0 (the line is counted). */
int nb__lim_log_ok(nb__node_lim_t *l, const char *ip, uint32_t kind,
                   uint64_t now_ms, uint64_t *held);

/* Returns a kind for a closing reason text (digits ignored, so "frame 7"
 * and "frame 9" are one kind). */
uint32_t nb__lim_msg_kind(const char *why);

/* Returns 1 when descriptor fd is in the last eighth (at least 16) of
 * the descriptor limit: the process is about to run out, else 0. */
int nb__lim_fd_tight(const nb__node_lim_t *l, int fd);

/* Returns 1 when the process can open no descriptor now (libuv then
 * closes callers at accept without telling: only this finds out), else
 * 0. */
int nb__lim_fds_out(nb__node_lim_t *l);

/* Gives the reserve descriptor back to the system so one accept can
 * succeed (then nb__lim_spare_take); returns 1 when there was one, else
 * 0. */
int nb__lim_spare_release(nb__node_lim_t *l);

/* Reopens the reserve descriptor when it is spent; returns nothing. */
void nb__lim_spare_take(nb__node_lim_t *l);

/* Returns how many connections node n holds, those closing included (a
 * connection is counted until libuv has closed its socket and it is
 * freed): what the link fuzz target checks returns to its baseline. */
size_t nb__link_node_conns(const nb_link_node_t *n);

#endif
