/* nb_rt_httpd.c: the --http endpoint (libmicrohttpd): /metrics
 * (Prometheus text), /stats (JSON), /graph (DOT), /neurons/NAME (JSON).
 *
 * The cortex is never blocked by it: libmicrohttpd runs in its own thread
 * (one epoll thread for every connection) and touches nothing of the
 * runtime. A request takes a reference to the current snapshot under a
 * mutex; when that snapshot is older than FRESH_NS it asks the loop thread
 * for a new one (uv_async_send), which builds it between ticks
 * (nb__snapshot_build), swaps it in and wakes the waiting requests; a loop
 * that does not answer within WAIT_NS (an agent holding it) gets the old
 * snapshot served. The response sends the snapshot's bytes without a copy;
 * its reference keeps a replaced snapshot alive until it is sent. Bounds:
 * at most CONN_LIMIT connections (more are closed at once; as many may
 * wait to be accepted), IDLE_TIMEOUT_S per idle connection, CONN_MEMORY
 * bytes per connection for the request (a longer request line or header
 * gets 414/431 from the library), GET and HEAD only, the four paths
 * only. */
#include "nb_rt_metrics.h"

#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <microhttpd.h>
#include <uv.h>

#define FRESH_NS 50000000ull   /* a snapshot younger than 50 ms is served */
#define WAIT_NS 1000000000ull  /* then the old one, if the loop is stuck */
#define CONN_LIMIT 1024
#define IDLE_TIMEOUT_S 10
#define CONN_MEMORY 8192

struct nb__httpd_s {
  nb_rt_t *rt;
  struct MHD_Daemon *d;
  uv_async_t async;
  int port;
  /* Shared with the library's thread, under mu. */
  pthread_mutex_t mu;
  pthread_cond_t cv;
  nb__snap_t *snap;
  uint64_t gen;  /* snapshots built so far */
  int asked;     /* a rebuild was asked and is not done yet */
  int closing;
};

/* Loop thread: builds a snapshot, swaps it in, wakes the waiters. The
 * old one goes now, or with the last response still sending from it. */
static void on_async(uv_async_t *h) {
  struct nb__httpd_s *s = h->data;
  nb__snap_t *snap = nb__snapshot_build(s->rt), *old = NULL;
  if (snap) snap->owner = s;
  pthread_mutex_lock(&s->mu);
  if (snap) {
    old = s->snap;
    s->snap = snap;
    if (old && old->refs) old = NULL; /* release frees it */
  }
  s->gen++;
  s->asked = 0;
  pthread_cond_broadcast(&s->cv);
  pthread_mutex_unlock(&s->mu);
  nb__snap_free(old);
}

/* Drops a response's reference to its snapshot (the library's free
 * callback, or a request that sent none of it); frees a snapshot that was
 * replaced once nothing sends from it. */
static void release(void *cls) {
  nb__snap_t *snap = cls;
  struct nb__httpd_s *s = snap->owner;
  pthread_mutex_lock(&s->mu);
  int gone = --snap->refs == 0 && s->snap != snap;
  pthread_mutex_unlock(&s->mu);
  if (gone) nb__snap_free(snap);
}

/* Queues a response of n bytes at p with content type ctype and status:
 * bytes of snap (whose reference it takes over: sent without a copy) or,
 * snap NULL, copied; returns the library's answer. */
static enum MHD_Result reply_from(struct MHD_Connection *c, unsigned status,
                                  const char *ctype, const char *p, size_t n,
                                  nb__snap_t *snap) {
  struct MHD_Response *r =
      snap ? MHD_create_response_from_buffer_with_free_callback_cls(
                 n, (void *)p, release, snap)
           : MHD_create_response_from_buffer(n, (void *)p, MHD_RESPMEM_MUST_COPY);
  if (!r) {
    if (snap) release(snap);
    return MHD_NO;
  }
  MHD_add_response_header(r, "Content-Type", ctype);
  MHD_add_response_header(r, "Cache-Control", "no-store");
  enum MHD_Result ok = MHD_queue_response(c, status, r);
  MHD_destroy_response(r);
  return ok;
}

/* reply_from with copied bytes. */
static enum MHD_Result reply(struct MHD_Connection *c, unsigned status,
                             const char *ctype, const char *p, size_t n) {
  return reply_from(c, status, ctype, p, n, NULL);
}

/* Returns a fresh enough snapshot (under s->mu, held by the caller),
 * asking the loop for one and waiting at most WAIT_NS; may be NULL. */
static nb__snap_t *current(struct nb__httpd_s *s) {
  if (s->snap && nb_clock_ns() - s->snap->built_ns < FRESH_NS) return s->snap;
  if (s->closing) return s->snap;
  uint64_t gen = s->gen;
  if (!s->asked) {
    s->asked = 1;
    uv_async_send(&s->async);
  }
  struct timespec until;
  clock_gettime(CLOCK_REALTIME, &until);
  until.tv_sec += (time_t)(WAIT_NS / 1000000000ull);
  while (s->gen == gen && !s->closing)
    if (pthread_cond_timedwait(&s->cv, &s->mu, &until) == ETIMEDOUT) break;
  return s->snap;
}

