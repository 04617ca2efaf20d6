/* test_link_limits.c: what peers may hold of a node (nb_link_limits_t in
 * runtime/nb_link.h): the per-address log limiter, one-shot callers' links
 * freed, and a process out of descriptors telling once while its
 * established link goes on. One loop per test, ports ephemeral on
 * 127.0.0.1; the raw attacks (floods, slowloris, idle sockets) are in
 * spec/e2e/tcp_limits.sh. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "nb_err.h"
#include "nb_link.h"
#include "nb_link_internal.h"
#include "nbtest.h"

/* ---- a node with its log and counters ---- */

typedef struct node_s {
  nb_link_node_t *node;
  char cortex[32];
  char lines[64][400];
  int nlines;
  int ups, gones;
  uint64_t got;
  nb_link_t *link; /* its outbound link, if any */
} node_t;

static void on_log(void *ud, nb_link_log_level_t level, const char *msg) {
  node_t *t = ud;
  if (t->nlines < 64) snprintf(t->lines[t->nlines++], 400, "%s", msg);
}

static int on_spike(void *ud, nb_link_t *l, const nb_spike_t *s,
                    const void *payload, size_t len) {
  ((node_t *)ud)->got++;
  return 0;
}

static void on_event(void *ud, nb_link_t *l, nb_link_event_t ev) {
  node_t *t = ud;
  if (ev == NB_LINK_UP) t->ups++;
  if (ev == NB_LINK_GONE) t->gones++;
}

/* Returns how many of t's log lines contain needle. */
static int lines_with(const node_t *t, const char *needle) {
  int n = 0;
  for (int i = 0; i < t->nlines; i++) n += strstr(t->lines[i], needle) != 0;
  return n;
}

/* Makes t a node called cortex on loop (handshake timeout 200 ms: the
 * sweep runs every 50 ms; limits lim, NULL for the defaults) exposing
 * "sink" as id 1. */
static void node_with(node_t *t, uv_loop_t *loop, const char *cortex,
                      const nb_link_limits_t *lim) {
  memset(t, 0, sizeof *t);
  snprintf(t->cortex, sizeof t->cortex, "%s", cortex);
  nb_link_node_opts_t o;
  memset(&o, 0, sizeof o);
  o.cortex = t->cortex;
  o.on_spike = on_spike;
  o.on_event = on_event;
  o.ud = t;
  o.log = on_log;
  o.log_ud = t;
  o.hello_timeout_ms = 200;
  if (lim) o.limits = *lim;
  NBT_EQ(nb_link_node_new(&t->node, loop, &o), 0);
  NBT_EQ(nb_link_node_expose(t->node, "sink", 1), 0);
}

/* As node_with, with the default limits. */
static void node_up(node_t *t, uv_loop_t *loop, const char *cortex) {
  node_with(t, loop, cortex, NULL);
}

/* Returns the url of t's listening port. */
static const char *url_of(const node_t *t) {
  static char url[64];
  snprintf(url, sizeof url, "tcp://127.0.0.1:%d", nb_link_node_port(t->node));
  return url;
}

static void wake(uv_timer_t *t) { (void)t; }

/* Runs loop until *flag >= want or ms pass; returns 1 when it got there. */
static int run_until(uv_loop_t *loop, const int *flag, int want, int ms) {
  uv_timer_t t;
  uv_timer_init(loop, &t);
  uv_timer_start(&t, wake, 5, 5);
  uint64_t end = uv_now(loop) + (uint64_t)ms;
  while ((!flag || *flag < want) && uv_now(loop) < end)
    uv_run(loop, UV_RUN_ONCE);
  uv_close((uv_handle_t *)&t, NULL);
  uv_run(loop, UV_RUN_NOWAIT);
  return !flag || *flag >= want;
}

static void closed(void *ud) { *(int *)ud = 1; }

/* Closes t's node and runs the loop until it is freed. */
static void node_down(node_t *t, uv_loop_t *loop) {
  int done = 0;
  nb_link_node_close(t->node, closed, &done);
  run_until(loop, &done, 1, 2000);
}

/* ---- the log limiter ---- */

