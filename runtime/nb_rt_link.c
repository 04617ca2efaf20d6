/* nb_rt_link.c: the runtime's links, TCP (runtime/nb_link.h) and NATS
 * (runtime/nb_link_nats.h), each reached through the link interface
 * (runtime/nb_linkif.h): the manifest's transport keys, proxy neurons for
 * remote neurons, injection of what peers send, backpressure both ways,
 * clean shutdown, and the link rows of the statistics. With NATS, a
 * peer's card also makes proxies "<runtime>/<neuron>" that discovery finds
 * while the peer is up, and region broadcasts (nb_rt_fire_region) go out
 * as one publish and come in for the local neurons of the subtree.
 *
 * Outgoing: a remote neuron is a proxy neuron in the local cortex (C ops,
 * no Lua state). The cortex routes spikes into its inbox like any neuron's
 * (synapse filters, weights and STDP apply on this side); its on_batch
 * hands them to the link. When the link's bounded queue is full, the
 * proxy keeps the rest of the batch and stays refractory until they are
 * all taken: its inbox then waits and fills, the cortex stops draining the
 * producers' axons, and their nb:fire returns "full". Nothing is dropped.
 *
 * Incoming: a spike from a peer is injected into the cortex with its
 * source rewritten to the local proxy of the sending remote neuron (the
 * one the manifest declared for that peer and name, or one made on first
 * sight and named "<peer cortex>/<name>"), so a reply to spike.source goes
 * back over the same link. A full injection queue pauses the link (TCP
 * then pushes back on the peer); it reads again after the next tick.
 *
 * Threads: everything runs on the runtime's thread (its loop's). */
#include "nb_rt_internal.h"
#include "nb_rt_ffi.h"

#include <inttypes.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "nb_link.h"
#include "nb_link_nats.h"
#include "nb_link_wire.h"
#include "nb_linkif.h"

#define NB__GRACE_DEFAULT_NS 2000000000ull /* shutdown: wait for acks */
#define NB__AFTER_STOP_NS 1000000000ull    /* ... for what on_stop fired */
#define NB__RBACK 65536u /* region spikes waiting for the injection queue */

typedef struct peercfg_s {
  char *url;
  nb_link_opts_t o; /* o.secret: a copy owned here */
} peercfg_t;

/* The runtime's side of one link (nb_link_data of the link). */
typedef struct peer_s {
  const nb_linkif_t *ops;   /* the backend carrying it (nb_linkif.h) */
  void *link;
  char *url;                /* dialled url, NULL for callers */
  char name[NB_LINK_NAME_MAX + 1]; /* the peer's cortex once known */
  uint16_t *map;            /* remote id -> local proxy id + 1 (0 unknown),
                               rebuilt after every handshake */
  uint64_t unroutable;      /* spikes the peer cannot take (name not
                               exposed, payload too big, unreadable) */
  uint64_t refused;         /* incoming spikes without a proxy (no id room
                               or an unannounced source) */
  int warned_refused;
  uint32_t proxies;         /* run-time proxies made for its senders */
  uint8_t *no_proxy;        /* remote ids refused a proxy (bits; NULL
                               until one is): refused again at once */
  int warned_proxies;       /* the proxies_per_peer refusal was logged */
  int shared;               /* the last handshake found a shared arena */
  uint64_t held;            /* spikes its proxies still held at close */
  nb_link_stats_t last;     /* counters when the links closed */
  nb_nats_stats_t nlast;    /* NATS counters then (NATS links) */
  int closed;
} peer_t;

typedef struct nb__proxy_s proxy_t;

struct nb__proxy_s {
  nb__agent_t *a;
  char *url;       /* tcp://h:p of the peer, or NULL */
  char *cortex;    /* the peer's cortex (peer:// and run-time proxies) */
  char *remote;    /* the neuron's name in its peer */
  int nats;        /* reached through NATS (cortex names the runtime) */
  peer_t *peer; /* set when the links start */
  int handle;      /* nb_link_target of remote, -1 until bound */
  int dynamic;     /* made at run time for an unannounced sender */
  int carded;      /* made from a NATS card: hidden from discovery while
                      its runtime is gone */
  nb_spike_t *held; /* spikes the link could not take yet, in order */
  uint32_t head, count, cap;
  int warned;
};

struct nb__rtlink_s {
  char *listen;
  char *arena_path;
  uint32_t max_payload;
  nb_link_opts_t accept;
  nb_link_limits_t limits;
  uint32_t hello_timeout_ms;
  uint32_t proxies_per_peer; /* run-time proxies one peer may have */
  char *secret;          /* the cluster secret (a copy), NULL: none */
  uint32_t secret_len;
  int encrypt;
  nb_link_allow_t *allow; /* cortex and secret copies */
  size_t nallow;
  peercfg_t *cfg;
  size_t ncfg;
  proxy_t **px;
  size_t npx, pxcap;
  peer_t **peers;
  size_t npeers, peercap;
  uint32_t nheld;  /* proxies holding spikes */
  nb_link_node_t *node;
  nb__nats_conf_t nats;    /* nats.url NULL: no NATS node */
  nb_nats_node_t *nnode;
  nb_nats_stats_t nnode_last; /* its counters when it closed */
  uv_loop_t *loop;
  int started, closed, after_stop;
  int port;
  uint64_t no_room; /* run-time proxies refused for lack of ids */
  uint64_t pending_at_close; /* spikes still in the cortex when the links
                                closed (they go nowhere) */
  uint64_t now_ns; /* the clock at a tick's first injection, 0 before it:
                      stamps injections (one read per tick at most) */
  uint64_t region_in, region_dropped; /* NATS region spikes injected, and
                                         those nothing could take */
  nb_spike_t *rback;       /* region spikes waiting for injection room */
  uint32_t rhead, rcount;  /* (a ring of NB__RBACK entries) */
};

/* ------------------------------------------------------------------ */
/* configuration                                                       */

/* Returns rt->link, made on first use. */
static struct nb__rtlink_s *rt_link(nb_rt_t *rt) {
  if (!rt->link) {
    rt->link = calloc(1, sizeof *rt->link);
    if (!rt->link) abort();
    rt->link->accept = nb_link_opts_default();
    rt->link->max_payload = NB_FRAME_PAYLOAD_DEFAULT_MAX;
  }
  return rt->link;
}

/* Returns a malloc'd copy of the n bytes at p (NULL for NULL). */
static char *secret_dup(const void *p, size_t n) {
  if (!p) return NULL;
  char *v = malloc(n ? n : 1);
  if (!v) abort();
  memcpy(v, p, n);
  return v;
}

/* Wipes and frees a secret copy of n bytes; returns nothing. */
static void secret_free(const void *p, size_t n) {
  if (!p) return;
  explicit_bzero((void *)p, n);
  free((void *)p);
}

void nb__link_nats_conf_copy(nb__nats_conf_t *dst, const nb__nats_conf_t *src) {
  *dst = *src;
  char **f[] = {&dst->url, &dst->cluster, &dst->user, &dst->password,
                &dst->token, &dst->nkey_public, &dst->nkey_seed, &dst->creds,
                &dst->tls_ca, &dst->tls_cert, &dst->tls_key};
  for (size_t i = 0; i < sizeof f / sizeof *f; i++)
    if (*f[i]) *f[i] = nb__strdup(*f[i]);
}

