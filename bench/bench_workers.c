/* bench_workers.c: the two cross-worker paths of docs/workers.md, measured
 * against each other in the same run. Two workers, each a thread pinned to
 * its own CPU running a tick loop (collect, then deliver) over its shard:
 *
 * - ring (the subject, what the sharded cortex uses): a worker reads only
 *   its own neurons' axons; a spike for the other worker is copied into
 *   one bounded SPSC ring per ordered pair of workers (core's
 *   nb__wring_internal.h), published once per collect; the other worker
 *   drains the ring into its inboxes in runs.
 * - pull (the baseline): every worker attaches a reader to every axon and
 *   takes the spikes addressed to its shard, skipping the rest.
 *
 * Rows: spikes/s from 4 producers on worker A to 4 consumers on worker B
 * (every spike remote), the same with half the spikes to consumers on A
 * (each spike still read by both workers in pull), and the one-way latency
 * of one spike bounced between a neuron on A and a neuron on B. Every
 * delivered spike is checked: its source, a strictly increasing sequence
 * per (source, target), its payload check word; each target's count must
 * be exact at the end. */
#include "bench.h"
#include "nb__neuron_internal.h"
#include "nb__wring_internal.h"
#include "neuronbus.h"

#define WB_SRC 4      /* sources per worker */
#define WB_DST 4      /* targets per worker */
#define WB_AXCAP 4096u
#define WB_RINGCAP 4096u
#define WB_INBOX 4096u
#define WB_BURST 256u /* spikes each source fires per tick */

typedef enum { WB_RING, WB_PULL } wb_path_t;

/* One row's configuration. */
typedef struct wb_conf_s {
  wb_path_t path;
  int mixed;    /* every other spike goes to a target on the firing worker */
  int pingpong; /* latency: one spike bounces A -> B -> A */
  uint64_t n;   /* spikes per run (round trips for pingpong) */
  int cpu[2];
} wb_conf_t;

/* A target's inbox and what it checked. */
typedef struct wb_inbox_s {
  nb_spike_t *s;
  uint32_t count;
  uint64_t got;
  uint32_t last_seq[2 * WB_SRC]; /* +1, 0 = nothing yet */
} wb_inbox_t;

typedef struct wb_worker_s {
  alignas(128) nb_axon_t *ax[WB_SRC];
  nb_axon_reader_t *own[WB_SRC];   /* this worker's reader of its axons */
  nb_axon_reader_t *other[WB_SRC]; /* pull: this worker's reader of the
                                    * other worker's axons */
  nb__wring_t *out;                /* ring: to the other worker */
  wb_inbox_t in[WB_DST];
  uint64_t fired[WB_SRC];
  uint64_t rtt_ticks, rounds;
  int reply_due;
} wb_worker_t;

typedef struct wb_run_s {
  wb_conf_t *c;
  wb_worker_t w[2];
  nb_bench_gate_t gate;
  nb_bench_stop_t stop;
  alignas(64) _Atomic int done;
  _Atomic int finished;   /* workers whose targets got every spike */
  _Atomic uint64_t t1_ns; /* when the last of them did */
  double *samples;
  uint64_t t0;
} wb_run_t;

typedef struct wb_arg_s {
  wb_run_t *run;
  int w;
} wb_arg_t;

/* Returns the neuron id of source or target i on worker w: worker in bit 4,
 * targets from 8. */
static inline uint16_t wb_src_id(int w, int i) { return (uint16_t)(w * 16 + i); }
static inline uint16_t wb_dst_id(int w, int i) {
  return (uint16_t)(w * 16 + 8 + i);
}

/* Returns the check word of a spike. */
static inline uint64_t wb_word(uint16_t src, uint32_t seq, uint16_t dst) {
  return ((uint64_t)seq * 0x9E3779B97F4A7C15ull) ^ ((uint64_t)src << 48) ^ dst;
}

/* Fires up to want spikes from source i of worker w to targets chosen by
 * their sequence; returns how many the axon took. */
