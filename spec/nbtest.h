/* nbtest.h: the C test harness, one process per test (libuv's test runner
 * is the model). A test file lists its tests in a table and hands it to
 * nbt_main:
 *
 *   static const nbt_test_t tests[] = {
 *       NBT_TEST(publish_and_read),
 *       NBT_TEST_TIMEOUT(a_million_spikes, 180),  // seconds, before scaling
 *   };
 *   int main(int argc, char **argv) { return NBT_MAIN(argc, argv, tests, NULL); }
 *
 * The runner forks one child per test: a crash, a sanitizer report or a
 * hang fails that test only and the next one still runs. The child runs
 * in its own process group, so a test that times out is killed together
 * with any process it started. Each test prints "ok - NAME" or
 * "not ok - NAME" (a crash adds the signal, a hang the time it was given),
 * checks print their first failure above that line, and the run ends with
 * "N passed, M failed"; the exit status is 1 when a test failed, 2 on a
 * bad command line. spec/run.sh sums the closing lines of every binary.
 *
 * Command line:
 *   BINARY              every test, each in its own process
 *   BINARY NAME...      only the named tests: a NAME that is some test's
 *                       exact name selects that test alone, any other NAME
 *                       selects every test whose name contains it; a NAME
 *                       that selects nothing is an error (exit 2)
 *   BINARY --list       the test names, one per line, in run order
 *   BINARY --run NAME   that one test (exact name) in this very process:
 *                       no fork, no timeout (for gdb and rr)
 *
 * Timeouts: 60 s per test unless the table gives its own; NBT_TIMEOUT=S in
 * the environment replaces every test's value (0: no limit). Under a
 * sanitizer the value is multiplied by NBT_TIMEOUT_SCALE (default 3 under
 * ASan, 5 under TSan, 1 otherwise). */
#ifndef NBTEST_H
#define NBTEST_H

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ---- checks ---------------------------------------------------------- */

/* The failed checks of the running test (its process's own count). */
static int nbt__cur_failed;

/* Counts a failed check; prints only the test's first one. */
static void nbt__fail(const char *file, int line, const char *what) {
  if (!nbt__cur_failed) printf("    %s:%d: %s\n", file, line, what);
  nbt__cur_failed++;
}

