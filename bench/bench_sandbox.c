/* bench_sandbox.c: what sandbox = true costs on the Lua hop. A sandboxed
 * agent gets each spike as a proxy (lua/neuronbus/sandbox_proxy.lua: a
 * userdata whose fields and methods read the runtime's spike through
 * trusted code, valid only during on_spike) instead of the zero-copy
 * cdata; nb:fire_to is the same call. The row runs the one-hop topology
 * (Lua producer, nb:fire_to per spike, 1024 per tick -> Lua sink checking
 * sequence, source, meta and spike:byte(1) of each) with sandbox = true on
 * both agents against the same agents unsandboxed, interleaved in this
 * run (bench.h: warm-up, median of the runs). Both sides run the same
 * script (bench/lua/sink_portable.lua) and the JIT on.
 *
 * Correctness: zero agent errors, exactly n spikes out of the producer and
 * into the sink. Run from the repository root (or set NB_BENCH_ROOT). */
#include "bench.h"
#include "bench_cortex.h"
#include "bench_rt.h"

#define BATCH 1024

typedef struct sb_run_s {
  uint64_t n;
  int sandbox;
} sb_run_t;

/* Runs the hop once; returns M spikes/s into the sink. */
static double hop_run(void *ctx) {
  sb_run_t *r = ctx;
  const char *root = nb_bench_rt_root;
  const char *keys = r->sandbox ? ", sandbox = true" : "";
  char src[4 * PATH_MAX + 1024];
  snprintf(src, sizeof src,
           "return {\n  name = 'bench_sandbox', tick = 'free',\n"
           "  axon = { capacity = %u, inbox = %u },\n  neurons = {\n"
           "    a_producer = { script = '%s/bench/lua/producer.lua', threshold = 0,"
           " refractory = 0, config = { n = %" PRIu64 ", batch = %u, target = 1 }%s },\n"
           "    b_sink = { script = '%s/bench/lua/sink_portable.lua', refractory = 0,"
           " config = { source = 0 }%s },\n"
           "  },\n  synapses = {\n"
           "    { from = 'a_producer', to = 'b_sink', weight = 0.5 },\n  },\n}\n",
           NB_BENCH_CX_CAP, NB_BENCH_CX_CAP, root, r->n, BATCH, keys, root, keys);
  nb_rt_t *rt = nb_bench_rt_open(src);
  uint32_t prod = nb_bench_rt_id(rt, "a_producer");
  uint32_t sink = nb_bench_rt_id(rt, "b_sink");
  if (prod != 0 || sink != 1) nb_bench_fail("bench topology ids are not in name order");
  uint64_t t0 = nb_bench_now_ns();
  nb_bench_rt_tick_until(rt, sink, r->n, 4 * (r->n / BATCH + 1) + 1000,
                         "sandbox hop");
  uint64_t ns = nb_bench_now_ns() - t0;
  nb_rt_stat_t ps = nb_bench_rt_stat(rt, prod);
  nb_rt_stat_t ss = nb_bench_rt_stat(rt, sink);
  if (ps.spikes_out != r->n || ss.spikes_in != r->n)
    nb_bench_fail("sandbox hop: %" PRIu64 " out, %" PRIu64 " in of %" PRIu64,
                  ps.spikes_out, ss.spikes_in, r->n);
  if (nb_bench_rt_state_num(rt, sink, "got") != (double)r->n)
    nb_bench_fail("sandbox hop: the sink checked fewer spikes than it got");
  nb_rt_close(rt);
  return (double)r->n / ((double)ns / 1e9) / 1e6;
}

static void group_hop(void) {
  nb_bench_rt_setup("sink_portable.lua", "sandbox", NULL);
  uint64_t n = nb_bench_size(2u << 20, 1u << 13);
  sb_run_t sb = {n, 1}, plain = {n, 0};
  nb_bench_row_t r = nb_bench_row("lua_hop_sandbox", "M spikes/s");
  nb_bench_measure(hop_run, &sb, &sb.n, hop_run, &plain, &plain.n, &r.v, &r.b);
  r.baseline = "lua_hop_unsandboxed";
  r.target = ">=0.5";
  r.note = "Lua producer (nb:fire_to per spike, 1024 per tick) -> Lua sink "
           "checking sequence, source, meta and spike:byte(1) of each, both "
           "agents with sandbox = true (each spike a read-only proxy, no "
           "cdata); baseline: the same scripts unsandboxed (zero-copy cdata), "
           "interleaved in this run, JIT on";
  nb_bench_emit(&r);
}

static const nb_bench_group_t groups[] = {
    {"lua_hop_sandbox", group_hop},
};

int main(int argc, char **argv) {
  atexit(nb_bench_rt_cleanup);
  return nb_bench_main(argc, argv, groups, sizeof groups / sizeof groups[0]);
}
