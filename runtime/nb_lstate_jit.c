/* nb_lstate_jit.c: tells the state allocator whether LuaJIT's compiled
 * code (a trace) asked for the block it is about to refuse.
 *
 * Why it matters: a trace keeps the Lua stack base in a register and
 * calls allocating helpers (string and table creation, buffer growth)
 * without storing it back in the lua_State. When such a helper gets NULL,
 * LuaJIT's out-of-memory path (lj_err_mem in 2.1-20230119, the version
 * Debian 12 ships) computes the stack top from that stale base: it reads
 * whatever now lies in an old frame's slot as a function prototype and
 * the process dies with SIGSEGV. Later LuaJIT reloads the base first; we
 * cannot rely on that. The allocator must therefore never refuse a block
 * to compiled code; it grants it and stops the entry at the next
 * interpreted instruction instead (see capped_alloc in nb_lstate.c).
 *
 * How it knows: trace machine code lives in anonymous executable memory
 * that belongs to no loaded object, and LuaJIT registers unwind tables
 * for it (it unwinds through traces itself). Walking the C stack up from
 * the allocator, the first frame outside libluajit that belongs to no
 * loaded object at all is a trace; a frame of this program first means
 * the request came from the interpreter or a C function it called, where
 * a refusal raises the error properly. */
#include "nb_lstate_internal.h"

#include <dlfcn.h>
#include <stdatomic.h>
#include <stdint.h>
#include <unwind.h>

/* Frames looked at before giving up (the answer is then "not a trace",
 * the behaviour LuaJIT's interpreter paths need). Between the allocator
 * and a trace there are a handful of LuaJIT frames. */
#define WALK_MAX 48

typedef struct {
  const void *own;  /* load base of the object holding this code */
  int left_own;     /* a frame outside it has been seen */
  int n;
  int verdict;      /* 1 trace, 0 not */
} walk_t;

/* _Unwind_Backtrace callback: classifies one frame; returns
 * _URC_NO_REASON to go on, anything else to stop the walk. */
static _Unwind_Reason_Code walk_frame(struct _Unwind_Context *ctx, void *arg) {
  walk_t *w = arg;
  uintptr_t ip = _Unwind_GetIP(ctx);
  if (!ip || ++w->n > WALK_MAX) return _URC_END_OF_STACK;
  Dl_info info;
  if (!dladdr((void *)(ip - 1), &info)) {
    w->verdict = 1;
    return _URC_END_OF_STACK;
  }
  if (info.dli_fbase == w->own) {
    if (w->left_own) return _URC_END_OF_STACK; /* back in our own code */
    return _URC_NO_REASON;                     /* the allocator itself */
  }
  w->left_own = 1;
  return _URC_NO_REASON;
}

int nb__lstate_in_trace(void) {
  /* Every thread finds the same base: a relaxed race to store it is
   * harmless, but it must be atomic to be a defined one. */
  static _Atomic(const void *) own_base;
  const void *own = atomic_load_explicit(&own_base, memory_order_relaxed);
  if (!own) {
    Dl_info info;
    if (!dladdr((void *)&nb__lstate_in_trace, &info)) return 0;
    own = info.dli_fbase;
    atomic_store_explicit(&own_base, own, memory_order_relaxed);
  }
  walk_t w = {own, 0, 0, 0};
  _Unwind_Backtrace(walk_frame, &w);
  return w.verdict;
}