void nb__link_nats_conf_free(nb__nats_conf_t *c) {
  char **f[] = {&c->url, &c->cluster, &c->user, &c->password, &c->token,
                &c->nkey_public, &c->nkey_seed, &c->creds, &c->tls_ca,
                &c->tls_cert, &c->tls_key};
  for (size_t i = 0; i < sizeof f / sizeof *f; i++) {
    if (*f[i]) secret_free(*f[i], strlen(*f[i]));
    *f[i] = NULL;
  }
}

void nb__link_configure(nb_rt_t *rt, const nb__link_conf_t *conf) {
  struct nb__rtlink_s *rl = rt_link(rt);
  rl->secret = secret_dup(conf->secret, conf->secret_len);
  rl->secret_len = (uint32_t)conf->secret_len;
  rl->encrypt = conf->encrypt;
  rl->allow = conf->nallow ? calloc(conf->nallow, sizeof *rl->allow) : NULL;
  if (conf->nallow && !rl->allow) abort();
  for (size_t i = 0; i < conf->nallow; i++) {
    rl->allow[i].cortex = nb__strdup(conf->allow[i].cortex);
    rl->allow[i].secret = secret_dup(conf->allow[i].secret,
                                     conf->allow[i].secret_len);
    rl->allow[i].secret_len = conf->allow[i].secret_len;
  }
  rl->nallow = conf->nallow;
  if (conf->listen) rl->listen = nb__strdup(conf->listen);
  if (conf->max_payload) rl->max_payload = conf->max_payload;
  rl->accept = conf->accept;
  rl->limits = conf->limits;
  rl->hello_timeout_ms = conf->hello_timeout_ms;
  rl->proxies_per_peer = conf->proxies_per_peer ? conf->proxies_per_peer
                                                : NB_LINK_PROXIES_PER_PEER;
  rl->accept.secret = NULL; /* only dialled links carry one */
  rl->cfg = conf->npeers ? calloc(conf->npeers, sizeof *rl->cfg) : NULL;
  if (conf->npeers && !rl->cfg) abort();
  for (size_t i = 0; i < conf->npeers; i++) {
    rl->cfg[i].url = nb__strdup(conf->peers[i].url);
    rl->cfg[i].o = conf->peers[i].o;
    rl->cfg[i].o.secret = secret_dup(conf->peers[i].o.secret,
                                     conf->peers[i].o.secret_len);
  }
  rl->ncfg = conf->npeers;
  /* A file-backed arena can be shared with a peer on this host. */
  if (conf->arena_path) rl->arena_path = nb__strdup(conf->arena_path);
  nb__link_nats_conf_copy(&rl->nats, &conf->nats);
}

/* ------------------------------------------------------------------ */
/* proxies                                                             */

/* Adds proxy p to the runtime's list; returns nothing. */
static void proxy_track(struct nb__rtlink_s *rl, proxy_t *p) {
  if (rl->npx == rl->pxcap) {
    rl->pxcap = rl->pxcap ? rl->pxcap * 2 : 16;
    proxy_t **v = realloc(rl->px, rl->pxcap * sizeof *v);
    if (!v) abort();
    rl->px = v;
  }
  rl->px[rl->npx++] = p;
}

void nb__link_proxy_new(nb_rt_t *rt, nb__agent_t *a, const char *url,
                        const char *cortex, const char *neuron) {
  proxy_t *p = calloc(1, sizeof *p);
  if (!p) abort();
  p->a = a;
  p->nats = url && !strcmp(url, "nats");
  p->url = url && !p->nats ? nb__strdup(url) : NULL;
  p->cortex = cortex ? nb__strdup(cortex) : NULL;
  p->remote = nb__strdup(neuron);
  p->handle = -1;
  a->proxy = p;
  proxy_track(rt_link(rt), p);
}

void nb__link_proxy_free(proxy_t *p) {
  if (!p) return;
  free(p->url);
  free(p->cortex);
  free(p->remote);
  if (p->count) nb__refs_release(p->a->rt->arena, p->held + p->head, p->count);
  free(p->held);
  free(p);
}

/* Counts a spike the peer can never take (the reason is rc) and logs the
 * first one per proxy; returns nothing. */
static void proxy_unroutable(proxy_t *p, int rc) {
  if (p->peer) p->peer->unroutable++;
  /* Also a dead letter of the proxy, like a spike to a stopped neuron. */
  nb_cortex_add_dead_letters(p->a->rt->cx, (nb_id_t)p->a->cell.id, 1);
  if (p->warned) return;
  p->warned = 1;
  const char *peer = p->peer ? p->peer->name : "?";
  fprintf(nb__log(stderr), "neuronbus: link to peer '%s': spikes to remote neuron "
          "\"%s\" (local \"%s\") cannot be delivered: %s%s; they are "
          "counted as unroutable in the link statistics\n", peer, p->remote,
          p->a->name, nb_strerror(rc),
          rc == NB_ENOENT ? " (the peer does not expose that name)" : "");
  fflush(stderr);
}

/* Hands count spikes to the proxy's link in order; returns how many were
 * taken (sent, or counted unroutable), stopping at the first one the link
 * cannot take now. */
static size_t proxy_push(proxy_t *p, const nb_spike_t *s,
                         size_t count) {
  /* Not started, or the links are closed: hold. */
  if (!p->peer || !p->peer->link || p->handle < 0) return 0;
  void *l = p->peer->link;
  const nb_linkif_t *ops = p->peer->ops;
  size_t i = 0;
  while (i < count) {
    /* A run at once where the backend can; send for the spike it stops
     * at, which takes it or says why not. */
    if (ops->send_run) {
      i += ops->send_run(l, p->handle, &s[i], count - i);
      if (i == count) break;
    }
    int rc = ops->send(l, p->handle, &s[i], NULL, 0);
    if (rc == 0) {
      i++;
      continue;
    }
    /* Room (or memory, or the link) may come back: keep it. */
    if (rc == NB_EFULL || rc == NB_ENOMEM || rc == NB_ECLOSED) break;
    proxy_unroutable(p, rc);
    i++;
  }
  return i;
}

/* Appends count spikes to the proxy's held queue; returns nothing. */
static void proxy_hold(struct nb__rtlink_s *rl, proxy_t *p,
                       const nb_spike_t *s, size_t count) {
  if (!count) return;
  if (p->head && p->head + p->count + count > p->cap) {
    memmove(p->held, p->held + p->head, p->count * sizeof *p->held);
    p->head = 0;
  }
  if (p->count + count > p->cap) {
    size_t cap = p->cap ? p->cap : 256;
    while (cap < p->count + count) cap *= 2;
    /* nb_spike_t is 64-byte aligned. */
    nb_spike_t *v = aligned_alloc(64, cap * sizeof *v);
    if (!v) abort();
    if (p->count) memcpy(v, p->held + p->head, p->count * sizeof *v);
    free(p->held);
    p->held = v;
    p->head = 0;
    p->cap = (uint32_t)cap;
  }
  if (p->count == 0) rl->nheld++;
  memcpy(p->held + p->head + p->count, s, count * sizeof *s);
  /* The batch's references end when the handler returns: held copies keep
   * their own. */
  nb__refs_retain(p->a->rt->arena, s, count);
  p->count += (uint32_t)count;
  /* Held: its inbox waits (and fills), so the cortex stops draining the
   * producers' axons and their fire reports full. */
  nb_neuron_hold(p->a->neuron, 1);
}

