/* test_lpattern.c: the step-counted pattern functions (runtime/
 * nb_lpattern.c): the same results and errors as LuaJIT's builtins on a
 * large corpus, installed in budgeted and sandboxed states only, and a
 * backtracking match stopped by the budget or, sandboxed without a
 * budget, at the watchdog limit. */
#include <lauxlib.h>
#include <luajit.h>
#include <lualib.h>

#include "nb_lpattern_internal.h"
#include "nb_lstate.h"
#include "nbtest.h"

#define MS 1000000ull
#define BUDGET_NS (20 * MS)

/* Upper bounds are on the thread's CPU time, as in test_lstate.c: on a
 * loaded 2-vCPU machine the scheduler, not the check, decides how long a
 * descheduled match takes to reach its next check, so wall time only has
 * to rule out a hang (WALL_MAX). They stretch under a sanitizer (the setup
 * and the Lua code are slower; the checks are not fewer). */
#define WALL_MAX 5000.0
#ifdef NBT__SAN
#define SLACK 5.0
#else
#define SLACK 1.0
#endif

static char E[16384];

/* Runs spec/fixtures/lpattern/corpus.lua in L (P: the replacements) with
 * seed and n random cases; returns the mismatches (-1 when it did not
 * run), printing the first ones. */
static int corpus(lua_State *L, int seed, int n) {
  lua_newtable(L);
  nb__lpattern_register(L, -1);
  lua_setglobal(L, "P");
  if (luaL_loadfile(L, "spec/fixtures/lpattern/corpus.lua") != 0) {
    printf("    # %s\n", lua_tostring(L, -1));
    return -1;
  }
  lua_pushinteger(L, seed);
  lua_pushinteger(L, n);
  if (lua_pcall(L, 2, 3, 0) != 0) {
    printf("    # corpus: %s\n", lua_tostring(L, -1));
    return -1;
  }
  int cases = (int)lua_tointeger(L, -3), bad = (int)lua_tointeger(L, -2);
  printf("    # %d cases compared, %d mismatches\n", cases, bad);
  if (bad) printf("    %s\n", lua_tostring(L, -1));
  NBT_CHECK(cases >= 4 * n);
  lua_pop(L, 3);
  return bad;
}

/* Under TSan the corpus is skipped: every error LuaJIT raises leaves
 * shadow-stack entries behind, and its ~12,000 errors overflow TSan's
 * stack depot (see test_lstate.c). It runs one thread; ASan covers it. */
#if defined(__SANITIZE_THREAD__)
#define CORPUS_TEST(fn) NBT_TEST_SKIP(fn, "TSan: ~12,000 raised errors overflow its stack depot")
#else
#define CORPUS_TEST(fn) NBT_TEST(fn)
#endif
#define RANDOM_CASES 3000

/* Runs the corpus in a fresh plain state with the JIT on or off; returns
 * nothing. */
static void corpus_in(int jit) {
  lua_State *L = luaL_newstate();
  luaL_openlibs(L);
  if (!jit) luaJIT_setmode(L, 0, LUAJIT_MODE_ENGINE | LUAJIT_MODE_OFF);
  NBT_EQ(corpus(L, 7 + jit, RANDOM_CASES), 0);
  lua_close(L);
}

/* The replacements give what LuaJIT's builtins give (results, errors and
 * their positions) on the hand-written edge cases and 3,000 random
 * pattern/subject pairs, with the JIT off. */
static void test_corpus_jit_off(void) { corpus_in(0); }

/* The same with the JIT on (other random pairs). */
static void test_corpus_jit_on(void) { corpus_in(1); }

/* Returns a state with the given budget, sandbox and watchdog (0: the
 * default), no memory cap. */
static nb_lstate_t *mk(uint64_t budget, int sandbox, int jit, uint64_t wd) {
  nb_lstate_opts_t o = {.jit = jit, .budget_ns = budget, .sandbox = sandbox,
                        .watchdog_ns = wd, .name = "patterns"};
  nb_lstate_t *S = NULL;
  NBT_EQ(nb_lstate_new(&S, &o), 0);
  return S;
}

