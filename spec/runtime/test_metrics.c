/* The runtime's metrics and its HTTP endpoint from C: handler histograms,
 * depths and synapse counts in every view of a snapshot; metrics off; the
 * endpoint served by libmicrohttpd's thread while this thread ticks and
 * builds snapshots, scraped by two more threads (run under TSan with
 * make test SAN=thread: the counters' single writer, the snapshot swap). */
#include <arpa/inet.h>
#include <jansson.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "nb_rt_metrics.h"
#include "nbtest.h"

/* Returns a runtime over spec/fixtures/obs/flow.lua (1,500 requests through
 * a relay to a counter), metrics on unless off; NULL when it fails. */
static nb_rt_t *open_flow(int off) {
  nb_rt_opts_t o = {.quiet = 1, .no_metrics = off};
  char *err = NULL;
  nb_rt_t *rt = nb_rt_open("spec/fixtures/obs/flow.lua", &o, &err);
  if (!rt) printf("    open failed: %s\n", err);
  nb_rt_free_string(err);
  return rt;
}

/* Returns the neuron object called name in the stats object o. */
static json_t *neuron_of(json_t *o, const char *name) {
  json_t *ns = json_object_get(o, "neurons");
  for (size_t i = 0; i < json_array_size(ns); i++) {
    json_t *n = json_array_get(ns, i);
    if (!strcmp(json_string_value(json_object_get(n, "name")), name)) return n;
  }
  return NULL;
}

static void every_view_counts_the_flow(void) {
  nb_rt_t *rt = open_flow(0);
  NBT_CHECK(rt != NULL);
  if (!rt) return;
  NBT_CHECK(nb_rt_tick(rt, 1200) >= 0); /* 1.5 requests per tick */
  nb__snap_t *s = nb__snapshot_build(rt);
  NBT_CHECK(s != NULL);
  if (!s) goto out;
  NBT_CHECK(strstr(s->prom, "neuronbus_spikes_in_total{neuron=\"relay\"} 1500\n") != NULL);
  NBT_CHECK(strstr(s->prom, "neuronbus_synapse_spikes_total{from=\"relay\",to=\"counter\"} 1500\n") != NULL);
  NBT_CHECK(strstr(s->prom, "# TYPE neuronbus_handler_seconds histogram\n") != NULL);
  NBT_CHECK(strstr(s->prom, "neuronbus_handler_seconds_bucket{neuron=\"relay\",le=\"+Inf\"}") != NULL);
  json_error_t je;
  json_t *o = json_loadb(s->json, s->njson, 0, &je);
  NBT_CHECK(o != NULL);
  json_t *relay = o ? neuron_of(o, "relay") : NULL;
  NBT_CHECK(relay != NULL);
  if (relay) {
    json_t *h = relay;
    /* One on_spike batch per delivery: as many calls as batches. */
    NBT_EQ(json_integer_value(json_object_get(h, "handler_calls")),
           json_integer_value(json_object_get(relay, "batches")));
    NBT_CHECK(json_integer_value(json_object_get(h, "handler_calls")) >= 750);
    NBT_CHECK(json_integer_value(json_object_get(relay, "inbox_max")) >= 1);
    NBT_CHECK(json_integer_value(json_object_get(relay, "axon_max")) >= 1);
    NBT_CHECK(json_number_value(json_object_get(h, "max_ever_ms")) > 0);
    json_t *caps = json_object_get(relay, "capabilities");
    NBT_CHECK(json_array_size(caps) == 1 &&
              !strcmp(json_string_value(json_array_get(caps, 0)), "relay"));
    /* The histogram's count and the JSON agree (same reads, one snapshot). */
    char want[128];
    snprintf(want, sizeof want, "neuronbus_handler_seconds_count{neuron=\"relay\"} %lld\n",
             (long long)json_integer_value(json_object_get(h, "handler_calls")));
    NBT_CHECK(strstr(s->prom, want) != NULL);
  }
  json_decref(o);
  /* Regions as clusters, the synapses as weighted edges. */
  NBT_CHECK(strstr(s->dot, "subgraph cluster_") != NULL);
  NBT_CHECK(strstr(s->dot, "label=\"obs/core\"") != NULL);
  NBT_CHECK(strstr(s->dot, "label=\"0.4\", penwidth=2.10") != NULL);
  /* /neurons/NAME's card. */
  int found = 0;
  for (uint32_t i = 0; i < s->n; i++)
    if (!strcmp(s->names[i], "counter"))
      found = strstr(s->cards[i], "\"spikes_in\":1500") != NULL;
  NBT_CHECK(found);
  nb__snap_free(s);
out:
  nb_rt_close(rt);
}

