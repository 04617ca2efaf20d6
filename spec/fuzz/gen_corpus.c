/* gen_corpus.c: writes the seed corpus of fuzz_frames, or with --arena
 * that of fuzz_arena (--link: fuzz_link, --link-auth: fuzz_link_auth),
 * into a directory.
 *
 *   cc -std=c11 -D_GNU_SOURCE -Icore -Iruntime spec/fuzz/gen_corpus.c \
 *      runtime/nb_link_wire.c core/nb_frame.c core/nb_spike.c \
 *      core/nb_arena.c core/nb_err.c -pthread -o /tmp/gen &&
 *   /tmp/gen spec/fuzz/corpus && /tmp/gen --arena spec/fuzz/corpus_arena &&
 *   /tmp/gen --link spec/fuzz/corpus_link &&
 *   /tmp/gen --link-auth spec/fuzz/corpus_link_auth
 *
 * fuzz_frames: each file is one seed byte (how fuzz_frames cuts the
 * stream) followed by the stream: handshakes, plain and large-payload
 * frames, acks, and a few broken or foreign inputs.
 * fuzz_arena: the four control bytes and operations fuzz_arena.c reads,
 * then the first bytes of a real arena file (its tables, the trailing
 * zeros cut: the target zero-extends the file to the size its header
 * asks for) of a few sizes, made fresh or used by a writer that still
 * holds payloads, and truncations and corruptions of them.
 * fuzz_link: the configuration byte, then action scripts (see
 * fuzz_link.c): authenticated and plain callers, a takeover of the good
 * peer's cortex, limits and timeouts, acks and resends, restarts.
 * fuzz_link_auth: the mode and cut bytes, then the bytes fed in that
 * state: first messages, proofs, plain and sealed streams.
 * The files are kept in the repo; this program only documents how they
 * were made. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "nb_arena.h"
#include "nb_link_wire.h"
#include "nb_frame.h"

static uint8_t buf[1 << 16];
static size_t len;

static void put(const void *p, size_t n) {
  memcpy(buf + len, p, n);
  len += n;
}

static int arena_flag; /* the next HELLO carries an arena identity */

static void hello(const char *cortex, uint16_t version, uint32_t names) {
  static char nm[128][16];
  nb_link_name_t list[128];
  nb_link_hello_t h;
  memset(&h, 0, sizeof h);
  h.version = version;
  h.incarnation = 0x1122334455667788ull;
  h.peer_incarnation = 0x99;
  h.recv_seq = 1234;
  h.max_payload = 4096;
  snprintf(h.cortex, sizeof h.cortex, "%s", cortex);
  for (uint32_t i = 0; i < names; i++) {
    snprintf(nm[i], sizeof nm[i], "neuron%u", i % 1000u);
    list[i].name = nm[i];
    list[i].id = (nb_id_t)(i * 3);
  }
  h.count = names;
  h.names = list;
  if (arena_flag) {
    h.flags = NB_LINK_F_ARENA;
    h.arena.dev = 0x2d;
    h.arena.ino = 4242;
    h.arena.capacity = 64u << 20;
    snprintf(h.arena.host, sizeof h.arena.host,
             "6f1c2a4e-8b0d-4f4e-9a51-0c3f1e2d7b99");
  }
  len += (size_t)nb_link_hello_encode(&h, buf + len, sizeof buf - len);
}

static void spike(nb_id_t target, size_t inline_len) {
  nb_spike_t s;
  uint8_t p[46];
  for (size_t i = 0; i < sizeof p; i++) p[i] = (uint8_t)(i * 7);
  nb_spike_init(&s, target, NB_INHIBITORY, 9);
  s.source = 3;
  s.sequence = 77;
  nb_spike_set_payload(&s, p, inline_len);
  len += (size_t)nb_frame_encode(&s, buf + len);
}

static void large(nb_id_t target, uint32_t n) {
  nb_spike_t s;
  nb_arena_ref_t ref = {64, n, 5, 1, 0};
  nb_spike_init(&s, target, NB_MODULATORY, 200);
  nb_spike_set_ref(&s, &ref);
  len += (size_t)nb_frame_encode_head(&s, n, buf + len);
  for (uint32_t i = 0; i < n; i++) buf[len++] = (uint8_t)(i ^ (i >> 8));
}