/* Offers the held spikes to the link again; returns 1 when none is left
 * (the proxy takes new spikes again), else 0. */
static int proxy_retry(struct nb__rtlink_s *rl, proxy_t *p) {
  if (!p->count) return 1;
  /* No room: asking would only count another refusal. */
  if (p->peer && p->peer->link && !p->peer->ops->room(p->peer->link)) return 0;
  size_t n = proxy_push(p, p->held + p->head, p->count);
  nb__refs_release(p->a->rt->arena, p->held + p->head, n);
  p->head += (uint32_t)n;
  p->count -= (uint32_t)n;
  if (p->count) return 0;
  p->head = 0;
  rl->nheld--;
  nb_neuron_hold(p->a->neuron, 0);
  return 1;
}

/* ops.on_batch of a proxy: the batch goes to the link; what it cannot
 * take now is held (in order) and so is the proxy (nb_neuron_hold). Returns 0
 * (nothing here is an agent error). */
static int proxy_batch(void *agent, nb_neuron_t *n,
                       const nb_spike_t *spikes, const float *weights,
                       size_t count) {
  nb__agent_t *a = agent;
  proxy_t *p = a->proxy;
  struct nb__rtlink_s *rl = a->rt->link;
  NB__SVC_SCOPE(a->rt); /* the link is the loop's */
  size_t i = 0;
  /* Held spikes go first: a batch never overtakes them. */
  if (proxy_retry(rl, p)) i = proxy_push(p, spikes, count);
  proxy_hold(rl, p, spikes + i, count - i);
  return 0;
}

/* ops.on_spike fallback of a proxy (the cortex calls on_batch); returns
 * as proxy_batch. */
static int proxy_spike(void *agent, nb_neuron_t *n, const nb_spike_t *s,
                       float weight) {
  return proxy_batch(agent, n, s, &weight, 1);
}

const nb_agent_ops_t nb__proxy_ops = {
  .on_batch = proxy_batch,
  .on_spike = proxy_spike,
};

/* Makes a run-time proxy called name for peer's neuron remote, with the
 * capabilities and regions of its card when nn is not NULL (so local
 * discovery finds it); returns its id, or -1 (no id room: logged once). */
static int proxy_dynamic(nb_rt_t *rt, peer_t *peer, const char *remote,
                         const char *name, const nb_nats_neuron_t *nn) {
  struct nb__rtlink_s *rl = rt->link;
  if (peer->proxies >= rl->proxies_per_peer) {
    /* Why: each proxy is a neuron with its own inbox; a peer naming
     * thousands of senders would fill the cortex's id space and memory
     * and leave no room for other peers. */
    if (!peer->warned_proxies++)
      fprintf(nb__log(stderr), "neuronbus: link to peer '%s': refused a local neuron "
              "for its \"%s\": it already has %u "
              "(link_limits.proxies_per_peer); spikes from its other senders "
              "are refused (counted in the link's rejected)\n", peer->name,
              remote, rl->proxies_per_peer);
    return -1;
  }
  nb__agent_t *a = rt->host->agent_new(rt, name);
  proxy_t *p = calloc(1, sizeof *p);
  if (!p) abort();
  p->a = a;
  p->cortex = nb__strdup(peer->name);
  p->remote = nb__strdup(remote);
  p->peer = peer;
  p->dynamic = 1;
  p->carded = nn != NULL;
  p->handle = peer->ops->target(peer->link, remote);
  a->proxy = p;
  nb_if_params_t ip = nb_if_params_default();
  ip.threshold = 1e30f; /* never fires on its own */
  ip.refractory = 0;
  nb_card_t card;
  memset(&card, 0, sizeof card);
  card.name = a->name;
  for (int w = 0; nn && w < 2; w++) {
    size_t k = w ? nn->nreg : nn->ncap;
    if (k > NB_CARD_MAX_TAGS) k = NB_CARD_MAX_TAGS;
    for (size_t j = 0; j < k; j++) {
      a->tags[w][j] = nb__strdup(w ? nn->regs[j] : nn->caps[j]);
      (w ? card.regions : card.capabilities)[j] = a->tags[w][j];
    }
    a->ntags[w] = k;
    if (w) card.nregions = k;
    else card.ncapabilities = k;
  }
  int rc = p->handle < 0 ? p->handle
                         : nb_cortex_register(rt->cx, &card, &ip,
                                              &nb__proxy_ops, a, &a->neuron);
  if (rc != 0) {
    if (!rl->no_room++)
      fprintf(nb__log(stderr), "neuronbus: link to peer '%s': cannot make a local "
              "neuron for its \"%s\": %s; spikes from it are refused "
              "(counted in the link's rejected)\n", peer->name, remote,
              nb_strerror(rc));
    nb__link_proxy_free(p);
    free(a->name);
    free(a);
    return -1;
  }
  rt->host->agent_add(rt, a);
  proxy_track(rl, p);
  peer->proxies++;
  return (int)a->cell.id;
}

/* Returns the local id standing for peer's neuron remote_id: the proxy
 * the manifest declared for that peer and name, else "<peer>/<name>"
 * (made on first sight); -1 when there is none. */
static int source_for(nb_rt_t *rt, peer_t *peer, nb_id_t remote_id) {
  if (peer->map && peer->map[remote_id]) return peer->map[remote_id] - 1;
  if (peer->no_proxy && (peer->no_proxy[remote_id >> 3] & (1u << (remote_id & 7))))
    return -1;
  const char *name = peer->ops->peer_neuron(peer->link, remote_id);
  if (!name) return -1;
  struct nb__rtlink_s *rl = rt->link;
  int id = -1;
  for (size_t i = 0; i < rl->npx && id < 0; i++) {
    proxy_t *p = rl->px[i];
    if (p->peer == peer && !p->dynamic && !strcmp(p->remote, name))
      id = (int)p->a->cell.id;
  }
  if (id < 0) {
    char *dyn = nb__strf("%s/%s", peer->name, name);
    for (uint32_t i = 0; i < rt->n && id < 0; i++)
      if (!strcmp(rt->agents[i]->name, dyn)) id = (int)i;
    if (id < 0) id = proxy_dynamic(rt, peer, name, dyn, NULL);
    free(dyn);
    if (id < 0 && (peer->no_proxy || (peer->no_proxy = calloc(8192, 1))))
      peer->no_proxy[remote_id >> 3] |= (uint8_t)(1u << (remote_id & 7));
  }
  if (id < 0) return -1;
  if (!peer->map) {
    peer->map = calloc(65536, sizeof *peer->map);
    if (!peer->map) return id;
  }
  peer->map[remote_id] = (uint16_t)(id + 1);
  return id;
}

/* ------------------------------------------------------------------ */
/* links                                                               */

/* Returns the runtime's record of link l (of backend ops), made on first
 * sight. */
