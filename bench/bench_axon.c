/* bench_axon.c: the axon rows. Spikes/s across two threads on two CPUs,
 * one spike per publish and in batches of 64, 1P2C and 1P4C broadcast, and
 * ping-pong latency through two axons; each beside the reference ring (or
 * the cache-line hop) measured in the same run. Every reader checks every
 * record's sequence and check word; counts and sums are checked after each
 * run, and the run fails loudly on any loss. */
#include "bench.h"
#include "bench_axon.h"

/* memcpy_64b: the single-thread copy ceiling, for reading the other rows. */
static double memcpy_run(void *ctx) {
  (void)ctx;
  return nb_bench_memcpy_rate(NB_BENCH_AXON_CAP, nb_bench_size(32u << 20, 1u << 14));
}

static void group_memcpy(void) {
  nb_bench_row_t r = nb_bench_row("memcpy_64b", "M records/s");
  nb_bench_measure(memcpy_run, NULL, NULL, NULL, NULL, NULL, &r.v, NULL);
  r.note = "one thread copying 64-byte records out of a ring-sized buffer: "
           "the same-core ceiling, no baseline";
  nb_bench_emit(&r);
}

/* Runs one 1P1C row (batch 1 or 64) and emits it with its hop. */
static void one_p_one_c(const char *name, const char *base, size_t batch,
                        const char *target, uint64_t full, uint64_t tiny) {
  nb_bench_row_t r = nb_bench_row(name, "M spikes/s");
  nb_bench_flow_t sub = nb_bench_flow(NB_BENCH_AXON, batch, 1,
                                      nb_bench_size(full, tiny));
  nb_bench_flow_t ref = nb_bench_flow(NB_BENCH_REF_RING, batch, 1, sub.n);
  r.cpu_a = sub.cpu_producer;
  r.cpu_b = sub.cpu_reader[0];
  r.hop_ns = nb_bench_hop_ns(r.cpu_a, r.cpu_b);
  nb_bench_measure(nb_bench_flow_run, &sub, &sub.n, nb_bench_flow_run, &ref,
                   &ref.n, &r.v, &r.b);
  r.baseline = base;
  r.target = target;
  nb_bench_emit(&r);
}

static void group_1p1c_single(void) {
  one_p_one_c("axon_1p1c_single", "ref_ring_single", 1, ">=0.85", 2u << 20,
              1u << 13);
}

static void group_1p1c_batch(void) {
  one_p_one_c("axon_1p1c_batch64", "ref_ring_batch64", 64, ">=0.90", 16u << 20,
              1u << 15);
}

/* Runs 1P-nC broadcast (batches of 64 both sides) and emits the total and
 * the slowest reader's figure. */
static void one_p_n_c(int readers, const char *total, const char *per,
                      const char *base_total, const char *base_per) {
  nb_bench_flow_t sub = nb_bench_flow(NB_BENCH_AXON, 64, readers,
                                      nb_bench_size(4u << 20, 1u << 13));
  nb_bench_flow_t ref = nb_bench_flow(NB_BENCH_REF_RING, 64, readers, sub.n);
  nb_bench_row_t t = nb_bench_row(total, "M spikes/s");
  t.cpu_a = sub.cpu_producer;
  t.cpu_b = sub.cpu_reader[0];
  t.hop_ns = nb_bench_hop_ns(t.cpu_a, t.cpu_b);
  t.shared_cores = sub.shared_cores;
  nb_bench_measure(nb_bench_flow_run, &sub, &sub.n, nb_bench_flow_run, &ref,
                   &ref.n, &t.v, &t.b);
  t.baseline = base_total;
  t.note = sub.shared_cores
               ? "spikes delivered, summed over readers; more threads than "
                 "CPUs: the readers share a core (time-sliced), so this is "
                 "scheduler-bound"
               : "spikes delivered, summed over readers, each on its own CPU";
  nb_bench_emit(&t);

  nb_bench_row_t p = t;
  p.name = per;
  p.baseline = base_per;
  p.v = nb_bench_summarize(sub.per_reader + 1, nb_bench.runs);
  p.b = nb_bench_summarize(ref.per_reader + 1, nb_bench.runs);
  p.note = "the slowest reader's own rate (spikes it received / its time)";
  nb_bench_emit(&p);
}

static void group_1p2c(void) {
  one_p_n_c(2, "axon_1p2c_total", "axon_1p2c_per_reader", "ref_ring_bcast2_total",
            "ref_ring_bcast2_per_reader");
}

static void group_1p4c(void) {
  one_p_n_c(4, "axon_1p4c_total", "axon_1p4c_per_reader", "ref_ring_bcast4_total",
            "ref_ring_bcast4_per_reader");
}

/* Ping-pong through two axons, p50 and p99 one-way, beside the hop measured
 * interleaved with it between the same two CPUs. */
static void group_pingpong(void) {
  nb_bench_pingpong_t pp = nb_bench_pingpong_ctx(nb_bench_size(100000, 2000));
  nb_bench_hop_ctx_t hop = {pp.cpu_a, pp.cpu_b, nb_bench_size(50000, 1000)};
  nb_bench_row_t r = nb_bench_row("pingpong_p50", "ns one-way");
  r.lower_is_better = 1;
  r.cpu_a = pp.cpu_a;
  r.cpu_b = pp.cpu_b;
  r.hop_ns = nb_bench_hop_ns(pp.cpu_a, pp.cpu_b);
  nb_bench_measure(nb_bench_pingpong_run, &pp, &pp.iters,
                   r.hop_ns >= 0 ? nb_bench_hop_run : NULL, &hop, &hop.iters,
                   &r.v, &r.b);
  if (r.hop_ns >= 0) {
    r.baseline = "cacheline_hop";
    r.target = "<=2";
  }
  r.note = "half the round trip of one spike through two axons (publish, "
           "spin on try_read, echo back)";
  nb_bench_emit(&r);

  nb_bench_row_t q = r;
  q.name = "pingpong_p99";
  q.v = nb_bench_summarize(pp.p99 + 1, nb_bench.runs);
  q.target = NULL;
  q.note = "99th percentile of the same runs";
  nb_bench_emit(&q);
  free(pp.samples);
}

static const nb_bench_group_t groups[] = {
    {"memcpy_64b", group_memcpy},
    {"axon_1p1c_single", group_1p1c_single},
    {"axon_1p1c_batch64", group_1p1c_batch},
    {"axon_1p2c_total axon_1p2c_per_reader", group_1p2c},
    {"axon_1p4c_total axon_1p4c_per_reader", group_1p4c},
    {"pingpong_p50 pingpong_p99", group_pingpong},
};

int main(int argc, char **argv) {
  return nb_bench_main(argc, argv, groups, sizeof groups / sizeof groups[0]);
}
