/* nb_rt_json.c: the statistics' JSON values (nb_rt_json.h). Calls nothing
 * else of the runtime. */
#include "nb_rt_json.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Returns the length of the well-formed UTF-8 sequence at p (m bytes
 * left, m > 0) with *ok 1, or with *ok 0 the length of the maximal subpart
 * of one there (the bytes that begin a sequence but do not finish it: at
 * least 1). Well-formed: RFC 3629, Table 3-7 of Unicode (the second
 * byte's range depends on the first: no overlong forms, no surrogates,
 * nothing past U+10FFFF). */
static size_t utf8_seq(const unsigned char *p, size_t m, int *ok) {
  unsigned char c = p[0];
  size_t len;
  unsigned char lo = 0x80, hi = 0xbf;
  *ok = 1;
  if (c < 0x80) return 1;
  if (c >= 0xc2 && c <= 0xdf) len = 2;
  else if (c >= 0xe0 && c <= 0xef) {
    len = 3;
    if (c == 0xe0) lo = 0xa0;      /* overlong */
    else if (c == 0xed) hi = 0x9f; /* surrogates */
  } else if (c >= 0xf0 && c <= 0xf4) {
    len = 4;
    if (c == 0xf0) lo = 0x90;      /* overlong */
    else if (c == 0xf4) hi = 0x8f; /* past U+10FFFF */
  } else {
    *ok = 0; /* a continuation byte, 0xc0, 0xc1, 0xf5..0xff */
    return 1;
  }
  for (size_t i = 1; i < len; i++) {
    if (i >= m || p[i] < lo || p[i] > hi) {
      *ok = 0;
      return i;
    }
    lo = 0x80, hi = 0xbf;
  }
  return len;
}

/* nb__utf8_fix, counting in *bad the subparts replaced. */
static size_t fix(const char *s, size_t n, char *out, size_t *bad) {
  const unsigned char *p = (const unsigned char *)s;
  size_t i = 0, o = 0;
  *bad = 0;
  while (i < n) {
    int ok;
    size_t k = utf8_seq(p + i, n - i, &ok);
    if (ok) {
      if (out) memcpy(out + o, p + i, k);
      o += k;
    } else { /* one U+FFFD for the maximal subpart */
      if (out) memcpy(out + o, "\xef\xbf\xbd", 3);
      o += 3;
      ++*bad;
    }
    i += k;
  }
  return o;
}

size_t nb__utf8_fix(const char *s, size_t n, char *out) {
  size_t bad;
  return fix(s, n, out, &bad);
}

json_t *nb__json_strn(const char *s, size_t n) {
  size_t bad, m = fix(s, n, NULL, &bad);
  if (!bad) return json_stringn(s, n); /* valid as it is */
  char *buf = malloc(m);
  if (!buf) return NULL;
  fix(s, n, buf, &bad);
  json_t *v = json_stringn(buf, m);
  free(buf);
  return v;
}

json_t *nb__json_str(const char *s) {
  return s ? nb__json_strn(s, strlen(s)) : json_null();
}

json_t *nb__json_u64(uint64_t v) {
  return v <= (uint64_t)INT64_MAX ? json_integer((json_int_t)v)
                                  : json_real((double)v);
}

json_t *nb__json_num(const char *fmt, double v) {
  if (!isfinite(v)) return json_null();
  char buf[400]; /* "%.3f" of DBL_MAX: 309 digits and the decimals */
  if (snprintf(buf, sizeof buf, fmt, v) >= (int)sizeof buf)
    snprintf(buf, sizeof buf, "%.15g", v);
  if (!strpbrk(buf, ".eE")) {
    char *end;
    long long i = strtoll(buf, &end, 10);
    if (*end == '\0') return json_integer((json_int_t)i);
  }
  double r = strtod(buf, NULL);
  /* Dumped with 15 digits, a real past 1e308 could round up past DBL_MAX,
   * which no parser takes back: clamped (no statistic comes near). */
  if (r > 1e308) r = 1e308;
  if (r < -1e308) r = -1e308;
  return json_real(r);
}

int nb__json_set(json_t *obj, const char *key, json_t *v) {
  return json_object_set_new(obj, key, v);
}

int nb__json_set_u64(json_t *obj, const char *key, uint64_t v) {
  return json_object_set_new(obj, key, nb__json_u64(v));
}

int nb__json_set_str(json_t *obj, const char *key, const char *s) {
  return json_object_set_new(obj, key, nb__json_str(s));
}

int nb__json_set_bool(json_t *obj, const char *key, int b) {
  return json_object_set_new(obj, key, json_boolean(b));
}

int nb__json_line(FILE *f, json_t *v) {
  int rc = v ? json_dumpf(v, f, NB__JSON_FLAGS) : -1;
  json_decref(v);
  if (rc == 0 && fputc('\n', f) == EOF) rc = -1;
  return rc;
}
