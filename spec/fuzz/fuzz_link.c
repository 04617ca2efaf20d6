/* fuzz_link.c: a stateful libFuzzer target for the TCP link session
 * (runtime/nb_link.c): handshake, authentication, replacement, acks,
 * resend, limits and timeouts, over real loopback sockets.
 *
 * Build: clang -fsanitize=fuzzer,address,undefined (make fuzz), or cc with
 * spec/fuzz/replay.c (make fuzz-replay). Each input builds, on one libuv
 * loop in this process:
 *   - node "hub" (A) listening on 127.0.0.1, exposing n0=0, n1=1, n7=7,
 *     with small limits and timeouts; by the first byte: no secret, a
 *     cluster secret, an allow list ("good" and "s1", each its own
 *     secret), or a cluster secret with encryption;
 *   - optionally node "good" (G), a well-behaved peer dialling A with the
 *     right secret (exposing g0=3, g1=4), so replacement, redial and
 *     resend run;
 *   - four scripted callers: plain sockets driven by the input, each a
 *     sequence of actions: connect, send the authentication's message 1
 *     (any name, the right or a wrong key, mutated or cut) and message 3
 *     (computed from A's answer by a caller state of nb_link_auth.h, or
 *     mutated), a HELLO (names, incarnations, counts, mutated), spikes to
 *     exposed and other ids, inline or with payloads (cut), acks of any
 *     count, raw bytes, and close (FIN, RST or half close).
 * Other actions: advance the clock, send from A and from G, disconnect a
 * link, stop or restart G, make A's receiver refuse or push back, expect
 * a cortex.
 *
 * The clock is virtual: clock_gettime (CLOCK_MONOTONIC*) is wrapped here
 * and, only on this thread while the loop runs, returns real time plus an
 * offset the input advances, so the handshake, frame, idle, keepalive and
 * redial timers fire in microseconds of real time.
 *
 * Properties (a failure traps, which libFuzzer reports like a crash):
 *   - per link, after every action: sent == acked + lost + queued +
 *     in_doubt, and queued within the queue's size;
 *   - A hands on_spike (or on_spikes, for inputs of odd length: runs of
 *     plain spikes) only ids it exposes, ref payloads with their bytes;
 *   - with a secret or an allow list, a link of A comes up only for G or
 *     for a cortex name some script proved the right secret for (an
 *     established link is never taken over by an unauthenticated caller);
 *   - at the end, after the scripts closed and the clock ran on: A holds
 *     no connection but G's, G's link is up again (unless A's link limit
 *     holds) with nothing left unacked, and both nodes free themselves
 *     when closed (LeakSanitizer checks the rest). */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <uv.h>

#include "nb_err.h"
#include "nb_frame.h"
#include "nb_link.h"
#include "nb_link_auth.h"
#include "nb_link_internal.h"
#include "nb_link_wire.h"

#define CHECK(c)                                                          \
  do {                                                                    \
    if (!(c)) {                                                           \
      fprintf(stderr, "fuzz_link: property failed: %s (line %d)\n", #c,   \
              __LINE__);                                                  \
      __builtin_trap();                                                   \
    }                                                                     \
  } while (0)

#define NSCRIPT 4
#define MAX_ACTIONS 96
#define STEP_MS 4          /* the clock advances by this much per turn */
#define SETTLE_MS 400      /* at the end: every timeout and redial runs */
#define QUEUE_A 6          /* spikes a link of A holds (not powers of two */
#define QUEUE_G 80         /* and G's over the ring's first size) */
#define MAX_LINKS 5
#define MAX_PAYLOAD 2048

/* ---- the virtual clock ---- */

static __thread int in_loop; /* the loop runs on this thread now */
static uint64_t clock_off_ns;

typedef int (*clock_fn)(clockid_t, struct timespec *);

/* Returns the time of clock id in *ts, monotonic clocks moved on by the
 * virtual offset while this thread runs the loop; returns 0 or -1. */
