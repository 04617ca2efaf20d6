/* nb_clock.h: the monotonic nanosecond clock that stamps spikes and drives
 * STDP. CLOCK_MONOTONIC never jumps backwards, so timing deltas are sound. */
#ifndef NB_CLOCK_H
#define NB_CLOCK_H

#include <stdint.h>
#include <time.h>

/* Returns nanoseconds since an arbitrary fixed point (CLOCK_MONOTONIC). */
static inline uint64_t nb_clock_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

#endif
