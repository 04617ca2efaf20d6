/* nb_link.c: TCP links on libuv (see nb_link.h for the contract and
 * nb_link_wire.h for the bytes).
 *
 * Shape: a node owns a listener, a prepare handle that flushes once per
 * loop iteration, a sweep timer (timeouts and keepalives), its links and
 * its connections. A link is the lasting state about one peer (queue, counters,
 * name maps, policy); a connection (conn_t) is one TCP socket, bound to
 * a link once the HELLO tells who is on the other end.
 *
 * The send queue and the retransmit buffer are one ring of positions
 * rh <= rw <= rt: [rh, rw) written and not yet acked, [rw, rt) not yet
 * written. The sequence number of the entry at position p is
 * acked_seq + (p - rh), so renumbering after a peer restart is one store. */
#include "nb_link.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "nb_clock.h"
#include "nb_err.h"
#include "nb_link_internal.h"
#include "nb_link_auth.h"
#include "nb_link_wire.h"
#include "nb_frame.h"
#include "nb_rt_defaults.h"

#define NB__RBUF (64u * 1024u)      /* read buffer per connection */
#define NB__WFRAMES 4096u           /* frames per write */
#define NB__WIOV 64u                /* buffers per write */
#define NB__WBYTES (4u << 20)       /* bytes per write, payloads included */
#define NB__MAX_TARGETS 65535u      /* target handles per link (uint16) */
#define NB__RING0 64u               /* entries of a new link's ring */

enum { NB__C_CONNECTING, NB__C_HELLO, NB__C_UP, NB__C_CLOSING };

typedef struct entry_s {
  uint8_t spike[NB_SPIKE_SIZE];
  uint8_t *payload; /* owned copy of a ref's bytes, or NULL */
  uint32_t plen;
  uint16_t target;  /* target handle */
  uint8_t written;  /* written at least once: a rewrite counts as resent */
  uint8_t by_ref;   /* the bytes stay in the node's (file) arena: the
                       spike's ref is retained until the entry is cleared */
} entry_t;

typedef struct conn_s {
  uv_tcp_t tcp;
  uv_connect_t creq;
  uv_write_t wreq;
  nb_link_node_t *node;
  nb_link_t *link; /* NULL until the HELLO binds it, and after a loss */
  int outbound, state, reading, paused, want_process, writing;
  int arena_waiting; /* paused for arena space, resumed each tick */
  int arena_logged;  /* this wait was logged (its end is logged too) */
  uint64_t arena_log_ms; /* when a wait was last logged, 0 = never */
  char addr[128];  /* "127.0.0.1:5555" or the dialled url */
  nb_link_rx_t rx;
  nb_link_auth_t *auth; /* NULL: plain link (no secret on this side) */
  uint8_t *rbuf;   /* read buffer */
  uint8_t *rdata;  /* the link's bytes read (rbuf, or what auth opened);
                      [roff, rlen) is not processed yet */
  size_t rlen, roff;
  uint8_t *sbuf;   /* sealed bytes of the write in flight (encrypted) */
  size_t scap;
  /* A spike on_spike refused with NB_EFULL, offered again on resume. */
  int has_pending, pend_has_ref;
  nb_spike_t pend;
  const uint8_t *pend_payload;
  size_t pend_len;
  nb_arena_ref_t pend_ref;
  uint8_t *wbuf;   /* frame heads of the write in flight */
  uv_buf_t iov[NB__WIOV];
  uint64_t opened_ms, bytes_in;
  nb__conn_lim_t lim; /* timeouts and the bytes it holds (limits) */
  struct conn_s *next;
} conn_t;

typedef struct hello_write_s {
  uv_write_t req;
  conn_t *conn;
  uint8_t data[];
} hello_write_t;

struct nb_link_s {
  nb_link_node_t *node;
  nb_link_opts_t opts;
  int outbound, up, closing, lost_since_up, failures, was_full;
  int shared; /* the peer maps our arena file: refs travel bare */
  char url[128];
  struct sockaddr_storage addr;
  char cortex[NB_LINK_NAME_MAX + 1]; /* the peer's, "" until known */
  nb_link_key_t key; /* dialled: the secret's key, when has_key */
  int has_key, encrypt;
  conn_t *conn;
  uv_timer_t timer; /* redial */
  uint32_t backoff_ms;
  /* The peer as of its last HELLO. */
  uint64_t peer_inc;
  uint32_t peer_max_payload;
  nb_link_hello_t peer;
  nb_link_name_t *peer_by_name, *peer_by_id; /* sorted copies of peer.names */
  /* Target handles: names this side sends to, and the peer's ids. */
  char **tnames;
  int32_t *tremote;
  uint32_t ntargets, tcap;
  uint32_t *thash; /* open addressing: handle + 1, 0 = empty */
  uint32_t thcap;
  /* The send ring; cap is its largest size, the power of two at or above
   * opts.queue_spikes (which bounds what is held). */
  entry_t *ring;
  uint64_t cap, mask, rh, rw, rt;
  uint64_t acked_seq, in_doubt, qbytes;
  /* The round-trip probe: when the frames up to sequence probe_seq were
   * written (0: none out); one at a time, so a clock read per write at
   * most. */
  uint64_t probe_seq, probe_ns;
  /* Receive side. */
  uint64_t recv_seq, ack_sent;
  nb_link_stats_t st;
  void *data;
  int pinned;  /* made by nb_link_expect: kept for good */
  int counted; /* made for a caller: counted in the node's max_links */
  int reap;    /* lost its connection: freed next turn when disposable */
};

struct nb_link_node_s {
  uv_loop_t *loop;
  nb_link_node_opts_t o;
  char cortex[NB_LINK_NAME_MAX + 1];
  uint64_t inc;
  uv_tcp_t server;
  int listening, port;
  uv_prepare_t prep;
  int prep_active;
  uv_timer_t sweep;
  nb_link_name_t *exposed; /* names owned (strdup) */
  uint32_t nexposed, expcap;
  uint8_t exp_bits[65536 / 8];
  nb_link_keyring_t *ring; /* callers must authenticate (NULL: plain) */
  nb_link_arena_id_t aid; /* our arena file, when it can be shared */
  int has_aid;
  nb_arena_writer_t *writer; /* received payloads are written through it */
  conn_t *conns;
  nb_link_t **links;
  size_t nlinks, linkcap;
  int closing, handles;
  void (*done)(void *);
  void *done_ud;
  nb__node_lim_t lim; /* what peers may hold of this node */
};

/* ---- small helpers ---- */

/* Emits one log line at level through the node's callback or stderr. */
static void node_log(nb_link_node_t *n, nb_link_log_level_t level,
                    const char *fmt, ...) {
  int max = n->o.log_level ? (int)n->o.log_level : (int)NB_LINK_LOG_INFO;
  if ((int)level > max) return;
  char msg[640];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if (n->o.log) {
    n->o.log(n->o.log_ud, level, msg);
    return;
  }
  static const char *tag[] = {"", "error", "warning", "info"};
  fprintf(stderr, "neuronbus link [%s]: %s: %s\n", n->cortex, tag[level], msg);
}

/* Writes "peer 'name' (addr)" or "peer addr" for conn into buf; returns
 * buf. */
static const char *peer_label(const conn_t *c, char *buf, size_t cap) {
  if (c->link && c->link->cortex[0])
    snprintf(buf, cap, "peer '%s' (%s)", c->link->cortex, c->addr);
  else
    snprintf(buf, cap, "peer %s", c->addr);
  return buf;
}

/* Writes what a limited line adds about the lines held back before it
 * (or "") into buf; returns buf. */
static const char *lim_note(uint64_t held, char *buf, size_t cap) {
  if (held)
    snprintf(buf, cap, " (%llu more like it from this address were not "
             "logged)", (unsigned long long)held);
  else
    buf[0] = 0;
  return buf;
}

/* Returns the loop's clock in ms. */
static uint64_t loop_now(const nb_link_node_t *n) { return uv_now(n->loop); }

static void prepare_cb(uv_prepare_t *h);

/* Starts the once-per-iteration flush unless it already runs. */
static void kick(nb_link_node_t *n) {
  if (n->prep_active || n->closing) return;
  n->prep_active = 1;
  uv_prepare_start(&n->prep, prepare_cb);
}

static void conn_lost(conn_t *c, nb_link_log_level_t level,
                      int is_error, const char *fmt, ...);
static void link_flush(nb_link_t *l);
static void conn_process(conn_t *c);
static void link_dial(nb_link_t *l);
static void rx_account(conn_t *c);
static int caller_refused(conn_t *c, const char *cortex);

/* Frees the node once every handle it opened is closed. */
static void node_maybe_free(nb_link_node_t *n) {
  if (!n->closing || n->handles > 0) return;
  for (uint32_t i = 0; i < n->nexposed; i++) free((char *)n->exposed[i].name);
  free(n->exposed);
  free(n->links);
  nb_link_keyring_free(n->ring);
  nb_arena_writer_free(n->writer);
  nb__lim_free(&n->lim);
  void (*done)(void *) = n->done;
  void *ud = n->done_ud;
  free(n);
  if (done) done(ud);
}

/* Counts one closed handle of the node. */
static void handle_closed(uv_handle_t *h) {
  nb_link_node_t *n = h->data;
  n->handles--;
  node_maybe_free(n);
}

/* ---- the send ring ---- */

/* Frees the entry's payload (or drops its arena reference) and updates
 * the byte count; returns nothing. */
static void entry_clear(nb_link_t *l, entry_t *e) {
  if (e->payload) {
    l->qbytes -= e->plen;
    free(e->payload);
  }
  if (e->by_ref) {
    nb_spike_t s;
    nb_arena_ref_t ref;
    memcpy(&s, e->spike, NB_SPIKE_SIZE);
    if (nb_spike_get_ref(&s, &ref) == 0)
      nb_arena_release(l->node->o.arena, &ref, 1);
  }
  e->payload = NULL;
  e->plen = 0;
  e->by_ref = 0;
}

/* Emits DRAIN once the queue is at most half full after an NB_EFULL. */
static void check_drain(nb_link_t *l) {
  if (!l->was_full) return;
  uint64_t used = l->rt - l->rh;
  uint32_t qb = l->opts.queue_bytes;
  if (used > l->opts.queue_spikes / 2 || l->qbytes > qb / 2) return;
  l->was_full = 0;
  if (l->node->o.on_event) l->node->o.on_event(l->node->o.ud, l, NB_LINK_DRAIN);
}

/* Doubles l's ring (never past cap), keeping every entry at its position;
 * returns 0 or NB_ENOMEM (the ring unchanged). */
static int ring_grow(nb_link_t *l) {
  uint64_t size = (l->mask + 1) * 2;
  entry_t *r = calloc((size_t)size, sizeof *r);
  if (!r) return NB_ENOMEM;
  for (uint64_t p = l->rh; p < l->rt; p++) r[p & (size - 1)] = l->ring[p & l->mask];
  free(l->ring);
  l->ring = r;
  l->mask = size - 1;
  return 0;
}

/* Releases the n oldest entries as confirmed by the peer. */
static void release(nb_link_t *l, uint64_t n) {
  for (uint64_t i = 0; i < n; i++)
    entry_clear(l, &l->ring[(l->rh + i) & l->mask]);
  l->rh += n;
  l->acked_seq += n;
  l->st.acked += n;
}

/* ---- target names ---- */