/* Runs src as an agent chunk; returns its code (its one result popped). */
static int run(nb_lstate_t *S, const char *src) {
  E[0] = 0;
  int rc = nb_lstate_load_agent(S, src, 1, E, sizeof E);
  if (rc == 0) lua_pop(nb_lstate_L(S), 1);
  return rc;
}

/* The replacements are installed (for string.x and s:x) in budgeted and
 * sandboxed states, and only there: a plain state keeps the builtins. */
static void test_installed_only_when_contained(void) {
  static const char probe[] =
      "local want = ... "
      "for _, k in ipairs({'find', 'match', 'gmatch', 'gsub'}) do "
      "  local f = string[k] "
      "  local builtin = tostring(f):find('builtin', 1, true) ~= nil "
      "  if builtin ~= (want == 'builtin') then error(k .. ' is ' .. tostring(f)) end "
      "  if ('')[k] ~= f then error('method ' .. k) end "
      "end "
      "assert(('a.b'):find('.', 1, true) == 2 and ('k=v'):match('(%w)=(%w)') == 'k') "
      "return true";
  struct {
    uint64_t budget;
    int sandbox, jit;
    const char *want;
  } modes[] = {{0, 0, 1, "builtin"}, {0, 0, 0, "builtin"},
               {BUDGET_NS, 0, 0, "ours"}, {BUDGET_NS, 1, 0, "ours"},
               {0, 1, 1, "ours"}, {0, 1, 0, "ours"}};
  for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++) {
    nb_lstate_t *S = mk(modes[i].budget, modes[i].sandbox, modes[i].jit, 0);
    lua_State *L = nb_lstate_L(S);
    NBT_EQ(luaL_loadstring(L, probe), 0);
    nb_lstate_push_env(S);
    lua_setfenv(L, -2);
    lua_pushstring(L, modes[i].want);
    int rc = nb_lstate_call(S, 1, 1, E, sizeof E);
    if (rc) printf("    # mode %zu: %s\n", i, E);
    NBT_EQ(rc, 0);
    if (rc == 0) lua_pop(L, 1);
    /* The method path reaches the same function as string.x. */
    NBT_EQ(run(S, "return ('x').gsub == string.gsub"), 0);
    NBT_EQ(nb_lstate_close(S), 0);
  }
}

/* Each hostile shape: a backtracking pattern through find, match, gmatch,
 * gsub and the method form, and one whose error is caught by pcall in a
 * loop. */
static const struct {
  const char *name, *src;
} hostile[] = {
    {"find", "return string.find(('a'):rep(5000), '.-.-.-.-b')"},
    {"match", "return string.match(('a'):rep(5000), '(.-)(.-)(.-)(.-)b')"},
    {"gmatch", "for x in string.gmatch(('a'):rep(5000), '.-.-.-.-b') do end"},
    {"gsub", "return string.gsub(('a'):rep(5000), '.-.-.-.-b', 'x')"},
    {"method", "local s = ('a'):rep(5000) return s:find('.-.-.-.-b')"},
    {"balanced", "return (('('):rep(200000)):gsub('%b()', '')"},
    /* Last: a loop no hook interrupts without a budget. */
    {"pcall loop", "local s = ('a'):rep(5000) "
                   "while true do pcall(string.find, s, '.-.-.-.-b') end"},
};
#define HOSTILE (sizeof hostile / sizeof hostile[0])

/* Runs the first n hostile shapes in S; each must fail with NB_EBUDGET
 * and msg after lo ms (wall) and within hi ms of CPU, counted as a budget
 * overrun, and the state must go on; returns nothing. */
