/* main.c: the `neuronbus` command: run and check a manifest, run specs. */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "nb_rt.h"

#define NB_HTTP_DEFAULT "127.0.0.1:9464" /* --http without an address */

static const char usage[] =
    "usage: neuronbus run MANIFEST [--ticks N] [--for DURATION]\n"
    "                     [--stats[=table|json][,INTERVAL]] [--stats-file PATH]\n"
    "                     [--http [HOST:PORT]] [--no-watch] [--drain DURATION]\n"
    "                     [--workers N|auto]\n"
    "       neuronbus graph MANIFEST [--format dot|svg] [-o PATH]\n"
    "       neuronbus top [HOST:PORT] [--sort busy|depth|in|name] [--once]\n"
    "       neuronbus plot STATS.jsonl [-o PATH.svg]\n"
    "       neuronbus check MANIFEST\n"
    "       neuronbus test [PATH...] [-- BUSTED-OPTION...]\n"
    "       neuronbus --help | --version\n"
    "\n"
    "run     launches the topology of MANIFEST (a Lua file returning a table)\n"
    "        on a libuv loop until --ticks N ticks ran, --for DURATION passed\n"
    "        (\"500ms\", \"3s\", \"2m\"; a bare number is seconds), or SIGINT/\n"
    "        SIGTERM; then delivers what is pending, calls every on_stop and\n"
    "        prints the final statistics.\n"
    "        --stats        a statistics table every second and at exit\n"
    "        --stats=json   the same as one JSON object per line\n"
    "        --stats=2s     ... every 2 s (\"json,500ms\": both); the interval\n"
    "                       is also the window of the handler p50/p99/max\n"
    "        --stats-file P JSON statistics lines into file P (never mixed\n"
    "                       with what agents print), at the same interval\n"
    "        --http [ADDR]  serves /metrics (Prometheus), /stats (JSON),\n"
    "                       /graph (DOT), /neurons/NAME on ADDR (default\n"
    "                       127.0.0.1:9464; port 0 = any free one, said on\n"
    "                       stderr)\n"
    "        SIGUSR1 prints the statistics table on stderr; the run goes on.\n"
    "        Hot reload: a changed agent script is loaded between ticks into\n"
    "        its neuron's state (nb.state kept); a version that fails to load\n"
    "        is rejected and the old one keeps running. SIGHUP reloads every\n"
    "        changed script.\n"
    "        --no-watch     do not watch the scripts (reload on SIGHUP only)\n"
    "        --drain D      with TCP links (listen, peers, remote neurons):\n"
    "                       how long shutdown waits for spikes to leave and\n"
    "                       be acknowledged by peers (default 2s)\n"
    "        --workers N    run N worker threads (or \"auto\": one per CPU),\n"
    "                       over the manifest's workers key (docs/workers.md)\n"
    "graph   prints MANIFEST's topology as Graphviz DOT without running it:\n"
    "        neurons grouped by region (clusters), synapses labelled with their\n"
    "        weight; --format svg renders it with dot (Graphviz); -o PATH.\n"
    "top     a live view of a runtime started with --http (default address\n"
    "        127.0.0.1:9464): per neuron spikes/s, busy time, handler p50/p99/\n"
    "        max, inbox and axon depths; sorted by busy time (--sort depth, in,\n"
    "        name), redrawn every second; --once prints one frame.\n"
    "plot    draws the JSON lines of --stats-file as an SVG with gnuplot:\n"
    "        spikes/s into each neuron and synapse weights (STDP) over time;\n"
    "        -o PATH (default: STATS.svg beside the input).\n"
    "check   validates MANIFEST and loads every agent script it names;\n"
    "        prints every problem and exits 1 if there is any.\n"
    "test    runs the busted specs (*_spec.lua) under each PATH (default:\n"
    "        ./spec when it is a folder, else the current folder; with a\n"
    "        .busted file and no PATH, what it says) with busted --lua=luajit,\n"
    "        from any folder: the neuronbus Lua modules go on LUA_PATH and\n"
    "        NB_BUILD names the folder of this neuronbus's libnbruntime.so,\n"
    "        which require(\"neuronbus.testing\") loads. Options after --\n"
    "        go to busted (-- -o TAP, -- --filter NAME). Exits with busted's\n"
    "        status: 0 when every spec passed.\n"
    "\n"
    "Lua modules are found in NB_LUA_PATH (directories separated by ':', or\n"
    "Lua path templates), then in ../share/lua/5.1 (an install) or ../../lua\n"
    "(a build tree) beside the executable.\n";

