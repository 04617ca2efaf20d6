/* nb_lpattern.c: string.find, match, gmatch and gsub with a step count.
 * See nb_lpattern_internal.h for the contract; the notes here say why.
 *
 * The matcher is LuaJIT 2.1's (src/lib_string.c of the OpenResty branch
 * 2.1-20230119, the LuaJIT this runtime is built with), itself taken from
 * Lua 5.1's lstrlib.c. Its behaviour is kept byte for byte (the results,
 * the error messages, LuaJIT's ASCII character classes, its depth limit,
 * %f and %g); what is added is a count of the matcher's steps, which calls
 * the state's time-limit check every NB_LPATTERN_STEPS steps.
 *
 *   LuaJIT -- a Just-In-Time Compiler for Lua. https://luajit.org/
 *   Copyright (C) 2005-2022 Mike Pall. All rights reserved.
 *   Lua 5.1 -- Copyright (C) 1994-2008 Lua.org, PUC-Rio.
 *
 *   Permission is hereby granted, free of charge, to any person obtaining
 *   a copy of this software and associated documentation files (the
 *   "Software"), to deal in the Software without restriction, including
 *   without limitation the rights to use, copy, modify, merge, publish,
 *   distribute, sublicense, and/or sell copies of the Software, and to
 *   permit persons to whom the Software is furnished to do so, subject to
 *   the following conditions:
 *
 *   The above copyright notice and this permission notice shall be
 *   included in all copies or substantial portions of the Software.
 *
 *   THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND,
 *   EXPRESS OR IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF
 *   MERCHANTABILITY, FITNESS FOR A PARTICULAR PURPOSE AND
 *   NONINFRINGEMENT. IN NO EVENT SHALL THE AUTHORS OR COPYRIGHT HOLDERS BE
 *   LIABLE FOR ANY CLAIM, DAMAGES OR OTHER LIABILITY, WHETHER IN AN ACTION
 *   OF CONTRACT, TORT OR OTHERWISE, ARISING FROM, OUT OF OR IN CONNECTION
 *   WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE SOFTWARE. */
#include "nb_lpattern_internal.h"

#include <stdint.h>
#include <string.h>

#include <lauxlib.h>

/* ---- character classes ---------------------------------------------
 *
 * LuaJIT's own table (lj_char.c, public domain), not the C library's
 * locale-dependent ctype: bytes 128-255 belong to no class. */

#define CH_CNTRL 0x01
#define CH_SPACE 0x02
#define CH_PUNCT 0x04
#define CH_DIGIT 0x08
#define CH_XDIGIT 0x10
#define CH_UPPER 0x20
#define CH_LOWER 0x40
#define CH_ALPHA (CH_LOWER | CH_UPPER)
#define CH_ALNUM (CH_ALPHA | CH_DIGIT)
#define CH_GRAPH (CH_ALNUM | CH_PUNCT)

static const uint8_t char_bits[256] = {
    1,   1,   1,   1,   1,   1,   1,   1,   1,   3,   3,   3,   3,   3,   1,   1,
    1,   1,   1,   1,   1,   1,   1,   1,   1,   1,   1,   1,   1,   1,   1,   1,
    2,   4,   4,   4,   4,   4,   4,   4,   4,   4,   4,   4,   4,   4,   4,   4,
    152, 152, 152, 152, 152, 152, 152, 152, 152, 152, 4,   4,   4,   4,   4,   4,
    4,   176, 176, 176, 176, 176, 176, 160, 160, 160, 160, 160, 160, 160, 160, 160,
    160, 160, 160, 160, 160, 160, 160, 160, 160, 160, 160, 4,   4,   4,   4,   132,
    4,   208, 208, 208, 208, 208, 208, 192, 192, 192, 192, 192, 192, 192, 192, 192,
    192, 192, 192, 192, 192, 192, 192, 192, 192, 192, 192, 4,   4,   4,   4,   1,
    128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128,
    128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128,
    128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128,
    128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128,
    128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128,
    128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128,
    128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128,
    128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128};

#define char_isa(c, t) (char_bits[(c)] & (t))
#define uchar(c) ((unsigned char)(c))

/* LuaJIT's LJ_MAX_XLEVEL: match nesting past it is "pattern too complex". */
#define MAX_DEPTH 200
#define MAXCAPTURES LUA_MAXCAPTURES
#define CAP_UNFINISHED (-1)
#define CAP_POSITION (-2)
#define L_ESC '%'