int clock_gettime(clockid_t id, struct timespec *ts) {
  static clock_fn real;
  if (!real) real = (clock_fn)dlsym(RTLD_NEXT, "clock_gettime");
  int rc = real(id, ts);
  if (rc == 0 && in_loop &&
      (id == CLOCK_MONOTONIC || id == CLOCK_MONOTONIC_COARSE ||
       id == CLOCK_MONOTONIC_RAW)) {
    uint64_t ns = (uint64_t)ts->tv_sec * 1000000000ull +
                  (uint64_t)ts->tv_nsec + clock_off_ns;
    ts->tv_sec = (time_t)(ns / 1000000000ull);
    ts->tv_nsec = (long)(ns % 1000000000ull);
  }
  return rc;
}

/* ---- the input ---- */

static const uint8_t *in_p;
static size_t in_left;

/* Returns the next input byte, or 0 when the input is used up. */
static uint8_t take(void) {
  if (!in_left) return 0;
  in_left--;
  return *in_p++;
}

/* ---- the world of one input ---- */

static const char CLUSTER[] = "fuzz cluster secret 0123456789";
static const char SEC_GOOD[] = "fuzz secret of good 012345678";
static const char SEC_S1[] = "fuzz secret of s1 0123456789ab";
static const char WRONG[] = "fuzz wrong secret 0123456789ab";
static const char *const keys[4] = {CLUSTER, SEC_GOOD, SEC_S1, WRONG};

static char long_name[NB_LINK_NAME_MAX + 1];
/* Cortex names scripts claim: G's (twice as likely), A's own, a longest. */
static const char *names[8] = {"good", "s1", "s2", "hub",
                               "good", "s1", long_name, "s3"};

enum { AUTH_PLAIN, AUTH_CLUSTER, AUTH_ALLOW, AUTH_ENCRYPT };

typedef struct script_s {
  int fd;                /* -1: closed */
  int eof;               /* the peer closed or reset it */
  nb_link_auth_t *auth;  /* its caller state, from message 1 on */
  int name_i, key_i;     /* what message 1 claimed and proves */
  uint8_t m3[64];        /* message 3 to send, once A answered */
  size_t m3_len;
  uint64_t inc;          /* the incarnation its HELLOs carry */
} script_t;

typedef struct world_s {
  int mode, drop, spike_mode, g_encrypt;
  int batch; /* A takes runs of plain spikes through on_spikes */
  uint32_t queue_a;
  nb_link_node_t *a, *g;
  nb_link_t *g_link;
  int a_done, g_done;
  int port;
  uint64_t g_inc;        /* G's incarnation (0 when G is not running) */
  script_t s[NSCRIPT];
  uint32_t proven;       /* bit i: a script proved the secret of names[i] */
  uint64_t next_inc, spikes_in;
  int settling;
} world_t;

static world_t W;
static uv_loop_t loop;
static int loop_ready;

/* Runs n non-blocking turns of the loop on the virtual clock. */
static void turn(int n) {
  in_loop = 1;
  for (int i = 0; i < n; i++) uv_run(&loop, UV_RUN_NOWAIT);
  in_loop = 0;
}

static void pump_all(void);

/* Moves the clock on by ms in steps, turning the loop and draining the
 * scripts' sockets at each. */
static void advance(uint32_t ms) {
  for (uint32_t t = 0; t < ms; t += STEP_MS) {
    clock_off_ns += (uint64_t)STEP_MS * 1000000ull;
    turn(2);
    pump_all();
  }
}

/* Returns 1 when the key keys[key_i] is the one A checks the caller named
 * names[name_i] against, else 0. */
static int key_right(int name_i, int key_i) {
  const char *name = names[name_i];
  switch (W.mode) {
    case AUTH_CLUSTER:
    case AUTH_ENCRYPT:
      return key_i == 0;
    case AUTH_ALLOW:
      return (!strcmp(name, "good") && key_i == 1) ||
             (!strcmp(name, "s1") && key_i == 2);
    default:
      return 0;
  }
}

/* ---- the nodes' callbacks ---- */

