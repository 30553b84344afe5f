#include "engine/cpu_threads.h"

#include <omp.h>
#include <sched.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

namespace rg {

int threads_for_free_cores(double other_busy_cores, int cores, int max_threads) {
  const double free_cores = static_cast<double>(cores) - std::max(0.0, other_busy_cores);
  const int rounded = static_cast<int>(std::floor(free_cores + 0.5));
  return std::clamp(rounded, 1, std::max(1, max_threads));
}

namespace {

double now_seconds() {
  using clock = std::chrono::steady_clock;
  return std::chrono::duration<double>(clock::now().time_since_epoch()).count();
}

// Busy CPU seconds of the whole machine since boot (/proc/stat: user, nice, system, irq,
// softirq, steal; not idle and iowait). False where the file cannot be read.
bool machine_busy_seconds(double& seconds) {
  std::ifstream in("/proc/stat");
  std::string line;
  if (!in || !std::getline(in, line) || line.rfind("cpu ", 0) != 0) return false;
  std::istringstream fields(line.substr(4));
  double v[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  for (double& x : v) {
    if (!(fields >> x)) return false;
  }
  const double ticks = static_cast<double>(sysconf(_SC_CLK_TCK));
  seconds = (v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / (ticks > 0 ? ticks : 100.0);
  return true;
}

double self_busy_seconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  auto sec = [](const timeval& t) { return static_cast<double>(t.tv_sec) + 1e-6 * static_cast<double>(t.tv_usec); };
  return sec(u.ru_utime) + sec(u.ru_stime);
}

int usable_cores() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0) return std::max(1, CPU_COUNT(&set));
  return static_cast<int>(std::max(1L, sysconf(_SC_NPROCESSORS_ONLN)));
}

}  // namespace

CpuThreadGovernor::CpuThreadGovernor(double interval_seconds, int max_threads)
    : interval_(interval_seconds) {
  max_threads_ = max_threads > 0 ? max_threads : omp_get_max_threads();
  threads_ = max_threads_;
  cores_ = usable_cores();
  const char* env = std::getenv("RG_ADAPT_THREADS");
  const bool off = env && (std::strcmp(env, "0") == 0 || std::strcmp(env, "off") == 0);
  enabled_ = !off && max_threads_ > 1 && sample(last_machine_, last_self_, last_wall_);
}

bool CpuThreadGovernor::sample(double& machine_busy, double& self_busy, double& wall) const {
  if (!machine_busy_seconds(machine_busy)) return false;
  self_busy = self_busy_seconds();
  wall = now_seconds();
  return true;
}

std::string CpuThreadGovernor::update() {
  if (!enabled_) return {};
  if (now_seconds() - last_wall_ < interval_) return {};
  double machine = 0, self = 0, wall = 0;
  if (!sample(machine, self, wall)) return {};
  const double dt = wall - last_wall_;
  const double others = ((machine - last_machine_) - (self - last_self_)) / dt;
  last_machine_ = machine;
  last_self_ = self;
  last_wall_ = wall;
  const int want = threads_for_free_cores(others, cores_, max_threads_);
  if (want == threads_) return {};
  threads_ = want;
  omp_set_num_threads(want);
  std::ostringstream msg;
  msg << "cpu: other processes keep " << std::fixed;
  msg.precision(1);
  msg << std::max(0.0, others) << " of " << cores_ << " cores busy: " << want << " thread"
      << (want == 1 ? "" : "s") << " (of " << max_threads_ << "; results do not depend on it; "
      << "RG_ADAPT_THREADS=0 keeps the count fixed)";
  return msg.str();
}

}  // namespace rg