static void log_limiter_once_per_address_and_kind(void) {
  nb__node_lim_t *l = calloc(1, sizeof *l);
  nb__lim_init(l, NULL);
  uint64_t held = 99;
  NBT_EQ(nb__lim_log_ok(l, "10.0.0.1", NB__LIM_PENDING, 1000, &held), 1);
  NBT_EQ(held, 0);
  for (int i = 0; i < 5; i++)
    NBT_EQ(nb__lim_log_ok(l, "10.0.0.1", NB__LIM_PENDING, 2000, &held), 0);
  /* Another kind, another address: told. */
  NBT_EQ(nb__lim_log_ok(l, "10.0.0.1", NB__LIM_IDLE, 2000, &held), 1);
  NBT_EQ(nb__lim_log_ok(l, "10.0.0.2", NB__LIM_PENDING, 2000, &held), 1);
  /* A minute later: told again, with the five held back. */
  NBT_EQ(nb__lim_log_ok(l, "10.0.0.1", NB__LIM_PENDING,
                        1000 + NB__LIM_LOG_EVERY_MS, &held), 1);
  NBT_EQ(held, 5);
  /* Digits do not make another reason; words do. */
  NBT_EQ(nb__lim_msg_kind("frame 7 incomplete"),
         nb__lim_msg_kind("frame 1234 incomplete"));
  NBT_CHECK(nb__lim_msg_kind("closed by the peer") !=
            nb__lim_msg_kind("frame 7 incomplete"));
  /* More addresses than slots: the table stays usable. */
  char ip[32];
  for (int i = 0; i < 1000; i++) {
    snprintf(ip, sizeof ip, "10.1.%d.%d", i / 256, i % 256);
    NBT_EQ(nb__lim_log_ok(l, ip, NB__LIM_LINKS, 5000 + (uint64_t)i, &held), 1);
  }
  nb_link_limits_t d = nb_link_limits_default();
  NBT_CHECK(d.max_pending && d.pending_per_addr && d.max_links &&
            d.links_per_addr && d.frame_timeout_ms && d.rx_bytes);
  NBT_CHECK(d.keepalive_ms < d.idle_timeout_ms);
  nb_link_limits_t bad = {0};
  bad.keepalive_ms = 5000;
  bad.idle_timeout_ms = 3000;
  NBT_CHECK(nb__limits_fill(&bad).keepalive_ms < 3000);
  nb__lim_free(l);
  free(l);
}

/* ---- one-shot callers ---- */

static void oneshot_callers_links_are_freed(void) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  node_t *b = calloc(1, sizeof *b), *c = calloc(1, sizeof *c);
  node_up(b, &loop, "b");
  NBT_EQ(nb_link_node_listen(b->node, "tcp://127.0.0.1:0"), 0);
  char url[64];
  snprintf(url, sizeof url, "%s", url_of(b));
  for (int i = 0; i < 30; i++) {
    char name[16];
    snprintf(name, sizeof name, "one%d", i);
    node_up(c, &loop, name);
    NBT_EQ(nb_link_connect(c->node, url, NULL, &c->link), 0);
    NBT_CHECK(run_until(&loop, &c->ups, 1, 3000));
    node_down(c, &loop);
  }
  run_until(&loop, &b->gones, 30, 3000);
  NBT_EQ(b->gones, 30);
  NBT_CHECK(nb_link_at(b->node, 0) == NULL); /* none kept */
  /* A caller that sent one spike keeps its link (its counts matter). */
  node_up(c, &loop, "keeper");
  NBT_EQ(nb_link_connect(c->node, url, NULL, &c->link), 0);
  NBT_CHECK(run_until(&loop, &c->ups, 1, 3000));
  nb_spike_t s;
  nb_spike_init(&s, 0, NB_EXCITATORY, 1);
  NBT_EQ(nb_link_send_name(c->link, "sink", &s, NULL, 0), 0);
  run_until(&loop, (const int *)&b->got, 1, 3000);
  node_down(c, &loop);
  run_until(&loop, NULL, 0, 200);
  NBT_EQ(b->got, 1);
  NBT_CHECK(nb_link_find(b->node, "keeper") != NULL);
  NBT_EQ(b->gones, 30);
  node_down(b, &loop);
  NBT_EQ(uv_loop_close(&loop), 0);
  free(b);
  free(c);
}

/* ---- max_links ---- */

static void callers_past_max_links_refused_once(void) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  node_t *b = calloc(1, sizeof *b), *c = calloc(5, sizeof *c);
  nb_link_limits_t lim = {0};
  lim.max_links = 3;
  node_with(b, &loop, "b", &lim);
  NBT_EQ(nb_link_node_listen(b->node, "tcp://127.0.0.1:0"), 0);
  nb_spike_t s;
  nb_spike_init(&s, 0, NB_EXCITATORY, 1);
  /* Three callers that send a spike keep their links; two more cortexes
   * are refused at their handshake, with one line for the address. */
  for (int i = 0; i < 5; i++) {
    char name[16];
    snprintf(name, sizeof name, "kept%d", i);
    node_up(&c[i], &loop, name);
    NBT_EQ(nb_link_connect(c[i].node, url_of(b), NULL, &c[i].link), 0);
    run_until(&loop, &c[i].ups, 1, i < 3 ? 3000 : 600);
    if (i < 3) {
      NBT_EQ(c[i].ups, 1);
      NBT_EQ(nb_link_send_name(c[i].link, "sink", &s, NULL, 0), 0);
    } else {
      NBT_EQ(c[i].ups, 0);
    }
  }
  run_until(&loop, NULL, 0, 300);
  NBT_EQ(b->got, 3);
  NBT_EQ(lines_with(b, "link_limits.max_links"), 1);
  NBT_CHECK(nb_link_find(b->node, "kept2") != NULL);
  NBT_CHECK(nb_link_find(b->node, "kept3") == NULL);
  for (int i = 0; i < 5; i++) node_down(&c[i], &loop);
  node_down(b, &loop);
  NBT_EQ(uv_loop_close(&loop), 0);
  free(b);
  free(c);
}

