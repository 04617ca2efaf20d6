/* bench_axon.h: one producer thread, n reader threads, and either the axon
 * or the reference ring between them; plus ping-pong through two axons.
 * Shared by bench_axon.c (the axon rows) and bench_cortex.c (whose rows
 * are read against the axon 1P1C batched figure measured in the same run).
 *
 * Subject and baseline run the same thread bodies apart from the four
 * calls that move records (push/pop vs publish/read), the same placement
 * and the same backoff, so the ratio isolates the data structure. */
#ifndef NB_BENCH_AXON_H
#define NB_BENCH_AXON_H

#include "bench.h"
#include "bench_ring.h"
#include "neuronbus.h"

#define NB_BENCH_AXON_CAP 4096u /* the axon's default capacity */
#define NB_BENCH_FLOW_SPINS 256u

typedef enum nb_bench_impl_e { NB_BENCH_REF_RING, NB_BENCH_AXON } nb_bench_impl_t;

/* What one row measures; the same context serves every run of the row. */
typedef struct nb_bench_flow_s {
  nb_bench_impl_t impl;
  size_t batch; /* 1: one record per publish and per read; else up to 64 */
  int nreaders;
  uint64_t n;   /* records per run, each delivered to every reader */
  int cpu_producer, cpu_reader[NB_BENCH_RING_MAX_READERS];
  int shared_cores;
  uint64_t expect_sum, sum_n; /* expect_sum is for sum_n records */
  int calls;                                 /* 0 = the warm-up */
  double per_reader[NB_BENCH_MAX_RUNS + 1];  /* slowest reader, per call */
} nb_bench_flow_t;

/* The state of one run. */
typedef struct nb_bench_flow_run_s {
  nb_bench_flow_t *f;
  nb_bench_ring_t *ring;
  nb_axon_t *ax;
  nb_axon_reader_t *rd[NB_BENCH_RING_MAX_READERS];
  nb_bench_gate_t gate;
  nb_bench_stop_t stop;
  uint64_t t0;
  uint64_t published;
  struct {
    alignas(64) uint64_t got, sum, t_end;
  } r[NB_BENCH_RING_MAX_READERS];
} nb_bench_flow_run_t;

typedef struct nb_bench_flow_arg_s {
  nb_bench_flow_run_t *run;
  int idx;
} nb_bench_flow_arg_t;

/* Returns a flow context: the producer on the first CPU, readers on the
 * other CPUs (sharing them when there are more readers than CPUs left; on
 * a single CPU everything shares it). */
NB_BENCH_UNUSED static nb_bench_flow_t nb_bench_flow(nb_bench_impl_t impl,
                                                     size_t batch, int nreaders,
                                                     uint64_t n) {
  nb_bench_flow_t f;
  memset(&f, 0, sizeof f);
  if (nreaders < 1 || nreaders > NB_BENCH_RING_MAX_READERS || batch < 1 ||
      batch > 64)
    nb_bench_fail("flow: bad readers %d or batch %zu", nreaders, batch);
  f.impl = impl;
  f.batch = batch;
  f.nreaders = nreaders;
  f.n = n;
  f.cpu_producer = nb_bench_cpu(0);
  int others = nb_bench.ncpus - 1;
  for (int i = 0; i < nreaders; i++)
    f.cpu_reader[i] = others > 0 ? nb_bench_cpu(1 + i % others) : nb_bench_cpu(0);
  f.shared_cores = nreaders + 1 > nb_bench.ncpus;
  return f;
}

/* Producer, reference ring: stamps each record and pushes it (one at a time
 * or up to 64 per push); returns NULL. */
static void *nb_bench__ring_producer(void *arg) {
  nb_bench_flow_run_t *run = arg;
  nb_bench_flow_t *f = run->f;
  nb_spike_t buf[64];
  nb_bench_gate_wait(&run->gate);
  run->t0 = nb_bench_now_ns();
  for (uint64_t i = 0; i < f->n;) {
    size_t k = f->n - i < f->batch ? (size_t)(f->n - i) : f->batch, done = 0;
    for (size_t j = 0; j < k; j++) nb_bench_stamp(&buf[j], i + j, 1, 2);
    unsigned spins = 0;
    while (done < k) {
      size_t m = k == 1 ? (size_t)nb_bench_ring_push(run->ring, buf)
                        : nb_bench_ring_push_batch(run->ring, buf + done, k - done);
      done += m;
      if (done < k && nb_bench_backoff(&spins, NB_BENCH_FLOW_SPINS, &run->stop))
        return NULL;
    }
    i += k;
    run->published = i;
  }
  return NULL;
}

