/* Fault isolation from C: memory caps, budgets, the restart and
 * stop policies with their held spikes and dead letters, a long entry past
 * the watchdog (reported, not a fault), neuronbus check on a bomb at a
 * script's top level, and the statistics columns. Runs
 * under ASan/UBSan too (make test SAN=address), which the busted specs
 * (spec/runtime/isolation_spec.lua) cannot. */
#include <stdlib.h>
#include <string.h>

#include "nb_rt.h"
#include "nbtest.h"

#define MB (1024.0 * 1024.0)

/* Returns a runtime over a topology whose neuron "victim" runs script with
 * the isolation keys in keys (a manifest's Lua table fields), beside the
 * recorders "test" and "out"; NULL when it cannot open. */
static nb_rt_t *open_victim(const char *script, const char *keys) {
  char src[2048];
  snprintf(src, sizeof src,
           "return { name = 'iso', tick = 'free', arena = { size = 1048576 },\n"
           "  axon = { capacity = 256 },\n"
           "  neurons = {\n"
           "    victim = { script = 'spec/fixtures/isolation/%s',\n"
           "      refractory = 0, config = { to = 'out' }, %s },\n"
           "  } }\n", script, keys);
  nb_rt_opts_t o = {.record = 1, .quiet = 1, .recorders = "test,out"};
  char *err = NULL;
  nb_rt_t *rt = nb_rt_open_topo(src, strlen(src), "=iso", &o, &err);
  if (!rt) printf("    open failed: %s\n", err);
  nb_rt_free_string(err);
  return rt;
}

/* Injects payload from "test" to "victim"; returns nb_rt_inject's code. */
static int send(nb_rt_t *rt, const char *payload) {
  return nb_rt_inject(rt, (uint32_t)nb_rt_id(rt, "test"),
                      (uint32_t)nb_rt_id(rt, "victim"), 0, 0, payload,
                      strlen(payload));
}

/* Returns the victim's isolation counters. */
static nb_rt_isol_stat_t victim(nb_rt_t *rt) {
  nb_rt_isol_stat_t s;
  nb_rt_isol_stat(rt, (uint32_t)nb_rt_id(rt, "victim"), &s);
  return s;
}

/* Returns how many spikes "out" received. */
static size_t out_count(nb_rt_t *rt) {
  return nb_rt_rec_count(rt, (uint32_t)nb_rt_id(rt, "out"), 0);
}

/* Ticks (1 ms apart) until the victim is in state or 10 s passed; returns
 * 1 when it got there. */
static int wait_state(nb_rt_t *rt, int state) {
  for (int i = 0; i < 10000; i++) {
    if (victim(rt).state == state) return 1;
    nb_rt_tick(rt, 1);
    nbt_sleep_ms(1);
  }
  return victim(rt).state == state;
}

static void a_memory_bomb_restarts_and_the_rest_of_the_batch_waits(void) {
  nb_rt_t *rt = open_victim("bomb.lua", "memory = '8MB', "
                            "restart = { max = 5, window = '60s', "
                            "backoff = '5ms', backoff_max = '5ms' }");
  NBT_CHECK(rt != NULL);
  if (!rt) return;
  NBT_EQ(send(rt, "a"), 0);
  NBT_EQ(send(rt, "table"), 0);
  NBT_EQ(send(rt, "b"), 0);
  NBT_EQ(send(rt, "c"), 0);
  nb_rt_tick(rt, 1);
  nb_rt_isol_stat_t s = victim(rt);
  NBT_EQ(s.state, 1); /* backoff */
  NBT_EQ(s.faults, 1);
  NBT_EQ(s.mem_errors, 1);
  NBT_EQ(s.held, 2);
  NBT_EQ(s.memory_limit, 8388608);
  NBT_CHECK(s.memory_peak <= 8388608 + 65536);
  char *e = nb_rt_errors(rt, (uint32_t)nb_rt_id(rt, "victim"));
  NBT_CHECK(strstr(e, "on_spike: memory limit 8 MB exceeded") != NULL);
  nb_rt_free_string(e);
  NBT_EQ(send(rt, "d"), 0); /* arrives while it waits: held in its inbox */
  NBT_CHECK(wait_state(rt, 0));
  nb_rt_tick(rt, 3);
  s = victim(rt);
  NBT_EQ(s.restarts, 1);
  NBT_EQ(s.held, 0);
  NBT_CHECK(s.memory > 0 && s.memory < 4 * MB);
  NBT_EQ(out_count(rt), 4); /* a, b, c, d */
  nb_rt_close(rt);
}