typedef struct {
  const char *src_init; /* start of the subject */
  const char *src_end;  /* its end (the '\0' Lua keeps after it) */
  lua_State *L;
  nb_lstate_t *S; /* the state whose limit applies, NULL: none */
  int32_t steps;  /* left before the next check */
  int level;      /* captures, finished or not */
  int depth;
  struct {
    const char *init;
    ptrdiff_t len;
  } capture[MAXCAPTURES];
} match_t;

/* Runs the time-limit check and starts a new count; returns nothing (the
 * check raises past the limit). */
static void steps_check(match_t *ms) {
  ms->steps = NB_LPATTERN_STEPS;
  if (ms->S) nb__lstate_c_check(ms->L, ms->S);
}

/* Counts n steps, checking the limit when the count runs out. */
#define STEP(ms, n)                                                          \
  do {                                                                       \
    if (((ms)->steps -= (int32_t)(n)) <= 0) steps_check(ms);                \
  } while (0)

/* ---- the matcher (LuaJIT's, with the step count) -------------------- */

/* Returns the index of back-reference %l, raises for an invalid one. */
static int check_capture(match_t *ms, int l) {
  l -= '1';
  if (l < 0 || l >= ms->level || ms->capture[l].len == CAP_UNFINISHED)
    luaL_error(ms->L, "invalid capture index");
  return l;
}

/* Returns the innermost open capture, raises when none is open. */
static int capture_to_close(match_t *ms) {
  int level = ms->level;
  for (level--; level >= 0; level--)
    if (ms->capture[level].len == CAP_UNFINISHED) return level;
  luaL_error(ms->L, "invalid pattern capture");
  return 0;
}

/* Returns the end of the single-character class at p, raises for a
 * malformed one. */
static const char *classend(match_t *ms, const char *p) {
  switch (*p++) {
  case L_ESC:
    if (*p == '\0') luaL_error(ms->L, "malformed pattern (ends with '%%')");
    return p + 1;
  case '[':
    if (*p == '^') p++;
    do { /* look for a ']' */
      if (*p == '\0') luaL_error(ms->L, "malformed pattern (missing ']')");
      if (*(p++) == L_ESC && *p != '\0') p++; /* skip escapes (e.g. '%]') */
    } while (*p != ']');
    return p + 1;
  default:
    return p;
  }
}

static const unsigned char match_class_map[32] = {
    0, CH_ALPHA, 0, CH_CNTRL, CH_DIGIT, 0, 0, CH_GRAPH, 0, 0, 0,
    0, CH_LOWER, 0, 0, 0, CH_PUNCT, 0, 0, CH_SPACE, 0, CH_UPPER,
    0, CH_ALNUM, CH_XDIGIT, 0, 0, 0, 0, 0, 0, 0};

/* Returns whether byte c is in class %cl. */
static int match_class(int c, int cl) {
  if ((cl & 0xc0) == 0x40) {
    int t = match_class_map[(cl & 0x1f)];
    if (t) {
      t = char_isa(c, t);
      return (cl & 0x20) ? t : !t;
    }
    if (cl == 'z') return c == 0;
    if (cl == 'Z') return c != 0;
  }
  return (cl == c);
}

/* Returns whether byte c is in the set [...] from p to ec (its ']'). */
static int matchbracketclass(int c, const char *p, const char *ec) {
  int sig = 1;
  if (*(p + 1) == '^') {
    sig = 0;
    p++; /* skip the '^' */
  }
  while (++p < ec) {
    if (*p == L_ESC) {
      p++;
      if (match_class(c, uchar(*p))) return sig;
    } else if ((*(p + 1) == '-') && (p + 2 < ec)) {
      p += 2;
      if (uchar(*(p - 2)) <= c && c <= uchar(*p)) return sig;
    } else if (uchar(*p) == c) {
      return sig;
    }
  }
  return !sig;
}

/* Returns whether byte c matches the single-character class p..ep. */
static int singlematch(int c, const char *p, const char *ep) {
  switch (*p) {
  case '.': return 1; /* matches any char */
  case L_ESC: return match_class(c, uchar(*(p + 1)));
  case '[': return matchbracketclass(c, p, ep - 1);
  default: return (uchar(*p) == c);
  }
}

static const char *match(match_t *ms, const char *s, const char *p);

