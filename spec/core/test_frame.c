/* The wire frame codec: round trips, every split point, one byte at a time,
 * every malformed input rejected and sticky, large payloads, the limits of
 * max_payload, bare refs between ends sharing an arena, and what a call
 * reports when it stops early. */
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
  nb_arena_ref_t r = {.offset = 64u * seed, .len = len, .segment = seed,
                      .gen = 3};
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

/* Feeds bad (then a good frame) to a fresh decoder, byte at a time, and
 * bad to another one whole; returns 1 when the bad input yields NB_EFRAME
 * both ways and the good frame after it is refused too. */
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
  /* And whole, as one read returns it (a whole 68-byte frame takes the
   * decoder's shortcut, which must not accept what the long way refuses). */
  nb_frame_decoder_t w;
  nb_frame_decoder_init(&w, max);
  rc = nb_frame_decode(&w, bad, n, &used, &out, &p, &plen);
  ok = ok && rc == NB_EFRAME && w.failed;
  nb_frame_decoder_free(&w);
  /* The run decoder leaves it to the long way too. */
  nb_frame_decoder_t r;
  nb_frame_decoder_init(&r, max);
  nb_spike_t run[2];
  ok = ok && nb_frame_decode_run(&r, bad, n, run, 2) == 0;
  nb_frame_decoder_free(&r);
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
  nb_arena_writer_t *wtx, *wrx;
  NBT_EQ(nb_arena_new(&tx, big + 64), 0);
  NBT_EQ(nb_arena_new(&rx, big + 64), 0);
  NBT_EQ(nb_arena_writer_new(&wtx, tx), 0);
  NBT_EQ(nb_arena_writer_new(&wrx, rx), 0);
  nb_spike_t s;
  nb_spike_init(&s, 4, NB_MODULATORY, 77);
  NBT_EQ(nb_arena_put_payload(wtx, &s, data, big), 0);
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
  NBT_EQ(nb_arena_put_payload(wrx, &out, p, plen), 0);
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
  nb_arena_writer_free(wtx);
  nb_arena_writer_free(wrx);
  nb_arena_free(tx);
  nb_arena_free(rx);
  free(wire);
  free(data);
}

/* Decodes the whole of f (n bytes) with d in one call; returns the code
 * and sets *used, *out, *p and *plen. */
static int decode_all(nb_frame_decoder_t *d, const uint8_t *f, size_t n,
                      size_t *used, nb_spike_t *out, const uint8_t **p,
                      size_t *plen) {
  *p = NULL;
  *plen = 0;
  return nb_frame_decode(d, f, n, used, out, p, plen);
}

static void encode_bare_ref_takes_refs_only(void) {
  uint8_t f[NB_FRAME_SPIKE];
  nb_spike_t s = plain_spike(4, 7);
  NBT_EQ(nb_frame_encode_bare_ref(&s, f), NB_EINVAL);
  /* An arena-length marker without the ref's marker byte is no ref. */
  nb_spike_t m = ref_spike(4, 10);
  m.payload[0] = 0;
  NBT_EQ(nb_frame_encode_bare_ref(&m, f), NB_EINVAL);
  nb_spike_t r = ref_spike(4, 5000);
  NBT_EQ(nb_frame_encode_bare_ref(&r, f), 68);
  NBT_EQ(f[0], 64); /* the bytes stay in the shared arena: L == 64 */
  NBT_EQ(f[1] | f[2] | f[3], 0);
  NBT_CHECK(memcmp(f + 4, &r, 64) == 0);
}

static void bare_ref_frames_need_the_agreement(void) {
  uint8_t f[NB_FRAME_SPIKE];
  nb_spike_t r = ref_spike(6, 300), out;
  NBT_EQ(nb_frame_encode_bare_ref(&r, f), 68);
  /* By default a ref frame must carry its bytes. */
  NBT_CHECK(rejected_and_sticky(f, sizeof f, 4096));
  /* Once both ends map the same arena it decodes with no payload. */
  nb_frame_decoder_t d;
  nb_frame_decoder_init(&d, 4096);
  d.bare_refs = 1;
  size_t used, plen;
  const uint8_t *p;
  NBT_EQ(decode_all(&d, f, sizeof f, &used, &out, &p, &plen), 1);
  NBT_EQ(used, 68);
  NBT_EQ(plen, 0);
  NBT_CHECK(p == NULL);
  NBT_CHECK(memcmp(&out, &r, 64) == 0);
  NBT_CHECK(d.payload == NULL); /* nothing to hold, nothing allocated */
  nb_frame_decoder_free(&d);
}

