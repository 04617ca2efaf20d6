/* nb_rt_allow.c: what a sandboxed agent may reach outside its state: the
 * commands nb.exec may run (the neuron's exec key) and the directories
 * nb.files may read and write under (its files key). A neuron without
 * sandbox has no allowlist (a->allow is NULL) and no restriction.
 *
 * Commands: an entry without a slash matches the command name exactly as
 * given to nb.exec (then looked up on the runtime's own PATH, never the
 * PATH of the env the agent passes); an entry with one is an absolute path
 * that matches exactly. Directories: absolute, resolved with realpath when
 * the runtime starts (kept as written when they do not exist yet); a path
 * is inside one when its resolved form is the directory or below it.
 *
 * Threads: the runtime's thread. */
#include "nb_rt_internal.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

struct nb__allow_s {
  char **cmds, **dirs; /* NULL-terminated */
  char *listed[2];     /* for messages: "\"jq\", \"git\"" (or "nothing") */
};

/* Reads the array of strings at key of the table at idx into a
 * NULL-terminated malloc'd array (directories resolved when resolve);
 * returns it, never NULL. */
static char **strings(lua_State *C, int idx, const char *key, int resolve) {
  lua_getfield(C, idx, key);
  size_t n = lua_istable(C, -1) ? lua_objlen(C, -1) : 0;
  char **v = calloc(n + 1, sizeof *v);
  if (!v) abort();
  for (size_t i = 0; i < n; i++) {
    lua_rawgeti(C, -1, (int)i + 1);
    const char *s = lua_tostring(C, -1);
    char real[PATH_MAX];
    v[i] = nb__strdup(resolve && s && realpath(s, real) ? real : s ? s : "");
    lua_pop(C, 1);
  }
  lua_pop(C, 1);
  return v;
}

/* Returns the entries of v quoted and comma-separated (malloc'd). */
static char *listing(char **v) {
  nb__buf_t b = {0};
  if (!*v) return nb__strdup("nothing");
  for (; *v; v++) nb__addf(&b, "\"%s\"%s", *v, v[1] ? "," : "");
  /* one line: the buffer's newlines become spaces */
  char *s = nb__take(&b);
  for (char *p = s; *p; p++)
    if (*p == '\n') *p = ' ';
  return s;
}

void nb__allow_read(nb__agent_t *a, lua_State *C, int idx) {
  nb__allow_free(a);
  struct nb__allow_s *w = calloc(1, sizeof *w);
  if (!w) abort();
  w->cmds = strings(C, idx, "exec", 0);
  w->dirs = strings(C, idx, "files", 1);
  w->listed[0] = listing(w->cmds);
  w->listed[1] = listing(w->dirs);
  a->allow = w;
}

void nb__allow_free(nb__agent_t *a) {
  struct nb__allow_s *w = a->allow;
  if (!w) return;
  for (int k = 0; k < 2; k++) {
    char **v = k ? w->dirs : w->cmds;
    for (char **p = v; *p; p++) free(*p);
    free(v);
    free(w->listed[k]);
  }
  free(w);
  a->allow = NULL;
}

char *nb__allow_cmd(const nb__agent_t *a, const char *cmd) {
  const struct nb__allow_s *w = a->allow;
  if (!w) return NULL;
  for (char **p = w->cmds; *p; p++)
    if (!strcmp(*p, cmd)) return NULL;
  return nb__strf("nb.exec: \"%s\" is not allowed in the sandbox: it is not "
                  "in neurons.%s.exec (%s)", cmd, a->name, w->listed[0]);
}

char *nb__allow_path(const nb__agent_t *a, const char *what, const char *path,
                     const char *real) {
  const struct nb__allow_s *w = a->allow;
  if (!w) return NULL;
  for (char **p = w->dirs; *p; p++) {
    size_t n = strlen(*p);
    if (n && (*p)[n - 1] == '/') n--; /* "/" itself */
    if (!strncmp(real, *p, n) && (real[n] == 0 || real[n] == '/'))
      return NULL;
  }
  return nb__strf("%s: %s is outside the sandbox's directories (it resolves "
                  "to %s, not under neurons.%s.files: %s)", what, path, real,
                  a->name, w->listed[1]);
}