/* Returns the end of the balanced %bxy run at s, or NULL. */
static const char *matchbalance(match_t *ms, const char *s, const char *p) {
  if (*p == 0 || *(p + 1) == 0) luaL_error(ms->L, "unbalanced pattern");
  if (*s != *p) {
    return NULL;
  } else {
    int b = *p;
    int e = *(p + 1);
    int cont = 1;
    while (++s < ms->src_end) {
      STEP(ms, 1);
      if (*s == e) {
        if (--cont == 0) return s + 1;
      } else if (*s == b) {
        cont++;
      }
    }
  }
  return NULL; /* string ends out of balance */
}

/* Greedy repetition: returns the end of the longest run of p..ep at s
 * after which the rest matches, or NULL. */
static const char *max_expand(match_t *ms, const char *s, const char *p,
                              const char *ep) {
  ptrdiff_t i = 0; /* counts maximum expand for item */
  while ((s + i) < ms->src_end && singlematch(uchar(*(s + i)), p, ep)) {
    STEP(ms, 1);
    i++;
  }
  /* keeps trying to match with the maximum repetitions */
  while (i >= 0) {
    const char *res = match(ms, (s + i), ep + 1);
    if (res) return res;
    i--; /* else didn't match; reduce 1 repetition to try again */
  }
  return NULL;
}

/* Lazy repetition: returns the end of the shortest run of p..ep at s
 * after which the rest matches, or NULL. */
static const char *min_expand(match_t *ms, const char *s, const char *p,
                              const char *ep) {
  for (;;) {
    const char *res = match(ms, s, ep + 1);
    if (res != NULL)
      return res;
    else if (s < ms->src_end && singlematch(uchar(*s), p, ep))
      s++; /* try with one more repetition */
    else
      return NULL;
  }
}

/* Opens a capture at s and matches the rest; returns its end or NULL. */
static const char *start_capture(match_t *ms, const char *s, const char *p,
                                 int what) {
  const char *res;
  int level = ms->level;
  if (level >= MAXCAPTURES) luaL_error(ms->L, "too many captures");
  ms->capture[level].init = s;
  ms->capture[level].len = what;
  ms->level = level + 1;
  if ((res = match(ms, s, p)) == NULL) /* match failed? */
    ms->level--;                       /* undo capture */
  return res;
}

/* Closes the innermost open capture at s and matches the rest; returns
 * its end or NULL. */
static const char *end_capture(match_t *ms, const char *s, const char *p) {
  int l = capture_to_close(ms);
  const char *res;
  ms->capture[l].len = s - ms->capture[l].init; /* close capture */
  if ((res = match(ms, s, p)) == NULL)          /* match failed? */
    ms->capture[l].len = CAP_UNFINISHED;        /* undo capture */
  return res;
}

/* Matches back-reference %l at s; returns its end or NULL. */
static const char *match_capture(match_t *ms, const char *s, int l) {
  size_t len;
  l = check_capture(ms, l);
  len = (size_t)ms->capture[l].len;
  STEP(ms, len / 16);
  if ((size_t)(ms->src_end - s) >= len &&
      memcmp(ms->capture[l].init, s, len) == 0)
    return s + len;
  else
    return NULL;
}

/* Matches pattern p at subject position s; returns the end of the match
 * or NULL. */
