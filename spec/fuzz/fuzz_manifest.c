/* fuzz_manifest.c: libFuzzer target for the manifest loader: the Lua
 * validator (lua/neuronbus/manifest) and the C side that builds a
 * topology from what it accepts (runtime/nb_rt_topo.c), run as
 * `neuronbus check` runs them (the dry run: agents boot, synapses and
 * filters connect, nothing runs), in process, in one manifest state kept
 * across inputs (nb__checker_t), whose Lua lines count as coverage.
 *
 * Build: clang -fsanitize=fuzzer,address,undefined (make fuzz); cc with
 * spec/fuzz/replay.c in make test (spec/e2e/fuzz_smoke.sh). Run from the
 * repository's top: the agent scripts are spec/fixtures/runtime's.
 * Input: byte 0 picks the form of the rest.
 *   - 0: the rest is the manifest source itself (its syntax errors, its
 *     run-time errors, what it returns). A source that could run long
 *     (a loop, a function, a string library call) is skipped: bounding
 *     those is the time and memory limits' job (spec/e2e/manifest_bounds.sh),
 *     and the fuzzer would only measure them.
 *   - else: the rest drives a small grammar that writes a table literal
 *     of the manifest's schema (its keys, values of the kinds each key
 *     takes, names shared by neurons and synapses, agent scripts that
 *     exist, and now and then a wrong type, an unknown key or bytes of
 *     the input), so a mutation changes a key or a value, not the syntax.
 * Checks, whatever the manifest:
 *   - no crash, no sanitizer report, no leak (make fuzz runs libFuzzer
 *     with -detect_leaks=0, the kept state grows between inputs; the
 *     replayer closes the checker and checks for leaks at exit);
 *   - the result is "ok" (no text, no problem) or problems with a text:
 *     non-empty, valid UTF-8, no empty line, counted as at least one;
 *   - the validator never fails itself: no message comes from an error
 *     raised inside it (a traceback line names lua/neuronbus/manifest/ or
 *     units.lua).
 * A difference traps, so libFuzzer reports it like a crash. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <luajit.h>

#include "nb_rt_internal.h"
#include "fuzz_utf8.h"

#define CHECK(c) \
  do {           \
    if (!(c)) __builtin_trap(); \
  } while (0)

/* ---- the manifest text ---- */

typedef struct gen_s {
  const uint8_t *p, *end;
  char *out;
  size_t n, cap;
  int depth;
} gen_t;

static uint8_t next(gen_t *g) { return g->p < g->end ? *g->p++ : 0; }

static void put(gen_t *g, const char *s, size_t len) {
  if (g->n + len + 1 > g->cap) {
    g->cap = (g->n + len + 1) * 2;
    g->out = realloc(g->out, g->cap);
    if (!g->out) abort();
  }
  memcpy(g->out + g->n, s, len);
  g->n += len;
  g->out[g->n] = 0;
}

static void puts_(gen_t *g, const char *s) { put(g, s, strlen(s)); }

/* Writes s as a Lua string literal, every byte escaped as \ddd where it
 * is not plain printable ASCII. */
static void put_str(gen_t *g, const uint8_t *s, size_t len) {
  puts_(g, "\"");
  for (size_t i = 0; i < len; i++) {
    char b[8];
    if (s[i] >= 0x20 && s[i] < 0x7f && s[i] != '"' && s[i] != '\\')
      b[0] = (char)s[i], b[1] = 0;
    else
      snprintf(b, sizeof b, "\\%03u", s[i]); /* 3 digits: a digit may follow */
    puts_(g, b);
  }
  puts_(g, "\"");
}

static void put_cstr(gen_t *g, const char *s) {
  put_str(g, (const uint8_t *)s, strlen(s));
}

#define N(a) (sizeof(a) / sizeof((a)[0]))

/* Values of the schema's kinds: what the keys take, their edges, and
 * near misses. */
