/* test_rt_link.c: the runtime's TCP links (runtime/nb_rt_link.c) from C.
 *
 * Two or three runtimes in one process share one libuv loop on loopback
 * (the first listens on an ephemeral port, the others are built with it).
 * The test drives them itself: one tick each, then one non-blocking loop
 * turn, until a condition holds or a generous deadline passes. Runs under
 * ASan/UBSan too (make test SAN=address), which e2e runs cannot. */
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "nb_link.h"
#include "nb_rt.h"
#include "nbtest.h"

#define DEADLINE_S 60.0

static uv_loop_t loop;

/* Returns a runtime from manifest source (printf-formatted) with the
 * recorder neurons named in peers (comma-separated, or NULL), or NULL after
 * printing why. */
static nb_rt_t *open_topo(int record, const char *peers, const char *fmt,
                          ...) {
  char src[4096];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(src, sizeof src, fmt, ap);
  va_end(ap);
  nb_rt_opts_t o = {.record = record, .quiet = 1, .peers = peers};
  char *err = NULL;
  nb_rt_t *rt = nb_rt_open_topo(src, strlen(src), "=test", &o, &err);
  if (!rt) printf("    open failed: %s\n", err);
  NBT_CHECK(rt != NULL);
  nb_rt_free_string(err);
  return rt;
}

/* Ticks each runtime of rts (NULL ends the list; skip[i] leaves one idle)
 * and turns the loop, until done(ctx) or the deadline; returns 1 when done
 * held, else 0. */
static int pump(nb_rt_t **rts, const int *skip, int (*done)(void *),
                void *ctx, double max_s) {
  double end = nbt_now_s() + max_s;
  while (nbt_now_s() < end) {
    if (done && done(ctx)) return 1;
    for (int i = 0; rts[i]; i++)
      if (!skip || !skip[i]) nb_rt_tick(rts[i], 1);
    uv_run(&loop, UV_RUN_NOWAIT);
  }
  return done ? done(ctx) : 1;
}

/* Returns link i of rt's counters (zeroed when there is none). */
static nb_link_stats_t link_of(nb_rt_t *rt, size_t i) {
  nb_link_stats_t st;
  memset(&st, 0, sizeof st);
  nb_rt_link_stats(rt, i, &st, NULL);
  return st;
}

/* Returns neuron name's spikes_in in rt. */
static uint64_t spikes_in(nb_rt_t *rt, const char *name) {
  nb_rt_stat_t s;
  memset(&s, 0, sizeof s);
  nb_rt_stat(rt, (uint32_t)nb_rt_id(rt, name), &s);
  return s.spikes_in;
}

/* Returns 1 when nb.state of neuron name in rt contains needle. */
static int state_has(nb_rt_t *rt, const char *name, const char *needle) {
  char *err = NULL;
  char *dump = nb_rt_state_dump(rt, (uint32_t)nb_rt_id(rt, name), &err);
  int yes = dump && strstr(dump, needle) != NULL;
  if (!yes) printf("    state of %s lacks %s: %s\n", name, needle, dump ? dump : err);
  nb_rt_free_string(dump);
  nb_rt_free_string(err);
  return yes;
}

/* Returns the number after the first key (a JSON member name with its
 * colon) in rt's statistics line, or -1. */
static long long json_count(nb_rt_t *rt, const char *key) {
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  nb_rt_print_stats(rt, f, 1, 0);
  fclose(f);
  const char *at = strstr(buf, key);
  long long v = at ? atoll(at + strlen(key)) : -1;
  free(buf);
  return v;
}

/* The listening side: gen (fixture) firing to its peer's gen through a
 * peer:// proxy. */
static const char side_a[] =
    "return { name = 'a', tick = 'free', arena = { size = 67108864%s },\n"
    "  axon = { capacity = %d },\n"
    "  listen = 'tcp://127.0.0.1:0'%s,\n"
    "  neurons = {\n"
    "    far = { remote = 'peer://b/gen' },\n"
    "    gen = { script = 'spec/fixtures/tcp/gen.lua', threshold = 0,\n"
    "      refractory = 0, config = { to = 'far', count = %d, expect = %d,\n"
    "      huge_every = %d, label = 'a' } } } }\n";