static void a_budget_stops_a_loop_and_the_stop_policy_counts_dead_letters(void) {
  nb_rt_t *rt = open_victim("spin.lua", "budget = '20ms', jit = false, "
                            "policy = 'stop'");
  NBT_CHECK(rt != NULL);
  if (!rt) return;
  NBT_EQ(victim(rt).jit, 0);
  NBT_EQ(send(rt, "x"), 0);
  NBT_EQ(send(rt, "while"), 0);
  NBT_EQ(send(rt, "y"), 0);
  NBT_EQ(send(rt, "z"), 0);
  nb_rt_tick(rt, 1);
  nb_rt_isol_stat_t s = victim(rt);
  NBT_EQ(s.state, 2); /* stopped */
  NBT_EQ(s.budget_overruns, 1);
  NBT_EQ(s.dead_letters, 2); /* y, z */
  NBT_EQ(s.memory, 0);       /* the state was closed */
  for (int i = 0; i < 5; i++) NBT_EQ(send(rt, "late"), 0);
  nb_rt_tick(rt, 2);
  NBT_EQ(victim(rt).dead_letters, 7);
  nb_rt_tick(rt, 2);
  NBT_EQ(out_count(rt), 1); /* x */
  char *err = NULL;
  NBT_CHECK(nb_rt_state_dump(rt, (uint32_t)nb_rt_id(rt, "victim"), &err) == NULL);
  NBT_CHECK(err && strstr(err, "stopped by its policy"));
  nb_rt_free_string(err);
  nb_rt_close(rt);
}

static void restarts_past_the_window_stop_the_neuron(void) {
  nb_rt_t *rt = open_victim("bomb.lua", "on_error = 'policy', "
                            "restart = { max = 2, window = '60s', "
                            "backoff = '1ms', backoff_max = '4ms' }");
  NBT_CHECK(rt != NULL);
  if (!rt) return;
  for (int round = 1; round <= 2; round++) {
    NBT_EQ(send(rt, "boom"), 0);
    nb_rt_tick(rt, 1);
    NBT_EQ(victim(rt).state, 1);
    NBT_EQ(victim(rt).next_backoff_ns, round == 1 ? 2000000 : 4000000);
    NBT_CHECK(wait_state(rt, 0));
  }
  NBT_EQ(send(rt, "boom"), 0);
  NBT_EQ(send(rt, "lost?"), 0);
  nb_rt_tick(rt, 1);
  nb_rt_isol_stat_t s = victim(rt);
  NBT_EQ(s.state, 2);
  NBT_EQ(s.restarts, 2);
  NBT_EQ(s.faults, 3);
  NBT_EQ(s.dead_letters, 1); /* counted, not lost */
  nb_rt_close(rt);
}

static void stopping_restarts_a_waiting_neuron_at_once(void) {
  nb_rt_t *rt = open_victim("bomb.lua", "on_error = 'policy', "
                            "restart = { max = 5, window = '60s', "
                            "backoff = '60s', backoff_max = '60s' }");
  NBT_CHECK(rt != NULL);
  if (!rt) return;
  NBT_EQ(send(rt, "boom"), 0);
  NBT_EQ(send(rt, "held"), 0);
  nb_rt_tick(rt, 1);
  NBT_EQ(send(rt, "queued"), 0);
  nb_rt_tick(rt, 1);
  NBT_EQ(victim(rt).state, 1);
  nb_rt_stop(rt, 0);
  NBT_EQ(victim(rt).state, 0);
  NBT_EQ(out_count(rt), 2);
  nb_rt_close(rt);
}

/* A JIT entry past its watchdog (a finite busy wait) is reported, not a
 * fault: it runs to its end, the rest of its batch and later spikes are
 * delivered, and the neuron stays running under any policy. */