/* Prints a command-line error naming the bad argument; returns 1. */
static int bad(const char *fmt, const char *arg) {
  fprintf(stderr, "neuronbus: ");
  fprintf(stderr, fmt, arg);
  fprintf(stderr, "\n(see neuronbus --help)\n");
  return 1;
}

/* Parses a positive integer; returns 0 on success, -1 otherwise. */
static int parse_count(const char *s, uint64_t *out) {
  if (!s || !*s || *s == '-') return -1;
  char *end;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 10);
  if (errno || *end || v == 0) return -1;
  *out = v;
  return 0;
}

/* Parses "250ms", "3s", "1.5m", "2h", "100us", "10ns" or bare seconds into
 * nanoseconds; returns 0 on success, -1 otherwise. */
static int parse_duration(const char *s, uint64_t *out) {
  if (!s || !*s) return -1;
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (errno || end == s || !(v > 0) || !isfinite(v)) return -1;
  double scale;
  if (!*end || !strcmp(end, "s")) scale = 1e9;
  else if (!strcmp(end, "ms")) scale = 1e6;
  else if (!strcmp(end, "us")) scale = 1e3;
  else if (!strcmp(end, "ns")) scale = 1;
  else if (!strcmp(end, "m")) scale = 60e9;
  else if (!strcmp(end, "h")) scale = 3600e9;
  else return -1;
  double ns = v * scale;
  if (ns < 1 || ns > 1e19) return -1;
  *out = (uint64_t)ns;
  return 0;
}

/* Returns the value of option name given as "--name=V" or "--name V"
 * (advancing *i), or NULL with an error printed when it is missing. */
static const char *opt_value(int argc, char **argv, int *i, const char *name) {
  const char *a = argv[*i];
  size_t n = strlen(name);
  if (a[n] == '=') return a + n + 1;
  if (*i + 1 >= argc) {
    bad("%s needs a value", name);
    return NULL;
  }
  return argv[++*i];
}

/* Parses the value of --stats=: "table", "json" and/or an interval, comma
 * separated, into o; returns 0, or -1 for anything else. */
static int parse_stats(const char *v, nb_rt_run_opts_t *o) {
  char buf[64];
  if (!*v || strlen(v) >= sizeof buf) return -1;
  snprintf(buf, sizeof buf, "%s", v);
  o->stats = 1;
  for (char *save = NULL, *t = strtok_r(buf, ",", &save); t;
       t = strtok_r(NULL, ",", &save)) {
    if (!strcmp(t, "table")) o->stats = 1;
    else if (!strcmp(t, "json")) o->stats = 2;
    else if (parse_duration(t, &o->stats_every_ns) || o->stats_every_ns < 1000000u)
      return -1;
  }
  return 0;
}

/* Returns 1 when s looks like an --http address (PORT, HOST:PORT,
 * [V6]:PORT), not a manifest path. */
static int looks_like_addr(const char *s) {
  const char *c = strrchr(s, ':');
  const char *p = c ? c + 1 : s;
  if (!*p || strspn(p, "0123456789") != strlen(p)) return 0;
  return !strchr(s, '/') && !strstr(s, ".lua");
}

