/* replay.c: a main for a libFuzzer target (fuzz_frames.c, fuzz_stats.c)
 * without libFuzzer, so the corpus and mutations of it run with cc alone
 * (make fuzz-replay builds replay_frames and replay_stats with ASan and
 * UBSan; spec/e2e/fuzz_smoke.sh runs them in make test).
 *
 *   replay_frames [--mutate N] [--seed S] PATH...
 *   replay_frames --plant-overflow
 *
 * Every file under each PATH (a file, or a directory read one level deep)
 * goes through LLVMFuzzerTestOneInput once. --mutate N then makes N more
 * inputs from them, each by one to four seeded edits (a bit flip, a byte
 * or a 32-bit length field set to a value at a boundary of the format, a
 * cut, a deletion, a duplicated run, a splice of two files, another cut
 * pattern): the same seed makes the same inputs. A finding traps or is
 * reported by a sanitizer, which ends the process with a non-zero status;
 * otherwise it prints "replayed F files, M mutations" and exits 0.
 * --plant-overflow reads one byte past a heap block: run under ASan it
 * must abort, which shows the sanitizer is live. */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *in, size_t size);

#define MAX_LEN 16384 /* as make fuzz's -max_len */

typedef struct input_s {
  uint8_t *data;
  size_t len;
} input_t;

static input_t *inputs;
static size_t ninputs, cap_inputs;

/* Reads the file at path into an exact-size block of the input list (so
 * ASan sees a read past its end); returns 0, or -1 with a message printed
 * (also for a file longer than MAX_LEN). */
static int load_file(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    perror(path);
    return -1;
  }
  static uint8_t buf[MAX_LEN + 1];
  size_t len = fread(buf, 1, sizeof buf, f);
  fclose(f);
  if (len > MAX_LEN) {
    fprintf(stderr, "%s: longer than %d bytes\n", path, MAX_LEN);
    return -1;
  }
  input_t in = {malloc(len ? len : 1), len};
  if (!in.data) abort();
  memcpy(in.data, buf, len);
  if (ninputs == cap_inputs) {
    cap_inputs = cap_inputs ? cap_inputs * 2 : 256;
    inputs = realloc(inputs, cap_inputs * sizeof *inputs);
    if (!inputs) abort();
  }
  inputs[ninputs++] = in;
  return 0;
}

/* Loads a file, or every regular file of a directory; returns 0 or -1. */
static int load_path(const char *path) {
  struct stat st;
  if (stat(path, &st) != 0) {
    perror(path);
    return -1;
  }
  if (!S_ISDIR(st.st_mode)) return load_file(path);
  DIR *d = opendir(path);
  if (!d) {
    perror(path);
    return -1;
  }
  struct dirent *e;
  int rc = 0;
  while ((e = readdir(d)) && rc == 0) {
    if (e->d_name[0] == '.') continue;
    char full[4096];
    snprintf(full, sizeof full, "%s/%s", path, e->d_name);
    if (stat(full, &st) == 0 && S_ISREG(st.st_mode)) rc = load_file(full);
  }
  closedir(d);
  return rc;
}

static uint64_t rng_state;

/* Returns the next number of a xorshift64* sequence. */
static uint64_t rnd(void) {
  rng_state ^= rng_state >> 12;
  rng_state ^= rng_state << 25;
  rng_state ^= rng_state >> 27;
  return rng_state * 2685821657736338717ull;
}

/* Returns a number in [0, n) (0 when n is 0). */
static size_t below(size_t n) { return n ? (size_t)(rnd() % n) : 0; }

/* Applies one seeded edit to buf (len bytes, room for MAX_LEN); returns
 * the new length. */