static const char *match(match_t *ms, const char *s, const char *p) {
  if (++ms->depth > MAX_DEPTH) luaL_error(ms->L, "pattern too complex");
init: /* using goto's to optimize tail recursion */
  STEP(ms, 1);
  switch (*p) {
  case '(':                 /* start capture */
    if (*(p + 1) == ')')    /* position capture? */
      s = start_capture(ms, s, p + 2, CAP_POSITION);
    else
      s = start_capture(ms, s, p + 1, CAP_UNFINISHED);
    break;
  case ')': /* end capture */
    s = end_capture(ms, s, p + 1);
    break;
  case L_ESC:
    switch (*(p + 1)) {
    case 'b': /* balanced string? */
      s = matchbalance(ms, s, p + 2);
      if (s == NULL) break;
      p += 4;
      goto init; /* else s = match(ms, s, p+4); */
    case 'f': {  /* frontier? */
      const char *ep;
      char previous;
      p += 2;
      if (*p != '[') luaL_error(ms->L, "missing '[' after '%%f' in pattern");
      ep = classend(ms, p); /* points to what is next */
      previous = (s == ms->src_init) ? '\0' : *(s - 1);
      if (matchbracketclass(uchar(previous), p, ep - 1) ||
          !matchbracketclass(uchar(*s), p, ep - 1)) {
        s = NULL;
        break;
      }
      p = ep;
      goto init; /* else s = match(ms, s, ep); */
    }
    default:
      if (char_isa(uchar(*(p + 1)), CH_DIGIT)) { /* capture results (%0-%9)? */
        s = match_capture(ms, s, uchar(*(p + 1)));
        if (s == NULL) break;
        p += 2;
        goto init; /* else s = match(ms, s, p+2) */
      }
      goto dflt; /* case default */
    }
    break;
  case '\0': /* end of pattern */
    break;   /* match succeeded */
  case '$':
    /* is the '$' the last char in pattern? */
    if (*(p + 1) != '\0') goto dflt;
    if (s != ms->src_end) s = NULL; /* check end of string */
    break;
  default:
  dflt: {                               /* it is a pattern item */
    const char *ep = classend(ms, p); /* points to what is next */
    int m = s < ms->src_end && singlematch(uchar(*s), p, ep);
    switch (*ep) {
    case '?': { /* optional */
      const char *res;
      if (m && ((res = match(ms, s + 1, ep + 1)) != NULL)) {
        s = res;
        break;
      }
      p = ep + 1;
      goto init; /* else s = match(ms, s, ep+1); */
    }
    case '*': /* 0 or more repetitions */
      s = max_expand(ms, s, p, ep);
      break;
    case '+': /* 1 or more repetitions */
      s = (m ? max_expand(ms, s + 1, p, ep) : NULL);
      break;
    case '-': /* 0 or more repetitions (minimum) */
      s = min_expand(ms, s, p, ep);
      break;
    default:
      if (m) {
        s++;
        p = ep;
        goto init; /* else s = match(ms, s+1, ep); */
      }
      s = NULL;
      break;
    }
    break;
  }
  }
  ms->depth--;
  return s;
}

/* Pushes capture i (the whole match s..e when there is none); raises for
 * an invalid or unfinished one. */
static void push_onecapture(match_t *ms, int i, const char *s, const char *e) {
  if (i >= ms->level) {
    if (i == 0) /* ms->level == 0, too */
      lua_pushlstring(ms->L, s, (size_t)(e - s)); /* add whole match */
    else
      luaL_error(ms->L, "invalid capture index");
  } else {
    ptrdiff_t l = ms->capture[i].len;
    if (l == CAP_UNFINISHED) luaL_error(ms->L, "unfinished capture");
    if (l == CAP_POSITION)
      lua_pushinteger(ms->L, ms->capture[i].init - ms->src_init + 1);
    else
      lua_pushlstring(ms->L, ms->capture[i].init, (size_t)l);
  }
}

/* Pushes every capture (or the whole match s..e when s and there is
 * none); returns how many. */
static int push_captures(match_t *ms, const char *s, const char *e) {
  int i;
  int nlevels = (ms->level == 0 && s) ? 1 : ms->level;
  luaL_checkstack(ms->L, nlevels, "too many captures");
  for (i = 0; i < nlevels; i++) push_onecapture(ms, i, s, e);
  return nlevels; /* number of strings pushed */
}

/* ---- the library functions ------------------------------------------ */

/* Starts a match over the subject s of length n in L; returns nothing. */
static void match_init(match_t *ms, lua_State *L, const char *s, size_t n) {
  ms->L = L;
  ms->S = nb_lstate_from_L(L);
  ms->steps = NB_LPATTERN_STEPS;
  ms->src_init = s;
  ms->src_end = s + n;
}

/* Returns whether p holds a pattern character (LuaJIT's test for the
 * plain path: the whole string, past any '\0'). */
static int has_pattern(const char *p, size_t n) {
  for (size_t i = 0; i < n; i++) {
    int c = uchar(p[i]);
    if (char_isa(c, CH_PUNCT) && strchr("^$*+?.([%-", c)) return 1;
  }
  return 0;
}

/* Returns the first occurrence of p (plen bytes) in s (slen bytes) or
 * NULL. Past 256 bytes, memmem: it is linear in both lengths (LuaJIT's memchr and memcmp loop
 * is not: a long needle of 'a's in a long subject of 'a's is quadratic),
 * and a long subject is searched in chunks with the limit checked between
 * them; a chunk is at least the needle, so the search stays linear. */