/* The dialling side. */
static const char side_b[] =
    "return { name = 'b', tick = 'free', arena = { size = 67108864%s },\n"
    "  axon = { capacity = %d },\n"
    "  peers = { { url = 'tcp://127.0.0.1:%d'%s } },\n"
    "  neurons = {\n"
    "    far = { remote = 'tcp://127.0.0.1:%d/gen' },\n"
    "    gen = { script = 'spec/fixtures/tcp/gen.lua', threshold = 0,\n"
    "      refractory = 0, config = { to = 'far', count = %d, expect = %d,\n"
    "      huge_every = %d, label = 'b' } } } }\n";

typedef struct pair_s {
  nb_rt_t *a, *b;
  uint64_t na, nb; /* spikes each gen expects */
} pair_t;

static int pair_done(void *ctx) {
  pair_t *p = ctx;
  return spikes_in(p->a, "gen") >= p->na && spikes_in(p->b, "gen") >= p->nb;
}

/* Opens and starts a and b: a fires na to b, b fires nb to a. arena is ""
 * or ", path = '...'"; aopts/bopts extend a's transport and b's peer. */
static int pair_open(pair_t *p, int na, int nb, int huge, const char *arena,
                     int axon, const char *aopts, const char *bopts) {
  memset(p, 0, sizeof *p);
  p->na = (uint64_t)nb;
  p->nb = (uint64_t)na;
  p->a = open_topo(0, NULL, side_a, arena, axon, aopts, na, nb, huge);
  if (!p->a) return -1;
  NBT_EQ(nb_rt_link_start(p->a, &loop), 0);
  int port = nb_rt_link_port(p->a);
  NBT_CHECK(port > 0);
  p->b = open_topo(0, NULL, side_b, arena, axon, port, bopts, port, nb, na, huge);
  if (!p->b) return -1;
  NBT_EQ(nb_rt_link_start(p->b, &loop), 0);
  return 0;
}

/* Stops and closes both sides; returns nothing. */
static void pair_close(pair_t *p) {
  if (p->b) {
    nb_rt_link_stop(p->b, 200000000ull);
    nb_rt_close(p->b);
  }
  if (p->a) {
    nb_rt_link_stop(p->a, 200000000ull);
    nb_rt_close(p->a);
  }
}

/* Both directions at once, every spike checked by the fixture (order per
 * source, payload bytes, large and 64 KiB payloads), counters exact. */
static void exchange_both_ways(void) {
  pair_t p;
  int n = 60000;
  if (pair_open(&p, n, n, 997, "", 4096, "", "") == 0) {
    NBT_CHECK(pump((nb_rt_t *[]){p.a, p.b, NULL}, NULL, pair_done, &p,
                   DEADLINE_S));
    NBT_EQ(spikes_in(p.a, "gen"), n);
    NBT_EQ(spikes_in(p.b, "gen"), n);
    NBT_CHECK(state_has(p.a, "gen", "[\"order_errors\"]=0,"));
    NBT_CHECK(state_has(p.a, "gen", "[\"payload_errors\"]=0,"));
    NBT_CHECK(state_has(p.b, "gen", "[\"payload_errors\"]=0,"));
    NBT_CHECK(state_has(p.b, "gen", "[\"huge\"]=61,"));
    /* Spikes from the peer come from the declared proxy "far". */
    NBT_CHECK(state_has(p.a, "gen", "[\"sources\"]=1,"));
    pump((nb_rt_t *[]){p.a, p.b, NULL}, NULL, NULL, NULL, 0.2); /* acks */
    nb_link_stats_t la = link_of(p.a, 0), lb = link_of(p.b, 0);
    NBT_EQ(la.sent, n);
    NBT_EQ(la.acked, n);
    NBT_EQ(la.received, n);
    NBT_EQ(lb.sent, n);
    NBT_EQ(lb.acked, n);
    NBT_EQ(la.lost + lb.lost + la.rejected + lb.rejected, 0);
    NBT_EQ(nb_rt_link_count(p.a), 1);
  }
  pair_close(&p);
}

/* A receiver that does not tick: its injection queue fills, its link
 * pauses, the sender's link queue and proxy fill, and the producer's fire
 * reports full; nothing is lost once the receiver runs again. */
