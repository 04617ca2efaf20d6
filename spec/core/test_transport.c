/* Transport: the frame codec (round trips, every split point, one byte at a
 * time, every malformed input rejected and sticky, large payloads) and the
 * LocalTransport queue (order, full, close, timeout, two threads). */
#include <pthread.h>
#include <sched.h>
#include <time.h>

#include "neuronbus.h"
#include "nbtest.h"

/* Returns a plain spike with an inline payload built from seed. */
static nb_spike_t plain_spike(unsigned seed, size_t len) {
  nb_spike_t s;
  nb_spike_init(&s, (nb_id_t)(seed % 7), (nb_kind_t)(seed % 3),
                (uint8_t)seed);
  s.timestamp_ns = 1000000000ull * seed + 17;
  s.sequence = seed;
  s.source = (nb_id_t)(seed + 100);
  uint8_t buf[46];
  for (size_t i = 0; i < len; i++) buf[i] = (uint8_t)(seed + i * 3);
  nb_spike_set_payload(&s, buf, len);
  return s;
}

/* Returns a spike holding a ref of len bytes (not backed by any arena). */
static nb_spike_t ref_spike(unsigned seed, uint32_t len) {
  nb_spike_t s = plain_spike(seed, 0);
  nb_arena_ref_t r = {.offset = 64u * seed, .len = len, .ref_slot = seed,
                      .epoch = 3};
  nb_spike_set_ref(&s, &r);
  return s;
}

/* A growable byte stream and the frames written to it. */
typedef struct stream_s {
  uint8_t *buf;
  size_t len, cap;
  int nframes;
  nb_spike_t spikes[16];
  size_t plen[16];
} stream_t;

/* Appends n bytes to st; returns the position they start at. */
static size_t put(stream_t *st, const void *p, size_t n) {
  if (st->len + n > st->cap) {
    st->cap = (st->len + n) * 2;
    st->buf = realloc(st->buf, st->cap);
  }
  memcpy(st->buf + st->len, p, n);
  st->len += n;
  return st->len - n;
}

/* Appends the frame of s (with its payload when s holds a ref); returns
 * nothing. */
static void put_frame(stream_t *st, const nb_spike_t *s, const uint8_t *pl) {
  uint8_t head[NB_FRAME_SPIKE];
  nb_arena_ref_t r;
  size_t plen = nb_spike_get_ref(s, &r) == 0 ? r.len : 0;
  int rc = plen || nb_spike_is_ref(s) ? nb_frame_encode_head(s, plen, head)
                                      : nb_frame_encode(s, head);
  NBT_EQ(rc, NB_FRAME_SPIKE);
  put(st, head, sizeof head);
  st->spikes[st->nframes] = *s;
  st->plen[st->nframes++] = plen;
  if (plen) put(st, pl, plen);
}

/* Builds a stream of mixed frames whose payloads are prefixes of one
 * pattern; returns nothing. */
static void mixed_stream(stream_t *st) {
  memset(st, 0, sizeof *st);
  static uint8_t pl[3000];
  for (size_t i = 0; i < sizeof pl; i++) pl[i] = (uint8_t)(i * 7 + i / 256);
  nb_spike_t s = plain_spike(1, 5);
  put_frame(st, &s, NULL);
  s = ref_spike(2, 100);
  put_frame(st, &s, pl);
  s = plain_spike(3, 46);
  put_frame(st, &s, NULL);
  s = ref_spike(4, 0); /* a ref to an empty payload: L == 64 */
  put_frame(st, &s, NULL);
  s = ref_spike(5, 3000);
  put_frame(st, &s, pl + 0);
  s = plain_spike(6, 0);
  put_frame(st, &s, NULL);
}

/* Feeds data to d in pieces, collecting frames and checking each against
 * st; returns the number of frames that matched, or -1 on an error. */