static peer_t *peer_of(struct nb__rtlink_s *rl, const nb_linkif_t *ops,
                       void *l) {
  peer_t *p = ops->data(l);
  if (p) return p;
  p = calloc(1, sizeof *p);
  if (!p) abort();
  p->ops = ops;
  p->link = l;
  snprintf(p->name, sizeof p->name, "%s", ops->peer(l));
  if (rl->npeers == rl->peercap) {
    rl->peercap = rl->peercap ? rl->peercap * 2 : 8;
    peer_t **v = realloc(rl->peers, rl->peercap * sizeof *v);
    if (!v) abort();
    rl->peers = v;
  }
  rl->peers[rl->npeers++] = p;
  ops->set_data(l, p);
  return p;
}

/* Drops the record of link l, which the node is freeing (a caller that
 * carried no spike: no proxy points at it); returns nothing. */
static void peer_forget(struct nb__rtlink_s *rl, nb_link_t *l) {
  peer_t *p = nb_link_data(l);
  if (!p) return;
  for (size_t i = 0; i < rl->npeers; i++)
    if (rl->peers[i] == p) {
      memmove(&rl->peers[i], &rl->peers[i + 1],
              (rl->npeers - i - 1) * sizeof *rl->peers);
      rl->npeers--;
      break;
    }
  free(p->map);
  free(p->no_proxy);
  free(p);
}

/* Injects spike s of peer with the source mapped to its local proxy;
 * returns 0, NB_EFULL (the link pauses), or a refusal. */
static int peer_spike(nb_rt_t *rt, peer_t *peer, const nb_spike_t *s) {
  struct nb__rtlink_s *rl = rt->link;
  int src = source_for(rt, peer, s->source);
  if (src < 0) {
    peer->refused++;
    if (!peer->warned_refused++)
      fprintf(nb__log(stderr), "neuronbus: link to peer '%s': a spike from its neuron "
              "id %u has no local proxy; refused (counted in rejected)\n",
              peer->name, (unsigned)s->source);
    return NB_ENOENT;
  }
  /* The peer's clock means nothing here, and STDP compares timestamps: our
   * clock as of this tick's first injection (never 0, never decreasing). */
  if (!rl->now_ns) rl->now_ns = nb_clock_ns();
  return nb_cortex_inject_as(rt->cx, s, (nb_id_t)src, rl->now_ns);
}

/* Injects a spike of link l (of backend ops); returns as peer_spike. */
static int link_spike(nb_rt_t *rt, const nb_linkif_t *ops, void *l,
                      const nb_spike_t *s) {
  /* After on_stop nothing is taken: unacknowledged, the peer keeps it. */
  if (rt->link->after_stop) return NB_EFULL;
  return peer_spike(rt, peer_of(rt->link, ops, l), s);
}

/* on_spike of the TCP node: see link_spike. */
static int on_link_spike(void *ud, nb_link_t *l, const nb_spike_t *s,
                         const void *payload, size_t len) {
  (void)payload; (void)len;
  return link_spike(ud, &nb_linkif_tcp, l, s);
}

/* on_spikes of the TCP node: link_spike for each of a run, the peer found
 * once; returns how many were taken or refused (refusals in *rejected),
 * stopping before the first that found the cortex's injection queue
 * full. */
static size_t on_link_spikes(void *ud, nb_link_t *l, const nb_spike_t *s,
                             size_t n, size_t *rejected) {
  nb_rt_t *rt = ud;
  if (rt->link->after_stop) return 0;
  peer_t *peer = peer_of(rt->link, &nb_linkif_tcp, l);
  size_t i = 0;
  for (; i < n; i++) {
    int rc = peer_spike(rt, peer, &s[i]);
    if (rc == NB_EFULL) break;
    if (rc < 0) ++*rejected;
  }
  return i;
}

/* on_spike of the NATS node: see link_spike. */
static int on_nats_spike(void *ud, nb_nats_link_t *l, const nb_spike_t *s,
                         const void *payload, size_t len) {
  (void)payload; (void)len;
  return link_spike(ud, &nb_linkif_nats, l, s);
}

static void nats_cards(nb_rt_t *rt, peer_t *peer);

/* A link's state changed: names resolve anew after every handshake (or
 * new card); returns nothing. */
static void link_event(nb_rt_t *rt, const nb_linkif_t *ops, void *l,
                       nb_link_event_t ev) {
  if (ev == NB_LINK_GONE) {
    peer_forget(rt->link, l);
    return;
  }
  peer_t *p = peer_of(rt->link, ops, l);
  if (ev == NB_LINK_UP) {
    snprintf(p->name, sizeof p->name, "%s", ops->peer(l));
    p->shared = ops->is_shared(l);
    /* A reconnected peer may have renumbered its neurons. */
    if (p->map) memset(p->map, 0, 65536 * sizeof *p->map);
    if (p->no_proxy) memset(p->no_proxy, 0, 8192);
    if (ops == &nb_linkif_nats) nats_cards(rt, p);
  }
}

/* A NATS peer's card arrived: each of its neurons gets a local proxy
 * "<cortex>/<name>" with its capabilities and regions (made once, kept
 * across its restarts), so nb:discover and nb:region find it and
 * fire_to reaches it by that name; returns nothing. */
static void nats_cards(nb_rt_t *rt, peer_t *peer) {
  nb_nats_neuron_t *nn = malloc(sizeof *nn); /* ~8 KB: not on the stack */
  if (!nn) abort();
  for (size_t i = 0; nb_nats_link_neuron(peer->link, i, nn); i++) {
    char *dyn = nb__strf("%s/%s", peer->name, nn->name);
    int found = 0;
    for (uint32_t j = 0; j < rt->n && !found; j++)
      found = !strcmp(rt->agents[j]->name, dyn);
    if (!found) proxy_dynamic(rt, peer, nn->name, dyn, nn);
    free(dyn);
  }
  free(nn);
}

int nb__link_hidden(const nb_rt_t *rt, uint32_t id) {
  if (id >= rt->n || !rt->agents[id]->proxy) return 0;
  const proxy_t *p = rt->agents[id]->proxy;
  return p->carded && p->peer && p->peer->link &&
         !p->peer->ops->is_up(p->peer->link);
}

/* on_event of the TCP node: see link_event. */
static void on_link_event(void *ud, nb_link_t *l, nb_link_event_t ev) {
  link_event(ud, &nb_linkif_tcp, l, ev);
}

/* on_region of the NATS node: a spike broadcast to region path by a
 * neuron of another runtime goes to each local neuron of the subtree (one
 * reference of a large payload each); returns 0, or NB_ENOENT when none is
 * here or the sender has no local stand-in. */