static void stopped_each(nb_lstate_t *S, size_t n, const char *msg, double lo,
                         double hi) {
  for (size_t i = 0; i < n; i++) {
    nb_lstate_stats_t st0, st1;
    nb_lstate_stats(S, &st0);
    uint64_t t0 = nbt_now_ns(), c0 = nbt_thread_cpu_ns();
    int rc = run(S, hostile[i].src);
    double ms = (nbt_now_ns() - t0) / 1e6;
    double cpu = (nbt_thread_cpu_ns() - c0) / 1e6;
    nb_lstate_stats(S, &st1);
    printf("    # %-10s %s after %.1f ms (cpu %.1f ms): %.60s\n",
           hostile[i].name, nb_err_name(rc), ms, cpu, E);
    NBT_EQ(rc, NB_EBUDGET);
    NBT_CHECK(strstr(E, msg) == E);
    NBT_CHECK(ms >= lo && ms < WALL_MAX && cpu <= hi);
    NBT_EQ(st1.budget_overruns, st0.budget_overruns + 1);
    NBT_EQ(run(S, "return ('abc'):find('b()')"), 0); /* it goes on */
  }
}

/* A 20 ms budget stops every shape within twice the budget (of CPU),
 * with the budget's error, sandboxed or not. */
static void test_budget_stops_backtracking(void) {
  double hi = 40.0 * SLACK;
  for (int sandbox = 0; sandbox < 2; sandbox++) {
    nb_lstate_t *S = mk(BUDGET_NS, sandbox, 0, 0);
    stopped_each(S, HOSTILE, "budget of 20 ms exceeded", 19.0, hi);
    NBT_EQ(nb_lstate_close(S), 0);
  }
}

/* Sandboxed without a budget (JIT on or off), pattern matching stops when
 * the entry reaches its watchdog limit (here 100 ms), with an error naming
 * it, classified and counted as a budget overrun. (Lua code that catches
 * the error and loops is not stopped: nothing interrupts Lua without a
 * budget, and the watchdog reports it.) */
static void test_sandbox_stops_at_watchdog(void) {
  double hi = 200.0 * SLACK;
  for (int jit = 0; jit < 2; jit++) {
    nb_lstate_t *S = mk(0, 1, jit, 100 * MS);
    stopped_each(S, HOSTILE - 1,
                 "watchdog of 100 ms exceeded in string pattern matching", 99.0, hi);
    NBT_EQ(nb_lstate_close(S), 0);
  }
}

/* The limit is the entry's, not the call's: a match that starts late in
 * an entry is stopped at the entry's deadline, and an entry within its
 * limit runs matches to their end. A sandboxed state with watchdog =
 * false has no limit for patterns. */
static void test_limit_is_per_entry(void) {
  nb_lstate_t *S = mk(BUDGET_NS, 1, 0, 0);
  /* 15 ms of Lua, then a pattern: stopped at 20 ms from the entry. */
  uint64_t t0 = nbt_now_ns(), c0 = nbt_thread_cpu_ns();
  NBT_EQ(run(S, "local t = os.clock() while os.clock() - t < 0.015 do end "
                "return string.find(('a'):rep(5000), '.-.-.-.-b')"),
         NB_EBUDGET);
  double ms = (nbt_now_ns() - t0) / 1e6;
  double cpu = (nbt_thread_cpu_ns() - c0) / 1e6;
  printf("    # late pattern stopped after %.1f ms (cpu %.1f ms)\n", ms, cpu);
  NBT_CHECK(cpu < 40.0 * SLACK && ms < WALL_MAX);
  /* Short matches in many entries: never stopped. */
  for (int i = 0; i < 200; i++)
    NBT_EQ(run(S, "return select(2, ('a'):rep(2000):gsub('(a)(a)', '%2%1'))"), 0);
  NBT_EQ(nb_lstate_close(S), 0);

  nb_lstate_t *U = mk(0, 1, 1, NB_LSTATE_WATCHDOG_OFF);
  t0 = nbt_now_ns();
  NBT_EQ(run(U, "return string.find(('a'):rep(150), '.-.-.-b')"), 0);
  printf("    # unwatched sandbox: a %.0f ms match ran to its end\n",
         (nbt_now_ns() - t0) / 1e6);
  NBT_EQ(nb_lstate_close(U), 0);
}