static int feed_and_check(nb_frame_decoder_t *d, const stream_t *st,
                          const uint8_t *data, size_t len, int *next) {
  size_t pos = 0;
  static uint8_t pl[3000];
  for (size_t i = 0; i < sizeof pl; i++) pl[i] = (uint8_t)(i * 7 + i / 256);
  while (pos < len) {
    size_t used = 0;
    nb_spike_t out;
    const uint8_t *p = (const uint8_t *)1;
    size_t plen = 12345;
    int rc = nb_frame_decode(d, data + pos, len - pos, &used, &out, &p, &plen);
    if (rc < 0) return -1;
    pos += used;
    if (rc == 0) {
      if (pos != len) return -1; /* it must eat everything offered */
      break;
    }
    int k = (*next)++;
    if (k >= st->nframes) return -1;
    if (memcmp(&out, &st->spikes[k], sizeof out) != 0) return -1;
    if (plen != st->plen[k]) return -1;
    if (plen == 0 && p != NULL) return -1;
    if (plen && memcmp(p, pl, plen) != 0) return -1;
  }
  return 0;
}

static void encode_writes_le_length_and_spike(void) {
  nb_spike_t s = plain_spike(9, 11);
  uint8_t f[NB_FRAME_SPIKE];
  NBT_EQ(nb_frame_encode(&s, f), 68);
  NBT_EQ(f[0], 64);
  NBT_EQ(f[1] | f[2] | f[3], 0);
  NBT_CHECK(memcmp(f + 4, &s, 64) == 0);
  nb_spike_t r = ref_spike(1, 0x010203);
  NBT_EQ(nb_frame_encode(&r, f), NB_EINVAL);
  NBT_EQ(nb_frame_encode_head(&r, 0x010203, f), 68);
  uint32_t l = 64 + 0x010203;
  NBT_EQ(f[0], l & 0xFF); /* little-endian whatever the host */
  NBT_EQ(f[1], (l >> 8) & 0xFF);
  NBT_EQ(f[2], (l >> 16) & 0xFF);
  NBT_EQ(f[3], l >> 24);
  NBT_CHECK(memcmp(f + 4, &r, 64) == 0);
  /* The head refuses lengths the decoder would reject. */
  NBT_EQ(nb_frame_encode_head(&r, 5, f), NB_EINVAL);
  NBT_EQ(nb_frame_encode_head(&s, 1, f), NB_EINVAL);
  NBT_EQ(nb_frame_encode_head(&s, 0, f), 68);
  NBT_EQ(f[0], 64);
}

static void frames_round_trip_one_at_a_time(void) {
  stream_t st;
  mixed_stream(&st);
  nb_frame_decoder_t d;
  nb_frame_decoder_init(&d, NB_FRAME_PAYLOAD_DEFAULT_MAX);
  /* The whole stream at once: each call stops after one frame. */
  size_t pos = 0;
  int frames = 0;
  for (;;) {
    size_t used;
    nb_spike_t out;
    const uint8_t *p;
    size_t plen;
    int rc = nb_frame_decode(&d, st.buf + pos, st.len - pos, &used, &out, &p,
                             &plen);
    pos += used;
    if (rc != 1) {
      NBT_EQ(rc, 0);
      break;
    }
    NBT_EQ(used, NB_FRAME_SPIKE + st.plen[frames]);
    NBT_CHECK(memcmp(&out, &st.spikes[frames], 64) == 0);
    frames++;
  }
  NBT_EQ(frames, st.nframes);
  NBT_EQ(pos, st.len);
  NBT_EQ(d.failed, 0);
  nb_frame_decoder_free(&d);
  free(st.buf);
}

static void every_split_point_decodes_the_same(void) {
  stream_t st;
  mixed_stream(&st);
  int bad = 0;
  for (size_t cut = 0; cut <= st.len; cut++) {
    nb_frame_decoder_t d;
    nb_frame_decoder_init(&d, 4096);
    int next = 0;
    if (feed_and_check(&d, &st, st.buf, cut, &next) != 0 ||
        feed_and_check(&d, &st, st.buf + cut, st.len - cut, &next) != 0 ||
        next != st.nframes)
      bad++;
    nb_frame_decoder_free(&d);
  }
  NBT_EQ(bad, 0);
  free(st.buf);
}

