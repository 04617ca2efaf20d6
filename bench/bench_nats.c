/* bench_nats.c: NATS links (runtime/nb_link_nats.h) against raw libnats on
 * the same nats-server, started by this binary on a free loopback port
 * (rows are skipped with a note when nats-server is not installed).
 *
 *   nats_1link      C sender -> NATS link (batches, acks, window) -> C
 *                   receiver, 64-byte spikes, each checked in order, two
 *                   threads with their own loops; baseline nats_raw64: one
 *                   libnats connection publishing 64-byte messages to
 *                   another's subscription, each checked in order.
 *   nats_pingpong_p50/_p99: half the round trip of one spike bounced over
 *                   NATS links between two loops; baseline
 *                   nats_raw_pingpong: the same bounce with raw libnats
 *                   publish/subscribe. The TCP link's figures are
 *                   tcp_pingpong_p50/_p99 of bench_tcp in the same run. */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <nats/nats.h>

#include "bench.h"
#include "nb_err.h"
#include "nb_link_nats.h"

static pid_t server_pid;
static int server_port;
static char server_url[64];

/* Kills the server this binary started; returns nothing. */
static void server_stop(void) {
  if (server_pid > 0) {
    kill(server_pid, SIGKILL);
    waitpid(server_pid, NULL, 0);
    server_pid = 0;
  }
}

/* Starts nats-server on a free loopback port; returns 0, or -1 when it
 * cannot (not installed). */
static int server_start(void) {
  if (server_pid) return 0;
  int s = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof a;
  if (bind(s, (struct sockaddr *)&a, sizeof a) != 0 ||
      getsockname(s, (struct sockaddr *)&a, &len) != 0) return -1;
  server_port = ntohs(a.sin_port);
  close(s);
  char port[16];
  snprintf(port, sizeof port, "%d", server_port);
  pid_t p = fork();
  if (p == 0) {
    int fd = open("/dev/null", O_WRONLY);
    if (fd >= 0) { dup2(fd, 1); dup2(fd, 2); }
    execlp("nats-server", "nats-server", "-a", "127.0.0.1", "-p", port, (char *)NULL);
    _exit(127);
  }
  if (p < 0) return -1;
  server_pid = p;
  atexit(server_stop);
  snprintf(server_url, sizeof server_url, "nats://127.0.0.1:%d", server_port);
  for (int i = 0; i < 200; i++) {
    natsConnection *nc = NULL;
    if (natsConnection_ConnectTo(&nc, server_url) == NATS_OK) {
      natsConnection_Destroy(nc);
      return 0;
    }
    int st;
    if (waitpid(p, &st, WNOHANG) == p) { server_pid = 0; return -1; }
    usleep(20000);
  }
  return -1;
}

/* ---- raw libnats ---- */

typedef struct raw_s {
  uint64_t n;
  _Atomic uint64_t got;
  _Atomic uint64_t t_end;
  _Atomic int bad;
} raw_t;

/* Subscription callback: checks the sequence in the message; returns
 * nothing. */
static void raw_msg(natsConnection *nc, natsSubscription *sub, natsMsg *m, void *c) {
  (void)nc; (void)sub;
  raw_t *r = c;
  uint64_t seq = 0;
  if (natsMsg_GetDataLength(m) == 64) memcpy(&seq, natsMsg_GetData(m), 8);
  uint64_t want = atomic_load(&r->got);
  if (seq != want) atomic_store(&r->bad, 1);
  if (atomic_fetch_add(&r->got, 1) + 1 == r->n) atomic_store(&r->t_end, nb_bench_now_ns());
  natsMsg_Destroy(m);
}

/* Returns the raw publish -> subscribe rate in M messages/s. */
static double raw_run(void *ctx) {
  uint64_t n = *(uint64_t *)ctx;
  raw_t r = {.n = n};
  natsConnection *pub = NULL, *subc = NULL;
  natsSubscription *sub = NULL;
  if (natsConnection_ConnectTo(&pub, server_url) != NATS_OK ||
      natsConnection_ConnectTo(&subc, server_url) != NATS_OK ||
      natsConnection_Subscribe(&sub, subc, "raw.bench", raw_msg, &r) != NATS_OK ||
      natsSubscription_SetPendingLimits(sub, -1, -1) != NATS_OK ||
      natsConnection_Flush(subc) != NATS_OK)
    nb_bench_fail("nats_raw64: cannot connect or subscribe to %s", server_url);
  uint8_t msg[64];
  memset(msg, 0x5a, sizeof msg);
  uint64_t t0 = nb_bench_now_ns();
  for (uint64_t i = 0; i < n; i++) {
    memcpy(msg, &i, 8);
    while (natsConnection_Publish(pub, "raw.bench", msg, 64) != NATS_OK) sched_yield();
  }
  natsConnection_Flush(pub);
  uint64_t deadline = nb_bench_now_ns() + 60000000000ull;
  while (atomic_load(&r.got) < n && nb_bench_now_ns() < deadline) usleep(200);
  if (atomic_load(&r.got) != n || atomic_load(&r.bad))
    nb_bench_fail("nats_raw64: %llu of %llu messages arrived (in order: %s)",
                  (unsigned long long)atomic_load(&r.got), (unsigned long long)n,
                  atomic_load(&r.bad) ? "no" : "yes");
  natsSubscription_Destroy(sub);
  natsConnection_Destroy(pub);
  natsConnection_Destroy(subc);
  return (double)n / ((double)(atomic_load(&r.t_end) - t0) / 1e9) / 1e6;
}