/* A ref spike without its bytes: between ends sharing an arena file. */
static void bare(nb_id_t target, uint32_t n) {
  nb_spike_t s;
  nb_arena_ref_t ref = {128, n, 6, 1, 0};
  nb_spike_init(&s, target, NB_EXCITATORY, 1);
  nb_spike_set_ref(&s, &ref);
  len += (size_t)nb_frame_encode_bare_ref(&s, buf + len);
}

static void ack(uint64_t seq) { len += (size_t)nb_link_ack_encode(seq, buf + len); }

/* Opens dir/name for writing; exits with a message when it cannot. */
static FILE *open_out(const char *dir, const char *name) {
  char path[512];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  FILE *f = fopen(path, "wb");
  if (!f) {
    perror(path);
    exit(1);
  }
  return f;
}

static void save(const char *dir, const char *name, uint8_t seed) {
  FILE *f = open_out(dir, name);
  fputc(seed, f);
  fwrite(buf, 1, len, f);
  fclose(f);
  len = 0;
}

/* ---- fuzz_arena ---- */

static uint8_t img[1 << 16];
static size_t img_len;

/* Reads the tables of the arena file at path (everything before the data
 * region, trailing zeros cut) into img. */
static void capture(const char *path, size_t capacity) {
  int fd = open(path, O_RDONLY);
  struct stat st;
  if (fd < 0 || fstat(fd, &st) != 0) {
    perror(path);
    exit(1);
  }
  size_t meta = (size_t)st.st_size - capacity;
  /* Within the fuzzers' 16 KiB inputs: the tables of 256 segments are
   * cut (the rest reads as zeros: no free segment, unless the arena
   * starts clean). */
  if (meta > 16000) meta = 16000;
  if (pread(fd, img, meta, 0) != (ssize_t)meta) exit(1);
  close(fd);
  while (meta > 128 && img[meta - 1] == 0) meta--;
  img_len = meta;
}

/* Writes one fuzz_arena input: control bytes, ops, then n bytes of img. */
static void save_arena(const char *dir, const char *name, uint8_t mode,
                       uint16_t held, const uint8_t *ops, size_t nops,
                       size_t n) {
  FILE *f = open_out(dir, name);
  uint8_t c[4] = {mode, (uint8_t)held, (uint8_t)(held >> 8), (uint8_t)nops};
  fwrite(c, 1, 4, f);
  fwrite(ops, 1, nops, f);
  fwrite(img, 1, n, f);
  fclose(f);
}

/* Sets the 32-bit field at off of img (growing it with zeros). */
static void poke32(size_t off, uint32_t v) {
  memcpy(img + off, &v, 4);
  if (img_len < off + 4) img_len = off + 4;
}

/* The operations of fuzz_arena.c: op & 15 picks one, op >> 4 a slot. */
static const uint8_t workload[] = {
    0x00, 10,        /* small payload into slot 0 */
    0x10, 200,       /* slot 1 */
    0x21, 0x00, 0x30, /* 12 KiB into slot 2: a run of segments */
    0x02, 0x12, 0x22, /* read them back */
    0x04, 0x14,       /* retain and release */
    0x05, 1, 0, 0, 0, 0, 16, 0, /* a made-up reference */
    0x13,             /* release slot 1 */
    0x08, 0x07,       /* statistics, reap */
    0x09, 1,          /* a new writer with a reserve of one */
    0x30, 60, 0x41, 0x10, 0x27, 0x32,
    0x06,             /* the releaser drops the rest */
    0x08};

