/* bench_http.c: a Lua one-hop flow (bench/lua/producer.lua -> sink.lua,
 * as bench_lua's lua_hop) while 1,000 HTTP requests are in flight on the
 * same loop (bench/lua/http_load.lua: 1,000 tasks, each looping nb.http
 * requests), against the same flow alone, interleaved. The server is in
 * this binary: a poll() thread on loopback that answers each request after
 * 0 to 2 DELAY_MS (random, so the answers spread out), so the requests
 * stay in flight (2,000 answers a second at 1,000 in flight). Each run opens a fresh runtime, waits until every
 * request is in flight and the flow runs, then counts the spikes the sink
 * gets in a fixed window; the bench fails unless 1,000 requests are still
 * in flight at the end of the window and answers came back during it.
 * Run from the repository root (or set NB_BENCH_ROOT). */
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#include "bench.h"
#include "bench_rt.h"
#include "nb_rt_internal.h"

#include <uv.h>

#define DELAY_MS 500
#define INFLIGHT 1000
#define MAX_CONNS 2048

/* ---- the server ---- */

typedef struct conn_s {
  int fd;
  size_t n;       /* bytes of the request read so far */
  uint64_t due;   /* answer at this time (ns), 0 = no request complete */
  char buf[2048];
} conn_t;

static int srv_fd = -1, srv_port;
static atomic_int srv_stop;
static pthread_t srv_thread;

/* Serves until srv_stop: reads each request's head, answers it DELAY_MS
 * later (keep-alive). */