static void byte_at_a_time_decodes_the_same(void) {
  stream_t st;
  mixed_stream(&st);
  nb_frame_decoder_t d;
  nb_frame_decoder_init(&d, 4096);
  int next = 0, bad = 0, empty_bad = 0;
  for (size_t i = 0; i < st.len; i++) {
    /* Empty input anywhere, even mid-payload, is a no-op. */
    size_t used0 = 7;
    nb_spike_t o0;
    if (nb_frame_decode(&d, NULL, 0, &used0, &o0, NULL, NULL) != 0 || used0)
      empty_bad++;
    if (feed_and_check(&d, &st, st.buf + i, 1, &next) != 0) bad++;
  }
  NBT_EQ(bad, 0);
  NBT_EQ(empty_bad, 0);
  NBT_EQ(next, st.nframes);
  /* Empty input is fine and changes nothing. */
  size_t used = 99;
  nb_spike_t out;
  NBT_EQ(nb_frame_decode(&d, NULL, 0, &used, &out, NULL, NULL), 0);
  NBT_EQ(used, 0);
  nb_frame_decoder_free(&d);
  free(st.buf);
}

/* Feeds bad (then a good frame) to a fresh decoder; returns 1 when the bad
 * input yields NB_EFRAME and the good frame after it is refused too. */
static int rejected_and_sticky(const uint8_t *bad, size_t n, uint32_t max) {
  nb_frame_decoder_t d;
  nb_frame_decoder_init(&d, max);
  size_t used, pos = 0;
  nb_spike_t out;
  const uint8_t *p;
  size_t plen;
  int rc = 0;
  /* Byte at a time, to be sure the error needs no more than it has. */
  while (pos < n && rc == 0) {
    rc = nb_frame_decode(&d, bad + pos, 1, &used, &out, &p, &plen);
    pos += used;
  }
  int ok = rc == NB_EFRAME && d.failed;
  uint8_t good[NB_FRAME_SPIKE];
  nb_spike_t s = plain_spike(1, 1);
  nb_frame_encode(&s, good);
  ok = ok && nb_frame_decode(&d, good, sizeof good, &used, &out, &p, &plen) ==
                 NB_EFRAME;
  ok = ok && used == 0;
  nb_frame_decoder_free(&d);
  return ok;
}

/* Writes a frame head with length l and spike s into f; returns f. */
static uint8_t *head_with(uint8_t *f, uint32_t l, const nb_spike_t *s) {
  f[0] = (uint8_t)l;
  f[1] = (uint8_t)(l >> 8);
  f[2] = (uint8_t)(l >> 16);
  f[3] = (uint8_t)(l >> 24);
  memcpy(f + 4, s, 64);
  return f;
}

static void malformed_frames_are_rejected_and_sticky(void) {
  uint8_t f[NB_FRAME_SPIKE + 200];
  memset(f, 0, sizeof f);
  nb_spike_t s = plain_spike(2, 3);
  /* Garbage and short lengths fail on the length alone. */
  uint8_t garbage[8] = {'G', 'E', 'T', ' ', '/', ' ', 'H', 'T'};
  NBT_CHECK(rejected_and_sticky(garbage, 4, 4096));
  NBT_CHECK(rejected_and_sticky(head_with(f, 0, &s), 4, 4096));
  NBT_CHECK(rejected_and_sticky(head_with(f, 63, &s), 4, 4096));
  /* A plain spike with extra bytes. */
  NBT_CHECK(rejected_and_sticky(head_with(f, 65, &s), 68, 4096));
  /* Oversized: more than max_payload, and the largest length there is. */
  nb_spike_t r = ref_spike(3, 4097);
  NBT_CHECK(rejected_and_sticky(head_with(f, 64 + 4097, &r), 4, 4096));
  NBT_CHECK(rejected_and_sticky(head_with(f, UINT32_MAX, &r), 4, 4096));
  r = ref_spike(3, 10);
  NBT_CHECK(rejected_and_sticky(head_with(f, 74, &r), 4, 0));
  /* Mismatched: the ref says 100 bytes, the length 50 or 150. */
  r = ref_spike(3, 100);
  NBT_CHECK(rejected_and_sticky(head_with(f, 64 + 50, &r), 68, 4096));
  NBT_CHECK(rejected_and_sticky(head_with(f, 64 + 150, &r), 68, 4096));
  NBT_CHECK(rejected_and_sticky(head_with(f, 64, &r), 68, 4096));
  /* Bad meta: kind 3, inline length 47, a ref length without its marker. */
  nb_spike_t m = s;
  m.meta = (uint8_t)((m.meta & ~3u) | 3u);
  NBT_CHECK(rejected_and_sticky(head_with(f, 64, &m), 68, 4096));
  m = s;
  m.meta = (uint8_t)(47u << 2);
  NBT_CHECK(rejected_and_sticky(head_with(f, 64, &m), 68, 4096));
  m = ref_spike(3, 0);
  m.payload[0] = 0x00;
  NBT_CHECK(rejected_and_sticky(head_with(f, 64, &m), 68, 4096));
  /* Sanity: the same helper accepts nothing bad in a good frame. */
  NBT_CHECK(!rejected_and_sticky(head_with(f, 64, &s), 68, 4096));
}

