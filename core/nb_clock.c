/* nb_clock.c: the TSC calibration and per-thread anchors behind
 * nb_clock_spike_ns. */
#include "nb_clock.h"

#include <stdatomic.h>

_Thread_local nb__clock_anchor_t nb__clock_anchor;
uint64_t nb__clock_mult;

/* Returns 1 when CPUID reports an invariant TSC (it ticks at a constant
 * rate in every power state), else 0. */
static int tsc_invariant(void) {
#if NB_CLOCK_HAVE_TSC && defined(__GNUC__)
  unsigned a, b, c, d;
  __asm__ volatile("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d)
                   : "a"(0x80000000u), "c"(0));
  if (a < 0x80000007u) return 0;
  __asm__ volatile("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d)
                   : "a"(0x80000007u), "c"(0));
  return (d >> 8) & 1u;
#else
  return 0;
#endif
}

#if NB_CLOCK_HAVE_TSC
/* Reads CLOCK_MONOTONIC into *n and the TSC at that moment into *t: the
 * midpoint of the tightest of 8 TSC brackets around a clock read; returns
 * nothing. */
static void pair(uint64_t *n, uint64_t *t) {
  uint64_t best = UINT64_MAX;
  for (int i = 0; i < 8; i++) {
    uint64_t a = __rdtsc(), ns = nb_clock_ns(), b = __rdtsc();
    if (b - a < best) {
      best = b - a;
      *n = ns;
      *t = a + (b - a) / 2;
    }
  }
}
#endif

int nb_clock_calibrate(void) {
#if NB_CLOCK_HAVE_TSC
  static _Atomic int state; /* 0 not yet, 1 running, 2 done */
  int expect = 0;
  if (!atomic_compare_exchange_strong(&state, &expect, 1)) {
    /* Another thread calibrates: wait for its answer (about 2 ms). */
    while (atomic_load(&state) != 2) {
    }
    return __atomic_load_n(&nb__clock_mult, __ATOMIC_ACQUIRE) != 0;
  }
  uint64_t mult = 0;
  if (tsc_invariant()) {
    /* Two (TSC, CLOCK_MONOTONIC) pairs 2 ms apart, each the tightest of a
     * few TSC brackets around a clock read (a slow or preempted read would
     * skew the rate): good to ~25 ppm, and the 1 ms anchors, which slow
     * down when ahead, keep the error against CLOCK_MONOTONIC to tens of
     * nanoseconds. */
    uint64_t n0, t0, n1, t1;
    pair(&n0, &t0);
    do {
      pair(&n1, &t1);
    } while (n1 - n0 < 2000000ull);
    if (t1 > t0) mult = (uint64_t)(((unsigned __int128)(n1 - n0) << 32) /
                                   (t1 - t0));
    /* Below 16 MHz or above 64 GHz the TSC is not a clock to trust. */
    if (mult > ((uint64_t)64 << 32) || mult < ((uint64_t)1 << 26)) mult = 0;
  }
  __atomic_store_n(&nb__clock_mult, mult, __ATOMIC_RELEASE);
  atomic_store(&state, 2);
  return mult != 0;
#else
  return 0;
#endif
}

uint64_t nb__clock_reanchor(nb__clock_anchor_t *a) {
  uint64_t mult = __atomic_load_n(&nb__clock_mult, __ATOMIC_ACQUIRE);
  if (!mult) {
    /* Not calibrated (or no usable TSC): every read goes to the OS clock;
     * span 0 keeps the fast path closed. */
    a->span = 0;
    return nb_clock_ns();
  }
#if NB_CLOCK_HAVE_TSC
  /* A fresh pair: the TSC on both sides of the clock read, so a thread
   * preempted around it does not put the anchor ahead. */
  uint64_t t0 = __rdtsc(), now = nb_clock_ns(), t1 = __rdtsc();
  uint64_t tsc = t0 + (t1 - t0) / 2;
#else
  uint64_t now = nb_clock_ns(), tsc = 0;
#endif
  /* The time the old anchor gives for tsc: the new anchor starts no
   * earlier, so the anchor's clock never steps back. */
  uint64_t start = now;
  if (a->span) {
    uint64_t d = tsc - a->tsc0;
    /* d may pass span here; 128 bits keep the product exact. */
    uint64_t prev =
        a->ns0 + (uint64_t)(((unsigned __int128)d * a->mult) >> 32);
    if (prev > start) start = prev;
  }
  uint64_t span =
      (uint64_t)(((unsigned __int128)NB_CLOCK_ANCHOR_NS << 32) / mult);
  if (span == 0) span = 1;
  /* Ahead of CLOCK_MONOTONIC by e: this span runs at (1 ms - e) per 1 ms
   * of TSC ticks, so it meets CLOCK_MONOTONIC at its end (at least 1/16
   * of the rate: the clock keeps moving). Else the calibrated rate. */
  uint64_t end = now + NB_CLOCK_ANCHOR_NS, amult = mult;
  if (start > now) {
    uint64_t left = end > start && end - start > NB_CLOCK_ANCHOR_NS / 16
                        ? end - start
                        : NB_CLOCK_ANCHOR_NS / 16;
    amult = (uint64_t)(((unsigned __int128)left << 32) / span);
  }
  a->tsc0 = tsc;
  a->ns0 = start;
  a->span = span;
  a->mult = amult;
  return start;
}
