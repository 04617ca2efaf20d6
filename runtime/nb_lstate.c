/* nb_lstate.c: memory cap, time budget, watchdog and sandbox for agent
 * states. See nb_lstate.h for the contract; the notes here say why. */
#include "nb_lstate.h"

#include <malloc.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <lauxlib.h>
#include <luajit.h>
#include <lualib.h>

#include "nb_clock.h"
#include "nb_lstate_internal.h"
#include "nb_lpattern_internal.h"

/* Words of an entry's name as the watchdog reads it (47 bytes and a NUL). */
#define NB__ENTRY_WORDS 6
#define NB__ENTRY_MAX (NB__ENTRY_WORDS * 8)

struct nb_lstate_s {
  lua_State *L;
  char name[64];
  /* Allocator. Plain fields: only the thread driving the state touches them. */
  size_t limit, bytes, peak;
  int enforce;        /* the cap applies now: agent code may be running */
  int mem_hit;        /* the cap refused a block during this entry */
  size_t mem_ask;     /* the size of the last refused block */
  uint64_t refused;
  /* Entries and budget. */
  int depth;          /* nesting of nb_lstate_call */
  int jit, sandbox;
  uint64_t budget_ns, deadline; /* deadline 0: no entry running */
  /* End of the running entry for long C work (the pattern functions): the
   * budget's deadline, or in a sandboxed state without a budget the
   * watchdog limit's; 0 = none or no entry running. */
  uint64_t c_deadline;
  char limit_msg[64]; /* the error of both ("budget of 20 ms exceeded") */
  int budget_hit, escalated;
  uint64_t entries, mem_errors, budget_overruns;
  int msgh_ref, env_ref, budget_msg_ref;
  /* Watchdog: the entry side writes these atomics, the watchdog reads. */
  uint64_t watch_ns;            /* 0: not watched */
  uint64_t exit_ns;             /* 0: no exit report */
  _Atomic uint64_t w_start;     /* start of the running entry, 0 = idle */
  _Atomic uint64_t w_seq;       /* bumped at each outermost entry (from 1) */
  _Atomic uint64_t w_claim;     /* seq of the entry the watchdog reported */
  _Atomic uint64_t w_entry[NB__ENTRY_WORDS]; /* its name, NUL-padded */
  _Atomic uint64_t watchdog_overruns;
  uint64_t cur_seq, cur_start;  /* entry side: the running outermost entry */
  /* Watchdog-owned, under wd.rmu. */
  uint64_t w_track;             /* seq of the entry being followed */
  uint64_t w_next_ns;           /* elapsed at which it is reported again */
  int w_exit_sent;
  uint64_t w_sent;              /* seq whose OVER went out */
  uint64_t w_token;             /* of that entry's reports */
  nb_lstate_t *w_next, *w_prev; /* under wd.mu */
  int w_linked;
  int cstack_hit; /* the allocator refused a block: the C stack was deep */
  /* The allocator granted compiled code a block it would have refused
   * (see defer_refusal): DEFER_PENDING until the error is raised at the
   * next interpreted instruction, DEFER_RAISED after. */
  int deferred;
  int over_msg_ref;
  int traces_ref; /* the trace record (nb_lstate_traces.c) */
  size_t gc_hold_until; /* while the collector is held: the heap size at
                           which it runs again (0: not held) */
  int stepmul, pause; /* the collector's settings before a deferral */
};

/* ---- small helpers -------------------------------------------------- */

/* Writes a formatted message into err when there is room; returns code. */
static int errf(char *err, size_t errlen, int code, const char *fmt, ...) {
  if (err && errlen) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
  }
  return code;
}

/* Writes "16 MB", "512 KB" or "1000 bytes" for n into buf; returns buf. */
static const char *size_txt(char *buf, size_t len, size_t n) {
  if (n && n % (1024 * 1024) == 0)
    snprintf(buf, len, "%zu MB", n / (1024 * 1024));
  else if (n && n % 1024 == 0)
    snprintf(buf, len, "%zu KB", n / 1024);
  else
    snprintf(buf, len, "%zu bytes", n);
  return buf;
}

/* Writes "20 ms", "1 s", "500 us" or "n ns" for ns into buf; returns buf. */
static const char *time_txt(char *buf, size_t len, uint64_t ns) {
  if (ns && ns % 1000000000ull == 0)
    snprintf(buf, len, "%llu s", (unsigned long long)(ns / 1000000000ull));
  else if (ns && ns % 1000000ull == 0)
    snprintf(buf, len, "%llu ms", (unsigned long long)(ns / 1000000ull));
  else if (ns && ns % 1000ull == 0)
    snprintf(buf, len, "%llu us", (unsigned long long)(ns / 1000ull));
  else
    snprintf(buf, len, "%llu ns", (unsigned long long)ns);
  return buf;
}

/* ---- allocator ------------------------------------------------------ */

/* This thread's C stack floor for agent allocations (see "C stack depth"
 * below): 0 until known, or when it cannot be known. */
static _Thread_local uintptr_t cs_floor;
static _Thread_local int cs_ready; /* 1 known, -1 cannot be known */

static void over_hook(lua_State *L, lua_Debug *ar);

enum { DEFER_NONE, DEFER_PENDING, DEFER_RAISED };

/* The counters nb_lstate_stats reads from another thread (the statistics
 * read them in a pause, while a call stuck on a worker thread may still
 * allocate) are written only by the thread in the state, with relaxed
 * atomic stores: a reader never sees a torn value, and the writer pays no
 * read-modify-write. */
#define STAT_SET(f, v) __atomic_store_n(&(f), (v), __ATOMIC_RELAXED)
#define STAT_ADD(f, d) STAT_SET(f, (f) + (d))
#define STAT_GET(f) __atomic_load_n(&(f), __ATOMIC_RELAXED)

/* Grants a block the allocator would have refused, because compiled code
 * asked for it (see nb_lstate_jit.c: refusing it would crash LuaJIT),
 * and arms a count hook on every instruction so the entry stops at the
 * first one the interpreter runs; returns nothing.
 *
 * A trace that loops without ever leaving would not reach that hook, but
 * a trace leaves whenever the collector it steps reaches its atomic
 * phase. So the collector is told to start a cycle at its next check, to
 * run it in very large steps, and (should it be finishing a cycle) to
 * start the next one at once rather than when the heap has doubled: the
 * trace is out within a few steps. These are plain field writes in
 * LuaJIT (no allocation, no collection here), safe inside an allocation. */
static void defer_refusal(nb_lstate_t *S) {
  if (S->deferred == DEFER_PENDING) return;
  S->deferred = DEFER_PENDING;
  lua_sethook(S->L, over_hook, LUA_MASKCOUNT, 1);
  S->stepmul = lua_gc(S->L, LUA_GCSETSTEPMUL, 1 << 20);
  S->pause = lua_gc(S->L, LUA_GCSETPAUSE, 100);
  lua_gc(S->L, LUA_GCRESTART, 0);
}

/* Returns 1 when compiled code asked for the block: only a state with
 * the JIT on has traces, and the stack walk is not free. */
static int in_trace(const nb_lstate_t *S) {
  return S->jit && nb__lstate_in_trace();
}