/* Returns the FNV-1a hash of s. */
static uint32_t name_hash(const char *s) {
  uint32_t h = 2166136261u;
  for (; *s; s++) h = (h ^ (uint8_t)*s) * 16777619u;
  return h;
}

/* Returns the handle of name, or -1. */
static int target_find(const nb_link_t *l, const char *name) {
  if (!l->thcap) return -1;
  uint32_t m = l->thcap - 1;
  for (uint32_t i = name_hash(name) & m;; i = (i + 1) & m) {
    uint32_t v = l->thash[i];
    if (!v) return -1;
    if (strcmp(l->tnames[v - 1], name) == 0) return (int)(v - 1);
  }
}

/* Inserts handle h (name already stored) into the hash; returns nothing. */
static void thash_put(uint32_t *tab, uint32_t cap, const char *name,
                      uint32_t h) {
  uint32_t m = cap - 1, i = name_hash(name) & m;
  while (tab[i]) i = (i + 1) & m;
  tab[i] = h + 1;
}

/* Returns the peer's id for name from its last HELLO, or -1. */
static int32_t peer_id(const nb_link_t *l, const char *name) {
  size_t lo = 0, hi = l->peer.count;
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    int c = strcmp(l->peer_by_name[mid].name, name);
    if (c == 0) return l->peer_by_name[mid].id;
    if (c < 0) lo = mid + 1;
    else hi = mid;
  }
  return -1;
}

static int cmp_name(const void *a, const void *b) {
  return strcmp(((const nb_link_name_t *)a)->name,
                ((const nb_link_name_t *)b)->name);
}
static int cmp_id(const void *a, const void *b) {
  return (int)((const nb_link_name_t *)a)->id -
         (int)((const nb_link_name_t *)b)->id;
}

/* Returns 1 when name is a valid neuron or cortex name, else 0. */
static int name_valid(const char *name) {
  return name && nb_link_name_ok(name, strlen(name));
}

/* ---- links ---- */

nb_link_opts_t nb_link_opts_default(void) {
  nb_link_opts_t o;
  memset(&o, 0, sizeof o);
  o.policy = NB_LINK_RESEND;
  o.queue_spikes = NB_LINK_QUEUE_DEFAULT;
  o.queue_bytes = NB_LINK_QUEUE_BYTES_DEFAULT;
  o.backoff_min_ms = NB_LINK_BACKOFF_MIN_MS;
  o.backoff_max_ms = NB_LINK_BACKOFF_MAX_MS;
  return o;
}

/* Fills zero fields of o with the defaults; returns o. */
static nb_link_opts_t opts_fill(const nb_link_opts_t *in) {
  nb_link_opts_t d = nb_link_opts_default(), o = in ? *in : d;
  if (!o.queue_spikes) o.queue_spikes = d.queue_spikes;
  if (!o.queue_bytes) o.queue_bytes = d.queue_bytes;
  if (!o.backoff_min_ms) o.backoff_min_ms = d.backoff_min_ms;
  if (!o.backoff_max_ms) o.backoff_max_ms = d.backoff_max_ms;
  if (o.backoff_max_ms < o.backoff_min_ms) o.backoff_max_ms = o.backoff_min_ms;
  return o;
}

/* Frees a link after its timer closed. */
static void link_closed(uv_handle_t *h) {
  nb_link_t *l = h->data;
  nb_link_node_t *n = l->node;
  for (uint64_t p = l->rh; p < l->rt; p++)
    entry_clear(l, &l->ring[p & l->mask]);
  free(l->ring);
  for (uint32_t i = 0; i < l->ntargets; i++) free(l->tnames[i]);
  free(l->tnames);
  free(l->tremote);
  free(l->thash);
  free(l->peer_by_name);
  free(l->peer_by_id);
  nb_link_hello_free(&l->peer);
  nb_link_key_wipe(&l->key);
  free(l);
  n->handles--;
  node_maybe_free(n);
}

/* Creates a link and registers it with the node; returns it or NULL. */
static nb_link_t *link_new(nb_link_node_t *n, const nb_link_opts_t *opts,
                           int outbound) {
  nb_link_t *l = calloc(1, sizeof *l);
  if (!l) return NULL;
  l->node = n;
  l->opts = opts_fill(opts);
  l->outbound = outbound;
  l->cap = 1;
  while (l->cap < l->opts.queue_spikes) l->cap <<= 1;
  /* The ring starts small and doubles up to cap as spikes wait (see
   * ring_grow): a peer that only shakes hands costs no megabyte. */
  l->mask = (l->cap < NB__RING0 ? l->cap : NB__RING0) - 1;
  l->ring = calloc((size_t)l->mask + 1, sizeof *l->ring);
  if (n->nlinks == n->linkcap) {
    size_t cap = n->linkcap ? n->linkcap * 2 : 8;
    nb_link_t **nl = realloc(n->links, cap * sizeof *nl);
    if (nl) {
      n->links = nl;
      n->linkcap = cap;
    }
  }
  if (!l->ring || n->nlinks == n->linkcap) {
    free(l->ring);
    free(l);
    return NULL;
  }
  l->backoff_ms = l->opts.backoff_min_ms;
  uv_timer_init(n->loop, &l->timer);
  l->timer.data = l;
  n->handles++;
  n->links[n->nlinks++] = l;
  return l;
}

/* Runs when the redial delay is over. */
static void redial_cb(uv_timer_t *t) {
  nb_link_t *l = t->data;
  if (!l->closing && !l->node->closing && !l->conn) link_dial(l);
}

/* Schedules the next dial of an outbound link with exponential backoff. */
static void schedule_redial(nb_link_t *l) {
  if (!l->outbound || l->closing || l->node->closing) return;
  uv_timer_start(&l->timer, redial_cb, l->backoff_ms, 0);
  uint64_t next = (uint64_t)l->backoff_ms * 2;
  l->backoff_ms = next > l->opts.backoff_max_ms ? l->opts.backoff_max_ms
                                                : (uint32_t)next;
}

/* Unbinds conn from its link after a loss and applies the link's policy;
 * returns nothing. */
static void link_detach(nb_link_t *l, conn_t *c) {
  int was_up = l->up;
  c->link = NULL;
  l->conn = NULL;
  l->up = 0;
  l->shared = 0;
  if (was_up) {
    l->lost_since_up = 1;
    if (l->opts.policy == NB_LINK_DROP) {
      /* Written frames may have arrived: settled by the peer's count at
       * the reconnect. Queued ones are dropped now, and reported. */
      uint64_t dropped = l->rt - l->rw;
      l->in_doubt += l->rw - l->rh;
      for (uint64_t p = l->rh; p < l->rt; p++)
        entry_clear(l, &l->ring[p & l->mask]);
      l->rh = l->rw = l->rt;
      l->st.lost += dropped;
      if (dropped)
        node_log(l->node, NB_LINK_LOG_WARN,
                "peer '%s': %llu queued spikes dropped (policy drop), %llu "
                "in doubt until it is back", l->cortex,
                (unsigned long long)dropped,
                (unsigned long long)l->in_doubt);
      check_drain(l);
    }
    if (l->node->o.on_event) l->node->o.on_event(l->node->o.ud, l, NB_LINK_DOWN);
  }
  schedule_redial(l);
  if (l->counted) {
    /* A caller that carried nothing may never come back: freed next turn
     * (not here: on_hello may be about to bind it again). */
    l->reap = 1;
    kick(l->node);
  }
}

/* ---- connections ---- */

/* Frees a connection once libuv closed its socket. */
static void conn_closed(uv_handle_t *h) {
  conn_t *c = h->data;
  nb_link_node_t *n = c->node;
  for (conn_t **pp = &n->conns; *pp; pp = &(*pp)->next)
    if (*pp == c) {
      *pp = c->next;
      break;
    }
  nb_link_rx_free(&c->rx);
  nb_link_auth_free(c->auth);
  free(c->sbuf);
  free(c->rbuf);
  free(c->wbuf);
  free(c);
  n->handles--;
  node_maybe_free(n);
}

/* Makes a connection object with its socket handle; returns it or NULL. */
static conn_t *conn_new(nb_link_node_t *n, int outbound) {
  conn_t *c = calloc(1, sizeof *c);
  if (!c) return NULL;
  c->rbuf = malloc(NB__RBUF);
  if (!c->rbuf || uv_tcp_init(n->loop, &c->tcp) != 0) {
    free(c->rbuf);
    free(c);
    return NULL;
  }
  c->node = n;
  c->outbound = outbound;
  c->rdata = c->rbuf;
  c->tcp.data = c;
  c->creq.data = c;
  c->wreq.data = c;
  c->opened_ms = c->lim.last_rx_ms = c->lim.last_tx_ms = loop_now(n);
  uint32_t maxp = n->o.max_payload;
  nb_link_rx_init(&c->rx, maxp);
  c->next = n->conns;
  n->conns = c;
  n->handles++;
  return c;
}

/* Closes conn for good: logs why (naming the peer), hands the link its
 * loss, and lets libuv close the socket. */
static void conn_lost(conn_t *c, nb_link_log_level_t level,
                      int is_error, const char *fmt, ...) {
  if (c->state == NB__C_CLOSING) return;
  char why[400], who[400];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(why, sizeof why, fmt, ap);
  va_end(ap);
  uint64_t held = 0;
  char note[96];
  /* A caller's lines are held back per address and reason: a flood of
   * connections must not become a flood of lines. */
  if (!c->lim.quiet &&
      (!c->lim.ip[0] || nb__lim_log_ok(&c->node->lim, c->lim.ip,
                                       nb__lim_msg_kind(why),
                                       loop_now(c->node), &held)))
    node_log(c->node, level, "%s: %s%s%s", peer_label(c, who, sizeof who),
             why, is_error ? ": connection closed" : "",
             lim_note(held, note, sizeof note));
  c->node->lim.rx_held -= c->lim.held;
  c->lim.held = 0;
  c->state = NB__C_CLOSING;
  if (c->pend_has_ref && c->node->o.arena)
    nb_arena_release(c->node->o.arena, &c->pend_ref, 1);
  c->has_pending = c->pend_has_ref = 0;
  nb_link_t *l = c->link;
  if (l) {
    if (is_error) l->st.errors++;
    link_detach(l, c);
  }
  if (c->reading) uv_read_stop((uv_stream_t *)&c->tcp);
  c->reading = 0;
  uv_close((uv_handle_t *)&c->tcp, conn_closed);
}

/* Frees a HELLO write. */
static void hello_written(uv_write_t *req, int status) {
  hello_write_t *w = (hello_write_t *)req;
  conn_t *c = w->conn;
  if (status < 0 && status != UV_ECANCELED && c->state != NB__C_CLOSING)
    conn_lost(c, NB_LINK_LOG_WARN, 0, "handshake write failed: %s",
                  uv_strerror(status));
  free(w);
}

/* Writes len bytes at p on conn from a copy (sealed when seal is 1 and
 * the stream is encrypted); returns the bytes put on the wire, or a
 * negative error (the caller closes conn). */
static int64_t conn_write(conn_t *c, const uint8_t *p, size_t len, int seal) {
  seal = seal && nb_link_auth_encrypted(c->auth);
  size_t size = seal ? nb_link_auth_sealed_size(len) : len;
  hello_write_t *w = malloc(sizeof *w + size);
  if (!w) return NB_ENOMEM;
  if (seal) {
    struct iovec v = {(void *)p, len};
    nb_link_auth_seal(c->auth, &v, 1, w->data);
  } else {
    memcpy(w->data, p, len);
  }
  w->conn = c;
  uv_buf_t b = uv_buf_init((char *)w->data, (unsigned)size);
  if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, hello_written) < 0) {
    free(w);
    return NB_EIO;
  }
  return (int64_t)size;
}