static const char not_found[] =
    "not found: the endpoint serves /metrics, /stats, /graph and "
    "/neurons/NAME\n";

/* The library's request handler (its thread): GET or HEAD of one of the
 * documented paths, served from a copy of the snapshot. */
static enum MHD_Result on_request(void *cls, struct MHD_Connection *c,
                                  const char *url, const char *method,
                                  const char *version, const char *upload,
                                  size_t *upload_size, void **con_cls) {
  struct nb__httpd_s *s = cls;
  (void)version;
  (void)upload;
  if (strcmp(method, "GET") && strcmp(method, "HEAD")) {
    *upload_size = 0; /* a body is never read: the connection closes */
    return reply(c, MHD_HTTP_METHOD_NOT_ALLOWED, "text/plain",
                 "only GET and HEAD\n", 18);
  }
  (void)con_cls;
  int which; /* 0 metrics, 1 stats, 2 graph, 3 neuron */
  const char *name = NULL;
  if (!strcmp(url, "/metrics")) which = 0;
  else if (!strcmp(url, "/stats")) which = 1;
  else if (!strcmp(url, "/graph")) which = 2;
  else if (!strncmp(url, "/neurons/", 9) && url[9]) which = 3, name = url + 9;
  else if (!strcmp(url, "/")) {
    static const char index[] =
        "neuronbus endpoint: /metrics (Prometheus text), /stats (JSON), "
        "/graph (Graphviz DOT), /neurons/NAME (JSON)\n";
    return reply(c, MHD_HTTP_OK, "text/plain; charset=utf-8", index,
                 sizeof index - 1);
  } else {
    return reply(c, MHD_HTTP_NOT_FOUND, "text/plain", not_found,
                 sizeof not_found - 1);
  }
  /* A reference, so the snapshot outlives a swap while it is sent; the
   * bytes go out without a copy (the library's callback drops it). */
  pthread_mutex_lock(&s->mu);
  nb__snap_t *snap = current(s);
  if (snap) snap->refs++;
  pthread_mutex_unlock(&s->mu);
  if (!snap)
    return reply(c, MHD_HTTP_SERVICE_UNAVAILABLE, "text/plain",
                 "no snapshot yet\n", 16);
  if (which == 0)
    return reply_from(c, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8",
                      snap->prom, snap->nprom, snap);
  if (which == 1)
    return reply_from(c, MHD_HTTP_OK, "application/json", snap->json,
                      snap->njson, snap);
  if (which == 2)
    return reply_from(c, MHD_HTTP_OK, "text/vnd.graphviz; charset=utf-8",
                      snap->dot, snap->ndot, snap);
  /* The name is compared with the neurons' names, never used as a path. */
  uint32_t i = 0;
  while (i < snap->n && (!snap->names[i] || strcmp(snap->names[i], name))) i++;
  if (i < snap->n && snap->cards[i])
    return reply_from(c, MHD_HTTP_OK, "application/json", snap->cards[i],
                      strlen(snap->cards[i]), snap);
  release(snap);
  return reply(c, MHD_HTTP_NOT_FOUND, "text/plain", "no such neuron\n", 15);
}

/* Parses addr into *sa (loopback when only a port is given); returns 0 or
 * -1. */
static int parse_addr(const char *addr, struct sockaddr_storage *sa,
                      socklen_t *len) {
  char host[128];
  const char *colon = strrchr(addr, ':');
  const char *port_s = colon ? colon + 1 : addr;
  size_t hn = colon ? (size_t)(colon - addr) : 0;
  if (hn >= sizeof host) return -1;
  memcpy(host, addr, hn);
  host[hn] = 0;
  char *end;
  errno = 0;
  long port = strtol(port_s, &end, 10);
  if (!*port_s || *end || errno || port < 0 || port > 65535) return -1;
  memset(sa, 0, sizeof *sa);
  if (hn >= 2 && host[0] == '[' && host[hn - 1] == ']') {
    host[hn - 1] = 0;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)sa;
    a6->sin6_family = AF_INET6;
    a6->sin6_port = htons((uint16_t)port);
    if (inet_pton(AF_INET6, host + 1, &a6->sin6_addr) != 1) return -1;
    *len = sizeof *a6;
    return 0;
  }
  struct sockaddr_in *a4 = (struct sockaddr_in *)sa;
  a4->sin_family = AF_INET;
  a4->sin_port = htons((uint16_t)port);
  const char *h = hn ? host : "127.0.0.1";
  if (!strcmp(h, "localhost")) h = "127.0.0.1";
  if (inet_pton(AF_INET, h, &a4->sin_addr) != 1) return -1;
  *len = sizeof *a4;
  return 0;
}

/* Frees s once its async handle is closed. */
static void on_closed(uv_handle_t *h) {
  struct nb__httpd_s *s = h->data;
  pthread_mutex_destroy(&s->mu);
  pthread_cond_destroy(&s->cv);
  nb__snap_free(s->snap);
  free(s);
}