static void backpressure_reaches_the_producer(void) {
  pair_t p;
  int n = 40000;
  if (pair_open(&p, 0, n, 0, "", 256, "",
                ", queue = 512, queue_bytes = 1048576") == 0) {
    /* b dials and sends; only b ticks, a (the receiver) stands still. */
    nb_rt_t *both[] = {p.a, p.b, NULL};
    int skip_a[] = {1, 0};
    pump(both, skip_a, NULL, NULL, 1.0);
    nb_link_stats_t lb = link_of(p.b, 0), la = link_of(p.a, 0);
    nb_rt_stat_t g;
    nb_rt_stat(p.b, (uint32_t)nb_rt_id(p.b, "gen"), &g);
    nb_rt_stat_t far;
    nb_rt_stat(p.b, (uint32_t)nb_rt_id(p.b, "far"), &far);
    NBT_CHECK(la.pauses > 0);         /* the receiver stopped reading */
    NBT_CHECK(lb.full > 0);           /* the sender's link refused */
    NBT_CHECK(lb.queued <= 512);      /* ... and stayed bounded */
    NBT_CHECK(far.deferred > 0);      /* the proxy's inbox waited */
    NBT_CHECK(g.full > 0);            /* the producer's fire saw it */
    NBT_CHECK(spikes_in(p.a, "gen") == 0);
    NBT_CHECK(lb.sent < (uint64_t)n); /* the rest waits in b */
    /* Now both run: every spike arrives, in order, none lost. */
    NBT_CHECK(pump(both, NULL, pair_done, &p, DEADLINE_S));
    NBT_EQ(spikes_in(p.a, "gen"), n);
    NBT_CHECK(state_has(p.a, "gen", "[\"order_errors\"]=0,"));
    NBT_CHECK(state_has(p.a, "gen", "[\"payload_errors\"]=0,"));
    lb = link_of(p.b, 0);
    NBT_EQ(lb.lost, 0);
  }
  pair_close(&p);
}

/* A file-backed arena mapped by both: 64 KiB payloads cross by reference
 * (the ref, not the bytes); with private arenas the bytes travel. */
static void shared_arena_passes_refs(void) {
  char path[128], arena[160];
  snprintf(path, sizeof path, "/dev/shm/nb-test-rt-link-%d", (int)getpid());
  unlink(path);
  snprintf(arena, sizeof arena, ", path = '%s'", path);
  for (int shared = 1; shared >= 0; shared--) {
    pair_t p;
    int n = 2000; /* 200 of them 64 KiB */
    if (pair_open(&p, n, 0, 10, shared ? arena : "", 4096, "", "") == 0) {
      NBT_CHECK(pump((nb_rt_t *[]){p.a, p.b, NULL}, NULL, pair_done, &p,
                     DEADLINE_S));
      NBT_CHECK(state_has(p.b, "gen", "[\"huge\"]=200,"));
      NBT_CHECK(state_has(p.b, "gen", "[\"payload_errors\"]=0,"));
      nb_link_stats_t la = link_of(p.a, 0), lb = link_of(p.b, 0);
      if (shared) {
        NBT_CHECK(la.refs_out >= 200); /* and a few 47..4095-byte ones */
        NBT_EQ(lb.refs_in, la.refs_out);
        NBT_CHECK(la.bytes_out < 1000000); /* 13 MB did not travel */
      } else {
        NBT_EQ(la.refs_out, 0);
        NBT_CHECK(la.bytes_out > 200u * 65536u);
      }
    }
    pair_close(&p);
  }
  unlink(path);
}

/* A reply to spike.source crosses back: b's echo answers a's pinger, whose
 * replies come from a's proxy "echo"; b names a's pinger "a/ping". */
