/* gen_corpus.c: writes the seed corpus of fuzz_frames into a directory.
 *
 *   cc -std=c11 -D_GNU_SOURCE -Icore -Iruntime spec/fuzz/gen_corpus.c \
 *      runtime/nb_link_wire.c core/nb_frame.c core/nb_spike.c \
 *      core/nb_err.c -pthread -o /tmp/gen && /tmp/gen spec/fuzz/corpus
 *
 * Each file is one seed byte (how fuzz_frames cuts the stream) followed by
 * the stream: handshakes, plain and large-payload frames, acks, and a few
 * broken or foreign inputs. The files are kept in the repo; this program
 * only documents how they were made. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
    snprintf(nm[i], sizeof nm[i], "neuron%u", i);
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

static void save(const char *dir, const char *name, uint8_t seed) {
  char path[512];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  FILE *f = fopen(path, "wb");
  if (!f) {
    perror(path);
    exit(1);
  }
  fputc(seed, f);
  fwrite(buf, 1, len, f);
  fclose(f);
  len = 0;
}

int main(int argc, char **argv) {
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
