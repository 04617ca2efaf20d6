/* test_link.c: TCP links on loopback (runtime/nb_link.h).
 *
 * One process; nodes share one libuv loop (or one loop per thread in
 * test_two_threads), ports are ephemeral on 127.0.0.1. Every spike that
 * crosses a link is regenerated at the receiver from (source, sequence) and
 * compared field by field, payload bytes included. Deadlines are generous
 * and only end a stuck run; nothing asserts on timing. */
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <uv.h>

#include "nb_arena.h"
#include "nb_err.h"
#include "nb_link.h"
#include "nb_link_wire.h"
#include "nb_frame.h"
#include "nbtest.h"

#define NSRC 4
#define DEADLINE_MS 200000

/* ThreadSanitizer slows this loop-bound code tenfold: it checks the same
 * paths on a tenth of the spikes. */
#if defined(__SANITIZE_THREAD__)
#define SCALE 10
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define SCALE 10
#endif
#endif
#ifndef SCALE
#define SCALE 1
#endif

/* ---- captured log lines ---- */

typedef struct logbook_s {
  char **lines;
  size_t n, cap;
  pthread_mutex_t mu;
} logbook_t;

static void log_add(logbook_t *b, const char *msg) {
  pthread_mutex_lock(&b->mu);
  if (b->n == b->cap) {
    b->cap = b->cap ? b->cap * 2 : 64;
    b->lines = realloc(b->lines, b->cap * sizeof *b->lines);
  }
  b->lines[b->n++] = strdup(msg);
  pthread_mutex_unlock(&b->mu);
}

/* Returns 1 when one line holds every non-NULL needle, else 0. */
static int log_has(logbook_t *b, const char *n1, const char *n2,
                   const char *n3) {
  int found = 0;
  pthread_mutex_lock(&b->mu);
  for (size_t i = 0; i < b->n && !found; i++)
    found = strstr(b->lines[i], n1) && (!n2 || strstr(b->lines[i], n2)) &&
            (!n3 || strstr(b->lines[i], n3));
  pthread_mutex_unlock(&b->mu);
  return found;
}

static void log_dump(logbook_t *b, const char *who, size_t max) {
  for (size_t i = 0; i < b->n && i < max; i++)
    printf("    [%s] %s\n", who, b->lines[i]);
}

static void log_free(logbook_t *b) {
  for (size_t i = 0; i < b->n; i++) free(b->lines[i]);
  free(b->lines);
  memset(b, 0, sizeof *b);
}

/* ---- deterministic spikes ---- */

/* Returns the payload length of spike k of a source: mostly inline (0..46),
 * one in 97 large (47..8238 bytes, an arena ref on the wire). */
static size_t gen_len(uint64_t k) {
  if (k % 97 == 13) return 47 + (size_t)((k * 2654435761u) % 8192u);
  return (size_t)(k % 47);
}

/* Fills buf with the payload bytes of spike k of source src. */
static void gen_bytes(nb_id_t src, uint64_t k, uint8_t *buf, size_t len) {
  uint32_t x = (uint32_t)(k * 2246822519u) ^ (uint32_t)src * 3266489917u;
  for (size_t i = 0; i < len; i++) {
    x = x * 1664525u + 1013904223u;
    buf[i] = (uint8_t)(x >> 24);
  }
}

/* Builds spike k of source src (payload in buf when large); returns its
 * payload length. */
static size_t gen_spike(nb_spike_t *s, nb_id_t src, uint64_t k, uint8_t *buf) {
  size_t len = gen_len(k);
  nb_spike_init(s, 0, (nb_kind_t)(k % 3), (uint8_t)(k * 7));
  s->source = src;
  s->sequence = (uint32_t)k;
  s->timestamp_ns = k * 1000003u + src;
  gen_bytes(src, k, buf, len);
  if (len <= NB_PAYLOAD_MAX) {
    nb_spike_set_payload(s, buf, len);
  } else {
    nb_arena_ref_t ref = {0, (uint32_t)len, 0, 0, 0};
    nb_spike_set_ref(s, &ref);
  }
  return len;
}

/* ---- one side of a link ---- */

typedef struct side_s side_t;
struct side_s {
  const char *cortex;
  uv_loop_t *loop;
  nb_link_node_t *node;
  nb_arena_t *arena;
  nb_arena_writer_t *writer; /* large payloads sent from the arena */
  nb_link_t *link;
  logbook_t log;
  nb_id_t ids[NSRC];       /* local ids exposed, also the sources */
  nb_id_t peer_ids[NSRC];  /* the other side's ids, to index sources */
  char peer_names[NSRC][16];
  int thandle[NSRC];
  side_t *peer;
  /* producing */
  uint64_t to_send, gen, fulls, send_errors;
  int send_via_arena;      /* large payloads from the arena (payload NULL) */
  uint64_t arena_allocs;
  uint8_t *scratch, *scratch2;
  /* receiving */
  uint64_t next[NSRC], got, bad, full_every, calls, resumes, strangers;
  uint64_t runs, runs_refused; /* on_spikes calls, and those taking none */
  int refused;   /* answered NB_EFULL, not resumed yet */
  uint64_t start[NSRC]; /* with resync: the first sequence seen */
  int seen[NSRC], resync;
  int allow_gaps, stall;
  char first_bad[256];
  uv_timer_t resume_timer;
  int resume_timer_on;
  int closed;
  nb_link_stats_t final; /* the link's counters when the side closed */
};

static void side_log(void *ud, nb_link_log_level_t level, const char *msg) {
  side_t *s = ud;
  log_add(&s->log, msg);
}

static void side_bad(side_t *s, const char *fmt, ...) {
  if (s->bad++ == 0) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->first_bad, sizeof s->first_bad, fmt, ap);
    va_end(ap);
  }
}

/* Sends until the queue is full or everything went; returns nothing. */
static void side_produce(side_t *s) {
  nb_spike_t sp;
  while (s->gen < s->to_send && !s->closed) {
    int i = (int)(s->gen % NSRC);
    uint64_t k = s->gen / NSRC;
    size_t len = gen_spike(&sp, s->ids[i], k, s->scratch);
    int rc;
    if (len > NB_PAYLOAD_MAX && s->send_via_arena && (k & 1)) {
      nb_arena_ref_t ref;
      rc = nb_arena_put_payload(s->writer, &sp, s->scratch, len);
      if (rc != 0) {
        side_bad(s, "arena put: %s", nb_strerror(rc));
        return;
      }
      s->arena_allocs++;
      rc = nb_link_send(s->link, s->thandle[i], &sp, NULL, 0);
      /* The link copied the bytes (or took its own reference). */
      nb_spike_get_ref(&sp, &ref);
      nb_arena_release(s->arena, &ref, 1);
    } else {
      rc = nb_link_send(s->link, s->thandle[i], &sp,
                        len > NB_PAYLOAD_MAX ? s->scratch : NULL,
                        len > NB_PAYLOAD_MAX ? len : 0);
    }
    if (rc == NB_EFULL) {
      s->fulls++;
      return; /* DRAIN brings us back */
    }
    if (rc != 0) {
      s->send_errors++;
      side_bad(s, "send %llu: %s", (unsigned long long)s->gen, nb_strerror(rc));
      return;
    }
    s->gen++;
  }
}

static void resume_cb(uv_timer_t *t) {
  side_t *s = t->data;
  s->resumes++;
  s->refused = 0;
  if (s->link) nb_link_resume(s->link);
}

/* Checks one received spike against its regenerated original. */
static int side_on_spike(void *ud, nb_link_t *l, const nb_spike_t *sp,
                         const void *payload, size_t len) {
  side_t *s = ud;
  if (l != s->link) {
    s->strangers++; /* a raw socket's valid spike: not part of the stream */
    return 0;
  }
  s->calls++;
  if (s->stall) return NB_EFULL;
  /* After NB_EFULL the link offers nothing until nb_link_resume. */
  if (s->refused) side_bad(s, "offered a spike before the resume");
  if (s->full_every && s->calls % s->full_every == 0) {
    /* Refuse now, accept when resumed a moment later. */
    s->refused = 1;
    uv_timer_start(&s->resume_timer, resume_cb, 1, 0);
    return NB_EFULL;
  }
  int i;
  for (i = 0; i < NSRC; i++)
    if (s->peer_ids[i] == sp->source) break;
  if (i == NSRC) {
    side_bad(s, "unknown source %u", sp->source);
    return 0;
  }
  if (sp->target != s->ids[i]) {
    side_bad(s, "source %u: target %u, want %u", sp->source, sp->target,
             s->ids[i]);
  }
  uint64_t k = sp->sequence;
  if (s->resync && !s->seen[i]) {
    /* A restarted receiver joins the stream wherever the sender resumes. */
    s->start[i] = s->next[i] = k;
  }
  s->seen[i] = 1;
  if (k < s->next[i] || (!s->allow_gaps && k != s->next[i])) {
    side_bad(s, "source %u: sequence %llu, want %llu", sp->source,
             (unsigned long long)k, (unsigned long long)s->next[i]);
  }
  s->next[i] = k + 1;
  nb_spike_t want;
  size_t wlen = gen_spike(&want, sp->source, k, s->scratch2);
  if (want.timestamp_ns != sp->timestamp_ns || want.meta != sp->meta ||
      want.priority != sp->priority)
    side_bad(s, "source %u seq %llu: header differs", sp->source,
             (unsigned long long)k);
  if (wlen <= NB_PAYLOAD_MAX) {
    if (memcmp(want.payload, sp->payload, NB_PAYLOAD_MAX) != 0 || payload)
      side_bad(s, "source %u seq %llu: inline payload differs", sp->source,
               (unsigned long long)k);
  } else {
    nb_arena_ref_t ref;
    if (len != wlen || !payload || memcmp(payload, s->scratch2, wlen) != 0)
      side_bad(s, "source %u seq %llu: payload bytes differ (%zu/%zu)",
               sp->source, (unsigned long long)k, len, wlen);
    if (nb_spike_get_ref(sp, &ref) != 0 || ref.len != wlen) {
      side_bad(s, "source %u seq %llu: bad ref", sp->source,
               (unsigned long long)k);
    } else if (s->arena) {
      /* The link stored the bytes in our arena and rewrote the ref. */
      const void *data;
      if (nb_arena_read(s->arena, &ref, &data) != 0 ||
          memcmp(data, s->scratch2, wlen) != 0)
        side_bad(s, "source %u seq %llu: arena copy differs", sp->source,
                 (unsigned long long)k);
      nb_arena_release(s->arena, &ref, 1); /* on_spike owns it */
      s->arena_allocs++;
    }
  }
  const char *from = nb_link_peer_neuron(l, sp->source);
  if (!from || strncmp(from, s->peer->cortex, strlen(s->peer->cortex)) != 0)
    side_bad(s, "source %u is not named after its cortex", sp->source);
  s->got++;
  return 0;
}

