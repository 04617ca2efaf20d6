/* Hot reload from C, for the sanitizer builds: nb_rt_reload from source and
 * from the file (accepted, unchanged, rejected), the two steps (prepared on
 * another thread while ticking, committed between ticks), versions in the
 * card and nb_rt_version, the heap after many reloads, and the libuv side of
 * nb_rt_run: the directory watch (a rename over the script, an in-place
 * write) and SIGHUP. The agent marks each accepted version by creating a
 * file, so the driving thread waits for effects (bounded), never for time. */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "nb_rt_internal.h"
#include "nbtest.h"

static char dir[64];

/* The agent: forwards "<n>:<version>" to sink; on_reload creates
 * <dir>/v<version> and <dir>/l<label> (the watcher tests wait for them). */
static const char agent_src[] =
    "local LABEL = 'a'\n"
    "local agent = {}\n"
    "function agent.init(nb, config) nb.state.dir = config.dir end\n"
    "function agent.on_spike(spike, nb)\n"
    "  nb:fire_to('sink', spike:payload() .. ':' .. nb.version .. LABEL)\n"
    "end\n"
    "function agent.on_reload(nb, old)\n"
    "  local f = io.open(nb.state.dir .. '/v' .. nb.version, 'w')\n"
    "  f:write(old.counter) f:close()\n"
    "  f = io.open(nb.state.dir .. '/l' .. LABEL, 'w') f:close()\n"
    "end\n"
    "return agent\n";

/* Writes text to path (in place: truncate and write); returns 0 or -1. */
static int write_file(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  if (!f) return -1;
  fputs(text, f);
  return fclose(f);
}

/* Returns agent_src with its label set to c (malloc'd). */
static char *agent_as(char c) {
  char *s = nb__strf("%s", agent_src);
  s[strlen("local LABEL = '")] = c;
  return s;
}

/* Returns a runtime over relay (the agent, at dir/relay.lua) and a
 * recorder sink, or NULL. */
static nb_rt_t *open_relay(uint64_t tick_ns) {
  char tick[32] = "'free'";
  if (tick_ns) snprintf(tick, sizeof tick, "'%lluns'", (unsigned long long)tick_ns);
  char *topo = nb__strf(
      "return { name = 'reload', tick = %s, arena = { size = 1048576 },\n"
      "  axon = { capacity = 256 },\n"
      "  neurons = {\n"
      "    relay = { script = '%s/relay.lua', refractory = 0,\n"
      "      capabilities = { 'relaying' }, config = { dir = '%s' } } } }\n",
      tick, dir, dir);
  nb_rt_opts_t o = {.record = 1, .quiet = 1, .recorders = "test",
                    .peers = "sink"};
  char *err = NULL;
  nb_rt_t *rt = nb_rt_open_topo(topo, strlen(topo), "=reload", &o, &err);
  if (!rt) printf("    open failed: %s\n", err);
  nb_rt_free_string(err);
  free(topo);
  return rt;
}

/* Returns the payload of record i that sink received ("" if none). */
static const char *sink_got(nb_rt_t *rt, size_t i) {
  nb_spike_t s;
  const char *data = "";
  size_t len;
  if (nb_rt_rec_get(rt, 1, 0, i, &s, &data, &len) != 0) return "";
  return data;
}

/* Writes the agent at dir/relay.lua and returns open_relay(0), or NULL
 * (a failed check). */
static nb_rt_t *relay_v1(void) {
  char path[128];
  snprintf(path, sizeof path, "%s/relay.lua", dir);
  NBT_EQ(write_file(path, agent_src), 0);
  nb_rt_t *rt = open_relay(0);
  NBT_CHECK(rt != NULL);
  return rt;
}

