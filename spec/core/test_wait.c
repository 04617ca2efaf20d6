/* Wait strategies: immediate returns, stop flags, timeouts, cross-thread
 * wake-ups for every kind, parked threads that really sleep, and a
 * ping-pong that would hang on a lost wake-up. */
#include <pthread.h>
#include <sched.h>

#include "nb_wait.h"
#include "nbtest.h"

static const nb_wait_kind_t kinds[] = {NB_WAIT_BUSY_SPIN, NB_WAIT_SPIN_HINT,
                                       NB_WAIT_YIELD_PARK};

static void defaults_are_256_spins_16_yields(void) {
  for (int k = 0; k < 3; k++) {
    nb_wait_t w = nb_wait_default(kinds[k]);
    NBT_EQ(w.kind, kinds[k]);
    NBT_EQ(w.spins, 256);
    NBT_EQ(w.yields, 16);
  }
}

static void try_and_pause(void) {
  _Atomic uint64_t c = 5;
  nb_wait_pause();
  NBT_CHECK(nb_wait_try(&c, 5));
  NBT_CHECK(nb_wait_try(&c, 0));
  NBT_CHECK(!nb_wait_try(&c, 6));
}

static void returns_at_once_when_reached(void) {
  for (int k = 0; k < 3; k++) {
    nb_wait_t w = nb_wait_default(kinds[k]);
    nb_parking_t park = {0, 0};
    _Atomic uint64_t c = 10;
    NBT_EQ(nb_wait_for(&w, &c, 10, &park, NULL), 10);
    NBT_EQ(nb_wait_for(&w, &c, 3, &park, NULL), 10);
    NBT_EQ(nb_wait_for_timeout(&w, &c, 10, &park, 1000), 10);
    NBT_EQ(park.sleepers, 0);
  }
}

static void stop_flag_ends_the_wait(void) {
  for (int k = 0; k < 3; k++) {
    nb_wait_t w = nb_wait_default(kinds[k]);
    nb_parking_t park = {0, 0};
    _Atomic uint64_t c = 1;
    _Atomic int stop = 1;
    NBT_EQ(nb_wait_for(&w, &c, 100, &park, &stop), 1);
  }
}

static void timeout_gives_up_below_target(void) {
  for (int k = 0; k < 3; k++) {
    nb_wait_t w = nb_wait_default(kinds[k]);
    nb_parking_t park = {0, 0};
    _Atomic uint64_t c = 7;
    uint64_t t0 = nbt_now_ns();
    NBT_EQ(nb_wait_for_timeout(&w, &c, 8, &park, 20000000u), 7);
    uint64_t dt = nbt_now_ns() - t0;
    NBT_CHECK(dt >= 20000000u);
    NBT_CHECK(dt < 2000000000u);
    NBT_CHECK(park.sleepers <= 1); /* a timed-out wait may leave its mark */
  }
}

typedef struct advancer_s {
  _Atomic uint64_t *cursor;
  nb_parking_t *park;
  uint64_t upto;
  unsigned delay_ms; /* before each step */
} advancer_t;

/* Moves the cursor up to upto, one step per delay, waking the parking;
 * returns NULL. */
static void *advance_thread(void *arg) {
  advancer_t *a = arg;
  for (uint64_t v = 1; v <= a->upto; v++) {
    if (a->delay_ms) nbt_sleep_ms(a->delay_ms);
    atomic_store_explicit(a->cursor, v, memory_order_release);
    if (a->park) nb_parking_wake(a->park);
  }
  return NULL;
}

static void every_kind_sees_another_thread_advance(void) {
  for (int k = 0; k < 3; k++) {
    nb_wait_t w = nb_wait_default(kinds[k]);
    nb_parking_t park = {0, 0};
    _Atomic uint64_t c = 0;
    advancer_t a = {&c, &park, 20, 1};
    pthread_t t;
    pthread_create(&t, NULL, advance_thread, &a);
    NBT_CHECK(nb_wait_for(&w, &c, 20, &park, NULL) >= 20);
    pthread_join(t, NULL);
  }
}

static void timed_park_wakes_early_on_progress(void) {
  nb_wait_t w = {NB_WAIT_YIELD_PARK, 0, 0};
  nb_parking_t park = {0, 0};
  _Atomic uint64_t c = 0;
  advancer_t a = {&c, &park, 1, 20};
  pthread_t t;
  uint64_t t0 = nbt_now_ns();
  pthread_create(&t, NULL, advance_thread, &a);
  NBT_EQ(nb_wait_for_timeout(&w, &c, 1, &park, 5000000000u), 1);
  NBT_CHECK(nbt_now_ns() - t0 < 2000000000u);
  pthread_join(t, NULL);
}

static void no_parking_place_falls_back_to_yield(void) {
  nb_wait_t w = {NB_WAIT_YIELD_PARK, 0, 0};
  _Atomic uint64_t c = 0;
  advancer_t a = {&c, NULL, 3, 5};
  pthread_t t;
  pthread_create(&t, NULL, advance_thread, &a);
  NBT_EQ(nb_wait_for(&w, &c, 3, NULL, NULL), 3);
  pthread_join(t, NULL);
}

