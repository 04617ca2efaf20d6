/* nb_clock.h: the monotonic nanosecond clocks that stamp spikes and drive
 * STDP. CLOCK_MONOTONIC never jumps backwards, so timing deltas are sound.
 *
 * nb_clock_ns reads CLOCK_MONOTONIC (a vDSO call, ~20-30 ns on a virtual
 * machine). nb_clock_spike_ns is the clock every spike is stamped with when
 * it is fired: on x86-64 with an invariant TSC it is the TSC scaled by a
 * factor calibrated once against CLOCK_MONOTONIC, re-anchored on
 * CLOCK_MONOTONIC by each thread every NB_CLOCK_ANCHOR_NS, so it stays
 * within tens of nanoseconds of nb_clock_ns and never decreases on one
 * thread; elsewhere it is nb_clock_ns. An anchor never steps back: one
 * that got ahead of CLOCK_MONOTONIC (a calibrated rate a little fast)
 * runs slower for its next span, so the error never accumulates. */
#ifndef NB_CLOCK_H
#define NB_CLOCK_H

#include <stdint.h>
#include <time.h>

#if defined(__x86_64__) || defined(__i386__)
#include <x86intrin.h>
#define NB_CLOCK_HAVE_TSC 1
#else
#define NB_CLOCK_HAVE_TSC 0
#endif

#define NB_CLOCK_ANCHOR_NS 1000000ull /* re-anchor each thread every 1 ms */

/* Returns nanoseconds since an arbitrary fixed point (CLOCK_MONOTONIC). */
static inline uint64_t nb_clock_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* One thread's anchor of the TSC clock: tsc0 read at ns0, valid for span
 * TSC ticks after tsc0 (0 = not anchored yet), at mult nanoseconds per
 * tick (32.32 fixed point: the calibrated rate, slowed while catching up
 * with CLOCK_MONOTONIC). */
typedef struct nb__clock_anchor_s {
  uint64_t tsc0, ns0, span, mult;
} nb__clock_anchor_t;

extern _Thread_local nb__clock_anchor_t nb__clock_anchor;
/* Nanoseconds per TSC tick in 32.32 fixed point (0 until calibrated, or
 * when the TSC is not usable). */
extern uint64_t nb__clock_mult;

/* Calibrates the TSC against CLOCK_MONOTONIC (about 2 ms, once per process;
 * later calls return at once) when the CPU has an invariant TSC; any
 * thread, any time. Returns 1 when nb_clock_spike_ns uses the TSC. */
int nb_clock_calibrate(void);

/* Re-anchors the TSC clock of anchor a on a fresh (TSC, CLOCK_MONOTONIC)
 * pair and returns the time now, never below what a gave before (the slow
 * path of nb__clock_at). */
uint64_t nb__clock_reanchor(nb__clock_anchor_t *a);

/* Returns the spike clock now through anchor a (one thread's, or one
 * neuron's for the thread that fires it: a neuron's own anchor spares the
 * thread-local lookup, a call in a shared library), non-decreasing per
 * anchor. */
static inline uint64_t nb__clock_at(nb__clock_anchor_t *a) {
#if NB_CLOCK_HAVE_TSC
  uint64_t t = __rdtsc();
  uint64_t d = t - a->tsc0;
  /* span bounds d, so the product fits in 64 bits. */
  if (d < a->span) return a->ns0 + ((d * a->mult) >> 32);
  return nb__clock_reanchor(a);
#else
  (void)a;
  return nb_clock_ns();
#endif
}

/* Returns the spike clock now: nanoseconds on CLOCK_MONOTONIC's scale,
 * non-decreasing per thread (see the header comment). */
static inline uint64_t nb_clock_spike_ns(void) {
  return nb__clock_at(&nb__clock_anchor);
}

#endif
