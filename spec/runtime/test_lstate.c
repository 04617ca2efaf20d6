/* test_lstate.c: the isolation primitives (runtime/nb_lstate):
 * memory cap against every bomb shape, the budget against every loop
 * shape, the watchdog for JIT states, and each sandbox denial. */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/wait.h>
#include <unistd.h>

#include <lauxlib.h>

#include "nb_lstate.h"
#include "nbtest.h"

#define MB (1024u * 1024u)
#define BUDGET_NS 20000000ull /* 20 ms */

/* Per thread: test_threads runs agents in two threads at once. */
static _Thread_local char E[16384];

/* Returns a new state or NULL (the check fails) with the given limits. */
static nb_lstate_t *mk(size_t mem, int jit, uint64_t budget, int sandbox,
                       const char *name) {
  nb_lstate_opts_t o = {.memory_limit = mem, .jit = jit, .budget_ns = budget,
                        .sandbox = sandbox, .name = name};
  nb_lstate_t *S = NULL;
  int rc = nb_lstate_new(&S, &o);
  NBT_EQ(rc, 0);
  return S;
}

/* Runs src as an agent chunk; returns the code, the one result left on the
 * stack on success (pop it with the caller's check). */
static int run(nb_lstate_t *S, const char *src) {
  E[0] = 0;
  return nb_lstate_load_agent(S, src, 1, E, sizeof E);
}

/* Runs src and returns its result as an integer (INT64_MIN on failure,
 * with the error printed). */
static long long run_int(nb_lstate_t *S, const char *src) {
  int rc = run(S, src);
  if (rc != 0) {
    printf("    # %s: %s\n", nb_err_name(rc), E);
    return INT64_MIN;
  }
  lua_State *L = nb_lstate_L(S);
  long long v = lua_isnumber(L, -1) ? (long long)lua_tonumber(L, -1)
                : lua_toboolean(L, -1) ? 1 : 0;
  lua_pop(L, 1);
  return v;
}

/* Returns 1 when src runs and returns true. */
static int run_true(nb_lstate_t *S, const char *src) {
  int rc = run(S, src);
  if (rc != 0) {
    printf("    # %s: %s\n", nb_err_name(rc), E);
    return 0;
  }
  lua_State *L = nb_lstate_L(S);
  int ok = lua_toboolean(L, -1);
  if (!ok && lua_type(L, -1) == LUA_TSTRING)
    printf("    # returned \"%s\"\n", lua_tostring(L, -1));
  lua_pop(L, 1);
  return ok;
}

/* Runs trusted host code with the real globals (not through the sandbox)
 * and returns 0 with its one result on the stack. */
static int host_run(nb_lstate_t *S, const char *src) {
  lua_State *L = nb_lstate_L(S);
  if (luaL_loadstring(L, src) != 0) {
    printf("    # host load: %s\n", lua_tostring(L, -1));
    lua_pop(L, 1);
    return -1;
  }
  if (lua_pcall(L, 0, 1, 0) != 0) {
    printf("    # host run: %s\n", lua_tostring(L, -1));
    lua_pop(L, 1);
    return -1;
  }
  return 0;
}

/* ---- memory cap ------------------------------------------------------- */

static const struct {
  const char *name, *src;
  int needs_ffi;
} bombs[] = {
    {"table growth",
     "local t, i = {}, 0 while true do i = i + 1 t[i] = {i, i} end", 0},
    {"string concatenation",
     "local keep, s = {}, 'seed' while true do s = s .. s .. '!' "
     "keep[#keep + 1] = s end", 0},
    {"string.rep huge", "return string.rep('x', 1e9)", 0},
    {"string.rep huge with separator", "return ('ab'):rep(3e8, ',')", 0},
    {"closures",
     "local t, i = {}, 0 while true do i = i + 1 local x = i "
     "t[i] = function() return x end end", 0},
    {"coroutines",
     "local t = {} while true do t[#t + 1] = coroutine.create(function() "
     "end) end", 0},
    {"coroutine stacks",
     "local t = {} while true do local co = coroutine.wrap(function() "
     "local function r(n) if n > 0 then return r(n - 1) + 1 end "
     "coroutine.yield() return 0 end r(2000) end) co() t[#t + 1] = co end", 0},
    {"table.concat", "local t = {} for i = 1, 64 do t[i] = ('z'):rep(1e6) "
     "end return table.concat(t)", 0},
    {"ffi.new arrays",
     "local ffi = require('ffi') local t = {} while true do "
     "t[#t + 1] = ffi.new('uint8_t[?]', 1024 * 1024) end", 1},
    {"ffi.new small structs",
     "local ffi = require('ffi') local t = {} "
     "local T = ffi.typeof('struct { double a, b, c; }') "
     "while true do t[#t + 1] = ffi.new(T) end", 1},
};

/* Runs one bomb under a 16 MB cap in a state (sandboxed unless it needs
 * ffi) with the JIT on or off, then checks the error text, that the state
 * still works, that the garbage goes, and that close returns every byte. */
static void bomb_one(int i, int jit) {
  nb_lstate_t *S = mk(16 * MB, jit, 0, !bombs[i].needs_ffi, "bomber");
  if (!S) return;
  uint64_t t0 = nbt_now_ns();
  int rc = run(S, bombs[i].src);
  double ms = (nbt_now_ns() - t0) / 1e6;
  nb_lstate_stats_t st;
  nb_lstate_stats(S, &st);
  printf("    # %-32s jit=%d: %s in %.1f ms, peak %.2f MB, %s\n",
         bombs[i].name, jit, nb_err_name(rc), ms, st.peak / 1048576.0, E);
  NBT_EQ(rc, NB_EMEMLIMIT);
  NBT_CHECK(strstr(E, "memory limit 16 MB exceeded") != NULL);
  /* Agent code never passes the cap; the message handler lifts it to
   * build a traceback, which may add a few KB. */
  NBT_CHECK(st.peak <= 16 * MB + 64 * 1024);
  NBT_CHECK(st.refused >= 1); /* peak may stay low: one huge block refused */
  NBT_EQ(st.mem_errors, 1);
  /* The same state is still usable after the error... */
  NBT_EQ(run_int(S, "return 40 + 2"), 42);
  /* ...and the bomb's garbage is collected (host GC, no cap). */
  lua_gc(nb_lstate_L(S), LUA_GCCOLLECT, 0);
  lua_gc(nb_lstate_L(S), LUA_GCCOLLECT, 0);
  nb_lstate_stats(S, &st);
  if (st.bytes >= 2 * MB) printf("    # after collect: %zu bytes\n", st.bytes);
  NBT_CHECK(st.bytes < 2 * MB);
  NBT_EQ(nb_lstate_close(S), 0);
}

static void test_mem_bombs_jit_on(void) {
  for (size_t i = 0; i < sizeof bombs / sizeof bombs[0]; i++) bomb_one((int)i, 1);
}

static void test_mem_bombs_jit_off(void) {
  for (size_t i = 0; i < sizeof bombs / sizeof bombs[0]; i++) bomb_one((int)i, 0);
}

/* A string longer than LuaJIT allows is an ordinary error, not a crash. */
static void test_mem_string_rep_overflow(void) {
  nb_lstate_t *S = mk(16 * MB, 1, 0, 1, "rep");
  /* LuaJIT truncates the count to 32 bits: no error at all is fine too. */
  int rc = run(S, "return #string.rep('x', 2^40), #string.rep('x', 2^31 + 5)");
  printf("    # string.rep('x', 2^40): %s %s\n", nb_err_name(rc), E);
  NBT_CHECK(rc == 0 || rc == NB_EAGENT || rc == NB_EMEMLIMIT);
  if (rc == 0) lua_pop(nb_lstate_L(S), 1);
  NBT_EQ(run_int(S, "return 1"), 1);
  NBT_EQ(nb_lstate_close(S), 0);
}