/* The state's lua_Alloc: counts the bytes malloc really holds, refuses
 * growth past the cap while enforce is set; returns the block or NULL.
 * Shrinks and frees never fail, as Lua requires, and neither does a
 * block compiled code asks for (defer_refusal). The count uses
 * malloc_usable_size, not Lua's osize: after a failed upvalue allocation
 * LuaJIT frees a closure with a smaller osize than it allocated, which
 * would leave the count drifting. */

static void *capped_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  nb_lstate_t *S = ud;
  size_t old = ptr ? malloc_usable_size(ptr) : 0;
  if (nsize == 0) {
    free(ptr);
    STAT_SET(S->bytes, S->bytes - old);
    return NULL;
  }
  /* Checked with an upper bound of what malloc will count for nsize
   * (glibc: a 16-byte rounding plus 8 for heap chunks, page rounding for
   * mmapped ones), so the counted bytes never pass the cap. */
  size_t est = nsize + (nsize < 65536 ? 24 : 4096);
  int grows = nsize > (ptr ? osize : 0);
  if (grows && S->depth && cs_floor &&
      (uintptr_t)__builtin_frame_address(0) < cs_floor) {
    /* Agent code recursing through C is near the end of the stack. */
    S->cstack_hit = 1;
    STAT_ADD(S->refused, 1);
    if (S->deferred != DEFER_PENDING && !in_trace(S)) return NULL;
    defer_refusal(S);
  } else if (grows && S->enforce && S->limit &&
             S->bytes - old + est > S->limit) {
    S->mem_hit = 1;
    S->mem_ask = nsize;
    STAT_ADD(S->refused, 1);
    /* Once deferred, the error comes at the next instruction: what runs
     * until then (the rest of the trace or of one C call) is granted
     * without walking the stack for every block. */
    if (S->deferred != DEFER_PENDING && !in_trace(S)) return NULL;
    defer_refusal(S);
  }
  void *p = realloc(ptr, nsize);
  if (!p) {
    if (ptr && nsize <= osize) return ptr; /* a failed shrink keeps the block */
    return NULL;                           /* the process is out of memory */
  }
  STAT_SET(S->bytes, S->bytes - old + malloc_usable_size(p));
  if (S->bytes > S->peak) STAT_SET(S->peak, S->bytes);
  if (S->gc_hold_until && S->bytes > S->gc_hold_until) {
    /* A plain field write in LuaJIT, safe inside an allocation (as in
     * defer_refusal). */
    S->gc_hold_until = 0;
    lua_gc(S->L, LUA_GCRESTART, 0);
  }
  return p;
}

/* Returns the state owning L (its allocator's ud) or NULL. */
nb_lstate_t *nb_lstate_from_L(lua_State *L) {
  void *ud = NULL;
  if (!L || lua_getallocf(L, &ud) != capped_alloc) return NULL;
  return ud;
}

/* Prints the unprotected error with the state's name and aborts: reaching
 * it is a host bug (a Lua API call outside any protection); never returns. */
static int panic(lua_State *L) {
  nb_lstate_t *S = nb_lstate_from_L(L);
  const char *msg = lua_tostring(L, -1);
  fprintf(stderr, "neuronbus: PANIC: unprotected Lua error in state '%s': %s\n",
          S ? S->name : "?", msg ? msg : "(not a string)");
  fflush(stderr);
  abort();
  return 0;
}

/* ---- budget hook ---------------------------------------------------- */

static void budget_hook(lua_State *L, lua_Debug *ar);

/* Raises the budget error (or a sandboxed state's pattern limit error)
 * and, under a budget, from then on makes the hook fire at every
 * instruction, so agent code that catches the error with pcall is
 * interrupted again at once and every level unwinds; never returns. */
static int budget_raise(lua_State *L, nb_lstate_t *S) {
  S->budget_hit = 1;
  if (S->budget_ns && !S->escalated) {
    S->escalated = 1;
    lua_sethook(L, budget_hook, LUA_MASKCOUNT, 1);
  }
  /* Made once at setup: raising allocates nothing, even at the cap. */
  lua_rawgeti(L, LUA_REGISTRYINDEX, S->budget_msg_ref);
  return lua_error(L);
}

/* Count hook of budgeted states: returns while the entry's deadline is
 * ahead (or no entry runs), raises the budget error past it. */
static void budget_hook(lua_State *L, lua_Debug *ar) {
  (void)ar;
  nb_lstate_t *S = nb_lstate_from_L(L);
  if (!S || !S->deadline) return;
  if (!S->budget_hit && nb_clock_ns() < S->deadline) return;
  budget_raise(L, S);
}

/* The same check from Lua, run by the pcall/xpcall wrappers of budgeted
 * states: returns nothing while within budget. It exists because LuaJIT
 * calls no hook when the Lua stack is too full for the hook's 21 slots, so
 * `local function f() while true do pcall(f) end end` at maximum depth
 * would never see the count hook; the wrapper calls this before pcall, and
 * when even this cannot get its stack the error unwinds one level up. */
static int budget_check(lua_State *L) {
  nb_lstate_t *S = nb_lstate_from_L(L);
  if (!S || !S->deadline) return 0;
  if (!S->budget_hit && nb_clock_ns() < S->deadline) return 0;
  return budget_raise(L, S);
}

/* Long C work (nb_lpattern.c) checks the same limit every few thousand
 * steps, where no hook can fire. */
int nb__lstate_c_check(lua_State *L, nb_lstate_t *S) {
  if (!S->c_deadline) return 0;
  if (!S->budget_hit && nb_clock_ns() < S->c_deadline) return 0;
  return budget_raise(L, S);
}

/* Lua wrappers (tail calls keep pcall yieldable and its results intact).
 * xpcall's handler is wrapped too: a budget error raised from the hook
 * runs the handler while LuaJIT still counts the hook as active, so a
 * looping handler would see no hook; the check stops it before it runs. */
static const char pcall_wrap[] =
    "local check, pcall, xpcall = ...\n"
    "return function(f, ...) check() return pcall(f, ...) end,\n"
    "  function(f, h, ...)\n"
    "    check()\n"
    "    return xpcall(f, function(e) check() return h(e) end, ...)\n"
    "  end\n";

/* ---- compiled code at a limit -------------------------------------- */

/* Puts back the hook and collector settings defer_refusal changed;
 * returns nothing. */
static void defer_disarm(nb_lstate_t *S) {
  if (S->budget_ns)
    lua_sethook(S->L, budget_hook, LUA_MASKCOUNT,
                S->escalated ? 1 : NB_LSTATE_HOOK_COUNT);
  else
    lua_sethook(S->L, NULL, 0, 0);
  lua_gc(S->L, LUA_GCSETSTEPMUL, S->stepmul);
  lua_gc(S->L, LUA_GCSETPAUSE, S->pause);
}

/* Count hook armed by defer_refusal: at the first interpreted instruction
 * after compiled code went past a limit, disarms itself and raises the
 * memory error there (the C stack one is told apart by cstack_hit), as
 * the refusal would have: agent code may catch it with pcall, and its
 * next block past the limit is refused (or deferred) again; returns only
 * when no refusal is pending. */
static void over_hook(lua_State *L, lua_Debug *ar) {
  (void)ar;
  nb_lstate_t *S = nb_lstate_from_L(L);
  if (!S || S->deferred != DEFER_PENDING) return;
  S->deferred = DEFER_RAISED;
  defer_disarm(S);
  /* Made once at setup: raising allocates nothing. */
  lua_rawgeti(L, LUA_REGISTRYINDEX, S->over_msg_ref);
  lua_error(L);
}