/* Writes this node's HELLO on conn, reporting what it accepted from l's
 * peer; returns 0 or a negative error (the caller closes conn). */
static int send_hello(conn_t *c, nb_link_t *l) {
  nb_link_node_t *n = c->node;
  nb_link_hello_t h;
  memset(&h, 0, sizeof h);
  h.incarnation = n->inc;
  h.peer_incarnation = l->peer_inc;
  h.recv_seq = l->peer_inc ? l->recv_seq : 0;
  h.max_payload = n->o.max_payload;
  memcpy(h.cortex, n->cortex, sizeof h.cortex);
  h.count = n->nexposed;
  h.names = n->exposed;
  if (n->has_aid) {
    h.flags = NB_LINK_F_ARENA;
    h.arena = n->aid;
  }
  size_t size = nb_link_hello_size(&h);
  uint8_t *buf = malloc(size);
  if (!buf) return NB_ENOMEM;
  int rc = nb_link_hello_encode(&h, buf, size);
  int64_t put = rc < 0 ? rc : conn_write(c, buf, (size_t)rc, 1);
  free(buf);
  if (put < 0) return (int)put;
  l->st.bytes_out += (uint64_t)put;
  return 0;
}

/* Runs the bytes just read through the authentication: writes its answer,
 * sends our HELLO once a dialled link is proven, and leaves the link's own
 * bytes in rdata; returns 0, or -1 when conn was closed. */
static int conn_auth_input(conn_t *c) {
  nb_link_auth_io_t io;
  int rc = nb_link_auth_input(c->auth, c->rbuf, c->rlen, &io);
  if (rc != 0) {
    conn_lost(c, NB_LINK_LOG_ERROR, 1, "%s", rc == NB_ENOMEM
              ? "out of memory while reading" : nb_link_auth_why(c->auth));
    return -1;
  }
  if (io.out_len) {
    int64_t put = conn_write(c, io.out, io.out_len, 0);
    if (put < 0) {
      conn_lost(c, NB_LINK_LOG_ERROR, 1, "cannot send the authentication");
      return -1;
    }
    if (c->link) c->link->st.bytes_out += (uint64_t)put;
  }
  if (io.established && c->outbound && send_hello(c, c->link) != 0) {
    conn_lost(c, NB_LINK_LOG_ERROR, 1, "cannot send the handshake");
    return -1;
  }
  c->rdata = (uint8_t *)io.plain;
  c->rlen = io.plain_len;
  c->roff = 0;
  return 0;
}

static void alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  conn_t *c = h->data;
  /* Only ever called with the buffer drained: a paused connection does
   * not read. */
  *buf = uv_buf_init((char *)c->rbuf, NB__RBUF);
}

static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  conn_t *c = s->data;
  if (c->state == NB__C_CLOSING || nread == 0) return;
  if (nread < 0) {
    if (nread == UV_EOF) {
      if (nb_link_rx_partial(&c->rx))
        conn_lost(c, NB_LINK_LOG_ERROR, 1,
                      c->rx.state == 0
                          ? "connection ended inside the handshake"
                          : "connection ended inside frame %llu (truncated)",
                      (unsigned long long)c->rx.frames + 1);
      else if (c->auth && !nb_link_auth_established(c->auth))
        conn_lost(c, NB_LINK_LOG_ERROR, 1, "closed during authentication "
                  "(the peer logs why: most likely the secrets differ)");
      else if (c->state == NB__C_HELLO)
        conn_lost(c, NB_LINK_LOG_ERROR, 1,
                      "closed during the handshake (the peer logs why: "
                      "version mismatch or refused handshake)");
      else
        conn_lost(c, NB_LINK_LOG_INFO, 0, "closed by the peer");
    } else {
      conn_lost(c, NB_LINK_LOG_WARN, 0, "read failed: %s",
                    uv_strerror((int)nread));
    }
    return;
  }
  c->rdata = c->rbuf;
  c->rlen = (size_t)nread;
  c->roff = 0;
  c->bytes_in += (uint64_t)nread;
  c->lim.last_rx_ms = loop_now(c->node);
  if (c->link) c->link->st.bytes_in += (uint64_t)nread;
  if (c->auth && conn_auth_input(c) != 0) return;
  conn_process(c);
  rx_account(c);
}

/* Applies the peer's HELLO to the receiving half of l; returns 1 when the
 * peer is a new incarnation (first contact or restarted), else 0. */
static int hello_recv_side(nb_link_t *l, const nb_link_hello_t *h) {
  if (h->incarnation != l->peer_inc) {
    /* A new peer process: it counts our frames from 0, and we its. */
    if (l->peer_inc)
      node_log(l->node, NB_LINK_LOG_INFO,
              "peer '%s': a new incarnation (restarted), counting from 0",
              h->cortex);
    l->peer_inc = h->incarnation;
    l->recv_seq = l->ack_sent = 0;
    return 1;
  }
  return 0;
}

/* Settles the sending half of l with the peer's count of what it accepted
 * (new_peer: its incarnation changed); returns nothing. */
static void hello_send_side(nb_link_t *l, const nb_link_hello_t *h,
                            int new_peer) {
  int valid = h->peer_incarnation == l->node->inc;
  uint64_t r = valid ? h->recv_seq : 0;
  uint64_t out = l->opts.policy == NB_LINK_RESEND ? l->rw - l->rh : l->in_doubt;
  /* The peer counts our frames, in our incarnation, from a base this link
   * cannot place: new to the link, it has counted some already (a new
   * peer counts from 0), or its count is below what it acked or above
   * what was written. Another process spoke for its cortex meanwhile
   * (and was counted as it, or made us renumber), or the peer took us
   * for a new one. Refusing the count would refuse every redial of the
   * rightful peer for good, and releasing by it would confirm frames
   * nobody read: our numbering continues from its count instead, nothing
   * is taken as acked, and everything unconfirmed goes again (at least
   * once, as after a restart). */
  int rebase = valid && (new_peer ? r != 0
                                  : r < l->acked_seq || r - l->acked_seq > out);
  if (rebase)
    node_log(l->node, NB_LINK_LOG_WARN,
             "peer '%s' counts %llu of our frames where this link expects "
             "%llu..%llu (another process spoke for its cortex?): counting "
             "from there, everything unconfirmed is sent again", h->cortex,
             (unsigned long long)r, (unsigned long long)l->acked_seq,
             (unsigned long long)(l->acked_seq + out));
  if (new_peer || !valid || rebase) {
    /* A new numbering: what the old peer did not confirm is resent
     * (RESEND) or lost (DROP). */
    l->st.lost += l->in_doubt;
    if (l->in_doubt)
      node_log(l->node, NB_LINK_LOG_WARN,
              "peer '%s': restarted; %llu spikes in doubt counted lost",
              h->cortex, (unsigned long long)l->in_doubt);
    l->in_doubt = 0;
    l->acked_seq = rebase ? r : 0;
  }
  uint64_t got = r - l->acked_seq;
  if (l->opts.policy == NB_LINK_RESEND) {
    release(l, got);
  } else {
    l->st.acked += got;
    l->st.lost += l->in_doubt - got;
    if (l->in_doubt - got)
      node_log(l->node, NB_LINK_LOG_WARN,
              "peer '%s': %llu of %llu spikes in doubt had not arrived: lost",
              h->cortex, (unsigned long long)(l->in_doubt - got),
              (unsigned long long)l->in_doubt);
    l->acked_seq = r;
    l->in_doubt = 0;
  }
  l->rw = l->rh; /* everything unconfirmed goes (again) from here */
  l->probe_ns = 0; /* a probe across a reconnect measures the outage */
}

/* Takes the peer's name list from h and re-resolves every target; drops
 * (and reports) queued spikes the new peer cannot take. */
static void adopt_peer(nb_link_t *l, nb_link_hello_t *h) {
  nb_link_hello_free(&l->peer);
  free(l->peer_by_name);
  free(l->peer_by_id);
  l->peer = *h;
  memset(h, 0, sizeof *h);
  size_t sz = (size_t)l->peer.count * sizeof(nb_link_name_t);
  l->peer_by_name = malloc(sz ? sz : 1);
  l->peer_by_id = malloc(sz ? sz : 1);
  if (!l->peer_by_name || !l->peer_by_id) {
    /* Without the maps no name resolves: everything queued is refused
     * below, and reported. */
    free(l->peer_by_name);
    free(l->peer_by_id);
    l->peer_by_name = l->peer_by_id = NULL;
    l->peer.count = 0;
  } else if (sz) {
    memcpy(l->peer_by_name, l->peer.names, sz);
    memcpy(l->peer_by_id, l->peer.names, sz);
    qsort(l->peer_by_name, l->peer.count, sizeof *l->peer_by_name,
          cmp_name);
    qsort(l->peer_by_id, l->peer.count, sizeof *l->peer_by_id, cmp_id);
  }
  memcpy(l->cortex, l->peer.cortex, sizeof l->cortex);
  l->peer_max_payload = l->peer.max_payload;
  for (uint32_t i = 0; i < l->ntargets; i++)
    l->tremote[i] = peer_id(l, l->tnames[i]);
  /* Everything in the ring is about to be (re)written: squeeze out what
   * this peer would refuse, keeping the order of the rest. */
  uint64_t keep = l->rh, dropped = 0;
  for (uint64_t p = l->rh; p < l->rt; p++) {
    entry_t *e = &l->ring[p & l->mask];
    /* Over a shared arena a ref's bytes do not travel: no size limit. */
    if (l->tremote[e->target] < 0 ||
        (e->plen > l->peer_max_payload && !(e->by_ref && l->shared))) {
      entry_clear(l, e);
      dropped++;
      continue;
    }
    if (keep != p) {
      l->ring[keep & l->mask] = *e;
      memset(e, 0, sizeof *e);
    }
    keep++;
  }
  l->rt = keep;
  if (dropped) {
    l->st.lost += dropped;
    node_log(l->node, NB_LINK_LOG_WARN,
            "peer '%s': %llu queued spikes dropped: their target is not "
            "exposed by the peer or their payload is over its maximum",
            l->cortex, (unsigned long long)dropped);
    check_drain(l);
  }
}

/* Handles the peer's HELLO on conn; returns 0, or -1 when conn was
 * closed. */
