/* The C test harness itself (spec/nbtest.h). Each test runs this binary
 * again with NBT_VICTIMS set, which makes it a test binary over a table of
 * victim tests (one passes, one fails a check, one aborts, one hangs, ...),
 * and checks what the runner printed and how it exited: a crash or a hang
 * fails that test only and the next one still runs, names filter, --list
 * lists, --run runs in-process, hooks run around each test, a timeout
 * takes the test's own children with it. */
#include <fcntl.h>
#include <sys/resource.h>

#include "nbtest.h"

/* ---- the victims ------------------------------------------------------ */

static void v_passes(void) {
  printf("    # v_passes ran in %d\n", (int)getpid());
  NBT_EQ(1, 1);
}

static void v_fails(void) {
  NBT_EQ(1, 2);
  NBT_CHECK(0); /* only the first failure is printed */
}

static void v_aborts(void) {
  struct rlimit none = {0, 0};
  setrlimit(RLIMIT_CORE, &none);
  printf("    # printed before the abort\n");
  abort();
}

static void v_hangs(void) {
  for (;;) pause();
}

/* Starts a grandchild that hangs too and names it in $NBT_VICTIM_PIDFILE. */
static void v_forks_and_hangs(void) {
  pid_t pid = fork();
  if (pid == 0) {
    for (;;) pause();
  }
  FILE *f = fopen(getenv("NBT_VICTIM_PIDFILE"), "w");
  if (f) {
    fprintf(f, "%d\n", (int)pid);
    fclose(f);
  }
  for (;;) pause();
}

static void v_sleeps_3s(void) { nbt_sleep_ms(3000); }
static void v_x(void) { printf("    # v_x ran in %d\n", (int)getpid()); }
static void v_x_long(void) {}
static void v_skipped(void) { NBT_CHECK(0); }
static void v_after(void) { NBT_CHECK(1); }

/* Fails when NBT_VICTIM_SETUP_FAILS is set (the test must not run). */
static void v_setup(void) { NBT_CHECK(getenv("NBT_VICTIM_SETUP_FAILS") == NULL); }
static void v_teardown(void) { printf("    # teardown ran\n"); }

static const nbt_test_t victims[] = {
    NBT_TEST(v_passes),
    NBT_TEST(v_fails),
    NBT_TEST(v_aborts),
    NBT_TEST_TIMEOUT(v_hangs, 1),
    NBT_TEST_TIMEOUT(v_forks_and_hangs, 1),
    NBT_TEST(v_sleeps_3s),
    NBT_TEST(v_x),
    NBT_TEST(v_x_long),
    NBT_TEST_SKIP(v_skipped, "a victim that must not run"),
    NBT_TEST(v_after),
};

static const nbt_hooks_t victim_hooks = {v_setup, v_teardown};

/* ---- driving a victim run ---------------------------------------------- */

typedef struct {
  char out[16384]; /* stdout and stderr, in order */
  int status;      /* the exit status, or -1 */
  int pid;         /* the runner's process */
} victim_run_t;

/* Runs this binary over the victims with the given arguments (NULL
 * terminated) and extra environment ("NAME=value", NULL terminated), with
 * the time limits unscaled; returns r. */
static victim_run_t *run_victims(victim_run_t *r, const char *const *args,
                                 const char *const *env) {
  memset(r, 0, sizeof *r);
  r->status = -1;
  int fd[2];
  if (pipe(fd) != 0) return r;
  pid_t pid = fork();
  if (pid == 0) {
    dup2(fd[1], 1);
    dup2(fd[1], 2);
    close(fd[0]);
    close(fd[1]);
    unsetenv("NBT_TIMEOUT");
    setenv("NBT_TIMEOUT_SCALE", "1", 1);
    setenv("NBT_VICTIMS", "1", 1);
    for (int i = 0; env && env[i]; i++) putenv((char *)env[i]);
    const char *argv[16] = {"test_nbtest"};
    for (int i = 0; args && args[i] && i < 14; i++) argv[i + 1] = args[i];
    execv("/proc/self/exe", (char *const *)argv);
    _exit(127);
  }
  close(fd[1]);
  r->pid = (int)pid;
  size_t n = 0;
  ssize_t k;
  while ((k = read(fd[0], r->out + n, sizeof r->out - 1 - n)) > 0) n += (size_t)k;
  close(fd[0]);
  int st;
  if (pid > 0 && waitpid(pid, &st, 0) == pid && WIFEXITED(st)) r->status = WEXITSTATUS(st);
  if (!strstr(r->out, "\n") || r->status < 0) printf("    victim run printed:\n%s\n", r->out);
  return r;
}

/* Returns 1 when line is one whole line of out. */
static int has_line(const char *out, const char *line) {
  size_t len = strlen(line);
  for (const char *p = out; (p = strstr(p, line)) != NULL; p++) {
    if ((p == out || p[-1] == '\n') && (p[len] == '\n' || p[len] == 0)) return 1;
  }
  return 0;
}