static const char *const names[] = {"a", "b", "c", "parser", "x_y-1", "",
                                    "1x", "a b", "a/b", "\303\251t\303\251",
                                    "\377name", "\n", "recorder"};
static const char *const durations[] = {"1ms", "free", "10us", "0", "5s",
                                        "1.5ms", "-1ms", "1e400ms", "ms",
                                        "1 h", "0x10ms", "2ns", "nan ms"};
static const char *const sizes[] = {"64MB", "1KB", "4096", "0", "1GB", "1e30B",
                                    "150KB", "-5", "1.5MB", "64 kb", "16EB",
                                    "inf", "1"};
static const char *const scripts[] = {
    "spec/fixtures/runtime/echo.lua",        "spec/fixtures/runtime/filtered.lua",
    "spec/fixtures/runtime/handle.lua",      "spec/fixtures/runtime/bad_syntax.lua",
    "spec/fixtures/runtime/bad_raises.lua",  "spec/fixtures/runtime/bad_not_table.lua",
    "spec/fixtures/runtime/bad_filters.lua", "spec/fixtures/runtime/missing.lua",
    "spec/fixtures/runtime",                 "/dev/null",
    "",                                      "spec/fixtures/runtime/stdp.lua"};
static const char *const urls[] = {
    "tcp://127.0.0.1:7401",   "tcp://127.0.0.1:7401/a", "tcp://[::1]:7402/b",
    "tcp://127.0.0.1:0/a",    "peer://cx/a",            "peer://cx",
    "peer:/x",                "tcp://host:99999/a",     "udp://1.2.3.4:5/a",
    "tcp://127.0.0.1:7401/",  "127.0.0.1:7401",         "tcp://:7401"};
static const char *const words[] = {
    "resend", "drop", "restart", "stop", "continue", "policy", "excitatory",
    "inhibitory", "modulatory", "bogus", "even", "broken", "odd", "cjson",
    "string", "/bin/echo", "/tmp", ".", "rel/dir", "vision", "motor"};
/* Lua expressions: numbers at the edges of the schema's ranges. */
static const char *const numbers[] = {
    "0",          "1",          "-1",         "0.5",        "2",
    "3",          "16",         "255",        "256",        "1024",
    "4096",       "65536",      "2^31",       "2^32",       "2^32+1",
    "2^53",       "1e308",      "-1e308",     "(1/0)",      "(-1/0)",
    "(0/0)",      "-0.0",       "1e-300",     "0.1",        "1e9",
    "1e18",       "4294967295", "7",          "1e6",        "2^20",
    "2^64",       "-2^63"};

enum {
  V_NAME, V_DURATION, V_SIZE, V_SCRIPT, V_URL, V_WORD, V_NUMBER, V_BOOL,
  V_BYTES, V_TABLE
};

/* The tables of the schema: their keys, and the kind of value each key
 * takes (T_* for a table of that kind, else a V_*). */
enum {
  T_TOP = 100, T_ARENA, T_AXON, T_NEURONS, T_NEURON, T_RESTART, T_SYNAPSES,
  T_SYNAPSE, T_STDP, T_FILTERS, T_PEERS, T_PEER, T_ACCEPT, T_CONFIG, T_LIST
};

typedef struct key_s {
  const char *key;
  int kind;
} key_t_;

static const key_t_ top_keys[] = {
    {"name", V_NAME},        {"tick", V_DURATION},   {"arena", T_ARENA},
    {"axon", T_AXON},        {"prune_every", V_NUMBER}, {"neurons", T_NEURONS},
    {"synapses", T_SYNAPSES}, {"listen", V_URL},     {"peers", T_PEERS},
    {"accept", T_ACCEPT},    {"max_payload", V_SIZE}};