static int on_nats_region(void *ud, nb_nats_link_t *l, const char *path,
                          const nb_spike_t *s, const void *payload,
                          size_t len) {
  (void)payload; (void)len;
  nb_rt_t *rt = ud;
  struct nb__rtlink_s *rl = rt->link;
  if (rl->after_stop) return NB_ECLOSED;
  peer_t *peer = peer_of(rl, &nb_linkif_nats, l);
  int src = source_for(rt, peer, s->source);
  size_t n = src < 0 ? 0 : nb_cortex_region(rt->cx, path, NULL, 0);
  nb_id_t *ids = n ? malloc(n * sizeof *ids) : NULL;
  if (n && !ids) return NB_ENOMEM;
  n = n ? nb_cortex_region(rt->cx, path, ids, n) : 0;
  size_t k = 0;
  for (size_t i = 0; i < n; i++)
    if (!rt->agents[ids[i]]->proxy) ids[k++] = ids[i];
  if (!k) {
    free(ids);
    return NB_ENOENT;
  }
  nb_arena_ref_t ref;
  int is_ref = nb_spike_is_ref(s) && nb_spike_get_ref(s, &ref) == 0;
  if (is_ref && k > 1) nb_arena_retain(rt->arena, &ref, (uint32_t)(k - 1));
  if (!rl->now_ns) rl->now_ns = nb_clock_ns();
  for (size_t i = 0; i < k; i++) {
    nb_spike_t in = *s;
    in.source = (nb_id_t)src;
    in.target = ids[i];
    in.timestamp_ns = rl->now_ns;
    /* Behind the ones already waiting (their order is kept), or now. */
    if (!rl->rcount && nb_cortex_inject(rt->cx, &in) == 0) {
      rl->region_in++;
      continue;
    }
    if (!rl->rback && !(rl->rback = aligned_alloc(64, NB__RBACK * sizeof *rl->rback)))
      abort();
    if (rl->rcount < NB__RBACK) {
      rl->rback[(rl->rhead + rl->rcount++) % NB__RBACK] = in;
    } else {
      /* At most once: past the waiting room it is dropped, counted. */
      if (is_ref) nb_arena_release(rt->arena, &ref, 1);
      rl->region_dropped++;
    }
  }
  free(ids);
  return 0;
}

/* Injects the region spikes that waited for room, in order, until the
 * queue is full again; returns nothing. */
static void region_retry(nb_rt_t *rt) {
  struct nb__rtlink_s *rl = rt->link;
  while (rl->rcount && nb_cortex_inject(rt->cx, &rl->rback[rl->rhead]) == 0) {
    rl->rhead = (rl->rhead + 1) % NB__RBACK;
    rl->rcount--;
    rl->region_in++;
  }
}

int nb_rt_fire_region(nb_rt_cell_t *cell, const char *path, const char *data,
                      size_t len) {
  nb__agent_t *a = (nb__agent_t *)cell;
  nb_rt_t *rt = a->rt;
  if (!path || (len && !data)) return NB_EINVAL;
  size_t n = nb_cortex_region(rt->cx, path, NULL, 0);
  nb_id_t *ids = n ? malloc(n * sizeof *ids) : NULL;
  if (n && !ids) return NB_ENOMEM;
  n = n ? nb_cortex_region(rt->cx, path, ids, n) : 0;
  int fired = 0, rc = 0;
  for (size_t i = 0; i < n && rc == 0; i++) {
    const nb__agent_t *b = rt->agents[ids[i]];
    /* Neurons of NATS runtimes get the one publish below. */
    if (b->proxy && b->proxy->carded) continue;
    if (ids[i] == a->cell.id) continue; /* not to itself */
    rc = nb_rt_fire(cell, ids[i], 0, 0, data, len);
    if (rc == 0) fired++;
  }
  free(ids);
  if (rc != 0) return rc;
  struct nb__rtlink_s *rl = rt->link;
  if (rl && rl->nnode) {
    NB__SVC_SCOPE(rt); /* the NATS node is the loop's */
    nb_spike_t s;
    nb_spike_init(&s, 0, NB_EXCITATORY, 0);
    s.source = (nb_id_t)a->cell.id;
    s.timestamp_ns = nb_clock_ns();
    if (len <= NB_PAYLOAD_MAX) nb_spike_set_payload(&s, data, len);
    rc = nb_nats_region_send(rl->nnode, path, &s, data, len);
    if (rc != 0) return rc;
  }
  return fired;
}

/* on_event of the NATS node: see link_event. */
static void on_nats_event(void *ud, nb_nats_link_t *l, nb_link_event_t ev) {
  link_event(ud, &nb_linkif_nats, l, ev);
}

/* Sets *flag once the node has freed itself; returns nothing. */
static void node_done(void *ud) { *(int *)ud = 1; }

/* Closes the node and runs the loop until it is gone; returns nothing. */
static void node_close(struct nb__rtlink_s *rl) {
  if (!rl->node && !rl->nnode) return;
  for (size_t i = 0; i < rl->npx; i++)
    if (rl->px[i]->peer) rl->px[i]->peer->held += rl->px[i]->count;
  for (size_t i = 0; i < rl->npeers; i++) {
    peer_t *p = rl->peers[i];
    p->ops->stats(p->link, &p->last);
    if (p->ops == &nb_linkif_nats) nb_nats_link_stats(p->link, &p->nlast);
    snprintf(p->name, sizeof p->name, "%s", p->ops->peer(p->link));
    /* The close counts what is still queued or in doubt as lost. */
    uint64_t gone = p->last.queued + p->last.in_doubt;
    p->last.lost += gone;
    p->last.queued = p->last.in_doubt = 0;
    if (gone || p->held)
      fprintf(nb__log(stderr), "neuronbus: link to peer '%s' closed with %" PRIu64
              " spikes unacknowledged (counted lost) and %" PRIu64 " not "
              "yet taken by it (held)\n", p->name, gone, p->held);
    p->closed = 1;
    p->link = NULL; /* freed by the close */
  }
  int done = 0, ndone = 0;
  if (rl->node) nb_link_node_close(rl->node, node_done, &done);
  else done = 1;
  if (rl->nnode) {
    nb_nats_node_stats(rl->nnode, &rl->nnode_last);
    nb_nats_node_close(rl->nnode, node_done, &ndone);
  }
  else ndone = 1;
  rl->nnode = NULL;
  /* Close callbacks run in one or two turns; NOWAIT never blocks on the
   * runtime's other handles. */
  for (int i = 0; !(done && ndone) && i < 100000; i++)
    uv_run(rl->loop, UV_RUN_NOWAIT);
  /* What was still queued is counted lost by the close. */
  rl->node = NULL;
  rl->closed = 1;
}

/* Connects the NATS node of the manifest's nats section and announces
 * every local neuron's card; returns 0 or NB_EIO (the reason, naming the
 * server, on stderr). */
