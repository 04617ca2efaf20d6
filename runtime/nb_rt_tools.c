/* nb_rt_tools.c: the observability commands that do not run a topology:
 * `neuronbus graph --format svg` (through Graphviz's dot), `neuronbus top`
 * (a console view of a running runtime's /stats endpoint, libcurl) and
 * `neuronbus plot` (a run's JSON statistics lines drawn by gnuplot). */
#include "nb_rt_internal.h"

#include <errno.h>
#include <math.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <curl/curl.h>

extern char **environ;

/* Runs argv (argv[0] found on PATH) and waits; returns its exit status,
 * or -1 with the reason on stderr when it cannot be started. */
static int run_tool(char *const argv[]) {
  pid_t pid;
  int rc = posix_spawnp(&pid, argv[0], NULL, NULL, argv, environ);
  if (rc != 0) {
    fprintf(stderr, "neuronbus: cannot run %s: %s\n", argv[0], strerror(rc));
    return -1;
  }
  int st;
  while (waitpid(pid, &st, 0) < 0)
    if (errno != EINTR) return -1;
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* Writes n bytes at p to a new temporary file named after tmpl (its
 * XXXXXX replaced, suffix bytes kept after it); returns 0 or -1. */
static int write_temp(char *tmpl, int suffix, const char *p, size_t n) {
  int fd = mkstemps(tmpl, suffix);
  if (fd < 0) return -1;
  FILE *f = fdopen(fd, "w");
  if (!f) {
    close(fd);
    return -1;
  }
  int bad = fwrite(p, 1, n, f) != n;
  return fclose(f) != 0 || bad ? -1 : 0;
}

int nb_rt_graph_svg(const char *dot_text, const char *out_path) {
  char tmp[] = "/tmp/neuronbus_graph_XXXXXX.dot";
  if (write_temp(tmp, 4, dot_text, strlen(dot_text)) != 0) {
    fprintf(stderr, "neuronbus graph: cannot write a temporary file: %s\n",
            strerror(errno));
    return 1;
  }
  char *argv[] = {"dot", "-Tsvg", tmp, out_path ? "-o" : NULL,
                  (char *)out_path, NULL};
  fflush(stdout);
  int rc = run_tool(argv);
  unlink(tmp);
  if (rc < 0)
    fprintf(stderr, "neuronbus graph: --format svg needs Graphviz's dot "
            "(Debian: apt-get install graphviz); --format dot prints the "
            "DOT text\n");
  else if (rc != 0)
    fprintf(stderr, "neuronbus graph: dot exited with status %d\n", rc);
  return rc == 0 ? 0 : 1;
}

/* ------------------------------------------------------------------ */
/* top                                                                 */

typedef struct body_s {
  char *p;
  size_t n;
} body_t;

/* libcurl's write callback: appends to a body of at most 64 MiB. */
static size_t on_body(char *p, size_t size, size_t nmemb, void *ud) {
  body_t *b = ud;
  size_t k = size * nmemb;
  if (b->n + k > (64u << 20)) return 0;
  char *q = realloc(b->p, b->n + k + 1);
  if (!q) return 0;
  memcpy(q + b->n, p, k);
  b->p = q;
  b->n += k;
  b->p[b->n] = 0;
  return k;
}

/* Fetches url's body into *b; returns 0, or -1 with the reason in err. */
static int fetch(CURL *c, const char *url, body_t *b, char *err) {
  b->n = 0;
  curl_easy_setopt(c, CURLOPT_URL, url);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, b);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 3000L);
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, err);
  err[0] = 0;
  CURLcode rc = curl_easy_perform(c);
  long status = 0;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
  if (rc != CURLE_OK) {
    if (!err[0]) snprintf(err, CURL_ERROR_SIZE, "%s", curl_easy_strerror(rc));
    return -1;
  }
  if (status != 200) {
    snprintf(err, CURL_ERROR_SIZE, "HTTP status %ld", status);
    return -1;
  }
  return 0;
}

/* A row of the view. */
typedef struct trow_s {
  const char *name;
  double in, out, busy, p50, p99, max;
  double inbox, inmax, axon, axmax, errors;
} trow_t;

static int sort_key; /* NB_TOP_SORT_* of the current sort */

/* Returns a number member of o (0 when absent). */
static double num(json_t *o, const char *k) {
  json_t *v = json_object_get(o, k);
  return json_is_number(v) ? json_number_value(v) : 0;
}

