/* The runtime from C: building from a topology, injecting, ticking,
 * recording, errors, state dumps, check, and the libuv loop. Runs under
 * ASan/UBSan too (make test SAN=address), which the busted specs cannot. */
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lualib.h>

#include "nb_rt.h"
#include "nbtest.h"

static const char echo_topo[] =
    "return { name = 'c-test', tick = 'free', arena = { size = 4194304 },\n"
    "  axon = { capacity = 64 },\n"
    "  neurons = {\n"
    "    echo = { script = 'spec/fixtures/runtime/echo.lua',\n"
    "      regions = { 'x/y' }, capabilities = { 'echo' }, refractory = 0,\n"
    "      config = { prefix = '>', nested = { 1, 2, { deep = true } } } },\n"
    "    fragile = { script = 'spec/fixtures/runtime/failing.lua',\n"
    "      refractory = 0, config = {} },\n"
    "  },\n"
    "  synapses = { { from = 'echo', to = 'sink', weight = 0.5,\n"
    "                 stdp = { a_plus = 0.01, a_minus = 0.012, tau_plus = '20ms',\n"
    "                          tau_minus = '20ms', w_min = 0.001, w_max = 1 },\n"
    "                 filters = { prefix = '>' } } } }\n";

/* Returns a runtime over echo_topo with recording on, or NULL. */
static nb_rt_t *open_echo(void) {
  nb_rt_opts_t o = {.record = 1, .quiet = 1, .recorders = "test", .peers = "sink"};
  char *err = NULL;
  nb_rt_t *rt = nb_rt_open_topo(echo_topo, strlen(echo_topo), "=echo", &o, &err);
  if (!rt) printf("    open failed: %s\n", err);
  nb_rt_free_string(err);
  return rt;
}

static void layout_matches_the_header(void) {
  nb_rt_layout_t l;
  NBT_CHECK(nb_rt_layout(&l) == &l);
  NBT_EQ(l.size, 64);
  NBT_EQ(l.align, 64);
  NBT_EQ(l.payload, 18);
  NBT_EQ(l.payload_size, 46);
  NBT_EQ(l.ref_size, 24);
}

static void builds_injects_and_records(void) {
  nb_rt_t *rt = open_echo();
  NBT_CHECK(rt != NULL);
  if (!rt) return;
  NBT_EQ(nb_rt_count(rt), 4);
  NBT_EQ(nb_rt_id(rt, "echo"), 0);
  NBT_EQ(nb_rt_id(rt, "test"), 3);
  NBT_EQ(nb_rt_id(rt, "nobody"), -1);
  NBT_CHECK(strcmp(nb_rt_name(rt, 2), "sink") == 0);
  NBT_CHECK(nb_rt_name(rt, 9) == NULL);
  /* sink -> echo: echo replies ">hi" to sink through the synapse */
  NBT_EQ(nb_rt_inject(rt, 2, 0, 0, 0, "hi", 2), 0);
  NBT_EQ(nb_rt_inject(rt, 9, 0, 0, 0, "hi", 2), NB_ENOENT);
  NBT_EQ(nb_rt_inject(rt, 2, 0, 3, 0, "hi", 2), NB_EINVAL);
  NBT_CHECK(nb_rt_tick(rt, 3) >= 2);
  NBT_EQ(nb_rt_rec_count(rt, 2, 0), 1);
  nb_spike_t s;
  const char *data;
  size_t len;
  NBT_EQ(nb_rt_rec_get(rt, 2, 0, 0, &s, &data, &len), 0);
  NBT_EQ(len, 3);
  NBT_CHECK(memcmp(data, ">hi", 3) == 0);
  NBT_EQ(s.source, 0);
  NBT_NEAR(nb_rt_rec_weight(rt, 2, 0, 0), 0.5, 1e-6);
  NBT_EQ(nb_rt_rec_get(rt, 2, 0, 1, &s, &data, &len), NB_ENOENT);
  nb_rt_stat_t st;
  NBT_EQ(nb_rt_stat(rt, 0, &st), 0);
  NBT_EQ(st.spikes_in, 1);
  NBT_EQ(st.spikes_out, 1);
  NBT_EQ(nb_rt_stat(rt, 99, &st), NB_ENOENT);
  NBT_NEAR(nb_rt_weight(rt, 0, 2), 0.5, 1e-6); /* sink never fires */
  NBT_CHECK(nb_rt_weight(rt, 2, 0) < 0);
  char *err = NULL;
  char *dump = nb_rt_state_dump(rt, 0, &err);
  NBT_CHECK(dump && strstr(dump, "[\"seen\"]=1") && strstr(dump, "[\"prefix\"]=\">\""));
  nb_rt_free_string(dump);
  nb_rt_close(rt);
}