static int a_on_spike(void *ud, nb_link_t *l, const nb_spike_t *s,
                      const void *payload, size_t len) {
  nb_id_t t = s->target;
  CHECK(t == 0 || t == 1 || t == 7); /* only exposed ids get here */
  if (nb_spike_is_ref(s)) {
    nb_arena_ref_t ref;
    CHECK(nb_spike_get_ref(s, &ref) == 0);
    CHECK(payload != NULL && len == ref.len && len <= MAX_PAYLOAD);
  } else {
    CHECK(len == 0 || payload == NULL || len <= NB_PAYLOAD_MAX);
  }
  W.spikes_in++;
  if (W.settling || W.spike_mode == 0) return 0;
  if (W.spike_mode == 1 && W.spikes_in % 3 == 0) return NB_EFULL;
  if (W.spike_mode == 2 && W.spikes_in % 2 == 0) return NB_EINVAL;
  if (W.spike_mode == 3) return NB_EFULL;
  return 0;
}

/* A's on_spikes (inputs of odd length): a_on_spike for each spike of the
 * run, stopping before the first it pushes back; returns how many it
 * took or refused (refusals in *rejected). */
static size_t a_on_spikes(void *ud, nb_link_t *l, const nb_spike_t *s,
                          size_t n, size_t *rejected) {
  CHECK(n > 0);
  size_t i = 0;
  for (; i < n; i++) {
    CHECK(!nb_spike_is_ref(&s[i]));
    int rc = a_on_spike(ud, l, &s[i], NULL, 0);
    if (rc == NB_EFULL) break;
    if (rc < 0) ++*rejected;
  }
  return i;
}

/* Returns 1 when s names cortex name in the scripts' table and a script
 * proved that name's secret, else 0. */
static int proven_name(const char *name) {
  for (int i = 0; i < 8; i++)
    if ((W.proven & (1u << i)) && strcmp(names[i], name) == 0) return 1;
  return 0;
}

static int verbose; /* NB_FUZZ_LINK_LOG set: the nodes' lines on stderr */

static void a_on_event(void *ud, nb_link_t *l, nb_link_event_t ev) {
  if (verbose)
    fprintf(stderr, "[hub event] link '%s': %s\n", nb_link_peer(l),
            ev == NB_LINK_UP ? "up" : ev == NB_LINK_DOWN ? "down"
            : ev == NB_LINK_GONE ? "gone" : "drain");
  if (ev != NB_LINK_UP || W.mode == AUTH_PLAIN) return;
  const char *who = nb_link_peer(l);
  const char *g0 = nb_link_peer_neuron(l, 3);
  /* G is the only peer exposing g0 (scripts never name it). */
  if (W.g && g0 && !strcmp(g0, "g0") && !strcmp(who, "good")) return;
  CHECK(proven_name(who));
}

static int g_on_spike(void *ud, nb_link_t *l, const nb_spike_t *s,
                      const void *payload, size_t len) {
  CHECK(s->target == 3 || s->target == 4);
  return 0;
}

static void g_on_event(void *ud, nb_link_t *l, nb_link_event_t ev) {
  if (ev == NB_LINK_UP) CHECK(!strcmp(nb_link_peer(l), "hub"));
}

static void quiet_log(void *ud, nb_link_log_level_t level, const char *msg) {
  CHECK(msg && msg[0]);
  if (verbose)
    fprintf(stderr, "[%s %llu ms] %s\n", (const char *)ud,
            (unsigned long long)(clock_off_ns / 1000000u), msg);
}

static void set_done(void *ud) { *(int *)ud = 1; }

/* ---- nodes ---- */

/* Fills o with what both nodes share: cortex name (also the log's tag),
 * callbacks, the largest payload and the short timeouts. */
static void node_opts(nb_link_node_opts_t *o, const char *cortex,
                      nb_link_spike_fn on_spike, nb_link_event_fn on_event) {
  memset(o, 0, sizeof *o);
  o->cortex = cortex;
  o->max_payload = MAX_PAYLOAD;
  o->on_spike = on_spike;
  o->on_event = on_event;
  o->log = quiet_log;
  o->log_ud = (void *)cortex;
  o->hello_timeout_ms = 30;
  o->limits.keepalive_ms = 15;
  o->limits.idle_timeout_ms = 60;
}