static void replies_go_back_to_the_source(void) {
  nb_rt_t *a = open_topo(1, NULL,
      "return { name = 'a', tick = 'free', arena = { size = 1048576 },\n"
      "  axon = { capacity = 64 },\n"
      "  listen = 'tcp://127.0.0.1:0',\n"
      "  neurons = {\n"
      "    echo = { remote = 'peer://b/echo' },\n"
      "    ghost = { remote = 'peer://b/nobody' },\n"
      "    ping = { script = 'spec/fixtures/tcp/pinger.lua',\n"
      "      threshold = 0, refractory = 0, config = { to = 'echo', count = 3 } },\n"
      "    ping2 = { script = 'spec/fixtures/tcp/pinger.lua',\n"
      "      threshold = 0, refractory = 0, config = { to = 'ghost', count = 4 } } } }\n");
  if (!a) return;
  NBT_EQ(nb_rt_link_start(a, &loop), 0);
  int port = nb_rt_link_port(a);
  nb_rt_t *b = open_topo(1, NULL,
      "return { name = 'b', tick = 'free', arena = { size = 1048576 },\n"
      "  axon = { capacity = 64 },\n"
      "  peers = { 'tcp://127.0.0.1:%d' },\n"
      "  neurons = {\n"
      "    echo = { script = 'spec/fixtures/runtime/echo.lua',\n"
      "      refractory = 0, config = { prefix = '>' } } } }\n", port);
  if (b) {
    NBT_EQ(nb_rt_link_start(b, &loop), 0);
    nb_rt_t *both[] = {a, b, NULL};
    pump(both, NULL, NULL, NULL, 1.0);
    int ping = nb_rt_id(a, "ping"), echo = nb_rt_id(a, "echo");
    NBT_EQ(nb_rt_rec_count(a, (uint32_t)ping, 0), 3);
    for (size_t i = 0; i < 3 && i < nb_rt_rec_count(a, (uint32_t)ping, 0); i++) {
      nb_spike_t s;
      const char *data;
      size_t len;
      nb_rt_rec_get(a, (uint32_t)ping, 0, i, &s, &data, &len);
      NBT_EQ(s.source, echo);
      char want[16];
      snprintf(want, sizeof want, ">hi %zu", i);
      NBT_CHECK(len == strlen(want) && memcmp(data, want, len) == 0);
    }
    NBT_CHECK(nb_rt_id(b, "a/ping") >= 0);
    NBT_CHECK(nb_rt_id(b, "a/ping2") < 0); /* nothing of it arrived */
    /* The 4 spikes to a name b does not expose: reported, not delivered. */
    /* Queued before the handshake: refused at it (lost); after it: refused
     * at once (unroutable). Both are reported, none is delivered. */
    nb_link_stats_t la = link_of(a, 0);
    NBT_EQ(la.lost + json_count(a, "\"unroutable\":"), 4);
    nb_rt_link_stop(b, 200000000ull);
    nb_rt_close(b);
  }
  nb_rt_link_stop(a, 200000000ull);
  nb_rt_close(a);
}

/* Broadcasts reach a remote neuron along a synapse, its filter applied on
 * the sending side; at the receiver they arrive addressed, weight 1.0,
 * from the caster's proxy. */
static void broadcast_along_a_synapse_to_a_remote(void) {
  nb_rt_t *b = open_topo(1, NULL,
      "return { name = 'b', tick = 'free', arena = { size = 1048576 },\n"
      "  axon = { capacity = 64 },\n"
      "  listen = 'tcp://127.0.0.1:0',\n"
      "  neurons = { sink = { script = 'spec/fixtures/agents/silent.lua',\n"
      "                       refractory = 0 } } }\n");
  if (!b) return;
  NBT_EQ(nb_rt_link_start(b, &loop), 0);
  int port = nb_rt_link_port(b);
  nb_rt_t *a = open_topo(1, "here",
      "return { name = 'a', tick = 'free', arena = { size = 1048576 },\n"
      "  axon = { capacity = 64 },\n"
      "  peers = { 'tcp://127.0.0.1:%d' },\n"
      "  neurons = {\n"
      "    caster = { script = 'spec/fixtures/tcp/caster.lua',\n"
      "      threshold = 0, refractory = 0, config = { count = 5 } },\n"
      "    far = { remote = 'tcp://127.0.0.1:%d/sink' } },\n"
      "  synapses = {\n"
      "    { from = 'caster', to = 'far', weight = 0.5,\n"
      "      filters = { prefix = 'b ' } },\n"
      "    { from = 'caster', to = 'here', weight = 0.25 } } }\n", port, port);
  if (a) {
    NBT_EQ(nb_rt_link_start(a, &loop), 0);
    pump((nb_rt_t *[]){a, b, NULL}, NULL, NULL, NULL, 1.0);
    uint32_t sink = (uint32_t)nb_rt_id(b, "sink");
    NBT_EQ(nb_rt_rec_count(a, (uint32_t)nb_rt_id(a, "here"), 0), 10);
    NBT_EQ(nb_rt_rec_count(b, sink, 0), 5); /* only "b n" passed the filter */
    int from = nb_rt_id(b, "a/caster");
    NBT_CHECK(from >= 0);
    for (size_t i = 0; i < 5 && i < nb_rt_rec_count(b, sink, 0); i++) {
      nb_spike_t sp;
      const char *data;
      size_t len;
      nb_rt_rec_get(b, sink, 0, i, &sp, &data, &len);
      char want[8];
      snprintf(want, sizeof want, "b %zu", i);
      NBT_CHECK(len == strlen(want) && memcmp(data, want, len) == 0);
      NBT_EQ(sp.source, from);
      NBT_EQ(sp.target, sink);
      NBT_NEAR(nb_rt_rec_weight(b, sink, 0, i), 1.0, 1e-9);
    }
    nb_rt_link_stop(a, 200000000ull);
    nb_rt_close(a);
  }
  nb_rt_link_stop(b, 200000000ull);
  nb_rt_close(b);
}

