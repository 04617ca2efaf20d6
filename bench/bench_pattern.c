/* bench_pattern.c: the cost of the step-counted pattern functions
 * (runtime/nb_lpattern.c) that budgeted and sandboxed states get in place
 * of LuaJIT's string.find, match, gmatch and gsub.
 *
 * Each row runs one typical call in a Lua loop inside a budgeted state
 * (budget = 1 h: the count hook runs, the limit is never reached; JIT off,
 * as a budget implies) and, as its baseline, the same loop in a state
 * with the JIT off and no budget nor sandbox, which keeps LuaJIT's
 * builtins: the ratio is the price of the replacement, in ns per call.
 * The last row compares a sandboxed JIT state (replacement) with a plain
 * JIT state (builtin, whose plain find the JIT compiles).
 *
 * Correctness: each loop checks the call's result on every iteration and
 * raises otherwise; the bench fails on any error. */

#include <lauxlib.h>

#include "bench.h"
#include "nb_lstate.h"

typedef struct {
  const char *name, *call, *check; /* the row, the call, its result test */
} pat_case_t;

/* Typical agent work: a request line and a key=value record. */
static const pat_case_t cases[] = {
    {"pattern_find_plain", "s:find('HTTP', i % 8 + 1, true)", "r == 34"},
    {"pattern_find", "s:find('%d+')", "r == 11"},
    {"pattern_match", "s:match('^(%u+)%s+(%S+)')", "r == 'GET'"},
    {"pattern_gsub", "s:gsub('%w+', '<%0>')", "#r == 61"},
    {"pattern_gmatch", "(function() local k = 0 for w in s:gmatch('[^/ ]+') do "
                       "k = k + 1 end return k end)()", "r == 9"},
};

typedef struct {
  nb_lstate_t *S;
  int ref;    /* the loop function in the registry */
  uint64_t n; /* calls per run */
} pat_run_t;

/* Makes a state per opts with the loop of c loaded; returns nothing. */
static void pat_open(pat_run_t *r, const nb_lstate_opts_t *o,
                     const pat_case_t *c) {
  if (nb_lstate_new(&r->S, o) != 0) nb_bench_fail("nb_lstate_new");
  char src[1024];
  snprintf(src, sizeof src,
           "return function(n) "
           "local s = 'GET /api/v1/users/12345/orders/7 HTTP/1.1' "
           "for i = 1, n do local r = %s "
           "if not (%s) then error('bad result: ' .. tostring(r)) end end end",
           c->call, c->check);
  lua_State *L = nb_lstate_L(r->S);
  if (luaL_loadstring(L, src) != 0 || lua_pcall(L, 0, 1, 0) != 0)
    nb_bench_fail("load: %s", lua_tostring(L, -1));
  r->ref = luaL_ref(L, LUA_REGISTRYINDEX);
}

/* Runs the loop n times as one entry; returns ns per call. */
static double pat_run(void *ctx) {
  pat_run_t *r = ctx;
  lua_State *L = nb_lstate_L(r->S);
  char err[512];
  lua_rawgeti(L, LUA_REGISTRYINDEX, r->ref);
  lua_pushnumber(L, (lua_Number)r->n);
  uint64_t t0 = nb_bench_now_ns();
  if (nb_lstate_call(r->S, 1, 0, err, sizeof err) != 0)
    nb_bench_fail("pattern loop: %s", err);
  return (double)(nb_bench_now_ns() - t0) / (double)r->n;
}

/* Measures case c: subject in a state per so, baseline per bo; emits the
 * row named name. */
static void pat_row(const char *name, const pat_case_t *c,
                    const nb_lstate_opts_t *so, const nb_lstate_opts_t *bo,
                    const char *baseline, const char *note) {
  pat_run_t s = {0}, b = {0};
  pat_open(&s, so, c);
  pat_open(&b, bo, c);
  s.n = b.n = nb_bench_size(1u << 20, 1u << 10);
  nb_bench_row_t row = nb_bench_row(name, "ns/call");
  row.lower_is_better = 1;
  nb_bench_measure(pat_run, &s, &s.n, pat_run, &b, &b.n, &row.v, &row.b);
  row.baseline = baseline;
  row.note = note;
  nb_bench_emit(&row);
  nb_lstate_close(s.S);
  nb_lstate_close(b.S);
}

static const nb_lstate_opts_t budgeted = {
    .budget_ns = 3600000000000ull, .watchdog_ns = NB_LSTATE_WATCHDOG_OFF,
    .name = "pattern"};
static const nb_lstate_opts_t interp = {
    .jit = 0, .watchdog_ns = NB_LSTATE_WATCHDOG_OFF, .name = "builtin"};
static const nb_lstate_opts_t sandbox_jit = {
    .jit = 1, .sandbox = 1, .watchdog_ns = NB_LSTATE_WATCHDOG_OFF,
    .name = "pattern"};
static const nb_lstate_opts_t plain_jit = {
    .jit = 1, .watchdog_ns = NB_LSTATE_WATCHDOG_OFF, .name = "builtin"};

/* The rows of cases[i] (budgeted vs the builtin, JIT off). */
static void group_case(int i) {
  static char base[5][48], note[5][400];
  snprintf(base[i], sizeof base[i], "%s_builtin", cases[i].name);
  snprintf(note[i], sizeof note[i],
           "%s on a 41-byte request line, in a Lua loop in a budgeted state "
           "(replacement, step-counted); baseline: the same loop in a JIT-off "
           "state without budget (LuaJIT's builtin), interleaved",
           cases[i].call);
  pat_row(cases[i].name, &cases[i], &budgeted, &interp, base[i], note[i]);
}

static void group_find_plain(void) { group_case(0); }
static void group_find(void) { group_case(1); }
static void group_match(void) { group_case(2); }
static void group_gsub(void) { group_case(3); }
static void group_gmatch(void) { group_case(4); }

/* Sandboxed with the JIT on: the replacement is a C function the JIT
 * does not compile, where the builtin plain find is compiled. */
static void group_sandbox_jit(void) {
  pat_row("pattern_find_plain_sandbox_jit", &cases[0], &sandbox_jit,
          &plain_jit, "pattern_find_plain_jit_builtin",
          "s:find('HTTP', i % 8 + 1, true) in a Lua loop in a sandboxed JIT state "
          "(replacement); baseline: a plain JIT state (builtin, compiled by "
          "the JIT), interleaved");
}

static const nb_bench_group_t groups[] = {
    {"pattern_find_plain", group_find_plain},
    {"pattern_find", group_find},
    {"pattern_match", group_match},
    {"pattern_gsub", group_gsub},
    {"pattern_gmatch", group_gmatch},
    {"pattern_find_plain_sandbox_jit", group_sandbox_jit},
};

int main(int argc, char **argv) {
  int rc = nb_bench_main(argc, argv, groups, sizeof groups / sizeof groups[0]);
  nb_lstate_watchdog_stop();
  return rc;
}