/* The receivers of the next side_init take runs through on_spikes. */
static int use_batch;

/* on_spikes of a side: side_on_spike for each spike of the run (they all
 * have inline payloads), stopping before the first it pushes back;
 * returns how many it took. */
static size_t side_on_spikes(void *ud, nb_link_t *l, const nb_spike_t *sp,
                             size_t n, size_t *rejected) {
  side_t *s = ud;
  if (n == 0) side_bad(s, "on_spikes called with no spike");
  if (s->refused) side_bad(s, "offered a run before the resume");
  if (++s->runs % 97 == 0) {
    /* Now and then the whole run is refused: nothing of it, not even
     * its first spike one by one, may come before the resume. */
    s->refused = 1;
    s->runs_refused++;
    uv_timer_start(&s->resume_timer, resume_cb, 1, 0);
    return 0;
  }
  size_t i = 0;
  for (; i < n; i++) {
    if (nb_spike_is_ref(&sp[i])) side_bad(s, "on_spikes got a ref");
    int rc = side_on_spike(ud, l, &sp[i], NULL, 0);
    if (rc == NB_EFULL) break;
    if (rc < 0) ++*rejected;
  }
  return i;
}

static void side_on_event(void *ud, nb_link_t *l, nb_link_event_t ev) {
  side_t *s = ud;
  if (ev == NB_LINK_UP || ev == NB_LINK_DRAIN) side_produce(s);
}

/* Sets up side s on loop: cortex name, exposed ids base + 2i, arena
 * (capacity 0 = none). */
static void side_init(side_t *s, uv_loop_t *loop, const char *cortex,
                      nb_id_t base, size_t arena_cap, uint32_t hello_ms) {
  memset(s, 0, sizeof *s);
  pthread_mutex_init(&s->log.mu, NULL);
  s->cortex = cortex;
  s->loop = loop;
  s->scratch = malloc(1 << 16);
  s->scratch2 = malloc(1 << 16);
  if (arena_cap) {
    NBT_EQ(nb_arena_new(&s->arena, arena_cap), 0);
    NBT_EQ(nb_arena_writer_new(&s->writer, s->arena), 0);
  }
  nb_link_node_opts_t o;
  memset(&o, 0, sizeof o);
  o.cortex = cortex;
  o.arena = s->arena;
  o.on_spike = side_on_spike;
  if (use_batch) o.on_spikes = side_on_spikes;
  o.on_event = side_on_event;
  o.ud = s;
  o.log = side_log;
  o.log_ud = s;
  o.hello_timeout_ms = hello_ms;
  o.accept = nb_link_opts_default();
  o.accept.backoff_min_ms = 5;
  NBT_EQ(nb_link_node_new(&s->node, loop, &o), 0);
  for (int i = 0; i < NSRC; i++) {
    char nm[32];
    snprintf(nm, sizeof nm, "%s%d", cortex, i);
    s->ids[i] = (nb_id_t)(base + 2 * i);
    NBT_EQ(nb_link_node_expose(s->node, nm, s->ids[i]), 0);
  }
  uv_timer_init(loop, &s->resume_timer);
  s->resume_timer.data = s;
  s->resume_timer_on = 1;
}

/* Pairs a with b: each sends to the other's names "<cortex><i>". */
static void side_pair(side_t *a, side_t *b) {
  a->peer = b;
  b->peer = a;
  for (int i = 0; i < NSRC; i++) {
    a->peer_ids[i] = b->ids[i];
    b->peer_ids[i] = a->ids[i];
    snprintf(a->peer_names[i], 16, "%s%d", b->cortex, i);
    snprintf(b->peer_names[i], 16, "%s%d", a->cortex, i);
  }
}

/* Interns the peer's target names on s->link. */
static void side_targets(side_t *s) {
  for (int i = 0; i < NSRC; i++) {
    s->thandle[i] = nb_link_target(s->link, s->peer_names[i]);
    NBT_CHECK(s->thandle[i] >= 0);
  }
}

static void side_close(side_t *s) {
  if (s->closed) return;
  s->closed = 1;
  if (s->link) nb_link_stats(s->link, &s->final);
  nb_link_node_close(s->node, NULL, NULL);
  s->node = NULL;
  s->link = NULL;
  if (s->resume_timer_on) uv_close((uv_handle_t *)&s->resume_timer, NULL);
  s->resume_timer_on = 0;
}

static void side_free(side_t *s) {
  nb_arena_writer_free(s->writer);
  if (s->arena) nb_arena_free(s->arena);
  free(s->scratch);
  free(s->scratch2);
  log_free(&s->log);
  pthread_mutex_destroy(&s->log.mu);
}

static uint64_t side_expected_total(const side_t *s) { return s->to_send; }

/* ---- a run: polls a condition every few ms until it holds or the
 * deadline passes ---- */

typedef struct run_s run_t;
struct run_s {
  uv_timer_t poll;
  uint64_t start_ms, deadline_ms;
  int (*done)(run_t *r);
  void (*finish)(run_t *r); /* closes everything */
  void *ctx;
  int timed_out, finished;
};

static void run_poll_cb(uv_timer_t *t) {
  run_t *r = t->data;
  if (r->finished) return;
  int d = r->done(r);
  if (!d && uv_now(t->loop) - r->start_ms < r->deadline_ms) return;
  r->timed_out = !d;
  r->finished = 1;
  uv_close((uv_handle_t *)&r->poll, NULL);
  r->finish(r);
}

static void run_start(run_t *r, uv_loop_t *loop, int (*done)(run_t *),
                      void (*finish)(run_t *), void *ctx) {
  r->done = done;
  r->finish = finish;
  r->ctx = ctx;
  r->deadline_ms = DEADLINE_MS;
  uv_update_time(loop);
  r->start_ms = uv_now(loop);
  uv_timer_init(loop, &r->poll);
  r->poll.data = r;
  uv_timer_start(&r->poll, run_poll_cb, 2, 2);
}

static char url_buf[64];
static const char *url_of(int port) {
  snprintf(url_buf, sizeof url_buf, "tcp://127.0.0.1:%d", port);
  return url_buf;
}

/* ---- pure wire tests ---- */

static void test_url(void) {
  char host[64];
  int port;
  const char *nm;
  NBT_EQ(nb_link_parse_url("tcp://127.0.0.1:7401", host, sizeof host, &port,
                           NULL), 0);
  NBT_CHECK(strcmp(host, "127.0.0.1") == 0);
  NBT_EQ(port, 7401);
  NBT_EQ(nb_link_parse_url("tcp://127.0.0.1:7401/parser", host, sizeof host,
                           &port, &nm), 0);
  NBT_CHECK(nm && strcmp(nm, "parser") == 0);
  NBT_EQ(nb_link_parse_url("tcp://[::1]:9/x", host, sizeof host, &port, &nm),
         0);
  NBT_CHECK(strcmp(host, "::1") == 0);
  NBT_EQ(nb_link_parse_url("tcp://127.0.0.1:7401/parser", host, sizeof host,
                           &port, NULL), NB_EINVAL);
  NBT_EQ(nb_link_parse_url("udp://127.0.0.1:1", host, sizeof host, &port,
                           NULL), NB_EINVAL);
  NBT_EQ(nb_link_parse_url("tcp://127.0.0.1", host, sizeof host, &port, NULL),
         NB_EINVAL);
  NBT_EQ(nb_link_parse_url("tcp://127.0.0.1:70000", host, sizeof host, &port,
                           NULL), NB_EINVAL);
  NBT_EQ(nb_link_parse_url("tcp://127.0.0.1:1/", host, sizeof host, &port,
                           &nm), NB_EINVAL);
  NBT_EQ(nb_link_parse_url("tcp://host.example:1", host, sizeof host, &port,
                           NULL), NB_EINVAL);
}

/* Encodes a HELLO for cortex with nnames names n0.. at ids 2i+1. */
static int make_hello(uint8_t *out, size_t cap, const char *cortex,
                      uint16_t version, uint64_t inc, uint32_t nnames) {
  static char names[64][16];
  nb_link_name_t nl[64];
  nb_link_hello_t h;
  memset(&h, 0, sizeof h);
  h.version = version;
  h.incarnation = inc;
  h.max_payload = NB_FRAME_PAYLOAD_DEFAULT_MAX;
  snprintf(h.cortex, sizeof h.cortex, "%s", cortex);
  for (uint32_t i = 0; i < nnames && i < 64; i++) {
    snprintf(names[i], 16, "n%u", i);
    nl[i].name = names[i];
    nl[i].id = (nb_id_t)(2 * i + 1);
  }
  h.count = nnames;
  h.names = nl;
  return nb_link_hello_encode(&h, out, cap);
}