/* tostring runs an object's __tostring as a tail call (LuaJIT), so a
 * __tostring that calls tostring on its object (or on an object whose
 * __tostring does) loops forever in constant stack: with the JIT on in
 * compiled code nothing interrupts it, and the message handler would hang
 * on such an error object. This wrapper makes each level a real call, so
 * the recursion ends in LuaJIT's "stack overflow" error; arguments and
 * errors are tostring's own. */
static const char tostring_wrap[] =
    "local tostring = ...\n"
    "return function(...) local s = tostring(...) return s end\n";

/* ---- message handler ------------------------------------------------ */

/* The message handler of every entry: returns the error text with a
 * traceback. It runs at the error point, so it lifts the cap (the state
 * may sit at it) while it builds the text. Not called for memory errors. */
static int nb__msgh(lua_State *L) {
  nb_lstate_t *S = nb_lstate_from_L(L);
  int e = S ? S->enforce : 0;
  const char *msg = lua_tostring(L, 1);
  if (!msg) {
    /* __tostring is agent code: it runs under the cap like any other. */
    if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING)
      msg = lua_tostring(L, -1);
    else
      msg = lua_pushfstring(L, "(error object is a %s value)",
                            luaL_typename(L, 1));
  }
  if (S) S->enforce = 0;
  luaL_traceback(L, L, msg, 1);
  if (S) S->enforce = e;
  return 1;
}

/* ---- watchdog ------------------------------------------------------- */

/* Two locks. mu guards the list of watched states and the thread's life;
 * rmu serializes the reports and guards the watchdog-owned fields of each
 * state, the callback and its ud. Order: rmu, then mu. The watchdog holds
 * rmu from a scan through its reports, so an entry returning meanwhile
 * reports RETURNED after them (it takes rmu). */
static struct {
  pthread_mutex_t mu, rmu;
  pthread_cond_t cv;
  pthread_t th;
  int running, stop;
  nb_lstate_t *head;
  nb_lstate_report_fn report;
  void *report_ud;
} wd = {.mu = PTHREAD_MUTEX_INITIALIZER, .rmu = PTHREAD_MUTEX_INITIALIZER};

static pthread_once_t wd_once = PTHREAD_ONCE_INIT;

/* Initializes the watchdog's condition variable on the monotonic clock;
 * returns nothing. */
static void wd_cv_init(void) {
  pthread_condattr_t a;
  pthread_condattr_init(&a);
  pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
  pthread_cond_init(&wd.cv, &a);
  pthread_condattr_destroy(&a);
}

/* In a forked child the watchdog thread does not exist: reset its state so
 * the next watched state starts a new one; returns nothing. */
static void wd_atfork_child(void) {
  pthread_mutex_init(&wd.mu, NULL);
  pthread_mutex_init(&wd.rmu, NULL);
  wd_cv_init();
  wd.running = 0;
  wd.stop = 0;
}

/* Runs once per process: the condition variable and the fork handler;
 * returns nothing. */
static void wd_once_init(void) {
  wd_cv_init();
  pthread_atfork(NULL, NULL, wd_atfork_child);
}

/* Writes an elapsed time as "250 ms" or "2.50 s" into buf; returns buf. */
static const char *elapsed_txt(char *buf, size_t len, uint64_t ns) {
  if (ns < 1000000000ull) snprintf(buf, len, "%.0f ms", ns / 1e6);
  else snprintf(buf, len, "%.2f s", ns / 1e9);
  return buf;
}

const char *nb_lstate_watch_text(const nb_lstate_watch_t *w, char *buf,
                                 size_t len) {
  char el[32], lim[32], nx[32], bud[32];
  const char *entry = w->entry && *w->entry ? w->entry : "an entry";
  elapsed_txt(el, sizeof el, w->elapsed_ns);
  time_txt(lim, sizeof lim, w->limit_ns);
  if (w->budget_ns) time_txt(bud, sizeof bud, w->budget_ns);
  switch (w->kind) {
  case NB_LSTATE_WATCH_OVER:
    time_txt(nx, sizeof nx, 2 * w->limit_ns);
    if (w->jit)
      snprintf(buf, len, "neuronbus: watchdog: neuron '%s' has been in %s "
               "for %s, past its watchdog of %s; JIT on, so it cannot be "
               "interrupted (compiled code checks no hook): it runs to its "
               "end, and its thread serves no other neuron until then (jit = false "
               "and a budget would have it stopped). Reported again at %s, "
               "then at each doubling, and when it returns",
               w->name, entry, el, lim, nx);
    else if (!w->budget_ns)
      snprintf(buf, len, "neuronbus: watchdog: neuron '%s' has been in %s "
               "for %s, past its watchdog of %s; JIT off and no budget, so "
               "nothing interrupts it: it runs to its end, and its thread "
               "serves no other neuron until then (a budget would have it "
               "stopped). Reported again at %s, then at each doubling, and "
               "when it returns", w->name, entry, el, lim, nx);
    else
      snprintf(buf, len, "neuronbus: watchdog: neuron '%s' has been in %s "
               "for %s, past its watchdog of %s; JIT off with a budget of "
               "%s, which stops Lua code, so this is one long call into C, "
               "which nothing interrupts: it runs to its end, and its thread "
               "serves no other neuron until then. Reported again at %s, then at "
               "each doubling, and when it returns",
               w->name, entry, el, lim, bud, nx);
    break;
  case NB_LSTATE_WATCH_STILL:
    snprintf(buf, len, "neuronbus: watchdog: neuron '%s' is still in %s "
             "after %s (%s)", w->name, entry, el,
             w->jit ? "JIT on: it cannot be interrupted"
             : !w->budget_ns ? "JIT off, no budget: nothing interrupts it"
                             : "JIT off, budget: a long call into C");
    break;
  case NB_LSTATE_WATCH_EXIT:
    time_txt(nx, sizeof nx, w->exit_ns);
    snprintf(buf, len, "neuronbus: watchdog: neuron '%s' has been in %s "
             "for %s, past its watchdog_exit of %s; only `neuronbus run` "
             "exits the process for it, so this host keeps waiting",
             w->name, entry, el, nx);
    break;
  default:
    snprintf(buf, len, "neuronbus: watchdog: neuron '%s' returned from %s "
             "after %s in all; its thread serves the other neurons again (a long "
             "entry is reported, not a fault)", w->name, entry, el);
    break;
  }
  return buf;
}

/* The default report: one line on stderr; returns nothing. */
static void wd_print(const nb_lstate_watch_t *w, void *ud) {
  (void)ud;
  char line[1024];
  fprintf(stderr, "%s\n", nb_lstate_watch_text(w, line, sizeof line));
  fflush(stderr);
}

/* Stores the entry's name for the watchdog (entry side, before the seq
 * bump that publishes the entry); returns nothing. */
static void entry_name_store(nb_lstate_t *S, const char *entry) {
  union {
    char c[NB__ENTRY_MAX];
    uint64_t w[NB__ENTRY_WORDS];
  } u;
  memset(&u, 0, sizeof u);
  if (entry) {
    size_t n = strnlen(entry, NB__ENTRY_MAX - 1);
    memcpy(u.c, entry, n);
  }
  /* Pairs with the watchdog's acquire fence: a name it reads is checked
   * against w_start read after it. */
  atomic_thread_fence(memory_order_release);
  for (int i = 0; i < NB__ENTRY_WORDS; i++)
    atomic_store_explicit(&S->w_entry[i], u.w[i], memory_order_relaxed);
}