static const key_t_ arena_keys[] = {{"size", V_SIZE}, {"path", V_WORD}};
static const key_t_ axon_keys[] = {{"capacity", V_NUMBER}, {"inbox", V_NUMBER}};
static const key_t_ neuron_keys[] = {
    {"script", V_SCRIPT},    {"remote", V_URL},         {"region", V_WORD},
    {"regions", T_LIST},     {"capabilities", T_LIST},  {"description", V_BYTES},
    {"threshold", V_NUMBER}, {"rest", V_NUMBER},        {"leak", V_NUMBER},
    {"refractory", V_NUMBER}, {"config", T_CONFIG},     {"memory", V_SIZE},
    {"jit", V_BOOL},         {"budget", V_DURATION},    {"watchdog", V_DURATION},
    {"watchdog_exit", V_DURATION}, {"sandbox", V_BOOL}, {"require", T_LIST},
    {"rewire", V_BOOL},
    {"exec", T_LIST},        {"files", T_LIST},         {"policy", V_WORD},
    {"on_error", V_WORD},    {"restart", T_RESTART},    {"max_tasks", V_NUMBER},
    {"keep_max", V_NUMBER},  {"keep_warn", V_DURATION}};
static const key_t_ restart_keys[] = {{"max", V_NUMBER}, {"window", V_DURATION},
                                      {"backoff", V_DURATION},
                                      {"backoff_max", V_DURATION}};
static const key_t_ synapse_keys[] = {{"from", V_NAME}, {"to", V_NAME},
                                      {"weight", V_NUMBER}, {"stdp", T_STDP},
                                      {"filters", T_FILTERS}};
static const key_t_ stdp_keys[] = {{"a_plus", V_NUMBER},   {"a_minus", V_NUMBER},
                                   {"tau_plus", V_DURATION}, {"tau_minus", V_DURATION},
                                   {"w_min", V_NUMBER},    {"w_max", V_NUMBER},
                                   {"mode", V_WORD},       {"lambda", V_NUMBER},
                                   {"alpha", V_NUMBER},    {"mu_plus", V_NUMBER},
                                   {"mu_minus", V_NUMBER}, {"tau_c", V_DURATION},
                                   {"tau_n", V_DURATION},  {"baseline", V_NUMBER}};
static const key_t_ filter_keys[] = {{"kind", T_LIST}, {"priority", V_NUMBER},
                                     {"prefix", V_BYTES}, {"custom", V_WORD}};
static const key_t_ peer_keys[] = {{"url", V_URL}, {"policy", V_WORD},
                                   {"queue", V_NUMBER}, {"queue_bytes", V_SIZE},
                                   {"backoff", V_DURATION}};
static const key_t_ accept_keys[] = {{"policy", V_WORD}, {"queue", V_NUMBER},
                                     {"queue_bytes", V_SIZE}};
static const key_t_ config_keys[] = {{"x", V_NUMBER}, {"name", V_NAME},
                                     {"list", T_LIST}, {"deep", T_CONFIG}};

static void value(gen_t *g, int kind);

/* Writes a string from the input bytes: a length byte, then the bytes. */
static void bytes_value(gen_t *g) {
  size_t len = next(g) % 48;
  uint8_t b[48];
  for (size_t i = 0; i < len; i++) b[i] = next(g);
  put_str(g, b, len);
}

/* Writes the fields of a table of kind t (its keys, or for a map or a
 * list of kind t its entries). */