/* Producer, axon: the same, through nb_axon_try_publish (batch 1) or
 * nb_axon_try_publish_batch; returns NULL. */
static void *nb_bench__axon_producer(void *arg) {
  nb_bench_flow_run_t *run = arg;
  nb_bench_flow_t *f = run->f;
  nb_spike_t buf[64];
  nb_bench_gate_wait(&run->gate);
  run->t0 = nb_bench_now_ns();
  for (uint64_t i = 0; i < f->n;) {
    size_t k = f->n - i < f->batch ? (size_t)(f->n - i) : f->batch, done = 0;
    for (size_t j = 0; j < k; j++) nb_bench_stamp(&buf[j], i + j, 1, 2);
    unsigned spins = 0;
    while (done < k) {
      size_t m;
      if (k == 1) {
        int rc = nb_axon_try_publish(run->ax, buf);
        if (rc != 0 && rc != NB_EFULL) {
          nb_bench_stop_fail(&run->stop, "nb_axon_try_publish: %s",
                             nb_strerror(rc));
          return NULL;
        }
        m = rc == 0;
      } else {
        m = nb_axon_try_publish_batch(run->ax, buf + done, k - done);
      }
      done += m;
      if (done < k && nb_bench_backoff(&spins, NB_BENCH_FLOW_SPINS, &run->stop))
        return NULL;
    }
    i += k;
    run->published = i;
  }
  return NULL;
}

/* Checks records got..got+k-1 in out; returns 0, or -1 after recording the
 * first mismatch in the run's stop. */
static inline int nb_bench__check(nb_bench_flow_run_t *run, int idx,
                                  const nb_spike_t *out, size_t k) {
  uint64_t got = run->r[idx].got, sum = run->r[idx].sum;
  for (size_t j = 0; j < k; j++) {
    if (!nb_bench_is_record(&out[j], got + j)) {
      nb_bench_stop_fail(&run->stop,
                         "reader %d: record %" PRIu64 " wrong: sequence %u, "
                         "meta %u, word %016" PRIx64 " (want %016" PRIx64 ")",
                         idx, got + j, out[j].sequence, out[j].meta,
                         nb_bench_word(&out[j]), nb_bench_mix(got + j));
      return -1;
    }
    sum += nb_bench_word(&out[j]);
  }
  run->r[idx].got = got + k;
  run->r[idx].sum = sum;
  return 0;
}

/* Reader, reference ring: pops and checks until n records arrived; returns
 * NULL. */
static void *nb_bench__ring_reader(void *arg) {
  nb_bench_flow_arg_t *a = arg;
  nb_bench_flow_run_t *run = a->run;
  nb_bench_flow_t *f = run->f;
  nb_spike_t out[64];
  nb_bench_gate_wait(&run->gate);
  unsigned spins = 0;
  while (run->r[a->idx].got < f->n) {
    size_t k = f->batch == 1
                   ? (size_t)nb_bench_ring_pop(run->ring, (uint32_t)a->idx, out)
                   : nb_bench_ring_pop_batch(run->ring, (uint32_t)a->idx, out, f->batch);
    if (k == 0) {
      if (nb_bench_backoff(&spins, NB_BENCH_FLOW_SPINS, &run->stop)) return NULL;
      continue;
    }
    spins = 0;
    if (nb_bench__check(run, a->idx, out, k)) return NULL;
  }
  run->r[a->idx].t_end = nb_bench_now_ns();
  return NULL;
}

/* Reader, axon: nb_axon_try_read (batch 1) or nb_axon_read_batch, checking
 * that nothing is ever reported missed; returns NULL. */
