// The OpenMP thread count follows the cores that other processes leave free.
//
// On a 2-core machine with another process busy on one core, a 2-thread step spends its time at
// barriers: a thread that finished its share waits for its partner, which waits for a core
// (measured: 5x slower, not 2x). The governor measures, every `interval` seconds, how much CPU
// time the whole machine used (/proc/stat) minus what this process used (getrusage), and sets
// omp_set_num_threads to the cores left over (at least 1, at most the starting count). The CPU
// kernels give the same numbers for every thread count (kernels/cpu/conv.cpp,
// kernels/cpu/fixed_chunks.h), so this changes the speed of a run and never its results.
//
// RG_ADAPT_THREADS=0 turns it off (the count stays OMP_NUM_THREADS, or all cores).
#pragma once

#include <cstdint>
#include <string>

namespace rg {

// Threads worth running when other processes keep `other_busy_cores` cores busy on average and
// this process may use at most `max_threads`: the free cores, rounded so that a partner busy
// well under half a core does not cost a thread (at least 1).
int threads_for_free_cores(double other_busy_cores, int cores, int max_threads);

class CpuThreadGovernor {
 public:
  // Starts measuring; max_threads <= 0 means omp_get_max_threads() now.
  explicit CpuThreadGovernor(double interval_seconds = 2.0, int max_threads = 0);
  // Call between steps: when `interval` has passed, re-measures and sets the thread count.
  // Returns a line to show the user when the count changed (empty otherwise).
  std::string update();
  int threads() const { return threads_; }
  bool enabled() const { return enabled_; }

 private:
  bool sample(double& machine_busy, double& self_busy, double& wall) const;

  bool enabled_ = false;
  double interval_ = 2.0;
  int cores_ = 1, max_threads_ = 1, threads_ = 1;
  double last_machine_ = 0, last_self_ = 0, last_wall_ = 0;
};

}  // namespace rg