/* Closing right after a memory error, with the heap at the cap. */
static void test_mem_close_at_cap(void) {
  for (int jit = 0; jit <= 1; jit++) {
    nb_lstate_t *S = mk(8 * MB, jit, 0, 1, "closer");
    NBT_EQ(run(S, bombs[0].src), NB_EMEMLIMIT);
    NBT_EQ(nb_lstate_close(S), 0);
  }
}

/* An agent that catches its memory error and frees it keeps running; an
 * error raised at the cap still gets its traceback (the handler lifts the
 * cap). */
static void test_mem_caught_and_traceback(void) {
  nb_lstate_t *S = mk(8 * MB, 1, 0, 1, "catcher");
  NBT_EQ(run_int(S, "local ok = pcall(function() local t = {} while true do "
                    "t[#t + 1] = {} end end) collectgarbage() "
                    "return ok and 0 or 7"),
         7);
  nb_lstate_stats_t st;
  nb_lstate_stats(S, &st);
  NBT_CHECK(st.refused >= 1);
  NBT_EQ(st.mem_errors, 0);
  /* Fill to the cap, keep it live, then raise a constant message (adding
   * the position would allocate, and fail, at the cap): the traceback
   * must still come. */
  int rc = run(S, "local function deep() error('boom at the cap', 0) end "
                  "KEEP = {} pcall(function() while true do "
                  "KEEP[#KEEP + 1] = {1, 2, 3} end end) deep()");
  NBT_EQ(rc, NB_EAGENT);
  NBT_CHECK(strstr(E, "boom at the cap") != NULL);
  NBT_CHECK(strstr(E, "stack traceback") != NULL);
  /* At the cap error() with a position fails itself: a memory error.
   * (The previous KEEP is dropped and collected first, so the new one
   * fills the cap whatever the collector's pace.) */
  rc = run(S, "local function deep() error('boom') end "
              "KEEP = nil collectgarbage() "
              "KEEP = {} pcall(function() while true do "
              "KEEP[#KEEP + 1] = {1, 2, 3} end end) deep()");
  NBT_EQ(rc, NB_EMEMLIMIT);
  /* KEEP is live and fills the cap (within the few KB to 1 MB the
   * collector frees after a raise in compiled code: the table's old array
   * part): nothing that allocates runs until the host drops it (a runtime
   * restarts such a neuron instead). */
  nb_lstate_stats(S, &st);
  printf("    # KEEP holds %.2f of 8 MB\n", st.bytes / 1048576.0);
  NBT_CHECK(st.bytes > 7 * MB);
  NBT_EQ(run(S, "local t = {} for i = 1, 1e6 do t[i] = i end"), NB_EMEMLIMIT);
  lua_State *L = nb_lstate_L(S);
  nb_lstate_push_env(S);
  lua_pushnil(L);
  lua_setfield(L, -2, "KEEP");
  lua_pop(L, 1);
  lua_gc(L, LUA_GCCOLLECT, 0);
  NBT_EQ(run_int(S, "return 1"), 1);
  NBT_EQ(nb_lstate_close(S), 0);
}

/* A block compiled code (a LuaJIT trace) asks for past the cap is
 * granted, and the memory error comes at the next interpreted instruction
 * (refusing it there crashes LuaJIT 2.1-20230119): the same error for the
 * agent, which may catch it once, and the peak stays at the cap. */
static void test_mem_compiled_code(void) {
  nb_lstate_t *S = mk(8 * MB, 1, 0, 1, "tracer");
  const char *endless = "local t, i = {}, 0 while true do i = i + 1 t[i] = {i} end";
  for (int k = 0; k < 3; k++) {
    NBT_EQ(run(S, endless), NB_EMEMLIMIT);
    NBT_CHECK(strstr(E, "memory limit 8 MB exceeded") != NULL);
    NBT_CHECK(strstr(E, "compiled code went past it") != NULL);
  }
  nb_lstate_stats_t st;
  nb_lstate_stats(S, &st);
  printf("    # peak %.3f MB under an 8 MB cap\n", st.peak / 1048576.0);
  NBT_CHECK(st.peak <= 8 * MB + 64 * 1024);
  NBT_EQ(st.mem_errors, 3);
  /* Caught by the agent: its entry goes on and returns. */
  NBT_EQ(run_int(S, "local ok, e = pcall(function() local t, i = {}, 0 "
                    "while true do i = i + 1 t[i] = {i} end end) "
                    "local r = (not ok and e:find('not enough memory')) and 1 or 0 "
                    "collectgarbage() return r"),
         1);
  NBT_EQ(run_int(S, "return 6 * 7"), 42);
  NBT_EQ(nb_lstate_close(S), 0);
}

/* Compiling a chunk too big for the cap fails cleanly as a memory error. */
static void test_mem_while_compiling(void) {
  nb_lstate_t *S = mk(1 * MB, 1, 0, 1, "compiler");
  size_t n = 400000;
  char *src = malloc(n * 4 + 32);
  char *p = src + sprintf(src, "return {");
  for (size_t i = 0; i < n; i++) p += sprintf(p, "%zu,", i % 10);
  strcpy(p, "}");
  int rc = run(S, src);
  free(src);
  NBT_EQ(rc, NB_EMEMLIMIT);
  NBT_EQ(run_int(S, "return 5"), 5);
  NBT_EQ(nb_lstate_close(S), 0);
}

/* Garbage is not live data: a small live set churning lots of garbage
 * stays under a small cap. */
static void test_mem_garbage_under_cap(void) {
  nb_lstate_t *S = mk(4 * MB, 1, 0, 1, "churner");
  long long v = run_int(S,
                        "local live = {} for i = 1, 2000 do live[i] = ('x'):rep(100) .. i end "
                        "local n = 0 for i = 1, 300000 do local s = ('y'):rep(200) .. i "
                        "local t = {s, i} n = n + #t[1] end return n > 0 and 1 or 0");
  NBT_EQ(v, 1);
  nb_lstate_stats_t st;
  nb_lstate_stats(S, &st);
  printf("    # churn of ~70 MB garbage under a 4 MB cap: peak %.2f MB\n",
         st.peak / 1048576.0);
  NBT_EQ(nb_lstate_close(S), 0);
}

/* Host work on a state at the cap is not capped and never panics. */
static int host_big(lua_State *L) {
  lua_newtable(L);
  for (int i = 1; i <= 100000; i++) {
    lua_pushinteger(L, i);
    lua_rawseti(L, -2, i);
  }
  lua_setglobal(L, "HOST_TABLE");
  return 0;
}

static int host_raise(lua_State *L) { return luaL_error(L, "host says no"); }

static void test_mem_host_calls(void) {
  nb_lstate_t *S = mk(2 * MB, 1, 0, 1, "host");
  NBT_EQ(run(S, "KEEP = {} pcall(function() while true do "
                "KEEP[#KEEP + 1] = {} end end) return 1"),
         0);
  lua_pop(nb_lstate_L(S), 1);
  NBT_EQ(nb_lstate_cpcall(S, host_big, NULL, E, sizeof E), 0);
  nb_lstate_stats_t st;
  nb_lstate_stats(S, &st);
  NBT_CHECK(st.bytes > 2 * MB); /* the host went past the agent's cap */
  NBT_EQ(nb_lstate_cpcall(S, host_raise, NULL, E, sizeof E), NB_EAGENT);
  NBT_CHECK(strstr(E, "host says no") != NULL);
  /* The agent, now over the cap, fails at its first allocation. */
  NBT_EQ(run(S, "local t = {} for i = 1, 1000 do t[i] = {} end"), NB_EMEMLIMIT);
  NBT_EQ(nb_lstate_close(S), 0);
}

