/* nb_rt_rec.c: the recording the busted harness reads: every spike a
 * neuron received or fired, with a copy of its payload, and the recorder
 * neurons (no script) that only keep what they are sent. */
#include "nb_rt_internal.h"

#include <stdlib.h>
#include <string.h>

/* Appends a spike and a copy of its payload to a record log. */
void nb__record(nb__reclog_t *log, const nb_spike_t *s, float w,
                       const void *data, size_t len) {
  if (log->n == log->cap) {
    size_t cap = log->cap ? log->cap * 2 : 64;
    nb__rec_t *v = realloc(log->v, cap * sizeof *v);
    if (!v) abort();
    log->v = v;
    log->cap = cap;
  }
  nb__rec_t *r = &log->v[log->n++];
  memcpy(r->s, s, sizeof r->s);
  r->weight = w;
  r->len = len;
  r->data = malloc(len + 1);
  if (!r->data) abort();
  if (len) memcpy(r->data, data, len);
  r->data[len] = 0;
}

/* Records every spike of a delivered batch (recording mode only). */
void nb__record_batch(nb__agent_t *a, const nb_spike_t *spikes,
                             const float *weights, size_t count) {
  for (size_t i = 0; i < count; i++) {
    const void *data = NULL;
    size_t len = 0;
    if (nb_arena_get_payload(a->rt->arena, &spikes[i], &data, &len) != 0) {
      data = NULL;
      len = 0;
    }
    nb__record(&a->rec[0], &spikes[i], weights ? weights[i] : 1.0f, data, len);
  }
}

/* ops.on_batch of a recorder neuron: keeps what it receives. */
static int rec_batch(void *agent, nb_neuron_t *n, const nb_spike_t *spikes,
                     const float *weights, size_t count) {
  nb__agent_t *a = agent;
  if (a->rt->opts.record) nb__record_batch(a, spikes, weights, count);
  return 0;
}

const nb_agent_ops_t nb__rec_ops = {.on_batch = rec_batch};

size_t nb_rt_rec_count(const nb_rt_t *rt, uint32_t id, int which) {
  if (id >= rt->n || which < 0 || which > 1) return 0;
  return rt->agents[id]->rec[which].n;
}

int nb_rt_rec_get(const nb_rt_t *rt, uint32_t id, int which, size_t i,
                  nb_spike_t *s, const char **data, size_t *len) {
  if (id >= rt->n || which < 0 || which > 1) return NB_ENOENT;
  const nb__reclog_t *log = &rt->agents[id]->rec[which];
  if (i >= log->n) return NB_ENOENT;
  memcpy(s, log->v[i].s, sizeof log->v[i].s);
  *data = log->v[i].data;
  *len = log->v[i].len;
  return 0;
}

double nb_rt_rec_weight(const nb_rt_t *rt, uint32_t id, int which,
                        size_t i) {
  if (id >= rt->n || which < 0 || which > 1) return -1;
  const nb__reclog_t *log = &rt->agents[id]->rec[which];
  return i < log->n ? log->v[i].weight : -1;
}