static int on_hello(conn_t *c, nb_link_hello_t *h) {
  nb_link_node_t *n = c->node;
  char who[400];
  int new_peer;
  if (h->incarnation == n->inc) {
    conn_lost(c, NB_LINK_LOG_ERROR, 1, "connected to itself");
    return -1;
  }
  /* A peer speaks only as the cortex it proved a secret for. */
  if (c->auth && strcmp(h->cortex, nb_link_auth_peer(c->auth)) != 0) {
    conn_lost(c, NB_LINK_LOG_ERROR, 1, "its HELLO names cortex '%s', but it "
              "authenticated as '%s'", h->cortex, nb_link_auth_peer(c->auth));
    return -1;
  }
  nb_link_t *l = c->link;
  if (!l) {
    /* A caller: its cortex name picks (or makes) the link; a replaced
     * connection is only ever replaced by a caller that proved the same
     * secret (when the node has one). */
    l = nb_link_find(n, h->cortex);
    if (l && l->outbound) {
      conn_lost(c, NB_LINK_LOG_ERROR, 1,
                    "cortex '%s' called in, but this node dials it", h->cortex);
      return -1;
    }
    if (!l) {
      if (caller_refused(c, h->cortex)) return -1;
      l = link_new(n, &n->o.accept, 0);
      if (!l) {
        conn_lost(c, NB_LINK_LOG_ERROR, 1, "out of memory for a link");
        return -1;
      }
      memcpy(l->cortex, h->cortex, sizeof l->cortex);
      l->counted = 1;
      n->lim.inbound++;
    }
    if (l->conn && l->conn != c)
      conn_lost(l->conn, NB_LINK_LOG_INFO, 0,
                    "replaced by a new connection from the same peer");
    c->link = l;
    l->conn = c;
    l->st.bytes_in += c->bytes_in;
    new_peer = hello_recv_side(l, h);
    if (send_hello(c, l) != 0) {
      conn_lost(c, NB_LINK_LOG_ERROR, 1, "cannot send the handshake");
      return -1;
    }
  } else {
    if (l->cortex[0] && strcmp(l->cortex, h->cortex) != 0)
      node_log(n, NB_LINK_LOG_WARN, "%s: now answers as cortex '%s'",
              peer_label(c, who, sizeof who), h->cortex);
    new_peer = hello_recv_side(l, h);
  }
  /* Same arena file on the same host: refs cross by reference, both ways
   * (each end decides the same from the two HELLOs). */
  l->shared = n->has_aid && (h->flags & NB_LINK_F_ARENA) &&
              nb_link_arena_same(&n->aid, &h->arena);
  nb_link_rx_bare_refs(&c->rx, l->shared);
  hello_send_side(l, h, new_peer);
  uint64_t resend = l->rt - l->rh;
  adopt_peer(l, h);
  c->state = NB__C_UP;
  l->up = 1;
  l->failures = 0;
  l->backoff_ms = l->opts.backoff_min_ms;
  uv_timer_stop(&l->timer);
  l->st.connects++;
  if (l->lost_since_up) l->st.reconnects++;
  uint64_t held = 0;
  char note[96];
  /* A new caller's connect line is held back per address like its other
   * lines (a flood of one-shot handshakes); known peers are always told. */
  if (!l->counted || l->st.connects > 1 ||
      nb__lim_log_ok(&n->lim, c->lim.ip, nb__lim_msg_kind("connected"),
                     loop_now(n), &held))
    node_log(n, NB_LINK_LOG_INFO,
          "%s: %s, %u neurons exposed%s, sending from frame %llu (%llu "
          "queued)%s", peer_label(c, who, sizeof who),
          l->lost_since_up ? "reconnected" : "connected", l->peer.count,
          l->shared ? ", sharing the arena file (large payloads by reference)"
                    : "",
          (unsigned long long)l->acked_seq, (unsigned long long)resend,
          lim_note(held, note, sizeof note));
  l->lost_since_up = 0;
  if (n->o.on_event) n->o.on_event(n->o.ud, l, NB_LINK_UP);
  kick(n);
  return c->state == NB__C_CLOSING ? -1 : 0;
}

/* Handles a cumulative ack; returns 0, or -1 when conn was closed. */
static int on_ack(conn_t *c, uint64_t ack) {
  nb_link_t *l = c->link;
  if (ack < l->acked_seq || ack - l->acked_seq > l->rw - l->rh) {
    conn_lost(c, NB_LINK_LOG_ERROR, 1,
                  "ack of %llu frames, but %llu..%llu are outstanding",
                  (unsigned long long)ack, (unsigned long long)l->acked_seq,
                  (unsigned long long)(l->acked_seq + (l->rw - l->rh)));
    return -1;
  }
  release(l, ack - l->acked_seq);
  if (l->probe_ns && ack >= l->probe_seq) {
    nb_link_rtt_add(&l->st, nb_clock_ns() - l->probe_ns);
    l->probe_ns = 0;
  }
  check_drain(l);
  return 0;
}

/* Stops reading until resume. */
static void conn_pause(conn_t *c) {
  c->paused = 1;
  c->link->st.pauses++;
  if (c->reading) uv_read_stop((uv_stream_t *)&c->tcp);
  c->reading = 0;
}

/* Counts a spike on_spike answered rc for (taken, or refused for good);
 * returns nothing. */
static void offered(nb_link_t *l, int rc) {
  if (rc < 0) l->st.rejected++;
  else l->st.received++;
  l->recv_seq++;
}

/* Offers the held spike to on_spike; returns 1 when taken (or refused for
 * good), 0 when it must wait (conn paused). */
static int offer_held(conn_t *c) {
  nb_link_node_t *n = c->node;
  nb_link_t *l = c->link;
  /* Every ref gets a copy in our arena, even an empty one: a ref into the
   * peer's arena means nothing here. */
  if (nb_spike_is_ref(&c->pend) && n->o.arena && !c->pend_has_ref) {
    int rc = nb_arena_write(n->writer, c->pend_payload, c->pend_len,
                            &c->pend_ref);
    if (rc == NB_ENOSPACE) {
      /* No room: the same backpressure as a full receiver; resumed (and
       * tried again) until payloads are released. Logged at most every
       * 10 s (why: under steady two-way load short waits come and go
       * hundreds of times a second, each counted in pauses; one line per
       * wait flooded the log). */
      if (!c->arena_waiting &&
          (!c->arena_log_ms || loop_now(n) - c->arena_log_ms >= 10000)) {
        c->arena_log_ms = loop_now(n) ? loop_now(n) : 1;
        c->arena_logged = 1;
        char who[400];
        node_log(n, NB_LINK_LOG_WARN, "%s: %s; reading paused until "
                 "payloads are released", peer_label(c, who, sizeof who),
                 nb_strerror(rc));
      }
      c->arena_waiting = 1;
      conn_pause(c);
      return 0;
    }
    if (rc != 0) {
      /* A payload this arena can never hold: refused, like a bad one. */
      l->st.rejected++;
      c->has_pending = 0;
      l->recv_seq++;
      return 1;
    }
    if (c->arena_waiting && c->arena_logged) {
      char who[400];
      node_log(n, NB_LINK_LOG_INFO, "%s: arena has room again; reading "
               "resumed (later waits are logged at most every 10 s)",
               peer_label(c, who, sizeof who));
    }
    c->arena_waiting = c->arena_logged = 0;
    c->pend_has_ref = 1;
    nb_spike_set_ref(&c->pend, &c->pend_ref);
  }
  int rc = n->o.on_spike(n->o.ud, l, &c->pend, c->pend_payload, c->pend_len);
  if (rc == NB_EFULL) {
    conn_pause(c);
    return 0;
  }
  if (rc < 0 && c->pend_has_ref) nb_arena_release(n->o.arena, &c->pend_ref, 1);
  c->has_pending = c->pend_has_ref = 0;
  offered(l, rc);
  return 1;
}

/* Offers a spike with an inline payload straight from the decoder, as
 * offer_held would after holding it; returns 1 when taken (or refused for
 * good), 0 when it is held for later (conn paused). Only a full receiver
 * costs the copy into the hold. */
static int offer_inline(conn_t *c, const nb_spike_t *s) {
  nb_link_node_t *n = c->node;
  int rc = n->o.on_spike(n->o.ud, c->link, s, NULL, 0);
  if (rc == NB_EFULL) {
    c->has_pending = 1;
    c->pend_has_ref = 0;
    c->pend = *s;
    c->pend_payload = NULL;
    c->pend_len = 0;
    conn_pause(c);
    return 0;
  }
  offered(c->link, rc);
  return 1;
}

/* Spikes decoded per on_spikes call: 16 KiB on the stack. */
enum { RUN_MAX = 256 };

/* Returns 1 when this node exposes local id t, else 0. */
static inline int exposed(const nb_link_node_t *n, nb_id_t t) {
  return (n->exp_bits[t >> 3] >> (t & 7)) & 1u;
}

/* Offers the run of whole plain frames at the read offset to on_spikes
 * (an up connection with nothing held); returns how many frames it
 * consumed, 0 when on_spikes took none (the connection is then paused) or
 * the next frame is for the one-frame path (a control frame, an
 * unexposed target, anything the run decoder leaves). Pauses the
 * connection when on_spikes took fewer than it was offered: their bytes
 * stay unread, to be decoded again on resume. */
static size_t offer_run(conn_t *c, nb_spike_t *run) {
  nb_link_node_t *n = c->node;
  nb_link_t *l = c->link;
  size_t k = nb_frame_decode_run(&c->rx.dec, c->rdata + c->roff,
                                 c->rlen - c->roff, run, RUN_MAX);
  /* Only data frames to exposed neurons: the first other one ends the
   * run and goes through the checks (and messages) of conn_process. */
  size_t m = 0;
  while (m < k && !nb_link_is_ctrl(&run[m]) && exposed(n, run[m].target)) m++;
  if (m == 0) return 0;
  size_t rejected = 0;
  size_t took = n->o.on_spikes(n->o.ud, l, run, m, &rejected);
  if (took > m) took = m;
  if (rejected > took) rejected = took;
  c->roff += took * NB_FRAME_SPIKE;
  c->rx.frames += took;
  l->st.received += took - rejected;
  l->st.rejected += rejected;
  l->recv_seq += took;
  if (took < m) conn_pause(c);
  return took;
}

/* Runs the received bytes through the state machine until they are used
 * up, the receiver is full, or the connection closes. */
