/* nb_wait.c: busy spin, spin with the pause hint, and yield-then-park.
 *
 * Parking is a Dekker handshake between the sleeper and the waker:
 *
 *   sleeper                         waker
 *   w = word (acquire)              cursor = new (release, by the caller)
 *   sleepers += 1 (release)         fence(seq_cst)                  [F_W]
 *   fence(seq_cst)          [F_S]   if (sleepers && exchange(sleepers, 0))
 *   if (cursor < target)              { word += 1; FUTEX_WAKE(word, all) }
 *     FUTEX_WAIT(word, w)
 *
 * F_S and F_W are totally ordered. If F_W comes first, the sleeper's
 * re-check sees the new cursor and does not sleep. If F_S comes first, the
 * waker's load sees the increment or a later value: either it takes the
 * registrations and bumps the word, or another waker already took them and
 * bumped it. The kernel compares the word with w under the futex bucket
 * lock that FUTEX_WAKE also takes, so the sleeper either finds the word
 * changed (EAGAIN) or is queued before the wake. A wake is never lost.
 *
 * The waker takes every registration at once (exchange to 0) and the
 * sleeper never gives its own back, so once a sleeper is woken the next
 * cursor moves see zero and make no system call until it parks again;
 * a sleeper that leaves without a wake (the re-check passed, a timeout)
 * leaves a stale registration that costs one needless wake later. A waker
 * that finds nobody registered pays one fence and one load. The futexes
 * are private: an axon lives inside one process. */
#include "nb_wait.h"

#include <limits.h>
#include <linux/futex.h>
#include <sched.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

/* GCC warns (-Wtsan) that ThreadSanitizer does not model fences. The two
 * fences here only order atomics (the Dekker handshake above) and never
 * plain data, which callers hand over by release/acquire on the cursor, so
 * TSan's verdict on data races stays exact. Only that diagnostic is
 * silenced. */
#if defined(__SANITIZE_THREAD__) && defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wtsan"
#endif

/* How many spin iterations pass between two clock reads on a timed wait. */
#define NB__WAIT_CLOCK_EVERY 64u

/* Marks "no deadline" for the shared wait loop. */
#define NB__WAIT_FOREVER UINT64_MAX

nb_wait_t nb_wait_default(nb_wait_kind_t kind) {
  nb_wait_t w = {kind, 256, 16};
  return w;
}

void nb_wait_pause(void) {
#if defined(__x86_64__) || defined(__i386__)
  _mm_pause();
#elif defined(__aarch64__) || defined(__arm__)
  __asm__ __volatile__("yield" ::: "memory");
#else
  /* No hint on this CPU: at least keep the compiler from fusing loads. */
  atomic_signal_fence(memory_order_seq_cst);
#endif
}

/* Returns the monotonic clock in nanoseconds. */
static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Returns nonzero when the caller asked the wait to stop. */
static int stopped(const _Atomic int *stop) {
  /* Acquire pairs with the release (or stronger) store that set the flag,
   * so whatever the stopper wrote before it is visible to the caller. */
  return stop && atomic_load_explicit(stop, memory_order_acquire);
}

/* Returns nonzero when the wait is over: cursor reached, stopped, or timed
 * out (deadline checked only when check_clock is set, to spare the clock). */
static int done(uint64_t v, uint64_t target, const _Atomic int *stop,
                uint64_t deadline, int check_clock) {
  if (v >= target || stopped(stop)) return 1;
  return check_clock && deadline != NB__WAIT_FOREVER && now_ns() >= deadline;
}

/* Returns the futex system call's result (0, or -1 with errno). */
static long futex_call(_Atomic uint32_t *addr, int op, uint32_t val,
                       const struct timespec *rel) {
  /* The kernel reads the 32-bit word itself; _Atomic uint32_t has the same
   * size and representation as uint32_t. */
  return syscall(SYS_futex, (uint32_t *)addr, op, val, rel, NULL, 0);
}

/* Sleeps once on park unless the cursor has reached target or stop is set;
 * returns after a wake, a spurious wake or the deadline. Returns the cursor
 * value seen by the re-check. */