static int nats_start(nb_rt_t *rt) {
  struct nb__rtlink_s *rl = rt->link;
  const nb__nats_conf_t *c = &rl->nats;
  nb_nats_opts_t o;
  memset(&o, 0, sizeof o);
  o.cortex = rt->name;
  o.url = c->url;
  o.cluster = c->cluster;
  o.user = c->user;
  o.password = c->password;
  o.token = c->token;
  o.nkey_public = c->nkey_public;
  o.nkey_seed = c->nkey_seed;
  o.creds = c->creds;
  o.tls_ca = c->tls_ca;
  o.tls_cert = c->tls_cert;
  o.tls_key = c->tls_key;
  o.arena = rt->arena;
  o.max_payload = rl->max_payload;
  o.window = c->window;
  o.window_bytes = c->window_bytes;
  o.batch_bytes = c->batch_bytes;
  o.resend_ms = c->resend_ms;
  o.announce_ms = c->announce_ms;
  o.connect_ms = c->connect_ms;
  o.on_spike = on_nats_spike;
  o.on_event = on_nats_event;
  o.on_region = on_nats_region;
  o.ud = rt;
  o.quiet = rt->opts.quiet;
  char *err = NULL;
  int rc = nb_nats_node_new(&rl->nnode, rl->loop, &o, &err);
  if (rc != 0) {
    fprintf(stderr, "neuronbus: %s\n", err ? err : nb_strerror(rc));
    free(err);
    return rc;
  }
  for (uint32_t i = 0; i < rt->n && rc == 0; i++) {
    nb__agent_t *a = rt->agents[i];
    if (a->proxy) continue; /* reached through its own runtime */
    nb_nats_neuron_t *nn = calloc(1, sizeof *nn);
    if (!nn) abort();
    nn->id = (nb_id_t)i;
    snprintf(nn->name, sizeof nn->name, "%s", a->name);
    for (int w = 0; w < 2; w++) {
      size_t k = a->ntags[w] < NB_NATS_TAGS_MAX ? a->ntags[w] : NB_NATS_TAGS_MAX;
      for (size_t j = 0; j < k; j++)
        snprintf(w ? nn->regs[j] : nn->caps[j], 256, "%s", a->tags[w][j]);
      if (w) nn->nreg = (uint8_t)k;
      else nn->ncap = (uint8_t)k;
    }
    rc = nb_nats_node_expose(rl->nnode, nn);
    free(nn);
  }
  if (rc == 0) rc = nb_nats_node_start(rl->nnode);
  else
    fprintf(stderr, "neuronbus: cannot announce the neurons of %s on NATS: "
            "%s\n", rt->name, nb_strerror(rc));
  return rc;
}

int nb_rt_link_start(nb_rt_t *rt, void *uv_loop) {
  struct nb__rtlink_s *rl = rt->link;
  if (!rl) return 0;
  if (rl->started) return NB_EEXIST;
  rl->loop = uv_loop;
  if (!rt->loop) rt->loop = uv_loop; /* the caller's (a test's) loop */
  /* A peer that closes while we write must cost a write error, not the
   * process (SIGPIPE's default); a handler someone installed stays. */
  struct sigaction sa;
  if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL)
    signal(SIGPIPE, SIG_IGN);
  nb_link_node_opts_t o;
  memset(&o, 0, sizeof o);
  o.cortex = rt->name;
  o.arena = rt->arena;
  o.max_payload = rl->max_payload;
  o.on_spike = on_link_spike;
  o.on_spikes = on_link_spikes;
  o.on_event = on_link_event;
  o.ud = rt;
  o.accept = rl->accept;
  o.limits = rl->limits;
  o.hello_timeout_ms = rl->hello_timeout_ms;
  o.secret = rl->secret;
  o.secret_len = rl->secret_len;
  o.encrypt = rl->encrypt;
  o.allow = rl->allow;
  o.nallow = (uint32_t)rl->nallow;
  o.arena_path = rl->arena_path; /* a file arena may be shared with a peer */
  /* Quiet runtimes (tests, benches) keep warnings and errors only. */
  o.log_level = rt->opts.quiet ? NB_LINK_LOG_WARN : NB_LINK_LOG_INFO;
  int rc = nb_link_node_new(&rl->node, rl->loop, &o);
  if (rc != 0) {
    fprintf(nb__log(stderr), "neuronbus: cannot start the links of %s: %s (the "
            "topology's name must be 1..255 bytes of UTF-8, a secret at least "
            "16 bytes)\n", rt->name,
            nb_strerror(rc));
    return rc;
  }
  rl->started = 1;
  /* Every local neuron is reachable by name; proxies are not (a peer's
   * neuron is reached through its own peer). Names go out in the HELLO,
   * so this comes before listening and dialling. */
  for (uint32_t i = 0; i < rt->n && rc == 0; i++)
    if (!rt->agents[i]->proxy)
      rc = nb_link_node_expose(rl->node, rt->agents[i]->name, (nb_id_t)i);
  if (rc != 0) {
    fprintf(nb__log(stderr), "neuronbus: cannot expose the neurons of %s to peers: "
            "%s\n", rt->name, nb_strerror(rc));
  } else if (rl->listen) {
    rc = nb_link_node_listen(rl->node, rl->listen);
    if (rc == 0) rl->port = nb_link_node_port(rl->node);
    else
      fprintf(nb__log(stderr), "neuronbus: cannot listen on %s: %s\n", rl->listen,
              rc == NB_EIO ? "the address is taken or not local (see the "
                             "line above)" : nb_strerror(rc));
  }
  for (size_t i = 0; i < rl->ncfg && rc == 0; i++) {
    nb_link_t *l = NULL;
    rc = nb_link_connect(rl->node, rl->cfg[i].url, &rl->cfg[i].o, &l);
    if (rc != 0) {
      fprintf(nb__log(stderr), "neuronbus: cannot dial %s: %s\n", rl->cfg[i].url,
              nb_strerror(rc));
      break;
    }
    peer_t *p = peer_of(rl, &nb_linkif_tcp, l);
    p->url = rl->cfg[i].url;
  }
  if (rc == 0 && rl->nats.url) rc = nats_start(rt);
  for (size_t i = 0; i < rl->npx && rc == 0; i++) {
    proxy_t *p = rl->px[i];
    nb_link_t *l = NULL;
    if (p->nats) {
      nb_nats_link_t *nl = nb_nats_link(rl->nnode, p->cortex);
      p->peer = nl ? peer_of(rl, &nb_linkif_nats, nl) : NULL;
      p->handle = p->peer ? nb_linkif_nats.target(nl, p->remote) : NB_EINVAL;
      if (p->handle < 0) rc = p->handle;
      if (rc != 0)
        fprintf(stderr, "neuronbus: remote neuron \"%s\" (nats://%s/%s): "
                "cannot bind it to its link: %s\n", p->a->name, p->cortex,
                p->remote, nb_strerror(rc));
      continue;
    }
    if (p->url) {
      for (size_t j = 0; j < rl->npeers && !l; j++)
        if (rl->peers[j]->url && !strcmp(rl->peers[j]->url, p->url))
          l = rl->peers[j]->link;
      if (!l) rc = NB_EINVAL; /* the manifest lists every remote's peer */
    } else {
      rc = nb_link_expect(rl->node, p->cortex, NULL, &l);
    }
    if (rc == 0) {
      p->peer = peer_of(rl, &nb_linkif_tcp, l);
      p->handle = nb_link_target(l, p->remote);
      if (p->handle < 0) rc = p->handle;
    }
    if (rc != 0)
      fprintf(nb__log(stderr), "neuronbus: remote neuron \"%s\" (%s%s/%s): cannot "
              "bind it to its link: %s\n", p->a->name,
              p->url ? p->url : "peer://", p->url ? "" : p->cortex,
              p->remote, nb_strerror(rc));
  }
  if (rc != 0) {
    node_close(rl);
    return rc;
  }
  return 0;
}

int nb_rt_link_port(const nb_rt_t *rt) {
  return rt->link ? rt->link->port : 0;
}

