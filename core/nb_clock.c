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
    /* Two (TSC, CLOCK_MONOTONIC) pairs 2 ms apart: a clock read's jitter
     * of ~50 ns makes the rate good to ~25 ppm, and the 1 ms anchors keep
     * the error against CLOCK_MONOTONIC to tens of nanoseconds. */
    uint64_t n0 = nb_clock_ns(), t0 = __rdtsc(), n1, t1;
    do {
      n1 = nb_clock_ns();
      t1 = __rdtsc();
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

uint64_t nb__clock_reanchor(nb__clock_anchor_t *a, uint64_t tsc) {
  uint64_t mult = __atomic_load_n(&nb__clock_mult, __ATOMIC_ACQUIRE);
  uint64_t now = nb_clock_ns();
  if (!mult) {
    /* Not calibrated (or no usable TSC): every read goes to the OS clock;
     * span 0 keeps the fast path closed. */
    a->span = 0;
    return now;
  }
  /* The time the old anchor gives for tsc: the new anchor starts no
   * earlier, so the anchor's clock never steps back. */
  if (a->span) {
    uint64_t d = tsc - a->tsc0;
    /* d may pass span here; 128 bits keep the product exact. */
    uint64_t prev = a->ns0 + (uint64_t)(((unsigned __int128)d * mult) >> 32);
    if (prev > now) now = prev;
  }
  a->tsc0 = tsc;
  a->ns0 = now;
  a->span = (uint64_t)(((unsigned __int128)NB_CLOCK_ANCHOR_NS << 32) / mult);
  return now;
}