static uint32_t wb_fire(wb_run_t *run, int w, int i, uint32_t want) {
  wb_worker_t *me = &run->w[w];
  nb_axon_t *ax = me->ax[i];
  uint32_t room = nb_axon_claimable(ax), k;
  if (want > room) want = room;
  for (k = 0; k < want; k++) {
    nb_spike_t *s = nb_axon_claim_at(ax, k);
    uint32_t seq = (uint32_t)(me->fired[i] + k);
    int to = run->c->mixed && (seq & 1) ? w : 1 - w;
    uint16_t dst = wb_dst_id(to, (int)((seq >> 1) % WB_DST));
    memset(s, 0, sizeof *s);
    s->timestamp_ns = seq + 1;
    s->sequence = seq;
    s->source = wb_src_id(w, i);
    s->target = dst;
    s->meta = 8u << 2;
    uint64_t word = wb_word(s->source, seq, dst);
    memcpy(s->payload, &word, 8);
  }
  nb_axon_commit(ax, k);
  me->fired[i] += k;
  return k;
}

/* Copies s into target's inbox on worker w; returns 0, or 1 when full. */
static inline int wb_push_inbox(wb_worker_t *me, const nb_spike_t *s) {
  wb_inbox_t *in = &me->in[(s->target & 15) - 8];
  if (in->count == WB_INBOX) return 1;
  in->s[in->count++] = *s;
  return 0;
}

/* Routes up to avail spikes of reader r on worker w: local ones into
 * inboxes, remote ones into the ring (ring path) or skipped (pull path);
 * returns nothing. */
static void wb_route_axon(wb_run_t *run, int w, nb_axon_reader_t *r) {
  wb_worker_t *me = &run->w[w];
  uint64_t avail = nb_axon_reader_available(r), used = 0;
  uint32_t room = me->out ? nb__wring_room(me->out, 1) : 0;
  while (used < avail) {
    uint32_t k, j;
    const nb_spike_t *s = nb__axon_reader_peek_run(r, used, avail - used, &k);
    if (!s) break;
    for (j = 0; j < k; j++, used++) {
      if ((s[j].target >> 4) == (unsigned)w) {
        if (wb_push_inbox(me, &s[j])) goto out;
      } else if (run->c->path == WB_RING) {
        if (room == 0 && (room = nb__wring_room(me->out, 1)) == 0) goto out;
        nb__wring_put(me->out, &s[j]);
        room--;
      }
    }
  }
out:
  if (used) nb_axon_reader_advance(r, used);
}

/* The collect phase of worker w: the incoming ring (ring path), then the
 * axons it reads; returns nothing. */
static void wb_collect(wb_run_t *run, int w) {
  wb_worker_t *me = &run->w[w];
  if (run->c->path == WB_RING) {
    nb__wring_t *in = run->w[1 - w].out;
    for (;;) {
      uint32_t k, j;
      const nb_spike_t *s = nb__wring_peek(in, &k);
      if (!s) break;
      for (j = 0; j < k; j++)
        if (wb_push_inbox(me, &s[j])) break;
      nb__wring_advance(in, j);
      if (j < k) break;
    }
  }
  for (int i = 0; i < WB_SRC; i++) {
    wb_route_axon(run, w, me->own[i]);
    if (run->c->path == WB_PULL) wb_route_axon(run, w, me->other[i]);
  }
  if (me->out) nb__wring_flush(me->out);
}

/* Checks and empties worker w's inboxes; returns nothing (fails the run on
 * any violation). In pingpong, a spike to B is answered, and a spike back
 * on A ends a round trip. */
static void wb_deliver(wb_run_t *run, int w) {
  wb_worker_t *me = &run->w[w];
  for (int t = 0; t < WB_DST; t++) {
    wb_inbox_t *in = &me->in[t];
    for (uint32_t k = 0; k < in->count; k++) {
      const nb_spike_t *s = &in->s[k];
      unsigned sw = s->source >> 4, si = s->source & 15;
      uint64_t word;
      memcpy(&word, s->payload, 8);
      if (sw > 1 || si >= WB_SRC || s->target != wb_dst_id(w, t))
        nb_bench_fail("worker %d: spike from %u to %u misrouted", w,
                      s->source, s->target);
      if (word != wb_word(s->source, s->sequence, s->target))
        nb_bench_fail("worker %d: spike %u of %u: payload check word", w,
                      s->sequence, s->source);
      uint32_t *last = &in->last_seq[sw * WB_SRC + si];
      if (*last && s->sequence + 1 <= *last)
        nb_bench_fail("worker %d: spike %u of %u after %u: reordered or "
                      "duplicated", w, s->sequence, s->source, *last - 1);
      *last = s->sequence + 1;
      in->got++;
      if (run->c->pingpong) {
        if (w == 1) {
          me->reply_due = 1;
        } else {
          uint64_t now = nb_bench_ticks();
          run->samples[me->rounds] = (double)(now - me->rtt_ticks);
          me->rounds++;
          me->rtt_ticks = now;
          if (me->rounds < run->c->n) me->reply_due = 1;
        }
      }
    }
    in->count = 0;
  }
}