static void arena_corpus(const char *dir) {
  static const size_t caps[] = {4096, 64 << 10, 400 << 10, 1 << 20, 2 << 20};
  static const char *const names[] = {"1seg", "16seg", "100seg", "256seg",
                                      "256x8k"};
  char path[] = "/tmp/nb-gen-arena-XXXXXX";
  int tfd = mkstemp(path);
  if (tfd < 0) exit(1);
  close(tfd);
  char name[64];
  for (size_t i = 0; i < 5; i++) {
    unlink(path);
    nb_arena_t *a;
    if (nb_arena_open(&a, path, caps[i]) != 0) exit(1);
    size_t cap = nb_arena_capacity(a);
    capture(path, cap);
    snprintf(name, sizeof name, "fresh_%s", names[i]);
    save_arena(dir, name, 0, 0, workload, sizeof workload, img_len);
    /* In use: a writer holds payloads in the file's tables, and the
     * process that made it is alive (slot 0 held) or dead (not held). */
    nb_arena_writer_t *w;
    nb_arena_ref_t ref;
    uint8_t *data = calloc(1, cap);
    if (!data || nb_arena_writer_new(&w, a) != 0) exit(1);
    /* The half-arena payload does not fit the smallest: that is fine. */
    for (int k = 0; k < 6; k++)
      if (nb_arena_write(w, data, k == 3 ? cap / 2 : 100u * (k + 1), &ref) != 0 &&
          k != 3)
        exit(1);
    free(data);
    capture(path, cap);
    snprintf(name, sizeof name, "used_alive_%s", names[i]);
    save_arena(dir, name, 0x10, 1, workload, sizeof workload, img_len);
    snprintf(name, sizeof name, "used_dead_%s", names[i]);
    save_arena(dir, name, 0x04, 0, workload, sizeof workload, img_len);
    nb_arena_writer_free(w);
    nb_arena_free(a);
  }
  /* Corruptions of the 16-segment file, in use by a live process. */
  unlink(path);
  nb_arena_t *a;
  if (nb_arena_open(&a, path, 64 << 10) != 0) exit(1);
  nb_arena_writer_t *w;
  nb_arena_ref_t ref;
  static uint8_t data[9000];
  if (nb_arena_writer_new(&w, a) != 0) exit(1);
  for (int k = 0; k < 4; k++)
    if (nb_arena_write(w, data, k == 2 ? 9000 : 300, &ref) != 0) exit(1);
  capture(path, nb_arena_capacity(a));
  nb_arena_writer_free(w);
  nb_arena_free(a);
  unlink(path);
  uint8_t keep[sizeof img];
  size_t keep_len = img_len;
  memcpy(keep, img, img_len);
  static const struct {
    const char *name;
    size_t off;
    uint32_t v;
    uint8_t mode;
    uint16_t held;
  } bad[] = {
      {"bad_magic", 0, 0x41414141, 0, 1},
      {"bad_magic_v1", 0, 0x414e424e, 0, 1}, /* patched below to "NBNAREN1" */
      {"bad_version", 8, 3, 0, 1},
      {"bad_header_size", 12, 64, 0, 1},
      {"bad_seg_size", 24, 4097, 0, 1},
      {"bad_seg_huge", 24, 1u << 21, 0, 1},
      {"bad_nsegs_zero", 28, 0, 0, 1},
      {"bad_nsegs_many", 28, 1u << 30, 0, 1},
      {"bad_procs", 32, 17, 0, 1},
      {"bad_not_shared", 36, 0, 0, 1},
      {"bad_capacity_field", 16, 12345, 0, 1},
      {"size_one_more", 0, 0, 3, 1},
      {"capacity_disagrees", 0, 0, 0x08, 1},
      {"capacity_one_byte", 0, 0, 0x0c, 0},
      {"all_slots_held", 0, 0, 0, 0xffff},
      {"fifteen_slots_held", 0, 0, 0x10, 0x7fff},
      {"span_too_long", 128 + 16 * 64 + 20, 99, 0, 1},
      {"state_garbage", 128 + 16 * 64 + 64 + 12, 7, 0, 1},
      {"live_count_huge", 128 + 16 * 64 + 4, 0x7fffffff, 0, 1},
      {"hint_past_bitmap", 40, 1000, 0, 1},
      {"proc_state_garbage", 128 + 64, 9, 0, 2},
      {"held_row_huge", 128 + 16 * 64 + 16 * 64 + 64, 0xfffffff0, 0, 0},
      /* Segment 1 (the run the workload's made-up reference names) with
       * a live count of INT64_MAX: a retain must not overflow it. */
      {"live_count_max", 128 + 16 * 64 + 64, 0xffffffff, 0, 1},
      /* Free bits past the 16th segment (bitmap word 0, bits 16-63). */
      {"stray_bitmap_bits", 128 + 16 * 64 + 16 * 64 + 4, 0xffffffff, 0, 1},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    memcpy(img, keep, keep_len);
    img_len = keep_len;
    if (bad[i].off || bad[i].v) poke32(bad[i].off, bad[i].v);
    if (!strcmp(bad[i].name, "bad_magic_v1")) memcpy(img, "NBNAREN1", 8);
    if (!strcmp(bad[i].name, "live_count_max")) poke32(bad[i].off + 4, 0x7fffffff);
    /* No real segment free: the first write meets the stray bits. */
    if (!strcmp(bad[i].name, "stray_bitmap_bits")) poke32(bad[i].off - 4, 0);
    save_arena(dir, bad[i].name, bad[i].mode, bad[i].held, workload,
               sizeof workload, img_len);
  }
  /* Truncations: the file is the image exactly (mode 1). */
  static const size_t cuts[] = {0, 7, 127, 128, 1000, 4095};
  for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
    memcpy(img, keep, keep_len);
    snprintf(name, sizeof name, "cut_%zu", cuts[i]);
    save_arena(dir, name, 1, 0, workload, 4, cuts[i] < keep_len ? cuts[i] : keep_len);
  }
}