static void test_hello_codec(void) {
  uint8_t buf[4096];
  int n = make_hello(buf, sizeof buf, "alpha", 0, 42, 5);
  NBT_CHECK(n > 0);
  nb_link_hello_t h;
  char why[200];
  /* Every prefix asks for more; the whole parses back. */
  for (int cut = 0; cut < n; cut++)
    NBT_EQ(nb_link_hello_parse(buf, (size_t)cut, &h, why, sizeof why), 0);
  NBT_EQ(nb_link_hello_parse(buf, (size_t)n, &h, why, sizeof why), n);
  NBT_CHECK(strcmp(h.cortex, "alpha") == 0);
  NBT_EQ(h.incarnation, 42);
  NBT_EQ(h.count, 5);
  NBT_CHECK(strcmp(h.names[3].name, "n3") == 0);
  NBT_EQ(h.names[3].id, 7);
  nb_link_hello_free(&h);
  /* Version mismatch is refused as soon as the version is read. */
  n = make_hello(buf, sizeof buf, "alpha", 2, 42, 1);
  NBT_EQ(nb_link_hello_parse(buf, 6, &h, why, sizeof why), NB_EFRAME);
  NBT_EQ(h.version, 2);
  NBT_CHECK(strstr(why, "version") != NULL);
  /* Garbage is refused at its first byte. */
  NBT_EQ(nb_link_hello_parse((const uint8_t *)"G", 1, &h, why, sizeof why),
         NB_EFRAME);
  /* A duplicate name, a reserved id, trailing bytes, incarnation 0. */
  nb_link_name_t dup[2] = {{"x", 1}, {"x", 2}};
  nb_link_hello_t e;
  memset(&e, 0, sizeof e);
  e.incarnation = 1;
  snprintf(e.cortex, sizeof e.cortex, "c");
  e.count = 2;
  e.names = dup;
  n = nb_link_hello_encode(&e, buf, sizeof buf);
  NBT_CHECK(n > 0);
  NBT_EQ(nb_link_hello_parse(buf, (size_t)n, &h, why, sizeof why), NB_EFRAME);
  NBT_CHECK(strstr(why, "twice") != NULL);
  dup[1].id = NB_LINK_CTRL_ID;
  NBT_EQ(nb_link_hello_encode(&e, buf, sizeof buf), NB_EINVAL);
  e.count = 0;
  e.incarnation = 0;
  n = nb_link_hello_encode(&e, buf, sizeof buf);
  NBT_EQ(nb_link_hello_parse(buf, (size_t)n, &h, why, sizeof why), NB_EFRAME);
}

/* The arena identity a HELLO may carry (flag NB_LINK_F_ARENA), other
 * flags refused, and bare ref frames only where they were agreed. */
static void test_hello_arena(void) {
  uint8_t buf[1024];
  nb_link_hello_t e, h;
  char why[200];
  memset(&e, 0, sizeof e);
  e.incarnation = 9;
  snprintf(e.cortex, sizeof e.cortex, "c");
  e.flags = NB_LINK_F_ARENA;
  e.arena.dev = 45;
  e.arena.ino = 123456;
  e.arena.capacity = 1u << 26;
  snprintf(e.arena.host, sizeof e.arena.host, "boot-id-1");
  int n = nb_link_hello_encode(&e, buf, sizeof buf);
  NBT_EQ((size_t)n, nb_link_hello_size(&e));
  for (int cut = 0; cut < n; cut++)
    NBT_EQ(nb_link_hello_parse(buf, (size_t)cut, &h, why, sizeof why), 0);
  NBT_EQ(nb_link_hello_parse(buf, (size_t)n, &h, why, sizeof why), n);
  NBT_EQ(h.flags, NB_LINK_F_ARENA);
  NBT_EQ(h.arena.ino, 123456);
  NBT_CHECK(nb_link_arena_same(&h.arena, &e.arena));
  h.arena.ino++;
  NBT_CHECK(!nb_link_arena_same(&h.arena, &e.arena));
  nb_link_hello_free(&h);
  /* Another host (boot id) is another arena, whatever the inode. */
  nb_link_arena_id_t other = e.arena;
  snprintf(other.host, sizeof other.host, "boot-id-2");
  NBT_CHECK(!nb_link_arena_same(&other, &e.arena));
  /* A control byte in the host id, and an unknown flag: refused. */
  buf[n - 1] = 0x01;
  NBT_EQ(nb_link_hello_parse(buf, (size_t)n, &h, why, sizeof why), NB_EFRAME);
  NBT_CHECK(strstr(why, "arena identity") != NULL);
  n = nb_link_hello_encode(&e, buf, sizeof buf);
  buf[6] = 0x03;
  NBT_EQ(nb_link_hello_parse(buf, (size_t)n, &h, why, sizeof why), NB_EFRAME);
  NBT_CHECK(strstr(why, "unknown flags") != NULL);
  /* A 68-byte ref frame: refused by default, taken once agreed. */
  nb_spike_t s;
  nb_arena_ref_t ref = {64, 5000, 3, 0, 0};
  nb_spike_init(&s, 1, NB_EXCITATORY, 0);
  nb_spike_set_ref(&s, &ref);
  uint8_t fr[NB_FRAME_SPIKE];
  NBT_EQ(nb_frame_encode_bare_ref(&s, fr), NB_FRAME_SPIKE);
  nb_frame_decoder_t d;
  const uint8_t *pl;
  size_t used, plen;
  nb_spike_t out;
  nb_frame_decoder_init(&d, 4096);
  NBT_EQ(nb_frame_decode(&d, fr, sizeof fr, &used, &out, &pl, &plen),
         NB_EFRAME);
  nb_frame_decoder_init(&d, 4096);
  d.bare_refs = 1;
  NBT_EQ(nb_frame_decode(&d, fr, sizeof fr, &used, &out, &pl, &plen), 1);
  NBT_EQ(plen, 0);
  NBT_CHECK(pl == NULL && nb_spike_is_ref(&out));
  nb_spike_init(&s, 1, NB_EXCITATORY, 0);
  NBT_EQ(nb_frame_encode_bare_ref(&s, fr), NB_EINVAL); /* no ref */
  nb_frame_decoder_free(&d);
}

/* Builds a stream: HELLO, then mixed frames and acks; returns its length. */
static size_t make_stream(uint8_t *buf, size_t cap, int nframes) {
  size_t off = (size_t)make_hello(buf, cap, "beta", 0, 7, 3);
  uint8_t payload[9000];
  nb_spike_t s;
  for (int k = 0; k < nframes; k++) {
    if (k % 5 == 4) {
      off += (size_t)nb_link_ack_encode((uint64_t)k * 1000, buf + off);
      continue;
    }
    size_t len = gen_spike(&s, 3, (uint64_t)k * 13, payload);
    s.target = 1;
    if (len > NB_PAYLOAD_MAX) {
      nb_frame_encode_head(&s, len, buf + off);
      memcpy(buf + off + NB_FRAME_SPIKE, payload, len);
      off += NB_FRAME_SPIKE + len;
    } else {
      off += (size_t)nb_frame_encode(&s, buf + off);
    }
  }
  return off;
}

/* Feeds buf to a fresh rx in chunks of chunk bytes (0 = pseudo-random
 * 1..257); returns a checksum of the events, or 0 on error. */
static uint64_t rx_digest(const uint8_t *buf, size_t len, size_t chunk,
                          int *events) {
  nb_link_rx_t rx;
  nb_link_rx_init(&rx, NB_FRAME_PAYLOAD_DEFAULT_MAX);
  uint64_t h = 1469598103934665603ull;
  size_t pos = 0;
  uint32_t r = 12345;
  *events = 0;
  while (pos < len) {
    size_t n = chunk;
    if (!n) {
      r = r * 1664525u + 1013904223u;
      n = 1 + (r >> 8) % 257;
    }
    if (n > len - pos) n = len - pos;
    size_t off = 0;
    while (off < n) {
      nb_link_rx_event_t ev;
      size_t used;
      int rc = nb_link_rx_feed(&rx, buf + pos + off, n - off, &used, &ev);
      off += used;
      if (rc < 0) {
        nb_link_rx_free(&rx);
        return 0;
      }
      if (rc == 0) break;
      (*events)++;
      h = (h ^ ev.kind) * 1099511628211ull;
      if (ev.kind == NB_LINK_RX_HELLO) {
        h = (h ^ ev.hello.incarnation ^ ev.hello.count) * 1099511628211ull;
        nb_link_hello_free(&ev.hello);
      } else if (ev.kind == NB_LINK_RX_ACK) {
        h = (h ^ ev.ack) * 1099511628211ull;
      } else {
        for (size_t i = 0; i < NB_SPIKE_SIZE; i++)
          h = (h ^ ((const uint8_t *)&ev.spike)[i]) * 1099511628211ull;
        for (size_t i = 0; i < ev.payload_len; i++)
          h = (h ^ ev.payload[i]) * 1099511628211ull;
      }
    }
    pos += n;
  }
  nb_link_rx_free(&rx);
  return h;
}

static void test_rx_cut_anywhere(void) {
  size_t cap = 4 << 20;
  uint8_t *buf = malloc(cap);
  size_t len = make_stream(buf, cap, 600);
  int ev_whole, ev;
  uint64_t whole = rx_digest(buf, len, len, &ev_whole);
  NBT_CHECK(whole != 0);
  NBT_EQ(ev_whole, 1 + 600);
  static const size_t chunks[] = {1, 2, 3, 4, 5, 7, 12, 63, 64, 67, 68, 69,
                                  100, 4096, 0};
  for (size_t i = 0; i < sizeof chunks / sizeof *chunks; i++) {
    NBT_EQ(rx_digest(buf, len, chunks[i], &ev), whole);
    NBT_EQ(ev, ev_whole);
  }
  /* A frame of a bad length after the HELLO is an error with a reason. */
  nb_link_rx_t rx;
  nb_link_rx_init(&rx, 1000);
  size_t hl = (size_t)make_hello(buf, cap, "beta", 0, 7, 0);
  uint8_t bad[8] = {10, 0, 0, 0, 1, 2, 3, 4};
  memcpy(buf + hl, bad, sizeof bad);
  nb_link_rx_event_t e;
  size_t used;
  NBT_EQ(nb_link_rx_feed(&rx, buf, hl + 8, &used, &e), 1);
  nb_link_hello_free(&e.hello);
  NBT_EQ(nb_link_rx_feed(&rx, buf + used, hl + 8 - used, &used, &e),
         NB_EFRAME);
  NBT_CHECK(strstr(rx.why, "below") != NULL);
  nb_link_rx_free(&rx);
  free(buf);
}

/* ---- the queue holds what its option says ---- */

static int drop_spike(void *ud, nb_link_t *l, const nb_spike_t *s,
                      const void *payload, size_t len) {
  return 0;
}

/* Makes node "alpha" (dropping what it receives) on a new loop; returns
 * it. */
static nb_link_node_t *lone_node(uv_loop_t *loop) {
  uv_loop_init(loop);
  nb_link_node_opts_t o;
  memset(&o, 0, sizeof o);
  o.cortex = "alpha";
  o.on_spike = drop_spike;
  nb_link_node_t *n = NULL;
  NBT_EQ(nb_link_node_new(&n, loop, &o), 0);
  return n;
}