static void a_large_payload_goes_through_the_arena(void) {
  nb_rt_t *rt = open_echo();
  if (!rt) { NBT_CHECK(0); return; }
  size_t n = 100000;
  char *big = malloc(n);
  for (size_t i = 0; i < n; i++) big[i] = (char)('>' + (i % 7) * (i > 0));
  NBT_EQ(nb_rt_inject(rt, 2, 0, 0, 0, big + 1, n - 1), 0);
  nb_rt_tick(rt, 3);
  nb_spike_t s;
  const char *data;
  size_t len;
  NBT_EQ(nb_rt_rec_get(rt, 2, 0, 0, &s, &data, &len), 0);
  NBT_EQ(len, n);
  NBT_CHECK(nb_spike_is_ref(&s));
  NBT_CHECK(memcmp(data + 1, big + 1, n - 1) == 0 && data[0] == '>');
  free(big);
  nb_rt_close(rt);
}

static void agent_errors_are_counted_and_kept(void) {
  nb_rt_t *rt = open_echo();
  if (!rt) { NBT_CHECK(0); return; }
  nb_rt_inject(rt, 3, 1, 0, 0, "boom", 4);
  nb_rt_inject(rt, 3, 1, 0, 0, "ok", 2);
  nb_rt_inject(rt, 3, 1, 0, 0, "boom", 4);
  nb_rt_tick(rt, 2);
  nb_rt_stat_t st;
  nb_rt_stat(rt, 1, &st);
  NBT_EQ(st.errors, 2);
  NBT_EQ(st.spikes_in, 3);
  char *e = nb_rt_errors(rt, 1);
  NBT_CHECK(strstr(e, "on_spike: ") == e);
  NBT_CHECK(strstr(e, "kaboom") && strstr(e, "stack traceback") && strstr(e, "\n\f\n"));
  nb_rt_free_string(e);
  e = nb_rt_errors(rt, 0);
  NBT_CHECK(strcmp(e, "") == 0);
  nb_rt_free_string(e);
  nb_rt_close(rt);
}

static void bad_topologies_report_every_problem(void) {
  static const char bad[] =
      "return { name = 'bad', neurons = {\n"
      "  a = { script = 'spec/fixtures/runtime/bad_not_table.lua' },\n"
      "  b = { script = 'spec/fixtures/runtime/bad_no_on_spike.lua' },\n"
      "  c = { script = 'spec/fixtures/runtime/echo.lua', leak = 3 } } }\n";
  char *err = NULL;
  /* The validator finds what it can see; the scripts load only once the
   * manifest is valid. */
  NBT_CHECK(nb_rt_open_topo(bad, strlen(bad), "=bad", NULL, &err) == NULL);
  NBT_CHECK(err && strstr(err, "neurons.c.leak: "));
  nb_rt_free_string(err);
  static const char scripts[] =
      "return { name = 'bad', neurons = {\n"
      "  a = { script = 'spec/fixtures/runtime/bad_not_table.lua' },\n"
      "  b = { script = 'spec/fixtures/runtime/bad_no_on_spike.lua' } } }\n";
  NBT_CHECK(nb_rt_open_topo(scripts, strlen(scripts), "=bad", NULL, &err) == NULL);
  NBT_CHECK(err && strstr(err, "bad_not_table.lua:") &&
            strstr(err, ": neuron a: ") && strstr(err, "returned a number"));
  NBT_CHECK(err && strstr(err, "bad_no_on_spike.lua:") &&
            strstr(err, ": neuron b: ") && strstr(err, "no on_spike"));
  nb_rt_free_string(err);
  static const char fn[] =
      "return { name = 'fn', neurons = { e = { script = 'spec/fixtures/runtime/echo.lua',\n"
      "  config = { hook = function() end } } } }\n";
  NBT_CHECK(nb_rt_open_topo(fn, strlen(fn), "=fn", NULL, &err) == NULL);
  NBT_CHECK(err && strstr(err, "neurons.e.config.hook: expected plain data"));
  nb_rt_free_string(err);
  NBT_CHECK(nb_rt_open_topo("return 1", 8, "=one", NULL, &err) == NULL);
  NBT_CHECK(err && strstr(err, "one: the manifest must return a table, got 1"));
  nb_rt_free_string(err);
  NBT_CHECK(nb_rt_open("spec/fixtures/runtime/broken.lua", NULL, &err) == NULL);
  NBT_CHECK(err && strstr(err, "neurons.a.threshold: expected a number, got \"high\""));
  nb_rt_free_string(err);
}