/* Starts node A (listening) as W says; returns 0 or -1. */
static int a_start(void) {
  static nb_link_allow_t allow[2];
  allow[0] = (nb_link_allow_t){"good", SEC_GOOD, sizeof SEC_GOOD - 1};
  allow[1] = (nb_link_allow_t){"s1", SEC_S1, sizeof SEC_S1 - 1};
  nb_link_node_opts_t o;
  node_opts(&o, "hub", a_on_spike, a_on_event);
  if (W.batch) o.on_spikes = a_on_spikes;
  o.accept = nb_link_opts_default();
  o.accept.policy = W.drop ? NB_LINK_DROP : NB_LINK_RESEND;
  o.accept.queue_spikes = W.queue_a;
  o.accept.queue_bytes = 8192;
  o.limits.max_pending = 3;
  o.limits.pending_per_addr = 2;
  o.limits.max_links = MAX_LINKS;
  o.limits.links_per_addr = 3;
  o.limits.frame_timeout_ms = 40;
  o.limits.rx_bytes = 6000;
  if (W.mode == AUTH_CLUSTER || W.mode == AUTH_ENCRYPT) {
    o.secret = CLUSTER;
    o.secret_len = sizeof CLUSTER - 1;
  } else if (W.mode == AUTH_ALLOW) {
    o.allow = allow;
    o.nallow = 2;
  }
  o.encrypt = W.mode == AUTH_ENCRYPT;
  CHECK(nb_link_node_new(&W.a, &loop, &o) == 0);
  CHECK(nb_link_node_expose(W.a, "n0", 0) == 0);
  CHECK(nb_link_node_expose(W.a, "n1", 1) == 0);
  CHECK(nb_link_node_expose(W.a, "n7", 7) == 0);
  W.a_done = 0;
  if (nb_link_node_listen(W.a, "tcp://127.0.0.1:0") != 0) return -1;
  W.port = nb_link_node_port(W.a);
  return 0;
}

/* Starts node G dialling A with the right secret. */
static void g_start(void) {
  nb_link_node_opts_t o;
  node_opts(&o, "good", g_on_spike, g_on_event);
  CHECK(nb_link_node_new(&W.g, &loop, &o) == 0);
  CHECK(nb_link_node_expose(W.g, "g0", 3) == 0);
  CHECK(nb_link_node_expose(W.g, "g1", 4) == 0);
  W.g_done = 0;
  W.g_inc = nb_link_node_incarnation(W.g);
  nb_link_opts_t lo = nb_link_opts_default();
  lo.queue_spikes = QUEUE_G;
  lo.backoff_min_ms = 2;
  lo.backoff_max_ms = 16;
  if (W.mode == AUTH_ALLOW) {
    lo.secret = SEC_GOOD;
    lo.secret_len = sizeof SEC_GOOD - 1;
  } else if (W.mode != AUTH_PLAIN) {
    lo.secret = CLUSTER;
    lo.secret_len = sizeof CLUSTER - 1;
  }
  lo.encrypt = W.mode != AUTH_PLAIN && (W.mode == AUTH_ENCRYPT || W.g_encrypt);
  char url[64];
  snprintf(url, sizeof url, "tcp://127.0.0.1:%d", W.port);
  CHECK(nb_link_connect(W.g, url, &lo, &W.g_link) == 0);
}

/* Closes G and runs the loop until it freed itself. */
static void g_stop(void) {
  if (!W.g) return;
  nb_link_node_close(W.g, set_done, &W.g_done);
  for (int i = 0; i < 64 && !W.g_done; i++) turn(1);
  CHECK(W.g_done);
  W.g = NULL;
  W.g_link = NULL;
  W.g_inc = 0;
}

/* Checks every link's counters: sent == acked + lost + queued + in_doubt,
 * and the queue within its size. */
static void check_links(nb_link_node_t *n, uint32_t queue) {
  if (!n) return;
  nb_link_t *l;
  for (size_t i = 0; (l = nb_link_at(n, i)); i++) {
    nb_link_stats_t st;
    nb_link_stats(l, &st);
    CHECK(st.sent == st.acked + st.lost + st.queued + st.in_doubt);
    CHECK(st.queued <= queue);
    size_t room = nb_link_room(l);
    CHECK(room == 0 || room == queue - st.queued);
    CHECK(!nb_link_is_paused(l) || nb_link_is_up(l));
  }
}

/* ---- scripts ---- */