static void max_payload_zero_takes_plain_frames_only(void) {
  nb_frame_decoder_t d;
  nb_frame_decoder_init(&d, 0);
  uint8_t f[NB_FRAME_SPIKE];
  nb_spike_t s = ref_spike(1, 0), out;
  size_t used, plen;
  const uint8_t *p;
  NBT_EQ(nb_frame_encode_head(&s, 0, f), 68);
  NBT_EQ(nb_frame_decode(&d, f, sizeof f, &used, &out, &p, &plen), 1);
  NBT_EQ(plen, 0);
  NBT_CHECK(p == NULL);
  NBT_CHECK(d.payload == NULL); /* nothing was allocated */
  nb_frame_decoder_free(&d);
}

/* A max_payload near 4 GiB is capped so the 32-bit byte count of a frame
 * (header + spike + payload) can never wrap and lose the stream's place. */
static void huge_max_payload_is_capped(void) {
  nb_frame_decoder_t d;
  nb_frame_decoder_init(&d, UINT32_MAX);
  NBT_EQ(d.max_payload, UINT32_MAX - NB_FRAME_SPIKE);
  const uint8_t head[4] = {0xff, 0xff, 0xff, 0xff}; /* L = 4 GiB - 1 */
  nb_spike_t out;
  size_t used, plen;
  const uint8_t *p;
  NBT_EQ(nb_frame_decode(&d, head, sizeof head, &used, &out, &p, &plen),
         NB_EFRAME);
  nb_frame_decoder_free(&d);
}

static void large_payload_round_trips_through_arenas(void) {
  size_t big = NB_FRAME_PAYLOAD_DEFAULT_MAX;
  uint8_t *data = malloc(big);
  for (size_t i = 0; i < big; i++) data[i] = (uint8_t)(i ^ (i >> 9));
  /* Sender: the payload lives in its arena, the frame carries it. */
  nb_arena_t *tx, *rx;
  NBT_EQ(nb_arena_new(&tx, big + 64), 0);
  NBT_EQ(nb_arena_new(&rx, big + 64), 0);
  nb_spike_t s;
  nb_spike_init(&s, 4, NB_MODULATORY, 77);
  NBT_EQ(nb_arena_put_payload(tx, &s, data, big), 0);
  const void *src;
  size_t n;
  NBT_EQ(nb_arena_get_payload(tx, &s, &src, &n), 0);
  uint8_t *wire = malloc(NB_FRAME_SPIKE + n);
  NBT_EQ(nb_frame_encode_head(&s, n, wire), 68);
  memcpy(wire + NB_FRAME_SPIKE, src, n);
  /* Receiver: decode in uneven chunks, then rehome into its own arena. */
  nb_frame_decoder_t d;
  nb_frame_decoder_init(&d, NB_FRAME_PAYLOAD_DEFAULT_MAX);
  size_t pos = 0, chunk = 1;
  int rc = 0;
  nb_spike_t out;
  const uint8_t *p = NULL;
  size_t plen = 0;
  while (pos < NB_FRAME_SPIKE + n && rc == 0) {
    size_t used, left = NB_FRAME_SPIKE + n - pos;
    size_t take = chunk < left ? chunk : left;
    rc = nb_frame_decode(&d, wire + pos, take, &used, &out, &p, &plen);
    pos += used;
    chunk = chunk * 3 + 1;
  }
  NBT_EQ(rc, 1);
  NBT_EQ(pos, NB_FRAME_SPIKE + n);
  NBT_EQ(plen, big);
  NBT_CHECK(p && memcmp(p, data, big) == 0);
  NBT_EQ(nb_spike_kind(&out), NB_MODULATORY);
  NBT_EQ(out.priority, 77);
  NBT_EQ(nb_arena_put_payload(rx, &out, p, plen), 0);
  const void *got;
  NBT_EQ(nb_arena_get_payload(rx, &out, &got, &n), 0);
  NBT_EQ(n, big);
  NBT_CHECK(memcmp(got, data, big) == 0);
  /* The buffer is reused for a following smaller frame. */
  nb_spike_t small = ref_spike(2, 10);
  uint8_t f2[NB_FRAME_SPIKE + 10];
  nb_frame_encode_head(&small, 10, f2);
  memcpy(f2 + NB_FRAME_SPIKE, data, 10);
  size_t used;
  NBT_EQ(nb_frame_decode(&d, f2, sizeof f2, &used, &out, &p, &plen), 1);
  NBT_EQ(plen, 10);
  NBT_CHECK(memcmp(p, data, 10) == 0);
  nb_frame_decoder_free(&d);
  nb_arena_free(tx);
  nb_arena_free(rx);
  free(wire);
  free(data);
}