static void the_interval_gives_quantiles_in_order(void) {
  nb_rt_t *rt = open_flow(0);
  NBT_CHECK(rt != NULL);
  if (!rt) return;
  NBT_CHECK(nb_rt_tick(rt, 600) >= 0);
  nb__metrics_close(rt, nb_clock_ns(), 0);
  json_t *o = nb__stats_json(rt);
  json_t *h = neuron_of(o, "relay");
  double p50 = json_number_value(json_object_get(h, "p50_ms"));
  double p99 = json_number_value(json_object_get(h, "p99_ms"));
  double max = json_number_value(json_object_get(h, "max_ms"));
  NBT_CHECK(p50 > 0 && p50 <= p99 && p99 <= max);
  NBT_CHECK(json_number_value(json_object_get(neuron_of(o, "relay"), "in_per_s")) > 0);
  json_decref(o);
  /* An interval with no call: zeros, not the previous figures. */
  nb__metrics_close(rt, nb_clock_ns() + 1000, 0);
  o = nb__stats_json(rt);
  h = neuron_of(o, "relay");
  NBT_CHECK(json_number_value(json_object_get(h, "max_ms")) == 0);
  json_decref(o);
  nb_rt_close(rt);
}

static void metrics_off_leaves_them_out(void) {
  nb_rt_t *rt = open_flow(1);
  NBT_CHECK(rt != NULL);
  if (!rt) return;
  NBT_CHECK(nb_rt_tick(rt, 200) >= 0);
  nb__snap_t *s = nb__snapshot_build(rt);
  NBT_CHECK(s != NULL);
  if (s) {
    NBT_CHECK(strstr(s->prom, "neuronbus_handler_seconds_bucket") == NULL);
    NBT_CHECK(strstr(s->json, "\"handler_calls\"") == NULL);
    NBT_CHECK(strstr(s->prom, "neuronbus_spikes_in_total{neuron=\"relay\"}") != NULL);
  }
  nb__snap_free(s);
  nb_rt_close(rt);
}

/* A worker thread's side: records handler calls of one agent, as the
 * thread running that neuron would. */
typedef struct writer_s {
  nb__agent_t *a;
  int calls;
} writer_t;

static void *write_calls(void *arg) {
  writer_t *w = arg;
  for (int i = 0; i < w->calls; i++)
    nb__metrics_end(w->a, nb_clock_ns() - 1500, (uint32_t)(i % 7) + 1);
  return NULL;
}

static void counters_written_by_another_thread_read_clean(void) {
  nb_rt_t *rt = open_flow(0);
  NBT_CHECK(rt != NULL);
  if (!rt) return;
  int id = nb_rt_id(rt, "counter");
  writer_t w = {rt->agents[id], 200000};
  pthread_t th;
  pthread_create(&th, NULL, write_calls, &w);
  /* The loop thread's side meanwhile: intervals and snapshots. */
  for (int i = 0; i < 50; i++) {
    nb__metrics_close(rt, nb_clock_ns(), 0);
    nb__snap_free(nb__snapshot_build(rt));
  }
  pthread_join(th, NULL);
  nb__snap_t *s = nb__snapshot_build(rt);
  NBT_CHECK(s != NULL);
  if (s) {
    char want[128];
    snprintf(want, sizeof want,
             "neuronbus_handler_seconds_count{neuron=\"counter\"} %d\n", w.calls);
    NBT_CHECK(strstr(s->prom, want) != NULL);
    NBT_CHECK(strstr(s->prom, "neuronbus_inbox_depth_max{neuron=\"counter\"} 7\n") != NULL);
  }
  nb__snap_free(s);
  nb_rt_close(rt);
}