/* qsort order: the chosen key descending, names ascending on ties. */
static int row_cmp(const void *x, const void *y) {
  const trow_t *a = x, *b = y;
  double ka = 0, kb = 0;
  switch (sort_key) {
  case NB_TOP_SORT_BUSY: ka = a->busy, kb = b->busy; break;
  case NB_TOP_SORT_DEPTH: ka = a->inbox + a->axon + a->axmax * 1e-9,
                          kb = b->inbox + b->axon + b->axmax * 1e-9; break;
  case NB_TOP_SORT_IN: ka = a->in, kb = b->in; break;
  default: break;
  }
  if (ka != kb) return ka < kb ? 1 : -1;
  return strcmp(a->name, b->name);
}

/* Prints one frame of the view of stats (the /stats object) to out. */
static void top_frame(json_t *st, FILE *out, const char *url) {
  json_t *ns = json_object_get(st, "neurons");
  size_t n = json_array_size(ns);
  trow_t *rows = calloc(n ? n : 1, sizeof *rows);
  if (!rows) return;
  for (size_t i = 0; i < n; i++) {
    json_t *o = json_array_get(ns, i), *h = o;
    const char *name = json_string_value(json_object_get(o, "name"));
    rows[i] = (trow_t){name ? name : "?", num(o, "in_per_s"),
                       num(o, "out_per_s"), num(h, "busy_ratio") * 100,
                       num(h, "p50_ms"), num(h, "p99_ms"), num(h, "max_ms"),
                       num(o, "inbox"), num(o, "inbox_max"), num(o, "axon"),
                       num(o, "axon_max"), num(o, "errors")};
  }
  qsort(rows, n, sizeof *rows, row_cmp);
  const char *topo = json_string_value(json_object_get(st, "topology"));
  json_t *arena = json_object_get(st, "arena");
  fprintf(out, "neuronbus top - %s - %s - tick %.0f, up %.1f s, %.0f spikes/s\n",
          topo ? topo : "?", url, num(st, "ticks"), num(st, "elapsed_s"),
          num(st, "spikes_per_s"));
  if (arena)
    fprintf(out, "arena: %.1f of %.1f MB in use, %.0f free segments, %.0f "
            "kept payloads\n", num(arena, "in_use") / 1048576.0,
            num(arena, "capacity") / 1048576.0, num(arena, "free"),
            num(arena, "kept"));
  fprintf(out, "%-20s %9s %9s %6s %9s %9s %9s %6s %6s %6s %6s %6s\n", "NEURON",
          "IN/S", "OUT/S", "BUSY%", "P50 MS", "P99 MS", "MAX MS", "INBOX",
          "IN^", "AXON", "AX^", "ERR");
  for (size_t i = 0; i < n; i++) {
    trow_t *r = &rows[i];
    fprintf(out, "%-20.20s %9.0f %9.0f %6.1f %9.4f %9.4f %9.4f %6.0f %6.0f "
            "%6.0f %6.0f %6.0f\n", r->name, r->in, r->out, r->busy, r->p50,
            r->p99, r->max, r->inbox, r->inmax, r->axon, r->axmax, r->errors);
  }
  free(rows);
  fflush(out);
}

int nb_rt_top(const char *addr, int sort, int frames, FILE *out) {
  char url[512];
  const char *base = strncmp(addr, "http://", 7) ? "http://" : "";
  snprintf(url, sizeof url, "%s%s/stats", base, addr);
  sort_key = sort;
  CURL *c = curl_easy_init();
  if (!c) return 1;
  body_t b = {0};
  char err[CURL_ERROR_SIZE];
  int rc = 0, tty = isatty(fileno(out));
  for (int f = 0; frames <= 0 || f < frames; f++) {
    if (f) sleep(1);
    if (fetch(c, url, &b, err) != 0) {
      fprintf(stderr, "neuronbus top: %s: %s (is a runtime running with "
              "--http %s?)\n", url, err, addr);
      rc = 1;
      break;
    }
    json_error_t je;
    json_t *st = json_loadb(b.p, b.n, 0, &je);
    if (!st) {
      fprintf(stderr, "neuronbus top: %s: not the statistics JSON: %s\n", url,
              je.text);
      rc = 1;
      break;
    }
    /* Home and clear: the frame redraws in place over SSH too. */
    if (tty) fputs("\033[H\033[2J", out);
    top_frame(st, out, url);
    json_decref(st);
  }
  free(b.p);
  curl_easy_cleanup(c);
  return rc;
}