#define NBT_CHECK(cond)                                                      \
  do {                                                                       \
    if (!(cond)) nbt__fail(__FILE__, __LINE__, "check failed: " #cond);      \
  } while (0)

/* Compares two integers and prints both values on failure. */
#define NBT_EQ(a, b)                                                         \
  do {                                                                       \
    long long nbt_a_ = (long long)(a), nbt_b_ = (long long)(b);              \
    if (nbt_a_ != nbt_b_) {                                                  \
      char nbt_m_[256];                                                      \
      snprintf(nbt_m_, sizeof nbt_m_, "%s == %s: %lld != %lld", #a, #b,      \
               nbt_a_, nbt_b_);                                              \
      nbt__fail(__FILE__, __LINE__, nbt_m_);                                 \
    }                                                                        \
  } while (0)

/* Compares two doubles within eps. */
#define NBT_NEAR(a, b, eps)                                                  \
  do {                                                                       \
    double nbt_a_ = (double)(a), nbt_b_ = (double)(b);                       \
    if (!(nbt_a_ - nbt_b_ <= (eps) && nbt_b_ - nbt_a_ <= (eps))) {           \
      char nbt_m_[256];                                                      \
      snprintf(nbt_m_, sizeof nbt_m_, "%s ~ %s: %.9g != %.9g", #a, #b,       \
               nbt_a_, nbt_b_);                                              \
      nbt__fail(__FILE__, __LINE__, nbt_m_);                                 \
    }                                                                        \
  } while (0)

/* ---- timing and environment helpers ----------------------------------- */

/* Returns the monotonic clock in nanoseconds. */
static inline uint64_t nbt_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Returns the monotonic clock in seconds. */
static inline double nbt_now_s(void) { return (double)nbt_now_ns() / 1e9; }

/* Returns the calling thread's CPU time in nanoseconds: unlike wall time
 * it does not grow while other processes hold the CPU. */
static inline uint64_t nbt_thread_cpu_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Returns the CPU time of the whole process (every thread) in nanoseconds. */
static inline uint64_t nbt_process_cpu_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Sleeps for ms milliseconds. */
static inline void nbt_sleep_ms(unsigned ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

#if defined(__SANITIZE_ADDRESS__)
#define NBT__SAN "address"
#elif defined(__SANITIZE_THREAD__)
#define NBT__SAN "thread"
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define NBT__SAN "address"
#elif __has_feature(thread_sanitizer)
#define NBT__SAN "thread"
#endif
#endif

/* Returns the sanitizer this binary runs under ("address", "thread"), or
 * NB_SAN from the environment for a plain build, or NULL: tests use it to
 * shrink loop counts, never to skip a check. */
static inline const char *nbt_san(void) {
#ifdef NBT__SAN
  return NBT__SAN;
#else
  const char *s = getenv("NB_SAN");
  return s && *s ? s : NULL;
#endif
}

/* Returns nonzero when running under a sanitizer (smaller loop counts). */
static inline int nbt_under_san(void) { return nbt_san() != NULL; }

/* ---- the runner ------------------------------------------------------- */

typedef struct {
  const char *name;
  void (*fn)(void);
  unsigned timeout_s; /* 0: the default (60 s) */
  const char *skip;   /* non-NULL: listed but not run, with this reason */
} nbt_test_t;

/* Per-process hooks, both optional: setup runs in the test's process
 * before the test (a check failed there skips the test), teardown after it;
 * both may use the checks. */
typedef struct {
  void (*setup)(void);
  void (*teardown)(void);
} nbt_hooks_t;

#define NBT_TEST(fn) {#fn, fn, 0, NULL}
#define NBT_TEST_TIMEOUT(fn, seconds) {#fn, fn, seconds, NULL}
#define NBT_TEST_SKIP(fn, reason) {#fn, fn, 0, reason}
#define NBT_MAIN(argc, argv, tests, hooks)                                   \
  nbt_main(argc, argv, tests, sizeof(tests) / sizeof((tests)[0]), hooks)

#define NBT__DEFAULT_TIMEOUT_S 60u

/* The running child, killed with its process group when the runner is
 * interrupted. */
static volatile sig_atomic_t nbt__child;

/* Kills the running test's process group, then dies of the same signal. */
static void nbt__on_signal(int sig) {
  pid_t c = (pid_t)nbt__child;
  if (c > 0) {
    kill(-c, SIGKILL);
    kill(c, SIGKILL);
  }
  signal(sig, SIG_DFL);
  raise(sig);
}

/* Returns an unsigned number from the environment, or dflt when unset or
 * malformed. */
static double nbt__env_num(const char *name, double dflt) {
  const char *s = getenv(name);
  if (!s || !*s) return dflt;
  char *end;
  double v = strtod(s, &end);
  return *end == 0 && v >= 0 ? v : dflt;
}

/* Returns the time limit of test t in milliseconds (0: none). */
static uint64_t nbt__timeout_ms(const nbt_test_t *t) {
  double s = t->timeout_s ? t->timeout_s : NBT__DEFAULT_TIMEOUT_S;
  s = nbt__env_num("NBT_TIMEOUT", s);
  double scale = 1;
  const char *san = nbt_san();
  if (san && strcmp(san, "address") == 0) scale = 3;
  if (san && strcmp(san, "thread") == 0) scale = 5;
  scale = nbt__env_num("NBT_TIMEOUT_SCALE", scale);
  return (uint64_t)(s * scale * 1000.0);
}

/* Makes stdout line buffered so a crash keeps what the test printed up to
 * it. glibc only resets a used stream's buffer pointers when it is handed
 * a buffer, hence the static one. */
static void nbt__line_buffered(void) {
  static char buf[BUFSIZ];
  fflush(stdout);
  setvbuf(stdout, buf, _IOLBF, sizeof buf);
}

/* Runs the hooks and test t in this process; returns its failed checks. */
static int nbt__run_here(const nbt_test_t *t, const nbt_hooks_t *h) {
  nbt__cur_failed = 0;
  if (h && h->setup) h->setup();
  if (!nbt__cur_failed) t->fn();
  if (h && h->teardown) h->teardown();
  fflush(stdout);
  return nbt__cur_failed;
}

/* Runs test t in a child process under its time limit; prints its verdict
 * and returns 1 when it passed. */
static int nbt__run_child(const nbt_test_t *t, const nbt_hooks_t *h) {
  uint64_t limit = nbt__timeout_ms(t);
  fflush(stdout);
  fflush(stderr);
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid < 0) {
    printf("not ok - %s: fork failed: %s\n", t->name, strerror(errno));
    return 0;
  }
  if (pid == 0) {
    setpgid(0, 0);
    /* A runner killed without its handler (SIGKILL) takes its test along. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(1);
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    signal(SIGHUP, SIG_DFL);
    nbt__line_buffered();
    /* exit, not _exit: LeakSanitizer checks each test at its exit. */
    exit(nbt__run_here(t, h) ? 1 : 0);
  }
  setpgid(pid, pid); /* whichever of parent and child gets there first */
  nbt__child = pid;
  uint64_t start = nbt_now_ns();
  unsigned nap = 1;
  int status = 0, timed_out = 0;
  for (;;) {
    pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid) break;
    if (r < 0 && errno != EINTR) {
      printf("not ok - %s: waitpid: %s\n", t->name, strerror(errno));
      nbt__child = 0;
      return 0;
    }
    if (limit && (nbt_now_ns() - start) / 1000000u >= limit) {
      kill(-pid, SIGKILL);
      kill(pid, SIGKILL);
      while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
      }
      timed_out = 1;
      break;
    }
    nbt_sleep_ms(nap);
    if (nap < 20) nap *= 2;
  }
  /* Whatever the test started and left running goes with it. */
  kill(-pid, SIGKILL);
  nbt__child = 0;
  fflush(stdout);
  if (timed_out) {
    printf("not ok - %s: timed out after %.1f s\n", t->name, limit / 1000.0);
  } else if (WIFSIGNALED(status)) {
    int sig = WTERMSIG(status);
    printf("not ok - %s: killed by signal %d (%s)\n", t->name, sig,
           strsignal(sig));
  } else if (WIFEXITED(status) && WEXITSTATUS(status) == 1) {
    printf("not ok - %s\n", t->name);
  } else if (WIFEXITED(status) && WEXITSTATUS(status) != 0) {
    printf("not ok - %s: exited %d\n", t->name, WEXITSTATUS(status));
  } else {
    printf("ok - %s\n", t->name);
    fflush(stdout);
    return 1;
  }
  fflush(stdout);
  return 0;
}