/* Returns the spikes the targets of worker w should receive in a run of
 * total spikes. */
static uint64_t wb_expect(const wb_conf_t *c, int w, uint64_t total) {
  return c->mixed ? total / 2 : (w == 1 ? total : 0);
}

/* Returns the spikes worker w's targets received so far. */
static uint64_t wb_received(const wb_worker_t *me) {
  uint64_t got = 0;
  for (int t = 0; t < WB_DST; t++) got += me->in[t].got;
  return got;
}

/* A worker thread: ticks until the run is done; returns NULL. */
static void *wb_worker(void *arg) {
  wb_arg_t *a = arg;
  wb_run_t *run = a->run;
  wb_conf_t *c = run->c;
  int w = a->w;
  wb_worker_t *me = &run->w[w];
  uint64_t per_src = c->n / WB_SRC;
  nb_bench_gate_wait(&run->gate);
  if (c->pingpong && w == 0) {
    me->rtt_ticks = nb_bench_ticks();
    me->reply_due = 1;
  }
  int mine_done = 0;
  while (!atomic_load_explicit(&run->done, memory_order_acquire)) {
    if (c->pingpong) {
      /* Worker A's source 0 serves; worker B's source 0 answers. */
      if (me->reply_due && wb_fire(run, w, 0, 1) == 1) me->reply_due = 0;
    } else if (w == 0) {
      for (int i = 0; i < WB_SRC; i++) {
        uint64_t left = per_src - me->fired[i];
        if (left) wb_fire(run, w, i, left < WB_BURST ? (uint32_t)left : WB_BURST);
      }
    }
    wb_collect(run, w);
    wb_deliver(run, w);
    if (c->pingpong && w == 0 && me->rounds == c->n) {
      atomic_store_explicit(&run->done, 1, memory_order_release);
    } else if (!c->pingpong && !mine_done &&
               wb_received(me) == wb_expect(c, w, per_src * WB_SRC)) {
      mine_done = 1;
      atomic_store(&run->t1_ns, nb_bench_now_ns());
      if (atomic_fetch_add(&run->finished, 1) == 1)
        atomic_store_explicit(&run->done, 1, memory_order_release);
    }
    if (atomic_load_explicit(&run->stop.abort, memory_order_relaxed)) break;
    if (c->pingpong && nb_bench_now_ns() > run->stop.deadline_ns) break;
  }
  return NULL;
}

/* Builds the two workers' axons, readers, rings and inboxes; returns
 * nothing (fails the bench when memory runs out). */
static void wb_setup(wb_run_t *run) {
  for (int w = 0; w < 2; w++) {
    wb_worker_t *me = &run->w[w];
    nb_axon_opts_t ao = nb_axon_opts_default();
    ao.capacity = WB_AXCAP;
    for (int i = 0; i < WB_SRC; i++) {
      if (nb_axon_new(&me->ax[i], &ao) != 0 ||
          nb_axon_reader_attach(me->ax[i], &me->own[i]) != 0)
        nb_bench_fail("axon setup");
    }
    if (run->c->path == WB_RING && nb__wring_new(&me->out, WB_RINGCAP) != 0)
      nb_bench_fail("ring setup");
    for (int t = 0; t < WB_DST; t++)
      me->in[t].s = nb_bench_alloc(WB_INBOX * sizeof(nb_spike_t));
  }
  if (run->c->path == WB_PULL)
    for (int w = 0; w < 2; w++)
      for (int i = 0; i < WB_SRC; i++)
        if (nb_axon_reader_attach(run->w[1 - w].ax[i], &run->w[w].other[i]))
          nb_bench_fail("reader setup");
}

/* Frees what wb_setup made; returns nothing. */
static void wb_teardown(wb_run_t *run) {
  for (int w = 0; w < 2; w++) {
    wb_worker_t *me = &run->w[w];
    for (int i = 0; i < WB_SRC; i++) {
      nb_axon_reader_detach(me->own[i]);
      if (me->other[i]) nb_axon_reader_detach(me->other[i]);
    }
    nb__wring_free(me->out);
    for (int t = 0; t < WB_DST; t++) free(me->in[t].s);
  }
  for (int w = 0; w < 2; w++)
    for (int i = 0; i < WB_SRC; i++) nb_axon_free(run->w[w].ax[i]);
}