/* ---- fuzz_link: scripts of actions ---- */

/* An action byte of fuzz_link.c: operation, script slot, flag. */
#define ACT(op, k, flag) ((uint8_t)((op) | (k) << 4 | (flag) << 6))
enum { L_OPEN, L_AUTH1, L_AUTH3, L_HELLO, L_SPIKE, L_ACK, L_RAW, L_CLOSE,
       L_ADVANCE, L_GSEND, L_ASEND, L_DISCONNECT, L_GTOGGLE, L_ONSPIKE,
       L_EXPECT, L_TURN };
/* Configuration bits: authentication mode, drop policy, the good peer,
 * the receiver's mode, the good peer's encryption, a queue of 2. */
enum { C_PLAIN = 0, C_CLUSTER = 1, C_ALLOW = 2, C_ENCRYPT = 3, C_DROP = 4,
       C_GOOD = 8, C_FULL3 = 16, C_REFUSE2 = 32, C_GENC = 64, C_Q2 = 128 };
/* Names and keys by index (fuzz_link.c's tables). */
enum { N_GOOD = 0, N_S1 = 1, N_S2 = 2, N_HUB = 3, N_LONG = 6, N_S3 = 7 };
enum { K_CLUSTER = 0, K_GOOD = 1, K_S1 = 2, K_WRONG = 3 };

static void act(const uint8_t *p, size_t n) { put(p, n); }
#define A(...) act((const uint8_t[]){__VA_ARGS__}, sizeof((const uint8_t[]){__VA_ARGS__}))

/* Script k authenticates as name with key (encrypt: ask for it). */
static void auth(int k, int name, int key, int encrypt) {
  A(ACT(L_OPEN, k, 0), ACT(L_AUTH1, k, 0), (uint8_t)(name | key << 3 | encrypt << 5),
    ACT(L_AUTH3, k, 0));
}

/* Script k says HELLO as name: incarnation choice, peer choice, count. */
static void say_hello(int k, int name, int inc, int peer, uint8_t recv,
                      uint8_t extra) {
  A(ACT(L_HELLO, k, 0), (uint8_t)(name | inc << 3 | peer << 5), recv, extra);
}