static int cmd_run(int argc, char **argv) {
  const char *manifest = NULL, *stats_path = NULL;
  nb_rt_run_opts_t o = {0};
  nb_rt_opts_t ro = {0};
  for (int i = 2; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "--ticks") || !strncmp(a, "--ticks=", 8)) {
      const char *v = opt_value(argc, argv, &i, "--ticks");
      if (!v) return 1;
      if (parse_count(v, &o.ticks))
        return bad("--ticks needs a positive integer, got \"%s\"", v);
    } else if (!strcmp(a, "--for") || !strncmp(a, "--for=", 6)) {
      const char *v = opt_value(argc, argv, &i, "--for");
      if (!v) return 1;
      if (parse_duration(v, &o.for_ns))
        return bad("--for needs a duration such as 500ms, 3s or 2m, got "
                   "\"%s\"", v);
    } else if (!strcmp(a, "--stats")) {
      o.stats = 1;
    } else if (!strncmp(a, "--stats=", 8)) {
      if (parse_stats(a + 8, &o))
        return bad("--stats takes \"table\", \"json\" and/or an interval "
                   "such as 2s or 500ms, separated by a comma, got \"%s\"",
                   a + 8);
    } else if (!strcmp(a, "--stats-file") || !strncmp(a, "--stats-file=", 13)) {
      const char *v = opt_value(argc, argv, &i, "--stats-file");
      if (!v) return 1;
      stats_path = v;
    } else if (!strcmp(a, "--http")) {
      /* A value only when it looks like an address, so the manifest may
       * follow --http. */
      if (i + 1 < argc && looks_like_addr(argv[i + 1])) o.http = argv[++i];
      else o.http = NB_HTTP_DEFAULT;
    } else if (!strncmp(a, "--http=", 7)) {
      o.http = a + 7;
    } else if (!strcmp(a, "--no-watch")) {
      o.no_watch = 1;
    } else if (!strcmp(a, "--drain") || !strncmp(a, "--drain=", 8)) {
      const char *v = opt_value(argc, argv, &i, "--drain");
      if (!v) return 1;
      if (parse_duration(v, &o.drain_ns))
        return bad("--drain needs a duration such as 500ms or 5s, got "
                   "\"%s\"", v);
    } else if (!strcmp(a, "--workers") || !strncmp(a, "--workers=", 10)) {
      const char *v = opt_value(argc, argv, &i, "--workers");
      if (!v) return 1;
      uint64_t n = 0;
      if (!strcmp(v, "auto")) {
        ro.workers = nb_rt_cpus();
      } else if (parse_count(v, &n) || n > NB_MAX_WORKERS) {
        return bad("--workers needs a number of worker threads (1 to 256) "
                   "or \"auto\", got \"%s\"", v);
      } else {
        ro.workers = (uint32_t)n;
      }
    } else if (a[0] == '-' && a[1]) {
      return bad("run: unknown option \"%s\"", a);
    } else if (manifest) {
      return bad("run: one MANIFEST only, got a second one: \"%s\"", a);
    } else {
      manifest = a;
    }
  }
  if (!manifest) return bad("run: missing MANIFEST%s", "");
  if (stats_path) {
    o.stats_file = fopen(stats_path, "w");
    if (!o.stats_file) {
      fprintf(stderr, "neuronbus: --stats-file: cannot write %s: %s\n",
              stats_path, strerror(errno));
      return 1;
    }
  }
  char *err = NULL;
  nb_rt_t *rt = nb_rt_open(manifest, &ro, &err);
  if (!rt) {
    fprintf(stderr, "neuronbus: cannot run %s:\n%s\n", manifest, err);
    nb_rt_free_string(err);
    if (o.stats_file) fclose(o.stats_file);
    return 1;
  }
  int rc = nb_rt_run(rt, &o);
  nb_rt_close(rt);
  if (o.stats_file && fclose(o.stats_file) != 0) {
    fprintf(stderr, "neuronbus: --stats-file: writing %s: %s\n", stats_path,
            strerror(errno));
    rc = 1;
  }
  return rc ? 1 : 0;
}

static int cmd_check(int argc, char **argv) {
  const char *manifest = NULL;
  for (int i = 2; i < argc; i++) {
    if (argv[i][0] == '-' && argv[i][1])
      return bad("check: unknown option \"%s\"", argv[i]);
    if (manifest)
      return bad("check: one MANIFEST only, got a second one: \"%s\"", argv[i]);
    manifest = argv[i];
  }
  if (!manifest) return bad("check: missing MANIFEST%s", "");
  return nb_rt_check(manifest, stdout) ? 1 : 0;
}

static int cmd_graph(int argc, char **argv) {
  const char *manifest = NULL, *format = "dot", *out = NULL;
  for (int i = 2; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "--format") || !strncmp(a, "--format=", 9)) {
      if (!(format = opt_value(argc, argv, &i, "--format"))) return 1;
      if (strcmp(format, "dot") && strcmp(format, "svg"))
        return bad("graph: --format takes dot or svg, got \"%s\"", format);
    } else if (!strcmp(a, "-o")) {
      if (i + 1 >= argc) return bad("graph: -o needs a PATH%s", "");
      out = argv[++i];
    } else if (a[0] == '-' && a[1]) {
      return bad("graph: unknown option \"%s\"", a);
    } else if (manifest) {
      return bad("graph: one MANIFEST only, got a second one: \"%s\"", a);
    } else {
      manifest = a;
    }
  }
  if (!manifest) return bad("graph: missing MANIFEST%s", "");
  char *err = NULL;
  char *dot = nb_rt_graph_dot(manifest, &err);
  if (!dot) {
    fprintf(stderr, "neuronbus graph: %s:\n%s\n", manifest, err);
    nb_rt_free_string(err);
    return 1;
  }
  int rc = 0;
  if (!strcmp(format, "svg")) {
    rc = nb_rt_graph_svg(dot, out);
  } else {
    FILE *f = out ? fopen(out, "w") : stdout;
    if (!f || fputs(dot, f) < 0 || (out && fclose(f) != 0)) {
      fprintf(stderr, "neuronbus graph: cannot write %s: %s\n",
              out ? out : "stdout", strerror(errno));
      rc = 1;
    }
  }
  nb_rt_free_string(dot);
  return rc;
}