int nb__httpd_start(nb_rt_t *rt, void *uv_loop, const char *addr) {
  if (rt->stopped) return NB_EINVAL;
  struct sockaddr_storage sa;
  socklen_t salen;
  if (parse_addr(addr, &sa, &salen) != 0) {
    fprintf(stderr, "neuronbus: --http: \"%s\" is not HOST:PORT (an IPv4 "
            "address, [IPv6] or localhost, and a port 0-65535)\n", addr);
    return NB_EINVAL;
  }
  struct nb__httpd_s *s = calloc(1, sizeof *s);
  if (!s) return NB_ENOMEM;
  s->rt = rt;
  pthread_mutex_init(&s->mu, NULL);
  pthread_cond_init(&s->cv, NULL);
  uv_async_init(uv_loop, &s->async, on_async);
  s->async.data = s;
  uv_unref((uv_handle_t *)&s->async); /* never keeps the loop alive */
  unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL |
                   (sa.ss_family == AF_INET6 ? MHD_USE_IPv6 : 0);
  errno = 0;
  s->d = MHD_start_daemon(
      flags, 0, NULL, NULL, on_request, s, MHD_OPTION_SOCK_ADDR,
      (struct sockaddr *)&sa, MHD_OPTION_CONNECTION_LIMIT,
      (unsigned)CONN_LIMIT, MHD_OPTION_CONNECTION_TIMEOUT,
      (unsigned)IDLE_TIMEOUT_S, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
      (size_t)CONN_MEMORY, MHD_OPTION_LISTEN_BACKLOG_SIZE,
      (unsigned)CONN_LIMIT, MHD_OPTION_END);
  if (!s->d) {
    int e = errno;
    fprintf(stderr, "neuronbus: --http: cannot listen on %s: %s\n", addr,
            e ? strerror(e) : "libmicrohttpd refused");
    uv_close((uv_handle_t *)&s->async, on_closed); /* frees s */
    return NB_EIO;
  }
  /* Stopping the runtime (nb_rt_stop, nb_rt_close) stops the endpoint:
   * its thread must not outlive what it was started for. */
  nb__async_on_stop(rt, nb__httpd_stop);
  const union MHD_DaemonInfo *di =
      MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_BIND_PORT);
  s->port = di ? di->port : 0;
  rt->httpd = s;
  const char *host = strrchr(addr, ':') ? addr : "127.0.0.1";
  int hl = strrchr(addr, ':') ? (int)(strrchr(addr, ':') - addr) : 9;
  if (!hl) host = "127.0.0.1", hl = 9;
  if (rt->opts.quiet) return 0;
  fprintf(nb__log(stderr), "neuronbus: http endpoint on http://%.*s:%d/ (/metrics, "
          "/stats, /graph, /neurons/NAME)\n", hl, host, s->port);
  int loopback = sa.ss_family == AF_INET
                     ? (ntohl(((struct sockaddr_in *)&sa)->sin_addr.s_addr) >> 24) == 127
                     : IN6_IS_ADDR_LOOPBACK(&((struct sockaddr_in6 *)&sa)->sin6_addr);
  if (!loopback)
    fprintf(stderr, "neuronbus: --http: %s is not a loopback address: the "
            "endpoint has no authentication, anyone who reaches it reads "
            "the topology and its counters\n", addr);
  fflush(stderr);
  return 0;
}

void nb__httpd_stop(nb_rt_t *rt) {
  struct nb__httpd_s *s = rt->httpd;
  if (!s) return;
  rt->httpd = NULL;
  pthread_mutex_lock(&s->mu);
  s->closing = 1;
  pthread_cond_broadcast(&s->cv);
  pthread_mutex_unlock(&s->mu);
  MHD_stop_daemon(s->d); /* joins its thread */
  uv_close((uv_handle_t *)&s->async, on_closed);
}

int nb_rt_http_port(const nb_rt_t *rt) {
  return rt->httpd ? rt->httpd->port : 0;
}

int nb_rt_http_start(nb_rt_t *rt, const char *addr) {
  if (rt->httpd) return NB_EEXIST;
  return nb__httpd_start(rt, nb__loop(rt), addr);
}

void nb_rt_http_serve(nb_rt_t *rt) {
  if (rt->looping || !rt->httpd) return;
  /* Referenced for this turn: a loop with nothing referenced does not
   * poll at all, and the handle stays unreferenced so it never keeps a
   * loop alive otherwise. */
  uv_handle_t *h = (uv_handle_t *)&rt->httpd->async;
  uv_ref(h);
  uv_run(nb__loop(rt), UV_RUN_NOWAIT);
  uv_unref(h);
}

void nb_rt_http_stop(nb_rt_t *rt) {
  if (!rt->httpd) return;
  nb__httpd_stop(rt);
  if (!rt->looping) uv_run(nb__loop(rt), UV_RUN_NOWAIT); /* the close */
}