static void test_queue_bound(void) {
  uv_loop_t loop;
  nb_link_node_t *n = lone_node(&loop);
  /* Sizes that are not powers of two (the ring rounds up, the bound must
   * not), one above the ring's first size. */
  const uint32_t sizes[] = {5, 100};
  for (int k = 0; k < 2; k++) {
    nb_link_opts_t lo = nb_link_opts_default();
    lo.queue_spikes = sizes[k];
    nb_link_t *l = NULL;
    char name[16];
    snprintf(name, sizeof name, "peer%d", k);
    NBT_EQ(nb_link_expect(n, name, &lo, &l), 0);
    int t = nb_link_target(l, "x");
    NBT_CHECK(t >= 0);
    NBT_EQ(nb_link_room(l), sizes[k]);
    nb_spike_t s;
    nb_spike_init(&s, 0, NB_EXCITATORY, 0);
    uint32_t taken = 0;
    while (taken < 1000 && nb_link_send(l, t, &s, NULL, 0) == 0) taken++;
    NBT_EQ(taken, sizes[k]);
    NBT_EQ(nb_link_room(l), 0);
    NBT_EQ(nb_link_send(l, t, &s, NULL, 0), NB_EFULL);
    nb_link_stats_t st;
    nb_link_stats(l, &st);
    NBT_EQ(st.queued, sizes[k]);
    NBT_EQ(st.full, 2);
  }
  nb_link_node_close(n, NULL, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  NBT_EQ(uv_loop_close(&loop), 0);
}

/* nb_link_send_run takes the prefix nb_link_send would take with 0 and
 * stops where it would answer anything else: a full queue, a malformed
 * spike, a ref (which needs its bytes), a bad target. */
static void test_send_run(void) {
  uv_loop_t loop;
  nb_link_node_t *n = lone_node(&loop);
  nb_link_opts_t lo = nb_link_opts_default();
  lo.queue_spikes = 100;
  nb_link_t *l = NULL;
  NBT_EQ(nb_link_expect(n, "beta", &lo, &l), 0);
  int t = nb_link_target(l, "x");
  NBT_CHECK(t >= 0);
  static nb_spike_t run[150];
  for (int i = 0; i < 150; i++) {
    nb_spike_init(&run[i], 0, NB_EXCITATORY, 0);
    run[i].sequence = (uint32_t)i;
  }
  NBT_EQ(nb_link_send_run(l, t, run, 0), 0);
  NBT_EQ(nb_link_send_run(l, t + 1, run, 10), 0); /* no such handle */
  NBT_EQ(nb_link_send_run(NULL, t, run, 10), 0);
  /* A malformed spike (inline length 50) and a ref end a run. */
  run[4].meta = (uint8_t)(50u << 2);
  NBT_EQ(nb_link_send_run(l, t, run, 10), 4);
  NBT_EQ(nb_link_send(l, t, &run[4], NULL, 0), NB_EINVAL);
  nb_spike_init(&run[4], 0, NB_EXCITATORY, 0);
  nb_arena_ref_t ref = {0, 10, 0, 0, 0};
  nb_spike_set_ref(&run[7], &ref);
  NBT_EQ(nb_link_send_run(l, t, run + 4, 10), 3);
  nb_spike_init(&run[7], 0, NB_EXCITATORY, 0);
  /* The queue's bound: 7 queued, 93 more, then full. A ring that must
   * grow ends a run too: nb_link_send grows it. */
  size_t queued = 7;
  int rc;
  for (;;) {
    queued += nb_link_send_run(l, t, run, 150);
    if ((rc = nb_link_send(l, t, &run[0], NULL, 0)) != 0) break;
    queued++;
  }
  NBT_EQ(rc, NB_EFULL);
  NBT_EQ(queued, 100);
  NBT_EQ(nb_link_room(l), 0);
  NBT_EQ(nb_link_send_run(l, t, run, 150), 0);
  nb_link_stats_t st;
  nb_link_stats(l, &st);
  NBT_EQ(st.sent, 100);
  NBT_EQ(st.queued, 100);
  NBT_EQ(st.full, 1); /* nb_link_send's: a run that stops counts nothing */
  nb_link_node_close(n, NULL, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  NBT_EQ(uv_loop_close(&loop), 0);
}

/* ---- two nodes on one loop exchange N spikes each way ---- */

typedef struct pairrun_s {
  side_t a, b;
  int a_port;
  int check_acks;
} pairrun_t;

/* Returns 1 when both sides received all and saw all acked. */
static int pair_done(run_t *r) {
  pairrun_t *p = r->ctx;
  side_t *s[2] = {&p->a, &p->b};
  for (int i = 0; i < 2; i++) {
    if (s[i]->bad) return 1; /* fail fast */
    if (!s[i]->link) return 0;
    nb_link_stats_t st;
    nb_link_stats(s[i]->link, &st);
    if (s[i]->peer->got < side_expected_total(s[i])) return 0;
    if (st.acked < s[i]->to_send) return 0;
  }
  return 1;
}

static void pair_finish(run_t *r) {
  pairrun_t *p = r->ctx;
  side_close(&p->a);
  side_close(&p->b);
}

/* Checks the per-link accounting of a finished exchange. */
static void check_exact(side_t *s, uint64_t n) {
  nb_link_stats_t st = s->final;
  NBT_EQ(s->bad, 0);
  if (s->bad) printf("    %s: %s\n", s->cortex, s->first_bad);
  NBT_EQ(st.sent, n);
  NBT_EQ(st.acked, n);
  NBT_EQ(st.lost, 0);
  NBT_EQ(st.queued, 0);
  NBT_EQ(s->peer->got, n);
  NBT_EQ(st.received, s->got);
}

static void test_exchange_million(void) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  pairrun_t p;
  memset(&p, 0, sizeof p);
  const uint64_t n = 1000000 / SCALE;
  side_init(&p.a, &loop, "alpha", 0, 64u << 20, 0);
  side_init(&p.b, &loop, "beta", 101, 0, 0);
  side_pair(&p.a, &p.b);
  p.a.to_send = p.b.to_send = n;
  p.a.send_via_arena = 1;
  p.a.full_every = 99991 / SCALE; /* the receivers push back now and then */
  p.b.full_every = 149993 / SCALE;
  NBT_EQ(nb_link_node_listen(p.a.node, "tcp://127.0.0.1:0"), 0);
  int port = nb_link_node_port(p.a.node);
  NBT_CHECK(port > 0);
  /* alpha queues for beta before beta ever called. */
  NBT_EQ(nb_link_expect(p.a.node, "beta", NULL, &p.a.link), 0);
  side_targets(&p.a);
  nb_link_opts_t o = nb_link_opts_default();
  o.backoff_min_ms = 5;
  NBT_EQ(nb_link_connect(p.b.node, url_of(port), &o, &p.b.link), 0);
  side_targets(&p.b);
  side_produce(&p.a);
  NBT_CHECK(p.a.gen > 0 && p.a.gen < n); /* queued up to the bound */
  run_t r;
  memset(&r, 0, sizeof r);
  run_start(&r, &loop, pair_done, pair_finish, &p);
  double t0 = nbt_now_s();
  uv_run(&loop, UV_RUN_DEFAULT);
  double dt = nbt_now_s() - t0;
  NBT_CHECK(!r.timed_out);
  NBT_EQ(p.a.bad, 0);
  NBT_EQ(p.b.bad, 0);
  if (p.a.bad) printf("    alpha: %s\n", p.a.first_bad);
  if (p.b.bad) printf("    beta: %s\n", p.b.first_bad);
  NBT_EQ(p.a.got, n);
  NBT_EQ(p.b.got, n);
  NBT_EQ(p.a.gen, n);
  NBT_EQ(p.b.gen, n);
  check_exact(&p.a, n);
  check_exact(&p.b, n);
  NBT_EQ(p.a.final.errors + p.b.final.errors, 0);
  NBT_EQ(p.b.final.connects, 1);
  NBT_CHECK(p.a.final.pauses > 0 && p.b.final.pauses > 0);
  NBT_CHECK(p.a.fulls > 0 && p.b.fulls > 0); /* backpressure was met */
  NBT_CHECK(p.a.resumes > 0 && p.b.resumes > 0);
  /* With on_spikes the inline spikes came in runs: fewer calls than
   * spikes (the 1 in 97 with a ref still come one by one). */
  if (use_batch)
    NBT_CHECK(p.a.runs > 0 && p.b.runs > 0 && p.a.runs < p.a.got / 4 &&
              p.b.runs < p.b.got / 4 && p.a.runs_refused > 0 &&
              p.b.runs_refused > 0);
  printf("# 2 x %llu spikes (1 in 97 with a 47..8238-byte payload) in %.2f s"
         ", %.0f spikes/s per direction\n", (unsigned long long)n, dt,
         (double)n / dt);
  NBT_EQ(uv_loop_close(&loop), 0);
  if (r.timed_out || p.a.bad || p.b.bad) {
    log_dump(&p.a.log, "alpha", 20);
    log_dump(&p.b.log, "beta", 20);
  }
  side_free(&p.a);
  side_free(&p.b);
}

/* The same with receivers taking runs of inline spikes through on_spikes
 * (refs, acks and pushback in the middle of runs). */
static void test_exchange_million_batch(void) {
  use_batch = 1;
  test_exchange_million();
  use_batch = 0;
}

/* ---- raw sockets that misbehave against a node ---- */

typedef struct raw_s {
  uv_tcp_t tcp;
  uv_connect_t creq;
  uv_write_t wreq;
  uv_shutdown_t sreq;
  uint8_t *data;
  size_t len;
  int shut;           /* half-close after writing (a truncated stream) */
  int port;           /* our local port: how the node names us */
  int closed;
  const char *expect; /* a piece of the node's log line */
  char rbuf[4096];
} raw_t;

static void raw_closed(uv_handle_t *h) { ((raw_t *)h->data)->closed = 1; }

static void raw_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b) {
  raw_t *r = h->data;
  *b = uv_buf_init(r->rbuf, sizeof r->rbuf);
}

static void raw_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b) {
  if (n < 0 && !uv_is_closing((uv_handle_t *)s))
    uv_close((uv_handle_t *)s, raw_closed);
}

static void raw_written(uv_write_t *w, int status) {}
static void raw_shut(uv_shutdown_t *req, int status) {}