/* Copies the entry's name into buf (NB__ENTRY_MAX bytes); returns buf. */
static char *entry_name_load(nb_lstate_t *S, char *buf) {
  uint64_t w[NB__ENTRY_WORDS];
  for (int i = 0; i < NB__ENTRY_WORDS; i++)
    w[i] = atomic_load_explicit(&S->w_entry[i], memory_order_relaxed);
  memcpy(buf, w, NB__ENTRY_MAX);
  buf[NB__ENTRY_MAX - 1] = 0;
  if (!buf[0]) snprintf(buf, NB__ENTRY_MAX, "an entry");
  return buf;
}

typedef struct {
  nb_lstate_watch_t w;
  char name[64];
  char entry[NB__ENTRY_MAX];
} wd_note_t;

#define WD_NOTES 32

/* Tokens of reported entries (under rmu). */
static uint64_t wd_tokens;

/* Adds a report of kind about S's followed entry to notes; returns the new
 * count. */
static int wd_note(wd_note_t *notes, int n, int kind, nb_lstate_t *S,
                   const char *entry, uint64_t elapsed) {
  if (n >= WD_NOTES) return n;
  wd_note_t *t = &notes[n];
  memset(t, 0, sizeof *t);
  memcpy(t->name, S->name, sizeof t->name);
  snprintf(t->entry, sizeof t->entry, "%s", entry);
  t->w.kind = kind;
  t->w.name = t->name;
  t->w.entry = t->entry;
  t->w.elapsed_ns = elapsed;
  t->w.limit_ns = S->watch_ns;
  t->w.exit_ns = S->exit_ns;
  t->w.budget_ns = S->budget_ns;
  t->w.jit = S->jit;
  t->w.token = S->w_token;
  return n + 1;
}

/* Checks S's running entry at now (under rmu and mu) and adds its due
 * reports to notes; returns the new count. */
static int wd_check(nb_lstate_t *S, uint64_t now, wd_note_t *notes, int n) {
  /* A consistent snapshot: seq, start and name of one entry, else skip. */
  uint64_t seq = atomic_load(&S->w_seq);
  uint64_t start = atomic_load(&S->w_start);
  if (!start || now <= start) return n;
  uint64_t elapsed = now - start;
  if (S->w_track == seq) {
    /* Followed since its first report. */
    if (atomic_load(&S->w_seq) != seq) return n;
    if (elapsed >= S->w_next_ns) {
      n = wd_note(notes, n, NB_LSTATE_WATCH_STILL, S,
                  entry_name_load(S, (char[NB__ENTRY_MAX]){0}), elapsed);
      while (S->w_next_ns <= elapsed) S->w_next_ns *= 2;
    }
  } else {
    if (elapsed < S->watch_ns) return n;
    char entry[NB__ENTRY_MAX];
    entry_name_load(S, entry);
    atomic_thread_fence(memory_order_acquire);
    if (atomic_load(&S->w_start) != start || atomic_load(&S->w_seq) != seq)
      return n;
    /* Claim it, then check it still runs: the entry side clears w_start
     * before it reads w_claim, so either it sees the claim (and reports
     * RETURNED after this report, under rmu) or this sees it gone. */
    atomic_store(&S->w_claim, seq);
    if (atomic_load(&S->w_start) != start) return n;
    S->w_track = seq;
    S->w_sent = seq;
    S->w_next_ns = 2 * S->watch_ns;
    while (S->w_next_ns <= elapsed) S->w_next_ns *= 2;
    S->w_exit_sent = 0;
    S->w_token = ++wd_tokens;
    atomic_fetch_add(&S->watchdog_overruns, 1);
    n = wd_note(notes, n, NB_LSTATE_WATCH_OVER, S, entry, elapsed);
  }
  if (S->exit_ns && !S->w_exit_sent && elapsed >= S->exit_ns) {
    S->w_exit_sent = 1;
    n = wd_note(notes, n, NB_LSTATE_WATCH_EXIT, S,
                entry_name_load(S, (char[NB__ENTRY_MAX]){0}), elapsed);
  }
  return n;
}

/* The watchdog thread: every period (a quarter of the smallest limit,
 * 1..100 ms) it checks each watched state's running entry and reports;
 * returns NULL when stopped. */
static void *wd_main(void *arg) {
  (void)arg;
  for (;;) {
    wd_note_t notes[WD_NOTES];
    int n = 0;
    pthread_mutex_lock(&wd.rmu);
    pthread_mutex_lock(&wd.mu);
    if (wd.stop) {
      pthread_mutex_unlock(&wd.mu);
      pthread_mutex_unlock(&wd.rmu);
      break;
    }
    uint64_t now = nb_clock_ns(), period = 100000000ull;
    for (nb_lstate_t *S = wd.head; S; S = S->w_next) {
      if (S->watch_ns / 4 < period) period = S->watch_ns / 4;
      n = wd_check(S, now, notes, n);
    }
    pthread_mutex_unlock(&wd.mu);
    if (period < 1000000ull) period = 1000000ull;
    /* Report under rmu only: an entry returning meanwhile waits for it. */
    nb_lstate_report_fn fn = wd.report ? wd.report : wd_print;
    for (int i = 0; i < n; i++) fn(&notes[i].w, wd.report_ud);
    pthread_mutex_unlock(&wd.rmu);
    pthread_mutex_lock(&wd.mu);
    if (!wd.stop) {
      struct timespec ts;
      clock_gettime(CLOCK_MONOTONIC, &ts);
      uint64_t ns = (uint64_t)ts.tv_nsec + period;
      ts.tv_sec += (time_t)(ns / 1000000000ull);
      ts.tv_nsec = (long)(ns % 1000000000ull);
      pthread_cond_timedwait(&wd.cv, &wd.mu, &ts);
    }
    int stop = wd.stop;
    pthread_mutex_unlock(&wd.mu);
    if (stop) break;
  }
  return NULL;
}

/* Entry side, when a claimed entry of S returned after elapsed: reports
 * RETURNED if its OVER went out; returns nothing. */
static void wd_returned(nb_lstate_t *S, uint64_t elapsed) {
  pthread_mutex_lock(&wd.rmu);
  if (S->w_sent == S->cur_seq) {
    wd_note_t t;
    char entry[NB__ENTRY_MAX];
    wd_note(&t, 0, NB_LSTATE_WATCH_RETURNED, S, entry_name_load(S, entry),
            elapsed);
    nb_lstate_report_fn fn = wd.report ? wd.report : wd_print;
    fn(&t.w, wd.report_ud);
  }
  pthread_mutex_unlock(&wd.rmu);
}

/* Adds S to the watched list, starting the thread if needed; returns 0 or
 * NB_ENOMEM when the thread cannot start. */
static int wd_add(nb_lstate_t *S) {
  pthread_once(&wd_once, wd_once_init);
  pthread_mutex_lock(&wd.mu);
  if (!wd.running) {
    wd.stop = 0;
    if (pthread_create(&wd.th, NULL, wd_main, NULL) != 0) {
      pthread_mutex_unlock(&wd.mu);
      return NB_ENOMEM;
    }
    wd.running = 1;
  }
  S->w_prev = NULL;
  S->w_next = wd.head;
  if (wd.head) wd.head->w_prev = S;
  wd.head = S;
  S->w_linked = 1;
  pthread_cond_signal(&wd.cv); /* a smaller limit shortens the period */
  pthread_mutex_unlock(&wd.mu);
  return 0;
}