static void link_corpus(const char *dir) {
  /* A caller proving the cluster secret takes over "good"; G is back. */
  auth(0, N_GOOD, K_CLUSTER, 0);
  say_hello(0, N_GOOD, 0, 0, 1, 0);
  A(ACT(L_SPIKE, 0, 0), 0, ACT(L_ADVANCE, 0, 0), 25, ACT(L_CLOSE, 0, 0));
  save(dir, "cluster_takeover", C_CLUSTER | C_GOOD);
  /* No secret: a stranger speaks for "good" after A sent to G. */
  A(ACT(L_TURN, 0, 0), ACT(L_ASEND, 0, 0), 0, 0, ACT(L_ASEND, 0, 0), 0, 0,
    ACT(L_ASEND, 0, 0), 0, 0, ACT(L_ADVANCE, 0, 0), 5, ACT(L_GSEND, 2, 0), 0,
    ACT(L_ADVANCE, 0, 0), 5, ACT(L_OPEN, 0, 0));
  say_hello(0, N_GOOD, 0, 0, 1, 0);
  A(ACT(L_ADVANCE, 0, 0), 5, ACT(L_CLOSE, 0, 0));
  save(dir, "plain_impostor_then_good", C_GOOD);
  /* Plain callers: spikes to exposed ids, an ack, then close. */
  A(ACT(L_OPEN, 1, 0));
  say_hello(1, N_S1, 0, 0, 1, 3);
  A(ACT(L_SPIKE, 1, 0), 0, ACT(L_SPIKE, 1, 0), 1 | 1 << 3, ACT(L_SPIKE, 1, 0),
    2 | 2 << 3, ACT(L_ACK, 1, 0), 0, 0, ACT(L_CLOSE, 1, 0));
  save(dir, "plain_spikes", C_PLAIN);
  A(ACT(L_OPEN, 0, 0));
  say_hello(0, N_S2, 0, 0, 1, 0);
  A(ACT(L_SPIKE, 0, 0), 3, ACT(L_SPIKE, 0, 0), 6);
  save(dir, "plain_unexposed_id", C_PLAIN);
  A(ACT(L_OPEN, 0, 0));
  say_hello(0, N_S1, 0, 0, 1, 0);
  A(ACT(L_SPIKE, 0, 0), 3 << 3, ACT(L_SPIKE, 0, 0), 5 << 3,
    ACT(L_SPIKE, 0, 0), 6 << 3, ACT(L_TURN, 0, 0));
  save(dir, "plain_payload_limits", C_GOOD);
  A(ACT(L_OPEN, 0, 0));
  say_hello(0, N_S1, 0, 0, 1, 0);
  A(ACT(L_SPIKE, 0, 2), 4 << 3, 9, ACT(L_ADVANCE, 0, 0), 40);
  save(dir, "plain_frame_timeout", C_PLAIN);
  A(ACT(L_OPEN, 0, 0), ACT(L_ADVANCE, 0, 0), 30);
  save(dir, "plain_hello_timeout", C_GOOD);
  A(ACT(L_OPEN, 0, 0), ACT(L_OPEN, 1, 0), ACT(L_OPEN, 2, 0), ACT(L_OPEN, 3, 0),
    ACT(L_TURN, 0, 0));
  say_hello(3, N_S3, 0, 0, 1, 0);
  save(dir, "plain_pending_limits", C_GOOD);
  for (int k = 0; k < 4; k++) {
    A(ACT(L_OPEN, k, 0));
    say_hello(k, k == 3 ? N_LONG : k + 1, 1, 0, 1, (uint8_t)(k & 1));
    A(ACT(L_SPIKE, k, 0), 0);
  }
  A(ACT(L_ADVANCE, 0, 0), 10);
  save(dir, "plain_link_limits", C_GOOD);
  A(ACT(L_OPEN, 0, 0));
  say_hello(0, N_GOOD, 0, 0, 1, 0);
  save(dir, "cluster_plain_hello_refused", C_CLUSTER | C_GOOD);
  auth(0, N_GOOD, K_WRONG, 0);
  say_hello(0, N_GOOD, 0, 0, 1, 0);
  save(dir, "cluster_wrong_key", C_CLUSTER | C_GOOD);
  auth(0, N_S2, K_CLUSTER, 0);
  save(dir, "allow_not_listed", C_ALLOW | C_GOOD);
  auth(1, N_S1, K_S1, 0);
  say_hello(1, N_S1, 0, 1, 1, 1);
  A(ACT(L_SPIKE, 1, 0), 1, ACT(L_ASEND, 0, 0), 2, 1, ACT(L_ADVANCE, 0, 0), 3,
    ACT(L_ACK, 1, 0), 1, 0);
  save(dir, "allow_s1_proven", C_ALLOW | C_GOOD);
  auth(0, N_GOOD, K_S1, 0);
  say_hello(0, N_GOOD, 0, 0, 1, 0);
  save(dir, "allow_good_wrong_key", C_ALLOW | C_GOOD);
  auth(0, N_GOOD, K_CLUSTER, 1);
  say_hello(0, N_GOOD, 0, 1, 1, 0);
  A(ACT(L_SPIKE, 0, 0), 2, ACT(L_ACK, 0, 0), 0, 0, ACT(L_SPIKE, 0, 0), 4 << 3,
    ACT(L_ADVANCE, 0, 0), 10);
  save(dir, "encrypt_takeover", C_ENCRYPT | C_GOOD);
  auth(0, N_S1, K_CLUSTER, 1);
  A(ACT(L_RAW, 0, 0), 8, 1, 2, 3, 4, 5, 6, 7, 8);
  save(dir, "encrypt_bad_record", C_ENCRYPT);
  A(ACT(L_OPEN, 0, 0), ACT(L_AUTH1, 0, 0), N_S1, ACT(L_AUTH3, 0, 1), 9, 0x55);
  say_hello(0, N_S1, 0, 0, 1, 0);
  save(dir, "cluster_mutated_proof", C_CLUSTER);
  A(ACT(L_OPEN, 0, 0), ACT(L_AUTH1, 0, 2), N_S1, 20, ACT(L_ADVANCE, 0, 0), 20);
  save(dir, "cluster_cut_auth", C_CLUSTER | C_GOOD);
  A(ACT(L_OPEN, 0, 0), ACT(L_AUTH1, 0, 1), N_GOOD, 11, 0x20, ACT(L_AUTH3, 0, 0));
  save(dir, "cluster_mutated_msg1", C_CLUSTER | C_GOOD);
  auth(2, N_S1, K_CLUSTER, 0);
  say_hello(2, N_GOOD, 0, 0, 1, 0);
  save(dir, "cluster_hello_other_name", C_CLUSTER | C_GOOD);
  A(ACT(L_ASEND, 0, 0), 0, 1 << 3, ACT(L_ASEND, 0, 0), 1, 4 << 3,
    ACT(L_DISCONNECT, 0, 0), 0, ACT(L_ASEND, 0, 0), 0, 0, ACT(L_ADVANCE, 0, 0), 20,
    ACT(L_DISCONNECT, 0, 0), 1, ACT(L_ADVANCE, 0, 0), 20);
  save(dir, "drop_disconnects", C_DROP | C_GOOD);
  A(ACT(L_GSEND, 3, 0), 0, ACT(L_GSEND, 3, 0), 1, ACT(L_ADVANCE, 0, 0), 10,
    ACT(L_ONSPIKE, 0, 0), 0, ACT(L_ADVANCE, 0, 0), 10);
  save(dir, "good_receiver_full", C_FULL3 | C_GOOD);
  A(ACT(L_GSEND, 3, 0), 4, ACT(L_GSEND, 1, 0), 9, ACT(L_ADVANCE, 0, 0), 5,
    ACT(L_ONSPIKE, 0, 0), 1);
  save(dir, "good_receiver_refuses", C_REFUSE2 | C_GOOD);
  A(ACT(L_ASEND, 0, 0), 0, 0, ACT(L_GSEND, 3, 0), 0, ACT(L_GTOGGLE, 0, 0),
    ACT(L_ADVANCE, 0, 0), 5, ACT(L_GTOGGLE, 0, 0), ACT(L_ADVANCE, 0, 0), 10);
  save(dir, "good_restarts", C_GOOD);
  A(ACT(L_OPEN, 0, 0));
  say_hello(0, N_S1, 2, 0, 1, 0);
  save(dir, "plain_self_incarnation", C_PLAIN);
  A(ACT(L_ASEND, 0, 0), 0, 0, ACT(L_ADVANCE, 0, 0), 3, ACT(L_OPEN, 1, 0));
  say_hello(1, N_GOOD, 3, 1, 5, 0);
  A(ACT(L_ADVANCE, 0, 0), 5);
  save(dir, "plain_good_incarnation", C_GOOD);
  A(ACT(L_OPEN, 0, 0));
  say_hello(0, N_S1, 0, 0, 1, 1);
  A(ACT(L_ASEND, 0, 0), 2, 0, ACT(L_ASEND, 0, 0), 2, 3 << 3, ACT(L_ACK, 0, 0), 1,
    0, ACT(L_ACK, 0, 0), 9, 0, ACT(L_ACK, 0, 0), 0xff, 0xff);
  save(dir, "plain_acks", C_PLAIN);
  A(ACT(L_EXPECT, 0, 0), N_S1, ACT(L_OPEN, 0, 0));
  say_hello(0, N_S1, 0, 0, 1, 4 | 8);
  A(ACT(L_ASEND, 0, 0), 2, 0, ACT(L_CLOSE, 0, 0), ACT(L_OPEN, 0, 0));
  say_hello(0, N_S1, 0, 1, 2, 1);
  save(dir, "plain_expected_arena_names", C_PLAIN);
  A(ACT(L_OPEN, 0, 0));
  say_hello(0, N_S1, 0, 0, 1, 0);
  A(ACT(L_SPIKE, 0, 2), 5 << 3, 20, ACT(L_CLOSE, 0, 1), ACT(L_OPEN, 1, 0));
  say_hello(1, N_S2, 0, 0, 1, 0);
  A(ACT(L_CLOSE, 1, 2), ACT(L_ADVANCE, 0, 0), 10);
  save(dir, "plain_reset_and_half_close", C_GOOD);
  A(ACT(L_OPEN, 0, 0));
  say_hello(0, N_S1, 0, 0, 1, 1);
  for (int i = 0; i < 4; i++) A(ACT(L_ASEND, 0, 0), 2, 0);
  A(ACT(L_ADVANCE, 0, 0), 100);
  save(dir, "plain_queue2_idle", C_Q2);
  A(ACT(L_OPEN, 0, 0), ACT(L_HELLO, 0, 1), N_S1, 1, 0, 12, 0x41);
  save(dir, "plain_mutated_hello", C_PLAIN);
  A(ACT(L_GTOGGLE, 0, 0), ACT(L_GTOGGLE, 0, 0), ACT(L_GSEND, 0, 3), 0,
    ACT(L_ADVANCE, 0, 0), 10, ACT(L_ASEND, 0, 1), 0, 0, ACT(L_ASEND, 0, 1), 7, 0);
  save(dir, "good_burst_while_down", C_GOOD);
}