/* ---- LocalTransport ---- */

/* Returns a spike whose sequence is seq. */
static nb_spike_t seq_spike(uint32_t seq) {
  nb_spike_t s;
  nb_spike_init(&s, 1, NB_EXCITATORY, 0);
  s.sequence = seq;
  return s;
}

static void local_keeps_order_and_reports_full(void) {
  nb_local_transport_t *t;
  NBT_EQ(nb_local_new(&t, 0), NB_EINVAL);
  NBT_EQ(nb_local_new(&t, 4), 0);
  nb_spike_t s, out;
  for (uint32_t i = 0; i < 4; i++) {
    s = seq_spike(i);
    NBT_EQ(nb_local_send(t, &s), 0);
  }
  s = seq_spike(99);
  NBT_EQ(nb_local_send(t, &s), NB_EFULL);
  for (uint32_t i = 0; i < 4; i++) {
    NBT_EQ(nb_local_try_recv(t, &out), 0);
    NBT_EQ(out.sequence, i);
  }
  NBT_EQ(nb_local_try_recv(t, &out), NB_EEMPTY);
  /* Wrap around the ring many times. */
  uint32_t next_in = 0, next_out = 0;
  int bad = 0;
  for (int round = 0; round < 50; round++) {
    for (int k = 0; k < 3; k++) {
      s = seq_spike(next_in++);
      if (nb_local_send(t, &s) != 0) bad++;
    }
    for (int k = 0; k < 3; k++)
      if (nb_local_recv(t, &out, 0) != 0 || out.sequence != next_out++) bad++;
  }
  NBT_EQ(bad, 0);
  nb_local_free(t);
}

static void local_close_drains_then_reports_closed(void) {
  nb_local_transport_t *t;
  NBT_EQ(nb_local_new(&t, 8), 0);
  nb_spike_t s = seq_spike(1), out;
  NBT_EQ(nb_local_send(t, &s), 0);
  s = seq_spike(2);
  NBT_EQ(nb_local_send(t, &s), 0);
  nb_local_close(t);
  NBT_EQ(nb_local_send(t, &s), NB_ECLOSED);
  NBT_EQ(nb_local_recv(t, &out, 0), 0);
  NBT_EQ(out.sequence, 1);
  NBT_EQ(nb_local_try_recv(t, &out), 0);
  NBT_EQ(out.sequence, 2);
  NBT_EQ(nb_local_try_recv(t, &out), NB_ECLOSED);
  NBT_EQ(nb_local_recv(t, &out, 0), NB_ECLOSED);
  NBT_EQ(nb_local_recv(t, &out, 1000000), NB_ECLOSED);
  nb_local_close(t); /* twice is harmless */
  nb_local_free(t);
}


static void local_recv_times_out(void) {
  nb_local_transport_t *t;
  NBT_EQ(nb_local_new(&t, 2), 0);
  nb_spike_t out;
  uint64_t t0 = nbt_now_ns();
  NBT_EQ(nb_local_recv(t, &out, 30000000), NB_ETIMEDOUT);
  uint64_t dt = nbt_now_ns() - t0;
  NBT_CHECK(dt >= 30000000);
  NBT_CHECK(dt < 5000000000ull);
  /* A spike already queued is returned at once despite a timeout. */
  nb_spike_t s = seq_spike(5);
  nb_local_send(t, &s);
  NBT_EQ(nb_local_recv(t, &out, 1), 0);
  NBT_EQ(out.sequence, 5);
  NBT_EQ(nb_local_recv(t, &out, 1), NB_ETIMEDOUT);
  nb_local_free(t);
}