static void raw_connected(uv_connect_t *req, int status) {
  raw_t *r = req->data;
  if (status < 0) {
    uv_close((uv_handle_t *)&r->tcp, raw_closed);
    return;
  }
  struct sockaddr_in sa;
  int len = sizeof sa;
  uv_tcp_getsockname(&r->tcp, (struct sockaddr *)&sa, &len);
  r->port = ntohs(sa.sin_port);
  if (r->len) {
    uv_buf_t b = uv_buf_init((char *)r->data, (unsigned)r->len);
    uv_write(&r->wreq, (uv_stream_t *)&r->tcp, &b, 1, raw_written);
  }
  if (r->shut) uv_shutdown(&r->sreq, (uv_stream_t *)&r->tcp, raw_shut);
  uv_read_start((uv_stream_t *)&r->tcp, raw_alloc, raw_read);
}

static void raw_start(raw_t *r, uv_loop_t *loop, int port) {
  struct sockaddr_in sa;
  uv_ip4_addr("127.0.0.1", port, &sa);
  uv_tcp_init(loop, &r->tcp);
  r->tcp.data = r;
  r->creq.data = r;
  uv_tcp_connect(&r->creq, &r->tcp, (const struct sockaddr *)&sa,
                 raw_connected);
}

/* Appends bytes to a raw's script. */
static void raw_add(raw_t *r, const void *p, size_t n) {
  r->data = realloc(r->data, r->len + n);
  memcpy(r->data + r->len, p, n);
  r->len += n;
}

/* Appends a valid HELLO of cortex name. */
static void raw_hello(raw_t *r, const char *name, uint64_t inc) {
  uint8_t b[512];
  int n = make_hello(b, sizeof b, name, 0, inc, 1);
  raw_add(r, b, (size_t)n);
}

/* Appends one frame of a valid inline spike to target. */
static void raw_spike(raw_t *r, nb_id_t target, size_t cut) {
  uint8_t b[NB_FRAME_SPIKE];
  nb_spike_t s;
  nb_spike_init(&s, target, NB_EXCITATORY, 1);
  s.source = 1;
  nb_spike_set_payload(&s, "hi", 2);
  nb_frame_encode(&s, b);
  raw_add(r, b, cut ? cut : sizeof b);
}

enum { NRAW = 12 };

typedef struct badrun_s {
  pairrun_t p;
  raw_t raw[NRAW];
  int launched;
} badrun_t;

static int bad_done(run_t *r) {
  badrun_t *b = r->ctx;
  if (!b->launched && b->p.a.got > 1000) {
    /* The good link is busy: now the strangers call. */
    b->launched = 1;
    for (int i = 0; i < NRAW; i++) raw_start(&b->raw[i], b->p.a.loop, b->p.a_port);
  }
  if (!b->launched) return 0;
  for (int i = 0; i < NRAW; i++) {
    char who[32];
    if (!b->raw[i].closed || !b->raw[i].port) return 0;
    snprintf(who, sizeof who, "127.0.0.1:%d", b->raw[i].port);
    if (!log_has(&b->p.a.log, who, b->raw[i].expect, NULL)) return 0;
  }
  return pair_done(r);
}

static void bad_finish(run_t *r) {
  badrun_t *b = r->ctx;
  pair_finish(r);
  for (int i = 0; i < NRAW; i++)
    if (!b->raw[i].closed && !uv_is_closing((uv_handle_t *)&b->raw[i].tcp))
      uv_close((uv_handle_t *)&b->raw[i].tcp, raw_closed);
}

static void test_bad_peers(void) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  badrun_t *b = calloc(1, sizeof *b);
  pairrun_t *p = &b->p;
  const uint64_t n = 100000 / SCALE;
  side_init(&p->a, &loop, "alpha", 0, 16u << 20, 300);
  side_init(&p->b, &loop, "beta", 101, 0, 0);
  side_pair(&p->a, &p->b);
  p->a.to_send = p->b.to_send = n;
  NBT_EQ(nb_link_node_listen(p->a.node, "tcp://127.0.0.1:0"), 0);
  p->a_port = nb_link_node_port(p->a.node);
  NBT_EQ(nb_link_expect(p->a.node, "beta", NULL, &p->a.link), 0);
  side_targets(&p->a);
  nb_link_opts_t o = nb_link_opts_default();
  NBT_EQ(nb_link_connect(p->b.node, url_of(p->a_port), &o, &p->b.link), 0);
  side_targets(&p->b);

  raw_t *w = b->raw;
  uint8_t buf[512];
  int k = 0;
  /* 0: not our protocol at all. */
  raw_add(&w[k], "GET / HTTP/1.1\r\nHost: x\r\n\r\n", 27);
  w[k++].expect = "not a NeuronBus link";
  /* 1: a newer protocol version. */
  raw_add(&w[k], buf, (size_t)make_hello(buf, sizeof buf, "future", 2, 11, 1));
  w[k++].expect = "peer speaks version 2, this node speaks version 1";
  /* 2: a handshake listing one name twice. */
  {
    nb_link_name_t dup[2] = {{"x", 1}, {"x", 2}};
    nb_link_hello_t h;
    memset(&h, 0, sizeof h);
    h.incarnation = 12;
    snprintf(h.cortex, sizeof h.cortex, "twice");
    h.count = 2;
    h.names = dup;
    raw_add(&w[k], buf, (size_t)nb_link_hello_encode(&h, buf, sizeof buf));
    w[k++].expect = "name 'x' listed twice";
  }
  /* 3: a frame cut short, then the stream ends. */
  raw_hello(&w[k], "trunc", 13);
  raw_spike(&w[k], p->a.ids[0], 0);
  raw_spike(&w[k], p->a.ids[0], 30);
  w[k].shut = 1;
  w[k++].expect = "ended inside frame 2 (truncated)";
  /* 4: a length announcing a 2 MiB payload (max 1 MiB). */
  raw_hello(&w[k], "huge", 14);
  {
    uint8_t f[NB_FRAME_SPIKE];
    nb_spike_t s;
    nb_arena_ref_t ref = {0, 2u << 20, 0, 0, 0};
    nb_spike_init(&s, p->a.ids[0], NB_EXCITATORY, 1);
    nb_spike_set_ref(&s, &ref);
    nb_frame_encode_head(&s, ref.len, f);
    raw_add(&w[k], f, sizeof f);
  }
  w[k++].expect = "oversized frame 1: a 2097152-byte payload exceeds the "
                  "maximum of 1048576";
  /* 5: a length below a spike. */
  raw_hello(&w[k], "short", 15);
  raw_add(&w[k], "\x0a\x00\x00\x00" "0123456789", 14);
  w[k++].expect = "length 10 is below 64";
  /* 6: a spike of kind 3. */
  raw_hello(&w[k], "kind3", 16);
  {
    uint8_t f[NB_FRAME_SPIKE];
    nb_spike_t s;
    nb_spike_init(&s, p->a.ids[0], NB_EXCITATORY, 1);
    nb_frame_encode(&s, f);
    f[NB_FRAME_HEADER + 16] = 3;
    raw_add(&w[k], f, sizeof f);
  }
  w[k++].expect = "malformed spike in frame 1 (meta byte 0x03)";
  /* 7: a spike to an id alpha does not expose. */
  raw_hello(&w[k], "lost", 17);
  raw_spike(&w[k], 999, 0);
  w[k++].expect = "targets neuron id 999, which this node does not expose";
  /* 8: an inline spike whose length claims a payload. */
  raw_hello(&w[k], "liar", 18);
  {
    uint8_t f[100] = {0};
    nb_spike_t s;
    nb_spike_init(&s, p->a.ids[0], NB_EXCITATORY, 1);
    nb_frame_encode(&s, f);
    f[0] = 100;
    raw_add(&w[k], f, sizeof f);
  }
  w[k++].expect = "length 100 disagrees";
  /* 9: says nothing at all. */
  w[k++].expect = "no handshake within 300 ms";
  /* 10: acks frames never sent to it. */
  raw_hello(&w[k], "acker", 20);
  {
    uint8_t f[NB_FRAME_SPIKE];
    nb_link_ack_encode(5, f);
    raw_add(&w[k], f, sizeof f);
  }
  w[k++].expect = "ack of 5 frames";
  /* 11: a control frame of an unknown type. */
  raw_hello(&w[k], "ctrl", 21);
  {
    uint8_t f[NB_FRAME_SPIKE];
    nb_link_ack_encode(0, f);
    f[NB_FRAME_HEADER + 18] = 9;
    raw_add(&w[k], f, sizeof f);
  }
  w[k++].expect = "malformed control frame 1";
  NBT_EQ(k, NRAW);

  run_t r;
  memset(&r, 0, sizeof r);
  run_start(&r, &loop, bad_done, bad_finish, b);
  uv_run(&loop, UV_RUN_DEFAULT);
  NBT_CHECK(!r.timed_out);
  NBT_CHECK(b->launched);
  for (int i = 0; i < NRAW; i++) {
    char who[32];
    snprintf(who, sizeof who, "127.0.0.1:%d", w[i].port);
    if (!log_has(&p->a.log, who, w[i].expect, NULL)) {
      printf("    raw %d (%s): no log line with '%s'\n", i, who, w[i].expect);
      nbt__fail(__FILE__, __LINE__, "missing log line");
    }
    free(w[i].data);
  }
  NBT_EQ(p->a.strangers, 1); /* the one whole frame before the cut */
  /* The good link never noticed. */
  check_exact(&p->a, n);
  check_exact(&p->b, n);
  NBT_EQ(p->a.final.errors, 0);
  NBT_EQ(p->b.final.errors, 0);
  NBT_EQ(p->b.final.connects, 1);
  NBT_EQ(uv_loop_close(&loop), 0);
  if (r.timed_out || nbt__cur_failed) {
    log_dump(&p->a.log, "alpha", 40);
    log_dump(&p->b.log, "beta", 20);
  }
  side_free(&p->a);
  side_free(&p->b);
  free(b);
}

/* The same hostile peers against a receiver taking runs (on_spikes): the
 * run path leaves every bad frame to the checks and messages above. */
static void test_bad_peers_batch(void) {
  use_batch = 1;
  test_bad_peers();
  use_batch = 0;
}

/* ---- a receiver that stops: backpressure reaches the producer ---- */

