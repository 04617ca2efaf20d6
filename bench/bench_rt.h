/* bench_rt.h: what the benches that open Lua topologies with the runtime's
 * C API (nb_rt) share: finding the repository root (NB_BENCH_ROOT or the
 * current directory) and pointing the runtime at lua/, a temp dir for the
 * manifests (removed at exit), opening a manifest, and checked reads of a
 * neuron's id, counters and nb.state. Each helper fails the bench
 * (nb_bench_fail) instead of returning an error. bench_lua.c, bench_tasks.c,
 * bench_http.c and bench_reload.c use it. */
#ifndef NB_BENCH_RT_H
#define NB_BENCH_RT_H

#include <limits.h>
#include <sys/stat.h>

#include "bench.h"
#include "nb_rt.h"

/* The repository root ("" before nb_bench_rt_setup) and the manifest temp
 * dir; the agents are in <root>/bench/lua/. */
static char nb_bench_rt_root[PATH_MAX];
static char nb_bench_rt_tmpdir[PATH_MAX];

/* 1: the next nb_bench_rt_open turns the runtime's metrics off (the
 * metrics row's baseline); every other row runs with the default, on. */
static int nb_bench_rt_metrics_off;

/* Files besides topo.lua that nb_bench_rt_cleanup removes from the temp dir
 * (NULL-terminated, NULL for none). */
static const char *const *nb_bench_rt_extra;

/* Finds the repository root (it must hold bench/lua/<probe>), sets
 * NB_LUA_PATH to its lua/ unless already set, and makes the temp dir
 * /tmp/nb_bench_<tag>.XXXXXX whose topo.lua and extra files (see
 * nb_bench_rt_extra) nb_bench_rt_cleanup removes; returns 1, or 0 when it
 * already ran, and fails the bench when the probe cannot be found. */
NB_BENCH_UNUSED static int nb_bench_rt_setup(const char *probe, const char *tag,
                                             const char *const *extra) {
  if (nb_bench_rt_root[0]) return 0;
  const char *env = getenv("NB_BENCH_ROOT");
  if (env && *env) snprintf(nb_bench_rt_root, sizeof nb_bench_rt_root, "%s", env);
  else if (!getcwd(nb_bench_rt_root, sizeof nb_bench_rt_root))
    nb_bench_fail("getcwd: %s", strerror(errno));
  char path[PATH_MAX + 64];
  struct stat st;
  snprintf(path, sizeof path, "%s/bench/lua/%s", nb_bench_rt_root, probe);
  if (stat(path, &st) != 0)
    nb_bench_fail("cannot find %s: run from the repository root or set "
                  "NB_BENCH_ROOT", path);
  snprintf(path, sizeof path, "%s/lua", nb_bench_rt_root);
  setenv("NB_LUA_PATH", path, 0); /* the runtime's own guess is relative to
                                     its binary, which lives deeper here */
  nb_bench_rt_extra = extra;
  snprintf(nb_bench_rt_tmpdir, sizeof nb_bench_rt_tmpdir, "/tmp/nb_bench_%s.XXXXXX",
           tag);
  if (!mkdtemp(nb_bench_rt_tmpdir)) nb_bench_fail("mkdtemp: %s", strerror(errno));
  return 1;
}

/* Removes the temp dir with topo.lua and the extra files in it (for
 * atexit); does nothing before nb_bench_rt_setup. */
NB_BENCH_UNUSED static void nb_bench_rt_cleanup(void) {
  if (!nb_bench_rt_tmpdir[0]) return;
  char path[PATH_MAX + 64];
  snprintf(path, sizeof path, "%s/topo.lua", nb_bench_rt_tmpdir);
  unlink(path);
  for (const char *const *e = nb_bench_rt_extra; e && *e; e++) {
    snprintf(path, sizeof path, "%s/%s", nb_bench_rt_tmpdir, *e);
    unlink(path);
  }
  rmdir(nb_bench_rt_tmpdir);
}

/* Writes src as the manifest topo.lua in the temp dir and opens it (quiet);
 * returns the runtime or fails the bench. */