static const char *plain_find(match_t *ms, const char *s, size_t slen,
                              const char *p, size_t plen) {
  if (plen > slen) return NULL;
  if (slen <= 256 && plen) {
    /* Short subjects: LuaJIT's own loop, cheaper to start than memmem and
     * bounded here (256 x 256 byte compares at most). */
    const char *end = s + slen - plen + 1;
    int c = uchar(p[0]);
    while (s < end) {
      const char *q = memchr(s, c, (size_t)(end - s));
      if (!q) return NULL;
      if (memcmp(q + 1, p + 1, plen - 1) == 0) return q;
      s = q + 1;
    }
    return NULL;
  }
  size_t chunk = NB_LPATTERN_PLAIN_CHUNK;
  if (chunk < plen) chunk = plen;
  for (size_t off = 0;; off += chunk) {
    size_t win = slen - off;
    if (win > chunk + plen - 1) win = chunk + plen - 1;
    const char *q = memmem(s + off, win, p, plen);
    if (q || off + win >= slen) return q;
    steps_check(ms);
  }
}

/* Converts an init argument as LuaJIT's lj_lib_checkint does (x86's
 * truncation: out of range and NaN become INT32_MIN); returns it. */
static int32_t opt_int32(lua_State *L, int arg, int32_t def) {
  if (lua_isnoneornil(L, arg)) return def;
  lua_Number n = luaL_checknumber(L, arg);
  if (!(n > -2147483649.0 && n < 2147483648.0)) return INT32_MIN;
  return (int32_t)n;
}

/* string.find (find = 1) and string.match (find = 0): returns what
 * LuaJIT's return. */
static int str_find_aux(lua_State *L, int find) {
  size_t slen, plen;
  const char *s = luaL_checklstring(L, 1, &slen);
  const char *p = luaL_checklstring(L, 2, &plen);
  int32_t start = opt_int32(L, 3, 1);
  size_t st;
  match_t ms;
  if (start < 0) start += (int32_t)slen;
  else start--;
  if (start < 0) start = 0;
  st = (size_t)start;
  if (st > slen) st = slen;
  match_init(&ms, L, s, slen);
  if (find && (lua_toboolean(L, 4) || !has_pattern(p, plen))) {
    /* Search for a fixed string. */
    const char *q = plain_find(&ms, s + st, slen - st, p, plen);
    if (q) {
      lua_pushinteger(L, (int32_t)(q - s) + 1);
      lua_pushinteger(L, (int32_t)(q - s) + (int32_t)plen);
      return 2;
    }
  } else { /* Search for a pattern. */
    const char *sstr = s + st;
    int anchor = 0;
    if (*p == '^') {
      p++;
      anchor = 1;
    }
    do { /* Loop through the string and try to match the pattern. */
      const char *q;
      ms.level = ms.depth = 0;
      q = match(&ms, sstr, p);
      if (q) {
        if (find) {
          lua_pushinteger(L, (int32_t)(sstr - (s - 1)));
          lua_pushinteger(L, (int32_t)(q - s));
          return push_captures(&ms, NULL, NULL) + 2;
        } else {
          return push_captures(&ms, sstr, q);
        }
      }
    } while (sstr++ < ms.src_end && !anchor);
  }
  lua_pushnil(L); /* Not found. */
  return 1;
}

/* string.find: returns what LuaJIT's returns. */
static int str_find(lua_State *L) { return str_find_aux(L, 1); }

/* string.match: returns what LuaJIT's returns. */
static int str_match(lua_State *L) { return str_find_aux(L, 0); }

/* The gmatch iterator (upvalues: subject, pattern, next position):
 * returns the next match's captures, nothing at the end. */
static int gmatch_aux(lua_State *L) {
  size_t slen;
  const char *s = lua_tolstring(L, lua_upvalueindex(1), &slen);
  const char *p = lua_tostring(L, lua_upvalueindex(2));
  const char *src = s + (size_t)lua_tointeger(L, lua_upvalueindex(3));
  match_t ms;
  match_init(&ms, L, s, slen);
  for (; src <= ms.src_end; src++) {
    const char *e;
    ms.level = ms.depth = 0;
    if ((e = match(&ms, src, p)) != NULL) {
      int32_t pos = (int32_t)(e - s);
      if (e == src) pos++; /* Ensure progress for empty match. */
      lua_pushinteger(L, pos);
      lua_replace(L, lua_upvalueindex(3));
      return push_captures(&ms, src, e);
    }
  }
  return 0; /* not found */
}