static void a_long_entry_is_reported_and_the_neuron_goes_on(void) {
  nb_rt_t *rt = open_victim("spin.lua", "watchdog = '50ms', policy = 'stop', "
                            "on_error = 'policy'");
  NBT_CHECK(rt != NULL);
  if (!rt) return;
  NBT_EQ(victim(rt).jit, 1);
  NBT_EQ(send(rt, "a"), 0);
  NBT_EQ(send(rt, "wait:200"), 0);
  NBT_EQ(send(rt, "b"), 0);
  uint64_t t0 = nbt_now_ns();
  nb_rt_tick(rt, 1);
  NBT_CHECK(nbt_now_ns() - t0 >= 200000000ull);
  nb_rt_isol_stat_t s = victim(rt);
  NBT_EQ(s.state, 0); /* running */
  NBT_EQ(s.watchdog_overruns, 1);
  NBT_EQ(s.faults, 0);
  NBT_EQ(s.dead_letters, 0);
  NBT_EQ(send(rt, "c"), 0);
  nb_rt_tick(rt, 3);
  NBT_EQ(out_count(rt), 3); /* a, b, c */
  NBT_EQ(victim(rt).state, 0);
  nb_rt_close(rt);
}

static void check_reports_a_bomb_and_a_denial_at_the_top_level(void) {
  FILE *f = tmpfile();
  NBT_EQ(nb_rt_check("spec/fixtures/isolation/check_bad.lua", f), 2);
  rewind(f);
  char buf[8192];
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  buf[n] = 0;
  NBT_CHECK(strstr(buf, "top_bomb.lua: neuron bomb: running the script: ") &&
            strstr(buf, "memory limit 1 MB exceeded"));
  NBT_CHECK(strstr(buf, "top_ffi.lua:3: neuron denied: ") &&
            strstr(buf, "module 'ffi' is not available in the sandbox"));
  fclose(f);
}

static void statistics_show_dead_letters_restarts_state_and_memory(void) {
  nb_rt_t *rt = open_victim("bomb.lua", "memory = '4MB', policy = 'stop', "
                            "on_error = 'policy'");
  NBT_CHECK(rt != NULL);
  if (!rt) return;
  NBT_EQ(send(rt, "boom"), 0);
  NBT_EQ(send(rt, "dead"), 0);
  nb_rt_tick(rt, 2);
  FILE *f = tmpfile();
  nb_rt_print_stats(rt, f, 0, 1);
  nb_rt_print_stats(rt, f, 1, 1);
  rewind(f);
  char buf[16384];
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  buf[n] = 0;
  NBT_CHECK(strstr(buf, "dead restarts state"));
  NBT_CHECK(strstr(buf, " stopped "));
  NBT_CHECK(strstr(buf, "\"name\":\"victim\""));
  NBT_CHECK(strstr(buf, "\"dead_letters\":1,\"restarts\":0,\"faults\":1,"
                        "\"state\":\"stopped\""));
  NBT_CHECK(strstr(buf, "\"memory_limit\":4194304"));
  NBT_CHECK(strstr(buf, "\"totals\":{") && strstr(buf, ",\"dead_letters\":1,\"restarts\":0,\"errors\":1}"));
  fclose(f);
  nb_rt_close(rt);
}

static const nbt_test_t tests[] = {
    NBT_TEST(a_memory_bomb_restarts_and_the_rest_of_the_batch_waits),
    NBT_TEST(a_budget_stops_a_loop_and_the_stop_policy_counts_dead_letters),
    NBT_TEST(restarts_past_the_window_stop_the_neuron),
    NBT_TEST(stopping_restarts_a_waiting_neuron_at_once),
    NBT_TEST(a_long_entry_is_reported_and_the_neuron_goes_on),
    NBT_TEST(check_reports_a_bomb_and_a_denial_at_the_top_level),
    NBT_TEST(statistics_show_dead_letters_restarts_state_and_memory),
};

int main(int argc, char **argv) {
  /* The test binary does not sit at build/<cfg>/neuronbus: name lua/. */
  setenv("NB_LUA_PATH", "lua", 1);
  return NBT_MAIN(argc, argv, tests, NULL);
}
