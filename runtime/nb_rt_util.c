/* nb_rt_util.c: what every runtime file may use: formatted strings, error
 * lists, the package.path of the runtime's states, a plain Lua state for
 * the runtime's own work, the traceback handler, and copying plain data
 * between states. Calls nothing else of the runtime. */
#include "nb_rt_internal.h"

#include <uv.h>

#include <dlfcn.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lualib.h>

#ifndef NB_LUA_DEFAULT_DIR
#define NB_LUA_DEFAULT_DIR "/usr/local/share/lua/5.1"
#endif

/* ------------------------------------------------------------------ */
/* small helpers                                                       */

const char *const nb__card_text_keys[NB__CARD_TEXTS] = {
    NB__CARD_TEXT_MAP(NB__CARD_TEXT_NAME)};

char *nb__strf(const char *fmt, ...) {
  va_list ap, ap2;
  va_start(ap, fmt);
  va_copy(ap2, ap);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (n < 0) n = 0;
  char *s = malloc((size_t)n + 1);
  if (!s) abort();
  vsnprintf(s, (size_t)n + 1, fmt, ap2);
  va_end(ap2);
  return s;
}

/* Returns a malloc'd copy of s (NULL stays NULL). */
char *nb__strdup(const char *s) {
  if (!s) return NULL;
  size_t n = strlen(s) + 1;
  char *d = malloc(n);
  if (!d) abort();
  return memcpy(d, s, n);
}

void nb__addf(nb__buf_t *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (n < 0) return;
  size_t need = b->n + (size_t)n + 2;
  if (need > b->cap) {
    size_t cap = b->cap ? b->cap * 2 : 256;
    while (cap < need) cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) abort();
    b->p = p;
    b->cap = cap;
  }
  va_start(ap, fmt);
  vsnprintf(b->p + b->n, (size_t)n + 1, fmt, ap);
  va_end(ap);
  b->n += (size_t)n;
  b->p[b->n++] = '\n';
  b->p[b->n] = 0;
}

/* Returns the buffer's text without its last newline (caller frees). */
char *nb__take(nb__buf_t *b) {
  if (!b->p) return nb__strdup("");
  if (b->n && b->p[b->n - 1] == '\n') b->p[--b->n] = 0;
  return b->p;
}

void nb_rt_free_string(char *s) { free(s); }

/* ------------------------------------------------------------------ */
/* states                                                              */

/* Returns the directory holding this code (the executable, or
 * libnbruntime.so when loaded into busted) in buf, or "" when unknown. */
static const char *code_dir(char *buf, size_t size) {
  Dl_info info;
  char path[PATH_MAX];
  buf[0] = 0;
  if (dladdr((void *)code_dir, &info) && info.dli_fname &&
      strstr(info.dli_fname, ".so") && realpath(info.dli_fname, path)) {
    /* in a shared library: its own file */
  } else {
    ssize_t n = readlink("/proc/self/exe", path, sizeof path - 1);
    if (n <= 0) return buf;
    path[n] = 0;
  }
  char *slash = strrchr(path, '/');
  if (!slash) return buf;
  *slash = 0;
  snprintf(buf, size, "%s", path);
  return buf;
}

/* Returns the package.path prefix every state gets (computed once):
 * NB_LUA_PATH, then ../share/lua/5.1 and ../../lua beside the code, then
 * the compiled-in dir. */
const char *nb__lua_path(void) {
  static char *path;
  if (path) return path;
  nb__buf_t b = {0};
  const char *env = getenv("NB_LUA_PATH");
  if (env && *env) {
    if (strchr(env, '?')) {
      nb__addf(&b, "%s;", env); /* already Lua templates */
    } else {
      /* a ':'-separated list of directories */
      char *copy = nb__strdup(env), *save = NULL;
      for (char *d = strtok_r(copy, ":", &save); d; d = strtok_r(NULL, ":", &save))
        nb__addf(&b, "%s/?.lua;%s/?/init.lua;", d, d);
      free(copy);
    }
  }
  char dir[PATH_MAX], lua[PATH_MAX + 32], real[PATH_MAX];
  /* Beside the code: an install (PREFIX/bin or PREFIX/lib ->
   * PREFIX/share/lua/5.1), or a build tree (build/<cfg> -> lua). */
  static const char *const beside[] = {"../share/lua/5.1", "../../lua"};
  if (*code_dir(dir, sizeof dir)) {
    for (size_t i = 0; i < 2; i++) {
      snprintf(lua, sizeof lua, "%s/%s", dir, beside[i]);
      if (realpath(lua, real)) nb__addf(&b, "%s/?.lua;%s/?/init.lua;", real, real);
    }
  }
  nb__addf(&b, "%s/?.lua;%s/?/init.lua;", NB_LUA_DEFAULT_DIR, NB_LUA_DEFAULT_DIR);
  /* nb__addf ends every piece with a newline: drop them. */
  size_t j = 0;
  for (size_t i = 0; i < b.n; i++)
    if (b.p[i] != '\n') b.p[j++] = b.p[i];
  b.p[j] = 0;
  path = b.p;
  return path;
}

lua_State *nb__state_new(char **err) {
  return nb__state_new_with(NULL, NULL, err);
}