/* ---- fuzz_link_auth: a state, then bytes ---- */

/* Mode bits of fuzz_link_auth.c: the side under test, who asks for
 * encryption, the keyring, the handshake messages delivered first, the
 * bytes sealed by the honest peer. */
enum { U_CALLER = 1, H_ENC = 2, U_ENC = 4, RING_ALLOW = 8, RING_BOTH = 16,
       RING_WRONG = 24, STAGE1 = 32, STAGE2 = 64, SEALED = 128 };

static void zeros(size_t n) {
  memset(buf + len, 0, n);
  len += n;
}

/* Appends the cut byte, then an authentication message of type with
 * flags: the name (u8 length and bytes; none when NULL), then nonce and
 * proof bytes (zeros, tail of them). */
static void auth_msg(uint8_t cut, uint8_t type, uint8_t flags,
                     const char *name, size_t tail) {
  A(cut, 'N', 'B', 'A', 'U', 1, 0, type, flags);
  if (name) {
    buf[len++] = (uint8_t)strlen(name);
    put(name, strlen(name));
  }
  zeros(tail);
}

static void link_auth_corpus(const char *dir) {
  /* Each file: the mode byte (save's), the cut byte, then the bytes. */
  auth_msg(0, 1, 0, "alpha", 32);
  save(dir, "acceptor_msg1", 0);
  auth_msg(1, 1, 1, "alpha", 32);
  save(dir, "acceptor_msg1_allow_enc", RING_ALLOW);
  auth_msg(2, 1, 0, "zeta", 32);
  A('x', 'y');
  save(dir, "acceptor_msg1_more", RING_BOTH);
  auth_msg(3, 1, 0, "", 32);
  save(dir, "acceptor_msg1_empty_name", 0);
  A(0, 'N', 'B', 'L', 'K', 1, 0, 0, 0);
  save(dir, "acceptor_plain_hello", 0);
  auth_msg(5, 3, 0, NULL, 32);
  save(dir, "acceptor_proof", STAGE1);
  auth_msg(0, 3, 1, NULL, 32);
  save(dir, "acceptor_proof_flags", STAGE1 | RING_WRONG);
  auth_msg(6, 2, 0, "beta", 64);
  save(dir, "caller_msg2", U_CALLER);
  auth_msg(1, 2, 2, "beta", 64);
  save(dir, "caller_msg2_flags", U_CALLER);
  A(3);
  put("NBLK plain after the handshake", 30);
  save(dir, "caller_plain_after", U_CALLER | STAGE1);
  A(2);
  put("NBLK plain after the handshake", 30);
  save(dir, "acceptor_plain_after", STAGE2 | RING_ALLOW);
  A(0, 0x20, 0, 0, 0);
  zeros(40);
  save(dir, "acceptor_raw_record", STAGE2 | U_ENC);
  A(7, 0xff, 0xff, 0, 0);
  zeros(8);
  save(dir, "caller_bad_record_length", U_CALLER | STAGE1 | H_ENC);
  A(3);
  for (int i = 0; i < 300; i++) buf[len++] = (uint8_t)(i * 7);
  save(dir, "acceptor_sealed", STAGE2 | U_ENC | SEALED);
  A(0x83); /* top bit: one sealed byte flipped */
  for (int i = 0; i < 300; i++) buf[len++] = (uint8_t)(i * 7);
  save(dir, "acceptor_sealed_flipped", STAGE2 | H_ENC | SEALED);
  A(2);
  for (int i = 0; i < 2000; i++) buf[len++] = (uint8_t)(i * 13);
  save(dir, "caller_sealed_long", U_CALLER | STAGE1 | H_ENC | SEALED);
}