static int cmd_top(int argc, char **argv) {
  const char *addr = "127.0.0.1:9464";
  int sort = NB_TOP_SORT_BUSY, frames = 0, given = 0;
  for (int i = 2; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "--sort") || !strncmp(a, "--sort=", 7)) {
      const char *v = opt_value(argc, argv, &i, "--sort");
      if (!v) return 1;
      if (!strcmp(v, "busy")) sort = NB_TOP_SORT_BUSY;
      else if (!strcmp(v, "depth")) sort = NB_TOP_SORT_DEPTH;
      else if (!strcmp(v, "in")) sort = NB_TOP_SORT_IN;
      else if (!strcmp(v, "name")) sort = NB_TOP_SORT_NAME;
      else return bad("top: --sort takes busy, depth, in or name, got \"%s\"", v);
    } else if (!strcmp(a, "--once")) {
      frames = 1;
    } else if (!strcmp(a, "--frames") || !strncmp(a, "--frames=", 9)) {
      const char *v = opt_value(argc, argv, &i, "--frames");
      uint64_t n;
      if (!v) return 1;
      if (parse_count(v, &n) || n > 1000000)
        return bad("top: --frames needs a positive integer, got \"%s\"", v);
      frames = (int)n;
    } else if (a[0] == '-' && a[1]) {
      return bad("top: unknown option \"%s\"", a);
    } else if (given++) {
      return bad("top: one HOST:PORT only, got a second one: \"%s\"", a);
    } else {
      addr = a;
    }
  }
  return nb_rt_top(addr, sort, frames, stdout);
}

static int cmd_plot(int argc, char **argv) {
  const char *in = NULL, *out = NULL;
  for (int i = 2; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "-o")) {
      if (i + 1 >= argc) return bad("plot: -o needs a PATH%s", "");
      out = argv[++i];
    } else if (a[0] == '-' && a[1]) {
      return bad("plot: unknown option \"%s\"", a);
    } else if (in) {
      return bad("plot: one STATS.jsonl only, got a second one: \"%s\"", a);
    } else {
      in = a;
    }
  }
  if (!in) return bad("plot: missing STATS.jsonl%s", "");
  char def[PATH_MAX];
  if (!out) {
    /* STATS.jsonl -> STATS.svg beside it. */
    const char *dot = strrchr(in, '.'), *slash = strrchr(in, '/');
    size_t n = dot && (!slash || dot > slash) ? (size_t)(dot - in) : strlen(in);
    if (n + 5 > sizeof def) return bad("plot: path too long: %s", in);
    snprintf(def, sizeof def, "%.*s.svg", (int)n, in);
    out = def;
  }
  int rc = nb_rt_plot(in, out);
  if (rc == 0) fprintf(stderr, "neuronbus plot: wrote %s\n", out);
  return rc;
}

/* Returns 1 when an executable named name is in a folder of $PATH. */
static int on_path(const char *name) {
  const char *path = getenv("PATH");
  if (!path || !*path) path = "/usr/local/bin:/usr/bin:/bin";
  char buf[PATH_MAX];
  for (const char *p = path; *p;) {
    size_t n = strcspn(p, ":");
    snprintf(buf, sizeof buf, "%.*s/%s", (int)n, n ? p : ".", name);
    if (access(buf, X_OK) == 0) return 1;
    p += n;
    if (*p == ':') p++;
  }
  return 0;
}

/* Writes in dir the folder holding this neuronbus's libnbruntime.so (beside
 * the executable in a build tree, ../lib in an install); returns 0, or -1
 * with an error printed. */