lua_State *nb__state_new_with(lua_Alloc f, void *ud, char **err) {
  lua_State *L = f ? lua_newstate(f, ud) : luaL_newstate();
  if (!L) {
    *err = nb__strdup("cannot create a Lua state: out of memory");
    return NULL;
  }
  luaL_openlibs(L);
  lua_getglobal(L, "package");
  lua_getfield(L, -1, "path");
  lua_pushfstring(L, "%s%s", nb__lua_path(), lua_tostring(L, -1));
  lua_setfield(L, -3, "path");
  lua_pop(L, 2);
  return L;
}

const char *nb_rt_lua_path(void) { return nb__lua_path(); }

/* Message handler for every lua_pcall: the error text plus a traceback. */
int nb__msgh(lua_State *L) {
  const char *msg = lua_tostring(L, 1);
  if (!msg) {
    if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING)
      return 1;
    msg = lua_pushfstring(L, "(error object is a %s value)",
                          luaL_typename(L, 1));
  }
  luaL_traceback(L, L, msg, 1);
  return 1;
}

/* ------------------------------------------------------------------ */
/* copying plain data between states                                   */

/* Copies the value at idx of from onto the top of to (nil, booleans,
 * numbers, strings, tables of those); returns 0, or -1 with *err naming
 * the path of the first value that cannot be copied (both stacks then hold
 * leftovers: the caller resets them with lua_settop). */
int nb__xcopy(lua_State *from, int idx, lua_State *to, const char *path,
              int depth, char **err) {
  if (idx < 0) idx = lua_gettop(from) + idx + 1;
  switch (lua_type(from, idx)) {
  case LUA_TNIL: lua_pushnil(to); return 0;
  case LUA_TBOOLEAN: lua_pushboolean(to, lua_toboolean(from, idx)); return 0;
  case LUA_TNUMBER: lua_pushnumber(to, lua_tonumber(from, idx)); return 0;
  case LUA_TSTRING: {
    size_t n;
    const char *s = lua_tolstring(from, idx, &n);
    lua_pushlstring(to, s, n);
    return 0;
  }
  case LUA_TTABLE: break;
  default:
    *err = nb__strf("%s: a %s cannot be copied into an agent's state "
                    "(plain data only)", path, luaL_typename(from, idx));
    return -1;
  }
  if (depth > 64) {
    *err = nb__strf("%s: nested more than 64 deep (a cycle?)", path);
    return -1;
  }
  if (!lua_checkstack(from, 4) || !lua_checkstack(to, 4)) {
    *err = nb__strf("%s: Lua stack overflow", path);
    return -1;
  }
  lua_newtable(to);
  lua_pushnil(from);
  while (lua_next(from, idx)) {
    char sub[512];
    int kt = lua_type(from, -2);
    if (kt == LUA_TSTRING)
      snprintf(sub, sizeof sub, "%s.%s", path, lua_tostring(from, -2));
    else if (kt == LUA_TNUMBER)
      snprintf(sub, sizeof sub, "%s[%.14g]", path, lua_tonumber(from, -2));
    else
      snprintf(sub, sizeof sub, "%s[%s]", path, luaL_typename(from, -2));
    if (kt != LUA_TSTRING && kt != LUA_TNUMBER && kt != LUA_TBOOLEAN) {
      *err = nb__strf("%s: a %s key cannot be copied", sub,
                      luaL_typename(from, -2));
      return -1;
    }
    if (nb__xcopy(from, -2, to, sub, depth + 1, err) ||
        nb__xcopy(from, -1, to, sub, depth + 1, err))
      return -1;
    lua_rawset(to, -3);
    lua_pop(from, 1);
  }
  return 0;
}

uint32_t nb__refs_retain(nb_arena_t *a, const nb_spike_t *s, size_t n) {
  uint32_t bad = 0;
  for (size_t i = 0; i < n; i++) {
    nb_arena_ref_t ref;
    if (!nb_spike_is_ref(&s[i]) || nb_spike_get_ref(&s[i], &ref) != 0)
      continue;
    if (!a || nb_arena_retain(a, &ref, 1) != 0) bad++;
  }
  return bad;
}

void nb__refs_release(nb_arena_t *a, const nb_spike_t *s, size_t n) {
  if (!a) return;
  nb_arena_releaser_t r = {.arena = a};
  for (size_t i = 0; i < n; i++) {
    nb_arena_ref_t ref;
    if (nb_spike_is_ref(&s[i]) && nb_spike_get_ref(&s[i], &ref) == 0)
      nb_arena_releaser_add(&r, &ref);
  }
  nb_arena_releaser_flush(&r);
}

void *nb__loop(nb_rt_t *rt) {
  if (!rt->loop) {
    uv_loop_t *l = malloc(sizeof *l);
    if (!l || uv_loop_init(l) != 0) abort();
    rt->loop = l;
    rt->own_loop = 1;
  }
  return rt->loop;
}

uint64_t nb__fnv1a(const char *p, size_t n) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (size_t i = 0; i < n; i++) {
    h ^= (unsigned char)p[i];
    h *= 0x100000001b3ull;
  }
  return h;
}

FILE *nb__log(FILE *f) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  struct tm tm;
  gmtime_r(&ts.tv_sec, &tm);
  char buf[40];
  strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  fprintf(f, "%s.%03ldZ ", buf, ts.tv_nsec / 1000000);
  return f;
}