static void wake_without_sleepers_makes_no_call(void) {
  nb_parking_t park = {0, 0};
  nb_parking_wake(&park);
  NBT_EQ(park.word, 0); /* the word is bumped only when someone sleeps */
}

typedef struct sleeper_s {
  _Atomic uint64_t *cursor;
  nb_parking_t *park;
  const _Atomic int *stop;
  uint64_t target, got, cpu_ns;
} sleeper_t;

/* Waits with the default yield-then-park strategy, measuring its own CPU
 * time; returns NULL. */
static void *sleeper_thread(void *arg) {
  sleeper_t *s = arg;
  nb_wait_t w = nb_wait_default(NB_WAIT_YIELD_PARK);
  uint64_t c0 = nbt_thread_cpu_ns();
  s->got = nb_wait_for(&w, s->cursor, s->target, s->park, s->stop);
  s->cpu_ns = nbt_thread_cpu_ns() - c0;
  return NULL;
}

static void parked_waiter_really_sleeps_and_wakes(void) {
  nb_parking_t park = {0, 0};
  _Atomic uint64_t c = 0;
  sleeper_t s = {&c, &park, NULL, 1, 0, 0};
  pthread_t t;
  pthread_create(&t, NULL, sleeper_thread, &s);
  nbt_sleep_ms(100);
  NBT_EQ(atomic_load(&park.sleepers), 1); /* it is in the futex now */
  nbt_sleep_ms(100);
  atomic_store_explicit(&c, 1, memory_order_release);
  nb_parking_wake(&park);
  pthread_join(t, NULL);
  NBT_EQ(s.got, 1);
  printf("    parked 200 ms, used %.3f ms of CPU\n", s.cpu_ns / 1e6);
  NBT_CHECK(s.cpu_ns < 5000000u);
  NBT_EQ(park.sleepers, 0); /* the waker took the registration */
}

static void stop_and_wake_release_a_parked_waiter(void) {
  nb_parking_t park = {0, 0};
  _Atomic uint64_t c = 0;
  _Atomic int stop = 0;
  sleeper_t s = {&c, &park, &stop, 1, 99, 0};
  pthread_t t;
  pthread_create(&t, NULL, sleeper_thread, &s);
  nbt_sleep_ms(50);
  atomic_store_explicit(&stop, 1, memory_order_release);
  nb_parking_wake(&park);
  pthread_join(t, NULL);
  NBT_EQ(s.got, 0);
}

typedef struct pingpong_s {
  _Atomic uint64_t ping, pong;
  nb_parking_t ping_park, pong_park;
  uint64_t rounds;
  _Atomic int timeouts;
} pingpong_t;

/* Answers each ping with a pong, parking at once every time; returns NULL. */
static void *pong_thread(void *arg) {
  pingpong_t *p = arg;
  nb_wait_t w = {NB_WAIT_YIELD_PARK, 0, 0};
  for (uint64_t i = 1; i <= p->rounds; i++) {
    if (nb_wait_for_timeout(&w, &p->ping, i, &p->ping_park, 5000000000u) < i) {
      atomic_fetch_add(&p->timeouts, 1);
      return NULL;
    }
    atomic_store_explicit(&p->pong, i, memory_order_release);
    nb_parking_wake(&p->pong_park);
  }
  return NULL;
}

static void pingpong_never_loses_a_wakeup(void) {
  static pingpong_t p;
  memset(&p, 0, sizeof p);
  p.rounds = nbt_under_san() ? 5000 : 50000;
  nb_wait_t w = {NB_WAIT_YIELD_PARK, 0, 0};
  pthread_t t;
  pthread_create(&t, NULL, pong_thread, &p);
  uint64_t i, t0 = nbt_now_ns();
  for (i = 1; i <= p.rounds; i++) {
    atomic_store_explicit(&p.ping, i, memory_order_release);
    nb_parking_wake(&p.ping_park);
    if (nb_wait_for_timeout(&w, &p.pong, i, &p.pong_park, 5000000000u) < i) {
      atomic_fetch_add(&p.timeouts, 1);
      break;
    }
  }
  pthread_join(t, NULL);
  NBT_EQ(atomic_load(&p.timeouts), 0);
  NBT_EQ(i, p.rounds + 1);
  printf("    %llu round trips, %.2f us each\n", (unsigned long long)p.rounds,
         (nbt_now_ns() - t0) / 1e3 / p.rounds);
}

static const nbt_test_t tests[] = {
    NBT_TEST(defaults_are_256_spins_16_yields),
    NBT_TEST(try_and_pause),
    NBT_TEST(returns_at_once_when_reached),
    NBT_TEST(stop_flag_ends_the_wait),
    NBT_TEST(timeout_gives_up_below_target),
    NBT_TEST(every_kind_sees_another_thread_advance),
    NBT_TEST(timed_park_wakes_early_on_progress),
    NBT_TEST(no_parking_place_falls_back_to_yield),
    NBT_TEST(wake_without_sleepers_makes_no_call),
    NBT_TEST(parked_waiter_really_sleeps_and_wakes),
    NBT_TEST(stop_and_wake_release_a_parked_waiter),
    NBT_TEST(pingpong_never_loses_a_wakeup),
};

int main(int argc, char **argv) { return NBT_MAIN(argc, argv, tests, NULL); }