/* ---- NATS links ---- */

typedef struct side_s {
  uv_loop_t loop;
  uv_idle_t idle;
  uv_async_t stop;
  nb_nats_node_t *node;
  nb_nats_link_t *link;
  int target;
  const char *name, *peer, *neuron, *peer_neuron;
  struct flow_s *f;
} side_t;

typedef struct flow_s {
  uint64_t n;
  int pingpong;
  side_t a, b;
  uint64_t sent, got_b, got_a, t0, t_end, t_ping;
  double *samples;
  _Atomic int done_a; /* the sender has every spike acked */
  _Atomic int ready;  /* sides connected */
  nb_bench_stop_t stop;
} flow_t;

/* Sends spike i from side s; returns the link's code. */
static int send_one(side_t *s, uint64_t i) {
  nb_spike_t sp;
  memset(&sp, 0, sizeof sp);
  sp.sequence = (uint32_t)i;
  sp.timestamp_ns = i;
  nb_spike_set_payload(&sp, "bench", 5);
  return nb_linkif_nats.send(s->link, s->target, &sp, NULL, 0);
}

/* on_spike of both sides: checks the order; the receiver of a ping-pong
 * answers, its sender times the answer and sends the next. Returns 0. */
static int on_spike(void *ud, nb_nats_link_t *l, const nb_spike_t *s,
                    const void *p, size_t len) {
  (void)l; (void)p; (void)len;
  side_t *side = ud;
  flow_t *f = side->f;
  if (side == &f->b) {
    if (s->timestamp_ns != f->got_b)
      nb_bench_stop_fail(&f->stop, "spike %llu arrived as %llu", (unsigned long long)f->got_b,
                         (unsigned long long)s->timestamp_ns);
    f->got_b++;
    if (f->pingpong) {
      if (!f->b.link) f->b.link = nb_nats_link(f->b.node, f->b.peer);
      if (f->b.target < 0) f->b.target = nb_linkif_nats.target(f->b.link, f->b.peer_neuron);
      if (send_one(&f->b, s->timestamp_ns) != 0) nb_bench_stop_fail(&f->stop, "pong refused");
    } else if (f->got_b == f->n) {
      f->t_end = nb_bench_now_ns();
    }
    return 0;
  }
  uint64_t now = nb_bench_now_ns();
  f->samples[f->got_a++] = (double)(now - f->t_ping) / 2.0;
  if (f->got_a < f->n) {
    f->t_ping = nb_bench_now_ns();
    send_one(&f->a, f->got_a);
  }
  return 0;
}

/* The sender's idle: sends while the window has room; returns nothing. */
static void a_idle(uv_idle_t *h) {
  side_t *s = h->data;
  flow_t *f = s->f;
  if (atomic_load(&f->stop.abort) || nb_bench_now_ns() > f->stop.deadline_ns) {
    nb_bench_stop_fail(&f->stop, "timed out: sent %llu, received %llu",
                       (unsigned long long)f->sent, (unsigned long long)f->got_b);
    uv_idle_stop(h);
    atomic_store(&f->done_a, 1);
    return;
  }
  if (!nb_linkif_nats.is_up(s->link)) return;
  if (f->pingpong) {
    if (f->sent == 0) {
      f->sent = 1;
      f->t_ping = nb_bench_now_ns();
      send_one(s, 0);
    }
    if (f->got_a == f->n) { uv_idle_stop(h); atomic_store(&f->done_a, 1); }
    return;
  }
  if (!f->t0) f->t0 = nb_bench_now_ns();
  while (f->sent < f->n && send_one(s, f->sent) == 0) f->sent++;
  nb_link_stats_t st;
  nb_linkif_nats.stats(s->link, &st);
  if (st.acked == f->n) {
    uv_idle_stop(h);
    atomic_store(&f->done_a, 1);
  }
}

/* Closes the side's node and handles; returns nothing. */
static void side_stop(uv_async_t *a) {
  side_t *s = a->data;
  nb_nats_node_close(s->node, NULL, NULL);
  uv_close((uv_handle_t *)&s->idle, NULL);
  uv_close((uv_handle_t *)&s->stop, NULL);
}