typedef struct slowrun_s {
  pairrun_t p;
  int phase;
  uint64_t phase_ms;
  nb_link_stats_t held; /* the sender while the receiver was stalled */
  uint64_t gen_held, got_held;
  int paused_held;
  size_t room_held;
} slowrun_t;

static int slow_done(run_t *r) {
  slowrun_t *w = r->ctx;
  side_t *a = &w->p.a, *b = &w->p.b;
  uint64_t now = uv_now(a->loop);
  if (w->phase == 0) {
    /* Wait for the producer to be refused, then give it time to prove
     * that nothing more gets through. */
    if (b->fulls == 0 || !a->link || !nb_link_is_paused(a->link)) return 0;
    w->phase = 1;
    w->phase_ms = now;
    return 0;
  }
  if (w->phase == 1) {
    if (now - w->phase_ms < 300) return 0;
    side_produce(b); /* still refused */
    w->room_held = nb_link_room(b->link);
    nb_link_stats(b->link, &w->held);
    w->gen_held = b->gen;
    w->got_held = a->got;
    w->paused_held = nb_link_is_paused(a->link);
    a->stall = 0;
    nb_link_resume(a->link);
    w->phase = 2;
    return 0;
  }
  return pair_done(r);
}

static void test_slow_peer(void) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  slowrun_t *w = calloc(1, sizeof *w);
  pairrun_t *p = &w->p;
  const uint64_t n = 200000 / SCALE;
  side_init(&p->a, &loop, "alpha", 0, 0, 0);
  side_init(&p->b, &loop, "beta", 101, 0, 0);
  side_pair(&p->a, &p->b);
  p->b.to_send = n;
  p->a.stall = 1;
  NBT_EQ(nb_link_node_listen(p->a.node, "tcp://127.0.0.1:0"), 0);
  p->a_port = nb_link_node_port(p->a.node);
  nb_link_opts_t o = nb_link_opts_default();
  o.queue_spikes = 1024;
  o.queue_bytes = 64 * 1024;
  NBT_EQ(nb_link_connect(p->b.node, url_of(p->a_port), &o, &p->b.link), 0);
  side_targets(&p->b);
  run_t r;
  memset(&r, 0, sizeof r);
  run_start(&r, &loop, slow_done, pair_finish, w);
  /* alpha's link exists once beta called: pair_done needs it. */
  uv_run(&loop, UV_RUN_NOWAIT);
  while (!p->a.link && !r.finished) {
    p->a.link = nb_link_find(p->a.node, "beta");
    if (!p->a.link) uv_run(&loop, UV_RUN_ONCE);
  }
  uv_run(&loop, UV_RUN_DEFAULT);
  NBT_CHECK(!r.timed_out);
  NBT_EQ(w->phase, 2);
  /* While stalled: the producer was refused, the queue stayed at its bound
   * (spikes and bytes) and nothing was accepted. */
  NBT_CHECK(p->b.fulls >= 2);
  NBT_EQ(w->gen_held, w->held.sent);
  NBT_CHECK(w->held.queued <= 1024);
  NBT_CHECK(w->held.queue_bytes <= 64 * 1024);
  NBT_CHECK(w->held.queued >= 512); /* it really filled up */
  NBT_EQ(w->held.acked, 0);
  NBT_EQ(w->got_held, 0);
  NBT_CHECK(w->paused_held);
  NBT_CHECK(w->room_held == 0 || w->room_held == 1024 - w->held.queued);
  NBT_CHECK(w->held.full >= 2);
  /* Released: everything arrived, in order, nothing lost. */
  check_exact(&p->b, n);
  NBT_EQ(p->a.got, n);
  NBT_CHECK(p->a.final.pauses >= 1);
  NBT_EQ(uv_loop_close(&loop), 0);
  if (r.timed_out || nbt__cur_failed) {
    log_dump(&p->a.log, "alpha", 20);
    log_dump(&p->b.log, "beta", 20);
  }
  side_free(&p->a);
  side_free(&p->b);
  free(w);
}

/* ---- a proxy that kills the connection mid-stream ---- */

typedef struct proxy_s proxy_t;

typedef struct pxpair_s {
  uv_tcp_t side[2];     /* 0: from the dialler, 1: to the listener */
  uv_connect_t creq;
  proxy_t *px;
  uint64_t bytes[2];    /* forwarded from side d to the other */
  uint64_t kill_at[2];  /* cut once that many bytes went from side d */
  int nclosed, dead, connected;
} pxpair_t;

struct proxy_s {
  uv_tcp_t server;
  int port, target_port;
  uint64_t plan[8][2];  /* kill_at per pair, in accept order */
  int nplan, npairs, kills, closing;
  pxpair_t *live[64];
};

typedef struct pxwrite_s {
  uv_write_t req;
  char *buf;
} pxwrite_t;

static void px_pair_closed(uv_handle_t *h) {
  pxpair_t *pp = h->data;
  if (++pp->nclosed == 2) {
    for (int i = 0; i < 64; i++)
      if (pp->px->live[i] == pp) pp->px->live[i] = NULL;
    free(pp);
  }
}

/* Closes both sockets of a pair; hard = with a reset, as a crash would. */
static void px_kill(pxpair_t *pp, int hard) {
  if (pp->dead) return;
  pp->dead = 1;
  for (int d = 0; d < 2; d++) {
    uv_handle_t *h = (uv_handle_t *)&pp->side[d];
    if (uv_is_closing(h)) continue;
    if (hard && (d == 0 || pp->connected))
      uv_tcp_close_reset(&pp->side[d], px_pair_closed);
    else
      uv_close(h, px_pair_closed);
  }
}

static void px_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b) {
  *b = uv_buf_init(malloc(65536), 65536);
}

static void px_written(uv_write_t *req, int status) {
  pxwrite_t *w = (pxwrite_t *)req;
  free(w->buf);
  free(w);
}

static void px_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b) {
  pxpair_t *pp = s->data;
  int d = s == (uv_stream_t *)&pp->side[0] ? 0 : 1;
  if (n <= 0 || pp->dead) {
    free(b->base);
    if (n < 0) px_kill(pp, 0);
    return;
  }
  uv_stream_t *to = (uv_stream_t *)&pp->side[1 - d];
  if (pp->kill_at[d] && pp->bytes[d] + (uint64_t)n >= pp->kill_at[d]) {
    /* Forward up to the cut (mid-frame, most likely), then reset both. */
    uv_buf_t part = uv_buf_init(b->base, (unsigned)(pp->kill_at[d] - pp->bytes[d]));
    uv_try_write(to, &part, 1);
    free(b->base);
    pp->px->kills++;
    px_kill(pp, 1);
    return;
  }
  pp->bytes[d] += (uint64_t)n;
  pxwrite_t *w = malloc(sizeof *w);
  w->buf = b->base;
  uv_buf_t out = uv_buf_init(b->base, (unsigned)n);
  if (uv_write(&w->req, to, &out, 1, px_written) != 0) {
    free(w->buf);
    free(w);
    px_kill(pp, 0);
  }
}

static void px_connected(uv_connect_t *req, int status) {
  pxpair_t *pp = req->data;
  if (pp->dead) return;
  if (status < 0) {
    px_kill(pp, 0);
    return;
  }
  pp->connected = 1;
  uv_read_start((uv_stream_t *)&pp->side[0], px_alloc, px_read);
  uv_read_start((uv_stream_t *)&pp->side[1], px_alloc, px_read);
}

static void px_accept(uv_stream_t *server, int status) {
  proxy_t *px = server->data;
  if (status < 0 || px->closing) return;
  pxpair_t *pp = calloc(1, sizeof *pp);
  pp->px = px;
  for (int d = 0; d < 2; d++) {
    uv_tcp_init(server->loop, &pp->side[d]);
    pp->side[d].data = pp;
  }
  uv_accept(server, (uv_stream_t *)&pp->side[0]);
  int k = px->npairs++;
  if (k < px->nplan) {
    pp->kill_at[0] = px->plan[k][0];
    pp->kill_at[1] = px->plan[k][1];
  }
  for (int i = 0; i < 64; i++)
    if (!px->live[i]) {
      px->live[i] = pp;
      break;
    }
  struct sockaddr_in sa;
  uv_ip4_addr("127.0.0.1", px->target_port, &sa);
  pp->creq.data = pp;
  uv_tcp_connect(&pp->creq, &pp->side[1], (const struct sockaddr *)&sa,
                 px_connected);
}

static void px_start(proxy_t *px, uv_loop_t *loop, int target_port) {
  px->target_port = target_port;
  uv_tcp_init(loop, &px->server);
  px->server.data = px;
  struct sockaddr_in sa;
  uv_ip4_addr("127.0.0.1", 0, &sa);
  uv_tcp_bind(&px->server, (const struct sockaddr *)&sa, 0);
  uv_listen((uv_stream_t *)&px->server, 16, px_accept);
  int len = sizeof sa;
  uv_tcp_getsockname(&px->server, (struct sockaddr *)&sa, &len);
  px->port = ntohs(sa.sin_port);
}

static void px_close(proxy_t *px) {
  px->closing = 1;
  uv_close((uv_handle_t *)&px->server, NULL);
  for (int i = 0; i < 64; i++)
    if (px->live[i]) px_kill(px->live[i], 0);
}

typedef struct killrun_s {
  pairrun_t p;
  proxy_t px;
  int policy;
} killrun_t;

/* Returns 1 when both senders have settled every spike (acked or lost)
 * and the receivers saw exactly what was acked. */
static int kill_done(run_t *r) {
  killrun_t *k = r->ctx;
  if (k->p.a.bad || k->p.b.bad) return 1;
  /* Resend: every byte flows, so every planned cut happens. Drop: the
   * dropped spikes never flow, so a late cut may never come. */
  if (k->policy == NB_LINK_RESEND)
    return k->px.kills == k->px.nplan && pair_done(r);
  side_t *s[2] = {&k->p.a, &k->p.b};
  for (int i = 0; i < 2; i++) {
    nb_link_stats_t st;
    if (!nb_link_is_up(s[i]->link)) return 0;
    nb_link_stats(s[i]->link, &st);
    if (s[i]->gen < s[i]->to_send || st.queued || st.in_doubt) return 0;
    if (st.acked != s[i]->peer->got) return 0;
  }
  return 1;
}

static void kill_finish(run_t *r) {
  killrun_t *k = r->ctx;
  pair_finish(r);
  px_close(&k->px);
}

