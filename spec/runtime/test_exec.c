/* nb.exec and nb.files from C: the request backends (runtime/nb_rt_exec.c,
 * runtime/nb_rt_files.c, runtime/nb_rt_allow.c) driven through the runner
 * fixture, so that make test SAN=address checks them under ASan, UBSan
 * and LeakSanitizer (every request freed, on completion and on cancel),
 * which the busted specs (spec/runtime/exec_spec.lua, files_spec.lua)
 * cannot. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "nb_rt.h"
#include "nbtest.h"

/* Returns a runtime whose neuron "runner" (spec/fixtures/exec/runner.lua)
 * has the jobs given as Lua source and the extra keys, or NULL. */
static nb_rt_t *open_runner(const char *jobs, const char *keys) {
  char src[4096];
  snprintf(src, sizeof src,
           "return { name = 'exec', tick = 'free', arena = { size = 1048576 },\n"
           "  neurons = { runner = { script = 'spec/fixtures/exec/runner.lua',\n"
           "    refractory = 0, config = { jobs = { %s } }, %s } } }\n",
           jobs, keys);
  nb_rt_opts_t o = {.quiet = 1, .recorders = "test"};
  char *err = NULL;
  nb_rt_t *rt = nb_rt_open_topo(src, strlen(src), "=exec", &o, &err);
  if (!rt) printf("    open failed: %s\n", err);
  nb_rt_free_string(err);
  return rt;
}

/* Sends the runner a spike with payload p; returns nothing. */
static void say(nb_rt_t *rt, const char *p) {
  nb_rt_inject(rt, (uint32_t)nb_rt_id(rt, "test"), 0, 0, 0, p, strlen(p));
}

/* Ticks rt until the runner's state dump contains want (at most 20 s);
 * returns the dump (free with nb_rt_free_string) or NULL. */
static char *until_state(nb_rt_t *rt, const char *want) {
  for (int i = 0; i < 10000; i++) {
    nb_rt_tick(rt, 1);
    char *err = NULL;
    char *d = nb_rt_state_dump(rt, 0, &err);
    nb_rt_free_string(err);
    if (d && strstr(d, want)) return d;
    nb_rt_free_string(d);
    struct timespec ts = {0, 2000000};
    nanosleep(&ts, NULL);
  }
  return NULL;
}

static void runs_processes_and_files(void) {
  char dir[] = "/tmp/nbexecXXXXXX";
  NBT_CHECK(mkdtemp(dir) != NULL);
  char jobs[2048];
  snprintf(jobs, sizeof jobs,
           "{ exec = { cmd = 'sh', args = { '-c', 'echo out; echo err >&2; exit 3' } } },\n"
           "{ exec = { cmd = 'seq', args = { 1, 300000 } } },\n"
           "{ exec = { cmd = 'cat', stdin = string.rep('x', 100000) } },\n"
           "{ exec = { cmd = 'sleep', args = { 20 }, timeout = '100ms' } },\n"
           "{ exec = { cmd = 'no-such-command-nb' } },\n"
           "{ exec = { cmd = 'head', args = { '-c', 17000000, '/dev/zero' } } },\n"
           "{ write = '%s/f.txt', data = 'hello', read = '%s/f.txt' },\n"
           "{ read = '%s/missing' },\n"
           "{ exec = { cmd = '/no/such/tool' } },\n",
           dir, dir, dir);
  nb_rt_t *rt = open_runner(jobs, "");
  NBT_CHECK(rt != NULL);
  if (!rt) return;
  say(rt, "run");
  char *d = until_state(rt, "[\"done\"]=9");
  NBT_CHECK(d != NULL);
  if (d) {
    NBT_CHECK(strstr(d, "[\"status\"]=3") && strstr(d, "[\"stderr\"]=\"err\\\n\""));
    NBT_CHECK(strstr(d, "[\"stdout_lines\"]=300000"));
    NBT_CHECK(strstr(d, "[\"stdout_len\"]=100000"));
    NBT_CHECK(strstr(d, "timed out after 100ms"));
    NBT_CHECK(strstr(d, "no-such-command-nb: command not found"));
    NBT_CHECK(strstr(d, "[\"truncated\"]=\"stdout\""));
    NBT_CHECK(strstr(d, "[\"data\"]=\"hello\""));
    NBT_CHECK(strstr(d, "missing: no such file or directory"));
    NBT_CHECK(strstr(d, "/no/such/tool: no such file"));
  }
  nb_rt_free_string(d);
  nb_rt_close(rt);
  char cmd[256];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  NBT_CHECK(system(cmd) == 0);
}

static void the_sandbox_refuses(void) {
  nb_rt_t *rt = open_runner("{ exec = { cmd = 'cat' } }, { read = '/etc/passwd' },"
                            "{ exec = { cmd = 'true' } }",
                            "sandbox = true, exec = { 'true' }, files = { 'spec' }");
  NBT_CHECK(rt != NULL);
  if (!rt) return;
  say(rt, "run");
  char *d = until_state(rt, "[\"done\"]=3");
  NBT_CHECK(d && strstr(d, "\\\"cat\\\" is not allowed in the sandbox"));
  NBT_CHECK(d && strstr(d, "/etc/passwd is outside the sandbox's directories"));
  NBT_CHECK(d && strstr(d, "[\"status\"]=0"));
  nb_rt_free_string(d);
  nb_rt_close(rt);
}

/* Reads the first pid in file (0 when none yet). */
static int pid_in(const char *file) {
  FILE *f = fopen(file, "r");
  int pid = 0;
  if (f) {
    if (fscanf(f, "%d", &pid) != 1) pid = 0;
    fclose(f);
  }
  return pid;
}

static void closing_the_runtime_kills_and_frees(void) {
  char file[] = "/tmp/nbexecpidXXXXXX";
  int fd = mkstemp(file);
  NBT_CHECK(fd >= 0);
  close(fd);
  unlink(file);
  char jobs[512];
  snprintf(jobs, sizeof jobs,
           "{ exec = { cmd = 'sh', args = { '-c', 'echo $$ > %s; exec sleep 30' }, "
           "timeout = false } },\n"
           "{ write = '%s.w', data = string.rep('y', 1000000) },\n",
           file, file);
  nb_rt_t *rt = open_runner(jobs, "");
  NBT_CHECK(rt != NULL);
  if (!rt) return;
  say(rt, "run");
  int pid = 0;
  for (int i = 0; i < 5000 && !pid; i++) {
    nb_rt_tick(rt, 1);
    pid = pid_in(file);
    struct timespec ts = {0, 1000000};
    nanosleep(&ts, NULL);
  }
  NBT_CHECK(pid > 0 && kill(pid, 0) == 0);
  nb_rt_close(rt); /* cancels both: the process is killed and reaped */
  NBT_CHECK(pid > 0 && kill(pid, 0) == -1);
  unlink(file);
  char w[64];
  snprintf(w, sizeof w, "%s.w", file);
  unlink(w);
}

int main(int argc, char **argv) {
  setenv("NB_LUA_PATH", "lua", 1); /* run from the repository root */
  static const nbt_test_t tests[] = {
      NBT_TEST(runs_processes_and_files),
      NBT_TEST(the_sandbox_refuses),
      NBT_TEST(closing_the_runtime_kills_and_frees),
  };
  return NBT_MAIN(argc, argv, tests, NULL);
}
