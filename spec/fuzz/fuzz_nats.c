/* fuzz_nats.c: libFuzzer target for the NATS messages' decoder
 * (runtime/nb_nats_wire.c): what a runtime does with any bytes another
 * client publishes on the cluster's subjects.
 *
 * Build: clang -fsanitize=fuzzer,address,undefined (make fuzz); cc with
 * spec/fuzz/replay.c in make test (spec/e2e/fuzz_smoke.sh). Input: one
 * whole message (NATS delivers messages whole). Checked:
 *   - no crash, no read outside the input (ASan);
 *   - a refusal names its reason;
 *   - an accepted batch yields exactly its count of spikes, each inside
 *     the body, a payload only on an arena ref and never over the maximum,
 *     and no control ids; an accepted card yields its count of neurons;
 *   - an accepted message encodes back to the same bytes (the head from
 *     its fields; a card's body neuron by neuron), and every strict
 *     prefix of it is refused (the body length is exact).
 * A difference traps, so libFuzzer reports it like a crash. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "nb_nats_wire.h"

#define MAX_PAYLOAD 4096u

/* Checks an accepted batch walk; returns nothing (traps on a fault). */
static void walk_batch(const nb_nats_head_t *h) {
  size_t off = 0;
  uint32_t seen = 0;
  nb_nats_rec_t r;
  const char *why = NULL;
  int rc;
  while ((rc = nb_nats_batch_next(h, &off, &seen, MAX_PAYLOAD, &r, &why)) == 1) {
    if (off > h->body_len) __builtin_trap();
    if (r.payload && (!nb_spike_is_ref(&r.spike) || r.len > MAX_PAYLOAD ||
                      r.payload < h->body || r.payload + r.len > h->body + h->body_len))
      __builtin_trap();
    if (!r.payload && nb_spike_is_ref(&r.spike)) __builtin_trap();
    if (r.spike.source >= 0xFFFEu || r.spike.target >= 0xFFFEu) __builtin_trap();
  }
  if (rc != 0 || seen != h->count || off != h->body_len) __builtin_trap();
}

/* Checks an accepted region message: its path, then its spikes as a
 * batch's; returns nothing (traps on a fault). */
static void walk_region(const nb_nats_head_t *h) {
  char path[256];
  size_t off = 0;
  const char *why = NULL;
  if (nb_nats_region_path(h, path, &off, &why) != 0 || off > h->body_len) __builtin_trap();
  uint32_t seen = 0;
  nb_nats_rec_t r;
  int rc;
  while ((rc = nb_nats_batch_next(h, &off, &seen, MAX_PAYLOAD, &r, &why)) == 1)
    if (r.payload && (r.payload + r.len > h->body + h->body_len)) __builtin_trap();
  if (rc != 0 || seen != h->count || off != h->body_len) __builtin_trap();
}

/* Checks an accepted card: its neurons encode back to its body; returns
 * nothing (traps on a fault). */
static void walk_card(const nb_nats_head_t *h) {
  size_t off = 0, len = 0;
  uint32_t seen = 0;
  const char *why = NULL;
  uint8_t *buf = malloc(h->body_len + 1);
  nb_nats_neuron_t *n = malloc(sizeof *n);
  if (!buf || !n) abort();
  int rc;
  while ((rc = nb_nats_card_next(h, &off, &seen, n, &why)) == 1)
    if (nb_nats_card_add(buf, h->body_len + 1, &len, n) != 0) __builtin_trap();
  if (rc != 0 || seen != h->count || len != h->body_len ||
      memcmp(buf, h->body, len) != 0)
    __builtin_trap();
  free(buf);
  free(n);
}

/* Decodes msg fully; returns 1 when it is accepted, else 0. */
static int accepted(const uint8_t *msg, size_t size, nb_nats_head_t *h) {
  const char *why = NULL;
  int rc = nb_nats_head_decode(msg, size, h, &why);
  if (rc == 0 && h->type == NB_NATS_BATCH) rc = nb_nats_batch_check(h, MAX_PAYLOAD, &why);
  if (rc == 0 && h->type == NB_NATS_CARD) rc = nb_nats_card_check(h, &why);
  if (rc == 0 && h->type == NB_NATS_REGION) rc = nb_nats_region_check(h, MAX_PAYLOAD, &why);
  if (rc != 0 && (!why || !*why)) __builtin_trap();
  if (rc != 0 && rc != -17) __builtin_trap(); /* NB_EFRAME only */
  return rc == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *in, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *in, size_t size) {
  /* A copy of the exact size: a read past it is a finding. */
  uint8_t *msg = malloc(size ? size : 1);
  if (!msg) abort();
  memcpy(msg, in, size);
  nb_nats_head_t h;
  if (accepted(msg, size, &h)) {
    if (h.type == NB_NATS_BATCH) walk_batch(&h);
    if (h.type == NB_NATS_CARD) walk_card(&h);
    if (h.type == NB_NATS_REGION) walk_region(&h);
    uint8_t head[NB_NATS_HEAD + 1 + 255];
    int hl = nb_nats_head_encode(head, h.type, h.inc, h.a, h.b, h.count,
                                 h.body_len, h.cortex);
    if (hl <= 0 || (size_t)hl + h.body_len != size || memcmp(head, msg, (size_t)hl) != 0)
      __builtin_trap();
    for (size_t cut = 0; cut < size; cut += 1 + cut / 8) {
      nb_nats_head_t p;
      uint8_t *pre = malloc(cut ? cut : 1);
      if (!pre) abort();
      memcpy(pre, msg, cut);
      if (accepted(pre, cut, &p)) __builtin_trap();
      free(pre);
    }
  }
  free(msg);
  return 0;
}