static void bare_refs_still_take_refs_with_their_bytes(void) {
  /* A peer that shares the arena may still send the bytes (a payload
   * from another arena); any other length stays wrong. */
  uint8_t f[NB_FRAME_SPIKE + 300], pl[300];
  for (size_t i = 0; i < sizeof pl; i++) pl[i] = (uint8_t)(i * 13);
  nb_spike_t r = ref_spike(7, 300), out;
  NBT_EQ(nb_frame_encode_head(&r, 300, f), 68);
  memcpy(f + NB_FRAME_SPIKE, pl, sizeof pl);
  nb_frame_decoder_t d;
  nb_frame_decoder_init(&d, 4096);
  d.bare_refs = 1;
  size_t used, plen;
  const uint8_t *p;
  NBT_EQ(decode_all(&d, f, sizeof f, &used, &out, &p, &plen), 1);
  NBT_EQ(used, sizeof f);
  NBT_EQ(plen, 300);
  NBT_CHECK(p && memcmp(p, pl, sizeof pl) == 0);
  /* The ref says 300, the length 64 + 150: refused even so. */
  head_with(f, 64 + 150, &r);
  NBT_EQ(decode_all(&d, f, NB_FRAME_SPIKE, &used, &out, &p, &plen),
         NB_EFRAME);
  NBT_EQ(d.failed, 1);
  nb_frame_decoder_free(&d);
}

static void payload_at_max_taken_one_more_refused(void) {
  enum { MAX = 1000 };
  static uint8_t f[NB_FRAME_SPIKE + MAX], pl[MAX];
  for (size_t i = 0; i < sizeof pl; i++) pl[i] = (uint8_t)(i ^ 0x5a);
  nb_frame_decoder_t d;
  nb_frame_decoder_init(&d, MAX);
  nb_spike_t out;
  size_t used, plen;
  const uint8_t *p;
  /* Growing payloads: the buffer doubles but never past max_payload. */
  static const uint32_t lens[] = {10, 300, 999, MAX, 20};
  for (size_t k = 0; k < sizeof lens / sizeof lens[0]; k++) {
    nb_spike_t r = ref_spike((unsigned)k + 1, lens[k]);
    NBT_EQ(nb_frame_encode_head(&r, lens[k], f), 68);
    memcpy(f + NB_FRAME_SPIKE, pl, lens[k]);
    NBT_EQ(decode_all(&d, f, NB_FRAME_SPIKE + lens[k], &used, &out, &p, &plen),
           1);
    NBT_EQ(plen, lens[k]);
    NBT_CHECK(p && memcmp(p, pl, lens[k]) == 0);
    NBT_CHECK(d.payload_cap >= lens[k]);
    NBT_CHECK(d.payload_cap <= MAX);
  }
  nb_frame_decoder_free(&d);
  nb_spike_t r = ref_spike(9, MAX + 1);
  NBT_EQ(nb_frame_encode_head(&r, MAX + 1, f), 68);
  NBT_CHECK(rejected_and_sticky(f, 4, MAX));
}

static void bad_length_is_judged_before_the_spike(void) {
  /* Given a whole bad frame at once, the decoder stops right after the
   * length field: the bytes after it are never read as a spike. */
  uint8_t f[NB_FRAME_SPIKE];
  nb_spike_t s = plain_spike(3, 2), out;
  head_with(f, 20, &s);
  nb_frame_decoder_t d;
  nb_frame_decoder_init(&d, 4096);
  size_t used = 99, plen;
  const uint8_t *p;
  NBT_EQ(decode_all(&d, f, sizeof f, &used, &out, &p, &plen), NB_EFRAME);
  NBT_EQ(used, NB_FRAME_HEADER);
  nb_frame_decoder_free(&d);
  /* A bad spike is judged with the head: used covers all 68 bytes. */
  nb_spike_t m = s;
  m.meta = (uint8_t)(m.meta | 3u);
  head_with(f, 64, &m);
  nb_frame_decoder_init(&d, 4096);
  NBT_EQ(decode_all(&d, f, sizeof f, &used, &out, &p, &plen), NB_EFRAME);
  NBT_EQ(used, NB_FRAME_SPIKE);
  nb_frame_decoder_free(&d);
}