/* A plain find over a long subject is searched in chunks (1 MB, or the
 * needle's length when longer): needles across a chunk boundary, longer
 * than a chunk or at the very end are found where the builtin finds them,
 * and many long searches in one entry are stopped by the budget between
 * chunks. */
static void test_plain_find_chunks(void) {
  nb_lstate_t *S = mk(10000 * MS, 0, 0, 0);
  int rc = run(S,
      "local M = 1024 * 1024 "
      "local s = ('x'):rep(M - 2) .. 'needle' .. ('x'):rep(M) "
      "assert(s:find('needle', 1, true) == M - 1) "
      "assert(s:find('needle') == M - 1 and select(2, s:find('needle')) == M + 4) "
      "assert(s:find('needle', M, true) == nil and s:find('xn', 1, true) == M - 2) "
      "local n = ('y'):rep(M + 5) "
      "local t = 'z' .. n .. 'z' "
      "assert(t:find(n, 1, true) == 2 and t:find(n .. 'z', 1, true) == 2) "
      "assert(t:find(n .. 'zz', 1, true) == nil) "
      "local a = ('a'):rep(3 * M) .. 'b' "
      "assert(a:find('aab', 1, true) == #a - 2 and a:find('b') == #a) "
      "assert(a:find('ab', -2, true) == #a - 1 and a:find('', #a + 5, true) == #a + 1) "
      "return true");
  if (rc) printf("    # %s\n", E);
  NBT_EQ(rc, 0);
  NBT_EQ(nb_lstate_close(S), 0);

  S = mk(BUDGET_NS, 0, 0, 0);
  NBT_EQ(run(S, "S = ('a'):rep(16 * 1024 * 1024) return true"), 0);
  /* 300 searches of 16 MB: seconds of work, stopped by the budget. */
  uint64_t t0 = nbt_now_ns(), c0 = nbt_thread_cpu_ns();
  rc = run(S, "for i = 1, 300 do S:find('aac', 1, true) end return true");
  double ms = (nbt_now_ns() - t0) / 1e6;
  double cpu = (nbt_thread_cpu_ns() - c0) / 1e6;
  printf("    # 300 plain finds over 16 MB: %s after %.1f ms (cpu %.1f ms)\n",
         nb_err_name(rc), ms, cpu);
  NBT_EQ(rc, NB_EBUDGET);
  NBT_CHECK(cpu < 60.0 * SLACK && ms < WALL_MAX);
  NBT_EQ(nb_lstate_close(S), 0);
}

/* A gsub callback is Lua: it runs, and its own loop is stopped by the
 * budget's hook as before. */
static void test_gsub_callback_hooked(void) {
  nb_lstate_t *S = mk(BUDGET_NS, 1, 0, 0);
  NBT_EQ(run(S, "local r = ('abc'):gsub('%w', function(c) return c:upper() end) "
                "assert(r == 'ABC') return true"), 0);
  uint64_t c0 = nbt_thread_cpu_ns();
  NBT_EQ(run(S, "string.gsub(('x'):rep(10), 'x', function() while true do end end)"),
         NB_EBUDGET);
  NBT_CHECK((nbt_thread_cpu_ns() - c0) / 1e6 < 40.0 * SLACK);
  NBT_EQ(nb_lstate_close(S), 0);
}

static void stop_watchdog(void) { nb_lstate_watchdog_stop(); }

static const nbt_hooks_t hooks = {NULL, stop_watchdog};

static const nbt_test_t tests[] = {
    CORPUS_TEST(test_corpus_jit_off),
    CORPUS_TEST(test_corpus_jit_on),
    NBT_TEST(test_installed_only_when_contained),
    NBT_TEST(test_budget_stops_backtracking),
    NBT_TEST(test_sandbox_stops_at_watchdog),
    NBT_TEST(test_limit_is_per_entry),
    NBT_TEST(test_plain_find_chunks),
    NBT_TEST(test_gsub_callback_hooked),
};

int main(int argc, char **argv) { return NBT_MAIN(argc, argv, tests, &hooks); }