/* Returns the position of line in out, or -1. */
static long line_at(const char *out, const char *line) {
  size_t len = strlen(line);
  for (const char *p = out; (p = strstr(p, line)) != NULL; p++) {
    if ((p == out || p[-1] == '\n') && (p[len] == '\n' || p[len] == 0)) return p - out;
  }
  return -1;
}

/* ---- the tests ---------------------------------------------------------- */

static void every_test_gets_a_verdict_after_a_crash_and_a_hang(void) {
  static victim_run_t r;
  const char *args[] = {"v_passes", "v_fails", "v_aborts", "v_hangs", "v_skipped",
                        "v_after", NULL};
  run_victims(&r, args, NULL);
  NBT_CHECK(has_line(r.out, "ok - v_passes"));
  NBT_CHECK(has_line(r.out, "not ok - v_fails"));
  NBT_CHECK(strstr(r.out, "1 == 2: 1 != 2") != NULL);
  NBT_CHECK(strstr(r.out, "check failed: 0") == NULL);
  NBT_CHECK(has_line(r.out, "not ok - v_aborts: killed by signal 6 (Aborted)"));
  NBT_CHECK(has_line(r.out, "not ok - v_hangs: timed out after 1.0 s"));
  NBT_CHECK(has_line(r.out, "# skipped: v_skipped (a victim that must not run)"));
  NBT_CHECK(has_line(r.out, "ok - v_after"));
  NBT_CHECK(has_line(r.out, "2 passed, 3 failed"));
  NBT_EQ(r.status, 1);
  if (nbt__cur_failed) printf("%s", r.out);
}

/* Returns the pid a victim printed as "NAME ran in PID", or -1. */
static int ran_in(const char *out, const char *name) {
  char key[64];
  snprintf(key, sizeof key, "# %s ran in ", name);
  const char *p = strstr(out, key);
  return p ? atoi(p + strlen(key)) : -1;
}

static void each_test_has_its_own_process(void) {
  static victim_run_t r;
  const char *args[] = {"v_passes", "v_x", NULL};
  run_victims(&r, args, NULL);
  int a = ran_in(r.out, "v_passes"), b = ran_in(r.out, "v_x");
  NBT_CHECK(a > 0 && b > 0);
  NBT_CHECK(a != b);
  NBT_CHECK(a != r.pid && b != r.pid);
  NBT_CHECK(has_line(r.out, "2 passed, 0 failed"));
  /* --run NAME runs that one test in the runner's own process. */
  const char *run[] = {"--run", "v_passes", NULL};
  run_victims(&r, run, NULL);
  NBT_EQ(ran_in(r.out, "v_passes"), r.pid);
  NBT_CHECK(has_line(r.out, "ok - v_passes"));
  NBT_CHECK(has_line(r.out, "1 passed, 0 failed"));
  NBT_EQ(r.status, 0);
  const char *inexact[] = {"--run", "v_pass", NULL}; /* exact names only */
  run_victims(&r, inexact, NULL);
  NBT_EQ(r.status, 2);
}

static void a_crash_keeps_what_the_test_printed(void) {
  static victim_run_t r;
  const char *args[] = {"v_aborts", NULL};
  run_victims(&r, args, NULL);
  long said = line_at(r.out, "    # printed before the abort");
  long verdict = line_at(r.out, "not ok - v_aborts: killed by signal 6 (Aborted)");
  NBT_CHECK(said >= 0);
  NBT_CHECK(verdict > said);
  NBT_CHECK(has_line(r.out, "0 passed, 1 failed"));
  NBT_EQ(r.status, 1);
}

static void names_select_exactly_or_by_substring(void) {
  static victim_run_t r;
  const char *exact[] = {"v_x", NULL};
  run_victims(&r, exact, NULL);
  NBT_CHECK(has_line(r.out, "ok - v_x"));
  NBT_CHECK(!has_line(r.out, "ok - v_x_long"));
  NBT_CHECK(has_line(r.out, "1 passed, 0 failed"));
  NBT_EQ(r.status, 0);
  const char *sub[] = {"x_", "v_af", NULL};
  run_victims(&r, sub, NULL);
  NBT_CHECK(has_line(r.out, "ok - v_x_long"));
  NBT_CHECK(has_line(r.out, "ok - v_after"));
  NBT_CHECK(!has_line(r.out, "ok - v_x"));
  NBT_CHECK(has_line(r.out, "2 passed, 0 failed"));
  NBT_EQ(r.status, 0);
}

