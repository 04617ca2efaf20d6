/* nb_rt_json.h: the JSON values of the statistics (`neuronbus run
 * --stats=json`), built with jansson: no JSON is encoded by hand. The
 * lowest layer of the runtime with nb_rt_util.c: it calls nothing else of
 * the runtime, so the fuzz target (spec/fuzz/fuzz_stats.c) links it alone.
 *
 * Every string that reaches the statistics goes through nb__json_str:
 * jansson refuses bytes that are not UTF-8, and a description or a peer's
 * cortex name may hold any. What is not well-formed UTF-8 (RFC 3629: no
 * overlong forms, no surrogates, nothing past U+10FFFF, no truncated
 * sequence) becomes U+FFFD, one for each maximal subpart (Unicode's
 * recommended practice, as Python's bytes.decode("utf-8", "replace") and
 * browsers do: a lone 0xff is one U+FFFD, a truncated 3-byte sequence
 * too); the valid parts are kept as they are. So every line is valid
 * UTF-8 JSON whatever the names (docs/cli.md). */
#ifndef NB_RT_JSON_H
#define NB_RT_JSON_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* The dump flags of a statistics line: compact, keys in insertion order,
 * reals with 15 significant digits (they are printf-rounded first, see
 * nb__json_num, so they print as that rounding did). */
#define NB__JSON_FLAGS (JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(15))

/* Returns the length of s[0..n) made valid UTF-8 (nb_rt_json.h's rule);
 * when out is not NULL, writes it there (room: nb__utf8_fixed_len). */
size_t nb__utf8_fix(const char *s, size_t n, char *out);

/* Returns the number of bytes s[0..n) takes once made valid UTF-8. */
static inline size_t nb__utf8_fixed_len(const char *s, size_t n) {
  return nb__utf8_fix(s, n, NULL);
}

/* Returns a new JSON string of the n bytes at s (any bytes: see above),
 * or NULL when out of memory. */
json_t *nb__json_strn(const char *s, size_t n);

/* Returns nb__json_strn of the C string s; NULL s gives JSON null. */
json_t *nb__json_str(const char *s);

/* Returns a new JSON integer of v (a real past INT64_MAX). */
json_t *nb__json_u64(uint64_t v);

/* Returns the number v as printf's fmt ("%.3f", "%.6g") writes it: an
 * integer when that text is one ("%.6g" of 1.0 is 1), else a real of the
 * rounded value (clamped to +-1e308); null when v is not finite (JSON has
 * no NaN). */
json_t *nb__json_num(const char *fmt, double v);

/* Sets obj[key] to v (a new reference, taken even on failure); returns 0
 * or -1. Shorthands for the statistics' members. */
int nb__json_set(json_t *obj, const char *key, json_t *v);
int nb__json_set_u64(json_t *obj, const char *key, uint64_t v);
int nb__json_set_str(json_t *obj, const char *key, const char *s);
int nb__json_set_bool(json_t *obj, const char *key, int b);

/* Writes v as one compact line (NB__JSON_FLAGS, then "\n") to f and drops
 * the reference; returns 0 or -1 (out of memory, write error). */
int nb__json_line(FILE *f, json_t *v);

#endif