static void *nb_bench__axon_reader(void *arg) {
  nb_bench_flow_arg_t *a = arg;
  nb_bench_flow_run_t *run = a->run;
  nb_bench_flow_t *f = run->f;
  nb_axon_reader_t *rd = run->rd[a->idx];
  nb_spike_t out[64];
  nb_bench_gate_wait(&run->gate);
  unsigned spins = 0;
  while (run->r[a->idx].got < f->n) {
    size_t k;
    uint64_t missed = 0;
    if (f->batch == 1) {
      int rc = nb_axon_try_read(rd, out, &missed);
      if (rc != 0 && rc != NB_EEMPTY) {
        nb_bench_stop_fail(&run->stop, "reader %d: nb_axon_try_read: %s "
                           "(missed %" PRIu64 ")", a->idx, nb_strerror(rc), missed);
        return NULL;
      }
      k = rc == 0;
    } else {
      k = nb_axon_read_batch(rd, out, f->batch, &missed);
      if (missed) {
        nb_bench_stop_fail(&run->stop, "reader %d: gated axon reported %" PRIu64
                           " missed", a->idx, missed);
        return NULL;
      }
    }
    if (k == 0) {
      if (nb_bench_backoff(&spins, NB_BENCH_FLOW_SPINS, &run->stop)) return NULL;
      continue;
    }
    spins = 0;
    if (nb_bench__check(run, a->idx, out, k)) return NULL;
  }
  run->r[a->idx].t_end = nb_bench_now_ns();
  return NULL;
}

/* Runs the flow once; returns millions of spikes per second delivered in
 * total (n x readers / time until the last reader is done) and stores the
 * slowest reader's own rate in f->per_reader[call]. Fails the bench on any
 * lost, duplicated, reordered or corrupted record. */
NB_BENCH_UNUSED static double nb_bench_flow_run(void *ctx) {
  nb_bench_flow_t *f = ctx;
  nb_bench_flow_run_t *run = nb_bench_alloc(sizeof *run);
  nb_bench_flow_arg_t args[NB_BENCH_RING_MAX_READERS];
  pthread_t th[NB_BENCH_RING_MAX_READERS + 1];
  run->f = f;
  if (f->sum_n != f->n || f->n == 0) {
    f->expect_sum = nb_bench_expected_sum(0, f->n);
    f->sum_n = f->n;
  }
  nb_bench_stop_init(&run->stop, nb_bench.tiny ? 20 : 60);
  if (f->impl == NB_BENCH_REF_RING) {
    run->ring = nb_bench_ring_new(NB_BENCH_AXON_CAP, (uint32_t)f->nreaders);
  } else {
    nb_axon_opts_t o = nb_axon_opts_default();
    o.capacity = NB_BENCH_AXON_CAP;
    o.mode = NB_AXON_GATED;
    int rc = nb_axon_new(&run->ax, &o);
    if (rc) nb_bench_fail("nb_axon_new: %s", nb_strerror(rc));
    for (int i = 0; i < f->nreaders; i++) {
      rc = nb_axon_reader_attach(run->ax, &run->rd[i]);
      if (rc) nb_bench_fail("nb_axon_reader_attach: %s", nb_strerror(rc));
    }
  }
  int axon = f->impl == NB_BENCH_AXON;
  for (int i = 0; i < f->nreaders; i++) {
    args[i].run = run;
    args[i].idx = i;
    th[i + 1] = nb_bench_spawn(f->cpu_reader[i],
                               axon ? nb_bench__axon_reader : nb_bench__ring_reader,
                               &args[i]);
  }
  th[0] = nb_bench_spawn(f->cpu_producer,
                         axon ? nb_bench__axon_producer : nb_bench__ring_producer,
                         run);
  nb_bench_gate_open(&run->gate, f->nreaders + 1);
  for (int i = 0; i <= f->nreaders; i++) pthread_join(th[i], NULL);

  const char *what = axon ? "axon" : "reference ring";
  if (atomic_load(&run->stop.abort))
    nb_bench_fail("%s, %d reader(s), batch %zu: %s", what, f->nreaders,
                  f->batch, run->stop.why[0] ? run->stop.why
                                             : "timed out: records were lost");
  uint64_t t_last = 0;
  double slowest = 0;
  for (int i = 0; i < f->nreaders; i++) {
    if (run->r[i].got != f->n || run->r[i].sum != f->expect_sum)
      nb_bench_fail("%s reader %d: got %" PRIu64 " of %" PRIu64
                    " records, checksum %016" PRIx64 " want %016" PRIx64,
                    what, i, run->r[i].got, f->n, run->r[i].sum, f->expect_sum);
    if (run->r[i].t_end > t_last) t_last = run->r[i].t_end;
    double rate = (double)f->n / ((double)(run->r[i].t_end - run->t0) / 1e9);
    if (i == 0 || rate < slowest) slowest = rate;
  }
  if (run->published != f->n)
    nb_bench_fail("%s producer published %" PRIu64 " of %" PRIu64, what,
                  run->published, f->n);
  if (axon) {
    /* Nothing extra may be readable, and the cursor must say exactly n. */
    if (nb_axon_published(run->ax) != f->n)
      nb_bench_fail("axon cursor says %" PRIu64 " published, want %" PRIu64,
                    nb_axon_published(run->ax), f->n);
    for (int i = 0; i < f->nreaders; i++) {
      nb_spike_t extra;
      if (nb_axon_try_read(run->rd[i], &extra, NULL) != NB_EEMPTY)
        nb_bench_fail("axon reader %d can read a record past the last one", i);
      nb_axon_reader_detach(run->rd[i]);
    }
    nb_axon_free(run->ax);
  } else {
    nb_bench_ring_free(run->ring);
  }
  if (f->calls <= NB_BENCH_MAX_RUNS) f->per_reader[f->calls] = slowest / 1e6;
  f->calls++;
  double total = (double)f->n * f->nreaders / ((double)(t_last - run->t0) / 1e9);
  free(run);
  return total / 1e6;
}