static void reload_from_source_and_file(void) {
  nb_rt_t *rt = relay_v1();
  if (!rt) return;
  nb_rt_version_t v;
  NBT_EQ(nb_rt_version(rt, 0, &v), 0);
  NBT_EQ(v.counter, 1);
  NBT_EQ(strlen(v.hash), 16);
  NBT_EQ(nb_neuron_card(rt->agents[0]->neuron)->version, 1);
  NBT_EQ(nb_rt_inject(rt, 2, 0, 0, 0, "1", 1), 0);
  NBT_CHECK(nb_rt_tick(rt, 2) > 0);
  char *err = NULL;
  /* the file did not change: nothing to do unless forced */
  NBT_EQ(nb_rt_reload(rt, 0, NULL, 0, 0, &err), 0);
  NBT_CHECK(err == NULL);
  /* a rejected source: the message names the file and line */
  NBT_EQ(nb_rt_reload(rt, 0, "local x = = 1", 13, 1, &err), NB_EAGENT);
  NBT_CHECK(err && strstr(err, "relay.lua:1:"));
  nb_rt_free_string(err);
  char *b = agent_as('b');
  NBT_EQ(nb_rt_reload(rt, 0, b, strlen(b), 0, &err), 1);
  free(b);
  NBT_EQ(nb_rt_inject(rt, 2, 0, 0, 0, "2", 1), 0);
  NBT_CHECK(nb_rt_tick(rt, 2) > 0);
  /* the file is version 1's source again: a change against version 2 */
  NBT_EQ(nb_rt_reload(rt, 0, NULL, 0, 0, &err), 1);
  NBT_EQ(nb_rt_version(rt, 0, &v), 0);
  NBT_EQ(v.counter, 3);
  NBT_EQ(v.reloads, 2);
  NBT_EQ(v.rejected, 1);
  NBT_EQ(nb_neuron_card(rt->agents[0]->neuron)->version, 3);
  NBT_EQ(nb_rt_reload(rt, 1, NULL, 0, 1, &err), NB_ENOENT); /* a recorder */
  NBT_CHECK(err && strstr(err, "\"sink\" has no agent script"));
  nb_rt_free_string(err);
  NBT_EQ(nb_rt_reload(rt, 7, NULL, 0, 1, &err), NB_ENOENT);
  nb_rt_free_string(err);
  NBT_EQ(nb_rt_rec_count(rt, 1, 0), 2);
  NBT_CHECK(strcmp(sink_got(rt, 0), "1:1a") == 0);
  NBT_CHECK(strcmp(sink_got(rt, 1), "2:2b") == 0);
  /* the heap after 200 more reloads stays where it was */
  double before = nb_rt_memory(rt, 0);
  NBT_CHECK(before > 0);
  for (int i = 0; i < 200; i++) {
    char *s = agent_as((char)('c' + i % 20));
    NBT_EQ(nb_rt_reload(rt, 0, s, strlen(s), 1, &err), 1);
    free(s);
  }
  NBT_CHECK(nb_rt_memory(rt, 0) <= before * 1.10);
  NBT_CHECK(nb_rt_memory(rt, 1) < 0); /* a recorder has no state */
  nb_rt_close(rt);
}

/* A prepare on its own thread while the owner ticks. */
typedef struct prep_job_s {
  nb_rt_t *rt;
  const char *src;
  nb_rt_reload_prep_t *prep;
  int rc;
} prep_job_t;

/* Thread body: compiles job->src as relay's next version; returns NULL. */
static void *prepare_thread(void *arg) {
  prep_job_t *j = arg;
  char *err = NULL;
  j->rc = nb_rt_reload_prepare(j->rt, 0, j->src, strlen(j->src), &j->prep,
                               &err);
  nb_rt_free_string(err);
  return NULL;
}

/* The reload in two steps: compiled on another thread while the relay
 * ticks on version 1 (every spike of that time handled by it), swapped in
 * between ticks; what does not compile is rejected at the commit as by
 * nb_rt_reload; an unchanged source is left alone unless forced. */