static void *serve(void *arg) {
  (void)arg;
  static conn_t conns[MAX_CONNS];
  static struct pollfd pfd[MAX_CONNS + 1];
  int n = 0;
  unsigned seed = 12345;
  static const char reply[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
  while (!atomic_load(&srv_stop)) {
    uint64_t now = nb_bench_now_ns(), next = now + 50000000u;
    pfd[0] = (struct pollfd){.fd = srv_fd, .events = POLLIN};
    for (int i = 0; i < n; i++) {
      if (conns[i].due && conns[i].due <= now) {
        if (write(conns[i].fd, reply, sizeof reply - 1) < 0) {}
        conns[i].due = 0;
      }
      if (conns[i].due && conns[i].due < next) next = conns[i].due;
      pfd[i + 1] = (struct pollfd){.fd = conns[i].fd, .events = conns[i].due ? 0 : POLLIN};
    }
    int ms = (int)((next - now) / 1000000u) + 1;
    if (poll(pfd, (nfds_t)n + 1, ms) < 0) continue;
    if ((pfd[0].revents & POLLIN) && n < MAX_CONNS) {
      int fd = accept(srv_fd, NULL, NULL);
      if (fd >= 0) conns[n++] = (conn_t){.fd = fd};
    }
    for (int i = 0; i < n; i++) {
      if (!(pfd[i + 1].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      conn_t *c = &conns[i];
      ssize_t r = read(c->fd, c->buf + c->n, sizeof c->buf - 1 - c->n);
      if (r <= 0) { /* closed: the last connection takes its place */
        close(c->fd);
        conns[i] = conns[--n];
        pfd[i + 1] = pfd[n + 1];
        i--;
        continue;
      }
      c->n += (size_t)r;
      c->buf[c->n] = 0;
      if (strstr(c->buf, "\r\n\r\n")) {
        c->n = 0;
        /* Uniform in [0, 2 DELAY_MS): the answers spread out evenly. */
        c->due = nb_bench_now_ns() + (uint64_t)(rand_r(&seed) % (2 * DELAY_MS)) * 1000000ull;
      }
    }
  }
  for (int i = 0; i < n; i++) close(conns[i].fd);
  return NULL;
}

static void server_start(void) {
  srv_fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof a;
  if (srv_fd < 0 || bind(srv_fd, (struct sockaddr *)&a, sizeof a) != 0 ||
      listen(srv_fd, 4096) != 0 || getsockname(srv_fd, (struct sockaddr *)&a, &len) != 0)
    nb_bench_fail("bench server: %s", strerror(errno));
  srv_port = ntohs(a.sin_port);
  srv_thread = nb_bench_spawn(-1, serve, NULL);
}

static void server_stop(void) {
  if (srv_fd < 0) return;
  atomic_store(&srv_stop, 1);
  pthread_join(srv_thread, NULL);
  close(srv_fd);
  srv_fd = -1;
}

/* ---- the runtime ---- */

/* Sets up the runtime's root and temp dir (bench_rt.h), then the server. */
static void setup(void) {
  if (nb_bench_rt_setup("http_load.lua", "http", NULL)) server_start();
}

/* Stops the server and removes the temp dir (at exit). */
static void cleanup(void) {
  server_stop();
  nb_bench_rt_cleanup();
}

typedef struct run_s {
  int http;            /* with the 1,000 requests */
  uint64_t window_ns;  /* how long the flow is counted */
} run_t;

/* Returns the answers the http agent counted (its nb.state.ok), 0 without. */
static uint64_t answers(nb_rt_t *rt) {
  int id = nb_rt_id(rt, "c_http");
  if (id < 0) return 0;
  char *err = NULL, *s = nb_rt_state_dump(rt, (uint32_t)id, &err);
  const char *p = s ? strstr(s, "[\"ok\"]=") : NULL;
  uint64_t n = p ? strtoull(p + 7, NULL, 10) : 0;
  nb_rt_free_string(s);
  nb_rt_free_string(err);
  return n;
}

typedef struct snap_s {
  nb_rt_t *rt;
  int http, done;
  uv_timer_t t0, t1;
  uint64_t in0, in1, ns0, ns1, a0, a1, live_min;
} snap_t;

static void snap0(uv_timer_t *t) {
  snap_t *s = t->data;
  nb_rt_stat_t st;
  nb_rt_stat(s->rt, 1, &st);
  s->a0 = answers(s->rt);
  s->live_min = nb__async_live(s->rt);
  s->in0 = st.spikes_in;
  s->ns0 = nb_bench_now_ns();
}

static void snap1(uv_timer_t *t) {
  snap_t *s = t->data;
  nb_rt_stat_t st;
  nb_rt_stat(s->rt, 1, &st);
  s->in1 = st.spikes_in;
  s->ns1 = nb_bench_now_ns();
  s->a1 = answers(s->rt);
  uint64_t live = nb__async_live(s->rt);
  if (live < s->live_min) s->live_min = live;
  s->done = 1;
}

/* One run: returns millions of spikes per second into the sink. */
static double flow_run(void *ctx) {
  run_t *r = ctx;
  char src[8 * PATH_MAX];
  int o = snprintf(src, sizeof src,
      "return { name = 'bench_http', tick = 'free',\n"
      "  axon = { capacity = 4096, inbox = 4096 },\n  neurons = {\n"
      "    a_producer = { script = '%s/bench/lua/producer.lua', threshold = 0,"
      " refractory = 0, config = { n = 1e15, batch = 1024, target = 1 } },\n"
      "    b_sink = { script = '%s/bench/lua/sink.lua', refractory = 0,"
      " config = { source = 0 } },\n", nb_bench_rt_root, nb_bench_rt_root);
  if (r->http)
    o += snprintf(src + o, sizeof src - (size_t)o,
        "    c_http = { script = '%s/bench/lua/http_load.lua', threshold = 0,"
        " refractory = 0, max_tasks = %d, config = { inflight = %d,"
        " url = 'http://127.0.0.1:%d/x' } },\n", nb_bench_rt_root, INFLIGHT + 10, INFLIGHT,
        srv_port);
  snprintf(src + o, sizeof src - (size_t)o,
           "  },\n  synapses = { { from = 'a_producer', to = 'b_sink' } },\n}\n");
  nb_rt_t *rt = nb_bench_rt_open(src);
  /* The real path: nb_rt_run drives the loop (free ticks in bursts, tasks
   * resumed after each I/O phase); two timers of ours on the runtime's loop
   * take the sink's count once every request is in flight and answers come
   * back steadily (settle), and again window_ns later. */
  snap_t sn = {.rt = rt, .http = r->http};
  uv_loop_t *loop = nb__loop(rt);
  uint64_t settle_ms = r->http ? (nb_bench.tiny ? 300 : 1000) : 100;
  uint64_t window_ms = r->window_ns / 1000000u;
  uv_timer_init(loop, &sn.t0);
  uv_timer_init(loop, &sn.t1);
  sn.t0.data = sn.t1.data = &sn;
  uv_timer_start(&sn.t0, snap0, settle_ms, 0);
  uv_timer_start(&sn.t1, snap1, settle_ms + window_ms, 0);
  FILE *devnull = fopen("/dev/null", "w");
  nb_rt_run_opts_t ro = {.for_ns = (settle_ms + window_ms + 20) * 1000000ull,
                         .no_watch = 1, .out = devnull};
  if (nb_rt_run(rt, &ro) != 0) nb_bench_fail("nb_rt_run failed");
  if (devnull) fclose(devnull);
  if (!sn.done) nb_bench_fail("the window did not end inside the run");
  if (r->http && sn.live_min < INFLIGHT)
    nb_bench_fail("%" PRIu64 " requests in flight in the window, not %d", sn.live_min, INFLIGHT);
  if (r->http && sn.a1 <= sn.a0) nb_bench_fail("no HTTP answer came back during the window");
  if (sn.in1 <= sn.in0) nb_bench_fail("the flow did not run");
  for (uint32_t id = 0; id < nb_rt_count(rt); id++) nb_bench_rt_stat(rt, id);
  nb_rt_close(rt);
  return (double)(sn.in1 - sn.in0) / ((double)(sn.ns1 - sn.ns0) / 1e9) / 1e6;
}

static void group_http(void) {
  setup();
  uint64_t w = nb_bench.tiny ? 100000000ull : 500000000ull;
  run_t with = {1, w}, alone = {0, w};
  nb_bench_row_t r = nb_bench_row("lua_hop_http1000", "M spikes/s");
  nb_bench_measure(flow_run, &with, NULL, flow_run, &alone, NULL, &r.v, &r.b);
  r.baseline = "lua_hop_alone";
  r.target = ">=0.8";
  r.note = "Lua producer -> Lua sink (one thread, free ticks, driven by nb_rt_run) while a Lua agent "
           "keeps 1,000 nb.http requests in flight (an in-process loopback server "
           "answers each after 0 to 1 s: 2,000 a second); baseline: the same flow "
           "without them";
  nb_bench_emit(&r);
}

static const nb_bench_group_t groups[] = {
    {"lua_hop_http1000", group_http},
};

int main(int argc, char **argv) {
  atexit(cleanup);
  return nb_bench_main(argc, argv, groups, sizeof groups / sizeof groups[0]);
}