/* ---- ping-pong through two axons ---- */

typedef struct nb_bench_pingpong_s {
  int cpu_a, cpu_b;
  uint64_t iters;
  double *samples; /* one-way ns per round trip of the current run */
  int calls;
  double p99[NB_BENCH_MAX_RUNS + 1];
} nb_bench_pingpong_t;

typedef struct nb_bench_pingpong_run_s {
  nb_bench_pingpong_t *pp;
  nb_axon_t *ab, *ba; /* A -> B and B -> A */
  nb_axon_reader_t *rb, *ra;
  nb_bench_gate_t gate;
  nb_bench_stop_t stop;
  uint64_t done_a, done_b;
} nb_bench_pingpong_run_t;

/* Returns a ping-pong context between the first two CPUs. */
NB_BENCH_UNUSED static nb_bench_pingpong_t nb_bench_pingpong_ctx(uint64_t iters) {
  nb_bench_pingpong_t pp;
  memset(&pp, 0, sizeof pp);
  pp.cpu_a = nb_bench_cpu(0);
  pp.cpu_b = nb_bench_cpu(1);
  pp.iters = iters;
  pp.samples = nb_bench_alloc(iters * sizeof(double));
  return pp;
}

/* Side A: sends record i, spins until it comes back, stamps the round
 * trip; returns NULL. */
static void *nb_bench__pp_a(void *arg) {
  nb_bench_pingpong_run_t *run = arg;
  nb_bench_pingpong_t *pp = run->pp;
  double half_ns = nb_bench_ns_per_tick() / 2;
  nb_spike_t s, back;
  nb_bench_gate_wait(&run->gate);
  uint64_t prev = nb_bench_ticks();
  for (uint64_t i = 0; i < pp->iters; i++) {
    nb_bench_stamp(&s, i, 1, 2);
    unsigned spins = 0;
    int rc;
    while ((rc = nb_axon_try_publish(run->ab, &s)) == NB_EFULL)
      if (nb_bench_backoff(&spins, nb_bench_latency_spins(), &run->stop)) return NULL;
    if (rc) {
      nb_bench_stop_fail(&run->stop, "A publish: %s", nb_strerror(rc));
      return NULL;
    }
    spins = 0;
    while ((rc = nb_axon_try_read(run->ra, &back, NULL)) == NB_EEMPTY)
      if (nb_bench_backoff(&spins, nb_bench_latency_spins(), &run->stop)) return NULL;
    uint64_t now = nb_bench_ticks();
    if (rc || !nb_bench_is_record(&back, i)) {
      nb_bench_stop_fail(&run->stop, "A: round trip %" PRIu64 " came back "
                         "wrong (rc %d, sequence %u)", i, rc, back.sequence);
      return NULL;
    }
    pp->samples[i] = (double)(now - prev) * half_ns;
    prev = now;
    run->done_a = i + 1;
  }
  return NULL;
}