static void prepare_on_a_thread_then_commit(void) {
  nb_rt_t *rt = relay_v1();
  if (!rt) return;
  char *b = agent_as('b');
  prep_job_t j = {rt, b, NULL, -1};
  pthread_t t;
  NBT_EQ(pthread_create(&t, NULL, prepare_thread, &j), 0);
  int n = 0;
  for (; n < 200; n++) { /* the old version flows on meanwhile */
    char num[16];
    snprintf(num, sizeof num, "%d", n);
    NBT_EQ(nb_rt_inject(rt, 2, 0, 0, 0, num, strlen(num)), 0);
    NBT_CHECK(nb_rt_tick(rt, 1) >= 0);
  }
  pthread_join(t, NULL);
  NBT_EQ(j.rc, 0);
  NBT_CHECK(j.prep != NULL);
  NBT_CHECK(nb_rt_tick(rt, 2) >= 0);
  NBT_EQ(nb_rt_rec_count(rt, 1, 0), 200);
  NBT_CHECK(strcmp(sink_got(rt, 199), "199:1a") == 0);
  char *err = NULL;
  NBT_EQ(nb_rt_reload_commit(rt, j.prep, 0, &err), 1);
  NBT_CHECK(err == NULL);
  NBT_EQ(nb_rt_inject(rt, 2, 0, 0, 0, "x", 1), 0);
  NBT_CHECK(nb_rt_tick(rt, 2) > 0);
  NBT_CHECK(strcmp(sink_got(rt, 200), "x:2b") == 0);
  /* the same source again: unchanged, unless forced */
  nb_rt_reload_prep_t *p = NULL;
  NBT_EQ(nb_rt_reload_prepare(rt, 0, b, strlen(b), &p, &err), 0);
  NBT_EQ(nb_rt_reload_commit(rt, p, 0, &err), 0);
  NBT_EQ(nb_rt_reload_prepare(rt, 0, b, strlen(b), &p, &err), 0);
  NBT_EQ(nb_rt_reload_commit(rt, p, 1, &err), 1);
  free(b);
  /* a syntax error and bytecode: prepared, rejected at the commit */
  NBT_EQ(nb_rt_reload_prepare(rt, 0, "local x = = 1", 13, &p, &err), 0);
  NBT_EQ(nb_rt_reload_commit(rt, p, 1, &err), NB_EAGENT);
  NBT_CHECK(err && strstr(err, "relay.lua:1:"));
  nb_rt_free_string(err);
  NBT_EQ(nb_rt_reload_prepare(rt, 0, "\033LJ\002", 4, &p, &err), 0);
  NBT_EQ(nb_rt_reload_commit(rt, p, 1, &err), NB_EAGENT);
  NBT_CHECK(err && strstr(err, "relay.lua: precompiled bytecode is refused"));
  nb_rt_free_string(err);
  nb_rt_version_t v;
  NBT_EQ(nb_rt_version(rt, 0, &v), 0);
  NBT_EQ(v.counter, 3);
  NBT_EQ(v.rejected, 2);
  /* from the file; a prep dropped without a commit; bad ids */
  NBT_EQ(nb_rt_reload_prepare(rt, 0, NULL, 0, &p, &err), 0);
  nb_rt_reload_prep_free(p);
  NBT_EQ(nb_rt_reload_prepare(rt, 1, NULL, 0, &p, &err), NB_ENOENT);
  NBT_CHECK(p == NULL && err && strstr(err, "\"sink\" has no agent script"));
  nb_rt_free_string(err);
  NBT_EQ(nb_rt_reload_prepare(rt, 9, NULL, 0, &p, &err), NB_ENOENT);
  nb_rt_free_string(err);
  NBT_EQ(nb_rt_inject(rt, 2, 0, 0, 0, "y", 1), 0);
  NBT_CHECK(nb_rt_tick(rt, 2) > 0);
  NBT_CHECK(strcmp(sink_got(rt, 201), "y:3b") == 0);
  nb_rt_close(rt);
}

typedef struct driver_s {
  char path[128];
  int hup; /* 1: change in place, then SIGHUP (the watch is off) */
  int ok;  /* every step saw its effect */
} driver_t;

/* Does step (0 rename a new file over the script, 1 write it in place, 2
 * write it in place and send SIGHUP) with the agent's label c until the
 * marker of version `version` shows (bounded: ~10 s); returns 1 when it
 * showed. Repeating is harmless: an unchanged source does not reload, and
 * a repeat covers a first change made before the loop was listening. */
static int step_until(const char *path, int step, char c, int version) {
  char tmp[160], mark[160];
  snprintf(mark, sizeof mark, "%s/v%d", dir, version);
  char *s = agent_as(c);
  int seen = 0;
  for (int i = 0; i < 20 && !seen; i++) {
    if (step == 0) {
      snprintf(tmp, sizeof tmp, "%s/.relay.lua.new", dir);
      write_file(tmp, s);
      rename(tmp, path); /* an editor's save: a new file renamed over */
    } else {
      write_file(path, s);
      if (step == 2) kill(getpid(), SIGHUP);
    }
    struct stat st;
    for (int k = 0; k < 100 && !seen; k++) {
      seen = stat(mark, &st) == 0;
      if (!seen) nbt_sleep_ms(5);
    }
  }
  free(s);
  return seen;
}

/* The other side of the loop: changes the script, waits for the agent's
 * marker of each new version, then ends the run with SIGTERM. */
static void *drive(void *arg) {
  driver_t *d = arg;
  if (d->hup) {
    d->ok = step_until(d->path, 2, 'h', 2);
  } else {
    d->ok = step_until(d->path, 0, 'r', 2);
    d->ok &= step_until(d->path, 1, 'w', 3);
  }
  kill(getpid(), SIGTERM);
  return NULL;
}

/* Runs the relay (version 1 written first) on the loop while fn(d)
 * changes its script and ends the run; returns the runtime for the
 * caller's checks (to close), or NULL. */
static nb_rt_t *run_driven(driver_t *d, void *(*fn)(void *), int no_watch) {
  snprintf(d->path, sizeof d->path, "%s/relay.lua", dir);
  NBT_EQ(write_file(d->path, agent_src), 0);
  nb_rt_t *rt = open_relay(1000000);
  NBT_CHECK(rt != NULL);
  if (!rt) return NULL;
  /* A SIGHUP or SIGTERM that beats the loop's handlers must not kill the
   * test: ignored until libuv installs its own. */
  signal(SIGHUP, SIG_IGN);
  signal(SIGTERM, SIG_IGN);
  pthread_t t;
  pthread_create(&t, NULL, fn, d);
  FILE *out = tmpfile();
  nb_rt_run_opts_t o = {.for_ns = 30000000000ull, .out = out,
                        .no_watch = no_watch};
  NBT_EQ(nb_rt_run(rt, &o), 0);
  pthread_join(t, NULL);
  fclose(out);
  NBT_CHECK(d->ok);
  return rt;
}