static void conn_process(conn_t *c) {
  nb_link_node_t *n = c->node;
  nb_link_t *l0 = c->link;
  uint64_t seq0 = l0 ? l0->recv_seq : 0;
  nb_spike_t run[RUN_MAX];
  while (c->state != NB__C_CLOSING && !c->paused) {
    if (c->has_pending) {
      if (!offer_held(c)) break;
      continue;
    }
    if (c->roff >= c->rlen) break;
    /* A run refused whole paused the connection: nothing more until
     * resume, not even its first frame through the one-frame path. */
    if (n->o.on_spikes && c->state == NB__C_UP && c->link &&
        (offer_run(c, run) || c->paused))
      continue;
    nb_link_rx_event_t ev;
    size_t used = 0;
    int rc = nb_link_rx_feed(&c->rx, c->rdata + c->roff, c->rlen - c->roff,
                             &used, &ev);
    c->roff += used;
    if (rc == 0) {
      if (used == 0) break;
      continue;
    }
    if (rc < 0) {
      if (rc == NB_ENOMEM)
        conn_lost(c, NB_LINK_LOG_ERROR, 1, "out of memory while reading");
      else
        conn_lost(c, NB_LINK_LOG_ERROR, 1, "%s", c->rx.why);
      break;
    }
    if (ev.kind == NB_LINK_RX_HELLO) {
      int r = on_hello(c, &ev.hello);
      nb_link_hello_free(&ev.hello);
      if (r < 0) break;
      continue;
    }
    if (c->state != NB__C_UP) break; /* cannot happen: HELLO comes first */
    if (ev.kind == NB_LINK_RX_ACK) {
      if (on_ack(c, ev.ack) < 0) break;
      continue;
    }
    nb_id_t t = ev.spike.target;
    if (!exposed(n, t)) {
      conn_lost(c, NB_LINK_LOG_ERROR, 1,
                    "frame %llu targets neuron id %u, which this node does "
                    "not expose", (unsigned long long)c->rx.frames,
                    (unsigned)t);
      break;
    }
    if (!nb_spike_is_ref(&ev.spike)) {
      if (!offer_inline(c, &ev.spike)) break;
      continue;
    }
    c->has_pending = 1;
    c->pend_has_ref = 0;
    c->pend = ev.spike;
    c->pend_payload = ev.payload;
    c->pend_len = ev.payload_len;
    if (nb_spike_is_ref(&ev.spike) && !ev.payload && c->link &&
        c->link->shared) {
      /* A bare ref (the decoder takes them only from a peer sharing our
       * arena file): its bytes must be readable here, and the receiver
       * gets its own reference to them. */
      nb_arena_ref_t ref;
      const void *d = NULL;
      int brc = nb_spike_get_ref(&ev.spike, &ref);
      if (brc == 0) brc = nb_arena_read(n->o.arena, &ref, &d);
      if (brc == 0) brc = nb_arena_retain(n->o.arena, &ref, 1);
      if (brc != 0) {
        c->has_pending = 0;
        conn_lost(c, NB_LINK_LOG_ERROR, 1,
                      "frame %llu: its arena reference (offset %llu, %u "
                      "bytes) is not readable in the shared arena: %s",
                      (unsigned long long)c->rx.frames,
                      (unsigned long long)ref.offset, (unsigned)ref.len,
                      nb_strerror(brc));
        break;
      }
      c->pend_has_ref = 1;
      c->pend_ref = ref;
      c->pend_payload = d;
      c->pend_len = ref.len;
      c->link->st.refs_in++;
    }
  }
  nb_link_t *l = c->link;
  if (l && l->recv_seq != seq0) kick(n); /* an ack is owed */
  if (c->state != NB__C_CLOSING && !c->paused && !c->reading &&
      c->roff >= c->rlen) {
    if (uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb) == 0)
      c->reading = 1;
  }
}

static void on_connect(uv_connect_t *req, int status) {
  conn_t *c = req->data;
  nb_link_t *l = c->link;
  if (c->state == NB__C_CLOSING) return;
  if (status < 0) {
    l->failures++;
    conn_lost(c, l->failures == 1 ? NB_LINK_LOG_WARN : NB_LINK_LOG_INFO,
                  0, "connect failed: %s (retry in %u ms)",
                  uv_strerror(status), l->backoff_ms);
    return;
  }
  uv_tcp_nodelay(&c->tcp, 1);
  uv_tcp_keepalive(&c->tcp, 1, 30);
  c->state = NB__C_HELLO;
  if (l->has_key) {
    /* Prove the secret first; the HELLO follows the peer's proof. */
    nb_link_auth_io_t io;
    int rc = nb_link_auth_caller(&c->auth, c->node->cortex, &l->key,
                                 l->encrypt);
    if (rc == 0) rc = nb_link_auth_begin(c->auth, &io);
    int64_t put = rc == 0 ? conn_write(c, io.out, io.out_len, 0) : rc;
    if (put < 0) {
      conn_lost(c, NB_LINK_LOG_ERROR, 1, "cannot send the authentication");
      return;
    }
    l->st.bytes_out += (uint64_t)put;
  } else if (send_hello(c, l) != 0) {
    conn_lost(c, NB_LINK_LOG_ERROR, 1, "cannot send the handshake");
    return;
  }
  if (uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb) == 0)
    c->reading = 1;
}

/* Opens a connection for outbound link l. */
static void link_dial(nb_link_t *l) {
  nb_link_node_t *n = l->node;
  conn_t *c = conn_new(n, 1);
  if (!c) {
    node_log(n, NB_LINK_LOG_ERROR, "peer %s: out of memory to connect", l->url);
    schedule_redial(l);
    return;
  }
  snprintf(c->addr, sizeof c->addr, "%s", l->url);
  c->link = l;
  l->conn = c;
  c->state = NB__C_CONNECTING;
  int rc = uv_tcp_connect(&c->creq, &c->tcp,
                          (const struct sockaddr *)&l->addr, on_connect);
  if (rc < 0) {
    l->failures++;
    conn_lost(c, NB_LINK_LOG_WARN, 0, "connect failed: %s",
                  uv_strerror(rc));
  }
}

/* ---- writing ---- */

static void on_write(uv_write_t *req, int status) {
  conn_t *c = req->data;
  c->writing = 0;
  if (c->state == NB__C_CLOSING) return;
  if (status < 0) {
    conn_lost(c, NB_LINK_LOG_WARN, 0, "write failed: %s",
                  uv_strerror(status));
    return;
  }
  kick(c->node);
}

/* Removes the unwritten entry at position p (its bytes can no longer be
 * read) keeping the order of the rest, and counts it lost; returns
 * nothing. Unwritten entries have no sequence number yet, so this is safe
 * anywhere in [rw, rt). */
static void link_squeeze(nb_link_t *l, uint64_t p, int rc) {
  entry_clear(l, &l->ring[p & l->mask]);
  for (uint64_t q = p; q + 1 < l->rt; q++)
    l->ring[q & l->mask] = l->ring[(q + 1) & l->mask];
  memset(&l->ring[(l->rt - 1) & l->mask], 0, sizeof *l->ring);
  l->rt--;
  l->st.lost++;
  node_log(l->node, NB_LINK_LOG_WARN,
          "peer '%s': a queued spike's payload can no longer be read from "
          "the arena (%s): counted lost", l->cortex, nb_strerror(rc));
}

/* Writes the owed ack and as many queued frames as one write takes. */
static void link_flush(nb_link_t *l) {
  conn_t *c = l->conn;
  if (!c || c->state != NB__C_UP || c->writing) return;
  /* Made at the first write: callers that never get this far (most of a
   * flood of handshakes) cost no write buffer. */
  if (!c->wbuf &&
      !(c->wbuf = malloc((size_t)NB__WFRAMES * NB_FRAME_SPIKE + NB_FRAME_SPIKE)))
    return;
  size_t off = 0, run = 0, niov = 0, total = 0;
  if (l->recv_seq != l->ack_sent || c->lim.ping) {
    /* An ack of what was already acked is the keepalive: a no-op frame. */
    off += (size_t)nb_link_ack_encode(l->recv_seq, c->wbuf);
    l->ack_sent = l->recv_seq;
    c->lim.ping = 0;
  }
  uint64_t p = l->rw;
  nb_spike_t s;
  while (p < l->rt && off < (size_t)NB__WFRAMES * NB_FRAME_SPIKE &&
         niov + 2 < NB__WIOV && total + off - run < NB__WBYTES) {
    entry_t *e = &l->ring[p & l->mask];
    nb_id_t to = (nb_id_t)l->tremote[e->target];
    if (!e->plen && !e->by_ref &&
        nb_frame_encode_to(e->spike, to, c->wbuf + off) == NB_FRAME_SPIKE) {
      /* A plain spike (the common case): framed straight from the queue. */
      off += NB_FRAME_SPIKE;
      if (e->written) l->st.resent++;
      e->written = 1;
      p++;
      continue;
    }
    memcpy(&s, e->spike, NB_SPIKE_SIZE);
    s.target = to;
    if (e->by_ref && l->shared) {
      /* The peer maps the same arena: the ref alone. */
      nb_frame_encode_bare_ref(&s, c->wbuf + off);
      off += NB_FRAME_SPIKE;
      l->st.refs_out++;
    } else if (e->plen) {
      const void *bytes = e->payload;
      if (e->by_ref) {
        nb_arena_ref_t ref;
        int rc = nb_spike_get_ref(&s, &ref);
        if (rc == 0) rc = nb_arena_read(l->node->o.arena, &ref, &bytes);
        if (rc != 0) {
          link_squeeze(l, p, rc);
          continue;
        }
      }
      nb_frame_encode_head(&s, e->plen, c->wbuf + off);
      off += NB_FRAME_SPIKE;
      /* The head run so far, then the payload straight from the queue (or
       * the arena). */
      c->iov[niov++] = uv_buf_init((char *)c->wbuf + run, (unsigned)(off - run));
      c->iov[niov++] = uv_buf_init((char *)bytes, e->plen);
      total += (off - run) + e->plen;
      run = off;
    } else {
      /* A reference to an empty payload: its head alone. */
      nb_frame_encode_head(&s, 0, c->wbuf + off);
      off += NB_FRAME_SPIKE;
    }
    if (e->written) l->st.resent++;
    e->written = 1;
    p++;
  }
  if (off > run) {
    c->iov[niov++] = uv_buf_init((char *)c->wbuf + run, (unsigned)(off - run));
    total += off - run;
  }
  if (!niov) return;
  l->rw = p;
  if (!l->probe_ns && p > l->rh) {
    l->probe_seq = l->acked_seq + (p - l->rh);
    l->probe_ns = nb_clock_ns();
  }
  if (nb_link_auth_encrypted(c->auth)) {
    /* One sealed buffer for the whole write (uv_buf_t is struct iovec on
     * Unix, as libuv documents). */
    size_t need = nb_link_auth_sealed_size(total);
    if (need > c->scap) {
      uint8_t *sb = realloc(c->sbuf, need);
      if (!sb) {
        conn_lost(c, NB_LINK_LOG_ERROR, 1, "out of memory to encrypt");
        return;
      }
      c->sbuf = sb;
      c->scap = need;
    }
    total = (size_t)nb_link_auth_seal(c->auth, (const struct iovec *)c->iov,
                                      niov, c->sbuf);
    c->iov[0] = uv_buf_init((char *)c->sbuf, (unsigned)total);
    niov = 1;
  }
  int rc = uv_write(&c->wreq, (uv_stream_t *)&c->tcp, c->iov, (unsigned)niov,
                    on_write);
  if (rc < 0) {
    conn_lost(c, NB_LINK_LOG_WARN, 0, "write failed: %s", uv_strerror(rc));
    return;
  }
  c->writing = 1;
  c->lim.last_tx_ms = loop_now(l->node);
  l->st.bytes_out += total;
}

/* ---- limits (nb_link_limits_t) ---- */

/* Closes conn for reaching a limit of kind (a line per address and kind,
 * see nb__lim_log_ok; other connections log as conn_lost does); returns
 * nothing. */
static void conn_limit(conn_t *c, uint32_t kind, const char *fmt, ...) {
  if (c->state == NB__C_CLOSING) return;
  char why[400], who[400], note[96];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(why, sizeof why, fmt, ap);
  va_end(ap);
  if (c->lim.ip[0]) {
    uint64_t held = 0;
    if (nb__lim_log_ok(&c->node->lim, c->lim.ip, kind, loop_now(c->node),
                       &held))
      node_log(c->node, NB_LINK_LOG_WARN, "%s: %s: connection closed (logged "
               "once a minute per address)%s",
               peer_label(c, who, sizeof who), why,
               lim_note(held, note, sizeof note));
    c->lim.quiet = 1;
  }
  conn_lost(c, NB_LINK_LOG_WARN, 1, "%s", why);
}

/* Returns 1 when conn is a caller still in its handshake, else 0. */
static int conn_pending(const conn_t *c) {
  return !c->outbound && !c->link && c->state != NB__C_CLOSING;
}

/* Counts the callers other than self: *pending (in their handshake),
 * *pending_ip and *bound_ip (from address ip); returns the oldest pending
 * one, and in *oldest_ip the oldest pending one from ip (NULL when none). */