/* Returns nonzero when arg selects test t (see the command line above);
 * exact tells whether some test has arg as its exact name. */
static int nbt__selects(const char *arg, int exact, const nbt_test_t *t) {
  return exact ? strcmp(arg, t->name) == 0 : strstr(t->name, arg) != NULL;
}

/* Runs the tests the command line selects (every test without names) and
 * prints the closing line; returns the exit status. */
static int nbt_main(int argc, char **argv, const nbt_test_t *tests, size_t n,
                    const nbt_hooks_t *hooks) {
  if (argc > 1 && strcmp(argv[1], "--list") == 0) {
    for (size_t i = 0; i < n; i++) printf("%s\n", tests[i].name);
    return 0;
  }
  if (argc > 1 && strcmp(argv[1], "--run") == 0) {
    for (size_t i = 0; argc == 3 && i < n; i++) {
      if (strcmp(argv[2], tests[i].name) != 0) continue;
      nbt__line_buffered();
      int failed = nbt__run_here(&tests[i], hooks);
      printf("%s - %s\n", failed ? "not ok" : "ok", tests[i].name);
      printf("%d passed, %d failed\n", !failed, !!failed);
      return failed ? 1 : 0;
    }
    fprintf(stderr, "%s: --run takes one exact test name (see --list)\n", argv[0]);
    return 2;
  }
  char *want = calloc(n ? n : 1, 1);
  if (!want) return 2;
  for (int a = 1; a < argc; a++) {
    if (argv[a][0] == '-') {
      fprintf(stderr, "usage: %s [--list | --run NAME | NAME...]\n", argv[0]);
      free(want);
      return 2;
    }
    int exact = 0, hits = 0;
    for (size_t i = 0; i < n; i++) exact |= strcmp(argv[a], tests[i].name) == 0;
    for (size_t i = 0; i < n; i++)
      if (nbt__selects(argv[a], exact, &tests[i])) want[i] = 1, hits++;
    if (!hits) {
      fprintf(stderr, "%s: no test matches \"%s\" (see --list)\n", argv[0], argv[a]);
      free(want);
      return 2;
    }
  }
  signal(SIGINT, nbt__on_signal);
  signal(SIGTERM, nbt__on_signal);
  signal(SIGHUP, nbt__on_signal);
  int passed = 0, failed = 0;
  for (size_t i = 0; i < n; i++) {
    if (argc > 1 && !want[i]) continue;
    if (tests[i].skip) {
      printf("# skipped: %s (%s)\n", tests[i].name, tests[i].skip);
      continue;
    }
    if (nbt__run_child(&tests[i], hooks)) passed++;
    else failed++;
  }
  free(want);
  printf("%d passed, %d failed\n", passed, failed);
  fflush(stdout);
  return failed ? 1 : 0;
}

#endif