static void check_counts_problems(void) {
  FILE *f = tmpfile();
  NBT_EQ(nb_rt_check("spec/fixtures/runtime/stopper.lua", f), 0);
  NBT_EQ(nb_rt_check("spec/fixtures/runtime/bad_agent.lua", f), 2);
  NBT_EQ(nb_rt_check("spec/fixtures/runtime/missing_filter.lua", f), 1);
  /* A newline in a value is escaped: each problem stays one line. */
  NBT_EQ(nb_rt_check("spec/fixtures/runtime/bad_newlines.lua", f), 2);
  fclose(f);
}

static int hook_calls;

/* A C count hook (as an agent's time budget sets one): counts calls. */
static void count_hook(lua_State *L, lua_Debug *ar) {
  (void)L;
  (void)ar;
  hook_calls++;
}

static void manifest_loads_under_a_c_hook(void) {
  lua_State *L = luaL_newstate();
  luaL_openlibs(L);
  lua_getglobal(L, "package");
  lua_pushstring(L, nb_rt_lua_path());
  lua_setfield(L, -2, "path");
  lua_pop(L, 1);
  lua_sethook(L, count_hook, LUA_MASKCOUNT, 100);
  /* The loader swaps in its instruction limit for the manifest's chunk;
   * a C hook it could not put back made it fail and lose the hook. */
  int rc = luaL_dostring(L,
      "local m = require('neuronbus.manifest')\n"
      "local t, e = m.load_source('return { name = \"h\", neurons = { a = "
      "{ script = \"spec/fixtures/runtime/echo.lua\" } } }', 'h.lua')\n"
      "assert(t, e and e[1])");
  if (rc) printf("    %s\n", lua_tostring(L, -1));
  NBT_EQ(rc, 0);
  NBT_CHECK(lua_gethook(L) == count_hook);
  NBT_CHECK(hook_calls > 0);
  lua_close(L);
}

static void the_loop_runs_ticks_and_stops(void) {
  char *err = NULL;
  nb_rt_t *rt = nb_rt_open("spec/fixtures/runtime/stopper.lua", NULL, &err);
  NBT_CHECK(rt != NULL);
  if (!rt) { printf("    %s\n", err); nb_rt_free_string(err); return; }
  FILE *f = tmpfile();
  nb_rt_run_opts_t o = {.ticks = 5, .stats = 2, .out = f};
  NBT_EQ(nb_rt_run(rt, &o), 0);
  NBT_EQ(nb_rt_tick_ns(rt), 10000000);
  NBT_CHECK(nb_rt_ticks(rt) >= 5 && nb_rt_ticks(rt) <= 7);
  char buf[4096] = {0};
  rewind(f);
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  NBT_CHECK(n > 0 && strstr(buf, "{\"type\":\"stats\",\"final\":true,\"topology\":\"stopper\""));
  fclose(f);
  nb_rt_stat_t st;
  nb_rt_stat(rt, (uint32_t)nb_rt_id(rt, "keeper"), &st);
  NBT_EQ(st.spikes_in, 5);
  nb_rt_close(rt);
}

static const nbt_test_t tests[] = {
    NBT_TEST(layout_matches_the_header),
    NBT_TEST(builds_injects_and_records),
    NBT_TEST(a_large_payload_goes_through_the_arena),
    NBT_TEST(agent_errors_are_counted_and_kept),
    NBT_TEST(bad_topologies_report_every_problem),
    NBT_TEST(check_counts_problems),
    NBT_TEST(manifest_loads_under_a_c_hook),
    NBT_TEST(the_loop_runs_ticks_and_stops),
};

int main(int argc, char **argv) {
  /* The test binary does not sit at build/<cfg>/neuronbus: name lua/. */
  setenv("NB_LUA_PATH", "lua", 1);
  return NBT_MAIN(argc, argv, tests, NULL);
}