/* A blocked receiver's result. */
typedef struct waiter_s {
  nb_local_transport_t *t;
  uint64_t timeout;
  int rc;
  nb_spike_t got;
} waiter_t;

/* Blocks in nb_local_recv and records the result; returns NULL. */
static void *waiter(void *arg) {
  waiter_t *w = arg;
  w->rc = nb_local_recv(w->t, &w->got, w->timeout);
  return NULL;
}

static void local_close_wakes_a_blocked_receiver(void) {
  nb_local_transport_t *t;
  NBT_EQ(nb_local_new(&t, 2), 0);
  waiter_t w[2] = {{.t = t, .timeout = 0, .rc = 1},
                   {.t = t, .timeout = 60000000000ull, .rc = 1}};
  pthread_t th[2];
  for (int i = 0; i < 2; i++) pthread_create(&th[i], NULL, waiter, &w[i]);
  nbt_sleep_ms(50); /* let both block */
  uint64_t t0 = nbt_now_ns();
  nb_local_close(t);
  for (int i = 0; i < 2; i++) pthread_join(th[i], NULL);
  NBT_CHECK(nbt_now_ns() - t0 < 5000000000ull);
  NBT_EQ(w[0].rc, NB_ECLOSED);
  NBT_EQ(w[1].rc, NB_ECLOSED);
  nb_local_free(t);
}

static void local_send_wakes_a_blocked_receiver(void) {
  nb_local_transport_t *t;
  NBT_EQ(nb_local_new(&t, 2), 0);
  waiter_t w = {.t = t, .timeout = 0, .rc = 1};
  pthread_t th;
  pthread_create(&th, NULL, waiter, &w);
  nbt_sleep_ms(30);
  nb_spike_t s = seq_spike(42);
  NBT_EQ(nb_local_send(t, &s), 0);
  pthread_join(th, NULL);
  NBT_EQ(w.rc, 0);
  NBT_EQ(w.got.sequence, 42);
  nb_local_free(t);
}

#define NMSG 50000u

/* Sends NMSG numbered spikes, retrying while full, then closes; returns
 * NULL. */
static void *producer(void *arg) {
  nb_local_transport_t *t = arg;
  for (uint32_t i = 0; i < NMSG; i++) {
    nb_spike_t s = seq_spike(i);
    while (nb_local_send(t, &s) == NB_EFULL) sched_yield();
  }
  nb_local_close(t);
  return NULL;
}

static void local_two_threads_in_order(void) {
  nb_local_transport_t *t;
  NBT_EQ(nb_local_new(&t, 64), 0);
  pthread_t th;
  pthread_create(&th, NULL, producer, t);
  uint32_t next = 0, bad = 0;
  nb_spike_t out;
  int rc;
  while ((rc = nb_local_recv(t, &out, 0)) == 0)
    if (out.sequence != next++) bad++;
  pthread_join(th, NULL);
  NBT_EQ(rc, NB_ECLOSED);
  NBT_EQ(next, NMSG);
  NBT_EQ(bad, 0);
  nb_local_free(t);
}

static const nbt_test_t tests[] = {
    NBT_TEST(encode_writes_le_length_and_spike),
    NBT_TEST(frames_round_trip_one_at_a_time),
    NBT_TEST(every_split_point_decodes_the_same),
    NBT_TEST(byte_at_a_time_decodes_the_same),
    NBT_TEST(malformed_frames_are_rejected_and_sticky),
    NBT_TEST(max_payload_zero_takes_plain_frames_only),
    NBT_TEST(huge_max_payload_is_capped),
    NBT_TEST(large_payload_round_trips_through_arenas),
    NBT_TEST(local_keeps_order_and_reports_full),
    NBT_TEST(local_close_drains_then_reports_closed),
    NBT_TEST(local_recv_times_out),
    NBT_TEST(local_close_wakes_a_blocked_receiver),
    NBT_TEST(local_send_wakes_a_blocked_receiver),
    NBT_TEST(local_two_threads_in_order),
};

int main(int argc, char **argv) { return NBT_MAIN(argc, argv, tests, NULL); }
