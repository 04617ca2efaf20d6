/* nbtest.h: the C test harness. Each test binary runs its test functions in
 * order, prints "ok - name" or "not ok - name" with the first failed check,
 * and ends with the line "N passed, M failed"; the exit status is 1 when
 * any test failed. spec/run.sh sums these lines over every binary. */
#ifndef NBTEST_H
#define NBTEST_H

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int nbt__passed, nbt__failed, nbt__cur_failed;

static void nbt__fail(const char *file, int line, const char *what) {
  if (!nbt__cur_failed) printf("    %s:%d: %s\n", file, line, what);
  nbt__cur_failed++;
}

#define NBT_CHECK(cond)                                                      \
  do {                                                                       \
    if (!(cond)) nbt__fail(__FILE__, __LINE__, "check failed: " #cond);      \
  } while (0)

/* Compares two integers and prints both values on failure. */
#define NBT_EQ(a, b)                                                         \
  do {                                                                       \
    long long nbt_a_ = (long long)(a), nbt_b_ = (long long)(b);              \
    if (nbt_a_ != nbt_b_) {                                                  \
      char nbt_m_[256];                                                      \
      snprintf(nbt_m_, sizeof nbt_m_, "%s == %s: %lld != %lld", #a, #b,      \
               nbt_a_, nbt_b_);                                              \
      nbt__fail(__FILE__, __LINE__, nbt_m_);                                 \
    }                                                                        \
  } while (0)

/* Compares two doubles within eps. */
#define NBT_NEAR(a, b, eps)                                                  \
  do {                                                                       \
    double nbt_a_ = (double)(a), nbt_b_ = (double)(b);                       \
    if (!(nbt_a_ - nbt_b_ <= (eps) && nbt_b_ - nbt_a_ <= (eps))) {           \
      char nbt_m_[256];                                                      \
      snprintf(nbt_m_, sizeof nbt_m_, "%s ~ %s: %.9g != %.9g", #a, #b,       \
               nbt_a_, nbt_b_);                                              \
      nbt__fail(__FILE__, __LINE__, nbt_m_);                                 \
    }                                                                        \
  } while (0)

/* Runs one test function and records its verdict. */
#define NBT_RUN(fn)                                                          \
  do {                                                                       \
    nbt__cur_failed = 0;                                                     \
    fn();                                                                    \
    if (nbt__cur_failed) {                                                   \
      nbt__failed++;                                                         \
      printf("not ok - %s\n", #fn);                                          \
    } else {                                                                 \
      nbt__passed++;                                                         \
      printf("ok - %s\n", #fn);                                              \
    }                                                                        \
    fflush(stdout);                                                          \
  } while (0)

/* Prints the closing line; returns the process exit status. */
static inline int nbt_done(void) {
  printf("%d passed, %d failed\n", nbt__passed, nbt__failed);
  return nbt__failed ? 1 : 0;
}

#endif