/* Connects script k to A (a plain non-blocking socket). */
static void s_open(script_t *s) {
  if (s->fd >= 0) return;
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return;
  struct sockaddr_in sa;
  memset(&sa, 0, sizeof sa);
  sa.sin_family = AF_INET;
  sa.sin_port = htons((uint16_t)W.port);
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
    close(fd);
    return;
  }
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
  s->fd = fd;
  s->eof = 0;
  nb_link_auth_free(s->auth);
  s->auth = NULL;
  s->m3_len = 0;
}

/* Closes script s's socket: how = 0 FIN, 1 RST, 2 half close (FIN, the
 * socket kept for reading). */
static void s_close(script_t *s, int how) {
  if (s->fd < 0) return;
  if (how == 2) {
    shutdown(s->fd, SHUT_WR);
    return;
  }
  if (how == 1) {
    struct linger lg = {1, 0};
    setsockopt(s->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
  }
  close(s->fd);
  s->fd = -1;
  nb_link_auth_free(s->auth);
  s->auth = NULL;
  s->m3_len = 0;
}

/* Reads what A wrote to script s: its authentication answer becomes the
 * message 3 to send; the rest is dropped. */
static void s_pump(script_t *s) {
  uint8_t buf[8192];
  while (s->fd >= 0 && !s->eof) {
    ssize_t n = recv(s->fd, buf, sizeof buf, MSG_DONTWAIT);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK &&
                   errno != EINTR)) {
      s->eof = 1;
      break;
    }
    if (n < 0) break;
    if (s->auth && !nb_link_auth_established(s->auth)) {
      nb_link_auth_io_t io;
      if (nb_link_auth_input(s->auth, buf, (size_t)n, &io) == 0 &&
          io.out_len && io.out_len <= sizeof s->m3) {
        memcpy(s->m3, io.out, io.out_len);
        s->m3_len = io.out_len;
      }
    }
  }
}

static void pump_all(void) {
  for (int k = 0; k < NSCRIPT; k++) s_pump(&W.s[k]);
}

/* Sends n bytes at p on script s, sealed into records when seal is set
 * and its stream is encrypted; what the socket does not take is lost. */
static void s_send(script_t *s, const uint8_t *p, size_t n, int seal) {
  if (s->fd < 0 || !n) return;
  static uint8_t sealed[16384];
  if (seal && s->auth && nb_link_auth_encrypted(s->auth) &&
      nb_link_auth_sealed_size(n) <= sizeof sealed) {
    struct iovec v = {(void *)p, n};
    int64_t m = nb_link_auth_seal(s->auth, &v, 1, sealed);
    CHECK(m > 0);
    p = sealed;
    n = (size_t)m;
  }
  ssize_t rc = send(s->fd, p, n, MSG_DONTWAIT | MSG_NOSIGNAL);
  (void)rc;
}

/* Changes byte at (the next input byte) of buf by xor (the one after) when
 * mutate is set; returns nothing. */
static void maybe_mutate(uint8_t *buf, size_t len, int mutate) {
  if (!mutate || !len) return;
  size_t at = take() % len;
  uint8_t x = take();
  buf[at] ^= x ? x : 0x01;
}

/* Action: message 1 of the authentication, as a caller state makes it
 * (argument: name, key, encryption, and mutate / cut by flag). */
static void act_auth1(script_t *s, int flag) {
  uint8_t a = take();
  if (s->fd < 0) return;
  s->name_i = a & 7;
  s->key_i = (a >> 3) & 3;
  nb_link_auth_free(s->auth);
  s->auth = NULL;
  s->m3_len = 0;
  nb_link_key_t key;
  CHECK(nb_link_key_derive(&key, keys[s->key_i], strlen(keys[s->key_i])) == 0);
  CHECK(nb_link_auth_caller(&s->auth, names[s->name_i], &key, (a >> 5) & 1) ==
        0);
  nb_link_key_wipe(&key);
  nb_link_auth_io_t io;
  CHECK(nb_link_auth_begin(s->auth, &io) == 0);
  uint8_t m1[400];
  size_t len = io.out_len;
  CHECK(len <= sizeof m1);
  memcpy(m1, io.out, len);
  if (flag == 1) maybe_mutate(m1, len, 1);
  if (flag == 2) len = take() % (len + 1);
  s_send(s, m1, len, 0);
}