/* Removes S from the watched list; returns nothing. */
static void wd_remove(nb_lstate_t *S) {
  if (!S->w_linked) return;
  pthread_mutex_lock(&wd.mu);
  if (S->w_prev) S->w_prev->w_next = S->w_next;
  else wd.head = S->w_next;
  if (S->w_next) S->w_next->w_prev = S->w_prev;
  S->w_linked = 0;
  pthread_mutex_unlock(&wd.mu);
}

nb_lstate_report_fn nb_lstate_watchdog_report(nb_lstate_report_fn fn,
                                              void *ud) {
  pthread_mutex_lock(&wd.rmu);
  nb_lstate_report_fn old = wd.report;
  wd.report = fn;
  wd.report_ud = ud;
  pthread_mutex_unlock(&wd.rmu);
  return old;
}

int nb_lstate_watchdog_stop(void) {
  pthread_once(&wd_once, wd_once_init);
  pthread_mutex_lock(&wd.mu);
  if (!wd.running) {
    pthread_mutex_unlock(&wd.mu);
    return 0;
  }
  wd.stop = 1;
  pthread_cond_signal(&wd.cv);
  pthread_t th = wd.th;
  pthread_mutex_unlock(&wd.mu);
  pthread_join(th, NULL);
  pthread_mutex_lock(&wd.mu);
  wd.running = 0;
  wd.stop = 0;
  pthread_mutex_unlock(&wd.mu);
  return 0;
}

/* ---- sandbox -------------------------------------------------------- */

/* Sandbox load/loadstring: returns what the real load returns for chunk,
 * always in text mode ("t": bytecode is refused) and with the sandbox
 * environment unless the agent passes its own env table. */
static int safe_load(lua_State *L) {
  lua_settop(L, 4);
  lua_pushvalue(L, lua_upvalueindex(1)); /* the real load */
  lua_pushvalue(L, 1);
  lua_pushvalue(L, 2);
  lua_pushliteral(L, "t");
  if (lua_isnil(L, 4)) lua_pushvalue(L, lua_upvalueindex(2));
  else lua_pushvalue(L, 4);
  lua_call(L, 4, LUA_MULTRET);
  return lua_gettop(L) - 4;
}

/* Sandbox require: returns the module for a name on the allow-list
 * (loaded by the real require), raises for any other name. */
static int safe_require(lua_State *L) {
  const char *name = luaL_checkstring(L, 1);
  lua_getfield(L, lua_upvalueindex(2), name);
  if (!lua_toboolean(L, -1))
    return luaL_error(L, "module '%s' is not available in the sandbox", name);
  lua_pop(L, 1);
  lua_pushvalue(L, lua_upvalueindex(1)); /* the real require */
  lua_pushvalue(L, 1);
  lua_call(L, 1, 1);
  return 1;
}

/* Sandbox collectgarbage: returns the real results for "collect", "count"
 * and "step"; raises for the options that retune or stop the collector,
 * which the host owns (a stopped collector would fill the cap). */
static int safe_gc(lua_State *L) {
  const char *opt = luaL_optstring(L, 1, "collect");
  if (strcmp(opt, "collect") && strcmp(opt, "count") && strcmp(opt, "step"))
    return luaL_error(L, "collectgarbage(\"%s\") is not allowed in the sandbox",
                      opt);
  int n = lua_gettop(L);
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);
  lua_call(L, n, LUA_MULTRET);
  return lua_gettop(L);
}

/* Trusted loader exported to runtime Lua code as
 * require("neuronbus.sandbox").loadfile(path): returns the chunk (text only
 * and with the sandbox env when sandboxed) or nil and the message. */
static int tr_loadfile(lua_State *L) {
  nb_lstate_t *S = nb_lstate_from_L(L);
  const char *path = luaL_checkstring(L, 1);
  int sb = S && S->sandbox;
  if (luaL_loadfilex(L, path, sb ? "t" : "bt") != 0) {
    lua_pushnil(L);
    lua_insert(L, -2);
    return 2;
  }
  if (sb) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, S->env_ref);
    lua_setfenv(L, -2);
  }
  return 1;
}

/* Trusted loader: require("neuronbus.sandbox").loadstring(src, chunkname);
 * returns the chunk or nil and the message, like loadfile above. */
static int tr_loadstring(lua_State *L) {
  nb_lstate_t *S = nb_lstate_from_L(L);
  size_t len;
  const char *src = luaL_checklstring(L, 1, &len);
  const char *cn = luaL_optstring(L, 2, src);
  int sb = S && S->sandbox;
  if (luaL_loadbufferx(L, src, len, cn, sb ? "t" : "bt") != 0) {
    lua_pushnil(L);
    lua_insert(L, -2);
    return 2;
  }
  if (sb) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, S->env_ref);
    lua_setfenv(L, -2);
  }
  return 1;
}

/* Copies the named fields of the table at src into the table at dst (both
 * absolute indexes), skipping absent ones; returns nothing. */
static void copy_fields(lua_State *L, int dst, int src,
                        const char *const *names) {
  for (; *names; names++) {
    lua_getfield(L, src, *names);
    if (lua_isnil(L, -1)) lua_pop(L, 1);
    else lua_setfield(L, dst, *names);
  }
}

/* Sets env[name] to a shallow copy of global library name minus the
 * fields in deny (NULL-terminated or NULL); returns nothing. */
static void copy_lib(lua_State *L, int env, const char *name,
                     const char *const *deny) {
  lua_getglobal(L, name);
  if (!lua_istable(L, -1)) {
    lua_pop(L, 1);
    return;
  }
  int src = lua_gettop(L);
  lua_newtable(L);
  int dst = src + 1;
  lua_pushnil(L);
  while (lua_next(L, src)) {
    int denied = 0;
    if (deny && lua_type(L, -2) == LUA_TSTRING)
      for (const char *const *d = deny; *d; d++)
        if (!strcmp(lua_tostring(L, -2), *d)) denied = 1;
    if (denied) {
      lua_pop(L, 1);
      continue;
    }
    lua_pushvalue(L, -2);
    lua_insert(L, -2);
    lua_rawset(L, dst);
  }
  lua_setfield(L, env, name);
  lua_pop(L, 1);
}

/* Builds the agent's environment in a sandboxed state and locks what all
 * code in the state shares (string.dump, the string metatable); leaves the
 * env on the stack. */
