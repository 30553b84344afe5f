#include <gtest/gtest.h>
#include <omp.h>
#include <stdlib.h>

#include "engine/cpu_threads.h"

namespace rg {
namespace {

TEST(CpuThreads, FreeCoresDecideTheCount) {
  EXPECT_EQ(threads_for_free_cores(0.0, 2, 2), 2);   // idle machine: every core
  EXPECT_EQ(threads_for_free_cores(0.3, 2, 2), 2);   // a light partner costs no thread
  EXPECT_EQ(threads_for_free_cores(0.6, 2, 2), 1);   // over half a core busy: one fewer
  EXPECT_EQ(threads_for_free_cores(1.0, 2, 2), 1);
  EXPECT_EQ(threads_for_free_cores(5.0, 2, 2), 1);   // never below one
  EXPECT_EQ(threads_for_free_cores(-0.2, 2, 2), 2);  // accounting noise below zero
  EXPECT_EQ(threads_for_free_cores(1.0, 8, 4), 4);   // never above the starting count
  EXPECT_EQ(threads_for_free_cores(3.0, 8, 8), 5);
}

TEST(CpuThreads, OffByEnvironmentAndWithOneThread) {
  setenv("RG_ADAPT_THREADS", "0", 1);
  CpuThreadGovernor off(0.0, 2);
  unsetenv("RG_ADAPT_THREADS");
  EXPECT_FALSE(off.enabled());
  EXPECT_EQ(off.update(), "");
  CpuThreadGovernor single(0.0, 1);
  EXPECT_FALSE(single.enabled());
}

// With a zero interval every update measures; the count stays within [1, max] and is what
// OpenMP is set to.
TEST(CpuThreads, UpdateSetsOpenMp) {
  const int saved = omp_get_max_threads();
  CpuThreadGovernor g(0.0, 2);
  if (!g.enabled()) GTEST_SKIP() << "/proc/stat not readable here";
  volatile double sink = 0;
  for (int i = 0; i < 2000000; ++i) sink = sink + 1e-9 * i;  // some CPU time between samples
  g.update();
  EXPECT_GE(g.threads(), 1);
  EXPECT_LE(g.threads(), 2);
  if (g.threads() != 2) {
    EXPECT_EQ(omp_get_max_threads(), g.threads());
  }
  omp_set_num_threads(saved);
}

}  // namespace
}  // namespace rg