/* Action: message 3 (once A's answer came), as made or mutated. */
static void act_auth3(script_t *s, int flag) {
  s_pump(s);
  if (s->fd < 0 || !s->m3_len) return;
  uint8_t m3[64];
  size_t len = s->m3_len;
  memcpy(m3, s->m3, len);
  maybe_mutate(m3, len, flag == 1);
  if (flag == 2) len = take() % (len + 1);
  /* Proven when what goes out is the proof itself: a mutation can leave
   * it whole (a flip by 0 once the input ran out). */
  if (len == s->m3_len && !memcmp(m3, s->m3, len) &&
      key_right(s->name_i, s->key_i))
    W.proven |= 1u << s->name_i;
  s_send(s, m3, len, 0);
  s->m3_len = 0;
}

/* Action: a HELLO (argument bytes: name and incarnations, the count of
 * frames it claims, which extra names; mutated by flag). */
static void act_hello(script_t *s, int k, int flag) {
  uint8_t a = take(), r = take(), x = take();
  if (s->fd < 0) return;
  static char marker[NSCRIPT][8];
  snprintf(marker[k], sizeof marker[k], "x%d", k);
  nb_link_name_t list[5];
  uint32_t count = 0;
  list[count++] = (nb_link_name_t){marker[k], (nb_id_t)(10 + k)};
  if (x & 1) list[count++] = (nb_link_name_t){"x0", 0};
  if (x & 2) list[count++] = (nb_link_name_t){"x1", 1};
  if (x & 4) list[count++] = (nb_link_name_t){"edge", NB_LINK_CTRL_ID - 1};
  nb_link_hello_t h;
  memset(&h, 0, sizeof h);
  switch ((a >> 3) & 3) {
    case 0: h.incarnation = s->inc; break;
    case 1: h.incarnation = s->inc = ++W.next_inc; break;
    case 2: h.incarnation = nb_link_node_incarnation(W.a); break;
    default: h.incarnation = W.g_inc ? W.g_inc : s->inc;
  }
  switch ((a >> 5) & 3) {
    case 0: h.peer_incarnation = 0; break;
    case 3: h.peer_incarnation = 0x1234; break;
    default: h.peer_incarnation = nb_link_node_incarnation(W.a);
  }
  h.recv_seq = (r & 0x7f) ? (uint64_t)(r & 0x7f) - 1 : UINT64_MAX;
  h.max_payload = (a >> 7) ? 100 : MAX_PAYLOAD;
  snprintf(h.cortex, sizeof h.cortex, "%s", names[a & 7]);
  h.count = count;
  h.names = list;
  if (x & 8) {
    h.flags = NB_LINK_F_ARENA;
    h.arena.dev = 1;
    h.arena.ino = 2;
    h.arena.capacity = 1 << 20;
    snprintf(h.arena.host, sizeof h.arena.host, "fuzz-host");
  }
  uint8_t buf[2048];
  int len = nb_link_hello_encode(&h, buf, sizeof buf);
  CHECK(len > 0);
  maybe_mutate(buf, (size_t)len, flag == 1);
  if (flag == 2) len = take() % (len + 1);
  s_send(s, buf, (size_t)len, 1);
}

static const nb_id_t spike_targets[8] = {0, 1, 7, 2, 3, NB_LINK_CTRL_ID,
                                         0xFFFF, 7};
static const uint32_t spike_lens[8] = {0, 5, 46, 47, 300, MAX_PAYLOAD,
                                       MAX_PAYLOAD + 1, 4000};

/* Action: one spike frame (argument: target, length, kind; cut by flag:
 * only its first bytes go). */