NB_BENCH_UNUSED static nb_rt_t *nb_bench_rt_open(const char *src) {
  char path[PATH_MAX + 32];
  snprintf(path, sizeof path, "%s/topo.lua", nb_bench_rt_tmpdir);
  FILE *f = fopen(path, "w");
  if (!f || fputs(src, f) < 0 || fclose(f) != 0)
    nb_bench_fail("cannot write %s: %s", path, strerror(errno));
  nb_rt_opts_t o;
  memset(&o, 0, sizeof o);
  o.quiet = 1;
  o.no_metrics = nb_bench_rt_metrics_off;
  char *err = NULL;
  nb_rt_t *rt = nb_rt_open(path, &o, &err);
  if (!rt) nb_bench_fail("nb_rt_open: %s", err ? err : "(no message)");
  return rt;
}

/* Returns the id of neuron name in rt, or fails the bench. */
NB_BENCH_UNUSED static uint32_t nb_bench_rt_id(nb_rt_t *rt, const char *name) {
  int id = nb_rt_id(rt, name);
  if (id < 0) nb_bench_fail("no neuron %s in the bench topology", name);
  return (uint32_t)id;
}

/* Returns neuron id's counters, or fails the bench when it had an agent
 * error (with the error text). */
NB_BENCH_UNUSED static nb_rt_stat_t nb_bench_rt_stat(nb_rt_t *rt, uint32_t id) {
  nb_rt_stat_t st;
  if (nb_rt_stat(rt, id, &st) != 0) nb_bench_fail("nb_rt_stat(%u) failed", id);
  if (st.errors) {
    char *e = nb_rt_errors(rt, id);
    nb_bench_fail("Lua agent %s: %" PRIu64 " error(s): %.300s", nb_rt_name(rt, id),
                  st.errors, e ? e : "");
  }
  return st;
}

/* Ticks rt one tick at a time until neuron sink has received n spikes
 * (checked every tick, so the clock stops at the last delivery); fails
 * the bench, naming what, after max_ticks or at an agent error. Returns
 * the ticks run. */
NB_BENCH_UNUSED static uint64_t nb_bench_rt_tick_until(nb_rt_t *rt, uint32_t sink,
                                                       uint64_t n, uint64_t max_ticks,
                                                       const char *what) {
  for (uint64_t ticks = 1;; ticks++) {
    int64_t rc = nb_rt_tick(rt, 1);
    if (rc < 0) nb_bench_fail("nb_rt_tick: %s", nb_strerror((int)rc));
    nb_rt_stat_t st;
    nb_rt_stat(rt, sink, &st);
    if (st.errors) nb_bench_rt_stat(rt, sink);
    if (st.spikes_in >= n) return ticks;
    if (ticks > max_ticks)
      nb_bench_fail("%s: %" PRIu64 " ticks and the sink has %" PRIu64
                    " of %" PRIu64 " spikes: lost", what, ticks, st.spikes_in, n);
  }
}

/* Returns the number (true 1, false 0) nb.state[key] of neuron id, read
 * through the state dump ("return {[\"key\"]=value,...}"), or fails the
 * bench when it is missing or not a number. */
NB_BENCH_UNUSED static double nb_bench_rt_state_num(nb_rt_t *rt, uint32_t id,
                                                    const char *key) {
  char *err = NULL;
  char *src = nb_rt_state_dump(rt, id, &err);
  if (!src) nb_bench_fail("nb.state of %s: %s", nb_rt_name(rt, id), err ? err : "?");
  char pat[96];
  snprintf(pat, sizeof pat, "[\"%s\"]=", key);
  const char *p = strstr(src, pat);
  if (!p) nb_bench_fail("nb.state of %s has no %s: %.200s", nb_rt_name(rt, id),
                        key, src);
  p += strlen(pat);
  double v;
  if (!strncmp(p, "true", 4)) v = 1;
  else if (!strncmp(p, "false", 5)) v = 0;
  else {
    char *end;
    v = strtod(p, &end);
    if (end == p) nb_bench_fail("nb.state.%s is not a number: %.40s", key, p);
  }
  nb_rt_free_string(src);
  return v;
}

#endif