/* A bomb in one state does not disturb another. */
static void test_mem_neighbour_unaffected(void) {
  nb_lstate_t *a = mk(8 * MB, 1, 0, 1, "a"), *b = mk(8 * MB, 1, 0, 1, "b");
  NBT_EQ(run_int(b, "COUNT = 0 return 1"), 1);
  for (int k = 0; k < 5; k++) {
    NBT_EQ(run(a, bombs[k % 3].src), NB_EMEMLIMIT);
    NBT_EQ(run_int(b, "COUNT = COUNT + 1 return COUNT"), k + 1);
  }
  NBT_EQ(nb_lstate_close(a), 0);
  NBT_EQ(nb_lstate_close(b), 0);
}

/* ---- budget ----------------------------------------------------------- */

/* deep: the shape nests pcall (or resume) thousands of levels deep; each
 * level catches the budget error once before the next instruction raises
 * it again, so unwinding costs a few microseconds per level (tens of ms
 * of CPU for the deepest stack LuaJIT allows). */
static const struct {
  const char *name, *src;
  int deep;
} loops[] = {
    {"while true do end", "while true do end", 0},
    {"for i = 1, math.huge", "for i = 1, math.huge do end", 0},
    {"repeat until false", "repeat until false", 0},
    {"recursion into deep pcall",
     "local function f() while true do pcall(f) end end f()", 1},
    {"string.rep-heavy loop",
     "local n = 0 while true do n = n + #string.rep('ab', 50000) end", 0},
    {"loop calling a C function", "local c = os.clock while true do c() end", 0},
    {"pcall catching the budget error",
     "while true do pcall(function() while true do end end) end", 0},
    {"loop in a coroutine",
     "coroutine.wrap(function() while true do end end)()", 0},
    {"coroutines catching the error",
     "while true do coroutine.resume(coroutine.create(function() "
     "while true do end end)) end", 0},
    {"xpcall with a looping handler",
     "while true do xpcall(function() while true do end end, "
     "function() while true do end end) end", 0},
    {"error replaced on the way out",
     "while true do local ok = pcall(function() while true do end end) "
     "if not ok then error('not a budget error') end end", 0},
    {"deep pcall recursion, looping at the bottom",
     "local function f(n) if n > 0 then pcall(f, n - 1) end "
     "while true do pcall(function() end) end end f(1e6)", 1},
    {"deep xpcall recursion",
     "local function f() while true do xpcall(f, function(e) return e end) "
     "end end f()", 1},
    {"nested coroutine resumes",
     "local function f() while true do coroutine.resume(coroutine.create(f)) "
     "end end f()", 1},
    {"deep pcall recursion in a coroutine",
     "coroutine.wrap(function() local function f() while true do pcall(f) "
     "end end f() end)()", 1},
    {"table.sort comparator loop",
     "local t = {} for i = 1, 100 do t[i] = i end "
     "table.sort(t, function(a, b) while true do end end)", 0},
    {"gsub callback loop",
     "string.gsub(('x'):rep(10), 'x', function() while true do end end)", 0},
};

/* Returns how much slower a sanitizer makes unwinding deep stacks (ASan
 * instruments every frame LuaJIT's unwinder walks): 3 under NB_SAN, else
 * 1. It scales the sanitizer's cost, not the machine's speed. */
static double san_slowdown(void) { return nbt_under_san() ? 3.0 : 1.0; }

/* Runs every loop shape under a 20 ms budget (JIT forced off) and checks
 * that it is interrupted within 10x the budget and the state stays
 * usable; prints each latency. */
static void run_loops(int sandbox) {
  for (size_t i = 0; i < sizeof loops / sizeof loops[0]; i++) {
#if defined(__SANITIZE_THREAD__)
    /* A deep shape raises once per nesting level, tens of thousands of
     * times in one entry; LuaJIT's unwinder never pops TSan's shadow
     * stack, which passes TSan's 65,536-frame limit: TSan's own CHECK
     * fails and its runtime deadlocks. The default and ASan builds run
     * these shapes; TSan has nothing to find in one thread anyway. */
    if (loops[i].deep) {
      printf("    # %-44s sandbox=%d: skipped under TSan\n", loops[i].name,
             sandbox);
      continue;
    }
#endif
    nb_lstate_t *S = mk(16 * MB, 1, BUDGET_NS, sandbox, "looper");
    uint64_t t0 = nbt_now_ns();
    double c0 = nbt_thread_cpu_ns() / 1e6;
    int rc = run(S, loops[i].src);
    double ms = (nbt_now_ns() - t0) / 1e6, cpu = nbt_thread_cpu_ns() / 1e6 - c0;
    printf("    # %-44s sandbox=%d: %s after %6.2f ms (cpu %6.2f ms)\n",
           loops[i].name, sandbox, nb_err_name(rc), ms, cpu);
    NBT_EQ(rc, NB_EBUDGET);
    NBT_CHECK(strstr(E, "budget of 20 ms exceeded") != NULL);
    NBT_CHECK(ms >= 19.0);
    /* The hook's work is CPU time: shallow shapes stop within 10x the
     * budget of CPU, deep ones pay a few microseconds per nested level on
     * top (about 50 ms here, twice that under ASan), so 20x. Wall time
     * only has to rule out a hang: on a loaded 2-vCPU machine the
     * scheduler, not the hook, decides how long a descheduled loop takes
     * to reach its next check (the interruption latency is reported by
     * bench/, not asserted here). */
    NBT_CHECK(cpu < (loops[i].deep ? 400.0 * san_slowdown() : 200.0));
    NBT_CHECK(ms < 5000.0);
    nb_lstate_stats_t st;
    nb_lstate_stats(S, &st);
    NBT_EQ(st.jit, 0);
    NBT_EQ(st.budget_overruns, 1);
    /* Usable right after, with a fresh budget per entry. */
    NBT_EQ(run_int(S, "local n = 0 for i = 1, 1000 do n = n + i end return n"),
           500500);
    NBT_EQ(nb_lstate_close(S), 0);
  }
}

static void test_budget_loops_sandboxed(void) { run_loops(1); }

static void test_budget_loops_unsandboxed(void) { run_loops(0); }

/* Many short entries each get a fresh budget: none is interrupted although
 * together they run far longer than one budget. */
static void test_budget_per_entry(void) {
  /* 100 ms and fixed work per call (not a clock): descheduling on a
   * loaded machine cannot push one short call past the budget. */
  nb_lstate_t *S = mk(0, 1, 100000000ull, 1, "steady");
  NBT_EQ(run(S, "return function() local x = 0 for i = 1, 1e5 do x = x + i "
                "end return x end"),
         0);
  lua_State *L = nb_lstate_L(S);
  int fn = lua_gettop(L), fails = 0, calls = 0;
  uint64_t t0 = nbt_now_ns();
  while (nbt_now_ns() - t0 < 300000000ull && calls < 100000) {
    lua_pushvalue(L, fn);
    if (nb_lstate_call(S, 0, 1, E, sizeof E) != 0) fails++;
    else lua_pop(L, 1);
    calls++;
  }
  printf("    # %d entries in %.0f ms under a 100 ms budget each\n", calls,
         (nbt_now_ns() - t0) / 1e6);
  NBT_EQ(fails, 0);
  NBT_CHECK(calls > 3);
  NBT_EQ(lua_gettop(L), fn);
  lua_pop(L, 1);
  NBT_EQ(nb_lstate_close(S), 0);
}