static void act_spike(script_t *s, int k, int flag) {
  uint8_t a = take();
  if (s->fd < 0) return;
  static uint8_t buf[NB_FRAME_SPIKE + 4096];
  static uint8_t payload[4096];
  nb_spike_t sp;
  nb_spike_init(&sp, spike_targets[a & 7], (nb_kind_t)((a >> 6) % 3), 0);
  sp.source = (nb_id_t)(10 + k);
  uint32_t len = spike_lens[(a >> 3) & 7];
  memset(payload, 0x5a ^ a, len);
  size_t n;
  if (len <= NB_PAYLOAD_MAX) {
    nb_spike_set_payload(&sp, payload, len);
    nb_frame_encode(&sp, buf);
    n = NB_FRAME_SPIKE;
  } else {
    nb_arena_ref_t ref = {0, len, 0, 0, 0};
    nb_spike_set_ref(&sp, &ref);
    nb_frame_encode_head(&sp, len, buf);
    memcpy(buf + NB_FRAME_SPIKE, payload, len);
    n = NB_FRAME_SPIKE + len;
  }
  if (flag == 2) n = ((size_t)take() << 4) % (n + 1);
  maybe_mutate(buf, n, flag == 1);
  s_send(s, buf, n, 1);
}

/* Action: an ack of any count (two argument bytes). */
static void act_ack(script_t *s) {
  uint64_t seq = take();
  seq |= (uint64_t)take() << 8;
  if (seq == 0xffff) seq = UINT64_MAX;
  uint8_t buf[NB_FRAME_SPIKE];
  nb_link_ack_encode(seq, buf);
  s_send(s, buf, sizeof buf, 1);
}

/* Action: raw bytes from the input (a length byte, then them). */
static void act_raw(script_t *s, int flag) {
  uint8_t buf[256];
  size_t n = take() % 128;
  for (size_t i = 0; i < n; i++) buf[i] = take();
  s_send(s, buf, n, flag & 1);
}

/* Returns a spike with len payload bytes for a node to send (payload in
 * buf when it is a ref). */
static void out_spike(nb_spike_t *sp, uint8_t sel, uint8_t *buf,
                      size_t *len) {
  nb_spike_init(sp, 0, NB_EXCITATORY, 0);
  sp->source = 1;
  size_t n = spike_lens[sel & 7];
  memset(buf, 0xc3, n);
  if (n <= NB_PAYLOAD_MAX) {
    nb_spike_set_payload(sp, buf, n);
    *len = 0;
  } else {
    nb_arena_ref_t ref = {0, (uint32_t)n, 0, 0, 0};
    nb_spike_set_ref(sp, &ref);
    *len = n;
  }
}

/* Action: G sends 1..4 spikes to A's names (or one A lacks), or with
 * flag 3 a burst past its queue. */
static void act_g_send(int k, int flag) {
  static const char *const to[4] = {"n0", "n1", "n7", "nX"};
  uint8_t a = take();
  if (!W.g_link) return;
  static uint8_t buf[4096];
  int n = flag == 3 ? QUEUE_G + 4 : k + 1;
  for (int i = 0; i < n; i++) {
    nb_spike_t sp;
    size_t len;
    out_spike(&sp, (uint8_t)(a >> 2), buf, &len);
    nb_link_send_name(W.g_link, to[(a + i) & 3], &sp, len ? buf : NULL, len);
  }
}

/* Action: A sends a spike on one of its links to a name its peer may
 * expose (with flag 1: to an id of the peer's, as a reply does). */
static void act_a_send(int flag) {
  static const char *const to[8] = {"g0", "g1", "x0", "x1",
                                    "x2", "x3", "edge", "zz"};
  static const nb_id_t ids[8] = {3, 4, 0, 1, 10, 11, 12, NB_LINK_CTRL_ID - 1};
  uint8_t a = take(), b = take();
  nb_link_t *l = nb_link_at(W.a, b & 7);
  if (!l) return;
  static uint8_t buf[4096];
  nb_spike_t sp;
  size_t len;
  out_spike(&sp, b >> 3, buf, &len);
  if (flag == 1)
    nb_link_send_id(l, ids[a & 7], &sp, len ? buf : NULL, len);
  else
    nb_link_send_name(l, to[a & 7], &sp, len ? buf : NULL, len);
}