static void frames_before_a_bad_one_are_delivered(void) {
  stream_t st;
  memset(&st, 0, sizeof st);
  nb_spike_t a = plain_spike(1, 3), b = ref_spike(2, 40);
  uint8_t pl[40];
  memset(pl, 0xab, sizeof pl);
  put_frame(&st, &a, NULL);
  put_frame(&st, &b, pl);
  uint8_t bad[NB_FRAME_SPIKE];
  put(&st, head_with(bad, 65, &a), sizeof bad); /* a plain spike plus one */
  put_frame(&st, &a, NULL);                     /* never reached */
  nb_frame_decoder_t d;
  nb_frame_decoder_init(&d, 4096);
  size_t pos = 0, used, plen;
  nb_spike_t out;
  const uint8_t *p;
  NBT_EQ(decode_all(&d, st.buf, st.len, &used, &out, &p, &plen), 1);
  NBT_CHECK(memcmp(&out, &a, 64) == 0);
  pos += used;
  NBT_EQ(decode_all(&d, st.buf + pos, st.len - pos, &used, &out, &p, &plen),
         1);
  NBT_CHECK(memcmp(&out, &b, 64) == 0);
  NBT_EQ(plen, 40);
  pos += used;
  NBT_EQ(pos, 2 * NB_FRAME_SPIKE + 40);
  /* The bad frame's length is fine (65 >= 64); its spike says no payload. */
  NBT_EQ(decode_all(&d, st.buf + pos, st.len - pos, &used, &out, &p, &plen),
         NB_EFRAME);
  NBT_EQ(used, NB_FRAME_SPIKE);
  pos += used;
  NBT_EQ(decode_all(&d, st.buf + pos, st.len - pos, &used, &out, &p, &plen),
         NB_EFRAME);
  NBT_EQ(used, 0);
  nb_frame_decoder_free(&d);
  free(st.buf);
}

static void payload_out_params_may_be_null(void) {
  /* A caller that only wants the spike passes NULL for the payload. */
  uint8_t f[NB_FRAME_SPIKE + 50], pl[50];
  memset(pl, 7, sizeof pl);
  nb_spike_t r = ref_spike(5, 50), out;
  NBT_EQ(nb_frame_encode_head(&r, 50, f), 68);
  memcpy(f + NB_FRAME_SPIKE, pl, sizeof pl);
  nb_frame_decoder_t d;
  nb_frame_decoder_init(&d, 4096);
  size_t used;
  NBT_EQ(nb_frame_decode(&d, f, sizeof f, &used, &out, NULL, NULL), 1);
  NBT_EQ(used, sizeof f);
  NBT_CHECK(memcmp(&out, &r, 64) == 0);
  nb_spike_t s = plain_spike(8, 46);
  NBT_EQ(nb_frame_encode(&s, f), 68);
  NBT_EQ(nb_frame_decode(&d, f, NB_FRAME_SPIKE, &used, &out, NULL, NULL), 1);
  NBT_CHECK(memcmp(&out, &s, 64) == 0);
  nb_frame_decoder_free(&d);
}

static void encode_head_refuses_a_4gib_frame(void) {
  /* ref.len is 32 bits, but 64 + ref.len must fit the 32-bit length. */
  uint8_t f[NB_FRAME_SPIKE];
  nb_spike_t r = ref_spike(1, UINT32_MAX);
  NBT_EQ(nb_frame_encode_head(&r, UINT32_MAX, f), NB_ETOOBIG);
  r = ref_spike(1, UINT32_MAX - 64);
  NBT_EQ(nb_frame_encode_head(&r, UINT32_MAX - 64, f), 68);
  NBT_EQ(f[0] & f[1] & f[2] & f[3], 0xff); /* L == UINT32_MAX */
  r = ref_spike(1, UINT32_MAX - 63);
  NBT_EQ(nb_frame_encode_head(&r, UINT32_MAX - 63, f), NB_ETOOBIG);
}