/* A budget turns the JIT off even when jit = 1 was asked for. */
static void test_budget_forces_jit_off(void) {
  nb_lstate_t *S = mk(0, 1, BUDGET_NS, 0, "nojit");
  NBT_EQ(run_int(S, "return jit.status() and 1 or 0"), 0);
  nb_lstate_t *J = mk(0, 1, 0, 0, "jit");
  NBT_EQ(run_int(J, "return jit.status() and 1 or 0"), 1);
  nb_lstate_t *O = mk(0, 0, 0, 0, "off");
  NBT_EQ(run_int(O, "return jit.status() and 1 or 0"), 0);
  NBT_EQ(nb_lstate_close(S), 0);
  NBT_EQ(nb_lstate_close(J), 0);
  NBT_EQ(nb_lstate_close(O), 0);
}

/* Trusted code that removes the hook loses it for that entry only: the
 * next entry is armed again. */
static void test_budget_hook_restored(void) {
  nb_lstate_t *S = mk(0, 0, BUDGET_NS, 0, "trusted");
  NBT_EQ(run_int(S, "debug.sethook() return 1"), 1);
  uint64_t t0 = nbt_now_ns();
  NBT_EQ(run(S, "while true do end"), NB_EBUDGET);
  NBT_CHECK((nbt_now_ns() - t0) / 1e6 < 200.0);
  NBT_EQ(nb_lstate_close(S), 0);
}

/* The budget and the cap together: a loop that allocates hits one or the
 * other, never hangs or crashes. */
static void test_budget_and_cap(void) {
  nb_lstate_t *S = mk(4 * MB, 0, BUDGET_NS, 1, "both");
  int rc = run(S, "local t = {} while true do t[#t + 1] = {} if #t > 5000 "
                  "then t = {} end end");
  NBT_EQ(rc, NB_EBUDGET);
  rc = run(S, "local t = {} while true do t[#t + 1] = {} end");
  NBT_CHECK(rc == NB_EMEMLIMIT || rc == NB_EBUDGET);
  NBT_EQ(run_int(S, "return 3"), 3);
  NBT_EQ(nb_lstate_close(S), 0);
}

/* ---- ordinary errors and the API ------------------------------------- */

static void test_error_traceback(void) {
  nb_lstate_t *S = mk(16 * MB, 1, 0, 1, "thrower");
  NBT_EQ(run(S, "local function inner() error('boom') end\n"
                "local function outer() inner() end\nouter()"),
         NB_EAGENT);
  NBT_CHECK(strstr(E, "thrower:1: boom") != NULL);
  NBT_CHECK(strstr(E, "stack traceback") != NULL);
  NBT_CHECK(strstr(E, "in function 'inner'") != NULL ||
            strstr(E, "inner") != NULL);
  NBT_EQ(run(S, "error(setmetatable({}, {__tostring = function() "
                "return 'custom object' end}))"),
         NB_EAGENT);
  NBT_CHECK(strstr(E, "custom object") != NULL);
  NBT_EQ(run(S, "error({})"), NB_EAGENT);
  NBT_CHECK(strstr(E, "table value") != NULL);
  NBT_EQ(run(S, "syntax error here"), NB_EAGENT);
  NBT_CHECK(strstr(E, "thrower:1:") != NULL);
  NBT_EQ(nb_lstate_load_agent(S, "/nonexistent/agent.lua", 0, E, sizeof E),
         NB_EIO);
  NBT_EQ(lua_gettop(nb_lstate_L(S)), 0);
  NBT_EQ(nb_lstate_close(S), 0);
}

static void test_api_misc(void) {
  nb_lstate_t *S = NULL;
  NBT_EQ(nb_lstate_new(NULL, NULL), NB_EINVAL);
  NBT_EQ(nb_lstate_new(&S, NULL), 0);
  NBT_CHECK(strcmp(nb_lstate_name(S), "?") == 0);
  nb_lstate_stats_t st;
  nb_lstate_stats(S, &st);
  NBT_EQ(st.jit, 1);
  NBT_EQ(st.sandbox, 0);
  NBT_EQ(st.limit, 0);
  NBT_CHECK(st.bytes > 0);
  lua_State *L = nb_lstate_L(S);
  NBT_CHECK(nb_lstate_from_L(L) == S);
  lua_State *co = lua_newthread(L);
  NBT_CHECK(nb_lstate_from_L(co) == S);
  lua_pop(L, 1);
  lua_State *other = luaL_newstate();
  NBT_CHECK(nb_lstate_from_L(other) == NULL);
  lua_close(other);
  NBT_EQ(nb_lstate_push_env(S), 0);
  lua_pushvalue(L, LUA_GLOBALSINDEX);
  NBT_CHECK(lua_rawequal(L, -1, -2)); /* unsandboxed: env is _G */
  lua_pop(L, 2);
  /* nb_lstate_call leaves nresults and nothing else. */
  lua_pushinteger(L, 99);
  luaL_loadstring(L, "local a, b = ... return a + b, a * b");
  lua_pushinteger(L, 3);
  lua_pushinteger(L, 4);
  NBT_EQ(nb_lstate_call(S, 2, 2, NULL, 0), 0);
  NBT_EQ(lua_gettop(L), 3);
  NBT_EQ(lua_tointeger(L, 2), 7);
  NBT_EQ(lua_tointeger(L, 3), 12);
  lua_settop(L, 1);
  luaL_loadstring(L, "error('x')");
  NBT_EQ(nb_lstate_call(S, 0, 0, NULL, 0), NB_EAGENT);
  NBT_EQ(lua_gettop(L), 1);
  lua_settop(L, 0);
  NBT_EQ(nb_lstate_close(S), 0);
  NBT_EQ(nb_lstate_close(NULL), 0);
}

/* ---- watchdog --------------------------------------------------------- */

static pthread_mutex_t rep_mu = PTHREAD_MUTEX_INITIALIZER;
static char rep_name[64], rep_entry[64], rep_kinds[16];
static int rep_count, rep_jit;
static uint64_t rep_elapsed, rep_over_elapsed, rep_token;
static int rep_tokens_match;
static int rep_fd = -1;

/* Clears what report remembered; returns nothing. */
static void rep_reset(void) {
  pthread_mutex_lock(&rep_mu);
  rep_count = 0;
  rep_name[0] = rep_entry[0] = rep_kinds[0] = 0;
  rep_elapsed = rep_over_elapsed = rep_token = 0;
  rep_tokens_match = 1;
  rep_jit = -1;
  pthread_mutex_unlock(&rep_mu);
}

/* Test report callback: remembers the reports (kinds as letters O S E R),
 * and writes each to rep_fd when set (the forked child's pipe); returns
 * nothing. */
static void report(const nb_lstate_watch_t *w, void *ud) {
  (void)ud;
  static const char letters[] = "?OSER";
  pthread_mutex_lock(&rep_mu);
  snprintf(rep_name, sizeof rep_name, "%s", w->name);
  snprintf(rep_entry, sizeof rep_entry, "%s", w->entry);
  size_t k = strlen(rep_kinds);
  if (k + 1 < sizeof rep_kinds) {
    rep_kinds[k] = letters[w->kind >= 1 && w->kind <= 4 ? w->kind : 0];
    rep_kinds[k + 1] = 0;
  }
  if (w->kind == NB_LSTATE_WATCH_OVER) {
    rep_over_elapsed = w->elapsed_ns;
    rep_token = w->token;
  } else if (w->token != rep_token) {
    rep_tokens_match = 0;
  }
  rep_count++;
  rep_jit = w->jit;
  rep_elapsed = w->elapsed_ns;
  pthread_mutex_unlock(&rep_mu);
  if (rep_fd >= 0) {
    char line[1200];
    nb_lstate_watch_text(w, line, sizeof line - 1);
    strcat(line, "\n");
    if (write(rep_fd, line, strlen(line)) < 0) _exit(3);
  }
}