/* Runs one action from the input. */
static void act(void) {
  uint8_t b = take();
  int op = b & 15, k = (b >> 4) & 3, flag = b >> 6;
  script_t *s = &W.s[k];
  switch (op) {
    case 0: s_open(s); break;
    case 1: act_auth1(s, flag); break;
    case 2: act_auth3(s, flag); break;
    case 3: act_hello(s, k, flag); break;
    case 4: act_spike(s, k, flag); break;
    case 5: act_ack(s); break;
    case 6: act_raw(s, flag); break;
    case 7: s_close(s, flag % 3); break;
    case 8: advance((uint32_t)take() * 2); break;
    case 9: act_g_send(k, flag); break;
    case 10: act_a_send(flag); break;
    case 11: {
      uint8_t a = take();
      nb_link_t *l = (a & 1) ? W.g_link : nb_link_at(W.a, (a >> 1) & 7);
      if (l) nb_link_disconnect(l);
      break;
    }
    case 12:
      if (W.g) g_stop();
      else g_start();
      break;
    case 13: {
      W.spike_mode = take() & 3;
      nb_link_t *l;
      for (size_t i = 0; (l = nb_link_at(W.a, i)); i++) nb_link_resume(l);
      break;
    }
    case 14: nb_link_expect(W.a, names[take() & 7], NULL, NULL); break;
    default: break; /* a turn of the loop only */
  }
  turn(2);
  pump_all();
  check_links(W.a, W.queue_a);
  check_links(W.g, QUEUE_G);
}

/* Counts the links of A (those for callers and expected ones). */
static size_t a_links(void) {
  size_t n = 0;
  while (nb_link_at(W.a, n)) n++;
  return n;
}

/* Ends the input: the scripts close, the clock runs past every timeout
 * and redial, then the baseline is checked and both nodes are closed. */
static void settle(void) {
  for (int k = 0; k < NSCRIPT; k++) s_close(&W.s[k], 0);
  W.settling = 1;
  nb_link_t *l;
  for (size_t i = 0; (l = nb_link_at(W.a, i)); i++) nb_link_resume(l);
  advance(SETTLE_MS);
  check_links(W.a, W.queue_a);
  check_links(W.g, QUEUE_G);
  nb_link_t *ga = nb_link_find(W.a, "good");
  if (W.g && (ga || a_links() < MAX_LINKS)) {
    /* G comes back whatever the scripts did, and what it sent arrives. */
    CHECK(nb_link_is_up(W.g_link));
    nb_link_stats_t st;
    nb_link_stats(W.g_link, &st);
    CHECK(st.queued == 0 && st.in_doubt == 0);
    CHECK(nb__link_node_conns(W.a) == 1);
  } else if (!W.g) {
    CHECK(nb__link_node_conns(W.a) == 0);
  }
  g_stop();
  nb_link_node_close(W.a, set_done, &W.a_done);
  for (int i = 0; i < 64 && !W.a_done; i++) turn(1);
  CHECK(W.a_done);
  W.a = NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!loop_ready) {
    CHECK(uv_loop_init(&loop) == 0);
    /* A write to a connection the peer reset must fail, not kill (as the
     * runtime's main has it). */
    signal(SIGPIPE, SIG_IGN);
    memset(long_name, 'L', NB_LINK_NAME_MAX);
    verbose = getenv("NB_FUZZ_LINK_LOG") != NULL;
    loop_ready = 1;
  }
  if (size < 1) return 0;
  in_p = data;
  in_left = size;
  memset(&W, 0, sizeof W);
  uint8_t cfg = take();
  W.mode = cfg & 3;
  W.drop = (cfg >> 2) & 1;
  W.spike_mode = (cfg >> 4) & 3;
  W.g_encrypt = (cfg >> 6) & 1;
  W.queue_a = (cfg >> 7) ? 3 : QUEUE_A;
  W.batch = size & 1; /* every bit of cfg has a meaning already */
  W.next_inc = 0x5c00000000000000ull;
  for (int k = 0; k < NSCRIPT; k++) {
    W.s[k].fd = -1;
    W.s[k].inc = ++W.next_inc;
  }
  if (a_start() != 0) {
    nb_link_node_close(W.a, set_done, &W.a_done);
    for (int i = 0; i < 64 && !W.a_done; i++) turn(1);
    return 0;
  }
  if ((cfg >> 3) & 1) g_start();
  turn(2);
  for (int i = 0; i < MAX_ACTIONS && in_left; i++) act();
  settle();
  return 0;
}