static size_t mutate_once(uint8_t *buf, size_t len) {
  /* Values at the edges of the format: lengths around a plain frame (64),
   * a full inline payload, the decoders' maximums, the HELLO magic. */
  static const uint32_t words[] = {0,    1,    63,         64,        65,
                                   68,   110,  4096 + 64,  4096 + 65,
                                   (1u << 20) + 64, (1u << 20) + 65,
                                   0x7fffffffu, 0xffffffffu, 0x4b4c424eu};
  static const uint8_t bytes[] = {0, 1, 2, 3, 0x3f, 0x40, 0x7f, 0x80,
                                  0xa0, 0xfc, 0xfd, 0xfe, 0xff};
  switch (below(8)) {
    case 0: /* flip a bit */
      if (len) buf[below(len)] ^= (uint8_t)(1u << below(8));
      break;
    case 1: /* a byte at a boundary */
      if (len) buf[below(len)] = bytes[below(sizeof bytes)];
      break;
    case 2: /* a little-endian 32-bit field at a boundary */
      if (len >= 5) {
        size_t at = 1 + below(len - 4);
        uint32_t w = words[below(sizeof words / sizeof words[0])];
        for (int i = 0; i < 4; i++) buf[at + i] = (uint8_t)(w >> (8 * i));
      }
      break;
    case 3: /* cut the stream short */
      if (len > 1) len = 1 + below(len - 1);
      break;
    case 4: /* delete a run */
      if (len > 2) {
        size_t at = 1 + below(len - 1), n = 1 + below(len - at < 80 ? len - at : 80);
        memmove(buf + at, buf + at + n, len - at - n);
        len -= n;
      }
      break;
    case 5: /* duplicate a run (a frame twice, a half frame) */
      if (len > 1) {
        size_t at = 1 + below(len - 1), n = 1 + below(len - at < 140 ? len - at : 140);
        if (len + n <= MAX_LEN) {
          size_t to = 1 + below(len);
          uint8_t tmp[140];
          memcpy(tmp, buf + at, n);
          memmove(buf + to + n, buf + to, len - to);
          memcpy(buf + to, tmp, n);
          len += n;
        }
      }
      break;
    case 6: { /* splice: the tail of another input */
      const input_t *o = &inputs[below(ninputs)];
      if (o->len > 1) {
        size_t at = 1 + below(len > 1 ? len - 1 : 1);
        if (at > len) at = len;
        size_t from = 1 + below(o->len - 1), n = o->len - from;
        if (at + n > MAX_LEN) n = MAX_LEN - at;
        memcpy(buf + at, o->data + from, n);
        len = at + n;
      }
      break;
    }
    default: /* another cut pattern (the seed byte) */
      if (len) buf[0] = (uint8_t)rnd();
  }
  return len;
}

/* Reads the byte at index n of a 16-byte heap block (n = 16: one past its
 * end); returns it, or never under ASan. */
static int plant_overflow(size_t n) {
  /* Through a volatile pointer UBSan cannot size the block: only ASan can
   * see the read, so the abort proves ASan is on. */
  uint8_t *volatile p = malloc(16);
  if (!p) return 1;
  int v = p[n];
  free(p);
  return v;
}

int main(int argc, char **argv) {
  unsigned long long mutations = 0, seed = 1;
  int i = 1;
  if (argc == 2 && !strcmp(argv[1], "--plant-overflow")) {
    volatile size_t past = 16; /* volatile: no compile-time bounds warning */
    printf("read past a block: %d (the sanitizer is off)\n", plant_overflow(past));
    return 0;
  }
  for (; i < argc && argv[i][0] == '-'; i++) {
    if (!strcmp(argv[i], "--mutate") && i + 1 < argc) {
      mutations = strtoull(argv[++i], NULL, 10);
    } else if (!strcmp(argv[i], "--seed") && i + 1 < argc) {
      seed = strtoull(argv[++i], NULL, 10);
    } else {
      fprintf(stderr, "usage: replay_frames [--mutate N] [--seed S] PATH...\n");
      return 2;
    }
  }
  if (i == argc) {
    fprintf(stderr, "usage: replay_frames [--mutate N] [--seed S] PATH...\n");
    return 2;
  }
  for (; i < argc; i++)
    if (load_path(argv[i]) != 0) return 2;
  if (ninputs == 0) {
    fprintf(stderr, "replay_frames: no input files\n");
    return 2;
  }
  for (size_t k = 0; k < ninputs; k++)
    LLVMFuzzerTestOneInput(inputs[k].data, inputs[k].len);
  rng_state = seed * 0x9e3779b97f4a7c15ull + 1;
  /* Each mutant is built in its own exact-size block, so ASan sees a read
   * past its end. */
  static uint8_t work[MAX_LEN];
  for (unsigned long long m = 0; m < mutations; m++) {
    const input_t *base = &inputs[below(ninputs)];
    size_t len = base->len;
    memcpy(work, base->data, len);
    for (size_t e = 1 + below(4); e > 0; e--) len = mutate_once(work, len);
    uint8_t *in = malloc(len ? len : 1);
    if (!in) abort();
    memcpy(in, work, len);
    LLVMFuzzerTestOneInput(in, len);
    free(in);
  }
  printf("replayed %zu files, %llu mutations\n", ninputs, mutations);
  for (size_t k = 0; k < ninputs; k++) free(inputs[k].data);
  free(inputs);
  return 0;
}