/* ---- the endpoint under threads ---- */

typedef struct scraper_s {
  int port;
  atomic_int stop;
  int ok200, ok404, other;
} scraper_t;

/* GETs path; returns the status (0 when the exchange failed). */
static int get_status(int port, const char *path) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return 0;
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  char req[256], buf[16384];
  snprintf(req, sizeof req, "GET %s HTTP/1.0\r\n\r\n", path);
  int status = 0;
  ssize_t n, got = 0;
  if (connect(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
      write(fd, req, strlen(req)) == (ssize_t)strlen(req)) {
    while ((n = read(fd, buf + (got < 32 ? got : 0), got < 32 ? sizeof buf - (size_t)got : sizeof buf)) > 0)
      got += n;
    if (got >= 12) status = atoi(buf + 9);
  }
  close(fd);
  return status;
}

static void *scrape(void *arg) {
  scraper_t *sc = arg;
  static const char *const paths[] = {"/metrics", "/stats", "/graph",
                                      "/neurons/relay", "/nope"};
  for (int i = 0; !atomic_load(&sc->stop) || i < 5; i++) {
    const char *p = paths[i % 5];
    int st = get_status(sc->port, p);
    if (st == 200 && strcmp(p, "/nope")) sc->ok200++;
    else if (st == 404 && !strcmp(p, "/nope")) sc->ok404++;
    else sc->other++;
    usleep(2000);
  }
  return NULL;
}

static void the_endpoint_serves_while_the_runtime_ticks(void) {
  nb_rt_t *rt = open_flow(0);
  NBT_CHECK(rt != NULL);
  if (!rt) return;
  NBT_EQ(nb_rt_http_start(rt, "127.0.0.1:0"), 0);
  NBT_EQ(nb_rt_http_start(rt, "127.0.0.1:0"), NB_EEXIST);
  int port = nb_rt_http_port(rt);
  NBT_CHECK(port > 0);
  scraper_t sc[2];
  pthread_t th[2];
  for (int i = 0; i < 2; i++) {
    memset(&sc[i], 0, sizeof sc[i]);
    sc[i].port = port;
    pthread_create(&th[i], NULL, scrape, &sc[i]);
  }
  uint64_t t0 = nb_clock_ns();
  while (nb_clock_ns() - t0 < 600000000ull) {
    nb_rt_tick(rt, 1);
    nb_rt_http_serve(rt);
    usleep(200);
  }
  for (int i = 0; i < 2; i++) atomic_store(&sc[i].stop, 1);
  /* Served until the scrapers are out: their requests wait for us. */
  for (int i = 0; i < 2; i++) {
    while (pthread_tryjoin_np(th[i], NULL) != 0) {
      nb_rt_http_serve(rt);
      usleep(500);
    }
  }
  nb_rt_http_stop(rt);
  for (int i = 0; i < 2; i++) {
    NBT_CHECK(sc[i].ok200 >= 8);
    NBT_CHECK(sc[i].ok404 >= 1);
    NBT_EQ(sc[i].other, 0);
  }
  NBT_EQ(nb_rt_http_port(rt), 0);
  NBT_EQ(nb_rt_http_start(rt, "bogus"), NB_EINVAL);
  nb_rt_close(rt);
}

static const nbt_test_t tests[] = {
  NBT_TEST(every_view_counts_the_flow),
  NBT_TEST(the_interval_gives_quantiles_in_order),
  NBT_TEST(metrics_off_leaves_them_out),
  NBT_TEST(counters_written_by_another_thread_read_clean),
  NBT_TEST(the_endpoint_serves_while_the_runtime_ticks),
};

int main(int argc, char **argv) {
  /* The test binary does not sit at build/<cfg>/neuronbus: name lua/. */
  setenv("NB_LUA_PATH", "lua", 1);
  return NBT_MAIN(argc, argv, tests, NULL);
}
