/* nb_lstate_traces.c: the record of the JIT traces a state compiled, so a
 * hot reload can flush them one by one.
 *
 * Why: a trace keeps the prototypes it was recorded from alive, and any
 * trace may hold a replaced agent version (one rooted in a library
 * function goes on into the agent's code when it returns there), so a
 * reload must flush every trace of the state. LuaJIT's whole-engine flush
 * also frees all machine code and its unwind registrations, and the next
 * trace maps and registers a new area: that was about half the cost of a
 * reload's swap. Flushing each root trace instead (luaJIT_setmode with
 * LUAJIT_MODE_TRACE) unlinks it from its bytecode; it and its side traces
 * are then garbage the collector frees, with what only they referenced,
 * and the machine code area is reused.
 *
 * How: a handler attached to the state's "trace" VM events (jit.attach,
 * as jit.v and jit.dump use) notes the number of every trace that
 * compiles; LuaJIT's own whole flush (its limits reached, or a caller's)
 * empties the record. Where the record may be incomplete (it overflowed,
 * or someone attached another handler in its place) the flush is the
 * whole-engine one. The handler runs only while a trace is compiled,
 * never on a hot path. */
#include "nb_lstate_internal.h"

#include <string.h>

#include <lauxlib.h>
#include <luajit.h>

/* Traces noted between two flushes (LuaJIT's maxtrace is 1000 by
 * default); past it the record overflows. */
#define TRACES_MAX 1024

/* The record: the handler's upvalue. */
typedef struct traces_s {
  int n, overflow;
  int tr[TRACES_MAX];
} traces_t;

/* jit.attach handler of "trace" events (what, traceno, ...): notes a
 * trace that compiled ("stop"), empties the record when LuaJIT flushed
 * everything ("flush"); returns 0. */
static int on_trace(lua_State *L) {
  traces_t *t = lua_touserdata(L, lua_upvalueindex(1));
  size_t len = 0;
  const char *what = lua_tolstring(L, 1, &len);
  if (!what) return 0;
  if (len == 4 && memcmp(what, "stop", 4) == 0) {
    if (t->n < TRACES_MAX) t->tr[t->n++] = (int)lua_tointeger(L, 2);
    else t->overflow = 1;
  } else if (len == 5 && memcmp(what, "flush", 5) == 0) {
    t->n = t->overflow = 0;
  }
  return 0;
}

int nb__lstate_traces_attach(lua_State *L) {
  /* LuaJIT makes each event's name as a string when it sends the event,
   * in the middle of compiling a trace: kept alive here, they are found
   * interned and never allocated there (where a state at its memory cap
   * would refuse the block). */
  static const char *const names[] = {"start", "stop", "abort", "flush",
                                      "trace"};
  lua_createtable(L, 5, 0);
  for (int i = 0; i < 5; i++) {
    lua_pushstring(L, names[i]);
    lua_rawseti(L, -2, i + 1);
  }
  lua_setfield(L, LUA_REGISTRYINDEX, "neuronbus.trace_events");
  lua_getfield(L, LUA_REGISTRYINDEX, "_LOADED");
  lua_getfield(L, -1, "jit");
  lua_getfield(L, -1, "attach");
  if (!lua_isfunction(L, -1)) {
    lua_pop(L, 3);
    return LUA_NOREF;
  }
  traces_t *t = lua_newuserdata(L, sizeof *t);
  memset(t, 0, sizeof *t);
  lua_pushcclosure(L, on_trace, 1);
  lua_pushvalue(L, -1);
  int ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pushliteral(L, "trace");
  lua_call(L, 2, 0); /* jit.attach(handler, "trace") */
  lua_pop(L, 2);
  return ref;
}

/* Returns 1 when the handler at the top of L's stack is still attached
 * to the VM events (LuaJIT keeps them in the registry's "_VMEVENTS"
 * table, one handler per event), else 0; leaves the stack as it was. */
static int attached(lua_State *L) {
  int found = 0;
  lua_getfield(L, LUA_REGISTRYINDEX, "_VMEVENTS");
  if (lua_istable(L, -1)) {
    lua_pushnil(L);
    while (lua_next(L, -2)) {
      if (lua_rawequal(L, -1, -4)) found = 1;
      lua_pop(L, 1);
    }
  }
  lua_pop(L, 1);
  return found;
}

void nb__lstate_traces_flush(lua_State *L, int ref) {
  traces_t *t = NULL;
  if (ref != LUA_NOREF) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
    if (attached(L)) {
      lua_getupvalue(L, -1, 1);
      t = lua_touserdata(L, -1);
      lua_pop(L, 1);
    }
    lua_pop(L, 1);
  }
  if (!t || t->overflow) {
    /* Empties the record through its "flush" event. */
    luaJIT_setmode(L, 0, LUAJIT_MODE_ENGINE | LUAJIT_MODE_FLUSH);
    if (t) t->n = t->overflow = 0;
    return;
  }
  /* Side traces and numbers reused since are passed over by LuaJIT;
   * a root flushed twice is unlinked once. */
  for (int i = 0; i < t->n; i++)
    luaJIT_setmode(L, t->tr[i], LUAJIT_MODE_TRACE | LUAJIT_MODE_FLUSH);
  t->n = 0;
}