static void table(gen_t *g, int t) {
  static const struct {
    int t;
    const key_t_ *keys;
    size_t n;
  } schema[] = {
      {T_TOP, top_keys, N(top_keys)},         {T_ARENA, arena_keys, N(arena_keys)},
      {T_AXON, axon_keys, N(axon_keys)},      {T_NEURON, neuron_keys, N(neuron_keys)},
      {T_RESTART, restart_keys, N(restart_keys)},
      {T_SYNAPSE, synapse_keys, N(synapse_keys)},
      {T_STDP, stdp_keys, N(stdp_keys)},      {T_FILTERS, filter_keys, N(filter_keys)},
      {T_PEER, peer_keys, N(peer_keys)},      {T_ACCEPT, accept_keys, N(accept_keys)},
      {T_CONFIG, config_keys, N(config_keys)}};
  puts_(g, "{");
  g->depth++;
  size_t count = next(g) % (t == T_TOP ? 12 : 6);
  for (size_t i = 0; i < count && g->p < g->end; i++) {
    if (i) puts_(g, ", ");
    switch (t) {
      case T_NEURONS: /* name = neuron */
        puts_(g, "[");
        value(g, V_NAME);
        puts_(g, "] = ");
        value(g, T_NEURON);
        continue;
      case T_SYNAPSES: value(g, T_SYNAPSE); continue;
      case T_PEERS: value(g, next(g) & 1 ? T_PEER : V_URL); continue;
      case T_LIST: value(g, next(g) & 1 ? V_WORD : V_NAME); continue;
      default: break;
    }
    const key_t_ *keys = NULL;
    size_t n = 0;
    for (size_t s = 0; s < N(schema); s++)
      if (schema[s].t == t) keys = schema[s].keys, n = schema[s].n;
    uint8_t b = next(g);
    int kind;
    if (b < 0xf0) {
      puts_(g, keys[b % n].key);
      kind = keys[b % n].kind;
    } else { /* an unknown key: a misspelling, bytes, a number */
      if (b & 1) {
        puts_(g, "[");
        bytes_value(g);
        puts_(g, "]");
      } else if (b & 2) {
        puts_(g, "[");
        puts_(g, numbers[next(g) % N(numbers)]);
        puts_(g, "]");
      } else {
        puts_(g, keys[next(g) % n].key);
        puts_(g, "s");
      }
      kind = V_NUMBER;
    }
    puts_(g, " = ");
    /* Mostly the kind the key takes; now and then another. */
    uint8_t v = next(g);
    value(g, v < 0xd0 ? kind : v % 10);
  }
  g->depth--;
  puts_(g, "}");
}

/* Writes a value of kind. */
static void value(gen_t *g, int kind) {
  if (kind >= T_TOP) {
    if (g->depth > 6) kind = V_NUMBER;
    else {
      table(g, kind);
      return;
    }
  }
  uint8_t b = next(g);
  switch (kind) {
    case V_NAME: put_cstr(g, names[b % N(names)]); break;
    case V_DURATION: put_cstr(g, durations[b % N(durations)]); break;
    case V_SIZE:
      if (b & 0x80) puts_(g, numbers[b % N(numbers)]);
      else put_cstr(g, sizes[b % N(sizes)]);
      break;
    case V_SCRIPT: put_cstr(g, scripts[b % N(scripts)]); break;
    case V_URL: put_cstr(g, urls[b % N(urls)]); break;
    case V_WORD: put_cstr(g, words[b % N(words)]); break;
    case V_NUMBER: puts_(g, numbers[b % N(numbers)]); break;
    case V_BOOL: puts_(g, b & 1 ? "true" : "false"); break;
    case V_BYTES: g->p--; bytes_value(g); break;
    default: table(g, b & 1 ? T_CONFIG : T_LIST);
  }
}

/* ---- the checks ---- */

/* Returns 1 when src could run long: a loop, a function, or a call into
 * the string library (a backtracking pattern, a huge rep). */
static int may_run_long(const char *src, size_t len) {
  static const char *const risky[] = {"while", "repeat", "for", "function",
                                      "goto", "string", "rep", "find", "match",
                                      "gsub", ":", "unpack", "concat", "format"};
  char *z = malloc(len + 1);
  if (!z) abort();
  memcpy(z, src, len);
  z[len] = 0;
  int risk = strlen(z) != len; /* a NUL hides what follows from strstr */
  for (size_t i = 0; i < N(risky) && !risk; i++) risk = strstr(z, risky[i]) != NULL;
  free(z);
  return risk;
}