static void run_kills(int policy) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  killrun_t *k = calloc(1, sizeof *k);
  pairrun_t *p = &k->p;
  const uint64_t n = 200000 / SCALE;
  k->policy = policy;
  side_init(&p->a, &loop, "alpha", 0, 0, 0);
  side_init(&p->b, &loop, "beta", 101, 32u << 20, 0);
  side_pair(&p->a, &p->b);
  p->a.to_send = p->b.to_send = n;
  p->a.allow_gaps = p->b.allow_gaps = policy == NB_LINK_DROP;
  NBT_EQ(nb_link_node_listen(p->a.node, "tcp://127.0.0.1:0"), 0);
  p->a_port = nb_link_node_port(p->a.node);
  /* Cuts: beta->alpha at 1 MB, alpha->beta at 1.5 MB, beta->alpha at
   * 0.7 MB of the third connection; the fourth lives. */
  k->px.plan[0][0] = 1000003 / SCALE;
  k->px.plan[1][1] = 1500007 / SCALE;
  k->px.plan[2][0] = 700001 / SCALE;
  k->px.nplan = 3;
  px_start(&k->px, &loop, p->a_port);
  nb_link_opts_t o = nb_link_opts_default();
  o.policy = (nb_link_policy_t)policy;
  o.backoff_min_ms = 5;
  o.backoff_max_ms = 50;
  NBT_EQ(nb_link_expect(p->a.node, "beta", &o, &p->a.link), 0);
  side_targets(&p->a);
  NBT_EQ(nb_link_connect(p->b.node, url_of(k->px.port), &o, &p->b.link), 0);
  side_targets(&p->b);
  run_t r;
  memset(&r, 0, sizeof r);
  run_start(&r, &loop, kill_done, kill_finish, k);
  double t0 = nbt_now_s();
  uv_run(&loop, UV_RUN_DEFAULT);
  double dt = nbt_now_s() - t0;
  NBT_CHECK(!r.timed_out);
  if (policy == NB_LINK_RESEND) NBT_EQ(k->px.kills, 3);
  NBT_CHECK(k->px.kills >= 1);
  side_t *s[2] = {&p->a, &p->b};
  uint64_t lost = 0, resent = 0;
  for (int i = 0; i < 2; i++) {
    nb_link_stats_t st = s[i]->final;
    NBT_EQ(s[i]->bad, 0);
    if (s[i]->bad) printf("    %s: %s\n", s[i]->cortex, s[i]->first_bad);
    NBT_EQ(st.sent, n);
    /* Every spike fired is delivered or reported lost: nothing else. */
    NBT_EQ(st.acked + st.lost, n);
    NBT_EQ(st.acked, s[i]->peer->got);
    NBT_EQ(st.queued + st.in_doubt, 0);
    NBT_EQ(st.reconnects, (uint64_t)k->px.kills);
    lost += st.lost;
    resent += st.resent;
  }
  if (policy == NB_LINK_RESEND) {
    NBT_EQ(lost, 0);
    NBT_CHECK(resent > 0);
    NBT_EQ(p->a.got, n);
    NBT_EQ(p->b.got, n);
  } else {
    NBT_CHECK(lost > 0);
    NBT_EQ(resent, 0);
  }
  printf("# %s: 2 x %llu spikes through %d killed connections in %.2f s: "
         "delivered %llu + %llu, resent %llu, lost %llu\n",
         policy == NB_LINK_RESEND ? "resend" : "drop",
         (unsigned long long)n, k->px.kills, dt, (unsigned long long)p->a.got,
         (unsigned long long)p->b.got, (unsigned long long)resent,
         (unsigned long long)lost);
  NBT_EQ(uv_loop_close(&loop), 0);
  if (r.timed_out || nbt__cur_failed || getenv("NB_TEST_VERBOSE")) {
    log_dump(&p->a.log, "alpha", 30);
    log_dump(&p->b.log, "beta", 30);
  }
  side_free(&p->a);
  side_free(&p->b);
  free(k);
}

static void test_kill_resend(void) { run_kills(NB_LINK_RESEND); }
static void test_kill_drop(void) { run_kills(NB_LINK_DROP); }

/* ---- the receiving process restarts: a new incarnation ---- */

typedef struct restartrun_s {
  side_t a1, a2, b;
  int port, restarted;
  uint64_t n;
} restartrun_t;

static int restart_done(run_t *r) {
  restartrun_t *w = r->ctx;
  if (w->a1.bad || w->a2.bad || w->b.bad) return 1;
  if (!w->restarted) {
    if (w->a1.got < w->n / 5) return 0;
    /* Stop alpha mid-stream and start a new alpha on the same port. */
    side_close(&w->a1);
    side_init(&w->a2, w->b.loop, "alpha", 0, 0, 0);
    side_pair(&w->a2, &w->b);
    w->a2.resync = 1;
    char url[64];
    snprintf(url, sizeof url, "tcp://127.0.0.1:%d", w->port);
    NBT_EQ(nb_link_node_listen(w->a2.node, url), 0);
    NBT_EQ(nb_link_expect(w->a2.node, "beta", NULL, &w->a2.link), 0);
    w->restarted = 1;
    return 0;
  }
  nb_link_stats_t st;
  nb_link_stats(w->b.link, &st);
  if (w->b.gen < w->n || st.acked < w->n) return 0;
  for (int i = 0; i < NSRC; i++)
    if (w->a2.next[i] != w->n / NSRC) return 0;
  return 1;
}

static void restart_finish(run_t *r) {
  restartrun_t *w = r->ctx;
  side_close(&w->a1);
  side_close(&w->a2);
  side_close(&w->b);
}

static void test_peer_restart(void) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  restartrun_t *w = calloc(1, sizeof *w);
  w->n = 200000 / SCALE;
  side_init(&w->a1, &loop, "alpha", 0, 0, 0);
  side_init(&w->b, &loop, "beta", 101, 0, 0);
  side_pair(&w->a1, &w->b);
  w->b.to_send = w->n;
  NBT_EQ(nb_link_node_listen(w->a1.node, "tcp://127.0.0.1:0"), 0);
  w->port = nb_link_node_port(w->a1.node);
  NBT_EQ(nb_link_expect(w->a1.node, "beta", NULL, &w->a1.link), 0);
  nb_link_opts_t o = nb_link_opts_default();
  o.backoff_min_ms = 5;
  NBT_EQ(nb_link_connect(w->b.node, url_of(w->port), &o, &w->b.link), 0);
  side_targets(&w->b);
  run_t r;
  memset(&r, 0, sizeof r);
  run_start(&r, &loop, restart_done, restart_finish, w);
  uv_run(&loop, UV_RUN_DEFAULT);
  NBT_CHECK(!r.timed_out);
  NBT_CHECK(w->restarted);
  NBT_EQ(w->a1.bad + w->a2.bad + w->b.bad, 0);
  if (w->a2.bad) printf("    alpha2: %s\n", w->a2.first_bad);
  /* At least once across the restart: the new alpha starts at or before
   * where the old one stopped, and runs to the end without a gap. */
  for (int i = 0; i < NSRC; i++) {
    NBT_CHECK(w->a2.seen[i]);
    NBT_CHECK(w->a2.start[i] <= w->a1.next[i]);
    NBT_EQ(w->a2.next[i], w->n / NSRC);
  }
  NBT_CHECK(w->a1.got + w->a2.got >= w->n);
  nb_link_stats_t st = w->b.final;
  NBT_EQ(st.sent, w->n);
  NBT_EQ(st.acked, w->n);
  NBT_EQ(st.lost, 0);
  NBT_EQ(st.reconnects, 1);
  NBT_CHECK(log_has(&w->b.log, "new incarnation (restarted)", NULL, NULL));
  /* A restart is no count out of place (that is a takeover's). */
  NBT_CHECK(!log_has(&w->b.log, "counting from there", NULL, NULL));
  NBT_CHECK(!log_has(&w->a2.log, "counting from there", NULL, NULL));
  printf("# restart: old alpha got %llu, new alpha got %llu of %llu "
         "(resent %llu)\n", (unsigned long long)w->a1.got,
         (unsigned long long)w->a2.got, (unsigned long long)w->n,
         (unsigned long long)st.resent);
  NBT_EQ(uv_loop_close(&loop), 0);
  if (r.timed_out || nbt__cur_failed || getenv("NB_TEST_VERBOSE")) {
    log_dump(&w->a1.log, "alpha1", 20);
    log_dump(&w->a2.log, "alpha2", 20);
    log_dump(&w->b.log, "beta", 20);
  }
  side_free(&w->a1);
  side_free(&w->a2);
  side_free(&w->b);
  free(w);
}

/* ---- another process speaks for the peer's cortex, then the peer is
 * back ---- */

typedef struct imprun_s {
  pairrun_t p;
  raw_t raw;
  int phase; /* 0 first half, 1 impostor called, 2 second half */
  int same_inc; /* the stranger says it is beta's very process */
  uint64_t n;
} imprun_t;

static int imp_done(run_t *r) {
  imprun_t *w = r->ctx;
  pairrun_t *p = &w->p;
  if (p->a.bad || p->b.bad) return 1;
  if (w->phase == 0) {
    if (!pair_done(r)) return 0;
    /* Both sides counted and acked each other's frames: now a stranger
     * calls in as "beta" and takes the link over (no secret here), with
     * an incarnation of its own or beta's (then its count of alpha's
     * frames, 0, is one alpha cannot place either). */
    raw_hello(&w->raw, "beta",
              w->same_inc ? nb_link_node_incarnation(p->b.node) : 77);
    raw_start(&w->raw, p->a.loop, p->a_port);
    w->phase = 1;
    return 0;
  }
  if (w->phase == 1) {
    /* The rightful beta must be back on both ends (its counts refer to a
     * numbering alpha left for the stranger). */
    if (!log_has(&p->a.log, "replaced by a new connection", NULL, NULL) ||
        !nb_link_is_up(p->a.link) || !nb_link_is_up(p->b.link) ||
        nb_link_resolve(p->a.link, "beta0") < 0)
      return 0;
    p->a.to_send = p->b.to_send = 2 * w->n;
    side_produce(&p->a);
    side_produce(&p->b);
    w->phase = 2;
    return 0;
  }
  return pair_done(r);
}

