/* fuzz_utf8.h: the fuzz targets' UTF-8 oracle (fuzz_stats.c,
 * fuzz_manifest.c), written apart from the code under test: it decodes
 * each code point and checks its value, where nb_rt_json.c and
 * neuronbus.units use byte-range tables. */
#ifndef NB_FUZZ_UTF8_H
#define NB_FUZZ_UTF8_H

#include <stddef.h>

/* Returns 1 when s[0..n) is well-formed UTF-8 (no overlong form, no
 * surrogate, nothing past U+10FFFF). */
static inline int utf8_valid(const unsigned char *s, size_t n) {
  size_t i = 0;
  while (i < n) {
    unsigned c = s[i], len, cp;
    if (c < 0x80) { i++; continue; }
    if ((c & 0xe0) == 0xc0) len = 2, cp = c & 0x1f;
    else if ((c & 0xf0) == 0xe0) len = 3, cp = c & 0x0f;
    else if ((c & 0xf8) == 0xf0) len = 4, cp = c & 0x07;
    else return 0;
    if (i + len > n) return 0;
    for (unsigned k = 1; k < len; k++) {
      if ((s[i + k] & 0xc0) != 0x80) return 0;
      cp = (cp << 6) | (s[i + k] & 0x3f);
    }
    static const unsigned min[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < min[len] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
      return 0;
    i += len;
  }
  return 1;
}

#endif