/* A second runtime cannot listen on a taken port: start says so. */
static void listen_on_a_taken_port_fails(void) {
  nb_rt_t *a = open_topo(0, NULL,
      "return { name = 'a', tick = 'free', arena = { size = 1048576 },\n"
      "  axon = { capacity = 64 }, listen = 'tcp://127.0.0.1:0',\n"
      "  neurons = { x = { script = 'spec/fixtures/agents/silent.lua' } } }\n");
  if (!a) return;
  NBT_EQ(nb_rt_link_start(a, &loop), 0);
  NBT_EQ(nb_rt_link_start(a, &loop), NB_EEXIST);
  nb_rt_t *c = open_topo(0, NULL,
      "return { name = 'c', tick = 'free', arena = { size = 1048576 },\n"
      "  axon = { capacity = 64 }, listen = 'tcp://127.0.0.1:%d',\n"
      "  neurons = { x = { script = 'spec/fixtures/agents/silent.lua' } } }\n",
      nb_rt_link_port(a));
  if (c) {
    NBT_EQ(nb_rt_link_start(c, &loop), NB_EIO);
    nb_rt_link_stop(c, 1000000ull); /* after a failed start: only stops */
    nb_rt_close(c);
  }
  nb_rt_link_stop(a, 1000000ull);
  nb_rt_close(a);
}

/* Shutdown flushes: what was fired just before the stop leaves, is
 * acknowledged, and the closed link's counters stay readable. */
static void stop_flushes_what_was_fired(void) {
  pair_t p;
  if (pair_open(&p, 0, 1000, 0, "", 4096, "", "") == 0) {
    nb_rt_t *both[] = {p.a, p.b, NULL};
    /* Until the link is up (b dials), then one tick of b fires all. */
    double end = nbt_now_s() + 10;
    while (nbt_now_s() < end && !link_of(p.b, 0).connects) pump(both, NULL, NULL, NULL, 0.01);
    nb_rt_tick(p.b, 2);
    nb_rt_link_stop(p.b, 5000000000ull);
    nb_link_stats_t lb = link_of(p.b, 0);
    NBT_EQ(lb.sent, 1000);
    NBT_EQ(lb.acked, 1000);
    NBT_EQ(lb.queued, 0);
    NBT_EQ(lb.lost, 0);
    pump((nb_rt_t *[]){p.a, NULL}, NULL, pair_done, &p, 0.5);
    NBT_EQ(spikes_in(p.a, "gen"), 1000);
  }
  pair_close(&p);
}

/* Gives each test's process its own loop. */
static void open_loop(void) { NBT_EQ(uv_loop_init(&loop), 0); }

/* Every runtime closed its links: nothing may be left on the loop. */
static void close_loop(void) {
  uv_run(&loop, UV_RUN_NOWAIT);
  int leftover = uv_loop_close(&loop);
  if (leftover) printf("    the loop still has handles (%d)\n", leftover);
  NBT_EQ(leftover, 0);
}

static const nbt_hooks_t hooks = {open_loop, close_loop};

/* A pump gives up at DEADLINE_S and the test reports what it saw: the
 * harness waits longer so a stuck exchange reports that, not a timeout. */
#define RT_LINK(fn) NBT_TEST_TIMEOUT(fn, (unsigned)DEADLINE_S + 60)

static const nbt_test_t tests[] = {
    RT_LINK(exchange_both_ways),
    RT_LINK(backpressure_reaches_the_producer),
    RT_LINK(shared_arena_passes_refs),
    RT_LINK(replies_go_back_to_the_source),
    RT_LINK(broadcast_along_a_synapse_to_a_remote),
    RT_LINK(listen_on_a_taken_port_fails),
    RT_LINK(stop_flushes_what_was_fired),
};

int main(int argc, char **argv) {
  signal(SIGPIPE, SIG_IGN);
  setenv("NB_LUA_PATH", "lua", 1); /* run from the repository root */
  return NBT_MAIN(argc, argv, tests, &hooks);
}