static uint64_t park_once(nb_parking_t *park, const _Atomic uint64_t *cursor,
                          uint64_t target, const _Atomic int *stop,
                          uint64_t deadline) {
  /* Acquire pairs with the waker's release bump of the word: a word that
   * already shows the bump also shows the cursor store made before it. */
  uint32_t word = atomic_load_explicit(&park->word, memory_order_acquire);
  /* Release pairs with the waker's acquire load of sleepers: a waker that
   * sees this registration also sees what the caller stored before the
   * wait (the axon's gate target). */
  atomic_fetch_add_explicit(&park->sleepers, 1, memory_order_release);
  /* F_S: pairs with F_W in nb_parking_wake (see the top of this file):
   * either the re-check below sees the waker's cursor or stop store, or
   * the waker sees our sleepers increment and bumps the word. */
  atomic_thread_fence(memory_order_seq_cst);
  uint64_t v = atomic_load_explicit(cursor, memory_order_acquire);
  if (v < target && !stopped(stop)) {
    struct timespec rel, *relp = NULL;
    if (deadline != NB__WAIT_FOREVER) {
      uint64_t now = now_ns();
      uint64_t left = deadline > now ? deadline - now : 0;
      rel.tv_sec = (time_t)(left / 1000000000u);
      rel.tv_nsec = (long)(left % 1000000000u);
      relp = &rel;
    }
    if (!relp || relp->tv_sec || relp->tv_nsec)
      futex_call(&park->word, FUTEX_WAIT_PRIVATE, word, relp);
  }
  /* No decrement: the waker took our registration, or it stays stale and
   * costs one needless wake (giving it back could take another sleeper's). */
  return v;
}

/* Waits with strategy w until done(); returns the last cursor value seen. */
static uint64_t wait_loop(const nb_wait_t *w, const _Atomic uint64_t *cursor,
                          uint64_t target, nb_parking_t *park,
                          const _Atomic int *stop, uint64_t deadline) {
  nb_wait_t def = nb_wait_default(NB_WAIT_SPIN_HINT);
  if (!w) w = &def;
  /* Acquire pairs with the release store that advanced the cursor, so the
   * data published before it is visible once we return. */
  uint64_t v = atomic_load_explicit(cursor, memory_order_acquire);
  if (done(v, target, stop, deadline, 1)) return v;
  uint32_t i = 0;
  if (w->kind == NB_WAIT_BUSY_SPIN || w->kind == NB_WAIT_SPIN_HINT) {
    for (;;) {
      if (w->kind == NB_WAIT_SPIN_HINT) nb_wait_pause();
      v = atomic_load_explicit(cursor, memory_order_acquire);
      if (done(v, target, stop, deadline, ++i % NB__WAIT_CLOCK_EVERY == 0))
        return v;
    }
  }
  for (i = 0; i < w->spins; i++) {
    nb_wait_pause();
    v = atomic_load_explicit(cursor, memory_order_acquire);
    if (done(v, target, stop, deadline, (i + 1) % NB__WAIT_CLOCK_EVERY == 0))
      return v;
  }
  for (i = 0; i < w->yields; i++) {
    sched_yield();
    v = atomic_load_explicit(cursor, memory_order_acquire);
    if (done(v, target, stop, deadline, 1)) return v;
  }
  for (;;) {
    /* Without a parking place nobody can wake us: keep yielding. */
    if (park) park_once(park, cursor, target, stop, deadline);
    else sched_yield();
    v = atomic_load_explicit(cursor, memory_order_acquire);
    if (done(v, target, stop, deadline, 1)) return v;
  }
}

uint64_t nb_wait_for(const nb_wait_t *w, const _Atomic uint64_t *cursor,
                     uint64_t target, nb_parking_t *park,
                     const _Atomic int *stop) {
  return wait_loop(w, cursor, target, park, stop, NB__WAIT_FOREVER);
}

uint64_t nb_wait_for_timeout(const nb_wait_t *w,
                             const _Atomic uint64_t *cursor, uint64_t target,
                             nb_parking_t *park, uint64_t timeout_ns) {
  uint64_t now = now_ns();
  uint64_t deadline = timeout_ns >= NB__WAIT_FOREVER - now
                          ? NB__WAIT_FOREVER - 1
                          : now + timeout_ns;
  return wait_loop(w, cursor, target, park, NULL, deadline);
}

void nb_parking_wake(nb_parking_t *park) {
  /* F_W: pairs with F_S in park_once. The caller's cursor store comes
   * before this fence, a sleeper's sleepers increment before its fence;
   * the two fences are totally ordered, so we see the sleeper or it sees
   * the cursor. */
  atomic_thread_fence(memory_order_seq_cst);
  if (atomic_load_explicit(&park->sleepers, memory_order_relaxed) == 0) return;
  /* Take every registration: later wakers skip the call until someone
   * parks again. Relaxed: the fence above already ordered our cursor. */
  if (atomic_exchange_explicit(&park->sleepers, 0, memory_order_relaxed) == 0)
    return;
  /* Release pairs with the sleeper's acquire load of the word. */
  atomic_fetch_add_explicit(&park->word, 1, memory_order_release);
  futex_call(&park->word, FUTEX_WAKE_PRIVATE, INT_MAX, NULL);
}