static void imp_finish(run_t *r) {
  imprun_t *w = r->ctx;
  pair_finish(r);
  if (!w->raw.closed && !uv_is_closing((uv_handle_t *)&w->raw.tcp))
    uv_close((uv_handle_t *)&w->raw.tcp, raw_closed);
}

/* Runs the takeover by a stranger (with beta's incarnation when same_inc
 * is 1) and checks that beta gets back and nothing is lost. */
static void run_impostor(int same_inc) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  imprun_t *w = calloc(1, sizeof *w);
  pairrun_t *p = &w->p;
  w->n = 2000;
  w->same_inc = same_inc;
  side_init(&p->a, &loop, "alpha", 0, 0, 0);
  side_init(&p->b, &loop, "beta", 101, 0, 0);
  side_pair(&p->a, &p->b);
  p->a.to_send = p->b.to_send = w->n;
  NBT_EQ(nb_link_node_listen(p->a.node, "tcp://127.0.0.1:0"), 0);
  p->a_port = nb_link_node_port(p->a.node);
  NBT_EQ(nb_link_expect(p->a.node, "beta", NULL, &p->a.link), 0);
  side_targets(&p->a);
  nb_link_opts_t o = nb_link_opts_default();
  o.backoff_min_ms = 5;
  NBT_EQ(nb_link_connect(p->b.node, url_of(p->a_port), &o, &p->b.link), 0);
  side_targets(&p->b);
  run_t r;
  memset(&r, 0, sizeof r);
  run_start(&r, &loop, imp_done, imp_finish, w);
  r.deadline_ms = 20000; /* refused redials never end: fail in time */
  uv_run(&loop, UV_RUN_DEFAULT);
  NBT_CHECK(!r.timed_out);
  NBT_EQ(w->phase, 2);
  /* Nothing lost, nothing twice (no frame was in flight at the switch). */
  check_exact(&p->a, 2 * w->n);
  check_exact(&p->b, 2 * w->n);
  NBT_CHECK(p->b.final.reconnects >= 1);
  NBT_CHECK(log_has(&p->a.log, "counting from there", NULL, NULL));
  NBT_CHECK(!log_has(&p->a.log, "bad handshake", NULL, NULL));
  NBT_CHECK(!log_has(&p->b.log, "bad handshake", NULL, NULL));
  NBT_EQ(uv_loop_close(&loop), 0);
  if (r.timed_out || nbt__cur_failed || getenv("NB_TEST_VERBOSE")) {
    log_dump(&p->a.log, "alpha", 30);
    log_dump(&p->b.log, "beta", 30);
  }
  free(w->raw.data);
  side_free(&p->a);
  side_free(&p->b);
  free(w);
}

static void test_impostor_then_peer_back(void) { run_impostor(0); }
static void test_impostor_same_incarnation(void) { run_impostor(1); }

/* ---- one loop per thread ---- */

typedef struct thr_s {
  side_t side;
  uv_loop_t loop;
  run_t run;
  pthread_t th;
  uint64_t n;
  int counted;
  _Atomic int *ndone;
} thr_t;

/* Returns 1 once both threads saw their side finished. */
static int thr_done(run_t *r) {
  thr_t *t = r->ctx;
  if (t->side.bad) return 1;
  nb_link_stats_t st;
  if (!t->counted && t->side.link) {
    nb_link_stats(t->side.link, &st);
    if (t->side.got == t->n && st.acked == t->n) {
      t->counted = 1;
      (*t->ndone)++;
    }
  }
  return *t->ndone == 2;
}

static void thr_finish(run_t *r) { side_close(&((thr_t *)r->ctx)->side); }

static void *thr_main(void *arg) {
  thr_t *t = arg;
  uv_run(&t->loop, UV_RUN_DEFAULT);
  return NULL;
}

static void test_two_threads(void) {
  thr_t *t = calloc(2, sizeof *t);
  _Atomic int ndone = 0;
  const uint64_t n = 200000 / SCALE;
  for (int i = 0; i < 2; i++) {
    uv_loop_init(&t[i].loop);
    t[i].n = n;
    t[i].ndone = &ndone;
  }
  side_init(&t[0].side, &t[0].loop, "alpha", 0, 16u << 20, 0);
  side_init(&t[1].side, &t[1].loop, "beta", 101, 0, 0);
  side_pair(&t[0].side, &t[1].side);
  t[0].side.to_send = t[1].side.to_send = n;
  t[0].side.full_every = 50021 / SCALE;
  NBT_EQ(nb_link_node_listen(t[0].side.node, "tcp://127.0.0.1:0"), 0);
  int port = nb_link_node_port(t[0].side.node);
  NBT_EQ(nb_link_expect(t[0].side.node, "beta", NULL, &t[0].side.link), 0);
  side_targets(&t[0].side);
  NBT_EQ(nb_link_connect(t[1].side.node, url_of(port), NULL, &t[1].side.link),
         0);
  side_targets(&t[1].side);
  double t0 = nbt_now_s();
  for (int i = 0; i < 2; i++) {
    run_start(&t[i].run, &t[i].loop, thr_done, thr_finish, &t[i]);
    pthread_create(&t[i].th, NULL, thr_main, &t[i]);
  }
  for (int i = 0; i < 2; i++) pthread_join(t[i].th, NULL);
  double dt = nbt_now_s() - t0;
  for (int i = 0; i < 2; i++) {
    side_t *s = &t[i].side;
    NBT_CHECK(!t[i].run.timed_out);
    NBT_EQ(s->bad, 0);
    if (s->bad) printf("    %s: %s\n", s->cortex, s->first_bad);
    NBT_EQ(s->got, n);
    NBT_EQ(s->final.sent, n);
    NBT_EQ(s->final.acked, n);
    NBT_EQ(s->final.lost, 0);
    NBT_EQ(uv_loop_close(&t[i].loop), 0);
  }
  printf("# two threads: 2 x %llu spikes in %.2f s\n", (unsigned long long)n,
         dt);
  for (int i = 0; i < 2; i++) side_free(&t[i].side);
  free(t);
}

/* ---- a dialled address that accepts and never answers ---- */

typedef struct silent_s {
  uv_tcp_t server;
  uv_tcp_t conns[16];
  int accepted;
  side_t b;
} silent_t;

static void silent_accept(uv_stream_t *server, int status) {
  silent_t *w = server->data;
  if (status < 0 || w->accepted >= 16) return;
  uv_tcp_t *c = &w->conns[w->accepted++];
  uv_tcp_init(server->loop, c);
  uv_accept(server, (uv_stream_t *)c); /* and say nothing */
}

static int silent_done(run_t *r) {
  silent_t *w = r->ctx;
  return w->accepted >= 2 &&
         log_has(&w->b.log, "no handshake within 200 ms", NULL, NULL);
}

static void silent_finish(run_t *r) {
  silent_t *w = r->ctx;
  side_close(&w->b);
  uv_close((uv_handle_t *)&w->server, NULL);
  for (int i = 0; i < w->accepted; i++)
    uv_close((uv_handle_t *)&w->conns[i], NULL);
}

static void test_silent_server(void) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  silent_t *w = calloc(1, sizeof *w);
  side_init(&w->b, &loop, "beta", 101, 0, 200);
  uv_tcp_init(&loop, &w->server);
  w->server.data = w;
  struct sockaddr_in sa;
  uv_ip4_addr("127.0.0.1", 0, &sa);
  uv_tcp_bind(&w->server, (const struct sockaddr *)&sa, 0);
  uv_listen((uv_stream_t *)&w->server, 16, silent_accept);
  int len = sizeof sa;
  uv_tcp_getsockname(&w->server, (struct sockaddr *)&sa, &len);
  nb_link_opts_t o = nb_link_opts_default();
  o.backoff_min_ms = 5;
  NBT_EQ(nb_link_connect(w->b.node, url_of(ntohs(sa.sin_port)), &o,
                         &w->b.link), 0);
  /* Spikes for a peer that never shows up wait in the queue. */
  nb_spike_t sp;
  nb_spike_init(&sp, 0, NB_EXCITATORY, 0);
  NBT_EQ(nb_link_send_name(w->b.link, "anyone", &sp, NULL, 0), 0);
  NBT_EQ(nb_link_send_id(w->b.link, 3, &sp, NULL, 0), NB_ENOENT);
  run_t r;
  memset(&r, 0, sizeof r);
  run_start(&r, &loop, silent_done, silent_finish, w);
  uv_run(&loop, UV_RUN_DEFAULT);
  NBT_CHECK(!r.timed_out);
  /* It gave up on the mute peer and dialled again. */
  NBT_CHECK(w->accepted >= 2);
  NBT_EQ(w->b.final.connects, 0);
  NBT_EQ(w->b.final.sent, 1);
  NBT_EQ(w->b.final.queued, 1);
  NBT_CHECK(w->b.final.errors >= 1);
  NBT_EQ(uv_loop_close(&loop), 0);
  if (r.timed_out || nbt__cur_failed) log_dump(&w->b.log, "beta", 20);
  side_free(&w->b);
  free(w);
}

/* A run ends itself at DEADLINE_MS and prints what each side saw: the
 * harness waits longer so a stuck run reports that, not just a timeout. */
#define LINK_RUN(fn) NBT_TEST_TIMEOUT(fn, DEADLINE_MS / 1000 + 40)

static const nbt_test_t tests[] = {
    NBT_TEST(test_url),
    NBT_TEST(test_hello_codec),
    NBT_TEST(test_hello_arena),
    NBT_TEST(test_rx_cut_anywhere),
    NBT_TEST(test_queue_bound),
    NBT_TEST(test_send_run),
    LINK_RUN(test_exchange_million),
    LINK_RUN(test_exchange_million_batch),
    LINK_RUN(test_bad_peers),
    LINK_RUN(test_bad_peers_batch),
    LINK_RUN(test_slow_peer),
    LINK_RUN(test_kill_resend),
    LINK_RUN(test_kill_drop),
    LINK_RUN(test_peer_restart),
    LINK_RUN(test_impostor_then_peer_back),
    LINK_RUN(test_impostor_same_incarnation),
    LINK_RUN(test_two_threads),
    LINK_RUN(test_silent_server),
};

int main(int argc, char **argv) {
  signal(SIGPIPE, SIG_IGN);
  return NBT_MAIN(argc, argv, tests, NULL);
}