static void a_name_that_selects_nothing_is_an_error(void) {
  static victim_run_t r;
  const char *args[] = {"v_passes", "no_such_test", NULL};
  run_victims(&r, args, NULL);
  NBT_CHECK(strstr(r.out, "no test matches \"no_such_test\"") != NULL);
  NBT_CHECK(!has_line(r.out, "ok - v_passes"));
  NBT_EQ(r.status, 2);
  const char *opt[] = {"--bogus", NULL};
  run_victims(&r, opt, NULL);
  NBT_EQ(r.status, 2);
}

static void list_prints_every_name_in_order(void) {
  static victim_run_t r;
  const char *args[] = {"--list", NULL};
  run_victims(&r, args, NULL);
  char want[1024] = "";
  for (size_t i = 0; i < sizeof victims / sizeof victims[0]; i++) {
    strcat(want, victims[i].name);
    strcat(want, "\n");
  }
  NBT_CHECK(strcmp(r.out, want) == 0);
  NBT_EQ(r.status, 0);
}

static void a_failed_setup_skips_the_test_and_teardown_runs(void) {
  static victim_run_t r;
  const char *args[] = {"v_passes", NULL};
  const char *env[] = {"NBT_VICTIM_SETUP_FAILS=1", NULL};
  run_victims(&r, args, env);
  NBT_CHECK(has_line(r.out, "not ok - v_passes"));
  NBT_CHECK(strstr(r.out, "v_passes ran") == NULL);
  NBT_CHECK(has_line(r.out, "    # teardown ran"));
  NBT_EQ(r.status, 1);
}

static void a_timeout_kills_what_the_test_started(void) {
  char pidfile[] = "/tmp/nbt-victim-XXXXXX";
  int fd = mkstemp(pidfile);
  NBT_CHECK(fd >= 0);
  if (fd < 0) return;
  close(fd);
  char env_pidfile[64];
  snprintf(env_pidfile, sizeof env_pidfile, "NBT_VICTIM_PIDFILE=%s", pidfile);
  static victim_run_t r;
  const char *args[] = {"v_forks_and_hangs", NULL};
  const char *env[] = {env_pidfile, NULL};
  run_victims(&r, args, env);
  NBT_CHECK(has_line(r.out, "not ok - v_forks_and_hangs: timed out after 1.0 s"));
  int pid = 0;
  FILE *f = fopen(pidfile, "r");
  if (f) {
    if (fscanf(f, "%d", &pid) != 1) pid = 0;
    fclose(f);
  }
  unlink(pidfile);
  NBT_CHECK(pid > 0);
  if (pid <= 0) return;
  /* Killed: gone, or a zombie until its new parent reaps it. */
  int dead = 0;
  for (int i = 0; i < 500 && !dead; i++) {
    char path[64], stat[256] = "";
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE *s = fopen(path, "r");
    if (!s) {
      dead = 1;
      break;
    }
    size_t n = fread(stat, 1, sizeof stat - 1, s);
    fclose(s);
    stat[n] = 0;
    const char *p = strrchr(stat, ')');
    dead = p && p[1] == ' ' && (p[2] == 'Z' || p[2] == 'X');
    if (!dead) nbt_sleep_ms(10);
  }
  if (!dead) kill(pid, SIGKILL);
  NBT_CHECK(dead);
}

static void nbt_timeout_replaces_every_limit(void) {
  static victim_run_t r;
  const char *args[] = {"v_sleeps_3s", NULL};
  const char *env[] = {"NBT_TIMEOUT=1", NULL};
  run_victims(&r, args, env);
  NBT_CHECK(has_line(r.out, "not ok - v_sleeps_3s: timed out after 1.0 s"));
  NBT_EQ(r.status, 1);
  const char *none[] = {"NBT_TIMEOUT=0", NULL}; /* 0: no limit */
  const char *hang1[] = {"v_sleeps_3s", NULL};
  run_victims(&r, hang1, none);
  NBT_CHECK(has_line(r.out, "ok - v_sleeps_3s"));
  NBT_EQ(r.status, 0);
}

static const nbt_test_t tests[] = {
    NBT_TEST(every_test_gets_a_verdict_after_a_crash_and_a_hang),
    NBT_TEST(each_test_has_its_own_process),
    NBT_TEST(a_crash_keeps_what_the_test_printed),
    NBT_TEST(names_select_exactly_or_by_substring),
    NBT_TEST(a_name_that_selects_nothing_is_an_error),
    NBT_TEST(list_prints_every_name_in_order),
    NBT_TEST(a_failed_setup_skips_the_test_and_teardown_runs),
    NBT_TEST(a_timeout_kills_what_the_test_started),
    NBT_TEST(nbt_timeout_replaces_every_limit),
};

int main(int argc, char **argv) {
  if (getenv("NBT_VICTIMS")) return NBT_MAIN(argc, argv, victims, &victim_hooks);
  return NBT_MAIN(argc, argv, tests, NULL);
}