/* One side's thread: connects, serves its loop until stopped. */
static void *side_main(void *arg) {
  side_t *s = arg;
  uv_loop_init(&s->loop);
  nb_nats_opts_t o;
  memset(&o, 0, sizeof o);
  o.cortex = s->name;
  o.url = server_url;
  o.cluster = "bench";
  o.on_spike = on_spike;
  o.ud = s;
  o.quiet = 1;
  char *err = NULL;
  if (nb_nats_node_new(&s->node, &s->loop, &o, &err) != 0)
    nb_bench_fail("nats: %s", err ? err : "cannot connect");
  nb_nats_neuron_t *nn = calloc(1, sizeof *nn);
  snprintf(nn->name, sizeof nn->name, "%s", s->neuron);
  nb_nats_node_expose(s->node, nn);
  free(nn);
  nb_nats_node_start(s->node);
  uv_idle_init(&s->loop, &s->idle);
  s->idle.data = s;
  uv_async_init(&s->loop, &s->stop, side_stop);
  s->stop.data = s;
  if (s == &s->f->a) {
    s->link = nb_nats_link(s->node, s->peer);
    s->target = nb_linkif_nats.target(s->link, s->peer_neuron);
    uv_idle_start(&s->idle, a_idle);
  }
  atomic_fetch_add(&s->f->ready, 1);
  uv_run(&s->loop, UV_RUN_DEFAULT);
  uv_loop_close(&s->loop);
  return NULL;
}

/* Runs one flow or ping-pong of n spikes; returns it (free it). */
static flow_t *flow_once(uint64_t n, int pingpong, double *samples) {
  flow_t *f = calloc(1, sizeof *f);
  f->n = n;
  f->pingpong = pingpong;
  f->samples = samples;
  nb_bench_stop_init(&f->stop, 120);
  f->a = (side_t){.name = "asrc", .peer = "bsink", .neuron = "src", .peer_neuron = "sink", .f = f, .target = -1};
  f->b = (side_t){.name = "bsink", .peer = "asrc", .neuron = "sink", .peer_neuron = "src", .f = f, .target = -1};
  pthread_t ta, tb;
  pthread_create(&tb, NULL, side_main, &f->b);
  pthread_create(&ta, NULL, side_main, &f->a);
  while (!atomic_load(&f->done_a)) usleep(500);
  while (atomic_load(&f->ready) < 2) usleep(500);
  uv_async_send(&f->a.stop);
  pthread_join(ta, NULL);
  uv_async_send(&f->b.stop);
  pthread_join(tb, NULL);
  if (atomic_load(&f->stop.abort)) nb_bench_fail("nats link: %s", f->stop.why);
  if (!pingpong && f->got_b != n)
    nb_bench_fail("nats_1link: %llu of %llu spikes arrived", (unsigned long long)f->got_b,
                  (unsigned long long)n);
  return f;
}

/* Returns the link's rate in M spikes/s. */
static double link_run(void *ctx) {
  flow_t *f = flow_once(*(uint64_t *)ctx, 0, NULL);
  double rate = (double)f->n / ((double)(f->t_end - f->t0) / 1e9) / 1e6;
  free(f);
  return rate;
}

static void group_flow(void) {
  if (server_start() != 0) {
    fprintf(stderr, "bench_nats: nats-server not available: rows skipped\n");
    return;
  }
  uint64_t n = nb_bench_size(4u << 20, 1u << 14), rn = nb_bench_size(1u << 20, 1u << 13);
  nb_bench_row_t r = nb_bench_row("nats_1link", "M spikes/s");
  nb_bench_measure(link_run, &n, &n, raw_run, &rn, &rn, &r.v, &r.b);
  r.baseline = "nats_raw64";
  r.target = ">=8";
  r.target_abs = ">=5";
  r.note = "C sender -> NATS link -> C receiver through a local nats-server, "
           "64-byte spikes batched (many per NATS message), acked, each "
           "checked in order; baseline: raw libnats publish -> subscribe of "
           "64-byte messages on the same server, each checked in order";
  nb_bench_emit(&r);
}

/* ---- ping-pong ---- */

typedef struct pp_s {
  uint64_t n;
  double *samples;
  double p99[NB_BENCH_MAX_RUNS + 1];
  int calls;
} pp_t;

/* Returns the p50 of one link ping-pong run (p99 kept). */
static double link_pp_run(void *ctx) {
  pp_t *c = ctx;
  flow_t *f = flow_once(c->n, 1, c->samples);
  free(f);
  nb_bench_summarize(c->samples, (int)c->n);
  double p50 = nb_bench_quantile(c->samples, c->n, 0.50);
  if (c->calls <= NB_BENCH_MAX_RUNS) c->p99[c->calls] = nb_bench_quantile(c->samples, c->n, 0.99);
  c->calls++;
  return p50;
}