/* ------------------------------------------------------------------ */
/* plot                                                                */

/* Names seen in a run, in order of appearance (neurons or synapses). */
typedef struct names_s {
  char **v;
  size_t n;
} names_t;

/* Returns the index of name in ns, adding it when new. */
static size_t name_index(names_t *ns, const char *name) {
  for (size_t i = 0; i < ns->n; i++)
    if (!strcmp(ns->v[i], name)) return i;
  char **v = realloc(ns->v, (ns->n + 1) * sizeof *v);
  if (!v) abort();
  ns->v = v;
  ns->v[ns->n] = nb__strdup(name);
  return ns->n++;
}

/* Returns the index in ns of the synapse object syn ("FROM -> TO"),
 * adding it when new, or -1 when it names no ends. */
static long syn_index(names_t *ns, json_t *syn) {
  const char *a = json_string_value(json_object_get(syn, "from"));
  const char *z = json_string_value(json_object_get(syn, "to"));
  if (!a || !z) return -1;
  char *pair = nb__strf("%s -> %s", a, z);
  long k = (long)name_index(ns, pair);
  free(pair);
  return k;
}

/* Writes s as a gnuplot single-quoted string ('' inside). */
static void gp_quoted(FILE *f, const char *s) {
  fputc('\'', f);
  for (; *s; s++) {
    if (*s == '\'') fputc('\'', f);
    if (*s != '\n' && *s != '\r') fputc(*s, f);
  }
  fputc('\'', f);
}

/* Writes the plot commands of one panel: one line per column of data. */
static void gp_panel(FILE *f, const char *data, const names_t *ns,
                     const char *title, const char *ylabel) {
  fprintf(f, "set title ");
  gp_quoted(f, title);
  fprintf(f, "\nset ylabel ");
  gp_quoted(f, ylabel);
  fprintf(f, "\n");
  if (!ns->n) {
    fprintf(f, "set label 1 'none in this run' at graph 0.5, graph 0.5 "
            "center\nplot [0:1] [0:1] NaN notitle\nunset label 1\n");
    return;
  }
  fprintf(f, "plot ");
  for (size_t i = 0; i < ns->n; i++) {
    fprintf(f, "%s", i ? ", \\\n     " : "");
    gp_quoted(f, data);
    fprintf(f, " using 1:%zu with linespoints pointsize 0.4 title ", i + 2);
    gp_quoted(f, ns->v[i]);
  }
  fprintf(f, "\n");
}

