/* bench_cortex.c: the cortex rows with C agents. Spikes/s routed source ->
 * synapse -> target in the single-threaded tick (STDP off and on, and with
 * the producer firing each spike through nb_neuron_fire), a producer ->
 * relay -> sink chain, a 1 -> 8 broadcast fan-out, and a ping-pong round
 * trip; the throughput rows beside the axon 1P1C batched figure measured in
 * the same run, as issue 6 asks. The chain, fan-out and ping-pong rows are
 * also the C baselines the Lua rows compare against. */
#include "bench.h"
#include "bench_axon.h"
#include "bench_cortex.h"

/* Measures a topology with C agents against the axon 1P1C batched flow
 * (interleaved), and emits the row. */
static void topo_row(const char *name, nb_bench_topo_t t, const char *note) {
  nb_bench_flow_t ax = nb_bench_flow(NB_BENCH_AXON, 64, 1,
                                     nb_bench_size(4u << 20, 1u << 14));
  nb_bench_row_t r = nb_bench_row(name, "M spikes/s");
  r.cpu_a = ax.cpu_producer;
  r.cpu_b = ax.cpu_reader[0];
  r.hop_ns = nb_bench_hop_ns(r.cpu_a, r.cpu_b);
  nb_bench_measure(nb_bench_topo_c_run, &t, &t.n, nb_bench_flow_run, &ax, &ax.n,
                   &r.v, &r.b);
  r.baseline = "axon_1p1c_batch64";
  r.note = note;
  nb_bench_emit(&r);
}

static uint64_t n_spikes(void) { return nb_bench_size(4u << 20, 1u << 14); }

static void group_route(void) {
  topo_row("cortex_route", nb_bench_topo(n_spikes(), 1, 0, 0, NB_BENCH_FIRE_BATCH),
           "one thread: source publishes 1024 pre-stamped spikes per tick, the "
           "tick routes them through a synapse (STDP off) into the target's "
           "inbox and hands them over as one batch; hop_ns is the baseline's");
}

static void group_route_stdp(void) {
  topo_row("cortex_route_stdp",
           nb_bench_topo(n_spikes(), 1, 0, 1, NB_BENCH_FIRE_BATCH),
           "as cortex_route with STDP on the synapse (pre per spike, post "
           "when the target fires)");
}

static void group_route_fire(void) {
  topo_row("cortex_route_fire",
           nb_bench_topo(n_spikes(), 1, 0, 0, NB_BENCH_FIRE_EACH),
           "as cortex_route but the source fires each spike through "
           "nb_neuron_fire (stamp, clock read, claim/commit): the C one-hop "
           "figure the Lua one-hop row compares against");
}

/* Measures topology t against topology base (both C agents, interleaved
 * in this run) and emits the row. */
static void pair_row(const char *name, nb_bench_topo_t t, nb_bench_topo_t base,
                     const char *base_name, const char *target,
                     const char *note) {
  nb_bench_row_t r = nb_bench_row(name, "M spikes/s");
  nb_bench_measure(nb_bench_topo_c_run, &t, &t.n, nb_bench_topo_c_run, &base,
                   &base.n, &r.v, &r.b);
  r.baseline = base_name;
  r.target = target;
  r.note = note;
  nb_bench_emit(&r);
}

static void group_route_reward(void) {
  pair_row("cortex_route_reward",
           nb_bench_topo(n_spikes(), 1, 0, 1 + NB_STDP_REWARD, NB_BENCH_FIRE_BATCH),
           nb_bench_topo(n_spikes(), 1, 0, 0, NB_BENCH_FIRE_BATCH), "route_plain",
           NULL,
           "as cortex_route with reward-mode STDP on the synapse (eligibility "
           "and reward trace brought up to date per spike and per fire); "
           "baseline: the same with STDP off, interleaved in this run");
}

static void group_route_trace(void) {
  pair_row("cortex_route_trace",
           nb_bench_topo(n_spikes(), 1, 0, 1 + NB_STDP_TRACE, NB_BENCH_FIRE_BATCH),
           nb_bench_topo(n_spikes(), 1, 0, 0, NB_BENCH_FIRE_BATCH), "route_plain",
           NULL,
           "as cortex_route with trace-mode STDP (NEST stdp_synapse, "
           "multiplicative); baseline: STDP off, interleaved");
}

static void group_spike_time(void) {
  nb_bench_topo_t tick = nb_bench_topo(n_spikes(), 1, 0, 0, NB_BENCH_FIRE_EACH);
  tick.tick_time = 1;
  pair_row("cortex_fire_spike_time",
           nb_bench_topo(n_spikes(), 1, 0, 0, NB_BENCH_FIRE_EACH), tick,
           "fire_tick_time", ">=0.97",
           "as cortex_route_fire (nb_neuron_fire per spike): each spike "
           "stamped with its own fire time (the TSC spike clock, strictly "
           "increasing per source); baseline: one time per tick "
           "(spike_time = \"tick\"), interleaved");
}

static void group_chain(void) {
  topo_row("cortex_chain_c", nb_bench_topo(n_spikes(), 1, 1, 0, NB_BENCH_FIRE_EACH),
           "producer -> relay -> sink, C agents, each firing per spike; "
           "spikes/s reaching the sink");
}

static void group_fanout(void) {
  topo_row("cortex_fanout8_c",
           nb_bench_topo(nb_bench_size(1u << 20, 1u << 12), 8, 0, 0,
                         NB_BENCH_FIRE_EACH),
           "one producer broadcasting to 8 sinks through 8 synapses, C agents; "
           "deliveries/s summed over the sinks");
}

static void group_pingpong(void) {
  nb_bench_cxpp_t pp;
  memset(&pp, 0, sizeof pp);
  pp.iters = nb_bench_size(100000, 1000);
  pp.samples = nb_bench_alloc(pp.iters * sizeof(double));
  nb_bench_row_t r = nb_bench_row("cortex_pingpong_c", "ns round trip");
  r.lower_is_better = 1;
  nb_bench_measure(nb_bench_cxpp_c_run, &pp, &pp.iters, NULL, NULL, NULL, &r.v,
                   NULL);
  r.note = "p50 round trip between two C agents in the single-threaded tick "
           "(2 ticks per exchange); no baseline: it is the C reference for "
           "the Lua ping-pong row";
  nb_bench_emit(&r);
  free(pp.samples);
}

static const nb_bench_group_t groups[] = {
    {"cortex_route", group_route},
    {"cortex_route_stdp", group_route_stdp},
    {"cortex_route_fire", group_route_fire},
    {"cortex_route_reward", group_route_reward},
    {"cortex_route_trace", group_route_trace},
    {"cortex_fire_spike_time", group_spike_time},
    {"cortex_chain_c", group_chain},
    {"cortex_fanout8_c", group_fanout},
    {"cortex_pingpong_c", group_pingpong},
};

int main(int argc, char **argv) {
  return nb_bench_main(argc, argv, groups, sizeof groups / sizeof groups[0]);
}
