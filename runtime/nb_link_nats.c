/* nb_link_nats.c: NATS links (nb_link_nats.h). */
#include "nb_link_nats.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nats/nats.h>

#include "nb_clock.h"
#include "nb_err.h"
#include "nb_le_internal.h"
#include "nb_link_wire.h"

#define QUEUE_MAX 4096u      /* messages waiting for the loop */
#define BACKLOG_MAX 1024u    /* a paused peer's messages kept */
#define CARD_MAX (1u << 20)  /* bytes of one card */
#define NOT_EXPOSED 0xFFFDu  /* a target the peer no longer has */
#define LINKS_MAX 1024u      /* runtimes one runtime follows */

/* One NATS message of batched spikes, unacked until its last seq is. */
typedef struct batch_s {
  uint8_t *buf;
  size_t len, cap, head; /* head: the bytes of the message head */
  uint64_t first;        /* seq of its first spike */
  uint32_t count;
  uint16_t *handles;     /* each spike's target handle (for remapping) */
  uint32_t hcap;
  uint64_t pbytes;       /* payload bytes it holds */
  uint64_t sent_ns;      /* 0: not published yet */
  struct batch_s *next;
} batch_t;

struct nb_nats_link_s {
  nb_nats_node_t *node;
  char cortex[NB_LINK_NAME_MAX + 1];
  char subject[600];
  void *data;
  /* the peer's card */
  int up;
  uint64_t peer_inc, last_seen_ns;
  uint32_t peer_max_payload;
  /* The card, compact (a peer's card costs about its own size here): */
  uint8_t *cbody;          /* a copy of the card's body */
  uint32_t clen;
  uint32_t ndir;           /* its neurons */
  uint32_t *coff;          /* where neuron i starts in cbody */
  char **names;            /* neuron i's name (into nblob) */
  char *nblob;
  uint32_t *byid;          /* (id << 16 | i) of each neuron, sorted */
  /* targets this side addresses */
  char **tname;
  int *tid;                /* peer id, -1 not exposed */
  uint32_t ntarget, tcap;
  /* sending */
  uint64_t next_seq, acked, last_ack_ns;
  batch_t *bhead, *btail;
  uint64_t queued, qbytes;
  /* receiving: one sender incarnation at a time */
  uint64_t in_inc, expected;
  int need_ack, paused;
  natsMsg *cur;            /* a batch being delivered (paused inside it) */
  nb_nats_head_t cur_h;
  size_t cur_off;
  uint32_t cur_seen;
  natsMsg **backlog;
  uint32_t nback;
  nb_link_stats_t st;
  nb_nats_stats_t ns;
};

/* What libnats's callbacks hold: it outlives the node until the
 * connection's closed callback (its last one), so a callback that runs
 * while the node closes finds closing set rather than freed memory. */
typedef struct hub_s {
  pthread_mutex_t mu;
  int closing;             /* the node is gone or going: touch nothing */
  nb_nats_node_t *n;
} hub_t;

/* The open batch of region spikes for one path (one publish per loop
 * turn, or at batch_bytes). */
typedef struct rbatch_s {
  char subject[2048];
  char path[256];
  uint8_t *buf;
  size_t len, cap;
  uint32_t count;
} rbatch_t;

struct nb_nats_node_s {
  nb_nats_opts_t o;
  char *cortex, *url, *root, *inbox, *cards;
  uv_loop_t *loop;
  natsConnection *nc;
  natsOptions *nopts;
  natsSubscription *sub_in, *sub_cards;
  uint64_t inc;
  nb_arena_writer_t *writer;
  /* the card */
  uint8_t *card;
  size_t card_len;
  uint32_t card_count;
  uint8_t *exposed;        /* bits: ids this runtime exposes */
  /* the hand-off from libnats's threads, under hub->mu */
  hub_t *hub;
  natsMsg **q;
  uint32_t qn;
  uint64_t q_dropped, q_region_dropped;
  int reconnected, disconnected;
  uv_async_t async;
  uv_prepare_t prep;
  uv_timer_t timer;
  int handles_open;
  void (*done)(void *);
  void *done_ud;
  uint64_t last_announce_ns;
  uint64_t reconnects, malformed, dropped, region_out, region_dropped;
  uint64_t bad_logged;     /* malformed messages seen by handle() */
  uint64_t bad_cards;      /* malformed cards seen */
  int warned_links;        /* LINKS_MAX was logged */
  char **regs;             /* region subjects subscribed (every prefix of
                              every exposed neuron's regions) */
  natsSubscription **reg_subs;
  uint32_t nregs;
  rbatch_t *rb;            /* open region batches, one per path */
  uint32_t nrb;
  int started, down_logged;
  nb_nats_link_t **links;
  size_t nlinks, lcap;
  int resume;              /* a paused link asked to go on */
};

