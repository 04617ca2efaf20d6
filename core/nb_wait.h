/* nb_wait.h: how a thread waits for a 64-bit cursor to reach a value.
 *
 * Three strategies, after the LMAX Disruptor: busy spin, spin with the CPU
 * pause hint, and yield-then-park. A parked waiter really sleeps on a futex
 * and uses no CPU until the other side moves the cursor and wakes it. */
#ifndef NB_WAIT_H
#define NB_WAIT_H

#include <stdatomic.h>
#include <stdint.h>

typedef enum nb_wait_kind_e {
  NB_WAIT_BUSY_SPIN = 0,
  NB_WAIT_SPIN_HINT = 1,
  NB_WAIT_YIELD_PARK = 2
} nb_wait_kind_t;

typedef struct nb_wait_s {
  nb_wait_kind_t kind;
  uint32_t spins;  /* YIELD_PARK: pause-hint spins before yielding */
  uint32_t yields; /* YIELD_PARK: sched_yield calls before parking */
} nb_wait_t;

/* A place to park: a futex word bumped on every wake, and a count of
 * sleepers so the waking side can skip the system call when nobody sleeps.
 * One sits beside each cursor that someone may wait on. A sleeper adds
 * itself with a release increment; a waker takes the whole count (so the
 * count can stay 1 after a wait that ended without a wake: harmless). */
typedef struct nb_parking_s {
  _Atomic uint32_t word;
  _Atomic uint32_t sleepers;
} nb_parking_t;

/* Returns the default strategy for kind (spins 256, yields 16). */
nb_wait_t nb_wait_default(nb_wait_kind_t kind);

/* Emits the CPU's spin-loop hint (PAUSE on x86, YIELD on ARM). */
void nb_wait_pause(void);

/* Waits until *cursor >= target (acquire load) or *stop becomes nonzero
 * (stop may be NULL); returns the last cursor value seen. With YIELD_PARK
 * the caller sleeps on park; whoever advances the cursor must call
 * nb_parking_wake(park) after its release store. */
uint64_t nb_wait_for(const nb_wait_t *w, const _Atomic uint64_t *cursor,
                     uint64_t target, nb_parking_t *park,
                     const _Atomic int *stop);

/* Same as nb_wait_for but gives up after timeout_ns; returns the last value
 * seen, which is below target on a timeout. */
uint64_t nb_wait_for_timeout(const nb_wait_t *w,
                             const _Atomic uint64_t *cursor, uint64_t target,
                             nb_parking_t *park, uint64_t timeout_ns);

/* Returns *cursor >= target without waiting (acquire load). */
static inline int nb_wait_try(const _Atomic uint64_t *cursor, uint64_t target) {
  return atomic_load_explicit(cursor, memory_order_acquire) >= target;
}

/* Wakes every sleeper on park; costs one seq_cst fence and one load when
 * nobody sleeps. Call after the release store that moved the cursor. */
void nb_parking_wake(nb_parking_t *park);

#endif