void nb__link_pretick(nb_rt_t *rt) {
  struct nb__rtlink_s *rl = rt->link;
  if (!rl->started || rl->closed) return;
  /* Read when the first spike of the tick arrives (link_spike): most
   * ticks of a free-running loop get none. */
  rl->now_ns = 0;
  if (rl->rcount) region_retry(rt);
  if (rl->nheld)
    for (size_t i = 0; i < rl->npx; i++) proxy_retry(rl, rl->px[i]);
  /* The last tick drained the injection queue: paused links read again
   * (one that still finds it full pauses again). */
  if (!rl->after_stop)
    for (size_t i = 0; i < rl->npeers; i++)
      if (rl->peers[i]->ops->is_paused(rl->peers[i]->link))
        rl->peers[i]->ops->resume(rl->peers[i]->link);
}

/* Returns 1 when nothing waits to leave: the cortex is quiescent, no proxy
 * holds a spike, and every link has its spikes acknowledged; else 0. */
static int all_flushed(nb_rt_t *rt) {
  struct nb__rtlink_s *rl = rt->link;
  if (rl->nheld || nb_cortex_pending(rt->cx)) return 0;
  for (size_t i = 0; i < rl->npeers; i++) {
    nb_link_stats_t st;
    rl->peers[i]->ops->stats(rl->peers[i]->link, &st);
    if (st.queued || st.in_doubt) return 0;
  }
  return 1;
}

/* Does nothing: a timer that keeps UV_RUN_ONCE from sleeping long. */
static void wake_noop(uv_timer_t *t) { (void)t; }

/* Ticks and turns the loop until flushed or deadline_ns; returns nothing. */
static void drain_links(nb_rt_t *rt, uint64_t deadline_ns) {
  while (!all_flushed(rt) && nb_clock_ns() < deadline_ns) {
    rt->host->tick(rt, 1);
    uv_run(rt->link->loop, UV_RUN_ONCE);
  }
}

/* Frees the wake timer once closed; returns nothing. */
static void wake_closed(uv_handle_t *h) { free(h); }

void nb_rt_link_stop(nb_rt_t *rt, uint64_t grace_ns) {
  struct nb__rtlink_s *rl = rt->link;
  if (!rl || !rl->started || rl->closed) {
    rt->host->stop(rt, 0);
    return;
  }
  if (!grace_ns) grace_ns = NB__GRACE_DEFAULT_NS;
  uv_timer_t *wake = malloc(sizeof *wake);
  if (!wake) abort();
  uv_timer_init(rl->loop, wake);
  uv_timer_start(wake, wake_noop, 1, 1);
  /* 1. No new periodic work (stopped gates agents' tick), but spikes keep
   * flowing both ways until what was fired left and was acknowledged. */
  int was = rt->stopped;
  rt->stopped = 1;
  drain_links(rt, nb_clock_ns() + grace_ns);
  rt->stopped = was;
  /* 2. on_stop, with what is pending delivered first. */
  rt->host->stop(rt, 0);
  /* 3. What on_stop fired leaves too; peers' spikes are no longer taken. */
  rl->after_stop = 1;
  drain_links(rt, nb_clock_ns() +
                    (grace_ns < NB__AFTER_STOP_NS ? grace_ns : NB__AFTER_STOP_NS));
  uv_close((uv_handle_t *)wake, wake_closed);
  rl->pending_at_close = nb_cortex_pending(rt->cx);
  if (rl->pending_at_close)
    fprintf(nb__log(stderr), "neuronbus: %" PRIu64 " spikes were still waiting in the "
            "cortex when the links closed (the drain time ran out)\n",
            rl->pending_at_close);
  node_close(rl);
}

/* ------------------------------------------------------------------ */
/* statistics                                                          */

size_t nb_rt_link_count(const nb_rt_t *rt) {
  return rt->link ? rt->link->npeers : 0;
}

int nb_rt_link_stats(const nb_rt_t *rt, size_t i, void *out,
                     const char **peer) {
  if (!rt->link || i >= rt->link->npeers) return NB_ENOENT;
  peer_t *p = rt->link->peers[i];
  if (p->closed) *(nb_link_stats_t *)out = p->last;
  else p->ops->stats(p->link, out);
  if (peer) *peer = p->closed ? p->name : p->ops->peer(p->link);
  return 0;
}

/* Returns the spikes proxies bound to peer p hold (now, or at close). */
static uint64_t held_count(const struct nb__rtlink_s *rl, const peer_t *p) {
  if (p->closed) return p->held;
  uint64_t n = 0;
  for (size_t i = 0; i < rl->npx; i++)
    if (rl->px[i]->peer == p) n += rl->px[i]->count;
  return n;
}

/* Returns the state word of link p: "up", "paused", "down", "closed". */
static const char *state_of(const peer_t *p) {
  if (p->closed) return "closed";
  if (!p->ops->is_up(p->link)) return "down";
  return p->ops->is_paused(p->link) ? "paused" : "up";
}

static void nats_print_stats(nb_rt_t *rt, FILE *f);

void nb__link_print_stats(nb_rt_t *rt, FILE *f) {
  struct nb__rtlink_s *rl = rt->link;
  fprintf(f, "  links%s%s", rl->listen ? ": listening on " : "",
          rl->listen ? rl->listen : "");
  if (rl->port) fprintf(f, " (port %d)", rl->port);
  fputc('\n', f);
  if (rl->npeers)
    fprintf(f, "  %-20s %-6s %10s %10s %8s %7s %10s %8s %10s %6s %6s %7s"
            " %7s %8s\n", "peer", "state", "sent", "acked", "resent", "lost",
            "received", "rejected", "unroutable", "reconn", "errors",
            "queued", "full", "rtt_ms");
  for (size_t i = 0; i < rl->npeers; i++) {
    peer_t *p = rl->peers[i];
    nb_link_stats_t st;
    const char *peer;
    nb_rt_link_stats(rt, i, &st, &peer);
    fprintf(f, "  %-20.20s %-6s %10" PRIu64 " %10" PRIu64 " %8" PRIu64
            " %7" PRIu64 " %10" PRIu64 " %8" PRIu64 " %10" PRIu64 " %6"
            PRIu64 " %6" PRIu64 " %7" PRIu64 " %7" PRIu64 " %8.3f\n", peer,
            state_of(p), st.sent, st.acked, st.resent, st.lost,
            st.received, st.rejected, p->unroutable, st.reconnects,
            st.errors, st.queued, st.full, (double)st.rtt_ns / 1e6);
  }
  nats_print_stats(rt, f);
}

/* Fills *out with the NATS counters of peer p (now, or at close);
 * returns 1 for a NATS link, else 0. */
static int nats_counters(const peer_t *p, nb_nats_stats_t *out) {
  if (p->ops != &nb_linkif_nats) return 0;
  if (p->closed) *out = p->nlast;
  else nb_nats_link_stats(p->link, out);
  return 1;
}