/* Logs one line naming the node; returns nothing. */
static void logf_(nb_nats_node_t *n, int info, const char *fmt, ...) {
  if (info && n->o.quiet) return;
  char buf[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  fprintf(stderr, "neuronbus nats [%s]: %s\n", n->cortex, buf);
  fflush(stderr);
}

/* Returns a malloc'd copy of s, or NULL for NULL (aborts without memory). */
static char *dupz(const char *s) {
  if (!s) return NULL;
  char *v = strdup(s);
  if (!v) abort();
  return v;
}

/* ------------------------------------------------------------------ */
/* libnats's threads: queue and wake                                   */

/* Message callback (a libnats thread): queues msg for the loop; returns
 * nothing. */
static void on_msg(natsConnection *nc, natsSubscription *sub, natsMsg *msg,
                   void *closure) {
  (void)nc; (void)sub;
  hub_t *h = closure;
  pthread_mutex_lock(&h->mu);
  nb_nats_node_t *n = h->n;
  if (h->closing || n->qn >= QUEUE_MAX) {
    /* Dropped: a batch is sent again (no ack came); the spikes of a region
     * message are not, so they are counted. */
    if (!h->closing) {
      n->q_dropped++;
      const uint8_t *p = (const uint8_t *)natsMsg_GetData(msg);
      if (natsMsg_GetDataLength(msg) > (int)NB_NATS_HEAD &&
          nb__get32(p) == NB_NATS_MAGIC && p[5] == NB_NATS_REGION)
        n->q_region_dropped += nb__get32(p + 32);
    }
    pthread_mutex_unlock(&h->mu);
    natsMsg_Destroy(msg);
    return;
  }
  n->q[n->qn++] = msg;
  if (n->qn == 1) uv_async_send(&n->async);
  pthread_mutex_unlock(&h->mu);
}

/* Disconnected / reconnected callbacks (libnats threads): flag and wake;
 * return nothing. */
static void on_disc(natsConnection *nc, void *closure) {
  (void)nc;
  hub_t *h = closure;
  pthread_mutex_lock(&h->mu);
  if (!h->closing) {
    h->n->disconnected++;
    uv_async_send(&h->n->async);
  }
  pthread_mutex_unlock(&h->mu);
}

/* See on_disc. */
static void on_reconn(natsConnection *nc, void *closure) {
  (void)nc;
  hub_t *h = closure;
  pthread_mutex_lock(&h->mu);
  if (!h->closing) {
    h->n->reconnected++;
    uv_async_send(&h->n->async);
  }
  pthread_mutex_unlock(&h->mu);
}

/* The connection's last callback (a libnats thread): frees the hub;
 * returns nothing. */
static void on_closed(natsConnection *nc, void *closure) {
  (void)nc;
  hub_t *h = closure;
  pthread_mutex_lock(&h->mu);
  int gone = h->closing;
  pthread_mutex_unlock(&h->mu);
  if (!gone) return; /* closed by the server for good: the node frees it */
  pthread_mutex_destroy(&h->mu);
  free(h);
}

/* ------------------------------------------------------------------ */
/* links                                                               */

/* Returns the link to cortex, or NULL. */
static nb_nats_link_t *find_link(const nb_nats_node_t *n, const char *cortex) {
  for (size_t i = 0; i < n->nlinks; i++)
    if (!strcmp(n->links[i]->cortex, cortex)) return n->links[i];
  return NULL;
}

nb_nats_link_t *nb_nats_link(nb_nats_node_t *n, const char *cortex) {
  nb_nats_link_t *l = find_link(n, cortex);
  if (l) return l;
  if (!cortex || !nb_link_name_ok(cortex, strlen(cortex))) return NULL;
  char tok[520];
  if (nb_nats_token(cortex, tok, sizeof tok) != 0) return NULL;
  l = calloc(1, sizeof *l);
  if (!l) abort();
  l->node = n;
  snprintf(l->cortex, sizeof l->cortex, "%s", cortex);
  snprintf(l->subject, sizeof l->subject, "%s.rt.%s", n->root, tok);
  l->next_seq = 1;
  l->ns.window_max = n->o.window;
  if (n->nlinks == n->lcap) {
    n->lcap = n->lcap ? n->lcap * 2 : 8;
    nb_nats_link_t **v = realloc(n->links, n->lcap * sizeof *v);
    if (!v) abort();
    n->links = v;
  }
  n->links[n->nlinks++] = l;
  return l;
}

nb_nats_link_t *nb_nats_link_at(const nb_nats_node_t *n, size_t i) {
  return i < n->nlinks ? n->links[i] : NULL;
}

const char *nb_nats_node_url(const nb_nats_node_t *n) { return n->url; }

int nb_nats_link_neuron(const nb_nats_link_t *l, size_t i,
                        nb_nats_neuron_t *out) {
  if (!l->up || i >= l->ndir) return 0;
  nb_nats_head_t h;
  memset(&h, 0, sizeof h);
  h.body = l->cbody;
  h.body_len = l->clen;
  h.count = l->ndir;
  size_t off = l->coff[i];
  uint32_t seen = 0;
  const char *why;
  return nb_nats_card_next(&h, &off, &seen, out, &why) == 1;
}

/* Returns the index in the card of the peer's neuron id, or -1. */
static int dir_of_id(const nb_nats_link_t *l, nb_id_t id) {
  uint32_t lo = 0, hi = l->ndir;
  while (lo < hi) {
    uint32_t mid = (lo + hi) / 2, k = l->byid[mid] >> 16;
    if (k == id) return (int)(l->byid[mid] & 0xFFFFu);
    if (k < id) lo = mid + 1;
    else hi = mid;
  }
  return -1;
}

/* Orders two (id << 16 | index) words; returns <0, 0 or >0. */
static int cmp_u32(const void *a, const void *b) {
  uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
  return x < y ? -1 : x > y;
}

/* Keeps the card h of l's peer (checked) in compact form; returns
 * nothing. */
static void dir_set(nb_nats_link_t *l, const nb_nats_head_t *h) {
  free(l->cbody); free(l->coff); free(l->names); free(l->nblob); free(l->byid);
  l->clen = h->body_len;
  l->ndir = h->count;
  l->cbody = malloc(l->clen ? l->clen : 1);
  l->coff = malloc((l->ndir + 1) * sizeof *l->coff);
  l->names = malloc((l->ndir + 1) * sizeof *l->names);
  l->nblob = malloc(l->clen + l->ndir + 1);
  l->byid = malloc((l->ndir + 1) * sizeof *l->byid);
  if (!l->cbody || !l->coff || !l->names || !l->nblob || !l->byid) abort();
  memcpy(l->cbody, h->body, l->clen);
  nb_nats_head_t c = *h;
  c.body = l->cbody;
  size_t off = 0, nb = 0;
  uint32_t seen = 0;
  const char *why;
  nb_nats_neuron_t *nn = malloc(sizeof *nn);
  if (!nn) abort();
  for (uint32_t i = 0; i < l->ndir; i++) {
    l->coff[i] = (uint32_t)off;
    if (nb_nats_card_next(&c, &off, &seen, nn, &why) != 1) abort(); /* checked */
    size_t k = strlen(nn->name) + 1;
    memcpy(l->nblob + nb, nn->name, k);
    l->names[i] = l->nblob + nb;
    nb += k;
    l->byid[i] = (uint32_t)nn->id << 16 | i;
  }
  free(nn);
  qsort(l->byid, l->ndir, sizeof *l->byid, cmp_u32);
}

/* Returns the peer's id for name in its card, or -1. */
static int dir_find(const nb_nats_link_t *l, const char *name) {
  for (uint32_t i = 0; i < l->ndir; i++)
    if (!strcmp(l->names[i], name)) return (int)nb__get16(l->cbody + l->coff[i]);
  return -1;
}

/* Frees batch b; returns nothing. */
static void batch_free(batch_t *b) {
  free(b->buf);
  free(b->handles);
  free(b);
}

/* Publishes batch b (again when resent) with the current lowest unacked
 * seq; returns nothing (a failed publish is sent again by the timer). */
static void publish(nb_nats_link_t *l, batch_t *b) {
  nb_nats_node_t *n = l->node;
  nb_nats_head_patch(b->buf, l->acked + 1, b->count,
                     (uint32_t)(b->len - b->head));
  if (b->sent_ns) {
    l->ns.resends++;
    l->st.resent += b->count;
  }
  b->sent_ns = nb_clock_ns();
  natsConnection_Publish(n->nc, l->subject, b->buf, (int)b->len);
  l->ns.messages_out++;
  l->ns.batches_out++;
  l->st.bytes_out += b->len;
}

/* Publishes l's open batch, if any; returns nothing. */
static void flush_link(nb_nats_link_t *l) {
  if (l->btail && !l->btail->sent_ns) publish(l, l->btail);
}

/* Rewrites the targets of every batch of l for the peer's new card (a
 * restarted peer may number its neurons differently); returns nothing. */
static void remap(nb_nats_link_t *l) {
  for (batch_t *b = l->bhead; b; b = b->next) {
    size_t off = b->head;
    for (uint32_t i = 0; i < b->count; i++) {
      uint8_t *p = b->buf + off;
      uint32_t L = nb__get32(p);
      nb_spike_t s;
      memcpy(&s, p + NB_FRAME_HEADER, sizeof s);
      int id = l->tid[b->handles[i]];
      s.target = id < 0 ? NOT_EXPOSED : (nb_id_t)id;
      memcpy(p + NB_FRAME_HEADER, &s, sizeof s);
      off += NB_FRAME_HEADER + L;
    }
  }
}

/* Publishes a message of type with no body to subject; returns nothing. */
static void send_ctl(nb_nats_node_t *n, const char *subject, uint8_t type,
                     uint64_t a, uint64_t b) {
  uint8_t buf[NB_NATS_HEAD + 1 + NB_LINK_NAME_MAX];
  int len = nb_nats_head_encode(buf, type, n->inc, a, b, 0, 0, n->cortex);
  if (len > 0) natsConnection_Publish(n->nc, subject, buf, len);
}

/* Publishes the card; returns nothing. */
static void announce(nb_nats_node_t *n) {
  nb_nats_head_patch(n->card, n->o.max_payload, n->card_count,
                     (uint32_t)(n->card_len - (NB_NATS_HEAD + 1 + strlen(n->cortex))));
  natsConnection_Publish(n->nc, n->cards, n->card, (int)n->card_len);
  n->last_announce_ns = nb_clock_ns();
}

/* Marks l down (its card stale or a BYE); returns nothing. */
static void link_down(nb_nats_link_t *l, const char *why) {
  if (!l->up) return;
  l->up = 0;
  logf_(l->node, 1, "peer '%s' %s", l->cortex, why);
  if (l->node->o.on_event) l->node->o.on_event(l->node->o.ud, l, NB_LINK_DOWN);
}

/* Takes a card of cortex h->cortex; returns nothing. */
static void on_card(nb_nats_node_t *n, const nb_nats_head_t *h) {
  if (!strcmp(h->cortex, n->cortex)) {
    if (h->inc != n->inc && !n->down_logged++)
      logf_(n, 0, "warning: another runtime announces this cortex name "
            "'%s' on %s: names must be unique in a cluster", n->cortex,
            n->url);
    return;
  }
  nb_nats_link_t *l = find_link(n, h->cortex);
  int fresh = !l || !l->up || l->peer_inc != h->inc;
  if (l && !fresh) {
    l->last_seen_ns = nb_clock_ns();
    return;
  }
  const char *why = NULL;
  if (nb_nats_card_check(h, &why) != 0) {
    n->malformed++;
    if (l) l->ns.malformed++;
    /* One line per message would let a flood write the log. */
    if (n->bad_cards++ % 1000 == 0)
      logf_(n, 0, "error: a malformed card from '%s' dropped: %s", h->cortex, why);
    return;
  }
  if (!l && n->nlinks >= LINKS_MAX) {
    /* Every name a client announces would otherwise cost a link. */
    if (!n->warned_links++)
      logf_(n, 0, "warning: a card from '%s' ignored: %u runtimes known "
            "already (the most one runtime follows)", h->cortex, LINKS_MAX);
    return;
  }
  if (!l) l = nb_nats_link(n, h->cortex);
  if (!l) return;
  l->last_seen_ns = nb_clock_ns();
  dir_set(l, h);
  for (uint32_t i = 0; i < l->ntarget; i++) l->tid[i] = dir_find(l, l->tname[i]);
  int restarted = l->peer_inc && l->peer_inc != h->inc;
  l->peer_inc = h->inc;
  l->peer_max_payload = (uint32_t)h->b;
  l->up = 1;
  l->st.connects++;
  if (restarted) {
    l->st.reconnects++;
    /* Its successor knows none of our numbering: everything unacked goes
     * again (at least once across a restart), to its new ids. */
    remap(l);
    for (batch_t *b = l->bhead; b; b = b->next)
      if (b->sent_ns) publish(l, b);
  }
  logf_(n, 1, "peer '%s' %s: %u neurons in its card", l->cortex,
        restarted ? "restarted (a new incarnation)" : "joined", l->ndir);
  /* A newcomer learns us now rather than at our next period. */
  announce(n);
  if (n->o.on_event) n->o.on_event(n->o.ud, l, NB_LINK_UP);
}

/* Takes an ack for l; returns nothing. */
static void on_ack(nb_nats_link_t *l, const nb_nats_head_t *h) {
  if (h->b != l->node->inc || h->a <= l->acked || h->a >= l->next_seq) return;
  l->st.acked += h->a - l->acked;
  l->acked = h->a;
  l->last_ack_ns = nb_clock_ns();
  uint64_t rtt_from = 0; /* the newest batch this ack confirms */
  while (l->bhead && l->bhead->sent_ns &&
         l->bhead->first + l->bhead->count - 1 <= l->acked) {
    batch_t *b = l->bhead;
    rtt_from = b->sent_ns;
    l->bhead = b->next;
    if (!l->bhead) l->btail = NULL;
    l->queued -= b->count;
    l->qbytes -= b->pbytes;
    batch_free(b);
  }
  if (rtt_from && l->last_ack_ns > rtt_from)
    nb_link_rtt_add(&l->st, l->last_ack_ns - rtt_from);
}

/* Delivers the batch l->cur from where it stopped; returns 1 when done
 * with it, 0 when the receiver is full (l pauses). */
static int deliver(nb_nats_link_t *l) {
  nb_nats_node_t *n = l->node;
  const nb_nats_head_t *h = &l->cur_h;
  nb_nats_rec_t r;
  const char *why;
  for (;;) {
    size_t off = l->cur_off;
    uint32_t seen = l->cur_seen;
    int rc = nb_nats_batch_next(h, &off, &seen, n->o.max_payload, &r, &why);
    if (rc != 1) return 1; /* checked whole before: only the end */
    uint64_t seq = h->a + l->cur_seen;
    if (seq < l->expected) { /* already accepted (a resend) */
      l->cur_off = off;
      l->cur_seen = seen;
      continue;
    }
    int take = 1;
    nb_arena_ref_t ref;
    int has_ref = 0;
    if (!(n->exposed[r.spike.target >> 3] & (1u << (r.spike.target & 7))) ||
        dir_of_id(l, r.spike.source) < 0) {
      take = 0; /* not ours, or an unannounced sender: refused */
    } else if (r.payload && n->writer) {
      int arc = nb_arena_write(n->writer, r.payload, r.len, &ref);
      if (arc == NB_ENOSPACE) {
        l->paused = 1;
        l->st.pauses++;
        return 0;
      }
      if (arc != 0) take = 0;
      else {
        has_ref = 1;
        nb_spike_set_ref(&r.spike, &ref);
      }
    }
    int rc2 = take ? n->o.on_spike(n->o.ud, l, &r.spike, r.payload, r.len) : NB_EINVAL;
    if (rc2 == NB_EFULL) {
      if (has_ref) nb_arena_release(n->o.arena, &ref, 1);
      l->paused = 1;
      l->st.pauses++;
      return 0;
    }
    if (rc2 == 0) l->st.received++;
    else {
      if (has_ref) nb_arena_release(n->o.arena, &ref, 1);
      l->st.rejected++;
    }
    l->expected = seq + 1;
    l->need_ack = 1;
    l->cur_off = off;
    l->cur_seen = seen;
  }
}

/* Delivers a region message from l to on_region, spike by spike (at most
 * once: what nothing takes is counted dropped); returns nothing. */
static void on_region_msg(nb_nats_link_t *l, const nb_nats_head_t *h) {
  nb_nats_node_t *n = l->node;
  if (!l->up || h->inc != l->peer_inc || !n->o.on_region) {
    n->dropped++;
    l->ns.dropped++;
    n->region_dropped += h->count;
    return;
  }
  char path[256];
  size_t off;
  uint32_t seen = 0;
  const char *why;
  nb_nats_rec_t r;
  if (nb_nats_region_path(h, path, &off, &why) != 0) return;
  while (nb_nats_batch_next(h, &off, &seen, n->o.max_payload, &r, &why) == 1) {
    nb_arena_ref_t ref;
    int has_ref = 0, rc = 0;
    if (dir_of_id(l, r.spike.source) < 0) rc = NB_ENOENT;
    if (rc == 0 && r.payload && n->writer) {
      rc = nb_arena_write(n->writer, r.payload, r.len, &ref);
      if (rc == 0) {
        has_ref = 1;
        nb_spike_set_ref(&r.spike, &ref);
      }
    }
    if (rc == 0) rc = n->o.on_region(n->o.ud, l, path, &r.spike, r.payload, r.len);
    if (rc == 0) {
      l->ns.region_in++;
    } else {
      if (has_ref) nb_arena_release(n->o.arena, &ref, 1);
      n->region_dropped++;
    }
  }
}

/* Publishes the open region batch b and empties it; returns 0 or NB_EIO. */
static int region_flush(nb_nats_node_t *n, rbatch_t *b) {
  if (!b->count) return 0;
  size_t head = NB_NATS_HEAD + 1 + strlen(n->cortex);
  nb_nats_head_patch(b->buf, 0, b->count, (uint32_t)(b->len - head));
  natsStatus st = natsConnection_Publish(n->nc, b->subject, b->buf, (int)b->len);
  n->region_out += b->count;
  b->count = 0;
  b->len = head + 1 + strlen(b->path);
  return st == NATS_OK ? 0 : NB_EIO;
}

int nb_nats_region_send(nb_nats_node_t *n, const char *path,
                        const nb_spike_t *s, const void *payload, size_t len) {
  char subj[2048];
  size_t pl = path ? strlen(path) : 0;
  if (!path || pl > 255 || (pl && !nb_link_name_ok(path, pl)) ||
      nb_nats_region_subject(n->root, path, subj, sizeof subj) != 0)
    return NB_EINVAL;
  rbatch_t *b = NULL;
  for (uint32_t i = 0; i < n->nrb && !b; i++)
    if (!strcmp(n->rb[i].path, path)) b = &n->rb[i];
  if (!b) {
    rbatch_t *v = realloc(n->rb, (n->nrb + 1) * sizeof *v);
    if (!v) abort();
    n->rb = v;
    b = &n->rb[n->nrb++];
    memset(b, 0, sizeof *b);
    snprintf(b->subject, sizeof b->subject, "%s", subj);
    snprintf(b->path, sizeof b->path, "%s", path);
    b->cap = n->o.batch_bytes + NB_NATS_HEAD + 2 + 2 * NB_LINK_NAME_MAX;
    b->buf = malloc(b->cap);
    if (!b->buf) abort();
    b->len = (size_t)nb_nats_head_encode(b->buf, NB_NATS_REGION, n->inc, 0, 0,
                                         0, 0, n->cortex);
    b->buf[b->len++] = (uint8_t)pl;
    memcpy(b->buf + b->len, path, pl);
    b->len += pl;
  }
  nb_spike_t out = *s;
  if (len > NB_PAYLOAD_MAX) {
    /* The bytes travel after the spike; the receiver stores them in its
     * own arena and rewrites the reference. */
    nb_arena_ref_t ref;
    memset(&ref, 0, sizeof ref);
    ref.len = (uint32_t)len;
    nb_spike_set_ref(&out, &ref);
  } else {
    len = 0;
  }
  if (b->len + NB_FRAME_SPIKE + len > b->cap) {
    int rc = region_flush(n, b);
    if (rc != 0) return rc;
    if (b->len + NB_FRAME_SPIKE + len > b->cap) {
      size_t cap = b->cap;
      while (cap < b->len + NB_FRAME_SPIKE + len) cap *= 2;
      uint8_t *v = realloc(b->buf, cap);
      if (!v) return NB_ENOMEM;
      b->buf = v;
      b->cap = cap;
    }
  }
  nb_frame_encode_head(&out, len, b->buf + b->len);
  b->len += NB_FRAME_SPIKE;
  if (len) memcpy(b->buf + b->len, payload, len);
  b->len += len;
  b->count++;
  return b->len >= n->o.batch_bytes ? region_flush(n, b) : 0;
}

/* Takes a batch message for l (kept in l->cur or the backlog while it is
 * delivered); returns 1 when msg may be destroyed now. */
static int on_batch(nb_nats_link_t *l, natsMsg *msg, const nb_nats_head_t *h) {
  nb_nats_node_t *n = l->node;
  if (l->paused || l->cur) {
    if (l->nback >= BACKLOG_MAX) {
      n->dropped++;
      l->ns.dropped++;
      return 1;
    }
    if (!l->backlog) l->backlog = calloc(BACKLOG_MAX, sizeof *l->backlog);
    if (!l->backlog) abort();
    l->backlog[l->nback++] = msg;
    return 0;
  }
  if (h->inc != l->in_inc) { /* a sender we know nothing of */
    l->in_inc = h->inc;
    l->expected = h->b;
  }
  l->ns.batches_in++;
  if (h->a > l->expected || h->a + h->count <= l->expected) {
    /* A gap (an earlier batch was lost: the sender sends it again) or all
     * seen (a resend): nothing to deliver; the ack says where we are. */
    if (h->a > l->expected) {
      n->dropped++;
      l->ns.dropped++;
    }
    l->need_ack = 1;
    return 1;
  }
  l->cur = msg;
  l->cur_h = *h;
  l->cur_off = 0;
  l->cur_seen = 0;
  if (!deliver(l)) return 0;
  l->cur = NULL;
  return 1;
}

/* Handles one queued message; returns 1 when it may be destroyed. */
static int handle(nb_nats_node_t *n, natsMsg *msg) {
  const uint8_t *p = (const uint8_t *)natsMsg_GetData(msg);
  size_t len = (size_t)natsMsg_GetDataLength(msg);
  nb_nats_head_t h;
  const char *why = NULL;
  int rc = nb_nats_head_decode(p, len, &h, &why);
  nb_nats_link_t *l = rc == 0 ? find_link(n, h.cortex) : NULL;
  if (rc == 0 && h.type == NB_NATS_BATCH)
    rc = nb_nats_batch_check(&h, n->o.max_payload, &why);
  if (rc == 0 && h.type == NB_NATS_REGION)
    rc = nb_nats_region_check(&h, n->o.max_payload, &why);
  if (rc != 0) {
    n->malformed++;
    if (l) {
      l->ns.malformed++;
      l->st.errors++;
    }
    /* One line per message would let a flood write the log: the first
     * and then every 1000th. */
    if (n->bad_logged++ % 1000 == 0)
      logf_(n, 0, "error: a malformed message on %s dropped (%s%s%s; %" PRIu64
            " so far)", natsMsg_GetSubject(msg), why,
            l ? ", claims to be from " : "", l ? l->cortex : "", n->malformed);
    return 1;
  }
  if (h.type == NB_NATS_CARD) {
    on_card(n, &h);
    return 1;
  }
  if (!l) {
    n->dropped++;
    if (h.type == NB_NATS_REGION) n->region_dropped += h.count;
    return 1;
  }
  l->ns.messages_in++;
  l->st.bytes_in += len;
  if (h.type == NB_NATS_BYE) {
    if (h.inc == l->peer_inc) link_down(l, "left (BYE)");
    return 1;
  }
  if (h.type == NB_NATS_ACK) {
    on_ack(l, &h);
    return 1;
  }
  if (h.type == NB_NATS_REGION) {
    on_region_msg(l, &h);
    return 1;
  }
  /* A batch from an incarnation whose card we have not seen: its sources
   * cannot be named yet; it comes again. */
  if (!l->up || h.inc != l->peer_inc) {
    n->dropped++;
    l->ns.dropped++;
    return 1;
  }
  return on_batch(l, msg, &h);
}

/* Sends the acks owed; returns nothing. */
static void send_acks(nb_nats_node_t *n) {
  for (size_t i = 0; i < n->nlinks; i++) {
    nb_nats_link_t *l = n->links[i];
    if (!l->need_ack) continue;
    l->need_ack = 0;
    send_ctl(n, l->subject, NB_NATS_ACK, l->expected - 1, l->in_inc);
    l->ns.messages_out++;
  }
}

/* Goes on with a paused link: its current batch, then its backlog;
 * returns nothing. */
static void drain_link(nb_nats_link_t *l) {
  l->paused = 0;
  if (l->cur) {
    if (!deliver(l)) return;
    natsMsg_Destroy(l->cur);
    l->cur = NULL;
  }
  while (l->nback && !l->paused && !l->cur) {
    natsMsg *m = l->backlog[0];
    memmove(l->backlog, l->backlog + 1, --l->nback * sizeof *l->backlog);
    nb_nats_head_t h;
    const char *why;
    nb_nats_head_decode((const uint8_t *)natsMsg_GetData(m),
                        (size_t)natsMsg_GetDataLength(m), &h, &why);
    if (on_batch(l, m, &h)) natsMsg_Destroy(m);
  }
}

/* The loop's side of the hand-off: takes every queued message; returns
 * nothing. */
static void on_async(uv_async_t *a) {
  nb_nats_node_t *n = a->data;
  natsMsg *batch[QUEUE_MAX];
  pthread_mutex_lock(&n->hub->mu);
  uint32_t k = n->qn;
  memcpy(batch, n->q, k * sizeof *batch);
  n->qn = 0;
  int rec = n->reconnected, dis = n->disconnected;
  n->reconnected = n->disconnected = 0;
  pthread_mutex_unlock(&n->hub->mu);
  if (dis) logf_(n, 0, "warning: disconnected from %s; reconnecting", n->url);
  if (rec) {
    n->reconnects += (uint64_t)rec;
    logf_(n, 0, "info: reconnected to %s", n->url);
    announce(n);
  }
  if (n->resume) {
    n->resume = 0;
    for (size_t i = 0; i < n->nlinks; i++)
      if (n->links[i]->paused) drain_link(n->links[i]);
  }
  for (uint32_t i = 0; i < k; i++)
    if (handle(n, batch[i])) natsMsg_Destroy(batch[i]);
  send_acks(n);
}

/* End of every loop turn: open batches leave; returns nothing. */
static void on_prepare(uv_prepare_t *p) {
  nb_nats_node_t *n = p->data;
  for (size_t i = 0; i < n->nlinks; i++) flush_link(n->links[i]);
  for (uint32_t i = 0; i < n->nrb; i++) region_flush(n, &n->rb[i]);
  send_acks(n);
}

/* The node's clock: resends, card period, stale cards; returns nothing. */
static void on_timer(uv_timer_t *t) {
  nb_nats_node_t *n = t->data;
  uint64_t now = nb_clock_ns();
  uint64_t resend = (uint64_t)n->o.resend_ms * 1000000u;
  for (size_t i = 0; i < n->nlinks; i++) {
    nb_nats_link_t *l = n->links[i];
    if (l->up && l->last_seen_ns + 3ull * n->o.announce_ms * 1000000u < now)
      link_down(l, "is silent (no card for three announce periods)");
    /* Go-back-N: when the oldest unacked batch waited past resend_ms and
     * no ack came meanwhile, everything published goes again. */
    batch_t *b = l->bhead;
    if (!l->up || !b || !b->sent_ns || b->sent_ns + resend > now ||
        l->last_ack_ns + resend > now)
      continue;
    for (; b && b->sent_ns; b = b->next) publish(l, b);
    l->last_ack_ns = now;
  }
  pthread_mutex_lock(&n->hub->mu);
  uint64_t qd = n->q_dropped;
  n->q_dropped = 0;
  n->region_dropped += n->q_region_dropped;
  n->q_region_dropped = 0;
  pthread_mutex_unlock(&n->hub->mu);
  n->dropped += qd;
  if (now - n->last_announce_ns >= (uint64_t)n->o.announce_ms * 1000000u)
    announce(n);
}

/* ------------------------------------------------------------------ */
/* the link interface                                                  */

/* Returns a free batch for l with room, the open one when it has some. */
static batch_t *open_batch(nb_nats_link_t *l, size_t need) {
  nb_nats_node_t *n = l->node;
  batch_t *b = l->btail;
  if (b && !b->sent_ns && b->len + need > n->o.batch_bytes && b->count) {
    publish(l, b);
    b = NULL;
  }
  if (!b || b->sent_ns) {
    b = calloc(1, sizeof *b);
    if (!b) abort();
    b->cap = n->o.batch_bytes + NB_NATS_HEAD + 1 + NB_LINK_NAME_MAX;
    b->buf = malloc(b->cap);
    if (!b->buf) abort();
    b->head = (size_t)nb_nats_head_encode(b->buf, NB_NATS_BATCH, n->inc,
                                          l->next_seq, 1, 0, 0, n->cortex);
    b->len = b->head;
    b->first = l->next_seq;
    if (l->btail) l->btail->next = b;
    else l->bhead = b;
    l->btail = b;
  }
  if (b->len + need > b->cap) {
    size_t cap = b->cap;
    while (cap < b->len + need) cap *= 2;
    uint8_t *v = realloc(b->buf, cap);
    if (!v) abort();
    b->buf = v;
    b->cap = cap;
  }
  if (b->count == b->hcap) {
    b->hcap = b->hcap ? b->hcap * 2 : 256;
    uint16_t *v = realloc(b->handles, b->hcap * sizeof *v);
    if (!v) abort();
    b->handles = v;
  }
  return b;
}

/* nb_linkif send: see nb_link_send; returns the same codes. */
static int nats_send(void *lp, int target, const nb_spike_t *s,
                     const void *payload, size_t len) {
  nb_nats_link_t *l = lp;
  nb_nats_node_t *n = l->node;
  if (target < 0 || (uint32_t)target >= l->ntarget) return NB_EINVAL;
  if (!l->up || l->queued >= n->o.window) {
    l->st.full++;
    return NB_EFULL;
  }
  if (l->tid[target] < 0) return NB_ENOENT;
  nb_arena_ref_t ref;
  if (nb_spike_is_ref(s)) {
    if (nb_spike_get_ref(s, &ref) != 0) return NB_EINVAL;
    if (!payload) {
      if (!n->o.arena) return NB_EINVAL;
      int rc = nb_arena_read(n->o.arena, &ref, &payload);
      if (rc != 0) return rc;
    }
    len = ref.len;
    if (len > l->peer_max_payload) return NB_ETOOBIG;
    if (l->qbytes && l->qbytes + len > n->o.window_bytes) {
      l->st.full++;
      return NB_EFULL;
    }
  } else {
    len = 0;
  }
  batch_t *b = open_batch(l, NB_FRAME_SPIKE + len);
  nb_spike_t out = *s;
  out.target = (nb_id_t)l->tid[target];
  nb_frame_encode_head(&out, len, b->buf + b->len);
  b->len += NB_FRAME_SPIKE;
  if (len) memcpy(b->buf + b->len, payload, len);
  b->len += len;
  b->pbytes += len;
  b->handles[b->count++] = (uint16_t)target;
  l->next_seq++;
  l->queued++;
  l->qbytes += len;
  l->st.sent++;
  if (b->len >= n->o.batch_bytes) publish(l, b);
  return 0;
}

/* nb_linkif room; returns the spikes the window takes now. */
static size_t nats_room(const void *lp) {
  const nb_nats_link_t *l = lp;
  if (!l->up || l->queued >= l->node->o.window) return 0;
  return l->node->o.window - l->queued;
}

/* nb_linkif target; returns a handle for name (>= 0) or an error. */
static int nats_target(void *lp, const char *name) {
  nb_nats_link_t *l = lp;
  if (!name || !nb_link_name_ok(name, strlen(name))) return NB_EINVAL;
  for (uint32_t i = 0; i < l->ntarget; i++)
    if (!strcmp(l->tname[i], name)) return (int)i;
  if (l->ntarget >= NOT_EXPOSED) return NB_ELIMIT;
  if (l->up && dir_find(l, name) < 0) return NB_ENOENT;
  if (l->ntarget == l->tcap) {
    l->tcap = l->tcap ? l->tcap * 2 : 16;
    char **v = realloc(l->tname, l->tcap * sizeof *v);
    int *w = realloc(l->tid, l->tcap * sizeof *w);
    if (!v || !w) abort();
    l->tname = v;
    l->tid = w;
  }
  l->tname[l->ntarget] = dupz(name);
  l->tid[l->ntarget] = dir_find(l, name);
  return (int)l->ntarget++;
}

/* nb_linkif is_up; returns 1 while the peer's card is fresh. */
static int nats_is_up(const void *lp) { return ((const nb_nats_link_t *)lp)->up; }
/* nb_linkif is_paused; returns 1 while its messages wait for room. */
static int nats_is_paused(const void *lp) {
  return ((const nb_nats_link_t *)lp)->paused;
}
/* nb_linkif is_shared; returns 0 (bytes always travel through NATS). */
static int nats_is_shared(const void *lp) { (void)lp; return 0; }
/* nb_linkif resume: the loop goes on with l's messages; returns nothing. */
static void nats_resume(void *lp) {
  nb_nats_link_t *l = lp;
  if (!l->paused) return;
  l->node->resume = 1;
  uv_async_send(&l->node->async);
}
/* nb_linkif peer; returns the peer's cortex name. */
static const char *nats_peer(const void *lp) {
  return ((const nb_nats_link_t *)lp)->cortex;
}
/* nb_linkif peer_neuron; returns the name in the peer's card, or NULL. */
static const char *nats_peer_neuron(const void *lp, nb_id_t id) {
  const nb_nats_link_t *l = lp;
  int i = l->byid ? dir_of_id(l, id) : -1;
  return i < 0 ? NULL : l->names[i];
}
/* nb_linkif stats; returns out. */
static nb_link_stats_t *nats_stats(const void *lp, nb_link_stats_t *out) {
  const nb_nats_link_t *l = lp;
  *out = l->st;
  out->queued = l->queued;
  out->queue_bytes = l->qbytes;
  return out;
}
/* nb_linkif set_data; returns nothing. */
static void nats_set_data(void *lp, void *d) { ((nb_nats_link_t *)lp)->data = d; }
/* nb_linkif data; returns the user data. */
static void *nats_data(const void *lp) { return ((const nb_nats_link_t *)lp)->data; }

const nb_linkif_t nb_linkif_nats = {
  .scheme = "nats",
  .send = nats_send,
  .room = nats_room,
  .target = nats_target,
  .is_up = nats_is_up,
  .is_paused = nats_is_paused,
  .is_shared = nats_is_shared,
  .resume = nats_resume,
  .peer = nats_peer,
  .peer_neuron = nats_peer_neuron,
  .stats = nats_stats,
  .set_data = nats_set_data,
  .data = nats_data,
};

nb_nats_stats_t *nb_nats_link_stats(const nb_nats_link_t *l,
                                    nb_nats_stats_t *out) {
  *out = l->ns;
  out->window = l->queued;
  out->reconnects = l->node->reconnects;
  return out;
}

nb_nats_stats_t *nb_nats_node_stats(const nb_nats_node_t *n,
                                    nb_nats_stats_t *out) {
  memset(out, 0, sizeof *out);
  out->reconnects = n->reconnects;
  out->malformed = n->malformed;
  out->dropped = n->dropped;
  out->region_out = n->region_out;
  out->region_dropped = n->region_dropped;
  return out;
}

/* ------------------------------------------------------------------ */
/* the node                                                            */

/* Returns a malloc'd "what: text" for status s and libnats's last error. */
static char *nats_err(const char *url, const char *what, natsStatus s) {
  const char *last = nats_GetLastError(NULL);
  /* libnats prefixes its source location: "(conn.c:1905): ". */
  if (last && last[0] == '(' && strstr(last, "): ")) last = strstr(last, "): ") + 3;
  size_t cap = 1024;
  char *m = malloc(cap);
  if (!m) abort();
  snprintf(m, cap, "NATS server %s: %s: %s%s%s", url, what, natsStatus_GetText(s),
           last && *last && strcmp(last, natsStatus_GetText(s)) ? " (" : "",
           last && *last && strcmp(last, natsStatus_GetText(s)) ? last : "");
  if (last && *last && strcmp(last, natsStatus_GetText(s))) strncat(m, ")", cap - strlen(m) - 1);
  return m;
}

int nb_nats_node_new(nb_nats_node_t **out, uv_loop_t *loop,
                     const nb_nats_opts_t *o, char **err) {
  *out = NULL;
  *err = NULL;
  if (!o->cortex || !nb_link_name_ok(o->cortex, strlen(o->cortex)) || !o->url ||
      !o->on_spike) {
    *err = dupz("bad NATS link options (a cortex name, a url and a spike "
                "callback are needed)");
    return NB_EINVAL;
  }
  nb_nats_node_t *n = calloc(1, sizeof *n);
  if (!n) abort();
  n->o = *o;
  if (!n->o.max_payload) n->o.max_payload = 1u << 20;
  if (!n->o.window) n->o.window = 16384;
  if (!n->o.window_bytes) n->o.window_bytes = 16u << 20;
  if (!n->o.batch_bytes) n->o.batch_bytes = 64u << 10;
  if (!n->o.resend_ms) n->o.resend_ms = 500;
  if (!n->o.announce_ms) n->o.announce_ms = 1000;
  if (!n->o.connect_ms) n->o.connect_ms = 2000;
  n->cortex = dupz(o->cortex);
  n->url = dupz(o->url);
  char tok[520];
  nb_nats_token(o->cluster ? o->cluster : "default", tok, sizeof tok);
  size_t rl = strlen(tok) + 4;
  n->root = malloc(rl);
  if (!n->root) abort();
  snprintf(n->root, rl, "nb.%s", tok);
  nb_nats_token(o->cortex, tok, sizeof tok);
  n->inbox = malloc(strlen(n->root) + strlen(tok) + 8);
  n->cards = malloc(strlen(n->root) + 8);
  if (!n->inbox || !n->cards) abort();
  sprintf(n->inbox, "%s.rt.%s", n->root, tok);
  sprintf(n->cards, "%s.cards", n->root);
  n->loop = loop;
  n->q = calloc(QUEUE_MAX, sizeof *n->q);
  n->exposed = calloc(65536 / 8, 1);
  n->card = malloc(CARD_MAX);
  if (!n->q || !n->exposed || !n->card) abort();
  n->card_len = (size_t)nb_nats_head_encode(n->card, NB_NATS_CARD, 1, 0, 0, 0,
                                            0, n->cortex);
  n->hub = calloc(1, sizeof *n->hub);
  if (!n->hub) abort();
  pthread_mutex_init(&n->hub->mu, NULL);
  n->hub->n = n;
  do {
    n->inc = ((uint64_t)rand() << 32 ^ (uint64_t)nb_clock_ns() ^
              (uint64_t)(uintptr_t)n) | 1;
  } while (!n->inc);
  FILE *ur = fopen("/dev/urandom", "rb");
  if (ur) {
    if (fread(&n->inc, sizeof n->inc, 1, ur) != 1) {}
    fclose(ur);
    n->inc |= 1;
  }
  if (o->arena && nb_arena_writer_new(&n->writer, o->arena) != 0) n->writer = NULL;
  natsStatus s = natsOptions_Create(&n->nopts);
  const char *what = "options";
  if (s == NATS_OK) s = natsOptions_SetURL(n->nopts, o->url);
  if (s == NATS_OK) s = natsOptions_SetName(n->nopts, o->cortex);
  if (s == NATS_OK) s = natsOptions_SetTimeout(n->nopts, o->connect_ms ? o->connect_ms : 2000);
  if (s == NATS_OK) s = natsOptions_SetMaxReconnect(n->nopts, -1);
  if (s == NATS_OK) s = natsOptions_SetReconnectWait(n->nopts, 100);
  if (s == NATS_OK) s = natsOptions_SetReconnectBufSize(n->nopts, 32 << 20);
  if (s == NATS_OK) s = natsOptions_SetMaxPendingMsgs(n->nopts, 65536);
  /* A message is already a batch: written at once rather than left for
   * libnats's flusher (which waits up to a millisecond). */
  if (s == NATS_OK) s = natsOptions_SetSendAsap(n->nopts, true);
  if (s == NATS_OK) s = natsOptions_SetDisconnectedCB(n->nopts, on_disc, n->hub);
  if (s == NATS_OK) s = natsOptions_SetReconnectedCB(n->nopts, on_reconn, n->hub);
  if (s == NATS_OK) s = natsOptions_SetClosedCB(n->nopts, on_closed, n->hub);
  if (s == NATS_OK && o->user) {
    what = "user and password";
    s = natsOptions_SetUserInfo(n->nopts, o->user, o->password);
  }
  if (s == NATS_OK && o->token) {
    what = "token";
    s = natsOptions_SetToken(n->nopts, o->token);
  }
  if (s == NATS_OK && o->nkey_seed) {
    what = "nkey";
    s = natsOptions_SetNKeyFromSeed(n->nopts, o->nkey_public, o->nkey_seed);
  }
  if (s == NATS_OK && o->creds) {
    what = "creds file";
    s = natsOptions_SetUserCredentialsFromFiles(n->nopts, o->creds, NULL);
  }
  if (s == NATS_OK && (o->tls_ca || o->tls_cert)) {
    what = "TLS";
    s = natsOptions_SetSecure(n->nopts, true);
    if (s == NATS_OK && o->tls_ca) s = natsOptions_LoadCATrustedCertificates(n->nopts, o->tls_ca);
    if (s == NATS_OK && o->tls_cert)
      s = natsOptions_LoadCertificatesChain(n->nopts, o->tls_cert, o->tls_key);
  }
  if (s == NATS_OK) {
    what = "cannot connect";
    s = natsConnection_Connect(&n->nc, n->nopts);
  }
  if (s != NATS_OK) {
    *err = nats_err(o->url, what, s);
    n->handles_open = 0;
    if (n->nopts) natsOptions_Destroy(n->nopts);
    n->nopts = NULL;
    nb_arena_writer_free(n->writer);
    /* No connection was made: no callback holds the hub. */
    pthread_mutex_destroy(&n->hub->mu);
    free(n->hub);
    free(n->q); free(n->exposed); free(n->card);
    free(n->cortex); free(n->url); free(n->root); free(n->inbox); free(n->cards);
    free(n);
    return NB_EIO;
  }
  uv_async_init(loop, &n->async, on_async);
  n->async.data = n;
  uv_prepare_init(loop, &n->prep);
  n->prep.data = n;
  uv_timer_init(loop, &n->timer);
  n->timer.data = n;
  n->handles_open = 3;
  *out = n;
  return 0;
}

int nb_nats_node_expose(nb_nats_node_t *n, const nb_nats_neuron_t *neuron) {
  if (n->started) return NB_EINVAL;
  if (neuron->id >= NB_LINK_CTRL_ID) return NB_EINVAL;
  if (n->exposed[neuron->id >> 3] & (1u << (neuron->id & 7))) return NB_EEXIST;
  size_t len = n->card_len;
  int rc = nb_nats_card_add(n->card, CARD_MAX, &len, neuron);
  if (rc != 0) return rc;
  n->card_len = len;
  n->card_count++;
  for (uint8_t r = 0; r < neuron->nreg; r++) {
    /* Every prefix: a broadcast to "cortex" reaches "cortex/language". */
    char path[256];
    snprintf(path, sizeof path, "%s", neuron->regs[r]);
    for (;;) {
      char subj[2048];
      if (nb_nats_region_subject(n->root, path, subj, sizeof subj) == 0) {
        uint32_t k = 0;
        while (k < n->nregs && strcmp(n->regs[k], subj)) k++;
        if (k == n->nregs) {
          char **v = realloc(n->regs, (n->nregs + 1) * sizeof *v);
          if (!v) abort();
          n->regs = v;
          n->regs[n->nregs++] = dupz(subj);
        }
      }
      char *slash = strrchr(path, '/');
      if (!path[0]) break;
      if (slash) *slash = 0;
      else path[0] = 0;
    }
  }
  n->exposed[neuron->id >> 3] |= (uint8_t)(1u << (neuron->id & 7));
  return 0;
}

int nb_nats_node_start(nb_nats_node_t *n) {
  /* The card's head carries the real incarnation from now on. */
  nb_nats_head_encode(n->card, NB_NATS_CARD, n->inc, n->o.announce_ms,
                      n->o.max_payload, n->card_count,
                      (uint32_t)(n->card_len - (NB_NATS_HEAD + 1 + strlen(n->cortex))),
                      n->cortex);
  natsStatus s = natsConnection_Subscribe(&n->sub_in, n->nc, n->inbox, on_msg, n->hub);
  if (s == NATS_OK) s = natsConnection_Subscribe(&n->sub_cards, n->nc, n->cards, on_msg, n->hub);
  if (s == NATS_OK) s = natsSubscription_SetPendingLimits(n->sub_in, 65536, 256 << 20);
  if (n->o.on_region && n->nregs) {
    n->reg_subs = calloc(n->nregs, sizeof *n->reg_subs);
    if (!n->reg_subs) abort();
  }
  for (uint32_t i = 0; s == NATS_OK && n->reg_subs && i < n->nregs; i++)
    s = natsConnection_Subscribe(&n->reg_subs[i], n->nc, n->regs[i], on_msg, n->hub);
  if (s == NATS_OK) s = natsConnection_Flush(n->nc);
  if (s != NATS_OK) {
    char *m = nats_err(n->url, "cannot subscribe", s);
    logf_(n, 0, "error: %s", m);
    free(m);
    return NB_EIO;
  }
  n->started = 1;
  uv_prepare_start(&n->prep, on_prepare);
  uint32_t period = n->o.resend_ms / 4;
  if (period > n->o.announce_ms / 4) period = n->o.announce_ms / 4;
  if (period < 5) period = 5;
  uv_timer_start(&n->timer, on_timer, period, period);
  announce(n);
  logf_(n, 1, "connected to %s (subjects %s.*, %u neurons in the card)",
        n->url, n->root, n->card_count);
  return 0;
}

/* Frees the node once its last handle closed; returns nothing. */
static void handle_closed(uv_handle_t *h) {
  nb_nats_node_t *n = h->data;
  if (--n->handles_open) return;
  void (*done)(void *) = n->done;
  void *ud = n->done_ud;
  free(n);
  if (done) done(ud);
}

void nb_nats_node_close(nb_nats_node_t *n, void (*done)(void *ud), void *ud) {
  for (size_t i = 0; i < n->nlinks; i++) flush_link(n->links[i]);
  for (uint32_t i = 0; i < n->nrb; i++) {
    region_flush(n, &n->rb[i]);
    free(n->rb[i].buf);
  }
  free(n->rb);
  send_acks(n);
  if (n->started) send_ctl(n, n->cards, NB_NATS_BYE, 0, 0);
  natsConnection_FlushTimeout(n->nc, 1000);
  /* From here on libnats's callbacks touch nothing of the node; the
   * closed callback frees the hub. */
  pthread_mutex_lock(&n->hub->mu);
  n->hub->closing = 1;
  n->hub->n = NULL;
  pthread_mutex_unlock(&n->hub->mu);
  if (n->sub_in) natsSubscription_Destroy(n->sub_in);
  if (n->sub_cards) natsSubscription_Destroy(n->sub_cards);
  for (uint32_t i = 0; i < n->nregs; i++) {
    if (n->reg_subs && n->reg_subs[i]) natsSubscription_Destroy(n->reg_subs[i]);
    free(n->regs[i]);
  }
  free(n->regs);
  free(n->reg_subs);
  natsConnection_Close(n->nc);
  natsConnection_Destroy(n->nc);
  natsOptions_Destroy(n->nopts);
  for (uint32_t i = 0; i < n->qn; i++) natsMsg_Destroy(n->q[i]);
  for (size_t i = 0; i < n->nlinks; i++) {
    nb_nats_link_t *l = n->links[i];
    /* What the peer did not confirm goes nowhere now. */
    l->st.lost += l->queued;
    while (l->bhead) {
      batch_t *b = l->bhead;
      l->bhead = b->next;
      batch_free(b);
    }
    if (l->cur) natsMsg_Destroy(l->cur);
    for (uint32_t j = 0; j < l->nback; j++) natsMsg_Destroy(l->backlog[j]);
    for (uint32_t j = 0; j < l->ntarget; j++) free(l->tname[j]);
    free(l->tname); free(l->tid); free(l->backlog);
    free(l->cbody); free(l->coff); free(l->names); free(l->nblob); free(l->byid);
    free(l);
  }
  free(n->links);
  nb_arena_writer_free(n->writer);
  free(n->q); free(n->exposed); free(n->card);
  free(n->cortex); free(n->url); free(n->root); free(n->inbox); free(n->cards);
  n->done = done;
  n->done_ud = ud;
  uv_close((uv_handle_t *)&n->async, handle_closed);
  uv_close((uv_handle_t *)&n->prep, handle_closed);
  uv_close((uv_handle_t *)&n->timer, handle_closed);
}