/* Runs src in a state made with o inside a forked child, whose watchdog
 * reports through a pipe; returns 1 with the report line in buf when one
 * came within 10 s and the child was still stuck, then kills the child. */
static int fork_stuck(const nb_lstate_opts_t *o, const char *src, char *buf,
                      size_t len, double *waited) {
  int fds[2];
  if (pipe(fds) != 0) return 0;
  fflush(stdout);
  pid_t pid = fork();
  if (pid == 0) {
    close(fds[0]);
    rep_fd = fds[1];
    nb_lstate_watchdog_report(report, NULL);
    nb_lstate_t *S;
    if (nb_lstate_new(&S, o) != 0) _exit(2);
    nb_lstate_load_agent(S, src, 1, NULL, 0);
    _exit(4); /* not reached while the agent is stuck */
  }
  close(fds[1]);
  struct pollfd p = {.fd = fds[0], .events = POLLIN};
  memset(buf, 0, len);
  uint64_t t0 = nbt_now_ns();
  int pr = poll(&p, 1, 10000);
  *waited = (nbt_now_ns() - t0) / 1e6;
  ssize_t n = pr == 1 ? read(fds[0], buf, len - 1) : -1;
  int status = 0;
  pid_t done = waitpid(pid, &status, WNOHANG);
  kill(pid, SIGKILL);
  waitpid(pid, &status, 0);
  close(fds[0]);
  printf("    # watchdog report after %.1f ms: %s", *waited,
         n > 0 ? buf : "(none)\n");
  return pr == 1 && n > 0 && done == 0;
}

/* A JIT state in a compiled endless loop cannot be interrupted: a child
 * process runs it, its watchdog reports the state's name, the entry, and
 * that the JIT is on, and the test kills the child. */
static void test_watchdog_jit_endless_loop(void) {
  nb_lstate_opts_t o = {.jit = 1, .watchdog_ns = 50000000ull, .sandbox = 1,
                        .name = "runaway-jit"};
  char buf[1200];
  double waited;
  NBT_CHECK(fork_stuck(&o, "local n = 0 while true do n = n + 1 end", buf,
                       sizeof buf, &waited));
  NBT_CHECK(strstr(buf, "neuron 'runaway-jit' has been in the script's top "
                        "level for ") != NULL);
  NBT_CHECK(strstr(buf, "JIT on, so it cannot be interrupted") != NULL);
  NBT_CHECK(waited < 2000.0);
}

/* A budget cannot stop one long C call that counts no steps (no
 * instructions run, so no hook): without a memory cap, a 300 MB
 * string.rep with a separator (~0.5-1 s in one call). The watchdog still
 * names it, says the JIT is off under a budget, and advises no
 * jit = false. (A backtracking pattern is no longer such a call: the
 * pattern functions check the budget, see test_lpattern.c.) */
static void test_watchdog_long_c_call(void) {
  nb_lstate_opts_t o = {.jit = 0, .budget_ns = BUDGET_NS,
                        .watchdog_ns = 100000000ull, .sandbox = 1,
                        .name = "repeater"};
  char buf[1200];
  double waited;
  NBT_CHECK(fork_stuck(&o, "return #('ab'):rep(1e8, ',')", buf, sizeof buf,
                       &waited));
  NBT_CHECK(strstr(buf, "repeater") != NULL);
  NBT_CHECK(strstr(buf, "JIT off with a budget of 20 ms") != NULL);
  NBT_CHECK(strstr(buf, "jit = false") == NULL);
}

/* The backtracking pattern that used to be such a call is stopped by the
 * budget now, long before the watchdog would report it. */
static void test_budget_stops_pattern(void) {
  nb_lstate_watchdog_report(report, NULL);
  rep_reset();
  nb_lstate_opts_t o = {.jit = 0, .budget_ns = BUDGET_NS,
                        .watchdog_ns = 2000000000ull, .sandbox = 1,
                        .name = "backtracker"};
  nb_lstate_t *S;
  NBT_EQ(nb_lstate_new(&S, &o), 0);
  uint64_t t0 = nbt_now_ns();
  double c0 = nbt_thread_cpu_ns() / 1e6;
  NBT_EQ(run(S, "return string.find(('a'):rep(5000), '.-.-.-.-b')"), NB_EBUDGET);
  double ms = (nbt_now_ns() - t0) / 1e6, cpu = nbt_thread_cpu_ns() / 1e6 - c0;
  printf("    # stopped after %.1f ms (cpu %.1f ms): %.40s\n", ms, cpu, E);
  NBT_CHECK(strstr(E, "budget of 20 ms exceeded") == E);
  /* CPU, as run_loops: wall time is the scheduler's on a loaded machine. */
  NBT_CHECK(cpu < 40.0 * san_slowdown() && ms < 5000.0);
  nb_lstate_stats_t st;
  nb_lstate_stats(S, &st);
  NBT_EQ(st.budget_overruns, 1);
  NBT_EQ(st.watchdog_overruns, 0);
  pthread_mutex_lock(&rep_mu);
  NBT_EQ(rep_count, 0);
  pthread_mutex_unlock(&rep_mu);
  NBT_EQ(nb_lstate_close(S), 0);
  nb_lstate_watchdog_report(NULL, NULL);
}

/* A JIT entry that runs past the watchdog limit but returns is reported
 * (named, with its entry), returns its results as any entry, is reported
 * again at twice the limit and once it returned (the time in all), and
 * the state goes on. */
static void test_watchdog_overrun_returns(void) {
  nb_lstate_watchdog_report(report, NULL);
  rep_reset();
  nb_lstate_opts_t o = {.jit = 1, .watchdog_ns = 30000000ull, .sandbox = 1,
                        .name = "slow-jit"};
  nb_lstate_t *S;
  NBT_EQ(nb_lstate_new(&S, &o), 0);
  NBT_EQ(run_int(S, "return 1"), 1); /* short entries are fine */
  lua_State *L = nb_lstate_L(S);
  /* os.clock counts every thread's CPU time (the watchdog's too), so 0.2 s
   * of it can be a little less wall time: 0.21 s of it is 0.2 s at least. */
  NBT_EQ(luaL_loadstring(L, "local t0 = os.clock() "
                            "while os.clock() - t0 < 0.21 do end return 7"), 0);
  NBT_EQ(nb_lstate_call_in(S, "on_spike", 0, 1, E, sizeof E), 0);
  NBT_EQ(lua_tointeger(L, -1), 7);
  lua_pop(L, 1);
  NBT_EQ(lua_gettop(L), 0);
  nb_lstate_stats_t st;
  nb_lstate_stats(S, &st);
  NBT_EQ(st.watchdog_overruns, 1);
  NBT_EQ(run_int(S, "return 2"), 2); /* it goes on */
  pthread_mutex_lock(&rep_mu);
  /* Over at 30 ms, still at 60 and 120 ms, returned: O S S R. A loaded
   * machine stretches the 0.21 s of CPU: one S per doubling the entry
   * lived past (a skipped one is allowed, an S beyond them is not). */
  printf("    # reports: %s, %.1f ms in all\n", rep_kinds, rep_elapsed / 1e6);
  size_t k = strlen(rep_kinds), doublings = 0;
  for (double d = 60e6; d <= rep_elapsed + 5e6; d *= 2) doublings++;
  NBT_CHECK(k >= 3 && k - 2 <= doublings && rep_kinds[0] == 'O' &&
            rep_kinds[k - 1] == 'R');
  NBT_CHECK(strspn(rep_kinds + 1, "S") == k - 2);
  NBT_CHECK(rep_tokens_match);
  NBT_CHECK(strcmp(rep_name, "slow-jit") == 0);
  NBT_CHECK(strcmp(rep_entry, "on_spike") == 0);
  NBT_EQ(rep_jit, 1);
  NBT_CHECK(rep_over_elapsed >= 30000000ull && rep_over_elapsed < 150000000ull);
  NBT_CHECK(rep_elapsed >= 200000000ull); /* RETURNED: in all */
  pthread_mutex_unlock(&rep_mu);
  NBT_EQ(nb_lstate_close(S), 0);
  nb_lstate_watchdog_report(NULL, NULL);
}

