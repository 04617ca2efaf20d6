/* fuzz_stats.c: libFuzzer target for the statistics' JSON writer
 * (runtime/nb_rt_json.c), the property being that its output always
 * parses whatever bytes the names hold.
 *
 * Build: clang -fsanitize=fuzzer,address,undefined (make fuzz); cc with
 * spec/fuzz/replay.c in make test (spec/e2e/fuzz_smoke.sh). Input: the
 * first 16 bytes, when there are that many, are two doubles (the line's
 * reals, NaN and infinities included); the rest, cut at each NUL byte,
 * are the strings (a C string cannot hold a NUL): the topology, then
 * neuron names and descriptions, then link peers and URLs. The line is
 * built as the statistics build theirs and written by nb__json_line to a
 * memory stream; then:
 *   - it is one line: ends with "\n", no other newline;
 *   - json_loads parses it (jansson refuses invalid UTF-8 on reading);
 *   - every string comes back: exactly as given when it was valid UTF-8
 *     (an oracle decoder of its own decides), else changed, with the same
 *     ASCII bytes in the same order (only the bytes of an ill-formed
 *     sequence, all >= 0x80, become U+FFFD), and the fix is idempotent;
 *   - the reals come back as numbers, or null when not finite.
 * A difference traps, so libFuzzer reports it like a crash. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nb_rt_json.h"
#include "fuzz_utf8.h"

#define MAX_STRS 64

/* Returns 1 when the ASCII bytes of a and b are the same sequence. */
static int same_ascii(const char *a, size_t na, const char *b, size_t nb) {
  size_t i = 0, j = 0;
  for (;;) {
    while (i < na && (unsigned char)a[i] >= 0x80) i++;
    while (j < nb && (unsigned char)b[j] >= 0x80) j++;
    if (i == na || j == nb) return i == na && j == nb;
    if (a[i++] != b[j++]) return 0;
  }
}

/* Checks that v is the string s[0..n) made valid (see the head). */
static void check_str(const json_t *v, const char *s, size_t n) {
  if (!json_is_string(v)) __builtin_trap();
  const char *o = json_string_value(v);
  size_t m = json_string_length(v);
  if (utf8_valid((const unsigned char *)s, n)) {
    if (m != n || memcmp(o, s, n)) __builtin_trap();
  } else {
    if (m == n && !memcmp(o, s, n)) __builtin_trap();
    if (!same_ascii(s, n, o, m)) __builtin_trap();
  }
  if (!utf8_valid((const unsigned char *)o, m)) __builtin_trap();
  /* Idempotent: what it wrote is left as it is. */
  char *again = malloc(m ? m : 1);
  if (!again) abort();
  if (nb__utf8_fix(o, m, again) != m || memcmp(again, o, m)) __builtin_trap();
  free(again);
}

int LLVMFuzzerTestOneInput(const uint8_t *in, size_t size) {
  double r[2] = {0.5, 123.25};
  if (size >= 16) {
    memcpy(r, in, 16);
    in += 16, size -= 16;
  }
  const char *str[MAX_STRS];
  size_t len[MAX_STRS], ns = 0;
  for (size_t i = 0, at = 0; i <= size && ns < MAX_STRS; i++)
    if (i == size || in[i] == 0) {
      str[ns] = (const char *)in + at, len[ns++] = i - at;
      at = i + 1;
    }
  /* nb__json_str takes C strings: copies with their NUL. */
  char *cs[MAX_STRS];
  for (size_t i = 0; i < ns; i++) {
    cs[i] = malloc(len[i] + 1);
    if (!cs[i]) abort();
    memcpy(cs[i], str[i], len[i]);
    cs[i][len[i]] = 0;
  }
  /* The line, shaped as nb_rt_print_stats shapes it. */
  json_t *o = json_object();
  nb__json_set_str(o, "type", "stats");
  nb__json_set_bool(o, "final", 1);
  nb__json_set_str(o, "topology", cs[0]);
  nb__json_set_u64(o, "ticks", len[0] ? UINT64_MAX >> (len[0] % 64) : 0);
  nb__json_set(o, "elapsed_s", nb__json_num("%.3f", r[0]));
  nb__json_set(o, "spikes_per_s", nb__json_num("%.1f", r[1]));
  json_t *ns_ = json_array(), *links = json_array(), *syn = json_array();
  size_t half = 1 + (ns - 1) / 2;
  for (size_t i = 1; i < half; i += 2) {
    json_t *n = json_object();
    nb__json_set_u64(n, "id", i);
    nb__json_set_str(n, "name", cs[i]);
    if (i + 1 < half) nb__json_set_str(n, "description", cs[i + 1]);
    json_array_append_new(ns_, n);
    json_t *s = json_object();
    nb__json_set_str(s, "from", cs[i]);
    nb__json_set_str(s, "to", cs[0]);
    nb__json_set(s, "weight", nb__json_num("%.6g", (float)r[0]));
    nb__json_set_bool(s, "stdp", i & 2);
    json_array_append_new(syn, s);
  }
  nb__json_set(o, "neurons", ns_);
  nb__json_set(o, "synapses", syn);
  for (size_t i = half; i < ns; i += 2) {
    json_t *l = json_object();
    nb__json_set_str(l, "peer", cs[i]);
    nb__json_set_str(l, "url", i + 1 < ns ? cs[i + 1] : NULL);
    json_array_append_new(links, l);
  }
  nb__json_set(o, "links", links);

  char *buf = NULL;
  size_t blen = 0;
  FILE *f = open_memstream(&buf, &blen);
  if (!f) abort();
  if (nb__json_line(f, o) != 0) __builtin_trap();
  fclose(f);
  /* One line. */
  if (blen == 0 || buf[blen - 1] != '\n' || memchr(buf, '\n', blen - 1))
    __builtin_trap();
  json_error_t err;
  json_t *back = json_loadb(buf, blen, 0, &err);
  if (!back) __builtin_trap();
  check_str(json_object_get(back, "topology"), str[0], len[0]);
  json_t *v = json_object_get(back, "elapsed_s");
  if (isfinite(r[0]) ? !json_is_number(v) : !json_is_null(v)) __builtin_trap();
  v = json_object_get(back, "spikes_per_s");
  if (isfinite(r[1]) ? !json_is_number(v) : !json_is_null(v)) __builtin_trap();
  json_t *bn = json_object_get(back, "neurons");
  for (size_t i = 1, k = 0; i < half; i += 2, k++) {
    json_t *n = json_array_get(bn, k);
    check_str(json_object_get(n, "name"), str[i], len[i]);
    if (i + 1 < half)
      check_str(json_object_get(n, "description"), str[i + 1], len[i + 1]);
  }
  json_t *bl = json_object_get(back, "links");
  for (size_t i = half, k = 0; i < ns; i += 2, k++) {
    json_t *l = json_array_get(bl, k);
    check_str(json_object_get(l, "peer"), str[i], len[i]);
    if (i + 1 < ns) check_str(json_object_get(l, "url"), str[i + 1], len[i + 1]);
    else if (!json_is_null(json_object_get(l, "url"))) __builtin_trap();
  }
  json_decref(back);
  free(buf);
  for (size_t i = 0; i < ns; i++) free(cs[i]);
  return 0;
}