static void decoder_free_twice_then_init_again(void) {
  nb_frame_decoder_t d;
  nb_frame_decoder_init(&d, 4096);
  nb_frame_decoder_free(&d); /* nothing was allocated */
  uint8_t f[NB_FRAME_SPIKE + 100], pl[100];
  memset(pl, 1, sizeof pl);
  nb_spike_t r = ref_spike(3, 100), out;
  NBT_EQ(nb_frame_encode_head(&r, 100, f), 68);
  memcpy(f + NB_FRAME_SPIKE, pl, sizeof pl);
  size_t used, plen;
  const uint8_t *p;
  nb_frame_decoder_init(&d, 4096);
  NBT_EQ(decode_all(&d, f, sizeof f, &used, &out, &p, &plen), 1);
  nb_frame_decoder_free(&d);
  NBT_CHECK(d.payload == NULL);
  NBT_EQ(d.payload_cap, 0);
  nb_frame_decoder_free(&d); /* twice is harmless */
  /* A failed stream starts clean after init. */
  nb_frame_decoder_init(&d, 4096);
  NBT_EQ(decode_all(&d, head_with(f, 1, &r), 4, &used, &out, &p, &plen),
         NB_EFRAME);
  nb_frame_decoder_free(&d);
  nb_frame_decoder_init(&d, 4096);
  NBT_EQ(nb_frame_encode_head(&r, 100, f), 68);
  memcpy(f + NB_FRAME_SPIKE, pl, sizeof pl);
  NBT_EQ(decode_all(&d, f, sizeof f, &used, &out, &p, &plen), 1);
  NBT_EQ(plen, 100);
  nb_frame_decoder_free(&d);
}

static void payload_buffer_grows_with_what_arrived(void) {
  /* A frame announcing 1 MiB holds what came so far (at most doubled),
   * not the megabyte: a peer that sends a byte a second costs bytes. */
  enum { MAX = 1 << 20 };
  static uint8_t f[NB_FRAME_SPIKE + MAX];
  nb_frame_decoder_t d;
  nb_frame_decoder_init(&d, MAX);
  nb_spike_t r = ref_spike(4, MAX), out;
  NBT_EQ(nb_frame_encode_head(&r, MAX, f), 68);
  for (size_t i = 0; i < MAX; i++) f[NB_FRAME_SPIKE + i] = (uint8_t)(i * 7);
  size_t used, plen;
  const uint8_t *p;
  NBT_EQ(nb_frame_decode(&d, f, NB_FRAME_SPIKE + 10, &used, &out, &p, &plen), 0);
  NBT_EQ(used, NB_FRAME_SPIKE + 10);
  NBT_CHECK(d.payload_cap >= 10 && d.payload_cap <= 256);
  NBT_EQ(nb_frame_decode(&d, f + used, 5000, &used, &out, &p, &plen), 0);
  NBT_CHECK(d.payload_cap >= 5010 && d.payload_cap <= 2 * 5010);
  /* The rest in one go: the whole payload, every byte in place. */
  size_t at = NB_FRAME_SPIKE + 5010;
  NBT_EQ(nb_frame_decode(&d, f + at, sizeof f - at, &used, &out, &p, &plen), 1);
  NBT_EQ(plen, MAX);
  NBT_CHECK(p && memcmp(p, f + NB_FRAME_SPIKE, MAX) == 0);
  NBT_EQ(d.payload_cap, MAX);
  nb_frame_decoder_free(&d);
}

/* nb_frame_decode_run: the whole plain frames at the start, in order, up
 * to max; nothing from a frame with a payload, a cut frame, a decoder in
 * the middle of a frame or a failed one. */