static void sandbox_build(lua_State *L, const char *const *allow) {
  static const char *const base[] = {
      "assert", "error", "ipairs", "next", "pairs", "pcall", "print",
      "rawequal", "rawget", "rawset", "rawlen", "select", "tonumber",
      "tostring", "type", "unpack", "xpcall", "setmetatable",
      "getmetatable", "_VERSION", NULL};
  static const char *const os_ok[] = {"clock", "date", "time", "difftime",
                                      NULL};
  static const char *const no_dump[] = {"dump", NULL};
  lua_newtable(L);
  int env = lua_gettop(L);
  copy_fields(L, env, LUA_GLOBALSINDEX, base);
  lua_pushvalue(L, env);
  lua_setfield(L, env, "_G");
  copy_lib(L, env, "string", no_dump);
  copy_lib(L, env, "table", NULL);
  copy_lib(L, env, "math", NULL);
  copy_lib(L, env, "coroutine", NULL);
  copy_lib(L, env, "bit", NULL);
  lua_newtable(L);
  lua_getglobal(L, "os");
  copy_fields(L, lua_gettop(L) - 1, lua_gettop(L), os_ok);
  lua_pop(L, 1);
  lua_setfield(L, env, "os");

  lua_getglobal(L, "load");
  lua_pushvalue(L, env);
  lua_pushcclosure(L, safe_load, 2);
  lua_pushvalue(L, -1);
  lua_setfield(L, env, "load");
  lua_setfield(L, env, "loadstring");

  lua_getglobal(L, "require");
  lua_newtable(L);
  for (; allow && *allow; allow++) {
    lua_pushboolean(L, 1);
    lua_setfield(L, -2, *allow);
  }
  lua_pushcclosure(L, safe_require, 2);
  lua_setfield(L, env, "require");

  lua_getglobal(L, "collectgarbage");
  lua_pushcclosure(L, safe_gc, 1);
  lua_setfield(L, env, "collectgarbage");

  /* Every string shares one metatable whose __index is the real string
   * table: drop dump from it and hide the metatable from getmetatable. */
  lua_getglobal(L, "string");
  lua_pushnil(L);
  lua_setfield(L, -2, "dump");
  lua_pop(L, 1);
  lua_pushliteral(L, "");
  if (lua_getmetatable(L, -1)) {
    lua_pushliteral(L, "string");
    lua_setfield(L, -2, "__metatable");
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
}

typedef struct {
  nb_lstate_t *S;
  const char *const *allow;
} setup_t;

/* Opens the libraries, keeps the message handler and the agent env in
 * the registry and publishes the trusted "neuronbus.sandbox" module;
 * returns 0 (runs under lua_cpcall). */
static int state_setup(lua_State *L) {
  setup_t *u = lua_touserdata(L, 1);
  nb_lstate_t *S = u->S;
  luaL_openlibs(L);
  S->traces_ref = nb__lstate_traces_attach(L);
  lua_pushliteral(L, "not enough memory (compiled code went past the "
                     "state's limit)");
  S->over_msg_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  /* Before the sandbox copies it, and before print looks it up. */
  luaL_loadbuffer(L, tostring_wrap, sizeof tostring_wrap - 1,
                  "=neuronbus.tostring");
  lua_getglobal(L, "tostring");
  lua_call(L, 1, 1);
  lua_setglobal(L, "tostring");
  char t[32];
  if (S->budget_ns)
    snprintf(S->limit_msg, sizeof S->limit_msg, "budget of %s exceeded",
             time_txt(t, sizeof t, S->budget_ns));
  else if (S->sandbox && S->watch_ns)
    snprintf(S->limit_msg, sizeof S->limit_msg,
             "watchdog of %s exceeded in string pattern matching",
             time_txt(t, sizeof t, S->watch_ns));
  if (S->limit_msg[0]) {
    /* Made once here: raising it allocates nothing, even at the cap. */
    lua_pushstring(L, S->limit_msg);
    S->budget_msg_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  if (S->budget_ns || S->sandbox) {
    /* LuaJIT's pattern functions run a match to its end inside C, where
     * no hook fires; these count their steps and check the limit. The
     * string metatable's __index is this same table, so s:find is
     * covered, and the sandbox copies the table after this. */
    lua_getglobal(L, "string");
    nb__lpattern_register(L, -1);
    lua_pop(L, 1);
  }
  if (S->budget_ns) {
    /* Replace the global pcall/xpcall before the sandbox copies them. */
    luaL_loadbuffer(L, pcall_wrap, sizeof pcall_wrap - 1,
                    "=neuronbus.budget");
    lua_pushcfunction(L, budget_check);
    lua_getglobal(L, "pcall");
    lua_getglobal(L, "xpcall");
    lua_call(L, 3, 2);
    lua_setglobal(L, "xpcall");
    lua_setglobal(L, "pcall");
  }
  lua_pushcfunction(L, nb__msgh);
  S->msgh_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  if (S->sandbox) sandbox_build(L, u->allow);
  else lua_pushvalue(L, LUA_GLOBALSINDEX);
  int env = lua_gettop(L);
  lua_pushvalue(L, env);
  S->env_ref = luaL_ref(L, LUA_REGISTRYINDEX);

  /* Runtime Lua code (trusted, real globals) loads agents through this. */
  lua_getglobal(L, "package");
  lua_getfield(L, -1, "loaded");
  lua_newtable(L);
  lua_pushboolean(L, S->sandbox);
  lua_setfield(L, -2, "sandboxed");
  lua_pushvalue(L, env);
  lua_setfield(L, -2, "env");
  lua_pushcfunction(L, tr_loadfile);
  lua_setfield(L, -2, "loadfile");
  lua_pushcfunction(L, tr_loadstring);
  lua_setfield(L, -2, "loadstring");
  lua_setfield(L, -2, "neuronbus.sandbox");
  lua_pop(L, 3);
  return 0;
}

/* ---- life cycle ----------------------------------------------------- */

int nb_lstate_new(nb_lstate_t **out, const nb_lstate_opts_t *o) {
  static const nb_lstate_opts_t defaults = {.jit = 1};
  if (!out) return NB_EINVAL;
  *out = NULL;
  if (!o) o = &defaults;
  nb_lstate_t *S = calloc(1, sizeof *S);
  if (!S) return NB_ENOMEM;
  snprintf(S->name, sizeof S->name, "%s", o->name && *o->name ? o->name : "?");
  S->limit = o->memory_limit;
  S->budget_ns = o->budget_ns;
  S->jit = o->jit && !o->budget_ns;
  S->sandbox = o->sandbox != 0;
  S->msgh_ref = S->env_ref = S->budget_msg_ref = S->over_msg_ref = LUA_NOREF;
  S->traces_ref = LUA_NOREF;
  if (o->watchdog_ns != NB_LSTATE_WATCHDOG_OFF) {
    S->watch_ns = o->watchdog_ns ? o->watchdog_ns : NB_LSTATE_WATCHDOG_DEFAULT_NS;
    if (S->budget_ns && S->watch_ns < 2 * S->budget_ns)
      S->watch_ns = 2 * S->budget_ns;
    if (o->exit_ns)
      S->exit_ns = o->exit_ns < S->watch_ns ? S->watch_ns : o->exit_ns;
  }
  S->L = lua_newstate(capped_alloc, S);
  if (!S->L) {
    free(S);
    return NB_ENOMEM;
  }
  lua_atpanic(S->L, panic);
  setup_t u = {S, o->require_allow};
  if (lua_cpcall(S->L, state_setup, &u) != 0) {
    lua_close(S->L);
    free(S);
    return NB_ENOMEM;
  }
  if (!S->jit) luaJIT_setmode(S->L, 0, LUAJIT_MODE_ENGINE | LUAJIT_MODE_OFF);
  if (S->budget_ns) lua_sethook(S->L, budget_hook, LUA_MASKCOUNT, NB_LSTATE_HOOK_COUNT);
  if (S->watch_ns && wd_add(S) != 0) {
    lua_close(S->L);
    free(S);
    return NB_ENOMEM;
  }
  *out = S;
  return 0;
}

lua_State *nb_lstate_L(nb_lstate_t *S) { return S->L; }

void nb_lstate_gc_hold(nb_lstate_t *S) {
  lua_gc(S->L, LUA_GCSTOP, 0);
  S->gc_hold_until = S->bytes + NB_LSTATE_GC_HOLD_MAX;
}

void nb_lstate_gc_release(nb_lstate_t *S) {
  if (!S->gc_hold_until) return;
  S->gc_hold_until = 0;
  lua_gc(S->L, LUA_GCRESTART, 0);
}

void nb_lstate_flush_jit(nb_lstate_t *S) {
  nb__lstate_traces_flush(S->L, S->traces_ref);
}

const char *nb_lstate_name(const nb_lstate_t *S) { return S->name; }

nb_lstate_stats_t *nb_lstate_stats(const nb_lstate_t *S,
                                   nb_lstate_stats_t *out) {
  nb_lstate_t *M = (nb_lstate_t *)S; /* atomics need a non-const object */
  memset(out, 0, sizeof *out);
  out->bytes = STAT_GET(M->bytes);
  out->peak = STAT_GET(M->peak);
  out->limit = S->limit;
  out->entries = STAT_GET(M->entries);
  out->mem_errors = STAT_GET(M->mem_errors);
  out->refused = STAT_GET(M->refused);
  out->budget_overruns = STAT_GET(M->budget_overruns);
  out->watchdog_overruns = atomic_load(&M->watchdog_overruns);
  out->jit = S->jit;
  out->sandbox = S->sandbox;
  return out;
}

size_t nb_lstate_close(nb_lstate_t *S) {
  if (!S) return 0;
  wd_remove(S);
  /* Finalizers run inside lua_close: no cap, no budget, no hook. */
  S->enforce = 0;
  S->deadline = 0;
  S->c_deadline = 0;
  lua_sethook(S->L, NULL, 0, 0);
  lua_close(S->L);
  size_t left = S->bytes;
  free(S);
  return left;
}

/* ---- C stack depth -------------------------------------------------------
 *
 * Lua code can recurse through C without LuaJIT counting it (a string.gsub
 * callback calling gsub, nested coroutine.wrap, a __tostring calling
 * tostring): the thread's C stack would run out and the process die with
 * SIGSEGV. Such recursion allocates as it goes (strings, coroutines,
 * stack growth), so the state's allocator checks how deep the thread's C
 * stack is: within CS_MARGIN of its end, agent code's allocations are
 * refused. LuaJIT then raises its out-of-memory error, which unwinds every
 * C frame the proper way; the entry fails with NB_ECSTACK (a fault for the
 * isolation policy) and the state stays usable. */

#define CS_MARGIN (512u << 10) /* room kept for unwinding and the handler */


/* Returns the lowest stack address agent code may allocate at on this
 * thread (its stack's low end plus CS_MARGIN), or 0 when it cannot be
 * known (an unlimited stack). */
static uintptr_t cs_limit(void) {
  if (cs_ready) return cs_floor;
  cs_ready = -1;
  pthread_attr_t at;
  void *addr = NULL;
  size_t size = 0;
  if (pthread_getattr_np(pthread_self(), &at) != 0) return 0;
  pthread_attr_getstack(&at, &addr, &size);
  pthread_attr_destroy(&at);
  if (!addr || size <= 2 * CS_MARGIN || size > ((size_t)1 << 32)) return 0;
  cs_floor = (uintptr_t)addr + CS_MARGIN;
  cs_ready = 1;
  return cs_floor;
}

/* ---- entries -------------------------------------------------------- */

/* Arms the cap, the budget and the watchdog stamp (with the entry's name)
 * for an outermost entry; returns nothing. */
static void enter(nb_lstate_t *S, const char *entry) {
  uint64_t now = nb_clock_ns();
  STAT_ADD(S->entries, 1);
  S->mem_hit = 0;
  S->cstack_hit = 0;
  S->deferred = DEFER_NONE;
  cs_limit(); /* this thread's stack bounds, once */
  S->budget_hit = 0;
  S->enforce = S->limit != 0;
  if (S->budget_ns) {
    /* Trusted code may have replaced the hook (debug.sethook): restore. */
    if (lua_gethook(S->L) != budget_hook || lua_gethookcount(S->L) != NB_LSTATE_HOOK_COUNT)
      lua_sethook(S->L, budget_hook, LUA_MASKCOUNT, NB_LSTATE_HOOK_COUNT);
    S->deadline = now + S->budget_ns;
  }
  S->c_deadline = S->budget_ns ? S->deadline
                  : S->sandbox && S->watch_ns ? now + S->watch_ns : 0;
  if (S->watch_ns) {
    entry_name_store(S, entry);
    S->cur_seq = atomic_fetch_add(&S->w_seq, 1) + 1;
    S->cur_start = now ? now : 1;
    atomic_store(&S->w_start, S->cur_start);
  }
}

/* Disarms what enter armed; returns nothing. */
static void entry_leave(nb_lstate_t *S) {
  S->enforce = 0;
  S->deadline = 0;
  S->c_deadline = 0;
  if (S->escalated) {
    S->escalated = 0;
    lua_sethook(S->L, budget_hook, LUA_MASKCOUNT, NB_LSTATE_HOOK_COUNT);
  }
  /* Still pending: the entry returned before its next instruction. It
   * stays pending for classify; enter clears it. */
  if (S->deferred == DEFER_PENDING) defer_disarm(S);
  if (S->watch_ns) {
    atomic_store(&S->w_start, 0);
    /* Claimed by the watchdog (see wd_check): it reported this entry. */
    if (atomic_load(&S->w_claim) == S->cur_seq)
      wd_returned(S, nb_clock_ns() - S->cur_start);
  }
}

/* Returns 1 when the first line of msg is LuaJIT's memory error, also when
 * it came back through coroutine.wrap or error(e) with a position prefix. */
static int is_mem_msg(const char *msg) {
  if (!msg) return 0;
  const char *hit = strstr(msg, "not enough memory");
  const char *nl = strchr(msg, '\n');
  return hit && (!nl || hit < nl);
}

/* Turns a failed or overrun entry into its code and message, and cuts the
 * stack below base (the handler slot: the error value or the results go
 * too); returns the nb_err_t. */
static int classify(nb_lstate_t *S, int status, int base, char *err,
                    size_t errlen) {
  lua_State *L = S->L;
  char a[32], b[32];
  const char *msg = status ? lua_tostring(L, -1) : NULL;
  int code;
  int outer = S->depth == 0; /* count each failed entry once */
  /* A refusal still pending fails the entry even when it returned. */
  int failed = status != 0 || (outer && S->deferred == DEFER_PENDING);
  if (S->cstack_hit && failed) {
    S->cstack_hit = 0;
    code = errf(err, errlen, NB_ECSTACK, "C stack overflow: the agent's "
                "code recursed through C functions (string.gsub or "
                "string.find callbacks, coroutine.wrap, metamethods...) "
                "until the thread's stack was nearly used up%s%s",
                msg && !is_mem_msg(msg) ? "; the error it raised: " : "",
                msg && !is_mem_msg(msg) ? msg : "");
  } else if (S->budget_hit) {
    STAT_ADD(S->budget_overruns, outer);
    if (msg && strstr(msg, S->limit_msg))
      code = errf(err, errlen, NB_EBUDGET, "%s", msg);
    else /* agent code replaced the budget error on its way out */
      code = errf(err, errlen, NB_EBUDGET, "%s%s%s", S->limit_msg,
                  msg ? ": " : "", msg ? msg : "");
  } else if (S->mem_hit && S->deferred &&
             (!status || status == LUA_ERRMEM || status == LUA_ERRERR ||
              is_mem_msg(msg))) {
    STAT_ADD(S->mem_errors, outer);
    code = errf(err, errlen, NB_EMEMLIMIT,
                "memory limit %s exceeded (%.1f MB in use: compiled code "
                "went past it and was stopped at its next interpreted "
                "instruction)",
                size_txt(a, sizeof a, S->limit), S->bytes / 1048576.0);
  } else if (S->mem_hit && (status == LUA_ERRMEM || status == LUA_ERRERR ||
                             is_mem_msg(msg))) {
    STAT_ADD(S->mem_errors, outer);
    code = errf(err, errlen, NB_EMEMLIMIT,
                    "memory limit %s exceeded (%.1f MB in use, a block of "
                    "%s refused)",
                    size_txt(a, sizeof a, S->limit), S->bytes / 1048576.0,
                    size_txt(b, sizeof b, S->mem_ask));
  } else if (status == LUA_ERRMEM) {
    code = errf(err, errlen, NB_ENOMEM,
                    "out of memory (the process, not the state's cap)");
  } else if (status == LUA_ERRERR) {
    code = errf(err, errlen, NB_EAGENT,
                "error in error handling: the error could not be turned "
                "into a message (its object's __tostring raised or "
                "recursed, or the Lua stack was full when it was raised)");
  } else {
    code = errf(err, errlen, NB_EAGENT, "%s",
                    msg ? msg : "(error object is not a string)");
  }
  lua_settop(L, base - 1);
  if (code == NB_EMEMLIMIT || (S->limit && S->bytes > S->limit / 2)) {
    /* LuaJIT does not collect before failing an allocation, and an entry
     * cut short (memory, budget, error) often leaves its garbage filling
     * much of the cap. Collect it now (host work, no cap) so the next
     * entry starts from the live heap. */
    int e = S->enforce;
    S->enforce = 0;
    lua_gc(L, LUA_GCCOLLECT, 0);
    S->enforce = e;
  }
  if (outer) S->deferred = DEFER_NONE; /* reported: later work starts clean */
  return code;
}

int nb_lstate_call(nb_lstate_t *S, int nargs, int nresults, char *err,
                   size_t errlen) {
  return nb_lstate_call_in(S, NULL, nargs, nresults, err, errlen);
}

int nb_lstate_call_in(nb_lstate_t *S, const char *entry, int nargs,
                      int nresults, char *err, size_t errlen) {
  lua_State *L = S->L;
  int base = lua_gettop(L) - nargs; /* the function */
  /* From the registry: lua_pushcfunction would allocate a closure. */
  lua_rawgeti(L, LUA_REGISTRYINDEX, S->msgh_ref);
  lua_insert(L, base);
  int outer = S->depth++ == 0;
  if (outer) enter(S, entry);
  int status = lua_pcall(L, nargs, nresults, base);
  if (outer) entry_leave(S);
  S->depth--;
  if (status == 0 && !S->budget_hit &&
      !(outer && S->deferred == DEFER_PENDING)) {
    lua_remove(L, base);
    if (err && errlen) err[0] = 0;
    return 0;
  }
  /* The handler sits at base: drop it with the rest. */
  return classify(S, status, base, err, errlen);
}

int nb_lstate_cpcall(nb_lstate_t *S, lua_CFunction fn, void *ud, char *err,
                     size_t errlen) {
  int e = S->enforce;
  S->enforce = 0;
  int status = lua_cpcall(S->L, fn, ud);
  S->enforce = e;
  if (status == 0) {
    if (err && errlen) err[0] = 0;
    return 0;
  }
  const char *msg = lua_tostring(S->L, -1);
  int code = errf(err, errlen, status == LUA_ERRMEM ? NB_ENOMEM : NB_EAGENT,
                      "%s", msg ? msg : "(error object is not a string)");
  lua_pop(S->L, 1);
  return code;
}

int nb_lstate_push_env(nb_lstate_t *S) {
  lua_rawgeti(S->L, LUA_REGISTRYINDEX, S->env_ref);
  return 0;
}

/* Maps a failed load of S (status from lua_load, the message on the
 * stack, popped) to an nb_err_t with err set: the memory cap's refusal
 * while `doing`, plain out of memory, or msg as an agent error. */
static int load_failed(nb_lstate_t *S, int status, const char *doing,
                       char *err, size_t errlen) {
  lua_State *L = S->L;
  const char *msg = lua_tostring(L, -1);
  char a[32];
  int code;
  if (status == LUA_ERRMEM && S->mem_hit) {
    STAT_ADD(S->mem_errors, 1);
    code = errf(err, errlen, NB_EMEMLIMIT, "memory limit %s exceeded while %s",
                size_txt(a, sizeof a, S->limit), doing);
  } else if (status == LUA_ERRMEM) {
    code = errf(err, errlen, NB_ENOMEM, "out of memory");
  } else {
    code = errf(err, errlen, NB_EAGENT, "%s", msg ? msg : "load failed");
  }
  lua_pop(L, 1);
  return code;
}

int nb_lstate_load_compiled(nb_lstate_t *S, const char *bc, size_t len,
                            const char *chunkname, char *err, size_t errlen) {
  int e = S->enforce;
  S->mem_hit = 0;
  S->enforce = S->limit != 0;
  int status = luaL_loadbufferx(S->L, bc, len, chunkname, "b");
  S->enforce = e;
  if (status == 0) return 0;
  return load_failed(S, status, "loading the new version", err, errlen);
}

int nb_lstate_load_agent(nb_lstate_t *S, const char *path_or_source,
                         int is_source, char *err, size_t errlen) {
  lua_State *L = S->L;
  if (!path_or_source) return errf(err, errlen, NB_EINVAL, "no agent given");
  const char *mode = S->sandbox ? "t" : "bt";
  /* Compiling agent text is agent work: under the cap. */
  int e = S->enforce;
  S->mem_hit = 0;
  S->enforce = S->limit != 0;
  int status;
  if (is_source) {
    char cn[80];
    snprintf(cn, sizeof cn, "=%s", S->name);
    status = luaL_loadbufferx(L, path_or_source, strlen(path_or_source), cn, mode);
  } else {
    status = luaL_loadfilex(L, path_or_source, mode);
  }
  S->enforce = e;
  if (status != 0) {
    const char *msg = lua_tostring(L, -1);
    int code;
    if (status == LUA_ERRFILE) {
      code = errf(err, errlen, NB_EIO, "%s", msg ? msg : "cannot read");
      lua_pop(L, 1);
    } else if (status != LUA_ERRMEM && msg && strstr(msg, "wrong mode")) {
      code = errf(err, errlen, NB_EAGENT,
                      "%s: bytecode is refused in a sandboxed state (text only)",
                      is_source ? S->name : path_or_source);
      lua_pop(L, 1);
    } else {
      code = load_failed(S, status, "compiling the agent", err, errlen);
    }
    if (status == LUA_ERRMEM) lua_gc(L, LUA_GCCOLLECT, 0); /* the parser's garbage */
    return code;
  }
  if (S->sandbox) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, S->env_ref);
    lua_setfenv(L, -2);
  }
  return nb_lstate_call_in(S, "the script's top level", 0, 1, err, errlen);
}