/* Runs the relay on the loop while drive() changes its script. */
static void run_with_driver(int hup, uint32_t want_version) {
  driver_t d = {.hup = hup};
  for (int i = 2; i <= 3; i++) {
    char mark[160];
    snprintf(mark, sizeof mark, "%s/v%d", dir, i);
    unlink(mark);
  }
  nb_rt_t *rt = run_driven(&d, drive, hup);
  if (!rt) return;
  nb_rt_version_t v;
  nb_rt_version(rt, 0, &v);
  NBT_EQ(v.counter, want_version);
  NBT_EQ(v.rejected, 0);
  nb_rt_close(rt);
}

/* Saves 12 versions in quick bursts (some inside one debounce, some while
 * the previous compile may still run on the thread pool), with SIGHUPs
 * among them, then a last one, and waits for the last one's marker;
 * sets d->ok; returns NULL. */
static void *drive_burst(void *arg) {
  driver_t *d = arg;
  char tmp[160];
  snprintf(tmp, sizeof tmp, "%s/.relay.lua.new", dir);
  for (int i = 0; i < 12; i++) {
    /* Renamed over, so a read never sees half a file (an in-place write
     * read midway is rejected, as documented). */
    char *s = agent_as((char)('a' + i));
    write_file(tmp, s);
    rename(tmp, d->path);
    free(s);
    if (i % 3 == 0) kill(getpid(), SIGHUP);
    nbt_sleep_ms((i * 7) % 25);
  }
  /* y read by a SIGHUP, z saved right after: two compiles in flight. */
  char *y = agent_as('y');
  write_file(tmp, y);
  rename(tmp, d->path);
  free(y);
  kill(getpid(), SIGHUP);
  char *z = agent_as('z');
  char mark[160];
  snprintf(mark, sizeof mark, "%s/lz", dir);
  struct stat st;
  int seen = 0;
  write_file(tmp, z);
  rename(tmp, d->path);
  for (int k = 0; k < 2000 && !seen; k++) {
    seen = stat(mark, &st) == 0;
    if (!seen) nbt_sleep_ms(5);
  }
  free(z);
  d->ok = seen;
  nbt_sleep_ms(100); /* a stale compile would land in here */
  kill(getpid(), SIGTERM);
  return NULL;
}

/* Versions compiled off the loop apply in the order they were read: after
 * a burst of saves and SIGHUPs the last save runs, nothing was rejected
 * and the counter moved once per version applied. */
static void a_burst_of_saves_ends_on_the_last(void) {
  driver_t d = {0};
  nb_rt_t *rt = run_driven(&d, drive_burst, 0);
  if (!rt) return;
  char *z = agent_as('z');
  char want[17];
  snprintf(want, sizeof want, "%016" PRIx64, nb__fnv1a(z, strlen(z)));
  free(z);
  nb_rt_version_t v;
  NBT_EQ(nb_rt_version(rt, 0, &v), 0);
  NBT_CHECK(strcmp(v.hash, want) == 0);
  NBT_EQ(v.rejected, 0);
  NBT_EQ(v.counter, v.reloads + 1);
  NBT_CHECK(v.reloads >= 2 && v.reloads <= 14);
  nb_rt_close(rt);
}

static void the_watch_reloads_on_rename_and_in_place_writes(void) {
  run_with_driver(0, 3);
}

static void sighup_reloads_changed_scripts(void) {
  run_with_driver(1, 2);
}

/* Gives each test's process its own directory for the scripts. */
static void make_dir(void) {
  snprintf(dir, sizeof dir, "/tmp/nb_test_reload.XXXXXX");
  const char *made = mkdtemp(dir);
  if (!made) printf("    mkdtemp: %s\n", strerror(errno));
  NBT_CHECK(made != NULL);
}

/* Removes the directory and what the test wrote in it. */
static void remove_dir(void) {
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  if (system(cmd) != 0) printf("# could not remove %s\n", dir);
}

static const nbt_hooks_t hooks = {make_dir, remove_dir};

static const nbt_test_t tests[] = {
    NBT_TEST(reload_from_source_and_file),
    NBT_TEST(prepare_on_a_thread_then_commit),
    NBT_TEST(the_watch_reloads_on_rename_and_in_place_writes),
    NBT_TEST(sighup_reloads_changed_scripts),
    NBT_TEST(a_burst_of_saves_ends_on_the_last),
};

int main(int argc, char **argv) {
  setenv("NB_LUA_PATH", "lua", 1);
  return NBT_MAIN(argc, argv, tests, &hooks);
}