int main(int argc, char **argv) {
  if (argc > 2 && !strcmp(argv[1], "--link")) {
    link_corpus(argv[2]);
    return 0;
  }
  if (argc > 2 && !strcmp(argv[1], "--link-auth")) {
    link_auth_corpus(argv[2]);
    return 0;
  }
  if (argc > 2 && !strcmp(argv[1], "--arena")) {
    arena_corpus(argv[2]);
    return 0;
  }
  const char *dir = argc > 1 ? argv[1] : "spec/fuzz/corpus";
  hello("alpha", 0, 3);
  save(dir, "hello_small", 0);
  hello("beta", 0, 0);
  save(dir, "hello_no_names", 3);
  hello("cortex-with-many-neurons", 0, 120);
  save(dir, "hello_120_names", 7);
  hello("future", 2, 1);
  save(dir, "hello_version2", 1);
  hello("alpha", 0, 2);
  buf[20] ^= 0xFF; /* corrupt the incarnation only: still valid */
  buf[8] += 1;     /* body length one too long */
  save(dir, "hello_bad_length", 2);
  hello("alpha", 0, 2);
  spike(0, 0);
  spike(3, 5);
  spike(3, 46);
  ack(1);
  spike(0, 12);
  save(dir, "stream_plain", 0);
  hello("alpha", 0, 2);
  large(0, 47);
  spike(3, 1);
  large(3, 3000);
  ack(3);
  save(dir, "stream_large", 6);
  hello("alpha", 0, 1);
  large(0, 5000); /* over the 4096 maximum of the small decoder */
  save(dir, "stream_over_small_max", 11);
  hello("alpha", 0, 1);
  spike(0, 3);
  large(0, 200);
  len -= 150; /* cut inside the payload */
  save(dir, "stream_truncated", 3);
  spike(0, 4);
  spike(9, 0);
  large(0, 64);
  spike(6, 46);
  save(dir, "frames_only", 1);
  large(2, 1000);
  large(2, 4000);
  save(dir, "frames_large_only", 9);
  spike(0, 3);
  buf[0] = 10; /* length below a spike */
  save(dir, "frame_short_length", 0);
  spike(0, 3);
  buf[4 + 16] = 3; /* kind 3 */
  save(dir, "frame_kind3", 0);
  spike(0, 3);
  buf[0] = 0xff, buf[1] = 0xff, buf[2] = 0xff, buf[3] = 0x7f;
  save(dir, "frame_huge_length", 0);
  put("GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", 35);
  save(dir, "garbage_http", 0);
  for (int i = 0; i < 300; i++) buf[len++] = (uint8_t)(i * 167 + 13);
  save(dir, "garbage_bytes", 5);
  put("tcp://127.0.0.1:7401/parser", 27);
  save(dir, "url_neuron", 0);
  put("tcp://[::1]:0", 13);
  save(dir, "url_v6", 0);
  arena_flag = 1;
  hello("shared", 0, 2);
  bare(0, 65536);
  spike(3, 7);
  large(3, 100);
  bare(3, 47);
  save(dir, "stream_shared_arena", 2);
  hello("shared", 0, 0);
  buf[len - 20] = 0; /* a control byte in the host id */
  save(dir, "hello_bad_arena_id", 0);
  arena_flag = 0;
  return 0;
}