/* ---- out of descriptors ---- */

typedef struct feeder_s {
  uv_timer_t t;
  nb_link_t *l;
  uint64_t sent;
} feeder_t;

/* Sends up to 50 spikes to "sink" every tick. */
static void feed(uv_timer_t *t) {
  feeder_t *f = t->data;
  nb_spike_t s;
  nb_spike_init(&s, 0, NB_EXCITATORY, 1);
  for (int i = 0; i < 50 && nb_link_is_up(f->l); i++) {
    if (nb_link_send_name(f->l, "sink", &s, NULL, 0) != 0) break;
    f->sent++;
  }
}

/* Returns the CPU seconds this process used so far. */
static double cpu_s(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
         (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

static void out_of_descriptors_told_once_link_goes_on(void) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  node_t *a = calloc(1, sizeof *a), *b = calloc(1, sizeof *b),
         *c = calloc(1, sizeof *c);
  node_up(b, &loop, "b");
  NBT_EQ(nb_link_node_listen(b->node, "tcp://127.0.0.1:0"), 0);
  node_up(a, &loop, "a");
  NBT_EQ(nb_link_connect(a->node, url_of(b), NULL, &a->link), 0);
  NBT_CHECK(run_until(&loop, &a->ups, 1, 3000));
  feeder_t f = {.l = a->link};
  uv_timer_init(&loop, &f.t);
  f.t.data = &f;
  uv_timer_start(&f.t, feed, 10, 10);
  run_until(&loop, NULL, 0, 200);
  NBT_CHECK(b->got > 0);

  /* Callers' sockets made now (connect needs no new descriptor), then
   * every descriptor taken. */
  struct sockaddr_in sa;
  memset(&sa, 0, sizeof sa);
  sa.sin_family = AF_INET;
  sa.sin_port = htons((uint16_t)nb_link_node_port(b->node));
  sa.sin_addr.s_addr = htonl(0x7f000001);
  int callers[4];
  for (int i = 0; i < 4; i++)
    callers[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  struct rlimit old, rl;
  getrlimit(RLIMIT_NOFILE, &old);
  rl = old;
  if (rl.rlim_cur > 256) rl.rlim_cur = 256;
  NBT_EQ(setrlimit(RLIMIT_NOFILE, &rl), 0);
  static int fill[1024];
  int nfill = 0;
  while (nfill < 1024 && (fill[nfill] = open("/dev/null", O_RDONLY)) >= 0)
    nfill++;
  NBT_CHECK(nfill < 1024 && errno == EMFILE);
  for (int i = 0; i < 4; i++)
    connect(callers[i], (struct sockaddr *)&sa, sizeof sa);
  uint64_t got0 = b->got;
  double cpu0 = cpu_s();
  run_until(&loop, NULL, 0, 1000);
  double cpu = cpu_s() - cpu0;
  uint64_t got = b->got - got0;
  for (int i = 0; i < nfill; i++) close(fill[i]);
  setrlimit(RLIMIT_NOFILE, &old);
  printf("# out of descriptors for 1 s: the link carried %llu spikes, "
         "%.3f s of CPU\n", (unsigned long long)got, cpu);
  NBT_EQ(lines_with(b, "out of file descriptors"), 1);
  NBT_CHECK(got >= 1000); /* 50 per 10 ms offered */
  NBT_CHECK(cpu < 0.5);   /* no accept loop spun */
  NBT_CHECK(nb_link_is_up(a->link));
  /* Descriptors back: a new peer gets in. */
  node_up(c, &loop, "c");
  NBT_EQ(nb_link_connect(c->node, url_of(b), NULL, &c->link), 0);
  NBT_CHECK(run_until(&loop, &c->ups, 1, 3000));
  for (int i = 0; i < 4; i++) close(callers[i]);
  uv_close((uv_handle_t *)&f.t, NULL);
  node_down(c, &loop);
  node_down(a, &loop);
  node_down(b, &loop);
  NBT_EQ(uv_loop_close(&loop), 0);
  free(a);
  free(b);
  free(c);
}

static const nbt_test_t tests[] = {
    NBT_TEST(log_limiter_once_per_address_and_kind),
    NBT_TEST(oneshot_callers_links_are_freed),
    NBT_TEST(callers_past_max_links_refused_once),
    NBT_TEST(out_of_descriptors_told_once_link_goes_on),
};

int main(int argc, char **argv) {
  signal(SIGPIPE, SIG_IGN);
  return NBT_MAIN(argc, argv, tests, NULL);
}
