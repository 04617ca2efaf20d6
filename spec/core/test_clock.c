/* The spike clock (core/nb_clock.h): never decreasing on a thread, and
 * kept near CLOCK_MONOTONIC even when its calibrated rate is off (an
 * anchor that got ahead slows down instead of ratcheting further ahead). */
#include <stdio.h>

#include "nb_clock.h"
#include "nbtest.h"

/* Reads the spike clock against CLOCK_MONOTONIC for ms milliseconds on a
 * fresh anchor; returns the largest lead of the spike clock over a
 * CLOCK_MONOTONIC read taken after it, and counts steps back in *back. */
static int64_t max_lead(uint64_t ms, int *back) {
  nb__clock_anchor = (nb__clock_anchor_t){0};
  int64_t lead = INT64_MIN;
  uint64_t last = 0, t0 = nb_clock_ns();
  *back = 0;
  while (nb_clock_ns() - t0 < ms * 1000000ull) {
    uint64_t s = nb_clock_spike_ns(), after = nb_clock_ns();
    if (s < last) (*back)++;
    last = s;
    if ((int64_t)(s - after) > lead) lead = (int64_t)(s - after);
  }
  return lead;
}

static void the_spike_clock_follows_clock_monotonic(void) {
  int tsc = nb_clock_calibrate();
  int back = 0;
  int64_t lead = max_lead(200, &back);
  printf("    TSC %s; largest lead over CLOCK_MONOTONIC in 200 ms: %lld ns\n",
         tsc ? "on" : "off", (long long)lead);
  NBT_EQ(back, 0);
  NBT_CHECK(lead < 50000); /* tens of ns here; sanitizers and VMs vary */
}

static void a_fast_rate_does_not_run_ahead(void) {
  if (!nb_clock_calibrate()) {
    printf("    no usable TSC: the spike clock is CLOCK_MONOTONIC\n");
    return;
  }
  uint64_t mult = nb__clock_mult;
  /* 1% fast: re-anchoring without slowing down would carry 10 us more
   * lead into every 1 ms span, 2 ms after 200 ms. */
  __atomic_store_n(&nb__clock_mult, mult + mult / 100, __ATOMIC_RELEASE);
  int back = 0;
  int64_t lead = max_lead(200, &back);
  __atomic_store_n(&nb__clock_mult, mult, __ATOMIC_RELEASE);
  nb__clock_anchor = (nb__clock_anchor_t){0};
  printf("    rate 1%% fast: largest lead in 200 ms %lld ns\n", (long long)lead);
  NBT_EQ(back, 0);
  NBT_CHECK(lead < 60000); /* one span's 10 us, with room for a VM */
}

static const nbt_test_t tests[] = {
    NBT_TEST(the_spike_clock_follows_clock_monotonic),
    NBT_TEST(a_fast_rate_does_not_run_ahead),
};

int main(int argc, char **argv) { return NBT_MAIN(argc, argv, tests, NULL); }