/* string.gmatch: returns the iterator over s's matches of p. */
static int str_gmatch(lua_State *L) {
  luaL_checkstring(L, 1);
  luaL_checkstring(L, 2);
  lua_settop(L, 2);
  lua_pushinteger(L, 0);
  lua_pushcclosure(L, gmatch_aux, 3);
  return 1;
}

/* Adds gsub's string replacement (argument 3, %0-%9 expanded) for the
 * match s..e to b; raises for an invalid capture index. */
static void add_s(match_t *ms, luaL_Buffer *b, const char *s, const char *e) {
  size_t l, i;
  const char *news = lua_tolstring(ms->L, 3, &l);
  STEP(ms, l / 16);
  for (i = 0; i < l; i++) {
    if (news[i] != L_ESC) {
      luaL_addchar(b, news[i]);
    } else {
      i++; /* skip ESC */
      if (!char_isa(uchar(news[i]), CH_DIGIT)) {
        luaL_addchar(b, news[i]);
      } else if (news[i] == '0') {
        luaL_addlstring(b, s, (size_t)(e - s));
      } else {
        push_onecapture(ms, news[i] - '1', s, e);
        luaL_addvalue(b); /* add capture to accumulated result */
      }
    }
  }
}

/* Adds the replacement for the match s..e to b (a string, a function's
 * result, a table's value; the match itself for nil or false); raises
 * for any other value. */
static void add_value(match_t *ms, luaL_Buffer *b, const char *s,
                      const char *e) {
  lua_State *L = ms->L;
  switch (lua_type(L, 3)) {
  case LUA_TNUMBER:
  case LUA_TSTRING: {
    add_s(ms, b, s, e);
    return;
  }
  case LUA_TFUNCTION: {
    int n;
    lua_pushvalue(L, 3);
    n = push_captures(ms, s, e);
    lua_call(L, n, 1); /* Lua code: its own hook and budget apply */
    break;
  }
  case LUA_TTABLE: {
    push_onecapture(ms, 0, s, e);
    lua_gettable(L, 3);
    break;
  }
  }
  if (!lua_toboolean(L, -1)) { /* nil or false? */
    lua_pop(L, 1);
    lua_pushlstring(L, s, (size_t)(e - s)); /* keep original text */
  } else if (!lua_isstring(L, -1)) {
    luaL_error(L, "invalid replacement value (a %s)", luaL_typename(L, -1));
  }
  luaL_addvalue(b); /* add result to accumulator */
}

/* string.gsub: returns the new string and the number of replacements,
 * as LuaJIT's does. */
static int str_gsub(lua_State *L) {
  size_t srcl;
  const char *src = luaL_checklstring(L, 1, &srcl);
  const char *p = luaL_checkstring(L, 2);
  int tr = lua_type(L, 3);
  int max_s = luaL_optint(L, 4, (int)(srcl + 1));
  int anchor = (*p == '^') ? (p++, 1) : 0;
  int n = 0;
  match_t ms;
  luaL_Buffer b;
  if (!(tr == LUA_TNUMBER || tr == LUA_TSTRING || tr == LUA_TFUNCTION ||
        tr == LUA_TTABLE))
    luaL_argerror(L, 3, "string/function/table expected");
  luaL_buffinit(L, &b);
  match_init(&ms, L, src, srcl);
  while (n < max_s) {
    const char *e;
    ms.level = ms.depth = 0;
    e = match(&ms, src, p);
    if (e) {
      n++;
      add_value(&ms, &b, src, e);
    }
    if (e && e > src) /* non empty match? */
      src = e;        /* skip it */
    else if (src < ms.src_end)
      luaL_addchar(&b, *src++);
    else
      break;
    if (anchor) break;
  }
  luaL_addlstring(&b, src, (size_t)(ms.src_end - src));
  luaL_pushresult(&b);
  lua_pushinteger(L, n); /* number of substitutions */
  return 2;
}

int nb__lpattern_register(lua_State *L, int idx) {
  static const luaL_Reg fns[] = {{"find", str_find},
                                 {"match", str_match},
                                 {"gmatch", str_gmatch},
                                 {"gsub", str_gsub},
                                 {NULL, NULL}};
  if (idx < 0 && idx > LUA_REGISTRYINDEX) idx = lua_gettop(L) + idx + 1;
  for (const luaL_Reg *r = fns; r->name; r++) {
    lua_pushcfunction(L, r->func);
    lua_setfield(L, idx, r->name);
  }
  return 0;
}