static nb__checker_t *checker;

/* The validator is Lua, which the compiler's coverage does not see: a
 * line hook counts each (chunk, line) it runs into libFuzzer's extra
 * counters, so an input that reaches a new check of the validator is
 * kept. In a build without libFuzzer the section is a plain array. */
#define LUA_COV (1u << 14)
__attribute__((section("__libfuzzer_extra_counters"), used))
static uint8_t lua_cov[LUA_COV];

/* Counts the line the validator is at; returns nothing. */
static void line_hook(lua_State *L, lua_Debug *ar) {
  if (!lua_getinfo(L, "S", ar)) return;
  /* A chunk's source string is interned once: its address names it. */
  uintptr_t h = ((uintptr_t)ar->source >> 4) * 2654435761u + (uintptr_t)ar->currentline;
  h ^= h >> 15;
  uint8_t *c = &lua_cov[h % LUA_COV];
  if (*c < 255) (*c)++;
}

/* LeakSanitizer's hook: the manifest state is kept across inputs, and
 * LuaJIT keeps its pointers NaN-tagged, which a leak check cannot see, so
 * that state's blocks (its allocator is mcap_alloc) are not reported
 * between inputs. Every other block still is: the runtime the dry run
 * builds, the agents' states, what the C side copies out. */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void) { return "leak:mcap_alloc\n"; }

/* Closes the checker at exit, so a leak check sees only real leaks. */
static void close_checker(void) {
  nb__checker_free(checker);
  checker = NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *in, size_t size) {
  if (size < 1) return 0;
  if (!checker) {
    char *err = NULL;
    checker = nb__checker_new(&err);
    if (!checker) {
      fprintf(stderr, "fuzz_manifest: %s\n", err);
      abort();
    }
    atexit(close_checker);
    /* Interpreted, so the hook sees every line (compiled traces skip
     * hooks); the validator's speed does not matter here. */
    lua_State *L = nb__checker_state(checker);
    luaJIT_setmode(L, 0, LUAJIT_MODE_ENGINE | LUAJIT_MODE_OFF);
    lua_sethook(L, line_hook, LUA_MASKLINE, 0);
  }
  gen_t g = {in + 1, in + size, NULL, 0, 0, 0};
  if (in[0] == 0) {
    if (may_run_long((const char *)in + 1, size - 1)) return 0;
    put(&g, (const char *)in + 1, size - 1);
  } else {
    puts_(&g, "return ");
    table(&g, T_TOP);
  }
  if (getenv("NB_FUZZ_SHOW")) fprintf(stderr, "%s\n", g.out);
  int problems = -1;
  char *text = nb__checker_run(checker, "fuzz.lua", g.out, g.n, &problems);
  if (getenv("NB_FUZZ_SHOW")) fprintf(stderr, "=> %d: %s\n", problems, text ? text : "ok");
  if (!text || !*text) {
    CHECK(problems == 0);
  } else {
    size_t len = strlen(text);
    CHECK(problems >= 1);
    CHECK(utf8_valid((const unsigned char *)text, len));
    CHECK(!strstr(text, "\n\n") && text[0] != '\n' && text[len - 1] != '\n');
    /* An error raised inside the validator (or the library it uses) is a
     * bug of the validator, whatever the manifest: its traceback has a
     * line in its files (a value in a message cannot make one: its control
     * characters are escaped; an agent's own traceback runs through
     * lua/neuronbus/agent.lua, which is not the validator). */
    for (const char *l = strstr(text, "\n\t"); l; l = strstr(l + 1, "\n\t")) {
      const char *e = strchr(l + 1, '\n');
      size_t n = e ? (size_t)(e - l) : strlen(l);
      CHECK(!memmem(l, n, "lua/neuronbus/manifest/", 23) &&
            !memmem(l, n, "lua/neuronbus/units.lua", 23));
    }
  }
  free(text);
  free(g.out);
  return 0;
}