static int runtime_lib_dir(char *dir, size_t size) {
  char exe[PATH_MAX], lib[PATH_MAX + 32], real[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n <= 0) {
    fprintf(stderr, "neuronbus test: cannot find the executable's folder\n");
    return -1;
  }
  exe[n] = 0;
  *strrchr(exe, '/') = 0;
  static const char *const beside[] = {"", "/../lib"};
  for (size_t i = 0; i < 2; i++) {
    snprintf(lib, sizeof lib, "%s%s/libnbruntime.so", exe, beside[i]);
    if (access(lib, R_OK) == 0 && realpath(lib, real)) {
      *strrchr(real, '/') = 0;
      snprintf(dir, size, "%s", real);
      return 0;
    }
  }
  fprintf(stderr, "neuronbus test: no libnbruntime.so beside %s or in "
          "%s/../lib (make builds it; make install puts it in PREFIX/lib)\n",
          exe, exe);
  return -1;
}

static int cmd_test(int argc, char **argv) {
  /* busted, its options, then the folders or files to run. */
  const char **args = calloc((size_t)argc + 3, sizeof *args);
  if (!args) return 1;
  int n = 0, npaths = 0, i = 2;
  args[n++] = "busted";
  args[n++] = "--lua=luajit";
  for (int j = 2; j < argc; j++)
    if (!strcmp(argv[j], "--"))
      for (int k = j + 1; k < argc; k++) args[n++] = argv[k];
  struct stat st;
  for (; i < argc && strcmp(argv[i], "--"); i++) {
    if (argv[i][0] == '-' && argv[i][1]) {
      free(args);
      return bad("test: unknown option \"%s\" (busted's options go after "
                 "--)", argv[i]);
    }
    if (stat(argv[i], &st) != 0) {
      fprintf(stderr, "neuronbus test: %s: %s\n", argv[i], strerror(errno));
      free(args);
      return 1;
    }
    args[n++] = argv[i];
    npaths++;
  }
  if (!npaths && stat(".busted", &st) != 0)
    args[n++] = stat("spec", &st) == 0 && S_ISDIR(st.st_mode) ? "spec" : ".";
  args[n] = NULL;
  if (!on_path("busted")) {
    fprintf(stderr, "neuronbus test: busted is not on PATH (Debian: apt-get "
            "install lua-busted; or luarocks install busted)\n");
    free(args);
    return 1;
  }
  if (!on_path("luajit")) {
    fprintf(stderr, "neuronbus test: luajit is not on PATH (busted runs the "
            "specs with it; Debian: apt-get install luajit)\n");
    free(args);
    return 1;
  }
  char lib[PATH_MAX];
  if (runtime_lib_dir(lib, sizeof lib) != 0) {
    free(args);
    return 1;
  }
  /* The modules first; ";;" keeps Lua's default path (busted's own). */
  const char *old = getenv("LUA_PATH");
  const char *mods = nb_rt_lua_path(), *rest = old && *old ? old : ";";
  size_t len = strlen(mods) + strlen(rest) + 1;
  char *lua_path = malloc(len);
  if (!lua_path) {
    fputs("neuronbus test: out of memory\n", stderr);
    free(args);
    return 1;
  }
  snprintf(lua_path, len, "%s%s", mods, rest);
  setenv("LUA_PATH", lua_path, 1);
  setenv("NB_BUILD", lib, 1);
  free(lua_path);
  execvp("busted", (char *const *)args);
  fprintf(stderr, "neuronbus test: cannot run busted: %s\n", strerror(errno));
  free(args);
  return 1;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fputs(usage, stderr);
    return 1;
  }
  const char *cmd = argv[1];
  if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
    fputs(usage, stdout);
    return 0;
  }
  if (!strcmp(cmd, "--version") || !strcmp(cmd, "-V")) {
    printf("neuronbus %s\n", NB_VERSION_STRING);
    return 0;
  }
  if (!strcmp(cmd, "run")) return cmd_run(argc, argv);
  if (!strcmp(cmd, "check")) return cmd_check(argc, argv);
  if (!strcmp(cmd, "test")) return cmd_test(argc, argv);
  if (!strcmp(cmd, "graph")) return cmd_graph(argc, argv);
  if (!strcmp(cmd, "top")) return cmd_top(argc, argv);
  if (!strcmp(cmd, "plot")) return cmd_plot(argc, argv);
  return bad("unknown command \"%s\" (expected run, check, graph, top, plot "
             "or test)", cmd);
}