/* exit_ns adds one EXIT report once an entry ran that long (the entry
 * goes on: the runtime decides what to do with it). */
static void test_watchdog_exit_report(void) {
  nb_lstate_watchdog_report(report, NULL);
  rep_reset();
  nb_lstate_opts_t o = {.jit = 0, .watchdog_ns = 20000000ull,
                        .exit_ns = 50000000ull, .name = "exiting"};
  nb_lstate_t *S;
  NBT_EQ(nb_lstate_new(&S, &o), 0);
  NBT_EQ(run_int(S, "local t0 = os.clock() "
                    "while os.clock() - t0 < 0.12 do end return 3"), 3);
  pthread_mutex_lock(&rep_mu);
  printf("    # reports: %s\n", rep_kinds);
  NBT_CHECK(rep_kinds[0] == 'O' && strchr(rep_kinds, 'E') != NULL &&
            strchr(rep_kinds, 'E') == strrchr(rep_kinds, 'E'));
  NBT_CHECK(rep_kinds[strlen(rep_kinds) - 1] == 'R');
  NBT_EQ(rep_jit, 0);
  pthread_mutex_unlock(&rep_mu);
  NBT_EQ(nb_lstate_close(S), 0);
  nb_lstate_watchdog_report(NULL, NULL);
}

/* The report's text says what is known, never advising jit = false to a
 * state that already has it. */
static void test_watchdog_text(void) {
  char buf[1024];
  nb_lstate_watch_t w = {.kind = NB_LSTATE_WATCH_OVER, .name = "n",
                         .entry = "tick", .elapsed_ns = 1500000000ull,
                         .limit_ns = 1000000000ull, .jit = 1};
  nb_lstate_watch_text(&w, buf, sizeof buf);
  NBT_CHECK(strstr(buf, "neuron 'n' has been in tick for 1.50 s, past its "
                        "watchdog of 1 s; JIT on") != NULL);
  NBT_CHECK(strstr(buf, "jit = false and a budget") != NULL);
  NBT_CHECK(strstr(buf, "Reported again at 2 s") != NULL);
  w.jit = 0;
  nb_lstate_watch_text(&w, buf, sizeof buf);
  NBT_CHECK(strstr(buf, "JIT off and no budget") != NULL);
  NBT_CHECK(strstr(buf, "jit = false") == NULL);
  w.budget_ns = 20000000ull;
  nb_lstate_watch_text(&w, buf, sizeof buf);
  NBT_CHECK(strstr(buf, "JIT off with a budget of 20 ms") != NULL);
  NBT_CHECK(strstr(buf, "jit = false") == NULL);
  w.kind = NB_LSTATE_WATCH_RETURNED;
  w.entry = NULL;
  w.elapsed_ns = 2500000000ull;
  nb_lstate_watch_text(&w, buf, sizeof buf);
  NBT_CHECK(strstr(buf, "neuron 'n' returned from an entry after 2.50 s in "
                        "all") != NULL);
}

/* Entries well under the limit are never reported. */
static void test_watchdog_quiet(void) {
  nb_lstate_watchdog_report(report, NULL);
  rep_reset();
  nb_lstate_opts_t o = {.jit = 1, .watchdog_ns = 40000000ull, .name = "quick"};
  nb_lstate_t *S;
  NBT_EQ(nb_lstate_new(&S, &o), 0);
  for (int i = 0; i < 50; i++) {
    NBT_EQ(run_int(S, "local t0 = os.clock() while os.clock() - t0 < 0.002 do "
                      "end return 1"),
           1);
  }
  pthread_mutex_lock(&rep_mu);
  NBT_EQ(rep_count, 0);
  pthread_mutex_unlock(&rep_mu);
  nb_lstate_stats_t st;
  nb_lstate_stats(S, &st);
  NBT_EQ(st.watchdog_overruns, 0);
  NBT_EQ(nb_lstate_close(S), 0);
  nb_lstate_watchdog_report(NULL, NULL);
}

/* ---- sandbox ---------------------------------------------------------- */

static nb_lstate_t *sb(void) { return mk(16 * MB, 1, 0, 1, "sandboxed"); }

static void test_sandbox_denies_ffi(void) {
  nb_lstate_t *S = sb();
  NBT_CHECK(run_true(S, "return ffi == nil and not pcall(require, 'ffi')"));
  NBT_CHECK(run_true(S, "local ok, e = pcall(require, 'ffi') "
                        "return e:find('not available in the sandbox') ~= nil"));
  NBT_EQ(nb_lstate_close(S), 0);
}

static void test_sandbox_denies_debug(void) {
  nb_lstate_t *S = sb();
  NBT_CHECK(run_true(S, "return debug == nil and not pcall(require, 'debug')"));
  NBT_EQ(nb_lstate_close(S), 0);
}

static void test_sandbox_denies_jit(void) {
  nb_lstate_t *S = sb();
  NBT_CHECK(run_true(S, "return jit == nil and not pcall(require, 'jit') "
                        "and not pcall(require, 'jit.util') "
                        "and not pcall(require, 'jit.profile')"));
  NBT_EQ(nb_lstate_close(S), 0);
}

static void test_sandbox_denies_io(void) {
  nb_lstate_t *S = sb();
  NBT_CHECK(run_true(S, "return io == nil and not pcall(require, 'io')"));
  NBT_EQ(nb_lstate_close(S), 0);
}

static void test_sandbox_denies_os_escape(void) {
  nb_lstate_t *S = sb();
  NBT_CHECK(run_true(S, "return os.execute == nil and os.exit == nil and "
                        "os.remove == nil and os.rename == nil and "
                        "os.getenv == nil and os.tmpname == nil and "
                        "os.setlocale == nil and not pcall(require, 'os')"));
  NBT_EQ(nb_lstate_close(S), 0);
}

static void test_sandbox_denies_string_dump(void) {
  nb_lstate_t *S = sb();
  NBT_CHECK(run_true(S, "return string.dump == nil and ('').dump == nil and "
                        "not pcall(require, 'string')"));
  NBT_EQ(nb_lstate_close(S), 0);
}

/* The string metatable is shared by all code in the state: hidden. */
static void test_sandbox_string_metatable_hidden(void) {
  nb_lstate_t *S = sb();
  NBT_CHECK(run_true(S, "return getmetatable('') == 'string' and "
                        "not pcall(setmetatable, '', {})"));
  NBT_CHECK(run_true(S, "return ('abc'):upper() == 'ABC' and "
                        "('%d'):format(5) == '5'"));
  NBT_EQ(nb_lstate_close(S), 0);
}

/* Bytecode made outside (string.dump in a plain state) is refused by
 * every loader the agent has, and by nb_lstate_load_agent. */