static void decode_run_takes_whole_plain_frames(void) {
  stream_t st = {0};
  nb_spike_t sent[8];
  for (unsigned i = 0; i < 5; i++) {
    sent[i] = plain_spike(i + 1, i * 9 % 47);
    put_frame(&st, &sent[i], NULL);
  }
  size_t ref_at = st.len;
  uint8_t bytes[40];
  memset(bytes, 0xAB, sizeof bytes);
  nb_spike_t r = ref_spike(6, sizeof bytes);
  put_frame(&st, &r, bytes);
  size_t after_ref = st.len;
  for (unsigned i = 5; i < 7; i++) {
    sent[i] = plain_spike(i + 1, 46);
    put_frame(&st, &sent[i], NULL);
  }
  nb_frame_decoder_t d;
  nb_frame_decoder_init(&d, 4096);
  nb_spike_t out[8];
  /* max bounds the run; the run stops before the ref's frame. */
  NBT_EQ(nb_frame_decode_run(&d, st.buf, st.len, out, 3), 3);
  NBT_EQ(nb_frame_decode_run(&d, st.buf, st.len, out, 8), 5);
  for (unsigned i = 0; i < 5; i++)
    NBT_CHECK(memcmp(&out[i], &sent[i], sizeof out[i]) == 0);
  NBT_EQ(nb_frame_decode_run(&d, st.buf + ref_at, st.len - ref_at, out, 8), 0);
  size_t used, plen;
  const uint8_t *p;
  NBT_EQ(nb_frame_decode(&d, st.buf + ref_at, st.len - ref_at, &used, &out[0],
                         &p, &plen), 1);
  NBT_EQ(used, after_ref - ref_at);
  NBT_EQ(plen, sizeof bytes);
  /* A frame cut by the end of the data is left whole for later. */
  NBT_EQ(nb_frame_decode_run(&d, st.buf + after_ref, st.len - after_ref - 1,
                             out, 8), 1);
  NBT_EQ(nb_frame_decode_run(&d, st.buf + after_ref, st.len - after_ref, out,
                             8), 2);
  NBT_CHECK(memcmp(&out[1], &sent[6], sizeof out[1]) == 0);
  /* In the middle of a frame the long way finishes it first. */
  NBT_EQ(nb_frame_decode(&d, st.buf, 10, &used, &out[0], &p, &plen), 0);
  NBT_EQ(nb_frame_decode_run(&d, st.buf + 10, st.len - 10, out, 8), 0);
  NBT_EQ(nb_frame_decode(&d, st.buf + 10, st.len - 10, &used, &out[0], &p,
                         &plen), 1);
  NBT_CHECK(memcmp(&out[0], &sent[0], sizeof out[0]) == 0);
  /* A failed decoder takes nothing, even good frames. */
  uint8_t bad[NB_FRAME_SPIKE];
  memset(bad, 0xFF, sizeof bad);
  NBT_EQ(nb_frame_decode(&d, bad, sizeof bad, &used, &out[0], &p, &plen),
         NB_EFRAME);
  NBT_EQ(nb_frame_decode_run(&d, st.buf, st.len, out, 8), 0);
  nb_frame_decoder_free(&d);
  free(st.buf);
}

/* nb_frame_encode_to: the frame nb_frame_encode writes for the spike with
 * its target replaced; refs refused. */
static void encode_to_rewrites_the_target_in_one_copy(void) {
  nb_spike_t s = plain_spike(12, 30);
  uint8_t a[NB_FRAME_SPIKE], b[NB_FRAME_SPIKE];
  NBT_EQ(nb_frame_encode_to(nb_spike_as_bytes(&s), 4242, a), 68);
  nb_spike_t t = s;
  t.target = 4242;
  NBT_EQ(nb_frame_encode(&t, b), 68);
  NBT_CHECK(memcmp(a, b, sizeof a) == 0);
  nb_spike_t r = ref_spike(2, 100);
  NBT_EQ(nb_frame_encode_to(nb_spike_as_bytes(&r), 1, a), NB_EINVAL);
}

static const nbt_test_t tests[] = {
    NBT_TEST(payload_buffer_grows_with_what_arrived),
    NBT_TEST(encode_writes_le_length_and_spike),
    NBT_TEST(frames_round_trip_one_at_a_time),
    NBT_TEST(every_split_point_decodes_the_same),
    NBT_TEST(byte_at_a_time_decodes_the_same),
    NBT_TEST(malformed_frames_are_rejected_and_sticky),
    NBT_TEST(max_payload_zero_takes_plain_frames_only),
    NBT_TEST(huge_max_payload_is_capped),
    NBT_TEST(large_payload_round_trips_through_arenas),
    NBT_TEST(encode_bare_ref_takes_refs_only),
    NBT_TEST(bare_ref_frames_need_the_agreement),
    NBT_TEST(bare_refs_still_take_refs_with_their_bytes),
    NBT_TEST(payload_at_max_taken_one_more_refused),
    NBT_TEST(bad_length_is_judged_before_the_spike),
    NBT_TEST(frames_before_a_bad_one_are_delivered),
    NBT_TEST(payload_out_params_may_be_null),
    NBT_TEST(encode_head_refuses_a_4gib_frame),
    NBT_TEST(decoder_free_twice_then_init_again),
    NBT_TEST(decode_run_takes_whole_plain_frames),
    NBT_TEST(encode_to_rewrites_the_target_in_one_copy),
};

int main(int argc, char **argv) { return NBT_MAIN(argc, argv, tests, NULL); }