static conn_t *callers_count(nb_link_node_t *n, const conn_t *self,
                             const char *ip, unsigned *pending,
                             unsigned *pending_ip, unsigned *bound_ip,
                             conn_t **oldest_ip) {
  conn_t *oldest = NULL;
  *pending = *pending_ip = *bound_ip = 0;
  *oldest_ip = NULL;
  for (conn_t *o = n->conns; o; o = o->next) {
    if (o == self || o->outbound || o->state == NB__C_CLOSING) continue;
    int same = strcmp(o->lim.ip, ip) == 0;
    if (o->link) {
      *bound_ip += (unsigned)same;
      continue;
    }
    (*pending)++;
    if (!oldest || o->opened_ms <= oldest->opened_ms) oldest = o;
    if (same) {
      (*pending_ip)++;
      if (!*oldest_ip || o->opened_ms <= (*oldest_ip)->opened_ms)
        *oldest_ip = o;
    }
  }
  return oldest;
}

/* Applies the caller limits to the just accepted conn c: closes the
 * oldest caller in its handshake (of c's address, or of all) to make room,
 * or c itself when its address holds too many links or descriptors run
 * out; returns 1 when c was closed, else 0. */
static int caller_admit(conn_t *c) {
  nb_link_node_t *n = c->node;
  const nb_link_limits_t *o = &n->lim.o;
  if (n->lim.spare_fd < 0) {
    /* The reserve descriptor was given up so this accept could succeed:
     * the caller is refused and the reserve taken again. */
    conn_limit(c, NB__LIM_FDS, "refused: the process ran out of file "
               "descriptors");
    nb__lim_spare_take(&n->lim);
    return 1;
  }
  unsigned pending, pending_ip, bound_ip;
  conn_t *old_ip, *old = callers_count(n, c, c->lim.ip, &pending, &pending_ip,
                                       &bound_ip, &old_ip);
  uv_os_fd_t fd = -1;
  if (uv_fileno((uv_handle_t *)&c->tcp, &fd) == 0 &&
      nb__lim_fd_tight(&n->lim, (int)fd)) {
    /* Descriptors run short: a silent caller gives its own up first. */
    conn_t *v = old_ip ? old_ip : old;
    if (!v) {
      conn_limit(c, NB__LIM_FDS, "refused: descriptor %d is close to the "
                 "limit of %d (the rest is kept for established links)",
                 (int)fd, n->lim.fd_limit);
      return 1;
    }
    conn_limit(v, NB__LIM_FDS, "closed in its handshake: descriptors run "
               "short (%d of %d in use)", (int)fd, n->lim.fd_limit);
  }
  if (bound_ip >= o->links_per_addr) {
    conn_limit(c, NB__LIM_LINKS_ADDR, "refused: %u connections from this "
               "address are up (link_limits.links_per_addr)", bound_ip);
    return 1;
  }
  if (old_ip && pending_ip >= o->pending_per_addr)
    conn_limit(old_ip, NB__LIM_PENDING_ADDR, "the oldest of %u callers from "
               "this address in their handshake (link_limits."
               "pending_per_addr), closed for a new one", pending_ip);
  else if (old && pending >= o->max_pending)
    conn_limit(old, NB__LIM_PENDING, "the oldest of %u callers in their "
               "handshake (link_limits.max_pending), closed for a new one",
               pending);
  return 0;
}

/* Checks that caller conn, a cortex without a link yet, may have one;
 * returns 0, or 1 when conn was closed (too many links). */
static int caller_refused(conn_t *c, const char *cortex) {
  nb_link_node_t *n = c->node;
  const nb_link_limits_t *o = &n->lim.o;
  unsigned pending, pending_ip, bound_ip;
  conn_t *old_ip;
  callers_count(n, c, c->lim.ip, &pending, &pending_ip, &bound_ip, &old_ip);
  if (n->lim.inbound >= o->max_links) {
    conn_limit(c, NB__LIM_LINKS, "refused cortex '%s': %u links for peers "
               "that called in exist (link_limits.max_links)", cortex,
               n->lim.inbound);
    return 1;
  }
  if (c->lim.ip[0] && bound_ip >= o->links_per_addr) {
    conn_limit(c, NB__LIM_LINKS_ADDR, "refused cortex '%s': %u connections "
               "from this address are up (link_limits.links_per_addr)",
               cortex, bound_ip);
    return 1;
  }
  return 0;
}

/* Returns 1 when l is a caller's link that never carried a spike either
 * way and holds nothing, so forgetting it loses nothing, else 0. */
static int link_disposable(const nb_link_t *l) {
  return l->counted && !l->pinned && !l->conn && !l->ntargets &&
         !l->st.sent && !l->st.received && !l->st.rejected && !l->recv_seq &&
         l->rt == l->rh && !l->in_doubt && !l->closing;
}

/* Frees the links marked for reaping that are still disposable (a flood
 * of one-shot handshakes does not pile up links); returns nothing. */
static void links_reap(nb_link_node_t *n) {
  for (size_t i = 0; i < n->nlinks;) {
    nb_link_t *l = n->links[i];
    if (!l->reap || !link_disposable(l)) {
      l->reap = 0;
      i++;
      continue;
    }
    if (n->o.on_event) n->o.on_event(n->o.ud, l, NB_LINK_GONE);
    memmove(&n->links[i], &n->links[i + 1],
            (n->nlinks - i - 1) * sizeof *n->links);
    n->nlinks--;
    n->lim.inbound--;
    l->closing = 1;
    uv_timer_stop(&l->timer);
    uv_close((uv_handle_t *)&l->timer, link_closed);
  }
}

/* Counts conn's receive buffers in the node's rx_held, starts or ends the
 * clock of its partial frame, and closes the connections with the oldest
 * partial frames while the node holds more than rx_bytes; returns
 * nothing. */
static void rx_account(conn_t *c) {
  nb_link_node_t *n = c->node;
  if (c->state == NB__C_CLOSING) return;
  uint64_t held = (uint64_t)c->rx.hcap + c->rx.dec.payload_cap;
  n->lim.rx_held = n->lim.rx_held - c->lim.held + held;
  c->lim.held = held;
  if (!nb_link_rx_partial(&c->rx)) {
    c->lim.partial_ms = 0;
  } else if (!c->lim.partial_ms || c->lim.partial_frame != c->rx.frames) {
    /* The clock runs from the last complete frame: a stream whose reads
     * end mid-frame keeps completing frames and never times out. */
    c->lim.partial_ms = loop_now(n);
    c->lim.partial_frame = c->rx.frames;
  }
  while (n->lim.rx_held > n->lim.o.rx_bytes) {
    conn_t *v = NULL;
    for (conn_t *o = n->conns; o; o = o->next)
      if (o->state != NB__C_CLOSING && o->lim.partial_ms && o->lim.held &&
          (!v || o->lim.partial_ms < v->lim.partial_ms))
        v = o;
    if (!v) break;
    conn_limit(v, NB__LIM_RX, "its partial frame (begun %llu ms ago) is the "
               "oldest while partial frames hold over %llu bytes "
               "(link_limits.rx_buffer)",
               (unsigned long long)(loop_now(n) - v->lim.partial_ms),
               (unsigned long long)n->lim.o.rx_bytes);
  }
}

/* Gives back the payload buffer of a connection between frames when it
 * grew past 64 KiB (one large frame must not pin a megabyte per link);
 * returns nothing. */
static void rx_trim(conn_t *c) {
  nb_frame_decoder_t *d = &c->rx.dec;
  if (c->has_pending || d->have || d->payload_cap <= (64u << 10)) return;
  free(d->payload);
  d->payload = NULL;
  d->payload_cap = 0;
  rx_account(c);
}

/* Runs the timeouts of one connection at now: handshake, partial frame,
 * idle; asks for a keepalive and trims buffers. Returns nothing. */
static void conn_sweep(conn_t *c, uint64_t now) {
  nb_link_node_t *n = c->node;
  const nb_link_limits_t *o = &n->lim.o;
  uint64_t hello = n->o.hello_timeout_ms;
  if ((c->state == NB__C_HELLO || c->state == NB__C_CONNECTING) &&
      now - c->opened_ms >= hello) {
    if (c->outbound)
      conn_lost(c, NB_LINK_LOG_ERROR, 1, "no handshake within %llu ms",
                (unsigned long long)hello);
    else
      conn_limit(c, NB__LIM_HANDSHAKE, "no handshake within %llu ms",
                 (unsigned long long)hello);
    return;
  }
  if (c->paused) {
    /* Not reading for a full receiver: neither idle nor slow. */
    c->lim.last_rx_ms = now;
    if (c->lim.partial_ms) c->lim.partial_ms = now;
  }
  if (c->lim.partial_ms && now - c->lim.partial_ms >= o->frame_timeout_ms) {
    conn_limit(c, NB__LIM_FRAME, "frame %llu incomplete for %llu ms "
               "(link_limits.frame_timeout)",
               (unsigned long long)c->rx.frames + 1,
               (unsigned long long)(now - c->lim.partial_ms));
    return;
  }
  if (c->state != NB__C_UP) return;
  if (now - c->lim.last_rx_ms >= o->idle_timeout_ms) {
    conn_limit(c, NB__LIM_IDLE, "nothing received for %llu ms, keepalives "
               "included (link_limits.idle_timeout)",
               (unsigned long long)(now - c->lim.last_rx_ms));
    return;
  }
  if (now - c->lim.last_tx_ms >= o->keepalive_ms && !c->writing) {
    c->lim.ping = 1;
    kick(n);
  }
  rx_trim(c);
}

/* Handles an accept that failed with status (from_accept: in the listen
 * callback; else the sweep found descriptors gone): logged once a minute;
 * when descriptors ran out, one is freed (in the callback the reserve, so
 * the waiting caller is taken and refused instead of the accept failing
 * again at once; else, or without it, the oldest caller in its
 * handshake). Returns nothing. */
static void accept_failed(nb_link_node_t *n, int status, int from_accept) {
  int fds = status == UV_EMFILE || status == UV_ENFILE;
  uint64_t held = 0;
  char note[96];
  if (nb__lim_log_ok(&n->lim, "*", fds ? NB__LIM_FDS : NB__LIM_ACCEPT,
                     loop_now(n), &held))
    node_log(n, NB_LINK_LOG_WARN, "%s: %s%s (logged once a minute)%s",
             fds ? "out of file descriptors" : "accept failed",
             uv_strerror(status),
             fds ? "; callers are refused until some are free, "
                   "established links go on" : "",
             lim_note(held, note, sizeof note));
  if (!fds || (from_accept && nb__lim_spare_release(&n->lim))) return;
  conn_t *old = NULL;
  for (conn_t *o = n->conns; o; o = o->next)
    if (conn_pending(o) && (!old || o->opened_ms <= old->opened_ms)) old = o;
  if (old)
    conn_limit(old, NB__LIM_FDS, "closed in its handshake: the process ran "
               "out of file descriptors");
}

/* Once per loop iteration while there is work: resumed connections first,
 * then one write per idle link. */
static void prepare_cb(uv_prepare_t *h) {
  nb_link_node_t *n = h->data;
  n->prep_active = 0;
  uv_prepare_stop(h);
  for (conn_t *c = n->conns; c; c = c->next)
    if (c->want_process && c->state != NB__C_CLOSING) {
      c->want_process = 0;
      conn_process(c);
      rx_account(c);
    }
  links_reap(n);
  for (size_t i = 0; i < n->nlinks; i++) link_flush(n->links[i]);
}