static void test_sandbox_denies_bytecode(void) {
  nb_lstate_t *P = mk(0, 1, 0, 0, "plain");
  NBT_EQ(host_run(P, "return string.dump(function() return 'pwned' end)"), 0);
  size_t len;
  const char *bc = lua_tolstring(nb_lstate_L(P), -1, &len);
  nb_lstate_t *S = sb();
  lua_State *L = nb_lstate_L(S);
  nb_lstate_push_env(S);
  lua_pushlstring(L, bc, len);
  lua_setfield(L, -2, "BC");
  lua_pop(L, 1);
  NBT_CHECK(run_true(S, "local f, e = load(BC) assert(f == nil and e:find('mode')) "
                        "assert(loadstring(BC) == nil) "
                        "assert(load(BC, 'x', 'b') == nil) "
                        "assert(load(BC, 'x', 'bt', _G) == nil) "
                        "local i = 0 local g = load(function() i = i + 1 "
                        "if i == 1 then return BC end end) "
                        "return g == nil"));
  /* As an agent source and as an agent file. */
  char *src = malloc(len + 1);
  memcpy(src, bc, len);
  src[len] = 0;
  NBT_EQ(nb_lstate_load_agent(S, src, 1, E, sizeof E), NB_EAGENT);
  NBT_CHECK(strstr(E, "bytecode") != NULL);
  free(src);
  char path[] = "/tmp/nb_lstate_bcXXXXXX";
  int fd = mkstemp(path);
  NBT_CHECK(fd >= 0);
  NBT_CHECK(write(fd, bc, len) == (ssize_t)len);
  close(fd);
  NBT_EQ(nb_lstate_load_agent(S, path, 0, E, sizeof E), NB_EAGENT);
  NBT_CHECK(strstr(E, "bytecode") != NULL);
  /* The same file in a plain state loads (trusted agents may ship it). */
  NBT_EQ(nb_lstate_load_agent(P, path, 0, E, sizeof E), 0);
  unlink(path);
  NBT_EQ(nb_lstate_close(S), 0);
  NBT_EQ(nb_lstate_close(P), 0);
}

static void test_sandbox_text_load_works(void) {
  nb_lstate_t *S = sb();
  NBT_CHECK(run_true(S, "SECRET = 7 local f = load('return SECRET, math.pi') "
                        "local a, b = f() "
                        "local g = loadstring('return SECRET') "
                        "local h = load('return SECRET', 'c', 't', {SECRET = 9}) "
                        "return a == 7 and b == math.pi and g() == 7 and h() == 9 "
                        "and load('return ffi')() == nil"));
  NBT_EQ(nb_lstate_close(S), 0);
}

static void test_sandbox_denies_require(void) {
  nb_lstate_t *S = sb();
  NBT_CHECK(run_true(S, "for _, m in ipairs{'ffi', 'jit', 'debug', 'io', 'os', "
                        "'string', 'package', 'table.new', 'neuronbus.ffi', "
                        "'neuronbus.sandbox', 'socket', 'lfs'} do "
                        "if pcall(require, m) then return m end end return true"));
  NBT_EQ(nb_lstate_close(S), 0);
}

static void test_sandbox_denies_package(void) {
  nb_lstate_t *S = sb();
  NBT_CHECK(run_true(S, "return package == nil and module == nil and "
                        "not pcall(require, 'package') and "
                        "rawget(_G, 'package') == nil"));
  NBT_EQ(nb_lstate_close(S), 0);
}

/* getfenv(0) or getfenv(f) on any runtime function would hand out the real
 * globals; setfenv could rewire runtime functions: both are absent. */
static void test_sandbox_denies_fenv(void) {
  nb_lstate_t *S = sb();
  NBT_CHECK(run_true(S, "return getfenv == nil and setfenv == nil"));
  NBT_EQ(nb_lstate_close(S), 0);
}

static void test_sandbox_denies_file_loaders(void) {
  nb_lstate_t *S = sb();
  NBT_CHECK(run_true(S, "return dofile == nil and loadfile == nil"));
  NBT_EQ(nb_lstate_close(S), 0);
}

/* newproxy is the only way to a userdata with __gc from plain Lua; table
 * __gc is ignored in LuaJIT: no finalizer can run agent code unbudgeted. */
static void test_sandbox_denies_finalizers(void) {
  nb_lstate_t *S = sb();
  NBT_CHECK(run_true(S, "setmetatable({}, {__gc = function() GC_RAN = true end}) "
                        "return newproxy == nil"));
  lua_gc(nb_lstate_L(S), LUA_GCCOLLECT, 0);
  NBT_CHECK(run_true(S, "return GC_RAN == nil"));
  NBT_EQ(nb_lstate_close(S), 0);
}

static void test_sandbox_collectgarbage(void) {
  nb_lstate_t *S = sb();
  NBT_CHECK(run_true(S, "return type(collectgarbage('count')) == 'number' and "
                        "collectgarbage() == 0 and "
                        "collectgarbage('collect') == 0 and "
                        "type(collectgarbage('step')) == 'boolean'"));
  NBT_CHECK(run_true(S, "for _, o in ipairs{'stop', 'restart', 'setpause', "
                        "'setstepmul'} do if pcall(collectgarbage, o, 100) "
                        "then return o end end return true"));
  NBT_EQ(nb_lstate_close(S), 0);
}

/* The agent's library tables are copies: changing them does not reach the
 * runtime's code in the same state. */
static void test_sandbox_copies_isolate(void) {
  nb_lstate_t *S = sb();
  NBT_CHECK(run_true(S, "string.format = function() return 'hacked' end "
                        "table.insert = nil math.floor = nil "
                        "_G.print = nil return true"));
  NBT_EQ(host_run(S, "return string.format('%d', 5) == '5' and "
                     "table.insert ~= nil and math.floor(1.5) == 1 and "
                     "print ~= nil"),
         0);
  NBT_CHECK(lua_toboolean(nb_lstate_L(S), -1));
  lua_pop(nb_lstate_L(S), 1);
  NBT_EQ(nb_lstate_close(S), 0);
}

/* Trusted runtime code keeps ffi through an upvalue captured with the real
 * globals; the agent can call it but not reach ffi. */
static void test_sandbox_runtime_keeps_ffi(void) {
  nb_lstate_t *S = sb();
  lua_State *L = nb_lstate_L(S);
  NBT_EQ(host_run(S, "local ffi = require('ffi') return function(n) "
                     "local a = ffi.new('int[1]', n) return a[0] * 2 end"),
         0);
  nb_lstate_push_env(S);
  lua_insert(L, -2);
  lua_setfield(L, -2, "host_double");
  lua_pop(L, 1);
  NBT_EQ(run_int(S, "return host_double(21)"), 42);
  NBT_CHECK(run_true(S, "return ffi == nil and _G.ffi == nil and "
                        "getfenv == nil and debug == nil and "
                        "_G.require ~= nil and _G == _G._G"));
  /* Trusted code loads agent text through the published loaders. */
  int rc = host_run(S, "local sb = require('neuronbus.sandbox') "
                       "local f = assert(sb.loadstring('return ffi == nil and "
                       "string.dump == nil', '=agent')) "
                       "local b = sb.loadstring('\\27LJ', '=bc') "
                       "return sb.sandboxed and f() and b == nil");
  NBT_EQ(rc, 0);
  NBT_CHECK(lua_toboolean(L, -1));
  lua_pop(L, 1);
  NBT_EQ(nb_lstate_close(S), 0);
}

static void test_sandbox_require_allow_list(void) {
  static const char *const allow[] = {"nbtest.safe", NULL};
  nb_lstate_opts_t o = {.memory_limit = 16 * MB, .jit = 1, .sandbox = 1,
                        .name = "allowed", .require_allow = allow};
  nb_lstate_t *S;
  NBT_EQ(nb_lstate_new(&S, &o), 0);
  NBT_EQ(host_run(S, "package.preload['nbtest.safe'] = function() "
                     "return {answer = 42} end "
                     "package.preload['nbtest.other'] = function() "
                     "return {} end return true"),
         0);
  lua_pop(nb_lstate_L(S), 1);
  NBT_EQ(run_int(S, "return require('nbtest.safe').answer"), 42);
  NBT_CHECK(run_true(S, "return not pcall(require, 'nbtest.other')"));
  NBT_EQ(nb_lstate_close(S), 0);
}