/* Side B: echoes every record it reads, checking its order; returns NULL. */
static void *nb_bench__pp_b(void *arg) {
  nb_bench_pingpong_run_t *run = arg;
  nb_bench_pingpong_t *pp = run->pp;
  nb_spike_t s;
  nb_bench_gate_wait(&run->gate);
  for (uint64_t i = 0; i < pp->iters; i++) {
    unsigned spins = 0;
    int rc;
    while ((rc = nb_axon_try_read(run->rb, &s, NULL)) == NB_EEMPTY)
      if (nb_bench_backoff(&spins, nb_bench_latency_spins(), &run->stop)) return NULL;
    if (rc || !nb_bench_is_record(&s, i)) {
      nb_bench_stop_fail(&run->stop, "B: record %" PRIu64 " wrong (rc %d, "
                         "sequence %u)", i, rc, s.sequence);
      return NULL;
    }
    spins = 0;
    while ((rc = nb_axon_try_publish(run->ba, &s)) == NB_EFULL)
      if (nb_bench_backoff(&spins, nb_bench_latency_spins(), &run->stop)) return NULL;
    if (rc) {
      nb_bench_stop_fail(&run->stop, "B publish: %s", nb_strerror(rc));
      return NULL;
    }
    run->done_b = i + 1;
  }
  return NULL;
}

/* Runs iters round trips; returns the p50 one-way latency in ns and stores
 * the p99 in pp->p99[call]. Fails the bench on a lost or wrong record. */
NB_BENCH_UNUSED static double nb_bench_pingpong_run(void *ctx) {
  nb_bench_pingpong_t *pp = ctx;
  nb_bench_pingpong_run_t *run = nb_bench_alloc(sizeof *run);
  run->pp = pp;
  nb_bench_stop_init(&run->stop, 30);
  nb_axon_opts_t o = nb_axon_opts_default();
  o.capacity = 64;
  int rc = nb_axon_new(&run->ab, &o);
  if (!rc) rc = nb_axon_new(&run->ba, &o);
  if (!rc) rc = nb_axon_reader_attach(run->ab, &run->rb);
  if (!rc) rc = nb_axon_reader_attach(run->ba, &run->ra);
  if (rc) nb_bench_fail("ping-pong setup: %s", nb_strerror(rc));
  pthread_t ta = nb_bench_spawn(pp->cpu_a, nb_bench__pp_a, run);
  pthread_t tb = nb_bench_spawn(pp->cpu_b, nb_bench__pp_b, run);
  nb_bench_gate_open(&run->gate, 2);
  pthread_join(ta, NULL);
  pthread_join(tb, NULL);
  if (atomic_load(&run->stop.abort) || run->done_a != pp->iters ||
      run->done_b != pp->iters)
    nb_bench_fail("ping-pong: %s (A %" PRIu64 ", B %" PRIu64 " of %" PRIu64 ")",
                  run->stop.why[0] ? run->stop.why : "timed out", run->done_a,
                  run->done_b, pp->iters);
  nb_axon_reader_detach(run->rb);
  nb_axon_reader_detach(run->ra);
  nb_axon_free(run->ab);
  nb_axon_free(run->ba);
  free(run);
  nb_bench_summarize(pp->samples, (int)pp->iters);
  double p50 = nb_bench_quantile(pp->samples, pp->iters, 0.50);
  if (pp->calls <= NB_BENCH_MAX_RUNS)
    pp->p99[pp->calls] = nb_bench_quantile(pp->samples, pp->iters, 0.99);
  pp->calls++;
  return p50;
}

/* The hop as a measurement function (ctx: the CPUs and round trips). */
typedef struct nb_bench_hop_ctx_s {
  int a, b;
  uint64_t iters;
} nb_bench_hop_ctx_t;

/* Returns one hop measurement in ns one-way (see nb_bench_hop_once). */
NB_BENCH_UNUSED static double nb_bench_hop_run(void *ctx) {
  nb_bench_hop_ctx_t *h = ctx;
  return nb_bench_hop_once(h->a, h->b, h->iters);
}

#endif