/* Runs every connection's timeouts (nb__lim_sweep_ms): a caller silent
 * in its handshake, a dialled peer that accepted but never answered
 * (redialled), a frame left incomplete, a link gone quiet. */
static void sweep_cb(uv_timer_t *t) {
  nb_link_node_t *n = t->data;
  uint64_t now = loop_now(n);
  for (conn_t *c = n->conns; c; c = c->next)
    if (c->state != NB__C_CLOSING) conn_sweep(c, now);
  /* Out of descriptors, libuv closes each caller at accept (its own
   * reserve descriptor) and says nothing: found out here, told once a
   * minute, and a silent caller gives its descriptor up. */
  if (n->listening && nb__lim_fds_out(&n->lim)) accept_failed(n, UV_EMFILE, 0);
}

/* ---- accepting ---- */

static void on_connection(uv_stream_t *server, int status) {
  nb_link_node_t *n = server->data;
  if (status < 0) {
    accept_failed(n, status, 1);
    return;
  }
  conn_t *c = conn_new(n, 0);
  if (!c) {
    node_log(n, NB_LINK_LOG_ERROR, "out of memory for a new connection");
    return;
  }
  snprintf(c->addr, sizeof c->addr, "?");
  c->state = NB__C_HELLO;
  if (n->ring && nb_link_auth_acceptor(&c->auth, n->cortex, n->ring) != 0) {
    conn_lost(c, NB_LINK_LOG_ERROR, 1, "out of memory for a new connection");
    return;
  }
  if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
    conn_lost(c, NB_LINK_LOG_WARN, 0, "accept failed");
    return;
  }
  struct sockaddr_storage ss;
  int len = sizeof ss;
  if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) == 0) {
    char ip[64] = "?";
    int port = 0;
    if (ss.ss_family == AF_INET6) {
      uv_ip6_name((struct sockaddr_in6 *)&ss, ip, sizeof ip);
      port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
      snprintf(c->addr, sizeof c->addr, "[%s]:%d", ip, port);
    } else {
      uv_ip4_name((struct sockaddr_in *)&ss, ip, sizeof ip);
      port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
      snprintf(c->addr, sizeof c->addr, "%s:%d", ip, port);
    }
    snprintf(c->lim.ip, sizeof c->lim.ip, "%s", ip);
  }
  if (!c->lim.ip[0]) snprintf(c->lim.ip, sizeof c->lim.ip, "?");
  if (caller_admit(c)) return;
  uv_tcp_nodelay(&c->tcp, 1);
  uv_tcp_keepalive(&c->tcp, 1, 30);
  if (uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb) == 0)
    c->reading = 1;
}

/* ---- public: node ---- */

/* Fills n's arena identity from the file at path (device, inode), the
 * arena's capacity and this host's boot id; leaves has_aid 0 (no sharing,
 * payload bytes always travel) when one of them cannot be read. */
static void arena_identity(nb_link_node_t *n, const char *path) {
  struct stat st;
  if (stat(path, &st) != 0) return;
  n->aid.dev = (uint64_t)st.st_dev;
  n->aid.ino = (uint64_t)st.st_ino;
  n->aid.capacity = nb_arena_capacity(n->o.arena);
  FILE *f = fopen("/proc/sys/kernel/random/boot_id", "r");
  if (!f) return;
  char buf[NB_LINK_HOST_MAX + 2] = {0};
  size_t got = fread(buf, 1, NB_LINK_HOST_MAX, f);
  fclose(f);
  while (got && (buf[got - 1] == '\n' || buf[got - 1] == ' ')) buf[--got] = 0;
  for (size_t i = 0; i < got; i++)
    if (buf[i] < 0x21 || buf[i] > 0x7e) return;
  if (!got) return;
  memcpy(n->aid.host, buf, got + 1);
  n->has_aid = 1;
}

/* Returns a random nonzero 64-bit incarnation. */
static uint64_t new_incarnation(const void *salt) {
  uint64_t v = 0;
  if (uv_random(NULL, NULL, &v, sizeof v, 0, NULL) != 0 || v == 0)
    v = uv_hrtime() ^ ((uint64_t)(uintptr_t)salt << 16) ^
        ((uint64_t)uv_os_getpid() << 40);
  return v ? v : 1;
}

int nb_link_node_new(nb_link_node_t **out, uv_loop_t *loop,
                     const nb_link_node_opts_t *opts) {
  if (!out) return NB_EINVAL;
  *out = NULL;
  if (!loop || !opts || !opts->on_spike || !name_valid(opts->cortex))
    return NB_EINVAL;
  nb_link_node_t *n = calloc(1, sizeof *n);
  if (!n) return NB_ENOMEM;
  n->loop = loop;
  n->o = *opts;
  snprintf(n->cortex, sizeof n->cortex, "%s", opts->cortex);
  n->o.cortex = n->cortex;
  if (!n->o.max_payload) n->o.max_payload = NB_FRAME_PAYLOAD_DEFAULT_MAX;
  if (!n->o.hello_timeout_ms)
    n->o.hello_timeout_ms = NB_LINK_HANDSHAKE_TIMEOUT_MS;
  n->inc = new_incarnation(n);
  n->o.secret = NULL; /* derived into the keyring, not kept */
  n->o.allow = NULL;
  if (opts->secret || opts->nallow) {
    int rc = nb_link_keyring_new(&n->ring, opts->encrypt);
    if (rc == 0 && opts->secret)
      rc = nb_link_keyring_set_default(n->ring, opts->secret,
                                       opts->secret_len);
    for (uint32_t i = 0; rc == 0 && i < opts->nallow; i++)
      rc = nb_link_keyring_allow(n->ring, opts->allow[i].cortex,
                                 opts->allow[i].secret,
                                 opts->allow[i].secret_len);
    if (rc != 0) {
      nb_link_keyring_free(n->ring);
      free(n);
      return rc;
    }
  }
  if (n->o.arena && nb_arena_writer_new(&n->writer, n->o.arena) != 0) {
    nb_link_keyring_free(n->ring);
    free(n);
    return NB_ENOMEM;
  }
  if (n->writer) {
    /* Why: two processes exchanging large payloads could each fill its
     * own arena with spikes waiting for the link (whose queue waits for
     * the peer's acks) and then neither could read the other's payloads:
     * a deadlock. Receiving gets a sixteenth of the segments (at least 2)
     * that local producers leave free. */
    size_t segs = nb_arena_capacity(n->o.arena) /
                  nb_arena_segment_size(n->o.arena);
    size_t keep = segs / 16 > 2 ? segs / 16 : 2;
    if (keep <= segs / 4) nb_arena_writer_reserve(n->writer, (uint32_t)keep);
  }
  nb__lim_init(&n->lim, &opts->limits);
  n->o.limits = n->lim.o;
  if (n->o.arena && n->o.arena_path) arena_identity(n, n->o.arena_path);
  n->o.arena_path = NULL; /* not kept: the caller owns the string */
  uv_prepare_init(loop, &n->prep);
  n->prep.data = n;
  uv_timer_init(loop, &n->sweep);
  n->sweep.data = n;
  uint64_t every = nb__lim_sweep_ms(&n->lim, n->o.hello_timeout_ms);
  uv_timer_start(&n->sweep, sweep_cb, every, every);
  uv_unref((uv_handle_t *)&n->sweep); /* never keeps the loop alive */
  n->handles = 2;
  *out = n;
  return 0;
}

void nb_link_node_close(nb_link_node_t *n, void (*done)(void *ud), void *ud) {
  if (!n || n->closing) return;
  n->done = done;
  n->done_ud = ud;
  n->closing = 1;
  for (conn_t *c = n->conns; c; c = c->next)
    conn_lost(c, NB_LINK_LOG_INFO, 0, "node closing");
  for (size_t i = 0; i < n->nlinks; i++) {
    nb_link_t *l = n->links[i];
    l->closing = 1;
    l->st.lost += (l->rt - l->rh) + l->in_doubt;
    uv_close((uv_handle_t *)&l->timer, link_closed);
  }
  n->nlinks = 0;
  if (n->listening) uv_close((uv_handle_t *)&n->server, handle_closed);
  uv_close((uv_handle_t *)&n->prep, handle_closed);
  uv_close((uv_handle_t *)&n->sweep, handle_closed);
}

int nb_link_node_expose(nb_link_node_t *n, const char *name, nb_id_t id) {
  if (!n || !name_valid(name) || id >= NB_LINK_CTRL_ID) return NB_EINVAL;
  if (n->exp_bits[id >> 3] & (1u << (id & 7))) return NB_EEXIST;
  for (uint32_t i = 0; i < n->nexposed; i++)
    if (strcmp(n->exposed[i].name, name) == 0) return NB_EEXIST;
  if (n->nexposed == n->expcap) {
    uint32_t cap = n->expcap ? n->expcap * 2 : 16;
    nb_link_name_t *e = realloc(n->exposed, cap * sizeof *e);
    if (!e) return NB_ENOMEM;
    n->exposed = e;
    n->expcap = cap;
  }
  char *copy = strdup(name);
  if (!copy) return NB_ENOMEM;
  n->exposed[n->nexposed].name = copy;
  n->exposed[n->nexposed].id = id;
  n->nexposed++;
  n->exp_bits[id >> 3] |= (uint8_t)(1u << (id & 7));
  return 0;
}

/* Resolves url into *addr; returns 0 or NB_EINVAL. */
static int url_addr(const char *url, struct sockaddr_storage *addr) {
  char host[64];
  int port;
  if (nb_link_parse_url(url, host, sizeof host, &port, NULL) != 0)
    return NB_EINVAL;
  memset(addr, 0, sizeof *addr);
  if (uv_ip4_addr(host, port, (struct sockaddr_in *)addr) == 0) return 0;
  if (uv_ip6_addr(host, port, (struct sockaddr_in6 *)addr) == 0) return 0;
  return NB_EINVAL;
}

int nb_link_node_listen(nb_link_node_t *n, const char *url) {
  if (!n || n->closing) return NB_EINVAL;
  if (n->listening) return NB_EEXIST;
  struct sockaddr_storage addr;
  if (url_addr(url, &addr) != 0) {
    node_log(n, NB_LINK_LOG_ERROR, "cannot listen on '%s': not tcp://IP:PORT",
            url ? url : "(null)");
    return NB_EINVAL;
  }
  uv_tcp_init(n->loop, &n->server);
  n->server.data = n;
  n->listening = 1;
  n->handles++;
  int rc = uv_tcp_bind(&n->server, (const struct sockaddr *)&addr, 0);
  if (rc == 0) rc = uv_listen((uv_stream_t *)&n->server, 128, on_connection);
  if (rc != 0) {
    node_log(n, NB_LINK_LOG_ERROR, "cannot listen on %s: %s", url,
            uv_strerror(rc));
    n->listening = 0;
    uv_close((uv_handle_t *)&n->server, handle_closed);
    return NB_EIO;
  }
  struct sockaddr_storage ss;
  int len = sizeof ss;
  uv_tcp_getsockname(&n->server, (struct sockaddr *)&ss, &len);
  n->port = ntohs(ss.ss_family == AF_INET6
                      ? ((struct sockaddr_in6 *)&ss)->sin6_port
                      : ((struct sockaddr_in *)&ss)->sin_port);
  node_log(n, NB_LINK_LOG_INFO, "listening on %s (port %d)", url, n->port);
  return 0;
}