static void test_sandbox_allowed_libraries(void) {
  nb_lstate_t *S = sb();
  NBT_CHECK(run_true(S,
      "local t = {5, 3, 9, 1} table.sort(t) table.insert(t, 10) "
      "assert(table.concat(t, ',') == '1,3,5,9,10') assert(table.remove(t) == 10) "
      "assert(string.format('%05.1f|%s', 3.14159, 'x') == '003.1|x') "
      "assert(('a,b,c'):gsub(',', ';') == 'a;b;c') "
      "assert(select('#', ('k=v'):match('(%w)=(%w)')) == 2) "
      "assert(string.rep('ab', 3) == 'ababab' and ('x'):byte() == 120) "
      "assert(math.floor(2.7) == 2 and math.max(1, 4) == 4 and math.huge > 0) "
      "local r = math.random(1, 6) assert(r >= 1 and r <= 6) "
      "local co = coroutine.wrap(function(a) local b = coroutine.yield(a + 1) "
      "return b * 2 end) assert(co(1) == 2 and co(5) == 10) "
      "assert(coroutine.status(coroutine.create(print)) == 'suspended') "
      "assert(type(os.time()) == 'number' and type(os.clock()) == 'number') "
      "assert(type(os.date('%Y')) == 'string' and os.date('*t').year > 2000) "
      "assert(os.difftime(2, 1) == 1) "
      "local ok, e = pcall(error, 'x', 0) assert(not ok and e == 'x') "
      "assert(select(2, xpcall(function() error('y', 0) end, "
      "function(m) return m .. '!' end)) == 'y!') "
      "local mt = {__index = function(_, k) return k .. k end} "
      "local o = setmetatable({}, mt) assert(getmetatable(o) == mt and o.a == 'aa') "
      "local n = 0 for k, v in pairs({a = 1, b = 2}) do n = n + v end assert(n == 3) "
      "for i, v in ipairs({4, 5}) do n = n + i * v end assert(n == 17) "
      "assert(tostring(12) == '12' and tonumber('0x10') == 16 and type(n) == 'number') "
      "assert(next({}) == nil and rawget({a = 1}, 'a') == 1 and rawequal(t, t)) "
      "local u = {} rawset(u, 'k', 1) assert(u.k == 1) "
      "rawset(_G, 'GLOBAL_OK', 1) assert(GLOBAL_OK == 1) "
      "assert(unpack({1, 2, 3}, 2) == 2 and bit.band(6, 3) == 2) "
      "assert(type(print) == 'function' and _VERSION) "
      "return true"));
  NBT_EQ(nb_lstate_close(S), 0);
}

/* An unsandboxed agent sees the real globals (trusted agents). */
static void test_unsandboxed_sees_everything(void) {
  nb_lstate_t *S = mk(16 * MB, 1, 0, 0, "open");
  NBT_CHECK(run_true(S, "return require('ffi') ~= nil and debug ~= nil and "
                        "io ~= nil and string.dump ~= nil and jit ~= nil"));
  NBT_EQ(nb_lstate_close(S), 0);
}

/* ---- threads ---------------------------------------------------------- */

static void *thread_body(void *arg) {
  int *fails = arg;
  for (int k = 0; k < 3; k++) {
    nb_lstate_t *S = mk(8 * MB, 0, BUDGET_NS, 1, "worker");
    nb_lstate_t *M = mk(8 * MB, k & 1, 0, 1, "worker-mem");
    if (run(S, "while true do end") != NB_EBUDGET) (*fails)++;
    if (run(M, bombs[k].src) != NB_EMEMLIMIT) (*fails)++;
    if (nb_lstate_close(S) != 0) (*fails)++;
    if (nb_lstate_close(M) != 0) (*fails)++;
  }
  return NULL;
}

/* States in different threads limit themselves independently. */
static void test_threads(void) {
  pthread_t th[2];
  int fails[2] = {0, 0};
  for (int i = 0; i < 2; i++) pthread_create(&th[i], NULL, thread_body, &fails[i]);
  for (int i = 0; i < 2; i++) pthread_join(th[i], NULL);
  NBT_EQ(fails[0] + fails[1], 0);
}

/* Under TSan the churn outlasts the 1 s watchdog of a JIT state, which
 * reports it mid-run (noise in a test about memory). The fork and budget tests do run under TSan:
 * each test's process starts single-threaded, and the TSan shadow-stack
 * entries LuaJIT's unwinding leaves behind (the stack overflows past some
 * 65536 raised errors) start from zero in each. */
#if defined(__SANITIZE_THREAD__)
#define NO_TSAN(fn) NBT_TEST_SKIP(fn, "TSan: the churn outlasts the 1 s JIT watchdog")
#else
#define NO_TSAN(fn) NBT_TEST(fn)
#endif

static const nbt_test_t tests[] = {
    NBT_TEST(test_api_misc),
    NBT_TEST(test_watchdog_jit_endless_loop),
    NBT_TEST(test_watchdog_long_c_call),
    NBT_TEST(test_budget_stops_pattern),
    NBT_TEST(test_mem_bombs_jit_on),
    NBT_TEST(test_mem_bombs_jit_off),
    NBT_TEST(test_mem_string_rep_overflow),
    NBT_TEST(test_mem_close_at_cap),
    NBT_TEST(test_mem_caught_and_traceback),
    NBT_TEST(test_mem_while_compiling),
    NBT_TEST(test_mem_compiled_code),
    NO_TSAN(test_mem_garbage_under_cap),
    NBT_TEST(test_mem_host_calls),
    NBT_TEST(test_mem_neighbour_unaffected),
    NBT_TEST(test_budget_loops_sandboxed),
    NBT_TEST(test_budget_loops_unsandboxed),
    NBT_TEST(test_budget_per_entry),
    NBT_TEST(test_budget_forces_jit_off),
    NBT_TEST(test_budget_hook_restored),
    NBT_TEST(test_budget_and_cap),
    NBT_TEST(test_error_traceback),
    NBT_TEST(test_watchdog_overrun_returns),
    NBT_TEST(test_watchdog_exit_report),
    NBT_TEST(test_watchdog_text),
    NBT_TEST(test_watchdog_quiet),
    NBT_TEST(test_sandbox_denies_ffi),
    NBT_TEST(test_sandbox_denies_debug),
    NBT_TEST(test_sandbox_denies_jit),
    NBT_TEST(test_sandbox_denies_io),
    NBT_TEST(test_sandbox_denies_os_escape),
    NBT_TEST(test_sandbox_denies_string_dump),
    NBT_TEST(test_sandbox_string_metatable_hidden),
    NBT_TEST(test_sandbox_denies_bytecode),
    NBT_TEST(test_sandbox_text_load_works),
    NBT_TEST(test_sandbox_denies_require),
    NBT_TEST(test_sandbox_denies_package),
    NBT_TEST(test_sandbox_denies_fenv),
    NBT_TEST(test_sandbox_denies_file_loaders),
    NBT_TEST(test_sandbox_denies_finalizers),
    NBT_TEST(test_sandbox_collectgarbage),
    NBT_TEST(test_sandbox_copies_isolate),
    NBT_TEST(test_sandbox_runtime_keeps_ffi),
    NBT_TEST(test_sandbox_require_allow_list),
    NBT_TEST(test_sandbox_allowed_libraries),
    NBT_TEST(test_unsandboxed_sees_everything),
    NBT_TEST(test_threads),
};

/* The watchdog thread starts with the first JIT state: each test's process
 * stops it before exit. */
static void stop_watchdog(void) { nb_lstate_watchdog_stop(); }

static const nbt_hooks_t hooks = {NULL, stop_watchdog};

int main(int argc, char **argv) { return NBT_MAIN(argc, argv, tests, &hooks); }