int nb_rt_plot(const char *jsonl, const char *svg) {
  FILE *in = fopen(jsonl, "r");
  if (!in) {
    fprintf(stderr, "neuronbus plot: cannot read %s: %s\n", jsonl,
            strerror(errno));
    return 1;
  }
  /* Two passes' worth kept in memory: the names first appear anywhere. */
  json_t *lines = json_array();
  names_t neurons = {0}, syns = {0};
  char *line = NULL;
  size_t cap = 0, lineno = 0, bad = 0;
  ssize_t len;
  while ((len = getline(&line, &cap, in)) > 0) {
    lineno++;
    json_error_t je;
    json_t *o = json_loadb(line, (size_t)len, 0, &je);
    const char *type = o ? json_string_value(json_object_get(o, "type")) : NULL;
    if (!type || strcmp(type, "stats")) {
      if (!o && strspn(line, " \t\r\n") != (size_t)len && bad++ == 0)
        fprintf(stderr, "neuronbus plot: %s:%zu: not JSON (%s): skipped\n",
                jsonl, lineno, je.text);
      json_decref(o);
      continue;
    }
    json_t *ns = json_object_get(o, "neurons"), *ss = json_object_get(o, "synapses");
    for (size_t i = 0; i < json_array_size(ns); i++) {
      const char *nm = json_string_value(json_object_get(json_array_get(ns, i), "name"));
      if (nm) name_index(&neurons, nm);
    }
    for (size_t i = 0; i < json_array_size(ss); i++)
      syn_index(&syns, json_array_get(ss, i));
    json_array_append_new(lines, o);
  }
  free(line);
  fclose(in);
  size_t nl = json_array_size(lines);
  if (nl == 0) {
    fprintf(stderr, "neuronbus plot: %s holds no statistics lines (write "
            "them with neuronbus run --stats-file %s)\n", jsonl, jsonl);
    json_decref(lines);
    return 1;
  }
  char rates[] = "/tmp/neuronbus_plot_XXXXXX.rates";
  char weights[] = "/tmp/neuronbus_plot_XXXXXX.weights";
  char script[] = "/tmp/neuronbus_plot_XXXXXX.gp";
  int fr = mkstemps(rates, 6), fw = mkstemps(weights, 8), fs = mkstemps(script, 3);
  FILE *r = fr >= 0 ? fdopen(fr, "w") : NULL, *w = fw >= 0 ? fdopen(fw, "w") : NULL;
  FILE *g = fs >= 0 ? fdopen(fs, "w") : NULL;
  int rc = 1;
  if (!r || !w || !g) {
    fprintf(stderr, "neuronbus plot: cannot write temporary files: %s\n",
            strerror(errno));
    goto done;
  }
  /* Spikes/s per neuron: the difference of spikes_in between lines over
   * the time between them (a rate whatever the interval). */
  double *prev = calloc(neurons.n + 1, sizeof *prev), prev_t = 0;
  if (!prev) goto done;
  for (size_t l = 0; l < nl; l++) {
    json_t *o = json_array_get(lines, l);
    double t = num(o, "elapsed_s");
    json_t *ns = json_object_get(o, "neurons");
    double *now = calloc(neurons.n + 1, sizeof *now);
    if (!now) break;
    for (size_t i = 0; i < json_array_size(ns); i++) {
      json_t *one = json_array_get(ns, i);
      const char *nm = json_string_value(json_object_get(one, "name"));
      if (nm) now[name_index(&neurons, nm)] = num(one, "spikes_in");
    }
    if (l > 0 && t > prev_t) {
      fprintf(r, "%.3f", t);
      for (size_t i = 0; i < neurons.n; i++)
        fprintf(r, " %.3f", (now[i] - prev[i]) / (t - prev_t));
      fprintf(r, "\n");
    }
    if (l == 0 || t > prev_t) {
      memcpy(prev, now, neurons.n * sizeof *now);
      prev_t = t;
    }
    free(now);
    double *wv = malloc((syns.n + 1) * sizeof *wv);
    if (!wv) break;
    for (size_t i = 0; i < syns.n; i++) wv[i] = NAN;
    json_t *ss = json_object_get(o, "synapses");
    for (size_t i = 0; i < json_array_size(ss); i++) {
      json_t *syn = json_array_get(ss, i);
      long k = syn_index(&syns, syn);
      if (k >= 0) wv[k] = num(syn, "weight");
    }
    fprintf(w, "%.3f", t);
    for (size_t i = 0; i < syns.n; i++)
      isnan(wv[i]) ? fprintf(w, " NaN") : fprintf(w, " %.6g", wv[i]);
    fprintf(w, "\n");
    free(wv);
  }
  free(prev);
  fclose(r);
  fclose(w);
  r = w = NULL;
  fprintf(g, "set terminal svg size 1000,800 dynamic enhanced font "
          "'sans,11'\nset output ");
  gp_quoted(g, svg);
  fprintf(g, "\nset datafile missing 'NaN'\nset key outside right top "
          "noenhanced\nset grid\nset xlabel 'seconds'\nset xrange [0:*]\n"
          "set multiplot layout 2,1 title ");
  gp_quoted(g, jsonl);
  fprintf(g, " noenhanced\n");
  gp_panel(g, rates, &neurons, "spikes/s into each neuron", "spikes/s");
  gp_panel(g, weights, &syns, "synapse weights (STDP)", "weight");
  fprintf(g, "unset multiplot\nset output\n");
  fclose(g);
  g = NULL;
  char *argv[] = {"gnuplot", script, NULL};
  int st = run_tool(argv);
  if (st < 0)
    fprintf(stderr, "neuronbus plot: needs gnuplot (Debian: apt-get install "
            "gnuplot-nox)\n");
  else if (st != 0)
    fprintf(stderr, "neuronbus plot: gnuplot exited with status %d\n", st);
  rc = st == 0 ? 0 : 1;
done:
  if (r) fclose(r);
  if (w) fclose(w);
  if (g) fclose(g);
  unlink(rates);
  unlink(weights);
  unlink(script);
  for (size_t i = 0; i < neurons.n; i++) free(neurons.v[i]);
  for (size_t i = 0; i < syns.n; i++) free(syns.v[i]);
  free(neurons.v);
  free(syns.v);
  json_decref(lines);
  return rc;
}