int nb_link_node_port(const nb_link_node_t *n) {
  return n && n->listening ? n->port : 0;
}

uint64_t nb_link_node_incarnation(const nb_link_node_t *n) { return n->inc; }

size_t nb__link_node_conns(const nb_link_node_t *n) {
  size_t k = 0;
  for (const conn_t *c = n->conns; c; c = c->next) k++;
  return k;
}

int nb_link_connect(nb_link_node_t *n, const char *url,
                    const nb_link_opts_t *opts, nb_link_t **out) {
  if (out) *out = NULL;
  if (!n || n->closing) return NB_EINVAL;
  struct sockaddr_storage addr;
  if (url_addr(url, &addr) != 0 || strlen(url) >= 128) return NB_EINVAL;
  nb_link_key_t key;
  memset(&key, 0, sizeof key);
  int has_key = 0;
  if (opts && opts->secret) {
    if (nb_link_key_derive(&key, opts->secret, opts->secret_len) != 0)
      return NB_EINVAL;
    has_key = 1;
  } else {
    has_key = nb_link_keyring_default(n->ring, &key);
  }
  int encrypt = (opts && opts->encrypt) || nb_link_keyring_encrypt(n->ring);
  if (encrypt && !has_key) return NB_EINVAL;
  nb_link_t *l = link_new(n, opts, 1);
  if (!l) return NB_ENOMEM;
  l->opts.secret = NULL; /* derived into key, not kept */
  l->key = key;
  l->has_key = has_key;
  l->encrypt = encrypt;
  nb_link_key_wipe(&key);
  snprintf(l->url, sizeof l->url, "%s", url);
  l->addr = addr;
  link_dial(l);
  if (out) *out = l;
  return 0;
}

int nb_link_expect(nb_link_node_t *n, const char *cortex,
                   const nb_link_opts_t *opts, nb_link_t **out) {
  if (out) *out = NULL;
  if (!n || n->closing || !name_valid(cortex)) return NB_EINVAL;
  nb_link_t *l = nb_link_find(n, cortex);
  if (l && l->outbound) return NB_EINVAL;
  if (!l) {
    l = link_new(n, opts ? opts : &n->o.accept, 0);
    if (!l) return NB_ENOMEM;
    snprintf(l->cortex, sizeof l->cortex, "%s", cortex);
  }
  l->pinned = 1;
  if (out) *out = l;
  return 0;
}

nb_link_t *nb_link_find(const nb_link_node_t *n, const char *cortex) {
  if (!cortex || !cortex[0]) return NULL;
  for (size_t i = 0; i < n->nlinks; i++)
    if (strcmp(n->links[i]->cortex, cortex) == 0) return n->links[i];
  return NULL;
}

nb_link_t *nb_link_at(const nb_link_node_t *n, size_t i) {
  return i < n->nlinks ? n->links[i] : NULL;
}

/* ---- public: link ---- */

int nb_link_target(nb_link_t *l, const char *name) {
  if (!l || !name_valid(name)) return NB_EINVAL;
  int h = target_find(l, name);
  if (h >= 0) return h;
  int32_t remote = l->up ? peer_id(l, name) : -1;
  if (l->up && remote < 0) return NB_ENOENT;
  if (l->ntargets >= NB__MAX_TARGETS) return NB_ELIMIT;
  if (l->ntargets == l->tcap) {
    uint32_t cap = l->tcap ? l->tcap * 2 : 16;
    char **tn = realloc(l->tnames, cap * sizeof *tn);
    if (!tn) return NB_ENOMEM;
    l->tnames = tn;
    int32_t *tr = realloc(l->tremote, cap * sizeof *tr);
    if (!tr) return NB_ENOMEM;
    l->tremote = tr;
    l->tcap = cap;
  }
  if ((l->ntargets + 1) * 2 > l->thcap) {
    /* Keep the hash at most half full. */
    uint32_t cap = l->thcap ? l->thcap * 2 : 32;
    uint32_t *tab = calloc(cap, sizeof *tab);
    if (!tab) return NB_ENOMEM;
    for (uint32_t i = 0; i < l->ntargets; i++)
      thash_put(tab, cap, l->tnames[i], i);
    free(l->thash);
    l->thash = tab;
    l->thcap = cap;
  }
  char *copy = strdup(name);
  if (!copy) return NB_ENOMEM;
  uint32_t id = l->ntargets++;
  l->tnames[id] = copy;
  l->tremote[id] = remote;
  thash_put(l->thash, l->thcap, copy, id);
  return (int)id;
}

/* Fills queue entry e (the one at the ring's tail, its payload or
 * reference already set) with s for target and a payload of len bytes,
 * and appends it; returns nothing. */
static inline void entry_fill(nb_link_t *l, entry_t *e, const nb_spike_t *s,
                              int target, size_t len) {
  memcpy(e->spike, s, NB_SPIKE_SIZE);
  e->plen = (uint32_t)len;
  e->target = (uint16_t)target;
  e->written = 0;
  l->rt++;
  l->st.sent++;
}

int nb_link_send(nb_link_t *l, int target, const nb_spike_t *s,
                 const void *payload, size_t len) {
  if (!l || !s) return NB_EINVAL;
  if (l->closing) return NB_ECLOSED;
  if (target < 0 || (uint32_t)target >= l->ntargets) return NB_EINVAL;
  if (l->up && l->tremote[target] < 0) return NB_ENOENT;
  if (nb_spike_check(nb_spike_as_bytes(s)) != 0) return NB_EINVAL;
  int by_ref = 0;
  nb_arena_ref_t ref;
  if (nb_spike_is_ref(s)) {
    if (nb_spike_get_ref(s, &ref) != 0) return NB_EINVAL;
    if (!payload) {
      if (!l->node->o.arena) return NB_EINVAL;
      int rc = nb_arena_read(l->node->o.arena, &ref, &payload);
      if (rc != 0) return rc;
      len = ref.len;
      /* A file arena keeps the bytes: queue the ref, read them when
       * written (or send the ref alone to a peer sharing the file). */
      by_ref = l->node->has_aid;
    }
    if (len != ref.len) return NB_EINVAL;
    if (by_ref) {
      if (l->up && !l->shared && len > l->peer_max_payload) return NB_ETOOBIG;
    } else {
      uint32_t max = l->up ? l->peer_max_payload : l->node->o.max_payload;
      if (len > max || len > l->opts.queue_bytes) return NB_ETOOBIG;
    }
  } else if (len != 0) {
    return NB_EINVAL;
  }
  if (l->rt - l->rh >= l->opts.queue_spikes ||
      (!by_ref && l->qbytes + len > l->opts.queue_bytes)) {
    l->st.full++;
    l->was_full = 1;
    return NB_EFULL;
  }
  if (l->rt - l->rh > l->mask && ring_grow(l) != 0) return NB_ENOMEM;
  entry_t *e = &l->ring[l->rt & l->mask];
  e->by_ref = 0;
  if (by_ref) {
    /* The queue's own reference, dropped when the entry is cleared. */
    int rc = nb_arena_retain(l->node->o.arena, &ref, 1);
    if (rc < 0) return rc;
    e->payload = NULL;
    e->by_ref = 1;
  } else if (len) {
    e->payload = malloc(len);
    if (!e->payload) return NB_ENOMEM;
    memcpy(e->payload, payload, len);
    l->qbytes += len;
  }
  entry_fill(l, e, s, target, len);
  if (l->up) kick(l->node);
  return 0;
}

size_t nb_link_send_run(nb_link_t *l, int target, const nb_spike_t *s,
                        size_t n) {
  if (!l || !s || l->closing) return 0;
  if (target < 0 || (uint32_t)target >= l->ntargets) return 0;
  if (l->up && l->tremote[target] < 0) return 0;
  /* nb_link_send's checks for an inline spike, in the same order; the
   * first spike that would take another branch (a ref, a bad spike, a
   * full queue, a ring that must grow) ends the run, and nb_link_send
   * then takes it or says why not. */
  if (l->qbytes > l->opts.queue_bytes) return 0;
  size_t i = 0;
  for (; i < n; i++) {
    if (nb_spike_is_ref(&s[i]) || nb_spike_check(nb_spike_as_bytes(&s[i])) != 0)
      break;
    if (l->rt - l->rh >= l->opts.queue_spikes || l->rt - l->rh > l->mask) break;
    entry_t *e = &l->ring[l->rt & l->mask];
    e->by_ref = 0;
    entry_fill(l, e, &s[i], target, 0);
  }
  if (i && l->up) kick(l->node);
  return i;
}

int nb_link_send_name(nb_link_t *l, const char *name, const nb_spike_t *s,
                      const void *payload, size_t len) {
  int h = nb_link_target(l, name);
  return h < 0 ? h : nb_link_send(l, h, s, payload, len);
}

int nb_link_send_id(nb_link_t *l, nb_id_t remote_id, const nb_spike_t *s,
                    const void *payload, size_t len) {
  const char *name = l && l->up ? nb_link_peer_neuron(l, remote_id) : NULL;
  if (!name) return NB_ENOENT;
  return nb_link_send_name(l, name, s, payload, len);
}

size_t nb_link_room(const nb_link_t *l) {
  if (!l || l->closing || l->qbytes >= l->opts.queue_bytes) return 0;
  return (size_t)(l->opts.queue_spikes - (l->rt - l->rh));
}

void nb_link_resume(nb_link_t *l) {
  if (!l || !l->conn || !l->conn->paused) return;
  l->conn->paused = 0;
  l->conn->want_process = 1;
  kick(l->node);
}

int nb_link_is_up(const nb_link_t *l) { return l && l->up; }

int nb_link_is_paused(const nb_link_t *l) {
  return l && l->conn && l->conn->paused;
}

int nb_link_is_shared(const nb_link_t *l) { return l && l->up && l->shared; }

const char *nb_link_peer(const nb_link_t *l) {
  return l->cortex[0] ? l->cortex : l->url;
}

const char *nb_link_peer_neuron(const nb_link_t *l, nb_id_t remote_id) {
  size_t lo = 0, hi = l->peer_by_id ? l->peer.count : 0;
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    nb_id_t v = l->peer_by_id[mid].id;
    if (v == remote_id) return l->peer_by_id[mid].name;
    if (v < remote_id) lo = mid + 1;
    else hi = mid;
  }
  return NULL;
}

int nb_link_resolve(const nb_link_t *l, const char *name) {
  if (!l || !l->up || !name) return NB_ENOENT;
  int32_t id = peer_id(l, name);
  return id < 0 ? NB_ENOENT : id;
}

nb_link_stats_t *nb_link_stats(const nb_link_t *l, nb_link_stats_t *out) {
  *out = l->st;
  out->queued = l->rt - l->rh;
  out->in_doubt = l->in_doubt;
  out->queue_bytes = l->qbytes;
  return out;
}

int nb_link_disconnect(nb_link_t *l) {
  if (!l || !l->conn) return NB_ECLOSED;
  conn_lost(l->conn, NB_LINK_LOG_INFO, 0, "disconnected by this node");
  return 0;
}

void nb_link_set_data(nb_link_t *l, void *data) { l->data = data; }

void *nb_link_data(const nb_link_t *l) { return l->data; }