typedef struct rawpp_s {
  natsConnection *c;
  _Atomic int pong;
} rawpp_t;

/* Answers a ping (a libnats thread); returns nothing. */
static void raw_ping(natsConnection *nc, natsSubscription *sub, natsMsg *m, void *c) {
  (void)sub; (void)c;
  natsConnection_Publish(nc, "pp.pong", natsMsg_GetData(m), natsMsg_GetDataLength(m));
  natsMsg_Destroy(m);
}

/* Takes a pong (a libnats thread); returns nothing. */
static void raw_pong(natsConnection *nc, natsSubscription *sub, natsMsg *m, void *c) {
  (void)nc; (void)sub;
  atomic_store(&((rawpp_t *)c)->pong, 1);
  natsMsg_Destroy(m);
}

/* Returns the p50 of one raw ping-pong run (p99 kept). */
static double raw_pp_run(void *ctx) {
  pp_t *c = ctx;
  rawpp_t r = {0};
  natsConnection *a = NULL, *b = NULL;
  natsSubscription *sa = NULL, *sb = NULL;
  natsOptions *o = NULL;
  /* Written at once, as the NATS link's node does (no flusher wait). */
  if (natsOptions_Create(&o) != NATS_OK || natsOptions_SetURL(o, server_url) != NATS_OK ||
      natsOptions_SetSendAsap(o, true) != NATS_OK ||
      natsConnection_Connect(&a, o) != NATS_OK ||
      natsConnection_Connect(&b, o) != NATS_OK ||
      natsConnection_Subscribe(&sb, b, "pp.ping", raw_ping, NULL) != NATS_OK ||
      natsConnection_Subscribe(&sa, a, "pp.pong", raw_pong, &r) != NATS_OK ||
      natsConnection_Flush(a) != NATS_OK || natsConnection_Flush(b) != NATS_OK)
    nb_bench_fail("nats_raw_pingpong: cannot connect");
  uint8_t msg[64] = {0};
  for (uint64_t i = 0; i < c->n; i++) {
    atomic_store(&r.pong, 0);
    uint64_t t = nb_bench_now_ns();
    natsConnection_Publish(a, "pp.ping", msg, 64);
    uint64_t deadline = t + 10000000000ull;
    while (!atomic_load(&r.pong))
      if (nb_bench_now_ns() > deadline) nb_bench_fail("nats_raw_pingpong: a pong was lost");
    c->samples[i] = (double)(nb_bench_now_ns() - t) / 2.0;
  }
  natsSubscription_Destroy(sa);
  natsSubscription_Destroy(sb);
  natsConnection_Destroy(a);
  natsConnection_Destroy(b);
  natsOptions_Destroy(o);
  nb_bench_summarize(c->samples, (int)c->n);
  double p50 = nb_bench_quantile(c->samples, c->n, 0.50);
  if (c->calls <= NB_BENCH_MAX_RUNS) c->p99[c->calls] = nb_bench_quantile(c->samples, c->n, 0.99);
  c->calls++;
  return p50;
}

static void group_pingpong(void) {
  if (server_start() != 0) return;
  pp_t c = {.n = nb_bench_size(5000, 200)}, b = {.n = nb_bench_size(5000, 200)};
  c.samples = nb_bench_alloc(c.n * sizeof(double));
  b.samples = nb_bench_alloc(b.n * sizeof(double));
  nb_bench_row_t r = nb_bench_row("nats_pingpong_p50", "ns one-way");
  r.lower_is_better = 1;
  nb_bench_measure(link_pp_run, &c, &c.n, raw_pp_run, &b, &b.n, &r.v, &r.b);
  r.baseline = "nats_raw_pingpong_p50";
  r.note = "half the round trip of one spike bounced over NATS links between "
           "two loops (batch flushed at the end of the loop turn); baseline: "
           "raw libnats publish/subscribe bounce; compare tcp_pingpong_p50";
  nb_bench_emit(&r);
  nb_bench_emit_p99(&r, "nats_pingpong_p99", "nats_raw_pingpong_p99", c.p99, b.p99,
                    "p99 of the same runs; compare tcp_pingpong_p99");
  free(c.samples);
  free(b.samples);
}

static const nb_bench_group_t groups[] = {
    {"nats_1link", group_flow},
    {"nats_pingpong_p50 nats_pingpong_p99", group_pingpong},
};

int main(int argc, char **argv) {
  signal(SIGPIPE, SIG_IGN);
  int rc = nb_bench_main(argc, argv, groups, sizeof groups / sizeof groups[0]);
  server_stop();
  return rc;
}