/* Prints the NATS rows (one per NATS link) to f; returns nothing. */
static void nats_print_stats(nb_rt_t *rt, FILE *f) {
  struct nb__rtlink_s *rl = rt->link;
  if (!rl->nats.url) return;
  nb_nats_stats_t nd = rl->nnode_last;
  if (rl->nnode) nb_nats_node_stats(rl->nnode, &nd);
  fprintf(f, "  nats: %s (cluster %s): reconnects %" PRIu64 ", malformed "
          "%" PRIu64 ", dropped %" PRIu64 "\n", rl->nats.url,
          rl->nats.cluster ? rl->nats.cluster : "default", nd.reconnects,
          nd.malformed, nd.dropped);
  int head = 0;
  for (size_t i = 0; i < rl->npeers; i++) {
    peer_t *p = rl->peers[i];
    nb_nats_stats_t ns;
    nb_link_stats_t st;
    if (!nats_counters(p, &ns)) continue;
    nb_rt_link_stats(rt, i, &st, NULL);
    if (!head++)
      fprintf(f, "  %-20s %10s %10s %10s %10s %12s %12s %7s %7s %7s %6s"
              " %9s\n", "nats peer", "msgs_out", "msgs_in", "batch_out",
              "batch_in", "bytes_out", "bytes_in", "window", "resends",
              "reconn", "bad", "dropped");
    fprintf(f, "  %-20.20s %10" PRIu64 " %10" PRIu64 " %10" PRIu64 " %10"
            PRIu64 " %12" PRIu64 " %12" PRIu64 " %7" PRIu64 " %7" PRIu64
            " %7" PRIu64 " %6" PRIu64 " %9" PRIu64 "\n", p->name,
            ns.messages_out, ns.messages_in, ns.batches_out, ns.batches_in,
            st.bytes_out, st.bytes_in, ns.window, ns.resends, ns.reconnects,
            ns.malformed, ns.dropped);
  }
}

/* Returns a new JSON object of link i's row (a peer's cortex name is the
 * peer's to choose: nb__json_str keeps the line valid whatever it holds). */
static json_t *link_json(nb_rt_t *rt, size_t i) {
  struct nb__rtlink_s *rl = rt->link;
  peer_t *p = rl->peers[i];
  nb_link_stats_t st;
  const char *peer;
  nb_rt_link_stats(rt, i, &st, &peer);
  json_t *o = json_object();
  if (!o) return NULL;
  nb__json_set_str(o, "peer", peer);
  nb__json_set_str(o, "url", p->url); /* null without one */
  nb__json_set_str(o, "state", state_of(p));
  nb__json_set_bool(o, "shared_arena", p->shared);
  nb__json_set_u64(o, "refs_out", st.refs_out);
  nb__json_set_u64(o, "refs_in", st.refs_in);
  nb__json_set_u64(o, "sent", st.sent);
  nb__json_set_u64(o, "acked", st.acked);
  nb__json_set_u64(o, "resent", st.resent);
  nb__json_set_u64(o, "lost", st.lost);
  nb__json_set_u64(o, "received", st.received);
  nb__json_set_u64(o, "rejected", st.rejected);
  nb__json_set_u64(o, "unroutable", p->unroutable);
  nb__json_set_u64(o, "bytes_out", st.bytes_out);
  nb__json_set_u64(o, "bytes_in", st.bytes_in);
  nb__json_set_u64(o, "connects", st.connects);
  nb__json_set_u64(o, "reconnects", st.reconnects);
  nb__json_set_u64(o, "errors", st.errors);
  nb__json_set_u64(o, "full", st.full);
  nb__json_set_u64(o, "pauses", st.pauses);
  nb__json_set_u64(o, "queued", st.queued);
  nb__json_set_u64(o, "in_doubt", st.in_doubt);
  nb__json_set_u64(o, "held", held_count(rl, p));
  /* Round trip, a write to its ack (smoothed; 0 before the first ack). */
  nb__json_set(o, "rtt_ms", nb__json_num("%.3f", (double)st.rtt_ns / 1e6));
  nb__json_set(o, "rtt_last_ms",
               nb__json_num("%.3f", (double)st.rtt_last_ns / 1e6));
  nb__json_set_str(o, "transport", p->ops->scheme);
  nb_nats_stats_t ns;
  if (nats_counters(p, &ns)) {
    json_t *n = json_object();
    if (n) {
      nb__json_set_u64(n, "messages_out", ns.messages_out);
      nb__json_set_u64(n, "messages_in", ns.messages_in);
      nb__json_set_u64(n, "batches_out", ns.batches_out);
      nb__json_set_u64(n, "batches_in", ns.batches_in);
      nb__json_set_u64(n, "window", ns.window);
      nb__json_set_u64(n, "window_max", ns.window_max);
      nb__json_set_u64(n, "resends", ns.resends);
      nb__json_set_u64(n, "reconnects", ns.reconnects);
      nb__json_set_u64(n, "malformed", ns.malformed);
      nb__json_set_u64(n, "dropped", ns.dropped);
      nb__json_set(o, "nats", n);
    }
  }
  return o;
}

void nb__link_json(nb_rt_t *rt, json_t *obj) {
  struct nb__rtlink_s *rl = rt->link;
  if (rl->closed) nb__json_set_u64(obj, "pending_at_close", rl->pending_at_close);
  json_t *links = json_array();
  for (size_t i = 0; links && i < rl->npeers; i++)
    json_array_append_new(links, link_json(rt, i));
  nb__json_set(obj, "links", links);
  if (rl->nats.url) {
    nb_nats_stats_t ns = rl->nnode_last;
    if (rl->nnode) nb_nats_node_stats(rl->nnode, &ns);
    json_t *n = json_object();
    if (n) {
      nb__json_set_str(n, "url", rl->nats.url);
      nb__json_set_str(n, "cluster", rl->nats.cluster ? rl->nats.cluster : "default");
      nb__json_set_u64(n, "reconnects", ns.reconnects);
      nb__json_set_u64(n, "malformed", ns.malformed);
      nb__json_set_u64(n, "dropped", ns.dropped);
      nb__json_set_u64(n, "region_out", ns.region_out);
      nb__json_set_u64(n, "region_in", rl->region_in);
      nb__json_set_u64(n, "region_dropped", rl->region_dropped + ns.region_dropped);
      nb__json_set(obj, "nats", n);
    }
  }
}

void nb__link_free(nb_rt_t *rt) {
  struct nb__rtlink_s *rl = rt->link;
  if (!rl) return;
  /* A node still open here was started by a caller that never stopped it:
   * its handles live on that caller's loop, which must close them. */
  if (rl->node && rl->loop) node_close(rl);
  for (size_t i = 0; i < rl->npeers; i++) {
    free(rl->peers[i]->map);
    free(rl->peers[i]->no_proxy);
    free(rl->peers[i]);
  }
  free(rl->peers);
  for (size_t i = 0; i < rl->ncfg; i++) {
    free(rl->cfg[i].url);
    secret_free(rl->cfg[i].o.secret, rl->cfg[i].o.secret_len);
  }
  free(rl->cfg);
  for (size_t i = 0; i < rl->nallow; i++) {
    free((char *)rl->allow[i].cortex);
    secret_free(rl->allow[i].secret, rl->allow[i].secret_len);
  }
  free(rl->allow);
  secret_free(rl->secret, rl->secret_len);
  for (uint32_t i = 0; i < rl->rcount; i++) /* never injected */
    nb_arena_release_spike(rt->arena, &rl->rback[(rl->rhead + i) % NB__RBACK]);
  free(rl->rback);
  free(rl->px); /* the proxies belong to their agents */
  free(rl->listen);
  free(rl->arena_path);
  nb__link_nats_conf_free(&rl->nats);
  free(rl);
  rt->link = NULL;
}