/* Runs one measurement: M spikes/s, or the median one-way ns in
 * pingpong; fails on any lost, reordered or corrupted spike. */
static double wb_run(void *ctx) {
  wb_conf_t *c = ctx;
  wb_run_t *run = nb_bench_alloc(sizeof *run);
  run->c = c;
  nb_bench_stop_init(&run->stop, 60);
  if (c->pingpong) run->samples = nb_bench_alloc(c->n * sizeof(double));
  wb_setup(run);
  wb_arg_t args[2] = {{run, 0}, {run, 1}};
  pthread_t t[2];
  for (int w = 0; w < 2; w++) t[w] = nb_bench_spawn(c->cpu[w], wb_worker, &args[w]);
  nb_bench_gate_open(&run->gate, 2);
  run->t0 = nb_bench_now_ns();
  for (int w = 0; w < 2; w++) pthread_join(t[w], NULL);
  if (!atomic_load(&run->done))
    nb_bench_fail("workers %s: run did not finish",
                  c->path == WB_RING ? "ring" : "pull");
  double v;
  if (c->pingpong) {
    if (run->w[0].rounds != c->n || wb_received(&run->w[1]) != c->n)
      nb_bench_fail("pingpong: %" PRIu64 " round trips of %" PRIu64,
                    run->w[0].rounds, c->n);
    double half = nb_bench_ns_per_tick() / 2;
    for (uint64_t i = 0; i < c->n; i++) run->samples[i] *= half;
    v = nb_bench_quantile(run->samples, c->n, 0.5);
    free(run->samples);
  } else {
    uint64_t per_src = c->n / WB_SRC, want = per_src * WB_SRC;
    for (int w = 0; w < 2; w++)
      for (int tg = 0; tg < WB_DST; tg++) {
        uint64_t expect = wb_expect(c, w, want) / WB_DST;
        if (run->w[w].in[tg].got != expect)
          nb_bench_fail("target %d of worker %d got %" PRIu64 " spikes, "
                        "expected %" PRIu64, tg, w, run->w[w].in[tg].got,
                        expect);
      }
    v = (double)want / (double)(atomic_load(&run->t1_ns) - run->t0) * 1e3;
  }
  wb_teardown(run);
  free(run);
  return v;
}

/* Measures the ring path against the pull path for one shape; emits the
 * row. */
static void wb_row(const char *name, const char *base, int mixed,
                   int pingpong, const char *note) {
  wb_conf_t ring = {.path = WB_RING, .mixed = mixed, .pingpong = pingpong};
  ring.n = pingpong ? nb_bench_size(20000, 500)
                    : nb_bench_size(8u << 20, 1u << 14);
  ring.cpu[0] = nb_bench_cpu(0);
  ring.cpu[1] = nb_bench_cpu(1);
  wb_conf_t pull = ring;
  pull.path = WB_PULL;
  nb_bench_row_t r = nb_bench_row(name, pingpong ? "ns one-way" : "M spikes/s");
  r.lower_is_better = pingpong;
  r.cpu_a = ring.cpu[0];
  r.cpu_b = ring.cpu[1];
  r.hop_ns = nb_bench_hop_ns(r.cpu_a, r.cpu_b);
  nb_bench_measure(wb_run, &ring, &ring.n, wb_run, &pull, &pull.n, &r.v, &r.b);
  r.baseline = base;
  r.note = note;
  nb_bench_emit(&r);
}

static void group_remote(void) {
  wb_row("workers_ring_remote", "workers_pull_remote", 0, 0,
         "4 sources on worker A fire 256 spikes a tick each to 4 targets on "
         "worker B; ring: A routes its axons into the A->B ring, B drains "
         "it; baseline pull: B reads A's axons itself");
}

static void group_mixed(void) {
  wb_row("workers_ring_mixed", "workers_pull_mixed", 1, 0,
         "as workers_ring_remote, every other spike to a target on A: in "
         "pull both workers read every spike");
}

static void group_pingpong(void) {
  wb_row("workers_ring_pingpong_p50", "workers_pull_pingpong_p50", 0, 1,
         "one spike bounced between a neuron on worker A and one on worker "
         "B, both tick loops spinning; median one-way time");
}

static const nb_bench_group_t groups[] = {
    {"workers_ring_remote", group_remote},
    {"workers_ring_mixed", group_mixed},
    {"workers_ring_pingpong_p50", group_pingpong},
};

int main(int argc, char **argv) {
  return nb_bench_main(argc, argv, groups, sizeof groups / sizeof groups[0]);
}
